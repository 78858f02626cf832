/**
 * A tiny NVMe host driver for tests: it plays the guest. It allocates queues and buffers in a guest RAM image, builds
 * SQEs, rings doorbells through BAR0 writes and reaps CQEs by phase tag, like a real driver would.
 *
 * Transport-agnostic: give it BAR0 accessors and the guest RAM it may use. In-process tests call the controller
 * directly (and run processQueues after each write); end-to-end tests go through a vfio-user socket.
 */
import { sleep } from '../../src/util/sleep.js';

export interface GuestDriverTransport {
  bar0Read(offset: number, length: number): Promise<Uint8Array> | Uint8Array;
  bar0Write(offset: number, bytes: Uint8Array): Promise<void> | void;
  /** Guest RAM the driver allocates queues and buffers from: `bytes[0]` is at `iova`. */
  memory: { bytes: Uint8Array; iova: number };
  /** Resolves on the next interrupt of `vector` (optional: without it the driver polls). */
  waitForInterrupt?(vector: number): Promise<void>;
}

export interface Completion {
  dw0: number;
  sqhd: number;
  sqid: number;
  cid: number;
  phase: number;
  /** The 15-bit status field (DNR bit 14, SCT 10:8, SC 7:0) as in spec.ts `Status`. */
  status: number;
}

/** SQE fields; anything absent is zero. `cid` is assigned by the driver unless given. */
export interface SqeFields {
  opcode: number;
  /** CDW0 bits 15:8: FUSE (9:8) and PSDT (15:14). */
  flags?: number;
  cid?: number;
  nsid?: number;
  cdw2?: number;
  cdw3?: number;
  mptr?: number | bigint;
  /** SQE bytes 24..31 (PRP1, or the first half of SGL1). */
  prp1?: number | bigint;
  /** SQE bytes 32..39 (PRP2, or the second half of SGL1). */
  prp2?: number | bigint;
  cdw10?: number;
  cdw11?: number;
  cdw12?: number;
  cdw13?: number;
  cdw14?: number;
  cdw15?: number;
}

export interface DataResult {
  completion: Completion;
  data: Uint8Array;
}

export type DataPointerKind = 'prp' | 'sgl' | 'sgl-segments';

export interface BlockIoOptions {
  /** I/O queue to use (default 1). */
  qid?: number;
  dataPointer?: DataPointerKind;
  /** Offset of the data buffer inside its first page (PRP1 offset), default 0. */
  bufferOffset?: number;
  /** How long to wait for the completion (default: `wait`'s 5 s). */
  timeoutMillis?: number;
}

const PAGE = 4096;
const SQE = 64;
const CQE = 16;

const REG_CAP = 0x00;
const REG_CC = 0x14;
const REG_CSTS = 0x1c;
const REG_AQA = 0x24;
const REG_ASQ = 0x28;
const REG_ACQ = 0x30;
const DOORBELLS = 0x1000;

export const CC_ENABLE = 1;
const CC_IO_ENTRY_SIZES = (6 << 16) | (4 << 20);

export class NvmeCommandError extends Error {
  constructor(
    readonly what: string,
    readonly completion: Completion,
  ) {
    super(`${what} failed with status 0x${completion.status.toString(16)}`);
    this.name = 'NvmeCommandError';
  }
}

interface DriverSubmissionQueue {
  qid: number;
  iova: number;
  entries: number;
  tail: number;
  cqid: number;
  nextCid: number;
}

interface DriverCompletionQueue {
  qid: number;
  iova: number;
  entries: number;
  head: number;
  /** Phase tag of new entries: 1 on the first pass over the zeroed ring, flipped on every wrap. */
  phase: number;
  vector: number;
  interruptsEnabled: boolean;
  /** Completions reaped and not yet claimed by a waiter, keyed by `sqid * 65536 + cid`. */
  completed: Map<number, Completion>;
}

export class GuestDriver {
  /** MMIO doorbell writes issued (shadow doorbells make most of them unnecessary). */
  mmioDoorbellWrites = 0;
  private readonly submissionQueues = new Map<number, DriverSubmissionQueue>();
  private readonly completionQueues = new Map<number, DriverCompletionQueue>();
  private readonly memoryView: DataView;
  private nextFree: number;
  /** Live allocations: iova -> pages; freed ones are reused by size. */
  private readonly allocations = new Map<number, number>();
  private readonly freePages = new Map<number, number[]>();
  private readonly blockSizes = new Map<number, number>();
  private shadow: { shadowIova: number; eventIndexIova: number } | undefined;

  constructor(private readonly transport: GuestDriverTransport) {
    const { bytes } = transport.memory;
    this.memoryView = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.nextFree = Math.ceil(transport.memory.iova / PAGE) * PAGE;
  }

  // ---- guest memory ------------------------------------------------------------------------------------------

  /** Allocates zeroed, page-aligned guest memory of at least `size` bytes; returns its iova. */
  alloc(size: number): number {
    const pages = Math.max(1, Math.ceil(size / PAGE));
    let iova = this.freePages.get(pages)?.pop();
    if (iova === undefined) {
      iova = this.nextFree;
      if (iova + pages * PAGE > this.transport.memory.iova + this.transport.memory.bytes.length) {
        throw new Error(`guest driver: out of guest memory allocating ${size} bytes`);
      }
      this.nextFree += pages * PAGE;
    }
    this.bytes(iova, pages * PAGE).fill(0);
    this.allocations.set(iova, pages);
    return iova;
  }

  /**
   * Moves the allocator on to `iova` (page aligned, at or past the next free page) without touching the memory in
   * between: later buffers then start at a guest address the test chose (e.g. across a window end of a huge RAM).
   */
  skipTo(iova: number): void {
    if (iova % PAGE !== 0 || iova < this.nextFree) {
      throw new Error(`guest driver: cannot skip to 0x${iova.toString(16)} (next free 0x${this.nextFree.toString(16)})`);
    }
    this.nextFree = iova;
  }

  free(iova: number): void {
    const pages = this.allocations.get(iova);
    if (pages === undefined) throw new Error(`guest driver: free of unallocated iova 0x${iova.toString(16)}`);
    this.allocations.delete(iova);
    const list = this.freePages.get(pages) ?? [];
    list.push(iova);
    this.freePages.set(pages, list);
  }

  /** Guest memory [iova, iova + length) as the guest sees it. */
  bytes(iova: number, length: number): Uint8Array {
    const start = iova - this.transport.memory.iova;
    if (start < 0 || start + length > this.transport.memory.bytes.length) {
      throw new Error(`guest driver: iova 0x${iova.toString(16)}+${length} is outside guest memory`);
    }
    return this.transport.memory.bytes.subarray(start, start + length);
  }

  read32(iova: number): number {
    return this.memoryView.getUint32(iova - this.transport.memory.iova, true);
  }

  write32(iova: number, value: number): void {
    this.memoryView.setUint32(iova - this.transport.memory.iova, value >>> 0, true);
  }

  // ---- registers ---------------------------------------------------------------------------------------------

  async readRegister32(offset: number): Promise<number> {
    const bytes = await this.transport.bar0Read(offset, 4);
    return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  }

  async readRegister64(offset: number): Promise<bigint> {
    const bytes = await this.transport.bar0Read(offset, 8);
    return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  }

  async writeRegister32(offset: number, value: number): Promise<void> {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
    await this.transport.bar0Write(offset, bytes);
  }

  async writeRegister64(offset: number, value: number): Promise<void> {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(value), true);
    await this.transport.bar0Write(offset, bytes);
  }

  async capabilities(): Promise<{ maxQueueEntries: number; timeoutMillis: number; doorbellStride: number }> {
    const cap = await this.readRegister64(REG_CAP);
    return {
      maxQueueEntries: Number(cap & 0xffffn) + 1,
      timeoutMillis: Number((cap >> 24n) & 0xffn) * 500,
      doorbellStride: 4 << Number((cap >> 32n) & 0xfn),
    };
  }

  async status(): Promise<number> {
    return this.readRegister32(REG_CSTS);
  }

  /** Polls CSTS until `predicate` holds; throws after `timeoutMillis`. */
  async waitForStatus(predicate: (csts: number) => boolean, what: string, timeoutMillis = 5000): Promise<number> {
    const deadline = Date.now() + timeoutMillis;
    for (;;) {
      const csts = await this.status();
      if (predicate(csts)) return csts;
      if (Date.now() > deadline) {
        throw new Error(`guest driver: timed out waiting for ${what} (CSTS 0x${csts.toString(16)})`);
      }
      await tick();
    }
  }

  // ---- controller life cycle ---------------------------------------------------------------------------------

  /** Resets (if needed) and enables the controller with fresh admin queues (default 32 entries each). */
  async enable(options: AdminQueueOptions = {}): Promise<void> {
    const csts = await this.configureAdminQueues(options);
    if ((csts & 2) !== 0) {
      throw new Error(`guest driver: controller fatal status while enabling (CSTS 0x${csts.toString(16)})`);
    }
  }

  /**
   * Disables the controller, programs AQA/ASQ/ACQ and sets CC.EN; returns CSTS once RDY or CFS is set. `cc` adds
   * bits to CC and `asq` / `acq` override the queue addresses (tests use them for invalid configurations).
   */
  async configureAdminQueues(options: AdminQueueOptions = {}): Promise<number> {
    await this.disable();
    const sqEntries = options.adminSqEntries ?? options.adminEntries ?? 32;
    const cqEntries = options.adminCqEntries ?? options.adminEntries ?? 32;
    const sqIova = options.asq ?? this.alloc(sqEntries * SQE);
    const cqIova = options.acq ?? this.alloc(cqEntries * CQE);
    this.submissionQueues.set(0, newSubmissionQueue(0, sqIova, sqEntries, 0));
    this.completionQueues.set(0, newCompletionQueue(0, cqIova, cqEntries, 0, true));
    await this.writeRegister32(REG_AQA, ((sqEntries - 1) | ((cqEntries - 1) << 16)) >>> 0);
    await this.writeRegister64(REG_ASQ, sqIova);
    await this.writeRegister64(REG_ACQ, cqIova);
    await this.writeRegister32(REG_CC, CC_ENABLE | CC_IO_ENTRY_SIZES | (options.cc ?? 0));
    return this.waitForStatus((csts) => (csts & 3) !== 0, 'CSTS.RDY or CSTS.CFS');
  }

  /** CC.EN = 0 and wait for CSTS.RDY = 0; forgets all queues. */
  async disable(): Promise<void> {
    const cc = await this.readRegister32(REG_CC);
    if ((cc & CC_ENABLE) !== 0) await this.writeRegister32(REG_CC, cc & ~CC_ENABLE);
    await this.waitForStatus((csts) => (csts & 1) === 0, 'CSTS.RDY = 0');
    this.submissionQueues.clear();
    this.completionQueues.clear();
    this.shadow = undefined;
  }

  /** Normal (or abrupt) shutdown notification; resolves once CSTS.SHST reports completion. */
  async shutdown(kind: 'normal' | 'abrupt' = 'normal'): Promise<void> {
    const cc = await this.readRegister32(REG_CC);
    const shn = kind === 'normal' ? 1 : 2;
    await this.writeRegister32(REG_CC, (cc & ~(3 << 14)) | (shn << 14));
    await this.waitForStatus((csts) => ((csts >>> 2) & 3) === 2, 'CSTS.SHST = shutdown complete');
  }

  // ---- submission and completion -----------------------------------------------------------------------------

  /** Writes an SQE at the queue's tail without ringing the doorbell; returns its command id. */
  place(qid: number, fields: SqeFields): number {
    const sq = this.submissionQueue(qid);
    const cid = fields.cid ?? nextCommandId(sq);
    const entry = this.bytes(sq.iova + sq.tail * SQE, SQE);
    entry.fill(0);
    const view = new DataView(entry.buffer, entry.byteOffset, SQE);
    view.setUint8(0, fields.opcode);
    view.setUint8(1, fields.flags ?? 0);
    view.setUint16(2, cid, true);
    view.setUint32(4, (fields.nsid ?? 0) >>> 0, true);
    view.setUint32(8, (fields.cdw2 ?? 0) >>> 0, true);
    view.setUint32(12, (fields.cdw3 ?? 0) >>> 0, true);
    view.setBigUint64(16, BigInt(fields.mptr ?? 0), true);
    view.setBigUint64(24, BigInt(fields.prp1 ?? 0), true);
    view.setBigUint64(32, BigInt(fields.prp2 ?? 0), true);
    const dwords = [fields.cdw10, fields.cdw11, fields.cdw12, fields.cdw13, fields.cdw14, fields.cdw15];
    dwords.forEach((value, index) => view.setUint32(40 + index * 4, (value ?? 0) >>> 0, true));
    sq.tail = (sq.tail + 1) % sq.entries;
    return cid;
  }

  /** Tells the controller about placed SQEs: the SQ tail doorbell (with shadow doorbells: as Linux does). */
  async ringSubmission(qid: number): Promise<void> {
    await this.ringDoorbell(qid * 2, this.submissionQueue(qid).tail);
  }

  /** Writes the CQ head doorbell with the driver's current head. */
  async ringCompletionHead(cqid: number): Promise<void> {
    await this.ringDoorbell(cqid * 2 + 1, this.completionQueue(cqid).head);
  }

  /** Writes doorbell `index` through MMIO (tests use it for invalid values too). */
  async writeDoorbell(index: number, value: number): Promise<void> {
    this.mmioDoorbellWrites++;
    await this.writeRegister32(DOORBELLS + index * 4, value);
  }

  /**
   * Collects new CQEs (phase tag matches) of completion queue `cqid`. With `updateHead` (default) the head doorbell
   * is written once afterwards, as a driver does after handling a batch.
   */
  async reap(cqid: number, options: { updateHead?: boolean; max?: number } = {}): Promise<Completion[]> {
    const cq = this.completionQueue(cqid);
    const reaped: Completion[] = [];
    const max = options.max ?? Infinity;
    while (reaped.length < max) {
      const entry = this.bytes(cq.iova + cq.head * CQE, CQE);
      // The phase tag first, and the rest only once it says the entry is new: the controller (another process, in
      // polled mode spinning on another core) writes DW3 last, so reading DW2 before DW3 could pair this lap's
      // CID with the previous contents' SQ id (0 in a CQ's first lap): the completion filed under the wrong queue.
      const dw3 = new DataView(entry.buffer, entry.byteOffset + 12, 4).getUint32(0, true);
      if (((dw3 >>> 16) & 1) !== cq.phase) break;
      const completion = decodeCompletion(entry);
      reaped.push(completion);
      cq.completed.set(completion.sqid * 0x10000 + completion.cid, completion);
      cq.head++;
      if (cq.head === cq.entries) {
        cq.head = 0;
        cq.phase ^= 1;
      }
    }
    if (reaped.length > 0 && options.updateHead !== false) await this.ringCompletionHead(cqid);
    return reaped;
  }

  /** Live view of submission queue `sqid`'s ring in guest memory. */
  submissionQueueMemory(sqid: number): Uint8Array {
    const sq = this.submissionQueue(sqid);
    return this.bytes(sq.iova, sq.entries * SQE);
  }

  /** Live view of completion queue `cqid`'s ring in guest memory (stays valid after the driver forgets it). */
  completionQueueMemory(cqid: number): Uint8Array {
    const cq = this.completionQueue(cqid);
    return this.bytes(cq.iova, cq.entries * CQE);
  }

  /** The raw CQE in slot `slot` of completion queue `cqid`. */
  completionAt(cqid: number, slot: number): Completion {
    const cq = this.completionQueue(cqid);
    return decodeCompletion(this.bytes(cq.iova + slot * CQE, CQE));
  }

  /** Waits for the completion of command `cid` submitted to queue `sqid`. */
  async wait(sqid: number, cid: number, timeoutMillis = 5000): Promise<Completion> {
    const cq = this.completionQueue(this.submissionQueue(sqid).cqid);
    const key = sqid * 0x10000 + cid;
    const deadline = Date.now() + timeoutMillis;
    for (;;) {
      const done = cq.completed.get(key);
      if (done) {
        cq.completed.delete(key);
        return done;
      }
      if ((await this.reap(cq.qid)).length > 0) continue;
      if (Date.now() > deadline) throw new Error(`guest driver: command ${cid} on queue ${sqid} did not complete`);
      if (this.transport.waitForInterrupt && cq.interruptsEnabled) {
        await Promise.race([this.transport.waitForInterrupt(cq.vector), sleep(5)]);
      } else {
        await tick();
      }
    }
  }

  async submit(qid: number, fields: SqeFields, timeoutMillis?: number): Promise<Completion> {
    const cid = this.place(qid, fields);
    await this.ringSubmission(qid);
    return this.wait(qid, cid, timeoutMillis);
  }

  /** Places all commands, rings the doorbell once, and waits for every completion (in submission order). */
  async submitMany(qid: number, commands: SqeFields[]): Promise<Completion[]> {
    const cids = commands.map((fields) => this.place(qid, fields));
    await this.ringSubmission(qid);
    const completions: Completion[] = [];
    for (const cid of cids) completions.push(await this.wait(qid, cid));
    return completions;
  }

  // ---- admin commands ----------------------------------------------------------------------------------------

  async identify(cns: number, nsid = 0, options: { cdw10?: number; cdw11?: number } = {}): Promise<DataResult> {
    return this.adminDataIn(
      { opcode: 0x06, nsid, cdw10: (((options.cdw10 ?? 0) & ~0xff) | cns) >>> 0, cdw11: options.cdw11 ?? 0 },
      4096,
    );
  }

  async getLogPage(
    lid: number,
    length: number,
    options: { offset?: number; rae?: boolean; nsid?: number; lsp?: number; csi?: number; bufferOffset?: number } = {},
  ): Promise<DataResult> {
    const dwords = length / 4 - 1;
    const offset = options.offset ?? 0;
    return this.adminDataIn(
      {
        opcode: 0x02,
        nsid: options.nsid ?? 0xffffffff,
        cdw10: (lid | ((options.lsp ?? 0) << 8) | (options.rae ? 1 << 15 : 0) | ((dwords & 0xffff) << 16)) >>> 0,
        cdw11: Math.floor(dwords / 0x10000),
        cdw12: offset % 0x1_0000_0000,
        cdw13: Math.floor(offset / 0x1_0000_0000),
        cdw14: ((options.csi ?? 0) << 24) >>> 0,
      },
      length,
      options.bufferOffset,
    );
  }

  async getFeatures(
    fid: number,
    options: { select?: number; cdw11?: number; nsid?: number; dataLength?: number } = {},
  ): Promise<DataResult> {
    return this.adminDataIn(
      { opcode: 0x0a, nsid: options.nsid ?? 0, cdw10: fid | ((options.select ?? 0) << 8), cdw11: options.cdw11 ?? 0 },
      options.dataLength ?? 0,
    );
  }

  async setFeatures(
    fid: number,
    cdw11: number,
    options: { data?: Uint8Array; save?: boolean; nsid?: number; cdw12?: number } = {},
  ): Promise<Completion> {
    const fields: SqeFields = {
      opcode: 0x09,
      nsid: options.nsid ?? 0,
      cdw10: (fid | (options.save ? 0x80000000 : 0)) >>> 0,
      cdw11,
      cdw12: options.cdw12 ?? 0,
    };
    if (!options.data) return this.submit(0, fields);
    const buffer = this.alloc(options.data.length);
    this.bytes(buffer, options.data.length).set(options.data);
    try {
      return await this.submit(0, { ...fields, prp1: buffer });
    } finally {
      this.free(buffer);
    }
  }

  async createIoCompletionQueue(
    qid: number,
    entries: number,
    vector: number,
    options: { interruptsEnabled?: boolean; physicallyContiguous?: boolean; iova?: number } = {},
  ): Promise<Completion> {
    const interruptsEnabled = options.interruptsEnabled ?? true;
    const iova = options.iova ?? this.alloc(entries * CQE);
    const completion = await this.submit(0, {
      opcode: 0x05,
      prp1: iova,
      cdw10: (qid | ((entries - 1) << 16)) >>> 0,
      cdw11: ((options.physicallyContiguous === false ? 0 : 1) | (interruptsEnabled ? 2 : 0) | (vector << 16)) >>> 0,
    });
    if (completion.status === 0) {
      this.completionQueues.set(qid, newCompletionQueue(qid, iova, entries, vector, interruptsEnabled));
    } else if (options.iova === undefined) {
      this.free(iova);
    }
    return completion;
  }

  async createIoSubmissionQueue(
    qid: number,
    entries: number,
    cqid: number,
    options: { priority?: number; physicallyContiguous?: boolean; iova?: number } = {},
  ): Promise<Completion> {
    const iova = options.iova ?? this.alloc(entries * SQE);
    const completion = await this.submit(0, {
      opcode: 0x01,
      prp1: iova,
      cdw10: (qid | ((entries - 1) << 16)) >>> 0,
      cdw11: ((options.physicallyContiguous === false ? 0 : 1) | ((options.priority ?? 0) << 1) | (cqid << 16)) >>> 0,
    });
    if (completion.status === 0) this.submissionQueues.set(qid, newSubmissionQueue(qid, iova, entries, cqid));
    else if (options.iova === undefined) this.free(iova);
    return completion;
  }

  /** Creates CQ `qid` and SQ `qid` on it; throws if either fails. */
  async createIoQueuePair(
    qid: number,
    entries: number,
    vector: number,
    options: { cqEntries?: number; interruptsEnabled?: boolean } = {},
  ): Promise<void> {
    const cq = await this.createIoCompletionQueue(qid, options.cqEntries ?? entries, vector, {
      interruptsEnabled: options.interruptsEnabled ?? true,
    });
    if (cq.status !== 0) throw new NvmeCommandError(`Create I/O CQ ${qid}`, cq);
    const sq = await this.createIoSubmissionQueue(qid, entries, qid);
    if (sq.status !== 0) throw new NvmeCommandError(`Create I/O SQ ${qid}`, sq);
  }

  async deleteIoSubmissionQueue(qid: number): Promise<Completion> {
    const completion = await this.submit(0, { opcode: 0x00, cdw10: qid });
    if (completion.status === 0) this.submissionQueues.delete(qid);
    return completion;
  }

  async deleteIoCompletionQueue(qid: number): Promise<Completion> {
    const completion = await this.submit(0, { opcode: 0x04, cdw10: qid });
    if (completion.status === 0) this.completionQueues.delete(qid);
    return completion;
  }

  async deleteIoQueuePair(qid: number): Promise<void> {
    const sq = await this.deleteIoSubmissionQueue(qid);
    if (sq.status !== 0) throw new NvmeCommandError(`Delete I/O SQ ${qid}`, sq);
    const cq = await this.deleteIoCompletionQueue(qid);
    if (cq.status !== 0) throw new NvmeCommandError(`Delete I/O CQ ${qid}`, cq);
  }

  /**
   * Doorbell Buffer Config; afterwards I/O queue doorbells behave like Linux's: update the shadow entry and write
   * the MMIO doorbell only when the new value passes the controller's EventIdx.
   */
  async configureShadowDoorbells(): Promise<Completion> {
    const shadowIova = this.alloc(PAGE);
    const eventIndexIova = this.alloc(PAGE);
    const completion = await this.submit(0, { opcode: 0x7c, prp1: shadowIova, prp2: eventIndexIova });
    if (completion.status === 0) this.shadow = { shadowIova, eventIndexIova };
    return completion;
  }

  get shadowDoorbells(): { shadowIova: number; eventIndexIova: number } | undefined {
    return this.shadow;
  }

  // ---- block I/O ---------------------------------------------------------------------------------------------

  /** The namespace's block size, from Identify Namespace (cached). */
  async blockSize(nsid: number): Promise<number> {
    const cached = this.blockSizes.get(nsid);
    if (cached) return cached;
    const { completion, data } = await this.identify(0x00, nsid);
    if (completion.status !== 0) throw new NvmeCommandError(`Identify Namespace ${nsid}`, completion);
    const format = data[26]! & 0xf;
    const size = 2 ** data[128 + format * 4 + 2]!;
    this.blockSizes.set(nsid, size);
    return size;
  }

  async read(nsid: number, lba: number, blocks: number, options: BlockIoOptions = {}): Promise<DataResult> {
    const length = blocks * (await this.blockSize(nsid));
    const bufferOffset = options.bufferOffset ?? 0;
    const buffer = this.alloc(length + bufferOffset);
    const start = buffer + bufferOffset;
    const pointer = this.dataPointer(start, length, options.dataPointer ?? 'prp');
    try {
      const completion = await this.submit(options.qid ?? 1, {
        opcode: 0x02,
        nsid,
        flags: pointer.flags,
        prp1: pointer.prp1,
        prp2: pointer.prp2,
        cdw10: lba % 0x1_0000_0000,
        cdw11: Math.floor(lba / 0x1_0000_0000),
        cdw12: blocks - 1,
      }, options.timeoutMillis);
      return { completion, data: this.bytes(start, length).slice() };
    } finally {
      pointer.release();
      this.free(buffer);
    }
  }

  async write(nsid: number, lba: number, data: Uint8Array, options: BlockIoOptions = {}): Promise<Completion> {
    const blockSize = await this.blockSize(nsid);
    if (data.length % blockSize !== 0) throw new Error(`guest driver: write of ${data.length} bytes is not whole blocks`);
    const bufferOffset = options.bufferOffset ?? 0;
    const buffer = this.alloc(data.length + bufferOffset);
    const start = buffer + bufferOffset;
    this.bytes(start, data.length).set(data);
    const pointer = this.dataPointer(start, data.length, options.dataPointer ?? 'prp');
    try {
      return await this.submit(options.qid ?? 1, {
        opcode: 0x01,
        nsid,
        flags: pointer.flags,
        prp1: pointer.prp1,
        prp2: pointer.prp2,
        cdw10: lba % 0x1_0000_0000,
        cdw11: Math.floor(lba / 0x1_0000_0000),
        cdw12: data.length / blockSize - 1,
      }, options.timeoutMillis);
    } finally {
      pointer.release();
      this.free(buffer);
    }
  }

  /**
   * Data pointer for the contiguous buffer [iova, iova + length): PRP1/PRP2 with PRP lists (chained beyond 511
   * entries), one SGL Data Block, or an SGL Last Segment with one Data Block per page. `prp1` / `prp2` are the raw
   * SQE bytes 24..31 / 32..39; `release` frees list pages.
   */
  dataPointer(
    iova: number,
    length: number,
    kind: DataPointerKind,
  ): { flags: number; prp1: number; prp2: number | bigint; release(): void } {
    const lists: number[] = [];
    const release = (): void => lists.forEach((list) => this.free(list));
    if (kind === 'sgl') {
      // SGL1 Data Block: address (24..31), length (32..35), identifier 00h (39). PSDT = 01b.
      return { flags: 0x40, prp1: iova, prp2: length, release };
    }
    if (kind === 'sgl-segments') {
      const pieces: Array<{ address: number; length: number }> = [];
      for (let at = iova; at < iova + length; ) {
        const piece = Math.min(PAGE - (at % PAGE), iova + length - at);
        pieces.push({ address: at, length: piece });
        at += piece;
      }
      const list = this.alloc(pieces.length * 16);
      lists.push(list);
      pieces.forEach((piece, index) => {
        const descriptor = this.bytes(list + index * 16, 16);
        const view = new DataView(descriptor.buffer, descriptor.byteOffset, 16);
        view.setBigUint64(0, BigInt(piece.address), true);
        view.setUint32(8, piece.length, true);
        view.setUint8(15, 0x00); // Data Block
      });
      // SGL1 Last Segment (identifier 30h in byte 39): address of the list, its length in bytes.
      return { flags: 0x40, prp1: list, prp2: BigInt(pieces.length * 16) | (0x30n << 56n), release };
    }
    const firstPiece = Math.min(length, PAGE - (iova % PAGE));
    let remaining = length - firstPiece;
    const nextPage = iova - (iova % PAGE) + PAGE;
    if (remaining === 0) return { flags: 0, prp1: iova, prp2: 0, release };
    if (remaining <= PAGE) return { flags: 0, prp1: iova, prp2: nextPage, release };
    const pages: number[] = [];
    for (let page = nextPage; remaining > 0; page += PAGE) {
      pages.push(page);
      remaining -= Math.min(PAGE, remaining);
    }
    let head = 0;
    let previous: number | undefined;
    for (let index = 0; index < pages.length; ) {
      const list = this.alloc(PAGE);
      lists.push(list);
      if (previous === undefined) head = list;
      else this.writeAddress(previous + 511 * 8, list);
      const take = pages.length - index > 512 ? 511 : pages.length - index;
      for (let slot = 0; slot < take; slot++) this.writeAddress(list + slot * 8, pages[index + slot]!);
      index += take;
      previous = list;
    }
    return { flags: 0, prp1: iova, prp2: head, release };
  }

  // ---- internals ---------------------------------------------------------------------------------------------

  private async ringDoorbell(index: number, value: number): Promise<void> {
    const shadow = this.shadow;
    if (shadow && index >= 2) {
      // Linux's nvme_dbbuf_update_and_check_event (I/O queues only): shadow entry first, MMIO only past EventIdx.
      const shadowAddress = shadow.shadowIova + index * 4;
      const old = this.read32(shadowAddress);
      this.write32(shadowAddress, value);
      if (!needEvent(this.read32(shadow.eventIndexIova + index * 4), value, old)) return;
    }
    await this.writeDoorbell(index, value);
  }

  private submissionQueue(qid: number): DriverSubmissionQueue {
    const queue = this.submissionQueues.get(qid);
    if (!queue) throw new Error(`guest driver: submission queue ${qid} does not exist`);
    return queue;
  }

  private completionQueue(qid: number): DriverCompletionQueue {
    const queue = this.completionQueues.get(qid);
    if (!queue) throw new Error(`guest driver: completion queue ${qid} does not exist`);
    return queue;
  }

  private writeAddress(iova: number, value: number): void {
    const bytes = this.bytes(iova, 8);
    new DataView(bytes.buffer, bytes.byteOffset, 8).setBigUint64(0, BigInt(value), true);
  }

  private async adminDataIn(fields: SqeFields, length: number, bufferOffset = 0): Promise<DataResult> {
    if (length === 0) return { completion: await this.submit(0, fields), data: new Uint8Array(0) };
    const buffer = this.alloc(length + bufferOffset);
    const start = buffer + bufferOffset;
    const pointer = this.dataPointer(start, length, 'prp');
    try {
      const completion = await this.submit(0, { ...fields, prp1: pointer.prp1, prp2: pointer.prp2 });
      return { completion, data: this.bytes(start, length).slice() };
    } finally {
      pointer.release();
      this.free(buffer);
    }
  }
}

export interface AdminQueueOptions {
  adminEntries?: number;
  adminSqEntries?: number;
  adminCqEntries?: number;
  cc?: number;
  asq?: number;
  acq?: number;
}

/**
 * A transport straight into an in-process device (e.g. NvmeController): every BAR0 write is followed by
 * processQueues(), as the vfio-user server does after a batch of trapped writes.
 */
export function directTransport(
  device: {
    bar0Read(offset: number, dst: Uint8Array): void;
    bar0Write(offset: number, src: Uint8Array): void;
    processQueues(): void;
  },
  memory: { bytes: Uint8Array; iova: number },
): GuestDriverTransport {
  return {
    memory,
    bar0Read(offset, length) {
      const dst = new Uint8Array(length);
      device.bar0Read(offset, dst);
      return dst;
    },
    bar0Write(offset, bytes) {
      device.bar0Write(offset, bytes);
      device.processQueues();
    },
  };
}

function newSubmissionQueue(qid: number, iova: number, entries: number, cqid: number): DriverSubmissionQueue {
  return { qid, iova, entries, tail: 0, cqid, nextCid: 1 };
}

function newCompletionQueue(
  qid: number,
  iova: number,
  entries: number,
  vector: number,
  interruptsEnabled: boolean,
): DriverCompletionQueue {
  return { qid, iova, entries, head: 0, phase: 1, vector, interruptsEnabled, completed: new Map() };
}

function nextCommandId(queue: DriverSubmissionQueue): number {
  const cid = queue.nextCid;
  queue.nextCid = (queue.nextCid + 1) % 0xffff;
  return cid;
}

export function decodeCompletion(entry: Uint8Array): Completion {
  const view = new DataView(entry.buffer, entry.byteOffset, CQE);
  const dw2 = view.getUint32(8, true);
  const dw3 = view.getUint32(12, true);
  return {
    dw0: view.getUint32(0, true),
    sqhd: dw2 & 0xffff,
    sqid: dw2 >>> 16,
    cid: dw3 & 0xffff,
    phase: (dw3 >>> 16) & 1,
    status: dw3 >>> 17,
  };
}

/** Linux's nvme_dbbuf_need_event: did moving from `old` to `value` pass `eventIndex`? (16-bit arithmetic) */
export function needEvent(eventIndex: number, value: number, old: number): boolean {
  return ((value - eventIndex - 1) & 0xffff) < ((value - old) & 0xffff);
}

function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

