/**
 * QEMU guest for the VFIO passthrough integration test (test/guest/vfio-passthrough.test.ts).
 *
 * Recipe from ../shared/testbed: a TCG q35 guest with an emulated Intel IOMMU (intremap=on, caching-mode=on), an
 * SR-IOV NVMe PF behind its own pcie-root-port (so the PF and every VF have their own IOMMU group) and a
 * bochs-display (GPU stand-in) behind another root port. The guest boots the host's kernel with a tiny busybox
 * initramfs built here (testbed/vfio-guest/init.sh as /init, the virtio/9p modules), mounts the host's / read-only
 * over 9p as its root (so the host's node, nvme-cli and kmod run in the guest), puts tmpfs on /tmp /run /var/tmp
 * /root, mounts this repository and a writable work dir at their host paths (9p shares: visible even when they live
 * under /tmp), and runs testbed/vfio-guest/guest.sh, which runs testbed/vfio-guest/guest-main.ts with tsx. The guest
 * writes results.json into the work dir and powers off.
 *
 * QEMU runs under testbed/qemu-launch.sh (stops it when this process closes the pipe or dies, and after a hard
 * timeout). Knobs: VFIOD_TESTBED_DISABLE=1, VFIOD_TESTBED_KERNEL=<ver>, VFIOD_TESTBED_QEMU=<binary>,
 * VFIOD_TESTBED_KEEP=1 (keep the work dir), VFIOD_TESTBED_TIMEOUT=<s> (default 240).
 */
import { spawn } from 'node:child_process';
import {
  accessSync, closeSync, constants as fsConstants, copyFileSync, existsSync, linkSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { bootKernelVersions, Cpio, extractedVmlinux, resolveModules, staticBusybox, which } from './guest-kernel.js';
import { env } from './knobs.js';

export const REPO = fileURLToPath(new URL('../', import.meta.url)).replace(/\/$/, '');
const GUEST_DIR = path.join(REPO, 'testbed', 'vfio-guest');
const LAUNCHER = path.join(REPO, 'testbed', 'qemu-launch.sh');
/** Loaded by the initramfs /init (dependencies resolved by modprobe). */
const INITRAMFS_MODULES = ['virtio_pci', '9pnet_virtio', '9p'];
/** Loaded in the guest with modprobe from the 9p root; checked here so the test can skip with a reason. */
const GUEST_MODULES = ['vfio-pci', 'nvme'];


interface Setup {
  qemu: string;
  busybox: string;
  kernel: string;
  kernelVersion: string;
  modules: string[];
}

let probed: { setup: Setup } | { reason: string } | undefined;
const probedKernels = new Map<string, { setup: Setup } | { reason: string }>();

/**
 * Where testbed/vfio-guest/build-kernel.sh puts the guest kernel with iommufd + VFIO cdev built in (Debian's kernels
 * have no CONFIG_IOMMUFD): pass it as the `kernel` option. VFIOD_TESTBED_IOMMUFD_KERNEL_DIR overrides it (for both).
 */
export const IOMMUFD_GUEST_KERNEL_DIR = env('VFIOD_TESTBED_IOMMUFD_KERNEL_DIR') ?? '/var/cache/vfiod/guest-kernel';

/** A kernel directory from build-kernel.sh: vmlinux, config and release; every driver built in (no modules). */
function builtinKernel(dir: string, qemu: string, busybox: string): { setup: Setup } | { reason: string } {
  const build = 'testbed/vfio-guest/build-kernel.sh (.ci/run runs it)';
  const kernel = path.join(dir, 'vmlinux');
  if (!existsSync(kernel)) return { reason: `no guest kernel at ${kernel}: build it with ${build}` };
  let config = '';
  let release = '';
  try {
    config = readFileSync(path.join(dir, 'config'), 'utf8');
    release = readFileSync(path.join(dir, 'release'), 'utf8').trim();
  } catch (error) {
    return { reason: `${dir}: ${(error as Error).message}: rebuild it with ${build}` };
  }
  const needed = ['IOMMUFD', 'VFIO_DEVICE_CDEV', 'VFIO_PCI', 'BLK_DEV_NVME', 'PCI_IOV', 'INTEL_IOMMU', 'VIRTIO_PCI', '9P_FS', 'NET_9P_VIRTIO'];
  const missing = needed.filter((option) => !new RegExp(`^CONFIG_${option}=y$`, 'm').test(config));
  if (missing.length) return { reason: `${dir}/config lacks ${missing.map((o) => `CONFIG_${o}=y`).join(', ')}: rebuild it with ${build}` };
  return { setup: { qemu, busybox, kernel, kernelVersion: release, modules: [] } };
}

/** `kernel`: a /boot version (like VFIOD_TESTBED_KERNEL) or an absolute build-kernel.sh directory. */
function probeSetup(kernel?: string): { setup: Setup } | { reason: string } {
  if (env('VFIOD_TESTBED_DISABLE') === '1') return { reason: 'disabled by VFIOD_TESTBED_DISABLE=1' };
  if (process.platform !== 'linux' || process.arch !== 'x64') return { reason: 'needs Linux on x86-64' };
  const qemuName = env('VFIOD_TESTBED_QEMU') ?? 'qemu-system-x86_64';
  const qemu = which(qemuName);
  if (!qemu) return { reason: `${qemuName} not found (apt-get install qemu-system-x86)` };
  for (const tool of ['timeout', 'sh']) if (!which(tool)) return { reason: `${tool} not found (coreutils)` };
  const busybox = staticBusybox();
  if (!busybox) return { reason: 'no statically linked busybox (apt-get install busybox-static)' };
  const builtinDir = kernel?.startsWith('/') ? kernel : undefined;
  const modprobe = which('modprobe');
  if (!modprobe) return { reason: 'modprobe not found (apt-get install kmod)' };
  // The guest runs the host's binaries from the 9p root: they must live outside the guest's tmpfs dirs.
  const guestPath = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  const inGuest = (name: string): boolean => guestPath.some((d) => existsSync(path.join(d, name)));
  if (!inGuest('node')) return { reason: 'node is not installed system-wide (/usr/bin, /usr/local/bin): the guest cannot run it' };
  if (!inGuest('nvme')) return { reason: 'nvme-cli not found (apt-get install nvme-cli): needed to online the NVMe VFs (virt-mgmt)' };
  if (!existsSync(path.join(REPO, 'node_modules', 'tsx'))) return { reason: 'tsx not installed (npm install)' };
  if (!existsSync(path.join(REPO, 'build', 'Release', 'vfiod_native.node'))) return { reason: 'native addon not built (npm install)' };
  if (/[\s,]/.test(REPO)) return { reason: `repository path '${REPO}' contains a space or comma (breaks -virtfs)` };
  if (builtinDir) return builtinKernel(builtinDir, qemu, busybox);
  const found = findGuestKernel(modprobe, GUEST_MODULES, kernel ?? env('VFIOD_TESTBED_KERNEL'), 'VFIOD_TESTBED_KERNEL');
  return 'reason' in found ? found : { setup: { qemu, busybox, ...found } };
}

/**
 * The newest /boot kernel (or version `wanted`) that the test guests can boot: readable, with the initramfs modules
 * (virtio_pci, 9pnet_virtio, 9p) and `guestModules` (loaded in the guest with modprobe from the 9p root) in
 * /lib/modules/<ver>. `modules`: the initramfs module files in load order (for buildInitramfs). `wantedBy` names the
 * variable that chose `wanted`, for the reason.
 */
export function findGuestKernel(
  modprobe: string,
  guestModules: string[],
  wanted?: string,
  wantedBy = 'kernel',
): { kernel: string; kernelVersion: string; modules: string[] } | { reason: string } {
  let versions = bootKernelVersions();
  if (wanted) versions = versions.filter((v) => v === wanted);
  const rejected: string[] = [];
  for (const version of versions) {
    const kernel = `/boot/vmlinuz-${version}`;
    try {
      accessSync(kernel, fsConstants.R_OK);
    } catch {
      rejected.push(`${kernel} not readable`);
      continue;
    }
    const modules = resolveModules(modprobe, version, INITRAMFS_MODULES);
    if (typeof modules === 'string') {
      rejected.push(`${version}: ${modules}`);
      continue;
    }
    const inGuest = resolveModules(modprobe, version, guestModules);
    if (typeof inGuest === 'string') {
      rejected.push(`${version}: ${inGuest}`);
      continue;
    }
    return { kernel, kernelVersion: version, modules };
  }
  return {
    reason:
      `no usable guest kernel${wanted ? ` (${wantedBy}=${wanted})` : ''}: need /boot/vmlinuz-<ver> with ` +
      `${[...INITRAMFS_MODULES, ...guestModules].join(', ')} in /lib/modules/<ver> (apt-get install linux-image-amd64)` +
      (rejected.length ? `; rejected: ${rejected.join('; ')}` : ''),
  };
}

function setupFor(kernel: string | undefined): { setup: Setup } | { reason: string } {
  if (kernel === undefined) return (probed ??= probeSetup());
  let result = probedKernels.get(kernel);
  if (!result) probedKernels.set(kernel, (result = probeSetup(kernel)));
  return result;
}

/**
 * Why the guest cannot run here, or undefined when it can. /dev/kvm is not needed (TCG). `kernel` as for
 * runVfioGuest (default: the newest /boot kernel with the modules, or VFIOD_TESTBED_KERNEL).
 */
export function vfioGuestUnavailableReason(kernel?: string): string | undefined {
  const result = setupFor(kernel);
  return 'reason' in result ? result.reason : undefined;
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * The guests' initramfs (gzip'd cpio): static busybox, the initramfs modules `setup.modules` (from findGuestKernel)
 * and testbed/vfio-guest/init.sh as /init, which mounts the host's / over 9p and runs the kernel command line's
 * vt.script= (see runVfioGuest's command line for the vt.* words it reads).
 */
export function buildInitramfs(setup: Pick<Setup, 'busybox' | 'modules'>): Buffer {
  const cpio = new Cpio();
  for (const dir of ['bin', 'dev', 'mods', 'proc', 'sys', 'newroot']) cpio.dir(dir);
  cpio.charDevice('dev/console', 5, 1);
  cpio.file('bin/busybox', readFileSync(setup.busybox), 0o755);
  for (const applet of ['sh', 'mount', 'insmod', 'mkdir', 'switch_root', 'echo', 'cat', 'poweroff']) {
    cpio.symlink(`bin/${applet}`, 'busybox');
  }
  cpio.modules(setup.modules);
  cpio.file('init', readFileSync(path.join(GUEST_DIR, 'init.sh')), 0o755);
  return gzipSync(cpio.finish(), { level: 1 });
}

/**
 * What a guest program needs to start its own (L2) QEMU guest: `l2-vmlinux` (the same kernel, linked into the work
 * dir because the host's /tmp is hidden in the guest) and `l2-initrd.cpio` (uncompressed; static busybox as /bin/busybox, `init` as
 * /init, the kernel modules `modules` resolve to in /mods with their load order in /mods/order).
 */
export interface NestedGuestAssets {
  /** Path of the L2 /init script. */
  init: string;
  /** Module names to include with their dependencies (e.g. ['nvme']); ignored with `kernelDir`. */
  modules: string[];
  /**
   * A build-kernel.sh directory (vmlinux, config; every driver built in) to boot L2 with instead of the L1 kernel:
   * a small kernel boots many times faster under TCG-in-TCG. Used only when its config has every `kernelNeeds`.
   */
  kernelDir?: string;
  /** CONFIG_ options (without the prefix) `kernelDir`'s kernel must have built in, e.g. ['BLK_DEV_NVME']. */
  kernelNeeds?: string[];
}

/** Whether `dir` holds a build-kernel.sh kernel with every option in `needs` built in; the reason when not. */
export function builtinKernelReason(dir: string, needs: string[]): string | undefined {
  let config: string;
  try {
    config = readFileSync(path.join(dir, 'config'), 'utf8');
  } catch {
    return `no kernel config in ${dir}`;
  }
  if (!existsSync(path.join(dir, 'vmlinux'))) return `no vmlinux in ${dir}`;
  const missing = needs.filter((option) => !new RegExp(`^CONFIG_${option}=y$`, 'm').test(config));
  return missing.length ? `${dir}/config lacks ${missing.map((o) => `CONFIG_${o}=y`).join(', ')}` : undefined;
}

function writeNestedAssets(setup: Setup, workDir: string, nested: NestedGuestAssets): void {
  const builtin = nested.kernelDir && !builtinKernelReason(nested.kernelDir, nested.kernelNeeds ?? []) ? nested.kernelDir : undefined;
  const modprobe = which('modprobe');
  const modules = builtin ? [] : modprobe ? resolveModules(modprobe, setup.kernelVersion, nested.modules) : 'modprobe not found';
  if (typeof modules === 'string') throw new Error(`nested guest modules: ${modules}`);
  const cpio = new Cpio();
  for (const dir of ['bin', 'dev', 'mods', 'proc', 'sys', 'tmp']) cpio.dir(dir);
  cpio.charDevice('dev/console', 5, 1);
  cpio.file('bin/busybox', readFileSync(setup.busybox), 0o755);
  cpio.symlink('bin/sh', 'busybox');
  cpio.modules(modules);
  cpio.file('init', readFileSync(nested.init), 0o755);
  // Uncompressed: gunzip of the initramfs alone takes ~20 s in a TCG-in-TCG guest.
  writeFileSync(path.join(workDir, 'l2-initrd.cpio'), cpio.finish());
  const kernel = builtin ? path.join(builtin, 'vmlinux') : extractedVmlinux(setup.kernel, setup.kernelVersion, 'vfiod-vfio-guest-cache');
  writeFileSync(path.join(workDir, 'l2-kernel.txt'), `${kernel}\n`);
  try {
    linkSync(kernel, path.join(workDir, 'l2-vmlinux'));
  } catch {
    copyFileSync(kernel, path.join(workDir, 'l2-vmlinux'));
  }
}

export interface VfioGuestRun {
  /** Parsed results.json written by the guest (undefined when it wrote none). */
  results: Record<string, unknown> | undefined;
  /** Serial console (kernel log, guest script output). */
  console: string;
  /** QEMU exit status (124: hard timeout). */
  exitCode: number | null;
  /** Milliseconds from QEMU start to its exit. */
  wallMs: number;
  workDir: string;
}

/**
 * Boots the guest once, runs the guest program, waits for power-off and returns what it reported. `extra` adds
 * key=value words to the kernel command line (read by the guest as vt.<key>).
 */
export async function runVfioGuest(
  options: {
    timeoutMs?: number;
    /** Guest program run as PID 1's script instead of testbed/vfio-guest/guest.sh (e.g. guest-fio.sh). */
    script?: string;
    /** Guest RAM in MiB (default 2048). */
    memoryMb?: number;
    /** Files written into the work dir before boot (name -> bytes), e.g. a boot sector for the guest to use. */
    files?: Record<string, Uint8Array>;
    /** Assets for a nested (L2) guest, put in the work dir: see NestedGuestAssets. */
    nested?: NestedGuestAssets;
    /** A /boot kernel version, or a build-kernel.sh directory such as IOMMUFD_GUEST_KERNEL_DIR (built-in drivers). */
    kernel?: string;
    /** TypeScript program guest.sh runs instead of guest-main.ts (passed as VT_PROGRAM in init's environment). */
    program?: string;
    /** More QEMU arguments, e.g. a guest agent channel (-chardev socket,... -device isa-serial,...) or -pidfile. */
    qemuArgs?: string[];
  } = {},
): Promise<VfioGuestRun> {
  const probedSetup = setupFor(options.kernel);
  if ('reason' in probedSetup) throw new Error(`VFIO guest unavailable: ${probedSetup.reason}`);
  const setup = probedSetup.setup;
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-vfio-guest-'));
  const initrd = path.join(workDir, 'initrd.gz');
  writeFileSync(initrd, buildInitramfs(setup));
  const disk = path.join(workDir, 'nvm0.img');
  writeFileSync(disk, '');
  truncateSync(disk, 64 << 20);
  for (const [name, bytes] of Object.entries(options.files ?? {})) writeFileSync(path.join(workDir, name), bytes);
  if (options.nested) writeNestedAssets(setup, workDir, options.nested);
  const consoleLog = path.join(workDir, 'console.log');
  const timeoutS = Math.ceil((options.timeoutMs ?? Number(env('VFIOD_TESTBED_TIMEOUT') ?? 240) * 1000) / 1000);
  const append = [
    'console=ttyS0', 'panic=-1', 'quiet', 'intel_iommu=on', 'iommu=pt', 'nvme_core.multipath=N',
    // Under TCG on a loaded host the IO-APIC timer check can miss its window and the guest panics with
    // "timer doesn't work through Interrupt-remapped IO-APIC": skip the check, the timer works.
    'no_timer_check',
    `vt.work=${workDir}`, `vt.repo=${REPO}`, `vt.script=${options.script ?? path.join(GUEST_DIR, 'guest.sh')}`,
    // no dot in the name: the kernel hands it to init as an environment variable
    ...(options.program ? [`VT_PROGRAM=${options.program}`] : []),
  ].join(' ');
  const args = [
    '-accel', 'tcg', '-cpu', 'max', '-m', String(options.memoryMb ?? 2048), '-smp', '2', '-nographic', '-no-reboot', '-nic', 'none',
    '-machine', 'q35', '-device', 'intel-iommu,intremap=on,caching-mode=on',
    '-kernel', extractedVmlinux(setup.kernel, setup.kernelVersion, 'vfiod-vfio-guest-cache'), '-initrd', initrd, '-append', append,
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${REPO},mount_tag=repo,security_model=none,readonly=on,multidevs=remap`,
    '-virtfs', `local,path=${workDir},mount_tag=work,security_model=none,multidevs=remap`,
    // SR-IOV NVMe PF alone behind a root port (ACS): the PF and each VF get their own IOMMU group
    '-device', 'pcie-root-port,id=rp0,chassis=1,slot=1',
    '-drive', `file=${disk},if=none,id=nvm0,format=raw`,
    '-device', 'nvme-subsys,id=subsys0,nqn=nqn.2026-11.io.vfiod:vfio-test',
    '-device', 'nvme,id=nvme0,serial=vfiodvf,subsys=subsys0,bus=rp0,sriov_max_vfs=2,sriov_vq_flexible=8,sriov_vi_flexible=4,max_ioqpairs=12,msix_qsize=8',
    '-device', 'nvme-ns,drive=nvm0,nsid=1',
    // GPU stand-in on its own root port
    '-device', 'pcie-root-port,id=rp1,chassis=2,slot=2',
    '-device', 'bochs-display,bus=rp1',
    ...(options.qemuArgs ?? []),
  ];
  const started = Date.now();
  const logFd = openSync(consoleLog, 'w');
  const child = spawn('sh', [LAUNCHER, String(timeoutS), setup.qemu, ...args], {
    stdio: ['pipe', logFd, logFd],
  });
  closeSync(logFd);
  const exitCode = await new Promise<number | null>((resolve) => {
    child.on('exit', (code) => resolve(code));
    child.on('error', () => resolve(null));
  });
  const wallMs = Date.now() - started;
  child.stdin?.destroy();
  const consoleText = existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '';
  let results: Record<string, unknown> | undefined;
  const resultsFile = path.join(workDir, 'results.json');
  if (existsSync(resultsFile)) {
    try {
      results = JSON.parse(readFileSync(resultsFile, 'utf8')) as Record<string, unknown>;
    } catch {
      results = undefined;
    }
  }
  return { results, console: consoleText, exitCode, wallMs, workDir };
}

/** Removes the work dir unless VFIOD_TESTBED_KEEP=1. */
export function cleanupVfioGuest(run: VfioGuestRun | undefined): void {
  if (!run || env('VFIOD_TESTBED_KEEP') === '1') return;
  rmSync(run.workDir, { recursive: true, force: true });
}
