/**
 * The device a `VfioUserServer` presents: what the client may ask about (regions, interrupts) and the callbacks
 * the server makes for region accesses, interrupt wiring, reset and disconnect. The server validates every
 * guest-supplied index, offset and length against `regions` / `irqs` before calling in, so implementations only
 * check what is specific to them (access width, alignment, register semantics).
 */
import { RegionFlag } from '../spec/vfio.js';
import type { FdCollector, FdSource } from '../util/handover-fds.js';

export { VfioUserError } from './errors.js';

export interface SparseArea {
  /** Relative to the start of the region. */
  offset: number;
  size: number;
}

export interface RegionInfo {
  /** 0 for an absent region. */
  size: number;
  /**
   * RegionFlag bits (src/spec/vfio.ts). READ / WRITE are the device's; MMAP is derived from `mmap` and CAPS from whether the reply
   * carries capabilities, so the server sets both itself (values given here for them are ignored).
   */
  flags: number;
  /**
   * When mmap-able: the fd the client maps, the offset of this region in that fd, and the mmap-able sparse areas
   * (relative to the region start); omit areas to mean the whole region. The fd stays owned by the device and
   * must stay open while a client is connected (the server sends a duplicate with each region-info reply).
   */
  mmap?: { fd: number; fdOffset: number; areas?: SparseArea[] };
}

export interface IrqInfo {
  /** Number of vectors (0 for an absent interrupt type). */
  count: number;
  /** IrqFlag bits (src/spec/vfio.ts). */
  flags: number;
}

export interface SetIrqsRequest {
  /** IrqIndex */
  index: number;
  /** IrqSetFlag bits: one DATA_* and one ACTION_* (validated by the server). */
  flags: number;
  /** First vector; start + count <= irqs[index].count (validated by the server). */
  start: number;
  count: number;
  /**
   * Eventfds received with the message: exactly `count` of them (vector start + i gets fds[i]), or none with
   * DATA_EVENTFD to de-assign the vectors. They are unchecked client input: they may be any kind of fd (a socket,
   * a pipe, a file), blocking or not, so a device that writes to them must check that they are eventfds
   * (`native.isEventfd`) and set O_NONBLOCK first. Ownership passes to the device when setIrqs returns normally.
   * If it throws, the server closes every one of them: the device must then neither keep nor close any (a second
   * close could hit an fd another thread of the process opened under that number meanwhile).
   */
  fds: number[];
  /** DATA_BOOL payload, one byte per vector; a view of the receive buffer, valid only during the call. */
  bools?: Uint8Array;
}

export interface VfioUserDevice {
  /** DeviceFlag bits. */
  readonly flags: number;
  /**
   * Index = region index; length = num_regions. QEMU requires 8..100 regions (the config region is index 7); we
   * expose 9 (BAR0-5, ROM, CONFIG, VGA) with size 0 for the absent ones.
   */
  readonly regions: readonly RegionInfo[];
  /** Index = IrqIndex; length = num_irqs. QEMU requires 3..50; we expose 5. */
  readonly irqs: readonly IrqInfo[];

  /** Fill `dst` from region `index` at `offset`. Bounds are checked by the server. Throws VfioUserError. */
  regionRead(index: number, offset: number, dst: Uint8Array): void;
  /** Apply `src` (a view of the receive buffer, valid only during the call). Throws VfioUserError. */
  regionWrite(index: number, offset: number, src: Uint8Array): void;
  /**
   * Throws VfioUserError. The server has checked the request against `irqs` with `irqSetViolation`
   * (src/spec/vfio.ts): flags, index and range, the fd count, and that DATA_EVENTFD goes with TRIGGER, or with
   * UNMASK on an AUTOMASKED interrupt (a resample eventfd). See `SetIrqsRequest.fds` for who closes the fds.
   */
  setIrqs(request: SetIrqsRequest): void;
  /** DEVICE_RESET; following messages wait until it settles. */
  reset(): Promise<void> | void;
  /** Called after each batch of received messages has been handled: the device processes doorbells then (interrupt coalescing point). */
  afterBatch(): void;
  /** The client went away: return to a clean power-on state, close eventfds; resolves when done. */
  disconnected(): Promise<void>;

  // Live upgrade (docs/restart.md). A device without these cannot be handed to a successor process.

  /**
   * Called once the server has stopped reading the client at a message boundary: stop starting new work, let work
   * in flight finish and deliver its results, stop every thread and watcher that would act for the client. Resolves
   * when the device is still; `snapshot` follows, or `resume` when the upgrade was abandoned.
   */
  quiesce?(): Promise<void>;
  /** Undoes `quiesce`: the upgrade failed and this process serves on. */
  resume?(): void;
  /**
   * The device's whole state as a JSON-able value (opaque to the server, with a version field of the device's own),
   * its fds added to `fds`. The device keeps its fds: this process goes on holding them until it exits. `live`: a
   * crash checkpoint (docs/restart.md), taken while the device serves, not quiesced.
   */
  snapshot?(fds: FdCollector, live?: boolean): unknown;
  /**
   * In the successor, on a device freshly built with the same options: takes on a predecessor's `snapshot`, fds
   * from `fds`. Must not act yet (no interrupt, no write to shared memory, no watcher): the predecessor may still
   * resume if the upgrade fails elsewhere. Throws when the state cannot be taken on.
   */
  restore?(state: unknown, fds: FdSource): void;
  /** After `restore`: the upgrade is committed, start serving. */
  start?(): void;
}

/**
 * Checks a device description once, when the server is created: a malformed description is a programming error
 * of the integrator and must fail loudly at start-up, not when a client first asks.
 */
export function validateDevice(device: VfioUserDevice, pageSize: number): void {
  const fail = (what: string): never => {
    throw new Error(`invalid vfio-user device description: ${what}`);
  };
  if (device.regions.length < 8 || device.regions.length > 100) {
    fail(`${device.regions.length} regions; QEMU accepts 8..100 (the config region is index 7)`);
  }
  if (device.irqs.length < 3 || device.irqs.length > 50) fail(`${device.irqs.length} irq types; QEMU accepts 3..50`);
  device.regions.forEach((region, index) => {
    if (!Number.isSafeInteger(region.size) || region.size < 0) fail(`region ${index} size ${region.size}`);
    if ((region.flags & ~(RegionFlag.READ | RegionFlag.WRITE | RegionFlag.MMAP | RegionFlag.CAPS)) !== 0) {
      fail(`region ${index} flags 0x${region.flags.toString(16)} (only READ, WRITE, MMAP and CAPS are defined)`);
    }
    if ((region.flags & RegionFlag.MMAP) !== 0 && !region.mmap) fail(`region ${index} has MMAP but no mmap fd`);
    const mmap = region.mmap;
    if (!mmap) return;
    if (region.size === 0) fail(`region ${index} is absent (size 0) but mmap-able`);
    if (!Number.isInteger(mmap.fd) || mmap.fd < 0) fail(`region ${index} mmap fd ${mmap.fd}`);
    if (!Number.isSafeInteger(mmap.fdOffset) || mmap.fdOffset < 0 || mmap.fdOffset % pageSize !== 0) {
      fail(`region ${index} mmap fdOffset ${mmap.fdOffset} (must be page aligned)`);
    }
    for (const area of mmap.areas ?? []) {
      if (
        !Number.isSafeInteger(area.offset) ||
        !Number.isSafeInteger(area.size) ||
        area.offset < 0 ||
        area.size <= 0 ||
        area.offset % pageSize !== 0 ||
        area.size % pageSize !== 0 ||
        area.offset + area.size > region.size
      ) {
        fail(`region ${index} sparse area ${area.offset}+${area.size} (page aligned, inside ${region.size} bytes)`);
      }
    }
  });
  device.irqs.forEach((irq, index) => {
    if (!Number.isInteger(irq.count) || irq.count < 0 || irq.count > 0xffffffff)
      fail(`irq ${index} count ${irq.count}`);
  });
}
