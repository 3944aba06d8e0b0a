/**
 * Host-side decompression of a bzImage's payload, so the guest can be entered at the uncompressed kernel
 * (saving the decompressor's run, ~90 s on hosts that emulate kernel-mode guest code).
 */
import { gunzipSync } from 'node:zlib';
import { BootError } from './errors.js';
import { decodeLz4Legacy, isLz4Legacy } from './lz4.js';
import { compressedPayload, parseSetupHeader, type SetupHeader } from './setup-header.js';

export type KernelCompression = 'gzip' | 'lz4' | 'xz' | 'zstd' | 'bzip2' | 'lzma' | 'lzo' | 'none';

const SIGNATURES: { kind: KernelCompression; magic: number[] }[] = [
  { kind: 'gzip', magic: [0x1f, 0x8b] },
  { kind: 'lz4', magic: [0x02, 0x21, 0x4c, 0x18] },
  { kind: 'xz', magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { kind: 'zstd', magic: [0x28, 0xb5, 0x2f, 0xfd] },
  { kind: 'bzip2', magic: [0x42, 0x5a, 0x68] },
  { kind: 'lzo', magic: [0x89, 0x4c, 0x5a, 0x4f] },
  { kind: 'lzma', magic: [0x5d, 0x00, 0x00] },
  { kind: 'none', magic: [0x7f, 0x45, 0x4c, 0x46] }, // CONFIG_KERNEL_UNCOMPRESSED: the ELF itself
];

/** Which compressor produced a kernel payload, by its magic bytes. */
export function detectCompression(payload: Uint8Array): KernelCompression | undefined {
  return SIGNATURES.find((s) => s.magic.every((b, i) => payload[i] === b))?.kind;
}

/**
 * Decompresses a kernel payload. The kernel build appends the uncompressed size as a little-endian u32
 * to every format but gzip (whose own trailer holds the same number); it is used to check the result.
 */
export function decompressPayload(payload: Uint8Array): { data: Uint8Array; compression: KernelCompression } {
  if (payload.length < 8)
    throw new BootError('BAD_PAYLOAD', `kernel payload is only ${payload.length} bytes`);
  const compression = detectCompression(payload);
  const trailer = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(
    payload.length - 4,
    true,
  );
  switch (compression) {
    case 'gzip': {
      let data: Uint8Array;
      try {
        data = gunzipSync(payload);
      } catch (e) {
        throw new BootError('BAD_PAYLOAD', `corrupt gzip kernel payload: ${(e as Error).message}`);
      }
      if (data.length >>> 0 !== trailer) {
        throw new BootError(
          'BAD_PAYLOAD',
          `gzip payload decoded to ${data.length} bytes, trailer says ${trailer}`,
        );
      }
      return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), compression };
    }
    case 'lz4':
      if (!isLz4Legacy(payload)) break;
      return { data: decodeLz4Legacy(payload.subarray(0, payload.length - 4), trailer), compression };
    case 'none':
      return { data: payload, compression };
    case undefined:
      break;
    default:
      throw new BootError(
        'BAD_PAYLOAD',
        `${compression}-compressed kernels cannot be decompressed on the host (gzip and lz4 can); ` +
          'boot the bzImage through its own decompressor instead',
      );
  }
  const head = Array.from(payload.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new BootError('BAD_PAYLOAD', `unknown kernel payload compression (first bytes ${head})`);
}

/** Parses a bzImage and returns its decompressed kernel (an ELF vmlinux). */
export function decompressBzImage(image: Uint8Array, header: SetupHeader = parseSetupHeader(image)) {
  return decompressPayload(compressedPayload(image, header));
}
