/**
 * Submission and completion queues in guest memory, plus the shadow doorbell / EventIdx pages of Doorbell Buffer
 * Config. Queue memory is looked up again on every use (`DmaSpace.find` is a cached lookup) instead of being
 * pinned: a guest that unmaps memory under a live queue must not stall DMA_UNMAP, it gets a fatal controller status.
 */
import type { DmaAccess, DmaMapping, DmaSpace } from '../memory/guest-memory.js';
import { CQE_SIZE, SQE_SIZE } from '../spec/nvme.js';

/** Typed-array words are little-endian here, as NVMe structures are (so CQE dwords can be stored as words). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
/** x86-64 (TSO): an aligned store is single and becomes visible after the stores before it. */
const PLAIN_STORES_ARE_ORDERED = process.arch === 'x64';

/** A view of queue memory that is rebuilt only when the mapping behind it changes. */
class QueueMemory {
  private mapping: DmaMapping | undefined;
  view: DataView = new DataView(new ArrayBuffer(0));
  /** Aligned 32-bit view for stores that must be single and ordered (CQE phase dword, EventIdx); else undefined. */
  words: Int32Array | undefined;

  constructor(
    readonly iova: number,
    readonly byteLength: number,
    private readonly access: DmaAccess,
  ) {}

  /** The DmaSpace generation `mapping` was found in (see DmaSpace.generation), or -1. */
  private generation = -1;

  /** Re-validates the mapping; throws DmaError when the memory is gone. */
  resolve(dma: DmaSpace): void {
    const generation = dma.generation;
    // No mapping added or removed since the last lookup: the same window, still live (one compare per fetch and post).
    if (generation !== undefined && generation === this.generation) return;
    const mapping = dma.find(this.iova, this.byteLength, this.access);
    this.generation = generation ?? -1;
    if (mapping === this.mapping) return;
    const offset = mapping.bytes.byteOffset + (this.iova - mapping.iova);
    this.view = new DataView(mapping.bytes.buffer, offset, this.byteLength);
    this.words = offset % 4 === 0 ? new Int32Array(mapping.bytes.buffer, offset, this.byteLength / 4) : undefined;
    this.mapping = mapping;
  }
}

export class CompletionQueue {
  readonly memory: QueueMemory;
  /** Next slot the controller writes. */
  tail = 0;
  /** Next slot the host consumes (from its head doorbell). */
  head = 0;
  /** Phase tag of entries written in the current pass over the ring. */
  phase = 1;
  /** Passes over the ring completed (the phase is 1 in even laps); crash recovery finds the tail from it. */
  lap = 0;
  /** Slots promised to fetched commands whose completions are not posted yet: flow control that never overwrites. */
  reserved = 0;
  /** Submission queues posting here; Delete I/O CQ is refused while non-zero. */
  submissionQueues = 0;
  /** The last head value taken from the shadow doorbell page (change detection). */
  lastShadow = 0;

  constructor(
    readonly id: number,
    iova: number,
    readonly size: number,
    readonly vector: number,
    readonly interruptsEnabled: boolean,
  ) {
    this.memory = new QueueMemory(iova, size * CQE_SIZE, 'write');
  }

  get doorbellIndex(): number {
    return this.id * 2 + 1;
  }

  /** Completions posted and not yet consumed by the host. */
  get posted(): number {
    return (this.tail - this.head + this.size) % this.size;
  }

  /** Slots free for new fetches: one slot always stays empty so a full ring is distinguishable from an empty one. */
  get freeSlots(): number {
    return this.size - 1 - this.posted - this.reserved;
  }

  /**
   * Applies a new head from the host. Returns false (and changes nothing) when the value is outside the ring or
   * would consume entries that were never posted.
   */
  setHead(value: number): boolean {
    if (value >= this.size) return false;
    const consumed = (value - this.head + this.size) % this.size;
    if (consumed > this.posted) return false;
    this.head = value;
    return true;
  }

  /**
   * Writes one CQE at the tail. The caller has resolved the memory. The dword holding the phase tag goes last and
   * as one single store, so a host polling the phase never sees a half-written entry: on x86-64 a plain aligned
   * store (stores are not reordered with older stores, and the engine keeps typed-array stores in program order);
   * elsewhere Atomics.store for the release ordering. On x86-64 Atomics.store is an xchg, a full barrier that
   * waits for the CQ line, which the host's core holds: it cost 12 % of an in-process 4k read (hot-path profile).
   */
  post(dw0: number, sqHead: number, sqId: number, commandId: number, status: number): void {
    const offset = this.tail * CQE_SIZE;
    const dw3 = (commandId | (this.phase << 16) | (status << 17)) | 0;
    const words = this.memory.words;
    if (words !== undefined && LITTLE_ENDIAN) {
      const index = offset >> 2;
      words[index] = dw0 | 0;
      words[index + 1] = 0;
      words[index + 2] = sqHead | (sqId << 16);
      if (PLAIN_STORES_ARE_ORDERED) words[index + 3] = dw3;
      else Atomics.store(words, index + 3, dw3);
    } else {
      const view = this.memory.view;
      view.setUint32(offset, dw0 >>> 0, true);
      view.setUint32(offset + 4, 0, true);
      view.setUint32(offset + 8, (sqHead | (sqId << 16)) >>> 0, true);
      if (words !== undefined) Atomics.store(words, (offset + 12) >> 2, dw3);
      else view.setUint32(offset + 12, dw3 >>> 0, true);
    }
    this.tail++;
    if (this.tail === this.size) {
      this.tail = 0;
      this.phase ^= 1;
      this.lap = (this.lap + 1) | 0;
    }
  }
}

export class SubmissionQueue {
  readonly memory: QueueMemory;
  /** Next entry the controller fetches. */
  head = 0;
  /** One past the last entry the host submitted (from its tail doorbell). */
  tail = 0;
  /** Fetched commands not completed yet. */
  inFlight = 0;
  /** Entries consumed (fetched or skipped) since the queue was created, wrapping at 2^32 (the command journal's). */
  fetches = 0;
  /** Set while a Delete I/O SQ waits for in-flight commands: the command id to complete when they drain. */
  deleteCommandId: number | undefined;
  /** The last tail value taken from the shadow doorbell page (change detection). */
  lastShadow = 0;

  constructor(
    readonly id: number,
    iova: number,
    readonly size: number,
    readonly cq: CompletionQueue,
    readonly priority: number,
  ) {
    this.memory = new QueueMemory(iova, size * SQE_SIZE, 'read');
  }

  get doorbellIndex(): number {
    return this.id * 2;
  }

  get deleting(): boolean {
    return this.deleteCommandId !== undefined;
  }

  get isEmpty(): boolean {
    return this.head === this.tail;
  }

  /** Applies a new tail from the host; false (nothing changed) when it is outside the ring. */
  setTail(value: number): boolean {
    if (value >= this.size) return false;
    this.tail = value;
    return true;
  }

  /**
   * Copies the entry at the head into `dst` (a private 64-byte copy) and advances the head. Memory resolved.
   * `dstWords`, when given, is an Int32Array over the same 64 bytes as `dst`: the copy then goes word by word
   * through typed arrays (the same bytes in the same order, on any host byte order), which is cheaper than DataView.
   */
  fetch(dst: DataView, dstWords?: Int32Array): void {
    const base = this.head * SQE_SIZE;
    const words = this.memory.words;
    if (dstWords !== undefined && words !== undefined) {
      const first = base >> 2;
      for (let index = 0; index < SQE_SIZE / 4; index++) dstWords[index] = words[first + index]!;
    } else {
      const src = this.memory.view;
      for (let offset = 0; offset < SQE_SIZE; offset += 4) {
        dst.setUint32(offset, src.getUint32(base + offset, true), true);
      }
    }
    this.head++;
    if (this.head === this.size) this.head = 0;
    this.fetches = (this.fetches + 1) | 0;
  }

  /** Entries the host submitted that have not been fetched. */
  get unfetched(): number {
    return (this.tail - this.head + this.size) % this.size;
  }

  /** Consumes the entry at the head without running it; returns its command id. Memory resolved. */
  skip(): number {
    const commandId = this.memory.view.getUint16(this.head * SQE_SIZE + 2, true);
    this.head++;
    if (this.head === this.size) this.head = 0;
    this.fetches = (this.fetches + 1) | 0;
    return commandId;
  }
}

/**
 * Doorbell Buffer Config: the host mirrors its doorbell values into a shadow page and writes the MMIO doorbell
 * only when its new value passes the EventIdx we publish, which keeps trapped doorbell writes rare.
 * Both pages use the doorbell layout: word 2*qid = SQ tail, 2*qid+1 = CQ head.
 */
export class ShadowDoorbells {
  readonly shadow: QueueMemory;
  readonly eventIndex: QueueMemory;

  constructor(shadowIova: number, eventIndexIova: number, pageSize: number) {
    // Written too: the admin queue's shadow entries are kept in step with its MMIO doorbells
    // (see QueueEngine.doorbellWrite).
    this.shadow = new QueueMemory(shadowIova, pageSize, 'write');
    this.eventIndex = new QueueMemory(eventIndexIova, pageSize, 'write');
  }

  /** Re-validates both pages; throws DmaError when either is gone. */
  resolve(dma: DmaSpace): void {
    this.shadow.resolve(dma);
    this.eventIndex.resolve(dma);
  }

  readShadow(index: number): number {
    const words = this.shadow.words;
    // Atomics.load orders this read after the EventIdx store that precedes it (no store-load reordering).
    return words ? Atomics.load(words, index) >>> 0 : this.shadow.view.getUint32(index * 4, true);
  }

  writeShadow(index: number, value: number): void {
    const words = this.shadow.words;
    if (words) Atomics.store(words, index, value | 0);
    else this.shadow.view.setUint32(index * 4, value >>> 0, true);
  }

  /** Publishes an EventIdx with a full barrier, so the shadow read that follows cannot be hoisted above it. */
  writeEventIndex(index: number, value: number): void {
    const words = this.eventIndex.words;
    if (words) Atomics.store(words, index, value | 0);
    else this.eventIndex.view.setUint32(index * 4, value >>> 0, true);
  }
}
