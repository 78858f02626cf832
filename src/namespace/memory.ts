/**
 * A namespace held in process memory: nothing survives a restart. Useful for tests, benchmarks and scratch disks.
 * Reads and writes complete synchronously (return undefined), which is the controller's allocation-free fast path.
 *
 * The store is a row of chunks (64 MiB by default), each allocated when first written: a chunk never written reads as
 * zeroes and costs nothing. A chunk is memory outside the engine's heap (`native.allocateZeroed`), on transparent
 * huge pages where the host allows them: the OS commits it as it is first written, 2 MiB at a time with huge pages,
 * and a random 4 KiB read over it rarely misses the TLB (a fifth of a QD1 read: docs/benchmarks.md). Few, large
 * chunks also keep the arrays one batch of copies names few (memory/copy-list.ts). Deallocate and Write Zeroes drop
 * the chunks they cover whole and give the pages of the partly covered ones back to the OS (`native.discard`), so
 * the memory goes back either way. That work is cut into slices of at most
 * CLEAR_UNITS_PER_TURN per event-loop turn for the whole namespace (sliced-work.ts): one Dataset Management command
 * of 256 ranges over the whole namespace, or a thousand of them queued, never holds the thread for more than a few
 * milliseconds at a time. A request that fits in one turn completes synchronously.
 */
import { COPY_STREAM_TARGET, CopyList } from '../memory/copy-list.js';
import { native } from '../native/index.js';
import { formatSize } from '../util/size.js';
import { NamespaceError, type ByteRange, type Namespace, type NamespaceUsage } from './namespace.js';
import { SlicedWork, type SlicedJob } from './sliced-work.js';

export interface MemoryNamespaceOptions {
  sizeBytes: number;
  /** 512 (default) or 4096. */
  blockSize?: number;
  /**
   * Bytes per backing ArrayBuffer (default 64 MiB), allocated when first written; deallocation drops whole chunks.
   * A multiple of 4096, at most 1 GiB (a batched copy addresses a chunk with 32-bit offsets).
   */
  chunkBytes?: number;
}

export const DEFAULT_MEMORY_CHUNK_BYTES = 64 * 1024 * 1024;
const MAX_CHUNK_BYTES = 1024 * 1024 * 1024;
/** Cost units (bytes zero-filled) a namespace spends on deallocation / write zeroes per event-loop turn. */
export const CLEAR_UNITS_PER_TURN = 16 * 1024 * 1024;
/** What skipping one chunk costs, in the same units. */
const CHUNK_SKIP_UNITS = 4096;
/**
 * Giving a dropped chunk's pages back (MADV_DONTNEED) costs about an eighth of zero-filling them (measured: 0.2-1.3 ms
 * per 64 MiB written, huge or small pages): a drop is charged its length divided by this.
 */
const DROP_COST_DIVISOR = 8;

export class MemoryNamespace implements Namespace {
  readonly blockSize: number;
  /** Fields rather than getters: the I/O path reads them on every command. Only `grow` changes them. */
  sizeBytes: number;
  blockCount: number;
  description: string;
  readonly volatileWriteCache = false;
  readonly maxTransferBytes = 0;
  /** Deallocated blocks read as zeroes; reported as not thin-provisioned (NUSE = NSZE), as before lazy chunks. */
  readonly supportsDeallocate = false;
  private readonly chunkBytes: number;
  /** chunks[i], or undefined while chunk i has never been written (or was dropped): it reads as zeroes. */
  private chunks: Array<Uint8Array<ArrayBuffer> | undefined>;
  /** chunks[i].buffer (each chunk is a whole ArrayBuffer of its own). */
  private chunkBuffers: Array<ArrayBuffer | undefined>;
  private closed = false;
  /** writeSync's copies when its caller does not batch them. */
  private readonly writeCopies = new CopyList();
  /** Buffers of dropped chunks, zeroed and without pages: the next chunks to be written take them. */
  private spareBuffers: ArrayBuffer[] = [];
  private readonly clearing = new SlicedWork(CLEAR_UNITS_PER_TURN);

  constructor(options: MemoryNamespaceOptions) {
    const { sizeBytes, blockSize = 512, chunkBytes = DEFAULT_MEMORY_CHUNK_BYTES } = options;
    if (blockSize !== 512 && blockSize !== 4096) {
      throw new Error(`memory namespace: block size must be 512 or 4096, got ${blockSize}`);
    }
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % blockSize !== 0) {
      throw new Error(`memory namespace: size ${sizeBytes} must be a positive multiple of the block size ${blockSize}`);
    }
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0 || chunkBytes % 4096 !== 0 || chunkBytes > MAX_CHUNK_BYTES) {
      throw new Error(`memory namespace: chunk size ${chunkBytes} must be a positive multiple of 4096 up to 1 GiB`);
    }
    this.blockSize = blockSize;
    this.sizeBytes = sizeBytes;
    this.blockCount = sizeBytes / blockSize;
    this.description = `memory:${formatSize(sizeBytes)}`;
    this.chunkBytes = chunkBytes;
    const chunkCount = Math.ceil(sizeBytes / chunkBytes);
    this.chunks = new Array<Uint8Array<ArrayBuffer> | undefined>(chunkCount).fill(undefined);
    this.chunkBuffers = new Array<ArrayBuffer | undefined>(chunkCount).fill(undefined);
  }

  /**
   * Grows the store: the new blocks read as zeroes and cost nothing until written. A last chunk that was shorter
   * than chunkBytes is lengthened over its own memory (every chunk reserves chunkBytes; the part past the old end was
   * never visible, so it is still zeroes), so every chunk but the new last one is chunkBytes long again.
   */
  grow(sizeBytes: number): Promise<void> {
    if (this.closed) return Promise.reject(new NamespaceError('internal', `${this.description}: grow after close`));
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= this.sizeBytes || sizeBytes % this.blockSize !== 0) {
      return Promise.reject(new NamespaceError('internal', `${this.description}: new size ${sizeBytes} must be a multiple of the block size ${this.blockSize} larger than ${this.sizeBytes}`));
    }
    const lastIndex = this.chunks.length - 1;
    const last = this.chunks[lastIndex];
    this.sizeBytes = sizeBytes;
    this.blockCount = sizeBytes / this.blockSize;
    this.description = `memory:${formatSize(sizeBytes)}`;
    if (last !== undefined && last.length < this.chunkLengthOf(lastIndex)) {
      const longer = new Uint8Array(last.buffer, 0, this.chunkLengthOf(lastIndex));
      this.chunks[lastIndex] = longer;
      this.chunkBuffers[lastIndex] = longer.buffer;
    }
    const chunkCount = Math.ceil(sizeBytes / this.chunkBytes);
    while (this.chunks.length < chunkCount) {
      this.chunks.push(undefined);
      this.chunkBuffers.push(undefined);
    }
    return Promise.resolve();
  }

  read(offset: number, buffers: readonly Uint8Array[]): void {
    let position = offset;
    for (let index = 0; index < buffers.length; index++) {
      const buffer = buffers[index]!;
      const length = buffer.length;
      this.check('read', position, length);
      let done = 0;
      while (done < length) {
        const chunkIndex = Math.floor((position + done) / this.chunkBytes);
        const start = position + done - chunkIndex * this.chunkBytes;
        const piece = Math.min(length - done, this.chunkLengthOf(chunkIndex) - start);
        const source = this.chunkBuffers[chunkIndex];
        // A view of the source (cheaper to build than `subarray`, and over the chunk's cached ArrayBuffer: the
        // `buffer` getter is a runtime call); the copy itself is the one unavoidable one.
        if (source === undefined) buffer.fill(0, done, done + piece);
        else buffer.set(new Uint8Array(source, start, piece), done);
        done += piece;
      }
      position += length;
    }
  }

  readSync(offset: number, bytes: Uint8Array, at: number, length: number, copies?: CopyList): void {
    this.check('read', offset, length);
    if (!(at >= 0 && at + length <= bytes.length)) throw new RangeError(`readSync: ${length} bytes at ${at} outside the target`);
    let done = 0;
    while (done < length) {
      const chunkIndex = Math.floor((offset + done) / this.chunkBytes);
      const start = offset + done - chunkIndex * this.chunkBytes;
      const piece = Math.min(length - done, this.chunkLengthOf(chunkIndex) - start);
      const source = this.chunkBuffers[chunkIndex];
      // A chunk never written is zeroes now: no copy queued before this one can write it (a queued write allocated
      // its chunk when it was queued).
      if (source === undefined) bytes.fill(0, at + done, at + done + piece);
      else if (copies !== undefined) copies.add(this.chunks[chunkIndex]!, start, bytes, at + done, piece);
      // The one view left per piece: the source's (TypedArray#set copies a whole array).
      else bytes.set(new Uint8Array(source, start, piece), at + done);
      done += piece;
    }
  }

  writeSync(offset: number, bytes: Uint8Array, at: number, length: number, copies?: CopyList): void {
    this.check('write', offset, length);
    if (!(at >= 0 && at + length <= bytes.length)) throw new RangeError(`writeSync: ${length} bytes at ${at} outside the source`);
    // Without a caller's list the copies are made here, through the same native call: the guest's data goes around
    // the cache either way (COPY_STREAM_TARGET: nothing reads it back soon, and a cached store into a page the
    // namespace has not touched lately would first read each line from memory, which doubles a 4 KiB write's cost).
    if (copies !== undefined) {
      this.queueWrite(offset, bytes, at, length, copies);
      return;
    }
    const own = this.writeCopies;
    try {
      this.queueWrite(offset, bytes, at, length, own);
    } catch (error) {
      // A call that threw half way (out of memory for a chunk) leaves nothing queued, and no references.
      own.clear();
      throw error;
    }
    own.run(); // empties the list, also when it throws
  }

  private queueWrite(offset: number, bytes: Uint8Array, at: number, length: number, copies: CopyList): void {
    let done = 0;
    while (done < length) {
      const chunkIndex = Math.floor((offset + done) / this.chunkBytes);
      // Allocated now even when the copy is queued: a Read queued after it then copies from this chunk.
      const chunk = this.chunks[chunkIndex] ?? this.allocateChunk(chunkIndex);
      const start = offset + done - chunkIndex * this.chunkBytes;
      const piece = Math.min(length - done, chunk.length - start);
      copies.add(bytes, at + done, chunk, start, piece, COPY_STREAM_TARGET);
      done += piece;
    }
  }

  write(offset: number, buffers: readonly Uint8Array[]): void {
    let position = offset;
    for (const buffer of buffers) {
      this.check('write', position, buffer.length);
      let done = 0;
      while (done < buffer.length) {
        // Division and subtraction, not `%`: offsets are doubles past 2^31, and `%` on a double is a runtime call.
        const chunkIndex = Math.floor((position + done) / this.chunkBytes);
        const chunk = this.chunks[chunkIndex] ?? this.allocateChunk(chunkIndex);
        const start = position + done - chunkIndex * this.chunkBytes;
        const piece = Math.min(buffer.length - done, chunk.length - start);
        chunk.set(piece === buffer.length ? buffer : buffer.subarray(done, done + piece), start);
        done += piece;
      }
      position += buffer.length;
    }
  }

  flush(): void {}

  deallocate(ranges: readonly ByteRange[]): Promise<void> | void {
    for (const range of ranges) this.check('write', range.offset, range.length);
    return this.clearing.run(new ClearJob(this, ranges));
  }

  writeZeroes(offset: number, length: number): Promise<void> | void {
    this.check('write', offset, length);
    return this.clearing.run(new ClearJob(this, [{ offset, length }]));
  }

  /** Chunks that hold memory now (written and not dropped since). */
  get allocatedChunks(): number {
    let count = 0;
    for (const chunk of this.chunks) if (chunk !== undefined) count++;
    return count;
  }

  /**
   * Zeroes [offset, offset + length) of one chunk: drops it when the range covers it whole, else zeroes the part and
   * gives its whole pages back (a chunk never written is already zeroes). Returns the cost in CLEAR_UNITS_PER_TURN
   * units. For ClearJob.
   */
  clearInChunk(chunkIndex: number, start: number, length: number): number {
    if (this.closed) throw new NamespaceError('internal', `${this.description}: write zeroes after close`);
    const chunk = this.chunks[chunkIndex];
    if (chunk === undefined) return CHUNK_SKIP_UNITS;
    if (start === 0 && length === chunk.length) {
      this.chunks[chunkIndex] = undefined;
      this.chunkBuffers[chunkIndex] = undefined;
      // The pages go back now (the engine does not count memory outside its heap, so a collection may come late),
      // and the zeroed buffer is kept for the next chunk: the mappings stay as many as the namespace's chunks.
      native.discard(chunk.buffer, 0, chunk.buffer.byteLength);
      this.spareBuffers.push(chunk.buffer);
      return Math.max(CHUNK_SKIP_UNITS, chunk.buffer.byteLength / DROP_COST_DIVISOR);
    }
    native.discard(chunk.buffer, start, length);
    return Math.max(length, CHUNK_SKIP_UNITS);
  }

  get bytesPerChunk(): number {
    return this.chunkBytes;
  }

  usage(): NamespaceUsage {
    return { allocatedBytes: this.sizeBytes };
  }

  close(): Promise<void> {
    this.closed = true;
    this.writeCopies.clear();
    for (const chunk of this.chunks) if (chunk !== undefined) native.discard(chunk.buffer, 0, chunk.buffer.byteLength);
    this.spareBuffers = [];
    this.chunks = [];
    this.chunkBuffers = [];
    return Promise.resolve();
  }

  /** Bytes of chunk `chunkIndex` (the last one may be short). */
  chunkLengthOf(chunkIndex: number): number {
    return Math.min(this.chunkBytes, this.sizeBytes - chunkIndex * this.chunkBytes);
  }

  private allocateChunk(chunkIndex: number): Uint8Array<ArrayBuffer> {
    let chunk: Uint8Array<ArrayBuffer>;
    try {
      const spare = this.spareBuffers.pop();
      chunk = spare !== undefined ? new Uint8Array(spare, 0, this.chunkLengthOf(chunkIndex)) : newChunk(this.chunkBytes, this.chunkLengthOf(chunkIndex));
    } catch (error) {
      throw new NamespaceError('capacity', `${this.description}: cannot allocate memory for a write: ${String(error)}`, undefined, {
        cause: error,
      });
    }
    this.chunks[chunkIndex] = chunk;
    this.chunkBuffers[chunkIndex] = chunk.buffer as ArrayBuffer;
    return chunk;
  }

  /** The controller checks ranges against blockCount; this guards the store against a caller bug or a closed store. */
  private check(kind: 'read' | 'write', offset: number, length: number): void {
    if (this.closed) throw new NamespaceError('internal', `${this.description}: ${kind} after close`);
    if (!(offset >= 0 && length >= 0 && offset + length <= this.sizeBytes)) {
      throw new NamespaceError(
        'internal',
        `${this.description}: ${kind} of ${length} bytes at offset ${offset} is outside the namespace`,
      );
    }
  }
}

/** Zeroes a list of ranges of a MemoryNamespace chunk by chunk, as slices of a SlicedWork. */
class ClearJob implements SlicedJob {
  private index = 0;
  /** Bytes of ranges[index] already done. */
  private doneInRange = 0;

  constructor(
    private readonly namespace: MemoryNamespace,
    private readonly ranges: readonly ByteRange[],
  ) {}

  get done(): boolean {
    return this.index >= this.ranges.length;
  }

  step(budget: number): number {
    const chunkBytes = this.namespace.bytesPerChunk;
    let spent = 0;
    while (this.index < this.ranges.length && spent < budget) {
      const range = this.ranges[this.index]!;
      if (this.doneInRange >= range.length) {
        this.index++;
        this.doneInRange = 0;
        continue;
      }
      const position = range.offset + this.doneInRange;
      const chunkIndex = Math.floor(position / chunkBytes);
      const start = position - chunkIndex * chunkBytes;
      const chunkLength = this.namespace.chunkLengthOf(chunkIndex);
      let length = Math.min(range.length - this.doneInRange, chunkLength - start);
      if (!(start === 0 && length === chunkLength)) {
        // A partly covered chunk is zero-filled, at most what is left of the budget at a time.
        const room = budget - spent;
        if (length > room) length = Math.min(length, Math.max(4096, room - (room % 4096)));
      }
      spent += this.namespace.clearInChunk(chunkIndex, start, length);
      this.doneInRange += length;
      if (this.doneInRange >= range.length) {
        this.index++;
        this.doneInRange = 0;
      }
    }
    return spent;
  }
}

/**
 * Zeroed memory for a chunk: `reserved` bytes (the namespace's chunk size, so a last chunk can grow in place; from
 * 2 MiB on rounded up to whole 2 MiB, on huge pages), seen as its first `length`. The OS commits it as it is written.
 */
function newChunk(reserved: number, length: number): Uint8Array<ArrayBuffer> {
  const hugePages = reserved >= HUGE_PAGE_BYTES;
  const bytes = hugePages ? Math.ceil(reserved / HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES : reserved;
  return new Uint8Array(native.allocateZeroed(bytes, hugePages), 0, length);
}

const HUGE_PAGE_BYTES = 2 * 1024 * 1024;
