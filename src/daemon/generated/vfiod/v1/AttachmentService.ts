// Original file: proto/vfiod/v1/attachments.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { AttachDeviceRequest as _vfiod_v1_AttachDeviceRequest, AttachDeviceRequest__Output as _vfiod_v1_AttachDeviceRequest__Output } from '../../vfiod/v1/AttachDeviceRequest.js';
import type { AttachDeviceResponse as _vfiod_v1_AttachDeviceResponse, AttachDeviceResponse__Output as _vfiod_v1_AttachDeviceResponse__Output } from '../../vfiod/v1/AttachDeviceResponse.js';
import type { DetachDeviceRequest as _vfiod_v1_DetachDeviceRequest, DetachDeviceRequest__Output as _vfiod_v1_DetachDeviceRequest__Output } from '../../vfiod/v1/DetachDeviceRequest.js';
import type { DetachDeviceResponse as _vfiod_v1_DetachDeviceResponse, DetachDeviceResponse__Output as _vfiod_v1_DetachDeviceResponse__Output } from '../../vfiod/v1/DetachDeviceResponse.js';
import type { GetVmConfigRequest as _vfiod_v1_GetVmConfigRequest, GetVmConfigRequest__Output as _vfiod_v1_GetVmConfigRequest__Output } from '../../vfiod/v1/GetVmConfigRequest.js';
import type { GetVmConfigResponse as _vfiod_v1_GetVmConfigResponse, GetVmConfigResponse__Output as _vfiod_v1_GetVmConfigResponse__Output } from '../../vfiod/v1/GetVmConfigResponse.js';
import type { ListAttachmentsRequest as _vfiod_v1_ListAttachmentsRequest, ListAttachmentsRequest__Output as _vfiod_v1_ListAttachmentsRequest__Output } from '../../vfiod/v1/ListAttachmentsRequest.js';
import type { ListAttachmentsResponse as _vfiod_v1_ListAttachmentsResponse, ListAttachmentsResponse__Output as _vfiod_v1_ListAttachmentsResponse__Output } from '../../vfiod/v1/ListAttachmentsResponse.js';

export interface AttachmentServiceClient extends grpc.Client {
  /**
   * prepare (PCI) -> add to the VMM -> confirm the VMM reports it. Any failure rolls back. Repeating the same
   * attach is idempotent (changed = false). Answers at once with a running Operation (OperationService); with wait,
   * once it is done (then also with the attachment, as before operations existed; a failure is the call's status).
   * A request_id makes a retry safe (AIP-155): the same id with the same request answers with the first call's
   * operation, also after a daemon restart; with another request it is INVALID_ARGUMENT REQUEST_ID_REUSED.
   */
  AttachDevice(argument: _vfiod_v1_AttachDeviceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_AttachDeviceResponse__Output>): grpc.ClientUnaryCall;
  AttachDevice(argument: _vfiod_v1_AttachDeviceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_AttachDeviceResponse__Output>): grpc.ClientUnaryCall;
  AttachDevice(argument: _vfiod_v1_AttachDeviceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_AttachDeviceResponse__Output>): grpc.ClientUnaryCall;
  AttachDevice(argument: _vfiod_v1_AttachDeviceRequest, callback: grpc.requestCallback<_vfiod_v1_AttachDeviceResponse__Output>): grpc.ClientUnaryCall;
  /**
   * prepare (PCI) -> add to the VMM -> confirm the VMM reports it. Any failure rolls back. Repeating the same
   * attach is idempotent (changed = false). Answers at once with a running Operation (OperationService); with wait,
   * once it is done (then also with the attachment, as before operations existed; a failure is the call's status).
   * A request_id makes a retry safe (AIP-155): the same id with the same request answers with the first call's
   * operation, also after a daemon restart; with another request it is INVALID_ARGUMENT REQUEST_ID_REUSED.
   */
  attachDevice(argument: _vfiod_v1_AttachDeviceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_AttachDeviceResponse__Output>): grpc.ClientUnaryCall;
  attachDevice(argument: _vfiod_v1_AttachDeviceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_AttachDeviceResponse__Output>): grpc.ClientUnaryCall;
  attachDevice(argument: _vfiod_v1_AttachDeviceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_AttachDeviceResponse__Output>): grpc.ClientUnaryCall;
  attachDevice(argument: _vfiod_v1_AttachDeviceRequest, callback: grpc.requestCallback<_vfiod_v1_AttachDeviceResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * remove from the VMM -> wait for the guest to let go (timeout_ms) -> release to the host driver. Answers at once
   * with a running Operation; with wait, once it is done. A guest that does not let go in time ends the operation in
   * OPERATION_STATE_DETACH_PENDING (not an error status, also with wait): the device stays claimed and nothing is
   * rebound; call again to keep waiting.
   */
  DetachDevice(argument: _vfiod_v1_DetachDeviceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_DetachDeviceResponse__Output>): grpc.ClientUnaryCall;
  DetachDevice(argument: _vfiod_v1_DetachDeviceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_DetachDeviceResponse__Output>): grpc.ClientUnaryCall;
  DetachDevice(argument: _vfiod_v1_DetachDeviceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_DetachDeviceResponse__Output>): grpc.ClientUnaryCall;
  DetachDevice(argument: _vfiod_v1_DetachDeviceRequest, callback: grpc.requestCallback<_vfiod_v1_DetachDeviceResponse__Output>): grpc.ClientUnaryCall;
  /**
   * remove from the VMM -> wait for the guest to let go (timeout_ms) -> release to the host driver. Answers at once
   * with a running Operation; with wait, once it is done. A guest that does not let go in time ends the operation in
   * OPERATION_STATE_DETACH_PENDING (not an error status, also with wait): the device stays claimed and nothing is
   * rebound; call again to keep waiting.
   */
  detachDevice(argument: _vfiod_v1_DetachDeviceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_DetachDeviceResponse__Output>): grpc.ClientUnaryCall;
  detachDevice(argument: _vfiod_v1_DetachDeviceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_DetachDeviceResponse__Output>): grpc.ClientUnaryCall;
  detachDevice(argument: _vfiod_v1_DetachDeviceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_DetachDeviceResponse__Output>): grpc.ClientUnaryCall;
  detachDevice(argument: _vfiod_v1_DetachDeviceRequest, callback: grpc.requestCallback<_vfiod_v1_DetachDeviceResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The exact static device configuration for creating a VM (cloud-hypervisor VmConfig devices/user_devices, QEMU
   * arguments with boot order). With prepare_devices, PCI devices are also prepared for vm_id.
   */
  GetVmConfig(argument: _vfiod_v1_GetVmConfigRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetVmConfigResponse__Output>): grpc.ClientUnaryCall;
  GetVmConfig(argument: _vfiod_v1_GetVmConfigRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_GetVmConfigResponse__Output>): grpc.ClientUnaryCall;
  GetVmConfig(argument: _vfiod_v1_GetVmConfigRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetVmConfigResponse__Output>): grpc.ClientUnaryCall;
  GetVmConfig(argument: _vfiod_v1_GetVmConfigRequest, callback: grpc.requestCallback<_vfiod_v1_GetVmConfigResponse__Output>): grpc.ClientUnaryCall;
  /**
   * The exact static device configuration for creating a VM (cloud-hypervisor VmConfig devices/user_devices, QEMU
   * arguments with boot order). With prepare_devices, PCI devices are also prepared for vm_id.
   */
  getVmConfig(argument: _vfiod_v1_GetVmConfigRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetVmConfigResponse__Output>): grpc.ClientUnaryCall;
  getVmConfig(argument: _vfiod_v1_GetVmConfigRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_GetVmConfigResponse__Output>): grpc.ClientUnaryCall;
  getVmConfig(argument: _vfiod_v1_GetVmConfigRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetVmConfigResponse__Output>): grpc.ClientUnaryCall;
  getVmConfig(argument: _vfiod_v1_GetVmConfigRequest, callback: grpc.requestCallback<_vfiod_v1_GetVmConfigResponse__Output>): grpc.ClientUnaryCall;
  
  ListAttachments(argument: _vfiod_v1_ListAttachmentsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListAttachmentsResponse__Output>): grpc.ClientUnaryCall;
  ListAttachments(argument: _vfiod_v1_ListAttachmentsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ListAttachmentsResponse__Output>): grpc.ClientUnaryCall;
  ListAttachments(argument: _vfiod_v1_ListAttachmentsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListAttachmentsResponse__Output>): grpc.ClientUnaryCall;
  ListAttachments(argument: _vfiod_v1_ListAttachmentsRequest, callback: grpc.requestCallback<_vfiod_v1_ListAttachmentsResponse__Output>): grpc.ClientUnaryCall;
  listAttachments(argument: _vfiod_v1_ListAttachmentsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListAttachmentsResponse__Output>): grpc.ClientUnaryCall;
  listAttachments(argument: _vfiod_v1_ListAttachmentsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ListAttachmentsResponse__Output>): grpc.ClientUnaryCall;
  listAttachments(argument: _vfiod_v1_ListAttachmentsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListAttachmentsResponse__Output>): grpc.ClientUnaryCall;
  listAttachments(argument: _vfiod_v1_ListAttachmentsRequest, callback: grpc.requestCallback<_vfiod_v1_ListAttachmentsResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface AttachmentServiceHandlers extends grpc.UntypedServiceImplementation {
  /**
   * prepare (PCI) -> add to the VMM -> confirm the VMM reports it. Any failure rolls back. Repeating the same
   * attach is idempotent (changed = false). Answers at once with a running Operation (OperationService); with wait,
   * once it is done (then also with the attachment, as before operations existed; a failure is the call's status).
   * A request_id makes a retry safe (AIP-155): the same id with the same request answers with the first call's
   * operation, also after a daemon restart; with another request it is INVALID_ARGUMENT REQUEST_ID_REUSED.
   */
  AttachDevice: grpc.handleUnaryCall<_vfiod_v1_AttachDeviceRequest__Output, _vfiod_v1_AttachDeviceResponse>;
  
  /**
   * remove from the VMM -> wait for the guest to let go (timeout_ms) -> release to the host driver. Answers at once
   * with a running Operation; with wait, once it is done. A guest that does not let go in time ends the operation in
   * OPERATION_STATE_DETACH_PENDING (not an error status, also with wait): the device stays claimed and nothing is
   * rebound; call again to keep waiting.
   */
  DetachDevice: grpc.handleUnaryCall<_vfiod_v1_DetachDeviceRequest__Output, _vfiod_v1_DetachDeviceResponse>;
  
  /**
   * The exact static device configuration for creating a VM (cloud-hypervisor VmConfig devices/user_devices, QEMU
   * arguments with boot order). With prepare_devices, PCI devices are also prepared for vm_id.
   */
  GetVmConfig: grpc.handleUnaryCall<_vfiod_v1_GetVmConfigRequest__Output, _vfiod_v1_GetVmConfigResponse>;
  
  ListAttachments: grpc.handleUnaryCall<_vfiod_v1_ListAttachmentsRequest__Output, _vfiod_v1_ListAttachmentsResponse>;
  
}

export interface AttachmentServiceDefinition extends grpc.ServiceDefinition {
  AttachDevice: MethodDefinition<_vfiod_v1_AttachDeviceRequest, _vfiod_v1_AttachDeviceResponse, _vfiod_v1_AttachDeviceRequest__Output, _vfiod_v1_AttachDeviceResponse__Output>
  DetachDevice: MethodDefinition<_vfiod_v1_DetachDeviceRequest, _vfiod_v1_DetachDeviceResponse, _vfiod_v1_DetachDeviceRequest__Output, _vfiod_v1_DetachDeviceResponse__Output>
  GetVmConfig: MethodDefinition<_vfiod_v1_GetVmConfigRequest, _vfiod_v1_GetVmConfigResponse, _vfiod_v1_GetVmConfigRequest__Output, _vfiod_v1_GetVmConfigResponse__Output>
  ListAttachments: MethodDefinition<_vfiod_v1_ListAttachmentsRequest, _vfiod_v1_ListAttachmentsResponse, _vfiod_v1_ListAttachmentsRequest__Output, _vfiod_v1_ListAttachmentsResponse__Output>
}
