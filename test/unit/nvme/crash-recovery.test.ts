/**
 * Crash recovery of the NVMe controller in one process: controller A serves with a command journal and a JSON
 * checkpoint, "dies" at a chosen point (it is simply dropped: nothing of it runs any more), and controller B is
 * built from A's last checkpoint and journal over the same guest memory, doorbell page and namespaces. The guest
 * driver goes on against B as if nothing had happened. Each test stops A at one of the points the journal's design
 * names (src/nvme/command-journal.ts) and checks that no command is lost, none runs twice where it must not, and no
 * completion is posted twice.
 */
import { describe, expect, it } from 'vitest';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { MemoryNamespace } from '../../../src/namespace/memory.js';
import type { Namespace } from '../../../src/namespace/namespace.js';
import { CommandJournal } from '../../../src/nvme/command-journal.js';
import { NvmeController, type NvmeControllerState } from '../../../src/nvme/controller.js';
import { AdminOpcode, IoOpcode, Status } from '../../../src/spec/nvme.js';
import { memoryLogger } from '../../../src/util/log.js';
import { GuestDriver, type Completion, type GuestDriverTransport } from '../../helpers/guest-driver.js';
import { GatedNamespace, namespaceIds, pattern, RAM_IOVA, RecordingInterrupts, settle, TEST_IDENTITY } from '../../helpers/nvme-harness.js';

const RAM_SIZE = 8 * 1024 * 1024;
const MAX_IO_QUEUES = 4;
const MAX_ENTRIES = 64;

/** Counts the writes that reach the namespace (a write run again shows up here). */
class CountingNamespace extends GatedNamespace {
  writes = 0;
  override write(offset: number, buffers: readonly Uint8Array[]): Promise<void> | void {
    this.writes++;
    return super.write(offset, buffers);
  }
}

interface Life {
  controller: NvmeController;
  namespace: CountingNamespace;
  /** The last checkpoint written (what survives the "crash"). */
  checkpoint: () => NvmeControllerState;
}

/** Guest memory, doorbells, journal memory and the namespace's data: what outlives one controller. */
class Host {
  readonly ram = new Uint8Array(RAM_SIZE);
  readonly memory = new GuestMemory();
  readonly doorbells = new Uint32Array(1024);
  readonly journalWords = new Int32Array(CommandJournal.wordsFor(MAX_IO_QUEUES + 1, MAX_IO_QUEUES * MAX_ENTRIES));
  readonly data: Namespace = new MemoryNamespace({ sizeBytes: 1024 * 1024, blockSize: 512 });
  readonly interrupts = new RecordingInterrupts(8);
  current!: NvmeController;
  /** When false, checkpoints are not written (the process "dies" before its next one). */
  checkpointing = true;
  private saved = '';
  readonly driver: GuestDriver;

  /** `polled`: the guest writes doorbells straight into the page (as with --poll), not through BAR0 writes. */
  constructor(readonly polled = false) {
    this.memory.add({ iova: RAM_IOVA, size: RAM_SIZE, bytes: this.ram, readable: true, writable: true });
    const transport: GuestDriverTransport = {
      memory: { bytes: this.ram, iova: RAM_IOVA },
      bar0Read: (offset, length) => {
        const dst = new Uint8Array(length);
        this.current.bar0Read(offset, dst);
        return dst;
      },
      bar0Write: (offset, bytes) => {
        if (this.polled && offset >= 0x1000 && offset < 0x2000) {
          this.doorbells[(offset - 0x1000) / 4] = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
          this.current.pollDoorbells();
        } else {
          this.current.bar0Write(offset, bytes);
        }
        this.current.processQueues();
      },
    };
    this.driver = new GuestDriver(transport);
  }

  private build(): { controller: NvmeController; namespace: CountingNamespace } {
    const namespace = new CountingNamespace(this.data);
    const controller = new NvmeController({
      dma: this.memory,
      namespaces: [{ namespace, ids: namespaceIds(1) }],
      identity: TEST_IDENTITY,
      interrupts: this.interrupts,
      doorbells: this.doorbells,
      doorbellsShared: this.polled,
      maxIoQueuePairs: MAX_IO_QUEUES,
      maxQueueEntries: MAX_ENTRIES,
      logger: memoryLogger().logger,
    });
    return { controller, namespace };
  }

  private checkpointer(controller: NvmeController): () => void {
    return () => {
      if (this.checkpointing) this.saved = JSON.stringify(controller.snapshot(true));
    };
  }

  /** The first life: a fresh controller with an empty journal. */
  start(): Life {
    const { controller, namespace } = this.build();
    const checkpoint = this.checkpointer(controller);
    controller.attachJournal(new CommandJournal(this.journalWords, MAX_IO_QUEUES + 1, true), checkpoint);
    checkpoint();
    this.current = controller;
    return { controller, namespace, checkpoint: () => JSON.parse(this.saved) as NvmeControllerState };
  }

  /** The previous controller died: a new one from its last checkpoint and the journal. */
  recover(gate = false, resume = true): Life & { outcome: { rerun: number; posted: number; admin: string } } {
    this.checkpointing = true;
    const { controller, namespace } = this.build();
    namespace.gate = gate;
    controller.restore(JSON.parse(this.saved) as NvmeControllerState, { doorbellPageKept: true });
    const checkpoint = this.checkpointer(controller);
    const outcome = controller.recoverFromJournal(new CommandJournal(this.journalWords, MAX_IO_QUEUES + 1, false), checkpoint);
    checkpoint();
    if (resume) controller.resume();
    this.current = controller;
    return { controller, namespace, checkpoint: () => JSON.parse(this.saved) as NvmeControllerState, outcome };
  }
}

/**
 * From now on `controller` acts as if its process died just before writing each CQE: completions and the journal's
 * frees after them do not happen (what came before them, the journal's "completing" record, does).
 */
function dieBeforePost(controller: NvmeController): void {
  const parts = controller as unknown as { queues: { postCompletion: () => void; journal: CommandJournal } };
  parts.queues.postCompletion = () => undefined;
  parts.queues.journal.end = () => undefined;
  parts.queues.journal.endAdmin = () => undefined;
}

/** From now on `controller` acts as if its process died right after writing each CQE, before the journal's free. */
function dieAfterPost(controller: NvmeController): void {
  const journal = (controller as unknown as { queues: { journal: CommandJournal } }).queues.journal;
  journal.end = () => undefined;
  journal.endAdmin = () => undefined;
}

/** Places writes of distinct patterns at LBAs lba0, lba0+8, ... and rings once; returns their cids and data. */
async function placeWrites(host: Host, count: number, lba0: number, seed: number): Promise<Array<{ cid: number; lba: number; data: Uint8Array }>> {
  const driver = host.driver;
  const placed: Array<{ cid: number; lba: number; data: Uint8Array }> = [];
  for (let index = 0; index < count; index++) {
    const data = pattern(4096, seed + index);
    const buffer = driver.alloc(4096);
    driver.bytes(buffer, 4096).set(data);
    const lba = lba0 + index * 8;
    const cid = driver.place(1, { opcode: IoOpcode.WRITE, nsid: 1, prp1: buffer, cdw10: lba, cdw12: 7 });
    placed.push({ cid, lba, data });
  }
  await driver.ringSubmission(1);
  return placed;
}

async function readBack(host: Host, lba: number): Promise<Uint8Array> {
  const { data } = await host.driver.read(1, lba, 8);
  return data;
}

/** Every completion left in CQ `cqid`, and that nothing more comes. */
async function drain(host: Host, cqid: number): Promise<Completion[]> {
  await settle();
  return host.driver.reap(cqid);
}

async function ready(host: Host): Promise<void> {
  await host.driver.enable();
  await host.driver.createIoQueuePair(1, 32, 1);
}

describe('crash recovery of the NVMe controller (command journal + checkpoint)', () => {
  it('runs again the writes that were in flight, each completed once, with the data in place', async () => {
    const host = new Host();
    const first = host.start();
    await ready(host);
    first.namespace.gate = true; // the backend holds every write: they are in flight when A dies
    const writes = await placeWrites(host, 3, 100, 7);
    expect(first.namespace.pending).toBe(3);

    const second = host.recover();
    expect(second.outcome).toMatchObject({ rerun: 3, posted: 0 });
    const completions = await Promise.all(writes.map(({ cid }) => host.driver.wait(1, cid)));
    expect(completions.map((completion) => completion.status)).toEqual([0, 0, 0]);
    expect(second.namespace.writes).toBe(3);
    for (const { lba, data } of writes) expect(await readBack(host, lba)).toEqual(data);
    expect(await drain(host, 1)).toEqual([]); // nothing completed twice
  });

  it('times a command fetched at the first pass after a late resume from that pass, not from the recovery', async () => {
    const host = new Host();
    const first = host.start();
    await ready(host);
    first.namespace.gate = true;
    const writes = await placeWrites(host, 2, 100, 11);
    // Recovered (the writes run again) but not serving yet: a successor resumes once its client is back.
    const second = host.recover(false, false);
    const buffer = host.driver.alloc(4096);
    const cid = host.driver.place(1, { opcode: IoOpcode.READ, nsid: 1, prp1: buffer, cdw10: 100, cdw12: 7 });
    await host.driver.ringSubmission(1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    second.controller.resume();
    for (const write of writes) expect((await host.driver.wait(1, write.cid)).status).toBe(0);
    expect((await host.driver.wait(1, cid)).status).toBe(0);
    // The read was fetched by resume's pass: had recovery left its own pass open, the read would be timed from
    // the recovery, 300 ms earlier.
    expect(second.controller.stats().latency.maxMicros).toBeLessThan(250_000);
  });

  it('does not run again a write whose completion reached the CQ before the journal entry was freed', async () => {
    const host = new Host();
    const first = host.start();
    await ready(host);
    // A dies right after writing a CQE, before the journal's `end`: that entry stays "completing".
    const journal = (first.controller as unknown as { queues: { journal: CommandJournal } }).queues.journal;
    dieAfterPost(first.controller);
    const [write] = await placeWrites(host, 1, 200, 11);
    await settle();
    expect(journal.ioEntries()).toHaveLength(1);

    const second = host.recover();
    expect(second.outcome).toMatchObject({ rerun: 0, posted: 0 });
    expect((await host.driver.wait(1, write!.cid)).status).toBe(0);
    expect(await drain(host, 1)).toEqual([]);
    expect(second.namespace.writes).toBe(0);
  });

  it('posts the recorded completion of a write that finished but whose CQE was never written', async () => {
    const host = new Host();
    const first = host.start();
    await ready(host);
    // A dies after the journal's `completing` and before the CQE: the write is done, the guest does not know yet.
    dieBeforePost(first.controller);
    const [write] = await placeWrites(host, 1, 300, 13);
    await settle();
    expect(first.namespace.writes).toBe(1);

    const second = host.recover();
    expect(second.outcome).toMatchObject({ rerun: 0, posted: 1 });
    expect((await host.driver.wait(1, write!.cid)).status).toBe(0);
    expect(second.namespace.writes).toBe(0);
    expect(await readBack(host, 300)).toEqual(write!.data);
    expect(await drain(host, 1)).toEqual([]);
  });

  it('continues from the right SQ head and CQ tail across many laps of both rings', async () => {
    const host = new Host();
    host.start();
    await ready(host);
    for (let round = 0; round < 9; round++) {
      const writes = await placeWrites(host, 7, 1000 + round * 64, round * 10);
      for (const { cid } of writes) expect((await host.driver.wait(1, cid)).status).toBe(0);
    }
    // 63 writes on a 32-entry SQ and CQ: both wrapped; the checkpoint holds none of it, the journal all of it.
    const second = host.recover();
    expect(second.outcome).toMatchObject({ rerun: 0, posted: 0 });
    const writes = await placeWrites(host, 5, 1800, 99);
    for (const { cid } of writes) expect((await host.driver.wait(1, cid)).status).toBe(0);
    expect(second.namespace.writes).toBe(5);
    expect(await readBack(host, 1800)).toEqual(writes[0]!.data);
    expect(await drain(host, 1)).toEqual([]);
  });

  it('an admin command whose effects were checkpointed but whose completion was not posted completes once', async () => {
    const host = new Host();
    const first = host.start();
    await ready(host);
    // Create I/O CQ 2: A checkpoints its effect, then dies before posting the completion.
    dieBeforePost(first.controller);
    const cqMemory = host.driver.alloc(16 * 16);
    const cid = host.driver.place(0, { opcode: AdminOpcode.CREATE_IO_CQ, prp1: cqMemory, cdw10: 2 | (15 << 16), cdw11: 1 | 2 | (2 << 16) });
    await host.driver.ringSubmission(0);

    const second = host.recover();
    expect(second.outcome.admin).toBe('completion posted');
    expect((await host.driver.wait(0, cid)).status).toBe(Status.SUCCESS);
    // The queue exists in B exactly once: creating it again is refused, an SQ on it works.
    expect((await host.driver.submit(0, { opcode: AdminOpcode.CREATE_IO_CQ, prp1: cqMemory, cdw10: 2 | (15 << 16), cdw11: 3 })).status).toBe(
      Status.INVALID_QUEUE_IDENTIFIER,
    );
    expect(await drain(host, 0)).toEqual([]);
  });

  it('an admin command that died before its checkpoint runs again', async () => {
    const host = new Host();
    const first = host.start();
    await ready(host);
    host.checkpointing = false; // A dies after running Create I/O CQ 3, before checkpointing it
    dieBeforePost(first.controller);
    const cqMemory = host.driver.alloc(16 * 16);
    const cid = host.driver.place(0, { opcode: AdminOpcode.CREATE_IO_CQ, prp1: cqMemory, cdw10: 3 | (15 << 16), cdw11: 1 | 2 | (3 << 16) });
    await host.driver.ringSubmission(0);

    const second = host.recover();
    expect(second.outcome.admin).toBe('ran again');
    expect((await host.driver.wait(0, cid)).status).toBe(Status.SUCCESS);
    expect(await drain(host, 0)).toEqual([]);
    // I/O still flows on queue 1 of the recovered controller.
    const [write] = await placeWrites(host, 1, 400, 21);
    expect((await host.driver.wait(1, write!.cid)).status).toBe(0);
  });

  it('polled doorbells with shadow doorbells: the admin queue goes on from where it was (its shadow entry is stale)', async () => {
    const host = new Host(true);
    host.start();
    await ready(host);
    expect((await host.driver.configureShadowDoorbells()).status).toBe(Status.SUCCESS);
    // Admin commands after the shadow pages were set: the admin SQ's shadow entry (never written by the host) lags.
    for (let i = 0; i < 5; i++) expect((await host.driver.identify(1)).completion.status).toBe(Status.SUCCESS);
    const [before] = await placeWrites(host, 1, 100, 3);
    expect((await host.driver.wait(1, before!.cid)).status).toBe(0);

    const second = host.recover();
    expect(second.outcome).toMatchObject({ rerun: 0, posted: 0 });
    await settle();
    expect(await drain(host, 0), 'no admin command ran again').toEqual([]);
    expect((await host.driver.identify(1)).completion.status).toBe(Status.SUCCESS);
    const [after] = await placeWrites(host, 1, 200, 4);
    expect((await host.driver.wait(1, after!.cid)).status).toBe(0);
    expect(await readBack(host, 200)).toEqual(after!.data);
  });

  it('survives two crashes in a row with commands in flight each time', async () => {
    const host = new Host();
    const first = host.start();
    await ready(host);
    first.namespace.gate = true;
    const early = await placeWrites(host, 4, 600, 31);
    const second = host.recover(true); // B dies too, with the re-run writes and new ones in flight
    const late = await placeWrites(host, 2, 700, 41);
    expect(second.namespace.pending).toBe(6);
    const third = host.recover();
    expect(third.outcome).toMatchObject({ rerun: 6, posted: 0 });
    for (const { cid } of [...early, ...late]) expect((await host.driver.wait(1, cid)).status).toBe(0);
    for (const { lba, data } of [...early, ...late]) expect(await readBack(host, lba)).toEqual(data);
    expect(await drain(host, 1)).toEqual([]);
  });
  it('a CQ lap found by recovery (the tail wrapped just before the crash) survives the next crash', async () => {
    const host = new Host();
    const first = host.start();
    await ready(host);
    // A dies between posting the CQE that wraps CQ 1's tail and storing the new lap in the journal.
    const journal = (first.controller as unknown as { queues: { journal: CommandJournal } }).queues.journal;
    const setLap = journal.setCompletionLap.bind(journal);
    journal.setCompletionLap = (cqid, lap) => {
      if (cqid !== 1) setLap(cqid, lap);
    };
    for (let round = 0; round < 4; round++) {
      const writes = await placeWrites(host, 8, 1000 + round * 64, round * 10);
      for (const { cid } of writes) expect((await host.driver.wait(1, cid)).status).toBe(0);
    }
    host.recover(); // 32 CQEs: the tail wrapped, the journal still says lap 0
    const middle = await placeWrites(host, 3, 1600, 77);
    for (const { cid } of middle) expect((await host.driver.wait(1, cid)).status).toBe(0);
    host.recover();
    const writes = await placeWrites(host, 2, 1800, 99);
    for (const { cid } of writes) expect((await host.driver.wait(1, cid, 500)).status).toBe(0);
    expect(await drain(host, 1)).toEqual([]);
  });
});
