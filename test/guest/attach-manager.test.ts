/**
 * The attachment orchestrator (src/attach/attachments.ts) with the real passthrough manager on a fake sysfs tree
 * (test/helpers/fake-sysfs.ts) and a fake cloud-hypervisor VMM that validates every request against the v48 OpenAPI
 * document (test/helpers/fake-cloud-hypervisor.ts). The fake VMM "opens" the device's VFIO group while the device is
 * in the VM (a holder process in the fake /proc) and closes it when the guest ejected it, so release really waits.
 * The last block runs the orchestrator against a real QEMU (-S) for the QMP error paths and their rollback.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { AttachmentManager, type HypervisorEndpoint } from '../../src/attach/attachments.js';
import { ClaimStore } from '../../src/devices/claims.js';
import { DeviceManager } from '../../src/devices/manager.js';
import { CloudHypervisorClient } from '../../src/hypervisor/cloud-hypervisor.js';
import type { HypervisorAdapter, PciDeviceSpec } from '../../src/hypervisor/types.js';
import { FakeCloudHypervisor, OpenApiValidator, openApiMissingReason } from '../helpers/fake-cloud-hypervisor.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { expectError, sleep, temporaryDir } from '../helpers/common.js';

const VF1 = '0000:01:00.1';
const VF2 = '0000:01:00.2';
const GPU = '0000:02:00.0';
const GPU_AUDIO = '0000:02:00.1';
/** An NVIDIA vGPU VF on nvidia with vfio-dev/vfio0 (vendor VFIO). */
const VGPU_VF = '0000:05:00.4';
const VMM_PID = 4242;

let host: FakeHost;
let claims: ClaimStore;
let devices: DeviceManager;
let manager: AttachmentManager;
let dir: string;
const fakes: FakeCloudHypervisor[] = [];
const dbPath = (): string => path.join(host.root, 'state/claims.db');

function open(adapterFor?: (vmId: string, endpoint: HypervisorEndpoint) => HypervisorAdapter): void {
  claims = new ClaimStore(dbPath());
  devices = new DeviceManager({ roots: host.roots, writer: host.writer, prober: host.prober, claims, vfioTimeoutMs: 200, pollMs: 5 });
  manager = new AttachmentManager({ devices, releaseWaitMs: 500, ...(adapterFor ? { adapterFor } : {}) });
}

/** A fake VMM for `vm` that holds the VFIO group of every device it has (pid VMM_PID + n) until the guest ejects it. */
async function vmm(vm: string, options: Partial<Parameters<typeof FakeCloudHypervisor.start>[0]> = {}): Promise<{ fake: FakeCloudHypervisor; endpoint: HypervisorEndpoint }> {
  const socketPath = path.join(dir, `${vm}.sock`);
  const pid = VMM_PID + fakes.length;
  const byId = new Map<string, string>();
  const fake = await FakeCloudHypervisor.start({
    socketPath,
    ejectDelayMs: 30,
    onAddDevice: (body) => {
      const bdf = path.basename(body.path);
      // cloud-hypervisor opens /dev/vfio/<group>: only possible when the device is on vfio-pci
      if (host.driverOf(bdf) !== 'vfio-pci') return ['Failed to create VFIO device', `VFIO group of ${bdf} is not viable (driver ${host.driverOf(bdf) ?? 'none'})`];
      host.holdOpen(pid, 'cloud-hyperviso', host.groupDevPath(host.groupOf(bdf)!));
      byId.set(body.id ?? bdf, bdf);
      return undefined;
    },
    onRemoved: (id) => {
      byId.delete(id);
      if (byId.size === 0) host.exitProcess(pid);
    },
    ...options,
  });
  fakes.push(fake);
  return { fake, endpoint: { hypervisor: 'cloud-hypervisor', apiSocket: socketPath } };
}

beforeEach(() => {
  host = standardHost();
  dir = temporaryDir('vfiod-attach-');
  open();
});
afterEach(async () => {
  for (const f of fakes.splice(0)) {
    expect(f.violations).toEqual([]);
    await f.stop();
  }
  claims.close();
  host.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe('attach (cloud-hypervisor)', () => {
  it('prepares the VF, hot-plugs it, confirms it in vm.info and records it; a repeat returns the same attachment', async () => {
    const { fake, endpoint } = await vmm('vm1');
    const { attachment, changed } = await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: '01:00.1' } });
    expect(changed).toBe(true);
    expect(attachment).toMatchObject({
      vmId: 'vm1', deviceId: 'vfiod-0000_01_00_1', hypervisor: 'cloud-hypervisor', state: 'attached', preparedByAttach: true,
      source: { kind: 'pci', bdf: VF1 },
      functions: [{ hostBdf: VF1, vmmDeviceId: 'vfiod-0000_01_00_1', guestBdf: '0000:00:04.0', bus: null, vfioBackend: 'group' }],
    });
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    expect(claims.get(VF1)).toMatchObject({ owner: 'vm1', state: 'prepared' });
    expect(fake.requests.filter((r) => r.startsWith('PUT'))).toEqual([`PUT /vm.add-device {"path":"/sys/bus/pci/devices/${VF1}","id":"vfiod-0000_01_00_1"}`]);
    expect(fake.requests).toContain('GET /vm.info');

    const again = await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 } });
    expect(again.changed).toBe(false);
    expect(again.attachment.deviceId).toBe('vfiod-0000_01_00_1');
    expect(fake.requests.filter((r) => r.startsWith('PUT'))).toHaveLength(1);
    expect(manager.list('vm1')).toHaveLength(1);
    expect(manager.list('vm2')).toEqual([]);
    expect(manager.get('vm1', 'vfiod-0000_01_00_1').state).toBe('attached');
    await expectError(Promise.resolve().then(() => manager.get('vm1', 'nope')), 'NOT_FOUND', /VM vm1 has no attachment nope/);
  });

  it('the same device for another VM is FAILED_PRECONDITION naming the VM that has it; nothing is sent to the other VMM', async () => {
    const a = await vmm('vm1');
    const b = await vmm('vm2');
    await manager.attach({ vmId: 'vm1', endpoint: a.endpoint, source: { kind: 'pci', bdf: VF1 } });
    await expectError(manager.attach({ vmId: 'vm2', endpoint: b.endpoint, source: { kind: 'pci', bdf: VF1 } }), 'FAILED_PRECONDITION', /attached to VM vm1/, /VM vm2/);
    // claimed (prepared) for vm2 without being attached: attaching it to vm1 names vm2
    await devices.prepare(VF2, 'vm2');
    await expectError(manager.attach({ vmId: 'vm1', endpoint: a.endpoint, source: { kind: 'pci', bdf: VF2 } }), 'FAILED_PRECONDITION', /claimed by VM vm2/);
    expect(b.fake.requests).toEqual([]);
    expect(claims.get(VF2)?.owner).toBe('vm2');
  });

  it('a device prepared for the VM beforehand is attached as it is and stays prepared after detach', async () => {
    const { endpoint } = await vmm('vm1');
    await devices.prepare(VF2, 'vm1');
    const { attachment } = await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF2 }, deviceId: 'disk1' });
    expect(attachment.preparedByAttach).toBe(false);
    const result = await manager.detach({ vmId: 'vm1', deviceId: 'disk1', timeoutMs: 2000 });
    expect(result.released).toEqual([]);
    expect(host.driverOf(VF2)).toBe('vfio-pci');
    expect(claims.get(VF2)?.owner).toBe('vm1');
  });

  it('the VMM refusing the device rolls back: released to nvme, no claim, no record', async () => {
    const { fake, endpoint } = await vmm('vm1', { onAddDevice: () => ['Failed to create VFIO device', 'VFIO group 3 is not viable'] });
    const e = await expectError(
      manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 } }),
      'FAILED_PRECONDITION', /attach PCI device 0000:01:00.1 to VM vm1/, /not viable/, /rolled back: released 0000:01:00.1/,
    );
    expect(e.details.vmId).toBe('vm1');
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(claims.get(VF1)).toBeUndefined();
    expect(manager.list()).toEqual([]);
    expect(fake.tree.size).toBe(0);
  });

  it('a VMM that accepts but does not list the device: INTERNAL, removed from the VMM again and released', async () => {
    claims.close();
    open((vmId, endpoint) => {
      const real = new CloudHypervisorClient({ vmId, apiSocket: (endpoint as { apiSocket: string }).apiSocket, pollMs: 5 });
      return Object.assign(Object.create(real) as CloudHypervisorClient, { listDevices: async () => [] });
    });
    const { fake, endpoint } = await vmm('vm1');
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 } }), 'INTERNAL', /accepted vfiod-0000_01_00_1 but does not list it/, /removed vfiod-0000_01_00_1 from the VMM/, /released/);
    expect(fake.requests).toContain('PUT /vm.remove-device {"id":"vfiod-0000_01_00_1"}');
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(manager.list()).toEqual([]);
  });

  it('a VM whose API socket is missing: UNAVAILABLE, and the prepare is rolled back', async () => {
    await expectError(
      manager.attach({ vmId: 'vm9', endpoint: { hypervisor: 'cloud-hypervisor', apiSocket: path.join(dir, 'gone.sock') }, source: { kind: 'pci', bdf: VF1 } }),
      'UNAVAILABLE', /VM vm9/, /API socket does not exist/, /released 0000:01:00.1/,
    );
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(claims.list()).toEqual([]);
  });

  it('a GPU goes in with its HDMI audio function as a second VMM device, and both come back on detach', async () => {
    const { fake, endpoint } = await vmm('vm1');
    const { attachment } = await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: GPU }, deviceId: 'gpu0', gpudirectClique: 1 });
    expect(attachment.functions.map((f) => [f.hostBdf, f.vmmDeviceId])).toEqual([[GPU, 'gpu0'], [GPU_AUDIO, 'gpu0-f1']]);
    expect(fake.requests.filter((r) => r.startsWith('PUT'))).toEqual([
      `PUT /vm.add-device {"path":"/sys/bus/pci/devices/${GPU}","id":"gpu0","x_nv_gpudirect_clique":1}`,
      `PUT /vm.add-device {"path":"/sys/bus/pci/devices/${GPU_AUDIO}","id":"gpu0-f1","x_nv_gpudirect_clique":1}`,
    ]);
    const detached = await manager.detach({ vmId: 'vm1', bdf: GPU, timeoutMs: 2000 });
    expect(detached.released.sort()).toEqual([GPU, GPU_AUDIO]);
    expect(host.driverOf(GPU)).toBe('amdgpu');
    expect(host.driverOf(GPU_AUDIO)).toBe('snd_hda_intel');
  });

  it('an emulated controller (vfio-user socket) is attached and detached without touching host devices', async () => {
    const { fake, endpoint } = await vmm('vm1');
    const { attachment } = await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'vfio-user', socketPath: '/run/vfiod/vm1-nvme0.sock' } });
    expect(attachment).toMatchObject({ deviceId: 'vfiod-user-vm1-nvme0', preparedByAttach: false, functions: [{ hostBdf: null }] });
    expect(fake.requests).toContain('PUT /vm.add-user-device {"socket":"/run/vfiod/vm1-nvme0.sock","id":"vfiod-user-vm1-nvme0"}');
    expect(host.writes).toEqual([]);
    expect(await manager.detach({ vmId: 'vm1', deviceId: 'vfiod-user-vm1-nvme0', timeoutMs: 2000 })).toEqual({ vmId: 'vm1', deviceId: 'vfiod-user-vm1-nvme0', released: [] });
  });

  it('refuses bad input precisely, before touching anything', async () => {
    const { fake, endpoint } = await vmm('vm1');
    await expectError(manager.attach({ vmId: '', endpoint, source: { kind: 'pci', bdf: VF1 } }), 'INVALID_ARGUMENT', /VM id is required/);
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: '1:0.1' } }), 'INVALID_ARGUMENT', /'1:0.1' is not a PCI address/);
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: '9 bad' }), 'INVALID_ARGUMENT', /device id '9 bad'/);
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'vfio-user', socketPath: 'rel.sock' } }), 'INVALID_ARGUMENT', /absolute path/);
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 }, bootIndex: 1 }), 'INVALID_ARGUMENT', /no boot order/, /CLOUDHV\.fd/);
    await expectError(manager.attach({ vmId: 'vm1', endpoint: { hypervisor: 'qemu', qmpSocket: 'q.sock' }, source: { kind: 'pci', bdf: VF1 } }), 'INVALID_ARGUMENT', /QMP socket must be an absolute path/);
    await expectError(manager.attach({ vmId: 'vm1', endpoint: { ...endpoint, eventMonitor: 'ev.json' } as HypervisorEndpoint, source: { kind: 'pci', bdf: VF1 } }), 'INVALID_ARGUMENT', /event-monitor file must be an absolute path/);
    await expectError(manager.attach({ vmId: 'vm1', endpoint: { hypervisor: 'xen' } as never, source: { kind: 'pci', bdf: VF1 } }), 'INVALID_ARGUMENT', /cloud-hypervisor.*qemu/);
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: '0000:09:00.0' } }), 'NOT_FOUND', /no PCI device 0000:09:00.0/);
    expect(fake.requests).toEqual([]);
    expect(host.writes).toEqual([]);
    await expectError(manager.detach({ vmId: 'vm1' }), 'INVALID_ARGUMENT', /device id or a PCI address/);
    await expectError(manager.detach({ vmId: 'vm1', deviceId: 'nope' }), 'NOT_FOUND', /VM vm1 has no attachment nope/);
    await expectError(manager.detach({ vmId: 'vm1', bdf: VF1 }), 'NOT_FOUND', /0000:01:00.1 is not attached to VM vm1/);
  });

  it('an id already used on the VM by another device is ALREADY_EXISTS (and the second device is not left prepared)', async () => {
    const { endpoint } = await vmm('vm1');
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'disk' });
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF2 }, deviceId: 'disk' }), 'ALREADY_EXISTS', /already has an attachment disk/);
    expect(claims.get(VF2)).toBeUndefined();
  });
});

describe('attach: repeats, companions, uncertain outcomes, crashes', () => {
  it('the same device on the same VM through another endpoint, or under another id, is FAILED_PRECONDITION naming both', async () => {
    const a = await vmm('vm1');
    const other = await vmm('vm1-other');
    await manager.attach({ vmId: 'vm1', endpoint: a.endpoint, source: { kind: 'pci', bdf: VF1 } });
    await expectError(
      manager.attach({ vmId: 'vm1', endpoint: other.endpoint, source: { kind: 'pci', bdf: VF1 } }),
      'FAILED_PRECONDITION', /already attached to VM vm1 as vfiod-0000_01_00_1/, new RegExp(`through cloud-hypervisor API ${a.endpoint.hypervisor === 'cloud-hypervisor' ? a.endpoint.apiSocket : ''}, not cloud-hypervisor API .*vm1-other\\.sock`),
    );
    await expectError(manager.attach({ vmId: 'vm1', endpoint: a.endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'disk9' }), 'FAILED_PRECONDITION', /as vfiod-0000_01_00_1: detach it first to use another id/);
    // the repeat with the same endpoint and (default or same) id is still the idempotent answer
    expect((await manager.attach({ vmId: 'vm1', endpoint: a.endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vfiod-0000_01_00_1' })).changed).toBe(false);
    expect(other.fake.requests).toEqual([]);
  });

  it("a GPU's companion on its own is refused, attached with its GPU or only prepared with it; cloud-hypervisor options out of range are INVALID_ARGUMENT", async () => {
    const { fake, endpoint } = await vmm('vm1');
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: GPU }, deviceId: 'gpu0' });
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: GPU_AUDIO } }), 'FAILED_PRECONDITION', /as gpu0-f1, a companion of gpu0/);
    await manager.detach({ vmId: 'vm1', deviceId: 'gpu0', timeoutMs: 2000, release: false });
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: GPU_AUDIO } }), 'FAILED_PRECONDITION', /prepared as a companion of 0000:02:00\.0: attach 0000:02:00\.0/);
    const puts = fake.requests.filter((r) => r.startsWith('PUT')).length;
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 }, pciSegment: 70000 }), 'INVALID_ARGUMENT', /PCI segment 70000/);
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 }, gpudirectClique: -1 }), 'INVALID_ARGUMENT', /GPUDirect clique -1/);
    expect(fake.requests.filter((r) => r.startsWith('PUT')).length).toBe(puts);
    expect(claims.get(VF1)).toBeUndefined();
  });

  it('an add the VMM carries out but answers too late for: the rollback removes it from the VMM before releasing', async () => {
    const { fake, endpoint } = await vmm('vm1', { lateAnswerMs: new Map([['vm.add-device', 1500]]) });
    await expectError(
      manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 }, timeoutMs: 300 }),
      'DEADLINE_EXCEEDED', /no answer within 300 ms/, /removed vfiod-0000_01_00_1 from the VMM/, /released 0000:01:00\.1/,
    );
    expect(fake.requests).toContain('PUT /vm.remove-device {"id":"vfiod-0000_01_00_1"}');
    expect(fake.tree.size).toBe(0);
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(manager.list()).toEqual([]);
  });

  it('a crash right after prepare leaves a record that reconcile uses to give the device back', async () => {
    const { fake, endpoint } = await vmm('vm1');
    // vfiod "crashes" the moment prepare has bound the device: the attach never goes on.
    const realPrepare = devices.prepare.bind(devices);
    devices.prepare = async (...args: Parameters<DeviceManager['prepare']>) => {
      await realPrepare(...args);
      return new Promise<never>(() => undefined);
    };
    void manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 } });
    for (let i = 0; i < 2000 && claims.get(VF1)?.state !== 'prepared'; i++) await sleep(10);
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    claims.close();
    open(); // the restart
    expect(manager.list()).toEqual([expect.objectContaining({ state: 'attaching', preparedByAttach: true })]);
    expect(await manager.reconcile()).toEqual([
      { vmId: 'vm1', deviceId: 'vfiod-0000_01_00_1', action: 'removed', detail: `the VMM no longer lists it: record removed, ${VF1} released` },
    ]);
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(claims.get(VF1)).toBeUndefined();
    expect(fake.requests.filter((r) => r.startsWith('PUT'))).toEqual([]);
  });
});

describe('detach (cloud-hypervisor)', () => {
  it('removes, waits for the guest to eject and the VMM to close the group, then releases to nvme', async () => {
    const { fake, endpoint } = await vmm('vm1', { ejectDelayMs: 120 });
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 } });
    expect(devices.holders([{ iommuGroup: 3 }])).toHaveLength(1);
    const t0 = Date.now();
    const result = await manager.detach({ vmId: 'vm1', bdf: VF1, timeoutMs: 3000 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(110);
    expect(result).toEqual({ vmId: 'vm1', deviceId: 'vfiod-0000_01_00_1', released: [VF1] });
    expect(fake.tree.size).toBe(0);
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(claims.list()).toEqual([]);
    expect(manager.list()).toEqual([]);
  });

  it('a guest that does not let go: DEADLINE_EXCEEDED, detach-pending, still claimed and on vfio-pci; a later detach finishes', async () => {
    const { fake, endpoint } = await vmm('vm1', { guestEjects: false });
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 } });
    const writes = host.writes.length;
    const e = await expectError(manager.detach({ vmId: 'vm1', bdf: VF1, timeoutMs: 300 }), 'DEADLINE_EXCEEDED', /did not release vfiod-0000_01_00_1 within 300 ms/, /stays claimed by VM vm1/, /not rebound/, /detach-pending/);
    expect(e.details.state).toBe('detach-pending');
    expect(manager.get('vm1', 'vfiod-0000_01_00_1')).toMatchObject({ state: 'detach-pending', note: expect.stringMatching(/within 300 ms/) });
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    expect(claims.get(VF1)?.state).toBe('prepared');
    expect(host.writes.length).toBe(writes); // nothing rebound
    // the same device cannot be attached again meanwhile
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 } }), 'FAILED_PRECONDITION', /detach-pending/);
    fake.ejectPending();
    expect(await manager.detach({ vmId: 'vm1', deviceId: 'vfiod-0000_01_00_1', timeoutMs: 2000 })).toMatchObject({ released: [VF1] });
    expect(host.driverOf(VF1)).toBe('nvme');
  });

  it('a VMM that is gone (socket removed, process exited): the record is finished and the device released', async () => {
    const { fake, endpoint } = await vmm('vm1');
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 } });
    await fake.stop();
    fakes.splice(fakes.indexOf(fake), 1);
    host.exitProcess(VMM_PID);
    expect(await manager.detach({ vmId: 'vm1', bdf: VF1, timeoutMs: 1000 })).toMatchObject({ released: [VF1] });
    expect(host.driverOf(VF1)).toBe('nvme');
  });

  it('a device prepared beforehand, or detached with release=false, from a VMM that is gone: the record is finished, the device stays prepared', async () => {
    const { fake, endpoint } = await vmm('vm1');
    await devices.prepare(VF2, 'vm1');
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF2 }, deviceId: 'disk2' });
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'disk1' });
    await fake.stop();
    fakes.splice(fakes.indexOf(fake), 1);
    host.exitProcess(VMM_PID);
    expect(await manager.detach({ vmId: 'vm1', deviceId: 'disk2', timeoutMs: 1000 })).toEqual({ vmId: 'vm1', deviceId: 'disk2', released: [] });
    expect(await manager.detach({ vmId: 'vm1', deviceId: 'disk1', timeoutMs: 1000, release: false })).toEqual({ vmId: 'vm1', deviceId: 'disk1', released: [] });
    expect(manager.list()).toEqual([]);
    expect(claims.get(VF2)).toMatchObject({ owner: 'vm1', state: 'prepared' });
    expect(host.driverOf(VF1)).toBe('vfio-pci');
  });

  it('a VMM that does not answer but still holds the group: nothing is rebound, detach-pending', async () => {
    const { fake, endpoint } = await vmm('vm1');
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 } });
    await fake.stop(); // API gone, process (pid VMM_PID) still holds /dev/vfio/3
    fakes.splice(fakes.indexOf(fake), 1);
    await expectError(manager.detach({ vmId: 'vm1', bdf: VF1, timeoutMs: 300 }), 'UNAVAILABLE', /still held by pid 4242/, /detach-pending/);
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    expect(manager.get('vm1', 'vfiod-0000_01_00_1')).toMatchObject({ state: 'detach-pending', note: expect.stringMatching(/VMM unreachable/) });
  });
});

describe('vfio-user attachments whose VMM is gone', () => {
  it('detach: UNAVAILABLE and detach-pending unless vfioUserInUse says no hypervisor is connected; reconcile likewise', async () => {
    let inUse: boolean | undefined;
    claims.close();
    claims = new ClaimStore(dbPath());
    devices = new DeviceManager({ roots: host.roots, writer: host.writer, prober: host.prober, claims, vfioTimeoutMs: 200, pollMs: 5 });
    const asked: string[] = [];
    manager = new AttachmentManager({ devices, releaseWaitMs: 500, vfioUserInUse: (socketPath) => (asked.push(socketPath), inUse) });
    const { fake, endpoint } = await vmm('vm1');
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'vfio-user', socketPath: '/run/vfiod/a.sock' }, deviceId: 'a' });
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'vfio-user', socketPath: '/run/vfiod/b.sock' }, deviceId: 'b' });
    await fake.stop();
    fakes.splice(fakes.indexOf(fake), 1);
    await expectError(manager.detach({ vmId: 'vm1', deviceId: 'a', timeoutMs: 500 }), 'UNAVAILABLE', /API socket does not exist/, /detach-pending/);
    inUse = true;
    await expectError(manager.detach({ vmId: 'vm1', deviceId: 'a', timeoutMs: 500 }), 'UNAVAILABLE');
    expect(manager.get('vm1', 'a').state).toBe('detach-pending');
    inUse = false;
    expect(await manager.detach({ vmId: 'vm1', deviceId: 'a', timeoutMs: 500 })).toEqual({ vmId: 'vm1', deviceId: 'a', released: [] });
    expect((await manager.reconcile())).toMatchObject([{ deviceId: 'b', action: 'removed' }]);
    expect(manager.list()).toEqual([]);
    expect(asked).toEqual(['/run/vfiod/a.sock', '/run/vfiod/a.sock', '/run/vfiod/a.sock', '/run/vfiod/b.sock']);
  });
});

describe('restart', () => {
  it('attachments survive a restart (same claims database) and can be detached afterwards', async () => {
    const { endpoint } = await vmm('vm1');
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'disk0' });
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'vfio-user', socketPath: '/run/vfiod/n.sock' }, deviceId: 'nvme0' });
    const before = manager.list();
    claims.close();
    open();
    expect(manager.list()).toEqual(before);
    expect(manager.get('vm1', 'disk0')).toMatchObject({ state: 'attached', preparedByAttach: true, endpoint });
    expect(await manager.detach({ vmId: 'vm1', deviceId: 'disk0', timeoutMs: 2000 })).toMatchObject({ released: [VF1] });
    claims.close();
    open();
    expect(manager.list().map((a) => a.deviceId)).toEqual(['nvme0']);
  });
});

describe('reconcile after a restart', () => {
  const reopen = (): void => {
    claims.close();
    open();
  };

  it('completes an interrupted attach the VMM lists, and rolls back one it does not', async () => {
    const { fake, endpoint } = await vmm('vm1');
    const a = (await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'disk0' })).attachment;
    const b = (await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF2 }, deviceId: 'disk1' })).attachment;
    // as if vfiod crashed mid-attach: disk0 made it into the VM, disk1 did not
    claims.putAttachment('vm1', 'disk0', { ...a, state: 'attaching' });
    claims.putAttachment('vm1', 'disk1', { ...b, state: 'attaching' });
    fake.tree.delete('disk1');
    host.exitProcess(VMM_PID); // the fake VMM's holder of both groups
    host.holdOpen(VMM_PID, 'cloud-hyperviso', host.groupDevPath(host.groupOf(VF1)!));
    reopen();
    expect(await manager.reconcile()).toEqual([
      { vmId: 'vm1', deviceId: 'disk0', action: 'repaired', detail: 'interrupted attach: the VMM lists the device, now attached' },
      { vmId: 'vm1', deviceId: 'disk1', action: 'removed', detail: `the VMM no longer lists it: record removed, ${VF2} released` },
    ]);
    expect(manager.get('vm1', 'disk0').state).toBe('attached');
    expect(host.driverOf(VF2)).not.toBe('vfio-pci');
    expect(claims.get(VF2)).toBeUndefined();
  });

  it('keeps a device cold-added to a VM that is created but not booted (only its config lists it), and detaches it', async () => {
    const { endpoint } = await vmm('vm1', { state: 'Created' });
    const { attachment, warnings } = await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 } });
    expect(attachment.note).toMatch(/cold-added/);
    expect(warnings.join()).toMatch(/not booted/);
    reopen();
    expect((await manager.reconcile()).map((e) => [e.action, e.detail])).toEqual([['ok', 'attached; the VMM lists it']]);
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    expect(await manager.detach({ vmId: 'vm1', bdf: VF1, timeoutMs: 2000 })).toMatchObject({ released: [VF1] });
    expect(host.driverOf(VF1)).toBe('nvme');
  });

  it('finishes a pending detach whose device the guest ejected meanwhile', async () => {
    const { fake, endpoint } = await vmm('vm1', { guestEjects: false });
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 } });
    await expectError(manager.detach({ vmId: 'vm1', bdf: VF1, timeoutMs: 100 }), 'DEADLINE_EXCEEDED');
    reopen();
    expect((await manager.reconcile())[0]).toMatchObject({ action: 'attention', detail: expect.stringMatching(/still lists vfiod-0000_01_00_1/) });
    fake.ejectPending();
    expect((await manager.reconcile())[0]).toMatchObject({ action: 'removed' });
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(manager.list()).toEqual([]);
  });

  it('a VMM that does not answer: kept while a process holds the group, released once nothing does', async () => {
    const { fake, endpoint } = await vmm('vm1');
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 } });
    await manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'vfio-user', socketPath: '/run/vfiod/u.sock' }, deviceId: 'user0' });
    await fake.stop();
    fakes.splice(fakes.indexOf(fake), 1);
    reopen();
    const first = await manager.reconcile();
    expect(first.map((e) => [e.deviceId, e.action])).toEqual([['user0', 'attention'], ['vfiod-0000_01_00_1', 'attention']]);
    expect(first[1]!.detail).toMatch(/VMM unreachable .*held by pid 4242/);
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    host.exitProcess(VMM_PID); // the VM is gone for good
    const second = await manager.reconcile();
    expect(second.map((e) => [e.deviceId, e.action])).toEqual([['user0', 'attention'], ['vfiod-0000_01_00_1', 'removed']]);
    expect(host.driverOf(VF1)).toBe('nvme');
  });
});

/** A QEMU stand-in that accepts every device and lists what it has: what attach asked for is in `added`. */
function recordingQemu(vmId: string, added: PciDeviceSpec[]): HypervisorAdapter {
  const has = new Set<string>();
  return {
    kind: 'qemu',
    vmId,
    ping: async () => '11.1.3',
    addPciDevice: async (spec) => {
      added.push(spec);
      has.add(spec.id);
      return { id: spec.id, guestBdf: null, coldAdded: false, bus: 'rp1' };
    },
    addUserDevice: async (spec) => ({ id: spec.id, guestBdf: null, coldAdded: false, bus: 'rp1' }),
    listDevices: async () => [...has].map((id) => ({ id, guestBdf: null, hostBdf: null })),
    hasDevice: async (id) => has.has(id),
    removeDevice: async (id) => void has.delete(id),
    close: async () => undefined,
  };
}

describe('VFIO backend: group or iommufd', () => {
  it('QEMU hot-plug keeps one backend per VM: a device follows the VM\'s other attachments, or is refused and rolled back', async () => {
    claims.close();
    const added: PciDeviceSpec[] = [];
    open((vmId) => recordingQemu(vmId, added));
    writeFileSync(path.join(host.roots.dev, 'iommu'), '');
    const endpoint: HypervisorEndpoint = { hypervisor: 'qemu', qmpSocket: path.join(dir, 'q1.qmp') };
    // the vGPU VF (vendor VFIO driver, a host with /dev/iommu) goes through iommufd
    const vgpu = await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VGPU_VF }, deviceId: 'vgpu0' });
    expect(vgpu.attachment.functions[0]).toMatchObject({ hostBdf: VGPU_VF, vfioBackend: 'iommufd' });
    // this fake VF on vfio-pci has no cdev: it cannot follow, so it is refused and given back
    await expectError(
      manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0' }),
      'FAILED_PRECONDITION', /vf0 \(0000:01:00.1\) would go through its VFIO group while vgpu0 goes through iommufd/, /released 0000:01:00.1/,
    );
    expect(host.driverOf(VF1)).toBe('nvme');
    // the other way round: the VM's VF uses its group, so the vGPU VF follows it there
    await manager.detach({ vmId: 'q1', deviceId: 'vgpu0' });
    await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0' });
    const again = await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VGPU_VF }, deviceId: 'vgpu0' });
    expect(again.attachment.functions[0]!.vfioBackend).toBe('group');
    expect(manager.list('q1').map((a) => [a.deviceId, a.functions[0]!.vfioBackend])).toEqual([['vf0', 'group'], ['vgpu0', 'group']]);
    expect(added.map((spec) => [spec.id, spec.vfioBackend])).toEqual([['vgpu0', 'iommufd'], ['vf0', 'group'], ['vgpu0', 'group']]);
  });

  it('cloud-hypervisor: iommufd asked for is refused before anything changes', async () => {
    const { fake, endpoint } = await vmm('vm1');
    writeFileSync(path.join(host.roots.dev, 'iommu'), '');
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VGPU_VF }, vfioBackend: 'iommufd' }), 'FAILED_PRECONDITION', /0000:05:00.4 needs iommufd \(asked for\)/, /cloud-hypervisor v48/);
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 }, vfioBackend: 'iommufd' }), 'FAILED_PRECONDITION', /needs iommufd \(asked for\)/);
    await expectError(manager.attach({ vmId: 'vm1', endpoint, source: { kind: 'pci', bdf: VF1 }, vfioBackend: 'cdev' as never }), 'INVALID_ARGUMENT', /VFIO backend "cdev"/);
    expect(fake.requests).toEqual([]);
    expect(claims.list()).toEqual([]);
    expect(manager.list()).toEqual([]);
    expect(host.driverOf(VF1)).toBe('nvme');
  });

  it('static configuration: a vendor VFIO device goes through iommufd on a host with /dev/iommu, through its group without; iommufd asked for without it is refused', async () => {
    await devices.prepare(VGPU_VF, 'vm1');
    const request = { hypervisor: 'qemu' as const, vmId: 'vm1', devices: [{ source: { kind: 'pci' as const, bdf: VGPU_VF }, id: 'vgpu0' }, { source: { kind: 'pci' as const, bdf: VF1 }, id: 'vf0' }] };
    expect(manager.staticConfig(request).vfioBackends).toEqual({ vgpu0: 'group', vf0: 'group' });
    const asked = { ...request, devices: [{ ...request.devices[0]!, vfioBackend: 'iommufd' as const }] };
    await expectError(Promise.resolve().then(() => manager.staticConfig(asked)), 'FAILED_PRECONDITION', /0000:05:00.4 needs iommufd and the host has no \/dev\/iommu/);
    writeFileSync(path.join(host.roots.dev, 'iommu'), '');
    const result = manager.staticConfig(request);
    // VF1 (not prepared yet, on nvme) follows the vGPU VF: one backend per QEMU VM
    expect(result.vfioBackends).toEqual({ vgpu0: 'iommufd', vf0: 'iommufd' });
    expect(result.qemu!.args).toContain(`vfio-pci,iommufd=vfiod-iommufd0,sysfsdev=/sys/bus/pci/devices/${VGPU_VF},id=vgpu0,bus=vfiod-rp0`);
    expect(result.qemu!.args).toContain(`vfio-pci,iommufd=vfiod-iommufd0,sysfsdev=/sys/bus/pci/devices/${VF1},id=vf0,bus=vfiod-rp1`);
    expect(result.qemu!.args.slice(0, 2)).toEqual(['-object', 'iommufd,id=vfiod-iommufd0']);
    expect(host.driverOf(VGPU_VF)).toBe('nvidia'); // never rebound
  });
});

describe('static configuration', () => {
  it('adds prepared GPU companions, warns about unprepared devices, and cloud-hypervisor output validates against VmConfig', async () => {
    await devices.prepare(GPU, 'vm1');
    const result = manager.staticConfig({
      hypervisor: 'cloud-hypervisor',
      vmId: 'vm1',
      devices: [{ source: { kind: 'pci', bdf: GPU }, id: 'gpu0' }, { source: { kind: 'pci', bdf: VF1 }, bootIndex: 1 }, { source: { kind: 'vfio-user', socketPath: '/run/vfiod/a.sock' } }],
    });
    expect(result.cloudHypervisor!.devices).toEqual([
      { path: `/sys/bus/pci/devices/${GPU}`, id: 'gpu0' },
      { path: `/sys/bus/pci/devices/${GPU_AUDIO}`, id: 'gpu0-f1' },
      { path: `/sys/bus/pci/devices/${VF1}`, id: 'vfiod-0000_01_00_1' },
    ]);
    expect(result.warnings[0]).toMatch(/0000:01:00.1 is not prepared for VM vm1/);
    expect(result.warnings.join('\n')).toMatch(/CLOUDHV\.fd/);
    const vmConfig = { payload: { firmware: '/usr/share/cloud-hypervisor/CLOUDHV.fd' }, memory: { size: 1 << 30, shared: true }, devices: result.cloudHypervisor!.devices, user_devices: result.cloudHypervisor!.user_devices };
    if (openApiMissingReason) return console.warn(`attach-manager: VmConfig not validated: ${openApiMissingReason}`);
    expect(new OpenApiValidator().checkRequest('PUT', '/vm.create', 'application/json', JSON.stringify(vmConfig))).toEqual([]);
  });
});

// --- the orchestrator against a real QEMU: QMP errors roll back the prepare --------------------------------------

const qemuMissing = spawnSync('qemu-system-x86_64', ['--version']).status === 0 ? undefined : 'qemu-system-x86_64 not found (apt-get install qemu-system-x86)';
if (qemuMissing) console.warn(`attach-manager (QEMU part): skipped: ${qemuMissing}`);

describe.skipIf(qemuMissing !== undefined)('attach through QMP to a real QEMU (-S): errors roll back', () => {
  let qemu: ChildProcess;
  let qdir: string;
  let endpoint: HypervisorEndpoint;

  beforeAll(async () => {
    qdir = temporaryDir('vfiod-attach-qemu-');
    const qmpSocket = path.join(qdir, 'qmp.sock');
    endpoint = { hypervisor: 'qemu', qmpSocket };
    qemu = spawn('sh', [path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'testbed', 'qemu-launch.sh'), '120', 'qemu-system-x86_64',
      '-S', '-accel', 'tcg', '-machine', 'q35', '-nodefaults', '-display', 'none', '-m', '64',
      '-device', 'pcie-root-port,id=rp1,chassis=1,slot=1', '-qmp', `unix:${qmpSocket},server=on,wait=off`], { stdio: ['pipe', 'ignore', 'ignore'] });
    for (let i = 0; i < 200 && !existsSync(qmpSocket); i++) await sleep(50);
  }, 30_000);
  afterAll(async () => {
    qemu?.stdin?.end();
    await new Promise((r) => (qemu.exitCode !== null ? r(null) : qemu.once('exit', r)));
    rmSync(qdir, { recursive: true, force: true });
  });

  it('a VF that exists only in the fake sysfs: QEMU says no such host device -> NOT_FOUND, released, no record', async () => {
    await expectError(manager.attach({ vmId: 'vmq', endpoint, source: { kind: 'pci', bdf: VF1 }, bootIndex: 2 }), 'NOT_FOUND', /VM vmq/, /no such host device/, /bus rp1/, /released 0000:01:00.1/);
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(manager.list()).toEqual([]);
  });

  it('a vendor VFIO device through iommufd on QEMU 7.2: object-add fails saying QEMU >= 9.0 is needed; the as-is claim is dropped, nvidia keeps it', async () => {
    writeFileSync(path.join(host.roots.dev, 'iommu'), '');
    await expectError(manager.attach({ vmId: 'vmq', endpoint, source: { kind: 'pci', bdf: VGPU_VF } }), 'FAILED_PRECONDITION', /object-add iommufd vfiod-iommufd0/, /iommufd needs QEMU >= 9\.0/, /released 0000:05:00.4/);
    expect(host.driverOf(VGPU_VF)).toBe('nvidia');
    expect(claims.list()).toEqual([]);
    expect(manager.list()).toEqual([]);
  });

  it('vfio-user on QEMU 7.2: FAILED_PRECONDITION saying QEMU >= 10.1 is needed', async () => {
    await expectError(manager.attach({ vmId: 'vmq', endpoint, source: { kind: 'vfio-user', socketPath: '/run/vfiod/x.sock' } }), 'FAILED_PRECONDITION', /QEMU >= 10\.1/, /nothing to roll back/);
  });
});
