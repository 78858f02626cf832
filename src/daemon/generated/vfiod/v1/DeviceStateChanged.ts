// Original file: proto/vfiod/v1/devices.proto

import type { DeviceEventKind as _vfiod_v1_DeviceEventKind, DeviceEventKind__Output as _vfiod_v1_DeviceEventKind__Output } from '../../vfiod/v1/DeviceEventKind.js';

export interface DeviceStateChanged {
  'bdf'?: (string);
  'kind'?: (_vfiod_v1_DeviceEventKind);
  /**
   * the VM, when known
   */
  'owner'?: (string);
  /**
   * what happened, or the error
   */
  'detail'?: (string);
  /**
   * RFC 3339
   */
  'at'?: (string);
}

export interface DeviceStateChanged__Output {
  'bdf': (string);
  'kind': (_vfiod_v1_DeviceEventKind__Output);
  /**
   * the VM, when known
   */
  'owner': (string);
  /**
   * what happened, or the error
   */
  'detail': (string);
  /**
   * RFC 3339
   */
  'at': (string);
}
