/**
 * The error every service-level operation throws: a status code that the control API maps 1:1 onto a gRPC status
 * (FeOS maps its own errors the same way), a message that names the device / VM / controller involved, and
 * structured details: a stable `reason` from src/util/error-reasons.ts, which programs switch on, and the facts the
 * error is about (bdf, IOMMU group, holder pid, controller id, ...), which the control API sends as
 * `google.rpc.Status` details (src/daemon/status-details.ts).
 */
import type { Reason } from './error-reasons.js';

export type ErrorCode =
  | 'NOT_FOUND'
  | 'INVALID_ARGUMENT'
  | 'FAILED_PRECONDITION'
  | 'ALREADY_EXISTS'
  | 'UNAVAILABLE'
  | 'DEADLINE_EXCEEDED'
  /** A limit the daemon states (e.g. the number of controllers) is reached. */
  | 'RESOURCE_EXHAUSTED'
  /** The caller's role (docs/daemon.md, "Who may do what") does not allow the call. */
  | 'PERMISSION_DENIED'
  | 'INTERNAL';

/** One failed precondition (`google.rpc.PreconditionFailure.Violation`). */
export interface Violation {
  /** The reason of this violation (a key of ERROR_REASONS). */
  type: Reason;
  /** What it is about, e.g. `pci:0000:01:00.1`, `iommu-group:12`, `controller:vm1-data`. */
  subject: string;
  description: string;
}

/**
 * `reason` (required) and the facts of the error as camelCase keys (scalars, or lists of scalars); on the wire they
 * become ErrorInfo metadata in snake_case. `violations` lists every failed precondition when there are several.
 */
export interface ErrorDetails {
  reason: Reason;
  violations?: Violation[];
  [key: string]: unknown;
}

export class VfiodError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: ErrorDetails,
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** The stable reason programs switch on (ERROR_REASONS). */
  get reason(): Reason {
    return this.details.reason;
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
