/**
 * What the VFIO test guest programs (guest-main.ts, guest-iommufd.ts, nested-main.ts) share: the results file the host test reads,
 * small sysfs/shell helpers, polling with a deadline, and creating the NVMe VF on the emulated SR-IOV PF.
 * Runs inside the QEMU guest as root (see testbed/vfio-guest.ts).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sleep } from '../../src/util/sleep.js';

export const WORK = process.env.VT_WORK ?? '.';
export const SYS = '/sys/bus/pci/devices';

/** Steps and findings, written to $VT_WORK/results.json by save(); the host test asserts on them. */
export const results: Record<string, unknown> = { steps: [] as string[], errors: [] as string[] };
const t0 = performance.now();
/** Seconds since the program started (ms precision). */
export const seconds = (): number => Math.round(performance.now() - t0) / 1000;
export const step = (name: string): void => {
  const line = `[${seconds().toFixed(2)}s] ${name}`;
  (results.steps as string[]).push(line);
  console.log(line);
};
export const save = (): void => writeFileSync(path.join(WORK, 'results.json'), JSON.stringify(results, null, 2));

/** Runs a guest program's main: its error (with errno/syscall) goes into results.errors; results.json is always written. */
export function runGuestProgram(main: () => Promise<void>): void {
  main()
    .catch((error: unknown) => {
      const e = error as Error & { code?: string; errno?: number; syscall?: string };
      (results.errors as string[]).push(`${e.stack ?? String(e)} code=${e.code} errno=${e.errno} syscall=${e.syscall}`);
      console.error(error);
    })
    .finally(() => {
      results.guestMs = Math.round(seconds() * 1000);
      save();
    });
}

export const read = (file: string): string => readFileSync(file, 'utf8').trim();
export const write = (file: string, value: string): void => writeFileSync(file, value);
export const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
export const driverOf = (bdf: string): string | null => {
  try {
    return path.basename(readlinkSync(path.join(SYS, bdf, 'driver')));
  } catch {
    return null;
  }
};

/** Polls `cond` until it holds; returns how long that took. Throws after `timeoutMs`. */
export async function waitFor(what: string, cond: () => boolean, timeoutMs = 15_000, pollMs = 20): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timeout (${timeoutMs} ms) waiting for ${what}`);
    await sleep(pollMs);
  }
  return Date.now() - start;
}

/** Loads a driver's module unless the driver is there already (the iommufd guest kernel has them built in). */
export function ensureDriver(driver: string, module: string): void {
  if (!existsSync(path.join('/sys/bus/pci/drivers', driver))) sh('modprobe', [module]);
}

/**
 * One NVMe VF on the PF (nvme0), its secondary controller online with 1 VI and 2 VQ resources, host drivers kept off
 * it (sriov_drivers_autoprobe=0). `timeoutMs` bounds each wait (the PF's reset is slow on a loaded TCG host).
 */
export async function createNvmeVf(timeoutMs = 20_000): Promise<{ pf: string; vf: string }> {
  ensureDriver('nvme', 'nvme');
  await waitFor('/dev/nvme0', () => existsSync('/dev/nvme0'), timeoutMs);
  const pf = path.basename(readlinkSync('/sys/class/nvme/nvme0/device'));
  const pfDir = path.join(SYS, pf);
  // flexible resources off the primary controller, then a PF reset (FLR) so that takes effect
  sh('nvme', ['virt-mgmt', '/dev/nvme0', '-c', '0', '-r', '1', '-a', '1', '-n', '0']);
  sh('nvme', ['virt-mgmt', '/dev/nvme0', '-c', '0', '-r', '0', '-a', '1', '-n', '0']);
  write(path.join(pfDir, 'reset'), '1');
  await waitFor('PF live after reset', () => existsSync('/sys/class/nvme/nvme0/state') && read('/sys/class/nvme/nvme0/state') === 'live', timeoutMs);
  write(path.join(pfDir, 'sriov_drivers_autoprobe'), '0');
  write(path.join(pfDir, 'sriov_numvfs'), '1');
  // secondary controller 1: 1 VI, 2 VQ, online
  sh('nvme', ['virt-mgmt', '/dev/nvme0', '-c', '1', '-r', '1', '-a', '8', '-n', '1']);
  sh('nvme', ['virt-mgmt', '/dev/nvme0', '-c', '1', '-r', '0', '-a', '8', '-n', '2']);
  sh('nvme', ['virt-mgmt', '/dev/nvme0', '-c', '1', '-r', '0', '-a', '9', '-n', '0']);
  return { pf, vf: path.basename(readlinkSync(path.join(pfDir, 'virtfn0'))) };
}

/**
 * Identify Controller through the NVMe admin queues, driven by hand: `bar` is the controller's BAR0 (mapped), `dma`
 * three pages (ASQ, ACQ, identify data) the IOMMU maps at `iova`. Enables the controller, sends one command with
 * `cid`, reads the completion and disables the controller again. Bus mastering must already be on.
 */
export function identifyController(
  bar: ArrayBuffer,
  dma: ArrayBuffer,
  iova: number,
  cid: number,
): { cqe: { cid: number; status: number }; identify: { vid: number; sn: string; mn: string; subnqn: string | undefined } } {
  const r32 = new Uint32Array(bar);
  const dstrd = r32[1]! & 0xf; // CAP.DSTRD: bits 35:32
  const mem = new Uint8Array(dma);
  const view = new DataView(dma);
  const spin = (what: string, cond: () => boolean): void => {
    const deadline = Date.now() + 10_000;
    while (!cond()) if (Date.now() > deadline) throw new Error(`timeout waiting for ${what} (CSTS 0x${r32[7]!.toString(16)})`);
  };
  r32[0x14 / 4] = 0; // CC.EN = 0
  spin('RDY=0', () => (r32[0x1c / 4]! & 1) === 0);
  r32[0x24 / 4] = (15 << 16) | 15; // AQA
  r32[0x28 / 4] = iova; // ASQ
  r32[0x2c / 4] = 0;
  r32[0x30 / 4] = iova + 4096; // ACQ
  r32[0x34 / 4] = 0;
  r32[0x14 / 4] = (4 << 20) | (6 << 16) | 1; // IOCQES 4, IOSQES 6, EN
  spin('RDY=1', () => (r32[0x1c / 4]! & 1) === 1);
  mem.fill(0, 0, 64);
  view.setUint8(0, 0x06); // Identify
  view.setUint16(2, cid, true);
  view.setUint32(24, iova + 8192, true); // PRP1: third page
  view.setUint32(40, 1, true); // CNS 1: controller
  r32[0x1000 / 4] = 1; // SQ0 tail
  spin('CQE', () => ((view.getUint32(4096 + 12, true) >>> 16) & 1) === 1);
  const dw3 = view.getUint32(4096 + 12, true);
  r32[(0x1000 + (4 << dstrd)) / 4] = 1; // CQ0 head
  const text = (a: number, b: number): string => Buffer.from(mem.subarray(8192 + a, 8192 + b)).toString('latin1').replace(/[\s\0]+$/, '');
  const result = {
    cqe: { cid: dw3 & 0xffff, status: dw3 >>> 17 },
    identify: { vid: view.getUint16(8192, true), sn: text(4, 24), mn: text(24, 64), subnqn: text(768, 1024).split('\0')[0] },
  };
  r32[0x14 / 4] = 0;
  spin('RDY=0 after disable', () => (r32[0x1c / 4]! & 1) === 0);
  return result;
}
