/**
 * vfio-user wire format: constants and encoders/decoders for the header and the fixed structures. Pure: no I/O,
 * no device knowledge. Everything is host (little) endian, as the protocol specifies for AF_UNIX peers.
 *
 * Encoders come in two shapes: `write*` fills a caller-provided DataView at an offset (the server's reply path,
 * which writes straight into its send buffer), and `encode*` returns a fresh message (the test client).
 * Decoders read from a DataView at an offset and never throw on short input: callers check lengths first and
 * map problems to protocol errors with context.
 */
import { Errno, RegionCapId } from '../spec/vfio.js';
import { VfioUserError } from './errors.js';

export const HEADER_SIZE = 16;

export const Command = {
  VERSION: 1,
  DMA_MAP: 2,
  DMA_UNMAP: 3,
  DEVICE_GET_INFO: 4,
  DEVICE_GET_REGION_INFO: 5,
  DEVICE_GET_REGION_IO_FDS: 6,
  DEVICE_GET_IRQ_INFO: 7,
  DEVICE_SET_IRQS: 8,
  REGION_READ: 9,
  REGION_WRITE: 10,
  DMA_READ: 11,
  DMA_WRITE: 12,
  DEVICE_RESET: 13,
  DIRTY_PAGES: 14,
  REGION_WRITE_MULTI: 15,
  DEVICE_FEATURE: 16,
  MIG_DATA_READ: 17,
  MIG_DATA_WRITE: 18,
} as const;

/** Highest command id we know a name for; stats arrays are sized from it. */
export const MAX_COMMAND = 18;

const COMMAND_NAMES = new Map<number, string>(Object.entries(Command).map(([name, id]) => [id, name]));

/** 'REGION_READ' for 9, 'UNKNOWN(99)' for ids outside the protocol. */
export function commandName(command: number): string {
  return COMMAND_NAMES.get(command) ?? `UNKNOWN(${command})`;
}

export const HeaderFlag = {
  TYPE_MASK: 0xf,
  TYPE_COMMAND: 0,
  TYPE_REPLY: 1,
  NO_REPLY: 0x10,
  ERROR: 0x20,
} as const;

export const DmaMapFlag = { READ: 1, WRITE: 2 } as const;
/** vfio_iommu_type1_dma_unmap.flags (linux/vfio.h): bit 0 GET_DIRTY_BITMAP, bit 1 ALL. */
export const DmaUnmapFlag = { GET_DIRTY_BITMAP: 1, ALL: 2 } as const;

/** Payload sizes of the fixed structures (after the header). */
export const BodySize = {
  VERSION: 4, // major, minor; JSON follows
  DMA_MAP: 32,
  DMA_UNMAP: 24,
  DEVICE_INFO: 16,
  REGION_INFO: 32,
  IRQ_INFO: 16,
  IRQ_SET: 20,
  REGION_ACCESS: 16, // offset, region, count; data follows
} as const;

export const SPARSE_MMAP_CAP_VERSION = 1;
/** Cap header (id, version, next) + nr_areas + reserved. */
export const SPARSE_MMAP_CAP_HEADER_SIZE = 16;
export const SPARSE_MMAP_AREA_SIZE = 16;

// ---------------------------------------------------------------------------------------------------------------
// Integers

const TWO_32 = 0x1_0000_0000;

/** A u64 field as a JS number, or -1 when it does not fit a safe integer (every such value is invalid for us). */
export function getU64(view: DataView, offset: number): number {
  const low = view.getUint32(offset, true);
  const high = view.getUint32(offset + 4, true);
  if (high > 0x1fffff) return -1;
  return high * TWO_32 + low;
}

/** Writes a non-negative safe integer as u64. */
export function setU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % TWO_32, true);
  view.setUint32(offset + 4, Math.floor(value / TWO_32), true);
}

// ---------------------------------------------------------------------------------------------------------------
// Header

export interface MessageHeader {
  msgId: number;
  command: number;
  /** Whole message including the header. */
  size: number;
  flags: number;
  error: number;
}

export function readHeader(view: DataView, offset: number): MessageHeader {
  return {
    msgId: view.getUint16(offset, true),
    command: view.getUint16(offset + 2, true),
    size: view.getUint32(offset + 4, true),
    flags: view.getUint32(offset + 8, true),
    error: view.getUint32(offset + 12, true),
  };
}

export function writeHeader(
  view: DataView,
  offset: number,
  msgId: number,
  command: number,
  size: number,
  flags: number,
  error: number,
): void {
  view.setUint16(offset, msgId, true);
  view.setUint16(offset + 2, command, true);
  view.setUint32(offset + 4, size, true);
  view.setUint32(offset + 8, flags, true);
  view.setUint32(offset + 12, error, true);
}

/** A new message of `HEADER_SIZE + bodySize` bytes with its header filled in. */
export function newMessage(
  msgId: number,
  command: number,
  bodySize: number,
  flags = 0,
): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(HEADER_SIZE + bodySize);
  const view = new DataView(bytes.buffer);
  writeHeader(view, 0, msgId, command, bytes.length, flags, 0);
  return { bytes, view };
}

// ---------------------------------------------------------------------------------------------------------------
// VERSION

export interface Capabilities {
  /** Most fds the sender accepts in one message. */
  maxMsgFds?: number;
  maxDataXferSize?: number;
  maxDmaMaps?: number;
  /** Supported DMA page sizes, OR-ed together. */
  pgsizes?: number;
  writeMultiple?: boolean;
}

export interface VersionPayload {
  major: number;
  minor: number;
  /** The JSON text without its NUL, or undefined when the message has no version data. */
  json: string | undefined;
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

/**
 * Decodes a VERSION payload (request or reply). Throws VfioUserError(EINVAL) when the JSON data is not
 * NUL-terminated or not valid UTF-8 — both clients in scope always terminate it.
 */
export function decodeVersion(bytes: Uint8Array, bodyOffset: number, bodyLength: number): VersionPayload {
  if (bodyLength < BodySize.VERSION) {
    throw new VfioUserError(Errno.EINVAL, `VERSION payload is ${bodyLength} bytes, expected at least 4`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + bodyOffset, bodyLength);
  const major = view.getUint16(0, true);
  const minor = view.getUint16(2, true);
  if (bodyLength === BodySize.VERSION) return { major, minor, json: undefined };
  const data = bytes.subarray(bodyOffset + BodySize.VERSION, bodyOffset + bodyLength);
  const nul = data.indexOf(0);
  if (nul < 0) throw new VfioUserError(Errno.EINVAL, 'VERSION capabilities are not NUL-terminated');
  let json: string;
  try {
    json = utf8Decoder.decode(data.subarray(0, nul));
  } catch {
    throw new VfioUserError(Errno.EINVAL, 'VERSION capabilities are not valid UTF-8');
  }
  return { major, minor, json };
}

/**
 * Parses the JSON version data defensively. QEMU and current cloud-hypervisor wrap the capabilities in a
 * "capabilities" object; older cloud-hypervisor sent the fields at the top level, so both are accepted.
 * Unknown keys are ignored; known keys of the wrong type are an error (EINVAL).
 */
export function parseCapabilities(json: string | undefined): Capabilities {
  if (json === undefined || json.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    throw new VfioUserError(Errno.EINVAL, `VERSION capabilities are not valid JSON: ${(error as Error).message}`);
  }
  if (!isPlainObject(parsed)) throw new VfioUserError(Errno.EINVAL, 'VERSION data is not a JSON object');
  let source: Record<string, unknown> = parsed;
  if ('capabilities' in parsed) {
    const inner = parsed['capabilities'];
    if (!isPlainObject(inner)) throw new VfioUserError(Errno.EINVAL, '"capabilities" is not a JSON object');
    source = inner;
  }
  const caps: Capabilities = {};
  const maxMsgFds = optionalCount(source, 'max_msg_fds');
  if (maxMsgFds !== undefined) caps.maxMsgFds = maxMsgFds;
  const maxDataXferSize = optionalCount(source, 'max_data_xfer_size');
  if (maxDataXferSize !== undefined) caps.maxDataXferSize = maxDataXferSize;
  const maxDmaMaps = optionalCount(source, 'max_dma_maps');
  if (maxDmaMaps !== undefined) caps.maxDmaMaps = maxDmaMaps;
  const pgsizes = optionalCount(source, 'pgsizes');
  if (pgsizes !== undefined) caps.pgsizes = pgsizes;
  if ('write_multiple' in source) {
    const value = source['write_multiple'];
    if (typeof value !== 'boolean') throw new VfioUserError(Errno.EINVAL, '"write_multiple" is not a boolean');
    caps.writeMultiple = value;
  }
  return caps;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalCount(source: Record<string, unknown>, key: string): number | undefined {
  if (!(key in source)) return undefined;
  const value = source[key];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new VfioUserError(Errno.EINVAL, `"${key}" is not a non-negative integer`);
  }
  return value;
}

/**
 * The JSON we send: always a "capabilities" object (cloud-hypervisor requires it). Only keys QEMU knows are
 * emitted (it warns about any other), and no "migration" object: we do not support migration.
 */
export function capabilitiesJson(
  caps: Required<Pick<Capabilities, 'maxMsgFds' | 'maxDataXferSize' | 'maxDmaMaps' | 'pgsizes'>> & Capabilities,
): string {
  return JSON.stringify({
    capabilities: {
      max_msg_fds: caps.maxMsgFds,
      max_data_xfer_size: caps.maxDataXferSize,
      max_dma_maps: caps.maxDmaMaps,
      pgsizes: caps.pgsizes,
      write_multiple: caps.writeMultiple ?? false,
    },
  });
}

/** A VERSION message (request or reply) with NUL-terminated JSON data. */
export function encodeVersion(
  msgId: number,
  flags: number,
  major: number,
  minor: number,
  json: string | undefined,
): Uint8Array {
  const data = json === undefined ? new Uint8Array(0) : utf8Encoder.encode(json);
  const dataSize = json === undefined ? 0 : data.length + 1;
  const { bytes, view } = newMessage(msgId, Command.VERSION, BodySize.VERSION + dataSize, flags);
  view.setUint16(HEADER_SIZE, major, true);
  view.setUint16(HEADER_SIZE + 2, minor, true);
  bytes.set(data, HEADER_SIZE + BodySize.VERSION);
  return bytes;
}

// ---------------------------------------------------------------------------------------------------------------
// DMA_MAP / DMA_UNMAP

export interface DmaMapBody {
  argsz: number;
  flags: number;
  /** Offset into the fd; -1 if not a safe integer. */
  offset: number;
  /** IOVA (guest physical address); -1 if not a safe integer. */
  address: number;
  size: number;
}

export function readDmaMap(view: DataView, offset: number): DmaMapBody {
  return {
    argsz: view.getUint32(offset, true),
    flags: view.getUint32(offset + 4, true),
    offset: getU64(view, offset + 8),
    address: getU64(view, offset + 16),
    size: getU64(view, offset + 24),
  };
}

export function encodeDmaMap(msgId: number, body: Omit<DmaMapBody, 'argsz'> & { argsz?: number }): Uint8Array {
  const { bytes, view } = newMessage(msgId, Command.DMA_MAP, BodySize.DMA_MAP);
  view.setUint32(HEADER_SIZE, body.argsz ?? BodySize.DMA_MAP, true);
  view.setUint32(HEADER_SIZE + 4, body.flags, true);
  setU64(view, HEADER_SIZE + 8, body.offset);
  setU64(view, HEADER_SIZE + 16, body.address);
  setU64(view, HEADER_SIZE + 24, body.size);
  return bytes;
}

export interface DmaUnmapBody {
  argsz: number;
  flags: number;
  address: number;
  size: number;
}

export function readDmaUnmap(view: DataView, offset: number): DmaUnmapBody {
  return {
    argsz: view.getUint32(offset, true),
    flags: view.getUint32(offset + 4, true),
    address: getU64(view, offset + 8),
    size: getU64(view, offset + 16),
  };
}

export function encodeDmaUnmap(msgId: number, body: Omit<DmaUnmapBody, 'argsz'> & { argsz?: number }): Uint8Array {
  const { bytes, view } = newMessage(msgId, Command.DMA_UNMAP, BodySize.DMA_UNMAP);
  view.setUint32(HEADER_SIZE, body.argsz ?? BodySize.DMA_UNMAP, true);
  view.setUint32(HEADER_SIZE + 4, body.flags, true);
  setU64(view, HEADER_SIZE + 8, body.address);
  setU64(view, HEADER_SIZE + 16, body.size);
  return bytes;
}

// ---------------------------------------------------------------------------------------------------------------
// DEVICE_GET_INFO

export interface DeviceInfoBody {
  argsz: number;
  flags: number;
  numRegions: number;
  numIrqs: number;
}

export function readDeviceInfo(view: DataView, offset: number): DeviceInfoBody {
  return {
    argsz: view.getUint32(offset, true),
    flags: view.getUint32(offset + 4, true),
    numRegions: view.getUint32(offset + 8, true),
    numIrqs: view.getUint32(offset + 12, true),
  };
}

export function writeDeviceInfo(view: DataView, offset: number, body: DeviceInfoBody): void {
  view.setUint32(offset, body.argsz, true);
  view.setUint32(offset + 4, body.flags, true);
  view.setUint32(offset + 8, body.numRegions, true);
  view.setUint32(offset + 12, body.numIrqs, true);
}

export function encodeDeviceInfo(msgId: number, body: DeviceInfoBody, flags = 0): Uint8Array {
  const { bytes, view } = newMessage(msgId, Command.DEVICE_GET_INFO, BodySize.DEVICE_INFO, flags);
  writeDeviceInfo(view, HEADER_SIZE, body);
  return bytes;
}

// ---------------------------------------------------------------------------------------------------------------
// DEVICE_GET_REGION_INFO

export interface RegionInfoBody {
  argsz: number;
  flags: number;
  index: number;
  capOffset: number;
  size: number;
  offset: number;
}

export function readRegionInfo(view: DataView, offset: number): RegionInfoBody {
  return {
    argsz: view.getUint32(offset, true),
    flags: view.getUint32(offset + 4, true),
    index: view.getUint32(offset + 8, true),
    capOffset: view.getUint32(offset + 12, true),
    size: getU64(view, offset + 16),
    offset: getU64(view, offset + 24),
  };
}

export function writeRegionInfo(view: DataView, offset: number, body: RegionInfoBody): void {
  view.setUint32(offset, body.argsz, true);
  view.setUint32(offset + 4, body.flags, true);
  view.setUint32(offset + 8, body.index, true);
  view.setUint32(offset + 12, body.capOffset, true);
  setU64(view, offset + 16, body.size);
  setU64(view, offset + 24, body.offset);
}

export function encodeRegionInfo(msgId: number, body: RegionInfoBody, flags = 0): Uint8Array {
  const { bytes, view } = newMessage(msgId, Command.DEVICE_GET_REGION_INFO, BodySize.REGION_INFO, flags);
  writeRegionInfo(view, HEADER_SIZE, body);
  return bytes;
}

export function sparseMmapCapSize(areaCount: number): number {
  return SPARSE_MMAP_CAP_HEADER_SIZE + areaCount * SPARSE_MMAP_AREA_SIZE;
}

/** Writes a sparse-mmap capability (the last in its chain: next = 0). Returns the bytes written. */
export function writeSparseMmapCap(
  view: DataView,
  offset: number,
  areas: readonly { offset: number; size: number }[],
): number {
  view.setUint16(offset, RegionCapId.SPARSE_MMAP, true);
  view.setUint16(offset + 2, SPARSE_MMAP_CAP_VERSION, true);
  view.setUint32(offset + 4, 0, true);
  view.setUint32(offset + 8, areas.length, true);
  view.setUint32(offset + 12, 0, true);
  let at = offset + SPARSE_MMAP_CAP_HEADER_SIZE;
  for (const area of areas) {
    setU64(view, at, area.offset);
    setU64(view, at + 8, area.size);
    at += SPARSE_MMAP_AREA_SIZE;
  }
  return at - offset;
}

/**
 * Walks the capability chain of a region-info reply (`info` = the region-info structure and what follows it,
 * cap offsets relative to its start) and returns the sparse-mmap areas, or undefined when there is no such cap.
 * Throws VfioUserError(EINVAL) on a malformed chain (offsets outside the data, loops).
 */
export function readSparseMmapAreas(
  info: DataView,
  capOffset: number,
): Array<{ offset: number; size: number }> | undefined {
  const seen = new Set<number>();
  let at = capOffset;
  while (at !== 0) {
    if (seen.has(at) || at < BodySize.REGION_INFO || at + 8 > info.byteLength) {
      throw new VfioUserError(Errno.EINVAL, `region info capability at offset ${at} is outside the reply or loops`);
    }
    seen.add(at);
    const id = info.getUint16(at, true);
    const next = info.getUint32(at + 4, true);
    if (id === RegionCapId.SPARSE_MMAP) {
      if (at + SPARSE_MMAP_CAP_HEADER_SIZE > info.byteLength) {
        throw new VfioUserError(Errno.EINVAL, 'sparse mmap capability is truncated');
      }
      const count = info.getUint32(at + 8, true);
      if (at + sparseMmapCapSize(count) > info.byteLength) {
        throw new VfioUserError(Errno.EINVAL, `sparse mmap capability claims ${count} areas beyond the reply`);
      }
      const areas: Array<{ offset: number; size: number }> = [];
      for (let i = 0; i < count; i++) {
        const entry = at + SPARSE_MMAP_CAP_HEADER_SIZE + i * SPARSE_MMAP_AREA_SIZE;
        areas.push({ offset: getU64(info, entry), size: getU64(info, entry + 8) });
      }
      return areas;
    }
    at = next;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// DEVICE_GET_IRQ_INFO / DEVICE_SET_IRQS

export interface IrqInfoBody {
  argsz: number;
  flags: number;
  index: number;
  count: number;
}

export function readIrqInfo(view: DataView, offset: number): IrqInfoBody {
  return {
    argsz: view.getUint32(offset, true),
    flags: view.getUint32(offset + 4, true),
    index: view.getUint32(offset + 8, true),
    count: view.getUint32(offset + 12, true),
  };
}

export function writeIrqInfo(view: DataView, offset: number, body: IrqInfoBody): void {
  view.setUint32(offset, body.argsz, true);
  view.setUint32(offset + 4, body.flags, true);
  view.setUint32(offset + 8, body.index, true);
  view.setUint32(offset + 12, body.count, true);
}

export function encodeIrqInfo(msgId: number, body: IrqInfoBody, flags = 0): Uint8Array {
  const { bytes, view } = newMessage(msgId, Command.DEVICE_GET_IRQ_INFO, BodySize.IRQ_INFO, flags);
  writeIrqInfo(view, HEADER_SIZE, body);
  return bytes;
}

export interface IrqSetBody {
  argsz: number;
  flags: number;
  index: number;
  start: number;
  count: number;
}

export function readIrqSet(view: DataView, offset: number): IrqSetBody {
  return {
    argsz: view.getUint32(offset, true),
    flags: view.getUint32(offset + 4, true),
    index: view.getUint32(offset + 8, true),
    start: view.getUint32(offset + 12, true),
    count: view.getUint32(offset + 16, true),
  };
}

/** A SET_IRQS message; `data` (DATA_BOOL bytes) follows the structure when given. */
export function encodeIrqSet(
  msgId: number,
  body: Omit<IrqSetBody, 'argsz'> & { argsz?: number },
  data?: Uint8Array,
): Uint8Array {
  const dataSize = data?.length ?? 0;
  const { bytes, view } = newMessage(msgId, Command.DEVICE_SET_IRQS, BodySize.IRQ_SET + dataSize);
  view.setUint32(HEADER_SIZE, body.argsz ?? BodySize.IRQ_SET + dataSize, true);
  view.setUint32(HEADER_SIZE + 4, body.flags, true);
  view.setUint32(HEADER_SIZE + 8, body.index, true);
  view.setUint32(HEADER_SIZE + 12, body.start, true);
  view.setUint32(HEADER_SIZE + 16, body.count, true);
  if (data) bytes.set(data, HEADER_SIZE + BodySize.IRQ_SET);
  return bytes;
}

// ---------------------------------------------------------------------------------------------------------------
// REGION_READ / REGION_WRITE

export interface RegionAccessBody {
  /** -1 if not a safe integer. */
  offset: number;
  region: number;
  count: number;
}

export function readRegionAccess(view: DataView, offset: number): RegionAccessBody {
  return {
    offset: getU64(view, offset),
    region: view.getUint32(offset + 8, true),
    count: view.getUint32(offset + 12, true),
  };
}

export function writeRegionAccess(
  view: DataView,
  offset: number,
  regionOffset: number,
  region: number,
  count: number,
): void {
  setU64(view, offset, regionOffset);
  view.setUint32(offset + 8, region, true);
  view.setUint32(offset + 12, count, true);
}

/** REGION_READ request (no data) or REGION_WRITE request (with data; count = data length). */
export function encodeRegionAccess(
  msgId: number,
  command: typeof Command.REGION_READ | typeof Command.REGION_WRITE,
  access: RegionAccessBody,
  data?: Uint8Array,
  flags = 0,
): Uint8Array {
  const dataSize = data?.length ?? 0;
  const { bytes, view } = newMessage(msgId, command, BodySize.REGION_ACCESS + dataSize, flags);
  writeRegionAccess(view, HEADER_SIZE, access.offset, access.region, access.count);
  if (data) bytes.set(data, HEADER_SIZE + BodySize.REGION_ACCESS);
  return bytes;
}
