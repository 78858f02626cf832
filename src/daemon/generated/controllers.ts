import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

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
import type { IoLimits as _vfiod_v1_IoLimits, IoLimits__Output as _vfiod_v1_IoLimits__Output } from './vfiod/v1/IoLimits.js';
import type { LatencyHistogram as _vfiod_v1_LatencyHistogram, LatencyHistogram__Output as _vfiod_v1_LatencyHistogram__Output } from './vfiod/v1/LatencyHistogram.js';
import type { ListControllersRequest as _vfiod_v1_ListControllersRequest, ListControllersRequest__Output as _vfiod_v1_ListControllersRequest__Output } from './vfiod/v1/ListControllersRequest.js';
import type { ListControllersResponse as _vfiod_v1_ListControllersResponse, ListControllersResponse__Output as _vfiod_v1_ListControllersResponse__Output } from './vfiod/v1/ListControllersResponse.js';
import type { NamespaceIdentity as _vfiod_v1_NamespaceIdentity, NamespaceIdentity__Output as _vfiod_v1_NamespaceIdentity__Output } from './vfiod/v1/NamespaceIdentity.js';
import type { NamespaceInfo as _vfiod_v1_NamespaceInfo, NamespaceInfo__Output as _vfiod_v1_NamespaceInfo__Output } from './vfiod/v1/NamespaceInfo.js';
import type { NamespaceLimits as _vfiod_v1_NamespaceLimits, NamespaceLimits__Output as _vfiod_v1_NamespaceLimits__Output } from './vfiod/v1/NamespaceLimits.js';
import type { ResizeNamespaceRequest as _vfiod_v1_ResizeNamespaceRequest, ResizeNamespaceRequest__Output as _vfiod_v1_ResizeNamespaceRequest__Output } from './vfiod/v1/ResizeNamespaceRequest.js';
import type { ResizeNamespaceResponse as _vfiod_v1_ResizeNamespaceResponse, ResizeNamespaceResponse__Output as _vfiod_v1_ResizeNamespaceResponse__Output } from './vfiod/v1/ResizeNamespaceResponse.js';
import type { SetControllerLimitsRequest as _vfiod_v1_SetControllerLimitsRequest, SetControllerLimitsRequest__Output as _vfiod_v1_SetControllerLimitsRequest__Output } from './vfiod/v1/SetControllerLimitsRequest.js';
import type { SetControllerLimitsResponse as _vfiod_v1_SetControllerLimitsResponse, SetControllerLimitsResponse__Output as _vfiod_v1_SetControllerLimitsResponse__Output } from './vfiod/v1/SetControllerLimitsResponse.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
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
      IoLimits: MessageTypeDefinition<_vfiod_v1_IoLimits, _vfiod_v1_IoLimits__Output>
      LatencyHistogram: MessageTypeDefinition<_vfiod_v1_LatencyHistogram, _vfiod_v1_LatencyHistogram__Output>
      ListControllersRequest: MessageTypeDefinition<_vfiod_v1_ListControllersRequest, _vfiod_v1_ListControllersRequest__Output>
      ListControllersResponse: MessageTypeDefinition<_vfiod_v1_ListControllersResponse, _vfiod_v1_ListControllersResponse__Output>
      NamespaceIdentity: MessageTypeDefinition<_vfiod_v1_NamespaceIdentity, _vfiod_v1_NamespaceIdentity__Output>
      NamespaceInfo: MessageTypeDefinition<_vfiod_v1_NamespaceInfo, _vfiod_v1_NamespaceInfo__Output>
      NamespaceLimits: MessageTypeDefinition<_vfiod_v1_NamespaceLimits, _vfiod_v1_NamespaceLimits__Output>
      ResizeNamespaceRequest: MessageTypeDefinition<_vfiod_v1_ResizeNamespaceRequest, _vfiod_v1_ResizeNamespaceRequest__Output>
      ResizeNamespaceResponse: MessageTypeDefinition<_vfiod_v1_ResizeNamespaceResponse, _vfiod_v1_ResizeNamespaceResponse__Output>
      SetControllerLimitsRequest: MessageTypeDefinition<_vfiod_v1_SetControllerLimitsRequest, _vfiod_v1_SetControllerLimitsRequest__Output>
      SetControllerLimitsResponse: MessageTypeDefinition<_vfiod_v1_SetControllerLimitsResponse, _vfiod_v1_SetControllerLimitsResponse__Output>
    }
  }
}

