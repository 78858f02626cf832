/**
 * Admin command set: decodes and validates each admin SQE and carries it out on the controller's parts (queue
 * engine, async events, features, namespaces, health record), which it receives as objects; it calls nothing of the
 * controller itself. Commands complete synchronously except Asynchronous Event Request (completes when an event
 * occurs) and Delete I/O SQ with commands in flight (completes when they drain); those report `DEFERRED`.
 */
import { DmaError, type DmaSpace } from '../memory/guest-memory.js';
import { AdminOpcode, CQE_SIZE, FeatureId, IdentifyCns, LogPageId, PAGE_SIZE, SQE_SIZE, Status } from '../spec/nvme.js';
import type { AsyncEvents } from './async-events.js';
import { mapDataPointer } from './data-pointer.js';
import {
  FeatureSelect,
  featureHasData,
  HOST_IDENTIFIER_SIZE,
  TIMESTAMP_DATA_SIZE,
  type FeatureResult,
  type FeatureState,
} from './features.js';
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
  type HealthRecord,
} from './log-pages.js';
import { MAX_NSID, type NamespaceEntry, type NamespaceSet } from './namespaces.js';
import type { QueueEngine } from './queue-engine.js';
import { Cc, ccField, IO_CQ_ENTRY_SIZE_LOG2, IO_SQ_ENTRY_SIZE_LOG2, type ControllerRegisters } from './registers.js';

/** Status placeholder for a command that completes later. */
export const DEFERRED = -1;

const NSID_BROADCAST = 0xffffffff;
/** Command Set Identifier of the NVM command set. */
const CSI_NVM = 0;
/** The largest log page we hold; scratch space for building any Identify or log page. */
const SCRATCH_SIZE = 4096;

export interface AdminResult {
  /** 16-bit status, or DEFERRED. */
  status: number;
  dw0: number;
}

/** The controller's parts admin commands work on. */
export interface AdminParts {
  readonly dma: DmaSpace;
  /** Read for CC.IOSQES / CC.IOCQES at queue creation. */
  readonly registers: ControllerRegisters;
  readonly queues: QueueEngine;
  readonly events: AsyncEvents;
  readonly features: FeatureState;
  readonly namespaces: NamespaceSet;
  readonly health: HealthRecord;
  /** Identify Controller's inputs; also the identity (firmware revision) and the I/O queue size limit. */
  readonly identifyInfo: ControllerIdentifyInfo;
  /** Largest data transfer of an admin command in bytes. */
  readonly maxAdminTransferBytes: number;
  /** Interrupt vectors a completion queue may use (at least 1). */
  readonly vectorCount: number;
}

export class AdminCommandHandler {
  private readonly scratch = new Uint8Array(SCRATCH_SIZE);
  private readonly segments: Uint8Array[] = [];
  private readonly featureResult: FeatureResult = { status: 0, dw0: 0 };

  private readonly dma: DmaSpace;
  private readonly registers: ControllerRegisters;
  private readonly queues: QueueEngine;
  private readonly events: AsyncEvents;
  private readonly features: FeatureState;
  private readonly namespaces: NamespaceSet;
  private readonly health: HealthRecord;
  private readonly identifyInfo: ControllerIdentifyInfo;
  private readonly maxAdminTransferBytes: number;
  private readonly vectorCount: number;

  constructor(parts: AdminParts) {
    this.dma = parts.dma;
    this.registers = parts.registers;
    this.queues = parts.queues;
    this.events = parts.events;
    this.features = parts.features;
    this.namespaces = parts.namespaces;
    this.health = parts.health;
    this.identifyInfo = parts.identifyInfo;
    this.maxAdminTransferBytes = parts.maxAdminTransferBytes;
    this.vectorCount = parts.vectorCount;
  }

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
        return this.events.request(commandId(sqe)) ? DEFERRED : Status.ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED;
      case AdminOpcode.KEEP_ALIVE:
        this.events.keepAlive();
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
    switch (cns) {
      case IdentifyCns.NAMESPACE: {
        const entry = this.activeNamespace(nsid);
        // An inactive NSID the controller may use (one detached, or not attached yet) reads as all zeroes.
        if (!entry) return nsid >= 1 && nsid <= MAX_NSID ? Status.SUCCESS : Status.INVALID_NAMESPACE_OR_FORMAT;
        buildIdentifyNamespace(out, entry.namespace, entry.ids);
        break;
      }
      case IdentifyCns.CONTROLLER:
        buildIdentifyController(out, this.identifyInfo);
        break;
      case IdentifyCns.ACTIVE_NAMESPACE_LIST:
        if (nsid >= 0xfffffffe) return Status.INVALID_NAMESPACE_OR_FORMAT;
        buildActiveNamespaceList(out, this.namespaces.activeNsids, nsid);
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
        buildActiveNamespaceList(out, this.namespaces.activeNsids, nsid);
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
    if (length > this.maxAdminTransferBytes) return Status.INVALID_FIELD;

    const out = this.clearedScratch();
    let size: number;
    switch (lid) {
      case LogPageId.ERROR_INFORMATION:
        size = ERROR_LOG_SIZE;
        this.health.errorLog.build(out);
        break;
      case LogPageId.SMART_HEALTH:
        // Controller-wide only (LPA bit 0 = 0).
        if (nsid !== 0 && nsid !== NSID_BROADCAST) return Status.INVALID_FIELD;
        size = SMART_LOG_SIZE;
        buildSmartLog(out, this.health.smartLogInfo(this.features.temperatureWarning));
        break;
      case LogPageId.FIRMWARE_SLOT:
        size = FIRMWARE_SLOT_LOG_SIZE;
        buildFirmwareSlotLog(out, this.identifyInfo.identity.firmwareRevision);
        break;
      case LogPageId.CHANGED_NAMESPACE_LIST:
        size = CHANGED_NAMESPACE_LOG_SIZE;
        this.namespaces.changed.build(out);
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
      if (lid === LogPageId.CHANGED_NAMESPACE_LIST) this.namespaces.changed.clear();
      this.events.logPageConsumed(lid);
    }
    return Status.SUCCESS;
  }

  private getFeatures(sqe: DataView, result: AdminResult): number {
    const cdw10 = dword(sqe, 10);
    const fid = cdw10 & 0xff;
    const select = (cdw10 >>> 8) & 0x7;
    const cdw11 = dword(sqe, 11);
    const feature = this.featureResult;
    this.features.get(fid, select, cdw11, feature);
    if (feature.status !== Status.SUCCESS) return feature.status;
    result.dw0 = feature.dw0;
    if (!featureHasData(fid) || select === FeatureSelect.SUPPORTED_CAPABILITIES) return Status.SUCCESS;
    const out = this.clearedScratch();
    if (fid === FeatureId.TIMESTAMP) {
      this.features.getTimestamp(out);
      return this.transferToHost(sqe, out, TIMESTAMP_DATA_SIZE);
    }
    out.set(this.features.hostIdentifier);
    return this.transferToHost(sqe, out, HOST_IDENTIFIER_SIZE);
  }

  private setFeatures(sqe: DataView, result: AdminResult): number {
    const features = this.features;
    const cdw10 = dword(sqe, 10);
    const fid = cdw10 & 0xff;
    const save = (cdw10 & 0x80000000) !== 0;
    const cdw11 = dword(sqe, 11);
    const nsid = dword(sqe, 1);
    const feature = this.featureResult;

    // Validate the feature id first (unknown = Invalid Field), then the save bit and the namespace scope.
    features.get(fid, FeatureSelect.SUPPORTED_CAPABILITIES, 0, feature);
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
      if (fid === FeatureId.TIMESTAMP) features.setTimestamp(data);
      else features.setHostIdentifier(data);
      return Status.SUCCESS;
    }

    features.set(fid, cdw11, this.queues.ioQueuesCreated, feature);
    if (feature.status !== Status.SUCCESS) return feature.status;
    result.dw0 = feature.dw0;
    if (fid === FeatureId.KEEP_ALIVE_TIMER) this.events.restartKeepAlive();
    if (fid === FeatureId.TEMPERATURE_THRESHOLD || fid === FeatureId.ASYNC_EVENT_CONFIGURATION) {
      this.events.checkTemperature();
    }
    return Status.SUCCESS;
  }

  private createCompletionQueue(sqe: DataView): number {
    const queues = this.queues;
    const cdw10 = dword(sqe, 10);
    const cdw11 = dword(sqe, 11);
    const qid = cdw10 & 0xffff;
    const entries = (cdw10 >>> 16) + 1;
    const physicallyContiguous = (cdw11 & 1) !== 0;
    const interruptsEnabled = (cdw11 & 2) !== 0;
    const vector = cdw11 >>> 16;
    const base = address(sqe, 24);

    if (qid === 0 || qid > this.features.allocatedCompletionQueues || queues.completionQueue(qid)) {
      return Status.INVALID_QUEUE_IDENTIFIER;
    }
    if (entries < 2 || entries > this.identifyInfo.maxQueueEntries) return Status.INVALID_QUEUE_SIZE;
    if (!physicallyContiguous) return Status.INVALID_FIELD; // CAP.CQR = 1
    if (vector >= this.vectorCount) return Status.INVALID_INTERRUPT_VECTOR;
    if (!this.entrySizeValid(Cc.IOCQES_SHIFT, Cc.IOCQES_MASK, IO_CQ_ENTRY_SIZE_LOG2)) return Status.INVALID_FIELD;
    if (base < 0 || base % PAGE_SIZE !== 0) return Status.INVALID_FIELD;
    if (!this.isMapped(base, entries * CQE_SIZE, 'write')) return Status.INVALID_FIELD;
    queues.createCompletionQueue(qid, base, entries, vector, interruptsEnabled);
    return Status.SUCCESS;
  }

  private createSubmissionQueue(sqe: DataView): number {
    const queues = this.queues;
    const cdw10 = dword(sqe, 10);
    const cdw11 = dword(sqe, 11);
    const qid = cdw10 & 0xffff;
    const entries = (cdw10 >>> 16) + 1;
    const physicallyContiguous = (cdw11 & 1) !== 0;
    const priority = (cdw11 >>> 1) & 0x3;
    const cqid = cdw11 >>> 16;
    const base = address(sqe, 24);

    if (qid === 0 || qid > this.features.allocatedSubmissionQueues || queues.submissionQueue(qid)) {
      return Status.INVALID_QUEUE_IDENTIFIER;
    }
    const cq = cqid === 0 ? undefined : queues.completionQueue(cqid);
    if (!cq) return Status.COMPLETION_QUEUE_INVALID;
    if (entries < 2 || entries > this.identifyInfo.maxQueueEntries) return Status.INVALID_QUEUE_SIZE;
    if (!physicallyContiguous) return Status.INVALID_FIELD;
    if (!this.entrySizeValid(Cc.IOSQES_SHIFT, Cc.IOSQES_MASK, IO_SQ_ENTRY_SIZE_LOG2)) return Status.INVALID_FIELD;
    if (base < 0 || base % PAGE_SIZE !== 0) return Status.INVALID_FIELD;
    if (!this.isMapped(base, entries * SQE_SIZE, 'read')) return Status.INVALID_FIELD;
    queues.createSubmissionQueue(qid, base, entries, cq, priority);
    return Status.SUCCESS;
  }

  private deleteSubmissionQueue(sqe: DataView): number {
    const qid = dword(sqe, 10) & 0xffff;
    const sq = qid === 0 ? undefined : this.queues.submissionQueue(qid);
    if (!sq || sq.deleting) return Status.INVALID_QUEUE_IDENTIFIER;
    return this.queues.deleteSubmissionQueue(sq, commandId(sqe)) ? Status.SUCCESS : DEFERRED;
  }

  private deleteCompletionQueue(sqe: DataView): number {
    const qid = dword(sqe, 10) & 0xffff;
    const cq = qid === 0 ? undefined : this.queues.completionQueue(qid);
    if (!cq) return Status.INVALID_QUEUE_IDENTIFIER;
    if (cq.submissionQueues > 0) return Status.INVALID_QUEUE_DELETION;
    this.queues.deleteCompletionQueue(cq);
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
    this.queues.configureShadowDoorbells(shadow, eventIndex);
    return Status.SUCCESS;
  }

  /** The active namespace `nsid`; undefined for 0, broadcast, inactive NSIDs and anything beyond NN. */
  private activeNamespace(nsid: number): NamespaceEntry | undefined {
    return this.namespaces.entry(nsid);
  }

  /** A CC entry size field (IOSQES / IOCQES) holds the only size we support. */
  private entrySizeValid(shift: number, mask: number, supportedLog2: number): boolean {
    return ccField(this.registers.cc, shift, mask) === supportedLog2;
  }

  private clearedScratch(): Uint8Array {
    this.scratch.fill(0);
    return this.scratch;
  }

  /** Copies `data` to the command's PRPs, zero-filling up to `length` (a log read past the page end gets zeroes). */
  private transferToHost(sqe: DataView, data: Uint8Array, length: number): number {
    const segments = this.segments;
    const status = mapDataPointer(this.dma, sqe, length, 'write', segments, false);
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
    const status = mapDataPointer(this.dma, sqe, data.length, 'read', segments, false);
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
      this.dma.find(iova, length, access);
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
