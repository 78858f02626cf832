/**
 * Feature values for Get / Set Features. Nothing is saveable (Set Features with SV fails with Feature Not Saveable
 * and the "saved" value is the default); all values return to defaults on controller reset. Features that carry a
 * data buffer (Timestamp, Host Identifier) are exchanged as bytes by the admin command handler.
 */
import {
  COMPOSITE_TEMPERATURE_K,
  KEEP_ALIVE_GRANULARITY_MS,
  RECOMMENDED_ARBITRATION_BURST,
  WARNING_TEMPERATURE_K,
} from './identify.js';
import { FeatureId, Status } from '../spec/nvme.js';
import { checkSnapshotVersion, fromBase64, toBase64 } from '../util/handover-fds.js';

const FEATURES_STATE_VERSION = 1;

/** Feature values in a live-upgrade snapshot. */
export interface FeaturesState {
  version: number;
  arbitration: number;
  powerManagement: number;
  overTemperatureK: number;
  underTemperatureK: number;
  errorRecovery: number;
  volatileWriteCache: boolean;
  allocatedSubmissionQueues: number;
  allocatedCompletionQueues: number;
  interruptCoalescing: number;
  coalescingDisabled: string;
  writeAtomicity: number;
  asyncEventConfig: number;
  keepAliveMillis: number;
  hostIdentifier: string;
  softwareProgressMarker: number;
  /** The Timestamp feature's value when the snapshot was taken, and whether the host set it. */
  timestamp: { value: number; hostSet: boolean };
}

/** Get Features Select (SEL) values. */
export const FeatureSelect = { CURRENT: 0, DEFAULT: 1, SAVED: 2, SUPPORTED_CAPABILITIES: 3 } as const;

/** Supported capabilities (SEL = 3) bits. */
const CAPABILITY_SAVEABLE = 1 << 0;
const CAPABILITY_NAMESPACE_SPECIFIC = 1 << 1;
const CAPABILITY_CHANGEABLE = 1 << 2;

/** Temperature Threshold: TMPSEL 0 = composite, 0xF = all sensors (Set only); THSEL 0 = over, 1 = under. */
const TMPSEL_COMPOSITE = 0x0;
const TMPSEL_ALL = 0xf;
const THSEL_OVER = 0;
const THSEL_UNDER = 1;

/** Asynchronous Event Configuration bits we honour: SMART critical warnings 4:0 and Namespace Attribute Notices. */
export const AsyncEventConfig = {
  SMART_MASK: 0x1f,
  NAMESPACE_ATTRIBUTE_NOTICES: 1 << 8,
} as const;

export const TIMESTAMP_DATA_SIZE = 8;
/** The largest whole number of keep-alive granules that fits KATO's 32 bits. */
const MAX_KEEP_ALIVE_MS = Math.floor(0xffffffff / KEEP_ALIVE_GRANULARITY_MS) * KEEP_ALIVE_GRANULARITY_MS;
export const HOST_IDENTIFIER_SIZE = 8;

export interface FeatureLimits {
  maxIoQueuePairs: number;
  /** MSI-X vectors of the function (at least 1: INTx counts as vector 0). */
  vectorCount: number;
  volatileWriteCachePresent: boolean;
}

export interface FeatureResult {
  status: number;
  dw0: number;
}

/** Features whose value lives in a data buffer rather than in CDW11 / DW0. */
export function featureHasData(fid: number): boolean {
  return fid === FeatureId.TIMESTAMP || fid === FeatureId.HOST_IDENTIFIER;
}

export class FeatureState {
  arbitration = 0;
  powerManagement = 0;
  overTemperatureK = WARNING_TEMPERATURE_K;
  underTemperatureK = 0;
  errorRecovery = 0;
  volatileWriteCache = false;
  /** Allocated I/O queues (1's based counts): what Number of Queues granted, else the maximum. */
  allocatedSubmissionQueues = 0;
  allocatedCompletionQueues = 0;
  interruptCoalescing = 0;
  /** Interrupt Vector Configuration: Coalescing Disable per vector. */
  readonly coalescingDisabled: Uint8Array;
  writeAtomicity = 0;
  asyncEventConfig = 0;
  keepAliveMillis = 0;
  readonly hostIdentifier = new Uint8Array(HOST_IDENTIFIER_SIZE);
  softwareProgressMarker = 0;
  /** Timestamp: the host's value and the local clock (ms) when it was set; undefined = counting from reset. */
  private timestampBase: number | undefined;
  private timestampAnchor = 0;

  constructor(private readonly limits: FeatureLimits) {
    this.coalescingDisabled = new Uint8Array(Math.max(1, limits.vectorCount));
    this.reset();
  }

  /** Power-on / controller-reset defaults. */
  reset(): void {
    this.arbitration = this.defaultArbitration();
    this.powerManagement = 0;
    this.overTemperatureK = WARNING_TEMPERATURE_K;
    this.underTemperatureK = 0;
    this.errorRecovery = 0;
    this.volatileWriteCache = this.limits.volatileWriteCachePresent;
    this.allocatedSubmissionQueues = this.limits.maxIoQueuePairs;
    this.allocatedCompletionQueues = this.limits.maxIoQueuePairs;
    this.interruptCoalescing = 0;
    this.coalescingDisabled.fill(0);
    this.writeAtomicity = 0;
    this.asyncEventConfig = 0;
    this.keepAliveMillis = 0;
    this.hostIdentifier.fill(0);
    this.softwareProgressMarker = 0;
    this.timestampBase = undefined;
    this.timestampAnchor = Date.now();
  }

  snapshot(): FeaturesState {
    const now = Date.now();
    return {
      version: FEATURES_STATE_VERSION,
      arbitration: this.arbitration,
      powerManagement: this.powerManagement,
      overTemperatureK: this.overTemperatureK,
      underTemperatureK: this.underTemperatureK,
      errorRecovery: this.errorRecovery,
      volatileWriteCache: this.volatileWriteCache,
      allocatedSubmissionQueues: this.allocatedSubmissionQueues,
      allocatedCompletionQueues: this.allocatedCompletionQueues,
      interruptCoalescing: this.interruptCoalescing,
      coalescingDisabled: toBase64(this.coalescingDisabled),
      writeAtomicity: this.writeAtomicity,
      asyncEventConfig: this.asyncEventConfig,
      keepAliveMillis: this.keepAliveMillis,
      hostIdentifier: toBase64(this.hostIdentifier),
      softwareProgressMarker: this.softwareProgressMarker,
      timestamp: {
        value: this.timestampBase === undefined ? now - this.timestampAnchor : this.timestampBase + now - this.timestampAnchor,
        hostSet: this.timestampBase !== undefined,
      },
    };
  }

  /** Takes on a predecessor's values (same limits); the timestamp keeps counting from its value at the snapshot. */
  restore(state: FeaturesState): void {
    checkSnapshotVersion(state, 'NVMe features', FEATURES_STATE_VERSION);
    const coalescingDisabled = fromBase64(state.coalescingDisabled, 'coalescing flags', this.coalescingDisabled.length);
    const hostIdentifier = fromBase64(state.hostIdentifier, 'host identifier', HOST_IDENTIFIER_SIZE);
    const limit = this.limits.maxIoQueuePairs;
    if (state.allocatedSubmissionQueues > limit || state.allocatedCompletionQueues > limit) {
      throw new Error(`snapshot: ${state.allocatedSubmissionQueues} I/O queues granted, this controller allows ${limit}`);
    }
    this.arbitration = state.arbitration;
    this.powerManagement = state.powerManagement;
    this.overTemperatureK = state.overTemperatureK;
    this.underTemperatureK = state.underTemperatureK;
    this.errorRecovery = state.errorRecovery;
    this.volatileWriteCache = state.volatileWriteCache && this.limits.volatileWriteCachePresent;
    this.allocatedSubmissionQueues = state.allocatedSubmissionQueues;
    this.allocatedCompletionQueues = state.allocatedCompletionQueues;
    this.interruptCoalescing = state.interruptCoalescing;
    this.coalescingDisabled.set(coalescingDisabled);
    this.writeAtomicity = state.writeAtomicity;
    this.asyncEventConfig = state.asyncEventConfig;
    this.keepAliveMillis = state.keepAliveMillis;
    this.hostIdentifier.set(hostIdentifier);
    this.softwareProgressMarker = state.softwareProgressMarker;
    const now = Date.now();
    if (state.timestamp.hostSet) {
      this.timestampBase = state.timestamp.value;
      this.timestampAnchor = now;
    } else {
      this.timestampBase = undefined;
      this.timestampAnchor = now - state.timestamp.value;
    }
  }

  /** The composite temperature is outside a threshold (SMART critical warning bit 1). */
  get temperatureWarning(): boolean {
    return COMPOSITE_TEMPERATURE_K >= this.overTemperatureK || COMPOSITE_TEMPERATURE_K <= this.underTemperatureK;
  }

  /** Get Features for a value returned in DW0 (or the capabilities of any feature). */
  get(fid: number, select: number, cdw11: number, out: FeatureResult): void {
    out.status = Status.SUCCESS;
    out.dw0 = 0;
    if (!this.isSupported(fid)) {
      out.status = Status.INVALID_FIELD;
      return;
    }
    if (select === FeatureSelect.SUPPORTED_CAPABILITIES) {
      out.dw0 = CAPABILITY_CHANGEABLE | (fid === FeatureId.ERROR_RECOVERY ? CAPABILITY_NAMESPACE_SPECIFIC : 0);
      return;
    }
    if (select > FeatureSelect.SUPPORTED_CAPABILITIES) {
      out.status = Status.INVALID_FIELD;
      return;
    }
    // Nothing is saveable, so the saved value is the default.
    const current = select === FeatureSelect.CURRENT;
    switch (fid) {
      case FeatureId.ARBITRATION:
        out.dw0 = current ? this.arbitration : this.defaultArbitration();
        return;
      case FeatureId.POWER_MANAGEMENT:
        out.dw0 = current ? this.powerManagement : 0;
        return;
      case FeatureId.TEMPERATURE_THRESHOLD: {
        const sensor = (cdw11 >>> 16) & 0xf;
        const kind = (cdw11 >>> 20) & 0x3;
        if (sensor !== TMPSEL_COMPOSITE || (kind !== THSEL_OVER && kind !== THSEL_UNDER)) {
          out.status = Status.INVALID_FIELD;
          return;
        }
        if (kind === THSEL_OVER) out.dw0 = current ? this.overTemperatureK : WARNING_TEMPERATURE_K;
        else out.dw0 = current ? this.underTemperatureK : 0;
        return;
      }
      case FeatureId.ERROR_RECOVERY:
        out.dw0 = current ? this.errorRecovery : 0;
        return;
      case FeatureId.VOLATILE_WRITE_CACHE:
        out.dw0 = (current ? this.volatileWriteCache : this.limits.volatileWriteCachePresent) ? 1 : 0;
        return;
      case FeatureId.NUMBER_OF_QUEUES: {
        const sqs = current ? this.allocatedSubmissionQueues : this.limits.maxIoQueuePairs;
        const cqs = current ? this.allocatedCompletionQueues : this.limits.maxIoQueuePairs;
        out.dw0 = ((sqs - 1) | ((cqs - 1) << 16)) >>> 0;
        return;
      }
      case FeatureId.INTERRUPT_COALESCING:
        out.dw0 = current ? this.interruptCoalescing : 0;
        return;
      case FeatureId.INTERRUPT_VECTOR_CONFIGURATION: {
        const vector = cdw11 & 0xffff;
        if (vector >= this.coalescingDisabled.length) {
          out.status = Status.INVALID_FIELD;
          return;
        }
        // The admin queue's vector 0 is never coalesced.
        const disabled = vector === 0 || (current && this.coalescingDisabled[vector] === 1);
        out.dw0 = (vector | (disabled ? 1 << 16 : 0)) >>> 0;
        return;
      }
      case FeatureId.WRITE_ATOMICITY_NORMAL:
        out.dw0 = current ? this.writeAtomicity : 0;
        return;
      case FeatureId.ASYNC_EVENT_CONFIGURATION:
        out.dw0 = current ? this.asyncEventConfig : 0;
        return;
      case FeatureId.KEEP_ALIVE_TIMER:
        out.dw0 = current ? this.keepAliveMillis : 0;
        return;
      case FeatureId.SOFTWARE_PROGRESS_MARKER:
        out.dw0 = current ? this.softwareProgressMarker : 0;
        return;
      case FeatureId.HOST_IDENTIFIER:
        // Only the 64-bit form (EXHID = 0) exists here.
        if ((cdw11 & 1) !== 0) out.status = Status.INVALID_FIELD;
        return;
      default:
        return; // Timestamp: data only
    }
  }

  /**
   * Set Features for a value passed in CDW11. `ioQueuesCreated` tells whether I/O queues were created since the
   * controller was enabled (Number of Queues is refused afterwards). Timestamp / Host Identifier go through
   * setTimestamp / setHostIdentifier.
   */
  set(fid: number, cdw11: number, ioQueuesCreated: boolean, out: FeatureResult): void {
    out.status = Status.SUCCESS;
    out.dw0 = 0;
    if (!this.isSupported(fid)) {
      out.status = Status.INVALID_FIELD;
      return;
    }
    switch (fid) {
      case FeatureId.ARBITRATION:
        this.arbitration = cdw11 >>> 0;
        return;
      case FeatureId.POWER_MANAGEMENT: {
        const powerState = cdw11 & 0x1f;
        const workloadHint = (cdw11 >>> 5) & 0x7;
        // One power state (NPSS = 0) and no workload hints.
        if (powerState !== 0 || workloadHint !== 0) out.status = Status.INVALID_FIELD;
        else this.powerManagement = 0;
        return;
      }
      case FeatureId.TEMPERATURE_THRESHOLD: {
        const threshold = cdw11 & 0xffff;
        const sensor = (cdw11 >>> 16) & 0xf;
        const kind = (cdw11 >>> 20) & 0x3;
        // Only the composite temperature exists; "all sensors" therefore means the composite one.
        if ((sensor !== TMPSEL_COMPOSITE && sensor !== TMPSEL_ALL) || (kind !== THSEL_OVER && kind !== THSEL_UNDER)) {
          out.status = Status.INVALID_FIELD;
          return;
        }
        if (kind === THSEL_OVER) this.overTemperatureK = threshold;
        else this.underTemperatureK = threshold;
        return;
      }
      case FeatureId.ERROR_RECOVERY:
        // DULBE (bit 16) needs deallocated-block error reporting, which we do not have (NSFEAT bit 2 = 0).
        if ((cdw11 & (1 << 16)) !== 0) out.status = Status.INVALID_FIELD;
        else this.errorRecovery = cdw11 & 0xffff;
        return;
      case FeatureId.VOLATILE_WRITE_CACHE:
        this.volatileWriteCache = (cdw11 & 1) === 1;
        return;
      case FeatureId.NUMBER_OF_QUEUES: {
        if (ioQueuesCreated) {
          out.status = Status.COMMAND_SEQUENCE_ERROR;
          return;
        }
        const requestedSqs = cdw11 & 0xffff;
        const requestedCqs = cdw11 >>> 16;
        if (requestedSqs === 0xffff || requestedCqs === 0xffff) {
          out.status = Status.INVALID_FIELD;
          return;
        }
        this.allocatedSubmissionQueues = Math.min(requestedSqs + 1, this.limits.maxIoQueuePairs);
        this.allocatedCompletionQueues = Math.min(requestedCqs + 1, this.limits.maxIoQueuePairs);
        out.dw0 = ((this.allocatedSubmissionQueues - 1) | ((this.allocatedCompletionQueues - 1) << 16)) >>> 0;
        return;
      }
      case FeatureId.INTERRUPT_COALESCING:
        this.interruptCoalescing = cdw11 & 0xffff;
        return;
      case FeatureId.INTERRUPT_VECTOR_CONFIGURATION: {
        const vector = cdw11 & 0xffff;
        if (vector >= this.coalescingDisabled.length) {
          out.status = Status.INVALID_FIELD;
          return;
        }
        this.coalescingDisabled[vector] = (cdw11 >>> 16) & 1;
        return;
      }
      case FeatureId.WRITE_ATOMICITY_NORMAL:
        this.writeAtomicity = cdw11 & 1;
        return;
      case FeatureId.ASYNC_EVENT_CONFIGURATION:
        this.asyncEventConfig = cdw11 & (AsyncEventConfig.SMART_MASK | AsyncEventConfig.NAMESPACE_ATTRIBUTE_NOTICES);
        return;
      case FeatureId.KEEP_ALIVE_TIMER: {
        // Rounded up to the granularity we report (KAS), but kept within the 32-bit field.
        const granules = Math.ceil((cdw11 >>> 0) / KEEP_ALIVE_GRANULARITY_MS);
        this.keepAliveMillis = Math.min(granules * KEEP_ALIVE_GRANULARITY_MS, MAX_KEEP_ALIVE_MS);
        return;
      }
      case FeatureId.SOFTWARE_PROGRESS_MARKER:
        this.softwareProgressMarker = cdw11 & 0xff;
        return;
      default:
        return;
    }
  }

  /** Timestamp data (8 bytes): milliseconds since the epoch if the host set it, else since reset, plus origin. */
  getTimestamp(out: Uint8Array): void {
    out.fill(0, 0, TIMESTAMP_DATA_SIZE);
    const now = Date.now();
    const value = this.timestampBase === undefined ? now - this.timestampAnchor : this.timestampBase + now - this.timestampAnchor;
    writeUint48(out, Math.max(0, value));
    // Byte 6: bit 0 Synch = 0 (never stopped), bits 3:1 origin: 000b since reset, 001b set by the host.
    out[6] = this.timestampBase === undefined ? 0 : 1 << 1;
  }

  setTimestamp(data: Uint8Array): void {
    this.timestampBase = readUint48(data);
    this.timestampAnchor = Date.now();
  }

  setHostIdentifier(data: Uint8Array): void {
    this.hostIdentifier.set(data.subarray(0, HOST_IDENTIFIER_SIZE));
  }

  private defaultArbitration(): number {
    return RECOMMENDED_ARBITRATION_BURST; // AB; all priority weights 0
  }

  private isSupported(fid: number): boolean {
    switch (fid) {
      case FeatureId.VOLATILE_WRITE_CACHE:
        return this.limits.volatileWriteCachePresent;
      case FeatureId.ARBITRATION:
      case FeatureId.POWER_MANAGEMENT:
      case FeatureId.TEMPERATURE_THRESHOLD:
      case FeatureId.ERROR_RECOVERY:
      case FeatureId.NUMBER_OF_QUEUES:
      case FeatureId.INTERRUPT_COALESCING:
      case FeatureId.INTERRUPT_VECTOR_CONFIGURATION:
      case FeatureId.WRITE_ATOMICITY_NORMAL:
      case FeatureId.ASYNC_EVENT_CONFIGURATION:
      case FeatureId.TIMESTAMP:
      case FeatureId.KEEP_ALIVE_TIMER:
      case FeatureId.SOFTWARE_PROGRESS_MARKER:
      case FeatureId.HOST_IDENTIFIER:
        return true;
      default:
        return false;
    }
  }
}

function writeUint48(out: Uint8Array, value: number): void {
  let rest = Math.floor(value);
  for (let index = 0; index < 6; index++) {
    out[index] = rest % 256;
    rest = Math.floor(rest / 256);
  }
}

function readUint48(data: Uint8Array): number {
  let value = 0;
  for (let index = 5; index >= 0; index--) value = value * 256 + data[index]!;
  return value;
}
