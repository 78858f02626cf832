/**
 * The daemon's event log: what changed on devices, controllers, attachments and operations, in one sequence. Each
 * event is written to api.db (ApiStore, the newest `retention` kept) before it is announced, so a stream can always
 * read what it has not sent yet from the store: a stream's memory is a cursor, never a queue of events
 * (events-service.ts). Sequence numbers increase and are never reused, also across daemon restarts.
 */
import { EventEmitter } from 'node:events';
import { VfiodError } from '../util/errors.js';
import { invalid } from './requests.js';
import type { ApiStore, StoredEvent } from './api-store.js';
import type { AttachmentInfo } from './generated/vfiod/v1/AttachmentInfo.js';
import type { DeviceEventKind as DeviceEventKindName } from './generated/vfiod/v1/DeviceEventKind.js';
import type { OperationRecord } from './operations.js';

export type DeviceEventKind = 'PREPARED' | 'PREPARE_FAILED' | 'RELEASED' | 'RELEASE_FAILED' | 'ATTACHED' | 'DETACHED' | 'VGPU_TYPE_CHANGED';
export type EventResourceType = 'device' | 'controller' | 'attachment' | 'operation';

/** The vfiod.v1.DeviceEventKind name of a device event's kind. */
export const deviceEventKindName = (kind: DeviceEventKind): DeviceEventKindName => `DEVICE_EVENT_KIND_${kind}`;

/** A device event as StreamDeviceEvents has always sent it (DeviceStateChanged). */
export interface DeviceEventRecord {
  id: string;
  bdf: string;
  kind: DeviceEventKind;
  owner: string;
  detail: string;
  at: string;
}

/** What an event says; `snapshot` is the resource as it is after the change. */
export interface EventInput {
  resourceType: EventResourceType;
  resourceName: string;
  action: string;
  vmId: string;
  detail: string;
  snapshot?: { device: Omit<DeviceEventRecord, 'id'> } | { attachment: AttachmentInfo } | { operation: OperationRecord };
}

export interface EventRecord extends EventInput {
  sequence: number;
  timeMs: number;
}

/** Default number of events kept (--event-retention). */
export const DEFAULT_EVENT_RETENTION = 10_000;

/** Where a replay starts: after a sequence number, at a time, or the last n events. */
export type ReplayStart = { afterSequence: number } | { sinceMs: number } | { tailEvents: number };

export class EventLog {
  private readonly emitter = new EventEmitter();

  constructor(
    private readonly store: ApiStore,
    readonly retention = DEFAULT_EVENT_RETENTION,
  ) {
    // One listener per streaming client; many clients are normal, not a leak.
    this.emitter.setMaxListeners(0);
  }

  publish(input: EventInput): EventRecord {
    const timeMs = Date.now();
    const sequence = this.store.appendEvent(timeMs, input, this.retention);
    const event: EventRecord = { ...input, sequence, timeMs };
    this.emitter.emit('event', event);
    return event;
  }

  /** A device event (what StreamDeviceEvents sends too). */
  device(bdf: string, kind: DeviceEventKind, owner: string, detail: string): EventRecord {
    return this.publish({
      resourceType: 'device',
      resourceName: `devices/${bdf}`,
      action: kind,
      vmId: owner,
      detail,
      snapshot: { device: { bdf, kind, owner, detail, at: new Date().toISOString() } },
    });
  }

  get lastSequence(): number {
    return this.store.lastEventSequence();
  }

  /** The last event retention dropped (sequence 0: none yet). */
  get prunedThrough(): { sequence: number; timeMs: number } {
    return this.store.eventsPrunedThrough();
  }

  /**
   * The sequence a replay from `start` continues after. FAILED_PRECONDITION EVENTS_EXPIRED when events the replay
   * should include were already dropped: the client would silently miss them.
   */
  replayAfter(start: ReplayStart): number {
    const pruned = this.prunedThrough;
    const expired = (asked: string): VfiodError =>
      new VfiodError('FAILED_PRECONDITION', `events ${asked} are no longer kept: the oldest kept event is ${pruned.sequence + 1} (the daemon keeps the last ${this.retention}); resume with tail_events or from the present`, {
        reason: 'EVENTS_EXPIRED',
        oldestSequence: pruned.sequence + 1,
        retention: this.retention,
      });
    if ('afterSequence' in start) {
      if (start.afterSequence < pruned.sequence) throw expired(`after sequence ${start.afterSequence}`);
      const last = this.lastSequence;
      // A sequence the log never reached (its state dir was replaced): waiting for it would skip what comes before.
      if (start.afterSequence > last) {
        throw invalid(`after_sequence ${start.afterSequence} is past the last event, ${last}: this daemon's event log never had it (was its state dir replaced?)`, 'after_sequence', 'FIELD_OUT_OF_RANGE', {
          value: start.afterSequence,
          min: 0,
          max: last,
        });
      }
      return start.afterSequence;
    }
    if ('sinceMs' in start) {
      if (pruned.sequence > 0 && start.sinceMs <= pruned.timeMs) throw expired(`since ${new Date(start.sinceMs).toISOString()}`);
      return this.store.sequenceBeforeTime(start.sinceMs);
    }
    return Math.max(pruned.sequence, this.store.sequenceBeforeLast(start.tailEvents));
  }

  /** Kept events after `sequence`, oldest first, at most `limit`. */
  after(sequence: number, limit: number): EventRecord[] {
    return this.store.eventsAfter(sequence, limit).map((e: StoredEvent) => ({ ...(e.record as EventInput), sequence: e.sequence, timeMs: e.timeMs }));
  }

  /** Ends every stream (daemon shutdown: open streams would otherwise hold the drain until its timeout). */
  close(): void {
    this.emitter.emit('close');
    this.emitter.removeAllListeners();
  }

  onClose(listener: () => void): () => void {
    this.emitter.once('close', listener);
    return () => this.emitter.off('close', listener);
  }

  subscribe(listener: (event: EventRecord) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
