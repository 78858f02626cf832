/**
 * An NVMe controller dressed as a PCI Express function and exposed as a vfio-user device: the composition point of
 * the PCI model (src/pci), the NVMe controller (src/nvme) and the vfio-user device contract (src/vfio-user/device.ts).
 *
 * BAR0 (16 KiB): NVMe registers 0x0-0xFFF (trapped), doorbells 0x1000-0x1FFF. In polled mode the doorbell page is
 * shared memory (a memfd page offered as a sparse-mmap area) that the native poller watches; in interrupt mode it is
 * an ordinary buffer updated by trapped REGION_WRITEs. BAR4 holds the MSI-X table and PBA.
 */
import { performance } from 'node:perf_hooks';
import { native, PROT_READ, PROT_WRITE, type DoorbellPoller, type LoopTurn } from '../native/index.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { Namespace, NamespaceIds } from '../namespace/namespace.js';
import { NvmeController, type NvmeControllerState } from '../nvme/controller.js';
import type { ControllerIdentity } from '../nvme/identity.js';
import { PciFunction, PciAccessError } from '../pci/index.js';
import { DeviceFlag, IrqFlag, IrqIndex, RegionFlag } from '../spec/vfio.js';
import { Reg } from '../spec/nvme.js';
import type { PciFunctionState } from '../pci/function.js';
import { checkSnapshotVersion, type FdCollector, type FdSource } from '../util/handover-fds.js';
import {
  VfioUserError,
  type IrqInfo,
  type RegionInfo,
  type SetIrqsRequest,
  type VfioUserDevice,
} from '../vfio-user/device.js';
import { Logger, rootLogger } from '../util/log.js';
import type { ControllerConfig } from './config.js';

const NVME_CLASS_CODE = 0x010802;
const BAR0_SIZE = 0x4000;
const DOORBELL_OFFSET = 0x1000;
const DOORBELL_PAGE_SIZE = 0x1000;
const MSIX_BAR = 4;
/** How long the worker keeps polling the doorbell page itself after the last doorbell change. */
const POLL_SPIN_MS = 0.5;
/**
 * How often the busy worker asks whether the event loop has work (native.eventLoopHasWork: a ready socket or worker
 * message, a due timer, an immediate), and gives it a turn only then. A turn costs 8.7 µs on average here (an
 * epoll_wait, timers, Node's immediate queue, the way out of JavaScript and back) and a doorbell written meanwhile
 * waits for it; the check costs ~0.3 µs. A turn after every slice was 2,000-4,700 turns a second at QD1, and one of
 * the larger causes of the QD1 p99; asking first, 150-230 (docs/benchmarks.md). Messages and timers still wait at most
 * a slice.
 */
const POLL_SLICE_MS = 0.2;
/**
 * The loop turns at least this often while the worker polls, for what the check cannot see: microtasks (none are left
 * behind by a pass with no I/O in flight, as far as a review found; this is the safety net). A backend's completions
 * do not wait for it: a slice ends while I/O is in flight.
 */
const LOOP_TURN_MAX_GAP_MS = 5;
/**
 * Scans that find nothing read the clock only every this many times: a clock read (40-100 ns here) is most of an
 * empty scan, and the scan's length is how late a doorbell is seen (QD1 latency). The slice and idle checks run up
 * to this many scans late, and a pass's fetch time is that much early (its latency statistics, < 0.2 µs).
 */
const QUIET_SCANS_PER_CLOCK = 8;
/**
 * The native poller while the worker sleeps: no spinning (that would be a second core), sleeps from 1 µs up to
 * 50 µs, and after 100 ms without a doorbell up to 1 ms, so an idle controller costs ~1000 wake-ups a second
 * rather than ~20 000 (an I/O after a long pause waits up to 1 ms once).
 */
const POLLER_OPTIONS = { spinMicros: 0, maxSleepMicros: 50, idleAfterMicros: 100_000, idleSleepMicros: 1000 };
/**
 * Lost guest memory is looked for after every batch of work and, for work that ends outside a batch (an I/O
 * completion written into guest memory), this often: from a pass until a tick finds no I/O in flight and no pass
 * since the previous tick. An idle controller has no timer (it would wake its thread twice a second for nothing).
 */
const MEMORY_CHECK_INTERVAL_MS = 500;
/** CC (Controller Configuration) and its EN bit. */
const CC_OFFSET = Reg.CC;
const CC_EN = 1;

const DEVICE_STATE_VERSION = 1;

/** The device in a live-upgrade snapshot (opaque to the vfio-user layer); fds are snapshot indexes. */
export interface NvmePciDeviceState {
  version: number;
  doorbellMode: 'interrupt' | 'polled';
  /** Polled mode: the memfd behind BAR0 whose doorbell page the guest writes. */
  bar0Fd?: number;
  pci: PciFunctionState;
  nvme: NvmeControllerState;
}

export interface NvmePciDeviceOptions {
  config: ControllerConfig;
  memory: GuestMemory;
  namespaces: Array<{ namespace: Namespace; ids: NamespaceIds }>;
  identity: ControllerIdentity;
  logger?: Logger;
  /**
   * Polled mode in a live-upgrade successor: the predecessor's BAR0 memfd (the guest has its doorbell page mapped),
   * instead of a new one. See `NvmePciDevice.bar0FdOf`.
   */
  bar0Fd?: number;
  /**
   * Crash recovery, interrupt mode: the doorbell page lives in the checkpoint memfd, so it outlives the process.
   * `doorbellPageKept`: it is a predecessor's, newer than the snapshot's copy (restore leaves it alone).
   */
  doorbellPage?: Uint32Array;
  doorbellPageKept?: boolean;
}

export class NvmePciDevice implements VfioUserDevice {
  readonly flags = DeviceFlag.RESET | DeviceFlag.PCI;
  readonly regions: readonly RegionInfo[];
  readonly irqs: readonly IrqInfo[];
  readonly controller: NvmeController;
  readonly pci: PciFunction;

  /** The vfio-user client being served (its id in the server's log lines), for log lines of the device. */
  client: number | undefined;

  private readonly logger: Logger;
  private readonly memory: GuestMemory;
  /** native.memoryFaultCount() at the last look: lost guest pages anywhere in the process. */
  private memoryFaultsSeen = native.memoryFaultCount();
  /** A DMA mapping of this client lost pages; the controller fails again after every reset while it is mapped. */
  private memoryLost = false;
  /** Runs while work may end outside a pass (see MEMORY_CHECK_INTERVAL_MS). */
  private memoryCheckTimer: NodeJS.Timeout | undefined;
  /** A pass ran since the memory check timer's last tick. */
  private passSinceTick = false;
  /**
   * Bumped after every processing pass this device runs (one store; shared memory). The daemon's stats sampler reads
   * it without waking this thread: when it has not moved and nothing was in flight at the last sample, the counters
   * cannot have changed.
   */
  readonly activity = new Int32Array(new SharedArrayBuffer(4));
  private unmapTimer: NodeJS.Timeout | undefined;
  /** Polled mode only: the memfd behind BAR0, its mapped doorbell page, and the poller watching it. */
  private readonly doorbellFd: number | undefined;
  private readonly doorbellPage: ArrayBuffer | undefined;
  private poller: DoorbellPoller | undefined;
  /** Polled mode: how the busy worker lets the event loop turn between slices (native.createLoopTurn). */
  private loopTurn: LoopTurn | undefined;

  /** Guest memory regions the client has mapped (DMA_MAP minus DMA_UNMAP), for metrics. */
  get dmaMappings(): number {
    return this.memory.regions.length;
  }

  constructor(options: NvmePciDeviceOptions) {
    const { config } = options;
    this.logger = (options.logger ?? rootLogger).child({ component: 'nvme-pci', socket: config.socketPath });
    this.memory = options.memory;

    let doorbells: Uint32Array;
    if (config.doorbellMode === 'polled') {
      // Sealed: the client gets this fd and must not be able to shrink it under our mapping (SIGBUS).
      this.doorbellFd = options.bar0Fd ?? native.memfdCreate('vfiod-bar0', BAR0_SIZE, true);
      this.doorbellPage = native.mmap(this.doorbellFd, DOORBELL_OFFSET, DOORBELL_PAGE_SIZE, PROT_READ | PROT_WRITE);
      doorbells = new Uint32Array(this.doorbellPage);
    } else {
      doorbells = options.doorbellPage ?? new Uint32Array(DOORBELL_PAGE_SIZE / 4);
    }
    this.doorbellPageKept = options.doorbellPageKept === true;

    this.pci = new PciFunction({
      ...config.pci,
      revisionId: 0,
      classCode: NVME_CLASS_CODE,
      msix: { vectors: config.msixVectors, bar: MSIX_BAR },
      interruptPin: 1,
      bars: [
        {
          index: 0,
          size: BAR0_SIZE,
          is64Bit: true,
          read: (offset, dst) => this.controller.bar0Read(offset, dst),
          write: (offset, src) => this.bar0Write(offset, src),
          ...(this.doorbellFd !== undefined
            ? { mmap: { fd: this.doorbellFd, fdOffset: 0, areas: [{ offset: DOORBELL_OFFSET, size: DOORBELL_PAGE_SIZE }] } }
            : {}),
        },
      ],
      onFunctionLevelReset: () => {
        this.logger.info('function level reset');
        void this.controller.reset();
        this.syncPoller();
      },
      logger: this.logger,
    });

    this.controller = new NvmeController({
      dma: options.memory,
      namespaces: options.namespaces,
      // Identify's VID/SSVID must match config space.
      identity: { ...options.identity, pciVendorId: config.pci.vendorId, pciSubsystemVendorId: config.pci.subsystemVendorId },
      interrupts: this.pci,
      doorbells,
      // Interrupt mode: the page is our own buffer, written only through trapped BAR0 writes.
      doorbellsShared: this.doorbellFd !== undefined,
      maxIoQueuePairs: config.maxIoQueuePairs,
      maxQueueEntries: config.maxQueueEntries,
      mdtsPages: config.mdtsPages,
      ...(config.ioAbandonMs !== undefined ? { ioAbandonMs: config.ioAbandonMs } : {}),
      ...(config.ioLimits !== undefined ? { ioLimits: config.ioLimits } : {}),
      logger: this.logger,
    });
    // A DMA_UNMAP waiting for I/O in flight: after ioAbandonMs the controller gives up what it can, so the unmap is
    // answered in bounded time whatever the backend does (a silent NVMe/TCP target).
    this.memory.onPinnedRemoval = () => {
      if (this.unmapTimer !== undefined) return;
      this.unmapTimer = setTimeout(() => {
        this.unmapTimer = undefined;
        this.controller.giveUpIoInRemovedMemory();
      }, this.controller.ioAbandonMs);
      this.unmapTimer.unref();
    };

    this.regions = this.pci.regions.map((region): RegionInfo => {
      let flags = (region.readable ? RegionFlag.READ : 0) | (region.writable ? RegionFlag.WRITE : 0);
      if (region.mmap) flags |= RegionFlag.MMAP | (region.mmap.areas ? RegionFlag.CAPS : 0);
      return { size: region.size, flags, ...(region.mmap ? { mmap: region.mmap } : {}) };
    });
    this.irqs = this.pci.irqCounts.map((count, index): IrqInfo => {
      if (count === 0) return { count: 0, flags: 0 };
      if (index === IrqIndex.INTX) return { count, flags: IrqFlag.EVENTFD | IrqFlag.MASKABLE | IrqFlag.AUTOMASKED };
      return { count, flags: IrqFlag.EVENTFD | IrqFlag.NORESIZE };
    });

    this.doorbellMode = config.doorbellMode;
    this.maxIoQueuePairs = config.maxIoQueuePairs;
    // A successor's device (bar0Fd given) starts its poller only when the upgrade is committed (start()).
    if (this.doorbellPage && options.bar0Fd === undefined) this.startPoller(this.doorbellPage, config.maxIoQueuePairs);
  }

  private readonly doorbellMode: 'interrupt' | 'polled';
  private readonly maxIoQueuePairs: number;
  private readonly doorbellPageKept: boolean;
  private quiesced = false;
  /**
   * Polled mode: CC.EN as the host last wrote it. While it is 0 there are no queues and the native poller sleeps
   * without a timeout (paused) instead of waking 1000 times a second; it watches the page again from the CC write
   * that sets EN (the only way from 0 to 1 besides a restored snapshot).
   */
  private hostEnabled = false;
  private readonly ccBytes = new Uint8Array(4);

  /** Whether a REGION_WRITE at `offset` of `region` is a doorbell write (it changes only the doorbell page). */
  static isDoorbellWrite(region: number, offset: number): boolean {
    return region === 0 && offset >= DOORBELL_OFFSET && offset < DOORBELL_OFFSET + DOORBELL_PAGE_SIZE;
  }

  /** Polled mode: the memfd behind BAR0 (crash recovery has the holder keep it). */
  get bar0Fd(): number | undefined {
    return this.doorbellFd;
  }

  /** The BAR0 memfd a snapshot names (polled mode), to build the successor's device with (`bar0Fd`). */
  static bar0FdOf(state: unknown, fds: FdSource): number | undefined {
    const index = (state as Partial<NvmePciDeviceState> | undefined)?.bar0Fd;
    return index === undefined ? undefined : fds.take(index);
  }

  // ---- live upgrade (VfioUserDevice) ----

  async quiesce(): Promise<void> {
    this.quiesced = true;
    // No more doorbell wake-ups: the guest's doorbell writes wait in the shared page for whoever serves next.
    this.poller?.stop();
    this.pci.quiesce();
    await this.controller.quiesce();
  }

  resume(): void {
    if (!this.quiesced) return;
    this.quiesced = false;
    this.pci.resumeWatching();
    this.controller.resume();
    this.poller?.start();
  }

  snapshot(fds: FdCollector, live = false): NvmePciDeviceState {
    return {
      version: DEVICE_STATE_VERSION,
      doorbellMode: this.doorbellMode,
      ...(this.doorbellFd !== undefined ? { bar0Fd: fds.add(this.doorbellFd) } : {}),
      pci: this.pci.snapshot(fds),
      nvme: this.controller.snapshot(live),
    };
  }

  restore(state: unknown, fds: FdSource): void {
    const saved = state as NvmePciDeviceState;
    checkSnapshotVersion(saved, 'NVMe PCI device state', DEVICE_STATE_VERSION);
    if (saved.doorbellMode !== this.doorbellMode) {
      throw new Error(`snapshot: the controller ran with ${saved.doorbellMode} doorbells, this one is configured for ${this.doorbellMode} (--poll must stay the same)`);
    }
    if (saved.bar0Fd !== undefined && fds.take(saved.bar0Fd) !== this.doorbellFd) {
      throw new Error('snapshot: the device was not built on the snapshot\'s BAR0 memfd');
    }
    this.pci.restore(saved.pci, fds);
    this.controller.restore(saved.nvme, { doorbellPageKept: this.doorbellPageKept });
    this.quiesced = true;
    this.syncPoller();
  }

  start(): void {
    if (this.doorbellPage && !this.poller) this.startPoller(this.doorbellPage, this.maxIoQueuePairs);
    this.resume();
  }

  // regionRead / regionWrite translate errors inline rather than through translateErrors: they run for every
  // trapped access (every doorbell write in interrupt mode), and a closure per call is measurable there.
  regionRead(index: number, offset: number, dst: Uint8Array): void {
    try {
      this.pci.regionRead(index, offset, dst);
    } catch (error) {
      throw translatedError(error);
    }
  }

  regionWrite(index: number, offset: number, src: Uint8Array): void {
    try {
      this.pci.regionWrite(index, offset, src);
    } catch (error) {
      throw translatedError(error);
    }
  }

  setIrqs(request: SetIrqsRequest): void {
    this.translateErrors(() =>
      this.pci.setIrqs(request.index, request.flags, request.start, request.count, request.fds, request.bools),
    );
  }

  async reset(): Promise<void> {
    const done = this.controller.reset();
    this.syncPoller();
    await done;
    this.pci.reset();
  }

  afterBatch(): void {
    this.controller.processQueues();
    this.checkGuestMemory();
    this.afterPass();
  }

  async disconnected(): Promise<void> {
    const done = this.controller.reset();
    this.syncPoller();
    await done;
    this.pci.reset();
    this.pci.releaseInterrupts();
    if (this.doorbellPage) new Uint32Array(this.doorbellPage).fill(0);
  }

  /** Stops the poller and releases the doorbell memory; the device is unusable afterwards. */
  close(): void {
    clearInterval(this.memoryCheckTimer);
    this.memoryCheckTimer = undefined;
    clearTimeout(this.unmapTimer);
    this.memory.onPinnedRemoval = undefined;
    this.poller?.close();
    this.poller = undefined;
    this.loopTurn?.close();
    this.loopTurn = undefined;
    if (this.doorbellPage && native.isMapped(this.doorbellPage)) native.munmap(this.doorbellPage);
    if (this.doorbellFd !== undefined) native.close(this.doorbellFd);
    this.pci.releaseInterrupts();
  }

  /**
   * Polled doorbells, handed over between two pollers so that only one of them runs at a time:
   * - busy: this thread polls the page itself, in slices of `POLL_SLICE_MS` (an I/O that arrives during a slice is
   *   picked up within a scan, not a loop turn). Between slices it gives the loop a turn (`loopTurn`) when the loop
   *   has work (sockets, timers, messages), at least every `LOOP_TURN_MAX_GAP_MS`, and at once while backend I/O is
   *   in flight, whose completions come through the loop. The native poller is paused meanwhile.
   * - idle (no doorbell change for `POLL_SPIN_MS`): this thread resumes the native poller and sleeps in the event
   *   loop; the poller wakes it through libuv when the guest rings again.
   * Both used to run at once. On one server core the poller's short sleeps then won the core for 100-200 µs at a
   * time while this thread held the I/O: QD1 p99 ~140 µs (docs/benchmarks.md). Busy, the controller costs this
   * one thread; idle, only the poller's back-off.
   */
  private startPoller(page: ArrayBuffer, maxIoQueuePairs: number): void {
    const consumed = this.controller.consumedDoorbells;
    this.poller = native.createDoorbellPoller(page, consumed, POLLER_OPTIONS, this.onDoorbellWake);
    this.loopTurn = native.createLoopTurn(this.spin);
    this.poller.setWordCount(Math.min(consumed.length, 2 * (maxIoQueuePairs + 1)));
    this.poller.start();
    this.syncPoller();
  }

  /**
   * BAR0 writes go to the controller. Polled mode: a write that covers CC decides whether the native poller watches
   * the doorbell page (CC.EN 1) or sleeps (CC.EN 0).
   */
  private bar0Write(offset: number, src: Uint8Array): void {
    if (this.poller === undefined || offset >= CC_OFFSET + 4 || offset + src.length <= CC_OFFSET) {
      this.controller.bar0Write(offset, src);
      return;
    }
    // What the poller would have done while it slept: a disabled controller takes doorbell writes as ignored (and
    // so does not see them as new once enabled).
    if (!this.hostEnabled) this.controller.pollDoorbells();
    this.controller.bar0Write(offset, src);
    this.syncPoller();
  }

  /** Polled mode: pauses the native poller while CC.EN is 0, lets it watch (unless this thread polls) while 1. */
  private syncPoller(): void {
    if (this.poller === undefined) return;
    this.controller.bar0Read(CC_OFFSET, this.ccBytes);
    this.hostEnabled = (this.ccBytes[0]! & CC_EN) !== 0;
    if (!this.hostEnabled) this.poller.pause();
    else if (!this.spinning) this.poller.resume();
  }

  /** The worker stops polling: the native poller watches again, if there is anything to watch. */
  private handBack(poller: DoorbellPoller | undefined): void {
    if (this.hostEnabled) poller?.resume();
  }

  /**
   * After a processing pass: counts it for the stats sampler (`activity`) and keeps the memory check running while
   * work may still end outside a pass.
   */
  private afterPass(): void {
    this.activity[0] = (this.activity[0]! + 1) | 0;
    this.passSinceTick = true;
    if (this.memoryCheckTimer === undefined) this.memoryCheckTimer = setInterval(this.memoryTick, MEMORY_CHECK_INTERVAL_MS).unref();
  }

  private readonly memoryTick = (): void => {
    this.checkGuestMemory();
    if (this.passSinceTick || this.controller.ioInFlight > 0) {
      this.passSinceTick = false;
      return;
    }
    clearInterval(this.memoryCheckTimer);
    this.memoryCheckTimer = undefined;
  };

  private spinning = false;
  private lastDoorbellAt = 0;

  private readonly onDoorbellWake = (): void => {
    if (this.quiesced) return;
    if (this.spinning) {
      // A wake-up sent just before the pause took effect: the slices already poll.
      this.pollOnce();
      return;
    }
    this.spinning = true;
    this.poller?.pause();
    this.lastDoorbellAt = performance.now();
    this.spin();
  };

  private readonly spin = (): void => {
    const { poller, loopTurn } = this;
    if (poller === undefined || loopTurn === undefined || this.quiesced) {
      this.spinning = false;
      // Hand the page back (a pause survives stop/start): a live upgrade that fails resumes a poller that watches.
      this.handBack(poller);
      return;
    }
    const controller = this.controller;
    // The clock: the pass's own end reading when a pass ran (it also stands for the next pass's fetch time), else a
    // fresh one every QUIET_SCANS_PER_CLOCK scans.
    let now = performance.now();
    const turnDue = now + LOOP_TURN_MAX_GAP_MS;
    let sliceEnd = now + POLL_SLICE_MS;
    // Every word of the page once per slice (a write to a queue that does not exist must be taken and reported),
    // the live queues' words on the other scans.
    let all = true;
    let worked = false;
    let quietScans = 0;
    for (;;) {
      if (controller.pollDoorbells(all)) {
        const end = controller.processQueues(now);
        now = end === end ? end : performance.now(); // NaN: the pass read no clock
        this.lastDoorbellAt = now;
        worked = true;
        quietScans = 0;
      } else if (++quietScans === QUIET_SCANS_PER_CLOCK) {
        quietScans = 0;
        now = performance.now();
      }
      all = false;
      const idle = now - this.lastDoorbellAt >= POLL_SPIN_MS;
      if (!idle && now < sliceEnd && controller.ioInFlight === 0) continue;
      // The end of a slice. Lost guest memory is looked for once per slice that did work (not per pass: a native
      // call each).
      if (worked) {
        this.checkGuestMemory();
        this.afterPass();
        worked = false;
      }
      if (idle) {
        // The native poller watches again. A doorbell written since the last scan differs from consumedDoorbells,
        // so its first scan reports it.
        this.spinning = false;
        this.handBack(poller);
        return;
      }
      if (controller.ioInFlight > 0 || now >= turnDue || native.eventLoopHasWork()) break;
      sliceEnd = now + POLL_SLICE_MS;
      all = true;
    }
    loopTurn.request();
  };

  /** Takes new doorbell values and, when there were any, runs a processing pass. Returns whether there were. */
  private pollOnce(): boolean {
    if (!this.controller.pollDoorbells()) return false;
    this.controller.processQueues();
    this.checkGuestMemory();
    this.afterPass();
    return true;
  }

  /**
   * Fails the controller (CSTS.CFS) when the client shrank the file behind one of its DMA mappings and we touched a
   * lost page. The native guard turned that SIGBUS into a zero-filled page and counted it (docs/native.md), so the
   * access completed with garbage: nothing this controller did since can be trusted. Other controllers and the
   * process are unaffected. Cheap when nothing faulted: one native call comparing a process-wide counter.
   */
  private checkGuestMemory(): void {
    const total = native.memoryFaultCount();
    if (total === this.memoryFaultsSeen && !this.memoryLost) return;
    this.memoryFaultsSeen = total;
    let lost: { iova: number; count: number } | undefined;
    // Every window of every mapping that has been mmapped (src/memory/guest-memory.ts); windows not used yet are empty.
    for (const window of this.memory.windows) {
      const { bytes } = window;
      if (bytes.byteLength === 0 || !(bytes.buffer instanceof ArrayBuffer)) continue;
      const fault = native.mappingFault(bytes.buffer);
      if (fault) {
        lost = { iova: window.iova + fault.offset - bytes.byteOffset, count: fault.count };
        break;
      }
    }
    this.memoryLost = lost !== undefined;
    if (!lost) return;
    const region = this.memory.overlapping(lost.iova, 1);
    const mapping = region ? ` (iova 0x${region.iova.toString(16)}, size 0x${region.size.toString(16)})` : '';
    this.controller.fail(
      `guest memory lost at iova 0x${lost.iova.toString(16)}: the client shrank the file behind its DMA mapping${mapping}`,
      { client: this.client, iova: '0x' + lost.iova.toString(16), lostPageFaults: lost.count },
    );
  }


  private translateErrors(access: () => void): void {
    try {
      access();
    } catch (error) {
      throw translatedError(error);
    }
  }
}

/** A PCI access error as the vfio-user error (errno) the client gets; anything else unchanged. */
function translatedError(error: unknown): unknown {
  return error instanceof PciAccessError ? new VfioUserError(error.errno, error.message) : error;
}
