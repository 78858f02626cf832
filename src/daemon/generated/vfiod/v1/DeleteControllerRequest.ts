// Original file: proto/vfiod/v1/controllers.proto


export interface DeleteControllerRequest {
  'id'?: (string);
}

export interface DeleteControllerRequest__Output {
  'id': (string);
}
