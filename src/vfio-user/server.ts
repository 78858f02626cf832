/**
 * The vfio-user server: listens on a unix socket, serves one client (QEMU `vfio-user-pci` or cloud-hypervisor
 * `--user-device`) at a time and translates its requests into calls on a `VfioUserDevice` and a `GuestMemory`.
 *
 * Every request is validated here before the device sees it; a bad request gets an error reply with a Linux errno
 * and one log line, and the client stays connected. Only a stream that cannot be resynchronised (a msg_size that
 * makes no sense) drops the client, after which the next client can connect.
 *
 * Error replies have the size of the command's normal reply (the body zero-filled or echoed), not just a header
 * as the specification says: cloud-hypervisor reads fixed-size replies without looking at the ERROR flag, so a
 * short reply would desynchronise it. QEMU checks the flag first and only requires a reply to fit the buffer it
 * allocated, which these sizes do (see docs/vfio-user.md).
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { GuestMemory } from '../memory/guest-memory.js';
import { F_SEAL_SHRINK, native, POLL_READABLE, PROT_READ, PROT_WRITE, type FdWatcher } from '../native/index.js';
import { rootLogger, type Logger } from '../util/log.js';
import { socketPathState } from '../util/socket-path.js';
import { Connection, closeFds, type ConnectionHandler, type IncomingMessage } from './connection.js';
import { IrqFlag, IrqSetFlag, RegionFlag, validateDevice, type SetIrqsRequest, type VfioUserDevice } from './device.js';
import { Errno, VfioUserError, errnoName, errnoOf, messageOf } from './errors.js';
import {
  BodySize,
  Command,
  DmaMapFlag,
  DmaUnmapFlag,
  HEADER_SIZE,
  HeaderFlag,
  MAX_COMMAND,
  capabilitiesJson,
  commandName,
  decodeVersion,
  getU64,
  parseCapabilities,
  sparseMmapCapSize,
  writeDeviceInfo,
  writeHeader,
  writeIrqInfo,
  writeRegionAccess,
  writeRegionInfo,
  writeSparseMmapCap,
  type Capabilities,
} from './protocol.js';

/** DMA page size we accept and advertise (pgsizes). */
export const PAGE_SIZE = 4096;
/** Most fds per message. QEMU accepts at most 16; cloud-hypervisor sends eventfds in batches of 16 regardless. */
export const MAX_MSG_FDS = 16;
/** QEMU rejects a max_data_xfer_size above 64 MiB. */
export const MAX_DATA_TRANSFER_LIMIT = 64 * 1024 * 1024;
export const DEFAULT_MAX_DATA_TRANSFER = 1024 * 1024;
export const DEFAULT_MAX_DMA_MAPS = 1024;
/** QEMU rejects max_dma_maps above 65535. */
const MAX_DMA_MAPS_LIMIT = 65535;
/** Highest minor version we speak; QEMU proposes 0.0 (and rejects a higher reply), cloud-hypervisor 0.1. */
const SUPPORTED_MINOR = 1;
/** Room for VERSION JSON and SET_IRQS bool payloads in messages that carry no bulk data. */
const CONTROL_MESSAGE_ROOM = 64 * 1024;
/** Per-connection budget of per-request error log lines; a hostile client must not flood the log. */
const ERROR_LOG_BUDGET = 100;

const OPERATOR_HINT_NO_FD =
  'vfiod can only reach guest memory that the hypervisor shares with it as a file descriptor. ' +
  'QEMU: back guest RAM with a shared memfd, e.g. `-object memory-backend-memfd,id=mem0,size=<RAM size>,share=on ' +
  '-machine memory-backend=mem0`. cloud-hypervisor: `--memory size=<RAM size>,shared=on`. ' +
  'Maps without fd for ROM or VGA memory are harmless when the guest RAM maps arrive with an fd.';

export interface VfioUserServerOptions {
  socketPath: string;
  /** File mode of the socket. Default 0o600. */
  socketMode?: number;
  device: VfioUserDevice;
  /** DMA_MAP adds mappings here, DMA_UNMAP removes them (and waits for in-flight I/O to drain). */
  memory: GuestMemory;
  logger?: Logger;
  /** Largest REGION_READ/REGION_WRITE data. Default 1 MiB, at most 64 MiB. */
  maxDataTransfer?: number;
  /** Most simultaneous DMA mappings. Default 1024, at most 65535. */
  maxDmaMaps?: number;
}

export interface VfioUserServerStats {
  connectionsAccepted: number;
  /** Connections turned away because a client was already being served. */
  connectionsRejected: number;
  /** Clients dropped because their byte stream could not be resynchronised. */
  protocolDisconnects: number;
  /** Messages received, by command name. */
  messages: Record<string, number>;
  /** Requests that failed (error reply sent or, for posted writes, logged). */
  errors: number;
  /** Failures by errno name. */
  errorsByErrno: Record<string, number>;
  /** Posted (NO_REPLY) requests that failed: the client never hears about these. */
  postedErrors: number;
  bytesReceived: number;
  bytesSent: number;
  /** Times reading paused because a client did not read its replies (output above the high-water mark). */
  outputStalls: number;
}

/**
 * Events: 'connect' (clientId: number) when a client is accepted; 'disconnect' (clientId: number, reason: string)
 * once its cleanup (DMA unmaps, device.disconnected) has finished and the next client can be accepted.
 */
export class VfioUserServer extends EventEmitter {
  readonly socketPath: string;
  readonly maxDataTransfer: number;
  readonly maxDmaMaps: number;
  readonly maxMessageSize: number;
  private readonly socketMode: number;
  private readonly device: VfioUserDevice;
  private readonly memory: GuestMemory;
  private readonly log: Logger;
  private readonly versionJson: Uint8Array;

  private listenFd: number | undefined;
  private acceptWatcher: FdWatcher | undefined;
  private acceptRetryTimer: NodeJS.Timeout | undefined;
  private socketIdentity: { dev: number; ino: number } | undefined;
  private session: ClientSession | undefined;
  /** Resolves when the previous client's cleanup is done. */
  private cleanup: Promise<void> = Promise.resolve();
  private cleaningUp = false;
  private closing = false;
  private closePromise: Promise<void> | undefined;
  private nextClientId = 1;

  // Stats, kept as plain counters on the hot path.
  /** @internal */ readonly messageCounts = new Float64Array(MAX_COMMAND + 2);
  /** @internal */ readonly errorCounts = new Map<number, number>();
  /** @internal */ errorTotal = 0;
  /** @internal */ postedErrorTotal = 0;
  private connectionsAccepted = 0;
  private connectionsRejected = 0;
  /** @internal */ protocolDisconnects = 0;
  private bytesReceived = 0;
  private bytesSent = 0;
  private outputStalls = 0;

  constructor(options: VfioUserServerOptions) {
    super();
    this.socketPath = path.resolve(options.socketPath);
    this.socketMode = options.socketMode ?? 0o600;
    this.device = options.device;
    this.memory = options.memory;
    this.log = (options.logger ?? rootLogger).child({ component: 'vfio-user', socket: this.socketPath });
    this.maxDataTransfer = options.maxDataTransfer ?? DEFAULT_MAX_DATA_TRANSFER;
    this.maxDmaMaps = options.maxDmaMaps ?? DEFAULT_MAX_DMA_MAPS;
    if (
      !Number.isSafeInteger(this.maxDataTransfer) ||
      this.maxDataTransfer < 4096 ||
      this.maxDataTransfer > MAX_DATA_TRANSFER_LIMIT
    ) {
      throw new RangeError(
        `maxDataTransfer ${this.maxDataTransfer} must be between 4096 and ${MAX_DATA_TRANSFER_LIMIT}`,
      );
    }
    if (!Number.isSafeInteger(this.maxDmaMaps) || this.maxDmaMaps < 1 || this.maxDmaMaps > MAX_DMA_MAPS_LIMIT) {
      throw new RangeError(`maxDmaMaps ${this.maxDmaMaps} must be between 1 and ${MAX_DMA_MAPS_LIMIT}`);
    }
    if (!Number.isInteger(this.socketMode) || this.socketMode < 0 || this.socketMode > 0o777) {
      throw new RangeError(`socketMode 0o${this.socketMode.toString(8)} is not a file mode`);
    }
    validateDevice(this.device, PAGE_SIZE);
    this.maxMessageSize = HEADER_SIZE + BodySize.REGION_ACCESS + Math.max(this.maxDataTransfer, CONTROL_MESSAGE_ROOM);
    this.versionJson = new TextEncoder().encode(
      capabilitiesJson({
        maxMsgFds: MAX_MSG_FDS,
        maxDataXferSize: this.maxDataTransfer,
        maxDmaMaps: this.maxDmaMaps,
        pgsizes: PAGE_SIZE,
        writeMultiple: false,
      }),
    );
  }

  get clientConnected(): boolean {
    return this.session !== undefined;
  }

  get stats(): VfioUserServerStats {
    const messages: Record<string, number> = {};
    this.messageCounts.forEach((count, command) => {
      if (count > 0) messages[command > MAX_COMMAND ? 'UNKNOWN' : commandName(command)] = count;
    });
    const errorsByErrno: Record<string, number> = {};
    for (const [errno, count] of this.errorCounts) errorsByErrno[errnoName(errno)] = count;
    // A session being cleaned up has already been added to the totals.
    const live = this.cleaningUp ? undefined : this.session?.connection;
    return {
      connectionsAccepted: this.connectionsAccepted,
      connectionsRejected: this.connectionsRejected,
      protocolDisconnects: this.protocolDisconnects,
      messages,
      errors: this.errorTotal,
      errorsByErrno,
      postedErrors: this.postedErrorTotal,
      bytesReceived: this.bytesReceived + (live?.bytesReceived ?? 0),
      bytesSent: this.bytesSent + (live?.bytesSent ?? 0),
      outputStalls: this.outputStalls + (live?.outputStalls ?? 0),
    };
  }

  /** Creates the socket (and its directory) and starts accepting clients. */
  async listen(): Promise<void> {
    if (this.listenFd !== undefined || this.closing)
      throw new Error(`vfio-user server on ${this.socketPath} is already listening or closed`);
    await fs.promises.mkdir(path.dirname(this.socketPath), { recursive: true, mode: 0o755 });
    await this.removeStaleSocket();
    if (this.closing) throw new Error(`vfio-user server on ${this.socketPath} was closed while starting`);
    this.listenFd = native.listenUnix(this.socketPath, this.socketMode, 4);
    const stat = fs.lstatSync(this.socketPath);
    this.socketIdentity = { dev: stat.dev, ino: stat.ino };
    this.acceptWatcher = native.createWatcher(this.listenFd, this.onAcceptable);
    this.startAccepting();
    this.log.info('listening', { mode: '0' + this.socketMode.toString(8), maxDataTransfer: this.maxDataTransfer });
  }

  /** Stops accepting, disconnects the client (waiting for its cleanup) and removes the socket file. */
  close(): Promise<void> {
    this.closePromise ??= this.doClose();
    return this.closePromise;
  }

  private async doClose(): Promise<void> {
    this.closing = true;
    this.stopAccepting();
    if (this.acceptRetryTimer) clearTimeout(this.acceptRetryTimer);
    this.acceptWatcher?.close();
    this.acceptWatcher = undefined;
    if (this.listenFd !== undefined) {
      native.close(this.listenFd);
      this.listenFd = undefined;
    }
    this.session?.connection.close('server shutting down');
    await this.cleanup;
    this.removeOwnSocketFile();
    this.log.info('closed');
  }

  private async removeStaleSocket(): Promise<void> {
    const state = await socketPathState(this.socketPath);
    if (state === 'free') return;
    if (state === 'not-a-socket') {
      throw new Error(`refusing to replace ${this.socketPath}: it exists and is not a socket`);
    }
    if (state === 'live') {
      const error = new Error(`${this.socketPath} is in use: another server is listening on it`) as NodeJS.ErrnoException;
      error.code = 'EADDRINUSE';
      throw error;
    }
    await fs.promises.unlink(this.socketPath);
    this.log.info('removed stale socket file');
  }

  private removeOwnSocketFile(): void {
    try {
      const stat = fs.lstatSync(this.socketPath);
      // Only our own socket: someone may have replaced the path since.
      if (
        stat.isSocket() &&
        this.socketIdentity &&
        stat.dev === this.socketIdentity.dev &&
        stat.ino === this.socketIdentity.ino
      ) {
        fs.unlinkSync(this.socketPath);
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn('could not remove socket file', { error });
    }
  }

  private startAccepting(): void {
    if (!this.closing && this.acceptWatcher) this.acceptWatcher.start(POLL_READABLE);
  }

  private stopAccepting(): void {
    this.acceptWatcher?.stop();
  }

  private readonly onAcceptable = (events: number): void => {
    if (this.listenFd === undefined) return;
    if (events < 0) {
      this.log.error('listening socket poll failed', { errno: -events });
      return;
    }
    for (;;) {
      // A hypervisor that reconnects at once can be faster than our poll event for its old connection's EOF:
      // look at the old connection first, and if it has gone, let the new one wait in the backlog until cleanup
      // is done instead of refusing it.
      if (this.session !== undefined && !this.cleaningUp) this.session.connection.poll();
      if (this.cleaningUp) {
        this.stopAccepting();
        return;
      }
      let fd: number | null;
      try {
        fd = native.accept(this.listenFd);
      } catch (error) {
        // E.g. EMFILE: the connection stays queued and the poll would fire again at once; back off instead.
        this.log.error('accept failed; retrying in 1 s', { error });
        this.stopAccepting();
        this.acceptRetryTimer = setTimeout(() => {
          this.acceptRetryTimer = undefined;
          if (!this.cleaningUp) this.startAccepting();
        }, 1000);
        return;
      }
      if (fd === null) return;
      if (this.session !== undefined || this.cleaningUp) {
        this.connectionsRejected++;
        this.log.warn('rejected a connection: a client is already being served (one client at a time)', {
          client: this.session?.id,
        });
        native.close(fd);
        continue;
      }
      this.startSession(fd);
    }
  };

  private startSession(fd: number): void {
    const id = this.nextClientId++;
    const log = this.log.child({ client: id });
    this.connectionsAccepted++;
    const session = new ClientSession(this, id, log, this.device, this.memory);
    const connection = new Connection(
      fd,
      {
        maxMessageSize: this.maxMessageSize,
        discardLimit: Math.max(this.maxMessageSize, MAX_DATA_TRANSFER_LIMIT) + CONTROL_MESSAGE_ROOM,
        maxFds: MAX_MSG_FDS,
      },
      session,
    );
    session.connection = connection;
    this.session = session;
    log.info('client connected');
    connection.start();
    this.emit('connect', id);
  }

  /** @internal Called by the session when its connection closed. */
  sessionClosed(session: ClientSession, reason: string, error: unknown): void {
    if (this.session !== session) return;
    this.cleaningUp = true;
    this.stopAccepting();
    this.bytesReceived += session.connection.bytesReceived;
    this.bytesSent += session.connection.bytesSent;
    this.outputStalls += session.connection.outputStalls;
    session.log.info('client disconnected', error === undefined ? { reason } : { reason, error });
    this.cleanup = this.cleanUpAfter(session, reason);
  }

  private async cleanUpAfter(session: ClientSession, reason: string): Promise<void> {
    // The device stops its queues while mappings are retired; unmapping waits until in-flight I/O let go.
    const results = await Promise.allSettled([
      session.inFlight,
      this.memory.removeAll(),
      Promise.resolve().then(() => this.device.disconnected()),
    ]);
    for (const result of results) {
      if (result.status === 'rejected') session.log.error('cleanup after disconnect failed', { error: result.reason });
    }
    this.session = undefined;
    this.cleaningUp = false;
    this.startAccepting();
    session.log.info('client cleanup done; ready for the next client');
    try {
      this.emit('disconnect', session.id, reason);
    } catch (error) {
      this.log.error("a 'disconnect' listener threw", { error });
    }
  }

  /** @internal */
  get versionJsonBytes(): Uint8Array {
    return this.versionJson;
  }

  /** @internal */
  countError(errno: number, posted: boolean): void {
    this.errorTotal++;
    if (posted) this.postedErrorTotal++;
    this.errorCounts.set(errno, (this.errorCounts.get(errno) ?? 0) + 1);
  }
}

const NO_FDS: number[] = Object.freeze([]) as unknown as number[];
/** REGION_WRITEs of at most this many bytes are copied into a reused array rather than passed as a new view. */
const SMALL_WRITE_MAX = 8;

/** The state of one connected client and the handling of its requests. */
class ClientSession implements ConnectionHandler {
  connection!: Connection;
  negotiated = false;
  clientCapabilities: Capabilities = {};
  /** A pending asynchronous request (DMA_UNMAP drain, DEVICE_RESET); settles without rejecting. */
  inFlight: Promise<void> = Promise.resolve();
  private warnedDmaWithoutFd = false;
  private notedUnsealed = false;
  private errorLogBudget = ERROR_LOG_BUDGET;
  private readonly maxDataTransfer: number;
  /** smallWrites[n]: the n-byte array REGION_WRITE hands small writes in (see regionWrite). */
  private readonly smallWrites: readonly Uint8Array[] = Array.from(
    { length: SMALL_WRITE_MAX + 1 },
    (_, length) => new Uint8Array(length),
  );

  constructor(
    private readonly server: VfioUserServer,
    readonly id: number,
    readonly log: Logger,
    private readonly device: VfioUserDevice,
    private readonly memory: GuestMemory,
  ) {
    this.maxDataTransfer = server.maxDataTransfer;
  }

  // -------------------------------------------------------------------------------------------------------------
  // ConnectionHandler

  handleMessage(m: IncomingMessage): void | Promise<void> {
    const command = m.command;
    this.server.messageCounts[command <= MAX_COMMAND ? command : MAX_COMMAND + 1]!++;
    if (this.log.enabled('debug')) {
      this.log.debug('request', {
        msgId: m.msgId,
        command: commandName(command),
        size: m.size,
        flags: m.flags,
        fds: m.fds.length,
      });
    }
    try {
      if ((m.flags & HeaderFlag.TYPE_MASK) !== HeaderFlag.TYPE_COMMAND) {
        throw new VfioUserError(
          Errno.EINVAL,
          `message type ${m.flags & HeaderFlag.TYPE_MASK} is not a command (the server sends no requests, so it expects no replies)`,
        );
      }
      if (m.fdsTruncated)
        throw new VfioUserError(Errno.EINVAL, `more than ${MAX_MSG_FDS} file descriptors in one message`);
      if (!this.negotiated && command !== Command.VERSION) {
        throw new VfioUserError(Errno.EINVAL, 'VERSION must be the first message');
      }
      switch (command) {
        case Command.REGION_WRITE:
          return this.regionWrite(m);
        case Command.REGION_READ:
          return this.regionRead(m);
        case Command.VERSION:
          return this.version(m);
        case Command.DMA_MAP:
          return this.dmaMap(m);
        case Command.DMA_UNMAP:
          return this.dmaUnmap(m);
        case Command.DEVICE_GET_INFO:
          return this.getDeviceInfo(m);
        case Command.DEVICE_GET_REGION_INFO:
          return this.getRegionInfo(m);
        case Command.DEVICE_GET_IRQ_INFO:
          return this.getIrqInfo(m);
        case Command.DEVICE_SET_IRQS:
          return this.setIrqs(m);
        case Command.DEVICE_RESET:
          return this.reset(m);
        case Command.DEVICE_GET_REGION_IO_FDS:
        case Command.DEVICE_FEATURE:
        case Command.DIRTY_PAGES:
        case Command.REGION_WRITE_MULTI:
        case Command.MIG_DATA_READ:
        case Command.MIG_DATA_WRITE:
          throw new VfioUserError(Errno.ENOTSUP, `${commandName(command)} is not supported`);
        case Command.DMA_READ:
        case Command.DMA_WRITE:
          throw new VfioUserError(Errno.ENOTSUP, `${commandName(command)} is a server-to-client command`);
        default:
          throw new VfioUserError(Errno.ENOSYS, `unknown command ${command}`);
      }
    } catch (error) {
      this.fail(m, error);
    }
  }

  batchEnd(): void {
    try {
      this.device.afterBatch();
    } catch (error) {
      this.log.error('device.afterBatch failed', { error });
    }
  }

  oversizedMessage(m: IncomingMessage): void {
    this.server.messageCounts[m.command <= MAX_COMMAND ? m.command : MAX_COMMAND + 1]!++;
    this.fail(
      m,
      new VfioUserError(
        Errno.EINVAL,
        `msg_size ${m.size} exceeds the ${this.server.maxMessageSize}-byte limit (max_data_xfer_size ${this.maxDataTransfer}); message skipped`,
      ),
    );
  }

  closed(reason: string, error?: unknown): void {
    if (this.connection.closedForProtocolError) {
      this.server.protocolDisconnects++;
      this.log.error('protocol error: dropping the client', { reason });
    }
    this.server.sessionClosed(this, reason, error);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Errors

  /** Closes unclaimed fds, counts and logs the failure, and sends an error reply unless the request was posted. */
  private fail(m: IncomingMessage, error: unknown): void {
    closeFds(m.fds);
    m.fds = NO_FDS;
    const expected = error instanceof VfioUserError;
    const errno = errnoOf(error, Errno.EIO);
    const posted = (m.flags & HeaderFlag.NO_REPLY) !== 0;
    this.server.countError(errno, posted);
    if (this.errorLogBudget > 0) {
      this.errorLogBudget--;
      const fields = {
        msgId: m.msgId,
        command: commandName(m.command),
        errno: errnoName(errno),
        reason: messageOf(error),
        ...(posted ? { posted: true } : {}),
        ...(expected ? {} : { error }),
      };
      if (expected) this.log.warn('request failed', fields);
      else this.log.error('request failed with an unexpected error', fields);
      if (this.errorLogBudget === 0)
        this.log.warn(`more than ${ERROR_LOG_BUDGET} failed requests; further ones are only counted in stats`);
    }
    if (!posted) this.writeErrorReply(m, errno);
  }

  /**
   * An error reply the size of the command's normal reply (see the file comment), body zeroed except for what
   * the client may look at: argsz of the minimal structure, the index asked about, or the echoed request.
   */
  private writeErrorReply(m: IncomingMessage, errno: number): void {
    const conn = this.connection;
    const request = m.bytes;
    const body = m.bodyOffset;
    let bodySize = 0;
    switch (m.command) {
      case Command.VERSION:
        bodySize = BodySize.VERSION + 3; // major, minor, "{}\0": cloud-hypervisor parses whatever JSON follows
        break;
      case Command.DMA_UNMAP:
        bodySize = BodySize.DMA_UNMAP;
        break;
      case Command.DEVICE_GET_INFO:
        bodySize = BodySize.DEVICE_INFO;
        break;
      case Command.DEVICE_GET_REGION_INFO:
        // QEMU's reply buffer is argsz + 16 bytes; a (hostile) argsz below the structure gets a bare header.
        bodySize = m.bodyLength >= 4 && m.view.getUint32(body, true) >= BodySize.REGION_INFO ? BodySize.REGION_INFO : 0;
        break;
      case Command.DEVICE_GET_IRQ_INFO:
        bodySize = BodySize.IRQ_INFO;
        break;
      case Command.REGION_WRITE:
        bodySize = BodySize.REGION_ACCESS;
        break;
      case Command.REGION_READ: {
        // cloud-hypervisor reads `count` data bytes after the structure whatever the header says.
        const count = m.bodyLength >= BodySize.REGION_ACCESS ? m.view.getUint32(body + 12, true) : 0;
        bodySize = BodySize.REGION_ACCESS + (count <= this.maxDataTransfer ? count : 0);
        break;
      }
    }
    const at = conn.reserve(HEADER_SIZE + bodySize);
    const out = conn.outBytes;
    const view = conn.outView;
    writeHeader(view, at, m.msgId, m.command, HEADER_SIZE + bodySize, HeaderFlag.TYPE_REPLY | HeaderFlag.ERROR, errno);
    const replyBody = at + HEADER_SIZE;
    out.fill(0, replyBody, replyBody + bodySize);
    switch (m.command) {
      case Command.VERSION:
        out[replyBody + 4] = 0x7b; // '{'
        out[replyBody + 5] = 0x7d; // '}'
        break;
      case Command.DMA_UNMAP:
      case Command.REGION_READ:
      case Command.REGION_WRITE: {
        const echoLength = m.command === Command.DMA_UNMAP ? BodySize.DMA_UNMAP : BodySize.REGION_ACCESS;
        out.set(request.subarray(body, body + Math.min(echoLength, m.bodyLength)), replyBody);
        break;
      }
      case Command.DEVICE_GET_INFO:
        view.setUint32(replyBody, BodySize.DEVICE_INFO, true);
        break;
      case Command.DEVICE_GET_REGION_INFO:
      case Command.DEVICE_GET_IRQ_INFO:
        if (bodySize === 0) break;
        view.setUint32(replyBody, bodySize, true);
        if (m.bodyLength >= 12) view.setUint32(replyBody + 8, m.view.getUint32(body + 8, true), true);
        break;
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Replies

  /** Reserves a success reply with `bodySize` payload bytes and writes its header; returns the reply offset. */
  private beginReply(m: IncomingMessage, bodySize: number): number {
    const at = this.connection.reserve(HEADER_SIZE + bodySize);
    writeHeader(this.connection.outView, at, m.msgId, m.command, HEADER_SIZE + bodySize, HeaderFlag.TYPE_REPLY, 0);
    return at;
  }

  private replyEmpty(m: IncomingMessage): void {
    if (wantsReply(m)) this.beginReply(m, 0);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Validation helpers

  private expectNoFds(m: IncomingMessage): void {
    if (m.fds.length > 0) {
      throw new VfioUserError(Errno.EINVAL, `${commandName(m.command)} takes no file descriptors, got ${m.fds.length}`);
    }
  }

  private expectBody(m: IncomingMessage, minimum: number, exact = false): void {
    if (m.bodyLength < minimum || (exact && m.bodyLength !== minimum)) {
      throw new VfioUserError(
        Errno.EINVAL,
        `${commandName(m.command)} payload is ${m.bodyLength} bytes, expected ${exact ? '' : 'at least '}${minimum}`,
      );
    }
  }

  private expectArgsz(m: IncomingMessage, minimum: number): number {
    const argsz = m.view.getUint32(m.bodyOffset, true);
    if (argsz < minimum) {
      throw new VfioUserError(
        Errno.EINVAL,
        `${commandName(m.command)} argsz ${argsz} is smaller than the ${minimum}-byte structure`,
      );
    }
    return argsz;
  }

  /** Validates a region access and returns the region's size. */
  private checkRegionAccess(command: number, region: number, offset: number, count: number, needFlag: number): void {
    const regions = this.device.regions;
    if (region >= regions.length) {
      throw new VfioUserError(
        Errno.EINVAL,
        `${commandName(command)}: region ${region} does not exist (${regions.length} regions)`,
      );
    }
    const info = regions[region]!;
    if ((info.flags & needFlag) === 0) {
      throw new VfioUserError(
        Errno.EINVAL,
        `${commandName(command)}: region ${region} is not ${needFlag === RegionFlag.READ ? 'readable' : 'writable'}`,
      );
    }
    if (count === 0 || count > this.maxDataTransfer) {
      throw new VfioUserError(
        Errno.EINVAL,
        `${commandName(command)}: count ${count} is not in 1..${this.maxDataTransfer} (max_data_xfer_size)`,
      );
    }
    if (offset < 0 || offset + count > info.size) {
      throw new VfioUserError(
        Errno.EINVAL,
        `${commandName(command)}: ${count} bytes at offset ${offset < 0 ? 'beyond 2^53' : '0x' + offset.toString(16)} are outside region ${region} (${info.size} bytes)`,
      );
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Commands

  private version(m: IncomingMessage): void {
    if (this.negotiated) throw new VfioUserError(Errno.EINVAL, 'VERSION was already negotiated on this connection');
    this.expectNoFds(m);
    const proposal = decodeVersion(m.bytes, m.bodyOffset, m.bodyLength);
    if (proposal.major !== 0) {
      throw new VfioUserError(
        Errno.ENOTSUP,
        `client proposes protocol ${proposal.major}.${proposal.minor}; only major version 0 is supported`,
      );
    }
    this.clientCapabilities = parseCapabilities(proposal.json);
    const minor = Math.min(proposal.minor, SUPPORTED_MINOR);
    if (wantsReply(m)) {
      const json = this.server.versionJsonBytes;
      const at = this.beginReply(m, BodySize.VERSION + json.length + 1);
      const view = this.connection.outView;
      view.setUint16(at + HEADER_SIZE, 0, true);
      view.setUint16(at + HEADER_SIZE + 2, minor, true);
      this.connection.outBytes.set(json, at + HEADER_SIZE + BodySize.VERSION);
      this.connection.outBytes[at + HEADER_SIZE + BodySize.VERSION + json.length] = 0;
    }
    this.negotiated = true;
    this.log.info('protocol negotiated', {
      clientVersion: `${proposal.major}.${proposal.minor}`,
      version: `0.${minor}`,
      clientCapabilities: this.clientCapabilities,
    });
  }

  private getDeviceInfo(m: IncomingMessage): void {
    this.expectNoFds(m);
    this.expectBody(m, BodySize.DEVICE_INFO);
    this.expectArgsz(m, BodySize.DEVICE_INFO);
    if (!wantsReply(m)) return;
    const at = this.beginReply(m, BodySize.DEVICE_INFO);
    writeDeviceInfo(this.connection.outView, at + HEADER_SIZE, {
      argsz: BodySize.DEVICE_INFO,
      flags: this.device.flags,
      numRegions: this.device.regions.length,
      numIrqs: this.device.irqs.length,
    });
  }

  private getRegionInfo(m: IncomingMessage): void {
    this.expectNoFds(m);
    this.expectBody(m, BodySize.REGION_INFO);
    const argsz = this.expectArgsz(m, BodySize.REGION_INFO);
    const index = m.view.getUint32(m.bodyOffset + 8, true);
    const regions = this.device.regions;
    if (index >= regions.length) {
      throw new VfioUserError(Errno.EINVAL, `region ${index} does not exist (${regions.length} regions)`);
    }
    const region = regions[index]!;
    let flags = region.flags & (RegionFlag.READ | RegionFlag.WRITE);
    const mmap = region.mmap;
    const areas = mmap?.areas;
    const capSize = areas !== undefined && areas.length > 0 ? sparseMmapCapSize(areas.length) : 0;
    const needed = BodySize.REGION_INFO + capSize;
    // Capabilities only when they fit; otherwise argsz tells the client how much to ask for (vfio semantics).
    // CAPS stays clear then: QEMU rejects CAPS with a cap_offset outside the reply.
    const withCaps = capSize > 0 && argsz >= needed;
    if (mmap) flags |= RegionFlag.MMAP;
    if (withCaps) flags |= RegionFlag.CAPS;
    if (!wantsReply(m)) return;
    const at = this.beginReply(m, withCaps ? needed : BodySize.REGION_INFO);
    const view = this.connection.outView;
    writeRegionInfo(view, at + HEADER_SIZE, {
      argsz: needed,
      flags,
      index,
      capOffset: withCaps ? BodySize.REGION_INFO : 0,
      size: region.size,
      offset: mmap?.fdOffset ?? 0,
    });
    if (withCaps) writeSparseMmapCap(view, at + HEADER_SIZE + BodySize.REGION_INFO, areas!);
    if (mmap) this.connection.attachFds(at, [mmap.fd]);
  }

  private getIrqInfo(m: IncomingMessage): void {
    this.expectNoFds(m);
    this.expectBody(m, BodySize.IRQ_INFO);
    this.expectArgsz(m, BodySize.IRQ_INFO);
    const index = m.view.getUint32(m.bodyOffset + 8, true);
    const irqs = this.device.irqs;
    if (index >= irqs.length)
      throw new VfioUserError(Errno.EINVAL, `irq index ${index} does not exist (${irqs.length} irq types)`);
    const irq = irqs[index]!;
    if (!wantsReply(m)) return;
    const at = this.beginReply(m, BodySize.IRQ_INFO);
    writeIrqInfo(this.connection.outView, at + HEADER_SIZE, {
      argsz: BodySize.IRQ_INFO,
      flags: irq.flags,
      index,
      count: irq.count,
    });
  }

  private setIrqs(m: IncomingMessage): void {
    this.expectBody(m, BodySize.IRQ_SET);
    const view = m.view;
    const body = m.bodyOffset;
    const argsz = this.expectArgsz(m, BodySize.IRQ_SET);
    const flags = view.getUint32(body + 4, true);
    const index = view.getUint32(body + 8, true);
    const start = view.getUint32(body + 12, true);
    const count = view.getUint32(body + 16, true);
    const where = `SET_IRQS index ${index} start ${start} count ${count} flags 0x${flags.toString(16)}`;
    const irqs = this.device.irqs;
    if (index >= irqs.length)
      throw new VfioUserError(Errno.EINVAL, `${where}: irq index does not exist (${irqs.length} irq types)`);
    const dataType = flags & (IrqSetFlag.DATA_NONE | IrqSetFlag.DATA_BOOL | IrqSetFlag.DATA_EVENTFD);
    const action = flags & (IrqSetFlag.ACTION_MASK | IrqSetFlag.ACTION_UNMASK | IrqSetFlag.ACTION_TRIGGER);
    if ((flags & ~0x3f) !== 0 || !isSingleBit(dataType) || !isSingleBit(action)) {
      throw new VfioUserError(Errno.EINVAL, `${where}: flags must have exactly one DATA_* and one ACTION_* bit`);
    }
    const vectors = irqs[index]!.count;
    if (start + count > vectors || (count > 0 && start >= vectors)) {
      throw new VfioUserError(Errno.EINVAL, `${where}: vectors outside the ${vectors} of this irq type`);
    }
    let bools: Uint8Array | undefined;
    if (dataType === IrqSetFlag.DATA_EVENTFD) {
      if (count === 0) throw new VfioUserError(Errno.EINVAL, `${where}: DATA_EVENTFD needs count > 0`);
      // vfio-pci semantics: ACTION_MASK|DATA_EVENTFD is not implemented (ENOTTY), and ACTION_UNMASK|DATA_EVENTFD
      // is the resample irqfd of a level-triggered (AUTOMASKED) interrupt: INTx.
      if (action === IrqSetFlag.ACTION_MASK) {
        throw new VfioUserError(
          Errno.EINVAL,
          `${where}: masking through an eventfd is not supported (mask with DATA_NONE or DATA_BOOL)`,
        );
      }
      if (action === IrqSetFlag.ACTION_UNMASK && (irqs[index]!.flags & IrqFlag.AUTOMASKED) === 0) {
        throw new VfioUserError(
          Errno.EINVAL,
          `${where}: an unmask (resample) eventfd is only defined for an automasked, level-triggered interrupt (INTx)`,
        );
      }
      if (m.fds.length !== count && m.fds.length !== 0) {
        throw new VfioUserError(
          Errno.EINVAL,
          `${where}: ${m.fds.length} eventfds for ${count} vectors (send ${count}, or none to de-assign)`,
        );
      }
    } else {
      this.expectNoFds(m);
      if (dataType === IrqSetFlag.DATA_BOOL) {
        if (count === 0) throw new VfioUserError(Errno.EINVAL, `${where}: DATA_BOOL needs count > 0`);
        if (m.bodyLength < BodySize.IRQ_SET + count || argsz < BodySize.IRQ_SET + count) {
          throw new VfioUserError(
            Errno.EINVAL,
            `${where}: DATA_BOOL needs ${count} payload bytes, got ${m.bodyLength - BodySize.IRQ_SET} (argsz ${argsz})`,
          );
        }
        bools = m.bytes.subarray(body + BodySize.IRQ_SET, body + BodySize.IRQ_SET + count);
      }
    }
    const request: SetIrqsRequest = { index, flags, start, count, fds: m.fds };
    if (bools) request.bools = bools;
    // A throw leaves the fds with us: fail() closes them, exactly once (the device must not have closed any).
    this.device.setIrqs(request);
    m.fds = NO_FDS; // the device owns them now
    this.replyEmpty(m);
  }

  private regionRead(m: IncomingMessage): void {
    this.expectNoFds(m);
    this.expectBody(m, BodySize.REGION_ACCESS, true);
    const view = m.view;
    const body = m.bodyOffset;
    const offset = getU64(view, body);
    const region = view.getUint32(body + 8, true);
    const count = view.getUint32(body + 12, true);
    this.checkRegionAccess(Command.REGION_READ, region, offset, count, RegionFlag.READ);
    if ((m.flags & HeaderFlag.NO_REPLY) !== 0) {
      throw new VfioUserError(Errno.EINVAL, 'REGION_READ with NO_REPLY makes no sense');
    }
    const conn = this.connection;
    const at = this.beginReply(m, BodySize.REGION_ACCESS + count);
    writeRegionAccess(conn.outView, at + HEADER_SIZE, offset, region, count);
    const data = at + HEADER_SIZE + BodySize.REGION_ACCESS;
    try {
      this.device.regionRead(region, offset, conn.outBytes.subarray(data, data + count));
    } catch (error) {
      conn.unreserve(at);
      throw error;
    }
  }

  private regionWrite(m: IncomingMessage): void {
    this.expectNoFds(m);
    this.expectBody(m, BodySize.REGION_ACCESS);
    const view = m.view;
    const body = m.bodyOffset;
    const offset = getU64(view, body);
    const region = view.getUint32(body + 8, true);
    const count = view.getUint32(body + 12, true);
    if (m.bodyLength !== BodySize.REGION_ACCESS + count) {
      throw new VfioUserError(
        Errno.EINVAL,
        `REGION_WRITE count ${count} does not match its ${m.bodyLength - BodySize.REGION_ACCESS} data bytes`,
      );
    }
    this.checkRegionAccess(Command.REGION_WRITE, region, offset, count, RegionFlag.WRITE);
    const data = body + BodySize.REGION_ACCESS;
    let src: Uint8Array;
    if (count <= SMALL_WRITE_MAX) {
      // Register and doorbell writes (1-8 bytes, most of the traffic in interrupt mode): a copy into a reused
      // array of exactly that length instead of a new view. The device may use `src` only during the call.
      src = this.smallWrites[count]!;
      const bytes = m.bytes;
      for (let index = 0; index < count; index++) src[index] = bytes[data + index]!;
    } else {
      src = m.bytes.subarray(data, data + count);
    }
    this.device.regionWrite(region, offset, src);
    if (wantsReply(m)) {
      const at = this.beginReply(m, BodySize.REGION_ACCESS);
      writeRegionAccess(this.connection.outView, at + HEADER_SIZE, offset, region, count);
    }
  }

  private dmaMap(m: IncomingMessage): void {
    try {
      this.expectBody(m, BodySize.DMA_MAP);
      this.expectArgsz(m, BodySize.DMA_MAP);
      if (m.fds.length > 1)
        throw new VfioUserError(Errno.EINVAL, `DMA_MAP takes at most one file descriptor, got ${m.fds.length}`);
      const view = m.view;
      const body = m.bodyOffset;
      const flags = view.getUint32(body + 4, true);
      const fdOffset = getU64(view, body + 8);
      const iova = getU64(view, body + 16);
      const size = getU64(view, body + 24);
      const where = `DMA_MAP iova 0x${iova.toString(16)} size 0x${size.toString(16)}`;
      if ((flags & ~(DmaMapFlag.READ | DmaMapFlag.WRITE)) !== 0 || flags === 0) {
        throw new VfioUserError(
          Errno.EINVAL,
          `${where}: flags 0x${flags.toString(16)} (READ=1 and/or WRITE=2 expected)`,
        );
      }
      if (
        iova < 0 ||
        size <= 0 ||
        fdOffset < 0 ||
        !Number.isSafeInteger(iova + size) ||
        !Number.isSafeInteger(fdOffset + size)
      ) {
        throw new VfioUserError(
          Errno.EINVAL,
          `${where} offset 0x${fdOffset.toString(16)}: range is empty or beyond 2^53`,
        );
      }
      if (iova % PAGE_SIZE !== 0 || size % PAGE_SIZE !== 0 || fdOffset % PAGE_SIZE !== 0) {
        throw new VfioUserError(
          Errno.EINVAL,
          `${where} offset 0x${fdOffset.toString(16)}: not ${PAGE_SIZE}-byte aligned`,
        );
      }
      const mappings = this.memory.mappings;
      for (const mapping of mappings) {
        if (mapping.iova < iova + size && iova < mapping.iova + mapping.size) {
          throw new VfioUserError(
            Errno.EEXIST,
            `${where}: overlaps the mapping at 0x${mapping.iova.toString(16)} size 0x${mapping.size.toString(16)}`,
          );
        }
      }
      if (mappings.length >= this.server.maxDmaMaps) {
        throw new VfioUserError(Errno.ENOSPC, `${where}: already ${mappings.length} mappings (max_dma_maps)`);
      }
      const fd = m.fds[0];
      if (fd === undefined) {
        if (!this.warnedDmaWithoutFd) {
          this.warnedDmaWithoutFd = true;
          this.log.warn(
            'DMA_MAP without a file descriptor: this memory is not shared with vfiod and cannot be used for DMA',
            {
              iova: '0x' + iova.toString(16),
              size,
              hint: OPERATOR_HINT_NO_FD,
            },
          );
        }
        throw new VfioUserError(
          Errno.ENOTSUP,
          `${where}: no file descriptor (memory not shared; DMA_READ/DMA_WRITE are not supported)`,
        );
      }
      const prot =
        ((flags & DmaMapFlag.READ) !== 0 ? PROT_READ : 0) | ((flags & DmaMapFlag.WRITE) !== 0 ? PROT_WRITE : 0);
      let buffer: ArrayBuffer;
      try {
        buffer = native.mmap(fd, fdOffset, size, prot);
      } catch (error) {
        throw new VfioUserError(
          errnoOf(error, Errno.EINVAL),
          `${where}: mmap of the fd at offset 0x${fdOffset.toString(16)} failed: ${messageOf(error)}`,
        );
      }
      // QEMU's memory-backend-memfd seals its memory against shrinking; cloud-hypervisor does not. Unsealed memory is
      // fine: if the client truncates it, touching the lost pages fails this controller, not the process (the native
      // SIGBUS guard, docs/native.md). Said once per client, for whoever investigates such a failure.
      const sealed = shrinkSealed(fd);
      if (!sealed && !this.notedUnsealed) {
        this.notedUnsealed = true;
        this.log.info('guest memory is not sealed against shrinking (F_SEAL_SHRINK); a client that truncates it fails this controller', {
          iova: '0x' + iova.toString(16),
          size,
        });
      }
      const log = this.log;
      try {
        this.memory.add({
          iova,
          size,
          bytes: new Uint8Array(buffer),
          readable: (flags & DmaMapFlag.READ) !== 0,
          writable: (flags & DmaMapFlag.WRITE) !== 0,
          release: () => {
            try {
              native.munmap(buffer);
            } catch (error) {
              log.error('munmap of a DMA mapping failed', { iova, size, error });
            }
          },
        });
      } catch (error) {
        native.munmap(buffer);
        throw new VfioUserError(Errno.EINVAL, `${where}: ${messageOf(error)}`);
      }
      if (this.log.enabled('debug')) this.log.debug('dma mapped', { iova, size, flags, sealed });
      this.replyEmpty(m);
    } finally {
      // The mapping keeps the memory alive; the fd itself is not needed any more (on error, fail() sees none).
      closeFds(m.fds);
      m.fds = NO_FDS;
    }
  }

  private dmaUnmap(m: IncomingMessage): Promise<void> | void {
    this.expectNoFds(m);
    this.expectBody(m, BodySize.DMA_UNMAP);
    this.expectArgsz(m, BodySize.DMA_UNMAP);
    const view = m.view;
    const body = m.bodyOffset;
    const flags = view.getUint32(body + 4, true);
    const iova = getU64(view, body + 8);
    const size = getU64(view, body + 16);
    const where = `DMA_UNMAP iova 0x${iova.toString(16)} size 0x${size.toString(16)}`;
    if ((flags & DmaUnmapFlag.GET_DIRTY_BITMAP) !== 0) {
      throw new VfioUserError(Errno.ENOTSUP, `${where}: dirty page tracking is not supported`);
    }
    if ((flags & ~DmaUnmapFlag.ALL) !== 0)
      throw new VfioUserError(Errno.EINVAL, `${where}: unknown flags 0x${flags.toString(16)}`);
    const all = (flags & DmaUnmapFlag.ALL) !== 0;
    if (!all) {
      if (iova < 0 || size <= 0 || !Number.isSafeInteger(iova + size)) {
        throw new VfioUserError(Errno.EINVAL, `${where}: range is empty or beyond 2^53`);
      }
      if (iova % PAGE_SIZE !== 0 || size % PAGE_SIZE !== 0) {
        throw new VfioUserError(Errno.EINVAL, `${where}: not ${PAGE_SIZE}-byte aligned`);
      }
    }
    // Copy what the reply needs: the message object and receive buffer move on once we return.
    const msgId = m.msgId;
    const posted = (m.flags & HeaderFlag.NO_REPLY) !== 0;
    const echo = m.bytes.slice(body, body + BodySize.DMA_UNMAP);
    const started = Date.now();
    const removal = all ? this.memory.removeAll() : this.memory.remove(iova, size);
    const done = removal.then(
      (count) => {
        const waited = Date.now() - started;
        if (this.log.enabled('debug') || waited > 1000) {
          this.log[waited > 1000 ? 'warn' : 'debug']('dma unmapped', {
            iova,
            size,
            all,
            mappings: count,
            waitedMs: waited,
          });
        }
        if (posted) return;
        const at = this.connection.reserve(HEADER_SIZE + BodySize.DMA_UNMAP);
        writeHeader(
          this.connection.outView,
          at,
          msgId,
          Command.DMA_UNMAP,
          HEADER_SIZE + BodySize.DMA_UNMAP,
          HeaderFlag.TYPE_REPLY,
          0,
        );
        this.connection.outBytes.set(echo, at + HEADER_SIZE);
      },
      (error: unknown) => {
        this.failAfterAwait(
          msgId,
          Command.DMA_UNMAP,
          posted,
          echo,
          new VfioUserError(Errno.EINVAL, `${where}: ${messageOf(error)}`),
        );
      },
    );
    this.inFlight = done;
    return done;
  }

  private reset(m: IncomingMessage): Promise<void> | void {
    this.expectNoFds(m);
    const result = this.device.reset();
    this.log.info('device reset requested by the client');
    if (result === undefined) {
      this.replyEmpty(m);
      return;
    }
    const msgId = m.msgId;
    const posted = (m.flags & HeaderFlag.NO_REPLY) !== 0;
    const done = Promise.resolve(result).then(
      () => {
        if (!posted) {
          const at = this.connection.reserve(HEADER_SIZE);
          writeHeader(this.connection.outView, at, msgId, Command.DEVICE_RESET, HEADER_SIZE, HeaderFlag.TYPE_REPLY, 0);
        }
      },
      (error: unknown) => this.failAfterAwait(msgId, Command.DEVICE_RESET, posted, new Uint8Array(0), error),
    );
    this.inFlight = done;
    return done;
  }

  /** fail() for requests that completed asynchronously, when the original message object has moved on. */
  private failAfterAwait(msgId: number, command: number, posted: boolean, body: Uint8Array, error: unknown): void {
    const bytes = new Uint8Array(HEADER_SIZE + body.length);
    bytes.set(body, HEADER_SIZE);
    const message: IncomingMessage = {
      msgId,
      command,
      size: bytes.length,
      flags: posted ? HeaderFlag.NO_REPLY : 0,
      error: 0,
      bytes,
      view: new DataView(bytes.buffer),
      bodyOffset: HEADER_SIZE,
      bodyLength: body.length,
      fds: NO_FDS,
      fdsTruncated: false,
    };
    this.fail(message, error);
  }
}

function wantsReply(m: IncomingMessage): boolean {
  return (m.flags & HeaderFlag.NO_REPLY) === 0;
}

function isSingleBit(value: number): boolean {
  return value !== 0 && (value & (value - 1)) === 0;
}

/** Whether the file behind `fd` can never shrink (a memfd sealed with F_SEAL_SHRINK). */
function shrinkSealed(fd: number): boolean {
  try {
    return ((native.fileSeals(fd) ?? 0) & F_SEAL_SHRINK) !== 0;
  } catch {
    return false;
  }
}
