import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { BackingSwap, moveData } from '../../../src/namespace/backing-swap.js';
import { FileNamespace } from '../../../src/namespace/file.js';
import { MemoryNamespace } from '../../../src/namespace/memory.js';
import { NamespaceError, type ByteRange, type Namespace } from '../../../src/namespace/namespace.js';
import { executeIoCommand, IoBatch, runIoBatch } from '../../../src/nvme/io.js';
import type { IoContext, IoRequest, SmartCounters } from '../../../src/nvme/io-types.js';
import { IoOpcode, Status } from '../../../src/spec/nvme.js';
import { memoryLogger } from '../../../src/util/log.js';
import { sleep, temporaryDir } from '../../helpers/common.js';

const BASE = 0x200000;
const RAM_BYTES = 4 * 1024 * 1024;
const PAGE = 4096;
/** Guest RAM layout: PRP lists, then data buffers. */
const LIST_AREA = BASE;
const BUFFER_A = BASE + 0x100000;
const BUFFER_B = BASE + 0x200000;
const DSM_LIST = BASE + 0x80000;

let memory: GuestMemory;
let ram: Uint8Array;

function newCounters(): SmartCounters {
  return {
    bytesRead: 0,
    bytesWritten: 0,
    hostReadCommands: 0,
    hostWriteCommands: 0,
    busyMillis: 0,
    mediaErrors: 0,
    errorLogEntries: 0,
  };
}

function newContext(namespaces: Namespace[], options: Partial<IoContext> = {}): IoContext {
  return {
    dma: memory,
    namespace: (nsid) => (nsid >= 1 ? namespaces[nsid - 1] : undefined),
    maxTransferBytes: 256 * 1024,
    counters: newCounters(),
    allNamespaces: () => namespaces,
    ...options,
  };
}

function newRequest(): IoRequest {
  return { sqe: new DataView(new ArrayBuffer(64)), segments: [], pinned: [], result: 0xdead };
}

interface CommandFields {
  opcode: number;
  nsid?: number;
  cid?: number;
  slba?: number | bigint;
  blocks?: number;
  cdw10?: number;
  cdw11?: number;
  cdw12?: number;
  prp1?: number;
  prp2?: number;
  flags?: number;
}

/** Fills the request's SQE. `blocks` is the 1-based count; it goes into CDW12 bits 15:0 zero-based. */
function setCommand(request: IoRequest, fields: CommandFields): void {
  const sqe = request.sqe;
  new Uint8Array(sqe.buffer).fill(0);
  sqe.setUint8(0, fields.opcode);
  sqe.setUint8(1, fields.flags ?? 0);
  sqe.setUint16(2, fields.cid ?? 7, true);
  sqe.setUint32(4, fields.nsid ?? 1, true);
  sqe.setBigUint64(24, BigInt(fields.prp1 ?? 0), true);
  sqe.setBigUint64(32, BigInt(fields.prp2 ?? 0), true);
  if (fields.slba !== undefined) sqe.setBigUint64(40, BigInt(fields.slba), true);
  if (fields.cdw10 !== undefined) sqe.setUint32(40, fields.cdw10, true);
  if (fields.cdw11 !== undefined) sqe.setUint32(44, fields.cdw11, true);
  const nlb = fields.blocks !== undefined ? (fields.blocks - 1) & 0xffff : 0;
  sqe.setUint32(48, ((fields.cdw12 ?? 0) & 0xffff0000) | nlb, true);
}

/** PRP1/PRP2 for a physically contiguous guest buffer at page-aligned `iova` (list built at LIST_AREA). */
function prpsFor(iova: number, length: number): { prp1: number; prp2: number } {
  if (length <= PAGE) return { prp1: iova, prp2: 0 };
  if (length <= 2 * PAGE) return { prp1: iova, prp2: iova + PAGE };
  const view = new DataView(ram.buffer);
  const pages = Math.ceil(length / PAGE) - 1;
  for (let index = 0; index < pages; index++) {
    view.setBigUint64(LIST_AREA - BASE + index * 8, BigInt(iova + (index + 1) * PAGE), true);
  }
  return { prp1: iova, prp2: LIST_AREA };
}

interface Outcome {
  status: number;
  /** Whether `done` ran before executeIoCommand returned. */
  synchronous: boolean;
  result: number;
}

/** Runs one command and resolves with its completion. */
function run(ctx: IoContext, request: IoRequest): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    let returned = false;
    let calls = 0;
    executeIoCommand(ctx, request, (completed, status) => {
      calls++;
      if (calls > 1) reject(new Error('done called twice'));
      expect(completed).toBe(request);
      resolve({ status, synchronous: !returned, result: completed.result });
    });
    returned = true;
  });
}

function guest(iova: number, length: number): Uint8Array {
  return ram.subarray(iova - BASE, iova - BASE + length);
}

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed >>> 0 || 1;
  for (let index = 0; index < length; index++) {
    state = (state * 1103515245 + 12345) >>> 0;
    bytes[index] = state >>> 24;
  }
  return bytes;
}

async function readWrite(
  ctx: IoContext,
  request: IoRequest,
  opcode: number,
  slba: number,
  blocks: number,
  buffer: number,
  blockSize = 512,
): Promise<Outcome> {
  setCommand(request, { opcode, slba, blocks, ...prpsFor(buffer, blocks * blockSize) });
  return run(ctx, request);
}

let tempDir: string;

beforeEach(() => {
  memory = new GuestMemory();
  ram = new Uint8Array(RAM_BYTES);
  memory.add({ iova: BASE, size: RAM_BYTES, bytes: ram, readable: true, writable: true });
  tempDir = temporaryDir('vfiod-io-');
});

afterEach(() => {
  fs.rmSync(tempDir, { recursive: true, force: true });
});

const backends: Array<{ name: string; open: () => Promise<Namespace> }> = [
  { name: 'memory', open: async () => new MemoryNamespace({ sizeBytes: 4 * 1024 * 1024 }) },
  {
    name: 'file',
    open: () => FileNamespace.open({ path: path.join(tempDir, 'disk.img'), sizeBytes: 4 * 1024 * 1024 }),
  },
];

describe.each(backends)('I/O commands on a $name namespace', ({ name, open }) => {
  let namespace: Namespace;
  let ctx: IoContext;
  let request: IoRequest;

  beforeEach(async () => {
    namespace = await open();
    ctx = newContext([namespace]);
    request = newRequest();
  });

  afterEach(async () => {
    await namespace.close();
  });

  it('writes and reads back the same bytes, at the right place in the store', async () => {
    const data = pattern(24 * 512, 1);
    guest(BUFFER_A, data.length).set(data);
    const written = await readWrite(ctx, request, IoOpcode.WRITE, 100, 24, BUFFER_A);
    expect(written.status).toBe(Status.SUCCESS);
    expect(written.result).toBe(0);
    expect(written.synchronous).toBe(name === 'memory');

    const read = await readWrite(ctx, request, IoOpcode.READ, 100, 24, BUFFER_B);
    expect(read.status).toBe(Status.SUCCESS);
    expect(Buffer.from(guest(BUFFER_B, data.length)).equals(Buffer.from(data))).toBe(true);

    // The store holds the data at LBA 100, and nothing before it.
    const stored = new Uint8Array(26 * 512);
    await namespace.read(99 * 512, [stored]);
    expect(stored.subarray(0, 512).every((byte) => byte === 0)).toBe(true);
    expect(Buffer.from(stored.subarray(512, 512 + data.length)).equals(Buffer.from(data))).toBe(true);
    expect(stored.subarray(512 + data.length).every((byte) => byte === 0)).toBe(true);

    expect(ctx.counters).toMatchObject({
      bytesWritten: data.length,
      hostWriteCommands: 1,
      bytesRead: data.length,
      hostReadCommands: 1,
      mediaErrors: 0,
    });
  });

  it('reads into a buffer with a PRP1 offset and writes through an SGL', async () => {
    const data = pattern(2 * 512, 2);
    // SGL write from two scattered data blocks (Last Segment with two descriptors).
    guest(BUFFER_A + 0x300, 700).set(data.subarray(0, 700));
    guest(BUFFER_B + 0x10, 324).set(data.subarray(700));
    const view = new DataView(ram.buffer);
    const list = LIST_AREA + 0x1000 - BASE;
    view.setBigUint64(list, BigInt(BUFFER_A + 0x300), true);
    view.setUint32(list + 8, 700, true);
    view.setUint8(list + 15, 0x00);
    view.setBigUint64(list + 16, BigInt(BUFFER_B + 0x10), true);
    view.setUint32(list + 24, 324, true);
    view.setUint8(list + 31, 0x00);
    setCommand(request, { opcode: IoOpcode.WRITE, slba: 7, blocks: 2, flags: 1 << 6, prp1: LIST_AREA + 0x1000 });
    request.sqe.setUint32(32, 32, true);
    request.sqe.setUint8(39, 0x30); // Last Segment descriptor
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);

    const target = BUFFER_A + 0x2000 + 0xe04;
    setCommand(request, { opcode: IoOpcode.READ, slba: 7, blocks: 2, prp1: target, prp2: BUFFER_A + 0x8000 });
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
    const firstPart = PAGE - 0xe04;
    expect(Buffer.from(guest(target, firstPart)).equals(Buffer.from(data.subarray(0, firstPart)))).toBe(true);
    expect(Buffer.from(guest(BUFFER_A + 0x8000, 1024 - firstPart)).equals(Buffer.from(data.subarray(firstPart)))).toBe(
      true,
    );
  });

  it('rejects ranges past the end, oversized transfers, bad namespaces and opcodes', async () => {
    const blocks = namespace.blockCount;
    expect((await readWrite(ctx, request, IoOpcode.READ, blocks - 1, 2, BUFFER_A)).status).toBe(
      Status.LBA_OUT_OF_RANGE,
    );
    expect((await readWrite(ctx, request, IoOpcode.WRITE, blocks, 1, BUFFER_A)).status).toBe(Status.LBA_OUT_OF_RANGE);
    setCommand(request, { opcode: IoOpcode.READ, slba: 0xffff_ffff_ffff_fff0n, blocks: 1, prp1: BUFFER_A });
    expect((await run(ctx, request)).status).toBe(Status.LBA_OUT_OF_RANGE);
    expect((await readWrite(ctx, request, IoOpcode.READ, blocks - 1, 1, BUFFER_A)).status).toBe(Status.SUCCESS);

    // MDTS 256 KiB = 512 blocks; 513 blocks is too many.
    expect((await readWrite(ctx, request, IoOpcode.READ, 0, 512, BUFFER_A)).status).toBe(Status.SUCCESS);
    expect((await readWrite(ctx, request, IoOpcode.READ, 0, 513, BUFFER_A)).status).toBe(Status.INVALID_FIELD);

    for (const nsid of [0, 2, 0xffffffff]) {
      setCommand(request, { opcode: IoOpcode.READ, nsid, slba: 0, blocks: 1, prp1: BUFFER_A });
      expect((await run(ctx, request)).status).toBe(Status.INVALID_NAMESPACE_OR_FORMAT);
    }
    for (const opcode of [IoOpcode.WRITE_UNCORRECTABLE, 0x0d, 0x7f, 0xff]) {
      setCommand(request, { opcode, slba: 0, blocks: 1, prp1: BUFFER_A });
      const outcome = await run(ctx, request);
      expect(outcome.status).toBe(Status.INVALID_OPCODE);
      expect(outcome.synchronous).toBe(true);
    }
    // Fused operation.
    setCommand(request, { opcode: IoOpcode.READ, slba: 0, blocks: 1, prp1: BUFFER_A, flags: 0x01 });
    expect((await run(ctx, request)).status).toBe(Status.INVALID_FIELD);
    // Unmapped buffer.
    setCommand(request, { opcode: IoOpcode.READ, slba: 0, blocks: 1, prp1: BASE + RAM_BYTES });
    expect((await run(ctx, request)).status).toBe(Status.DATA_TRANSFER_ERROR);
    expect(ctx.counters.hostReadCommands).toBe(2);
  });

  it('writes zeroes (with and without DEAC, with FUA) over a range only', async () => {
    const data = pattern(32 * 512, 3);
    guest(BUFFER_A, data.length).set(data);
    expect((await readWrite(ctx, request, IoOpcode.WRITE, 0, 32, BUFFER_A)).status).toBe(Status.SUCCESS);
    setCommand(request, { opcode: IoOpcode.WRITE_ZEROES, slba: 4, blocks: 4, cdw12: 1 << 30 });
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
    setCommand(request, { opcode: IoOpcode.WRITE_ZEROES, slba: 20, blocks: 2, cdw12: 1 << 25 });
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
    setCommand(request, { opcode: IoOpcode.WRITE_ZEROES, slba: namespace.blockCount - 1, blocks: 2 });
    expect((await run(ctx, request)).status).toBe(Status.LBA_OUT_OF_RANGE);

    expect((await readWrite(ctx, request, IoOpcode.READ, 0, 32, BUFFER_B)).status).toBe(Status.SUCCESS);
    const expected = data.slice();
    expected.fill(0, 4 * 512, 8 * 512);
    expected.fill(0, 20 * 512, 22 * 512);
    expect(Buffer.from(guest(BUFFER_B, data.length)).equals(Buffer.from(expected))).toBe(true);
    // Write Zeroes is not a host write in SMART terms.
    expect(ctx.counters.hostWriteCommands).toBe(1);
  });

  it('deallocates Dataset Management ranges, which then read as zeroes', async () => {
    const data = pattern(64 * 512, 4);
    guest(BUFFER_A, data.length).set(data);
    expect((await readWrite(ctx, request, IoOpcode.WRITE, 0, 64, BUFFER_A)).status).toBe(Status.SUCCESS);
    const view = new DataView(ram.buffer);
    const putRange = (index: number, slba: number, blocks: number): void => {
      const offset = DSM_LIST - BASE + index * 16;
      view.setUint32(offset, 0, true);
      view.setUint32(offset + 4, blocks, true);
      view.setBigUint64(offset + 8, BigInt(slba), true);
    };
    putRange(0, 2, 3);
    putRange(1, 40, 8);
    putRange(2, 60, 0); // empty range: ignored
    setCommand(request, { opcode: IoOpcode.DATASET_MANAGEMENT, cdw10: 2, cdw11: 1 << 2, prp1: DSM_LIST });
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);

    // A list with one bad range changes nothing.
    putRange(0, 10, 1);
    putRange(1, namespace.blockCount - 1, 2);
    setCommand(request, { opcode: IoOpcode.DATASET_MANAGEMENT, cdw10: 1, cdw11: 1 << 2, prp1: DSM_LIST });
    expect((await run(ctx, request)).status).toBe(Status.LBA_OUT_OF_RANGE);
    // Hints only (no Deallocate attribute): nothing changes either.
    setCommand(request, { opcode: IoOpcode.DATASET_MANAGEMENT, cdw10: 0, cdw11: 0x3, prp1: DSM_LIST });
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
    // Range list in unmapped memory.
    setCommand(request, { opcode: IoOpcode.DATASET_MANAGEMENT, cdw10: 0, cdw11: 1 << 2, prp1: BASE + RAM_BYTES });
    expect((await run(ctx, request)).status).toBe(Status.DATA_TRANSFER_ERROR);

    expect((await readWrite(ctx, request, IoOpcode.READ, 0, 64, BUFFER_B)).status).toBe(Status.SUCCESS);
    const expected = data.slice();
    expected.fill(0, 2 * 512, 5 * 512);
    expected.fill(0, 40 * 512, 48 * 512);
    expect(Buffer.from(guest(BUFFER_B, data.length)).equals(Buffer.from(expected))).toBe(true);
  });

  it('compares: match succeeds, a mismatch is a Compare Failure but no media error', async () => {
    const data = pattern(8 * 512, 5);
    guest(BUFFER_A, data.length).set(data);
    expect((await readWrite(ctx, request, IoOpcode.WRITE, 16, 8, BUFFER_A)).status).toBe(Status.SUCCESS);
    expect((await readWrite(ctx, request, IoOpcode.COMPARE, 16, 8, BUFFER_A)).status).toBe(Status.SUCCESS);
    ram[BUFFER_A - BASE + 3000]! ^= 1;
    expect((await readWrite(ctx, request, IoOpcode.COMPARE, 16, 8, BUFFER_A)).status).toBe(Status.COMPARE_FAILURE);
    expect((await readWrite(ctx, request, IoOpcode.COMPARE, 17, 8, BUFFER_A)).status).toBe(Status.COMPARE_FAILURE);
    expect(ctx.counters.mediaErrors).toBe(0);
    expect(ctx.counters.hostReadCommands).toBe(3);
  });

  it('flushes one namespace, all namespaces, and verifies ranges', async () => {
    setCommand(request, { opcode: IoOpcode.FLUSH });
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
    setCommand(request, { opcode: IoOpcode.FLUSH, nsid: 0xffffffff });
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
    const withoutBroadcast = newContext([namespace], { allNamespaces: undefined });
    delete (withoutBroadcast as { allNamespaces?: unknown }).allNamespaces;
    setCommand(request, { opcode: IoOpcode.FLUSH, nsid: 0xffffffff });
    expect((await run(withoutBroadcast, request)).status).toBe(Status.INVALID_NAMESPACE_OR_FORMAT);
    setCommand(request, { opcode: IoOpcode.FLUSH, nsid: 3 });
    expect((await run(ctx, request)).status).toBe(Status.INVALID_NAMESPACE_OR_FORMAT);

    // Verify moves no data, so MDTS does not limit it.
    setCommand(request, { opcode: IoOpcode.VERIFY, slba: 0, blocks: namespace.blockCount });
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
    setCommand(request, { opcode: IoOpcode.VERIFY, slba: namespace.blockCount - 1, blocks: 2 });
    expect((await run(ctx, request)).status).toBe(Status.LBA_OUT_OF_RANGE);
  });
});

describe('4096-byte blocks', () => {
  it('scales offsets and lengths by the block size', async () => {
    const namespace = new MemoryNamespace({ sizeBytes: 1024 * 1024, blockSize: 4096 });
    const ctx = newContext([namespace]);
    const request = newRequest();
    const data = pattern(3 * 4096, 6);
    guest(BUFFER_A, data.length).set(data);
    expect((await readWrite(ctx, request, IoOpcode.WRITE, 255, 1, BUFFER_A, 4096)).status).toBe(Status.SUCCESS);
    expect((await readWrite(ctx, request, IoOpcode.WRITE, 255, 2, BUFFER_A, 4096)).status).toBe(
      Status.LBA_OUT_OF_RANGE,
    );
    expect((await readWrite(ctx, request, IoOpcode.WRITE, 10, 3, BUFFER_A, 4096)).status).toBe(Status.SUCCESS);
    const stored = new Uint8Array(3 * 4096);
    namespace.read(10 * 4096, [stored]);
    expect(Buffer.from(stored).equals(Buffer.from(data))).toBe(true);
    expect(ctx.counters.bytesWritten).toBe(4 * 4096);
  });
});

/**
 * A namespace whose operations complete when the test says so (or fail as told), over a memory store. It stands in
 * for slow or failing backends, which a real file cannot be made to be on demand.
 */
class ControlledNamespace implements Namespace {
  readonly store = new MemoryNamespace({ sizeBytes: 1024 * 1024 });
  readonly blockSize = 512;
  readonly blockCount = this.store.blockCount;
  readonly description = 'controlled';
  volatileWriteCache = true;
  readOnly = false;
  readonly maxTransferBytes = 0;
  readonly supportsDeallocate = true;
  readonly calls: string[] = [];
  /** What the next operations do: complete synchronously, wait for `release()`, or fail. */
  mode: 'sync' | 'deferred' | { throwSync: unknown } | { reject: unknown } = 'deferred';
  private waiting: Array<() => void> = [];

  release(): void {
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  get pending(): number {
    return this.waiting.length;
  }

  private operate(name: string, work: () => void): Promise<void> | void {
    this.calls.push(name);
    const mode = this.mode;
    if (mode === 'sync') return work();
    if (typeof mode === 'object' && 'throwSync' in mode) throw mode.throwSync;
    if (typeof mode === 'object' && 'reject' in mode) return Promise.reject(mode.reject);
    return new Promise<void>((resolve) => this.waiting.push(resolve)).then(work);
  }

  read(offset: number, buffers: readonly Uint8Array[]): Promise<void> | void {
    return this.operate('read', () => this.store.read(offset, buffers));
  }
  write(offset: number, buffers: readonly Uint8Array[]): Promise<void> | void {
    return this.operate('write', () => this.store.write(offset, buffers));
  }
  flush(): Promise<void> | void {
    return this.operate('flush', () => {});
  }
  deallocate(ranges: readonly ByteRange[]): Promise<void> | void {
    return this.operate('deallocate', () => this.store.deallocate(ranges));
  }
  writeZeroes(offset: number, length: number): Promise<void> | void {
    return this.operate('writeZeroes', () => this.store.writeZeroes(offset, length));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe('asynchronous completion', () => {
  it('pins the guest mappings until an async read is done: unmapping waits for it', async () => {
    const namespace = new ControlledNamespace();
    const ctx = newContext([namespace]);
    const request = newRequest();
    namespace.store.write(0, [pattern(4096, 7)]);
    const events: string[] = [];
    setCommand(request, { opcode: IoOpcode.READ, slba: 0, blocks: 8, ...prpsFor(BUFFER_A, 4096) });
    const completion = run(ctx, request).then((outcome) => {
      events.push(`done ${outcome.status}`);
      return outcome;
    });
    expect(request.pinned).toEqual([memory.windows[0]]);
    const mapping = memory.windows[0]!;
    const removal = memory.remove(BASE, RAM_BYTES).then(() => events.push('unmapped'));
    // The mapping is retired at once (new lookups fail) ...
    expect(() => memory.view(BUFFER_A, 1, 'read')).toThrow();
    await sleep(20);
    // ... but not released while the read is outstanding.
    expect(events).toEqual([]);
    namespace.release();
    const outcome = await completion;
    await removal;
    expect(outcome.synchronous).toBe(false);
    expect(events).toEqual([`done ${Status.SUCCESS}`, 'unmapped']);
    expect(request.pinned).toHaveLength(0);
    // The data landed in what was guest RAM.
    expect(Buffer.from(mapping.bytes.subarray(0x100000, 0x100000 + 4096)).equals(Buffer.from(pattern(4096, 7)))).toBe(
      true,
    );
  });

  it('holds an unmap until a real file read has finished', async () => {
    const file = path.join(tempDir, 'pin.img');
    const namespace = await FileNamespace.open({ path: file, sizeBytes: 1024 * 1024 });
    try {
      const data = pattern(64 * 1024, 8);
      fs.writeFileSync(file, data, { flag: 'r+' });
      const ctx = newContext([namespace]);
      const request = newRequest();
      setCommand(request, { opcode: IoOpcode.READ, slba: 0, blocks: 128, ...prpsFor(BUFFER_A, data.length) });
      const events: string[] = [];
      let doneCalled = false;
      executeIoCommand(ctx, request, (_request, status) => {
        doneCalled = true;
        events.push(`done ${status}`);
      });
      expect(doneCalled).toBe(false);
      await memory.remove(BASE, RAM_BYTES);
      events.push('unmapped');
      expect(events).toEqual([`done ${Status.SUCCESS}`, 'unmapped']);
      expect(Buffer.from(guest(BUFFER_A, data.length)).equals(Buffer.from(data))).toBe(true);
    } finally {
      await namespace.close();
    }
  });

  it('completes synchronously without pinning when the backend is synchronous', () => {
    const namespace = new ControlledNamespace();
    namespace.mode = 'sync';
    const ctx = newContext([namespace]);
    const request = newRequest();
    const pins: unknown[] = [];
    const dma = Object.create(memory) as GuestMemory;
    dma.pin = (mapping) => void pins.push(mapping);
    const statuses: number[] = [];
    setCommand(request, { opcode: IoOpcode.WRITE, slba: 0, blocks: 1, prp1: BUFFER_A });
    executeIoCommand({ ...ctx, dma }, request, (_request, status) => statuses.push(status));
    expect(statuses).toEqual([Status.SUCCESS]);
    expect(pins).toEqual([]);
  });

  it('flushes after a FUA write before completing, only with a volatile cache', async () => {
    const namespace = new ControlledNamespace();
    const ctx = newContext([namespace]);
    const request = newRequest();
    setCommand(request, { opcode: IoOpcode.WRITE, slba: 0, blocks: 1, prp1: BUFFER_A, cdw12: 1 << 30 });
    let finished = false;
    const completion = run(ctx, request).then((outcome) => ((finished = true), outcome));
    namespace.release(); // the write
    await sleep(5);
    expect(namespace.calls).toEqual(['write', 'flush']);
    expect(finished).toBe(false);
    namespace.release(); // the flush
    expect((await completion).status).toBe(Status.SUCCESS);

    namespace.volatileWriteCache = false;
    namespace.calls.length = 0;
    const second = run(ctx, request);
    namespace.release();
    expect((await second).status).toBe(Status.SUCCESS);
    expect(namespace.calls).toEqual(['write']);

    // A synchronous backend: write and flush both happen before executeIoCommand returns.
    namespace.volatileWriteCache = true;
    namespace.mode = 'sync';
    namespace.calls.length = 0;
    const third = await run(ctx, request);
    expect(third).toMatchObject({ status: Status.SUCCESS, synchronous: true });
    expect(namespace.calls).toEqual(['write', 'flush']);
  });

  it('flushes the new backing after a FUA write through a backing swap from a backing without a cache', async () => {
    // memory: has no volatile write cache; the new backing (a file's page cache, here a controlled one) has.
    const target = new ControlledNamespace();
    target.mode = 'sync';
    const swap = new BackingSwap(new MemoryNamespace({ sizeBytes: 1024 * 1024 }), target);
    await moveData(swap, { copy: false, commit: async () => undefined });
    target.calls.length = 0;
    const ctx = newContext([swap]);
    const request = newRequest();
    setCommand(request, { opcode: IoOpcode.WRITE, slba: 0, blocks: 1, prp1: BUFFER_A, cdw12: 1 << 30 });
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
    expect(target.calls).toEqual(['write', 'flush']);
    // Without FUA, the write alone: the guest flushes when it needs to.
    target.calls.length = 0;
    setCommand(request, { opcode: IoOpcode.WRITE, slba: 0, blocks: 1, prp1: BUFFER_A });
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
    expect(target.calls).toEqual(['write']);
  });

  it('maps namespace errors to NVMe statuses, counts media errors and logs with context', async () => {
    const namespace = new ControlledNamespace();
    const { logger, lines } = memoryLogger();
    const ctx = newContext([namespace], { logger });
    const request = newRequest();
    const cases: Array<[unknown, number, boolean]> = [
      [new NamespaceError('read', 'bad sector'), Status.UNRECOVERED_READ_ERROR, true],
      [new NamespaceError('write', 'bad write'), Status.WRITE_FAULT, true],
      [new NamespaceError('read-only', 'file system is read-only'), Status.NAMESPACE_WRITE_PROTECTED, false],
      [new NamespaceError('unavailable', 'link down'), Status.INTERNAL_PATH_ERROR, false],
      [new NamespaceError('capacity', 'full'), Status.CAPACITY_EXCEEDED, false],
      [new NamespaceError('unsupported', 'nope'), Status.INVALID_OPCODE, false],
      [new NamespaceError('internal', 'oops'), Status.INTERNAL_ERROR, false],
      [new NamespaceError('read', 'remote said', Status.NAMESPACE_NOT_READY), Status.NAMESPACE_NOT_READY, false],
      [new TypeError('a bug'), Status.INTERNAL_ERROR, false],
      ['not even an error', Status.INTERNAL_ERROR, false],
    ];
    let mediaErrors = 0;
    for (const [error, expected, media] of cases) {
      for (const mode of [{ reject: error }, { throwSync: error }]) {
        namespace.mode = mode;
        setCommand(request, { opcode: IoOpcode.READ, cid: 42, slba: 9, blocks: 1, prp1: BUFFER_A });
        const outcome = await run(ctx, request);
        expect(outcome.status).toBe(expected);
        expect(outcome.synchronous).toBe('throwSync' in mode);
        expect(request.pinned).toHaveLength(0);
        if (media) mediaErrors++;
        expect(ctx.counters.mediaErrors).toBe(mediaErrors);
      }
    }
    expect(ctx.counters.hostReadCommands).toBe(0);
    expect(lines).toHaveLength(cases.length * 2);
    expect(lines[0]).toMatchObject({ level: 'warn', cid: 42, nsid: 1, opcode: IoOpcode.READ, slba: 9 });
    expect(lines.at(-1)).toMatchObject({ level: 'error', cid: 42 });
  });

  it('flushes every namespace on a broadcast flush and reports a failure of any of them', async () => {
    const first = new ControlledNamespace();
    const second = new ControlledNamespace();
    const ctx = newContext([first, second]);
    const request = newRequest();
    setCommand(request, { opcode: IoOpcode.FLUSH, nsid: 0xffffffff });
    let finished = false;
    const completion = run(ctx, request).then((outcome) => ((finished = true), outcome));
    first.release();
    await sleep(5);
    expect(finished).toBe(false);
    second.release();
    expect((await completion).status).toBe(Status.SUCCESS);
    expect([first.calls, second.calls]).toEqual([['flush'], ['flush']]);

    first.mode = { throwSync: new NamespaceError('write', 'disk gone') };
    const failed = run(ctx, request);
    second.release();
    expect((await failed).status).toBe(Status.WRITE_FAULT);
    expect(second.calls).toEqual(['flush', 'flush']);
  });

  it('with the write cache disabled (WCE = 0), flushes every write, Write Zeroes and deallocation before completing', async () => {
    const namespace = new ControlledNamespace();
    const writeThrough = newContext([namespace], { writeCacheEnabled: false });
    const request = newRequest();
    const DEALLOCATE = 1 << 2;
    new DataView(ram.buffer).setUint32(DSM_LIST - BASE + 4, 2, true); // one range: LBA 0, 2 blocks
    const commands: Array<[string, CommandFields, string[]]> = [
      ['Write', { opcode: IoOpcode.WRITE, slba: 0, blocks: 1, prp1: BUFFER_A }, ['write', 'flush']],
      ['Write Zeroes', { opcode: IoOpcode.WRITE_ZEROES, slba: 0, blocks: 1 }, ['writeZeroes', 'flush']],
      ['Write Zeroes DEAC', { opcode: IoOpcode.WRITE_ZEROES, slba: 0, blocks: 1, cdw12: 1 << 25 }, ['deallocate', 'flush']],
      ['DSM', { opcode: IoOpcode.DATASET_MANAGEMENT, cdw10: 0, cdw11: DEALLOCATE, prp1: DSM_LIST }, ['deallocate', 'flush']],
      ['Read', { opcode: IoOpcode.READ, slba: 0, blocks: 1, prp1: BUFFER_A }, ['read']],
      ['Compare', { opcode: IoOpcode.COMPARE, slba: 0, blocks: 1, prp1: BUFFER_A }, ['read']],
    ];
    namespace.mode = 'sync';
    for (const [what, fields, calls] of commands) {
      namespace.calls.length = 0;
      setCommand(request, fields);
      expect((await run(writeThrough, request)).status, what).toBe(Status.SUCCESS);
      expect(namespace.calls, what).toEqual(calls);
    }

    // Asynchronous backend: the write completes only once its flush has.
    namespace.mode = 'deferred';
    namespace.calls.length = 0;
    setCommand(request, { opcode: IoOpcode.WRITE, slba: 0, blocks: 1, prp1: BUFFER_A });
    let finished = false;
    const completion = run(writeThrough, request).then((outcome) => ((finished = true), outcome));
    namespace.release(); // the write
    await sleep(5);
    expect(namespace.calls).toEqual(['write', 'flush']);
    expect(finished).toBe(false);
    namespace.release(); // the flush
    expect((await completion).status).toBe(Status.SUCCESS);

    // With the cache enabled (or not said), and without a volatile cache, writes are not flushed.
    namespace.mode = 'sync';
    for (const [ctx, volatileWriteCache] of [
      [newContext([namespace], { writeCacheEnabled: true }), true],
      [newContext([namespace]), true],
      [writeThrough, false],
    ] as const) {
      namespace.volatileWriteCache = volatileWriteCache;
      namespace.calls.length = 0;
      setCommand(request, { opcode: IoOpcode.WRITE, slba: 0, blocks: 1, prp1: BUFFER_A });
      expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
      setCommand(request, { opcode: IoOpcode.DATASET_MANAGEMENT, cdw10: 0, cdw11: DEALLOCATE, prp1: DSM_LIST });
      expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
      expect(namespace.calls).toEqual(['write', 'deallocate']);
    }
  });

  it('refuses writes, Write Zeroes and deallocation on a read-only namespace without calling the backend', async () => {
    const namespace = new ControlledNamespace();
    namespace.mode = 'sync';
    namespace.readOnly = true;
    const ctx = newContext([namespace]);
    const request = newRequest();
    const refused: CommandFields[] = [
      { opcode: IoOpcode.WRITE, slba: 0, blocks: 1, prp1: BUFFER_A },
      { opcode: IoOpcode.WRITE, slba: 0, blocks: 1, prp1: BUFFER_A, cdw12: 1 << 30 },
      { opcode: IoOpcode.WRITE_ZEROES, slba: 0, blocks: 8 },
      { opcode: IoOpcode.WRITE_ZEROES, slba: 0, blocks: 8, cdw12: 1 << 25 },
      { opcode: IoOpcode.DATASET_MANAGEMENT, cdw10: 0, cdw11: 1 << 2, prp1: DSM_LIST },
    ];
    for (const fields of refused) {
      setCommand(request, fields);
      expect(await run(ctx, request)).toMatchObject({ status: Status.NAMESPACE_WRITE_PROTECTED, synchronous: true });
    }
    expect(namespace.calls).toEqual([]);
    expect(ctx.counters.hostWriteCommands).toBe(0);
    // Reading, flushing and DSM hints without Deallocate still work.
    setCommand(request, { opcode: IoOpcode.READ, slba: 0, blocks: 1, prp1: BUFFER_A });
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
    setCommand(request, { opcode: IoOpcode.FLUSH });
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
    setCommand(request, { opcode: IoOpcode.DATASET_MANAGEMENT, cdw10: 0, cdw11: 0x3, prp1: DSM_LIST });
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
    expect(namespace.calls).toEqual(['read', 'flush']);
  });

  it('rejects SGL descriptors with a sub type other than address as SGL Descriptor Type Invalid', async () => {
    const namespace = new ControlledNamespace();
    namespace.mode = 'sync';
    const ctx = newContext([namespace]);
    const request = newRequest();
    const view = new DataView(ram.buffer);
    const list = LIST_AREA + 0x2000;
    const putDescriptor = (index: number, address: number, length: number, identifier: number): void => {
      const at = list - BASE + index * 16;
      view.setBigUint64(at, BigInt(address), true);
      view.setUint32(at + 8, length, true);
      view.setUint8(at + 15, identifier);
    };
    const sgl = (address: number, length: number, identifier: number): void => {
      setCommand(request, { opcode: IoOpcode.WRITE, slba: 0, blocks: 1, flags: 1 << 6, prp1: address });
      request.sqe.setUint32(32, length, true);
      request.sqe.setUint8(39, identifier);
    };
    // SGL1 is a Data Block with sub type 1h (offset: fabrics only) or Ah (transport specific).
    for (const subType of [0x1, 0xa]) {
      sgl(BUFFER_A, 512, 0x00 | subType);
      expect((await run(ctx, request)).status).toBe(Status.SGL_DESCRIPTOR_TYPE_INVALID);
    }
    // A Last Segment with a proper sub type, whose list holds a Data Block with sub type 1h.
    putDescriptor(0, BUFFER_A, 256, 0x00);
    putDescriptor(1, BUFFER_A + 256, 256, 0x01);
    sgl(list, 32, 0x30);
    expect((await run(ctx, request)).status).toBe(Status.SGL_DESCRIPTOR_TYPE_INVALID);
    // The Last Segment descriptor itself with sub type 1h.
    putDescriptor(1, BUFFER_A + 256, 256, 0x00);
    sgl(list, 32, 0x31);
    expect((await run(ctx, request)).status).toBe(Status.SGL_DESCRIPTOR_TYPE_INVALID);
    // A Bit Bucket's sub type must be 0 too.
    putDescriptor(1, BUFFER_A + 256, 256, 0x11);
    sgl(list, 32, 0x30);
    expect((await run(ctx, request)).status).toBe(Status.SGL_DESCRIPTOR_TYPE_INVALID);
    expect(namespace.calls).toEqual([]);
    // With sub type 0 everywhere the same SGL works.
    putDescriptor(1, BUFFER_A + 256, 256, 0x00);
    sgl(list, 32, 0x30);
    expect((await run(ctx, request)).status).toBe(Status.SUCCESS);
    expect(namespace.calls).toEqual(['write']);
  });

  it('completes a Compare read asynchronously with pins held', async () => {
    const namespace = new ControlledNamespace();
    const ctx = newContext([namespace]);
    const request = newRequest();
    const data = pattern(1024, 9);
    namespace.store.write(1024, [data]);
    guest(BUFFER_A, 1024).set(data);
    setCommand(request, { opcode: IoOpcode.COMPARE, slba: 2, blocks: 2, prp1: BUFFER_A });
    const completion = run(ctx, request);
    const removal = memory.remove(BASE, RAM_BYTES);
    let removed = false;
    void removal.then(() => (removed = true));
    await sleep(5);
    expect(removed).toBe(false);
    namespace.release();
    expect((await completion).status).toBe(Status.SUCCESS);
    await removal;
  });
});

describe('an I/O batch (IoBatch: the copies and completions of Reads and Writes on memory namespaces wait for runIoBatch)', () => {
  it('completes nothing before it runs, then every command in order, even after a done that throws', () => {
    const namespace = new MemoryNamespace({ sizeBytes: 1024 * 1024 });
    const { logger, lines } = memoryLogger();
    const batch = new IoBatch();
    const ctx = newContext([namespace], { batch, logger });
    ram.fill(0x3c, BUFFER_A - BASE, BUFFER_A - BASE + PAGE);
    const completed: Array<[number, number]> = [];
    const requests = [0, 1, 2].map((index) => {
      const request = newRequest();
      // A Write of BUFFER_A to LBA 0, then two Reads of it into BUFFER_B's first two pages.
      setCommand(request, index === 0
        ? { opcode: IoOpcode.WRITE, cid: index, slba: 0, blocks: 8, prp1: BUFFER_A }
        : { opcode: IoOpcode.READ, cid: index, slba: 0, blocks: 8, prp1: BUFFER_B + (index - 1) * PAGE });
      return request;
    });
    for (const request of requests) {
      executeIoCommand(ctx, request, (done, status) => {
        completed.push([done.sqe.getUint16(2, true), status]);
        if (done === requests[0]) throw new Error('done failed');
      });
    }
    expect(batch.count).toBe(3);
    expect(completed).toEqual([]);
    expect(ram[BUFFER_B - BASE]).toBe(0); // nothing copied yet
    runIoBatch(ctx);
    expect(completed).toEqual([[0, Status.SUCCESS], [1, Status.SUCCESS], [2, Status.SUCCESS]]);
    expect(ram.subarray(BUFFER_B - BASE, BUFFER_B - BASE + 2 * PAGE).every((byte) => byte === 0x3c)).toBe(true);
    expect(lines.some((line) => line.msg === 'I/O completion callback threw')).toBe(true);
    expect(ctx.counters.hostReadCommands).toBe(2);
    expect(ctx.counters.bytesWritten).toBe(PAGE);
  });

  it('runs itself before any other I/O command, so a Compare after a Write sees it', () => {
    const namespace = new MemoryNamespace({ sizeBytes: 1024 * 1024 });
    const batch = new IoBatch();
    const ctx = newContext([namespace], { batch });
    ram.fill(0x5d, BUFFER_A - BASE, BUFFER_A - BASE + PAGE);
    const statuses: number[] = [];
    const write = newRequest();
    setCommand(write, { opcode: IoOpcode.WRITE, slba: 0, blocks: 8, prp1: BUFFER_A });
    executeIoCommand(ctx, write, (_, status) => void statuses.push(status));
    expect(statuses).toEqual([]);
    const compare = newRequest();
    setCommand(compare, { opcode: IoOpcode.COMPARE, slba: 0, blocks: 8, prp1: BUFFER_A });
    executeIoCommand(ctx, compare, (_, status) => void statuses.push(status));
    expect(statuses).toEqual([Status.SUCCESS, Status.SUCCESS]);
    expect(batch.count).toBe(0);
  });
});
