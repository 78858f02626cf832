/**
 * One association with a remote NVMe-oF controller over TCP: the admin queue, its I/O queues and the keep-alive.
 *
 * `NvmeTcpController.connect` runs the fabrics bring-up (ICReq, Connect on qid 0, Property Get CAP/VS, Property Set
 * CC.EN, wait for CSTS.RDY within CAP.TO, Identify Controller, Set Features Number of Queues, then one TCP
 * connection + Connect(qid, cntlid) per I/O queue). An association is single-use: when any of its connections
 * fails (socket error, protocol violation, command or keep-alive timeout) all of them are closed, internal admin
 * commands are rejected, and the I/O requests that had not completed go to `onFailure` so the owner can retry them
 * on a new association or another path.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../../util/log.js';
import { sleep } from '../../util/sleep.js';
import { AdminOpcode, FeatureId, IdentifyCns } from '../../spec/nvme.js';
import { MAX_QUEUE_DEPTH, TcpQueue, TransportError, DataDir, type TcpRequest } from './queue.js';
import { put16, u16, u32, u64 } from './pdu.js';
import { FabricsType, NvmfProperty, DISCOVERY_NQN, ADMIN_QUEUE_DEPTH, ADMIN_INCAPSULE_BYTES } from './spec.js';

export interface ControllerOptions {
  host: string;
  port: number;
  subnqn: string;
  hostnqn: string;
  /** 16 bytes. */
  hostid: Uint8Array;
  /** I/O queues (TCP connections) to create; 0 for a discovery controller. */
  ioQueues: number;
  queueDepth: number;
  hdgst: boolean;
  ddgst: boolean;
  /** Keep Alive Timeout sent in Connect; 0 = none (keep-alives off). Keep Alive is sent every kato/2. */
  katoMs: number;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  logger: Logger;
}

/** The fields of Identify Controller (and CAP/VS) the initiator uses. */
export interface ControllerInfo {
  cntlid: number;
  cap: bigint;
  vs: number;
  /** CAP.MQES + 1. */
  maxQueueEntries: number;
  /** CAP.TO in ms. */
  readyTimeoutMs: number;
  serial: string;
  model: string;
  firmware: string;
  subnqn: string;
  /** Largest transfer in bytes (0 = no limit). */
  mdtsBytes: number;
  maxcmd: number;
  nn: number;
  oncs: number;
  vwc: boolean;
  sgls: number;
  ioccsz: number;
  iorcsz: number;
  icdoff: number;
}

export interface NamespaceInfo {
  nsid: number;
  nsze: number;
  ncap: number;
  nuse: number;
  blockSize: number;
  metadataSize: number;
  /** DLFEAT bits 2:0 = 1: deallocated blocks read as zeroes. */
  deallocatedReadsZero: boolean;
  thin: boolean;
}

export interface Completion {
  status: number;
  dw0: number;
  dw1: number;
}

/** A request the controller issues for itself; rejected (not retried) when the association dies. */
interface InternalRequest extends TcpRequest {
  internal: true;
  fail(error: Error): void;
}

function isInternal(req: TcpRequest): boolean {
  return (req as Partial<InternalRequest>).internal === true;
}

export class NvmeTcpController {
  info!: ControllerInfo;
  readonly address: string;
  private readonly opts: ControllerOptions;
  private readonly log: Logger;
  private admin!: TcpQueue;
  private io: TcpQueue[] = [];
  private rr = 0;
  private dead = false;
  private internal = new Set<InternalRequest>();
  private keepAlive: NodeJS.Timeout | null = null;
  private onFailure: ((error: Error, requests: TcpRequest[]) => void) | null = null;

  private constructor(opts: ControllerOptions) {
    this.opts = opts;
    this.address = `${opts.host}:${opts.port}`;
    this.log = opts.logger.child({ target: this.address, subnqn: opts.subnqn });
  }

  /** Runs the whole bring-up; rejects (with everything closed) on any failure. */
  static async connect(
    opts: ControllerOptions,
    onFailure: (error: Error, requests: TcpRequest[]) => void,
  ): Promise<NvmeTcpController> {
    const ctrl = new NvmeTcpController(opts);
    try {
      await ctrl.bringUp();
    } catch (error) {
      ctrl.shutdownQueues();
      throw error;
    }
    ctrl.onFailure = onFailure;
    return ctrl;
  }

  get ioQueueCount(): number {
    return this.io.length;
  }

  get alive(): boolean {
    return !this.dead;
  }

  /** Sends an I/O command on the next I/O queue (round robin; no global lock, each queue has its own ids). */
  submitIo(req: TcpRequest): void {
    const queue = this.io[this.rr++ % this.io.length]!;
    this.rr %= this.io.length;
    queue.submit(req);
  }

  /**
   * Takes the I/O requests `which` selects out of the queues' backlogs and returns them. When one of them is already
   * on the wire, the association is torn down as after a transport failure (reported through the owner's failure
   * callback, as every other): destroying the sockets is the only way to be sure nothing more is read into, or sent
   * from, that request's buffers (socket writes keep pointers to them until the kernel takes the data).
   */
  withdrawIo(which: (req: TcpRequest) => boolean, reason: string): TcpRequest[] {
    const withdrawn: TcpRequest[] = [];
    let sent = false;
    for (const queue of this.io) {
      const result = queue.withdraw(which);
      withdrawn.push(...result.withdrawn);
      sent ||= result.sent;
    }
    if (sent) this.fail(new TransportError(`commands given up: ${reason}`), []);
    return withdrawn;
  }

  /** An admin command; resolves with the completion (any status), rejects if the association dies first. */
  adminCommand(
    fields: Partial<Pick<TcpRequest, 'nsid' | 'cdw10' | 'cdw11' | 'cdw12' | 'cdw13' | 'cdw14' | 'cdw15'>> & {
      opcode: number;
      dir?: DataDir;
      data?: Uint8Array;
    },
  ): Promise<Completion> {
    return this.command(this.admin, fields);
  }

  private command(
    queue: TcpQueue,
    fields: Partial<Pick<TcpRequest, 'nsid' | 'cdw10' | 'cdw11' | 'cdw12' | 'cdw13' | 'cdw14' | 'cdw15'>> & {
      opcode: number;
      dir?: DataDir;
      data?: Uint8Array;
    },
  ): Promise<Completion> {
    if (this.dead) return Promise.reject(new TransportError(`controller ${this.address} is disconnected`));
    return new Promise<Completion>((resolve, reject) => {
      const data = fields.data;
      const req: InternalRequest = {
        internal: true,
        opcode: fields.opcode,
        nsid: fields.nsid ?? 0,
        cdw10: fields.cdw10 ?? 0,
        cdw11: fields.cdw11 ?? 0,
        cdw12: fields.cdw12 ?? 0,
        cdw13: fields.cdw13 ?? 0,
        cdw14: fields.cdw14 ?? 0,
        cdw15: fields.cdw15 ?? 0,
        dir: data ? (fields.dir ?? DataDir.IN) : DataDir.NONE,
        buffers: data ? [data] : [],
        length: data ? data.length : 0,
        complete: (status, dw0, dw1) => {
          this.internal.delete(req);
          resolve({ status, dw0, dw1 });
        },
        fail: (error) => {
          this.internal.delete(req);
          reject(error);
        },
      };
      this.internal.add(req);
      queue.submit(req);
    });
  }

  /** Like adminCommand, but a non-zero status is an error naming `what`. */
  private async must(queue: TcpQueue, what: string, fields: Parameters<NvmeTcpController['command']>[1]): Promise<Completion> {
    const c = await this.command(queue, fields);
    if (c.status !== 0) {
      throw new TransportError(`${what} failed with status 0x${c.status.toString(16)} (qid ${queue.qid})`);
    }
    return c;
  }

  private newQueue(qid: number, depth: number, inCapsuleBytes: number): TcpQueue {
    return new TcpQueue({
      host: this.opts.host,
      port: this.opts.port,
      qid,
      depth,
      hdgst: this.opts.hdgst,
      ddgst: this.opts.ddgst,
      inCapsuleBytes,
      connectTimeoutMs: this.opts.connectTimeoutMs,
      commandTimeoutMs: this.opts.commandTimeoutMs,
      logger: this.log,
      onFailure: (_queue, error, requests) => this.fail(error, requests),
    });
  }

  private async fabricsConnect(queue: TcpQueue, qid: number, sqsize: number, cntlid: number): Promise<number> {
    const data = new Uint8Array(1024);
    data.set(this.opts.hostid.subarray(0, 16), 0);
    put16(data, 16, cntlid);
    writeAscii(data, 256, 256, this.opts.subnqn);
    writeAscii(data, 512, 256, this.opts.hostnqn);
    const c = await this.must(queue, `Fabrics Connect (qid ${qid}, subnqn ${this.opts.subnqn})`, {
      opcode: FabricsType.OPCODE,
      nsid: FabricsType.CONNECT,
      cdw10: (qid << 16) >>> 0, // recfmt 0
      cdw11: sqsize & 0xffff, // cattr 0
      cdw12: qid === 0 ? this.opts.katoMs : 0,
      dir: DataDir.OUT,
      data,
    });
    return c.dw0 & 0xffff;
  }

  private async propertyGet(offset: number, size8: boolean): Promise<bigint> {
    const c = await this.must(this.admin, `Property Get 0x${offset.toString(16)}`, {
      opcode: FabricsType.OPCODE,
      nsid: FabricsType.PROPERTY_GET,
      cdw10: size8 ? 1 : 0,
      cdw11: offset,
    });
    return size8 ? (BigInt(c.dw1 >>> 0) << 32n) | BigInt(c.dw0 >>> 0) : BigInt(c.dw0 >>> 0);
  }

  private async propertySet(offset: number, value: number): Promise<void> {
    await this.must(this.admin, `Property Set 0x${offset.toString(16)}`, {
      opcode: FabricsType.OPCODE,
      nsid: FabricsType.PROPERTY_SET,
      cdw10: 0,
      cdw11: offset,
      cdw12: value >>> 0,
    });
  }

  private async bringUp(): Promise<void> {
    const o = this.opts;
    this.admin = this.newQueue(0, ADMIN_QUEUE_DEPTH, ADMIN_INCAPSULE_BYTES);
    await this.admin.connect();
    const cntlid = await this.fabricsConnect(this.admin, 0, ADMIN_QUEUE_DEPTH - 1, 0xffff);
    const cap = await this.propertyGet(NvmfProperty.CAP, true);
    const vs = Number(await this.propertyGet(NvmfProperty.VS, false));
    const readyTimeoutMs = Math.max(500, Number((cap >> 24n) & 0xffn) * 500);
    const mpsMin = Number((cap >> 48n) & 0xfn);
    // CC: EN, CSS NVM, MPS = 4 KiB, IOSQES 6 (64 B), IOCQES 4 (16 B).
    await this.propertySet(NvmfProperty.CC, 0x0046_0001);
    const deadline = performance.now() + readyTimeoutMs;
    for (;;) {
      const csts = Number(await this.propertyGet(NvmfProperty.CSTS, false));
      if (csts & 2) throw new TransportError(`controller fatal status (CSTS 0x${csts.toString(16)}) while enabling`);
      if (csts & 1) break;
      if (performance.now() > deadline) throw new TransportError(`CSTS.RDY not set within CAP.TO (${readyTimeoutMs} ms)`);
      await sleep(20);
    }
    const id = new Uint8Array(4096);
    await this.must(this.admin, 'Identify Controller', { opcode: AdminOpcode.IDENTIFY, cdw10: IdentifyCns.CONTROLLER, data: id });
    const mdts = id[77]!;
    this.info = {
      cntlid,
      cap,
      vs,
      maxQueueEntries: Number(cap & 0xffffn) + 1,
      readyTimeoutMs,
      serial: ascii(id, 4, 20),
      model: ascii(id, 24, 40),
      firmware: ascii(id, 64, 8),
      subnqn: ascii(id, 768, 256),
      mdtsBytes: mdts === 0 ? 0 : 2 ** (12 + mpsMin + mdts),
      maxcmd: u16(id, 514),
      nn: u32(id, 516),
      oncs: u16(id, 520),
      vwc: (id[525]! & 1) !== 0,
      sgls: u32(id, 536),
      ioccsz: u32(id, 1792),
      iorcsz: u32(id, 1796),
      icdoff: u16(id, 1800),
    };
    if (o.ioQueues > 0) {
      const want = o.ioQueues;
      const c = await this.must(this.admin, 'Set Features Number of Queues', {
        opcode: AdminOpcode.SET_FEATURES,
        cdw10: FeatureId.NUMBER_OF_QUEUES,
        cdw11: ((want - 1) | ((want - 1) << 16)) >>> 0,
      });
      const granted = Math.min(want, (c.dw0 & 0xffff) + 1, (c.dw0 >>> 16) + 1);
      let depth = Math.min(o.queueDepth, this.info.maxQueueEntries, MAX_QUEUE_DEPTH);
      if (this.info.maxcmd > 0) depth = Math.min(depth, this.info.maxcmd);
      // In-capsule data must start at offset 0 of the capsule's data area (we send ICDOFF 0 SGLs).
      const inCapsule = this.info.icdoff === 0 && this.info.ioccsz >= 4 ? this.info.ioccsz * 16 - 64 : 0;
      for (let qid = 1; qid <= granted; qid++) {
        const queue = this.newQueue(qid, depth, inCapsule);
        this.io.push(queue);
        await queue.connect();
        // sqsize is 0's based; the target's SQ holds depth entries and we never have more in flight.
        await this.fabricsConnect(queue, qid, depth - 1, cntlid);
      }
      this.log.info('NVMe/TCP controller connected', {
        cntlid,
        ioQueues: granted,
        queueDepth: depth,
        inCapsuleBytes: inCapsule,
        maxH2CData: this.io[0]?.maxH2CData,
        hdgst: o.hdgst,
        ddgst: o.ddgst,
      });
    }
    if (o.katoMs > 0) {
      const interval = Math.max(50, Math.floor(o.katoMs / 2));
      this.keepAlive = setInterval(() => this.sendKeepAlive(), interval);
      this.keepAlive.unref();
    }
  }

  private sendKeepAlive(): void {
    if (this.dead) return;
    this.command(this.admin, { opcode: AdminOpcode.KEEP_ALIVE }).then(
      (c) => {
        if (c.status !== 0) this.fail(new TransportError(`Keep Alive failed with status 0x${c.status.toString(16)}`), []);
      },
      () => {},
    );
  }

  async identifyNamespace(nsid: number): Promise<NamespaceInfo> {
    const id = new Uint8Array(4096);
    await this.must(this.admin, `Identify Namespace ${nsid}`, { opcode: AdminOpcode.IDENTIFY, nsid, cdw10: IdentifyCns.NAMESPACE, data: id });
    const nsze = u64(id, 0);
    const flbas = id[26]!;
    const format = (flbas & 0xf) | ((flbas >> 1) & 0x30);
    const lbaf = 128 + format * 4;
    const lbads = id[lbaf + 2]!;
    return {
      nsid,
      nsze,
      ncap: u64(id, 8),
      nuse: u64(id, 16),
      blockSize: lbads >= 9 && lbads <= 16 ? 2 ** lbads : 0,
      metadataSize: u16(id, lbaf),
      deallocatedReadsZero: (id[33]! & 7) === 1,
      thin: (id[24]! & 1) !== 0,
    };
  }

  /** Get Log Page into `data` (length a multiple of 4). */
  async getLogPage(lid: number, data: Uint8Array, offset = 0): Promise<void> {
    const numd = data.length / 4 - 1;
    await this.must(this.admin, `Get Log Page 0x${lid.toString(16)}`, {
      opcode: AdminOpcode.GET_LOG_PAGE,
      nsid: 0,
      cdw10: (lid | ((numd & 0xffff) << 16)) >>> 0,
      cdw11: numd >>> 16,
      cdw12: offset >>> 0,
      cdw13: Math.floor(offset / 0x1_0000_0000),
      data,
    });
  }

  /** Connection-level failure: close all queues once, reject internal commands, hand I/O back to the owner. */
  private fail(error: Error, requests: TcpRequest[]): void {
    if (this.dead) return;
    const io = [...requests, ...this.shutdownQueues(error)].filter((r) => !isInternal(r));
    this.log.warn('NVMe/TCP controller connection lost', { error: error.message, inFlight: io.length });
    this.onFailure?.(error, io);
  }

  /** Closes every queue; rejects internal commands with `error`; returns the I/O requests that had not completed. */
  private shutdownQueues(error: Error = new TransportError('controller closed')): TcpRequest[] {
    this.dead = true;
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = null;
    const requests: TcpRequest[] = [];
    for (const q of this.io) requests.push(...q.close());
    if (this.admin) requests.push(...this.admin.close());
    for (const req of [...this.internal]) req.fail(error);
    return requests.filter((r) => !isInternal(r));
  }

  /**
   * Graceful disconnect: CC.SHN (normal shutdown) best effort within `timeoutMs`, then close the connections.
   * Returns the I/O requests that had not completed (normally none).
   */
  async close(timeoutMs = 1000): Promise<TcpRequest[]> {
    if (this.dead) return [];
    this.onFailure = null;
    try {
      await Promise.race([this.propertySet(NvmfProperty.CC, 0x0046_4001), sleep(timeoutMs)]);
    } catch {
      // Shutting down anyway.
    }
    return this.shutdownQueues();
  }
}

export function newHostId(): Uint8Array {
  const hex = randomUUID().replace(/-/g, '');
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

export { DISCOVERY_NQN };

function writeAscii(b: Uint8Array, offset: number, max: number, text: string): void {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length >= max) throw new RangeError(`NQN '${text}' longer than ${max - 1} bytes`);
  b.set(bytes, offset);
}

export function ascii(b: Uint8Array, offset: number, length: number): string {
  let end = offset;
  while (end < offset + length && b[end] !== 0) end++;
  return Buffer.from(b.buffer, b.byteOffset + offset, end - offset).toString('latin1').trimEnd();
}
