/**
 * What every service of the gRPC API shares for its requests:
 * - argument checks: request fields (text, PCI addresses, waits) are checked here, and a bad one is INVALID_ARGUMENT
 *   naming the field;
 * - status mapping: VfiodError codes map 1:1 onto gRPC status codes (the way FeOS maps its own errors). Anything
 *   else that escapes a handler is a bug: INTERNAL, with a log line carrying the RPC and the request;
 * - the handler wrapper (`unary`) and the tracker of running handlers that shutdown waits for.
 */
import * as grpc from '@grpc/grpc-js';
import { type ErrorCode, VfiodError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { normalizeBdf } from '../util/pci-address.js';

export const GRPC_STATUS: Record<ErrorCode, grpc.status> = {
  NOT_FOUND: grpc.status.NOT_FOUND,
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  DEADLINE_EXCEEDED: grpc.status.DEADLINE_EXCEEDED,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
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

/** `message` cut to about MAX_STATUS_DETAILS characters in the middle (the end often says what went wrong). */
export function boundedDetails(message: string): string {
  if (message.length <= MAX_STATUS_DETAILS) return message;
  const tail = 500;
  const head = MAX_STATUS_DETAILS - tail;
  return `${message.slice(0, head)} ...(${message.length - head - tail} characters cut)... ${message.slice(-tail)}`;
}

/** A bad request: INVALID_ARGUMENT with a message that names the RPC's subject. */
export function invalid(message: string): VfiodError {
  return new VfiodError('INVALID_ARGUMENT', message);
}

/** A BDF from a request field, normalised; INVALID_ARGUMENT naming the field when it is missing or malformed. */
export function requestBdf(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw invalid(`${field} is required (a PCI address such as 0000:01:00.1)`);
  if (value.length > 64) throw invalid(`${field} (${value.length} characters) is not a PCI address (expected 0000:01:00.1 or 01:00.1)`);
  const bdf = normalizeBdf(value);
  if (!bdf) throw invalid(`${field} '${value}' is not a PCI address (expected 0000:01:00.1 or 01:00.1)`);
  return bdf;
}

/** Longest identifier (VM id, owner, device id, path) a request may carry; FeOS's VM ids are UUIDs. */
export const MAX_TEXT_FIELD = 256;

/**
 * A required text field: INVALID_ARGUMENT naming the field when it is missing, longer than MAX_TEXT_FIELD, or holds
 * control characters (a NUL cannot be in a path; newlines would forge log lines and table rows).
 */
export function requireText(value: unknown, field: string, what: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw invalid(`${field} is required (${what})`);
  return checkText(value, field);
}

/** An optional text field ('' = not given) with the same limits as requireText. */
export function optionalText(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw invalid(`${field} must be a string`);
  return checkText(value, field);
}

/** Longest wait a request may ask for: setTimeout cannot go past 2^31-1 ms, and no guest or VMM needs an hour. */
export const MAX_WAIT_MS = 3_600_000;

/** A proto3 uint32 wait in milliseconds (0 = default); INVALID_ARGUMENT naming the field above MAX_WAIT_MS. */
export function waitMs(value: unknown, field: string): number {
  const ms = typeof value === 'number' ? value : 0;
  if (!Number.isInteger(ms) || ms < 0 || ms > MAX_WAIT_MS) throw invalid(`${field} ${String(value)} is more than ${MAX_WAIT_MS} ms (1 hour)`);
  return ms;
}

function checkText(value: string, field: string): string {
  if (value.length > MAX_TEXT_FIELD) throw invalid(`${field} is ${value.length} characters long; the limit is ${MAX_TEXT_FIELD}`);
  if (/[\x00-\x1f\x7f]/.test(value)) throw invalid(`${field} ${JSON.stringify(value)} contains control characters`);
  return value;
}

/** Converts whatever a handler threw into a gRPC status; unexpected errors are logged and become INTERNAL. */
export function toStatus(error: unknown, rpc: string, logger: Logger): StatusError {
  if (error instanceof VfiodError) {
    const details = boundedDetails(error.message);
    logger.info('request refused', { rpc, code: error.code, error: details });
    const metadata = new grpc.Metadata();
    metadata.set('vfiod-error-code', error.code);
    return { code: GRPC_STATUS[error.code], details, metadata };
  }
  const message = error instanceof Error ? error.message : String(error);
  logger.error('request failed unexpectedly', { rpc, error: boundedDetails(message) });
  return { code: grpc.status.INTERNAL, details: boundedDetails(`${rpc}: internal error: ${message}`) };
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
