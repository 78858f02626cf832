/**
 * NVMe/TCP PDU layout (NVMe/TCP Transport Specification; field offsets as in Linux include/linux/nvme-tcp.h) and the
 * encoders / decoders the queue uses. All fields are little endian. Only what a host sends or must understand.
 */
import { native } from '../../native/index.js';

export const PduType = {
  IC_REQ: 0x00,
  IC_RESP: 0x01,
  H2C_TERM_REQ: 0x02,
  C2H_TERM_REQ: 0x03,
  CAPSULE_CMD: 0x04,
  CAPSULE_RESP: 0x05,
  H2C_DATA: 0x06,
  C2H_DATA: 0x07,
  R2T: 0x09,
} as const;

export const PduFlags = {
  HDGST: 0x01,
  DDGST: 0x02,
  DATA_LAST: 0x04,
  DATA_SUCCESS: 0x08,
} as const;

/** Header lengths (hlen) per PDU type. */
export const IC_HLEN = 128;
export const TERM_HLEN = 24;
export const CMD_HLEN = 72;
export const RESP_HLEN = 24;
export const DATA_HLEN = 24;
export const R2T_HLEN = 24;
export const DIGEST_LEN = 4;
/** A C2HTermReq carries at most this much of the offending PDU header after its own header. */
export const TERM_MAX_DATA = 152;

/** Fatal Error Status values of a TermReq. */
export const TermFes = {
  INVALID_HEADER_FIELD: 0x01,
  PDU_SEQUENCE_ERROR: 0x02,
  HEADER_DIGEST_ERROR: 0x03,
  DATA_OUT_OF_RANGE: 0x04,
  R2T_LIMIT_EXCEEDED: 0x05,
  UNSUPPORTED_PARAMETER: 0x06,
} as const;

export const PDU_TYPE_NAMES: Record<number, string> = {
  0: 'ICReq',
  1: 'ICResp',
  2: 'H2CTermReq',
  3: 'C2HTermReq',
  4: 'CapsuleCmd',
  5: 'CapsuleResp',
  6: 'H2CData',
  7: 'C2HData',
  8: 'TCPReserved8',
  9: 'R2T',
};

export function pduTypeName(type: number): string {
  return PDU_TYPE_NAMES[type] ?? `0x${type.toString(16)}`;
}

/** The 8-byte common header. */
export interface CommonHeader {
  type: number;
  flags: number;
  hlen: number;
  pdo: number;
  plen: number;
}

export function readCommonHeader(b: Uint8Array): CommonHeader {
  return { type: b[0]!, flags: b[1]!, hlen: b[2]!, pdo: b[3]!, plen: u32(b, 4) };
}

export function writeCommonHeader(b: Uint8Array, type: number, flags: number, hlen: number, pdo: number, plen: number) {
  b[0] = type;
  b[1] = flags;
  b[2] = hlen;
  b[3] = pdo;
  put32(b, 4, plen);
}

// --- ICReq / ICResp ----------------------------------------------------------------------------------------------

export interface ICReq {
  pfv: number;
  hpda: number;
  hdgst: boolean;
  ddgst: boolean;
  /** 0's based: maximum outstanding R2Ts per command minus one. */
  maxr2t: number;
}

export interface ICResp {
  pfv: number;
  cpda: number;
  hdgst: boolean;
  ddgst: boolean;
  maxh2cdata: number;
}

export function encodeICReq(req: ICReq): Uint8Array {
  const b = new Uint8Array(IC_HLEN);
  writeCommonHeader(b, PduType.IC_REQ, 0, IC_HLEN, 0, IC_HLEN);
  put16(b, 8, req.pfv);
  b[10] = req.hpda;
  b[11] = (req.hdgst ? 1 : 0) | (req.ddgst ? 2 : 0);
  put32(b, 12, req.maxr2t);
  return b;
}

export function decodeICReq(b: Uint8Array): ICReq {
  return { pfv: u16(b, 8), hpda: b[10]!, hdgst: (b[11]! & 1) !== 0, ddgst: (b[11]! & 2) !== 0, maxr2t: u32(b, 12) };
}

export function encodeICResp(resp: ICResp): Uint8Array {
  const b = new Uint8Array(IC_HLEN);
  writeCommonHeader(b, PduType.IC_RESP, 0, IC_HLEN, 0, IC_HLEN);
  put16(b, 8, resp.pfv);
  b[10] = resp.cpda;
  b[11] = (resp.hdgst ? 1 : 0) | (resp.ddgst ? 2 : 0);
  put32(b, 12, resp.maxh2cdata);
  return b;
}

export function decodeICResp(b: Uint8Array): ICResp {
  return { pfv: u16(b, 8), cpda: b[10]!, hdgst: (b[11]! & 1) !== 0, ddgst: (b[11]! & 2) !== 0, maxh2cdata: u32(b, 12) };
}

// --- data PDUs (H2CData / C2HData / R2T share the layout) ---------------------------------------------------------

export interface DataHeader {
  cccid: number;
  /** Transfer tag (H2CData, R2T); 0 in C2HData. */
  ttag: number;
  /** datao / r2to. */
  offset: number;
  /** datal / r2tl. */
  length: number;
}

export function readDataHeader(b: Uint8Array): DataHeader {
  return { cccid: u16(b, 8), ttag: u16(b, 10), offset: u32(b, 12), length: u32(b, 16) };
}

/** Writes the 24 header bytes of an H2CData / C2HData / R2T PDU (plus the header digest when `hdgst`). */
export function writeDataPdu(
  b: Uint8Array,
  type: number,
  flags: number,
  h: DataHeader,
  hdgst: boolean,
  ddgst: boolean,
): void {
  const hd = hdgst ? DIGEST_LEN : 0;
  const hasData = type !== PduType.R2T && h.length > 0;
  const pdo = hasData ? DATA_HLEN + hd : 0;
  const plen = DATA_HLEN + hd + (hasData ? h.length + (ddgst ? DIGEST_LEN : 0) : 0);
  const f = flags | (hdgst ? PduFlags.HDGST : 0) | (ddgst && hasData ? PduFlags.DDGST : 0);
  writeCommonHeader(b, type, f, DATA_HLEN, pdo, plen);
  put16(b, 8, h.cccid);
  put16(b, 10, h.ttag);
  put32(b, 12, h.offset);
  put32(b, 16, h.length);
  put32(b, 20, 0);
  if (hdgst) put32(b, DATA_HLEN, crc32c(b.subarray(0, DATA_HLEN)));
}

// --- TermReq --------------------------------------------------------------------------------------------------------

export interface TermReq {
  fes: number;
  fei: number;
}

export function readTermReq(b: Uint8Array): TermReq {
  return { fes: u16(b, 8), fei: u32(b, 10) };
}

export function encodeTermReq(type: number, fes: number, fei: number, offending: Uint8Array): Uint8Array {
  const data = offending.subarray(0, Math.min(offending.length, TERM_MAX_DATA));
  const b = new Uint8Array(TERM_HLEN + data.length);
  writeCommonHeader(b, type, 0, TERM_HLEN, 0, b.length);
  put16(b, 8, fes);
  put32(b, 10, fei);
  b.set(data, TERM_HLEN);
  return b;
}

// --- SGL descriptors (SQE bytes 24..39) -----------------------------------------------------------------------------

/** SQE flags byte: PSDT = 01b (SGLs for data). Fabrics require SGLs. */
export const SQE_FLAGS_SGL = 0x40;
/** Data Block descriptor, Offset subtype: the data follows in the capsule. */
export const SGL_INCAPSULE = 0x01;
/** Transport SGL Data Block (type 5, subtype 0xA): the data moves in H2CData / C2HData PDUs. */
export const SGL_TRANSPORT = 0x5a;

export function writeSgl(sqe: Uint8Array, type: number, address: number, length: number): void {
  put64(sqe, 24, address);
  put32(sqe, 32, length);
  sqe[36] = 0;
  sqe[37] = 0;
  sqe[38] = 0;
  sqe[39] = type;
}

// --- byte helpers ---------------------------------------------------------------------------------------------------

export function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
export function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}
/** Exact up to 2^53. */
export function u64(b: Uint8Array, o: number): number {
  return u32(b, o) + u32(b, o + 4) * 0x1_0000_0000;
}
export function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}
export function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}
export function put64(b: Uint8Array, o: number, v: number): void {
  put32(b, o, v >>> 0);
  put32(b, o + 4, Math.floor(v / 0x1_0000_0000));
}

/** CRC32C of one view or several views in order (native, in place). */
export function crc32c(data: Uint8Array | readonly Uint8Array[], seed?: number): number {
  return native.crc32c(data, seed);
}

/** `length` bytes at `offset` of the logical concatenation of `views`, as sub-views (no copy). */
export function sliceViews(views: readonly Uint8Array[], offset: number, length: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = offset;
  let left = length;
  for (const v of views) {
    if (left === 0) break;
    if (skip >= v.length) {
      skip -= v.length;
      continue;
    }
    const n = Math.min(v.length - skip, left);
    out.push(v.subarray(skip, skip + n));
    left -= n;
    skip = 0;
  }
  if (left !== 0) throw new RangeError(`sliceViews: ${length} bytes at ${offset} exceed the buffers`);
  return out;
}

export function totalLength(views: readonly Uint8Array[]): number {
  let n = 0;
  for (const v of views) n += v.length;
  return n;
}
