/** Controller statistics: command counts and a latency histogram cheap enough to update on every I/O. */
import type { ScratchStats } from './scratch.js';

/** Bucket i counts latencies in [2^i, 2^(i+1)) microseconds; bucket 0 also holds everything below 1 us. */
export const LATENCY_BUCKETS = 32;

export class LatencyHistogram {
  readonly buckets = new Float64Array(LATENCY_BUCKETS);
  count = 0;
  totalMicros = 0;
  maxMicros = 0;

  record(micros: number): void {
    const whole = micros < 1 ? 1 : Math.min(micros, 0xffffffff) >>> 0;
    const bucket = Math.min(LATENCY_BUCKETS - 1, 31 - Math.clz32(whole));
    this.buckets[bucket]!++;
    this.count++;
    this.totalMicros += micros;
    if (micros > this.maxMicros) this.maxMicros = micros;
  }

  /** `count` commands of `micros` each (a processing pass's synchronous completions, timed together). */
  recordMany(micros: number, count: number): void {
    const whole = micros < 1 ? 1 : Math.min(micros, 0xffffffff) >>> 0;
    const bucket = Math.min(LATENCY_BUCKETS - 1, 31 - Math.clz32(whole));
    this.buckets[bucket]! += count;
    this.count += count;
    this.totalMicros += micros * count;
    if (micros > this.maxMicros) this.maxMicros = micros;
  }

  snapshot(): LatencySnapshot {
    return {
      bucketsMicros: Array.from(this.buckets),
      count: this.count,
      totalMicros: this.totalMicros,
      maxMicros: this.maxMicros,
    };
  }
}

export interface LatencySnapshot {
  /** Commands per log2 bucket: index i = [2^i, 2^(i+1)) us, fetch to completion. */
  bucketsMicros: number[];
  count: number;
  totalMicros: number;
  maxMicros: number;
}

export type ControllerState = 'disabled' | 'ready' | 'shutting-down' | 'shut-down' | 'failed';

export interface NvmeControllerStats {
  state: ControllerState;
  /** Live I/O submission / completion queues (admin queue excluded). */
  ioSubmissionQueues: number;
  ioCompletionQueues: number;
  /** I/O commands fetched and not yet completed. */
  inFlight: number;
  commands: {
    admin: number;
    read: number;
    write: number;
    /** I/O commands other than Read and Write (Flush, Write Zeroes, Dataset Management, ...). */
    otherIo: number;
    /** Commands (admin and I/O) that completed with a non-zero status. */
    failed: number;
    /** `failed` by status name (spec/nvme.ts statusName), e.g. { LBA_OUT_OF_RANGE: 1 }. */
    failedByStatus: Record<string, number>;
  };
  /**
   * Per namespace: successful Read (and Compare) and Write commands and their bytes, and failed I/O commands by status
   * name (an I/O command naming no active namespace counts for the controller only).
   */
  namespaces: Array<{ nsid: number; readCommands: number; writeCommands: number; bytesRead: number; bytesWritten: number; failedByStatus: Record<string, number> }>;
  /** Commands fetched and not yet completed, per I/O submission queue. */
  queueDepths: Array<{ sqid: number; inFlight: number }>;
  /** Interrupts signalled to the host (MSI-X messages, INTx assertions). */
  interrupts: number;
  bytesRead: number;
  bytesWritten: number;
  mediaErrors: number;
  errorLogEntries: number;
  asyncEventRequestsOutstanding: number;
  /** Controller resets (CC.EN 1 -> 0, function reset, disconnect) since the process started. */
  resets: number;
  unsafeShutdowns: number;
  /** I/O command latency. */
  latency: LatencySnapshot;
  /** The scratch memory budget (src/nvme/scratch.ts) and its use. */
  scratch: ScratchStats;
  /**
   * I/O rate limits (io-limits.ts): commands held back now (counted in `inFlight` too), and commands that had to wait
   * since the controller started.
   */
  throttled: { now: number; total: number };
}
