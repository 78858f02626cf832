/**
 * Bounded cost per guest (issue 12 §4): what one guest's commands may cost the process, measured through the
 * controller's own accounting and through the namespace backends, not through RSS.
 */
import { describe, expect, it } from 'vitest';
import { MemoryNamespace } from '../src/namespace/memory.js';
import { IoOpcode, Status } from '../src/spec/nvme.js';
import { createHarness, GatedNamespace, pattern, settle } from './helpers/nvme-harness.js';

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
    h.driver.bytes(buffer + 1000, 1)[0] ^= 0xff;
    expect((await h.driver.submit(1, compare)).status).toBe(Status.COMPARE_FAILURE);
    expect(h.controller.stats().scratch).toMatchObject({ usedBytes: 0, peakBytes: data.length });
    pointer.release();
  });
});
