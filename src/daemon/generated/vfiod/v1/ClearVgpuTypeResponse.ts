// Original file: proto/vfiod/v1/devices.proto


/**
 * The same fields as SetVgpuTypeResponse (each RPC has its own response message: buf STANDARD lint; the bytes on the
 * wire are the same as when ClearVgpuType answered with a SetVgpuTypeResponse).
 */
export interface ClearVgpuTypeResponse {
  'bdf'?: (string);
  'owner'?: (string);
  'previousType'?: (number);
  /**
   * 0
   */
  'currentType'?: (number);
  /**
   * false when the VF had no profile
   */
  'changed'?: (boolean);
  /**
   * this call claimed the VF (release gives back the profile it had before)
   */
  'claimed'?: (boolean);
}

/**
 * The same fields as SetVgpuTypeResponse (each RPC has its own response message: buf STANDARD lint; the bytes on the
 * wire are the same as when ClearVgpuType answered with a SetVgpuTypeResponse).
 */
export interface ClearVgpuTypeResponse__Output {
  'bdf': (string);
  'owner': (string);
  'previousType': (number);
  /**
   * 0
   */
  'currentType': (number);
  /**
   * false when the VF had no profile
   */
  'changed': (boolean);
  /**
   * this call claimed the VF (release gives back the profile it had before)
   */
  'claimed': (boolean);
}
