/**
 * The QEMU adapter's hot-plug of a host PCI function (src/hypervisor/qmp.ts, addPciDevice) against a scripted QMP
 * VM (test/helpers/scripted-qmp.ts): the exact commands it sends for each VFIO backend. Through the group: a vfio-pci
 * device_add with host=<bdf>. Through iommufd: the VM's iommufd object added unless QOM already lists it, then a
 * vfio-pci device_add with iommufd=<that object> and sysfsdev=<the function's sysfs path>, and no host=.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { QemuAdapter } from '../../../src/hypervisor/qmp.js';
import { QEMU_IOMMUFD_OBJECT_ID } from '../../../src/hypervisor/vfio-backend.js';
import { expectError, temporaryDir } from '../../helpers/common.js';
import { fakeQemuVm, type FakeQemuVm, type QmpCall, scriptedQmp, type ScriptedQmp } from '../../helpers/scripted-qmp.js';

const BDF = '0000:01:00.1';

let dir: string;
let qmp: ScriptedQmp | undefined;
let vm: FakeQemuVm;

beforeEach(() => {
  dir = temporaryDir('vfiod-qmp-hotplug-');
});
afterEach(async () => {
  if (qmp) await new Promise((resolve) => qmp!.server.close(resolve));
  qmp = undefined;
  rmSync(dir, { recursive: true, force: true });
});

async function adapterFor(options: Parameters<typeof fakeQemuVm>[0]): Promise<QemuAdapter> {
  vm = fakeQemuVm(options);
  const qmpSocket = path.join(dir, 'q1.qmp');
  qmp = await scriptedQmp(qmpSocket, vm.reply);
  return new QemuAdapter({ vmId: 'q1', qmpSocket });
}

/** What the adapter sent after the capabilities negotiation of each session. */
const sent = (): QmpCall[] => qmp!.calls.filter((c) => c.execute !== 'qmp_capabilities');

/** The empty-root-port search of a VM with the one port rp1 (QOM under -S: query-pci has no bus numbers yet). */
const FIND_FREE_PORT: QmpCall[] = [
  { execute: 'qom-list', arguments: { path: '/machine/peripheral' } },
  { execute: 'qom-list', arguments: { path: '/machine/peripheral/rp1' } },
  { execute: 'qom-list', arguments: { path: '/machine/peripheral/rp1/rp1' } },
  { execute: 'qom-list', arguments: { path: '/machine/peripheral-anon' } },
];

describe('QEMU hot-plug of a host PCI function: the QMP commands per VFIO backend', () => {
  it('group: device_add vfio-pci with host=<bdf>; no iommufd object is looked for or added', async () => {
    const adapter = await adapterFor({ rootPorts: ['rp1'] });
    const added = await adapter.addPciDevice({ hostBdf: BDF, id: 'vf0', vfioBackend: 'group' }, 5000);
    expect(added).toEqual({ id: 'vf0', guestBdf: '0000:00:01.0', coldAdded: false, bus: 'rp1' });
    expect(sent()).toEqual([
      ...FIND_FREE_PORT,
      { execute: 'device_add', arguments: { driver: 'vfio-pci', host: BDF, id: 'vf0', bus: 'rp1' } },
      { execute: 'query-pci' },
    ]);
    expect(vm.objects.size).toBe(0);
  });

  it('no backend given is the group', async () => {
    const adapter = await adapterFor({ rootPorts: ['rp1'] });
    await adapter.addPciDevice({ hostBdf: BDF, id: 'vf0' }, 5000);
    expect(sent().filter((c) => c.execute === 'device_add' || c.execute === 'object-add' || c.arguments?.path === '/objects')).toEqual([
      { execute: 'device_add', arguments: { driver: 'vfio-pci', host: BDF, id: 'vf0', bus: 'rp1' } },
    ]);
  });

  it('iommufd on a VM without the object: object-add iommufd, then device_add vfio-pci with iommufd= and sysfsdev=', async () => {
    const adapter = await adapterFor({ rootPorts: ['rp1'] });
    await adapter.addPciDevice({ hostBdf: BDF, id: 'vf0', vfioBackend: 'iommufd', bootIndex: 1 }, 5000);
    expect(sent()).toEqual([
      ...FIND_FREE_PORT,
      { execute: 'qom-list', arguments: { path: '/objects' } },
      { execute: 'object-add', arguments: { 'qom-type': 'iommufd', id: QEMU_IOMMUFD_OBJECT_ID } },
      {
        execute: 'device_add',
        arguments: { driver: 'vfio-pci', iommufd: QEMU_IOMMUFD_OBJECT_ID, sysfsdev: `/sys/bus/pci/devices/${BDF}`, id: 'vf0', bootindex: 1, bus: 'rp1' },
      },
      { execute: 'query-pci' },
    ]);
    expect([...vm.objects]).toEqual([QEMU_IOMMUFD_OBJECT_ID]);
  });

  it('iommufd on a VM that has the object already (an earlier attach): no second object-add', async () => {
    const adapter = await adapterFor({ rootPorts: ['rp1'], objects: [QEMU_IOMMUFD_OBJECT_ID] });
    await adapter.addPciDevice({ hostBdf: BDF, id: 'vf0', vfioBackend: 'iommufd', bus: 'rp1' }, 5000);
    // bus given: no root-port search either
    expect(sent()).toEqual([
      { execute: 'qom-list', arguments: { path: '/objects' } },
      { execute: 'device_add', arguments: { driver: 'vfio-pci', iommufd: QEMU_IOMMUFD_OBJECT_ID, sysfsdev: `/sys/bus/pci/devices/${BDF}`, id: 'vf0', bus: 'rp1' } },
      { execute: 'query-pci' },
    ]);
  });

  it('the VM lists what was added through either backend by its host function (qom-get sysfsdev, else host)', async () => {
    const adapter = await adapterFor({ rootPorts: ['rp1', 'rp2'] });
    await adapter.addPciDevice({ hostBdf: BDF, id: 'vf0', vfioBackend: 'group' }, 5000);
    await adapter.addPciDevice({ hostBdf: '0000:01:00.2', id: 'vf1', vfioBackend: 'iommufd' }, 5000);
    const listed = await adapter.listDevices(5000);
    expect(listed.filter((d) => d.id.startsWith('vf')).map((d) => [d.id, d.hostBdf])).toEqual([['vf0', BDF], ['vf1', '0000:01:00.2']]);
  });
});

describe('QEMU: the VFIO backend of the vfio-pci devices a VM already has (listVfioDevices)', () => {
  it('reads each vfio-pci\'s iommufd link, with an id (/machine/peripheral) or without (/machine/peripheral-anon), hot-plugged or not', async () => {
    const adapter = await adapterFor({
      rootPorts: ['rp1'],
      vfioDevices: [
        { id: 'hostdev0', host: '0000:01:00.2' },
        { host: '0000:01:00.3', iommufd: 'iommufd0' },
      ],
    });
    await adapter.addPciDevice({ hostBdf: BDF, id: 'vf0', vfioBackend: 'iommufd' }, 5000);
    qmp!.calls.length = 0;

    expect(await adapter.listVfioDevices(5000)).toEqual([
      { id: 'hostdev0', backend: 'group' },
      { id: 'vf0', backend: 'iommufd' },
      { id: '/machine/peripheral-anon/device[1]', backend: 'iommufd' },
    ]);
    // root ports and other devices are not asked about
    expect(sent()).toEqual([
      { execute: 'qom-list', arguments: { path: '/machine/peripheral' } },
      { execute: 'qom-get', arguments: { path: '/machine/peripheral/hostdev0', property: 'iommufd' } },
      { execute: 'qom-get', arguments: { path: '/machine/peripheral/vf0', property: 'iommufd' } },
      { execute: 'qom-list', arguments: { path: '/machine/peripheral-anon' } },
      { execute: 'qom-get', arguments: { path: '/machine/peripheral-anon/device[1]', property: 'iommufd' } },
    ]);
  });

  it('a QEMU without iommufd (no iommufd property on vfio-pci): its devices use the group', async () => {
    vm = fakeQemuVm({ rootPorts: ['rp1'], vfioDevices: [{ id: 'hostdev0', host: BDF }] });
    const qmpSocket = path.join(dir, 'q1.qmp');
    qmp = await scriptedQmp(qmpSocket, (command, args, id, socket) =>
      command === 'qom-get' && args?.property === 'iommufd'
        ? `${JSON.stringify({ error: { class: 'GenericError', desc: "Property 'vfio-pci.iommufd' not found" }, id })}\n`
        : vm.reply(command, args, id, socket),
    );
    const adapter = new QemuAdapter({ vmId: 'q1', qmpSocket });
    expect(await adapter.listVfioDevices(5000)).toEqual([{ id: 'hostdev0', backend: 'group' }]);
  });

  it('any other QMP error is the caller\'s to handle, with the VM in the message', async () => {
    vm = fakeQemuVm({ rootPorts: ['rp1'], vfioDevices: [{ id: 'hostdev0', host: BDF }] });
    const qmpSocket = path.join(dir, 'q1.qmp');
    qmp = await scriptedQmp(qmpSocket, (command, args, id, socket) =>
      command === 'qom-get' ? `${JSON.stringify({ error: { class: 'GenericError', desc: 'something broke' }, id })}\n` : vm.reply(command, args, id, socket),
    );
    const adapter = new QemuAdapter({ vmId: 'q1', qmpSocket });
    await expectError(adapter.listVfioDevices(5000), 'INTERNAL', /^qom-get: VM q1 \(QMP .*\): something broke/);
  });
});

describe('QEMU hot-plug errors say whether device_add reached QEMU (commandSent)', () => {
  it('no greeting (another client holds QMP): DEADLINE_EXCEEDED VMM_TIMEOUT with commandSent false, nothing sent', async () => {
    const qmpSocket = path.join(dir, 'q1.qmp');
    qmp = await scriptedQmp(qmpSocket, fakeQemuVm({ rootPorts: ['rp1'] }).reply, () => undefined);
    const adapter = new QemuAdapter({ vmId: 'q1', qmpSocket });
    const e = await expectError(adapter.addPciDevice({ hostBdf: BDF, id: 'vf0' }, 200), 'DEADLINE_EXCEEDED', /no QMP greeting within 200 ms/);
    expect(e.details).toEqual({ reason: 'VMM_TIMEOUT', vmId: 'q1', socketPath: qmpSocket, commandSent: false });
    expect(qmp.commands).toEqual([]);
  });

  it('a step before device_add that gets no answer (the root-port search): commandSent false, though that query was sent', async () => {
    const vmReply = fakeQemuVm({ rootPorts: ['rp1'] }).reply;
    const qmpSocket = path.join(dir, 'q1.qmp');
    qmp = await scriptedQmp(qmpSocket, (command, args, id, socket) => (command === 'qom-list' ? undefined : vmReply(command, args, id, socket)));
    const adapter = new QemuAdapter({ vmId: 'q1', qmpSocket });
    const e = await expectError(adapter.addPciDevice({ hostBdf: BDF, id: 'vf0' }, 200), 'DEADLINE_EXCEEDED', /qom-list: VM q1 .*no answer within 200 ms/);
    expect(e.details).toMatchObject({ reason: 'VMM_TIMEOUT', commandSent: false });
    expect(qmp.commands).not.toContain('device_add');
  });

  it('device_add sent and not answered: commandSent true (QEMU may have added it)', async () => {
    const vmReply = fakeQemuVm({ rootPorts: ['rp1'] }).reply;
    const qmpSocket = path.join(dir, 'q1.qmp');
    qmp = await scriptedQmp(qmpSocket, (command, args, id, socket) => (command === 'device_add' ? undefined : vmReply(command, args, id, socket)));
    const adapter = new QemuAdapter({ vmId: 'q1', qmpSocket });
    const e = await expectError(adapter.addPciDevice({ hostBdf: BDF, id: 'vf0' }, 200), 'DEADLINE_EXCEEDED', `device_add vf0: VM q1 (QMP ${qmpSocket}): no answer within 200 ms`);
    expect(e.details).toEqual({ reason: 'VMM_TIMEOUT', vmId: 'q1', socketPath: qmpSocket, commandSent: true });
  });

  it('device_add refused by QEMU: its answer, without commandSent', async () => {
    const adapter = await adapterFor({ rootPorts: ['rp1'] });
    const e = await expectError(adapter.addPciDevice({ hostBdf: BDF, id: 'vf0', bus: 'nope' }, 2000), 'NOT_FOUND', /Bus 'nope' not found/);
    expect(e.details.commandSent).toBeUndefined();
  });
});
