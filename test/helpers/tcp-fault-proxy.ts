/**
 * A TCP proxy on 127.0.0.1 in front of a target port, controlled by a test: drop connections, refuse new ones, add
 * latency, truncate or corrupt what flows through. It understands the NVMe/TCP framing (8-byte common header:
 * type u8, flags u8, hlen u8, pdo u8, plen u32 LE) so that faults can hit whole PDUs ("the next C2HData PDU").
 * A stream that does not parse as PDUs (plen < 8) is forwarded raw from then on; only the raw faults apply to it.
 *
 * Directions: 'to-target' is what the client (host/initiator) sends, 'to-host' is what the target answers.
 * Every fault is one-shot and applies to the first connection where it matches, counted from the moment it is
 * armed. Details and examples: docs/testing.md.
 */
import net from 'node:net';

export type Direction = 'to-host' | 'to-target';

/** NVMe/TCP PDU types (NVMe/TCP transport specification, common header byte 0). */
export const PduType = {
  ICReq: 0x00,
  ICResp: 0x01,
  H2CTermReq: 0x02,
  C2HTermReq: 0x03,
  CapsuleCmd: 0x04,
  CapsuleResp: 0x05,
  H2CData: 0x06,
  C2HData: 0x07,
  R2T: 0x09,
} as const;

export interface FaultProxyStats {
  /** Connections accepted and forwarded to the target. */
  connections: number;
  /** Connections open right now. */
  active: number;
  /** Connections accepted and reset at once while refusing (dropAll({ refuseNew: true })). */
  refused: number;
  bytesToTarget: number;
  bytesToHost: number;
  /** PDUs whose common header went through, per direction. */
  pdusToTarget: number;
  pdusToHost: number;
  /** Faults applied so far (truncations and corruptions). */
  faultsApplied: number;
}

export interface PduRecord {
  /** 1-based connection number. */
  connection: number;
  direction: Direction;
  type: number;
  flags: number;
  hlen: number;
  pdo: number;
  plen: number;
}

export interface FaultProxy {
  readonly host: string;
  /** Listens on 127.0.0.1:<port>. */
  readonly port: number;
  /**
   * Drops every current connection, both sides: `how: 'reset'` (default) sends RST, `'close'` sends FIN.
   * With `refuseNew`, new connections are accepted and reset at once until `allow()` (this is what slirp does
   * while nothing listens in the guest; the port itself stays bound).
   */
  dropAll(options?: { refuseNew?: boolean; how?: 'reset' | 'close' }): void;
  /** Accepts and forwards new connections again. */
  allow(): void;
  /** Latency added to every chunk in both directions from now on (0 = none). Order is kept. */
  setDelay(ms: number): void;
  /** Forwards only the first `bytes` bytes of the next PDU in `direction`, then closes both sides (FIN). */
  truncateNext(direction: Direction, bytes: number): void;
  /** Like truncateNext, for the next PDU of `type` in `direction` (default 'to-host'). */
  truncateNextPdu(type: number, bytes: number, direction?: Direction): void;
  /**
   * Flips (XOR 0xff) the byte `offset` bytes into the data that arrives next in `direction`, whatever it is (counted
   * from the moment this is called, on the first connection that gets that far).
   */
  corruptNext(direction: Direction, offset: number): void;
  /**
   * Flips (XOR 0xff) the byte at `offsetInPdu` of the next PDU of `type` in `direction` (default 'to-host'), e.g.
   * `corruptNextPdu(PduType.C2HData, pdo + 10)` corrupts the 11th data byte of the next C2HData PDU. A PDU shorter
   * than offsetInPdu + 1 is forwarded unchanged and the fault stays armed.
   */
  corruptNextPdu(type: number, offsetInPdu: number, direction?: Direction): void;
  /** Removes every armed fault (not the delay). */
  clearFaults(): void;
  stats(): FaultProxyStats;
  /** The last (up to 10,000) PDU headers seen, oldest first. */
  pdus(): PduRecord[];
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

type Fault =
  | { kind: 'truncate'; direction: Direction; type: number | undefined; bytes: number }
  | { kind: 'corrupt-pdu'; direction: Direction; type: number; offset: number }
  /** `base`: stream position of every pipe open when it was armed (pipes opened later count from 0). */
  | { kind: 'corrupt-raw'; direction: Direction; offset: number; base: Map<Pipe, number> };

interface Pipe {
  direction: Direction;
  from: net.Socket;
  to: net.Socket;
  /** Bytes received from `from` so far (stream position, for raw corruption). */
  received: number;
  /** Partial common header held back until all 8 bytes are there. */
  pending: Buffer | undefined;
  /** The PDU in progress: its header fields, bytes of it already forwarded and its faults. */
  current: { type: number; plen: number; done: number; faults: Fault[] } | undefined;
  raw: boolean;
  /** Delayed chunks, in order. */
  queue: Array<{ due: number; data: Buffer; thenClose: boolean }>;
  timer: NodeJS.Timeout | undefined;
  stopped: boolean;
  /** The source closed: end the destination once the queue is empty. */
  sourceGone: boolean;
  /** `from` is paused until `to` drains. */
  waitingForDrain: boolean;
}

interface Connection {
  id: number;
  client: net.Socket;
  target: net.Socket;
  pipes: Pipe[];
}

const PDU_LOG_LIMIT = 10_000;

export async function startFaultProxy(target: { host: string; port: number }): Promise<FaultProxy> {
  const connections = new Set<Connection>();
  const faults: Fault[] = [];
  const pduLog: PduRecord[] = []; // ring buffer of the last PDU_LOG_LIMIT headers
  let pduCount = 0;
  const stats: FaultProxyStats = {
    connections: 0, active: 0, refused: 0, bytesToTarget: 0, bytesToHost: 0, pdusToTarget: 0, pdusToHost: 0, faultsApplied: 0,
  };
  let refusing = false;
  let delayMs = 0;
  let nextId = 1;
  let closed = false;

  const takeFault = (predicate: (fault: Fault) => boolean): Fault | undefined => {
    const index = faults.findIndex(predicate);
    if (index < 0) return undefined;
    return faults.splice(index, 1)[0];
  };

  const destroyConnection = (connection: Connection, how: 'reset' | 'close'): void => {
    for (const pipe of connection.pipes) {
      pipe.stopped = true;
      if (pipe.timer) clearTimeout(pipe.timer);
      pipe.queue.length = 0;
    }
    for (const socket of [connection.client, connection.target]) {
      if (socket.destroyed) continue;
      if (how === 'reset' && typeof socket.resetAndDestroy === 'function' && socket.readyState !== 'opening') socket.resetAndDestroy();
      else socket.destroy();
    }
  };

  /** Sends queued chunks whose time has come; closes both sides after a truncated PDU. */
  const pump = (connection: Connection, pipe: Pipe): void => {
    pipe.timer = undefined;
    while (pipe.queue.length > 0 && !pipe.stopped) {
      const head = pipe.queue[0]!;
      const wait = head.due - Date.now();
      if (wait > 0) {
        pipe.timer = setTimeout(() => pump(connection, pipe), wait);
        return;
      }
      pipe.queue.shift();
      if (head.data.length > 0 && !pipe.to.destroyed) {
        if (!pipe.to.write(head.data) && !pipe.waitingForDrain) {
          pipe.waitingForDrain = true;
          pipe.from.pause();
          pipe.to.once('drain', () => {
            pipe.waitingForDrain = false;
            pipe.from.resume();
          });
        }
      }
      if (head.thenClose) {
        // the truncated PDU goes out, then FIN to its receiver; the other side is dropped
        for (const p of connection.pipes) {
          p.stopped = true;
          if (p.timer) clearTimeout(p.timer);
        }
        pipe.to.end();
        pipe.from.destroy();
        return;
      }
    }
    if (pipe.queue.length === 0 && pipe.sourceGone && !pipe.to.destroyed) pipe.to.end();
  };

  const emit = (connection: Connection, pipe: Pipe, data: Buffer, thenClose = false): void => {
    if (pipe.direction === 'to-host') stats.bytesToHost += data.length;
    else stats.bytesToTarget += data.length;
    pipe.queue.push({ due: Date.now() + delayMs, data, thenClose });
    if (!pipe.timer) pump(connection, pipe);
  };

  /** Applies raw corruption (by stream position) to a chunk just received. */
  const corruptRaw = (pipe: Pipe, chunk: Buffer): Buffer => {
    const start = pipe.received;
    pipe.received += chunk.length;
    let copy: Buffer | undefined;
    for (;;) {
      const fault = takeFault((f) => {
        if (f.kind !== 'corrupt-raw' || f.direction !== pipe.direction) return false;
        return (f.base.get(pipe) ?? 0) + f.offset < start + chunk.length;
      });
      if (!fault || fault.kind !== 'corrupt-raw') break;
      const position = Math.max(start, (fault.base.get(pipe) ?? 0) + fault.offset);
      copy ??= Buffer.from(chunk);
      copy[position - start]! ^= 0xff;
      stats.faultsApplied++;
    }
    return copy ?? chunk;
  };

  const onData = (connection: Connection, pipe: Pipe, chunk: Buffer): void => {
    if (pipe.stopped) return;
    let data = corruptRaw(pipe, chunk);
    if (pipe.raw) return emit(connection, pipe, data);
    if (pipe.pending) {
      data = Buffer.concat([pipe.pending, data]);
      pipe.pending = undefined;
    }
    let i = 0;
    while (i < data.length) {
      if (!pipe.current) {
        if (data.length - i < 8) {
          pipe.pending = Buffer.from(data.subarray(i));
          return;
        }
        const type = data[i]!;
        const plen = data.readUInt32LE(i + 4);
        if (plen < 8) {
          pipe.raw = true;
          return emit(connection, pipe, data.subarray(i));
        }
        if (pipe.direction === 'to-host') stats.pdusToHost++;
        else stats.pdusToTarget++;
        pduLog[pduCount++ % PDU_LOG_LIMIT] = { connection: connection.id, direction: pipe.direction, type, flags: data[i + 1]!, hlen: data[i + 2]!, pdo: data[i + 3]!, plen };
        const mine: Fault[] = [];
        const truncate = takeFault((f) => f.kind === 'truncate' && f.direction === pipe.direction && (f.type === undefined || f.type === type));
        if (truncate) mine.push(truncate);
        const corrupt = takeFault((f) => f.kind === 'corrupt-pdu' && f.direction === pipe.direction && f.type === type && f.offset < plen);
        if (corrupt) mine.push(corrupt);
        pipe.current = { type, plen, done: 0, faults: mine };
      }
      const current = pipe.current;
      const n = Math.min(current.plen - current.done, data.length - i);
      let piece = data.subarray(i, i + n);
      let thenClose = false;
      for (const fault of current.faults) {
        if (fault.kind === 'corrupt-pdu' && fault.offset >= current.done && fault.offset < current.done + n) {
          piece = Buffer.from(piece);
          piece[fault.offset - current.done]! ^= 0xff;
          stats.faultsApplied++;
        } else if (fault.kind === 'truncate' && current.done + n >= fault.bytes) {
          piece = piece.subarray(0, Math.max(0, fault.bytes - current.done));
          thenClose = true;
          stats.faultsApplied++;
        }
      }
      emit(connection, pipe, piece, thenClose);
      if (thenClose) {
        pipe.stopped = true;
        return;
      }
      current.done += n;
      i += n;
      if (current.done === current.plen) pipe.current = undefined;
    }
  };

  const server = net.createServer({ noDelay: true }, (client) => {
    if (refusing || closed) {
      stats.refused++;
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host: target.host, port: target.port, noDelay: true });
    const connection: Connection = { id: nextId++, client, target: upstream, pipes: [] };
    const pipe = (direction: Direction, from: net.Socket, to: net.Socket): Pipe => ({
      direction, from, to, received: 0, pending: undefined, current: undefined, raw: false, queue: [], timer: undefined, stopped: false, sourceGone: false, waitingForDrain: false,
    });
    const toTarget = pipe('to-target', client, upstream);
    const toHost = pipe('to-host', upstream, client);
    connection.pipes.push(toTarget, toHost);
    connections.add(connection);
    stats.connections++;
    stats.active++;
    client.pause(); // nothing is read from the client before the target side is connected
    upstream.once('connect', () => client.resume());
    let closedSockets = 0;
    for (const p of [toTarget, toHost]) {
      p.from.on('data', (chunk: Buffer) => onData(connection, p, chunk));
      p.from.on('error', () => destroyConnection(connection, 'reset'));
      // FIN or close from one side: forward everything still queued, then FIN to the other side
      p.from.on('close', (hadError) => {
        closedSockets++;
        if (closedSockets === 2) {
          connections.delete(connection);
          stats.active--;
        }
        if (hadError) return destroyConnection(connection, 'reset');
        if (p.pending && !p.stopped) {
          // a partial common header at the very end of the stream: forward it as it is
          emit(connection, p, p.pending);
          p.pending = undefined;
        }
        p.sourceGone = true;
        if (!p.timer) pump(connection, p);
      });
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  const checkDirection = (direction: Direction): void => {
    if (direction !== 'to-host' && direction !== 'to-target') throw new TypeError(`direction must be 'to-host' or 'to-target', not ${String(direction)}`);
  };
  const checkCount = (name: string, value: number): void => {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, not ${value}`);
  };

  return {
    host: '127.0.0.1',
    port,
    dropAll(options = {}) {
      if (options.refuseNew) refusing = true;
      for (const connection of [...connections]) destroyConnection(connection, options.how ?? 'reset');
    },
    allow() {
      refusing = false;
    },
    setDelay(ms) {
      checkCount('delay', ms);
      delayMs = ms;
    },
    truncateNext(direction, bytes) {
      checkDirection(direction);
      checkCount('bytes', bytes);
      faults.push({ kind: 'truncate', direction, type: undefined, bytes });
    },
    truncateNextPdu(type, bytes, direction = 'to-host') {
      checkDirection(direction);
      checkCount('bytes', bytes);
      faults.push({ kind: 'truncate', direction, type, bytes });
    },
    corruptNext(direction, offset) {
      checkDirection(direction);
      checkCount('offset', offset);
      const base = new Map<Pipe, number>();
      for (const connection of connections) for (const pipe of connection.pipes) base.set(pipe, pipe.received);
      faults.push({ kind: 'corrupt-raw', direction, offset, base });
    },
    corruptNextPdu(type, offsetInPdu, direction = 'to-host') {
      checkDirection(direction);
      checkCount('offsetInPdu', offsetInPdu);
      faults.push({ kind: 'corrupt-pdu', direction, type, offset: offsetInPdu });
    },
    clearFaults() {
      faults.length = 0;
    },
    stats() {
      return { ...stats };
    },
    pdus() {
      if (pduCount <= PDU_LOG_LIMIT) return pduLog.slice();
      const start = pduCount % PDU_LOG_LIMIT;
      return [...pduLog.slice(start), ...pduLog.slice(0, start)];
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const connection of [...connections]) destroyConnection(connection, 'close');
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
