// Original file: proto/vfiod/v1/controllers.proto

import type { ControllerSpec as _vfiod_v1_ControllerSpec, ControllerSpec__Output as _vfiod_v1_ControllerSpec__Output } from '../../vfiod/v1/ControllerSpec.js';

export interface CreateControllerRequest {
  /**
   * [A-Za-z0-9][A-Za-z0-9_.-]{0,63}
   */
  'id'?: (string);
  'spec'?: (_vfiod_v1_ControllerSpec | null);
  /**
   * AIP-155: a retry with the same id and the same request answers with the first call's response (also after a
   * daemon restart); the same id with another request is INVALID_ARGUMENT REQUEST_ID_REUSED.
   */
  'requestId'?: (string);
}

export interface CreateControllerRequest__Output {
  /**
   * [A-Za-z0-9][A-Za-z0-9_.-]{0,63}
   */
  'id': (string);
  'spec': (_vfiod_v1_ControllerSpec__Output | null);
  /**
   * AIP-155: a retry with the same id and the same request answers with the first call's response (also after a
   * daemon restart); the same id with another request is INVALID_ARGUMENT REQUEST_ID_REUSED.
   */
  'requestId': (string);
}
