// Original file: proto/vfiod/v1/devices.proto

import type { DeviceInfo as _vfiod_v1_DeviceInfo, DeviceInfo__Output as _vfiod_v1_DeviceInfo__Output } from '../../vfiod/v1/DeviceInfo.js';

export interface ListDevicesResponse {
  'devices'?: (_vfiod_v1_DeviceInfo)[];
}

export interface ListDevicesResponse__Output {
  'devices': (_vfiod_v1_DeviceInfo__Output)[];
}
