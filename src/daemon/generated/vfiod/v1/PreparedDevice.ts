// Original file: proto/vfiod/v1/devices.proto

import type { ClaimMode as _vfiod_v1_ClaimMode, ClaimMode__Output as _vfiod_v1_ClaimMode__Output } from '../../vfiod/v1/ClaimMode.js';

export interface PreparedDevice {
  'bdf'?: (string);
  'mode'?: (_vfiod_v1_ClaimMode);
  'originalDriver'?: (string);
  'originalOverride'?: (string);
  /**
   * prepared with the requested device (GPU audio function, whole group)
   */
  'companion'?: (boolean);
  '_originalDriver'?: "originalDriver";
  '_originalOverride'?: "originalOverride";
}

export interface PreparedDevice__Output {
  'bdf': (string);
  'mode': (_vfiod_v1_ClaimMode__Output);
  'originalDriver'?: (string);
  'originalOverride'?: (string);
  /**
   * prepared with the requested device (GPU audio function, whole group)
   */
  'companion': (boolean);
  '_originalDriver'?: "originalDriver";
  '_originalOverride'?: "originalOverride";
}
