// Original file: proto/vfiod/v1/devices.proto


export interface GetDeviceRequest {
  'bdf'?: (string);
}

export interface GetDeviceRequest__Output {
  'bdf': (string);
}
