// Original file: proto/vfiod/v1/devices.proto


export interface ReleaseDeviceRequest {
  'bdf'?: (string);
  'owner'?: (string);
  /**
   * wait this long for VMMs to close the device (default 0: refuse at once)
   */
  'waitMs'?: (number);
}

export interface ReleaseDeviceRequest__Output {
  'bdf': (string);
  'owner': (string);
  /**
   * wait this long for VMMs to close the device (default 0: refuse at once)
   */
  'waitMs': (number);
}
