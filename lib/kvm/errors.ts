/** Errors the kvm layer adds on top of the native ones (which carry code/errno/syscall already). */

export interface SystemError extends Error {
  code?: string;
  errno?: number;
  syscall?: string;
}

export function isSystemError(e: unknown): e is SystemError {
  return e instanceof Error && typeof (e as SystemError).code === 'string';
}

/** Advice for a /dev/kvm that cannot be opened, keyed by errno code. */
export function kvmAccessAdvice(code: string | undefined, path: string): string | undefined {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return (
        `permission denied on ${path}. Add your user to the 'kvm' group (sudo usermod -aG kvm $USER, then log ` +
        `in again), or install a udev rule: echo 'KERNEL=="kvm", GROUP="kvm", MODE="0660"' | sudo tee ` +
        `/etc/udev/rules.d/65-kvm.rules && sudo udevadm control --reload && sudo udevadm trigger`
      );
    case 'ENOENT':
    case 'ENODEV':
    case 'ENXIO':
      return (
        `${path} does not exist: KVM is not available on this host. Enable virtualization (VT-x/AMD-V) in ` +
        `the firmware, load the module (sudo modprobe kvm_intel or kvm_amd), or, inside a VM, enable nested ` +
        `virtualization`
      );
    default:
      return undefined;
  }
}

/** Wraps a native open() failure with what to do about it, keeping code/errno/syscall. */
export function withAccessAdvice(e: unknown, path: string): unknown {
  if (!isSystemError(e)) return e;
  const advice = kvmAccessAdvice(e.code, path);
  if (advice === undefined) return e;
  const wrapped: SystemError = new Error(`cannot open ${path}: ${advice}`, { cause: e });
  wrapped.code = e.code;
  wrapped.errno = e.errno;
  wrapped.syscall = e.syscall;
  return wrapped;
}
