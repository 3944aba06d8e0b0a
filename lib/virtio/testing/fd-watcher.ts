/**
 * An FdWatcher for tests: it records registrations and delivers events when told to, either to one fd or, with
 * `poll()`, to every watched fd with its full interest set (spurious readiness is harmless because backends do
 * non-blocking I/O and handle EAGAIN).
 */
import type { FdWatcher } from '../host-io.js';

export class ManualFdWatcher implements FdWatcher {
  readonly watched = new Map<number, { events: number; onEvent: (events: number) => void }>();

  watch(fd: number, events: number, onEvent: (events: number) => void): void {
    this.watched.set(fd, { events, onEvent });
  }

  unwatch(fd: number): void {
    this.watched.delete(fd);
  }

  /** Delivers `events` (masked by interest) to fd. */
  fire(fd: number, events: number): void {
    const w = this.watched.get(fd);
    if (w !== undefined && (w.events & events) !== 0) w.onEvent(w.events & events);
  }

  /** Delivers every watched fd its interest set once. Returns how many callbacks ran. */
  poll(): number {
    let n = 0;
    for (const [fd, w] of [...this.watched]) {
      if (w.events !== 0 && this.watched.get(fd) === w) {
        w.onEvent(w.events);
        n++;
      }
    }
    return n;
  }

  interest(fd: number): number | undefined {
    return this.watched.get(fd)?.events;
  }
}
