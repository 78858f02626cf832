import { beforeEach, describe, expect, it } from 'vitest';
import { MemoryNamespace } from '../../../src/namespace/memory.js';
import { NamespaceError } from '../../../src/namespace/namespace.js';
import { MAX_NSID } from '../../../src/nvme/namespaces.js';
import { AdminOpcode, AsyncEvent, FeatureId, IoOpcode, LogPageId, Status } from '../../../src/spec/nvme.js';
import { createHarness, GatedNamespace, namespaceIds, pattern, RAM_IOVA, RAM_SIZE, TEST_IDENTITY, type Harness } from '../../helpers/nvme-harness.js';

const NSID_BROADCAST = 0xffffffff;

function ascii(bytes: Uint8Array, offset: number, length: number): string {
  return Buffer.from(bytes.subarray(offset, offset + length)).toString('latin1');
}

function hex(bytes: Uint8Array, offset: number, length: number): string {
  return Buffer.from(bytes.subarray(offset, offset + length)).toString('hex');
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function u64(bytes: Uint8Array, offset: number): number {
  return Number(view(bytes).getBigUint64(offset, true));
}

async function enabled(options: Parameters<typeof createHarness>[0] = {}): Promise<Harness> {
  const h = createHarness(options);
  await h.driver.enable();
  return h;
}

describe('Identify', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await enabled();
  });

  it('CNS 01h: Identify Controller reports identity, limits and capabilities', async () => {
    const { completion, data } = await h.driver.identify(0x01);
    expect(completion.status).toBe(Status.SUCCESS);
    const d = view(data);
    expect(d.getUint16(0, true)).toBe(0x4e58); // VID (default)
    expect(ascii(data, 4, 20)).toBe('VFIOD-TEST-0001'.padEnd(20, ' '));
    expect(ascii(data, 24, 40)).toBe('vfiod test controller'.padEnd(40, ' '));
    expect(ascii(data, 64, 8)).toBe('1.2.3   ');
    expect([data[73], data[74], data[75]]).toEqual([0x00, 0x54, 0x52]); // OUI 52:54:00, LSB first
    expect(data[77]).toBe(8); // MDTS
    expect(d.getUint16(78, true)).toBe(7); // CNTLID
    expect(d.getUint32(80, true)).toBe(0x00010400); // VER
    expect(d.getUint32(92, true)).toBe(1 << 8); // OAES: namespace attribute notices
    expect(data[111]).toBe(1); // CNTRLTYPE: I/O controller
    expect(d.getUint16(256, true)).toBe(1 << 8); // OACS: Doorbell Buffer Config
    expect(data[258]).toBe(3); // ACL
    expect(data[259]).toBe(3); // AERL
    expect(data[260]).toBe(0x03); // FRMW: 1 slot, slot 1 read-only
    expect(data[261]).toBe(0x06); // LPA: effects log, extended data
    expect(data[262]).toBe(63); // ELPE
    expect(data[263]).toBe(0); // NPSS
    expect(d.getUint16(266, true)).toBe(343); // WCTEMP
    expect(d.getUint16(268, true)).toBe(373); // CCTEMP
    expect(d.getUint16(320, true)).toBe(1); // KAS
    expect(data[512]).toBe(0x66); // SQES
    expect(data[513]).toBe(0x44); // CQES
    expect(d.getUint32(516, true)).toBe(MAX_NSID); // NN: the highest NSID a runtime attach may take
    // ONCS: Compare, DSM, Write Zeroes, Save/Select, Timestamp, Verify.
    expect(d.getUint16(520, true)).toBe(0b1101_1101);
    expect(data[525]).toBe(0); // VWC: memory namespaces have no volatile cache
    expect(d.getUint32(536, true)).toBe(0x00050001); // SGLS
    expect(ascii(data, 768, TEST_IDENTITY.subsystemNqn.length)).toBe(TEST_IDENTITY.subsystemNqn);
    expect(data[768 + TEST_IDENTITY.subsystemNqn.length]).toBe(0);
    expect(d.getUint16(2048, true)).toBeGreaterThan(0); // power state 0 max power
  });

  it('CNS 01h: identities at their limits fill their fields exactly; the firmware log page repeats the revision', async () => {
    const nqn = `nqn.2014-08.com.example:${'n'.repeat(223 - 'nqn.2014-08.com.example:'.length)}`;
    const identity = { serialNumber: 'S'.repeat(20), modelNumber: 'M'.repeat(40), firmwareRevision: 'F'.repeat(8), subsystemNqn: nqn, ieeeOui: 0xffffff, controllerId: 0xffef };
    const other = await enabled({ identity });
    const { data } = await other.driver.identify(0x01);
    expect(ascii(data, 4, 20)).toBe(identity.serialNumber);
    expect(ascii(data, 24, 40)).toBe(identity.modelNumber);
    expect(ascii(data, 64, 8)).toBe(identity.firmwareRevision);
    expect(data[72]).toBe(6); // RAB, right after FR: untouched by it
    expect([data[73], data[74], data[75]]).toEqual([0xff, 0xff, 0xff]);
    expect(data[76]).toBe(0); // CMIC, right after the OUI
    expect(view(data).getUint16(78, true)).toBe(0xffef);
    expect(ascii(data, 768, 223)).toBe(nqn);
    expect(data[768 + 223]).toBe(0); // NUL-terminated within its 256 bytes
    expect(ascii((await other.driver.getLogPage(LogPageId.FIRMWARE_SLOT, 512)).data, 8, 8)).toBe(identity.firmwareRevision);
  });

  it('CNS 00h/03h: a namespace shows the ids of its slot whatever backs it; only the capacity comes from the backing', async () => {
    const small = await enabled({ namespaces: [new MemoryNamespace({ sizeBytes: 1 << 20, blockSize: 4096 })] });
    const large = await enabled({ namespaces: [new MemoryNamespace({ sizeBytes: 8 << 20, blockSize: 4096 })] });
    const [a, b] = [await small.driver.identify(0x00, 1), await large.driver.identify(0x00, 1)];
    expect([u64(a.data, 0), u64(b.data, 0)]).toEqual([256, 2048]); // NSZE
    expect(Buffer.from(a.data.subarray(24)).equals(Buffer.from(b.data.subarray(24)))).toBe(true);
    expect(hex(a.data, 104, 16)).toBe(namespaceIds(1).nguid);
    expect(view(a.data).getUint32(128, true)).toBe(12 << 16); // LBA format 0: 4096-byte blocks
    const [listA, listB] = [await small.driver.identify(0x03, 1), await large.driver.identify(0x03, 1)];
    expect(Buffer.from(listA.data).equals(Buffer.from(listB.data))).toBe(true);
  });

  it('CNS 01h: MDTS follows the option and the namespaces’ transfer limits; VWC follows the namespaces', async () => {
    const limited = Object.assign(new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }), { volatileWriteCache: true }), {
      maxTransferBytes: 128 * 1024,
    });
    const other = await enabled({ namespaces: [limited], mdtsPages: 0 });
    const { data } = await other.driver.identify(0x01);
    expect(data[77]).toBe(5); // 2^5 pages = 128 KiB
    expect(data[525]).toBe(0x07); // present, flush broadcast supported
    const small = await enabled({ mdtsPages: 2 });
    expect((await small.driver.identify(0x01)).data[77]).toBe(2);
  });

  it('CNS 00h: Identify Namespace reports size, format and identifiers', async () => {
    for (const [nsid, blockSize, blocks] of [
      [1, 512, 8192],
      [2, 4096, 2048],
    ] as const) {
      const { completion, data } = await h.driver.identify(0x00, nsid);
      expect(completion.status).toBe(Status.SUCCESS);
      expect(u64(data, 0)).toBe(blocks); // NSZE
      expect(u64(data, 8)).toBe(blocks); // NCAP
      expect(u64(data, 16)).toBe(blocks); // NUSE
      expect(data[24]).toBe(0); // NSFEAT: not thin
      expect(data[25]).toBe(0); // NLBAF
      expect(data[26]).toBe(0); // FLBAS
      expect(data[33]).toBe(0x01); // DLFEAT: deallocated blocks read as zeroes (memory drops or zero-fills them)
      expect(view(data).getUint32(128, true)).toBe(Math.log2(blockSize) << 16); // LBAF0
      expect(hex(data, 104, 16)).toBe(namespaceIds(nsid).nguid);
      expect(hex(data, 120, 8)).toBe(namespaceIds(nsid).eui64);
    }
  });

  it('CNS 00h: a thin namespace reports NUSE from its usage and deallocated blocks reading as zero', async () => {
    const thin = new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }), { supportsDeallocate: true });
    const other = await enabled({ namespaces: [thin] });
    const { data } = await other.driver.identify(0x00, 1);
    expect(u64(data, 16)).toBe(3);
    expect(data[24]! & 1).toBe(1);
    expect(data[33]).toBe(0x09);
  });

  it('CNS 00h/03h/05h/08h: invalid NSIDs fail with Invalid Namespace or Format; CNS 00h of an inactive NSID is all zeroes', async () => {
    for (const cns of [0x00, 0x03, 0x08]) {
      for (const nsid of [0, MAX_NSID + 1, 0x12345, NSID_BROADCAST]) {
        expect((await h.driver.identify(cns, nsid)).completion.status).toBe(Status.INVALID_NAMESPACE_OR_FORMAT);
      }
    }
    for (const cns of [0x03, 0x08]) expect((await h.driver.identify(cns, 3)).completion.status).toBe(Status.INVALID_NAMESPACE_OR_FORMAT);
    // NSID 3 is valid (at most NN) but not attached: the spec's zero-filled structure, not an error.
    const inactive = await h.driver.identify(0x00, 3);
    expect(inactive.completion.status).toBe(Status.SUCCESS);
    expect(inactive.data.every((byte) => byte === 0)).toBe(true);
    expect((await h.driver.identify(0x05, 9)).completion.status).toBe(Status.INVALID_NAMESPACE_OR_FORMAT);
  });

  it('CNS 02h/07h: active namespace lists start after the given NSID', async () => {
    const list = async (cns: number, nsid: number): Promise<number[]> => {
      const { completion, data } = await h.driver.identify(cns, nsid);
      expect(completion.status).toBe(Status.SUCCESS);
      const ids: number[] = [];
      for (let offset = 0; offset < 4096; offset += 4) {
        const id = view(data).getUint32(offset, true);
        if (id === 0) break;
        ids.push(id);
      }
      return ids;
    };
    expect(await list(0x02, 0)).toEqual([1, 2]);
    expect(await list(0x02, 1)).toEqual([2]);
    expect(await list(0x02, 2)).toEqual([]);
    expect(await list(0x07, 0)).toEqual([1, 2]);
    expect((await h.driver.identify(0x02, 0xfffffffe)).completion.status).toBe(Status.INVALID_NAMESPACE_OR_FORMAT);
    expect((await h.driver.identify(0x02, NSID_BROADCAST)).completion.status).toBe(Status.INVALID_NAMESPACE_OR_FORMAT);
    expect((await h.driver.identify(0x07, 0, { cdw11: 2 << 24 })).completion.status).toBe(Status.INVALID_FIELD);
  });

  it('CNS 03h: namespace identification descriptors carry EUI-64, NGUID, UUID and the NVM command set', async () => {
    const { completion, data } = await h.driver.identify(0x03, 2);
    expect(completion.status).toBe(Status.SUCCESS);
    const ids = namespaceIds(2);
    expect([data[0], data[1]]).toEqual([1, 8]);
    expect(hex(data, 4, 8)).toBe(ids.eui64);
    expect([data[12], data[13]]).toEqual([2, 16]);
    expect(hex(data, 16, 16)).toBe(ids.nguid);
    expect([data[32], data[33]]).toEqual([3, 16]);
    expect(hex(data, 36, 16)).toBe(ids.uuid.replace(/-/g, ''));
    expect([data[52], data[53], data[56]]).toEqual([4, 1, 0]);
    expect(data[57]).toBe(0); // end of list
  });

  it('CNS 05h/06h/08h/1Ch: command set structures for the NVM command set', async () => {
    const ns = await h.driver.identify(0x05, 1);
    expect(ns.completion.status).toBe(Status.SUCCESS);
    expect(ns.data.every((byte) => byte === 0)).toBe(true);
    expect((await h.driver.identify(0x05, 1, { cdw11: 1 << 24 })).completion.status).toBe(Status.INVALID_FIELD);
    const ctrl = await h.driver.identify(0x06);
    expect(ctrl.completion.status).toBe(Status.SUCCESS);
    expect((await h.driver.identify(0x06, 0, { cdw11: 2 << 24 })).completion.status).toBe(Status.INVALID_FIELD);
    const independent = await h.driver.identify(0x08, 1);
    expect(independent.completion.status).toBe(Status.SUCCESS);
    expect(independent.data[14]).toBe(1); // NSTAT: ready
    const sets = await h.driver.identify(0x1c);
    expect(sets.completion.status).toBe(Status.SUCCESS);
    expect(u64(sets.data, 0)).toBe(1); // NVM only
    expect(u64(sets.data, 8)).toBe(0);
  });

  it('CNS 00h/08h: a read-only namespace is reported write protected (NSATTR bit 0), and writes to it fail', async () => {
    const h = await enabled({
      namespaces: [
        new MemoryNamespace({ sizeBytes: 1 << 20 }),
        new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }), { readOnly: true }),
      ],
    });
    const nsattr = async (cns: number, nsid: number, offset: number): Promise<number> => {
      const { completion, data } = await h.driver.identify(cns, nsid);
      expect(completion.status).toBe(Status.SUCCESS);
      return data[offset]!;
    };
    expect([await nsattr(0x00, 1, 99), await nsattr(0x00, 2, 99)]).toEqual([0, 1]);
    expect([await nsattr(0x08, 1, 8), await nsattr(0x08, 2, 8)]).toEqual([0, 1]);
    await h.driver.createIoQueuePair(1, 16, 1);
    expect((await h.driver.write(2, 0, pattern(512, 1))).status).toBe(Status.NAMESPACE_WRITE_PROTECTED);
    expect((await h.driver.write(1, 0, pattern(512, 1))).status).toBe(Status.SUCCESS);
  });

  it('rejects unknown CNS values and bad data pointers', async () => {
    for (const cns of [0x04, 0x10, 0x13, 0x1f, 0xff]) {
      expect((await h.driver.identify(cns)).completion.status).toBe(Status.INVALID_FIELD);
    }
    // PRP1 with a page offset needs PRP2 for the rest: the helper provides it, and the data arrive intact.
    const offset = await h.driver.getLogPage(LogPageId.FIRMWARE_SLOT, 512, { bufferOffset: 4000 });
    expect(offset.completion.status).toBe(Status.SUCCESS);
    expect(ascii(offset.data, 8, 8)).toBe('1.2.3   ');
    // Unmapped PRP1.
    const unmapped = await h.driver.submit(0, { opcode: AdminOpcode.IDENTIFY, cdw10: 1, prp1: RAM_IOVA + RAM_SIZE });
    expect(unmapped.status).toBe(Status.DATA_TRANSFER_ERROR);
    // PRP1 not dword aligned.
    const unaligned = await h.driver.submit(0, { opcode: AdminOpcode.IDENTIFY, cdw10: 1, prp1: h.driver.alloc(8192) + 2 });
    expect(unaligned.status).toBe(Status.PRP_OFFSET_INVALID);
  });
});

describe('admin command dispatch', () => {
  it('rejects unsupported opcodes, fused admin commands and SGLs on the admin queue', async () => {
    const h = await enabled();
    for (const opcode of [AdminOpcode.FORMAT_NVM, AdminOpcode.NAMESPACE_MANAGEMENT, AdminOpcode.FIRMWARE_COMMIT, 0x03, 0xff]) {
      expect((await h.driver.submit(0, { opcode })).status).toBe(Status.INVALID_OPCODE);
    }
    const prp = h.driver.alloc(4096);
    expect((await h.driver.submit(0, { opcode: AdminOpcode.IDENTIFY, cdw10: 1, prp1: prp, flags: 0x01 })).status).toBe(
      Status.INVALID_FIELD,
    );
    expect((await h.driver.submit(0, { opcode: AdminOpcode.IDENTIFY, cdw10: 1, prp1: prp, flags: 0x40 })).status).toBe(
      Status.INVALID_FIELD,
    );
  });

  it('Abort reports "not aborted" (commands run as soon as they are fetched); Keep Alive succeeds', async () => {
    const h = await enabled();
    const abort = await h.driver.submit(0, { opcode: AdminOpcode.ABORT, cdw10: 1 | (5 << 16) });
    expect(abort.status).toBe(Status.SUCCESS);
    expect(abort.dw0 & 1).toBe(1);
    expect((await h.driver.submit(0, { opcode: AdminOpcode.KEEP_ALIVE })).status).toBe(Status.SUCCESS);
  });

  it('accepts AERL + 1 outstanding Asynchronous Event Requests and refuses more', async () => {
    const h = await enabled();
    for (let index = 0; index < 4; index++) h.driver.place(0, { opcode: AdminOpcode.ASYNC_EVENT_REQUEST });
    const extra = h.driver.place(0, { opcode: AdminOpcode.ASYNC_EVENT_REQUEST });
    await h.driver.ringSubmission(0);
    const completions = await h.driver.reap(0);
    expect(completions).toHaveLength(1);
    expect(completions[0]).toMatchObject({ cid: extra, status: Status.ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED });
    expect(h.controller.stats().asyncEventRequestsOutstanding).toBe(4);
  });
});

describe('Get / Set Features', () => {
  it('Number of Queues: grants min(requested, maximum), then is fixed once I/O queues exist', async () => {
    const h = await enabled({ maxIoQueuePairs: 8 });
    const get = async (select = 0): Promise<number> => (await h.driver.getFeatures(FeatureId.NUMBER_OF_QUEUES, { select })).completion.dw0;
    expect(await get()).toBe(7 | (7 << 16));
    const grant = await h.driver.setFeatures(FeatureId.NUMBER_OF_QUEUES, 3 | (63 << 16));
    expect(grant.status).toBe(Status.SUCCESS);
    expect(grant.dw0).toBe(3 | (7 << 16));
    expect(await get()).toBe(3 | (7 << 16));
    expect(await get(1)).toBe(7 | (7 << 16)); // default
    expect((await h.driver.setFeatures(FeatureId.NUMBER_OF_QUEUES, 0xffff)).status).toBe(Status.INVALID_FIELD);
    // SQ 5 exceeds the 4 granted submission queues; CQ 5 is within the 8 completion queues.
    expect((await h.driver.createIoCompletionQueue(5, 16, 1)).status).toBe(Status.SUCCESS);
    expect((await h.driver.createIoSubmissionQueue(5, 16, 5)).status).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    expect((await h.driver.setFeatures(FeatureId.NUMBER_OF_QUEUES, 7 | (7 << 16))).status).toBe(
      Status.COMMAND_SEQUENCE_ERROR,
    );
    // A controller reset starts over.
    await h.driver.enable();
    expect((await h.driver.setFeatures(FeatureId.NUMBER_OF_QUEUES, 1 | (1 << 16))).dw0).toBe(1 | (1 << 16));
  });

  it('Select: current, default, saved and supported capabilities; nothing is saveable', async () => {
    const h = await enabled();
    expect((await h.driver.setFeatures(FeatureId.INTERRUPT_COALESCING, 0x0a05)).status).toBe(Status.SUCCESS);
    const get = async (select: number): Promise<number> =>
      (await h.driver.getFeatures(FeatureId.INTERRUPT_COALESCING, { select })).completion.dw0;
    expect(await get(0)).toBe(0x0a05);
    expect(await get(1)).toBe(0);
    expect(await get(2)).toBe(0);
    expect(await get(3)).toBe(0b100); // changeable, not saveable, not namespace specific
    expect((await h.driver.getFeatures(FeatureId.ERROR_RECOVERY, { select: 3 })).completion.dw0).toBe(0b110);
    expect((await h.driver.getFeatures(FeatureId.INTERRUPT_COALESCING, { select: 4 })).completion.status).toBe(
      Status.INVALID_FIELD,
    );
    expect((await h.driver.setFeatures(FeatureId.INTERRUPT_COALESCING, 1, { save: true })).status).toBe(
      Status.FEATURE_NOT_SAVEABLE,
    );
  });

  it('rejects unknown and unsupported features', async () => {
    const h = await enabled();
    for (const fid of [0x00, FeatureId.LBA_RANGE_TYPE, FeatureId.AUTONOMOUS_POWER_STATE_TRANSITION, FeatureId.HOST_MEMORY_BUFFER, 0x7f, 0xff]) {
      expect((await h.driver.getFeatures(fid)).completion.status).toBe(Status.INVALID_FIELD);
      expect((await h.driver.setFeatures(fid, 0)).status).toBe(Status.INVALID_FIELD);
    }
    // Volatile Write Cache exists only when a namespace has one.
    expect((await h.driver.getFeatures(FeatureId.VOLATILE_WRITE_CACHE)).completion.status).toBe(Status.INVALID_FIELD);
    // Controller-wide features refuse a specific namespace.
    expect((await h.driver.setFeatures(FeatureId.ARBITRATION, 0, { nsid: 1 })).status).toBe(
      Status.FEATURE_NOT_NAMESPACE_SPECIFIC,
    );
    expect((await h.driver.setFeatures(FeatureId.ERROR_RECOVERY, 10, { nsid: 1 })).status).toBe(Status.SUCCESS);
    expect((await h.driver.setFeatures(FeatureId.ERROR_RECOVERY, 10, { nsid: 7 })).status).toBe(
      Status.INVALID_NAMESPACE_OR_FORMAT,
    );
  });

  it('validates and stores the simple features', async () => {
    const h = await enabled({ vectorCount: 4 });
    const roundTrip = async (fid: number, value: number, expected = value, cdw11ForGet = 0): Promise<void> => {
      expect((await h.driver.setFeatures(fid, value)).status).toBe(Status.SUCCESS);
      expect((await h.driver.getFeatures(fid, { cdw11: cdw11ForGet })).completion.dw0).toBe(expected);
    };
    await roundTrip(FeatureId.ARBITRATION, 0x03020103);
    await roundTrip(FeatureId.POWER_MANAGEMENT, 0);
    await roundTrip(FeatureId.ERROR_RECOVERY, 0x1234);
    await roundTrip(FeatureId.WRITE_ATOMICITY_NORMAL, 1);
    await roundTrip(FeatureId.ASYNC_EVENT_CONFIGURATION, 0x3ff, 0x11f); // unsupported bits dropped
    await roundTrip(FeatureId.KEEP_ALIVE_TIMER, 0, 0);
    await roundTrip(FeatureId.SOFTWARE_PROGRESS_MARKER, 0x1a5, 0xa5);
    await roundTrip(FeatureId.INTERRUPT_VECTOR_CONFIGURATION, 2 | (1 << 16), 2 | (1 << 16), 2);
    expect((await h.driver.getFeatures(FeatureId.INTERRUPT_VECTOR_CONFIGURATION, { cdw11: 3 })).completion.dw0).toBe(3);
    expect((await h.driver.getFeatures(FeatureId.INTERRUPT_VECTOR_CONFIGURATION, { cdw11: 0 })).completion.dw0).toBe(
      1 << 16,
    );
    for (const [fid, value] of [
      [FeatureId.POWER_MANAGEMENT, 1], // only power state 0
      [FeatureId.POWER_MANAGEMENT, 1 << 5], // no workload hints
      [FeatureId.ERROR_RECOVERY, 1 << 16], // DULBE unsupported
      [FeatureId.INTERRUPT_VECTOR_CONFIGURATION, 4], // vector out of range
      [FeatureId.TEMPERATURE_THRESHOLD, 300 | (1 << 16)], // sensor 1 does not exist
      [FeatureId.TEMPERATURE_THRESHOLD, 300 | (2 << 20)], // reserved threshold type
    ] as const) {
      expect((await h.driver.setFeatures(fid, value)).status).toBe(Status.INVALID_FIELD);
    }
    expect((await h.driver.getFeatures(FeatureId.INTERRUPT_VECTOR_CONFIGURATION, { cdw11: 4 })).completion.status).toBe(
      Status.INVALID_FIELD,
    );
  });

  it('Keep Alive Timer rounds up to the 100 ms granularity', async () => {
    const h = await enabled();
    expect((await h.driver.setFeatures(FeatureId.KEEP_ALIVE_TIMER, 150_001)).status).toBe(Status.SUCCESS);
    expect((await h.driver.getFeatures(FeatureId.KEEP_ALIVE_TIMER)).completion.dw0).toBe(150_100);
    await h.driver.setFeatures(FeatureId.KEEP_ALIVE_TIMER, 0);
  });

  it('Temperature Threshold: over and under thresholds drive the SMART critical warning and event', async () => {
    const h = await enabled();
    const threshold = async (kind: number): Promise<number> =>
      (await h.driver.getFeatures(FeatureId.TEMPERATURE_THRESHOLD, { cdw11: kind << 20 })).completion.dw0;
    expect(await threshold(0)).toBe(343);
    expect(await threshold(1)).toBe(0);
    const aer = h.driver.place(0, { opcode: AdminOpcode.ASYNC_EVENT_REQUEST });
    await h.driver.ringSubmission(0);
    expect((await h.driver.setFeatures(FeatureId.ASYNC_EVENT_CONFIGURATION, 0x2)).status).toBe(Status.SUCCESS);
    // Under threshold above the current 313 K: warning.
    expect((await h.driver.setFeatures(FeatureId.TEMPERATURE_THRESHOLD, 320 | (1 << 20))).status).toBe(Status.SUCCESS);
    expect(await threshold(1)).toBe(320);
    const event = await h.driver.wait(0, aer);
    expect(event.dw0).toBe(AsyncEvent.TYPE_SMART | (0x01 << 8) | (LogPageId.SMART_HEALTH << 16));
    const smart = await h.driver.getLogPage(LogPageId.SMART_HEALTH, 512);
    expect(smart.data[0]).toBe(0x02);
    // Back to normal ("all sensors" = the composite one here).
    expect((await h.driver.setFeatures(FeatureId.TEMPERATURE_THRESHOLD, 0 | (0xf << 16) | (1 << 20))).status).toBe(
      Status.SUCCESS,
    );
    expect((await h.driver.getLogPage(LogPageId.SMART_HEALTH, 512)).data[0]).toBe(0);
  });

  it('Timestamp and Host Identifier carry data buffers', async () => {
    const h = await enabled();
    const before = await h.driver.getFeatures(FeatureId.TIMESTAMP, { dataLength: 8 });
    expect(before.completion.status).toBe(Status.SUCCESS);
    expect((before.data[6]! >>> 1) & 7).toBe(0); // origin: since reset
    const stamp = new Uint8Array(8);
    new DataView(stamp.buffer).setBigUint64(0, 1_700_000_000_000n, true);
    expect((await h.driver.setFeatures(FeatureId.TIMESTAMP, 0, { data: stamp })).status).toBe(Status.SUCCESS);
    const after = await h.driver.getFeatures(FeatureId.TIMESTAMP, { dataLength: 8 });
    const value = Number(new DataView(after.data.buffer).getBigUint64(0, true) & 0xffff_ffff_ffffn);
    expect(value).toBeGreaterThanOrEqual(1_700_000_000_000);
    expect(value).toBeLessThan(1_700_000_000_000 + 5_000);
    expect((after.data[6]! >>> 1) & 7).toBe(1); // set by the host

    const hostId = pattern(8, 77);
    expect((await h.driver.setFeatures(FeatureId.HOST_IDENTIFIER, 0, { data: hostId })).status).toBe(Status.SUCCESS);
    const readBack = await h.driver.getFeatures(FeatureId.HOST_IDENTIFIER, { dataLength: 8 });
    expect([...readBack.data]).toEqual([...hostId]);
    // 128-bit host identifiers are not supported.
    expect((await h.driver.setFeatures(FeatureId.HOST_IDENTIFIER, 1, { data: pattern(16, 1) })).status).toBe(
      Status.INVALID_FIELD,
    );
    expect((await h.driver.getFeatures(FeatureId.HOST_IDENTIFIER, { cdw11: 1, dataLength: 16 })).completion.status).toBe(
      Status.INVALID_FIELD,
    );
  });

  it('Volatile Write Cache: reported and toggled when a namespace has one', async () => {
    const cached = new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }), { volatileWriteCache: true });
    const h = await enabled({ namespaces: [cached] });
    expect((await h.driver.getFeatures(FeatureId.VOLATILE_WRITE_CACHE)).completion.dw0).toBe(1);
    expect((await h.driver.setFeatures(FeatureId.VOLATILE_WRITE_CACHE, 0)).status).toBe(Status.SUCCESS);
    expect((await h.driver.getFeatures(FeatureId.VOLATILE_WRITE_CACHE)).completion.dw0).toBe(0);
    expect((await h.driver.getFeatures(FeatureId.VOLATILE_WRITE_CACHE, { select: 1 })).completion.dw0).toBe(1);
  });

  it('Volatile Write Cache: with WCE = 0 every write is flushed before it completes', async () => {
    const cached = new GatedNamespace(new MemoryNamespace({ sizeBytes: 1 << 20 }), { volatileWriteCache: true });
    const h = await enabled({ namespaces: [cached] });
    await h.driver.createIoQueuePair(1, 16, 1);
    const data = pattern(1024, 1);
    const writeZeroes = { opcode: IoOpcode.WRITE_ZEROES, nsid: 1, cdw10: 8, cdw12: 1 };
    // Write-back by default: no flush.
    expect((await h.driver.write(1, 0, data)).status).toBe(Status.SUCCESS);
    expect(cached.flushes).toBe(0);
    expect((await h.driver.setFeatures(FeatureId.VOLATILE_WRITE_CACHE, 0)).status).toBe(Status.SUCCESS);
    expect((await h.driver.write(1, 0, data)).status).toBe(Status.SUCCESS);
    expect(cached.flushes).toBe(1);
    expect((await h.driver.submit(1, writeZeroes)).status).toBe(Status.SUCCESS);
    expect(cached.flushes).toBe(2);
    expect((await h.driver.read(1, 0, 2)).completion.status).toBe(Status.SUCCESS);
    expect(cached.flushes).toBe(2);
    // The write's status covers its flush: data that may not be durable is not reported written.
    cached.flushError = new NamespaceError('write', 'EIO');
    expect((await h.driver.write(1, 0, data)).status).toBe(Status.WRITE_FAULT);
    cached.flushError = undefined;
    // WCE = 1 again, and after a reset (back to the default): write-back.
    expect((await h.driver.setFeatures(FeatureId.VOLATILE_WRITE_CACHE, 1)).status).toBe(Status.SUCCESS);
    expect((await h.driver.write(1, 0, data)).status).toBe(Status.SUCCESS);
    expect(cached.flushes).toBe(3);
    expect((await h.driver.setFeatures(FeatureId.VOLATILE_WRITE_CACHE, 0)).status).toBe(Status.SUCCESS);
    await h.driver.enable();
    await h.driver.createIoQueuePair(1, 16, 1);
    expect((await h.driver.write(1, 0, data)).status).toBe(Status.SUCCESS);
    expect(cached.flushes).toBe(3);
  });
});

describe('I/O queue creation and deletion', () => {
  it('Create I/O CQ: every invalid request fails with the status the spec names', async () => {
    const h = await enabled({ maxIoQueuePairs: 4, maxQueueEntries: 64, vectorCount: 4 });
    const cq = (qid: number, entries: number, vector: number, options = {}) =>
      h.driver.createIoCompletionQueue(qid, entries, vector, options).then((completion) => completion.status);
    expect(await cq(0, 16, 0)).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    expect(await cq(5, 16, 0)).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    expect(await cq(1, 1, 0)).toBe(Status.INVALID_QUEUE_SIZE); // QSIZE 0
    expect(await cq(1, 65, 0)).toBe(Status.INVALID_QUEUE_SIZE); // > MQES + 1
    expect(await cq(1, 16, 0, { physicallyContiguous: false })).toBe(Status.INVALID_FIELD);
    expect(await cq(1, 16, 4)).toBe(Status.INVALID_INTERRUPT_VECTOR);
    expect(await cq(1, 16, 0, { iova: h.driver.alloc(8192) + 512 })).toBe(Status.INVALID_FIELD);
    expect(await cq(1, 64, 0, { iova: RAM_IOVA + RAM_SIZE - 512 })).toBe(Status.INVALID_FIELD); // runs off the end
    expect(await cq(1, 16, 0, { iova: RAM_IOVA + RAM_SIZE + 0x10000 })).toBe(Status.INVALID_FIELD);
    expect(await cq(1, 64, 3)).toBe(Status.SUCCESS);
    expect(await cq(1, 16, 0)).toBe(Status.INVALID_QUEUE_IDENTIFIER); // exists
    expect(await cq(4, 2, 0, { interruptsEnabled: false })).toBe(Status.SUCCESS);
  });

  it('Create I/O SQ: every invalid request fails with the status the spec names', async () => {
    const h = await enabled({ maxIoQueuePairs: 4, maxQueueEntries: 64 });
    const sq = (qid: number, entries: number, cqid: number, options = {}) =>
      h.driver.createIoSubmissionQueue(qid, entries, cqid, options).then((completion) => completion.status);
    expect((await h.driver.createIoCompletionQueue(2, 16, 1)).status).toBe(Status.SUCCESS);
    expect(await sq(0, 16, 2)).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    expect(await sq(5, 16, 2)).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    expect(await sq(1, 16, 0)).toBe(Status.COMPLETION_QUEUE_INVALID); // the admin CQ
    expect(await sq(1, 16, 3)).toBe(Status.COMPLETION_QUEUE_INVALID); // no such CQ
    expect(await sq(1, 1, 2)).toBe(Status.INVALID_QUEUE_SIZE);
    expect(await sq(1, 65, 2)).toBe(Status.INVALID_QUEUE_SIZE);
    expect(await sq(1, 16, 2, { physicallyContiguous: false })).toBe(Status.INVALID_FIELD);
    expect(await sq(1, 16, 2, { iova: h.driver.alloc(8192) + 64 })).toBe(Status.INVALID_FIELD);
    expect(await sq(1, 16, 2, { iova: 0x10 * 4096 })).toBe(Status.INVALID_FIELD); // below guest RAM: unmapped
    expect(await sq(1, 16, 2, { priority: 2 })).toBe(Status.SUCCESS);
    expect(await sq(1, 16, 2)).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    expect(await sq(3, 64, 2)).toBe(Status.SUCCESS); // two SQs may share a CQ
  });

  it('refuses I/O queues when CC.IOSQES / CC.IOCQES do not select 64 / 16 bytes', async () => {
    const h = createHarness();
    // The driver sets the right sizes; flip them to 128-byte SQEs / 32-byte CQEs.
    const csts = await h.driver.configureAdminQueues({ cc: (1 << 16) | (1 << 20) });
    expect(csts).toBe(1);
    expect((await h.driver.createIoCompletionQueue(1, 16, 1)).status).toBe(Status.INVALID_FIELD);
  });

  it('Delete I/O SQ / CQ: identifiers, order and the CQ-in-use rule', async () => {
    const h = await enabled();
    await h.driver.createIoQueuePair(1, 16, 1);
    const del = async (opcode: number, qid: number): Promise<number> => (await h.driver.submit(0, { opcode, cdw10: qid })).status;
    expect(await del(AdminOpcode.DELETE_IO_SQ, 0)).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    expect(await del(AdminOpcode.DELETE_IO_CQ, 0)).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    expect(await del(AdminOpcode.DELETE_IO_SQ, 2)).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    expect(await del(AdminOpcode.DELETE_IO_CQ, 2)).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    expect(await del(AdminOpcode.DELETE_IO_SQ, 0xffff)).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    expect(await del(AdminOpcode.DELETE_IO_CQ, 1)).toBe(Status.INVALID_QUEUE_DELETION);
    expect(await del(AdminOpcode.DELETE_IO_SQ, 1)).toBe(Status.SUCCESS);
    expect(await del(AdminOpcode.DELETE_IO_SQ, 1)).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    expect(await del(AdminOpcode.DELETE_IO_CQ, 1)).toBe(Status.SUCCESS);
    // Gone for good: its doorbell is now an invalid doorbell register, and the id can be reused.
    await h.driver.writeDoorbell(2, 1);
    expect(h.log.some((line) => String(line['msg']).includes('queue that does not exist'))).toBe(true);
    await h.driver.createIoQueuePair(1, 16, 1);
    expect((await h.driver.submit(1, { opcode: IoOpcode.FLUSH, nsid: 1 })).status).toBe(Status.SUCCESS);
    expect(h.controller.stats()).toMatchObject({ ioSubmissionQueues: 1, ioCompletionQueues: 1 });
  });
});

describe('Get Log Page', () => {
  it('Error Information: failed commands are logged newest first with SQ id, command id and status', async () => {
    const h = await enabled();
    await h.driver.createIoQueuePair(1, 16, 1);
    const bad = await h.driver.submit(1, { opcode: IoOpcode.READ, nsid: 1, cdw10: 0x10_0000, prp1: h.driver.alloc(4096) });
    expect(bad.status).toBe(Status.LBA_OUT_OF_RANGE);
    const badAdmin = await h.driver.identify(0x03, 9);
    expect(badAdmin.completion.status).toBe(Status.INVALID_NAMESPACE_OR_FORMAT);
    const { completion, data } = await h.driver.getLogPage(LogPageId.ERROR_INFORMATION, 4096);
    expect(completion.status).toBe(Status.SUCCESS);
    const d = view(data);
    // Newest: the admin Identify.
    expect(u64(data, 0)).toBe(2);
    expect(d.getUint16(8, true)).toBe(0);
    expect(d.getUint16(10, true)).toBe(badAdmin.completion.cid);
    expect(d.getUint16(12, true) >>> 1).toBe(Status.INVALID_NAMESPACE_OR_FORMAT);
    expect(d.getUint32(24, true)).toBe(9);
    // Then the read, with its LBA and namespace.
    expect(u64(data, 64)).toBe(1);
    expect(d.getUint16(64 + 8, true)).toBe(1);
    expect(d.getUint16(64 + 10, true)).toBe(bad.cid);
    expect(d.getUint16(64 + 12, true) >>> 1).toBe(Status.LBA_OUT_OF_RANGE);
    expect(d.getUint16(64 + 12, true) & 1).toBe(bad.phase);
    expect(u64(data, 64 + 16)).toBe(0x10_0000);
    expect(d.getUint32(64 + 24, true)).toBe(1);
    expect(u64(data, 128)).toBe(0);
    expect(h.controller.stats().errorLogEntries).toBe(2);
  });

  it('SMART / Health: counters follow the I/O done, temperature, spare and error count', async () => {
    const h = await enabled();
    await h.driver.createIoQueuePair(1, 64, 1);
    const smart = async (): Promise<Uint8Array> => {
      const { completion, data } = await h.driver.getLogPage(LogPageId.SMART_HEALTH, 512);
      expect(completion.status).toBe(Status.SUCCESS);
      return data;
    };
    const before = await smart();
    expect(view(before).getUint16(1, true)).toBe(313);
    expect([before[3], before[4], before[5]]).toEqual([100, 10, 0]);
    expect(u64(before, 32)).toBe(0);
    expect(u64(before, 112)).toBe(1); // power cycles
    // 1001 blocks of 512 bytes written = 1.001 data units -> 2 (rounded up); 3 write commands; 1 read.
    const data = pattern(512 * 1001, 5);
    expect((await h.driver.write(1, 0, data.subarray(0, 512 * 1000))).status).toBe(0);
    expect((await h.driver.write(1, 2000, data.subarray(0, 512))).status).toBe(0);
    expect((await h.driver.write(1, 3000, data.subarray(0, 512))).status).toBe(0);
    expect((await h.driver.read(1, 0, 8)).completion.status).toBe(0);
    await h.driver.submit(1, { opcode: 0x7f, nsid: 1 }); // one error
    const after = await smart();
    expect(u64(after, 32)).toBe(1); // data units read: 4096 bytes -> 1
    expect(u64(after, 48)).toBe(2); // data units written: 513 024 bytes -> 2
    expect(u64(after, 64)).toBe(1); // host read commands
    expect(u64(after, 80)).toBe(3); // host write commands
    expect(u64(after, 176)).toBe(1); // error log entries
    expect((await h.driver.getLogPage(LogPageId.SMART_HEALTH, 512, { nsid: 1 })).completion.status).toBe(Status.INVALID_FIELD);
    expect((await h.driver.getLogPage(LogPageId.SMART_HEALTH, 512, { nsid: 0 })).completion.status).toBe(Status.SUCCESS);
  });

  it('SMART / Health: unsafe shutdowns are counted', async () => {
    const h = await enabled();
    await h.driver.enable(); // disable + enable without a shutdown notification
    const { data } = await h.driver.getLogPage(LogPageId.SMART_HEALTH, 512);
    expect(u64(data, 144)).toBe(1);
  });

  it('Firmware Slot and Commands Supported and Effects', async () => {
    const h = await enabled();
    const firmware = await h.driver.getLogPage(LogPageId.FIRMWARE_SLOT, 512);
    expect(firmware.data[0]).toBe(1);
    expect(ascii(firmware.data, 8, 8)).toBe('1.2.3   ');
    expect(u64(firmware.data, 16)).toBe(0);
    const { completion, data } = await h.driver.getLogPage(LogPageId.COMMANDS_SUPPORTED_AND_EFFECTS, 4096);
    expect(completion.status).toBe(Status.SUCCESS);
    const d = view(data);
    const admin = (opcode: number): number => d.getUint32(opcode * 4, true);
    const io = (opcode: number): number => d.getUint32(1024 + opcode * 4, true);
    for (const opcode of [0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0a, 0x0c, 0x18, 0x7c]) expect(admin(opcode)).toBe(1);
    for (const opcode of [0x0d, 0x10, 0x11, 0x80]) expect(admin(opcode)).toBe(0);
    expect(io(IoOpcode.READ)).toBe(1);
    expect(io(IoOpcode.WRITE)).toBe(3);
    expect(io(IoOpcode.WRITE_ZEROES)).toBe(3);
    expect(io(IoOpcode.DATASET_MANAGEMENT)).toBe(3);
    expect(io(IoOpcode.FLUSH)).toBe(1);
    expect(io(IoOpcode.COMPARE)).toBe(1);
    expect(io(IoOpcode.VERIFY)).toBe(1);
    expect(io(IoOpcode.WRITE_UNCORRECTABLE)).toBe(0);
    expect((await h.driver.getLogPage(LogPageId.COMMANDS_SUPPORTED_AND_EFFECTS, 4096, { csi: 2 })).completion.status).toBe(
      Status.INVALID_FIELD,
    );
  });

  it('honours offsets and lengths, zero-fills past the page, rejects bad offsets and unknown pages', async () => {
    const h = await enabled();
    const whole = await h.driver.getLogPage(LogPageId.FIRMWARE_SLOT, 512);
    const part = await h.driver.getLogPage(LogPageId.FIRMWARE_SLOT, 16, { offset: 8 });
    expect([...part.data]).toEqual([...whole.data.subarray(8, 24)]);
    const long = await h.driver.getLogPage(LogPageId.FIRMWARE_SLOT, 8192);
    expect(long.completion.status).toBe(Status.SUCCESS);
    expect([...long.data.subarray(0, 512)]).toEqual([...whole.data]);
    expect(long.data.subarray(512).every((byte) => byte === 0)).toBe(true);
    expect((await h.driver.getLogPage(LogPageId.FIRMWARE_SLOT, 16, { offset: 512 })).completion.status).toBe(Status.INVALID_FIELD);
    expect((await h.driver.getLogPage(LogPageId.FIRMWARE_SLOT, 16, { offset: 2 ** 32 })).completion.status).toBe(
      Status.INVALID_FIELD,
    );
    expect((await h.driver.getLogPage(LogPageId.FIRMWARE_SLOT, 16, { offset: 6 })).completion.status).toBe(Status.INVALID_FIELD);
    for (const lid of [0x00, LogPageId.DEVICE_SELF_TEST, LogPageId.TELEMETRY_HOST, 0x70, 0xc0]) {
      expect((await h.driver.getLogPage(lid, 512)).completion.status).toBe(Status.INVALID_LOG_PAGE);
    }
    // More than MDTS (1 MiB by default) is refused before anything is transferred.
    const huge = await h.driver.submit(0, {
      opcode: AdminOpcode.GET_LOG_PAGE,
      nsid: NSID_BROADCAST,
      cdw10: LogPageId.ERROR_INFORMATION | (0xffff << 16),
      cdw11: 0xffff,
      prp1: h.driver.alloc(4096),
    });
    expect(huge.status).toBe(Status.INVALID_FIELD);
  });

  it('Changed Namespace List: kept with RAE, cleared on a normal read', async () => {
    const h = await enabled();
    h.controller.notifyNamespaceChanged(2);
    h.controller.notifyNamespaceChanged(2);
    h.controller.notifyNamespaceChanged(1);
    const first = await h.driver.getLogPage(LogPageId.CHANGED_NAMESPACE_LIST, 4096, { rae: true });
    expect([view(first.data).getUint32(0, true), view(first.data).getUint32(4, true), view(first.data).getUint32(8, true)]).toEqual([
      1, 2, 0,
    ]);
    const second = await h.driver.getLogPage(LogPageId.CHANGED_NAMESPACE_LIST, 4096);
    expect(view(second.data).getUint32(0, true)).toBe(1);
    const third = await h.driver.getLogPage(LogPageId.CHANGED_NAMESPACE_LIST, 4096);
    expect(third.data.every((byte) => byte === 0)).toBe(true);
  });
});
