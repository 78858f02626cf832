// Original file: proto/vfiod/v1/controllers.proto

import type { NamespaceIdentity as _vfiod_v1_NamespaceIdentity, NamespaceIdentity__Output as _vfiod_v1_NamespaceIdentity__Output } from '../../vfiod/v1/NamespaceIdentity.js';
import type { Long } from '@grpc/proto-loader';

export interface NamespaceInfo {
  'nsid'?: (number);
  'uri'?: (string);
  'backend'?: (string);
  'blockSize'?: (number);
  'blocks'?: (number | string | Long);
  /**
   * what the guest sees (persisted with the controller's identity)
   */
  'identity'?: (_vfiod_v1_NamespaceIdentity | null);
}

export interface NamespaceInfo__Output {
  'nsid': (number);
  'uri': (string);
  'backend': (string);
  'blockSize': (number);
  'blocks': (number);
  /**
   * what the guest sees (persisted with the controller's identity)
   */
  'identity': (_vfiod_v1_NamespaceIdentity__Output | null);
}
