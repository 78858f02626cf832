// Original file: proto/vfiod/v1/devices.proto


export interface SetVgpuTypeResponse {
  'bdf'?: (string);
  'owner'?: (string);
  'previousType'?: (number);
  'currentType'?: (number);
  /**
   * false when the VF already had it
   */
  'changed'?: (boolean);
  /**
   * this call claimed the VF (release gives back the profile it had before)
   */
  'claimed'?: (boolean);
}

export interface SetVgpuTypeResponse__Output {
  'bdf': (string);
  'owner': (string);
  'previousType': (number);
  'currentType': (number);
  /**
   * false when the VF already had it
   */
  'changed': (boolean);
  /**
   * this call claimed the VF (release gives back the profile it had before)
   */
  'claimed': (boolean);
}
