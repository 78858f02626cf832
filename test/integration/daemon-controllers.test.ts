/**
 * ControllerService end to end: a daemon (the compiled one from dist/, because controllers run in worker threads
 * loaded from dist/serve/worker.js) creates real emulated NVMe controllers; the project's vfio-user test client
 * (test/helpers/hypervisor.ts) connects and does I/O; stats move; controllers survive API clients going away,
 * deleting one leaves the others serving, and a daemon restart brings them back with the same identity.
 * Also the CLI client commands against this daemon.
 */
import type { RequestOf, RpcName } from '../../src/daemon/proto.js';
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runControllers } from '../../src/cli/controllers.js';
import { VfiodClient } from '../../src/daemon/client.js';
import type * as ServerModule from '../../src/daemon/server.js';
import { Status } from '../../src/spec/nvme.js';
import { memoryLogger } from '../../src/util/log.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { expectStatus } from '../helpers/daemon-client.js';
import { Guest } from '../helpers/hypervisor.js';
import { pattern } from '../helpers/nvme-harness.js';
import { temporaryDir } from '../helpers/common.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const distServer = path.join(root, 'dist', 'daemon', 'server.js');
const skipReason = existsSync(distServer) && existsSync(path.join(root, 'dist', 'serve', 'worker.js'))
  ? undefined
  : 'dist/ is not built (npm test runs tsc first; or run npx tsc -p tsconfig.json)';
if (skipReason) console.warn(`daemon controller tests skipped: ${skipReason}`);

const STATS_INTERVAL_MS = 200;

describe.skipIf(skipReason)('ControllerService', () => {
  let server: typeof ServerModule;
  let host: FakeHost;
  let dir: string;
  let daemon: ServerModule.Daemon;
  let client: VfiodClient;
  const guests: Guest[] = [];

  const start = (): Promise<ServerModule.Daemon> =>
    server.startDaemon({
      socketPath: path.join(dir, 'vfiod.sock'),
      stateDir: path.join(dir, 'state'),
      roots: host.roots,
      writer: host.writer,
      prober: host.prober,
      statsIntervalMs: STATS_INTERVAL_MS,
      namespaceDirs: [dir],
      logger: memoryLogger().logger,
    });
  const controllers = <M extends RpcName<'ControllerService'>>(rpc: M, request: RequestOf<'ControllerService', M>) => client.call('ControllerService', rpc, request);
  const socket = (name: string): string => path.join(dir, `${name}.sock`);
  const create = (id: string, spec: Record<string, unknown> = {}) =>
    controllers('CreateController', { id, spec: { socketPath: socket(id), namespaces: ['memory:16M'], ...spec } });

  async function attachGuest(socketPath: string): Promise<Guest> {
    const guest = await Guest.attach(socketPath, { flavour: 'qemu' });
    guests.push(guest);
    await guest.driver.enable();
    await guest.driver.createIoQueuePair(1, 64, 1);
    return guest;
  }

  beforeAll(async () => {
    server = (await import(pathToFileURL(distServer).href)) as typeof ServerModule;
    host = standardHost();
    dir = temporaryDir('vfiod-ctrl-');
    daemon = await start();
    client = new VfiodClient({ address: daemon.socketPath! });
  });
  afterAll(async () => {
    for (const guest of guests) guest.close();
    client?.close();
    await daemon?.close();
    host?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('creates a controller that a vfio-user client does I/O through; stats, rates and the latency histogram move', async () => {
    const created = (await create('c1', { identity: { serialNumber: 'VFIOD-C1', modelNumber: 'vfiod test' }, doorbellMode: 'DOORBELL_MODE_INTERRUPT' }))['controller'];
    expect(created).toMatchObject({
      id: 'c1',
      state: 'CONTROLLER_STATE_SERVING',
      identity: { serialNumber: 'VFIOD-C1', modelNumber: 'vfiod test' },
      spec: { socketPath: socket('c1'), namespaces: ['memory:16M'], doorbellMode: 'DOORBELL_MODE_INTERRUPT', socketMode: 0o600, msixVectors: 64, mdtsPages: 8 },
    });
    expect(created!.namespaces).toEqual([
      {
        nsid: 1,
        uri: 'memory:16M',
        backend: expect.stringContaining('memory'),
        blockSize: 512,
        blocks: 32768,
        identity: { nsid: 1, nguid: expect.stringMatching(/^[0-9a-f]{32}$/), eui64: expect.stringMatching(/^[0-9a-f]{16}$/), uuid: expect.any(String), blockSize: 512 },
      },
    ]);
    expect(created!.stats).toMatchObject({ clientConnected: false, readCommands: 0, bytesWritten: 0 });
    expect(statSync(socket('c1')).mode & 0o777).toBe(0o600);

    const guest = await attachGuest(socket('c1'));
    const data = pattern(4096, 3);
    expect((await guest.driver.write(1, 100, data)).status).toBe(Status.SUCCESS);
    const read = await guest.driver.read(1, 100, 8);
    expect(read.completion.status).toBe(Status.SUCCESS);
    expect(Buffer.from(read.data).equals(Buffer.from(data))).toBe(true);

    // Reads until two samples of the daemon's sampler saw them (on a loaded machine the sampler may lag behind).
    let reads = 1;
    let stats: Record<string, any>;
    const deadline = Date.now() + 15_000;
    do {
      const until = Date.now() + 3 * STATS_INTERVAL_MS;
      while (Date.now() < until) {
        await guest.driver.read(1, reads % 1000, 1);
        reads++;
      }
      stats = (await controllers('GetController', { id: 'c1' }))['controller']!.stats!;
    } while (stats['readIops'] === 0 && Date.now() < deadline);
    expect(stats.clientConnected).toBe(true);
    expect(stats.nvmeState).toBe('ready');
    expect(stats.ioQueues).toBe(1);
    expect(stats.writeCommands).toBe(1);
    expect(stats.bytesWritten).toBe(4096);
    expect(stats.readCommands).toBe(reads);
    expect(stats.bytesRead).toBe(4096 + (reads - 1) * 512);
    expect(stats.readIops).toBeGreaterThan(0);
    expect(stats.sampleIntervalMs).toBe(STATS_INTERVAL_MS);
    expect(stats.latency.count).toBe(reads + 1);
    expect(stats.latency.buckets).toHaveLength(32);
    expect(stats.latency.buckets.reduce((a: number, b: number) => a + b, 0)).toBe(reads + 1);
    expect(stats.latency.p99Us).toBeGreaterThanOrEqual(stats.latency.p50Us);
    expect(stats.latency.maxUs).toBeGreaterThan(0);
  });

  it('keeps serving when the API client goes away; deleting one controller leaves the others serving', async () => {
    await create('c2', { namespaces: [`file:${path.join(dir, 'c2.img')}?size=4M`, 'memory:1M'], doorbellMode: 'DOORBELL_MODE_POLLED' });
    client.close();
    client = new VfiodClient({ address: daemon.socketPath! });
    const listed = (await controllers('ListControllers', {}))['controllers'];
    expect(listed.map((c: { id: string; state: string }) => [c.id, c.state])).toEqual([['c1', 'CONTROLLER_STATE_SERVING'], ['c2', 'CONTROLLER_STATE_SERVING']]);
    expect(listed[1]!.namespaces.map((n: { nsid: number }) => n.nsid)).toEqual([1, 2]);

    const guest = guests[0]!;
    await controllers('DeleteController', { id: 'c2' });
    expect(existsSync(socket('c2'))).toBe(false);
    // c1's guest is unaffected.
    expect((await guest.driver.write(1, 7, pattern(512, 9))).status).toBe(Status.SUCCESS);
    expect((await controllers('ListControllers', {}))['controllers'].map((c: { id: string }) => c.id)).toEqual(['c1']);
    await expectStatus(controllers('GetController', { id: 'c2' }), 'NOT_FOUND', 'c2');
  });

  it('DaemonService: GetDaemon says what runs; RestartDaemon without --crash-recovery is FAILED_PRECONDITION', async () => {
    const got = await client.call('DaemonService', 'GetDaemon', {});
    expect(got['daemon']).toMatchObject({ pid: process.pid, crashRecovery: false, holderSocket: '' });
    await expect(client.call('DaemonService', 'RestartDaemon', {})).rejects.toMatchObject({ statusName: 'FAILED_PRECONDITION', details: expect.stringMatching(/crash-recovery/) });
  });

  it('validates CreateController and names the controller in every error', async () => {
    await expectStatus(create('c1'), 'ALREADY_EXISTS', 'controller c1 already exists');
    await expectStatus(controllers('CreateController', { id: 'c3', spec: { socketPath: socket('c1'), namespaces: ['memory:1M'] } }), 'ALREADY_EXISTS', 'c3', 'controller c1');
    await expectStatus(create('c3', { namespaces: ['tape:/dev/st0'] }), 'INVALID_ARGUMENT', 'controller c3', 'namespace 1', 'tape:');
    await expectStatus(create('c3', { namespaces: ['memory:lots'] }), 'INVALID_ARGUMENT', 'controller c3', 'memory:lots');
    await expectStatus(create('c3', { namespaces: [] }), 'INVALID_ARGUMENT', 'controller c3', 'namespace');
    await expectStatus(controllers('CreateController', { id: 'c3', spec: { socketPath: 'relative.sock', namespaces: ['memory:1M'] } }), 'INVALID_ARGUMENT', 'controller c3', 'absolute');
    await expectStatus(controllers('CreateController', { id: 'c3' }), 'INVALID_ARGUMENT', 'controller c3', 'socket_path is required');
    await expectStatus(create('c3', { msixVectors: 5000 }), 'INVALID_ARGUMENT', 'controller c3', 'msix_vectors', '5000');
    await expectStatus(create('c3', { maxQueueEntries: 1 }), 'INVALID_ARGUMENT', 'max_queue_entries');
    await expectStatus(create('c3', { mdtsPages: 16 }), 'INVALID_ARGUMENT', 'mdts_pages');
    await expectStatus(create('c3', { socketMode: 0o4777 }), 'INVALID_ARGUMENT', 'socket_mode');
    await expectStatus(create('c3', { identity: { serialNumber: 'x'.repeat(21) } }), 'INVALID_ARGUMENT', 'controller c3', 'serial_number');
    await expectStatus(create('c3', { identity: { subsystemNqn: 'not-an-nqn' } }), 'INVALID_ARGUMENT', 'subsystem_nqn');
    await expectStatus(create('c3', { doorbellMode: 7 }), 'INVALID_ARGUMENT', 'doorbell_mode');
    await expectStatus(create('bad id!'), 'INVALID_ARGUMENT', "'bad id!'");
    await expectStatus(controllers('CreateController', {}), 'INVALID_ARGUMENT', 'id is required');
    // Someone else listens on the socket path.
    const other = net.createServer();
    await new Promise<void>((resolve) => other.listen(socket('taken'), resolve));
    await expectStatus(controllers('CreateController', { id: 'c3', spec: { socketPath: socket('taken'), namespaces: ['memory:1M'] } }), 'ALREADY_EXISTS', 'controller c3', 'another process');
    other.close();
    // A namespace that cannot be opened: the worker fails to start; nothing remains.
    await expectStatus(create('c3', { namespaces: [`file:${path.join(dir, 'no-such-dir', 'sub', 'x.img')}`] }), 'FAILED_PRECONDITION', 'controller c3 failed to start');
    await expectStatus(controllers('GetController', { id: 'c3' }), 'NOT_FOUND', 'c3');
    await expectStatus(controllers('DeleteController', { id: 'nope' }), 'NOT_FOUND', 'no controller nope');
    await expectStatus(controllers('DeleteController', {}), 'INVALID_ARGUMENT', 'id is required');
    await expectStatus(controllers('GetController', {}), 'INVALID_ARGUMENT', 'id is required');
    // Still serving after all that.
    expect((await controllers('GetController', { id: 'c1' }))['controller']!.state).toBe('CONTROLLER_STATE_SERVING');
  });

  it('concurrent creates of one id and concurrent deletes: exactly one wins, the other gets a precise error', async () => {
    const results = await Promise.allSettled([create('race'), create('race')]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const refused = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')!.reason as Error;
    expect(refused.message).toContain('ALREADY_EXISTS: controller race already exists');
    const deletes = await Promise.allSettled([controllers('DeleteController', { id: 'race' }), controllers('DeleteController', { id: 'race' })]);
    expect(deletes.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const second = (deletes.find((r): r is PromiseRejectedResult => r.status === 'rejected')!.reason as Error).message;
    expect(second).toMatch(/FAILED_PRECONDITION: controller race is already being deleted|NOT_FOUND: no controller race/);
    expect(existsSync(socket('race'))).toBe(false);
  });

  it('the CLI client lists, shows, creates and deletes controllers, with --json and exit codes', async () => {
    const run = async (...argv: string[]) => {
      let stdout = '';
      let stderr = '';
      const code = await runControllers(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
      return { code, stdout, stderr };
    };
    const daemonArg = ['--daemon', daemon.socketPath!];
    const created = await run('create', 'cli1', '--socket', socket('cli1'), '--namespace', 'memory:2M', '--serial', 'CLI-1', ...daemonArg);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain('created controller cli1');
    expect(created.stdout).toContain('serial CLI-1');
    const list = await run('list', ...daemonArg);
    expect(list.stdout).toMatch(/^ID\s+STATE\s+SOCKET/);
    expect(list.stdout).toMatch(/cli1\s+serving/);
    const shown = await run('get', 'c1', ...daemonArg);
    expect(shown.stdout).toContain('latency:');
    expect(shown.stdout).toMatch(/commands:\s+\d+ reads, \d+ writes/);
    const json = JSON.parse((await run('get', 'cli1', '--json', ...daemonArg)).stdout);
    expect(json.controller.identity.serialNumber).toBe('CLI-1');
    const missing = await run('get', 'nope', ...daemonArg);
    expect(missing).toMatchObject({ code: 3, stdout: '' });
    expect(missing.stderr).toContain('NOT_FOUND: no controller nope');
    const duplicate = await run('create', 'cli1', '--socket', socket('cli2'), '--namespace', 'memory:2M', ...daemonArg);
    expect(duplicate.code).toBe(4);
    expect(duplicate.stderr).toContain('ALREADY_EXISTS');
    const badUri = await run('create', 'cli2', '--socket', socket('cli2'), '--namespace', 'memory:', ...daemonArg);
    expect(badUri.code).toBe(2);
    expect(badUri.stderr).toContain('INVALID_ARGUMENT NAMESPACE_URI_INVALID: controller cli2');
    expect((await run('create', 'cli2', '--namespace', 'memory:1M', ...daemonArg)).stderr).toContain('--socket');
    expect((await run('delete', 'cli1', ...daemonArg)).code).toBe(0);
    expect((await run('list', '--daemon', path.join(dir, 'no-daemon.sock'))).code).toBe(6);
  });

  it('brings controllers back with the same identity after a daemon restart', async () => {
    const before = (await controllers('GetController', { id: 'c1' }))['controller'];
    for (const guest of guests.splice(0)) guest.close();
    client.close();
    await daemon.close();
    expect(existsSync(socket('c1'))).toBe(false);
    daemon = await start();
    client = new VfiodClient({ address: daemon.socketPath! });
    const after = (await controllers('GetController', { id: 'c1' }))['controller'];
    expect(after!.state).toBe('CONTROLLER_STATE_SERVING');
    expect(after!.identity).toEqual(before!.identity);
    expect(after!.spec).toEqual(before!.spec);
    const guest = await attachGuest(socket('c1'));
    expect((await guest.driver.write(1, 1, pattern(512, 1))).status).toBe(Status.SUCCESS);
  });

  it('a persisted controller that cannot start after a restart is listed as failed; the others serve; it can be deleted', async () => {
    const imageDir = path.join(dir, 'images');
    mkdirSync(imageDir);
    await create('fragile', { namespaces: [`file:${path.join(imageDir, 'f.img')}?size=1M`] });
    for (const guest of guests.splice(0)) guest.close();
    client.close();
    await daemon.close();
    // The namespace's directory becomes a file: the backing file can no longer be created.
    rmSync(imageDir, { recursive: true, force: true });
    writeFileSync(imageDir, 'not a directory');
    daemon = await start();
    client = new VfiodClient({ address: daemon.socketPath! });
    const fragile = (await controllers('GetController', { id: 'fragile' }))['controller'];
    expect(fragile!.state).toBe('CONTROLLER_STATE_FAILED');
    expect(fragile!.error).not.toBe('');
    expect(fragile!.stats).toBeNull();
    expect((await controllers('GetController', { id: 'c1' }))['controller']!.state).toBe('CONTROLLER_STATE_SERVING');
    // A VM given a failed controller would get a dead disk: refused before the VMM is asked.
    await expectStatus(
      client.call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint: { qemuQmpSocket: path.join(dir, 'no-vm.qmp') }, source: { controllerId: 'fragile' } }),
      'FAILED_PRECONDITION',
      'VM vm1',
      'controller fragile is failed',
    );
    await controllers('DeleteController', { id: 'fragile' });
    expect((await controllers('ListControllers', {}))['controllers'].map((c: { id: string }) => c.id)).toEqual(['c1']);
  });
});
