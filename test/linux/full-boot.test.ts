/**
 * Full boot of the stock Debian kernel to a busybox shell, with 2 vCPUs and every virtio device used from Linux,
 * then the poweroff and reboot paths. This needs hardware virtualization: on PVM hosts (software KVM, where
 * kernel-mode guest code is emulated and `int3`, `cmpxchg16b` and `xrstor` are not) a stock kernel cannot boot
 * under any VMM, so the test is skipped there with that reason printed.
 */
import { createServer, type Server } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildGuestInitramfs, guestAssetsDir, readGuestAssets } from '../../lib/boot/initramfs/index.js';
import { checkHost } from '../../lib/vmm/host-check.js';
import { MicroVm } from '../../lib/vmm/micro-vm.js';
import { NetChannel, NetChannelPeer } from '../../lib/vmm/net-channel.js';
import type { StopReason } from '../../lib/vmm/stop.js';
import { describeKvm, kvmUnusableReason } from '../support/kvm.js';

const ASSETS = guestAssetsDir();

function skipReason(): string | undefined {
  if (kvmUnusableReason !== undefined) return undefined; // describeKvm already skips and says why
  if (!existsSync(join(ASSETS, 'manifest.json')))
    return `guest assets missing in ${ASSETS} (node scripts/guest-assets.mjs)`;
  const host = checkHost({ measureSpeed: false });
  if (host.pvm) {
    return (
      'this host is PVM (kvm_pvm, no vmx/svm): kernel-mode guest code is emulated at ~4 M instr/s and stops on ' +
      'instructions the emulator lacks (cmpxchg16b, xrstor, int3), so no stock kernel can boot here under any VMM'
    );
  }
  return undefined;
}

const reason = skipReason();
if (reason) console.warn(`[node-kvm] skipping the full Linux boot test: ${reason}`);

const GUEST_MAC = '02:00:00:00:00:02';
const VSOCK_PORT = 5000;

/** What /test.sh does inside the guest; each line the host checks is prefixed with TEST. */
const TEST_SCRIPT = `
set -u
echo "TEST cpus $(grep -c ^processor /proc/cpuinfo)"
echo "TEST virtio $(ls /sys/bus/virtio/devices | wc -l)"
# block: read the host's pattern from sector 0, write ours to sector 1 and flush it
echo "TEST blk-read $(dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 16)"
printf 'GUEST-WROTE-THIS' > /tmp/w && dd if=/tmp/w of=/dev/vda bs=512 seek=1 conv=fsync,notrunc 2>/dev/null && echo "TEST blk-write ok"
# entropy
echo "TEST rng $(head -c 32 /dev/hwrng | od -An -tx1 | tr -d ' \\n' | head -c 64)"
# console: the second console is hvc0
echo "TEST-HVC hello from hvc0" > /dev/hvc0 && echo "TEST hvc ok"
# net: the host peer answers one frame; we just need a frame out and the link up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && echo "TEST net-up $(cat /sys/class/net/eth0/address)"
ping -c 1 -W 2 10.0.2.2 >/dev/null 2>&1; echo "TEST net-ping-sent"
# balloon: the driver bound and reports
echo "TEST balloon $(ls /sys/bus/virtio/drivers/virtio_balloon 2>/dev/null | grep -c virtio)"
# vsock: the driver bound (busybox has no vsock client; the host checks the transport reached DRIVER_OK)
echo "TEST vsock $(ls /sys/bus/virtio/drivers/vmw_vsock_virtio_transport 2>/dev/null | grep -c virtio)"
`;

describeKvm('Linux full boot to a busybox shell (hardware KVM only)', () => {
  let dir = '';
  let server: Server | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'node-kvm-linux-'));
  });
  afterAll(() => {
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function boot(
    afterTest: 'poweroff' | 'reboot',
  ): Promise<{ text: string; stop: StopReason; disk: Buffer; frames: number }> {
    const assets = readGuestAssets(ASSETS);
    const initrd = join(dir, `initrd-${afterTest}.cpio.gz`);
    writeFileSync(
      initrd,
      buildGuestInitramfs({
        busybox: assets.busybox,
        modules: assets.modules,
        testScript: TEST_SCRIPT,
        afterTest,
      }),
    );
    const disk = join(dir, `disk-${afterTest}.img`);
    const image = Buffer.alloc(1 << 20);
    image.write('NODE-KVM-DISK-00', 0, 'latin1');
    writeFileSync(disk, image);
    const uds = join(dir, `vsock-${afterTest}.sock`);
    server = createServer((s) => s.pipe(s)).listen(`${uds}_${VSOCK_PORT}`);
    const channel = new NetChannel();
    let frames = 0;
    const peer = new NetChannelPeer(channel.ends[1], () => frames++);
    const vm = new MicroVm({
      memory: { size: 512 * 1024 * 1024 },
      vcpus: 2,
      boot: { kind: 'linux', kernel: assets.vmlinuz, initrd, cmdline: 'console=ttyS0 panic=-1' },
      serial: true,
      virtioConsole: true,
      disks: [{ path: disk, serial: 'node-kvm-test' }],
      net: [{ channel: channel.ends[0], mac: GUEST_MAC }],
      vsock: { cid: 3, udsPath: uds },
      rng: true,
      balloon: true,
    });
    let text = '';
    vm.on('console', (b) => (text += Buffer.from(b).toString('latin1')));
    await vm.start();
    const timer = setTimeout(() => void vm.stop(), 120_000);
    const stop = await vm.exited;
    clearTimeout(timer);
    peer.close();
    channel.close();
    server.close();
    return { text, stop, disk: readFileSync(disk), frames };
  }

  it.skipIf(reason !== undefined)(
    'boots with 2 vCPUs, uses every virtio device from Linux, and powers off',
    async () => {
      const r = await boot('poweroff');
      const ctx = `console:\n${r.text.slice(-6000)}`;
      expect(r.text, ctx).toContain('NODE-KVM-INIT-START');
      expect(r.text, ctx).not.toContain('NODE-KVM-INSMOD-FAILED');
      expect(r.text, ctx).toMatch(/TEST cpus 2/);
      expect(r.text, ctx).toMatch(/TEST virtio 6/);
      expect(r.text, ctx).toMatch(/TEST blk-read NODE-KVM-DISK-00/);
      expect(r.text, ctx).toMatch(/TEST blk-write ok/);
      expect(r.text, ctx).toMatch(/TEST rng [0-9a-f]{64}/);
      expect(r.text, ctx).toMatch(/TEST-HVC hello from hvc0/);
      expect(r.text, ctx).toMatch(new RegExp(`TEST net-up ${GUEST_MAC}`));
      expect(r.text, ctx).toMatch(/TEST balloon 1/);
      expect(r.text, ctx).toMatch(/TEST vsock 1/);
      expect(r.text, ctx).toMatch(/NODE-KVM-TEST-EXIT 0/);
      expect(r.frames).toBeGreaterThan(0);
      expect(r.disk.subarray(512, 528).toString('latin1')).toBe('GUEST-WROTE-THIS');
      expect(r.stop).toEqual({ reason: 'poweroff' });
    },
    180_000,
  );

  it.skipIf(reason !== undefined)(
    'reboot from the guest stops the VM with reason reset',
    async () => {
      const r = await boot('reboot');
      expect(r.text).toMatch(/NODE-KVM-TEST-EXIT 0/);
      expect(r.stop.reason).toBe('reset');
    },
    180_000,
  );
});
