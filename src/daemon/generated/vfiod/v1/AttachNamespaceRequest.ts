// Original file: proto/vfiod/v1/controllers.proto

import type { NamespaceIdentity as _vfiod_v1_NamespaceIdentity, NamespaceIdentity__Output as _vfiod_v1_NamespaceIdentity__Output } from '../../vfiod/v1/NamespaceIdentity.js';

export interface AttachNamespaceRequest {
  /**
   * the controller
   */
  'id'?: (string);
  /**
   * namespace URI, as in ControllerSpec.namespaces
   */
  'uri'?: (string);
  /**
   * 1..1024; 0 = the lowest free NSID
   */
  'nsid'?: (number);
  /**
   * AIP-155, as CreateController: a retry with the same id and request answers with the first call's response (an
   * attach without an NSID would otherwise attach the disk twice).
   */
  'requestId'?: (string);
  /**
   * What the guest sees of the namespace (its nsid field is ignored: the NSID is `nsid` above). Empty fields keep the
   * slot's persisted ids (a slot used before gets its old ones back) or generate new ones.
   */
  'identity'?: (_vfiod_v1_NamespaceIdentity | null);
}

export interface AttachNamespaceRequest__Output {
  /**
   * the controller
   */
  'id': (string);
  /**
   * namespace URI, as in ControllerSpec.namespaces
   */
  'uri': (string);
  /**
   * 1..1024; 0 = the lowest free NSID
   */
  'nsid': (number);
  /**
   * AIP-155, as CreateController: a retry with the same id and request answers with the first call's response (an
   * attach without an NSID would otherwise attach the disk twice).
   */
  'requestId': (string);
  /**
   * What the guest sees of the namespace (its nsid field is ignored: the NSID is `nsid` above). Empty fields keep the
   * slot's persisted ids (a slot used before gets its old ones back) or generate new ones.
   */
  'identity': (_vfiod_v1_NamespaceIdentity__Output | null);
}
