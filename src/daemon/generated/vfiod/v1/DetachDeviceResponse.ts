// Original file: proto/vfiod/v1/attachments.proto

import type { Operation as _vfiod_v1_Operation, Operation__Output as _vfiod_v1_Operation__Output } from '../../vfiod/v1/Operation.js';

export interface DetachDeviceResponse {
  'vmId'?: (string);
  'deviceId'?: (string);
  /**
   * host BDFs back on their host drivers (with wait)
   */
  'released'?: (string)[];
  'operation'?: (_vfiod_v1_Operation | null);
}

export interface DetachDeviceResponse__Output {
  'vmId': (string);
  'deviceId': (string);
  /**
   * host BDFs back on their host drivers (with wait)
   */
  'released': (string)[];
  'operation': (_vfiod_v1_Operation__Output | null);
}
