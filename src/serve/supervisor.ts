/**
 * Main-thread side of `vfiod serve`: one worker thread per controller, clean shutdown on SIGTERM/SIGINT.
 * A controller that fails or crashes is reported and does not take the others down.
 */
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Logger, rootLogger } from '../util/log.js';
import type { ControllerConfig } from './config.js';
import type { ControllerSnapshot, MainToWorker, WorkerToMain } from './worker.js';

const SNAPSHOT_TIMEOUT_MS = 5_000;

const WORKER_URL = new URL('./worker.js', import.meta.url);
const SHUTDOWN_TIMEOUT_MS = 15_000;
const TERMINATE_TIMEOUT_MS = 3_000;

export class ControllerWorker {
  private readonly worker: Worker;
  readonly ready: Promise<void>;
  readonly exited: Promise<number>;
  private nextRequestId = 1;
  private gone = false;
  private readonly snapshotWaiters = new Map<number, (snapshot: ControllerSnapshot | null) => void>();

  constructor(readonly config: ControllerConfig, private readonly logger: Logger) {
    this.worker = new Worker(fileURLToPath(WORKER_URL), { workerData: config, name: `vfiod ${config.socketPath}` });
    this.exited = new Promise((resolve) => this.worker.once('exit', resolve));
    // A worker that is gone answers no more snapshot requests.
    void this.exited.then(() => {
      this.gone = true;
      for (const resolve of this.snapshotWaiters.values()) resolve(null);
      this.snapshotWaiters.clear();
    });
    this.ready = new Promise((resolve, reject) => {
      this.worker.on('message', (message: WorkerToMain) => {
        if (message.type === 'ready') resolve();
        if (message.type === 'failed') reject(new Error(message.message));
        if (message.type === 'stats') {
          this.snapshotWaiters.get(message.requestId)?.(message.snapshot);
          this.snapshotWaiters.delete(message.requestId);
        }
      });
      this.worker.once('error', (error) => {
        this.logger.error('controller worker crashed', { socket: config.socketPath, error });
        reject(error);
      });
      void this.exited.then((code) => reject(new Error(`controller worker exited with code ${code} before it was ready`)));
    });
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

/** Starts every controller, waits until all listen (or one fails), and stops them all on SIGTERM/SIGINT. */
export async function serve(configs: ControllerConfig[], logger: Logger = rootLogger): Promise<number> {
  const log = logger.child({ component: 'serve' });
  const workers = configs.map((config) => new ControllerWorker(config, log));
  let stopping: Promise<void> | undefined;
  const stopAll = (): Promise<void> => (stopping ??= Promise.all(workers.map((worker) => worker.stop())).then(() => {}));

  const results = await Promise.allSettled(workers.map((worker) => worker.ready));
  const failures = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failures.length > 0) {
    for (const failure of failures) log.error('controller failed to start', { error: String(failure.reason?.message ?? failure.reason) });
    await stopAll();
    return 1;
  }

  return new Promise<number>((resolve) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (signalled) return;
      signalled = true;
      log.info('shutting down', { signal });
      void stopAll().then(() => resolve(0));
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // A worker that exits on its own (crash) is logged; the others keep serving.
    for (const worker of workers) {
      void worker.exited.then((code) => {
        if (!signalled) log.error('controller exited unexpectedly', { socket: worker.config.socketPath, code });
      });
    }
  });
}
