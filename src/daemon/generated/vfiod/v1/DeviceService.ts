// Original file: /work/wt/api-types/proto/vfiod/v1/devices.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { DeviceEvent as _vfiod_v1_DeviceEvent, DeviceEvent__Output as _vfiod_v1_DeviceEvent__Output } from '../../vfiod/v1/DeviceEvent.js';
import type { GetDeviceRequest as _vfiod_v1_GetDeviceRequest, GetDeviceRequest__Output as _vfiod_v1_GetDeviceRequest__Output } from '../../vfiod/v1/GetDeviceRequest.js';
import type { GetDeviceResponse as _vfiod_v1_GetDeviceResponse, GetDeviceResponse__Output as _vfiod_v1_GetDeviceResponse__Output } from '../../vfiod/v1/GetDeviceResponse.js';
import type { ListDevicesRequest as _vfiod_v1_ListDevicesRequest, ListDevicesRequest__Output as _vfiod_v1_ListDevicesRequest__Output } from '../../vfiod/v1/ListDevicesRequest.js';
import type { ListDevicesResponse as _vfiod_v1_ListDevicesResponse, ListDevicesResponse__Output as _vfiod_v1_ListDevicesResponse__Output } from '../../vfiod/v1/ListDevicesResponse.js';
import type { PrepareDeviceRequest as _vfiod_v1_PrepareDeviceRequest, PrepareDeviceRequest__Output as _vfiod_v1_PrepareDeviceRequest__Output } from '../../vfiod/v1/PrepareDeviceRequest.js';
import type { PrepareDeviceResponse as _vfiod_v1_PrepareDeviceResponse, PrepareDeviceResponse__Output as _vfiod_v1_PrepareDeviceResponse__Output } from '../../vfiod/v1/PrepareDeviceResponse.js';
import type { ReleaseDeviceRequest as _vfiod_v1_ReleaseDeviceRequest, ReleaseDeviceRequest__Output as _vfiod_v1_ReleaseDeviceRequest__Output } from '../../vfiod/v1/ReleaseDeviceRequest.js';
import type { ReleaseDeviceResponse as _vfiod_v1_ReleaseDeviceResponse, ReleaseDeviceResponse__Output as _vfiod_v1_ReleaseDeviceResponse__Output } from '../../vfiod/v1/ReleaseDeviceResponse.js';
import type { StreamDeviceEventsRequest as _vfiod_v1_StreamDeviceEventsRequest, StreamDeviceEventsRequest__Output as _vfiod_v1_StreamDeviceEventsRequest__Output } from '../../vfiod/v1/StreamDeviceEventsRequest.js';

export interface DeviceServiceClient extends grpc.Client {
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
  GetDevice: grpc.handleUnaryCall<_vfiod_v1_GetDeviceRequest__Output, _vfiod_v1_GetDeviceResponse>;
  
  ListDevices: grpc.handleUnaryCall<_vfiod_v1_ListDevicesRequest__Output, _vfiod_v1_ListDevicesResponse>;
  
  /**
   * Idempotent for the same owner. Any failure rolls back every change; the status message says what was undone.
   */
  PrepareDevice: grpc.handleUnaryCall<_vfiod_v1_PrepareDeviceRequest__Output, _vfiod_v1_PrepareDeviceResponse>;
  
  /**
   * Refused (UNAVAILABLE) while a VMM still holds the device, unless it lets go within wait_ms.
   */
  ReleaseDevice: grpc.handleUnaryCall<_vfiod_v1_ReleaseDeviceRequest__Output, _vfiod_v1_ReleaseDeviceResponse>;
  
  /**
   * The stream carries DeviceEvent, not a StreamDeviceEventsResponse: the event message (FeOS's shape: id,
   * component_id, Any data) is what clients name in their code, and renaming it would change their generated types.
   * buf:lint:ignore RPC_RESPONSE_STANDARD_NAME
   */
  StreamDeviceEvents: grpc.handleServerStreamingCall<_vfiod_v1_StreamDeviceEventsRequest__Output, _vfiod_v1_DeviceEvent>;
  
}

export interface DeviceServiceDefinition extends grpc.ServiceDefinition {
  GetDevice: MethodDefinition<_vfiod_v1_GetDeviceRequest, _vfiod_v1_GetDeviceResponse, _vfiod_v1_GetDeviceRequest__Output, _vfiod_v1_GetDeviceResponse__Output>
  ListDevices: MethodDefinition<_vfiod_v1_ListDevicesRequest, _vfiod_v1_ListDevicesResponse, _vfiod_v1_ListDevicesRequest__Output, _vfiod_v1_ListDevicesResponse__Output>
  PrepareDevice: MethodDefinition<_vfiod_v1_PrepareDeviceRequest, _vfiod_v1_PrepareDeviceResponse, _vfiod_v1_PrepareDeviceRequest__Output, _vfiod_v1_PrepareDeviceResponse__Output>
  ReleaseDevice: MethodDefinition<_vfiod_v1_ReleaseDeviceRequest, _vfiod_v1_ReleaseDeviceResponse, _vfiod_v1_ReleaseDeviceRequest__Output, _vfiod_v1_ReleaseDeviceResponse__Output>
  StreamDeviceEvents: MethodDefinition<_vfiod_v1_StreamDeviceEventsRequest, _vfiod_v1_DeviceEvent, _vfiod_v1_StreamDeviceEventsRequest__Output, _vfiod_v1_DeviceEvent__Output>
}
