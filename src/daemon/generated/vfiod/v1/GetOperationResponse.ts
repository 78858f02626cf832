// Original file: proto/vfiod/v1/operations.proto

import type { Operation as _vfiod_v1_Operation, Operation__Output as _vfiod_v1_Operation__Output } from '../../vfiod/v1/Operation.js';

export interface GetOperationResponse {
  'operation'?: (_vfiod_v1_Operation | null);
}

export interface GetOperationResponse__Output {
  'operation': (_vfiod_v1_Operation__Output | null);
}
