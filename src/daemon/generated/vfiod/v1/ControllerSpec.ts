// Original file: proto/vfiod/v1/controllers.proto

import type { DoorbellMode as _vfiod_v1_DoorbellMode, DoorbellMode__Output as _vfiod_v1_DoorbellMode__Output } from '../../vfiod/v1/DoorbellMode.js';
import type { ControllerIdentity as _vfiod_v1_ControllerIdentity, ControllerIdentity__Output as _vfiod_v1_ControllerIdentity__Output } from '../../vfiod/v1/ControllerIdentity.js';
import type { NamespaceIdentity as _vfiod_v1_NamespaceIdentity, NamespaceIdentity__Output as _vfiod_v1_NamespaceIdentity__Output } from '../../vfiod/v1/NamespaceIdentity.js';
import type { ControllerLimits as _vfiod_v1_ControllerLimits, ControllerLimits__Output as _vfiod_v1_ControllerLimits__Output } from '../../vfiod/v1/ControllerLimits.js';

export interface ControllerSpec {
  /**
   * absolute path of the vfio-user socket
   */
  'socketPath'?: (string);
  /**
   * Namespace URIs (memory:, file:, nvme-tcp://; docs/serve.md), NSID 1..n at creation unless namespace_nsids says
   * otherwise. In ControllerInfo.spec: in NSID order, with the NSIDs in namespace_nsids.
   */
  'namespaces'?: (string)[];
  'doorbellMode'?: (_vfiod_v1_DoorbellMode);
  /**
   * default 0600
   */
  'socketMode'?: (number);
  /**
   * default 64 (1..2048)
   */
  'msixVectors'?: (number);
  /**
   * default 31 (1..511)
   */
  'maxIoQueuePairs'?: (number);
  /**
   * default 1024 (2..65536)
   */
  'maxQueueEntries'?: (number);
  /**
   * log2 of 4 KiB pages, default 8 (0..15)
   */
  'mdtsPages'?: (number);
  /**
   * default <state dir>/controllers/<id>.identity.json
   */
  'identityPath'?: (string);
  /**
   * overrides of the persisted identity; empty fields keep it
   */
  'identity'?: (_vfiod_v1_ControllerIdentity | null);
  /**
   * per-slot overrides; slots not listed keep theirs
   */
  'namespaceIdentities'?: (_vfiod_v1_NamespaceIdentity)[];
  /**
   * The NSID of each of `namespaces`, in the same order: distinct, 1..1024 (gaps allowed). Empty = 1..n.
   */
  'namespaceNsids'?: (number)[];
  /**
   * I/O rate limits; absent = none
   */
  'limits'?: (_vfiod_v1_ControllerLimits | null);
}

export interface ControllerSpec__Output {
  /**
   * absolute path of the vfio-user socket
   */
  'socketPath': (string);
  /**
   * Namespace URIs (memory:, file:, nvme-tcp://; docs/serve.md), NSID 1..n at creation unless namespace_nsids says
   * otherwise. In ControllerInfo.spec: in NSID order, with the NSIDs in namespace_nsids.
   */
  'namespaces': (string)[];
  'doorbellMode': (_vfiod_v1_DoorbellMode__Output);
  /**
   * default 0600
   */
  'socketMode': (number);
  /**
   * default 64 (1..2048)
   */
  'msixVectors': (number);
  /**
   * default 31 (1..511)
   */
  'maxIoQueuePairs': (number);
  /**
   * default 1024 (2..65536)
   */
  'maxQueueEntries': (number);
  /**
   * log2 of 4 KiB pages, default 8 (0..15)
   */
  'mdtsPages': (number);
  /**
   * default <state dir>/controllers/<id>.identity.json
   */
  'identityPath': (string);
  /**
   * overrides of the persisted identity; empty fields keep it
   */
  'identity': (_vfiod_v1_ControllerIdentity__Output | null);
  /**
   * per-slot overrides; slots not listed keep theirs
   */
  'namespaceIdentities': (_vfiod_v1_NamespaceIdentity__Output)[];
  /**
   * The NSID of each of `namespaces`, in the same order: distinct, 1..1024 (gaps allowed). Empty = 1..n.
   */
  'namespaceNsids': (number)[];
  /**
   * I/O rate limits; absent = none
   */
  'limits': (_vfiod_v1_ControllerLimits__Output | null);
}
