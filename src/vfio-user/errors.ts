/**
 * Errors a vfio-user request can fail with. The protocol carries Linux errno numbers in the reply header, so every
 * failure a client can see is a `VfioUserError` with one of the `Errno` values (src/spec/vfio.ts) and a message for
 * the log.
 */
import { Errno } from '../spec/vfio.js';

/** A request failed; `errno` goes into the error reply, `message` into the log. */
export class VfioUserError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
    this.name = 'VfioUserError';
  }
}

/**
 * The errno to report for an arbitrary thrown value: a VfioUserError's own, the (positive) errno of a Node/native
 * system error, else `fallback`.
 */
export function errnoOf(error: unknown, fallback: number = Errno.EIO): number {
  if (error instanceof VfioUserError) return error.errno;
  const errno = (error as { errno?: unknown } | null)?.errno;
  if (typeof errno === 'number' && Number.isInteger(errno) && errno !== 0) return Math.abs(errno);
  return fallback;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
