/**
 * Namespaces attached, detached and grown while the controller serves (the control API's AttachNamespace,
 * DetachNamespace, ResizeNamespace end here): what the host is told (Namespace Attribute Notice, Changed Namespace
 * List), what Identify reports afterwards, what happens to commands in flight on a detached namespace, and that a
 * snapshot carries the namespace set.
 */
import { describe, expect, it } from 'vitest';
import { MemoryNamespace } from '../../../src/namespace/memory.js';
import { NvmeController, type NvmeControllerState } from '../../../src/nvme/controller.js';
import { MAX_NSID } from '../../../src/nvme/namespaces.js';
import { AdminOpcode, AsyncEvent, FeatureId, LogPageId, Status } from '../../../src/spec/nvme.js';
import { memoryLogger } from '../../../src/util/log.js';
import { createHarness, GatedNamespace, namespaceIds, pattern, RecordingInterrupts, settle, TEST_IDENTITY, type Harness } from '../../helpers/nvme-harness.js';
import { GuestMemory } from '../../../src/memory/guest-memory.js';

const NOTICE = AsyncEvent.TYPE_NOTICE | (AsyncEvent.INFO_NOTICE_NAMESPACE_ATTRIBUTE_CHANGED << 8) | (LogPageId.CHANGED_NAMESPACE_LIST << 16);

/** An enabled controller with an I/O queue pair, namespace attribute notices on, and one AER outstanding. */
async function serving(namespaces?: ConstructorParameters<typeof GatedNamespace>[0][]): Promise<{ h: Harness; aer: number }> {
  const h = createHarness(namespaces ? { namespaces } : {});
  await h.driver.enable();
  await h.driver.createIoQueuePair(1, 16, 1);
  expect((await h.driver.setFeatures(FeatureId.ASYNC_EVENT_CONFIGURATION, 1 << 8)).status).toBe(Status.SUCCESS);
  const aer = h.driver.place(0, { opcode: AdminOpcode.ASYNC_EVENT_REQUEST });
  await h.driver.ringSubmission(0);
  return { h, aer };
}

async function activeList(h: Harness): Promise<number[]> {
  const { completion, data } = await h.driver.identify(0x02, 0);
  expect(completion.status).toBe(Status.SUCCESS);
  const view = new DataView(data.buffer, data.byteOffset);
  const nsids: number[] = [];
  for (let offset = 0; offset < 4096 && view.getUint32(offset, true) !== 0; offset += 4) nsids.push(view.getUint32(offset, true));
  return nsids;
}

/** Reads the Changed Namespace List (clearing it) and returns its NSIDs. */
async function changedList(h: Harness): Promise<number[]> {
  const { completion, data } = await h.driver.getLogPage(LogPageId.CHANGED_NAMESPACE_LIST, 4096);
  expect(completion.status).toBe(Status.SUCCESS);
  const view = new DataView(data.buffer, data.byteOffset);
  const nsids: number[] = [];
  for (let offset = 0; offset < 4096 && view.getUint32(offset, true) !== 0; offset += 4) nsids.push(view.getUint32(offset, true));
  return nsids;
}

/** Identify Namespace NSZE, NCAP, NUSE (in blocks). */
async function sizes(h: Harness, nsid: number): Promise<{ status: number; nsze: bigint; ncap: bigint; nuse: bigint }> {
  const { completion, data } = await h.driver.identify(0x00, nsid);
  const view = new DataView(data.buffer, data.byteOffset);
  return { status: completion.status, nsze: view.getBigUint64(0, true), ncap: view.getBigUint64(8, true), nuse: view.getBigUint64(16, true) };
}

describe('namespaces changed while the controller serves', () => {
  it('attach: a Namespace Attribute Notice, the NSID in the Changed Namespace List and the active list, Identify and I/O work', async () => {
    const { h, aer } = await serving();
    const added = new MemoryNamespace({ sizeBytes: 2 * 1024 * 1024, blockSize: 512 });
    h.controller.attachNamespace({ nsid: 5, namespace: added, ids: namespaceIds(5) });
    await settle();
    expect((await h.driver.wait(0, aer)).dw0).toBe(NOTICE);
    expect(await changedList(h)).toEqual([5]);
    expect(await changedList(h)).toEqual([]); // reading it (RAE clear) empties it
    expect(await activeList(h)).toEqual([1, 2, 5]);
    expect(await sizes(h, 5)).toEqual({ status: Status.SUCCESS, nsze: 4096n, ncap: 4096n, nuse: 4096n });
    const data = pattern(512, 5);
    expect((await h.driver.write(5, 4095, data)).status).toBe(Status.SUCCESS);
    expect((await h.driver.read(5, 4095, 1)).data).toEqual(data);
    // NN stays what it was: the most NSIDs there may be, not how many there are.
    expect(new DataView((await h.driver.identify(0x01)).data.buffer).getUint32(516, true)).toBe(MAX_NSID);
  });

  it('attach refuses a taken or out-of-range NSID and a namespace the controller reported no volatile write cache for', () => {
    const h = createHarness();
    const namespace = new MemoryNamespace({ sizeBytes: 1024 * 1024 });
    expect(() => h.controller.attachNamespace({ nsid: 2, namespace, ids: namespaceIds(2) })).toThrow(/NSID 2 is already active/);
    expect(() => h.controller.attachNamespace({ nsid: MAX_NSID + 1, namespace, ids: namespaceIds(3) })).toThrow(/must be an integer in 1\.\.1024/);
    const cached = new GatedNamespace(namespace, { volatileWriteCache: true });
    expect(() => h.controller.attachNamespace({ nsid: 3, namespace: cached, ids: namespaceIds(3) })).toThrow(/volatile write cache.*the controller reported none/);
    expect(h.controller.activeNsids).toEqual([1, 2]);
  });

  it('detach: commands already started complete, new ones get Invalid Namespace or Format; the NSID leaves the active list', async () => {
    const gated = new GatedNamespace(new MemoryNamespace({ sizeBytes: 1024 * 1024, blockSize: 512 }));
    const { h, aer } = await serving([new MemoryNamespace({ sizeBytes: 1024 * 1024 }), gated]);
    const before = pattern(512, 2);
    expect((await h.driver.write(2, 7, before)).status).toBe(Status.SUCCESS);
    gated.gate = true;
    const buffer = h.driver.alloc(512);
    const started = h.driver.place(1, { opcode: 0x02, nsid: 2, prp1: buffer, cdw10: 7, cdw12: 0 });
    await h.driver.ringSubmission(1);
    await settle();
    expect(gated.pending).toBe(1);

    let detached: unknown;
    const detaching = h.controller.detachNamespace(2).then((namespace) => (detached = namespace));
    await settle();
    expect((await h.driver.wait(0, aer)).dw0).toBe(NOTICE);
    expect(detached).toBeUndefined(); // its read is still in flight
    expect((await h.driver.read(2, 0, 1)).completion.status).toBe(Status.INVALID_NAMESPACE_OR_FORMAT);
    expect((await h.driver.read(1, 0, 1)).completion.status).toBe(Status.SUCCESS); // the other namespace serves on

    gated.release();
    expect((await h.driver.wait(1, started)).status).toBe(Status.SUCCESS);
    expect(h.driver.bytes(buffer, 512)).toEqual(before);
    await detaching;
    expect(detached).toBe(gated);
    expect(await changedList(h)).toEqual([2]);
    expect(await activeList(h)).toEqual([1]);
    const inactive = await h.driver.identify(0x00, 2);
    expect(inactive.completion.status).toBe(Status.SUCCESS);
    expect(inactive.data.every((byte) => byte === 0)).toBe(true);
    expect(await h.controller.detachNamespace(2)).toBeUndefined();
  });

  it('resize: Identify reports the new size after the notice, and the new blocks read as zeroes and take writes', async () => {
    const grown = new MemoryNamespace({ sizeBytes: 1024 * 1024 + 512, blockSize: 512, chunkBytes: 4096 * 64 });
    const { h, aer } = await serving([grown]);
    const tail = pattern(512, 9);
    expect((await h.driver.write(1, 2048, tail)).status).toBe(Status.SUCCESS);
    expect((await h.driver.read(1, 2049, 1)).completion.status).toBe(Status.LBA_OUT_OF_RANGE);
    await grown.grow(4 * 1024 * 1024);
    h.controller.notifyNamespaceChanged(1);
    await settle();
    expect((await h.driver.wait(0, aer)).dw0).toBe(NOTICE);
    expect(await changedList(h)).toEqual([1]);
    expect((await sizes(h, 1)).nsze).toBe(8192n);
    expect((await h.driver.read(1, 2048, 1)).data).toEqual(tail); // the old last block kept its data
    expect((await h.driver.read(1, 2049, 8)).data.every((byte) => byte === 0)).toBe(true);
    const end = pattern(512, 10);
    expect((await h.driver.write(1, 8191, end)).status).toBe(Status.SUCCESS);
    expect((await h.driver.read(1, 8191, 1)).data).toEqual(end);
    expect((await h.driver.read(1, 8192, 1)).completion.status).toBe(Status.LBA_OUT_OF_RANGE);
  });

  it('a snapshot carries the namespace set: it restores on a controller with the same NSIDs only', async () => {
    const { h } = await serving();
    const detached = await h.controller.detachNamespace(1);
    const added = new MemoryNamespace({ sizeBytes: 1024 * 1024 });
    h.controller.attachNamespace({ nsid: 7, namespace: added, ids: namespaceIds(7) });
    await settle();
    await h.controller.quiesce();
    const state = JSON.parse(JSON.stringify(h.controller.snapshot())) as NvmeControllerState;
    expect(state.nsids).toEqual([2, 7]);
    const build = (entries: Array<{ nsid: number }>): NvmeController => {
      const memory = new GuestMemory();
      return new NvmeController({
        dma: memory,
        namespaces: entries.map(({ nsid }) => ({ nsid, namespace: nsid === 7 ? added : h.namespaces[nsid - 1]!, ids: namespaceIds(nsid) })),
        identity: TEST_IDENTITY,
        interrupts: new RecordingInterrupts(8),
        doorbells: new Uint32Array(1024),
        logger: memoryLogger().logger,
      });
    };
    expect(() => build([{ nsid: 1 }, { nsid: 2 }]).restore(state)).toThrow(/snapshot has namespaces 2, 7, this controller 1, 2/);
    const successor = build([{ nsid: 2 }, { nsid: 7 }]);
    successor.restore(state);
    expect(successor.activeNsids).toEqual([2, 7]);
    expect(detached).toBe(h.namespaces[0]);
    // A snapshot from before runtime changes has no NSIDs: 1..count.
    const { nsids: _omitted, ...old } = state;
    expect(() => build([{ nsid: 2 }, { nsid: 7 }]).restore(old)).toThrow(/snapshot has namespaces 1, 2, this controller 2, 7/);
  });
});
