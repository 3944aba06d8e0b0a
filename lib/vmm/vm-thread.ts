/**
 * The VM thread (a worker_thread): builds the VM, serves its event loop, and talks to the MicroVm on the main
 * thread. Control messages arrive on the parent port; the main thread then writes the control eventfd, which
 * wakes the loop's epoll wait, and the loop drains the port synchronously.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { VirtioBalloon } from '../virtio/devices/balloon.js';
import { native } from '../native/binding.js';
import { buildMicroVm, type BuiltVm } from './builder.js';
import type { MicroVmConfig } from './config.js';
import type { FromVmThread, ToVmThread } from './messages.js';
import type { StopReason } from './stop.js';

interface VmThreadData {
  config: MicroVmConfig;
  controlFd: number;
}

function post(m: FromVmThread): void {
  parentPort!.postMessage(m);
}

/** A device's counters in one flat object: its stats (or counters), bytesProvided, and its error counts. */
function deviceStats(device: object): Record<string, unknown> {
  const d = device as { stats?: object; counters?: object; errors?: object; bytesProvided?: number };
  return {
    ...d.counters,
    ...d.stats,
    ...(d.bytesProvided !== undefined ? { bytesProvided: d.bytesProvided } : {}),
    ...(d.errors !== undefined ? { errors: d.errors } : {}),
  };
}

function stats(b: BuiltVm) {
  return {
    exits: b.loop.exits,
    unclaimedPio: b.pio.unclaimedReads + b.pio.unclaimedWrites,
    unclaimedMmio: b.mmio.unclaimedReads + b.mmio.unclaimedWrites,
    devices: Object.fromEntries(
      b.virtio.map((v) => [
        `${v.name}@${v.slot}`,
        { transport: v.transport.stats, device: deviceStats(v.device) },
      ]),
    ),
  };
}

function handle(b: BuiltVm, m: ToVmThread): void {
  switch (m.type) {
    case 'pause':
      b.loop.pause(() => post({ type: 'paused' }));
      break;
    case 'resume':
      b.loop.resume();
      post({ type: 'resumed' });
      break;
    case 'stop':
      b.control.requestStop({ reason: 'stopped' });
      break;
    case 'console-input':
      b.consoleInput(m.data);
      break;
    case 'balloon-target':
      b.device(VirtioBalloon)?.setTarget(m.pages);
      break;
    case 'stats':
      post({ type: 'stats', stats: stats(b) });
      break;
  }
}

function main(): void {
  const { config, controlFd } = workerData as VmThreadData;
  let built: BuiltVm;
  try {
    built = buildMicroVm(config, {
      onConsole: (data) => post({ type: 'console', data }),
      onBalloonStats: (stats) => post({ type: 'balloon-stats', stats }),
      onProgress: (message) => post({ type: 'progress', message }),
      onFirmwareLog: (data) => post({ type: 'firmware-log', data }),
    });
  } catch (e) {
    const err = e as Error & { code?: string };
    post({
      type: 'exit',
      stop: {
        reason: 'error',
        kind: 'vmm',
        message: `cannot build the VM: ${err.message}`,
        detail: { code: err.code },
      },
    });
    return;
  }
  const scratch = new Uint8Array(8);
  const io = native().hostIo;
  built.loop.watch(controlFd, 1, () => {
    io.read(controlFd, scratch);
    for (let m = receiveMessageOnPort(parentPort!); m !== undefined; m = receiveMessageOnPort(parentPort!)) {
      handle(built, m.message as ToVmThread);
    }
  });
  post({ type: 'started', backing: built.memory.backing, vcpus: built.vcpus.length });
  let stop: StopReason;
  try {
    stop = built.loop.run();
  } catch (e) {
    stop = { reason: 'error', kind: 'vmm', message: (e as Error).message };
  }
  const final = stats(built);
  built.loop.unwatch(controlFd);
  built.close();
  post({ type: 'stats', stats: final });
  post({ type: 'exit', stop });
}

main();
