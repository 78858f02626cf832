/**
 * The VFIO backend rule (src/hypervisor/vfio-backend.ts): group or iommufd per device and hypervisor, from the host
 * facts, and the refusals with their reasons.
 */
import { describe, expect, it } from 'vitest';

import { checkVfioBackendChoice, resolveQemuVmBackends, resolveVfioBackend, type VfioFacts } from '../../../src/hypervisor/vfio-backend.js';
import { expectError } from '../../helpers/common.js';

const BDF = '0000:05:00.4';
/** A device on vfio-pci on a host with iommufd: group node and cdev. */
const ON_VFIO_PCI: VfioFacts = { cdev: '/dev/vfio/devices/vfio0', groupNode: true, vendorDriver: null, iommufdHost: true };
/** An NVIDIA vGPU VF: stays on nvidia, has a cdev and a group node (../shared/reference/passthrough.md). */
const VENDOR: VfioFacts = { ...ON_VFIO_PCI, vendorDriver: 'nvidia' };
/** A cdev and no group node (a kernel without CONFIG_VFIO_GROUP). */
const CDEV_ONLY: VfioFacts = { ...ON_VFIO_PCI, groupNode: false };
/** Debian's 6.1 kernel: no cdev, no /dev/iommu. */
const LEGACY_HOST: VfioFacts = { cdev: null, groupNode: true, vendorDriver: null, iommufdHost: false };

describe('VFIO backend choice', () => {
  it('auto keeps the group unless the device has no group node, or is on a vendor VFIO driver for QEMU on a host with iommufd', () => {
    expect(resolveVfioBackend('auto', BDF, ON_VFIO_PCI, 'qemu', 'ctx')).toBe('group');
    expect(resolveVfioBackend('auto', BDF, LEGACY_HOST, 'qemu', 'ctx')).toBe('group');
    expect(resolveVfioBackend('auto', BDF, undefined, 'qemu', 'ctx')).toBe('group');
    expect(resolveVfioBackend('auto', BDF, ON_VFIO_PCI, 'cloud-hypervisor', 'ctx')).toBe('group');
    expect(resolveVfioBackend('auto', BDF, VENDOR, 'qemu', 'ctx')).toBe('iommufd');
    expect(resolveVfioBackend('auto', BDF, CDEV_ONLY, 'qemu', 'ctx')).toBe('iommufd');
    // a vendor VFIO device keeps its group node: cloud-hypervisor (group only) and a host without /dev/iommu use it
    expect(resolveVfioBackend('auto', BDF, VENDOR, 'cloud-hypervisor', 'ctx')).toBe('group');
    expect(resolveVfioBackend('auto', BDF, { ...VENDOR, iommufdHost: false }, 'qemu', 'ctx')).toBe('group');
    expect(resolveVfioBackend('group', BDF, VENDOR, 'qemu', 'ctx')).toBe('group');
  });

  it('iommufd asked for: taken where the device has a cdev and the host /dev/iommu; as given without facts', () => {
    expect(resolveVfioBackend('iommufd', BDF, ON_VFIO_PCI, 'qemu', 'ctx')).toBe('iommufd');
    expect(resolveVfioBackend('iommufd', BDF, undefined, 'qemu', 'ctx')).toBe('iommufd');
    expect(resolveVfioBackend('group', BDF, ON_VFIO_PCI, 'qemu', 'ctx')).toBe('group');
    // a device not yet on a VFIO driver has neither node: prepare binds it, the choice stands
    const unprepared = { cdev: null, groupNode: false, vendorDriver: null, iommufdHost: true };
    expect(resolveVfioBackend('group', BDF, unprepared, 'qemu', 'ctx')).toBe('group');
    expect(resolveVfioBackend('iommufd', BDF, unprepared, 'qemu', 'ctx')).toBe('iommufd');
  });

  it('refuses what cannot work, with the reason and the device', async () => {
    const cases: Array<[() => unknown, string, RegExp]> = [
      [() => resolveVfioBackend('iommufd', BDF, LEGACY_HOST, 'qemu', 'attach to VM vm1'), 'IOMMUFD_UNAVAILABLE', /attach to VM vm1: 0000:05:00.4 has a VFIO group but no cdev/],
      [() => resolveVfioBackend('iommufd', BDF, { ...ON_VFIO_PCI, iommufdHost: false }, 'qemu', 'ctx'), 'IOMMUFD_UNAVAILABLE', /the host has no \/dev\/iommu \(kernel without CONFIG_IOMMUFD\)/],
      [() => resolveVfioBackend('auto', BDF, { ...CDEV_ONLY, iommufdHost: false }, 'qemu', 'ctx'), 'IOMMUFD_UNAVAILABLE', /needs iommufd and the host has no \/dev\/iommu/],
      [() => resolveVfioBackend('group', BDF, CDEV_ONLY, 'qemu', 'ctx'), 'VFIO_GROUP_UNAVAILABLE', /cannot be given through its VFIO group: it has a VFIO cdev and no group node/],
      [() => resolveVfioBackend('iommufd', BDF, VENDOR, 'cloud-hypervisor', 'ctx'), 'VMM_CANNOT_USE_IOMMUFD', /needs iommufd \(asked for\), and cloud-hypervisor v48 opens VFIO devices through their IOMMU group only/],
      [() => resolveVfioBackend('iommufd', BDF, undefined, 'cloud-hypervisor', 'ctx'), 'VMM_CANNOT_USE_IOMMUFD', /needs iommufd \(asked for\)/],
      [() => resolveVfioBackend('auto', BDF, CDEV_ONLY, 'cloud-hypervisor', 'ctx'), 'VMM_CANNOT_USE_IOMMUFD', /needs iommufd \(it has a VFIO cdev and no group node\).*DeviceConfig has a sysfs path and no iommufd, cdev or fd setting/],
    ];
    for (const [fn, reason, message] of cases) {
      const e = await expectError(Promise.resolve().then(fn), 'FAILED_PRECONDITION', message);
      expect(e.reason).toBe(reason);
      expect(e.details.bdf).toBe(BDF);
    }
  });

  it('checks the choice: auto by default, an unknown one is INVALID_ARGUMENT', async () => {
    expect(checkVfioBackendChoice(undefined, 'ctx')).toBe('auto');
    expect(checkVfioBackendChoice('iommufd', 'ctx')).toBe('iommufd');
    const e = await expectError(Promise.resolve().then(() => checkVfioBackendChoice('cdev', 'attach x')), 'INVALID_ARGUMENT');
    expect(e.message).toBe('attach x: VFIO backend "cdev" must be one of auto, iommufd, group');
    expect(e.details).toMatchObject({ reason: 'FIELD_INVALID', field: 'vfio_backend' });
  });

  it('one backend per QEMU VM: auto devices follow the one that needs iommufd, or the devices the VM has; a device that cannot is refused', async () => {
    const fn = (id: string, facts: VfioFacts | undefined, choice: 'auto' | 'group' | 'iommufd' = 'auto') => ({ id, bdf: BDF, choice, facts });
    expect(resolveQemuVmBackends([fn('vgpu0', VENDOR), fn('vf0', ON_VFIO_PCI)], undefined, 'ctx')).toEqual({ vgpu0: 'iommufd', vf0: 'iommufd' });
    expect(resolveQemuVmBackends([fn('vf0', ON_VFIO_PCI), fn('vf1', ON_VFIO_PCI)], undefined, 'ctx')).toEqual({ vf0: 'group', vf1: 'group' });
    // hot-plug: the VM's devices decide (a vendor device joins a VM whose devices use their group)
    expect(resolveQemuVmBackends([fn('vgpu0', VENDOR)], { backend: 'group', ids: ['vf0'] }, 'ctx')).toEqual({ vgpu0: 'group' });
    expect(resolveQemuVmBackends([fn('vf1', ON_VFIO_PCI)], { backend: 'iommufd', ids: ['vgpu0'] }, 'ctx')).toEqual({ vf1: 'iommufd' });
    const cases: Array<[() => unknown, RegExp]> = [
      [() => resolveQemuVmBackends([fn('vf0', ON_VFIO_PCI, 'iommufd'), fn('vf1', ON_VFIO_PCI, 'group')], undefined, 'VM vm1'), /VM vm1: vf1 \(0000:05:00.4\) would go through its VFIO group while vf0 goes through iommufd: QEMU cannot have VFIO devices on both in one VM/],
      [() => resolveQemuVmBackends([fn('vf0', CDEV_ONLY), fn('old', LEGACY_HOST)], undefined, 'ctx'), /old \(0000:05:00.4\) would go through its VFIO group while vf0 goes through iommufd/],
      [() => resolveQemuVmBackends([fn('vf0', CDEV_ONLY)], { backend: 'group', ids: ['a', 'b'] }, 'ctx'), /vf0 \(0000:05:00.4\) would go through iommufd while a, b go through the group/],
    ];
    for (const [call, message] of cases) {
      const e = await expectError(Promise.resolve().then(call), 'FAILED_PRECONDITION', message);
      expect(e.reason).toBe('VFIO_BACKENDS_MIXED');
    }
  });
});
