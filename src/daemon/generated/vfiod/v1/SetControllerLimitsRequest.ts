// Original file: proto/vfiod/v1/controllers.proto

import type { ControllerLimits as _vfiod_v1_ControllerLimits, ControllerLimits__Output as _vfiod_v1_ControllerLimits__Output } from '../../vfiod/v1/ControllerLimits.js';

export interface SetControllerLimitsRequest {
  'id'?: (string);
  'limits'?: (_vfiod_v1_ControllerLimits | null);
}

export interface SetControllerLimitsRequest__Output {
  'id': (string);
  'limits': (_vfiod_v1_ControllerLimits__Output | null);
}
