/**
 * Attachments: giving a host PCI function (VFIO) or an emulated controller (vfio-user) to a running VM, and taking it
 * back. Composes the passthrough manager (src/devices: prepare/release with claims) with a hypervisor adapter
 * (src/hypervisor: cloud-hypervisor REST or QEMU QMP).
 *
 * attach: prepare(bdf, owner=vmId) (GPU companions come with it) -> add to the VMM -> confirm the VMM reports it ->
 * record. Any failure rolls back (remove from the VMM if added, release if this call prepared it).
 * detach: remove from the VMM -> wait for the guest to let go (timeout) -> release to the host driver. On timeout the
 * device stays claimed and the attachment is 'detach-pending'; nothing is rebound while a VMM may still hold it.
 * Records live in the claims database (src/devices/claims.ts, table `attachments`) so they survive restarts.
 */
import type { DeviceManager } from '../devices/manager.js';
import type { AttachSource, HypervisorAdapter, HypervisorEndpoint, HypervisorKind } from '../hypervisor/types.js';
import type { StaticConfigRequest, StaticConfigResult } from '../hypervisor/static-config.js';
import { VfiodError } from '../util/errors.js';

export type { AttachSource, HypervisorEndpoint } from '../hypervisor/types.js';

export type AttachmentState =
  /** Being added (only seen while attach runs, or after a crash mid-attach). */
  | 'attaching'
  /** The VMM reports the device. */
  | 'attached'
  /** Removal requested, waiting for the guest (only while detach runs, or after a crash mid-detach). */
  | 'detaching'
  /** Removal requested but the guest did not let go in time: the device stays claimed, nothing was rebound. */
  | 'detach-pending';

/** One VMM device of an attachment: the primary function and, for GPUs, each companion (HDMI audio ...). */
export interface AttachedFunction {
  /** Host BDF (null for vfio-user). */
  hostBdf: string | null;
  /** The id the VMM knows it by. */
  vmmDeviceId: string;
  /** Guest-side address when the VMM reported one. */
  guestBdf: string | null;
  /** QEMU: the pcie-root-port it went into. */
  bus: string | null;
}

export interface Attachment {
  vmId: string;
  /** The attachment's id = the primary function's VMM device id. Unique per VM. */
  deviceId: string;
  hypervisor: HypervisorKind;
  endpoint: HypervisorEndpoint;
  source: AttachSource;
  functions: AttachedFunction[];
  state: AttachmentState;
  /** True when attach prepared the device (so detach releases it); false when it was already prepared for the VM. */
  preparedByAttach: boolean;
  bootIndex: number | null;
  /** Last problem, e.g. why a detach is pending. */
  note: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface AttachRequest {
  vmId: string;
  endpoint: HypervisorEndpoint;
  source: AttachSource;
  /** VMM device id; default derived from the source ("vfiod-0000_01_00_1", "vfiod-user-<socket name>"). */
  deviceId?: string;
  /** QEMU only (bootindex); rejected with INVALID_ARGUMENT for cloud-hypervisor hot-plug. */
  bootIndex?: number;
  /** cloud-hypervisor: behind the virtual IOMMU. */
  iommu?: boolean;
  /** cloud-hypervisor: PCI segment. */
  pciSegment?: number;
  /** cloud-hypervisor: x_nv_gpudirect_clique for GPUs. */
  gpudirectClique?: number;
  /** Prepare even though the device is in use on the host (DeviceManager force). */
  force?: boolean;
  /** Budget for each VMM call and for the confirmation (default 10 s). */
  timeoutMs?: number;
}

export interface AttachResult {
  attachment: Attachment;
  /** False when the same device was already attached to this VM (idempotent repeat). */
  changed: boolean;
  warnings: string[];
}

export interface DetachRequest {
  vmId: string;
  /** The attachment's deviceId, or the host BDF of a PCI attachment. One of them is required. */
  deviceId?: string;
  bdf?: string;
  /** How long to wait for the guest to let go (default 30 s); then DEADLINE_EXCEEDED and 'detach-pending'. */
  timeoutMs?: number;
  /** Give the device back to its host driver after removal (default true). */
  release?: boolean;
}

export interface DetachResult {
  vmId: string;
  deviceId: string;
  /** Host BDFs given back to their host drivers (empty for vfio-user or release=false). */
  released: string[];
}

export interface AttachmentManagerOptions {
  devices: DeviceManager;
  /** Builds the adapter for one VM's endpoint (tests inject; default: the real adapters). */
  adapterFor?: (vmId: string, endpoint: HypervisorEndpoint) => HypervisorAdapter;
  /** How long detach waits for the VMM to close the VFIO group before releasing (default 10 s). */
  releaseWaitMs?: number;
}

export class AttachmentManager {
  constructor(readonly options: AttachmentManagerOptions) {}

  /** Hot-plugs a device into a running VM. See the file comment for the sequence and rollback. */
  async attach(_request: AttachRequest): Promise<AttachResult> {
    throw new VfiodError('INTERNAL', 'attach: not implemented yet');
  }

  /** Hot-unplugs a device and gives it back to the host. */
  async detach(_request: DetachRequest): Promise<DetachResult> {
    throw new VfiodError('INTERNAL', 'detach: not implemented yet');
  }

  list(_vmId?: string): Attachment[] {
    return [];
  }

  /** NOT_FOUND when the VM has no such attachment. */
  get(vmId: string, deviceId: string): Attachment {
    throw new VfiodError('NOT_FOUND', `VM ${vmId} has no attachment ${deviceId}`);
  }

  /** The exact static configuration for creating a VM with these devices (see src/hypervisor/static-config.ts). */
  staticConfig(_request: StaticConfigRequest): StaticConfigResult {
    throw new VfiodError('INTERNAL', 'staticConfig: not implemented yet');
  }
}
