/**
 * The QMP adapter against a real QEMU on the host (qemu-system-x86_64 -S -accel tcg -machine q35 -nodefaults with
 * pcie-root-ports; no guest runs): capabilities, query-pci, empty root-port discovery, precise errors for a bogus
 * vfio-pci host and for vfio-user-pci on a QEMU without it, the device_add/device_del flow (an emulated NIC whose
 * unplug stays pending without a guest -> DEADLINE_EXCEEDED; a USB keyboard whose unplug completes at once ->
 * DEVICE_DELETED). Skips with the reason when QEMU is missing.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { QemuAdapter, QmpConnection } from '../../src/hypervisor/qmp.js';
import { VfiodError } from '../../src/util/errors.js';
import { expectError, sleep, temporaryDir } from '../helpers/common.js';
import { scriptedQmp } from '../helpers/scripted-qmp.js';

const QEMU = 'qemu-system-x86_64';
const LAUNCHER = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'testbed', 'qemu-launch.sh');

function unavailable(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux';
  const probe = spawnSync(QEMU, ['--version'], { encoding: 'utf8' });
  if (probe.status !== 0) return `${QEMU} not found (apt-get install qemu-system-x86)`;
  return undefined;
}

const reason = unavailable();
if (reason) console.warn(`hypervisor-qmp: skipped: ${reason}`);

describe.skipIf(reason !== undefined)('QMP adapter against a real QEMU (-S, q35, pcie-root-ports)', () => {
  let dir: string;
  let qemu: ChildProcess;
  let qmpSocket: string;
  let adapter: QemuAdapter;
  let stderr = '';

  beforeAll(async () => {
    dir = temporaryDir('vfiod-qmp-');
    qmpSocket = path.join(dir, 'qmp.sock');
    qemu = spawn('sh', [LAUNCHER, '120', QEMU,
      '-S', '-accel', 'tcg', '-machine', 'q35', '-nodefaults', '-display', 'none', '-m', '64',
      '-device', 'pcie-root-port,id=rp0,chassis=1,slot=1',
      '-device', 'e1000e,id=nic0,bus=rp0',
      '-device', 'pcie-root-port,id=rp1,chassis=2,slot=2',
      '-device', 'pcie-root-port,id=rp2,chassis=3,slot=3',
      '-device', 'qemu-xhci,id=xhci',
      '-qmp', `unix:${qmpSocket},server=on,wait=off`,
      // a second QMP monitor, as an operator's own tools would have next to vfiod's
      '-qmp', `unix:${path.join(dir, 'qmp2.sock')},server=on,wait=off`,
    ], { stdio: ['pipe', 'ignore', 'pipe'] });
    qemu.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    for (let i = 0; i < 200 && !existsSync(qmpSocket); i++) await sleep(50);
    if (!existsSync(qmpSocket)) throw new Error(`QEMU did not create ${qmpSocket}: ${stderr}`);
    adapter = new QemuAdapter({ vmId: 'vm-qmp', qmpSocket });
  }, 30_000);

  afterAll(async () => {
    qemu?.stdin?.end(); // the launcher stops QEMU when its stdin closes
    await new Promise((r) => (qemu.exitCode !== null ? r(null) : qemu.once('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  });

  it('negotiates capabilities and reports the QEMU version', async () => {
    expect(await adapter.ping()).toMatch(/^\d+\.\d+\.\d+$/);
    const conn = await QmpConnection.connect(qmpSocket, { vmId: 'vm-qmp' });
    try {
      const status = await conn.execute<{ status: string; running: boolean }>('query-status');
      expect(status).toMatchObject({ status: 'prelaunch', running: false });
      await expectError(conn.execute('no-such-command'), 'FAILED_PRECONDITION', /no-such-command/, /vm-qmp/);
    } finally {
      conn.close();
    }
  });

  it('query-pci lists the root ports by qdev id; only empty root ports are free', async () => {
    const pci = await adapter.queryPci();
    expect(pci.map((d) => d.qdev_id)).toEqual(expect.arrayContaining(['rp0', 'rp1', 'rp2', 'xhci']));
    expect(pci.find((d) => d.qdev_id === 'rp1')?.address).toMatch(/^0000:00:[0-9a-f]{2}\.0$/);
    expect(await adapter.freeRootPorts()).toEqual(['rp1', 'rp2']);
    const devices = await adapter.listDevices();
    expect(devices.map((d) => d.id)).toEqual(expect.arrayContaining(['rp0', 'rp1', 'rp2', 'nic0', 'xhci']));
  });

  it('vfio-pci with a host device that does not exist: NOT_FOUND naming the VM, device, host and bus; nothing left behind', async () => {
    await expectError(
      adapter.addPciDevice({ hostBdf: '0000:ff:1f.7', id: 'vf0' }),
      'NOT_FOUND', /device_add vf0/, /host 0000:ff:1f\.7/, /bus rp1/, /VM vm-qmp/, /no such host device/,
    );
    expect(await adapter.hasDevice('vf0')).toBe(false);
    expect(await adapter.freeRootPorts()).toEqual(['rp1', 'rp2']);
  });

  it('vfio-user-pci on a QEMU without it: FAILED_PRECONDITION that says which QEMU is needed', async () => {
    const e = await expectError(
      adapter.addUserDevice({ socketPath: path.join(dir, 'nvme0.sock'), id: 'user0' }),
      'FAILED_PRECONDITION', /'vfio-user-pci' is not a valid device model name/, /QEMU >= 10\.1/, /user0/,
    );
    expect(e.details.qmpClass).toBe('GenericError');
  });

  it('a named bus that does not exist is NOT_FOUND; a duplicate id is ALREADY_EXISTS', async () => {
    await expectError(adapter.addPciDevice({ hostBdf: '0000:ff:1f.7', id: 'vf1', bus: 'nope' }), 'NOT_FOUND', /Bus 'nope' not found/);
    await expectError(adapter.addPciDevice({ hostBdf: '0000:ff:1f.7', id: 'nic0', bus: 'rp2' }), 'ALREADY_EXISTS', /Duplicate device ID 'nic0'/);
  });

  it('device_add into an empty root port, then device_del without a guest stays pending: DEADLINE_EXCEEDED, also when repeated', async () => {
    const conn = await QmpConnection.connect(qmpSocket, { vmId: 'vm-qmp' });
    try {
      await conn.execute('device_add', { driver: 'e1000e', id: 'hp0', bus: 'rp1' });
    } finally {
      conn.close();
    }
    expect(await adapter.hasDevice('hp0')).toBe(true);
    expect(await adapter.freeRootPorts()).toEqual(['rp2']);
    // under -S the guest has not numbered rp1's secondary bus (query-pci leaves it out): the address is unknown
    expect((await adapter.listDevices()).find((d) => d.id === 'hp0')).toEqual({ id: 'hp0', guestBdf: null, hostBdf: null });
    const t0 = Date.now();
    await expectError(adapter.removeDevice('hp0', 1500), 'DEADLINE_EXCEEDED', /no DEVICE_DELETED within 1500 ms/, /hp0/, /VM vm-qmp/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    expect(Date.now() - t0).toBeLessThan(10_000);
    // a retry finds the unplug in progress (QEMU refuses a second device_del) and waits again
    await expectError(adapter.removeDevice('hp0', 500), 'DEADLINE_EXCEEDED', /pending/);
    expect(await adapter.hasDevice('hp0')).toBe(true);
  });

  it('device_del of a device whose unplug completes at once resolves on DEVICE_DELETED', async () => {
    const conn = await QmpConnection.connect(qmpSocket, { vmId: 'vm-qmp' });
    try {
      await conn.execute('device_add', { driver: 'usb-kbd', id: 'kbd0', bus: 'xhci.0' });
    } finally {
      conn.close(); // QEMU serves one QMP client at a time
    }
    expect(await adapter.hasDevice('kbd0')).toBe(true);
    const t0 = Date.now();
    await adapter.removeDevice('kbd0', 5000);
    expect(Date.now() - t0).toBeLessThan(5000); // far below the budget: the device went at once
    expect(await adapter.hasDevice('kbd0')).toBe(false);
    await expectError(adapter.removeDevice('kbd0', 1000), 'NOT_FOUND', /Device 'kbd0' not found/);
  });

  it('a second client while one holds the socket gets DEADLINE_EXCEEDED that says so', async () => {
    const conn = await QmpConnection.connect(qmpSocket, { vmId: 'vm-qmp' });
    try {
      await expectError(adapter.ping(300), 'DEADLINE_EXCEEDED', /no QMP greeting within 300 ms/, /another client may hold the socket/);
    } finally {
      conn.close();
    }
    expect(await adapter.ping()).toMatch(/^\d/);
  });

  it('clients beyond the listen queue of a held QMP socket get UNAVAILABLE at once, saying QMP is busy', async () => {
    const conn = await QmpConnection.connect(qmpSocket, { vmId: 'vm-qmp' });
    try {
      // the first few wait in QEMU's listen queue (two with QEMU 7.2) until their greeting timeout; then the kernel refuses
      let refusal: unknown;
      for (let client = 0; client < 5 && refusal === undefined; client++) {
        const t0 = Date.now();
        refusal = await adapter.ping(200).then(
          () => expect.unreachable('QEMU greeted a second client'),
          (error: unknown) => (error instanceof VfiodError && error.code === 'UNAVAILABLE' ? error : undefined),
        );
        if (refusal !== undefined) expect(Date.now() - t0).toBeLessThan(150);
      }
      expect(refusal).toBeInstanceOf(VfiodError);
      const e = refusal as VfiodError;
      expect(e.message).toBe(`VM vm-qmp (QMP ${qmpSocket}): QMP is busy: another client holds the socket and its listen queue is full (EAGAIN)`);
      expect(e.details).toEqual({ reason: 'VMM_UNAVAILABLE', vmId: 'vm-qmp', socketPath: qmpSocket, commandSent: false });
    } finally {
      conn.close();
    }
    // QEMU drains the queue (each waiting connection was closed by its client) and serves the next one
    let version: string | undefined;
    for (let attempt = 0; attempt < 50 && version === undefined; attempt++) {
      version = await adapter.ping().catch(async (error: unknown) => {
        if (!(error instanceof VfiodError && error.code === 'UNAVAILABLE')) throw error;
        await sleep(100);
        return undefined;
      });
    }
    expect(version).toMatch(/^\d/);
  });

  it('a missing socket and a socket nobody listens on are UNAVAILABLE', async () => {
    await expectError(new QemuAdapter({ vmId: 'vm-gone', qmpSocket: path.join(dir, 'missing.sock') }).ping(), 'UNAVAILABLE', /VM vm-gone/, /does not exist/);
    const stale = path.join(dir, 'stale.sock');
    writeFileSync(stale, '');
    await expectError(new QemuAdapter({ vmId: 'vm-stale', qmpSocket: stale }).ping(), 'UNAVAILABLE', /VM vm-stale/, /ECONNREFUSED/);
  });

  it('QEMU exiting while an unplug is pending ends the wait with UNAVAILABLE (last test: QEMU is gone afterwards)', async () => {
    expect(await adapter.hasDevice('hp0')).toBe(true); // still pending from the test above
    const t0 = Date.now();
    const pending = adapter.removeDevice('hp0', 20_000).then(
      () => undefined,
      (e: unknown) => e,
    );
    await sleep(500);
    const other = await QmpConnection.connect(path.join(dir, 'qmp2.sock'), { vmId: 'vm-qmp' });
    await other.execute('quit').catch(() => undefined);
    other.close();
    const e = (await pending) as VfiodError;
    expect(e).toBeInstanceOf(VfiodError);
    expect(e.code, e.message).toBe('UNAVAILABLE');
    expect(e.message).toMatch(/device_del hp0: .*closed by QEMU while waiting for DEVICE_DELETED/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});

describe('QMP connection against a scripted server (partial lines, events, garbage, QEMU going away)', () => {
  let dir: string;
  let server: net.Server | undefined;
  beforeEach(() => {
    dir = temporaryDir('vfiod-qmp-fake-');
  });
  afterEach(async () => {
    if (server) await new Promise((r) => server!.close(r));
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });
  const sock = (): string => path.join(dir, 'qmp.sock');

  it('answers split across writes and out of order, with events in between, reach the right caller', async () => {
    let held: { id: unknown; socket: net.Socket } | undefined;
    ({ server } = await scriptedQmp(sock(), (command, _args, id, socket) => {
      if (command === 'slow') {
        held = { id, socket };
        return undefined;
      }
      const answer = JSON.stringify({ return: { command }, id });
      // an event first, then the answer in three pieces; then the held answer for 'slow'
      socket.write('{"event": "RESET", "data": {"guest": true}, "timestamp": {"seconds": 1, "microseconds": 2}}\n');
      socket.write(answer.slice(0, 5));
      setTimeout(() => socket.write(answer.slice(5, 12)), 10);
      setTimeout(() => {
        socket.write(`${answer.slice(12)}\n`);
        if (held) held.socket.write(`${JSON.stringify({ return: 'slow done', id: held.id })}\n`);
      }, 20);
      return undefined;
    }));
    const conn = await QmpConnection.connect(sock(), { vmId: 'vm-s', timeoutMs: 5000 });
    try {
      expect(conn.version).toBe('9.2.3');
      const events: string[] = [];
      conn.on('event', (e: { event: string }) => events.push(e.event));
      const slow = conn.execute('slow', undefined, 5000);
      expect(await conn.execute('fast', undefined, 5000)).toEqual({ command: 'fast' });
      expect(await slow).toBe('slow done');
      expect(events).toEqual(['RESET']);
    } finally {
      conn.close();
    }
  });

  it('QEMU closing the socket before its greeting fails the connect at once with UNAVAILABLE', async () => {
    ({ server } = await scriptedQmp(sock(), () => undefined, (socket) => socket.end()));
    const t0 = Date.now();
    await expectError(QmpConnection.connect(sock(), { vmId: 'vm-s', timeoutMs: 20_000 }), 'UNAVAILABLE', /VM vm-s/, /closed by QEMU before its greeting/);
    expect(Date.now() - t0).toBeLessThan(10_000); // not the 20 s greeting timeout
  });

  it('garbage instead of a greeting, and JSON that is not an object, fail at once with INTERNAL quoting it', async () => {
    ({ server } = await scriptedQmp(sock(), () => undefined, (socket) => socket.write('SSH-2.0-OpenSSH_9.2\r\n')));
    const t0 = Date.now();
    await expectError(QmpConnection.connect(sock(), { vmId: 'vm-s', timeoutMs: 20_000 }), 'INTERNAL', /not JSON: SSH-2\.0-OpenSSH_9\.2/);
    await new Promise((r) => server!.close(r));
    ({ server } = await scriptedQmp(sock(), () => undefined, (socket) => socket.write('[1, 2]\n')));
    await expectError(QmpConnection.connect(sock(), { vmId: 'vm-s', timeoutMs: 20_000 }), 'INTERNAL', /not an object: \[1, 2\]/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('a line that never ends is cut off at the limit (INTERNAL), not buffered without bound', async () => {
    ({ server } = await scriptedQmp(sock(), (command, _args, _id, socket) => {
      if (command === 'query-pci') {
        const piece = 'x'.repeat(1 << 20);
        for (let i = 0; i < 18; i++) socket.write(piece);
      }
      return undefined;
    }));
    const conn = await QmpConnection.connect(sock(), { vmId: 'vm-s', timeoutMs: 5000 });
    try {
      await expectError(conn.execute('query-pci', undefined, 20_000), 'INTERNAL', /query-pci/, /QMP line longer than/);
    } finally {
      conn.close();
    }
  });

  it('QEMU dying mid-command rejects the command with UNAVAILABLE; a malformed error answer is still a precise error', async () => {
    ({ server } = await scriptedQmp(sock(), (command, _args, id, socket) => {
      if (command === 'odd') return `${JSON.stringify({ error: 'boom', id })}\n`;
      if (command === 'die') socket.destroy();
      return undefined;
    }));
    const conn = await QmpConnection.connect(sock(), { vmId: 'vm-s', timeoutMs: 5000 });
    try {
      const e = await expectError(conn.execute('odd', undefined, 5000), 'INTERNAL', /odd/, /malformed QMP error answer: "boom"/);
      expect(e.details.qmpClass).toBe('GenericError');
      await expectError(conn.execute('die', undefined, 20_000), 'UNAVAILABLE', /die/, /closed by QEMU/);
      await expectError(conn.execute('after', undefined, 1000), 'UNAVAILABLE', /after/);
    } finally {
      conn.close();
    }
  });

  it('removeDevice waits for DEVICE_DELETED of its own id: events for a child path or another device do not end it', async () => {
    let present = true;
    let sendRealEvent: (() => void) | undefined;
    ({ server } = await scriptedQmp(sock(), (command, args, id, socket) => {
      if (command === 'device_del') {
        setTimeout(() => {
          socket.write('{"event": "DEVICE_DELETED", "data": {"path": "/machine/peripheral/hp0/virtio-backend"}, "timestamp": {"seconds": 1, "microseconds": 0}}\n');
          socket.write('{"event": "DEVICE_DELETED", "data": {"device": "hp1", "path": "/machine/peripheral/hp1"}, "timestamp": {"seconds": 1, "microseconds": 0}}\n');
        }, 10);
        sendRealEvent = () => {
          present = false;
          socket.write('{"event": "DEVICE_DELETED", "data": {"device": "hp0", "path": "/machine/peripheral/hp0"}, "timestamp": {"seconds": 2, "microseconds": 0}}\n');
        };
        return `${JSON.stringify({ return: {}, id })}\n`;
      }
      if (command === 'qom-list' && args?.path === '/machine/peripheral') {
        return `${JSON.stringify({ return: present ? [{ name: 'hp0', type: 'child<e1000e>' }] : [], id })}\n`;
      }
      return `${JSON.stringify({ error: { class: 'CommandNotFound', desc: `no ${command}` }, id })}\n`;
    }));
    const adapter = new QemuAdapter({ vmId: 'vm-s', qmpSocket: sock() });
    let done = false;
    const removal = adapter.removeDevice('hp0', 20_000).then(() => (done = true));
    await sleep(1500); // the two other events and at least one QOM check have come and gone
    expect(done).toBe(false);
    expect(sendRealEvent).toBeDefined();
    sendRealEvent!();
    await removal;
    expect(done).toBe(true);
  });
});
