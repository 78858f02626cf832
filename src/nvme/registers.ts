/**
 * The NVMe controller registers (BAR0 0x0-0xFFF) as a little-endian byte image. The image is the only copy of
 * register state: reads of any size and alignment copy bytes out of it, so odd guest accesses simply see the
 * register bytes they cover and never fault. Side effects of writes live in the controller.
 */
import { Reg } from '../spec/nvme.js';
import { checkSnapshotVersion, fromBase64, toBase64 } from '../util/handover-fds.js';

const REGISTERS_STATE_VERSION = 1;

/** The register image in a live-upgrade snapshot. */
export interface RegistersState {
  version: number;
  image: string;
}

/** Size of the register block; doorbells start right after it. */
export const REGISTER_BLOCK_SIZE = 0x1000;

/** NVMe version this controller implements (VS register and Identify Controller VER): 1.4.0. */
export const NVME_VERSION = 0x00010400;

/** CAP.TO in 500 ms units: the guest waits up to this long for CSTS.RDY to follow CC.EN. */
export const READY_TIMEOUT_UNITS = 20;

/** Controller Configuration (CC) fields. */
export const Cc = {
  EN: 1 << 0,
  CSS_SHIFT: 4,
  CSS_MASK: 0x7,
  MPS_SHIFT: 7,
  MPS_MASK: 0xf,
  AMS_SHIFT: 11,
  AMS_MASK: 0x7,
  SHN_SHIFT: 14,
  SHN_MASK: 0x3,
  IOSQES_SHIFT: 16,
  IOSQES_MASK: 0xf,
  IOCQES_SHIFT: 20,
  IOCQES_MASK: 0xf,
  /** Writable bits of CC (NVMe 1.4: CRIME and above are reserved for us). */
  WRITABLE: 0x00fffff1,
} as const;

/** CC.SHN values. */
export const ShutdownNotification = { NONE: 0, NORMAL: 1, ABRUPT: 2 } as const;

/** Controller Status (CSTS) fields. */
export const Csts = {
  RDY: 1 << 0,
  CFS: 1 << 1,
  SHST_SHIFT: 2,
  SHST_MASK: 0x3,
} as const;

/** CSTS.SHST values. */
export const ShutdownStatus = { NORMAL: 0, PROCESSING: 1, COMPLETE: 2 } as const;

/** log2 of the I/O queue entry sizes we support (CC.IOSQES / IOCQES): 64-byte SQEs, 16-byte CQEs. */
export const IO_SQ_ENTRY_SIZE_LOG2 = 6;
export const IO_CQ_ENTRY_SIZE_LOG2 = 4;

export const MIN_ADMIN_QUEUE_ENTRIES = 2;
export const MAX_ADMIN_QUEUE_ENTRIES = 4096;

export interface CapabilityOptions {
  /** Maximum entries per I/O queue (CAP.MQES + 1). */
  maxQueueEntries: number;
}

/** CAP as its two 32-bit halves. */
export function capabilities(options: CapabilityOptions): { low: number; high: number } {
  const mqes = options.maxQueueEntries - 1;
  const cqr = 1 << 16; // queues must be physically contiguous
  const ams = 0 << 17; // round robin only
  const low = (mqes | cqr | ams | (READY_TIMEOUT_UNITS << 24)) >>> 0;
  // High dword: DSTRD (35:32) = 0, NSSRS (36) = 0, CSS (44:37) bit 0 = NVM command set, BPS = 0, CPS = 0,
  // MPSMIN (51:48) = MPSMAX (55:52) = 0 (4 KiB pages only), PMRS = CMBS = 0.
  const cssNvm = 1 << (37 - 32);
  return { low, high: cssNvm };
}

export class ControllerRegisters {
  readonly image = new Uint8Array(REGISTER_BLOCK_SIZE);
  private readonly view = new DataView(this.image.buffer);

  constructor(options: CapabilityOptions) {
    const cap = capabilities(options);
    this.view.setUint32(Reg.CAP, cap.low, true);
    this.view.setUint32(Reg.CAP + 4, cap.high, true);
    this.view.setUint32(Reg.VS, NVME_VERSION, true);
  }

  snapshot(): RegistersState {
    return { version: REGISTERS_STATE_VERSION, image: toBase64(this.image) };
  }

  /** Takes on a predecessor's registers; CAP must be the one this controller reports (same options). */
  restore(state: RegistersState): void {
    checkSnapshotVersion(state, 'NVMe registers', REGISTERS_STATE_VERSION);
    const image = fromBase64(state.image, 'NVMe register image', REGISTER_BLOCK_SIZE);
    const theirs = new DataView(image.buffer, image.byteOffset, image.byteLength);
    if (theirs.getUint32(Reg.CAP, true) !== this.get32(Reg.CAP) || theirs.getUint32(Reg.CAP + 4, true) !== this.get32(Reg.CAP + 4)) {
      throw new Error('snapshot: NVMe CAP differs (the queue entry limit must stay the same across an upgrade)');
    }
    this.image.set(image);
  }

  /** Back to power-on values: everything but CAP and VS is zero. */
  powerOnReset(): void {
    const capLow = this.view.getUint32(Reg.CAP, true);
    const capHigh = this.view.getUint32(Reg.CAP + 4, true);
    this.image.fill(0);
    this.view.setUint32(Reg.CAP, capLow, true);
    this.view.setUint32(Reg.CAP + 4, capHigh, true);
    this.view.setUint32(Reg.VS, NVME_VERSION, true);
  }

  /** Copies register bytes [offset, offset + dst.length) into dst; bytes outside the block read as zero. */
  read(offset: number, dst: Uint8Array): void {
    dst.fill(0);
    if (offset >= REGISTER_BLOCK_SIZE) return;
    const end = Math.min(REGISTER_BLOCK_SIZE, offset + dst.length);
    dst.set(this.image.subarray(offset, end));
  }

  get32(offset: number): number {
    return this.view.getUint32(offset, true);
  }

  set32(offset: number, value: number): void {
    this.view.setUint32(offset, value >>> 0, true);
  }

  /** A 64-bit register as a number; values beyond 2^53 lose precision, which only makes them fail validation. */
  get64(offset: number): number {
    return this.view.getUint32(offset + 4, true) * 0x1_0000_0000 + this.view.getUint32(offset, true);
  }

  get maxQueueEntries(): number {
    return (this.view.getUint32(Reg.CAP, true) & 0xffff) + 1;
  }

  get cc(): number {
    return this.get32(Reg.CC);
  }
  set cc(value: number) {
    this.set32(Reg.CC, value);
  }

  get csts(): number {
    return this.get32(Reg.CSTS);
  }
  set csts(value: number) {
    this.set32(Reg.CSTS, value);
  }

  get intms(): number {
    return this.get32(Reg.INTMS);
  }
  set intms(value: number) {
    // INTMS and INTMC both read back the current mask.
    this.set32(Reg.INTMS, value);
    this.set32(Reg.INTMC, value);
  }

  get aqa(): number {
    return this.get32(Reg.AQA);
  }

  get asq(): number {
    return this.get64(Reg.ASQ);
  }

  get acq(): number {
    return this.get64(Reg.ACQ);
  }

  setCstsBits(bits: number, on: boolean): void {
    this.csts = on ? this.csts | bits : this.csts & ~bits;
  }

  get shutdownStatus(): number {
    return (this.csts >>> Csts.SHST_SHIFT) & Csts.SHST_MASK;
  }
  set shutdownStatus(value: number) {
    this.csts = (this.csts & ~(Csts.SHST_MASK << Csts.SHST_SHIFT)) | (value << Csts.SHST_SHIFT);
  }
}

/** A field of CC. */
export function ccField(cc: number, shift: number, mask: number): number {
  return (cc >>> shift) & mask;
}

/** Registers a 4-byte write may target (64-bit registers accept each half separately). */
export function isWritable32(offset: number): boolean {
  return (
    offset === Reg.INTMS ||
    offset === Reg.INTMC ||
    offset === Reg.CC ||
    offset === Reg.CSTS ||
    offset === Reg.NSSR ||
    offset === Reg.AQA ||
    offset === Reg.ASQ ||
    offset === Reg.ASQ + 4 ||
    offset === Reg.ACQ ||
    offset === Reg.ACQ + 4
  );
}

/** Registers an 8-byte write may target. */
export function isWritable64(offset: number): boolean {
  return offset === Reg.ASQ || offset === Reg.ACQ;
}
