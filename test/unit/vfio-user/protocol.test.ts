// Codec tests for src/vfio-user/protocol.ts: byte layouts as QEMU and cloud-hypervisor lay them out, round trips,
// and the defensive parsing of client-supplied data.
import { describe, expect, it } from 'vitest';
import { VfioUserError } from '../../../src/vfio-user/errors.js';
import {
  BodySize,
  Command,
  HEADER_SIZE,
  HeaderFlag,
  capabilitiesJson,
  commandName,
  decodeVersion,
  encodeDeviceInfo,
  encodeDmaMap,
  encodeDmaUnmap,
  encodeIrqInfo,
  encodeIrqSet,
  encodeRegionAccess,
  encodeRegionInfo,
  encodeVersion,
  getU64,
  parseCapabilities,
  readDeviceInfo,
  readDmaMap,
  readDmaUnmap,
  readHeader,
  readIrqInfo,
  readIrqSet,
  readRegionAccess,
  readRegionInfo,
  readSparseMmapAreas,
  setU64,
  sparseMmapCapSize,
  writeHeader,
  writeRegionInfo,
  writeSparseMmapCap,
} from '../../../src/vfio-user/protocol.js';

const viewOf = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

function errnoOfThrow(fn: () => unknown): number {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(VfioUserError);
    return (error as VfioUserError).errno;
  }
  throw new Error('expected a VfioUserError');
}

describe('header', () => {
  it('uses the 16-byte little-endian layout (id, command, size, flags, error)', () => {
    const bytes = new Uint8Array(HEADER_SIZE);
    writeHeader(
      viewOf(bytes),
      0,
      0x1234,
      Command.REGION_WRITE,
      0x01020304,
      HeaderFlag.TYPE_REPLY | HeaderFlag.ERROR,
      22,
    );
    expect([...bytes]).toEqual([0x34, 0x12, 10, 0, 4, 3, 2, 1, 0x21, 0, 0, 0, 22, 0, 0, 0]);
    expect(readHeader(viewOf(bytes), 0)).toEqual({
      msgId: 0x1234,
      command: 10,
      size: 0x01020304,
      flags: 0x21,
      error: 22,
    });
  });

  it('names commands, and unknown ones distinctly', () => {
    expect(commandName(Command.DEVICE_SET_IRQS)).toBe('DEVICE_SET_IRQS');
    expect(commandName(999)).toBe('UNKNOWN(999)');
  });
});

describe('u64 fields', () => {
  it('round-trips values above 2^32 and up to 2^53-1', () => {
    const bytes = new Uint8Array(8);
    for (const value of [0, 1, 0xffffffff, 0x1_0000_0000, 0x1234_5678_9abc, Number.MAX_SAFE_INTEGER]) {
      setU64(viewOf(bytes), 0, value);
      expect(getU64(viewOf(bytes), 0)).toBe(value);
    }
  });

  it('reports values that are not safe integers as -1', () => {
    const bytes = new Uint8Array(8).fill(0xff);
    expect(getU64(viewOf(bytes), 0)).toBe(-1);
    const view = viewOf(bytes);
    view.setUint32(0, 0, true);
    view.setUint32(4, 0x200000, true); // 2^53 exactly
    expect(getU64(view, 0)).toBe(-1);
  });
});

describe('VERSION', () => {
  it('round-trips major, minor and NUL-terminated JSON', () => {
    const message = encodeVersion(7, 0, 0, 1, '{"capabilities":{"max_msg_fds":8}}');
    const header = readHeader(viewOf(message), 0);
    expect(header).toMatchObject({ msgId: 7, command: Command.VERSION, size: message.length });
    expect(message[message.length - 1]).toBe(0);
    const decoded = decodeVersion(message, HEADER_SIZE, message.length - HEADER_SIZE);
    expect(decoded).toEqual({ major: 0, minor: 1, json: '{"capabilities":{"max_msg_fds":8}}' });
  });

  it('accepts a VERSION without data and rejects short or unterminated payloads', () => {
    const bare = encodeVersion(1, 0, 0, 0, undefined);
    expect(bare.length).toBe(HEADER_SIZE + 4);
    expect(decodeVersion(bare, HEADER_SIZE, 4).json).toBeUndefined();
    expect(errnoOfThrow(() => decodeVersion(bare, HEADER_SIZE, 3))).toBe(22);
    const unterminated = new Uint8Array([0, 0, 0, 0, 0x7b, 0x7d]);
    expect(errnoOfThrow(() => decodeVersion(unterminated, 0, unterminated.length))).toBe(22);
    const badUtf8 = new Uint8Array([0, 0, 0, 0, 0xff, 0xfe, 0]);
    expect(errnoOfThrow(() => decodeVersion(badUtf8, 0, badUtf8.length))).toBe(22);
  });

  it('parses QEMU-style (wrapped) and old cloud-hypervisor-style (top-level) capabilities', () => {
    const qemu = parseCapabilities(
      '{"capabilities":{"migration":{"pgsize":4096},"max_msg_fds":16,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"write_multiple":true}}',
    );
    expect(qemu).toEqual({
      maxMsgFds: 16,
      maxDataXferSize: 1048576,
      pgsizes: 4096,
      maxDmaMaps: 65535,
      writeMultiple: true,
    });
    const oldCh = parseCapabilities('{"max_msg_fds":1,"max_data_xfer_size":1048576,"migration":{"pgsize":4096}}');
    expect(oldCh).toEqual({ maxMsgFds: 1, maxDataXferSize: 1048576 });
    expect(parseCapabilities(undefined)).toEqual({});
    expect(parseCapabilities('{"capabilities":{},"future_thing":[1,2]}')).toEqual({});
  });

  it('rejects malformed capability JSON with EINVAL', () => {
    for (const json of [
      '{',
      '[]',
      'null',
      '42',
      '{"capabilities":5}',
      '{"capabilities":{"max_msg_fds":-1}}',
      '{"capabilities":{"max_msg_fds":"8"}}',
      '{"capabilities":{"pgsizes":1.5}}',
      '{"capabilities":{"write_multiple":1}}',
    ]) {
      expect(
        errnoOfThrow(() => parseCapabilities(json)),
        json,
      ).toBe(22);
    }
  });

  it('emits capabilities in the shape QEMU checks: a "capabilities" object, pgsizes inside it, no migration', () => {
    const json = capabilitiesJson({ maxMsgFds: 16, maxDataXferSize: 1 << 20, maxDmaMaps: 1024, pgsizes: 4096 });
    const parsed = JSON.parse(json) as { capabilities: Record<string, unknown> };
    expect(parsed.capabilities).toEqual({
      max_msg_fds: 16,
      max_data_xfer_size: 1 << 20,
      max_dma_maps: 1024,
      pgsizes: 4096,
      write_multiple: false,
    });
    expect(parseCapabilities(json)).toEqual({
      maxMsgFds: 16,
      maxDataXferSize: 1 << 20,
      maxDmaMaps: 1024,
      pgsizes: 4096,
      writeMultiple: false,
    });
  });
});

describe('fixed structures', () => {
  it('DMA_MAP: 32-byte body with 64-bit offset, address and size', () => {
    const message = encodeDmaMap(3, { flags: 3, offset: 0x2000, address: 0x1_0000_0000, size: 0x4000_0000 });
    expect(message.length).toBe(HEADER_SIZE + BodySize.DMA_MAP);
    expect(readDmaMap(viewOf(message), HEADER_SIZE)).toEqual({
      argsz: 32,
      flags: 3,
      offset: 0x2000,
      address: 0x1_0000_0000,
      size: 0x4000_0000,
    });
    // address at body offset 16, size at 24 (spec layout)
    expect(viewOf(message).getUint32(HEADER_SIZE + 20, true)).toBe(1);
    expect(viewOf(message).getUint32(HEADER_SIZE + 24, true)).toBe(0x4000_0000);
  });

  it('DMA_UNMAP: 24-byte body', () => {
    const message = encodeDmaUnmap(4, { flags: 2, address: 0, size: 0 });
    expect(message.length).toBe(HEADER_SIZE + BodySize.DMA_UNMAP);
    expect(readDmaUnmap(viewOf(message), HEADER_SIZE)).toEqual({ argsz: 24, flags: 2, address: 0, size: 0 });
  });

  it('DEVICE_GET_INFO and DEVICE_GET_IRQ_INFO round-trip', () => {
    const info = { argsz: 16, flags: 3, numRegions: 9, numIrqs: 5 };
    expect(readDeviceInfo(viewOf(encodeDeviceInfo(1, info)), HEADER_SIZE)).toEqual(info);
    const irq = { argsz: 16, flags: 9, index: 2, count: 64 };
    expect(readIrqInfo(viewOf(encodeIrqInfo(1, irq)), HEADER_SIZE)).toEqual(irq);
  });

  it('DEVICE_SET_IRQS carries DATA_BOOL bytes after the 20-byte structure and counts them in argsz', () => {
    const bools = new Uint8Array([1, 0, 1]);
    const message = encodeIrqSet(9, { flags: 0x22, index: 2, start: 4, count: 3 }, bools);
    expect(message.length).toBe(HEADER_SIZE + BodySize.IRQ_SET + 3);
    expect(readIrqSet(viewOf(message), HEADER_SIZE)).toEqual({ argsz: 23, flags: 0x22, index: 2, start: 4, count: 3 });
    expect([...message.subarray(HEADER_SIZE + BodySize.IRQ_SET)]).toEqual([1, 0, 1]);
  });

  it('REGION_READ/WRITE: offset, region, count, then the data', () => {
    const data = new Uint8Array([9, 8, 7, 6]);
    const write = encodeRegionAccess(
      5,
      Command.REGION_WRITE,
      { offset: 0x1_0000_1000, region: 0, count: 4 },
      data,
      HeaderFlag.NO_REPLY,
    );
    expect(readHeader(viewOf(write), 0).flags).toBe(HeaderFlag.NO_REPLY);
    expect(readRegionAccess(viewOf(write), HEADER_SIZE)).toEqual({ offset: 0x1_0000_1000, region: 0, count: 4 });
    expect([...write.subarray(HEADER_SIZE + 16)]).toEqual([9, 8, 7, 6]);
    const read = encodeRegionAccess(6, Command.REGION_READ, { offset: 4, region: 7, count: 2 });
    expect(read.length).toBe(HEADER_SIZE + 16);
  });
});

describe('region info and the sparse mmap capability', () => {
  function regionInfoWithCap(areas: Array<{ offset: number; size: number }>): DataView {
    const bytes = new Uint8Array(BodySize.REGION_INFO + sparseMmapCapSize(areas.length));
    const view = viewOf(bytes);
    writeRegionInfo(view, 0, {
      argsz: bytes.length,
      flags: 0xf,
      index: 0,
      capOffset: 32,
      size: 0x4000,
      offset: 0x10000,
    });
    const written = writeSparseMmapCap(view, 32, areas);
    expect(written).toBe(sparseMmapCapSize(areas.length));
    return view;
  }

  it('lays out id 1, version 1, next 0, nr_areas, reserved, then {offset, size} pairs', () => {
    const view = regionInfoWithCap([
      { offset: 0x1000, size: 0x1000 },
      { offset: 0x3000, size: 0x1000 },
    ]);
    expect(view.getUint16(32, true)).toBe(1);
    expect(view.getUint16(34, true)).toBe(1);
    expect(view.getUint32(36, true)).toBe(0);
    expect(view.getUint32(40, true)).toBe(2);
    expect(getU64(view, 48)).toBe(0x1000);
    expect(getU64(view, 64)).toBe(0x3000);
    expect(readRegionInfo(view, 0)).toEqual({
      argsz: 80,
      flags: 0xf,
      index: 0,
      capOffset: 32,
      size: 0x4000,
      offset: 0x10000,
    });
    expect(readSparseMmapAreas(view, 32)).toEqual([
      { offset: 0x1000, size: 0x1000 },
      { offset: 0x3000, size: 0x1000 },
    ]);
  });

  it('encodes a region-info request with the argsz the client offers', () => {
    const message = encodeRegionInfo(2, { argsz: 1024, flags: 0, index: 7, capOffset: 0, size: 0, offset: 0 });
    expect(readRegionInfo(viewOf(message), HEADER_SIZE)).toMatchObject({ argsz: 1024, index: 7 });
  });

  it('rejects capability chains that point outside the reply, loop or overrun', () => {
    const view = regionInfoWithCap([{ offset: 0, size: 0x1000 }]);
    expect(errnoOfThrow(() => readSparseMmapAreas(view, 200))).toBe(22);
    expect(errnoOfThrow(() => readSparseMmapAreas(view, 8))).toBe(22);
    // Claim more areas than the data holds.
    view.setUint32(40, 1000, true);
    expect(errnoOfThrow(() => readSparseMmapAreas(view, 32))).toBe(22);
    // A chain of an unknown cap pointing to itself.
    view.setUint16(32, 99, true);
    view.setUint32(36, 32, true);
    expect(errnoOfThrow(() => readSparseMmapAreas(view, 32))).toBe(22);
  });

  it('returns undefined when the chain holds no sparse-mmap capability', () => {
    const view = regionInfoWithCap([{ offset: 0, size: 0x1000 }]);
    view.setUint16(32, 3, true); // another capability id, next = 0
    expect(readSparseMmapAreas(view, 32)).toBeUndefined();
  });
});
