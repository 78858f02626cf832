// Original file: proto/vfiod/v1/operations.proto

import type { Operation as _vfiod_v1_Operation, Operation__Output as _vfiod_v1_Operation__Output } from '../../vfiod/v1/Operation.js';

export interface ListOperationsResponse {
  'operations'?: (_vfiod_v1_Operation)[];
}

export interface ListOperationsResponse__Output {
  'operations': (_vfiod_v1_Operation__Output)[];
}
