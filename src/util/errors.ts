/**
 * The error every service-level operation throws: a status code that the control API maps 1:1 onto a gRPC status
 * (FeOS maps its own errors the same way), a message that names the device / VM / controller involved, and
 * structured details for logs and API clients.
 */
export type ErrorCode =
  | 'NOT_FOUND'
  | 'INVALID_ARGUMENT'
  | 'FAILED_PRECONDITION'
  | 'ALREADY_EXISTS'
  | 'UNAVAILABLE'
  | 'DEADLINE_EXCEEDED'
  /** A limit the daemon states (e.g. the number of controllers) is reached. */
  | 'RESOURCE_EXHAUSTED'
  | 'INTERNAL';

export class VfiodError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
