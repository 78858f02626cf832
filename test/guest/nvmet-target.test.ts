/**
 * Self-test of the NVMe/TCP test harness: the fault proxy (against a local echo server, no QEMU), the QEMU launcher's
 * watchdog, and the Linux nvmet-tcp target in its QEMU guest (one boot for the whole file, skipped with the reason
 * when the host cannot run it). A tiny NVMe/TCP exchange (ICReq, Fabrics Connect, Property Set, Write, Read, discovery
 * Get Log Page) lives here to prove the target serves real I/O into its backing file; it is not the project's
 * initiator (src/namespace/nvme-tcp/).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  DISCOVERY_NQN, exchangeIcReq, nvmetTargetUnavailableReason, startNvmetTarget, type NvmetTarget,
} from '../../testbed/nvmet-target.js';
import { PduType, startFaultProxy, type FaultProxy } from '../helpers/tcp-fault-proxy.js';
import { sleep, waitFor } from '../helpers/common.js';

/** A client socket that records what it receives and how it ended. */
interface Client {
  socket: net.Socket;
  received: () => Buffer;
  closed: Promise<{ error: string | undefined; ended: boolean }>;
}

function connectClient(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let ended = false;
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => (ended = true));
    socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    const closed = new Promise<{ error: string | undefined; ended: boolean }>((res) => socket.on('close', () => res({ error, ended })));
    socket.once('connect', () => resolve({ socket, received: () => Buffer.concat(chunks), closed }));
    socket.once('error', reject);
  });
}

/** An NVMe/TCP-shaped PDU: common header (type, plen) and a recognisable body. */
function pdu(type: number, plen: number, seed = 1): Buffer {
  const bytes = Buffer.alloc(plen);
  for (let i = 8; i < plen; i++) bytes[i] = (i * 7 + seed) & 0xff;
  bytes[0] = type;
  bytes[2] = Math.min(plen, 24);
  bytes[3] = plen > 24 ? 24 : 0;
  bytes.writeUInt32LE(plen, 4);
  return bytes;
}

// ---------------------------------------------------------------------------------------------------------------

describe('tcp fault proxy (local echo server)', () => {
  let echo: net.Server;
  let echoPort: number;
  let proxy: FaultProxy;
  const clients: Client[] = [];

  beforeAll(async () => {
    echo = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
    echoPort = (echo.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => echo.close(() => resolve()));
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.socket.destroy();
    await proxy?.close();
  });
  const start = async (): Promise<FaultProxy> => {
    proxy = await startFaultProxy({ host: '127.0.0.1', port: echoPort });
    return proxy;
  };
  const client = async (): Promise<Client> => {
    const c = await connectClient(proxy.port);
    clients.push(c);
    return c;
  };

  it('forwards both ways, counts bytes and PDUs and logs PDU headers', async () => {
    await start();
    const c = await client();
    const sent = Buffer.concat([pdu(PduType.CapsuleCmd, 72), pdu(PduType.H2CData, 1000)]);
    c.socket.write(sent);
    await waitFor(() => c.received().length === sent.length, 'the data');
    expect(c.received().equals(sent)).toBe(true);
    expect(proxy.stats()).toMatchObject({ connections: 1, active: 1, bytesToTarget: 1072, bytesToHost: 1072, pdusToTarget: 2, pdusToHost: 2, faultsApplied: 0 });
    expect(proxy.pdus().map((p) => [p.direction, p.type, p.plen])).toEqual([
      ['to-target', PduType.CapsuleCmd, 72], ['to-target', PduType.H2CData, 1000],
      ['to-host', PduType.CapsuleCmd, 72], ['to-host', PduType.H2CData, 1000],
    ]);
  });

  it('carries bulk traffic intact (backpressure) and keeps the last 10,000 PDU headers', async () => {
    await start();
    const c = await client();
    const pdus = Array.from({ length: 12_000 }, (_, i) => pdu(PduType.H2CData, 1024 + (i % 7) * 100, i));
    const sent = Buffer.concat(pdus);
    for (let i = 0; i < sent.length; i += 65536) c.socket.write(sent.subarray(i, i + 65536));
    await waitFor(() => c.received().length === sent.length, 'the echo');
    expect(c.received().equals(sent)).toBe(true);
    const log = proxy.pdus();
    expect(log).toHaveLength(10_000);
    expect(log.at(-1)).toMatchObject({ direction: 'to-host', plen: pdus.at(-1)!.length });
    expect(proxy.stats()).toMatchObject({ pdusToTarget: 12_000, pdusToHost: 12_000, bytesToHost: sent.length });
  });

  it('parses common headers split across TCP segments', async () => {
    await start();
    const c = await client();
    const sent = pdu(PduType.CapsuleCmd, 100);
    for (let i = 0; i < 12; i++) {
      c.socket.write(sent.subarray(i, i + 1));
      await sleep(2);
    }
    c.socket.write(sent.subarray(12));
    await waitFor(() => c.received().length === 100, 'the data');
    expect(c.received().equals(sent)).toBe(true);
    expect(proxy.pdus().filter((p) => p.direction === 'to-target')).toEqual([
      { connection: 1, direction: 'to-target', type: PduType.CapsuleCmd, flags: 0, hlen: 24, pdo: 24, plen: 100 },
    ]);
  });

  it('forwards a stream that is not NVMe/TCP unchanged (raw mode)', async () => {
    await start();
    const c = await client();
    const sent = Buffer.concat([Buffer.from('GET / HTTP/1.0\r\n\r\n'), randomBytes(3000)]);
    c.socket.write(sent);
    await waitFor(() => c.received().length === sent.length, 'the data');
    expect(c.received().equals(sent)).toBe(true);
  });

  it('corruptNextPdu flips one byte of the next PDU of that type, once', async () => {
    await start();
    proxy.corruptNextPdu(PduType.C2HData, 30); // to-host by default
    const c = await client();
    const sent = Buffer.concat([pdu(PduType.CapsuleResp, 64), pdu(PduType.C2HData, 64, 2), pdu(PduType.C2HData, 64, 3)]);
    c.socket.write(sent);
    await waitFor(() => c.received().length === sent.length, 'the data');
    const expected = Buffer.from(sent);
    expected[64 + 30]! ^= 0xff;
    expect(c.received().equals(expected)).toBe(true);
    expect(proxy.stats().faultsApplied).toBe(1);
  });

  it('corruptNextPdu in the to-target direction, and an offset beyond a short PDU waits for a longer one', async () => {
    await start();
    proxy.corruptNextPdu(PduType.H2CData, 100, 'to-target');
    const c = await client();
    const sent = Buffer.concat([pdu(PduType.H2CData, 64), pdu(PduType.H2CData, 200)]);
    c.socket.write(sent);
    await waitFor(() => c.received().length === sent.length, 'the data');
    const expected = Buffer.from(sent);
    expected[64 + 100]! ^= 0xff;
    expect(c.received().equals(expected)).toBe(true);
  });

  it('corruptNext flips the byte at an offset of the next data in a direction', async () => {
    await start();
    const c = await client();
    const first = pdu(PduType.CapsuleCmd, 40);
    c.socket.write(first);
    await waitFor(() => c.received().length === 40, 'the data');
    proxy.corruptNext('to-target', 50); // 50 bytes into what the client sends next
    const sent = pdu(PduType.CapsuleCmd, 100, 9);
    c.socket.write(sent);
    await waitFor(() => c.received().length === 140, 'the data');
    const expected = Buffer.from(sent);
    expected[50]! ^= 0xff;
    expect(c.received().subarray(40).equals(expected)).toBe(true);
  });

  it('truncateNext forwards part of the next PDU, then closes the connection with FIN', async () => {
    await start();
    proxy.truncateNext('to-host', 10);
    const c = await client();
    c.socket.write(pdu(PduType.C2HData, 64));
    const end = await c.closed;
    expect(end).toEqual({ error: undefined, ended: true });
    expect(c.received().equals(pdu(PduType.C2HData, 64).subarray(0, 10))).toBe(true);
    // one-shot: the next connection is not affected
    const d = await client();
    d.socket.write(pdu(PduType.C2HData, 64));
    await waitFor(() => d.received().length === 64, 'the data');
  });

  it('truncateNextPdu waits for a PDU of the given type', async () => {
    await start();
    proxy.truncateNextPdu(PduType.C2HData, 20);
    const c = await client();
    const resp = pdu(PduType.CapsuleResp, 24);
    c.socket.write(Buffer.concat([resp, pdu(PduType.C2HData, 64)]));
    await c.closed;
    expect(c.received().equals(Buffer.concat([resp, pdu(PduType.C2HData, 64).subarray(0, 20)]))).toBe(true);
    expect(proxy.stats().faultsApplied).toBe(1);
  });

  it('truncateNext to-target: the target gets the partial PDU, the client sees the connection close', async () => {
    await start();
    proxy.truncateNext('to-target', 12);
    const c = await client();
    c.socket.write(pdu(PduType.CapsuleCmd, 72));
    const end = await c.closed;
    expect(end.error).toBeUndefined();
    // the echo server got (and echoed) at most the 12 bytes before the proxy dropped its side
    expect(c.received().length).toBeLessThanOrEqual(12);
  });

  it('setDelay adds latency in both directions, keeping the order', async () => {
    await start();
    const c = await client();
    const roundTrip = async (seed: number): Promise<number> => {
      const before = c.received().length;
      const t0 = Date.now();
      c.socket.write(pdu(PduType.CapsuleCmd, 32, seed));
      await waitFor(() => c.received().length === before + 32, 'the data');
      return Date.now() - t0;
    };
    expect(await roundTrip(1)).toBeLessThan(100);
    proxy.setDelay(100);
    expect(await roundTrip(2)).toBeGreaterThanOrEqual(195);
    const burst = Buffer.concat([1, 2, 3, 4, 5].map((seed) => pdu(PduType.CapsuleCmd, 32, seed)));
    const before = c.received().length;
    for (let i = 0; i < burst.length; i += 16) c.socket.write(burst.subarray(i, i + 16));
    await waitFor(() => c.received().length === before + burst.length, 'the data');
    expect(c.received().subarray(before).equals(burst)).toBe(true);
    proxy.setDelay(0);
    expect(await roundTrip(3)).toBeLessThan(100);
  });

  it('dropAll resets every connection; with how: close they get FIN', async () => {
    await start();
    const a = await client();
    const b = await client();
    a.socket.write(pdu(PduType.CapsuleCmd, 8));
    await waitFor(() => a.received().length === 8 && proxy.stats().active === 2, 'the data');
    proxy.dropAll();
    expect((await a.closed).error).toBe('ECONNRESET');
    expect((await b.closed).error).toBe('ECONNRESET');
    await waitFor(() => proxy.stats().active === 0, 'the data');
    const c = await client();
    await waitFor(() => proxy.stats().active === 1, 'the data');
    proxy.dropAll({ how: 'close' });
    expect(await c.closed).toEqual({ error: undefined, ended: true });
  });

  it('dropAll({ refuseNew }) resets new connections until allow()', async () => {
    await start();
    proxy.dropAll({ refuseNew: true });
    // accepted, then reset at once: the client sees ECONNRESET (sometimes already while connecting) and no data
    const refused = net.connect({ host: '127.0.0.1', port: proxy.port });
    let got = 0;
    refused.on('data', (d: Buffer) => (got += d.length));
    const error = await new Promise<string | undefined>((resolve) => {
      let code: string | undefined;
      refused.on('error', (e: NodeJS.ErrnoException) => (code = e.code));
      refused.on('close', () => resolve(code));
      refused.on('connect', () => refused.write(pdu(PduType.ICReq, 128)));
    });
    expect(error ?? 'ECONNRESET').toMatch(/ECONNRESET|EPIPE/);
    expect(got).toBe(0);
    await waitFor(() => proxy.stats().refused === 1, 'the data');
    expect(proxy.stats()).toMatchObject({ refused: 1, connections: 0 });
    proxy.allow();
    const c = await client();
    c.socket.write(pdu(PduType.ICReq, 128));
    await waitFor(() => c.received().length === 128, 'the data');
  });

  it('close() stops listening and drops the connections', async () => {
    await start();
    const c = await client();
    await waitFor(() => proxy.stats().active === 1, 'the data');
    await proxy.close();
    await c.closed;
    await expect(connectClient(proxy.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('a target that refuses the connection resets the client', async () => {
    const unused = net.createServer();
    await new Promise<void>((resolve) => unused.listen(0, '127.0.0.1', () => resolve()));
    const deadPort = (unused.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => unused.close(() => resolve()));
    proxy = await startFaultProxy({ host: '127.0.0.1', port: deadPort });
    const c = await client();
    const end = await c.closed;
    expect(end.ended && end.error === undefined).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('qemu-launch.sh (no orphans)', () => {
  const launcher = fileURLToPath(new URL('../../testbed/qemu-launch.sh', import.meta.url));
  // Running (a zombie has stopped: once its parent, the launcher's `timeout`, is gone, reaping it is up to PID 1,
  // which on some machines is slow to do so).
  const alive = (pid: number): boolean => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
    } catch {
      return false;
    }
  };
  const launch = (timeoutS: number): { child: ReturnType<typeof spawn>; innerPid: Promise<number> } => {
    // stands in for QEMU: prints its pid and sleeps
    const child = spawn('sh', [launcher, String(timeoutS), 'sh', '-c', 'echo $$; exec sleep 1000'], { stdio: ['pipe', 'pipe', 'ignore'], detached: true });
    const innerPid = new Promise<number>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim()))));
    return { child, innerPid };
  };

  it('stops the program when its stdin closes (the test process ended or died)', async () => {
    const { child, innerPid } = launch(60);
    const pid = await innerPid;
    expect(alive(pid)).toBe(true);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.stdin!.end();
    expect(await exited).not.toBe(0);
    await waitFor(() => !alive(pid), 'the program to stop');
  });

  it('stops the program after the hard timeout (status 124)', async () => {
    const { child, innerPid } = launch(1);
    const pid = await innerPid;
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).toBe(124);
    expect(alive(pid)).toBe(false);
    child.stdin!.end();
  });
});

// ---------------------------------------------------------------------------------------------------------------
// A minimal NVMe/TCP exchange (no digests), enough to prove the target stores data and serves discovery.

const HOST_NQN = 'nqn.2014-08.org.nvmexpress:uuid:5f1b6a52-7d2c-4f0e-9a4b-2d4b0d7a1c11';

class MiniQueue {
  private buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private closedWith: Error | undefined;
  private cid = 1;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiter?.();
    });
    const fail = (error: Error): void => {
      this.closedWith ??= error;
      this.waiter?.();
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  static async open(port: number, options: { headerDigest?: boolean; dataDigest?: boolean } = {}): Promise<{ queue: MiniQueue; icresp: Buffer }> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port, noDelay: true });
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
    const queue = new MiniQueue(socket);
    const icreq = Buffer.alloc(128);
    icreq.writeUInt8(0x00, 0);
    icreq.writeUInt8(128, 2);
    icreq.writeUInt32LE(128, 4);
    icreq.writeUInt8((options.headerDigest ? 1 : 0) | (options.dataDigest ? 2 : 0), 11);
    socket.write(icreq);
    const icresp = await queue.readPdu();
    if (icresp[0] !== PduType.ICResp) throw new Error(`expected ICResp, got type ${icresp[0]}`);
    return { queue, icresp };
  }

  async readPdu(timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.buffer.length >= 8) {
        const plen = this.buffer.readUInt32LE(4);
        if (this.buffer.length >= plen) {
          const out = this.buffer.subarray(0, plen);
          this.buffer = this.buffer.subarray(plen);
          return out;
        }
      }
      if (this.closedWith) throw this.closedWith;
      if (Date.now() > deadline) throw new Error('no PDU within the timeout');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
  }

  /**
   * Sends one command capsule (64-byte SQE, optional in-capsule data) and returns the 16-byte CQE and any C2HData.
   * `readLength` > 0 describes a controller-to-host transfer (transport SGL data block).
   */
  async command(sqe: Buffer, inCapsule?: Buffer, readLength = 0): Promise<{ status: number; dw0: number; data: Buffer }> {
    const cid = this.cid++;
    sqe.writeUInt16LE(cid, 2);
    sqe[1] = 0x40; // PSDT: SGL
    const sgl = sqe.subarray(24, 40);
    sgl.fill(0);
    if (inCapsule) {
      sgl.writeUInt32LE(inCapsule.length, 8);
      sgl[15] = 0x01; // data block, offset
    } else if (readLength > 0) {
      sgl.writeUInt32LE(readLength, 8);
      sgl[15] = 0x5a; // transport data block
    } else {
      sgl[15] = 0x01;
    }
    const data = inCapsule ?? Buffer.alloc(0);
    const header = Buffer.alloc(8);
    header[0] = PduType.CapsuleCmd;
    header[2] = 72;
    header[3] = data.length ? 72 : 0;
    header.writeUInt32LE(72 + data.length, 4);
    this.socket.write(Buffer.concat([header, sqe, data]));
    const received = Buffer.alloc(readLength);
    for (;;) {
      const p = await this.readPdu();
      if (p[0] === PduType.C2HData) {
        const offset = p.readUInt32LE(12);
        const length = p.readUInt32LE(16);
        p.copy(received, offset, p[3]!, p[3]! + length);
        if (p[1]! & 0x08) return { status: 0, dw0: 0, data: received }; // SUCCESS flag: no response capsule
        continue;
      }
      if (p[0] !== PduType.CapsuleResp) throw new Error(`unexpected PDU type ${p[0]}`);
      const cqe = p.subarray(8, 24);
      if (cqe.readUInt16LE(12) !== cid) throw new Error('response for another command');
      return { status: cqe.readUInt16LE(14) >> 1, dw0: cqe.readUInt32LE(0), data: received };
    }
  }

  /** Fabrics Connect (admin queue when qid = 0), then CC.EN = 1 through Property Set on the admin queue. */
  async connect(subnqn: string, qid = 0, cntlid = 0xffff): Promise<number> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x7f;
    sqe[4] = 0x01; // Connect
    sqe.writeUInt16LE(qid, 42);
    sqe.writeUInt16LE(31, 44); // SQSIZE, 0's based
    if (qid === 0) sqe.writeUInt32LE(120_000, 48); // KATO
    const data = Buffer.alloc(1024);
    randomBytes(16).copy(data, 0);
    data.writeUInt16LE(cntlid, 16);
    data.write(subnqn, 256);
    data.write(HOST_NQN, 512);
    const result = await this.command(sqe, data);
    if (result.status !== 0) throw new Error(`Connect failed: status 0x${result.status.toString(16)}`);
    const controller = result.dw0 & 0xffff;
    if (qid === 0) {
      const set = Buffer.alloc(64);
      set[0] = 0x7f;
      set[4] = 0x00; // Property Set
      set.writeUInt32LE(0x14, 44); // CC
      set.writeUInt32LE(0x00460001, 48); // IOCQES 4, IOSQES 6, EN
      const enabled = await this.command(set);
      if (enabled.status !== 0) throw new Error(`Property Set CC failed: 0x${enabled.status.toString(16)}`);
    }
    return controller;
  }

  async write(lba: number, data: Buffer): Promise<number> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x01;
    sqe.writeUInt32LE(1, 4);
    sqe.writeBigUInt64LE(BigInt(lba), 40);
    sqe.writeUInt16LE(data.length / 512 - 1, 48);
    return (await this.command(sqe, data)).status;
  }

  async read(lba: number, blocks: number): Promise<Buffer> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x02;
    sqe.writeUInt32LE(1, 4);
    sqe.writeBigUInt64LE(BigInt(lba), 40);
    sqe.writeUInt16LE(blocks - 1, 48);
    const result = await this.command(sqe, undefined, blocks * 512);
    if (result.status !== 0) throw new Error(`Read failed: 0x${result.status.toString(16)}`);
    return result.data;
  }

  close(): void {
    this.socket.destroy();
  }
}

async function ioQueue(port: number, nqn: string): Promise<{ admin: MiniQueue; io: MiniQueue }> {
  const admin = (await MiniQueue.open(port)).queue;
  const cntlid = await admin.connect(nqn);
  const io = (await MiniQueue.open(port)).queue;
  await io.connect(nqn, 1, cntlid);
  return { admin, io };
}

// ---------------------------------------------------------------------------------------------------------------

const unavailable = nvmetTargetUnavailableReason();
if (unavailable) console.log(`skipping the nvmet-tcp target tests: ${unavailable}`);

describe.skipIf(unavailable)('nvmet-tcp target in a QEMU guest', () => {
  const PREFILL_OFFSET = 1024 * 1024 + 512;
  const prefill = Buffer.from('vfiod nvmet harness: written by the guest before nvmet started\n');
  let target: NvmetTarget;
  const queues: MiniQueue[] = [];
  let proxy: FaultProxy | undefined;

  beforeAll(async () => {
    target = await startNvmetTarget({ ports: 2, guestPrefill: { offset: PREFILL_OFFSET, data: prefill } });
    console.log(`nvmet target up in ${target.bootMs} ms on ports ${target.ports.join(', ')} (console: ${target.consoleLog})`);
  }, 200_000);
  afterAll(async () => {
    await target?.stop();
  }, 30_000);
  afterEach(async () => {
    for (const queue of queues.splice(0)) queue.close();
    await proxy?.close();
    proxy = undefined;
  });
  const track = <T extends { admin: MiniQueue; io: MiniQueue }>(pair: T): T => {
    queues.push(pair.admin, pair.io);
    return pair;
  };

  it('describes itself', () => {
    expect(target.host).toBe('127.0.0.1');
    expect(target.ports).toHaveLength(2);
    expect(new Set(target.ports).size).toBe(2);
    expect(target.subsystemNqn).toBe('nqn.2026-11.io.vfiod:test');
    expect(target.sizeBytes).toBe(64 * 1024 * 1024);
    expect(target.blockSize).toBe(512);
  });

  it('answers ICReq on every port, directly and through the fault proxy, and grants digests', async () => {
    for (const port of target.ports) {
      const icresp = await exchangeIcReq(target.host, port);
      expect(icresp).toMatchObject({ pfv: 0, headerDigest: false, dataDigest: false });
      expect(icresp.maxH2CData).toBeGreaterThanOrEqual(4096);
    }
    proxy = await startFaultProxy({ host: target.host, port: target.ports[0]! });
    await exchangeIcReq('127.0.0.1', proxy.port);
    expect(proxy.pdus().map((p) => [p.direction, p.type])).toEqual([['to-target', PduType.ICReq], ['to-host', PduType.ICResp]]);
    const { queue, icresp } = await MiniQueue.open(target.ports[1]!, { headerDigest: true, dataDigest: true });
    queues.push(queue);
    expect(icresp[11]).toBe(3); // both digests granted: crc32c is available in the guest
  });

  it('readBacking sees zeroes in a fresh namespace and the bytes the guest wrote', async () => {
    expect((await target.readBacking(0, 64 * 1024)).every((b) => b === 0)).toBe(true);
    expect((await target.readBacking(target.sizeBytes - 4096, 4096)).every((b) => b === 0)).toBe(true);
    expect(Buffer.from(await target.readBacking(PREFILL_OFFSET, prefill.length)).equals(prefill)).toBe(true);
    await expect(target.readBacking(target.sizeBytes - 1, 2)).rejects.toThrow(RangeError);
  });

  it('stores NVMe/TCP writes in the backing file and serves them back (both ports)', async () => {
    const { io } = track(await ioQueue(target.ports[0]!, target.subsystemNqn));
    const data = randomBytes(4096);
    expect(await io.write(16384, data)).toBe(0);
    expect(Buffer.from(await target.readBacking(16384 * 512, 4096)).equals(data)).toBe(true);
    const other = track(await ioQueue(target.ports[1]!, target.subsystemNqn));
    expect((await other.io.read(16384, 8)).equals(data)).toBe(true);
    expect((await other.io.read(PREFILL_OFFSET / 512 - 1, 2)).subarray(512, 512 + prefill.length).equals(prefill)).toBe(true);
  });

  it('serves the discovery subsystem on the same ports', async () => {
    const admin = (await MiniQueue.open(target.ports[0]!)).queue;
    queues.push(admin);
    await admin.connect(DISCOVERY_NQN);
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x02; // Get Log Page
    sqe.writeUInt32LE(0x70 | (1023 << 16), 40); // discovery log, 4 KiB
    const log = await admin.command(sqe, undefined, 4096);
    expect(log.status).toBe(0);
    const records = Number(log.data.readBigUInt64LE(8));
    const entries = Array.from({ length: Math.min(records, 3) }, (_, i) => log.data.subarray(1024 * (i + 1), 1024 * (i + 2)));
    const nqns = entries.map((e) => e.subarray(256, 512).toString('latin1').replace(/\0.*$/s, ''));
    const svcids = entries.map((e) => e.subarray(32, 64).toString('latin1').replace(/[\0 ].*$/s, ''));
    expect(nqns).toContain(target.subsystemNqn);
    expect(svcids).toContain('4420'); // guest-side port numbers: a referral to them is not reachable from the host
  });

  it('the proxy corrupts the data of the next C2HData PDU of a real read', async () => {
    const data = randomBytes(4096);
    const direct = track(await ioQueue(target.ports[0]!, target.subsystemNqn));
    expect(await direct.io.write(4096, data)).toBe(0);
    proxy = await startFaultProxy({ host: target.host, port: target.ports[0]! });
    const viaProxy = track(await ioQueue(proxy.port, target.subsystemNqn));
    proxy.corruptNextPdu(PduType.C2HData, 24 + 100); // PDO 24 without digests: data byte 100
    const read = await viaProxy.io.read(4096, 8);
    const expected = Buffer.from(data);
    expected[100]! ^= 0xff;
    expect(read.equals(expected)).toBe(true);
    expect((await viaProxy.io.read(4096, 8)).equals(data)).toBe(true); // one-shot
    expect(Buffer.from(await target.readBacking(4096 * 512, 4096)).equals(data)).toBe(true);
  });

  it('restart drops every connection, listeners stay down for downMs, then serve the same data', async () => {
    const data = randomBytes(4096);
    const before = track(await ioQueue(target.ports[1]!, target.subsystemNqn));
    expect(await before.io.write(8192, data)).toBe(0);
    const idle = (await MiniQueue.open(target.ports[0]!)).queue; // ICReq done, no controller yet
    queues.push(idle);
    const dropped = Promise.all([before.admin, before.io, idle].map((q) => new Promise<void>((resolve) => q.socket.once('close', () => resolve()))));
    const t0 = Date.now();
    const restarted = target.restart({ downMs: 3000 });
    await dropped;
    // down: slirp still accepts the TCP connection, then closes it without an ICResp
    await expect(exchangeIcReq(target.host, target.ports[0]!, 2000)).rejects.toThrow();
    await restarted;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3000);
    for (const port of target.ports) await exchangeIcReq(target.host, port);
    const after = track(await ioQueue(target.ports[0]!, target.subsystemNqn));
    expect((await after.io.read(8192, 8)).equals(data)).toBe(true);
  }, 60_000);
});
