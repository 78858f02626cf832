// NVMe/TCP initiator protocol tests without QEMU: PDU codecs, CRC32C, and a scripted in-process fake target (a plain
// TCP server speaking just enough NVMe/TCP) used to check framing, digests, R2T handling and every protocol
// violation → teardown → reconnect → retry (or path error after ctrl-loss-tmo).
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { native } from '../../../src/native/index.js';
import {
  PduFlags, PduType, decodeICReq, decodeICResp, encodeICReq, encodeICResp, readDataHeader, writeDataPdu,
  encodeTermReq, readTermReq, sliceViews, u16, u32, u64, put16, put32, put64,
} from '../../../src/namespace/nvme-tcp/pdu.js';
import { NvmeTcpNamespace, type NvmeTcpNamespaceOptions } from '../../../src/namespace/nvme-tcp/namespace.js';
import { discoverNvmeTcp } from '../../../src/namespace/nvme-tcp/discovery.js';
import { parseNamespaceUri } from '../../../src/namespace/uri.js';
import { NamespaceError } from '../../../src/namespace/namespace.js';
import { memoryLogger, type LogFields } from '../../../src/util/log.js';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { controllerConfig } from '../../../src/serve/config.js';
import { startController, type RunningController } from '../../../src/serve/controller.js';
import { sleep, temporaryDir } from '../../helpers/common.js';
import { Guest, GUEST_RAM_IOVA } from '../../helpers/hypervisor.js';

const crc = (data: Uint8Array | Uint8Array[]) => native.crc32cPortable(data);

describe('CRC32C', () => {
  it('matches the known vectors', () => {
    const text = new TextEncoder().encode('123456789');
    expect(native.crc32c(text)).toBe(0xe3069283);
    expect(native.crc32cPortable(text)).toBe(0xe3069283);
    expect(native.crc32c(new Uint8Array(0))).toBe(0);
    expect(native.crc32c(new Uint8Array(32))).toBe(0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeroes
    expect(native.crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
  });

  it('hardware and table implementations agree on random data, views, arrays and seeds', () => {
    for (let i = 0; i < 200; i++) {
      const data = new Uint8Array(randomBytes(1 + Math.floor(Math.random() * 9000)));
      const a = Math.floor(Math.random() * data.length);
      const view = data.subarray(a);
      expect(native.crc32c(view)).toBe(native.crc32cPortable(view));
      const parts = [data.subarray(0, a), data.subarray(a)];
      expect(native.crc32c(parts)).toBe(native.crc32c(data));
      expect(native.crc32c(parts[1]!, native.crc32c(parts[0]!))).toBe(native.crc32cPortable(data));
    }
  });

  it('rejects non-Uint8Array input without crashing', () => {
    expect(() => native.crc32c('x' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => native.crc32c([new Uint8Array(1), 5] as unknown as Uint8Array[])).toThrow(/data\[1\]/);
  });
});

describe('PDU codecs', () => {
  it('round-trips ICReq / ICResp / data headers / TermReq', () => {
    const req = { pfv: 0, hpda: 0, hdgst: true, ddgst: false, maxr2t: 3 };
    expect(decodeICReq(encodeICReq(req))).toEqual(req);
    const resp = { pfv: 0, cpda: 0, hdgst: false, ddgst: true, maxh2cdata: 131072 };
    expect(decodeICResp(encodeICResp(resp))).toEqual(resp);
    const b = new Uint8Array(28);
    writeDataPdu(b, PduType.H2C_DATA, PduFlags.DATA_LAST, { cccid: 0x1234, ttag: 7, offset: 8192, length: 4096 }, true, true);
    expect(b[0]).toBe(PduType.H2C_DATA);
    expect(b[1]).toBe(PduFlags.DATA_LAST | PduFlags.HDGST | PduFlags.DDGST);
    expect(b[2]).toBe(24);
    expect(b[3]).toBe(28);
    expect(u32(b, 4)).toBe(28 + 4096 + 4);
    expect(readDataHeader(b)).toEqual({ cccid: 0x1234, ttag: 7, offset: 8192, length: 4096 });
    expect(u32(b, 24)).toBe(crc(b.subarray(0, 24)));
    const term = encodeTermReq(PduType.H2C_TERM_REQ, 3, 0x10, new Uint8Array(200));
    expect(term.length).toBe(24 + 152);
    expect(readTermReq(term)).toEqual({ fes: 3, fei: 0x10 });
    const w = new Uint8Array(8);
    put64(w, 0, 2 ** 40 + 5);
    expect(u64(w, 0)).toBe(2 ** 40 + 5);
  });

  it('slices scatter lists without copying', () => {
    const a = new Uint8Array(10);
    const b = new Uint8Array(6);
    const parts = sliceViews([a, b], 8, 5);
    expect(parts.map((p) => p.length)).toEqual([2, 3]);
    expect(parts[0]!.buffer).toBe(a.buffer);
    expect(() => sliceViews([a], 5, 6)).toThrow(RangeError);
  });
});

// --- the fake target ------------------------------------------------------------------------------------------------

type Fault =
  | 'bad-type'
  | 'bad-hlen'
  | 'bad-hdgst'
  | 'bad-ddgst'
  | 'unknown-cid'
  | 'term-req'
  | 'no-response'
  | 'close'
  | 'short-data';

interface FakeOptions {
  blockSize?: number;
  blocks?: number;
  maxh2cdata?: number;
  /** IOCCSZ in 16-byte units (in-capsule bytes = ioccsz*16 - 64). */
  ioccsz?: number;
  /** Send C2HData with the SUCCESS flag instead of a CapsuleResp. */
  successFlag?: boolean;
  /** Split C2HData into PDUs of this many bytes. */
  c2hChunk?: number;
  /** Grant writes in R2Ts of at most this many bytes. */
  r2tChunk?: number;
  mqes?: number;
  /** Hold each I/O command this long before executing it (so several are in flight). */
  ioDelayMs?: number;
}

class FakeTarget {
  readonly store: Uint8Array;
  readonly blockSize: number;
  port = 0;
  private server!: net.Server;
  readonly sockets = new Set<net.Socket>();
  /** Faults applied to the next I/O command (qid > 0), in order. */
  faults: Fault[] = [];
  refuse = false;
  stats = { connects: 0, ioConnects: 0, keepAlives: 0, r2ts: 0, h2cPdus: 0, inCapsuleWrites: 0, maxInFlight: 0, cids: new Set<number>(), commands: 0, hostDigestErrors: 0 };
  private cntlid = 1;

  constructor(readonly opts: FakeOptions = {}) {
    this.blockSize = opts.blockSize ?? 512;
    this.store = new Uint8Array((opts.blocks ?? 2048) * this.blockSize);
  }

  async start(port = 0): Promise<void> {
    this.server = net.createServer((s) => this.accept(s));
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** Drops every connection (target restart); with `refuse`, new ones are closed at once. */
  dropAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  async stop(): Promise<void> {
    this.dropAll();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private accept(s: net.Socket): void {
    if (this.refuse) return void s.destroy();
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    const conn = { qid: -1, hdgst: false, ddgst: false, inFlight: 0, writes: new Map<number, { sqe: Uint8Array; data: Uint8Array; got: number }>() };
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 8) {
        const plen = u32(buf, 4);
        if (buf.length < plen) break;
        const pdu = new Uint8Array(buf.subarray(0, plen));
        buf = buf.subarray(plen);
        this.onPdu(s, conn, pdu);
      }
    });
  }

  private send(s: net.Socket, conn: { hdgst: boolean }, header: Uint8Array, data?: Uint8Array, ddgst = false, corrupt?: 'hdgst' | 'ddgst'): void {
    const parts: Uint8Array[] = [header];
    if (conn.hdgst) {
      const d = new Uint8Array(4);
      put32(d, 0, crc(header) ^ (corrupt === 'hdgst' ? 1 : 0));
      parts.push(d);
    }
    if (data) {
      parts.push(data);
      if (ddgst) {
        const d = new Uint8Array(4);
        put32(d, 0, crc(data) ^ (corrupt === 'ddgst' ? 1 : 0));
        parts.push(d);
      }
    }
    s.write(Buffer.concat(parts));
  }

  private onPdu(s: net.Socket, conn: any, pdu: Uint8Array): void {
    const type = pdu[0]!;
    if (type === PduType.IC_REQ) {
      const req = decodeICReq(pdu);
      conn.hdgst = req.hdgst;
      conn.ddgst = req.ddgst;
      s.write(encodeICResp({ pfv: 0, cpda: 0, hdgst: req.hdgst, ddgst: req.ddgst, maxh2cdata: this.opts.maxh2cdata ?? 32768 }));
      return;
    }
    const hlen = pdu[2]!;
    if (conn.hdgst && u32(pdu, hlen) !== crc(pdu.subarray(0, hlen))) this.stats.hostDigestErrors++;
    const pdo = pdu[3]!;
    const dataEnd = pdu.length - (conn.ddgst && pdo ? 4 : 0);
    const data = pdo ? pdu.subarray(pdo, dataEnd) : new Uint8Array(0);
    if (conn.ddgst && pdo && u32(pdu, dataEnd) !== crc(data)) this.stats.hostDigestErrors++;
    if (type === PduType.CAPSULE_CMD) {
      this.stats.commands++;
      this.onCommand(s, conn, pdu.slice(8, 72), data);
    } else if (type === PduType.H2C_DATA) {
      this.stats.h2cPdus++;
      const h = readDataHeader(pdu);
      const w = conn.writes.get(h.cccid);
      w.data.set(data, h.offset);
      w.got += data.length;
      if (pdu[1]! & PduFlags.DATA_LAST) {
        if (w.got === w.data.length) {
          conn.writes.delete(h.cccid);
          this.execute(s, conn, w.sqe, w.data);
        } else this.sendR2T(s, conn, h.cccid, w.got, w.data.length - w.got);
      }
    }
  }

  private sendR2T(s: net.Socket, conn: any, cid: number, offset: number, length: number): void {
    this.stats.r2ts++;
    const r2t = new Uint8Array(24);
    put32(r2t, 0, 0);
    r2t[0] = PduType.R2T;
    r2t[1] = conn.hdgst ? PduFlags.HDGST : 0;
    r2t[2] = 24;
    put32(r2t, 4, 24 + (conn.hdgst ? 4 : 0));
    put16(r2t, 8, cid);
    put16(r2t, 10, 0x55);
    put32(r2t, 12, offset);
    put32(r2t, 16, Math.min(length, this.opts.r2tChunk ?? length));
    this.send(s, conn, r2t);
  }

  private onCommand(s: net.Socket, conn: any, sqe: Uint8Array, data: Uint8Array): void {
    const opcode = sqe[0]!;
    const cid = u16(sqe, 2);
    const sglLen = u32(sqe, 32);
    const sglType = sqe[39]!;
    if (opcode === 0x7f && sqe[4] === 0x01) {
      conn.qid = u16(sqe, 42);
      this.stats.connects++;
      if (conn.qid > 0) this.stats.ioConnects++;
      conn.depth = u16(sqe, 44) + 1;
      return this.respond(s, conn, cid, 0, conn.qid === 0 ? this.cntlid++ : 0);
    }
    if (conn.qid > 0) {
      conn.inFlight++;
      this.stats.maxInFlight = Math.max(this.stats.maxInFlight, conn.inFlight);
      this.stats.cids.add(cid);
    }
    // Host-to-controller data not in the capsule: ask for it.
    const isWrite = opcode === 0x01 || (opcode === 0x09 && conn.qid > 0) || (opcode === 0x7f && sqe[4] === 0x01);
    if (isWrite && sglLen > 0 && sglType === 0x5a) {
      conn.writes.set(cid, { sqe, data: new Uint8Array(sglLen), got: 0 });
      return this.sendR2T(s, conn, cid, 0, sglLen);
    }
    if (isWrite && sglLen > 0) this.stats.inCapsuleWrites++;
    if (conn.qid > 0 && this.opts.ioDelayMs) setTimeout(() => this.execute(s, conn, sqe, data), this.opts.ioDelayMs);
    else this.execute(s, conn, sqe, data);
  }

  private execute(s: net.Socket, conn: any, sqe: Uint8Array, data: Uint8Array): void {
    const opcode = sqe[0]!;
    const cid = u16(sqe, 2);
    const sglLen = u32(sqe, 32);
    const cdw10 = u32(sqe, 40);
    const cdw11 = u32(sqe, 44);
    const cdw12 = u32(sqe, 48);
    if (conn.qid === 0) {
      if (opcode === 0x7f) {
        const fctype = sqe[4]!;
        if (fctype === 0x04) {
          const offset = cdw11;
          const mqes = (this.opts.mqes ?? 127);
          const value = offset === 0x00 ? mqes + (1 << 24) : offset === 0x08 ? 0x10400 : offset === 0x1c ? (conn.enabled ? 1 : 0) : 0;
          return this.respond(s, conn, cid, 0, value, offset === 0 ? 0x0 : 0);
        }
        if (fctype === 0x00) {
          if (cdw11 === 0x14) conn.enabled = (u32(sqe, 48) & 1) === 1;
          return this.respond(s, conn, cid, 0);
        }
      }
      if (opcode === 0x06) {
        const id = new Uint8Array(4096);
        if ((cdw10 & 0xff) === 1) {
          id.set(new TextEncoder().encode('FAKE'), 24);
          put16(id, 78, 1);
          put16(id, 514, 0);
          put32(id, 516, 1);
          put16(id, 520, (1 << 2) | (1 << 3));
          id[525] = 1;
          put32(id, 1792, this.opts.ioccsz ?? (8192 + 64) / 16);
          id.set(new TextEncoder().encode('nqn.fake:sub'), 768);
        } else {
          put64(id, 0, this.store.length / this.blockSize);
          put64(id, 8, this.store.length / this.blockSize);
          id[33] = 1;
          id[128 + 2] = Math.log2(this.blockSize);
        }
        return this.sendRead(s, conn, cid, id.subarray(0, sglLen));
      }
      if (opcode === 0x09) return this.respond(s, conn, cid, 0, (cdw11 & 0xffff) | (cdw11 & 0xffff0000));
      if (opcode === 0x18) {
        this.stats.keepAlives++;
        return this.respond(s, conn, cid, 0);
      }
      if (opcode === 0x02) {
        const page = new Uint8Array(sglLen);
        const offset = cdw12;
        const full = new Uint8Array(2048);
        put64(full, 8, 1);
        full[1024] = 3;
        full[1026] = 2;
        full.set(new TextEncoder().encode(String(this.port)), 1024 + 32);
        full.set(new TextEncoder().encode('nqn.fake:sub'), 1024 + 256);
        full.set(new TextEncoder().encode('127.0.0.1'), 1024 + 512);
        page.set(full.subarray(offset, offset + sglLen));
        return this.sendRead(s, conn, cid, page);
      }
      return this.respond(s, conn, cid, 0x4001); // invalid opcode
    }
    conn.inFlight--;
    const fault = this.faults.shift();
    if (fault === 'no-response') return;
    if (fault === 'close') return void s.destroy();
    const slba = cdw10 + cdw11 * 2 ** 32;
    const nlb = (cdw12 & 0xffff) + 1;
    const off = slba * this.blockSize;
    const len = nlb * this.blockSize;
    if (fault) return this.misbehave(s, conn, fault, cid, opcode === 0x02 ? this.store.slice(off, off + len) : undefined);
    switch (opcode) {
      case 0x02:
        return this.sendRead(s, conn, cid, this.store.slice(off, off + len));
      case 0x01:
        this.store.set(data, off);
        return this.respond(s, conn, cid, 0);
      case 0x00:
        return this.respond(s, conn, cid, 0);
      case 0x08:
        this.store.fill(0, off, off + len);
        return this.respond(s, conn, cid, 0);
      case 0x09:
        for (let i = 0; i < (cdw10 & 0xff) + 1; i++) {
          const n = u32(data, i * 16 + 4);
          const lba = u64(data, i * 16 + 8);
          this.store.fill(0, lba * this.blockSize, (lba + n) * this.blockSize);
        }
        return this.respond(s, conn, cid, 0);
    }
    return this.respond(s, conn, cid, 0x4001);
  }

  private misbehave(s: net.Socket, conn: any, fault: Fault, cid: number, readData?: Uint8Array): void {
    const resp = this.capsuleResp(cid, 0, 0);
    switch (fault) {
      case 'bad-type':
        resp[0] = 0x0b;
        return this.send(s, conn, resp);
      case 'bad-hlen':
        resp[2] = 40;
        return this.send(s, conn, resp);
      case 'bad-hdgst':
        return this.send(s, conn, resp, undefined, false, 'hdgst');
      case 'unknown-cid':
        put16(resp, 8 + 12, cid ^ 0x200);
        return this.send(s, conn, resp);
      case 'term-req':
        return void s.write(encodeTermReq(PduType.C2H_TERM_REQ, 1, 0, resp));
      case 'bad-ddgst':
        return this.sendRead(s, conn, cid, readData ?? new Uint8Array(512), 'ddgst');
      case 'short-data':
        return this.send(s, conn, resp);
    }
  }

  private capsuleResp(cid: number, status: number, dw0: number, dw1 = 0): Uint8Array {
    const r = new Uint8Array(24);
    r[0] = PduType.CAPSULE_RESP;
    r[2] = 24;
    put32(r, 4, 24);
    put32(r, 8, dw0);
    put32(r, 12, dw1);
    put16(r, 8 + 12, cid);
    put16(r, 8 + 14, status << 1);
    return r;
  }

  private respond(s: net.Socket, conn: any, cid: number, status: number, dw0 = 0, dw1 = 0): void {
    const r = this.capsuleResp(cid, status, dw0, dw1);
    if (conn.hdgst) {
      r[1] = PduFlags.HDGST;
      put32(r, 4, 28);
    }
    this.send(s, conn, r);
  }

  private sendRead(s: net.Socket, conn: any, cid: number, data: Uint8Array, corrupt?: 'ddgst'): void {
    const chunk = this.opts.c2hChunk ?? data.length;
    const success = this.opts.successFlag === true && conn.qid > 0;
    for (let o = 0; o < data.length; o += chunk) {
      const n = Math.min(chunk, data.length - o);
      const last = o + n === data.length;
      const h = new Uint8Array(24);
      writeDataPdu(h, PduType.C2H_DATA, last ? PduFlags.DATA_LAST | (success ? PduFlags.DATA_SUCCESS : 0) : 0,
        { cccid: cid, ttag: 0, offset: o, length: n }, false, conn.ddgst);
      if (conn.hdgst) {
        h[1]! |= PduFlags.HDGST;
        h[3] = 28;
        put32(h, 4, u32(h, 4) + 4);
      }
      this.send(s, conn, h, data.subarray(o, o + n), conn.ddgst, corrupt);
    }
    if (!success) this.respond(s, conn, cid, 0);
  }
}

// --- fake-target tests ----------------------------------------------------------------------------------------------

describe('NVMe/TCP initiator against a scripted fake target', () => {
  let target: FakeTarget;
  let ns: NvmeTcpNamespace | undefined;
  let lines: LogFields[];
  let logger: ReturnType<typeof memoryLogger>['logger'];

  beforeEach(() => {
    ({ logger, lines } = memoryLogger());
  });

  afterEach(async () => {
    await ns?.close();
    ns = undefined;
    await target?.stop();
  });

  async function setup(fake: FakeOptions = {}, opts: Partial<NvmeTcpNamespaceOptions> = {}): Promise<NvmeTcpNamespace> {
    target = new FakeTarget(fake);
    await target.start();
    ns = await NvmeTcpNamespace.open({
      addresses: [{ host: '127.0.0.1', port: target.port }],
      subnqn: 'nqn.fake:sub',
      nsid: 1,
      queues: 2,
      queueDepth: 8,
      hdgst: false,
      ddgst: false,
      katoMs: 0,
      reconnectDelayMs: 20,
      ctrlLossTmoMs: 2000,
      timeoutMs: 1000,
      logger,
      ...opts,
    });
    return ns;
  }

  const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

  it('does the handshake and identifies the namespace', async () => {
    const ns = await setup();
    expect(ns.blockSize).toBe(512);
    expect(ns.blockCount).toBe(2048);
    expect(ns.volatileWriteCache).toBe(true);
    expect(ns.supportsDeallocate).toBe(true);
    expect(target.stats.ioConnects).toBe(2);
  });

  for (const successFlag of [false, true]) {
    it(`reads C2HData in several PDUs into scattered views (SUCCESS flag ${successFlag})`, async () => {
      const ns = await setup({ successFlag, c2hChunk: 1000 });
      const data = pattern(8192, 3);
      target.store.set(data, 4096);
      const views = [new Uint8Array(100), new Uint8Array(5000), new Uint8Array(3092)];
      await ns.read(4096, views);
      expect(Buffer.concat(views).equals(Buffer.from(data))).toBe(true);
    });
  }

  it('writes through R2T with several H2CData chunks and several R2Ts', async () => {
    const ns = await setup({ ioccsz: 4, maxh2cdata: 4096, r2tChunk: 16384 });
    const data = pattern(65536, 9);
    await ns.write(0, [data.subarray(0, 30720), data.subarray(30720)]);
    expect(Buffer.from(target.store.subarray(0, 65536)).equals(Buffer.from(data))).toBe(true);
    expect(target.stats.r2ts).toBeGreaterThanOrEqual(4);
    expect(target.stats.h2cPdus).toBeGreaterThanOrEqual(16);
  });

  it('sends small writes as in-capsule data', async () => {
    const ns = await setup({ ioccsz: (8192 + 64) / 16 });
    const before = target.stats.r2ts;
    const data = pattern(8192, 1);
    await ns.write(512, [data]);
    expect(target.stats.r2ts).toBe(before);
    expect(target.stats.inCapsuleWrites).toBeGreaterThanOrEqual(1);
    expect(Buffer.from(target.store.subarray(512, 512 + 8192)).equals(Buffer.from(data))).toBe(true);
  });

  it('computes and checks header and data digests both ways', async () => {
    const ns = await setup({ ioccsz: (4096 + 64) / 16, maxh2cdata: 4096, c2hChunk: 3000 }, { hdgst: true, ddgst: true });
    const small = pattern(2048, 5);
    const big = pattern(20480, 6);
    await ns.write(0, [small]);
    await ns.write(8192, [big]);
    const back = new Uint8Array(20480);
    await ns.read(8192, [back]);
    expect(Buffer.from(back).equals(Buffer.from(big))).toBe(true);
    expect(target.stats.hostDigestErrors).toBe(0);
    expect(target.stats.r2ts).toBeGreaterThan(0);
  });

  it('flush, write zeroes and deallocate become remote commands', async () => {
    const ns = await setup();
    target.store.fill(0xee, 0, 65536);
    await ns.flush();
    await ns.writeZeroes(0, 4096);
    await ns.deallocate([{ offset: 8192, length: 1024 }, { offset: 16384, length: 512 }]);
    expect(target.store.subarray(0, 4096).every((b) => b === 0)).toBe(true);
    expect(target.store[4096]).toBe(0xee);
    expect(target.store.subarray(8192, 9216).every((b) => b === 0)).toBe(true);
    expect(target.store.subarray(16384, 16896).every((b) => b === 0)).toBe(true);
    expect(target.store[16896]).toBe(0xee);
  });

  it('keeps many commands in flight within the queue depth and reuses command ids', async () => {
    const ns = await setup({ ioDelayMs: 5 }, { queues: 1, queueDepth: 4 });
    const writes = Array.from({ length: 64 }, (_, i) => ns.write(i * 512, [pattern(512, i)]));
    await Promise.all(writes);
    for (let i = 0; i < 64; i++) expect(Buffer.from(target.store.subarray(i * 512, i * 512 + 512)).equals(Buffer.from(pattern(512, i)))).toBe(true);
    expect(target.stats.maxInFlight).toBeLessThanOrEqual(4);
    expect(target.stats.maxInFlight).toBeGreaterThan(1);
    // 64 commands through 4 slots: the slot part of the id (low 10 bits) is reused, the generation bits change.
    const ids = [...target.stats.cids];
    expect(new Set(ids.map((cid) => cid & 0x3ff)).size).toBeLessThanOrEqual(4);
    expect(ids.length).toBeGreaterThan(4);
  });

  it('sends Keep Alive at KATO/2', async () => {
    await setup({}, { katoMs: 200 });
    await sleep(650);
    expect(target.stats.keepAlives).toBeGreaterThanOrEqual(4);
  });

  const violations: Fault[] = ['bad-type', 'bad-hlen', 'bad-hdgst', 'bad-ddgst', 'unknown-cid', 'term-req', 'close', 'no-response'];
  for (const fault of violations) {
    it(`${fault}: tears the connection down, reconnects and retries the command`, async () => {
      const digests = fault === 'bad-hdgst' || fault === 'bad-ddgst';
      const ns = await setup({}, { hdgst: digests, ddgst: digests, timeoutMs: 300 });
      const data = pattern(1024, 77);
      target.store.set(data, 2048);
      const connectsBefore = target.stats.connects;
      target.faults.push(fault);
      const back = new Uint8Array(1024);
      await ns.read(2048, [back]);
      expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
      expect(target.stats.connects).toBeGreaterThan(connectsBefore);
      const down = lines.find((l) => l['msg'] === 'NVMe/TCP controller connection lost');
      expect(down).toBeDefined();
      expect(String(down!['error'])).toMatch(
        fault === 'close' ? /closed/ : fault === 'no-response' ? /timed out/ : fault === 'term-req' ? /TermReq/ : /protocol violation/,
      );
      expect(down!['target']).toBe(`127.0.0.1:${target.port}`);
    });
  }

  it('a read whose CapsuleResp claims success without data is a violation', async () => {
    const ns = await setup();
    target.faults.push('short-data');
    await ns.read(0, [new Uint8Array(512)]);
    expect(lines.some((l) => /after 0 of 512 data bytes/.test(String(l['error'])))).toBe(true);
  });

  it('fails I/O with a path error after ctrl-loss-tmo and recovers when the target returns', async () => {
    const ns = await setup({}, { ctrlLossTmoMs: 300, reconnectDelayMs: 50 });
    target.refuse = true;
    target.dropAll();
    const started = Date.now();
    const error = await ns.write(0, [new Uint8Array(512)]).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(NamespaceError);
    expect((error as NamespaceError).kind).toBe('unavailable');
    expect(Date.now() - started).toBeLessThan(3000);
    target.refuse = false;
    await sleep(300);
    await ns.write(0, [pattern(512, 1)]);
    expect(target.store[1]).toBe(pattern(512, 1)[1]);
  });

  it('fails over to a second path and retries in-flight writes there', async () => {
    const a = new FakeTarget();
    const b = new FakeTarget();
    await a.start();
    await b.start();
    target = a;
    try {
      ns = await NvmeTcpNamespace.open({
        addresses: [{ host: '127.0.0.1', port: a.port }, { host: '127.0.0.1', port: b.port }],
        subnqn: 'nqn.fake:sub', nsid: 1, queues: 1, queueDepth: 8, hdgst: false, ddgst: false, katoMs: 0,
        reconnectDelayMs: 5000, ctrlLossTmoMs: 10000, timeoutMs: 1000, logger,
      });
      await sleep(100);
      a.faults.push('no-response', 'no-response');
      a.refuse = true;
      const writes = [ns.write(0, [pattern(512, 1)]), ns.write(512, [pattern(512, 2)])];
      await sleep(20);
      a.dropAll();
      await Promise.all(writes);
      expect(b.store[0]).toBe(pattern(512, 1)[0]);
      expect(b.store[513]).toBe(pattern(512, 2)[1]);
      expect(ns.pathStates().map((p) => p.state)).toEqual(['down', 'live']);
      // Neither path has connected again yet (a's next attempt is 5 s away): what metrics report as reconnects.
      expect(ns.pathStates().map((p) => p.reconnects)).toEqual([0, 0]);
    } finally {
      await b.stop();
    }
  });

  it('discovery lists subsystems from the discovery log page', async () => {
    target = new FakeTarget();
    await target.start();
    const entries = await discoverNvmeTcp({ host: '127.0.0.1', port: target.port, logger });
    expect(entries).toEqual([
      { trtype: 3, adrfam: 0, subtype: 2, portid: 0, cntlid: 0, trsvcid: String(target.port), subnqn: 'nqn.fake:sub', traddr: '127.0.0.1' },
    ]);
  });
});

describe('nvme-tcp:// URI', () => {
  it('parses addresses, NQN and options', () => {
    const spec = parseNamespaceUri(
      'nvme-tcp://10.0.0.1:4420,[fe80::1],host.example:4421/nqn.2014-08.org:sub1?nsid=2&queues=4&queue-depth=64&hdgst=1&ddgst=1&kato=10000&reconnect-delay=0.5&ctrl-loss-tmo=-1&timeout=5000&hostnqn=nqn.h',
    ) as any;
    expect(spec.addresses).toEqual([
      { host: '10.0.0.1', port: 4420 },
      { host: 'fe80::1', port: 4420 },
      { host: 'host.example', port: 4421 },
    ]);
    expect(spec.subnqn).toBe('nqn.2014-08.org:sub1');
    expect(spec).toMatchObject({ nsid: 2, queues: 4, queueDepth: 64, hdgst: true, ddgst: true, katoMs: 10000, reconnectDelayMs: 500, ctrlLossTmoMs: -1, timeoutMs: 5000, hostnqn: 'nqn.h' });
    const d = parseNamespaceUri('nvme-tcp://h/nqn.x') as any;
    expect(d).toMatchObject({ nsid: 1, queues: 2, queueDepth: 128, hdgst: false, katoMs: 5000, reconnectDelayMs: 10000, ctrlLossTmoMs: 600000, timeoutMs: 30000 });
  });

  it('rejects malformed URIs with a clear message', () => {
    expect(() => parseNamespaceUri('nvme-tcp://h:99999/nqn')).toThrow(/invalid port/);
    expect(() => parseNamespaceUri('nvme-tcp://h:4420')).toThrow(/missing subsystem NQN/);
    expect(() => parseNamespaceUri('nvme-tcp://h/nqn?queues=0')).toThrow(/queues must be/);
    expect(() => parseNamespaceUri('nvme-tcp://h/nqn?foo=1')).toThrow(/unknown parameter 'foo'/);
    expect(() => parseNamespaceUri('nvme-tcp:h/nqn')).toThrow(/expected 'nvme-tcp:\/\//);
  });
});

// --- a silent target: giving commands up ------------------------------------------------------------------------

/** Polls `condition` every 10 ms until true; fails after `timeoutMs`. */
async function until(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('NVMe/TCP commands given up (silent target)', () => {
  let target: FakeTarget | undefined;
  let ns: NvmeTcpNamespace | undefined;
  afterEach(async () => {
    await ns?.close();
    ns = undefined;
    await target?.stop();
    target = undefined;
  });

  it('abandon() rejects a sent read at once, drops the connection it was on, and its buffers are never written', async () => {
    target = new FakeTarget();
    await target.start();
    const { logger } = memoryLogger();
    ns = await NvmeTcpNamespace.open({
      addresses: [{ host: '127.0.0.1', port: target.port }], subnqn: 'nqn.fake:sub', nsid: 1, queues: 1, queueDepth: 8,
      hdgst: false, ddgst: false, katoMs: 0, reconnectDelayMs: 20, ctrlLossTmoMs: 60_000, timeoutMs: 60_000, logger,
    });
    target.store.fill(0xab, 0, 4096);
    target.faults.push('no-response');
    const buffers = [new Uint8Array(4096)];
    const before = target.stats.commands;
    const reading = ns.read(0, buffers);
    await until(() => target!.stats.commands > before, 'the target to receive the read');
    const connects = target.stats.connects;
    expect(ns.pathStates()[0]!.reconnects).toBe(0);
    expect(ns.abandon(buffers)).toBe(true);
    await expect(reading).rejects.toThrow(/given up/);
    // The path comes back on a new association and works; the given-up read is not re-sent.
    await until(() => target!.stats.connects > connects && ns!.pathStates()[0]!.state === 'live', 'the path to come back');
    expect(ns.pathStates()[0]!.reconnects).toBe(1);
    const other = [new Uint8Array(4096)];
    await ns.read(0, other);
    expect(other[0]!.every((byte) => byte === 0xab)).toBe(true);
    expect(buffers[0]!.every((byte) => byte === 0)).toBe(true);
    // Buffers nobody uses: nothing to give up, still true (nothing will touch them).
    expect(ns.abandon([new Uint8Array(512)])).toBe(true);
  });

  it('abandon() takes back a read that waits for a path', async () => {
    target = new FakeTarget();
    await target.start();
    const { logger } = memoryLogger();
    ns = await NvmeTcpNamespace.open({
      addresses: [{ host: '127.0.0.1', port: target.port }], subnqn: 'nqn.fake:sub', nsid: 1, queues: 1, queueDepth: 8,
      hdgst: false, ddgst: false, katoMs: 0, reconnectDelayMs: 60_000, ctrlLossTmoMs: 600_000, timeoutMs: 60_000, logger,
    });
    target.faults.push('close'); // the target drops the connection: the read waits for the path to return
    const buffers = [new Uint8Array(4096)];
    const reading = ns.read(0, buffers);
    await until(() => ns!.pathStates()[0]!.state === 'down', 'the path to go down');
    expect(ns.abandon(buffers)).toBe(true);
    await expect(reading).rejects.toThrow(/given up/);
  });
});

describe('DMA_UNMAP and reconnect against a silent NVMe/TCP target (end to end)', () => {
  let target: FakeTarget | undefined;
  let dir: string | undefined;
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    // The target answers again, so closing flushes the namespace at once.
    if (target) target.faults.length = 0;
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await target?.stop();
    target = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  const ABANDON_MS = 1000;
  /** Default NVMe/TCP timeouts (timeout 30 s, ctrl-loss-tmo 600 s): only the give-up bounds the waits. */
  async function serve(): Promise<{ controller: RunningController; socketPath: string }> {
    target = new FakeTarget({ blocks: 8192 });
    await target.start();
    dir = temporaryDir('vfiod-silent-');
    const config = controllerConfig({
      socketPath: path.join(dir, 'nvme0.sock'),
      namespaces: [`nvme-tcp://127.0.0.1:${target.port}/nqn.fake:sub?nsid=1&queues=1&kato=0`],
      ioAbandonMs: ABANDON_MS,
    });
    const controller = await startController(config, memoryLogger().logger);
    cleanups.push(() => controller.close());
    return { controller, socketPath: config.socketPath };
  }

  async function readInFlight(guest: Guest): Promise<void> {
    const driver = guest.driver;
    await driver.enable();
    await driver.createIoQueuePair(1, 16, 0);
    target!.faults.push(...Array.from({ length: 16 }, () => 'no-response' as const)); // the target goes silent
    const before = target!.stats.commands;
    const buffer = driver.alloc(4096);
    driver.place(1, { opcode: 0x02, nsid: 1, prp1: buffer, cdw12: 7 });
    await driver.ringSubmission(1);
    await until(() => target!.stats.commands > before, 'the target to receive the read');
  }

  it('answers a DMA_UNMAP of the memory a read is in flight to within seconds', async () => {
    const { socketPath } = await serve();
    const guest = await Guest.attach(socketPath, { flavour: 'qemu', replyTimeoutMs: 120_000 });
    cleanups.push(() => guest.close());
    await readInFlight(guest);
    const started = Date.now();
    await guest.client.dmaUnmap({ iova: GUEST_RAM_IOVA, size: 32 * 1024 * 1024 });
    const waited = Date.now() - started;
    // It waited for the read (the give-up delay), then let go: nowhere near the 30 s command timeout.
    expect(waited).toBeGreaterThanOrEqual(ABANDON_MS - 100);
    expect(waited).toBeLessThan(15_000);
  });

  it('lets the next client in within seconds after a client disconnects with a read in flight', async () => {
    const { socketPath } = await serve();
    const first = await Guest.attach(socketPath, { flavour: 'cloud-hypervisor', replyTimeoutMs: 120_000 });
    await readInFlight(first);
    const started = Date.now();
    first.close();
    const second = await Guest.attach(socketPath, { flavour: 'cloud-hypervisor', replyTimeoutMs: 120_000 });
    cleanups.push(() => second.close());
    const waited = Date.now() - started;
    expect(waited).toBeLessThan(15_000);
    // The new guest's controller works against the (now answering) target.
    target!.faults.length = 0;
    await second.driver.enable();
    await second.driver.createIoQueuePair(1, 16, 0);
    expect((await second.driver.read(1, 0, 8)).completion.status).toBe(0);
  });
});
