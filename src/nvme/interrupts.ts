/**
 * Interrupt vector coalescing: completions mark their CQ's vector, and each marked vector is signalled once per
 * batch. A batch is open while the controller processes its queues (the vectors go out when it closes); a
 * completion outside a batch (asynchronous I/O, an event) is signalled at the end of the event-loop turn, together
 * with whatever else completes in that turn. With MSI-X off, vectors collapse onto INTx under the INTMS mask.
 */
import type { Logger } from '../util/log.js';
import type { CompletionQueue } from './queues.js';
import type { ControllerRegisters } from './registers.js';

export interface InterruptSink {
  /** Signal MSI-X vector `vector` (or INTx when MSI-X is off: vector 0). Called at most once per vector per batch. */
  signal(vector: number): void;
  /** True when MSI-X is enabled by the guest; otherwise the controller applies INTMS/INTMC masking to INTx. */
  msixEnabled(): boolean;
  /** Number of MSI-X vectors the function has (Create I/O CQ with IV >= this fails with INVALID_INTERRUPT_VECTOR). */
  readonly vectorCount: number;
}

export class InterruptCoalescer {
  /** A batch is open (read-only outside this class): vectors marked now are signalled when it closes. */
  batching = false;
  /** Interrupts sent (MSI-X messages and INTx assertions), for metrics: one increment per signal, not per command. */
  signalled = 0;
  private readonly pendingFlags: Uint8Array;
  private readonly pendingVectors: Uint16Array;
  private pendingCount = 0;
  private flushScheduled = false;

  /** `vectorCount`: vectors a CQ may use (at least 1: INTx counts as vector 0). */
  constructor(
    private readonly sink: InterruptSink,
    vectorCount: number,
    private readonly registers: ControllerRegisters,
    private readonly logger: Logger,
  ) {
    this.pendingFlags = new Uint8Array(vectorCount);
    this.pendingVectors = new Uint16Array(vectorCount);
  }

  msixEnabled(): boolean {
    return this.sink.msixEnabled();
  }

  /** Vector `vector` has a new completion; it is signalled once at the next flush. */
  mark(vector: number): void {
    if (this.pendingFlags[vector] === 1) return;
    this.pendingFlags[vector] = 1;
    this.pendingVectors[this.pendingCount++] = vector;
  }

  openBatch(): void {
    this.batching = true;
  }

  /** Closes the batch and signals every vector marked since the last flush. */
  closeBatch(): void {
    this.batching = false;
    this.flush();
  }

  /** Completions that arrive outside a batch are signalled together at the end of this event-loop turn. */
  scheduleFlush(): void {
    if (this.flushScheduled || this.pendingCount === 0) return;
    this.flushScheduled = true;
    setImmediate(this.flushLater);
  }

  /** INTMC cleared mask bits: completions still waiting behind them raise INTx now. */
  resignalUnmasked(cleared: number, completionQueues: readonly CompletionQueue[]): void {
    for (const cq of completionQueues) {
      if (cq.interruptsEnabled && cq.posted > 0 && (cleared & (1 << (cq.vector & 31))) !== 0) {
        this.signal(0);
        return;
      }
    }
  }

  /** Signals the vectors marked so far now (a live upgrade's quiesce, before the snapshot). */
  flushNow(): void {
    if (!this.batching) this.flush();
  }

  /** Vectors marked and not yet signalled (a live-upgrade snapshot; empty after flushNow). */
  snapshot(): { version: number; pending: number[] } {
    return { version: 1, pending: Array.from(this.pendingVectors.subarray(0, this.pendingCount)) };
  }

  /** Marks a predecessor's pending vectors; they are signalled at the first flush once serving. */
  restore(state: { version: number; pending: number[] }): void {
    for (const vector of state.pending) if (vector >= 0 && vector < this.pendingFlags.length) this.mark(vector);
  }

  /** Controller reset: marked vectors are forgotten. */
  reset(): void {
    this.pendingFlags.fill(0);
    this.pendingCount = 0;
  }

  private flush(): void {
    const count = this.pendingCount;
    if (count === 0) return;
    this.pendingCount = 0;
    const msix = this.sink.msixEnabled();
    const mask = this.registers.intms;
    let intx = false;
    for (let index = 0; index < count; index++) {
      const vector = this.pendingVectors[index]!;
      this.pendingFlags[vector] = 0;
      if (msix) this.signal(vector);
      else if ((mask & (1 << (vector & 31))) === 0) intx = true;
    }
    if (intx) this.signal(0);
  }

  private signal(vector: number): void {
    this.signalled++;
    try {
      this.sink.signal(vector);
    } catch (error) {
      this.logger.error('signalling interrupt failed', { vector, error });
    }
  }

  private readonly flushLater = (): void => {
    this.flushScheduled = false;
    this.flush();
  };
}
