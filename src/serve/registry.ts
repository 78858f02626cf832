/**
 * The registry of emulated NVMe controllers a long-running vfiod (the daemon) serves: one ControllerWorker per
 * controller, so each keeps serving whatever happens to API clients or to the other controllers. Definitions
 * persist in <state dir>/controllers.json and are started again when the daemon restarts; identity defaults to
 * <state dir>/controllers/<id>.identity.json so a guest sees the same controller across restarts. Stats are sampled
 * periodically to report rates.
 */
import { readFileSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import path from 'node:path';
import { BackingRefused, inspectBacking, isWithin, resolvedPath } from '../namespace/backing.js';
import { type FileNamespaceSpec, type MemoryNamespaceSpec, parseNamespaceUri, resizedNamespaceUri } from '../namespace/uri.js';
import { LATENCY_BUCKETS, type NvmeControllerStats } from '../nvme/stats.js';
import type { ControllerSample } from '../metrics/exporter.js';
import { ERROR_REASONS, type Reason } from '../util/error-reasons.js';
import { errorMessage, VfiodError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { formatSize } from '../util/size.js';
import { sameSocketFile, socketPathState } from '../util/socket-path.js';
import { CONTROLLER_LIMITS, type ControllerConfig, controllerConfig, type DoorbellMode, identityOptionsOf, namespaceNsids, namespaceSlots } from './config.js';
import { BackingSwapFailed, type NamespaceChange } from './controller.js';
import type { MoveOutcome, MoveProgress } from '../namespace/backing-swap.js';
import { MAX_NSID } from '../nvme/namespaces.js';
import { type ControllerIoLimits, hasIoLimits, IO_LIMIT_MAX, type IoLimits, ioLimitsProblem } from '../nvme/io-limits.js';
import {
  checkIdentityConflicts,
  checkIdentityFileWritable,
  checkIdentityOverrides,
  checkNamespaceOverrides,
  IdentityConflict,
  IdentityFileRefused,
  type NamespaceIdentityOverride,
} from './identity-store.js';
import { ControllerWorker } from './supervisor.js';
import type { ControllerSnapshot } from './worker.js';
import { makeDirectory } from '../util/make-directory.js';

/** How the proto names the identity fields, for messages. */
const PROTO_IDENTITY_NAMES = {
  serialNumber: 'serial_number',
  modelNumber: 'model_number',
  firmwareRevision: 'firmware_revision',
  subsystemNqn: 'subsystem_nqn',
  ieeeOui: 'ieee_oui',
  controllerId: 'controller_id',
};
const PROTO_NAMESPACE_IDENTITY_NAMES = { nsid: 'nsid', nguid: 'nguid', eui64: 'eui64', uuid: 'uuid', blockSize: 'block_size' };

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
  identity?: { serialNumber?: string; modelNumber?: string; firmwareRevision?: string; subsystemNqn?: string; ieeeOui?: number; controllerId?: number } | null;
  namespaceIdentities?: NamespaceIdentityInput[];
  namespaceNsids?: number[];
  limits?: ControllerLimitsInput | null;
}

/** One scope's limits as the control API carries them (IoLimits: 0 = unlimited). */
export interface IoLimitsInput {
  iops?: number;
  bytesPerSecond?: number;
  burstIos?: number;
  burstBytes?: number;
}

/** ControllerLimits as the control API carries them. */
export interface ControllerLimitsInput {
  controller?: IoLimitsInput | null;
  namespaces?: Array<{ nsid?: number; limits?: IoLimitsInput | null }>;
}

/** A NamespaceIdentity of the control API (proto3: '' and 0 = not given). */
export interface NamespaceIdentityInput {
  nsid?: number;
  nguid?: string;
  eui64?: string;
  uuid?: string;
  blockSize?: number;
}

/** What `input` asks for namespace `nsid`, without the fields it leaves out. */
function namespaceOverrideOf(input: NamespaceIdentityInput, nsid: number): NamespaceIdentityOverride {
  return {
    nsid,
    ...(input.nguid ? { nguid: input.nguid } : {}),
    ...(input.eui64 ? { eui64: input.eui64 } : {}),
    ...(input.uuid ? { uuid: input.uuid } : {}),
    ...(input.blockSize ? { blockSize: input.blockSize } : {}),
  };
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
  /**
   * At the last snapshot the sampler took: the worker's pass counter (read just before it) and whether I/O was in
   * flight. Neither moving means the counters are the same, and the idle worker is left asleep.
   */
  sampledActivity?: number;
  sampledInFlight?: boolean;
  /** What its file namespaces are, as keys (backingKeys) to the URI: the same disk has a common key. */
  backings: Map<string, string>;
  /** Namespace changes run one at a time per controller: each starts from the configuration the last one saved. */
  namespaceChanges?: Promise<unknown>;
  /** The namespace moving to another backing (one at a time; other namespace changes wait for its end). */
  swapping?: { nsid: number; uri: string };
}

/** A checked SwapNamespaceBacking request: `run` moves the namespace (the operation's work). */
export interface PlannedSwap {
  controllerId: string;
  nsid: number;
  /** The new backing's URI as it will be saved (a file: URI gets the namespace's size). */
  uri: string;
  run(onProgress: (progress: MoveProgress) => void): Promise<{ view: ControllerView; outcome: MoveOutcome }>;
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

/** What a namespace change does: the worker's part, and the controller's definition and disks afterwards. */
interface PlannedChange {
  change: NamespaceChange;
  config: ControllerConfig;
  backings: Map<string, string>;
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
  /**
   * The directories file namespaces (and identity files) of controllers must be in, symlinks resolved; each must
   * exist. Default: <state dir>/namespaces (created).
   */
  namespaceDirs?: string[];
  /**
   * Crash recovery (`vfiod daemon --crash-recovery`, docs/restart.md): the holder's socket. Every controller keeps
   * its fds with the holder and checkpoints; a controller the holder kept state for recovers from it. `memory:`
   * namespaces are refused then (their data would die with the process).
   */
  holderSocket?: string;
}

export class ControllerRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly logger: Logger;
  readonly sampleIntervalMs: number;
  private readonly sampler: NodeJS.Timeout;
  private closed = false;

  /** The namespace directories as configured, and with symlinks resolved. */
  readonly namespaceDirs: readonly string[];
  private readonly realNamespaceDirs: readonly string[];

  constructor(private readonly options: ControllerRegistryOptions) {
    this.logger = options.logger.child({ component: 'controllers' });
    if (options.namespaceDirs === undefined) {
      const dir = path.join(options.stateDir, 'namespaces');
      makeDirectory(dir, 0o700);
      this.namespaceDirs = [dir];
    } else {
      this.namespaceDirs = options.namespaceDirs.map((dir) => {
        if (!path.isAbsolute(dir)) throw new VfiodError('INVALID_ARGUMENT', `namespace directory '${dir}' must be an absolute path`, { reason: 'DAEMON_OPTION_INVALID', option: '--namespace-dir' });
        let isDir = false;
        try {
          isDir = statSync(dir).isDirectory();
        } catch (error) {
          throw new VfiodError('INVALID_ARGUMENT', `namespace directory ${dir}: ${errorMessage(error)}`, { reason: 'DAEMON_OPTION_INVALID', option: '--namespace-dir' });
        }
        if (!isDir) throw new VfiodError('INVALID_ARGUMENT', `namespace directory ${dir} is not a directory`, { reason: 'DAEMON_OPTION_INVALID', option: '--namespace-dir' });
        return path.normalize(dir).replace(/(.)\/$/, '$1');
      });
    }
    this.realNamespaceDirs = this.namespaceDirs.map((dir) => realpathSync(dir));
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
      throw new VfiodError('INTERNAL', `cannot read ${this.stateFile}: ${errorMessage(error)}`, { reason: 'STATE_FILE_UNREADABLE', path: this.stateFile });
    }
    const started: string[] = [];
    const failed: Array<{ id: string; error: string }> = [];
    for (const { id, createdAt, config } of persisted.controllers ?? []) {
      const entry: Entry = { id, config, createdAt, state: 'starting', error: '', worker: undefined, samples: [], backings: new Map() };
      this.entries.set(id, entry);
      try {
        // The rules hold for definitions written before them, or by hand, too.
        try {
          // A disk outside the namespace directories (created before they existed, or before the option changed) is
          // a warning here: refusing it would take a running VM's disk away on a daemon upgrade.
          entry.backings = this.namespaceBackings(id, config.namespaces, (message) =>
            this.logger.warn('persisted controller has a namespace outside the namespace directories', { controller: id, detail: message }),
          );
          this.checkNotShared(id, entry.backings);
          if (config.identityPath !== undefined) this.checkIdentityPath(id, config.identityPath);
        } catch (error) {
          entry.state = 'failed';
          entry.error = errorMessage(error);
          this.logger.error('controller refused', { controller: id, error: entry.error });
          throw error;
        }
        await this.start(entry);
        await this.adoptServedNamespaces(entry);
        recordInodes(entry);
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
    if (this.closed) throw new VfiodError('UNAVAILABLE', 'the daemon is shutting down', { reason: 'DAEMON_SHUTTING_DOWN' });
    if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
      throw new VfiodError('INVALID_ARGUMENT', `controller id '${String(id ?? '')}' is invalid: 1-64 of letters, digits, '_', '.', '-', starting with a letter or digit`, {
        reason: 'CONTROLLER_ID_INVALID',
        controllerId: String(id ?? ''),
      });
    }
    if (this.entries.has(id)) throw new VfiodError('ALREADY_EXISTS', `controller ${id} already exists`, { reason: 'CONTROLLER_EXISTS', controllerId: id });
    const max = this.maxControllers;
    if (this.entries.size >= max) {
      throw new VfiodError(
        'RESOURCE_EXHAUSTED',
        `controller ${id}: the daemon already has ${this.entries.size} controllers, its limit (--max-controllers ${max}); delete one first`,
        { reason: 'CONTROLLER_LIMIT_REACHED', controllerId: id, count: this.entries.size, limit: max },
      );
    }
    const config = this.configFrom(id, spec ?? {});
    const sameSocket = [...this.entries.values()].find((e) => sameSocketFile(e.config.socketPath, config.socketPath));
    if (sameSocket) {
      throw new VfiodError('ALREADY_EXISTS', `controller ${id}: socket ${config.socketPath} is already used by controller ${sameSocket.id} (${sameSocket.config.socketPath})`, {
        reason: 'SOCKET_IN_USE',
        controllerId: id,
        socketPath: config.socketPath,
        otherController: sameSocket.id,
      });
    }
    const backings = this.checkSharedResources(id, config);
    // Only once the request is known to be good: nothing on disk changes for a refused one.
    makeDirectory(path.dirname(config.identityPath!), 0o700);

    // Reserved before the first await, so concurrent creates of the same id, socket or disk see it.
    const entry: Entry = { id, config, createdAt: new Date().toISOString(), state: 'starting', error: '', worker: undefined, samples: [], backings };
    this.entries.set(id, entry);
    try {
      const at = await socketPathState(config.socketPath);
      const socketFacts = { controllerId: id, socketPath: config.socketPath };
      if (at === 'live') throw new VfiodError('ALREADY_EXISTS', `controller ${id}: socket ${config.socketPath} is in use: another process listens on it`, { reason: 'SOCKET_IN_USE', ...socketFacts });
      if (at === 'not-a-socket') throw new VfiodError('ALREADY_EXISTS', `controller ${id}: ${config.socketPath} exists and is not a socket`, { reason: 'SOCKET_PATH_NOT_A_SOCKET', ...socketFacts });
      try {
        await this.start(entry);
      } catch (error) {
        throw new VfiodError('FAILED_PRECONDITION', `controller ${id} failed to start: ${entry.error || errorMessage(error)}`, { reason: 'CONTROLLER_START_FAILED', ...socketFacts });
      }
      // Files the controller created have an inode now.
      recordInodes(entry);
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
      throw new VfiodError('INTERNAL', `controller ${id}: cannot save ${this.stateFile}: ${errorMessage(error)}; the controller was stopped again`, {
        reason: 'CONTROLLER_SAVE_FAILED',
        controllerId: id,
        path: this.stateFile,
      });
    }
    this.logger.info('controller created', { controller: id, socket: config.socketPath, namespaces: config.namespaces, doorbellMode: config.doorbellMode });
    return this.view(entry);
  }

  /** Stops one controller (flushing its namespaces) and forgets it; the others are not touched. */
  async delete(id: string): Promise<void> {
    const entry = this.entries.get(id);
    if (!entry) throw new VfiodError('NOT_FOUND', `no controller ${id}`, { reason: 'CONTROLLER_NOT_FOUND', controllerId: id });
    if (entry.state === 'stopping') throw new VfiodError('FAILED_PRECONDITION', `controller ${id} is already being deleted`, { reason: 'CONTROLLER_BEING_DELETED', controllerId: id });
    if (entry.state === 'starting') throw new VfiodError('FAILED_PRECONDITION', `controller ${id} is still starting: delete it once it is serving or failed`, { reason: 'CONTROLLER_STARTING', controllerId: id });
    entry.state = 'stopping';
    await entry.worker?.stop();
    this.entries.delete(id);
    this.persist();
    this.logger.info('controller deleted', { controller: id, socket: entry.config.socketPath });
  }

  // ---- namespaces of a running controller ---------------------------------------------------------------------

  /**
   * Attaches namespace `uri` to the running controller `id` as NSID `nsid` (0: the lowest free one) and saves the
   * definition; the guest is told (docs/daemon.md "Namespaces of a running controller"). The URI passes the checks of
   * CreateController (namespace directories, disks of other controllers, the RAM budget); `identity` (its nsid field
   * ignored) is what the guest sees of it, as CreateController's namespace_identities.
   */
  async attachNamespace(id: string, nsid: number, uri: string, identity?: NamespaceIdentityInput | null): Promise<{ view: ControllerView; nsid: number }> {
    let attached = 0;
    const view = await this.changeNamespaces(id, (entry) => {
      const current = namespaceNsids(entry.config);
      if (!Number.isInteger(nsid) || nsid < 0 || nsid > MAX_NSID) {
        throw new VfiodError('INVALID_ARGUMENT', `controller ${id}: NSID ${nsid} must be from 1 to ${MAX_NSID} (0: the lowest free one)`, {
          reason: 'FIELD_OUT_OF_RANGE',
          field: 'nsid',
          value: nsid,
          min: 0,
          max: MAX_NSID,
        });
      }
      const chosen = nsid !== 0 ? nsid : lowestFreeNsid(current);
      if (chosen === undefined) {
        throw new VfiodError('RESOURCE_EXHAUSTED', `controller ${id} has every NSID up to ${MAX_NSID}`, { reason: 'NAMESPACE_LIMIT_REACHED', controllerId: id, limit: MAX_NSID });
      }
      if (current.includes(chosen)) {
        throw new VfiodError('ALREADY_EXISTS', `controller ${id} already has namespace ${chosen}`, { reason: 'NAMESPACE_ID_IN_USE', controllerId: id, nsid: chosen });
      }
      if (typeof uri !== 'string' || uri === '') throw new VfiodError('INVALID_ARGUMENT', `controller ${id}: a namespace URI is required`, { reason: 'FIELD_REQUIRED', field: 'uri' });
      this.checkNamespaceUri(id, uri, chosen);
      // The identity names its own NSID only to confirm it: one that differs is a mistake, not something to rewrite.
      if (identity?.nsid && identity.nsid !== chosen) {
        throw new VfiodError('INVALID_ARGUMENT', `controller ${id}: the identity is for namespace ${identity.nsid}, but the namespace is attached as ${chosen}`, {
          reason: 'NAMESPACE_IDENTITY_INVALID',
          controllerId: id,
          nsid: chosen,
          field: 'identity.nsid',
        });
      }
      const asked = identity ? namespaceOverrideOf(identity, chosen) : undefined;
      const askedAny = asked !== undefined && Object.keys(asked).length > 1;
      if (askedAny) {
        try {
          checkNamespaceOverrides('identity', [asked], [chosen], PROTO_NAMESPACE_IDENTITY_NAMES);
        } catch (error) {
          throw new VfiodError('INVALID_ARGUMENT', `controller ${id}: namespace ${chosen}: ${errorMessage(error)}`, {
            reason: 'NAMESPACE_IDENTITY_INVALID',
            controllerId: id,
            nsid: chosen,
            field: 'identity',
          });
        }
      }
      const slots = [...current.map((n, index) => ({ nsid: n, uri: entry.config.namespaces[index]! })), { nsid: chosen, uri }].sort((a, b) => a.nsid - b.nsid);
      const configured = entry.config.namespaceIdentities ?? [];
      const config: ControllerConfig = {
        ...entry.config,
        namespaces: slots.map((slot) => slot.uri),
        nsids: slots.map((slot) => slot.nsid),
        ...(askedAny ? { namespaceIdentities: [...configured.filter((override) => override.nsid !== chosen), asked] } : {}),
      };
      // Ids that another slot has, or a block size the URI contradicts, are refused before the guest sees anything.
      try {
        checkIdentityConflicts(config.identityPath, identityOptionsOf(config));
      } catch (error) {
        if (error instanceof IdentityConflict) {
          throw new VfiodError('FAILED_PRECONDITION', `controller ${id}: namespace ${chosen}: ${error.message}`, { reason: error.reason, controllerId: id, nsid: chosen });
        }
        throw error;
      }
      const backings = this.checkSharedResources(id, config);
      attached = chosen;
      return { change: { kind: 'attach', nsid: chosen, uri, ...(askedAny ? { identity: asked } : {}) }, config, backings };
    });
    return { view, nsid: attached };
  }

  /**
   * Detaches namespace `nsid` of the running controller `id` and saves the definition. Commands the guest already
   * started on it complete; new ones fail with Invalid Namespace or Format. Resolves once the namespace is closed.
   */
  detachNamespace(id: string, nsid: number): Promise<ControllerView> {
    return this.changeNamespaces(id, (entry) => {
      const index = this.namespaceIndex(entry, nsid);
      if (entry.config.namespaces.length === 1) {
        throw new VfiodError('FAILED_PRECONDITION', `controller ${id}: namespace ${nsid} is its only namespace; delete the controller instead`, { reason: 'NAMESPACE_LAST', controllerId: id, nsid });
      }
      const keep = (_: unknown, i: number): boolean => i !== index;
      const config: ControllerConfig = { ...entry.config, namespaces: entry.config.namespaces.filter(keep), nsids: namespaceNsids(entry.config).filter(keep) };
      // Its rate limits go with it (the NVMe controller drops them when it detaches the namespace): a namespace
      // attached later as the same NSID starts unlimited.
      const ioLimits = withoutNamespaceLimits(entry.config.ioLimits, nsid);
      if (ioLimits) config.ioLimits = ioLimits;
      else delete config.ioLimits;
      return { change: { kind: 'detach', nsid }, config, backings: this.namespaceBackings(id, config.namespaces, () => undefined) };
    });
  }

  /**
   * Grows namespace `nsid` of the running controller `id` to `sizeBytes` and saves the definition. Shrinking is
   * refused (the guest's data there would be lost); the same size changes nothing.
   */
  resizeNamespace(id: string, nsid: number, sizeBytes: number): Promise<ControllerView> {
    return this.changeNamespaces(id, async (entry) => {
      const index = this.namespaceIndex(entry, nsid);
      const uri = entry.config.namespaces[index]!;
      const running = (await entry.worker!.snapshot())?.namespaces.find((namespace) => namespace.nsid === nsid);
      if (!running) throw new VfiodError('FAILED_PRECONDITION', `controller ${id} does not answer`, { reason: 'CONTROLLER_NOT_SERVING', controllerId: id, controllerState: entry.state });
      const currentBytes = running.blocks * running.blockSize;
      const facts = { controllerId: id, nsid, sizeBytes, currentBytes };
      if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % running.blockSize !== 0) {
        throw new VfiodError('INVALID_ARGUMENT', `controller ${id}: namespace ${nsid}: size ${sizeBytes} must be a positive multiple of its block size ${running.blockSize}`, {
          reason: 'FIELD_INVALID',
          field: 'size_bytes',
        });
      }
      if (sizeBytes < currentBytes) {
        throw new VfiodError('FAILED_PRECONDITION', `controller ${id}: namespace ${nsid} has ${formatSize(currentBytes)}; shrinking it to ${formatSize(sizeBytes)} is refused (the guest's data there would be lost)`, {
          reason: 'NAMESPACE_SHRINK_REFUSED',
          ...facts,
        });
      }
      if (sizeBytes === currentBytes) return undefined;
      const spec = parseNamespaceUri(uri);
      const unsupported = (why: string): VfiodError =>
        new VfiodError('FAILED_PRECONDITION', `controller ${id}: namespace ${nsid} (${uri}) cannot be resized: ${why}`, { reason: 'NAMESPACE_RESIZE_UNSUPPORTED', controllerId: id, nsid, uri });
      if (spec.scheme === 'file' && (spec as FileNamespaceSpec).readOnly) throw unsupported('it is read-only');
      if (spec.scheme === 'file' && backingKind((spec as FileNamespaceSpec).path) === 'block') throw unsupported('a block device has the size of the device');
      let resized: string;
      try {
        resized = resizedNamespaceUri(uri, sizeBytes);
      } catch {
        throw unsupported('its size is its backend\'s');
      }
      const config = { ...entry.config, namespaces: entry.config.namespaces.map((u, i) => (i === index ? resized : u)) };
      this.checkSharedResources(id, config);
      return { change: { kind: 'resize', nsid, sizeBytes }, config, backings: entry.backings };
    });
  }

  /**
   * Checks a request to move namespace `nsid` of controller `id` to the backing `uri` (docs/daemon.md "Moving a
   * namespace to another backing"), as AttachNamespace checks a URI; throws VfiodError for what is wrong with it.
   * The returned plan's `run` copies (unless `copy` is false: the new backing holds the data already), switches
   * while the namespace's commands wait, and saves the new URI in the definition before they go on.
   */
  async planSwap(id: string, nsid: number, uri: string, copy: boolean): Promise<PlannedSwap> {
    const entry = this.entries.get(id);
    if (!entry) throw new VfiodError('NOT_FOUND', `no controller ${id}`, { reason: 'CONTROLLER_NOT_FOUND', controllerId: id });
    if (this.closed) throw new VfiodError('UNAVAILABLE', 'the daemon is shutting down', { reason: 'DAEMON_SHUTTING_DOWN' });
    if (entry.state !== 'serving' || !entry.worker) {
      throw new VfiodError('FAILED_PRECONDITION', `controller ${id} is ${entry.state}: its namespaces move only while it serves`, {
        reason: 'CONTROLLER_NOT_SERVING',
        controllerId: id,
        controllerState: entry.state,
      });
    }
    if (entry.swapping) throw swapRunning(id, entry.swapping);
    const index = this.namespaceIndex(entry, nsid);
    if (typeof uri !== 'string' || uri === '') throw new VfiodError('INVALID_ARGUMENT', `controller ${id}: the new backing's URI is required`, { reason: 'FIELD_REQUIRED', field: 'uri' });
    this.checkNamespaceUri(id, uri, nsid);
    const running = (await entry.worker.snapshot())?.namespaces.find((namespace) => namespace.nsid === nsid);
    if (!running) throw new VfiodError('FAILED_PRECONDITION', `controller ${id} does not answer`, { reason: 'CONTROLLER_NOT_SERVING', controllerId: id, controllerState: entry.state });
    const namespaceBytes = running.blocks * running.blockSize;
    const sized = withNamespaceSize(uri, namespaceBytes);
    const current = entry.config.namespaces[index]!;
    const facts = { controllerId: id, nsid, uri: sized };
    const given = parseNamespaceUri(sized);
    if (given.scheme === 'file' && (given as FileNamespaceSpec).sizeBytes! < namespaceBytes) {
      throw new VfiodError('FAILED_PRECONDITION', `controller ${id}: namespace ${nsid} has ${formatSize(namespaceBytes)}; ${sized} asks for ${formatSize((given as FileNamespaceSpec).sizeBytes!)}: the new backing must be at least as large`, {
        reason: 'SWAP_BACKING_TOO_SMALL',
        ...facts,
      });
    }
    const keys = (u: string): string[] => [u, ...this.namespaceBackings(id, [u], () => undefined).keys()];
    const currentKeys = new Set(keys(current));
    if (keys(sized).some((key) => currentKeys.has(key))) {
      throw new VfiodError('INVALID_ARGUMENT', `controller ${id}: namespace ${nsid} is on ${current} already`, { reason: 'SWAP_SAME_BACKING', ...facts });
    }
    const replaced = (config: ControllerConfig): ControllerConfig => ({ ...config, namespaces: config.namespaces.map((u, i) => (i === index ? sized : u)) });
    this.checkSharedResources(id, replaced(entry.config));
    // Reserved before the call answers (and checked again: another request may have reserved it meanwhile).
    if (entry.swapping) throw swapRunning(id, entry.swapping);
    entry.swapping = { nsid, uri: sized };
    const run = async (onProgress: (progress: MoveProgress) => void): Promise<{ view: ControllerView; outcome: MoveOutcome }> => {
      try {
        // A namespace change already under way saves its definition first; the commit below starts from it.
        await entry.namespaceChanges;
        const worker = entry.worker;
        if (entry.state !== 'serving' || !worker) throw new BackingSwapFailed('SWAP_INTERRUPTED', `the controller is ${entry.state}`);
        const outcome = await worker.swapBacking(
          { nsid, uri: sized, copy },
          {
            onProgress,
            commit: async () => {
              // Saved before the guest's commands go on: a restart from here on opens the new backing.
              const before = { config: entry.config, backings: entry.backings };
              entry.config = replaced(entry.config);
              entry.backings = this.namespaceBackings(id, entry.config.namespaces, () => undefined);
              try {
                this.persist();
              } catch (error) {
                Object.assign(entry, before);
                throw new Error(`cannot save ${this.stateFile}: ${errorMessage(error)}; the namespace stays on ${current}`);
              }
              recordInodes(entry);
              this.logger.info('namespace backing switched and saved', { controller: id, nsid, from: current, to: sized });
            },
          },
        );
        return { view: await this.view(entry), outcome };
      } catch (error) {
        if (!(error instanceof BackingSwapFailed)) throw error;
        const details = error.reason === 'CONTROLLER_SAVE_FAILED' ? { controllerId: id, path: this.stateFile } : facts;
        throw new VfiodError(ERROR_REASONS[error.reason].codes[0]!, `controller ${id}: ${error.message}`, { reason: error.reason, ...details });
      } finally {
        entry.swapping = undefined;
      }
    };
    return { controllerId: id, nsid, uri: sized, run };
  }

  /**
   * Replaces the I/O rate limits of the serving controller `id` (the whole set) and saves them with its definition.
   * Runs after the namespace changes before it, so the NSIDs it names are checked against the namespaces as they
   * will be. Nothing changes when the request is refused.
   */
  setLimits(id: string, input: ControllerLimitsInput | undefined): Promise<ControllerView> {
    return this.serially(id, async (entry) => {
      const ioLimits = ioLimitsFrom(id, input, namespaceNsids(entry.config), 'limits');
      try {
        await entry.worker!.request({ type: 'limits', limits: ioLimits ?? {} });
      } catch (error) {
        throw new VfiodError('FAILED_PRECONDITION', `controller ${id}: the rate limits were not changed: ${errorMessage(error)}`, { reason: 'IO_LIMITS_CHANGE_FAILED', controllerId: id });
      }
      const config: ControllerConfig = { ...entry.config };
      if (ioLimits) config.ioLimits = ioLimits;
      else delete config.ioLimits;
      entry.config = config;
      this.save(entry, 'the rate limits are set');
      this.logger.info('controller rate limits set', { controller: id, limits: ioLimits ?? 'none' });
      return this.view(entry);
    });
  }

  /**
   * A controller recovered from a crash checkpoint serves the namespaces the guest knows, which differ from its saved
   * definition when the data plane died between a namespace change and saving it: the definition follows.
   */
  private async adoptServedNamespaces(entry: Entry): Promise<void> {
    const served = (await entry.worker?.snapshot())?.namespaces;
    if (!served) return;
    const nsids = served.map((namespace) => namespace.nsid);
    const uris = served.map((namespace) => namespace.uri);
    if (nsids.join() === namespaceNsids(entry.config).join() && uris.join('\n') === entry.config.namespaces.join('\n')) return;
    const saved = entry.config.namespaces;
    entry.config = { ...entry.config, namespaces: uris, nsids };
    entry.backings = this.namespaceBackings(entry.id, uris, () => undefined);
    try {
      this.persist();
    } catch (error) {
      // It serves all the same; the next recovery finds the same checkpoint and tries again.
      this.logger.error('cannot save the recovered namespaces', { controller: entry.id, path: this.stateFile, error: errorMessage(error) });
      return;
    }
    this.logger.warn('controller recovered with the namespaces of its checkpoint, now saved as its definition', { controller: entry.id, saved, served: uris, nsids });
  }

  /** The index in the controller's configuration of namespace `nsid`; NOT_FOUND when it has none. */
  private namespaceIndex(entry: Entry, nsid: number): number {
    const index = namespaceNsids(entry.config).indexOf(nsid);
    if (index < 0) throw new VfiodError('NOT_FOUND', `controller ${entry.id} has no namespace ${nsid}`, { reason: 'NAMESPACE_NOT_FOUND', controllerId: entry.id, nsid });
    return index;
  }

  /**
   * Runs one namespace change of controller `id`, after the ones before it: `plan` checks the request against the
   * configuration and says what to change (undefined: nothing to do); the controller's worker makes the change and
   * tells the guest; then the new configuration is saved.
   */
  private changeNamespaces(
    id: string,
    plan: (entry: Entry) => PlannedChange | undefined | Promise<PlannedChange | undefined>,
  ): Promise<ControllerView> {
    return this.serially(id, async (entry) => {
      const planned = await plan(entry);
      if (!planned) return this.view(entry);
      const { change, config, backings } = planned;
      try {
        await entry.worker!.request({ type: 'namespace', change });
      } catch (error) {
        throw new VfiodError('FAILED_PRECONDITION', `controller ${id}: namespace ${change.nsid}: ${errorMessage(error)}`, { reason: 'NAMESPACE_CHANGE_FAILED', controllerId: id, nsid: change.nsid });
      }
      entry.config = config;
      entry.backings = backings;
      recordInodes(entry);
      this.save(entry, 'the namespace change is made');
      this.logger.info('controller namespaces changed', { controller: id, change, namespaces: config.namespaces, nsids: config.nsids });
      return this.view(entry);
    });
  }

  /**
   * Runs `run` on serving controller `id` after the changes (namespaces, limits) before it: each starts from the
   * configuration the last one saved.
   */
  private serially(id: string, run: (entry: Entry) => Promise<ControllerView>): Promise<ControllerView> {
    const entry = this.entries.get(id);
    if (!entry) return Promise.reject(new VfiodError('NOT_FOUND', `no controller ${id}`, { reason: 'CONTROLLER_NOT_FOUND', controllerId: id }));
    const checked = async (): Promise<ControllerView> => {
      if (this.closed) throw new VfiodError('UNAVAILABLE', 'the daemon is shutting down', { reason: 'DAEMON_SHUTTING_DOWN' });
      if (entry.swapping) throw swapRunning(id, entry.swapping);
      if (entry.state !== 'serving' || !entry.worker) {
        throw new VfiodError('FAILED_PRECONDITION', `controller ${id} is ${entry.state}: its namespaces and rate limits change only while it serves`, {
          reason: 'CONTROLLER_NOT_SERVING',
          controllerId: id,
          controllerState: entry.state,
        });
      }
      return run(entry);
    };
    const result = (entry.namespaceChanges ?? Promise.resolve()).then(checked, checked);
    entry.namespaceChanges = result.catch(() => undefined);
    return result;
  }

  /** Saves the definitions after a change to `entry` that is already made (`what`, for the error). */
  private save(entry: Entry, what: string): void {
    try {
      this.persist();
    } catch (error) {
      throw new VfiodError('INTERNAL', `controller ${entry.id}: ${what} but cannot be saved in ${this.stateFile}: ${errorMessage(error)}`, {
        reason: 'CONTROLLER_SAVE_FAILED',
        controllerId: entry.id,
        path: this.stateFile,
      });
    }
  }

  async get(id: string): Promise<ControllerView> {
    const entry = this.entries.get(id);
    if (!entry) throw new VfiodError('NOT_FOUND', `no controller ${id}`, { reason: 'CONTROLLER_NOT_FOUND', controllerId: id });
    return this.view(entry);
  }

  /**
   * Whether a hypervisor is connected to the controller on `socketPath`: false when it is not serving, undefined when
   * no controller of this daemon serves that socket (or it does not answer). The attachment orchestrator's
   * vfioUserInUse: a VM whose VMM is gone and that nothing is connected for can be detached.
   */
  async clientConnected(socketPath: string): Promise<boolean | undefined> {
    const entry = [...this.entries.values()].find((e) => sameSocketFile(e.config.socketPath, socketPath));
    if (!entry) return undefined;
    if (entry.state !== 'serving' || !entry.worker) return false;
    return (await entry.worker.snapshot())?.clientConnected;
  }

  /** One snapshot per controller for a metrics scrape (null for one that is not serving or does not answer). */
  async metricsSamples(): Promise<ControllerSample[]> {
    return Promise.all(
      [...this.entries.values()].map(async (entry) => ({
        controller: entry.id,
        snapshot: entry.state === 'serving' && entry.worker ? await entry.worker.snapshot() : null,
      })),
    );
  }

  async list(): Promise<ControllerView[]> {
    return Promise.all([...this.entries.values()].sort((a, b) => a.id.localeCompare(b.id)).map((e) => this.view(e)));
  }

  /**
   * Crash recovery's planned restart: every serving controller quiesces and checkpoints, and lets go of the holder;
   * the process exits next (docs/restart.md). Resolves with how many could not.
   */
  async checkpointForRestart(): Promise<number> {
    this.closed = true;
    clearInterval(this.sampler);
    const results = await Promise.allSettled(
      [...this.entries.values()].filter((entry) => entry.worker).map((entry) => entry.worker!.request({ type: 'checkpoint-for-restart' })),
    );
    return results.filter((result) => result.status === 'rejected').length;
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
    const worker = new ControllerWorker(entry.config, this.logger.child({ controller: entry.id }), false, this.options.holderSocket);
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
    const bad = (message: string, reason: Reason = 'FIELD_INVALID', details: Record<string, unknown> = {}): VfiodError =>
      new VfiodError('INVALID_ARGUMENT', `controller ${id}: ${message}`, { reason, controllerId: id, ...details });
    const socketPath = checkPath(spec.socketPath ?? '', 'socket path', (message) => bad(message, 'SOCKET_PATH_INVALID', { field: 'spec.socket_path' }));
    if (!socketPath) throw bad('spec.socket_path is required', 'FIELD_REQUIRED', { field: 'spec.socket_path' });
    if (Buffer.byteLength(socketPath) > 107) {
      throw bad(`socket path '${socketPath}' is longer than 107 bytes (the unix socket limit)`, 'SOCKET_PATH_INVALID', { field: 'spec.socket_path' });
    }
    const uris = spec.namespaces ?? [];
    if (uris.length === 0) throw bad('at least one namespace URI is required (e.g. memory:1G or file:/var/lib/vfiod/disk.img?size=8G)', 'FIELD_REQUIRED', { field: 'spec.namespaces' });
    if (uris.length > MAX_NSID) throw bad(`${uris.length} namespaces is more than ${MAX_NSID}`, 'FIELD_OUT_OF_RANGE', { field: 'spec.namespaces', value: uris.length, max: MAX_NSID });
    let slots: Pick<ControllerConfig, 'namespaces' | 'nsids'>;
    try {
      slots = namespaceSlots(uris, spec.namespaceNsids);
    } catch (error) {
      throw bad(`spec.namespace_nsids: ${errorMessage(error)}`, 'FIELD_INVALID', { field: 'spec.namespace_nsids' });
    }
    const { namespaces } = slots;
    const nsids = namespaceNsids(slots);
    namespaces.forEach((uri, index) => this.checkNamespaceUri(id, uri, nsids[index]!));
    const limit = (field: string, value: number | undefined, [min, max]: readonly [number, number]): number | undefined => {
      if (value === undefined || value === 0) return undefined;
      if (!Number.isInteger(value) || value < min || value > max) {
        throw bad(`${field} must be from ${min} to ${max}, not ${value}`, 'FIELD_OUT_OF_RANGE', { field: `spec.${field}`, value, min, max });
      }
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
        throw bad(`doorbell_mode ${String(spec.doorbellMode)} is unknown`, 'FIELD_INVALID', { field: 'spec.doorbell_mode' });
    }
    const socketMode = spec.socketMode ? spec.socketMode : undefined;
    if (socketMode !== undefined && (socketMode & ~0o777) !== 0) {
      throw bad(`socket_mode 0${socketMode.toString(8)} is not a permission mode (0000-0777)`, 'FIELD_OUT_OF_RANGE', { field: 'spec.socket_mode', value: socketMode, min: 0, max: 0o777 });
    }
    // proto3 strings: '' = not given.
    const identity: ControllerConfig['identity'] = {};
    if (spec.identity?.serialNumber) identity.serialNumber = spec.identity.serialNumber;
    if (spec.identity?.modelNumber) identity.modelNumber = spec.identity.modelNumber;
    if (spec.identity?.firmwareRevision) identity.firmwareRevision = spec.identity.firmwareRevision;
    if (spec.identity?.subsystemNqn) identity.subsystemNqn = spec.identity.subsystemNqn;
    // proto3 optional: absent = not given, so 0 can be asked for.
    if (spec.identity?.ieeeOui !== undefined && spec.identity.ieeeOui !== null) identity.ieeeOui = spec.identity.ieeeOui;
    if (spec.identity?.controllerId !== undefined && spec.identity.controllerId !== null) identity.controllerId = spec.identity.controllerId;
    try {
      checkIdentityOverrides('spec.identity', identity, PROTO_IDENTITY_NAMES);
    } catch (error) {
      throw bad(errorMessage(error), 'IDENTITY_INVALID', { field: 'spec.identity' });
    }
    const namespaceIdentities = (spec.namespaceIdentities ?? []).map((entry) => namespaceOverrideOf(entry, entry.nsid ?? 0));
    try {
      checkNamespaceOverrides('spec.namespace_identities', namespaceIdentities, nsids, PROTO_NAMESPACE_IDENTITY_NAMES);
    } catch (error) {
      throw bad(errorMessage(error), 'NAMESPACE_IDENTITY_INVALID', { field: 'spec.namespace_identities' });
    }
    const badIdentityPath = (message: string): VfiodError => bad(message, 'IDENTITY_PATH_INVALID', { field: 'spec.identity_path', identityPath: spec.identityPath });
    const identityPath = checkPath(spec.identityPath ?? '', 'identity_path', badIdentityPath) || path.join(this.options.stateDir, 'controllers', `${id}.identity.json`);
    // The daemon writes it as root: a .json name keeps it out of what shells, cron and systemd load as code or config.
    if (!identityPath.endsWith('.json')) throw badIdentityPath(`identity_path '${identityPath}' must end in .json`);
    if (spec.identityPath) {
      // ... and only where vfiod keeps its files: the namespace directories or <state dir>/controllers.
      const allowed = [...this.namespaceDirs, path.join(this.options.stateDir, 'controllers')];
      const realAllowed = [...this.realNamespaceDirs, resolvedPath(path.join(this.options.stateDir, 'controllers'))];
      const real = resolvedPath(identityPath);
      if (!allowed.some((dir) => isWithin(identityPath, dir)) || !realAllowed.some((dir) => isWithin(real, dir))) {
        throw new VfiodError(
          'INVALID_ARGUMENT',
          `controller ${id}: identity_path '${identityPath}'${real !== identityPath ? ` (${real})` : ''} is not in ${allowed.join(' or ')}: identity files live next to the disks or in the state directory`,
          { reason: 'IDENTITY_PATH_OUTSIDE_ALLOWED_DIRS', controllerId: id, identityPath },
        );
      }
    }
    this.checkIdentityPath(id, identityPath);
    // What clashes with the persisted identity is refused here, before anything starts.
    try {
      checkIdentityConflicts(identityPath, { controller: identity, namespaceUris: namespaces, nsids, namespaces: namespaceIdentities });
    } catch (error) {
      if (error instanceof IdentityConflict) throw new VfiodError('FAILED_PRECONDITION', `controller ${id}: ${error.message}`, { reason: error.reason, controllerId: id, identityPath });
      throw error;
    }

    const msixVectors = limit('msix_vectors', spec.msixVectors, CONTROLLER_LIMITS.msixVectors);
    const maxIoQueuePairs = limit('max_io_queue_pairs', spec.maxIoQueuePairs, CONTROLLER_LIMITS.maxIoQueuePairs);
    const maxQueueEntries = limit('max_queue_entries', spec.maxQueueEntries, CONTROLLER_LIMITS.maxQueueEntries);
    // mdts 0 ("no limit") is also proto3's "not given": 0 keeps the default (8).
    const mdtsPages = limit('mdts_pages', spec.mdtsPages, [1, CONTROLLER_LIMITS.mdtsPages[1]]);
    const ioLimits = ioLimitsFrom(id, spec.limits ?? undefined, nsids, 'spec.limits');
    return controllerConfig({
      socketPath,
      ...slots,
      doorbellMode,
      identityPath,
      identity,
      ...(namespaceIdentities.length ? { namespaceIdentities } : {}),
      ...(socketMode !== undefined ? { socketMode } : {}),
      ...(msixVectors !== undefined ? { msixVectors } : {}),
      ...(maxIoQueuePairs !== undefined ? { maxIoQueuePairs } : {}),
      ...(maxQueueEntries !== undefined ? { maxQueueEntries } : {}),
      ...(mdtsPages !== undefined ? { mdtsPages } : {}),
      ...(ioLimits !== undefined ? { ioLimits } : {}),
    });
  }

  /** INVALID_ARGUMENT for a URI that does not parse, a relative file, or a memory: namespace under crash recovery. */
  private checkNamespaceUri(id: string, uri: string, nsid: number): void {
    const bad = (message: string, reason: Reason, details: Record<string, unknown>): VfiodError =>
      new VfiodError('INVALID_ARGUMENT', `controller ${id}: namespace ${nsid}: ${message}`, { reason, controllerId: id, namespace: nsid, ...details });
    let parsed;
    try {
      parsed = parseNamespaceUri(uri);
    } catch (error) {
      throw bad(errorMessage(error), 'NAMESPACE_URI_INVALID', { uri });
    }
    // The daemon's working directory means nothing to a client: a relative file would land wherever it runs.
    if (parsed.scheme === 'file' && !/^file:(\/\/[^/]*)?\//.test(uri)) throw bad(`'${uri}' must name an absolute path`, 'NAMESPACE_URI_INVALID', { uri });
    if (parsed.scheme === 'memory' && this.options.holderSocket !== undefined) {
      throw bad('the daemon runs with --crash-recovery, which cannot keep a memory: namespace (its data lives in the process that crashes)', 'MEMORY_NAMESPACE_WITH_CRASH_RECOVERY', {});
    }
  }

  /** Refuses an identity file that exists and is not vfiod's (FAILED_PRECONDITION: the daemon would replace it). */
  private checkIdentityPath(id: string, identityPath: string): void {
    try {
      checkIdentityFileWritable(identityPath);
    } catch (error) {
      if (error instanceof IdentityFileRefused) throw new VfiodError('FAILED_PRECONDITION', `controller ${id}: ${error.message}`, { reason: error.reason, controllerId: id, identityPath });
      throw error;
    }
  }

  /**
   * The backings of a controller's file namespaces, each under its keys: `path:<real path>` always, and its inode
   * (`file:<dev>:<ino>`, `block:<rdev>`) once it exists, so a hard link, another device node or a symlink of a disk
   * has a key in common with it. Refuses (INVALID_ARGUMENT) what is not storage (backing.ts), what is not in the
   * namespace directories (symlinks resolved; `outside`, when given, is told instead), and one disk twice in the list.
   */
  private namespaceBackings(id: string, namespaces: readonly string[], outside?: (message: string) => void): Map<string, string> {
    const bad = (message: string, reason: Reason, details: Record<string, unknown> = {}): VfiodError =>
      new VfiodError('INVALID_ARGUMENT', `controller ${id}: ${message}`, { reason, controllerId: id, ...details });
    const backings = new Map<string, string>();
    /** Which namespace (index) each key came from: the same URI twice is the same disk twice too. */
    const from = new Map<string, number>();
    const dirs = this.namespaceDirs.join(', ');
    namespaces.forEach((uri, index) => {
      const spec = parseNamespaceUri(uri);
      if (spec.scheme !== 'file') return;
      const file = (spec as FileNamespaceSpec).path;
      const named = `namespace ${index + 1} '${uri}'`;
      if (!this.namespaceDirs.some((dir) => isWithin(file, dir))) {
        const error = bad(
          `${named}: ${file} is not in the daemon's namespace directories (${dirs}): put the disk there, or start the daemon with --namespace-dir <its directory>`,
          'NAMESPACE_OUTSIDE_NAMESPACE_DIRS',
          { namespace: index + 1, path: file },
        );
        if (!outside) throw error;
        outside(error.message);
      }
      let identity;
      try {
        identity = inspectBacking(file);
      } catch (error) {
        if (error instanceof BackingRefused) throw bad(`${named}: ${(error as BackingRefused).message}`, (error as BackingRefused).reason, { namespace: index + 1, path: file });
        // Unreadable, a path through a file, ...: the start says why.
        identity = undefined;
      }
      const real = identity?.realPath ?? resolvedPath(file);
      if (!this.realNamespaceDirs.some((dir) => isWithin(real, dir)) && this.namespaceDirs.some((dir) => isWithin(file, dir))) {
        const error = bad(
          `${named}: ${file} resolves to ${real} (through a symbolic link), which is not in the daemon's namespace directories (${dirs})`,
          'NAMESPACE_OUTSIDE_NAMESPACE_DIRS',
          { namespace: index + 1, path: file, realPath: real },
        );
        if (!outside) throw error;
        outside(error.message);
      }
      for (const key of [`path:${real}`, ...(identity ? [identity.key] : [])]) {
        const other = from.get(key);
        if (other !== undefined && other !== index) {
          throw bad(`namespaces '${backings.get(key)}' and '${uri}' are the same ${identity?.kind === 'block' ? 'block device' : 'file'} ${real}`, 'NAMESPACE_DUPLICATE', { path: real });
        }
        backings.set(key, uri);
        from.set(key, index);
      }
    });
    return backings;
  }

  /** ALREADY_EXISTS, naming the other controller, when one of `backings` is a disk of another controller. */
  private checkNotShared(id: string, backings: Map<string, string>): void {
    for (const other of this.entries.values()) {
      if (other.id === id) continue;
      for (const [key, uri] of backings) {
        const theirs = other.backings.get(key);
        if (theirs === undefined) continue;
        const what = key.startsWith('block:') ? 'block device' : 'file';
        throw new VfiodError(
          'ALREADY_EXISTS',
          `controller ${id}: namespace '${uri}' is the same ${what} as namespace '${theirs}' of controller ${other.id}${key.startsWith('path:') ? '' : ' (the same inode: a hard link, a symbolic link or another device node)'}`,
          { reason: 'NAMESPACE_IN_USE', controllerId: id, path: (parseNamespaceUri(uri) as FileNamespaceSpec).path, otherController: other.id },
        );
      }
    }
  }

  /**
   * What one controller must not share with another: a file or block device (two guests writing one disk corrupt
   * it: the same inode, whatever the name), and the host's RAM (memory namespaces are committed as guests write; past
   * the RAM the OOM killer ends the daemon and every controller with it). Returns the new controller's backings.
   */
  private checkSharedResources(id: string, config: ControllerConfig): Map<string, string> {
    const backings = this.namespaceBackings(id, config.namespaces);
    this.checkNotShared(id, backings);
    let othersMemory = 0;
    for (const other of this.entries.values()) {
      if (other.state !== 'failed') othersMemory += memoryBytesOf(other.config.namespaces);
    }
    const memory = memoryBytesOf(config.namespaces);
    const limit = this.options.memoryLimitBytes ?? totalmem();
    if (memory > 0 && memory + othersMemory > limit) {
      throw new VfiodError(
        'FAILED_PRECONDITION',
        `controller ${id}: memory namespaces of ${formatSize(memory)}${othersMemory ? ` (plus ${formatSize(othersMemory)} of other controllers)` : ''} exceed the ${formatSize(limit)} of RAM they may use`,
        { reason: 'MEMORY_BUDGET_EXCEEDED', controllerId: id, memoryBytes: memory, othersBytes: othersMemory, limitBytes: limit },
      );
    }
    return backings;
  }

  private persist(): void {
    const data: PersistedControllers = {
      version: 1,
      controllers: [...this.entries.values()].map((e) => ({ id: e.id, createdAt: e.createdAt, config: e.config })),
    };
    makeDirectory(this.options.stateDir, 0o700);
    // Write-then-rename: a crash leaves the old or the new file, never half of one.
    const tmp = `${this.stateFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n', { mode: 0o600 });
    renameSync(tmp, this.stateFile);
  }

  /**
   * Counters of every serving controller, for rates. A controller that ran no processing pass since the last
   * snapshot and had nothing in flight then has the same counters: its sample is the last one again, taken without
   * a message, so idle controllers' threads sleep (a message a second to each was most of what 64 idle controllers
   * cost).
   */
  private async sample(): Promise<void> {
    for (const entry of this.entries.values()) {
      if (entry.state !== 'serving' || !entry.worker) continue;
      const activity = entry.worker.activity();
      const last = entry.samples[entry.samples.length - 1];
      if (last && activity !== undefined && activity === entry.sampledActivity && entry.sampledInFlight === false) {
        this.push(entry, { ...last, at: Date.now() });
        continue;
      }
      const snapshot = await entry.worker.snapshot();
      if (!snapshot) continue;
      entry.sampledActivity = activity;
      entry.sampledInFlight = snapshot.stats.inFlight > 0;
      this.record(entry, snapshot.stats);
    }
  }

  private record(entry: Entry, stats: NvmeControllerStats): void {
    this.push(entry, { at: Date.now(), reads: stats.commands.read, writes: stats.commands.write, bytesRead: stats.bytesRead, bytesWritten: stats.bytesWritten });
  }

  private push(entry: Entry, sample: Sample): void {
    entry.samples.push(sample);
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

/** What `file` is (block device or regular file); undefined when it cannot be looked at now (the worker says why). */
function backingKind(file: string): string | undefined {
  try {
    return inspectBacking(file)?.kind;
  } catch {
    return undefined;
  }
}

/** SWAP_ALREADY_RUNNING: controller `id` moves a namespace now. */
function swapRunning(id: string, swapping: { nsid: number; uri: string }): VfiodError {
  return new VfiodError('FAILED_PRECONDITION', `controller ${id}: namespace ${swapping.nsid} is moving to ${swapping.uri}; one move at a time, and its namespaces change once it ends`, {
    reason: 'SWAP_ALREADY_RUNNING',
    controllerId: id,
    nsid: swapping.nsid,
  });
}

/**
 * `uri` opened at `sizeBytes`: a file: URI without size= gets it (a new file is made that large, a block device is
 * used that far, a larger file is refused when it opens), so the namespace keeps its size at the next start too.
 */
function withNamespaceSize(uri: string, sizeBytes: number): string {
  const spec = parseNamespaceUri(uri);
  if (spec.scheme !== 'file' || (spec as FileNamespaceSpec).sizeBytes !== undefined) return uri;
  return `${uri}${uri.includes('?') ? '&' : '?'}size=${sizeBytes}`;
}

/** The lowest NSID not in `nsids`; undefined when all up to MAX_NSID are. */
function lowestFreeNsid(nsids: readonly number[]): number | undefined {
  const taken = new Set(nsids);
  for (let nsid = 1; nsid <= MAX_NSID; nsid++) if (!taken.has(nsid)) return nsid;
  return undefined;
}

/** Adds the inode keys of namespace files a started controller created (they had only a path key before). */
function recordInodes(entry: Entry): void {
  for (const uri of entry.config.namespaces) {
    try {
      const spec = parseNamespaceUri(uri);
      if (spec.scheme !== 'file') continue;
      const identity = inspectBacking((spec as FileNamespaceSpec).path);
      if (identity) entry.backings.set(identity.key, uri);
    } catch {
      // what cannot be looked at now keeps the keys it had
    }
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

/** The proto's IoLimits field names, for messages and error details. */
const PROTO_LIMIT_NAMES: Record<keyof IoLimits, string> = { iops: 'iops', bytesPerSecond: 'bytes_per_second', burstIos: 'burst_ios', burstBytes: 'burst_bytes' };

/**
 * The control API's ControllerLimits as a controller's limits (zeros and empty scopes left out; undefined: none),
 * checked: ranges, a burst without its rate and an NSID twice are IO_LIMIT_INVALID, an NSID not in `nsids`
 * NAMESPACE_NOT_FOUND. `field` is where the request carries them (spec.limits, limits).
 */
export function ioLimitsFrom(id: string, input: ControllerLimitsInput | undefined, nsids: readonly number[], field: string): ControllerIoLimits | undefined {
  if (!input) return undefined;
  const scope = (given: IoLimitsInput | null | undefined, where: string, at: string, nsid?: number): IoLimits | undefined => {
    const limits: IoLimits = {};
    for (const key of Object.keys(PROTO_LIMIT_NAMES) as Array<keyof IoLimits>) {
      const value = given?.[key];
      if (value !== undefined && value !== 0) limits[key] = Number(value);
    }
    const problem = ioLimitsProblem(limits, where);
    if (problem) {
      const name = `${at}.${PROTO_LIMIT_NAMES[problem.field]}`;
      const message = problem.message.replace(/iops|bytesPerSecond|burstIos|burstBytes/g, (name) => PROTO_LIMIT_NAMES[name as keyof IoLimits]);
      throw new VfiodError('INVALID_ARGUMENT', `controller ${id}: ${message}`, {
        reason: 'IO_LIMIT_INVALID',
        controllerId: id,
        field: name,
        value: limits[problem.field],
        max: IO_LIMIT_MAX[problem.field],
        ...(nsid !== undefined ? { nsid } : {}),
      });
    }
    return Object.keys(limits).length ? limits : undefined;
  };
  const result: ControllerIoLimits = {};
  const controller = scope(input.controller, 'controller', `${field}.controller`);
  if (controller) result.controller = controller;
  const seen = new Set<number>();
  (input.namespaces ?? []).forEach((entry, index) => {
    const nsid = entry.nsid ?? 0;
    const at = `${field}.namespaces[${index}]`;
    if (!nsids.includes(nsid)) {
      throw new VfiodError('NOT_FOUND', `controller ${id} has no namespace ${nsid} to limit (${at}.nsid; it has ${nsids.join(', ')})`, { reason: 'NAMESPACE_NOT_FOUND', controllerId: id, nsid });
    }
    if (seen.has(nsid)) {
      throw new VfiodError('INVALID_ARGUMENT', `controller ${id}: namespace ${nsid} is given limits twice (${at})`, { reason: 'IO_LIMIT_INVALID', controllerId: id, field: `${at}.nsid`, value: nsid, nsid });
    }
    seen.add(nsid);
    const limits = scope(entry.limits, `namespace ${nsid}`, `${at}.limits`, nsid);
    if (limits) (result.namespaces ??= []).push({ nsid, ...limits });
  });
  return hasIoLimits(result) ? result : undefined;
}

/** `limits` without namespace `nsid`'s (undefined when nothing is left). */
function withoutNamespaceLimits(limits: ControllerIoLimits | undefined, nsid: number): ControllerIoLimits | undefined {
  if (!limits?.namespaces?.some((entry) => entry.nsid === nsid)) return limits;
  const namespaces = limits.namespaces.filter((entry) => entry.nsid !== nsid);
  const rest: ControllerIoLimits = { ...limits, namespaces };
  if (namespaces.length === 0) delete rest.namespaces;
  return hasIoLimits(rest) ? rest : undefined;
}
