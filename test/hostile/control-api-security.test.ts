/**
 * The control API against a client that wants more than its disks: a namespace that is the daemon's own memory
 * (/proc/self/mem), a device, a FIFO, a file outside the namespace directories reached by a symlink, another
 * controller's disk through a hard link, an identity path over another program's file, one controller attached to two
 * VMs through a symlinked directory, and TCP with TLS that lets in any client. Each is refused with the reason, and
 * nothing is created or changed for it.
 * Uses the compiled daemon from dist/ (controllers run in worker threads loaded from dist/serve/worker.js).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VfiodClient } from '../../src/daemon/client.js';
import type * as ServerModule from '../../src/daemon/server.js';
import type { VfiodError } from '../../src/util/errors.js';
import { memoryLogger } from '../../src/util/log.js';
import { expectStatus } from '../helpers/daemon-client.js';
import { FakeCloudHypervisor } from '../helpers/fake-cloud-hypervisor.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { temporaryDir } from '../helpers/common.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const distServer = path.join(root, 'dist', 'daemon', 'server.js');
const skipReason = existsSync(distServer) && existsSync(path.join(root, 'dist', 'serve', 'worker.js'))
  ? undefined
  : 'dist/ is not built (npm test runs tsc first; or run npx tsc -p tsconfig.json)';
if (skipReason) console.warn(`daemon security tests skipped: ${skipReason}`);

const START_TIMEOUT_MS = 8000;
const CALL_TIMEOUT_MS = 30_000;

describe.skipIf(skipReason)('control API: what a client may reach', () => {
  let server: typeof ServerModule;
  let host: FakeHost;
  let dir: string;
  /** The daemon's only namespace directory. */
  let disks: string;
  /** Somewhere else on the same filesystem. */
  let outside: string;
  let daemon: ServerModule.Daemon;
  let client: VfiodClient;

  const call = (service: 'ControllerService' | 'AttachmentService', rpc: string, request: Record<string, unknown>) =>
    client.callUntyped(service, rpc, request, CALL_TIMEOUT_MS);
  const socket = (name: string): string => path.join(dir, `${name}.sock`);
  const create = (id: string, spec: Record<string, unknown> = {}) =>
    call('ControllerService', 'CreateController', { id, spec: { socketPath: socket(id), namespaces: ['memory:1M'], ...spec } });
  const listed = async (): Promise<string[]> => ((await call('ControllerService', 'ListControllers', {}))['controllers'] as Array<{ id: string }>).map((c) => c.id);

  beforeAll(async () => {
    server = (await import(pathToFileURL(distServer).href)) as typeof ServerModule;
    host = standardHost();
    dir = temporaryDir('vfiod-sec-');
    disks = path.join(dir, 'disks');
    outside = path.join(dir, 'outside');
    mkdirSync(disks);
    mkdirSync(outside);
    await startTestDaemon();
  });
  const startTestDaemon = async (): Promise<void> => {
    daemon = await server.startDaemon({
      socketPath: socket('vfiod'),
      stateDir: path.join(dir, 'state'),
      roots: host.roots,
      writer: host.writer,
      prober: host.prober,
      controllerStartTimeoutMs: START_TIMEOUT_MS,
      namespaceDirs: [disks],
      logger: memoryLogger().logger,
    });
    client = new VfiodClient({ address: daemon.socketPath! });
  };
  afterAll(async () => {
    client?.close();
    await daemon?.close();
    host?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses /proc/self/mem (the daemon memory a guest would read), by name and through a symlink in the namespace directory', async () => {
    await expectStatus(create('mem', { namespaces: ['file:/proc/self/mem?size=2047M'] }), 'INVALID_ARGUMENT', 'controller mem', '/proc/self/mem is not in', disks);
    symlinkSync('/proc/self/mem', path.join(disks, 'mem.img'));
    await expectStatus(create('mem', { namespaces: [`file:${disks}/mem.img?size=2047M`] }), 'INVALID_ARGUMENT', 'controller mem', 'is on proc, a kernel pseudo filesystem');
    expect(await listed()).toEqual([]);
    expect(existsSync(socket('mem'))).toBe(false);
  });

  it('refuses character devices and FIFOs in the namespace directory without opening them', async () => {
    symlinkSync('/dev/zero', path.join(disks, 'zero.img'));
    await expectStatus(create('dev', { namespaces: [`file:${disks}/zero.img`] }), 'INVALID_ARGUMENT', 'controller dev', 'is a character device', 'neither a regular file nor a block device');
    execFileSync('mkfifo', [path.join(disks, 'fifo.img')]);
    await expectStatus(create('fifo', { namespaces: [`file:${disks}/fifo.img?size=1M`] }), 'INVALID_ARGUMENT', 'controller fifo', 'is a FIFO');
    expect(await listed()).toEqual([]);
  });

  it('refuses a file outside the namespace directories, by name or through a symlink (file or directory)', async () => {
    const secret = path.join(outside, 'secret.img');
    writeFileSync(secret, Buffer.alloc(4096, 0x5a));
    await expectStatus(create('out', { namespaces: [`file:${secret}`] }), 'INVALID_ARGUMENT', 'controller out', `${secret} is not in the daemon's namespace directories (${disks})`, '--namespace-dir');
    symlinkSync(secret, path.join(disks, 'escape.img'));
    await expectStatus(create('out', { namespaces: [`file:${disks}/escape.img`] }), 'INVALID_ARGUMENT', 'controller out', `resolves to ${secret}`);
    // A symlinked directory: the file does not exist yet, and would be created outside.
    symlinkSync(outside, path.join(disks, 'sub'));
    await expectStatus(create('out', { namespaces: [`file:${disks}/sub/new.img?size=1M`] }), 'INVALID_ARGUMENT', 'controller out', `resolves to ${outside}/new.img`);
    expect(existsSync(path.join(outside, 'new.img'))).toBe(false);
    expect(readFileSync(secret).every((byte) => byte === 0x5a)).toBe(true);
    expect(await listed()).toEqual([]);
  });

  it('refuses another controller\'s disk through a hard link, naming that controller; and one disk twice in one controller', async () => {
    await create('owner', { namespaces: [`file:${disks}/shared.img?size=1M`] });
    linkSync(path.join(disks, 'shared.img'), path.join(disks, 'alias.img'));
    await expectStatus(create('thief', { namespaces: [`file:${disks}/alias.img`] }), 'ALREADY_EXISTS', 'controller thief', 'controller owner', 'the same inode');
    await expectStatus(
      create('twice', { namespaces: [`file:${disks}/other.img?size=1M`, 'memory:1M', `file:${disks}/other.img`] }),
      'INVALID_ARGUMENT',
      'controller twice',
      'same file',
    );
    writeFileSync(path.join(disks, 'two.img'), Buffer.alloc(4096));
    linkSync(path.join(disks, 'two.img'), path.join(disks, 'two-again.img'));
    await expectStatus(create('twice', { namespaces: [`file:${disks}/two.img`, `file:${disks}/two-again.img`] }), 'INVALID_ARGUMENT', 'controller twice', 'same file');
    expect(await listed()).toEqual(['owner']);
    await call('ControllerService', 'DeleteController', { id: 'owner' });
    await create('thief', { namespaces: [`file:${disks}/alias.img`] });
    await call('ControllerService', 'DeleteController', { id: 'thief' });
  });

  it('refuses an identity path over a file that is not a vfiod identity file, and leaves it unchanged; and one outside its directories', async () => {
    const foreign = path.join(disks, 'package.json');
    const text = JSON.stringify({ name: 'app', scripts: { start: 'node .' } });
    writeFileSync(foreign, text);
    await expectStatus(create('idf', { identityPath: foreign }), 'FAILED_PRECONDITION', 'controller idf', `identity file '${foreign}' exists and is not a vfiod identity file`, 'refusing to replace it');
    expect(readFileSync(foreign, 'utf8')).toBe(text);
    expect(existsSync(socket('idf'))).toBe(false);
    await expectStatus(create('ido', { identityPath: path.join(outside, 'id.json') }), 'INVALID_ARGUMENT', 'controller ido', 'identity_path', 'is not in');
    expect(existsSync(path.join(outside, 'id.json'))).toBe(false);
    expect(await listed()).toEqual([]);
    // Its own identity file it takes again.
    const own = path.join(disks, 'own.identity.json');
    await create('ido', { identityPath: own });
    await call('ControllerService', 'DeleteController', { id: 'ido' });
    await create('ido', { identityPath: own });
    await call('ControllerService', 'DeleteController', { id: 'ido' });
    expect(JSON.parse(readFileSync(own, 'utf8'))).toMatchObject({ format: 'vfiod-identity/1' });
  });

  it('refuses a controller attached to one VM for a second VM through a symlinked directory, and its delete', async () => {
    const vm1 = await FakeCloudHypervisor.start({ socketPath: socket('vm1-api'), ejectDelayMs: 10 });
    const vm2 = await FakeCloudHypervisor.start({ socketPath: socket('vm2-api'), ejectDelayMs: 10 });
    const run = path.join(dir, 'run');
    mkdirSync(run);
    symlinkSync(run, path.join(dir, 'alias'));
    const real = path.join(run, 'disk.sock');
    const aliased = path.join(dir, 'alias', 'disk.sock');
    try {
      await call('ControllerService', 'CreateController', { id: 'disk', spec: { socketPath: real, namespaces: ['memory:1M'] } });
      await expectStatus(
        call('ControllerService', 'CreateController', { id: 'disk2', spec: { socketPath: aliased, namespaces: ['memory:1M'] } }),
        'ALREADY_EXISTS',
        'controller disk2',
        'controller disk',
      );
      // Attached to VM 1 by a name through the symlink ...
      await call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint: { cloudHypervisorApiSocket: socket('vm1-api') }, source: { vfioUserSocket: aliased }, deviceId: 'd1' , wait: true });
      // ... it is the same controller for VM 2 by its real name, or by its id.
      for (const source of [{ vfioUserSocket: real }, { controllerId: 'disk' }]) {
        await expectStatus(
          call('AttachmentService', 'AttachDevice', { vmId: 'vm2', endpoint: { cloudHypervisorApiSocket: socket('vm2-api') }, source, deviceId: 'd2' , wait: true }),
          'FAILED_PRECONDITION',
          'VM vm2',
          'attached to VM vm1',
        );
      }
      expect(vm2.violations).toEqual([]);
      await expectStatus(call('ControllerService', 'DeleteController', { id: 'disk' }), 'FAILED_PRECONDITION', 'controller disk', 'VM vm1', 'd1', 'detach it first');
      await call('AttachmentService', 'DetachDevice', { vmId: 'vm1', deviceId: 'd1', timeoutMs: 5000 , wait: true });
      await call('ControllerService', 'DeleteController', { id: 'disk' });
    } finally {
      await vm1.stop();
      await vm2.stop();
    }
  });

  it('a persisted controller whose disk became /proc/self/mem while the daemon was down is FAILED with the reason on restart', async () => {
    const disk = path.join(disks, 'victim.img');
    await create('victim', { namespaces: [`file:${disk}?size=1M`] });
    await create('bystander');
    client.close();
    await daemon.close();
    rmSync(disk);
    symlinkSync('/proc/self/mem', disk);
    await startTestDaemon();
    const victim = (await call('ControllerService', 'GetController', { id: 'victim' }))['controller'];
    expect(victim['state']).toBe('CONTROLLER_STATE_FAILED');
    expect(victim['error']).toContain('is on proc, a kernel pseudo filesystem');
    expect((await call('ControllerService', 'GetController', { id: 'bystander' }))['controller']['state']).toBe('CONTROLLER_STATE_SERVING');
    await call('ControllerService', 'DeleteController', { id: 'victim' });
    await call('ControllerService', 'DeleteController', { id: 'bystander' });
  });
});

describe.skipIf(skipReason)('control API: TCP', () => {
  it('refuses to start TLS without a client CA, saying how to fix it, unless explicitly allowed', async () => {
    const server = (await import(pathToFileURL(distServer).href)) as typeof ServerModule;
    const dir = temporaryDir('vfiod-sec-tls-');
    try {
      const error = await server
        .startDaemon({ socketPath: null, tcp: '127.0.0.1:0', tls: { cert: '/nonexistent.pem', key: '/nonexistent.key' }, stateDir: path.join(dir, 'state'), logger: memoryLogger().logger })
        .then(() => undefined, (e: unknown) => e as VfiodError);
      expect(error?.code).toBe('INVALID_ARGUMENT');
      expect(error?.details).toMatchObject({ reason: 'TLS_CLIENT_CA_REQUIRED' });
      expect(error?.message).toContain('refusing TLS on 127.0.0.1:0 without client certificates');
      expect(error?.message).toContain('--tls-ca');
      expect(error?.message).toContain('--insecure-tls-no-client-cert');
      // Nothing was started: not even the state directory.
      expect(existsSync(path.join(dir, 'state'))).toBe(false);
      // Allowed explicitly, it gets as far as reading the certificate.
      const allowed = await server
        .startDaemon({ socketPath: null, tcp: '127.0.0.1:0', tls: { cert: '/nonexistent.pem', key: '/nonexistent.key' }, insecureTlsWithoutClientCert: true, stateDir: path.join(dir, 'state'), logger: memoryLogger().logger })
        .then(() => undefined, (e: unknown) => e as VfiodError);
      expect(allowed?.message).toContain('cannot read the TLS certificate /nonexistent.pem');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
