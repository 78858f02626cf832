/**
 * The registry of emulated NVMe controllers a long-running vfiod (the daemon) serves: one ControllerWorker per
 * controller, so each keeps serving whatever happens to API clients or to the other controllers. Definitions
 * persist in <state dir>/controllers.json and are started again when the daemon restarts; identity defaults to
 * <state dir>/controllers/<id>.identity.json so a guest sees the same controller across restarts. Stats are sampled
 * periodically to report rates.
 */
import { mkdirSync, readFileSync, realpathSync, renameSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import path from 'node:path';
import { type FileNamespaceSpec, type MemoryNamespaceSpec, parseNamespaceUri } from '../namespace/uri.js';
import { LATENCY_BUCKETS, type NvmeControllerStats } from '../nvme/stats.js';
import { errorMessage, VfiodError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { formatSize } from '../util/size.js';
import { socketPathState } from '../util/socket-path.js';
import { CONTROLLER_LIMITS, type ControllerConfig, controllerConfig, type DoorbellMode } from './config.js';
import { checkIdentityOverrides } from './identity-store.js';
import { ControllerWorker } from './supervisor.js';
import type { ControllerSnapshot } from './worker.js';

export type ControllerRunState = 'starting' | 'serving' | 'stopping' | 'failed';

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const STATE_FILE = 'controllers.json';
/** A controller that is not listening by then is stopped and reported (a hung backend must not hold its id forever). */
const DEFAULT_START_TIMEOUT_MS = 60_000;
/**
 * Controllers one daemon runs at most, by default. Each costs a worker thread and about 12-13 MiB of memory (a V8
 * isolate and its heap) before any guest I/O, so without a limit a client of the API could exhaust the host.
 */
export const DEFAULT_MAX_CONTROLLERS = 128;

/** What a CreateController request carries (ControllerSpec with proto3 defaults: 0 / '' = not given). */
export interface ControllerSpecInput {
  socketPath?: string;
  namespaces?: string[];
  doorbellMode?: string;
  socketMode?: number;
  msixVectors?: number;
  maxIoQueuePairs?: number;
  maxQueueEntries?: number;
  mdtsPages?: number;
  identityPath?: string;
  identity?: { serialNumber?: string; modelNumber?: string; firmwareRevision?: string; subsystemNqn?: string } | null;
}

interface Sample {
  at: number;
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
}

interface Entry {
  id: string;
  config: ControllerConfig;
  createdAt: string;
  state: ControllerRunState;
  error: string;
  worker: ControllerWorker | undefined;
  samples: Sample[];
}

export interface ControllerView {
  id: string;
  config: ControllerConfig;
  createdAt: string;
  state: ControllerRunState;
  error: string;
  snapshot: ControllerSnapshot | null;
  rates: { readIops: number; writeIops: number; readBytesPerSecond: number; writeBytesPerSecond: number };
}

interface PersistedControllers {
  version: 1;
  controllers: Array<{ id: string; createdAt: string; config: ControllerConfig }>;
}

export interface ControllerRegistryOptions {
  stateDir: string;
  logger: Logger;
  /** How often stats are sampled for rates (default 1000 ms). */
  sampleIntervalMs?: number;
  /** How long a controller may take to start listening (default 60 s). */
  startTimeoutMs?: number;
  /** RAM that memory namespaces may use in total (default: the host's RAM). */
  memoryLimitBytes?: number;
  /** Most controllers at once, counting those starting, failed or being deleted (default DEFAULT_MAX_CONTROLLERS). */
  maxControllers?: number;
}

export class ControllerRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly logger: Logger;
  readonly sampleIntervalMs: number;
  private readonly sampler: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly options: ControllerRegistryOptions) {
    this.logger = options.logger.child({ component: 'controllers' });
    this.sampleIntervalMs = options.sampleIntervalMs ?? 1000;
    this.sampler = setInterval(() => void this.sample(), this.sampleIntervalMs);
    this.sampler.unref();
  }

  /** The most controllers this daemon runs at once. */
  get maxControllers(): number {
    return this.options.maxControllers ?? DEFAULT_MAX_CONTROLLERS;
  }

  private get stateFile(): string {
    return path.join(this.options.stateDir, STATE_FILE);
  }

  /** Starts every persisted controller; one that cannot start is listed as failed, the others run. */
  async restore(): Promise<{ started: string[]; failed: Array<{ id: string; error: string }> }> {
    let persisted: PersistedControllers;
    try {
      persisted = JSON.parse(readFileSync(this.stateFile, 'utf8')) as PersistedControllers;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { started: [], failed: [] };
      throw new VfiodError('INTERNAL', `cannot read ${this.stateFile}: ${errorMessage(error)}`);
    }
    const started: string[] = [];
    const failed: Array<{ id: string; error: string }> = [];
    for (const { id, createdAt, config } of persisted.controllers ?? []) {
      const entry: Entry = { id, config, createdAt, state: 'starting', error: '', worker: undefined, samples: [] };
      this.entries.set(id, entry);
      try {
        await this.start(entry);
        started.push(id);
      } catch (error) {
        failed.push({ id, error: entry.error || errorMessage(error) });
      }
    }
    if (this.entries.size > this.maxControllers) {
      // Lowering the limit must not take disks away from running VMs: all are restored, new ones are refused.
      this.logger.warn('more controllers defined than --max-controllers allows; CreateController is refused until some are deleted', {
        controllers: this.entries.size,
        limit: this.maxControllers,
      });
    }
    return { started, failed };
  }

  /** Validates the spec, starts the controller and persists it. Nothing remains when it cannot start. */
  async create(id: string, spec: ControllerSpecInput): Promise<ControllerView> {
    if (this.closed) throw new VfiodError('UNAVAILABLE', 'the daemon is shutting down');
    if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
      throw new VfiodError('INVALID_ARGUMENT', `controller id '${String(id ?? '')}' is invalid: 1-64 of letters, digits, '_', '.', '-', starting with a letter or digit`);
    }
    if (this.entries.has(id)) throw new VfiodError('ALREADY_EXISTS', `controller ${id} already exists`);
    const max = this.maxControllers;
    if (this.entries.size >= max) {
      throw new VfiodError(
        'RESOURCE_EXHAUSTED',
        `controller ${id}: the daemon already has ${this.entries.size} controllers, its limit (--max-controllers ${max}); delete one first`,
        { limit: max },
      );
    }
    const config = this.configFrom(id, spec ?? {});
    const sameSocket = [...this.entries.values()].find((e) => path.resolve(e.config.socketPath) === path.resolve(config.socketPath));
    if (sameSocket) throw new VfiodError('ALREADY_EXISTS', `controller ${id}: socket ${config.socketPath} is already used by controller ${sameSocket.id}`);
    this.checkSharedResources(id, config);
    // Only once the request is known to be good: nothing on disk changes for a refused one.
    mkdirSync(path.dirname(config.identityPath!), { recursive: true, mode: 0o700 });

    // Reserved before the first await, so concurrent creates of the same id or socket see it.
    const entry: Entry = { id, config, createdAt: new Date().toISOString(), state: 'starting', error: '', worker: undefined, samples: [] };
    this.entries.set(id, entry);
    try {
      const at = await socketPathState(config.socketPath);
      if (at === 'live') throw new VfiodError('ALREADY_EXISTS', `controller ${id}: socket ${config.socketPath} is in use: another process listens on it`);
      if (at === 'not-a-socket') throw new VfiodError('ALREADY_EXISTS', `controller ${id}: ${config.socketPath} exists and is not a socket`);
      try {
        await this.start(entry);
      } catch (error) {
        throw new VfiodError('FAILED_PRECONDITION', `controller ${id} failed to start: ${entry.error || errorMessage(error)}`);
      }
    } catch (error) {
      this.entries.delete(id);
      throw error;
    }
    try {
      this.persist();
    } catch (error) {
      // A controller that is not in controllers.json would silently not come back after a restart: undo it.
      this.entries.delete(id);
      entry.state = 'stopping';
      await entry.worker?.stop();
      throw new VfiodError('INTERNAL', `controller ${id}: cannot save ${this.stateFile}: ${errorMessage(error)}; the controller was stopped again`);
    }
    this.logger.info('controller created', { controller: id, socket: config.socketPath, namespaces: config.namespaces, doorbellMode: config.doorbellMode });
    return this.view(entry);
  }

  /** Stops one controller (flushing its namespaces) and forgets it; the others are not touched. */
  async delete(id: string): Promise<void> {
    const entry = this.entries.get(id);
    if (!entry) throw new VfiodError('NOT_FOUND', `no controller ${id}`);
    if (entry.state === 'stopping') throw new VfiodError('FAILED_PRECONDITION', `controller ${id} is already being deleted`);
    if (entry.state === 'starting') throw new VfiodError('FAILED_PRECONDITION', `controller ${id} is still starting: delete it once it is serving or failed`);
    entry.state = 'stopping';
    await entry.worker?.stop();
    this.entries.delete(id);
    this.persist();
    this.logger.info('controller deleted', { controller: id, socket: entry.config.socketPath });
  }

  async get(id: string): Promise<ControllerView> {
    const entry = this.entries.get(id);
    if (!entry) throw new VfiodError('NOT_FOUND', `no controller ${id}`);
    return this.view(entry);
  }

  /**
   * Whether a hypervisor is connected to the controller on `socketPath`: false when it is not serving, undefined when
   * no controller of this daemon serves that socket (or it does not answer). The attachment orchestrator's
   * vfioUserInUse: a VM whose VMM is gone and that nothing is connected for can be detached.
   */
  async clientConnected(socketPath: string): Promise<boolean | undefined> {
    const wanted = path.resolve(socketPath);
    const entry = [...this.entries.values()].find((e) => path.resolve(e.config.socketPath) === wanted);
    if (!entry) return undefined;
    if (entry.state !== 'serving' || !entry.worker) return false;
    return (await entry.worker.snapshot())?.clientConnected;
  }

  async list(): Promise<ControllerView[]> {
    return Promise.all([...this.entries.values()].sort((a, b) => a.id.localeCompare(b.id)).map((e) => this.view(e)));
  }

  /** Stops every controller (daemon shutdown). Definitions stay persisted: the next daemon start brings them back. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sampler);
    await Promise.all(
      [...this.entries.values()].map(async (entry) => {
        entry.state = 'stopping';
        await entry.worker?.stop();
      }),
    );
  }

  private async start(entry: Entry): Promise<void> {
    const worker = new ControllerWorker(entry.config, this.logger.child({ controller: entry.id }));
    entry.worker = worker;
    const timeoutMs = this.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    let hung = false;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        hung = true;
        reject(new Error(`not listening after ${timeoutMs} ms (a namespace backend that does not answer?); stopped`));
      }, timeoutMs);
    });
    try {
      await Promise.race([worker.ready, timedOut]);
    } catch (error) {
      entry.state = 'failed';
      entry.error = errorMessage(error);
      this.logger.error('controller failed to start', { controller: entry.id, socket: entry.config.socketPath, error: entry.error });
      await (hung ? worker.abort() : worker.stop());
      entry.worker = undefined;
      throw error;
    } finally {
      clearTimeout(timer);
    }
    entry.state = 'serving';
    void worker.exited.then((code) => {
      if (entry.state === 'serving') {
        entry.state = 'failed';
        entry.error = `controller worker exited unexpectedly (code ${code})`;
        this.logger.error('controller exited unexpectedly', { controller: entry.id, socket: entry.config.socketPath, code });
      }
    });
  }

  private configFrom(id: string, spec: ControllerSpecInput): ControllerConfig {
    const bad = (message: string): VfiodError => new VfiodError('INVALID_ARGUMENT', `controller ${id}: ${message}`);
    const socketPath = checkPath(spec.socketPath ?? '', 'socket path', bad);
    if (!socketPath) throw bad('spec.socket_path is required');
    if (Buffer.byteLength(socketPath) > 107) throw bad(`socket path '${socketPath}' is longer than 107 bytes (the unix socket limit)`);
    const namespaces = spec.namespaces ?? [];
    if (namespaces.length === 0) throw bad('at least one namespace URI is required (e.g. memory:1G or file:/var/lib/vfiod/disk.img?size=8G)');
    if (namespaces.length > 1024) throw bad(`${namespaces.length} namespaces is more than 1024`);
    namespaces.forEach((uri, index) => {
      let parsed;
      try {
        parsed = parseNamespaceUri(uri);
      } catch (error) {
        throw bad(`namespace ${index + 1}: ${errorMessage(error)}`);
      }
      // The daemon's working directory means nothing to a client: a relative file would land wherever it runs.
      if (parsed.scheme === 'file' && !/^file:(\/\/[^/]*)?\//.test(uri)) throw bad(`namespace ${index + 1}: '${uri}' must name an absolute path`);
    });
    const limit = (field: string, value: number | undefined, [min, max]: readonly [number, number]): number | undefined => {
      if (value === undefined || value === 0) return undefined;
      if (!Number.isInteger(value) || value < min || value > max) throw bad(`${field} must be from ${min} to ${max}, not ${value}`);
      return value;
    };
    let doorbellMode: DoorbellMode;
    switch (spec.doorbellMode ?? 'DOORBELL_MODE_UNSPECIFIED') {
      case 'DOORBELL_MODE_UNSPECIFIED':
      case 'DOORBELL_MODE_INTERRUPT':
        doorbellMode = 'interrupt';
        break;
      case 'DOORBELL_MODE_POLLED':
        doorbellMode = 'polled';
        break;
      default:
        throw bad(`doorbell_mode ${String(spec.doorbellMode)} is unknown`);
    }
    const socketMode = spec.socketMode ? spec.socketMode : undefined;
    if (socketMode !== undefined && (socketMode & ~0o777) !== 0) throw bad(`socket_mode 0${socketMode.toString(8)} is not a permission mode (0000-0777)`);
    // proto3 strings: '' = not given.
    const identity: ControllerConfig['identity'] = {};
    if (spec.identity?.serialNumber) identity.serialNumber = spec.identity.serialNumber;
    if (spec.identity?.modelNumber) identity.modelNumber = spec.identity.modelNumber;
    if (spec.identity?.firmwareRevision) identity.firmwareRevision = spec.identity.firmwareRevision;
    if (spec.identity?.subsystemNqn) identity.subsystemNqn = spec.identity.subsystemNqn;
    try {
      checkIdentityOverrides('identity', identity, {
        serialNumber: 'serial_number',
        modelNumber: 'model_number',
        firmwareRevision: 'firmware_revision',
        subsystemNqn: 'subsystem_nqn',
      });
    } catch (error) {
      throw bad(errorMessage(error));
    }
    const identityPath = checkPath(spec.identityPath ?? '', 'identity_path', bad) || path.join(this.options.stateDir, 'controllers', `${id}.identity.json`);
    // The daemon writes it as root: a .json name keeps it out of what shells, cron and systemd load as code or config.
    if (!identityPath.endsWith('.json')) throw bad(`identity_path '${identityPath}' must end in .json`);

    const msixVectors = limit('msix_vectors', spec.msixVectors, CONTROLLER_LIMITS.msixVectors);
    const maxIoQueuePairs = limit('max_io_queue_pairs', spec.maxIoQueuePairs, CONTROLLER_LIMITS.maxIoQueuePairs);
    const maxQueueEntries = limit('max_queue_entries', spec.maxQueueEntries, CONTROLLER_LIMITS.maxQueueEntries);
    // mdts 0 ("no limit") is also proto3's "not given": 0 keeps the default (8).
    const mdtsPages = limit('mdts_pages', spec.mdtsPages, [1, CONTROLLER_LIMITS.mdtsPages[1]]);
    return controllerConfig({
      socketPath,
      namespaces,
      doorbellMode,
      identityPath,
      identity,
      ...(socketMode !== undefined ? { socketMode } : {}),
      ...(msixVectors !== undefined ? { msixVectors } : {}),
      ...(maxIoQueuePairs !== undefined ? { maxIoQueuePairs } : {}),
      ...(maxQueueEntries !== undefined ? { maxQueueEntries } : {}),
      ...(mdtsPages !== undefined ? { mdtsPages } : {}),
    });
  }

  /**
   * What one controller must not share with another: a file or block device (two guests writing one disk corrupt
   * it), and the host's RAM (memory namespaces are committed as guests write; past the RAM the OOM killer ends the
   * daemon and every controller with it).
   */
  private checkSharedResources(id: string, config: ControllerConfig): void {
    const files = new Map<string, string>();
    for (const uri of config.namespaces) {
      const file = filePathOf(uri);
      if (!file) continue;
      if (files.has(file)) throw new VfiodError('INVALID_ARGUMENT', `controller ${id}: namespaces '${files.get(file)}' and '${uri}' are the same file ${file}`);
      files.set(file, uri);
    }
    let othersMemory = 0;
    for (const other of this.entries.values()) {
      if (other.state !== 'failed') othersMemory += memoryBytesOf(other.config.namespaces);
      for (const uri of other.config.namespaces) {
        const file = filePathOf(uri);
        if (file && files.has(file)) throw new VfiodError('ALREADY_EXISTS', `controller ${id}: ${file} is already a namespace of controller ${other.id}`);
      }
    }
    const memory = memoryBytesOf(config.namespaces);
    const limit = this.options.memoryLimitBytes ?? totalmem();
    if (memory > 0 && memory + othersMemory > limit) {
      throw new VfiodError(
        'FAILED_PRECONDITION',
        `controller ${id}: memory namespaces of ${formatSize(memory)}${othersMemory ? ` (plus ${formatSize(othersMemory)} of other controllers)` : ''} exceed the ${formatSize(limit)} of RAM they may use`,
      );
    }
  }

  private persist(): void {
    const data: PersistedControllers = {
      version: 1,
      controllers: [...this.entries.values()].map((e) => ({ id: e.id, createdAt: e.createdAt, config: e.config })),
    };
    mkdirSync(this.options.stateDir, { recursive: true, mode: 0o700 });
    // Write-then-rename: a crash leaves the old or the new file, never half of one.
    const tmp = `${this.stateFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n', { mode: 0o600 });
    renameSync(tmp, this.stateFile);
  }

  private async sample(): Promise<void> {
    for (const entry of this.entries.values()) {
      if (entry.state !== 'serving' || !entry.worker) continue;
      const snapshot = await entry.worker.snapshot();
      if (snapshot) this.record(entry, snapshot.stats);
    }
  }

  private record(entry: Entry, stats: NvmeControllerStats): void {
    entry.samples.push({ at: Date.now(), reads: stats.commands.read, writes: stats.commands.write, bytesRead: stats.bytesRead, bytesWritten: stats.bytesWritten });
    if (entry.samples.length > 2) entry.samples.shift();
  }

  private async view(entry: Entry): Promise<ControllerView> {
    const snapshot = entry.state === 'serving' && entry.worker ? await entry.worker.snapshot() : null;
    const [a, b] = entry.samples;
    const seconds = a && b ? (b.at - a.at) / 1000 : 0;
    const rate = (x: number, y: number): number => (seconds > 0 ? Math.max(0, (y - x) / seconds) : 0);
    return {
      id: entry.id,
      config: entry.config,
      createdAt: entry.createdAt,
      state: entry.state,
      error: entry.error,
      snapshot,
      rates: {
        readIops: a && b ? rate(a.reads, b.reads) : 0,
        writeIops: a && b ? rate(a.writes, b.writes) : 0,
        readBytesPerSecond: a && b ? rate(a.bytesRead, b.bytesRead) : 0,
        writeBytesPerSecond: a && b ? rate(a.bytesWritten, b.bytesWritten) : 0,
      },
    };
  }
}

/** Upper bound (us) of the histogram bucket holding the `fraction` percentile; 0 without samples. */
export function percentileMicros(buckets: readonly number[], fraction: number): number {
  const total = buckets.reduce((sum, n) => sum + n, 0);
  if (total === 0) return 0;
  let seen = 0;
  for (let i = 0; i < Math.min(buckets.length, LATENCY_BUCKETS); i++) {
    seen += buckets[i]!;
    if (seen >= total * fraction) return 2 ** (i + 1);
  }
  return 2 ** LATENCY_BUCKETS;
}

/** An absolute, normalised path without control characters ('' when not given). */
function checkPath(value: string, field: string, bad: (message: string) => VfiodError): string {
  if (value === '') return '';
  if (/[\x00-\x1f\x7f]/.test(value)) throw bad(`${field} ${JSON.stringify(value)} contains control characters`);
  if (!path.isAbsolute(value)) throw bad(`${field} '${value}' must be absolute`);
  if (path.normalize(value) !== value || value.endsWith('/')) throw bad(`${field} '${value}' must be normalised (no '.', '..', '//' or trailing '/'): ${path.normalize(value).replace(/\/$/, '')}`);
  return value;
}

/** The file (symlinks resolved when it exists) behind a file: namespace URI; undefined for other schemes. */
function filePathOf(uri: string): string | undefined {
  const spec = parseNamespaceUri(uri);
  if (spec.scheme !== 'file') return undefined;
  const file = (spec as FileNamespaceSpec).path;
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

function memoryBytesOf(uris: readonly string[]): number {
  let total = 0;
  for (const uri of uris) {
    const spec = parseNamespaceUri(uri);
    if (spec.scheme === 'memory') total += (spec as MemoryNamespaceSpec).sizeBytes;
  }
  return total;
}
