/**
 * LZ4 decoding for kernels built with CONFIG_KERNEL_LZ4 (Debian's): the legacy frame that `lz4 -l` writes,
 * i.e. magic 0x184C2102, then blocks of [u32 compressed size][LZ4 block], each at most 8 MiB decoded.
 * Written from the LZ4 block format description (lz4_Block_format.md); every read and copy is bounds-checked.
 */
import { BootError } from './errors.js';
import { hex } from './bytes.js';

export const LZ4_LEGACY_MAGIC = 0x184c2102;
/** Legacy frames never decode a block to more than this. */
export const LZ4_LEGACY_BLOCK_MAX = 8 * 1024 * 1024;
const MIN_MATCH = 4;

function fail(reason: string): never {
  throw new BootError('BAD_PAYLOAD', `corrupt LZ4 data: ${reason}`);
}

/** Output buffer that grows when the expected size was unknown or wrong. */
class Output {
  buf: Uint8Array;
  pos = 0;
  constructor(capacity: number) {
    this.buf = new Uint8Array(Math.max(capacity, 64));
  }
  reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = new Uint8Array(Math.max(this.pos + n, this.buf.length * 2));
    bigger.set(this.buf.subarray(0, this.pos));
    this.buf = bigger;
  }
}

/**
 * Decodes one LZ4 block from `src[start, end)` into `out` (matches may reach back into earlier output,
 * which also covers frames whose blocks are linked). Returns the number of bytes produced.
 */
function decodeBlockInto(src: Uint8Array, start: number, end: number, out: Output, limit: number): number {
  let ip = start;
  const begin = out.pos;
  while (ip < end) {
    const token = src[ip++];
    let literals = token >>> 4;
    if (literals === 15) {
      let b: number;
      do {
        if (ip >= end) fail(`literal length runs past the block end at input ${hex(ip)}`);
        b = src[ip++];
        literals += b;
      } while (b === 255);
    }
    if (ip + literals > end) fail(`literals run past the block end at input ${hex(ip)}`);
    if (out.pos - begin + literals > limit) fail(`block decodes to more than ${limit} bytes`);
    out.reserve(literals);
    out.buf.set(src.subarray(ip, ip + literals), out.pos);
    out.pos += literals;
    ip += literals;
    if (ip === end) break; // the last sequence carries literals only
    if (ip + 2 > end) fail(`match offset runs past the block end at input ${hex(ip)}`);
    const offset = src[ip] | (src[ip + 1] << 8);
    ip += 2;
    if (offset === 0) fail(`zero match offset at input ${hex(ip - 2)}`);
    if (offset > out.pos) fail(`match offset ${offset} reaches before the start of the output`);
    let length = token & 0x0f;
    if (length === 15) {
      let b: number;
      do {
        if (ip >= end) fail(`match length runs past the block end at input ${hex(ip)}`);
        b = src[ip++];
        length += b;
      } while (b === 255);
    }
    length += MIN_MATCH;
    if (out.pos - begin + length > limit) fail(`block decodes to more than ${limit} bytes`);
    out.reserve(length);
    const buf = out.buf;
    let from = out.pos - offset;
    if (offset >= length) {
      buf.copyWithin(out.pos, from, from + length);
      out.pos += length;
    } else {
      // Overlapping match: a repeating pattern, copied forward byte by byte.
      let to = out.pos;
      const stop = to + length;
      while (to < stop) buf[to++] = buf[from++];
      out.pos = stop;
    }
  }
  return out.pos - begin;
}

/** Decodes one raw LZ4 block (no framing). */
export function decodeLz4Block(block: Uint8Array, maxOutput = LZ4_LEGACY_BLOCK_MAX): Uint8Array {
  const out = new Output(Math.min(block.length * 4, maxOutput));
  decodeBlockInto(block, 0, block.length, out, maxOutput);
  return out.buf.slice(0, out.pos);
}

/** True if `data` starts with the LZ4 legacy frame magic (bytes 02 21 4C 18). */
export function isLz4Legacy(data: Uint8Array): boolean {
  return data.length >= 4 && data[0] === 0x02 && data[1] === 0x21 && data[2] === 0x4c && data[3] === 0x18;
}

/**
 * Decodes an LZ4 legacy stream (one or more concatenated frames). `expectedSize`, when known (a kernel
 * payload's size trailer), sizes the output up front and is checked at the end.
 */
export function decodeLz4Legacy(data: Uint8Array, expectedSize?: number): Uint8Array {
  if (!isLz4Legacy(data)) fail('missing legacy frame magic 02 21 4C 18');
  const out = new Output(expectedSize ?? data.length * 3);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let ip = 4;
  while (ip < data.length) {
    if (ip + 4 > data.length) fail(`${data.length - ip} stray bytes after the last block`);
    const size = dv.getUint32(ip, true);
    ip += 4;
    if (size === LZ4_LEGACY_MAGIC) continue; // a following concatenated frame
    if (size === 0) fail(`empty block at input ${hex(ip - 4)}`);
    if (ip + size > data.length) {
      fail(
        `block at input ${hex(ip - 4)} claims ${size} bytes, only ${data.length - ip} remain (truncated?)`,
      );
    }
    decodeBlockInto(data, ip, ip + size, out, LZ4_LEGACY_BLOCK_MAX);
    ip += size;
  }
  if (expectedSize !== undefined && out.pos !== expectedSize) {
    fail(`decoded ${out.pos} bytes, expected ${expectedSize}`);
  }
  return out.buf.length === out.pos ? out.buf : out.buf.slice(0, out.pos);
}
