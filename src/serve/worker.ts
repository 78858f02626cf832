/**
 * Worker-thread entry: one emulated controller per worker. The main thread sends `{ type: 'shutdown' }`; the worker
 * answers `{ type: 'ready' }` once listening, `{ type: 'failed', message }` if it could not start, and
 * `{ type: 'stopped' }` after a clean shutdown.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { rootLogger } from '../util/log.js';
import type { ControllerConfig } from './config.js';
import { startController, type RunningController } from './controller.js';

export type WorkerToMain = { type: 'ready' } | { type: 'failed'; message: string } | { type: 'stopped' };
export type MainToWorker = { type: 'shutdown' };

const port = parentPort;
if (!port) throw new Error('src/serve/worker.ts must run in a worker thread');

const config = workerData as ControllerConfig;
const logger = rootLogger.child({ worker: config.socketPath });
let running: RunningController | undefined;
let shutdownRequested = false;

port.on('message', (message: MainToWorker) => {
  if (message.type !== 'shutdown') return;
  shutdownRequested = true;
  void stop();
});

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
