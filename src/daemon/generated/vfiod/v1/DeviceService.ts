// Original file: proto/vfiod/v1/devices.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { ClearVgpuTypeRequest as _vfiod_v1_ClearVgpuTypeRequest, ClearVgpuTypeRequest__Output as _vfiod_v1_ClearVgpuTypeRequest__Output } from '../../vfiod/v1/ClearVgpuTypeRequest.js';
import type { ClearVgpuTypeResponse as _vfiod_v1_ClearVgpuTypeResponse, ClearVgpuTypeResponse__Output as _vfiod_v1_ClearVgpuTypeResponse__Output } from '../../vfiod/v1/ClearVgpuTypeResponse.js';
import type { CreateVfsRequest as _vfiod_v1_CreateVfsRequest, CreateVfsRequest__Output as _vfiod_v1_CreateVfsRequest__Output } from '../../vfiod/v1/CreateVfsRequest.js';
import type { CreateVfsResponse as _vfiod_v1_CreateVfsResponse, CreateVfsResponse__Output as _vfiod_v1_CreateVfsResponse__Output } from '../../vfiod/v1/CreateVfsResponse.js';
import type { DeviceEvent as _vfiod_v1_DeviceEvent, DeviceEvent__Output as _vfiod_v1_DeviceEvent__Output } from '../../vfiod/v1/DeviceEvent.js';
import type { GetDeviceRequest as _vfiod_v1_GetDeviceRequest, GetDeviceRequest__Output as _vfiod_v1_GetDeviceRequest__Output } from '../../vfiod/v1/GetDeviceRequest.js';
import type { GetDeviceResponse as _vfiod_v1_GetDeviceResponse, GetDeviceResponse__Output as _vfiod_v1_GetDeviceResponse__Output } from '../../vfiod/v1/GetDeviceResponse.js';
import type { ListDevicesRequest as _vfiod_v1_ListDevicesRequest, ListDevicesRequest__Output as _vfiod_v1_ListDevicesRequest__Output } from '../../vfiod/v1/ListDevicesRequest.js';
import type { ListDevicesResponse as _vfiod_v1_ListDevicesResponse, ListDevicesResponse__Output as _vfiod_v1_ListDevicesResponse__Output } from '../../vfiod/v1/ListDevicesResponse.js';
import type { ListVgpuTypesRequest as _vfiod_v1_ListVgpuTypesRequest, ListVgpuTypesRequest__Output as _vfiod_v1_ListVgpuTypesRequest__Output } from '../../vfiod/v1/ListVgpuTypesRequest.js';
import type { ListVgpuTypesResponse as _vfiod_v1_ListVgpuTypesResponse, ListVgpuTypesResponse__Output as _vfiod_v1_ListVgpuTypesResponse__Output } from '../../vfiod/v1/ListVgpuTypesResponse.js';
import type { PrepareDeviceRequest as _vfiod_v1_PrepareDeviceRequest, PrepareDeviceRequest__Output as _vfiod_v1_PrepareDeviceRequest__Output } from '../../vfiod/v1/PrepareDeviceRequest.js';
import type { PrepareDeviceResponse as _vfiod_v1_PrepareDeviceResponse, PrepareDeviceResponse__Output as _vfiod_v1_PrepareDeviceResponse__Output } from '../../vfiod/v1/PrepareDeviceResponse.js';
import type { ReleaseDeviceRequest as _vfiod_v1_ReleaseDeviceRequest, ReleaseDeviceRequest__Output as _vfiod_v1_ReleaseDeviceRequest__Output } from '../../vfiod/v1/ReleaseDeviceRequest.js';
import type { ReleaseDeviceResponse as _vfiod_v1_ReleaseDeviceResponse, ReleaseDeviceResponse__Output as _vfiod_v1_ReleaseDeviceResponse__Output } from '../../vfiod/v1/ReleaseDeviceResponse.js';
import type { SetVgpuTypeRequest as _vfiod_v1_SetVgpuTypeRequest, SetVgpuTypeRequest__Output as _vfiod_v1_SetVgpuTypeRequest__Output } from '../../vfiod/v1/SetVgpuTypeRequest.js';
import type { SetVgpuTypeResponse as _vfiod_v1_SetVgpuTypeResponse, SetVgpuTypeResponse__Output as _vfiod_v1_SetVgpuTypeResponse__Output } from '../../vfiod/v1/SetVgpuTypeResponse.js';
import type { StreamDeviceEventsRequest as _vfiod_v1_StreamDeviceEventsRequest, StreamDeviceEventsRequest__Output as _vfiod_v1_StreamDeviceEventsRequest__Output } from '../../vfiod/v1/StreamDeviceEventsRequest.js';

export interface DeviceServiceClient extends grpc.Client {
  /**
   * Clears the profile (current_vgpu_type = 0); refused while the VF is attached.
   */
  ClearVgpuType(argument: _vfiod_v1_ClearVgpuTypeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ClearVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  ClearVgpuType(argument: _vfiod_v1_ClearVgpuTypeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ClearVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  ClearVgpuType(argument: _vfiod_v1_ClearVgpuTypeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ClearVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  ClearVgpuType(argument: _vfiod_v1_ClearVgpuTypeRequest, callback: grpc.requestCallback<_vfiod_v1_ClearVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Clears the profile (current_vgpu_type = 0); refused while the VF is attached.
   */
  clearVgpuType(argument: _vfiod_v1_ClearVgpuTypeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ClearVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  clearVgpuType(argument: _vfiod_v1_ClearVgpuTypeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ClearVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  clearVgpuType(argument: _vfiod_v1_ClearVgpuTypeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ClearVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  clearVgpuType(argument: _vfiod_v1_ClearVgpuTypeRequest, callback: grpc.requestCallback<_vfiod_v1_ClearVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Creates num_vfs VFs on an SR-IOV PF with sriov_drivers_autoprobe off and prepares each for owner; any failure
   * rolls everything back. Refused while the PF has VFs claimed, attached or in use. num_vfs = 0 removes the VFs.
   */
  CreateVfs(argument: _vfiod_v1_CreateVfsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_CreateVfsResponse__Output>): grpc.ClientUnaryCall;
  CreateVfs(argument: _vfiod_v1_CreateVfsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_CreateVfsResponse__Output>): grpc.ClientUnaryCall;
  CreateVfs(argument: _vfiod_v1_CreateVfsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_CreateVfsResponse__Output>): grpc.ClientUnaryCall;
  CreateVfs(argument: _vfiod_v1_CreateVfsRequest, callback: grpc.requestCallback<_vfiod_v1_CreateVfsResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Creates num_vfs VFs on an SR-IOV PF with sriov_drivers_autoprobe off and prepares each for owner; any failure
   * rolls everything back. Refused while the PF has VFs claimed, attached or in use. num_vfs = 0 removes the VFs.
   */
  createVfs(argument: _vfiod_v1_CreateVfsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_CreateVfsResponse__Output>): grpc.ClientUnaryCall;
  createVfs(argument: _vfiod_v1_CreateVfsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_CreateVfsResponse__Output>): grpc.ClientUnaryCall;
  createVfs(argument: _vfiod_v1_CreateVfsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_CreateVfsResponse__Output>): grpc.ClientUnaryCall;
  createVfs(argument: _vfiod_v1_CreateVfsRequest, callback: grpc.requestCallback<_vfiod_v1_CreateVfsResponse__Output>): grpc.ClientUnaryCall;
  
  GetDevice(argument: _vfiod_v1_GetDeviceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetDeviceResponse__Output>): grpc.ClientUnaryCall;
  GetDevice(argument: _vfiod_v1_GetDeviceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_GetDeviceResponse__Output>): grpc.ClientUnaryCall;
  GetDevice(argument: _vfiod_v1_GetDeviceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetDeviceResponse__Output>): grpc.ClientUnaryCall;
  GetDevice(argument: _vfiod_v1_GetDeviceRequest, callback: grpc.requestCallback<_vfiod_v1_GetDeviceResponse__Output>): grpc.ClientUnaryCall;
  getDevice(argument: _vfiod_v1_GetDeviceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetDeviceResponse__Output>): grpc.ClientUnaryCall;
  getDevice(argument: _vfiod_v1_GetDeviceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_GetDeviceResponse__Output>): grpc.ClientUnaryCall;
  getDevice(argument: _vfiod_v1_GetDeviceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetDeviceResponse__Output>): grpc.ClientUnaryCall;
  getDevice(argument: _vfiod_v1_GetDeviceRequest, callback: grpc.requestCallback<_vfiod_v1_GetDeviceResponse__Output>): grpc.ClientUnaryCall;
  
  ListDevices(argument: _vfiod_v1_ListDevicesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListDevicesResponse__Output>): grpc.ClientUnaryCall;
  ListDevices(argument: _vfiod_v1_ListDevicesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ListDevicesResponse__Output>): grpc.ClientUnaryCall;
  ListDevices(argument: _vfiod_v1_ListDevicesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListDevicesResponse__Output>): grpc.ClientUnaryCall;
  ListDevices(argument: _vfiod_v1_ListDevicesRequest, callback: grpc.requestCallback<_vfiod_v1_ListDevicesResponse__Output>): grpc.ClientUnaryCall;
  listDevices(argument: _vfiod_v1_ListDevicesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListDevicesResponse__Output>): grpc.ClientUnaryCall;
  listDevices(argument: _vfiod_v1_ListDevicesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ListDevicesResponse__Output>): grpc.ClientUnaryCall;
  listDevices(argument: _vfiod_v1_ListDevicesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListDevicesResponse__Output>): grpc.ClientUnaryCall;
  listDevices(argument: _vfiod_v1_ListDevicesRequest, callback: grpc.requestCallback<_vfiod_v1_ListDevicesResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * NVIDIA vGPU VFs (SR-IOV, driver on nvidia): the profile a VF has and those it can take now.
   */
  ListVgpuTypes(argument: _vfiod_v1_ListVgpuTypesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListVgpuTypesResponse__Output>): grpc.ClientUnaryCall;
  ListVgpuTypes(argument: _vfiod_v1_ListVgpuTypesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ListVgpuTypesResponse__Output>): grpc.ClientUnaryCall;
  ListVgpuTypes(argument: _vfiod_v1_ListVgpuTypesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListVgpuTypesResponse__Output>): grpc.ClientUnaryCall;
  ListVgpuTypes(argument: _vfiod_v1_ListVgpuTypesRequest, callback: grpc.requestCallback<_vfiod_v1_ListVgpuTypesResponse__Output>): grpc.ClientUnaryCall;
  /**
   * NVIDIA vGPU VFs (SR-IOV, driver on nvidia): the profile a VF has and those it can take now.
   */
  listVgpuTypes(argument: _vfiod_v1_ListVgpuTypesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListVgpuTypesResponse__Output>): grpc.ClientUnaryCall;
  listVgpuTypes(argument: _vfiod_v1_ListVgpuTypesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ListVgpuTypesResponse__Output>): grpc.ClientUnaryCall;
  listVgpuTypes(argument: _vfiod_v1_ListVgpuTypesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListVgpuTypesResponse__Output>): grpc.ClientUnaryCall;
  listVgpuTypes(argument: _vfiod_v1_ListVgpuTypesRequest, callback: grpc.requestCallback<_vfiod_v1_ListVgpuTypesResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Idempotent for the same owner. Any failure rolls back every change; the status message says what was undone.
   */
  PrepareDevice(argument: _vfiod_v1_PrepareDeviceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_PrepareDeviceResponse__Output>): grpc.ClientUnaryCall;
  PrepareDevice(argument: _vfiod_v1_PrepareDeviceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_PrepareDeviceResponse__Output>): grpc.ClientUnaryCall;
  PrepareDevice(argument: _vfiod_v1_PrepareDeviceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_PrepareDeviceResponse__Output>): grpc.ClientUnaryCall;
  PrepareDevice(argument: _vfiod_v1_PrepareDeviceRequest, callback: grpc.requestCallback<_vfiod_v1_PrepareDeviceResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Idempotent for the same owner. Any failure rolls back every change; the status message says what was undone.
   */
  prepareDevice(argument: _vfiod_v1_PrepareDeviceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_PrepareDeviceResponse__Output>): grpc.ClientUnaryCall;
  prepareDevice(argument: _vfiod_v1_PrepareDeviceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_PrepareDeviceResponse__Output>): grpc.ClientUnaryCall;
  prepareDevice(argument: _vfiod_v1_PrepareDeviceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_PrepareDeviceResponse__Output>): grpc.ClientUnaryCall;
  prepareDevice(argument: _vfiod_v1_PrepareDeviceRequest, callback: grpc.requestCallback<_vfiod_v1_PrepareDeviceResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Refused (UNAVAILABLE) while a VMM still holds the device, unless it lets go within wait_ms.
   */
  ReleaseDevice(argument: _vfiod_v1_ReleaseDeviceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ReleaseDeviceResponse__Output>): grpc.ClientUnaryCall;
  ReleaseDevice(argument: _vfiod_v1_ReleaseDeviceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ReleaseDeviceResponse__Output>): grpc.ClientUnaryCall;
  ReleaseDevice(argument: _vfiod_v1_ReleaseDeviceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ReleaseDeviceResponse__Output>): grpc.ClientUnaryCall;
  ReleaseDevice(argument: _vfiod_v1_ReleaseDeviceRequest, callback: grpc.requestCallback<_vfiod_v1_ReleaseDeviceResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Refused (UNAVAILABLE) while a VMM still holds the device, unless it lets go within wait_ms.
   */
  releaseDevice(argument: _vfiod_v1_ReleaseDeviceRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ReleaseDeviceResponse__Output>): grpc.ClientUnaryCall;
  releaseDevice(argument: _vfiod_v1_ReleaseDeviceRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ReleaseDeviceResponse__Output>): grpc.ClientUnaryCall;
  releaseDevice(argument: _vfiod_v1_ReleaseDeviceRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ReleaseDeviceResponse__Output>): grpc.ClientUnaryCall;
  releaseDevice(argument: _vfiod_v1_ReleaseDeviceRequest, callback: grpc.requestCallback<_vfiod_v1_ReleaseDeviceResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Selects a profile (nvidia/current_vgpu_type), claiming the VF for owner; refused while the VF is attached.
   */
  SetVgpuType(argument: _vfiod_v1_SetVgpuTypeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_SetVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  SetVgpuType(argument: _vfiod_v1_SetVgpuTypeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_SetVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  SetVgpuType(argument: _vfiod_v1_SetVgpuTypeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_SetVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  SetVgpuType(argument: _vfiod_v1_SetVgpuTypeRequest, callback: grpc.requestCallback<_vfiod_v1_SetVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Selects a profile (nvidia/current_vgpu_type), claiming the VF for owner; refused while the VF is attached.
   */
  setVgpuType(argument: _vfiod_v1_SetVgpuTypeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_SetVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  setVgpuType(argument: _vfiod_v1_SetVgpuTypeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_SetVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  setVgpuType(argument: _vfiod_v1_SetVgpuTypeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_SetVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  setVgpuType(argument: _vfiod_v1_SetVgpuTypeRequest, callback: grpc.requestCallback<_vfiod_v1_SetVgpuTypeResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The stream carries DeviceEvent, not a StreamDeviceEventsResponse: the event message (FeOS's shape: id,
   * component_id, Any data) is what clients name in their code, and renaming it would change their generated types.
   * buf:lint:ignore RPC_RESPONSE_STANDARD_NAME
   */
  StreamDeviceEvents(argument: _vfiod_v1_StreamDeviceEventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_vfiod_v1_DeviceEvent__Output>;
  StreamDeviceEvents(argument: _vfiod_v1_StreamDeviceEventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_vfiod_v1_DeviceEvent__Output>;
  /**
   * The stream carries DeviceEvent, not a StreamDeviceEventsResponse: the event message (FeOS's shape: id,
   * component_id, Any data) is what clients name in their code, and renaming it would change their generated types.
   * buf:lint:ignore RPC_RESPONSE_STANDARD_NAME
   */
  streamDeviceEvents(argument: _vfiod_v1_StreamDeviceEventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_vfiod_v1_DeviceEvent__Output>;
  streamDeviceEvents(argument: _vfiod_v1_StreamDeviceEventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_vfiod_v1_DeviceEvent__Output>;
  
}

export interface DeviceServiceHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Clears the profile (current_vgpu_type = 0); refused while the VF is attached.
   */
  ClearVgpuType: grpc.handleUnaryCall<_vfiod_v1_ClearVgpuTypeRequest__Output, _vfiod_v1_ClearVgpuTypeResponse>;
  
  /**
   * Creates num_vfs VFs on an SR-IOV PF with sriov_drivers_autoprobe off and prepares each for owner; any failure
   * rolls everything back. Refused while the PF has VFs claimed, attached or in use. num_vfs = 0 removes the VFs.
   */
  CreateVfs: grpc.handleUnaryCall<_vfiod_v1_CreateVfsRequest__Output, _vfiod_v1_CreateVfsResponse>;
  
  GetDevice: grpc.handleUnaryCall<_vfiod_v1_GetDeviceRequest__Output, _vfiod_v1_GetDeviceResponse>;
  
  ListDevices: grpc.handleUnaryCall<_vfiod_v1_ListDevicesRequest__Output, _vfiod_v1_ListDevicesResponse>;
  
  /**
   * NVIDIA vGPU VFs (SR-IOV, driver on nvidia): the profile a VF has and those it can take now.
   */
  ListVgpuTypes: grpc.handleUnaryCall<_vfiod_v1_ListVgpuTypesRequest__Output, _vfiod_v1_ListVgpuTypesResponse>;
  
  /**
   * Idempotent for the same owner. Any failure rolls back every change; the status message says what was undone.
   */
  PrepareDevice: grpc.handleUnaryCall<_vfiod_v1_PrepareDeviceRequest__Output, _vfiod_v1_PrepareDeviceResponse>;
  
  /**
   * Refused (UNAVAILABLE) while a VMM still holds the device, unless it lets go within wait_ms.
   */
  ReleaseDevice: grpc.handleUnaryCall<_vfiod_v1_ReleaseDeviceRequest__Output, _vfiod_v1_ReleaseDeviceResponse>;
  
  /**
   * Selects a profile (nvidia/current_vgpu_type), claiming the VF for owner; refused while the VF is attached.
   */
  SetVgpuType: grpc.handleUnaryCall<_vfiod_v1_SetVgpuTypeRequest__Output, _vfiod_v1_SetVgpuTypeResponse>;
  
  /**
   * The stream carries DeviceEvent, not a StreamDeviceEventsResponse: the event message (FeOS's shape: id,
   * component_id, Any data) is what clients name in their code, and renaming it would change their generated types.
   * buf:lint:ignore RPC_RESPONSE_STANDARD_NAME
   */
  StreamDeviceEvents: grpc.handleServerStreamingCall<_vfiod_v1_StreamDeviceEventsRequest__Output, _vfiod_v1_DeviceEvent>;
  
}

export interface DeviceServiceDefinition extends grpc.ServiceDefinition {
  ClearVgpuType: MethodDefinition<_vfiod_v1_ClearVgpuTypeRequest, _vfiod_v1_ClearVgpuTypeResponse, _vfiod_v1_ClearVgpuTypeRequest__Output, _vfiod_v1_ClearVgpuTypeResponse__Output>
  CreateVfs: MethodDefinition<_vfiod_v1_CreateVfsRequest, _vfiod_v1_CreateVfsResponse, _vfiod_v1_CreateVfsRequest__Output, _vfiod_v1_CreateVfsResponse__Output>
  GetDevice: MethodDefinition<_vfiod_v1_GetDeviceRequest, _vfiod_v1_GetDeviceResponse, _vfiod_v1_GetDeviceRequest__Output, _vfiod_v1_GetDeviceResponse__Output>
  ListDevices: MethodDefinition<_vfiod_v1_ListDevicesRequest, _vfiod_v1_ListDevicesResponse, _vfiod_v1_ListDevicesRequest__Output, _vfiod_v1_ListDevicesResponse__Output>
  ListVgpuTypes: MethodDefinition<_vfiod_v1_ListVgpuTypesRequest, _vfiod_v1_ListVgpuTypesResponse, _vfiod_v1_ListVgpuTypesRequest__Output, _vfiod_v1_ListVgpuTypesResponse__Output>
  PrepareDevice: MethodDefinition<_vfiod_v1_PrepareDeviceRequest, _vfiod_v1_PrepareDeviceResponse, _vfiod_v1_PrepareDeviceRequest__Output, _vfiod_v1_PrepareDeviceResponse__Output>
  ReleaseDevice: MethodDefinition<_vfiod_v1_ReleaseDeviceRequest, _vfiod_v1_ReleaseDeviceResponse, _vfiod_v1_ReleaseDeviceRequest__Output, _vfiod_v1_ReleaseDeviceResponse__Output>
  SetVgpuType: MethodDefinition<_vfiod_v1_SetVgpuTypeRequest, _vfiod_v1_SetVgpuTypeResponse, _vfiod_v1_SetVgpuTypeRequest__Output, _vfiod_v1_SetVgpuTypeResponse__Output>
  StreamDeviceEvents: MethodDefinition<_vfiod_v1_StreamDeviceEventsRequest, _vfiod_v1_DeviceEvent, _vfiod_v1_StreamDeviceEventsRequest__Output, _vfiod_v1_DeviceEvent__Output>
}
