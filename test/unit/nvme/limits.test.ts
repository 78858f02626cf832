/**
 * Bounded cost per guest (issue 12 §4): what one guest's commands may cost the process, measured through the
 * controller's own accounting and through the namespace backends, not through RSS.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { FALLOCATE_CHUNK_BYTES, FileNamespace, MAX_SUBMITTED_TRANSFERS } from '../../../src/namespace/file.js';
import { MemoryNamespace } from '../../../src/namespace/memory.js';
import { controllerConfig } from '../../../src/serve/config.js';
import { startController, type RunningController } from '../../../src/serve/controller.js';
import { IoOpcode, Status } from '../../../src/spec/nvme.js';
import { memoryLogger } from '../../../src/util/log.js';
import { temporaryDir } from '../../helpers/common.js';
import { Guest } from '../../helpers/hypervisor.js';
import { createHarness, GatedNamespace, pattern, settle } from '../../helpers/nvme-harness.js';

const MIB = 1024 * 1024;

describe('scratch memory budget', () => {
  it('holds 1 MiB Compares beyond the budget queued (not failed) and never has more stored data than the budget', async () => {
    const inner = new MemoryNamespace({ sizeBytes: 4 * MIB, blockSize: 512 });
    const gated = new GatedNamespace(inner);
    const budget = 4 * MIB;
    const h = createHarness({ namespaces: [gated], scratchBudgetBytes: budget, maxQueueEntries: 256 });
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 128, 0);
    const data = pattern(MIB, 7);
    expect((await h.driver.write(1, 0, data)).status).toBe(Status.SUCCESS);

    // 64 Compares of 1 MiB each against the same guest buffer: 64 MiB of stored data if nothing bounded it.
    const buffer = h.driver.alloc(MIB);
    h.driver.bytes(buffer, MIB).set(data);
    const pointer = h.driver.dataPointer(buffer, MIB, 'prp');
    gated.gate = true;
    const commands = 64;
    const cids: number[] = [];
    for (let index = 0; index < commands; index++) {
      cids.push(
        h.driver.place(1, { opcode: IoOpcode.COMPARE, nsid: 1, prp1: pointer.prp1, prp2: pointer.prp2, cdw12: MIB / 512 - 1 }),
      );
    }
    await h.driver.ringSubmission(1);
    await settle();

    // Every command was fetched; only the budget's worth reached the backend, each holding its 1 MiB buffer.
    let stats = h.controller.stats();
    expect(stats.inFlight).toBe(commands);
    expect(gated.pending).toBe(budget / MIB);
    expect(stats.scratch).toMatchObject({ limitBytes: budget, usedBytes: budget, waitingCommands: commands - budget / MIB });

    let peakHeld = gated.pending;
    while (h.controller.stats().inFlight > 0) {
      gated.release();
      await settle();
      peakHeld = Math.max(peakHeld, gated.pending);
      expect(h.controller.stats().scratch.usedBytes).toBeLessThanOrEqual(budget);
    }
    expect(peakHeld * MIB).toBeLessThanOrEqual(budget);
    stats = h.controller.stats();
    expect(stats.scratch).toMatchObject({ usedBytes: 0, peakBytes: budget, waitingCommands: 0 });
    expect(stats.scratch.waits).toBe(commands - budget / MIB);
    for (const cid of cids) expect((await h.driver.wait(1, cid)).status).toBe(Status.SUCCESS);
    pointer.release();
  });

  it('runs a Compare larger than the whole budget alone, and a mismatch still reports Compare Failure', async () => {
    const h = createHarness({ scratchBudgetBytes: 64 * 1024 });
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 0);
    const data = pattern(256 * 1024, 3);
    expect((await h.driver.write(1, 0, data)).status).toBe(Status.SUCCESS);
    const buffer = h.driver.alloc(data.length);
    h.driver.bytes(buffer, data.length).set(data);
    const pointer = h.driver.dataPointer(buffer, data.length, 'prp');
    const compare = { opcode: IoOpcode.COMPARE, nsid: 1, prp1: pointer.prp1, prp2: pointer.prp2, cdw12: data.length / 512 - 1 };
    expect((await h.driver.submit(1, compare)).status).toBe(Status.SUCCESS);
    h.driver.bytes(buffer + 1000, 1)[0]! ^= 0xff;
    expect((await h.driver.submit(1, compare)).status).toBe(Status.COMPARE_FAILURE);
    expect(h.controller.stats().scratch).toMatchObject({ usedBytes: 0, peakBytes: data.length });
    pointer.release();
  });
});

/** Records the longest wait between two event-loop turns (check phases) until stopped. */
function turnGapMeter(): { stop(): number } {
  let last = performance.now();
  let longest = 0;
  let running = true;
  const tick = (): void => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    stop: () => {
      running = false;
      return longest;
    },
  };
}

/** 256 Dataset Management ranges of 16 bytes: (context attributes, NLB, SLBA) each. */
function dsmRanges(ranges: Array<{ slba: number; blocks: number }>): Uint8Array {
  const list = new Uint8Array(ranges.length * 16);
  const view = new DataView(list.buffer);
  ranges.forEach((range, index) => {
    view.setUint32(index * 16 + 4, range.blocks, true);
    view.setBigUint64(index * 16 + 8, BigInt(range.slba), true);
  });
  return list;
}

describe('deallocation cost', () => {
  it.each([
    { chunkMib: 2, size: 64 * MIB, chunks: 32 },
    { chunkMib: 64, size: 512 * MIB, chunks: 8 }, // the default chunk size
  ])('a memory namespace ($chunkMib MiB chunks) drops whole chunks, and slices clearing so the event loop keeps turning', async ({ chunkMib, size, chunks }) => {
    const namespace = new MemoryNamespace({ sizeBytes: size, chunkBytes: chunkMib * MIB });
    // Data in every chunk, so each partly covered chunk has real zero-filling to do.
    const block = pattern(512, 9);
    for (let offset = 0; offset < size; offset += MIB) namespace.write(offset, [block]);
    expect(namespace.allocatedChunks).toBe(chunks);
    // 8 commands of 256 ranges over everything but the first and last block: 2 GiB of range each.
    const ranges = Array.from({ length: 256 }, () => ({ offset: 512, length: size - 1024 }));
    const meter = turnGapMeter();
    const started = performance.now();
    const pending = Array.from({ length: 8 }, () => namespace.deallocate(ranges));
    expect(pending.every((p) => p instanceof Promise)).toBe(true);
    await Promise.all(pending);
    const elapsed = performance.now() - started;
    const longestGap = meter.stop();
    // A turn's slice is 16 MiB of zero-filling (a few ms); without slicing one command is seconds of memset.
    expect(longestGap, `longest event-loop gap ${longestGap.toFixed(1)} ms (all took ${elapsed.toFixed(0)} ms)`).toBeLessThan(100);
    // The whole chunks went back; the first and last keep their first and last block.
    expect(namespace.allocatedChunks).toBe(2);
    const first = new Uint8Array(1024);
    namespace.read(0, [first]);
    expect(Buffer.from(first.subarray(0, 512)).equals(Buffer.from(block))).toBe(true);
    expect(first.subarray(512).every((byte) => byte === 0)).toBe(true);
    const last = new Uint8Array(512);
    namespace.read(size - 512, [last]);
    expect(last.every((byte) => byte === 0)).toBe(true);
    // A small deallocation still completes synchronously.
    expect(namespace.deallocate([{ offset: 512, length: 512 }])).toBeUndefined();
  });
});

describe('deallocation cost on a file', () => {
  it('shares one fallocate budget per event-loop turn among all commands of the namespace', async () => {
    const dir = temporaryDir('vfiod-limits-file-');
    let turn = 0;
    const bytesPerTurn = new Map<number, number>();
    const fallocate = (_fd: number, _mode: number, _offset: number, length: number): void => {
      bytesPerTurn.set(turn, (bytesPerTurn.get(turn) ?? 0) + length); // records only: the file stays sparse
    };
    const namespace = await FileNamespace.open({ path: path.join(dir, 'disk.img'), sizeBytes: 4 * 1024 * MIB, fallocate });
    try {
      bytesPerTurn.clear();
      let ticking = true;
      const tick = (): void => {
        turn++;
        if (ticking) setImmediate(tick);
      };
      setImmediate(tick);
      // 16 commands of 4 GiB each: 64 GiB of hole punching, 1 GiB of it per turn at most whatever the command count.
      const pending = Array.from({ length: 16 }, () => namespace.deallocate([{ offset: 0, length: 4 * 1024 * MIB }]));
      await Promise.all(pending);
      ticking = false;
      const most = Math.max(...bytesPerTurn.values());
      expect(most).toBeLessThanOrEqual(FALLOCATE_CHUNK_BYTES);
      expect([...bytesPerTurn.values()].reduce((a, b) => a + b, 0)).toBe(64 * 1024 * MIB);
    } finally {
      await namespace.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('file transfers on the thread pool', () => {
  it('hands at most MAX_SUBMITTED_TRANSFERS to the thread pool; held ones can be given up, running ones cannot', async () => {
    const dir = temporaryDir('vfiod-limits-held-');
    const namespace = await FileNamespace.open({ path: path.join(dir, 'disk.img'), sizeBytes: 64 * MIB });
    try {
      const writes = Array.from({ length: 64 }, (_, index) => [pattern(MIB, index + 1)]);
      const pending = writes.map((buffers, index) => namespace.write((index % 64) * MIB, buffers) as Promise<void>);
      // The first ones are on threads: beyond recall. The last ones are held: given up, never written.
      expect(namespace.abandon(writes[0]!)).toBe(false);
      expect(namespace.abandon(writes[MAX_SUBMITTED_TRANSFERS - 1]!)).toBe(false);
      const givenUp = writes.slice(MAX_SUBMITTED_TRANSFERS);
      for (const buffers of givenUp) expect(namespace.abandon(buffers)).toBe(true);
      const results = await Promise.allSettled(pending);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(MAX_SUBMITTED_TRANSFERS);
      expect(results.slice(MAX_SUBMITTED_TRANSFERS).every((r) => r.status === 'rejected')).toBe(true);
      const back = new Uint8Array(MIB);
      await namespace.read(0, [back]);
      expect(Buffer.from(back).equals(Buffer.from(writes[0]![0]!))).toBe(true);
      await namespace.read((MAX_SUBMITTED_TRANSFERS + 1) * MIB, [back]);
      expect(back.every((byte) => byte === 0)).toBe(true);
    } finally {
      await namespace.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('register reads while Dataset Management runs (end to end)', () => {
  let dir: string | undefined;
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('answers REGION_READ within milliseconds while 8 DSM commands of 256 whole-namespace ranges run', async () => {
    dir = temporaryDir('vfiod-limits-');
    const size = 64 * MIB;
    const config = controllerConfig({ socketPath: path.join(dir, 'nvme0.sock'), namespaces: [`memory:${size / MIB}M`] });
    const controller: RunningController = await startController(config, memoryLogger().logger);
    cleanups.push(() => controller.close());
    const guest = await Guest.attach(config.socketPath, { flavour: 'qemu' });
    cleanups.push(() => guest.close());
    const driver = guest.driver;
    await driver.enable();
    await driver.createIoQueuePair(1, 64, 0);
    // A block of data in every MiB, then 8 DSMs over all but the first and last block, 256 ranges each.
    const block = pattern(512, 5);
    for (let lba = 0; lba < size / 512; lba += 2048) expect((await driver.write(1, lba, block)).status).toBe(Status.SUCCESS);
    const list = dsmRanges(Array.from({ length: 256 }, () => ({ slba: 1, blocks: size / 512 - 2 })));
    const listIova = driver.alloc(list.length);
    driver.bytes(listIova, list.length).set(list);
    const cids: number[] = [];
    for (let index = 0; index < 8; index++) {
      cids.push(driver.place(1, { opcode: IoOpcode.DATASET_MANAGEMENT, nsid: 1, prp1: listIova, cdw10: 255, cdw11: 1 << 2 }));
    }
    await driver.ringSubmission(1);

    // Register reads (CSTS) from the hypervisor, timed, until every DSM has completed.
    const latencies: number[] = [];
    const done = new Map<number, number>();
    const deadline = Date.now() + 120_000;
    while (done.size < cids.length && Date.now() < deadline) {
      const started = performance.now();
      await guest.client.regionRead(0, 0x1c, 4);
      latencies.push(performance.now() - started);
      for (const completion of await driver.reap(1)) done.set(completion.cid, completion.status);
    }
    expect(done.size).toBe(cids.length);
    for (const cid of cids) expect(done.get(cid)).toBe(Status.SUCCESS);
    const slowest = Math.max(...latencies);
    expect(latencies.length).toBeGreaterThan(2);
    expect(slowest, `slowest of ${latencies.length} register reads: ${slowest.toFixed(1)} ms`).toBeLessThan(250);
    // The first block kept its data; the one at 1 MiB is gone.
    expect(Buffer.from((await driver.read(1, 0, 1)).data).equals(Buffer.from(block))).toBe(true);
    expect((await driver.read(1, 2048, 1)).data.every((byte) => byte === 0)).toBe(true);
  });
});
