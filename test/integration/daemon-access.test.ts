/**
 * Who may do what on the control API: read-only and admin callers, told apart by the unix peer's uid/gid
 * (SO_PEERCRED; the callers are real processes running as other users) and by the mutual-TLS client certificate's
 * name (real certificates signed by a test CA with the openssl CLI). Refusals are PERMISSION_DENIED with their reason.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDaemonArgs } from '../../src/cli/daemon.js';
import { parseConfigText, sectionArgv } from '../../src/config/file.js';
import { nameMatches, requiredRole } from '../../src/daemon/access.js';
import { type ApiError, VfiodClient } from '../../src/daemon/client.js';
import { type ServiceName, serviceDefinition } from '../../src/daemon/proto.js';
import { type Daemon, startDaemon } from '../../src/daemon/server.js';
import { temporaryDir } from '../helpers/common.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { memoryLogger } from '../../src/util/log.js';

const VF1 = '0000:01:00.1';
const repo = path.resolve(import.meta.dirname, '../..');
const READER_UID = 65534; // nobody
const STRANGER_UID = 65533;

describe('the role each RPC needs', () => {
  it('lets read-only callers List, Get, Stream, Watch and Wait, and nothing else of vfiod.v1', () => {
    const services: ServiceName[] = ['DeviceService', 'ControllerService', 'AttachmentService', 'DaemonService', 'OperationService', 'EventService'];
    const readOnly: string[] = [];
    const admin: string[] = [];
    for (const service of services) {
      for (const [rpc, method] of Object.entries(serviceDefinition(service) as grpc.ServiceDefinition)) {
        (requiredRole(method.path) === 'read-only' ? readOnly : admin).push(rpc);
      }
    }
    expect(readOnly.sort()).toEqual([
      'GetController',
      'GetDaemon',
      'GetDevice',
      'GetOperation',
      'GetVmConfig',
      'ListAttachments',
      'ListControllers',
      'ListDevices',
      'ListOperations',
      'ListVgpuTypes',
      'StreamDeviceEvents',
      'WaitOperation',
      'WatchEvents',
    ]);
    expect(admin.sort()).toEqual([
      'AttachDevice',
      'AttachNamespace',
      'ClearVgpuType',
      'CreateController',
      'CreateVfs',
      'DeleteController',
      'DetachDevice',
      'DetachNamespace',
      'PrepareDevice',
      'ReleaseDevice',
      'ResizeNamespace',
      'RestartDaemon',
      'SetControllerLimits',
      'SetVgpuType',
      'SwapNamespaceBacking',
    ]);
    expect(requiredRole('/grpc.health.v1.Health/Check')).toBe('none');
    expect(requiredRole('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo')).toBe('read-only');
    // A method whose name only starts like a reader's is not one.
    expect(requiredRole('/vfiod.v1.DeviceService/Getaway')).toBe('admin');
  });

  it('matches certificate names with * and nothing else special', () => {
    expect(nameMatches('spiffe://*/monitor', 'spiffe://host1/monitor')).toBe(true);
    expect(nameMatches('spiffe://*/monitor', 'spiffe://host1/monitor/x')).toBe(false);
    expect(nameMatches('feos.example', 'feosXexample')).toBe(false);
    expect(nameMatches('feos-*', 'feos-admin')).toBe(true);
  });
});

describe('vfiod daemon options for roles', () => {
  it('turns --read-only-uid/-gid, --admin-uid/-gid, --read-only-client, --admin-client into the policy, and refuses what cannot work', () => {
    const base = ['--state-dir', '/tmp/x'];
    expect(parseDaemonArgs([...base, '--read-only-uid', '997', '--read-only-gid', '998', '--admin-uid', '1000'])?.access).toEqual({
      unix: { admin: { uids: [1000] }, readOnly: { uids: [997], gids: [998] } },
    });
    const tls = ['--tcp', '127.0.0.1:0', '--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-ca', 'ca.pem'];
    expect(parseDaemonArgs([...base, ...tls, '--admin-client', 'feos-*', '--read-only-client', 'spiffe://*/monitor'])?.access).toEqual({
      tls: { admin: ['feos-*'], readOnly: ['spiffe://*/monitor'] },
    });
    expect(parseDaemonArgs(base)?.access).toBeUndefined();
    expect(() => parseDaemonArgs([...base, '--read-only-uid', 'nobody'])).toThrow(/--read-only-uid takes a numeric id/);
    expect(() => parseDaemonArgs([...base, '--tcp', '127.0.0.1:0', '--insecure-tcp', '--read-only-client', 'x'])).toThrow(/need mutual TLS \(--tls-ca\)/);
  });

  it('takes the same roles from the daemon: section of the configuration file; a uid that is not a number is a file error', () => {
    const file = parseConfigText('vfiod.yaml', "daemon:\n  read-only-uid: [997, 998]\n  admin-gid: 27\n  state-dir: /tmp/x\n");
    expect(parseDaemonArgs(sectionArgv(file.sections.daemon!))?.access).toEqual({ unix: { admin: { gids: [27] }, readOnly: { uids: [997, 998] } } });
    expect(() => parseConfigText('vfiod.yaml', 'daemon:\n  read-only-uid: nobody\n')).toThrow(/vfiod\.yaml:2:18: read-only-uid: must be an integer from 0 to 4294967295/);
  });
});

let host: FakeHost;
let dir: string;
const daemons: Daemon[] = [];
beforeAll(() => {
  host = standardHost();
  dir = temporaryDir('vfiod-access-');
  // The other users' processes must reach the socket.
  chmodSync(dir, 0o755);
});
afterAll(async () => {
  for (const daemon of daemons) await daemon.close();
  host.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

async function start(name: string, extra: Parameters<typeof startDaemon>[0]): Promise<Daemon> {
  const daemon = await startDaemon({
    socketPath: path.join(dir, `${name}.sock`),
    stateDir: path.join(dir, `${name}-state`),
    roots: host.roots,
    writer: host.writer,
    prober: host.prober,
    pollMs: 5,
    vfioTimeoutMs: 200,
    logger: memoryLogger().logger,
    ...extra,
  });
  daemons.push(daemon);
  return daemon;
}

/** What a call answered: 'OK', or the status name and ErrorInfo reason. */
type Outcome = string;

/**
 * Runs calls as another user: a child process with that uid/gid, using the built client (dist/). Each call is
 * [service, rpc, request, metadata?]; the answer is one Outcome per call.
 */
async function callAs(uid: number, gid: number, socketPath: string, calls: Array<[string, string, Record<string, unknown>, Record<string, string>?]>): Promise<Outcome[]> {
  const script = path.join(dir, 'caller.mjs');
  writeFileSync(
    script,
    `import * as grpc from '${repo}/node_modules/@grpc/grpc-js/build/src/index.js';
import { clientConstructor } from '${repo}/dist/daemon/proto.js';
import { statusDetailsOfMetadata } from '${repo}/dist/daemon/client.js';
const [socketPath, callsJson] = process.argv.slice(2);
const outcomes = [];
for (const [service, rpc, request, metadata = {}] of JSON.parse(callsJson)) {
  const client = new (clientConstructor(service))('unix:' + socketPath, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  outcomes.push(await new Promise((resolve) => {
    const done = (error) => resolve(error ? grpc.status[error.code] + ' ' + (statusDetailsOfMetadata(error.metadata)?.errorInfo?.reason ?? '') : 'OK');
    if (rpc === 'StreamDeviceEvents' || rpc === 'WatchEvents') {
      const stream = client[rpc](request, md);
      stream.on('metadata', () => { stream.cancel(); done(null); });
      stream.on('error', (error) => error.code === grpc.status.CANCELLED ? undefined : done(error));
    } else client[rpc](request, md, { deadline: Date.now() + 20000 }, (error) => done(error));
  }));
  client.close();
}
process.stdout.write(JSON.stringify(outcomes));
`,
  );
  chmodSync(script, 0o644);
  const child = spawn(process.execPath, [script, socketPath, JSON.stringify(calls)], { uid, gid, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`caller as uid ${uid} exited ${code}: ${stderr}`);
  return JSON.parse(stdout) as Outcome[];
}

const runningAsRoot = process.getuid?.() === 0;
if (!runningAsRoot) console.log('skipping the unix peer tests: they start callers as other users, which needs root');

describe.skipIf(!runningAsRoot)('unix socket: roles by peer uid/gid (SO_PEERCRED)', () => {
  it('a read-only uid may list, get and watch, not change; a uid in no role is refused everything; root is admin', async () => {
    const daemon = await start('unix', { socketMode: 0o666, access: { unix: { readOnly: { uids: [READER_UID] } } } });
    const socket = daemon.socketPath!;
    const reads: Array<[string, string, Record<string, unknown>]> = [
      ['DeviceService', 'ListDevices', {}],
      ['DeviceService', 'GetDevice', { bdf: VF1 }],
      ['ControllerService', 'ListControllers', {}],
      ['AttachmentService', 'ListAttachments', {}],
      ['DaemonService', 'GetDaemon', {}],
      ['DeviceService', 'StreamDeviceEvents', {}],
      ['OperationService', 'ListOperations', {}],
      ['EventService', 'WatchEvents', {}],
    ];
    const writes: Array<[string, string, Record<string, unknown>, Record<string, string>?]> = [
      ['DeviceService', 'PrepareDevice', { bdf: VF1, owner: 'vm1' }],
      ['ControllerService', 'DeleteController', { id: 'c1' }],
      ['AttachmentService', 'DetachDevice', { vmId: 'vm1', deviceId: 'd1' }],
      ['DeviceService', 'SetVgpuType', { bdf: VF1, owner: 'vm1', typeId: 1 }],
      ['DeviceService', 'CreateVfs', { pf: VF1, owner: 'vm1', numVfs: 1 }],
      // A Get that would prepare devices, even with the role the interceptor stamps forged by the client.
      ['AttachmentService', 'GetVmConfig', { hypervisor: 'HYPERVISOR_KIND_QEMU', vmId: 'vm1', devices: [{ source: { pciBdf: VF1 } }], prepareDevices: true }, { 'vfiod-caller-role': 'admin' }],
    ];
    // WaitOperation reads: an unknown operation is NOT_FOUND, not a refusal.
    const wait: [string, string, Record<string, unknown>] = ['OperationService', 'WaitOperation', { name: 'operations/none', timeoutMs: 1 }];
    expect(await callAs(READER_UID, READER_UID, socket, [...reads, wait, ...writes])).toEqual([
      ...reads.map(() => 'OK'),
      'NOT_FOUND OPERATION_NOT_FOUND',
      ...writes.map(() => 'PERMISSION_DENIED ADMIN_ROLE_REQUIRED'),
    ]);
    // Nothing was prepared by the refused calls.
    const root = new VfiodClient({ address: socket });
    expect((await root.call('DeviceService', 'GetDevice', { bdf: VF1 })).device!.claim).toBeNull();

    expect(await callAs(STRANGER_UID, STRANGER_UID, socket, [reads[0]!, writes[0]!])).toEqual(['PERMISSION_DENIED CALLER_NOT_AUTHORIZED', 'PERMISSION_DENIED CALLER_NOT_AUTHORIZED']);

    // Root (this process) is admin: it prepares, and the same GetVmConfig with prepare_devices goes through.
    expect((await root.call('DeviceService', 'PrepareDevice', { bdf: VF1, owner: 'vm1' })).changed).toBe(true);
    expect((await root.call('DeviceService', 'ReleaseDevice', { bdf: VF1, owner: 'vm1' })).owner).toBe('vm1');
    root.close();
  }, 60_000);

  it('--read-only-gid takes the peer\'s primary gid; --admin-uid makes another user admin', async () => {
    const daemon = await start('gid', { socketMode: 0o666, access: { unix: { readOnly: { gids: [4242] }, admin: { uids: [STRANGER_UID] } } } });
    const socket = daemon.socketPath!;
    const prepare: [string, string, Record<string, unknown>] = ['DeviceService', 'PrepareDevice', { bdf: VF1, owner: 'vm2' }];
    const release: [string, string, Record<string, unknown>] = ['DeviceService', 'ReleaseDevice', { bdf: VF1, owner: 'vm2' }];
    expect(await callAs(READER_UID, 4242, socket, [['DeviceService', 'ListDevices', {}], prepare])).toEqual(['OK', 'PERMISSION_DENIED ADMIN_ROLE_REQUIRED']);
    expect(await callAs(STRANGER_UID, STRANGER_UID, socket, [prepare, release])).toEqual(['OK', 'OK']);
  }, 60_000);
});

const opensslMissing = spawnSync('openssl', ['version']).status === 0 ? undefined : 'the openssl CLI is missing (apt-get install openssl)';
if (opensslMissing) console.log(`skipping the client certificate tests: ${opensslMissing}`);

describe.skipIf(opensslMissing)('mutual TLS: roles by client certificate name', () => {
  let certs: string;
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'ignore' });
  /** A key and a certificate for `cn` (with `san`) signed by the test CA. */
  const issue = (name: string, cn: string, san: string): { cert: string; key: string } => {
    const key = path.join(certs, `${name}.key`);
    const csr = path.join(certs, `${name}.csr`);
    const cert = path.join(certs, `${name}.pem`);
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${san}`, '-keyout', key, '-out', csr);
    openssl('x509', '-req', '-in', csr, '-CA', path.join(certs, 'ca.pem'), '-CAkey', path.join(certs, 'ca.key'), '-CAcreateserial', '-days', '1', '-copy_extensions', 'copyall', '-out', cert);
    return { cert, key };
  };
  beforeAll(() => {
    certs = temporaryDir('vfiod-access-tls-');
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=vfiod test CA', '-keyout', path.join(certs, 'ca.key'), '-out', path.join(certs, 'ca.pem'));
  });
  afterAll(() => rmSync(certs, { recursive: true, force: true }));

  it('admin and read-only by CN or SAN pattern; a certificate in neither list gets only health', async () => {
    const server = issue('server', 'localhost', 'DNS:localhost,IP:127.0.0.1');
    const daemon = await start('tls', {
      socketPath: null,
      tcp: '127.0.0.1:0',
      tls: { ...server, ca: path.join(certs, 'ca.pem') },
      access: { tls: { admin: ['feos-*'], readOnly: ['spiffe://*/monitor'] } },
    });
    const address = `localhost:${daemon.tcpAddress!.split(':').pop()}`;
    const as = (cert: { cert: string; key: string }): VfiodClient => new VfiodClient({ address, tls: { ca: path.join(certs, 'ca.pem'), ...cert } });
    const outcome = (promise: Promise<unknown>): Promise<Outcome> =>
      promise.then(
        () => 'OK',
        (error: { statusName?: string; reason?: string }) => `${error.statusName} ${error.reason}`,
      );

    const admin = as(issue('admin', 'feos-admin', 'DNS:feos.example'));
    const reader = as(issue('reader', 'metrics', 'URI:spiffe://host1/monitor'));
    const stranger = as(issue('stranger', 'someone', 'DNS:someone.example'));
    expect(await outcome(reader.call('DeviceService', 'ListDevices', {}))).toBe('OK');
    expect(await outcome(reader.call('DeviceService', 'PrepareDevice', { bdf: VF1, owner: 'vm3' }))).toBe('PERMISSION_DENIED ADMIN_ROLE_REQUIRED');
    const refused = await reader.call('DeviceService', 'PrepareDevice', { bdf: VF1, owner: 'vm3' }).then(
      () => expect.unreachable('a read-only caller prepared a device'),
      (error: unknown) => error as ApiError,
    );
    expect(refused.details).toBe('client certificate metrics is read-only: PrepareDevice needs the admin role');
    expect(refused.metadata).toMatchObject({ rpc: 'PrepareDevice', role: 'read-only', caller: 'client certificate metrics' });
    // GetVmConfig reads, unless it is asked to prepare: then its handler refuses, naming the caller too.
    const vmConfig = { hypervisor: 'HYPERVISOR_KIND_QEMU' as const, vmId: 'vm3', devices: [{ source: { pciBdf: VF1 } }] };
    expect(await outcome(reader.call('AttachmentService', 'GetVmConfig', vmConfig))).toBe('OK');
    const preparing = await reader.call('AttachmentService', 'GetVmConfig', { ...vmConfig, prepareDevices: true }).then(
      () => expect.unreachable('a read-only caller prepared devices'),
      (error: unknown) => error as ApiError,
    );
    expect([preparing.statusName, preparing.reason, preparing.details]).toEqual([
      'PERMISSION_DENIED',
      'ADMIN_ROLE_REQUIRED',
      'client certificate metrics is read-only: to prepare devices (GetVmConfig with prepare_devices) needs the admin role',
    ]);
    expect(await outcome(stranger.call('DeviceService', 'ListDevices', {}))).toBe('PERMISSION_DENIED CALLER_NOT_AUTHORIZED');
    expect(await outcome(admin.call('DeviceService', 'PrepareDevice', { bdf: VF1, owner: 'vm3' }))).toBe('OK');
    expect(await outcome(admin.call('DeviceService', 'ReleaseDevice', { bdf: VF1, owner: 'vm3' }))).toBe('OK');

    // Health answers a caller in no role (liveness probes run as anyone).
    const strangerHealth = new grpc.Client(address, grpc.credentials.createSsl(readFileSync(path.join(certs, 'ca.pem')), readFileSync(path.join(certs, 'stranger.key')), readFileSync(path.join(certs, 'stranger.pem'))));
    const status = await new Promise<number>((resolve) =>
      strangerHealth.makeUnaryRequest('/grpc.health.v1.Health/Check', () => Buffer.alloc(0), (b: Buffer) => b, Buffer.alloc(0), (error) => resolve(error ? error.code : grpc.status.OK)),
    );
    expect(status).toBe(grpc.status.OK);
    for (const client of [admin, reader, stranger]) client.close();
    strangerHealth.close();
  }, 60_000);

  it('refuses certificate roles without mutual TLS', async () => {
    const server = issue('server2', 'localhost', 'DNS:localhost');
    await expect(start('tls2', { socketPath: null, tcp: '127.0.0.1:0', tls: server, insecureTlsWithoutClientCert: true, access: { tls: { readOnly: ['x'] } } })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      details: { reason: 'DAEMON_OPTION_INVALID' },
    });
  });
});
