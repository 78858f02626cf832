/**
 * Bench targets brought up for a run: what fio needs in its job files, which process's CPU is the "server" CPU,
 * and how to tear down. Emulation starts `vfiod serve` as a child; passthrough optionally prepares the device with
 * the DeviceManager; file targets create their sparse file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync, createWriteStream, writeFileSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, realpathSync, rmSync, statSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EmulationTarget, FileTarget, InGuestTarget, PassthroughTarget, TargetConfig } from './config.js';
import { parseFioOutput, type FioRun, type FioRunOptions } from './fio.js';
import { CommandExec, QgaExec, type GuestCommandResult, type GuestExec } from './qga.js';
import type { TargetFioOptions } from './matrix.js';
import { buildEngine, prebuiltEngine, vfioEngineOptions, vfioUserEngineOptions } from './engine.js';
import type { Logger } from '../util/log.js';

const VFIOD_BIN = fileURLToPath(new URL('../../bin/vfiod.js', import.meta.url));
const SERVE_STOP_TIMEOUT_MS = 20_000;

export class TargetError extends Error {
  constructor(
    readonly target: string,
    message: string,
  ) {
    super(`target '${target}': ${message}`);
    this.name = 'TargetError';
  }
}

export interface ActiveTarget {
  config: TargetConfig;
  fioOptions: TargetFioOptions;
  /** The process whose CPU is reported as server CPU (vfiod serve), if any. */
  serverPid?: number;
  /** Facts recorded in results.json (server command, engine path, device state...). */
  info: Record<string, unknown>;
  /** Runs fio somewhere other than here (in-guest targets); undefined = run the local fio. */
  runFio?: (options: FioRunOptions) => Promise<FioRun>;
  /** Why the target cannot serve another point (e.g. the server exited), or undefined when it is fine. */
  failure(): string | undefined;
  stop(): Promise<void>;
}

export interface TargetContext {
  /** Directory for this target's files (server log). */
  dir: string;
  /** Bytes the largest point needs (size x numjobs). */
  bytesNeeded: number;
  /** A prebuilt fio engine (config 'engine'); undefined = build it. */
  engine?: string;
  logger: Logger;
}

export async function startTarget(config: TargetConfig, context: TargetContext): Promise<ActiveTarget> {
  mkdirSync(context.dir, { recursive: true });
  const target = await startByType(config, context);
  if (config.fioCpus !== undefined) {
    // Each job gets its own CPU from the list (split), so jobs do not share a core they spin on.
    target.fioOptions.push(['cpus_allowed', config.fioCpus], ['cpus_allowed_policy', 'split']);
    target.info['fio_cpus'] = config.fioCpus;
  }
  return target;
}

function startByType(config: TargetConfig, context: TargetContext): Promise<ActiveTarget> {
  switch (config.type) {
    case 'emulation':
      return startEmulation(config, context);
    case 'passthrough':
      return startPassthrough(config, context);
    case 'file':
      return startFile(config, context);
    case 'in-guest':
      return startInGuest(config, context);
  }
}

function enginePath(target: string, prebuilt: string | undefined): string {
  const engine = prebuilt !== undefined ? prebuiltEngine(prebuilt) : buildEngine();
  if (!engine.ok) throw new TargetError(target, engine.reason);
  return engine.path;
}

async function startEmulation(config: EmulationTarget, context: TargetContext): Promise<ActiveTarget> {
  const engine = enginePath(config.name, context.engine);
  // The socket lives in a private temp dir, not the output dir: unix socket paths are limited to 108 bytes, and
  // output dirs may be on filesystems that cannot hold sockets (9p, some network filesystems).
  const socketDir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-bench-'));
  const socket = path.join(socketDir, 'nvme.sock');
  // --no-config: the host's /etc/vfiod/vfiod.yaml must not change what is measured; the config says it all.
  const args = [
    VFIOD_BIN, 'serve', '--socket', socket, '--namespace', config.namespace, ...(config.doorbells === 'polled' ? ['--poll'] : []), '--no-config', ...config.serveArgs,
  ];
  const logPath = path.join(context.dir, 'serve.log');
  const log = createWriteStream(logPath);
  // taskset execs node, so the child's pid is the server's pid either way.
  const command = config.serverCpus !== undefined ? ['taskset', '-c', config.serverCpus, process.execPath] : [process.execPath];
  const child = spawn(command[0]!, [...command.slice(1), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitPromise = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve();
    }),
  );
  let tail = '';
  const ready = new Promise<void>((resolve, reject) => {
    let pending = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      log.write(chunk);
      tail = (tail + chunk.toString()).slice(-4096);
      pending += chunk.toString();
      let newline;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (isListening(line, socket)) resolve();
      }
    });
    child.once('error', (error) => reject(new TargetError(config.name, `cannot start vfiod serve: ${error.message}`)));
    void exitPromise.then(() =>
      reject(new TargetError(config.name, `vfiod serve exited (${describeExit(exited)}) before it listened: ${lastLines(tail)}`)),
    );
  });
  // A server that is not listening by then is killed and named as too slow, not as one that died on its own.
  let timeout: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timeout = setTimeout(() => {
      reject(new TargetError(config.name, `vfiod serve did not listen within ${config.startTimeoutSeconds} s (a slow host or namespace backend; raise the target's start-timeout); stopped it. Its output: ${lastLines(tail)}`));
    }, config.startTimeoutSeconds * 1000);
  });
  try {
    await Promise.race([ready, timedOut]);
  } catch (error) {
    if (!exited) child.kill('SIGKILL');
    rmSync(socketDir, { recursive: true, force: true });
    throw error;
  } finally {
    clearTimeout(timeout);
  }
  context.logger.info('vfiod serve is listening', { target: config.name, pid: child.pid, socket, doorbells: config.doorbells });
  return {
    config,
    fioOptions: [...vfioUserEngineOptions(engine, socket), ['vfiod_completion', config.completion]],
    serverPid: child.pid!,
    info: {
      engine,
      server_command: [...(config.serverCpus !== undefined ? ['taskset', '-c', config.serverCpus] : []), 'node', ...args.map((a) => (a === VFIOD_BIN ? 'bin/vfiod.js' : a))].join(' '),
      server_log: logPath,
      server_cpus_allowed: cpusAllowed(child.pid!),
    },
    failure: () => (exited ? `vfiod serve exited (${describeExit(exited)}): ${lastLines(tail)}` : undefined),
    stop: () =>
      stopChild(child, () => exited !== undefined, exitPromise, context.logger, config.name).finally(() => {
        log.end();
        rmSync(socketDir, { recursive: true, force: true });
      }),
  };
}

/** The kernel's view of where a process may run (/proc/<pid>/status Cpus_allowed_list). */
function cpusAllowed(pid: number): string | undefined {
  try {
    return /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

function isListening(line: string, socket: string): boolean {
  try {
    const record = JSON.parse(line) as Record<string, unknown>;
    return record['msg'] === 'listening' && (record['socket'] === undefined || record['socket'] === socket);
  } catch {
    return false;
  }
}

async function stopChild(child: ChildProcess, hasExited: () => boolean, exit: Promise<void>, logger: Logger, target: string): Promise<void> {
  if (hasExited()) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    logger.warn('vfiod serve did not stop after SIGTERM; killing it', { target, pid: child.pid });
    child.kill('SIGKILL');
  }, SERVE_STOP_TIMEOUT_MS);
  await exit;
  clearTimeout(timer);
}

function describeExit(exit: { code: number | null; signal: NodeJS.Signals | null } | undefined): string {
  if (!exit) return 'running';
  return exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`;
}

function lastLines(text: string, count = 5): string {
  return text.trim().split('\n').slice(-count).join(' | ') || '(no output)';
}

async function startPassthrough(config: PassthroughTarget, context: TargetContext): Promise<ActiveTarget> {
  const engine = enginePath(config.name, context.engine);
  const info: Record<string, unknown> = { engine, bdf: config.bdf, prepared_by_bench: config.prepare };
  let release: (() => Promise<void>) | undefined;
  if (config.prepare) {
    const { DeviceManager } = await import('../devices/manager.js');
    const { ClaimStore } = await import('../devices/claims.js');
    const { DEFAULT_ROOTS, realSysfsWriter } = await import('../devices/host.js');
    const { NativeVfioProber } = await import('../vfio/prober.js');
    const owner = `vfiod-bench:${config.name}`;
    const manager = new DeviceManager({
      roots: DEFAULT_ROOTS,
      writer: realSysfsWriter,
      prober: new NativeVfioProber({ sysfsRoot: DEFAULT_ROOTS.sysfs, devRoot: DEFAULT_ROOTS.dev }),
      claims: new ClaimStore(config.claimsDb),
    });
    try {
      const prepared = await manager.prepare(config.bdf, owner);
      info['prepare'] = { vfio_group: prepared.vfioGroupDev, devices: prepared.devices, warnings: prepared.warnings };
      context.logger.info('device prepared for passthrough', { target: config.name, bdf: config.bdf, group: prepared.vfioGroupDev });
    } catch (error) {
      throw new TargetError(config.name, `preparing ${config.bdf} for vfio-pci failed: ${(error as Error).message}`);
    }
    release = async () => {
      await manager.release(config.bdf, owner, { waitMs: 5000 });
      context.logger.info('device released', { target: config.name, bdf: config.bdf });
    };
  } else {
    const driver = pciDriver(config.bdf);
    if (driver !== 'vfio-pci') {
      throw new TargetError(
        config.name,
        `${config.bdf} is bound to ${driver ?? 'no driver'}, not vfio-pci; set 'prepare: true' or run 'vfiod devices prepare ${config.bdf}'`,
      );
    }
  }
  return {
    config,
    fioOptions: vfioEngineOptions(engine, config.bdf, config.nsid),
    info,
    failure: () => undefined,
    stop: async () => {
      await release?.();
    },
  };
}

function pciDriver(bdf: string): string | undefined {
  try {
    return path.basename(realpathSync(`/sys/bus/pci/devices/${bdf}/driver`));
  } catch {
    return undefined;
  }
}

async function startFile(config: FileTarget, context: TargetContext): Promise<ActiveTarget> {
  const info: Record<string, unknown> = { ioengine: config.ioengine, path: config.path, direct: config.direct };
  if (!existsSync(config.path)) {
    mkdirSync(path.dirname(config.path), { recursive: true });
    const fd = openSync(config.path, 'w');
    try {
      ftruncateSync(fd, context.bytesNeeded);
    } finally {
      closeSync(fd);
    }
    info['created'] = true;
  } else {
    const stat = statSync(config.path);
    if (stat.isFile() && stat.size < context.bytesNeeded) {
      throw new TargetError(config.name, `${config.path} holds ${stat.size} bytes; the matrix needs ${context.bytesNeeded} (size x numjobs)`);
    }
    if (!stat.isFile() && !stat.isBlockDevice()) throw new TargetError(config.name, `${config.path} is neither a regular file nor a block device`);
  }
  return {
    config,
    fioOptions: [
      ['ioengine', config.ioengine],
      ['direct', config.direct ? 1 : 0],
      ['filename', config.path],
    ],
    info,
    failure: () => undefined,
    stop: async () => {},
  };
}

/** Guest checks before the first point (fio --version, test -b) are quick; a wedged guest should not hang the run. */
const GUEST_CHECK_TIMEOUT_MS = 60_000;

function guestTail(result: GuestCommandResult): string {
  return lastLines(result.stderr || result.stdout, 6);
}

/** The VM process's pid from a number or a pid file (QEMU -pidfile); it must be alive. */
function vmmPid(config: InGuestTarget): number {
  let pid = config.vmmPid as number;
  if (typeof config.vmmPid === 'string') {
    let text: string;
    try {
      text = readFileSync(config.vmmPid, 'utf8').trim();
    } catch (error) {
      throw new TargetError(config.name, `vmm-pid: cannot read the pid file ${config.vmmPid}: ${(error as Error).message}`);
    }
    pid = Number(text);
    if (!Number.isInteger(pid) || pid <= 0) throw new TargetError(config.name, `vmm-pid: ${config.vmmPid} holds '${text.slice(0, 40)}', not a pid`);
  }
  if (!existsSync(`/proc/${pid}`)) throw new TargetError(config.name, `vmm-pid: no process ${pid} on this host (is the VM running?)`);
  return pid;
}

/**
 * fio inside a VM: the job file goes to the guest's fio on stdin (`fio --output-format=json -`), its JSON comes back
 * on stdout and is parsed like a local run. Checked first: the channel works, fio runs in the guest, the device is
 * a block device there.
 */
async function startInGuest(config: InGuestTarget, context: TargetContext): Promise<ActiveTarget> {
  const pid = config.vmmPid !== undefined ? vmmPid(config) : undefined;
  let exec: GuestExec;
  try {
    exec = 'qga' in config.exec ? await QgaExec.connect(config.exec.qga) : new CommandExec(config.exec.command);
  } catch (error) {
    throw new TargetError(config.name, (error as Error).message);
  }
  const inGuest = async (argv: string[]): Promise<GuestCommandResult> => {
    try {
      return await exec.run(argv, { timeoutMs: GUEST_CHECK_TIMEOUT_MS });
    } catch (error) {
      exec.close();
      throw new TargetError(config.name, `running '${argv.join(' ')}' in the guest through ${exec.describe} failed: ${(error as Error).message}`);
    }
  };
  const version = await inGuest([config.fio, '--version']);
  if (version.exitCode !== 0) {
    exec.close();
    throw new TargetError(config.name, `fio ('${config.fio}') does not run in the guest through ${exec.describe}: exit ${version.exitCode ?? version.signal}: ${guestTail(version)}`);
  }
  const device = await inGuest(['test', '-b', config.device]);
  if (device.exitCode !== 0) {
    exec.close();
    throw new TargetError(config.name, `${config.device} is not a block device in the guest (missing, or not attached yet?) (test -b exit ${device.exitCode ?? device.signal}${device.stderr.trim() ? `: ${guestTail(device)}` : ''})`);
  }
  context.logger.info('guest reachable', { target: config.name, via: exec.describe, fio: version.stdout.trim(), device: config.device, vmm_pid: pid });
  return {
    config,
    fioOptions: [['ioengine', config.ioengine], ['direct', config.direct ? 1 : 0], ['filename', config.device]],
    ...(pid !== undefined ? { serverPid: pid } : {}),
    info: {
      exec: 'qga' in config.exec ? { qga: config.exec.qga } : { command: config.exec.command.join(' ') },
      guest_fio: version.stdout.trim(), device: config.device, ioengine: config.ioengine, direct: config.direct,
      ...(pid !== undefined ? { vmm_pid: pid } : {}),
    },
    runFio: (options) => runGuestFio(exec, config, options),
    failure: () => undefined,
    stop: async () => exec.close(),
  };
}

async function runGuestFio(exec: GuestExec, config: InGuestTarget, options: FioRunOptions): Promise<FioRun> {
  const startedMs = Date.now();
  let result: GuestCommandResult;
  try {
    result = await exec.run([config.fio, '--output-format=json', '-'], {
      input: readFileSync(options.jobPath, 'utf8'),
      timeoutMs: options.timeoutMs ?? 600_000,
      onStart: () => options.onStart?.(0),
    });
  } catch (error) {
    const message = `fio in the guest through ${exec.describe}: ${(error as Error).message}`;
    return { exitCode: null, signal: null, stderr: message, startedMs, endedMs: Date.now(), outputError: message };
  }
  writeFileSync(options.jsonPath, result.stdout);
  const run: FioRun = {
    exitCode: result.exitCode, signal: (result.signal ?? null) as NodeJS.Signals | null,
    stderr: result.stderr + (result.exitCode !== 0 ? `\n(in the guest through ${exec.describe}, exit ${result.exitCode ?? result.signal})` : ''),
    startedMs, endedMs: result.endedMs,
  };
  try {
    const output = parseFioOutput(result.stdout);
    // fio stamps its JSON with the guest's clock, which need not match the host's; the host-side CPU window is cut
    // on the host clock, so the stamp becomes the moment the host saw fio exit (within one status poll).
    run.output = { ...output, timestampMs: result.endedMs };
  } catch (error) {
    run.outputError = (error as Error).message;
  }
  return run;
}
