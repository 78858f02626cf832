/**
 * Moving a serving namespace to another backing (docs/serve.md "Moving a namespace to another backing"). A
 * `BackingSwap` stands in for the namespace from the start of the move: every command goes through it to the backing
 * that is authoritative now (the old one until the switch, the new one after it), and while the data is copied it
 * records which chunks the guest's writes, Write Zeroes and deallocations touched (`DirtyMap`). `moveData` copies
 * everything once, then the chunks written meanwhile, pass after pass until few are left (slowing a guest that dirties
 * chunks faster than the copy goes); it then holds new commands
 * at the stand-in, waits for those in flight, copies the rest, lets the caller commit (persist the new backing), and
 * switches. A failure anywhere before the commit leaves the old backing authoritative with nothing lost.
 *
 * Knows only the Namespace interface: the NVMe controller and the daemon know nothing of passes and chunks.
 */
import { sleep } from '../util/sleep.js';
import { NamespaceError, type ByteRange, type Namespace, type NamespacePath, type NamespaceUsage } from './namespace.js';

/** Granularity of the dirty map: a write anywhere in a chunk copies the whole chunk again. */
export const DIRTY_CHUNK_BYTES = 64 * 1024;
/** Adjacent dirty chunks are copied together, up to this much per read and write. */
export const COPY_RUN_BYTES = 1024 * 1024;
/**
 * How long the last pass should hold the namespace's commands: passes go on until what is dirty takes about that
 * long to copy at the rate the previous pass reached (and never more than FINAL_PASS_BYTES).
 */
export const HELD_TARGET_MS = 50;
export const FINAL_PASS_BYTES = 16 * 1024 * 1024;
/** A guest that writes faster than the copy never gets there: after this many passes it waits anyway. */
export const MAX_COPY_PASSES = 8;
/**
 * Runs copied at once. A file's reads and writes run on libuv's thread pool (4 threads for the whole process, every
 * controller's file I/O included): two copies leave the other threads to the guests.
 */
const COPIES_IN_FLIGHT = 2;

/** One bit per chunk of a namespace: set when a write may have changed the chunk since it was last copied. */
export class DirtyMap {
  private readonly bits: Uint8Array;
  private dirty = 0;
  readonly chunks: number;

  constructor(
    readonly sizeBytes: number,
    readonly chunkBytes: number,
  ) {
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0) throw new Error(`dirty map: chunk size ${chunkBytes} must be a positive integer`);
    this.chunks = Math.ceil(sizeBytes / chunkBytes);
    this.bits = new Uint8Array(Math.ceil(this.chunks / 8));
  }

  /** Chunks marked and not taken since. */
  get dirtyChunks(): number {
    return this.dirty;
  }

  /** Bytes those chunks cover (the last chunk may be short). */
  get dirtyBytes(): number {
    if (this.dirty === 0) return 0;
    const lastShort = this.isDirty(this.chunks - 1) ? this.chunks * this.chunkBytes - this.sizeBytes : 0;
    return this.dirty * this.chunkBytes - lastShort;
  }

  isDirty(chunk: number): boolean {
    return (this.bits[chunk >> 3]! & (1 << (chunk & 7))) !== 0;
  }

  /** Marks every chunk that `length` bytes at `offset` touch (nothing for an empty range). */
  mark(offset: number, length: number): void {
    if (length <= 0) return;
    const first = Math.floor(offset / this.chunkBytes);
    const last = Math.min(this.chunks - 1, Math.floor((offset + length - 1) / this.chunkBytes));
    for (let chunk = first; chunk <= last; chunk++) this.set(chunk);
  }

  /** Bytes of the chunks `length` bytes at `offset` touch that are not dirty now (what a write there would add). */
  cleanBytesIn(offset: number, length: number): number {
    if (length <= 0) return 0;
    const first = Math.floor(offset / this.chunkBytes);
    const last = Math.min(this.chunks - 1, Math.floor((offset + length - 1) / this.chunkBytes));
    let clean = 0;
    for (let chunk = first; chunk <= last; chunk++) if (!this.isDirty(chunk)) clean += this.chunkBytes;
    return clean;
  }

  markAll(): void {
    for (let chunk = 0; chunk < this.chunks; chunk++) this.set(chunk);
  }

  /**
   * The dirty chunks as byte ranges, ascending, adjacent ones joined up to `maxRunBytes` (a multiple of the chunk
   * size), and clears them: a write from now on marks its chunk again.
   */
  take(maxRunBytes = this.chunkBytes): ByteRange[] {
    const ranges: ByteRange[] = [];
    let last: ByteRange | undefined;
    for (let chunk = 0, found = 0; chunk < this.chunks && found < this.dirty; chunk++) {
      if (!this.isDirty(chunk)) continue;
      found++;
      const offset = chunk * this.chunkBytes;
      const length = Math.min(this.chunkBytes, this.sizeBytes - offset);
      if (last !== undefined && last.offset + last.length === offset && last.length + length <= maxRunBytes) last.length += length;
      else ranges.push((last = { offset, length }));
    }
    this.bits.fill(0);
    this.dirty = 0;
    return ranges;
  }

  private set(chunk: number): void {
    const bit = 1 << (chunk & 7);
    const byte = chunk >> 3;
    if ((this.bits[byte]! & bit) !== 0) return;
    this.bits[byte]! |= bit;
    this.dirty++;
  }
}

/** Which backing serves commands: the old one, none (commands wait: the last pass and the switch), the new one. */
type Serving = 'source' | 'held' | 'target';

/**
 * The namespace as the controller sees it during a move, and after it while the new backing presents otherwise what
 * the guest knows (else the caller puts the new backing itself in its place once switched). It presents what the
 * guest knows of the old backing (size, block size, write protection, thin provisioning, transfer limit), so no
 * Identify field changes, and a volatile write cache when either backing has one; the new backing must be at least
 * as large and take the same block size (the caller checks).
 */
export class BackingSwap implements Namespace {
  readonly blockSize: number;
  /** The old backing's, until a grow after the switch (`grow`). */
  blockCount: number;
  readonly volatileWriteCache: boolean;
  readonly maxTransferBytes: number;
  readonly readOnly: boolean;
  readonly supportsDeallocate: boolean;

  private serving: Serving = 'source';
  /** Set while copying: the chunks writes touched. */
  private tracking: DirtyMap | undefined;
  /** Backend operations started through this stand-in and not settled. */
  private running = 0;
  private idleWaiters: Array<() => void> = [];
  /** Commands held while `serving` is 'held'; each goes on once it is not. */
  private heldCommands: Array<() => void> = [];
  /** While set (bytes per ms), writes may dirty chunks at that rate at most: `writeClock` is when the next one may start. */
  private writeRate: number | undefined;
  private writeClock = 0;
  /**
   * Reads and writes waiting here (held, or slowed by the write rate), by their buffers: `abandon` takes them back,
   * so one the controller gave up (a reset, the guest's memory unmapped) never reaches a backing later.
   */
  private waiting = new Map<readonly Uint8Array[], () => void>();

  constructor(
    readonly source: Namespace,
    readonly target: Namespace,
  ) {
    this.blockSize = source.blockSize;
    this.blockCount = source.blockCount;
    // Not an Identify Namespace field, so it need not stay the old backing's: a cache either backing has must be
    // flushed when the controller would flush one (FUA, Flush, the write cache disabled). The caller checked that the
    // controller reported a write cache when the new backing has one (replacementProblem), so the guest flushes.
    this.volatileWriteCache = source.volatileWriteCache || target.volatileWriteCache;
    this.maxTransferBytes = source.maxTransferBytes;
    this.readOnly = source.readOnly === true;
    this.supportsDeallocate = source.supportsDeallocate;
  }

  /** The backing commands go to now (the old one while held). */
  get current(): Namespace {
    return this.serving === 'target' ? this.target : this.source;
  }

  get description(): string {
    return this.current.description;
  }

  /** Backend operations in flight through this stand-in (commands held at it are not). */
  get inFlight(): number {
    return this.running;
  }

  get switched(): boolean {
    return this.serving === 'target';
  }

  usage(): NamespaceUsage {
    return this.current.usage?.() ?? { allocatedBytes: this.blockCount * this.blockSize };
  }

  pathStates(): NamespacePath[] {
    return this.current.pathStates?.() ?? [];
  }

  read(offset: number, buffers: readonly Uint8Array[]): Promise<void> | void {
    return this.run((backing) => backing.read(offset, buffers), undefined, 0, buffers);
  }

  write(offset: number, buffers: readonly Uint8Array[]): Promise<void> | void {
    let length = 0;
    for (const buffer of buffers) length += buffer.length;
    const write = (): Promise<void> | void => this.run((backing) => backing.write(offset, buffers), offset, length, buffers);
    if (this.writeRate === undefined || this.serving !== 'source') return write();
    // A write costs what it adds to the next pass: the chunks it makes dirty (a hot block written again is free).
    const cost = this.tracking?.cleanBytesIn(offset, length) ?? length;
    const now = performance.now();
    const start = Math.max(now, this.writeClock);
    this.writeClock = start + cost / this.writeRate;
    return start > now ? this.waitHere(sleep(start - now), buffers).then(write) : write();
  }

  flush(): Promise<void> | void {
    return this.run((backing) => backing.flush());
  }

  deallocate(ranges: readonly ByteRange[]): Promise<void> | void {
    return this.run((backing) => backing.deallocate(ranges), ranges);
  }

  writeZeroes(offset: number, length: number): Promise<void> | void {
    return this.run((backing) => backing.writeZeroes(offset, length), offset, length);
  }

  abandon(buffers: readonly Uint8Array[]): boolean {
    const takeBack = this.waiting.get(buffers);
    if (takeBack !== undefined) {
      takeBack();
      return true;
    }
    return this.current.abandon?.(buffers) ?? false;
  }

  async grow(sizeBytes: number): Promise<void> {
    // The guest knows the old size until the move is done; after it the new backing decides.
    if (this.serving !== 'target') {
      throw new NamespaceError('unsupported', `${this.description}: cannot grow to ${sizeBytes} bytes while it moves to another backing`);
    }
    const target = this.target;
    if (!target.grow) throw new NamespaceError('unsupported', `${this.description}: cannot grow to ${sizeBytes} bytes: its size is its backend's`);
    await target.grow(sizeBytes);
    this.blockCount = target.blockCount;
  }

  /** Closes the backing that serves (the other one is the mover's to close). */
  close(): Promise<void> {
    return this.current.close();
  }

  // ---- the mover's side ------------------------------------------------------------------------------------------

  /** Writes from now on mark their chunks in `map`. */
  track(map: DirtyMap): void {
    this.tracking = map;
  }

  /** Lets writes dirty `bytesPerMs` at most (a guest that writes faster than the copy), until `release`. */
  limitWrites(bytesPerMs: number): void {
    this.writeRate = bytesPerMs;
  }

  /** New commands wait at the stand-in; resolves once the ones it already passed on have settled. */
  async hold(): Promise<void> {
    this.serving = 'held';
    while (this.running > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Commands go on to the old backing (the move failed) or the new one (it is committed). */
  release(to: 'source' | 'target'): void {
    this.serving = to;
    this.tracking = undefined;
    this.writeRate = undefined;
    const held = this.heldCommands;
    this.heldCommands = [];
    for (const go of held) go();
  }

  /**
   * Resolves when `ready` does, unless `abandon(buffers)` takes the operation back first: it then rejects (the
   * controller has completed the command already and ignores the rejection) and never reaches a backing.
   */
  private waitHere(ready: Promise<void>, buffers: readonly Uint8Array[] | undefined): Promise<void> {
    if (buffers === undefined) return ready;
    return new Promise<void>((resolve, reject) => {
      // Its own entry: a pooled buffers array given up here may come back with the next command before `ready`.
      const takeBack = (): void => {
        this.waiting.delete(buffers);
        reject(new NamespaceError('internal', `${this.description}: given up by the controller while it waited for the backing swap`));
      };
      this.waiting.set(buffers, takeBack);
      void ready.then(() => {
        if (this.waiting.get(buffers) !== takeBack) return; // taken back
        this.waiting.delete(buffers);
        resolve();
      });
    });
  }

  /**
   * Runs `operation` on the serving backing, or later when commands are held. While tracking, what a write touched
   * is marked when it settles (succeeded or not: a failed write may have changed part of its range), so a copy that
   * read the chunk before the data landed is made again.
   */
  private run(
    operation: (backing: Namespace) => Promise<void> | void,
    offset?: number | readonly ByteRange[],
    length = 0,
    buffers?: readonly Uint8Array[],
  ): Promise<void> | void {
    if (this.serving === 'held') {
      const released = new Promise<void>((resolve) => this.heldCommands.push(resolve));
      return this.waitHere(released, buffers).then(() => this.run(operation, offset, length, buffers));
    }
    const onSource = this.serving === 'source' && offset !== undefined;
    const settled = (): void => {
      // The map as it is when the operation settles: one started before the copy began is tracked too.
      const map = onSource ? this.tracking : undefined;
      if (map === undefined) return;
      if (typeof offset === 'number') map.mark(offset, length);
      else for (const range of offset!) map.mark(range.offset, range.length);
    };
    let pending: Promise<void> | void;
    try {
      pending = operation(this.current);
    } catch (error) {
      settled();
      throw error;
    }
    if (pending === undefined) {
      settled();
      return undefined;
    }
    this.running++;
    return pending.finally(() => {
      settled();
      this.running--;
      if (this.running === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const resolve of waiters) resolve();
      }
    });
  }
}

export interface MoveProgress {
  /** 'copying' passes; 'final': commands wait, the last dirty chunks are copied and the switch committed. */
  phase: 'copying' | 'final';
  /** 1 for the full copy, 2.. for the passes over what was written meanwhile; 0 without a copy. */
  pass: number;
  /** Bytes this pass has copied, of `passBytes`. */
  copiedBytes: number;
  passBytes: number;
  /** Bytes written since their chunk was last copied (they make the next pass). */
  dirtyBytes: number;
}

export interface MoveOptions {
  /** False: the new backing already holds the data; only the switch is made. */
  copy: boolean;
  /** Persists the switch (the new backing named wherever the namespace is defined) while commands wait; throws to refuse it. */
  commit: () => Promise<void>;
  onProgress?: (progress: MoveProgress) => void;
  /** Checked between chunks: true stops the move (it then fails with `cancelledBecause()`). */
  cancelled?: () => boolean;
  cancelledBecause?: () => Error;
  /** Granularity of the dirty map (default DIRTY_CHUNK_BYTES), a multiple of the block size. */
  chunkBytes?: number;
  /** Most bytes left for the last pass (default FINAL_PASS_BYTES); passes stop earlier when the copy is fast. */
  finalPassBytes?: number;
  maxPasses?: number;
}

export interface MoveOutcome {
  passes: number;
  copiedBytes: number;
  /** How long commands to the namespace waited: the last pass, the flush, the commit and the switch. */
  heldMs: number;
  /** Bytes copied while they waited. */
  finalBytes: number;
}

/**
 * Copies `swap.source` to `swap.target` while the guest writes, then switches (see the file comment). Rejects when
 * a copy, the flush or the commit fails, or the move is cancelled: `swap` then serves from the old backing again and
 * the caller closes the new one.
 */
export async function moveData(swap: BackingSwap, options: MoveOptions): Promise<MoveOutcome> {
  const sizeBytes = swap.blockCount * swap.blockSize;
  const chunkBytes = options.chunkBytes ?? DIRTY_CHUNK_BYTES;
  if (chunkBytes % swap.blockSize !== 0) throw new Error(`chunk size ${chunkBytes} is not a multiple of the block size ${swap.blockSize}`);
  const map = new DirtyMap(sizeBytes, chunkBytes);
  const runBytes = Math.max(COPY_RUN_BYTES, chunkBytes);
  const finalPassBytes = options.finalPassBytes ?? FINAL_PASS_BYTES;
  const maxPasses = options.maxPasses ?? MAX_COPY_PASSES;
  const checkCancelled = (): void => {
    if (options.cancelled?.()) throw options.cancelledBecause?.() ?? new Error('the move was cancelled');
  };
  let passes = 0;
  let copiedBytes = 0;
  let threshold = finalPassBytes;
  try {
    if (options.copy) {
      swap.track(map);
      map.markAll();
      while (passes === 0 || (map.dirtyBytes > threshold && passes < maxPasses)) {
        passes++;
        const ranges = map.take(runBytes);
        const passBytes = ranges.reduce((sum, range) => sum + range.length, 0);
        let passCopied = 0;
        const report = (): void => options.onProgress?.({ phase: 'copying', pass: passes, copiedBytes: passCopied, passBytes, dirtyBytes: map.dirtyBytes });
        report();
        const passStarted = performance.now();
        await copyRanges(swap.source, swap.target, ranges, runBytes, (bytes) => {
          passCopied += bytes;
          copiedBytes += bytes;
          report();
          checkCancelled();
        });
        const bytesPerMs = passBytes / Math.max(1, performance.now() - passStarted);
        threshold = Math.min(finalPassBytes, Math.max(chunkBytes, bytesPerMs * HELD_TARGET_MS));
        // The guest dirtied more than half of what the pass copied: the passes would not end. From now on its writes
        // may dirty chunks at half the copy rate (each waits a little, instead of all of them long at the end).
        if (map.dirtyBytes > threshold && map.dirtyBytes * 2 > passBytes) swap.limitWrites(bytesPerMs / 2);
      }
    }
    // What the passes wrote goes to stable storage now, not while commands wait.
    await swap.target.flush();
    checkCancelled();
    const heldAt = performance.now();
    await swap.hold();
    const last = map.take(runBytes);
    const finalBytes = last.reduce((sum, range) => sum + range.length, 0);
    options.onProgress?.({ phase: 'final', pass: passes, copiedBytes: 0, passBytes: finalBytes, dirtyBytes: finalBytes });
    await copyRanges(swap.source, swap.target, last, runBytes, (bytes) => (copiedBytes += bytes));
    await swap.target.flush();
    checkCancelled();
    await options.commit();
    swap.release('target');
    return { passes, copiedBytes, heldMs: performance.now() - heldAt, finalBytes };
  } catch (error) {
    swap.release('source');
    throw error;
  }
}

/** Copies `ranges` (each at most `runBytes`), a few at a time; `copied` is told each range's bytes and may throw to stop. */
async function copyRanges(source: Namespace, target: Namespace, ranges: readonly ByteRange[], runBytes: number, copied: (bytes: number) => void): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    const buffer = new Uint8Array(runBytes);
    while (failure === undefined && next < ranges.length) {
      const range = ranges[next++]!;
      const data = buffer.subarray(0, range.length);
      try {
        await source.read(range.offset, [data]);
        // A chunk of zeroes stays sparse where the new backing can keep it so.
        if (isZero(data)) await target.writeZeroes(range.offset, range.length);
        else await target.write(range.offset, [data]);
        copied(range.length);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(COPIES_IN_FLIGHT, ranges.length) }, worker));
  if (failure !== undefined) throw failure;
}

function isZero(data: Uint8Array): boolean {
  if (data.byteLength % 8 === 0 && data.byteOffset % 8 === 0) {
    const words = new BigUint64Array(data.buffer, data.byteOffset, data.byteLength / 8);
    for (let index = 0; index < words.length; index++) if (words[index] !== 0n) return false;
    return true;
  }
  for (let index = 0; index < data.length; index++) if (data[index] !== 0) return false;
  return true;
}
