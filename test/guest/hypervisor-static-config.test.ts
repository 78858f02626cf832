/**
 * Static VM configuration (src/hypervisor/static-config.ts): QEMU arguments (a root port per device, vfio-pci with
 * bootindex, vfio-user-pci JSON form with the shared memory backend) and cloud-hypervisor devices / user_devices,
 * which must validate against the v48 OpenAPI VmConfig schema. The QEMU arguments are also given to a real QEMU
 * (-S) to prove it accepts them up to the point where the host device is needed.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

import { buildStaticConfig, CH_BOOT_WARNING } from '../../src/hypervisor/static-config.js';
import { VfiodError } from '../../src/util/errors.js';
import { OpenApiValidator, openApiMissingReason } from '../helpers/fake-cloud-hypervisor.js';

function refusal(fn: () => unknown): VfiodError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(VfiodError);
    return error as VfiodError;
  }
  throw new Error('expected a refusal');
}

describe('static configuration', () => {
  it('QEMU: one pcie-root-port per device, vfio-pci with bootindex, vfio-user-pci as JSON with a shared memory backend', () => {
    const r = buildStaticConfig({
      hypervisor: 'qemu',
      memorySize: '2G',
      devices: [
        { source: { kind: 'pci', bdf: '01:00.1' }, bootIndex: 0 },
        { source: { kind: 'vfio-user', socketPath: '/run/vfiod/vm1.sock' }, id: 'nvme0' },
      ],
    });
    expect(r.qemu!.args).toEqual([
      '-device', 'pcie-root-port,id=vfiod-rp0,chassis=32,slot=0',
      '-device', 'vfio-pci,host=0000:01:00.1,id=vfiod-0000_01_00_1,bus=vfiod-rp0,bootindex=0',
      '-device', 'pcie-root-port,id=vfiod-rp1,chassis=33,slot=1',
      '-device', '{"driver":"vfio-user-pci","socket":{"path":"/run/vfiod/vm1.sock","type":"unix"},"id":"nvme0","bus":"vfiod-rp1"}',
      '-object', 'memory-backend-memfd,id=vfiod-mem,size=2G,share=on', '-machine', 'memory-backend=vfiod-mem',
    ]);
    expect(r.qemu!.buses).toEqual({ 'vfiod-0000_01_00_1': 'vfiod-rp0', nvme0: 'vfiod-rp1' });
    expect(r.warnings).toEqual(['vfio-user-pci needs QEMU >= 10.1']);
  });

  it('cloud-hypervisor: devices / user_devices that validate against VmConfig, CLI form, and the firmware warning for a boot order', () => {
    const r = buildStaticConfig({
      hypervisor: 'cloud-hypervisor',
      devices: [
        { source: { kind: 'pci', bdf: '0000:01:00.1' }, bootIndex: 0, iommu: true, pciSegment: 1 },
        { source: { kind: 'pci', bdf: '0000:02:00.0' }, id: 'gpu0', gpudirectClique: 0 },
        { source: { kind: 'vfio-user', socketPath: '/run/vfiod/vm1.sock' }, id: 'nvme0' },
      ],
    });
    const ch = r.cloudHypervisor!;
    expect(ch.devices).toEqual([
      { path: '/sys/bus/pci/devices/0000:01:00.1', id: 'vfiod-0000_01_00_1', iommu: true, pci_segment: 1 },
      { path: '/sys/bus/pci/devices/0000:02:00.0', id: 'gpu0', x_nv_gpudirect_clique: 0 },
    ]);
    expect(ch.user_devices).toEqual([{ socket: '/run/vfiod/vm1.sock', id: 'nvme0' }]);
    expect(ch.args).toEqual([
      '--device', 'path=/sys/bus/pci/devices/0000:01:00.1,id=vfiod-0000_01_00_1,iommu=true,pci_segment=1',
      '--device', 'path=/sys/bus/pci/devices/0000:02:00.0,id=gpu0,x_nv_gpudirect_clique=0',
      '--user-device', 'socket=/run/vfiod/vm1.sock,id=nvme0',
    ]);
    expect(ch.sharedMemoryRequired).toBe(true);
    expect(r.warnings).toContain(CH_BOOT_WARNING);
    const vmConfig = { payload: { firmware: 'CLOUDHV.fd' }, memory: { size: 1 << 30, shared: true }, devices: ch.devices, user_devices: ch.user_devices };
    if (openApiMissingReason) return console.warn(`static config: VmConfig not validated: ${openApiMissingReason}`);
    expect(new OpenApiValidator().checkRequest('PUT', '/vm.create', 'application/json', JSON.stringify(vmConfig))).toEqual([]);
  });

  it('QEMU: a device given through iommufd gets the VM\'s iommufd object and vfio-pci iommufd=,sysfsdev=; the VM\'s other devices follow it', () => {
    const vendor = { cdev: '/dev/vfio/devices/vfio0', groupNode: true, vendorDriver: 'nvidia', iommufdHost: true };
    const onVfioPci = { ...vendor, vendorDriver: null };
    const r = buildStaticConfig({
      hypervisor: 'qemu',
      devices: [
        { source: { kind: 'pci', bdf: '0000:05:00.4' }, id: 'vgpu0' },
        { source: { kind: 'pci', bdf: '0000:01:00.1' }, id: 'vf0', bootIndex: 0 },
        { source: { kind: 'pci', bdf: '0000:01:00.2' }, id: 'vf1', vfioBackend: 'iommufd' },
      ],
      hostVfio: { '0000:05:00.4': vendor, '0000:01:00.1': onVfioPci, '0000:01:00.2': onVfioPci },
    });
    expect(r.qemu!.args).toEqual([
      '-object', 'iommufd,id=vfiod-iommufd0',
      '-device', 'pcie-root-port,id=vfiod-rp0,chassis=32,slot=0',
      '-device', 'vfio-pci,iommufd=vfiod-iommufd0,sysfsdev=/sys/bus/pci/devices/0000:05:00.4,id=vgpu0,bus=vfiod-rp0',
      '-device', 'pcie-root-port,id=vfiod-rp1,chassis=33,slot=1',
      '-device', 'vfio-pci,iommufd=vfiod-iommufd0,sysfsdev=/sys/bus/pci/devices/0000:01:00.1,id=vf0,bus=vfiod-rp1,bootindex=0',
      '-device', 'pcie-root-port,id=vfiod-rp2,chassis=34,slot=2',
      '-device', 'vfio-pci,iommufd=vfiod-iommufd0,sysfsdev=/sys/bus/pci/devices/0000:01:00.2,id=vf1,bus=vfiod-rp2',
    ]);
    expect(r.vfioBackends).toEqual({ vgpu0: 'iommufd', vf0: 'iommufd', vf1: 'iommufd' });
    expect(r.warnings).toEqual(['devices given through iommufd (-object iommufd) need QEMU >= 9.0']);
    // one asked for the group: QEMU 11.1.3 aborts on a VM with both, so it is refused
    const e = refusal(() => buildStaticConfig({
      hypervisor: 'qemu',
      devices: [{ source: { kind: 'pci', bdf: '0000:05:00.4' }, id: 'vgpu0' }, { source: { kind: 'pci', bdf: '0000:01:00.1' }, id: 'vf0', vfioBackend: 'group' }],
      hostVfio: { '0000:05:00.4': vendor, '0000:01:00.1': onVfioPci },
    }));
    expect(e.code).toBe('FAILED_PRECONDITION');
    expect(e.reason).toBe('VFIO_BACKENDS_MIXED');
    expect(e.message).toMatch(/vf0 \(0000:01:00.1\) would go through its VFIO group while vgpu0 goes through iommufd/);
  });

  it('cloud-hypervisor: a vendor VFIO device goes through its group; one that needs iommufd is refused (v48 opens devices through their group only)', () => {
    const vendor = { cdev: '/dev/vfio/devices/vfio0', groupNode: true, vendorDriver: 'nvidia', iommufdHost: true };
    const ok = buildStaticConfig({ hypervisor: 'cloud-hypervisor', devices: [{ source: { kind: 'pci', bdf: '0000:05:00.4' }, id: 'vgpu0' }], hostVfio: { '0000:05:00.4': vendor } });
    expect(ok.cloudHypervisor!.devices).toEqual([{ path: '/sys/bus/pci/devices/0000:05:00.4', id: 'vgpu0' }]);
    expect(ok.vfioBackends).toEqual({ vgpu0: 'group' });
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ devices: [{ source: { kind: 'pci', bdf: '0000:05:00.4' }, id: 'vgpu0' }], hostVfio: { '0000:05:00.4': { ...vendor, groupNode: false } } }, /device vgpu0: 0000:05:00.4 needs iommufd \(it has a VFIO cdev and no group node\)/],
      [{ devices: [{ source: { kind: 'pci', bdf: '0000:01:00.1' }, vfioBackend: 'iommufd' }] }, /0000:01:00.1 needs iommufd \(asked for\), and cloud-hypervisor v48 opens VFIO devices through their IOMMU group only/],
    ];
    for (const [request, message] of cases) {
      const e = refusal(() => buildStaticConfig({ hypervisor: 'cloud-hypervisor', ...request } as never));
      expect(e.code).toBe('FAILED_PRECONDITION');
      expect(e.reason).toBe('VMM_CANNOT_USE_IOMMUFD');
      expect(e.message).toMatch(message);
    }
  });

  it('refuses bad input with INVALID_ARGUMENT naming the problem', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ hypervisor: 'qemu', devices: [{ source: { kind: 'pci', bdf: 'zz' } }] }, /'zz' is not a PCI address/],
      [{ hypervisor: 'qemu', devices: [{ source: { kind: 'pci', bdf: '01:00.1' }, id: 'a' }, { source: { kind: 'pci', bdf: '01:00.2' }, id: 'a' }] }, /'a' is used twice/],
      [{ hypervisor: 'qemu', devices: [{ source: { kind: 'pci', bdf: '01:00.1' }, bootIndex: 1 }, { source: { kind: 'pci', bdf: '01:00.2' }, bootIndex: 1 }] }, /boot index 1 is given to both/],
      [{ hypervisor: 'qemu', devices: [{ source: { kind: 'pci', bdf: '01:00.1' }, bootIndex: -1 }] }, /boot index -1/],
      [{ hypervisor: 'qemu', devices: [{ source: { kind: 'vfio-user', socketPath: 'x.sock' } }] }, /absolute path/],
      [{ hypervisor: 'qemu', firstChassis: 255, devices: [{ source: { kind: 'pci', bdf: '01:00.1' } }, { source: { kind: 'pci', bdf: '01:00.2' } }] }, /chassis numbers 255..256/],
      [{ hypervisor: 'xen', devices: [] }, /unknown hypervisor 'xen'/],
      [{ hypervisor: 'qemu', devices: [{ source: { kind: 'usb' } }] }, /unknown source kind 'usb'/],
      [{ hypervisor: 'qemu', memorySize: '4G,share=off', devices: [{ source: { kind: 'vfio-user', socketPath: '/run/a.sock' } }] }, /memory size "4G,share=off" must be a size/],
      [{ hypervisor: 'qemu', memorySize: '0', devices: [] }, /memory size "0"/],
      [{ hypervisor: 'cloud-hypervisor', devices: [{ source: { kind: 'pci', bdf: '01:00.1' }, pciSegment: 65536 }] }, /PCI segment 65536 must be an integer 0\.\.32767/],
      [{ hypervisor: 'cloud-hypervisor', devices: [{ source: { kind: 'pci', bdf: '01:00.1' }, pciSegment: 1.5 }] }, /PCI segment 1\.5/],
      [{ hypervisor: 'cloud-hypervisor', devices: [{ source: { kind: 'pci', bdf: '01:00.1' }, gpudirectClique: 300 }] }, /GPUDirect clique 300 must be an integer 0\.\.127/],
      [{ hypervisor: 'cloud-hypervisor', devices: [{ source: { kind: 'pci', bdf: '01:00.1' }, iommu: 'yes' }] }, /iommu must be true or false \(got "yes"\)/],
      [{ hypervisor: 'qemu', devices: [{ source: { kind: 'pci', bdf: '01:00.1' }, vfioBackend: 'legacy' }] }, /VFIO backend "legacy" must be one of auto, iommufd, group/],
    ];
    for (const [request, message] of cases) {
      const e = refusal(() => buildStaticConfig(request as never));
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toMatch(message);
    }
  });

  it.skipIf(spawnSync('qemu-system-x86_64', ['--version']).status !== 0)('a real QEMU parses the arguments: it gets as far as opening the (absent) host device', () => {
    const r = buildStaticConfig({ hypervisor: 'qemu', devices: [{ source: { kind: 'pci', bdf: '0000:ff:1f.7' }, bootIndex: 0 }] });
    const run = spawnSync('qemu-system-x86_64', ['-S', '-accel', 'tcg', '-machine', 'q35', '-nodefaults', '-display', 'none', '-m', '64', ...r.qemu!.args], { encoding: 'utf8', timeout: 30_000 });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/vfio-pci,host=0000:ff:1f.7,id=vfiod-0000_ff_1f_7,bus=vfiod-rp0,bootindex=0: vfio \/sys\/bus\/pci\/devices\/0000:ff:1f.7: no such host device/);
  });
});
