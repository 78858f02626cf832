// Original file: proto/vfiod/v1/devices.proto

import type { VgpuType as _vfiod_v1_VgpuType, VgpuType__Output as _vfiod_v1_VgpuType__Output } from '../../vfiod/v1/VgpuType.js';

export interface VgpuInfo {
  /**
   * 0: none selected
   */
  'currentType'?: (number);
  /**
   * what the VF can take now
   */
  'creatable'?: (_vfiod_v1_VgpuType)[];
}

export interface VgpuInfo__Output {
  /**
   * 0: none selected
   */
  'currentType': (number);
  /**
   * what the VF can take now
   */
  'creatable': (_vfiod_v1_VgpuType__Output)[];
}
