/** Small byte helpers shared by the boot builders. */

export const PAGE_SIZE = 4096;

export function alignUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}

export function alignDown(value: number, align: number): number {
  return Math.floor(value / align) * align;
}

export function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

/** 8-bit sum of `data[start, start+length)`. */
export function sum8(data: Uint8Array, start = 0, length = data.length - start): number {
  let s = 0;
  for (let i = start; i < start + length; i++) s = (s + data[i]) & 0xff;
  return s;
}

/** Sets `data[at]` so that the bytes `[start, start+length)` sum to zero (mod 256). */
export function fixChecksum(data: Uint8Array, at: number, start = 0, length = data.length - start): void {
  data[at] = 0;
  data[at] = (0x100 - sum8(data, start, length)) & 0xff;
}

export function view(data: Uint8Array): DataView {
  return new DataView(data.buffer, data.byteOffset, data.byteLength);
}

/** Writes ASCII `text` at `offset`, padded with `pad` up to `width` bytes (truncating longer text). */
export function putAscii(
  data: Uint8Array,
  offset: number,
  text: string,
  width = text.length,
  pad = 0x20,
): void {
  for (let i = 0; i < width; i++) data[offset + i] = i < text.length ? text.charCodeAt(i) & 0x7f : pad;
}

/** Concatenates byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
