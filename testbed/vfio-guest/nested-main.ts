/**
 * Guest (L1) side of test/guest/attach-nested.test.ts, run by nested-guest.sh in the VFIO test guest. With the project's
 * own code it:
 * 0. starts the hot-plug L2 QEMU first (TCG, q35, 192 MiB, two empty pcie-root-ports, QMP socket, the host kernel
 *    with nested-l2-init.sh as /init): its Linux boot is the slow part, the steps below run meanwhile;
 * 1. creates one NVMe VF on the SR-IOV PF, brings it online (nvme virt-mgmt), binds it to nvme (host use) and writes
 *    the boot sector the host test put in $VT_WORK/bootsector.bin to the VF's namespace;
 * 2. boot: prepares the VF for a second L2 VM, starts it with AttachmentManager.staticConfig's QEMU arguments (the VF
 *    with bootindex=0, no -kernel) and waits for the boot sector's marker on its serial console (SeaBIOS boots from
 *    the NVMe namespace), then stops it and releases the VF back to nvme;
 * 3. hot-plug: once the first L2 is up, AttachmentManager.attach hot-plugs the VF over QMP (DeviceManager prepares
 *    it), L2 reports the NVMe controller and namespace on its console, writes a random pattern to the namespace and
 *    reads it back (nested-l2-init.sh), and AttachmentManager.detach waits for DEVICE_DELETED and releases the VF
 *    back to nvme, where this program reads the same range and compares its SHA-256 with L2's.
 * With iommufd ($VT_WORK/l1-setup.json: the L1 kernel has IOMMUFD and VFIO cdev, the QEMU given is >= 9.0) step 2
 * gives the VF through iommufd, and step 3 runs twice on the same L2: through the VF's group (vfio-pci host=), then
 * through iommufd (object-add iommufd + vfio-pci iommufd=,sysfsdev=); each time the L2 QEMU's open files show which.
 * Large BAR: when L1 has the host test's ivshmem-plain (a 64-bit prefetchable BAR2 standing in for a GPU's), step 2
 * passes it through too: staticConfig sizes its root port's pref64-reserve from L1's sysfs, and L2's SeaBIOS must
 * assign the BAR (QMP query-pci of the boot L2).
 * Everything goes to $VT_WORK/results.json; the host test asserts on it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, readlinkSync, readSync, writeFileSync, writeSync, fsyncSync } from 'node:fs';
import path from 'node:path';

import { AttachmentManager } from '../../src/attach/attachments.js';
import { ClaimStore } from '../../src/devices/claims.js';
import { DEFAULT_ROOTS, realSysfsWriter } from '../../src/devices/host.js';
import { DeviceManager } from '../../src/devices/manager.js';
import { QemuAdapter } from '../../src/hypervisor/qmp.js';
import type { VfioBackendChoice } from '../../src/hypervisor/vfio-backend.js';
import { NativeVfioProber } from '../../src/vfio/prober.js';
import { createNvmeVf, driverOf, ensureDriver, read, results, save, seconds, step, SYS, waitFor, WORK, write } from './guest-lib.js';

const MARKER = process.env.VT_BOOT_MARKER ?? 'VFIOD-NVME-BOOT-OK';

/** What the host test chose (attach-nested.test.ts): the QEMU for L2 and whether to prove iommufd with it. */
const SETUP: { qemu: string; iommufd: boolean } = existsSync(path.join(WORK, 'l1-setup.json'))
  ? JSON.parse(readFileSync(path.join(WORK, 'l1-setup.json'), 'utf8'))
  : { qemu: 'qemu-system-x86_64', iommufd: false };

/** The nvme controller (nvmeN) bound to `bdf`, once it is live. */
async function liveController(bdf: string): Promise<string> {
  const dir = path.join(SYS, bdf, 'nvme');
  await waitFor(`nvme controller on ${bdf}`, () => existsSync(dir) && readdirSync(dir).length > 0, 20_000);
  const ctrl = readdirSync(dir)[0]!;
  await waitFor(`${ctrl} live`, () => read(`/sys/class/nvme/${ctrl}/state`) === 'live', 20_000);
  return ctrl;
}

/** Puts the VF in host use on nvme (driver_override + drivers_probe, override cleared again). */
async function bindToNvme(vf: string): Promise<string> {
  write(path.join(SYS, vf, 'driver_override'), 'nvme');
  write('/sys/bus/pci/drivers_probe', vf);
  await waitFor(`${vf} on nvme`, () => driverOf(vf) === 'nvme', 15_000);
  write(path.join(SYS, vf, 'driver_override'), '\n');
  return liveController(vf);
}

/** The namespace block device of controller `ctrl`, once it is there (scanned asynchronously after it goes live). */
async function namespaceOf(ctrl: string): Promise<string> {
  const find = (): string | undefined => readdirSync(`/sys/class/nvme/${ctrl}`).find((n) => /^nvme\d+n\d+$/.test(n));
  await waitFor(`a namespace on ${ctrl}`, () => find() !== undefined && existsSync(`/dev/${find()}`), 20_000);
  return find()!;
}

/** SHA-256 of `bytes` bytes at `offset` of a block device, read past the page cache (it was just written by L2). */
function rangeSha256(device: string, offset: number, bytes: number): string {
  write('/proc/sys/vm/drop_caches', '1');
  const buffer = Buffer.alloc(bytes);
  const fd = openSync(device, 'r');
  try {
    readSync(fd, buffer, 0, bytes, offset);
  } finally {
    closeSync(fd);
  }
  return createHash('sha256').update(buffer).digest('hex');
}

/** The VFIO files (/dev/vfio/..., /dev/iommu) a process holds open: how its QEMU opened the device. */
function vfioFilesOf(pid: number): string[] {
  const links = readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return '';
    }
  });
  return [...new Set(links.filter((l) => l === '/dev/iommu' || l.startsWith('/dev/vfio/')))].sort();
}

async function writeBootSector(ctrl: string): Promise<{ namespace: string; readBack: string }> {
  const namespace = await namespaceOf(ctrl);
  const sector = readFileSync(path.join(WORK, 'bootsector.bin'));
  if (sector.length !== 512) throw new Error(`bootsector.bin is ${sector.length} bytes, not 512`);
  const fd = openSync(`/dev/${namespace}`, 'r+');
  try {
    writeSync(fd, sector, 0, 512, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  write('/proc/sys/vm/drop_caches', '1');
  const back = Buffer.alloc(512);
  const rfd = openSync(`/dev/${namespace}`, 'r');
  try {
    readSync(rfd, back, 0, 512, 0);
  } finally {
    closeSync(rfd);
  }
  return { namespace, readBack: back.equals(sector) ? 'identical' : 'DIFFERENT' };
}

interface L2 {
  child: ChildProcess;
  log: string;
  exited: Promise<number | null>;
  stderr: () => string;
}

function startL2(name: string, args: string[], memoryMb = 256): L2 {
  const log = `/tmp/l2-${name}.log`;
  writeFileSync(log, '');
  let stderr = '';
  const child = spawn(SETUP.qemu, [
    '-accel', 'tcg', '-machine', 'q35', '-m', String(memoryMb), '-smp', '1', '-nodefaults', '-display', 'none', '-no-reboot',
    '-serial', `file:${log}`, ...args,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, log, exited, stderr: () => stderr };
}

async function stopL2(l2: L2): Promise<void> {
  if (l2.child.exitCode !== null) return;
  l2.child.kill('SIGTERM');
  const timer = setTimeout(() => l2.child.kill('SIGKILL'), 5000);
  await l2.exited;
  clearTimeout(timer);
}

const logOf = (l2: L2): string => readFileSync(l2.log, 'utf8');

async function waitLog(l2: L2, what: RegExp, timeoutMs: number): Promise<number> {
  return waitFor(`L2 console ${what}`, () => {
    if (l2.child.exitCode !== null) throw new Error(`L2 exited (${l2.child.exitCode}) while waiting for ${what}: ${l2.stderr().slice(-500)}`);
    return what.test(logOf(l2));
  }, timeoutMs, 250);
}

/** Kernel options that skip slow steps in a TCG-in-TCG boot (the L2 Linux boot dominates this test's time). */
const L2_APPEND = [
  'console=ttyS0', 'panic=-1', 'quiet', 'no_timer_check', 'tsc=reliable', 'cryptomgr.notests', 'mitigations=off',
  'rcupdate.rcu_expedited=1', 'audit=0', 'apparmor=0', 'selinux=0', '8250.nr_uarts=1', 'i8042.noaux', 'pci=noaer',
].join(' ');

async function main(): Promise<void> {
  step('start');
  // The L2 Linux boot is the slow part (about a minute, TCG inside TCG): start it first and do everything else
  // (VF creation, the boot test) meanwhile.
  const qmpSocket = '/tmp/l2-qmp.sock';
  const l2 = startL2('hotplug', [
    '-kernel', path.join(WORK, 'l2-vmlinux'), '-initrd', path.join(WORK, 'l2-initrd.cpio'), '-append', L2_APPEND,
    '-device', 'pcie-root-port,id=rp1,chassis=1,slot=1', '-device', 'pcie-root-port,id=rp2,chassis=2,slot=2',
    '-qmp', `unix:${qmpSocket},server=on,wait=off`,
  ], 192);
  const l2Started = Date.now();
  try {
    ensureDriver('vfio-pci', 'vfio-pci');
    results.setup = SETUP;
    const { pf, vf } = await createNvmeVf();
    Object.assign(results, { pf, vf });
    const ctrl = await bindToNvme(vf);
    results.bootSector = await writeBootSector(ctrl);
    step(`VF ${vf} online on nvme (${ctrl}), boot sector written`);

    const claims = new ClaimStore('/run/vfiod-claims.db'); // tmpfs: SQLite's WAL needs shared memory, which 9p lacks
    const devices = new DeviceManager({ roots: DEFAULT_ROOTS, writer: realSysfsWriter, prober: new NativeVfioProber(), claims });
    const attachments = new AttachmentManager({ devices, releaseWaitMs: 15_000 });

    // --- (b) boot an L2 from the VF's namespace with a static configuration and a boot order ----------------------
    results.bootPrepare = await devices.prepare(vf, 'l2-boot');
    // the large-BAR stand-in (ivshmem-plain, 1af4:1110), when the host test gave L1 one
    const bigBar = readdirSync(SYS).find((d) => read(path.join(SYS, d, 'vendor')) === '0x1af4' && read(path.join(SYS, d, 'device')) === '0x1110');
    if (bigBar) {
      results.bigBar = { bdf: bigBar, resource: read(path.join(SYS, bigBar, 'resource')).split('\n').slice(0, 3) };
      results.bigBarPrepare = await devices.prepare(bigBar, 'l2-boot');
    }
    const bootBackend: VfioBackendChoice = SETUP.iommufd ? 'iommufd' : 'auto';
    const config = attachments.staticConfig({
      hypervisor: 'qemu',
      vmId: 'l2-boot',
      devices: [{ source: { kind: 'pci', bdf: vf }, id: 'boot0', bootIndex: 0, vfioBackend: bootBackend }, ...(bigBar ? [{ source: { kind: 'pci' as const, bdf: bigBar }, id: 'bar0' }] : [])],
    });
    results.bootConfig = config;
    const bootQmp = '/tmp/l2-boot-qmp.sock';
    const boot = startL2('boot', ['-boot', 'strict=on', ...config.qemu!.args, '-qmp', `unix:${bootQmp},server=on,wait=off`], 64);
    try {
      results.bootMarkerMs = await waitLog(boot, new RegExp(MARKER), 240_000);
      results.bootVfioFiles = vfioFilesOf(boot.child.pid!);
      if (bigBar) {
        // SeaBIOS has enumerated and assigned every BAR before it boots: what L2 sees of the stand-in and its port
        const pci = await new QemuAdapter({ vmId: 'l2-boot', qmpSocket: bootQmp }).queryPci(30_000);
        results.l2BigBar = { device: pci.find((d) => d.qdev_id === 'bar0'), port: pci.find((d) => d.qdev_id === config.qemu!.buses.bar0) };
      }
      step('L2 booted from the VF (marker on its serial console)');
    } finally {
      results.l2BootConsole = logOf(boot).slice(0, 2000);
      results.l2BootStderr = boot.stderr().slice(-2000);
      await stopL2(boot);
    }
    results.bootRelease = await devices.release(vf, 'l2-boot', { waitMs: 15_000 });
    if (bigBar) results.bigBarRelease = await devices.release(bigBar, 'l2-boot', { waitMs: 15_000 });
    results.driverAfterBoot = driverOf(vf);
    await liveController(vf);
    step('VF released after the boot test');

    // --- (a) hot-plug into the running L2, I/O from L2, hot-unplug, back to nvme; with iommufd a second time -----
    const timeout = 600_000; // minutes with the L1 kernel on a busy host
    await waitLog(l2, /L2: READY/, Math.max(1000, timeout - (Date.now() - l2Started)));
    results.l2BootMs = Date.now() - l2Started;
    step('L2 (hot-plug) ready');
    const endpoint = { hypervisor: 'qemu' as const, qmpSocket };
    const rounds: Array<{ name: string; vfioBackend: VfioBackendChoice }> = [{ name: 'group', vfioBackend: 'auto' }];
    if (SETUP.iommufd) rounds.push({ name: 'iommufd', vfioBackend: 'iommufd' });
    results.hotplug = [];
    for (const [i, round] of rounds.entries()) {
      const r: Record<string, unknown> = { name: round.name };
      (results.hotplug as unknown[]).push(r);
      const attachStart = Date.now();
      r.attach = await attachments.attach({ vmId: 'l2', endpoint, source: { kind: 'pci', bdf: vf }, deviceId: 'vf0', vfioBackend: round.vfioBackend, timeoutMs: 30_000 });
      r.attachMs = Date.now() - attachStart;
      r.driverWhileAttached = driverOf(vf);
      r.claimWhileAttached = claims.get(vf);
      r.attachmentsWhileAttached = attachments.list();
      r.vfioFiles = vfioFilesOf(l2.child.pid!);
      step(`attached over QMP (${round.name})`);
      // Each round's lines come after the previous round's: count them.
      const nth = (what: RegExp): RegExp => new RegExp(`(${what.source}[^]*){${i + 1}}`);
      r.l2SawNvmeMs = await waitLog(l2, nth(/L2: namespace nvme\d+n\d+ sectors=\d+/), 240_000);
      step('L2 sees the NVMe namespace');
      r.l2IoMs = await waitLog(l2, nth(/L2: io nvme\d+n\d+ offset=\d+ bytes=\d+ wrote=[0-9a-f]{64} read=/), 240_000);
      const io = [...logOf(l2).matchAll(/L2: io (nvme\d+n\d+) offset=(\d+) bytes=(\d+) wrote=([0-9a-f]{64}) read=(\S*)/g)][i]!;
      r.l2Io = { device: io[1], offset: Number(io[2]), bytes: Number(io[3]), wrote: io[4], read: io[5] };
      step('L2 wrote and read back its pattern');
      const detachStart = Date.now();
      r.detach = await attachments.detach({ vmId: 'l2', deviceId: 'vf0', timeoutMs: 120_000 });
      r.detachMs = Date.now() - detachStart;
      step('detached (DEVICE_DELETED) and released');
      r.driverAfterDetach = driverOf(vf);
      const controller = await liveController(vf);
      r.controllerAfterDetach = controller;
      r.hostSha256 = rangeSha256(`/dev/${await namespaceOf(controller)}`, Number(io[2]), Number(io[3]));
      r.claimsAfterDetach = claims.list().length;
      r.attachmentsAfterDetach = attachments.list().length;
      await waitLog(l2, nth(/L2: nvme pci count 1 -> 0/), 30_000);
      r.l2SawRemoval = true;
      step(`VF back on nvme, L2's pattern read through it; L2 saw it go (${round.name})`);
    }
    results.ok = true;
  } finally {
    const lines = logOf(l2).split('\n');
    results.l2HotplugConsole = lines.filter((l) => l.startsWith('L2:')).slice(0, 120);
    results.l2HotplugKernelTail = lines.filter((l) => !l.startsWith('L2:')).slice(-15);
    results.l2HotplugStderr = l2.stderr().slice(-2000);
    await stopL2(l2);
  }
}

main()
  .catch((error: unknown) => {
    const e = error as Error & { code?: string };
    (results.errors as string[]).push(`${e.stack ?? String(e)} code=${e.code}`);
    console.error(error);
  })
  .finally(() => {
    results.guestMs = Math.round(seconds() * 1000);
    save();
  });
