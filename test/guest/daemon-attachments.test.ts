/**
 * AttachmentService through the daemon: every RPC and error path, against the attachment orchestrator (src/attach)
 * with fake sysfs (test/helpers/fake-sysfs.ts) and a fake cloud-hypervisor VMM that validates each request against the
 * v48 OpenAPI document (test/helpers/fake-cloud-hypervisor.ts). The fake VMM holds the device's VFIO group while the
 * device is in the VM, so release after detach really waits for the guest. Also the CLI client commands.
 */
import type { RequestOf, RpcName } from '../../src/daemon/proto.js';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { runAttach } from '../../src/cli/attach.js';
import { runAttachments } from '../../src/cli/attachments.js';
import { runDetach } from '../../src/cli/detach.js';
import { runDevicesViaDaemon } from '../../src/cli/devices.js';
import { runVmConfig } from '../../src/cli/vm-config.js';
import { ClaimStore } from '../../src/devices/claims.js';
import { VfiodClient } from '../../src/daemon/client.js';
import { unpackAny } from '../../src/daemon/proto.js';
import { type Daemon, startDaemon } from '../../src/daemon/server.js';
import { memoryLogger } from '../../src/util/log.js';
import { expectStatus, streamSubscribed } from '../helpers/daemon-client.js';
import { type FakeChOptions, type FakeCloudHypervisor, vfioHoldingFake } from '../helpers/fake-cloud-hypervisor.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { sleep, temporaryDir } from '../helpers/common.js';

const VF1 = '0000:01:00.1';
const VF2 = '0000:01:00.2';
const VF3 = '0000:01:00.3';
const GPU = '0000:02:00.0';
const GPU_AUDIO = '0000:02:00.1';
/** An NVIDIA vGPU VF on nvidia with vfio-dev/vfio0 (vendor VFIO). */
const VGPU_VF = '0000:05:00.4';
const MOUNTED = '0000:06:00.0';

let host: FakeHost;
let dir: string;
let daemon: Daemon;
let client: VfiodClient;
const fakes: FakeCloudHypervisor[] = [];

/** A fake cloud-hypervisor for `vm` holding the VFIO group of each device it has until the guest ejects it. */
async function vmm(vm: string, options: Partial<FakeChOptions> = {}): Promise<{ fake: FakeCloudHypervisor; endpoint: Record<string, string> }> {
  const socketPath = path.join(dir, `${vm}.sock`);
  const fake = await vfioHoldingFake(host, socketPath, 5000 + fakes.length, { ejectDelayMs: 30, ...options });
  fakes.push(fake);
  return { fake, endpoint: { cloudHypervisorApiSocket: socketPath } };
}

/** The daemon of these tests over the fake host, with short device-manager waits. */
async function startTestDaemon(extra: Parameters<typeof startDaemon>[0] = {}): Promise<void> {
  daemon = await startDaemon({
    socketPath: path.join(dir, 'vfiod.sock'),
    stateDir: path.join(dir, 'state'),
    roots: host.roots,
    writer: host.writer,
    prober: host.prober,
    pollMs: 5,
    vfioTimeoutMs: 200,
    releaseWaitMs: 500,
    logger: memoryLogger().logger,
    ...extra,
  });
  client = new VfiodClient({ address: daemon.socketPath! });
}

beforeEach(async () => {
  host = standardHost();
  dir = temporaryDir('vfiod-daemon-attach-');
  await startTestDaemon();
});
afterEach(async () => {
  client.close();
  await daemon.close();
  for (const fake of fakes.splice(0)) {
    expect(fake.violations).toEqual([]);
    await fake.stop();
  }
  host.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

/** AttachDevice and DetachDevice wait for their operation here (wait: true): these tests are about the orchestration. */
const attachments = <M extends RpcName<'AttachmentService'>>(rpc: M, request: RequestOf<'AttachmentService', M>) =>
  client.call('AttachmentService', rpc, rpc === 'AttachDevice' || rpc === 'DetachDevice' ? Object.assign({ wait: true }, request) : request);

describe('AttachDevice / DetachDevice / ListAttachments', () => {
  it('hot-plugs a VF (prepared on the way), lists it, and hot-unplugs it back to nvme; events for both', async () => {
    const { fake, endpoint } = await vmm('vm1');
    const events: Array<Record<string, any>> = [];
    const stream = client.stream('DeviceService', 'StreamDeviceEvents', { bdfs: [VF1] });
    stream.on('data', (e) => events.push(e));
    stream.on('error', () => {});
    await streamSubscribed(stream);

    const attached = await attachments('AttachDevice', { vmId: 'vm1', endpoint, source: { pciBdf: '01:00.1' } });
    expect(attached['changed']).toBe(true);
    expect(attached['attachment']).toMatchObject({
      vmId: 'vm1',
      deviceId: 'vfiod-0000_01_00_1',
      hypervisor: 'HYPERVISOR_KIND_CLOUD_HYPERVISOR',
      endpoint: { cloudHypervisorApiSocket: endpoint['cloudHypervisorApiSocket'] },
      source: { pciBdf: VF1 },
      state: 'ATTACHMENT_STATE_ATTACHED',
      preparedByAttach: true,
      functions: [{ hostBdf: VF1, vmmDeviceId: 'vfiod-0000_01_00_1', guestBdf: '0000:00:04.0', bus: '', vfioBackend: 'VFIO_BACKEND_GROUP' }],
    });
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    expect(fake.tree.has('vfiod-0000_01_00_1')).toBe(true);
    expect((await attachments('AttachDevice', { vmId: 'vm1', endpoint, source: { pciBdf: VF1 } }))['changed']).toBe(false);

    const listed = (await attachments('ListAttachments', {}))['attachments'];
    expect(listed.map((a: { vmId: string; deviceId: string }) => [a.vmId, a.deviceId])).toEqual([['vm1', 'vfiod-0000_01_00_1']]);
    expect((await attachments('ListAttachments', { vmId: 'vm2' }))['attachments']).toEqual([]);
    const device = (await client.call('DeviceService', 'GetDevice', { bdf: VF1 }))['device'];
    expect(device!.claim!.owner).toBe('vm1');

    const detached = await attachments('DetachDevice', { vmId: 'vm1', deviceId: 'vfiod-0000_01_00_1', timeoutMs: 2000 });
    expect(detached).toMatchObject({ vmId: 'vm1', deviceId: 'vfiod-0000_01_00_1', released: [VF1], operation: { state: 'OPERATION_STATE_SUCCEEDED' } });
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(fake.tree.size).toBe(0);
    expect((await attachments('ListAttachments', {}))['attachments']).toEqual([]);

    await vi.waitFor(() => expect(events.length).toBeGreaterThanOrEqual(2));
    stream.cancel();
    const kinds = events.map((e) => unpackAny(e['data']).value['kind']);
    expect(kinds).toEqual(['DEVICE_EVENT_KIND_ATTACHED', 'DEVICE_EVENT_KIND_DETACHED']);
  });

  it('attaches a GPU with its audio function, and an emulated controller by socket', async () => {
    const { endpoint } = await vmm('vm1');
    const gpu = await attachments('AttachDevice', { vmId: 'vm1', endpoint, source: { pciBdf: GPU }, deviceId: 'gpu0', gpudirectClique: 1 });
    expect(gpu['attachment']!.functions.map((f: { hostBdf: string; vmmDeviceId: string }) => [f.hostBdf, f.vmmDeviceId])).toEqual([[GPU, 'gpu0'], [GPU_AUDIO, 'gpu0-f1']]);
    const user = await attachments('AttachDevice', { vmId: 'vm1', endpoint, source: { vfioUserSocket: '/run/vfiod/vm1-nvme0.sock' } });
    expect(user['attachment']).toMatchObject({ source: { vfioUserSocket: '/run/vfiod/vm1-nvme0.sock' }, preparedByAttach: false });
    const detached = await attachments('DetachDevice', { vmId: 'vm1', bdf: GPU, timeoutMs: 2000 });
    expect([...detached['released']].sort()).toEqual([GPU, GPU_AUDIO]);
    expect(host.driverOf(GPU)).toBe('amdgpu');
  });

  it("passes cloud-hypervisor's event-monitor file through to the orchestrator (attach, detach, refusals)", async () => {
    const monitor = path.join(dir, 'vm1.events');
    const { fake, endpoint } = await vmm('vm1', { eventMonitor: monitor });
    const withMonitor = { ...endpoint, cloudHypervisorEventMonitor: monitor };
    const attached = await attachments('AttachDevice', { vmId: 'vm1', endpoint: withMonitor, source: { vfioUserSocket: '/run/vfiod/vm1-a.sock' }, deviceId: 'data1' });
    expect(attached['attachment']!['endpoint']).toMatchObject(withMonitor);
    await attachments('DetachDevice', { vmId: 'vm1', deviceId: 'data1', timeoutMs: 5000 });
    expect(fake.tree.size).toBe(0);
    await expectStatus(
      attachments('AttachDevice', { vmId: 'vm1', endpoint: { ...endpoint, cloudHypervisorEventMonitor: 'events.json' }, source: { vfioUserSocket: '/run/vfiod/vm1-a.sock' } }),
      'INVALID_ARGUMENT', 'vm1', 'events.json',
    );
    await expectStatus(
      attachments('AttachDevice', { vmId: 'vm1', endpoint: { qemuQmpSocket: path.join(dir, 'q.qmp'), cloudHypervisorEventMonitor: monitor }, source: { vfioUserSocket: '/run/vfiod/vm1-a.sock' } }),
      'INVALID_ARGUMENT', 'VM vm1', 'cloud_hypervisor_event_monitor',
    );
  });

  it('maps every attach refusal onto its status, names the VM and the device, and rolls back', async () => {
    const a = await vmm('vm1');
    const b = await vmm('vm2');
    await expectStatus(attachments('AttachDevice', { endpoint: a.endpoint, source: { pciBdf: VF1 } }), 'INVALID_ARGUMENT', 'vm_id is required');
    await expectStatus(attachments('AttachDevice', { vmId: 'vm1', source: { pciBdf: VF1 } }), 'INVALID_ARGUMENT', 'VM vm1', 'endpoint is required');
    await expectStatus(attachments('AttachDevice', { vmId: 'vm1', endpoint: a.endpoint }), 'INVALID_ARGUMENT', 'VM vm1', 'source is required');
    await expectStatus(attachments('AttachDevice', { vmId: 'vm1', endpoint: a.endpoint, source: { pciBdf: 'gpu' } }), 'INVALID_ARGUMENT', "'gpu'");
    await expectStatus(attachments('AttachDevice', { vmId: 'vm1', endpoint: a.endpoint, source: { controllerId: 'nvme9' } }), 'NOT_FOUND', 'nvme9');
    await expectStatus(attachments('AttachDevice', { vmId: 'vm1', endpoint: a.endpoint, source: { pciBdf: '0000:0f:00.0' } }), 'NOT_FOUND', '0000:0f:00.0');
    await expectStatus(attachments('AttachDevice', { vmId: 'vm1', endpoint: a.endpoint, source: { pciBdf: VF1 }, bootIndex: 1 }), 'INVALID_ARGUMENT', 'boot');
    await expectStatus(attachments('AttachDevice', { vmId: 'vm1', endpoint: a.endpoint, source: { pciBdf: MOUNTED } }), 'FAILED_PRECONDITION', MOUNTED, 'in use on the host');
    expect(host.driverOf(MOUNTED)).toBe('nvme');

    await attachments('AttachDevice', { vmId: 'vm1', endpoint: a.endpoint, source: { pciBdf: VF1 } });
    await expectStatus(attachments('AttachDevice', { vmId: 'vm2', endpoint: b.endpoint, source: { pciBdf: VF1 } }), 'FAILED_PRECONDITION', 'vm1', 'vm2');
    expect(b.fake.requests).toEqual([]);

    // The VM's API socket is gone: UNAVAILABLE, and the VF prepared on the way is released again.
    await expectStatus(
      attachments('AttachDevice', { vmId: 'vm9', endpoint: { cloudHypervisorApiSocket: path.join(dir, 'gone.sock') }, source: { pciBdf: VF3 } }),
      'UNAVAILABLE', 'vm9', VF3,
    );
    expect(host.driverOf(VF3)).toBe('nvme');
    // The VMM refuses the device (v48: 500 + error chain): FAILED_PRECONDITION with its reason, rolled back.
    const c = await vmm('vm3', { onAddDevice: () => ['Failed to create VFIO device', 'VFIO group 4 is not viable'] });
    await expectStatus(attachments('AttachDevice', { vmId: 'vm3', endpoint: c.endpoint, source: { pciBdf: VF2 } }), 'FAILED_PRECONDITION', 'vm3', VF2, 'not viable', 'rolled back');
    expect(host.driverOf(VF2)).toBeNull();
    expect((await client.call('DeviceService', 'GetDevice', { bdf: VF2 }))['device']!.claim).toBeNull();
  });

  it('maps every detach refusal onto its status; a guest that does not let go leaves the device claimed', async () => {
    await expectStatus(attachments('DetachDevice', { deviceId: 'x' }), 'INVALID_ARGUMENT', 'vm_id is required');
    await expectStatus(attachments('DetachDevice', { vmId: 'vm1' }), 'INVALID_ARGUMENT', 'VM vm1', 'device_id or bdf');
    await expectStatus(attachments('DetachDevice', { vmId: 'vm1', bdf: 'x' }), 'INVALID_ARGUMENT', "'x'");
    await expectStatus(attachments('DetachDevice', { vmId: 'vm1', deviceId: 'disk9' }), 'NOT_FOUND', 'vm1', 'disk9');

    const { fake, endpoint } = await vmm('vm1', { guestEjects: false });
    await attachments('AttachDevice', { vmId: 'vm1', endpoint, source: { pciBdf: VF1 }, deviceId: 'disk1' });
    // Not DEADLINE_EXCEEDED: the operation ends in the detach-pending state, saying why.
    const stuck = (await attachments('DetachDevice', { vmId: 'vm1', deviceId: 'disk1', timeoutMs: 200 }))['operation'];
    expect(stuck).toMatchObject({ state: 'OPERATION_STATE_DETACH_PENDING', done: true, deviceId: 'disk1' });
    expect(stuck!.error!.message).toMatch(/vm1.*disk1|disk1.*vm1/);
    const pending = (await attachments('ListAttachments', { vmId: 'vm1' }))['attachments'][0];
    expect(pending!.state).toBe('ATTACHMENT_STATE_DETACH_PENDING');
    expect(pending!.note).not.toBe('');
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    // The guest lets go later; detaching again completes and releases.
    fake.ejectPending();
    expect((await attachments('DetachDevice', { vmId: 'vm1', deviceId: 'disk1', timeoutMs: 2000 }))['released']).toEqual([VF1]);
    expect(host.driverOf(VF1)).toBe('nvme');
  });
});

describe('VMM gone', () => {
  it('QEMU: a missing QMP socket is UNAVAILABLE and rolls the prepare back', async () => {
    await expectStatus(
      attachments('AttachDevice', { vmId: 'vmq', endpoint: { qemuQmpSocket: path.join(dir, 'no-qmp.sock') }, source: { pciBdf: VF1 } }),
      'UNAVAILABLE', 'vmq', VF1,
    );
    expect(host.driverOf(VF1)).toBe('nvme');
  });

  it('detach from a VM whose VMM went away: the device is released once no process holds it, never before', async () => {
    const { fake, endpoint } = await vmm('vm1');
    await attachments('AttachDevice', { vmId: 'vm1', endpoint, source: { pciBdf: VF1 }, deviceId: 'disk1' });
    await attachments('AttachDevice', { vmId: 'vm1', endpoint, source: { vfioUserSocket: '/run/vfiod/vm1-a.sock' }, deviceId: 'data1' });
    fakes.splice(fakes.indexOf(fake), 1);
    await fake.stop();
    // The VMM's socket is gone but the (fake) process still holds the VFIO group: not released, still claimed.
    const unreachable = (await attachments('DetachDevice', { vmId: 'vm1', deviceId: 'disk1', timeoutMs: 300 }))['operation'];
    expect(unreachable).toMatchObject({ state: 'OPERATION_STATE_DETACH_PENDING', error: { code: 14 } });
    expect(unreachable!.error!.message).toContain('disk1');
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    expect((await attachments('ListAttachments', { vmId: 'vm1' }))['attachments'].find((a: { deviceId: string }) => a.deviceId === 'disk1')!.state).toBe('ATTACHMENT_STATE_DETACH_PENDING');
    expect((await attachments('DetachDevice', { vmId: 'vm1', deviceId: 'data1', timeoutMs: 300 }))['operation']).toMatchObject({ state: 'OPERATION_STATE_DETACH_PENDING', error: { code: 14 } });
    // The process exits: detaching again releases the VF.
    host.exitProcess(5000);
    expect((await attachments('DetachDevice', { vmId: 'vm1', deviceId: 'disk1', timeoutMs: 300 }))['released']).toEqual([VF1]);
    expect(host.driverOf(VF1)).toBe('nvme');
  });
});

describe('shutdown', () => {
  it('waits for a hot-plug whose call the drain cancelled: its rollback still finds the claims database open', async () => {
    // A daemon whose drain gives up at once, and a VMM that never answers vm.add-device.
    client.close();
    await daemon.close();
    await startTestDaemon({ drainTimeoutMs: 100 });
    const { endpoint } = await vmm('vm1', { hang: new Set(['vm.add-device']) });
    const attach = attachments('AttachDevice', { vmId: 'vm1', endpoint, source: { pciBdf: VF1 }, timeoutMs: 1500 }).catch((e: unknown) => e);
    await vi.waitFor(() => expect(host.driverOf(VF1)).toBe('vfio-pci'));
    await daemon.close();
    // The call was cancelled by the drain, but its handler timed out on the VMM and rolled the prepare back.
    expect(await attach).toMatchObject({ statusName: 'CANCELLED' });
    expect(host.driverOf(VF1)).toBe('nvme');
    const claims = new ClaimStore(path.join(dir, 'state', 'claims.db'));
    try {
      expect(claims.get(VF1)).toBeUndefined();
    } finally {
      claims.close();
    }
  });
});

const qemuMissing = spawnSync('qemu-system-x86_64', ['--version']).status === 0 ? undefined : 'qemu-system-x86_64 not found (apt-get install qemu-system-x86)';
if (qemuMissing) console.warn(`daemon attachments (real QEMU part) skipped: ${qemuMissing}`);

describe.skipIf(qemuMissing)('AttachDevice over QMP to a real QEMU (-S)', () => {
  let qemu: ChildProcess;
  let qdir: string;
  let qmpSocket: string;
  beforeAll(async () => {
    qdir = temporaryDir('vfiod-daemon-qemu-');
    qmpSocket = path.join(qdir, 'qmp.sock');
    qemu = spawn('sh', [path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'testbed', 'qemu-launch.sh'), '120', 'qemu-system-x86_64',
      '-S', '-accel', 'tcg', '-machine', 'q35', '-nodefaults', '-display', 'none', '-m', '64',
      '-device', 'pcie-root-port,id=rp1,chassis=1,slot=1', '-qmp', `unix:${qmpSocket},server=on,wait=off`], { stdio: ['pipe', 'ignore', 'ignore'] });
    for (let i = 0; i < 400 && !existsSync(qmpSocket); i++) await sleep(50);
  }, 30_000);
  afterAll(async () => {
    qemu?.stdin?.end();
    if (qemu) await new Promise((r) => (qemu.exitCode !== null ? r(null) : qemu.once('exit', r)));
    rmSync(qdir, { recursive: true, force: true });
  });

  it("QEMU's refusal comes back as a status naming the VM and the device, and the prepare is rolled back", async () => {
    // The VF exists only in the fake sysfs: QEMU's vfio-pci cannot find it.
    await expectStatus(
      attachments('AttachDevice', { vmId: 'vmq', endpoint: { qemuQmpSocket: qmpSocket }, source: { pciBdf: VF1 }, bootIndex: 1 }),
      'NOT_FOUND', 'VM vmq', VF1, 'released',
    );
    expect(host.driverOf(VF1)).toBe('nvme');
    expect((await attachments('ListAttachments', {}))['attachments']).toEqual([]);
    // QEMU before 10.1 has no vfio-user-pci (Debian 12 ships 7.2).
    const version = /version (\d+)\.(\d+)/.exec(spawnSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).stdout);
    if (version && Number(version[1]) * 100 + Number(version[2]) < 1001) await expectStatus(attachments('AttachDevice', { vmId: 'vmq', endpoint: { qemuQmpSocket: qmpSocket }, source: { vfioUserSocket: '/run/vfiod/x.sock' } }), 'FAILED_PRECONDITION', '10.1');
  });
});

describe('GetVmConfig', () => {
  it('returns cloud-hypervisor devices/user_devices JSON and command-line options, with the boot-firmware warning', async () => {
    const response = await attachments('GetVmConfig', {
      hypervisor: 'HYPERVISOR_KIND_CLOUD_HYPERVISOR',
      devices: [{ source: { pciBdf: VF2 }, deviceId: 'disk0', bootIndex: 1 }, { source: { vfioUserSocket: '/run/vfiod/vm1.sock' } }],
    });
    expect(JSON.parse(response['cloudHypervisor']!.devicesJson)).toEqual([{ path: `/sys/bus/pci/devices/${VF2}`, id: 'disk0' }]);
    expect(JSON.parse(response['cloudHypervisor']!.userDevicesJson)).toEqual([expect.objectContaining({ socket: '/run/vfiod/vm1.sock' })]);
    expect(response['cloudHypervisor']!.args).toContain('--device');
    expect(response['cloudHypervisor']!.sharedMemoryRequired).toBe(true);
    expect(response['warnings'].join(' ')).toMatch(/CLOUDHV/);
    expect(response['qemu']).toBeNull();
    expect(response['prepared']).toEqual([]);
    expect(response['vfioBackends']).toEqual({ disk0: 'VFIO_BACKEND_GROUP' });
    expect(host.driverOf(VF2)).toBeNull();
    // v48 cannot open a device through iommufd: refused with the reason, before anything is prepared
    await expectStatus(
      attachments('GetVmConfig', { hypervisor: 'HYPERVISOR_KIND_CLOUD_HYPERVISOR', vmId: 'vm1', devices: [{ source: { pciBdf: VF2 }, vfioBackend: 'VFIO_BACKEND_IOMMUFD' }], prepareDevices: true }),
      'FAILED_PRECONDITION',
      'needs iommufd (asked for)',
      'cloud-hypervisor v48',
    );
    expect(host.driverOf(VF2)).toBeNull();
  });

  it('returns QEMU arguments with bootindex, and prepares the PCI devices for the VM when asked (all or nothing)', async () => {
    const response = await attachments('GetVmConfig', {
      hypervisor: 'HYPERVISOR_KIND_QEMU',
      vmId: 'vm1',
      devices: [{ source: { pciBdf: VF1 }, deviceId: 'boot0', bootIndex: 1 }],
      prepareDevices: true,
    });
    const args: string = response['qemu']!.args.join(' ');
    expect(args).toContain('vfio-pci');
    expect(args).toContain(`host=${VF1}`);
    expect(response['vfioBackends']).toEqual({ boot0: 'VFIO_BACKEND_GROUP' });
    // iommufd: this fake VF on vfio-pci has a group node and no cdev; the vGPU VF on nvidia goes through iommufd by itself
    await expectStatus(
      attachments('GetVmConfig', { hypervisor: 'HYPERVISOR_KIND_QEMU', devices: [{ source: { pciBdf: VF1 }, vfioBackend: 'VFIO_BACKEND_IOMMUFD' }] }),
      'FAILED_PRECONDITION',
      `${VF1} has a VFIO group but no cdev`,
    );
    writeFileSync(path.join(host.roots.dev, 'iommu'), '');
    const iommufd = await attachments('GetVmConfig', { hypervisor: 'HYPERVISOR_KIND_QEMU', devices: [{ source: { pciBdf: VGPU_VF }, deviceId: 'vgpu0' }] });
    expect(iommufd['qemu']!.args).toEqual(expect.arrayContaining(['-object', 'iommufd,id=vfiod-iommufd0', `vfio-pci,iommufd=vfiod-iommufd0,sysfsdev=/sys/bus/pci/devices/${VGPU_VF},id=vgpu0,bus=vfiod-rp0`]));
    expect(iommufd['vfioBackends']).toEqual({ vgpu0: 'VFIO_BACKEND_IOMMUFD' });
    expect(args).toMatch(/bootindex.?1/);
    expect(response['prepared']).toEqual([expect.objectContaining({ bdf: VF1, changed: true, vfioGroupDev: host.groupDevPath(3) })]);
    expect(host.driverOf(VF1)).toBe('vfio-pci');

    // The second device cannot be prepared: the first (VF2) is given back, VF1 (prepared by the earlier call) stays.
    await expectStatus(
      attachments('GetVmConfig', {
        hypervisor: 'HYPERVISOR_KIND_QEMU',
        vmId: 'vm2',
        devices: [{ source: { pciBdf: VF2 } }, { source: { pciBdf: MOUNTED } }],
        prepareDevices: true,
      }),
      'FAILED_PRECONDITION', 'VM vm2', MOUNTED, `released ${VF2} again`,
    );
    expect(host.driverOf(VF2)).toBeNull();
    expect(host.driverOf(VF1)).toBe('vfio-pci');

    // A GPU prepared for the VM brings its audio function along into the configuration.
    const gpu = await attachments('GetVmConfig', { hypervisor: 'HYPERVISOR_KIND_QEMU', vmId: 'vm3', devices: [{ source: { pciBdf: GPU }, deviceId: 'gpu0' }], prepareDevices: true });
    expect(gpu['qemu']!.args.join(' ')).toContain(`host=${GPU_AUDIO},id=gpu0-f1`);
    expect(gpu['warnings'].join(' ')).not.toContain('not prepared');
    expect(host.driverOf(GPU_AUDIO)).toBe('vfio-pci');
    // Without prepare_devices, an unprepared device is reported.
    const unprepared = await attachments('GetVmConfig', { hypervisor: 'HYPERVISOR_KIND_QEMU', vmId: 'vm4', devices: [{ source: { pciBdf: VF3 } }] });
    expect(unprepared['warnings'].join(' ')).toContain(`${VF3} is not prepared for VM vm4`);

    await expectStatus(attachments('GetVmConfig', { devices: [] }), 'INVALID_ARGUMENT', 'hypervisor is required');
    await expectStatus(attachments('GetVmConfig', { hypervisor: 'HYPERVISOR_KIND_QEMU', devices: [{ source: { pciBdf: VF2 } }], prepareDevices: true }), 'INVALID_ARGUMENT', 'vm_id is required');
    await expectStatus(attachments('GetVmConfig', { hypervisor: 'HYPERVISOR_KIND_QEMU', devices: [{}] }), 'INVALID_ARGUMENT', 'devices[0]', 'source is required');
    await expectStatus(attachments('GetVmConfig', { hypervisor: 'HYPERVISOR_KIND_QEMU', devices: [{ source: { pciBdf: VF2 }, deviceId: '9 bad id' }] }), 'INVALID_ARGUMENT', '9 bad id');
  });
});

describe('CLI client', () => {
  const run = async (fn: typeof runAttach, ...argv: string[]) => {
    let stdout = '';
    let stderr = '';
    const code = await fn([...argv, '--daemon', daemon.socketPath!], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
    return { code, stdout, stderr };
  };

  it('attach, attachments, detach, vm-config and devices through the daemon', async () => {
    const { endpoint } = await vmm('vm1');
    const attached = await run(runAttach, '--vm', 'vm1', '--ch-socket', endpoint['cloudHypervisorApiSocket']!, '--bdf', '01:00.1', '--device-id', 'disk1');
    expect(attached.code, attached.stderr).toBe(0);
    expect(attached.stdout).toContain('attached disk1 to VM vm1');
    expect(attached.stdout).toContain(`${VF1} -> disk1 at guest 0000:00:04.0 (group)`);
    const list = await run(runAttachments);
    expect(list.stdout).toMatch(/^VM\s+DEVICE ID\s+SOURCE/);
    expect(list.stdout).toMatch(/vm1\s+disk1\s+0000:01:00.1\s+cloud-hypervisor\s+attached/);
    const json = JSON.parse((await run(runAttachments, '--vm', 'vm1', '--json')).stdout);
    expect(json.attachments[0].deviceId).toBe('disk1');

    const refused = await run(runAttach, '--vm', 'vm2', '--ch-socket', endpoint['cloudHypervisorApiSocket']!, '--bdf', VF1);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('FAILED_PRECONDITION');
    expect((await run(runAttach, '--vm', 'vm1', '--bdf', VF1)).stderr).toContain('--ch-socket');
    expect((await run(runAttach, '--vm', 'vm1', '--ch-socket', 'x', '--bdf', VF1, '--vfio-user', '/x')).code).toBe(2);
    const monitorWithoutCh = await run(runAttach, '--vm', 'vm1', '--qmp-socket', '/x.qmp', '--ch-event-monitor', '/x.events', '--bdf', VF1);
    expect(monitorWithoutCh.code).toBe(2);
    expect(monitorWithoutCh.stderr).toContain('--ch-event-monitor goes with --ch-socket');
    const monitored = await run(runAttach, '--vm', 'vm1', '--ch-socket', endpoint['cloudHypervisorApiSocket']!, '--ch-event-monitor', path.join(dir, 'vm1.events'), '--vfio-user', '/run/vfiod/m.sock', '--device-id', 'm1', '--json');
    expect(monitored.code, monitored.stderr).toBe(0);
    expect(JSON.parse(monitored.stdout).attachment.endpoint.cloudHypervisorEventMonitor).toBe(path.join(dir, 'vm1.events'));
    expect((await run(runDetach, '--vm', 'vm1', '--device-id', 'm1', '--timeout', '2')).code).toBe(0);

    const shown = await run(runDevicesViaDaemon, 'show', VF1);
    expect(shown.stdout).toContain('claim:           vm1 (prepared)');
    const devList = await run(runDevicesViaDaemon, 'list', '--pf', '01:00.0');
    expect(devList.stdout).toMatch(/0000:01:00.1\s+15b3:6001\s+nvme\(010802\)\s+vfio-pci/);
    expect(devList.stdout).toContain('claimed:vm1');

    const missing = await run(runDetach, '--vm', 'vm1', '--device-id', 'nope');
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('NOT_FOUND');
    const detached = await run(runDetach, '--vm', 'vm1', '--device-id', 'disk1', '--timeout', '2');
    expect(detached.code, detached.stderr).toBe(0);
    expect(detached.stdout).toContain(`released ${VF1} to the host`);
    expect(host.driverOf(VF1)).toBe('nvme');

    const prepared = await run(runDevicesViaDaemon, 'prepare', VF3, '--owner', 'vm5');
    expect(prepared.stdout).toContain(`prepared ${VF3} for vm5`);
    expect((await run(runDevicesViaDaemon, 'prepare', VF3, '--owner', 'vm6')).code).toBe(4);
    expect((await run(runDevicesViaDaemon, 'release', VF3, '--owner', 'vm5')).stdout).toContain('restored to nvme');

    const qemu = await run(runVmConfig, '--hypervisor', 'qemu', '--bdf', `${VF2}@1`, '--vfio-user', '/run/vfiod/a.sock', '--memory', '4G');
    expect(qemu.code, qemu.stderr).toBe(0);
    expect(qemu.stdout).toContain(`host=${VF2}`);
    expect(qemu.stdout).toContain('vfio-user-pci');
    const ch = await run(runVmConfig, '--hypervisor', 'cloud-hypervisor', '--bdf', VF2);
    expect(ch.stdout).toContain(`"devices": [{"path":"/sys/bus/pci/devices/${VF2}"`);
    expect((await run(runVmConfig, '--hypervisor', 'xen')).code).toBe(2);
    const chIommufd = await run(runVmConfig, '--hypervisor', 'cloud-hypervisor', '--bdf', VF2, '--vfio-backend', 'iommufd');
    expect(chIommufd.code).toBe(1);
    expect(chIommufd.stderr).toContain('cloud-hypervisor v48 opens VFIO devices through their IOMMU group only');
    const badBackend = await run(runVmConfig, '--hypervisor', 'qemu', '--bdf', VF2, '--vfio-backend', 'legacy');
    expect(badBackend.code).toBe(2);
    expect(badBackend.stderr).toContain("--vfio-backend must be auto, group or iommufd, not 'legacy'");
    expect((await run(runVmConfig, '--hypervisor', 'qemu', '--bdf', VF2, '--prepare')).stderr).toContain('--vm');
  });
});
