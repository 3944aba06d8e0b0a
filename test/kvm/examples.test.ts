/** Every example, run for real on /dev/kvm. */
import { expect, it } from 'vitest';
import { computeRealMode, RESULT_ADDRESS } from '../../examples/compute-real-mode.js';
import { cpl3Loop } from '../../examples/cpl3-loop.js';
import { deviceEcho } from '../../examples/device-echo.js';
import { helloLongMode } from '../../examples/hello-long-mode.js';
import { helloProtectedMode } from '../../examples/hello-protected-mode.js';
import { helloRealMode } from '../../examples/hello-real-mode.js';
import { readmeExample } from '../../examples/readme-example.js';
import { describeKvm } from '../support/kvm.js';

describeKvm('examples', () => {
  it("the README's example runs as printed", () => {
    let out = '';
    readmeExample((s) => (out += s));
    expect(out).toBe('K');
  });

  it('hello-real-mode prints its greeting and halts', () => {
    const r = helloRealMode();
    expect(r.output).toBe('Hello from real mode!\n');
    expect(r.stop).toEqual({ reason: 'hlt' });
  });

  it('compute-real-mode leaves Fibonacci numbers in registers and memory', () => {
    const r = computeRealMode();
    expect(r.stop.reason).toBe('hlt');
    expect(r.ax).toBe(46368); // fib(24)
    expect(r.bx).toBe(0xc0de);
    expect(r.cx).toBe(16);
    const fib = [0, 1];
    while (fib.length < 16) fib.push(fib[fib.length - 1] + fib[fib.length - 2]);
    expect(r.table).toEqual(fib);
    expect(RESULT_ADDRESS).toBe(0x5000);
  });

  it('hello-protected-mode greets from 32-bit code and sums 1..1000', () => {
    const r = helloProtectedMode();
    expect(r.output).toBe('Hello from protected mode!\n');
    expect(r.stop.reason).toBe('hlt');
    expect(r.eax).toBe(500500);
  });

  it('hello-long-mode greets from 64-bit code and writes its marker past the first 2 MiB page', () => {
    const r = helloLongMode();
    expect(r.output).toBe('Hello from long mode!\n');
    expect(r.stop.reason).toBe('hlt');
    expect(r.rax).toBe(0x1122334455667788n);
    expect(r.marker).toBe(0x1122334455667788n);
  });

  it('cpl3-loop runs a user-mode loop and exits through the debug-exit port', () => {
    const r = cpl3Loop(200);
    expect(r.stop).toEqual({ reason: 'debug-exit', code: 0x31 });
    expect(r.ticks).toBe(200);
    expect(r.iterations).toBe(200 * 10_000);
  });

  it('device-echo talks to a TypeScript device: counter readings and upper-cased echo', () => {
    const r = deviceEcho('hello, Device 42!');
    expect(r.stop.reason).toBe('hlt');
    expect(r.counterReadings).toEqual([100, 101, 102]);
    expect(r.echoed).toBe('HELLO, DEVICE 42!');
  });
});
