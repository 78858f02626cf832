/**
 * The orchestrator under test in test/unit/attach: an AttachmentManager over the real passthrough manager
 * (src/devices) on a fake sysfs host (fake-sysfs.ts) with its own claims database, and the teardown that goes with it
 * (a scripted QMP VM's socket included, when the test started one).
 */
import { rmSync } from 'node:fs';
import path from 'node:path';

import { AttachmentManager } from '../../src/attach/attachments.js';
import { ClaimStore } from '../../src/devices/claims.js';
import { DeviceManager } from '../../src/devices/manager.js';
import { temporaryDir } from './common.js';
import { type FakeHost, standardHost } from './fake-sysfs.js';
import type { HypervisorEndpoint } from '../../src/hypervisor/types.js';
import { fakeQemuVm, scriptedQmp, type ScriptedQmp } from './scripted-qmp.js';

export interface AttachSetup {
  host: FakeHost;
  /** A temporary directory for sockets (QMP, cloud-hypervisor's API). */
  dir: string;
  claims: ClaimStore;
  manager: AttachmentManager;
}

export function newAttachSetup(dirPrefix: string): AttachSetup {
  const host = standardHost();
  const dir = temporaryDir(dirPrefix);
  const claims = new ClaimStore(path.join(host.root, 'state/claims.db'));
  const devices = new DeviceManager({ roots: host.roots, writer: host.writer, prober: host.prober, claims, vfioTimeoutMs: 200, pollMs: 5 });
  return { host, dir, claims, manager: new AttachmentManager({ devices, releaseWaitMs: 500 }) };
}

export async function closeAttachSetup(setup: AttachSetup, qmp: ScriptedQmp | undefined): Promise<void> {
  if (qmp) await new Promise((resolve) => qmp.server.close(resolve));
  setup.claims.close();
  setup.host.cleanup();
  rmSync(setup.dir, { recursive: true, force: true });
}

/** A QEMU VM q1 with two free root ports (fakeQemuVm) behind a scripted QMP socket in `dir`. */
export async function scriptedQemuVm(dir: string): Promise<{ endpoint: HypervisorEndpoint; qmp: ScriptedQmp }> {
  const qmpSocket = path.join(dir, 'q1.qmp');
  const qmp = await scriptedQmp(qmpSocket, fakeQemuVm({ rootPorts: ['rp1', 'rp2'] }).reply);
  return { endpoint: { hypervisor: 'qemu', qmpSocket }, qmp };
}
