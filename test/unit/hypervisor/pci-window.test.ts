/**
 * Large BARs and NUMA in the static VM configuration: facts read from fake sysfs resource and numa_node files (a GPU
 * with a 64 GiB BAR on node 0, one with a 128 GiB BAR on node 1) size QEMU's pref64-reserve and OVMF's
 * X-PciMmio64Mb, cloud-hypervisor's aperture weights, and place devices per node. The QEMU arguments (without the
 * vfio-pci devices, which need the real GPUs) are also given to a real QEMU to prove it takes them.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClaimStore } from '../../../src/devices/claims.js';
import { DeviceManager } from '../../../src/devices/manager.js';
import { apertureFor, bridgeWindow, GIB, MIB, ovmfMmio64Mb } from '../../../src/hypervisor/pci-window.js';
import { buildStaticConfig, type StaticConfigRequest } from '../../../src/hypervisor/static-config.js';
import { OpenApiValidator, openApiMissingReason } from '../../helpers/fake-cloud-hypervisor.js';
import { FakeHost } from '../../helpers/fake-sysfs.js';

/** IORESOURCE_MEM | PREFETCH | MEM_64 | SIZEALIGN, as a GPU's large BAR shows in sysfs resource. */
const PREF64 = 0x14220c;
/** A 32-bit non-prefetchable register BAR. */
const MEM32 = 0x40200;
const GPU64 = '0000:41:00.0';
const GPU128 = '0000:c1:00.0';
const NIC = '0000:42:00.0';

let host: FakeHost;
let claims: ClaimStore;
let manager: DeviceManager;

beforeEach(() => {
  host = new FakeHost();
  host.addDevice({ bdf: GPU64, vendor: '10de', device: '26b9', classCode: '030200', driver: 'vfio-pci', group: 30, numa: 0, bars: [[0, 16 * MIB, MEM32], [1, 64 * GIB, PREF64], [3, 32 * MIB, PREF64]] });
  host.addDevice({ bdf: GPU128, vendor: '10de', device: '2335', classCode: '030200', driver: 'vfio-pci', group: 31, numa: 1, bars: [[0, 16 * MIB, MEM32], [2, 128 * GIB, PREF64], [4, 32 * MIB, PREF64]] });
  host.addDevice({ bdf: NIC, vendor: '15b3', device: '101e', classCode: '020000', driver: 'vfio-pci', group: 32, numa: 0, bars: [[0, 32 * MIB]] });
  claims = new ClaimStore(path.join(host.root, 'claims.db'));
  manager = new DeviceManager({ roots: host.roots, writer: host.writer, prober: host.prober, claims });
});
afterEach(() => {
  claims.close();
  host.cleanup();
});

const facts = (...bdfs: string[]): NonNullable<StaticConfigRequest['hostFunctions']> => Object.fromEntries(bdfs.map((b) => [b, manager.functionFacts(b)!]));
const pci = (bdf: string, id: string) => ({ source: { kind: 'pci' as const, bdf }, id });

describe('64-bit PCI window from sysfs resource files', () => {
  it('sizes a root port window from the 64-bit prefetchable BARs only, aligned to the largest', () => {
    expect(bridgeWindow(manager.functionFacts(GPU64))).toEqual({ size: 64 * GIB + 32 * MIB, alignment: 64 * GIB });
    expect(bridgeWindow(manager.functionFacts(GPU128))).toEqual({ size: 128 * GIB + 32 * MIB, alignment: 128 * GIB });
    expect(bridgeWindow(manager.functionFacts(NIC))).toEqual({ size: 0, alignment: 0 });
    // 128G+32M at 0, then the 64G window at the next 64 GiB boundary (192G): 256G+32M in all.
    const both = [bridgeWindow(manager.functionFacts(GPU64)), bridgeWindow(manager.functionFacts(GPU128))];
    expect(apertureFor(both)).toBe(256 * GIB + 32 * MIB);
    expect(ovmfMmio64Mb(both)).toBe(512 * 1024);
    expect(ovmfMmio64Mb([])).toBe(0);
  });

  it('QEMU: pref64-reserve on each large-BAR root port and OVMF X-PciMmio64Mb; nothing for small BARs', () => {
    const r = buildStaticConfig({ hypervisor: 'qemu', devices: [pci(GPU64, 'gpu0'), pci(NIC, 'nic0')], hostFunctions: facts(GPU64, NIC) });
    expect(r.qemu!.args).toEqual([
      '-device', 'pcie-root-port,id=vfiod-rp0,chassis=32,slot=0,pref64-reserve=65568M',
      '-device', `vfio-pci,host=${GPU64},id=gpu0,bus=vfiod-rp0`,
      '-device', 'pcie-root-port,id=vfiod-rp1,chassis=33,slot=1',
      '-device', `vfio-pci,host=${NIC},id=nic0,bus=vfiod-rp1`,
      '-fw_cfg', 'name=opt/ovmf/X-PciMmio64Mb,string=131072',
    ]);
    expect(r.pciWindow).toEqual({ aperture64Bytes: 64 * GIB + 32 * MIB, windows: { gpu0: 64 * GIB + 32 * MIB }, ovmfMmio64Mb: 131072 });
    expect(r.warnings.join('\n')).toContain('host-phys-bits=on');
    const small = buildStaticConfig({ hypervisor: 'qemu', devices: [pci(NIC, 'nic0')], hostFunctions: facts(NIC) });
    expect(small.qemu!.args.join(' ')).not.toMatch(/pref64|fw_cfg/);
    expect(small.pciWindow.ovmfMmio64Mb).toBe(0);
  });

  it('cloud-hypervisor: the aperture weight of the segment, and what v48 does not offer said in a warning', () => {
    const r = buildStaticConfig({ hypervisor: 'cloud-hypervisor', devices: [pci(GPU128, 'gpu1')], hostFunctions: facts(GPU128) });
    expect(r.cloudHypervisor!.pci_segments).toEqual([{ pci_segment: 0, mmio64_aperture_weight: 129 }]);
    expect(r.cloudHypervisor!.args).toEqual(['--device', `path=/sys/bus/pci/devices/${GPU128},id=gpu1`, '--pci-segment', 'pci_segment=0,mmio64_aperture_weight=129']);
    expect(r.cloudHypervisor!.num_pci_segments).toBeUndefined();
    const warning = r.warnings.find((w) => w.startsWith('large BARs'))!;
    expect(warning).toContain('131104M of 64-bit PCI aperture');
    expect(warning).toContain('no window-size or per-port reserve setting');
    expect(warning).toContain('cpus.max_phys_bits');
  });
});

describe('NUMA', () => {
  it('warns when the devices span nodes; QEMU places them under a pxb-pcie per node with numa_node', () => {
    const devices = [pci(GPU64, 'gpu0'), pci(GPU128, 'gpu1'), pci(NIC, 'nic0')];
    const unplaced = buildStaticConfig({ hypervisor: 'qemu', devices, hostFunctions: facts(GPU64, GPU128, NIC) });
    expect(unplaced.warnings[0]).toBe(`the VM's devices span host NUMA nodes 0, 1 (${GPU64}: node 0; ${GPU128}: node 1; ${NIC}: node 0): DMA and interrupts cross nodes; place them per node (numa placement) or pin the VM near one node`);
    expect(unplaced.qemu!.args.join(' ')).not.toContain('pxb-pcie');

    const r = buildStaticConfig({ hypervisor: 'qemu', devices, hostFunctions: facts(GPU64, GPU128, NIC), numaPlacement: true });
    expect(r.qemu!.args).toEqual([
      '-device', 'pxb-pcie,id=vfiod-pxb0,bus_nr=128,numa_node=0,bus=pcie.0',
      '-device', 'pxb-pcie,id=vfiod-pxb1,bus_nr=131,numa_node=1,bus=pcie.0',
      '-device', 'pcie-root-port,id=vfiod-rp0,chassis=32,slot=0,bus=vfiod-pxb0,pref64-reserve=65568M',
      '-device', `vfio-pci,host=${GPU64},id=gpu0,bus=vfiod-rp0`,
      '-device', 'pcie-root-port,id=vfiod-rp1,chassis=33,slot=1,bus=vfiod-pxb1,pref64-reserve=131104M',
      '-device', `vfio-pci,host=${GPU128},id=gpu1,bus=vfiod-rp1`,
      '-device', 'pcie-root-port,id=vfiod-rp2,chassis=34,slot=2,bus=vfiod-pxb0',
      '-device', `vfio-pci,host=${NIC},id=nic0,bus=vfiod-rp2`,
      '-fw_cfg', 'name=opt/ovmf/X-PciMmio64Mb,string=524288',
    ]);
    expect(r.warnings).toContain('NUMA placement: the VM needs guest NUMA nodes 0, 1 (-numa node,nodeid=N with memory bound to host node N)');

    const qemu = spawnSync('qemu-system-x86_64', ['--version']);
    if (qemu.status !== 0) return console.warn('pci-window: QEMU does not check the arguments: qemu-system-x86_64 not found');
    // Everything but the vfio-pci devices (they need the real GPUs), in a q35 VM with guest nodes 0 and 1.
    const args = r.qemu!.args.filter((a, i, all) => !a.startsWith('vfio-pci,') && !(a === '-device' && all[i + 1]?.startsWith('vfio-pci,')));
    const run = spawnSync('qemu-system-x86_64', [
      '-machine', 'q35', '-S', '-display', 'none', '-nodefaults', '-m', '512', '-smp', '2',
      '-object', 'memory-backend-ram,id=m0,size=256M', '-object', 'memory-backend-ram,id=m1,size=256M',
      '-numa', 'node,nodeid=0,memdev=m0', '-numa', 'node,nodeid=1,memdev=m1', ...args, '-qmp', 'stdio',
    ], { input: '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n', timeout: 60_000, encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });

  it('cloud-hypervisor: a PCI segment per node, weighted, and the NumaConfig pci_segments to merge', () => {
    const r = buildStaticConfig({ hypervisor: 'cloud-hypervisor', devices: [pci(GPU64, 'gpu0'), pci(GPU128, 'gpu1'), pci(NIC, 'nic0')], hostFunctions: facts(GPU64, GPU128, NIC), numaPlacement: true });
    const ch = r.cloudHypervisor!;
    expect(ch.devices.map((d) => [d.id, d.pci_segment])).toEqual([['gpu0', 1], ['gpu1', 2], ['nic0', 1]]);
    expect(ch.pci_segments).toEqual([{ pci_segment: 1, mmio64_aperture_weight: 65 }, { pci_segment: 2, mmio64_aperture_weight: 129 }]);
    expect(ch.num_pci_segments).toBe(3);
    expect(ch.numa).toEqual([{ guest_numa_id: 0, pci_segments: [1] }, { guest_numa_id: 1, pci_segments: [2] }]);
    expect(ch.args.slice(-6)).toEqual(['--pci-segment', 'pci_segment=1,mmio64_aperture_weight=65', '--pci-segment', 'pci_segment=2,mmio64_aperture_weight=129', '--platform', 'num_pci_segments=3']);
    const vmConfig = {
      payload: { firmware: 'CLOUDHV.fd' }, memory: { size: 1 << 30 }, devices: ch.devices, pci_segments: ch.pci_segments,
      platform: { num_pci_segments: ch.num_pci_segments }, numa: ch.numa,
    };
    if (openApiMissingReason) return console.warn(`pci-window: VmConfig not validated: ${openApiMissingReason}`);
    expect(new OpenApiValidator().checkRequest('PUT', '/vm.create', 'application/json', JSON.stringify(vmConfig))).toEqual([]);
  });
});
