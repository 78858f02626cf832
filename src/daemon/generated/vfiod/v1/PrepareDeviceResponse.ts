// Original file: proto/vfiod/v1/devices.proto

import type { PreparedDevice as _vfiod_v1_PreparedDevice, PreparedDevice__Output as _vfiod_v1_PreparedDevice__Output } from '../../vfiod/v1/PreparedDevice.js';

export interface PrepareDeviceResponse {
  'bdf'?: (string);
  'owner'?: (string);
  /**
   * false when it was already prepared for this owner
   */
  'changed'?: (boolean);
  'devices'?: (_vfiod_v1_PreparedDevice)[];
  'iommuGroup'?: (number);
  'vfioGroupDev'?: (string);
  'vfioCdev'?: (string);
  'overridden'?: (string)[];
  'warnings'?: (string)[];
  '_iommuGroup'?: "iommuGroup";
}

export interface PrepareDeviceResponse__Output {
  'bdf': (string);
  'owner': (string);
  /**
   * false when it was already prepared for this owner
   */
  'changed': (boolean);
  'devices': (_vfiod_v1_PreparedDevice__Output)[];
  'iommuGroup'?: (number);
  'vfioGroupDev': (string);
  'vfioCdev': (string);
  'overridden': (string)[];
  'warnings': (string)[];
  '_iommuGroup'?: "iommuGroup";
}
