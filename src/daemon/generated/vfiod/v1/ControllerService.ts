// Original file: proto/vfiod/v1/controllers.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { AttachNamespaceRequest as _vfiod_v1_AttachNamespaceRequest, AttachNamespaceRequest__Output as _vfiod_v1_AttachNamespaceRequest__Output } from '../../vfiod/v1/AttachNamespaceRequest.js';
import type { AttachNamespaceResponse as _vfiod_v1_AttachNamespaceResponse, AttachNamespaceResponse__Output as _vfiod_v1_AttachNamespaceResponse__Output } from '../../vfiod/v1/AttachNamespaceResponse.js';
import type { CreateControllerRequest as _vfiod_v1_CreateControllerRequest, CreateControllerRequest__Output as _vfiod_v1_CreateControllerRequest__Output } from '../../vfiod/v1/CreateControllerRequest.js';
import type { CreateControllerResponse as _vfiod_v1_CreateControllerResponse, CreateControllerResponse__Output as _vfiod_v1_CreateControllerResponse__Output } from '../../vfiod/v1/CreateControllerResponse.js';
import type { DeleteControllerRequest as _vfiod_v1_DeleteControllerRequest, DeleteControllerRequest__Output as _vfiod_v1_DeleteControllerRequest__Output } from '../../vfiod/v1/DeleteControllerRequest.js';
import type { DeleteControllerResponse as _vfiod_v1_DeleteControllerResponse, DeleteControllerResponse__Output as _vfiod_v1_DeleteControllerResponse__Output } from '../../vfiod/v1/DeleteControllerResponse.js';
import type { DetachNamespaceRequest as _vfiod_v1_DetachNamespaceRequest, DetachNamespaceRequest__Output as _vfiod_v1_DetachNamespaceRequest__Output } from '../../vfiod/v1/DetachNamespaceRequest.js';
import type { DetachNamespaceResponse as _vfiod_v1_DetachNamespaceResponse, DetachNamespaceResponse__Output as _vfiod_v1_DetachNamespaceResponse__Output } from '../../vfiod/v1/DetachNamespaceResponse.js';
import type { GetControllerRequest as _vfiod_v1_GetControllerRequest, GetControllerRequest__Output as _vfiod_v1_GetControllerRequest__Output } from '../../vfiod/v1/GetControllerRequest.js';
import type { GetControllerResponse as _vfiod_v1_GetControllerResponse, GetControllerResponse__Output as _vfiod_v1_GetControllerResponse__Output } from '../../vfiod/v1/GetControllerResponse.js';
import type { ListControllersRequest as _vfiod_v1_ListControllersRequest, ListControllersRequest__Output as _vfiod_v1_ListControllersRequest__Output } from '../../vfiod/v1/ListControllersRequest.js';
import type { ListControllersResponse as _vfiod_v1_ListControllersResponse, ListControllersResponse__Output as _vfiod_v1_ListControllersResponse__Output } from '../../vfiod/v1/ListControllersResponse.js';
import type { ResizeNamespaceRequest as _vfiod_v1_ResizeNamespaceRequest, ResizeNamespaceRequest__Output as _vfiod_v1_ResizeNamespaceRequest__Output } from '../../vfiod/v1/ResizeNamespaceRequest.js';
import type { ResizeNamespaceResponse as _vfiod_v1_ResizeNamespaceResponse, ResizeNamespaceResponse__Output as _vfiod_v1_ResizeNamespaceResponse__Output } from '../../vfiod/v1/ResizeNamespaceResponse.js';
import type { SetControllerLimitsRequest as _vfiod_v1_SetControllerLimitsRequest, SetControllerLimitsRequest__Output as _vfiod_v1_SetControllerLimitsRequest__Output } from '../../vfiod/v1/SetControllerLimitsRequest.js';
import type { SetControllerLimitsResponse as _vfiod_v1_SetControllerLimitsResponse, SetControllerLimitsResponse__Output as _vfiod_v1_SetControllerLimitsResponse__Output } from '../../vfiod/v1/SetControllerLimitsResponse.js';
import type { SwapNamespaceBackingRequest as _vfiod_v1_SwapNamespaceBackingRequest, SwapNamespaceBackingRequest__Output as _vfiod_v1_SwapNamespaceBackingRequest__Output } from '../../vfiod/v1/SwapNamespaceBackingRequest.js';
import type { SwapNamespaceBackingResponse as _vfiod_v1_SwapNamespaceBackingResponse, SwapNamespaceBackingResponse__Output as _vfiod_v1_SwapNamespaceBackingResponse__Output } from '../../vfiod/v1/SwapNamespaceBackingResponse.js';

export interface ControllerServiceClient extends grpc.Client {
  /**
   * Namespaces of a serving controller (docs/daemon.md "Namespaces of a running controller"): each change is saved
   * with the controller's definition and told to the guest (Asynchronous Event Notification: Namespace Attribute
   * Changed, and the Changed Namespace List), which rescans without a reboot.
   */
  AttachNamespace(argument: _vfiod_v1_AttachNamespaceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_AttachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  AttachNamespace(argument: _vfiod_v1_AttachNamespaceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_AttachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  AttachNamespace(argument: _vfiod_v1_AttachNamespaceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_AttachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  AttachNamespace(argument: _vfiod_v1_AttachNamespaceRequest, callback: grpc.requestCallback<_vfiod_v1_AttachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Namespaces of a serving controller (docs/daemon.md "Namespaces of a running controller"): each change is saved
   * with the controller's definition and told to the guest (Asynchronous Event Notification: Namespace Attribute
   * Changed, and the Changed Namespace List), which rescans without a reboot.
   */
  attachNamespace(argument: _vfiod_v1_AttachNamespaceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_AttachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  attachNamespace(argument: _vfiod_v1_AttachNamespaceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_AttachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  attachNamespace(argument: _vfiod_v1_AttachNamespaceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_AttachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  attachNamespace(argument: _vfiod_v1_AttachNamespaceRequest, callback: grpc.requestCallback<_vfiod_v1_AttachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  
  CreateController(argument: _vfiod_v1_CreateControllerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_CreateControllerResponse__Output>): grpc.ClientUnaryCall;
  CreateController(argument: _vfiod_v1_CreateControllerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_CreateControllerResponse__Output>): grpc.ClientUnaryCall;
  CreateController(argument: _vfiod_v1_CreateControllerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_CreateControllerResponse__Output>): grpc.ClientUnaryCall;
  CreateController(argument: _vfiod_v1_CreateControllerRequest, callback: grpc.requestCallback<_vfiod_v1_CreateControllerResponse__Output>): grpc.ClientUnaryCall;
  createController(argument: _vfiod_v1_CreateControllerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_CreateControllerResponse__Output>): grpc.ClientUnaryCall;
  createController(argument: _vfiod_v1_CreateControllerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_CreateControllerResponse__Output>): grpc.ClientUnaryCall;
  createController(argument: _vfiod_v1_CreateControllerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_CreateControllerResponse__Output>): grpc.ClientUnaryCall;
  createController(argument: _vfiod_v1_CreateControllerRequest, callback: grpc.requestCallback<_vfiod_v1_CreateControllerResponse__Output>): grpc.ClientUnaryCall;
  
  DeleteController(argument: _vfiod_v1_DeleteControllerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_DeleteControllerResponse__Output>): grpc.ClientUnaryCall;
  DeleteController(argument: _vfiod_v1_DeleteControllerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_DeleteControllerResponse__Output>): grpc.ClientUnaryCall;
  DeleteController(argument: _vfiod_v1_DeleteControllerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_DeleteControllerResponse__Output>): grpc.ClientUnaryCall;
  DeleteController(argument: _vfiod_v1_DeleteControllerRequest, callback: grpc.requestCallback<_vfiod_v1_DeleteControllerResponse__Output>): grpc.ClientUnaryCall;
  deleteController(argument: _vfiod_v1_DeleteControllerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_DeleteControllerResponse__Output>): grpc.ClientUnaryCall;
  deleteController(argument: _vfiod_v1_DeleteControllerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_DeleteControllerResponse__Output>): grpc.ClientUnaryCall;
  deleteController(argument: _vfiod_v1_DeleteControllerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_DeleteControllerResponse__Output>): grpc.ClientUnaryCall;
  deleteController(argument: _vfiod_v1_DeleteControllerRequest, callback: grpc.requestCallback<_vfiod_v1_DeleteControllerResponse__Output>): grpc.ClientUnaryCall;
  
  DetachNamespace(argument: _vfiod_v1_DetachNamespaceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_DetachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  DetachNamespace(argument: _vfiod_v1_DetachNamespaceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_DetachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  DetachNamespace(argument: _vfiod_v1_DetachNamespaceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_DetachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  DetachNamespace(argument: _vfiod_v1_DetachNamespaceRequest, callback: grpc.requestCallback<_vfiod_v1_DetachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  detachNamespace(argument: _vfiod_v1_DetachNamespaceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_DetachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  detachNamespace(argument: _vfiod_v1_DetachNamespaceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_DetachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  detachNamespace(argument: _vfiod_v1_DetachNamespaceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_DetachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  detachNamespace(argument: _vfiod_v1_DetachNamespaceRequest, callback: grpc.requestCallback<_vfiod_v1_DetachNamespaceResponse__Output>): grpc.ClientUnaryCall;
  
  GetController(argument: _vfiod_v1_GetControllerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetControllerResponse__Output>): grpc.ClientUnaryCall;
  GetController(argument: _vfiod_v1_GetControllerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_GetControllerResponse__Output>): grpc.ClientUnaryCall;
  GetController(argument: _vfiod_v1_GetControllerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetControllerResponse__Output>): grpc.ClientUnaryCall;
  GetController(argument: _vfiod_v1_GetControllerRequest, callback: grpc.requestCallback<_vfiod_v1_GetControllerResponse__Output>): grpc.ClientUnaryCall;
  getController(argument: _vfiod_v1_GetControllerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetControllerResponse__Output>): grpc.ClientUnaryCall;
  getController(argument: _vfiod_v1_GetControllerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_GetControllerResponse__Output>): grpc.ClientUnaryCall;
  getController(argument: _vfiod_v1_GetControllerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetControllerResponse__Output>): grpc.ClientUnaryCall;
  getController(argument: _vfiod_v1_GetControllerRequest, callback: grpc.requestCallback<_vfiod_v1_GetControllerResponse__Output>): grpc.ClientUnaryCall;
  
  ListControllers(argument: _vfiod_v1_ListControllersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListControllersResponse__Output>): grpc.ClientUnaryCall;
  ListControllers(argument: _vfiod_v1_ListControllersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ListControllersResponse__Output>): grpc.ClientUnaryCall;
  ListControllers(argument: _vfiod_v1_ListControllersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListControllersResponse__Output>): grpc.ClientUnaryCall;
  ListControllers(argument: _vfiod_v1_ListControllersRequest, callback: grpc.requestCallback<_vfiod_v1_ListControllersResponse__Output>): grpc.ClientUnaryCall;
  listControllers(argument: _vfiod_v1_ListControllersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListControllersResponse__Output>): grpc.ClientUnaryCall;
  listControllers(argument: _vfiod_v1_ListControllersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ListControllersResponse__Output>): grpc.ClientUnaryCall;
  listControllers(argument: _vfiod_v1_ListControllersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListControllersResponse__Output>): grpc.ClientUnaryCall;
  listControllers(argument: _vfiod_v1_ListControllersRequest, callback: grpc.requestCallback<_vfiod_v1_ListControllersResponse__Output>): grpc.ClientUnaryCall;
  
  ResizeNamespace(argument: _vfiod_v1_ResizeNamespaceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ResizeNamespaceResponse__Output>): grpc.ClientUnaryCall;
  ResizeNamespace(argument: _vfiod_v1_ResizeNamespaceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ResizeNamespaceResponse__Output>): grpc.ClientUnaryCall;
  ResizeNamespace(argument: _vfiod_v1_ResizeNamespaceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ResizeNamespaceResponse__Output>): grpc.ClientUnaryCall;
  ResizeNamespace(argument: _vfiod_v1_ResizeNamespaceRequest, callback: grpc.requestCallback<_vfiod_v1_ResizeNamespaceResponse__Output>): grpc.ClientUnaryCall;
  resizeNamespace(argument: _vfiod_v1_ResizeNamespaceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ResizeNamespaceResponse__Output>): grpc.ClientUnaryCall;
  resizeNamespace(argument: _vfiod_v1_ResizeNamespaceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ResizeNamespaceResponse__Output>): grpc.ClientUnaryCall;
  resizeNamespace(argument: _vfiod_v1_ResizeNamespaceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ResizeNamespaceResponse__Output>): grpc.ClientUnaryCall;
  resizeNamespace(argument: _vfiod_v1_ResizeNamespaceRequest, callback: grpc.requestCallback<_vfiod_v1_ResizeNamespaceResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Replaces the I/O rate limits of a serving controller (the whole set: scopes not given become unlimited); they
   * take effect at once and are saved with the controller (docs/daemon.md "Rate limits").
   */
  SetControllerLimits(argument: _vfiod_v1_SetControllerLimitsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_SetControllerLimitsResponse__Output>): grpc.ClientUnaryCall;
  SetControllerLimits(argument: _vfiod_v1_SetControllerLimitsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_SetControllerLimitsResponse__Output>): grpc.ClientUnaryCall;
  SetControllerLimits(argument: _vfiod_v1_SetControllerLimitsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_SetControllerLimitsResponse__Output>): grpc.ClientUnaryCall;
  SetControllerLimits(argument: _vfiod_v1_SetControllerLimitsRequest, callback: grpc.requestCallback<_vfiod_v1_SetControllerLimitsResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Replaces the I/O rate limits of a serving controller (the whole set: scopes not given become unlimited); they
   * take effect at once and are saved with the controller (docs/daemon.md "Rate limits").
   */
  setControllerLimits(argument: _vfiod_v1_SetControllerLimitsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_SetControllerLimitsResponse__Output>): grpc.ClientUnaryCall;
  setControllerLimits(argument: _vfiod_v1_SetControllerLimitsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_SetControllerLimitsResponse__Output>): grpc.ClientUnaryCall;
  setControllerLimits(argument: _vfiod_v1_SetControllerLimitsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_SetControllerLimitsResponse__Output>): grpc.ClientUnaryCall;
  setControllerLimits(argument: _vfiod_v1_SetControllerLimitsRequest, callback: grpc.requestCallback<_vfiod_v1_SetControllerLimitsResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Moves a namespace to another backing while the guest does I/O (docs/daemon.md "Moving a namespace to another
   * backing"): answers at once with a running Operation (OperationService) that copies, then switches while the
   * namespace's commands wait briefly. The guest sees no Identify change and no error; a failure leaves it on the
   * old backing. The request is checked first: what is wrong with it is the call's error, not a failed operation.
   */
  SwapNamespaceBacking(argument: _vfiod_v1_SwapNamespaceBackingRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_SwapNamespaceBackingResponse__Output>): grpc.ClientUnaryCall;
  SwapNamespaceBacking(argument: _vfiod_v1_SwapNamespaceBackingRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_SwapNamespaceBackingResponse__Output>): grpc.ClientUnaryCall;
  SwapNamespaceBacking(argument: _vfiod_v1_SwapNamespaceBackingRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_SwapNamespaceBackingResponse__Output>): grpc.ClientUnaryCall;
  SwapNamespaceBacking(argument: _vfiod_v1_SwapNamespaceBackingRequest, callback: grpc.requestCallback<_vfiod_v1_SwapNamespaceBackingResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Moves a namespace to another backing while the guest does I/O (docs/daemon.md "Moving a namespace to another
   * backing"): answers at once with a running Operation (OperationService) that copies, then switches while the
   * namespace's commands wait briefly. The guest sees no Identify change and no error; a failure leaves it on the
   * old backing. The request is checked first: what is wrong with it is the call's error, not a failed operation.
   */
  swapNamespaceBacking(argument: _vfiod_v1_SwapNamespaceBackingRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_SwapNamespaceBackingResponse__Output>): grpc.ClientUnaryCall;
  swapNamespaceBacking(argument: _vfiod_v1_SwapNamespaceBackingRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_SwapNamespaceBackingResponse__Output>): grpc.ClientUnaryCall;
  swapNamespaceBacking(argument: _vfiod_v1_SwapNamespaceBackingRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_SwapNamespaceBackingResponse__Output>): grpc.ClientUnaryCall;
  swapNamespaceBacking(argument: _vfiod_v1_SwapNamespaceBackingRequest, callback: grpc.requestCallback<_vfiod_v1_SwapNamespaceBackingResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface ControllerServiceHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Namespaces of a serving controller (docs/daemon.md "Namespaces of a running controller"): each change is saved
   * with the controller's definition and told to the guest (Asynchronous Event Notification: Namespace Attribute
   * Changed, and the Changed Namespace List), which rescans without a reboot.
   */
  AttachNamespace: grpc.handleUnaryCall<_vfiod_v1_AttachNamespaceRequest__Output, _vfiod_v1_AttachNamespaceResponse>;
  
  CreateController: grpc.handleUnaryCall<_vfiod_v1_CreateControllerRequest__Output, _vfiod_v1_CreateControllerResponse>;
  
  DeleteController: grpc.handleUnaryCall<_vfiod_v1_DeleteControllerRequest__Output, _vfiod_v1_DeleteControllerResponse>;
  
  DetachNamespace: grpc.handleUnaryCall<_vfiod_v1_DetachNamespaceRequest__Output, _vfiod_v1_DetachNamespaceResponse>;
  
  GetController: grpc.handleUnaryCall<_vfiod_v1_GetControllerRequest__Output, _vfiod_v1_GetControllerResponse>;
  
  ListControllers: grpc.handleUnaryCall<_vfiod_v1_ListControllersRequest__Output, _vfiod_v1_ListControllersResponse>;
  
  ResizeNamespace: grpc.handleUnaryCall<_vfiod_v1_ResizeNamespaceRequest__Output, _vfiod_v1_ResizeNamespaceResponse>;
  
  /**
   * Replaces the I/O rate limits of a serving controller (the whole set: scopes not given become unlimited); they
   * take effect at once and are saved with the controller (docs/daemon.md "Rate limits").
   */
  SetControllerLimits: grpc.handleUnaryCall<_vfiod_v1_SetControllerLimitsRequest__Output, _vfiod_v1_SetControllerLimitsResponse>;
  
  /**
   * Moves a namespace to another backing while the guest does I/O (docs/daemon.md "Moving a namespace to another
   * backing"): answers at once with a running Operation (OperationService) that copies, then switches while the
   * namespace's commands wait briefly. The guest sees no Identify change and no error; a failure leaves it on the
   * old backing. The request is checked first: what is wrong with it is the call's error, not a failed operation.
   */
  SwapNamespaceBacking: grpc.handleUnaryCall<_vfiod_v1_SwapNamespaceBackingRequest__Output, _vfiod_v1_SwapNamespaceBackingResponse>;
  
}

export interface ControllerServiceDefinition extends grpc.ServiceDefinition {
  AttachNamespace: MethodDefinition<_vfiod_v1_AttachNamespaceRequest, _vfiod_v1_AttachNamespaceResponse, _vfiod_v1_AttachNamespaceRequest__Output, _vfiod_v1_AttachNamespaceResponse__Output>
  CreateController: MethodDefinition<_vfiod_v1_CreateControllerRequest, _vfiod_v1_CreateControllerResponse, _vfiod_v1_CreateControllerRequest__Output, _vfiod_v1_CreateControllerResponse__Output>
  DeleteController: MethodDefinition<_vfiod_v1_DeleteControllerRequest, _vfiod_v1_DeleteControllerResponse, _vfiod_v1_DeleteControllerRequest__Output, _vfiod_v1_DeleteControllerResponse__Output>
  DetachNamespace: MethodDefinition<_vfiod_v1_DetachNamespaceRequest, _vfiod_v1_DetachNamespaceResponse, _vfiod_v1_DetachNamespaceRequest__Output, _vfiod_v1_DetachNamespaceResponse__Output>
  GetController: MethodDefinition<_vfiod_v1_GetControllerRequest, _vfiod_v1_GetControllerResponse, _vfiod_v1_GetControllerRequest__Output, _vfiod_v1_GetControllerResponse__Output>
  ListControllers: MethodDefinition<_vfiod_v1_ListControllersRequest, _vfiod_v1_ListControllersResponse, _vfiod_v1_ListControllersRequest__Output, _vfiod_v1_ListControllersResponse__Output>
  ResizeNamespace: MethodDefinition<_vfiod_v1_ResizeNamespaceRequest, _vfiod_v1_ResizeNamespaceResponse, _vfiod_v1_ResizeNamespaceRequest__Output, _vfiod_v1_ResizeNamespaceResponse__Output>
  SetControllerLimits: MethodDefinition<_vfiod_v1_SetControllerLimitsRequest, _vfiod_v1_SetControllerLimitsResponse, _vfiod_v1_SetControllerLimitsRequest__Output, _vfiod_v1_SetControllerLimitsResponse__Output>
  SwapNamespaceBacking: MethodDefinition<_vfiod_v1_SwapNamespaceBackingRequest, _vfiod_v1_SwapNamespaceBackingResponse, _vfiod_v1_SwapNamespaceBackingRequest__Output, _vfiod_v1_SwapNamespaceBackingResponse__Output>
}
