/**
 * The emulated NVMe controller (NVMe 1.4 over PCIe): registers, admin and I/O queues in guest memory, doorbells
 * (trapped, polled, and shadow doorbells with EventIdx), asynchronous events, interrupts and controller resets.
 * It knows guest memory only through DmaSpace, namespaces only through the Namespace contract, interrupts only
 * through InterruptSink; the I/O command set itself lives in io.ts.
 *
 * Flow control: fetching a command reserves a slot in its completion queue, so a completion can always be posted
 * when the command finishes and an unconsumed CQE is never overwritten. A queue whose CQ has no unreserved slot
 * waits until the host advances the CQ head.
 */
import { performance } from 'node:perf_hooks';
import { DmaError, type DmaMapping, type DmaSpace } from '../memory/guest-memory.js';
import type { Namespace } from '../namespace/namespace.js';
import { Logger, rootLogger } from '../util/log.js';
import { AdminCommandHandler, DEFERRED, type AdminHost, type AdminResult, type NamespaceEntry } from './admin.js';
import { AsyncEventConfig, FeatureState } from './features.js';
import { ASYNC_EVENT_REQUEST_LIMIT, COMPOSITE_TEMPERATURE_K, type ControllerIdentifyInfo } from './identify.js';
import { resolveControllerIdentity, type ControllerIdentity, type ResolvedControllerIdentity } from './identity.js';
import { executeIoCommand } from './io.js';
import type { IoContext, IoDone, IoRequest, SmartCounters } from './io-types.js';
import { ChangedNamespaceList, CriticalWarning, ErrorLog, NO_PARAMETER_LOCATION, type SmartLogInfo } from './log-pages.js';
import { CompletionQueue, ShadowDoorbells, SubmissionQueue } from './queues.js';
import {
  Cc,
  ccField,
  ControllerRegisters,
  Csts,
  IO_CQ_ENTRY_SIZE_LOG2,
  IO_SQ_ENTRY_SIZE_LOG2,
  isWritable32,
  isWritable64,
  MAX_ADMIN_QUEUE_ENTRIES,
  MIN_ADMIN_QUEUE_ENTRIES,
  REGISTER_BLOCK_SIZE,
  ShutdownNotification,
  ShutdownStatus,
} from './registers.js';
import { LatencyHistogram, type ControllerState, type NvmeControllerStats } from './stats.js';
import { AdminOpcode, AsyncEvent, IoOpcode, LogPageId, PAGE_SIZE, Reg, SQE_SIZE, Status } from './spec.js';

export type { NvmeControllerStats } from './stats.js';

export interface InterruptSink {
  /** Signal MSI-X vector `vector` (or INTx when MSI-X is off: vector 0). Called at most once per vector per batch. */
  signal(vector: number): void;
  /** True when MSI-X is enabled by the guest; otherwise the controller applies INTMS/INTMC masking to INTx. */
  msixEnabled(): boolean;
  /** Number of MSI-X vectors the function has (Create I/O CQ with IV >= this fails with INVALID_INTERRUPT_VECTOR). */
  readonly vectorCount: number;
}

export interface NvmeControllerOptions {
  dma: DmaSpace;
  /** NSID = index + 1. */
  namespaces: NamespaceEntry[];
  identity: ControllerIdentity;
  interrupts: InterruptSink;
  /**
   * The doorbell page: 4096 bytes = 1024 u32 doorbells at BAR0 0x1000 (stride 4). Owned by the caller: in polled
   * mode it is shared memory the guest writes directly.
   */
  doorbells: Uint32Array;
  /**
   * Whether anything but bar0Write changes `doorbells` (polled mode: the guest writes the page directly). Default
   * true. With false the page is private to the controller, so processing a batch skips the scan for changed words
   * (bar0Write takes each doorbell as it is written and can leave nothing behind for the scan to find).
   */
  doorbellsShared?: boolean;
  /** Default 31, at most 511 (1024 doorbells). */
  maxIoQueuePairs?: number;
  /** CAP.MQES + 1: default 1024, at most 65536. */
  maxQueueEntries?: number;
  /** MDTS as log2 of 4 KiB pages, default 8 (1 MiB); 0 = unlimited. Lowered to what the namespaces accept. */
  mdtsPages?: number;
  logger?: Logger;
}

const DOORBELL_BASE = Reg.DOORBELLS;
const DOORBELL_COUNT = 1024;
const DOORBELL_END = DOORBELL_BASE + DOORBELL_COUNT * 4;
const MAX_IO_QUEUE_PAIRS = DOORBELL_COUNT / 2 - 1;
const MAX_QUEUE_ENTRIES = 65536;
/** MDTS above 2^20 pages (4 GiB) is beyond anything a data pointer may describe. */
const MAX_MDTS = 20;
/** Commands fetched per processQueues call before the rest is left to a later turn of the event loop. */
const BATCH_COMMAND_BUDGET = 1024;
/** Admin data transfers are capped even when MDTS is unlimited: no admin page we serve is anywhere near this. */
const ADMIN_TRANSFER_CAP = 1 << 20;
/** Error log SQID / CID when the error is not tied to a command (or, for SQID, to a submission queue). */
const NO_COMMAND = 0xffff;
/** SMART / Health asynchronous event information: temperature threshold. */
const SMART_INFO_TEMPERATURE_THRESHOLD = 0x01;

/**
 * The controller's IoContext. A class rather than an object literal: a literal with a getter is a dictionary-mode
 * object in V8, and every `ctx.x` of every I/O command would then be a generic property lookup.
 */
class ControllerIoContext implements IoContext {
  constructor(
    readonly dma: DmaSpace,
    private readonly entries: readonly NamespaceEntry[],
    private readonly namespaceList: readonly Namespace[],
    readonly maxTransferBytes: number,
    readonly counters: SmartCounters,
    private readonly features: FeatureState,
    readonly logger: Logger,
  ) {}

  namespace(nsid: number): Namespace | undefined {
    return nsid >= 1 && nsid <= this.entries.length ? this.entries[nsid - 1]!.namespace : undefined;
  }

  allNamespaces(): readonly Namespace[] {
    return this.namespaceList;
  }

  /** The Volatile Write Cache feature as it is now: Set Features changes it between commands. */
  get writeCacheEnabled(): boolean {
    return this.features.volatileWriteCache;
  }
}

/** An I/O command slot: the core owns and reuses these (no allocation per command). */
class PooledRequest implements IoRequest {
  readonly sqe = new DataView(new ArrayBuffer(SQE_SIZE));
  /** The same 64 bytes as `sqe`, for the word-by-word SQE copy. */
  readonly sqeWords = new Int32Array(this.sqe.buffer);
  readonly segments: Uint8Array[] = [];
  readonly pinned: DmaMapping[] = [];
  result = 0;
  sq: SubmissionQueue | undefined = undefined;
  commandId = 0;
  opcode = 0;
  /** Controller generation at fetch; a reset bumps it so completions of abandoned commands are discarded. */
  generation = 0;
  startedAt = 0;
  active = false;
}

interface PendingEvent {
  type: number;
  info: number;
  logPage: number;
}

/** setTimeout's limit; longer keep-alive timeouts (KATO is 32 bits of ms) are checked again when it fires. */
const MAX_TIMER_MILLIS = 2 ** 31 - 1;

export class NvmeController {
  static readonly BAR0_SIZE = 0x4000;

  private readonly dma: DmaSpace;
  private readonly namespaces: readonly NamespaceEntry[];
  private readonly identity: ResolvedControllerIdentity;
  private readonly interrupts: InterruptSink;
  private readonly doorbells: Uint32Array;
  private readonly doorbellsShared: boolean;
  /**
   * The value last taken from each doorbell word. A word of `doorbells` that differs from its entry here is a write
   * not yet acted on; in polled mode the native poller compares the shared page with this array, so a doorbell that
   * returns to an earlier value (a 2-entry queue's tail going 0, 1, 0) is never missed.
   */
  readonly consumedDoorbells: Uint32Array;
  private readonly maxIoQueuePairs: number;
  private readonly maxQueueEntries: number;
  private readonly mdts: number;
  private readonly maxTransferBytes: number;
  private readonly vectorCount: number;
  private readonly logger: Logger;

  private readonly registers: ControllerRegisters;
  private readonly features: FeatureState;
  private readonly errorLog = new ErrorLog();
  private readonly changedNamespaces = new ChangedNamespaceList();
  private readonly counters: SmartCounters = {
    bytesRead: 0,
    bytesWritten: 0,
    hostReadCommands: 0,
    hostWriteCommands: 0,
    busyMillis: 0,
    mediaErrors: 0,
    errorLogEntries: 0,
  };
  private readonly ioContext: IoContext;
  private readonly admin: AdminCommandHandler;
  private readonly identifyInfo: ControllerIdentifyInfo;

  /** Queues by id (index 0 = admin). */
  private readonly submissionQueues: Array<SubmissionQueue | undefined>;
  private readonly completionQueues: Array<CompletionQueue | undefined>;
  /** Live queues in creation order, for scans and round-robin arbitration. */
  private submissionList: SubmissionQueue[] = [];
  private completionList: CompletionQueue[] = [];
  private roundRobin = 0;
  private shadow: ShadowDoorbells | undefined;
  private ioQueuesCreated = false;

  /** Fetching is allowed: enabled, ready, no fatal status, no shutdown requested. */
  private active = false;
  /** A controller reset waits for abandoned I/O before CSTS.RDY clears and a new enable can start. */
  private draining = false;
  private readonly drainWaiters: Array<() => void> = [];
  private generation = 0;
  private processing = false;
  private processScheduled = false;
  /** The controller was enabled and has not completed a shutdown since (a reset now counts as unsafe). */
  private unsafeIfReset = false;

  private readonly adminSqe = new DataView(new ArrayBuffer(SQE_SIZE));
  private readonly adminResult: AdminResult = { status: 0, dw0: 0 };
  private readonly requestPool: PooledRequest[] = [];
  private inFlight = 0;
  private busySince = 0;
  /** The last clock reading (performance.now) of the current processing pass; see executeIo. */
  private clock = 0;
  /** `clock` was read by a synchronous completion just now, in this processing pass. */
  private clockFresh = false;

  private readonly asyncEventCommands: number[] = [];
  private readonly pendingEvents: PendingEvent[] = [];
  /** Bit per event type: reported and not yet cleared by reading its log page. */
  private maskedEventTypes = 0;
  private temperatureWarningReported = false;

  private keepAliveTimer: NodeJS.Timeout | undefined;
  private lastKeepAlive = 0;

  private readonly pendingVectorFlags: Uint8Array;
  private readonly pendingVectors: Uint16Array;
  private pendingVectorCount = 0;
  private interruptFlushScheduled = false;

  private readonly latency = new LatencyHistogram();
  private readonly commandCounts = { admin: 0, read: 0, write: 0, otherIo: 0, failed: 0 };
  private resets = 0;
  private unsafeShutdowns = 0;
  private invalidDoorbellWrites = 0;
  private readonly createdAt = Date.now();

  constructor(options: NvmeControllerOptions) {
    this.logger = (options.logger ?? rootLogger).child({ component: 'nvme' });
    this.dma = options.dma;
    this.identity = resolveControllerIdentity(options.identity);
    this.interrupts = options.interrupts;
    this.maxIoQueuePairs = checkOption('maxIoQueuePairs', options.maxIoQueuePairs ?? 31, 1, MAX_IO_QUEUE_PAIRS);
    this.maxQueueEntries = checkOption('maxQueueEntries', options.maxQueueEntries ?? 1024, 2, MAX_QUEUE_ENTRIES);
    const doorbells = options.doorbells;
    if (!(doorbells instanceof Uint32Array) || doorbells.length < 2 * (this.maxIoQueuePairs + 1)) {
      throw new Error(
        `NVMe controller: doorbells must be a Uint32Array of at least ${2 * (this.maxIoQueuePairs + 1)} words ` +
          `(${DOORBELL_COUNT} for a full page)`,
      );
    }
    this.doorbells = doorbells;
    this.doorbellsShared = options.doorbellsShared ?? true;
    this.consumedDoorbells = new Uint32Array(2 * (this.maxIoQueuePairs + 1));
    const vectorCount = options.interrupts.vectorCount;
    if (!Number.isInteger(vectorCount) || vectorCount < 0 || vectorCount > 2048) {
      throw new Error(`NVMe controller: interrupt vectorCount ${String(vectorCount)} must be an integer in 0..2048`);
    }
    // INTx counts as vector 0, so there is always at least one.
    this.vectorCount = Math.max(1, vectorCount);
    this.namespaces = options.namespaces.map((entry, index) => validateNamespaceEntry(entry, index + 1));
    this.mdts = effectiveMdts(checkOption('mdtsPages', options.mdtsPages ?? 8, 0, MAX_MDTS), this.namespaces);
    this.maxTransferBytes = this.mdts === 0 ? 0 : PAGE_SIZE * 2 ** this.mdts;

    this.registers = new ControllerRegisters({ maxQueueEntries: this.maxQueueEntries });
    const volatileWriteCache = this.namespaces.some((entry) => entry.namespace.volatileWriteCache);
    this.features = new FeatureState({
      maxIoQueuePairs: this.maxIoQueuePairs,
      vectorCount: this.vectorCount,
      volatileWriteCachePresent: volatileWriteCache,
    });
    this.identifyInfo = {
      identity: this.identity,
      mdts: this.mdts,
      namespaceCount: this.namespaces.length,
      maxQueueEntries: this.maxQueueEntries,
      volatileWriteCache,
    };
    this.submissionQueues = new Array<SubmissionQueue | undefined>(this.maxIoQueuePairs + 1).fill(undefined);
    this.completionQueues = new Array<CompletionQueue | undefined>(this.maxIoQueuePairs + 1).fill(undefined);
    this.pendingVectorFlags = new Uint8Array(this.vectorCount);
    this.pendingVectors = new Uint16Array(this.vectorCount);

    this.ioContext = new ControllerIoContext(
      this.dma,
      this.namespaces,
      this.namespaces.map((entry) => entry.namespace),
      this.maxTransferBytes,
      this.counters,
      this.features,
      this.logger,
    );
    this.admin = new AdminCommandHandler(this.adminHost());
  }

  /**
   * BAR0 read (trapped MMIO) of any size and alignment. Registers read from a little-endian image, so a partial or
   * unaligned read sees the bytes it covers; doorbells are write-only and read as zero, as does everything past them.
   */
  bar0Read(offset: number, dst: Uint8Array): void {
    if (!Number.isInteger(offset) || offset < 0 || offset + dst.length > NvmeController.BAR0_SIZE) {
      this.logger.debug('BAR0 read outside the BAR ignored', { offset, length: dst.length });
      dst.fill(0);
      return;
    }
    if (offset < REGISTER_BLOCK_SIZE) this.registers.read(offset, dst);
    else dst.fill(0);
  }

  /**
   * BAR0 write (trapped MMIO). Registers take aligned 4-byte writes (and aligned 8-byte writes to ASQ / ACQ);
   * doorbells take aligned 4-byte writes. Anything else is ignored with a debug log line.
   */
  bar0Write(offset: number, src: Uint8Array): void {
    if (!Number.isInteger(offset) || offset < 0 || offset + src.length > NvmeController.BAR0_SIZE) {
      this.logger.debug('BAR0 write outside the BAR ignored', { offset, length: src.length });
      return;
    }
    const aligned = src.length === 4 && offset % 4 === 0;
    if (offset >= DOORBELL_BASE && offset < DOORBELL_END) {
      if (aligned) this.doorbellWrite((offset - DOORBELL_BASE) >>> 2, readUint32(src, 0));
      else this.logger.debug('doorbell write of wrong size or alignment ignored', { offset, length: src.length });
      return;
    }
    if (offset >= REGISTER_BLOCK_SIZE) return; // reserved space after the doorbells
    if (aligned && isWritable32(offset)) {
      this.writeRegister(offset, readUint32(src, 0));
    } else if (src.length === 8 && offset % 8 === 0 && isWritable64(offset)) {
      this.writeRegister(offset, readUint32(src, 0));
      this.writeRegister(offset + 4, readUint32(src, 4));
    } else {
      this.logger.debug('register write ignored', { offset, length: src.length });
    }
  }

  /**
   * Polled mode: the guest wrote `doorbells` directly. Takes every doorbell word that differs from
   * `consumedDoorbells` (writes to queues that do not exist raise an Invalid Doorbell Register event).
   * Returns whether any doorbell had a new value.
   */
  pollDoorbells(): boolean {
    let taken = false;
    if (this.active) {
      try {
        if (!this.shadow || this.resolveShadow()) taken = this.refreshDoorbells();
      } catch (error) {
        this.fail('internal error while scanning doorbells', { error });
      }
    }
    // A disabled, shut-down or failed controller ignores doorbell writes. Recording them as consumed keeps the
    // poller from waking us for the same values again and again (it compares the page with consumedDoorbells).
    if (!this.active) this.ignoreDoorbells();
    return taken;
  }

  private ignoreDoorbells(): void {
    const words = Math.min(this.doorbells.length, this.consumedDoorbells.length);
    this.consumedDoorbells.set(this.doorbells.subarray(0, words));
  }

  /** Process pending submissions; each interrupt vector with new completions is signalled once per call. */
  processQueues(): void {
    if (!this.active || this.processing) return;
    this.processing = true;
    try {
      this.runQueues();
    } catch (error) {
      this.fail('internal error while processing queues', { error });
    } finally {
      this.processing = false;
      this.clockFresh = false;
      this.flushInterrupts();
    }
  }

  /**
   * Function-level reset / DEVICE_RESET / client disconnect: back to power-on state (registers, queues, features,
   * events). Resolves once abandoned in-flight I/O has drained (its completions are discarded).
   */
  reset(): Promise<void> {
    this.teardown('reset');
    this.registers.powerOnReset();
    this.changedNamespaces.clear();
    return this.whenDrained();
  }

  /** Flushes every namespace (graceful shutdown). */
  async flush(): Promise<void> {
    await Promise.all(this.namespaces.map((entry) => Promise.resolve().then(() => entry.namespace.flush())));
  }

  stats(): NvmeControllerStats {
    const ioSubmissionQueues = this.submissionList.filter((sq) => sq.id !== 0).length;
    const ioCompletionQueues = this.completionList.filter((cq) => cq.id !== 0).length;
    return {
      state: this.state(),
      ioSubmissionQueues,
      ioCompletionQueues,
      inFlight: this.inFlight,
      commands: { ...this.commandCounts },
      bytesRead: this.counters.bytesRead,
      bytesWritten: this.counters.bytesWritten,
      mediaErrors: this.counters.mediaErrors,
      errorLogEntries: this.errorLog.count,
      asyncEventRequestsOutstanding: this.asyncEventCommands.length,
      resets: this.resets,
      unsafeShutdowns: this.unsafeShutdowns,
      latency: this.latency.snapshot(),
    };
  }

  /** Namespace attribute changed (resize etc.): queues a Changed Namespace List entry and a Notice event. */
  notifyNamespaceChanged(nsid: number): void {
    if (!Number.isInteger(nsid) || nsid < 1 || nsid > this.namespaces.length) {
      this.logger.warn('namespace change notice for an unknown namespace ignored', { nsid });
      return;
    }
    this.changedNamespaces.add(nsid);
    if ((this.features.asyncEventConfig & AsyncEventConfig.NAMESPACE_ATTRIBUTE_NOTICES) !== 0) {
      this.raiseEvent(
        AsyncEvent.TYPE_NOTICE,
        AsyncEvent.INFO_NOTICE_NAMESPACE_ATTRIBUTE_CHANGED,
        LogPageId.CHANGED_NAMESPACE_LIST,
      );
    }
  }

  // ---- registers ---------------------------------------------------------------------------------------------

  private writeRegister(offset: number, value: number): void {
    const registers = this.registers;
    switch (offset) {
      case Reg.INTMS:
      case Reg.INTMC:
        // Interrupt masks apply to pin-based interrupts only; with MSI-X the per-vector masks are in the table.
        if (this.interrupts.msixEnabled()) return;
        if (offset === Reg.INTMS) {
          registers.intms = registers.intms | value;
        } else {
          registers.intms = registers.intms & ~value;
          this.resignalUnmasked(value);
        }
        return;
      case Reg.CC:
        this.writeControllerConfiguration(value);
        return;
      case Reg.CSTS:
      case Reg.NSSR:
        return; // read-only / subsystem reset not supported (CAP.NSSRS = 0)
      default:
        // AQA, ASQ, ACQ: only meaningful while disabled; the admin queues are built from them at enable.
        if ((registers.cc & Cc.EN) !== 0) {
          this.logger.debug('admin queue register write while enabled ignored', { offset });
          return;
        }
        registers.set32(offset, offset === Reg.AQA ? value & 0x0fff0fff : value);
    }
  }

  private writeControllerConfiguration(written: number): void {
    const registers = this.registers;
    const previous = registers.cc;
    let value = written & Cc.WRITABLE;
    const wasEnabled = (previous & Cc.EN) !== 0;
    const enable = (value & Cc.EN) !== 0;
    if (wasEnabled && enable) {
      // While enabled only the shutdown notification and the I/O entry sizes may change.
      const changeable =
        (Cc.SHN_MASK << Cc.SHN_SHIFT) | (Cc.IOSQES_MASK << Cc.IOSQES_SHIFT) | (Cc.IOCQES_MASK << Cc.IOCQES_SHIFT);
      value = (previous & ~changeable) | (value & changeable);
    }
    registers.cc = value;
    if (!wasEnabled && enable) this.enable();
    else if (wasEnabled && !enable) this.controllerReset();

    const previousShutdown = ccField(previous, Cc.SHN_SHIFT, Cc.SHN_MASK);
    const shutdown = ccField(value, Cc.SHN_SHIFT, Cc.SHN_MASK);
    if (shutdown !== ShutdownNotification.NONE && previousShutdown === ShutdownNotification.NONE) {
      this.beginShutdown(shutdown);
    }
  }

  /** CC.EN 0 -> 1: validate the admin queue configuration and bring the controller up, or fail with CSTS.CFS. */
  private enable(): void {
    if (this.draining) return; // retried once the previous reset has drained
    const registers = this.registers;
    const cc = registers.cc;
    const problem = this.adminQueueProblem(cc);
    if (problem) {
      this.fail(`cannot enable: ${problem}`, { cc, aqa: registers.aqa, asq: registers.asq, acq: registers.acq });
      return;
    }
    const aqa = registers.aqa;
    const sqEntries = (aqa & 0xfff) + 1;
    const cqEntries = ((aqa >>> 16) & 0xfff) + 1;
    const cq = new CompletionQueue(0, registers.acq, cqEntries, 0, true);
    const sq = new SubmissionQueue(0, registers.asq, sqEntries, cq, 0);
    this.addCompletionQueue(cq);
    this.addSubmissionQueue(sq);
    this.features.reset();
    this.ioQueuesCreated = false;
    this.temperatureWarningReported = false;
    this.active = true;
    this.unsafeIfReset = true;
    registers.csts = Csts.RDY;
    this.logger.info('controller enabled', { adminSqEntries: sqEntries, adminCqEntries: cqEntries });
  }

  private adminQueueProblem(cc: number): string | undefined {
    const registers = this.registers;
    if (ccField(cc, Cc.MPS_SHIFT, Cc.MPS_MASK) !== 0) return 'CC.MPS must select 4 KiB pages';
    if (ccField(cc, Cc.CSS_SHIFT, Cc.CSS_MASK) !== 0) return 'CC.CSS must select the NVM command set';
    if (ccField(cc, Cc.AMS_SHIFT, Cc.AMS_MASK) !== 0) return 'CC.AMS must select round robin arbitration';
    const aqa = registers.aqa;
    const sqEntries = (aqa & 0xfff) + 1;
    const cqEntries = ((aqa >>> 16) & 0xfff) + 1;
    if (sqEntries < MIN_ADMIN_QUEUE_ENTRIES || sqEntries > MAX_ADMIN_QUEUE_ENTRIES) return 'AQA.ASQS out of range';
    if (cqEntries < MIN_ADMIN_QUEUE_ENTRIES || cqEntries > MAX_ADMIN_QUEUE_ENTRIES) return 'AQA.ACQS out of range';
    const asq = registers.asq;
    const acq = registers.acq;
    if (!Number.isSafeInteger(asq) || asq % PAGE_SIZE !== 0) return 'ASQ is not page aligned';
    if (!Number.isSafeInteger(acq) || acq % PAGE_SIZE !== 0) return 'ACQ is not page aligned';
    try {
      this.dma.find(asq, sqEntries * SQE_SIZE, 'read');
    } catch (error) {
      if (error instanceof DmaError) return `admin submission queue memory: ${error.message}`;
      throw error;
    }
    try {
      this.dma.find(acq, cqEntries * 16, 'write');
    } catch (error) {
      if (error instanceof DmaError) return `admin completion queue memory: ${error.message}`;
      throw error;
    }
    return undefined;
  }

  /** CC.EN 1 -> 0: abandon everything; CSTS.RDY clears once abandoned I/O has drained. */
  private controllerReset(): void {
    this.teardown('CC.EN cleared');
    if (this.inFlight === 0) this.registers.csts = 0;
    else this.registers.csts = Csts.RDY; // RDY stays set until the drain finishes; CFS and SHST clear now
  }

  /** Drops all queues, commands, events and feature values; in-flight I/O is left to drain and discarded. */
  private teardown(reason: string): void {
    if (this.unsafeIfReset) this.unsafeShutdowns++;
    this.unsafeIfReset = false;
    const hadQueues = this.submissionList.length > 0;
    this.resets++;
    this.generation++;
    this.active = false;
    this.submissionQueues.fill(undefined);
    this.completionQueues.fill(undefined);
    this.submissionList = [];
    this.completionList = [];
    this.roundRobin = 0;
    this.shadow = undefined;
    this.ioQueuesCreated = false;
    this.asyncEventCommands.length = 0;
    this.pendingEvents.length = 0;
    this.maskedEventTypes = 0;
    this.temperatureWarningReported = false;
    this.features.reset();
    this.stopKeepAliveTimer();
    this.pendingVectorFlags.fill(0);
    this.pendingVectorCount = 0;
    // Doorbells of a reset controller read as zero; stale values would otherwise look like new ones later.
    // (A caller may already have unmapped a shared doorbell page: a detached array has length 0 and is left alone.)
    if (this.doorbells.length > 0) this.doorbells.fill(0, 0, 2 * (this.maxIoQueuePairs + 1));
    this.consumedDoorbells.fill(0);
    if (this.inFlight > 0) this.draining = true;
    if (hadQueues || this.inFlight > 0) {
      this.logger.info('controller reset', { reason, abandonedCommands: this.inFlight });
    }
  }

  private whenDrained(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private onDrained(): void {
    if (this.draining) {
      this.draining = false;
      this.registers.csts = 0;
      // The host may have set CC.EN again while we drained; it now gets its enable.
      if ((this.registers.cc & Cc.EN) !== 0) this.enable();
    }
    if (this.drainWaiters.length > 0) for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  /**
   * CC.SHN: stop fetching, let in-flight I/O finish, flush the namespaces, then report SHST = complete. If a flush
   * fails, CSTS.CFS is set as well: SHST still completes (there is nothing left to wait for, and hosts poll SHST, not
   * CFS, so they would otherwise sit out their whole shutdown timeout), but CFS tells the host that data it wrote may
   * not be durable, and the next reset counts as an unsafe shutdown.
   */
  private beginShutdown(kind: number): void {
    const registers = this.registers;
    registers.shutdownStatus = ShutdownStatus.PROCESSING;
    this.active = false;
    this.stopKeepAliveTimer();
    const generation = this.generation;
    const started = Date.now();
    this.logger.info('shutdown requested', { kind: kind === ShutdownNotification.ABRUPT ? 'abrupt' : 'normal' });
    void this.whenDrained()
      .then(() => this.flushForShutdown())
      .then((durable) => {
        if (generation !== this.generation) return; // reset in the meantime: SHST was cleared
        if (durable) this.unsafeIfReset = false;
        else this.fail('namespace flush failed at shutdown: written data may not be durable');
        registers.shutdownStatus = ShutdownStatus.COMPLETE;
        this.logger.info('shutdown complete', { millis: Date.now() - started, durable });
      });
  }

  /** Flushes every namespace (all of them, even after a failure); logs each failure. True when all succeeded. */
  private async flushForShutdown(): Promise<boolean> {
    const results = await Promise.allSettled(
      this.namespaces.map((entry) => Promise.resolve().then(() => entry.namespace.flush())),
    );
    let durable = true;
    results.forEach((result, index) => {
      if (result.status === 'fulfilled') return;
      durable = false;
      this.logger.error('flushing namespace at shutdown failed', {
        nsid: index + 1,
        namespace: this.namespaces[index]!.namespace.description,
        error: result.reason,
      });
    });
    return durable;
  }

  /** Controller Fatal Status: log, stop processing until the host resets the controller. */
  private fail(reason: string, fields: Record<string, unknown> = {}): void {
    if ((this.registers.csts & Csts.CFS) !== 0) return;
    this.logger.error(`controller fatal: ${reason}`, fields);
    this.registers.setCstsBits(Csts.CFS, true);
    this.active = false;
    this.stopKeepAliveTimer();
  }

  private state(): ControllerState {
    const csts = this.registers.csts;
    if ((csts & Csts.CFS) !== 0) return 'failed';
    const shutdown = this.registers.shutdownStatus;
    if (shutdown === ShutdownStatus.PROCESSING) return 'shutting-down';
    if (shutdown === ShutdownStatus.COMPLETE) return 'shut-down';
    return (csts & Csts.RDY) !== 0 && this.active ? 'ready' : 'disabled';
  }

  // ---- interrupts --------------------------------------------------------------------------------------------

  private markVector(vector: number): void {
    if (this.pendingVectorFlags[vector] === 1) return;
    this.pendingVectorFlags[vector] = 1;
    this.pendingVectors[this.pendingVectorCount++] = vector;
  }

  private flushInterrupts(): void {
    const count = this.pendingVectorCount;
    if (count === 0) return;
    this.pendingVectorCount = 0;
    const msix = this.interrupts.msixEnabled();
    const mask = this.registers.intms;
    let intx = false;
    for (let index = 0; index < count; index++) {
      const vector = this.pendingVectors[index]!;
      this.pendingVectorFlags[vector] = 0;
      if (msix) this.signal(vector);
      else if ((mask & (1 << (vector & 31))) === 0) intx = true;
    }
    if (intx) this.signal(0);
  }

  private signal(vector: number): void {
    try {
      this.interrupts.signal(vector);
    } catch (error) {
      this.logger.error('signalling interrupt failed', { vector, error });
    }
  }

  private readonly flushInterruptsLater = (): void => {
    this.interruptFlushScheduled = false;
    this.flushInterrupts();
  };

  /** Completions that arrive outside processQueues are signalled together at the end of this event-loop turn. */
  private scheduleInterruptFlush(): void {
    if (this.interruptFlushScheduled || this.pendingVectorCount === 0) return;
    this.interruptFlushScheduled = true;
    setImmediate(this.flushInterruptsLater);
  }

  /** INTMC cleared mask bits: completions still waiting behind them raise INTx now. */
  private resignalUnmasked(cleared: number): void {
    for (const cq of this.completionList) {
      if (cq.interruptsEnabled && cq.posted > 0 && (cleared & (1 << (cq.vector & 31))) !== 0) {
        this.signal(0);
        return;
      }
    }
  }

  // ---- doorbells ---------------------------------------------------------------------------------------------

  private doorbellWrite(index: number, value: number): void {
    this.doorbells[index] = value;
    if (index < this.consumedDoorbells.length) this.consumedDoorbells[index] = value;
    if (!this.active) return;
    this.takeDoorbell(index, value);
    const qid = index >>> 1;
    if (qid === 0 && this.shadow) {
      // Many drivers (Linux included) never update the admin queue's shadow entries; keep them in step so the
      // shadow value we read later is never staler than the MMIO write we just took.
      if (!this.resolveShadow()) return;
      this.shadow.writeShadow(index, value);
      if ((index & 1) === 1) this.completionQueues[0]!.lastShadow = value;
      else this.submissionQueues[0]!.lastShadow = value;
    }
  }

  /**
   * Acts on a new value of doorbell `index`: SQ tail (even) or CQ head (odd) of queue `index / 2`.
   * With shadow doorbells, an I/O queue's MMIO write only says "look at the shadow entry": the host updates the
   * shadow entry before it writes the register, and trapped writes reach us asynchronously (vfio-user clients post
   * them without waiting), so the MMIO value can be older than a shadow value already acted on. Taking it would move
   * the tail behind the head (a ring's worth of stale entries fetched) or the head backwards.
   */
  private takeDoorbell(index: number, value: number): void {
    const qid = index >>> 1;
    const shadow = qid !== 0 ? this.shadow : undefined;
    if ((index & 1) === 1) {
      const cq = this.completionQueues[qid];
      if (!cq) return this.invalidDoorbellRegister(index, value);
      if (!shadow) this.applyCompletionHead(cq, value);
      else if (this.resolveShadow()) this.readShadowHead(shadow, cq);
    } else {
      const sq = this.submissionQueues[qid];
      if (!sq) return this.invalidDoorbellRegister(index, value);
      if (sq.deleting) return;
      if (!shadow) this.applySubmissionTail(sq, value);
      else if (this.resolveShadow()) this.readShadowTail(shadow, sq);
    }
  }

  private invalidDoorbellRegister(index: number, value: number): void {
    this.warnInvalidDoorbell('doorbell write to a queue that does not exist', { doorbell: index, value });
    // An SQ tail doorbell names its SQ; a CQ head doorbell names no submission queue.
    const sqid = (index & 1) === 0 ? index >>> 1 : NO_COMMAND;
    this.recordDoorbellError(sqid, Status.INVALID_QUEUE_IDENTIFIER);
    this.raiseEvent(AsyncEvent.TYPE_ERROR, AsyncEvent.INFO_ERROR_INVALID_DOORBELL_REGISTER, LogPageId.ERROR_INFORMATION);
  }

  private applySubmissionTail(sq: SubmissionQueue, value: number): void {
    if (sq.setTail(value)) return;
    this.warnInvalidDoorbell('invalid submission queue tail doorbell value', { sqid: sq.id, value, entries: sq.size });
    this.recordDoorbellError(sq.id, Status.INVALID_FIELD);
    this.raiseEvent(AsyncEvent.TYPE_ERROR, AsyncEvent.INFO_ERROR_INVALID_DOORBELL_VALUE, LogPageId.ERROR_INFORMATION);
  }

  private applyCompletionHead(cq: CompletionQueue, value: number): void {
    if (cq.setHead(value)) return;
    this.warnInvalidDoorbell('invalid completion queue head doorbell value', {
      cqid: cq.id,
      value,
      head: cq.head,
      tail: cq.tail,
      entries: cq.size,
    });
    this.recordDoorbellError(NO_COMMAND, Status.INVALID_FIELD);
    this.raiseEvent(AsyncEvent.TYPE_ERROR, AsyncEvent.INFO_ERROR_INVALID_DOORBELL_VALUE, LogPageId.ERROR_INFORMATION);
  }

  /**
   * The Error Information entry behind a doorbell error event, so the host finds what the event points at. No
   * command is involved: CID = FFFFh, SQID = the SQ whose tail doorbell was written (FFFFh for CQ head doorbells),
   * and the status is the closest fit (the spec asks for "the most applicable status value").
   */
  private recordDoorbellError(sqid: number, status: number): void {
    this.errorLog.record({
      sqid,
      cid: NO_COMMAND,
      status,
      phase: 0,
      nsid: 0,
      lba: 0,
      parameterLocation: NO_PARAMETER_LOCATION,
    });
    this.counters.errorLogEntries = this.errorLog.count;
  }

  /** A guest can write bad doorbells in a loop: log the 1st, 2nd, 4th, 8th, ... occurrence only. */
  private warnInvalidDoorbell(message: string, fields: Record<string, unknown>): void {
    const count = ++this.invalidDoorbellWrites;
    if ((count & (count - 1)) === 0) this.logger.warn(message, { ...fields, invalidDoorbellWrites: count });
  }

  /** Picks up doorbell values written to the doorbell page (polled mode) or the shadow page since last time. */
  private refreshDoorbells(): boolean {
    const doorbells = this.doorbells;
    const consumed = this.consumedDoorbells;
    // A detached (unmapped) page has length 0: nothing to pick up. A private page never differs (see options).
    const words = this.doorbellsShared ? Math.min(doorbells.length, consumed.length) : 0;
    let taken = false;
    for (let index = 0; index < words; index++) {
      const value = doorbells[index]!;
      if (value === consumed[index]) continue;
      consumed[index] = value;
      taken = true;
      this.takeDoorbell(index, value);
    }
    const shadow = this.shadow;
    if (!shadow) return taken;
    for (const cq of this.completionList) this.readShadowHead(shadow, cq);
    for (const sq of this.submissionList) if (!sq.deleting) this.readShadowTail(shadow, sq);
    return taken;
  }

  private readShadowTail(shadow: ShadowDoorbells, sq: SubmissionQueue): void {
    const value = shadow.readShadow(sq.doorbellIndex);
    if (value === sq.lastShadow) return;
    sq.lastShadow = value;
    this.applySubmissionTail(sq, value);
  }

  private readShadowHead(shadow: ShadowDoorbells, cq: CompletionQueue): void {
    const value = shadow.readShadow(cq.doorbellIndex);
    if (value === cq.lastShadow) return;
    cq.lastShadow = value;
    this.applyCompletionHead(cq, value);
  }

  private resolveShadow(): boolean {
    try {
      this.shadow!.resolve(this.dma);
      return true;
    } catch (error) {
      this.fail('shadow doorbell memory is no longer mapped', { error });
      return false;
    }
  }

  // ---- queue processing --------------------------------------------------------------------------------------

  private runQueues(): void {
    if (this.shadow && !this.resolveShadow()) return;
    this.refreshDoorbells();
    const burst = this.arbitrationBurst();
    let budget = BATCH_COMMAND_BUDGET;
    for (;;) {
      let fetched = 0;
      // Admin commands may create or delete queues; each round works on the list as it stands.
      const list = this.submissionList;
      const count = list.length;
      for (let served = 0; served < count && budget > 0; served++) {
        // `roundRobin` is the queue after the last one served, so a pass cut short by the budget resumes there.
        const position = this.roundRobin % count;
        this.roundRobin = (position + 1) % count;
        const sq = list[position]!;
        if (this.submissionQueues[sq.id] !== sq) continue; // deleted earlier in this round
        const taken = this.fetchFrom(sq, Math.min(burst, budget));
        if (!this.active) return;
        fetched += taken;
        budget -= taken;
      }
      if (fetched === 0 || budget <= 0) break;
    }
    // Out of budget with work left: continue on a later turn so completions and other devices get to run.
    if (budget <= 0) this.scheduleProcessing();
    this.deliverAsyncEvents();
  }

  private readonly processLater = (): void => {
    this.processScheduled = false;
    this.processQueues();
  };

  private scheduleProcessing(): void {
    if (this.processScheduled) return;
    this.processScheduled = true;
    setImmediate(this.processLater);
  }

  /** Arbitration Burst: 2^AB commands per queue per round; 7 = no limit. */
  private arbitrationBurst(): number {
    const ab = this.features.arbitration & 0x7;
    return ab === 7 ? BATCH_COMMAND_BUDGET : 1 << ab;
  }

  /** Fetches and starts up to `limit` commands from `sq`; returns how many. */
  private fetchFrom(sq: SubmissionQueue, limit: number): number {
    if (sq.deleting) return 0;
    const cq = sq.cq;
    const shadow = this.shadow;
    let fetched = 0;
    while (fetched < limit) {
      if (sq.isEmpty) {
        if (!shadow) break;
        // Publish how far we got, then look again: a tail written before the host saw this EventIdx is caught by
        // the re-read, one written after it makes the host ring the MMIO doorbell.
        shadow.writeEventIndex(sq.doorbellIndex, sq.tail);
        this.readShadowTail(shadow, sq);
        if (sq.isEmpty) break;
      }
      if (cq.freeSlots <= 0) {
        if (shadow) {
          shadow.writeEventIndex(cq.doorbellIndex, cq.head);
          this.readShadowHead(shadow, cq);
        }
        if (cq.freeSlots <= 0) break; // resumes when the host frees CQ slots
      }
      if (fetched === 0 && !this.resolveQueue(sq)) return 0;
      cq.reserved++;
      if (sq.id === 0) this.executeAdmin(sq);
      else this.executeIo(sq);
      fetched++;
      if (!this.active) break;
    }
    return fetched;
  }

  private resolveQueue(queue: SubmissionQueue | CompletionQueue): boolean {
    try {
      queue.memory.resolve(this.dma);
      return true;
    } catch (error) {
      const kind = queue instanceof SubmissionQueue ? 'submission' : 'completion';
      this.fail(`${kind} queue ${queue.id} memory is no longer mapped`, { qid: queue.id, error });
      return false;
    }
  }

  private executeAdmin(sq: SubmissionQueue): void {
    this.clockFresh = false; // an admin command between two I/O commands takes its own time
    const sqe = this.adminSqe;
    sq.fetch(sqe);
    const opcode = sqe.getUint8(0);
    const commandId = sqe.getUint16(2, true);
    const result = this.adminResult;
    this.commandCounts.admin++;
    try {
      this.admin.execute(sqe, result);
    } catch (error) {
      this.logger.error('admin command failed unexpectedly', { opcode, cid: commandId, error });
      result.status = Status.INTERNAL_ERROR;
      result.dw0 = 0;
    }
    if (result.status === DEFERRED) {
      // An AER may stay outstanding forever; it takes a CQ slot only when an event completes it.
      if (opcode === AdminOpcode.ASYNC_EVENT_REQUEST) sq.cq.reserved--;
      return;
    }
    if (result.status !== Status.SUCCESS) {
      this.logger.debug('admin command failed', { opcode, cid: commandId, status: result.status });
      this.recordError(sq, commandId, result.status, sqe.getUint32(4, true), 0);
    }
    this.postCompletion(sq.cq, result.dw0, sq, commandId, result.status);
  }

  private executeIo(sq: SubmissionQueue): void {
    const request = this.requestPool.pop() ?? new PooledRequest();
    sq.fetch(request.sqe, request.sqeWords);
    request.sq = sq;
    request.commandId = request.sqe.getUint16(2, true);
    request.opcode = request.sqe.getUint8(0);
    request.generation = this.generation;
    request.result = 0;
    request.active = true;
    // Fetch time. When the previous command of this pass completed synchronously, its completion time (read just
    // before this fetch) stands in for a fresh clock read: one clock read per command instead of two.
    if (this.clockFresh) this.clockFresh = false;
    else this.clock = performance.now();
    request.startedAt = this.clock;
    sq.inFlight++;
    if (this.inFlight++ === 0) this.busySince = request.startedAt;
    try {
      executeIoCommand(this.ioContext, request, this.ioDone);
    } catch (error) {
      this.logger.error('I/O command failed unexpectedly', {
        sqid: sq.id,
        cid: request.commandId,
        opcode: request.opcode,
        error,
      });
      if (request.active) this.ioDone(request, Status.INTERNAL_ERROR);
    }
  }

  private readonly ioDone: IoDone = (completed: IoRequest, status: number): void => {
    const request = completed as PooledRequest;
    if (!request.active) {
      this.logger.error('I/O command completed twice', { cid: request.commandId, opcode: request.opcode });
      return;
    }
    request.active = false;
    const sq = request.sq!;
    request.sq = undefined;
    // request.segments keeps its views until the next command overwrites them (io.ts): emptying the array here
    // would drop its backing store and make the next command reallocate it.
    sq.inFlight--;
    const now = performance.now();
    if (this.processing) {
      // Inside this thread's processing pass: the next fetch of the pass starts now (see executeIo).
      this.clock = now;
      this.clockFresh = true;
    }
    if (--this.inFlight === 0) this.counters.busyMillis += now - this.busySince;
    this.latency.record((now - request.startedAt) * 1000);

    if (request.generation === this.generation && (this.registers.csts & Csts.CFS) === 0) {
      const opcode = request.opcode;
      if (opcode === IoOpcode.READ) this.commandCounts.read++;
      else if (opcode === IoOpcode.WRITE) this.commandCounts.write++;
      else this.commandCounts.otherIo++;
      if (status !== Status.SUCCESS) {
        const sqe = request.sqe;
        const lba = hasLba(opcode) ? sqe.getUint32(44, true) * 0x1_0000_0000 + sqe.getUint32(40, true) : 0;
        this.recordError(sq, request.commandId, status, sqe.getUint32(4, true), lba);
      }
      this.postCompletion(sq.cq, request.result, sq, request.commandId, status);
      if (sq.deleteCommandId !== undefined && sq.inFlight === 0) this.finishSubmissionQueueDeletion(sq);
      if (!this.processing) this.scheduleInterruptFlush();
    }
    this.requestPool.push(request);
    if (this.inFlight === 0) this.onDrained();
  };

  /** Writes a CQE for a command of `sq` into its reserved slot and marks the CQ's vector. */
  private postCompletion(cq: CompletionQueue, dw0: number, sq: SubmissionQueue, commandId: number, status: number): void {
    if (status !== Status.SUCCESS) this.commandCounts.failed++;
    if (!this.resolveQueue(cq)) return;
    cq.post(dw0, sq.head, sq.id, commandId, status);
    cq.reserved--;
    if (cq.interruptsEnabled) this.markVector(cq.vector);
  }

  private recordError(sq: SubmissionQueue, commandId: number, status: number, nsid: number, lba: number): void {
    this.errorLog.record({
      sqid: sq.id,
      cid: commandId,
      status,
      phase: sq.cq.phase,
      nsid,
      lba,
      parameterLocation: NO_PARAMETER_LOCATION,
    });
    this.counters.errorLogEntries = this.errorLog.count;
  }

  // ---- queue management (admin) ------------------------------------------------------------------------------

  private addCompletionQueue(cq: CompletionQueue): void {
    this.completionQueues[cq.id] = cq;
    this.completionList.push(cq);
    this.doorbells[cq.doorbellIndex] = 0;
    this.consumedDoorbells[cq.doorbellIndex] = 0;
    if (this.shadow) {
      this.shadow.writeEventIndex(cq.doorbellIndex, 0);
      // Whatever the shadow entry holds now predates this queue; only changes to it count.
      cq.lastShadow = this.shadow.readShadow(cq.doorbellIndex);
    }
  }

  private addSubmissionQueue(sq: SubmissionQueue): void {
    this.submissionQueues[sq.id] = sq;
    this.submissionList.push(sq);
    sq.cq.submissionQueues++;
    this.doorbells[sq.doorbellIndex] = 0;
    this.consumedDoorbells[sq.doorbellIndex] = 0;
    if (this.shadow) {
      this.shadow.writeEventIndex(sq.doorbellIndex, 0);
      sq.lastShadow = this.shadow.readShadow(sq.doorbellIndex);
    }
  }

  private removeSubmissionQueue(sq: SubmissionQueue): void {
    this.submissionQueues[sq.id] = undefined;
    this.submissionList = this.submissionList.filter((queue) => queue !== sq);
    sq.cq.submissionQueues--;
  }

  /**
   * Delete I/O SQ: the commands the host submitted to `sq` that were never fetched complete with Command Aborted due
   * to SQ Deletion, in submission order, their CIDs read from the SQ. Only as many as the CQ has free slots for are
   * posted (a CQE is never overwritten, and the Delete does not wait for the host to make room, since a host may only
   * drain the CQ once the Delete completes); the rest complete implicitly with the Delete, which the spec allows (no
   * CQE). If the SQ memory is no longer mapped, their CIDs cannot be read and they all complete implicitly.
   */
  private abortUnfetched(sq: SubmissionQueue): void {
    const unfetched = sq.unfetched;
    if (unfetched === 0) return;
    try {
      sq.memory.resolve(this.dma);
    } catch (error) {
      if (!(error instanceof DmaError)) throw error;
      sq.head = sq.tail;
      this.logger.warn('submission queue memory unmapped at deletion: unfetched commands complete without a CQE', {
        sqid: sq.id,
        unfetched,
        error,
      });
      return;
    }
    const cq = sq.cq;
    let aborted = 0;
    while (!sq.isEmpty && cq.freeSlots > 0) {
      const commandId = sq.skip();
      cq.reserved++;
      this.postCompletion(cq, 0, sq, commandId, Status.ABORTED_SQ_DELETION);
      if (!this.active) return; // CQ memory gone: the controller failed
      aborted++;
    }
    sq.head = sq.tail;
    this.logger.debug('unfetched commands aborted by Delete I/O SQ', {
      sqid: sq.id,
      aborted,
      completedWithoutCqe: unfetched - aborted,
    });
  }

  private finishSubmissionQueueDeletion(sq: SubmissionQueue): void {
    const commandId = sq.deleteCommandId!;
    sq.deleteCommandId = undefined;
    this.removeSubmissionQueue(sq);
    const adminSq = this.submissionQueues[0];
    if (adminSq) this.postCompletion(adminSq.cq, 0, adminSq, commandId, Status.SUCCESS);
    this.logger.debug('I/O submission queue deleted after draining', { sqid: sq.id });
  }

  // ---- asynchronous events -----------------------------------------------------------------------------------

  private raiseEvent(type: number, info: number, logPage: number): void {
    if (!this.active) return;
    for (const event of this.pendingEvents) if (event.type === type && event.info === info) return;
    this.pendingEvents.push({ type, info, logPage });
    if (!this.processing) {
      this.deliverAsyncEvents();
      this.scheduleInterruptFlush();
    }
  }

  /** Completes outstanding Asynchronous Event Requests with pending events whose type is not masked. */
  private deliverAsyncEvents(): void {
    const adminSq = this.submissionQueues[0];
    if (!adminSq || !this.active) return;
    const cq = adminSq.cq;
    while (this.asyncEventCommands.length > 0 && cq.freeSlots > 0) {
      const index = this.pendingEvents.findIndex((event) => (this.maskedEventTypes & (1 << event.type)) === 0);
      if (index < 0) return;
      const event = this.pendingEvents.splice(index, 1)[0]!;
      // Further events of this type wait until the host reads the log page (RAE = 0).
      this.maskedEventTypes |= 1 << event.type;
      const commandId = this.asyncEventCommands.shift()!;
      cq.reserved++;
      this.postCompletion(cq, event.type | (event.info << 8) | (event.logPage << 16), adminSq, commandId, Status.SUCCESS);
      this.logger.debug('asynchronous event reported', { ...event, cid: commandId });
    }
  }

  private checkTemperature(): void {
    const warning = this.features.temperatureWarning;
    if (!warning) {
      this.temperatureWarningReported = false;
      return;
    }
    if (this.temperatureWarningReported) return;
    if ((this.features.asyncEventConfig & CriticalWarning.TEMPERATURE) === 0) return;
    this.temperatureWarningReported = true;
    this.raiseEvent(AsyncEvent.TYPE_SMART, SMART_INFO_TEMPERATURE_THRESHOLD, LogPageId.SMART_HEALTH);
  }

  // ---- keep alive --------------------------------------------------------------------------------------------

  private restartKeepAliveTimer(): void {
    this.stopKeepAliveTimer();
    const timeout = this.features.keepAliveMillis;
    if (timeout === 0 || !this.active) return;
    this.lastKeepAlive = Date.now();
    const generation = this.generation;
    const check = (): void => {
      this.keepAliveTimer = undefined;
      if (generation !== this.generation || !this.active) return;
      const idle = Date.now() - this.lastKeepAlive;
      // Over PCIe a keep-alive expiry is a controller failure: the host must reset us.
      if (idle >= timeout) this.fail('keep alive timeout expired', { keepAliveMillis: timeout, idleMillis: idle });
      else this.keepAliveTimer = setTimeout(check, Math.min(timeout - idle, MAX_TIMER_MILLIS)).unref();
    };
    this.keepAliveTimer = setTimeout(check, Math.min(timeout, MAX_TIMER_MILLIS)).unref();
  }

  private stopKeepAliveTimer(): void {
    if (this.keepAliveTimer) clearTimeout(this.keepAliveTimer);
    this.keepAliveTimer = undefined;
  }

  // ---- the admin command handler's view of the controller ----------------------------------------------------

  private adminHost(): AdminHost {
    const controller = this;
    return {
      dma: this.dma,
      identity: this.identity,
      namespaces: this.namespaces,
      features: this.features,
      errorLog: this.errorLog,
      changedNamespaces: this.changedNamespaces,
      identifyInfo: this.identifyInfo,
      maxAdminTransferBytes: this.maxTransferBytes === 0 ? ADMIN_TRANSFER_CAP : Math.min(this.maxTransferBytes, ADMIN_TRANSFER_CAP),
      maxQueueEntries: this.maxQueueEntries,
      vectorCount: this.vectorCount,
      get ioQueuesCreated(): boolean {
        return controller.ioQueuesCreated;
      },
      get ioSubmissionEntrySizeValid(): boolean {
        return ccField(controller.registers.cc, Cc.IOSQES_SHIFT, Cc.IOSQES_MASK) === IO_SQ_ENTRY_SIZE_LOG2;
      },
      get ioCompletionEntrySizeValid(): boolean {
        return ccField(controller.registers.cc, Cc.IOCQES_SHIFT, Cc.IOCQES_MASK) === IO_CQ_ENTRY_SIZE_LOG2;
      },
      completionQueue: (qid) => (qid < this.completionQueues.length ? this.completionQueues[qid] : undefined),
      submissionQueue: (qid) => (qid < this.submissionQueues.length ? this.submissionQueues[qid] : undefined),
      createCompletionQueue: (qid, iova, entries, vector, interruptsEnabled) => {
        this.addCompletionQueue(new CompletionQueue(qid, iova, entries, vector, interruptsEnabled));
        this.ioQueuesCreated = true;
        this.logger.debug('I/O completion queue created', { cqid: qid, entries, vector, interruptsEnabled });
      },
      createSubmissionQueue: (qid, iova, entries, cq, priority) => {
        this.addSubmissionQueue(new SubmissionQueue(qid, iova, entries, cq, priority));
        this.ioQueuesCreated = true;
        this.logger.debug('I/O submission queue created', { sqid: qid, entries, cqid: cq.id });
      },
      deleteSubmissionQueue: (sq, commandId) => {
        this.abortUnfetched(sq);
        if (sq.inFlight === 0) {
          this.removeSubmissionQueue(sq);
          return true;
        }
        sq.deleteCommandId = commandId;
        return false;
      },
      deleteCompletionQueue: (cq) => {
        this.completionQueues[cq.id] = undefined;
        this.completionList = this.completionList.filter((queue) => queue !== cq);
      },
      smartLogInfo: (): SmartLogInfo => ({
        criticalWarning: this.features.temperatureWarning ? CriticalWarning.TEMPERATURE : 0,
        compositeTemperatureK: COMPOSITE_TEMPERATURE_K,
        counters: this.counters,
        powerCycles: 1,
        powerOnHours: Math.floor((Date.now() - this.createdAt) / 3_600_000),
        unsafeShutdowns: this.unsafeShutdowns,
        errorLogEntries: this.errorLog.count,
      }),
      asyncEventRequest: (commandId) => {
        if (this.asyncEventCommands.length > ASYNC_EVENT_REQUEST_LIMIT) return Status.ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED;
        this.asyncEventCommands.push(commandId);
        return DEFERRED;
      },
      logPageConsumed: (lid) => {
        if (lid === LogPageId.ERROR_INFORMATION) this.maskedEventTypes &= ~(1 << AsyncEvent.TYPE_ERROR);
        else if (lid === LogPageId.SMART_HEALTH) this.maskedEventTypes &= ~(1 << AsyncEvent.TYPE_SMART);
        else if (lid === LogPageId.CHANGED_NAMESPACE_LIST) this.maskedEventTypes &= ~(1 << AsyncEvent.TYPE_NOTICE);
      },
      keepAlive: () => {
        this.lastKeepAlive = Date.now();
      },
      keepAliveTimerChanged: () => this.restartKeepAliveTimer(),
      smartConfigurationChanged: () => this.checkTemperature(),
      configureShadowDoorbells: (shadowIova, eventIndexIova) => this.configureShadowDoorbells(shadowIova, eventIndexIova),
    };
  }

  private configureShadowDoorbells(shadowIova: number, eventIndexIova: number): void {
    const shadow = new ShadowDoorbells(shadowIova, eventIndexIova, PAGE_SIZE);
    shadow.resolve(this.dma); // validated by the admin handler just before
    // Start both pages from the state we know, so the first shadow reads match what the MMIO doorbells said.
    for (const sq of this.submissionList) {
      shadow.writeShadow(sq.doorbellIndex, sq.tail);
      shadow.writeEventIndex(sq.doorbellIndex, sq.tail);
      sq.lastShadow = sq.tail;
    }
    for (const cq of this.completionList) {
      shadow.writeShadow(cq.doorbellIndex, cq.head);
      shadow.writeEventIndex(cq.doorbellIndex, cq.head);
      cq.lastShadow = cq.head;
    }
    this.shadow = shadow;
    this.logger.info('shadow doorbells configured', { shadowIova, eventIndexIova });
  }
}

/** Opcodes whose CDW10/11 hold a starting LBA (for the error log). */
function hasLba(opcode: number): boolean {
  return (
    opcode === IoOpcode.READ ||
    opcode === IoOpcode.WRITE ||
    opcode === IoOpcode.COMPARE ||
    opcode === IoOpcode.WRITE_ZEROES ||
    opcode === IoOpcode.WRITE_UNCORRECTABLE ||
    opcode === IoOpcode.VERIFY
  );
}

function readUint32(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>> 0;
}

function checkOption(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`NVMe controller: ${name} ${String(value)} must be an integer in ${min}..${max}`);
  }
  return value;
}

/** MDTS lowered to what every namespace accepts in one transfer. */
function effectiveMdts(requested: number, namespaces: readonly NamespaceEntry[]): number {
  let mdts = requested;
  namespaces.forEach((entry, index) => {
    const limit = entry.namespace.maxTransferBytes;
    if (!limit) return;
    const pagesLog2 = Math.floor(Math.log2(limit / PAGE_SIZE));
    if (pagesLog2 < 1) {
      // MDTS 0 means "no limit", so one page is not expressible.
      throw new Error(
        `NVMe controller: namespace ${index + 1} (${entry.namespace.description}) accepts at most ${limit} bytes ` +
          `per transfer; the smallest MDTS is ${2 * PAGE_SIZE} bytes`,
      );
    }
    mdts = mdts === 0 ? pagesLog2 : Math.min(mdts, pagesLog2);
  });
  return mdts;
}

function validateNamespaceEntry(entry: NamespaceEntry, nsid: number): NamespaceEntry {
  const { namespace, ids } = entry;
  const where = `NVMe controller: namespace ${nsid}`;
  if (namespace.blockSize !== 512 && namespace.blockSize !== 4096) {
    throw new Error(`${where}: block size ${namespace.blockSize} must be 512 or 4096`);
  }
  if (!Number.isSafeInteger(namespace.blockCount) || namespace.blockCount <= 0) {
    throw new Error(`${where}: block count ${namespace.blockCount} must be a positive integer`);
  }
  if (!/^[0-9a-fA-F]{32}$/.test(ids.nguid)) throw new Error(`${where}: NGUID '${ids.nguid}' must be 32 hex digits`);
  if (!/^[0-9a-fA-F]{16}$/.test(ids.eui64)) throw new Error(`${where}: EUI-64 '${ids.eui64}' must be 16 hex digits`);
  if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(ids.uuid)) {
    throw new Error(`${where}: UUID '${ids.uuid}' must be in RFC 4122 form`);
  }
  return entry;
}
