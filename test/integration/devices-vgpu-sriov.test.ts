/**
 * vGPU profiles, SR-IOV VF creation and the NUMA selector through `vfiod devices` (standalone and through the
 * daemon) and DeviceService, and the large-BAR / NUMA VM configuration through GetVmConfig and `vfiod vm-config`
 * (in-process daemon on a temp unix socket), on the fake sysfs.
 */
import path from 'node:path';
import { rmSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/common.js';
import { runDevices, runDevicesViaDaemon } from '../../src/cli/devices.js';
import { runVmConfig } from '../../src/cli/vm-config.js';
import { VfiodClient } from '../../src/daemon/client.js';
import type { RequestOf, RpcName } from '../../src/daemon/proto.js';
import { type Daemon, startDaemon } from '../../src/daemon/server.js';
import { memoryLogger } from '../../src/util/log.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { expectStatus } from '../helpers/daemon-client.js';
import { temporaryDir } from '../helpers/common.js';

const VGPU_VF = '0000:05:00.4';
const NEW_PF = '0000:09:00.0';

let host: FakeHost;
let out: string;
let err: string;

beforeEach(() => {
  host = standardHost();
  host.addDevice({ bdf: NEW_PF, vendor: '8086', device: '0a54', classCode: '010802', driver: 'nvme', group: 20, numa: 1, sriov: { total: 4, num: 0, autoprobe: true }, bars: [[0, 0x4000]] });
});
afterEach(() => host.cleanup());

const io = { stdout: (t: string) => void (out += t), stderr: (t: string) => void (err += t) };

function cli(...args: string[]): Promise<number> {
  out = '';
  err = '';
  return runDevices(
    [...args, '--state', path.join(host.root, 'claims.db'), '--sysfs-root', host.roots.sysfs, '--dev-root', host.roots.dev, '--proc-root', host.roots.proc],
    { ...io, writer: host.writer, prober: host.prober, pollMs: 5 },
  );
}

describe('vfiod devices (standalone)', () => {
  it('vgpu lists, sets and clears a VF\'s profile; refusals exit with the right code', async () => {
    expect(await cli('vgpu', '05:00.4')).toBe(EXIT.ok);
    expect(out).toMatch(/^0000:05:00\.4: vGPU profile none\nID\s+NAME\n1155\s+NVIDIA L40S-1B\n1156\s+NVIDIA L40S-2B\n1161\s+NVIDIA L40S-48Q\n$/);
    expect(await cli('vgpu', '05:00.4', '--set', '1156')).toBe(EXIT.usage);
    expect(err).toContain('--set needs --owner <vm>');
    expect(await cli('vgpu', '05:00.4', '--set', '1156', '--owner', 'vm1')).toBe(EXIT.ok);
    expect(out).toBe('0000:05:00.4: vGPU profile none -> 1156 for vm1 (claimed; release gives back the previous profile)\n');
    expect(host.read(VGPU_VF, 'nvidia/current_vgpu_type')).toBe('1156');
    expect(await cli('vgpu', '05:00.4', '--set', '1155', '--owner', 'vm2', '--json')).toBe(EXIT.failed);
    expect(JSON.parse(out)).toMatchObject({ error: { code: 'FAILED_PRECONDITION', reason: 'DEVICE_CLAIMED_BY_OTHER_VM' } });
    expect(await cli('vgpu', '05:00.4', '--set', '4242', '--owner', 'vm1')).toBe(EXIT.failed);
    expect(err).toContain('cannot take vGPU profile 4242 now; creatable: 1155 (NVIDIA L40S-1B)');
    expect(await cli('vgpu', '01:00.1')).toBe(EXIT.failed);
    expect(err).toContain('VGPU_NOT_SUPPORTED');
    expect(await cli('show', '05:00.4')).toBe(EXIT.ok);
    expect(out).toContain('vGPU profile:    1156; creatable now: 1155 (NVIDIA L40S-1B), 1156 (NVIDIA L40S-2B), 1161 (NVIDIA L40S-48Q)\n');
    expect(await cli('vgpu', '05:00.4', '--clear', '--owner', 'vm1')).toBe(EXIT.ok);
    expect(host.read(VGPU_VF, 'nvidia/current_vgpu_type')).toBe('0');
    expect(await cli('show', '01:00.1')).toBe(EXIT.ok);
    expect(out).not.toContain('vGPU');
  });

  it('sriov creates and prepares VFs, refuses while they are claimed, and --vfs 0 removes them after release', async () => {
    expect(await cli('sriov', NEW_PF, '--vfs', '2', '--owner', 'vm1')).toBe(EXIT.ok);
    expect(out).toContain(`created 2 VF(s) on ${NEW_PF}, prepared for vm1:\n  0000:09:00.1: ${host.groupDevPath(21)}\n  0000:09:00.2: ${host.groupDevPath(22)}`);
    expect(host.driverOf('0000:09:00.2')).toBe('vfio-pci');
    expect(await cli('sriov', NEW_PF, '--vfs', '0')).toBe(EXIT.failed);
    expect(err).toContain('0000:09:00.1 is claimed by vm1');
    expect(await cli('release', '0000:09:00.1', '--owner', 'vm1')).toBe(EXIT.ok);
    expect(await cli('release', '0000:09:00.2', '--owner', 'vm1')).toBe(EXIT.ok);
    expect(out).toContain(`sriov_drivers_autoprobe restored on ${NEW_PF}`);
    expect(await cli('sriov', NEW_PF, '--vfs', '0')).toBe(EXIT.ok);
    expect(out).toBe(`removed the VFs of ${NEW_PF}: 0000:09:00.1, 0000:09:00.2\n`);
    expect(await cli('sriov', NEW_PF, '--vfs', 'many', '--owner', 'vm1')).toBe(EXIT.usage);
    expect(await cli('sriov', NEW_PF, '--vfs', '9', '--owner', 'vm1')).toBe(EXIT.usage);
    expect(err).toContain('supports 1..4 VFs, not 9');
  });

  it('list --numa selects devices by NUMA node (-1: none)', async () => {
    expect(await cli('list', '--numa', '1', '--json')).toBe(EXIT.ok);
    expect((JSON.parse(out) as Array<{ bdf: string }>).map((d) => d.bdf)).toEqual([NEW_PF]);
    expect(await cli('list', '--numa', '0', '--json')).toBe(EXIT.ok);
    expect((JSON.parse(out) as Array<{ bdf: string }>).map((d) => d.bdf)).toEqual(['0000:01:00.0']);
    expect(await cli('list', '--numa=-1', '--json')).toBe(EXIT.ok);
    expect((JSON.parse(out) as Array<{ bdf: string }>)).toHaveLength(14);
    expect(await cli('list', '--numa', 'near')).toBe(EXIT.usage);
  });
});

describe('DeviceService and vfiod devices through the daemon', () => {
  let dir: string;
  let daemon: Daemon;
  let client: VfiodClient;
  beforeEach(async () => {
    dir = temporaryDir('vfiod-daemon-');
    daemon = await startDaemon({
      socketPath: path.join(dir, 'vfiod.sock'), stateDir: path.join(dir, 'state'), roots: host.roots, writer: host.writer, prober: host.prober,
      pollMs: 5, vfioTimeoutMs: 500, logger: memoryLogger().logger,
    });
    client = new VfiodClient({ address: daemon.socketPath! });
  });
  afterEach(async () => {
    client.close();
    await daemon.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const devices = <M extends RpcName<'DeviceService'>>(rpc: M, request: RequestOf<'DeviceService', M>) => client.call('DeviceService', rpc, request);
  const viaDaemon = (...args: string[]): Promise<number> => {
    out = '';
    err = '';
    return runDevicesViaDaemon([...args, '--daemon', daemon.socketPath!], io);
  };

  it('ListVgpuTypes, SetVgpuType and ClearVgpuType, with the precise status of each refusal', async () => {
    expect(await devices('ListVgpuTypes', { bdf: VGPU_VF })).toEqual({
      bdf: VGPU_VF, currentType: 0, creatable: [{ id: 1155, name: 'NVIDIA L40S-1B' }, { id: 1156, name: 'NVIDIA L40S-2B' }, { id: 1161, name: 'NVIDIA L40S-48Q' }],
    });
    expect(await devices('SetVgpuType', { bdf: VGPU_VF, owner: 'vm1', typeId: 1161 })).toEqual({ bdf: VGPU_VF, owner: 'vm1', previousType: 0, currentType: 1161, changed: true, claimed: true });
    expect((await devices('ListVgpuTypes', { bdf: VGPU_VF }))['owner']).toBe('vm1');
    const other = await expectStatus(devices('ClearVgpuType', { bdf: VGPU_VF, owner: 'vm2' }), 'FAILED_PRECONDITION', 'claimed by vm1');
    expect(other.reason).toBe('DEVICE_CLAIMED_BY_OTHER_VM');
    host.holdOpen(7300, 'qemu-system-x86', `${host.roots.dev}/vfio/devices/vfio0`);
    const attached = await expectStatus(devices('ClearVgpuType', { bdf: VGPU_VF, owner: 'vm1' }), 'FAILED_PRECONDITION', 'is attached');
    expect(attached.reason).toBe('DEVICE_ATTACHED');
    expect(attached.metadata).toMatchObject({ bdf: VGPU_VF, holder_pid: '7300' });
    host.exitProcess(7300);
    expect((await expectStatus(devices('SetVgpuType', { bdf: VGPU_VF, owner: 'vm1' }), 'INVALID_ARGUMENT', 'type_id')).reason).toBe('FIELD_REQUIRED');
    expect((await expectStatus(devices('ListVgpuTypes', { bdf: 'nonsense' }), 'INVALID_ARGUMENT')).reason).toBe('PCI_ADDRESS_INVALID');
    expect(await viaDaemon('vgpu', VGPU_VF, '--clear', '--owner', 'vm1')).toBe(0);
    expect(out).toBe('0000:05:00.4: vGPU profile 1161 -> none for vm1\n');
    expect(await viaDaemon('vgpu', VGPU_VF)).toBe(0);
    expect(out).toContain('0000:05:00.4: vGPU profile none (claimed by vm1)');
    const info = await devices('GetDevice', { bdf: VGPU_VF });
    expect(info['device']!.vgpu).toEqual({ currentType: 0, creatable: expect.arrayContaining([{ id: 1161, name: 'NVIDIA L40S-48Q' }]) });
    expect((await devices('GetDevice', { bdf: '0000:01:00.1' }))['device']!.vgpu).toBeNull();
    expect(await viaDaemon('show', VGPU_VF)).toBe(0);
    expect(out).toContain('vGPU profile:    none; creatable now: 1155 (NVIDIA L40S-1B)');
  });

  it('GetVmConfig and vfiod vm-config size the 64-bit window from the BARs and place devices per NUMA node', async () => {
    host.addDevice({ bdf: '0000:0a:00.0', vendor: '10de', device: '26b9', classCode: '030200', driver: 'vfio-pci', group: 40, numa: 1, bars: [[1, 64 * 2 ** 30, 0x14220c]] });
    const request = {
      hypervisor: 'HYPERVISOR_KIND_QEMU' as const,
      devices: [{ source: { pciBdf: '0000:0a:00.0' }, deviceId: 'gpu0' }, { source: { pciBdf: '0000:01:00.0' }, deviceId: 'nvme0' }],
      numaPlacement: true,
    };
    const r = await client.call('AttachmentService', 'GetVmConfig', request);
    expect(r['qemu']!.args).toEqual([
      '-device', 'pxb-pcie,id=vfiod-pxb0,bus_nr=128,numa_node=0,bus=pcie.0',
      '-device', 'pxb-pcie,id=vfiod-pxb1,bus_nr=130,numa_node=1,bus=pcie.0',
      '-device', 'pcie-root-port,id=vfiod-rp0,chassis=32,slot=0,bus=vfiod-pxb1,pref64-reserve=64G',
      '-device', 'vfio-pci,host=0000:0a:00.0,id=gpu0,bus=vfiod-rp0',
      '-device', 'pcie-root-port,id=vfiod-rp1,chassis=33,slot=1,bus=vfiod-pxb0',
      '-device', 'vfio-pci,host=0000:01:00.0,id=nvme0,bus=vfiod-rp1',
      '-fw_cfg', 'name=opt/ovmf/X-PciMmio64Mb,string=131072',
    ]);
    expect(r['pciWindow']).toEqual({ aperture64Bytes: 64 * 2 ** 30, windows: { gpu0: 64 * 2 ** 30 }, ovmfMmio64Mb: 131072 });
    expect(r['warnings'][0]).toContain('span host NUMA nodes 0, 1');
    out = '';
    err = '';
    const code = await runVmConfig(['--hypervisor', 'cloud-hypervisor', '--bdf', '0a:00.0', '--bdf', '01:00.0', '--numa-placement', '--daemon', daemon.socketPath!], io);
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(out).toContain('"pci_segments": [{"pci_segment":1,"mmio64_aperture_weight":1},{"pci_segment":2,"mmio64_aperture_weight":64}]');
    expect(out).toContain('"platform": {"num_pci_segments": 3}');
    expect(out).toContain('# merge into "numa": [{"guest_numa_id":0,"pci_segments":[1]},{"guest_numa_id":1,"pci_segments":[2]}]');
    expect(out).toContain('# warning: large BARs: the devices need 64G of 64-bit PCI aperture');
  });

  it('CreateVfs creates and prepares VFs, rolls back on failure, and ListDevices filters by numa_node', async () => {
    host.probeOverrides.set('0000:09:00.3', new Error('VFIO_DEVICE_GET_INFO: EIO'));
    const failed = await expectStatus(devices('CreateVfs', { pf: NEW_PF, owner: 'vm1', numVfs: 3 }), 'INTERNAL', 'rolled back');
    expect(failed.reason).toBe('VFIO_PROBE_FAILED');
    expect(host.read(NEW_PF, 'sriov_numvfs')).toBe('0');
    expect(host.read(NEW_PF, 'sriov_drivers_autoprobe')).toBe('1');
    host.probeOverrides.clear();
    const created = await devices('CreateVfs', { pf: NEW_PF, owner: 'vm1', numVfs: 2 });
    expect(created).toMatchObject({ pf: NEW_PF, owner: 'vm1', numVfs: 2, replaced: [], autoprobeTurnedOff: true });
    expect(created['vfs'].map((v: { bdf: string; devices: Array<{ mode: string }> }) => [v.bdf, v.devices[0]!.mode])).toEqual([
      ['0000:09:00.1', 'CLAIM_MODE_VFIO_PCI'],
      ['0000:09:00.2', 'CLAIM_MODE_VFIO_PCI'],
    ]);
    const onNode1 = await devices('ListDevices', { numaNode: 1 });
    expect(onNode1['devices'].map((d: { bdf: string; numaNode?: number }) => [d.bdf, d.numaNode])).toEqual([[NEW_PF, 1], ['0000:09:00.1', 1], ['0000:09:00.2', 1]]);
    expect((await expectStatus(devices('CreateVfs', { pf: NEW_PF, numVfs: 0 }), 'FAILED_PRECONDITION', 'is claimed by vm1')).reason).toBe('SRIOV_VFS_IN_USE');
    expect((await expectStatus(devices('CreateVfs', { pf: '0000:06:00.0', owner: 'vm1', numVfs: 1 }), 'FAILED_PRECONDITION')).reason).toBe('SRIOV_NOT_SUPPORTED');
    expect((await expectStatus(devices('CreateVfs', { pf: NEW_PF, numVfs: 1 }), 'INVALID_ARGUMENT', 'owner')).reason).toBe('FIELD_REQUIRED');
    expect(await viaDaemon('release', '0000:09:00.1', '--owner', 'vm1')).toBe(0);
    expect(await viaDaemon('release', '0000:09:00.2', '--owner', 'vm1')).toBe(0);
    expect(await viaDaemon('sriov', NEW_PF, '--vfs', '0')).toBe(0);
    expect(out).toBe(`removed the VFs of ${NEW_PF}: 0000:09:00.1, 0000:09:00.2\n`);
  });
});
