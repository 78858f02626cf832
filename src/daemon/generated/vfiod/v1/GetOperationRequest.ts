// Original file: proto/vfiod/v1/operations.proto


export interface GetOperationRequest {
  'name'?: (string);
}

export interface GetOperationRequest__Output {
  'name': (string);
}
