// Original file: proto/vfiod/v1/devices.proto

import type { ClaimState as _vfiod_v1_ClaimState, ClaimState__Output as _vfiod_v1_ClaimState__Output } from '../../vfiod/v1/ClaimState.js';
import type { ClaimMode as _vfiod_v1_ClaimMode, ClaimMode__Output as _vfiod_v1_ClaimMode__Output } from '../../vfiod/v1/ClaimMode.js';

export interface ClaimInfo {
  'owner'?: (string);
  'state'?: (_vfiod_v1_ClaimState);
  'mode'?: (_vfiod_v1_ClaimMode);
  /**
   * the device the operator asked for (companions point at it)
   */
  'primaryBdf'?: (string);
  'originalDriver'?: (string);
  'originalOverride'?: (string);
  'note'?: (string);
  /**
   * RFC 3339
   */
  'createdAt'?: (string);
  'updatedAt'?: (string);
  '_originalDriver'?: "originalDriver";
  '_originalOverride'?: "originalOverride";
}

export interface ClaimInfo__Output {
  'owner': (string);
  'state': (_vfiod_v1_ClaimState__Output);
  'mode': (_vfiod_v1_ClaimMode__Output);
  /**
   * the device the operator asked for (companions point at it)
   */
  'primaryBdf': (string);
  'originalDriver'?: (string);
  'originalOverride'?: (string);
  'note': (string);
  /**
   * RFC 3339
   */
  'createdAt': (string);
  'updatedAt': (string);
  '_originalDriver'?: "originalDriver";
  '_originalOverride'?: "originalOverride";
}
