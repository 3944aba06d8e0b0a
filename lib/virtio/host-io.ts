/**
 * What device backends need from the host, as injected interfaces: the raw-fd host I/O of the native addon
 * (`native().hostIo`, typed in lib/native/binding.ts) and an fd watcher that the VMM implements over its epoll
 * poller. Unit tests pass fakes. Data-path calls return a byte count or a negative errno; they never throw.
 */
import { closeSync, fdatasyncSync, readSync, writeSync } from 'node:fs';
import type { NativeHostIo } from '../native/binding.js';

/** Positional file I/O for the block device. */
export type BlockFileIo = Pick<NativeHostIo, 'pread' | 'pwrite' | 'fdatasync' | 'fallocate' | 'close'>;
/** Tap device I/O for the net device. */
export type TapIo = Pick<NativeHostIo, 'openTap' | 'read' | 'write' | 'close'>;
/** Unix-socket I/O for the vsock device. */
export type SocketIo = Pick<
  NativeHostIo,
  'read' | 'write' | 'unixListen' | 'unixConnect' | 'accept' | 'shutdown' | 'close'
>;

/** epoll event bits, as the native poller reports them. */
export const FD_IN = 0x1;
export const FD_OUT = 0x4;
export const FD_ERR = 0x8;
export const FD_HUP = 0x10;
export const FD_RDHUP = 0x2000;

/**
 * Level-triggered readiness for backend fds, provided by whoever runs the VM thread's loop (the VMM maps it to
 * NativePoller add/modify/remove). `watch` on an fd already watched replaces its interest set and callback;
 * events 0 keeps the registration but asks for nothing. Callbacks run on the VM thread and never throw.
 */
export interface FdWatcher {
  watch(fd: number, events: number, onEvent: (events: number) => void): void;
  unwatch(fd: number): void;
}

/** errno values backends act on (Linux x86-64/arm64). */
export const EIO = 5;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOSPC = 28;
export const EPIPE = 32;
export const EOPNOTSUPP = 95;
export const ECONNRESET = 104;

/** fallocate(2) modes. */
export const FALLOC_FL_KEEP_SIZE = 0x1;
export const FALLOC_FL_PUNCH_HOLE = 0x2;
export const FALLOC_FL_ZERO_RANGE = 0x10;

/** Negative errno from a Node fs error (libuv reports -errno in `errno`), EIO when unknown. */
function negativeErrno(error: unknown): number {
  const errno = (error as { errno?: unknown }).errno;
  return typeof errno === 'number' && errno < 0 ? errno : -EIO;
}

/**
 * BlockFileIo over node:fs, for hosts without the native addon (and tests): pread/pwrite/fdatasync work,
 * fallocate reports EOPNOTSUPP so the block device falls back to writing zeros.
 */
export const nodeFsBlockIo: BlockFileIo = {
  pread(fd, buf, position) {
    try {
      return readSync(fd, buf, 0, buf.length, position);
    } catch (error) {
      return negativeErrno(error);
    }
  },
  pwrite(fd, buf, position) {
    try {
      return writeSync(fd, buf, 0, buf.length, position);
    } catch (error) {
      return negativeErrno(error);
    }
  },
  fdatasync(fd) {
    try {
      fdatasyncSync(fd);
      return 0;
    } catch (error) {
      return negativeErrno(error);
    }
  },
  fallocate() {
    return -EOPNOTSUPP;
  },
  close(fd) {
    closeSync(fd);
  },
};
