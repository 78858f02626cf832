/**
 * I/O rate limits (issue 13 §4): the token bucket and the limiter on an injected clock and timer (deterministic),
 * then a controller with limits, driven by the guest driver in real time: what a limited namespace or controller
 * starts stays under its bound, unlimited namespaces and admin commands are not held back, limits change at runtime,
 * a reset drops what waits, a quiesce runs it, and bad limits are refused.
 */
import { describe, expect, it } from 'vitest';
import { performance } from 'node:perf_hooks';
import { checkIoLimits } from '../../../src/nvme/controller.js';
import { dataBytes } from '../../../src/nvme/io.js';
import { IoLimiter, TokenBucket } from '../../../src/nvme/io-limits.js';
import { IoOpcode, Status } from '../../../src/spec/nvme.js';
import { MemoryNamespace } from '../../../src/namespace/memory.js';
import { createHarness, namespaceIds, settle, type Harness } from '../../helpers/nvme-harness.js';

/** A clock and a one-shot timer the test moves by hand. */
function fakeTime(): {
  now: () => number;
  advance: (ms: number) => void;
  timers: Array<{ at: number; callback: () => void }>;
  wakes: () => number;
  /** Timers set so far. */
  armed: number;
} {
  let time = 1000;
  let wakes = 0;
  const timers: Array<{ at: number; callback: () => void }> = [];
  return {
    armed: 0,
    now: () => time,
    advance(ms: number) {
      time += ms;
      for (const timer of timers.splice(0).filter((t) => t.at <= time || (timers.push(t), false))) {
        wakes++;
        timer.callback();
      }
    },
    timers,
    wakes: () => wakes,
  };
}

function limiterOn(time: ReturnType<typeof fakeTime>, limits: ConstructorParameters<typeof IoLimiter<string>>[0], woken: string[] = []): IoLimiter<string> {
  return new IoLimiter<string>(limits, {
    now: time.now,
    wake: () => woken.push('wake'),
    setTimer: (callback, ms) => {
      const timer = { at: time.now() + ms, callback };
      time.armed++;
      time.timers.push(timer);
      return timer;
    },
    clearTimer: (timer) => {
      const index = time.timers.indexOf(timer as { at: number; callback: () => void });
      if (index >= 0) time.timers.splice(index, 1);
    },
  });
}

describe('token bucket', () => {
  it('starts full, refills at its rate up to its capacity, and goes into debt for a take larger than it holds', () => {
    const bucket = new TokenBucket(100, 10, 0);
    expect(bucket.level(0)).toBe(10);
    expect(bucket.waitMs(0, 10)).toBe(0);
    expect(bucket.waitMs(0, 25)).toBe(0); // more than the capacity: a full bucket will do
    bucket.take(25);
    expect(bucket.level(0)).toBe(-15);
    expect(bucket.waitMs(0, 1)).toBeCloseTo(161, 5); // 16 tokens at 100/s, plus a millisecond of timer margin
    expect(bucket.level(100)).toBeCloseTo(-5, 9);
    expect(bucket.waitMs(159, 1)).toBeCloseTo(2, 9);
    expect(bucket.waitMs(160, 1)).toBe(0);
    expect(bucket.level(10_000)).toBe(10);
  });

  it('a clock that goes backwards changes nothing', () => {
    const bucket = new TokenBucket(1000, 5, 100);
    bucket.take(5);
    expect(bucket.level(50)).toBe(0);
    expect(bucket.level(101)).toBeCloseTo(1, 9);
  });
});

describe('limiter (injected clock)', () => {
  it('an IOPS limit: the burst goes at once, then one command per 1/rate, in order; the timer wakes the controller', () => {
    const time = fakeTime();
    const woken: string[] = [];
    const limiter = limiterOn(time, { controller: { iops: 100, burstIos: 3 } }, woken);
    const started: string[] = [];
    for (const name of ['a', 'b', 'c', 'd', 'e']) if (limiter.admit(name, 1, 4096)) started.push(name);
    expect(started).toEqual(['a', 'b', 'c']);
    expect(limiter.parkedCount).toBe(2);
    expect(time.timers).toHaveLength(1);
    limiter.release((name) => started.push(name));
    expect(started).toHaveLength(3); // nothing refilled yet
    time.advance(10);
    expect(woken).toEqual([]); // the timer has a millisecond of margin
    time.advance(1);
    expect(woken).toEqual(['wake']);
    limiter.release((name) => started.push(name));
    expect(started).toEqual(['a', 'b', 'c', 'd']);
    time.advance(10);
    limiter.release((name) => started.push(name));
    expect(started).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(limiter.parkedCount).toBe(0);
    expect(time.timers).toHaveLength(0);
  });

  it('admit takes the caller\'s clock reading: no clock read when it lets the command go; the clock decides when it does not', () => {
    const time = fakeTime();
    let reads = 0;
    const limiter = new IoLimiter<string>({ controller: { iops: 100, burstIos: 1 } }, { now: () => (reads++, time.now()), wake: () => undefined });
    const passStart = time.now();
    reads = 0;
    expect(limiter.admit('a', 1, 0, passStart)).toBe(true);
    expect(reads).toBe(0);
    time.advance(10); // a token back by the clock, none by the older reading
    expect(limiter.admit('b', 1, 0, passStart)).toBe(true); // as with a fresh reading
    expect(reads).toBe(1);
    expect(limiter.admit('c', 1, 0, passStart)).toBe(false); // the clock holds it back too
    expect(limiter.parkedCount).toBe(1);
    limiter.close();
  });

  it('a bandwidth limit charges data bytes; a command larger than the burst still goes once the bucket is full', () => {
    const time = fakeTime();
    const limiter = limiterOn(time, { controller: { bytesPerSecond: 1 << 20, burstBytes: 64 << 10 } });
    expect(limiter.admit('big', 1, 1 << 20)).toBe(true); // a full bucket lets any one command go
    expect(limiter.admit('next', 1, 4096)).toBe(false); // 960 KiB of debt: about 0.94 s
    const started: string[] = [];
    time.advance(900);
    limiter.release((name) => started.push(name));
    expect(started).toEqual([]);
    time.advance(50);
    limiter.release((name) => started.push(name));
    expect(started).toEqual(['next']);
  });

  it('a namespace limit holds back that namespace only; a new command queues behind parked ones of its scope', () => {
    const time = fakeTime();
    const limiter = limiterOn(time, { namespaces: [{ nsid: 2, iops: 10, burstIos: 1 }] });
    expect([limiter.limited(1), limiter.limited(2)]).toEqual([false, true]);
    expect(limiter.admit('ns2-a', 2, 512)).toBe(true);
    expect(limiter.admit('ns2-b', 2, 512)).toBe(false);
    for (let index = 0; index < 100; index++) expect(limiter.admit(`ns1-${index}`, 1, 512)).toBe(true);
    time.advance(150); // a token is back, but ns2-b came first
    expect(limiter.admit('ns2-c', 2, 512)).toBe(false);
    const started: string[] = [];
    limiter.release((name) => started.push(name));
    expect(started).toEqual(['ns2-b']);
    expect(limiter.parkedCount).toBe(1);
  });

  it('a command held back by its namespace does not hold back another namespace\'s under the same controller limit', () => {
    const time = fakeTime();
    const limiter = limiterOn(time, { controller: { iops: 1000, burstIos: 100 }, namespaces: [{ nsid: 1, iops: 1, burstIos: 1 }] });
    expect(limiter.admit('ns1-a', 1, 512)).toBe(true);
    expect(limiter.admit('ns1-b', 1, 512)).toBe(false); // namespace 1 is empty for a second
    expect(limiter.admit('ns2-a', 2, 512)).toBe(false); // behind it in the controller's queue until the next release
    expect(time.timers[0]!.at - time.now()).toBeLessThanOrEqual(5); // which is the next release period
    time.advance(5);
    const started: string[] = [];
    limiter.release((name) => started.push(name));
    expect(started).toEqual(['ns2-a']);
    expect(limiter.parkedCount).toBe(1);
    time.advance(1000);
    limiter.release((name) => started.push(name));
    expect(started).toEqual(['ns2-a', 'ns1-b']);
  });

  it('a release scans no further than the scopes left waiting need (a queue\'s worth parked per scope)', () => {
    const time = fakeTime();
    const limiter = limiterOn(time, { namespaces: [{ nsid: 1, iops: 10, burstIos: 1 }, { nsid: 2, iops: 10, burstIos: 1 }] });
    let started = 0;
    for (let index = 0; index < 20_000; index++) limiter.admit(`c${index}`, 1 + (index % 2), 512);
    for (let round = 0; round < 200; round++) {
      time.advance(100);
      limiter.release(() => started++);
    }
    expect(started).toBe(400); // one per namespace per 100 ms
    // Each release looks at the two it starts and at the next command of each namespace, which it holds back: 800
    // steps, not the 4 million of a scan over everything parked.
    expect(limiter.releaseSteps).toBe(200 * 4);
  });

  it('a release that starts nothing leaves the pending timer as it is (a pass while commands wait arms none)', () => {
    const time = fakeTime();
    const woken: string[] = [];
    const limiter = limiterOn(time, { controller: { iops: 10, burstIos: 1 } }, woken);
    expect([limiter.admit('a', 1, 0), limiter.admit('b', 1, 0)]).toEqual([true, false]); // b may go in 100 ms
    const armed = time.armed;
    const timer = time.timers[0];
    const started: string[] = [];
    for (let ms = 1; ms < 100; ms++) {
      time.advance(1);
      limiter.release((name) => started.push(name));
    }
    expect(started).toEqual([]);
    expect(time.armed).toBe(armed);
    expect(time.timers).toEqual([timer]);
    time.advance(1);
    limiter.release((name) => started.push(name));
    expect(started).toEqual(['b']); // by the pass, before the timer's millisecond of margin
    expect(time.timers).toEqual([]);
    expect(woken).toEqual([]);
  });

  it('forgetting a detached namespace drops its limits: its parked commands start, a later one goes at once', () => {
    const time = fakeTime();
    const limiter = limiterOn(time, { namespaces: [{ nsid: 1, iops: 10, burstIos: 1 }, { nsid: 2, iops: 10, burstIos: 1 }] });
    const started: string[] = [];
    for (const name of ['a', 'b', 'c']) if (limiter.admit(name, 1, 4096)) started.push(name);
    for (const name of ['x', 'y']) if (limiter.admit(name, 2, 4096)) started.push(name);
    expect(started).toEqual(['a', 'x']);
    limiter.forgetNamespace(1);
    expect([limiter.limited(1), limiter.limited(2)]).toEqual([false, true]);
    limiter.release((name) => started.push(name));
    expect(started).toEqual(['a', 'x', 'b', 'c']);
    expect(limiter.admit('d', 1, 4096)).toBe(true);
    // Namespace 2 is still limited, its bucket as it was.
    expect(limiter.parkedCount).toBe(1);
    expect(limiter.admit('z', 2, 4096)).toBe(false);
    limiter.forgetNamespace(7); // not limited: nothing happens
    expect(limiter.parkedCount).toBe(2);
  });

  it('a controller limit and a namespace limit both apply; the stricter one decides', () => {
    const time = fakeTime();
    const limiter = limiterOn(time, { controller: { iops: 1000, burstIos: 1000 }, namespaces: [{ nsid: 1, iops: 10, burstIos: 2 }] });
    expect([limiter.limited(1), limiter.limited(2)]).toEqual([true, true]); // the controller's limit covers every namespace
    const admitted = Array.from({ length: 5 }, (_, index) => limiter.admit(`c${index}`, 1, 512)).filter(Boolean).length;
    expect(admitted).toBe(2);
    // Over one simulated second, namespace 1 starts at most rate * t + burst.
    let started = admitted;
    for (let ms = 0; ms < 1000; ms += 5) {
      time.advance(5);
      limiter.admit(`more${ms}`, 1, 512) && started++;
      limiter.release(() => started++);
    }
    expect(started).toBeLessThanOrEqual(10 + 2 + 1);
    expect(started).toBeGreaterThanOrEqual(10);
  });

  it('changing the limits re-buckets parked commands; drain hands every parked one back and stops the timer', () => {
    const time = fakeTime();
    const limiter = limiterOn(time, { controller: { iops: 1, burstIos: 1 } });
    limiter.admit('a', 1, 0);
    for (const name of ['b', 'c', 'd']) expect(limiter.admit(name, 1, 0)).toBe(false);
    limiter.set({ namespaces: [{ nsid: 1, iops: 1000, burstIos: 2 }] });
    const started: string[] = [];
    limiter.release((name) => started.push(name));
    expect(started).toEqual(['b', 'c']);
    const drained: string[] = [];
    limiter.drain((name) => drained.push(name));
    expect(drained).toEqual(['d']);
    expect(time.timers).toHaveLength(0);
  });

  it('default bursts: a tenth of a second at the rate (at least one command, at least 4 KiB)', () => {
    const time = fakeTime();
    const limiter = limiterOn(time, { controller: { iops: 50 } });
    expect(Array.from({ length: 10 }, (_, i) => limiter.admit(`x${i}`, 1, 0)).filter(Boolean)).toHaveLength(5);
    const small = limiterOn(fakeTime(), { controller: { iops: 1 } });
    expect([small.admit('a', 1, 0), small.admit('b', 1, 0)]).toEqual([true, false]);
  });

  it('data bytes: Read, Write and Compare move NLB blocks; other commands, and ones that will fail at once, none', () => {
    const sqe = new DataView(new ArrayBuffer(64));
    const namespace = { blockSize: 512, blockCount: 1024, maxTransferBytes: 0 };
    sqe.setUint32(48, 7, true);
    for (const [opcode, bytes] of [[IoOpcode.READ, 4096], [IoOpcode.WRITE, 4096], [IoOpcode.COMPARE, 4096], [IoOpcode.WRITE_ZEROES, 0], [IoOpcode.FLUSH, 0], [IoOpcode.DATASET_MANAGEMENT, 0]] as const) {
      sqe.setUint8(0, opcode);
      expect(dataBytes(sqe, namespace, 0)).toBe(bytes);
    }
    sqe.setUint8(0, IoOpcode.READ);
    expect(dataBytes(sqe, undefined, 0)).toBe(0); // no such namespace
    expect(dataBytes(sqe, namespace, 2048)).toBe(0); // over MDTS
    expect(dataBytes(sqe, namespace, 4096)).toBe(4096);
    expect(dataBytes(sqe, { ...namespace, maxTransferBytes: 2048 }, 0)).toBe(0); // over the namespace's own limit
    sqe.setUint32(40, 1017, true); // blocks 1017..1024: one past the end
    expect(dataBytes(sqe, namespace, 0)).toBe(0);
    sqe.setUint32(40, 1016, true);
    expect(dataBytes(sqe, namespace, 0)).toBe(4096);
    sqe.setUint32(44, 1, true); // SLBA past 2^32
    expect(dataBytes(sqe, namespace, 0)).toBe(0);
  });

  it('bad limits are refused with the field and scope named', () => {
    expect(checkIoLimits({ controller: { iops: -1 } })).toMatch(/controller: iops must be an integer from 0 to 100000000, not -1/);
    expect(checkIoLimits({ controller: { bytesPerSecond: 2 ** 50 } })).toMatch(/bytesPerSecond must be an integer from 0 to/);
    expect(checkIoLimits({ controller: { iops: 1.5 } })).toMatch(/iops must be an integer/);
    expect(checkIoLimits({ controller: { burstIos: 10 } })).toMatch(/controller: burstIos needs an iops limit/);
    expect(checkIoLimits({ namespaces: [{ nsid: 0, iops: 5 }] })).toMatch(/NSID 0: NSIDs are 1 to/);
    expect(checkIoLimits({ namespaces: [{ nsid: 3, iops: 5 }, { nsid: 3, iops: 6 }] })).toMatch(/namespace 3 has limits twice/);
    expect(checkIoLimits({ namespaces: [{ nsid: 3, burstBytes: -5 }] })).toMatch(/namespace 3: burstBytes must be/);
    expect(checkIoLimits({ controller: { iops: 0, bytesPerSecond: 0 }, namespaces: [] })).toBeUndefined();
  });
});

/** Submits `count` 4 KiB reads of namespace `nsid` on I/O queue 1 at once and waits for all. */
async function burst(h: Harness, nsid: number, count: number): Promise<number[]> {
  const buffer = h.driver.alloc(4096);
  const blocks = 4096 / (await h.driver.blockSize(nsid));
  const completions = await h.driver.submitMany(
    1,
    Array.from({ length: count }, (_, index) => ({ opcode: IoOpcode.READ, nsid, prp1: BigInt(buffer), cdw10: index * blocks, cdw12: blocks - 1 })),
  );
  h.driver.free(buffer);
  return completions.map((c) => c.status);
}

async function servingHarness(): Promise<Harness> {
  const h = createHarness();
  await h.driver.enable();
  await h.driver.createIoQueuePair(1, 64, 1);
  return h;
}

describe('a controller with limits (real time)', () => {
  it('a limited namespace waits (never fails) and stays under rate * t + burst; the other namespace is not held back', async () => {
    const h = await servingHarness();
    h.controller.setIoLimits({ namespaces: [{ nsid: 1, iops: 200, burstIos: 5 }] });
    const start = performance.now();
    const statuses = await burst(h, 1, 25);
    const elapsed = (performance.now() - start) / 1000;
    expect(statuses.every((s) => s === Status.SUCCESS)).toBe(true);
    // 25 commands at 200/s after a burst of 5: at least (25 - 5 - 1) / 200 s = 95 ms (a bound that holds however slow the machine).
    expect(elapsed).toBeGreaterThanOrEqual(0.09);
    const quick = performance.now();
    expect((await burst(h, 2, 25)).every((s) => s === Status.SUCCESS)).toBe(true);
    expect(performance.now() - quick).toBeLessThan(elapsed * 1000);
    expect(h.controller.throttledCommands).toBe(0);
  });

  it('a runtime change takes effect at once: removing the limit starts what waits; admin commands are never held', async () => {
    const h = await servingHarness();
    h.controller.setIoLimits({ controller: { iops: 1, burstIos: 1 } });
    const pending = burst(h, 1, 4);
    await settle(5);
    expect(h.controller.throttledCommands).toBe(3);
    // Admin goes through while the controller's I/O is held back.
    expect((await h.driver.identify(0x01)).completion.status).toBe(Status.SUCCESS);
    expect(h.controller.stats().throttled).toEqual({ now: 3, total: 3 });
    h.controller.setIoLimits({});
    expect((await pending).every((s) => s === Status.SUCCESS)).toBe(true);
    expect(h.controller.throttledCommands).toBe(0);
    expect(h.controller.stats().throttled).toEqual({ now: 0, total: 3 });
  });

  it('a reset drops the commands that wait (no completion reaches the new queues); a quiesce runs them', async () => {
    const h = await servingHarness();
    h.controller.setIoLimits({ controller: { iops: 1, burstIos: 1 } });
    void burst(h, 1, 3).catch(() => undefined);
    await settle(5);
    expect(h.controller.throttledCommands).toBe(2);
    expect(h.controller.ioInFlight).toBe(2);
    await h.controller.reset();
    expect(h.controller.ioInFlight).toBe(0);
    expect(h.controller.throttledCommands).toBe(0);

    const g = await servingHarness();
    g.controller.setIoLimits({ controller: { iops: 1, burstIos: 1 } });
    const pending = burst(g, 1, 3);
    await settle(5);
    expect(g.controller.throttledCommands).toBe(2);
    await g.controller.quiesce();
    expect(g.controller.ioInFlight).toBe(0);
    g.controller.resume();
    expect((await pending).every((s) => s === Status.SUCCESS)).toBe(true);
  });

  it('Delete I/O SQ aborts the commands the limits hold back at once (a driver does not wait out the limit)', async () => {
    const h = await servingHarness();
    h.controller.setIoLimits({ controller: { iops: 1, burstIos: 1 } });
    const buffer = h.driver.alloc(4096);
    const cids = Array.from({ length: 4 }, (_, index) => h.driver.place(1, { opcode: IoOpcode.READ, nsid: 1, prp1: BigInt(buffer), cdw10: index * 8, cdw12: 7 }));
    await h.driver.ringSubmission(1);
    await settle(5);
    expect(h.controller.throttledCommands).toBe(3);
    const start = performance.now();
    expect((await h.driver.deleteIoSubmissionQueue(1)).status).toBe(Status.SUCCESS);
    expect(performance.now() - start).toBeLessThan(900); // not the 3 s the limit would take
    const posted = new Map((await h.driver.reap(1)).map((c) => [c.cid, c.status]));
    expect(cids.map((cid) => posted.get(cid))).toEqual([Status.SUCCESS, Status.ABORTED_SQ_DELETION, Status.ABORTED_SQ_DELETION, Status.ABORTED_SQ_DELETION]);
    expect(h.controller.throttledCommands).toBe(0);
    expect(h.controller.ioInFlight).toBe(0);
  });

  it('a shutdown notification runs what the limits hold back: SHST completes without waiting out the limit', async () => {
    const h = await servingHarness();
    h.controller.setIoLimits({ controller: { iops: 1, burstIos: 1 } });
    const pending = burst(h, 1, 3);
    await settle(5);
    expect(h.controller.throttledCommands).toBe(2);
    const start = performance.now();
    await h.driver.shutdown('normal');
    // Not the 2 s the limit would take (without the release it never completed: no pass runs once fetching stops).
    expect(performance.now() - start).toBeLessThan(1500);
    expect((await pending).every((s) => s === Status.SUCCESS)).toBe(true);
    expect(h.controller.ioInFlight).toBe(0);
  });

  it('commands the limits hold back do not count as started on their namespace (a detach or a backing swap does not wait for them)', async () => {
    const h = await servingHarness();
    h.controller.setIoLimits({ namespaces: [{ nsid: 1, iops: 1, burstIos: 1 }] });
    const pending = burst(h, 1, 4);
    await settle(5);
    expect(h.controller.throttledCommands).toBe(3);
    expect(h.controller.ioInFlight).toBe(3);
    expect(h.controller.inFlightOn(1)).toBe(0);
    h.controller.setIoLimits({});
    expect((await pending).every((s) => s === Status.SUCCESS)).toBe(true);
  });

  it('a detached namespace takes its limits with it: a namespace attached later under its NSID is not held back', async () => {
    const h = await servingHarness();
    h.controller.setIoLimits({ namespaces: [{ nsid: 1, iops: 1, burstIos: 1 }] });
    expect(await burst(h, 1, 1)).toEqual([Status.SUCCESS]); // the burst is spent
    const old = await h.controller.detachNamespace(1);
    expect(old).toBeDefined();
    h.controller.attachNamespace({ nsid: 1, namespace: new MemoryNamespace({ sizeBytes: 1 << 20 }), ids: namespaceIds(1) });
    const start = performance.now();
    expect(await burst(h, 1, 4)).toEqual(Array(4).fill(Status.SUCCESS));
    // Under the old limit these would take 4 s.
    expect(performance.now() - start).toBeLessThan(1000);
    expect(h.controller.throttledCommands).toBe(0);
  });

  it('a command that fails its range check is charged no data: the next read is not stalled by its NLB', async () => {
    const h = await servingHarness();
    h.controller.setIoLimits({ controller: { bytesPerSecond: 1 << 20, burstBytes: 64 << 10 } });
    const buffer = h.driver.alloc(4096);
    // NLB 0xffff: 32 MiB of 512-byte blocks, 32 s of this limit if charged in full.
    const [huge] = await h.driver.submitMany(1, [{ opcode: IoOpcode.READ, nsid: 1, prp1: BigInt(buffer), cdw10: 0, cdw12: 0xffff }]);
    h.driver.free(buffer);
    expect(huge!.status).toBe(Status.LBA_OUT_OF_RANGE); // the harness namespace is smaller than 32 MiB
    const start = performance.now();
    expect(await burst(h, 1, 1)).toEqual([Status.SUCCESS]);
    expect(performance.now() - start).toBeLessThan(2000);
  });

  it('invalid limits throw and change nothing', async () => {
    const h = await servingHarness();
    h.controller.setIoLimits({ controller: { iops: 1000 } });
    expect(() => h.controller.setIoLimits({ controller: { iops: -5 } })).toThrow(/iops must be an integer from 0/);
    expect((await burst(h, 1, 3)).every((s) => s === Status.SUCCESS)).toBe(true);
  });
});
