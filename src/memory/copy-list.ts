/**
 * Byte copies between Uint8Arrays collected first and made in one native call (`native.copyRuns`), so that the
 * source of the next copy is fetched from memory while the current one is copied (docs/native.md). The NVMe
 * controller collects a processing pass's Read and Write data this way: a cold 4 KiB page copied one command at a
 * time waits for that command's work before its fetch starts.
 *
 * The arrays are held until `run` or `clear`; each distinct array is passed once per call.
 */
import { native } from '../native/index.js';

const RUN_WORDS = native.copyRunWords;
/** A copy's flag: its target is not read soon (see `add`). */
export const COPY_STREAM_TARGET = native.copyStreamTarget;
const INITIAL_RUNS = 64;
const MAX_INDEX = 2 ** 32 - 1;

export class CopyList {
  /** Copies queued. */
  count = 0;
  private runs = new Uint32Array(INITIAL_RUNS * RUN_WORDS);
  /** The distinct arrays of the queued copies; entries past `arrayCount` are stale (cleared). */
  private readonly arrays: Uint8Array[] = [];
  private arrayCount = 0;

  /**
   * Queues a copy of `length` bytes from `source[sourceAt]` to `target[targetAt]`. `flags`: COPY_STREAM_TARGET when
   * nothing will read the target soon (a store's own memory), so the copy does not pull it into the cache.
   */
  add(source: Uint8Array, sourceAt: number, target: Uint8Array, targetAt: number, length: number, flags = 0): void {
    // The run's words are 32-bit: an index past them would wrap to another place in the array.
    if (sourceAt + length > MAX_INDEX || targetAt + length > MAX_INDEX) {
      throw new RangeError(`copy of ${length} bytes at ${sourceAt} -> ${targetAt}: batched copies address at most 4 GiB of an array`);
    }
    if ((this.count + 1) * RUN_WORDS > this.runs.length) this.grow();
    const base = this.count * RUN_WORDS;
    const runs = this.runs;
    runs[base] = this.indexOf(source);
    runs[base + 1] = sourceAt;
    runs[base + 2] = this.indexOf(target);
    runs[base + 3] = targetAt;
    runs[base + 4] = length;
    runs[base + 5] = flags;
    this.count++;
  }

  /** Makes the queued copies, in the order they were added, and empties the list (also when the call throws). */
  run(): void {
    const count = this.count;
    if (count === 0) return;
    try {
      // One copy has nothing to overlap with, and a view costs less than the native call's argument checks.
      if (count === 1 && this.runs[5] === 0) this.copyOne();
      else native.copyRuns(this.arrays, this.runs, count);
    } finally {
      this.clear();
    }
  }

  private copyOne(): void {
    const runs = this.runs;
    const source = this.arrays[runs[0]!]!;
    const sourceAt = runs[1]!;
    const length = runs[4]!;
    // `subarray` clamps where the native call would throw: check as it does (`set` checks the target).
    if (sourceAt + length > source.length) throw new RangeError(`copy of ${length} bytes at ${sourceAt} outside its source (${source.length} bytes)`);
    this.arrays[runs[2]!]!.set(source.subarray(sourceAt, sourceAt + length), runs[3]!);
  }

  /** Drops the copies queued after the first `count` (a command that failed half way takes its own back). */
  truncate(count: number): void {
    if (count < this.count) this.count = count;
  }

  /** Drops the queued copies without making them. */
  clear(): void {
    this.count = 0;
    // Keep the array's length (emptying a JS array drops its backing store), but not the references.
    for (let index = 0; index < this.arrayCount; index++) this.arrays[index] = EMPTY;
    this.arrayCount = 0;
  }

  private indexOf(array: Uint8Array): number {
    const arrays = this.arrays;
    const count = this.arrayCount;
    for (let index = 0; index < count; index++) if (arrays[index] === array) return index;
    arrays[count] = array;
    this.arrayCount = count + 1;
    return count;
  }

  private grow(): void {
    const runs = new Uint32Array(this.runs.length * 2);
    runs.set(this.runs);
    this.runs = runs;
  }
}

const EMPTY = new Uint8Array(0);
