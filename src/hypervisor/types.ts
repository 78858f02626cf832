/**
 * What the attachment orchestrator (src/attach) needs from a hypervisor, whatever it is: add a VFIO device (by host
 * PCI address) or a vfio-user device (by socket), list what the VMM reports, and remove a device, waiting for the
 * guest to let go of it. cloud-hypervisor (REST on the VM's API socket) and QEMU (QMP) implement it.
 */
import type { Reason } from '../util/error-reasons.js';
import { type ErrorCode, VfiodError } from '../util/errors.js';
import type { VfioBackend } from './vfio-backend.js';

export type HypervisorKind = 'cloud-hypervisor' | 'qemu';

/** How to reach one VM's VMM. */
export type HypervisorEndpoint =
  | {
      hypervisor: 'cloud-hypervisor';
      /** The VM's REST API unix socket (cloud-hypervisor --api-socket). */
      apiSocket: string;
      /** Optional: the VM's event-monitor file (--event-monitor path=...): unplug completes on device-removed. */
      eventMonitor?: string;
    }
  | { hypervisor: 'qemu'; /** The VM's QMP unix socket (-qmp unix:<path>,server=on,wait=off). */ qmpSocket: string };

/** What is given to the VM: a host PCI function through VFIO, or an emulated controller on a vfio-user socket. */
export type AttachSource = { kind: 'pci'; bdf: string } | { kind: 'vfio-user'; socketPath: string };

/** A VFIO PCI device to hot-plug (or to put in a static configuration). */
export interface PciDeviceSpec {
  /** Host BDF, "0000:01:00.1". */
  hostBdf: string;
  /** The VMM's id for the device (QEMU: letters, digits, '-', '_', '.', starting with a letter). */
  id: string;
  /** cloud-hypervisor: put the device behind the virtual IOMMU. */
  iommu?: boolean;
  /** cloud-hypervisor: PCI segment (default 0). */
  pciSegment?: number;
  /** cloud-hypervisor: x_nv_gpudirect_clique for NVIDIA GPUs (GPUDirect P2P between GPUs of one clique). */
  gpudirectClique?: number;
  /** QEMU: bootindex (lower boots first). cloud-hypervisor has no boot order. */
  bootIndex?: number;
  /** QEMU: the pcie-root-port to plug into (default: the first empty one). */
  bus?: string;
  /** How the VMM opens it (default group; src/hypervisor/vfio-backend.ts decides). cloud-hypervisor: group only. */
  vfioBackend?: VfioBackend;
}

/** A vfio-user device (an emulated controller served by `vfiod serve`). */
export interface UserDeviceSpec {
  socketPath: string;
  id: string;
  pciSegment?: number;
  bootIndex?: number;
  /** QEMU: the pcie-root-port to plug into (default: the first empty one). */
  bus?: string;
}

/** A device as the VMM reports it. */
export interface VmmDevice {
  id: string;
  /** The guest-side PCI address when the VMM says it ("0000:00:04.0" for cloud-hypervisor, "bus:slot.fn" for QEMU). */
  guestBdf: string | null;
  /** The host device behind it, when the VMM says (QEMU qom "host" of a vfio-pci; cloud-hypervisor: none). */
  hostBdf: string | null;
}

/** A VFIO PCI device the VM has, whoever put it there (its command line, vfiod, a hand-made device_add). */
export interface VmmVfioDevice {
  /** The VMM's id for it (QEMU: id=), or, for a device given without one, its path (QEMU: its QOM path). */
  id: string;
  /** How the VMM opened it. */
  backend: VfioBackend;
}

export interface AddedDevice {
  id: string;
  guestBdf: string | null;
  /** cloud-hypervisor answers 204 for a VM that is created but not booted: the device is cold-added. */
  coldAdded: boolean;
  /** QEMU: the pcie-root-port the device went into. */
  bus: string | null;
}

export interface HypervisorAdapter {
  readonly kind: HypervisorKind;
  /** The VM this adapter talks to (used in every error message). */
  readonly vmId: string;
  /** Checks that the VMM answers; returns its version string. UNAVAILABLE when the socket is missing or refuses. */
  ping(timeoutMs?: number): Promise<string>;
  /**
   * Adds a device. An error that is not the VMM's answer to the add says in `commandSent` (see withCommandSent)
   * whether the add reached the VMM: false when it never did (no connection, no QMP greeting, a step before it
   * failed), so the VM did not get the device; true when it was sent and no answer came, so it may have.
   */
  addPciDevice(spec: PciDeviceSpec, timeoutMs?: number): Promise<AddedDevice>;
  addUserDevice(spec: UserDeviceSpec, timeoutMs?: number): Promise<AddedDevice>;
  /** Every device the VMM currently reports (cloud-hypervisor: vm.info device_tree; QEMU: query-pci). */
  listDevices(timeoutMs?: number): Promise<VmmDevice[]>;
  /**
   * Asks the VMM to remove `id` and waits until it is gone (QEMU: DEVICE_DELETED; cloud-hypervisor: the id leaves
   * vm.info's device_tree). DEADLINE_EXCEEDED when the guest has not let go within `timeoutMs`: the removal may still
   * complete later. FAILED_PRECONDITION when the guest refused (QEMU DEVICE_UNPLUG_GUEST_ERROR).
   */
  removeDevice(id: string, timeoutMs: number): Promise<void>;
  /**
   * Every VFIO PCI device the VM has and the backend it uses, for the one-backend-per-VM rule (QEMU; absent where the
   * VMM has one backend only, as cloud-hypervisor v48).
   */
  listVfioDevices?(timeoutMs?: number): Promise<VmmVfioDevice[]>;
  /** Whether the VMM still reports `id`. */
  hasDevice(id: string, timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * The error reason of a VMM's error answer, from the code it was classified as (cloud-hypervisor's HTTP status and
 * error chain, QMP's class and description).
 */
export function vmmAnswerReason(code: ErrorCode): Reason {
  switch (code) {
    case 'NOT_FOUND':
      return 'VMM_DEVICE_NOT_FOUND';
    case 'ALREADY_EXISTS':
      return 'VMM_DEVICE_ID_TAKEN';
    case 'FAILED_PRECONDITION':
      return 'VMM_REFUSED';
    case 'INVALID_ARGUMENT':
      return 'VMM_REJECTED_REQUEST';
    case 'UNAVAILABLE':
      return 'VMM_UNAVAILABLE';
    default:
      return 'VMM_ERROR';
  }
}

/**
 * `error` (a VfiodError; anything else as it is) with `commandSent`, ErrorInfo metadata `command_sent`: whether the
 * command the error is about reached the VMM. false: it never did (no connection, no QMP greeting), so it changed
 * nothing; true: it was sent and no answer came in time (or the connection broke before it), so its outcome is unknown.
 */
export function withCommandSent(error: unknown, commandSent: boolean): unknown {
  return error instanceof VfiodError ? new VfiodError(error.code, error.message, { ...error.details, commandSent }) : error;
}

/** Whether `error` says its command never reached the VMM (withCommandSent(error, false)). */
export function commandNeverSent(error: unknown): boolean {
  return error instanceof VfiodError && error.details.commandSent === false;
}
