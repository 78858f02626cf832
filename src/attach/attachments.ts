/**
 * Attachments: giving a host PCI function (VFIO) or an emulated controller (vfio-user) to a running VM, and taking it
 * back. Composes the passthrough manager (src/devices: prepare/release with claims) with a hypervisor adapter
 * (src/hypervisor: cloud-hypervisor REST or QEMU QMP).
 *
 * attach: refuse a VFIO backend the VM cannot take (as far as the host and, on QEMU, the VM's own VFIO devices tell
 * before rebinding) -> prepare(bdf, owner=vmId) (GPU companions come with it) -> decide the backends on the prepared
 * device -> add to the VMM -> confirm the VMM reports it -> record. Any failure after prepare rolls back (remove from
 * the VMM if added or maybe added, not when the adapter says the add never reached it; release if this call prepared
 * it).
 * detach: remove from the VMM -> wait for the guest to let go (timeout) -> release to the host driver. On timeout the
 * device stays claimed and the attachment is 'detach-pending'; nothing is rebound while a VMM may still hold it.
 * Records live in the claims database (src/devices/claims.ts, table `attachments`) so they survive restarts.
 *
 * Size: attach, detach and reconcile share one rollback discipline and one record format in the claims database.
 */
import type { DeviceManager, PrepareResult } from '../devices/manager.js';
import { CloudHypervisorClient } from '../hypervisor/cloud-hypervisor.js';
import { QemuAdapter } from '../hypervisor/qmp.js';
import {
  buildStaticConfig, checkBootIndex, checkDeviceId, checkDeviceOptions, checkSocketPath, defaultDeviceId, sourceBdf,
  type StaticConfigRequest, type StaticConfigResult, type StaticDevice,
} from '../hypervisor/static-config.js';
import type { HostFunctionFacts } from '../hypervisor/pci-window.js';
import { checkVfioBackendChoice, describeVfioBackend, resolveQemuVmBackends, resolveVfioBackend, type VfioBackend, type VfioBackendChoice, type VfioFacts } from '../hypervisor/vfio-backend.js';
import { normalizeBdf } from '../util/pci-address.js';
import { type AddedDevice, type AttachSource, commandNeverSent, type HypervisorAdapter, type HypervisorEndpoint, type HypervisorKind, type VmmVfioDevice } from '../hypervisor/types.js';
import { errorMessage, VfiodError } from '../util/errors.js';
import { rootLogger } from '../util/log.js';
import { sameSocketFile } from '../util/socket-path.js';

export type { AttachSource, HypervisorEndpoint } from '../hypervisor/types.js';
export type { StaticConfigRequest, StaticConfigResult, StaticDevice } from '../hypervisor/static-config.js';

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
  /** How the VMM opened it: its IOMMU group or iommufd (null for vfio-user; absent in records older than this field: group). */
  vfioBackend?: VfioBackend | null;
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
  /** PCI: open it through its IOMMU group or through iommufd (default auto; src/hypervisor/vfio-backend.ts). */
  vfioBackend?: VfioBackendChoice;
  /** Prepare even though the device is in use on the host (DeviceManager force). */
  force?: boolean;
  /** Budget for each VMM call and for the confirmation (default 10 s). */
  timeoutMs?: number;
  /** Told each step as it begins (the control API's operation progress). */
  onStep?: StepListener;
}

/** How far an attach or detach got: a rough percentage, the step for people, and the attachment's device id. */
export type StepListener = (progress: { percent: number; step: string; deviceId: string }) => void;

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
  onStep?: StepListener;
}

export interface DetachResult {
  vmId: string;
  deviceId: string;
  /** Host BDFs given back to their host drivers (empty for vfio-user or release=false). */
  released: string[];
}

export interface AttachmentReconcileEntry {
  vmId: string;
  deviceId: string;
  action: 'ok' | 'repaired' | 'removed' | 'attention';
  detail: string;
}

export interface AttachmentManagerOptions {
  devices: DeviceManager;
  /** Builds the adapter for one VM's endpoint (tests inject; default: the real adapters). */
  adapterFor?: (vmId: string, endpoint: HypervisorEndpoint) => HypervisorAdapter;
  /** How long detach waits for the VMM to close the VFIO group before releasing (default 10 s). */
  releaseWaitMs?: number;
  /**
   * Whether a hypervisor is connected to a vfio-user socket (the daemon knows from its controllers); undefined when
   * unknown. Lets detach and reconcile finish a vfio-user attachment whose VMM is gone, as an unheld VFIO group does
   * for PCI devices.
   */
  vfioUserInUse?: (socketPath: string) => Promise<boolean | undefined> | boolean | undefined;
  /** Told every change of an attachment record (a copy), and its removal (the control API's events). */
  onChange?: (attachment: Attachment, removed: boolean) => void;
}

/** The real adapters: cloud-hypervisor REST or QEMU QMP. */
export function defaultAdapterFor(vmId: string, endpoint: HypervisorEndpoint): HypervisorAdapter {
  if (endpoint.hypervisor === 'cloud-hypervisor') {
    return new CloudHypervisorClient({ vmId, apiSocket: endpoint.apiSocket, ...(endpoint.eventMonitor ? { eventMonitor: endpoint.eventMonitor } : {}) });
  }
  if (endpoint.hypervisor === 'qemu') return new QemuAdapter({ vmId, qmpSocket: endpoint.qmpSocket });
  throw new VfiodError('INVALID_ARGUMENT', `VM ${vmId}: unknown hypervisor '${String((endpoint as { hypervisor: unknown }).hypervisor)}' (cloud-hypervisor or qemu)`, {
    reason: 'FIELD_INVALID',
    field: 'endpoint',
    vmId,
  });
}

const DEFAULT_ATTACH_TIMEOUT_MS = 10_000;
const DEFAULT_DETACH_TIMEOUT_MS = 30_000;

function describeSource(source: AttachSource): string {
  return source.kind === 'pci' ? `PCI device ${source.bdf}` : `vfio-user socket ${source.socketPath}`;
}

/** The backend a QEMU VM's VFIO devices use, and their ids (one backend per VM). */
interface VmVfioBackend {
  backend: VfioBackend;
  ids: string[];
}

function describeVmBackend(vm: VmVfioBackend | undefined): string {
  return vm ? `${vm.ids.join(', ')} through ${vm.backend === 'iommufd' ? 'iommufd' : 'the group'}` : 'no VFIO devices';
}

function describeEndpoint(endpoint: HypervisorEndpoint): string {
  return endpoint.hypervisor === 'qemu' ? `QEMU QMP ${endpoint.qmpSocket}` : `cloud-hypervisor API ${endpoint.apiSocket}`;
}

function sameEndpoint(a: HypervisorEndpoint, b: HypervisorEndpoint): boolean {
  return describeEndpoint(a) === describeEndpoint(b);
}

/**
 * Whether a failed add may still have reached the VMM (no answer in time, an unreadable answer): the rollback must
 * then ask the VMM to remove the id too, or a device plugged in late would be released from under it. An add the
 * adapter says it never sent (no connection, no QMP greeting) added nothing, whatever its code: asking that VMM to
 * remove it would only wait on the same socket again and strand the device.
 */
function addOutcomeUnknown(error: unknown): boolean {
  if (commandNeverSent(error)) return false;
  return error instanceof VfiodError ? error.code === 'DEADLINE_EXCEEDED' || error.code === 'INTERNAL' : true;
}

/**
 * A repeat attach of an attached PCI device is answered with the attachment only when it asks for the VFIO backend
 * the attachment has, or 'auto': answering a request for the other one with it would hide that the request was not
 * carried out. One rule for every VMM (a cloud-hypervisor attachment is always through the group).
 */
function refuseOtherVfioBackend(a: Attachment, requested: VfioBackendChoice, context: string): void {
  if (a.source.kind !== 'pci' || requested === 'auto') return;
  // All functions of an attachment share one backend; records from before the field was added are group attachments.
  const backend: VfioBackend = a.functions[0]?.vfioBackend ?? 'group';
  if (requested === backend) return;
  const howToChange =
    a.hypervisor === 'cloud-hypervisor' && requested === 'iommufd'
      ? 'cloud-hypervisor opens VFIO devices through their group only'
      : `detach it first to attach it through ${describeVfioBackend(requested)}`;
  throw new VfiodError(
    'FAILED_PRECONDITION',
    `${context}: it is already attached to VM ${a.vmId} as ${a.deviceId} through ${describeVfioBackend(backend)}, not through ${describeVfioBackend(requested)} as asked: ` +
      `a repeat attach asks for the backend the attachment has, or auto; ${howToChange}`,
    { reason: 'ATTACHED_THROUGH_OTHER_VFIO_BACKEND', vmId: a.vmId, deviceId: a.deviceId, state: a.state, vfioBackend: backend, requestedVfioBackend: requested },
  );
}

/**
 * The VMM could not be reached or did not answer in time (as opposed to answering with an error): what comes next
 * over the same socket would fare no better.
 */
function vmmNotReached(error: unknown): boolean {
  return error instanceof VfiodError && (error.code === 'UNAVAILABLE' || error.code === 'DEADLINE_EXCEEDED');
}

/** The same device: one BDF, or one vfio-user socket by any name (a symlinked directory, a hard link). */
function sameSource(a: AttachSource, b: AttachSource): boolean {
  return a.kind === 'pci' ? b.kind === 'pci' && a.bdf === b.bdf : b.kind === 'vfio-user' && sameSocketFile(a.socketPath, b.socketPath);
}

/** Adds context to an error from a lower layer, keeping its code and details. */
function withContext(error: unknown, context: string): VfiodError {
  if (error instanceof VfiodError) return new VfiodError(error.code, `${context}: ${error.message}`, error.details);
  return new VfiodError('INTERNAL', `${context}: ${errorMessage(error)}`, { reason: 'INTERNAL_ERROR' });
}

function checkEndpoint(vmId: string, endpoint: HypervisorEndpoint): string {
  const socket = endpoint?.hypervisor === 'cloud-hypervisor' ? endpoint.apiSocket : endpoint?.hypervisor === 'qemu' ? endpoint.qmpSocket : undefined;
  if (!endpoint || (endpoint.hypervisor !== 'cloud-hypervisor' && endpoint.hypervisor !== 'qemu')) {
    throw new VfiodError('INVALID_ARGUMENT', `VM ${vmId}: the endpoint needs hypervisor 'cloud-hypervisor' (apiSocket) or 'qemu' (qmpSocket)`, {
      reason: 'FIELD_REQUIRED',
      field: 'endpoint',
      vmId,
    });
  }
  if (typeof socket !== 'string' || !socket.startsWith('/')) {
    throw new VfiodError('INVALID_ARGUMENT', `VM ${vmId}: the ${endpoint.hypervisor === 'qemu' ? 'QMP' : 'API'} socket must be an absolute path (got '${String(socket)}')`, {
      reason: 'SOCKET_PATH_INVALID',
      field: endpoint.hypervisor === 'qemu' ? 'endpoint.qemu_qmp_socket' : 'endpoint.cloud_hypervisor_api_socket',
      vmId,
    });
  }
  const events = endpoint.hypervisor === 'cloud-hypervisor' ? endpoint.eventMonitor : undefined;
  if (events !== undefined && (typeof events !== 'string' || !events.startsWith('/'))) {
    throw new VfiodError('INVALID_ARGUMENT', `VM ${vmId}: the event-monitor file must be an absolute path (got '${String(events)}')`, {
      reason: 'FIELD_INVALID',
      field: 'endpoint.cloud_hypervisor_event_monitor',
      vmId,
    });
  }
  return socket;
}

export class AttachmentManager {
  private readonly devices: DeviceManager;
  private readonly adapterFor: (vmId: string, endpoint: HypervisorEndpoint) => HypervisorAdapter;
  private readonly releaseWaitMs: number;
  private readonly vfioUserInUse: AttachmentManagerOptions['vfioUserInUse'];
  private readonly onChange: AttachmentManagerOptions['onChange'];
  private readonly records = new Map<string, Attachment>();
  /** Per-VM queue: operations on one VM run one after another (root port choice, QMP's single client). */
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly log = rootLogger.child({ component: 'attach' });

  constructor(options: AttachmentManagerOptions) {
    this.devices = options.devices;
    this.adapterFor = options.adapterFor ?? defaultAdapterFor;
    this.releaseWaitMs = options.releaseWaitMs ?? 10_000;
    this.vfioUserInUse = options.vfioUserInUse;
    this.onChange = options.onChange;
    for (const row of this.devices.claims.listAttachments()) {
      this.records.set(this.key(row.vmId, row.deviceId), row.record as Attachment);
    }
  }

  private key(vmId: string, deviceId: string): string {
    return `${vmId}\u0000${deviceId}`;
  }

  private save(a: Attachment): void {
    a.updatedAt = new Date().toISOString();
    this.devices.claims.putAttachment(a.vmId, a.deviceId, a);
    this.records.set(this.key(a.vmId, a.deviceId), a);
    this.onChange?.(structuredClone(a), false);
  }

  private drop(a: Attachment): void {
    this.devices.claims.removeAttachment(a.vmId, a.deviceId);
    this.records.delete(this.key(a.vmId, a.deviceId));
    this.onChange?.(structuredClone(a), true);
  }

  private serialized<T>(vmId: string, body: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(vmId) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(body);
    this.queues.set(vmId, next);
    void next.finally(() => {
      if (this.queues.get(vmId) === next) this.queues.delete(vmId);
    }).catch(() => undefined);
    return next;
  }

  list(vmId?: string): Attachment[] {
    return [...this.records.values()]
      .filter((a) => vmId === undefined || a.vmId === vmId)
      .sort((a, b) => a.vmId.localeCompare(b.vmId) || a.deviceId.localeCompare(b.deviceId))
      .map((a) => structuredClone(a));
  }

  /** NOT_FOUND when the VM has no such attachment. */
  get(vmId: string, deviceId: string): Attachment {
    const a = this.records.get(this.key(vmId, deviceId));
    if (!a) throw new VfiodError('NOT_FOUND', `VM ${vmId} has no attachment ${deviceId}`, { reason: 'ATTACHMENT_NOT_FOUND', vmId, deviceId });
    return structuredClone(a);
  }

  /** Hot-plugs a device into a running VM. See the file comment for the sequence and rollback. */
  async attach(request: AttachRequest): Promise<AttachResult> {
    const vmId = request.vmId;
    if (typeof vmId !== 'string' || vmId.trim() === '') throw new VfiodError('INVALID_ARGUMENT', 'attach: a VM id is required', { reason: 'FIELD_REQUIRED', field: 'vm_id' });
    checkEndpoint(vmId, request.endpoint);
    const source = this.normalizeSource(request.source, `attach to VM ${vmId}`);
    const deviceId = request.deviceId ?? defaultDeviceId(source);
    const context = `attach ${describeSource(source)} to VM ${vmId} as ${deviceId}`;
    checkDeviceId(deviceId, context);
    checkBootIndex(request.bootIndex, context);
    checkDeviceOptions(request, context);
    if (request.bootIndex !== undefined && request.endpoint.hypervisor === 'cloud-hypervisor') {
      throw new VfiodError('INVALID_ARGUMENT', `${context}: cloud-hypervisor has no boot order (bootIndex); boot from NVMe needs CLOUDHV.fd firmware (docs/hypervisors.md)`, {
        reason: 'BOOT_INDEX_UNSUPPORTED',
        field: 'boot_index',
        vmId,
      });
    }
    const vfioBackend = checkVfioBackendChoice(request.vfioBackend, context);
    const timeoutMs = request.timeoutMs ?? DEFAULT_ATTACH_TIMEOUT_MS;
    const idGiven = request.deviceId !== undefined;
    return this.serialized(vmId, () => this.attachNow({ ...request, source, deviceId, vfioBackend }, idGiven, context, timeoutMs));
  }

  private normalizeSource(source: AttachSource, context: string): AttachSource {
    if (source?.kind === 'pci') return { kind: 'pci', bdf: sourceBdf(source, context) };
    if (source?.kind === 'vfio-user') {
      checkSocketPath(source.socketPath, context);
      return { kind: 'vfio-user', socketPath: source.socketPath };
    }
    throw new VfiodError('INVALID_ARGUMENT', `${context}: the source needs kind 'pci' (bdf) or 'vfio-user' (socketPath)`, { reason: 'FIELD_REQUIRED', field: 'source' });
  }

  private async attachNow(request: AttachRequest & { deviceId: string }, idGiven: boolean, context: string, timeoutMs: number): Promise<AttachResult> {
    const { vmId, deviceId, source } = request;
    // Idempotency and conflicts, from our own records first.
    for (const a of this.records.values()) {
      if (!sameSource(a.source, source)) {
        const companion = source.kind === 'pci' ? a.functions.find((f, i) => i > 0 && f.hostBdf === source.bdf) : undefined;
        if (companion) {
          throw new VfiodError('FAILED_PRECONDITION', `${context}: it is attached to VM ${a.vmId} as ${companion.vmmDeviceId}, a companion of ${a.deviceId} (${describeSource(a.source)}): it comes and goes with that device`, {
            reason: 'DEVICE_IS_COMPANION',
            vmId,
            deviceId,
            bdf: companion.hostBdf,
            primaryBdf: a.source.kind === 'pci' ? a.source.bdf : '',
            otherVm: a.vmId,
          });
        }
        continue;
      }
      if (a.vmId !== vmId) {
        throw new VfiodError('FAILED_PRECONDITION', `${context}: it is attached to VM ${a.vmId} (as ${a.deviceId}, ${a.state}): detach it there first`, {
          reason: 'DEVICE_ATTACHED_TO_OTHER_VM',
          vmId,
          deviceId,
          otherVm: a.vmId,
          otherDeviceId: a.deviceId,
        });
      }
      // A repeat must name the same VMM: the same device "again" through another endpoint is a caller's mix-up.
      if (!sameEndpoint(a.endpoint, request.endpoint)) {
        throw new VfiodError(
          'FAILED_PRECONDITION',
          `${context}: it is already attached to VM ${vmId} as ${a.deviceId} through ${describeEndpoint(a.endpoint)}, not ${describeEndpoint(request.endpoint)}`,
          { reason: 'ATTACHED_THROUGH_OTHER_ENDPOINT', vmId, deviceId: a.deviceId, state: a.state },
        );
      }
      if (idGiven && a.deviceId !== deviceId) {
        throw new VfiodError('FAILED_PRECONDITION', `${context}: it is already attached to VM ${vmId} as ${a.deviceId}: detach it first to use another id`, {
          reason: 'ATTACHED_UNDER_OTHER_ID',
          vmId,
          deviceId: a.deviceId,
          state: a.state,
        });
      }
      if (a.state === 'attached') {
        refuseOtherVfioBackend(a, request.vfioBackend ?? 'auto', context);
        return { attachment: structuredClone(a), changed: false, warnings: [] };
      }
      throw new VfiodError('FAILED_PRECONDITION', `${context}: attachment ${a.deviceId} is in state ${a.state}${a.note ? ` (${a.note})` : ''}: detach it first`, {
        reason: 'ATTACHMENT_PENDING',
        vmId,
        deviceId: a.deviceId,
        state: a.state,
      });
    }
    const clash = this.records.get(this.key(vmId, deviceId));
    if (clash) {
      throw new VfiodError('ALREADY_EXISTS', `${context}: VM ${vmId} already has an attachment ${deviceId} (${describeSource(clash.source)})`, { reason: 'ATTACHMENT_EXISTS', vmId, deviceId });
    }

    const warnings: string[] = [];
    const claim = source.kind === 'pci' ? this.devices.claims.get(source.bdf) : undefined;
    if (claim && claim.owner !== vmId) {
      throw new VfiodError('FAILED_PRECONDITION', `${context}: ${claim.bdf} is claimed by VM ${claim.owner} (${claim.state}): release it there first`, {
        reason: 'DEVICE_CLAIMED_BY_OTHER_VM',
        vmId,
        deviceId,
        bdf: claim.bdf,
        owner: claim.owner,
      });
    }
    if (claim && claim.primary !== claim.bdf) {
      throw new VfiodError('FAILED_PRECONDITION', `${context}: ${claim.bdf} was prepared as a companion of ${claim.primary}: attach ${claim.primary} (its companions come with it)`, {
        reason: 'DEVICE_IS_COMPANION',
        vmId,
        deviceId,
        bdf: claim.bdf,
        primaryBdf: claim.primary,
      });
    }
    const vfioBackend = request.vfioBackend ?? 'auto';
    const vmBackend = source.kind === 'pci' ? await this.refuseImpossibleBackend(vmId, deviceId, request.endpoint, source.bdf, vfioBackend, context, timeoutMs, warnings) : undefined;
    const now = new Date().toISOString();
    const attachment: Attachment = {
      vmId,
      deviceId,
      hypervisor: request.endpoint.hypervisor,
      endpoint: request.endpoint,
      source,
      functions: [{ hostBdf: source.kind === 'pci' ? source.bdf : null, vmmDeviceId: deviceId, guestBdf: null, bus: null, vfioBackend: null }],
      state: 'attaching',
      // Known before prepare runs (no claim yet = this attach makes it), so a crash right after prepare still leaves a
      // record saying the device is ours to release.
      preparedByAttach: source.kind === 'pci' && !claim,
      bootIndex: request.bootIndex ?? null,
      note: null,
      createdAt: now,
      updatedAt: now,
    };
    // Recorded before anything changes: a crash mid-attach leaves a record for reconcile (or detach) to finish.
    this.save(attachment);

    const step = (percent: number, text: string): void => request.onStep?.({ percent, step: text, deviceId });
    let prepared: PrepareResult | undefined;
    if (source.kind === 'pci') {
      step(10, `preparing ${source.bdf} for VFIO`);
      try {
        prepared = await this.devices.prepare(source.bdf, vmId, { force: request.force ?? false });
      } catch (error) {
        this.drop(attachment); // prepare undoes its own partial work
        const e = withContext(error, context);
        // The device manager says ALREADY_EXISTS for a claim by another VM (raced in): here that is a precondition.
        if (e.code === 'ALREADY_EXISTS') throw new VfiodError('FAILED_PRECONDITION', e.message, { ...e.details, vmId, deviceId });
        throw new VfiodError(e.code, e.message, { ...e.details, vmId, deviceId });
      }
      warnings.push(...prepared.warnings, ...prepared.overridden.map((o) => `overridden: ${o}`));
      const companions = prepared.devices.filter((d) => d.companion && d.bdf !== source.bdf).map((d) => d.bdf);
      attachment.functions.push(...companions.map((hostBdf, i) => ({ hostBdf, vmmDeviceId: `${deviceId}-f${i + 1}`, guestBdf: null, bus: null, vfioBackend: null })));
      attachment.preparedByAttach = prepared.changed;
      this.save(attachment);
    }
    const preparedByAttach = attachment.preparedByAttach;

    const added: AddedDevice[] = [];
    let adapter: HypervisorAdapter | undefined;
    let maybeAdded: string | undefined;
    try {
      adapter = this.adapterFor(vmId, request.endpoint);
      if (source.kind === 'pci') {
        this.decideVfioBackends(attachment, vfioBackend, vmBackend, context);
        // Saved before the VMM sees the device: after a crash mid-add, the record says which backend it was given.
        this.save(attachment);
      }
      for (const [i, fn] of attachment.functions.entries()) {
        maybeAdded = fn.vmmDeviceId;
        step(30 + Math.floor((40 * i) / attachment.functions.length), `adding ${fn.vmmDeviceId} to the VMM`);
        const result =
          source.kind === 'pci'
            ? await adapter.addPciDevice(
                {
                  hostBdf: fn.hostBdf!,
                  id: fn.vmmDeviceId,
                  vfioBackend: fn.vfioBackend!,
                  ...(request.iommu !== undefined ? { iommu: request.iommu } : {}),
                  ...(request.pciSegment !== undefined ? { pciSegment: request.pciSegment } : {}),
                  ...(request.gpudirectClique !== undefined ? { gpudirectClique: request.gpudirectClique } : {}),
                  ...(i === 0 && request.bootIndex !== undefined ? { bootIndex: request.bootIndex } : {}),
                },
                timeoutMs,
              )
            : await adapter.addUserDevice(
                {
                  socketPath: source.socketPath,
                  id: fn.vmmDeviceId,
                  ...(request.pciSegment !== undefined ? { pciSegment: request.pciSegment } : {}),
                  ...(request.bootIndex !== undefined ? { bootIndex: request.bootIndex } : {}),
                },
                timeoutMs,
              );
        added.push(result);
        maybeAdded = undefined;
        fn.guestBdf = result.guestBdf;
        fn.bus = result.bus;
        this.save(attachment);
      }
      // Confirm: the VMM must list every function (a cold-added device appears only once the VM boots).
      if (!added.some((a) => a.coldAdded)) {
        step(80, 'confirming that the VMM lists it');
        const listed = new Set((await adapter.listDevices(timeoutMs)).map((d) => d.id));
        const missing = attachment.functions.filter((f) => !listed.has(f.vmmDeviceId)).map((f) => f.vmmDeviceId);
        if (missing.length > 0) {
          throw new VfiodError('INTERNAL', `the VMM accepted ${missing.join(', ')} but does not list ${missing.length > 1 ? 'them' : 'it'}`, {
            reason: 'VMM_NOT_LISTING_DEVICE',
            missing,
          });
        }
      } else {
        warnings.push('the VM is not booted: the device was cold-added and appears in the guest when it boots');
        attachment.note = 'cold-added (VM not booted)';
      }
      attachment.state = 'attached';
      this.save(attachment);
      this.log.info('attached', { vm: vmId, device: deviceId, source: describeSource(source), functions: attachment.functions });
      return { attachment: structuredClone(attachment), changed: true, warnings };
    } catch (error) {
      step(90, `rolling back: ${errorMessage(error)}`);
      const cause = withContext(error, context);
      const uncertain = maybeAdded !== undefined && addOutcomeUnknown(error) ? [maybeAdded] : [];
      // Said when the add that failed never reached the VMM: the caller need not wonder whether the VM got it.
      let neverSent = '';
      if (maybeAdded !== undefined && commandNeverSent(error)) {
        neverSent = `the add of ${maybeAdded} never reached the VMM${added.length === 0 ? `: VM ${vmId} was not changed` : ''}; `;
      }
      const undo = await this.rollbackAttach(attachment, [...added.map((d) => d.id), ...uncertain], adapter, preparedByAttach);
      throw new VfiodError(cause.code, `${cause.message}; ${neverSent}${undo}`, { ...cause.details, vmId, deviceId });
    } finally {
      await adapter?.close();
    }
  }

  /**
   * How the VMM opens each function of a PCI attachment, decided on the prepared device (its cdev and group node
   * exist only once it is on a VFIO driver). A QEMU VM keeps one backend for all its VFIO devices: `vmBackend`, what
   * its other VFIO devices use (refuseImpossibleBackend asked the VM), decides.
   */
  private decideVfioBackends(a: Attachment, choice: VfioBackendChoice, vmBackend: VmVfioBackend | undefined, context: string): void {
    const requests = a.functions.map((f) => ({ id: f.vmmDeviceId, bdf: f.hostBdf!, choice, facts: this.devices.vfioFacts(f.hostBdf!) }));
    let backends: Record<string, VfioBackend>;
    if (a.hypervisor === 'qemu') {
      backends = resolveQemuVmBackends(requests, vmBackend, context);
    } else {
      backends = Object.fromEntries(requests.map((r) => [r.id, resolveVfioBackend(r.choice, r.bdf, r.facts, a.hypervisor, context)]));
    }
    for (const f of a.functions) f.vfioBackend = backends[f.vmmDeviceId]!;
  }

  /**
   * Refuses a backend the VM cannot take for `bdf` before prepare rebinds anything, on what the host says now: iommufd
   * asked for on a host without /dev/iommu or for cloud-hypervisor, or on QEMU the other backend than the VM's VFIO
   * devices have. Throws what decideVfioBackends would throw after prepare, so a refusal reads the same either way. A
   * device not yet on a VFIO driver has neither node, so what depends on them (its cdev, its companions) is only
   * known, and decided, once it is prepared. Returns the QEMU VM's backend for that decision.
   */
  private async refuseImpossibleBackend(
    vmId: string,
    deviceId: string,
    endpoint: HypervisorEndpoint,
    bdf: string,
    choice: VfioBackendChoice,
    context: string,
    timeoutMs: number,
    warnings: string[],
  ): Promise<VmVfioBackend | undefined> {
    const facts = this.devices.vfioFacts(bdf);
    if (endpoint.hypervisor !== 'qemu') {
      resolveVfioBackend(choice, bdf, facts, endpoint.hypervisor, context);
      return undefined;
    }
    const request = { id: deviceId, bdf, choice, facts };
    // The device alone first: what it cannot take in any VM is refused without asking the VM.
    resolveQemuVmBackends([request], undefined, context);
    const vmBackend = await this.qemuVmBackend(vmId, deviceId, bdf, endpoint, context, timeoutMs, warnings);
    resolveQemuVmBackends([request], vmBackend, context);
    return vmBackend;
  }

  /**
   * The backend of a QEMU VM's VFIO devices (one per VM), or undefined when it has none. The VM is asked: devices of
   * its command line (a static configuration) or added by hand over QMP are in no record of vfiod's. When it and the
   * records disagree, the VM is right (it is what QEMU will mix with) and the difference is logged. When QEMU answers
   * the query with an error, the records decide, with a warning. When QMP cannot be reached at all (no socket, refused,
   * no greeting: another client holds it, or no answer in time), the attach fails here, before prepare: the hot-plug
   * needs the same QMP, and waiting for it a second time would only double the wait and leave a rebound device behind.
   */
  private async qemuVmBackend(
    vmId: string,
    deviceId: string,
    bdf: string,
    endpoint: HypervisorEndpoint,
    context: string,
    timeoutMs: number,
    warnings: string[],
  ): Promise<VmVfioBackend | undefined> {
    const recorded = this.recordedQemuVmBackend(vmId, deviceId);
    const adapter = this.adapterFor(vmId, endpoint);
    let devices: VmmVfioDevice[] | undefined;
    try {
      devices = await adapter.listVfioDevices?.(timeoutMs);
    } catch (error) {
      if (vmmNotReached(error)) {
        const e = withContext(error, context);
        throw new VfiodError(e.code, `${e.message}; nothing was changed`, { ...e.details, vmId, deviceId });
      }
      const warning = `could not ask VM ${vmId} which VFIO backend its devices use (${errorMessage(error)}): deciding from vfiod's records (${describeVmBackend(recorded)})`;
      this.log.warn('VFIO backend of the VM unknown, using the records', { vm: vmId, device: deviceId, recorded: describeVmBackend(recorded), error: errorMessage(error) });
      warnings.push(warning);
      return recorded;
    } finally {
      await adapter.close();
    }
    if (devices === undefined) return recorded; // an adapter that cannot tell (its VMM has one backend)
    const group = devices.filter((d) => d.backend === 'group').map((d) => d.id);
    const iommufd = devices.filter((d) => d.backend === 'iommufd').map((d) => d.id);
    if (group.length > 0 && iommufd.length > 0) {
      throw new VfiodError(
        'FAILED_PRECONDITION',
        `${context}: VM ${vmId} already has VFIO devices through the group (${group.join(', ')}) and through iommufd (${iommufd.join(', ')}): ` +
          `QEMU cannot keep both in one VM (QEMU 11.1.3 aborts); ${deviceId} is not added to it`,
        { reason: 'VFIO_BACKENDS_MIXED', bdf },
      );
    }
    const asked: VmVfioBackend | undefined = group.length > 0 ? { backend: 'group', ids: group } : iommufd.length > 0 ? { backend: 'iommufd', ids: iommufd } : undefined;
    // No record is no disagreement (the VM's devices came from elsewhere); records the VM contradicts are.
    if (recorded !== undefined && asked?.backend !== recorded.backend) {
      this.log.warn('VFIO backend: the VM and vfiod\'s records disagree; the VM decides', { vm: vmId, device: deviceId, vmDevices: describeVmBackend(asked), recorded: describeVmBackend(recorded) });
    }
    return asked;
  }

  /** The backend vfiod's records give a QEMU VM's VFIO devices other than `deviceId`'s, or undefined when it has none. */
  private recordedQemuVmBackend(vmId: string, deviceId: string): VmVfioBackend | undefined {
    const others = [...this.records.values()].filter((o) => o.vmId === vmId && o.deviceId !== deviceId && o.source.kind === 'pci').flatMap((o) => o.functions);
    if (others.length === 0) return undefined;
    // records from before the field was added are group attachments
    const backend = others.find((f) => f.vfioBackend !== null)?.vfioBackend ?? 'group';
    return { backend, ids: others.map((f) => f.vmmDeviceId) };
  }

  /** Undoes a failed attach: removes what the VMM got, releases what this attach prepared. Returns what it did. */
  private async rollbackAttach(a: Attachment, addedIds: string[], adapter: HypervisorAdapter | undefined, preparedByAttach: boolean): Promise<string> {
    const done: string[] = [];
    const failed: string[] = [];
    for (const id of [...addedIds].reverse()) {
      try {
        await adapter!.removeDevice(id, this.releaseWaitMs);
        done.push(`removed ${id} from the VMM`);
      } catch (error) {
        if (error instanceof VfiodError && error.code === 'NOT_FOUND') done.push(`${id} not in the VMM`);
        else failed.push(`remove ${id}: ${errorMessage(error)}`);
      }
    }
    if (failed.length > 0) {
      // The VMM may still hold the device: never rebind it; keep the claim and a record that says so.
      a.state = 'detach-pending';
      a.note = `attach failed and the rollback could not remove it from the VMM: ${failed.join('; ')}`;
      this.save(a);
      return `rollback incomplete (${failed.join('; ')}): the device stays claimed, attachment ${a.deviceId} is 'detach-pending'; detach it again`;
    }
    if (a.source.kind === 'pci' && preparedByAttach) {
      try {
        await this.devices.release(a.source.bdf, a.vmId, { waitMs: this.releaseWaitMs });
        done.push(`released ${a.source.bdf} to its host driver`);
      } catch (error) {
        a.state = 'detach-pending';
        a.note = `attach failed and the release failed: ${errorMessage(error)}`;
        this.save(a);
        return `rollback incomplete (release ${a.source.bdf}: ${errorMessage(error)}): attachment ${a.deviceId} is 'detach-pending'`;
      }
    }
    this.drop(a);
    return done.length ? `rolled back: ${done.join(', ')}` : 'nothing to roll back';
  }

  /** Hot-unplugs a device and gives it back to the host. */
  async detach(request: DetachRequest): Promise<DetachResult> {
    const vmId = request.vmId;
    if (typeof vmId !== 'string' || vmId.trim() === '') throw new VfiodError('INVALID_ARGUMENT', 'detach: a VM id is required', { reason: 'FIELD_REQUIRED', field: 'vm_id' });
    if (!request.deviceId && !request.bdf) {
      throw new VfiodError('INVALID_ARGUMENT', `detach from VM ${vmId}: a device id or a PCI address is required`, { reason: 'FIELD_REQUIRED', field: 'device_id', vmId });
    }
    return this.serialized(vmId, () => this.detachNow(request));
  }

  /** The attachment a detach of `deviceId` or `bdf` would act on; NOT_FOUND naming the VM when there is none. */
  find(vmId: string, deviceId: string | undefined, bdf: string | undefined): Attachment {
    if (deviceId) {
      const a = this.records.get(this.key(vmId, deviceId));
      if (!a) throw new VfiodError('NOT_FOUND', `detach from VM ${vmId}: VM ${vmId} has no attachment ${deviceId}`, { reason: 'ATTACHMENT_NOT_FOUND', vmId, deviceId });
      return a;
    }
    const wanted = sourceBdf({ bdf: bdf! }, `detach from VM ${vmId}`);
    const a = [...this.records.values()].find((r) => r.vmId === vmId && r.functions.some((f) => f.hostBdf === wanted));
    if (!a) {
      const other = [...this.records.values()].find((r) => r.functions.some((f) => f.hostBdf === wanted));
      throw new VfiodError('NOT_FOUND', `detach from VM ${vmId}: ${wanted} is not attached to VM ${vmId}${other ? ` (it is attached to VM ${other.vmId})` : ''}`, {
        reason: 'ATTACHMENT_NOT_FOUND',
        vmId,
        bdf: wanted,
        ...(other ? { otherVm: other.vmId } : {}),
      });
    }
    return a;
  }

  private async detachNow(request: DetachRequest): Promise<DetachResult> {
    const { vmId } = request;
    const a = this.find(vmId, request.deviceId, request.bdf);
    const context = `detach ${a.deviceId} (${describeSource(a.source)}) from VM ${vmId}`;
    const timeoutMs = request.timeoutMs ?? DEFAULT_DETACH_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    const previous = a.state;
    a.state = 'detaching';
    this.save(a);

    let vmmUnreachable: string | undefined;
    // Whether this call has asked the VMM to remove anything yet (or found a function gone).
    let removalRequested = false;
    const adapter = this.adapterFor(vmId, a.endpoint);
    try {
      // Companions first, the primary function last (reverse of attach).
      for (const fn of [...a.functions].reverse()) {
        request.onStep?.({ percent: 20, step: `removing ${fn.vmmDeviceId} from the VMM, waiting for the guest to let go (up to ${timeoutMs} ms)`, deviceId: a.deviceId });
        try {
          await adapter.removeDevice(fn.vmmDeviceId, Math.max(1, deadline - Date.now()));
          removalRequested = true;
        } catch (error) {
          if (error instanceof VfiodError && error.code === 'NOT_FOUND') {
            removalRequested = true;
            continue; // already gone (an earlier pending removal finished)
          }
          if (error instanceof VfiodError && error.code === 'DEADLINE_EXCEEDED' && commandNeverSent(error) && !removalRequested) {
            // No QMP greeting (another client holds the socket): device_del never reached the VMM, so the device is in
            // the VM as before and the attachment keeps its state.
            a.state = previous;
            a.note = `detach failed, nothing was asked of the VMM: ${error.message}`;
            this.save(a);
            const e = withContext(error, context);
            throw new VfiodError(e.code, `${e.message}; the removal of ${fn.vmmDeviceId} never reached the VMM: nothing was changed (state ${previous})`, {
              ...e.details,
              vmId,
              deviceId: a.deviceId,
              state: previous,
            });
          }
          if (error instanceof VfiodError && error.code === 'UNAVAILABLE') {
            // The VMM is gone or not answering: the release below only proceeds when no process holds the group.
            vmmUnreachable = error.message;
            break;
          }
          if (error instanceof VfiodError && error.code === 'DEADLINE_EXCEEDED') {
            // The same state either way, but a program can tell a VMM that did not answer from a guest that did not let go.
            const vmmSilent = error.reason === 'VMM_TIMEOUT';
            a.state = 'detach-pending';
            a.note = vmmSilent ? `removal of ${fn.vmmDeviceId} requested, the VMM did not answer: ${error.message}` : `removal requested, the guest has not released ${fn.vmmDeviceId} within ${timeoutMs} ms`;
            this.save(a);
            throw new VfiodError(
              'DEADLINE_EXCEEDED',
              `${context}: ${vmmSilent ? `the VMM did not answer (${error.message})` : `the guest did not release ${fn.vmmDeviceId} within ${timeoutMs} ms`}; the device stays claimed by VM ${vmId} and was not rebound (state detach-pending; detach again to keep waiting)`,
              { reason: vmmSilent ? 'VMM_TIMEOUT' : 'GUEST_DID_NOT_RELEASE', vmId, deviceId: a.deviceId, vmmDeviceId: fn.vmmDeviceId, timeoutMs, state: 'detach-pending' },
            );
          }
          // Refused by the guest or the VMM: it is still in the VM.
          a.state = previous === 'detach-pending' ? 'detach-pending' : 'attached';
          a.note = `detach failed: ${errorMessage(error)}`;
          this.save(a);
          const e = withContext(error, context);
          throw new VfiodError(e.code, e.message, { ...e.details, vmId, deviceId: a.deviceId, state: a.state });
        }
      }
    } finally {
      await adapter.close();
    }

    const released: string[] = [];
    if (a.source.kind === 'pci' && a.preparedByAttach && request.release !== false) {
      request.onStep?.({ percent: 70, step: `giving ${a.source.bdf} back to its host driver`, deviceId: a.deviceId });
      try {
        // Waits for the VMM to close the VFIO group (it does so after tearing the device down).
        const result = await this.devices.release(a.source.bdf, vmId, { waitMs: Math.max(this.releaseWaitMs, deadline - Date.now()) });
        released.push(...result.devices.map((d) => d.bdf));
      } catch (error) {
        a.state = 'detach-pending';
        a.note = `${vmmUnreachable ? `VMM unreachable (${vmmUnreachable}); ` : ''}release failed: ${errorMessage(error)}`;
        this.save(a);
        const e = withContext(error, context);
        throw new VfiodError(e.code, `${e.message}; the device stays claimed by VM ${vmId} (state detach-pending)`, { ...e.details, vmId, deviceId: a.deviceId, state: 'detach-pending' });
      }
    } else if (vmmUnreachable && (await this.stillHeld(a)).held) {
      a.state = 'detach-pending';
      a.note = `VMM unreachable: ${vmmUnreachable}`;
      this.save(a);
      throw new VfiodError('UNAVAILABLE', `${context}: ${vmmUnreachable}; the attachment stays (state detach-pending)`, {
        reason: 'VMM_UNAVAILABLE',
        vmId,
        deviceId: a.deviceId,
        state: 'detach-pending',
      });
    }
    this.drop(a);
    this.log.info('detached', { vm: vmId, device: a.deviceId, released, vmmUnreachable });
    return { vmId, deviceId: a.deviceId, released };
  }

  /**
   * Whether anything may still use the attachment's device while its VMM does not answer: for VFIO, a process holding
   * one of its groups open; for vfio-user, unless the vfioUserInUse hook says no hypervisor is connected.
   */
  private async stillHeld(a: Attachment): Promise<{ held: boolean; pids: number[] }> {
    if (a.source.kind === 'vfio-user') return { held: (await this.userSocketInUse(a.source.socketPath)) !== false, pids: [] };
    const groups = a.functions
      .map((f) => (f.hostBdf ? this.devices.claims.get(f.hostBdf) : undefined))
      .filter((c) => c !== undefined)
      .map((c) => ({ iommuGroup: c.iommuGroup }));
    const pids = this.devices.holders(groups).map((h) => h.pid);
    return { held: pids.length > 0, pids };
  }

  /** The vfioUserInUse hook's answer; undefined when there is no hook or it failed. */
  private async userSocketInUse(socketPath: string): Promise<boolean | undefined> {
    try {
      return await this.vfioUserInUse?.(socketPath);
    } catch (error) {
      this.log.warn('vfioUserInUse failed', { socket: socketPath, error: errorMessage(error) });
      return undefined;
    }
  }

  /**
   * Compares every record with its VMM (run at daemon start, after DeviceManager.reconcile): an interrupted attach
   * whose device the VMM lists is completed, one it does not list is rolled back; an interrupted or pending detach
   * whose device is gone is finished (released); an 'attached' device the VMM no longer lists is released and its
   * record removed. A VMM that does not answer counts as gone only when no process holds the device's VFIO group.
   */
  async reconcile(timeoutMs = 5000): Promise<AttachmentReconcileEntry[]> {
    const report: AttachmentReconcileEntry[] = [];
    for (const a of this.list()) {
      const entry = await this.serialized(a.vmId, () => this.reconcileOne(a, timeoutMs));
      report.push(entry);
      this.log.info('reconcile', { ...entry });
    }
    return report;
  }

  private async reconcileOne(snapshot: Attachment, timeoutMs: number): Promise<AttachmentReconcileEntry> {
    const a = this.records.get(this.key(snapshot.vmId, snapshot.deviceId));
    const base = { vmId: snapshot.vmId, deviceId: snapshot.deviceId };
    if (!a) return { ...base, action: 'ok', detail: 'gone meanwhile' };
    let listed: Set<string> | undefined;
    let unreachable: string | undefined;
    const adapter = this.adapterFor(a.vmId, a.endpoint);
    try {
      listed = new Set((await adapter.listDevices(timeoutMs)).map((d) => d.id));
    } catch (error) {
      unreachable = errorMessage(error);
    } finally {
      await adapter.close();
    }
    const present = listed ? a.functions.filter((f) => listed.has(f.vmmDeviceId)).map((f) => f.vmmDeviceId) : undefined;
    if (listed && present!.length === a.functions.length && (a.state === 'attached' || a.state === 'attaching')) {
      if (a.state === 'attaching') {
        a.state = 'attached';
        a.note = 'attach completed by reconcile';
        this.save(a);
        return { ...base, action: 'repaired', detail: 'interrupted attach: the VMM lists the device, now attached' };
      }
      return { ...base, action: 'ok', detail: 'attached; the VMM lists it' };
    }
    if (listed && present!.length > 0) {
      if (a.state === 'attached') {
        a.note = `the VMM lists only ${present!.join(', ')}`;
        this.save(a);
        return { ...base, action: 'attention', detail: `the VMM lists only ${present!.join(', ')} of ${a.functions.map((f) => f.vmmDeviceId).join(', ')}: detach it` };
      }
      a.state = 'detach-pending';
      this.save(a);
      return { ...base, action: 'attention', detail: `the VMM still lists ${present!.join(', ')}: detach it again` };
    }
    if (unreachable) {
      // Gone or just not answering? For VFIO an open group tells; for vfio-user only the vfioUserInUse hook can.
      const { held, pids } = await this.stillHeld(a);
      if (held) {
        a.note = `reconcile: VMM unreachable (${unreachable})${pids.length ? `; held by pid ${pids.join(', ')}` : ''}`;
        this.save(a);
        return { ...base, action: 'attention', detail: a.note };
      }
    }
    // Not in the VM (or its VMM is gone and nothing holds the device): give the device back.
    if (a.source.kind === 'pci' && a.preparedByAttach && this.devices.claims.get(a.source.bdf)?.owner === a.vmId) {
      try {
        await this.devices.release(a.source.bdf, a.vmId, { waitMs: 0 });
      } catch (error) {
        a.state = 'detach-pending';
        a.note = `reconcile: ${unreachable ? `VMM unreachable (${unreachable}); ` : ''}release failed: ${errorMessage(error)}`;
        this.save(a);
        return { ...base, action: 'attention', detail: a.note };
      }
    }
    this.drop(a);
    return {
      ...base,
      action: 'removed',
      detail: `${unreachable ? `VMM unreachable and nothing holds the device (${unreachable})` : 'the VMM no longer lists it'}: record removed${a.source.kind === 'pci' && a.preparedByAttach ? `, ${a.source.bdf} released` : ''}`,
    };
  }

  /**
   * The exact static configuration for creating a VM with these devices (src/hypervisor/static-config.ts). With a
   * vmId, each PCI device's companions (GPU audio) prepared with it are added, and devices not prepared for that VM
   * are reported in the warnings (prepare them before starting the VM).
   */
  staticConfig(request: StaticConfigRequest): StaticConfigResult {
    const devices: StaticDevice[] = [];
    const warnings: string[] = [];
    const claims = this.devices.claims.list();
    if (!Array.isArray(request.devices)) return buildStaticConfig(request); // refuses it with the precise error
    for (const d of request.devices) {
      devices.push(d);
      if (!request.vmId || d?.source?.kind !== 'pci') continue;
      const bdf = sourceBdf(d.source, `static config for VM ${request.vmId}`);
      const claim = claims.find((c) => c.bdf === bdf);
      if (!claim || claim.owner !== request.vmId || claim.state !== 'prepared') {
        warnings.push(`${bdf} is not prepared for VM ${request.vmId}${claim ? ` (claimed by ${claim.owner}, ${claim.state})` : ''}: prepare it before starting the VM`);
        continue;
      }
      const id = d.id ?? defaultDeviceId(d.source);
      claims.filter((c) => c.primary === bdf && c.bdf !== bdf).forEach((c, i) => {
        devices.push({
          source: { kind: 'pci', bdf: c.bdf },
          id: `${id}-f${i + 1}`,
          ...(d.iommu !== undefined ? { iommu: d.iommu } : {}),
          ...(d.pciSegment !== undefined ? { pciSegment: d.pciSegment } : {}),
          ...(d.vfioBackend !== undefined ? { vfioBackend: d.vfioBackend } : {}),
        });
      });
    }
    // The host's facts of every PCI function (NUMA node, BARs) size the 64-bit window and place the devices.
    // Their VFIO interfaces decide how the VMM opens each (group or iommufd).
    const hostFunctions: Record<string, HostFunctionFacts> = {};
    const hostVfio: Record<string, VfioFacts> = {};
    for (const d of devices) {
      const bdf = d?.source?.kind === 'pci' ? normalizeBdf(String(d.source.bdf)) : undefined;
      if (!bdf) continue;
      const facts = this.devices.functionFacts(bdf);
      if (facts) hostFunctions[bdf] = facts;
      const vfio = this.devices.vfioFacts(bdf);
      if (vfio) hostVfio[bdf] = vfio;
    }
    const result = buildStaticConfig({ ...request, devices, hostFunctions, hostVfio });
    result.warnings.unshift(...warnings);
    return result;
  }
}
