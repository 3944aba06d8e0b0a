import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decompressPayload, detectCompression } from '../../../lib/boot/decompress.js';
import { elfLoadWrites, parseElfKernel } from '../../../lib/boot/elf.js';
import { BootError } from '../../../lib/boot/errors.js';
import { decodeLz4Block, decodeLz4Legacy } from '../../../lib/boot/lz4.js';
import {
  compressedPayload,
  looksLikeBzImage,
  parseSetupHeader,
  protectedModeKernel,
} from '../../../lib/boot/setup-header.js';
import { fakeBzImage, fakeElf, gzipPayload } from './fixtures.js';

function sizeTrailer(data: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(data.length + 4);
  out.set(data);
  new DataView(out.buffer).setUint32(data.length, size, true);
  return out;
}

describe('bzImage setup header', () => {
  it('parses every field the loader uses', () => {
    const image = fakeBzImage({ prefAddress: 0x100_0000, initSize: 0x50_0000, cmdlineSize: 0x7ff });
    expect(looksLikeBzImage(image)).toBe(true);
    const h = parseSetupHeader(image);
    expect(h.version).toBe(0x020f);
    expect(h.setupSects).toBe(4);
    expect(h.setupSize).toBe(5 * 512);
    expect(h.kernelAlignment).toBe(0x20_0000);
    expect(h.relocatable).toBe(true);
    expect(h.prefAddress).toBe(0x100_0000);
    expect(h.initSize).toBe(0x50_0000);
    expect(h.cmdlineSize).toBe(0x7ff);
    expect(h.initrdAddrMax).toBe(0x7fff_ffff);
    expect(h.kernelVersion).toBe('6.1.0-fake (test@example) #1');
    expect(h.raw.length).toBe(0x26c - 0x1f1);
    expect(h.raw[0]).toBe(4);
    expect(protectedModeKernel(image, h).length).toBe(h.sysSize);
    expect(compressedPayload(image, h)[0]).toBe(0x1f);
  });

  it('treats setup_sects 0 as 4', () => {
    expect(parseSetupHeader(fakeBzImage({ setupSects: 0 })).setupSects).toBe(4);
  });

  it('rejects bad images with the reason', () => {
    const good = fakeBzImage();
    const patch = (at: number, bytes: number[], image = good) => {
      const copy = image.slice();
      copy.set(bytes, at);
      return copy;
    };
    expect(() => parseSetupHeader(new Uint8Array(100))).toThrow(/shorter than a setup header/);
    expect(() => parseSetupHeader(patch(0x1fe, [0, 0]))).toThrow(/boot_flag/);
    expect(() => parseSetupHeader(patch(0x202, [0x41]))).toThrow(/HdrS/);
    expect(() => parseSetupHeader(fakeBzImage({ version: 0x020a }))).toThrow(/2\.10 is older than 2\.12/);
    expect(() => parseSetupHeader(fakeBzImage({ xloadflags: 0 }))).toThrow(/XLF_KERNEL_64/);
    expect(() => parseSetupHeader(patch(0x211, [0]))).toThrow(/LOADED_HIGH/);
    expect(() => parseSetupHeader(good.subarray(0, good.length - 64))).toThrow(/truncated/);
    expect(() => parseSetupHeader(patch(0x230, [0, 0, 0x30, 0]))).toThrow(/power of two/);
    expect(() => parseSetupHeader(patch(0x24c, [0xff, 0xff, 0xff, 0]))).toThrow(/payload/);
    expect(() => parseSetupHeader(fakeBzImage({ initSize: 16 }))).toThrow(/init_size/);
    try {
      parseSetupHeader(new Uint8Array(0x300));
    } catch (e) {
      expect(e).toBeInstanceOf(BootError);
      expect((e as BootError).code).toBe('BAD_KERNEL');
    }
  });
});

describe('LZ4', () => {
  it('decodes hand-made blocks: literals only, overlapping and long matches', () => {
    // token 0x50: 5 literals, no match (last sequence)
    expect([...decodeLz4Block(Uint8Array.from([0x50, 1, 2, 3, 4, 5]))]).toEqual([1, 2, 3, 4, 5]);
    // 1 literal 'a', match offset 1 length 4+0 → "aaaaa", then final literal 'b'
    const run = decodeLz4Block(Uint8Array.from([0x10, 0x61, 1, 0, 0x10, 0x62]));
    expect(String.fromCharCode(...run)).toBe('aaaaab');
    // 2 literals, match offset 2 with length 15 + 4 + extra 10 = 29 (overlapping), then final literal
    const long = decodeLz4Block(Uint8Array.from([0x2f, 0x61, 0x62, 2, 0, 10, 0x10, 0x21]));
    expect(String.fromCharCode(...long)).toBe('ab'.repeat(15) + 'a!');
  });

  it('rejects corrupt blocks', () => {
    expect(() => decodeLz4Block(Uint8Array.from([0x50, 1, 2]))).toThrow(/literals run past/);
    expect(() => decodeLz4Block(Uint8Array.from([0x10, 0x61, 5, 0, 0x00]))).toThrow(/before the start/);
    expect(() => decodeLz4Block(Uint8Array.from([0x10, 0x61, 0, 0, 0x00]))).toThrow(/zero match offset/);
    expect(() => decodeLz4Block(Uint8Array.from([0x10, 0x61, 1]))).toThrow(/offset runs past/);
    expect(() => decodeLz4Block(Uint8Array.from([0x1f, 0x61, 1, 0, 255]))).toThrow(/match length runs past/);
    expect(() => decodeLz4Legacy(Uint8Array.from([1, 2, 3, 4]))).toThrow(/magic/);
    expect(() => decodeLz4Legacy(Uint8Array.from([2, 0x21, 0x4c, 0x18, 100, 0, 0, 0, 1]))).toThrow(
      /truncated/,
    );
  });

  it('decodes what the lz4 tool writes in legacy mode (-l), across several 8 MiB blocks', () => {
    const lz4 = '/usr/bin/lz4';
    if (!existsSync(lz4)) {
      console.log(`SKIP lz4 CLI cross-check: ${lz4} is missing`);
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'node-kvm-lz4-'));
    try {
      const input = new Uint8Array(20 * 1024 * 1024 + 123);
      let x = 12345;
      for (let i = 0; i < input.length; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        input[i] = i % 4096 < 2048 ? (x >>> 24) & 0x0f : i & 0xff; // mix of noise and runs
      }
      writeFileSync(join(dir, 'in'), input);
      execFileSync(lz4, ['-l', '-9', '-q', '-f', 'in', 'out.lz4'], { cwd: dir });
      const packed = new Uint8Array(readFileSync(join(dir, 'out.lz4')));
      const out = decodeLz4Legacy(packed, input.length);
      expect(out.length).toBe(input.length);
      expect(Buffer.compare(Buffer.from(out), Buffer.from(input))).toBe(0);
      // As a kernel payload: with the size trailer the build appends.
      expect(decompressPayload(sizeTrailer(packed, input.length)).data.length).toBe(input.length);
      expect(() => decompressPayload(sizeTrailer(packed, input.length + 1))).toThrow(/expected/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('kernel payload decompression', () => {
  it('detects formats by magic', () => {
    expect(detectCompression(Uint8Array.from([0x1f, 0x8b, 8]))).toBe('gzip');
    expect(detectCompression(Uint8Array.from([0x02, 0x21, 0x4c, 0x18]))).toBe('lz4');
    expect(detectCompression(Uint8Array.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0]))).toBe('xz');
    expect(detectCompression(Uint8Array.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe('zstd');
    expect(detectCompression(Uint8Array.from([0x7f, 0x45, 0x4c, 0x46]))).toBe('none');
    expect(detectCompression(Uint8Array.from([1, 2, 3, 4]))).toBeUndefined();
  });

  it('decompresses gzip and checks the size', () => {
    const elf = fakeElf();
    const r = decompressPayload(gzipPayload(elf));
    expect(r.compression).toBe('gzip');
    expect([...r.data]).toEqual([...elf]);
    const corrupt = gzipPayload(elf);
    corrupt[20] ^= 0xff;
    expect(() => decompressPayload(corrupt)).toThrow(/corrupt gzip/);
  });

  it('names unsupported and unknown formats', () => {
    const xz = Uint8Array.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0, 0, 0, 0, 0]);
    expect(() => decompressPayload(xz)).toThrow(/xz-compressed kernels cannot be decompressed on the host/);
    expect(() => decompressPayload(new Uint8Array(16).fill(7))).toThrow(/unknown kernel payload compression/);
  });
});

describe('ELF64 kernel loader', () => {
  it('reads segments, entry and the PVH note', () => {
    const elf = parseElfKernel(fakeElf({ pvhEntry: 0x100_0040 }));
    expect(elf.entry).toBe(0x100_0000);
    expect(elf.pvhEntry).toBe(0x100_0040);
    expect(elf.segments.map((s) => s.paddr)).toEqual([0x100_0000, 0x120_0000]);
    expect(elf.start).toBe(0x100_0000);
    expect(elf.end).toBe(0x120_0000 + 0x100 + 0x1000);
    expect(elf.notes.map((n) => n.name)).toEqual(['GNU', 'Xen']);
    expect(parseElfKernel(fakeElf({ pvhEntry: 0x100_0010, pvhDescSize: 4 })).pvhEntry).toBe(0x100_0010);
    expect(parseElfKernel(fakeElf()).pvhEntry).toBeUndefined();
  });

  it('loads file bytes and zero-fills bss', () => {
    const writes = elfLoadWrites(parseElfKernel(fakeElf({ bss: 0x2000 })));
    expect(writes.map((w) => [w.gpa, w.data.length])).toEqual([
      [0x100_0000, 0x300],
      [0x120_0000, 0x100],
      [0x120_0100, 0x2000],
    ]);
    expect(writes[2].data.every((b) => b === 0)).toBe(true);
  });

  it('translates a virtual entry point through its segment', () => {
    const image = fakeElf();
    new DataView(image.buffer).setBigUint64(24, 0xffff_ffff_8100_0010n, true);
    expect(parseElfKernel(image).entry).toBe(0x100_0010);
  });

  it('rejects bad and truncated files with the reason', () => {
    const good = fakeElf({ pvhEntry: 0x100_0040 });
    const patch = (at: number, bytes: number[]) => {
      const c = good.slice();
      c.set(bytes, at);
      return c;
    };
    expect(() => parseElfKernel(good.subarray(0, 40))).toThrow(/shorter than an ELF header/);
    expect(() => parseElfKernel(patch(0, [0]))).toThrow(/magic/);
    expect(() => parseElfKernel(patch(4, [1]))).toThrow(/64-bit/);
    expect(() => parseElfKernel(patch(5, [2]))).toThrow(/little-endian/);
    expect(() => parseElfKernel(patch(18, [3, 0]))).toThrow(/EM_X86_64/);
    expect(() => parseElfKernel(good.subarray(0, 0x1100))).toThrow(/truncated/);
    expect(() => parseElfKernel(patch(24, [0, 0, 0, 0x20]))).toThrow(/lies in no loadable segment/);
    expect(() => parseElfKernel(fakeElf({ pvhEntry: 0x500 }))).toThrow(/PVH entry 0x500 lies in no loadable/);
    // a note size >= 2^31 must not wrap the note walk backwards (0x2100 is the PT_NOTE segment's offset)
    for (const size of [0x8000_0000, 0xffff_fffe]) {
      expect(() =>
        parseElfKernel(
          patch(
            0x2100,
            [0, 0, 0, 0].map((_, i) => (size >>> (8 * i)) & 0xff),
          ),
        ),
      ).toThrow(/runs past its PT_NOTE segment/);
      expect(() =>
        parseElfKernel(
          patch(
            0x2104,
            [0, 0, 0, 0].map((_, i) => (size >>> (8 * i)) & 0xff),
          ),
        ),
      ).toThrow(/runs past its PT_NOTE segment/);
    }
    // second PT_LOAD moved onto the first
    const overlap = good.slice();
    new DataView(overlap.buffer).setBigUint64(64 + 56 + 24, 0x100_0100n, true);
    expect(() => parseElfKernel(overlap)).toThrow(/overlap/);
  });
});
