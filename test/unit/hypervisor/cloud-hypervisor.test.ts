/**
 * The cloud-hypervisor REST client against the fake VMM (test/helpers/fake-cloud-hypervisor.ts), which validates
 * every request body against cloud-hypervisor's v48 OpenAPI document: hot-plug and cold add, removal that waits for
 * the guest to eject, both error formats (v48: 500 + JSON error chain; newer: 400/404/409 + text), a missing socket,
 * a refused connection and a VMM that does not answer.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { classifyApiError, CloudHypervisorClient, EventMonitorReader, parseErrorChain } from '../../../src/hypervisor/cloud-hypervisor.js';
import { FakeCloudHypervisor, type FakeChMode, openApiMissingReason } from '../../helpers/fake-cloud-hypervisor.js';
import { expectError, temporaryDir } from '../../helpers/common.js';

let dir: string;
let fake: FakeCloudHypervisor | undefined;
let client: CloudHypervisorClient;

beforeEach(() => {
  dir = temporaryDir('vfiod-ch-');
  client = new CloudHypervisorClient({ vmId: 'vm1', apiSocket: path.join(dir, 'ch.sock'), pollMs: 10 });
});
afterEach(async () => {
  if (fake) expect(fake.violations).toEqual([]);
  await fake?.stop();
  fake = undefined;
  rmSync(dir, { recursive: true, force: true });
});

/** A unix socket listener (its path the first argument) with a listen queue of one that never accepts. */
const NEVER_ACCEPTS = 'import socket, sys, time\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(0)\nprint("listening", flush=True)\ntime.sleep(60)';

const start = async (mode: FakeChMode = 'v48', extra: Partial<Parameters<typeof FakeCloudHypervisor.start>[0]> = {}): Promise<FakeCloudHypervisor> =>
  (fake = await FakeCloudHypervisor.start({ socketPath: path.join(dir, 'ch.sock'), mode, ...extra }));

describe('cloud-hypervisor client', () => {
  it('pings, hot-plugs a VFIO device by sysfs path and finds it in vm.info device_tree', async () => {
    await start();
    expect(await client.ping()).toBe('48.0.0');
    const added = await client.addPciDevice({ hostBdf: '0000:01:00.1', id: 'vf1' });
    expect(added).toEqual({ id: 'vf1', guestBdf: '0000:00:04.0', coldAdded: false, bus: null });
    expect(fake!.requests).toContain('PUT /vm.add-device {"path":"/sys/bus/pci/devices/0000:01:00.1","id":"vf1"}');
    expect(await client.listDevices()).toEqual([{ id: 'vf1', guestBdf: '0000:00:04.0', hostBdf: null }]);
    expect(await client.hasDevice('vf1')).toBe(true);
    expect(await client.hasDevice('vf2')).toBe(false);
  });

  it('sends iommu, pci_segment and x_nv_gpudirect_clique for GPUs, and vfio-user devices by socket', async () => {
    await start();
    await client.addPciDevice({ hostBdf: '0000:02:00.0', id: 'gpu0', iommu: true, pciSegment: 1, gpudirectClique: 0 });
    expect(fake!.requests).toContain('PUT /vm.add-device {"path":"/sys/bus/pci/devices/0000:02:00.0","id":"gpu0","iommu":true,"pci_segment":1,"x_nv_gpudirect_clique":0}');
    const user = await client.addUserDevice({ socketPath: '/run/vfiod/vm1.sock', id: 'nvme0' });
    expect(user.guestBdf).toBe('0000:00:05.0');
    expect(fake!.requests).toContain('PUT /vm.add-user-device {"socket":"/run/vfiod/vm1.sock","id":"nvme0"}');
  });

  it.skipIf(openApiMissingReason !== undefined)('the fake rejects a body that violates the OpenAPI schema (int16 pci_segment out of range) and the client reports INVALID_ARGUMENT', async () => {
    await start();
    await expectError(client.addPciDevice({ hostBdf: '0000:01:00.1', id: 'vf1', pciSegment: 70000 }), 'INVALID_ARGUMENT', /answered 400/, /pci_segment/);
    expect(fake!.violations.join('\n')).toMatch(/PUT \/vm.add-device: body\/pci_segment must match format "int16"/);
    fake!.violations.length = 0; // the violation was the point of this test
  });

  it('a created but not booted VM answers 204: the device is cold-added', async () => {
    await start('v48', { state: 'Created' });
    expect(await client.addPciDevice({ hostBdf: '0000:01:00.1', id: 'vf1' })).toEqual({ id: 'vf1', guestBdf: null, coldAdded: true, bus: null });
    expect((await client.addUserDevice({ socketPath: '/run/vfiod/a.sock', id: 'user0' })).coldAdded).toBe(true);
    expect(await client.hasDevice('vf1')).toBe(false); // not in device_tree until the VM boots ...
    // ... but listed from the VM's config: it is the VM's device all the same
    expect(await client.listDevices()).toEqual([
      { id: 'vf1', guestBdf: null, hostBdf: '0000:01:00.1' },
      { id: 'user0', guestBdf: null, hostBdf: null },
    ]);
    await client.removeDevice('vf1', 2000); // not booted: gone from the config at once
    expect((await client.listDevices()).map((d) => d.id)).toEqual(['user0']);
  });

  it('a cloud-hypervisor boot order request is refused before anything is sent', async () => {
    await start();
    await expectError(client.addPciDevice({ hostBdf: '0000:01:00.1', id: 'vf1', bootIndex: 1 }), 'INVALID_ARGUMENT', /no boot order/, /CLOUDHV\.fd/);
    expect(fake!.requests).toEqual([]);
  });

  it('removeDevice returns once the guest ejected the device (id gone from device_tree)', async () => {
    await start('v48', { ejectDelayMs: 150 });
    await client.addPciDevice({ hostBdf: '0000:01:00.1', id: 'vf1' });
    const t0 = Date.now();
    await client.removeDevice('vf1', 5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(await client.hasDevice('vf1')).toBe(false);
    expect(fake!.requests).toContain('PUT /vm.remove-device {"id":"vf1"}');
  });

  it('with an event-monitor file, removeDevice returns on device-removed before the id leaves vm.info', async () => {
    const events = path.join(dir, 'events.json');
    writeFileSync(events, `${JSON.stringify({ timestamp: { secs: 1, nanos: 0 }, source: 'vm', event: 'device-removed', properties: { id: 'vf1' } }, null, 2)}\n`); // an old event: ignored
    await start('v48', { eventMonitor: events, ejectDelayMs: 100, treeLagMs: 3000 });
    client = new CloudHypervisorClient({ vmId: 'vm1', apiSocket: path.join(dir, 'ch.sock'), pollMs: 10, eventMonitor: events });
    await client.addPciDevice({ hostBdf: '0000:01:00.1', id: 'vf1' });
    const t0 = Date.now();
    await client.removeDevice('vf1', 5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(await client.hasDevice('vf1')).toBe(true); // the tree lags behind the event
  });

  it('EventMonitorReader splits pretty-printed objects, keeps partial ones, skips garbage and strings with braces', () => {
    const file = path.join(dir, 'ev.json');
    writeFileSync(file, '{"event":"old"}\n');
    const reader = new EventMonitorReader(file);
    expect(reader.read()).toEqual([]);
    appendFileSync(file, '{\n  "event": "device-removed",\n  "properties": {"id": "a}{"}\n}\n{"event": "x", "prop');
    expect(reader.read()).toEqual([{ event: 'device-removed', properties: { id: 'a}{' } }]);
    appendFileSync(file, 'erties": {}}\n{not json}\n');
    expect(reader.read()).toEqual([{ event: 'x', properties: {} }]);
    // A multi-byte character split between two reads arrives whole.
    const id = Buffer.from('{"event": "device-removed", "properties": {"id": "vf\u00e9"}}\n');
    const split = id.indexOf(0xc3) + 1;
    appendFileSync(file, id.subarray(0, split));
    expect(reader.read()).toEqual([]);
    appendFileSync(file, id.subarray(split));
    expect(reader.read()).toEqual([{ event: 'device-removed', properties: { id: 'vf\u00e9' } }]);
  });

  it('removeDevice when the guest never ejects: DEADLINE_EXCEEDED naming VM and device; the device is still listed', async () => {
    await start('v48', { guestEjects: false });
    await client.addPciDevice({ hostBdf: '0000:01:00.1', id: 'vf1' });
    await expectError(client.removeDevice('vf1', 300), 'DEADLINE_EXCEEDED', /vf1/, /VM vm1/, /still in vm.info's device_tree after 300 ms/);
    expect(await client.hasDevice('vf1')).toBe(true);
  });

  for (const mode of ['v48', 'newer'] as const) {
    describe(`errors (${mode} format)`, () => {
      it('a duplicate id is ALREADY_EXISTS with the error chain, VM and device in the message', async () => {
        await start(mode);
        await client.addPciDevice({ hostBdf: '0000:01:00.1', id: 'vf1' });
        const e = await expectError(client.addPciDevice({ hostBdf: '0000:01:00.2', id: 'vf1' }), 'ALREADY_EXISTS', /vm.add-device vf1/, /host 0000:01:00.2/, /VM vm1/, /Identifier vf1 is not unique/);
        expect(e.details.httpStatus).toBe(mode === 'v48' ? 500 : 409);
        if (mode === 'v48') expect(e.details.errorChain).toEqual(['Error from API', 'The device could not be added to the VM', 'DeviceManager error: Identifier vf1 is not unique']);
      });

      it('a VFIO device the VMM cannot use is FAILED_PRECONDITION', async () => {
        await start(mode, { onAddDevice: () => ['Failed to create VFIO device', 'Failed to open VFIO group 12: group is not viable'] });
        await expectError(client.addPciDevice({ hostBdf: '0000:01:00.1', id: 'vf1' }), 'FAILED_PRECONDITION', /group is not viable/, /VM vm1/);
      });

      it('removing an unknown device is NOT_FOUND', async () => {
        await start(mode);
        await expectError(client.removeDevice('nope', 1000), 'NOT_FOUND', /vm.remove-device nope/, /Unknown device identifier: nope/);
      });
    });
  }

  it('a missing socket and a socket nobody listens on are UNAVAILABLE; no answer is DEADLINE_EXCEEDED', async () => {
    await expectError(client.ping(), 'UNAVAILABLE', /VM vm1/, /API socket does not exist/);
    writeFileSync(path.join(dir, 'ch.sock'), '');
    await expectError(client.ping(), 'UNAVAILABLE', /ECONNREFUSED/);
    await start('v48', { hang: new Set(['vm.add-device']) });
    await expectError(client.addPciDevice({ hostBdf: '0000:01:00.1', id: 'vf1' }, 200), 'DEADLINE_EXCEEDED', /no answer within 200 ms/, /VM vm1/);
  });

  it('an add that never reached the VMM says commandSent false (no socket, refused, EAGAIN); one sent and not answered true', async () => {
    const add = (): Promise<unknown> => client.addPciDevice({ hostBdf: '0000:01:00.1', id: 'vf1' }, 200);
    const socketPath = path.join(dir, 'ch.sock');
    expect((await expectError(add(), 'UNAVAILABLE', /API socket does not exist/)).details).toMatchObject({ reason: 'VMM_SOCKET_MISSING', commandSent: false });
    writeFileSync(socketPath, '');
    expect((await expectError(add(), 'UNAVAILABLE', /ECONNREFUSED/)).details).toMatchObject({ reason: 'VMM_UNAVAILABLE', commandSent: false });
    rmSync(socketPath);
    // a listen queue that is full: connect(2) says EAGAIN (a listener that never accepts and queues one connection)
    const listener = spawn('python3', ['-c', NEVER_ACCEPTS, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise((resolve) => listener.stdout.once('data', resolve));
      await expectError(client.ping(200), 'DEADLINE_EXCEEDED', /no answer within 200 ms/); // the one it queues
      expect((await expectError(add(), 'INTERNAL', /EAGAIN/)).details).toMatchObject({ reason: 'VMM_ERROR', commandSent: false });
    } finally {
      listener.kill();
      await new Promise((resolve) => (listener.exitCode !== null || listener.signalCode !== null ? resolve(null) : listener.once('exit', resolve)));
      rmSync(socketPath, { force: true });
    }
    await start('v48', { hang: new Set(['vm.add-device']) });
    expect((await expectError(add(), 'DEADLINE_EXCEEDED', /vm\.add-device vf1 .*no answer within 200 ms/)).details).toEqual({
      reason: 'VMM_TIMEOUT',
      vmId: 'vm1',
      socketPath,
      commandSent: true,
    });
  });
});

describe('error chain parsing and classification', () => {
  it('reads v48 arrays, JSON objects and plain text', () => {
    expect(parseErrorChain('["Error from API","The VM could not be booted"]')).toEqual(['Error from API', 'The VM could not be booted']);
    expect(parseErrorChain('{"error":"bad request"}')).toEqual(['bad request']);
    expect(parseErrorChain('Device not found\n')).toEqual(['Device not found']);
    expect(parseErrorChain('')).toEqual([]);
  });

  it('maps statuses and texts onto codes', () => {
    expect(classifyApiError(500, ['Error from API', 'VM is not running'])).toBe('FAILED_PRECONDITION');
    expect(classifyApiError(500, ['Error from API', 'Something odd'])).toBe('INTERNAL');
    expect(classifyApiError(404, ['whatever'])).toBe('NOT_FOUND');
    expect(classifyApiError(409, ['conflict'])).toBe('FAILED_PRECONDITION');
    expect(classifyApiError(400, ['bad'])).toBe('INVALID_ARGUMENT');
    expect(classifyApiError(503, ['later'])).toBe('UNAVAILABLE');
  });
});

describe('a VMM that answers badly (raw HTTP server)', () => {
  let server: http.Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    if (server) await new Promise((r) => server!.close(r));
    server = undefined;
  });
  /** An HTTP server on the API socket whose every answer `handler` writes. */
  const serve = async (handler: http.RequestListener): Promise<void> => {
    server = http.createServer(handler);
    await new Promise<void>((resolve) => server!.listen(path.join(dir, 'ch.sock'), resolve));
  };

  it('JSON that is not an object, a device_tree that is not one, and a 500 with an HTML body are precise errors', async () => {
    let body = 'null';
    let status = 200;
    await serve((_req, res) => res.writeHead(status, { 'Content-Type': 'application/json' }).end(body));
    await expectError(client.ping(), 'INTERNAL', /vmm\.ping/, /VM vm1/, /not an object: null/);
    body = '{"config": {}, "state": "Running", "device_tree": [1]}';
    await expectError(client.hasDevice('vf1'), 'INTERNAL', /vm\.info/, /device_tree is not an object/);
    body = '{"config": {}, "state": "Running", "device_tree": {"x": null, "vf1": {"id": "vf1"}}}';
    expect(await client.hasDevice('vf1')).toBe(true); // a stray null node is skipped, not a TypeError
    status = 500;
    body = '<html><body>Internal Server Error</body></html>';
    await expectError(client.ping(), 'INTERNAL', /answered 500: <html><body>Internal Server Error/);
  });

  it('a hot-plug whose 200 body is unreadable still counts as added (the device is in the VM)', async () => {
    await serve((_req, res) => res.writeHead(200).end('ok'));
    expect(await client.addPciDevice({ hostBdf: '0000:01:00.1', id: 'vf1' })).toEqual({ id: 'vf1', guestBdf: null, coldAdded: false, bus: null });
  });

  it('a chunked answer that never ends is cut off at the size limit; one cut off by the VMM going away is UNAVAILABLE at once', async () => {
    let mode: 'huge' | 'cut' = 'huge';
    await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' }); // no Content-Length: chunked
      if (mode === 'cut') {
        res.write('{"config": {');
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      const piece = Buffer.alloc(1 << 20, 0x20);
      let sent = 0;
      const more = (): void => {
        while (sent < 12 && !res.destroyed) {
          sent++;
          if (!res.write(piece)) return void res.once('drain', more);
        }
      };
      more();
    });
    await expectError(client.deviceTree(20_000), 'INTERNAL', /vm\.info/, /larger than 8388608 bytes/);
    mode = 'cut';
    const t0 = Date.now();
    await expectError(client.deviceTree(20_000), 'UNAVAILABLE', /vm\.info/, /closed in the middle of the answer|aborted|socket hang up/);
    expect(Date.now() - t0).toBeLessThan(10_000); // not the 20 s timeout
  });
});
