// Original file: proto/vfiod/v1/devices.proto

import type { DeviceInfo as _vfiod_v1_DeviceInfo, DeviceInfo__Output as _vfiod_v1_DeviceInfo__Output } from '../../vfiod/v1/DeviceInfo.js';

export interface GetDeviceResponse {
  'device'?: (_vfiod_v1_DeviceInfo | null);
}

export interface GetDeviceResponse__Output {
  'device': (_vfiod_v1_DeviceInfo__Output | null);
}
