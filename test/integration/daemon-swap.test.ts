/**
 * Moving a namespace to another backing while a guest writes (ControllerService.SwapNamespaceBacking and `vfiod
 * controllers swap-backing`), end to end: a daemon (compiled, from dist/: the controller runs in its worker thread)
 * serves a file namespace, the project's vfio-user client writes random blocks through it without a pause while the
 * CLI moves it to another file and prints the progress; afterwards every block the guest reads, and every block of
 * the new file on the host, is what the guest wrote last; no command failed; the guest's Identify data is unchanged;
 * the saved definition names the new file, and a restarted daemon serves it. Requests that cannot work are refused
 * with their reason and change nothing; a move that fails, or that a daemon shutdown stops, leaves the namespace on
 * its old backing with the guest's data.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runControllers } from '../../src/cli/controllers.js';
import { runEvents } from '../../src/cli/events.js';
import { BackingSwap } from '../../src/namespace/backing-swap.js';
import { MemoryNamespace } from '../../src/namespace/memory.js';
import { controllerConfig } from '../../src/serve/config.js';
import { startController, type BackingSwapHooks, type RunningController } from '../../src/serve/controller.js';
import { Status } from '../../src/spec/nvme.js';
import { memoryLogger } from '../../src/util/log.js';
import { sleep } from '../../src/util/sleep.js';
import { temporaryDir } from '../helpers/common.js';
import { distDaemonUnavailable, useFakeHostDaemon } from '../helpers/dist-daemon.js';
import { expectStatus } from '../helpers/daemon-client.js';
import { standardHost } from '../helpers/fake-sysfs.js';
import type { GuestDriver } from '../helpers/guest-driver.js';
import { attachReadyGuest, Guest } from '../helpers/hypervisor.js';
import { children, IO_DEADLINE_MS, startCrashRecoveryDaemon, type LogLine } from '../helpers/vfiod-process.js';

const skipReason = distDaemonUnavailable;
if (skipReason) console.warn(`daemon swap tests skipped: ${skipReason}`);

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const BIG = 256 * MiB;
const BLOCK = 512;
/** Identify Namespace NSUSE (bytes 16-23) follows the allocation, which writes change anyway: not compared. */
const NUSE = [16, 24] as const;

/** Writes random 1-16 block runs one after another until stopped; `model` holds what every byte must be. */
function startWriter(driver: GuestDriver, model: Uint8Array): { stop(): Promise<{ writes: number; longestMs: number; failed: number[] }> } {
  let running = true;
  let writes = 0;
  let longestMs = 0;
  const failed: number[] = [];
  const blocks = model.length / BLOCK;
  const loop = (async () => {
    while (running) {
      const count = 1 + Math.floor(Math.random() * 16);
      const lba = Math.floor(Math.random() * (blocks - count));
      const data = randomBytes(count * BLOCK);
      const started = performance.now();
      const completion = await driver.write(1, lba, data, { timeoutMillis: IO_DEADLINE_MS });
      longestMs = Math.max(longestMs, performance.now() - started);
      if (completion.status !== Status.SUCCESS) failed.push(completion.status);
      else model.set(data, lba * BLOCK);
      writes++;
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { writes, longestMs, failed };
    },
  };
}

/** Every block as the guest reads it, compared with `model` (the offset of the first difference, or -1). */
async function firstDifference(driver: GuestDriver, model: Uint8Array): Promise<number> {
  const step = 256 * 1024;
  for (let offset = 0; offset < model.length; offset += step) {
    const { completion, data } = await driver.read(1, offset / BLOCK, step / BLOCK, { timeoutMillis: IO_DEADLINE_MS });
    expect(completion.status).toBe(Status.SUCCESS);
    const at = Buffer.compare(Buffer.from(data), Buffer.from(model.subarray(offset, offset + step)));
    if (at !== 0) {
      for (let i = 0; i < step; i++) if (data[i] !== model[offset + i]) return offset + i;
    }
  }
  return -1;
}

/** What the guest sees of the controller and namespace 1 (Identify CNS 01h, 00h without NUSE, 03h, 08h). */
async function identities(driver: GuestDriver): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [cns, nsid] of [[0x01, 0], [0x00, 1], [0x03, 1], [0x08, 1]] as const) {
    const { completion, data } = await driver.identify(cns, nsid);
    expect(completion.status).toBe(Status.SUCCESS);
    const copy = Buffer.from(data);
    if (cns === 0x00) copy.fill(0, ...NUSE);
    out[`cns ${cns}`] = copy.toString('hex');
  }
  return out;
}

/** A TCP port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe.skipIf(skipReason)('moving a namespace to another backing (SwapNamespaceBacking)', () => {
  const fixture = useFakeHostDaemon('vfiod-swap-', (dir) => ({ namespaceDirs: [dir, '/dev'] }));
  const { controllers, guests } = fixture;
  const stateDir = (): string => path.join(fixture.dir, 'state');
  const image = (name: string): string => path.join(fixture.dir, name);
  const cli = async (...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    let stdout = '';
    let stderr = '';
    const code = await runControllers([...argv, '--daemon', fixture.daemon.socketPath!], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
    return { code, stdout, stderr };
  };
  const waitOperation = async (name: string) => {
    for (;;) {
      const { operation } = await fixture.client.call('OperationService', 'WaitOperation', { name, timeoutMs: 10_000 });
      if (operation!.done) return operation!;
    }
  };

  it('moves a file namespace to another file under a writer: every block as written last, Identify unchanged, saved, served after a restart', async () => {
    const model = new Uint8Array(randomBytes(SIZE));
    writeFileSync(image('old.img'), model);
    const socketPath = path.join(fixture.dir, 'sw.sock');
    await controllers('CreateController', { id: 'sw', spec: { socketPath, namespaces: [`file:${image('old.img')}`] } });
    const guest = await attachReadyGuest(socketPath, guests);
    const driver = guest.driver;
    const before = await identities(driver);

    const writer = startWriter(driver, model);
    const started = performance.now();
    const moved = await cli('swap-backing', 'sw', '1', `file:${image('new.img')}`);
    const swapMs = performance.now() - started;
    const { writes, longestMs, failed } = await writer.stop();
    expect(moved.code, moved.stderr).toBe(0);
    // The progress the CLI printed while it followed the operation, then the outcome.
    expect(moved.stderr).toMatch(/moving namespace 1 of controller sw to file:.*new\.img \(operations\/[0-9a-f-]+\):/);
    // Every step was an event of the operation, whether or not the CLI polled in time to print it.
    let events = '';
    expect(await runEvents(['--after', '0', '--type', 'operation', '--daemon', fixture.daemon.socketPath!], { stdout: (t) => (events += t), stderr: () => undefined })).toBe(0);
    expect(events).toMatch(/RUNNING .*move namespace 1 of controller sw .*: copying: 0B of 64MiB/);
    expect(events).toMatch(/RUNNING .*: switching: copying the last .* while the namespace's commands wait/);
    expect(events).toMatch(/SUCCEEDED .*move namespace 1 of controller sw .* succeeded/);
    expect(moved.stdout).toMatch(/namespace 1 of controller sw is on file:.*new\.img\?size=67108864: \d+ copy passes, .* copied, its commands waited [\d.]+ ms/);
    const held = Number(/waited ([\d.]+) ms/.exec(moved.stdout)![1]);
    console.log(`swap of ${SIZE / MiB} MiB under a writer: ${swapMs.toFixed(0)} ms, ${writes} writes meanwhile, longest write ${longestMs.toFixed(1)} ms, commands held ${held} ms`);
    expect(failed).toEqual([]);
    expect(writes).toBeGreaterThan(10);

    expect(await identities(driver)).toEqual(before);
    expect(await firstDifference(driver, model)).toBe(-1);
    // On the host: the new file holds it all (the guest's Flush makes the last writes durable), the old one is left.
    expect((await driver.submit(1, { opcode: 0x00, nsid: 1 }, IO_DEADLINE_MS)).status).toBe(Status.SUCCESS);
    expect(Buffer.compare(readFileSync(image('new.img')), model)).toBe(0);

    const uri = `file:${image('new.img')}?size=${SIZE}`;
    const { controller } = await controllers('GetController', { id: 'sw' });
    expect(controller!.spec!.namespaces).toEqual([uri]);
    expect(controller!.namespaces[0]).toMatchObject({ nsid: 1, uri, backend: `file:${image('new.img')}`, blocks: SIZE / BLOCK });
    expect(controller!.stats!.failedCommands).toBe(0);
    const saved = JSON.parse(readFileSync(path.join(stateDir(), 'controllers.json'), 'utf8')) as { controllers: Array<{ id: string; config: { namespaces: string[] } }> };
    expect(saved.controllers.find((c) => c.id === 'sw')!.config.namespaces).toEqual([uri]);
    const { operations } = await fixture.client.call('OperationService', 'ListOperations', {});
    expect(operations[0]).toMatchObject({ kind: 'OPERATION_KIND_SWAP_NAMESPACE_BACKING', state: 'OPERATION_STATE_SUCCEEDED', controllerId: 'sw', nsid: 1, progressPercent: 100 });

    // A restarted daemon serves the new file (the guest's client reconnects as after any daemon restart).
    guest.close();
    guests.splice(guests.indexOf(guest), 1);
    await fixture.restart();
    const again = await controllers('GetController', { id: 'sw' });
    expect(again.controller!.namespaces[0]).toMatchObject({ uri, backend: `file:${image('new.img')}` });
    const next = await attachReadyGuest(socketPath, guests);
    expect(await identities(next.driver)).toEqual(before);
    expect(await firstDifference(next.driver, model)).toBe(-1);
  }, 180_000);

  it('moves a file namespace to a block device (a loop device) under a writer: the device holds every block', async (context) => {
    const MOVED = 16 * MiB;
    writeFileSync(image('loop.img'), new Uint8Array(32 * MiB));
    let device: string;
    try {
      if (process.getuid?.() !== 0) throw new Error('not root');
      device = execFileSync('losetup', ['-f', '--show', image('loop.img')], { encoding: 'utf8' }).trim();
    } catch (error) {
      console.warn(`file -> block device skipped: a loop device needs root and the loop driver (${(error as Error).message})`);
      return context.skip();
    }
    try {
      const model = new Uint8Array(randomBytes(MOVED));
      writeFileSync(image('blk.img'), model);
      const socketPath = path.join(fixture.dir, 'blk.sock');
      await controllers('CreateController', { id: 'blk', spec: { socketPath, namespaces: [`file:${image('blk.img')}`] } });
      const guest = await attachReadyGuest(socketPath, guests);
      const before = await identities(guest.driver);
      const writer = startWriter(guest.driver, model);
      const moved = await cli('swap-backing', 'blk', '1', `file:${device}`);
      const { failed } = await writer.stop();
      expect(moved.code, moved.stderr).toBe(0);
      expect(failed).toEqual([]);
      const uri = `file:${device}?size=${MOVED}`;
      expect((await controllers('GetController', { id: 'blk' })).controller!.namespaces[0]).toMatchObject({ uri, backend: `file:${device}`, blocks: MOVED / BLOCK });
      expect(await identities(guest.driver)).toEqual(before);
      expect(await firstDifference(guest.driver, model)).toBe(-1);
      expect((await guest.driver.submit(1, { opcode: 0x00, nsid: 1 }, IO_DEADLINE_MS)).status).toBe(Status.SUCCESS);
      // Through the loop device into its image: the first 16 MiB are the guest's, the rest untouched.
      const onDisk = readFileSync(image('loop.img'));
      expect(Buffer.compare(onDisk.subarray(0, MOVED), model)).toBe(0);
      expect(onDisk.subarray(MOVED).every((byte) => byte === 0)).toBe(true);
      guest.close();
      guests.splice(guests.indexOf(guest), 1);
      await controllers('DeleteController', { id: 'blk' });
    } finally {
      execFileSync('losetup', ['-d', device]);
    }
  }, 120_000);

  it('refuses what cannot work with its reason, and a move that fails or is stopped leaves the old backing serving', async () => {
    const socketPath = path.join(fixture.dir, 'r.sock');
    const data = new Uint8Array(randomBytes(8 * MiB));
    writeFileSync(image('r.img'), data);
    await controllers('CreateController', { id: 'r', spec: { socketPath, namespaces: [`file:${image('r.img')}`, 'file:' + image('r2.img') + '?size=1M'] } });
    const swap = (nsid: number, uri: string, id = 'r') => controllers('SwapNamespaceBacking', { id, nsid, uri, alreadyCopied: false });

    expect((await expectStatus(swap(1, 'file:' + image('x.img'), 'nope'), 'NOT_FOUND', 'no controller nope')).reason).toBe('CONTROLLER_NOT_FOUND');
    expect((await expectStatus(swap(7, 'file:' + image('x.img')), 'NOT_FOUND', 'has no namespace 7')).reason).toBe('NAMESPACE_NOT_FOUND');
    expect((await expectStatus(swap(1, `file:${image('r.img')}?size=8M`), 'INVALID_ARGUMENT', 'is on')).reason).toBe('SWAP_SAME_BACKING');
    expect((await expectStatus(swap(1, `file:${image('r2.img')}`), 'INVALID_ARGUMENT', 'r2.img')).reason).toBe('NAMESPACE_DUPLICATE');
    expect((await expectStatus(swap(1, `file:${image('small.img')}?size=4M`), 'FAILED_PRECONDITION', 'at least as large')).reason).toBe('SWAP_BACKING_TOO_SMALL');
    expect(existsSync(image('small.img'))).toBe(false);
    expect((await expectStatus(swap(1, 'file:/elsewhere/x.img'), 'INVALID_ARGUMENT', 'namespace directories')).reason).toBe('NAMESPACE_OUTSIDE_NAMESPACE_DIRS');
    expect((await expectStatus(swap(1, 'bogus:x'), 'INVALID_ARGUMENT', 'unknown scheme')).reason).toBe('NAMESPACE_URI_INVALID');

    // Refused once it runs: the operation fails with the reason, the namespace stays where it was.
    const failedWith = async (uri: string): Promise<{ reason: string; message: string }> => {
      const { operation } = await swap(1, uri);
      const done = await waitOperation(operation!.name);
      expect(done.state).toBe('OPERATION_STATE_FAILED');
      return { reason: done.error!.reason, message: done.error!.message };
    };
    mkdirSync(image('a-directory'));
    expect((await expectStatus(swap(1, `file:${image('a-directory')}`), 'INVALID_ARGUMENT', 'is a directory')).reason).toBe('NAMESPACE_BACKING_NOT_STORAGE');
    expect(await failedWith(`file:${image('r.img')}/under-a-file.img`)).toMatchObject({ reason: 'SWAP_BACKING_OPEN_FAILED' });
    const port = await closedPort();
    expect(await failedWith(`nvme-tcp://127.0.0.1:${port}/nqn.2026-12.io.vfiod:none`)).toMatchObject({ reason: 'SWAP_BACKING_UNREACHABLE' });
    writeFileSync(image('other-block-size.img'), new Uint8Array(8 * MiB));
    expect(await failedWith(`file:${image('other-block-size.img')}?block-size=4096`)).toMatchObject({ reason: 'SWAP_BACKING_INCOMPATIBLE' });

    const { operation } = await swap(1, `file:${image('r-new.img')}`);
    const first = await waitOperation(operation!.name);
    expect(first.state, first.error?.message).toBe('OPERATION_STATE_SUCCEEDED');

    // One move at a time per controller, and no other namespace change meanwhile; a shutdown stops the move under
    // way, the old backing serving on. Large enough that the copy is still running for all of that.
    const big = new Uint8Array(randomBytes(BIG));
    writeFileSync(image('big.img'), big);
    const bigSocket = path.join(fixture.dir, 'big.sock');
    await controllers('CreateController', { id: 'big', spec: { socketPath: bigSocket, namespaces: [`file:${image('big.img')}`] } });
    const { operation: stopped } = await swap(1, `file:${image('big-new.img')}`, 'big');
    expect((await expectStatus(swap(1, `file:${image('big-other.img')}`, 'big'), 'FAILED_PRECONDITION', 'is moving to')).reason).toBe('SWAP_ALREADY_RUNNING');
    expect((await expectStatus(controllers('AttachNamespace', { id: 'big', uri: 'file:' + image('big2.img') + '?size=1M', nsid: 0, requestId: '' }), 'FAILED_PRECONDITION', 'is moving to')).reason).toBe('SWAP_ALREADY_RUNNING');
    await fixture.restart();
    const ended = await waitOperation(stopped!.name);
    expect(ended.state).toBe('OPERATION_STATE_FAILED');
    expect(['SWAP_INTERRUPTED', 'OPERATION_INTERRUPTED']).toContain(ended.error!.reason);
    const { controller } = await controllers('GetController', { id: 'big' });
    expect(controller!.spec!.namespaces[0]).toBe(`file:${image('big.img')}`);
    expect(Buffer.compare(readFileSync(image('big.img')), big)).toBe(0);
    const { controller: moved } = await controllers('GetController', { id: 'r' });
    expect(moved!.spec!.namespaces[0]).toBe(`file:${image('r-new.img')}?size=${8 * MiB}`);
    const guest = await attachReadyGuest(socketPath, guests);
    expect(await firstDifference(guest.driver, data)).toBe(-1);
    expect(moved!.stats!.failedCommands).toBe(0);
  }, 180_000);
});

describe.skipIf(skipReason)('a moved namespace under vfiod daemon --crash-recovery', () => {
  let dir: string;
  const guests: Guest[] = [];
  afterEach(() => {
    for (const guest of guests.splice(0)) guest.close();
    for (const child of children.splice(0)) child.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the checkpoint names the new backing once switched: a SIGKILLed data plane recovers onto it, even with the old definition on disk', async () => {
    dir = temporaryDir('vfiod-swap-crash-');
    const host = standardHost();
    try {
      const { holder, apiSocket, cli } = await startCrashRecoveryDaemon(dir, host);
      const socket = path.join(dir, 'nvme0.sock');
      const model = new Uint8Array(randomBytes(8 * MiB));
      writeFileSync(path.join(dir, 'a.img'), model);
      await cli('controllers', 'create', 'vm1', '--socket', socket, '--namespace', `file:${path.join(dir, 'a.img')}`);
      const guest = await attachReadyGuest(socket, guests);
      const stateFile = path.join(dir, 'state', 'controllers.json');
      const savedBefore = readFileSync(stateFile, 'utf8');

      const moved = await cli('controllers', 'swap-backing', 'vm1', '1', `file:${path.join(dir, 'b.img')}`);
      expect(moved.stdout).toMatch(/namespace 1 of controller vm1 is on file:.*b\.img\?size=8388608/);
      const after = new Uint8Array(randomBytes(4096));
      expect((await guest.driver.write(1, 24, after, { timeoutMillis: IO_DEADLINE_MS })).status).toBe(Status.SUCCESS);
      model.set(after, 24 * BLOCK);
      // The data plane dies as if before it saved the definition: only its checkpoint names the new file.
      writeFileSync(stateFile, savedBefore);
      const dataPlane = holder.lines.filter((line) => line['msg'] === 'data plane started').at(-1)!['pid'] as number;
      process.kill(dataPlane, 'SIGKILL');
      await holder.waitFor((line: LogLine) => line['msg'] === 'recovered from a crash of the previous data plane' && line['generation'] === 1, 'recovery after the SIGKILL');
      await holder.waitFor((line) => line['msg'] === 'controller recovered with the namespaces of its checkpoint, now saved as its definition', 'the definition saved again');
      const uri = `file:${path.join(dir, 'b.img')}?size=${8 * MiB}`;
      const resaved = JSON.parse(readFileSync(stateFile, 'utf8')) as { controllers: Array<{ config: { namespaces: string[] } }> };
      expect(resaved.controllers[0]!.config.namespaces).toEqual([uri]);
      expect(await firstDifference(guest.driver, model)).toBe(-1);
      expect(Buffer.compare(readFileSync(path.join(dir, 'b.img')), model)).toBe(0);
      expect(await guest.client.waitForClose(200)).toBe(false);
      holder.process.kill('SIGTERM');
      expect(await holder.exited).toBe(0);
    } finally {
      host.cleanup();
    }
  }, 180_000);
});

/**
 * What serves a namespace once its move is committed, on a controller run in this process (startController, no
 * daemon): the new backing itself takes the stand-in's place when it presents the same to the guest, so its own I/O
 * path serves (a memory namespace's synchronous copies); commands that waited at the stand-in over the commit, or
 * were in flight through it, complete as usual.
 */
describe('the new backing after the switch (an in-process controller)', () => {
  let dir: string | undefined;
  const guests: Guest[] = [];
  const running: RunningController[] = [];
  afterEach(async () => {
    for (const guest of guests.splice(0)) guest.close();
    for (const controller of running.splice(0)) await controller.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });
  const start = async (namespace: string): Promise<{ controller: RunningController; driver: GuestDriver }> => {
    dir = temporaryDir('vfiod-swap-direct-');
    const { logger } = memoryLogger();
    const config = controllerConfig({ socketPath: path.join(dir, 'nvme0.sock'), namespaces: [namespace.replace('DIR', dir)] });
    const controller = await startController(config, logger);
    running.push(controller);
    const guest = await attachReadyGuest(config.socketPath, guests);
    return { controller, driver: guest.driver };
  };
  const quietly: BackingSwapHooks = { onProgress: () => undefined, commit: async () => undefined };

  it('a namespace moved onto memory is served by the memory namespace itself; a write held over the commit completes; every block reads back', async () => {
    const size = 4 * MiB;
    const { controller, driver } = await start(`memory:${size}`);
    const model = new Uint8Array(size);
    const before = await identities(driver);
    const early = new Uint8Array(randomBytes(64 * BLOCK));
    expect((await driver.write(1, 0, early, { timeoutMillis: IO_DEADLINE_MS })).status).toBe(Status.SUCCESS);
    model.set(early, 0);

    const late = new Uint8Array(randomBytes(8 * BLOCK));
    let held: Promise<{ status: number }> | undefined;
    let inFlightAtCommit = 0;
    await controller.swapBacking(
      { nsid: 1, uri: `memory:${size}`, copy: true },
      {
        onProgress: () => undefined,
        commit: async () => {
          // The namespace's commands wait at the stand-in now: this one goes on to the new backing after the switch.
          held = driver.write(1, 100, late, { timeoutMillis: IO_DEADLINE_MS });
          for (let tries = 0; controller.device.controller.inFlightOn(1) === 0 && tries < 2000; tries++) await sleep(1);
          // It waits at the stand-in, not completed: it stays in flight until the switch.
          await sleep(20);
          inFlightAtCommit = controller.device.controller.inFlightOn(1);
        },
      },
    );
    expect(inFlightAtCommit).toBe(1);
    expect((await held!).status).toBe(Status.SUCCESS);
    model.set(late, 100 * BLOCK);

    const served = controller.namespaces[0]!.namespace;
    expect(served).toBeInstanceOf(MemoryNamespace);
    expect(served).not.toBeInstanceOf(BackingSwap);
    // The NVMe controller serves it too: a Read takes the memory namespace's synchronous path.
    const readSync = vi.spyOn(served as MemoryNamespace, 'readSync');
    expect(await firstDifference(driver, model)).toBe(-1);
    expect(readSync).toHaveBeenCalled();
    expect(await identities(driver)).toEqual(before);
  });

  it('a file namespace moved to another file under a writer: the new file serves directly, no command failed, every block as written last', async () => {
    const size = 8 * MiB;
    const { controller, driver } = await start(`file:DIR/old.img?size=${size}`);
    const model = new Uint8Array(size);
    const before = await identities(driver);
    const nvme = controller.device.controller;
    const replace = nvme.replaceNamespace.bind(nvme);
    const inFlightAtReplace: number[] = [];
    vi.spyOn(nvme, 'replaceNamespace').mockImplementation((nsid, namespace) => {
      inFlightAtReplace.push(nvme.inFlightOn(nsid));
      return replace(nsid, namespace);
    });
    const writer = startWriter(driver, model);
    await sleep(20);
    await controller.swapBacking(
      { nsid: 1, uri: `file:${path.join(dir!, 'new.img')}?size=${size}`, copy: true },
      {
        onProgress: () => undefined,
        // Commit once a write waits at the stand-in: it is still in flight through it when the new file replaces it.
        commit: async () => {
          for (let tries = 0; nvme.inFlightOn(1) === 0 && tries < 1000; tries++) await sleep(1);
        },
      },
    );
    // Installing the stand-in, then the new file in its place with the held write still in flight through the stand-in.
    expect(inFlightAtReplace).toHaveLength(2);
    expect(inFlightAtReplace[1]).toBeGreaterThan(0);
    await sleep(20);
    const { writes, failed } = await writer.stop();
    expect(failed).toEqual([]);
    expect(writes).toBeGreaterThan(0);
    const served = controller.namespaces[0]!.namespace;
    expect(served).not.toBeInstanceOf(BackingSwap);
    expect(served.description).toBe(`file:${path.join(dir!, 'new.img')}`);
    expect(await firstDifference(driver, model)).toBe(-1);
    expect(await identities(driver)).toEqual(before);
  });

  it('a live upgrade asked for while a move onto memory commits is refused once the move has landed there', async () => {
    const size = 4 * MiB;
    const { controller } = await start(`file:DIR/old.img?size=${size}`);
    let handover: Promise<void> | undefined;
    await controller.swapBacking(
      { nsid: 1, uri: `memory:${size}`, copy: true },
      {
        onProgress: () => undefined,
        // Past its last cancellation point: the upgrade's cancel cannot stop it, only wait for it.
        commit: async () => {
          handover = controller.quiesce();
          handover.catch(() => undefined);
          await sleep(20);
        },
      },
    );
    // A successor would present an empty disk: the memory namespace cannot be handed over.
    await expect(handover).rejects.toThrow(/memory namespaces \(memory:.*\) cannot be handed over/);
  });

  it('a thin file namespace moved onto memory keeps the stand-in, so Identify does not change (memory is not thin-provisioned)', async () => {
    const size = 4 * MiB;
    const { controller, driver } = await start(`file:DIR/old.img?size=${size}`);
    const thin = controller.namespaces[0]!.namespace.supportsDeallocate;
    const before = await identities(driver);
    const data = new Uint8Array(randomBytes(32 * BLOCK));
    expect((await driver.write(1, 7, data, { timeoutMillis: IO_DEADLINE_MS })).status).toBe(Status.SUCCESS);
    await controller.swapBacking({ nsid: 1, uri: `memory:${size}`, copy: true }, quietly);
    // Without the addon a file is not thin either: the memory namespace then takes its place.
    expect(controller.namespaces[0]!.namespace instanceof BackingSwap).toBe(thin);
    expect(await identities(driver)).toEqual(before);
    const { completion, data: read } = await driver.read(1, 7, 32, { timeoutMillis: IO_DEADLINE_MS });
    expect(completion.status).toBe(Status.SUCCESS);
    expect(Buffer.compare(Buffer.from(read), Buffer.from(data))).toBe(0);
  });
});
