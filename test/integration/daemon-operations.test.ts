/**
 * Long-running operations, request ids and the event log of the control API, against a real daemon over the fake
 * host (fake sysfs) and fake cloud-hypervisor VMMs of the attach tests: AttachDevice answers at once with a running
 * operation that completes; a guest that never lets go ends a detach in OPERATION_STATE_DETACH_PENDING; request-id
 * retries (same -> first answer, different -> REQUEST_ID_REUSED, after a daemon restart -> first answer); WatchEvents
 * replays after a sequence and from a time, across a restart, refuses a replay point that is no longer kept, and
 * drops a client that never reads; an operation whose daemon was SIGKILLed is OPERATION_INTERRUPTED after the restart.
 * The daemon runs from dist/ (controllers run in worker threads loaded from there; one test runs bin/vfiod.js).
 */
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { runAttach } from '../../src/cli/attach.js';
import { runDetach } from '../../src/cli/detach.js';
import { runEvents, sinceMs } from '../../src/cli/events.js';
import { runOperations } from '../../src/cli/operations.js';
import { ApiError, VfiodClient } from '../../src/daemon/client.js';
import { type RequestOf, type RpcName, unpackAny } from '../../src/daemon/proto.js';
import { decodeStatus } from '../../src/daemon/status-details.js';
import type * as ServerModule from '../../src/daemon/server.js';
import { memoryLogger } from '../../src/util/log.js';
import { expectStatus, streamSubscribed } from '../helpers/daemon-client.js';
import { type FakeChOptions, type FakeCloudHypervisor, vfioHoldingFake } from '../helpers/fake-cloud-hypervisor.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { temporaryDir } from '../helpers/common.js';
import { bin, children, type LogLine, serve } from '../helpers/vfiod-process.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const distServer = path.join(root, 'dist', 'daemon', 'server.js');
const skipReason = existsSync(distServer) && existsSync(path.join(root, 'dist', 'serve', 'worker.js'))
  ? undefined
  : 'dist/ is not built (npm test runs tsc first; or run npx tsc -p tsconfig.json)';
if (skipReason) console.warn(`daemon operations tests skipped: ${skipReason}`);

const VF1 = '0000:01:00.1';
const VF2 = '0000:01:00.2';

let server: typeof ServerModule;
let host: FakeHost;
let dir: string;
let daemon: ServerModule.Daemon;
let client: VfiodClient;
const fakes: FakeCloudHypervisor[] = [];

/** A fake cloud-hypervisor for `vm` that holds the VFIO group of each device it has until the guest ejects it. */
async function vmm(vm: string, options: Partial<FakeChOptions> = {}): Promise<{ fake: FakeCloudHypervisor; endpoint: Record<string, string> }> {
  const socketPath = path.join(dir, `${vm}.sock`);
  const fake = await vfioHoldingFake(host, socketPath, 6000 + fakes.length, { ejectDelayMs: 20, ...options });
  fakes.push(fake);
  return { fake, endpoint: { cloudHypervisorApiSocket: socketPath } };
}

let log: ReturnType<typeof memoryLogger>;

async function startTestDaemon(extra: Partial<ServerModule.DaemonOptions> = {}): Promise<void> {
  log = memoryLogger();
  daemon = await server.startDaemon({
    socketPath: path.join(dir, 'vfiod.sock'),
    stateDir: path.join(dir, 'state'),
    roots: host.roots,
    writer: host.writer,
    prober: host.prober,
    pollMs: 5,
    vfioTimeoutMs: 200,
    releaseWaitMs: 500,
    controllerStartTimeoutMs: 8000,
    logger: log.logger,
    ...extra,
  });
  client = new VfiodClient({ address: daemon.socketPath! });
}

async function restartDaemon(extra: Partial<ServerModule.DaemonOptions> = {}): Promise<void> {
  client.close();
  await daemon.close();
  await startTestDaemon(extra);
}

const call = <S extends 'AttachmentService' | 'OperationService' | 'DeviceService' | 'ControllerService', M extends RpcName<S>>(service: S, rpc: M, request: RequestOf<S, M>) =>
  client.call(service, rpc, request, 30_000);

/** An operation's response (google.protobuf.Any) unpacked. */
const responseOf = (op: Record<string, any>): Record<string, any> => unpackAny(op['response']).value;

/** The events a WatchEvents stream delivers until it ends, and how it ended (null: OK). */
function watch(request: Record<string, unknown>): { stream: grpc.ClientReadableStream<Record<string, any>>; events: Array<Record<string, any>>; ended: Promise<ApiError | null> } {
  const stream = client.stream('EventService', 'WatchEvents', request);
  const events: Array<Record<string, any>> = [];
  stream.on('data', (response) => events.push(response['event']));
  const ended = new Promise<ApiError | null>((resolve) => {
    stream.on('error', (error: grpc.ServiceError) => resolve(ApiError.from(error, 'WatchEvents')));
    stream.on('end', () => resolve(null));
  });
  return { stream, events, ended };
}

describe.skipIf(skipReason)('operations, request ids and events', () => {
  beforeAll(async () => {
    server = (await import(pathToFileURL(distServer).href)) as typeof ServerModule;
  });
  beforeEach(async () => {
    host = standardHost();
    dir = temporaryDir('vfiod-operations-');
    await startTestDaemon();
  });
  afterEach(async () => {
    client.close();
    await daemon.close();
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const fake of fakes.splice(0)) {
      expect(fake.violations).toEqual([]);
      await fake.stop();
    }
    host.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('AttachDevice answers at once with a running operation, which completes; Get, Wait and List show it', async () => {
    // A VMM that takes 1.5 s to answer the hot-plug: the call must not wait for it.
    const { endpoint } = await vmm('vm1', { lateAnswerMs: new Map([['vm.add-device', 1500]]) });
    const started = Date.now();
    const answer = await call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint, source: { pciBdf: VF1 }, deviceId: 'disk1' });
    expect(Date.now() - started).toBeLessThan(1500);
    const op = answer['operation']!;
    expect(op).toMatchObject({ kind: 'OPERATION_KIND_ATTACH_DEVICE', state: 'OPERATION_STATE_RUNNING', done: false, vmId: 'vm1', deviceId: 'disk1' });
    expect(op.name).toMatch(/^operations\/[0-9a-f-]{36}$/);
    expect(answer['attachment']).toBeNull();

    // Progress: the orchestrator reaches the VMM step while the VMM has not answered.
    await vi.waitFor(async () => expect((await call('OperationService', 'GetOperation', { name: op.name }))['operation']!['step']).toMatch(/adding disk1 to the VMM/), { timeout: 5000 });
    const done = (await call('OperationService', 'WaitOperation', { name: op.name, timeoutMs: 20_000 }))['operation']!;
    expect(done).toMatchObject({ state: 'OPERATION_STATE_SUCCEEDED', done: true, progressPercent: 100, error: null });
    expect(responseOf(done)).toMatchObject({ changed: true, attachment: { vmId: 'vm1', deviceId: 'disk1', state: 'ATTACHMENT_STATE_ATTACHED' } });
    expect(host.driverOf(VF1)).toBe('vfio-pci');
    const listed = (await call('OperationService', 'ListOperations', { vmId: 'vm1' }))['operations'];
    expect(listed.map((o: { name: string; state: string }) => [o.name, o.state])).toEqual([[op.name, 'OPERATION_STATE_SUCCEEDED']]);
    expect((await call('OperationService', 'ListOperations', { runningOnly: true }))['operations']).toEqual([]);
    const missing = await expectStatus(call('OperationService', 'GetOperation', { name: 'operations/nope' }), 'NOT_FOUND', 'operations/nope');
    expect(missing.reason).toBe('OPERATION_NOT_FOUND');

    // A failed attach is a FAILED operation carrying the status; with wait it is the call's status, as before.
    const refused = await call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint, source: { pciBdf: '0000:06:00.0' } });
    const failed = (await call('OperationService', 'WaitOperation', { name: refused['operation']!.name, timeoutMs: 20_000 }))['operation']!;
    expect(failed).toMatchObject({ state: 'OPERATION_STATE_FAILED', done: true, error: { code: 9 } });
    expect(failed.error!.message).toContain('in use on the host');
    await expectStatus(call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint, source: { pciBdf: '0000:06:00.0' }, wait: true }), 'FAILED_PRECONDITION', 'in use on the host');
  });

  it('a guest that never lets go: the detach operation ends DETACH_PENDING (not DEADLINE_EXCEEDED), the device stays claimed', async () => {
    const { fake, endpoint } = await vmm('vm1', { guestEjects: false });
    const attached = await call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint, source: { pciBdf: VF1 }, deviceId: 'disk1', wait: true });
    expect(attached['attachment']).toMatchObject({ state: 'ATTACHMENT_STATE_ATTACHED' });
    expect(attached['operation']).toMatchObject({ state: 'OPERATION_STATE_SUCCEEDED' });

    const detach = await call('AttachmentService', 'DetachDevice', { vmId: 'vm1', deviceId: 'disk1', timeoutMs: 300 });
    expect(detach['operation']).toMatchObject({ kind: 'OPERATION_KIND_DETACH_DEVICE', state: 'OPERATION_STATE_RUNNING', deviceId: 'disk1' });
    const pending = (await call('OperationService', 'WaitOperation', { name: detach['operation']!.name, timeoutMs: 20_000 }))['operation']!;
    expect(pending).toMatchObject({ state: 'OPERATION_STATE_DETACH_PENDING', done: true, response: null });
    expect(pending.error!.message).toContain('did not release');
    expect((await call('AttachmentService', 'ListAttachments', { vmId: 'vm1' }))['attachments'][0]!.state).toBe('ATTACHMENT_STATE_DETACH_PENDING');
    expect(host.driverOf(VF1)).toBe('vfio-pci');

    // With wait: an OK answer in the same state, not DEADLINE_EXCEEDED.
    const waited = await call('AttachmentService', 'DetachDevice', { vmId: 'vm1', deviceId: 'disk1', timeoutMs: 300, wait: true });
    expect(waited).toMatchObject({ vmId: 'vm1', deviceId: 'disk1', released: [], operation: { state: 'OPERATION_STATE_DETACH_PENDING' } });

    // The guest lets go: detaching again completes and releases.
    fake.ejectPending();
    const completed = await call('AttachmentService', 'DetachDevice', { vmId: 'vm1', deviceId: 'disk1', timeoutMs: 5000, wait: true });
    expect(completed).toMatchObject({ released: [VF1], operation: { state: 'OPERATION_STATE_SUCCEEDED' } });
    expect(responseOf(completed['operation']!)).toMatchObject({ vmId: 'vm1', deviceId: 'disk1', released: [VF1] });
    expect(host.driverOf(VF1)).toBe('nvme');
    // An unknown attachment is still the call's NOT_FOUND (nothing to start).
    await expectStatus(call('AttachmentService', 'DetachDevice', { vmId: 'vm1', deviceId: 'disk1' }), 'NOT_FOUND', 'disk1');
  });

  it('request ids: the same request gets the first answer, another request REQUEST_ID_REUSED, also after a daemon restart', async () => {
    const { endpoint } = await vmm('vm1');
    const attach = { vmId: 'vm1', endpoint, source: { pciBdf: VF1 }, deviceId: 'disk1', requestId: 'a1b2c3d4-0000-4000-8000-000000000001' };
    const first = await call('AttachmentService', 'AttachDevice', attach);
    const retry = await call('AttachmentService', 'AttachDevice', { ...attach, wait: true });
    expect(retry['operation']!.name).toBe(first['operation']!.name);
    expect(retry['operation']).toMatchObject({ state: 'OPERATION_STATE_SUCCEEDED', requestId: attach.requestId });
    const other = await expectStatus(call('AttachmentService', 'AttachDevice', { ...attach, deviceId: 'disk2' }), 'INVALID_ARGUMENT', attach.requestId);
    expect(other.reason).toBe('REQUEST_ID_REUSED');
    expect(other.metadata).toMatchObject({ field: 'request_id', request_id: attach.requestId, rpc: 'AttachDevice' });
    const long = await expectStatus(call('AttachmentService', 'AttachDevice', { ...attach, requestId: 'x'.repeat(300) }), 'INVALID_ARGUMENT', 'request_id');
    expect(long.reason).toBe('FIELD_TOO_LONG');
    // One operation only: the retry started nothing.
    expect((await call('OperationService', 'ListOperations', {}))['operations']).toHaveLength(1);

    const prepare = { bdf: VF2, owner: 'vm2', requestId: 'prepare-1' };
    const prepared = await call('DeviceService', 'PrepareDevice', prepare);
    expect(prepared['changed']).toBe(true);
    expect(await call('DeviceService', 'PrepareDevice', prepare)).toEqual(prepared);
    expect((await expectStatus(call('DeviceService', 'PrepareDevice', { ...prepare, owner: 'vm3' }), 'INVALID_ARGUMENT')).reason).toBe('REQUEST_ID_REUSED');

    const create = { id: 'c1', spec: { socketPath: path.join(dir, 'c1.sock'), namespaces: ['memory:1M'] }, requestId: 'create-1' };
    const created = await call('ControllerService', 'CreateController', create);
    expect(await call('ControllerService', 'CreateController', create)).toEqual(created);
    expect((await expectStatus(call('ControllerService', 'CreateController', { ...create, id: 'c2' }), 'INVALID_ARGUMENT')).reason).toBe('REQUEST_ID_REUSED');
    // Without a request id a repeat is a new create: ALREADY_EXISTS as always.
    await expectStatus(call('ControllerService', 'CreateController', { ...create, requestId: '' }), 'ALREADY_EXISTS');

    await restartDaemon();
    const afterRestart = await call('AttachmentService', 'AttachDevice', attach);
    expect(afterRestart['operation']).toMatchObject({ name: first['operation']!.name, state: 'OPERATION_STATE_SUCCEEDED' });
    expect(await call('DeviceService', 'PrepareDevice', prepare)).toEqual(prepared);
    expect(await call('ControllerService', 'CreateController', create)).toEqual(created);
    expect((await expectStatus(call('AttachmentService', 'AttachDevice', { ...attach, deviceId: 'disk2' }), 'INVALID_ARGUMENT')).reason).toBe('REQUEST_ID_REUSED');
    expect((await call('OperationService', 'ListOperations', {}))['operations']).toHaveLength(1);
    await call('ControllerService', 'DeleteController', { id: 'c1' });
  });

  it('events: one sequence over devices, attachments and operations; replay after a sequence and from a time, across a restart', async () => {
    const { endpoint } = await vmm('vm1');
    const live = watch({});
    await streamSubscribed(live.stream);
    const t0 = Date.now();
    const attached = await call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint, source: { pciBdf: VF1 }, deviceId: 'disk1', wait: true });
    const opName = attached['operation']!.name;
    await vi.waitFor(() => expect(live.events.some((e) => e.resourceName === opName && e.action === 'SUCCEEDED')).toBe(true));
    live.stream.cancel();

    const sequences = live.events.map((e) => e.sequence);
    expect(sequences).toEqual([...sequences].sort((a, b) => a - b));
    expect(new Set(sequences).size).toBe(sequences.length);
    const types = new Set(live.events.map((e) => e.resourceType));
    expect(types).toEqual(new Set(['EVENT_RESOURCE_TYPE_DEVICE', 'EVENT_RESOURCE_TYPE_ATTACHMENT', 'EVENT_RESOURCE_TYPE_OPERATION']));
    const device = live.events.find((e) => e.resourceType === 'EVENT_RESOURCE_TYPE_DEVICE' && e.action === 'ATTACHED');
    expect(device).toMatchObject({ resourceName: `devices/${VF1}`, vmId: 'vm1', device: { bdf: VF1, kind: 'DEVICE_EVENT_KIND_ATTACHED' } });
    expect(live.events.find((e) => e.resourceType === 'EVENT_RESOURCE_TYPE_ATTACHMENT' && e.action === 'ATTACHED')).toMatchObject({
      resourceName: 'vms/vm1/attachments/disk1',
      attachment: { deviceId: 'disk1', state: 'ATTACHMENT_STATE_ATTACHED' },
    });
    const succeeded = live.events.find((e) => e.resourceName === opName && e.action === 'SUCCEEDED')!;
    expect(succeeded.operation).toMatchObject({ name: opName, state: 'OPERATION_STATE_SUCCEEDED', eventSequence: succeeded.sequence });
    for (const e of live.events) expect(Date.parse(e.time)).toBeGreaterThanOrEqual(t0 - 1000);

    // Replay after the third event: exactly the ones after it, then the stream ends (stop_after_replay).
    const third = live.events[2]!.sequence;
    const replay = watch({ afterSequence: third, stopAfterReplay: true });
    expect(await replay.ended).toBeNull();
    expect(replay.events.map((e) => e.sequence)).toEqual(sequences.filter((s) => s > third));
    // Only operations.
    const ops = watch({ afterSequence: 0, resourceTypes: ['EVENT_RESOURCE_TYPE_OPERATION'], stopAfterReplay: true });
    expect(await ops.ended).toBeNull();
    expect(ops.events.length).toBeGreaterThan(1);
    expect(ops.events.every((e) => e.resourceName === opName)).toBe(true);

    await restartDaemon();
    // After a restart: the same events, from the same time, and new ones continue the sequence.
    const since = watch({ sinceUnixMs: t0, stopAfterReplay: true });
    expect(await since.ended).toBeNull();
    expect(since.events.map((e) => e.sequence).filter((s) => sequences.includes(s))).toEqual(sequences);
    const resumed = watch({ afterSequence: sequences.at(-1)! });
    await streamSubscribed(resumed.stream);
    await call('AttachmentService', 'DetachDevice', { vmId: 'vm1', deviceId: 'disk1', timeoutMs: 5000, wait: true });
    await vi.waitFor(() => expect(resumed.events.some((e) => e.resourceType === 'EVENT_RESOURCE_TYPE_DEVICE' && e.action === 'DETACHED')).toBe(true));
    resumed.stream.cancel();
    expect(resumed.events[0]!.sequence).toBeGreaterThan(sequences.at(-1)!);
    const tail = watch({ tailSeconds: 3600, stopAfterReplay: true });
    expect(await tail.ended).toBeNull();
    expect(tail.events.length).toBeGreaterThanOrEqual(sequences.length + resumed.events.length);
  });

  it('retention: a replay point older than the kept events is EVENTS_EXPIRED; a client that never reads is dropped with the last sequence it was sent', async () => {
    await restartDaemon({ eventRetention: 40, eventStreamMaxLag: 20 });
    const { endpoint } = await vmm('vm1', { ejectDelayMs: 0 });
    // A client that subscribes and then never reads.
    const stalled = watch({ afterSequence: 0 });
    await streamSubscribed(stalled.stream);
    stalled.stream.pause();
    const cycle = async (i: number): Promise<void> => {
      await call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint, source: { vfioUserSocket: `/run/vfiod/vm1-${i}.sock` }, deviceId: 'user0', wait: true });
      await call('AttachmentService', 'DetachDevice', { vmId: 'vm1', deviceId: 'user0', timeoutMs: 5000, wait: true });
    };
    // Until the daemon gives up on the stalled client (once its HTTP/2 window is full, the daemon stops writing and
    // counts how far the log runs ahead of it); a bounded number of cycles.
    const dropped = (): boolean => log.lines.some((l) => l['msg'] === 'event stream dropped');
    let cycles = 0;
    for (; cycles < 300 && !dropped(); cycles++) await cycle(cycles);
    expect(dropped(), `not dropped after ${cycles} attach/detach cycles`).toBe(true);
    // It reads again: everything it was sent, then the status (a paused grpc-js stream would drop buffered messages
    // if the status came while it is paused).
    stalled.stream.resume();
    const error = await stalled.ended;
    expect(error).toBeInstanceOf(ApiError);
    expect(error!.statusName).toBe('RESOURCE_EXHAUSTED');
    expect(error!.reason).toBe('EVENT_STREAM_OVERFLOW');
    // No silent loss: it got every event up to the sequence the status names, in order, without a gap.
    const got = stalled.events.map((e) => e.sequence);
    expect(got).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
    expect(error!.metadata['last_sequence']).toBe(String(got.at(-1)));

    // The kept events are the last 40: a replay from before them is refused, naming the oldest kept.
    const expired = watch({ afterSequence: 1 });
    const refused = await expired.ended;
    expect(refused?.statusName).toBe('FAILED_PRECONDITION');
    expect(refused?.reason).toBe('EVENTS_EXPIRED');
    const oldest = Number(refused!.metadata['oldest_sequence']);
    const kept = watch({ afterSequence: oldest - 1, stopAfterReplay: true });
    expect(await kept.ended).toBeNull();
    expect(kept.events).toHaveLength(40);
    expect(kept.events[0]!.sequence).toBe(oldest);
    expect((await watch({ sinceUnixMs: 0 }).ended)?.reason).toBe('EVENTS_EXPIRED');
    const badType = await watch({ resourceTypes: [99] }).ended;
    expect(badType?.statusName).toBe('INVALID_ARGUMENT');
    expect(badType?.metadata).toMatchObject({ field: 'resource_types[0]' });
    // A sequence the log never reached is refused too (waiting for it would skip everything before it).
    const future = await watch({ afterSequence: 1_000_000 }).ended;
    expect(future?.statusName).toBe('INVALID_ARGUMENT');
    expect(future?.metadata).toMatchObject({ field: 'after_sequence', value: '1000000' });
    const last = watch({ tailEvents: 5, stopAfterReplay: true });
    expect(await last.ended).toBeNull();
    expect(last.events.map((e) => e.sequence)).toEqual(kept.events.slice(-5).map((e) => e.sequence));
  }, 120_000);

  it('CLI: attach and detach follow their operation with progress; detach-pending exits 4; operations list/get/wait; events --after/--since/--follow', async () => {
    const run = async (fn: typeof runAttach, ...argv: string[]) => {
      let stdout = '';
      let stderr = '';
      const code = await fn([...argv, '--daemon', daemon.socketPath!], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
      return { code, stdout, stderr };
    };
    const { fake, endpoint } = await vmm('vm1', { guestEjects: false, lateAnswerMs: new Map([['vm.add-device', 600]]) });
    const attached = await run(runAttach, '--vm', 'vm1', '--ch-socket', endpoint['cloudHypervisorApiSocket']!, '--bdf', VF1, '--device-id', 'disk1');
    expect(attached.code, attached.stderr).toBe(0);
    expect(attached.stderr).toMatch(/attaching to VM vm1 \(operations\/[0-9a-f-]+\)/);
    expect(attached.stderr).toMatch(/\[ *\d+%\] adding disk1 to the VMM/);
    expect(attached.stdout).toContain('attached disk1 to VM vm1');

    const pending = await run(runDetach, '--vm', 'vm1', '--device-id', 'disk1', '--timeout', '0.3');
    expect(pending.code, pending.stderr).toBe(4);
    expect(pending.stderr).toContain('GUEST_DID_NOT_RELEASE');
    expect(pending.stderr).toContain('detach-pending');

    const started = await run(runDetach, '--vm', 'vm1', '--device-id', 'disk1', '--timeout', '5', '--no-wait');
    expect(started.code, started.stderr).toBe(0);
    const name = started.stdout.trim();
    expect(name).toMatch(/^operations\/[0-9a-f-]{36}$/);
    fake.ejectPending();
    const waited = await run(runOperations, 'wait', name);
    expect(waited.code, waited.stderr).toBe(0);
    expect(waited.stdout).toMatch(/state: +succeeded \(100%\)/);
    const shown = JSON.parse((await run(runOperations, 'get', name, '--json')).stdout);
    expect(shown).toMatchObject({ name, state: 'OPERATION_STATE_SUCCEEDED', response: { vmId: 'vm1', deviceId: 'disk1', released: [VF1] }, error: null });
    const listed = await run(runOperations, 'list', '--vm', 'vm1');
    expect(listed.stdout).toMatch(/^NAME\s+KIND\s+STATE/);
    expect(listed.stdout.trim().split('\n')).toHaveLength(4);
    expect(listed.stdout).toMatch(/detach-device\s+detach-pending/);
    const failedJson = JSON.parse((await run(runOperations, 'list', '--json')).stdout).operations.find((o: { state: string }) => o.state === 'OPERATION_STATE_DETACH_PENDING');
    expect(failedJson.error).toMatchObject({ code: 'DEADLINE_EXCEEDED', reason: 'GUEST_DID_NOT_RELEASE', metadata: { vm_id: 'vm1', device_id: 'disk1' } });
    expect((await run(runOperations, 'get', 'operations/none')).code).toBe(3);

    const all = (await run(runEvents, '--after', '0', '--json')).stdout.trim().split('\n').map((l) => JSON.parse(l) as { sequence: number; resourceName: string });
    expect(all.length).toBeGreaterThan(10);
    expect(all.some((e) => e.resourceName === name)).toBe(true);
    const after = (await run(runEvents, '--after', String(all[4]!.sequence))).stdout.trim().split('\n');
    expect(after.map((l) => Number(l.split(' ')[0]))).toEqual(all.slice(5).map((e) => e.sequence));
    const recent = await run(runEvents, '--since', '10m', '--type', 'device');
    expect(recent.stdout).toMatch(new RegExp(`^\\d+  \\S+  device  devices/${VF1}  ATTACHED  vm=vm1`, 'm'));
    expect(recent.stdout).not.toContain('operations/');
    expect((await run(runEvents, '--since', 'yesterday')).code).toBe(2);
    // --follow, as an operator runs it (bin/vfiod.js): replays after the given sequence, then prints new events until
    // interrupted.
    const follow = spawn(process.execPath, [bin, 'events', '--follow', '--after', String(all.at(-1)!.sequence), '--daemon', daemon.socketPath!], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(follow);
    let followed = '';
    follow.stdout!.on('data', (d: Buffer) => (followed += d));
    const followExit = new Promise<number | null>((resolve) => follow.once('exit', resolve));
    // The prepare reaches it by the replay or live, whenever the command connected; the release after it was printed can
    // only come live.
    await call('DeviceService', 'PrepareDevice', { bdf: VF2, owner: 'vm7' });
    await vi.waitFor(() => expect(followed).toMatch(new RegExp(`devices/${VF2}  PREPARED  vm=vm7`)), { timeout: 20_000 });
    await call('DeviceService', 'ReleaseDevice', { bdf: VF2, owner: 'vm7' });
    await vi.waitFor(() => expect(followed).toMatch(new RegExp(`devices/${VF2}  RELEASED  vm=vm7`)), { timeout: 20_000 });
    follow.kill('SIGINT');
    expect(await followExit).toBe(0);
    expect(sinceMs('10m', 1_000_000)).toBe(400_000);
    expect(sinceMs('2026-12-07T12:00:00Z')).toBe(Date.UTC(2026, 11, 7, 12));
  });

  it('a daemon killed during an attach: after the restart the operation is FAILED OPERATION_INTERRUPTED, the attachment reconciled, the events kept', async () => {
    // The bin/vfiod.js daemon in a child process (SIGKILL), over the same fake host and state dir.
    client.close();
    await daemon.close();
    const args = ['--socket', path.join(dir, 'child.sock'), '--state-dir', path.join(dir, 'state'), '--sysfs-root', host.roots.sysfs, '--dev-root', host.roots.dev, '--proc-root', host.roots.proc];
    const listening = (line: LogLine): boolean => line['msg'] === 'listening' && line['component'] === 'daemon';
    const first = serve(args, 'daemon');
    await first.waitFor(listening, 'the daemon listening');
    client = new VfiodClient({ address: path.join(dir, 'child.sock') });
    // The VMM adds the device at once but answers only after a minute: the daemon dies waiting for it.
    const { fake, endpoint } = await vmm('vm1', { lateAnswerMs: new Map([['vm.add-user-device', 60_000]]) });
    const started = (await call('AttachmentService', 'AttachDevice', { vmId: 'vm1', endpoint, source: { vfioUserSocket: '/run/vfiod/vm1-a.sock' }, deviceId: 'data1', timeoutMs: 120_000 }))['operation']!;
    await vi.waitFor(() => expect(fake.tree.has('data1')).toBe(true), { timeout: 10_000 });
    first.process.kill('SIGKILL');
    await first.exited;
    client.close();

    const second = serve(args, 'daemon');
    await second.waitFor(listening, 'the restarted daemon listening');
    client = new VfiodClient({ address: path.join(dir, 'child.sock') });
    const op = (await call('OperationService', 'GetOperation', { name: started.name }))['operation']!;
    expect(op).toMatchObject({ state: 'OPERATION_STATE_FAILED', done: true, deviceId: 'data1' });
    expect(op.error).toMatchObject({ code: 13, reason: 'OPERATION_INTERRUPTED', metadata: { operation: started.name, vm_id: 'vm1', device_id: 'data1' } });
    expect(op.error!.message).toContain('adding data1 to the VMM');
    // The serialized google.rpc.Status says the same, with the operation as its resource.
    const status = decodeStatus(op.error!.statusDetails);
    expect(status).toMatchObject({ code: 13, message: op.error!.message, errorInfo: { reason: 'OPERATION_INTERRUPTED' }, resourceInfo: { resourceType: 'operation', resourceName: started.name, owner: 'vm1' } });
    // The VMM has the device: the start-up reconcile completed the attach.
    expect((await call('AttachmentService', 'ListAttachments', { vmId: 'vm1' }))['attachments']).toMatchObject([{ deviceId: 'data1', state: 'ATTACHMENT_STATE_ATTACHED' }]);
    // The events of both daemons, in one sequence.
    const replay = watch({ afterSequence: 0, resourceTypes: ['EVENT_RESOURCE_TYPE_OPERATION'], stopAfterReplay: true });
    expect(await replay.ended).toBeNull();
    expect(replay.events.map((e) => e.action)).toEqual([...replay.events.slice(0, -1).map(() => 'RUNNING'), 'FAILED']);
    expect(replay.events.length).toBeGreaterThanOrEqual(3);
    second.process.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  });
});
