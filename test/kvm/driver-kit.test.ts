/**
 * The guest driver kit (test/guest, freestanding C at CPL3, built by scripts/build-payloads.mjs) against every
 * virtio device from inside a real KVM guest: console, block (read-write and read-only), net (JS peer, and a
 * second VM), vsock (both directions), entropy and balloon. The host side of each exchange is checked here too:
 * the image file after the VM stopped, the frames the peer saw, the bytes on the Unix sockets, device stats.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { virtioConsoleHello } from '../../examples/virtio-console-hello.js';
import { loadPayload } from '../../examples/lib/payloads.js';
import type { MmioTransportStats } from '../../lib/virtio/mmio-transport.js';
import type { MicroVmConfig } from '../../lib/vmm/config.js';
import type { VmStats } from '../../lib/vmm/messages.js';
import { MicroVm } from '../../lib/vmm/micro-vm.js';
import { NetChannel, NetChannelPeer } from '../../lib/vmm/net-channel.js';
import { formatStopReason, type StopReason } from '../../lib/vmm/stop.js';
import { describeKvm } from '../support/kvm.js';

const MiB = 1024 * 1024;
const RAM = 64 * MiB;
const SECTOR = 512;
const DISK_SECTORS = 2048;
/** kit-tests.h */
const KIT_F_VSOCK_LISTEN = 1;
const KIT_F_NET_ECHO = 2;
const WRITE_SECTOR = 16;
const WRITE_SECTORS = 128;
const ZERO_SECTOR = 20;
const ZERO_SECTORS = 4;
const NET_FRAME_SIZES = [60, 128, 1000, 1514];
const ETHERTYPE = 0x88b5;
const VSOCK_HOST_PORT = 5000;
const GUEST_MAC = '02:00:00:00:00:01';
const PEER_MAC = '02:00:00:00:00:fe';
const BALLOON_PAGES = 256;
const GUEST_CID = 42;

const sector0Byte = (i: number): number => (i * 13 + 7) & 0xff;
/** The word the kit writes at disk byte offset `offset`. */
const diskWord = (offset: number): number => Math.imul((offset ^ 0x4b495421) >>> 0, 2654435761) >>> 0;

function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

/** rsi for the kit: MAC byte i in bits 8i..8i+7. */
function macArg(mac: string): bigint {
  return macBytes(mac).reduceRight((v, b) => (v << 8n) | BigInt(b), 0n);
}

function makeImage(path: string): Buffer {
  const image = Buffer.alloc(DISK_SECTORS * SECTOR);
  for (let i = 0; i < SECTOR; i++) image[i] = sector0Byte(i);
  writeFileSync(path, image);
  return image;
}

/** Console output split into lines, with one-shot reactions to lines the guest prints. */
class ConsoleLines {
  text = '';
  private partial = '';
  private readonly decoder = new TextDecoder();
  private readonly reactions: { re: RegExp; fn: (m: RegExpExecArray) => void }[] = [];

  constructor(vm: MicroVm) {
    vm.on('console', (bytes) => this.feed(this.decoder.decode(bytes, { stream: true })));
  }

  /** Runs fn once, for the first line matching re. */
  when(re: RegExp, fn: (m: RegExpExecArray) => void): void {
    this.reactions.push({ re, fn });
  }

  private feed(chunk: string): void {
    this.text += chunk;
    this.partial += chunk;
    for (let nl = this.partial.indexOf('\n'); nl >= 0; nl = this.partial.indexOf('\n')) {
      const line = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      for (const r of [...this.reactions]) {
        const m = r.re.exec(line);
        if (m === null) continue;
        this.reactions.splice(this.reactions.indexOf(r), 1);
        r.fn(m);
      }
    }
  }
}

function describeStop(stop: StopReason, output: string): string {
  return `${formatStopReason(stop)}\n--- guest output ---\n${output}`;
}

type DeviceEntry = { transport: MmioTransportStats; device?: Record<string, number> };

function devices(stats: VmStats | undefined): Record<string, DeviceEntry> {
  expect(stats).toBeDefined();
  return stats!.devices as Record<string, DeviceEntry>;
}

/** Every transport saw a clean driver: no refused or malformed access, no error, exactly one reset. */
function expectCleanTransports(stats: VmStats | undefined): void {
  expect(stats!.unclaimedMmio).toBe(0);
  expect(stats!.unclaimedPio).toBe(0);
  for (const [name, d] of Object.entries(devices(stats))) {
    expect({ name, ...d.transport }).toEqual({
      name,
      badAccesses: 0,
      ignoredWrites: 0,
      rejectedStatusWrites: 0,
      rejectedFeatures: 0,
      rejectedQueues: 0,
      ignoredNotifications: 0,
      needsResets: 0,
      internalErrors: 0,
      resets: 1,
    });
  }
}

interface KitRun {
  stop: StopReason;
  output: string;
  stats: VmStats | undefined;
  seconds: number;
  peerFrames: Buffer[];
  guestToHost: string;
  hostSession: string;
  balloonStats: Record<string, number>[];
}

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'node-kvm-kit-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** One kit run with all six device types (plus a read-only disk) and the host side of every exchange. */
async function runFullKit(ioeventfd: boolean): Promise<KitRun> {
  const tag = ioeventfd ? 'ioeventfd' : 'mmio';
  const disk = join(dir, `${tag}-disk.img`);
  const roDisk = join(dir, `${tag}-ro.img`);
  makeImage(disk);
  makeImage(roDisk);
  const udsPath = join(dir, `${tag}-vsock`);

  // vsock, guest-initiated: the device connects to `${udsPath}_5000`; answer upper-cased.
  let guestToHost = '';
  const server: Server = createServer((socket) => {
    socket.on('data', (d) => {
      guestToHost += d.toString('latin1');
      socket.write(d.toString('latin1').toUpperCase());
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(`${udsPath}_${VSOCK_HOST_PORT}`, resolve));

  const channel = new NetChannel();
  const peerFrames: Buffer[] = [];
  const peer = new NetChannelPeer(channel.ends[1], (frame) => {
    peerFrames.push(Buffer.from(frame));
    const reply = Buffer.from(frame);
    frame.subarray(0, 6).forEach((b, i) => (reply[6 + i] = b));
    frame.subarray(6, 12).forEach((b, i) => (reply[i] = b));
    peer.send(reply);
  });

  const config: MicroVmConfig = {
    memory: { size: RAM },
    boot: {
      kind: 'payload',
      payload: loadPayload('driver-kit'),
      mode: 'long-cpl3',
      regs: { rdi: KIT_F_VSOCK_LISTEN, rsi: macArg(PEER_MAC), rdx: 7, rcx: RAM },
    },
    serial: false,
    virtioConsole: true,
    disks: [
      { path: disk, serial: 'kit-disk-0' },
      { path: roDisk, readOnly: true, serial: 'kit-ro-disk' },
    ],
    net: [{ channel: channel.ends[0], mac: GUEST_MAC }],
    vsock: { cid: GUEST_CID, udsPath },
    rng: true,
    balloon: true,
    ioeventfd,
  };
  const vm = new MicroVm(config);
  const lines = new ConsoleLines(vm);
  const balloonStats: Record<string, number>[] = [];
  vm.on('balloonStats', (s) => balloonStats.push(s));

  lines.when(/^KIT console waiting for a line$/, () => vm.writeConsole('ping from the host 42\n'));
  lines.when(/^KIT balloon waiting for a target$/, () => vm.setBalloonTarget(BALLOON_PAGES));
  lines.when(/^KIT balloon inflated (\d+) pages$/, () => vm.setBalloonTarget(0));
  // vsock, host-initiated: CONNECT 6000, then one line once the device says OK.
  let hostSession = '';
  const hostSessionDone = new Promise<void>((resolve) => {
    lines.when(/^KIT vsock listening on port (\d+)$/, (m) => {
      const socket = createConnection(udsPath, () => socket.write(`CONNECT ${m[1]}\n`));
      let sent = false;
      socket.on('data', (d) => {
        hostSession += d.toString('latin1');
        if (!sent && hostSession.includes('\n')) {
          sent = true;
          socket.write('ping from the host over vsock\n');
        }
      });
      socket.on('close', () => resolve());
      socket.on('error', () => resolve());
    });
  });

  const started = performance.now();
  let stop: StopReason;
  try {
    await vm.start();
    stop = await vm.exited;
    if (stop.reason === 'debug-exit' && stop.code === 0) await hostSessionDone;
  } finally {
    peer.close();
    channel.close();
    await new Promise((resolve) => server.close(resolve));
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    stop,
    output: lines.text,
    stats: vm.lastStats,
    seconds,
    peerFrames,
    guestToHost,
    hostSession,
    balloonStats,
  };
}

function checkDisk(path: string): void {
  const image = readFileSync(path);
  expect(image.length).toBe(DISK_SECTORS * SECTOR);
  for (let i = 0; i < SECTOR; i++) expect(image[i]).toBe(sector0Byte(i));
  const zeroFrom = ZERO_SECTOR * SECTOR;
  const zeroTo = zeroFrom + ZERO_SECTORS * SECTOR;
  const mismatches: string[] = [];
  for (let at = WRITE_SECTOR * SECTOR; at < (WRITE_SECTOR + WRITE_SECTORS) * SECTOR; at += 4) {
    const want = at >= zeroFrom && at < zeroTo ? 0 : diskWord(at);
    const got = image.readUInt32LE(at);
    if (got !== want && mismatches.length < 4) mismatches.push(`0x${at.toString(16)}: ${got} != ${want}`);
  }
  expect(mismatches).toEqual([]);
  // Nothing outside sectors 0 and 16..143 was touched.
  expect(image.subarray(SECTOR, WRITE_SECTOR * SECTOR).every((b) => b === 0)).toBe(true);
  expect(image.subarray((WRITE_SECTOR + WRITE_SECTORS) * SECTOR).every((b) => b === 0)).toBe(true);
}

function checkFullRun(r: KitRun, dataPathExits: { value: number }): void {
  expect(r.stop, describeStop(r.stop, r.output)).toEqual({ reason: 'debug-exit', code: 0 });
  const out = r.output;
  const expected = [
    'KIT slot 0: console (device id 3)',
    'hello from the virtio console',
    'KIT console echo: ping from the host 42',
    'KIT blk slot 1: capacity 2048 sectors, read-write',
    'KIT blk slot 1: id "kit-disk-0"',
    'KIT blk ok slot 1:',
    'KIT blk slot 2: capacity 2048 sectors, read-only',
    'KIT blk slot 2: id "kit-ro-disk"',
    'KIT blk ok slot 2:',
    `KIT net mac ${GUEST_MAC}, link up`,
    `KIT net ok: 4 frames echoed by ${PEER_MAC}`,
    `KIT vsock cid ${GUEST_CID}`,
    `KIT vsock connect ok: 32 bytes each way with host port ${VSOCK_HOST_PORT}`,
    'KIT vsock listen ok: host port',
    'KIT rng ok:',
    `KIT balloon inflated ${BALLOON_PAGES} pages`,
    `KIT balloon deflated ${BALLOON_PAGES} pages, ${BALLOON_PAGES} came back zeroed`,
    'KIT done: 7 devices passed',
  ];
  for (const line of expected) expect(out, `missing "${line}"`).toContain(line);
  expect(out).not.toContain('KIT FAIL');
  // EVENT_IDX was negotiated on the block devices.
  expect(out).toMatch(/KIT blk ok slot 1: \d+ requests, \d+ notifications, \d+ suppressed \(event idx on\)/);

  // Block: the guest's writes are in the image file after the VM stopped; the read-only image is untouched.
  // (checked by the caller, which knows the paths)

  // Net: the JS peer saw the four frames the guest built.
  expect(r.peerFrames.map((f) => f.length)).toEqual(NET_FRAME_SIZES);
  for (const [i, f] of r.peerFrames.entries()) {
    expect(f.subarray(0, 6)).toEqual(macBytes(PEER_MAC));
    expect(f.subarray(6, 12)).toEqual(macBytes(GUEST_MAC));
    expect(f.readUInt16BE(12)).toBe(ETHERTYPE);
    expect(f.subarray(14, 14 + 20).toString('latin1')).toBe(`node-kvm kit frame ${i}`);
  }

  // vsock: both directions carried the exact bytes.
  expect(r.guestToHost).toBe('hello over vsock from the guest\n');
  expect(r.hostSession).toMatch(/^OK \d+\nPING FROM THE HOST OVER VSOCK\n$/);

  // Balloon: the guest's statistics reached the host.
  expect(r.balloonStats.length).toBeGreaterThanOrEqual(1);
  expect(r.balloonStats[0].totalMemory).toBe(RAM);

  // Device and transport statistics at exit.
  expectCleanTransports(r.stats);
  const d = devices(r.stats);
  expect(Object.keys(d)).toEqual([
    'virtio-console@0',
    'virtio-blk@1',
    'virtio-blk@2',
    'virtio-net@3',
    'virtio-vsock@4',
    'virtio-rng@5',
    'virtio-balloon@6',
  ]);
  expect(d['virtio-blk@1'].device).toMatchObject({
    writes: 1,
    bytesWritten: WRITE_SECTORS * SECTOR,
    writeZeroes: 1,
    ioErrors: 0,
    unsupported: 1,
  });
  expect(d['virtio-blk@1'].device!.flushes).toBeGreaterThanOrEqual(1);
  expect(d['virtio-blk@2'].device).toMatchObject({ writes: 0, bytesWritten: 0, unsupported: 1 });
  expect(d['virtio-console@0'].device).toMatchObject({ inputBytes: 22, inputDropped: 0, outputTruncated: 0 });
  expect(d['virtio-net@3'].device).toMatchObject({
    txFrames: 4,
    rxFrames: 4,
    txInvalid: 0,
    rxDropped: 0,
    rxTooSmall: 0,
    txBytes: NET_FRAME_SIZES.reduce((a, b) => a + b),
  });
  expect(d['virtio-vsock@4'].device).toMatchObject({
    guestConnections: 1,
    hostConnections: 1,
    refusedConnections: 0,
    droppedPackets: 0,
    protocolErrors: 0,
    badHandshakes: 0,
    bytesToHost: 32 + 30,
    bytesToGuest: 32 + 30,
  });
  // The host side of the balloon: every inflated page was handed back (madvise), then deflated.
  expect(d['virtio-balloon@6'].device).toMatchObject({
    inflatedPages: BALLOON_PAGES,
    deflatedPages: BALLOON_PAGES,
    invalidPfns: 0,
    discardErrors: 0,
  });
  expect(d['virtio-rng@5'].device!.bytesProvided).toBeGreaterThanOrEqual(128);
  dataPathExits.value = r.stats!.exits;
}

describeKvm('guest driver kit (freestanding C guest at CPL3)', () => {
  const exits = { ioeventfd: { value: 0 }, mmio: { value: 0 } };

  it('drives console, block, net, vsock, entropy and balloon with QueueNotify on ioeventfd', async () => {
    const r = await runFullKit(true);
    checkFullRun(r, exits.ioeventfd);
    checkDisk(join(dir, 'ioeventfd-disk.img'));
    expect(readFileSync(join(dir, 'ioeventfd-ro.img')).equals(makeExpectedRo())).toBe(true);
    console.log(`[driver-kit] ioeventfd: ${r.seconds.toFixed(2)} s, ${r.stats!.exits} exits`);
  });

  it('does the same over the plain MMIO-exit notify path (ioeventfd: false)', async () => {
    const r = await runFullKit(false);
    checkFullRun(r, exits.mmio);
    checkDisk(join(dir, 'mmio-disk.img'));
    expect(readFileSync(join(dir, 'mmio-ro.img')).equals(makeExpectedRo())).toBe(true);
    console.log(`[driver-kit] MMIO exits: ${r.seconds.toFixed(2)} s, ${r.stats!.exits} exits`);
    // Every notification is an exit here; with ioeventfd none is.
    if (exits.ioeventfd.value > 0) expect(r.stats!.exits).toBeGreaterThan(exits.ioeventfd.value);
  });

  it('two VMs exchange frames over one NetChannel (one pings, the other echoes)', async () => {
    const channel = new NetChannel();
    const macA = '02:00:00:00:0a:01';
    const macB = '02:00:00:00:0b:02';
    const kit = loadPayload('driver-kit');
    const vmFor = (mac: string, end: 0 | 1, flags: number, peer: string): MicroVm =>
      new MicroVm({
        memory: { size: 32 * MiB },
        boot: {
          kind: 'payload',
          payload: kit,
          mode: 'long-cpl3',
          regs: { rdi: flags, rsi: macArg(peer), rdx: 1, rcx: 32 * MiB },
        },
        serial: false,
        net: [{ channel: channel.ends[end], mac }],
      });
    const echo = vmFor(macB, 1, KIT_F_NET_ECHO, macA);
    const ping = vmFor(macA, 0, 0, macB);
    const echoLines = new ConsoleLines(echo);
    const pingLines = new ConsoleLines(ping);
    const started = performance.now();
    // A frame that reaches a VM before its driver reset the device is dropped (VirtioNet.reset() clears the
    // frames queued for an old driver), as a NIC drops frames before its driver is up: start the pinging VM
    // once the echoing one has its receive buffers posted.
    const echoReady = new Promise<void>((resolve) =>
      echoLines.when(/^KIT net mac .*, link up$/, () => resolve()),
    );
    await echo.start();
    await Promise.race([echoReady, echo.exited]);
    await ping.start();
    const [echoStop, pingStop] = await Promise.all([echo.exited, ping.exited]);
    channel.close();
    expect(pingStop, describeStop(pingStop, pingLines.text + '\n--- echo VM ---\n' + echoLines.text)).toEqual(
      { reason: 'debug-exit', code: 0 },
    );
    expect(echoStop, describeStop(echoStop, echoLines.text)).toEqual({ reason: 'debug-exit', code: 0 });
    expect(pingLines.text).toContain(`KIT net ok: 4 frames echoed by ${macB}`);
    expect(echoLines.text).toContain('KIT net echo ok: 4 frames');
    expectCleanTransports(ping.lastStats);
    expectCleanTransports(echo.lastStats);
    console.log(
      `[driver-kit] two VMs over a NetChannel: ${((performance.now() - started) / 1000).toFixed(2)} s`,
    );
  });

  it('reports a failing step with its code: a vsock connection nobody listens for is refused', async () => {
    const vm = new MicroVm({
      memory: { size: 32 * MiB },
      boot: { kind: 'payload', payload: loadPayload('driver-kit'), mode: 'long-cpl3', regs: { rdx: 1 } },
      serial: false,
      vsock: { cid: 7, udsPath: join(dir, 'nobody') },
    });
    const lines = new ConsoleLines(vm);
    await vm.start();
    expect(await vm.exited).toEqual({ reason: 'debug-exit', code: 0x61 });
    expect(lines.text).toContain('KIT FAIL 0x61: vsock: connection to host port 5000 refused (RST)');
    expect(devices(vm.lastStats)['virtio-vsock@0'].device).toMatchObject({ refusedConnections: 1 });
  });

  it('examples/virtio-console-hello prints through the virtio console only', async () => {
    const r = await virtioConsoleHello();
    expect(r.stop).toEqual({ reason: 'debug-exit', code: 0 });
    expect(r.output).toBe('Hello from the virtio console!\n');
  });
});

/** What the read-only image must still hold. */
function makeExpectedRo(): Buffer {
  const image = Buffer.alloc(DISK_SECTORS * SECTOR);
  for (let i = 0; i < SECTOR; i++) image[i] = sector0Byte(i);
  return image;
}
