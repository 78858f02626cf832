/**
 * Worker-thread entry: one emulated controller per worker. The main thread sends `{ type: 'shutdown' }`; the worker
 * answers `{ type: 'ready' }` once listening, `{ type: 'failed', message }` if it could not start, and
 * `{ type: 'stopped' }` after a clean shutdown.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { rootLogger } from '../util/log.js';
import type { ControllerConfig } from './config.js';
import { startController, type RunningController } from './controller.js';
import type { NvmeControllerStats } from '../nvme/stats.js';

export type WorkerToMain =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'stopped' }
  | { type: 'stats'; requestId: number; snapshot: ControllerSnapshot | null };
/** `stats` asks for a ControllerSnapshot (the control API's GetController); `vfiod serve` never sends it. */
export type MainToWorker = { type: 'shutdown' } | { type: 'stats'; requestId: number };

/** What the control API reports about a running controller. */
export interface ControllerSnapshot {
  stats: NvmeControllerStats;
  clientConnected: boolean;
  identity: { serialNumber: string; modelNumber: string; firmwareRevision: string; subsystemNqn: string };
  namespaces: Array<{ nsid: number; backend: string; blockSize: number; blocks: number }>;
}

const port = parentPort;
if (!port) throw new Error('src/serve/worker.ts must run in a worker thread');

const config = workerData as ControllerConfig;
const logger = rootLogger.child({ worker: config.socketPath });
let running: RunningController | undefined;
let shutdownRequested = false;

port.on('message', (message: MainToWorker) => {
  if (message.type === 'stats') {
    port.postMessage({ type: 'stats', requestId: message.requestId, snapshot: running ? snapshot(running) : null } satisfies WorkerToMain);
    return;
  }
  if (message.type !== 'shutdown') return;
  shutdownRequested = true;
  void stop();
});

function snapshot(controller: RunningController): ControllerSnapshot {
  const identity = controller.identity;
  return {
    stats: controller.device.controller.stats(),
    clientConnected: controller.server.clientConnected,
    identity: {
      serialNumber: identity.serialNumber,
      modelNumber: identity.modelNumber,
      firmwareRevision: identity.firmwareRevision,
      subsystemNqn: identity.subsystemNqn,
    },
    namespaces: controller.namespaces.map((namespace, index) => ({
      nsid: index + 1,
      backend: namespace.description,
      blockSize: namespace.blockSize,
      blocks: namespace.blockCount,
    })),
  };
}

async function stop(): Promise<void> {
  if (running) await running.close();
  port!.postMessage({ type: 'stopped' } satisfies WorkerToMain);
  port!.close();
}

startController(config, logger).then(
  (controller) => {
    running = controller;
    port.postMessage({ type: 'ready' } satisfies WorkerToMain);
    if (shutdownRequested) void stop();
  },
  (error: unknown) => {
    port.postMessage({ type: 'failed', message: error instanceof Error ? error.message : String(error) } satisfies WorkerToMain);
    port.close();
  },
);
