import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Any as _google_protobuf_Any, Any__Output as _google_protobuf_Any__Output } from './google/protobuf/Any.js';
import type { AttachNamespaceRequest as _vfiod_v1_AttachNamespaceRequest, AttachNamespaceRequest__Output as _vfiod_v1_AttachNamespaceRequest__Output } from './vfiod/v1/AttachNamespaceRequest.js';
import type { AttachNamespaceResponse as _vfiod_v1_AttachNamespaceResponse, AttachNamespaceResponse__Output as _vfiod_v1_AttachNamespaceResponse__Output } from './vfiod/v1/AttachNamespaceResponse.js';
import type { ControllerIdentity as _vfiod_v1_ControllerIdentity, ControllerIdentity__Output as _vfiod_v1_ControllerIdentity__Output } from './vfiod/v1/ControllerIdentity.js';
import type { ControllerInfo as _vfiod_v1_ControllerInfo, ControllerInfo__Output as _vfiod_v1_ControllerInfo__Output } from './vfiod/v1/ControllerInfo.js';
import type { ControllerLimits as _vfiod_v1_ControllerLimits, ControllerLimits__Output as _vfiod_v1_ControllerLimits__Output } from './vfiod/v1/ControllerLimits.js';
import type { ControllerServiceClient as _vfiod_v1_ControllerServiceClient, ControllerServiceDefinition as _vfiod_v1_ControllerServiceDefinition } from './vfiod/v1/ControllerService.js';
import type { ControllerSpec as _vfiod_v1_ControllerSpec, ControllerSpec__Output as _vfiod_v1_ControllerSpec__Output } from './vfiod/v1/ControllerSpec.js';
import type { ControllerStats as _vfiod_v1_ControllerStats, ControllerStats__Output as _vfiod_v1_ControllerStats__Output } from './vfiod/v1/ControllerStats.js';
import type { CreateControllerRequest as _vfiod_v1_CreateControllerRequest, CreateControllerRequest__Output as _vfiod_v1_CreateControllerRequest__Output } from './vfiod/v1/CreateControllerRequest.js';
import type { CreateControllerResponse as _vfiod_v1_CreateControllerResponse, CreateControllerResponse__Output as _vfiod_v1_CreateControllerResponse__Output } from './vfiod/v1/CreateControllerResponse.js';
import type { DeleteControllerRequest as _vfiod_v1_DeleteControllerRequest, DeleteControllerRequest__Output as _vfiod_v1_DeleteControllerRequest__Output } from './vfiod/v1/DeleteControllerRequest.js';
import type { DeleteControllerResponse as _vfiod_v1_DeleteControllerResponse, DeleteControllerResponse__Output as _vfiod_v1_DeleteControllerResponse__Output } from './vfiod/v1/DeleteControllerResponse.js';
import type { DetachNamespaceRequest as _vfiod_v1_DetachNamespaceRequest, DetachNamespaceRequest__Output as _vfiod_v1_DetachNamespaceRequest__Output } from './vfiod/v1/DetachNamespaceRequest.js';
import type { DetachNamespaceResponse as _vfiod_v1_DetachNamespaceResponse, DetachNamespaceResponse__Output as _vfiod_v1_DetachNamespaceResponse__Output } from './vfiod/v1/DetachNamespaceResponse.js';
import type { GetControllerRequest as _vfiod_v1_GetControllerRequest, GetControllerRequest__Output as _vfiod_v1_GetControllerRequest__Output } from './vfiod/v1/GetControllerRequest.js';
import type { GetControllerResponse as _vfiod_v1_GetControllerResponse, GetControllerResponse__Output as _vfiod_v1_GetControllerResponse__Output } from './vfiod/v1/GetControllerResponse.js';
import type { GetOperationRequest as _vfiod_v1_GetOperationRequest, GetOperationRequest__Output as _vfiod_v1_GetOperationRequest__Output } from './vfiod/v1/GetOperationRequest.js';
import type { GetOperationResponse as _vfiod_v1_GetOperationResponse, GetOperationResponse__Output as _vfiod_v1_GetOperationResponse__Output } from './vfiod/v1/GetOperationResponse.js';
import type { IoLimits as _vfiod_v1_IoLimits, IoLimits__Output as _vfiod_v1_IoLimits__Output } from './vfiod/v1/IoLimits.js';
import type { LatencyHistogram as _vfiod_v1_LatencyHistogram, LatencyHistogram__Output as _vfiod_v1_LatencyHistogram__Output } from './vfiod/v1/LatencyHistogram.js';
import type { ListControllersRequest as _vfiod_v1_ListControllersRequest, ListControllersRequest__Output as _vfiod_v1_ListControllersRequest__Output } from './vfiod/v1/ListControllersRequest.js';
import type { ListControllersResponse as _vfiod_v1_ListControllersResponse, ListControllersResponse__Output as _vfiod_v1_ListControllersResponse__Output } from './vfiod/v1/ListControllersResponse.js';
import type { ListOperationsRequest as _vfiod_v1_ListOperationsRequest, ListOperationsRequest__Output as _vfiod_v1_ListOperationsRequest__Output } from './vfiod/v1/ListOperationsRequest.js';
import type { ListOperationsResponse as _vfiod_v1_ListOperationsResponse, ListOperationsResponse__Output as _vfiod_v1_ListOperationsResponse__Output } from './vfiod/v1/ListOperationsResponse.js';
import type { NamespaceIdentity as _vfiod_v1_NamespaceIdentity, NamespaceIdentity__Output as _vfiod_v1_NamespaceIdentity__Output } from './vfiod/v1/NamespaceIdentity.js';
import type { NamespaceInfo as _vfiod_v1_NamespaceInfo, NamespaceInfo__Output as _vfiod_v1_NamespaceInfo__Output } from './vfiod/v1/NamespaceInfo.js';
import type { NamespaceLimits as _vfiod_v1_NamespaceLimits, NamespaceLimits__Output as _vfiod_v1_NamespaceLimits__Output } from './vfiod/v1/NamespaceLimits.js';
import type { Operation as _vfiod_v1_Operation, Operation__Output as _vfiod_v1_Operation__Output } from './vfiod/v1/Operation.js';
import type { OperationError as _vfiod_v1_OperationError, OperationError__Output as _vfiod_v1_OperationError__Output } from './vfiod/v1/OperationError.js';
import type { OperationServiceClient as _vfiod_v1_OperationServiceClient, OperationServiceDefinition as _vfiod_v1_OperationServiceDefinition } from './vfiod/v1/OperationService.js';
import type { ResizeNamespaceRequest as _vfiod_v1_ResizeNamespaceRequest, ResizeNamespaceRequest__Output as _vfiod_v1_ResizeNamespaceRequest__Output } from './vfiod/v1/ResizeNamespaceRequest.js';
import type { ResizeNamespaceResponse as _vfiod_v1_ResizeNamespaceResponse, ResizeNamespaceResponse__Output as _vfiod_v1_ResizeNamespaceResponse__Output } from './vfiod/v1/ResizeNamespaceResponse.js';
import type { SetControllerLimitsRequest as _vfiod_v1_SetControllerLimitsRequest, SetControllerLimitsRequest__Output as _vfiod_v1_SetControllerLimitsRequest__Output } from './vfiod/v1/SetControllerLimitsRequest.js';
import type { SetControllerLimitsResponse as _vfiod_v1_SetControllerLimitsResponse, SetControllerLimitsResponse__Output as _vfiod_v1_SetControllerLimitsResponse__Output } from './vfiod/v1/SetControllerLimitsResponse.js';
import type { SwapNamespaceBackingRequest as _vfiod_v1_SwapNamespaceBackingRequest, SwapNamespaceBackingRequest__Output as _vfiod_v1_SwapNamespaceBackingRequest__Output } from './vfiod/v1/SwapNamespaceBackingRequest.js';
import type { SwapNamespaceBackingResponse as _vfiod_v1_SwapNamespaceBackingResponse, SwapNamespaceBackingResponse__Output as _vfiod_v1_SwapNamespaceBackingResponse__Output } from './vfiod/v1/SwapNamespaceBackingResponse.js';
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
      AttachNamespaceRequest: MessageTypeDefinition<_vfiod_v1_AttachNamespaceRequest, _vfiod_v1_AttachNamespaceRequest__Output>
      AttachNamespaceResponse: MessageTypeDefinition<_vfiod_v1_AttachNamespaceResponse, _vfiod_v1_AttachNamespaceResponse__Output>
      ControllerIdentity: MessageTypeDefinition<_vfiod_v1_ControllerIdentity, _vfiod_v1_ControllerIdentity__Output>
      ControllerInfo: MessageTypeDefinition<_vfiod_v1_ControllerInfo, _vfiod_v1_ControllerInfo__Output>
      ControllerLimits: MessageTypeDefinition<_vfiod_v1_ControllerLimits, _vfiod_v1_ControllerLimits__Output>
      ControllerService: SubtypeConstructor<typeof grpc.Client, _vfiod_v1_ControllerServiceClient> & { service: _vfiod_v1_ControllerServiceDefinition }
      ControllerSpec: MessageTypeDefinition<_vfiod_v1_ControllerSpec, _vfiod_v1_ControllerSpec__Output>
      ControllerState: EnumTypeDefinition
      ControllerStats: MessageTypeDefinition<_vfiod_v1_ControllerStats, _vfiod_v1_ControllerStats__Output>
      CreateControllerRequest: MessageTypeDefinition<_vfiod_v1_CreateControllerRequest, _vfiod_v1_CreateControllerRequest__Output>
      CreateControllerResponse: MessageTypeDefinition<_vfiod_v1_CreateControllerResponse, _vfiod_v1_CreateControllerResponse__Output>
      DeleteControllerRequest: MessageTypeDefinition<_vfiod_v1_DeleteControllerRequest, _vfiod_v1_DeleteControllerRequest__Output>
      DeleteControllerResponse: MessageTypeDefinition<_vfiod_v1_DeleteControllerResponse, _vfiod_v1_DeleteControllerResponse__Output>
      DetachNamespaceRequest: MessageTypeDefinition<_vfiod_v1_DetachNamespaceRequest, _vfiod_v1_DetachNamespaceRequest__Output>
      DetachNamespaceResponse: MessageTypeDefinition<_vfiod_v1_DetachNamespaceResponse, _vfiod_v1_DetachNamespaceResponse__Output>
      DoorbellMode: EnumTypeDefinition
      GetControllerRequest: MessageTypeDefinition<_vfiod_v1_GetControllerRequest, _vfiod_v1_GetControllerRequest__Output>
      GetControllerResponse: MessageTypeDefinition<_vfiod_v1_GetControllerResponse, _vfiod_v1_GetControllerResponse__Output>
      GetOperationRequest: MessageTypeDefinition<_vfiod_v1_GetOperationRequest, _vfiod_v1_GetOperationRequest__Output>
      GetOperationResponse: MessageTypeDefinition<_vfiod_v1_GetOperationResponse, _vfiod_v1_GetOperationResponse__Output>
      IoLimits: MessageTypeDefinition<_vfiod_v1_IoLimits, _vfiod_v1_IoLimits__Output>
      LatencyHistogram: MessageTypeDefinition<_vfiod_v1_LatencyHistogram, _vfiod_v1_LatencyHistogram__Output>
      ListControllersRequest: MessageTypeDefinition<_vfiod_v1_ListControllersRequest, _vfiod_v1_ListControllersRequest__Output>
      ListControllersResponse: MessageTypeDefinition<_vfiod_v1_ListControllersResponse, _vfiod_v1_ListControllersResponse__Output>
      ListOperationsRequest: MessageTypeDefinition<_vfiod_v1_ListOperationsRequest, _vfiod_v1_ListOperationsRequest__Output>
      ListOperationsResponse: MessageTypeDefinition<_vfiod_v1_ListOperationsResponse, _vfiod_v1_ListOperationsResponse__Output>
      NamespaceIdentity: MessageTypeDefinition<_vfiod_v1_NamespaceIdentity, _vfiod_v1_NamespaceIdentity__Output>
      NamespaceInfo: MessageTypeDefinition<_vfiod_v1_NamespaceInfo, _vfiod_v1_NamespaceInfo__Output>
      NamespaceLimits: MessageTypeDefinition<_vfiod_v1_NamespaceLimits, _vfiod_v1_NamespaceLimits__Output>
      Operation: MessageTypeDefinition<_vfiod_v1_Operation, _vfiod_v1_Operation__Output>
      OperationError: MessageTypeDefinition<_vfiod_v1_OperationError, _vfiod_v1_OperationError__Output>
      OperationKind: EnumTypeDefinition
      OperationService: SubtypeConstructor<typeof grpc.Client, _vfiod_v1_OperationServiceClient> & { service: _vfiod_v1_OperationServiceDefinition }
      OperationState: EnumTypeDefinition
      ResizeNamespaceRequest: MessageTypeDefinition<_vfiod_v1_ResizeNamespaceRequest, _vfiod_v1_ResizeNamespaceRequest__Output>
      ResizeNamespaceResponse: MessageTypeDefinition<_vfiod_v1_ResizeNamespaceResponse, _vfiod_v1_ResizeNamespaceResponse__Output>
      SetControllerLimitsRequest: MessageTypeDefinition<_vfiod_v1_SetControllerLimitsRequest, _vfiod_v1_SetControllerLimitsRequest__Output>
      SetControllerLimitsResponse: MessageTypeDefinition<_vfiod_v1_SetControllerLimitsResponse, _vfiod_v1_SetControllerLimitsResponse__Output>
      SwapNamespaceBackingRequest: MessageTypeDefinition<_vfiod_v1_SwapNamespaceBackingRequest, _vfiod_v1_SwapNamespaceBackingRequest__Output>
      SwapNamespaceBackingResponse: MessageTypeDefinition<_vfiod_v1_SwapNamespaceBackingResponse, _vfiod_v1_SwapNamespaceBackingResponse__Output>
      WaitOperationRequest: MessageTypeDefinition<_vfiod_v1_WaitOperationRequest, _vfiod_v1_WaitOperationRequest__Output>
      WaitOperationResponse: MessageTypeDefinition<_vfiod_v1_WaitOperationResponse, _vfiod_v1_WaitOperationResponse__Output>
    }
  }
}

