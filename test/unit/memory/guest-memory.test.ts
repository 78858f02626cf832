/**
 * Guest memory of any size: mappings kept as windows (src/memory/guest-memory.ts). Small windows here make every
 * window end easy to cross with small buffers; the last part maps a real 1 TiB sparse memfd through the vfio-user
 * server and does I/O across real 1 GiB window ends near its top.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_WINDOW_STRIDE, DmaError, GuestMemory } from '../../../src/memory/guest-memory.js';
import { mapDataPointer } from '../../../src/nvme/data-pointer.js';
import { Status } from '../../../src/spec/nvme.js';
import { controllerConfig } from '../../../src/serve/config.js';
import { startController, type RunningController } from '../../../src/serve/controller.js';
import { memoryLogger } from '../../../src/util/log.js';
import { Guest, GUEST_RAM_IOVA } from '../../helpers/hypervisor.js';
import { pattern } from '../../helpers/nvme-harness.js';

const PAGE = 4096;
const STRIDE = 4 * PAGE;
const REACH = 2 * PAGE;
const BASE = 0x10_0000;

/** A mapping of `size` bytes at BASE over a plain buffer, counting what the memory asks of its backing. */
function smallWindows(size: number) {
  const memory = new GuestMemory({ windowStride: STRIDE, windowReach: REACH });
  const backing = pattern(size, 7);
  const made: Array<[number, number]> = [];
  const unmapped: Uint8Array[] = [];
  let closed = 0;
  memory.add({
    iova: BASE,
    size,
    readable: true,
    writable: true,
    map: (offset, length) => {
      made.push([offset, length]);
      return backing.subarray(offset, offset + length);
    },
    unmap: (bytes) => unmapped.push(bytes),
    close: () => closed++,
  });
  return { memory, backing, made, unmapped, closed: () => closed };
}

function sqe(fields: { psdt?: number; prp1?: number; prp2?: number; sglAddress?: number; sglLength?: number; sglType?: number }): DataView {
  const view = new DataView(new ArrayBuffer(64));
  view.setUint8(1, (fields.psdt ?? 0) << 6);
  const first = fields.prp1 ?? fields.sglAddress ?? 0;
  view.setUint32(24, first % 2 ** 32, true);
  view.setUint32(28, Math.floor(first / 2 ** 32), true);
  if (fields.psdt) {
    view.setUint32(32, fields.sglLength ?? 0, true);
    view.setUint8(39, (fields.sglType ?? 0) << 4);
  } else {
    const second = fields.prp2 ?? 0;
    view.setUint32(32, second % 2 ** 32, true);
    view.setUint32(36, Math.floor(second / 2 ** 32), true);
  }
  return view;
}

function joined(segments: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(segments.reduce((sum, segment) => sum + segment.length, 0));
  let at = 0;
  for (const segment of segments) {
    out.set(segment, at);
    at += segment.length;
  }
  return out;
}

describe('windows of one mapping', () => {
  it('makes the first and last window at once and the others on first use, each once', () => {
    const { memory, made } = smallWindows(10 * PAGE + STRIDE * 2); // 5 windows, the last one short
    expect(memory.windows.map((w) => [w.iova - BASE, w.size])).toEqual([
      [0, STRIDE + REACH],
      [STRIDE, STRIDE + REACH],
      [2 * STRIDE, STRIDE + REACH],
      [3 * STRIDE, STRIDE + REACH],
      [4 * STRIDE, 2 * PAGE],
    ]);
    expect(made).toEqual([
      [0, STRIDE + REACH],
      [4 * STRIDE, 2 * PAGE],
    ]);
    memory.find(BASE + 2 * STRIDE + 100, 8, 'read');
    memory.find(BASE + 2 * STRIDE + 200, 8, 'write');
    expect(made).toEqual([
      [0, STRIDE + REACH],
      [4 * STRIDE, 2 * PAGE],
      [2 * STRIDE, STRIDE + REACH],
    ]);
  });

  it('returns one contiguous view for a range up to the reach across a window end, and refuses longer ones', () => {
    const { memory, backing } = smallWindows(4 * STRIDE);
    const start = STRIDE - 100;
    const view = memory.view(BASE + start, REACH, 'read');
    expect(view).toEqual(backing.subarray(start, start + REACH));
    view[150] = 0xab; // written through the window, seen in the memory itself
    expect(backing[start + 150]).toBe(0xab);

    expect(() => memory.view(BASE + start, REACH + 101, 'read')).toThrow(/longer than 8192 bytes across a window end/);
    expect(() => memory.view(BASE + 4 * STRIDE - 8, 16, 'read')).toThrow(/crosses the end of a mapping/);
    expect(() => memory.view(BASE + 4 * STRIDE, 1, 'read')).toThrow(DmaError);
  });

  it('splits a PRP transfer and an SGL data block at window ends, with every byte where the guest put it', () => {
    const { memory, backing } = smallWindows(4 * STRIDE);
    const segments: Uint8Array[] = [];

    // PRP: 6 contiguous pages from 2 pages before the first window end: window 0 reaches 2 pages past its end, so the
    // run is cut there and goes on in window 1.
    const list = BASE + 3 * STRIDE + PAGE; // the PRP list itself, in the last window
    const pages = [0, 1, 2, 3, 4, 5].map((index) => BASE + STRIDE - 2 * PAGE + index * PAGE);
    const listView = new DataView(backing.buffer, backing.byteOffset + (list - BASE), PAGE);
    pages.slice(1).forEach((page, index) => listView.setBigUint64(index * 8, BigInt(page), true));
    expect(mapDataPointer(memory, sqe({ prp1: pages[0], prp2: list }), 6 * PAGE, 'read', segments, false)).toBe(
      Status.SUCCESS,
    );
    expect(segments.map((segment) => segment.length)).toEqual([2 * PAGE + REACH, 2 * PAGE]); // to window 0's reach, then on
    const expected = joined(pages.map((page) => backing.subarray(page - BASE, page - BASE + PAGE)));
    expect(joined(segments)).toEqual(expected);

    // SGL: one data block of 2.5 windows starting just before a window end.
    const address = BASE + STRIDE - 300;
    const length = STRIDE * 2 + STRIDE / 2;
    expect(
      mapDataPointer(memory, sqe({ psdt: 1, sglAddress: address, sglLength: length }), length, 'write', segments, true),
    ).toBe(Status.SUCCESS);
    expect(joined(segments)).toEqual(backing.subarray(address - BASE, address - BASE + length));
  });

  it('reads an SGL segment list that lies across a window end', () => {
    const { memory, backing } = smallWindows(4 * STRIDE);
    const listAddress = BASE + 2 * STRIDE - 32; // two descriptors, the second past the window end
    const view = new DataView(backing.buffer, backing.byteOffset + (listAddress - BASE), 32);
    const blocks = [BASE + PAGE, BASE + 3 * STRIDE];
    blocks.forEach((address, index) => {
      view.setUint32(index * 16, address, true);
      view.setUint32(index * 16 + 4, 0, true);
      view.setUint32(index * 16 + 8, 512, true);
      view.setUint8(index * 16 + 15, 0x00); // data block
    });
    const segments: Uint8Array[] = [];
    const status = mapDataPointer(
      memory,
      sqe({ psdt: 1, sglAddress: listAddress, sglLength: 32, sglType: 3 }), // last segment
      1024,
      'read',
      segments,
      true,
    );
    expect(status).toBe(Status.SUCCESS);
    expect(joined(segments)).toEqual(joined(blocks.map((a) => backing.subarray(a - BASE, a - BASE + 512))));
  });

  it('pins the whole mapping through any window; releases every window made once and the backing once', async () => {
    const { memory, made, unmapped, closed } = smallWindows(4 * STRIDE);
    const window = memory.find(BASE + 2 * STRIDE, PAGE, 'read');
    memory.pin(window);
    let removed = false;
    const removal = memory.remove(BASE, 4 * STRIDE).then(() => (removed = true));
    expect(() => memory.find(BASE, 1, 'read')).toThrow(/unmapped/); // retired at once
    await Promise.resolve();
    expect(removed).toBe(false);
    expect(unmapped).toHaveLength(0);
    memory.unpin(window);
    await removal;
    expect(unmapped).toHaveLength(made.length);
    expect(made).toHaveLength(3);
    expect(closed()).toBe(1);
  });

  it('gives the backing back when an add fails', () => {
    const memory = new GuestMemory({ windowStride: STRIDE, windowReach: REACH });
    memory.add({ iova: BASE, size: STRIDE, bytes: new Uint8Array(STRIDE), readable: true, writable: true });
    const closes: string[] = [];
    const unmaps: number[] = [];
    expect(() =>
      memory.add({
        iova: BASE + PAGE,
        size: STRIDE,
        readable: true,
        writable: true,
        map: () => new Uint8Array(STRIDE),
        unmap: () => unmaps.push(1),
        close: () => closes.push('overlap'),
      }),
    ).toThrow(/overlaps/);
    expect(() =>
      memory.add({
        iova: BASE + 8 * STRIDE,
        size: 3 * STRIDE,
        readable: true,
        writable: true,
        map: (offset, length) => {
          if (offset !== 0) throw new Error('the fd is too short');
          return new Uint8Array(length);
        },
        unmap: () => unmaps.push(2),
        close: () => closes.push('short'),
      }),
    ).toThrow(/map of a window failed: the fd is too short/);
    expect(closes).toEqual(['overlap', 'short']);
    expect(unmaps).toEqual([2]); // the first window was made, and unmade
    expect(memory.regions).toHaveLength(1);
  });

  it('keeps memory it cannot reach as one window, however large (a DMA_MAP without fd costs no more than a small one)', () => {
    const memory = new GuestMemory();
    memory.add({ iova: 2 ** 40, size: 2 ** 52, readable: true, writable: true, unreachable: 'no fd' });
    expect(memory.windows).toHaveLength(1);
    expect(() => memory.find(2 ** 40 + 2 ** 51, 8, 'read')).toThrow(/cannot reach: no fd/);
    expect(() => memory.find(2 ** 40 + 2 ** 52, 1, 'read')).toThrow(/unmapped/);
  });

  it('asks the backing for the first and last window only, and keeps nothing when the last does not fit', () => {
    const memory = new GuestMemory({ windowStride: STRIDE, windowReach: REACH });
    const asked: number[] = [];
    expect(() =>
      memory.add({
        iova: BASE,
        size: 100_000 * STRIDE,
        readable: true,
        writable: true,
        map: (offset, length) => {
          asked.push(offset);
          if (offset !== 0) throw new Error('past the end of the file');
          return new Uint8Array(length);
        },
        unmap: () => {},
      }),
    ).toThrow(/past the end of the file/);
    expect(asked).toEqual([0, 99_999 * STRIDE]);
    expect(memory.windows).toHaveLength(0);
  });

  it('finds the right mapping among thousands', () => {
    const memory = new GuestMemory();
    const count = 5000;
    const rams: Uint8Array[] = [];
    for (let index = 0; index < count; index++) {
      const ram = new Uint8Array(PAGE).fill(index % 251);
      rams.push(ram);
      // Out of order, with holes: every other page, odd ones first.
      const slot = index < count / 2 ? 2 * index + 1 : 2 * (index - count / 2);
      memory.add({ iova: BASE + slot * 2 * PAGE, size: PAGE, bytes: ram, readable: true, writable: true });
    }
    expect(memory.regions).toHaveLength(count);
    for (let index = 0; index < count; index++) {
      const slot = index < count / 2 ? 2 * index + 1 : 2 * (index - count / 2);
      expect(memory.view(BASE + slot * 2 * PAGE + 10, 1, 'read')[0]).toBe(index % 251);
      expect(() => memory.view(BASE + slot * 2 * PAGE + PAGE, 1, 'read')).toThrow(/unmapped/);
    }
  });
});

describe('a 1 TiB mapping through the vfio-user server', () => {
  let dir: string | undefined;
  let controller: RunningController | undefined;
  let guest: Guest | undefined;
  afterEach(async () => {
    guest?.close();
    await controller?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    guest = controller = dir = undefined;
  });

  it('serves queues and data that cross 1 GiB window ends near the top of one 1 TiB DMA region', async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-tib-'));
    const { logger } = memoryLogger();
    const image = path.join(dir, 'disk.img');
    controller = await startController(
      controllerConfig({ socketPath: path.join(dir, 'nvme0.sock'), namespaces: [`file:${image}?size=64M`] }),
      logger,
    );
    const TiB = 2 ** 40;
    const GiB = DEFAULT_WINDOW_STRIDE;
    // The guest driver works in [1022 GiB - 1 MiB, 1023 GiB + 1 MiB) of guest RAM, around two window ends.
    const firstEnd = GUEST_RAM_IOVA + 1022 * GiB;
    const secondEnd = GUEST_RAM_IOVA + 1023 * GiB;
    const window = { offset: 1022 * GiB - 2 ** 20, length: GiB + 2 * 2 ** 20 };
    guest = await Guest.attach(controller.config.socketPath, { flavour: 'qemu', ramBytes: TiB, driverWindow: window });
    const driver = guest.driver;
    await driver.enable();
    // A 16 KiB submission queue half in each window, its completion queue right after the second window end.
    expect((await driver.createIoCompletionQueue(1, 256, 1, { iova: secondEnd + 512 * 1024 })).status).toBe(0);
    expect((await driver.createIoSubmissionQueue(1, 256, 1, { iova: firstEnd - 8 * 1024 })).status).toBe(0);

    // Data buffers from here on straddle the second window end (the 64 KiB buffer of the first write is reused).
    driver.skipTo(secondEnd - 12 * 1024);
    const writes = [
      { lba: 0, data: pattern(64 * 1024, 1), dataPointer: 'prp' as const },
      { lba: 1000, data: pattern(64 * 1024, 2), dataPointer: 'sgl' as const },
    ];
    for (const write of writes) {
      const completion = await driver.write(1, write.lba, write.data, { dataPointer: write.dataPointer });
      expect(completion.status, `write at LBA ${write.lba}`).toBe(Status.SUCCESS);
    }
    expect((await driver.submit(1, { opcode: 0x00, nsid: 1 })).status).toBe(Status.SUCCESS);
    for (const write of writes) {
      const fd = openSync(image, 'r');
      const stored = new Uint8Array(write.data.length);
      readSync(fd, stored, 0, stored.length, write.lba * 512);
      closeSync(fd);
      expect(stored).toEqual(write.data);
      const read = await driver.read(1, write.lba, write.data.length / 512, { dataPointer: write.dataPointer });
      expect(read.completion.status).toBe(Status.SUCCESS);
      expect(read.data).toEqual(write.data);
    }
    await driver.shutdown();
  });
});
