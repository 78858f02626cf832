// Original file: proto/vfiod/v1/controllers.proto


export interface GetControllerRequest {
  'id'?: (string);
}

export interface GetControllerRequest__Output {
  'id': (string);
}
