import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../../../lib/native/binding.js';
import {
  BLK_CFG_CAPACITY,
  BLK_CFG_MAX_DISCARD_SEG,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_F_VERSION_1,
  VIRTIO_ID_BLOCK,
  bit,
} from '../../../lib/virtio/constants.js';
import {
  BlockImageError,
  FileBlockBackend,
  MemoryBlockBackend,
  VirtioBlock,
  type BlockBackend,
} from '../../../lib/virtio/devices/block.js';
import { EIO, ENOSPC, nodeFsBlockIo, type BlockFileIo } from '../../../lib/virtio/host-io.js';
import { createMockGuest, type MockBuffer } from '../../../lib/virtio/testing/mock-driver.js';

const tmp = mkdtempSync(join(tmpdir(), 'node-kvm-blk-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function header(type: number, sector: number | bigint): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, type, true);
  v.setBigUint64(8, BigInt(sector), true);
  return h;
}

function segment(sector: number, count: number, flags = 0): Uint8Array {
  const s = new Uint8Array(16);
  const v = new DataView(s.buffer);
  v.setBigUint64(0, BigInt(sector), true);
  v.setUint32(8, count, true);
  v.setUint32(12, flags, true);
  return s;
}

function pattern(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff);
}

function setup(backend: BlockBackend = new MemoryBlockBackend(64 * 1024), features?: bigint) {
  const device = new VirtioBlock({ backend, serial: 'disk-0001' });
  const g = createMockGuest(device);
  expect(g.driver.init(features === undefined ? {} : { features })).toBe(true);
  /** Sends one request; returns [status, used length, chain]. */
  const request = (buffers: MockBuffer[], indirect = false) => {
    const chain = g.driver.send(0, buffers, { indirect })!;
    const used = g.driver.takeUsed(0);
    expect(used).toHaveLength(1);
    const last = chain.buffers[chain.buffers.length - 1];
    const status = last.writable ? g.memory.u8(last.gpa + last.length - 1) : -1;
    return { status, len: used[0].len, chain };
  };
  const write = (sector: number, data: Uint8Array) =>
    request([{ data: header(VIRTIO_BLK_T_OUT, sector) }, { data }, { length: 1, writable: true }]).status;
  const read = (sector: number, length: number) => {
    const r = request([
      { data: header(VIRTIO_BLK_T_IN, sector) },
      { length, writable: true },
      { length: 1, writable: true },
    ]);
    return { status: r.status, len: r.len, data: g.driver.writtenBytes(r.chain, length) };
  };
  return { ...g, device, request, write, read };
}

describe('virtio-blk: configuration', () => {
  it('is device 2 with capacity in 512-byte sectors and the expected features', () => {
    const { driver } = setup(new MemoryBlockBackend(1024 * 1024));
    expect(driver.readReg(0x008)).toBe(VIRTIO_ID_BLOCK);
    expect(new DataView(driver.readConfig(BLK_CFG_CAPACITY, 8).buffer).getBigUint64(0, true)).toBe(2048n);
    const f = driver.deviceFeatures();
    expect(f & bit(VIRTIO_BLK_F_FLUSH)).not.toBe(0n);
    expect(f & bit(VIRTIO_BLK_F_DISCARD)).not.toBe(0n);
    expect(f & bit(VIRTIO_BLK_F_WRITE_ZEROES)).not.toBe(0n);
    expect(f & bit(VIRTIO_BLK_F_RO)).toBe(0n);
    expect(driver.readConfig(BLK_CFG_MAX_DISCARD_SEG, 1)[0]).toBe(16);
  });

  it('read-only: offers RO and neither DISCARD nor WRITE_ZEROES', () => {
    const { driver } = setup(new MemoryBlockBackend(4096, true));
    const f = driver.deviceFeatures();
    expect(f & bit(VIRTIO_BLK_F_RO)).not.toBe(0n);
    expect(f & bit(VIRTIO_BLK_F_DISCARD)).toBe(0n);
    expect(f & bit(VIRTIO_BLK_F_WRITE_ZEROES)).toBe(0n);
  });
});

describe('virtio-blk: requests', () => {
  it('writes and reads back sectors', () => {
    const backend = new MemoryBlockBackend(64 * 1024);
    const { write, read } = setup(backend);
    const data = pattern(1024, 3);
    expect(write(4, data)).toBe(VIRTIO_BLK_S_OK);
    expect([...backend.bytes.subarray(2048, 3072)]).toEqual([...data]);
    const r = read(4, 1024);
    expect(r.status).toBe(VIRTIO_BLK_S_OK);
    expect(r.len).toBe(1025);
    expect([...r.data]).toEqual([...data]);
  });

  it('makes no assumption about descriptor layout (split header, data and status)', () => {
    const backend = new MemoryBlockBackend(64 * 1024);
    backend.bytes.set(pattern(512, 9), 512);
    const { request, driver } = setup(backend);
    const h = header(VIRTIO_BLK_T_IN, 1);
    const r = request(
      [
        { data: h.subarray(0, 5) },
        { data: h.subarray(5) },
        { length: 100, writable: true },
        { length: 413, writable: true }, // 412 data bytes + the status byte
      ],
      true,
    );
    expect(r.status).toBe(VIRTIO_BLK_S_OK);
    expect([...driver.writtenBytes(r.chain, 512)]).toEqual([...pattern(512, 9)]);
  });

  it('rejects out-of-range sectors and odd lengths with IOERR', () => {
    const { write, read, request } = setup(new MemoryBlockBackend(4096)); // 8 sectors
    expect(write(8, new Uint8Array(512))).toBe(VIRTIO_BLK_S_IOERR);
    expect(write(7, new Uint8Array(1024))).toBe(VIRTIO_BLK_S_IOERR);
    expect(read(2 ** 40, 512).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(write(0, new Uint8Array(100))).toBe(VIRTIO_BLK_S_IOERR);
    const huge = request([
      { data: header(VIRTIO_BLK_T_IN, 0xffff_ffff_ffff_ffffn) },
      { length: 512, writable: true },
      { length: 1, writable: true },
    ]);
    expect(huge.status).toBe(VIRTIO_BLK_S_IOERR);
    expect(write(7, new Uint8Array(512))).toBe(VIRTIO_BLK_S_OK);
  });

  it('short header → IOERR; no writable byte → returned with length 0', () => {
    const { request, device } = setup();
    expect(request([{ data: new Uint8Array(8) }, { length: 1, writable: true }]).status).toBe(
      VIRTIO_BLK_S_IOERR,
    );
    const r = request([{ data: header(VIRTIO_BLK_T_IN, 0) }]);
    expect(r.len).toBe(0);
    expect(device.errors.badRequests).toBe(2);
  });

  it('unknown type → UNSUPP', () => {
    const { request, device } = setup();
    expect(request([{ data: header(99, 0) }, { length: 1, writable: true }]).status).toBe(
      VIRTIO_BLK_S_UNSUPP,
    );
    expect(device.stats.unsupported).toBe(1);
  });

  it('GET_ID returns the 20-byte serial', () => {
    const { request, driver } = setup();
    const r = request([
      { data: header(VIRTIO_BLK_T_GET_ID, 0) },
      { length: 20, writable: true },
      { length: 1, writable: true },
    ]);
    expect(r.status).toBe(VIRTIO_BLK_S_OK);
    const id = driver.writtenBytes(r.chain, 20);
    expect(new TextDecoder().decode(id.subarray(0, 9))).toBe('disk-0001');
    expect([...id.subarray(9)]).toEqual(new Array(11).fill(0));
  });

  it('FLUSH calls the backend; writes are write-back when FLUSH is negotiated', () => {
    const backend = new MemoryBlockBackend(4096);
    const { request, write } = setup(backend);
    write(0, new Uint8Array(512));
    expect(backend.flushes).toBe(0);
    expect(request([{ data: header(VIRTIO_BLK_T_FLUSH, 0) }, { length: 1, writable: true }]).status).toBe(
      VIRTIO_BLK_S_OK,
    );
    expect(backend.flushes).toBe(1);
  });

  it('writes are write-through when FLUSH was offered but not negotiated (§5.2.6.1)', () => {
    const backend = new MemoryBlockBackend(4096);
    const { write } = setup(backend, bit(VIRTIO_F_VERSION_1));
    write(0, new Uint8Array(512));
    expect(backend.flushes).toBe(1);
  });

  it('read-only: OUT → IOERR and nothing written', () => {
    const backend = new MemoryBlockBackend(4096, true);
    const { write } = setup(backend);
    expect(write(0, new Uint8Array(512).fill(1))).toBe(VIRTIO_BLK_S_IOERR);
    expect(backend.bytes.every((b) => b === 0)).toBe(true);
  });

  it('host I/O errors (EIO, ENOSPC) → IOERR, and the device keeps working', () => {
    const backend = new MemoryBlockBackend(4096);
    const { write, read, device, transport } = setup(backend);
    backend.failWith = ENOSPC;
    expect(write(0, new Uint8Array(512))).toBe(VIRTIO_BLK_S_IOERR);
    backend.failWith = EIO;
    expect(read(0, 512).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(device.stats.ioErrors).toBe(2);
    expect(device.stats.lastErrno).toBe(EIO);
    backend.failWith = 0;
    expect(write(0, new Uint8Array(512))).toBe(VIRTIO_BLK_S_OK);
    expect(transport.status & 64).toBe(0);
  });
});

describe('virtio-blk: DISCARD and WRITE_ZEROES', () => {
  const dwz = (type: number, ...segments: Uint8Array[]): MockBuffer[] => [
    { data: header(type, 0) },
    ...segments.map((data) => ({ data })),
    { length: 1, writable: true },
  ];

  it('WRITE_ZEROES zeroes each segment', () => {
    const backend = new MemoryBlockBackend(8192);
    backend.bytes.fill(0xff);
    const { request } = setup(backend);
    const r = request(dwz(VIRTIO_BLK_T_WRITE_ZEROES, segment(1, 2), segment(10, 1, 1)));
    expect(r.status).toBe(VIRTIO_BLK_S_OK);
    expect(backend.bytes.subarray(512, 1536).every((b) => b === 0)).toBe(true);
    expect(backend.bytes.subarray(5120, 5632).every((b) => b === 0)).toBe(true);
    expect(backend.bytes[0]).toBe(0xff);
    expect(backend.bytes[1536]).toBe(0xff);
  });

  it('DISCARD with unmap or unknown flags → UNSUPP; bad ranges → IOERR (nothing changed)', () => {
    const backend = new MemoryBlockBackend(8192);
    backend.bytes.fill(0xff);
    const { request } = setup(backend);
    expect(request(dwz(VIRTIO_BLK_T_DISCARD, segment(0, 1, 1))).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect(request(dwz(VIRTIO_BLK_T_WRITE_ZEROES, segment(0, 1, 2))).status).toBe(VIRTIO_BLK_S_UNSUPP);
    expect(request(dwz(VIRTIO_BLK_T_DISCARD, segment(0, 1), segment(15, 2))).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(request(dwz(VIRTIO_BLK_T_DISCARD, new Uint8Array(8))).status).toBe(VIRTIO_BLK_S_IOERR);
    const tooMany = Array.from({ length: 17 }, () => segment(0, 1));
    expect(request(dwz(VIRTIO_BLK_T_DISCARD, ...tooMany)).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(backend.bytes.every((b) => b === 0xff)).toBe(true);
    expect(request(dwz(VIRTIO_BLK_T_DISCARD, segment(0, 16))).status).toBe(VIRTIO_BLK_S_OK);
  });

  it('→ UNSUPP when the driver did not negotiate the feature', () => {
    const { request } = setup(
      new MemoryBlockBackend(4096),
      bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_BLK_F_FLUSH),
    );
    expect(request(dwz(VIRTIO_BLK_T_WRITE_ZEROES, segment(0, 1))).status).toBe(VIRTIO_BLK_S_UNSUPP);
  });
});

describe('FileBlockBackend', () => {
  function image(name: string, content: Uint8Array | number): string {
    const path = join(tmp, name);
    writeFileSync(path, typeof content === 'number' ? new Uint8Array(content) : content);
    return path;
  }

  it.each([
    ['a missing file', () => join(tmp, 'missing.img'), /does not exist/],
    ['a size that is not a multiple of 512', () => image('odd.img', 1000), /not a multiple of 512/],
    ['an empty file', () => image('empty.img', 0), /empty/],
    [
      'a directory',
      () => {
        mkdirSync(join(tmp, 'dir.img'), { recursive: true });
        return join(tmp, 'dir.img');
      },
      /not a regular file|EISDIR/,
    ],
  ])('refuses %s at attach time with a clear error', (_name, make, message) => {
    const path = make();
    let error: unknown;
    try {
      FileBlockBackend.open(path, { io: nodeFsBlockIo });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(BlockImageError);
    expect((error as BlockImageError).code).toBe('ERR_VIRTIO_BLOCK_IMAGE');
    expect((error as Error).message).toMatch(message);
  });

  it.skipIf(process.getuid?.() === 0)('refuses a read-only file opened for writing', () => {
    const path = image('ro.img', 4096);
    chmodSync(path, 0o444);
    expect(() => FileBlockBackend.open(path, { io: nodeFsBlockIo })).toThrow(/permission denied for writing/);
    expect(FileBlockBackend.open(path, { io: nodeFsBlockIo, readOnly: true }).readOnly).toBe(true);
  });

  const ios: [string, () => BlockFileIo | undefined][] = [
    ['node:fs I/O', () => nodeFsBlockIo],
    [
      'native host I/O',
      () => {
        try {
          return native().hostIo;
        } catch {
          return undefined;
        }
      },
    ],
  ];

  describe.each(ios)('with %s', (name, getIo) => {
    const io = getIo();
    it.skipIf(io === undefined)('guest writes are in the file after FLUSH; zeroing works', () => {
      const path = image(`disk-${name.replace(/\W/g, '')}.img`, pattern(64 * 1024, 1));
      const backend = FileBlockBackend.open(path, { io: io! });
      const { write, read, request } = setup(backend);
      const data = pattern(4096, 77);
      expect(write(8, data)).toBe(VIRTIO_BLK_S_OK);
      expect(request([{ data: header(VIRTIO_BLK_T_FLUSH, 0) }, { length: 1, writable: true }]).status).toBe(
        0,
      );
      expect([...readFileSync(path).subarray(4096, 8192)]).toEqual([...data]);
      expect([...read(8, 4096).data]).toEqual([...data]);
      const zero = request([
        { data: header(VIRTIO_BLK_T_WRITE_ZEROES, 0) },
        { data: segment(16, 8, 1) },
        { data: segment(32, 8, 0) },
        { length: 1, writable: true },
      ]);
      expect(zero.status).toBe(VIRTIO_BLK_S_OK);
      const file = readFileSync(path);
      expect(file.subarray(8192, 12288).every((b) => b === 0)).toBe(true);
      expect(file.subarray(16384, 20480).every((b) => b === 0)).toBe(true);
      expect(file[12288]).toBe(pattern(64 * 1024, 1)[12288]);
      expect(statSync(path).size).toBe(64 * 1024);
      backend.close();
    });
  });
});
