/**
 * virtio console hello: a freestanding C guest (test/guest/console-hello.c, 64-bit user mode) brings up the
 * virtio console through its virtio-mmio registers and prints a greeting on port 0's transmit queue. The VM runs
 * on its own thread (MicroVm); the greeting arrives as 'console' events.
 * Run: node dist/examples/virtio-console-hello.js
 */
import { MicroVm } from '../lib/vmm/micro-vm.js';
import { formatStopReason, type StopReason } from '../lib/vmm/stop.js';
import { isMain } from './lib/main.js';
import { loadPayload } from './lib/payloads.js';

export async function virtioConsoleHello(
  onConsole?: (text: string) => void,
): Promise<{ output: string; stop: StopReason }> {
  const vm = new MicroVm({
    memory: { size: 16 * 1024 * 1024 },
    boot: { kind: 'payload', payload: loadPayload('virtio-console-hello'), mode: 'long-cpl3' },
    // Only the virtio console: no 8250, no port 0xE9, so every byte of output went through the virtqueue.
    serial: false,
    debugConsole: false,
    virtioConsole: true,
  });
  const decoder = new TextDecoder();
  let output = '';
  vm.on('console', (bytes) => {
    const text = decoder.decode(bytes, { stream: true });
    output += text;
    onConsole?.(text);
  });
  await vm.start();
  const stop = await vm.exited;
  return { output, stop };
}

if (isMain(import.meta.url)) {
  const { stop } = await virtioConsoleHello((text) => process.stdout.write(text));
  if (stop.reason !== 'debug-exit' || stop.code !== 0) {
    console.error(`guest stopped unexpectedly: ${formatStopReason(stop)}`);
    process.exitCode = 1;
  }
}
