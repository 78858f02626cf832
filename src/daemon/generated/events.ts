import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Any as _google_protobuf_Any, Any__Output as _google_protobuf_Any__Output } from './google/protobuf/Any.js';
import type { AttachDeviceRequest as _vfiod_v1_AttachDeviceRequest, AttachDeviceRequest__Output as _vfiod_v1_AttachDeviceRequest__Output } from './vfiod/v1/AttachDeviceRequest.js';
import type { AttachDeviceResponse as _vfiod_v1_AttachDeviceResponse, AttachDeviceResponse__Output as _vfiod_v1_AttachDeviceResponse__Output } from './vfiod/v1/AttachDeviceResponse.js';
import type { AttachedFunction as _vfiod_v1_AttachedFunction, AttachedFunction__Output as _vfiod_v1_AttachedFunction__Output } from './vfiod/v1/AttachedFunction.js';
import type { AttachmentInfo as _vfiod_v1_AttachmentInfo, AttachmentInfo__Output as _vfiod_v1_AttachmentInfo__Output } from './vfiod/v1/AttachmentInfo.js';
import type { AttachmentServiceClient as _vfiod_v1_AttachmentServiceClient, AttachmentServiceDefinition as _vfiod_v1_AttachmentServiceDefinition } from './vfiod/v1/AttachmentService.js';
import type { BarInfo as _vfiod_v1_BarInfo, BarInfo__Output as _vfiod_v1_BarInfo__Output } from './vfiod/v1/BarInfo.js';
import type { ClaimInfo as _vfiod_v1_ClaimInfo, ClaimInfo__Output as _vfiod_v1_ClaimInfo__Output } from './vfiod/v1/ClaimInfo.js';
import type { ClearVgpuTypeRequest as _vfiod_v1_ClearVgpuTypeRequest, ClearVgpuTypeRequest__Output as _vfiod_v1_ClearVgpuTypeRequest__Output } from './vfiod/v1/ClearVgpuTypeRequest.js';
import type { ClearVgpuTypeResponse as _vfiod_v1_ClearVgpuTypeResponse, ClearVgpuTypeResponse__Output as _vfiod_v1_ClearVgpuTypeResponse__Output } from './vfiod/v1/ClearVgpuTypeResponse.js';
import type { CloudHypervisorConfig as _vfiod_v1_CloudHypervisorConfig, CloudHypervisorConfig__Output as _vfiod_v1_CloudHypervisorConfig__Output } from './vfiod/v1/CloudHypervisorConfig.js';
import type { CreateVfsRequest as _vfiod_v1_CreateVfsRequest, CreateVfsRequest__Output as _vfiod_v1_CreateVfsRequest__Output } from './vfiod/v1/CreateVfsRequest.js';
import type { CreateVfsResponse as _vfiod_v1_CreateVfsResponse, CreateVfsResponse__Output as _vfiod_v1_CreateVfsResponse__Output } from './vfiod/v1/CreateVfsResponse.js';
import type { DetachDeviceRequest as _vfiod_v1_DetachDeviceRequest, DetachDeviceRequest__Output as _vfiod_v1_DetachDeviceRequest__Output } from './vfiod/v1/DetachDeviceRequest.js';
import type { DetachDeviceResponse as _vfiod_v1_DetachDeviceResponse, DetachDeviceResponse__Output as _vfiod_v1_DetachDeviceResponse__Output } from './vfiod/v1/DetachDeviceResponse.js';
import type { DeviceEvent as _vfiod_v1_DeviceEvent, DeviceEvent__Output as _vfiod_v1_DeviceEvent__Output } from './vfiod/v1/DeviceEvent.js';
import type { DeviceInfo as _vfiod_v1_DeviceInfo, DeviceInfo__Output as _vfiod_v1_DeviceInfo__Output } from './vfiod/v1/DeviceInfo.js';
import type { DeviceServiceClient as _vfiod_v1_DeviceServiceClient, DeviceServiceDefinition as _vfiod_v1_DeviceServiceDefinition } from './vfiod/v1/DeviceService.js';
import type { DeviceSource as _vfiod_v1_DeviceSource, DeviceSource__Output as _vfiod_v1_DeviceSource__Output } from './vfiod/v1/DeviceSource.js';
import type { DeviceStateChanged as _vfiod_v1_DeviceStateChanged, DeviceStateChanged__Output as _vfiod_v1_DeviceStateChanged__Output } from './vfiod/v1/DeviceStateChanged.js';
import type { Event as _vfiod_v1_Event, Event__Output as _vfiod_v1_Event__Output } from './vfiod/v1/Event.js';
import type { EventServiceClient as _vfiod_v1_EventServiceClient, EventServiceDefinition as _vfiod_v1_EventServiceDefinition } from './vfiod/v1/EventService.js';
import type { GetDeviceRequest as _vfiod_v1_GetDeviceRequest, GetDeviceRequest__Output as _vfiod_v1_GetDeviceRequest__Output } from './vfiod/v1/GetDeviceRequest.js';
import type { GetDeviceResponse as _vfiod_v1_GetDeviceResponse, GetDeviceResponse__Output as _vfiod_v1_GetDeviceResponse__Output } from './vfiod/v1/GetDeviceResponse.js';
import type { GetOperationRequest as _vfiod_v1_GetOperationRequest, GetOperationRequest__Output as _vfiod_v1_GetOperationRequest__Output } from './vfiod/v1/GetOperationRequest.js';
import type { GetOperationResponse as _vfiod_v1_GetOperationResponse, GetOperationResponse__Output as _vfiod_v1_GetOperationResponse__Output } from './vfiod/v1/GetOperationResponse.js';
import type { GetVmConfigRequest as _vfiod_v1_GetVmConfigRequest, GetVmConfigRequest__Output as _vfiod_v1_GetVmConfigRequest__Output } from './vfiod/v1/GetVmConfigRequest.js';
import type { GetVmConfigResponse as _vfiod_v1_GetVmConfigResponse, GetVmConfigResponse__Output as _vfiod_v1_GetVmConfigResponse__Output } from './vfiod/v1/GetVmConfigResponse.js';
import type { HostUse as _vfiod_v1_HostUse, HostUse__Output as _vfiod_v1_HostUse__Output } from './vfiod/v1/HostUse.js';
import type { HypervisorEndpoint as _vfiod_v1_HypervisorEndpoint, HypervisorEndpoint__Output as _vfiod_v1_HypervisorEndpoint__Output } from './vfiod/v1/HypervisorEndpoint.js';
import type { ListAttachmentsRequest as _vfiod_v1_ListAttachmentsRequest, ListAttachmentsRequest__Output as _vfiod_v1_ListAttachmentsRequest__Output } from './vfiod/v1/ListAttachmentsRequest.js';
import type { ListAttachmentsResponse as _vfiod_v1_ListAttachmentsResponse, ListAttachmentsResponse__Output as _vfiod_v1_ListAttachmentsResponse__Output } from './vfiod/v1/ListAttachmentsResponse.js';
import type { ListDevicesRequest as _vfiod_v1_ListDevicesRequest, ListDevicesRequest__Output as _vfiod_v1_ListDevicesRequest__Output } from './vfiod/v1/ListDevicesRequest.js';
import type { ListDevicesResponse as _vfiod_v1_ListDevicesResponse, ListDevicesResponse__Output as _vfiod_v1_ListDevicesResponse__Output } from './vfiod/v1/ListDevicesResponse.js';
import type { ListOperationsRequest as _vfiod_v1_ListOperationsRequest, ListOperationsRequest__Output as _vfiod_v1_ListOperationsRequest__Output } from './vfiod/v1/ListOperationsRequest.js';
import type { ListOperationsResponse as _vfiod_v1_ListOperationsResponse, ListOperationsResponse__Output as _vfiod_v1_ListOperationsResponse__Output } from './vfiod/v1/ListOperationsResponse.js';
import type { ListVgpuTypesRequest as _vfiod_v1_ListVgpuTypesRequest, ListVgpuTypesRequest__Output as _vfiod_v1_ListVgpuTypesRequest__Output } from './vfiod/v1/ListVgpuTypesRequest.js';
import type { ListVgpuTypesResponse as _vfiod_v1_ListVgpuTypesResponse, ListVgpuTypesResponse__Output as _vfiod_v1_ListVgpuTypesResponse__Output } from './vfiod/v1/ListVgpuTypesResponse.js';
import type { Operation as _vfiod_v1_Operation, Operation__Output as _vfiod_v1_Operation__Output } from './vfiod/v1/Operation.js';
import type { OperationError as _vfiod_v1_OperationError, OperationError__Output as _vfiod_v1_OperationError__Output } from './vfiod/v1/OperationError.js';
import type { OperationServiceClient as _vfiod_v1_OperationServiceClient, OperationServiceDefinition as _vfiod_v1_OperationServiceDefinition } from './vfiod/v1/OperationService.js';
import type { PciWindowInfo as _vfiod_v1_PciWindowInfo, PciWindowInfo__Output as _vfiod_v1_PciWindowInfo__Output } from './vfiod/v1/PciWindowInfo.js';
import type { PrepareDeviceRequest as _vfiod_v1_PrepareDeviceRequest, PrepareDeviceRequest__Output as _vfiod_v1_PrepareDeviceRequest__Output } from './vfiod/v1/PrepareDeviceRequest.js';
import type { PrepareDeviceResponse as _vfiod_v1_PrepareDeviceResponse, PrepareDeviceResponse__Output as _vfiod_v1_PrepareDeviceResponse__Output } from './vfiod/v1/PrepareDeviceResponse.js';
import type { PrepareDeviceResult as _vfiod_v1_PrepareDeviceResult, PrepareDeviceResult__Output as _vfiod_v1_PrepareDeviceResult__Output } from './vfiod/v1/PrepareDeviceResult.js';
import type { PreparedDevice as _vfiod_v1_PreparedDevice, PreparedDevice__Output as _vfiod_v1_PreparedDevice__Output } from './vfiod/v1/PreparedDevice.js';
import type { QemuConfig as _vfiod_v1_QemuConfig, QemuConfig__Output as _vfiod_v1_QemuConfig__Output } from './vfiod/v1/QemuConfig.js';
import type { ReleaseDeviceRequest as _vfiod_v1_ReleaseDeviceRequest, ReleaseDeviceRequest__Output as _vfiod_v1_ReleaseDeviceRequest__Output } from './vfiod/v1/ReleaseDeviceRequest.js';
import type { ReleaseDeviceResponse as _vfiod_v1_ReleaseDeviceResponse, ReleaseDeviceResponse__Output as _vfiod_v1_ReleaseDeviceResponse__Output } from './vfiod/v1/ReleaseDeviceResponse.js';
import type { ReleasedDevice as _vfiod_v1_ReleasedDevice, ReleasedDevice__Output as _vfiod_v1_ReleasedDevice__Output } from './vfiod/v1/ReleasedDevice.js';
import type { SetVgpuTypeRequest as _vfiod_v1_SetVgpuTypeRequest, SetVgpuTypeRequest__Output as _vfiod_v1_SetVgpuTypeRequest__Output } from './vfiod/v1/SetVgpuTypeRequest.js';
import type { SetVgpuTypeResponse as _vfiod_v1_SetVgpuTypeResponse, SetVgpuTypeResponse__Output as _vfiod_v1_SetVgpuTypeResponse__Output } from './vfiod/v1/SetVgpuTypeResponse.js';
import type { SriovInfo as _vfiod_v1_SriovInfo, SriovInfo__Output as _vfiod_v1_SriovInfo__Output } from './vfiod/v1/SriovInfo.js';
import type { StreamDeviceEventsRequest as _vfiod_v1_StreamDeviceEventsRequest, StreamDeviceEventsRequest__Output as _vfiod_v1_StreamDeviceEventsRequest__Output } from './vfiod/v1/StreamDeviceEventsRequest.js';
import type { VgpuInfo as _vfiod_v1_VgpuInfo, VgpuInfo__Output as _vfiod_v1_VgpuInfo__Output } from './vfiod/v1/VgpuInfo.js';
import type { VgpuType as _vfiod_v1_VgpuType, VgpuType__Output as _vfiod_v1_VgpuType__Output } from './vfiod/v1/VgpuType.js';
import type { VmDevice as _vfiod_v1_VmDevice, VmDevice__Output as _vfiod_v1_VmDevice__Output } from './vfiod/v1/VmDevice.js';
import type { WaitOperationRequest as _vfiod_v1_WaitOperationRequest, WaitOperationRequest__Output as _vfiod_v1_WaitOperationRequest__Output } from './vfiod/v1/WaitOperationRequest.js';
import type { WaitOperationResponse as _vfiod_v1_WaitOperationResponse, WaitOperationResponse__Output as _vfiod_v1_WaitOperationResponse__Output } from './vfiod/v1/WaitOperationResponse.js';
import type { WatchEventsRequest as _vfiod_v1_WatchEventsRequest, WatchEventsRequest__Output as _vfiod_v1_WatchEventsRequest__Output } from './vfiod/v1/WatchEventsRequest.js';
import type { WatchEventsResponse as _vfiod_v1_WatchEventsResponse, WatchEventsResponse__Output as _vfiod_v1_WatchEventsResponse__Output } from './vfiod/v1/WatchEventsResponse.js';

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
      AttachDeviceRequest: MessageTypeDefinition<_vfiod_v1_AttachDeviceRequest, _vfiod_v1_AttachDeviceRequest__Output>
      AttachDeviceResponse: MessageTypeDefinition<_vfiod_v1_AttachDeviceResponse, _vfiod_v1_AttachDeviceResponse__Output>
      AttachedFunction: MessageTypeDefinition<_vfiod_v1_AttachedFunction, _vfiod_v1_AttachedFunction__Output>
      AttachmentInfo: MessageTypeDefinition<_vfiod_v1_AttachmentInfo, _vfiod_v1_AttachmentInfo__Output>
      AttachmentService: SubtypeConstructor<typeof grpc.Client, _vfiod_v1_AttachmentServiceClient> & { service: _vfiod_v1_AttachmentServiceDefinition }
      AttachmentState: EnumTypeDefinition
      BarInfo: MessageTypeDefinition<_vfiod_v1_BarInfo, _vfiod_v1_BarInfo__Output>
      ClaimInfo: MessageTypeDefinition<_vfiod_v1_ClaimInfo, _vfiod_v1_ClaimInfo__Output>
      ClaimMode: EnumTypeDefinition
      ClaimState: EnumTypeDefinition
      ClearVgpuTypeRequest: MessageTypeDefinition<_vfiod_v1_ClearVgpuTypeRequest, _vfiod_v1_ClearVgpuTypeRequest__Output>
      ClearVgpuTypeResponse: MessageTypeDefinition<_vfiod_v1_ClearVgpuTypeResponse, _vfiod_v1_ClearVgpuTypeResponse__Output>
      CloudHypervisorConfig: MessageTypeDefinition<_vfiod_v1_CloudHypervisorConfig, _vfiod_v1_CloudHypervisorConfig__Output>
      CreateVfsRequest: MessageTypeDefinition<_vfiod_v1_CreateVfsRequest, _vfiod_v1_CreateVfsRequest__Output>
      CreateVfsResponse: MessageTypeDefinition<_vfiod_v1_CreateVfsResponse, _vfiod_v1_CreateVfsResponse__Output>
      DetachDeviceRequest: MessageTypeDefinition<_vfiod_v1_DetachDeviceRequest, _vfiod_v1_DetachDeviceRequest__Output>
      DetachDeviceResponse: MessageTypeDefinition<_vfiod_v1_DetachDeviceResponse, _vfiod_v1_DetachDeviceResponse__Output>
      DeviceEvent: MessageTypeDefinition<_vfiod_v1_DeviceEvent, _vfiod_v1_DeviceEvent__Output>
      DeviceEventKind: EnumTypeDefinition
      DeviceInfo: MessageTypeDefinition<_vfiod_v1_DeviceInfo, _vfiod_v1_DeviceInfo__Output>
      DeviceKind: EnumTypeDefinition
      DeviceService: SubtypeConstructor<typeof grpc.Client, _vfiod_v1_DeviceServiceClient> & { service: _vfiod_v1_DeviceServiceDefinition }
      DeviceSource: MessageTypeDefinition<_vfiod_v1_DeviceSource, _vfiod_v1_DeviceSource__Output>
      DeviceStateChanged: MessageTypeDefinition<_vfiod_v1_DeviceStateChanged, _vfiod_v1_DeviceStateChanged__Output>
      Event: MessageTypeDefinition<_vfiod_v1_Event, _vfiod_v1_Event__Output>
      EventResourceType: EnumTypeDefinition
      EventService: SubtypeConstructor<typeof grpc.Client, _vfiod_v1_EventServiceClient> & { service: _vfiod_v1_EventServiceDefinition }
      GetDeviceRequest: MessageTypeDefinition<_vfiod_v1_GetDeviceRequest, _vfiod_v1_GetDeviceRequest__Output>
      GetDeviceResponse: MessageTypeDefinition<_vfiod_v1_GetDeviceResponse, _vfiod_v1_GetDeviceResponse__Output>
      GetOperationRequest: MessageTypeDefinition<_vfiod_v1_GetOperationRequest, _vfiod_v1_GetOperationRequest__Output>
      GetOperationResponse: MessageTypeDefinition<_vfiod_v1_GetOperationResponse, _vfiod_v1_GetOperationResponse__Output>
      GetVmConfigRequest: MessageTypeDefinition<_vfiod_v1_GetVmConfigRequest, _vfiod_v1_GetVmConfigRequest__Output>
      GetVmConfigResponse: MessageTypeDefinition<_vfiod_v1_GetVmConfigResponse, _vfiod_v1_GetVmConfigResponse__Output>
      HostUse: MessageTypeDefinition<_vfiod_v1_HostUse, _vfiod_v1_HostUse__Output>
      HypervisorEndpoint: MessageTypeDefinition<_vfiod_v1_HypervisorEndpoint, _vfiod_v1_HypervisorEndpoint__Output>
      HypervisorKind: EnumTypeDefinition
      ListAttachmentsRequest: MessageTypeDefinition<_vfiod_v1_ListAttachmentsRequest, _vfiod_v1_ListAttachmentsRequest__Output>
      ListAttachmentsResponse: MessageTypeDefinition<_vfiod_v1_ListAttachmentsResponse, _vfiod_v1_ListAttachmentsResponse__Output>
      ListDevicesRequest: MessageTypeDefinition<_vfiod_v1_ListDevicesRequest, _vfiod_v1_ListDevicesRequest__Output>
      ListDevicesResponse: MessageTypeDefinition<_vfiod_v1_ListDevicesResponse, _vfiod_v1_ListDevicesResponse__Output>
      ListOperationsRequest: MessageTypeDefinition<_vfiod_v1_ListOperationsRequest, _vfiod_v1_ListOperationsRequest__Output>
      ListOperationsResponse: MessageTypeDefinition<_vfiod_v1_ListOperationsResponse, _vfiod_v1_ListOperationsResponse__Output>
      ListVgpuTypesRequest: MessageTypeDefinition<_vfiod_v1_ListVgpuTypesRequest, _vfiod_v1_ListVgpuTypesRequest__Output>
      ListVgpuTypesResponse: MessageTypeDefinition<_vfiod_v1_ListVgpuTypesResponse, _vfiod_v1_ListVgpuTypesResponse__Output>
      Operation: MessageTypeDefinition<_vfiod_v1_Operation, _vfiod_v1_Operation__Output>
      OperationError: MessageTypeDefinition<_vfiod_v1_OperationError, _vfiod_v1_OperationError__Output>
      OperationKind: EnumTypeDefinition
      OperationService: SubtypeConstructor<typeof grpc.Client, _vfiod_v1_OperationServiceClient> & { service: _vfiod_v1_OperationServiceDefinition }
      OperationState: EnumTypeDefinition
      PciWindowInfo: MessageTypeDefinition<_vfiod_v1_PciWindowInfo, _vfiod_v1_PciWindowInfo__Output>
      PrepareDeviceRequest: MessageTypeDefinition<_vfiod_v1_PrepareDeviceRequest, _vfiod_v1_PrepareDeviceRequest__Output>
      PrepareDeviceResponse: MessageTypeDefinition<_vfiod_v1_PrepareDeviceResponse, _vfiod_v1_PrepareDeviceResponse__Output>
      PrepareDeviceResult: MessageTypeDefinition<_vfiod_v1_PrepareDeviceResult, _vfiod_v1_PrepareDeviceResult__Output>
      PreparedDevice: MessageTypeDefinition<_vfiod_v1_PreparedDevice, _vfiod_v1_PreparedDevice__Output>
      QemuConfig: MessageTypeDefinition<_vfiod_v1_QemuConfig, _vfiod_v1_QemuConfig__Output>
      ReleaseDeviceRequest: MessageTypeDefinition<_vfiod_v1_ReleaseDeviceRequest, _vfiod_v1_ReleaseDeviceRequest__Output>
      ReleaseDeviceResponse: MessageTypeDefinition<_vfiod_v1_ReleaseDeviceResponse, _vfiod_v1_ReleaseDeviceResponse__Output>
      ReleasedDevice: MessageTypeDefinition<_vfiod_v1_ReleasedDevice, _vfiod_v1_ReleasedDevice__Output>
      SetVgpuTypeRequest: MessageTypeDefinition<_vfiod_v1_SetVgpuTypeRequest, _vfiod_v1_SetVgpuTypeRequest__Output>
      SetVgpuTypeResponse: MessageTypeDefinition<_vfiod_v1_SetVgpuTypeResponse, _vfiod_v1_SetVgpuTypeResponse__Output>
      SriovInfo: MessageTypeDefinition<_vfiod_v1_SriovInfo, _vfiod_v1_SriovInfo__Output>
      StreamDeviceEventsRequest: MessageTypeDefinition<_vfiod_v1_StreamDeviceEventsRequest, _vfiod_v1_StreamDeviceEventsRequest__Output>
      VfioBackend: EnumTypeDefinition
      VfioState: EnumTypeDefinition
      VgpuInfo: MessageTypeDefinition<_vfiod_v1_VgpuInfo, _vfiod_v1_VgpuInfo__Output>
      VgpuType: MessageTypeDefinition<_vfiod_v1_VgpuType, _vfiod_v1_VgpuType__Output>
      VmDevice: MessageTypeDefinition<_vfiod_v1_VmDevice, _vfiod_v1_VmDevice__Output>
      WaitOperationRequest: MessageTypeDefinition<_vfiod_v1_WaitOperationRequest, _vfiod_v1_WaitOperationRequest__Output>
      WaitOperationResponse: MessageTypeDefinition<_vfiod_v1_WaitOperationResponse, _vfiod_v1_WaitOperationResponse__Output>
      WatchEventsRequest: MessageTypeDefinition<_vfiod_v1_WatchEventsRequest, _vfiod_v1_WatchEventsRequest__Output>
      WatchEventsResponse: MessageTypeDefinition<_vfiod_v1_WatchEventsResponse, _vfiod_v1_WatchEventsResponse__Output>
    }
  }
}

