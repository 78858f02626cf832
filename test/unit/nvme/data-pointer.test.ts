import { beforeEach, describe, expect, it } from 'vitest';
import { GuestMemory, type DmaMapping } from '../../../src/memory/guest-memory.js';
import { DataRuns, MAX_SGL_SEGMENTS, mapDataPointer as mapViews, mapDataRuns } from '../../../src/nvme/data-pointer.js';
import { Status } from '../../../src/spec/nvme.js';

const BASE = 0x100000;
const RAM_BYTES = 8 * 1024 * 1024;
const PAGE = 4096;

let memory: GuestMemory;
let ram: Uint8Array;
let ramView: DataView;
let segments: Uint8Array[];
let mappings: DmaMapping[];

beforeEach(() => {
  memory = new GuestMemory();
  ram = new Uint8Array(RAM_BYTES);
  ramView = new DataView(ram.buffer);
  memory.add({ iova: BASE, size: RAM_BYTES, bytes: ram, readable: true, writable: true });
  segments = [];
  mappings = [];
});

/**
 * mapDataPointer, and every I/O-command call (SGLs allowed) checked against mapDataRuns (the synchronous stores'
 * path, which builds no views): the same status, and on success runs over exactly the bytes of the views.
 */
function mapDataPointer(
  dma: GuestMemory,
  entry: DataView,
  length: number,
  access: 'read' | 'write',
  out: Uint8Array[],
  allowSgl: boolean,
  outMappings?: DmaMapping[],
): number {
  const status = mapViews(dma, entry, length, access, out, allowSgl, outMappings);
  if (!allowSgl) return status;
  const runs = new DataRuns();
  expect(mapDataRuns(dma, entry, length, access, runs)).toBe(status);
  if (status !== Status.SUCCESS) {
    expect(runs.count).toBe(0);
    return status;
  }
  expect(runs.count).toBe(out.length);
  out.forEach((segment, index) => {
    const run = runs.bytes[index]!.subarray(runs.at[index]!, runs.at[index]! + runs.lengths[index]!);
    expect(run.buffer).toBe(segment.buffer);
    expect([run.byteOffset, run.length]).toEqual([segment.byteOffset, segment.length]);
  });
  return status;
}

function sqe(fields: { psdt?: number; dptr1?: bigint; dptr2?: bigint }): DataView {
  const view = new DataView(new ArrayBuffer(64));
  view.setUint8(0, 0x02);
  view.setUint8(1, (fields.psdt ?? 0) << 6);
  view.setBigUint64(24, fields.dptr1 ?? 0n, true);
  view.setBigUint64(32, fields.dptr2 ?? 0n, true);
  return view;
}

function prp(prp1: number, prp2 = 0): DataView {
  return sqe({ dptr1: BigInt(prp1), dptr2: BigInt(prp2) });
}

/** An SQE whose SGL1 is the given descriptor. */
function sgl(address: number | bigint, length: number, type: number, subtype = 0, psdt = 1): DataView {
  const view = sqe({ psdt, dptr1: BigInt(address) });
  view.setUint32(32, length, true);
  view.setUint8(39, (type << 4) | subtype);
  return view;
}

/** Writes SGL descriptors into guest RAM at `iova`. */
function putDescriptors(iova: number, descriptors: Array<[address: number, length: number, type: number]>): void {
  descriptors.forEach(([address, length, type], index) => {
    const offset = iova - BASE + index * 16;
    ramView.setBigUint64(offset, BigInt(address), true);
    ramView.setUint32(offset + 8, length, true);
    ram.fill(0, offset + 12, offset + 15);
    ramView.setUint8(offset + 15, type << 4);
  });
}

function putU64(iova: number, value: number | bigint): void {
  ramView.setBigUint64(iova - BASE, BigInt(value), true);
}

/** Asserts that `segment` is the view of guest RAM [iova, iova + length). */
function expectGuest(segment: Uint8Array | undefined, iova: number, length: number): void {
  expect(segment).toBeDefined();
  expect(segment!.buffer).toBe(ram.buffer);
  expect(segment!.byteOffset).toBe(iova - BASE);
  expect(segment!.length).toBe(length);
}

const DATA_BLOCK = 0;
const BIT_BUCKET = 1;
const SEGMENT = 2;
const LAST_SEGMENT = 3;

describe('PRPs', () => {
  it('maps a transfer that fits in the PRP1 page and records its mapping', () => {
    const status = mapDataPointer(memory, prp(BASE + 0x2000), 512, 'write', segments, false, mappings);
    expect(status).toBe(Status.SUCCESS);
    expect(segments).toHaveLength(1);
    expectGuest(segments[0], BASE + 0x2000, 512);
    expect(mappings).toEqual([memory.windows[0]]);
    // The segment is live guest memory, not a copy.
    segments[0]![0] = 0xab;
    expect(ram[0x2000]).toBe(0xab);
  });

  it('maps PRP1 with a dword-aligned offset plus PRP2 as the second page', () => {
    const status = mapDataPointer(memory, prp(BASE + 0x3204, BASE + 0x10000), 4096, 'read', segments, false);
    expect(status).toBe(Status.SUCCESS);
    expect(segments).toHaveLength(2);
    expectGuest(segments[0], BASE + 0x3204, PAGE - 0x204);
    expectGuest(segments[1], BASE + 0x10000, 0x204);
  });

  it('merges physically contiguous pages into one segment', () => {
    const status = mapDataPointer(memory, prp(BASE + 0x4000, BASE + 0x5000), 8192, 'read', segments, false);
    expect(status).toBe(Status.SUCCESS);
    expect(segments).toHaveLength(1);
    expectGuest(segments[0], BASE + 0x4000, 8192);
  });

  it('walks a PRP list that chains across two list pages', () => {
    const list1 = BASE + 0x1000;
    const list2 = BASE + 0x7000;
    const dataArea = BASE + 0x100000;
    const pages = 600; // after PRP1: 511 entries in list page 1, 89 in list page 2
    // Reverse order so no two consecutive pages are contiguous (nothing merges) and each segment is checkable.
    const pageAt = (index: number): number => dataArea + (pages - 1 - index) * 2 * PAGE;
    for (let index = 0; index < 511; index++) putU64(list1 + index * 8, pageAt(index));
    putU64(list1 + 511 * 8, list2);
    for (let index = 511; index < pages; index++) putU64(list2 + (index - 511) * 8, pageAt(index));
    const length = PAGE + pages * PAGE - 100;
    const status = mapDataPointer(memory, prp(BASE, list1), length, 'write', segments, false, mappings);
    expect(status).toBe(Status.SUCCESS);
    expect(segments).toHaveLength(pages + 1);
    expectGuest(segments[0], BASE, PAGE);
    for (let index = 0; index < pages - 1; index++) expectGuest(segments[index + 1], pageAt(index), PAGE);
    expectGuest(segments[pages], pageAt(pages - 1), PAGE - 100);
    expect(segments.reduce((sum, segment) => sum + segment.length, 0)).toBe(length);
    expect(mappings).toHaveLength(1);
  });

  it('uses all 512 slots of a list page as data when no more are needed', () => {
    const list = BASE + 0x1000;
    const pageAt = (index: number): number => BASE + 0x100000 + (511 - index) * 2 * PAGE;
    for (let index = 0; index < 512; index++) putU64(list + index * 8, pageAt(index));
    const status = mapDataPointer(memory, prp(BASE, list), PAGE + 512 * PAGE, 'read', segments, false);
    expect(status).toBe(Status.SUCCESS);
    expect(segments).toHaveLength(513);
    expectGuest(segments[512], pageAt(511), PAGE);
  });

  it('honours a PRP list pointer with an offset (fewer slots before the chain entry)', () => {
    // List starts 16 bytes before the end of its page: one data entry, then the chain pointer.
    const list1 = BASE + 0x2000 - 16;
    const list2 = BASE + 0x9000;
    putU64(list1, BASE + 0x20000);
    putU64(list1 + 8, list2);
    putU64(list2, BASE + 0x40000);
    putU64(list2 + 8, BASE + 0x60000);
    const status = mapDataPointer(memory, prp(BASE + 0x30000, list1), 4 * PAGE, 'read', segments, false);
    expect(status).toBe(Status.SUCCESS);
    expect(segments.map((segment) => segment.byteOffset)).toEqual([0x30000, 0x20000, 0x40000, 0x60000]);
  });

  it('rejects a PRP1 offset that is not dword aligned', () => {
    expect(mapDataPointer(memory, prp(BASE + 0x1002), 16, 'read', segments, false)).toBe(Status.PRP_OFFSET_INVALID);
    expect(segments).toHaveLength(0);
  });

  it('rejects offsets in PRP2-as-page, PRP list entries, the list pointer and chain pointers', () => {
    expect(mapDataPointer(memory, prp(BASE, BASE + 0x5010), 8192, 'read', segments, false)).toBe(
      Status.PRP_OFFSET_INVALID,
    );
    const list = BASE + 0x3000;
    putU64(list, BASE + 0x8000);
    putU64(list + 8, BASE + 0x9200); // entry with an offset
    expect(mapDataPointer(memory, prp(BASE, list), 3 * PAGE, 'read', segments, false, mappings)).toBe(
      Status.PRP_OFFSET_INVALID,
    );
    expect(segments).toHaveLength(0);
    expect(mappings).toHaveLength(0);
    expect(mapDataPointer(memory, prp(BASE, list + 4), 3 * PAGE, 'read', segments, false)).toBe(
      Status.PRP_OFFSET_INVALID,
    );
    const tail = BASE + 0x5000 - 8; // one slot: it must be the chain pointer
    putU64(tail, BASE + 0x6100);
    expect(mapDataPointer(memory, prp(BASE, tail), 3 * PAGE, 'read', segments, false)).toBe(
      Status.PRP_OFFSET_INVALID,
    );
  });

  it('fails with Data Transfer Error for memory outside the mappings or without permission', () => {
    expect(mapDataPointer(memory, prp(BASE - PAGE), 512, 'read', segments, false)).toBe(Status.DATA_TRANSFER_ERROR);
    expect(mapDataPointer(memory, prp(BASE + RAM_BYTES), 512, 'read', segments, false)).toBe(
      Status.DATA_TRANSFER_ERROR,
    );
    // PRP2 page beyond the end of guest RAM.
    expect(mapDataPointer(memory, prp(BASE, BASE + RAM_BYTES), 8192, 'read', segments, false)).toBe(
      Status.DATA_TRANSFER_ERROR,
    );
    // A PRP list entry pointing outside.
    const list = BASE + 0x3000;
    putU64(list, BASE + 0x8000);
    putU64(list + 8, 0x10_0000_0000);
    expect(mapDataPointer(memory, prp(BASE, list), 3 * PAGE, 'read', segments, false)).toBe(
      Status.DATA_TRANSFER_ERROR,
    );
    // Addresses of 2^53 and above.
    expect(
      mapDataPointer(memory, sqe({ dptr1: 0xffff_ffff_ffff_f000n }), 512, 'read', segments, false),
    ).toBe(Status.DATA_TRANSFER_ERROR);
    // A read-only mapping cannot be the target of a device write.
    const readOnly = new Uint8Array(PAGE);
    memory.add({ iova: 0x10_0000_0000, size: PAGE, bytes: readOnly, readable: true, writable: false });
    expect(mapDataPointer(memory, prp(0x10_0000_0000), 512, 'write', segments, false)).toBe(
      Status.DATA_TRANSFER_ERROR,
    );
    expect(mapDataPointer(memory, prp(0x10_0000_0000), 512, 'read', segments, false)).toBe(Status.SUCCESS);
  });

  it('bounds huge lengths', () => {
    expect(mapDataPointer(memory, prp(BASE), 2 ** 40, 'read', segments, false)).toBe(Status.INVALID_FIELD);
    expect(mapDataPointer(memory, prp(BASE), -1, 'read', segments, false)).toBe(Status.INVALID_FIELD);
    expect(mapDataPointer(memory, prp(BASE), Number.NaN, 'read', segments, false)).toBe(Status.INVALID_FIELD);
    // 256 MiB through a PRP list in 8 MiB of RAM: a self-chaining list still ends, one off the end fails.
    const list = BASE + 0x3000;
    for (let index = 0; index < 511; index++) putU64(list + index * 8, BASE + 0x100000);
    putU64(list + 511 * 8, list); // chains to itself: every page adds 511 data entries, so the walk still ends
    expect(mapDataPointer(memory, prp(BASE, list), 2 ** 28, 'read', segments, false)).toBe(Status.SUCCESS);
    expect(segments.reduce((sum, segment) => sum + segment.length, 0)).toBe(2 ** 28);
    putU64(list + 511 * 8, BASE + RAM_BYTES - PAGE + PAGE); // chain off the end of RAM
    expect(mapDataPointer(memory, prp(BASE, list), 2 ** 28, 'read', segments, false)).toBe(
      Status.DATA_TRANSFER_ERROR,
    );
  });

  it('maps a zero-length transfer to no segments', () => {
    segments.push(new Uint8Array(1));
    expect(mapDataPointer(memory, prp(0xdead_0000), 0, 'read', segments, false)).toBe(Status.SUCCESS);
    expect(segments).toHaveLength(0);
  });

  it('rejects SGLs when not allowed and the reserved PSDT value', () => {
    expect(mapDataPointer(memory, sgl(BASE, 512, DATA_BLOCK), 512, 'read', segments, false)).toBe(
      Status.INVALID_FIELD,
    );
    expect(mapDataPointer(memory, sgl(BASE, 512, DATA_BLOCK, 0, 3), 512, 'read', segments, true)).toBe(
      Status.INVALID_FIELD,
    );
  });
});

describe('SGLs', () => {
  it('maps a single data block at any byte alignment (PSDT 01b and 10b)', () => {
    for (const psdt of [1, 2]) {
      const status = mapDataPointer(memory, sgl(BASE + 0x1233, 1000, DATA_BLOCK, 0, psdt), 1000, 'write', segments, true);
      expect(status).toBe(Status.SUCCESS);
      expect(segments).toHaveLength(1);
      expectGuest(segments[0], BASE + 0x1233, 1000);
    }
  });

  it('ignores data described beyond the transfer length', () => {
    expect(mapDataPointer(memory, sgl(BASE, 8192, DATA_BLOCK), 512, 'read', segments, true)).toBe(Status.SUCCESS);
    expectGuest(segments[0], BASE, 512);
  });

  it('follows a segment to a last segment', () => {
    const segmentList = BASE + 0x8000;
    const lastList = BASE + 0x9000;
    putDescriptors(segmentList, [
      [BASE + 0x10000, 100, DATA_BLOCK],
      [BASE + 0x20000, 200, DATA_BLOCK],
      [lastList, 32, LAST_SEGMENT],
    ]);
    putDescriptors(lastList, [
      [BASE + 0x30000, 112, DATA_BLOCK],
      [BASE + 0x40000, 100, DATA_BLOCK],
    ]);
    const status = mapDataPointer(memory, sgl(segmentList, 48, SEGMENT), 512, 'write', segments, true, mappings);
    expect(status).toBe(Status.SUCCESS);
    expect(segments).toHaveLength(4);
    expectGuest(segments[0], BASE + 0x10000, 100);
    expectGuest(segments[1], BASE + 0x20000, 200);
    expectGuest(segments[2], BASE + 0x30000, 112);
    expectGuest(segments[3], BASE + 0x40000, 100);
    expect(mappings).toEqual([memory.windows[0]]);
  });

  it('merges data blocks that continue each other', () => {
    const list = BASE + 0x8000;
    putDescriptors(list, [
      [BASE + 0x10000, 100, DATA_BLOCK],
      [BASE + 0x10000 + 100, 412, DATA_BLOCK],
    ]);
    expect(mapDataPointer(memory, sgl(list, 32, LAST_SEGMENT), 512, 'read', segments, true)).toBe(Status.SUCCESS);
    expect(segments).toHaveLength(1);
    expectGuest(segments[0], BASE + 0x10000, 512);
  });

  it('splits a data block that spans two adjacent mappings', () => {
    const second = new Uint8Array(PAGE);
    memory.add({ iova: BASE + RAM_BYTES, size: PAGE, bytes: second, readable: true, writable: true });
    const status = mapDataPointer(memory, sgl(BASE + RAM_BYTES - 100, 300, DATA_BLOCK), 300, 'write', segments, true, mappings);
    expect(status).toBe(Status.SUCCESS);
    expect(segments).toHaveLength(2);
    expectGuest(segments[0], BASE + RAM_BYTES - 100, 100);
    expect(segments[1]!.buffer).toBe(second.buffer);
    expect(segments[1]!.byteOffset).toBe(0);
    expect(segments[1]!.length).toBe(200);
    expect(mappings).toEqual([memory.windows[0], memory.windows[1]]);
  });

  it('reads Bit Bucket bytes into scratch memory on a Read and skips them on a Write', () => {
    const list = BASE + 0x8000;
    putDescriptors(list, [
      [BASE + 0x10000, 100, DATA_BLOCK],
      [0, 50, BIT_BUCKET],
      [BASE + 0x20000, 412, DATA_BLOCK],
    ]);
    expect(mapDataPointer(memory, sgl(list, 48, LAST_SEGMENT), 512, 'write', segments, true)).toBe(Status.SUCCESS);
    expect(segments.map((segment) => segment.length)).toEqual([100, 50, 362]);
    expectGuest(segments[0], BASE + 0x10000, 100);
    expect(segments[1]!.buffer).not.toBe(ram.buffer);
    expectGuest(segments[2], BASE + 0x20000, 362);

    // Host-to-controller: the bit bucket describes no data.
    expect(mapDataPointer(memory, sgl(list, 48, LAST_SEGMENT), 512, 'read', segments, true)).toBe(Status.SUCCESS);
    expect(segments.map((segment) => segment.length)).toEqual([100, 412]);
    expectGuest(segments[1], BASE + 0x20000, 412);
  });

  it('ends a segment that points at itself with an error', () => {
    const list = BASE + 0x8000;
    putDescriptors(list, [[list, 16, SEGMENT]]);
    expect(mapDataPointer(memory, sgl(list, 16, SEGMENT), 512, 'read', segments, true, mappings)).toBe(
      Status.INVALID_SGL_DESCRIPTOR_COUNT,
    );
    expect(segments).toHaveLength(0);
    // The same loop padded with zero-length data blocks.
    putDescriptors(list, [
      [BASE, 0, DATA_BLOCK],
      [BASE, 0, DATA_BLOCK],
      [list, 48, SEGMENT],
    ]);
    expect(mapDataPointer(memory, sgl(list, 48, SEGMENT), 512, 'read', segments, true)).toBe(
      Status.INVALID_SGL_DESCRIPTOR_COUNT,
    );
    expect(MAX_SGL_SEGMENTS).toBeGreaterThan(1);
  });

  it('rejects an SGL that describes less data than the transfer', () => {
    expect(mapDataPointer(memory, sgl(BASE, 256, DATA_BLOCK), 512, 'read', segments, true)).toBe(
      Status.DATA_SGL_LENGTH_INVALID,
    );
    const list = BASE + 0x8000;
    putDescriptors(list, [
      [BASE + 0x10000, 100, DATA_BLOCK],
      [BASE + 0x20000, 100, DATA_BLOCK],
    ]);
    expect(mapDataPointer(memory, sgl(list, 32, LAST_SEGMENT), 512, 'read', segments, true, mappings)).toBe(
      Status.DATA_SGL_LENGTH_INVALID,
    );
    expect(segments).toHaveLength(0);
    expect(mappings).toHaveLength(0);
  });

  it('rejects unknown descriptor types, non-address sub types and misplaced segment descriptors', () => {
    expect(mapDataPointer(memory, sgl(BASE, 512, 0x4), 512, 'read', segments, true)).toBe(
      Status.SGL_DESCRIPTOR_TYPE_INVALID,
    );
    expect(mapDataPointer(memory, sgl(BASE, 512, 0xf), 512, 'read', segments, true)).toBe(
      Status.SGL_DESCRIPTOR_TYPE_INVALID,
    );
    // A reserved or unsupported sub type (1h = offset, fabrics only) is an SGL Descriptor Type error per the spec.
    expect(mapDataPointer(memory, sgl(BASE, 512, DATA_BLOCK, 1), 512, 'read', segments, true)).toBe(
      Status.SGL_DESCRIPTOR_TYPE_INVALID,
    );
    const list = BASE + 0x8000;
    const other = BASE + 0x9000;
    putDescriptors(other, [[BASE, 512, DATA_BLOCK]]);
    // A last segment may not lead to another segment.
    putDescriptors(list, [[other, 16, SEGMENT]]);
    expect(mapDataPointer(memory, sgl(list, 16, LAST_SEGMENT), 512, 'read', segments, true)).toBe(
      Status.INVALID_SGL_SEGMENT_DESCRIPTOR,
    );
    // A segment descriptor must be the last in its list.
    putDescriptors(list, [
      [other, 16, LAST_SEGMENT],
      [BASE, 512, DATA_BLOCK],
    ]);
    expect(mapDataPointer(memory, sgl(list, 32, SEGMENT), 512, 'read', segments, true)).toBe(
      Status.INVALID_SGL_SEGMENT_DESCRIPTOR,
    );
    // Segment lengths are whole descriptors.
    expect(mapDataPointer(memory, sgl(list, 24, SEGMENT), 512, 'read', segments, true)).toBe(
      Status.INVALID_SGL_SEGMENT_DESCRIPTOR,
    );
    expect(mapDataPointer(memory, sgl(list, 0, LAST_SEGMENT), 512, 'read', segments, true)).toBe(
      Status.INVALID_SGL_SEGMENT_DESCRIPTOR,
    );
  });

  it('fails with Data Transfer Error for segments and data outside guest memory', () => {
    expect(mapDataPointer(memory, sgl(BASE + RAM_BYTES - 16, 64, LAST_SEGMENT), 512, 'read', segments, true)).toBe(
      Status.DATA_TRANSFER_ERROR,
    );
    expect(mapDataPointer(memory, sgl(BASE, 0xffff_ffff, DATA_BLOCK), 2 ** 32, 'read', segments, true)).toBe(
      Status.DATA_TRANSFER_ERROR,
    );
    expect(mapDataPointer(memory, sgl(0xffff_ffff_ffff_0000n, 512, DATA_BLOCK), 512, 'read', segments, true)).toBe(
      Status.DATA_TRANSFER_ERROR,
    );
  });
});
