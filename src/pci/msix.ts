/**
 * MSI-X: the vector table and Pending Bit Array in their BAR, and delivery of vectors to eventfds.
 *
 * With vfio-user the VMM normally emulates the table itself (QEMU and cloud-hypervisor both intercept it) and only
 * forwards config-space writes (enable, function mask) and, for QEMU, PBA reads. So masking comes from three
 * places and a vector counts as masked when ANY of them masks it:
 *   - the Function Mask bit of Message Control (config space, always forwarded);
 *   - SET_IRQS MASK/UNMASK on the MSI-X index;
 *   - the Vector Control mask bit of our own table, but only once the client has written our table. Until then
 *     the client is assumed to emulate the table, and our entries (masked at power-on, as the spec requires)
 *     would otherwise block every interrupt forever.
 * A vector signalled while masked, or before the client bound an eventfd to it, sets its PBA bit; the bit is
 * delivered (once) and cleared as soon as the vector is unmasked and has an eventfd.
 */
import { native } from '../native/index.js';
import type { Logger } from '../util/log.js';
import { Errno } from '../spec/vfio.js';
import { fromBase64, toBase64, type FdCollector, type FdSource } from '../util/handover-fds.js';
import { PciAccessError } from './config-space.js';

export const MSIX_ENTRY_SIZE = 16;
export const MSIX_MAX_VECTORS = 2048;
/** Windows' stornvme fails with 512 vectors; 64 works everywhere we know of. */
export const DEFAULT_MSIX_VECTORS = 64;
const PAGE_SIZE = 4096;

/** Offsets inside one table entry. */
export const MsixEntry = {
  ADDRESS_LOW: 0x0,
  ADDRESS_HIGH: 0x4,
  DATA: 0x8,
  VECTOR_CONTROL: 0xc,
} as const;
const VECTOR_CONTROL_MASKED = 1;
/** Message addresses are dword aligned: the low 2 bits are read-only 0. */
const ADDRESS_LOW_WRITABLE = 0xffff_fffc;

export interface MsixLayout {
  vectors: number;
  tableOffset: number;
  tableSize: number;
  /** 4 KiB aligned, after the table, so table and PBA never share a page. */
  pbaOffset: number;
  pbaSize: number;
  /** Power of two covering table and PBA, at least one page. */
  barSize: number;
}

export function msixLayout(vectors: number): MsixLayout {
  if (!Number.isInteger(vectors) || vectors < 1 || vectors > MSIX_MAX_VECTORS) {
    throw new Error(`MSI-X vector count ${vectors} must be an integer in 1..${MSIX_MAX_VECTORS}`);
  }
  const tableSize = vectors * MSIX_ENTRY_SIZE;
  const pbaOffset = Math.ceil(tableSize / PAGE_SIZE) * PAGE_SIZE;
  // One bit per vector, in whole qwords.
  const pbaSize = Math.ceil(vectors / 64) * 8;
  let barSize = PAGE_SIZE;
  while (barSize < pbaOffset + pbaSize) barSize *= 2;
  return { vectors, tableOffset: 0, tableSize, pbaOffset, pbaSize, barSize };
}

/** MSI-X in a live-upgrade snapshot; `eventfds` holds snapshot fd indexes (-1: none bound). */
export interface MsixState {
  vectors: number;
  table: string;
  pendingBits: string;
  eventfds: number[];
  irqMasked: string;
  enabled: boolean;
  functionMasked: boolean;
  tableInUse: boolean;
}

/** The MSI-X state of one function: table, PBA, per-vector masks and eventfds. */
export class MsixVectors {
  readonly layout: MsixLayout;
  private readonly table: Uint8Array;
  private readonly tableView: DataView;
  private readonly pendingBits: Uint8Array;
  /** Bound eventfd per vector, -1 when none. We own (and close) these. */
  private readonly eventfds: Int32Array;
  /** 1 where SET_IRQS MASK masked the vector. */
  private readonly irqMasked: Uint8Array;
  private enabled = false;
  private functionMasked = false;
  /** True once the client wrote our table, i.e. it does not emulate the table itself. */
  private tableInUse = false;

  constructor(
    vectors: number,
    private readonly logger: Logger,
  ) {
    this.layout = msixLayout(vectors);
    this.table = new Uint8Array(this.layout.tableSize);
    this.tableView = new DataView(this.table.buffer);
    this.pendingBits = new Uint8Array(this.layout.pbaSize);
    this.eventfds = new Int32Array(vectors).fill(-1);
    this.irqMasked = new Uint8Array(vectors);
    this.resetTable();
  }

  get vectorCount(): number {
    return this.layout.vectors;
  }

  isEnabled(): boolean {
    return this.enabled;
  }

  isFunctionMasked(): boolean {
    return this.functionMasked;
  }

  /** Whether vector `vector` is masked by any of the three mechanisms (see the file comment). */
  isMasked(vector: number): boolean {
    return (
      this.functionMasked ||
      this.irqMasked[vector] === 1 ||
      (this.tableInUse && (this.tableView.getUint32(vector * MSIX_ENTRY_SIZE + MsixEntry.VECTOR_CONTROL, true) & VECTOR_CONTROL_MASKED) !== 0)
    );
  }

  isPending(vector: number): boolean {
    return (this.pendingBits[vector >>> 3]! & (1 << (vector & 7))) !== 0;
  }

  private setPending(vector: number): void {
    const index = vector >>> 3;
    this.pendingBits[index] = this.pendingBits[index]! | (1 << (vector & 7));
  }

  private clearPending(vector: number): void {
    const index = vector >>> 3;
    this.pendingBits[index] = this.pendingBits[index]! & ~(1 << (vector & 7));
  }

  eventfdOf(vector: number): number {
    return this.eventfds[vector]!;
  }

  /**
   * Delivers `vector` (already validated by the caller) or records it as pending. Hot path: no allocation.
   * Assumes MSI-X is enabled; the caller routes to INTx otherwise.
   */
  signal(vector: number): void {
    const fd = this.eventfds[vector]!;
    if (fd < 0 || this.isMasked(vector)) {
      this.setPending(vector);
      return;
    }
    this.fire(vector, fd);
  }

  /** Mirrors the Message Control bits after a config write; unmasking/enabling delivers pending vectors. */
  setControl(enabled: boolean, functionMasked: boolean): void {
    const wasDeliverable = this.enabled && !this.functionMasked;
    this.enabled = enabled;
    this.functionMasked = functionMasked;
    if (!wasDeliverable && enabled && !functionMasked) this.deliverPendingRange(0, this.layout.vectors);
  }

  /** Reads from the MSI-X BAR: any size and alignment (the spec only constrains writes). Reserved space reads 0. */
  readBar(offset: number, dst: Uint8Array): void {
    const { tableSize, pbaOffset, pbaSize } = this.layout;
    for (let i = 0; i < dst.length; i++) {
      const at = offset + i;
      if (at < tableSize) dst[i] = this.table[at]!;
      else if (at >= pbaOffset && at < pbaOffset + pbaSize) dst[i] = this.pendingBits[at - pbaOffset]!;
      else dst[i] = 0;
    }
  }

  /**
   * Writes to the MSI-X BAR: the spec allows only naturally aligned dword or qword accesses. Writes to the PBA
   * (read-only) and to reserved space are ignored.
   */
  writeBar(offset: number, src: Uint8Array): void {
    if ((src.length !== 4 && src.length !== 8) || offset % src.length !== 0) {
      throw new PciAccessError(
        Errno.EINVAL,
        `MSI-X BAR write of ${src.length} bytes at 0x${offset.toString(16)}: only aligned 4- or 8-byte writes are allowed`,
      );
    }
    if (offset >= this.layout.tableSize) {
      if (this.logger.enabled('debug')) {
        this.logger.debug('ignored MSI-X BAR write outside the table', { offset, length: src.length });
      }
      return;
    }
    this.tableInUse = true;
    const srcView = new DataView(src.buffer, src.byteOffset, src.byteLength);
    for (let done = 0; done < src.length; done += 4) {
      this.writeTableDword(offset + done, srcView.getUint32(done, true));
    }
  }

  private writeTableDword(offset: number, value: number): void {
    const vector = Math.floor(offset / MSIX_ENTRY_SIZE);
    const field = offset % MSIX_ENTRY_SIZE;
    if (field === MsixEntry.VECTOR_CONTROL) {
      this.tableView.setUint32(offset, value & VECTOR_CONTROL_MASKED, true);
      this.deliverPending(vector);
    } else if (field === MsixEntry.ADDRESS_LOW) {
      this.tableView.setUint32(offset, (value & ADDRESS_LOW_WRITABLE) >>> 0, true);
    } else {
      this.tableView.setUint32(offset, value >>> 0, true);
    }
  }

  /** SET_IRQS TRIGGER|EVENTFD: binds (fd >= 0) or de-assigns (-1) eventfds from `start`; closes replaced fds. */
  bindEventfds(start: number, fds: readonly number[]): void {
    // A request may move an fd we hold to another vector of the range; only close what it no longer binds.
    const kept = new Set(fds);
    for (let i = 0; i < fds.length; i++) {
      const previous = this.eventfds[start + i]!;
      if (previous >= 0 && !kept.has(previous)) closeQuietly(previous, this.logger);
    }
    for (let i = 0; i < fds.length; i++) this.eventfds[start + i] = fds[i]!;
    this.deliverPendingRange(start, fds.length);
  }

  /** SET_IRQS MASK/UNMASK for vectors start..start+count (only where `bools[i]` is non-zero, when given). */
  setIrqMask(start: number, count: number, masked: boolean, bools: Uint8Array | undefined): void {
    for (let i = 0; i < count; i++) {
      if (bools !== undefined && bools[i] === 0) continue;
      this.irqMasked[start + i] = masked ? 1 : 0;
      if (!masked) this.deliverPending(start + i);
    }
  }

  /** SET_IRQS TRIGGER|NONE/BOOL: loopback test of the bound eventfds, regardless of masks (as vfio does). */
  triggerForTest(start: number, count: number, bools: Uint8Array | undefined): void {
    for (let i = 0; i < count; i++) {
      if (bools !== undefined && bools[i] === 0) continue;
      const fd = this.eventfds[start + i]!;
      if (fd >= 0) this.fire(start + i, fd);
    }
  }

  /** SET_IRQS TRIGGER|NONE with count 0: closes every eventfd and clears the SET_IRQS masks. */
  disableAll(): void {
    for (let vector = 0; vector < this.eventfds.length; vector++) {
      const fd = this.eventfds[vector]!;
      if (fd >= 0) closeQuietly(fd, this.logger);
    }
    this.eventfds.fill(-1);
    this.irqMasked.fill(0);
  }

  /** Whether we currently own `fd` (so a second binding of the same number would double-close it). */
  ownsEventfd(fd: number, exceptStart: number, exceptCount: number): boolean {
    for (let vector = 0; vector < this.eventfds.length; vector++) {
      if (vector >= exceptStart && vector < exceptStart + exceptCount) continue;
      if (this.eventfds[vector] === fd) return true;
    }
    return false;
  }

  /** Power-on/FLR state of the table, PBA and control bits. Eventfd bindings and SET_IRQS masks are kept. */
  reset(): void {
    this.resetTable();
    this.pendingBits.fill(0);
    this.enabled = false;
    this.functionMasked = false;
  }

  /** Everything about the vectors, for a successor process; the eventfds are added to `fds` (and stay ours too). */
  snapshot(fds: FdCollector): MsixState {
    return {
      vectors: this.layout.vectors,
      table: toBase64(this.table),
      pendingBits: toBase64(this.pendingBits),
      eventfds: Array.from(this.eventfds, (fd) => (fd >= 0 ? fds.add(fd) : -1)),
      irqMasked: toBase64(this.irqMasked),
      enabled: this.enabled,
      functionMasked: this.functionMasked,
      tableInUse: this.tableInUse,
    };
  }

  /** Takes on a predecessor's vectors (same vector count); delivers nothing (pending bits stay pending). */
  restore(state: MsixState, fds: FdSource): void {
    if (state.vectors !== this.layout.vectors) {
      throw new Error(`snapshot: MSI-X with ${state.vectors} vectors, this function has ${this.layout.vectors}`);
    }
    const table = fromBase64(state.table, 'MSI-X table', this.table.length);
    const pendingBits = fromBase64(state.pendingBits, 'MSI-X PBA', this.pendingBits.length);
    const irqMasked = fromBase64(state.irqMasked, 'MSI-X masks', this.irqMasked.length);
    if (!Array.isArray(state.eventfds) || state.eventfds.length !== this.eventfds.length) {
      throw new Error('snapshot: MSI-X eventfds do not match the vector count');
    }
    const eventfds = state.eventfds.map((index) => (index === -1 ? -1 : fds.take(index)));
    this.table.set(table);
    this.pendingBits.set(pendingBits);
    this.irqMasked.set(irqMasked);
    this.eventfds.set(eventfds);
    this.enabled = state.enabled === true;
    this.functionMasked = state.functionMasked === true;
    this.tableInUse = state.tableInUse === true;
  }

  /** Client gone: close every eventfd and forget what we learned about the client. */
  release(): void {
    this.disableAll();
    this.tableInUse = false;
  }

  private resetTable(): void {
    this.table.fill(0);
    for (let vector = 0; vector < this.layout.vectors; vector++) {
      this.tableView.setUint32(vector * MSIX_ENTRY_SIZE + MsixEntry.VECTOR_CONTROL, VECTOR_CONTROL_MASKED, true);
    }
  }

  private deliverPendingRange(start: number, count: number): void {
    for (let vector = start; vector < start + count; vector++) this.deliverPending(vector);
  }

  /** Fires a pending vector once it is deliverable, clearing its PBA bit. */
  private deliverPending(vector: number): void {
    if (!this.enabled || !this.isPending(vector) || this.isMasked(vector)) return;
    const fd = this.eventfds[vector]!;
    if (fd < 0) return;
    this.clearPending(vector);
    this.fire(vector, fd);
  }

  private fire(vector: number, fd: number): void {
    try {
      // false: the counter is saturated (nobody reads it), so this vector's interrupt is pending already. Never
      // blocks for long: PciFunction.setIrqs only binds eventfds, and sets them non-blocking (a client that clears
      // O_NONBLOCK again gets its write interrupted within ~0.2 s by the addon).
      if (!native.eventfdWrite(fd, 1) && this.logger.enabled('debug')) {
        this.logger.debug('MSI-X eventfd counter saturated; interrupt already pending', { vector, fd });
      }
    } catch (error) {
      this.logger.warn('MSI-X eventfd write failed', { vector, fd, error });
    }
  }
}

/** Closes an fd we own; a failure (already closed by a bug elsewhere) is logged, never thrown. */
export function closeQuietly(fd: number, logger: Logger): void {
  try {
    native.close(fd);
  } catch (error) {
    logger.warn('closing interrupt eventfd failed', { fd, error });
  }
}
