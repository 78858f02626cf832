/**
 * A VFIO backend the VM cannot take is refused before the device is touched, on QEMU as on cloud-hypervisor
 * (src/attach/attachments.ts): no driver_override/unbind/bind write in the fake sysfs, no claim, no record, and the
 * VMM is not contacted, or on QEMU only asked which backend its VFIO devices use (QOM reads, nothing added). The orchestrator runs the real passthrough manager on test/helpers/fake-sysfs.ts and the real
 * QEMU adapter against a scripted QMP socket (test/helpers/scripted-qmp.ts).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { AttachmentManager, HypervisorEndpoint } from '../../../src/attach/attachments.js';
import type { ClaimStore } from '../../../src/devices/claims.js';
import { closeAttachSetup, newAttachSetup, scriptedQemuVm } from '../../helpers/attach-setup.js';
import { expectError } from '../../helpers/common.js';
import type { FakeHost } from '../../helpers/fake-sysfs.js';
import type { ScriptedQmp } from '../../helpers/scripted-qmp.js';

/** On nvme: prepare would rebind it to vfio-pci. */
const VF1 = '0000:01:00.1';
/** Unbound (drivers_probe gives it to nvme): prepare would bind it to vfio-pci. */
const VF2 = '0000:01:00.2';

let host: FakeHost;
let dir: string;
let claims: ClaimStore;
let manager: AttachmentManager;
let qmp: ScriptedQmp | undefined;

beforeEach(() => {
  ({ host, dir, claims, manager } = newAttachSetup('vfiod-attach-backend-'));
});
afterEach(async () => {
  await closeAttachSetup({ host, dir, claims, manager }, qmp);
  qmp = undefined;
});

async function qemuVm(): Promise<HypervisorEndpoint> {
  const vm = await scriptedQemuVm(dir);
  qmp = vm.qmp;
  return vm.endpoint;
}

/** The sysfs writes that rebind a device (prepare, and release on rollback). */
const bindingWrites = (): Array<[string, string]> => host.writes.filter(([file]) => /driver_override|unbind|bind|drivers_probe/.test(file));

describe('a VFIO backend the VM cannot take is refused before anything is rebound', () => {
  it('QEMU: iommufd asked for on a host without /dev/iommu: the same FAILED_PRECONDITION as cloud-hypervisor gives, nothing written', async () => {
    const endpoint = await qemuVm();
    const e = await expectError(
      manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', vfioBackend: 'iommufd' }),
      'FAILED_PRECONDITION',
      /^attach PCI device 0000:01:00\.1 to VM q1 as vf0, device vf0: 0000:01:00\.1 needs iommufd and the host has no \/dev\/iommu/,
    );
    // refused up front: no rollback was needed, so the message says none
    expect(e.message).not.toMatch(/released|rollback/);
    expect(e.details).toEqual({ reason: 'IOMMUFD_UNAVAILABLE', bdf: VF1 });
    expect(bindingWrites()).toEqual([]);
    expect(host.writes).toEqual([]);
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(claims.list()).toEqual([]);
    expect(manager.list()).toEqual([]);
    expect(qmp!.commands).toEqual([]);

    // cloud-hypervisor refuses the same request the same way (its reason: it has no iommufd at all)
    const ch: HypervisorEndpoint = { hypervisor: 'cloud-hypervisor', apiSocket: path.join(dir, 'ch.sock') };
    const c = await expectError(manager.attach({ vmId: 'c1', endpoint: ch, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', vfioBackend: 'iommufd' }), 'FAILED_PRECONDITION');
    expect(c.details).toEqual({ reason: 'VMM_CANNOT_USE_IOMMUFD', bdf: VF1 });
    expect(host.writes).toEqual([]);
  });

  it('QEMU, one backend per VM: the other backend than the VM has is refused before prepare, with the devices it would clash with', async () => {
    const endpoint = await qemuVm();
    // the VM gets VF2 through its group (auto)
    const first = await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF2 }, deviceId: 'vf2' });
    expect(first.attachment.functions[0]).toMatchObject({ hostBdf: VF2, vfioBackend: 'group', bus: 'rp1' });
    writeFileSync(path.join(host.roots.dev, 'iommu'), ''); // so iommufd itself is possible on this host
    const writesBefore = host.writes.length;
    const commandsBefore = qmp!.commands.length;

    const e = await expectError(
      manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', vfioBackend: 'iommufd' }),
      'FAILED_PRECONDITION',
      /^attach PCI device 0000:01:00\.1 to VM q1 as vf0: vf0 \(0000:01:00\.1\) would go through iommufd while vf2 goes through the group/,
    );
    expect(e.message).not.toMatch(/released|rollback/);
    expect(e.details).toEqual({ reason: 'VFIO_BACKENDS_MIXED', bdf: VF1 });
    expect(host.writes.slice(writesBefore)).toEqual([]);
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(claims.get(VF1)).toBeUndefined();
    expect(manager.list('q1').map((a) => a.deviceId)).toEqual(['vf2']);
    // the VM was asked about its VFIO devices, nothing more
    expect(qmp!.commands.slice(commandsBefore).filter((c) => !['qmp_capabilities', 'qom-list', 'qom-get'].includes(c))).toEqual([]);

    // asking for the group, or leaving it to auto, is fine
    const second = await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', vfioBackend: 'group' });
    expect(second.attachment.functions[0]).toMatchObject({ hostBdf: VF1, vfioBackend: 'group', bus: 'rp2' });
  });
});
