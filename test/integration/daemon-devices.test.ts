/**
 * The control API end to end, in-process daemon on a temp unix socket, fake sysfs (test/helpers/fake-sysfs.ts):
 * DeviceService (every RPC and error path), event streaming, malformed requests, health checking, reflection,
 * reconcile on start, the socket's mode and refusal of a live socket, TLS and the refusal of plain TCP.
 */
import type { RequestOf, RpcName } from '../../src/daemon/proto.js';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ClaimStore } from '../../src/devices/claims.js';
import { VfiodClient } from '../../src/daemon/client.js';
import { unpackAny } from '../../src/daemon/proto.js';
import { type Daemon, startDaemon } from '../../src/daemon/server.js';
import { VfiodError } from '../../src/util/errors.js';
import { memoryLogger } from '../../src/util/log.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { expectStatus, healthCheck, healthClient, rawCall, reflectionFileContaining, reflectionListServices, streamSubscribed } from '../helpers/daemon-client.js';
import { sleep, temporaryDir } from '../helpers/common.js';

const PF = '0000:01:00.0';
const VF1 = '0000:01:00.1';
const VF2 = '0000:01:00.2';
const GPU = '0000:02:00.0';
const GPU_AUDIO = '0000:02:00.1';
const MOUNTED = '0000:06:00.0';
const NO_IOMMU = '0000:08:00.0';

let host: FakeHost;
let dir: string;
let daemon: Daemon;
let client: VfiodClient;
let logs: ReturnType<typeof memoryLogger>;

async function start(extra: Parameters<typeof startDaemon>[0] = {}): Promise<Daemon> {
  return startDaemon({
    socketPath: path.join(dir, 'vfiod.sock'),
    stateDir: path.join(dir, 'state'),
    roots: host.roots,
    writer: host.writer,
    prober: host.prober,
    pollMs: 5,
    vfioTimeoutMs: 200,
    logger: logs.logger,
    ...extra,
  });
}

beforeEach(async () => {
  host = standardHost();
  dir = temporaryDir('vfiod-daemon-');
  logs = memoryLogger();
  daemon = await start();
  client = new VfiodClient({ address: daemon.socketPath! });
});
afterEach(async () => {
  client.close();
  await daemon.close();
  host.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const devices = <M extends RpcName<'DeviceService'>>(rpc: M, request: RequestOf<'DeviceService', M>) => client.call('DeviceService', rpc, request);

describe('DeviceService', () => {
  it('ListDevices returns every device with its binding, group, SR-IOV and VFIO facts, and filters like the CLI', async () => {
    const all = await devices('ListDevices', {});
    expect(all['devices'].map((d: { bdf: string }) => d.bdf)).toContain(VF1);
    expect(all['devices']).toHaveLength(15);
    const pf = all['devices'].find((d: { bdf: string }) => d.bdf === PF);
    expect(pf).toMatchObject({ vendorId: '15b3', deviceId: '6001', classCode: '010802', kind: 'DEVICE_KIND_NVME', driver: 'nvme', iommuGroup: 2, sriov: { totalVfs: 8, numVfs: 3, driversAutoprobe: true } });
    expect(pf!.virtfns).toEqual([VF1, VF2, '0000:01:00.3']);
    const noIommu = all['devices'].find((d: { bdf: string }) => d.bdf === NO_IOMMU);
    expect(noIommu!.iommuGroup).toBeUndefined();
    expect(noIommu!.vfioState).toBe('VFIO_STATE_NO_IOMMU');

    const vfs = await devices('ListDevices', { pfs: ['01:00.0'] });
    expect(vfs['devices'].map((d: { bdf: string }) => d.bdf)).toEqual([VF1, VF2, '0000:01:00.3']);
    const displays = await devices('ListDevices', { kinds: ['DEVICE_KIND_DISPLAY'] });
    expect(displays['devices'].map((d: { bdf: string }) => d.bdf)).toEqual([GPU, '0000:05:00.0', '0000:05:00.4']);
    const byId = await devices('ListDevices', { ids: ['144d:a80a'] });
    expect(byId['devices'].map((d: { bdf: string }) => d.bdf)).toEqual([MOUNTED, '0000:07:00.0']);
    const free = await devices('ListDevices', { freeOnly: true, kinds: ['DEVICE_KIND_NVME'] });
    expect(free['devices'].map((d: { bdf: string }) => d.bdf)).not.toContain(MOUNTED);

    await expectStatus(devices('ListDevices', { bdfs: ['zz:00.0'] }), 'INVALID_ARGUMENT', 'bdfs[0]', 'zz:00.0');
    await expectStatus(devices('ListDevices', { ids: ['nvidia'] }), 'INVALID_ARGUMENT', 'nvidia');
    await expectStatus(devices('ListDevices', { pfs: ['x'] }), 'INVALID_ARGUMENT', 'pfs[0]');
  });

  it('GetDevice returns one device with host use and its claim; NOT_FOUND and INVALID_ARGUMENT name the address', async () => {
    const { device } = await devices('GetDevice', { bdf: '06:00.0' });
    expect(device!.bdf).toBe(MOUNTED);
    expect(device!.hostUses.some((u: { kind: string; blocking: boolean }) => u.kind === 'mounted' && u.blocking)).toBe(true);
    expect(device!.claim).toBeNull();
    await devices('PrepareDevice', { bdf: VF1, owner: 'vm1' });
    const claimed = (await devices('GetDevice', { bdf: VF1 }))['device'];
    expect(claimed!.claim).toMatchObject({ owner: 'vm1', state: 'CLAIM_STATE_PREPARED', mode: 'CLAIM_MODE_VFIO_PCI', originalDriver: 'nvme', primaryBdf: VF1 });
    expect(claimed!.driver).toBe('vfio-pci');
    await expectStatus(devices('GetDevice', { bdf: '0000:0f:00.0' }), 'NOT_FOUND', '0000:0f:00.0');
    await expectStatus(devices('GetDevice', {}), 'INVALID_ARGUMENT', 'bdf is required');
    await expectStatus(devices('GetDevice', { bdf: 'not-a-bdf' }), 'INVALID_ARGUMENT', 'not-a-bdf');
  });

  it('PrepareDevice binds to vfio-pci (idempotent), ReleaseDevice restores the host driver exactly', async () => {
    const prepared = await devices('PrepareDevice', { bdf: VF1, owner: 'vm1' });
    expect(prepared).toMatchObject({ bdf: VF1, owner: 'vm1', changed: true, iommuGroup: 3, vfioGroupDev: host.groupDevPath(3) });
    expect(prepared['devices']).toEqual([{ bdf: VF1, mode: 'CLAIM_MODE_VFIO_PCI', originalDriver: 'nvme', companion: false }]);
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    expect((await devices('PrepareDevice', { bdf: VF1, owner: 'vm1' }))['changed']).toBe(false);

    const released = await devices('ReleaseDevice', { bdf: VF1, owner: 'vm1' });
    expect(released).toMatchObject({ bdf: VF1, owner: 'vm1', autoprobeRestored: [PF] });
    expect(released['devices']).toEqual([{ bdf: VF1, restoredDriver: 'nvme', gone: false }]);
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(host.overrideOf(VF1)).toBeNull();
  });

  it('prepares a GPU with its audio companion in one call', async () => {
    const prepared = await devices('PrepareDevice', { bdf: GPU, owner: 'gpu-vm' });
    expect(prepared['devices'].map((d: { bdf: string; companion: boolean }) => [d.bdf, d.companion])).toEqual([[GPU, false], [GPU_AUDIO, true]]);
    expect(host.driverOf(GPU_AUDIO)).toBe('vfio-pci');
    await devices('ReleaseDevice', { bdf: GPU, owner: 'gpu-vm' });
    expect(host.driverOf(GPU)).toBe('amdgpu');
    expect(host.driverOf(GPU_AUDIO)).toBe('snd_hda_intel');
  });

  it('maps every refusal of prepare onto its status, naming the device and the VM', async () => {
    await expectStatus(devices('PrepareDevice', { owner: 'vm1' }), 'INVALID_ARGUMENT', 'bdf is required');
    await expectStatus(devices('PrepareDevice', { bdf: VF1 }), 'INVALID_ARGUMENT', 'owner is required', VF1);
    await expectStatus(devices('PrepareDevice', { bdf: '0000:0f:00.0', owner: 'vm1' }), 'NOT_FOUND', '0000:0f:00.0', 'vm1');
    await expectStatus(devices('PrepareDevice', { bdf: NO_IOMMU, owner: 'vm1' }), 'FAILED_PRECONDITION', NO_IOMMU, 'IOMMU', 'vm1');
    await expectStatus(devices('PrepareDevice', { bdf: MOUNTED, owner: 'vm1' }), 'FAILED_PRECONDITION', MOUNTED, 'in use on the host', 'vm1');
    expect(host.driverOf(MOUNTED)).toBe('nvme');
    await devices('PrepareDevice', { bdf: VF1, owner: 'vm1' });
    await expectStatus(devices('PrepareDevice', { bdf: VF1, owner: 'vm2' }), 'ALREADY_EXISTS', VF1, 'vm1', 'vm2');
    // A device whose VFIO probe fails is rolled back; the message says so.
    host.probeOverrides.set(VF2, new Error('VFIO_GROUP_GET_DEVICE_FD: EINVAL'));
    await expectStatus(devices('PrepareDevice', { bdf: VF2, owner: 'vm1' }), 'INTERNAL', VF2, 'EINVAL', 'rolled back');
    expect(host.driverOf(VF2)).toBeNull();
    const forced = await devices('PrepareDevice', { bdf: MOUNTED, owner: 'vm3', force: true });
    expect(forced['overridden'].join(' ')).toContain('mounted');
  });

  it('maps every refusal of release onto its status', async () => {
    await expectStatus(devices('ReleaseDevice', { bdf: VF1, owner: 'vm1' }), 'NOT_FOUND', VF1, 'not claimed');
    await devices('PrepareDevice', { bdf: VF1, owner: 'vm1' });
    await expectStatus(devices('ReleaseDevice', { bdf: VF1, owner: 'vm2' }), 'FAILED_PRECONDITION', VF1, 'vm1', 'vm2');
    await expectStatus(devices('ReleaseDevice', { bdf: VF1 }), 'INVALID_ARGUMENT', 'owner is required');
    host.holdOpen(4242, 'cloud-hyperviso', host.groupDevPath(3));
    await expectStatus(devices('ReleaseDevice', { bdf: VF1, owner: 'vm1', waitMs: 30 }), 'UNAVAILABLE', VF1, 'pid 4242', 'waited 30 ms');
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    host.exitProcess(4242);
    await devices('ReleaseDevice', { bdf: VF1, owner: 'vm1' });
    expect(host.driverOf(VF1)).toBe('nvme');
  });

  it('StreamDeviceEvents delivers prepare/release outcomes as {id, component_id, Any} events, filtered by device', async () => {
    const all = client.stream('DeviceService', 'StreamDeviceEvents', {});
    const onlyVf2 = client.stream('DeviceService', 'StreamDeviceEvents', { bdfs: [VF2] });
    const received: Array<Record<string, any>> = [];
    const receivedVf2: Array<Record<string, any>> = [];
    all.on('data', (e) => received.push(e));
    onlyVf2.on('data', (e) => receivedVf2.push(e));
    all.on('error', () => {});
    onlyVf2.on('error', () => {});
    await Promise.all([streamSubscribed(all), streamSubscribed(onlyVf2)]);
    await devices('PrepareDevice', { bdf: VF1, owner: 'vm1' });
    await devices('ReleaseDevice', { bdf: VF1, owner: 'vm1' });
    await expectStatus(devices('PrepareDevice', { bdf: MOUNTED, owner: 'vm1' }), 'FAILED_PRECONDITION');
    await devices('PrepareDevice', { bdf: VF2, owner: 'vm2' });
    await vi_waitFor(() => received.length >= 4);
    const decoded: Array<Record<string, unknown>> = received.map((e) => ({ id: e['id'], componentId: e['componentId'], ...unpackAny(e['data']).value }));
    expect(decoded.map((e) => [e.componentId, e['kind'], e['owner']])).toEqual([
      [VF1, 'DEVICE_EVENT_KIND_PREPARED', 'vm1'],
      [VF1, 'DEVICE_EVENT_KIND_RELEASED', 'vm1'],
      [MOUNTED, 'DEVICE_EVENT_KIND_PREPARE_FAILED', 'vm1'],
      [VF2, 'DEVICE_EVENT_KIND_PREPARED', 'vm2'],
    ]);
    expect(received[0]!['data'].type_url).toBe('type.googleapis.com/vfiod.v1.DeviceStateChanged');
    expect(Number(decoded[1]!.id)).toBeGreaterThan(Number(decoded[0]!.id));
    expect(String(decoded[2]!['detail'])).toContain('in use on the host');
    await vi_waitFor(() => receivedVf2.length >= 1);
    expect(receivedVf2.map((e) => e['componentId'])).toEqual([VF2]);
    all.cancel();
    onlyVf2.cancel();

    const bad = client.stream('DeviceService', 'StreamDeviceEvents', { bdfs: ['nope'] });
    const error = await new Promise<grpc.ServiceError>((resolve) => bad.on('error', resolve));
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.details).toContain('nope');
  });

  it('survives malformed requests: undecodable bytes, wrong field types, unknown methods', async () => {
    const address = daemon.socketPath!;
    const garbage = await rawCall(address, '/vfiod.v1.DeviceService/PrepareDevice', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    expect(Buffer.isBuffer(garbage)).toBe(false);
    expect((garbage as { code: number }).code).not.toBe(grpc.status.OK);
    // Field 1 (bdf) sent as a varint instead of a string.
    const wrongType = await rawCall(address, '/vfiod.v1.DeviceService/GetDevice', Buffer.from([0x08, 0x01]));
    expect((wrongType as { code: number }).code).not.toBe(grpc.status.OK);
    const unknown = await rawCall(address, '/vfiod.v1.DeviceService/FormatHost', Buffer.alloc(0));
    expect((unknown as { code: number }).code).toBe(grpc.status.UNIMPLEMENTED);
    // An empty body is a valid (all-default) request: INVALID_ARGUMENT, not a crash.
    const empty = await rawCall(address, '/vfiod.v1.DeviceService/PrepareDevice', Buffer.alloc(0));
    expect(empty).toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    // Still serving.
    expect((await devices('GetDevice', { bdf: VF1 }))['device']!.bdf).toBe(VF1);
  });
});

describe('vfiod devices: daemon or standalone', () => {
  it('goes through the daemon only with --daemon; standalone next to a running daemon says so', async () => {
    const { devicesUseDaemon, runDevices } = await import('../../src/cli/devices.js');
    const saved = process.env['VFIOD_DAEMON'];
    try {
      process.env['VFIOD_DAEMON'] = daemon.socketPath!;
      // The daemon's socket is there, and still: standalone unless told.
      expect(devicesUseDaemon(['list'])).toBe(false);
      expect(devicesUseDaemon(['list', '--standalone'])).toBe(false);
      expect(devicesUseDaemon(['list', '--daemon', daemon.socketPath!])).toBe(true);
      expect(devicesUseDaemon(['list', `--daemon=${daemon.socketPath!}`])).toBe(true);
      // On the host's sysfs (the default root), standalone names the daemon it is not using. `help` prints no notice.
      let stderr = '';
      const stdout: string[] = [];
      const deps = { stdout: (t: string) => void stdout.push(t), stderr: (t: string) => void (stderr += t) };
      await runDevices(['list', '--state', path.join(dir, 'standalone.db'), '--json'], deps);
      expect(stderr).toContain(`standalone (sysfs and ${path.join(dir, 'standalone.db')}), not through the daemon at ${daemon.socketPath!}; give --daemon ${daemon.socketPath!}`);
      stderr = '';
      expect(await runDevices(['help'], deps)).toBe(0);
      expect(stderr).toBe('');
      // With its own sysfs root (a test bed, another root) there is nothing to confuse: no notice.
      await runDevices(['list', '--sysfs-root', host.roots.sysfs, '--dev-root', host.roots.dev, '--proc-root', host.roots.proc, '--state', path.join(dir, 'standalone.db')], deps);
      expect(stderr).toBe('');
      // No daemon socket: no notice either.
      process.env['VFIOD_DAEMON'] = path.join(dir, 'absent.sock');
      await runDevices(['list', '--state', path.join(dir, 'standalone.db'), '--json'], deps);
      expect(stderr).toBe('');
    } finally {
      if (saved === undefined) delete process.env['VFIOD_DAEMON'];
      else process.env['VFIOD_DAEMON'] = saved;
    }
  });
});

describe('vfiod devices: the same output through the daemon as standalone', () => {
  it('prints the same list and show reports from the API as from sysfs and the claims database', async () => {
    const { runDevices, runDevicesViaDaemon } = await import('../../src/cli/devices.js');
    await devices('PrepareDevice', { bdf: VF1, owner: 'vm1' });
    const capture = async (run: (argv: string[], deps: { stdout: (t: string) => void }) => Promise<number>, argv: string[]): Promise<string> => {
      let text = '';
      expect(await run(argv, { stdout: (t) => void (text += t) })).toBe(0);
      return text;
    };
    const local = ['--sysfs-root', host.roots.sysfs, '--dev-root', host.roots.dev, '--proc-root', host.roots.proc, '--state', path.join(dir, 'state', 'claims.db')];
    const viaDaemon = ['--daemon', daemon.socketPath!];
    for (const argv of [['list'], ['list', '--free'], ['show', VF1], ['show', MOUNTED], ['show', GPU], ['show', NO_IOMMU]]) {
      const standalone = await capture(runDevices, [...argv, ...local]);
      expect(standalone.length).toBeGreaterThan(0);
      expect(await capture(runDevicesViaDaemon, [...argv, ...viaDaemon]), argv.join(' ')).toBe(standalone);
    }
  });
});

describe('error mapping', () => {
  it('maps each VfiodError code 1:1 onto a gRPC status; anything else is INTERNAL with a log line', async () => {
    const { unary, GRPC_STATUS } = await import('../../src/daemon/requests.js');
    expect(GRPC_STATUS).toEqual({
      NOT_FOUND: grpc.status.NOT_FOUND,
      INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
      FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
      ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
      UNAVAILABLE: grpc.status.UNAVAILABLE,
      DEADLINE_EXCEEDED: grpc.status.DEADLINE_EXCEEDED,
      RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
      PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
      INTERNAL: grpc.status.INTERNAL,
    });
    const { logger, lines } = memoryLogger();
    const call = (handler: () => unknown) =>
      new Promise<{ code: number; details: string } | null>((resolve) =>
        unary('TestRpc', logger, handler)({ request: {} } as never, ((error: { code: number; details: string } | null) => resolve(error)) as never),
      );
    expect(await call(() => {
      throw new VfiodError('DEADLINE_EXCEEDED', 'VM vm1: the guest did not release disk1', { reason: 'GUEST_DID_NOT_RELEASE', vmId: 'vm1', deviceId: 'disk1' });
    })).toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED, details: 'VM vm1: the guest did not release disk1' });
    expect(await call(() => {
      throw new TypeError("Cannot read properties of undefined (reading 'bdf')");
    })).toMatchObject({ code: grpc.status.INTERNAL, details: "TestRpc: internal error: Cannot read properties of undefined (reading 'bdf')" });
    expect(lines.find((l) => l['level'] === 'error')).toMatchObject({ msg: 'request failed unexpectedly', rpc: 'TestRpc' });
    expect(await call(async () => ({ ok: true }))).toBeNull();
  });
});

async function vi_waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}

describe('daemon', () => {
  it('answers gRPC health checks for the server and each service, and NOT_FOUND for unknown ones', async () => {
    const health = healthClient(daemon.socketPath!);
    expect(await healthCheck(health, '')).toBe('SERVING');
    for (const service of ['vfiod.v1.DeviceService', 'vfiod.v1.ControllerService', 'vfiod.v1.AttachmentService']) {
      expect(await healthCheck(health, service)).toBe('SERVING');
    }
    await expectStatus(healthCheck(health, 'vfiod.v1.NoSuchService'), 'NOT_FOUND');
    health.close();
  });

  it('answers server reflection with the vfiod.v1 services and their descriptors', async () => {
    const services = await reflectionListServices(daemon.socketPath!);
    expect(services).toEqual(expect.arrayContaining(['vfiod.v1.DeviceService', 'vfiod.v1.ControllerService', 'vfiod.v1.AttachmentService']));
    const files = await reflectionFileContaining(daemon.socketPath!, 'vfiod.v1.ControllerService');
    expect(Buffer.concat(files).toString('latin1')).toContain('CreateController');
  });

  it('creates its unix socket with mode 0600, refuses a socket another daemon listens on, replaces a stale one', async () => {
    const umaskBefore = process.umask();
    process.umask(umaskBefore);
    expect(statSync(daemon.socketPath!).mode & 0o777).toBe(0o600);
    const error = await start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(VfiodError);
    expect((error as VfiodError).code).toBe('FAILED_PRECONDITION');
    expect((error as VfiodError).message).toContain('another vfiod daemon');
    // The first daemon is unaffected.
    expect((await devices('GetDevice', { bdf: VF1 }))['device']!.bdf).toBe(VF1);

    // A stale socket file (daemon killed) is removed.
    const stalePath = path.join(dir, 'stale.sock');
    execFileSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stalePath)}, () => process.exit(0))`]);
    expect(statSync(stalePath).isSocket()).toBe(true);
    const second = await start({ socketPath: stalePath, stateDir: path.join(dir, 'state2'), socketMode: 0o660 });
    // Exactly the mode asked for (created through the umask, which is restored afterwards).
    expect(statSync(stalePath).mode & 0o777).toBe(0o660);
    await second.close();
    const umaskNow = process.umask();
    process.umask(umaskNow);
    expect(umaskNow).toBe(umaskBefore);
    // A path that is not a socket is never replaced.
    const file = path.join(dir, 'not-a-socket');
    writeFileSync(file, 'data');
    await expect(start({ socketPath: file, stateDir: path.join(dir, 'state3') })).rejects.toThrow(/not a socket/);
  });

  it('reconciles claims on start: an interrupted prepare is undone and reported', async () => {
    await client.call('DeviceService', 'PrepareDevice', { bdf: VF1, owner: 'vm1' });
    client.close();
    await daemon.close();
    // Simulate a crash mid-prepare: the claim says 'preparing' while the device is on vfio-pci.
    const claims = new ClaimStore(path.join(dir, 'state', 'claims.db'));
    claims.update(VF1, { state: 'preparing' });
    claims.close();
    daemon = await start();
    client = new VfiodClient({ address: daemon.socketPath! });
    expect(daemon.reconcileReport).toEqual([expect.objectContaining({ bdf: VF1, action: 'repaired' })]);
    expect(host.driverOf(VF1)).toBe('nvme');
    expect(logs.lines.some((l) => l['msg'] === 'reconcile' && l['bdf'] === VF1 && l['action'] === 'repaired')).toBe(true);
    expect((await devices('GetDevice', { bdf: VF1 }))['device']!.claim).toBeNull();
  });

  it('closes cleanly with a client streaming events, and removes its socket', async () => {
    const stream = client.stream('DeviceService', 'StreamDeviceEvents', {});
    const ended = new Promise<void>((resolve) => {
      stream.on('end', resolve);
      stream.on('error', () => resolve());
    });
    stream.on('data', () => {});
    await streamSubscribed(stream);
    const started = Date.now();
    await daemon.close();
    await ended;
    expect(Date.now() - started).toBeLessThan(3000);
    expect(() => statSync(path.join(dir, 'vfiod.sock'))).toThrow();
  });
});

const opensslMissing = spawnSync('openssl', ['version']).status === 0 ? undefined : 'the openssl CLI is missing (apt-get install openssl)';
if (opensslMissing) console.warn(`daemon TLS tests skipped: ${opensslMissing}`);

/** A self-signed certificate for localhost / 127.0.0.1 (it is also its own CA). */
function selfSigned(dirPath: string, name: string): { cert: string; key: string } {
  const cert = path.join(dirPath, `${name}.pem`);
  const key = path.join(dirPath, `${name}.key`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${name === 'server' ? 'localhost' : name}`,
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  return { cert, key };
}

describe('TCP', () => {
  it('refuses plain TCP unless explicitly allowed', async () => {
    const error = await start({ socketPath: null, tcp: '127.0.0.1:0', stateDir: path.join(dir, 's2') }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as VfiodError).code).toBe('INVALID_ARGUMENT');
    expect((error as VfiodError).message).toContain('refusing plain TCP');
    const insecure = await start({ socketPath: null, tcp: '127.0.0.1:0', insecureTcp: true, stateDir: path.join(dir, 's3') });
    const tcpClient = new VfiodClient({ address: insecure.tcpAddress! });
    expect((await tcpClient.call('DeviceService', 'GetDevice', { bdf: VF1 }))['device']!.bdf).toBe(VF1);
    tcpClient.close();
    await insecure.close();
  });
});

describe.skipIf(opensslMissing)('TLS', () => {
  let certDir: string;
  beforeAll(() => {
    certDir = temporaryDir('vfiod-tls-');
  });
  afterAll(() => rmSync(certDir, { recursive: true, force: true }));

  it('serves TLS with a certificate (no client certificates: only when explicitly allowed); a plaintext client cannot talk to it', async () => {
    const tls = selfSigned(certDir, 'server');
    const secure = await start({ socketPath: null, tcp: '127.0.0.1:0', tls, insecureTlsWithoutClientCert: true, stateDir: path.join(dir, 's4') });
    const port = secure.tcpAddress!.split(':').pop();
    const tlsClient = new VfiodClient({ address: `localhost:${port}`, tls: { ca: tls.cert } });
    expect((await tlsClient.call('DeviceService', 'GetDevice', { bdf: VF1 }))['device']!.bdf).toBe(VF1);
    expect(await healthCheck(healthClient(`localhost:${port}`, grpc.credentials.createSsl(readFileSync(tls.cert))), '')).toBe('SERVING');
    tlsClient.close();
    const plain = new VfiodClient({ address: `127.0.0.1:${port}` });
    await expectStatus(plain.call('DeviceService', 'GetDevice', { bdf: VF1 }, 2000), 'UNAVAILABLE');
    plain.close();
    await secure.close();
  });

  it('with --tls-ca requires a client certificate signed by that CA (mutual TLS)', async () => {
    const server = selfSigned(certDir, 'server');
    const operator = selfSigned(certDir, 'operator');
    const stranger = selfSigned(certDir, 'stranger');
    const secure = await start({ socketPath: null, tcp: '127.0.0.1:0', tls: { ...server, ca: operator.cert }, stateDir: path.join(dir, 's5') });
    const port = secure.tcpAddress!.split(':').pop();
    const address = `localhost:${port}`;
    const trusted = new VfiodClient({ address, tls: { ca: server.cert, cert: operator.cert, key: operator.key } });
    expect((await trusted.call('DeviceService', 'GetDevice', { bdf: VF1 }))['device']!.bdf).toBe(VF1);
    trusted.close();
    for (const client of [new VfiodClient({ address, tls: { ca: server.cert } }), new VfiodClient({ address, tls: { ca: server.cert, cert: stranger.cert, key: stranger.key } })]) {
      await expectStatus(client.call('DeviceService', 'GetDevice', { bdf: VF1 }, 3000), 'UNAVAILABLE');
      client.close();
    }
    await secure.close();
  });
});
