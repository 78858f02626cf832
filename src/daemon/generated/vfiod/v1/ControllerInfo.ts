// Original file: proto/vfiod/v1/controllers.proto

import type { ControllerSpec as _vfiod_v1_ControllerSpec, ControllerSpec__Output as _vfiod_v1_ControllerSpec__Output } from '../../vfiod/v1/ControllerSpec.js';
import type { ControllerState as _vfiod_v1_ControllerState, ControllerState__Output as _vfiod_v1_ControllerState__Output } from '../../vfiod/v1/ControllerState.js';
import type { ControllerIdentity as _vfiod_v1_ControllerIdentity, ControllerIdentity__Output as _vfiod_v1_ControllerIdentity__Output } from '../../vfiod/v1/ControllerIdentity.js';
import type { NamespaceInfo as _vfiod_v1_NamespaceInfo, NamespaceInfo__Output as _vfiod_v1_NamespaceInfo__Output } from '../../vfiod/v1/NamespaceInfo.js';
import type { ControllerStats as _vfiod_v1_ControllerStats, ControllerStats__Output as _vfiod_v1_ControllerStats__Output } from '../../vfiod/v1/ControllerStats.js';

export interface ControllerInfo {
  'id'?: (string);
  'spec'?: (_vfiod_v1_ControllerSpec | null);
  'state'?: (_vfiod_v1_ControllerState);
  /**
   * why it failed, when state is FAILED
   */
  'error'?: (string);
  /**
   * what the guest sees (persisted)
   */
  'identity'?: (_vfiod_v1_ControllerIdentity | null);
  'namespaces'?: (_vfiod_v1_NamespaceInfo)[];
  'stats'?: (_vfiod_v1_ControllerStats | null);
  'createdAt'?: (string);
}

export interface ControllerInfo__Output {
  'id': (string);
  'spec': (_vfiod_v1_ControllerSpec__Output | null);
  'state': (_vfiod_v1_ControllerState__Output);
  /**
   * why it failed, when state is FAILED
   */
  'error': (string);
  /**
   * what the guest sees (persisted)
   */
  'identity': (_vfiod_v1_ControllerIdentity__Output | null);
  'namespaces': (_vfiod_v1_NamespaceInfo__Output)[];
  'stats': (_vfiod_v1_ControllerStats__Output | null);
  'createdAt': (string);
}
