/**
 * One connected vfio-user client: dispatch of its requests, error replies, and the handlers for version
 * negotiation, device/region/irq info, region access and reset. DMA requests are in dma.ts, SET_IRQS decoding in
 * irqs.ts, the socket and the one-client-at-a-time lifecycle in server.ts.
 *
 * Error replies have the size of the command's normal reply (the body zero-filled or echoed), not just a header
 * as the specification says: cloud-hypervisor reads fixed-size replies without looking at the ERROR flag, so a
 * short reply would desynchronise it. QEMU checks the flag first and only requires a reply to fit the buffer it
 * allocated, which these sizes do (see docs/vfio-user.md).
 *
 * Size: every request handler but DMA and SET_IRQS, plus the live-upgrade adopt path of a session.
 */
import type { GuestMemory } from '../memory/guest-memory.js';
import type { Logger } from '../util/log.js';
import { closeFds, type Connection, type ConnectionHandler, type IncomingMessage } from './connection.js';
import { Errno, RegionFlag, errnoName } from '../spec/vfio.js';
import type { VfioUserDevice } from './device.js';
import { DmaRequests, type DmaMappingState } from './dma.js';
import { VfioUserError, errnoOf, messageOf } from './errors.js';
import { decodeSetIrqs } from './irqs.js';
import { ERROR_LOG_BUDGET, MAX_MSG_FDS, SUPPORTED_MINOR } from './limits.js';
import {
  BodySize,
  Command,
  HEADER_SIZE,
  HeaderFlag,
  MAX_COMMAND,
  commandName,
  decodeVersion,
  getU64,
  parseCapabilities,
  readIrqInfo,
  readRegionInfo,
  sparseMmapCapSize,
  writeDeviceInfo,
  writeHeader,
  writeIrqInfo,
  writeRegionAccess,
  writeRegionInfo,
  writeSparseMmapCap,
  type Capabilities,
} from './protocol.js';
import { NO_FDS, expectArgsz, expectBody, expectNoFds, wantsReply } from './request.js';
import type { ConnectionInputState, ConnectionStreamsState } from './connection.js';
import type { FdCollector, FdSource } from '../util/handover-fds.js';

/** A connected client in a live-upgrade snapshot (docs/restart.md); fds are indexes into the snapshot's fds. */
export interface SessionState {
  /** The client's connected socket. */
  socket: number;
  clientId: number;
  negotiated: boolean;
  /** The protocol minor version agreed on (major is always 0). */
  minor: number;
  clientCapabilities: Capabilities;
  errorLogBudget: number;
  dma: DmaMappingState[];
  /** A live upgrade's quiet connection: the start of a message received and not handled. */
  input?: ConnectionInputState;
  /** A crash checkpoint's serving connection: its streams (the crash journal holds the received bytes). */
  streams?: ConnectionStreamsState;
}

/** What a session needs of its server: limits, the VERSION reply, shared counters and the close notification. */
export interface SessionHost {
  readonly maxDataTransfer: number;
  readonly maxDmaMaps: number;
  readonly maxMessageSize: number;
  readonly versionJsonBytes: Uint8Array;
  /** Messages received per command id (index MAX_COMMAND + 1 counts unknown ones). */
  readonly messageCounts: Float64Array;
  protocolDisconnects: number;
  countError(errno: number, posted: boolean): void;
  sessionClosed(session: ClientSession, reason: string, error: unknown): void;
  /** Crash recovery: a request changed state the checkpoint holds. */
  stateChanged(command: number, region?: number, offset?: number): void;
  /** Crash recovery: replies are about to go out. */
  beforeSend(): void;
}

/** REGION_WRITEs of at most this many bytes are copied into a reused array rather than passed as a new view. */
const SMALL_WRITE_MAX = 8;

/** The state of one connected client and the handling of its requests. */
export class ClientSession implements ConnectionHandler {
  connection!: Connection;
  negotiated = false;
  /** The minor protocol version agreed on in VERSION. */
  minor = 0;
  clientCapabilities: Capabilities = {};
  /** A pending asynchronous request (DMA_UNMAP drain, DEVICE_RESET); settles without rejecting. */
  inFlight: Promise<void> = Promise.resolve();
  private errorLogBudget = ERROR_LOG_BUDGET;
  private readonly maxDataTransfer: number;
  private readonly dma: DmaRequests;
  /** smallWrites[n]: the n-byte array REGION_WRITE hands small writes in (see regionWrite). */
  private readonly smallWrites: readonly Uint8Array[] = Array.from(
    { length: SMALL_WRITE_MAX + 1 },
    (_, length) => new Uint8Array(length),
  );

  constructor(
    private readonly server: SessionHost,
    readonly id: number,
    readonly log: Logger,
    private readonly device: VfioUserDevice,
    private readonly memory: GuestMemory,
  ) {
    this.maxDataTransfer = server.maxDataTransfer;
    this.dma = new DmaRequests(memory, log, server.maxDmaMaps);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Live upgrade

  /** This client's state, for a successor process; the connection must be paused and quiet. */
  snapshot(fds: FdCollector): SessionState {
    return { ...this.state(fds), input: this.connection.snapshotInput(fds) };
  }

  /** This client's state for a crash checkpoint, taken while it is served. */
  checkpoint(fds: FdCollector): SessionState {
    return { ...this.state(fds), streams: this.connection.checkpointStreams(fds) };
  }

  /** What both keep: the protocol state and the DMA mappings. */
  private state(fds: FdCollector): SessionState {
    return {
      socket: fds.add(this.connection.fd),
      clientId: this.id,
      negotiated: this.negotiated,
      minor: this.minor,
      clientCapabilities: this.clientCapabilities,
      errorLogBudget: this.errorLogBudget,
      dma: this.dma.snapshot(fds),
    };
  }

  /** Takes over a predecessor's client: its protocol state, DMA mappings and unhandled input (before start). */
  restore(state: SessionState, fds: FdSource): void {
    if (typeof state.negotiated !== 'boolean' || !Number.isInteger(state.minor) || state.minor < 0 || state.minor > SUPPORTED_MINOR) {
      throw new Error(`snapshot: vfio-user session with protocol 0.${String(state.minor)} (this build speaks up to 0.${SUPPORTED_MINOR})`);
    }
    this.negotiated = state.negotiated;
    this.minor = state.minor;
    this.clientCapabilities = state.clientCapabilities ?? {};
    this.errorLogBudget = Number.isInteger(state.errorLogBudget) ? state.errorLogBudget : ERROR_LOG_BUDGET;
    this.dma.restore(state.dma, fds);
    if (state.input) this.connection.restoreInput(state.input, fds);
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

  beforeSend(): void {
    this.server.beforeSend();
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
  // Region access

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
    expectNoFds(m);
    const proposal = decodeVersion(m.bytes, m.bodyOffset, m.bodyLength);
    if (proposal.major !== 0) {
      throw new VfioUserError(
        Errno.ENOTSUP,
        `client proposes protocol ${proposal.major}.${proposal.minor}; only major version 0 is supported`,
      );
    }
    this.clientCapabilities = parseCapabilities(proposal.json);
    const minor = Math.min(proposal.minor, SUPPORTED_MINOR);
    this.minor = minor;
    this.server.stateChanged(Command.VERSION);
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
    expectNoFds(m);
    expectBody(m, BodySize.DEVICE_INFO);
    expectArgsz(m, BodySize.DEVICE_INFO);
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
    expectNoFds(m);
    expectBody(m, BodySize.REGION_INFO);
    const { argsz, index } = readRegionInfo(m.view, m.bodyOffset);
    expectArgsz(m, BodySize.REGION_INFO);
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
    expectNoFds(m);
    expectBody(m, BodySize.IRQ_INFO);
    expectArgsz(m, BodySize.IRQ_INFO);
    const { index } = readIrqInfo(m.view, m.bodyOffset);
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
    const request = decodeSetIrqs(m, this.device.irqs);
    // A throw leaves the fds with us: fail() closes them, exactly once (the device must not have closed any).
    this.device.setIrqs(request);
    m.fds = NO_FDS; // the device owns them now
    this.server.stateChanged(Command.DEVICE_SET_IRQS);
    this.replyEmpty(m);
  }

  // REGION_READ/REGION_WRITE decode their fields by hand instead of through protocol.ts's readRegionAccess: they
  // carry every register access and, in interrupt mode, every doorbell, and the reader's object per message shows
  // in bench/micro (vfio-user group).
  private regionRead(m: IncomingMessage): void {
    expectNoFds(m);
    expectBody(m, BodySize.REGION_ACCESS, true);
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
    expectNoFds(m);
    expectBody(m, BodySize.REGION_ACCESS);
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
    this.server.stateChanged(Command.REGION_WRITE, region, offset);
    if (wantsReply(m)) {
      const at = this.beginReply(m, BodySize.REGION_ACCESS);
      writeRegionAccess(this.connection.outView, at + HEADER_SIZE, offset, region, count);
    }
  }

  private dmaMap(m: IncomingMessage): void {
    this.dma.map(m);
    this.server.stateChanged(Command.DMA_MAP);
    this.replyEmpty(m);
  }

  private dmaUnmap(m: IncomingMessage): Promise<void> {
    const pending = this.dma.unmap(m);
    // Copy what the reply needs: the message object and receive buffer move on once we return.
    const msgId = m.msgId;
    const posted = !wantsReply(m);
    const echo = m.bytes.slice(m.bodyOffset, m.bodyOffset + BodySize.DMA_UNMAP);
    this.server.stateChanged(Command.DMA_UNMAP);
    const done = pending.removal.then(
      () => {
        this.server.stateChanged(Command.DMA_UNMAP);
        if (posted) return;
        const at = this.connection.reserve(HEADER_SIZE + BodySize.DMA_UNMAP);
        const size = HEADER_SIZE + BodySize.DMA_UNMAP;
        writeHeader(this.connection.outView, at, msgId, Command.DMA_UNMAP, size, HeaderFlag.TYPE_REPLY, 0);
        this.connection.outBytes.set(echo, at + HEADER_SIZE);
      },
      (error: unknown) => {
        const failure = new VfioUserError(Errno.EINVAL, `${pending.where}: ${messageOf(error)}`);
        this.failAfterAwait(msgId, Command.DMA_UNMAP, posted, echo, failure);
      },
    );
    this.inFlight = done;
    return done;
  }

  private reset(m: IncomingMessage): Promise<void> | void {
    expectNoFds(m);
    const result = this.device.reset();
    this.log.info('device reset requested by the client');
    this.server.stateChanged(Command.DEVICE_RESET);
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
      replayed: false,
    };
    this.fail(message, error);
  }
}
