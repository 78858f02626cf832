import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Any as _google_protobuf_Any, Any__Output as _google_protobuf_Any__Output } from './google/protobuf/Any.js';
import type { GetOperationRequest as _vfiod_v1_GetOperationRequest, GetOperationRequest__Output as _vfiod_v1_GetOperationRequest__Output } from './vfiod/v1/GetOperationRequest.js';
import type { GetOperationResponse as _vfiod_v1_GetOperationResponse, GetOperationResponse__Output as _vfiod_v1_GetOperationResponse__Output } from './vfiod/v1/GetOperationResponse.js';
import type { ListOperationsRequest as _vfiod_v1_ListOperationsRequest, ListOperationsRequest__Output as _vfiod_v1_ListOperationsRequest__Output } from './vfiod/v1/ListOperationsRequest.js';
import type { ListOperationsResponse as _vfiod_v1_ListOperationsResponse, ListOperationsResponse__Output as _vfiod_v1_ListOperationsResponse__Output } from './vfiod/v1/ListOperationsResponse.js';
import type { Operation as _vfiod_v1_Operation, Operation__Output as _vfiod_v1_Operation__Output } from './vfiod/v1/Operation.js';
import type { OperationError as _vfiod_v1_OperationError, OperationError__Output as _vfiod_v1_OperationError__Output } from './vfiod/v1/OperationError.js';
import type { OperationServiceClient as _vfiod_v1_OperationServiceClient, OperationServiceDefinition as _vfiod_v1_OperationServiceDefinition } from './vfiod/v1/OperationService.js';
import type { WaitOperationRequest as _vfiod_v1_WaitOperationRequest, WaitOperationRequest__Output as _vfiod_v1_WaitOperationRequest__Output } from './vfiod/v1/WaitOperationRequest.js';
import type { WaitOperationResponse as _vfiod_v1_WaitOperationResponse, WaitOperationResponse__Output as _vfiod_v1_WaitOperationResponse__Output } from './vfiod/v1/WaitOperationResponse.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  google: {
    protobuf: {
      Any: MessageTypeDefinition<_google_protobuf_Any, _google_protobuf_Any__Output>
    }
  }
  vfiod: {
    v1: {
      GetOperationRequest: MessageTypeDefinition<_vfiod_v1_GetOperationRequest, _vfiod_v1_GetOperationRequest__Output>
      GetOperationResponse: MessageTypeDefinition<_vfiod_v1_GetOperationResponse, _vfiod_v1_GetOperationResponse__Output>
      ListOperationsRequest: MessageTypeDefinition<_vfiod_v1_ListOperationsRequest, _vfiod_v1_ListOperationsRequest__Output>
      ListOperationsResponse: MessageTypeDefinition<_vfiod_v1_ListOperationsResponse, _vfiod_v1_ListOperationsResponse__Output>
      Operation: MessageTypeDefinition<_vfiod_v1_Operation, _vfiod_v1_Operation__Output>
      OperationError: MessageTypeDefinition<_vfiod_v1_OperationError, _vfiod_v1_OperationError__Output>
      OperationKind: EnumTypeDefinition
      OperationService: SubtypeConstructor<typeof grpc.Client, _vfiod_v1_OperationServiceClient> & { service: _vfiod_v1_OperationServiceDefinition }
      OperationState: EnumTypeDefinition
      WaitOperationRequest: MessageTypeDefinition<_vfiod_v1_WaitOperationRequest, _vfiod_v1_WaitOperationRequest__Output>
      WaitOperationResponse: MessageTypeDefinition<_vfiod_v1_WaitOperationResponse, _vfiod_v1_WaitOperationResponse__Output>
    }
  }
}

