/**
 * Resolves a command's data pointer (PRP1/PRP2 or SGL1, SQE bytes 24..39) into views of guest memory.
 *
 * Everything here is guest-controlled: every address is looked up through `DmaSpace` (bounds and permission checked),
 * every list is walked with a bound on the work it can cause, and each failure maps to the NVMe status the spec names.
 *
 * Policy decisions (the controller's Identify data must agree with them):
 * - Memory page size is 4 KiB (CC.MPS = 0 is the only value the controller accepts).
 * - PRP1 may carry a page offset that must be dword aligned; PRP2 used as the second data page, and every PRP list
 *   entry, must have a zero offset; a PRP list pointer may have a (qword aligned) offset; a chained list page pointer
 *   (the last entry of a full list page) must be page aligned.
 * - SGLs: Data Block, Bit Bucket, Segment and Last Segment descriptors with sub type 0 (address), no alignment
 *   requirement on data blocks (SGLS bits 1:0 = 01b). Any other type or sub type is SGL Descriptor Type Invalid. An
 *   SGL describing more data than the command transfers is accepted and the excess ignored (SGLS bit 18 must be
 *   advertised); one describing less fails with Data SGL Length Invalid.
 * - Bit Bucket descriptors: in a controller-to-host transfer (a Read; `access` 'write') the described bytes are
 *   dropped: they are represented by a segment over a shared scratch buffer that never reaches guest memory, so the
 *   backend reads them like any other bytes and the on-media offsets of the following data stay right. In a
 *   host-to-controller transfer they describe no data (the spec treats their length as zero), so they are skipped.
 * - Physically contiguous pieces that lie in one mapping are merged into one segment (fewer iovecs per readv).
 */
import { DmaError, type DmaAccess, type DmaMapping, type DmaSpace } from '../memory/guest-memory.js';
import { PAGE_SIZE, Status } from '../spec/nvme.js';

/** The largest transfer a data pointer may describe; callers limit commands far below this (MDTS). */
export const MAX_DATA_POINTER_BYTES = 2 ** 32;
/** Bounds the SGL walk: descriptors read (data, bit bucket and segment pointers alike) ... */
export const MAX_SGL_DESCRIPTORS = 4096;
/** ... and segments followed, so a segment that points at itself ends with an error. */
export const MAX_SGL_SEGMENTS = 256;
/** Size of the buffer Bit Bucket bytes are read into and dropped. */
export const BIT_BUCKET_SCRATCH_BYTES = 64 * 1024;

const SGL_DATA_BLOCK = 0x0;
const SGL_BIT_BUCKET = 0x1;
const SGL_SEGMENT = 0x2;
const SGL_LAST_SEGMENT = 0x3;
const SGL_DESCRIPTOR_BYTES = 16;
/** The offset bits of an address within a memory page. */
const PAGE_MASK = PAGE_SIZE - 1;
/** Highest value of the upper dword of a 64-bit address that still gives an exact JavaScript number (< 2^53). */
const MAX_SAFE_HIGH_DWORD = 0x1fffff;

/**
 * Resolves the data pointer of `sqe` for a transfer of `length` bytes into guest-memory views appended to `segments`
 * (cleared first). `access` is the device's direction: 'write' when the command writes guest memory (Read), 'read'
 * when it reads it (Write, Compare, Dataset Management). With `mappings`, the mapping behind every guest segment is
 * appended there too (cleared first, consecutive duplicates dropped) so asynchronous I/O can pin them. Returns a
 * Status (0 = success); on failure `segments` and `mappings` are left empty.
 *
 * (The arrays are overwritten by index and truncated rather than cleared first; to the caller that is the same.)
 */
export function mapDataPointer(
  dma: DmaSpace,
  sqe: DataView,
  length: number,
  access: DmaAccess,
  segments: Uint8Array[],
  allowSgl: boolean,
  mappings?: DmaMapping[],
): number {
  let status: number;
  // PSDT, CDW0 bits 15:14: 00b PRP, 01b/10b SGL (10b only changes what MPTR means; we have no metadata), 11b reserved.
  const psdt = sqe.getUint8(1) >>> 6;
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_DATA_POINTER_BYTES) {
    status = Status.INVALID_FIELD;
  } else if (psdt === 3 || (psdt !== 0 && !allowSgl)) {
    status = Status.INVALID_FIELD;
  } else if (length === 0) {
    status = Status.SUCCESS;
  } else {
    builder.begin(dma, access, segments, mappings);
    try {
      status = psdt === 0 ? mapPrps(builder, sqe, length) : mapSgl(builder, sqe, length);
      if (status === Status.SUCCESS) builder.flushRun();
    } catch (error) {
      // A DmaError is the guest pointing at memory it did not give us; anything else would be our bug, but hostile
      // input must never crash the controller, so it still becomes a status.
      status = error instanceof DmaError ? Status.DATA_TRANSFER_ERROR : Status.INTERNAL_ERROR;
    }
    if (status === Status.SUCCESS) {
      builder.end(segments, mappings);
      return status;
    }
    builder.end(undefined, undefined);
  }
  // Failure or nothing to map: leave both empty.
  if (segments.length !== 0) segments.length = 0;
  if (mappings !== undefined && mappings.length !== 0) mappings.length = 0;
  return status;
}

/**
 * The data of one command as runs of guest memory, for a synchronous copy (`mapDataRuns`): run i is `lengths[i]`
 * bytes of `bytes[i]` (a mapping window's own array, or the Bit Bucket scratch) from index `at[i]`. No view is built
 * per run. Reused from command to command; entries past `count` are stale.
 */
export class DataRuns {
  count = 0;
  readonly bytes: Uint8Array[] = [];
  readonly at: number[] = [];
  readonly lengths: number[] = [];
}

/**
 * Like `mapDataPointer`, but resolves the data pointer into `runs` rather than into views: for a caller that copies
 * the data synchronously, before anything else runs on this thread (a mapping used here may be unmapped right
 * after). The same checks, in the same order, with the same statuses. `runs.count` is 0 on failure.
 */
export function mapDataRuns(dma: DmaSpace, sqe: DataView, length: number, access: DmaAccess, runs: DataRuns): number {
  let status: number;
  const psdt = sqe.getUint8(1) >>> 6;
  runs.count = 0;
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_DATA_POINTER_BYTES || psdt === 3) {
    status = Status.INVALID_FIELD;
  } else if (length === 0) {
    status = Status.SUCCESS;
  } else {
    builder.beginRuns(dma, access, runs);
    try {
      status = psdt === 0 ? mapPrps(builder, sqe, length) : mapSgl(builder, sqe, length);
      if (status === Status.SUCCESS) builder.flushRun();
    } catch (error) {
      status = error instanceof DmaError ? Status.DATA_TRANSFER_ERROR : Status.INTERNAL_ERROR;
    }
    builder.end(undefined, undefined);
    if (status !== Status.SUCCESS) runs.count = 0;
  }
  return status;
}

/** PRP1 (SQE bytes 24..31) and PRP2 (32..39), NVMe Base Specification "Physical Region Page Entry and List". */
// Offsets within a page and alignment are taken from an address's low dword with bit operations: the addresses are
// doubles above 2^31, and `%` on a double is a call into the runtime (fmod), several per command.
function mapPrps(out: SegmentBuilder, sqe: DataView, length: number): number {
  const prp1 = sqeAddress(sqe, 24);
  if (prp1 < 0) return Status.DATA_TRANSFER_ERROR;
  const prp1Offset = sqe.getUint32(24, true) & PAGE_MASK;
  if ((prp1Offset & 3) !== 0) return Status.PRP_OFFSET_INVALID;
  const first = Math.min(length, PAGE_SIZE - prp1Offset);
  out.addGuest(prp1, first);
  let remaining = length - first;
  if (remaining === 0) return Status.SUCCESS;

  const prp2 = sqeAddress(sqe, 32);
  if (prp2 < 0) return Status.DATA_TRANSFER_ERROR;
  const prp2Offset = sqe.getUint32(32, true) & PAGE_MASK;
  if (remaining <= PAGE_SIZE) {
    // PRP2 is the second (and last) data page.
    if (prp2Offset !== 0) return Status.PRP_OFFSET_INVALID;
    out.addGuest(prp2, remaining);
    return Status.SUCCESS;
  }

  // PRP2 points at a PRP list; entries are 8 bytes, so the pointer must be qword aligned.
  if ((prp2Offset & 7) !== 0) return Status.PRP_OFFSET_INVALID;
  let listAddress = prp2;
  let listOffset = prp2Offset;
  while (remaining > 0) {
    const slots = (PAGE_SIZE - listOffset) / 8;
    const pagesNeeded = Math.ceil(remaining / PAGE_SIZE);
    // When more pages remain than the list page has slots, its last slot chains to the next list page.
    const chained = pagesNeeded > slots;
    const entries = chained ? slots : pagesNeeded;
    const list = out.dma.view(listAddress, entries * 8, 'read');
    const dataEntries = chained ? entries - 1 : entries;
    for (let index = 0; index < dataEntries; index++) {
      const page = bytesAddress(list, index * 8);
      if (page < 0) return Status.DATA_TRANSFER_ERROR;
      if ((bytesUint32(list, index * 8) & PAGE_MASK) !== 0) return Status.PRP_OFFSET_INVALID;
      const chunk = Math.min(PAGE_SIZE, remaining);
      out.addGuest(page, chunk);
      remaining -= chunk;
    }
    if (chained) {
      const next = bytesAddress(list, dataEntries * 8);
      if (next < 0) return Status.DATA_TRANSFER_ERROR;
      if ((bytesUint32(list, dataEntries * 8) & PAGE_MASK) !== 0) return Status.PRP_OFFSET_INVALID;
      listAddress = next;
      listOffset = 0;
    }
  }
  return Status.SUCCESS;
}

/**
 * SGL1 (SQE bytes 24..39) and the segments it leads to, NVMe Base Specification "Scatter Gather List". The SQE's
 * descriptor is treated as a list of one; a Segment or Last Segment descriptor may only be the last entry of its list,
 * and the list a Last Segment descriptor points at may not contain another segment descriptor.
 */
function mapSgl(out: SegmentBuilder, sqe: DataView, length: number): number {
  let remaining = length;
  let descriptorsRead = 0;
  let segmentsFollowed = 0;
  // The list being walked (undefined while on the SQE's descriptor), the next index in it, and its kind.
  let list: Uint8Array | undefined;
  let listCount = 0;
  let next = 0;
  let inLastSegment = false;

  let identifier = sqe.getUint8(39);
  let address = sqeAddress(sqe, 24);
  let descriptorLength = sqe.getUint32(32, true);
  for (;;) {
    if (++descriptorsRead > MAX_SGL_DESCRIPTORS) return Status.INVALID_SGL_DESCRIPTOR_COUNT;
    const type = identifier >>> 4;
    if (type > SGL_LAST_SEGMENT) return Status.SGL_DESCRIPTOR_TYPE_INVALID;
    // Sub type 0 = address; 1 (offset) and the transport-specific ones only exist on fabrics. The spec processes a
    // reserved or unsupported sub type "as having an SGL Descriptor Type error" (Base spec, Generic SGL Descriptor).
    if ((identifier & 0xf) !== 0) return Status.SGL_DESCRIPTOR_TYPE_INVALID;

    if (type === SGL_SEGMENT || type === SGL_LAST_SEGMENT) {
      if (inLastSegment || (list !== undefined && next !== listCount)) return Status.INVALID_SGL_SEGMENT_DESCRIPTOR;
      if (descriptorLength === 0 || descriptorLength % SGL_DESCRIPTOR_BYTES !== 0) {
        return Status.INVALID_SGL_SEGMENT_DESCRIPTOR;
      }
      if (++segmentsFollowed > MAX_SGL_SEGMENTS) return Status.INVALID_SGL_DESCRIPTOR_COUNT;
      if (address < 0) return Status.DATA_TRANSFER_ERROR;
      list = out.dma.view(address, descriptorLength, 'read');
      listCount = descriptorLength / SGL_DESCRIPTOR_BYTES;
      next = 0;
      inLastSegment = type === SGL_LAST_SEGMENT;
    } else if (type === SGL_DATA_BLOCK) {
      const take = Math.min(descriptorLength, remaining);
      if (take > 0) {
        if (address < 0) return Status.DATA_TRANSFER_ERROR;
        out.addGuest(address, take);
        remaining -= take;
      }
    } else if (type === SGL_BIT_BUCKET) {
      if (out.access === 'write') {
        const take = Math.min(descriptorLength, remaining);
        out.addScratch(take);
        remaining -= take;
      }
    }

    // Anything the SGL describes beyond `length` is ignored (see the file comment).
    if (remaining === 0) return Status.SUCCESS;
    if (list === undefined || next === listCount) return Status.DATA_SGL_LENGTH_INVALID;
    const offset = next * SGL_DESCRIPTOR_BYTES;
    next++;
    identifier = list[offset + 15]!;
    address = bytesAddress(list, offset);
    descriptorLength = bytesUint32(list, offset + 8);
  }
}

/**
 * Collects segments for one `mapDataPointer` call: consecutive guest ranges that continue each other inside one
 * mapping become one view. Writes the output arrays by index and truncates them once at the end: emptying a JS array
 * drops its backing store, so clearing first and pushing would reallocate it on every command. Holds references
 * to the caller's arrays only between `begin` and `end` (and to the last mapping it made a view of). One instance
 * per thread suffices because `mapDataPointer` is synchronous.
 */
class SegmentBuilder {
  dma: DmaSpace = NO_DMA;
  access: DmaAccess = 'read';
  private segments: Uint8Array[] = NO_SEGMENTS;
  private segmentCount = 0;
  private mappings: DmaMapping[] | undefined;
  private mappingCount = 0;
  /** Set between beginRuns and end: runs are recorded here instead of views in `segments`. */
  private runs: DataRuns | undefined;
  /** The guest range being accumulated: [runStart, runEnd) inside runMapping. */
  private runMapping: DmaMapping | undefined;
  private runStart = 0;
  private runEnd = 0;
  private scratch: Uint8Array | undefined;
  /**
   * The mapping flushRun built its last view for, with its `bytes.buffer` and `bytes.byteOffset - iova`. A mapping's
   * `bytes` never changes, so this stays valid (an unmapped mapping is never returned by `find` again). Kept across
   * calls: a reference to the last mapping only, so at most one retired mapping's buffer stays reachable.
   */
  private viewMapping: DmaMapping | undefined;
  private viewBuffer: ArrayBufferLike | undefined;
  private viewBase = 0;

  begin(dma: DmaSpace, access: DmaAccess, segments: Uint8Array[], mappings: DmaMapping[] | undefined): void {
    this.dma = dma;
    this.access = access;
    this.segments = segments;
    this.segmentCount = 0;
    this.mappings = mappings;
    this.mappingCount = 0;
    this.runMapping = undefined;
    this.runs = undefined;
  }

  beginRuns(dma: DmaSpace, access: DmaAccess, runs: DataRuns): void {
    this.begin(dma, access, NO_SEGMENTS, undefined);
    this.runs = runs;
  }

  /** Trims the output arrays to what was produced (on success) and drops the references. */
  end(segments: Uint8Array[] | undefined, mappings: DmaMapping[] | undefined): void {
    if (segments !== undefined && segments.length !== this.segmentCount) segments.length = this.segmentCount;
    if (mappings !== undefined && mappings.length !== this.mappingCount) mappings.length = this.mappingCount;
    this.dma = NO_DMA;
    this.segments = NO_SEGMENTS;
    this.mappings = undefined;
    this.runMapping = undefined;
    this.runs = undefined;
  }

  /** Adds guest memory [iova, iova + length), which may span adjacent mappings; throws DmaError if any is missing. */
  addGuest(iova: number, length: number): void {
    while (length > 0) {
      const run = this.runMapping;
      if (run !== undefined && iova === this.runEnd && iova < run.iova + run.size) {
        // Continues the current run inside a mapping already checked for this access.
        const piece = Math.min(length, run.iova + run.size - iova);
        this.runEnd += piece;
        iova += piece;
        length -= piece;
        continue;
      }
      this.flushRun();
      const mapping = this.dma.find(iova, 1, this.access);
      const piece = Math.min(length, mapping.iova + mapping.size - iova);
      this.runMapping = mapping;
      this.runStart = iova;
      this.runEnd = iova + piece;
      iova += piece;
      length -= piece;
    }
  }

  /** Adds `length` bytes that are read from the namespace and dropped (SGL Bit Bucket in a Read). */
  addScratch(length: number): void {
    this.flushRun();
    const scratch = (this.scratch ??= new Uint8Array(BIT_BUCKET_SCRATCH_BYTES));
    const runs = this.runs;
    while (length > 0) {
      const piece = Math.min(length, scratch.length);
      if (runs !== undefined) addRun(runs, scratch, 0, piece);
      else this.segments[this.segmentCount++] = piece === scratch.length ? scratch : scratch.subarray(0, piece);
      length -= piece;
    }
  }

  flushRun(): void {
    const mapping = this.runMapping;
    if (mapping === undefined) return;
    this.runMapping = undefined;
    const runs = this.runs;
    if (runs !== undefined) {
      // No view: the window's own array and where the run starts in it.
      addRun(runs, mapping.bytes, this.runStart - mapping.iova, this.runEnd - this.runStart);
      return;
    }
    // Same view as `bytes.subarray(...)`, which V8 builds noticeably slower. `buffer` and `byteOffset` are cached
    // per mapping: the `buffer` getter is a call into the runtime, and consecutive commands use the same mapping.
    if (mapping !== this.viewMapping) {
      this.viewMapping = mapping;
      this.viewBuffer = mapping.bytes.buffer;
      this.viewBase = mapping.bytes.byteOffset - mapping.iova;
    }
    this.segments[this.segmentCount++] = new Uint8Array(
      this.viewBuffer!,
      this.viewBase + this.runStart,
      this.runEnd - this.runStart,
    );
    const mappings = this.mappings;
    if (mappings !== undefined && (this.mappingCount === 0 || mappings[this.mappingCount - 1] !== mapping)) {
      mappings[this.mappingCount++] = mapping;
    }
  }
}

function addRun(runs: DataRuns, bytes: Uint8Array, at: number, length: number): void {
  const index = runs.count++;
  runs.bytes[index] = bytes;
  runs.at[index] = at;
  runs.lengths[index] = length;
}

/** Placeholders while no call is in progress (so the builder keeps no caller's objects alive). */
const NO_SEGMENTS: Uint8Array[] = [];
const NO_DMA: DmaSpace = {
  find(iova, length) {
    throw new DmaError(iova, length, 'outside mapDataPointer');
  },
  view(iova, length) {
    throw new DmaError(iova, length, 'outside mapDataPointer');
  },
  pin() {},
  unpin() {},
  isRetired() {
    return false;
  },
};

const builder = new SegmentBuilder();

/** A little-endian 64-bit guest address from the SQE, or -1 when it is 2^53 or more (no mapping can be there). */
function sqeAddress(sqe: DataView, offset: number): number {
  const high = sqe.getUint32(offset + 4, true);
  if (high > MAX_SAFE_HIGH_DWORD) return -1;
  return high * 0x1_0000_0000 + sqe.getUint32(offset, true);
}

/** Like `sqeAddress`, from guest memory (a PRP list or SGL segment). */
function bytesAddress(bytes: Uint8Array, offset: number): number {
  const high = bytesUint32(bytes, offset + 4);
  if (high > MAX_SAFE_HIGH_DWORD) return -1;
  return high * 0x1_0000_0000 + bytesUint32(bytes, offset);
}

function bytesUint32(bytes: Uint8Array, offset: number): number {
  return (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>> 0;
}
