/**
 * Namespaces of a running controller through the control API (AttachNamespace, DetachNamespace, ResizeNamespace)
 * and the CLI, end to end: a daemon (compiled, from dist/: controllers run in worker threads) serves a controller, the
 * project's vfio-user client drives it as a guest would, and every change must reach that guest as a Namespace
 * Attribute Notice with the Changed Namespace List and show in Identify; I/O to a detached namespace fails with
 * Invalid Namespace or Format; changes are saved, so a daemon restart brings the same namespace set back. The
 * hand-over state names every namespace with its NSID and size, and a successor configured otherwise is refused.
 * Then the same under `vfiod daemon --crash-recovery`: the changed namespace set survives a SIGKILL of the data
 * plane, a planned restart and `vfiod upgrade --daemon`, with the guest's connection never closing.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { runControllers } from '../../src/cli/controllers.js';
import { runEvents } from '../../src/cli/events.js';
import { controllerConfig } from '../../src/serve/config.js';
import { prepareTakeOver, startController, type ControllerHandoverState } from '../../src/serve/controller.js';
import { FdCollector, FdSource } from '../../src/util/handover-fds.js';
import type { RequestOf, RpcName } from '../../src/daemon/proto.js';
import { AdminOpcode, AsyncEvent, FeatureId, LogPageId, Status } from '../../src/spec/nvme.js';
import { memoryLogger } from '../../src/util/log.js';
import { temporaryDir } from '../helpers/common.js';
import { distDaemonUnavailable, useFakeHostDaemon } from '../helpers/dist-daemon.js';
import { expectStatus } from '../helpers/daemon-client.js';
import { standardHost } from '../helpers/fake-sysfs.js';
import type { GuestDriver } from '../helpers/guest-driver.js';
import { attachReadyGuest, type Guest } from '../helpers/hypervisor.js';
import { pattern } from '../helpers/nvme-harness.js';
import { bin, children, IO_DEADLINE_MS, startCrashRecoveryDaemon, type LogLine } from '../helpers/vfiod-process.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const skipReason = distDaemonUnavailable;
if (skipReason) console.warn(`daemon namespace tests skipped: ${skipReason}`);

const MiB = 1024 * 1024;
const NOTICE = AsyncEvent.TYPE_NOTICE | (AsyncEvent.INFO_NOTICE_NAMESPACE_ATTRIBUTE_CHANGED << 8) | (LogPageId.CHANGED_NAMESPACE_LIST << 16);

/** A guest that has enabled the controller, made an I/O queue pair and turned namespace attribute notices on. */
async function attachGuest(socketPath: string, guests: Guest[]): Promise<Guest> {
  const guest = await attachReadyGuest(socketPath, guests);
  expect((await guest.driver.setFeatures(FeatureId.ASYNC_EVENT_CONFIGURATION, 1 << 8)).status).toBe(Status.SUCCESS);
  return guest;
}

/** Posts an Asynchronous Event Request; returns its command id. */
async function postAer(driver: GuestDriver): Promise<number> {
  const cid = driver.place(0, { opcode: AdminOpcode.ASYNC_EVENT_REQUEST });
  await driver.ringSubmission(0);
  return cid;
}

function u32s(data: Uint8Array): number[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: number[] = [];
  for (let offset = 0; offset < data.length && view.getUint32(offset, true) !== 0; offset += 4) out.push(view.getUint32(offset, true));
  return out;
}

/** What the guest learns after a notice: the changed NSIDs (reading the log clears it and re-arms notices). */
async function changedNamespaces(driver: GuestDriver): Promise<number[]> {
  const { completion, data } = await driver.getLogPage(LogPageId.CHANGED_NAMESPACE_LIST, 4096);
  expect(completion.status).toBe(Status.SUCCESS);
  return u32s(data);
}

async function activeNamespaces(driver: GuestDriver): Promise<number[]> {
  const { completion, data } = await driver.identify(0x02, 0);
  expect(completion.status).toBe(Status.SUCCESS);
  return u32s(data);
}

/** Identify Namespace NSZE in blocks (0 for an inactive NSID). */
async function namespaceBlocks(driver: GuestDriver, nsid: number): Promise<number> {
  const { completion, data } = await driver.identify(0x00, nsid);
  expect(completion.status).toBe(Status.SUCCESS);
  return Number(new DataView(data.buffer, data.byteOffset).getBigUint64(0, true));
}

/** A one-block read of LBA 0 of `nsid`, whatever Identify says of it (the driver's read asks it for the block size). */
async function readOneBlock(driver: GuestDriver, nsid: number): Promise<number> {
  const buffer = driver.alloc(4096);
  try {
    return (await driver.submit(1, { opcode: 0x02, nsid, prp1: buffer, cdw12: 0 }, IO_DEADLINE_MS)).status;
  } finally {
    driver.free(buffer);
  }
}

describe.skipIf(skipReason)('namespaces of a running controller (ControllerService)', () => {
  const fixture = useFakeHostDaemon('vfiod-ns-');
  const { controllers, guests } = fixture;
  const image = (name: string): string => path.join(fixture.dir, name);

  it('attach, resize and detach reach the guest as notices and in Identify; I/O follows; the definition is saved', async () => {
    const socketPath = path.join(fixture.dir, 'c1.sock');
    await controllers('CreateController', { id: 'c1', spec: { socketPath, namespaces: [`file:${image('a.img')}?size=8M`] } });
    const guest = await attachGuest(socketPath, guests);
    const driver = guest.driver;

    // Attach: the lowest free NSID (2).
    let aer = await postAer(driver);
    const attached = await controllers('AttachNamespace', { id: 'c1', uri: `file:${image('b.img')}?size=4M` });
    expect(attached['nsid']).toBe(2);
    expect(attached['controller']!.namespaces.map((n: { nsid: number; uri: string; blocks: number }) => [n.nsid, n.uri, n.blocks])).toEqual([
      [1, `file:${image('a.img')}?size=8M`, (8 * MiB) / 512],
      [2, `file:${image('b.img')}?size=4M`, (4 * MiB) / 512],
    ]);
    expect((await driver.wait(0, aer, IO_DEADLINE_MS)).dw0).toBe(NOTICE);
    expect(await changedNamespaces(driver)).toEqual([2]);
    expect(await activeNamespaces(driver)).toEqual([1, 2]);
    expect(await namespaceBlocks(driver, 2)).toBe((4 * MiB) / 512);
    expect((await driver.write(2, 100, pattern(4096, 2), { timeoutMillis: IO_DEADLINE_MS })).status).toBe(Status.SUCCESS);
    expect(readFileSync(image('b.img')).subarray(100 * 512, 100 * 512 + 4096)).toEqual(Buffer.from(pattern(4096, 2)));

    // Resize: grows the file, the URI follows; shrinking is refused and the same size changes nothing.
    aer = await postAer(driver);
    const resized = await controllers('ResizeNamespace', { id: 'c1', nsid: 2, sizeBytes: 16 * MiB });
    expect(resized['controller']!.namespaces[1]).toMatchObject({ nsid: 2, uri: `file:${image('b.img')}?size=${16 * MiB}`, blocks: (16 * MiB) / 512 });
    expect(statSync(image('b.img')).size).toBe(16 * MiB);
    expect((await driver.wait(0, aer, IO_DEADLINE_MS)).dw0).toBe(NOTICE);
    expect(await changedNamespaces(driver)).toEqual([2]);
    expect(await namespaceBlocks(driver, 2)).toBe((16 * MiB) / 512);
    expect((await driver.write(2, (16 * MiB) / 512 - 8, pattern(4096, 3), { timeoutMillis: IO_DEADLINE_MS })).status).toBe(Status.SUCCESS);
    const shrink = await expectStatus(controllers('ResizeNamespace', { id: 'c1', nsid: 2, sizeBytes: 8 * MiB }), 'FAILED_PRECONDITION', 'namespace 2 has 16MiB', 'shrinking');
    expect(shrink.reason).toBe('NAMESPACE_SHRINK_REFUSED');
    await controllers('ResizeNamespace', { id: 'c1', nsid: 2, sizeBytes: 16 * MiB });
    expect(await changedNamespaces(driver)).toEqual([]); // no change, nothing told

    // Detach NSID 1 with a guest using both: its commands fail from then on, NSID 2 serves on and keeps its NSID.
    const slot1 = (await controllers('GetController', { id: 'c1' }))['controller']!.namespaces[0]!.identity;
    aer = await postAer(driver);
    const detached = await controllers('DetachNamespace', { id: 'c1', nsid: 1 });
    expect(detached['controller']!.namespaces.map((n: { nsid: number }) => n.nsid)).toEqual([2]);
    expect((await driver.wait(0, aer, IO_DEADLINE_MS)).dw0).toBe(NOTICE);
    expect(await changedNamespaces(driver)).toEqual([1]);
    expect(await activeNamespaces(driver)).toEqual([2]);
    expect(await readOneBlock(driver, 1)).toBe(Status.INVALID_NAMESPACE_OR_FORMAT);
    expect((await driver.read(2, 100, 8, { timeoutMillis: IO_DEADLINE_MS })).data).toEqual(pattern(4096, 2));

    // Saved: controllers.json has the NSIDs, and a daemon restart serves the same set.
    const saved = JSON.parse(readFileSync(path.join(fixture.dir, 'state', 'controllers.json'), 'utf8'));
    expect(saved.controllers[0].config).toMatchObject({ namespaces: [`file:${image('b.img')}?size=${16 * MiB}`], nsids: [2] });
    const identityBefore = (await controllers('GetController', { id: 'c1' }))['controller']!;
    for (const g of guests.splice(0)) g.close();
    await fixture.restart();
    const after = (await controllers('GetController', { id: 'c1' }))['controller']!;
    expect(after.state).toBe('CONTROLLER_STATE_SERVING');
    expect(after.namespaces.map((n: { nsid: number; blocks: number }) => [n.nsid, n.blocks])).toEqual([[2, (16 * MiB) / 512]]);
    expect(after.identity).toEqual(identityBefore.identity);
    const again = await attachGuest(socketPath, guests);
    expect(await activeNamespaces(again.driver)).toEqual([2]);
    expect((await again.driver.read(2, (16 * MiB) / 512 - 8, 8, { timeoutMillis: IO_DEADLINE_MS })).data).toEqual(pattern(4096, 3));
    // Identities belong to NSID slots (identity-store.ts): a namespace attached at NSID 1 again gets slot 1's ids.
    const back = await controllers('AttachNamespace', { id: 'c1', uri: `file:${image('a.img')}?size=8M`, nsid: 1 });
    expect(back['controller']!.namespaces[0]!.identity).toEqual(slot1);
    await controllers('DetachNamespace', { id: 'c1', nsid: 1 });
  });

  it('refuses what it cannot do with a precise reason, and nothing changes', async () => {
    const socketPath = path.join(fixture.dir, 'c2.sock');
    await controllers('CreateController', { id: 'c2', spec: { socketPath, namespaces: ['memory:4M', `file:${image('c.img')}?size=4M`] } });
    const refused = async <M extends RpcName<'ControllerService'>>(rpc: M, request: RequestOf<'ControllerService', M>, code: string, reason: string, ...mentions: string[]): Promise<void> => {
      const error = await expectStatus(controllers(rpc, request), code as never, ...mentions);
      expect(error.reason, error.details).toBe(reason);
    };
    await refused('AttachNamespace', { id: 'c2', uri: 'memory:1M', nsid: 2 }, 'ALREADY_EXISTS', 'NAMESPACE_ID_IN_USE', 'already has namespace 2');
    await refused('AttachNamespace', { id: 'c2', uri: 'memory:1M', nsid: 1025 }, 'INVALID_ARGUMENT', 'FIELD_OUT_OF_RANGE', 'NSID 1025 must be from 1 to 1024');
    await refused('AttachNamespace', { id: 'c2', uri: 'disk:x' }, 'INVALID_ARGUMENT', 'NAMESPACE_URI_INVALID', 'unknown scheme');
    await refused('AttachNamespace', { id: 'c2', uri: 'file:/etc/vfiod-test.img?size=1M' }, 'INVALID_ARGUMENT', 'NAMESPACE_OUTSIDE_NAMESPACE_DIRS', 'not in the daemon\'s namespace directories');
    await refused('AttachNamespace', { id: 'c2', uri: `file://${image('c.img')}` }, 'INVALID_ARGUMENT', 'NAMESPACE_DUPLICATE', 'are the same file');
    await refused('AttachNamespace', { id: 'c2', uri: `file:${image('b.img')}` }, 'ALREADY_EXISTS', 'NAMESPACE_IN_USE', 'controller c1');
    // a.img was c1's until the test before detached it: it is free for another controller now.
    expect((await controllers('AttachNamespace', { id: 'c2', uri: `file:${image('a.img')}` }))['nsid']).toBe(3);
    await controllers('DetachNamespace', { id: 'c2', nsid: 3 });
    // The controller has only a memory namespace's (no) volatile write cache... and a file's: a file attaches fine;
    // a memory-only controller cannot take a file (the guest was told there is no cache to flush).
    await controllers('CreateController', { id: 'm', spec: { socketPath: path.join(fixture.dir, 'm.sock'), namespaces: ['memory:1M'] } });
    const noCache = await expectStatus(controllers('AttachNamespace', { id: 'm', uri: `file:${image('m.img')}?size=1M` }), 'FAILED_PRECONDITION', 'volatile write cache');
    expect(noCache.reason).toBe('NAMESPACE_CHANGE_FAILED');
    await refused('AttachNamespace', { id: 'c2', uri: 'memory:1P' }, 'FAILED_PRECONDITION', 'MEMORY_BUDGET_EXCEEDED', 'exceed the');
    await refused('ResizeNamespace', { id: 'c2', nsid: 1, sizeBytes: 2 ** 50 }, 'FAILED_PRECONDITION', 'MEMORY_BUDGET_EXCEEDED', 'exceed the');
    await refused('DetachNamespace', { id: 'c2', nsid: 9 }, 'NOT_FOUND', 'NAMESPACE_NOT_FOUND', 'controller c2 has no namespace 9');
    await refused('ResizeNamespace', { id: 'c2', nsid: 9, sizeBytes: 8 * MiB }, 'NOT_FOUND', 'NAMESPACE_NOT_FOUND');
    await refused('ResizeNamespace', { id: 'c2', nsid: 2, sizeBytes: 8 * MiB + 100 }, 'INVALID_ARGUMENT', 'FIELD_INVALID', 'multiple of its block size 512');
    const missing = await expectStatus(controllers('DetachNamespace', { id: 'nope', nsid: 1 }), 'NOT_FOUND', 'no controller nope');
    expect(missing.reason).toBe('CONTROLLER_NOT_FOUND');
    const info = (await controllers('GetController', { id: 'c2' }))['controller']!;
    expect(info.namespaces.map((n: { nsid: number; blocks: number }) => [n.nsid, n.blocks])).toEqual([[1, 8192], [2, 8192]]);
    // Changes of one controller run one at a time: two attaches asking for the lowest free NSID get 3 and 4.
    const [first, second] = await Promise.all([
      controllers('AttachNamespace', { id: 'c2', uri: 'memory:1M' }),
      controllers('AttachNamespace', { id: 'c2', uri: 'memory:2M' }),
    ]);
    expect([first!['nsid'], second!['nsid']].sort()).toEqual([3, 4]);
    await controllers('DetachNamespace', { id: 'c2', nsid: 3 });
    await controllers('DetachNamespace', { id: 'c2', nsid: 4 });
    // Grows memory too; the last namespace cannot go.
    await controllers('ResizeNamespace', { id: 'c2', nsid: 1, sizeBytes: 8 * MiB });
    await controllers('DetachNamespace', { id: 'c2', nsid: 2 });
    await refused('DetachNamespace', { id: 'c2', nsid: 1 }, 'FAILED_PRECONDITION', 'NAMESPACE_LAST', 'its only namespace');
    const last = (await controllers('GetController', { id: 'c2' }))['controller']!;
    expect(last.spec!.namespaces).toEqual([`memory:${8 * MiB}`]);
    expect(last.namespaces.map((n: { nsid: number; blocks: number }) => [n.nsid, n.blocks])).toEqual([[1, 16384]]);
  });

  it('the CLI attaches, resizes and detaches', async () => {
    const run = async (...argv: string[]) => {
      let stdout = '';
      let stderr = '';
      const code = await runControllers([...argv, '--daemon', fixture.daemon.socketPath!], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
      return { code, stdout, stderr };
    };
    await controllers('CreateController', { id: 'cli', spec: { socketPath: path.join(fixture.dir, 'cli.sock'), namespaces: ['memory:1M'] } });
    const attached = await run('attach-namespace', 'cli', 'memory:2M', '--nsid', '4');
    expect(attached.code, attached.stderr).toBe(0);
    expect(attached.stdout).toContain('attached memory:2M to controller cli as namespace 4');
    expect(attached.stdout).toMatch(/ {2}4: memory:2M \(memory:2 ?MiB\), 4096 x 512 B/);
    const resized = await run('resize-namespace', 'cli', '4', '3M');
    expect(resized.code, resized.stderr).toBe(0);
    expect(resized.stdout).toMatch(/ {2}4: memory:3145728 .*6144 x 512 B/);
    const json = JSON.parse((await run('detach-namespace', 'cli', '1', '--json')).stdout);
    expect(json.controller.namespaces.map((n: { nsid: number }) => n.nsid)).toEqual([4]);
    const shrink = await run('resize-namespace', 'cli', '4', '1M');
    expect(shrink.code).not.toBe(0);
    expect(shrink.stderr).toContain('shrinking it to 1MiB is refused');
    expect((await run('detach-namespace', 'cli')).code).toBe(2); // usage
    // A retried AttachNamespace with its request id attaches once and answers as the first call did.
    const retried = { id: 'cli', uri: 'memory:1M', requestId: 'attach-cli-once' };
    const [once, again] = [await controllers('AttachNamespace', retried), await controllers('AttachNamespace', retried)];
    expect(again!['nsid']).toBe(once!['nsid']);
    expect((await controllers('GetController', { id: 'cli' }))['controller']!.namespaces.map((n: { nsid: number }) => n.nsid)).toEqual([1, 4]);
    // Every change is an event of the controller.
    let events = '';
    expect(await runEvents(['--after', '0', '--json', '--daemon', fixture.daemon.socketPath!], { stdout: (t) => (events += t), stderr: () => undefined })).toBe(0);
    const actions = events.trim().split('\n').map((line) => JSON.parse(line) as { resourceName: string; action: string; detail: string })
      .filter((event) => event.resourceName === 'controllers/cli').map((event) => `${event.action} ${event.detail}`);
    expect(actions).toEqual([
      expect.stringMatching(/^CREATED /),
      'NAMESPACE_ATTACHED namespace 4: memory:2M',
      'NAMESPACE_RESIZED namespace 4: 3145728 bytes',
      'NAMESPACE_DETACHED namespace 1',
      'NAMESPACE_ATTACHED namespace 1: memory:1M',
    ]);
    const twice = await run('attach-namespace', 'cli', 'memory:1M', '--nsid', '2', '--nsid', '3');
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain('attach-namespace takes one --nsid');
  });
});

describe('the hand-over state of a controller whose namespaces changed (vfiod serve --take-over, checkpoints)', () => {
  let dir: string;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('names each namespace with its NSID and size as the guest knows them; a successor configured otherwise is refused', async () => {
    dir = temporaryDir('vfiod-ns-handover-');
    const { logger } = memoryLogger();
    const config = controllerConfig({ socketPath: path.join(dir, 'nvme0.sock'), namespaces: [`file:${path.join(dir, 'a.img')}?size=1M`] });
    const controller = await startController(config, logger);
    try {
      const grown = `file:${path.join(dir, 'b.img')}?size=${2 * MiB}`;
      await controller.changeNamespace({ kind: 'attach', nsid: 3, uri: `file:${path.join(dir, 'b.img')}?size=1M` });
      await controller.changeNamespace({ kind: 'resize', nsid: 3, sizeBytes: 2 * MiB });
      await controller.changeNamespace({ kind: 'detach', nsid: 1 });
      await expect(controller.changeNamespace({ kind: 'detach', nsid: 1 })).rejects.toThrow('namespace 1 is not attached');
      expect(controller.namespaces.map((slot) => [slot.nsid, slot.uri])).toEqual([[3, grown]]);
      await controller.quiesce();
      // What is in the snapshot must not change under it.
      await expect(controller.changeNamespace({ kind: 'resize', nsid: 3, sizeBytes: 4 * MiB })).rejects.toThrow('being handed over');
      const fds = new FdCollector();
      const state = JSON.parse(JSON.stringify(controller.snapshot(fds))) as ControllerHandoverState;
      expect(state.namespaces).toEqual([expect.objectContaining({ nsid: 3, uri: grown, blockSize: 512, blockCount: (2 * MiB) / 512 })]);
      const stale = await prepareTakeOver(config, logger);
      expect(() => stale.adopt(state, new FdSource(fds.fds))).toThrow('namespaces 1 are configured, the running controller has 3');
      await stale.abandon();
      // Right NSID, wrong disk (a smaller one): the guest would see its namespace shrink.
      const other = await prepareTakeOver({ ...config, namespaces: [`file:${path.join(dir, 'a.img')}?size=1M`], nsids: [3] }, logger);
      expect(() => other.adopt(state, new FdSource(fds.fds))).toThrow('namespace 3 (file:' + path.join(dir, 'a.img') + ') has 2048 blocks of 512 bytes; the guest knows it as 4096');
      await other.abandon();
      controller.resume();
      await controller.changeNamespace({ kind: 'resize', nsid: 3, sizeBytes: 4 * MiB });
    } finally {
      await controller.close();
    }
  });

  it('a namespace moved onto memory is refused a hand-over as a memory namespace is (a successor would show an empty disk)', async () => {
    dir = temporaryDir('vfiod-ns-handover-');
    const { logger } = memoryLogger();
    const config = controllerConfig({ socketPath: path.join(dir, 'nvme0.sock'), namespaces: [`file:${path.join(dir, 'a.img')}?size=1M`] });
    const controller = await startController(config, logger);
    try {
      await controller.swapBacking({ nsid: 1, uri: 'memory:1M', copy: true }, { onProgress: () => undefined, commit: async () => undefined });
      await expect(controller.quiesce()).rejects.toThrow('memory namespaces (memory:1MiB) cannot be handed over');
    } finally {
      await controller.close();
    }
  });
});

const built = existsSync(path.join(root, 'dist', 'serve', 'crash-guard.js'));

describe.skipIf(!built)('namespaces changed at runtime under vfiod daemon --crash-recovery', () => {
  let dir: string;
  const guests: Guest[] = [];
  afterEach(() => {
    for (const guest of guests.splice(0)) guest.close();
    for (const child of children.splice(0)) child.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('survive a SIGKILL of the data plane, a planned restart and vfiod upgrade: the guest keeps its namespaces, data and connection', async () => {
    dir = temporaryDir('vfiod-ns-crash-');
    const host = standardHost();
    try {
      const { holder, apiSocket, cli } = await startCrashRecoveryDaemon(dir, host);
      const socket = path.join(dir, 'nvme0.sock');
      await cli('controllers', 'create', 'vm1', '--socket', socket, '--namespace', `file:${path.join(dir, 'a.img')}?size=4M`);
      const guest = await attachGuest(socket, guests);
      const driver = guest.driver;
      const isRecovered = (generation: number) => (line: LogLine): boolean =>
        line['msg'] === 'recovered from a crash of the previous data plane' && line['generation'] === generation;
      const dataPlane = (): number => holder.lines.filter((line) => line['msg'] === 'data plane started').at(-1)!['pid'] as number;

      const stateFile = path.join(dir, 'state', 'controllers.json');
      const savedBefore = readFileSync(stateFile, 'utf8');
      let aer = await postAer(driver);
      await cli('controllers', 'attach-namespace', 'vm1', `file:${path.join(dir, 'b.img')}?size=4M`, '--nsid', '3');
      expect((await driver.wait(0, aer, IO_DEADLINE_MS)).dw0).toBe(NOTICE);
      expect(await changedNamespaces(driver)).toEqual([3]); // re-arms notices
      expect((await driver.write(3, 8, pattern(4096, 30), { timeoutMillis: IO_DEADLINE_MS })).status).toBe(Status.SUCCESS);
      aer = await postAer(driver);
      await cli('controllers', 'resize-namespace', 'vm1', '3', '8M');
      // The guest has not read the Changed Namespace List yet: that is in the checkpoint too. And the data plane dies
      // as if before it saved the definition: controllers.json is as before the attach.
      writeFileSync(stateFile, savedBefore);
      process.kill(dataPlane(), 'SIGKILL');
      await holder.waitFor(isRecovered(1), 'recovery after the SIGKILL');
      await holder.waitFor((line) => line['msg'] === 'controller recovered with the namespaces of its checkpoint, now saved as its definition', 'the definition saved again');
      const resaved = JSON.parse(readFileSync(stateFile, 'utf8')) as { controllers: Array<{ config: { namespaces: string[]; nsids: number[] } }> };
      expect(resaved.controllers[0]!.config).toMatchObject({
        namespaces: [`file:${path.join(dir, 'a.img')}?size=4M`, `file:${path.join(dir, 'b.img')}?size=${8 * MiB}`],
        nsids: [1, 3],
      });
      expect((await driver.wait(0, aer, IO_DEADLINE_MS)).dw0).toBe(NOTICE);
      expect(await changedNamespaces(driver)).toEqual([3]);
      expect(await activeNamespaces(driver)).toEqual([1, 3]);
      expect(await namespaceBlocks(driver, 3)).toBe((8 * MiB) / 512);
      expect((await driver.read(3, 8, 8, { timeoutMillis: IO_DEADLINE_MS })).data).toEqual(pattern(4096, 30));

      aer = await postAer(driver);
      await cli('controllers', 'detach-namespace', 'vm1', '1');
      expect((await driver.wait(0, aer, IO_DEADLINE_MS)).dw0).toBe(NOTICE);
      expect(await changedNamespaces(driver)).toEqual([1]);
      holder.process.kill('SIGHUP'); // a planned restart
      await holder.waitFor(isRecovered(2), 'the planned restart');
      expect(await activeNamespaces(driver)).toEqual([3]);
      // The daemon's live upgrade: a new daemon process takes the controllers over from their checkpoints.
      const upgraded = await promisify(execFile)(process.execPath, [bin, 'upgrade', '--daemon', apiSocket], { timeout: 120_000 });
      expect(upgraded.stdout).toMatch(/upgraded the vfiod daemon/);
      await holder.waitFor(isRecovered(3), 'the restart through vfiod upgrade');
      expect(await activeNamespaces(driver)).toEqual([3]);
      expect(await readOneBlock(driver, 1)).toBe(Status.INVALID_NAMESPACE_OR_FORMAT);
      expect((await driver.write(3, (8 * MiB) / 512 - 8, pattern(4096, 31), { timeoutMillis: IO_DEADLINE_MS })).status).toBe(Status.SUCCESS);
      const listed = JSON.parse((await cli('controllers', 'get', 'vm1', '--json')).stdout) as { controller: { namespaces: Array<{ nsid: number; blocks: number }> } };
      expect(listed.controller.namespaces.map((n) => [n.nsid, n.blocks])).toEqual([[3, (8 * MiB) / 512]]);
      expect(await guest.client.waitForClose(200)).toBe(false);
      holder.process.kill('SIGTERM');
      expect(await holder.exited).toBe(0);
    } finally {
      host.cleanup();
    }
  }, 180_000);
});
