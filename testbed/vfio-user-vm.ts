/**
 * Real VMs for the guest tests: QEMU >= 10.1 with `vfio-user-pci` devices served by vfiod, and a stock Linux guest.
 *
 * QEMU: VFIOD_TESTBED_QEMU_VFIO_USER (a binary), else the one scripts/qemu-vfio-user.sh prints (Debian's QEMU 11.1 from
 * trixie-backports, cached in /var/cache/vfiod/qemu-vfio-user; .ci/run builds it). The guest: q35 with its RAM in a
 * memfd shared with vfiod (memory-backend-memfd, share=on: allocated lazily, so a 16 GiB guest costs what it touches),
 * N vCPUs under TCG, the host's /boot kernel with the busybox initramfs of testbed/vfio-guest.ts, the host's /
 * read-only over 9p as its root (so the host's fio, dd, nvme-cli and qemu-ga run in it), and a writable work dir at
 * its host path. testbed/vfio-user-vm-init.sh runs as PID 1: it loads nvme and starts the QEMU guest agent on a
 * virtio-serial port, through which the host runs shell commands (`sh`, `run`). QMP on one socket for the test
 * (commands, events) and on a second one for the project's QemuAdapter (`adapterQmpSocket`). Empty pcie-root-ports
 * for hot-plug. QEMU runs under testbed/qemu-launch.sh: it never outlives the test process.
 *
 * Knobs: VFIOD_TESTBED_DISABLE=1 (skip), VFIOD_TESTBED_KERNEL=<ver> (a /boot kernel), VFIOD_TESTBED_KEEP=1 (keep
 * work dirs), VFIOD_TESTBED_TIMEOUT=<s> (hard limit per QEMU, default 3600), VFIOD_TESTBED_QEMU_VFIO_USER=<qemu binary>.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { QgaExec } from '../src/bench/qga.js';
import { QmpConnection, type QmpEvent } from '../src/hypervisor/qmp.js';
import { extractedVmlinux, staticBusybox, which } from './guest-kernel.js';
import { buildInitramfs, findGuestKernel, REPO } from './vfio-guest.js';
import { env } from './knobs.js';


const LAUNCHER = path.join(REPO, 'testbed', 'qemu-launch.sh');
const VM_INIT = path.join(REPO, 'testbed', 'vfio-user-vm-init.sh');
const QEMU_SCRIPT = path.join(REPO, 'scripts', 'qemu-vfio-user.sh');
/** Loaded in the guest by vm-init.sh (from the 9p root). */
const GUEST_MODULES = ['nvme', 'virtio_console'];
/** Host programs the guests run from the 9p root. */
const GUEST_TOOLS = ['fio', 'qemu-ga', 'dd', 'cmp', 'sha256sum', 'setsid'];

// ---------------------------------------------------------------------------------------------------------------
// What is needed

export interface VfioUserQemu {
  qemu: string;
  /** `--version`'s first line. */
  version: string;
}

let qemuProbe: VfioUserQemu | { reason: string } | undefined;

/**
 * QEMU >= 10.1 with vfio-user-pci: VFIOD_TESTBED_QEMU_VFIO_USER, else scripts/qemu-vfio-user.sh's (which builds and caches it
 * when it is missing and it may: root and a reachable Debian archive; .ci/run runs it first).
 */
export function vfioUserQemu(): VfioUserQemu | { reason: string } {
  return (qemuProbe ??= probeQemu());
}

function probeQemu(): VfioUserQemu | { reason: string } {
  const override = env('VFIOD_TESTBED_QEMU_VFIO_USER');
  let qemu: string;
  if (override) {
    const found = which(override);
    if (!found) return { reason: `VFIOD_TESTBED_QEMU_VFIO_USER=${override} is not an executable` };
    qemu = found;
  } else {
    const script = spawnSync('bash', [QEMU_SCRIPT, '--quiet'], { encoding: 'utf8', timeout: 20 * 60_000 });
    const printed = script.stdout?.trim().split('\n').pop();
    if (script.status !== 0 || !printed) {
      const why = (script.stderr || script.error?.message || `exit ${script.status}`).trim().split('\n').pop();
      return { reason: `no QEMU with vfio-user-pci: scripts/qemu-vfio-user.sh failed (${why}); set VFIOD_TESTBED_QEMU_VFIO_USER or run the script as root` };
    }
    qemu = printed;
  }
  const version = spawnSync(qemu, ['--version'], { encoding: 'utf8', timeout: 60_000 });
  const first = (version.stdout ?? '').split('\n')[0]!.trim();
  const match = /version (\d+)\.(\d+)/.exec(first);
  if (version.status !== 0 || !match) return { reason: `${qemu} --version failed: ${(version.stderr || first || String(version.error)).trim()}` };
  if (Number(match[1]) < 10 || (Number(match[1]) === 10 && Number(match[2]) < 1)) {
    return { reason: `${qemu} is ${first}: vfio-user-pci needs QEMU >= 10.1 (scripts/qemu-vfio-user.sh gets one)` };
  }
  const device = spawnSync(qemu, ['-device', 'vfio-user-pci,help'], { encoding: 'utf8', timeout: 60_000 });
  if (device.status !== 0) return { reason: `${qemu} (${first}) has no vfio-user-pci device: ${(device.stderr ?? '').trim()}` };
  return { qemu, version: first };
}

interface GuestSetup {
  qemu: VfioUserQemu;
  busybox: string;
  kernel: string;
  kernelVersion: string;
  modules: string[];
}

let setupProbe: { setup: GuestSetup } | { reason: string } | undefined;

function probeSetup(): { setup: GuestSetup } | { reason: string } {
  if (env('VFIOD_TESTBED_DISABLE') === '1') return { reason: 'disabled by VFIOD_TESTBED_DISABLE=1' };
  if (process.platform !== 'linux' || process.arch !== 'x64') return { reason: 'needs Linux on x86-64' };
  for (const tool of ['timeout', 'sh', 'bash']) if (!which(tool)) return { reason: `${tool} not found (coreutils, bash)` };
  if (!existsSync(path.join(REPO, 'dist', 'cli', 'main.js'))) return { reason: 'dist/ is not built (npm test runs tsc first; or npx tsc -p tsconfig.json)' };
  if (/[\s,]/.test(REPO)) return { reason: `repository path '${REPO}' contains a space or comma (breaks -virtfs)` };
  const busybox = staticBusybox();
  if (!busybox) return { reason: 'no statically linked busybox (apt-get install busybox-static)' };
  const modprobe = which('modprobe');
  if (!modprobe) return { reason: 'modprobe not found (apt-get install kmod)' };
  // The guest runs the host's binaries from the 9p root: they must live outside the guest's tmpfs dirs.
  const guestPath = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const tool of GUEST_TOOLS) {
    if (!guestPath.some((d) => existsSync(path.join(d, tool)))) {
      return { reason: `${tool} is not installed in ${guestPath.join(', ')} (apt-get install fio qemu-guest-agent coreutils util-linux)` };
    }
  }
  const kernel = findGuestKernel(modprobe, GUEST_MODULES, env('VFIOD_TESTBED_KERNEL'), 'VFIOD_TESTBED_KERNEL');
  if ('reason' in kernel) return kernel;
  const qemu = vfioUserQemu();
  if ('reason' in qemu) return qemu;
  return { setup: { qemu, busybox, ...kernel } };
}

/** Why the vfio-user VMs cannot run here (the exact reason), or undefined when they can. /dev/kvm is not needed. */
export function vfioUserVmUnavailableReason(): string | undefined {
  const result = (setupProbe ??= probeSetup());
  return 'reason' in result ? result.reason : undefined;
}

function setup(): GuestSetup {
  const result = (setupProbe ??= probeSetup());
  if ('reason' in result) throw new Error(`vfio-user VM unavailable: ${result.reason}`);
  return result.setup;
}

// ---------------------------------------------------------------------------------------------------------------
// The VM

export interface VfioUserDevice {
  /** vfiod's socket. */
  socket: string;
  /** QEMU device id. */
  id: string;
  /** A pcie-root-port id, or pcie.0 when not given. */
  bus?: string;
}

export interface VfioUserVmOptions {
  /** In error messages and the work dir's name. */
  name: string;
  /** Guest RAM as QEMU takes it ('1G', '16G'); default '1G'. */
  memory?: string;
  /** vCPUs (the guest's nvme driver makes one I/O queue per CPU); default 2. */
  cpus?: number;
  /** vfio-user-pci devices present at start. */
  devices?: VfioUserDevice[];
  /** Empty pcie-root-ports rp1..rpN for hot-plug. */
  rootPorts?: number;
  /** Files written into the work dir before boot (the guest sees the work dir at the same path). */
  files?: Record<string, Uint8Array>;
  /** How long to wait for the guest agent; default 600 s. */
  bootTimeoutMs?: number;
  /** More words for the guest kernel's command line (e.g. 'pci=nomsi'). */
  append?: string[];
}

export interface ShellResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

type TimedEvent = QmpEvent & { at: number };

export class VfioUserVm {
  readonly workDir: string;
  readonly consoleLog: string;
  readonly qmpSocket: string;
  /** A second QMP socket for the project's QemuAdapter (QEMU serves one client per socket). */
  readonly adapterQmpSocket: string;
  readonly agentSocket: string;
  /** QEMU's pid (its -pidfile; not the launcher's). */
  pid = 0;
  /** The launcher's exit: QEMU's status (124: hard timeout; 128 + n: killed by signal n). */
  readonly exited: Promise<number | null>;
  exitCode: number | null | undefined;
  /** Every QMP event seen on the test's connection, with the host time it arrived. */
  readonly events: TimedEvent[] = [];
  /** Milliseconds from start until the guest agent answered the first time. */
  bootMs = 0;
  readonly qemuVersion: string;
  private readonly child: ChildProcess;
  private qmp: QmpConnection | undefined;
  private agent: QgaExec | undefined;
  private readonly started = Date.now();

  private constructor(
    readonly options: VfioUserVmOptions,
    guest: GuestSetup,
  ) {
    this.qemuVersion = guest.qemu.version;
    this.workDir = mkdtempSync(path.join(os.tmpdir(), `vfiod-vm-${options.name}-`));
    this.consoleLog = path.join(this.workDir, 'console.log');
    this.qmpSocket = path.join(this.workDir, 'qmp.sock');
    this.adapterQmpSocket = path.join(this.workDir, 'qmp-adapter.sock');
    this.agentSocket = path.join(this.workDir, 'qga.sock');
    const initrd = path.join(this.workDir, 'initrd.gz');
    writeFileSync(initrd, buildInitramfs(guest));
    for (const [name, bytes] of Object.entries(options.files ?? {})) writeFileSync(path.join(this.workDir, name), bytes);
    const memory = options.memory ?? '1G';
    const append = [
      'console=ttyS0', 'panic=-1', 'quiet', 'no_timer_check',
      `vt.work=${this.workDir}`, `vt.repo=${REPO}`, `vt.script=${VM_INIT}`, ...(options.append ?? []),
    ].join(' ');
    const args = [
      '-accel', 'tcg', '-cpu', 'max', '-smp', String(options.cpus ?? 2), '-m', memory,
      '-object', `memory-backend-memfd,id=mem0,size=${memory},share=on`, '-machine', 'q35,memory-backend=mem0',
      '-nodefaults', '-no-user-config', '-display', 'none', '-serial', `file:${this.consoleLog}`,
      '-kernel', extractedVmlinux(guest.kernel, guest.kernelVersion, 'vfiod-vfio-guest-cache'), '-initrd', initrd, '-append', append,
      '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
      '-virtfs', `local,path=${REPO},mount_tag=repo,security_model=none,readonly=on,multidevs=remap`,
      '-virtfs', `local,path=${this.workDir},mount_tag=work,security_model=none,multidevs=remap`,
      '-device', 'virtio-serial-pci,id=vser0',
      '-chardev', `socket,id=qga0,path=${this.agentSocket},server=on,wait=off`,
      '-device', 'virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0',
      '-qmp', `unix:${this.qmpSocket},server=on,wait=off`,
      '-qmp', `unix:${this.adapterQmpSocket},server=on,wait=off`,
      '-pidfile', path.join(this.workDir, 'qemu.pid'),
    ];
    for (let i = 1; i <= (options.rootPorts ?? 0); i++) args.push('-device', `pcie-root-port,id=rp${i},chassis=${i},slot=${i}`);
    for (const device of options.devices ?? []) args.push('-device', JSON.stringify(vfioUserDeviceJson(device)));
    const timeoutS = Number(env('VFIOD_TESTBED_TIMEOUT') ?? 3600);
    const logFd = openSync(path.join(this.workDir, 'qemu.log'), 'w');
    this.child = spawn('sh', [LAUNCHER, String(timeoutS), guest.qemu.qemu, ...args], { stdio: ['pipe', logFd, logFd] });
    closeSync(logFd);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? 128 : null);
        resolve(this.exitCode);
      });
      this.child.once('error', () => {
        this.exitCode = null;
        resolve(null);
      });
    });
  }

  /** Starts QEMU and resolves once the guest agent answers (or rejects with the console tail). */
  static async start(options: VfioUserVmOptions): Promise<VfioUserVm> {
    const vm = new VfioUserVm(options, setup());
    try {
      await vm.connectQmp(60_000);
      vm.pid = Number(readFileSync(path.join(vm.workDir, 'qemu.pid'), 'utf8').trim());
      await vm.waitForAgent(options.bootTimeoutMs ?? 600_000);
      vm.bootMs = Date.now() - vm.started;
    } catch (error) {
      await vm.stop({ keep: true });
      throw error;
    }
    return vm;
  }

  get name(): string {
    return this.options.name;
  }

  // -- diagnostics -------------------------------------------------------------------------------------------

  console(): string {
    return existsSync(this.consoleLog) ? readFileSync(this.consoleLog, 'utf8') : '';
  }

  /** The last lines of the serial console and of QEMU's own output, for error messages. */
  diagnostics(lines = 40): string {
    const qemuLog = path.join(this.workDir, 'qemu.log');
    const qemu = existsSync(qemuLog) ? readFileSync(qemuLog, 'utf8').trim().split('\n').slice(-10).join('\n') : '';
    return `VM ${this.name} (work dir ${this.workDir}); console tail:\n${this.console().split('\n').slice(-lines).join('\n')}` +
      (qemu ? `\nQEMU output:\n${qemu}` : '');
  }

  /** Fails at once when QEMU has exited or the guest kernel panicked (rather than at a deadline). */
  private checkAlive(what: string): void {
    if (this.exitCode !== undefined) throw new Error(`${what}: QEMU exited (${this.exitCode}); ${this.diagnostics()}`);
    if (/Kernel panic - not syncing/.test(this.console())) throw new Error(`${what}: the guest kernel panicked; ${this.diagnostics()}`);
  }

  /** `promise`, or a rejection as soon as QEMU exits or the guest panics (checked every second). */
  async guard<T>(promise: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const watch = new Promise<never>((_, reject) => {
      timer = setInterval(() => {
        try {
          this.checkAlive(what);
        } catch (error) {
          reject(error as Error);
        }
      }, 1000);
    });
    try {
      return await Promise.race([promise, watch]);
    } finally {
      clearInterval(timer);
    }
  }

  /** Polls `probe` until it returns a value other than undefined; fails on QEMU exit, panic or the deadline. */
  async waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, intervalMs = 250): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.checkAlive(`waiting for ${what}`);
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${Math.round(timeoutMs / 1000)} s; ${this.diagnostics()}`);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  /** Resolves with the match once the serial console shows `pattern` (counting matches from `after`, a count). */
  waitForConsole(pattern: RegExp, timeoutMs: number, after = 0): Promise<RegExpMatchArray> {
    const global = new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : `${pattern.flags}g`);
    return this.waitFor(`console ${pattern}`, () => [...this.console().matchAll(global)][after], timeoutMs);
  }

  /** How many times the console shows `pattern` so far. */
  consoleCount(pattern: RegExp): number {
    return [...this.console().matchAll(new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`))].length;
  }

  // -- QMP -------------------------------------------------------------------------------------------------

  private async connectQmp(timeoutMs: number): Promise<void> {
    this.qmp = await this.waitFor('the QMP socket', async () => {
      if (!existsSync(this.qmpSocket)) return undefined;
      return QmpConnection.connect(this.qmpSocket, { vmId: this.name, timeoutMs: 30_000 }).catch(() => undefined);
    }, timeoutMs, 100);
    this.qmp.on('event', (event: QmpEvent) => this.events.push({ ...event, at: Date.now() }));
    this.qmp.on('closed', () => undefined);
  }

  /** One QMP command on the test's connection. */
  qmpCommand<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 60_000): Promise<T> {
    if (!this.qmp) throw new Error(`VM ${this.name}: no QMP connection`);
    return this.qmp.execute<T>(command, args, timeoutMs);
  }

  /** The first QMP event `name` at or after `since` (Date.now()) that `match` accepts. */
  waitForEvent(name: string, options: { since?: number; timeoutMs?: number; match?: (data: Record<string, unknown>) => boolean } = {}): Promise<TimedEvent> {
    const { since = 0, timeoutMs = 120_000, match = () => true } = options;
    return this.waitFor(`QMP event ${name}`, () => this.events.find((e) => e.event === name && e.at >= since && match(e.data)), timeoutMs, 100);
  }

  // -- commands in the guest -------------------------------------------------------------------------------

  /**
   * Connects to the guest agent once the guest has started it (vm-init.sh prints "agent up") and it answers. After
   * a reboot, pass the count of "agent up" lines seen before it.
   */
  async waitForAgent(timeoutMs: number, agentStartsBefore = 0): Promise<void> {
    this.agent?.close();
    this.agent = undefined;
    const deadline = Date.now() + timeoutMs;
    await this.waitForConsole(/vm: agent up \(boot /, timeoutMs, agentStartsBefore);
    this.agent = await this.waitFor('the guest agent', () => QgaExec.connect(this.agentSocket).catch(() => undefined), Math.max(1, deadline - Date.now()), 500);
  }

  /** Runs `script` with sh in the guest; resolves with its exit code and output (rejects only if the agent fails). */
  async sh(script: string, options: { timeoutMs?: number; input?: string } = {}): Promise<ShellResult> {
    this.checkAlive(`running '${script.slice(0, 80)}'`);
    if (!this.agent) throw new Error(`VM ${this.name}: the guest agent is not connected`);
    const timeoutMs = options.timeoutMs ?? 120_000;
    const result = await this.guard(
      this.agent.run(['/bin/sh', '-c', script], { timeoutMs, ...(options.input !== undefined ? { input: options.input } : {}) }),
      `running '${script.trim().slice(0, 80)}'`,
    );
    if (result.timedOut) return { code: null, stdout: result.stdout, stderr: `${result.stderr} (timed out after ${timeoutMs} ms)` };
    return { code: result.exitCode, stdout: result.stdout, stderr: result.stderr };
  }

  /** Like sh, but a non-zero exit is an error that shows the output; resolves with stdout. */
  async run(script: string, options: { timeoutMs?: number; input?: string } = {}): Promise<string> {
    const result = await this.sh(script, options);
    if (result.code !== 0) {
      throw new Error(`VM ${this.name}: '${script}' exited ${result.code}:\nstdout: ${result.stdout}\nstderr: ${result.stderr}\n${this.diagnostics(20)}`);
    }
    return result.stdout;
  }

  /** Drops the agent connection (before a reboot; waitForAgent connects again). */
  dropAgent(): void {
    this.agent?.close();
    this.agent = undefined;
  }

  // -- the end -----------------------------------------------------------------------------------------------

  /** SIGKILL to QEMU itself (no clean vfio-user disconnect); resolves when it is gone. */
  async kill(): Promise<number | null> {
    if (this.pid) process.kill(this.pid, 'SIGKILL');
    return this.exited;
  }

  /** Stops QEMU (the launcher terminates it), closes the connections, removes the work dir unless kept. */
  async stop(options: { keep?: boolean } = {}): Promise<void> {
    this.agent?.close();
    this.qmp?.close();
    if (this.exitCode === undefined) {
      this.child.stdin?.end();
      this.child.kill('SIGTERM');
    }
    await this.exited;
    if (!options.keep && env('VFIOD_TESTBED_KEEP') !== '1') rmSync(this.workDir, { recursive: true, force: true });
  }
}

/** The -device / device_add JSON of a vfio-user-pci device (QEMU takes only the JSON form of the socket). */
export function vfioUserDeviceJson(device: VfioUserDevice): Record<string, unknown> {
  return { driver: 'vfio-user-pci', socket: { path: device.socket, type: 'unix' }, id: device.id, ...(device.bus ? { bus: device.bus } : {}) };
}
