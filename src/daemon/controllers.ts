/**
 * Emulated NVMe controllers of the daemon: one ControllerWorker (src/serve) per controller, so each keeps serving
 * whatever happens to API clients or to the other controllers. Definitions persist in <state dir>/controllers.json
 * and are started again when the daemon restarts; identity defaults to <state dir>/controllers/<id>.identity.json so
 * a guest sees the same controller across restarts. Stats are sampled periodically to report rates.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseNamespaceUri } from '../namespace/uri.js';
import { LATENCY_BUCKETS, type NvmeControllerStats } from '../nvme/stats.js';
import { type ControllerConfig, controllerConfig, type DoorbellMode } from '../serve/config.js';
import { ControllerWorker } from '../serve/supervisor.js';
import type { ControllerSnapshot } from '../serve/worker.js';
import { errorMessage, VfiodError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { socketPathState } from './socket-path.js';

export type ControllerRunState = 'starting' | 'serving' | 'stopping' | 'failed';

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const STATE_FILE = 'controllers.json';

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
    return { started, failed };
  }

  /** Validates the spec, starts the controller and persists it. Nothing remains when it cannot start. */
  async create(id: string, spec: ControllerSpecInput): Promise<ControllerView> {
    if (this.closed) throw new VfiodError('UNAVAILABLE', 'the daemon is shutting down');
    if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
      throw new VfiodError('INVALID_ARGUMENT', `controller id '${String(id ?? '')}' is invalid: 1-64 of letters, digits, '_', '.', '-', starting with a letter or digit`);
    }
    if (this.entries.has(id)) throw new VfiodError('ALREADY_EXISTS', `controller ${id} already exists`);
    const config = this.configFrom(id, spec ?? {});
    const sameSocket = [...this.entries.values()].find((e) => path.resolve(e.config.socketPath) === path.resolve(config.socketPath));
    if (sameSocket) throw new VfiodError('ALREADY_EXISTS', `controller ${id}: socket ${config.socketPath} is already used by controller ${sameSocket.id}`);

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
    this.persist();
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
    try {
      await worker.ready;
    } catch (error) {
      entry.state = 'failed';
      entry.error = errorMessage(error);
      this.logger.error('controller failed to start', { controller: entry.id, socket: entry.config.socketPath, error: entry.error });
      await worker.stop();
      entry.worker = undefined;
      throw error;
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
    const socketPath = spec.socketPath ?? '';
    if (!socketPath) throw bad('spec.socket_path is required');
    if (!path.isAbsolute(socketPath)) throw bad(`socket path '${socketPath}' must be absolute`);
    if (Buffer.byteLength(socketPath) > 107) throw bad(`socket path '${socketPath}' is longer than 107 bytes (the unix socket limit)`);
    const namespaces = spec.namespaces ?? [];
    if (namespaces.length === 0) throw bad('at least one namespace URI is required (e.g. memory:1G or file:/var/lib/vfiod/disk.img?size=8G)');
    if (namespaces.length > 1024) throw bad(`${namespaces.length} namespaces is more than 1024`);
    namespaces.forEach((uri, index) => {
      try {
        parseNamespaceUri(uri);
      } catch (error) {
        throw bad(`namespace ${index + 1}: ${errorMessage(error)}`);
      }
    });
    const limit = (field: string, value: number | undefined, min: number, max: number): number | undefined => {
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
    const identity: ControllerConfig['identity'] = {};
    const text = (field: string, value: string | undefined, max: number): string | undefined => {
      if (!value) return undefined;
      if (value.length > max || !/^[\x20-\x7e]+$/.test(value)) throw bad(`identity.${field} must be 1-${max} printable ASCII characters, not '${value}'`);
      return value;
    };
    const serial = text('serial_number', spec.identity?.serialNumber, 20);
    const model = text('model_number', spec.identity?.modelNumber, 40);
    const firmware = text('firmware_revision', spec.identity?.firmwareRevision, 8);
    const nqn = spec.identity?.subsystemNqn;
    if (nqn && (Buffer.byteLength(nqn) > 223 || !nqn.startsWith('nqn.'))) throw bad(`identity.subsystem_nqn '${nqn}' must start with 'nqn.' and fit 223 bytes`);
    if (serial) identity.serialNumber = serial;
    if (model) identity.modelNumber = model;
    if (firmware) identity.firmwareRevision = firmware;
    if (nqn) identity.subsystemNqn = nqn;
    const identityPath = spec.identityPath || path.join(this.options.stateDir, 'controllers', `${id}.identity.json`);
    if (!path.isAbsolute(identityPath)) throw bad(`identity_path '${identityPath}' must be absolute`);
    mkdirSync(path.dirname(identityPath), { recursive: true, mode: 0o700 });

    const msixVectors = limit('msix_vectors', spec.msixVectors, 1, 2048);
    const maxIoQueuePairs = limit('max_io_queue_pairs', spec.maxIoQueuePairs, 1, 511);
    const maxQueueEntries = limit('max_queue_entries', spec.maxQueueEntries, 2, 65536);
    // mdts 0 is a valid value but also proto3's "not given": 0 keeps the default (8).
    const mdtsPages = limit('mdts_pages', spec.mdtsPages, 1, 15);
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
