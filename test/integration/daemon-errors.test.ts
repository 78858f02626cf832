/**
 * What a program gets when the control API refuses: the google.rpc.Status in the grpc-status-details-bin trailer of
 * real refusals, decoded (reason, domain, metadata, PreconditionFailure violations, BadRequest, QuotaFailure,
 * ResourceInfo), with a raw grpc-js client as well as through ApiError; and the CLI printing the reason and metadata.
 * Controllers run in worker threads loaded from dist/ (built by npm test); without it those cases skip.
 */
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, VfiodClient } from '../../src/daemon/client.js';
import type * as ServerModule from '../../src/daemon/server.js';
import { decodeStatus, STATUS_DETAILS_KEY, type StatusDetails } from '../../src/daemon/status-details.js';
import { memoryLogger } from '../../src/util/log.js';
import { expectStatus } from '../helpers/daemon-client.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { temporaryDir } from '../helpers/common.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const distServer = path.join(root, 'dist', 'daemon', 'server.js');
const skipReason = existsSync(distServer) && existsSync(path.join(root, 'dist', 'serve', 'worker.js'))
  ? undefined
  : 'dist/ is not built (npm test runs tsc first; or run npx tsc -p tsconfig.json)';
if (skipReason) console.warn(`daemon error details tests skipped: ${skipReason}`);

const VF1 = '0000:01:00.1';
const VF3 = '0000:01:00.3';
const MOUNTED = '0000:06:00.0';
const NIC_UP = '0000:04:00.0';
const CALL_TIMEOUT_MS = 30_000;

/** A call that must fail, through a raw grpc-js client: the status and its trailer decoded by hand. */
function rawFailure(client: VfiodClient, service: 'DeviceService' | 'ControllerService' | 'AttachmentService', rpc: string, request: Record<string, unknown>): Promise<{ error: grpc.ServiceError; status: StatusDetails }> {
  const stub = (client as unknown as { clients: Record<string, Record<string, (r: unknown, cb: (e: grpc.ServiceError | null) => void) => void>> }).clients[service]!;
  return new Promise((resolve, reject) => {
    stub[rpc]!.call(stub, request, (error) => {
      if (!error) return reject(new Error(`${rpc} succeeded`));
      const bin = error.metadata.get(STATUS_DETAILS_KEY);
      expect(bin, 'one grpc-status-details-bin trailer').toHaveLength(1);
      resolve({ error, status: decodeStatus(bin[0] as Buffer) });
    });
  });
}

describe.skipIf(skipReason)('control API error details', () => {
  let server: typeof ServerModule;
  let host: FakeHost;
  let dir: string;
  let daemon: ServerModule.Daemon;
  let client: VfiodClient;

  const call = (service: 'DeviceService' | 'ControllerService' | 'AttachmentService' | 'DaemonService', rpc: string, request: Record<string, unknown>) =>
    client.callUntyped(service, rpc, request, CALL_TIMEOUT_MS);
  const socket = (name: string): string => path.join(dir, `${name}.sock`);
  const create = (id: string, spec: Record<string, unknown> = {}) =>
    call('ControllerService', 'CreateController', { id, spec: { socketPath: socket(id), namespaces: ['memory:1M'], ...spec } });

  beforeAll(async () => {
    server = (await import(pathToFileURL(distServer).href)) as typeof ServerModule;
    host = standardHost();
    dir = temporaryDir('vfiod-errors-');
    daemon = await server.startDaemon({
      socketPath: socket('vfiod'),
      stateDir: path.join(dir, 'state'),
      roots: host.roots,
      writer: host.writer,
      prober: host.prober,
      pollMs: 5,
      vfioTimeoutMs: 200,
      controllerStartTimeoutMs: 8000,
      controllerMemoryLimitBytes: 64 * 2 ** 20,
      maxControllers: 2,
      logger: memoryLogger().logger,
    });
    client = new VfiodClient({ address: daemon.socketPath! });
  });
  afterAll(async () => {
    client?.close();
    await daemon?.close();
    host?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a device in use on the host: FAILED_PRECONDITION DEVICE_IN_USE with the bdf, the uses, a violation and the device as resource (raw grpc-js client)', async () => {
    const { error, status } = await rawFailure(client, 'DeviceService', 'PrepareDevice', { bdf: MOUNTED, owner: 'vm1' });
    expect(error.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(error.metadata.get('vfiod-error-code')).toEqual(['FAILED_PRECONDITION']);
    expect(status.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(status.message).toBe(error.details);
    expect(status.errorInfo).toMatchObject({ reason: 'DEVICE_IN_USE', domain: 'vfiod.dev', metadata: { bdf: MOUNTED, iommu_group: '9' } });
    expect(status.errorInfo!.metadata['in_use']).toMatch(/mounted/);
    expect(status.preconditionFailure!.violations).toEqual([{ type: 'DEVICE_IN_USE', subject: `pci-device:${MOUNTED}`, description: expect.stringContaining('in use on the host') }]);
    expect(status.resourceInfo).toMatchObject({ resourceType: 'pci-device', resourceName: MOUNTED });
  });

  it('several failed preconditions: every one is a violation, the first gives the reason', async () => {
    const api = await expectStatus(call('DeviceService', 'PrepareDevice', { bdf: NIC_UP, owner: 'vm1' }), 'FAILED_PRECONDITION');
    expect(api.reason).toBe('IOMMU_GROUP_NOT_VIABLE');
    expect(api.metadata).toMatchObject({ bdf: NIC_UP, iommu_group: '7', members: expect.stringContaining('0000:04:00.1') });
    expect(api.violations.map((v) => [v.type, v.subject])).toEqual([
      ['IOMMU_GROUP_NOT_VIABLE', 'iommu-group:7'],
      ['DEVICE_IN_USE', `pci-device:${NIC_UP}`],
    ]);
    expect(api.resource).toMatchObject({ resourceType: 'iommu-group', resourceName: '7' });
  });

  it('a group another process holds, a device claimed by another VM, a device a VMM still holds: the pids and the owner', async () => {
    host.holdOpen(4343, 'qemu-system-x86', host.groupDevPath(5));
    const held = await expectStatus(call('DeviceService', 'PrepareDevice', { bdf: VF3, owner: 'vm1' }), 'FAILED_PRECONDITION');
    expect(held.reason).toBe('IOMMU_GROUP_HELD');
    expect(held.metadata).toMatchObject({ bdf: VF3, iommu_group: '5', holder_pid: '4343', holder_comm: 'qemu-system-x86' });
    host.exitProcess(4343);

    await call('DeviceService', 'PrepareDevice', { bdf: VF1, owner: 'vm1' });
    const claimed = await expectStatus(call('DeviceService', 'PrepareDevice', { bdf: VF1, owner: 'vm2' }), 'ALREADY_EXISTS', 'vm1');
    expect(claimed.reason).toBe('DEVICE_CLAIMED_BY_OTHER_VM');
    expect(claimed.metadata).toMatchObject({ bdf: VF1, owner: 'vm1' });
    expect(claimed.resource).toMatchObject({ resourceType: 'pci-device', resourceName: VF1, owner: 'vm1' });
    const notYours = await expectStatus(call('DeviceService', 'ReleaseDevice', { bdf: VF1, owner: 'vm2' }), 'FAILED_PRECONDITION');
    expect(notYours.reason).toBe('DEVICE_CLAIMED_BY_OTHER_VM');

    host.holdOpen(4242, 'cloud-hyperviso', host.groupDevPath(3));
    const stillHeld = await expectStatus(call('DeviceService', 'ReleaseDevice', { bdf: VF1, owner: 'vm1' }), 'UNAVAILABLE');
    expect(stillHeld.reason).toBe('DEVICE_STILL_HELD');
    expect(stillHeld.metadata).toMatchObject({ bdf: VF1, holder_pid: '4242', holder_comm: 'cloud-hyperviso' });
    expect(stillHeld.violations).toEqual([]);
    host.exitProcess(4242);
    await call('DeviceService', 'ReleaseDevice', { bdf: VF1, owner: 'vm1' });

    const missing = await expectStatus(call('DeviceService', 'GetDevice', { bdf: '0000:7f:00.0' }), 'NOT_FOUND');
    expect(missing.reason).toBe('DEVICE_NOT_FOUND');
    expect(missing.metadata).toEqual({ bdf: '0000:7f:00.0' });
  });

  it('a bad request field: the reason, the field, and a BadRequest field violation', async () => {
    const long = await expectStatus(call('DeviceService', 'PrepareDevice', { bdf: VF1, owner: 'x'.repeat(300) }), 'INVALID_ARGUMENT');
    expect(long.reason).toBe('FIELD_TOO_LONG');
    expect(long.metadata).toEqual({ field: 'owner', length: '300', limit: '256' });
    expect(long.statusDetails?.badRequest).toEqual({ fieldViolations: [{ field: 'owner', description: long.details }] });
    const bdf = await expectStatus(call('DeviceService', 'GetDevice', { bdf: 'zz:00.0' }), 'INVALID_ARGUMENT');
    expect(bdf.reason).toBe('PCI_ADDRESS_INVALID');
    expect(bdf.metadata).toEqual({ field: 'bdf' });
  });

  it('a controller that exists, a bad namespace URI, memory beyond the budget, the controller limit', async () => {
    await create('c1');
    const exists = await expectStatus(create('c1', { socketPath: socket('c1-again') }), 'ALREADY_EXISTS');
    expect(exists.reason).toBe('CONTROLLER_EXISTS');
    expect(exists.metadata).toEqual({ controller_id: 'c1' });
    expect(exists.resource).toMatchObject({ resourceType: 'controller', resourceName: 'c1' });

    const uri = await expectStatus(create('c2', { namespaces: ['memory:1M', 'bogus:1G'] }), 'INVALID_ARGUMENT');
    expect(uri.reason).toBe('NAMESPACE_URI_INVALID');
    expect(uri.metadata).toEqual({ controller_id: 'c2', namespace: '2', uri: 'bogus:1G' });

    const memory = await expectStatus(create('c2', { namespaces: ['memory:128M'] }), 'FAILED_PRECONDITION');
    expect(memory.reason).toBe('MEMORY_BUDGET_EXCEEDED');
    expect(memory.metadata).toMatchObject({ controller_id: 'c2', memory_bytes: String(128 * 2 ** 20), others_bytes: String(2 ** 20), limit_bytes: String(64 * 2 ** 20) });
    expect(memory.violations).toEqual([{ type: 'MEMORY_BUDGET_EXCEEDED', subject: 'controller:c2', description: memory.details }]);

    const socketTaken = await expectStatus(create('c2', { socketPath: socket('c1') }), 'ALREADY_EXISTS');
    expect(socketTaken.reason).toBe('SOCKET_IN_USE');
    expect(socketTaken.metadata).toMatchObject({ controller_id: 'c2', socket_path: socket('c1'), other_controller: 'c1' });

    await create('c2');
    const limit = await expectStatus(create('c3'), 'RESOURCE_EXHAUSTED');
    expect(limit.reason).toBe('CONTROLLER_LIMIT_REACHED');
    expect(limit.metadata).toEqual({ controller_id: 'c3', count: '2', limit: '2' });
    expect(limit.statusDetails?.quotaFailure?.violations).toEqual([{ subject: 'daemon:vfiod', description: limit.details }]);

    const none = await expectStatus(call('ControllerService', 'GetController', { id: 'nope' }), 'NOT_FOUND');
    expect(none.reason).toBe('CONTROLLER_NOT_FOUND');
    await call('ControllerService', 'DeleteController', { id: 'c2' });
  });

  it('a missing attachment, a controller that is not there to attach, a daemon without crash recovery', async () => {
    const detach = await expectStatus(call('AttachmentService', 'DetachDevice', { vmId: 'vm1', deviceId: 'disk9' }), 'NOT_FOUND');
    expect(detach.reason).toBe('ATTACHMENT_NOT_FOUND');
    expect(detach.metadata).toEqual({ vm_id: 'vm1', device_id: 'disk9' });
    expect(detach.resource).toEqual({ resourceType: 'attachment', resourceName: 'vm1/disk9', owner: 'vm1', description: '' });

    const byBdf = await expectStatus(call('AttachmentService', 'DetachDevice', { vmId: 'vm1', bdf: VF1 }), 'NOT_FOUND');
    expect(byBdf.reason).toBe('ATTACHMENT_NOT_FOUND');
    expect(byBdf.metadata).toEqual({ vm_id: 'vm1', bdf: VF1 });

    const attach = await expectStatus(
      call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint: { qemuQmpSocket: socket('qmp') }, source: { controllerId: 'ghost' } }),
      'NOT_FOUND',
    );
    expect(attach.reason).toBe('CONTROLLER_NOT_FOUND');

    const restart = await expectStatus(call('DaemonService', 'RestartDaemon', {}), 'FAILED_PRECONDITION');
    expect(restart.reason).toBe('NO_CRASH_RECOVERY');
    expect(restart.resource).toMatchObject({ resourceType: 'daemon', resourceName: 'vfiod' });
  });

  it('the CLI prints the reason and the metadata, and --json has them', async () => {
    const { runDevicesViaDaemon } = await import('../../src/cli/devices.js');
    const { runControllers } = await import('../../src/cli/controllers.js');
    const run = async (command: typeof runControllers, argv: string[]): Promise<{ code: number; out: string; err: string }> => {
      let out = '';
      let err = '';
      const code = await command([...argv, '--daemon', daemon.socketPath!], { stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
      return { code, out, err };
    };
    const prepare = await run(runDevicesViaDaemon, ['prepare', MOUNTED, '--owner', 'vm1']);
    expect(prepare.code).toBe(1);
    expect(prepare.err).toMatch(new RegExp(`^vfiod devices prepare: FAILED_PRECONDITION DEVICE_IN_USE: .* \\(bdf ${MOUNTED}, iommu_group 9, in_use .*mounted`));

    const several = await run(runDevicesViaDaemon, ['prepare', NIC_UP, '--owner', 'vm1']);
    expect(several.err.split('\n').slice(1, 3)).toEqual([
      expect.stringMatching(/^ {2}IOMMU_GROUP_NOT_VIABLE iommu-group:7: /),
      expect.stringMatching(new RegExp(`^  DEVICE_IN_USE pci-device:${NIC_UP}: `)),
    ]);

    const json = await run(runControllers, ['create', 'c1', '--socket', socket('c1-cli'), '--namespace', 'memory:1M', '--json']);
    expect(json.code).toBe(4);
    expect(json.err).toContain('ALREADY_EXISTS CONTROLLER_EXISTS: controller c1 already exists (controller_id c1)');
    expect(JSON.parse(json.out)).toEqual({
      error: {
        code: 'ALREADY_EXISTS',
        reason: 'CONTROLLER_EXISTS',
        domain: 'vfiod.dev',
        message: 'controller c1 already exists',
        metadata: { controller_id: 'c1' },
        resource: { resourceType: 'controller', resourceName: 'c1', owner: '', description: '' },
      },
    });
  });

  it('ApiError without a trailer (another server) still works, with no reason', () => {
    const error = ApiError.from(Object.assign(new Error('x'), { code: grpc.status.UNAVAILABLE, details: 'gone', metadata: new grpc.Metadata() }) as grpc.ServiceError, 'GetDevice');
    expect(error.reason).toBeUndefined();
    expect(error.metadata).toEqual({});
    expect(error.toJSON()).toEqual({ code: 'UNAVAILABLE', message: 'gone' });
  });
});
