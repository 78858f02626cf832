/**
 * The vfio-user server: listens on a unix socket, serves one client (QEMU `vfio-user-pci` or cloud-hypervisor
 * `--user-device`) at a time, and cleans up after it so the next one can connect. The requests of a connected
 * client are handled by its `ClientSession` (session.ts), which translates them into calls on a `VfioUserDevice`
 * and a `GuestMemory`.
 *
 * Every request is validated before the device sees it; a bad request gets an error reply with a Linux errno and
 * one log line, and the client stays connected. Only a stream that cannot be resynchronised (a msg_size that makes
 * no sense) drops the client, after which the next client can connect.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { GuestMemory } from '../memory/guest-memory.js';
import { native, POLL_READABLE, type FdWatcher } from '../native/index.js';
import { errnoName } from '../spec/vfio.js';
import { rootLogger, type Logger } from '../util/log.js';
import { clearStaleSocket, removeOwnSocket, socketIdentity, type SocketIdentity } from '../util/socket-path.js';
import { Connection, type RecoveredStreams, type StreamJournal } from './connection.js';
import { validateDevice, type VfioUserDevice } from './device.js';
import {
  CONTROL_MESSAGE_ROOM,
  DEFAULT_MAX_DATA_TRANSFER,
  DEFAULT_MAX_DMA_MAPS,
  MAX_DATA_TRANSFER_LIMIT,
  MAX_DMA_MAPS_LIMIT,
  MAX_MSG_FDS,
  PAGE_SIZE,
} from './limits.js';
import { BodySize, HEADER_SIZE, MAX_COMMAND, capabilitiesJson, commandName } from './protocol.js';
import { ClientSession, type SessionHost, type SessionState } from './session.js';
import { checkSnapshotVersion, type FdCollector, type FdSource } from '../util/handover-fds.js';
import { makeDirectory } from '../util/make-directory.js';

/** The newest server snapshot format this build writes and reads. */
const SERVER_STATE_VERSION = 1;

/** A server in a live-upgrade snapshot (docs/restart.md); fds are indexes into the snapshot's fds. */
export interface VfioUserServerState {
  version: number;
  socketPath: string;
  /** The listening socket. */
  listenFd: number;
  nextClientId: number;
  /** The connected client, if any. */
  session?: SessionState;
  /** The device's own state (VfioUserDevice.snapshot), opaque here. */
  device: unknown;
}

/**
 * What crash recovery (docs/restart.md) needs from the server while it serves; the serve layer implements it over a
 * holder process and a checkpoint in shared memory. The server stays ignorant of how.
 */
export interface CrashRecoveryHooks {
  /** The listening socket or an accepted connection: kept safe from this process's death. */
  keepFd(fd: number): void;
  /** A request changed state the checkpoint holds (for REGION_WRITE: which region and offset). */
  stateChanged(command: number, region?: number, offset?: number): void;
  /** Replies are about to be sent: the checkpoint must hold what they acknowledge first. */
  beforeSend(): void;
  /** A client was accepted, or its cleanup after a disconnect is done: the checkpoint must say so at once. */
  clientChanged(): void;
  /** The journal for a connection just accepted (its streams start at position 0) or recovered. */
  streamJournal(fresh: boolean): StreamJournal;
}

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
  /** Crash recovery, when enabled. */
  crashRecovery?: CrashRecoveryHooks;
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
export class VfioUserServer extends EventEmitter implements SessionHost {
  readonly socketPath: string;
  readonly maxDataTransfer: number;
  readonly maxDmaMaps: number;
  readonly maxMessageSize: number;
  private readonly socketMode: number;
  private readonly device: VfioUserDevice;
  private readonly memory: GuestMemory;
  private readonly log: Logger;
  private readonly versionJson: Uint8Array;
  private readonly crash: CrashRecoveryHooks | undefined;

  private listenFd: number | undefined;
  private acceptWatcher: FdWatcher | undefined;
  private acceptRetryTimer: NodeJS.Timeout | undefined;
  private socketIdentity: SocketIdentity | undefined;
  private session: ClientSession | undefined;
  /** Resolves when the previous client's cleanup is done. */
  private cleanup: Promise<void> = Promise.resolve();
  private cleaningUp = false;
  private closing = false;
  private closePromise: Promise<void> | undefined;
  private nextClientId = 1;
  /** Quiesced for a live upgrade: nothing is accepted or read until resume() (or the process hands over and exits). */
  private quiesced = false;

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
    this.crash = options.crashRecovery;
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
    makeDirectory(path.dirname(this.socketPath), 0o755);
    await this.removeStaleSocket();
    if (this.closing) throw new Error(`vfio-user server on ${this.socketPath} was closed while starting`);
    this.listenFd = native.listenUnix(this.socketPath, this.socketMode, 4);
    this.crash?.keepFd(this.listenFd);
    this.socketIdentity = socketIdentity(this.socketPath);
    this.acceptWatcher = native.createWatcher(this.listenFd, this.onAcceptable);
    this.startAccepting();
    this.log.info('listening', { mode: '0' + this.socketMode.toString(8), maxDataTransfer: this.maxDataTransfer });
  }

  /**
   * Live upgrade, step 1: stop accepting, stop reading the client at a message boundary, let requests in progress
   * finish and replies go out, then quiesce the device (in-flight work completes and is delivered). Resolves when
   * nothing moves any more; `snapshot` or `resume` follows.
   */
  async quiesce(): Promise<void> {
    if (this.listenFd === undefined || this.closing) throw new Error('the vfio-user server is not serving');
    if (!this.device.quiesce || !this.device.snapshot) throw new Error('the device does not support live upgrade');
    this.quiesced = true;
    this.stopAccepting();
    const session = this.session;
    if (session && !this.cleaningUp) {
      await session.connection.pause();
      await session.inFlight;
    }
    // A client that left meanwhile: its cleanup (device back to power-on state) finishes first.
    await this.cleanup;
    await this.device.quiesce();
  }

  /** Undoes `quiesce` (the upgrade failed): the device, the client and accepting go on. */
  resume(): void {
    if (!this.quiesced) return;
    this.quiesced = false;
    this.device.resume?.();
    if (this.session && !this.cleaningUp) this.session.connection.resume();
    if (!this.cleaningUp) this.startAccepting();
  }

  /** The server's state for a successor, its fds added to `fds`; only while quiesced. */
  snapshot(fds: FdCollector): VfioUserServerState {
    if (!this.quiesced || this.listenFd === undefined) throw new Error('vfio-user server snapshot while not quiesced');
    const session = this.session;
    return {
      version: SERVER_STATE_VERSION,
      socketPath: this.socketPath,
      listenFd: fds.add(this.listenFd),
      nextClientId: this.nextClientId,
      ...(session && !session.connection.isClosed ? { session: session.snapshot(fds) } : {}),
      device: this.device.snapshot!(fds),
    };
  }

  /**
   * The server's state for a crash checkpoint, taken while serving: like `snapshot`, with the client's streams as
   * they stand (the crash journal covers what moves on after it) and the device's live state.
   */
  checkpoint(fds: FdCollector): VfioUserServerState {
    if (this.listenFd === undefined) throw new Error('vfio-user server checkpoint while not listening');
    const session = this.cleaningUp ? undefined : this.session;
    return {
      version: SERVER_STATE_VERSION,
      socketPath: this.socketPath,
      listenFd: fds.add(this.listenFd),
      nextClientId: this.nextClientId,
      ...(session && !session.connection.isClosed ? { session: session.checkpoint(fds) } : {}),
      device: this.device.snapshot!(fds, true),
    };
  }

  /** Crash recovery, after `adopt` and before `start`: the client's streams as the predecessor left them. */
  recoverStreams(streams: RecoveredStreams): void {
    const session = this.session;
    if (!session) throw new Error('no client to recover the streams of');
    session.connection.recoverStreams(streams);
    if (this.crash) session.connection.journal = this.crash.streamJournal(false);
  }

  /** @internal */
  stateChanged(command: number, region?: number, offset?: number): void {
    this.crash?.stateChanged(command, region, offset);
  }

  /** @internal */
  beforeSend(): void {
    this.crash?.beforeSend();
  }

  /**
   * In a successor process, instead of `listen()`: takes over a predecessor's listening socket, client connection,
   * DMA mappings and device state. Nothing is read or signalled until `start()`, so the predecessor can still resume
   * if the upgrade fails elsewhere.
   */
  adopt(state: VfioUserServerState, fds: FdSource): void {
    if (this.listenFd !== undefined || this.closing) throw new Error(`vfio-user server on ${this.socketPath} is already listening or closed`);
    checkSnapshotVersion(state, 'vfio-user server state', SERVER_STATE_VERSION);
    if (path.resolve(state.socketPath) !== this.socketPath) {
      throw new Error(`snapshot is of the server on ${state.socketPath}, not ${this.socketPath}`);
    }
    if (!this.device.restore) throw new Error('the device does not support live upgrade');
    const listenFd = fds.take(state.listenFd);
    const stat = fs.lstatSync(this.socketPath);
    if (!stat.isSocket()) throw new Error(`${this.socketPath} is not a socket any more`);
    this.device.restore(state.device, fds);
    if (state.session) {
      const session = this.createSession(fds.take(state.session.socket), state.session.clientId);
      session.restore(state.session, fds);
    }
    this.nextClientId = Math.max(this.nextClientId, Number(state.nextClientId) || 1);
    this.listenFd = listenFd;
    this.socketIdentity = { dev: stat.dev, ino: stat.ino };
    this.acceptWatcher = native.createWatcher(listenFd, this.onAcceptable);
    this.quiesced = true;
  }

  /** After `adopt`: the upgrade is committed; serve the client taken over and accept new ones. */
  start(): void {
    if (!this.quiesced) return;
    this.quiesced = false;
    this.device.start?.();
    if (this.session) {
      this.session.connection.start();
      this.session.log.info('client taken over from the previous process');
    }
    this.startAccepting();
    this.log.info('listening (taken over)', { client: this.session?.id });
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
    if (await clearStaleSocket(this.socketPath, 'server')) this.log.info('removed stale socket file');
  }

  private removeOwnSocketFile(): void {
    // Only our own socket: someone may have replaced the path since.
    const error = removeOwnSocket(this.socketPath, this.socketIdentity);
    if (error) this.log.warn('could not remove socket file', { error });
  }


  private startAccepting(): void {
    if (!this.closing && !this.quiesced && this.acceptWatcher) this.acceptWatcher.start(POLL_READABLE);
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
    this.connectionsAccepted++;
    this.crash?.keepFd(fd);
    const session = this.createSession(fd, this.nextClientId++);
    if (this.crash) {
      session.connection.journal = this.crash.streamJournal(true);
      this.crash.clientChanged();
    }
    session.log.info('client connected');
    session.connection.start();
    this.emit('connect', session.id);
  }

  private createSession(fd: number, id: number): ClientSession {
    const log = this.log.child({ client: id });
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
    return session;
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
    this.crash?.clientChanged();
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
