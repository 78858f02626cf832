import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClaimStore } from '../../../src/devices/claims.js';
import { readDevice } from '../../../src/devices/discovery.js';
import { DeviceError, DeviceManager } from '../../../src/devices/manager.js';
import { parseCreatableVgpuTypes } from '../../../src/devices/vgpu.js';
import { type FakeHost, standardHost } from '../../helpers/fake-sysfs.js';

let host: FakeHost;
let claims: ClaimStore;
let manager: DeviceManager;

beforeEach(() => {
  host = standardHost();
  claims = new ClaimStore(path.join(host.root, 'state/claims.db'));
  manager = new DeviceManager({ roots: host.roots, writer: host.writer, prober: host.prober, claims, vfioTimeoutMs: 500, pollMs: 5 });
});
afterEach(() => {
  claims.close();
  host.cleanup();
});

function refusal(run: () => unknown): DeviceError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(DeviceError);
    return error as DeviceError;
  }
  throw new Error('expected a DeviceError');
}

async function asyncRefusal(p: Promise<unknown>): Promise<DeviceError> {
  const e = await p.then(() => undefined, (error: unknown) => error);
  expect(e).toBeInstanceOf(DeviceError);
  return e as DeviceError;
}

const GPU_PF = '0000:05:00.0';
const VGPU_VF = '0000:05:00.4';
const vgpuFile = (): string => host.read(VGPU_VF, 'nvidia/current_vgpu_type');
const writeLog = (): string[] => host.writes.map(([f, v]) => `${path.basename(path.dirname(f)) === 'nvidia' ? 'nvidia/' : ''}${path.basename(f)}=${v.trim()}`);

describe('NVIDIA vGPU profiles', () => {
  it('the fake VF has the driver\'s layout: nvidia/ files on the VF, on nvidia, a VFIO cdev and group, no mdev', () => {
    const vf = host.devDir(VGPU_VF);
    expect(readdirSync(path.join(vf, 'nvidia')).sort()).toEqual(['creatable_vgpu_types', 'current_vgpu_type']);
    expect(host.driverOf(VGPU_VF)).toBe('nvidia');
    expect(existsSync(path.join(vf, 'vfio-dev/vfio0'))).toBe(true);
    expect(existsSync(host.groupDevPath(8))).toBe(true);
    expect(readdirSync(path.join(host.roots.sysfs, 'class/mdev_bus'))).toEqual([]);
    expect(existsSync(path.join(host.devDir(GPU_PF), 'mdev_supported_types'))).toBe(false);
    expect(readDevice(host.roots, VGPU_VF)?.vfio.state).toBe('vendor-vfio');
    // unbind nvidia + bind vfio-pci fails with EINVAL, as on the real driver
    host.writer.write(path.join(vf, 'driver/unbind'), VGPU_VF);
    expect(() => host.writer.write(path.join(host.roots.sysfs, 'bus/pci/drivers/vfio-pci/bind'), VGPU_VF)).toThrow(/EINVAL/);
    expect(host.driverOf(VGPU_VF)).toBeNull();
  });

  it('parses creatable_vgpu_types (header skipped) and lists the VF\'s profiles', () => {
    expect(parseCreatableVgpuTypes('ID    : vGPU Name\n1155  : NVIDIA L40S-1B\ngarbage\n 1161 : NVIDIA L40S-48Q \n')).toEqual([
      { id: 1155, name: 'NVIDIA L40S-1B' },
      { id: 1161, name: 'NVIDIA L40S-48Q' },
    ]);
    expect(manager.vgpuTypes(VGPU_VF)).toEqual({
      bdf: VGPU_VF,
      current: 0,
      owner: null,
      creatable: [{ id: 1155, name: 'NVIDIA L40S-1B' }, { id: 1156, name: 'NVIDIA L40S-2B' }, { id: 1161, name: 'NVIDIA L40S-48Q' }],
    });
  });

  it('sets a profile with a claim, switches it (clear first), clears it, and release gives back the original', async () => {
    expect(manager.setVgpuType(VGPU_VF, 'vm1', 1156)).toEqual({ bdf: VGPU_VF, owner: 'vm1', previous: 0, current: 1156, changed: true, claimed: true });
    expect(vgpuFile()).toBe('1156');
    expect(claims.get(VGPU_VF)).toMatchObject({ owner: 'vm1', mode: 'as-is', state: 'prepared', originalDriver: 'nvidia', originalVgpuType: 0 });
    expect(manager.setVgpuType(VGPU_VF, 'vm1', 1156).changed).toBe(false);
    expect(manager.setVgpuType(VGPU_VF, 'vm1', 1155)).toMatchObject({ previous: 1156, current: 1155, changed: true, claimed: false });
    expect(writeLog()).toEqual(['nvidia/current_vgpu_type=1156', 'nvidia/current_vgpu_type=0', 'nvidia/current_vgpu_type=1155']);
    // A prepare for the same VM finds the claim and leaves the VF as it is.
    expect((await manager.prepare(VGPU_VF, 'vm1')).changed).toBe(false);
    expect(manager.clearVgpuType(VGPU_VF, 'vm1')).toMatchObject({ previous: 1155, current: 0, changed: true });
    expect(vgpuFile()).toBe('0');
    manager.setVgpuType(VGPU_VF, 'vm1', 1161);
    expect(manager.vgpuTypes(VGPU_VF)).toMatchObject({ current: 1161, owner: 'vm1' });
    await manager.release(VGPU_VF, 'vm1');
    expect(vgpuFile()).toBe('0');
    expect(host.driverOf(VGPU_VF)).toBe('nvidia');
    expect(claims.get(VGPU_VF)).toBeUndefined();
  });

  it('refuses what the VF cannot take, another VM\'s VF and a device without vGPU, writing nothing', async () => {
    const notCreatable = refusal(() => manager.setVgpuType(VGPU_VF, 'vm1', 999));
    expect(notCreatable).toMatchObject({ code: 'FAILED_PRECONDITION', reason: 'VGPU_TYPE_NOT_CREATABLE' });
    expect(notCreatable.details.creatable).toEqual(['1155 (NVIDIA L40S-1B)', '1156 (NVIDIA L40S-2B)', '1161 (NVIDIA L40S-48Q)']);
    await manager.prepare(VGPU_VF, 'vm2');
    expect(refusal(() => manager.setVgpuType(VGPU_VF, 'vm1', 1155))).toMatchObject({ reason: 'DEVICE_CLAIMED_BY_OTHER_VM', details: { owner: 'vm2' } });
    expect(refusal(() => manager.setVgpuType('0000:01:00.1', 'vm1', 1155))).toMatchObject({ reason: 'VGPU_NOT_SUPPORTED', details: { bdf: '0000:01:00.1' } });
    expect(refusal(() => manager.vgpuTypes('0000:0f:00.0'))).toMatchObject({ code: 'NOT_FOUND', reason: 'DEVICE_NOT_FOUND' });
    expect(host.writes).toEqual([]);
    expect(vgpuFile()).toBe('0');
  });

  it('refuses a change while the VF is attached: a VMM holds it, or an attachment record names it', () => {
    manager.setVgpuType(VGPU_VF, 'vm1', 1155);
    host.holdOpen(7100, 'qemu-system-x86', `${host.roots.dev}/vfio/devices/vfio0`);
    const held = refusal(() => manager.clearVgpuType(VGPU_VF, 'vm1'));
    expect(held).toMatchObject({ code: 'FAILED_PRECONDITION', reason: 'DEVICE_ATTACHED', details: { holderPid: [7100], holderComm: ['qemu-system-x86'] } });
    expect(held.message).toContain('pid 7100 (qemu-system-x86)');
    host.exitProcess(7100);
    claims.putAttachment('vm1', 'gpu0', { functions: [{ hostBdf: VGPU_VF, vmmDeviceId: 'gpu0' }] });
    expect(refusal(() => manager.setVgpuType(VGPU_VF, 'vm1', 1156))).toMatchObject({ reason: 'DEVICE_ATTACHED', details: { attachedTo: ['vm1'] } });
    expect(vgpuFile()).toBe('1155');
    claims.removeAttachment('vm1', 'gpu0');
    expect(manager.clearVgpuType(VGPU_VF, 'vm1').current).toBe(0);
  });

  it('rolls back when the driver refuses the write or reads back another profile', () => {
    host.beforeWrite = (file, value) => {
      if (file.endsWith('current_vgpu_type') && value.trim() === '1156') throw new Error('EIO: write error');
    };
    const refused = refusal(() => manager.setVgpuType(VGPU_VF, 'vm1', 1156));
    expect(refused).toMatchObject({ code: 'INTERNAL', reason: 'VGPU_TYPE_NOT_APPLIED', details: { vgpuType: 1156, current: 0, rolledBack: [] } });
    expect(claims.get(VGPU_VF)).toBeUndefined();

    host.beforeWrite = undefined;
    host.afterWrite = (file, value) => {
      if (file.endsWith('current_vgpu_type') && value.trim() === '1161') writeFileSync(path.join(host.devDir(VGPU_VF), 'nvidia/current_vgpu_type'), '1155\n');
    };
    const mismatch = refusal(() => manager.setVgpuType(VGPU_VF, 'vm1', 1161));
    expect(mismatch).toMatchObject({ reason: 'VGPU_TYPE_NOT_APPLIED', details: { vgpuType: 1161, current: 1155 } });
    expect(mismatch.details.rolledBack).toEqual([`current_vgpu_type back to 0 on ${VGPU_VF}`]);
    expect(vgpuFile()).toBe('0');
    expect(claims.get(VGPU_VF)).toBeUndefined();
  });

  it('reconcile gives an interrupted change\'s VF its original profile back', () => {
    writeFileSync(path.join(host.devDir(VGPU_VF), 'nvidia/current_vgpu_type'), '1156\n');
    claims.insert([{ bdf: VGPU_VF, owner: 'vm1', primary: VGPU_VF, mode: 'as-is', state: 'preparing', originalDriver: 'nvidia', originalOverride: null, iommuGroup: 8, autoprobePf: null, note: null, originalVgpuType: 0 }]);
    expect(manager.reconcile().find((e) => e.bdf === VGPU_VF)).toMatchObject({ action: 'repaired' });
    expect(vgpuFile()).toBe('0');
    expect(claims.get(VGPU_VF)).toBeUndefined();
  });
});

const NEW_PF = '0000:09:00.0';
const addPf = (): void => {
  host.addDevice({ bdf: NEW_PF, vendor: '8086', device: '0a54', classCode: '010802', driver: 'nvme', group: 20, numa: 1, sriov: { total: 4, num: 0, autoprobe: true, vfDevice: '0a55' }, bars: [[0, 0x4000]] });
};
const numVfsFile = (): string => path.join(host.devDir(NEW_PF), 'sriov_numvfs');

describe('SR-IOV: the fake kernel', () => {
  it('creates VFs at PF + offset + i*stride like the kernel, each in its own group, and refuses what the kernel refuses', () => {
    addPf();
    host.writer.write(numVfsFile(), '2');
    const pf = readDevice(host.roots, NEW_PF)!;
    expect(pf.virtfns).toEqual(['0000:09:00.1', '0000:09:00.2']);
    const vf = readDevice(host.roots, '0000:09:00.2')!;
    expect(vf).toMatchObject({ physfn: NEW_PF, device: '0a55', driver: 'nvme', numaNode: 1, kind: 'nvme' });
    expect(vf.iommuGroup).not.toBe(readDevice(host.roots, '0000:09:00.1')!.iommuGroup);
    expect(() => host.writer.write(numVfsFile(), '3')).toThrow(/EBUSY/);
    expect(() => host.writer.write(numVfsFile(), '5')).toThrow(/ERANGE/);
    host.writer.write(numVfsFile(), '0');
    expect(readDevice(host.roots, NEW_PF)!.virtfns).toEqual([]);
    expect(existsSync(host.devDir('0000:09:00.1'))).toBe(false);
    host.writer.write(path.join(host.devDir(NEW_PF), 'sriov_drivers_autoprobe'), '0');
    host.writer.write(numVfsFile(), '1');
    expect(host.driverOf('0000:09:00.1')).toBeNull();
  });
});

describe('SR-IOV: creating VFs', () => {
  it('creates VFs with autoprobe off, prepares and claims each, and the last release turns autoprobe back on', async () => {
    addPf();
    const result = await manager.createVfs(NEW_PF, 'vm1', 2);
    expect(result).toMatchObject({ pf: NEW_PF, numVfs: 2, replaced: [], autoprobeTurnedOff: true });
    expect(result.vfs.map((v) => [v.bdf, v.changed])).toEqual([['0000:09:00.1', true], ['0000:09:00.2', true]]);
    expect(writeLog().slice(0, 2)).toEqual(['sriov_drivers_autoprobe=0', 'sriov_numvfs=2']);
    for (const vf of ['0000:09:00.1', '0000:09:00.2']) {
      expect(host.driverOf(vf)).toBe('vfio-pci');
      expect(claims.get(vf)).toMatchObject({ owner: 'vm1', state: 'prepared', originalDriver: null, autoprobePf: NEW_PF });
    }
    expect((await manager.release('0000:09:00.1', 'vm1')).autoprobeRestored).toEqual([]);
    expect((await manager.release('0000:09:00.2', 'vm1')).autoprobeRestored).toEqual([NEW_PF]);
    expect(host.driverOf('0000:09:00.2')).toBeNull();
    expect(manager.removeVfs(NEW_PF)).toEqual({ pf: NEW_PF, removed: ['0000:09:00.1', '0000:09:00.2'], autoprobeRestored: false });
    expect(host.read(NEW_PF, 'sriov_numvfs')).toBe('0');
  });

  it('replaces VFs nobody uses (through 0, as the kernel requires)', async () => {
    const result = await manager.createVfs('0000:01:00.0', 'vm1', 2);
    expect(result.replaced).toEqual(['0000:01:00.1', '0000:01:00.2', '0000:01:00.3']);
    expect(writeLog().slice(0, 3)).toEqual(['sriov_numvfs=0', 'sriov_drivers_autoprobe=0', 'sriov_numvfs=2']);
    expect(readDevice(host.roots, '0000:01:00.0')!.virtfns).toEqual(['0000:01:00.1', '0000:01:00.2']);
  });

  it('refuses while a VF is claimed, held by a VMM or in use on the host, and a PF without SR-IOV, writing nothing', async () => {
    await manager.prepare('0000:01:00.3', 'vm2');
    host.writes.length = 0;
    const claimed = await asyncRefusal(manager.createVfs('0000:01:00.0', 'vm1', 2));
    expect(claimed).toMatchObject({ code: 'FAILED_PRECONDITION', reason: 'SRIOV_VFS_IN_USE' });
    expect(claimed.details.inUse).toEqual(['0000:01:00.3 is claimed by vm2']);
    expect(refusal(() => manager.removeVfs('0000:01:00.0'))).toMatchObject({ reason: 'SRIOV_VFS_IN_USE' });
    await manager.release('0000:01:00.3', 'vm2');
    host.writes.length = 0;
    host.holdOpen(7200, 'cloud-hypervisor', host.groupDevPath(3));
    host.mount('259:30', '/srv');
    const busy = await asyncRefusal(manager.createVfs('0000:01:00.0', 'vm1', 1));
    expect(busy.details.inUse).toEqual(['0000:01:00.1 is held by pid 7200 (cloud-hypervisor)', expect.stringContaining('0000:01:00.1: /dev/nvme3n1 is mounted on /srv')]);
    host.exitProcess(7200);
    host.writes.length = 0;
    await manager.prepare('0000:05:00.0', 'vm3', { force: true });
    const pfClaimed = await asyncRefusal(manager.createVfs('0000:05:00.0', 'vm1', 1));
    expect(pfClaimed.details.inUse).toEqual(['the PF 0000:05:00.0 itself is claimed by vm3']);
    await manager.release('0000:05:00.0', 'vm3');
    host.writes.length = 0;
    expect(await asyncRefusal(manager.createVfs('0000:06:00.0', 'vm1', 1))).toMatchObject({ reason: 'SRIOV_NOT_SUPPORTED' });
    expect(await asyncRefusal(manager.createVfs('0000:01:00.0', 'vm1', 9))).toMatchObject({ code: 'INVALID_ARGUMENT', reason: 'FIELD_OUT_OF_RANGE', details: { max: 8 } });
    expect(host.writes).toEqual([]);
  });

  it('rolls back everything when a VF fails to prepare: VFs released, sriov_numvfs 0, autoprobe on, no claims', async () => {
    addPf();
    host.probeOverrides.set('0000:09:00.2', new Error('VFIO_DEVICE_GET_INFO: EIO'));
    const failed = await asyncRefusal(manager.createVfs(NEW_PF, 'vm1', 2));
    expect(failed).toMatchObject({ reason: 'VFIO_PROBE_FAILED' });
    expect(failed.details.rolledBack).toEqual(['release 0000:09:00.1', `sriov_numvfs back to 0 on ${NEW_PF}`, `sriov_drivers_autoprobe back to 1 on ${NEW_PF}`]);
    expect(host.read(NEW_PF, 'sriov_numvfs')).toBe('0');
    expect(host.read(NEW_PF, 'sriov_drivers_autoprobe')).toBe('1');
    expect(existsSync(host.devDir('0000:09:00.1'))).toBe(false);
    expect(claims.list()).toEqual([]);
  });

  it('restores replaced VFs on their host driver when the new ones fail', async () => {
    host.probeOverrides.set('0000:01:00.1', new Error('no'));
    await asyncRefusal(manager.createVfs('0000:01:00.0', 'vm1', 1));
    expect(readDevice(host.roots, '0000:01:00.0')!.virtfns).toEqual(['0000:01:00.1', '0000:01:00.2', '0000:01:00.3']);
    expect(host.driverOf('0000:01:00.1')).toBe('nvme');
    expect(host.read('0000:01:00.0', 'sriov_drivers_autoprobe')).toBe('1');
  });
});
