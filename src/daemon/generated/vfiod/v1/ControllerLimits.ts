// Original file: proto/vfiod/v1/controllers.proto

import type { IoLimits as _vfiod_v1_IoLimits, IoLimits__Output as _vfiod_v1_IoLimits__Output } from '../../vfiod/v1/IoLimits.js';
import type { NamespaceLimits as _vfiod_v1_NamespaceLimits, NamespaceLimits__Output as _vfiod_v1_NamespaceLimits__Output } from '../../vfiod/v1/NamespaceLimits.js';

export interface ControllerLimits {
  /**
   * all of the controller's I/O together
   */
  'controller'?: (_vfiod_v1_IoLimits | null);
  /**
   * one entry per limited namespace
   */
  'namespaces'?: (_vfiod_v1_NamespaceLimits)[];
}

export interface ControllerLimits__Output {
  /**
   * all of the controller's I/O together
   */
  'controller': (_vfiod_v1_IoLimits__Output | null);
  /**
   * one entry per limited namespace
   */
  'namespaces': (_vfiod_v1_NamespaceLimits__Output)[];
}
