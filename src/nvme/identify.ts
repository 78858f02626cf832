/**
 * Identify data structures (4096 bytes each), built into a caller-supplied zeroed buffer. Offsets follow the NVMe
 * Base Specification 2.0 (Identify Controller, Identify Namespace, Namespace Identification Descriptors, I/O Command
 * Set data structures) and the NVM Command Set Specification 1.0.
 */
import type { Namespace, NamespaceIds } from '../namespace/namespace.js';
import type { ResolvedControllerIdentity } from './identity.js';
import { NVME_VERSION } from './registers.js';
import { AdminOpcode, IoOpcode } from '../spec/nvme.js';

export const IDENTIFY_DATA_SIZE = 4096;

/** Admin opcodes this controller implements (Commands Supported and Effects; everything else is Invalid Opcode). */
export const SUPPORTED_ADMIN_OPCODES: readonly number[] = [
  AdminOpcode.DELETE_IO_SQ,
  AdminOpcode.CREATE_IO_SQ,
  AdminOpcode.GET_LOG_PAGE,
  AdminOpcode.DELETE_IO_CQ,
  AdminOpcode.CREATE_IO_CQ,
  AdminOpcode.IDENTIFY,
  AdminOpcode.ABORT,
  AdminOpcode.SET_FEATURES,
  AdminOpcode.GET_FEATURES,
  AdminOpcode.ASYNC_EVENT_REQUEST,
  AdminOpcode.KEEP_ALIVE,
  AdminOpcode.DOORBELL_BUFFER_CONFIG,
];

/** NVM command set opcodes the I/O path (io.ts) implements, and whether each changes logical block content. */
export const SUPPORTED_IO_OPCODES: ReadonlyArray<{ opcode: number; changesContent: boolean }> = [
  { opcode: IoOpcode.FLUSH, changesContent: false },
  { opcode: IoOpcode.WRITE, changesContent: true },
  { opcode: IoOpcode.READ, changesContent: false },
  { opcode: IoOpcode.COMPARE, changesContent: false },
  { opcode: IoOpcode.WRITE_ZEROES, changesContent: true },
  { opcode: IoOpcode.DATASET_MANAGEMENT, changesContent: true },
  { opcode: IoOpcode.VERIFY, changesContent: false },
];

/** Optional NVM Command Support (ONCS): must match SUPPORTED_IO_OPCODES and the features we implement. */
export const Oncs = {
  COMPARE: 1 << 0,
  DATASET_MANAGEMENT: 1 << 2,
  WRITE_ZEROES: 1 << 3,
  /** Save field in Set Features / Select field in Get Features. */
  SAVE_SELECT: 1 << 4,
  TIMESTAMP: 1 << 6,
  VERIFY: 1 << 7,
} as const;
export const ONCS =
  Oncs.COMPARE | Oncs.DATASET_MANAGEMENT | Oncs.WRITE_ZEROES | Oncs.SAVE_SELECT | Oncs.TIMESTAMP | Oncs.VERIFY;

/** Optional Admin Command Support: bit 8 = Doorbell Buffer Config. */
export const OACS = 1 << 8;
/**
 * The highest NSID a controller may use, reported as Identify Controller NN: fixed, so attaching a namespace at
 * runtime never changes NN, and equal to what one Changed Namespace List or Active Namespace List page holds.
 */
export const MAX_NSID = 1024;
/** Optional Asynchronous Events Supported: bit 8 = Namespace Attribute Notices. */
export const OAES = 1 << 8;
/**
 * SGL Support, matching data-pointer.ts: bits 1:0 = 01b (SGLs supported, no alignment or granularity requirement),
 * bit 16 = Bit Bucket descriptors, bit 18 = an SGL may describe more data than the command transfers.
 */
export const SGLS = 0x1 | (1 << 16) | (1 << 18);
/** Abort Command Limit and Asynchronous Event Request Limit, both 0's based. */
export const ABORT_COMMAND_LIMIT = 3;
export const ASYNC_EVENT_REQUEST_LIMIT = 3;
/** Error Log Page Entries, 0's based: the error log keeps 64 entries. */
export const ERROR_LOG_ENTRIES = 64;
/** Log Page Attributes: bit 1 Commands Supported and Effects, bit 2 extended Get Log Page fields (NUMDU, LPOL/LPOU). */
export const LPA = (1 << 1) | (1 << 2);
/** Keep Alive Support: granularity in 100 ms units. */
export const KEEP_ALIVE_GRANULARITY_MS = 100;
/** Warning and critical composite temperature thresholds in kelvins (70 C, 100 C). */
export const WARNING_TEMPERATURE_K = 343;
export const CRITICAL_TEMPERATURE_K = 373;
/** The composite temperature we report: a steady 40 C. */
export const COMPOSITE_TEMPERATURE_K = 313;
/** Recommended Arbitration Burst (log2 commands). */
export const RECOMMENDED_ARBITRATION_BURST = 6;
/** The one power state's maximum power, in centiwatts. */
const POWER_STATE_0_MAX_CENTIWATTS = 2500;

export interface ControllerIdentifyInfo {
  identity: ResolvedControllerIdentity;
  /** MDTS field value (log2 of 4 KiB pages, 0 = no limit). */
  mdts: number;
  maxQueueEntries: number;
  /** Any namespace has a volatile write cache. */
  volatileWriteCache: boolean;
}

/** Identify Controller (CNS 01h). */
export function buildIdentifyController(out: Uint8Array, info: ControllerIdentifyInfo): void {
  const view = dataView(out);
  const { identity } = info;
  view.setUint16(0, identity.pciVendorId, true); // VID
  view.setUint16(2, identity.pciSubsystemVendorId, true); // SSVID
  putAscii(out, 4, 20, identity.serialNumber); // SN
  putAscii(out, 24, 40, identity.modelNumber); // MN
  putAscii(out, 64, 8, identity.firmwareRevision); // FR
  out[72] = RECOMMENDED_ARBITRATION_BURST; // RAB
  out[73] = identity.ieeeOui & 0xff; // IEEE OUI, least significant byte first
  out[74] = (identity.ieeeOui >>> 8) & 0xff;
  out[75] = (identity.ieeeOui >>> 16) & 0xff;
  out[76] = 0; // CMIC: one port, one controller, no SR-IOV
  out[77] = info.mdts; // MDTS
  view.setUint16(78, identity.controllerId, true); // CNTLID
  view.setUint32(80, NVME_VERSION, true); // VER
  view.setUint32(92, OAES, true); // OAES
  view.setUint32(96, 0, true); // CTRATT: 64-bit host identifier only
  out[111] = 1; // CNTRLTYPE: I/O controller

  view.setUint16(256, OACS, true); // OACS
  out[258] = ABORT_COMMAND_LIMIT; // ACL
  out[259] = ASYNC_EVENT_REQUEST_LIMIT; // AERL
  out[260] = (1 << 1) | 1; // FRMW: one slot, slot 1 read-only, activation needs a reset
  out[261] = LPA; // LPA
  out[262] = ERROR_LOG_ENTRIES - 1; // ELPE
  out[263] = 0; // NPSS: power state 0 only
  view.setUint16(266, WARNING_TEMPERATURE_K, true); // WCTEMP
  view.setUint16(268, CRITICAL_TEMPERATURE_K, true); // CCTEMP
  view.setUint16(320, 1, true); // KAS: 100 ms granularity

  out[512] = (6 << 4) | 6; // SQES: required and maximum 64 bytes
  out[513] = (4 << 4) | 4; // CQES: 16 bytes
  view.setUint16(514, Math.min(0xffff, info.maxQueueEntries), true); // MAXCMD
  view.setUint32(516, MAX_NSID, true); // NN: the highest NSID a namespace attached at runtime may take
  view.setUint16(520, ONCS, true); // ONCS
  // VWC: bit 0 present; bits 2:1 = 11b: Flush with NSID FFFFFFFFh flushes every namespace (io.ts does).
  out[525] = info.volatileWriteCache ? 0x1 | (0x3 << 1) : 0;
  view.setUint32(536, SGLS, true); // SGLS
  putUtf8(out, 768, 256, identity.subsystemNqn); // SUBNQN

  // Power State Descriptor 0 (bytes 2048..2079): operational, no entry/exit latency worth reporting.
  view.setUint16(2048, POWER_STATE_0_MAX_CENTIWATTS, true);
}

/** Identify Namespace for the NVM command set (CNS 00h). */
export function buildIdentifyNamespace(out: Uint8Array, namespace: Namespace, ids: NamespaceIds): void {
  const view = dataView(out);
  const blocks = namespace.blockCount;
  setUint64(view, 0, blocks); // NSZE
  setUint64(view, 8, blocks); // NCAP
  setUint64(view, 16, namespaceUtilization(namespace)); // NUSE
  // NSFEAT bit 0: thin provisioning (NUSE may be below NCAP) when deallocation really releases space.
  out[24] = namespace.supportsDeallocate ? 0x1 : 0;
  out[25] = 0; // NLBAF: one format (0's based)
  out[26] = 0; // FLBAS: format 0, no metadata
  out[30] = 0; // NMIC: private namespace
  // DLFEAT bits 2:0 = 001b: deallocated blocks read as zeroes, which every backend guarantees (the Namespace contract:
  // one that cannot free space writes zeroes instead). Bit 3, Write Zeroes with DEAC deallocates: only where
  // deallocation frees space for real.
  out[33] = 0x1 | (namespace.supportsDeallocate ? 1 << 3 : 0);
  out[99] = namespaceAttributes(namespace); // NSATTR
  putHex(out, 104, 16, ids.nguid); // NGUID
  putHex(out, 120, 8, ids.eui64); // EUI64
  // LBA Format 0: no metadata, LBADS = log2(block size), relative performance 0 (best).
  view.setUint32(128, Math.log2(namespace.blockSize) << 16, true);
}

/** I/O Command Set Independent Identify Namespace (CNS 08h). */
export function buildIndependentIdentifyNamespace(out: Uint8Array, namespace: Namespace): void {
  out[0] = namespace.supportsDeallocate ? 0x1 : 0; // NSFEAT
  out[1] = 0; // NMIC
  out[8] = namespaceAttributes(namespace); // NSATTR
  out[14] = 1; // NSTAT: namespace ready
}

/** NSATTR bit 0: currently write protected, so the guest mounts it read-only instead of finding out on a write. */
function namespaceAttributes(namespace: Namespace): number {
  return namespace.readOnly === true ? 0x1 : 0;
}

/**
 * Active Namespace ID list (CNS 02h / 07h): the active NSIDs (`activeNsids`, ascending) greater than `afterNsid`, at
 * most 1024.
 */
export function buildActiveNamespaceList(out: Uint8Array, activeNsids: readonly number[], afterNsid: number): void {
  const view = dataView(out);
  let index = 0;
  for (const nsid of activeNsids) {
    if (nsid <= afterNsid) continue;
    if (index === IDENTIFY_DATA_SIZE / 4) break;
    view.setUint32(index * 4, nsid, true);
    index++;
  }
}

/** Namespace Identification Descriptor list (CNS 03h): EUI64, NGUID, UUID, then the command set (NVM). */
export function buildNamespaceDescriptors(out: Uint8Array, ids: NamespaceIds): void {
  let offset = 0;
  const add = (type: number, length: number, fill: (at: number) => void): void => {
    out[offset] = type; // NIDT
    out[offset + 1] = length; // NIDL
    fill(offset + 4);
    offset += 4 + length;
  };
  if (!isAllZeroHex(ids.eui64)) add(0x1, 8, (at) => putHex(out, at, 8, ids.eui64));
  if (!isAllZeroHex(ids.nguid)) add(0x2, 16, (at) => putHex(out, at, 16, ids.nguid));
  const uuidHex = ids.uuid.replace(/-/g, '');
  if (!isAllZeroHex(uuidHex)) add(0x3, 16, (at) => putHex(out, at, 16, uuidHex));
  add(0x4, 1, (at) => (out[at] = 0)); // CSI: NVM command set
}

/** Identify I/O Command Set data structure (CNS 1Ch): vector 0 = NVM command set only. */
export function buildIoCommandSetVector(out: Uint8Array): void {
  out[0] = 0x1;
}

function namespaceUtilization(namespace: Namespace): number {
  if (!namespace.supportsDeallocate || !namespace.usage) return namespace.blockCount;
  const allocated = Math.ceil(namespace.usage().allocatedBytes / namespace.blockSize);
  return Math.min(namespace.blockCount, Math.max(0, allocated));
}

function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function setUint64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % 0x1_0000_0000, true);
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

/** Space-padded ASCII, as the spec requires for SN, MN and FR. */
function putAscii(out: Uint8Array, offset: number, length: number, text: string): void {
  out.fill(0x20, offset, offset + length);
  for (let index = 0; index < text.length && index < length; index++) out[offset + index] = text.charCodeAt(index);
}

/** NUL-terminated UTF-8 (SUBNQN); the identity was validated to fit. */
function putUtf8(out: Uint8Array, offset: number, length: number, text: string): void {
  const bytes = Buffer.from(text, 'utf8');
  out.set(bytes.subarray(0, length - 1), offset);
}

/** Writes `length` bytes from a hex string in reading order (most significant byte first, as nvme-cli prints). */
function putHex(out: Uint8Array, offset: number, length: number, hex: string): void {
  const clean = hex.replace(/[^0-9a-fA-F]/g, '');
  for (let index = 0; index < length; index++) {
    const byte = Number.parseInt(clean.slice(index * 2, index * 2 + 2), 16);
    out[offset + index] = Number.isNaN(byte) ? 0 : byte;
  }
}

function isAllZeroHex(hex: string): boolean {
  return !/[1-9a-fA-F]/.test(hex.replace(/[^0-9a-fA-F]/g, ''));
}
