/**
 * VfiodError codes map 1:1 onto gRPC status codes (the way FeOS maps its own errors). Anything else that escapes a
 * handler is a bug: INTERNAL, with a log line carrying the RPC and the request.
 */
import * as grpc from '@grpc/grpc-js';
import { type ErrorCode, VfiodError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

export const GRPC_STATUS: Record<ErrorCode, grpc.status> = {
  NOT_FOUND: grpc.status.NOT_FOUND,
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  DEADLINE_EXCEEDED: grpc.status.DEADLINE_EXCEEDED,
  INTERNAL: grpc.status.INTERNAL,
};

export interface StatusError {
  code: grpc.status;
  details: string;
  metadata?: grpc.Metadata;
}

/** A bad request: INVALID_ARGUMENT with a message that names the RPC's subject. */
export function invalid(message: string): VfiodError {
  return new VfiodError('INVALID_ARGUMENT', message);
}

/** Converts whatever a handler threw into a gRPC status; unexpected errors are logged and become INTERNAL. */
export function toStatus(error: unknown, rpc: string, logger: Logger): StatusError {
  if (error instanceof VfiodError) {
    logger.info('request refused', { rpc, code: error.code, error: error.message });
    const metadata = new grpc.Metadata();
    metadata.set('vfiod-error-code', error.code);
    return { code: GRPC_STATUS[error.code], details: error.message, metadata };
  }
  const message = error instanceof Error ? error.message : String(error);
  logger.error('request failed unexpectedly', { rpc, error });
  return { code: grpc.status.INTERNAL, details: `${rpc}: internal error: ${message}` };
}

type UnaryHandler<Req, Res> = (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res;

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
