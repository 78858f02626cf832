/**
 * A vfiod namespace backed by a namespace of a remote NVMe/TCP subsystem, over one or more paths (addresses of the
 * same subsystem).
 *
 * Each path is an address with its own association (NvmeTcpController) and reconnect loop. I/O goes to the first
 * live path in URI order (active/passive), and within a path round-robin over its I/O queues. When a path's
 * association fails, the commands it had not completed are re-submitted at once on another live path or, when none
 * is live, wait for a path to come back. A path that stays down for `ctrl-loss-tmo` is given up in the Linux sense:
 * while every path is given up, waiting and new I/O complete with a path error (NamespaceError 'unavailable'); the
 * reconnect attempts continue in the background so the namespace heals when the target returns. A write is
 * resolved only on the target's successful completion.
 */
import { rootLogger, type Logger } from '../../util/log.js';
import { IoOpcode, StatusType, DNR } from '../../spec/nvme.js';
import { NamespaceError, type ByteRange, type Namespace, type NamespacePath, type NamespaceUsage } from '../namespace.js';
import { NvmeTcpController, newHostId, type ControllerInfo, type NamespaceInfo } from './controller.js';
import { DataDir, type TcpRequest } from './queue.js';
import { put32, put64, sliceViews, totalLength } from './pdu.js';
import { defaultHostNqn } from './discovery.js';
import { Oncs } from './spec.js';

export interface NvmeTcpAddress {
  host: string;
  port: number;
}

export interface NvmeTcpNamespaceOptions {
  addresses: NvmeTcpAddress[];
  subnqn: string;
  nsid: number;
  hostnqn?: string;
  /** I/O queues (TCP connections) per path. */
  queues: number;
  queueDepth: number;
  hdgst: boolean;
  ddgst: boolean;
  katoMs: number;
  reconnectDelayMs: number;
  /** How long a path may stay down before I/O that needs it fails (-1 = forever). */
  ctrlLossTmoMs: number;
  /** Command timeout: no completion in this time tears the connection down. */
  timeoutMs: number;
  /** TCP connect + ICReq timeout. */
  connectTimeoutMs?: number;
  logger?: Logger;
}

type PathState = NamespacePath['state'];

/** One I/O command with its promise; survives re-submission across associations and paths. */
class IoRequest implements TcpRequest {
  cdw13 = 0;
  cdw14 = 0;
  cdw15 = 0;
  /** When it was first submitted (for the ctrl-loss-tmo bound on retries). */
  readonly createdAt = performance.now();
  retries = 0;
  /** Given up (Namespace.abandon): rejected, never sent again, its buffers never touched again. */
  abandoned = false;
  constructor(
    readonly ns: NvmeTcpNamespace,
    readonly opcode: number,
    readonly nsid: number,
    readonly cdw10: number,
    readonly cdw11: number,
    readonly cdw12: number,
    readonly dir: DataDir,
    readonly buffers: readonly Uint8Array[],
    readonly length: number,
    readonly resolve: () => void,
    readonly reject: (error: Error) => void,
    /** The buffers array the namespace operation was called with (Namespace.abandon names operations by it). */
    readonly origin: readonly Uint8Array[] | undefined,
  ) {}

  complete(status: number, _dw0: number, _dw1: number): void {
    if (this.abandoned) return;
    if (status === 0) return this.resolve();
    this.ns.onErrorStatus(this, status);
  }
}

class Path {
  state: PathState = 'connecting';
  ctrl: NvmeTcpController | null = null;
  /** When the path went down (or started connecting for the first time). */
  downSince = performance.now();
  lastError = '';
  /** Times it became live again after the first connection attempt. */
  reconnects = 0;
  timer: NodeJS.Timeout | null = null;
  /** The association was torn down to give commands up, not for a fault of the target: reconnect at once. */
  reconnectNow = false;
  readonly log: Logger;
  constructor(
    readonly address: NvmeTcpAddress,
    logger: Logger,
  ) {
    this.log = logger.child({ target: `${address.host}:${address.port}` });
  }
  get name(): string {
    return `${this.address.host}:${this.address.port}`;
  }
}

export class NvmeTcpNamespace implements Namespace {
  blockSize = 0;
  blockCount = 0;
  readonly description: string;
  volatileWriteCache = false;
  maxTransferBytes = 0;
  supportsDeallocate = false;
  /** Identify data of the first path that connected. */
  controllerInfo!: ControllerInfo;
  namespaceInfo!: NamespaceInfo;

  private readonly opts: NvmeTcpNamespaceOptions;
  private readonly log: Logger;
  private readonly hostid = newHostId();
  private readonly hostnqn: string;
  private readonly paths: Path[];
  private readonly waiting: IoRequest[] = [];
  private lossTimer: NodeJS.Timeout | null = null;
  private writeZeroesSupported = false;
  private closed = false;

  private constructor(opts: NvmeTcpNamespaceOptions) {
    this.opts = opts;
    const where = opts.addresses.map((a) => `${a.host}:${a.port}`).join(',');
    this.description = `nvme-tcp://${where}/${opts.subnqn}?nsid=${opts.nsid}`;
    this.log = (opts.logger ?? rootLogger).child({ component: 'nvme-tcp', subnqn: opts.subnqn, nsid: opts.nsid });
    this.hostnqn = opts.hostnqn ?? defaultHostNqn(this.hostid);
    this.paths = opts.addresses.map((a) => new Path(a, this.log));
  }

  /** Connects every path; resolves when one is live (the others keep trying), rejects if all fail once. */
  static async open(opts: NvmeTcpNamespaceOptions): Promise<NvmeTcpNamespace> {
    if (opts.addresses.length === 0) throw new Error('nvme-tcp: no target address');
    const ns = new NvmeTcpNamespace(opts);
    const attempts = ns.paths.map((p) => ns.connectPath(p, true));
    const results = await Promise.allSettled(attempts);
    if (!results.some((r) => r.status === 'fulfilled' && r.value)) {
      const reasons = ns.paths.map((p) => `${p.name}: ${p.lastError}`).join('; ');
      await ns.close();
      throw new NamespaceError('unavailable', `cannot open ${ns.description}: ${reasons}`);
    }
    return ns;
  }

  /** State of each path, for logs, tests and metrics. */
  pathStates(): NamespacePath[] {
    return this.paths.map((p) => ({ address: p.name, state: p.state, error: p.lastError, reconnects: p.reconnects }));
  }

  usage(): NamespaceUsage {
    return { allocatedBytes: this.namespaceInfo.nuse * this.blockSize };
  }

  // --- path management ----------------------------------------------------------------------------------------------

  /** One connection attempt; true when the path became live. On failure schedules the next attempt. */
  private async connectPath(path: Path, first: boolean): Promise<boolean> {
    if (this.closed) return false;
    path.state = 'connecting';
    const o = this.opts;
    let ctrl: NvmeTcpController | null = null;
    try {
      ctrl = await NvmeTcpController.connect(
        {
          host: path.address.host,
          port: path.address.port,
          subnqn: o.subnqn,
          hostnqn: this.hostnqn,
          hostid: this.hostid,
          ioQueues: o.queues,
          queueDepth: o.queueDepth,
          hdgst: o.hdgst,
          ddgst: o.ddgst,
          katoMs: o.katoMs,
          connectTimeoutMs: o.connectTimeoutMs ?? Math.max(1000, Math.min(o.timeoutMs, 10_000)),
          commandTimeoutMs: o.timeoutMs,
          logger: this.log,
        },
        (error, requests) => this.onPathFailure(path, ctrl!, error, requests),
      );
      const info = await ctrl.identifyNamespace(o.nsid);
      this.adopt(path, ctrl, info);
    } catch (error) {
      const message = (error as Error).message;
      if (ctrl) await ctrl.close(100).catch(() => []);
      if (this.closed) return false;
      path.state = 'down';
      if (path.lastError !== message || first) path.log.warn('NVMe/TCP path connect failed', { error: message });
      path.lastError = message;
      this.scheduleReconnect(path);
      return false;
    }
    if (this.closed) {
      await ctrl.close(100);
      return false;
    }
    path.ctrl = ctrl;
    path.state = 'live';
    path.lastError = '';
    if (!first) path.reconnects++;
    path.log.info('NVMe/TCP path live', { cntlid: ctrl.info.cntlid, ioQueues: ctrl.ioQueueCount });
    this.drainWaiting();
    return true;
  }

  /** First path: takes the namespace geometry. Later paths: must show the same namespace. */
  private adopt(path: Path, ctrl: NvmeTcpController, info: NamespaceInfo): void {
    if (info.nsze === 0 || info.blockSize === 0) {
      throw new Error(`namespace ${this.opts.nsid} is not active on ${path.name} (NSZE ${info.nsze}, block size ${info.blockSize})`);
    }
    if (info.metadataSize !== 0) throw new Error(`namespace ${this.opts.nsid} has ${info.metadataSize}-byte metadata (unsupported)`);
    if (this.blockSize === 0) {
      if (info.blockSize !== 512 && info.blockSize !== 4096) throw new Error(`unsupported block size ${info.blockSize}`);
      this.blockSize = info.blockSize;
      this.blockCount = info.nsze;
      this.controllerInfo = ctrl.info;
      this.namespaceInfo = info;
      this.volatileWriteCache = ctrl.info.vwc;
      const byNlb = 65536 * info.blockSize;
      this.maxTransferBytes = ctrl.info.mdtsBytes > 0 ? Math.min(ctrl.info.mdtsBytes, byNlb) : byNlb;
      this.supportsDeallocate = (ctrl.info.oncs & Oncs.DSM) !== 0 && info.deallocatedReadsZero;
      this.writeZeroesSupported = (ctrl.info.oncs & Oncs.WRITE_ZEROES) !== 0;
      return;
    }
    if (info.blockSize !== this.blockSize || info.nsze !== this.blockCount) {
      throw new Error(`path ${path.name} shows a different namespace (${info.nsze} x ${info.blockSize} B, expected ${this.blockCount} x ${this.blockSize} B)`);
    }
  }

  private onPathFailure(path: Path, ctrl: NvmeTcpController, error: Error, requests: TcpRequest[]): void {
    if (path.ctrl !== ctrl) return;
    path.ctrl = null;
    path.state = 'down';
    path.downSince = performance.now();
    path.lastError = error.message;
    path.log.warn('NVMe/TCP path down; retrying its commands', { error: error.message, requeued: requests.length });
    if (this.closed) return;
    this.scheduleReconnect(path);
    for (const req of requests) this.retry(req as IoRequest, error);
  }

  private scheduleReconnect(path: Path): void {
    if (this.closed || path.timer) return;
    const delay = path.reconnectNow ? 0 : this.opts.reconnectDelayMs;
    path.reconnectNow = false;
    path.timer = setTimeout(() => {
      path.timer = null;
      void this.connectPath(path, false);
    }, delay);
    this.armLossTimer();
  }

  /** A path counts as lost for I/O once down for ctrl-loss-tmo. */
  private pathLost(path: Path, now: number): boolean {
    if (path.state === 'live') return false;
    if (this.opts.ctrlLossTmoMs < 0) return false;
    return now - path.downSince >= this.opts.ctrlLossTmoMs;
  }

  private allPathsLost(): boolean {
    const now = performance.now();
    return this.paths.every((p) => this.pathLost(p, now));
  }

  private armLossTimer(): void {
    if (this.lossTimer || this.opts.ctrlLossTmoMs < 0) return;
    const period = Math.max(10, Math.min(1000, Math.floor(this.opts.ctrlLossTmoMs / 4)));
    this.lossTimer = setInterval(() => {
      if (this.paths.some((p) => p.state === 'live')) {
        clearInterval(this.lossTimer!);
        this.lossTimer = null;
        return;
      }
      if (this.waiting.length > 0 && this.allPathsLost()) this.failWaiting();
    }, period);
    this.lossTimer.unref();
  }

  private failWaiting(): void {
    const reqs = this.waiting.splice(0);
    if (reqs.length > 0) this.log.error('NVMe/TCP: all paths lost for ctrl-loss-tmo; failing I/O', { commands: reqs.length });
    for (const req of reqs) req.reject(this.pathError(req));
  }

  private pathError(req: IoRequest): NamespaceError {
    const reasons = this.paths.map((p) => `${p.name}: ${p.lastError || p.state}`).join('; ');
    return new NamespaceError('unavailable', `${this.description}: no path to the target for opcode 0x${req.opcode.toString(16)} (${reasons})`);
  }

  // --- submission ---------------------------------------------------------------------------------------------------

  private submit(req: IoRequest): void {
    if (req.abandoned) return;
    for (const path of this.paths) {
      const ctrl = path.ctrl;
      if (path.state === 'live' && ctrl && ctrl.alive) {
        ctrl.submitIo(req);
        return;
      }
    }
    if (this.closed) return req.reject(new NamespaceError('unavailable', `${this.description}: namespace closed`));
    if (this.allPathsLost()) return req.reject(this.pathError(req));
    this.waiting.push(req);
    this.armLossTimer();
  }

  private retry(req: IoRequest, error: Error): void {
    if (req.abandoned) return;
    req.retries++;
    const tmo = this.opts.ctrlLossTmoMs;
    if (tmo >= 0 && performance.now() - req.createdAt > tmo + this.opts.timeoutMs) {
      return req.reject(new NamespaceError('unavailable', `${this.description}: opcode 0x${req.opcode.toString(16)} not completed after ${req.retries} attempts: ${error.message}`));
    }
    this.submit(req);
  }

  private drainWaiting(): void {
    const reqs = this.waiting.splice(0);
    for (const req of reqs) this.submit(req);
  }

  /** An NVMe error status from the target. Path-related statuses without DNR are retried, others returned. */
  onErrorStatus(req: IoRequest, status: number): void {
    const sct = (status >> 8) & 7;
    if (sct === StatusType.PATH && (status & DNR) === 0) return this.retry(req, new Error(`path status 0x${status.toString(16)}`));
    const kind = sct === StatusType.MEDIA ? (req.opcode === IoOpcode.READ ? 'read' : 'write') : 'internal';
    req.reject(new NamespaceError(kind, `${this.description}: opcode 0x${req.opcode.toString(16)} failed with status 0x${status.toString(16)}`, status));
  }

  private io(opcode: number, cdw10: number, cdw11: number, cdw12: number, dir: DataDir, buffers: readonly Uint8Array[], length: number, origin?: readonly Uint8Array[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.submit(new IoRequest(this, opcode, this.opts.nsid, cdw10, cdw11, cdw12, dir, buffers, length, resolve, reject, origin));
    });
  }

  private rw(opcode: number, dir: DataDir, offset: number, buffers: readonly Uint8Array[]): Promise<void> {
    const length = totalLength(buffers);
    const bs = this.blockSize;
    if (length <= this.maxTransferBytes) {
      const slba = offset / bs;
      return this.io(opcode, slba >>> 0, Math.floor(slba / 0x1_0000_0000), length / bs - 1, dir, buffers, length, buffers);
    }
    const parts: Promise<void>[] = [];
    for (let done = 0; done < length; done += this.maxTransferBytes) {
      const n = Math.min(this.maxTransferBytes, length - done);
      const slba = (offset + done) / bs;
      parts.push(this.io(opcode, slba >>> 0, Math.floor(slba / 0x1_0000_0000), n / bs - 1, dir, sliceViews(buffers, done, n), n, buffers));
    }
    return Promise.all(parts).then(() => undefined);
  }

  /**
   * Gives up the reads and writes called with `buffers`: they reject at once, and nothing touches `buffers` again.
   * Those still waiting for a path or a command id are simply taken back. For one already sent, the association
   * of its path is torn down (its other commands are re-sent, as after any connection failure): late data for it
   * can then never arrive, and the socket drops the writes it still held. Always true.
   */
  abandon(buffers: readonly Uint8Array[]): boolean {
    const given: IoRequest[] = [];
    // Marks (and collects) a request of `buffers` as given up, before any association is torn down, so the failure
    // path that follows a teardown does not re-send it.
    const mark = (candidate: TcpRequest): boolean => {
      const req = candidate as IoRequest;
      if (req.origin !== buffers) return false;
      if (!req.abandoned) {
        req.abandoned = true;
        given.push(req);
      }
      return true;
    };
    for (let index = this.waiting.length - 1; index >= 0; index--) {
      if (mark(this.waiting[index]!)) this.waiting.splice(index, 1);
    }
    for (const path of this.paths) {
      const ctrl = path.ctrl;
      if (ctrl === null || !ctrl.alive) continue;
      path.reconnectNow = true;
      ctrl.withdrawIo(mark, 'their guest memory is being unmapped, or a reset gave up waiting');
      if (path.ctrl === ctrl) path.reconnectNow = false; // nothing was on the wire: the association lives on
    }
    for (const req of given) {
      req.reject(new NamespaceError('unavailable', `${this.description}: opcode 0x${req.opcode.toString(16)} given up before the target answered`));
    }
    if (given.length > 0) this.log.warn('NVMe/TCP: gave up commands', { commands: given.length });
    return true;
  }

  read(offset: number, buffers: readonly Uint8Array[]): Promise<void> {
    return this.rw(IoOpcode.READ, DataDir.IN, offset, buffers);
  }

  write(offset: number, buffers: readonly Uint8Array[]): Promise<void> {
    return this.rw(IoOpcode.WRITE, DataDir.OUT, offset, buffers);
  }

  flush(): Promise<void> {
    return this.io(IoOpcode.FLUSH, 0, 0, 0, DataDir.NONE, [], 0);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    const bs = this.blockSize;
    const parts: Promise<void>[] = [];
    if (!this.writeZeroesSupported) {
      const zeroes = new Uint8Array(Math.min(length, this.maxTransferBytes, 1 << 20));
      for (let done = 0; done < length; done += zeroes.length) {
        const n = Math.min(zeroes.length, length - done);
        parts.push(this.write(offset + done, [zeroes.subarray(0, n)]));
      }
      await Promise.all(parts);
      return;
    }
    const maxBytes = 65536 * bs;
    for (let done = 0; done < length; done += maxBytes) {
      const n = Math.min(maxBytes, length - done);
      const slba = (offset + done) / bs;
      parts.push(this.io(IoOpcode.WRITE_ZEROES, slba >>> 0, Math.floor(slba / 0x1_0000_0000), n / bs - 1, DataDir.NONE, [], 0));
    }
    await Promise.all(parts);
  }

  async deallocate(ranges: readonly ByteRange[]): Promise<void> {
    if (!this.supportsDeallocate) {
      await Promise.all(ranges.map((r) => this.writeZeroes(r.offset, r.length)));
      return;
    }
    const bs = this.blockSize;
    // DSM ranges: 16 bytes each (context attributes, NLB, SLBA), at most 256 per command, NLB < 2^32.
    const entries: { slba: number; nlb: number }[] = [];
    const maxNlb = 0xffff_ffff;
    for (const r of ranges) {
      for (let lba = r.offset / bs, left = r.length / bs; left > 0; ) {
        const nlb = Math.min(left, maxNlb);
        entries.push({ slba: lba, nlb });
        lba += nlb;
        left -= nlb;
      }
    }
    const parts: Promise<void>[] = [];
    for (let i = 0; i < entries.length; i += 256) {
      const batch = entries.slice(i, i + 256);
      const data = new Uint8Array(batch.length * 16);
      batch.forEach((e, j) => {
        put32(data, j * 16 + 4, e.nlb);
        put64(data, j * 16 + 8, e.slba);
      });
      // cdw10 = number of ranges - 1, cdw11 bit 2 = Attribute Deallocate.
      parts.push(this.io(IoOpcode.DATASET_MANAGEMENT, batch.length - 1, 0x4, 0, DataDir.OUT, [data], data.length));
    }
    await Promise.all(parts);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Let writes in flight reach the target first; anything still waiting then fails.
    this.closed = true;
    if (this.lossTimer) clearInterval(this.lossTimer);
    this.lossTimer = null;
    for (const path of this.paths) {
      if (path.timer) clearTimeout(path.timer);
      path.timer = null;
    }
    for (const req of this.waiting.splice(0)) req.reject(new NamespaceError('unavailable', `${this.description}: namespace closed`));
    await Promise.all(
      this.paths.map(async (path) => {
        const ctrl = path.ctrl;
        path.ctrl = null;
        path.state = 'closed';
        if (!ctrl) return;
        const left = await ctrl.close();
        for (const req of left) (req as IoRequest).reject(new NamespaceError('unavailable', `${this.description}: namespace closed`));
      }),
    );
  }
}
