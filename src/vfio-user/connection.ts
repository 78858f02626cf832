/**
 * vfio-user framing over one connected AF_UNIX stream socket (a raw, non-blocking fd from the native addon).
 *
 * Receiving: bytes are read in large chunks into one growable buffer, so a burst of small messages (QEMU's posted
 * doorbell writes) costs one recvmsg. Complete messages are handed to the handler strictly in order; a handler
 * that returns a promise holds back every following message until it settles (reading pauses meanwhile, and the
 * kernel's socket buffer pushes back on the client). After each pass over the available messages the handler's
 * `batchEnd` runs once: the device's interrupt-coalescing point.
 *
 * File descriptors: SCM_RIGHTS fds ride on the first byte of the sendmsg() that carried them, and a Linux recvmsg
 * stops right after the chunk of data that brought fds. Both clients in scope send one message per sendmsg, so
 * the fds of one recvmsg belong to the message that contains the last byte received by that call. We record
 * the fds with that stream position (one record per message: fds for a message that already has some are
 * merged into its record) and attach them to the message covering it. The limit (`maxFds`) is per message, not
 * per recvmsg: fds beyond it are closed the moment they arrive, however many recvmsgs the client spreads them
 * over, and the message is marked `fdsTruncated` (the server answers it EINVAL once it is complete). So a client
 * never makes us hold more than `maxFds` fds for the message being assembled (plus at most `maxFds` for the next
 * one, which may start in the same recvmsg).
 *
 * Sending: replies are appended to one growable buffer and flushed at the end of each pass (many replies, one
 * sendmsg). A reply that carries fds starts a new sendmsg, so its fds arrive with its own header, which is what
 * QEMU (reading the 16-byte header with recvmsg) and cloud-hypervisor (reading the fixed reply with recvmsg)
 * expect. When the peer does not read, output accumulates up to a high-water mark, then we stop reading requests
 * until it drains: no unbounded memory for a client that floods requests and never reads replies.
 *
 * Size: receiving, fd attribution and the send queue share one buffer discipline and one backpressure rule.
 */
import { native, POLL_READABLE, POLL_WRITABLE, type FdWatcher } from '../native/index.js';
import { fromBase64, toBase64, type FdCollector, type FdSource } from '../util/handover-fds.js';
import { HEADER_SIZE, commandName } from './protocol.js';

/** One received message. The object is reused for every message: copy what you need before awaiting. */
export interface IncomingMessage {
  msgId: number;
  command: number;
  /** msg_size from the header (whole message). */
  size: number;
  flags: number;
  error: number;
  /** The receive buffer; the payload is bytes[bodyOffset, bodyOffset + bodyLength). */
  bytes: Uint8Array;
  view: DataView;
  bodyOffset: number;
  bodyLength: number;
  /** fds that arrived with this message (at most `maxFds`); the handler owns them (close or keep). */
  fds: number[];
  /** The client sent more than `maxFds` fds with this message; the extra ones were closed on arrival. */
  fdsTruncated: boolean;
  /**
   * Crash recovery: the message was received by a process that died, and may have been handled in part (see
   * StreamJournal). Handlers make such a repeat harmless (a DMA_UNMAP of a range already gone succeeds).
   */
  replayed: boolean;
}

export interface ConnectionHandler {
  /**
   * Handles one complete message. The payload view is valid until this returns or, when it returns a promise,
   * until that promise settles; following messages wait for it. The promise must not reject (a rejection is
   * treated as an internal error and drops the connection).
   */
  handleMessage(message: IncomingMessage): void | Promise<void>;
  /** Called once processing pauses after at least one message was handled. */
  batchEnd(): void;
  /** Replies are about to be sent (crash recovery checkpoints here); optional. */
  beforeSend?(): void;
  /**
   * A message larger than `maxMessageSize` (but not absurd): its payload is skipped without being buffered and
   * its fds are closed. The header fields of `message` are valid; bodyLength is 0.
   */
  oversizedMessage(message: IncomingMessage): void;
  /** The connection is closed (by the peer, an I/O error, an unrecoverable framing error, or `close()`). */
  closed(reason: string, error?: unknown): void;
}

export interface ConnectionOptions {
  /** Largest message accepted into the buffer (header included). */
  maxMessageSize: number;
  /** Messages above maxMessageSize but at most this are skipped (error reply); larger ones drop the connection. */
  discardLimit: number;
  /**
   * Most fds accepted with one message, counted over every recvmsg that brought part of it; the extra ones are
   * closed at once and the message is reported as `fdsTruncated`.
   */
  maxFds: number;
  /** Stop reading requests while more than this many reply bytes are waiting to be sent. Default 8 MiB. */
  outputHighWater?: number;
}

/**
 * Crash recovery's record of one connection's byte streams (docs/restart.md), kept in memory that outlives the
 * process. With it and the last checkpoint a successor knows which received messages to handle again and which
 * reply bytes the client already has.
 */
export interface StreamJournal {
  /**
   * `bytes` arrived at input position `pos`; `fds` came with their last byte (`truncated`: more were sent and
   * closed). The fds must be safe from the process's death (kept by the holder) when this returns.
   */
  received(pos: number, bytes: Uint8Array, fds: readonly number[], truncated: boolean): void;
  /**
   * The messages before input position `inPos` are handled and their replies, ending at output position `outPos`,
   * are all sent. `rest`: the bytes received after `inPos` (part of the next message), with their fds.
   */
  settled(inPos: number, outPos: number, rest: Uint8Array, restFds: ReadonlyArray<{ pos: number; fds: readonly number[]; truncated: boolean }>): void;
  /** The socket has accepted the output up to position `outPos`. */
  sent(outPos: number): void;
}

/**
 * A serving connection's streams in a crash checkpoint: how far its messages are handled, and the replies not yet
 * sent (with the fds they carry, as snapshot indexes). Positions count bytes since the connection was accepted.
 */
export interface ConnectionStreamsState {
  handledPos: number;
  sentPos: number;
  unsent: string;
  unsentFds: Array<{ offset: number; fds: number[] }>;
}

/** What a successor rebuilds a connection's streams from (serve/crash-recovery.ts works it out). */
export interface RecoveredStreams {
  /** Input position of `input[0]`. */
  inputPos: number;
  /** Received bytes from `inputPos` on, not yet handled (or handled in part: `replayed`). */
  input: Uint8Array;
  inputFds: Array<{ pos: number; fds: number[]; truncated: boolean }>;
  /** Output position of `output[0]`. */
  outputPos: number;
  /** Reply bytes from the checkpoint, to be sent (replies regenerated by handling `input` follow them). */
  output: Uint8Array;
  outputFds: Array<{ pos: number; fds: number[] }>;
  /** The client has the output up to this position already: bytes before it are dropped instead of sent. */
  clientHasUpTo: number;
}

interface FdBatch {
  /**
   * Stream position of the last byte received together with the first of these fds (later fds of the same
   * message are merged in; they are received at or after this position, still inside the message).
   */
  pos: number;
  /** At most `maxFds`. */
  fds: number[];
  /** More fds than `maxFds` were sent for this message (the extra ones are already closed). */
  truncated: boolean;
}

interface FdMark {
  /** Output stream position of the first byte of the message carrying these fds. */
  pos: number;
  fds: readonly number[];
}

/**
 * A quiet connection's receive state in a live-upgrade snapshot: bytes received and not yet handled (the start of a
 * message whose rest is still to come), the fds that came with them and what is left to skip of an oversized one.
 */
export interface ConnectionInputState {
  pending: string;
  /** `offset` is relative to the first pending byte; `fds` are indexes into the snapshot's fds. */
  fdBatches: Array<{ offset: number; fds: number[]; truncated: boolean }>;
  discardRemaining: number;
}

const NO_FDS: number[] = Object.freeze([]) as unknown as number[];
const INITIAL_BUFFER_SIZE = 64 * 1024;
/** Compact the receive buffer when less than this is free at its end. */
const MIN_RECEIVE_SPACE = 16 * 1024;
/** Reads per readiness event before yielding to the event loop (the poll is level-triggered, so none is lost). */
const MAX_READS_PER_EVENT = 32;

/** Closes received fds we own, each number once (closing a number twice could hit an fd opened in between). */
export function closeFds(fds: readonly number[]): void {
  for (const fd of fds.length > 1 ? new Set(fds) : fds) {
    try {
      native.close(fd);
    } catch {
      // Already closed or never ours: nothing more to release.
    }
  }
}

export class Connection {
  private readonly watcher: FdWatcher;
  private watching = 0;
  private closed = false;
  /** Closed because the byte stream could not be parsed any more (as opposed to EOF, I/O error or close()). */
  closedForProtocolError = false;

  // Receive side. Positions are absolute stream offsets; `inStartPos` is the position of inBytes[inStart].
  private inBytes: Uint8Array;
  private inView: DataView;
  private inStart = 0;
  private inEnd = 0;
  private inStartPos = 0;
  private readonly fdBatches: FdBatch[] = [];
  /** Bytes of an oversized message still to skip. */
  private discardRemaining = 0;
  private readonly message: IncomingMessage;
  /** A handler promise is pending. */
  private blocked = false;
  /** Reading paused because too much output is queued. */
  private outputStalled = false;
  private processing = false;
  private handledSinceBatchEnd = 0;
  /** Reading stopped for a live upgrade (see pause). */
  private paused = false;
  private readonly quietWaiters: Array<() => void> = [];

  // Send side. `outStartPos` is the output stream position of outBytes[outStart].
  private out: Uint8Array;
  private outDataView: DataView;
  private outStart = 0;
  private outEnd = 0;
  private outStartPos = 0;
  private readonly fdMarks: FdMark[] = [];
  private readonly outputHighWater: number;

  /** Crash recovery's journal of the streams (set before start), if enabled. */
  journal: StreamJournal | undefined;
  /** Input position of the message whose handler has not returned or settled yet. */
  private handlingPos = -1;
  /** Messages starting before this input position were received by a predecessor that died (recoverStreams). */
  private replayEndPos = 0;
  /** Output before this position has reached the client already (recoverStreams): dropped, not sent again. */
  private clientHasUpTo = 0;
  private settledInPos = -1;
  private settledOutPos = -1;
  private settledRest = -1;

  bytesReceived = 0;
  bytesSent = 0;
  /** Times reading paused because the client was not reading its replies. */
  outputStalls = 0;

  constructor(
    readonly fd: number,
    private readonly options: ConnectionOptions,
    private readonly handler: ConnectionHandler,
  ) {
    this.inBytes = new Uint8Array(Math.min(INITIAL_BUFFER_SIZE, options.maxMessageSize));
    this.inView = new DataView(this.inBytes.buffer);
    this.out = new Uint8Array(INITIAL_BUFFER_SIZE);
    this.outDataView = new DataView(this.out.buffer);
    this.outputHighWater = options.outputHighWater ?? 8 * 1024 * 1024;
    this.message = {
      msgId: 0,
      command: 0,
      size: 0,
      flags: 0,
      error: 0,
      bytes: this.inBytes,
      view: this.inView,
      bodyOffset: 0,
      bodyLength: 0,
      fds: NO_FDS,
      fdsTruncated: false,
      replayed: false,
    };
    this.watcher = native.createWatcher(fd, this.onPoll);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Reply bytes not yet accepted by the socket. */
  get pendingOutput(): number {
    return this.outEnd - this.outStart;
  }

  start(): void {
    this.updateWatcher();
    // Complete messages a predecessor left in the buffer (restoreInput) are handled now.
    if (this.inEnd > this.inStart) this.process();
  }

  /**
   * Live upgrade: stops reading from the socket at a message boundary. Messages already received are still handled;
   * resolves once none is being handled, none is complete in the buffer and every reply has gone out (or the
   * connection closed). What is buffered then is at most the first part of one message (`snapshotInput`).
   */
  pause(): Promise<void> {
    this.paused = true;
    this.updateWatcher();
    if (!this.processing && !this.closed) this.process();
    return new Promise((resolve) => {
      this.quietWaiters.push(resolve);
      this.checkQuiet();
    });
  }

  /** Undoes `pause`: reading goes on where it stopped. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.updateWatcher();
    if (!this.processing && !this.closed) this.process();
  }

  /** Received and unhandled input of a paused, quiet connection, its fds added to `fds`. */
  snapshotInput(fds: FdCollector): ConnectionInputState {
    if (!this.isQuiet()) throw new Error('vfio-user connection snapshot while it is not quiet');
    return {
      pending: toBase64(this.inBytes.subarray(this.inStart, this.inEnd)),
      fdBatches: this.fdBatches.map((batch) => ({
        offset: batch.pos - this.inStartPos,
        fds: batch.fds.map((fd) => fds.add(fd)),
        truncated: batch.truncated,
      })),
      discardRemaining: this.discardRemaining,
    };
  }

  /** Puts a predecessor's unhandled input (snapshotInput) in front of what the socket brings next; before start(). */
  restoreInput(state: ConnectionInputState, fds: FdSource): void {
    const pending = fromBase64(state.pending, 'pending vfio-user input');
    if (pending.length > this.options.maxMessageSize) throw new Error('snapshot: pending vfio-user input is too large');
    this.ensureCapacity(pending.length);
    this.inBytes.set(pending, this.inEnd);
    this.inEnd += pending.length;
    for (const batch of state.fdBatches) {
      if (!Number.isInteger(batch.offset) || batch.offset < 0 || batch.offset >= pending.length) {
        throw new Error(`snapshot: pending fds at offset ${batch.offset} outside the ${pending.length} pending bytes`);
      }
      this.fdBatches.push({ pos: this.inStartPos + batch.offset, fds: batch.fds.map((index) => fds.take(index)), truncated: batch.truncated });
    }
    if (!Number.isSafeInteger(state.discardRemaining) || state.discardRemaining < 0) {
      throw new Error('snapshot: invalid discardRemaining');
    }
    this.discardRemaining = state.discardRemaining;
  }

  /** The streams for a crash checkpoint, taken while serving; reply fds are added to `fds`. */
  checkpointStreams(fds: FdCollector): ConnectionStreamsState {
    return {
      handledPos: this.handlingPos >= 0 ? this.handlingPos : this.inStartPos,
      sentPos: this.outStartPos,
      unsent: toBase64(this.out.subarray(this.outStart, this.outEnd)),
      unsentFds: this.fdMarks.map((mark) => ({ offset: mark.pos - this.outStartPos, fds: mark.fds.map((fd) => fds.add(fd)) })),
    };
  }

  /** Crash recovery, before start(): the streams as a predecessor that died left them. */
  recoverStreams(streams: RecoveredStreams): void {
    if (this.inEnd !== 0 || this.outEnd !== 0) throw new Error('recoverStreams on a connection that has already moved bytes');
    if (streams.input.length > this.options.maxMessageSize + this.options.discardLimit) {
      throw new Error(`checkpoint: ${streams.input.length} received bytes left unhandled is more than a connection buffers`);
    }
    this.ensureCapacity(streams.input.length);
    this.inBytes.set(streams.input, 0);
    this.inEnd = streams.input.length;
    this.inStartPos = streams.inputPos;
    this.bytesReceived = streams.inputPos + streams.input.length;
    this.replayEndPos = streams.inputPos + streams.input.length;
    for (const batch of streams.inputFds) this.fdBatches.push({ pos: batch.pos, fds: batch.fds, truncated: batch.truncated });
    const at = this.reserve(streams.output.length);
    this.out.set(streams.output, at);
    this.outStartPos = streams.outputPos;
    this.bytesSent = streams.outputPos;
    for (const mark of streams.outputFds) this.fdMarks.push({ pos: mark.pos, fds: mark.fds });
    this.clientHasUpTo = streams.clientHasUpTo;
  }

  private isQuiet(): boolean {
    return this.closed || (!this.blocked && !this.processing && !this.outputStalled && this.pendingOutput === 0);
  }

  private checkQuiet(): void {
    if (this.quietWaiters.length === 0 || !this.isQuiet()) return;
    for (const resolve of this.quietWaiters.splice(0)) resolve();
  }

  /** Reads whatever the socket holds now (e.g. to notice that the peer has gone before its poll event fires). */
  poll(): void {
    if (!this.closed) this.onReadable(true);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Sending

  /** The send buffer; valid until the next `reserve`. */
  get outBytes(): Uint8Array {
    return this.out;
  }

  get outView(): DataView {
    return this.outDataView;
  }

  /** Appends `size` bytes to the send queue and returns their offset in `outBytes` / `outView`. */
  reserve(size: number): number {
    if (this.outEnd + size > this.out.length) {
      if (this.outStart > 0) {
        this.out.copyWithin(0, this.outStart, this.outEnd);
        this.outEnd -= this.outStart;
        this.outStart = 0;
      }
      if (this.outEnd + size > this.out.length) {
        const grown = new Uint8Array(Math.max(this.out.length * 2, this.outEnd + size));
        grown.set(this.out.subarray(0, this.outEnd));
        this.out = grown;
        this.outDataView = new DataView(grown.buffer);
      }
    }
    const at = this.outEnd;
    this.outEnd += size;
    return at;
  }

  /** Drops the most recent reservation (a reply that could not be completed). */
  unreserve(at: number): void {
    this.outEnd = at;
  }

  /**
   * Sends `fds` with the message reserved at `at` (which must be the most recent reservation). The fds are not
   * closed: they must stay open until flushed.
   */
  attachFds(at: number, fds: readonly number[]): void {
    if (fds.length > 0) this.fdMarks.push({ pos: this.outStartPos + (at - this.outStart), fds });
  }

  /** Sends what the socket accepts now; the rest goes when it becomes writable. */
  flush(): void {
    if (this.closed) return;
    if (this.clientHasUpTo > this.outStartPos) this.dropAlreadySent();
    if (this.outStart < this.outEnd) this.handler.beforeSend?.();
    while (this.outStart < this.outEnd) {
      let end = this.outEnd;
      let fds: readonly number[] = NO_FDS;
      const mark = this.fdMarks[0];
      if (mark !== undefined) {
        const markAt = this.outStart + (mark.pos - this.outStartPos);
        if (markAt === this.outStart) {
          // A message with fds starts a sendmsg of its own, and the next one with fds starts another.
          fds = mark.fds;
          const next = this.fdMarks[1];
          if (next !== undefined) end = this.outStart + (next.pos - this.outStartPos);
        } else {
          end = markAt;
        }
      }
      let sent: number | null;
      try {
        sent = native.sendmsg(this.fd, this.out.subarray(this.outStart, end), fds);
      } catch (error) {
        this.close(`send failed: ${(error as Error).message}`, error);
        return;
      }
      if (sent === null) break;
      // The kernel attaches the fds to the first byte it accepted, so they are gone even after a partial send.
      if (fds.length > 0) this.fdMarks.shift();
      this.outStart += sent;
      this.outStartPos += sent;
      this.bytesSent += sent;
      this.journal?.sent(this.outStartPos);
    }
    if (this.outStart === this.outEnd) {
      this.outStart = 0;
      this.outEnd = 0;
      if (this.journal !== undefined) this.settle();
    }
    if (this.outputStalled && this.pendingOutput <= this.outputHighWater / 2) {
      this.outputStalled = false;
      if (!this.processing) this.process();
    }
    this.updateWatcher();
    this.checkQuiet();
  }

  /**
   * Crash recovery: replies regenerated by handling received messages again, which a predecessor had sent already,
   * are dropped (their fds went with them). Replies have the same length however often a request is handled.
   */
  private dropAlreadySent(): void {
    const drop = Math.min(this.clientHasUpTo - this.outStartPos, this.outEnd - this.outStart);
    this.outStart += drop;
    this.outStartPos += drop;
    while (this.fdMarks.length > 0 && this.fdMarks[0]!.pos < this.outStartPos) this.fdMarks.shift();
    this.journal?.sent(this.outStartPos);
  }

  /**
   * Output drained: when no message is being handled, what came before the unhandled input is done for good, and the
   * journal can forget it (only a change is written).
   */
  private settle(): void {
    // An oversized message being skipped stays in the journal whole: a successor must skip it from its start.
    if (this.blocked || this.handlingPos >= 0 || this.closed || this.discardRemaining > 0) return;
    const rest = this.inEnd - this.inStart;
    if (this.inStartPos === this.settledInPos && this.outStartPos === this.settledOutPos && rest === this.settledRest) return;
    this.settledInPos = this.inStartPos;
    this.settledOutPos = this.outStartPos;
    this.settledRest = rest;
    this.journal!.settled(this.inStartPos, this.outStartPos, this.inBytes.subarray(this.inStart, this.inEnd), this.fdBatches);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Closing

  /** Closes the socket and every received fd not yet handed to the handler. Idempotent. */
  close(reason: string, error?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.watching = 0;
    this.watcher.close();
    try {
      native.close(this.fd);
    } catch {
      // The fd is released even if close reports an error.
    }
    for (const batch of this.fdBatches) closeFds(batch.fds);
    this.fdBatches.length = 0;
    this.fdMarks.length = 0;
    this.handler.closed(reason, error);
    this.checkQuiet();
  }

  // -------------------------------------------------------------------------------------------------------------
  // Receiving

  private readonly onPoll = (events: number): void => {
    if (this.closed) return;
    if (events < 0) {
      this.close(`socket poll failed (errno ${-events})`);
      return;
    }
    if ((events & POLL_WRITABLE) !== 0) this.flush();
    if ((events & POLL_READABLE) !== 0) this.onReadable();
  };

  /** `untilEmpty`: keep reading after a short read too, until the socket says EAGAIN (or EOF). */
  private onReadable(untilEmpty = false): void {
    for (let reads = 0; reads < MAX_READS_PER_EVENT; reads++) {
      if (this.closed || this.blocked || this.outputStalled || this.paused) break;
      this.makeReceiveSpace();
      const space = this.inBytes.length - this.inEnd;
      let result;
      try {
        result = native.recvmsg(this.fd, this.inBytes.subarray(this.inEnd), this.options.maxFds);
      } catch (error) {
        this.close(`receive failed: ${(error as Error).message}`, error);
        return;
      }
      if (result === null) break;
      if (result.bytes === 0) {
        closeFds(result.fds);
        this.close(
          this.inEnd > this.inStart || this.discardRemaining > 0
            ? 'client closed the connection in the middle of a message'
            : 'client closed the connection',
        );
        return;
      }
      const receivedAt = this.inEnd;
      this.inEnd += result.bytes;
      this.bytesReceived += result.bytes;
      let kept: number[] = NO_FDS;
      if (result.fds.length > 0 || result.fdsTruncated) {
        kept = this.addFds(this.inStartPos + (this.inEnd - this.inStart) - 1, result.fds, result.fdsTruncated);
      }
      this.journal?.received(
        this.inStartPos + (receivedAt - this.inStart),
        this.inBytes.subarray(receivedAt, this.inEnd),
        kept,
        result.fdsTruncated || kept.length < result.fds.length,
      );
      this.process();
      // A short read means the socket was empty (or the next bytes bring fds, which a recvmsg stops in front of):
      // skip the recvmsg that would most likely only say EAGAIN. The poll is level-triggered, so bytes still
      // waiting (or arriving meanwhile) call us again. poll() wants to know now, EOF included, so it reads on.
      if (result.bytes < space && !untilEmpty) break;
    }
    this.updateWatcher();
  }

  /**
   * Records fds received with the byte at stream position `pos`, enforcing the per-message limit: fds beyond
   * `maxFds` for the message containing `pos` are closed now and the message is marked truncated.
   */
  private addFds(pos: number, fds: number[], truncated: boolean): number[] {
    const start = this.messageStartOf(pos);
    if (start === undefined) {
      // Part of an oversized message being skipped: it is answered EINVAL whatever it carried.
      closeFds(fds);
      return NO_FDS;
    }
    const last = this.fdBatches[this.fdBatches.length - 1];
    const batch = last !== undefined && last.pos >= start ? last : undefined;
    const room = this.options.maxFds - (batch?.fds.length ?? 0);
    if (fds.length > room) {
      closeFds(fds.slice(Math.max(room, 0)));
      fds = fds.slice(0, Math.max(room, 0));
      truncated = true;
    }
    if (batch === undefined) {
      this.fdBatches.push({ pos, fds, truncated });
    } else {
      // One record per message, so a client trickling a message in with fds does not grow the list either.
      for (const fd of fds) batch.fds.push(fd);
      batch.truncated ||= truncated;
    }
    return fds;
  }

  /**
   * Stream position of the first byte of the message that contains stream position `pos` (a received byte), or
   * undefined when `pos` lies in the remainder of a message being skipped. Walks the buffered headers from the
   * first unhandled message on; a header not yet complete, or one that will drop the connection, ends the walk.
   */
  private messageStartOf(pos: number): number | undefined {
    let start = this.inStartPos;
    if (this.discardRemaining > 0) {
      if (pos < start + this.discardRemaining) return undefined;
      start += this.discardRemaining;
    }
    for (;;) {
      const at = this.inStart + (start - this.inStartPos);
      if (this.inEnd - at < HEADER_SIZE) return start;
      const size = this.inView.getUint32(at + 4, true);
      if (size < HEADER_SIZE || size > this.options.discardLimit || pos < start + size) return start;
      start += size;
    }
  }

  private makeReceiveSpace(): void {
    if (this.inStart === this.inEnd) {
      this.inStart = 0;
      this.inEnd = 0;
    } else if (this.inBytes.length - this.inEnd < MIN_RECEIVE_SPACE && this.inStart > 0) {
      this.inBytes.copyWithin(0, this.inStart, this.inEnd);
      this.inEnd -= this.inStart;
      this.inStart = 0;
    }
  }

  /** Makes room for a whole message of `size` bytes starting at inStart. */
  private ensureCapacity(size: number): void {
    if (this.inStart + size <= this.inBytes.length) return;
    if (size <= this.inBytes.length) {
      this.inBytes.copyWithin(0, this.inStart, this.inEnd);
    } else {
      const grown = new Uint8Array(Math.min(Math.max(size, this.inBytes.length * 2), this.options.maxMessageSize));
      grown.set(this.inBytes.subarray(this.inStart, this.inEnd));
      this.inBytes = grown;
      this.inView = new DataView(grown.buffer);
      this.message.bytes = grown;
      this.message.view = this.inView;
    }
    this.inEnd -= this.inStart;
    this.inStart = 0;
  }

  private process(): void {
    if (this.processing || this.closed) return;
    this.processing = true;
    try {
      for (;;) {
        this.handleAvailable();
        if (this.closed) return;
        if (this.handledSinceBatchEnd > 0) {
          this.handledSinceBatchEnd = 0;
          this.handler.batchEnd();
        }
        const wasStalled = this.outputStalled;
        this.flush();
        // flush() may have cleared a stall; go round again for the messages still buffered.
        if (!(wasStalled && !this.outputStalled && !this.blocked && !this.closed)) break;
      }
    } finally {
      this.processing = false;
    }
    this.updateWatcher();
    this.checkQuiet();
  }

  /** Hands over complete messages until none is left, a handler goes async, output stalls or we close. */
  private handleAvailable(): void {
    const message = this.message;
    while (!this.closed && !this.blocked) {
      if (this.discardRemaining > 0 && !this.skipDiscarded()) return;
      const available = this.inEnd - this.inStart;
      if (available < HEADER_SIZE) return;
      if (this.pendingOutput >= this.outputHighWater) {
        this.outputStalled = true;
        this.outputStalls++;
        return;
      }
      const at = this.inStart;
      const view = this.inView;
      message.msgId = view.getUint16(at, true);
      message.command = view.getUint16(at + 2, true);
      message.size = view.getUint32(at + 4, true);
      message.flags = view.getUint32(at + 8, true);
      message.error = view.getUint32(at + 12, true);
      const size = message.size;
      if (size < HEADER_SIZE || size > this.options.discardLimit) {
        const what =
          size < HEADER_SIZE
            ? 'smaller than the 16-byte header'
            : `larger than the ${this.options.discardLimit}-byte limit`;
        this.closedForProtocolError = true;
        this.close(
          `message id ${message.msgId} (${commandName(message.command)}) declares msg_size ${size}, ${what}: ` +
            'the stream cannot be resynchronised',
        );
        return;
      }
      if (size > this.options.maxMessageSize) {
        message.bodyOffset = at + HEADER_SIZE;
        message.bodyLength = 0;
        message.fds = NO_FDS;
        message.fdsTruncated = false;
        this.discardRemaining = size;
        this.handler.oversizedMessage(message);
        continue;
      }
      if (available < size) {
        this.ensureCapacity(size);
        return;
      }
      const endPos = this.inStartPos + size;
      message.fds = NO_FDS;
      message.fdsTruncated = false;
      while (this.fdBatches.length > 0 && this.fdBatches[0]!.pos < endPos) {
        const batch = this.fdBatches.shift()!;
        message.fds = message.fds.length === 0 ? batch.fds : message.fds.concat(batch.fds);
        message.fdsTruncated ||= batch.truncated;
      }
      if (message.fds.length > this.options.maxFds) {
        // addFds keeps one record per message, so this does not happen; the limit holds for the total regardless.
        closeFds(message.fds.slice(this.options.maxFds));
        message.fds = message.fds.slice(0, this.options.maxFds);
        message.fdsTruncated = true;
      }
      message.bytes = this.inBytes;
      message.view = this.inView;
      message.bodyOffset = at + HEADER_SIZE;
      message.bodyLength = size - HEADER_SIZE;
      message.replayed = this.inStartPos < this.replayEndPos;
      this.handlingPos = this.inStartPos;
      this.inStart += size;
      this.inStartPos += size;
      this.handledSinceBatchEnd++;
      let result: void | Promise<void>;
      try {
        result = this.handler.handleMessage(message);
      } catch (error) {
        this.handlingPos = -1;
        closeFds(message.fds);
        this.close(`internal error handling ${commandName(message.command)}: ${(error as Error).message}`, error);
        return;
      }
      if (result !== undefined) {
        this.blocked = true;
        result.then(this.onHandlerSettled, this.onHandlerFailed);
        return;
      }
      this.handlingPos = -1;
    }
  }

  /** Consumes bytes of an oversized message; false while more are still to come. */
  private skipDiscarded(): boolean {
    const take = Math.min(this.discardRemaining, this.inEnd - this.inStart);
    this.inStart += take;
    this.inStartPos += take;
    this.discardRemaining -= take;
    // fds that came with the skipped bytes belonged to the skipped message.
    while (this.fdBatches.length > 0 && this.fdBatches[0]!.pos < this.inStartPos) closeFds(this.fdBatches.shift()!.fds);
    return this.discardRemaining === 0;
  }

  private readonly onHandlerSettled = (): void => {
    this.blocked = false;
    this.handlingPos = -1;
    if (this.closed) return;
    this.process();
  };

  private readonly onHandlerFailed = (error: unknown): void => {
    this.blocked = false;
    this.handlingPos = -1;
    this.close(`internal error in an asynchronous handler: ${(error as Error)?.message ?? String(error)}`, error);
  };

  private updateWatcher(): void {
    if (this.closed) return;
    const reading = !this.blocked && !this.outputStalled && !this.paused ? POLL_READABLE : 0;
    const writing = this.outStart < this.outEnd ? POLL_WRITABLE : 0;
    const wanted = reading | writing;
    if (wanted === this.watching) return;
    if (wanted === 0) this.watcher.stop();
    else this.watcher.start(wanted);
    this.watching = wanted;
  }
}
