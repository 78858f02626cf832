/**
 * Long synchronous work of a namespace backend (zero-filling memory, fallocate(2) calls), cut into slices of a
 * bounded cost per event-loop turn. Between slices the thread does its other work: the hypervisor's register
 * accesses (REGION_READ / REGION_WRITE), other queues' commands and their completions.
 *
 * One SlicedWork per namespace: the jobs of all its commands share one budget per turn, first come first served,
 * so a thousand queued Dataset Management commands cost a turn no more than one does. A job that fits in what is
 * left of the current turn's budget, with nothing queued before it, runs at once and completes synchronously (the
 * backends' allocation-free fast path for small requests).
 */

/** A piece of work that can be done in slices. */
export interface SlicedJob {
  /**
   * Does some of the work, costing at most `budget` units (it must do some when `budget` > 0), and returns the units
   * spent. Throws to fail the job.
   */
  step(budget: number): number;
  /** Everything is done. */
  readonly done: boolean;
}

interface Queued {
  readonly job: SlicedJob;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

export class SlicedWork {
  /** Units spent in the current turn. */
  private spent = 0;
  private turnScheduled = false;
  private readonly queue: Queued[] = [];

  constructor(readonly unitsPerTurn: number) {
    if (!(unitsPerTurn > 0)) throw new RangeError(`units per turn ${unitsPerTurn} must be positive`);
  }

  /** Jobs waiting for a later turn. */
  get queued(): number {
    return this.queue.length;
  }

  /**
   * Runs `job`: synchronously (undefined) when nothing waits before it and it finishes within this turn's budget,
   * else a promise that settles once the job is done in later turns. An exception from the synchronous part throws.
   */
  run(job: SlicedJob): Promise<void> | void {
    if (this.queue.length === 0 && this.spent < this.unitsPerTurn) {
      this.spent += job.step(this.unitsPerTurn - this.spent);
      this.scheduleTurn();
      if (job.done) return undefined;
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      this.scheduleTurn();
    });
  }

  private scheduleTurn(): void {
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    setImmediate(this.turn);
  }

  /** A new turn: a fresh budget for the queued jobs, in order. */
  private readonly turn = (): void => {
    this.turnScheduled = false;
    this.spent = 0;
    while (this.queue.length > 0 && this.spent < this.unitsPerTurn) {
      const head = this.queue[0]!;
      let spent: number;
      try {
        spent = head.job.step(this.unitsPerTurn - this.spent);
      } catch (error) {
        this.queue.shift();
        head.reject(error);
        continue;
      }
      this.spent += spent;
      if (head.job.done) {
        this.queue.shift();
        head.resolve();
      } else if (spent <= 0) {
        break; // nothing could be done with what is left of this turn
      }
    }
    // Another turn for what is left, or just to give the next synchronous job a fresh budget.
    if (this.queue.length > 0 || this.spent > 0) this.scheduleTurn();
  };
}
