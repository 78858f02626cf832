/**
 * I/O rate limits through the control API and the CLI, end to end (issue 13 §4): a daemon (compiled, from dist/:
 * controllers run in worker threads) serves controllers, the project's vfio-user client drives them as a guest
 * would, and a limited namespace or controller must not start more than its limit allows: for N commands submitted
 * at once against a rate R with a burst B, the last completes no sooner than (N - B - 1) / R seconds after the
 * first was submitted (an upper bound on the rate, which a busy machine can only make safer). Every command
 * completes successfully (a limited guest waits, it gets no error). Limits set at creation, changed at runtime,
 * removed; refused with a precise reason; `vfiod serve --limit` the same; saved, so a daemon restart brings them back, and under
 * `vfiod daemon --crash-recovery` they survive a SIGKILL of the data plane, a planned restart and
 * `vfiod upgrade --daemon`.
 */
import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import type { RequestOf, RpcName } from '../../src/daemon/proto.js';
import { Status } from '../../src/spec/nvme.js';
import { temporaryDir } from '../helpers/common.js';
import { distDaemonUnavailable, useFakeHostDaemon } from '../helpers/dist-daemon.js';
import { expectStatus } from '../helpers/daemon-client.js';
import { standardHost } from '../helpers/fake-sysfs.js';
import type { GuestDriver } from '../helpers/guest-driver.js';
import { attachReadyGuest, type Guest } from '../helpers/hypervisor.js';
import { bin, children, IO_DEADLINE_MS, isListening, serve, startCrashRecoveryDaemon, type LogLine } from '../helpers/vfiod-process.js';

const skipReason = distDaemonUnavailable;
if (skipReason) console.warn(`daemon rate-limit tests skipped: ${skipReason}`);

const KiB = 1024;
/** The daemon's stats sampling period here (throttled counts are read from the stats). */
const STATS_INTERVAL_MS = 200;
/** Commands per timed run: fewer than the I/O queue's 64 entries, so all are submitted at once. */
const COMMANDS = 48;

/**
 * Submits `count` reads of `bytes` each to namespace `nsid` at once (one doorbell) and waits for all of them.
 * Returns the seconds from the submission to the last completion; every one must succeed.
 */
async function timedReads(driver: GuestDriver, nsid: number, count: number, bytes = 4 * KiB): Promise<number> {
  const blockSize = await driver.blockSize(nsid);
  const buffers = Array.from({ length: count }, () => driver.alloc(bytes));
  const pointers = buffers.map((buffer) => driver.dataPointer(buffer, bytes, 'prp'));
  const start = performance.now();
  const cids = pointers.map((pointer, index) =>
    driver.place(1, { opcode: 0x02, nsid, prp1: pointer.prp1, prp2: pointer.prp2, cdw10: index * (bytes / blockSize), cdw12: bytes / blockSize - 1 }),
  );
  await driver.ringSubmission(1);
  const statuses: number[] = [];
  for (const cid of cids) statuses.push((await driver.wait(1, cid, IO_DEADLINE_MS)).status);
  const seconds = (performance.now() - start) / 1000;
  for (const pointer of pointers) pointer.release();
  for (const buffer of buffers) driver.free(buffer);
  expect(statuses.filter((status) => status !== Status.SUCCESS)).toEqual([]);
  return seconds;
}

/** The least time `count` commands can take under `rate` with `burst` (the bound a limiter must keep). */
const leastSeconds = (count: number, rate: number, burst: number): number => (count - burst - 1) / rate;

describe.skipIf(skipReason)('rate limits of a controller (ControllerService)', () => {
  const fixture = useFakeHostDaemon('vfiod-limits-', () => ({ statsIntervalMs: STATS_INTERVAL_MS }));
  const { controllers, guests } = fixture;
  /** The controller's count of commands its limits held back, once the stats show at least `least` (or after 10 s). */
  const throttledTotal = async (id: string, least: number): Promise<number> => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const total = Number((await controllers('GetController', { id }))['controller']!.stats!.throttledCommandsTotal);
      if (total >= least || Date.now() > deadline) return total;
      await new Promise((resolve) => setTimeout(resolve, STATS_INTERVAL_MS));
    }
  };

  it('a namespace limited at creation stays under it, then a runtime change takes effect; limits survive a daemon restart', async () => {
    const socketPath = path.join(fixture.dir, 'q1.sock');
    const files = [`file:${path.join(fixture.dir, 'a.img')}?size=8M`, `file:${path.join(fixture.dir, 'b.img')}?size=8M`];
    const created = await controllers('CreateController', {
      id: 'q1',
      spec: { socketPath, namespaces: files, limits: { namespaces: [{ nsid: 1, limits: { iops: 200, burstIos: 8 } }] } },
    });
    expect(created['controller']!.spec!.limits).toMatchObject({ namespaces: [{ nsid: 1, limits: { iops: 200, burstIos: 8, bytesPerSecond: 0 } }] });
    let guest = await attachReadyGuest(socketPath, guests);

    const limited = await timedReads(guest.driver, 1, COMMANDS);
    expect(limited).toBeGreaterThanOrEqual(leastSeconds(COMMANDS, 200, 8));
    expect(limited).toBeLessThan(20); // it does get served
    // The wait was the limiter's, not a slow machine's: all but the burst (and the first) were held back.
    expect(await throttledTotal('q1', COMMANDS - 9)).toBeGreaterThanOrEqual(COMMANDS - 9);
    // Namespace 2 is not limited: none of its commands is held back (the total stays below one queue's worth).
    await timedReads(guest.driver, 2, COMMANDS);
    await new Promise((resolve) => setTimeout(resolve, 3 * STATS_INTERVAL_MS));
    expect(await throttledTotal('q1', 0)).toBeLessThan(COMMANDS);

    // Runtime: the whole set is replaced: the controller gets a bandwidth limit, namespace 1 none of its own.
    const changed = await controllers('SetControllerLimits', { id: 'q1', limits: { controller: { bytesPerSecond: 512 * KiB, burstBytes: 64 * KiB } } });
    expect(changed['controller']!.spec!.limits).toMatchObject({ controller: { bytesPerSecond: 512 * KiB, burstBytes: 64 * KiB }, namespaces: [] });
    const bandwidth = await timedReads(guest.driver, 2, 32, 16 * KiB); // 512 KiB at 512 KiB/s after a 64 KiB burst
    expect(bandwidth).toBeGreaterThanOrEqual((32 * 16 * KiB - 64 * KiB - 16 * KiB) / (512 * KiB));

    const saved = JSON.parse(readFileSync(path.join(fixture.dir, 'state', 'controllers.json'), 'utf8')) as { controllers: Array<{ config: { ioLimits?: unknown } }> };
    expect(saved.controllers[0]!.config.ioLimits).toEqual({ controller: { bytesPerSecond: 512 * KiB, burstBytes: 64 * KiB } });

    // A restart of the daemon brings the controller back with its limits, enforced.
    guest.close();
    guests.splice(guests.indexOf(guest), 1);
    await fixture.restart();
    const restarted = (await controllers('GetController', { id: 'q1' }))['controller']!;
    expect(restarted.spec!.limits).toMatchObject({ controller: { bytesPerSecond: 512 * KiB, burstBytes: 64 * KiB } });
    guest = await attachReadyGuest(socketPath, guests);
    expect(await timedReads(guest.driver, 1, 32, 16 * KiB)).toBeGreaterThanOrEqual((32 * 16 * KiB - 64 * KiB - 16 * KiB) / (512 * KiB));

    // No limits: the spec says so, and the file no longer has them.
    const removed = await controllers('SetControllerLimits', { id: 'q1', limits: {} });
    expect(removed['controller']!.spec!.limits ?? null).toBeNull();
    const resaved = JSON.parse(readFileSync(path.join(fixture.dir, 'state', 'controllers.json'), 'utf8')) as { controllers: Array<{ config: { ioLimits?: unknown } }> };
    expect(resaved.controllers[0]!.config.ioLimits).toBeUndefined();
    await timedReads(guest.driver, 1, COMMANDS);
  }, 120_000);

  it('refuses bad limits with a precise reason, and nothing changes', async () => {
    const socketPath = path.join(fixture.dir, 'q2.sock');
    await controllers('CreateController', { id: 'q2', spec: { socketPath, namespaces: ['memory:4M', 'memory:4M'], limits: { controller: { iops: 1000 } } } });
    const refused = async <M extends RpcName<'ControllerService'>>(rpc: M, request: RequestOf<'ControllerService', M>, code: string, reason: string, ...mentions: string[]): Promise<Record<string, string>> => {
      const error = await expectStatus(controllers(rpc, request), code as never, ...mentions);
      expect(error.reason, error.details).toBe(reason);
      return error.metadata ?? {};
    };
    const absurd = await refused('SetControllerLimits', { id: 'q2', limits: { controller: { iops: 1e12 } } }, 'INVALID_ARGUMENT', 'IO_LIMIT_INVALID', 'iops must be an integer from 0 to 100000000');
    expect(absurd).toMatchObject({ field: 'limits.controller.iops', controller_id: 'q2' });
    // (A negative cannot be sent: the fields are uint64. The CLI refuses one, see below.)
    await refused('SetControllerLimits', { id: 'q2', limits: { controller: { bytesPerSecond: 2 ** 45 } } }, 'INVALID_ARGUMENT', 'IO_LIMIT_INVALID', 'bytes_per_second must be an integer from 0 to 17592186044416');
    await refused('SetControllerLimits', { id: 'q2', limits: { namespaces: [{ nsid: 2, limits: { burstIos: 5 } }] } }, 'INVALID_ARGUMENT', 'IO_LIMIT_INVALID', 'namespace 2: burst_ios needs an iops limit');
    await refused('SetControllerLimits', { id: 'q2', limits: { namespaces: [{ nsid: 2, limits: { iops: 5 } }, { nsid: 2, limits: { iops: 6 } }] } }, 'INVALID_ARGUMENT', 'IO_LIMIT_INVALID', 'namespace 2 is given limits twice');
    const unknownNsid = await refused('SetControllerLimits', { id: 'q2', limits: { namespaces: [{ nsid: 7, limits: { iops: 5 } }] } }, 'NOT_FOUND', 'NAMESPACE_NOT_FOUND', 'controller q2 has no namespace 7');
    expect(unknownNsid).toMatchObject({ nsid: '7' });
    await refused('SetControllerLimits', { id: 'nope', limits: {} }, 'NOT_FOUND', 'CONTROLLER_NOT_FOUND', 'no controller nope');
    await refused('CreateController', { id: 'q3', spec: { socketPath: path.join(fixture.dir, 'q3.sock'), namespaces: ['memory:1M'], limits: { namespaces: [{ nsid: 2, limits: { iops: 5 } }] } } }, 'NOT_FOUND', 'NAMESPACE_NOT_FOUND', 'no namespace 2');
    const burst = await refused('CreateController', { id: 'q3', spec: { socketPath: path.join(fixture.dir, 'q3.sock'), namespaces: ['memory:1M'], limits: { controller: { burstBytes: 4096 } } } }, 'INVALID_ARGUMENT', 'IO_LIMIT_INVALID', 'controller: burst_bytes needs a bytes_per_second limit');
    expect(burst).toMatchObject({ field: 'spec.limits.controller.burst_bytes' });
    await expectStatus(controllers('GetController', { id: 'q3' }), 'NOT_FOUND');
    // The limits are as they were.
    const info = (await controllers('GetController', { id: 'q2' }))['controller']!;
    expect(info.spec!.limits).toMatchObject({ controller: { iops: 1000, bytesPerSecond: 0 }, namespaces: [] });
  });

  it('the CLI creates with limits, sets, shows and removes them; a bad --limit is a usage error', async () => {
    const run = (...args: string[]) => promisify(execFile)(process.execPath, [bin, ...args, '--daemon', fixture.daemon.socketPath!], { timeout: 60_000 });
    await run('controllers', 'create', 'c1', '--socket', path.join(fixture.dir, 'c1.sock'), '--namespace', 'memory:4M', '--namespace', 'memory:4M', '--limit', 'iops=5000', '--limit', '2:bandwidth=10M,burst-bytes=1M');
    let shown = (await run('controllers', 'get', 'c1')).stdout;
    expect(shown).toMatch(/limits: +controller 5000 IOPS; namespace 2 10\.0MiB\/s, burst 1\.0MiB \(reads and writes together\)/);
    const set = (await run('controllers', 'set-limits', 'c1', '--limit', '1:iops=100,burst-ios=10')).stdout;
    expect(set).toMatch(/set the rate limits of controller c1/);
    expect(set).toMatch(/limits: +namespace 1 100 IOPS, burst 10 I\/Os/);
    expect((await run('controllers', 'set-limits', 'c1')).stdout).toMatch(/removed the rate limits of controller c1/);
    shown = (await run('controllers', 'get', 'c1')).stdout;
    expect(shown).not.toMatch(/limits:/);
    const bad = await run('controllers', 'set-limits', 'c1', '--limit', 'iops=-5').then(() => undefined, (error: { code: number; stderr: string }) => error);
    expect(bad?.code).toBe(2);
    expect(bad?.stderr).toMatch(/--limit 'iops=-5': iops '-5' is not a whole number/);
    const unknown = await run('controllers', 'set-limits', 'c1', '--limit', '3:iops=5').then(() => undefined, (error: { code: number; stderr: string }) => error);
    expect(unknown?.stderr).toMatch(/NOT_FOUND NAMESPACE_NOT_FOUND: controller c1 has no namespace 3/);
  }, 60_000);
});

describe.skipIf(skipReason)('rate limits under vfiod daemon --crash-recovery', () => {
  let dir: string;
  const guests: Guest[] = [];
  afterEach(() => {
    for (const guest of guests.splice(0)) guest.close();
    for (const child of children.splice(0)) child.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('survive a SIGKILL of the data plane, a planned restart and vfiod upgrade --daemon, enforced each time', async () => {
    dir = temporaryDir('vfiod-limits-crash-');
    const host = standardHost();
    try {
      const { holder, apiSocket, cli } = await startCrashRecoveryDaemon(dir, host);
      const socket = path.join(dir, 'nvme0.sock');
      await cli('controllers', 'create', 'vm1', '--socket', socket, '--namespace', `file:${path.join(dir, 'a.img')}?size=4M`);
      await cli('controllers', 'set-limits', 'vm1', '--limit', 'iops=150,burst-ios=4');
      const guest = await attachReadyGuest(socket, guests);
      const isRecovered = (generation: number) => (line: LogLine): boolean =>
        line['msg'] === 'recovered from a crash of the previous data plane' && line['generation'] === generation;
      const dataPlane = (): number => holder.lines.filter((line) => line['msg'] === 'data plane started').at(-1)!['pid'] as number;
      const enforced = async (): Promise<void> => {
        expect(await timedReads(guest.driver, 1, 32)).toBeGreaterThanOrEqual(leastSeconds(32, 150, 4));
        const listed = JSON.parse((await cli('controllers', 'get', 'vm1', '--json')).stdout) as { controller: { spec: { limits: unknown } } };
        expect(listed.controller.spec.limits).toMatchObject({ controller: { iops: 150, burstIos: 4 } });
      };
      await enforced();

      process.kill(dataPlane(), 'SIGKILL');
      await holder.waitFor(isRecovered(1), 'recovery after the SIGKILL');
      await enforced();
      holder.process.kill('SIGHUP'); // a planned restart
      await holder.waitFor(isRecovered(2), 'the planned restart');
      await enforced();
      const upgraded = await promisify(execFile)(process.execPath, [bin, 'upgrade', '--daemon', apiSocket], { timeout: 120_000 });
      expect(upgraded.stdout).toMatch(/upgraded the vfiod daemon/);
      await holder.waitFor(isRecovered(3), 'the restart through vfiod upgrade');
      await enforced();
      expect(await guest.client.waitForClose(200)).toBe(false);
      holder.process.kill('SIGTERM');
      expect(await holder.exited).toBe(0);
    } finally {
      host.cleanup();
    }
  }, 180_000);
});

describe.skipIf(skipReason)('vfiod serve --limit', () => {
  let dir: string;
  const guests: Guest[] = [];
  afterEach(() => {
    for (const guest of guests.splice(0)) guest.close();
    for (const child of children.splice(0)) child.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('limits a namespace from the command line; a bad --limit is refused before anything starts', async () => {
    dir = temporaryDir('vfiod-serve-limits-');
    const socket = path.join(dir, 'nvme0.sock');
    const served = serve(['--socket', socket, '--namespace', 'memory:4M', '--namespace', 'memory:4M', '--limit', '2:iops=100,burst-ios=2']);
    await served.waitFor(isListening, 'listening');
    const guest = await attachReadyGuest(socket, guests);
    expect(await timedReads(guest.driver, 2, 16)).toBeGreaterThanOrEqual(leastSeconds(16, 100, 2));
    await timedReads(guest.driver, 1, COMMANDS);

    const refused = serve(['--socket', path.join(dir, 'nvme1.sock'), '--namespace', 'memory:4M', '--limit', '2:iops=100']);
    expect(await refused.exited).toBe(2);
    expect(JSON.stringify(refused.lines)).toMatch(/--limit '2:iops=100': there is no namespace 2 \(the namespaces are 1\)/);
    const absurd = serve(['--socket', path.join(dir, 'nvme1.sock'), '--namespace', 'memory:4M', '--limit', 'bandwidth=32T']);
    expect(await absurd.exited).toBe(2);
    expect(JSON.stringify(absurd.lines)).toMatch(/--limit: controller: bytesPerSecond must be an integer from 0 to 17592186044416/);
  }, 60_000);
});
