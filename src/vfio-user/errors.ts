/**
 * Errors a vfio-user request can fail with. The protocol carries Linux errno numbers in the reply header, so every
 * failure a client can see is a `VfioUserError` with one of the `Errno` values below and a message for the log.
 */

/** Linux errno numbers (asm-generic/errno-base.h and errno.h); the wire carries these exact values. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  ENOSYS: 38,
  ENOTSUP: 95,
} as const;

export type ErrnoValue = (typeof Errno)[keyof typeof Errno];

const ERRNO_NAMES = new Map<number, string>(Object.entries(Errno).map(([name, value]) => [value, name]));

/** 'EINVAL' for 22, 'errno 123' for numbers outside the table. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

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
