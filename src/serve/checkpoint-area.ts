/**
 * A controller's crash checkpoint (docs/restart.md): one memfd that the holder keeps, so it outlives the data plane.
 * Layout, each part page aligned:
 *
 *   header            generation, which JSON slot is current and its length, the stream journal's active area
 *   doorbell page     interrupt mode: the doorbells the guest writes through trapped BAR0 writes
 *   JSON slot 0, 1    the controller's whole state (ControllerHandoverState), written whole to the idle slot, then
 *                     made current with one store: a checkpoint is never seen half written
 *   stream area 0, 1  the client connection's stream journal (see MemfdStreamJournal), double-buffered the same way
 *   command journal   src/nvme/command-journal.ts
 *
 * The memfd is sparse: only pages written cost memory (a few hundred KiB for a busy controller).
 */
import { native, PROT_READ, PROT_WRITE } from '../native/index.js';
import type { StreamJournal } from '../vfio-user/connection.js';

const PAGE = 4096;
const MAGIC = 0x56434b50; // "PKCV"
const VERSION = 1;
const JSON_SLOT_BYTES = 16 * 1024 * 1024;
/** Received bytes a connection may leave unsettled: the 8 MiB output high-water mark plus the largest message. */
const STREAM_BYTES = 16 * 1024 * 1024;
/** fd batches per stream area: messages with fds received before the output drains (DMA_MAP, SET_IRQS bursts). */
const STREAM_FD_BATCHES = 512;
const FDS_PER_BATCH = 16;

/** Header words (Int32). */
const enum H {
  Magic = 0,
  Version = 1,
  Generation = 2,
  JsonSlot = 3,
  JsonLength0 = 4,
  JsonLength1 = 5,
  StreamArea = 6,
  CommandJournalWords = 7,
}
/** Header doubles (Float64, after the words): positions of the stream journal. */
const SENT_POS = 8;

/** A stream area's header, in doubles: start position, output position at start, length, batches, overflow. */
const enum S {
  StartPos = 0,
  OutPosAtStart = 1,
  Length = 2,
  Batches = 3,
  Overflow = 4,
}
const STREAM_HEADER_DOUBLES = 8;
/** A batch: position, count, truncated, then up to 16 fd keys. */
const BATCH_DOUBLES = 3 + FDS_PER_BATCH;
const STREAM_META_BYTES = roundUp((STREAM_HEADER_DOUBLES + STREAM_FD_BATCHES * BATCH_DOUBLES) * 8);
const STREAM_AREA_BYTES = STREAM_META_BYTES + STREAM_BYTES;

function roundUp(bytes: number): number {
  return Math.ceil(bytes / PAGE) * PAGE;
}

/** How the checkpoint names fds: by keys the holder keeps them under, the same in every data plane. */
export interface FdKeys {
  /** `fd` was just received or made: have the holder keep it, and return its key. */
  keep(fd: number): number;
  /** The key of an fd kept before (kept now if it was not). */
  keyOf(fd: number): number;
}

/** What a stream area held: the received bytes from `startPos` and the fds (as keys) that came with them. */
export interface JournaledStream {
  startPos: number;
  outPosAtStart: number;
  bytes: Uint8Array;
  fdBatches: Array<{ pos: number; keys: number[]; truncated: boolean }>;
  /** The area could not hold everything received (a client that neither reads nor stops sending). */
  overflow: boolean;
  /** How far the output had reached the client. */
  sentPos: number;
}

export class CheckpointArea {
  readonly fd: number;
  private readonly buffer: ArrayBuffer;
  private readonly words: Int32Array;
  private readonly doubles: Float64Array;
  private readonly jsonBase = 2 * PAGE;
  private readonly streamBase = this.jsonBase + 2 * JSON_SLOT_BYTES;
  private readonly commandBase = this.streamBase + 2 * STREAM_AREA_BYTES;
  private readonly encoder = new TextEncoder();

  private constructor(fd: number, size: number) {
    this.fd = fd;
    this.buffer = native.mmap(fd, 0, size, PROT_READ | PROT_WRITE);
    this.words = new Int32Array(this.buffer, 0, PAGE / 4);
    this.doubles = new Float64Array(this.buffer, 0, PAGE / 8);
  }

  private static size(commandJournalWords: number): number {
    return 2 * PAGE + 2 * JSON_SLOT_BYTES + 2 * STREAM_AREA_BYTES + roundUp(commandJournalWords * 4);
  }

  /** A new, empty checkpoint for a controller whose command journal needs `commandJournalWords` words. */
  static create(commandJournalWords: number): CheckpointArea {
    const size = CheckpointArea.size(commandJournalWords);
    const fd = native.memfdCreate('vfiod-checkpoint', size);
    const area = new CheckpointArea(fd, size);
    area.words[H.Version] = VERSION;
    area.words[H.CommandJournalWords] = commandJournalWords;
    area.words[H.Magic] = MAGIC;
    return area;
  }

  /** The checkpoint a data plane that died left (the holder kept `fd`); throws when it is not one. */
  static open(fd: number): CheckpointArea {
    const header = new Int32Array(native.mmap(fd, 0, PAGE, PROT_READ));
    const magic = header[H.Magic];
    const version = header[H.Version];
    const commandJournalWords = header[H.CommandJournalWords]!;
    native.munmap(header.buffer as ArrayBuffer);
    if (magic !== MAGIC) throw new Error('the held checkpoint is not a vfiod checkpoint');
    if (version !== VERSION) throw new Error(`the held checkpoint is version ${version}; this build reads version ${VERSION}`);
    return new CheckpointArea(fd, CheckpointArea.size(commandJournalWords));
  }

  /** Bumped by every recovery: fd keys of different data planes never collide. */
  get generation(): number {
    return this.words[H.Generation]!;
  }

  nextGeneration(): number {
    this.words[H.Generation] = this.generation + 1;
    return this.generation;
  }

  /** Interrupt mode's doorbell page (1024 words). */
  get doorbellPage(): Uint32Array {
    return new Uint32Array(this.buffer, PAGE, PAGE / 4);
  }

  commandJournalWords(): Int32Array {
    return new Int32Array(this.buffer, this.commandBase, this.words[H.CommandJournalWords]!);
  }

  /** Writes `state` to the idle slot and makes it current. Throws (changing nothing) when it does not fit. */
  writeJson(state: unknown): number {
    const text = JSON.stringify(state);
    const slot = this.words[H.JsonSlot] === 0 ? 1 : 0;
    const target = new Uint8Array(this.buffer, this.jsonBase + slot * JSON_SLOT_BYTES, JSON_SLOT_BYTES);
    const { read, written } = this.encoder.encodeInto(text, target);
    if (read < text.length) throw new Error(`checkpoint of ${text.length} characters does not fit its ${JSON_SLOT_BYTES}-byte slot`);
    this.words[H.JsonLength0 + slot] = written;
    Atomics.store(this.words, H.JsonSlot, slot);
    return written;
  }

  /** The current checkpoint, or undefined when none was ever written. */
  readJson(): unknown {
    const slot = this.words[H.JsonSlot]!;
    const length = this.words[H.JsonLength0 + slot]!;
    if (length <= 0) return undefined;
    return JSON.parse(new TextDecoder().decode(new Uint8Array(this.buffer, this.jsonBase + slot * JSON_SLOT_BYTES, length)));
  }

  /** The stream journal of the client connection, naming fds by the keys `keys` gives them (see FdKeys). */
  streamJournal(fresh: boolean, keys: FdKeys): MemfdStreamJournal {
    return new MemfdStreamJournal(this.buffer, this.streamBase, this.doubles, this.words, fresh, keys);
  }

  /** The fd keys the stream journal's active area names (without copying its bytes). */
  streamFdKeys(): number[] {
    const area = this.words[H.StreamArea]!;
    const meta = new Float64Array(this.buffer, this.streamBase + area * STREAM_AREA_BYTES, STREAM_META_BYTES / 8);
    const keys: number[] = [];
    for (let index = 0; index < Math.min(meta[S.Batches]!, STREAM_FD_BATCHES); index++) {
      const at = STREAM_HEADER_DOUBLES + index * BATCH_DOUBLES;
      for (let fd = 0; fd < Math.min(meta[at + 1]!, FDS_PER_BATCH); fd++) keys.push(meta[at + 3 + fd]!);
    }
    return keys;
  }

  /** What the stream journal holds (crash recovery). */
  readStream(): JournaledStream {
    const area = this.words[H.StreamArea]!;
    const base = this.streamBase + area * STREAM_AREA_BYTES;
    const meta = new Float64Array(this.buffer, base, STREAM_META_BYTES / 8);
    const length = meta[S.Length]!;
    const fdBatches: JournaledStream['fdBatches'] = [];
    for (let index = 0; index < Math.min(meta[S.Batches]!, STREAM_FD_BATCHES); index++) {
      const at = STREAM_HEADER_DOUBLES + index * BATCH_DOUBLES;
      const count = Math.min(meta[at + 1]!, FDS_PER_BATCH);
      fdBatches.push({ pos: meta[at]!, truncated: meta[at + 2] === 1, keys: Array.from(meta.subarray(at + 3, at + 3 + count)) });
    }
    return {
      startPos: meta[S.StartPos]!,
      outPosAtStart: meta[S.OutPosAtStart]!,
      bytes: new Uint8Array(this.buffer, base + STREAM_META_BYTES, Math.min(length, STREAM_BYTES)).slice(),
      fdBatches,
      overflow: meta[S.Overflow] === 1,
      sentPos: this.doubles[SENT_POS]!,
    };
  }

  close(): void {
    if (native.isMapped(this.buffer)) native.munmap(this.buffer);
  }
}

/**
 * The connection's StreamJournal over two stream areas: `received` appends to the active one; `settled` writes the
 * new start (and the few bytes after it) into the idle one and makes it active with one store, so a successor
 * always finds one consistent area. `sent` is one store in the checkpoint header.
 */
export class MemfdStreamJournal implements StreamJournal {
  private active: number;
  private meta: Float64Array;
  private bytes: Uint8Array;

  constructor(
    private readonly buffer: ArrayBuffer,
    private readonly base: number,
    private readonly headerDoubles: Float64Array,
    private readonly headerWords: Int32Array,
    fresh: boolean,
    private readonly keys: FdKeys,
  ) {
    this.active = headerWords[H.StreamArea]!;
    this.meta = this.metaOf(this.active);
    this.bytes = this.bytesOf(this.active);
    if (fresh) {
      // A new connection: its streams start at 0.
      this.settled(0, 0, new Uint8Array(0), []);
      headerDoubles[SENT_POS] = 0;
    }
  }

  private metaOf(area: number): Float64Array {
    return new Float64Array(this.buffer, this.base + area * STREAM_AREA_BYTES, STREAM_META_BYTES / 8);
  }

  private bytesOf(area: number): Uint8Array {
    return new Uint8Array(this.buffer, this.base + area * STREAM_AREA_BYTES + STREAM_META_BYTES, STREAM_BYTES);
  }

  received(pos: number, bytes: Uint8Array, fds: readonly number[], truncated: boolean): void {
    const keys = fds.map((fd) => this.keys.keep(fd)); // the holder has them before anything else happens
    const meta = this.meta;
    if (meta[S.Overflow] === 1) return;
    const length = meta[S.Length]!;
    if (pos !== meta[S.StartPos]! + length || length + bytes.length > STREAM_BYTES) {
      meta[S.Overflow] = 1;
      return;
    }
    this.bytes.set(bytes, length);
    if (keys.length > 0 || truncated) {
      const batch = meta[S.Batches]!;
      if (batch >= STREAM_FD_BATCHES || keys.length > FDS_PER_BATCH) {
        meta[S.Overflow] = 1;
        return;
      }
      const at = STREAM_HEADER_DOUBLES + batch * BATCH_DOUBLES;
      meta[at] = pos + bytes.length - 1;
      meta[at + 1] = keys.length;
      meta[at + 2] = truncated ? 1 : 0;
      meta.set(keys, at + 3);
      meta[S.Batches] = batch + 1;
    }
    meta[S.Length] = length + bytes.length; // last: the bytes and their fds are in place
  }

  settled(
    inPos: number,
    outPos: number,
    rest: Uint8Array,
    restFds: ReadonlyArray<{ pos: number; fds: readonly number[]; truncated: boolean }>,
  ): void {
    const idle = this.active === 0 ? 1 : 0;
    const meta = this.metaOf(idle);
    const bytes = this.bytesOf(idle);
    meta[S.StartPos] = inPos;
    meta[S.OutPosAtStart] = outPos;
    meta[S.Overflow] = 0;
    let batches = 0;
    for (const batch of restFds) {
      if (batches >= STREAM_FD_BATCHES || batch.fds.length > FDS_PER_BATCH) {
        meta[S.Overflow] = 1;
        break;
      }
      const at = STREAM_HEADER_DOUBLES + batches * BATCH_DOUBLES;
      meta[at] = batch.pos;
      meta[at + 1] = batch.fds.length;
      meta[at + 2] = batch.truncated ? 1 : 0;
      meta.set(batch.fds.map((fd) => this.keys.keyOf(fd)), at + 3);
      batches++;
    }
    meta[S.Batches] = batches;
    if (rest.length > STREAM_BYTES) meta[S.Overflow] = 1;
    else bytes.set(rest, 0);
    meta[S.Length] = Math.min(rest.length, STREAM_BYTES);
    Atomics.store(this.headerWords, H.StreamArea, idle);
    this.active = idle;
    this.meta = meta;
    this.bytes = bytes;
  }

  sent(outPos: number): void {
    this.headerDoubles[SENT_POS] = outPos;
  }
}
