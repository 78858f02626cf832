/**
 * Crash recovery's holder (docs/restart.md, "Crash recovery: the holder"): `vfiod serve --crash-recovery` runs this
 * on its main thread. It keeps duplicates of every fd the data plane needs (listening sockets, client connections,
 * guest-memory memfds, eventfds, a checkpoint memfd) and starts the data plane, `vfiod serve ... --data-plane`, as
 * its child. When the data plane dies (SIGKILL, a native crash, an OOM kill), the fds stay open here, so the guests'
 * vfio-user connections do not close; the holder starts a new data plane at once and hands the fds back.
 *
 * Protocol: one connection per controller on the holder socket, HandoverChannel frames (JSON + SCM_RIGHTS):
 *   data plane: attach {controller: <absolute socket path>, protocol?}
 *   holder:     held {fds: [{number, name?}]} + those fds (empty the first time), or refused {reason}
 *   data plane: renumber {numbers}   the local fd number of each fd just received, in the same order: from now on
 *                                    the holder keys them by these (HolderClient.attach sends it)
 *   data plane: keep {fds: [{number, name?}]} + fds    hold duplicates (a number already held is replaced)
 *   data plane: drop {numbers}                         close those copies
 *   data plane: detach                                 the controller stopped cleanly: close everything it held
 *   holder:     detached
 * A connection that closes without detach (the data plane crashed) leaves everything held for the next attach.
 * `number` is the fd's number in the data plane that kept it.
 *
 * A planned restart (an upgrade, `vfiod upgrade` or SIGHUP to the holder): on a connection of its own,
 *   client:     restart {bin?}          bin: the vfiod.js to start the next data plane from (another installation)
 *   holder:     restarted {pid, millis, version?} once every controller attached again, or restart-failed {reason}
 * The holder sends the data plane SIGUSR2: it quiesces its controllers (no command in flight, every reply sent),
 * checkpoints them and exits with RESTART_EXIT_CODE, holding nothing back; the next data plane recovers from those
 * checkpoints with nothing to run again. A data plane says `restart-ready` over its IPC channel once it handles
 * SIGUSR2 (before, the signal would kill it: a crash); the holder holds the SIGUSR2 back until then.
 *
 * The holder stays small on purpose: no worker threads, no namespaces, no NVMe; it imports the log, the addon, the
 * hand-over channel and the socket-path probe, nothing else. Nothing a data plane sends can crash it: a frame it
 * does not understand closes that one connection, and every controller's fds stay held.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { native, POLL_READABLE, type FdWatcher } from '../native/index.js';
import { rootLogger, type Logger } from '../util/log.js';
import { catchEarlySignals } from '../util/early-signals.js';
import { clearStaleSocket, removeOwnSocket, socketIdentity, type SocketIdentity } from '../util/socket-path.js';
import { HandoverChannel, type HandoverMessage } from './handover-channel.js';
import { type DataPlaneToHolder, HOLDER_PROTOCOL, type HolderToDataPlane, RESTART_EXIT_CODE } from './holder-protocol.js';
import { notifyReady, notifyReloading, notifyStatus, notifyStopping, startWatchdog } from '../util/sd-notify.js';
import { makeDirectory } from '../util/make-directory.js';

export { HOLDER_PROTOCOL };


/** A fd the holder keeps for a controller: `number` is its number in the data plane that kept it. */
interface HeldFd {
  number: number;
  fd: number;
  name?: string;
}

interface ControllerEntry {
  controller: string;
  held: Map<number, HeldFd>;
  channel: HandoverChannel | undefined;
  /** The order of the last `held` reply, until the data plane renumbers it. */
  sentOrder: number[] | undefined;
}

/** Longest accepted fd name (they are labels such as 'checkpoint'). */
const MAX_NAME = 256;

/** The default holder socket: next to the first controller's socket, `<name>.holder.sock`. */
export function defaultHolderSocket(socketPath: string): string {
  const parsed = path.parse(path.resolve(socketPath));
  return path.join(parsed.dir, `${parsed.name}.holder.sock`);
}

export interface HolderEvents {
  /** A controller attached; `reattached` when it had been attached before and fds were kept for it. */
  attached?(controller: string, reattached: boolean, fdCount: number): void;
  /** A planned restart was asked for on `channel`; the callee answers on it. */
  restart?(channel: HandoverChannel, bin: string | undefined): void;
}

/**
 * The holder's socket and the fds it keeps, per controller (no process management: see runHolder). Tests run it
 * in-process against a fake data plane.
 */
export class Holder {
  private readonly controllers = new Map<string, ControllerEntry>();
  private readonly channels = new Set<HandoverChannel>();
  /** Connections that were refused or detached and close once their last reply is sent: they get no say any more. */
  private readonly finishing = new WeakSet<HandoverChannel>();
  private watcher: FdWatcher | undefined;
  private closed = false;
  private readonly identity: SocketIdentity;

  private constructor(
    readonly socketPath: string,
    private readonly listenFd: number,
    private readonly log: Logger,
    private readonly events: HolderEvents,
  ) {
    this.identity = socketIdentity(socketPath);
    this.watcher = native.createWatcher(listenFd, this.onAcceptable);
    this.watcher.start(POLL_READABLE);
  }

  /** Listens on `socketPath` (mode 0600): a stale socket file is replaced, a live one is refused. */
  static async listen(socketPath: string, log: Logger = rootLogger.child({ component: 'holder' }), events: HolderEvents = {}): Promise<Holder> {
    const resolved = path.resolve(socketPath);
    await clearStaleSocket(resolved, 'vfiod holder');
    makeDirectory(path.dirname(resolved));
    const fd = native.listenUnix(resolved, 0o600, 64);
    return new Holder(resolved, fd, log, events);
  }

  /** How many fds are held, per controller socket path (tests, logs). */
  heldCounts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const entry of this.controllers.values()) counts[entry.controller] = entry.held.size;
    return counts;
  }

  get totalHeld(): number {
    let total = 0;
    for (const entry of this.controllers.values()) total += entry.held.size;
    return total;
  }

  /** Stops listening, closes every connection and every held fd, removes the socket file if it is still ours. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
    closeQuietly(this.listenFd);
    for (const channel of this.channels) channel.close('the holder stops');
    this.channels.clear();
    for (const entry of this.controllers.values()) for (const held of entry.held.values()) closeQuietly(held.fd);
    this.controllers.clear();
    removeOwnSocket(this.socketPath, this.identity);
  }

  private readonly onAcceptable = (events: number): void => {
    if (this.closed || events < 0) return;
    for (;;) {
      let fd: number | null;
      try {
        fd = native.accept(this.listenFd);
      } catch (error) {
        this.log.error('accepting a data-plane connection failed', { error: (error as Error).message });
        return;
      }
      if (fd === null) return;
      let channel: HandoverChannel;
      try {
        channel = new HandoverChannel(fd);
      } catch (error) {
        this.log.error('cannot watch a data-plane connection', { error: (error as Error).message });
        closeQuietly(fd);
        continue;
      }
      this.channels.add(channel);
      this.serveChannel(channel);
    }
  };

  /**
   * Handles one connection's messages as they are parsed (so a message the data plane sent just before it died is
   * never lost), until it closes. Nothing in them may throw out of here.
   */
  private serveChannel(channel: HandoverChannel): void {
    let entry: ControllerEntry | undefined;
    channel.onMessage(({ message, fds }) => {
      if (this.finishing.has(channel)) {
        for (const fd of fds) closeQuietly(fd);
        return;
      }
      try {
        entry = this.handle(channel, entry, message, fds);
      } catch (error) {
        for (const fd of fds) closeQuietly(fd);
        this.log.warn('closing a data-plane connection: bad message', {
          controller: entry?.controller,
          type: String(message.type).slice(0, 64),
          reason: (error as Error).message,
        });
        channel.close('bad message');
      }
    });
    channel.onClose((reason) => {
      this.channels.delete(channel);
      if (!entry || entry.channel !== channel) return;
      entry.channel = undefined;
      entry.sentOrder = undefined;
      if (!this.closed) {
        this.log.warn('controller connection lost without detach; holding its fds for the next data plane', {
          controller: entry.controller,
          fds: entry.held.size,
          reason,
        });
      }
    });
  }

  /** Handles one message; returns the connection's controller. Throws on a message to reject (the caller closes). */
  private handle(channel: HandoverChannel, entry: ControllerEntry | undefined, message: HandoverMessage, fds: number[]): ControllerEntry | undefined {
    if (!entry) {
      if (message.type === 'restart' && this.events.restart) {
        if (fds.length > 0) throw new Error('restart carries no fds');
        const bin = message['bin'];
        if (bin !== undefined && (typeof bin !== 'string' || !path.isAbsolute(bin) || bin.length > 4096)) throw new Error('restart: bin must be an absolute path');
        this.events.restart(channel, bin);
        return undefined;
      }
      if (message.type !== 'attach') throw new Error(`expected attach, got ${String(message.type).slice(0, 64)}`);
      if (fds.length > 0) throw new Error('attach carries no fds');
      const protocol = message['protocol'];
      if (protocol !== undefined && protocol !== HOLDER_PROTOCOL) {
        this.refuse(channel, `the data plane speaks holder protocol ${String(protocol)}, the holder ${HOLDER_PROTOCOL}`);
        return undefined;
      }
      const controller = message['controller'];
      if (typeof controller !== 'string' || !path.isAbsolute(controller) || controller.length > 4096) {
        throw new Error('attach needs an absolute controller socket path');
      }
      const existing = this.controllers.get(controller);
      if (existing?.channel && !existing.channel.isClosed) {
        this.refuse(channel, `${controller} is attached already`);
        return undefined;
      }
      const attached = existing ?? { controller, held: new Map<number, HeldFd>(), channel: undefined, sentOrder: undefined };
      attached.channel = channel;
      this.controllers.set(controller, attached);
      const held = [...attached.held.values()];
      attached.sentOrder = held.map((h) => h.number);
      channel.send(
        { type: 'held', protocol: HOLDER_PROTOCOL, fds: held.map((h) => (h.name !== undefined ? { number: h.number, name: h.name } : { number: h.number })) },
        held.map((h) => h.fd),
      );
      this.log.info(existing ? 'controller re-attached' : 'controller attached', { controller, fds: held.length });
      this.events.attached?.(controller, existing !== undefined, held.length);
      return attached;
    }
    switch (message.type) {
      case 'renumber': {
        if (fds.length > 0) throw new Error('renumber carries no fds');
        const order = entry.sentOrder;
        const numbers = message['numbers'];
        if (!order) throw new Error('renumber without a held reply to renumber');
        if (!Array.isArray(numbers) || numbers.length !== order.length || !numbers.every(isFdNumber) || new Set(numbers).size !== numbers.length) {
          throw new Error(`renumber needs ${order.length} distinct fd numbers`);
        }
        const renumbered = new Map<number, HeldFd>();
        order.forEach((old, index) => {
          const held = entry.held.get(old)!;
          held.number = numbers[index] as number;
          renumbered.set(held.number, held);
        });
        entry.held = renumbered;
        entry.sentOrder = undefined;
        return entry;
      }
      case 'keep': {
        const list = message['fds'];
        if (!Array.isArray(list) || list.length !== fds.length) throw new Error(`keep names ${Array.isArray(list) ? list.length : 'no'} fds, ${fds.length} arrived`);
        const kept: HeldFd[] = list.map((item: unknown, index) => {
          if (typeof item !== 'object' || item === null) throw new Error('keep: an fd entry is not an object');
          const { number, name } = item as { number?: unknown; name?: unknown };
          if (!isFdNumber(number)) throw new Error(`keep: ${String(number).slice(0, 32)} is not an fd number`);
          if (name !== undefined && (typeof name !== 'string' || name.length > MAX_NAME)) throw new Error('keep: a name is not a short string');
          return { number, fd: fds[index]!, ...(name !== undefined ? { name } : {}) };
        });
        entry.sentOrder = undefined;
        for (const held of kept) {
          const old = entry.held.get(held.number);
          if (old) closeQuietly(old.fd);
          entry.held.set(held.number, held);
        }
        return entry;
      }
      case 'drop': {
        if (fds.length > 0) throw new Error('drop carries no fds');
        const numbers = message['numbers'];
        if (!Array.isArray(numbers) || !numbers.every(isFdNumber)) throw new Error('drop needs fd numbers');
        entry.sentOrder = undefined;
        for (const number of numbers) {
          const held = entry.held.get(number);
          if (!held) continue;
          closeQuietly(held.fd);
          entry.held.delete(number);
        }
        return entry;
      }
      case 'detach': {
        if (fds.length > 0) throw new Error('detach carries no fds');
        for (const held of entry.held.values()) closeQuietly(held.fd);
        const count = entry.held.size;
        entry.held.clear();
        this.controllers.delete(entry.controller);
        entry.channel = undefined;
        this.log.info('controller detached', { controller: entry.controller, closedFds: count });
        this.finishing.add(channel);
        channel.send({ type: 'detached' });
        void channel.drained().then(() => channel.close('detached'));
        return undefined;
      }
      default:
        throw new Error(`unknown message type ${String(message.type).slice(0, 64)}`);
    }
  }

  private refuse(channel: HandoverChannel, reason: string): void {
    this.log.warn('refused a data-plane connection', { reason });
    this.finishing.add(channel);
    channel.send({ type: 'refused', reason });
    void channel.drained().then(() => channel.close('refused'));
  }
}

function isFdNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0x7fffffff;
}

function closeQuietly(fd: number): void {
  try {
    native.close(fd);
  } catch {
    // not ours any more
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The holder process: starts the data plane, restarts it when it dies, stops it on SIGTERM/SIGINT.

/**
 * More than this many restarts within RESTART_WINDOW_MS (systemd's default start limit, 5 in 10 s): a crash loop,
 * and the next restarts wait (1 s, doubling up to 30 s). Slower crashes restart at once: each costs the guests a
 * pause, a back-off would lengthen it.
 */
const RESTARTS_BEFORE_BACKOFF = 5;
const RESTART_WINDOW_MS = 10_000;
const BACKOFF_FIRST_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** After forwarding SIGTERM: how long the data plane may take to stop before it is killed. */
const STOP_TIMEOUT_MS = 20_000;
/** How long a planned restart may take: the old data plane's quiesce (in-flight I/O) and the new one's start. */
const RESTART_TIMEOUT_MS = 120_000;
/** A new standby is started this long after a data plane started (not to compete with its recovery for the CPU). */
const STANDBY_DELAY_MS = 2_000;

const BIN = fileURLToPath(new URL('../../bin/vfiod.js', import.meta.url));

export interface HolderRunOptions {
  /** The holder socket (absolute or relative to the working directory). */
  holderSocket: string;
  /** The data plane's vfiod command: `serve` (default) or `daemon`. */
  command?: 'serve' | 'daemon';
  /** Its options, without --crash-recovery and --holder-socket. */
  dataPlaneArgv: string[];
  /**
   * Keep a standby data plane ready (started, modules and worker threads loaded, waiting), so that a crash costs
   * the recovery and not a Node start (default true). Costs one idle process.
   */
  standby?: boolean;
  log?: Logger;
}

/** The exit status a shell reports for a process that ended by `signal`. */
function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (os.constants.signals[signal] ?? 0);
}

/**
 * Runs the holder until SIGTERM/SIGINT (or a data plane that stops cleanly by itself, or one that fails before any
 * controller attached). Resolves with the exit code.
 */
export async function runHolder(options: HolderRunOptions): Promise<number> {
  // Its socket file and 'holder listening' come before its handlers below: a SIGTERM or SIGINT meanwhile is kept
  // and acted on once they are set, instead of killing the holder with its socket left behind.
  const early = catchEarlySignals();
  const log = options.log ?? rootLogger.child({ component: 'holder' });
  const holderSocket = path.resolve(options.holderSocket);

  let lastExitAt: number | undefined;
  let restarts = 0;
  let everAttached = false;
  let holder: Holder;
  /**
   * The planned restart under way: who asked, from which vfiod.js, and when; `signalled` once the data plane got its
   * SIGUSR2 (one still starting gets it only once it handles it).
   */
  let planned: { requests: HandoverChannel[]; bin: string | undefined; since: number; timer: NodeJS.Timeout; signalled: boolean } | undefined;
  const attachedControllers = new Set<string>();
  let pendingAttach = new Set<string>();
  let requestRestart: (channel: HandoverChannel | undefined, bin: string | undefined) => void = () => undefined;
  const answer = (channels: readonly HandoverChannel[], message: HandoverMessage): void => {
    for (const channel of channels) {
      try {
        channel.send(message);
        void channel.drained().finally(() => channel.close('answered'));
      } catch {
        // the asker has gone
      }
    }
  };
  try {
    holder = await Holder.listen(holderSocket, log, {
      attached: (controller, reattached, fdCount) => {
        everAttached = true;
        attachedControllers.add(controller);
        // How long the guests' device was without a data plane (the pause a crash costs, up to this attach).
        if (lastExitAt !== undefined) log.info('data plane re-attached a controller', { controller, reattached, fds: fdCount, downMillis: Date.now() - lastExitAt, restarts });
        // Only the data planes started after the SIGUSR2'd one exited count: one still starting attaches before it
        // is even asked to checkpoint.
        if (pendingAttach.delete(controller) && pendingAttach.size === 0 && planned?.signalled) {
          const millis = Date.now() - planned.since;
          clearTimeout(planned.timer);
          log.info('planned restart complete: the new data plane serves every controller', { millis, bin: planned.bin ?? BIN });
          answer(planned.requests, { type: 'restarted', pid: currentPid(), millis });
          planned = undefined;
        }
      },
      restart: (channel, bin) => requestRestart(channel, bin),
    });
  } catch (error) {
    early.release();
    log.error('crash recovery unavailable: cannot listen on the holder socket', { holderSocket, error: (error as Error).message });
    return 1;
  }
  log.info('holder listening', { holderSocket, pid: process.pid });
  // Under systemd the holder is the unit's main process: it says when the data plane serves, and pings the watchdog
  // for as long as it holds the guests' connections (a crashing data plane is its business, not systemd's).
  startWatchdog();

  let currentPid = (): number | undefined => undefined;
  return new Promise<number>((resolve) => {
    let child: ChildProcess | undefined;
    let bin = BIN;
    currentPid = () => child?.pid;
    let stopping = false;
    let finished = false;
    let restartTimer: NodeJS.Timeout | undefined;
    let standby: { proc: ChildProcess; ready: boolean; bin: string } | undefined;
    let standbyTimer: NodeJS.Timeout | undefined;
    const useStandby = options.standby !== false;
    let backoffMs = 0;
    const restartTimes: number[] = [];
    let startedAt = 0;
    /** Data planes that said they catch SIGTERM (tellHolderSignalsAreCaught): only those get the holder's SIGTERM. */
    const catchingSignals = new WeakSet<ChildProcess>();
    /** Data planes that said they handle SIGUSR2 (tellHolderRestartIsHandled): only those get a planned restart's. */
    const handlingRestart = new WeakSet<ChildProcess>();

    const finish = (code: number): void => {
      if (finished) return;
      finished = true;
      if (restartTimer) clearTimeout(restartTimer);
      if (planned) {
        // A planned restart still waiting for its data plane: its timer must not keep the stopped holder alive.
        clearTimeout(planned.timer);
        answer(planned.requests, { type: 'restart-failed', reason: 'the holder stopped before the data plane restarted' });
        planned = undefined;
      }
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      dropStandby('the holder stops');
      const held = holder.totalHeld;
      holder.close();
      log.info('holder stopped', { code, closedFds: held });
      resolve(code);
    };

    const spawnDataPlane = (asStandby: boolean): ChildProcess => {
      const argv = [bin, options.command ?? 'serve', ...options.dataPlaneArgv, '--holder-socket', holderSocket, '--data-plane', ...(asStandby ? ['--standby'] : [])];
      // IPC: the data plane stops when the holder is gone (its channel disconnects), so it never runs unprotected.
      const proc = spawn(process.execPath, argv, { stdio: ['inherit', 'inherit', 'inherit', 'ipc'] });
      proc.channel?.unref();
      proc.on('message', (message: Partial<DataPlaneToHolder> | undefined) => {
        if (message?.type === 'serving' && proc === child) notifyReady(`data plane pid ${proc.pid}: ${String(message.status ?? 'serving')}`);
        if (message?.type === 'signals-caught') {
          catchingSignals.add(proc);
          if (stopping && proc === child) proc.kill('SIGTERM'); // the stop that waited for it
        }
        // 'serving' too, from a data plane older than 'restart-ready': serve sets its SIGUSR2 handler before it says
        // so, an older daemon right after, in the same tick (a race only for a restart asked for while it starts).
        if (message?.type === 'restart-ready' || message?.type === 'serving') {
          handlingRestart.add(proc);
          if (proc === child) signalPlannedRestart(); // the planned restart that waited for it
        }
      });
      proc.once('exit', (code, signal) => {
        if (proc === child) onExit(proc, code, signal);
        else if (standby?.proc === proc) {
          standby = undefined;
          if (!stopping) log.warn('the standby data plane exited', { pid: proc.pid, code, signal });
        }
      });
      return proc;
    };

    const dropStandby = (why: string): void => {
      clearTimeout(standbyTimer);
      standbyTimer = undefined;
      if (!standby) return;
      log.info('stopping the standby data plane', { pid: standby.proc.pid, why });
      standby.proc.kill('SIGTERM');
      standby = undefined;
    };

    /** A standby from the current installation, a while after a data plane started. */
    const scheduleStandby = (): void => {
      if (!useStandby || stopping || standby || standbyTimer) return;
      standbyTimer = setTimeout(() => {
        standbyTimer = undefined;
        if (stopping || standby || !child) return;
        let proc: ChildProcess;
        try {
          proc = spawnDataPlane(true);
        } catch (error) {
          log.warn('cannot start a standby data plane', { error: (error as Error).message });
          return;
        }
        const entry = { proc, ready: false, bin };
        standby = entry;
        proc.on('message', (message: Partial<DataPlaneToHolder> | undefined) => {
          if (message?.type === 'standby-ready' && standby === entry) {
            entry.ready = true;
            log.info('standby data plane ready', { pid: proc.pid });
          }
        });
        proc.once('error', (error) => log.warn('the standby data plane failed', { error: error.message }));
      }, STANDBY_DELAY_MS);
      standbyTimer.unref();
    };

    const start = (): void => {
      restartTimer = undefined;
      if (stopping) return;
      let proc: ChildProcess;
      const warm = !planned && standby?.ready === true && standby.bin === bin ? standby : undefined;
      if (warm) {
        // A crash: the standby, already loaded, becomes the data plane.
        standby = undefined;
        proc = warm.proc;
        child = proc;
        try {
          proc.send({ type: 'activate' } satisfies HolderToDataPlane);
        } catch (error) {
          log.error('cannot activate the standby data plane', { error: (error as Error).message });
          proc.kill('SIGKILL'); // its exit, as the data plane's, starts another
        }
      } else {
        // A planned restart always starts afresh: the standby holds the code as it was when it started.
        dropStandby(planned ? 'a planned restart loads the installed code afresh' : 'not ready');
        try {
          proc = spawnDataPlane(false);
        } catch (error) {
          log.error('cannot start the data plane', { error: (error as Error).message });
          onExit(undefined, 1, null);
          return;
        }
        child = proc;
      }
      startedAt = Date.now();
      pendingAttach = new Set(attachedControllers);
      proc.once('error', (error) => {
        log.error('the data plane process failed', { error: error.message });
        if (proc.pid === undefined) onExit(proc, 1, null); // never started: no exit event follows
      });
      log.info('data plane started', { pid: proc.pid, restarts, standby: warm !== undefined });
      scheduleStandby();
    };

    const onExit = (proc: ChildProcess | undefined, code: number | null, signal: NodeJS.Signals | null): void => {
      if (proc && child !== proc) return;
      child = undefined;
      const ranMillis = Date.now() - startedAt;
      if (stopping) {
        log.info('data plane stopped', { pid: proc?.pid, code, signal });
        finish(signal ? signalExitCode(signal) : (code ?? 1));
        return;
      }
      if (planned && code === RESTART_EXIT_CODE && !signal) {
        // Quiesced and checkpointed on our SIGUSR2: the next data plane, from the asked-for installation, at once.
        lastExitAt = Date.now();
        if (planned.bin !== undefined) bin = planned.bin;
        log.info('data plane checkpointed for a planned restart; starting the next one', { pid: proc?.pid, ranMillis, bin });
        start();
        return;
      }
      if (code === 0 && !signal) {
        // Only a clean stop exits 0 (its own SIGTERM, or a live upgrade's hand-over): nothing left to protect.
        log.info('data plane exited cleanly on its own; the holder stops too', { pid: proc?.pid });
        finish(0);
        return;
      }
      if (!signal && restarts === 0 && !everAttached) {
        // The first data plane failed before any controller attached (bad options, a namespace it cannot open):
        // restarting would fail the same way, and there is nothing to hold.
        log.error('the data plane failed to start; nothing to hold', { pid: proc?.pid, code });
        finish(code ?? 1);
        return;
      }
      const now = Date.now();
      lastExitAt = now;
      while (restartTimes.length > 0 && now - restartTimes[0]! > RESTART_WINDOW_MS) restartTimes.shift();
      let delayMs = 0;
      if (restartTimes.length >= RESTARTS_BEFORE_BACKOFF) {
        backoffMs = backoffMs === 0 ? BACKOFF_FIRST_MS : Math.min(backoffMs * 2, BACKOFF_MAX_MS);
        delayMs = backoffMs;
      } else {
        backoffMs = 0;
      }
      restarts++;
      restartTimes.push(now + delayMs);
      notifyStatus(`the data plane died (${signal ?? `exit ${String(code)}`}); ${delayMs === 0 ? 'recovering' : `recovering in ${delayMs} ms`}`);
      log.error('data plane exited', {
        pid: proc?.pid,
        code,
        signal,
        ranMillis,
        restarts,
        restartInMillis: delayMs,
        heldFds: holder.totalHeld,
        controllers: Object.keys(holder.heldCounts()).length,
      });
      if (delayMs === 0) start();
      else restartTimer = setTimeout(start, delayMs);
    };

    /** Sends the planned restart's SIGUSR2, once the data plane handles it (before, it would die by it: a crash). */
    const signalPlannedRestart = (): void => {
      if (!planned || planned.signalled || stopping || !child || !handlingRestart.has(child)) return;
      planned.signalled = true;
      log.info('planned restart: asking the data plane to quiesce and checkpoint', { pid: child.pid, bin: planned.bin ?? bin, waitedMillis: Date.now() - planned.since });
      child.kill('SIGUSR2');
    };

    requestRestart = (channel, requestedBin) => {
      const requests = channel ? [channel] : [];
      if (stopping || !child) {
        answer(requests, { type: 'restart-failed', reason: stopping ? 'the holder is stopping' : 'no data plane runs (it is being restarted)' });
        return;
      }
      if (requestedBin !== undefined && !fs.existsSync(requestedBin)) {
        answer(requests, { type: 'restart-failed', reason: `${requestedBin} does not exist` });
        return;
      }
      if (planned) {
        planned.requests.push(...requests); // one restart answers every asker
        return;
      }
      const since = Date.now();
      const timer = setTimeout(() => {
        if (!planned) return;
        if (!planned.signalled) {
          // Still starting all along, or a data plane from before 'restart-ready' and 'serving': it keeps serving.
          log.error('planned restart abandoned: the data plane never said it handles one', { pid: child?.pid, timeoutMillis: RESTART_TIMEOUT_MS });
          answer(planned.requests, {
            type: 'restart-failed',
            reason: `the data plane (pid ${String(child?.pid)}) did not say within ${RESTART_TIMEOUT_MS / 1000} s that it handles a planned restart; it was not asked to, and keeps running`,
          });
        } else {
          log.error('planned restart did not complete in time', { timeoutMillis: RESTART_TIMEOUT_MS });
          answer(planned.requests, { type: 'restart-failed', reason: `not complete within ${RESTART_TIMEOUT_MS / 1000} s; see the holder's log` });
        }
        planned = undefined;
      }, RESTART_TIMEOUT_MS);
      planned = { requests, bin: requestedBin, since, timer, signalled: false };
      notifyReloading(`planned restart of the data plane (pid ${child.pid})`);
      if (!handlingRestart.has(child)) {
        log.info('planned restart: the data plane is still starting; asking it once it handles a planned restart', { pid: child.pid, bin: requestedBin ?? bin });
      }
      signalPlannedRestart();
    };
    process.on('SIGHUP', () => requestRestart(undefined, undefined));

    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      log.info('holder shutting down', { signal, dataPlane: child?.pid });
      notifyStopping('stopping the data plane, then letting go of the guests\' connections');
      if (restartTimer) {
        clearTimeout(restartTimer);
        restartTimer = undefined;
      }
      const running = child;
      if (!running) {
        finish(0);
        return;
      }
      // A data plane still starting, before it catches signals, would die by the SIGTERM without stopping cleanly
      // (and the holder exit 143): it gets it once it says it catches them.
      if (catchingSignals.has(running)) running.kill('SIGTERM');
      else log.info('the data plane is still starting; stopping it once it catches signals', { pid: running.pid });
      const timer = setTimeout(() => {
        log.error('the data plane did not stop in time; killing it', { pid: running.pid, timeoutMillis: STOP_TIMEOUT_MS });
        running.kill('SIGKILL');
      }, STOP_TIMEOUT_MS);
      running.once('exit', () => clearTimeout(timer));
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // The holder's whole job is to outlive the data plane: an error of its own is logged, not fatal (a crash here
    // would close every guest's connection). Its state is a map of fds that each step leaves consistent.
    process.on('uncaughtException', (error) => log.error('holder: unexpected error; holding on', { error: error.message, stack: error.stack }));
    // A signal that came early stops the holder before it starts any data plane (start() sees `stopping`).
    const earlySignal = early.release();
    if (earlySignal !== undefined) onSignal(earlySignal);
    start();
  });
}
