/**
 * Live upgrade of `vfiod serve` (docs/restart.md): the running process listens on a hand-over socket; a successor
 * (`vfiod serve --take-over`, same options) connects, and the running process hands it every controller's listening
 * socket, client connection, guest-memory fds, eventfds and state, then exits 0. The guest's device never
 * disconnects.
 *
 * The exchange, on one connection (handover-channel.ts):
 *   successor: hello {protocol, version, sockets}        (its namespaces are already open)
 *   running:   quiesces every controller (stops reading the client at a message boundary, stops fetching, waits
 *              for in-flight I/O and posts its completions, flushes replies), snapshots each
 *   running:   state {controllers: [{socketPath, state, fds}], handoverFd} + all those fds (SCM_RIGHTS)
 *   successor: restores each controller in its worker, without acting yet
 *   successor: commit                                    (or abort {reason}: the running process resumes)
 *   running:   released                                  (from here on it never touches a client again)
 *   successor: starts serving; running: flushes its namespaces and exits 0 without unlinking any socket.
 * If anything fails before the running process reads `commit` (a refused hello, a failed quiesce, the successor's
 * abort, its crash or silence), the running process resumes serving and logs why.
 */
import fs from 'node:fs';
import path from 'node:path';
import { native, POLL_READABLE, type FdWatcher } from '../native/index.js';
import type { Logger } from '../util/log.js';
import { clearStaleSocket, removeOwnSocket, socketIdentity, type SocketIdentity } from '../util/socket-path.js';
import type { ControllerHandoverState } from './controller.js';
import { HandoverChannel } from './handover-channel.js';
import type { ControllerConfig } from './config.js';
import type { UpgradeRequest } from './worker.js';

/** What the hand-over needs of a controller's worker thread (supervisor.ts's ControllerWorker is one). */
export interface HandoverWorker {
  readonly config: ControllerConfig;
  request(request: UpgradeRequest): Promise<{ state?: ControllerHandoverState; fds?: number[] }>;
}

export const HANDOVER_PROTOCOL = 1;
/** How long the running process waits for the successor's hello, and then for its commit. */
const HELLO_TIMEOUT_MS = 10_000;
const COMMIT_TIMEOUT_MS = 60_000;
/** How long quiescing may take (in-flight I/O on a slow backend) before the upgrade is abandoned. */
const QUIESCE_TIMEOUT_MS = 30_000;
/** How long the successor waits for the running process's state, and for `released` after its commit. */
const STATE_TIMEOUT_MS = QUIESCE_TIMEOUT_MS + 15_000;
const RELEASED_TIMEOUT_MS = 15_000;

/** The default hand-over socket: next to the first controller's socket, `<name>.handover.sock`. */
export function defaultHandoverSocket(socketPath: string): string {
  const parsed = path.parse(path.resolve(socketPath));
  return path.join(parsed.dir, `${parsed.name}.handover.sock`);
}

export function packageVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/**
 * What a running `vfiod serve` tells `vfiod upgrade` (a `describe` request on the hand-over socket): how to start its
 * successor. Its stdout and stderr travel with it (SCM_RIGHTS), so the successor logs where it logged.
 */
export interface ServeDescription {
  pid: number;
  version: string;
  /** The `vfiod serve` options it was started with, without `--take-over` and `--report-to-parent` (unknown when not started from the command line). */
  argv?: string[];
  /** Its working directory (relative paths in `argv` are relative to it). */
  cwd: string;
  sockets: string[];
}

/**
 * The running process's side: accepts one successor at a time on the hand-over socket. `handedOver` is called once
 * a successor has committed; the caller releases the controllers and exits. A `describe` request (from `vfiod
 * upgrade`) is answered with `describe()` and the process's stdout and stderr, and changes nothing.
 */
export class HandoverListener {
  private watcher: FdWatcher | undefined;
  private busy = false;
  private closed = false;
  private identity: SocketIdentity | undefined;

  private constructor(
    readonly socketPath: string,
    private readonly listenFd: number,
    private readonly workers: readonly HandoverWorker[],
    private readonly log: Logger,
    private readonly handedOver: () => void,
    private readonly describe: () => Omit<ServeDescription, 'sockets'>,
  ) {
    this.identity = socketIdentity(socketPath);
    this.watcher = native.createWatcher(listenFd, this.onAcceptable);
    this.watcher.start(POLL_READABLE);
  }

  /** Creates the hand-over socket (a stale one is replaced; a live one is refused). */
  static async listen(
    socketPath: string,
    workers: readonly HandoverWorker[],
    log: Logger,
    handedOver: () => void,
    describe: () => Omit<ServeDescription, 'sockets'>,
  ): Promise<HandoverListener> {
    await clearStaleSocket(socketPath, 'vfiod (for a hand-over)');
    const fd = native.listenUnix(socketPath, 0o600, 1);
    return new HandoverListener(socketPath, fd, workers, log, handedOver, describe);
  }

  /** A successor takes over the predecessor's hand-over socket (already listening). */
  static adopt(
    socketPath: string,
    fd: number,
    workers: readonly HandoverWorker[],
    log: Logger,
    handedOver: () => void,
    describe: () => Omit<ServeDescription, 'sockets'>,
  ): HandoverListener {
    return new HandoverListener(socketPath, fd, workers, log, handedOver, describe);
  }

  /** Stops listening; `removeFile` (a normal shutdown) also removes the socket file if it is still ours. */
  close(removeFile: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
    try {
      native.close(this.listenFd);
    } catch {
      // released either way
    }
    if (removeFile) removeOwnSocket(this.socketPath, this.identity);
  }

  private readonly onAcceptable = (events: number): void => {
    if (this.closed || events < 0) return;
    for (;;) {
      let fd: number | null;
      try {
        fd = native.accept(this.listenFd);
      } catch (error) {
        this.log.error('accepting a hand-over connection failed', { error });
        return;
      }
      if (fd === null) return;
      if (this.busy) {
        this.log.warn('refused a hand-over connection: an upgrade is already in progress');
        native.close(fd);
        continue;
      }
      this.busy = true;
      void this.handOver(new HandoverChannel(fd)).finally(() => {
        this.busy = false;
      });
    }
  };

  private async handOver(channel: HandoverChannel): Promise<void> {
    const started = Date.now();
    let hello;
    try {
      hello = (await channel.receive(HELLO_TIMEOUT_MS, 'hello')).message;
    } catch (error) {
      this.log.warn('hand-over connection ended before its hello', { reason: (error as Error).message });
      channel.close();
      return;
    }
    const refuse = async (reason: string): Promise<void> => {
      this.log.warn('upgrade refused; serving on', { reason });
      if (!channel.isClosed) {
        channel.send({ type: 'refused', reason });
        await channel.drained();
      }
      channel.close();
    };
    if (hello.type === 'describe') {
      const description: ServeDescription = { ...this.describe(), sockets: this.workers.map((worker) => path.resolve(worker.config.socketPath)) };
      this.log.info('described this process for an upgrade', { argv: description.argv });
      // stdout and stderr, those that are open, in that order ('output' names them).
      const output = (['stdout', 'stderr'] as const).filter((_, fd) => isOpen(fd + 1));
      channel.send({ type: 'description', protocol: HANDOVER_PROTOCOL, ...description, output }, output.map((name) => (name === 'stdout' ? 1 : 2)));
      await channel.drained();
      channel.close();
      return;
    }
    if (hello.type !== 'hello' || hello['protocol'] !== HANDOVER_PROTOCOL) {
      await refuse(`the successor speaks hand-over protocol ${String(hello['protocol'])}, this process ${HANDOVER_PROTOCOL}`);
      return;
    }
    const ours = this.workers.map((worker) => path.resolve(worker.config.socketPath)).sort();
    const theirs = (Array.isArray(hello['sockets']) ? (hello['sockets'] as unknown[]).map(String) : []).map((p) => path.resolve(p)).sort();
    if (JSON.stringify(ours) !== JSON.stringify(theirs)) {
      await refuse(`the successor serves ${theirs.join(', ') || 'nothing'}; this process serves ${ours.join(', ')}`);
      return;
    }
    this.log.info('upgrade requested: quiescing the controllers', { successorVersion: hello['version'] });

    // Quiesce every controller; any failure resumes the ones that did.
    const results = await Promise.allSettled(this.workers.map((worker) => withTimeout(worker.request({ type: 'quiesce' }), QUIESCE_TIMEOUT_MS, 'quiescing')));
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    const quiescedAt = Date.now();
    if (failed) {
      this.resumeAll();
      await refuse(`a controller could not be quiesced: ${String((failed.reason as Error)?.message ?? failed.reason)}`);
      return;
    }
    const controllers: Array<{ socketPath: string; state: ControllerHandoverState; fdCount: number }> = [];
    const fds: number[] = [];
    results.forEach((result, index) => {
      const value = (result as PromiseFulfilledResult<{ state?: ControllerHandoverState; fds?: number[] }>).value;
      controllers.push({ socketPath: this.workers[index]!.config.socketPath, state: value.state!, fdCount: value.fds!.length });
      fds.push(...value.fds!);
    });
    const handoverFd = fds.length;
    fds.push(this.listenFd);
    try {
      channel.send({ type: 'state', protocol: HANDOVER_PROTOCOL, version: packageVersion(), controllers, handoverFd }, fds);
      const reply = (await channel.receive(COMMIT_TIMEOUT_MS, "the successor's commit")).message;
      if (reply.type !== 'commit') throw new Error(reply.type === 'abort' ? String(reply['reason']) : `unexpected ${reply.type}`);
    } catch (error) {
      this.resumeAll();
      this.log.error('upgrade failed: the successor did not take over; serving on', {
        reason: (error as Error).message,
        pausedMillis: Date.now() - quiescedAt,
      });
      channel.close();
      return;
    }
    // Committed: from here on this process never serves a client again.
    this.watcher?.stop();
    channel.send({ type: 'released' });
    await channel.drained();
    channel.close();
    this.log.info('handed over to the successor', { millis: Date.now() - started, quiesceMillis: quiescedAt - started });
    this.handedOver();
  }

  private resumeAll(): void {
    for (const worker of this.workers) {
      worker.request({ type: 'resume' }).catch((error: unknown) =>
        this.log.error('resuming a controller failed', { socket: worker.config.socketPath, error: (error as Error).message }),
      );
    }
  }
}

/**
 * The successor's side: `workers` were started in take-over mode and have opened their namespaces. Connects to the
 * running process, receives and restores every controller, commits, and starts them once the running process has
 * released them. Returns the hand-over socket's listening fd, which this process now owns, and what it took over. Throws (after telling
 * the running process to resume) when the take-over fails; the caller then exits without serving.
 */
export interface TakenOver {
  /** The hand-over socket's listening fd, which this process now owns. */
  handoverFd: number;
  previousVersion: string;
  /** From connecting to serving. */
  millis: number;
}

export async function takeOver(handoverSocket: string, workers: readonly HandoverWorker[], log: Logger): Promise<TakenOver> {
  const started = Date.now();
  let channel: HandoverChannel;
  try {
    channel = HandoverChannel.connect(handoverSocket);
  } catch (error) {
    throw new Error(`cannot reach the running vfiod at ${handoverSocket}: ${(error as Error).message}`);
  }
  try {
    channel.send({
      type: 'hello',
      protocol: HANDOVER_PROTOCOL,
      version: packageVersion(),
      sockets: workers.map((worker) => path.resolve(worker.config.socketPath)),
    });
    const { message, fds } = await channel.receive(STATE_TIMEOUT_MS, "the running process's state");
    if (message.type === 'refused') throw new Error(`the running vfiod refused the upgrade: ${String(message['reason'])}`);
    if (message.type !== 'state') throw new Error(`unexpected ${message.type} from the running vfiod`);
    const receivedAt = Date.now();
    const controllers = message['controllers'] as Array<{ socketPath: string; state: ControllerHandoverState; fdCount: number }>;
    const handoverFd = fds[Number(message['handoverFd'])];
    if (handoverFd === undefined) throw new Error('the hand-over socket did not come with the state');
    let offset = 0;
    const adoptions = controllers.map((controller) => {
      const worker = workers.find((candidate) => path.resolve(candidate.config.socketPath) === path.resolve(controller.socketPath));
      const slice = fds.slice(offset, offset + controller.fdCount);
      offset += controller.fdCount;
      if (!worker) return Promise.reject(new Error(`no controller configured for ${controller.socketPath}`));
      return worker.request({ type: 'adopt', state: controller.state, fds: slice });
    });
    const results = await Promise.allSettled(adoptions);
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failed) {
      const reason = String((failed.reason as Error)?.message ?? failed.reason);
      channel.send({ type: 'abort', reason });
      await channel.drained();
      throw new Error(`restoring the controllers failed: ${reason}`);
    }
    channel.send({ type: 'commit' });
    const released = await channel.receive(RELEASED_TIMEOUT_MS, "the running process's release");
    if (released.message.type !== 'released') throw new Error(`unexpected ${released.message.type} after the commit`);
    await Promise.all(workers.map((worker) => worker.request({ type: 'start' })));
    const millis = Date.now() - started;
    log.info('upgrade complete: serving', {
      controllers: workers.length,
      previousVersion: message['version'],
      millis,
      restoreMillis: Date.now() - receivedAt,
    });
    channel.close();
    return { handoverFd, previousVersion: String(message['version']), millis };
  } catch (error) {
    channel.close();
    throw error;
  }
}

function isOpen(fd: number): boolean {
  try {
    fs.fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} took longer than ${timeoutMs / 1000} s`)), timeoutMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error as Error);
      },
    );
  });
}
