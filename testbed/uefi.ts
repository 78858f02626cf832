/**
 * A real VM against `vfiod serve` that boots through UEFI from the vfiod namespace (test/guest/uefi-boot.test.ts,
 * test/guest/quickstart.test.ts, testbed/make-disk.ts).
 *
 * - QEMU: the vfio-user-capable QEMU that scripts/qemu-vfio-user.sh gets and caches (QEMU >= 10.1), with OVMF from
 *   the same trixie tree.
 * - The disk: a GPT image (sfdisk) with an EFI System Partition (FAT, mtools) holding systemd-boot as
 *   \EFI\BOOT\BOOTX64.EFI, one loader entry, the host's /boot kernel (an EFI-stub kernel) and an initramfs built
 *   here (static busybox, the nvme modules resolved by kmod, an /init script, optionally dynamically linked host
 *   tools with their libraries), and a second partition for data.
 * - No orphans: QEMU runs under testbed/qemu-launch.sh (stopped when this process closes its stdin or dies).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, openSync, readFileSync, rmSync, writeFileSync, writeSync, ftruncateSync, readSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { bootKernelVersions, Cpio, resolveModules, staticBusybox, which } from './guest-kernel.js';
import { env } from './knobs.js';
import { vfioUserQemu } from './vfio-user-vm.js';

export const REPO = fileURLToPath(new URL('../', import.meta.url)).replace(/\/$/, '');
const LAUNCHER = path.join(REPO, 'testbed', 'qemu-launch.sh');
/** systemd-boot from Debian's systemd-boot-efi package. */
const SYSTEMD_BOOT = '/usr/lib/systemd/boot/efi/systemd-bootx64.efi';
/** Modules the guest's /init loads (nvme with its dependencies; efivarfs to read what the boot loader left). */
const GUEST_MODULES = ['nvme', 'efivarfs'];
/** GPT partition type GUIDs. */
const ESP_TYPE = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
const LINUX_DATA_TYPE = '0FC63DAF-8483-4772-8E79-3D69D8477DE4';
const MiB = 1 << 20;


export interface UefiSetup {
  /** The wrapper that runs like qemu-system-x86_64 (scripts/qemu-vfio-user.sh). */
  qemu: string;
  qemuVersion: string;
  ovmfCode: string;
  ovmfVars: string;
  busybox: string;
  kernel: string;
  kernelVersion: string;
  /** Module files (with dependencies, load order) for GUEST_MODULES. */
  modules: string[];
  tools: { sfdisk: string; mformat: string; mmd: string; mcopy: string };
}

let probed: { setup: UefiSetup } | { reason: string } | undefined;
let probedDisk: { setup: UefiSetup } | { reason: string } | undefined;

/** OVMF next to the QEMU tree (<cache>/root/usr/share/OVMF), else the host's ovmf package. VFIOD_TESTBED_OVMF_DIR overrides. */
function findOvmf(qemu: string): { code: string; vars: string } | undefined {
  const dirs = [
    env('VFIOD_TESTBED_OVMF_DIR'),
    path.resolve(path.dirname(qemu), '..', 'root', 'usr', 'share', 'OVMF'),
    '/usr/share/OVMF',
  ].filter((d): d is string => !!d);
  for (const dir of dirs) {
    const code = path.join(dir, 'OVMF_CODE_4M.fd');
    const vars = path.join(dir, 'OVMF_VARS_4M.fd');
    if (existsSync(code) && existsSync(vars)) return { code, vars };
  }
  return undefined;
}

function probe(withVm: boolean): { setup: UefiSetup } | { reason: string } {
  if (env('VFIOD_TESTBED_DISABLE') === '1') return { reason: 'disabled by VFIOD_TESTBED_DISABLE=1' };
  if (process.platform !== 'linux' || process.arch !== 'x64') return { reason: 'needs Linux on x86-64' };
  for (const tool of ['timeout', 'sh', 'bash']) if (!which(tool)) return { reason: `${tool} not found` };
  const tools = { sfdisk: which('sfdisk'), mformat: which('mformat'), mmd: which('mmd'), mcopy: which('mcopy') };
  if (!tools.sfdisk) return { reason: 'sfdisk not found (apt-get install fdisk)' };
  if (!tools.mformat || !tools.mmd || !tools.mcopy) return { reason: 'mtools not found (apt-get install mtools)' };
  if (!existsSync(SYSTEMD_BOOT)) return { reason: `no ${SYSTEMD_BOOT} (apt-get install systemd-boot-efi)` };
  const busybox = staticBusybox();
  if (!busybox) return { reason: 'no statically linked busybox (apt-get install busybox-static)' };
  const modprobe = which('modprobe');
  if (!modprobe) return { reason: 'modprobe not found (apt-get install kmod)' };
  const wanted = env('VFIOD_TESTBED_KERNEL');
  const rejected: string[] = [];
  let kernel: { version: string; modules: string[] } | undefined;
  for (const version of bootKernelVersions().filter((v) => !wanted || v === wanted)) {
    try {
      if (!/^CONFIG_EFI_STUB=y$/m.test(readFileSync(`/boot/config-${version}`, 'utf8'))) {
        rejected.push(`${version}: no CONFIG_EFI_STUB=y`);
        continue;
      }
      readFileSync(`/boot/vmlinuz-${version}`, { flag: 'r' }).subarray(0, 1);
    } catch (error) {
      rejected.push(`${version}: ${(error as Error).message}`);
      continue;
    }
    const modules = resolveModules(modprobe, version, GUEST_MODULES);
    if (typeof modules === 'string') {
      rejected.push(`${version}: ${modules}`);
      continue;
    }
    kernel = { version, modules };
    break;
  }
  if (!kernel) {
    return {
      reason: `no usable guest kernel${wanted ? ` (VFIOD_TESTBED_KERNEL=${wanted})` : ''}: need a readable EFI-stub ` +
        `/boot/vmlinuz-<ver> with ${GUEST_MODULES.join(', ')} in /lib/modules/<ver> (apt-get install linux-image-amd64)` +
        (rejected.length ? `; rejected: ${rejected.join('; ')}` : ''),
    };
  }
  const disk = {
    busybox, kernel: `/boot/vmlinuz-${kernel.version}`, kernelVersion: kernel.version, modules: kernel.modules,
    tools: tools as UefiSetup['tools'],
  };
  if (!withVm) return { setup: { ...disk, qemu: '', qemuVersion: '', ovmfCode: '', ovmfVars: '' } };
  const found = vfioUserQemu();
  if ('reason' in found) return found;
  const qemuVersion = found.version;
  const ovmf = findOvmf(found.qemu);
  if (!ovmf) return { reason: `no OVMF_CODE_4M.fd/OVMF_VARS_4M.fd next to ${found.qemu} or in /usr/share/OVMF (apt-get install ovmf)` };
  return { setup: { ...disk, qemu: found.qemu, qemuVersion, ovmfCode: ovmf.code, ovmfVars: ovmf.vars } };
}

/**
 * The setup, or why a UEFI guest cannot run here (probed once per process). With `{ vm: false }` only what the
 * boot disk needs (no QEMU, no OVMF: qemu, qemuVersion, ovmfCode and ovmfVars are empty).
 */
export function uefiGuestSetup(options: { vm?: boolean } = {}): { setup: UefiSetup } | { reason: string } {
  if (options.vm === false) return (probedDisk ??= probe(false));
  return (probed ??= probe(true));
}

// ---------------------------------------------------------------------------------------------------------------
// initramfs

/** Shared libraries `binary` needs (ldd), the dynamic loader included. */
function sharedLibraries(binary: string): string[] {
  const result = spawnSync('ldd', [binary], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ldd ${binary}: ${result.stderr.trim() || result.stdout.trim()}`);
  const libraries: string[] = [];
  for (const line of result.stdout.split('\n')) {
    const match = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (match?.[1]) libraries.push(match[1]);
  }
  return libraries;
}

/**
 * A gzip'd initramfs: static busybox (its applets as links in /bin), the guest modules in /mods (load order in
 * /mods/order), `init` as /init, and `binaries` (host paths, e.g. /usr/bin/lsblk) at their host paths with their
 * shared libraries.
 */
export function buildInitramfs(setup: UefiSetup, options: { init: string; binaries?: string[] }): Buffer {
  const cpio = new Cpio();
  const dirs = new Set<string>();
  const mkdirs = (file: string): void => {
    const parts = path.dirname(file).split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!dirs.has(dir)) {
        dirs.add(dir);
        cpio.dir(dir);
      }
    }
  };
  for (const dir of ['bin', 'dev', 'mods', 'proc', 'sys', 'tmp', 'run', 'etc']) mkdirs(`${dir}/x`);
  cpio.charDevice('dev/console', 5, 1);
  cpio.file('bin/busybox', readFileSync(setup.busybox), 0o755);
  const applets = spawnSync(setup.busybox, ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter((a) => /^[\w.-]+$/.test(a));
  for (const applet of applets) if (applet !== 'busybox') cpio.symlink(`bin/${applet}`, 'busybox');
  cpio.modules(setup.modules);
  const files = new Set<string>();
  for (const binary of options.binaries ?? []) {
    for (const file of [binary, ...sharedLibraries(binary)]) {
      if (files.has(file)) continue;
      files.add(file);
      const inside = file.replace(/^\/+/, '');
      mkdirs(inside);
      // Debian 12 has a merged /usr: /lib, /lib64 and /bin are links into /usr, and ldd names either spelling.
      cpio.file(inside, readFileSync(file), 0o755);
    }
  }
  cpio.file('init', readFileSync(options.init), 0o755);
  return gzipSync(cpio.finish(), { level: 6 });
}

// ---------------------------------------------------------------------------------------------------------------
// The disk: GPT, an ESP with systemd-boot, kernel and initramfs, and a data partition

export interface DiskLayout {
  sizeBytes: number;
  /** Byte offsets and sizes; `uuid` is the partition's unique GUID (lower case). */
  esp: { offset: number; size: number; uuid: string };
  data: { offset: number; size: number; uuid: string };
  /** The kernel command line in the loader entry. */
  cmdline: string;
}

function run(command: string, args: string[], input?: string): void {
  const result = spawnSync(command, args, { encoding: 'utf8', input });
  if (result.status !== 0) {
    throw new Error(`${path.basename(command)} ${args.join(' ')} failed (${result.status}): ${(result.stderr || result.stdout).trim()}`);
  }
}

/**
 * Writes a bootable GPT disk image at `image` (created sparse, or truncated to `sizeBytes`): partition 1 is an
 * ESP of `espBytes` with systemd-boot as \EFI\BOOT\BOOTX64.EFI (the removable-media path OVMF boots without any
 * boot variable), loader.conf (timeout 0) and one entry booting \vmlinuz with \initrd.img and `cmdline`;
 * partition 2 (Linux data) is the rest. The data partition's bytes are zero.
 */
export function buildBootDisk(
  setup: UefiSetup,
  options: { image: string; sizeBytes: number; espBytes?: number; initrd: Buffer; cmdline: string; workDir: string },
): DiskLayout {
  const espBytes = options.espBytes ?? 64 * MiB;
  const sector = 512;
  const espStart = 1 * MiB;
  const dataStart = espStart + espBytes;
  // The backup GPT takes the last 33 sectors; keep the data partition 1 MiB aligned and clear of it.
  const dataSize = Math.floor((options.sizeBytes - dataStart - 34 * sector) / MiB) * MiB;
  if (dataSize < MiB) throw new Error(`disk of ${options.sizeBytes} bytes is too small for a ${espBytes}-byte ESP`);
  const espUuid = randomUUID();
  const dataUuid = randomUUID();

  const fd = openSync(options.image, 'w');
  ftruncateSync(fd, options.sizeBytes);
  closeSync(fd);
  const table = [
    'label: gpt',
    `start=${espStart / sector}, size=${espBytes / sector}, type=${ESP_TYPE}, uuid=${espUuid}, name="EFI System"`,
    `start=${dataStart / sector}, size=${dataSize / sector}, type=${LINUX_DATA_TYPE}, uuid=${dataUuid}, name="vfiod data"`,
  ].join('\n');
  run(setup.tools.sfdisk, ['--quiet', '--no-reread', '--no-tell-kernel', options.image], `${table}\n`);

  // The FAT file system is made in its own file, filled with mtools, then copied into partition 1.
  const esp = path.join(options.workDir, 'esp.img');
  rmSync(esp, { force: true });
  const mtoolsEnv = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
  const mt = (tool: string, args: string[]): void => {
    const result = spawnSync(tool, args, { encoding: 'utf8', env: mtoolsEnv });
    if (result.status !== 0) throw new Error(`${path.basename(tool)} ${args.join(' ')} failed: ${(result.stderr || result.stdout).trim()}`);
  };
  // FAT32 (-F), 64 heads x 32 sectors geometry, total sectors given: OVMF's FAT driver reads all FAT types.
  mt(setup.tools.mformat, ['-C', '-F', '-i', esp, '-T', String(espBytes / sector), '-h', '64', '-s', '32', '-v', 'VFIODESP', '::']);
  for (const dir of ['::/EFI', '::/EFI/BOOT', '::/loader', '::/loader/entries']) mt(setup.tools.mmd, ['-i', esp, dir]);
  const staged = (name: string, data: string | Buffer): string => {
    const file = path.join(options.workDir, name);
    writeFileSync(file, data);
    return file;
  };
  const copies: Array<[string, string]> = [
    [SYSTEMD_BOOT, '::/EFI/BOOT/BOOTX64.EFI'],
    [staged('loader.conf', 'default vfiod.conf\ntimeout 0\neditor no\n'), '::/loader/loader.conf'],
    [staged('vfiod.conf', `title vfiod guest\nlinux /vmlinuz\ninitrd /initrd.img\noptions ${options.cmdline}\n`), '::/loader/entries/vfiod.conf'],
    [setup.kernel, '::/vmlinuz'],
    [staged('initrd.img', options.initrd), '::/initrd.img'],
  ];
  for (const [from, to] of copies) mt(setup.tools.mcopy, ['-i', esp, from, to]);

  const fat = readFileSync(esp);
  if (fat.length !== espBytes) throw new Error(`mformat made ${fat.length} bytes, expected ${espBytes}`);
  const disk = openSync(options.image, 'r+');
  try {
    writeSync(disk, fat, 0, fat.length, espStart);
  } finally {
    closeSync(disk);
  }
  rmSync(esp, { force: true });
  return {
    sizeBytes: options.sizeBytes,
    esp: { offset: espStart, size: espBytes, uuid: espUuid },
    data: { offset: dataStart, size: dataSize, uuid: dataUuid },
    cmdline: options.cmdline,
  };
}

/** `length` bytes of `file` at `offset`. */
export function readAt(file: string, offset: number, length: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const got = readSync(fd, buffer, 0, length, offset);
    return buffer.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/** Writes `data` into `file` at `offset`. */
export function writeAt(file: string, offset: number, data: Uint8Array): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Processes: text output that can be waited on

/** Collects a child's output and resolves waits on it when a pattern shows up; fails them when the child exits. */
export class Output {
  text = '';
  exitCode: number | null | undefined;
  private waiters: Array<() => void> = [];
  readonly exited: Promise<number | null>;

  constructor(readonly name: string, child: ChildProcess, logFile?: string) {
    const log = logFile ? openSync(logFile, 'w') : undefined;
    const take = (chunk: Buffer): void => {
      this.text += chunk.toString('utf8');
      if (log !== undefined) writeSync(log, chunk);
      this.wake();
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    this.exited = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        if (log !== undefined) closeSync(log);
        this.wake();
        resolve(this.exitCode);
      });
      child.once('error', (error) => {
        this.text += `\n[${name}: ${error.message}]\n`;
      });
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }

  tail(lines = 40): string {
    return this.text.split('\n').slice(-lines).join('\n');
  }

  /** Resolves with the first match of `pattern` (from `from` on); rejects when the child exits first or after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${this.name}: no ${pattern} within ${timeoutMs / 1000} s; last output:\n${this.tail()}`));
      }, timeoutMs);
      const check = (): void => {
        const match = pattern.exec(this.text.slice(from));
        if (match) {
          clearTimeout(timer);
          resolve(match);
        } else if (this.exitCode !== undefined) {
          clearTimeout(timer);
          reject(new Error(`${this.name} exited (${this.exitCode}) before ${pattern}; last output:\n${this.tail()}`));
        } else {
          this.waiters.push(check);
        }
      };
      check();
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// vfiod serve

export interface Served {
  child: ChildProcess;
  output: Output;
  /** The controller's "listening" log record (serialNumber, namespaces, identityPath). */
  listening: Record<string, unknown>;
  /** JSON log records so far. */
  records(): Array<Record<string, unknown>>;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `node bin/vfiod.js serve` (the compiled dist/) and waits for its "listening" line. */
export async function startServe(args: string[], options: { logFile?: string; timeoutMs?: number } = {}): Promise<Served> {
  const child = spawn(process.execPath, [path.join(REPO, 'bin', 'vfiod.js'), 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = new Output('vfiod serve', child, options.logFile);
  const records = (): Array<Record<string, unknown>> =>
    output.text.split('\n').flatMap((line) => {
      try {
        const record = JSON.parse(line) as unknown;
        return record && typeof record === 'object' ? [record as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
  try {
    await output.waitFor(/"msg":"listening"[^\n]*"component":"controller"[^\n]*\n/, options.timeoutMs ?? 60_000);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  // The controller's "listening" record (the vfio-user layer logs one too, without the identity).
  const listening = records().find((record) => record['msg'] === 'listening' && record['component'] === 'controller')!;
  return {
    child, output, listening, records,
    stop: async () => {
      if (output.exitCode === undefined) child.kill('SIGTERM');
      return output.exited;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// QEMU

export interface UefiVm {
  child: ChildProcess;
  /** Serial console (OVMF, systemd-boot, the kernel, /init) and QEMU's own messages. */
  output: Output;
  args: string[];
  /** Closes the launcher's stdin: QEMU is terminated. */
  kill(): void;
}

/**
 * Starts a q35 VM with OVMF (a private copy of the variable store in `workDir`), `memory` of memfd RAM shared with
 * the vfio-user server, and the vfio-user-pci device on `socket` with bootindex 0 as its only disk.
 */
export function startUefiVm(
  setup: UefiSetup,
  options: { socket: string; workDir: string; memory?: string; smp?: number; timeoutS?: number },
): UefiVm {
  const vars = path.join(options.workDir, 'OVMF_VARS.fd');
  copyFileSync(setup.ovmfVars, vars);
  const memory = options.memory ?? '512M';
  const device = { driver: 'vfio-user-pci', socket: { path: options.socket, type: 'unix' }, bootindex: 0 };
  const args = [
    '-accel', 'tcg', '-cpu', 'max', '-smp', String(options.smp ?? 1), '-m', memory,
    '-machine', 'q35,memory-backend=mem0', '-object', `memory-backend-memfd,id=mem0,size=${memory},share=on`,
    '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${setup.ovmfCode}`,
    '-drive', `if=pflash,format=raw,unit=1,file=${vars}`,
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-nic', 'none',
    '-serial', 'stdio',
    '-device', JSON.stringify(device),
  ];
  const timeoutS = options.timeoutS ?? Number(env('VFIOD_TESTBED_TIMEOUT') ?? 900);
  const child = spawn('sh', [LAUNCHER, String(timeoutS), setup.qemu, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const output = new Output('QEMU', child, path.join(options.workDir, 'console.log'));
  return { child, output, args, kill: () => child.stdin?.destroy() };
}
