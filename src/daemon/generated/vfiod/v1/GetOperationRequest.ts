// Original file: /work/wt/api-types/proto/vfiod/v1/operations.proto


export interface GetOperationRequest {
  'name'?: (string);
}

export interface GetOperationRequest__Output {
  'name': (string);
}
