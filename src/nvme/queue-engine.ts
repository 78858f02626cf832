/**
 * The queue engine: the controller's transport half. It owns the submission and completion queues, the doorbells
 * (trapped, polled, and shadow doorbells with EventIdx), round-robin arbitration, fetching commands and posting
 * completions. What it fetches goes up through one small interface, `CommandSink` (the controller), in the shape of
 * SPDK's transport-to-ctrlr split; it imports nothing of the controller, the admin command set or async events.
 *
 * Flow control: fetching a command reserves a slot in its completion queue, so a completion can always be posted
 * when the command finishes and an unconsumed CQE is never overwritten. A queue whose CQ has no unreserved slot
 * waits until the host advances the CQ head.
 *
 * Size: the hot path (doorbells, fetch, post) stays in one class so per-command calls are direct, and its
 * live-upgrade snapshot/restore sits next to the state it saves.
 */
import { DmaError, type DmaSpace } from '../memory/guest-memory.js';
import type { Logger } from '../util/log.js';
import { AsyncEvent, CQE_SIZE, PAGE_SIZE, Status } from '../spec/nvme.js';
import type { FeatureState } from './features.js';
import type { InterruptCoalescer } from './interrupts.js';
import { NO_COMMAND } from './log-pages.js';
import { CompletionQueue, ShadowDoorbells, SubmissionQueue } from './queues.js';
import { checkSnapshotVersion, fromBase64, toBase64 } from '../util/handover-fds.js';
import { EntryState, type CommandJournal, type JournalEntry } from './command-journal.js';

const QUEUE_ENGINE_STATE_VERSION = 1;

/**
 * The queues in a live-upgrade snapshot, taken with nothing in flight: each queue's memory, size, vector, heads,
 * tails and phase; the shadow doorbell pages; the doorbell values consumed so far (and, when the doorbell page is
 * private to the controller, the page itself; a shared page lives on in its memfd).
 */
export interface QueueEngineState {
  version: number;
  active: boolean;
  ioQueuesCreated: boolean;
  failedCompletions: number;
  invalidDoorbellWrites: number;
  roundRobin: number;
  consumedDoorbells: string;
  /** Interrupt mode only: the private doorbell page. */
  doorbells?: string;
  /** In creation order. */
  completionQueues: Array<{
    id: number;
    iova: number;
    size: number;
    vector: number;
    interruptsEnabled: boolean;
    head: number;
    tail: number;
    phase: number;
    reserved: number;
    lastShadow: number;
    /** Absent in snapshots from before crash recovery (lap 0). */
    lap?: number;
  }>;
  /** In creation order (the round-robin order). */
  submissionQueues: Array<{
    id: number;
    iova: number;
    size: number;
    cqid: number;
    priority: number;
    head: number;
    tail: number;
    lastShadow: number;
    deleteCommandId?: number;
    fetches?: number;
  }>;
  shadow?: { shadowIova: number; eventIndexIova: number };
}

/** What the queue engine hands up to its controller. */
export interface CommandSink {
  /** Runs the command at the head of admin queue `sq`; a slot of `sq.cq` is reserved for its completion. */
  executeAdmin(sq: SubmissionQueue): void;
  /** Runs the command at the head of I/O queue `sq`; a slot of `sq.cq` is reserved for its completion. */
  executeIo(sq: SubmissionQueue): void;
  /** `sq` is being deleted: commands fetched from it and not started yet (held back by rate limits) end as aborted. */
  abortNotStarted(sq: SubmissionQueue): void;
  /**
   * A doorbell write the engine could not act on: `sqid` is the SQ whose tail doorbell was written (NO_COMMAND for
   * a CQ head doorbell), `status` the closest status for the error log, `eventInfo` the error event's information.
   */
  invalidDoorbell(sqid: number, status: number, eventInfo: number): void;
  /** Controller Fatal Status (queue or shadow memory gone, internal error). */
  fail(reason: string, fields?: Record<string, unknown>): void;
}

export interface QueueEngineOptions {
  dma: DmaSpace;
  /** The doorbell page (see NvmeControllerOptions.doorbells); at least 2 * (maxIoQueuePairs + 1) words. */
  doorbells: Uint32Array;
  /** Whether anything but doorbellWrite changes `doorbells` (polled mode). */
  doorbellsShared: boolean;
  maxIoQueuePairs: number;
  /** Read for the Arbitration feature's burst. */
  features: FeatureState;
  interrupts: InterruptCoalescer;
  logger: Logger;
}

export const DOORBELL_COUNT = 1024;
/** Commands fetched per pass before the rest is left to a later turn of the event loop. */
const BATCH_COMMAND_BUDGET = 1024;

export class QueueEngine {
  /**
   * Fetching is allowed: enabled, ready, no fatal status, no shutdown requested. Set by the controller; doorbell
   * writes are ignored and nothing is fetched or delivered while it is false.
   */
  active = false;
  /** I/O queues were created since the controller was enabled (Number of Queues is fixed from then on). */
  ioQueuesCreated = false;
  /** Completions posted with a non-zero status. */
  failedCompletions = 0;
  /** The same, by status (SCT << 8 | SC): counted only on the failure path, so success costs nothing more. */
  readonly failedByStatus = new Map<number, number>();
  /**
   * The value last taken from each doorbell word. A word of `doorbells` that differs from its entry here is a write
   * not yet acted on; in polled mode the native poller compares the shared page with this array, so a doorbell that
   * returns to an earlier value (a 2-entry queue's tail going 0, 1, 0) is never missed.
   */
  readonly consumedDoorbells: Uint32Array;

  private readonly dma: DmaSpace;
  private readonly doorbells: Uint32Array;
  private readonly doorbellsShared: boolean;
  private readonly features: FeatureState;
  private readonly interrupts: InterruptCoalescer;
  /** Set once by connect, before the first doorbell. */
  private sink!: CommandSink;
  private readonly logger: Logger;

  /** Queues by id (index 0 = admin). */
  private readonly submissionQueues: Array<SubmissionQueue | undefined>;
  private readonly completionQueues: Array<CompletionQueue | undefined>;
  /** Live queues in creation order, for scans and round-robin arbitration. */
  private submissionList: SubmissionQueue[] = [];
  private completionList: CompletionQueue[] = [];
  private roundRobin = 0;
  private shadow: ShadowDoorbells | undefined;
  private invalidDoorbellWrites = 0;
  /** Doorbell words of the queues that exist: 2 * (highest live queue id + 1); the busy-path scans cover these. */
  private liveDoorbellWords = 0;
  /** Crash recovery's record of heads, laps and commands in flight (command-journal.ts), when enabled. */
  journal: CommandJournal | undefined;

  constructor(options: QueueEngineOptions) {
    this.dma = options.dma;
    this.doorbells = options.doorbells;
    this.doorbellsShared = options.doorbellsShared;
    this.features = options.features;
    this.interrupts = options.interrupts;
    this.logger = options.logger;
    const queues = options.maxIoQueuePairs + 1;
    this.consumedDoorbells = new Uint32Array(2 * queues);
    this.submissionQueues = new Array<SubmissionQueue | undefined>(queues).fill(undefined);
    this.completionQueues = new Array<CompletionQueue | undefined>(queues).fill(undefined);
  }

  /** Where fetched commands go (the command runner, built after the engine because it needs the engine). */
  connect(sink: CommandSink): void {
    this.sink = sink;
  }

  // ---- queues ------------------------------------------------------------------------------------------------

  get adminQueue(): SubmissionQueue | undefined {
    return this.submissionQueues[0];
  }

  /** Live completion queues, admin included. */
  get completions(): readonly CompletionQueue[] {
    return this.completionList;
  }

  get hasQueues(): boolean {
    return this.submissionList.length > 0;
  }

  get ioSubmissionQueueCount(): number {
    return this.submissionList.filter((sq) => sq.id !== 0).length;
  }

  /** Commands fetched and not yet completed, per I/O submission queue (the queue depth vfiod sees). */
  ioQueueDepths(): Array<{ sqid: number; inFlight: number }> {
    return this.submissionList.filter((sq) => sq.id !== 0).map((sq) => ({ sqid: sq.id, inFlight: sq.inFlight }));
  }

  get ioCompletionQueueCount(): number {
    return this.completionList.filter((cq) => cq.id !== 0).length;
  }

  completionQueue(qid: number): CompletionQueue | undefined {
    return qid < this.completionQueues.length ? this.completionQueues[qid] : undefined;
  }

  submissionQueue(qid: number): SubmissionQueue | undefined {
    return qid < this.submissionQueues.length ? this.submissionQueues[qid] : undefined;
  }

  /** CC.EN 0 -> 1: the admin queue pair from AQA / ASQ / ACQ (validated by the controller). */
  createAdminQueues(sqIova: number, sqEntries: number, cqIova: number, cqEntries: number): void {
    const cq = new CompletionQueue(0, cqIova, cqEntries, 0, true);
    const sq = new SubmissionQueue(0, sqIova, sqEntries, cq, 0);
    this.addCompletionQueue(cq);
    this.addSubmissionQueue(sq);
    this.ioQueuesCreated = false;
  }

  createCompletionQueue(qid: number, iova: number, entries: number, vector: number, interruptsEnabled: boolean): void {
    this.addCompletionQueue(new CompletionQueue(qid, iova, entries, vector, interruptsEnabled));
    this.ioQueuesCreated = true;
    this.logger.debug('I/O completion queue created', { cqid: qid, entries, vector, interruptsEnabled });
  }

  createSubmissionQueue(qid: number, iova: number, entries: number, cq: CompletionQueue, priority: number): void {
    this.addSubmissionQueue(new SubmissionQueue(qid, iova, entries, cq, priority));
    this.ioQueuesCreated = true;
    this.logger.debug('I/O submission queue created', { sqid: qid, entries, cqid: cq.id });
  }

  /**
   * Starts deleting `sq`: its unfetched commands complete as aborted (or implicitly, see abortUnfetched). True when
   * it is gone already; false when in-flight commands remain, and finishSubmissionQueueDeletion completes the
   * Delete (`commandId`) once they drain.
   */
  deleteSubmissionQueue(sq: SubmissionQueue, commandId: number): boolean {
    this.abortUnfetched(sq);
    this.sink.abortNotStarted(sq);
    if (sq.inFlight === 0) {
      this.removeSubmissionQueue(sq);
      return true;
    }
    sq.deleteCommandId = commandId;
    return false;
  }

  /** The last in-flight command of a deleting `sq` completed: the queue goes, and so does its Delete I/O SQ. */
  finishSubmissionQueueDeletion(sq: SubmissionQueue): void {
    const commandId = sq.deleteCommandId!;
    sq.deleteCommandId = undefined;
    this.removeSubmissionQueue(sq);
    const adminSq = this.submissionQueues[0];
    if (adminSq) this.postCompletion(adminSq.cq, 0, adminSq, commandId, Status.SUCCESS);
    this.logger.debug('I/O submission queue deleted after draining', { sqid: sq.id });
  }

  deleteCompletionQueue(cq: CompletionQueue): void {
    this.completionQueues[cq.id] = undefined;
    this.completionList = this.completionList.filter((queue) => queue !== cq);
    this.countLiveDoorbells();
  }

  /** Doorbell Buffer Config with both pages validated by the admin command handler. */
  configureShadowDoorbells(shadowIova: number, eventIndexIova: number): void {
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

  /**
   * The queues for a successor; only with nothing in flight (the controller quiesced first), unless `live`: a crash
   * checkpoint, whose heads, tails and reservations the command journal corrects (see recoverFromJournal).
   */
  snapshot(live = false): QueueEngineState {
    const busy = this.submissionList.find((sq) => sq.inFlight !== 0);
    if (busy && !live) throw new Error(`queue engine snapshot with ${busy.inFlight} commands in flight on SQ ${busy.id}`);
    const shadow = this.shadow;
    return {
      version: QUEUE_ENGINE_STATE_VERSION,
      active: this.active,
      ioQueuesCreated: this.ioQueuesCreated,
      failedCompletions: this.failedCompletions,
      invalidDoorbellWrites: this.invalidDoorbellWrites,
      roundRobin: this.roundRobin,
      consumedDoorbells: toBase64(new Uint8Array(this.consumedDoorbells.buffer)),
      ...(this.doorbellsShared ? {} : { doorbells: toBase64(new Uint8Array(this.doorbells.buffer, this.doorbells.byteOffset, this.consumedDoorbells.length * 4)) }),
      completionQueues: this.completionList.map((cq) => ({
        id: cq.id,
        iova: cq.memory.iova,
        size: cq.size,
        vector: cq.vector,
        interruptsEnabled: cq.interruptsEnabled,
        head: cq.head,
        tail: cq.tail,
        phase: cq.phase,
        reserved: cq.reserved,
        lastShadow: cq.lastShadow,
        lap: cq.lap,
      })),
      submissionQueues: this.submissionList.map((sq) => ({
        id: sq.id,
        iova: sq.memory.iova,
        size: sq.size,
        cqid: sq.cq.id,
        priority: sq.priority,
        head: sq.head,
        tail: sq.tail,
        lastShadow: sq.lastShadow,
        ...(sq.deleteCommandId !== undefined ? { deleteCommandId: sq.deleteCommandId } : {}),
        fetches: sq.fetches,
      })),
      ...(shadow ? { shadow: { shadowIova: shadow.shadow.iova, eventIndexIova: shadow.eventIndex.iova } } : {}),
    };
  }

  /**
   * Takes on a predecessor's queues, on an engine with none. Touches no guest memory and, in polled mode, not the
   * shared doorbell page either (the guest may be writing it, and the predecessor may still resume).
   */
  /**
   * `pageKept`: crash recovery, where the private doorbell page is memory that outlived the predecessor and is newer
   * than the checkpoint's copy of it.
   */
  restore(state: QueueEngineState, pageKept = false): void {
    checkSnapshotVersion(state, 'NVMe queue engine', QUEUE_ENGINE_STATE_VERSION);
    if (this.submissionList.length > 0 || this.completionList.length > 0) throw new Error('queue engine restore over live queues');
    const consumed = fromBase64(state.consumedDoorbells, 'consumed doorbells', this.consumedDoorbells.length * 4);
    const queues = this.submissionQueues.length;
    const checkQueue = (kind: string, queue: { id: number; size: number; iova: number }): void => {
      if (!Number.isInteger(queue.id) || queue.id < 0 || queue.id >= queues) {
        throw new Error(`snapshot: ${kind} queue ${queue.id} is beyond this controller's ${queues - 1} I/O queues`);
      }
      if (!Number.isInteger(queue.size) || queue.size < 2 || !Number.isSafeInteger(queue.iova)) {
        throw new Error(`snapshot: ${kind} queue ${queue.id} is malformed`);
      }
    };
    for (const saved of state.completionQueues) {
      checkQueue('completion', saved);
      const cq = new CompletionQueue(saved.id, saved.iova, saved.size, saved.vector, saved.interruptsEnabled);
      if (saved.head >= saved.size || saved.tail >= saved.size) throw new Error(`snapshot: CQ ${saved.id} head/tail outside the ring`);
      cq.head = saved.head;
      cq.tail = saved.tail;
      cq.phase = saved.phase & 1;
      cq.reserved = saved.reserved;
      cq.lastShadow = saved.lastShadow;
      cq.lap = (saved.lap ?? 0) | 0;
      this.completionQueues[cq.id] = cq;
      this.completionList.push(cq);
    }
    for (const saved of state.submissionQueues) {
      checkQueue('submission', saved);
      const cq = this.completionQueues[saved.cqid];
      if (!cq) throw new Error(`snapshot: SQ ${saved.id} posts to CQ ${saved.cqid}, which does not exist`);
      if (saved.head >= saved.size || saved.tail >= saved.size) throw new Error(`snapshot: SQ ${saved.id} head/tail outside the ring`);
      const sq = new SubmissionQueue(saved.id, saved.iova, saved.size, cq, saved.priority);
      sq.head = saved.head;
      sq.tail = saved.tail;
      sq.lastShadow = saved.lastShadow;
      sq.deleteCommandId = saved.deleteCommandId;
      sq.fetches = (saved.fetches ?? 0) | 0;
      cq.submissionQueues++;
      this.submissionQueues[sq.id] = sq;
      this.submissionList.push(sq);
    }
    if (state.shadow) this.shadow = new ShadowDoorbells(state.shadow.shadowIova, state.shadow.eventIndexIova, PAGE_SIZE);
    this.consumedDoorbells.set(new Uint32Array(consumed.buffer, consumed.byteOffset, this.consumedDoorbells.length));
    if (!this.doorbellsShared && !pageKept) {
      if (state.doorbells === undefined) throw new Error('snapshot: the doorbell page is missing (it was shared memory; is --poll the same?)');
      const page = fromBase64(state.doorbells, 'doorbell page', this.consumedDoorbells.length * 4);
      this.doorbells.set(new Uint32Array(page.buffer, page.byteOffset, this.consumedDoorbells.length));
    } else if (state.doorbells !== undefined && this.doorbellsShared) {
      throw new Error('snapshot: the doorbell page was private (interrupt mode); this controller polls a shared page');
    }
    this.active = state.active;
    this.ioQueuesCreated = state.ioQueuesCreated;
    this.failedCompletions = state.failedCompletions;
    this.invalidDoorbellWrites = state.invalidDoorbellWrites;
    this.roundRobin = state.roundRobin;
  }

  /**
   * Crash recovery, on queues just restored from a checkpoint that may be older than the journal: each SQ's head
   * and fetch count come from the journal, each CQ's tail from its lap and the phase tags in guest memory, each
   * queue's doorbells from the doorbell page (and the shadow page, on the next pass). Returns what the controller
   * must finish: the journal's I/O entries whose CQE is not in the guest's CQ (a CQ slot is reserved for each), the
   * slots of those that are done, and the admin command in progress with whether its CQE is posted.
   */
  recover(journal: CommandJournal): {
    io: Array<{ entry: JournalEntry; slot: number; sq: SubmissionQueue }>;
    freed: number[];
    admin?: { entry: JournalEntry; sq: SubmissionQueue; posted: boolean };
  } {
    const ioEntries = journal.ioEntries();
    const adminEntry = journal.adminEntry();
    const newest = new Map<number, JournalEntry>();
    const consider = (entry: JournalEntry): void => {
      const known = newest.get(entry.sqid);
      if (known === undefined || ((entry.sequence - known.sequence) | 0) > 0) newest.set(entry.sqid, entry);
    };
    for (const { entry } of ioEntries) consider(entry);
    if (adminEntry.state !== EntryState.Free) consider({ ...adminEntry, sqid: 0 });
    for (const sq of this.submissionList) {
      const { head, fetches } = journal.recoveredHead(sq.id, sq.size, newest.get(sq.id));
      sq.head = head < sq.size ? head : 0;
      sq.fetches = fetches;
      sq.inFlight = 0;
    }
    for (const cq of this.completionList) {
      this.recoverTail(cq, journal.completionLap(cq.id));
      // The tail may have wrapped just before the crash, ahead of the lap's store: the journal must say the lap found
      // here, or the next crash reads the old one and puts the tail back to this lap's start.
      journal.setCompletionLap(cq.id, cq.lap);
      cq.reserved = 0;
    }
    const io: Array<{ entry: JournalEntry; slot: number; sq: SubmissionQueue }> = [];
    const freed: number[] = [];
    for (const { entry, slot } of ioEntries) {
      const sq = entry.sqid !== 0 ? this.submissionQueues[entry.sqid] : undefined;
      if (sq === undefined || (entry.state === EntryState.Completing && isPosted(sq.cq, entry))) {
        freed.push(slot);
        continue;
      }
      sq.cq.reserved++;
      sq.inFlight++;
      io.push({ entry, slot, sq });
    }
    // The order they were fetched in, per queue (a write fetched later must not be overtaken by an earlier one).
    io.sort((a, b) => a.sq.id - b.sq.id || ((a.entry.sequence - b.entry.sequence) | 0));
    for (const { sq } of io) sq.inFlight--; // startIo counts them again
    for (const sq of this.submissionList) this.recoverDoorbell(sq.doorbellIndex, sq);
    for (const cq of this.completionList) this.recoverDoorbell(cq.doorbellIndex, cq);
    const adminSq = this.submissionQueues[0];
    if (adminEntry.state === EntryState.Free || adminSq === undefined) return { io, freed };
    return { io, freed, admin: { entry: adminEntry, sq: adminSq, posted: adminEntry.state === EntryState.Completing && isPosted(adminSq.cq, adminEntry) } };
  }

  /**
   * The tail of `cq` in lap `lap`: this lap's entries carry phase 1 in even laps and 0 in odd ones, the rest of the
   * ring the previous lap's (or the zeroes the host created the queue with). All of them this lap's means the tail
   * wrapped just before the process died, ahead of the lap's store.
   */
  private recoverTail(cq: CompletionQueue, lap: number): void {
    let tail = cq.size;
    if (this.resolveQueue(cq)) {
      const phase = (lap & 1) === 0 ? 1 : 0;
      const view = cq.memory.view;
      for (let slot = 0; slot < cq.size; slot++) {
        if (((view.getUint16(slot * CQE_SIZE + 14, true) & 1) !== phase)) {
          tail = slot;
          break;
        }
      }
    }
    cq.lap = lap;
    cq.tail = tail;
    if (tail === cq.size) {
      cq.tail = 0;
      cq.lap = (lap + 1) | 0;
    }
    cq.phase = (cq.lap & 1) === 0 ? 1 : 0;
  }

  /**
   * Takes a doorbell from the page as the guest left it (bar0Write may have recorded writes the checkpoint lacks).
   * An I/O queue's shadow entry is taken afresh on the next pass. The admin queue's is not a doorbell the host
   * writes (Linux never does; the engine mirrors MMIO writes into it only in interrupt mode): it is marked as seen.
   */
  private recoverDoorbell(index: number, queue: SubmissionQueue | CompletionQueue): void {
    const value = this.doorbells[index]!;
    this.consumedDoorbells[index] = value;
    if (queue.id !== 0) queue.lastShadow = -1;
    else if (this.shadow && this.resolveShadow()) queue.lastShadow = this.shadow.readShadow(index);
    if (value >= queue.size) return;
    if (queue instanceof SubmissionQueue) queue.tail = value;
    else queue.head = value;
  }

  /** Controller reset: every queue and the shadow pages go; doorbells read as zero again. */
  reset(): void {
    this.submissionQueues.fill(undefined);
    this.completionQueues.fill(undefined);
    this.submissionList = [];
    this.completionList = [];
    this.roundRobin = 0;
    this.shadow = undefined;
    this.ioQueuesCreated = false;
    this.liveDoorbellWords = 0;
    this.journal?.clear();
    // Doorbells of a reset controller read as zero; stale values would otherwise look like new ones later.
    // (A caller may already have unmapped a shared doorbell page: a detached array has length 0 and is left alone.)
    if (this.doorbells.length > 0) this.doorbells.fill(0, 0, this.consumedDoorbells.length);
    this.consumedDoorbells.fill(0);
  }

  private addCompletionQueue(cq: CompletionQueue): void {
    this.completionQueues[cq.id] = cq;
    this.completionList.push(cq);
    this.countLiveDoorbells();
    this.doorbells[cq.doorbellIndex] = 0;
    this.consumedDoorbells[cq.doorbellIndex] = 0;
    this.journal?.setCompletionLap(cq.id, 0);
    if (this.shadow) {
      this.shadow.writeEventIndex(cq.doorbellIndex, 0);
      // Whatever the shadow entry holds now predates this queue; only changes to it count.
      cq.lastShadow = this.shadow.readShadow(cq.doorbellIndex);
    }
  }

  private addSubmissionQueue(sq: SubmissionQueue): void {
    this.submissionQueues[sq.id] = sq;
    this.submissionList.push(sq);
    this.countLiveDoorbells();
    sq.cq.submissionQueues++;
    this.doorbells[sq.doorbellIndex] = 0;
    this.consumedDoorbells[sq.doorbellIndex] = 0;
    this.journal?.setSubmissionHead(sq.id, 0, 0);
    if (this.shadow) {
      this.shadow.writeEventIndex(sq.doorbellIndex, 0);
      sq.lastShadow = this.shadow.readShadow(sq.doorbellIndex);
    }
  }

  private removeSubmissionQueue(sq: SubmissionQueue): void {
    this.submissionQueues[sq.id] = undefined;
    this.submissionList = this.submissionList.filter((queue) => queue !== sq);
    sq.cq.submissionQueues--;
    this.countLiveDoorbells();
  }

  private countLiveDoorbells(): void {
    let highest = -1;
    for (const queue of this.submissionList) if (queue.id > highest) highest = queue.id;
    for (const queue of this.completionList) if (queue.id > highest) highest = queue.id;
    this.liveDoorbellWords = 2 * (highest + 1);
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
      sq.fetches = (sq.fetches + unfetched) | 0;
      sq.head = sq.tail;
      this.journal?.setSubmissionHead(sq.id, sq.head, sq.fetches);
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
    sq.fetches = (sq.fetches + sq.unfetched) | 0;
    sq.head = sq.tail;
    this.journal?.setSubmissionHead(sq.id, sq.head, sq.fetches);
    this.logger.debug('unfetched commands aborted by Delete I/O SQ', {
      sqid: sq.id,
      aborted,
      completedWithoutCqe: unfetched - aborted,
    });
  }

  // ---- doorbells ---------------------------------------------------------------------------------------------

  /** A trapped write of `value` to doorbell `index` (BAR0 0x1000 + 4 * index). */
  doorbellWrite(index: number, value: number): void {
    this.doorbells[index] = value;
    if (index < this.consumedDoorbells.length) this.consumedDoorbells[index] = value;
    if (!this.active) return;
    const qid = index >>> 1;
    if (qid !== 0 && this.shadow && !this.resolveShadow()) return; // takeDoorbell reads the shadow entry
    this.takeDoorbell(index, value);
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
   * Polled mode: the guest wrote `doorbells` directly. Takes every doorbell word that differs from
   * `consumedDoorbells` (writes to queues that do not exist raise an Invalid Doorbell Register event), and every
   * changed shadow doorbell. Returns whether any doorbell had a new value: when none had, a processing pass
   * would find nothing new to fetch. `all` false: only the words of queues that exist (the busy path's scans).
   */
  pollDoorbells(all = true): boolean {
    let taken = false;
    if (this.active) {
      try {
        if (!this.shadow || this.resolveShadow()) taken = this.refreshDoorbells(all);
      } catch (error) {
        this.sink.fail('internal error while scanning doorbells', { error });
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
    this.sink.invalidDoorbell(sqid, Status.INVALID_QUEUE_IDENTIFIER, AsyncEvent.INFO_ERROR_INVALID_DOORBELL_REGISTER);
  }

  private applySubmissionTail(sq: SubmissionQueue, value: number): void {
    if (sq.setTail(value)) return;
    this.warnInvalidDoorbell('invalid submission queue tail doorbell value', { sqid: sq.id, value, entries: sq.size });
    this.sink.invalidDoorbell(sq.id, Status.INVALID_FIELD, AsyncEvent.INFO_ERROR_INVALID_DOORBELL_VALUE);
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
    this.sink.invalidDoorbell(NO_COMMAND, Status.INVALID_FIELD, AsyncEvent.INFO_ERROR_INVALID_DOORBELL_VALUE);
  }

  /** A guest can write bad doorbells in a loop: log the 1st, 2nd, 4th, 8th, ... occurrence only. */
  private warnInvalidDoorbell(message: string, fields: Record<string, unknown>): void {
    const count = ++this.invalidDoorbellWrites;
    if ((count & (count - 1)) === 0) this.logger.warn(message, { ...fields, invalidDoorbellWrites: count });
  }

  /**
   * Picks up doorbell values written to the doorbell page (polled mode) or the shadow page since last time: every
   * word of the page (`all`), or those of the queues that exist (a write to another word is taken by the next scan
   * of all words: the native poller's wake-ups scan all).
   */
  private refreshDoorbells(all: boolean): boolean {
    const doorbells = this.doorbells;
    const consumed = this.consumedDoorbells;
    // A detached (unmapped) page has length 0: nothing to pick up. A private page never differs (see options).
    const words = this.doorbellsShared
      ? Math.min(doorbells.length, all ? consumed.length : this.liveDoorbellWords)
      : 0;
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
    for (const cq of this.completionList) if (this.readShadowHead(shadow, cq)) taken = true;
    for (const sq of this.submissionList) if (!sq.deleting && this.readShadowTail(shadow, sq)) taken = true;
    return taken;
  }

  /** Takes a changed shadow SQ tail; returns whether it had changed. */
  private readShadowTail(shadow: ShadowDoorbells, sq: SubmissionQueue): boolean {
    const value = shadow.readShadow(sq.doorbellIndex);
    if (value === sq.lastShadow) return false;
    sq.lastShadow = value;
    this.applySubmissionTail(sq, value);
    return true;
  }

  /** Takes a changed shadow CQ head; returns whether it had changed. */
  private readShadowHead(shadow: ShadowDoorbells, cq: CompletionQueue): boolean {
    const value = shadow.readShadow(cq.doorbellIndex);
    if (value === cq.lastShadow) return false;
    cq.lastShadow = value;
    this.applyCompletionHead(cq, value);
    return true;
  }

  private resolveShadow(): boolean {
    try {
      this.shadow!.resolve(this.dma);
      return true;
    } catch (error) {
      this.sink.fail('shadow doorbell memory is no longer mapped', { error });
      return false;
    }
  }

  // ---- arbitration, fetch and post ---------------------------------------------------------------------------

  /**
   * One processing pass: takes new doorbell values, then serves the submission queues round robin until they are
   * empty or the pass's command budget is spent. Returns true when it stopped for the budget with work left (the
   * caller schedules another pass on a later turn, so completions and other devices get to run).
   */
  run(): boolean {
    if (this.shadow && !this.resolveShadow()) return false;
    this.refreshDoorbells(false);
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
        if (!this.active) return false;
        fetched += taken;
        budget -= taken;
      }
      if (fetched === 0 || budget <= 0) break;
    }
    return budget <= 0;
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
      if (sq.id === 0) this.sink.executeAdmin(sq);
      else this.sink.executeIo(sq);
      fetched++;
      if (!this.active) break;
    }
    return fetched;
  }

  /** Writes a CQE for a command of `sq` into its reserved slot of `cq` and marks the CQ's vector. */
  postCompletion(cq: CompletionQueue, dw0: number, sq: SubmissionQueue, commandId: number, status: number): void {
    if (status !== Status.SUCCESS) {
      this.failedCompletions++;
      this.failedByStatus.set(status, (this.failedByStatus.get(status) ?? 0) + 1);
    }
    if (!this.resolveQueue(cq)) return;
    cq.post(dw0, sq.head, sq.id, commandId, status);
    if (cq.tail === 0) this.journal?.setCompletionLap(cq.id, cq.lap);
    cq.reserved--;
    if (cq.interruptsEnabled) this.interrupts.mark(cq.vector);
  }

  private resolveQueue(queue: SubmissionQueue | CompletionQueue): boolean {
    try {
      queue.memory.resolve(this.dma);
      return true;
    } catch (error) {
      const kind = queue instanceof SubmissionQueue ? 'submission' : 'completion';
      this.sink.fail(`${kind} queue ${queue.id} memory is no longer mapped`, { qid: queue.id, error });
      return false;
    }
  }
}

/** Whether the CQE a journal entry was completing with is in its CQ: its (lap, slot) is behind the CQ's tail. */
function isPosted(cq: CompletionQueue, entry: JournalEntry): boolean {
  const laps = (cq.lap - entry.targetLap) | 0;
  return laps > 0 || (laps === 0 && entry.targetSlot < cq.tail);
}
