// Original file: /work/wt/api-types/proto/vfiod/v1/devices.proto


export interface GetDeviceRequest {
  'bdf'?: (string);
}

export interface GetDeviceRequest__Output {
  'bdf': (string);
}
