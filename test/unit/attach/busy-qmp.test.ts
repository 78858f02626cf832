/**
 * An attach to a QEMU VM whose QMP socket is held by another client (QEMU serves one at a time: a second connection is
 * accepted by the kernel and never greeted). The first QMP contact of a PCI attach is the question which VFIO backend
 * the VM's devices use; when that cannot even connect, the hot-plug behind it cannot either, so the attach fails there,
 * before the device is rebound, within one attach timeout. When more clients already wait in the socket's listen
 * queue, connect(2) fails with EAGAIN and the attach fails at once. When QMP is taken between that question and the
 * hot-plug, device_add is never sent: the rollback gives the device back without asking QEMU again. The orchestrator
 * runs the real passthrough manager on test/helpers/fake-sysfs.ts and the real QEMU adapter against a QMP server that
 * stops greeting.
 */
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import type { AttachmentManager } from '../../../src/attach/attachments.js';
import type { ClaimStore } from '../../../src/devices/claims.js';
import { closeAttachSetup, newAttachSetup } from '../../helpers/attach-setup.js';
import { expectError } from '../../helpers/common.js';
import type { FakeHost } from '../../helpers/fake-sysfs.js';
import { fakeQemuVm, scriptedQmp, type ScriptedQmp } from '../../helpers/scripted-qmp.js';

/** On nvme: prepare would rebind it to vfio-pci. */
const VF1 = '0000:01:00.1';
const ATTACH_TIMEOUT_MS = 400;

let host: FakeHost;
let dir: string;
let claims: ClaimStore;
let manager: AttachmentManager;
let qmp: ScriptedQmp | undefined;

beforeEach(() => {
  ({ host, dir, claims, manager } = newAttachSetup('vfiod-attach-busy-qmp-'));
});
afterEach(async () => {
  vi.restoreAllMocks();
  await closeAttachSetup({ host, dir, claims, manager }, qmp);
  qmp = undefined;
});

/** The attach every test here makes: VF1 to VM q1 as vf0, through the QMP socket at `qmpSocket`. */
function attachVf1(qmpSocket: string): ReturnType<AttachmentManager['attach']> {
  return manager.attach({ vmId: 'q1', endpoint: { hypervisor: 'qemu', qmpSocket }, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', timeoutMs: ATTACH_TIMEOUT_MS });
}

describe('QEMU: an attach against a QMP socket another client holds', () => {
  it('fails before prepare, naming the socket, within one attach timeout', async () => {
    const qmpSocket = path.join(dir, 'q1.qmp');
    // accepts connections and never greets them: what a second client sees while another one holds QEMU's QMP
    qmp = await scriptedQmp(qmpSocket, fakeQemuVm({ rootPorts: ['rp1'] }).reply, () => undefined);
    const started = performance.now();
    const e = await expectError(
      attachVf1(qmpSocket),
      'DEADLINE_EXCEEDED',
      `attach PCI device ${VF1} to VM q1 as vf0: `,
      `QMP ${qmpSocket}`,
      /another client may hold the socket/,
    );
    const elapsedMs = performance.now() - started;
    expect(elapsedMs).toBeGreaterThanOrEqual(ATTACH_TIMEOUT_MS - 5);
    expect(elapsedMs).toBeLessThan(2 * ATTACH_TIMEOUT_MS); // two waits would be 2.5 timeouts (1,335-1,374 ms before)
    expect(e.details).toMatchObject({ reason: 'VMM_TIMEOUT', vmId: 'q1', deviceId: 'vf0', socketPath: qmpSocket });
    // nothing changed on the host, nothing recorded
    expect(host.writes).toEqual([]);
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(claims.list()).toEqual([]);
    expect(manager.list()).toEqual([]);
    expect(qmp.commands).toEqual([]);
  });

  it('a full listen queue (more clients wait behind the one that holds QMP): UNAVAILABLE saying QMP is busy, at once', async () => {
    const qmpSocket = path.join(dir, 'q1.qmp');
    qmp = await scriptedQmp(qmpSocket, fakeQemuVm({ rootPorts: ['rp1'] }).reply);
    // what connect(2) says on a unix socket whose listen queue is full (a real QEMU 7.2: from the fourth client on)
    vi.spyOn(net, 'createConnection').mockImplementation(() => {
      const socket = new net.Socket();
      process.nextTick(() => socket.emit('error', Object.assign(new Error(`connect EAGAIN ${qmpSocket}`), { code: 'EAGAIN', syscall: 'connect' })));
      return socket;
    });
    const started = performance.now();
    const e = await expectError(
      attachVf1(qmpSocket),
      'UNAVAILABLE',
      `attach PCI device ${VF1} to VM q1 as vf0: VM q1 (QMP ${qmpSocket}): QMP is busy: another client holds the socket and its listen queue is full (EAGAIN); nothing was changed`,
    );
    expect(performance.now() - started).toBeLessThan(ATTACH_TIMEOUT_MS / 2);
    expect(e.details).toEqual({ reason: 'VMM_UNAVAILABLE', vmId: 'q1', deviceId: 'vf0', socketPath: qmpSocket, commandSent: false });
    expect(host.writes).toEqual([]);
    expect(claims.list()).toEqual([]);
    expect(manager.list()).toEqual([]);
  });

  it('a QMP socket that does not exist (the VM is not running) fails the same way, at once', async () => {
    const qmpSocket = path.join(dir, 'gone.qmp');
    const e = await expectError(
      attachVf1(qmpSocket),
      'UNAVAILABLE',
      `attach PCI device ${VF1} to VM q1 as vf0: VM q1 (QMP ${qmpSocket}): the QMP socket does not exist`,
      /nothing was changed$/,
    );
    expect(e.details).toMatchObject({ reason: 'VMM_SOCKET_MISSING', vmId: 'q1', deviceId: 'vf0', socketPath: qmpSocket });
    expect(host.writes).toEqual([]);
    expect(claims.list()).toEqual([]);
    expect(manager.list()).toEqual([]);
  });
});

/**
 * A greeting for the first `greeted` connections only: QMP answers vfiod's backend query, then another client takes the
 * socket (the next connections are accepted and never greeted). The one QMP question of an attach before prepare gets
 * through, the hot-plug after prepare does not.
 */
function greetFirst(greeted: number): (socket: net.Socket) => void {
  let connections = 0;
  return greetWhile(() => ++connections <= greeted);
}

/** A greeting for each connection while `greets()` says so; later ones are accepted and never greeted. */
function greetWhile(greets: () => boolean): (socket: net.Socket) => void {
  return (socket) => {
    if (greets()) socket.write('{"QMP": {"version": {"qemu": {"micro": 3, "minor": 2, "major": 9}}, "capabilities": []}}\r\n');
  };
}

describe('QEMU: QMP taken by another client between the backend query and the hot-plug', () => {
  it('device_add never sent (no greeting): the rollback releases the device without device_del, records nothing, and says the VM was not changed', async () => {
    const qmpSocket = path.join(dir, 'q1.qmp');
    qmp = await scriptedQmp(qmpSocket, fakeQemuVm({ rootPorts: ['rp1'] }).reply, greetFirst(1));
    const started = performance.now();
    const e = await expectError(
      attachVf1(qmpSocket),
      'DEADLINE_EXCEEDED',
      `attach PCI device ${VF1} to VM q1 as vf0: `,
      `QMP ${qmpSocket}`,
      /no QMP greeting within 400 ms/,
      /; the add of vf0 never reached the VMM: VM q1 was not changed; rolled back: released 0000:01:00\.1 to its host driver$/,
    );
    // one greeting timeout, no second wait (releaseWaitMs, 500 ms) for a device_del: 930-950 ms before, 435-500 ms now
    const elapsedMs = performance.now() - started;
    expect(elapsedMs).toBeGreaterThanOrEqual(ATTACH_TIMEOUT_MS - 5);
    expect(elapsedMs).toBeLessThan(ATTACH_TIMEOUT_MS + 450);
    expect(e.details).toMatchObject({ reason: 'VMM_TIMEOUT', vmId: 'q1', deviceId: 'vf0', socketPath: qmpSocket, commandSent: false });
    expect(qmp.commands).not.toContain('device_del');
    expect(qmp.commands).not.toContain('device_add');
    // back on its own driver, no claim, no record
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(claims.list()).toEqual([]);
    expect(manager.list()).toEqual([]);
  });

  it('device_add sent and never answered: the outcome is unknown, the rollback asks for device_del, and when that cannot reach QMP either the attachment is detach-pending', async () => {
    const qmpSocket = path.join(dir, 'q1.qmp');
    const vm = fakeQemuVm({ rootPorts: ['rp1'] });
    // QMP greets the backend query and the hot-plug; device_add gets no answer, and nobody is greeted after it
    qmp = await scriptedQmp(qmpSocket, (command, args, id, socket) => (command === 'device_add' ? undefined : vm.reply(command, args, id, socket)), greetFirst(2));
    const started = performance.now();
    const e = await expectError(
      attachVf1(qmpSocket),
      'DEADLINE_EXCEEDED',
      `attach PCI device ${VF1} to VM q1 as vf0: device_add vf0: VM q1 (QMP ${qmpSocket}): no answer within 400 ms`,
      /rollback incomplete \(remove vf0: .*no QMP greeting within 500 ms/,
      /attachment vf0 is 'detach-pending'/,
    );
    // device_add's wait, then device_del's (releaseWaitMs, 500 ms)
    expect(performance.now() - started).toBeGreaterThanOrEqual(ATTACH_TIMEOUT_MS + 500 - 5);
    expect(e.details).toMatchObject({ reason: 'VMM_TIMEOUT', vmId: 'q1', deviceId: 'vf0', commandSent: true });
    expect(qmp.commands).toContain('device_add');
    // the device may be in the VM: it stays claimed on vfio-pci, recorded as detach-pending
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    expect(claims.get(VF1)?.owner).toBe('q1');
    expect(manager.list().map((a) => [a.deviceId, a.state])).toEqual([['vf0', 'detach-pending']]);
  });
});

describe('QEMU: a detach while another client holds QMP', () => {
  it('device_del never sent (no greeting): the attachment stays attached and claimed, and the error says nothing was changed', async () => {
    const qmpSocket = path.join(dir, 'q1.qmp');
    let qmpFree = true;
    qmp = await scriptedQmp(qmpSocket, fakeQemuVm({ rootPorts: ['rp1'] }).reply, greetWhile(() => qmpFree));
    const endpoint = { hypervisor: 'qemu' as const, qmpSocket };
    await manager.attach({ vmId: 'q1', endpoint, source: { kind: 'pci', bdf: VF1 }, deviceId: 'vf0', timeoutMs: ATTACH_TIMEOUT_MS });
    qmpFree = false;
    const commandsBefore = qmp.commands.length;
    const e = await expectError(
      manager.detach({ vmId: 'q1', deviceId: 'vf0', timeoutMs: ATTACH_TIMEOUT_MS }),
      'DEADLINE_EXCEEDED',
      `detach vf0 (PCI device ${VF1}) from VM q1: `,
      /no QMP greeting within \d+ ms/,
      /; the removal of vf0 never reached the VMM: nothing was changed \(state attached\)$/,
    );
    expect(e.details).toMatchObject({ reason: 'VMM_TIMEOUT', vmId: 'q1', deviceId: 'vf0', state: 'attached', commandSent: false, socketPath: qmpSocket });
    expect(qmp.commands.slice(commandsBefore)).toEqual([]);
    // still in the VM: claimed on vfio-pci, recorded as attached (it was detach-pending before the fix)
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    expect(claims.get(VF1)?.owner).toBe('q1');
    expect(manager.list().map((a) => [a.deviceId, a.state])).toEqual([['vf0', 'attached']]);
  });
});
