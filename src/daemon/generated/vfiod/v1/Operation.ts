// Original file: proto/vfiod/v1/operations.proto

import type { OperationKind as _vfiod_v1_OperationKind, OperationKind__Output as _vfiod_v1_OperationKind__Output } from '../../vfiod/v1/OperationKind.js';
import type { OperationState as _vfiod_v1_OperationState, OperationState__Output as _vfiod_v1_OperationState__Output } from '../../vfiod/v1/OperationState.js';
import type { Any as _google_protobuf_Any, Any__Output as _google_protobuf_Any__Output } from '../../google/protobuf/Any.js';
import type { OperationError as _vfiod_v1_OperationError, OperationError__Output as _vfiod_v1_OperationError__Output } from '../../vfiod/v1/OperationError.js';
import type { Long } from '@grpc/proto-loader';

export interface Operation {
  /**
   * "operations/<uuid>"
   */
  'name'?: (string);
  'kind'?: (_vfiod_v1_OperationKind);
  'state'?: (_vfiod_v1_OperationState);
  /**
   * state is not RUNNING
   */
  'done'?: (boolean);
  /**
   * 0-100, by step of the orchestrator
   */
  'progressPercent'?: (number);
  /**
   * what it does now (or did last), for people: "adding to the VMM", ...
   */
  'step'?: (string);
  'vmId'?: (string);
  /**
   * the attachment (known once attach derived it)
   */
  'deviceId'?: (string);
  /**
   * the request's request_id, when it had one
   */
  'requestId'?: (string);
  /**
   * SUCCEEDED: an AttachDeviceResponse, a DetachDeviceResponse or a SwapNamespaceBackingResponse (its operation field
   * unset), as google.longrunning.
   */
  'response'?: (_google_protobuf_Any | null);
  /**
   * FAILED, DETACH_PENDING
   */
  'error'?: (_vfiod_v1_OperationError | null);
  /**
   * RFC 3339
   */
  'createTime'?: (string);
  'updateTime'?: (string);
  /**
   * the event that recorded this state (WatchEvents after_sequence resumes there)
   */
  'eventSequence'?: (number | string | Long);
  /**
   * SwapNamespaceBacking: the controller and namespace that move
   */
  'controllerId'?: (string);
  'nsid'?: (number);
}

export interface Operation__Output {
  /**
   * "operations/<uuid>"
   */
  'name': (string);
  'kind': (_vfiod_v1_OperationKind__Output);
  'state': (_vfiod_v1_OperationState__Output);
  /**
   * state is not RUNNING
   */
  'done': (boolean);
  /**
   * 0-100, by step of the orchestrator
   */
  'progressPercent': (number);
  /**
   * what it does now (or did last), for people: "adding to the VMM", ...
   */
  'step': (string);
  'vmId': (string);
  /**
   * the attachment (known once attach derived it)
   */
  'deviceId': (string);
  /**
   * the request's request_id, when it had one
   */
  'requestId': (string);
  /**
   * SUCCEEDED: an AttachDeviceResponse, a DetachDeviceResponse or a SwapNamespaceBackingResponse (its operation field
   * unset), as google.longrunning.
   */
  'response': (_google_protobuf_Any__Output | null);
  /**
   * FAILED, DETACH_PENDING
   */
  'error': (_vfiod_v1_OperationError__Output | null);
  /**
   * RFC 3339
   */
  'createTime': (string);
  'updateTime': (string);
  /**
   * the event that recorded this state (WatchEvents after_sequence resumes there)
   */
  'eventSequence': (number);
  /**
   * SwapNamespaceBacking: the controller and namespace that move
   */
  'controllerId': (string);
  'nsid': (number);
}
