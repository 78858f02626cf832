/**
 * The hand-over connection between a running `vfiod serve` and its successor (docs/restart.md): JSON messages with
 * file descriptors over a unix stream socket.
 *
 * Framing: each frame is a 4-byte little-endian length and that many bytes of JSON, sent with one sendmsg whose
 * SCM_RIGHTS carry the frame's fds (the JSON says how many: `fdCount`). Linux hands fds to the receiver with the
 * first byte of the sendmsg that carried them and never merges a read across such a boundary, so the receiver
 * keeps received fds in arrival order and each complete frame takes its `fdCount` from the front. More fds than
 * one sendmsg may carry (SCM_MAX_FD, 253) go ahead in `fds` frames whose fds join the next message's.
 */
import { native, POLL_READABLE, POLL_WRITABLE, type FdWatcher } from '../native/index.js';

/** At most this many fds per sendmsg (below the kernel's SCM_MAX_FD of 253). */
const FDS_PER_FRAME = 240;
/** A frame larger than this is not from a vfiod: the connection is dropped. */
const MAX_FRAME = 64 * 1024 * 1024;

export interface HandoverMessage {
  type: string;
  [key: string]: unknown;
}

export interface ReceivedMessage {
  message: HandoverMessage;
  /** The fds that came with it; the receiver owns them. */
  fds: number[];
}

export class HandoverChannel {
  private readonly watcher: FdWatcher;
  private closed = false;
  private closeReason = '';
  private input = new Uint8Array(64 * 1024);
  private inputEnd = 0;
  /** Received fds not yet given to a frame, in arrival order. */
  private readonly arrivedFds: number[] = [];
  /** fds of `fds` frames, waiting for the message they go with. */
  private carriedFds: number[] = [];
  private readonly received: ReceivedMessage[] = [];
  private readonly receivers: Array<{ resolve: (message: ReceivedMessage) => void; reject: (error: Error) => void }> = [];
  private readonly output: Array<{ bytes: Uint8Array; fds: readonly number[] }> = [];
  private readonly drainWaiters: Array<() => void> = [];
  private messageHandler: ((message: ReceivedMessage) => void) | undefined;
  private readonly closeHandlers: Array<(reason: string) => void> = [];

  constructor(readonly fd: number) {
    native.setNonBlocking(fd, true);
    this.watcher = native.createWatcher(fd, this.onPoll);
    this.watcher.start(POLL_READABLE);
  }

  static connect(socketPath: string): HandoverChannel {
    return new HandoverChannel(native.connectUnix(socketPath));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Frames not yet accepted by the socket (0: everything sent so far is in the peer's socket buffer). */
  get queuedFrames(): number {
    return this.output.length;
  }

  /** Queues `message` with `fds` (which stay open here: the receiver gets duplicates). */
  send(message: HandoverMessage, fds: readonly number[] = []): void {
    if (this.closed) throw new Error(`hand-over connection closed: ${this.closeReason}`);
    let rest = fds;
    while (rest.length > FDS_PER_FRAME) {
      this.queueFrame({ type: 'fds', fdCount: FDS_PER_FRAME }, rest.slice(0, FDS_PER_FRAME));
      rest = rest.slice(FDS_PER_FRAME);
    }
    this.queueFrame({ ...message, fdCount: rest.length }, rest);
    this.flush();
  }

  /** Resolves once everything queued has been accepted by the socket (or the connection closed). */
  drained(): Promise<void> {
    if (this.output.length === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** The next message; rejects when the connection closes first or `timeoutMs` passes. */
  receive(timeoutMs: number, what: string): Promise<ReceivedMessage> {
    const next = this.received.shift();
    if (next) return Promise.resolve(next);
    if (this.closed) return Promise.reject(new Error(`hand-over connection closed while waiting for ${what}: ${this.closeReason}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.receivers.indexOf(entry);
        if (index >= 0) this.receivers.splice(index, 1);
        reject(new Error(`no ${what} within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      const entry = {
        resolve: (message: ReceivedMessage) => {
          clearTimeout(timer);
          resolve(message);
        },
        reject: (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.receivers.push(entry);
    });
  }

  /**
   * Delivers every message to `handler` as soon as it is parsed, in order, instead of queueing it for receive(); the
   * handler owns its fds. Unlike receive(), this never loses a message the peer sent just before it closed (close()
   * drops what is queued). A handler that throws closes the connection.
   */
  onMessage(handler: (message: ReceivedMessage) => void): void {
    this.messageHandler = handler;
    for (const entry of this.received.splice(0)) this.deliver(entry);
  }

  /** Calls `handler` with the reason once the connection is closed (at once if it is). */
  onClose(handler: (reason: string) => void): void {
    if (this.closed) handler(this.closeReason);
    else this.closeHandlers.push(handler);
  }

  /** Closes the socket; received fds nobody took are closed too. */
  close(reason = 'closed'): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    this.watcher.close();
    try {
      native.close(this.fd);
    } catch {
      // released either way
    }
    for (const fd of [...this.arrivedFds, ...this.carriedFds]) closeQuietly(fd);
    for (const entry of this.received.splice(0)) for (const fd of entry.fds) closeQuietly(fd);
    this.arrivedFds.length = 0;
    this.carriedFds = [];
    for (const receiver of this.receivers.splice(0)) receiver.reject(new Error(`hand-over connection closed: ${reason}`));
    for (const resolve of this.drainWaiters.splice(0)) resolve();
    for (const handler of this.closeHandlers.splice(0)) handler(reason);
  }

  private deliver(entry: ReceivedMessage): void {
    if (this.closed) {
      for (const fd of entry.fds) closeQuietly(fd);
      return;
    }
    try {
      this.messageHandler!(entry);
    } catch (error) {
      this.close(`handling a ${entry.message.type} message failed: ${(error as Error).message}`);
    }
  }

  private queueFrame(header: HandoverMessage, fds: readonly number[]): void {
    const json = Buffer.from(JSON.stringify(header));
    const bytes = new Uint8Array(4 + json.length);
    new DataView(bytes.buffer).setUint32(0, json.length, true);
    bytes.set(json, 4);
    this.output.push({ bytes, fds });
  }

  private flush(): void {
    while (!this.closed && this.output.length > 0) {
      const frame = this.output[0]!;
      let sent: number | null;
      try {
        sent = native.sendmsg(this.fd, frame.bytes, frame.fds);
      } catch (error) {
        this.close(`send failed: ${(error as Error).message}`);
        return;
      }
      if (sent === null) break;
      if (sent < frame.bytes.length) {
        // The fds went with the part that was sent.
        this.output[0] = { bytes: frame.bytes.subarray(sent), fds: [] };
        continue;
      }
      this.output.shift();
    }
    if (this.closed) return;
    this.watcher.start(POLL_READABLE | (this.output.length > 0 ? POLL_WRITABLE : 0));
    if (this.output.length === 0) for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  private readonly onPoll = (events: number): void => {
    if (this.closed) return;
    if (events < 0) {
      this.close(`poll failed (errno ${-events})`);
      return;
    }
    if ((events & POLL_WRITABLE) !== 0) this.flush();
    if ((events & POLL_READABLE) !== 0) this.read();
  };

  private read(): void {
    for (;;) {
      if (this.closed) return;
      if (this.input.length - this.inputEnd < 4096) {
        const grown = new Uint8Array(this.input.length * 2);
        grown.set(this.input.subarray(0, this.inputEnd));
        this.input = grown;
      }
      let result;
      try {
        result = native.recvmsg(this.fd, this.input.subarray(this.inputEnd), 253);
      } catch (error) {
        this.close(`receive failed: ${(error as Error).message}`);
        return;
      }
      if (result === null) return;
      this.arrivedFds.push(...result.fds);
      if (result.bytes === 0) {
        this.close('the peer closed the connection');
        return;
      }
      if (result.fdsTruncated) {
        this.close('file descriptors were lost in transit (MSG_CTRUNC)');
        return;
      }
      this.inputEnd += result.bytes;
      this.parse();
    }
  }

  private parse(): void {
    let start = 0;
    while (this.inputEnd - start >= 4) {
      const length = new DataView(this.input.buffer, start, 4).getUint32(0, true);
      if (length > MAX_FRAME) {
        this.close(`frame of ${length} bytes`);
        return;
      }
      if (this.inputEnd - start - 4 < length) break;
      let header: HandoverMessage;
      try {
        header = JSON.parse(Buffer.from(this.input.subarray(start + 4, start + 4 + length)).toString('utf8')) as HandoverMessage;
      } catch {
        this.close('a frame is not JSON');
        return;
      }
      // Only an object with a string type is a message (JSON.parse('null') would throw below, in the poll callback).
      if (typeof header !== 'object' || header === null || Array.isArray(header) || typeof header.type !== 'string') {
        this.close('a frame is not a message');
        return;
      }
      start += 4 + length;
      const count = Number(header['fdCount'] ?? 0);
      if (!Number.isInteger(count) || count < 0 || count > this.arrivedFds.length) {
        this.close(`a frame announces ${String(header['fdCount'])} fds, ${this.arrivedFds.length} arrived`);
        return;
      }
      this.carriedFds.push(...this.arrivedFds.splice(0, count));
      if (header.type === 'fds') continue;
      const fds = this.carriedFds;
      this.carriedFds = [];
      const entry = { message: header, fds };
      if (this.messageHandler) {
        this.deliver(entry);
        if (this.closed) return;
        continue;
      }
      const receiver = this.receivers.shift();
      if (receiver) receiver.resolve(entry);
      else this.received.push(entry);
    }
    this.input.copyWithin(0, start, this.inputEnd);
    this.inputEnd -= start;
  }
}

function closeQuietly(fd: number): void {
  try {
    native.close(fd);
  } catch {
    // not ours any more
  }
}
