/**
 * Admin command set: decodes and validates each admin SQE and carries it out through `AdminHost`, which the
 * controller implements (it owns queues, events and timers). Commands complete synchronously except Asynchronous
 * Event Request (completes when an event occurs) and Delete I/O SQ with commands in flight (completes when they
 * drain); those report `DEFERRED`.
 */
import { DmaError, type DmaSpace } from '../memory/guest-memory.js';
import type { Namespace, NamespaceIds } from '../namespace/namespace.js';
import { mapDataPointer } from './data-pointer.js';
import {
  FeatureSelect,
  featureHasData,
  HOST_IDENTIFIER_SIZE,
  TIMESTAMP_DATA_SIZE,
  type FeatureResult,
  type FeatureState,
} from './features.js';
import type { ResolvedControllerIdentity } from './identity.js';
import {
  buildActiveNamespaceList,
  buildIdentifyController,
  buildIdentifyNamespace,
  buildIndependentIdentifyNamespace,
  buildIoCommandSetVector,
  buildNamespaceDescriptors,
  IDENTIFY_DATA_SIZE,
  SUPPORTED_ADMIN_OPCODES,
  type ControllerIdentifyInfo,
} from './identify.js';
import {
  buildCommandEffectsLog,
  buildFirmwareSlotLog,
  buildSmartLog,
  CHANGED_NAMESPACE_LOG_SIZE,
  COMMAND_EFFECTS_LOG_SIZE,
  ERROR_LOG_SIZE,
  FIRMWARE_SLOT_LOG_SIZE,
  SMART_LOG_SIZE,
  type ChangedNamespaceList,
  type ErrorLog,
  type SmartLogInfo,
} from './log-pages.js';
import type { CompletionQueue, SubmissionQueue } from './queues.js';
import { AdminOpcode, CQE_SIZE, FeatureId, IdentifyCns, LogPageId, PAGE_SIZE, SQE_SIZE, Status } from '../spec/nvme.js';

/** Status placeholder for a command that completes later. */
export const DEFERRED = -1;

const NSID_BROADCAST = 0xffffffff;
/** Command Set Identifier of the NVM command set. */
const CSI_NVM = 0;
/** The largest log page we hold; scratch space for building any Identify or log page. */
const SCRATCH_SIZE = 4096;

export interface NamespaceEntry {
  namespace: Namespace;
  ids: NamespaceIds;
}

export interface AdminResult {
  /** 16-bit status, or DEFERRED. */
  status: number;
  dw0: number;
}

/** What admin commands need of their controller. */
export interface AdminHost {
  readonly dma: DmaSpace;
  readonly identity: ResolvedControllerIdentity;
  readonly namespaces: readonly NamespaceEntry[];
  readonly features: FeatureState;
  readonly errorLog: ErrorLog;
  readonly changedNamespaces: ChangedNamespaceList;
  readonly identifyInfo: ControllerIdentifyInfo;
  /** Largest data transfer of an admin command in bytes. */
  readonly maxAdminTransferBytes: number;
  /** Maximum entries of an I/O queue (CAP.MQES + 1). */
  readonly maxQueueEntries: number;
  /** Interrupt vectors a completion queue may use (at least 1). */
  readonly vectorCount: number;
  /** I/O queues were created since the controller was enabled (Number of Queues is fixed from then on). */
  readonly ioQueuesCreated: boolean;
  /** CC.IOSQES / CC.IOCQES hold the only entry sizes we support. */
  readonly ioSubmissionEntrySizeValid: boolean;
  readonly ioCompletionEntrySizeValid: boolean;
  completionQueue(qid: number): CompletionQueue | undefined;
  submissionQueue(qid: number): SubmissionQueue | undefined;
  createCompletionQueue(qid: number, iova: number, entries: number, vector: number, interruptsEnabled: boolean): void;
  createSubmissionQueue(qid: number, iova: number, entries: number, cq: CompletionQueue, priority: number): void;
  /**
   * Starts deleting `sq`: its unfetched commands complete as aborted (or implicitly, see the controller). True when it
   * is gone already, false when the command completes once in-flight I/O drains.
   */
  deleteSubmissionQueue(sq: SubmissionQueue, commandId: number): boolean;
  deleteCompletionQueue(cq: CompletionQueue): void;
  smartLogInfo(): SmartLogInfo;
  /** Queues an Asynchronous Event Request; returns DEFERRED or a failure status. */
  asyncEventRequest(commandId: number): number;
  /** The host read log page `lid` with RAE cleared: events reported for it may be reported again. */
  logPageConsumed(lid: number): void;
  keepAlive(): void;
  keepAliveTimerChanged(): void;
  /** Temperature thresholds or event configuration changed: re-evaluate the SMART temperature warning. */
  smartConfigurationChanged(): void;
  configureShadowDoorbells(shadowIova: number, eventIndexIova: number): void;
}

export class AdminCommandHandler {
  private readonly scratch = new Uint8Array(SCRATCH_SIZE);
  private readonly segments: Uint8Array[] = [];
  private readonly featureResult: FeatureResult = { status: 0, dw0: 0 };

  constructor(private readonly host: AdminHost) {}

  /** Executes one admin command (a private copy of its SQE); the outcome lands in `result`. */
  execute(sqe: DataView, result: AdminResult): void {
    result.dw0 = 0;
    result.status = this.dispatch(sqe, result);
  }

  private dispatch(sqe: DataView, result: AdminResult): number {
    const opcode = sqe.getUint8(0);
    if (!isSupportedOpcode(opcode)) return Status.INVALID_OPCODE;
    // Fused operations and SGLs do not exist for admin commands over PCIe.
    const flags = sqe.getUint8(1);
    if ((flags & 0x3) !== 0 || flags >>> 6 !== 0) return Status.INVALID_FIELD;
    switch (opcode) {
      case AdminOpcode.IDENTIFY:
        return this.identify(sqe);
      case AdminOpcode.GET_LOG_PAGE:
        return this.getLogPage(sqe);
      case AdminOpcode.GET_FEATURES:
        return this.getFeatures(sqe, result);
      case AdminOpcode.SET_FEATURES:
        return this.setFeatures(sqe, result);
      case AdminOpcode.CREATE_IO_CQ:
        return this.createCompletionQueue(sqe);
      case AdminOpcode.CREATE_IO_SQ:
        return this.createSubmissionQueue(sqe);
      case AdminOpcode.DELETE_IO_SQ:
        return this.deleteSubmissionQueue(sqe);
      case AdminOpcode.DELETE_IO_CQ:
        return this.deleteCompletionQueue(sqe);
      case AdminOpcode.ABORT:
        // Commands run as soon as they are fetched, so there is never a queued one to abort: DW0 bit 0 = not aborted.
        result.dw0 = 1;
        return Status.SUCCESS;
      case AdminOpcode.ASYNC_EVENT_REQUEST:
        return this.host.asyncEventRequest(commandId(sqe));
      case AdminOpcode.KEEP_ALIVE:
        this.host.keepAlive();
        return Status.SUCCESS;
      case AdminOpcode.DOORBELL_BUFFER_CONFIG:
        return this.doorbellBufferConfig(sqe);
      default:
        return Status.INVALID_OPCODE;
    }
  }

  private identify(sqe: DataView): number {
    const cdw10 = dword(sqe, 10);
    const cns = cdw10 & 0xff;
    const csi = dword(sqe, 11) >>> 24;
    const nsid = dword(sqe, 1);
    const out = this.clearedScratch();
    const namespaceCount = this.host.namespaces.length;
    switch (cns) {
      case IdentifyCns.NAMESPACE: {
        const entry = this.activeNamespace(nsid);
        if (!entry) return Status.INVALID_NAMESPACE_OR_FORMAT;
        buildIdentifyNamespace(out, entry.namespace, entry.ids);
        break;
      }
      case IdentifyCns.CONTROLLER:
        buildIdentifyController(out, this.host.identifyInfo);
        break;
      case IdentifyCns.ACTIVE_NAMESPACE_LIST:
        if (nsid >= 0xfffffffe) return Status.INVALID_NAMESPACE_OR_FORMAT;
        buildActiveNamespaceList(out, namespaceCount, nsid);
        break;
      case IdentifyCns.NAMESPACE_DESCRIPTORS: {
        const entry = this.activeNamespace(nsid);
        if (!entry) return Status.INVALID_NAMESPACE_OR_FORMAT;
        buildNamespaceDescriptors(out, entry.ids);
        break;
      }
      case IdentifyCns.IO_COMMAND_SET_NAMESPACE:
        // The NVM command set's namespace structure has nothing to report for our single plain LBA format.
        if (csi !== CSI_NVM) return Status.INVALID_FIELD;
        if (!this.activeNamespace(nsid)) return Status.INVALID_NAMESPACE_OR_FORMAT;
        break;
      case IdentifyCns.IO_COMMAND_SET_CONTROLLER:
        // NVM command set controller structure: all zeroes = no limits beyond MDTS.
        if (csi !== CSI_NVM) return Status.INVALID_FIELD;
        break;
      case IdentifyCns.IO_COMMAND_SET_ACTIVE_NAMESPACE_LIST:
        if (csi !== CSI_NVM) return Status.INVALID_FIELD;
        if (nsid >= 0xfffffffe) return Status.INVALID_NAMESPACE_OR_FORMAT;
        buildActiveNamespaceList(out, namespaceCount, nsid);
        break;
      case IdentifyCns.IO_COMMAND_SET_INDEPENDENT_NAMESPACE: {
        const entry = this.activeNamespace(nsid);
        if (!entry) return Status.INVALID_NAMESPACE_OR_FORMAT;
        buildIndependentIdentifyNamespace(out, entry.namespace);
        break;
      }
      case IdentifyCns.IO_COMMAND_SET:
        buildIoCommandSetVector(out);
        break;
      default:
        return Status.INVALID_FIELD;
    }
    return this.transferToHost(sqe, out, IDENTIFY_DATA_SIZE);
  }

  private getLogPage(sqe: DataView): number {
    const cdw10 = dword(sqe, 10);
    const lid = cdw10 & 0xff;
    const retainEvent = (cdw10 & (1 << 15)) !== 0;
    const dwords = ((dword(sqe, 11) & 0xffff) * 0x10000 + (cdw10 >>> 16)) + 1;
    const length = dwords * 4;
    const offset = dword(sqe, 13) * 0x1_0000_0000 + dword(sqe, 12);
    const nsid = dword(sqe, 1);
    if (offset % 4 !== 0) return Status.INVALID_FIELD;
    if (length > this.host.maxAdminTransferBytes) return Status.INVALID_FIELD;

    const out = this.clearedScratch();
    let size: number;
    switch (lid) {
      case LogPageId.ERROR_INFORMATION:
        size = ERROR_LOG_SIZE;
        this.host.errorLog.build(out);
        break;
      case LogPageId.SMART_HEALTH:
        // Controller-wide only (LPA bit 0 = 0).
        if (nsid !== 0 && nsid !== NSID_BROADCAST) return Status.INVALID_FIELD;
        size = SMART_LOG_SIZE;
        buildSmartLog(out, this.host.smartLogInfo());
        break;
      case LogPageId.FIRMWARE_SLOT:
        size = FIRMWARE_SLOT_LOG_SIZE;
        buildFirmwareSlotLog(out, this.host.identity.firmwareRevision);
        break;
      case LogPageId.CHANGED_NAMESPACE_LIST:
        size = CHANGED_NAMESPACE_LOG_SIZE;
        this.host.changedNamespaces.build(out);
        break;
      case LogPageId.COMMANDS_SUPPORTED_AND_EFFECTS:
        if (dword(sqe, 14) >>> 24 !== CSI_NVM) return Status.INVALID_FIELD;
        size = COMMAND_EFFECTS_LOG_SIZE;
        buildCommandEffectsLog(out);
        break;
      default:
        return Status.INVALID_LOG_PAGE;
    }
    if (offset >= size) return Status.INVALID_FIELD;
    const status = this.transferToHost(sqe, out.subarray(offset, size), length);
    if (status !== Status.SUCCESS) return status;
    if (!retainEvent) {
      if (lid === LogPageId.CHANGED_NAMESPACE_LIST) this.host.changedNamespaces.clear();
      this.host.logPageConsumed(lid);
    }
    return Status.SUCCESS;
  }

  private getFeatures(sqe: DataView, result: AdminResult): number {
    const cdw10 = dword(sqe, 10);
    const fid = cdw10 & 0xff;
    const select = (cdw10 >>> 8) & 0x7;
    const cdw11 = dword(sqe, 11);
    const feature = this.featureResult;
    this.host.features.get(fid, select, cdw11, feature);
    if (feature.status !== Status.SUCCESS) return feature.status;
    result.dw0 = feature.dw0;
    if (!featureHasData(fid) || select === FeatureSelect.SUPPORTED_CAPABILITIES) return Status.SUCCESS;
    const out = this.clearedScratch();
    if (fid === FeatureId.TIMESTAMP) {
      this.host.features.getTimestamp(out);
      return this.transferToHost(sqe, out, TIMESTAMP_DATA_SIZE);
    }
    out.set(this.host.features.hostIdentifier);
    return this.transferToHost(sqe, out, HOST_IDENTIFIER_SIZE);
  }

  private setFeatures(sqe: DataView, result: AdminResult): number {
    const host = this.host;
    const cdw10 = dword(sqe, 10);
    const fid = cdw10 & 0xff;
    const save = (cdw10 & 0x80000000) !== 0;
    const cdw11 = dword(sqe, 11);
    const nsid = dword(sqe, 1);
    const feature = this.featureResult;

    // Validate the feature id first (unknown = Invalid Field), then the save bit and the namespace scope.
    host.features.get(fid, FeatureSelect.SUPPORTED_CAPABILITIES, 0, feature);
    if (feature.status !== Status.SUCCESS) return feature.status;
    if (save) return Status.FEATURE_NOT_SAVEABLE;
    if (nsid !== 0 && nsid !== NSID_BROADCAST) {
      if (fid !== FeatureId.ERROR_RECOVERY) return Status.FEATURE_NOT_NAMESPACE_SPECIFIC;
      if (!this.activeNamespace(nsid)) return Status.INVALID_NAMESPACE_OR_FORMAT;
    }

    if (fid === FeatureId.TIMESTAMP || fid === FeatureId.HOST_IDENTIFIER) {
      if (fid === FeatureId.HOST_IDENTIFIER && (cdw11 & 1) !== 0) return Status.INVALID_FIELD; // 128-bit: no
      const size = fid === FeatureId.TIMESTAMP ? TIMESTAMP_DATA_SIZE : HOST_IDENTIFIER_SIZE;
      const data = this.clearedScratch().subarray(0, size);
      const status = this.transferFromHost(sqe, data);
      if (status !== Status.SUCCESS) return status;
      if (fid === FeatureId.TIMESTAMP) host.features.setTimestamp(data);
      else host.features.setHostIdentifier(data);
      return Status.SUCCESS;
    }

    host.features.set(fid, cdw11, host.ioQueuesCreated, feature);
    if (feature.status !== Status.SUCCESS) return feature.status;
    result.dw0 = feature.dw0;
    if (fid === FeatureId.KEEP_ALIVE_TIMER) host.keepAliveTimerChanged();
    if (fid === FeatureId.TEMPERATURE_THRESHOLD || fid === FeatureId.ASYNC_EVENT_CONFIGURATION) {
      host.smartConfigurationChanged();
    }
    return Status.SUCCESS;
  }

  private createCompletionQueue(sqe: DataView): number {
    const host = this.host;
    const cdw10 = dword(sqe, 10);
    const cdw11 = dword(sqe, 11);
    const qid = cdw10 & 0xffff;
    const entries = (cdw10 >>> 16) + 1;
    const physicallyContiguous = (cdw11 & 1) !== 0;
    const interruptsEnabled = (cdw11 & 2) !== 0;
    const vector = cdw11 >>> 16;
    const base = address(sqe, 24);

    if (qid === 0 || qid > host.features.allocatedCompletionQueues || host.completionQueue(qid)) {
      return Status.INVALID_QUEUE_IDENTIFIER;
    }
    if (entries < 2 || entries > host.maxQueueEntries) return Status.INVALID_QUEUE_SIZE;
    if (!physicallyContiguous) return Status.INVALID_FIELD; // CAP.CQR = 1
    if (vector >= host.vectorCount) return Status.INVALID_INTERRUPT_VECTOR;
    if (!host.ioCompletionEntrySizeValid) return Status.INVALID_FIELD;
    if (base < 0 || base % PAGE_SIZE !== 0) return Status.INVALID_FIELD;
    if (!this.isMapped(base, entries * CQE_SIZE, 'write')) return Status.INVALID_FIELD;
    host.createCompletionQueue(qid, base, entries, vector, interruptsEnabled);
    return Status.SUCCESS;
  }

  private createSubmissionQueue(sqe: DataView): number {
    const host = this.host;
    const cdw10 = dword(sqe, 10);
    const cdw11 = dword(sqe, 11);
    const qid = cdw10 & 0xffff;
    const entries = (cdw10 >>> 16) + 1;
    const physicallyContiguous = (cdw11 & 1) !== 0;
    const priority = (cdw11 >>> 1) & 0x3;
    const cqid = cdw11 >>> 16;
    const base = address(sqe, 24);

    if (qid === 0 || qid > host.features.allocatedSubmissionQueues || host.submissionQueue(qid)) {
      return Status.INVALID_QUEUE_IDENTIFIER;
    }
    const cq = cqid === 0 ? undefined : host.completionQueue(cqid);
    if (!cq) return Status.COMPLETION_QUEUE_INVALID;
    if (entries < 2 || entries > host.maxQueueEntries) return Status.INVALID_QUEUE_SIZE;
    if (!physicallyContiguous) return Status.INVALID_FIELD;
    if (!host.ioSubmissionEntrySizeValid) return Status.INVALID_FIELD;
    if (base < 0 || base % PAGE_SIZE !== 0) return Status.INVALID_FIELD;
    if (!this.isMapped(base, entries * SQE_SIZE, 'read')) return Status.INVALID_FIELD;
    host.createSubmissionQueue(qid, base, entries, cq, priority);
    return Status.SUCCESS;
  }

  private deleteSubmissionQueue(sqe: DataView): number {
    const qid = dword(sqe, 10) & 0xffff;
    const sq = qid === 0 ? undefined : this.host.submissionQueue(qid);
    if (!sq || sq.deleting) return Status.INVALID_QUEUE_IDENTIFIER;
    return this.host.deleteSubmissionQueue(sq, commandId(sqe)) ? Status.SUCCESS : DEFERRED;
  }

  private deleteCompletionQueue(sqe: DataView): number {
    const qid = dword(sqe, 10) & 0xffff;
    const cq = qid === 0 ? undefined : this.host.completionQueue(qid);
    if (!cq) return Status.INVALID_QUEUE_IDENTIFIER;
    if (cq.submissionQueues > 0) return Status.INVALID_QUEUE_DELETION;
    this.host.deleteCompletionQueue(cq);
    return Status.SUCCESS;
  }

  private doorbellBufferConfig(sqe: DataView): number {
    // PRP1: shadow doorbell page; PRP2: EventIdx page. Both page aligned and fully mapped.
    const shadow = address(sqe, 24);
    const eventIndex = address(sqe, 32);
    if (shadow < 0 || eventIndex < 0 || shadow % PAGE_SIZE !== 0 || eventIndex % PAGE_SIZE !== 0) {
      return Status.INVALID_FIELD;
    }
    if (!this.isMapped(shadow, PAGE_SIZE, 'write') || !this.isMapped(eventIndex, PAGE_SIZE, 'write')) {
      return Status.INVALID_FIELD;
    }
    this.host.configureShadowDoorbells(shadow, eventIndex);
    return Status.SUCCESS;
  }

  /** The active namespace `nsid` (1..NN); undefined for 0, broadcast and anything beyond NN. */
  private activeNamespace(nsid: number): NamespaceEntry | undefined {
    if (nsid === 0 || nsid > this.host.namespaces.length) return undefined;
    return this.host.namespaces[nsid - 1];
  }

  private clearedScratch(): Uint8Array {
    this.scratch.fill(0);
    return this.scratch;
  }

  /** Copies `data` to the command's PRPs, zero-filling up to `length` (a log read past the page end gets zeroes). */
  private transferToHost(sqe: DataView, data: Uint8Array, length: number): number {
    const segments = this.segments;
    const status = mapDataPointer(this.host.dma, sqe, length, 'write', segments, false);
    if (status !== Status.SUCCESS) return status;
    let copied = 0;
    for (const segment of segments) {
      const available = Math.max(0, Math.min(segment.length, data.length - copied));
      if (available > 0) segment.set(data.subarray(copied, copied + available));
      if (available < segment.length) segment.fill(0, available);
      copied += segment.length;
    }
    segments.length = 0;
    return Status.SUCCESS;
  }

  /** Fills `data` from the command's PRPs. */
  private transferFromHost(sqe: DataView, data: Uint8Array): number {
    const segments = this.segments;
    const status = mapDataPointer(this.host.dma, sqe, data.length, 'read', segments, false);
    if (status !== Status.SUCCESS) return status;
    let copied = 0;
    for (const segment of segments) {
      data.set(segment, copied);
      copied += segment.length;
    }
    segments.length = 0;
    return Status.SUCCESS;
  }

  private isMapped(iova: number, length: number, access: 'read' | 'write'): boolean {
    try {
      this.host.dma.find(iova, length, access);
      return true;
    } catch (error) {
      if (error instanceof DmaError) return false;
      throw error;
    }
  }
}

function isSupportedOpcode(opcode: number): boolean {
  return SUPPORTED_ADMIN_OPCODES.includes(opcode);
}

/** Command Dword `index` of an SQE. */
export function dword(sqe: DataView, index: number): number {
  return sqe.getUint32(index * 4, true);
}

export function commandId(sqe: DataView): number {
  return sqe.getUint16(2, true);
}

/** A 64-bit address field of an SQE, or -1 when no mapping could hold it (2^53 or more). */
function address(sqe: DataView, offset: number): number {
  const high = sqe.getUint32(offset + 4, true);
  if (high > 0x1fffff) return -1;
  return high * 0x1_0000_0000 + sqe.getUint32(offset, true);
}
