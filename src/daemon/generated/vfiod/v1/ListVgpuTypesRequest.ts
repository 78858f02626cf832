// Original file: proto/vfiod/v1/devices.proto


export interface ListVgpuTypesRequest {
  /**
   * the VF
   */
  'bdf'?: (string);
}

export interface ListVgpuTypesRequest__Output {
  /**
   * the VF
   */
  'bdf': (string);
}
