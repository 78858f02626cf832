/**
 * The iommufd + VFIO cdev backend.
 *
 * On the host (no /dev/iommu needed): the addon's iommufd/cdev entry points validate their arguments and fail with
 * errno/code/syscall and context; a failed IOAS map leaves the buffer unpinned; `openVfioDevice` picks the backend
 * from what exists (fake sysfs/dev trees) and rolls back what it opened when the bind fails.
 *
 * In a QEMU guest booted with the kernel testbed/vfio-guest/build-kernel.sh builds (Linux 6.12 with IOMMUFD and
 * VFIO_DEVICE_CDEV; Debian's kernels have neither): testbed/vfio-guest/guest-iommufd.ts opens an NVMe VF through
 * iommufd + cdev and through the legacy container on the same kernel, runs Identify by DMA through each, and checks
 * that the prober and DeviceManager see the cdev. Skips with the reason when that kernel (or QEMU & co.) is missing.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { native, PROT_READ, PROT_WRITE } from '../../src/native/index.js';
import { chooseVfioBackend, Iommufd, openVfioDevice, vfioCdevOf } from '../../src/vfio/index.js';
import { NativeVfioProber } from '../../src/vfio/prober.js';
import {
  cleanupVfioGuest,
  IOMMUFD_GUEST_KERNEL_DIR,
  REPO,
  runVfioGuest,
  vfioGuestUnavailableReason,
  type VfioGuestRun,
} from '../../testbed/vfio-guest.js';
import { temporaryDir } from '../helpers/common.js';

type R = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const BDF = '0000:01:00.1';
const openFds = (): number => readdirSync('/proc/self/fd').length;

/** A fake sysfs + /dev: the device, optionally with a vfio-dev/vfio3 cdev and /dev/iommu. Files stand in for nodes. */
function fakeTree(options: { cdev: boolean; iommu: boolean }): { root: string; sysfsRoot: string; devRoot: string } {
  const root = temporaryDir('vfiod-iommufd-');
  const sysfsRoot = path.join(root, 'sys');
  const devRoot = path.join(root, 'dev');
  const dev = path.join(sysfsRoot, 'bus/pci/devices', BDF);
  mkdirSync(dev, { recursive: true });
  mkdirSync(path.join(devRoot, 'vfio/devices'), { recursive: true });
  if (options.cdev) {
    mkdirSync(path.join(dev, 'vfio-dev/vfio3'), { recursive: true });
    writeFileSync(path.join(devRoot, 'vfio/devices/vfio3'), '');
  }
  if (options.iommu) writeFileSync(path.join(devRoot, 'iommu'), '');
  return { root, sysfsRoot, devRoot };
}

describe('native iommufd and VFIO cdev entry points', () => {
  it('validate fds, ids and paths before any syscall', () => {
    expect(() => native.iommufdIoasAlloc(-1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => native.iommufdDestroy(0, 0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' })); // ids start at 1
    expect(() => native.iommufdDestroy(0, 2 ** 32)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => native.iommufdIoasUnmap(0, 1, 0, 0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => native.iommufdGetHwInfo(0, 0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => native.vfioDeviceAttachIommufdPt(0, 1.5)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => native.vfioDeviceBindIommufd(0, '3' as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => native.vfioOpenDeviceCdev('')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => native.vfioOpenDeviceCdev(undefined as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => native.iommufdOpen('a\0b')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
  });

  it('open failures carry errno, code, syscall and the path', () => {
    expect(() => native.iommufdOpen('/nonexistent/iommu')).toThrow(
      expect.objectContaining({ code: 'ENOENT', errno: -2, syscall: 'open', message: expect.stringContaining('/nonexistent/iommu') }),
    );
    expect(() => native.vfioOpenDeviceCdev('/nonexistent/vfio/devices/vfio0')).toThrow(
      expect.objectContaining({ code: 'ENOENT', syscall: 'open', message: expect.stringContaining('/nonexistent/vfio/devices/vfio0') }),
    );
  });

  it('ioctls on a non-iommufd / non-VFIO fd fail with ENOTTY naming the ioctl and fd', () => {
    const fd = native.memfdCreate('not-iommufd', 0);
    try {
      expect(() => native.iommufdIoasAlloc(fd)).toThrow(
        expect.objectContaining({ code: 'ENOTTY', syscall: 'ioctl', message: expect.stringContaining(`IOMMU_IOAS_ALLOC, fd ${fd}`) }),
      );
      expect(() => native.iommufdDestroy(fd, 7)).toThrow(expect.objectContaining({ code: 'ENOTTY', message: expect.stringContaining('IOMMU_DESTROY 7') }));
      expect(() => native.iommufdIoasIovaRanges(fd, 1)).toThrow(expect.objectContaining({ code: 'ENOTTY', message: expect.stringContaining('IOMMU_IOAS_IOVA_RANGES, ioas 1') }));
      expect(() => native.iommufdGetHwInfo(fd, 1)).toThrow(expect.objectContaining({ code: 'ENOTTY', message: expect.stringContaining('IOMMU_GET_HW_INFO, dev 1') }));
      expect(() => native.vfioDeviceBindIommufd(fd, fd)).toThrow(expect.objectContaining({ code: 'ENOTTY', message: expect.stringContaining('VFIO_DEVICE_BIND_IOMMUFD') }));
      expect(() => native.vfioDeviceAttachIommufdPt(fd, 2)).toThrow(expect.objectContaining({ code: 'ENOTTY', message: expect.stringContaining('VFIO_DEVICE_ATTACH_IOMMUFD_PT 2') }));
      expect(() => native.vfioDeviceDetachIommufdPt(fd)).toThrow(expect.objectContaining({ code: 'ENOTTY', message: expect.stringContaining('VFIO_DEVICE_DETACH_IOMMUFD_PT') }));
      expect(() => native.iommufdIoasUnmap(fd, 1, 0x1000, 0x1000)).toThrow(expect.objectContaining({ code: 'EINVAL' })); // nothing mapped
    } finally {
      native.close(fd);
    }
  });

  it('IOAS map validates like the container map and a refused map leaves the buffer unpinned', () => {
    const memfd = native.memfdCreate('ioas-dma', 2 * 4096);
    const buffer = native.mmap(memfd, 0, 2 * 4096, PROT_READ | PROT_WRITE);
    native.close(memfd);
    const fd = native.memfdCreate('not-iommufd', 0);
    try {
      expect(() => native.iommufdIoasMap(fd, 0, buffer, 0, 0, 4096)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' })); // ioas 0
      expect(() => native.iommufdIoasMap(fd, 1, new ArrayBuffer(4096), 0, 0, 4096)).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'mmap' }));
      expect(() => native.iommufdIoasMap(fd, 1, buffer, 100, 0, 4096)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => native.iommufdIoasMap(fd, 1, buffer, 0, 0, 3 * 4096)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => native.iommufdIoasMap(fd, 1, buffer, 0, 0, 4096, 0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => native.iommufdIoasMap(fd, 1, buffer, 0, 0x100000, 4096)).toThrow(
        expect.objectContaining({ code: 'ENOTTY', message: expect.stringContaining('IOMMU_IOAS_MAP, ioas 1') }),
      );
    } finally {
      native.close(fd);
    }
    native.munmap(buffer); // not EBUSY: the refused map dropped its pin
    expect(native.isMapped(buffer)).toBe(false);
  });
});

describe('backend choice and the iommufd open path (fake sysfs and /dev)', () => {
  const trees: string[] = [];
  afterAll(() => {
    for (const t of trees) rmSync(t, { recursive: true, force: true });
  });

  it('auto picks iommufd only when /dev/iommu and the cdev both exist; explicit choices are kept', () => {
    const both = fakeTree({ cdev: true, iommu: true });
    const noIommu = fakeTree({ cdev: true, iommu: false });
    const noCdev = fakeTree({ cdev: false, iommu: true });
    trees.push(both.root, noIommu.root, noCdev.root);
    expect(vfioCdevOf(BDF, both)).toBe(path.join(both.devRoot, 'vfio/devices/vfio3'));
    expect(vfioCdevOf(BDF, noCdev)).toBeUndefined();
    expect(chooseVfioBackend(BDF, both)).toBe('iommufd');
    expect(chooseVfioBackend(BDF, noIommu)).toBe('group');
    expect(chooseVfioBackend(BDF, noCdev)).toBe('group');
    expect(chooseVfioBackend(BDF, { ...both, backend: 'group' })).toBe('group');
    expect(() => openVfioDevice(BDF, { ...both, backend: 'bogus' as 'auto' })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('bogus') }),
    );
  });

  it('backend iommufd without a cdev says why', () => {
    const tree = fakeTree({ cdev: false, iommu: true });
    trees.push(tree.root);
    expect(() => openVfioDevice(BDF, { ...tree, backend: 'iommufd' })).toThrow(
      expect.objectContaining({ code: 'ENOENT', bdf: BDF, message: expect.stringContaining(`${BDF}: no VFIO cdev`) }),
    );
  });

  it('a refused bind closes the cdev and the iommufd again (no fd leak) and names the BDF', async () => {
    const tree = fakeTree({ cdev: true, iommu: true });
    trees.push(tree.root);
    const before = openFds();
    // plain files stand in for the nodes: both open, the bind ioctl is refused
    expect(() => openVfioDevice(BDF, tree)).toThrow(
      expect.objectContaining({ code: 'ENOTTY', bdf: BDF, message: expect.stringMatching(new RegExp(`^${BDF}: ioctl\\(VFIO_DEVICE_BIND_IOMMUFD`)) }),
    );
    expect(openFds()).toBe(before);
    await expect(new NativeVfioProber(tree).probe(BDF)).rejects.toMatchObject({ code: 'ENOTTY', bdf: BDF });
    expect(openFds()).toBe(before);
  });

  it('Iommufd.open reports a missing /dev/iommu with the path', () => {
    expect(() => Iommufd.open('/nonexistent/iommu')).toThrow(expect.objectContaining({ code: 'ENOENT', message: expect.stringContaining('/nonexistent/iommu') }));
  });
});

// ---------------------------------------------------------------------------------------------------------------

const reason = vfioGuestUnavailableReason(IOMMUFD_GUEST_KERNEL_DIR);
if (reason) console.warn(`vfio-iommufd: guest part skipped: ${reason}`);

describe.skipIf(reason !== undefined)('iommufd + VFIO cdev in a QEMU guest (Linux 6.12, NVMe VF + bochs-display)', () => {
  let run: VfioGuestRun | undefined;
  let r: R = {};

  beforeAll(async () => {
    run = await runVfioGuest({ kernel: IOMMUFD_GUEST_KERNEL_DIR, program: path.join(REPO, 'testbed/vfio-guest/guest-iommufd.ts') });
    r = (run.results ?? {}) as R;
    const boot = /\[t=([\d.]+)s\] guest: starting/.exec(run.console)?.[1];
    console.log(
      `vfio-iommufd: kernel ${r.kernel}, QEMU wall ${(run.wallMs / 1000).toFixed(1)} s, guest script at ${boot ?? '?'} s after boot, ` +
        `guest program ${((r.guestMs ?? 0) / 1000).toFixed(1)} s`,
    );
    if (!r.ok) {
      console.log(`guest steps:\n${(r.steps ?? []).join('\n')}\nerrors:\n${(r.errors ?? []).join('\n')}`);
      console.log(`console (tail):\n${run.console.split('\n').slice(-40).join('\n')}`);
    }
  }, 300_000);

  afterAll(() => cleanupVfioGuest(run));

  it('the guest program ran to the end without errors on the iommufd kernel', () => {
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(run!.exitCode).toBe(0);
    expect(r.kernel).toMatch(/^6\.12\..*-vfiod-iommufd$/);
    expect(r.devIommu).toBe(true);
  });

  it('DeviceManager prepared the VF from nvme, and its prober (auto) used iommufd + cdev', () => {
    expect(r.vfDriverInHostUse).toBe('nvme');
    expect(r.vfDriverPrepared).toBe('vfio-pci');
    expect(r.cdev).toMatch(/^\/dev\/vfio\/devices\/vfio\d+$/);
    expect(r.cdevNodeExists).toBe(true);
    expect(r.prepare.vfioCdev).toBe(r.cdev);
    expect(r.prepare.probeBackend).toBe('iommufd');
    expect(r.autoBackend).toBe('iommufd');
  });

  it('opened through iommufd: bound, attached to an IOAS on VT-d, regions, BAR0 CAP/VS', () => {
    const i = r.iommufd as R;
    expect(i.backend).toBe('iommufd');
    expect(i.cdev).toBe(r.cdev);
    expect(i.devId).toBeGreaterThan(0);
    expect(i.ioasId).toBeGreaterThan(0);
    expect(i.hwptId).toBeGreaterThan(0);
    expect(i.hwptId).not.toBe(i.ioasId); // the kernel made a hw pagetable for the IOAS
    expect(i.hwInfo.type).toBe(1); // IOMMU_HW_INFO_TYPE_INTEL_VTD: QEMU's intel-iommu
    expect(i.iovaRanges.ranges.length).toBeGreaterThan(0);
    expect(i.iovaRanges.alignment).toBe(4096);
    expect(i.info.pci).toBe(true);
    expect(i.info.reset).toBe(true);
    expect(i.vendorId).toBe(0x1b36);
    expect(i.regions.find((x: R) => x.index === 0)?.mmap).toBe(true);
    expect(i.irqs.find((x: R) => x.index === 2)?.count).toBeGreaterThan(0); // MSI-X
    expect(BigInt(i.cap) & 0xffffn).toBeGreaterThan(0n);
    expect(i.vs).toMatch(/^0x1[0-9a-f]{4}$/);
  });

  it('ran NVMe Identify Controller with DMA through the IOAS mapping (buffer pinned while mapped)', () => {
    const i = r.iommufd as R;
    expect(i.mappedIovas).toEqual([0x200000]);
    expect(i.munmapWhileDmaMapped.code).toBe('EBUSY');
    expect(i.command & 0x6).toBe(0x6);
    expect(i.cqe).toEqual({ cid: 0x4321, status: 0 });
    expect(i.identify.vid).toBe(0x1b36);
    expect(i.identify.sn).toBe('vfiodvf');
    expect(i.identify.subnqn).toContain('nqn.2026-11.io.vfiod:vfio-test');
    expect(i.resetDone).toBe(true);
  });

  it('while the cdev is open: legacy group, second probe, IOAS destroy and DeviceManager.release are refused', () => {
    const i = r.iommufd as R;
    expect(i.legacyOpenWhileCdevHeld.code).toBe('EBUSY');
    expect(i.legacyOpenWhileCdevHeld.message).toContain(r.vf);
    expect(i.probeWhileHeld.code).toBe('EINVAL'); // one bound open per device cdev
    expect(i.probeWhileHeld.message).toContain(r.vf);
    expect(i.probeWhileHeld.message).toContain('already bound through another open of its cdev');
    expect(i.destroyAttachedIoas.code).toBe('EBUSY');
    expect(i.releaseWhileHeld.code).toBe('UNAVAILABLE');
    expect(i.releaseWhileHeld.message).toContain(`via ${r.cdev}`);
    expect(i.claimsWhileHeld).toBe(1);
    expect(i.driverWhileHeld).toBe('vfio-pci');
  });

  it('detach and attach to a second IOAS work; the detached IOAS can then be destroyed', () => {
    const i = r.iommufd as R;
    expect(i.reattachHwpt).toBeGreaterThan(0);
    expect(i.secondIoasId).not.toBe(i.ioasId);
    expect(i.firstIoasDestroyedAfterDetach).toBe('succeeded');
  });

  it('the legacy container/group path works on the same kernel, and blocks the iommufd bind while held', () => {
    const l = r.legacy as R;
    expect(l.backend).toBe('group');
    expect(l.iommuType).toBe(3); // TYPE1v2
    expect(l.cqe).toEqual({ cid: 0x4321, status: 0 });
    expect(l.identify.sn).toBe('vfiodvf');
    expect(l.munmapWhileDmaMapped.code).toBe('EBUSY');
    expect(l.iommufdBindWhileGroupHeld.code).toBe('EBUSY');
    expect(l.iommufdBindWhileGroupHeld.message).toContain('VFIO_DEVICE_BIND_IOMMUFD');
    expect(l.iommufdBindWhileGroupHeld.message).toContain('open through the legacy API');
  });

  it('the prober reports the backend it used', () => {
    const a = r.probeAuto as R;
    expect(a.backend).toBe('iommufd');
    expect(a.groupViable).toBe(true);
    expect(a.iommufd.cdev).toBe(r.cdev);
    expect(a.iommufd.hwInfo.type).toBe(1);
    expect(a.vendorId).toBe(0x1b36);
    expect(a.resetSupported).toBe(true);
    const l = r.probeLegacy as R;
    expect(l.backend).toBe('group');
    expect(l.iommuType).toBe(3);
    expect(l.groupViable).toBe(true);
    expect(l.group).toBe(a.group);
  });

  it('after close, DeviceManager released the VF back to nvme', () => {
    expect(r.claimsAfterRelease).toBe(0);
    expect(r.vfDriverReleased).toBe('nvme');
    expect(r.releasedControllerState).toBe('live');
    expect(r.cdevAfterRelease).toBeNull();
  });

  it('the bochs-display GPU stand-in goes the same way: prepared with an iommufd probe, BAR2 through the cdev, released', () => {
    const g = r.gpu as R;
    expect(g.probeBackend).toBe('iommufd');
    expect(g.cdev).toMatch(/^\/dev\/vfio\/devices\/vfio\d+$/);
    expect(g.vendorId).toBe(0x1234);
    expect(g.dispiId).toBe(0xb0c5);
    expect(g.driverAfterRelease).toBeNull();
    expect(g.claimsAfterRelease).toBe(0);
  });
});
