// Original file: proto/vfiod/v1/devices.proto

import type { VgpuType as _vfiod_v1_VgpuType, VgpuType__Output as _vfiod_v1_VgpuType__Output } from '../../vfiod/v1/VgpuType.js';

export interface ListVgpuTypesResponse {
  'bdf'?: (string);
  /**
   * 0: none selected
   */
  'currentType'?: (number);
  /**
   * nvidia/creatable_vgpu_types: what the VF can take now
   */
  'creatable'?: (_vfiod_v1_VgpuType)[];
  /**
   * the VM that has claimed the VF
   */
  'owner'?: (string);
  '_owner'?: "owner";
}

export interface ListVgpuTypesResponse__Output {
  'bdf': (string);
  /**
   * 0: none selected
   */
  'currentType': (number);
  /**
   * nvidia/creatable_vgpu_types: what the VF can take now
   */
  'creatable': (_vfiod_v1_VgpuType__Output)[];
  /**
   * the VM that has claimed the VF
   */
  'owner'?: (string);
  '_owner'?: "owner";
}
