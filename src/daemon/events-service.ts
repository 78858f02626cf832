/**
 * vfiod.v1.EventService.WatchEvents over the event log (events.ts). A stream is a cursor into the kept events: it
 * sends what follows its cursor while the client takes it (grpc-js write() answers false once the client's HTTP/2
 * window and the stream's buffer are full), and waits for 'drain' otherwise. A waiting stream holds no events of its
 * own, so a client that never reads costs the daemon a cursor; once the log has run `maxLag` events past it, the
 * stream ends with RESOURCE_EXHAUSTED EVENT_STREAM_OVERFLOW naming the last sequence it was sent.
 */
import * as grpc from '@grpc/grpc-js';
import { VfiodError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { EventLog, EventRecord, EventResourceType, ReplayStart } from './events.js';
import { operationMessage, type OperationRecord } from './operations.js';
import { invalid, toStatus } from './requests.js';

/** Default of how far a stream may fall behind the log before it is dropped (--event-stream-max-lag). */
export const DEFAULT_EVENT_STREAM_MAX_LAG = 1000;
/** Events read from the store at a time. */
const PAGE = 100;

const RESOURCE_TYPES: Record<string, EventResourceType> = {
  EVENT_RESOURCE_TYPE_DEVICE: 'device',
  EVENT_RESOURCE_TYPE_CONTROLLER: 'controller',
  EVENT_RESOURCE_TYPE_ATTACHMENT: 'attachment',
  EVENT_RESOURCE_TYPE_OPERATION: 'operation',
};

interface WatchEventsRequest {
  start?: 'afterSequence' | 'sinceUnixMs' | 'tailSeconds' | 'tailEvents';
  afterSequence: number;
  sinceUnixMs: number;
  tailSeconds: number;
  tailEvents: number;
  resourceTypes: string[];
  stopAfterReplay: boolean;
}

/** The vfiod.v1.Event message of a logged event. */
export function eventMessage(event: EventRecord): Record<string, unknown> {
  const snapshot = event.snapshot;
  return {
    sequence: event.sequence,
    time: new Date(event.timeMs).toISOString(),
    resourceType: `EVENT_RESOURCE_TYPE_${event.resourceType.toUpperCase()}`,
    resourceName: event.resourceName,
    action: event.action,
    vmId: event.vmId,
    detail: event.detail,
    ...(snapshot && 'device' in snapshot ? { device: { ...snapshot.device, kind: `DEVICE_EVENT_KIND_${snapshot.device.kind}` } } : {}),
    ...(snapshot && 'attachment' in snapshot ? { attachment: snapshot.attachment } : {}),
    ...(snapshot && 'operation' in snapshot ? { operation: operationMessage({ ...(snapshot.operation as unknown as OperationRecord), eventSequence: event.sequence }) } : {}),
  };
}

function replayStart(request: WatchEventsRequest): ReplayStart | undefined {
  switch (request.start) {
    case 'afterSequence':
      return { afterSequence: request.afterSequence };
    case 'sinceUnixMs':
      return { sinceMs: request.sinceUnixMs };
    case 'tailSeconds':
      return { sinceMs: Date.now() - request.tailSeconds * 1000 };
    case 'tailEvents':
      return { tailEvents: request.tailEvents };
    default:
      return undefined;
  }
}

function resourceTypes(names: string[]): Set<EventResourceType> | undefined {
  if (!names?.length) return undefined;
  return new Set(
    names.map((name, i) => {
      const type = RESOURCE_TYPES[name];
      if (!type) throw invalid(`resource_types[${i}] ${name} is not a resource type (EVENT_RESOURCE_TYPE_DEVICE, _CONTROLLER, _ATTACHMENT or _OPERATION)`, `resource_types[${i}]`);
      return type;
    }),
  );
}

export function eventService(deps: { events: EventLog; maxLag?: number; logger: Logger }): grpc.UntypedServiceImplementation {
  const { events } = deps;
  const maxLag = Math.min(deps.maxLag ?? DEFAULT_EVENT_STREAM_MAX_LAG, events.retention);
  const logger = deps.logger.child({ service: 'EventService' });
  return {
    WatchEvents: (call: grpc.ServerWritableStream<WatchEventsRequest, unknown>) => {
      let cursor: number;
      let types: Set<EventResourceType> | undefined;
      try {
        types = resourceTypes(call.request.resourceTypes);
        const start = replayStart(call.request);
        cursor = start ? events.replayAfter(start) : events.lastSequence;
      } catch (error) {
        // grpc-js sends an 'error' emitted on a server stream as the call's status.
        call.emit('error', toStatus(error, 'WatchEvents', logger));
        return;
      }
      const replayThrough = events.lastSequence;
      const stopAfterReplay = call.request.stopAfterReplay;
      let lastSent = cursor;
      let blocked = false;
      let ended = false;

      const end = (): void => {
        if (ended) return;
        ended = true;
        unsubscribe();
        stopClosing();
      };
      const fail = (error: VfiodError): void => {
        end();
        logger.warn('event stream dropped', { reason: error.reason, lastSequence: lastSent, peer: call.getPeer() });
        call.emit('error', toStatus(error, 'WatchEvents', logger));
      };
      const overflow = (head: number): VfiodError =>
        new VfiodError(
          'RESOURCE_EXHAUSTED',
          `event stream dropped: the client read too slowly and fell ${head - cursor} events behind (at most ${maxLag}); it was sent every event up to sequence ${lastSent}: watch again with after_sequence ${lastSent}`,
          { reason: 'EVENT_STREAM_OVERFLOW', lastSequence: lastSent, maxLag },
        );

      /** Sends what follows the cursor until the log is exhausted or the client stops taking. */
      const pump = (): void => {
        while (!blocked && !ended) {
          if (cursor < events.prunedThrough.sequence) return fail(overflow(events.lastSequence));
          const page = events.after(cursor, PAGE);
          let replayed = stopAfterReplay && page.length < PAGE;
          for (const event of page) {
            if (stopAfterReplay && event.sequence > replayThrough) {
              replayed = true;
              break;
            }
            cursor = event.sequence;
            if (types && !types.has(event.resourceType)) continue;
            lastSent = event.sequence;
            if (!call.write({ event: eventMessage(event) })) {
              blocked = true;
              call.once('drain', () => {
                blocked = false;
                pump();
              });
              return;
            }
          }
          if (replayed || (stopAfterReplay && cursor >= replayThrough)) {
            end();
            call.end();
            return;
          }
          if (page.length < PAGE) return;
        }
      };

      const unsubscribe = events.subscribe((event) => {
        if (ended) return;
        if (!blocked) return pump();
        if (event.sequence - cursor > maxLag) fail(overflow(event.sequence));
      });
      const stopClosing = events.onClose(() => {
        end();
        call.end();
      });
      call.on('cancelled', end);
      call.on('close', end);
      call.on('error', end);
      // Headers now, not with the first event: a client that sees them knows it will get every later event.
      call.sendMetadata(new grpc.Metadata());
      pump();
    },
  };
}
