/**
 * The command journal: what crash recovery (docs/restart.md) needs to know about the queues that the JSON
 * checkpoint cannot keep up with, written as plain word stores into memory that outlives the process (a memfd the
 * holder keeps). Per command it costs a 64-byte copy and a few stores; nothing is read back while the process lives.
 *
 * What it records, and why that is enough:
 * - Each SQ's head after every fetch. The guest reuses SQ slots behind the head, so a successor must fetch exactly
 *   from there.
 * - Each fetched I/O command (a copy of its SQE, since the guest may overwrite the slot) until its completion is
 *   posted. A successor runs these again: reads, writes of the same data to the same LBAs, flushes and the other
 *   I/O commands give the same result when repeated (docs/restart.md says why).
 * - A completing command's CQE target (which lap and slot of its CQ) and result, stored before the CQE is written
 *   to the guest. A successor compares the target with how far the CQ has got: the CQE is either there, or it posts
 *   it now without running the command again. So no completion is lost or posted twice.
 * - Each CQ's lap count, stored when the tail wraps. The tail itself is found by looking at the phase tags in the
 *   CQ: this lap's entries carry this lap's phase, the rest the previous one.
 * - The admin command being executed, with a sequence number the JSON checkpoint also carries: a successor runs it
 *   again only when the checkpoint does not hold its effects yet.
 */
import { SQE_SIZE } from '../spec/nvme.js';

const MAGIC = 0x564a524e; // "NRJV"
const VERSION = 1;
const SQE_WORDS = SQE_SIZE / 4;

const HEADER_WORDS = 8;
/** Per queue id: SQ head, SQ fetch count, CQ lap. */
const QUEUE_WORDS = 3;
const enum QueueField {
  SqHead = 0,
  SqFetches = 1,
  CqLap = 2,
}
/**
 * An entry: state, sqid | SQ slot << 16, CQ lap, CQ slot, status, dw0, the SQ's fetch count with this fetch
 * (`sequence`), spare, then the SQE.
 */
const ENTRY_WORDS = 8 + SQE_WORDS;

const enum Field {
  State = 0,
  Queue = 1,
  TargetLap = 2,
  TargetSlot = 3,
  Status = 4,
  Dw0 = 5,
  Sequence = 6,
  Sqe = 8,
}

export const enum EntryState {
  Free = 0,
  /** Fetched and not completed: a successor runs it again. */
  Running = 1,
  /** Its completion is being posted: a successor posts the recorded result if the CQ does not hold it yet. */
  Completing = 2,
}

/** A journal entry as a successor reads it. */
export interface JournalEntry {
  state: EntryState;
  sqid: number;
  /** The SQ slot it was fetched from. */
  sqSlot: number;
  /** Completing: the CQ lap and slot its CQE goes to, and the result. */
  targetLap: number;
  targetSlot: number;
  status: number;
  dw0: number;
  /** The SQ's fetch count including this fetch (each SQ counts its fetches from 1). */
  sequence: number;
  sqe: Uint8Array;
}

export class CommandJournal {
  /** Words the journal needs for `queues` queue ids and `entries` I/O commands in flight at most. */
  static wordsFor(queues: number, entries: number): number {
    return HEADER_WORDS + queues * QUEUE_WORDS + ENTRY_WORDS * (entries + 1);
  }

  readonly entries: number;
  private readonly queueBase = HEADER_WORDS;
  private readonly adminBase: number;
  private readonly ioBase: number;

  /**
   * `fresh`: start an empty journal (a new controller); otherwise read what a predecessor left (`recover`), checked
   * against this controller's shape.
   */
  constructor(
    private readonly words: Int32Array,
    readonly queues: number,
    fresh: boolean,
  ) {
    this.adminBase = HEADER_WORDS + queues * QUEUE_WORDS;
    this.ioBase = this.adminBase + ENTRY_WORDS;
    this.entries = Math.floor((words.length - this.ioBase) / ENTRY_WORDS);
    if (this.entries < 1) throw new Error(`command journal: ${words.length} words hold no entry for ${queues} queues`);
    if (fresh) {
      words.fill(0);
      words[1] = VERSION;
      words[2] = queues;
      words[3] = this.entries;
      words[0] = MAGIC;
    } else {
      if (words[0] !== MAGIC || words[1] !== VERSION) throw new Error('command journal: not a vfiod command journal of this version');
      if (words[2] !== queues || words[3] !== this.entries) {
        throw new Error(`command journal: written for ${words[2]} queues and ${words[3]} entries, not ${queues} and ${this.entries}`);
      }
    }
  }

  // ---- written while serving (the hot path: stores only) -------------------------------------------------------

  /**
   * An I/O command was fetched into `sqe`: the `fetches`th fetch of SQ `sqid`, from `sqSlot`; the SQ head is now
   * `head`. The entry goes first: a successor that finds an entry newer than the stored fetch count knows the head
   * stores did not happen (see recoveredHead).
   */
  begin(entry: number, sqid: number, sqSlot: number, sqe: Int32Array, fetches: number, head: number): void {
    const words = this.words;
    const base = this.ioBase + entry * ENTRY_WORDS;
    for (let index = 0; index < SQE_WORDS; index++) words[base + Field.Sqe + index] = sqe[index]!;
    words[base + Field.Queue] = sqid | (sqSlot << 16);
    words[base + Field.Sequence] = fetches;
    words[base + Field.State] = EntryState.Running;
    const queue = this.queueBase + sqid * QUEUE_WORDS;
    words[queue + QueueField.SqFetches] = fetches;
    words[queue + QueueField.SqHead] = head;
  }

  /** The CQE of I/O entry `entry` is about to be written to `slot` of its CQ in lap `lap`. */
  completing(entry: number, lap: number, slot: number, status: number, dw0: number): void {
    const words = this.words;
    const base = this.ioBase + entry * ENTRY_WORDS;
    words[base + Field.TargetLap] = lap;
    words[base + Field.TargetSlot] = slot;
    words[base + Field.Status] = status;
    words[base + Field.Dw0] = dw0;
    words[base + Field.State] = EntryState.Completing;
  }

  /** The CQE of I/O entry `entry` is in the guest's CQ. */
  end(entry: number): void {
    this.words[this.ioBase + entry * ENTRY_WORDS + Field.State] = EntryState.Free;
  }

  /** An admin command was fetched: the admin SQ's `fetches`th fetch, from `sqSlot`; its head is now `head`. */
  beginAdmin(sqSlot: number, sqe: DataView, fetches: number, head: number): void {
    const words = this.words;
    const base = this.adminBase;
    for (let index = 0; index < SQE_WORDS; index++) words[base + Field.Sqe + index] = sqe.getInt32(index * 4, true);
    words[base + Field.Queue] = sqSlot << 16;
    words[base + Field.Sequence] = fetches;
    words[base + Field.State] = EntryState.Running;
    words[this.queueBase + QueueField.SqFetches] = fetches;
    words[this.queueBase + QueueField.SqHead] = head;
  }

  completingAdmin(lap: number, slot: number, status: number, dw0: number): void {
    const words = this.words;
    const base = this.adminBase;
    words[base + Field.TargetLap] = lap;
    words[base + Field.TargetSlot] = slot;
    words[base + Field.Status] = status;
    words[base + Field.Dw0] = dw0;
    words[base + Field.State] = EntryState.Completing;
  }

  endAdmin(): void {
    this.words[this.adminBase + Field.State] = EntryState.Free;
  }

  /** SQ `sqid` was created, or its head moved without a fetch (commands skipped by Delete I/O SQ). */
  setSubmissionHead(sqid: number, head: number, fetches: number): void {
    const queue = this.queueBase + sqid * QUEUE_WORDS;
    this.words[queue + QueueField.SqFetches] = fetches;
    this.words[queue + QueueField.SqHead] = head;
  }

  /** CQ `cqid` starts lap `lap` (its tail wrapped, or the queue was created with lap 0). */
  setCompletionLap(cqid: number, lap: number): void {
    this.words[this.queueBase + cqid * QUEUE_WORDS + QueueField.CqLap] = lap;
  }

  /** A reset: no command is in flight any more and every queue is gone. */
  clear(): void {
    this.words.fill(0, HEADER_WORDS);
  }

  // ---- read by a successor -------------------------------------------------------------------------------------

  /**
   * Where SQ `sqid` (of `size` entries) fetches next, and its fetch count. `newest` is the entry with the highest
   * sequence of this SQ still in the journal, if any: when it is at least the stored count, the process died within
   * `begin`, after the entry and before (or between) the head stores, and the head is just past its slot.
   */
  recoveredHead(sqid: number, size: number, newest: JournalEntry | undefined): { head: number; fetches: number } {
    const queue = this.queueBase + sqid * QUEUE_WORDS;
    const fetches = this.words[queue + QueueField.SqFetches]!;
    const head = this.words[queue + QueueField.SqHead]!;
    // Counts wrap at 2^32 (71 minutes at a million fetches a second): compare by difference.
    if (newest !== undefined && ((newest.sequence - fetches) | 0) >= 0) {
      return { head: (newest.sqSlot + 1) % size, fetches: newest.sequence };
    }
    return { head, fetches };
  }

  completionLap(cqid: number): number {
    return this.words[this.queueBase + cqid * QUEUE_WORDS + QueueField.CqLap]! >>> 0;
  }

  adminEntry(): JournalEntry {
    return this.read(this.adminBase);
  }

  /** The I/O entries that are not free, with their slots, in slot order. */
  ioEntries(): Array<{ slot: number; entry: JournalEntry }> {
    const found: Array<{ slot: number; entry: JournalEntry }> = [];
    for (let slot = 0; slot < this.entries; slot++) {
      const base = this.ioBase + slot * ENTRY_WORDS;
      if (this.words[base + Field.State] !== EntryState.Free) found.push({ slot, entry: this.read(base) });
    }
    return found;
  }

  private read(base: number): JournalEntry {
    const words = this.words;
    const queue = words[base + Field.Queue]! >>> 0;
    const sqe = new Uint8Array(SQE_SIZE);
    const view = new DataView(sqe.buffer);
    for (let index = 0; index < SQE_WORDS; index++) view.setInt32(index * 4, words[base + Field.Sqe + index]!, true);
    return {
      state: words[base + Field.State]! as EntryState,
      sqid: queue & 0xffff,
      sqSlot: queue >>> 16,
      targetLap: words[base + Field.TargetLap]! >>> 0,
      targetSlot: words[base + Field.TargetSlot]!,
      status: words[base + Field.Status]!,
      dw0: words[base + Field.Dw0]!,
      sequence: words[base + Field.Sequence]!,
      sqe,
    };
  }
}
