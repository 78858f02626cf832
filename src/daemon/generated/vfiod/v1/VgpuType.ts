// Original file: proto/vfiod/v1/devices.proto


export interface VgpuType {
  /**
   * what current_vgpu_type takes
   */
  'id'?: (number);
  /**
   * e.g. NVIDIA L40S-2B
   */
  'name'?: (string);
}

export interface VgpuType__Output {
  /**
   * what current_vgpu_type takes
   */
  'id': (number);
  /**
   * e.g. NVIDIA L40S-2B
   */
  'name': (string);
}
