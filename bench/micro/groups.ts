/**
 * The hot paths measured by `npm run bench:micro`, each group with a same-run reference: a plain copy of the bytes
 * the path handles. Inputs are built once; every case runs the project's own code from src/.
 */
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { mapDataPointer } from '../../src/nvme/data-pointer.js';
import { CompletionQueue, SubmissionQueue } from '../../src/nvme/queues.js';
import { DATA_HLEN, PduType, readCommonHeader, readDataHeader, writeCommonHeader, writeDataPdu, CMD_HLEN } from '../../src/namespace/nvme-tcp/pdu.js';
import { Command, HEADER_SIZE, BodySize, encodeRegionAccess, readHeader, readRegionAccess } from '../../src/vfio-user/protocol.js';
import { consume, type Group } from './harness.js';

const PAGE = 4096;
const BASE = 0x10_0000;
const RAM_BYTES = 16 * 1024 * 1024;

function guestRam(): { memory: GuestMemory; ram: Uint8Array; view: DataView } {
  const memory = new GuestMemory();
  const ram = new Uint8Array(RAM_BYTES);
  memory.add({ iova: BASE, size: RAM_BYTES, bytes: ram, readable: true, writable: true });
  return { memory, ram, view: new DataView(ram.buffer) };
}

function copyReference(bytes: number): () => void {
  const src = Buffer.alloc(bytes, 0x5a);
  const dst = Buffer.alloc(bytes);
  return () => {
    src.copy(dst);
    consume(dst[bytes - 1]!);
  };
}

/** A doorbell as QEMU sends it while nothing is mmapped: REGION_WRITE of 4 bytes to BAR0 (36-byte message). */
function vfioUserGroup(): Group {
  const doorbell = new Uint8Array([7, 0, 0, 0]);
  const message = encodeRegionAccess(42, Command.REGION_WRITE, { offset: 0x1008, region: 0, count: 4 }, doorbell);
  const view = new DataView(message.buffer);
  let id = 0;
  return {
    name: 'vfio-user codec: REGION_WRITE doorbell (36-byte message)',
    referenceName: `Buffer.copy of ${message.length} bytes`,
    reference: copyReference(message.length),
    cases: [
      {
        name: 'encodeRegionAccess (new message)',
        fn: () => consume(encodeRegionAccess((id = (id + 1) & 0xffff), Command.REGION_WRITE, { offset: 0x1008, region: 0, count: 4 }, doorbell).length),
      },
      {
        name: 'readHeader + readRegionAccess + data view',
        fn: () => {
          const header = readHeader(view, 0);
          const access = readRegionAccess(view, HEADER_SIZE);
          const data = message.subarray(HEADER_SIZE + BodySize.REGION_ACCESS, HEADER_SIZE + BodySize.REGION_ACCESS + access.count);
          consume(header.command + access.offset + data[0]!);
        },
      },
    ],
  };
}

/** Fetching an SQE from the ring (private copy) and decoding what a Read/Write needs. */
function sqeGroup(): Group {
  const { memory, view } = guestRam();
  const entries = 256;
  const cq = new CompletionQueue(1, BASE + 0x40_0000, entries, 1, true);
  const sq = new SubmissionQueue(1, BASE, entries, cq, 0);
  sq.memory.resolve(memory);
  for (let i = 0; i < entries; i++) {
    const o = i * 64;
    view.setUint8(o, 0x02); // Read
    view.setUint16(o + 2, i, true);
    view.setUint32(o + 4, 1, true);
    view.setBigUint64(o + 24, BigInt(BASE + 0x80_0000 + i * PAGE), true);
    view.setUint32(o + 40, i * 8, true);
    view.setUint16(o + 48, 7, true);
  }
  const sqe = new DataView(new ArrayBuffer(64));
  const words = new Int32Array(sqe.buffer);
  const ring = new Uint8Array(memory.view(BASE, 64, 'read').buffer, 0, 64);
  const dst = new Uint8Array(64);
  return {
    name: 'SQE fetch and decode (64-byte entry)',
    referenceName: 'Uint8Array.set of 64 bytes',
    reference: () => {
      dst.set(ring);
      consume(dst[63]!);
    },
    cases: [
      { name: 'SubmissionQueue.fetch, word-wise copy', fn: () => { sq.fetch(sqe, words); consume(words[0]!); } },
      { name: 'SubmissionQueue.fetch, DataView copy', fn: () => { sq.fetch(sqe); consume(words[0]!); } },
      {
        name: 'fetch + decode opcode, CID, NSID, SLBA, NLB, PRP1',
        fn: () => {
          sq.fetch(sqe, words);
          const slba = sqe.getUint32(44, true) * 0x1_0000_0000 + sqe.getUint32(40, true);
          const nlb = sqe.getUint16(48, true) + 1;
          const prp1 = sqe.getUint32(28, true) * 0x1_0000_0000 + sqe.getUint32(24, true);
          consume(sqe.getUint8(0) + sqe.getUint16(2, true) + sqe.getUint32(4, true) + slba + nlb + prp1);
        },
      },
    ],
  };
}

function sqeWithPointer(psdt: number, dptr1: number, dptr2: bigint): DataView {
  const view = new DataView(new ArrayBuffer(64));
  view.setUint8(0, 0x02);
  view.setUint8(1, psdt << 6);
  view.setBigUint64(24, BigInt(dptr1), true);
  view.setBigUint64(32, dptr2, true);
  return view;
}

/** SGL descriptor bytes 8..15 as a bigint: length (dword) + type in the top byte. */
function sglTail(length: number, type: number): bigint {
  return BigInt(length) | (BigInt(type << 4) << 56n);
}

/** PRP and SGL walks for one transfer size; guest pages deliberately scattered (every other page) so nothing merges. */
function dataPointerGroup(bytes: number): Group {
  const { memory, view } = guestRam();
  const pages = bytes / PAGE;
  const dataPage = (i: number): number => BASE + 0x20_0000 + i * 2 * PAGE;
  const prpList = BASE + 0x10_000;
  for (let i = 1; i < pages; i++) view.setBigUint64(prpList - BASE + (i - 1) * 8, BigInt(dataPage(i)), true);
  const prp =
    pages === 1
      ? sqeWithPointer(0, dataPage(0), 0n)
      : pages === 2
        ? sqeWithPointer(0, dataPage(0), BigInt(dataPage(1)))
        : sqeWithPointer(0, dataPage(0), BigInt(prpList));
  // SGL: one Data Block for a single page; else a Last Segment of one Data Block descriptor per page.
  const sglList = BASE + 0x18_000;
  for (let i = 0; i < pages; i++) {
    const o = sglList - BASE + i * 16;
    view.setBigUint64(o, BigInt(dataPage(i)), true);
    view.setBigUint64(o + 8, sglTail(PAGE, 0), true);
  }
  const sgl = pages === 1 ? sqeWithPointer(1, dataPage(0), sglTail(PAGE, 0)) : sqeWithPointer(1, sglList, sglTail(pages * 16, 3));
  const segments: Uint8Array[] = [];
  const run = (sqe: DataView, allowSgl: boolean) => () => {
    const status = mapDataPointer(memory, sqe, bytes, 'write', segments, allowSgl);
    if (status !== 0) throw new Error(`mapDataPointer failed with status 0x${status.toString(16)}`);
    consume(segments.length);
  };
  const kib = bytes / 1024;
  return {
    name: `data pointer walk, ${kib} KiB transfer (${pages} scattered page${pages > 1 ? 's' : ''})`,
    referenceName: `Buffer.copy of ${kib} KiB (the data the walk makes reachable)`,
    reference: copyReference(bytes),
    cases: [
      { name: pages === 1 ? 'PRP1 only' : pages === 2 ? 'PRP1 + PRP2' : `PRP1 + PRP list of ${pages - 1}`, fn: run(prp, false) },
      { name: pages === 1 ? 'SGL data block' : `SGL last segment of ${pages} data blocks`, fn: run(sgl, true) },
    ],
  };
}

/** NVMe/TCP data PDU headers (24 bytes) and the command capsule header (72 bytes). */
function nvmeTcpGroup(): Group {
  const header = new Uint8Array(DATA_HLEN + 4);
  writeDataPdu(header, PduType.C2H_DATA, 0, { cccid: 5, ttag: 0, offset: 0, length: 4096 }, false, false);
  const capsule = new Uint8Array(CMD_HLEN);
  const sqe = new Uint8Array(64).fill(3);
  let cid = 0;
  return {
    name: 'NVMe/TCP PDU headers',
    referenceName: `Buffer.copy of ${DATA_HLEN} bytes`,
    reference: copyReference(DATA_HLEN),
    cases: [
      { name: 'readCommonHeader + readDataHeader (C2HData)', fn: () => { const c = readCommonHeader(header); const d = readDataHeader(header); consume(c.plen + d.length + d.cccid); } },
      { name: 'writeDataPdu (H2CData, no digest)', fn: () => { writeDataPdu(header, PduType.H2C_DATA, 0, { cccid: (cid = (cid + 1) & 0xffff), ttag: 1, offset: 0, length: 4096 }, false, false); consume(header[8]!); } },
      { name: 'writeDataPdu (H2CData, header digest)', fn: () => { writeDataPdu(header, PduType.H2C_DATA, 0, { cccid: (cid = (cid + 1) & 0xffff), ttag: 1, offset: 0, length: 4096 }, true, false); consume(header[24]!); } },
      { name: 'capsule header: writeCommonHeader + 64-byte SQE', fn: () => { writeCommonHeader(capsule, PduType.CAPSULE_CMD, 0, CMD_HLEN, 0, CMD_HLEN); capsule.set(sqe, 8); consume(capsule[71]!); } },
    ],
  };
}

export function groups(): Group[] {
  return [vfioUserGroup(), sqeGroup(), dataPointerGroup(4096), dataPointerGroup(128 * 1024), nvmeTcpGroup()];
}
