/**
 * Asynchronous events and the timers around them: outstanding Asynchronous Event Requests, pending events and
 * their masking until the host reads the log page, the SMART temperature warning, and the keep-alive timer. Events
 * complete AERs on the admin queue through the queue engine.
 */
import type { Logger } from '../util/log.js';
import { AsyncEvent, LogPageId, Status } from '../spec/nvme.js';
import type { FeatureState } from './features.js';
import { ASYNC_EVENT_REQUEST_LIMIT } from './identify.js';
import type { InterruptCoalescer } from './interrupts.js';
import { CriticalWarning } from './log-pages.js';
import type { QueueEngine } from './queue-engine.js';
import { checkSnapshotVersion } from '../util/handover-fds.js';

const ASYNC_EVENTS_STATE_VERSION = 1;

/**
 * Asynchronous events in a live-upgrade snapshot: outstanding AERs are carried over (not completed), as are the
 * pending and masked events. The keep-alive timer starts over in the successor.
 */
export interface AsyncEventsState {
  version: number;
  requests: number[];
  pending: PendingEvent[];
  maskedTypes: number;
  temperatureWarningReported: boolean;
}

/** SMART / Health asynchronous event information: temperature threshold. */
const SMART_INFO_TEMPERATURE_THRESHOLD = 0x01;
/** setTimeout's limit; longer keep-alive timeouts (KATO is 32 bits of ms) are checked again when it fires. */
const MAX_TIMER_MILLIS = 2 ** 31 - 1;

interface PendingEvent {
  type: number;
  info: number;
  logPage: number;
}

export class AsyncEvents {
  /** Command ids of outstanding Asynchronous Event Requests, oldest first. */
  private readonly requests: number[] = [];
  private readonly pending: PendingEvent[] = [];
  /** Bit per event type: reported and not yet cleared by reading its log page. */
  private maskedTypes = 0;
  private temperatureWarningReported = false;

  private keepAliveTimer: NodeJS.Timeout | undefined;
  private lastKeepAlive = 0;
  /** Bumped by reset: a keep-alive check armed before it has nothing to check. */
  private epoch = 0;

  /** `keepAliveExpired` is called when the host stays silent for longer than the keep-alive timeout. */
  constructor(
    private readonly queues: QueueEngine,
    private readonly interrupts: InterruptCoalescer,
    private readonly features: FeatureState,
    private readonly keepAliveExpired: (fields: Record<string, unknown>) => void,
    private readonly logger: Logger,
  ) {}

  get outstandingRequests(): number {
    return this.requests.length;
  }

  snapshot(): AsyncEventsState {
    return {
      version: ASYNC_EVENTS_STATE_VERSION,
      requests: [...this.requests],
      pending: this.pending.map((event) => ({ ...event })),
      maskedTypes: this.maskedTypes,
      temperatureWarningReported: this.temperatureWarningReported,
    };
  }

  /** Takes on a predecessor's events; the keep-alive timer starts with `restartKeepAlive` once serving. */
  restore(state: AsyncEventsState): void {
    checkSnapshotVersion(state, 'NVMe asynchronous events', ASYNC_EVENTS_STATE_VERSION);
    if (state.requests.length > ASYNC_EVENT_REQUEST_LIMIT + 1) throw new Error('snapshot: too many outstanding AERs');
    this.requests.length = 0;
    this.requests.push(...state.requests);
    this.pending.length = 0;
    for (const event of state.pending) this.pending.push({ type: event.type, info: event.info, logPage: event.logPage });
    this.maskedTypes = state.maskedTypes;
    this.temperatureWarningReported = state.temperatureWarningReported;
  }

  /** Controller enable or reset: no requests, no events, no timer. */
  reset(): void {
    this.requests.length = 0;
    this.pending.length = 0;
    this.maskedTypes = 0;
    this.temperatureWarningReported = false;
    this.epoch++;
    this.stopKeepAlive();
  }

  /** Asynchronous Event Request `commandId`: false when the limit of outstanding requests is exceeded. */
  request(commandId: number): boolean {
    if (this.requests.length > ASYNC_EVENT_REQUEST_LIMIT) return false;
    this.requests.push(commandId);
    return true;
  }

  /**
   * Queues an event (once: an identical one already pending is not repeated). Inside an interrupt batch it is
   * delivered when the controller's processing pass ends; otherwise now.
   */
  raise(type: number, info: number, logPage: number): void {
    if (!this.queues.active) return;
    for (const event of this.pending) if (event.type === type && event.info === info) return;
    this.pending.push({ type, info, logPage });
    if (!this.interrupts.batching) {
      this.deliver();
      this.interrupts.scheduleFlush();
    }
  }

  /** Completes outstanding Asynchronous Event Requests with pending events whose type is not masked. */
  deliver(): void {
    const queues = this.queues;
    const adminSq = queues.adminQueue;
    if (!adminSq || !queues.active) return;
    const cq = adminSq.cq;
    while (this.requests.length > 0 && cq.freeSlots > 0) {
      const index = this.pending.findIndex((event) => (this.maskedTypes & (1 << event.type)) === 0);
      if (index < 0) return;
      const event = this.pending.splice(index, 1)[0]!;
      // Further events of this type wait until the host reads the log page (RAE = 0).
      this.maskedTypes |= 1 << event.type;
      const commandId = this.requests.shift()!;
      cq.reserved++;
      const dw0 = event.type | (event.info << 8) | (event.logPage << 16);
      queues.postCompletion(cq, dw0, adminSq, commandId, Status.SUCCESS);
      this.logger.debug('asynchronous event reported', { ...event, cid: commandId });
    }
  }

  /** The host read log page `lid` with RAE cleared: events reported for it may be reported again. */
  logPageConsumed(lid: number): void {
    if (lid === LogPageId.ERROR_INFORMATION) this.maskedTypes &= ~(1 << AsyncEvent.TYPE_ERROR);
    else if (lid === LogPageId.SMART_HEALTH) this.maskedTypes &= ~(1 << AsyncEvent.TYPE_SMART);
    else if (lid === LogPageId.CHANGED_NAMESPACE_LIST) this.maskedTypes &= ~(1 << AsyncEvent.TYPE_NOTICE);
  }

  /** Temperature thresholds or event configuration changed: re-evaluates the SMART temperature warning. */
  checkTemperature(): void {
    const warning = this.features.temperatureWarning;
    if (!warning) {
      this.temperatureWarningReported = false;
      return;
    }
    if (this.temperatureWarningReported) return;
    if ((this.features.asyncEventConfig & CriticalWarning.TEMPERATURE) === 0) return;
    this.temperatureWarningReported = true;
    this.raise(AsyncEvent.TYPE_SMART, SMART_INFO_TEMPERATURE_THRESHOLD, LogPageId.SMART_HEALTH);
  }

  // ---- keep alive --------------------------------------------------------------------------------------------

  /** Keep Alive command: the host is alive now. */
  keepAlive(): void {
    this.lastKeepAlive = Date.now();
  }

  /** The Keep Alive Timer feature changed: the timer starts over with the new timeout (0 = none). */
  restartKeepAlive(): void {
    this.stopKeepAlive();
    const timeout = this.features.keepAliveMillis;
    if (timeout === 0 || !this.queues.active) return;
    this.lastKeepAlive = Date.now();
    const epoch = this.epoch;
    const check = (): void => {
      this.keepAliveTimer = undefined;
      if (epoch !== this.epoch || !this.queues.active) return;
      const idle = Date.now() - this.lastKeepAlive;
      if (idle >= timeout) this.keepAliveExpired({ keepAliveMillis: timeout, idleMillis: idle });
      else this.keepAliveTimer = setTimeout(check, Math.min(timeout - idle, MAX_TIMER_MILLIS)).unref();
    };
    this.keepAliveTimer = setTimeout(check, Math.min(timeout, MAX_TIMER_MILLIS)).unref();
  }

  stopKeepAlive(): void {
    if (this.keepAliveTimer) clearTimeout(this.keepAliveTimer);
    this.keepAliveTimer = undefined;
  }
}
