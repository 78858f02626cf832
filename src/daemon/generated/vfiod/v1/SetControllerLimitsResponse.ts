// Original file: proto/vfiod/v1/controllers.proto

import type { ControllerInfo as _vfiod_v1_ControllerInfo, ControllerInfo__Output as _vfiod_v1_ControllerInfo__Output } from '../../vfiod/v1/ControllerInfo.js';

export interface SetControllerLimitsResponse {
  'controller'?: (_vfiod_v1_ControllerInfo | null);
}

export interface SetControllerLimitsResponse__Output {
  'controller': (_vfiod_v1_ControllerInfo__Output | null);
}
