// Original file: proto/vfiod/v1/devices.proto


export interface ClearVgpuTypeRequest {
  'bdf'?: (string);
  'owner'?: (string);
}

export interface ClearVgpuTypeRequest__Output {
  'bdf': (string);
  'owner': (string);
}
