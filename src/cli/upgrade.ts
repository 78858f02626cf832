/**
 * `vfiod upgrade`: replaces a running `vfiod serve` by this installation's vfiod without disconnecting its clients
 * (docs/restart.md). It asks the running process, over its hand-over socket, for its options, working directory,
 * stdout and stderr; starts `vfiod serve <those options> --take-over` from this installation as a detached process
 * (its own session) that logs where the running one logged; and waits for the successor's report over Node's IPC
 * channel: committed and serving, or failed (the running process then serves on). The exit status says which.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { HandoverChannel } from '../serve/handover-channel.js';
import { defaultHandoverSocket, packageVersion } from '../serve/upgrade.js';
import { errorMessage } from '../util/errors.js';
import { EXIT, milliseconds, UsageError, type ClientDeps } from './common.js';
import { parseServeArgs } from './serve.js';

export const UPGRADE_USAGE = `Usage: vfiod upgrade (--socket <path> | --handover-socket <path> | --daemon <api socket>) [options] [-- <serve options>]

Replaces the running 'vfiod serve' by this installation's vfiod without disconnecting its
clients (a live upgrade, docs/restart.md). The successor is started with the running
process's own options, in its working directory, logging where it logs, as a detached
process; this command waits until the hand-over is committed and the successor serves.
Under --crash-recovery the holder restarts the data plane from this installation instead.

Options:
  --socket <path>          a controller socket of the running vfiod serve (its hand-over
                           socket is <socket dir>/<socket name>.handover.sock)
  --handover-socket <path> the running vfiod serve's hand-over socket
  --daemon <address>       a vfiod daemon --crash-recovery: restart it from this installation
                           through its control API (DaemonService.RestartDaemon)
  --log <file>             append the successor's output to <file> instead of the running
                           process's stdout and stderr
  --timeout <seconds>      how long to wait for the successor's report (default 180)
  -h, --help               show this help
  -- <serve options>       start the successor with these options instead of the running
                           process's (they must describe the same controller)

Exit status: 0 the successor serves (the old process exits by itself); 1 the upgrade failed
(the message says whether the old process still serves); 2 usage; 3 nothing listens on the
hand-over socket.
`;

/** The running process's answer to `describe` (src/serve/upgrade.ts ServeDescription, as received). */
interface Description {
  pid: number;
  version: string;
  argv?: string[];
  cwd: string;
  sockets: string[];
  output: Array<'stdout' | 'stderr'>;
}

const DESCRIBE_TIMEOUT_MS = 10_000;
const DEFAULT_TIMEOUT_MS = 180_000;
/** After the successor serves: how long to watch the old process exit (it flushes its namespaces first). */
const OLD_EXIT_WAIT_MS = 20_000;

export async function runUpgrade(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const out = deps.stdout ?? ((text: string) => void process.stdout.write(text));
  const err = deps.stderr ?? ((text: string) => void process.stderr.write(text));
  const split = argv.indexOf('--');
  const own = split >= 0 ? argv.slice(0, split) : argv;
  const serveArgv = split >= 0 ? argv.slice(split + 1) : undefined;
  let values;
  try {
    ({ values } = parseArgs({
      args: own,
      allowPositionals: false,
      options: {
        socket: { type: 'string' },
        'handover-socket': { type: 'string' },
        daemon: { type: 'string' },
        log: { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw new UsageError(`upgrade: ${errorMessage(error)}`);
  }
  if (values.help) {
    out(UPGRADE_USAGE);
    return EXIT.ok;
  }
  if ([values.socket, values['handover-socket'], values.daemon].filter((value) => value !== undefined).length !== 1) {
    throw new UsageError('upgrade: give exactly one of --socket <path>, --handover-socket <path> and --daemon <address>');
  }
  const timeoutMs = milliseconds('--timeout', values.timeout) ?? DEFAULT_TIMEOUT_MS;
  if (values.daemon !== undefined) return upgradeDaemon(values.daemon, timeoutMs, out, err);
  const handoverSocket = path.resolve(values['handover-socket'] ?? defaultHandoverSocket(values.socket!));

  // 1. What runs there, with its stdout and stderr.
  let described: { description: Description; fds: number[] };
  try {
    described = await describe(handoverSocket);
  } catch (error) {
    const reason = errorMessage(error);
    err(`vfiod upgrade: ${reason}\n`);
    return /ENOENT|ECONNREFUSED|no such file|connection refused/i.test(reason) ? EXIT.notFound : EXIT.failed;
  }
  const { description, fds } = described;
  const holderSocket = holderSocketOf(description);
  if (holderSocket !== undefined) {
    // Under --crash-recovery the holder replaces the data plane (a planned restart from this installation).
    for (const fd of fds) closeQuietly(fd);
    if (serveArgv !== undefined) {
      err('vfiod upgrade: under --crash-recovery the data plane keeps its options; restart the holder to change them\n');
      return EXIT.usage;
    }
    const bin = fileURLToPath(new URL('../../bin/vfiod.js', import.meta.url));
    try {
      const restarted = await restartThroughHolder(holderSocket, bin, timeoutMs);
      out(`upgraded ${description.sockets.join(', ')}: data plane pid ${description.pid} (vfiod ${description.version}) replaced by pid ${String(restarted['pid'])} ` +
        `(vfiod ${packageVersion()}, from ${bin}) in ${String(restarted['millis'])} ms through the crash-recovery holder\n`);
      return EXIT.ok;
    } catch (error) {
      err(`vfiod upgrade: ${errorMessage(error)}\n`);
      return EXIT.failed;
    }
  }
  const outputFd = (name: 'stdout' | 'stderr'): number | undefined => {
    const index = description.output.indexOf(name);
    return index >= 0 ? fds[index] : undefined;
  };
  let logFd: number | undefined;
  try {
    // 2. The successor's options: the running process's, or the ones given after --; checked here first, so that a
    //    mistake is reported on this terminal rather than in the successor's log.
    const options = serveArgv ?? description.argv;
    if (!options) {
      err(`vfiod upgrade: the running vfiod (pid ${description.pid}) does not know its command line: give its options after --\n`);
      return EXIT.usage;
    }
    try {
      if (!parseServeArgs(options)) throw new UsageError('the options ask for help');
    } catch (error) {
      err(`vfiod upgrade: the successor's options are not valid: ${errorMessage(error)}\n`);
      return EXIT.usage;
    }
    if (values.log !== undefined) logFd = fs.openSync(path.resolve(values.log), 'a', 0o600);
    const stdout = logFd ?? outputFd('stdout') ?? 'ignore';
    const stderr = logFd ?? outputFd('stderr') ?? outputFd('stdout') ?? 'ignore';
    if (stderr === 'ignore') {
      err(`vfiod upgrade: the running vfiod has no stdout or stderr to share: give --log <file>\n`);
      return EXIT.usage;
    }

    // 3. The successor: this installation's vfiod, detached (a session of its own), in the running process's
    //    working directory; it reports over Node's IPC channel.
    const bin = fileURLToPath(new URL('../../bin/vfiod.js', import.meta.url));
    const args = [bin, 'serve', ...options, '--take-over', '--report-to-parent'];
    const child = spawn(process.execPath, args, { cwd: description.cwd, detached: true, stdio: ['ignore', stdout, stderr, 'ipc'] });
    const report = await successorReport(child, timeoutMs);
    const who = `pid ${description.pid}, vfiod ${description.version}`;
    if (report.kind === 'serving') {
      const status = report.status;
      const gone = await exited(description.pid, OLD_EXIT_WAIT_MS);
      out(`upgraded ${description.sockets.join(', ')}: pid ${description.pid} (vfiod ${description.version}) handed over to pid ${String(status['pid'])} (vfiod ${String(status['version'])}) ` +
        `in ${String(status['millis'])} ms; ${gone ? 'the old process has exited' : `the old process (pid ${description.pid}) is still flushing`}\n`);
      return EXIT.ok;
    }
    const oldAlive = isAlive(description.pid);
    const old = oldAlive
      ? `the running vfiod (${who}) keeps serving`
      : `the old vfiod (${who}) is no longer running: its clients may have lost their device`;
    if (report.kind === 'failed') {
      err(`vfiod upgrade: the successor (pid ${child.pid}) could not take over: ${String(report.status['error'])}; ${old}\n`);
    } else if (report.kind === 'exited') {
      err(`vfiod upgrade: the successor (pid ${child.pid}) exited with ${report.code === null ? `signal ${report.signal}` : `status ${report.code}`} before taking over ` +
        `(its log is ${values.log ? values.log : "the running process's stderr"}); ${old}\n`);
    } else {
      err(`vfiod upgrade: no report from the successor (pid ${child.pid}) within ${timeoutMs / 1000} s; it may still be taking over ` +
        `(its log is ${values.log ? values.log : "the running process's stderr"}); ${oldAlive ? `the old vfiod (${who}) is still running` : `the old vfiod (${who}) has exited`}\n`);
    }
    return EXIT.failed;
  } finally {
    for (const fd of fds) closeQuietly(fd);
    if (logFd !== undefined) closeQuietly(logFd);
  }
}

/** `vfiod upgrade --daemon`: RestartDaemon from this installation, then wait until a new daemon answers. */
async function upgradeDaemon(address: string, timeoutMs: number, out: (text: string) => void, err: (text: string) => void): Promise<number> {
  // Loaded here: gRPC costs the other upgrades nothing.
  const { ApiError, VfiodClient } = await import('../daemon/client.js');
  const client = new VfiodClient({ address });
  try {
    const started = Date.now();
    const bin = fileURLToPath(new URL('../../bin/vfiod.js', import.meta.url));
    let old: Record<string, any>;
    try {
      old = (await client.call('DaemonService', 'RestartDaemon', { bin }, 30_000))['daemon'] as Record<string, any>;
    } catch (error) {
      err(`vfiod upgrade: ${error instanceof ApiError ? `${error.statusName}: ${error.details}` : errorMessage(error)}\n`);
      return error instanceof ApiError && error.statusName === 'UNAVAILABLE' ? EXIT.notFound : EXIT.failed;
    }
    // The old daemon checkpoints and exits; the holder starts the next one on the same API socket.
    while (Date.now() - started < timeoutMs) {
      try {
        const now = (await client.call('DaemonService', 'GetDaemon', {}, 5_000))['daemon'] as Record<string, any>;
        if (now['pid'] !== old['pid']) {
          out(`upgraded the vfiod daemon at ${address}: pid ${old['pid']} (vfiod ${old['version']}) replaced by pid ${now['pid']} (vfiod ${now['version']}, from ${bin}) ` +
            `in ${Date.now() - started} ms through the crash-recovery holder\n`);
          return EXIT.ok;
        }
      } catch {
        // Between the two daemons nothing answers.
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    err(`vfiod upgrade: no new daemon answered at ${address} within ${timeoutMs / 1000} s; see the holder's log\n`);
    return EXIT.failed;
  } finally {
    client.close();
  }
}

/** The holder socket of a data plane run by `vfiod serve --crash-recovery` (from its options), if it is one. */
function holderSocketOf(description: Description): string | undefined {
  const argv = description.argv ?? [];
  if (!argv.includes('--data-plane')) return undefined;
  const at = argv.indexOf('--holder-socket');
  const given = at >= 0 ? argv[at + 1] : argv.find((arg) => arg.startsWith('--holder-socket='))?.slice('--holder-socket='.length);
  return given === undefined ? undefined : path.resolve(description.cwd, given);
}

/** Asks the crash-recovery holder for a planned restart of its data plane from `bin`; resolves with its answer. */
async function restartThroughHolder(holderSocket: string, bin: string, timeoutMs: number): Promise<Record<string, unknown>> {
  const channel = HandoverChannel.connect(holderSocket);
  try {
    channel.send({ type: 'restart', bin });
    const { message, fds } = await channel.receive(timeoutMs, 'the holder to restart the data plane');
    for (const fd of fds) closeQuietly(fd);
    if (message.type === 'restarted') return message;
    throw new Error(`the holder did not restart the data plane: ${String(message['reason'] ?? message.type)}; the running data plane keeps serving`);
  } finally {
    channel.close();
  }
}

/** Asks the process listening on `handoverSocket` to describe itself (and to send its stdout and stderr). */
async function describe(handoverSocket: string): Promise<{ description: Description; fds: number[] }> {
  let channel: HandoverChannel;
  try {
    channel = HandoverChannel.connect(handoverSocket);
  } catch (error) {
    throw new Error(`no vfiod serve listens on ${handoverSocket}: ${errorMessage(error)}`);
  }
  try {
    channel.send({ type: 'describe', version: packageVersion() });
    const { message, fds } = await channel.receive(DESCRIBE_TIMEOUT_MS, 'the running vfiod\'s description').catch((error: unknown) => {
      // A running vfiod turns a second connection away while an upgrade is in progress.
      throw new Error(`${errorMessage(error)} (is another upgrade of it in progress?)`);
    });
    if (message.type === 'refused') {
      for (const fd of fds) closeQuietly(fd);
      throw new Error(`the running vfiod at ${handoverSocket} refused to describe itself (${String(message['reason'])}); ` +
        'it predates vfiod upgrade: start the successor with vfiod serve <its options> --take-over');
    }
    if (message.type !== 'description') {
      for (const fd of fds) closeQuietly(fd);
      throw new Error(`unexpected answer '${message.type}' from ${handoverSocket}`);
    }
    const description = message as unknown as Description;
    return { description: { ...description, output: Array.isArray(description.output) ? description.output : [] }, fds };
  } finally {
    channel.close();
  }
}

type Report =
  | { kind: 'serving' | 'failed'; status: Record<string, unknown> }
  | { kind: 'exited'; code: number | null; signal: NodeJS.Signals | null }
  | { kind: 'timeout' };

/** The successor's report, or how it ended without one; it is left running (and unreferenced) either way. */
function successorReport(child: ReturnType<typeof spawn>, timeoutMs: number): Promise<Report> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (report: Report): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (child.connected) child.disconnect();
      child.unref();
      resolve(report);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    child.on('message', (message: unknown) => {
      const status = (typeof message === 'object' && message !== null ? message : { status: 'failed', error: `unreadable report: ${String(message)}` }) as Record<string, unknown>;
      finish({ kind: status['status'] === 'serving' ? 'serving' : 'failed', status });
    });
    // Messages arrive before 'exit' is emitted; an exit with none is a successor that ended without a word.
    child.once('exit', (code, signal) => finish({ kind: 'exited', code, signal }));
    child.once('error', () => finish({ kind: 'exited', code: null, signal: null }));
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether `pid` has exited within `timeoutMs` (checked every 50 ms: there is no exit notification for a non-child). */
async function exited(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // closed already
  }
}
