// Original file: proto/vfiod/v1/devices.proto


export interface SetVgpuTypeRequest {
  'bdf'?: (string);
  /**
   * the VM the VF is for
   */
  'owner'?: (string);
  /**
   * one of ListVgpuTypesResponse.creatable
   */
  'typeId'?: (number);
}

export interface SetVgpuTypeRequest__Output {
  'bdf': (string);
  /**
   * the VM the VF is for
   */
  'owner': (string);
  /**
   * one of ListVgpuTypesResponse.creatable
   */
  'typeId': (number);
}
