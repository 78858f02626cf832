// Original file: proto/vfiod/v1/controllers.proto

import type { IoLimits as _vfiod_v1_IoLimits, IoLimits__Output as _vfiod_v1_IoLimits__Output } from '../../vfiod/v1/IoLimits.js';

export interface NamespaceLimits {
  'nsid'?: (number);
  'limits'?: (_vfiod_v1_IoLimits | null);
}

export interface NamespaceLimits__Output {
  'nsid': (number);
  'limits': (_vfiod_v1_IoLimits__Output | null);
}
