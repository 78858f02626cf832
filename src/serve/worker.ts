/**
 * Worker-thread entry: one emulated controller per worker. The main thread sends `{ type: 'shutdown' }`; the worker
 * answers `{ type: 'ready' }` once listening, `{ type: 'failed', message }` if it could not start, and
 * `{ type: 'stopped' }` after a clean shutdown.
 *
 * Live upgrade (docs/restart.md) adds requests the worker answers with `{ type: 'reply', requestId, ... }`:
 * `quiesce` (quiesce and snapshot: the state and the fds it names), `resume`, `release` (the successor took over:
 * flush and close the namespaces, touch nothing else). A worker started with `takeOver` opens its namespaces, says
 * `prepared`, and then takes `adopt` (the predecessor's state and fd numbers, already received by this process)
 * and `start`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type LogFields, rootLogger } from '../util/log.js';
import { FdCollector, FdSource } from '../util/handover-fds.js';
import type { ControllerConfig } from './config.js';
import {
  BackingSwapFailed,
  type BackingSwapRequest,
  prepareTakeOver,
  startController,
  type ControllerHandoverState,
  type NamespaceChange,
  type PendingTakeOver,
  type RunningController,
} from './controller.js';
import type { NvmeControllerStats } from '../nvme/stats.js';
import type { ControllerIoLimits } from '../nvme/io-limits.js';
import type { NamespaceIds, NamespacePath } from '../namespace/namespace.js';
import type { MoveOutcome, MoveProgress } from '../namespace/backing-swap.js';
import type { Reason } from '../util/error-reasons.js';

export type WorkerToMain =
  | { type: 'loaded' }
  /** `activity`: the device's pass counter (shared memory; NvmePciDevice.activity), for the daemon's stats sampler. */
  | { type: 'ready'; activity?: Int32Array }
  | { type: 'prepared' }
  | { type: 'failed'; message: string }
  | { type: 'stopped' }
  | { type: 'stats'; requestId: number; snapshot: ControllerSnapshot | null }
  | { type: 'reply'; requestId: number; error?: string; state?: ControllerHandoverState; fds?: number[] }
  | SwapToMain;
/**
 * A backing swap (`swap`) runs beside the requests above, not in their queue, so a live upgrade can cancel it: the
 * worker reports progress, asks the main thread to persist the switch (`swap-commit`, answered by `swap-committed`
 * while the namespace's commands wait) and ends with `swap-done`.
 */
export type SwapToMain =
  | { type: 'swap-progress'; requestId: number; progress: MoveProgress }
  | { type: 'swap-commit'; requestId: number; uri: string }
  | { type: 'swap-done'; requestId: number; outcome?: MoveOutcome; error?: string; reason?: Reason };
export type SwapToWorker = { type: 'swap'; requestId: number; request: BackingSwapRequest } | { type: 'swap-committed'; requestId: number; error?: string };
/** `stats` asks for a ControllerSnapshot (the control API's GetController); `vfiod serve` never sends it. */
export type MainToWorker =
  | { type: 'shutdown' }
  | { type: 'activate' }
  | { type: 'stats'; requestId: number }
  | { type: 'quiesce'; requestId: number }
  | { type: 'resume'; requestId: number }
  | { type: 'release'; requestId: number }
  | { type: 'adopt'; requestId: number; state: ControllerHandoverState; fds: number[] }
  | { type: 'start'; requestId: number }
  | { type: 'checkpoint-for-restart'; requestId: number }
  /** The control API changes the running controller's namespaces (answered like the live-upgrade requests). */
  | { type: 'namespace'; requestId: number; change: NamespaceChange }
  | SwapToWorker
  /** The control API's SetControllerLimits (answered the same way). */
  | { type: 'limits'; requestId: number; limits: ControllerIoLimits };

/** A live-upgrade request to the worker, without its request id. */
export type UpgradeRequest = DistributiveOmit<Exclude<MainToWorker, { type: 'shutdown' } | { type: 'stats' } | SwapToWorker>, 'requestId'>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type UpgradeMessage = Exclude<MainToWorker, { type: 'shutdown' } | { type: 'stats' } | { type: 'activate' } | SwapToWorker>;

/** Progress of a swap goes to the main thread at most this often (each one is an operation update there). */
const SWAP_PROGRESS_INTERVAL_MS = 250;

/** What the worker is started with. */
export interface WorkerData {
  config: ControllerConfig;
  /** Build the controller from a predecessor's snapshot (`adopt`) instead of listening. */
  takeOver?: boolean;
  /** Crash recovery: the holder's socket (the controller recovers from what the holder kept, if anything). */
  holderSocket?: string;
  /** A standby data plane's worker: loaded, it says `loaded` and starts its controller on `activate`. */
  standby?: boolean;
  /** The fields the main thread's logger for this controller binds (the daemon's `controller` id): the thread's too. */
  logFields?: LogFields;
}

/** What the control API reports about a running controller. */
export interface ControllerSnapshot {
  stats: NvmeControllerStats;
  clientConnected: boolean;
  identity: { serialNumber: string; modelNumber: string; firmwareRevision: string; subsystemNqn: string; ieeeOui: number; controllerId: number };
  /** `uri`: as the controller serves it (after a crash recovery, the checkpoint's, which the registry then saves). */
  namespaces: Array<{ nsid: number; uri: string; backend: string; blockSize: number; blocks: number; ids: NamespaceIds; paths?: NamespacePath[] }>;
  /** The vfio-user side: guest memory regions mapped now, and DMA_MAP / DMA_UNMAP requests since the start. */
  dma: { mappings: number; mapRequests: number; unmapRequests: number };
}

const port = parentPort;
if (!port) throw new Error('src/serve/worker.ts must run in a worker thread');

const data = workerData as WorkerData;
const config = data.config;
// Every line of this controller names it the same way as the main thread's do: no second field for the same fact.
const logger = rootLogger.child({ ...data.logFields, socket: config.socketPath });
let running: RunningController | undefined;
let pending: PendingTakeOver | undefined;
let shutdownRequested = false;
let upgradeRequests: Promise<unknown> = Promise.resolve();

port.on('message', (message: MainToWorker) => {
  switch (message.type) {
    case 'stats':
      port.postMessage({ type: 'stats', requestId: message.requestId, snapshot: running ? snapshot(running) : null } satisfies WorkerToMain);
      return;
    case 'shutdown':
      shutdownRequested = true;
      void stop();
      return;
    case 'activate':
      begin();
      return;
    case 'swap':
      void runSwap(message.requestId, message.request);
      return;
    case 'swap-committed':
      swapCommits.get(message.requestId)?.(message.error);
      swapCommits.delete(message.requestId);
      return;
    default:
      // One at a time, in order: a resume sent while a quiesce still waits for I/O must come after it.
      upgradeRequests = upgradeRequests.then(() => handleUpgradeRequest(message)).then(
        (reply) => port.postMessage({ type: 'reply', requestId: message.requestId, ...reply } satisfies WorkerToMain),
        (error: unknown) =>
          port.postMessage({ type: 'reply', requestId: message.requestId, error: messageOf(error) } satisfies WorkerToMain),
      );
      return;
  }
});

async function handleUpgradeRequest(
  message: UpgradeMessage,
): Promise<{ state?: ControllerHandoverState; fds?: number[] }> {
  switch (message.type) {
    case 'quiesce': {
      if (!running) throw new Error('the controller is not serving');
      const controller = running;
      try {
        await controller.quiesce();
        const fds = new FdCollector();
        const state = controller.snapshot(fds);
        return { state, fds: fds.fds };
      } catch (error) {
        controller.resume();
        throw error;
      }
    }
    case 'resume':
      running?.resume();
      return {};
    case 'release':
      if (running) await running.release();
      running = undefined;
      return {};
    case 'adopt': {
      if (!pending) throw new Error('this worker is not waiting to take over');
      const source = new FdSource(message.fds);
      running = pending.adopt(message.state, source);
      pending = undefined;
      const untaken = source.untaken();
      if (untaken.length > 0) throw new Error(`the snapshot does not name ${untaken.length} of the fds sent with it`);
      return {};
    }
    case 'namespace':
      if (!running) throw new Error('the controller is not serving');
      await running.changeNamespace(message.change);
      return {};
    case 'limits':
      if (!running) throw new Error('the controller is not serving');
      running.setIoLimits(message.limits);
      return {};
    case 'checkpoint-for-restart':
      if (!running) throw new Error('the controller is not serving');
      await running.checkpointForRestart();
      return {};
    case 'start':
      if (!running) throw new Error('nothing to start');
      running.start();
      port!.postMessage({ type: 'ready', activity: running.device.activity } satisfies WorkerToMain);
      return {};
  }
}

/** Swaps waiting for the main thread to persist their switch: called with its error, or undefined once saved. */
const swapCommits = new Map<number, (error: string | undefined) => void>();

async function runSwap(requestId: number, request: BackingSwapRequest): Promise<void> {
  const post = (message: SwapToMain): void => port!.postMessage(message);
  let reported = 0;
  try {
    if (!running) throw new BackingSwapFailed('SWAP_INTERRUPTED', `namespace ${request.nsid}: the controller is not serving`);
    const outcome = await running.swapBacking(request, {
      onProgress: (progress) => {
        const now = performance.now();
        const last = progress.phase === 'copying' && progress.copiedBytes === progress.passBytes;
        if (now - reported < SWAP_PROGRESS_INTERVAL_MS && progress.copiedBytes !== 0 && !last) return;
        reported = now;
        post({ type: 'swap-progress', requestId, progress });
      },
      commit: (uri) =>
        new Promise<void>((resolve, reject) => {
          swapCommits.set(requestId, (error) => (error === undefined ? resolve() : reject(new BackingSwapFailed('CONTROLLER_SAVE_FAILED', error))));
          post({ type: 'swap-commit', requestId, uri });
        }),
    });
    post({ type: 'swap-done', requestId, outcome });
  } catch (error) {
    post({ type: 'swap-done', requestId, error: messageOf(error), ...(error instanceof BackingSwapFailed ? { reason: error.reason } : {}) });
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function snapshot(controller: RunningController): ControllerSnapshot {
  const identity = controller.identity;
  const messages = controller.server.stats.messages;
  return {
    stats: controller.device.controller.stats(),
    clientConnected: controller.server.clientConnected,
    identity: {
      serialNumber: identity.serialNumber,
      modelNumber: identity.modelNumber,
      firmwareRevision: identity.firmwareRevision,
      subsystemNqn: identity.subsystemNqn,
      ieeeOui: identity.ieeeOui ?? 0,
      controllerId: identity.controllerId ?? 0,
    },
    namespaces: controller.namespaces.map(({ nsid, uri, namespace, ids }) => ({
      nsid,
      uri,
      backend: namespace.description,
      blockSize: namespace.blockSize,
      blocks: namespace.blockCount,
      ids,
      ...(namespace.pathStates ? { paths: namespace.pathStates() } : {}),
    })),
    dma: { mappings: controller.device.dmaMappings, mapRequests: messages['DMA_MAP'] ?? 0, unmapRequests: messages['DMA_UNMAP'] ?? 0 },
  };
}

async function stop(): Promise<void> {
  if (running) await running.close();
  else if (pending) await pending.abandon();
  port!.postMessage({ type: 'stopped' } satisfies WorkerToMain);
  port!.close();
}

let begun = false;

/** Starts the controller (or the take-over); a standby worker waits for `activate` to call this. */
function begin(): void {
  if (begun) return;
  begun = true;
  if (data.takeOver) {
    prepareTakeOver(config, logger).then(
      (prepared) => {
        pending = prepared;
        port!.postMessage({ type: 'prepared' } satisfies WorkerToMain);
        if (shutdownRequested) void stop();
      },
      (error: unknown) => {
        port!.postMessage({ type: 'failed', message: messageOf(error) } satisfies WorkerToMain);
        port!.close();
      },
    );
  } else {
    startController(config, logger, data.holderSocket).then(
      (controller) => {
        running = controller;
        port!.postMessage({ type: 'ready', activity: controller.device.activity } satisfies WorkerToMain);
        if (shutdownRequested) void stop();
      },
      (error: unknown) => {
        port!.postMessage({ type: 'failed', message: messageOf(error) } satisfies WorkerToMain);
        port!.close();
      },
    );
  }
}

// A standby's worker has loaded every module by now; it starts when the holder needs it.
if (data.standby) port.postMessage({ type: 'loaded' } satisfies WorkerToMain);
else begin();
