import { expect, it } from 'vitest';
import { ResetControl } from '../../../lib/devices/reset-control.js';

it('0xCF9: RST_CPU requests a reset; other bits read back', () => {
  let resets = 0;
  const rc = new ResetControl(() => resets++);
  const d = Uint8Array.of(0x02);
  rc.write(0, d);
  expect(resets).toBe(0);
  const r = new Uint8Array(1);
  rc.read(0, r);
  expect(r[0]).toBe(0x02);
  rc.write(0, Uint8Array.of(0x06));
  expect(resets).toBe(1);
});
