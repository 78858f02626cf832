/**
 * One NVMe/TCP queue: a TCP connection carrying one submission/completion queue pair (qid 0 = admin).
 *
 * It owns the byte stream only: the ICReq/ICResp handshake, command ids, framing of commands and data, R2T-driven
 * writes, C2HData into the caller's buffers, digests and per-command timeouts. What a command means (Connect,
 * Identify, Read) and what happens after a failure (reconnect, retry elsewhere) is the controller's business.
 *
 * Data path: read data is copied once from the socket's chunks straight into the request's buffers (guest memory);
 * write data is handed to the socket as the request's own views inside a cork/uncork pair (a writev, no
 * concatenation). Digests are computed over those same views with the native CRC32C, once per PDU.
 *
 * Every malformed or unexpected PDU from the target is a `TransportError`: the queue destroys its socket and reports
 * all its outstanding requests to `onFailure` exactly once; nothing throws out of a socket callback.
 *
 * Size: one PDU state machine per connection (handshake, framing, R2T, C2HData, digests, timeouts).
 */
import net from 'node:net';
import type { Logger } from '../../util/log.js';
import {
  CMD_HLEN,
  DATA_HLEN,
  DIGEST_LEN,
  IC_HLEN,
  PduFlags,
  PduType,
  RESP_HLEN,
  R2T_HLEN,
  SGL_INCAPSULE,
  SGL_TRANSPORT,
  SQE_FLAGS_SGL,
  TERM_HLEN,
  crc32c,
  decodeICResp,
  encodeICReq,
  pduTypeName,
  put16,
  put32,
  readDataHeader,
  readTermReq,
  sliceViews,
  u16,
  u32,
  writeCommonHeader,
  writeDataPdu,
  writeSgl,
} from './pdu.js';

/** Direction of a command's data. */
export const enum DataDir {
  NONE = 0,
  /** Host to controller (Write, DSM ranges, Connect data). */
  OUT = 1,
  /** Controller to host (Read, Identify, Get Log Page). */
  IN = 2,
}

/** A command as the queue sends it; the queue fills in the command id and the data pointer (SGL). */
export interface TcpRequest {
  opcode: number;
  /** SQE bytes 4..7: NSID, or the Fabrics command type (fctype) in byte 4 for opcode 0x7F. */
  nsid: number;
  cdw10: number;
  cdw11: number;
  cdw12: number;
  cdw13: number;
  cdw14: number;
  cdw15: number;
  dir: DataDir;
  buffers: readonly Uint8Array[];
  /** Total bytes of `buffers` that the command transfers. */
  length: number;
  /** The target's completion: `status` is SCT << 8 | SC (with DNR 0x4000), 0 = success. */
  complete(status: number, dw0: number, dw1: number): void;
}

/** Why a queue's connection was torn down. */
export class TransportError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransportError';
  }
}

export interface TcpQueueOptions {
  host: string;
  port: number;
  qid: number;
  /** Most commands in flight (command ids in use); further requests wait in the queue's backlog. */
  depth: number;
  hdgst: boolean;
  ddgst: boolean;
  /** Largest write sent as in-capsule data (0 = always wait for R2T). Can be raised after Identify. */
  inCapsuleBytes: number;
  connectTimeoutMs: number;
  /** A command without completion for this long tears the connection down (0 = never). */
  commandTimeoutMs: number;
  logger: Logger;
  /** Called once when the connection fails after `connect` resolved, with every request not completed. */
  onFailure(queue: TcpQueue, error: TransportError, requests: TcpRequest[]): void;
}

/** Command ids: low bits index the slot, high bits count its reuses so a stale id is recognised as unknown. */
const SLOT_BITS = 10;
export const MAX_QUEUE_DEPTH = 1 << SLOT_BITS;
const SLOT_MASK = MAX_QUEUE_DEPTH - 1;

class Slot {
  cid: number;
  req: TcpRequest | null = null;
  startedAt = 0;
  /** Bytes of read data received / write data sent (or granted). */
  done = 0;
  /** Capsule header (+ header digest) and the in-capsule data digest, reused for every command of this slot. */
  readonly pdu = new Uint8Array(CMD_HLEN + DIGEST_LEN);
  readonly ddgst = new Uint8Array(DIGEST_LEN);
  constructor(readonly index: number) {
    this.cid = index;
  }
}

const enum Rx {
  /** Collecting the common header and the rest of the PDU header (+ header digest). */
  HEADER,
  /** C2HData payload into the request's buffers. */
  DATA,
  /** The 4-byte data digest. */
  DDGST,
  /** Bytes we read and ignore (TermReq data). */
  SKIP,
}

export class TcpQueue {
  readonly qid: number;
  readonly depth: number;
  /** Negotiated in ICResp. */
  maxH2CData = 0;
  inCapsuleBytes: number;
  private readonly opts: TcpQueueOptions;
  private readonly log: Logger;
  private socket: net.Socket | null = null;
  private readonly slots: Slot[] = [];
  private readonly free: number[] = [];
  private readonly backlog: TcpRequest[] = [];
  private active = 0;
  private state: 'idle' | 'handshake' | 'live' | 'dead' = 'idle';
  private timer: NodeJS.Timeout | null = null;
  private handshake: { resolve(): void; reject(e: Error): void } | null = null;

  // receive state
  private rx: Rx = Rx.HEADER;
  private readonly hdr = new Uint8Array(IC_HLEN + DIGEST_LEN);
  private hdrHave = 0;
  private hdrNeed = 8;
  private rxSlot: Slot | null = null;
  private rxFlags = 0;
  private rxViews: Uint8Array[] = [];
  private rxView = 0;
  private rxViewOff = 0;
  private rxLeft = 0;
  private readonly rxDigest = new Uint8Array(DIGEST_LEN);
  private rxDigestHave = 0;

  constructor(opts: TcpQueueOptions) {
    if (!(opts.depth >= 1 && opts.depth <= MAX_QUEUE_DEPTH)) throw new RangeError(`queue depth ${opts.depth}`);
    this.opts = opts;
    this.qid = opts.qid;
    this.depth = opts.depth;
    this.inCapsuleBytes = opts.inCapsuleBytes;
    this.log = opts.logger.child({ qid: opts.qid });
    for (let i = 0; i < opts.depth; i++) this.slots.push(new Slot(i));
    for (let i = opts.depth - 1; i >= 0; i--) this.free.push(i);
  }

  get live(): boolean {
    return this.state === 'live';
  }

  /** Commands sent and not completed, plus those waiting for a free command id. */
  get outstanding(): number {
    return this.active + this.backlog.length;
  }

  /** TCP connect and ICReq/ICResp; rejects with a TransportError on any failure (the socket is then closed). */
  connect(): Promise<void> {
    if (this.state !== 'idle') throw new Error(`queue ${this.qid}: connect() called twice`);
    this.state = 'handshake';
    return new Promise<void>((resolve, reject) => {
      this.handshake = { resolve, reject };
      const socket = net.connect({ host: this.opts.host, port: this.opts.port, noDelay: true });
      this.socket = socket;
      socket.setTimeout(this.opts.connectTimeoutMs, () => {
        if (this.state === 'handshake') this.fail(new TransportError(`connect/ICReq timed out after ${this.opts.connectTimeoutMs} ms`));
      });
      socket.on('connect', () => {
        socket.write(encodeICReq({ pfv: 0, hpda: 0, hdgst: this.opts.hdgst, ddgst: this.opts.ddgst, maxr2t: 0 }));
      });
      socket.on('data', (chunk: Buffer) => {
        try {
          this.receive(chunk);
        } catch (error) {
          // A bug of ours on hostile input must still only cost this connection.
          this.fail(new TransportError(`internal error while parsing: ${(error as Error).message}`, { cause: error }));
        }
      });
      socket.on('error', (error) => this.fail(new TransportError(`socket error: ${error.message}`, { cause: error })));
      socket.on('close', () => this.fail(new TransportError('connection closed by the target')));
      socket.on('end', () => this.fail(new TransportError('connection closed by the target (EOF)')));
    });
  }

  /** Sends `req` now, or as soon as a command id is free. Only on a live queue. */
  submit(req: TcpRequest): void {
    if (this.state !== 'live') throw new Error(`queue ${this.qid}: submit on a ${this.state} queue`);
    const index = this.free.pop();
    if (index === undefined) {
      this.backlog.push(req);
      return;
    }
    this.send(this.slots[index]!, req);
  }

  /**
   * Takes the requests `which` selects out of the backlog (they were never sent) and returns them; `sent` says
   * whether a selected request is on the wire (only closing the connection stops the queue from touching its
   * buffers then).
   */
  withdraw(which: (req: TcpRequest) => boolean): { withdrawn: TcpRequest[]; sent: boolean } {
    const withdrawn: TcpRequest[] = [];
    for (let index = this.backlog.length - 1; index >= 0; index--) {
      if (which(this.backlog[index]!)) withdrawn.push(...this.backlog.splice(index, 1));
    }
    let sent = false;
    for (const slot of this.slots) if (slot.req !== null && which(slot.req)) sent = true;
    return { withdrawn, sent };
  }

  /** Closes the connection without reporting; returns the requests that had not completed. */
  close(): TcpRequest[] {
    const requests = this.takeRequests();
    this.teardown();
    return requests;
  }

  // --- sending ------------------------------------------------------------------------------------------------------

  private send(slot: Slot, req: TcpRequest): void {
    const socket = this.socket!;
    const hd = this.opts.hdgst ? DIGEST_LEN : 0;
    const dd = this.opts.ddgst ? DIGEST_LEN : 0;
    slot.req = req;
    slot.done = 0;
    slot.startedAt = performance.now();
    this.active++;
    if (this.active === 1) this.armTimer();

    const b = slot.pdu;
    b.fill(0, 8, CMD_HLEN);
    b[8] = req.opcode;
    b[9] = SQE_FLAGS_SGL;
    put16(b, 10, slot.cid);
    put32(b, 12, req.nsid);
    put32(b, 48, req.cdw10);
    put32(b, 52, req.cdw11);
    put32(b, 56, req.cdw12);
    put32(b, 60, req.cdw13);
    put32(b, 64, req.cdw14);
    put32(b, 68, req.cdw15);
    const sqe = b.subarray(8, CMD_HLEN);
    const inCapsule = req.dir === DataDir.OUT && req.length > 0 && req.length <= this.inCapsuleBytes;
    if (inCapsule) writeSgl(sqe, SGL_INCAPSULE, 0, req.length);
    else if (req.length > 0) writeSgl(sqe, SGL_TRANSPORT, 0, req.length);

    let flags = hd ? PduFlags.HDGST : 0;
    if (inCapsule && dd) flags |= PduFlags.DDGST;
    const plen = CMD_HLEN + hd + (inCapsule ? req.length + dd : 0);
    writeCommonHeader(b, PduType.CAPSULE_CMD, flags, CMD_HLEN, inCapsule ? CMD_HLEN + hd : 0, plen);
    if (hd) put32(b, CMD_HLEN, crc32c(b.subarray(0, CMD_HLEN)));
    if (!inCapsule) {
      socket.write(b.subarray(0, CMD_HLEN + hd));
      return;
    }
    const views = sliceViews(req.buffers, 0, req.length);
    socket.cork();
    socket.write(b.subarray(0, CMD_HLEN + hd));
    for (const v of views) socket.write(v);
    if (dd) {
      put32(slot.ddgst, 0, crc32c(views));
      socket.write(slot.ddgst);
    }
    socket.uncork();
    slot.done = req.length;
  }

  /** Answers an R2T: the granted range as H2CData PDUs of at most maxH2CData bytes, DATA_LAST on the last one. */
  private sendH2C(slot: Slot, ttag: number, offset: number, length: number): void {
    const socket = this.socket!;
    const req = slot.req!;
    const hd = this.opts.hdgst ? DIGEST_LEN : 0;
    socket.cork();
    for (let sent = 0; sent < length; ) {
      const n = Math.min(this.maxH2CData, length - sent);
      const last = sent + n === length;
      const header = new Uint8Array(DATA_HLEN + hd);
      writeDataPdu(header, PduType.H2C_DATA, last ? PduFlags.DATA_LAST : 0,
        { cccid: slot.cid, ttag, offset: offset + sent, length: n }, this.opts.hdgst, this.opts.ddgst);
      const views = sliceViews(req.buffers, offset + sent, n);
      socket.write(header);
      for (const v of views) socket.write(v);
      if (this.opts.ddgst) {
        const digest = new Uint8Array(DIGEST_LEN);
        put32(digest, 0, crc32c(views));
        socket.write(digest);
      }
      sent += n;
    }
    socket.uncork();
    slot.done = Math.max(slot.done, offset + length);
  }

  // --- receiving ----------------------------------------------------------------------------------------------------

  private receive(chunk: Uint8Array): void {
    let pos = 0;
    while (pos < chunk.length && this.state !== 'dead') {
      switch (this.rx) {
        case Rx.HEADER: {
          const n = Math.min(this.hdrNeed - this.hdrHave, chunk.length - pos);
          this.hdr.set(chunk.subarray(pos, pos + n), this.hdrHave);
          this.hdrHave += n;
          pos += n;
          if (this.hdrHave === 8 && this.hdrNeed === 8) {
            // Common header complete: check it before waiting for more bytes on the target's word.
            const need = this.headerLength();
            if (need < 0) return;
            this.hdrNeed = need;
          }
          if (this.hdrHave === this.hdrNeed && this.hdrNeed > 8) this.onHeader();
          break;
        }
        case Rx.DATA: {
          const view = this.rxViews[this.rxView]!;
          const n = Math.min(view.length - this.rxViewOff, chunk.length - pos);
          view.set(chunk.subarray(pos, pos + n), this.rxViewOff);
          pos += n;
          this.rxViewOff += n;
          this.rxLeft -= n;
          if (this.rxViewOff === view.length) {
            this.rxView++;
            this.rxViewOff = 0;
          }
          if (this.rxLeft === 0) {
            if (this.opts.ddgst) {
              this.rx = Rx.DDGST;
              this.rxDigestHave = 0;
            } else this.onDataDone();
          }
          break;
        }
        case Rx.DDGST: {
          const n = Math.min(DIGEST_LEN - this.rxDigestHave, chunk.length - pos);
          this.rxDigest.set(chunk.subarray(pos, pos + n), this.rxDigestHave);
          this.rxDigestHave += n;
          pos += n;
          if (this.rxDigestHave === DIGEST_LEN) {
            const expected = crc32c(this.rxViews);
            const got = u32(this.rxDigest, 0);
            if (got !== expected) {
              const cid = this.rxSlot?.cid;
              this.violation(`C2HData data digest mismatch (cid ${cid}: got 0x${hex(got)}, computed 0x${hex(expected)})`);
              return;
            }
            this.onDataDone();
          }
          break;
        }
        case Rx.SKIP: {
          const n = Math.min(this.rxLeft, chunk.length - pos);
          pos += n;
          this.rxLeft -= n;
          if (this.rxLeft === 0) this.nextPdu();
          break;
        }
      }
    }
  }

  private nextPdu(): void {
    this.rx = Rx.HEADER;
    this.hdrHave = 0;
    this.hdrNeed = 8;
    this.rxSlot = null;
    this.rxViews = [];
  }

  /** Validates the common header; returns the full header length (with digest) or -1 after failing. */
  private headerLength(): number {
    const type = this.hdr[0]!;
    const flags = this.hdr[1]!;
    const hlen = this.hdr[2]!;
    const plen = u32(this.hdr, 4);
    const name = pduTypeName(type);
    if (this.state === 'handshake') {
      if (type !== PduType.IC_RESP) return this.violation(`expected ICResp, got ${name}`);
      if (hlen !== IC_HLEN || plen !== IC_HLEN) return this.violation(`ICResp with hlen ${hlen}, plen ${plen} (want 128)`);
      return IC_HLEN;
    }
    let expected: number;
    switch (type) {
      case PduType.CAPSULE_RESP:
        expected = RESP_HLEN;
        break;
      case PduType.C2H_DATA:
        expected = DATA_HLEN;
        break;
      case PduType.R2T:
        expected = R2T_HLEN;
        break;
      case PduType.C2H_TERM_REQ:
        // TermReq never carries digests (NVMe/TCP 3.6.2.x); its data is the offending header, which we skip.
        if (hlen !== TERM_HLEN || plen < TERM_HLEN || plen > TERM_HLEN + 152) {
          return this.violation(`C2HTermReq with hlen ${hlen}, plen ${plen}`);
        }
        return TERM_HLEN;
      default:
        return this.violation(`unexpected PDU type ${name} from the target`);
    }
    if (hlen !== expected) return this.violation(`${name} with hlen ${hlen} (want ${expected})`);
    const hasHd = (flags & PduFlags.HDGST) !== 0;
    if (hasHd !== this.opts.hdgst) return this.violation(`${name} with HDGST flag ${hasHd ? 'set' : 'clear'}, negotiated ${this.opts.hdgst ? 'on' : 'off'}`);
    const headerLen = hlen + (hasHd ? DIGEST_LEN : 0);
    if (type !== PduType.C2H_DATA && plen !== headerLen) return this.violation(`${name} with plen ${plen} (want ${headerLen})`);
    if (plen < headerLen) return this.violation(`${name} with plen ${plen} shorter than its header`);
    return headerLen;
  }

  private onHeader(): void {
    const h = this.hdr;
    const type = h[0]!;
    if (this.state === 'handshake') return this.onICResp();
    if (type === PduType.C2H_TERM_REQ) {
      const term = readTermReq(h);
      this.violation(`target sent C2HTermReq (fes 0x${hex(term.fes)}, fei 0x${hex(term.fei)})`);
      return;
    }
    if (this.opts.hdgst) {
      const hlen = h[2]!;
      const got = u32(h, hlen);
      const expected = crc32c(h.subarray(0, hlen));
      if (got !== expected) {
        this.violation(`${pduTypeName(type)} header digest mismatch (got 0x${hex(got)}, computed 0x${hex(expected)})`);
        return;
      }
    }
    switch (type) {
      case PduType.CAPSULE_RESP:
        return this.onCapsuleResp();
      case PduType.C2H_DATA:
        return this.onC2HData();
      case PduType.R2T:
        return this.onR2T();
    }
  }

  private onICResp(): void {
    const resp = decodeICResp(this.hdr);
    if (resp.pfv !== 0) return void this.violation(`ICResp PFV ${resp.pfv} (want 0)`);
    if (resp.cpda !== 0) return void this.violation(`ICResp CPDA ${resp.cpda} (only 0 supported)`);
    if (resp.hdgst !== this.opts.hdgst || resp.ddgst !== this.opts.ddgst) {
      return void this.violation(`ICResp digests hdgst=${resp.hdgst} ddgst=${resp.ddgst} differ from requested hdgst=${this.opts.hdgst} ddgst=${this.opts.ddgst}`);
    }
    if (resp.maxh2cdata < 4096 || resp.maxh2cdata % 4 !== 0) {
      return void this.violation(`ICResp MAXH2CDATA ${resp.maxh2cdata} (must be >= 4096 and a multiple of 4)`);
    }
    this.maxH2CData = resp.maxh2cdata;
    this.state = 'live';
    this.socket!.setTimeout(0);
    this.nextPdu();
    const hs = this.handshake!;
    this.handshake = null;
    this.log.debug('NVMe/TCP queue connected', { maxH2CData: resp.maxh2cdata });
    hs.resolve();
  }

  /** The slot of a cid from the target, or undefined after failing the connection. */
  private slotOf(cid: number, what: string): Slot | undefined {
    const slot = this.slots[cid & SLOT_MASK];
    if (slot === undefined || slot.req === null || slot.cid !== cid) {
      this.violation(`${what} for unknown command id ${cid}`);
      return undefined;
    }
    return slot;
  }

  private onCapsuleResp(): void {
    const h = this.hdr;
    const cqe = 8;
    const cid = u16(h, cqe + 12);
    const slot = this.slotOf(cid, 'CapsuleResp');
    if (!slot) return;
    const status = u16(h, cqe + 14) >>> 1;
    const req = slot.req!;
    if (status === 0 && req.dir === DataDir.IN && slot.done !== req.length) {
      this.violation(`CapsuleResp success for cid ${cid} after ${slot.done} of ${req.length} data bytes`);
      return;
    }
    this.nextPdu();
    this.finish(slot, status, u32(h, cqe), u32(h, cqe + 4));
  }

  private onC2HData(): void {
    const h = this.hdr;
    const flags = h[1]!;
    const pdo = h[3]!;
    const plen = u32(h, 4);
    const d = readDataHeader(h);
    const slot = this.slotOf(d.cccid, 'C2HData');
    if (!slot) return;
    const req = slot.req!;
    const hd = this.opts.hdgst ? DIGEST_LEN : 0;
    const dd = this.opts.ddgst ? DIGEST_LEN : 0;
    if (req.dir !== DataDir.IN) return void this.violation(`C2HData for cid ${d.cccid}, which reads no data`);
    if ((flags & PduFlags.DDGST) !== 0 !== this.opts.ddgst) return void this.violation(`C2HData DDGST flag does not match the negotiated data digest`);
    if (d.length === 0 || d.offset + d.length > req.length) {
      return void this.violation(`C2HData cid ${d.cccid} datao ${d.offset} datal ${d.length} outside the ${req.length}-byte transfer`);
    }
    if (d.offset !== slot.done) return void this.violation(`C2HData cid ${d.cccid} datao ${d.offset}, expected ${slot.done}`);
    if (pdo !== DATA_HLEN + hd) return void this.violation(`C2HData pdo ${pdo} (want ${DATA_HLEN + hd})`);
    if (plen !== DATA_HLEN + hd + d.length + dd) return void this.violation(`C2HData plen ${plen} does not match datal ${d.length}`);
    if ((flags & PduFlags.DATA_SUCCESS) !== 0 && ((flags & PduFlags.DATA_LAST) === 0 || d.offset + d.length !== req.length)) {
      return void this.violation(`C2HData SUCCESS flag on a PDU that does not end the transfer (cid ${d.cccid})`);
    }
    this.rxSlot = slot;
    this.rxFlags = flags;
    this.rxViews = sliceViews(req.buffers, d.offset, d.length);
    this.rxView = 0;
    this.rxViewOff = 0;
    this.rxLeft = d.length;
    this.rx = Rx.DATA;
  }

  private onDataDone(): void {
    const slot = this.rxSlot!;
    const flags = this.rxFlags;
    let length = 0;
    for (const v of this.rxViews) length += v.length;
    slot.done += length;
    this.nextPdu();
    if ((flags & PduFlags.DATA_SUCCESS) !== 0) this.finish(slot, 0, 0, 0);
  }

  private onR2T(): void {
    const d = readDataHeader(this.hdr);
    const slot = this.slotOf(d.cccid, 'R2T');
    if (!slot) return;
    const req = slot.req!;
    // In-capsule writes have sent everything already (done === length), so any R2T for them fails the range check.
    if (req.dir !== DataDir.OUT) {
      return void this.violation(`R2T for cid ${d.cccid}, which has no data to send`);
    }
    if (d.length === 0 || d.offset + d.length > req.length || d.offset < slot.done) {
      return void this.violation(`R2T cid ${d.cccid} r2to ${d.offset} r2tl ${d.length} outside the ${req.length}-byte transfer (sent ${slot.done})`);
    }
    this.nextPdu();
    this.sendH2C(slot, d.ttag, d.offset, d.length);
  }

  private finish(slot: Slot, status: number, dw0: number, dw1: number): void {
    const req = slot.req!;
    slot.req = null;
    slot.cid = ((slot.cid + MAX_QUEUE_DEPTH) & 0xffff) | slot.index;
    this.active--;
    const next = this.backlog.shift();
    if (next) this.send(slot, next);
    else this.free.push(slot.index);
    try {
      req.complete(status, dw0, dw1);
    } catch (error) {
      this.log.error('completion callback threw', { error });
    }
  }

  // --- timeouts and teardown ----------------------------------------------------------------------------------------

  private armTimer(): void {
    const timeout = this.opts.commandTimeoutMs;
    if (timeout <= 0 || this.timer) return;
    this.timer = setInterval(() => this.checkTimeouts(), Math.max(10, Math.floor(timeout / 4)));
    this.timer.unref();
  }

  private checkTimeouts(): void {
    const now = performance.now();
    const timeout = this.opts.commandTimeoutMs;
    for (const slot of this.slots) {
      if (slot.req !== null && now - slot.startedAt > timeout) {
        this.fail(new TransportError(`command timed out after ${timeout} ms (cid ${slot.cid}, opcode 0x${hex(slot.req.opcode)})`));
        return;
      }
    }
    if (this.active === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private violation(message: string): -1 {
    this.fail(new TransportError(`protocol violation: ${message}`));
    return -1;
  }

  /** Tears the connection down once; reports outstanding requests to the owner (or rejects the handshake). */
  fail(error: TransportError): void {
    if (this.state === 'dead' || this.state === 'idle') return;
    const wasHandshake = this.state === 'handshake';
    const requests = this.takeRequests();
    this.teardown();
    if (wasHandshake) {
      const hs = this.handshake;
      this.handshake = null;
      hs?.reject(error);
      return;
    }
    this.opts.onFailure(this, error, requests);
  }

  private takeRequests(): TcpRequest[] {
    const requests: TcpRequest[] = [];
    for (const slot of this.slots) {
      if (slot.req) requests.push(slot.req);
      slot.req = null;
    }
    requests.push(...this.backlog.splice(0));
    this.active = 0;
    return requests;
  }

  private teardown(): void {
    this.state = 'dead';
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const socket = this.socket;
    if (socket) {
      socket.removeAllListeners('data');
      socket.on('error', () => {});
      socket.destroy();
    }
    if (this.handshake) {
      const hs = this.handshake;
      this.handshake = null;
      hs.reject(new TransportError('queue closed during connect'));
    }
  }
}

function hex(n: number): string {
  return n.toString(16);
}
