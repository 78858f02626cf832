/**
 * A real NVMe/TCP target for tests and benchmarks: the Linux kernel target (nvmet + nvmet-tcp) in a small QEMU guest.
 *
 * The guest boots the host's own Debian kernel (/boot/vmlinuz-<ver>) with a per-target initramfs built here: a
 * static busybox, the needed modules from /lib/modules/<ver>, testbed/target-init.sh as /init and a config
 * file. The namespace is a virtio-blk disk backed by a sparse host file, so `readBacking` reads the data where the
 * target really stored it. Each guest listener port is forwarded by QEMU's user-mode network (slirp) to its own free
 * port on 127.0.0.1. A virtio-serial port (a unix socket on the host) carries the control requests (ping, restart).
 * QEMU runs under testbed/qemu-launch.sh, which kills it when this process closes the pipe or dies, and after a
 * hard timeout. How it works, knobs and timings: docs/testing.md.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  accessSync, closeSync, constants as fsConstants, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync,
  truncateSync, writeFileSync,
} from 'node:fs';
import { open as openAsync } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { sleep } from '../src/util/sleep.js';
import { bootKernelVersions, Cpio, extractedVmlinux, resolveModules, staticBusybox, which } from './guest-kernel.js';
import { env, envInt } from './knobs.js';

export interface NvmetTargetOptions {
  /** Namespace size in bytes (default 64 MiB); a multiple of blockSize. */
  sizeBytes?: number;
  /** Logical block size of the namespace: 512 (default) or 4096. */
  blockSize?: number;
  /** Listening ports in the guest (4420, 4421, ...), each forwarded to its own host port (multipath); default 1. */
  ports?: number;
  /** Subsystem NQN (default 'nqn.2026-11.io.vfiod:test'). Digests need no configuration: nvmet grants what ICReq asks. */
  subsystemNqn?: string;
  /**
   * Bytes the guest itself writes into the namespace's block device before nvmet starts (dd, then fsync): shows
   * that guest writes land in the host backing file. Offset in bytes.
   */
  guestPrefill?: { offset: number; data: Uint8Array };
  /** How long to wait for the guest to boot and the target to answer ICReq on every port (default 150 s). */
  bootTimeoutMs?: number;
}

export interface NvmetTarget {
  /** '127.0.0.1' */
  readonly host: string;
  /** Host ports forwarded to the guest's listeners (guest ports 4420, 4421, ...). */
  readonly ports: number[];
  readonly subsystemNqn: string;
  readonly sizeBytes: number;
  readonly blockSize: number;
  /** Where the guest's serial console (boot messages, target-init.sh output, kernel log) is written. */
  readonly consoleLog: string;
  /** The per-target directory: backing file, initramfs, console log, control socket. */
  readonly workDir: string;
  /** The host file backing namespace 1. */
  readonly backingFile: string;
  /** Milliseconds from QEMU start to ICResp on every port. */
  readonly bootMs: number;
  /** Reads the namespace's backing store directly (NOT through NVMe/TCP), to prove data really is on the target. */
  readBacking(offset: number, length: number): Promise<Uint8Array>;
  /**
   * Restarts the target service: every port is removed (all connections drop, listeners close), `downMs` later
   * (default 500) the ports come back with the same subsystem and data. Resolves once ICReq works on every port again.
   */
  restart(options?: { downMs?: number }): Promise<void>;
  /** Powers the guest off (QEMU is terminated) and removes the work dir (kept with VFIOD_TESTBED_KEEP=1). */
  stop(): Promise<void>;
}

export const DEFAULT_SUBSYSTEM_NQN = 'nqn.2026-11.io.vfiod:test';
/** The discovery subsystem nvmet serves on every port (no configuration needed). */
export const DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery';
/** Guest-side port number of the first listener; listener i (0-based) is GUEST_BASE_PORT + i. */
export const GUEST_BASE_PORT = 4420;

const TESTBED = fileURLToPath(new URL('./', import.meta.url));
const INIT_SCRIPT = path.join(TESTBED, 'target-init.sh');
const LAUNCHER = path.join(TESTBED, 'qemu-launch.sh');
const REQUIRED_MODULES = ['virtio_pci', 'virtio_net', 'virtio_blk', 'virtio_console', 'configfs', 'nvmet', 'nvmet-tcp'];
/** crc32c for header/data digests; the guest has no modprobe, so the crypto API cannot load it on demand. */
const OPTIONAL_MODULES = ['crc32c-intel', 'crc32c_generic'];


// ---------------------------------------------------------------------------------------------------------------
// Host checks

interface HostSetup {
  qemu: string;
  busybox: string;
  kernel: string;
  kernelVersion: string;
  /** Module files in load order (dependencies first). */
  modules: string[];
}

let hostProbe: { setup: HostSetup } | { reason: string } | undefined;

function probeHostSetup(): { setup: HostSetup } | { reason: string } {
  if (env('VFIOD_TESTBED_DISABLE') === '1') return { reason: 'disabled by VFIOD_TESTBED_DISABLE=1' };
  if (process.platform !== 'linux') return { reason: `needs Linux (this is ${process.platform})` };
  const qemuName = env('VFIOD_TESTBED_QEMU') ?? 'qemu-system-x86_64';
  const qemu = which(qemuName);
  if (!qemu) return { reason: `${qemuName} not found (apt-get install qemu-system-x86)` };
  for (const tool of ['timeout', 'sh']) if (!which(tool)) return { reason: `${tool} not found (coreutils)` };
  const busybox = staticBusybox(['/bin/busybox', '/usr/bin/busybox', '/usr/lib/initramfs-tools/bin/busybox']);
  if (!busybox) return { reason: 'no statically linked busybox (apt-get install busybox-static)' };
  const modprobe = which('modprobe');
  if (!modprobe) return { reason: 'modprobe not found (apt-get install kmod)' };
  const wanted = env('VFIOD_TESTBED_KERNEL');
  let versions = bootKernelVersions();
  if (wanted) versions = versions.filter((version) => version === wanted);
  const rejected: string[] = [];
  for (const version of versions) {
    const kernel = `/boot/vmlinuz-${version}`;
    try {
      accessSync(kernel, fsConstants.R_OK);
    } catch {
      rejected.push(`${kernel} is not readable`);
      continue;
    }
    if (!existsSync(`/lib/modules/${version}/modules.dep`)) {
      rejected.push(`no /lib/modules/${version}/modules.dep`);
      continue;
    }
    const modules = resolveModules(modprobe, version, REQUIRED_MODULES);
    if (typeof modules === 'string') {
      rejected.push(`${version}: ${modules}`);
      continue;
    }
    const optional = resolveModules(modprobe, version, OPTIONAL_MODULES.filter((name) => {
      const probe = spawnSync(modprobe, ['-S', version, '--show-depends', name], { stdio: 'ignore' });
      return probe.status === 0;
    }));
    if (typeof optional !== 'string') for (const file of optional) if (!modules.includes(file)) modules.push(file);
    return { setup: { qemu, busybox, kernel, kernelVersion: version, modules } };
  }
  return {
    reason:
      `no usable guest kernel${wanted ? ` (VFIOD_TESTBED_KERNEL=${wanted})` : ''}: need /boot/vmlinuz-<ver> and ` +
      `/lib/modules/<ver> with ${REQUIRED_MODULES.join(', ')} (apt-get install linux-image-amd64)` +
      (rejected.length ? `; rejected: ${rejected.join('; ')}` : ''),
  };
}

function hostSetup(): { setup: HostSetup } | { reason: string } {
  hostProbe ??= probeHostSetup();
  return hostProbe;
}

/**
 * Why the target cannot run here (missing QEMU, static busybox, kmod, a guest kernel with the modules) or undefined
 * when it can. /dev/kvm is not needed. Use it in `describe.skipIf(reason)` and print the reason.
 */
export function nvmetTargetUnavailableReason(): string | undefined {
  const probe = hostSetup();
  return 'reason' in probe ? probe.reason : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Kernel: the uncompressed vmlinux boots through PVH, skipping the bzImage decompressor (about 8 s under TCG)

/**
 * The vmlinux inside the bzImage, extracted once per kernel into ${TMPDIR}/vfiod-nvmet-cache, or the bzImage itself
 * when extraction is impossible (no PVH support in the kernel config, no decompressor, VFIOD_TESTBED_NVMET_PVH=0).
 */
function bootableKernel(setup: HostSetup): string {
  if (env('VFIOD_TESTBED_NVMET_PVH') === '0') return setup.kernel;
  return extractedVmlinux(setup.kernel, setup.kernelVersion, 'vfiod-nvmet-cache');
}

// ---------------------------------------------------------------------------------------------------------------
// initramfs (cpio "newc", gzip)

function buildInitramfs(setup: HostSetup, config: string, prefill: Uint8Array | undefined): Buffer {
  const cpio = new Cpio();
  for (const dir of ['bin', 'dev', 'etc', 'mods', 'proc', 'sys', 'tmp']) cpio.dir(dir);
  cpio.charDevice('dev/console', 5, 1);
  cpio.file('bin/busybox', readFileSync(setup.busybox), 0o755);
  cpio.symlink('bin/sh', 'busybox');
  cpio.modules(setup.modules);
  cpio.file('etc/target.conf', Buffer.from(config));
  if (prefill) cpio.file('prefill.bin', prefill);
  cpio.file('init', readFileSync(INIT_SCRIPT), 0o755);
  return gzipSync(cpio.finish(), { level: 1 });
}

// ---------------------------------------------------------------------------------------------------------------
// ICReq probe

/** A 128-byte NVMe/TCP ICReq: PFV 0, HPDA 0, no digests, MAXR2T 0. */
export function icReqPdu(options: { headerDigest?: boolean; dataDigest?: boolean } = {}): Uint8Array {
  const pdu = Buffer.alloc(128);
  pdu.writeUInt8(0x00, 0); // type ICReq
  pdu.writeUInt8(128, 2); // HLEN
  pdu.writeUInt32LE(128, 4); // PLEN
  pdu.writeUInt8((options.headerDigest ? 1 : 0) | (options.dataDigest ? 2 : 0), 11); // DGST
  return pdu;
}

export interface IcResp {
  pfv: number;
  cpda: number;
  headerDigest: boolean;
  dataDigest: boolean;
  maxH2CData: number;
}

/** One ICReq/ICResp exchange on a new connection. Rejects on EOF, a reset, a bad answer or after `timeoutMs`. */
export function exchangeIcReq(host: string, port: number, timeoutMs = 5000): Promise<IcResp> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const chunks: Buffer[] = [];
    let received = 0;
    const done = (error: Error | undefined, value?: IcResp): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(value!);
    };
    const timer = setTimeout(() => done(new Error(`no ICResp from ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => socket.write(icReqPdu()));
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received < 128) return;
      const pdu = Buffer.concat(chunks);
      const type = pdu.readUInt8(0);
      const plen = pdu.readUInt32LE(4);
      if (type !== 0x01 || plen !== 128) return done(new Error(`not an ICResp from ${host}:${port}: type ${type} plen ${plen}`));
      const dgst = pdu.readUInt8(11);
      done(undefined, { pfv: pdu.readUInt16LE(8), cpda: pdu.readUInt8(10), headerDigest: (dgst & 1) !== 0, dataDigest: (dgst & 2) !== 0, maxH2CData: pdu.readUInt32LE(12) });
    });
    socket.on('end', () => done(new Error(`${host}:${port} closed the connection after ${received} bytes`)));
    socket.on('error', (error) => done(error));
  });
}

/**
 * Retries `exchangeIcReq` until it succeeds or `timeoutMs` passes. Needed because slirp's hostfwd accepts a
 * connection even when nothing listens in the guest, then closes it: a successful connect proves nothing.
 */
export async function waitForIcResp(host: string, port: number, timeoutMs: number, abort?: () => Error | undefined): Promise<IcResp> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const aborted = abort?.();
    if (aborted) throw aborted;
    try {
      return await exchangeIcReq(host, port, Math.max(500, Math.min(5000, deadline - Date.now())));
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) throw new Error(`no ICResp from ${host}:${port} within ${timeoutMs} ms (last: ${(last as Error).message})`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Control channel (virtio-serial port <-> unix socket)

class ControlChannel {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (info: string) => void; reject: (error: Error) => void }>();
  private closedError: Error | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => {
      this.buffer += text;
      let newline: number;
      while ((newline = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, newline).trim();
        this.buffer = this.buffer.slice(newline + 1);
        const match = /^(\d+) (ok|error)\s*(.*)$/.exec(line);
        const waiter = match ? this.pending.get(Number(match[1])) : undefined;
        if (!match || !waiter) continue;
        this.pending.delete(Number(match[1]));
        if (match[2] === 'ok') waiter.resolve(match[3] ?? '');
        else waiter.reject(new Error(`target: ${match[3]}`));
      }
    });
    const fail = (error: Error): void => {
      this.closedError ??= error;
      for (const waiter of this.pending.values()) waiter.reject(this.closedError);
      this.pending.clear();
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('control channel closed')));
  }

  static async connect(socketPath: string, timeoutMs: number, abort: () => Error | undefined): Promise<ControlChannel> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const aborted = abort();
      if (aborted) throw aborted;
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(socketPath);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        return new ControlChannel(socket);
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`cannot connect to the control socket ${socketPath}: ${(error as Error).message}`);
        await sleep(50);
      }
    }
  }

  request(command: string, timeoutMs: number): Promise<string> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`target did not answer "${command}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (info) => { clearTimeout(timer); resolve(info); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      });
      this.socket.write(`${id} ${command}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Process bookkeeping: never leave a QEMU behind

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    // The launcher also stops QEMU on its own when our end of its stdin pipe closes; this is the fast path.
    for (const proc of live) killGroup(proc, 'SIGKILL');
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    /* already gone */
  }
}

/**
 * Removes work dirs left behind by test processes that died (SIGKILL leaves no chance to clean up; the launcher still
 * stops their QEMU): those whose owner process is gone and that were last touched more than an hour ago.
 */
function sweepStaleWorkDirs(): void {
  let names: string[];
  try {
    names = readdirSync(os.tmpdir());
  } catch {
    return;
  }
  for (const name of names) {
    if (!/^vfiod-nvmet-[A-Za-z0-9]{6}$/.test(name)) continue;
    const dir = path.join(os.tmpdir(), name);
    try {
      if (Date.now() - statSync(dir).mtimeMs < 3_600_000) continue;
      const owner = Number(readFileSync(path.join(dir, 'owner.pid'), 'utf8'));
      try {
        process.kill(owner, 0);
        continue; // still alive
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH') continue;
      }
      rmSync(dir, { recursive: true, force: true });
    } catch {
      /* not ours, or already gone */
    }
  }
}

/** Free TCP ports on 127.0.0.1 (bound together, so distinct, then released for QEMU; see the retry in start). */
async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((server) => (server.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(none)';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The target

/**
 * Boots the guest (about 5-40 s under TCG, see docs/testing.md) and resolves when the target answers ICReq on every
 * port. Throws a clear error (with the console log path and its last lines) when it cannot.
 */
export async function startNvmetTarget(options: NvmetTargetOptions = {}): Promise<NvmetTarget> {
  const probe = hostSetup();
  if ('reason' in probe) throw new Error(`NVMe/TCP test target unavailable: ${probe.reason}`);
  const setup = probe.setup;

  const blockSize = options.blockSize ?? 512;
  const sizeBytes = options.sizeBytes ?? 64 * 1024 * 1024;
  const portCount = options.ports ?? 1;
  const subsystemNqn = options.subsystemNqn ?? DEFAULT_SUBSYSTEM_NQN;
  const bootTimeoutMs = options.bootTimeoutMs ?? envInt('VFIOD_TESTBED_BOOT_TIMEOUT', 150) * 1000;
  if (blockSize !== 512 && blockSize !== 4096) throw new Error(`blockSize must be 512 or 4096, not ${blockSize}`);
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % blockSize !== 0) {
    throw new Error(`sizeBytes must be a positive multiple of blockSize (${blockSize}), not ${sizeBytes}`);
  }
  if (!Number.isInteger(portCount) || portCount < 1 || portCount > 16) throw new Error(`ports must be 1..16, not ${portCount}`);
  if (!/^nqn\.[A-Za-z0-9.:_-]+$/.test(subsystemNqn) || subsystemNqn.length > 223) {
    throw new Error(`subsystemNqn must look like nqn.<date>.<domain>:<name> (letters, digits, . : _ -): ${subsystemNqn}`);
  }
  const prefill = options.guestPrefill;
  if (prefill && (!Number.isSafeInteger(prefill.offset) || prefill.offset < 0 || prefill.offset + prefill.data.length > sizeBytes || prefill.data.length === 0)) {
    throw new Error('guestPrefill must be non-empty and lie inside the namespace');
  }

  sweepStaleWorkDirs();
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-nvmet-'));
  writeFileSync(path.join(workDir, 'owner.pid'), String(process.pid));
  const backingFile = path.join(workDir, 'namespace1.img');
  const consoleLog = path.join(workDir, 'console.log');
  const qemuLog = path.join(workDir, 'qemu.log');
  const controlSocket = path.join(workDir, 'control.sock');
  const initrd = path.join(workDir, 'initrd.gz');
  if (/[\s,]/.test(workDir)) throw new Error(`the work dir ${workDir} must not contain spaces or commas (QEMU options)`);
  if (controlSocket.length > 100) throw new Error(`the control socket path is too long for a unix socket: ${controlSocket}`);
  const keep = env('VFIOD_TESTBED_KEEP') === '1';

  try {
    writeFileSync(backingFile, '');
    truncateSync(backingFile, sizeBytes);
    const config =
      `NQN='${subsystemNqn}'\nPORTS=${portCount}\nBASE_PORT=${GUEST_BASE_PORT}\n` +
      `SERIAL=${path.basename(workDir).replace(/[^A-Za-z0-9]/g, '').slice(-20)}\n` +
      (prefill ? `PREFILL_OFFSET=${prefill.offset}\n` : '');
    writeFileSync(initrd, buildInitramfs(setup, config, prefill?.data));
  } catch (error) {
    rmSync(workDir, { recursive: true, force: true });
    throw error;
  }

  const kernel = bootableKernel(setup);
  const accel = env('VFIOD_TESTBED_ACCEL') ?? 'tcg';
  const qemuArgs = (hostPorts: number[]): string[] => [
    '-accel', accel, '-cpu', 'max', '-smp', String(envInt('VFIOD_TESTBED_NVMET_SMP', 2)), '-m', String(envInt('VFIOD_TESTBED_NVMET_MEM', 512)),
    '-machine', 'q35', '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-kernel', kernel, '-initrd', initrd, '-append', 'console=ttyS0 panic=-1 quiet',
    '-serial', `file:${consoleLog}`,
    '-netdev', `user,id=n0,restrict=on,${hostPorts.map((port, i) => `hostfwd=tcp:127.0.0.1:${port}-:${GUEST_BASE_PORT + i}`).join(',')}`,
    '-device', 'virtio-net-pci,netdev=n0,romfile=',
    '-drive', `file=${backingFile},if=none,id=d0,format=raw,cache=writeback,discard=unmap`,
    '-device', `virtio-blk-pci,drive=d0,logical_block_size=${blockSize},physical_block_size=${blockSize}`,
    '-chardev', `socket,id=ctl,path=${controlSocket},server=on,wait=off`,
    '-device', 'virtio-serial-pci', '-device', 'virtserialport,chardev=ctl,name=vfiod.ctl',
  ];

  const hardTimeout = envInt('VFIOD_TESTBED_TIMEOUT', 3600);
  const started = Date.now();
  let child: ChildProcess | undefined;
  let control: ControlChannel | undefined;
  let hostPorts: number[] = [];
  let failure: Error | undefined;
  for (let attempt = 1; ; attempt++) {
    hostPorts = await freePorts(portCount);
    rmSync(controlSocket, { force: true });
    const logFd = openSync(qemuLog, 'w');
    const proc = spawn('sh', [LAUNCHER, String(hardTimeout), setup.qemu, ...qemuArgs(hostPorts)], {
      stdio: ['pipe', logFd, logFd],
      detached: true, // own process group: killGroup reaches the launcher, timeout and QEMU together
    });
    closeSync(logFd);
    child = proc;
    track(proc);
    let exited: Error | undefined;
    const exitedPromise = new Promise<never>((_, reject) => {
      proc.once('exit', (code, signal) => {
        const how = signal ?? (code === 0 ? 'status 0: the guest powered off or reset' : code === 124 ? 'hard timeout' : `status ${code}`);
        exited = new Error(`QEMU exited during boot (${how})`);
        reject(exited);
      });
      proc.once('error', (error) => {
        exited = error;
        reject(error);
      });
    });
    exitedPromise.catch(() => undefined);
    const abort = (): Error | undefined => exited;
    try {
      control = await ControlChannel.connect(controlSocket, 10_000, abort);
      const remaining = (): number => Math.max(1000, bootTimeoutMs - (Date.now() - started));
      await Promise.race([control.request('ping', remaining()), exitedPromise]);
      for (const port of hostPorts) await waitForIcResp('127.0.0.1', port, remaining(), abort);
      failure = undefined;
      break;
    } catch (error) {
      failure = error as Error;
      // a dying QEMU often shows first as a broken control socket: name the real cause when there is one
      await Promise.race([exitedPromise.catch(() => undefined), sleep(1000)]);
      if (exited && failure !== exited) failure = new Error(`${exited.message}; ${failure.message}`);
      control?.close();
      control = undefined;
      await stopProcess(proc);
      const qemuOutput = tail(qemuLog, 20);
      if (/host forwarding rule|Address already in use/i.test(qemuOutput) && attempt < 5) continue; // port race: retry
      break;
    }
  }
  if (failure || !child || !control) {
    const message =
      `NVMe/TCP test target did not come up: ${failure?.message ?? 'unknown error'}\n` +
      `  console log: ${consoleLog}\n  qemu output: ${qemuLog}\n` +
      `---- last lines of the console log ----\n${tail(consoleLog, 25)}\n---- qemu output ----\n${tail(qemuLog, 10)}`;
    throw new Error(message);
  }
  const bootMs = Date.now() - started;
  const proc = child;
  const ctl = control;
  proc.once('exit', () => ctl.close());
  let stopped = false;

  return {
    host: '127.0.0.1',
    ports: hostPorts,
    subsystemNqn,
    sizeBytes,
    blockSize,
    consoleLog,
    workDir,
    backingFile,
    bootMs,
    async readBacking(offset: number, length: number): Promise<Uint8Array> {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > sizeBytes) {
        throw new RangeError(`readBacking(${offset}, ${length}) is outside the ${sizeBytes}-byte namespace`);
      }
      const handle = await openAsync(backingFile, 'r');
      try {
        const bytes = new Uint8Array(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await handle.read(bytes, done, length - done, offset + done);
          if (bytesRead === 0) break; // sparse tail beyond EOF cannot happen (the file is truncated to size), zeroes anyway
          done += bytesRead;
        }
        return bytes;
      } finally {
        await handle.close();
      }
    },
    async restart(restartOptions: { downMs?: number } = {}): Promise<void> {
      if (stopped) throw new Error('target stopped');
      const downMs = Math.max(0, Math.round(restartOptions.downMs ?? 500));
      await ctl.request(`restart ${downMs}`, downMs + 30_000);
      for (const port of hostPorts) await waitForIcResp('127.0.0.1', port, 30_000, () => (proc.exitCode !== null ? new Error('QEMU exited') : undefined));
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      ctl.close();
      await stopProcess(proc);
      if (!keep) rmSync(workDir, { recursive: true, force: true });
    },
  };
}

/** Closes the launcher's stdin (it terminates QEMU), then kills the whole process group if it takes too long. */
async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.stdin?.end();
  const timer = setTimeout(() => killGroup(proc, 'SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** For docs/tests: the guest kernel version and QEMU binary the target would use, or undefined. */
export function nvmetTargetHostInfo(): { qemu: string; kernel: string; kernelVersion: string; modules: number } | undefined {
  const probe = hostSetup();
  return 'setup' in probe ? { qemu: probe.setup.qemu, kernel: probe.setup.kernel, kernelVersion: probe.setup.kernelVersion, modules: probe.setup.modules.length } : undefined;
}
