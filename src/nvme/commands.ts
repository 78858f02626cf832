/**
 * Command execution: the controller's side of the queue engine's `CommandSink` (SPDK's transport-to-ctrlr shape).
 * Runs the admin and I/O commands the engine fetches, owns the pooled I/O request slots, counts commands and
 * latency, records failed commands in the error log, and tracks commands in flight, so a reset can abandon them
 * (their completions are discarded) and wait until they have drained. The state machine (controller.ts) reaches it
 * through abandon / whenDrained; it reaches the state machine only through `CommandOwner`.
 */
import { performance } from 'node:perf_hooks';
import type { DmaMapping, DmaSpace } from '../memory/guest-memory.js';
import type { Namespace } from '../namespace/namespace.js';
import { AdminOpcode, AsyncEvent, IoOpcode, LogPageId, SQE_SIZE, Status } from '../spec/nvme.js';
import type { Logger } from '../util/log.js';
import { DEFERRED, type AdminCommandHandler, type AdminResult } from './admin.js';
import type { AsyncEvents } from './async-events.js';
import type { FeatureState } from './features.js';
import type { InterruptCoalescer } from './interrupts.js';
import { abandonIoCommand, BROADCAST_NSID, dataBytes, executeIoCommand, IoBatch, runIoBatch } from './io.js';
import { type IoContext, type IoDone, type IoRequest, type NamespaceIoCounters, newNamespaceIoCounters, type SmartCounters } from './io-types.js';
import { NO_COMMAND, type HealthRecord } from './log-pages.js';
import type { ScratchBudget } from './scratch.js';
import type { NamespaceSet } from './namespaces.js';
import type { CommandSink, QueueEngine } from './queue-engine.js';
import type { SubmissionQueue } from './queues.js';
import { Csts, type ControllerRegisters } from './registers.js';
import { LatencyHistogram } from './stats.js';
import { EntryState, type CommandJournal, type JournalEntry } from './command-journal.js';
import type { IoLimiter } from './io-limits.js';

/** What the command runner needs of its controller. */
export interface CommandOwner {
  /** Controller Fatal Status. */
  fail(reason: string, fields?: Record<string, unknown>): void;
  /** The commands a reset abandoned (see CommandRunner.abandon) have all completed. */
  abandonedDrained(): void;
}

export interface CommandRunnerParts {
  admin: AdminCommandHandler;
  io: IoContext;
  queues: QueueEngine;
  interrupts: InterruptCoalescer;
  events: AsyncEvents;
  health: HealthRecord;
  /** Read for CSTS.CFS: completions of a failed controller are discarded. */
  registers: ControllerRegisters;
  owner: CommandOwner;
  logger: Logger;
}

/**
 * The controller's IoContext. A class rather than an object literal: a literal with a getter is a dictionary-mode
 * object in V8, and every `ctx.x` of every I/O command would then be a generic property lookup.
 */
export class ControllerIoContext implements IoContext {
  /** Index NSID - 1 (io.ts counts there); a namespace attached at runtime gets fresh counters (countFrom). */
  readonly namespaceCounters: NamespaceIoCounters[] = [];
  /** A pass's Reads and Writes on memory namespaces, copied together (io.ts IoBatch; run by CommandRunner). */
  readonly batch = new IoBatch();

  constructor(
    readonly dma: DmaSpace,
    private readonly namespaceSet: NamespaceSet,
    readonly maxTransferBytes: number,
    readonly counters: SmartCounters,
    private readonly features: FeatureState,
    readonly logger: Logger,
    readonly scratch: ScratchBudget,
  ) {
    for (const { nsid } of namespaceSet.entries) this.countFrom(nsid);
  }

  /** Namespace `nsid` was attached: its I/O counts start from zero. */
  countFrom(nsid: number): void {
    this.namespaceCounters[nsid - 1] = newNamespaceIoCounters();
  }

  namespace(nsid: number): Namespace | undefined {
    return this.namespaceSet.entry(nsid)?.namespace;
  }

  allNamespaces(): readonly Namespace[] {
    return this.namespaceSet.namespaces;
  }

  /** The Volatile Write Cache feature as it is now: Set Features changes it between commands. */
  get writeCacheEnabled(): boolean {
    return this.features.volatileWriteCache;
  }
}

/** An I/O command slot: the core owns and reuses these (no allocation per command). */
class PooledRequest implements IoRequest {
  /** Its entry in the command journal (the index among every request made), or -1 beyond the journal's size. */
  journalSlot = -1;
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
  /**
   * Held back by the rate limits: fetched and counted in flight, not started. It looks its namespace up when it
   * starts, so a detach or a backing swap need not wait for it.
   */
  parked = false;
}

export class CommandRunner implements CommandSink {
  /** I/O commands fetched and not yet completed. */
  inFlight = 0;
  /** Bumped by abandon; a request carries the value of its fetch, so completions of abandoned commands are dropped. */
  generation = 0;
  /** Commands abandoned by a reset are still in flight (a new enable waits for them). */
  draining = false;
  readonly latency = new LatencyHistogram();
  /** Commands by kind; failed completions are counted by the queue engine. */
  readonly commandCounts = { admin: 0, read: 0, write: 0, otherIo: 0 };

  private readonly admin: AdminCommandHandler;
  private readonly io: IoContext;
  private readonly queues: QueueEngine;
  private readonly interrupts: InterruptCoalescer;
  private readonly events: AsyncEvents;
  private readonly health: HealthRecord;
  private readonly counters: SmartCounters;
  private readonly registers: ControllerRegisters;
  private readonly owner: CommandOwner;
  private readonly logger: Logger;

  private readonly drainWaiters: Array<() => void> = [];
  private readonly adminSqe = new DataView(new ArrayBuffer(SQE_SIZE));
  private readonly adminResult: AdminResult = { status: 0, dw0: 0 };
  private readonly requestPool: PooledRequest[] = [];
  /** Every request slot ever made (in flight or pooled), for giving up stuck commands. */
  private readonly requests: PooledRequest[] = [];
  private busySince = 0;
  /** Crash recovery's command journal (command-journal.ts), when enabled; see attachJournal. */
  private journal: CommandJournal | undefined;
  /**
   * Writes the crash-recovery checkpoint (the controller's whole state, JSON) at once: called after an admin command
   * changed state and before its completion is posted.
   */
  private checkpoint: (() => void) | undefined;
  /**
   * The clock is read once per processing pass, not per command (a clock read costs 100-250 ns on the development
   * VM, as much as the rest of a command's bookkeeping): `passStart` is the time of the pass's first I/O fetch and
   * stands for the fetch time of every command of the pass; the commands that complete synchronously within the
   * pass (`passCompleted`) are timed together when it ends, each recorded with the pass's mean service time.
   */
  private passStart = 0;
  private passStarted = false;
  private passCompleted = 0;
  /** A clock reading the caller of the pass took just before it (see beginPass), or NaN. */
  private passClock = NaN;
  /** The controller's I/O rate limits (io-limits.ts); undefined while it has none, so unlimited I/O pays nothing. */
  limiter: IoLimiter<PooledRequest> | undefined;
  /** Commands the rate limits made wait, since the controller was built. */
  throttledTotal = 0;

  constructor(parts: CommandRunnerParts) {
    this.admin = parts.admin;
    this.io = parts.io;
    this.queues = parts.queues;
    this.interrupts = parts.interrupts;
    this.events = parts.events;
    this.health = parts.health;
    this.counters = parts.health.counters;
    this.registers = parts.registers;
    this.owner = parts.owner;
    this.logger = parts.logger;
  }

  /** Crash recovery: from now on every fetch and completion is journaled, and admin commands checkpoint. */
  attachJournal(journal: CommandJournal, checkpoint: () => void): void {
    this.journal = journal;
    this.checkpoint = checkpoint;
    this.requests.forEach((request, index) => (request.journalSlot = index < journal.entries ? index : -1));
  }

  /** Command counts, for a live upgrade's successor (nothing is in flight then). */
  snapshot(): { version: number; counts: { admin: number; read: number; write: number; otherIo: number } } {
    return { version: 1, counts: { ...this.commandCounts } };
  }

  restore(state: { version: number; counts: { admin: number; read: number; write: number; otherIo: number } }): void {
    Object.assign(this.commandCounts, state.counts);
  }

  /**
   * The controller's processing pass ended: one clock read times the commands that completed within it (latency,
   * and busy time when nothing is left in flight); the next fetch reads the clock afresh. Returns that reading, or
   * NaN when there was none.
   */
  endPass(): number {
    this.passClock = NaN;
    if (!this.passStarted) return NaN;
    this.passStarted = false;
    const completed = this.passCompleted;
    if (completed === 0 && this.inFlight > 0) return NaN;
    const now = performance.now();
    if (completed > 0) {
      this.passCompleted = 0;
      this.latency.recordMany(((now - this.passStart) * 1000) / completed, completed);
    }
    if (this.inFlight === 0) this.counters.busyMillis += now - this.busySince;
    return now;
  }

  /**
   * A processing pass starts; `now`, when given, is a clock reading its caller took just before (a poll loop reads
   * the clock anyway) and stands for the pass's fetch time, saving a read.
   */
  beginPass(now: number | undefined): void {
    this.passClock = now ?? NaN;
  }

  /**
   * Controller reset: the commands in flight are abandoned (they run to completion, but their completions are
   * discarded) and `draining` holds until they have. Returns how many there are.
   */
  abandon(): number {
    this.generation++;
    // Held back by the rate limits, never started: they end here, their completions discarded like the others'.
    this.limiter?.drain((request) => this.ioDone(request, Status.ABORT_REQUESTED));
    if (this.inFlight > 0) this.draining = true;
    return this.inFlight;
  }

  /** Starts the commands the rate limits held back whose buckets allow them now (at the start of a pass). */
  releaseParked(): void {
    this.limiter?.release(this.runParked);
  }

  /** Starts every command the rate limits hold back, whatever the limits say (a live upgrade's quiesce). */
  runAllParked(): void {
    this.limiter?.drain(this.runParked);
    // Outside a pass: what joined the I/O batch completes now, or the quiesce would wait for it forever.
    this.finishBatch();
  }

  private readonly runParked = (request: PooledRequest): void => this.run(request);

  /** CommandSink: the commands of `sq` the rate limits hold back complete as aborted by the SQ's deletion. */
  abortNotStarted(sq: SubmissionQueue): void {
    this.limiter?.drain(
      (request) => {
        request.parked = false;
        this.ioDone(request, Status.ABORTED_SQ_DELETION);
      },
      (request) => request.sq === sq,
    );
  }

  /** Resolves once no I/O command is in flight. */
  whenDrained(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /**
   * Completes the I/O commands waiting in the batch (io.ts IoBatch): at the end of a processing pass, and before
   * anything that must see them done.
   */
  finishBatch(): void {
    runIoBatch(this.io);
  }

  /** CommandSink: runs the admin command at the head of `sq` (the queue engine reserved its CQ slot). */
  executeAdmin(sq: SubmissionQueue): void {
    // Admin commands change namespaces and queues: the I/O fetched before them completes first.
    this.finishBatch();
    const sqe = this.adminSqe;
    const sqSlot = sq.head;
    sq.fetch(sqe);
    this.journal?.beginAdmin(sqSlot, sqe, sq.fetches, sq.head);
    this.runAdmin(sq, sqe);
  }

  /** Runs a fetched admin command (or one a predecessor left unfinished) and posts its completion. */
  private runAdmin(sq: SubmissionQueue, sqe: DataView): void {
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
    const journal = this.journal;
    if (result.status === DEFERRED) {
      // An AER may stay outstanding forever; it takes a CQ slot only when an event completes it.
      if (opcode === AdminOpcode.ASYNC_EVENT_REQUEST) sq.cq.reserved--;
      if (journal) {
        this.checkpoint!(); // the command is now part of the state (an outstanding AER, a deletion under way)
        journal.endAdmin();
      }
      return;
    }
    if (result.status !== Status.SUCCESS) {
      this.logger.debug('admin command failed', { opcode, cid: commandId, status: result.status });
      this.recordError(sq, commandId, result.status, sqe.getUint32(4, true), 0);
    }
    if (journal) {
      // The state the command left goes to the checkpoint before the guest can see the command complete; the
      // journal keeps the completion in case the process dies between the two (recoverCommands).
      journal.completingAdmin(sq.cq.lap, sq.cq.tail, result.status, result.dw0);
      this.checkpoint!();
    }
    this.queues.postCompletion(sq.cq, result.dw0, sq, commandId, result.status);
    journal?.endAdmin();
  }

  /** CommandSink: starts the I/O command at the head of `sq` (the queue engine reserved its CQ slot). */
  executeIo(sq: SubmissionQueue): void {
    const request = this.requestPool.pop() ?? this.newRequest();
    const sqSlot = sq.head;
    sq.fetch(request.sqe, request.sqeWords);
    const batch = this.io.batch;
    if (batch !== undefined) batch.joinable = batch.count > 0 || !sq.isEmpty;
    const journal = this.journal;
    if (journal !== undefined && request.journalSlot >= 0) {
      journal.begin(request.journalSlot, sq.id, sqSlot, request.sqeWords, sq.fetches, sq.head);
    }
    this.startIo(sq, request);
  }

  /** Runs a fetched I/O command (its SQE in `request.sqe`). */
  private startIo(sq: SubmissionQueue, request: PooledRequest): void {
    request.sq = sq;
    request.commandId = request.sqe.getUint16(2, true);
    request.opcode = request.sqe.getUint8(0);
    request.generation = this.generation;
    request.result = 0;
    request.active = true;
    request.parked = false;
    // Fetch time: the pass's (see passStart). The queue engine fetches only inside a processing pass.
    if (!this.passStarted) {
      this.passStarted = true;
      const given = this.passClock;
      this.passStart = given === given ? given : performance.now(); // NaN: none given
    }
    request.startedAt = this.passStart;
    sq.inFlight++;
    // A command that completed within this pass left the controller busy until the pass ends (endPass).
    if (this.inFlight++ === 0 && this.passCompleted === 0) this.busySince = request.startedAt;
    const limiter = this.limiter;
    if (limiter !== undefined) {
      const nsid = request.sqe.getUint32(4, true);
      // A scope without limits needs no data bytes (a namespace lookup and the SQE's range), so it is asked first.
      // The pass's clock reading (its fetch time, taken at its start): a clock read costs as much as the check.
      if (
        limiter.limited(nsid) &&
        !limiter.admit(request, nsid, dataBytes(request.sqe, this.io.namespace(nsid), this.io.maxTransferBytes), request.startedAt)
      ) {
        this.throttledTotal++;
        request.parked = true;
        return; // parked: releaseParked starts it
      }
    }
    this.run(request);
  }

  /** Runs an I/O command that is counted in flight. */
  private run(request: PooledRequest): void {
    request.parked = false;
    try {
      executeIoCommand(this.io, request, this.ioDone);
    } catch (error) {
      this.logger.error('I/O command failed unexpectedly', {
        sqid: request.sq?.id,
        cid: request.commandId,
        opcode: request.opcode,
        error,
      });
      if (request.active) this.ioDone(request, Status.INTERNAL_ERROR);
    }
  }

  private newRequest(): PooledRequest {
    const request = new PooledRequest();
    const journal = this.journal;
    if (journal !== undefined) {
      if (this.requests.length < journal.entries) request.journalSlot = this.requests.length;
      else this.logger.error('command journal full: a command in flight now would not survive a crash', { entries: journal.entries });
    }
    this.requests.push(request);
    return request;
  }

  /**
   * Gives up the I/O commands in flight that `which` selects and whose backend can let go of their guest memory
   * (io.ts abandonIoCommand): they complete now with `status` (or are discarded, when a reset abandoned them).
   * Returns how many were given up and how many could not be.
   */
  /**
   * I/O commands started on namespace `nsid` and not completed, broadcast ones (a Flush of every namespace) included;
   * not those the rate limits hold back (they have not touched it yet).
   */
  inFlightOn(nsid: number): number {
    let count = 0;
    for (const request of this.requests) {
      if (!request.active || request.parked) continue;
      const target = request.sqe.getUint32(4, true);
      if (target === nsid || target === BROADCAST_NSID) count++;
    }
    return count;
  }

  giveUp(which: (request: IoRequest, generation: number) => boolean, status: number): { abandoned: number; stuck: number } {
    let abandoned = 0;
    let stuck = 0;
    for (const request of this.requests) {
      if (!request.active || !which(request, request.generation)) continue;
      if (abandonIoCommand(request, status)) abandoned++;
      else stuck++;
    }
    return { abandoned, stuck };
  }

  /** Commands abandoned by a reset have completed (their completions discarded), and reset / shutdown waiters go. */
  private drained(): void {
    if (this.draining) {
      this.draining = false;
      this.owner.abandonedDrained();
    }
    if (this.drainWaiters.length > 0) for (const resolve of this.drainWaiters.splice(0)) resolve();
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
    const interrupts = this.interrupts;
    if (interrupts.batching && this.passStarted && request.startedAt === this.passStart) {
      // Fetched and completed within this pass: timed when the pass ends (endPass), no clock read here.
      this.inFlight--;
      this.passCompleted++;
    } else {
      const now = performance.now();
      if (--this.inFlight === 0) this.counters.busyMillis += now - this.busySince;
      this.latency.record((now - request.startedAt) * 1000);
    }

    if (request.generation === this.generation && (this.registers.csts & Csts.CFS) === 0) {
      const opcode = request.opcode;
      if (opcode === IoOpcode.READ) this.commandCounts.read++;
      else if (opcode === IoOpcode.WRITE) this.commandCounts.write++;
      else this.commandCounts.otherIo++;
      if (status !== Status.SUCCESS) {
        const sqe = request.sqe;
        const nsid = sqe.getUint32(4, true);
        const lba = hasLba(opcode) ? sqe.getUint32(44, true) * 0x1_0000_0000 + sqe.getUint32(40, true) : 0;
        this.recordError(sq, request.commandId, status, nsid, lba);
        const failed = this.io.namespaceCounters?.[nsid - 1]?.failedByStatus;
        failed?.set(status, (failed.get(status) ?? 0) + 1);
      }
      const journal = this.journal;
      const slot = request.journalSlot;
      if (journal !== undefined && slot >= 0) {
        const cq = sq.cq;
        journal.completing(slot, cq.lap, cq.tail, status, request.result);
        this.queues.postCompletion(cq, request.result, sq, request.commandId, status);
        journal.end(slot);
      } else {
        this.queues.postCompletion(sq.cq, request.result, sq, request.commandId, status);
      }
      if (sq.deleteCommandId !== undefined && sq.inFlight === 0) this.queues.finishSubmissionQueueDeletion(sq);
      if (!interrupts.batching) interrupts.scheduleFlush();
    } else if (this.journal !== undefined && request.journalSlot >= 0) this.journal.end(request.journalSlot);
    this.requestPool.push(request);
    if (this.inFlight === 0) this.drained();
  };

  /**
   * Crash recovery: finishes what a predecessor left in the journal. `entries` are its I/O entries whose CQE is not
   * in the guest's CQ (the queue engine checked, and reserved a CQ slot for each): a completing one is posted with
   * its recorded result; a running one runs again, in the same journal slot. Every other entry is freed.
   */
  recoverIo(entries: readonly { entry: JournalEntry; slot: number; sq: SubmissionQueue }[], freed: readonly number[]): void {
    const journal = this.journal!;
    for (const slot of freed) journal.end(slot);
    const highest = entries.reduce((max, { slot }) => Math.max(max, slot), -1);
    while (this.requests.length <= highest) this.newRequest();
    const taken = new Set(entries.map(({ slot }) => slot));
    this.requestPool.length = 0;
    for (const request of this.requests) if (!taken.has(request.journalSlot) && !request.active) this.requestPool.push(request);
    for (const { entry, slot, sq } of entries) {
      const commandId = entry.sqe[2]! | (entry.sqe[3]! << 8);
      if (entry.state === EntryState.Completing) {
        this.queues.postCompletion(sq.cq, entry.dw0, sq, commandId, entry.status);
        journal.end(slot);
        continue;
      }
      const request = this.requests[slot]!;
      new Uint8Array(request.sqe.buffer).set(entry.sqe);
      this.startIo(sq, request);
    }
    this.finishBatch();
    // The commands run again were a pass of their own: ended here, the first pass once serving reads its own clock.
    this.endPass();
  }

  /**
   * Crash recovery: the admin command a predecessor was executing. `applied`: the checkpoint holds its effects (the
   * process died after checkpointing): a recorded completion not yet in the CQ is posted; a deferred command is
   * already part of the restored state. Otherwise it runs again: none of its effects reached the checkpoint (it is
   * written after the command ran, synchronously), so it runs as the first time did.
   */
  recoverAdmin(entry: JournalEntry, sq: SubmissionQueue, applied: boolean, posted: boolean): void {
    const commandId = entry.sqe[2]! | (entry.sqe[3]! << 8);
    if (!applied) {
      const sqe = this.adminSqe;
      new Uint8Array(sqe.buffer).set(entry.sqe);
      sq.cq.reserved++;
      this.runAdmin(sq, sqe);
      return;
    }
    if (entry.state === EntryState.Completing && !posted) {
      sq.cq.reserved++;
      this.queues.postCompletion(sq.cq, entry.dw0, sq, commandId, entry.status);
    }
    this.journal?.endAdmin();
  }

  /**
   * CommandSink: the Error Information entry behind a doorbell error event, so the host finds what the event points
   * at, and the event. No command is involved: CID = FFFFh, and the status is the closest fit (the spec asks for
   * "the most applicable status value").
   */
  invalidDoorbell(sqid: number, status: number, eventInfo: number): void {
    this.health.recordError(sqid, NO_COMMAND, status, 0, 0, 0);
    this.events.raise(AsyncEvent.TYPE_ERROR, eventInfo, LogPageId.ERROR_INFORMATION);
  }

  /** CommandSink: Controller Fatal Status, set by the controller. */
  fail(reason: string, fields?: Record<string, unknown>): void {
    this.owner.fail(reason, fields);
  }

  private recordError(sq: SubmissionQueue, commandId: number, status: number, nsid: number, lba: number): void {
    this.health.recordError(sq.id, commandId, status, sq.cq.phase, nsid, lba);
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
