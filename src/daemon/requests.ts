/**
 * What every service of the gRPC API shares for its requests:
 * - argument checks: request fields (text, PCI addresses, waits) are checked here, and a bad one is INVALID_ARGUMENT
 *   naming the field;
 * - status mapping: VfiodError codes map 1:1 onto gRPC status codes (the way FeOS maps its own errors). Anything
 *   else that escapes a handler is a bug: INTERNAL, with a log line carrying the RPC and the request;
 * - the handler wrapper (`unary`) and the tracker of running handlers that shutdown waits for.
 */
import * as grpc from '@grpc/grpc-js';
import type { Reason } from '../util/error-reasons.js';
import { type ErrorCode, VfiodError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { normalizeBdf } from '../util/pci-address.js';
import { type ExactHandlers, type ServiceHandlers, type ServiceName, serviceDefinition } from './proto.js';
import { encodeStatusDetails, STATUS_DETAILS_KEY } from './status-details.js';

export const GRPC_STATUS: Record<ErrorCode, grpc.status> = {
  NOT_FOUND: grpc.status.NOT_FOUND,
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  DEADLINE_EXCEEDED: grpc.status.DEADLINE_EXCEEDED,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  INTERNAL: grpc.status.INTERNAL,
};

export interface StatusError {
  code: grpc.status;
  details: string;
  metadata?: grpc.Metadata;
}

/**
 * Longest status message sent. grpc-js clients refuse trailers over 8 KiB (their default max metadata size), and a
 * refused trailer leaves the call, and for a while the whole channel, hanging: a message that echoes a huge request
 * field must never get there.
 */
export const MAX_STATUS_DETAILS = 2000;

/**
 * grpc-js sends the message as encodeURI(message) (non-ASCII characters become up to 12 bytes) next to the
 * grpc-status-details-bin trailer (at most MAX_STATUS_BYTES, 4/3 of that in base64): both must fit in 8 KiB.
 */
export const MAX_STATUS_DETAILS_ENCODED = 4000;

/**
 * `message` cut to about MAX_STATUS_DETAILS characters in the middle (the end often says what went wrong), and
 * further while grpc-js's encoding of it would pass MAX_STATUS_DETAILS_ENCODED bytes. A cut never leaves half of a
 * surrogate pair (encodeURI throws on one).
 */
export function boundedDetails(message: string): string {
  const text = wellFormed(message);
  for (let max = MAX_STATUS_DETAILS; ; max = Math.floor(max / 2)) {
    const bounded = cutMiddle(text, max);
    if (encodeURI(bounded).length <= MAX_STATUS_DETAILS_ENCODED || max < 100) return bounded;
  }
}

function cutMiddle(message: string, max: number): string {
  if (message.length <= max) return message;
  const tail = Math.min(500, Math.floor(max / 4));
  const head = max - tail;
  return wellFormed(`${message.slice(0, head)} ...(${message.length - head - tail} characters cut)... ${message.slice(-tail)}`);
}

/** `text` with lone surrogates replaced by U+FFFD. */
function wellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/**
 * A bad request: INVALID_ARGUMENT with a message that names the RPC's subject, a reason (default FIELD_INVALID) and
 * the field (sent as `field` metadata and a google.rpc.BadRequest field violation).
 */
export function invalid(message: string, field?: string, reason: Reason = 'FIELD_INVALID', details: Record<string, unknown> = {}): VfiodError {
  return new VfiodError('INVALID_ARGUMENT', message, { reason, ...(field !== undefined ? { field: fieldPath(field) } : {}), ...details });
}

/** The field's path in the request, without the subject a label names first ("VM vm1: timeout_ms" -> "timeout_ms"). */
function fieldPath(label: string): string {
  const at = label.lastIndexOf(': ');
  return at < 0 ? label : label.slice(at + 2);
}

/** A BDF from a request field, normalised; INVALID_ARGUMENT naming the field when it is missing or malformed. */
export function requestBdf(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw invalid(`${field} is required (a PCI address such as 0000:01:00.1)`, field, 'FIELD_REQUIRED');
  if (value.length > 64) throw invalid(`${field} (${value.length} characters) is not a PCI address (expected 0000:01:00.1 or 01:00.1)`, field, 'PCI_ADDRESS_INVALID');
  const bdf = normalizeBdf(value);
  if (!bdf) throw invalid(`${field} '${value}' is not a PCI address (expected 0000:01:00.1 or 01:00.1)`, field, 'PCI_ADDRESS_INVALID');
  return bdf;
}

/** Longest identifier (VM id, owner, device id, path) a request may carry; FeOS's VM ids are UUIDs. */
export const MAX_TEXT_FIELD = 256;

/**
 * A required text field: INVALID_ARGUMENT naming the field when it is missing, longer than MAX_TEXT_FIELD, or holds
 * control characters (a NUL cannot be in a path; newlines would forge log lines and table rows).
 */
export function requireText(value: unknown, field: string, what: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw invalid(`${field} is required (${what})`, field, 'FIELD_REQUIRED');
  return checkText(value, field);
}

/** An optional text field ('' = not given) with the same limits as requireText. */
export function optionalText(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw invalid(`${field} must be a string`, field);
  return checkText(value, field);
}

/** Longest wait a request may ask for: setTimeout cannot go past 2^31-1 ms, and no guest or VMM needs an hour. */
export const MAX_WAIT_MS = 3_600_000;

/** A proto3 uint32 wait in milliseconds (0 = default); INVALID_ARGUMENT naming the field above MAX_WAIT_MS. */
export function waitMs(value: unknown, field: string): number {
  const ms = typeof value === 'number' ? value : 0;
  if (!Number.isInteger(ms) || ms < 0 || ms > MAX_WAIT_MS) throw invalid(`${field} ${String(value)} is more than ${MAX_WAIT_MS} ms (1 hour)`, field, 'FIELD_OUT_OF_RANGE', { value: String(value), min: 0, max: MAX_WAIT_MS });
  return ms;
}

function checkText(value: string, field: string): string {
  if (value.length > MAX_TEXT_FIELD) {
    throw invalid(`${field} is ${value.length} characters long; the limit is ${MAX_TEXT_FIELD}`, field, 'FIELD_TOO_LONG', { length: value.length, limit: MAX_TEXT_FIELD });
  }
  if (/[\x00-\x1f\x7f]/.test(value)) throw invalid(`${field} ${JSON.stringify(value)} contains control characters`, field, 'FIELD_CONTROL_CHARACTERS');
  return value;
}

/**
 * Converts whatever a handler threw into a gRPC status; unexpected errors are logged and become INTERNAL. Every status
 * carries a google.rpc.Status in the grpc-status-details-bin trailer (src/daemon/status-details.ts): the reason and
 * facts of a VfiodError, INTERNAL_ERROR for anything else. The `vfiod-error-code` trailer (the VfiodError code, which
 * is also the gRPC code's name) stays for clients written before the details.
 */
export function toStatus(error: unknown, rpc: string, logger: Logger): StatusError {
  const metadata = new grpc.Metadata();
  if (error instanceof VfiodError) {
    const details = boundedDetails(error.message);
    logger.info('request refused', { rpc, code: error.code, reason: error.reason, error: details });
    metadata.set('vfiod-error-code', error.code);
    metadata.set(STATUS_DETAILS_KEY, encodeStatusDetails(error.code, details, error.details));
    return { code: GRPC_STATUS[error.code], details, metadata };
  }
  const message = error instanceof Error ? error.message : String(error);
  logger.error('request failed unexpectedly', { rpc, error: boundedDetails(message) });
  const details = boundedDetails(`${rpc}: internal error: ${message}`);
  metadata.set('vfiod-error-code', 'INTERNAL');
  metadata.set(STATUS_DETAILS_KEY, encodeStatusDetails('INTERNAL', details, { reason: 'INTERNAL_ERROR', rpc }));
  return { code: grpc.status.INTERNAL, details, metadata };
}

type UnaryHandler<Req, Res> = (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res;

/**
 * The unary handlers still running. A cancelled call (client gone, or the daemon's drain timeout) does not stop its
 * handler: a hot-plug keeps going and rolls back on its own. Shutdown waits for them before it closes the claims
 * database, or a rollback would find it closed and leave a device bound to vfio-pci with a half-written claim.
 */
export class HandlerTracker {
  private running = 0;
  private idle: Array<() => void> = [];

  get size(): number {
    return this.running;
  }

  /** Wraps every unary handler of a service implementation (server streams are ended by the daemon itself). */
  wrap(implementation: grpc.UntypedServiceImplementation, streaming: readonly string[] = []): grpc.UntypedServiceImplementation {
    const wrapped: grpc.UntypedServiceImplementation = {};
    for (const [name, handler] of Object.entries(implementation)) {
      if (streaming.includes(name)) {
        wrapped[name] = handler;
        continue;
      }
      const unaryHandler = handler as grpc.handleUnaryCall<unknown, unknown>;
      wrapped[name] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        this.running++;
        unaryHandler(call, (error, value) => {
          this.finished();
          callback(error, value);
        });
      }) as grpc.handleUnaryCall<unknown, unknown>;
    }
    return wrapped;
  }

  /** Work that outlives its call (an operation's attach or detach): shutdown waits for it as for a handler. */
  track(work: Promise<unknown>): void {
    this.running++;
    void work.finally(() => this.finished()).catch(() => undefined);
  }

  /** Resolves true once no handler runs, false when `timeoutMs` passed first. */
  settled(timeoutMs: number): Promise<boolean> {
    if (this.running === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idle.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private finished(): void {
    this.running--;
    if (this.running > 0) return;
    for (const wake of this.idle.splice(0)) wake();
  }
}

/**
 * The grpc-js implementation of service `name`: every unary handler wrapped by `unary` (its errors become statuses),
 * server-streaming handlers as they are.
 */
export function implementService<S extends ServiceName, H extends ServiceHandlers<S> & ExactHandlers<H, ServiceHandlers<S>>>(name: S, logger: Logger, handlers: H): grpc.UntypedServiceImplementation {
  const definition = serviceDefinition(name) as grpc.ServiceDefinition;
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [rpc, handler] of Object.entries(handlers) as Array<[string, grpc.UntypedHandleCall]>) {
    implementation[rpc] = definition[rpc]?.responseStream ? handler : unary(rpc, logger, handler as unknown as UnaryHandler<unknown, unknown>);
  }
  return implementation;
}

/** Wraps a unary handler: request errors become statuses, nothing a client sends can crash the daemon. */
export function unary<Req, Res>(rpc: string, logger: Logger, handler: UnaryHandler<Req, Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => handler(call.request, call))
      .then(
      (response) => callback(null, response),
      (error: unknown) => callback(toStatus(error, rpc, logger)),
    );
  };
}
