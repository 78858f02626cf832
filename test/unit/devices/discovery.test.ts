import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findHolders, listDevices, readDevice } from '../../../src/devices/discovery.js';
import { BDF, normalizeBdf, slotOf, trailingBdf } from '../../../src/util/pci-address.js';
import { selectDevices } from '../../../src/devices/selectors.js';
import { type FakeHost, standardHost } from '../../helpers/fake-sysfs.js';

let host: FakeHost;
beforeEach(() => {
  host = standardHost();
});
afterEach(() => host.cleanup());

const dev = (bdf: string) => {
  const d = readDevice(host.roots, bdf);
  if (!d) throw new Error(`no ${bdf}`);
  return d;
};

describe('discovery', () => {
  it('reads an SR-IOV NVMe PF and its VFs', () => {
    const pf = dev('0000:01:00.0');
    expect(pf).toMatchObject({ vendor: '15b3', device: '6001', classCode: '010802', kind: 'nvme', driver: 'nvme', driverOverride: null, iommuGroup: 2, numaNode: 0, physfn: null });
    expect(pf.sriov).toEqual({ totalVfs: 8, numVfs: 3, driversAutoprobe: true });
    expect(pf.virtfns).toEqual(['0000:01:00.1', '0000:01:00.2', '0000:01:00.3']);
    expect(pf.bars).toEqual([expect.objectContaining({ index: 0, size: 0x4000 })]);
    expect(pf.vfio).toMatchObject({ state: 'host-driver', usable: false, groupViable: false });
    const vf = dev('0000:01:00.2');
    expect(vf).toMatchObject({ physfn: '0000:01:00.0', driver: null, resetMethods: ['flr'], numaNode: null });
    expect(vf.vfio).toMatchObject({ state: 'unbound', usable: false, groupViable: true });
  });

  it('skips malformed lines of the sysfs resource file instead of throwing', () => {
    writeFileSync(
      path.join(host.devDir('0000:01:00.0'), 'resource'),
      '0x00000000f0000000 0x00000000f0003fff 0x0000000000140204\nnot-a-number 0x1 0x2\n0x00000000f1000000 0x00000000f0ffffff 0x0\n0x00000000f2000000 0x00000000f2000fff 0x0000000000040200\n',
    );
    expect(dev('0000:01:00.0').bars).toEqual([
      expect.objectContaining({ index: 0, size: 0x4000 }),
      expect.objectContaining({ index: 3, size: 0x1000 }),
    ]);
  });

  it('reads a GPU and its HDMI audio function in one group', () => {
    const gpu = dev('0000:02:00.0');
    expect(gpu.kind).toBe('display');
    expect(gpu.groupMembers).toEqual(['0000:02:00.0', '0000:02:00.1']);
    expect(gpu.bars.map((b) => b.size)).toEqual([0x1000_0000, 0x20_0000, 0x10_0000]);
    expect(gpu.hostUse).toEqual([expect.objectContaining({ kind: 'drm', blocking: false })]);
    expect(dev('0000:02:00.1').kind).toBe('audio');
  });

  it('classifies bridges, devices without IOMMU group, and a group with a bridge', () => {
    expect(dev('0000:03:00.0').vfio.state).toBe('bridge');
    expect(dev('0000:08:00.0').vfio).toMatchObject({ state: 'no-iommu', usable: false });
    const nic = dev('0000:04:00.1');
    expect(nic.groupMembers).toEqual(['0000:03:00.0', '0000:04:00.0', '0000:04:00.1']);
    expect(nic.vfio.reasons.join(' ')).toContain('0000:04:00.0 is bound to mlx5_core');
    expect(nic.vfio.reasons.join(' ')).not.toContain('0000:03:00.0');
    expect(dev('0000:04:00.0').hostUse).toEqual([expect.objectContaining({ kind: 'interface-up', on: 'enp4s0f0', blocking: true })]);
  });

  it('sees a VF on a vendor VFIO driver as usable as it is', () => {
    const vf = dev('0000:05:00.4');
    expect(vf.driver).toBe('nvidia');
    expect(vf.vfioCdev).toBe(`${host.roots.dev}/vfio/devices/vfio0`);
    expect(vf.vfioGroupDev).toBe(`${host.roots.dev}/vfio/8`);
    expect(vf.vfio).toMatchObject({ state: 'vendor-vfio', usable: true, groupViable: true });
  });

  it('finds mounted partitions, swap and holders of NVMe namespaces', () => {
    const root = dev('0000:06:00.0');
    expect(root.hostUse.map((u) => [u.kind, u.on])).toEqual([
      ['mounted', 'nvme0n1p2'],
      ['swap', 'nvme0n1p3'],
    ]);
    expect(root.hostUse[0]!.detail).toBe('/dev/nvme0n1p2 is mounted on /');
    expect(dev('0000:07:00.0').hostUse).toEqual([expect.objectContaining({ kind: 'holder', on: 'nvme1n1', blocking: true })]);
    expect(dev('0000:01:00.1').hostUse).toEqual([]);
  });

  it('sees processes that hold a namespace, a partition or the controller open, and names them', () => {
    host.holdOpen(4100, 'postgres', `${host.roots.dev}/nvme2n1`);
    host.holdOpen(4200, 'qemu-system-x86', `${host.roots.dev}/nvme0n1p1`);
    host.holdOpen(4201, 'ceph-osd', `${host.roots.dev}/nvme0n1p1`);
    const pf = dev('0000:01:00.0');
    expect(pf.hostUse).toEqual([
      { kind: 'open', on: 'nvme2n1', detail: '/dev/nvme2n1 is open by pid 4100 (postgres)', blocking: true, processes: [{ pid: 4100, comm: 'postgres' }] },
    ]);
    expect(pf.vfio.reasons.join(' ')).toContain('in use on the host: /dev/nvme2n1 is open by pid 4100 (postgres)');
    const root = dev('0000:06:00.0');
    expect(root.hostUse.filter((u) => u.kind === 'open').map((u) => u.detail)).toEqual([
      '/dev/nvme0n1p1 is open by pid 4200 (qemu-system-x86), pid 4201 (ceph-osd)',
    ]);
    // The fake lays every NVMe device's controller out as nvme0: holding /dev/nvme0 shows on each of them.
    host.holdOpen(4300, 'nvme', `${host.roots.dev}/nvme0`);
    expect(dev('0000:07:00.0').hostUse.map((u) => u.detail)).toContain('/dev/nvme0 (the controller) is open by pid 4300 (nvme)');
    // Other files of the process (outside /dev) are not uses; a process that exits is gone from the next scan.
    host.holdOpen(4100, 'postgres', '/var/lib/postgresql/base');
    host.exitProcess(4100);
    expect(dev('0000:01:00.0').hostUse.filter((u) => u.on === 'nvme2n1')).toEqual([]);
  });

  it('sees a virtio-net interface that is up (net/ one level deeper, under virtioN/)', () => {
    host.addDriver('virtio-pci');
    host.addDevice({ bdf: '0000:09:00.0', vendor: '1af4', device: '1041', classCode: '020000', driver: 'virtio-pci', group: 12, netIfs: [{ name: 'enp9s0', up: true, virtio: true }] });
    expect(dev('0000:09:00.0').hostUse).toEqual([expect.objectContaining({ kind: 'interface-up', on: 'enp9s0', blocking: true })]);
  });

  it('sees GPUs held by a display server or a compute process (DRM card and render nodes, /dev/nvidiaN)', () => {
    host.holdOpen(900, 'Xorg', `${host.roots.dev}/dri/card0`);
    expect(dev('0000:02:00.0').hostUse).toEqual([expect.objectContaining({ kind: 'open', on: 'card0', detail: '/dev/dri/card0 is open by pid 900 (Xorg)', blocking: true })]);
    host.nvidiaGpu('0000:05:00.0', 3);
    expect(dev('0000:05:00.0').hostUse).toEqual([]);
    host.holdOpen(901, 'python3', `${host.roots.dev}/nvidia3`);
    expect(dev('0000:05:00.0').hostUse).toEqual([
      expect.objectContaining({ kind: 'open', on: 'nvidia3', detail: '/dev/nvidia3 (a CUDA or display process) is open by pid 901 (python3)', blocking: true }),
    ]);
  });

  it('lists every device and returns undefined for unknown ones', () => {
    expect(listDevices(host.roots).map((d) => d.bdf)).toHaveLength(15);
    expect(readDevice(host.roots, '0000:99:00.0')).toBeUndefined();
  });

  it('selects by BDF, vendor:device, class, PF and free', () => {
    const all = listDevices(host.roots);
    const bdfs = (s: Parameters<typeof selectDevices>[1], claimed?: Set<string>) => selectDevices(all, s, claimed).map((d) => d.bdf);
    expect(bdfs({ bdfs: ['01:00.1', '0000:02:00.0'] })).toEqual(['0000:01:00.1', '0000:02:00.0']);
    expect(bdfs({ ids: ['15b3:6001'] })).toEqual(['0000:01:00.0', '0000:01:00.1', '0000:01:00.2', '0000:01:00.3']);
    expect(bdfs({ ids: ['10de'] })).toEqual(['0000:05:00.0', '0000:05:00.4']);
    expect(bdfs({ classes: ['display'] })).toEqual(['0000:02:00.0', '0000:05:00.0', '0000:05:00.4']);
    expect(bdfs({ pfs: ['0000:01:00.0'] })).toEqual(['0000:01:00.1', '0000:01:00.2', '0000:01:00.3']);
    expect(bdfs({ classes: ['nvme'], free: true }, new Set(['0000:01:00.3']))).toEqual(['0000:01:00.0', '0000:01:00.1', '0000:01:00.2']);
  });

  it('finds processes holding VFIO nodes open', () => {
    host.holdOpen(4242, 'qemu-system-x86', `${host.roots.dev}/vfio/8`);
    host.holdOpen(4243, 'cat', '/etc/passwd');
    expect(findHolders(host.roots, [`${host.roots.dev}/vfio/8`])).toEqual([{ pid: 4242, comm: 'qemu-system-x86', path: `${host.roots.dev}/vfio/8` }]);
    expect(findHolders(host.roots, [`${host.roots.dev}/vfio/3`])).toEqual([]);
  });

  it('normalises BDFs', () => {
    expect(normalizeBdf('01:00.1')).toBe('0000:01:00.1');
    expect(normalizeBdf('0000:AF:00.7')).toBe('0000:af:00.7');
    expect(normalizeBdf('1:0.1')).toBeUndefined();
  });

  it('knows one form of PCI address: the canonical one, found whole or at the end of a path', () => {
    expect(BDF.test('0000:01:00.1')).toBe(true);
    for (const bad of ['01:00.1', '0000:AF:00.7', '0000:01:00.8', ' 0000:01:00.1']) expect(BDF.test(bad), bad).toBe(false);
    expect(trailingBdf('/sys/bus/pci/devices/0000:01:00.1')).toBe('0000:01:00.1');
    expect(trailingBdf('/sys/bus/pci/devices/0000:01:00.1/')).toBeUndefined();
    expect(trailingBdf('/tmp/vm1.sock')).toBeUndefined();
    expect(slotOf('0000:01:00.1')).toBe('0000:01:00');
  });
});
