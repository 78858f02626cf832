/**
 * The NVM command set on the I/O queues: Read, Write, Compare, Flush, Write Zeroes, Dataset Management and Verify,
 * run against the namespace the SQE names.
 *
 * Completion is reported through `done` exactly once. A namespace operation that completes synchronously (the memory
 * backend) completes the command before `executeIoCommand` returns, without promises or closures. An asynchronous one
 * pins the guest mappings the data segments live in for as long as the backend may touch them, so a concurrent
 * DMA_UNMAP (GuestMemory.remove) waits for it; the pins are dropped just before `done`. `request.pinned` is non-empty
 * only while such a command is in flight. `request.segments` keeps the last command's views until the next command
 * (emptying a JS array drops its backing store, which the next command would have to reallocate).
 *
 * Decisions the controller's Identify data must agree with:
 * - ONCS: Compare (bit 0), Dataset Management (bit 2), Write Zeroes (bit 3); Verify (bit 7) only range-checks
 *   (no media to scrub: a backend reports errors on the reads themselves). Write Uncorrectable and fused operations
 *   are not supported (Invalid Opcode / Invalid Field).
 * - Flush with NSID FFFFFFFFh flushes every namespace when the context provides `allNamespaces`, else it fails with
 *   Invalid Namespace or Format (report VWC bits 2:1 accordingly).
 * - FUA on Write / Write Zeroes flushes the namespace (when it has a volatile write cache) before completing. With
 *   the write cache disabled (Volatile Write Cache feature, WCE = 0: `ctx.writeCacheEnabled === false`), every Write,
 *   Write Zeroes and DSM deallocation does, because data written must then be durable at completion. DSM counts:
 *   deallocation overwrites the blocks, and old data must not come back after a power loss.
 * - A read-only namespace (`readOnly`) fails Write, Write Zeroes and DSM deallocation with Namespace Is Write
 *   Protected before anything else about them is checked; the backend is never called.
 * - Write Zeroes with DEAC deallocates when the backend really deallocates, else writes zeroes (same result).
 * - SMART counters: Read and Compare count as host reads (and their bytes as data read), Write as host writes; Write
 *   Zeroes, DSM and Verify are not counted. Media errors count failures with a media status (SCT 2) except a
 *   compare mismatch.
 */
import type { DmaMapping, DmaSpace } from '../memory/guest-memory.js';
import { CopyList } from '../memory/copy-list.js';
import { NamespaceError, type ByteRange, type Namespace } from '../namespace/namespace.js';
import { rootLogger } from '../util/log.js';
import { DataRuns, mapDataPointer, mapDataRuns } from './data-pointer.js';
import type { IoContext, IoDone, IoRequest } from './io-types.js';
import type { ScratchBudget } from './scratch.js';
import { IoOpcode, Status, StatusType } from '../spec/nvme.js';

/** NSID that addresses every namespace (broadcast). */
export const BROADCAST_NSID = 0xffffffff;
/** Dataset Management: at most 256 ranges of 16 bytes. */
const DSM_RANGE_BYTES = 16;
const DSM_MAX_RANGES = 256;
/** CDW12 bits of Read/Write/Compare/Write Zeroes. */
const CDW12_FUA = 1 << 30;
const CDW12_DEAC = 1 << 25;
/** CDW11 of Dataset Management: Attribute - Deallocate. */
const DSM_ATTRIBUTE_DEALLOCATE = 1 << 2;
/** Returned by the command starters when the command continues asynchronously. */
const IN_FLIGHT = -1;
const MAX_SAFE_HIGH_DWORD = 0x1fffff;

/**
 * Runs the I/O command in `request.sqe` and reports its status through `done` (possibly before returning). Never
 * throws: invalid commands, guest memory faults, backend failures and unexpected exceptions all become a status.
 * (An exception thrown by `done` itself propagates to the caller when `done` runs synchronously; on the asynchronous
 * path it is logged.)
 */
export function executeIoCommand(ctx: IoContext, request: IoRequest, done: IoDone): void {
  const batch = ctx.batch;
  let queued = 0;
  if (batch !== undefined) {
    // Only Reads and Writes join a batch; anything else sees the namespace as the batch's commands left it.
    const opcode = request.sqe.getUint8(0);
    if (batch.count > 0 && opcode !== IoOpcode.READ && opcode !== IoOpcode.WRITE) runIoBatch(ctx);
    queued = batch.copies.count;
  }
  let status: number;
  try {
    status = startCommand(ctx, request, done);
  } catch (error) {
    // A command that failed half way leaves none of its copies queued.
    batch?.copies.truncate(queued);
    status = failureStatus(ctx, request, error);
  }
  if (status !== IN_FLIGHT) complete(ctx, request, done, status);
  else if (batch !== undefined && batch.count >= IO_BATCH_COMMANDS) runIoBatch(ctx);
}

/**
 * Reads and Writes on a synchronous store (`Namespace.readSync` / `writeSync`) whose data copies wait in `copies`
 * and whose completions wait with them, until `runIoBatch` makes the copies in one native call and completes the
 * commands in order (memory/copy-list.ts says why). Every check of such a command (namespace, range, MDTS, data
 * pointer, guest memory) is made when it is queued; a command that fails a check completes at once, as without a
 * batch. The controller runs the batch at the end of every processing pass, before an admin command, and
 * `executeIoCommand` runs it before any other I/O command and when IO_BATCH_COMMANDS are waiting.
 */
export class IoBatch {
  readonly copies = new CopyList();
  /**
   * Whether the next command may join: set by the command runner before each command, false when the batch is
   * empty and nothing else is waiting in the queue (one copy has nothing to overlap with, so it is made at once).
   */
  joinable = true;
  /** Commands waiting. */
  count = 0;
  readonly requests: Array<IoRequest | undefined> = [];
  readonly dones: Array<IoDone | undefined> = [];
  readonly opcodes: number[] = [];
  readonly bytes: number[] = [];

  add(request: IoRequest, done: IoDone, opcode: number, bytes: number): void {
    const index = this.count++;
    this.requests[index] = request;
    this.dones[index] = done;
    this.opcodes[index] = opcode;
    this.bytes[index] = bytes;
  }
}

/**
 * Commands a batch holds at most. Its commands complete when it runs, so a larger batch delays the first ones'
 * completions (and the host's next submissions) by the work of the rest; a few suffice to keep the next sources
 * being fetched while one is copied.
 */
export const IO_BATCH_COMMANDS = 16;

/**
 * Makes the copies of the commands waiting in `ctx.batch` and completes them, in the order they were queued. If the
 * copy call fails (an array detached under a queued run: a bug, since guest memory is unmapped only between passes),
 * they all fail with the error logged, and nothing was copied.
 */
export function runIoBatch(ctx: IoContext): void {
  const batch = ctx.batch;
  if (batch === undefined || batch.count === 0) return;
  let failure: unknown;
  let failed = false;
  try {
    batch.copies.run();
  } catch (error) {
    failure = error;
    failed = true;
  }
  // `done` never starts a command, so nothing joins the batch while it completes.
  const count = batch.count;
  batch.count = 0;
  for (let index = 0; index < count; index++) {
    const request = batch.requests[index]!;
    const done = batch.dones[index]!;
    batch.requests[index] = undefined;
    batch.dones[index] = undefined;
    const status = failed
      ? failureStatus(ctx, request, failure)
      : finishedStatus(ctx, request, batch.opcodes[index]!, batch.bytes[index]!, undefined);
    try {
      complete(ctx, request, done, status);
    } catch (error) {
      // The commands after it must still complete; nobody up the stack knows of them.
      (ctx.logger ?? rootLogger).error('I/O completion callback threw', { cid: request.sqe.getUint16(2, true), error });
    }
  }
}

function startCommand(ctx: IoContext, request: IoRequest, done: IoDone): number {
  const sqe = request.sqe;
  request.result = 0;
  const opcode = sqe.getUint8(0);
  switch (opcode) {
    case IoOpcode.READ:
    case IoOpcode.WRITE:
    case IoOpcode.COMPARE:
    case IoOpcode.FLUSH:
    case IoOpcode.WRITE_ZEROES:
    case IoOpcode.DATASET_MANAGEMENT:
    case IoOpcode.VERIFY:
      break;
    default:
      return Status.INVALID_OPCODE;
  }
  // FUSE (CDW0 bits 9:8): fused Compare-and-Write is not supported.
  if ((sqe.getUint8(1) & 0x3) !== 0) return Status.INVALID_FIELD;
  const nsid = sqe.getUint32(4, true);
  if (opcode === IoOpcode.FLUSH && nsid === BROADCAST_NSID) return startBroadcastFlush(ctx, request, done);
  const namespace = ctx.namespace(nsid);
  if (namespace === undefined) return Status.INVALID_NAMESPACE_OR_FORMAT;

  switch (opcode) {
    case IoOpcode.FLUSH:
      return settle(ctx, request, done, namespace, namespace.flush(), opcode, 0, false, undefined, false);
    case IoOpcode.DATASET_MANAGEMENT:
      return startDatasetManagement(ctx, request, done, namespace);
    default:
      return startBlockCommand(ctx, request, done, namespace, opcode);
  }
}

/** Read, Write, Compare, Write Zeroes and Verify: commands addressing SLBA (CDW10-11) and NLB (CDW12 15:0). */
function startBlockCommand(
  ctx: IoContext,
  request: IoRequest,
  done: IoDone,
  namespace: Namespace,
  opcode: number,
): number {
  const sqe = request.sqe;
  if (namespace.readOnly === true && (opcode === IoOpcode.WRITE || opcode === IoOpcode.WRITE_ZEROES)) {
    return Status.NAMESPACE_WRITE_PROTECTED;
  }
  const blocks = (sqe.getUint32(48, true) & 0xffff) + 1;
  const slba = startingLba(sqe.getUint32(44, true), sqe.getUint32(40, true));
  if (!rangeFits(slba, blocks, namespace)) return Status.LBA_OUT_OF_RANGE;
  const offset = slba * namespace.blockSize;
  const bytes = blocks * namespace.blockSize;
  const cdw12 = sqe.getUint32(48, true);
  const flushAfter = namespace.volatileWriteCache && ((cdw12 & CDW12_FUA) !== 0 || ctx.writeCacheEnabled === false);

  if (opcode === IoOpcode.VERIFY) return Status.SUCCESS;
  if (opcode === IoOpcode.WRITE_ZEROES) {
    // No data transfer, so MDTS does not apply.
    const pending =
      (cdw12 & CDW12_DEAC) !== 0 && namespace.supportsDeallocate
        ? namespace.deallocate([{ offset, length: bytes }])
        : namespace.writeZeroes(offset, bytes);
    return settle(ctx, request, done, namespace, pending, opcode, 0, flushAfter, undefined, false);
  }

  if (exceedsTransferLimit(ctx.maxTransferBytes, namespace, bytes)) return Status.INVALID_FIELD;
  // 'write' = the device writes guest memory (a Read command); Write and Compare read it.
  const access = opcode === IoOpcode.READ ? 'write' : 'read';
  if (opcode === IoOpcode.READ && namespace.readSync !== undefined) {
    // A synchronous store: the data moves run by run, with no view of guest memory per command.
    const mapped = mapDataRuns(ctx.dma, sqe, bytes, access, dataRuns);
    if (mapped !== Status.SUCCESS) return mapped;
    const batch = ctx.batch?.joinable === true ? ctx.batch : undefined;
    const copies = batch?.copies;
    let position = offset;
    for (let index = 0; index < dataRuns.count; index++) {
      const length = dataRuns.lengths[index]!;
      namespace.readSync(position, dataRuns.bytes[index]!, dataRuns.at[index]!, length, copies);
      position += length;
    }
    if (batch === undefined) return finishedStatus(ctx, request, opcode, bytes, undefined);
    batch.add(request, done, opcode, bytes);
    return IN_FLIGHT;
  }
  if (opcode === IoOpcode.WRITE && namespace.writeSync !== undefined) {
    const mapped = mapDataRuns(ctx.dma, sqe, bytes, access, dataRuns);
    if (mapped !== Status.SUCCESS) return mapped;
    // A Write that flushes after it moves its data now, after the batch's.
    const batch = flushAfter || ctx.batch?.joinable !== true ? undefined : ctx.batch;
    if (flushAfter) runIoBatch(ctx);
    const copies = batch?.copies;
    let position = offset;
    for (let index = 0; index < dataRuns.count; index++) {
      const length = dataRuns.lengths[index]!;
      namespace.writeSync(position, dataRuns.bytes[index]!, dataRuns.at[index]!, length, copies);
      position += length;
    }
    if (batch !== undefined) {
      batch.add(request, done, opcode, bytes);
      return IN_FLIGHT;
    }
    // The data is in the store: a flush that goes asynchronous holds no guest memory.
    return settle(ctx, request, done, namespace, undefined, opcode, bytes, flushAfter, undefined, false);
  }
  const mapped = mapDataPointer(ctx.dma, sqe, bytes, access, request.segments, true, dataMappings);
  if (mapped !== Status.SUCCESS) return mapped;

  if (opcode === IoOpcode.READ) {
    const pending = namespace.read(offset, request.segments);
    return settle(ctx, request, done, namespace, pending, opcode, bytes, false, undefined, true);
  }
  if (opcode === IoOpcode.WRITE) {
    const pending = namespace.write(offset, request.segments);
    return settle(ctx, request, done, namespace, pending, opcode, bytes, flushAfter, undefined, true);
  }
  return startCompare(ctx, request, done, namespace, offset, bytes);
}

/**
 * Compare needs the stored data next to the guest's: one temporary buffer per Compare (not a hot path), taken from
 * the controller's scratch budget. When the budget is spent the command waits for it (asynchronously, its guest
 * memory pinned as for any asynchronous command) and is never failed for it.
 */
function startCompare(
  ctx: IoContext,
  request: IoRequest,
  done: IoDone,
  namespace: Namespace,
  offset: number,
  bytes: number,
): number {
  const budget = ctx.scratch;
  if (budget === undefined || budget.tryTake(bytes)) {
    const stored = new Uint8Array(bytes);
    let status: number;
    try {
      const pending = namespace.read(offset, [stored]);
      status = settle(ctx, request, done, namespace, pending, IoOpcode.COMPARE, bytes, false, stored, true);
    } catch (error) {
      budget?.release(bytes);
      throw error;
    }
    if (budget !== undefined) {
      if (status === IN_FLIGHT) completionOf(request).holdScratch(budget, bytes);
      else budget.release(bytes);
    }
    return status;
  }
  const completion = completionOf(request);
  const pending = budget.wait(bytes).then(() => {
    if (completion.abandoned) {
      budget.release(bytes);
      throw new NamespaceError('internal', 'abandoned while waiting for scratch memory');
    }
    completion.holdScratch(budget, bytes);
    const stored = new Uint8Array(bytes);
    completion.setStored(stored);
    return namespace.read(offset, [stored]);
  });
  return goAsync(ctx, request, done, namespace, pending, IoOpcode.COMPARE, bytes, false, undefined, true);
}

function startDatasetManagement(ctx: IoContext, request: IoRequest, done: IoDone, namespace: Namespace): number {
  const sqe = request.sqe;
  // Integral Dataset for Read/Write are hints we may ignore; only Deallocate changes anything.
  if ((sqe.getUint32(44, true) & DSM_ATTRIBUTE_DEALLOCATE) === 0) return Status.SUCCESS;
  if (namespace.readOnly === true) return Status.NAMESPACE_WRITE_PROTECTED;
  const rangeCount = (sqe.getUint32(40, true) & 0xff) + 1;
  const listBytes = rangeCount * DSM_RANGE_BYTES;
  const mapped = mapDataPointer(ctx.dma, sqe, listBytes, 'read', request.segments, true);
  if (mapped !== Status.SUCCESS) return mapped;
  // Copy the range list out of guest memory first, so the guest cannot change it while we validate and use it.
  let copied = 0;
  for (const segment of request.segments) {
    dsmList.set(segment, copied);
    copied += segment.length;
  }

  const ranges: ByteRange[] = [];
  for (let index = 0; index < rangeCount; index++) {
    const base = index * DSM_RANGE_BYTES;
    const blocks = dsmView.getUint32(base + 4, true);
    if (blocks === 0) continue;
    const slba = startingLba(dsmView.getUint32(base + 12, true), dsmView.getUint32(base + 8, true));
    if (!rangeFits(slba, blocks, namespace)) return Status.LBA_OUT_OF_RANGE;
    ranges.push({ offset: slba * namespace.blockSize, length: blocks * namespace.blockSize });
  }
  if (ranges.length === 0) return Status.SUCCESS;
  const pending = namespace.deallocate(ranges);
  const flushAfter = namespace.volatileWriteCache && ctx.writeCacheEnabled === false;
  return settle(ctx, request, done, namespace, pending, IoOpcode.DATASET_MANAGEMENT, 0, flushAfter, undefined, false);
}

/** The DSM range list, copied out of guest memory; used synchronously only. */
const dsmList = new Uint8Array(DSM_MAX_RANGES * DSM_RANGE_BYTES);
const dsmView = new DataView(dsmList.buffer);

function startBroadcastFlush(ctx: IoContext, request: IoRequest, done: IoDone): number {
  const namespaces = ctx.allNamespaces?.();
  if (namespaces === undefined) return Status.INVALID_NAMESPACE_OR_FORMAT;
  let pending: Promise<void>[] | undefined;
  for (const namespace of namespaces) {
    // Every flush is started and awaited even if one fails, so none is left running unobserved.
    let flushing: Promise<void> | void;
    try {
      flushing = namespace.flush();
    } catch (error) {
      flushing = Promise.reject(error);
    }
    if (flushing !== undefined) (pending ??= []).push(flushing);
  }
  if (pending === undefined) return Status.SUCCESS;
  return goAsync(ctx, request, done, undefined, Promise.all(pending), IoOpcode.FLUSH, 0, false, undefined, false);
}

/**
 * Finishes a command whose backend operation returned `pending`: synchronously when it is undefined (then an optional
 * flush (FUA or write cache disabled) and, for Compare, the comparison), else asynchronously.
 */
function settle(
  ctx: IoContext,
  request: IoRequest,
  done: IoDone,
  namespace: Namespace,
  pending: Promise<unknown> | void,
  opcode: number,
  bytes: number,
  flushAfter: boolean,
  stored: Uint8Array | undefined,
  usesGuestMemory: boolean,
): number {
  if (pending !== undefined) {
    return goAsync(ctx, request, done, namespace, pending, opcode, bytes, flushAfter, stored, usesGuestMemory);
  }
  if (flushAfter) {
    const flushing = namespace.flush();
    if (flushing !== undefined) {
      return goAsync(ctx, request, done, namespace, flushing, opcode, bytes, false, stored, usesGuestMemory);
    }
  }
  return finishedStatus(ctx, request, opcode, bytes, stored);
}

/** The status of a command whose backend work succeeded; counts it. */
function finishedStatus(
  ctx: IoContext,
  request: IoRequest,
  opcode: number,
  bytes: number,
  stored: Uint8Array | undefined,
): number {
  const counters = ctx.counters;
  if (opcode === IoOpcode.READ || opcode === IoOpcode.COMPARE) {
    counters.hostReadCommands++;
    counters.bytesRead += bytes;
    const namespace = ctx.namespaceCounters?.[request.sqe.getUint32(4, true) - 1];
    if (namespace !== undefined) {
      namespace.readCommands++;
      namespace.bytesRead += bytes;
    }
  } else if (opcode === IoOpcode.WRITE) {
    counters.hostWriteCommands++;
    counters.bytesWritten += bytes;
    const namespace = ctx.namespaceCounters?.[request.sqe.getUint32(4, true) - 1];
    if (namespace !== undefined) {
      namespace.writeCommands++;
      namespace.bytesWritten += bytes;
    }
  }
  if (stored !== undefined && !equalsSegments(stored, request.segments)) return Status.COMPARE_FAILURE;
  return Status.SUCCESS;
}

function equalsSegments(stored: Uint8Array, segments: readonly Uint8Array[]): boolean {
  let position = 0;
  for (const segment of segments) {
    if (Buffer.compare(stored.subarray(position, position + segment.length), segment) !== 0) return false;
    position += segment.length;
  }
  return position === stored.length;
}

function exceedsTransferLimit(maxTransferBytes: number, namespace: NamespaceShape, bytes: number): boolean {
  return (maxTransferBytes > 0 && bytes > maxTransferBytes) || (namespace.maxTransferBytes > 0 && bytes > namespace.maxTransferBytes);
}

/** What the range and transfer checks read of a namespace. */
type NamespaceShape = Pick<Namespace, 'blockSize' | 'blockCount' | 'maxTransferBytes'>;

/**
 * A range's first block from its two SLBA dwords, or -1 past what a double holds exactly (past any namespace then:
 * the check must not round it down into one).
 */
function startingLba(high: number, low: number): number {
  return high > MAX_SAFE_HIGH_DWORD ? -1 : high * 0x1_0000_0000 + low;
}

/** Whether blocks [slba, slba + blocks) lie in the namespace (slba -1: startingLba's "past any namespace"). */
function rangeFits(slba: number, blocks: number, namespace: NamespaceShape): boolean {
  return slba >= 0 && slba + blocks <= namespace.blockCount;
}

/**
 * The data bytes a Read, Write or Compare moves, for the rate limits' bandwidth buckets, which charge a command before
 * it runs: none for other commands, for a namespace that does not exist, and for one that will fail the range or
 * transfer-size check startBlockCommand makes (the same helpers), so a guest's NLB of 0xffff buys its queues no stall.
 */
export function dataBytes(sqe: DataView, namespace: NamespaceShape | undefined, maxTransferBytes: number): number {
  const opcode = sqe.getUint8(0);
  if (namespace === undefined || (opcode !== IoOpcode.READ && opcode !== IoOpcode.WRITE && opcode !== IoOpcode.COMPARE)) return 0;
  const blocks = (sqe.getUint32(48, true) & 0xffff) + 1;
  if (!rangeFits(startingLba(sqe.getUint32(44, true), sqe.getUint32(40, true)), blocks, namespace)) return 0;
  const bytes = blocks * namespace.blockSize;
  return exceedsTransferLimit(maxTransferBytes, namespace, bytes) ? 0 : bytes;
}

/**
 * The mappings behind the current command's data segments. Filled by `mapDataPointer` for every data command, but
 * copied into `request.pinned` (and pinned) only when the command goes asynchronous, so the synchronous fast path
 * neither pins nor touches `request.pinned`. Safe to share: it is consumed before `executeIoCommand` returns.
 */
const dataMappings: DmaMapping[] = [];

/** The data runs of the current Read or Write on a synchronous store (mapDataRuns); used before executeIoCommand returns. */
const dataRuns = new DataRuns();

/**
 * Pins the guest mappings the command's data lives in (when `usesGuestMemory`) into `request.pinned`, and arranges
 * for the command to complete when `pending` settles.
 */
function goAsync(
  ctx: IoContext,
  request: IoRequest,
  done: IoDone,
  namespace: Namespace | undefined,
  pending: Promise<unknown>,
  opcode: number,
  bytes: number,
  flushAfter: boolean,
  stored: Uint8Array | undefined,
  usesGuestMemory: boolean,
): number {
  const completion = completionOf(request);
  completion.arm(ctx, done, namespace, opcode, bytes, flushAfter, stored, usesGuestMemory);
  // Nothing else runs on this thread until we return, so pinning after the backend started its work is still early
  // enough: no unmap can have happened in between.
  const pinned = request.pinned;
  const count = usesGuestMemory ? dataMappings.length : 0;
  const dma: DmaSpace = ctx.dma;
  for (let index = 0; index < count; index++) {
    const mapping = dataMappings[index]!;
    pinned[index] = mapping;
    dma.pin(mapping);
  }
  if (pinned.length !== count) pinned.length = count;
  pending.then(completion.onFulfilled, completion.onRejected);
  return IN_FLIGHT;
}

/**
 * The continuation of one asynchronous command. One per request object (requests are pooled by the controller and
 * carry at most one command at a time), with its callbacks bound once.
 */
class AsyncCompletion {
  private ctx: IoContext | undefined;
  private done: IoDone | undefined;
  private namespace: Namespace | undefined;
  private opcode = 0;
  private bytes = 0;
  private flushAfter = false;
  private stored: Uint8Array | undefined;
  /** Scratch memory the command holds until it completes (see scratch.ts). */
  private scratchBudget: ScratchBudget | undefined;
  private scratchBytes = 0;
  /** Set for good when the command was given up; the request then has a new AsyncCompletion (see abandon). */
  abandoned = false;
  /** Armed and not finished. */
  private armed = false;
  private usesGuestMemory = false;

  constructor(private readonly request: IoRequest) {}

  holdScratch(budget: ScratchBudget, bytes: number): void {
    this.scratchBudget = budget;
    this.scratchBytes = bytes;
  }

  /** Compare's stored data, once a command that waited for scratch memory has it. */
  setStored(stored: Uint8Array): void {
    this.stored = stored;
  }

  private releaseScratch(): void {
    const budget = this.scratchBudget;
    if (budget === undefined) return;
    this.scratchBudget = undefined;
    budget.release(this.scratchBytes);
    this.scratchBytes = 0;
  }

  arm(
    ctx: IoContext,
    done: IoDone,
    namespace: Namespace | undefined,
    opcode: number,
    bytes: number,
    flushAfter: boolean,
    stored: Uint8Array | undefined,
    usesGuestMemory: boolean,
  ): void {
    this.armed = true;
    this.usesGuestMemory = usesGuestMemory;
    this.ctx = ctx;
    this.done = done;
    this.namespace = namespace;
    this.opcode = opcode;
    this.bytes = bytes;
    this.flushAfter = flushAfter;
    this.stored = stored;
  }

  /**
   * Gives the command up before its backend operation has settled: completes it now with `status`, unpins its guest
   * memory and ignores the operation's late result. Only when nothing can touch the command's guest memory any more:
   * the backend's operation does not use it (Compare reads into scratch memory; Flush, Dataset Management and Write
   * Zeroes carry no data), or the backend has given up the operation itself (Namespace.abandon). False otherwise.
   */
  abandon(status: number): boolean {
    if (!this.armed || this.abandoned) return false;
    const request = this.request;
    if (this.usesGuestMemory && this.opcode !== IoOpcode.COMPARE) {
      const namespace = this.namespace;
      if (namespace?.abandon === undefined || !namespace.abandon(request.segments)) return false;
    }
    this.abandoned = true;
    // The request's next command gets a fresh continuation; this one only waits for the late settlement.
    asyncCompletions.set(request, new AsyncCompletion(request));
    this.finish(status);
    return true;
  }

  readonly onFulfilled = (): void => {
    if (this.abandoned) return this.settledLate();
    const ctx = this.ctx!;
    let status: number;
    try {
      if (this.flushAfter) {
        this.flushAfter = false;
        const flushing = this.namespace!.flush();
        if (flushing !== undefined) {
          flushing.then(this.onFulfilled, this.onRejected);
          return;
        }
      }
      status = finishedStatus(ctx, this.request, this.opcode, this.bytes, this.stored);
    } catch (error) {
      status = failureStatus(ctx, this.request, error);
    }
    this.finish(status);
  };

  readonly onRejected = (error: unknown): void => {
    if (this.abandoned) return this.settledLate();
    this.finish(failureStatus(this.ctx!, this.request, error));
  };

  /** The backend operation of an abandoned command settled: only its scratch memory is left to give back. */
  private settledLate(): void {
    this.releaseScratch();
    this.stored = undefined;
  }

  private finish(status: number): void {
    this.armed = false;
    const ctx = this.ctx!;
    const done = this.done!;
    const request = this.request;
    this.ctx = undefined;
    this.done = undefined;
    this.namespace = undefined;
    // An abandoned Compare's backend may still be reading into its scratch buffer: that is given back when it settles.
    if (!this.abandoned) {
      this.stored = undefined;
      this.releaseScratch();
    }
    const pinned = request.pinned;
    for (let index = 0; index < pinned.length; index++) ctx.dma.unpin(pinned[index]!);
    if (pinned.length !== 0) pinned.length = 0;
    try {
      complete(ctx, request, done, status);
    } catch (error) {
      // There is no caller to hand this to: an exception from `done` here would become an unhandled rejection.
      (ctx.logger ?? rootLogger).error('I/O completion callback threw', { cid: request.sqe.getUint16(2, true), error });
    }
  }
}

const asyncCompletions = new WeakMap<IoRequest, AsyncCompletion>();

/**
 * Gives up the asynchronous command in flight on `request` (see AsyncCompletion.abandon): it completes through its
 * `done` with `status` before this returns. False when there is none, or its backend cannot let go of its guest memory.
 */
export function abandonIoCommand(request: IoRequest, status: number): boolean {
  return asyncCompletions.get(request)?.abandon(status) ?? false;
}

/** The request's continuation object (made on its first asynchronous command). */
function completionOf(request: IoRequest): AsyncCompletion {
  let completion = asyncCompletions.get(request);
  if (completion === undefined) {
    completion = new AsyncCompletion(request);
    asyncCompletions.set(request, completion);
  }
  return completion;
}

function complete(ctx: IoContext, request: IoRequest, done: IoDone, status: number): void {
  if (((status >>> 8) & 0x7) === StatusType.MEDIA && status !== Status.COMPARE_FAILURE) ctx.counters.mediaErrors++;
  done(request, status);
}

/** The NVMe status for a failure, logged with the command's context. */
function failureStatus(ctx: IoContext, request: IoRequest, error: unknown): number {
  let status: number;
  if (error instanceof NamespaceError) {
    const reported = error.nvmeStatus;
    status =
      reported !== undefined && Number.isInteger(reported) && reported > 0 && reported <= 0x7fff
        ? reported
        : statusForKind(error.kind);
  } else {
    status = Status.INTERNAL_ERROR;
  }
  const logger = ctx.logger;
  if (logger !== undefined) {
    const sqe = request.sqe;
    const fields = {
      opcode: sqe.getUint8(0),
      cid: sqe.getUint16(2, true),
      nsid: sqe.getUint32(4, true),
      slba: sqe.getUint32(44, true) * 0x1_0000_0000 + sqe.getUint32(40, true),
      status: '0x' + status.toString(16),
      error,
    };
    if (error instanceof NamespaceError) logger.warn('I/O command failed in the namespace backend', fields);
    else logger.error('I/O command failed unexpectedly', fields);
  }
  return status;
}

/** The one place a namespace backend's failure becomes an NVMe status. */
function statusForKind(kind: NamespaceError['kind']): number {
  switch (kind) {
    case 'read':
      return Status.UNRECOVERED_READ_ERROR;
    case 'write':
      return Status.WRITE_FAULT;
    case 'read-only':
      return Status.NAMESPACE_WRITE_PROTECTED;
    case 'unavailable':
      return Status.INTERNAL_PATH_ERROR;
    case 'capacity':
      return Status.CAPACITY_EXCEEDED;
    case 'unsupported':
      return Status.INVALID_OPCODE;
    default:
      return Status.INTERNAL_ERROR;
  }
}
