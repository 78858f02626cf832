/**
 * I/O rate limits (QoS): IOPS and bandwidth, each with a burst, for a whole controller and for single namespaces.
 * Reads and writes count together (one total per scope); admin commands are never limited.
 *
 * Each limited scope has a token bucket per rate: it fills at the rate and holds at most the burst. A command may
 * start when every bucket it draws on holds its cost (1 I/O, its data bytes), or is full when the cost is larger
 * than the burst; it then takes its whole cost, which leaves a bucket below zero for a command larger than the
 * burst (the next one waits until the debt is paid). So over any interval of `t` seconds a scope starts at most
 * `rate * t + burst` plus one command's worth. A command that may not start yet is parked, in arrival order, and started by the next processing
 * pass after its buckets have refilled: it waits (the guest sees latency), it is never failed. Parked commands count
 * as in flight. Nothing here runs for a controller without limits: the command runner holds no limiter then.
 */

/** One scope's limits; 0 or absent = unlimited. */
export interface IoLimits {
  /** Commands per second. */
  iops?: number;
  /** Data bytes per second (Read, Write and Compare transfer data; other commands count 0 bytes). */
  bytesPerSecond?: number;
  /** Commands that may start at once after an idle period (default: a tenth of a second's worth, at least 1). */
  burstIos?: number;
  /** Bytes that may start at once after an idle period (default: a tenth of a second's worth, at least 4 KiB). */
  burstBytes?: number;
}

/** A controller's limits: for all of its I/O together, and for single namespaces (by NSID). */
export interface ControllerIoLimits {
  controller?: IoLimits;
  namespaces?: Array<IoLimits & { nsid: number }>;
}

/**
 * The largest value of each field: beyond any device (a rate that high is a typo, or a unit mix-up), and small
 * enough that token arithmetic stays exact in a double.
 */
export const IO_LIMIT_MAX = {
  iops: 100_000_000,
  bytesPerSecond: 2 ** 44, // 16 TiB/s
  burstIos: 100_000_000,
  burstBytes: 2 ** 44,
} as const satisfies Record<keyof IoLimits, number>;

const IO_LIMIT_FIELDS = Object.keys(IO_LIMIT_MAX) as Array<keyof IoLimits>;
/** Default burst: this fraction of a second at the rate. */
const DEFAULT_BURST_SECONDS = 0.1;
const MIN_DEFAULT_BURST_BYTES = 4096;
/** ParkedQueue compacts its array once this many taken entries are in front of its head (and most of it is). */
const COMPACT_AFTER = 1024;
/**
 * Parked commands are released at most this often: a limited guest then gets its commands in batches (25 at 5,000
 * IOPS) and wakes its controller's thread and its own ~400 times a second rather than thousands of times, wake-ups
 * that cost the other controllers' threads more than the CPU they take (bench/qos). A command that may start at once
 * is never delayed by it.
 */
const RELEASE_PERIOD_MS = 5;
/** A timer never fires sooner than this after a refill was asked for (Node timers have millisecond resolution). */
const MIN_WAIT_MS = 1;

/**
 * Why `limits` is not a valid limit set, or undefined: fields must be integers from 0 to IO_LIMIT_MAX, and a burst
 * needs its rate. `where` names the scope in the message ("controller", "namespace 2").
 */
export function ioLimitsProblem(limits: IoLimits, where: string): { field: keyof IoLimits; message: string } | undefined {
  for (const field of IO_LIMIT_FIELDS) {
    const value = limits[field];
    if (value === undefined) continue;
    if (!Number.isSafeInteger(value) || value < 0 || value > IO_LIMIT_MAX[field]) {
      return { field, message: `${where}: ${field} must be an integer from 0 to ${IO_LIMIT_MAX[field]}, not ${String(value)}` };
    }
  }
  if ((limits.burstIos ?? 0) > 0 && !((limits.iops ?? 0) > 0)) return { field: 'burstIos', message: `${where}: burstIos needs an iops limit` };
  if ((limits.burstBytes ?? 0) > 0 && !((limits.bytesPerSecond ?? 0) > 0)) {
    return { field: 'burstBytes', message: `${where}: burstBytes needs a bytesPerSecond limit` };
  }
  return undefined;
}

/** Whether `limits` limits anything (a rate above zero). */
export function isLimited(limits: IoLimits | undefined): boolean {
  return limits !== undefined && ((limits.iops ?? 0) > 0 || (limits.bytesPerSecond ?? 0) > 0);
}

/** Whether any scope of `limits` limits anything. */
export function hasIoLimits(limits: ControllerIoLimits | undefined): boolean {
  return limits !== undefined && (isLimited(limits.controller) || (limits.namespaces ?? []).some(isLimited));
}

/** A token bucket on a millisecond clock the caller reads (so tests can drive it). */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  /** Starts full. */
  constructor(
    /** Tokens per second, > 0. */
    readonly rate: number,
    /** The most it holds, > 0. */
    readonly capacity: number,
    now: number,
  ) {
    this.tokens = capacity;
    this.updatedAt = now;
  }

  /** Tokens now (negative: in debt). */
  level(now: number): number {
    if (now > this.updatedAt) {
      this.tokens = Math.min(this.capacity, this.tokens + ((now - this.updatedAt) * this.rate) / 1000);
      this.updatedAt = now;
    }
    return this.tokens;
  }

  /** Milliseconds until the bucket holds `amount` (or is full, when `amount` is more than it holds); 0: now. */
  waitMs(now: number, amount: number): number {
    const needed = Math.min(amount, this.capacity) - this.level(now);
    return needed <= 0 ? 0 : (needed * 1000) / this.rate + MIN_WAIT_MS;
  }

  take(amount: number): void {
    this.tokens -= amount;
  }
}

/** The buckets of one scope, and how many parked commands wait on it. */
class ScopeBuckets {
  readonly ios: TokenBucket | undefined;
  readonly bytes: TokenBucket | undefined;
  waiting = 0;

  constructor(limits: IoLimits, now: number) {
    const { iops = 0, bytesPerSecond = 0 } = limits;
    this.ios = iops > 0 ? new TokenBucket(iops, limits.burstIos || Math.max(1, iops * DEFAULT_BURST_SECONDS), now) : undefined;
    this.bytes =
      bytesPerSecond > 0
        ? new TokenBucket(bytesPerSecond, limits.burstBytes || Math.max(MIN_DEFAULT_BURST_BYTES, bytesPerSecond * DEFAULT_BURST_SECONDS), now)
        : undefined;
  }

  /** Milliseconds until a command moving `bytes` may start; 0: now. */
  waitMs(now: number, bytes: number): number {
    return Math.max(this.ios?.waitMs(now, 1) ?? 0, this.bytes?.waitMs(now, bytes) ?? 0);
  }

  take(bytes: number): void {
    this.ios?.take(1);
    this.bytes?.take(bytes);
  }
}

/** Whether `scope` (undefined: not limited) lets a command moving `bytes` start at `now`. */
function allows(scope: ScopeBuckets | undefined, now: number, bytes: number): boolean {
  return scope === undefined || scope.waitMs(now, bytes) === 0;
}

interface Parked<T> {
  command: T;
  controller: ScopeBuckets | undefined;
  namespace: ScopeBuckets | undefined;
  nsid: number;
  bytes: number;
}

/**
 * Parked commands in arrival order. Released commands are mostly at the front: taking them advances `head` instead of
 * moving every entry behind them (V8 moves an object array's elements one by one, with write barriers: 70 µs per
 * release with 20,000 parked, measured), and the array is compacted once most of it is behind `head`.
 */
class ParkedQueue<E> {
  private items: E[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  at(index: number): E {
    return this.items[this.head + index]!;
  }

  push(item: E): void {
    this.items.push(item);
  }

  /** The first `scanned` entries become `kept` (a subsequence of them, in order). */
  replaceFront(scanned: number, kept: readonly E[]): void {
    const items = this.items;
    const end = this.head + scanned;
    for (let index = 0; index < kept.length; index++) items[end - kept.length + index] = kept[index]!;
    for (let index = this.head; index < end - kept.length; index++) items[index] = undefined as E; // no stale references
    this.head = end - kept.length;
    if (this.head > COMPACT_AFTER && this.head * 2 > items.length) {
      this.items = items.slice(this.head);
      this.head = 0;
    }
  }

  /** Removes and returns the entries `which` selects, in order. */
  take(which: (item: E) => boolean): E[] {
    const taken: E[] = [];
    const kept: E[] = [];
    for (let index = this.head; index < this.items.length; index++) {
      const item = this.items[index]!;
      (which(item) ? taken : kept).push(item);
    }
    if (taken.length > 0) {
      this.items = kept;
      this.head = 0;
    }
    return taken;
  }

  *[Symbol.iterator](): Iterator<E> {
    for (let index = this.head; index < this.items.length; index++) yield this.items[index]!;
  }
}

export interface IoLimiterOptions {
  /** Milliseconds (performance.now by default). */
  now?: () => number;
  /** Called once when parked commands may start: the controller runs a processing pass, which calls `release`. */
  wake: () => void;
  setTimer?: (callback: () => void, ms: number) => unknown;
  clearTimer?: (timer: unknown) => void;
}

/**
 * The limits of one controller and the commands they hold back. `T` is the command (the runner's request); the
 * limiter only keeps it in order and hands it back.
 */
export class IoLimiter<T> {
  private controller: ScopeBuckets | undefined;
  private readonly namespaces = new Map<number, ScopeBuckets>();
  private readonly parked = new ParkedQueue<Parked<T>>();
  private stepsReleasing = 0;
  private timer: unknown;
  /** When `timer` fires (clock of `now`). */
  private timerAt = 0;
  private readonly now: () => number;
  private readonly wake: () => void;
  private readonly setTimer: (callback: () => void, ms: number) => unknown;
  private readonly clearTimer: (timer: unknown) => void;

  constructor(limits: ControllerIoLimits, options: IoLimiterOptions) {
    this.now = options.now ?? (() => performance.now());
    this.wake = options.wake;
    this.setTimer = options.setTimer ?? ((callback, ms) => setTimeout(callback, ms));
    this.clearTimer = options.clearTimer ?? ((timer) => clearTimeout(timer as NodeJS.Timeout));
    this.set(limits);
  }

  /**
   * New limits (validated by the caller). The buckets start full; commands parked under the old limits wait under
   * the new ones (or start at the next release, when their scope is no longer limited).
   */
  set(limits: ControllerIoLimits): void {
    const now = this.now();
    this.controller = isLimited(limits.controller) ? new ScopeBuckets(limits.controller!, now) : undefined;
    this.namespaces.clear();
    for (const entry of limits.namespaces ?? []) if (isLimited(entry)) this.namespaces.set(entry.nsid, new ScopeBuckets(entry, now));
    for (const parked of this.parked) {
      parked.controller = this.controller;
      parked.namespace = this.namespaces.get(parked.nsid);
      if (parked.controller) parked.controller.waiting++;
      if (parked.namespace) parked.namespace.waiting++;
    }
    this.schedule();
  }

  /**
   * Drops namespace `nsid`'s limits (it was detached: a namespace attached later under the same NSID starts
   * unlimited). Its parked commands wait on the controller's buckets alone; the other scopes keep their levels.
   */
  forgetNamespace(nsid: number): void {
    if (!this.namespaces.delete(nsid)) return;
    for (const parked of this.parked) if (parked.nsid === nsid) parked.namespace = undefined;
    this.schedule();
  }

  /** Commands waiting for their buckets. */
  get parkedCount(): number {
    return this.parked.length;
  }

  /** Parked commands that releases looked at, since the limiter was made: what releasing cost (tests bound it). */
  get releaseSteps(): number {
    return this.stepsReleasing;
  }

  /** Whether any limit applies to commands for namespace `nsid` (the controller's or its own); if none, admit starts them. */
  limited(nsid: number): boolean {
    return this.controller !== undefined || this.namespaces.has(nsid);
  }

  /**
   * Whether `command` (for namespace `nsid`, moving `bytes` of data) may start now; if so its cost is taken. If
   * not, it is parked behind the commands already waiting on the same buckets, and `release` starts it later.
   * `now`: a reading of the limiter's clock the caller already has (a processing pass's), which saves a clock read
   * per command. A reading from before the clock's credits the buckets less, so it never lets more through; one that
   * holds the command back is not trusted: the clock is read and decides, as it would have alone.
   */
  admit(command: T, nsid: number, bytes: number, now?: number): boolean {
    const controller = this.controller;
    const namespace = this.namespaces.get(nsid);
    if (controller === undefined && namespace === undefined) return true;
    let time = now ?? this.now();
    let fresh = now === undefined;
    if ((controller?.waiting ?? 0) + (namespace?.waiting ?? 0) === 0) {
      let fits = allows(controller, time, bytes) && allows(namespace, time, bytes);
      if (!fits && !fresh) {
        time = this.now();
        fresh = true;
        fits = allows(controller, time, bytes) && allows(namespace, time, bytes);
      }
      if (fits) {
        controller?.take(bytes);
        namespace?.take(bytes);
        return true;
      }
    }
    if (!fresh) time = this.now();
    if (controller) controller.waiting++;
    if (namespace) namespace.waiting++;
    this.parked.push({ command, controller, namespace, nsid, bytes });
    // A timer already due no later than this command's own buckets allow it stays (a guest that submits a queue's
    // worth at once re-arms nothing per command).
    const wait = Math.max(controller?.waitMs(time, bytes) ?? 0, namespace?.waitMs(time, bytes) ?? 0);
    if (this.timer === undefined || this.timerAt > time + Math.max(RELEASE_PERIOD_MS, wait)) this.schedule();
    return false;
  }

  /**
   * Starts (through `start`) every parked command whose buckets allow it now, in arrival order per bucket. The scan
   * stops once every scope with commands left is held back: its cost is what it starts plus one command per scope,
   * not the number parked (a guest can park a queue's worth in each of its queues).
   */
  release(start: (command: T) => void): void {
    const parked = this.parked;
    if (parked.length === 0) return;
    const now = this.now();
    const still: Array<Parked<T>> = [];
    const ready: Array<Parked<T>> = [];
    const count = parked.length;
    let scanned = count;
    // A scope whose bucket held one command back holds back every later one of it (arrival order, whatever their
    // sizes); a command held back by its namespace's bucket holds back nothing of the controller's.
    const blocked = new Set<ScopeBuckets>();
    let waitingScopes = this.waitingScopes();
    for (let index = 0; index < count; index++) {
      const entry = parked.at(index);
      const { controller, namespace, bytes } = entry;
      const controllerFree = controller === undefined || (!blocked.has(controller) && allows(controller, now, bytes));
      const namespaceFree = namespace === undefined || (!blocked.has(namespace) && allows(namespace, now, bytes));
      if (controllerFree && namespaceFree) {
        controller?.take(bytes);
        namespace?.take(bytes);
        this.unpark(entry);
        if (controller?.waiting === 0) waitingScopes--;
        if (namespace?.waiting === 0) waitingScopes--;
        ready.push(entry);
        continue;
      }
      if (!controllerFree) blocked.add(controller!);
      if (!namespaceFree) blocked.add(namespace!);
      still.push(entry);
      // Every parked command draws on the controller's buckets when it has any.
      if (blocked.size >= waitingScopes || !controllerFree) {
        scanned = index + 1;
        break;
      }
    }
    this.stepsReleasing += scanned;
    if (ready.length > 0) parked.replaceFront(scanned, still);
    // Only a start changes when the parked commands may go (the buckets it drew on, the commands ahead of them):
    // without one, the pending timer is still due when the first of them may, and a pass that starts nothing (each
    // pass while commands wait) arms none.
    if (ready.length > 0 || this.timer === undefined) this.schedule();
    for (const entry of ready) start(entry.command);
  }

  /**
   * Hands every parked command (`which` selects, default all) to `each` and forgets it: a reset drops them, a
   * quiesce runs them, a queue deletion aborts its own.
   */
  drain(each: (command: T) => void, which: (command: T) => boolean = () => true): void {
    const taken = this.parked.take((entry) => which(entry.command));
    if (taken.length === 0) return;
    for (const entry of taken) this.unpark(entry);
    this.schedule();
    for (const entry of taken) each(entry.command);
  }

  /** The controller stops for good: no timer stays behind. */
  close(): void {
    this.clearPending();
  }

  /** Scopes with parked commands. */
  private waitingScopes(): number {
    let count = this.controller !== undefined && this.controller.waiting > 0 ? 1 : 0;
    for (const scope of this.namespaces.values()) if (scope.waiting > 0) count++;
    return count;
  }

  private unpark(parked: Parked<T>): void {
    if (parked.controller) parked.controller.waiting--;
    if (parked.namespace) parked.namespace.waiting--;
  }

  /** A timer for the earliest moment a parked command's buckets allow it (one timer per controller). */
  private schedule(): void {
    this.clearPending();
    if (this.parked.length === 0) return;
    const now = this.now();
    let earliest = Infinity;
    // As release sees them: a scope's first command held back by that scope's bucket decides when the scope moves;
    // the later ones wait behind it.
    const blocked = new Set<ScopeBuckets>();
    const waitingScopes = this.waitingScopes();
    for (const { controller, namespace, bytes } of this.parked) {
      if ((controller && blocked.has(controller)) || (namespace && blocked.has(namespace))) continue;
      const controllerWait = controller?.waitMs(now, bytes) ?? 0;
      const namespaceWait = namespace?.waitMs(now, bytes) ?? 0;
      earliest = Math.min(earliest, Math.max(controllerWait, namespaceWait));
      if (controllerWait > 0) blocked.add(controller!);
      if (namespaceWait > 0) blocked.add(namespace!);
      if (earliest === 0 || blocked.size >= waitingScopes || controllerWait > 0) break;
    }
    const delay = Math.max(RELEASE_PERIOD_MS, Math.ceil(earliest));
    this.timerAt = now + delay;
    this.timer = this.setTimer(this.fire, delay);
  }

  private clearPending(): void {
    if (this.timer !== undefined) this.clearTimer(this.timer);
    this.timer = undefined;
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.wake();
  };
}
