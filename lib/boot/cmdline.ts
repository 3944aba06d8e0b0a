/**
 * Kernel command line: validation (what the kernel and our layout accept) and `key=value` editing that
 * never duplicates a key. Quoted values (`key="a b"`) stay one parameter; parameters after `--` belong to
 * init and are kept after everything we add.
 */
import { CMDLINE_MAX_SIZE } from '../arch/x86_64/layout.js';
import { BootError } from './errors.js';

/** Longest command line (without its NUL) that fits our CMDLINE_START area. */
export const CMDLINE_MAX_LENGTH = CMDLINE_MAX_SIZE - 1;

/**
 * Checks that `cmdline` is printable ASCII and fits both our area and the kernel's `cmdline_size`
 * (which excludes the terminating NUL).
 */
export function validateCmdline(cmdline: string, kernelMax: number = CMDLINE_MAX_LENGTH): void {
  const max = Math.min(kernelMax, CMDLINE_MAX_LENGTH);
  for (let i = 0; i < cmdline.length; i++) {
    const c = cmdline.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) {
      const what = c === 0 ? 'a NUL byte' : `character code ${c}`;
      throw new BootError(
        'BAD_CMDLINE',
        `command line has ${what} at index ${i}; only printable ASCII is allowed`,
      );
    }
  }
  if (cmdline.length > max) {
    throw new BootError(
      'BAD_CMDLINE',
      `command line is ${cmdline.length} bytes; the limit is ${max}` +
        (max === kernelMax ? " (the kernel's cmdline_size)" : ''),
    );
  }
  let quotes = 0;
  for (const ch of cmdline) if (ch === '"') quotes++;
  if (quotes % 2 !== 0) throw new BootError('BAD_CMDLINE', 'command line has an unterminated double quote');
}

/** The command line as the guest sees it: ASCII bytes plus the terminating NUL. */
export function encodeCmdline(cmdline: string, kernelMax?: number): Uint8Array {
  validateCmdline(cmdline, kernelMax);
  const bytes = new Uint8Array(cmdline.length + 1);
  for (let i = 0; i < cmdline.length; i++) bytes[i] = cmdline.charCodeAt(i);
  return bytes;
}

/** Splits at spaces outside double quotes, as the kernel's next_arg() does. */
export function splitCmdline(cmdline: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of cmdline) {
    if (ch === '"') quoted = !quoted;
    if (ch === ' ' && !quoted) {
      if (cur) out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur) out.push(cur);
  return out;
}

function keyOf(param: string): string {
  const eq = param.indexOf('=');
  return eq < 0 ? param : param.slice(0, eq);
}

const KEY_RE = /^[A-Za-z0-9_.\-[\]]+$/;

function formatParam(key: string, value: string | number | boolean | undefined): string {
  // "--" is not a key: it separates kernel parameters from arguments for init.
  if (!KEY_RE.test(key) || key === '--')
    throw new BootError('BAD_CMDLINE', `invalid command line key ${JSON.stringify(key)}`);
  if (value === undefined || value === true) return key;
  const text = String(value);
  if (text.includes('"')) throw new BootError('BAD_CMDLINE', `value for ${key} contains a double quote`);
  return /\s/.test(text) ? `${key}="${text}"` : `${key}=${text}`;
}

/** An editable kernel command line. */
export class Cmdline {
  private params: string[];
  private initArgs: string[];

  constructor(initial = '') {
    validateCmdline(initial, Number.MAX_SAFE_INTEGER);
    const parts = splitCmdline(initial);
    const dashes = parts.indexOf('--');
    this.params = dashes < 0 ? parts : parts.slice(0, dashes);
    this.initArgs = dashes < 0 ? [] : parts.slice(dashes + 1);
  }

  /**
   * Sets `key=value` (or a bare `key` when value is undefined/true), replacing every earlier occurrence of
   * the key in place; `false` removes it.
   */
  set(key: string, value?: string | number | boolean): this {
    if (value === false) return this.remove(key);
    const param = formatParam(key, value);
    const first = this.params.findIndex((p) => keyOf(p) === key);
    if (first < 0) this.params.push(param);
    else {
      this.params = this.params.filter((p, i) => i === first || keyOf(p) !== key);
      this.params[first] = param;
    }
    return this;
  }

  /** Sets `key=value` only if the key is not present yet (user settings win over defaults). */
  setDefault(key: string, value?: string | number | boolean): this {
    return this.has(key) ? this : this.set(key, value);
  }

  remove(key: string): this {
    this.params = this.params.filter((p) => keyOf(p) !== key);
    return this;
  }

  has(key: string): boolean {
    return this.params.some((p) => keyOf(p) === key);
  }

  /** The value of `key` (unquoted), '' for a bare key, undefined if absent. */
  get(key: string): string | undefined {
    const p = this.params.find((q) => keyOf(q) === key);
    if (p === undefined) return undefined;
    const eq = p.indexOf('=');
    if (eq < 0) return '';
    const v = p.slice(eq + 1);
    return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
  }

  toString(): string {
    return [...this.params, ...(this.initArgs.length ? ['--', ...this.initArgs] : [])].join(' ');
  }

  /** Validated NUL-terminated bytes. */
  encode(kernelMax?: number): Uint8Array {
    return encodeCmdline(this.toString(), kernelMax);
  }
}

/** Returns `cmdline` with `key` set to `value` (see Cmdline.set). */
export function setCmdlineParam(cmdline: string, key: string, value?: string | number | boolean): string {
  return new Cmdline(cmdline).set(key, value).toString();
}
