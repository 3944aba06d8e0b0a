#!/usr/bin/env node
import { main } from '../dist/lib/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`node-kvm: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
