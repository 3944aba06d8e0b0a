/**
 * The baseline for VM-to-VM virtio-net: the same in-process frame channel (lib/vmm/net-channel.ts: shared rings
 * and eventfd doorbells) pumped by two worker threads with no VM at all. A worker thread script.
 *
 * Control block (Int32Array over a SharedArrayBuffer): [0] command (0 idle, 1 run, 2 quit), [1] frames the
 * receiver must count, [2] done flag; Float64 at byte 16: the receiver's milliseconds from its first frame to
 * the last one counted.
 */
import { performance } from 'node:perf_hooks';
import { isMainThread, workerData } from 'node:worker_threads';
import { native } from '../lib/native/binding.js';
import { FrameRing } from '../lib/vmm/net-channel.js';
import type { NetChannelEnd } from '../lib/vmm/config.js';

export interface PumpData {
  role: 'tx' | 'rx';
  end: NetChannelEnd;
  control: SharedArrayBuffer;
  frameLength: number;
  batch: number;
}

export const CMD_IDLE = 0;
export const CMD_RUN = 1;
export const CMD_QUIT = 2;

function tx(d: PumpData, ctl: Int32Array): void {
  const ring = new FrameRing(d.end.tx);
  const io = native().hostIo;
  const one = new Uint8Array(8);
  one[0] = 1;
  const frame = new Uint8Array(d.frameLength).fill(0xff, 0, 6);
  for (;;) {
    const cmd = Atomics.load(ctl, 0);
    if (cmd === CMD_QUIT) return;
    if (cmd !== CMD_RUN) {
      Atomics.wait(ctl, 0, cmd);
      continue;
    }
    // Like ChannelNetBackend.send(): push (dropping when the ring is full), then ring the doorbell.
    for (let i = 0; i < d.batch; i++) ring.push(frame);
    io.write(d.end.txDoorbell, one);
  }
}

function rx(d: PumpData, ctl: Int32Array, elapsed: Float64Array): void {
  const ring = new FrameRing(d.end.rx);
  const io = native().hostIo;
  const scratch = new Uint8Array(8);
  for (;;) {
    const cmd = Atomics.load(ctl, 0);
    if (cmd === CMD_QUIT) return;
    if (cmd !== CMD_RUN || Atomics.load(ctl, 2) === 1) {
      Atomics.wait(ctl, 0, cmd, 50);
      continue;
    }
    while (ring.pop() !== undefined); // stale frames from before this chunk
    const want = Atomics.load(ctl, 1);
    let count = 0;
    let first = 0;
    while (count < want + 1 && Atomics.load(ctl, 0) === CMD_RUN) {
      io.read(d.end.rxDoorbell, scratch); // blocking: like the VM thread's epoll wait on the doorbell
      for (let f = ring.pop(); f !== undefined; f = ring.pop()) {
        if (count === 0) first = performance.now();
        count++;
      }
    }
    elapsed[0] = performance.now() - first;
    Atomics.store(ctl, 2, 1);
    Atomics.notify(ctl, 2);
  }
}

// Imported on the main thread for its constants; it only pumps inside a worker.
const data = isMainThread ? undefined : (workerData as PumpData | undefined);
if (data !== undefined && data !== null) {
  const ctl = new Int32Array(data.control, 0, 4);
  const elapsed = new Float64Array(data.control, 16, 1);
  if (data.role === 'tx') tx(data, ctl);
  else rx(data, ctl, elapsed);
}
