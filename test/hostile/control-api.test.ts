/**
 * The control API against hostile or careless requests: oversized and control-character fields, paths that are
 * relative or not normalised, namespaces that would take another controller's disk or more RAM than the host has, a
 * namespace backend that never answers, deleting a controller a VM still uses. Every one must get a precise status
 * at once, change nothing on disk, and leave the daemon (and the client's channel) working.
 * Uses the compiled daemon from dist/ (controllers run in worker threads loaded from dist/serve/worker.js).
 */
import { existsSync, mkdirSync, rmSync, writeSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VfiodClient } from '../../src/daemon/client.js';
import { MAX_STATUS_DETAILS } from '../../src/daemon/requests.js';
import type * as ServerModule from '../../src/daemon/server.js';
import { native } from '../../src/native/index.js';
import { memoryLogger } from '../../src/util/log.js';
import { IrqSetFlag } from '../../src/spec/vfio.js';
import { encodeIrqSet } from '../../src/vfio-user/protocol.js';
import { expectStatus } from '../helpers/daemon-client.js';
import { FakeCloudHypervisor } from '../helpers/fake-cloud-hypervisor.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { VfioUserClient } from '../helpers/vfio-user-client.js';
import { temporaryDir } from '../helpers/common.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const distServer = path.join(root, 'dist', 'daemon', 'server.js');
const skipReason = existsSync(distServer) && existsSync(path.join(root, 'dist', 'serve', 'worker.js'))
  ? undefined
  : 'dist/ is not built (npm test runs tsc first; or run npx tsc -p tsconfig.json)';
if (skipReason) console.warn(`daemon hostile-input tests skipped: ${skipReason}`);

const MEMORY_LIMIT = 64 * 2 ** 20;
// Long enough for a worker thread to start on a busy CI machine; the silent-backend test waits this long once.
const START_TIMEOUT_MS = 8000;
/** Short deadline: a refusal must come at once; a hang shows up as DEADLINE_EXCEEDED instead of the expected code. */
const CALL_TIMEOUT_MS = 30_000;

describe.skipIf(skipReason)('control API: hostile requests', () => {
  let host: FakeHost;
  let dir: string;
  let daemon: ServerModule.Daemon;
  let client: VfiodClient;

  const call = (service: 'DeviceService' | 'ControllerService' | 'AttachmentService', rpc: string, request: Record<string, unknown>) =>
    client.callUntyped(service, rpc, request, CALL_TIMEOUT_MS);
  const socket = (name: string): string => path.join(dir, `${name}.sock`);
  const create = (id: string, spec: Record<string, unknown> = {}) =>
    call('ControllerService', 'CreateController', { id, spec: { socketPath: socket(id), namespaces: ['memory:1M'], ...spec } });

  let server: typeof ServerModule;
  const startTestDaemon = (): Promise<ServerModule.Daemon> =>
    server.startDaemon({
      socketPath: socket('vfiod'),
      stateDir: path.join(dir, 'state'),
      roots: host.roots,
      writer: host.writer,
      prober: host.prober,
      controllerMemoryLimitBytes: MEMORY_LIMIT,
      controllerStartTimeoutMs: START_TIMEOUT_MS,
      namespaceDirs: [dir],
      logger: memoryLogger().logger,
    });

  beforeAll(async () => {
    server = (await import(pathToFileURL(distServer).href)) as typeof ServerModule;
    host = standardHost();
    dir = temporaryDir('vfiod-hostile-');
    daemon = await startTestDaemon();
    client = new VfiodClient({ address: daemon.socketPath! });
  });
  afterAll(async () => {
    client?.close();
    await daemon?.close();
    host?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('refuses megabyte-long fields with a bounded message; the same channel keeps working', async () => {
    const huge = 'a'.repeat(1_000_000);
    const refused = await expectStatus(create(huge), 'INVALID_ARGUMENT', 'id');
    expect(refused.details.length).toBeLessThanOrEqual(MAX_STATUS_DETAILS + 100);
    await expectStatus(call('DeviceService', 'GetDevice', { bdf: huge }), 'INVALID_ARGUMENT', 'not a PCI address');
    await expectStatus(call('DeviceService', 'PrepareDevice', { bdf: '0000:01:00.1', owner: huge }), 'INVALID_ARGUMENT', 'owner', 'limit is 256');
    const endpoint = { qemuQmpSocket: socket('vm1-qmp') };
    await expectStatus(call('AttachmentService', 'AttachDevice', { vmId: huge, endpoint, source: { pciBdf: '0000:01:00.1' } }), 'INVALID_ARGUMENT', 'vm_id', 'limit is 256');
    await expectStatus(call('AttachmentService', 'DetachDevice', { vmId: 'vm1', deviceId: huge }), 'INVALID_ARGUMENT', 'device_id');
    // Nothing was claimed for the oversized owner, and the channel that carried those calls still answers.
    expect((await call('DeviceService', 'GetDevice', { bdf: '0000:01:00.1' }))['device']['claim'] ?? null).toBeNull();
    expect((await call('ControllerService', 'ListControllers', {}))['controllers']).toEqual([]);
  });

  it('refuses control characters: a NUL in a path is INVALID_ARGUMENT, not an internal error', async () => {
    await expectStatus(create('nul', { socketPath: `${dir}/a\0b.sock` }), 'INVALID_ARGUMENT', 'controller nul', 'control characters');
    await expectStatus(call('DeviceService', 'PrepareDevice', { bdf: '0000:01:00.1', owner: 'vm1\n{"level":"error"}' }), 'INVALID_ARGUMENT', 'owner', 'control characters');
    await expectStatus(call('AttachmentService', 'ListAttachments', { vmId: 'vm\u0007' }), 'INVALID_ARGUMENT', 'vm_id');
  });

  it('refuses waits past an hour (setTimeout would turn them into 1 ms), PCI segments past 16 bits and QEMU option injection', async () => {
    const endpoint = { cloudHypervisorApiSocket: socket('vm1-api') };
    await expectStatus(call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint, source: { pciBdf: '0000:01:00.1' }, timeoutMs: 4294967295 }), 'INVALID_ARGUMENT', 'VM vm1', 'timeout_ms');
    await expectStatus(call('AttachmentService', 'DetachDevice', { vmId: 'vm1', deviceId: 'disk1', timeoutMs: 3_600_001 }), 'INVALID_ARGUMENT', 'timeout_ms');
    await expectStatus(call('DeviceService', 'ReleaseDevice', { bdf: '0000:01:00.1', owner: 'vm1', waitMs: 4294967295 }), 'INVALID_ARGUMENT', 'wait_ms');
    await expectStatus(call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint, source: { pciBdf: '0000:01:00.1' }, pciSegment: 70000 }), 'INVALID_ARGUMENT', 'pci_segment', '70000');
    const qemuConfig = (memorySize: string) =>
      call('AttachmentService', 'GetVmConfig', { hypervisor: 'HYPERVISOR_KIND_QEMU', devices: [{ source: { vfioUserSocket: '/run/vfiod/a.sock' } }], memorySize });
    await expectStatus(qemuConfig('4G,share=off'), 'INVALID_ARGUMENT', 'memory_size', '4G,share=off');
    expect((await qemuConfig('4G'))['qemu']['args']).toContain('memory-backend-memfd,id=vfiod-mem,size=4G,share=on');
    // Nothing was prepared by any of those.
    expect((await call('DeviceService', 'GetDevice', { bdf: '0000:01:00.1' }))['device']['claim'] ?? null).toBeNull();
  });

  it('refuses relative and non-normalised paths, and leaves nothing on disk for a refused request', async () => {
    const cwdFile = path.join(process.cwd(), 'hostile-relative.img');
    await expectStatus(create('rel', { namespaces: ['file:hostile-relative.img?size=1M'] }), 'INVALID_ARGUMENT', 'controller rel', 'absolute path');
    expect(existsSync(cwdFile)).toBe(false);
    await expectStatus(create('dots', { socketPath: `${dir}/missing/../dots.sock` }), 'INVALID_ARGUMENT', 'controller dots', 'normalised', `${dir}/dots.sock`);
    await expectStatus(create('idp', { identityPath: `${dir}/id/x/../y.json` }), 'INVALID_ARGUMENT', 'identity_path');
    await expectStatus(create('idsh', { identityPath: `${dir}/profile.d/vfiod.sh` }), 'INVALID_ARGUMENT', 'identity_path', 'must end in .json');
    // A request refused for its last field creates no identity directory for its first.
    await expectStatus(create('late', { identityPath: `${dir}/late-identity/id.json`, mdtsPages: 99 }), 'INVALID_ARGUMENT', 'mdts_pages');
    expect(existsSync(`${dir}/late-identity`)).toBe(false);
    expect(existsSync(path.join(dir, 'state', 'controllers', 'late.identity.json'))).toBe(false);
  });

  it('refuses a disk shared by two namespaces or two controllers, and memory namespaces beyond the RAM budget', async () => {
    const image = `file:${dir}/shared.img?size=1M`;
    await expectStatus(create('twice', { namespaces: [image, image] }), 'INVALID_ARGUMENT', 'controller twice', 'same file');
    await create('owner', { namespaces: [image] });
    // The same file by another spelling (file:// form, no size) is still the same disk.
    await expectStatus(create('thief', { namespaces: [`file://${dir}/shared.img`] }), 'ALREADY_EXISTS', 'controller thief', 'controller owner');

    const started = Date.now();
    await expectStatus(create('huge', { namespaces: ['memory:100T'] }), 'FAILED_PRECONDITION', 'controller huge', '100TiB', '64MiB of RAM');
    expect(Date.now() - started).toBeLessThan(CALL_TIMEOUT_MS);
    await create('m48', { namespaces: ['memory:48M'] });
    await expectStatus(create('m32', { namespaces: ['memory:32M'] }), 'FAILED_PRECONDITION', 'controller m32', '32MiB', 'plus 48MiB of other controllers');
    await call('ControllerService', 'DeleteController', { id: 'm48' });
    await create('m32', { namespaces: ['memory:32M'] });
    await call('ControllerService', 'DeleteController', { id: 'm32' });
    await call('ControllerService', 'DeleteController', { id: 'owner' });
    await create('thief', { namespaces: [`file://${dir}/shared.img`] });
    await call('ControllerService', 'DeleteController', { id: 'thief' });
  });

  it('a namespace backend that never answers fails the create after the start timeout; the id is free again', async () => {
    // Accepts NVMe/TCP connections and never says a word.
    const silent = net.createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const started = Date.now();
      await expectStatus(
        create('stuck', { namespaces: [`nvme-tcp://127.0.0.1:${port}/nqn.2014-08.org.example:silent?nsid=1`] }),
        'FAILED_PRECONDITION',
        'controller stuck',
        `not listening after ${START_TIMEOUT_MS} ms`,
      );
      expect(Date.now() - started).toBeLessThan(CALL_TIMEOUT_MS);
      await expectStatus(call('ControllerService', 'GetController', { id: 'stuck' }), 'NOT_FOUND', 'stuck');
      expect(existsSync(socket('stuck'))).toBe(false);
    } finally {
      silent.close();
    }
  });

  it('a controller whose definition cannot be saved is stopped again: none runs that a restart would not bring back', async () => {
    const tmp = path.join(dir, 'state', 'controllers.json.tmp');
    mkdirSync(tmp);
    try {
      await expectStatus(create('unsaved'), 'INTERNAL', 'controller unsaved', 'cannot save', 'stopped again');
      await expectStatus(call('ControllerService', 'GetController', { id: 'unsaved' }), 'NOT_FOUND', 'unsaved');
      expect(existsSync(socket('unsaved'))).toBe(false);
    } finally {
      rmSync(tmp, { recursive: true });
    }
    await create('unsaved');
    await call('ControllerService', 'DeleteController', { id: 'unsaved' });
  });

  it('a controller whose worker thread dies is reported FAILED with the reason; the others serve; it can be deleted', async () => {
    await create('crashy');
    await create('steady');
    // Stand-in for a crash inside the controller: end its worker thread from outside (the registry's own handle).
    const entries = (daemon.controllers as unknown as { entries: Map<string, { worker: { abort(): Promise<void> } }> }).entries;
    await entries.get('crashy')!.worker.abort();
    await expect.poll(async () => (await call('ControllerService', 'GetController', { id: 'crashy' }))['controller']['state']).toBe('CONTROLLER_STATE_FAILED');
    const crashed = (await call('ControllerService', 'GetController', { id: 'crashy' }))['controller'];
    expect(crashed['error']).toContain('exited unexpectedly');
    expect(crashed['stats'] ?? null).toBeNull();
    expect((await call('ControllerService', 'GetController', { id: 'steady' }))['controller']['state']).toBe('CONTROLLER_STATE_SERVING');
    await call('ControllerService', 'DeleteController', { id: 'crashy' });
    await expectStatus(call('ControllerService', 'GetController', { id: 'crashy' }), 'NOT_FOUND', 'crashy');
    await call('ControllerService', 'DeleteController', { id: 'steady' });
  });

  it('deletes within seconds a controller whose client made its interrupt eventfd blocking again and saturated it', async () => {
    await create('wedge');
    await create('other');
    const client = VfioUserClient.connect(socket('wedge'), { flavour: 'qemu', replyTimeoutMs: 5000 });
    const fd = native.eventfdCreate(0, true);
    try {
      await client.version();
      const msix = 2;
      await client.setIrqs({ index: msix, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1, fds: [fd] });
      // The controller made the fd non-blocking; the client shares that flag and clears it, then fills the counter
      // (2^64 - 2): the next write(2) of 1 would block until someone reads it, which nobody does.
      native.setNonBlocking(fd, false);
      const full = Buffer.alloc(8);
      full.writeBigUInt64LE(0xffff_ffff_ffff_fffen);
      writeSync(fd, full);
      await client.sendRaw(encodeIrqSet(9, { index: msix, flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1 }));
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = Date.now();
      await call('ControllerService', 'DeleteController', { id: 'wedge' });
      expect(Date.now() - started).toBeLessThan(8000);
      await expectStatus(call('ControllerService', 'GetController', { id: 'wedge' }), 'NOT_FOUND', 'wedge');
      expect((await call('ControllerService', 'GetController', { id: 'other' }))['controller']['state']).toBe('CONTROLLER_STATE_SERVING');
      await call('ControllerService', 'DeleteController', { id: 'other' });
    } finally {
      client.close();
      native.close(fd);
    }
  });

  it('on restart, drops the attachment of a controller whose VM went away while the daemon was down', async () => {
    const vmSocket = socket('vm2-api');
    const fake = await FakeCloudHypervisor.start({ socketPath: vmSocket, ejectDelayMs: 10 });
    await create('disk2');
    await call('AttachmentService', 'AttachDevice', { vmId: 'vm2', endpoint: { cloudHypervisorApiSocket: vmSocket }, source: { controllerId: 'disk2' }, deviceId: 'd2' , wait: true });
    client.close();
    await daemon.close();
    await fake.stop();
    daemon = await startTestDaemon();
    client = new VfiodClient({ address: daemon.socketPath! });
    expect((await call('AttachmentService', 'ListAttachments', { vmId: 'vm2' }))['attachments']).toEqual([]);
    expect((await call('ControllerService', 'GetController', { id: 'disk2' }))['controller']['state']).toBe('CONTROLLER_STATE_SERVING');
    await call('ControllerService', 'DeleteController', { id: 'disk2' });
  });

  it('refuses deleting a controller a VM uses until it is detached', async () => {
    const vmSocket = socket('vm1-api');
    const fake = await FakeCloudHypervisor.start({ socketPath: vmSocket, ejectDelayMs: 10 });
    try {
      const endpoint = { cloudHypervisorApiSocket: vmSocket };
      await create('disk');
      await call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint, source: { controllerId: 'disk' }, deviceId: 'disk0' , wait: true });
      await expectStatus(call('ControllerService', 'DeleteController', { id: 'disk' }), 'FAILED_PRECONDITION', 'controller disk', 'VM vm1', 'disk0', 'detach it first');
      expect((await call('ControllerService', 'GetController', { id: 'disk' }))['controller']['state']).toBe('CONTROLLER_STATE_SERVING');
      await call('AttachmentService', 'DetachDevice', { vmId: 'vm1', deviceId: 'disk0', timeoutMs: 5000 , wait: true });
      await call('ControllerService', 'DeleteController', { id: 'disk' });
      expect(fake.violations).toEqual([]);

      // FeOS's DeleteVm: the VM (its VMM) is gone first. The detach cannot reach the VMM, but no hypervisor is
      // connected to the controller (the registry tells the orchestrator): the detach finishes, then the delete.
      await create('disk');
      await call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint, source: { controllerId: 'disk' }, deviceId: 'disk0' , wait: true });
      await fake.stop();
      await expectStatus(call('ControllerService', 'DeleteController', { id: 'disk' }), 'FAILED_PRECONDITION', 'VM vm1', '(attached)');
      expect(await call('AttachmentService', 'DetachDevice', { vmId: 'vm1', deviceId: 'disk0', timeoutMs: 1000 , wait: true })).toMatchObject({ deviceId: 'disk0', released: [] });
      expect((await call('AttachmentService', 'ListAttachments', {}))['attachments']).toEqual([]);
      await call('ControllerService', 'DeleteController', { id: 'disk' });
    } finally {
      await fake.stop();
    }
  });
});

describe.skipIf(skipReason)('control API: the controller limit', () => {
  it('refuses a controller beyond --max-controllers with RESOURCE_EXHAUSTED, and takes one again after a delete', async () => {
    const server = (await import(pathToFileURL(distServer).href)) as typeof ServerModule;
    const host = standardHost();
    const dir = temporaryDir('vfiod-limit-');
    const socket = (name: string): string => path.join(dir, `${name}.sock`);
    const daemon = await server.startDaemon({
      socketPath: socket('vfiod'),
      stateDir: path.join(dir, 'state'),
      roots: host.roots,
      writer: host.writer,
      prober: host.prober,
      maxControllers: 2,
      logger: memoryLogger().logger,
    });
    const client = new VfiodClient({ address: daemon.socketPath! });
    const create = (id: string) =>
      client.call('ControllerService', 'CreateController', { id, spec: { socketPath: socket(id), namespaces: ['memory:1M'] } }, CALL_TIMEOUT_MS);
    try {
      expect(daemon.controllers.maxControllers).toBe(2);
      await create('one');
      await create('two');
      await expectStatus(create('three'), 'RESOURCE_EXHAUSTED', 'controller three', 'already has 2 controllers', '--max-controllers 2');
      // Nothing of the refused controller exists: no socket, no identity file, not listed.
      expect(existsSync(socket('three'))).toBe(false);
      expect(existsSync(path.join(dir, 'state', 'controllers', 'three.identity.json'))).toBe(false);
      const listed = (await client.call('ControllerService', 'ListControllers', {}, CALL_TIMEOUT_MS)) as { controllers: Array<{ id: string }> };
      expect(listed.controllers.map((c) => c.id).sort()).toEqual(['one', 'two']);
      await client.call('ControllerService', 'DeleteController', { id: 'one' }, CALL_TIMEOUT_MS);
      await create('three');
    } finally {
      client.close();
      await daemon.close();
      host.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
