/**
 * The controller's budget of scratch memory: buffers a command needs besides guest memory and the backend's own
 * (today the stored data a Compare reads to compare with the guest's). Without a bound a guest could queue tens of
 * thousands of 1 MiB Compares (31 queues of 1024 entries) and grow the process by as many MiB.
 *
 * A command takes its bytes before it allocates them and gives them back when it completes. When they do not fit,
 * the command waits, first come first served: it stays in flight (never fails for lack of scratch memory) and is
 * granted its bytes as earlier commands give theirs back. A command larger than the whole budget runs alone, once
 * nothing else holds any: the budget bounds the memory to max(budget, one command's transfer).
 */

export const DEFAULT_SCRATCH_BUDGET_BYTES = 32 * 1024 * 1024;

export interface ScratchStats {
  /** The budget. */
  limitBytes: number;
  /** Taken now. */
  usedBytes: number;
  /** Most ever taken at once. */
  peakBytes: number;
  /** Commands waiting for their bytes now. */
  waitingCommands: number;
  /** Commands that had to wait, since the controller was created. */
  waits: number;
}

interface Waiter {
  readonly bytes: number;
  readonly grant: () => void;
}

export class ScratchBudget {
  private used = 0;
  private peak = 0;
  private waitCount = 0;
  private readonly waiters: Waiter[] = [];

  constructor(readonly limitBytes: number = DEFAULT_SCRATCH_BUDGET_BYTES) {
    if (!Number.isSafeInteger(limitBytes) || limitBytes < 4096) {
      throw new RangeError(`scratch budget ${String(limitBytes)} must be an integer of at least 4096 bytes`);
    }
  }

  /** Takes `bytes` at once if they fit and nobody waits before us; false otherwise (then `wait`). */
  tryTake(bytes: number): boolean {
    if (this.waiters.length > 0 || !this.fits(bytes)) return false;
    this.take(bytes);
    return true;
  }

  /** Resolves once `bytes` are taken for the caller, after every earlier waiter. */
  wait(bytes: number): Promise<void> {
    this.waitCount++;
    return new Promise<void>((grant) => {
      this.waiters.push({ bytes, grant });
      this.grantWaiters();
    });
  }

  /** Gives back bytes taken by `tryTake` or granted by `wait`. */
  release(bytes: number): void {
    this.used -= bytes;
    if (this.used < 0) this.used = 0;
    this.grantWaiters();
  }

  stats(): ScratchStats {
    return {
      limitBytes: this.limitBytes,
      usedBytes: this.used,
      peakBytes: this.peak,
      waitingCommands: this.waiters.length,
      waits: this.waitCount,
    };
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.limitBytes;
  }

  private take(bytes: number): void {
    this.used += bytes;
    if (this.used > this.peak) this.peak = this.used;
  }

  private grantWaiters(): void {
    while (this.waiters.length > 0 && this.fits(this.waiters[0]!.bytes)) {
      const waiter = this.waiters.shift()!;
      this.take(waiter.bytes);
      waiter.grant();
    }
  }
}
