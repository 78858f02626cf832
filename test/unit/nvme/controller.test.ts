import { describe, expect, it } from 'vitest';
import { MemoryNamespace } from '../../../src/namespace/memory.js';
import { NvmeController } from '../../../src/nvme/controller.js';
import { MAX_NSID } from '../../../src/nvme/namespaces.js';
import { AdminOpcode, AsyncEvent, FeatureId, IoOpcode, LogPageId, Reg, Status } from '../../../src/spec/nvme.js';
import { decodeCompletion, needEvent } from '../../helpers/guest-driver.js';
import { createHarness, GatedNamespace, pattern, RAM_IOVA, RAM_SIZE, settle, TEST_IDENTITY } from '../../helpers/nvme-harness.js';
import { sleep } from '../../helpers/common.js';

const CSTS_RDY = 1;
const CSTS_CFS = 2;

function readBar(controller: NvmeController, offset: number, length: number): Uint8Array {
  const dst = new Uint8Array(length).fill(0xee);
  controller.bar0Read(offset, dst);
  return dst;
}

function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
  return bytes;
}

/** Places an Asynchronous Event Request without waiting for it (it completes only when an event occurs). */
async function postAsyncEventRequest(h: ReturnType<typeof createHarness>): Promise<number> {
  const cid = h.driver.place(0, { opcode: AdminOpcode.ASYNC_EVENT_REQUEST });
  await h.driver.ringSubmission(0);
  return cid;
}

describe('NvmeController registers', () => {
  it('reports CAP, VS and idle status', async () => {
    const h = createHarness({ maxQueueEntries: 256 });
    const cap = await h.driver.readRegister64(Reg.CAP);
    expect(Number(cap & 0xffffn)).toBe(255); // MQES
    expect((cap >> 16n) & 1n).toBe(1n); // CQR
    expect((cap >> 17n) & 3n).toBe(0n); // AMS: round robin only
    expect(Number((cap >> 24n) & 0xffn)).toBe(20); // TO: 10 s
    expect((cap >> 32n) & 0xfn).toBe(0n); // DSTRD
    expect((cap >> 36n) & 1n).toBe(0n); // NSSRS
    expect((cap >> 37n) & 0xffn).toBe(1n); // CSS: NVM only
    expect((cap >> 48n) & 0xffn).toBe(0n); // MPSMIN = MPSMAX = 0
    expect(await h.driver.readRegister32(Reg.VS)).toBe(0x00010400);
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(0);
    expect(await h.driver.readRegister32(Reg.CC)).toBe(0);
  });

  it('serves odd-sized and unaligned reads from the register image and never throws', () => {
    const h = createHarness();
    expect([...readBar(h.controller, Reg.VS, 1)]).toEqual([0x00]);
    expect([...readBar(h.controller, Reg.VS + 1, 2)]).toEqual([0x04, 0x01]);
    expect([...readBar(h.controller, Reg.VS + 3, 3)]).toEqual([0x00, 0x00, 0x00]); // VS byte 3, INTMS
    // Doorbells are write-only, the rest of the BAR reads zero, and reads outside the BAR are zero-filled.
    expect([...readBar(h.controller, 0x1000, 4)]).toEqual([0, 0, 0, 0]);
    expect([...readBar(h.controller, 0x3ffc, 4)]).toEqual([0, 0, 0, 0]);
    expect([...readBar(h.controller, 0x3ffe, 4)]).toEqual([0, 0, 0, 0]);
    expect([...readBar(h.controller, -4, 4)]).toEqual([0, 0, 0, 0]);
    expect(() => h.controller.bar0Write(0x4000, u32(1))).not.toThrow();
    expect(() => h.controller.bar0Write(-1, u32(1))).not.toThrow();
    expect(() => h.controller.bar0Write(1.5, u32(1))).not.toThrow();
  });

  it('ignores register writes of the wrong size or alignment, and writes to read-only registers', async () => {
    const h = createHarness();
    h.controller.bar0Write(Reg.AQA, new Uint8Array([0x1f, 0x00])); // 2 bytes
    h.controller.bar0Write(Reg.AQA + 1, u32(0x1f)); // unaligned
    h.controller.bar0Write(Reg.CC, new Uint8Array(8)); // 8 bytes to a 32-bit register
    h.controller.bar0Write(Reg.CAP, u32(0xffffffff));
    h.controller.bar0Write(Reg.VS, u32(0x12345678));
    h.controller.bar0Write(Reg.CSTS, u32(0xffffffff));
    expect(await h.driver.readRegister32(Reg.AQA)).toBe(0);
    expect(await h.driver.readRegister32(Reg.VS)).toBe(0x00010400);
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(0);
    expect(Number((await h.driver.readRegister64(Reg.CAP)) & 0xffffn)).toBe(1023);
    // 64-bit registers accept one 8-byte write or two 4-byte halves.
    await h.driver.writeRegister64(Reg.ASQ, 0x1_2345_6000);
    expect(await h.driver.readRegister64(Reg.ASQ)).toBe(0x1_2345_6000n);
    await h.driver.writeRegister32(Reg.ACQ, 0x7000);
    await h.driver.writeRegister32(Reg.ACQ + 4, 0x2);
    expect(await h.driver.readRegister64(Reg.ACQ)).toBe(0x2_0000_7000n);
  });
});

describe('NvmeController enable / disable / shutdown', () => {
  it('becomes ready on CC.EN and returns to idle on disable', async () => {
    const h = createHarness();
    await h.driver.enable();
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(CSTS_RDY);
    expect(h.controller.stats().state).toBe('ready');
    const cc = await h.driver.readRegister32(Reg.CC);
    expect(cc & 1).toBe(1);
    expect((cc >>> 16) & 0xf).toBe(6);
    expect((cc >>> 20) & 0xf).toBe(4);
    await h.driver.disable();
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(0);
    expect(h.controller.stats().state).toBe('disabled');
    // A doorbell for the (gone) admin queue changes nothing and does not throw.
    h.controller.bar0Write(0x1000, u32(1));
    h.controller.processQueues();
    expect(h.controller.stats().commands.admin).toBe(0);
    // And it comes back with fresh admin queues.
    await h.driver.enable();
    expect((await h.driver.identify(0x01)).completion.status).toBe(Status.SUCCESS);
  });

  it('ignores admin queue register writes while enabled', async () => {
    const h = createHarness();
    await h.driver.enable();
    const asq = await h.driver.readRegister64(Reg.ASQ);
    await h.driver.writeRegister64(Reg.ASQ, 0x5000);
    await h.driver.writeRegister32(Reg.AQA, 0x00030003);
    expect(await h.driver.readRegister64(Reg.ASQ)).toBe(asq);
    expect(await h.driver.readRegister32(Reg.AQA)).toBe(0x001f001f);
    expect((await h.driver.identify(0x01)).completion.status).toBe(Status.SUCCESS);
  });

  it.each([
    ['ASQ not page aligned', { asq: RAM_IOVA + 0x80 }],
    ['ACQ not page aligned', { acq: RAM_IOVA + 0x10 }],
    ['ACQ unmapped', { acq: RAM_IOVA + RAM_SIZE }],
    ['ASQ partly unmapped', { asq: RAM_IOVA + RAM_SIZE - 4096, adminSqEntries: 128 }],
    ['admin SQ of 1 entry', { adminSqEntries: 1 }],
    ['admin CQ of 1 entry', { adminCqEntries: 1 }],
    ['CC.MPS = 1 (8 KiB pages)', { cc: 1 << 7 }],
    ['CC.CSS = 1', { cc: 1 << 4 }],
    ['CC.AMS = 1 (weighted round robin)', { cc: 1 << 11 }],
  ])('sets CSTS.CFS instead of enabling with %s', async (_name, options) => {
    const h = createHarness();
    const csts = await h.driver.configureAdminQueues(options);
    expect(csts & CSTS_CFS).toBe(CSTS_CFS);
    expect(csts & CSTS_RDY).toBe(0);
    expect(h.controller.stats().state).toBe('failed');
    expect(h.log.some((line) => line['level'] === 'error' && String(line['msg']).includes('cannot enable'))).toBe(true);
    // Clearing CC.EN clears CFS; a valid configuration then works.
    await h.driver.disable();
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(0);
    await h.driver.enable();
    expect((await h.driver.identify(0x01)).completion.status).toBe(Status.SUCCESS);
  });

  it('shuts down: flushes every namespace, reports SHST processing then complete, stops fetching', async () => {
    const gated = new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }));
    const other = new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }));
    const h = createHarness({ namespaces: [gated, other] });
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 1);
    // One write in flight while the shutdown notification arrives: SHST must wait for it.
    gated.gate = true;
    const cid = h.driver.place(1, { opcode: IoOpcode.WRITE, nsid: 1, prp1: h.driver.alloc(4096), cdw12: 0 });
    await h.driver.ringSubmission(1);
    expect(gated.pending).toBe(1);
    const cc = await h.driver.readRegister32(Reg.CC);
    await h.driver.writeRegister32(Reg.CC, cc | (1 << 14));
    await settle();
    expect((await h.driver.readRegister32(Reg.CSTS)) >>> 2).toBe(1); // processing
    expect(h.controller.stats().state).toBe('shutting-down');
    gated.release();
    await h.driver.waitForStatus((csts) => ((csts >>> 2) & 3) === 2, 'shutdown complete');
    expect((await h.driver.wait(1, cid)).status).toBe(Status.SUCCESS);
    expect(gated.flushes).toBe(1);
    expect(other.flushes).toBe(1);
    expect(h.controller.stats().state).toBe('shut-down');
    // Submissions after the notification are not fetched.
    const admin = h.controller.stats().commands.admin;
    h.driver.place(0, { opcode: AdminOpcode.IDENTIFY, cdw10: 1, prp1: h.driver.alloc(4096) });
    await h.driver.ringSubmission(0);
    expect(h.controller.stats().commands.admin).toBe(admin);
    // A reset after a completed shutdown is not an unsafe shutdown.
    await h.driver.disable();
    expect(h.controller.stats().unsafeShutdowns).toBe(0);
    await h.driver.enable();
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(CSTS_RDY);
  });

  it('shutdown with a failing namespace flush: logs the namespace, sets CFS, still completes SHST', async () => {
    const healthy = new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }));
    const failing = new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }));
    failing.flushError = new Error('EIO: disk gone');
    const h = createHarness({ namespaces: [healthy, failing] });
    await h.driver.enable();
    await h.driver.shutdown(); // returns once SHST = 10b
    const csts = await h.driver.readRegister32(Reg.CSTS);
    expect(csts & CSTS_CFS).toBe(CSTS_CFS);
    expect((csts >>> 2) & 3).toBe(2);
    expect([healthy.flushes, failing.flushes]).toEqual([1, 1]);
    expect(h.log.find((line) => line['msg'] === 'flushing namespace at shutdown failed')).toMatchObject({
      level: 'error',
      nsid: 2,
      namespace: 'gated test namespace',
    });
    expect(h.log.some((line) => String(line['msg']).startsWith('controller fatal: namespace flush failed'))).toBe(true);
    expect(h.controller.stats().state).toBe('failed');
    // A reset clears CFS; data may have been lost, so it counts as an unsafe shutdown.
    await h.driver.disable();
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(0);
    expect(h.controller.stats().unsafeShutdowns).toBe(1);
    await h.driver.enable();
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(CSTS_RDY);
  });

  it('counts a reset without shutdown as unsafe', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.disable();
    await h.driver.enable();
    await h.controller.reset();
    expect(h.controller.stats().unsafeShutdowns).toBe(2);
    await h.driver.enable();
    await h.driver.shutdown('abrupt');
    await h.controller.reset();
    expect(h.controller.stats().unsafeShutdowns).toBe(2);
  });

  it('fails the controller when the keep-alive timer expires', async () => {
    const h = createHarness();
    await h.driver.enable();
    // Generous timing: the keep-alives below leave 700 ms of slack each, so a loaded machine cannot fail them.
    const katoMs = 1000;
    expect((await h.driver.setFeatures(FeatureId.KEEP_ALIVE_TIMER, katoMs)).status).toBe(Status.SUCCESS);
    // Keep-alive commands within the timeout keep it alive, longer than one timeout in total ...
    for (let round = 0; round < 5; round++) {
      await sleep(300);
      expect((await h.driver.submit(0, { opcode: AdminOpcode.KEEP_ALIVE })).status).toBe(Status.SUCCESS);
    }
    expect((await h.driver.readRegister32(Reg.CSTS)) & CSTS_CFS).toBe(0);
    // ... silence does not, and not before the timeout has passed.
    const silentSince = Date.now();
    await h.driver.waitForStatus((csts) => (csts & CSTS_CFS) !== 0, 'CSTS.CFS after the keep-alive timeout', 10_000);
    expect(Date.now() - silentSince).toBeGreaterThanOrEqual(katoMs - 50);
    expect(h.log.some((line) => String(line['msg']).includes('keep alive timeout'))).toBe(true);
  });
});

describe('NvmeController I/O queues', () => {
  it('moves data with PRPs (one page, two pages, PRP lists with offsets) and SGLs', async () => {
    const h = createHarness({ mdtsPages: 0 });
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 64, 1);
    const cases = [
      { nsid: 1, lba: 0, blocks: 1 },
      { nsid: 1, lba: 7, blocks: 8, bufferOffset: 512 }, // spans two pages
      { nsid: 1, lba: 100, blocks: 200, bufferOffset: 1024 }, // PRP list
      { nsid: 2, lba: 3, blocks: 600 }, // > 512 pages: chained PRP list
    ];
    for (const [index, io] of cases.entries()) {
      const blockSize = io.nsid === 1 ? 512 : 4096;
      const data = pattern(io.blocks * blockSize, index + 1);
      const options = io.bufferOffset === undefined ? {} : { bufferOffset: io.bufferOffset };
      expect((await h.driver.write(io.nsid, io.lba, data, options)).status).toBe(Status.SUCCESS);
      for (const dataPointer of ['prp', 'sgl', 'sgl-segments'] as const) {
        const read = await h.driver.read(io.nsid, io.lba, io.blocks, { ...options, dataPointer });
        expect(read.completion.status).toBe(Status.SUCCESS);
        expect(Buffer.compare(read.data, data)).toBe(0);
      }
    }
    const stats = h.controller.stats();
    expect(stats.commands.write).toBe(4);
    expect(stats.commands.read).toBe(12);
    expect(stats.bytesWritten).toBe((1 + 8 + 200) * 512 + 600 * 4096);
    expect(stats.latency.count).toBe(16);
    expect(stats.latency.bucketsMicros.reduce((sum, count) => sum + count, 0)).toBe(16);
  });

  it('times the commands of one processing pass together (one clock read at each end, not one per command)', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 64, 1);
    const reads = Array.from({ length: 32 }, (_, index) => ({ opcode: IoOpcode.READ, nsid: 1, prp1: h.driver.alloc(512), cdw10: index }));
    expect(h.controller.stats().latency.count).toBe(0);
    // One doorbell: one pass fetches and completes all 32 synchronously.
    const completions = await h.driver.submitMany(1, reads);
    expect(completions.every((completion) => completion.status === Status.SUCCESS)).toBe(true);
    const latency = h.controller.stats().latency;
    expect(latency.count).toBe(32); // still one sample per command ...
    expect(latency.bucketsMicros.reduce((sum, count) => sum + count, 0)).toBe(32);
    // ... each the pass's mean service time: timed per command, no two samples would be equal.
    expect(latency.maxMicros).toBeGreaterThan(0);
    expect(latency.totalMicros).toBeCloseTo(32 * latency.maxMicros, 6);
  });

  it('a pass takes its fetch time from its caller and hands back the clock reading it ends with', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 1);
    expect(Number.isNaN(h.controller.processQueues())).toBe(true); // no I/O: no clock read at all
    h.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 });
    h.doorbells[2] = 1;
    h.controller.pollDoorbells(false);
    const given = performance.now() - 1000; // as if the caller's reading were a second old
    const end = h.controller.processQueues(given);
    expect(end).toBeGreaterThanOrEqual(given + 1000);
    // The command's fetch time is the given reading: its latency is the second plus the pass.
    expect(h.controller.stats().latency.maxMicros).toBeGreaterThanOrEqual(1_000_000);
  });

  it('reports a well-formed CQE: SQ head, SQ id, command id, phase and status', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoQueuePair(3, 4, 1);
    // 4-entry queues wrap after 4 commands: the phase tag flips and SQHD follows the head.
    const seen: Array<{ sqhd: number; phase: number }> = [];
    for (let index = 0; index < 6; index++) {
      const completion = await h.driver.submit(3, { opcode: IoOpcode.FLUSH, nsid: 1, cid: 0x100 + index });
      expect(completion.sqid).toBe(3);
      expect(completion.cid).toBe(0x100 + index);
      expect(completion.status).toBe(Status.SUCCESS);
      seen.push({ sqhd: completion.sqhd, phase: completion.phase });
    }
    expect(seen.map((entry) => entry.sqhd)).toEqual([1, 2, 3, 0, 1, 2]);
    expect(seen.map((entry) => entry.phase)).toEqual([1, 1, 1, 1, 0, 0]);
    const failed = await h.driver.submit(3, { opcode: 0x7f, nsid: 1 });
    expect(failed.status).toBe(Status.INVALID_OPCODE);
    expect(h.controller.stats().commands.failed).toBe(1);
  });

  it('never overwrites unconsumed CQEs: a full CQ holds back fetching until the head advances', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoCompletionQueue(1, 4, 1); // 3 usable slots
    await h.driver.createIoSubmissionQueue(1, 32, 1);
    const cids: number[] = [];
    for (let index = 0; index < 10; index++) cids.push(h.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 }));
    await h.driver.ringSubmission(1);
    // Exactly three completions, slot 3 untouched.
    expect([0, 1, 2].map((slot) => h.driver.completionAt(1, slot).cid)).toEqual(cids.slice(0, 3));
    expect(h.driver.completionAt(1, 3).phase).toBe(0);
    expect(h.controller.stats().commands.otherIo).toBe(3);
    // Consume two without telling the controller: nothing changes.
    const firstTwo = await h.driver.reap(1, { updateHead: false, max: 2 });
    expect(firstTwo.map((completion) => completion.cid)).toEqual(cids.slice(0, 2));
    h.controller.processQueues();
    expect(h.controller.stats().commands.otherIo).toBe(3);
    // Head doorbell: two slots free, two more commands run, and nothing unconsumed was overwritten.
    await h.driver.ringCompletionHead(1);
    expect(h.controller.stats().commands.otherIo).toBe(5);
    expect(h.driver.completionAt(1, 2).cid).toBe(cids[2]);
    const all = [...firstTwo];
    while (all.length < 10) {
      const batch = await h.driver.reap(1);
      expect(batch.length).toBeGreaterThan(0);
      all.push(...batch);
    }
    expect(all.map((completion) => completion.cid)).toEqual(cids);
    expect(all.every((completion) => completion.status === Status.SUCCESS)).toBe(true);
  });

  it('arbitrates round robin with the arbitration burst from the Arbitration feature', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoCompletionQueue(1, 64, 1);
    await h.driver.createIoSubmissionQueue(1, 16, 1);
    await h.driver.createIoSubmissionQueue(2, 16, 1);
    const run = async (): Promise<number[]> => {
      for (const qid of [1, 2]) for (let index = 0; index < 4; index++) h.driver.place(qid, { opcode: IoOpcode.FLUSH, nsid: 1 });
      // Both doorbells before one processing pass, as a batch of trapped writes would be.
      h.controller.bar0Write(0x1000 + 2 * 4, u32(h.doorbells[2]! + 4));
      h.controller.bar0Write(0x1000 + 4 * 4, u32(h.doorbells[4]! + 4));
      h.controller.processQueues();
      return (await h.driver.reap(1)).map((completion) => completion.sqid);
    };
    // Default burst (2^6) takes each queue whole; AB = 0 takes one command per queue per round.
    expect(await run()).toEqual([1, 1, 1, 1, 2, 2, 2, 2]);
    expect((await h.driver.setFeatures(FeatureId.ARBITRATION, 0)).status).toBe(Status.SUCCESS);
    const order = await run();
    expect(order.filter((sqid, index) => index > 0 && sqid === order[index - 1])).toHaveLength(0);
    expect(order.filter((sqid) => sqid === 1)).toHaveLength(4);
  });

  it('processes a very large batch over several event-loop turns', async () => {
    const h = createHarness({ maxQueueEntries: 1024 });
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 1024, 1);
    await h.driver.createIoQueuePair(2, 1024, 2);
    const cids: number[][] = [[], []];
    for (const qid of [1, 2]) {
      for (let index = 0; index < 1000; index++) cids[qid - 1]!.push(h.driver.place(qid, { opcode: IoOpcode.FLUSH, nsid: 1 }));
    }
    h.controller.bar0Write(0x1000 + 2 * 4, u32(1000));
    h.controller.bar0Write(0x1000 + 4 * 4, u32(1000));
    h.controller.processQueues();
    // The batch budget stops the first pass; the rest follows on later turns.
    expect(h.controller.stats().commands.otherIo).toBe(1024);
    await settle(5);
    expect(h.controller.stats().commands.otherIo).toBe(2000);
    for (const qid of [1, 2]) {
      const completions = await h.driver.reap(qid);
      expect(completions.map((completion) => completion.cid)).toEqual(cids[qid - 1]);
    }
  });

  it('polled mode: picks up doorbell values the guest wrote straight into the doorbell page', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 1);
    const cids = [0, 1, 2].map(() => h.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 }));
    h.doorbells[2] = 3; // SQ 1 tail, no trap
    h.controller.processQueues();
    const completions = await h.driver.reap(1, { updateHead: false });
    expect(completions.map((completion) => completion.cid)).toEqual(cids);
    h.doorbells[3] = 3; // CQ 1 head
    h.controller.pollDoorbells();
    h.doorbells[2] = 40; // beyond the queue: ignored, reported as an invalid doorbell value
    h.controller.pollDoorbells();
    h.controller.processQueues();
    expect(h.controller.stats().commands.otherIo).toBe(3);
    expect(h.log.some((line) => String(line['msg']).includes('invalid submission queue tail'))).toBe(true);
  });

  it('polled mode: a doorbell that returns to an earlier value is still taken (2-entry queue ABA)', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 2, 1);
    // A 2-entry SQ's tail alternates 1, 0, 1, 0. Each value differs from what the controller last consumed, even
    // when it equals a value seen before: consumedDoorbells, not a private snapshot, is the comparison base.
    for (let round = 0; round < 6; round++) {
      const cid = h.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 });
      h.doorbells[2] = (round + 1) % 2;
      expect(h.controller.consumedDoorbells[2]).not.toBe(h.doorbells[2]);
      h.controller.pollDoorbells();
      expect(h.controller.consumedDoorbells[2]).toBe(h.doorbells[2]);
      h.controller.processQueues();
      const [completion] = await h.driver.reap(1, { updateHead: false });
      expect(completion?.cid).toBe(cid);
      h.doorbells[3] = (round + 1) % 2; // CQ head follows
      h.controller.pollDoorbells();
    }
    expect(h.controller.stats().commands.otherIo).toBe(6);
  });

  it('polled mode: a doorbell write to a queue that does not exist raises an error event', async () => {
    const h = createHarness();
    await h.driver.enable();
    const aer = h.driver.place(0, { opcode: AdminOpcode.ASYNC_EVENT_REQUEST });
    await h.driver.ringSubmission(0);
    h.doorbells[2 * 5] = 1; // SQ 5 was never created
    h.controller.pollDoorbells();
    h.controller.processQueues();
    const event = await h.driver.wait(0, aer);
    expect(event.status).toBe(0);
    expect(event.dw0 & 0x7).toBe(AsyncEvent.TYPE_ERROR);
    expect((event.dw0 >>> 8) & 0xff).toBe(AsyncEvent.INFO_ERROR_INVALID_DOORBELL_REGISTER);
    // Taken once: scanning again finds nothing new.
    expect(h.controller.consumedDoorbells[10]).toBe(1);
  });

  it('polled mode: busy scans cover the live queues only; a scan of all words takes the rest', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 1);
    const cid = h.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 });
    h.doorbells[2] = 1; // SQ 1 tail: a live queue
    h.doorbells[2 * 5] = 1; // SQ 5 was never created
    expect(h.controller.pollDoorbells(false)).toBe(true);
    h.controller.processQueues(); // its own scan covers live queues only too
    expect((await h.driver.wait(1, cid)).status).toBe(Status.SUCCESS);
    expect(h.controller.consumedDoorbells[10]).toBe(0); // not looked at yet
    expect(h.controller.pollDoorbells(false)).toBe(false);
    expect(h.controller.pollDoorbells()).toBe(true); // all words: taken (and reported as an invalid doorbell)
    expect(h.controller.consumedDoorbells[10]).toBe(1);
    await h.driver.deleteIoQueuePair(1);
    h.doorbells[2] = 2; // no live I/O queue any more: a busy scan no longer covers word 2
    expect(h.controller.pollDoorbells(false)).toBe(false);
    expect(h.controller.pollDoorbells()).toBe(true);
  });

  it('fails the controller (CFS) when a queue’s memory is unmapped under it', async () => {
    const h = createHarness({ splitRam: true });
    await h.driver.enable();
    // Push allocations into the second half of guest RAM, then put an SQ there.
    h.driver.alloc(RAM_SIZE / 2);
    await h.driver.createIoQueuePair(1, 16, 1);
    await h.memory.remove(RAM_IOVA + RAM_SIZE / 2, RAM_SIZE / 2);
    h.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 });
    expect(() => h.controller.bar0Write(0x1000 + 8, u32(1))).not.toThrow();
    h.controller.processQueues();
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(CSTS_RDY | CSTS_CFS);
    expect(h.log.some((line) => String(line['msg']).includes('queue 1 memory is no longer mapped'))).toBe(true);
    // Doorbells are ignored until reset.
    h.controller.bar0Write(0x1000, u32(5));
    h.controller.processQueues();
    await h.driver.disable();
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(0);
  });

  it('survives random garbage on the admin and I/O queues', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 64, 1);
    let seed = 12345;
    // LCG; the high bits are the random ones.
    const random = (): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed >>> 8;
    };
    const chance = (percent: number): boolean => random() % 100 < percent;
    // Half the fields are small plausible values (to get past the first checks), half are pure noise.
    const field = (small: number): number => (chance(50) ? random() % small : (random() * 256 + (random() & 0xff)) >>> 0);
    // Addresses are random, but any that lands in guest RAM is redirected into a scratch area so the garbage
    // cannot overwrite the driver's own queues (a real guest could only hurt itself that way).
    const scratch = h.driver.alloc(64 * 1024);
    const statuses = new Set<number>();
    const address = (): number => {
      const value = chance(60) ? scratch + ((random() % 0xf000) & ~(chance(80) ? 0xfff : 0)) : field(0x10000000);
      return value >= RAM_IOVA && value < RAM_IOVA + RAM_SIZE && (value < scratch || value >= scratch + 0xf000)
        ? scratch
        : value;
    };
    for (let index = 0; index < 600; index++) {
      const qid = index % 2;
      // Mostly real opcodes with garbage fields (deeper paths), sometimes garbage opcodes.
      const known: number[] = qid === 0 ? Object.values(AdminOpcode) : Object.values(IoOpcode);
      let opcode = chance(85) ? known[random() % known.length]! : random() & 0xff;
      const cdw10 = field(0x100);
      // Commands that legitimately never complete or that would end the test early are steered away.
      if (qid === 0) {
        const steer: number[] = [
          AdminOpcode.ASYNC_EVENT_REQUEST,
          AdminOpcode.DELETE_IO_SQ,
          AdminOpcode.DELETE_IO_CQ,
          AdminOpcode.DOORBELL_BUFFER_CONFIG,
        ];
        if (steer.includes(opcode)) opcode = 0xff;
        if (opcode === AdminOpcode.SET_FEATURES && (cdw10 & 0xff) === FeatureId.KEEP_ALIVE_TIMER) opcode = 0xff;
      }
      const completion = await h.driver.submit(qid, {
        opcode,
        flags: chance(15) ? random() & 0xff : 0,
        nsid: chance(90) ? random() % 3 : field(0xffffffff),
        prp1: address(),
        prp2: address(),
        cdw10,
        cdw11: field(4),
        cdw12: field(64),
        cdw13: field(16),
        cdw14: field(16),
        cdw15: field(16),
      });
      expect(completion.sqid).toBe(qid);
      statuses.add(completion.status);
    }
    // A spread of outcomes (not just Invalid Opcode), and never an unexpected internal failure.
    expect(statuses.size).toBeGreaterThan(8);
    expect(statuses.has(Status.SUCCESS)).toBe(true);
    expect(h.log.filter((line) => line['level'] === 'error')).toEqual([]);
    expect(h.controller.stats().state).toBe('ready');
    expect((await h.driver.identify(0x01)).completion.status).toBe(Status.SUCCESS);
  });
});

describe('NvmeController batched data copies (a pass\'s Reads and Writes on memory namespaces)', () => {
  it('keeps submission order, fails a bad command alone, and posts every CQE before the pass returns', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 64, 1);
    const old = pattern(4096, 1);
    const fresh = pattern(4096, 2);
    expect((await h.driver.write(1, 0, old)).status).toBe(Status.SUCCESS);
    const source = h.driver.alloc(4096);
    h.driver.bytes(source, 4096).set(fresh);
    const readOld = h.driver.alloc(4096);
    const readNew = h.driver.alloc(4096);
    const blocks = { cdw12: 7 }; // 8 blocks of 512 bytes
    const cids = [
      h.driver.place(1, { opcode: IoOpcode.READ, nsid: 1, prp1: readOld, ...blocks }),
      h.driver.place(1, { opcode: IoOpcode.WRITE, nsid: 1, prp1: source, ...blocks }),
      h.driver.place(1, { opcode: IoOpcode.READ, nsid: 1, prp1: readNew, ...blocks }),
      // Not batched: runs after the batch's copies, so it sees the Write.
      h.driver.place(1, { opcode: IoOpcode.COMPARE, nsid: 1, prp1: source, ...blocks }),
      // Its data pointer is outside guest memory: it fails and queues nothing; LBA 8 stays unwritten.
      h.driver.place(1, { opcode: IoOpcode.WRITE, nsid: 1, prp1: RAM_IOVA + RAM_SIZE, cdw10: 8, ...blocks }),
    ];
    // More Reads than one batch holds (it runs when full, and at the end of the pass).
    const targets: number[] = [];
    for (let index = 0; index < 40; index++) {
      targets.push(h.driver.alloc(4096));
      cids.push(h.driver.place(1, { opcode: IoOpcode.READ, nsid: 1, prp1: targets[index]!, cdw10: index % 2 === 0 ? 0 : 8, ...blocks }));
    }
    h.controller.bar0Write(0x1000 + 2 * 4, u32(1 + cids.length)); // after the first Write's slot
    h.controller.processQueues();
    // Nothing awaited since the pass (reap reads the CQ before its first await): every CQE is in guest memory
    // already, in submission order.
    const completions = await h.driver.reap(1);
    expect(completions.map((completion) => completion.cid)).toEqual(cids);
    expect(completions.map((completion) => completion.status)).toEqual([
      Status.SUCCESS,
      Status.SUCCESS,
      Status.SUCCESS,
      Status.SUCCESS,
      Status.DATA_TRANSFER_ERROR,
      ...targets.map(() => Status.SUCCESS),
    ]);
    expect(Buffer.compare(h.driver.bytes(readOld, 4096), old)).toBe(0);
    expect(Buffer.compare(h.driver.bytes(readNew, 4096), fresh)).toBe(0);
    const zeroes = new Uint8Array(4096);
    targets.forEach((target, index) => {
      expect(Buffer.compare(h.driver.bytes(target, 4096), index % 2 === 0 ? fresh : zeroes)).toBe(0);
    });
    const stats = h.controller.stats();
    expect(stats.commands.read).toBe(42);
    expect(stats.commands.write).toBe(3); // the failed one included
    expect(stats.bytesRead).toBe(43 * 4096); // the Compare counts as a read
    expect(stats.bytesWritten).toBe(2 * 4096);
  });
});

describe('NvmeController interrupts', () => {
  it('signals each vector once per batch, however many completions it got', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 64, 1);
    await h.driver.createIoQueuePair(2, 64, 3);
    await h.driver.createIoQueuePair(3, 64, 2, { interruptsEnabled: false });
    h.interrupts.take();
    for (const qid of [1, 2, 3]) for (let index = 0; index < 10; index++) h.driver.place(qid, { opcode: IoOpcode.FLUSH, nsid: 1 });
    for (const qid of [1, 2, 3]) h.controller.bar0Write(0x1000 + qid * 8, u32(10));
    h.controller.processQueues();
    expect(h.interrupts.take().sort()).toEqual([1, 3]);
    for (const qid of [1, 2, 3]) expect(await h.driver.reap(qid)).toHaveLength(10);
    expect(h.interrupts.take()).toEqual([]);
  });

  it('coalesces completions of asynchronous I/O into one signal per vector', async () => {
    const gated = new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }));
    const h = createHarness({ namespaces: [gated] });
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 64, 2);
    gated.gate = true;
    const buffer = h.driver.alloc(4096);
    for (let index = 0; index < 8; index++) h.driver.place(1, { opcode: IoOpcode.READ, nsid: 1, prp1: buffer, cdw10: index });
    h.interrupts.take();
    await h.driver.ringSubmission(1);
    expect(gated.pending).toBe(8);
    expect(h.controller.stats().inFlight).toBe(8);
    gated.release();
    await settle();
    expect(h.interrupts.take()).toEqual([2]);
    expect(await h.driver.reap(1)).toHaveLength(8);
    expect(h.controller.stats().inFlight).toBe(0);
  });

  it('uses INTx (vector 0) with INTMS / INTMC masking when MSI-X is off', async () => {
    const h = createHarness();
    h.interrupts.msix = false;
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 0);
    h.interrupts.take();
    await h.driver.writeRegister32(Reg.INTMS, 1);
    expect(await h.driver.readRegister32(Reg.INTMS)).toBe(1);
    expect(await h.driver.readRegister32(Reg.INTMC)).toBe(1);
    h.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 });
    await h.driver.ringSubmission(1);
    expect(h.interrupts.take()).toEqual([]);
    // Unmasking with a completion still waiting raises the interrupt.
    await h.driver.writeRegister32(Reg.INTMC, 1);
    expect(await h.driver.readRegister32(Reg.INTMS)).toBe(0);
    expect(h.interrupts.take()).toEqual([0]);
    await h.driver.reap(1);
    await h.driver.submit(1, { opcode: IoOpcode.FLUSH, nsid: 1 });
    expect(h.interrupts.take()).toEqual([0]);
    // With MSI-X on, the mask registers are not used.
    h.interrupts.msix = true;
    await h.driver.writeRegister32(Reg.INTMS, 1);
    expect(await h.driver.readRegister32(Reg.INTMS)).toBe(0);
  });
});

describe('NvmeController doorbell errors and asynchronous events', () => {
  it('reports invalid doorbell registers and values as error events, masked until the error log is read', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 1);
    const aers = [await postAsyncEventRequest(h), await postAsyncEventRequest(h)];
    // SQ tail beyond the queue size: ignored, reported.
    await h.driver.writeDoorbell(2, 16);
    const first = await h.driver.wait(0, aers[0]!);
    expect(first.status).toBe(Status.SUCCESS);
    expect(first.dw0 & 0x7).toBe(AsyncEvent.TYPE_ERROR);
    expect((first.dw0 >>> 8) & 0xff).toBe(AsyncEvent.INFO_ERROR_INVALID_DOORBELL_VALUE);
    expect((first.dw0 >>> 16) & 0xff).toBe(LogPageId.ERROR_INFORMATION);
    // The queue still works with its old tail.
    expect((await h.driver.submit(1, { opcode: IoOpcode.FLUSH, nsid: 1 })).status).toBe(Status.SUCCESS);
    // A doorbell of a queue that does not exist: masked (error events wait for the error log read) ...
    await h.driver.writeDoorbell(2 * 9, 1);
    await h.driver.reap(0);
    expect(h.controller.stats().asyncEventRequestsOutstanding).toBe(1);
    // ... and reported once the host reads the error log with RAE cleared.
    expect((await h.driver.getLogPage(LogPageId.ERROR_INFORMATION, 64, { rae: true })).completion.status).toBe(0);
    expect(h.controller.stats().asyncEventRequestsOutstanding).toBe(1);
    expect((await h.driver.getLogPage(LogPageId.ERROR_INFORMATION, 64)).completion.status).toBe(0);
    const second = await h.driver.wait(0, aers[1]!);
    expect(second.dw0 & 0xffff).toBe(AsyncEvent.TYPE_ERROR | (AsyncEvent.INFO_ERROR_INVALID_DOORBELL_REGISTER << 8));
  });

  it('enters doorbell errors in the Error Information log: CID FFFFh, SQID of the SQ doorbell written', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 1);
    await h.driver.writeDoorbell(2, 16); // SQ 1 tail outside the queue
    await h.driver.writeDoorbell(2 * 9, 1); // SQ 9 does not exist
    await h.driver.writeDoorbell(3, 5); // CQ 1 head past what was posted
    await h.driver.writeDoorbell(2 * 9 + 1, 1); // CQ 9 does not exist
    const { completion, data } = await h.driver.getLogPage(LogPageId.ERROR_INFORMATION, 5 * 64);
    expect(completion.status).toBe(Status.SUCCESS);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const entry = (index: number): Record<string, number> => {
      const at = index * 64;
      return {
        count: Number(view.getBigUint64(at, true)),
        sqid: view.getUint16(at + 8, true),
        cid: view.getUint16(at + 10, true),
        status: view.getUint16(at + 12, true) >>> 1,
        parameterLocation: view.getUint16(at + 14, true),
        lba: Number(view.getBigUint64(at + 16, true)),
        nsid: view.getUint32(at + 24, true),
      };
    };
    const common = { cid: 0xffff, parameterLocation: 0xffff, lba: 0, nsid: 0 };
    // Newest first.
    expect([0, 1, 2, 3, 4].map(entry)).toEqual([
      { ...common, count: 4, sqid: 0xffff, status: Status.INVALID_QUEUE_IDENTIFIER },
      { ...common, count: 3, sqid: 0xffff, status: Status.INVALID_FIELD },
      { ...common, count: 2, sqid: 9, status: Status.INVALID_QUEUE_IDENTIFIER },
      { ...common, count: 1, sqid: 1, status: Status.INVALID_FIELD },
      { count: 0, sqid: 0, cid: 0, status: 0, parameterLocation: 0, lba: 0, nsid: 0 },
    ]);
    expect(h.controller.stats().errorLogEntries).toBe(4);
    const smart = await h.driver.getLogPage(LogPageId.SMART_HEALTH, 512);
    expect(Number(new DataView(smart.data.buffer).getBigUint64(176, true))).toBe(4);
  });

  it('rejects a CQ head doorbell that would consume entries never posted', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 1);
    const aer = await postAsyncEventRequest(h);
    await h.driver.submit(1, { opcode: IoOpcode.FLUSH, nsid: 1 }); // head = tail = 1 afterwards
    await h.driver.writeDoorbell(3, 5);
    const event = await h.driver.wait(0, aer);
    expect((event.dw0 >>> 8) & 0xff).toBe(AsyncEvent.INFO_ERROR_INVALID_DOORBELL_VALUE);
    expect((await h.driver.submit(1, { opcode: IoOpcode.FLUSH, nsid: 1 })).status).toBe(Status.SUCCESS);
  });

  it('reports namespace changes as notices when enabled, with the changed namespace list', async () => {
    const h = createHarness();
    await h.driver.enable();
    h.controller.notifyNamespaceChanged(2); // notices not enabled yet: list only
    const aer = await postAsyncEventRequest(h);
    await h.driver.reap(0);
    expect(h.controller.stats().asyncEventRequestsOutstanding).toBe(1);
    expect((await h.driver.setFeatures(FeatureId.ASYNC_EVENT_CONFIGURATION, 1 << 8)).status).toBe(0);
    h.interrupts.take();
    h.controller.notifyNamespaceChanged(1);
    h.controller.notifyNamespaceChanged(MAX_NSID + 1); // beyond NN: ignored
    await settle();
    expect(h.interrupts.take()).toEqual([0]);
    const notice = await h.driver.wait(0, aer);
    expect(notice.dw0).toBe(
      AsyncEvent.TYPE_NOTICE | (AsyncEvent.INFO_NOTICE_NAMESPACE_ATTRIBUTE_CHANGED << 8) | (LogPageId.CHANGED_NAMESPACE_LIST << 16),
    );
    const list = await h.driver.getLogPage(LogPageId.CHANGED_NAMESPACE_LIST, 4096);
    const view = new DataView(list.data.buffer);
    expect([view.getUint32(0, true), view.getUint32(4, true), view.getUint32(8, true)]).toEqual([1, 2, 0]);
    const again = await h.driver.getLogPage(LogPageId.CHANGED_NAMESPACE_LIST, 4096);
    expect(new DataView(again.data.buffer).getUint32(0, true)).toBe(0);
  });
});

describe('NvmeController shadow doorbells (Doorbell Buffer Config)', () => {
  it('reads tails from the shadow page and publishes EventIdx so the host rarely rings', async () => {
    const h = createHarness();
    await h.driver.enable();
    expect((await h.driver.configureShadowDoorbells()).status).toBe(Status.SUCCESS);
    const { shadowIova, eventIndexIova } = h.driver.shadowDoorbells!;
    await h.driver.createIoCompletionQueue(1, 4, 1); // small CQ to make the device fall behind
    await h.driver.createIoSubmissionQueue(1, 32, 1);

    // First command: SQ tail and CQ head both pass their EventIdx (0), so both ring MMIO; afterwards the SQ's
    // EventIdx is the tail the controller saw.
    const before = h.driver.mmioDoorbellWrites;
    expect((await h.driver.submit(1, { opcode: IoOpcode.FLUSH, nsid: 1 })).status).toBe(Status.SUCCESS);
    expect(h.driver.mmioDoorbellWrites).toBe(before + 2);
    expect(h.driver.read32(eventIndexIova + 2 * 4)).toBe(1);

    // A shadow-only update is picked up by the next processing pass without any MMIO doorbell write.
    const quiet = h.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 });
    h.driver.write32(shadowIova + 2 * 4, 2);
    h.controller.processQueues();
    expect((await h.driver.wait(1, quiet)).status).toBe(Status.SUCCESS);
    expect(h.driver.read32(eventIndexIova + 2 * 4)).toBe(2);

    // Fill the CQ (3 slots) without reaping: the device stops, EventIdx stays behind, later submissions need no
    // MMIO write; reaping moves the CQ head past its EventIdx, which rings, and everything completes.
    const cids: number[] = [];
    const beforeBatch = h.driver.mmioDoorbellWrites;
    for (let index = 0; index < 8; index++) {
      cids.push(h.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 }));
      await h.driver.ringSubmission(1);
    }
    // Three submissions fill the CQ, the fourth finds it full; the other four need no MMIO write.
    expect(h.driver.mmioDoorbellWrites - beforeBatch).toBe(4);
    expect(h.controller.stats().commands.otherIo).toBe(2 + 3);
    const done: number[] = [];
    for (let round = 0; round < 10 && done.length < 8; round++) {
      for (const completion of await h.driver.reap(1)) done.push(completion.cid);
    }
    expect(done).toEqual(cids);
    expect(h.driver.read32(eventIndexIova + 2 * 4)).toBe(10);
    expect(needEvent(h.driver.read32(eventIndexIova + 2 * 4), 11, 10)).toBe(true);
  });

  it('an MMIO doorbell older than the shadow value already taken moves nothing backwards (trapped writes arrive late)', async () => {
    // vfio-user delivers trapped doorbell writes asynchronously (QEMU posts them without waiting), so the guest goes
    // on writing its shadow entries: by the time an MMIO write arrives, a newer shadow value may have been acted on.
    // Found by a Linux 6.1 guest with 4 I/O queues: the stale tail put the tail behind the head, the controller
    // fetched a ring's worth of old and empty entries, and the guest saw "invalid id 0 completed" and crashed.
    const h = createHarness();
    await h.driver.enable();
    await h.driver.configureShadowDoorbells();
    const { shadowIova } = h.driver.shadowDoorbells!;
    await h.driver.createIoCompletionQueue(1, 16, 1);
    await h.driver.createIoSubmissionQueue(1, 16, 1);
    expect((await h.driver.submit(1, { opcode: IoOpcode.FLUSH, nsid: 1 })).status).toBe(Status.SUCCESS);
    const errorsBefore = h.controller.stats().errorLogEntries;

    // The guest places two commands and updates the shadow tail for each (its MMIO write for tail 2 is on its way).
    const first = h.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 });
    h.driver.write32(shadowIova + 2 * 4, 2);
    const second = h.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 });
    h.driver.write32(shadowIova + 2 * 4, 3);
    h.controller.processQueues();
    expect((await h.driver.wait(1, first)).status).toBe(Status.SUCCESS);
    expect((await h.driver.wait(1, second)).status).toBe(Status.SUCCESS);
    const headAfter = h.driver.read32(shadowIova + 3 * 4);
    expect(headAfter).toBe(3);
    const commands = h.controller.stats().commands.otherIo;

    // Now the late MMIO writes arrive: SQ tail 2 (the controller is at 3) and an older CQ head (1).
    await h.driver.writeDoorbell(2, 2);
    await h.driver.writeDoorbell(3, 1);
    h.controller.processQueues();
    expect(await h.driver.reap(1)).toEqual([]);
    expect(h.controller.stats().commands.otherIo).toBe(commands);
    expect(h.controller.stats().errorLogEntries).toBe(errorsBefore);

    // And the queue goes on working.
    expect((await h.driver.submit(1, { opcode: IoOpcode.FLUSH, nsid: 1 })).status).toBe(Status.SUCCESS);
    expect(h.controller.stats().commands.otherIo).toBe(commands + 1);
  });

  it('keeps working for the admin queue, whose shadow entries Linux never writes', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.configureShadowDoorbells();
    for (let index = 0; index < 40; index++) {
      expect((await h.driver.submit(0, { opcode: AdminOpcode.KEEP_ALIVE })).status).toBe(Status.SUCCESS);
    }
    const { shadowIova } = h.driver.shadowDoorbells!;
    expect(h.driver.read32(shadowIova)).toBe((1 + 40) % 32);
  });

  it('rejects unaligned or unmapped buffers', async () => {
    const h = createHarness();
    await h.driver.enable();
    const page = h.driver.alloc(4096);
    const cases = [
      { prp1: page + 8, prp2: page },
      { prp1: page, prp2: page + 0x800 },
      { prp1: page, prp2: RAM_IOVA + RAM_SIZE },
    ];
    for (const pointers of cases) {
      expect((await h.driver.submit(0, { opcode: AdminOpcode.DOORBELL_BUFFER_CONFIG, ...pointers })).status).toBe(
        Status.INVALID_FIELD,
      );
    }
  });
});

describe('NvmeController resets', () => {
  it('reset() drops queues and outstanding events and returns to power-on state', async () => {
    const h = createHarness();
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 1);
    await postAsyncEventRequest(h);
    await h.controller.reset();
    expect(await h.driver.readRegister32(Reg.CC)).toBe(0);
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(0);
    expect(await h.driver.readRegister32(Reg.AQA)).toBe(0);
    expect(h.controller.stats()).toMatchObject({ ioSubmissionQueues: 0, asyncEventRequestsOutstanding: 0 });
    expect(h.doorbells.every((value) => value === 0)).toBe(true);
    await h.driver.enable();
    // The old I/O queue is gone: creating it again works.
    await h.driver.createIoQueuePair(1, 16, 1);
    expect((await h.driver.submit(1, { opcode: IoOpcode.FLUSH, nsid: 1 })).status).toBe(Status.SUCCESS);
    // The AER from before the reset is gone: an error event now has nothing to complete.
    await h.driver.writeDoorbell(2 * 7, 1);
    expect(await h.driver.reap(0)).toEqual([]);
  });

  it('waits for in-flight I/O, discards its completion, and holds a new enable until then', async () => {
    const gated = new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }));
    const h = createHarness({ namespaces: [gated] });
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 1);
    gated.gate = true;
    const buffer = h.driver.alloc(4096);
    h.driver.place(1, { opcode: IoOpcode.READ, nsid: 1, prp1: buffer });
    await h.driver.ringSubmission(1);
    let resetDone = false;
    const resetting = h.controller.reset().then(() => (resetDone = true));
    await settle();
    expect(resetDone).toBe(false);
    // The guest re-enables right away; RDY must wait for the drain.
    const oldCq = h.driver.completionQueueMemory(1);
    const enabling = h.driver.configureAdminQueues();
    await settle();
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(0);
    gated.release();
    await resetting;
    expect(await enabling).toBe(CSTS_RDY);
    expect(decodeCompletion(oldCq.subarray(0, 16)).phase).toBe(0);
    expect(h.driver.completionAt(0, 0).phase).toBe(0); // nothing posted to the new admin CQ either
    expect(h.controller.stats().inFlight).toBe(0);
    expect((await h.driver.identify(0x01)).completion.status).toBe(Status.SUCCESS);
  });

  it('CC.EN = 0 with I/O in flight keeps CSTS.RDY until it drains', async () => {
    const gated = new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }));
    const h = createHarness({ namespaces: [gated] });
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 1);
    gated.gate = true;
    h.driver.place(1, { opcode: IoOpcode.WRITE, nsid: 1, prp1: h.driver.alloc(4096) });
    await h.driver.ringSubmission(1);
    await h.driver.writeRegister32(Reg.CC, (await h.driver.readRegister32(Reg.CC)) & ~1);
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(CSTS_RDY);
    gated.release();
    await settle();
    expect(await h.driver.readRegister32(Reg.CSTS)).toBe(0);
  });

  it('Delete I/O SQ completes after the commands in flight on it', async () => {
    const gated = new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }));
    const h = createHarness({ namespaces: [gated] });
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 1);
    gated.gate = true;
    const io = h.driver.place(1, { opcode: IoOpcode.READ, nsid: 1, prp1: h.driver.alloc(4096) });
    await h.driver.ringSubmission(1);
    const deleting = h.driver.place(0, { opcode: AdminOpcode.DELETE_IO_SQ, cdw10: 1 });
    await h.driver.ringSubmission(0);
    // Meanwhile the CQ cannot go (an SQ still uses it) and the SQ cannot be created again.
    expect((await h.driver.submit(0, { opcode: AdminOpcode.DELETE_IO_CQ, cdw10: 1 })).status).toBe(
      Status.INVALID_QUEUE_DELETION,
    );
    expect((await h.driver.reap(0)).some((completion) => completion.cid === deleting)).toBe(false);
    gated.release();
    await settle();
    expect((await h.driver.wait(1, io)).status).toBe(Status.SUCCESS);
    expect((await h.driver.wait(0, deleting)).status).toBe(Status.SUCCESS);
    expect((await h.driver.deleteIoCompletionQueue(1)).status).toBe(Status.SUCCESS);
  });

  /**
   * Fills CQ 1 (4 entries: 3 usable) with completions the host does not consume, then submits `held` more commands
   * to SQ 1, which flow control leaves unfetched. Returns their command ids.
   */
  async function holdUnfetched(h: ReturnType<typeof createHarness>, held: number): Promise<number[]> {
    const done = [0, 1, 2].map(() => h.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 }));
    await h.driver.ringSubmission(1);
    const cids = Array.from({ length: held }, () => h.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 }));
    await h.driver.ringSubmission(1);
    expect((await h.driver.reap(1, { updateHead: false })).map((completion) => completion.cid)).toEqual(done);
    expect(h.controller.stats().commands.otherIo).toBe(3);
    return cids;
  }

  /** Writes the CQ 1 head doorbell as part of a batch: taken, but the queues are processed only after the next write. */
  function freeCompletionQueueInBatch(h: ReturnType<typeof createHarness>, head: number): void {
    h.controller.bar0Write(Reg.DOORBELLS + 3 * 4, u32(head));
  }

  it('Delete I/O SQ completes unfetched commands with Command Aborted due to SQ Deletion, as the CQ has room', async () => {
    const h = createHarness();
    await h.driver.enable();
    expect((await h.driver.createIoCompletionQueue(1, 4, 1)).status).toBe(Status.SUCCESS);
    expect((await h.driver.createIoSubmissionQueue(1, 16, 1)).status).toBe(Status.SUCCESS);
    const held = await holdUnfetched(h, 5);
    // The host frees the CQ and deletes the SQ in one batch: the Delete runs before SQ 1 is fetched again.
    freeCompletionQueueInBatch(h, 3);
    const deleting = h.driver.place(0, { opcode: AdminOpcode.DELETE_IO_SQ, cdw10: 1 });
    await h.driver.ringSubmission(0);
    expect((await h.driver.wait(0, deleting)).status).toBe(Status.SUCCESS);
    // Three fit in the CQ: posted in submission order, with the SQ head moving past each.
    const aborted = await h.driver.reap(1);
    expect(aborted.map(({ cid, sqid, sqhd, status }) => ({ cid, sqid, sqhd, status }))).toEqual(
      held.slice(0, 3).map((cid, index) => ({ cid, sqid: 1, sqhd: 4 + index, status: Status.ABORTED_SQ_DELETION })),
    );
    // The other two completed implicitly with the Delete: no CQE ever comes for them, and none ran.
    await settle();
    expect(await h.driver.reap(1)).toEqual([]);
    expect(h.controller.stats().commands.otherIo).toBe(3);
    expect(h.controller.stats().inFlight).toBe(0);
    expect((await h.driver.readRegister32(Reg.CSTS)) & CSTS_CFS).toBe(0);
    expect((await h.driver.deleteIoCompletionQueue(1)).status).toBe(Status.SUCCESS);
  });

  it('Delete I/O SQ with unfetched commands in unmapped SQ memory completes them without CQEs', async () => {
    const h = createHarness({ splitRam: true });
    await h.driver.enable();
    const sqIova = RAM_IOVA + RAM_SIZE / 2;
    expect((await h.driver.createIoCompletionQueue(1, 4, 1)).status).toBe(Status.SUCCESS);
    expect((await h.driver.createIoSubmissionQueue(1, 16, 1, { iova: sqIova })).status).toBe(Status.SUCCESS);
    await holdUnfetched(h, 2);
    await h.memory.remove(sqIova, RAM_SIZE / 2);
    freeCompletionQueueInBatch(h, 3);
    expect((await h.driver.submit(0, { opcode: AdminOpcode.DELETE_IO_SQ, cdw10: 1 })).status).toBe(Status.SUCCESS);
    expect(await h.driver.reap(1)).toEqual([]);
    expect((await h.driver.readRegister32(Reg.CSTS)) & CSTS_CFS).toBe(0);
    const warning = h.log.find((line) => String(line['msg']).startsWith('submission queue memory unmapped at deletion'));
    expect(warning).toMatchObject({ level: 'warn', sqid: 1, unfetched: 2 });
    expect((await h.driver.deleteIoCompletionQueue(1)).status).toBe(Status.SUCCESS);
  });
});

describe('NvmeController construction', () => {
  it('validates its options and identity with clear errors', () => {
    const base = {
      dma: createHarness().memory,
      namespaces: [],
      identity: TEST_IDENTITY,
      interrupts: { signal: () => {}, msixEnabled: () => true, vectorCount: 4 },
      doorbells: new Uint32Array(1024),
    };
    expect(() => new NvmeController(base)).not.toThrow();
    expect(() => new NvmeController({ ...base, maxIoQueuePairs: 512 })).toThrow(/maxIoQueuePairs 512/);
    expect(() => new NvmeController({ ...base, maxQueueEntries: 65537 })).toThrow(/maxQueueEntries/);
    expect(() => new NvmeController({ ...base, doorbells: new Uint32Array(8) })).toThrow(/doorbells/);
    expect(() => new NvmeController({ ...base, identity: { ...TEST_IDENTITY, serialNumber: 'x'.repeat(21) } })).toThrow(
      /serialNumber .* at most 20/,
    );
    expect(() => new NvmeController({ ...base, identity: { ...TEST_IDENTITY, modelNumber: 'caf\u00e9' } })).toThrow(
      /modelNumber .* printable ASCII/,
    );
    expect(() => new NvmeController({ ...base, identity: { ...TEST_IDENTITY, subsystemNqn: 'n'.repeat(224) } })).toThrow(
      /subsystemNqn/,
    );
    const namespace = new MemoryNamespace({ sizeBytes: 1 << 20 });
    expect(
      () =>
        new NvmeController({
          ...base,
          namespaces: [{ namespace, ids: { nguid: 'xyz', eui64: '0011223344556677', uuid: '12345678-9abc-4def-8123-4567890abcde' } }],
        }),
    ).toThrow(/namespace 1: NGUID/);
  });

  it('executes a private copy of the SQE: changing it in guest memory mid-flight changes nothing', async () => {
    const gated = new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }));
    const h = createHarness({ namespaces: [gated] });
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 1);
    gated.gate = true;
    const cid = h.driver.place(1, { opcode: IoOpcode.READ, nsid: 1, prp1: h.driver.alloc(4096), cdw10: 5 });
    await h.driver.ringSubmission(1);
    // Rewrite the SQE slot (opcode, command id, NSID, LBA) while the read is in flight.
    const slot = new DataView(h.driver.submissionQueueMemory(1).buffer, h.driver.submissionQueueMemory(1).byteOffset, 64);
    slot.setUint8(0, 0x7f);
    slot.setUint16(2, 0xbeef, true);
    slot.setUint32(4, 9, true);
    slot.setUint32(40, 0xffffffff, true);
    gated.release();
    await settle();
    const completion = await h.driver.wait(1, cid);
    expect(completion.cid).toBe(cid);
    expect(completion.status).toBe(Status.SUCCESS);
    expect(h.controller.stats().commands.read).toBe(1);
  });
});
