import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClaimStore } from '../../../src/devices/claims.js';
import { DeviceError, DeviceManager } from '../../../src/devices/manager.js';
import { type FakeHost, standardHost } from '../../helpers/fake-sysfs.js';
import { sleep } from '../../helpers/common.js';

let host: FakeHost;
let claims: ClaimStore;
let manager: DeviceManager;
const dbPath = () => path.join(host.root, 'state/claims.db');

beforeEach(() => {
  host = standardHost();
  claims = new ClaimStore(dbPath());
  manager = new DeviceManager({ roots: host.roots, writer: host.writer, prober: host.prober, claims, vfioTimeoutMs: 200, pollMs: 5 });
});
afterEach(() => {
  claims.close();
  host.cleanup();
});

async function refusal(p: Promise<unknown>): Promise<DeviceError> {
  const e = await p.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(e).toBeInstanceOf(DeviceError);
  return e as DeviceError;
}

const PF = '0000:01:00.0';
const VF1 = '0000:01:00.1';
const VF2 = '0000:01:00.2';
const VF3 = '0000:01:00.3';

describe('prepare and release', () => {
  it('prepares an NVMe VF with driver_override + unbind + drivers_probe and releases it exactly', async () => {
    const result = await manager.prepare(VF1, 'vm1');
    expect(result).toMatchObject({ changed: true, iommuGroup: 3, vfioGroupDev: host.groupDevPath(3), overridden: [] });
    expect(result.probe?.regions).toHaveLength(1);
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    expect(host.overrideOf(VF1)).toBe('vfio-pci');
    expect(host.read(PF, 'sriov_drivers_autoprobe')).toBe('0');
    expect(host.writes.map(([f, v]) => `${f}=${v}`)).toEqual([
      `sys/devices/pci0000:00/${PF}/sriov_drivers_autoprobe=0`,
      `sys/bus/pci/devices/${VF1}/driver_override=vfio-pci`,
      `sys/bus/pci/devices/${VF1}/driver/unbind=${VF1}`,
      `sys/bus/pci/drivers_probe=${VF1}`,
    ].map((s) => s.replace(`sys/devices/pci0000:00/${PF}`, `sys/bus/pci/devices/${PF}`)));
    expect(host.writes.some(([f]) => f.endsWith('new_id'))).toBe(false);
    expect(claims.get(VF1)).toMatchObject({ owner: 'vm1', state: 'prepared', mode: 'vfio-pci', originalDriver: 'nvme', originalOverride: null, autoprobePf: PF });

    const again = await manager.prepare(VF1, 'vm1');
    expect(again.changed).toBe(false);

    const released = await manager.release(VF1, 'vm1');
    expect(released.devices).toEqual([{ bdf: VF1, restoredDriver: 'nvme', restoredOverride: null, gone: false }]);
    expect(released.autoprobeRestored).toEqual([PF]);
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(host.overrideOf(VF1)).toBeNull();
    expect(host.read(PF, 'sriov_drivers_autoprobe')).toBe('1');
    expect(claims.get(VF1)).toBeUndefined();
  });

  it('keeps autoprobe off until the last VF of the PF is released, and restores an unbound VF to no driver', async () => {
    await manager.prepare(VF1, 'vm1');
    await manager.prepare(VF2, 'vm2');
    expect(claims.get(VF2)).toMatchObject({ originalDriver: null });
    expect((await manager.release(VF1, 'vm1')).autoprobeRestored).toEqual([]);
    expect(host.read(PF, 'sriov_drivers_autoprobe')).toBe('0');
    expect((await manager.release(VF2, 'vm2')).autoprobeRestored).toEqual([PF]);
    expect(host.driverOf(VF2)).toBeNull();
    expect(host.read(PF, 'sriov_drivers_autoprobe')).toBe('1');
  });

  it('restores a pre-existing driver_override exactly', async () => {
    host.writer.write(path.join(host.devDir(VF3), 'driver_override'), 'nvme');
    host.writes.length = 0;
    await manager.prepare(VF3, 'vm1');
    await manager.release(VF3, 'vm1');
    expect(host.driverOf(VF3)).toBe('nvme');
    expect(host.overrideOf(VF3)).toBe('nvme');
  });

  it('prepares a GPU together with its HDMI audio function and releases both', async () => {
    const result = await manager.prepare('0000:02:00.0', 'vm1');
    expect(result.devices.map((d) => [d.bdf, d.companion, d.originalDriver])).toEqual([
      ['0000:02:00.0', false, 'amdgpu'],
      ['0000:02:00.1', true, 'snd_hda_intel'],
    ]);
    expect(result.warnings.join()).toContain('DRM device card0');
    expect(host.driverOf('0000:02:00.1')).toBe('vfio-pci');
    expect(host.probed).toEqual(['0000:02:00.0', '0000:02:00.1']);
    await manager.release('0000:02:00.0', 'vm1');
    expect(host.driverOf('0000:02:00.0')).toBe('amdgpu');
    expect(host.driverOf('0000:02:00.1')).toBe('snd_hda_intel');
    expect(claims.list()).toEqual([]);
  });

  it('supports several GPUs for one VM (each prepared on its own)', async () => {
    await manager.prepare('0000:02:00.0', 'vm1');
    await manager.prepare('0000:05:00.4', 'vm1');
    expect(claims.list().map((c) => c.bdf)).toEqual(['0000:02:00.0', '0000:02:00.1', '0000:05:00.4']);
  });

  it('leaves a VF on a vendor VFIO driver as it is', async () => {
    const result = await manager.prepare('0000:05:00.4', 'vm1');
    expect(result.devices).toEqual([expect.objectContaining({ mode: 'as-is', originalDriver: 'nvidia' })]);
    expect(result.vfioCdev).toBe(`${host.roots.dev}/vfio/devices/vfio0`);
    expect(host.writes).toEqual([]);
    expect(host.driverOf('0000:05:00.4')).toBe('nvidia');
    await manager.release('0000:05:00.4', 'vm1');
    expect(host.writes).toEqual([]);
    expect(claims.list()).toEqual([]);
  });
});

describe('refusals', () => {
  it('refuses unknown devices, bridges and devices without an IOMMU group', async () => {
    expect((await refusal(manager.prepare('0000:99:00.0', 'vm1'))).code).toBe('NOT_FOUND');
    expect((await refusal(manager.prepare('0000:03:00.0', 'vm1'))).message).toContain('bridge');
    expect((await refusal(manager.prepare('0000:08:00.0', 'vm1'))).message).toContain('no IOMMU group');
    expect((await refusal(manager.prepare(VF1, ''))).code).toBe('INVALID_ARGUMENT');
    expect(host.writes).toEqual([]);
  });

  it('refuses a device claimed by another VM', async () => {
    await manager.prepare(VF1, 'vm1');
    const e = await refusal(manager.prepare(VF1, 'vm2'));
    expect(e.code).toBe('ALREADY_EXISTS');
    expect(e.message).toContain('claimed by vm1');
  });

  it('refuses an NVMe whose namespace is mounted or used as swap, and says what --force overrode', async () => {
    const e = await refusal(manager.prepare('0000:06:00.0', 'vm1'));
    expect(e.code).toBe('FAILED_PRECONDITION');
    expect(e.message).toContain('/dev/nvme0n1p2 is mounted on /');
    expect(e.message).toContain('/dev/nvme0n1p3 is used as swap');
    expect(host.writes).toEqual([]);
    expect(claims.list()).toEqual([]);
    const forced = await manager.prepare('0000:06:00.0', 'vm1', { force: true });
    expect(forced.overridden).toEqual(['0000:06:00.0: /dev/nvme0n1p2 is mounted on /', '0000:06:00.0: /dev/nvme0n1p3 is used as swap']);
    expect(claims.get('0000:06:00.0')?.note).toContain('forced over');
  });

  it('refuses an NVMe whose namespace a process holds open, naming the process', async () => {
    host.holdOpen(5150, 'postgres', `${host.roots.dev}/nvme3n1`);
    const e = await refusal(manager.prepare('0000:01:00.1', 'vm1'));
    expect(e.code).toBe('FAILED_PRECONDITION');
    expect(e.message).toContain('/dev/nvme3n1 is open by pid 5150 (postgres)');
    expect(host.writes).toEqual([]);
    host.exitProcess(5150);
    expect((await manager.prepare('0000:01:00.1', 'vm1')).bdf).toBe('0000:01:00.1');
  });

  it('refuses an NVMe held by device-mapper', async () => {
    expect((await refusal(manager.prepare('0000:07:00.0', 'vm1'))).message).toContain('held by dm-0');
  });

  it('refuses a non-viable group unless whole-group; never binds the bridge', async () => {
    const e = await refusal(manager.prepare('0000:04:00.1', 'vm1'));
    expect(e.message).toContain('0000:04:00.0 (network, on mlx5_core)');
    expect(e.message).toContain('--whole-group');
    // whole group: 04:00.0 has an interface up, so it still needs --force
    expect((await refusal(manager.prepare('0000:04:00.1', 'vm1', { wholeGroup: true }))).message).toContain('enp4s0f0 is up');
    const result = await manager.prepare('0000:04:00.1', 'vm1', { wholeGroup: true, force: true });
    expect(result.devices.map((d) => d.bdf)).toEqual(['0000:04:00.1', '0000:04:00.0']);
    expect(host.driverOf('0000:03:00.0')).toBe('pcieport');
    expect(host.writes.some(([f, v]) => f.includes('0000:03:00.0') || v === '0000:03:00.0')).toBe(false);
    await manager.release('0000:04:00.1', 'vm1');
    expect(host.driverOf('0000:04:00.0')).toBe('mlx5_core');
    expect(host.driverOf('0000:04:00.1')).toBe('mlx5_core');
  });

  it('refuses when a group member belongs to another VM or the group is open in a VMM', async () => {
    claims.insert([{ bdf: '0000:02:00.1', owner: 'vm2', primary: '0000:02:00.1', mode: 'vfio-pci', state: 'prepared', originalDriver: 'snd_hda_intel', originalOverride: null, iommuGroup: 6, autoprobePf: null, note: null }]);
    expect((await refusal(manager.prepare('0000:02:00.0', 'vm1'))).message).toContain('claimed by VM vm2');
    host.holdOpen(777, 'cloud-hypervisor', host.groupDevPath(8));
    expect((await refusal(manager.prepare('0000:05:00.4', 'vm1'))).message).toContain('pid 777 (cloud-hypervisor)');
  });

  it('refuses a device with no usable reset unless forced (rolled back)', async () => {
    host.probeOverrides.set(VF1, { resetSupported: false });
    const e = await refusal(manager.prepare(VF1, 'vm1'));
    expect(e.message).toContain('no usable reset');
    expect(host.driverOf(VF1)).toBe('nvme');
    expect((await manager.prepare(VF1, 'vm1', { force: true })).overridden).toEqual([`${VF1}: no usable reset`]);
  });

  it('release refuses unknown claims and other owners', async () => {
    expect((await refusal(manager.release(VF1, 'vm1'))).code).toBe('NOT_FOUND');
    await manager.prepare(VF1, 'vm1');
    expect((await refusal(manager.release(VF1, 'vm2'))).message).toContain('claimed by vm1');
  });

  it('release refuses while a VMM holds the group, and waits when asked', async () => {
    await manager.prepare(VF1, 'vm1');
    host.holdOpen(555, 'qemu-system-x86', host.groupDevPath(3));
    const e = await refusal(manager.release(VF1, 'vm1'));
    expect(e.code).toBe('UNAVAILABLE');
    expect(e.message).toContain('pid 555 (qemu-system-x86)');
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    expect((await refusal(manager.release(VF1, 'vm1', { waitMs: 50 }))).message).toContain('waited 50 ms');
    setTimeout(() => host.exitProcess(555), 30);
    await manager.release(VF1, 'vm1', { waitMs: 2000 });
    expect(host.driverOf(VF1)).toBe('nvme');
  });
});

describe('rollback', () => {
  const assertRestored = () => {
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(host.overrideOf(VF1)).toBeNull();
    expect(host.read(PF, 'sriov_drivers_autoprobe')).toBe('1');
    expect(claims.list()).toEqual([]);
  };

  it('rolls back when the VFIO probe fails', async () => {
    host.probeOverrides.set(VF1, new Error('VFIO_GROUP_GET_STATUS: EPERM'));
    const e = await refusal(manager.prepare(VF1, 'vm1'));
    expect(e.message).toContain('EPERM');
    expect(e.message).toContain('rolled back 2 change(s)');
    assertRestored();
  });

  it('rolls back when the group is not viable according to VFIO', async () => {
    host.probeOverrides.set(VF1, { groupViable: false });
    expect((await refusal(manager.prepare(VF1, 'vm1'))).message).toContain('not viable');
    assertRestored();
  });

  it('rolls back when VFIO enumerates no regions', async () => {
    host.probeOverrides.set(VF1, { regions: [] });
    expect((await refusal(manager.prepare(VF1, 'vm1'))).message).toContain('no regions');
    assertRestored();
  });

  it('rolls back when /dev/vfio/<group> never appears', async () => {
    host.afterWrite = (f, v) => {
      if (f.endsWith('drivers_probe') && v === VF1) rmSync(host.groupDevPath(3), { force: true });
    };
    const e = await refusal(manager.prepare(VF1, 'vm1'));
    expect(e.code).toBe('UNAVAILABLE');
    expect(e.message).toContain('did not appear within 200 ms');
    assertRestored();
  });

  it('rolls back when vfio-pci does not bind', async () => {
    rmSync(path.join(host.roots.sysfs, 'bus/pci/drivers/vfio-pci'), { recursive: true });
    expect((await refusal(manager.prepare(VF1, 'vm1'))).message).toContain('did not bind to vfio-pci');
    assertRestored();
  });

  it('rolls back when a sysfs write fails half way', async () => {
    let failures = 1;
    host.beforeWrite = (f) => {
      if (f.endsWith('drivers_probe') && failures-- > 0) throw new Error('EIO: write error');
    };
    expect((await refusal(manager.prepare(VF1, 'vm1'))).message).toContain('EIO');
    assertRestored();
  });

  it('rolls back a GPU and its companion together', async () => {
    host.probeOverrides.set('0000:02:00.1', new Error('boom'));
    await refusal(manager.prepare('0000:02:00.0', 'vm1'));
    expect(host.driverOf('0000:02:00.0')).toBe('amdgpu');
    expect(host.driverOf('0000:02:00.1')).toBe('snd_hda_intel');
    expect(claims.list()).toEqual([]);
  });

  it('handles a device that disappears mid-prepare', async () => {
    host.afterWrite = (f, v) => {
      if (f.endsWith(`${VF1}/driver/unbind`) && v === VF1) host.removeDevice(VF1);
    };
    const e = await refusal(manager.prepare(VF1, 'vm1'));
    expect(e.message).toMatch(/no device|disappeared|gone/);
    expect(e.details['rolledBack']).toEqual(expect.arrayContaining([expect.stringContaining('device gone, nothing to restore'), `restore sriov_drivers_autoprobe=1 on ${PF}`]));
    expect(host.read(PF, 'sriov_drivers_autoprobe')).toBe('1');
    expect(claims.list()).toEqual([]);
  });

  it('keeps a failed claim when the rollback itself fails, and reconcile repairs it later', async () => {
    host.probeOverrides.set(VF1, new Error('probe failed'));
    let failRestore = true;
    host.beforeWrite = (f, v) => {
      if (failRestore && f.endsWith('drivers_probe') && v === VF1 && host.driverOf(VF1) === null && host.overrideOf(VF1) === 'nvme') throw new Error('EBUSY: stuck');
    };
    const e = await refusal(manager.prepare(VF1, 'vm1'));
    expect(e.message).toContain('rollback incomplete');
    expect(claims.get(VF1)).toMatchObject({ state: 'failed', originalDriver: 'nvme' });
    failRestore = false;
    const report = manager.reconcile();
    expect(report).toEqual([expect.objectContaining({ bdf: VF1, action: 'repaired' })]);
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(host.overrideOf(VF1)).toBeNull();
    expect(host.read(PF, 'sriov_drivers_autoprobe')).toBe('1');
    expect(claims.list()).toEqual([]);
  });
});

describe('claims database and reconcile', () => {
  it('claims survive a restart (reopened database)', async () => {
    await manager.prepare(VF1, 'vm1');
    claims.close();
    claims = new ClaimStore(dbPath());
    manager = new DeviceManager({ roots: host.roots, writer: host.writer, prober: host.prober, claims, pollMs: 5 });
    expect(claims.get(VF1)).toMatchObject({ owner: 'vm1', state: 'prepared', originalDriver: 'nvme' });
    expect(manager.reconcile()).toEqual([expect.objectContaining({ bdf: VF1, action: 'ok' })]);
    await manager.release(VF1, 'vm1');
    expect(host.driverOf(VF1)).toBe('nvme');
  });

  it('undoes a prepare interrupted by a crash (claim still "preparing")', async () => {
    // Simulate: claim written, device bound, process died before the claim became 'prepared'.
    host.prober.probe = () => new Promise(() => {});
    void manager.prepare(VF1, 'vm1');
    await sleep(50);
    expect(claims.get(VF1)?.state).toBe('preparing');
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    const restarted = new DeviceManager({ roots: host.roots, writer: host.writer, prober: host.prober, claims: new ClaimStore(dbPath()) });
    const report = restarted.reconcile();
    expect(report).toEqual([expect.objectContaining({ bdf: VF1, action: 'repaired' })]);
    expect(report[0]!.detail).toContain(`autoprobe restored on ${PF}`);
    expect(host.driverOf(VF1)).toBe('nvme');
    restarted.claims.close();
  });

  it('reports devices on vfio-pci without a claim, claims of vanished devices, and drifted bindings', async () => {
    await manager.prepare(VF1, 'vm1');
    await manager.prepare(VF3, 'vm1');
    // someone rebinds VF1 behind our back, VF3 disappears, VF2 is bound to vfio-pci by hand
    host.writer.write(path.join(host.devDir(VF1), 'driver/unbind'), VF1);
    host.removeDevice(VF3);
    host.writer.write(path.join(host.devDir(VF2), 'driver_override'), 'vfio-pci');
    host.writer.write(path.join(host.roots.sysfs, 'bus/pci/drivers_probe'), VF2);
    const report = manager.reconcile();
    expect(report.map((r) => [r.bdf, r.action])).toEqual([
      [VF1, 'attention'],
      [VF3, 'removed'],
      [VF2, 'attention'],
    ]);
    expect(report[2]!.detail).toContain('without a vfiod claim');
  });

  it('refuses a prepare while an earlier one for the same owner is unfinished', async () => {
    claims.insert([{ bdf: VF1, owner: 'vm1', primary: VF1, mode: 'vfio-pci', state: 'preparing', originalDriver: 'nvme', originalOverride: null, iommuGroup: 3, autoprobePf: null, note: null }]);
    expect((await refusal(manager.prepare(VF1, 'vm1'))).message).toContain('reconcile');
  });

  it('keeps an event log', async () => {
    await manager.prepare(VF1, 'vm1');
    await manager.release(VF1, 'vm1');
    expect(claims.events(VF1).map((e) => `${e.event}:${e.detail}`)).toEqual(['claim:preparing', 'state:prepared', 'state:releasing', 'unclaim:released']);
  });
});
