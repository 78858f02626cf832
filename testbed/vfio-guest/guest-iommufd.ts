/**
 * Guest side of test/guest/vfio-iommufd.test.ts (runs as root in the QEMU guest booted with the iommufd guest kernel, see
 * testbed/vfio-guest.ts and build-kernel.sh).
 *
 * 1. Creates and onlines one NVMe VF (as guest-main.ts does), puts it in host use on nvme, and lets DeviceManager
 *    prepare it: the prober (backend auto) must open it through iommufd + cdev.
 * 2. Opens it with backend 'iommufd': cdev bound to /dev/iommu, IOAS, attach; BAR0 CAP/VS; Identify Controller through
 *    a memfd mapped into the IOAS. While it is open: the legacy group cannot be opened, a second probe fails, the
 *    IOAS cannot be destroyed, and DeviceManager.release refuses (it sees the open cdev in /proc/<pid>/fd).
 *    Detach + re-attach work. Then close.
 * 3. The same Identify through backend 'group' (the legacy container/group) on the same kernel; while the group is held, the
 *    iommufd bind is refused.
 * 4. Probes with both backends, releases the VF back to nvme.
 * 5. The bochs-display GPU stand-in: prepare (prober on iommufd), BAR2 DISPI id through the cdev, release.
 * Everything goes to $VT_WORK/results.json; the host test asserts on it.
 */
import { existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { native, PROT_READ, PROT_WRITE } from '../../src/native/index.js';
import { chooseVfioBackend, openVfioDevice, vfioCdevOf, type OpenedVfioDevice } from '../../src/vfio/index.js';
import { NativeVfioProber } from '../../src/vfio/prober.js';
import { DeviceManager } from '../../src/devices/manager.js';
import { ClaimStore } from '../../src/devices/claims.js';
import { DEFAULT_ROOTS, realSysfsWriter } from '../../src/devices/host.js';
import { createNvmeVf, runGuestProgram, driverOf, ensureDriver, identifyController, read, results, step, SYS, waitFor, write } from './guest-lib.js';

/** What a refused operation looked like: code and message, or 'succeeded' when it was not refused. */
function refusal(fn: () => unknown): { code?: string; message: string } | 'succeeded' {
  try {
    fn();
    return 'succeeded';
  } catch (error) {
    return { code: (error as { code?: string }).code, message: (error as Error).message };
  }
}
async function refusalAsync(fn: () => Promise<unknown>): Promise<{ code?: string; message: string } | 'succeeded'> {
  try {
    await fn();
    return 'succeeded';
  } catch (error) {
    return { code: (error as { code?: string }).code, message: (error as Error).message };
  }
}

/**
 * BAR0 CAP/VS and an Identify Controller whose queues and data page live in a memfd mapped through `opened.dma` —
 * the IOAS or the container: the same code for both backends.
 */
function identify(opened: OpenedVfioDevice): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const { device, dma } = opened;
  const bar = device.mapRegion(0, { length: 0x2000 });
  const r32 = new Uint32Array(bar);
  const cap = BigInt(r32[0]!) | (BigInt(r32[1]!) << 32n);
  out.cap = `0x${cap.toString(16)}`;
  out.vs = `0x${r32[2]!.toString(16)}`;
  const IOVA = 0x200000;
  const memfd = native.memfdCreate('iommufd-dma', 3 * 4096);
  const buffer = native.mmap(memfd, 0, 3 * 4096, PROT_READ | PROT_WRITE);
  native.close(memfd);
  dma.mapDma(buffer, { iova: IOVA });
  out.mappedIovas = [...dma.dmaMappings.keys()];
  out.munmapWhileDmaMapped = refusal(() => native.munmap(buffer));
  out.command = device.enableBusMaster();
  Object.assign(out, identifyController(bar, buffer, IOVA, 0x4321));
  dma.unmapDma(IOVA);
  native.munmap(buffer);
  device.unmap(bar);
  device.reset();
  out.resetDone = true;
  return out;
}

async function main(): Promise<void> {
  step('start');
  results.kernel = os.release();
  ensureDriver('vfio-pci', 'vfio-pci');
  results.devIommu = existsSync('/dev/iommu');
  const { pf, vf } = await createNvmeVf();
  results.pf = pf;
  results.vf = vf;
  step(`VF ${vf} created and online`);

  // host use first (nvme), then the passthrough manager prepares it; its prober picks the backend (auto)
  write(path.join(SYS, vf, 'driver_override'), 'nvme');
  write('/sys/bus/pci/drivers_probe', vf);
  await waitFor(`nvme bound to ${vf}`, () => driverOf(vf) === 'nvme');
  write(path.join(SYS, vf, 'driver_override'), '\n');
  results.vfDriverInHostUse = driverOf(vf);
  const claims = new ClaimStore('/run/vfiod-claims.db'); // local tmpfs: SQLite's WAL needs shared memory, which 9p lacks
  const manager = new DeviceManager({ roots: DEFAULT_ROOTS, writer: realSysfsWriter, prober: new NativeVfioProber(), claims });
  const prepared = await manager.prepare(vf, 'vm-iommufd');
  results.prepare = { changed: prepared.changed, vfioCdev: prepared.vfioCdev, vfioGroupDev: prepared.vfioGroupDev, probeBackend: prepared.probe?.backend };
  results.vfDriverPrepared = driverOf(vf);
  results.cdev = vfioCdevOf(vf) ?? null;
  results.cdevNodeExists = results.cdev !== null && existsSync(results.cdev as string);
  results.autoBackend = chooseVfioBackend(vf);
  step('VF prepared by DeviceManager');

  // --- iommufd + cdev ---
  const viaIommufd = openVfioDevice(vf, { backend: 'iommufd' });
  try {
    const out: Record<string, unknown> = {
      backend: viaIommufd.backend,
      cdev: viaIommufd.cdev,
      devId: viaIommufd.devId,
      ioasId: viaIommufd.ioas.id,
      hwptId: viaIommufd.hwptId,
      hwInfo: viaIommufd.iommufd.hwInfo(viaIommufd.devId),
      iovaRanges: viaIommufd.ioas.iovaRanges(),
      info: viaIommufd.device.info(),
      regions: viaIommufd.device.regions().filter((r) => Number(r.size) > 0).map((r) => ({ index: r.index, size: Number(r.size), mmap: r.mmap })),
      irqs: viaIommufd.device.irqs().map((i) => ({ index: i.index, count: i.count })),
      vendorId: viaIommufd.device.readConfig16(0),
    };
    Object.assign(out, identify(viaIommufd));
    step('identify through iommufd done');
    // held: the legacy group, a second probe, destroying the attached IOAS, and release all refuse
    out.legacyOpenWhileCdevHeld = refusal(() => openVfioDevice(vf, { backend: 'group' }).close());
    out.probeWhileHeld = await refusalAsync(() => new NativeVfioProber().probe(vf));
    out.destroyAttachedIoas = refusal(() => viaIommufd.ioas.destroy());
    out.releaseWhileHeld = await refusalAsync(() => manager.release(vf, 'vm-iommufd'));
    out.claimsWhileHeld = claims.list().length;
    out.driverWhileHeld = driverOf(vf);
    // detach blocks DMA; attaching again (to a second IOAS: a replacement hw pagetable) works
    native.vfioDeviceDetachIommufdPt(viaIommufd.device.fd);
    const second = viaIommufd.iommufd.allocIoas();
    out.reattachHwpt = native.vfioDeviceAttachIommufdPt(viaIommufd.device.fd, second.id);
    out.secondIoasId = second.id;
    out.firstIoasDestroyedAfterDetach = refusal(() => viaIommufd.ioas.destroy());
    results.iommufd = out;
  } finally {
    viaIommufd.close();
  }
  step('iommufd handle closed');

  // --- legacy container/group on the same kernel ---
  const viaGroup = openVfioDevice(vf, { backend: 'group' });
  try {
    const out: Record<string, unknown> = { backend: viaGroup.backend, group: viaGroup.groupNumber, iommuType: viaGroup.iommuType };
    Object.assign(out, identify(viaGroup));
    out.iommufdBindWhileGroupHeld = refusal(() => openVfioDevice(vf, { backend: 'iommufd' }).close());
    results.legacy = out;
  } finally {
    viaGroup.close();
  }
  step('identify through the legacy container done');

  results.probeAuto = await new NativeVfioProber().probe(vf);
  results.probeLegacy = await new NativeVfioProber({ backend: 'group' }).probe(vf);
  step('probed with both backends');

  results.release = JSON.parse(JSON.stringify(await manager.release(vf, 'vm-iommufd')));
  results.claimsAfterRelease = claims.list().length;
  await waitFor(`nvme controller on ${vf}`, () => existsSync(path.join(SYS, vf, 'nvme')) && readdirSync(path.join(SYS, vf, 'nvme')).length > 0);
  const ctrl = readdirSync(path.join(SYS, vf, 'nvme'))[0]!;
  await waitFor(`${ctrl} live`, () => read(`/sys/class/nvme/${ctrl}/state`) === 'live', 20_000);
  results.vfDriverReleased = driverOf(vf);
  results.releasedControllerState = read(`/sys/class/nvme/${ctrl}/state`);
  results.cdevAfterRelease = vfioCdevOf(vf) ?? null;
  step('VF released to nvme');

  // the GPU stand-in (bochs-display, no host driver) the same way: prepare, BAR2 through the cdev, release
  const gpu = readdirSync(SYS).find((d) => read(path.join(SYS, d, 'vendor')) === '0x1234' && read(path.join(SYS, d, 'class')).startsWith('0x0380'));
  if (!gpu) throw new Error('bochs-display not found');
  const gpuPrepared = await manager.prepare(gpu, 'vm-iommufd');
  const viaGpuCdev = openVfioDevice(gpu, { backend: 'iommufd' });
  try {
    const bar2 = viaGpuCdev.device.mapRegion(2, { length: 0x1000 });
    results.gpu = {
      probeBackend: gpuPrepared.probe?.backend,
      cdev: viaGpuCdev.cdev,
      vendorId: viaGpuCdev.device.readConfig16(0),
      dispiId: new Uint16Array(bar2)[0x500 / 2],
    };
    viaGpuCdev.device.unmap(bar2);
  } finally {
    viaGpuCdev.close();
  }
  await manager.release(gpu, 'vm-iommufd');
  (results.gpu as Record<string, unknown>).driverAfterRelease = driverOf(gpu);
  (results.gpu as Record<string, unknown>).claimsAfterRelease = claims.list().length;
  step('GPU stand-in through iommufd done');
  results.ok = true;
}

runGuestProgram(main);
