// Original file: proto/vfiod/v1/operations.proto


/**
 * Why an operation failed or is detach-pending: the gRPC status the call would have ended with. reason and metadata
 * are the google.rpc.ErrorInfo of status_details (docs/daemon.md, Error reasons); status_details is the whole
 * google.rpc.Status, serialized exactly as in a failed call's grpc-status-details-bin trailer (with
 * PreconditionFailure, BadRequest, ResourceInfo, ... where they apply).
 */
export interface OperationError {
  /**
   * the gRPC status code (google.rpc.Code)
   */
  'code'?: (number);
  'message'?: (string);
  'reason'?: (string);
  'metadata'?: ({[key: string]: string});
  'statusDetails'?: (Buffer | Uint8Array | string);
}

/**
 * Why an operation failed or is detach-pending: the gRPC status the call would have ended with. reason and metadata
 * are the google.rpc.ErrorInfo of status_details (docs/daemon.md, Error reasons); status_details is the whole
 * google.rpc.Status, serialized exactly as in a failed call's grpc-status-details-bin trailer (with
 * PreconditionFailure, BadRequest, ResourceInfo, ... where they apply).
 */
export interface OperationError__Output {
  /**
   * the gRPC status code (google.rpc.Code)
   */
  'code': (number);
  'message': (string);
  'reason': (string);
  'metadata': ({[key: string]: string});
  'statusDetails': (Buffer);
}
