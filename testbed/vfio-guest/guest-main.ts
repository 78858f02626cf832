/**
 * Guest side of test/guest/vfio-passthrough.test.ts (runs as root in the QEMU guest, see testbed/vfio-guest.ts).
 *
 * 1. Creates one NVMe VF on the SR-IOV PF and brings its secondary controller online (nvme virt-mgmt), keeping host
 *    drivers off it (sriov_drivers_autoprobe=0).
 * 2. Binds the VF to vfio-pci (driver_override + drivers_probe), opens it through src/vfio (container, group,
 *    device), enumerates regions/irqs, maps BAR0, reads CAP/VS, maps a memfd for DMA, sets Bus Master and runs an
 *    NVMe Identify Controller through the admin queue, checks that munmap of a DMA-mapped buffer is refused, resets.
 * 3. Runs the prober (src/vfio/prober.ts) and releases the VF back to the nvme driver.
 * 4. The same for the bochs-display GPU stand-in (no driver -> vfio-pci -> no driver).
 * 5. DeviceManager.createVfs: replaces the VF by two new ones (sriov_numvfs through 0), prepares both for a VM, is
 *    refused removing them while claimed, and removes them after their release.
 * Everything it learns goes to $VT_WORK/results.json; the host test asserts on it.
 */
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';

import { native, PROT_READ, PROT_WRITE } from '../../src/native/index.js';
import { openVfioDevice } from '../../src/vfio/index.js';
import { NativeVfioProber } from '../../src/vfio/prober.js';
import { DeviceManager } from '../../src/devices/manager.js';
import { ClaimStore } from '../../src/devices/claims.js';
import { DEFAULT_ROOTS, realSysfsWriter } from '../../src/devices/host.js';
import { createNvmeVf, runGuestProgram, driverOf, identifyController, read, results, sh, step, SYS, waitFor, write } from './guest-lib.js';

const groupOf = (bdf: string): number => Number(path.basename(readlinkSync(path.join(SYS, bdf, 'iommu_group'))));

/** driver_override + unbind + drivers_probe (never new_id); `driver` null restores "no driver". */
async function bind(bdf: string, driver: string | null): Promise<void> {
  const dev = path.join(SYS, bdf);
  write(path.join(dev, 'driver_override'), driver ?? '\n');
  if (driverOf(bdf)) write(path.join(dev, 'driver', 'unbind'), bdf);
  if (driver) {
    write('/sys/bus/pci/drivers_probe', bdf);
    await waitFor(`${bdf} bound to ${driver}`, () => driverOf(bdf) === driver);
  }
}

function nvmeIdentify(bdf: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const opened = openVfioDevice(bdf, { backend: 'group' }); // this program is about the container/group path
  const { device, container } = opened;
  try {
    out.group = opened.groupNumber;
    out.iommuType = opened.iommuType;
    out.iommuInfo = container.iommuInfo();
    const info = device.info();
    out.info = info;
    out.regions = device.regions().filter((r) => Number(r.size) > 0);
    out.irqs = device.irqs();
    // BAR0: CAP (64-bit), VS
    const bar = device.mapRegion(0, { length: 0x2000 });
    const r32 = new Uint32Array(bar);
    const cap = BigInt(r32[0]!) | (BigInt(r32[1]!) << 32n);
    const vs = r32[2]!;
    out.cap = `0x${cap.toString(16)}`;
    out.vs = `0x${vs.toString(16)}`;
    // DMA: 3 pages of a memfd (ASQ, ACQ, identify data) at IOVA 1 MiB
    const IOVA = 0x100000;
    const memfd = native.memfdCreate('vfio-dma', 3 * 4096);
    const dma = native.mmap(memfd, 0, 3 * 4096, PROT_READ | PROT_WRITE);
    native.close(memfd);
    container.mapDma(dma, { iova: IOVA });
    try {
      native.munmap(dma);
      out.munmapWhileDmaMapped = 'allowed (BUG)';
    } catch (error) {
      out.munmapWhileDmaMapped = (error as { code?: string }).code;
    }
    out.command = device.enableBusMaster();
    Object.assign(out, identifyController(bar, dma, IOVA, 0x1234));
    container.unmapDma(IOVA);
    native.munmap(dma);
    if (info.reset) {
      device.reset();
      out.resetDone = true;
      out.ccAfterReset = r32[0x14 / 4];
    }
  } finally {
    opened.close();
  }
  return out;
}

function gpuProbe(bdf: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const opened = openVfioDevice(bdf);
  const { device } = opened;
  try {
    const info = device.info();
    out.info = info;
    out.group = opened.groupNumber;
    out.regions = device.regions().filter((r) => Number(r.size) > 0);
    out.irqs = device.irqs();
    out.vendorId = device.readConfig16(0);
    out.classCode = device.readConfig32(8) >>> 8;
    const bar2 = device.mapRegion(2, { length: 0x1000 });
    out.dispiId = new Uint16Array(bar2)[0x500 / 2];
    device.unmap(bar2);
    const bar0 = device.mapRegion(0, { length: 0x1000 });
    out.bar0Dword0 = new Uint32Array(bar0)[0];
    if (info.reset) {
      device.reset();
      out.resetDone = true;
    }
  } finally {
    opened.close();
  }
  return out;
}

async function main(): Promise<void> {
  step('start');
  sh('modprobe', ['vfio-pci']);
  results.iommufd = existsSync('/dev/iommu');
  const { pf, vf } = await createNvmeVf();
  results.secondary = sh('nvme', ['list-secondary', '/dev/nvme0']).split('\n').filter((l) => /SCS|Online|Offline/i.test(l)).slice(0, 4);
  results.pf = pf;
  results.vf = vf;
  results.pfGroup = groupOf(pf);
  results.vfGroup = groupOf(vf);
  results.vfDriverBefore = driverOf(vf);
  step(`VF ${vf} created and online`);
  // A VF in host use first (on nvme, as after boot with autoprobe), so release has a host driver to return it to.
  await bind(vf, 'nvme');
  write(path.join(SYS, vf, 'driver_override'), '\n');
  await waitFor(`nvme bound to ${vf}`, () => driverOf(vf) === 'nvme');
  results.vfDriverInHostUse = driverOf(vf);
  // The project's passthrough manager prepares it: checks, driver_override + drivers_probe, claim, VFIO probe.
  const claims = new ClaimStore('/run/vfiod-claims.db') // local tmpfs: SQLite's WAL needs shared memory, which 9p lacks;
  const manager = new DeviceManager({ roots: DEFAULT_ROOTS, writer: realSysfsWriter, prober: new NativeVfioProber(), claims });
  const prepared = await manager.prepare(vf, 'test-vm');
  results.vfPrepareResult = JSON.parse(JSON.stringify(prepared));
  results.vfClaimsAfterPrepare = claims.list().length;
  results.vfDriverPrepared = driverOf(vf);
  step('VF prepared (bound to vfio-pci) by DeviceManager');
  results.nvme = nvmeIdentify(vf);
  step('NVMe identify via VFIO DMA done');
  results.vfProbe = await new NativeVfioProber().probe(vf);
  step('VF probed');
  // a second open of the group while held must fail with EBUSY (one user per group)
  const held = openVfioDevice(vf);
  try {
    await new NativeVfioProber().probe(vf);
    results.probeWhileHeld = 'succeeded (unexpected)';
  } catch (error) {
    results.probeWhileHeld = { code: (error as { code?: string }).code, message: (error as Error).message };
  } finally {
    held.close();
  }
  // The manager releases it back to the driver it had (nvme) and restores driver_override exactly.
  results.vfReleaseResult = JSON.parse(JSON.stringify(await manager.release(vf, 'test-vm')));
  results.vfClaimsAfterRelease = claims.list().length;
  await waitFor(`nvme controller on ${vf}`, () => existsSync(path.join(SYS, vf, 'nvme')) && readdirSync(path.join(SYS, vf, 'nvme')).length > 0);
  const ctrl = readdirSync(path.join(SYS, vf, 'nvme'))[0]!;
  await waitFor(`${ctrl} live`, () => read(`/sys/class/nvme/${ctrl}/state`) === 'live', 20_000);
  results.vfDriverReleased = driverOf(vf);
  results.vfReleasedController = { name: ctrl, state: read(`/sys/class/nvme/${ctrl}/state`), serial: read(`/sys/class/nvme/${ctrl}/serial`) };
  results.vfOverrideReleased = read(path.join(SYS, vf, 'driver_override'));
  step('VF released to nvme');

  const gpu = readdirSync(SYS).find((d) => read(path.join(SYS, d, 'vendor')) === '0x1234' && read(path.join(SYS, d, 'class')).startsWith('0x0380'));
  if (!gpu) throw new Error('bochs-display not found');
  results.gpu = gpu;
  results.gpuDriverBefore = driverOf(gpu);
  results.gpuPrepareResult = JSON.parse(JSON.stringify(await manager.prepare(gpu, 'test-vm')));
  results.gpuResult = gpuProbe(gpu);
  results.gpuProbe = await new NativeVfioProber().probe(gpu);
  results.gpuReleaseResult = JSON.parse(JSON.stringify(await manager.release(gpu, 'test-vm')));
  results.gpuClaimsAfterRelease = claims.list().length;
  results.gpuDriverReleased = driverOf(gpu);
  results.gpuOverrideReleased = read(path.join(SYS, gpu, 'driver_override'));
  step('GPU stand-in done');

  // SR-IOV through the manager: the PF's one VF (unused now) is replaced by two new ones, each prepared for a VM;
  // removing them is refused while they are claimed, and done after their release.
  const created = await manager.createVfs(pf, 'sriov-vm', 2);
  results.createVfs = {
    numVfs: created.numVfs,
    replaced: created.replaced,
    vfs: created.vfs.map((v) => v.bdf),
    drivers: created.vfs.map((v) => driverOf(v.bdf)),
    groups: created.vfs.map((v) => groupOf(v.bdf)),
    probed: created.vfs.map((v) => v.probe?.regions.length ?? 0),
    claims: claims.list().map((c) => [c.bdf, c.owner, c.state]),
    numvfsFile: read(path.join(SYS, pf, 'sriov_numvfs')),
  };
  try {
    manager.removeVfs(pf);
    results.removeVfsWhileClaimed = 'succeeded (unexpected)';
  } catch (error) {
    results.removeVfsWhileClaimed = (error as { reason?: string }).reason;
  }
  for (const v of created.vfs) await manager.release(v.bdf, 'sriov-vm');
  results.removeVfs = manager.removeVfs(pf);
  results.numvfsAfterRemove = read(path.join(SYS, pf, 'sriov_numvfs'));
  results.claimsAfterRemove = claims.list().length;
  step('SR-IOV VFs created, prepared, released and removed');
  results.ok = true;
}

runGuestProgram(main);
