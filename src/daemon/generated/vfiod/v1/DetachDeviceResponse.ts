// Original file: /work/wt/api-types/proto/vfiod/v1/attachments.proto


export interface DetachDeviceResponse {
  'vmId'?: (string);
  'deviceId'?: (string);
  /**
   * host BDFs back on their host drivers
   */
  'released'?: (string)[];
}

export interface DetachDeviceResponse__Output {
  'vmId': (string);
  'deviceId': (string);
  /**
   * host BDFs back on their host drivers
   */
  'released': (string)[];
}
