import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Reads an assembled payload (build/payloads/<name>.bin), built from examples/payloads/<name>.S by `npm install`. */
export function loadPayload(name: string): Uint8Array {
  const here = dirname(fileURLToPath(import.meta.url));
  // examples/lib (run from source) or dist/examples/lib (compiled).
  for (const root of [resolve(here, '../..'), resolve(here, '../../..')]) {
    try {
      return new Uint8Array(readFileSync(join(root, 'build', 'payloads', `${name}.bin`)));
    } catch {
      // try the next root
    }
  }
  throw new Error(`payload '${name}' not found: run \`npm run build:payloads\``);
}
