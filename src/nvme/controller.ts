/**
 * The emulated NVMe controller (NVMe 1.4 over PCIe): BAR0 and the CC / CSTS state machine (enable, controller
 * reset, shutdown, fatal status). It builds its parts, each a class with its own state, and is the only file that
 * knows all of them:
 * - queue-engine.ts: queues, doorbells (trapped, polled, shadow), arbitration, fetch and post; it hands what it
 *   fetches, and doorbell errors, up through one small interface, `CommandSink`;
 * - commands.ts: the command sink: runs admin and I/O commands, tracks what is in flight;
 * - interrupts.ts: interrupt vector coalescing;
 * - async-events.ts: Asynchronous Event Requests, keep-alive, the temperature warning;
 * - admin.ts: the admin command set, on the parts above; io.ts: the NVM I/O command set;
 * - namespaces.ts, features.ts, log-pages.ts (health record), registers.ts: the state they share.
 * The parts reach the controller only through `fail` and the end of a reset's drain (CommandOwner). It knows guest
 * memory only through DmaSpace, namespaces only through the Namespace contract, interrupts only through
 * InterruptSink.
 *
 * Size: the CC/CSTS state machine plus the live-upgrade quiesce/snapshot/restore of the parts it composes.
 */
import { DmaError, type DmaSpace } from '../memory/guest-memory.js';
import { AsyncEvent, LogPageId, PAGE_SIZE, Reg, SQE_SIZE, Status, statusName } from '../spec/nvme.js';
import { Logger, rootLogger } from '../util/log.js';
import { AdminCommandHandler } from './admin.js';
import { AsyncEvents } from './async-events.js';
import { CommandRunner, ControllerIoContext, type CommandOwner } from './commands.js';
import { AsyncEventConfig, FeatureState } from './features.js';
import { resolveControllerIdentity, type ControllerIdentity } from './identity.js';
import { InterruptCoalescer, type InterruptSink } from './interrupts.js';
import { HealthRecord } from './log-pages.js';
import { MAX_NSID, NamespaceSet, type ActiveNamespace, type NamespaceEntry } from './namespaces.js';
import type { Namespace } from '../namespace/namespace.js';
import { sleep } from '../util/sleep.js';
import { DOORBELL_COUNT, QueueEngine } from './queue-engine.js';
import { DEFAULT_SCRATCH_BUDGET_BYTES, ScratchBudget } from './scratch.js';
import {
  Cc,
  ccField,
  ControllerRegisters,
  Csts,
  isWritable32,
  isWritable64,
  MAX_ADMIN_QUEUE_ENTRIES,
  MIN_ADMIN_QUEUE_ENTRIES,
  REGISTER_BLOCK_SIZE,
  ShutdownNotification,
  ShutdownStatus,
} from './registers.js';
import type { ControllerState, NvmeControllerStats } from './stats.js';
import type { RegistersState } from './registers.js';
import type { FeaturesState } from './features.js';
import type { HealthState } from './log-pages.js';
import type { AsyncEventsState } from './async-events.js';
import type { QueueEngineState } from './queue-engine.js';
import { checkSnapshotVersion } from '../util/handover-fds.js';
import { EntryState, type CommandJournal } from './command-journal.js';
import { type ControllerIoLimits, hasIoLimits, IoLimiter, ioLimitsProblem } from './io-limits.js';

const CONTROLLER_STATE_VERSION = 1;

/**
 * The whole controller in a live-upgrade snapshot (docs/restart.md), taken quiesced: nothing in flight, every
 * completion posted and signalled. Each part writes and reads its own piece.
 */
export interface NvmeControllerState {
  version: number;
  namespaceCount: number;
  /** The active NSIDs (namespaces attached or detached at runtime leave gaps); absent in older snapshots: 1..count. */
  nsids?: number[];
  registers: RegistersState;
  features: FeaturesState;
  health: HealthState;
  events: AsyncEventsState;
  interrupts: { version: number; pending: number[] };
  queues: QueueEngineState;
  commands: { version: number; counts: { admin: number; read: number; write: number; otherIo: number } };
  changedNamespaces: { nsids: number[]; overflow: boolean };
  unsafeIfReset: boolean;
  resets: number;
}

export type { InterruptSink } from './interrupts.js';
export type { NamespaceEntry } from './namespaces.js';
export type { NvmeControllerStats } from './stats.js';

export interface NvmeControllerOptions {
  dma: DmaSpace;
  /** NSID = `nsid`, or index + 1. */
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
  /** Scratch memory commands may hold at once (Compare's stored data), default 32 MiB; see scratch.ts. */
  scratchBudgetBytes?: number;
  /**
   * How long a reset waits for I/O in flight before giving up what its backend can let go of (default 5000 ms);
   * also what giveUpIoInRemovedMemory is meant to be called after. See giveUpIo.
   */
  ioAbandonMs?: number;
  /** I/O rate limits (io-limits.ts), for the controller and per namespace; changed later with setIoLimits. */
  ioLimits?: ControllerIoLimits;
  logger?: Logger;
}

const DOORBELL_BASE = Reg.DOORBELLS;
const DOORBELL_END = DOORBELL_BASE + DOORBELL_COUNT * 4;
const MAX_IO_QUEUE_PAIRS = DOORBELL_COUNT / 2 - 1;
const MAX_QUEUE_ENTRIES = 65536;
/** MDTS above 2^20 pages (4 GiB) is beyond anything a data pointer may describe. */
const MAX_MDTS = 20;
/** Admin data transfers are capped even when MDTS is unlimited: no admin page we serve is anywhere near this. */
const ADMIN_TRANSFER_CAP = 1 << 20;
/** How long a reset or an unmap waits for stuck I/O before giving it up (where the backend can let go). */
export const DEFAULT_IO_ABANDON_MS = 5000;
/** How often a detach looks whether the detached namespace's commands have completed. */
const DETACH_DRAIN_POLL_MS = 5;

export class NvmeController {
  static readonly BAR0_SIZE = 0x4000;

  /**
   * The value last taken from each doorbell word (the queue engine's): in polled mode the native poller compares
   * the shared doorbell page with it.
   */
  readonly consumedDoorbells: Uint32Array;

  private readonly logger: Logger;
  private readonly dma: DmaSpace;
  private readonly namespaces: NamespaceSet;
  private readonly registers: ControllerRegisters;
  private readonly features: FeatureState;
  private readonly health = new HealthRecord();
  private readonly interrupts: InterruptCoalescer;
  private readonly io: ControllerIoContext;
  private readonly queues: QueueEngine;
  private readonly events: AsyncEvents;
  private readonly commands: CommandRunner;
  private readonly scratch: ScratchBudget;
  /** The largest transfer MDTS allows (0 = no limit): a namespace attached at runtime must accept it. */
  private readonly maxTransferBytes: number;

  /** See NvmeControllerOptions.ioAbandonMs. */
  readonly ioAbandonMs: number;
  private abandonTimer: NodeJS.Timeout | undefined;
  private processScheduled = false;
  /** A live upgrade quiesced the controller: nothing is fetched until resume / start. */
  private quiesced = false;
  /** A CC.SHN shutdown in progress (its drain and flush). */
  private shutdownInProgress: Promise<void> | undefined;
  /** The controller was enabled and has not completed a shutdown since (a reset now counts as unsafe). */
  private unsafeIfReset = false;
  private resets = 0;

  constructor(options: NvmeControllerOptions) {
    const logger = (this.logger = (options.logger ?? rootLogger).child({ component: 'nvme' }));
    const dma = (this.dma = options.dma);
    const identity = resolveControllerIdentity(options.identity);
    const maxIoQueuePairs = checkOption('maxIoQueuePairs', options.maxIoQueuePairs ?? 31, 1, MAX_IO_QUEUE_PAIRS);
    const maxQueueEntries = checkOption('maxQueueEntries', options.maxQueueEntries ?? 1024, 2, MAX_QUEUE_ENTRIES);
    this.ioAbandonMs = checkOption('ioAbandonMs', options.ioAbandonMs ?? DEFAULT_IO_ABANDON_MS, 0, 3_600_000);
    const doorbells = options.doorbells;
    if (!(doorbells instanceof Uint32Array) || doorbells.length < 2 * (maxIoQueuePairs + 1)) {
      throw new Error(
        `NVMe controller: doorbells must be a Uint32Array of at least ${2 * (maxIoQueuePairs + 1)} words ` +
          `(${DOORBELL_COUNT} for a full page)`,
      );
    }
    const sinkVectors = options.interrupts.vectorCount;
    if (!Number.isInteger(sinkVectors) || sinkVectors < 0 || sinkVectors > 2048) {
      throw new Error(`NVMe controller: interrupt vectorCount ${String(sinkVectors)} must be an integer in 0..2048`);
    }
    // INTx counts as vector 0, so there is always at least one.
    const vectorCount = Math.max(1, sinkVectors);
    const namespaces = (this.namespaces = new NamespaceSet(options.namespaces));
    const mdts = namespaces.maxTransferLog2(checkOption('mdtsPages', options.mdtsPages ?? 8, 0, MAX_MDTS));
    const maxTransferBytes = (this.maxTransferBytes = mdts === 0 ? 0 : PAGE_SIZE * 2 ** mdts);
    const volatileWriteCachePresent = namespaces.volatileWriteCache;

    const registers = (this.registers = new ControllerRegisters({ maxQueueEntries }));
    const features = (this.features = new FeatureState({ maxIoQueuePairs, vectorCount, volatileWriteCachePresent }));
    const interrupts = (this.interrupts = new InterruptCoalescer(options.interrupts, vectorCount, registers, logger));
    const doorbellsShared = options.doorbellsShared ?? true;
    const queues = new QueueEngine({ dma, doorbells, doorbellsShared, maxIoQueuePairs, features, interrupts, logger });
    this.queues = queues;
    this.consumedDoorbells = queues.consumedDoorbells;
    // Over PCIe a keep-alive expiry is a controller failure: the host must reset us.
    const expired = (fields: Record<string, unknown>): void => this.fail('keep alive timeout expired', fields);
    const events = (this.events = new AsyncEvents(queues, interrupts, features, expired, logger));
    const health = this.health;
    const admin = new AdminCommandHandler({
      dma,
      registers,
      queues,
      events,
      features,
      namespaces,
      health,
      identifyInfo: {
        identity,
        mdts,
        maxQueueEntries,
        volatileWriteCache: volatileWriteCachePresent,
      },
      maxAdminTransferBytes: Math.min(maxTransferBytes || ADMIN_TRANSFER_CAP, ADMIN_TRANSFER_CAP),
      vectorCount,
    });
    const scratch = (this.scratch = new ScratchBudget(options.scratchBudgetBytes ?? DEFAULT_SCRATCH_BUDGET_BYTES));
    const io = (this.io = new ControllerIoContext(dma, namespaces, maxTransferBytes, health.counters, features, logger, scratch));
    const owner: CommandOwner = {
      fail: (reason, fields) => this.fail(reason, fields),
      abandonedDrained: () => this.abandonedDrained(),
    };
    this.commands = new CommandRunner({ admin, io, queues, interrupts, events, health, registers, owner, logger });
    queues.connect(this.commands);
    if (options.ioLimits) this.setIoLimits(options.ioLimits);
  }

  /**
   * Replaces the I/O rate limits (docs/nvme.md "Rate limits"); none (or all zero) removes them, and commands they
   * held back start at once. Throws, with nothing changed, on an invalid limit. A namespace's limits may name an
   * NSID that is not attached (they apply once it is).
   */
  setIoLimits(limits: ControllerIoLimits): void {
    const problem = checkIoLimits(limits);
    if (problem) throw new Error(`NVMe controller: ${problem}`);
    const commands = this.commands;
    if (!hasIoLimits(limits)) {
      const limiter = commands.limiter;
      if (limiter === undefined) return;
      commands.runAllParked();
      limiter.close();
      commands.limiter = undefined;
    } else if (commands.limiter) {
      commands.limiter.set(limits);
    } else {
      commands.limiter = new IoLimiter(limits, { wake: this.processLater });
    }
    this.logger.info('I/O rate limits set', { limits });
  }

  /** I/O commands the rate limits hold back now. */
  get throttledCommands(): number {
    return this.commands.limiter?.parkedCount ?? 0;
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
      if (aligned) this.queues.doorbellWrite((offset - DOORBELL_BASE) >>> 2, readUint32(src, 0));
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
   * `consumedDoorbells` (writes to queues that do not exist raise an Invalid Doorbell Register event), and changed
   * shadow doorbells. Returns whether any doorbell had a new value (if not, `processQueues` has nothing new to do).
   * `all` false scans only the words of queues that exist: cheap enough for a busy poll loop, which must still scan
   * all words now and then (writes to other words are guest errors that must be taken and reported).
   */
  pollDoorbells(all = true): boolean {
    return this.queues.pollDoorbells(all);
  }

  /** I/O commands fetched and not completed yet (asynchronous backend work outstanding when > 0 after a pass). */
  get ioInFlight(): number {
    return this.commands.inFlight;
  }

  /**
   * Process pending submissions; each interrupt vector with new completions is signalled once per call. `now`: a
   * clock reading (performance.now) the caller took just before, if it has one. Returns the clock reading the pass
   * took at its end, or NaN when it took none (a poll loop can use it instead of reading the clock again).
   */
  processQueues(now?: number): number {
    const interrupts = this.interrupts;
    if (!this.queues.active || interrupts.batching || this.quiesced) return NaN;
    interrupts.openBatch();
    this.commands.beginPass(now);
    let end = NaN;
    try {
      this.commands.releaseParked();
      const more = this.queues.run();
      this.commands.finishBatch();
      if (more) this.scheduleProcessing();
      this.events.deliver();
    } catch (error) {
      this.fail('internal error while processing queues', { error });
    } finally {
      // Nothing fetched waits past its pass, even after a failure (the completions then go nowhere).
      this.commands.finishBatch();
      end = this.commands.endPass();
      interrupts.closeBatch();
    }
    return end;
  }

  /**
   * Function-level reset / DEVICE_RESET / client disconnect: back to power-on state (registers, queues, features,
   * events). Resolves once abandoned in-flight I/O has drained (its completions are discarded).
   */
  reset(): Promise<void> {
    this.teardown('reset');
    this.registers.powerOnReset();
    this.namespaces.changed.clear();
    return this.commands.whenDrained();
  }

  // ---- live upgrade ------------------------------------------------------------------------------------------

  /**
   * Stops fetching commands, lets in-flight I/O complete (its completions are posted), waits for a shutdown in
   * progress and signals every pending interrupt. Doorbell writes keep being recorded. Outstanding AERs stay
   * outstanding. `snapshot` or `resume` follows.
   */
  async quiesce(): Promise<void> {
    this.quiesced = true;
    this.events.stopKeepAlive();
    // What the rate limits hold back runs now: a snapshot is taken with nothing in flight.
    this.commands.runAllParked();
    for (;;) {
      await this.commands.whenDrained();
      if (this.shutdownInProgress) await this.shutdownInProgress;
      // A completion may have freed CQ slots an event was waiting for: deliver it before the snapshot.
      this.events.deliver();
      if (this.commands.inFlight === 0) break;
    }
    this.interrupts.flushNow();
  }

  /** Undoes `quiesce` (or starts a restored controller): fetching, the keep-alive timer and processing go on. */
  resume(): void {
    if (!this.quiesced) return;
    this.quiesced = false;
    if (this.queues.active && this.features.keepAliveMillis > 0) this.events.restartKeepAlive();
    this.processQueues();
    this.interrupts.scheduleFlush();
  }

  /**
   * The controller's state: for a live upgrade's successor (quiesced: nothing in flight), or, `live`, for a crash
   * checkpoint taken while serving, whose queue positions and commands in flight the command journal completes.
   */
  snapshot(live = false): NvmeControllerState {
    if (!this.quiesced && !live) throw new Error('NVMe controller snapshot while not quiesced');
    return {
      version: CONTROLLER_STATE_VERSION,
      namespaceCount: this.namespaces.count,
      nsids: [...this.namespaces.activeNsids],
      registers: this.registers.snapshot(),
      features: this.features.snapshot(),
      health: this.health.snapshot(),
      events: this.events.snapshot(),
      interrupts: this.interrupts.snapshot(),
      queues: this.queues.snapshot(live),
      commands: this.commands.snapshot(),
      changedNamespaces: this.namespaces.changed.snapshot(),
      unsafeIfReset: this.unsafeIfReset,
      resets: this.resets,
    };
  }

  /**
   * On a controller freshly built with the same options and namespaces: takes on a predecessor's state. Stays
   * quiesced (nothing fetched, no interrupt, no guest memory touched) until `resume()`. `doorbellPageKept`: a crash
   * recovery's private doorbell page outlived the predecessor and is newer than the state's copy.
   */
  restore(state: NvmeControllerState, options: { doorbellPageKept?: boolean } = {}): void {
    checkSnapshotVersion(state, 'NVMe controller state', CONTROLLER_STATE_VERSION);
    const saved = state.nsids ?? Array.from({ length: state.namespaceCount }, (_, index) => index + 1);
    const here = this.namespaces.activeNsids;
    if (saved.length !== here.length || saved.some((nsid, index) => nsid !== here[index])) {
      throw new Error(`snapshot has namespaces ${saved.join(', ') || 'none'}, this controller ${here.join(', ') || 'none'}`);
    }
    this.quiesced = true;
    this.registers.restore(state.registers);
    this.features.restore(state.features);
    this.health.restore(state.health);
    this.events.restore(state.events);
    this.queues.restore(state.queues, options.doorbellPageKept);
    this.interrupts.restore(state.interrupts);
    this.commands.restore(state.commands);
    this.namespaces.changed.restore(state.changedNamespaces);
    this.unsafeIfReset = state.unsafeIfReset;
    this.resets = state.resets;
  }

  // ---- crash recovery ----------------------------------------------------------------------------------------

  /**
   * Crash recovery (docs/restart.md): journals every fetch and completion into `journal` from now on, and calls
   * `checkpoint` (which writes this controller's state, `snapshot(true)`) whenever an admin command changed it,
   * before the command's completion is posted. Call before the first command, or after `recover`.
   */
  attachJournal(journal: CommandJournal, checkpoint: () => void): void {
    if (journal.queues < this.consumedDoorbells.length / 2) throw new Error('command journal too small for this controller\'s queues');
    this.queues.journal = journal;
    this.commands.attachJournal(journal, checkpoint);
  }

  /**
   * Crash recovery, on a controller just `restore`d from a crash checkpoint, with `journal` as the predecessor left
   * it: puts every queue where the predecessor really was, posts the completions it was writing, runs again the
   * commands it had fetched and not completed, and signals every vector with completions the host has not consumed.
   * Returns how many commands it ran again and posted. Still quiesced afterwards: `resume` starts fetching.
   */
  recoverFromJournal(journal: CommandJournal, checkpoint: () => void): { rerun: number; posted: number; admin: string } {
    // The checkpoint was written right after the last admin command it reflects: its admin SQ's fetch count says
    // which admin commands it holds the effects of.
    const checkpointedAdminFetches = this.queues.submissionQueue(0)?.fetches ?? 0;
    const { io, freed, admin } = this.queues.recover(journal);
    this.attachJournal(journal, checkpoint);
    this.commands.recoverIo(io, freed);
    let adminOutcome = 'none';
    if (admin) {
      const applied = ((admin.entry.sequence - checkpointedAdminFetches) | 0) <= 0;
      adminOutcome = !applied ? 'ran again' : admin.entry.state === EntryState.Completing && !admin.posted ? 'completion posted' : 'already done';
      this.commands.recoverAdmin(admin.entry, admin.sq, applied, admin.posted);
    }
    // The predecessor may have died between writing a CQE and signalling it; a spurious interrupt is harmless.
    // Marked vectors go out at the first flush once serving (resume).
    for (const cq of this.queues.completions) if (cq.interruptsEnabled && cq.posted > 0) this.interrupts.mark(cq.vector);
    const posted = io.filter(({ entry }) => entry.state === EntryState.Completing).length;
    return { rerun: io.length - posted, posted, admin: adminOutcome };
  }

  /**
   * Gives up the I/O commands in flight whose data lies in guest memory the hypervisor has unmapped (DMA_UNMAP waits
   * for them), where the backend can let go of that memory (NVMe/TCP, commands still queued in a file namespace, or
   * commands whose backend work uses no guest memory). They complete with Data Transfer Error. Commands whose data a
   * backend is still moving (a file read or write running on a thread) cannot be given up: the unmap waits for them.
   */
  giveUpIoInRemovedMemory(): { abandoned: number; stuck: number } {
    const dma = this.dma;
    const result = this.commands.giveUp((request) => {
      for (const window of request.pinned) if (dma.isRetired(window)) return true;
      return false;
    }, Status.DATA_TRANSFER_ERROR);
    if (result.abandoned > 0 || result.stuck > 0) {
      this.logger.warn('gave up I/O commands whose guest memory is being unmapped', {
        ...result,
        note: result.stuck > 0 ? 'the unmap waits for the rest: their backend is still moving their data' : undefined,
      });
    }
    return result;
  }

  /** Flushes every namespace (graceful shutdown). */
  async flush(): Promise<void> {
    await this.namespaces.flush();
  }

  stats(): NvmeControllerStats {
    const counters = this.health.counters;
    const commands = this.commands;
    return {
      state: this.state(),
      ioSubmissionQueues: this.queues.ioSubmissionQueueCount,
      ioCompletionQueues: this.queues.ioCompletionQueueCount,
      inFlight: commands.inFlight,
      commands: { ...commands.commandCounts, failed: this.queues.failedCompletions, failedByStatus: byStatusName(this.queues.failedByStatus) },
      namespaces: this.namespaces.activeNsids.map((nsid) => {
        const counters = this.io.namespaceCounters[nsid - 1]!;
        return {
          nsid,
          readCommands: counters.readCommands,
          writeCommands: counters.writeCommands,
          bytesRead: counters.bytesRead,
          bytesWritten: counters.bytesWritten,
          failedByStatus: byStatusName(counters.failedByStatus),
        };
      }),
      queueDepths: this.queues.ioQueueDepths(),
      interrupts: this.interrupts.signalled,
      bytesRead: counters.bytesRead,
      bytesWritten: counters.bytesWritten,
      mediaErrors: counters.mediaErrors,
      errorLogEntries: this.health.errorLog.count,
      asyncEventRequestsOutstanding: this.events.outstandingRequests,
      resets: this.resets,
      unsafeShutdowns: this.health.unsafeShutdowns,
      latency: commands.latency.snapshot(),
      scratch: this.scratch.stats(),
      throttled: { now: this.throttledCommands, total: this.commands.throttledTotal },
    };
  }

  // ---- namespaces changed at runtime -------------------------------------------------------------------------

  /**
   * Attaches `entry` at runtime: commands to its NSID work from now on, Identify reports it, and the host is told
   * (Changed Namespace List, Namespace Attribute Notice). Throws, with nothing changed, when the NSID is taken or out
   * of range or the namespace does not fit what the controller reported (MDTS, volatile write cache).
   */
  attachNamespace(entry: ActiveNamespace): void {
    this.namespaces.attach(entry, this.maxTransferBytes);
    this.io.countFrom(entry.nsid);
    this.logger.info('namespace attached', { nsid: entry.nsid, namespace: entry.namespace.description, blocks: entry.namespace.blockCount });
    this.notifyNamespaceChanged(entry.nsid);
  }

  /**
   * Detaches namespace `nsid` at runtime: commands fetched from now on that name it complete with Invalid Namespace
   * or Format; those already started complete as usual. The host is told as for an attach. Resolves with the
   * namespace once none of its commands is in flight any more (the caller closes it); undefined when `nsid` was not
   * active.
   */
  async detachNamespace(nsid: number): Promise<Namespace | undefined> {
    const entry = this.namespaces.detach(nsid);
    if (!entry) return undefined;
    // Its rate limits go with it (the daemon drops them from the saved definition too).
    this.commands.limiter?.forgetNamespace(nsid);
    this.logger.info('namespace detached', { nsid, namespace: entry.namespace.description, inFlight: this.commands.inFlightOn(nsid) });
    this.notifyNamespaceChanged(nsid);
    while (this.commands.inFlightOn(nsid) > 0) await sleep(DETACH_DRAIN_POLL_MS);
    return entry.namespace;
  }

  /** Why `namespace` cannot take over namespace `nsid` (NamespaceSet.replacementProblem); undefined when it can. */
  replacementProblem(nsid: number, namespace: Namespace): string | undefined {
    return this.namespaces.replacementProblem(nsid, namespace, this.maxTransferBytes);
  }

  /**
   * Serves namespace `nsid` from `namespace` from the next command on (a backing swap: the guest sees no change);
   * returns the one it replaces. Commands already started finish on that one; `inFlightOn` counts them.
   */
  replaceNamespace(nsid: number, namespace: Namespace): Namespace {
    const old = this.namespaces.replace(nsid, namespace);
    this.logger.info('namespace served by another object', { nsid, from: old.description, to: namespace.description });
    return old;
  }

  /** I/O commands in flight for namespace `nsid` (broadcast Flushes included). */
  inFlightOn(nsid: number): number {
    return this.commands.inFlightOn(nsid);
  }

  /** The active NSIDs, ascending. */
  get activeNsids(): readonly number[] {
    return this.namespaces.activeNsids;
  }

  /** Namespace attribute changed (resize, attach, detach): queues a Changed Namespace List entry and a Notice event. */
  notifyNamespaceChanged(nsid: number): void {
    if (!Number.isInteger(nsid) || nsid < 1 || nsid > MAX_NSID) {
      this.logger.warn('namespace change notice for an unknown namespace ignored', { nsid });
      return;
    }
    this.namespaces.changed.add(nsid);
    if ((this.features.asyncEventConfig & AsyncEventConfig.NAMESPACE_ATTRIBUTE_NOTICES) !== 0) {
      this.events.raise(
        AsyncEvent.TYPE_NOTICE,
        AsyncEvent.INFO_NOTICE_NAMESPACE_ATTRIBUTE_CHANGED,
        LogPageId.CHANGED_NAMESPACE_LIST,
      );
    }
  }

  /** Controller Fatal Status: log, stop processing until the host resets the controller. */
  fail(reason: string, fields: Record<string, unknown> = {}): void {
    if ((this.registers.csts & Csts.CFS) !== 0) return;
    this.logger.error(`controller fatal: ${reason}`, fields);
    this.registers.setCstsBits(Csts.CFS, true);
    this.queues.active = false;
    this.events.stopKeepAlive();
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
          this.interrupts.resignalUnmasked(value, this.queues.completions);
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
    if (this.commands.draining) return; // retried once the previous reset has drained
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
    this.queues.createAdminQueues(registers.asq, sqEntries, registers.acq, cqEntries);
    this.features.reset();
    this.events.reset();
    this.queues.active = true;
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
    if (this.commands.inFlight === 0) this.registers.csts = 0;
    else this.registers.csts = Csts.RDY; // RDY stays set until the drain finishes; CFS and SHST clear now
  }

  /** Drops all queues, commands, events and feature values; in-flight I/O is left to drain and discarded. */
  private teardown(reason: string): void {
    if (this.unsafeIfReset) this.health.unsafeShutdowns++;
    this.unsafeIfReset = false;
    const hadQueues = this.queues.hasQueues;
    this.resets++;
    const abandoned = this.commands.abandon();
    this.queues.active = false;
    this.queues.reset();
    this.events.reset();
    this.features.reset();
    this.interrupts.reset();
    if (hadQueues || abandoned > 0) {
      this.logger.info('controller reset', { reason, abandonedCommands: abandoned });
    }
    if (abandoned > 0 && this.abandonTimer === undefined) {
      this.abandonTimer = setTimeout(this.giveUpAfterReset, this.ioAbandonMs);
      this.abandonTimer.unref();
    }
  }

  /**
   * A reset has waited ioAbandonMs for the I/O it abandoned (a backend that does not answer: an NVMe/TCP target gone
   * silent): gives up what the backends can let go of, so the reset (and a hypervisor's DEVICE_RESET or reconnect)
   * completes. Their completions are discarded, as for every command a reset abandoned.
   */
  private readonly giveUpAfterReset = (): void => {
    this.abandonTimer = undefined;
    const commands = this.commands;
    if (commands.inFlight === 0) return;
    const generation = commands.generation;
    const result = commands.giveUp((_request, fetchedIn) => fetchedIn !== generation, Status.ABORT_REQUESTED);
    if (result.abandoned === 0 && result.stuck === 0) return;
    this.logger.warn(`reset waited ${this.ioAbandonMs} ms for I/O in flight: gave up what the backends could let go of`, {
      ...result,
      note: result.stuck > 0 ? 'the reset waits for the rest: their backend is still moving their data' : undefined,
    });
  };

  /** The I/O a reset abandoned has drained: CSTS.RDY clears. */
  private abandonedDrained(): void {
    this.registers.csts = 0;
    // The host may have set CC.EN again while we drained; it now gets its enable.
    if ((this.registers.cc & Cc.EN) !== 0) this.enable();
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
    this.queues.active = false;
    this.events.stopKeepAlive();
    const commands = this.commands;
    // What the rate limits hold back runs now: no pass would release it once fetching stopped, and the host waits
    // for SHST, not for the limit.
    commands.runAllParked();
    const generation = commands.generation;
    const started = Date.now();
    this.logger.info('shutdown requested', { kind: kind === ShutdownNotification.ABRUPT ? 'abrupt' : 'normal' });
    const done = commands.whenDrained()
      .then(() => this.flushForShutdown())
      .then((durable) => {
        if (this.shutdownInProgress === done) this.shutdownInProgress = undefined;
        if (generation !== commands.generation) return; // reset in the meantime: SHST was cleared
        if (durable) this.unsafeIfReset = false;
        else this.fail('namespace flush failed at shutdown: written data may not be durable');
        registers.shutdownStatus = ShutdownStatus.COMPLETE;
        this.logger.info('shutdown complete', { millis: Date.now() - started, durable });
      });
    this.shutdownInProgress = done;
  }

  /** Flushes every namespace (all of them, even after a failure); logs each failure. True when all succeeded. */
  private async flushForShutdown(): Promise<boolean> {
    const entries = this.namespaces.entries;
    const results = await this.namespaces.flushEach();
    let durable = true;
    results.forEach((result, index) => {
      if (result.status === 'fulfilled') return;
      durable = false;
      this.logger.error('flushing namespace at shutdown failed', {
        nsid: entries[index]!.nsid,
        namespace: entries[index]!.namespace.description,
        error: result.reason,
      });
    });
    return durable;
  }

  private state(): ControllerState {
    const csts = this.registers.csts;
    if ((csts & Csts.CFS) !== 0) return 'failed';
    const shutdown = this.registers.shutdownStatus;
    if (shutdown === ShutdownStatus.PROCESSING) return 'shutting-down';
    if (shutdown === ShutdownStatus.COMPLETE) return 'shut-down';
    return (csts & Csts.RDY) !== 0 && this.queues.active ? 'ready' : 'disabled';
  }

  private readonly processLater = (): void => {
    this.processScheduled = false;
    this.processQueues();
  };

  /** Out of budget with work left: another pass on a later turn, so completions and other devices get to run. */
  private scheduleProcessing(): void {
    if (this.processScheduled) return;
    this.processScheduled = true;
    setImmediate(this.processLater);
  }
}

function readUint32(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>> 0;
}

/** Why `limits` is invalid (the first problem), or undefined. */
export function checkIoLimits(limits: ControllerIoLimits): string | undefined {
  const controller = limits.controller && ioLimitsProblem(limits.controller, 'controller');
  if (controller) return controller.message;
  const seen = new Set<number>();
  for (const entry of limits.namespaces ?? []) {
    if (!Number.isInteger(entry.nsid) || entry.nsid < 1 || entry.nsid > MAX_NSID) return `namespace limits for NSID ${entry.nsid}: NSIDs are 1 to ${MAX_NSID}`;
    if (seen.has(entry.nsid)) return `namespace ${entry.nsid} has limits twice`;
    seen.add(entry.nsid);
    const problem = ioLimitsProblem(entry, `namespace ${entry.nsid}`);
    if (problem) return problem.message;
  }
  return undefined;
}

function checkOption(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`NVMe controller: ${name} ${String(value)} must be an integer in ${min}..${max}`);
  }
  return value;
}

/** Counts by status value as counts by status name (statuses differing only in DNR add up). */
function byStatusName(counts: ReadonlyMap<number, number>): Record<string, number> {
  const named: Record<string, number> = {};
  for (const [status, count] of counts) {
    const name = statusName(status);
    named[name] = (named[name] ?? 0) + count;
  }
  return named;
}
