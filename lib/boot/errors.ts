/** Errors raised by the boot builders. `code` names the kind of problem so callers can branch on it. */
export type BootErrorCode =
  | 'BAD_KERNEL' // not a bzImage / ELF we can boot, or a corrupt header
  | 'BAD_PAYLOAD' // compressed kernel payload cannot be decoded
  | 'BAD_CMDLINE'
  | 'BAD_INITRD'
  | 'BAD_E820'
  | 'BAD_ACPI'
  | 'BAD_CPIO'
  | 'NO_ROOM'; // guest RAM too small for what must be placed

export class BootError extends Error {
  readonly code: BootErrorCode;
  constructor(code: BootErrorCode, message: string) {
    super(message);
    this.name = 'BootError';
    this.code = code;
  }
}
