/**
 * The dirty tracking and copy passes of a backing swap (src/namespace/backing-swap.ts) over memory namespaces made
 * asynchronous: a writer keeps writing through the stand-in while the data moves, and afterwards the new backing must
 * hold exactly what the guest wrote last to every block; a failed copy, a refused commit or a cancellation must leave
 * the old backing authoritative with every write on it.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { BackingSwap, DirtyMap, moveData, type MoveProgress } from '../../../src/namespace/backing-swap.js';
import { MemoryNamespace } from '../../../src/namespace/memory.js';
import { NamespaceError, type ByteRange, type Namespace } from '../../../src/namespace/namespace.js';
import { sleep } from '../../../src/util/sleep.js';

const KiB = 1024;
const BLOCK = 512;

/** A memory namespace whose operations complete on a later turn, as a file's do; `failWritesAfter` bytes, then writes fail. */
class AsyncMemory implements Namespace {
  readonly memory: MemoryNamespace;
  readonly blockSize = BLOCK;
  readonly volatileWriteCache: boolean = false;
  readonly maxTransferBytes = 0;
  readonly supportsDeallocate = false;
  written = 0;
  failWritesAfter = Number.POSITIVE_INFINITY;
  /** Writes wait for this before their data lands (undefined: they land on the next turn). */
  landing: Promise<void> | undefined;

  constructor(
    sizeBytes: number,
    readonly description: string,
  ) {
    this.memory = new MemoryNamespace({ sizeBytes, blockSize: BLOCK });
  }

  get blockCount(): number {
    return this.memory.blockCount;
  }

  async read(offset: number, buffers: readonly Uint8Array[]): Promise<void> {
    await sleep(0);
    await this.memory.read(offset, buffers);
  }

  async write(offset: number, buffers: readonly Uint8Array[]): Promise<void> {
    await (this.landing ?? sleep(0));
    const length = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
    if (this.written + length > this.failWritesAfter) throw new NamespaceError('write', `${this.description}: injected write failure`);
    this.written += length;
    await this.memory.write(offset, buffers);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    await sleep(0);
    await this.memory.writeZeroes(offset, length);
  }

  async deallocate(ranges: readonly ByteRange[]): Promise<void> {
    await sleep(0);
    await this.memory.deallocate(ranges);
  }

  async flush(): Promise<void> {
    await sleep(0);
  }

  async close(): Promise<void> {}

  async contents(): Promise<Uint8Array> {
    const all = new Uint8Array(this.blockCount * BLOCK);
    await this.memory.read(0, [all]);
    return all;
  }
}

/**
 * Writes random 1-8 block runs through `namespace` until stopped (with `zeroing`, every 7th a Write Zeroes and every
 * 7th a deallocation, as a guest's fstrim would send); `model` is what each byte must be.
 */
function startWriter(namespace: Namespace, model: Uint8Array, zeroing = true): { stop(): Promise<number>; longestMs(): number } {
  let running = true;
  let longest = 0;
  let writes = 0;
  const blocks = model.length / BLOCK;
  const loop = (async () => {
    while (running) {
      const count = 1 + Math.floor(Math.random() * 8);
      const lba = Math.floor(Math.random() * (blocks - count));
      const data = randomBytes(count * BLOCK);
      const started = performance.now();
      const kind = zeroing ? writes % 7 : 0;
      if (kind === 5) {
        await namespace.writeZeroes(lba * BLOCK, data.length);
        data.fill(0);
      } else if (kind === 6) {
        await namespace.deallocate([{ offset: lba * BLOCK, length: data.length }]);
        data.fill(0);
      } else {
        await namespace.write(lba * BLOCK, [data]);
      }
      model.set(data, lba * BLOCK);
      longest = Math.max(longest, performance.now() - started);
      writes++;
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return writes;
    },
    longestMs: () => longest,
  };
}

describe('DirtyMap', () => {
  it('marks every chunk a range touches, takes them as byte ranges and clears them', () => {
    const map = new DirtyMap(10 * KiB + 512, 4 * KiB);
    expect(map.chunks).toBe(3);
    map.mark(4 * KiB - 512, 1024); // chunks 0 and 1
    map.mark(0, 0); // nothing
    expect(map.dirtyChunks).toBe(2);
    expect(map.dirtyBytes).toBe(8 * KiB);
    expect(map.take()).toEqual([
      { offset: 0, length: 4 * KiB },
      { offset: 4 * KiB, length: 4 * KiB },
    ]);
    expect(map.dirtyChunks).toBe(0);
    expect(map.take()).toEqual([]);
    // The last chunk is short: its range ends at the namespace's end.
    map.mark(10 * KiB, 512);
    map.mark(10 * KiB, 512);
    expect(map.dirtyChunks).toBe(1);
    expect(map.dirtyBytes).toBe(2 * KiB + 512);
    expect(map.take()).toEqual([{ offset: 8 * KiB, length: 2 * KiB + 512 }]);
    map.markAll();
    expect(map.dirtyBytes).toBe(10 * KiB + 512);
    // Adjacent chunks are joined up to the run size.
    expect(map.take(8 * KiB)).toEqual([
      { offset: 0, length: 8 * KiB },
      { offset: 8 * KiB, length: 2 * KiB + 512 },
    ]);
    map.mark(0, 1);
    map.mark(8 * KiB, 1);
    expect(map.take(8 * KiB)).toEqual([
      { offset: 0, length: 4 * KiB },
      { offset: 8 * KiB, length: 2 * KiB + 512 },
    ]);
  });
});

describe('moving a namespace to another backing', () => {
  const SIZE = 4 * 1024 * KiB;
  const CHUNK = 64 * KiB;

  async function filled(description: string): Promise<{ namespace: AsyncMemory; model: Uint8Array }> {
    const namespace = new AsyncMemory(SIZE, description);
    const model = randomBytes(SIZE);
    await namespace.memory.write(0, [model]);
    return { namespace, model: new Uint8Array(model) };
  }

  it('copies while a writer writes, passes until little is dirty, holds, switches: the new backing has every last write', async () => {
    const { namespace: source, model } = await filled('old');
    const target = new AsyncMemory(SIZE, 'new');
    const swap = new BackingSwap(source, target);
    const writer = startWriter(swap, model);
    const progress: MoveProgress[] = [];
    let committedWhileHeld = false;
    const outcome = await moveData(swap, {
      copy: true,
      chunkBytes: CHUNK,
      finalPassBytes: 4 * CHUNK,
      onProgress: (p) => progress.push(p),
      commit: async () => {
        // Commands wait while the switch is saved: a write now must not land anywhere yet.
        const before = target.written;
        const held = swap.write(0, [new Uint8Array(BLOCK).fill(7)]);
        await sleep(5);
        committedWhileHeld = target.written === before;
        model.fill(7, 0, BLOCK);
        void held;
      },
    });
    await sleep(5);
    const writes = await writer.stop();
    expect(committedWhileHeld).toBe(true);
    expect(swap.switched).toBe(true);
    expect(swap.description).toBe('new');
    expect(writes).toBeGreaterThan(2);
    expect(outcome.passes).toBeGreaterThanOrEqual(1);
    expect(outcome.copiedBytes).toBeGreaterThanOrEqual(SIZE);
    expect(progress[0]).toMatchObject({ phase: 'copying', pass: 1, copiedBytes: 0, passBytes: SIZE });
    expect(progress.at(-1)?.phase).toBe('final');
    expect(Buffer.compare(await target.contents(), model)).toBe(0);
    // After the switch writes go to the new backing only.
    const sourceBefore = await source.contents();
    await swap.write(BLOCK, [new Uint8Array(BLOCK).fill(9)]);
    expect(Buffer.compare(await source.contents(), sourceBefore)).toBe(0);
    expect((await target.contents())[BLOCK]).toBe(9);
  });

  it('copies again a chunk whose write landed after the copy read it (marked when it settles, not when it starts)', async () => {
    const { namespace: source, model } = await filled('old');
    const target = new AsyncMemory(SIZE, 'new');
    const swap = new BackingSwap(source, target);
    let land!: () => void;
    source.landing = new Promise((resolve) => (land = resolve));
    const late = new Uint8Array(BLOCK).fill(0xab);
    const write = swap.write(10 * BLOCK, [late]);
    model.set(late, 10 * BLOCK);
    const moving = moveData(swap, {
      copy: true,
      chunkBytes: CHUNK,
      finalPassBytes: 0,
      onProgress: (p) => {
        // The first pass has read chunk 0 (old data) by the time it reports a copied chunk: the write lands now.
        if (p.phase === 'copying' && p.pass === 1 && p.copiedBytes > 0) land();
      },
      commit: async () => undefined,
    });
    source.landing = undefined;
    await write;
    await moving;
    expect(Buffer.compare(await target.contents(), model)).toBe(0);
  });

  it('a failed copy leaves the old backing serving with every write on it; the new one gets nothing more', async () => {
    const { namespace: source, model } = await filled('old');
    const target = new AsyncMemory(SIZE, 'new');
    target.failWritesAfter = SIZE / 2;
    const swap = new BackingSwap(source, target);
    const writer = startWriter(swap, model);
    await expect(moveData(swap, { copy: true, chunkBytes: CHUNK, commit: async () => undefined })).rejects.toThrow(/injected write failure/);
    await sleep(5);
    await writer.stop();
    expect(swap.switched).toBe(false);
    expect(swap.current).toBe(source);
    expect(Buffer.compare(await source.contents(), model)).toBe(0);
  });

  it('a refused commit releases the held commands to the old backing', async () => {
    const { namespace: source, model } = await filled('old');
    const target = new AsyncMemory(SIZE, 'new');
    const swap = new BackingSwap(source, target);
    let held: Promise<void> | void = undefined;
    await expect(
      moveData(swap, {
        copy: true,
        chunkBytes: CHUNK,
        commit: async () => {
          held = swap.write(0, [new Uint8Array(BLOCK).fill(3)]);
          throw new Error('cannot save controllers.json');
        },
      }),
    ).rejects.toThrow(/cannot save/);
    await held;
    model.fill(3, 0, BLOCK);
    expect(Buffer.compare(await source.contents(), model)).toBe(0);
    // Not the held write's block (its first byte alone could be 3 by chance: the data is random).
    expect(Buffer.from((await target.contents()).subarray(0, BLOCK)).equals(Buffer.alloc(BLOCK, 3))).toBe(false);
  });

  it('a guest that dirties chunks faster than the copy is slowed to half its rate, so the passes end with a short hold', async () => {
    const { namespace: source, model } = await filled('old');
    const target = new AsyncMemory(SIZE, 'new');
    // The new backing takes about 4 MiB/s: the writer below would dirty more than every pass copies.
    const slowWrite = target.write.bind(target);
    target.write = async (offset, buffers) => {
      await sleep(buffers.reduce((sum, buffer) => sum + buffer.length, 0) / (4 * KiB));
      await slowWrite(offset, buffers);
    };
    const swap = new BackingSwap(source, target);
    // Writes only: Write Zeroes and deallocations are not slowed (a large one would wait too long).
    const writer = startWriter(swap, model, false);
    const outcome = await moveData(swap, { copy: true, chunkBytes: CHUNK, commit: async () => undefined });
    await sleep(5);
    await writer.stop();
    expect(Buffer.compare(await target.contents(), model)).toBe(0);
    // Unslowed, the writer's last pass would be most of the namespace (about a second at this rate).
    expect(outcome.passes).toBeLessThan(8);
    expect(outcome.finalBytes).toBeLessThan(SIZE / 4);
  });

  it('a cancellation stops the copy with its reason; without a copy only the switch is made', async () => {
    const { namespace: source } = await filled('old');
    const swap = new BackingSwap(source, new AsyncMemory(SIZE, 'new'));
    let cancelled = false;
    const moving = moveData(swap, {
      copy: true,
      chunkBytes: CHUNK,
      cancelled: () => cancelled,
      cancelledBecause: () => new Error('a live upgrade'),
      onProgress: (p) => {
        if (p.copiedBytes > 4 * CHUNK) cancelled = true;
      },
      commit: async () => undefined,
    });
    await expect(moving).rejects.toThrow('a live upgrade');
    expect(swap.current).toBe(source);

    const replica = new AsyncMemory(SIZE, 'replica');
    const direct = new BackingSwap(source, replica);
    const outcome = await moveData(direct, { copy: false, commit: async () => undefined });
    expect(outcome).toMatchObject({ passes: 0, copiedBytes: 0, finalBytes: 0 });
    expect(direct.current).toBe(replica);
    expect(replica.written).toBe(0);
  });
});

describe('the stand-in\'s write cache', () => {
  const SIZE = 1024 * KiB;
  const CHUNK = 64 * KiB;
  /** A backing with a volatile write cache (as a file's page cache): what was flushed is what survives a crash. */
  class CachingMemory extends AsyncMemory {
    override readonly volatileWriteCache = true;
    flushes = 0;
    /** What the last flush made durable. */
    durable: Uint8Array = new Uint8Array(0);
    override async flush(): Promise<void> {
      await sleep(0);
      this.flushes++;
      this.durable = await this.contents();
    }
  }

  it('has a volatile write cache when either backing has one, and flushes the one that serves', async () => {
    const target = new CachingMemory(SIZE, 'new');
    const swap = new BackingSwap(new AsyncMemory(SIZE, 'old'), target);
    // The controller then flushes it on FUA, Flush and a disabled write cache (io.ts), as it would the new backing.
    expect(swap.volatileWriteCache).toBe(true);
    await moveData(swap, { copy: true, chunkBytes: CHUNK, commit: async () => undefined });
    const data = new Uint8Array(4 * KiB).fill(0x5a);
    await swap.write(8 * KiB, [data]);
    // A write alone is not flushed (no fdatasync per write); a Flush reaches the new backing.
    expect(target.durable.subarray(8 * KiB, 12 * KiB)).not.toEqual(data);
    await swap.flush();
    expect(target.durable.subarray(8 * KiB, 12 * KiB)).toEqual(data);

    expect(new BackingSwap(new CachingMemory(SIZE, 'old'), new AsyncMemory(SIZE, 'new')).volatileWriteCache).toBe(true);
    expect(new BackingSwap(new AsyncMemory(SIZE, 'old'), new AsyncMemory(SIZE, 'new')).volatileWriteCache).toBe(false);
  });
});

describe('a stand-in kept after its move', () => {
  it('grows through the new backing once switched, and not before', async () => {
    const source = new AsyncMemory(256 * KiB, 'old');
    const target = new MemoryNamespace({ sizeBytes: 256 * KiB, blockSize: BLOCK });
    const swap = new BackingSwap(source, target);
    await expect(swap.grow(512 * KiB)).rejects.toThrow('while it moves to another backing');
    await moveData(swap, { copy: true, chunkBytes: 64 * KiB, commit: async () => undefined });

    await swap.grow(512 * KiB);
    expect(swap.blockCount).toBe((512 * KiB) / BLOCK);
    expect(target.blockCount).toBe((512 * KiB) / BLOCK);
    // The grown part is served: a write past the old end reads back.
    const data = new Uint8Array(4 * KiB).fill(0xc3);
    await swap.write(400 * KiB, [data]);
    const back = new Uint8Array(4 * KiB);
    await swap.read(400 * KiB, [back]);
    expect(back).toEqual(data);
  });

  it('refuses to grow when the new backing cannot', async () => {
    const target = new AsyncMemory(256 * KiB, 'fixed'); // no grow
    const swap = new BackingSwap(new AsyncMemory(256 * KiB, 'old'), target);
    await moveData(swap, { copy: false, commit: async () => undefined });
    await expect(swap.grow(512 * KiB)).rejects.toThrow("its size is its backend's");
    expect(swap.blockCount).toBe((256 * KiB) / BLOCK);
  });
});

describe('the stand-in gives back what waits at it', () => {
  /** A backing that, like the NVMe/TCP one, says "nothing of mine uses these buffers" for what it never received. */
  class Remote extends AsyncMemory {
    readonly writes: number[] = [];
    override async write(offset: number, buffers: readonly Uint8Array[]): Promise<void> {
      this.writes.push(offset);
      await super.write(offset, buffers);
    }
    abandon(): boolean {
      return true;
    }
  }

  it('a write held for the switch and then given up by the controller fails and never reaches a backing', async () => {
    const source = new Remote(64 * KiB, 'old');
    const target = new Remote(64 * KiB, 'new');
    const swap = new BackingSwap(source, target);
    await swap.hold();
    const buffers = [new Uint8Array(BLOCK).fill(7)];
    const held = swap.write(4096, buffers) as Promise<void>;
    expect(swap.abandon(buffers)).toBe(true);
    await expect(held).rejects.toThrow(/given up by the controller/);
    swap.release('target');
    await sleep(5);
    expect([...source.writes, ...target.writes]).toEqual([]);
    // The same (pooled) buffers with the next command go through.
    await swap.write(8192, buffers);
    expect(target.writes).toEqual([8192]);
  });

  it('a write slowed by the write rate and given up never reaches the backing; others are not taken back', async () => {
    const source = new Remote(64 * KiB, 'old');
    const swap = new BackingSwap(source, new Remote(64 * KiB, 'new'));
    swap.track(new DirtyMap(64 * KiB, 4 * KiB));
    // A new 4 KiB chunk every second: the second write waits until 1 s after the first began, the third until 2 s. A
    // shorter turn failed on a busy machine (and alone, cold): the first write took longer than the turn itself.
    swap.limitWrites((4 * KiB) / 1000);
    await swap.write(0, [new Uint8Array(4 * KiB)]);
    const slowed = [new Uint8Array(4 * KiB)];
    const waiting = swap.write(16 * KiB, slowed) as Promise<void>;
    const other = [new Uint8Array(4 * KiB).fill(9)];
    const alsoWaiting = swap.write(32 * KiB, other) as Promise<void>;
    expect(swap.abandon(slowed)).toBe(true);
    await expect(waiting).rejects.toThrow(/given up/);
    // Buffers the stand-in does not hold go to the backing's own abandon.
    expect(swap.abandon([new Uint8Array(BLOCK)])).toBe(true);
    // The other waiting write was not taken back: it reaches the backing, after the given-up one's turn has passed.
    await alsoWaiting;
    await sleep(5);
    expect(source.writes).toEqual([0, 32 * KiB]);
    const landed = new Uint8Array(4 * KiB);
    await source.memory.read(32 * KiB, [landed]);
    expect(landed).toEqual(other[0]);
  });
});
