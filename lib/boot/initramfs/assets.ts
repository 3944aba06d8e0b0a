/**
 * Reads what scripts/guest-assets.mjs cached (Debian kernel, busybox, virtio modules), so tests can build
 * their own initramfs — e.g. with a /test.sh — from the same parts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BootError } from '../errors.js';
import type { GuestModule } from './guest.js';

export const GUEST_ASSETS_MANIFEST = 'manifest.json';

export interface GuestAssetsManifest {
  /** Bumped when the cache layout or the initramfs recipe changes. */
  format: number;
  kernelPackage: string;
  kernelPackageVersion: string;
  /** `uname -r` of the kernel. */
  kernelRelease: string;
  busyboxPackageVersion: string;
  /** Module load order; files are modules/<name>.ko. */
  modules: string[];
  /** Modules the kernel has built in (no file needed). */
  builtinModules: string[];
  /** Kernel payload compression, as detected. */
  kernelCompression: string;
  /** sha256 of the generated /init, so a changed recipe rebuilds the initramfs. */
  initSha256: string;
}

export interface GuestAssets {
  dir: string;
  manifest: GuestAssetsManifest;
  vmlinuz: string;
  initramfs: string;
  busybox: Uint8Array;
  modules: GuestModule[];
}

/** The default cache folder: $NODE_KVM_GUEST_ASSETS, else `.cache/guest-assets` under `root`. */
export function guestAssetsDir(root: string = process.cwd()): string {
  return process.env.NODE_KVM_GUEST_ASSETS ?? resolve(root, '.cache/guest-assets');
}

/** Loads the cached assets, or explains how to create them. */
export function readGuestAssets(dir: string = guestAssetsDir()): GuestAssets {
  const manifestPath = join(dir, GUEST_ASSETS_MANIFEST);
  if (!existsSync(manifestPath)) {
    throw new BootError(
      'BAD_CPIO',
      `no guest assets in ${dir}: run \`node scripts/guest-assets.mjs --cache ${dir}\``,
    );
  }
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as GuestAssetsManifest;
  return {
    dir,
    manifest,
    vmlinuz: join(dir, 'vmlinuz'),
    initramfs: join(dir, 'initramfs.cpio.gz'),
    busybox: new Uint8Array(readFileSync(join(dir, 'busybox'))),
    modules: manifest.modules.map((name) => ({
      name,
      data: new Uint8Array(readFileSync(join(dir, 'modules', `${name}.ko`))),
    })),
  };
}
