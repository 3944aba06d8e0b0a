/**
 * The C baseline as a long-running child speaking a line protocol (see bench/baseline/kvm-bench.c): the JS
 * runner sends one command, waits for the reply, and in the meantime the child is blocked on its stdin, so the
 * two sides never compete for the CPU.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface, type Interface } from 'node:readline';

export type Reply = Record<string, number>;

export class CBaseline {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: Interface;
  private readonly queue: string[] = [];
  private waiter: ((line: string) => void) | undefined;
  private exitError: Error | undefined;

  constructor(executable: string, guestDir: string) {
    this.child = spawn(executable, [guestDir], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    this.child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    this.lines = createInterface({ input: this.child.stdout });
    this.lines.on('line', (line) => {
      const w = this.waiter;
      if (w !== undefined) {
        this.waiter = undefined;
        w(line);
      } else this.queue.push(line);
    });
    this.child.on('exit', (code, signal) => {
      this.exitError = new Error(`C baseline exited (${signal ?? code}): ${stderr.trim()}`);
      this.waiter?.(`err ${this.exitError.message}`);
      this.waiter = undefined;
    });
  }

  /** Sends one command; resolves with the reply's key=value numbers, rejects on "err ...". */
  async call(command: string): Promise<Reply> {
    if (this.exitError !== undefined) throw this.exitError;
    this.child.stdin.write(`${command}\n`);
    const line = this.queue.shift() ?? (await new Promise<string>((resolve) => (this.waiter = resolve)));
    if (!line.startsWith('ok')) throw new Error(`C baseline: ${command}: ${line.replace(/^err /, '')}`);
    const reply: Reply = {};
    for (const [, k, v] of line.matchAll(/(\w+)=(-?\d+(?:\.\d+)?)/g)) reply[k] = Number(v);
    return reply;
  }

  async close(): Promise<void> {
    if (this.exitError !== undefined) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin.end('quit\n');
    await exited;
    this.lines.close();
  }
}

/** Runs a fresh C process for one command (for RSS, which must not see the long-running child's VMs). */
export async function cOnce(executable: string, guestDir: string, command: string): Promise<Reply> {
  const c = new CBaseline(executable, guestDir);
  try {
    return await c.call(command);
  } finally {
    await c.close();
  }
}
