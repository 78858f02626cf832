/**
 * Main-thread side of `vfiod serve`: one worker thread per controller, clean shutdown on SIGTERM/SIGINT.
 * A controller that fails or crashes is reported and does not take the others down.
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Logger, rootLogger } from '../util/log.js';
import { HandoverListener, defaultHandoverSocket, packageVersion, takeOver, type HandoverWorker } from './upgrade.js';
import type { ControllerConfig } from './config.js';
import type { ControllerSnapshot, MainToWorker, SwapToMain, UpgradeRequest, WorkerData, WorkerToMain } from './worker.js';
import { BackingSwapFailed, type BackingSwapHooks, type BackingSwapRequest, type ControllerHandoverState } from './controller.js';
import type { MoveOutcome } from '../namespace/backing-swap.js';
import { errorMessage } from '../util/errors.js';
import { type HolderToDataPlane, RESTART_EXIT_CODE } from './holder-protocol.js';
import { notifyReady, notifyStopping, startWatchdog } from '../util/sd-notify.js';
import { sleep } from '../util/sleep.js';
import type { MetricsAddress } from '../metrics/address.js';
import type { MetricsEndpoint } from '../metrics/endpoint.js';
import type { ControllerSample } from '../metrics/exporter.js';
import { catchEarlySignals, type EarlySignals } from '../util/early-signals.js';
import { tellHolder, tellHolderRestartIsHandled, tellHolderSignalsAreCaught } from './data-plane.js';

const SNAPSHOT_TIMEOUT_MS = 5_000;

const WORKER_URL = new URL('./worker.js', import.meta.url);
const SHUTDOWN_TIMEOUT_MS = 15_000;
/** After a hand-over: how long flushing the namespaces may take before this process exits regardless. */
const RELEASE_TIMEOUT_MS = 15_000;
const TERMINATE_TIMEOUT_MS = 3_000;
/** A live upgrade's successor: how long it tries to take the metrics address over from its predecessor. */
const METRICS_TAKE_OVER_MS = RELEASE_TIMEOUT_MS + 5_000;

export class ControllerWorker implements HandoverWorker {
  private readonly worker: Worker;
  readonly ready: Promise<void>;
  /** A standby worker has loaded its modules and waits for `activate()`. */
  readonly loaded: Promise<void>;
  private resolveLoaded: () => void = () => undefined;
  readonly exited: Promise<number>;
  private nextRequestId = 1;
  private gone = false;
  private readonly snapshotWaiters = new Map<number, (snapshot: ControllerSnapshot | null) => void>();
  private readonly replyWaiters = new Map<number, (reply: Extract<WorkerToMain, { type: 'reply' }>) => void>();
  /** Take-over mode: resolves once the namespaces are open and the worker waits for the predecessor's state. */
  readonly prepared: Promise<void>;
  /** The device's pass counter, shared with the worker (see `activity`). */
  private activityCounter: Int32Array | undefined;
  /** Backing swaps under way in the worker, by request id. */
  private readonly swaps = new Map<number, { hooks: BackingSwapHooks; resolve(outcome: MoveOutcome): void; reject(error: Error): void }>();

  /** `takeOver`: the worker builds its controller from a predecessor's snapshot (docs/restart.md). */
  /**
   * `holderSocket`: crash recovery, through the holder there (docs/restart.md). `standby`: the worker loads and waits
   * for `activate()` before it starts its controller.
   */
  constructor(readonly config: ControllerConfig, private readonly logger: Logger, takeOver = false, holderSocket?: string, standby = false) {
    const workerData: WorkerData = {
      config,
      ...(takeOver ? { takeOver } : {}),
      ...(holderSocket !== undefined ? { holderSocket } : {}),
      ...(standby ? { standby } : {}),
      logFields: { ...logger.boundFields },
    };
    this.loaded = new Promise((resolve) => (this.resolveLoaded = resolve));
    this.worker = new Worker(fileURLToPath(WORKER_URL), { workerData, name: `vfiod ${config.socketPath}` });
    this.exited = new Promise((resolve) => this.worker.once('exit', resolve));
    // A worker that is gone answers no more snapshot requests.
    void this.exited.then(() => {
      this.gone = true;
      for (const resolve of this.snapshotWaiters.values()) resolve(null);
      this.snapshotWaiters.clear();
      for (const [requestId, resolve] of this.replyWaiters) resolve({ type: 'reply', requestId, error: 'the controller worker exited' });
      this.replyWaiters.clear();
      for (const swap of this.swaps.values()) swap.reject(new BackingSwapFailed('SWAP_INTERRUPTED', 'the controller worker exited'));
      this.swaps.clear();
    });
    let prepared!: () => void;
    let notPrepared!: (error: Error) => void;
    this.prepared = new Promise((resolve, reject) => {
      prepared = resolve;
      notPrepared = reject;
    });
    this.prepared.catch(() => {});
    this.ready = new Promise((resolve, reject) => {
      this.worker.on('message', (message: WorkerToMain) => {
        if (message.type === 'ready') {
          this.activityCounter = message.activity;
          resolve();
        }
        if (message.type === 'loaded') this.resolveLoaded();
        if (message.type === 'prepared') prepared();
        if (message.type === 'failed') {
          reject(new Error(message.message));
          notPrepared(new Error(message.message));
        }
        if (message.type === 'reply') {
          this.replyWaiters.get(message.requestId)?.(message);
          this.replyWaiters.delete(message.requestId);
        }
        if (message.type === 'swap-progress' || message.type === 'swap-commit' || message.type === 'swap-done') this.onSwapMessage(message);
        if (message.type === 'stats') {
          this.snapshotWaiters.get(message.requestId)?.(message.snapshot);
          this.snapshotWaiters.delete(message.requestId);
        }
      });
      this.worker.once('error', (error) => {
        this.logger.error('controller worker crashed', { socket: config.socketPath, error });
        reject(error);
        notPrepared(error);
      });
      void this.exited.then((code) => {
        const error = new Error(`controller worker exited with code ${code} before it was ready`);
        reject(error);
        notPrepared(error);
      });
    });
    if (takeOver) this.ready.catch(() => {});
  }

  /** A standby worker starts its controller now. */
  activate(): void {
    this.worker.postMessage({ type: 'activate' } satisfies MainToWorker);
  }

  /**
   * A live-upgrade request (see worker.ts); rejects with the worker's error. Quiesce and adopt wait for in-flight
   * I/O or a namespace backend, so the caller bounds them with its own deadline.
   */
  async request(request: UpgradeRequest): Promise<{ state?: ControllerHandoverState; fds?: number[] }> {
    if (this.gone) throw new Error('the controller worker has exited');
    const requestId = this.nextRequestId++;
    const reply = await new Promise<Extract<WorkerToMain, { type: 'reply' }>>((resolve) => {
      this.replyWaiters.set(requestId, resolve);
      this.worker.postMessage({ ...request, requestId } as MainToWorker);
    });
    if (reply.error !== undefined) throw new Error(reply.error);
    return { ...(reply.state ? { state: reply.state } : {}), ...(reply.fds ? { fds: reply.fds } : {}) };
  }

  /**
   * Moves a namespace to another backing in the worker (BackingSwapRequest); `hooks.commit` persists the switch while
   * the namespace's commands wait. Rejects with BackingSwapFailed.
   */
  swapBacking(request: BackingSwapRequest, hooks: BackingSwapHooks): Promise<MoveOutcome> {
    if (this.gone) return Promise.reject(new BackingSwapFailed('SWAP_INTERRUPTED', 'the controller worker has exited'));
    const requestId = this.nextRequestId++;
    return new Promise((resolve, reject) => {
      this.swaps.set(requestId, { hooks, resolve, reject });
      this.worker.postMessage({ type: 'swap', requestId, request } satisfies MainToWorker);
    });
  }

  private onSwapMessage(message: SwapToMain): void {
    const swap = this.swaps.get(message.requestId);
    if (!swap) return;
    if (message.type === 'swap-progress') swap.hooks.onProgress(message.progress);
    else if (message.type === 'swap-commit') {
      swap.hooks.commit(message.uri).then(
        () => this.worker.postMessage({ type: 'swap-committed', requestId: message.requestId } satisfies MainToWorker),
        (error: unknown) => this.worker.postMessage({ type: 'swap-committed', requestId: message.requestId, error: errorMessage(error) } satisfies MainToWorker),
      );
    } else {
      this.swaps.delete(message.requestId);
      if (message.outcome) swap.resolve(message.outcome);
      else swap.reject(new BackingSwapFailed(message.reason ?? 'SWAP_FAILED', message.error ?? 'the backing swap failed'));
    }
  }

  /**
   * Stats, identity and namespaces of the running controller (the control API's GetController). Null when the
   * worker is not serving (starting, failed, gone) or does not answer within 5 s (a stuck worker).
   */
  snapshot(): Promise<ControllerSnapshot | null> {
    if (this.gone) return Promise.resolve(null);
    const requestId = this.nextRequestId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.snapshotWaiters.delete(requestId);
        resolve(null);
      }, SNAPSHOT_TIMEOUT_MS);
      this.snapshotWaiters.set(requestId, (snapshot) => {
        clearTimeout(timer);
        resolve(snapshot);
      });
      try {
        this.worker.postMessage({ type: 'stats', requestId } satisfies MainToWorker);
      } catch {
        this.snapshotWaiters.delete(requestId);
        clearTimeout(timer);
        resolve(null);
      }
    });
  }

  /**
   * How many processing passes the controller has run (wrapping), read from shared memory without waking its
   * thread; undefined before it is ready. Unchanged, with nothing in flight at the last snapshot, means the
   * controller's counters have not changed either.
   */
  activity(): number | undefined {
    return this.activityCounter === undefined ? undefined : Atomics.load(this.activityCounter, 0);
  }

  /**
   * Ends a worker whose start hangs (a namespace backend that never answers): it has nothing to flush, and it cannot
   * act on a shutdown request while its start is still waiting.
   */
  async abort(): Promise<void> {
    await this.worker.terminate();
    await this.exited;
  }

  /** Asks the controller to flush and stop; terminates it if it does not within the timeout. */
  async stop(): Promise<void> {
    this.worker.postMessage({ type: 'shutdown' } satisfies MainToWorker);
    const timer = setTimeout(() => {
      this.logger.error('controller did not stop in time; terminating', { socket: this.config.socketPath });
      void this.worker.terminate();
    }, SHUTDOWN_TIMEOUT_MS);
    // terminate() cannot interrupt a thread stuck in a system call (e.g. a write to an eventfd a hostile client
    // made blocking again); then only ending the process stops it.
    const lastResort = setTimeout(() => {
      this.logger.error('controller thread is stuck; exiting the process', { socket: this.config.socketPath });
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS + TERMINATE_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
    clearTimeout(lastResort);
  }
}

export interface ServeOptions {
  /**
   * Take over from a running `vfiod serve` with the same controllers through its hand-over socket instead of
   * listening afresh (docs/restart.md).
   */
  takeOver?: boolean;
  /** The hand-over socket; default: derived from the first controller's socket (defaultHandoverSocket). */
  handoverSocket?: string;
  /** The `vfiod serve` options as given (without --take-over and --report-to-parent): what `vfiod upgrade` reuses. */
  argv?: string[];
  /**
   * Take-over mode, started by `vfiod upgrade`: send the outcome to the parent over Node's IPC channel once the
   * take-over committed or failed (`{status: 'serving', ...}` / `{status: 'failed', error}`), then disconnect it.
   */
  reportToParent?: boolean;
  /**
   * The holder socket (`--holder-socket`): a data plane started by the crash-recovery holder (holder.ts) connects
   * its controllers there (holder-client.ts).
   */
  holderSocket?: string;
  /** Started by the crash-recovery holder (`--data-plane`): `holderSocket` is set. */
  dataPlane?: boolean;
  /** A standby data plane (`--standby`): load everything, then wait for the holder's `activate`. */
  standby?: boolean;
  /** The Prometheus endpoint (`--metrics`), off when not given. */
  metrics?: MetricsAddress;
  /** `--json`: once serving, print servingStatus() as one line on stdout (logs stay on stderr). */
  json?: boolean;
}

/** The status `vfiod serve --json` prints once serving (docs/serve.md, "Machine-readable status"). */
export interface ServingStatus {
  status: 'serving';
  pid: number;
  version: string;
  controllers: Array<{
    socket: string;
    /** Null when the controller did not answer (then `error` says why). */
    serial: string | null;
    model: string | null;
    firmware: string | null;
    nqn: string | null;
    /** 6 hex digits ('000000': none). */
    ieeeOui: string | null;
    controllerId: number | null;
    namespaces: Array<{ nsid: number; uri: string; backing: string; blockSize: number; blocks: number; sizeBytes: number; nguid: string; eui64: string; uuid: string }>;
    error?: string;
  }>;
}

/** What every controller serves, with the identity its guest sees. */
async function servingStatus(workers: ControllerWorker[]): Promise<ServingStatus> {
  const controllers = await Promise.all(
    workers.map(async (worker) => {
      const snapshot = await worker.snapshot();
      const socket = path.resolve(worker.config.socketPath);
      if (!snapshot) return { socket, serial: null, model: null, firmware: null, nqn: null, ieeeOui: null, controllerId: null, namespaces: [], error: 'the controller did not answer' };
      const { identity } = snapshot;
      return {
        socket,
        serial: identity.serialNumber,
        model: identity.modelNumber,
        firmware: identity.firmwareRevision,
        nqn: identity.subsystemNqn,
        ieeeOui: identity.ieeeOui.toString(16).padStart(6, '0'),
        controllerId: identity.controllerId,
        namespaces: snapshot.namespaces.map((namespace) => ({
          nsid: namespace.nsid,
          uri: worker.config.namespaces[namespace.nsid - 1] ?? '',
          backing: namespace.backend,
          blockSize: namespace.blockSize,
          blocks: namespace.blocks,
          sizeBytes: namespace.blockSize * namespace.blocks,
          nguid: namespace.ids.nguid,
          eui64: namespace.ids.eui64,
          uuid: namespace.ids.uuid,
        })),
      };
    }),
  );
  return { status: 'serving', pid: process.pid, version: packageVersion(), controllers };
}

/** Sends the take-over's outcome to the parent (vfiod upgrade) and lets the channel go; a parent that left is no error. */
async function reportUpgradeStatus(report: boolean | undefined, status: Record<string, unknown>): Promise<void> {
  if (!report || !process.send || !process.connected) return;
  await new Promise<void>((resolve) => {
    try {
      process.send!(status, undefined, {}, () => resolve());
    } catch {
      resolve();
    }
  });
  if (process.connected) process.disconnect();
}

/**
 * Every controller serves: say so to whoever supervises this process. A data plane tells its crash-recovery holder
 * (which tells systemd: it is the unit's main process); a plain `vfiod serve` tells systemd itself (Type=notify) and
 * pings its watchdog.
 */
export function announceServing(options: { dataPlane?: boolean }, status: string): void {
  if (options.dataPlane) {
    tellHolder({ type: 'serving', status });
    return;
  }
  notifyReady(status);
  startWatchdog();
}

/**
 * A standby data plane: once every worker has loaded, tell the holder, and wait until it says to go (the data plane
 * it stood in for died). Nothing is opened, attached or listened on before that. A SIGTERM or SIGINT meanwhile ends
 * the wait instead (the holder drops its standby so): resolves with that signal, undefined once activated.
 */
async function standBy(workers: readonly ControllerWorker[], log: Logger, signalled: Promise<NodeJS.Signals>): Promise<NodeJS.Signals | undefined> {
  await Promise.all(workers.map((worker) => worker.loaded));
  const signal = await waitForActivation(log, signalled);
  if (signal === undefined) for (const worker of workers) worker.activate();
  return signal;
}

/**
 * The holder's `activate`, after telling it that this standby is ready (the IPC channel is kept up meanwhile); or a
 * SIGTERM or SIGINT first (`signalled`): then it resolves with that signal, and the standby, which has opened
 * nothing, just ends. Waiting on regardless would leave an orphan that its holder waits for.
 */
export async function waitForActivation(log: Logger, signalled: Promise<NodeJS.Signals>): Promise<NodeJS.Signals | undefined> {
  const channel = process.channel;
  if (!channel || !process.send) throw new Error('--standby needs the holder\'s IPC channel');
  channel.ref();
  let onMessage: (message: Partial<HolderToDataPlane> | undefined) => void = () => undefined;
  const activated = new Promise<undefined>((resolve) => {
    onMessage = (message) => {
      if (message?.type === 'activate') resolve(undefined);
    };
    process.on('message', onMessage);
  });
  tellHolder({ type: 'standby-ready' });
  log.info('standby: loaded, waiting for the holder');
  const signal = await Promise.race([activated, signalled]);
  process.off('message', onMessage);
  channel.unref();
  if (signal !== undefined) log.info('standby: stopping', { signal });
  else log.info('standby: activated');
  return signal;
}

/**
 * Starts every controller (or takes them over from a running vfiod), waits until all serve (or one fails), listens
 * for a successor on the hand-over socket, and stops them all on SIGTERM/SIGINT. Resolves with the exit code.
 */
export async function serve(configs: ControllerConfig[], logger: Logger = rootLogger, options: ServeOptions = {}): Promise<number> {
  const log = logger.child({ component: 'serve' });
  // A SIGTERM or SIGINT before the handlers below are in place (a worker logs "listening" while the others, or this
  // thread, are still starting) must not kill the process with the default action: it is kept, and acted on as soon
  // as they are (or dropped with the handlers when starting fails and serve returns its exit code anyway).
  const early = catchEarlySignals();
  if (options.dataPlane) tellHolderSignalsAreCaught();
  try {
    return await serveStarted(configs, log, options, early);
  } finally {
    early.release();
  }
}

async function serveStarted(configs: ControllerConfig[], log: Logger, options: ServeOptions, early: EarlySignals): Promise<number> {
  const takeOverMode = options.takeOver === true;
  const workers = configs.map((config) => new ControllerWorker(config, log, takeOverMode, options.holderSocket, options.standby === true));
  if (options.standby && (await standBy(workers, log, early.signalled)) !== undefined) {
    await Promise.all(workers.map((worker) => worker.abort()));
    return 0;
  }
  let stopping: Promise<void> | undefined;
  const stopAll = (): Promise<void> => (stopping ??= Promise.all(workers.map((worker) => worker.stop())).then(() => {}));
  const handoverSocket = path.resolve(options.handoverSocket ?? defaultHandoverSocket(configs[0]!.socketPath));

  let adoptedHandoverFd: number | undefined;
  if (takeOverMode) {
    const prepared = await Promise.allSettled(workers.map((worker) => worker.prepared));
    const failure = prepared.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    try {
      if (failure) throw new Error(String(failure.reason?.message ?? failure.reason));
      const taken = await takeOver(handoverSocket, workers, log);
      adoptedHandoverFd = taken.handoverFd;
      await reportUpgradeStatus(options.reportToParent, {
        status: 'serving', pid: process.pid, version: packageVersion(), previousVersion: taken.previousVersion, millis: taken.millis,
      });
    } catch (error) {
      // The running process serves on (it resumes when we abort, fail or go away before committing).
      log.error('take-over failed; the running vfiod keeps serving', { error: (error as Error).message });
      await reportUpgradeStatus(options.reportToParent, { status: 'failed', pid: process.pid, error: (error as Error).message });
      await Promise.all(workers.map((worker) => worker.abort()));
      return 1;
    }
  }

  const results = await Promise.allSettled(workers.map((worker) => worker.ready));
  const failures = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failures.length > 0) {
    for (const failure of failures) log.error('controller failed to start', { error: String(failure.reason?.message ?? failure.reason) });
    await stopAll();
    return 1;
  }
  let metricsEndpoint: MetricsEndpoint | undefined;
  let metricsClosed = false;
  const closeMetrics = (): Promise<void> => {
    metricsClosed = true;
    return metricsEndpoint?.close() ?? Promise.resolve();
  };
  /** Starts the metrics endpoint, if asked for; false when it cannot listen (the caller stops). */
  const startMetrics = async (): Promise<boolean> => {
    if (!options.metrics) return true;
    const source = (): Promise<ControllerSample[]> =>
      Promise.all(workers.map(async (worker) => ({ controller: worker.config.socketPath, snapshot: await worker.snapshot() })));
    if (takeOverMode) {
      // The predecessor holds the address until it has released the controllers and exited: take it over then.
      void untilListening(options.metrics, source, log).then(
        (endpoint) => {
          if (metricsClosed) void endpoint.close();
          else metricsEndpoint = endpoint;
        },
        (error: unknown) => log.error('cannot serve metrics', { error: (error as Error).message }),
      );
      return true;
    }
    try {
      // Loaded only when asked for: prom-client costs 50-100 ms of start-up.
      const { startMetricsEndpoint } = await import('../metrics/endpoint.js');
      metricsEndpoint = await startMetricsEndpoint(options.metrics, source, log);
      return true;
    } catch (error) {
      log.error('cannot serve metrics; stopping', { error: (error as Error).message });
      return false;
    }
  };

  return new Promise<number>((resolve) => {
    let signalled = false;
    let handedOver = false;
    let listener: HandoverListener | undefined;
    const onHandedOver = (): void => {
      handedOver = true;
      // The successor serves the clients now: flush and close the namespaces, leave every socket alone, exit. A
      // flush that hangs (an unreachable remote namespace) must not keep this process around for ever.
      setTimeout(() => {
        log.error('releasing the controllers takes too long; exiting anyway', { timeoutMillis: RELEASE_TIMEOUT_MS });
        process.exit(0);
      }, RELEASE_TIMEOUT_MS).unref();
      void Promise.all(
        workers.map((worker) =>
          worker.request({ type: 'release' }).catch((error: unknown) =>
            log.error('releasing a controller failed', { socket: worker.config.socketPath, error: (error as Error).message }),
          ),
        ),
      ).then(async () => {
        await closeMetrics();
        log.info('exiting: the successor serves the controllers');
        listener?.close(false);
        process.exit(0);
      });
    };
    const describe = (): { pid: number; version: string; argv?: string[]; cwd: string } => ({
      pid: process.pid,
      version: packageVersion(),
      ...(options.argv ? { argv: options.argv } : {}),
      cwd: process.cwd(),
    });
    const onSignal = (signal: NodeJS.Signals): void => {
      if (signalled || handedOver) return;
      signalled = true;
      log.info('shutting down', { signal });
      if (!options.dataPlane) notifyStopping('stopping: disconnecting clients, flushing namespaces');
      listener?.close(true);
      void Promise.all([stopAll(), closeMetrics()]).then(() => resolve(0));
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    const earlySignal = early.release();
    if (earlySignal !== undefined) onSignal(earlySignal);
    // Serving is announced once the metrics endpoint listens (if asked for); a signal meanwhile is handled already.
    void startMetrics().then((listening) => {
      if (signalled) return;
      if (!listening) {
        signalled = true;
        listener?.close(true);
        void stopAll().then(() => resolve(1));
        return;
      }
      announceServing(options, `serving ${configs.map((config) => config.socketPath).join(', ')}`);
    });
    // The hand-over listener after the handlers: a SIGTERM while it is being set up must not kill the process.
    if (adoptedHandoverFd !== undefined) {
      listener = HandoverListener.adopt(handoverSocket, adoptedHandoverFd, workers, log, onHandedOver, describe);
    } else {
      HandoverListener.listen(handoverSocket, workers, log, onHandedOver, describe).then(
        (created) => {
          if (signalled) created.close(true);
          else listener = created;
        },
        (error: unknown) => log.error('live upgrade unavailable: cannot listen on the hand-over socket', {
          handoverSocket,
          error: (error as Error).message,
        }),
      );
    }
    if (options.json) void servingStatus(workers).then((status) => process.stdout.write(`${JSON.stringify(status)}\n`));
    if (options.dataPlane) {
      // A planned restart by the crash-recovery holder (docs/restart.md): quiesce and checkpoint every controller,
      // then exit without closing anything; the holder keeps the fds and starts the next data plane.
      process.once('SIGUSR2', () => {
        if (signalled) return;
        signalled = true;
        const started = performance.now();
        log.info('planned restart: quiescing and checkpointing the controllers');
        void Promise.allSettled(workers.map((worker) => worker.request({ type: 'checkpoint-for-restart' }))).then((results) => {
          const failed = results.filter((result) => result.status === 'rejected').length;
          log.info('exiting for a planned restart', { millis: Math.round(performance.now() - started), failed });
          // A controller that could not quiesce left a checkpoint and a journal: the next data plane recovers it as
          // after a crash.
          process.exit(RESTART_EXIT_CODE);
        });
      });
      tellHolderRestartIsHandled();
    }
    // A worker that exits on its own (crash) is logged; the others keep serving.
    for (const worker of workers) {
      void worker.exited.then((code) => {
        if (!signalled && !handedOver) log.error('controller exited unexpectedly', { socket: worker.config.socketPath, code });
      });
    }
  });
}

/** Starts the metrics endpoint, trying again each second while the address is in use (by the predecessor). */
async function untilListening(address: MetricsAddress, source: () => Promise<ControllerSample[]>, log: Logger): Promise<MetricsEndpoint> {
  const { startMetricsEndpoint } = await import('../metrics/endpoint.js');
  const deadline = performance.now() + METRICS_TAKE_OVER_MS;
  for (;;) {
    try {
      return await startMetricsEndpoint(address, source, log);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || performance.now() > deadline) throw error;
      await sleep(1000);
    }
  }
}
