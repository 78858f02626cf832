// Original file: proto/vfiod/v1/controllers.proto

import type { Operation as _vfiod_v1_Operation, Operation__Output as _vfiod_v1_Operation__Output } from '../../vfiod/v1/Operation.js';
import type { ControllerInfo as _vfiod_v1_ControllerInfo, ControllerInfo__Output as _vfiod_v1_ControllerInfo__Output } from '../../vfiod/v1/ControllerInfo.js';
import type { Long } from '@grpc/proto-loader';

/**
 * The call's answer holds only the operation; a succeeded operation's response is this message with the
 * controller as it serves now (the new URI in spec.namespaces) and what the move took.
 */
export interface SwapNamespaceBackingResponse {
  'operation'?: (_vfiod_v1_Operation | null);
  'controller'?: (_vfiod_v1_ControllerInfo | null);
  /**
   * 1 = the full copy; each further pass copied what the guest wrote meanwhile
   */
  'copyPasses'?: (number);
  'copiedBytes'?: (number | string | Long);
  /**
   * how long the namespace's commands waited: the last pass, the flush, the save, the switch
   */
  'heldMs'?: (number | string);
  /**
   * copied while they waited
   */
  'finalPassBytes'?: (number | string | Long);
}

/**
 * The call's answer holds only the operation; a succeeded operation's response is this message with the
 * controller as it serves now (the new URI in spec.namespaces) and what the move took.
 */
export interface SwapNamespaceBackingResponse__Output {
  'operation': (_vfiod_v1_Operation__Output | null);
  'controller': (_vfiod_v1_ControllerInfo__Output | null);
  /**
   * 1 = the full copy; each further pass copied what the guest wrote meanwhile
   */
  'copyPasses': (number);
  'copiedBytes': (number);
  /**
   * how long the namespace's commands waited: the last pass, the flush, the save, the switch
   */
  'heldMs': (number);
  /**
   * copied while they waited
   */
  'finalPassBytes': (number);
}
