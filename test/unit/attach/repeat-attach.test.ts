/**
 * A repeat attach of a device already attached to the VM (src/attach/attachments.ts) returns the attachment unchanged
 * when it asks for what the attachment is; one that asks for the other VFIO backend is refused, the same rule on QEMU
 * and on cloud-hypervisor (whose attachments all go through the group). The orchestrator runs the real passthrough
 * manager on test/helpers/fake-sysfs.ts, the real QEMU adapter against a scripted QMP VM and the real cloud-hypervisor
 * client against the fake VMM (test/helpers/fake-cloud-hypervisor.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { AttachmentManager, HypervisorEndpoint } from '../../../src/attach/attachments.js';
import type { ClaimStore } from '../../../src/devices/claims.js';
import { statusDetailsOf } from '../../../src/daemon/status-details.js';
import { closeAttachSetup, newAttachSetup, scriptedQemuVm } from '../../helpers/attach-setup.js';
import { expectError } from '../../helpers/common.js';
import { type FakeCloudHypervisor, fakeChSocket, vfioHoldingFake } from '../../helpers/fake-cloud-hypervisor.js';
import type { FakeHost } from '../../helpers/fake-sysfs.js';
import type { ScriptedQmp } from '../../helpers/scripted-qmp.js';

/** On nvme: prepare rebinds it to vfio-pci. */
const VF1 = '0000:01:00.1';

let host: FakeHost;
let dir: string;
let claims: ClaimStore;
let manager: AttachmentManager;
let qmp: ScriptedQmp | undefined;
let ch: FakeCloudHypervisor | undefined;

beforeEach(() => {
  ({ host, dir, claims, manager } = newAttachSetup('vfiod-attach-repeat-'));
});
afterEach(async () => {
  await ch?.stop();
  ch = undefined;
  await closeAttachSetup({ host, dir, claims, manager }, qmp);
  qmp = undefined;
});

async function qemuVm(): Promise<HypervisorEndpoint> {
  const vm = await scriptedQemuVm(dir);
  qmp = vm.qmp;
  return vm.endpoint;
}

/** A host with /dev/iommu and VFIO cdevs: VF1 gets vfio-dev/vfio3 once it is on vfio-pci. */
function iommufdHost(): void {
  writeFileSync(path.join(host.roots.dev, 'iommu'), '');
  host.afterWrite = () => {
    if (host.driverOf(VF1) === 'vfio-pci') mkdirSync(path.join(host.devDir(VF1), 'vfio-dev', 'vfio3'), { recursive: true });
  };
}

describe('a repeat attach: the attachment when it asks for the same, a refusal when it asks for another VFIO backend', () => {
  it('QEMU, an iommufd attachment: iommufd or auto again return it unchanged; group is refused, nothing changes', async () => {
    iommufdHost();
    const endpoint = await qemuVm();
    const first = await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', vfioBackend: 'iommufd' });
    expect(first.attachment.functions[0]).toMatchObject({ hostBdf: VF1, vfioBackend: 'iommufd' });
    const commandsAfterAttach = qmp!.commands.length;
    const writesAfterAttach = host.writes.length;

    for (const vfioBackend of ['iommufd', 'auto', undefined] as const) {
      const again = await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', ...(vfioBackend ? { vfioBackend } : {}) });
      expect(again.changed, `vfioBackend ${String(vfioBackend)}`).toBe(false);
      expect(again.attachment).toEqual(first.attachment);
    }

    const e = await expectError(
      manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', vfioBackend: 'group' }),
      'FAILED_PRECONDITION',
      `attach PCI device ${VF1} to VM q1 as vf0: it is already attached to VM q1 as vf0 through iommufd, not through its VFIO group as asked`,
      /detach it first to attach it through its VFIO group$/,
    );
    expect(e.details).toEqual({ reason: 'ATTACHED_THROUGH_OTHER_VFIO_BACKEND', vmId: 'q1', deviceId: 'vf0', state: 'attached', vfioBackend: 'iommufd', requestedVfioBackend: 'group' });
    // what a gRPC caller gets: the attachment as the resource, the reason as the violation
    const status = statusDetailsOf(e.code, e.message, e.details);
    expect(status.resourceInfo).toMatchObject({ resourceType: 'attachment', resourceName: 'q1/vf0', owner: 'q1' });
    expect(status.errorInfo?.metadata).toMatchObject({ vfio_backend: 'iommufd', requested_vfio_backend: 'group' });
    expect(status.preconditionFailure?.violations).toEqual([expect.objectContaining({ type: 'ATTACHED_THROUGH_OTHER_VFIO_BACKEND', subject: 'attachment:q1/vf0' })]);

    expect(qmp!.commands.length).toBe(commandsAfterAttach); // a repeat never asks the VM
    expect(host.writes.length).toBe(writesAfterAttach);
    expect(manager.list()).toEqual([first.attachment]);
  });

  it('QEMU, a group attachment: iommufd is refused', async () => {
    const endpoint = await qemuVm();
    await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0' });
    const e = await expectError(
      manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, vfioBackend: 'iommufd' }),
      'FAILED_PRECONDITION',
      /it is already attached to VM q1 as vf0 through its VFIO group, not through iommufd as asked: a repeat attach asks for the backend the attachment has, or auto; detach it first to attach it through iommufd$/,
    );
    expect(e.details).toMatchObject({ reason: 'ATTACHED_THROUGH_OTHER_VFIO_BACKEND', vfioBackend: 'group', requestedVfioBackend: 'iommufd' });
    expect((await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, vfioBackend: 'group' })).changed).toBe(false);
  });

  it('cloud-hypervisor: the same rule; iommufd is refused (it has the group only), group or auto return the attachment', async () => {
    const apiSocket = fakeChSocket(dir);
    ch = await vfioHoldingFake(host, apiSocket, 4242);
    const endpoint: HypervisorEndpoint = { hypervisor: 'cloud-hypervisor', apiSocket };
    const first = await manager.attach({ vmId: 'c1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0' });
    expect(first.attachment.functions[0]).toMatchObject({ hostBdf: VF1, vfioBackend: 'group' });
    const requestsAfterAttach = ch.requests.length;

    const e = await expectError(
      manager.attach({ vmId: 'c1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', vfioBackend: 'iommufd' }),
      'FAILED_PRECONDITION',
      /it is already attached to VM c1 as vf0 through its VFIO group, not through iommufd as asked: a repeat attach asks for the backend the attachment has, or auto; cloud-hypervisor opens VFIO devices through their group only$/,
    );
    expect(e.details).toEqual({ reason: 'ATTACHED_THROUGH_OTHER_VFIO_BACKEND', vmId: 'c1', deviceId: 'vf0', state: 'attached', vfioBackend: 'group', requestedVfioBackend: 'iommufd' });

    for (const vfioBackend of ['group', 'auto'] as const) {
      const again = await manager.attach({ vmId: 'c1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', vfioBackend });
      expect(again.changed, vfioBackend).toBe(false);
      expect(again.attachment).toEqual(first.attachment);
    }
    expect(ch.requests.length).toBe(requestsAfterAttach);
    expect(manager.list()).toEqual([first.attachment]);
    expect(claims.list().map((c) => c.bdf)).toEqual([VF1]);
  });
});
