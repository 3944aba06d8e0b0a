/** Messages between a MicroVm (main thread) and its VM thread (worker). */
import type { StopReason } from './stop.js';

export type ToVmThread =
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'stop' }
  | { type: 'console-input'; data: Uint8Array }
  | { type: 'balloon-target'; pages: number }
  | { type: 'stats' };

export type FromVmThread =
  | { type: 'started'; backing: string; vcpus: number }
  | { type: 'console'; data: Uint8Array }
  | { type: 'progress'; message: string }
  | { type: 'firmware-log'; data: Uint8Array }
  | { type: 'balloon-stats'; stats: Record<string, number> }
  | { type: 'paused' }
  | { type: 'resumed' }
  | { type: 'stats'; stats: VmStats }
  | { type: 'exit'; stop: StopReason };

export interface VmStats {
  /** vCPU exits handled by the VM thread. */
  exits: number;
  unclaimedPio: number;
  unclaimedMmio: number;
  devices: Record<string, unknown>;
}
