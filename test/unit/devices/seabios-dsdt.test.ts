import { describe, expect, it } from 'vitest';
import { buildDsdt } from '../../../lib/boot/acpi/tables.js';

/**
 * A transcription of SeaBIOS 1.16.2's src/fw/dsdt_parser.c (the part virtio_mmio_setup_acpi relies on), to
 * check that our DSDT is shaped the way that parser understands: it walks the AML term list from offset 0x24,
 * records every Device with a Name(_HID, "…") string and a Name(_CRS, Buffer), skips Methods/Packages/Fields,
 * and abandons the rest of a term list at the first opcode it does not know.
 */
interface Dev {
  name: string;
  hid?: string;
  crs?: Uint8Array;
}

function parseDsdt(dsdt: Uint8Array): { devices: Dev[]; errors: number } {
  const devices: Dev[] = [];
  let errors = 0;
  const st = { name: '', dev: undefined as Dev | undefined, error: false, depth: 0 };

  const pkglength = (at: number): [number, number] => {
    const b = dsdt[at];
    const extra = b >> 6;
    if (extra === 0) return [b & 0x3f, 1];
    let len = b & 0x0f;
    for (let i = 1; i <= extra; i++) len |= dsdt[at + i] << (4 + 8 * (i - 1));
    return [len, extra + 1];
  };
  const nameseg = (at: number): string =>
    String.fromCharCode(dsdt[at]) +
    [1, 2, 3]
      .map((i) => dsdt[at + i])
      .filter((c) => c !== 0x5f)
      .map((c) => String.fromCharCode(c))
      .join('');
  const namestring = (at: number): number => {
    let off = 0;
    let name = '';
    for (;;) {
      const c = dsdt[at + off];
      if (c === 0x5c || c === 0x5e) {
        name += String.fromCharCode(c);
        off++;
        continue;
      }
      if (c === 0) off++;
      else if (c === 0x2e) {
        name += nameseg(at + off + 1) + '.' + nameseg(at + off + 5);
        off += 9;
      } else if (c === 0x2f) {
        const n = dsdt[at + off + 1];
        const segs = [];
        for (let i = 0; i < n; i++) segs.push(nameseg(at + off + 2 + 4 * i));
        name += segs.join('.');
        off += 2 + 4 * n;
      } else if ((c >= 0x41 && c <= 0x5a) || c === 0x5f) {
        name += nameseg(at + off);
        off += 4;
      } else st.error = true;
      break;
    }
    st.name = name;
    return off;
  };
  const termargInt = (at: number): [number, number] => {
    switch (dsdt[at]) {
      case 0x00:
        return [0, 1];
      case 0x01:
        return [1, 1];
      case 0x0a:
        return [dsdt[at + 1], 2];
      case 0x0b:
        return [dsdt[at + 1] | (dsdt[at + 2] << 8), 3];
      case 0x0c:
        return [new DataView(dsdt.buffer, dsdt.byteOffset).getUint32(at + 1, true), 5];
      default:
        st.error = true;
        return [0, 1];
    }
  };
  const termlist = (base: number, offset: number, length: number): void => {
    for (;;) {
      offset += termobj(base + offset);
      if (offset === length) return;
      if (offset > length || st.error) {
        errors++;
        st.error = false;
        return;
      }
    }
  };
  const termobj = (at: number): number => {
    let off = 1;
    if (st.depth === 16) {
      st.error = true;
      return off;
    }
    st.depth++;
    const op = dsdt[at];
    switch (op) {
      case 0x00:
      case 0x01:
        break;
      case 0x06:
        off += namestring(at + off);
        off += namestring(at + off);
        break;
      case 0x08: {
        off += namestring(at + off);
        const nameAt = at;
        off += termobj(at + off);
        if (st.dev && st.name === '_HID' && dsdt[nameAt + 5] === 0x0d) {
          let end = nameAt + 6;
          while (dsdt[end] !== 0) end++;
          st.dev.hid = Buffer.from(dsdt.subarray(nameAt + 6, end)).toString('latin1');
        }
        break;
      }
      case 0x0a:
        off += 1;
        break;
      case 0x0b:
        off += 2;
        break;
      case 0x0c:
        off += 4;
        break;
      case 0x0d:
        while (dsdt[at + off]) off++;
        off++;
        break;
      case 0x10: {
        const [len, n] = pkglength(at + 1);
        const o = n + namestring(at + 1 + n);
        termlist(at + 1, o, len);
        off += len;
        break;
      }
      case 0x11: {
        const [len, n] = pkglength(at + 1);
        const [blen, m] = termargInt(at + 1 + n);
        if (st.dev && st.name === '_CRS') st.dev.crs = dsdt.subarray(at + 1 + n + m, at + 1 + n + m + blen);
        off += len;
        break;
      }
      case 0x12:
      case 0x13:
      case 0x14: {
        const [len, n] = pkglength(at + 1);
        if (op === 0x14) namestring(at + 1 + n);
        off += len;
        break;
      }
      case 0x5b: {
        off++;
        const ext = dsdt[at + 1];
        if (ext === 0x82) {
          const [len, n] = pkglength(at + 2);
          const o = n + namestring(at + 2 + n);
          const dev: Dev = { name: st.name };
          devices.push(dev);
          st.dev = dev;
          termlist(at + 2, o, len);
          st.dev = undefined;
          off += len;
        } else if (ext === 0x80) {
          off += namestring(at + off);
          off++;
          off += termargInt(at + off)[1];
          off += termargInt(at + off)[1];
        } else if (ext >= 0x81 && ext <= 0x85) {
          const [len, n] = pkglength(at + 2);
          namestring(at + 2 + n);
          off += len;
        } else st.error = true;
        break;
      }
      default:
        st.error = true;
    }
    st.depth--;
    return off;
  };
  const length = new DataView(dsdt.buffer, dsdt.byteOffset).getUint32(4, true);
  termlist(0, 0x24, length);
  return { devices, errors };
}

/** find_resource(kind): 0 = Memory32Fixed, 3 = IRQ / Extended Interrupt (first number). */
function findResource(crs: Uint8Array, kind: 0 | 3): number | undefined {
  let at = 0;
  while (at < crs.length) {
    const tag = crs[at];
    if (!(tag & 0x80)) {
      const name = (tag >> 3) & 0x0f;
      const size = (tag & 7) + 1;
      if (name === 0x0f) return undefined;
      if (name === 0x04 && kind === 3) {
        const mask = crs[at + 1] | (crs[at + 2] << 8);
        for (let bit = 0; bit < 16; bit++) if (mask & (1 << bit)) return bit;
        return 0;
      }
      at += size;
    } else {
      const name = tag & 0x7f;
      const v = new DataView(crs.buffer, crs.byteOffset + at);
      if (name === 0x06 && kind === 0) return v.getUint32(4, true);
      if (name === 0x09 && kind === 3) return v.getUint32(5, true);
      at += v.getUint16(1, true) + 3;
    }
  }
  return undefined;
}

describe("our DSDT through SeaBIOS's DSDT parser", () => {
  it('finds every LNRO0005 device with its Memory32Fixed base and interrupt, without parse errors', () => {
    const dsdt = buildDsdt({
      vcpus: 2,
      virtio: [0, 1, 2].map((n) => ({ base: 0xd000_0000 + n * 0x1000, size: 0x1000, gsi: 16 + n })),
      serial: true,
    });
    const { devices, errors } = parseDsdt(dsdt);
    expect(errors).toBe(0);
    const virtio = devices.filter((d) => d.hid === 'LNRO0005');
    expect(virtio.map((d) => [findResource(d.crs!, 0), findResource(d.crs!, 3)])).toEqual([
      [0xd000_0000, 16],
      [0xd000_1000, 17],
      [0xd000_2000, 18],
    ]);
    // COM1 and the keyboard use EISA IDs (not strings) and are skipped by the LNRO0005 search.
    expect(devices.length).toBe(5);
  });

  it('would miss a device whose _CRS is a Method (so ours must stay a Name with a Buffer)', () => {
    // Device (VR00) { Name (_HID, "LNRO0005"); Method (_CRS) { Return (Buffer (2) {0x79, 0x00}) } }
    const hid = [0x08, 0x5f, 0x48, 0x49, 0x44, 0x0d, ...Buffer.from('LNRO0005'), 0];
    const method = [0x14, 0x0d, 0x5f, 0x43, 0x52, 0x53, 0x00, 0xa4, 0x11, 0x05, 0x0a, 0x02, 0x79, 0x00];
    const body = [0x56, 0x52, 0x30, 0x30, ...hid, ...method];
    const dev = [0x5b, 0x82, body.length + 1, ...body];
    const dsdt = new Uint8Array(36 + dev.length);
    dsdt.set(Buffer.from('DSDT'));
    new DataView(dsdt.buffer).setUint32(4, dsdt.length, true);
    dsdt.set(dev, 36);
    const { devices, errors } = parseDsdt(dsdt);
    expect(errors).toBe(0);
    expect(devices[0].hid).toBe('LNRO0005');
    expect(devices[0].crs).toBeUndefined();
  });
});
