// Original file: proto/vfiod/v1/operations.proto


export interface WaitOperationRequest {
  'name'?: (string);
  /**
   * default 30000, at most 3600000
   */
  'timeoutMs'?: (number);
}

export interface WaitOperationRequest__Output {
  'name': (string);
  /**
   * default 30000, at most 3600000
   */
  'timeoutMs': (number);
}
