/**
 * `vfiod events`: the daemon's event log (EventService.WatchEvents): replay after a sequence number, from a time or
 * the last n events, and with --follow every new event as it happens.
 */
import * as grpc from '@grpc/grpc-js';
import { ApiError, present } from '../daemon/client.js';
import type { EventResourceType } from '../daemon/generated/vfiod/v1/EventResourceType.js';
import type { WatchEventsResponse__Output } from '../daemon/generated/vfiod/v1/WatchEventsResponse.js';
import { CLIENT_EXIT, type ClientDeps, UsageError, integer, noPositionals, shortEnum } from './common.js';
import { CONNECTION_HELP, withClient } from './remote.js';

export const EVENTS_USAGE = `Usage: vfiod events [--after <seq> | --since <10m|2h|1d|RFC 3339 time> | --tail <n>] [--follow]
                    [--type device,controller,attachment,operation]

The daemon's events (devices, controllers, attachments, operations), each with its sequence number and time. The
daemon keeps the last ones (default 10000) across restarts. Without a start, the last 20; without --follow, the
command ends after the replay. --follow keeps printing new events (resume later with --after <last seq>).

${CONNECTION_HELP}`;

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "10m" ago, or an RFC 3339 time, as Unix milliseconds. */
export function sinceMs(text: string, now = Date.now()): number {
  const relative = /^(\d+)([smhd])$/.exec(text);
  if (relative) return now - Number(relative[1]) * UNITS[relative[2]!]!;
  const absolute = Date.parse(text);
  if (/^\d{4}-\d\d-\d\d/.test(text) && Number.isFinite(absolute)) return absolute;
  throw new UsageError(`--since ${text}: give a duration such as 30s, 10m, 2h, 1d or a time such as 2026-12-07T12:00:00Z`);
}

/** --type's names and the resource types they stand for. */
const RESOURCE_TYPES: Record<string, EventResourceType> = {
  device: 'EVENT_RESOURCE_TYPE_DEVICE',
  controller: 'EVENT_RESOURCE_TYPE_CONTROLLER',
  attachment: 'EVENT_RESOURCE_TYPE_ATTACHMENT',
  operation: 'EVENT_RESOURCE_TYPE_OPERATION',
};

/** --type device,controller,... as resource types. */
export function resourceTypesOption(text: string | undefined): EventResourceType[] {
  return (text ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)
    .map((t) => {
      const type = Object.hasOwn(RESOURCE_TYPES, t.toLowerCase()) ? RESOURCE_TYPES[t.toLowerCase()] : undefined;
      if (!type) throw new UsageError(`--type ${t}: not a resource type (${Object.keys(RESOURCE_TYPES).join(', ')})`);
      return type;
    });
}

export async function runEvents(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const options = { after: { type: 'string' }, since: { type: 'string' }, tail: { type: 'string' }, follow: { type: 'boolean', short: 'f' }, type: { type: 'string' } } as const;
  return withClient('events', EVENTS_USAGE, argv, options, deps, async (ctx, v, positionals) => {
    noPositionals(positionals);
    if ([v.after, v.since, v.tail].filter((x) => x !== undefined).length > 1) throw new UsageError('give one of --after, --since, --tail');
    const start =
      v.after !== undefined
        ? { afterSequence: integer('--after', v.after, 0, Number.MAX_SAFE_INTEGER) }
        : v.since !== undefined
          ? { sinceUnixMs: sinceMs(v.since) }
          : v.tail !== undefined
            ? { tailEvents: integer('--tail', v.tail, 0, 1_000_000) }
            : v.follow
              ? {}
              : { tailEvents: 20 };
    const resourceTypes = resourceTypesOption(v.type);
    const stream = ctx.client.stream('EventService', 'WatchEvents', { ...start, resourceTypes, stopAfterReplay: !v.follow });
    const stop = (): void => stream.cancel();
    process.once('SIGINT', stop);
    try {
      await new Promise<void>((resolve, reject) => {
        stream.on('data', (response: WatchEventsResponse__Output) => {
          const e = present(response.event, 'WatchEvents', 'event');
          if (ctx.json) ctx.out(`${JSON.stringify(e)}\n`);
          else ctx.out(`${e.sequence}  ${e.time}  ${shortEnum(e.resourceType, 'EVENT_RESOURCE_TYPE_')}  ${e.resourceName}  ${e.action}${e.vmId ? `  vm=${e.vmId}` : ''}${e.detail ? `  ${e.detail}` : ''}\n`);
        });
        stream.on('end', resolve);
        stream.on('error', (error: grpc.ServiceError) => (error.code === grpc.status.CANCELLED ? resolve() : reject(ApiError.from(error, 'WatchEvents'))));
      });
    } finally {
      process.off('SIGINT', stop);
    }
    return CLIENT_EXIT.ok;
  });
}
