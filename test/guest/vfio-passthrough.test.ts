/**
 * VFIO passthrough in a QEMU guest (testbed/vfio-guest.ts, guest side testbed/vfio-guest/guest-main.ts): one
 * boot runs everything, the guest reports through results.json in a shared work dir, and the tests assert on it.
 * Skips with the reason when QEMU, a static busybox, kmod, nvme-cli or a guest kernel with vfio-pci/nvme/9p is missing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { cleanupVfioGuest, runVfioGuest, vfioGuestUnavailableReason, type VfioGuestRun } from '../../testbed/vfio-guest.js';

const reason = vfioGuestUnavailableReason();
if (reason) console.warn(`vfio-passthrough: skipped: ${reason}`);

type R = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe.skipIf(reason !== undefined)('VFIO passthrough in a QEMU guest (SR-IOV NVMe VF + bochs-display)', () => {
  let run: VfioGuestRun | undefined;
  let r: R = {};

  beforeAll(async () => {
    run = await runVfioGuest();
    r = (run.results ?? {}) as R;
    console.log(`vfio-passthrough: QEMU wall ${(run.wallMs / 1000).toFixed(1)} s, guest program ${((r.guestMs ?? 0) / 1000).toFixed(1)} s`);
    if (!r.ok) {
      console.log(`guest steps:\n${(r.steps ?? []).join('\n')}\nerrors:\n${(r.errors ?? []).join('\n')}`);
      console.log(`console (tail):\n${run.console.split('\n').slice(-40).join('\n')}`);
    }
  }, 300_000);

  afterAll(() => cleanupVfioGuest(run));

  it('the guest program ran to the end without errors', () => {
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(run!.exitCode).toBe(0);
  });

  it('created and onlined an NVMe VF with its own IOMMU group, kept off host drivers', () => {
    expect(r.vf).toMatch(/^0000:/);
    expect(r.vfGroup).not.toBe(r.pfGroup);
    expect(r.vfDriverBefore).toBeNull();
    expect(r.vfDriverPrepared).toBe('vfio-pci');
    expect(r.iommufd).toBe(false);
  });

  it('the passthrough manager prepared the VF from host use (nvme) with a claim, and released it with none left', () => {
    expect(r.vfDriverInHostUse).toBe('nvme');
    expect(r.vfClaimsAfterPrepare).toBe(1);
    expect(r.vfClaimsAfterRelease).toBe(0);
    expect(r.vfReleaseResult).toBeDefined();
  });

  it('opened the VF through the addon: TYPE1v2 container, regions, irqs, BAR0 CAP/VS', () => {
    const n = r.nvme as R;
    expect(n.iommuType).toBe(3);
    expect(n.info.pci).toBe(true);
    expect(n.info.numRegions).toBeGreaterThanOrEqual(9);
    const bar0 = (n.regions as R[]).find((x) => x.index === 0)!;
    expect(bar0.mmap).toBe(true);
    // the MSI-X table lives in BAR0: the kernel says so with a capability (MSI-X mappable, id 3) or a sparse mmap
    expect(bar0.capIds.includes(3) || bar0.sparseMmap !== undefined).toBe(true);
    expect(bar0.size).toBeGreaterThanOrEqual(0x2000);
    const config = (n.regions as R[]).find((x) => x.index === 7)!;
    expect(config.readable && config.writable).toBe(true);
    expect((n.irqs as R[]).find((x) => x.index === 2)?.count).toBeGreaterThan(0); // MSI-X
    expect(BigInt(n.cap) & 0xffffn).toBeGreaterThan(0n); // MQES
    expect(n.vs).toMatch(/^0x1[0-9a-f]{4}$/); // NVMe 1.x
    expect((n.iommuInfo as R).iovaPgsizes).toBeGreaterThan(0);
  });

  it('ran NVMe Identify Controller through VFIO DMA (bus master set, memfd buffer pinned while mapped)', () => {
    const n = r.nvme as R;
    expect(n.command & 0x6).toBe(0x6);
    expect(n.munmapWhileDmaMapped).toBe('EBUSY');
    expect(n.cqe).toEqual({ cid: 0x1234, status: 0 });
    expect(n.identify.vid).toBe(0x1b36);
    expect(n.identify.sn).toBe('vfiodvf');
    expect(n.identify.subnqn).toContain('nqn.2026-11.io.vfiod:vfio-test');
  });

  it('the prober reports viability, regions, irqs and reset; a held group gives EBUSY', () => {
    const p = r.vfProbe as R;
    expect(p.bdf).toBe(r.vf);
    expect(p.groupViable).toBe(true);
    expect(p.group).toBe(r.vfGroup);
    expect(p.vendorId).toBe(0x1b36);
    expect(p.regions.some((x: R) => x.index === 0 && x.mmap)).toBe(true);
    expect(p.resetSupported).toBe(true);
    expect(p.irqs.some((x: R) => x.index === 2 && x.count > 0)).toBe(true);
    expect(r.probeWhileHeld.code).toBe('EBUSY');
    expect(r.probeWhileHeld.message).toContain(r.vf);
  });

  it('released the VF back to nvme (controller live, override cleared)', () => {
    expect(r.vfDriverReleased).toBe('nvme');
    expect(r.vfReleasedController.state).toBe('live');
    expect(r.vfOverrideReleased).toBe('(null)');
  });

  it('handled the bochs-display GPU stand-in: regions, BAR mmap, reset, release', () => {
    const g = r.gpuResult as R;
    expect(g.vendorId).toBe(0x1234);
    expect(g.classCode >> 8).toBe(0x0380);
    expect(g.dispiId).toBe(0xb0c5);
    expect((g.regions as R[]).find((x) => x.index === 0)?.size).toBe(16 << 20);
    expect(g.info.reset).toBe(true);
    expect(g.resetDone).toBe(true);
    expect((r.gpuProbe as R).groupViable).toBe(true);
    expect((r.gpuProbe as R).resetSupported).toBe(true);
    expect(r.gpuDriverReleased).toBe(r.gpuDriverBefore);
    expect(r.gpuOverrideReleased).toBe('(null)');
  });
  it('created two VFs through the manager (replacing the unused one), prepared and claimed each, and removed them after release', () => {
    const c = r.createVfs as R;
    expect(c.numVfs).toBe(2);
    expect(c.replaced).toEqual([r.vf]);
    expect(c.vfs).toHaveLength(2);
    expect(c.drivers).toEqual(['vfio-pci', 'vfio-pci']);
    expect(new Set(c.groups as number[]).size).toBe(2);
    expect((c.probed as number[]).every((n) => n > 0)).toBe(true);
    expect(c.claims).toEqual((c.vfs as string[]).map((vf) => [vf, 'sriov-vm', 'prepared']));
    expect(c.numvfsFile).toBe('2');
    expect(r.removeVfsWhileClaimed).toBe('SRIOV_VFS_IN_USE');
    expect((r.removeVfs as R).removed).toEqual(c.vfs);
    expect(r.numvfsAfterRemove).toBe('0');
    expect(r.claimsAfterRemove).toBe(0);
  });
});
