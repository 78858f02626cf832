import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Any as _google_protobuf_Any, Any__Output as _google_protobuf_Any__Output } from './google/protobuf/Any.js';
import type { BarInfo as _vfiod_v1_BarInfo, BarInfo__Output as _vfiod_v1_BarInfo__Output } from './vfiod/v1/BarInfo.js';
import type { ClaimInfo as _vfiod_v1_ClaimInfo, ClaimInfo__Output as _vfiod_v1_ClaimInfo__Output } from './vfiod/v1/ClaimInfo.js';
import type { ClearVgpuTypeRequest as _vfiod_v1_ClearVgpuTypeRequest, ClearVgpuTypeRequest__Output as _vfiod_v1_ClearVgpuTypeRequest__Output } from './vfiod/v1/ClearVgpuTypeRequest.js';
import type { ClearVgpuTypeResponse as _vfiod_v1_ClearVgpuTypeResponse, ClearVgpuTypeResponse__Output as _vfiod_v1_ClearVgpuTypeResponse__Output } from './vfiod/v1/ClearVgpuTypeResponse.js';
import type { CreateVfsRequest as _vfiod_v1_CreateVfsRequest, CreateVfsRequest__Output as _vfiod_v1_CreateVfsRequest__Output } from './vfiod/v1/CreateVfsRequest.js';
import type { CreateVfsResponse as _vfiod_v1_CreateVfsResponse, CreateVfsResponse__Output as _vfiod_v1_CreateVfsResponse__Output } from './vfiod/v1/CreateVfsResponse.js';
import type { DeviceEvent as _vfiod_v1_DeviceEvent, DeviceEvent__Output as _vfiod_v1_DeviceEvent__Output } from './vfiod/v1/DeviceEvent.js';
import type { DeviceInfo as _vfiod_v1_DeviceInfo, DeviceInfo__Output as _vfiod_v1_DeviceInfo__Output } from './vfiod/v1/DeviceInfo.js';
import type { DeviceServiceClient as _vfiod_v1_DeviceServiceClient, DeviceServiceDefinition as _vfiod_v1_DeviceServiceDefinition } from './vfiod/v1/DeviceService.js';
import type { DeviceStateChanged as _vfiod_v1_DeviceStateChanged, DeviceStateChanged__Output as _vfiod_v1_DeviceStateChanged__Output } from './vfiod/v1/DeviceStateChanged.js';
import type { GetDeviceRequest as _vfiod_v1_GetDeviceRequest, GetDeviceRequest__Output as _vfiod_v1_GetDeviceRequest__Output } from './vfiod/v1/GetDeviceRequest.js';
import type { GetDeviceResponse as _vfiod_v1_GetDeviceResponse, GetDeviceResponse__Output as _vfiod_v1_GetDeviceResponse__Output } from './vfiod/v1/GetDeviceResponse.js';
import type { HostUse as _vfiod_v1_HostUse, HostUse__Output as _vfiod_v1_HostUse__Output } from './vfiod/v1/HostUse.js';
import type { ListDevicesRequest as _vfiod_v1_ListDevicesRequest, ListDevicesRequest__Output as _vfiod_v1_ListDevicesRequest__Output } from './vfiod/v1/ListDevicesRequest.js';
import type { ListDevicesResponse as _vfiod_v1_ListDevicesResponse, ListDevicesResponse__Output as _vfiod_v1_ListDevicesResponse__Output } from './vfiod/v1/ListDevicesResponse.js';
import type { ListVgpuTypesRequest as _vfiod_v1_ListVgpuTypesRequest, ListVgpuTypesRequest__Output as _vfiod_v1_ListVgpuTypesRequest__Output } from './vfiod/v1/ListVgpuTypesRequest.js';
import type { ListVgpuTypesResponse as _vfiod_v1_ListVgpuTypesResponse, ListVgpuTypesResponse__Output as _vfiod_v1_ListVgpuTypesResponse__Output } from './vfiod/v1/ListVgpuTypesResponse.js';
import type { PrepareDeviceRequest as _vfiod_v1_PrepareDeviceRequest, PrepareDeviceRequest__Output as _vfiod_v1_PrepareDeviceRequest__Output } from './vfiod/v1/PrepareDeviceRequest.js';
import type { PrepareDeviceResponse as _vfiod_v1_PrepareDeviceResponse, PrepareDeviceResponse__Output as _vfiod_v1_PrepareDeviceResponse__Output } from './vfiod/v1/PrepareDeviceResponse.js';
import type { PreparedDevice as _vfiod_v1_PreparedDevice, PreparedDevice__Output as _vfiod_v1_PreparedDevice__Output } from './vfiod/v1/PreparedDevice.js';
import type { ReleaseDeviceRequest as _vfiod_v1_ReleaseDeviceRequest, ReleaseDeviceRequest__Output as _vfiod_v1_ReleaseDeviceRequest__Output } from './vfiod/v1/ReleaseDeviceRequest.js';
import type { ReleaseDeviceResponse as _vfiod_v1_ReleaseDeviceResponse, ReleaseDeviceResponse__Output as _vfiod_v1_ReleaseDeviceResponse__Output } from './vfiod/v1/ReleaseDeviceResponse.js';
import type { ReleasedDevice as _vfiod_v1_ReleasedDevice, ReleasedDevice__Output as _vfiod_v1_ReleasedDevice__Output } from './vfiod/v1/ReleasedDevice.js';
import type { SetVgpuTypeRequest as _vfiod_v1_SetVgpuTypeRequest, SetVgpuTypeRequest__Output as _vfiod_v1_SetVgpuTypeRequest__Output } from './vfiod/v1/SetVgpuTypeRequest.js';
import type { SetVgpuTypeResponse as _vfiod_v1_SetVgpuTypeResponse, SetVgpuTypeResponse__Output as _vfiod_v1_SetVgpuTypeResponse__Output } from './vfiod/v1/SetVgpuTypeResponse.js';
import type { SriovInfo as _vfiod_v1_SriovInfo, SriovInfo__Output as _vfiod_v1_SriovInfo__Output } from './vfiod/v1/SriovInfo.js';
import type { StreamDeviceEventsRequest as _vfiod_v1_StreamDeviceEventsRequest, StreamDeviceEventsRequest__Output as _vfiod_v1_StreamDeviceEventsRequest__Output } from './vfiod/v1/StreamDeviceEventsRequest.js';
import type { VgpuInfo as _vfiod_v1_VgpuInfo, VgpuInfo__Output as _vfiod_v1_VgpuInfo__Output } from './vfiod/v1/VgpuInfo.js';
import type { VgpuType as _vfiod_v1_VgpuType, VgpuType__Output as _vfiod_v1_VgpuType__Output } from './vfiod/v1/VgpuType.js';

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
      BarInfo: MessageTypeDefinition<_vfiod_v1_BarInfo, _vfiod_v1_BarInfo__Output>
      ClaimInfo: MessageTypeDefinition<_vfiod_v1_ClaimInfo, _vfiod_v1_ClaimInfo__Output>
      ClaimMode: EnumTypeDefinition
      ClaimState: EnumTypeDefinition
      ClearVgpuTypeRequest: MessageTypeDefinition<_vfiod_v1_ClearVgpuTypeRequest, _vfiod_v1_ClearVgpuTypeRequest__Output>
      ClearVgpuTypeResponse: MessageTypeDefinition<_vfiod_v1_ClearVgpuTypeResponse, _vfiod_v1_ClearVgpuTypeResponse__Output>
      CreateVfsRequest: MessageTypeDefinition<_vfiod_v1_CreateVfsRequest, _vfiod_v1_CreateVfsRequest__Output>
      CreateVfsResponse: MessageTypeDefinition<_vfiod_v1_CreateVfsResponse, _vfiod_v1_CreateVfsResponse__Output>
      DeviceEvent: MessageTypeDefinition<_vfiod_v1_DeviceEvent, _vfiod_v1_DeviceEvent__Output>
      DeviceEventKind: EnumTypeDefinition
      DeviceInfo: MessageTypeDefinition<_vfiod_v1_DeviceInfo, _vfiod_v1_DeviceInfo__Output>
      DeviceKind: EnumTypeDefinition
      DeviceService: SubtypeConstructor<typeof grpc.Client, _vfiod_v1_DeviceServiceClient> & { service: _vfiod_v1_DeviceServiceDefinition }
      DeviceStateChanged: MessageTypeDefinition<_vfiod_v1_DeviceStateChanged, _vfiod_v1_DeviceStateChanged__Output>
      GetDeviceRequest: MessageTypeDefinition<_vfiod_v1_GetDeviceRequest, _vfiod_v1_GetDeviceRequest__Output>
      GetDeviceResponse: MessageTypeDefinition<_vfiod_v1_GetDeviceResponse, _vfiod_v1_GetDeviceResponse__Output>
      HostUse: MessageTypeDefinition<_vfiod_v1_HostUse, _vfiod_v1_HostUse__Output>
      ListDevicesRequest: MessageTypeDefinition<_vfiod_v1_ListDevicesRequest, _vfiod_v1_ListDevicesRequest__Output>
      ListDevicesResponse: MessageTypeDefinition<_vfiod_v1_ListDevicesResponse, _vfiod_v1_ListDevicesResponse__Output>
      ListVgpuTypesRequest: MessageTypeDefinition<_vfiod_v1_ListVgpuTypesRequest, _vfiod_v1_ListVgpuTypesRequest__Output>
      ListVgpuTypesResponse: MessageTypeDefinition<_vfiod_v1_ListVgpuTypesResponse, _vfiod_v1_ListVgpuTypesResponse__Output>
      PrepareDeviceRequest: MessageTypeDefinition<_vfiod_v1_PrepareDeviceRequest, _vfiod_v1_PrepareDeviceRequest__Output>
      PrepareDeviceResponse: MessageTypeDefinition<_vfiod_v1_PrepareDeviceResponse, _vfiod_v1_PrepareDeviceResponse__Output>
      PreparedDevice: MessageTypeDefinition<_vfiod_v1_PreparedDevice, _vfiod_v1_PreparedDevice__Output>
      ReleaseDeviceRequest: MessageTypeDefinition<_vfiod_v1_ReleaseDeviceRequest, _vfiod_v1_ReleaseDeviceRequest__Output>
      ReleaseDeviceResponse: MessageTypeDefinition<_vfiod_v1_ReleaseDeviceResponse, _vfiod_v1_ReleaseDeviceResponse__Output>
      ReleasedDevice: MessageTypeDefinition<_vfiod_v1_ReleasedDevice, _vfiod_v1_ReleasedDevice__Output>
      SetVgpuTypeRequest: MessageTypeDefinition<_vfiod_v1_SetVgpuTypeRequest, _vfiod_v1_SetVgpuTypeRequest__Output>
      SetVgpuTypeResponse: MessageTypeDefinition<_vfiod_v1_SetVgpuTypeResponse, _vfiod_v1_SetVgpuTypeResponse__Output>
      SriovInfo: MessageTypeDefinition<_vfiod_v1_SriovInfo, _vfiod_v1_SriovInfo__Output>
      StreamDeviceEventsRequest: MessageTypeDefinition<_vfiod_v1_StreamDeviceEventsRequest, _vfiod_v1_StreamDeviceEventsRequest__Output>
      VfioState: EnumTypeDefinition
      VgpuInfo: MessageTypeDefinition<_vfiod_v1_VgpuInfo, _vfiod_v1_VgpuInfo__Output>
      VgpuType: MessageTypeDefinition<_vfiod_v1_VgpuType, _vfiod_v1_VgpuType__Output>
    }
  }
}

