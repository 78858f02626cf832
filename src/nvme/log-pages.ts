/**
 * Log pages (Get Log Page): the error log ring, the changed namespace list, the health record behind SMART /
 * Health, and builders for SMART / Health, Firmware Slot and Commands Supported and Effects. Layouts follow the
 * NVMe Base Specification 2.0.
 */
import type { SmartCounters } from './io-types.js';
import {
  COMPOSITE_TEMPERATURE_K,
  ERROR_LOG_ENTRIES,
  SUPPORTED_ADMIN_OPCODES,
  SUPPORTED_IO_OPCODES,
} from './identify.js';

import { checkSnapshotVersion, fromBase64, toBase64 } from '../util/handover-fds.js';

const HEALTH_STATE_VERSION = 1;

/** The error log and health counters in a live-upgrade snapshot. */
export interface HealthState {
  version: number;
  errorLog: { count: number; entries: string };
  counters: SmartCounters;
  unsafeShutdowns: number;
  /** When the controller first came up (ms since the epoch): Power On Hours count from it. */
  createdAt: number;
}

export const ERROR_LOG_ENTRY_SIZE = 64;
export const ERROR_LOG_SIZE = ERROR_LOG_ENTRIES * ERROR_LOG_ENTRY_SIZE;
export const SMART_LOG_SIZE = 512;
export const FIRMWARE_SLOT_LOG_SIZE = 512;
export const CHANGED_NAMESPACE_LOG_SIZE = 4096;
export const COMMAND_EFFECTS_LOG_SIZE = 4096;

/** "Not applicable" for the error log's Parameter Error Location. */
export const NO_PARAMETER_LOCATION = 0xffff;
/** Error log SQID / CID when the error is not tied to a command (or, for SQID, to a submission queue). */
export const NO_COMMAND = 0xffff;

export interface ErrorLogRecord {
  sqid: number;
  cid: number;
  /** 16-bit status (spec.ts `Status.*`). */
  status: number;
  /** Phase tag of the completion that reported the error. */
  phase: number;
  nsid: number;
  lba: number;
  /** Byte (bits 7:0) and bit (10:8) in the command of the offending field, or NO_PARAMETER_LOCATION. */
  parameterLocation: number;
}

/** The Error Information log: a ring of the most recent entries, each with a unique, increasing error count. */
export class ErrorLog {
  private readonly entries = new Uint8Array(ERROR_LOG_SIZE);
  private readonly view = new DataView(this.entries.buffer);
  /** Errors ever recorded; the newest entry's Error Count. */
  count = 0;

  record(record: ErrorLogRecord): void {
    this.count++;
    const offset = ((this.count - 1) % ERROR_LOG_ENTRIES) * ERROR_LOG_ENTRY_SIZE;
    const view = this.view;
    this.entries.fill(0, offset, offset + ERROR_LOG_ENTRY_SIZE);
    setUint64(view, offset, this.count);
    view.setUint16(offset + 8, record.sqid, true);
    view.setUint16(offset + 10, record.cid, true);
    view.setUint16(offset + 12, ((record.status << 1) | (record.phase & 1)) & 0xffff, true);
    view.setUint16(offset + 14, record.parameterLocation, true);
    setUint64(view, offset + 16, record.lba);
    view.setUint32(offset + 24, record.nsid >>> 0, true);
  }

  snapshot(): { count: number; entries: string } {
    return { count: this.count, entries: toBase64(this.entries) };
  }

  restore(state: { count: number; entries: string }): void {
    this.entries.set(fromBase64(state.entries, 'error log', ERROR_LOG_SIZE));
    this.count = state.count;
  }

  /** The log page: newest entry first, unused entries zero. */
  build(out: Uint8Array): void {
    const kept = Math.min(this.count, ERROR_LOG_ENTRIES);
    for (let index = 0; index < kept; index++) {
      const slot = (this.count - 1 - index) % ERROR_LOG_ENTRIES;
      const from = slot * ERROR_LOG_ENTRY_SIZE;
      out.set(this.entries.subarray(from, from + ERROR_LOG_ENTRY_SIZE), index * ERROR_LOG_ENTRY_SIZE);
    }
  }
}

/** NSIDs whose attributes changed since the host last read the Changed Namespace List. */
export class ChangedNamespaceList {
  private readonly nsids: number[] = [];
  private overflow = false;

  add(nsid: number): void {
    if (this.overflow || this.nsids.includes(nsid)) return;
    if (this.nsids.length === CHANGED_NAMESPACE_LOG_SIZE / 4) {
      // More than 1024 changes: the page reports FFFFFFFFh and the host rescans everything.
      this.overflow = true;
      this.nsids.length = 0;
      return;
    }
    this.nsids.push(nsid);
  }

  get isEmpty(): boolean {
    return !this.overflow && this.nsids.length === 0;
  }

  snapshot(): { nsids: number[]; overflow: boolean } {
    return { nsids: [...this.nsids], overflow: this.overflow };
  }

  restore(state: { nsids: number[]; overflow: boolean }): void {
    this.nsids.length = 0;
    this.nsids.push(...state.nsids);
    this.overflow = state.overflow;
  }

  build(out: Uint8Array): void {
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    if (this.overflow) {
      view.setUint32(0, 0xffffffff, true);
      return;
    }
    const sorted = [...this.nsids].sort((a, b) => a - b);
    sorted.forEach((nsid, index) => view.setUint32(index * 4, nsid, true));
  }

  clear(): void {
    this.nsids.length = 0;
    this.overflow = false;
  }
}

export interface SmartLogInfo {
  criticalWarning: number;
  compositeTemperatureK: number;
  counters: SmartCounters;
  powerCycles: number;
  powerOnHours: number;
  unsafeShutdowns: number;
  errorLogEntries: number;
}

/**
 * The controller's error and health record: the error log and the counters behind the SMART / Health page. Lives
 * as long as the controller (a controller reset keeps it).
 */
export class HealthRecord {
  readonly errorLog = new ErrorLog();
  readonly counters: SmartCounters = {
    bytesRead: 0,
    bytesWritten: 0,
    hostReadCommands: 0,
    hostWriteCommands: 0,
    busyMillis: 0,
    mediaErrors: 0,
    errorLogEntries: 0,
  };
  /** Resets of a controller that was enabled and had not completed a shutdown. */
  unsafeShutdowns = 0;
  private createdAt = Date.now();

  snapshot(): HealthState {
    return {
      version: HEALTH_STATE_VERSION,
      errorLog: this.errorLog.snapshot(),
      counters: { ...this.counters },
      unsafeShutdowns: this.unsafeShutdowns,
      createdAt: this.createdAt,
    };
  }

  restore(state: HealthState): void {
    checkSnapshotVersion(state, 'NVMe health record', HEALTH_STATE_VERSION);
    this.errorLog.restore(state.errorLog);
    Object.assign(this.counters, state.counters);
    this.unsafeShutdowns = state.unsafeShutdowns;
    this.createdAt = state.createdAt;
  }

  /** Adds an Error Information entry (no parameter location). */
  recordError(sqid: number, cid: number, status: number, phase: number, nsid: number, lba: number): void {
    this.errorLog.record({ sqid, cid, status, phase, nsid, lba, parameterLocation: NO_PARAMETER_LOCATION });
    this.counters.errorLogEntries = this.errorLog.count;
  }

  smartLogInfo(temperatureWarning: boolean): SmartLogInfo {
    return {
      criticalWarning: temperatureWarning ? CriticalWarning.TEMPERATURE : 0,
      compositeTemperatureK: COMPOSITE_TEMPERATURE_K,
      counters: this.counters,
      powerCycles: 1,
      powerOnHours: Math.floor((Date.now() - this.createdAt) / 3_600_000),
      unsafeShutdowns: this.unsafeShutdowns,
      errorLogEntries: this.errorLog.count,
    };
  }
}

/** Critical Warning bits. */
export const CriticalWarning = {
  SPARE_BELOW_THRESHOLD: 1 << 0,
  TEMPERATURE: 1 << 1,
  RELIABILITY_DEGRADED: 1 << 2,
  READ_ONLY: 1 << 3,
  VOLATILE_BACKUP_FAILED: 1 << 4,
} as const;

/** SMART / Health Information (LID 02h), controller-wide. */
export function buildSmartLog(out: Uint8Array, info: SmartLogInfo): void {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const { counters } = info;
  out[0] = info.criticalWarning;
  view.setUint16(1, info.compositeTemperatureK, true);
  out[3] = 100; // Available Spare (%)
  out[4] = 10; // Available Spare Threshold (%)
  out[5] = 0; // Percentage Used
  // Data units are thousands of 512-byte units, rounded up.
  setUint128(view, 32, Math.ceil(counters.bytesRead / 512_000));
  setUint128(view, 48, Math.ceil(counters.bytesWritten / 512_000));
  setUint128(view, 64, counters.hostReadCommands);
  setUint128(view, 80, counters.hostWriteCommands);
  setUint128(view, 96, Math.floor(counters.busyMillis / 60_000));
  setUint128(view, 112, info.powerCycles);
  setUint128(view, 128, info.powerOnHours);
  setUint128(view, 144, info.unsafeShutdowns);
  setUint128(view, 160, counters.mediaErrors);
  setUint128(view, 176, info.errorLogEntries);
}

/** Firmware Slot Information (LID 03h): slot 1 active, holding our firmware revision. */
export function buildFirmwareSlotLog(out: Uint8Array, firmwareRevision: string): void {
  out[0] = 1; // AFI: active slot 1, no pending activation
  out.fill(0x20, 8, 16);
  for (let index = 0; index < firmwareRevision.length && index < 8; index++) {
    out[8 + index] = firmwareRevision.charCodeAt(index);
  }
}

const EFFECT_SUPPORTED = 1 << 0;
const EFFECT_CONTENT_CHANGE = 1 << 1;

/** Commands Supported and Effects (LID 05h) for the NVM command set. */
export function buildCommandEffectsLog(out: Uint8Array): void {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (const opcode of SUPPORTED_ADMIN_OPCODES) view.setUint32(opcode * 4, EFFECT_SUPPORTED, true);
  for (const { opcode, changesContent } of SUPPORTED_IO_OPCODES) {
    view.setUint32(1024 + opcode * 4, EFFECT_SUPPORTED | (changesContent ? EFFECT_CONTENT_CHANGE : 0), true);
  }
}

function setUint64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % 0x1_0000_0000, true);
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000) >>> 0, true);
}

/** Counters are JavaScript numbers (< 2^53), so the upper 64 bits of the 128-bit fields stay zero. */
function setUint128(view: DataView, offset: number, value: number): void {
  setUint64(view, offset, Math.max(0, Math.floor(value)));
}
