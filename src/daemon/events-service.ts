/**
 * vfiod.v1.EventService.WatchEvents (and DeviceService.StreamDeviceEvents, a live view of the device events) over the
 * event log (events.ts). A stream is a cursor into the kept events: it
 * sends what follows its cursor while the client takes it (grpc-js write() answers false once the client's HTTP/2
 * window and the stream's buffer are full), and waits for 'drain' otherwise. A waiting stream holds no events of its
 * own, so a client that never reads costs the daemon a cursor; once the log has run `maxLag` events past it, the
 * stream ends with RESOURCE_EXHAUSTED EVENT_STREAM_OVERFLOW naming the last sequence it was sent.
 */
import * as grpc from '@grpc/grpc-js';
import { VfiodError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { deviceEventKindName, type EventLog, type EventRecord, type EventResourceType, type ReplayStart } from './events.js';
import type { Event } from './generated/vfiod/v1/Event.js';
import type { EventResourceType as EventResourceTypeName, EventResourceType__Output as EventResourceTypeName__Output } from './generated/vfiod/v1/EventResourceType.js';
import type { WatchEventsRequest__Output } from './generated/vfiod/v1/WatchEventsRequest.js';
import { operationMessage } from './operations.js';
import { implementService, invalid, toStatus } from './requests.js';

/** Default of how far a stream may fall behind the log before it is dropped (--event-stream-max-lag). */
export const DEFAULT_EVENT_STREAM_MAX_LAG = 1000;
/** Events read from the store at a time. */
const PAGE = 100;

const RESOURCE_TYPE_NAMES: Record<EventResourceType, EventResourceTypeName> = {
  device: 'EVENT_RESOURCE_TYPE_DEVICE',
  controller: 'EVENT_RESOURCE_TYPE_CONTROLLER',
  attachment: 'EVENT_RESOURCE_TYPE_ATTACHMENT',
  operation: 'EVENT_RESOURCE_TYPE_OPERATION',
};

const resourceTypeOf = (name: EventResourceTypeName__Output): EventResourceType | undefined =>
  (Object.keys(RESOURCE_TYPE_NAMES) as EventResourceType[]).find((type) => RESOURCE_TYPE_NAMES[type] === name);

/** The vfiod.v1.Event message of a logged event. */
export function eventMessage(event: EventRecord): Event {
  const snapshot = event.snapshot;
  return {
    sequence: event.sequence,
    time: new Date(event.timeMs).toISOString(),
    resourceType: RESOURCE_TYPE_NAMES[event.resourceType],
    resourceName: event.resourceName,
    action: event.action,
    vmId: event.vmId,
    detail: event.detail,
    ...(snapshot && 'device' in snapshot ? { device: { ...snapshot.device, kind: deviceEventKindName(snapshot.device.kind) } } : {}),
    ...(snapshot && 'attachment' in snapshot ? { attachment: snapshot.attachment } : {}),
    ...(snapshot && 'operation' in snapshot ? { operation: operationMessage({ ...snapshot.operation, eventSequence: event.sequence }) } : {}),
  };
}

function replayStart(request: WatchEventsRequest__Output): ReplayStart | undefined {
  switch (request.start) {
    case 'afterSequence':
      return { afterSequence: request.afterSequence ?? 0 };
    case 'sinceUnixMs':
      return { sinceMs: request.sinceUnixMs ?? 0 };
    case 'tailSeconds':
      return { sinceMs: Date.now() - (request.tailSeconds ?? 0) * 1000 };
    case 'tailEvents':
      return { tailEvents: request.tailEvents ?? 0 };
    default:
      return undefined;
  }
}

function resourceTypes(names: EventResourceTypeName__Output[]): Set<EventResourceType> | undefined {
  if (!names?.length) return undefined;
  return new Set(
    names.map((name, i) => {
      const type = resourceTypeOf(name);
      if (!type) throw invalid(`resource_types[${i}] ${name} is not a resource type (EVENT_RESOURCE_TYPE_DEVICE, _CONTROLLER, _ATTACHMENT or _OPERATION)`, `resource_types[${i}]`);
      return type;
    }),
  );
}

/**
 * Streams the log to `call` from after `after`: each event `message` maps to something (undefined: not for this
 * stream) is written while the client takes it; with `stopAfter`, the stream ends once the log is sent up to that
 * sequence. Shared by WatchEvents and StreamDeviceEvents.
 */
export function streamEvents<Request, Response>(
  call: grpc.ServerWritableStream<Request, Response>,
  options: { events: EventLog; logger: Logger; rpc: string; maxLag: number; after: number; stopAfter?: number; message: (event: EventRecord) => Response | undefined },
): void {
  const { events, logger, rpc, maxLag, stopAfter, message } = options;
  let cursor = options.after;
  let lastSent = cursor;
  let blocked = false;
  let ended = false;

  const end = (): void => {
    if (ended) return;
    ended = true;
    unsubscribe();
    stopClosing();
  };
  const overflow = (head: number): void => {
    end();
    const error = new VfiodError(
      'RESOURCE_EXHAUSTED',
      `event stream dropped: the client read too slowly and fell ${head - cursor} events behind (at most ${maxLag}); it was sent every event up to sequence ${lastSent}: watch again with after_sequence ${lastSent}`,
      { reason: 'EVENT_STREAM_OVERFLOW', lastSequence: lastSent, maxLag },
    );
    logger.warn('event stream dropped', { rpc, reason: error.reason, lastSequence: lastSent, peer: call.getPeer() });
    // grpc-js sends an 'error' emitted on a server stream as the call's status, after the messages already written.
    call.emit('error', toStatus(error, rpc, logger));
  };

  /** Sends what follows the cursor until the log is exhausted or the client stops taking. */
  const pump = (): void => {
    while (!blocked && !ended) {
      if (cursor < events.prunedThrough.sequence) return overflow(events.lastSequence);
      const page = events.after(cursor, PAGE);
      let done = stopAfter !== undefined && page.length < PAGE;
      for (const event of page) {
        if (stopAfter !== undefined && event.sequence > stopAfter) {
          done = true;
          break;
        }
        cursor = event.sequence;
        const written = message(event);
        if (!written) continue;
        lastSent = event.sequence;
        if (!call.write(written)) {
          blocked = true;
          call.once('drain', () => {
            blocked = false;
            pump();
          });
          return;
        }
      }
      if (done || (stopAfter !== undefined && cursor >= stopAfter)) {
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
    if (event.sequence - cursor > maxLag) overflow(event.sequence);
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
}

export function eventService(deps: { events: EventLog; maxLag: number; logger: Logger }): grpc.UntypedServiceImplementation {
  const { events, maxLag } = deps;
  const logger = deps.logger.child({ service: 'EventService' });
  return implementService('EventService', logger, {
    WatchEvents: (call) => {
      let after: number;
      let types: Set<EventResourceType> | undefined;
      try {
        types = resourceTypes(call.request.resourceTypes);
        const start = replayStart(call.request);
        after = start ? events.replayAfter(start) : events.lastSequence;
      } catch (error) {
        // grpc-js sends an 'error' emitted on a server stream as the call's status.
        call.emit('error', toStatus(error, 'WatchEvents', logger));
        return;
      }
      streamEvents(call, {
        events,
        logger,
        rpc: 'WatchEvents',
        maxLag,
        after,
        ...(call.request.stopAfterReplay ? { stopAfter: events.lastSequence } : {}),
        message: (event) => (types && !types.has(event.resourceType) ? undefined : { event: eventMessage(event) }),
      });
    },
  });
}

/** How far a stream may fall behind: the daemon's setting, at most what the log keeps. */
export function streamMaxLag(events: EventLog, setting = DEFAULT_EVENT_STREAM_MAX_LAG): number {
  return Math.min(setting, events.retention);
}
