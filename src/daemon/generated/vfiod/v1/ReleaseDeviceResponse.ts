// Original file: proto/vfiod/v1/devices.proto

import type { ReleasedDevice as _vfiod_v1_ReleasedDevice, ReleasedDevice__Output as _vfiod_v1_ReleasedDevice__Output } from '../../vfiod/v1/ReleasedDevice.js';

export interface ReleaseDeviceResponse {
  'bdf'?: (string);
  'owner'?: (string);
  'devices'?: (_vfiod_v1_ReleasedDevice)[];
  /**
   * PFs whose sriov_drivers_autoprobe went back on
   */
  'autoprobeRestored'?: (string)[];
}

export interface ReleaseDeviceResponse__Output {
  'bdf': (string);
  'owner': (string);
  'devices': (_vfiod_v1_ReleasedDevice__Output)[];
  /**
   * PFs whose sriov_drivers_autoprobe went back on
   */
  'autoprobeRestored': (string)[];
}
