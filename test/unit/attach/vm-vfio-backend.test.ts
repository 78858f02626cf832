/**
 * One VFIO backend per QEMU VM, whoever gave the VM its VFIO devices: a hot-plug follows the backend of the vfio-pci
 * devices the VM already has, as QEMU reports them (src/attach/attachments.ts asks through the QEMU adapter's
 * listVfioDevices), not only vfiod's records. A VM started with vfio-pci devices on its command line is the case the
 * records cannot see. The orchestrator runs the real passthrough manager on test/helpers/fake-sysfs.ts and the real
 * QEMU adapter against a scripted QMP VM (test/helpers/scripted-qmp.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { AttachmentManager, HypervisorEndpoint } from '../../../src/attach/attachments.js';
import type { ClaimStore } from '../../../src/devices/claims.js';
import { QEMU_IOMMUFD_OBJECT_ID } from '../../../src/hypervisor/vfio-backend.js';
import { closeAttachSetup, newAttachSetup } from '../../helpers/attach-setup.js';
import { expectError } from '../../helpers/common.js';
import type { FakeHost } from '../../helpers/fake-sysfs.js';
import { fakeQemuVm, type FakeQemuVm, type QmpReply, scriptedQmp, type ScriptedQmp, type StartupVfioDevice } from '../../helpers/scripted-qmp.js';

/** On nvme: prepare rebinds it to vfio-pci. */
const VF1 = '0000:01:00.1';
/** Another host's function the VM was started with (the fake VM does not care which). */
const STARTUP_BDF = '0000:01:00.3';

let host: FakeHost;
let dir: string;
let claims: ClaimStore;
let manager: AttachmentManager;
let qmp: ScriptedQmp | undefined;
let vm: FakeQemuVm;

beforeEach(() => {
  ({ host, dir, claims, manager } = newAttachSetup('vfiod-attach-vm-backend-'));
  writeFileSync(path.join(host.roots.dev, 'iommu'), ''); // iommufd itself is possible on this host
});
afterEach(async () => {
  await closeAttachSetup({ host, dir, claims, manager }, qmp);
  qmp = undefined;
});

/** A running QEMU VM started with `vfioDevices` on its command line; `wrap` may change its answers. */
async function qemuVm(vfioDevices: StartupVfioDevice[], wrap?: (reply: QmpReply) => QmpReply): Promise<HypervisorEndpoint> {
  const qmpSocket = path.join(dir, 'q1.qmp');
  vm = fakeQemuVm({ rootPorts: ['rp1', 'rp2'], vfioDevices });
  qmp = await scriptedQmp(qmpSocket, wrap ? wrap(vm.reply) : vm.reply);
  return { hypervisor: 'qemu', qmpSocket };
}

/** A kernel with VFIO cdevs: VF1 gets vfio-dev/vfio3 once it is on vfio-pci (so iommufd can take it). */
function cdevOnVfioBind(): void {
  host.afterWrite = () => {
    if (host.driverOf(VF1) === 'vfio-pci') mkdirSync(path.join(host.devDir(VF1), 'vfio-dev', 'vfio3'), { recursive: true });
  };
}

/** What the VM was told to change (QOM reads aside). */
const changes = (): string[] => qmp!.commands.filter((c) => !['qmp_capabilities', 'qom-list', 'qom-get', 'query-pci'].includes(c));

describe('QEMU: a hot-plug follows the VFIO backend of the devices the VM already has, not only vfiod\'s records', () => {
  it('a VM started with a vfio-pci through its group refuses an iommufd hot-plug before anything is rebound', async () => {
    const endpoint = await qemuVm([{ id: 'hostdev0', host: STARTUP_BDF }]);
    const e = await expectError(
      manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', vfioBackend: 'iommufd' }),
      'FAILED_PRECONDITION',
      /^attach PCI device 0000:01:00\.1 to VM q1 as vf0: vf0 \(0000:01:00\.1\) would go through iommufd while hostdev0 goes through the group/,
    );
    expect(e.message).not.toMatch(/released|rollback/);
    expect(e.details).toEqual({ reason: 'VFIO_BACKENDS_MIXED', bdf: VF1 });
    expect(host.writes).toEqual([]);
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(claims.list()).toEqual([]);
    expect(manager.list()).toEqual([]);
    expect(changes()).toEqual([]);
    expect(vm.objects.size).toBe(0);

    // the group (asked for, or auto) is what that VM takes
    const ok = await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0' });
    expect(ok.attachment.functions[0]).toMatchObject({ hostBdf: VF1, vfioBackend: 'group' });
    expect(vm.devices.get('vf0')).toMatchObject({ driver: 'vfio-pci', host: VF1 });
  });

  it("'auto' takes iommufd on a VM started with a vfio-pci through iommufd (one without an id)", async () => {
    const endpoint = await qemuVm([{ host: STARTUP_BDF, iommufd: 'iommufd0' }]);
    cdevOnVfioBind();
    const result = await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0' });
    expect(result.attachment.functions[0]).toMatchObject({ hostBdf: VF1, vfioBackend: 'iommufd' });
    expect(vm.devices.get('vf0')).toMatchObject({ driver: 'vfio-pci', iommufd: QEMU_IOMMUFD_OBJECT_ID, sysfsdev: `/sys/bus/pci/devices/${VF1}` });
    expect(result.warnings).toEqual([]);
  });

  it("a VM started with a vfio-pci through iommufd refuses 'group' before anything is rebound", async () => {
    const endpoint = await qemuVm([{ id: 'gpu0', host: STARTUP_BDF, iommufd: 'iommufd0' }]);
    const e = await expectError(
      manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', vfioBackend: 'group' }),
      'FAILED_PRECONDITION',
      /^attach PCI device 0000:01:00\.1 to VM q1 as vf0: vf0 \(0000:01:00\.1\) would go through its VFIO group while gpu0 goes through iommufd/,
    );
    expect(e.details).toEqual({ reason: 'VFIO_BACKENDS_MIXED', bdf: VF1 });
    expect(host.writes).toEqual([]);
    expect(claims.list()).toEqual([]);
    expect(manager.list()).toEqual([]);
    expect(changes()).toEqual([]);
  });

  it("the VM's own devices win over vfiod's records when they disagree", async () => {
    const endpoint = await qemuVm([]);
    await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: '0000:01:00.2' }, deviceId: 'vf2' });
    expect(manager.get('q1', 'vf2').functions[0]!.vfioBackend).toBe('group');
    // by hand, over QMP: vf2 deleted (vfiod's record stays) and a device added through iommufd
    vm.devices.delete('vf2');
    vm.devices.set('gpu0', { driver: 'vfio-pci', id: 'gpu0', iommufd: 'iommufd0', sysfsdev: '/sys/bus/pci/devices/0000:02:00.0' });
    cdevOnVfioBind();
    const result = await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0' });
    expect(result.attachment.functions[0]).toMatchObject({ hostBdf: VF1, vfioBackend: 'iommufd' });
  });

  it('a VM that already mixes both backends takes nothing more, naming its devices', async () => {
    const endpoint = await qemuVm([{ id: 'hostdev0', host: STARTUP_BDF }, { id: 'gpu0', host: '0000:02:00.0', iommufd: 'iommufd0' }]);
    const e = await expectError(
      manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0' }),
      'FAILED_PRECONDITION',
      /VM q1 already has VFIO devices through the group \(hostdev0\) and through iommufd \(gpu0\)/,
      /vf0 is not added to it/,
    );
    expect(e.details).toEqual({ reason: 'VFIO_BACKENDS_MIXED', bdf: VF1 });
    expect(host.writes).toEqual([]);
    expect(changes()).toEqual([]);
  });

  it('a VM that cannot say (a QMP error): vfiod\'s records decide, with a warning; the attach goes on', async () => {
    const endpoint = await qemuVm([{ id: 'hostdev0', host: STARTUP_BDF }], (reply) => (command, args, id, socket) =>
      command === 'qom-get' && args?.property === 'iommufd' ? `${JSON.stringify({ error: { class: 'GenericError', desc: 'QOM is having a bad day' }, id })}\n` : reply(command, args, id, socket),
    );
    cdevOnVfioBind();
    const result = await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', vfioBackend: 'iommufd' });
    // no record of anything in the VM: iommufd, as asked (QEMU would refuse the device_add if the VM had groups)
    expect(result.attachment.functions[0]).toMatchObject({ hostBdf: VF1, vfioBackend: 'iommufd' });
    expect(result.warnings).toEqual([expect.stringMatching(/^could not ask VM q1 which VFIO backend its devices use \(.*QOM is having a bad day\): deciding from vfiod's records \(no VFIO devices\)$/)]);
  });
});
