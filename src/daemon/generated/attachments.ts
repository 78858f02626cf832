import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { AttachDeviceRequest as _vfiod_v1_AttachDeviceRequest, AttachDeviceRequest__Output as _vfiod_v1_AttachDeviceRequest__Output } from './vfiod/v1/AttachDeviceRequest.js';
import type { AttachDeviceResponse as _vfiod_v1_AttachDeviceResponse, AttachDeviceResponse__Output as _vfiod_v1_AttachDeviceResponse__Output } from './vfiod/v1/AttachDeviceResponse.js';
import type { AttachedFunction as _vfiod_v1_AttachedFunction, AttachedFunction__Output as _vfiod_v1_AttachedFunction__Output } from './vfiod/v1/AttachedFunction.js';
import type { AttachmentInfo as _vfiod_v1_AttachmentInfo, AttachmentInfo__Output as _vfiod_v1_AttachmentInfo__Output } from './vfiod/v1/AttachmentInfo.js';
import type { AttachmentServiceClient as _vfiod_v1_AttachmentServiceClient, AttachmentServiceDefinition as _vfiod_v1_AttachmentServiceDefinition } from './vfiod/v1/AttachmentService.js';
import type { CloudHypervisorConfig as _vfiod_v1_CloudHypervisorConfig, CloudHypervisorConfig__Output as _vfiod_v1_CloudHypervisorConfig__Output } from './vfiod/v1/CloudHypervisorConfig.js';
import type { DetachDeviceRequest as _vfiod_v1_DetachDeviceRequest, DetachDeviceRequest__Output as _vfiod_v1_DetachDeviceRequest__Output } from './vfiod/v1/DetachDeviceRequest.js';
import type { DetachDeviceResponse as _vfiod_v1_DetachDeviceResponse, DetachDeviceResponse__Output as _vfiod_v1_DetachDeviceResponse__Output } from './vfiod/v1/DetachDeviceResponse.js';
import type { DeviceSource as _vfiod_v1_DeviceSource, DeviceSource__Output as _vfiod_v1_DeviceSource__Output } from './vfiod/v1/DeviceSource.js';
import type { GetVmConfigRequest as _vfiod_v1_GetVmConfigRequest, GetVmConfigRequest__Output as _vfiod_v1_GetVmConfigRequest__Output } from './vfiod/v1/GetVmConfigRequest.js';
import type { GetVmConfigResponse as _vfiod_v1_GetVmConfigResponse, GetVmConfigResponse__Output as _vfiod_v1_GetVmConfigResponse__Output } from './vfiod/v1/GetVmConfigResponse.js';
import type { HypervisorEndpoint as _vfiod_v1_HypervisorEndpoint, HypervisorEndpoint__Output as _vfiod_v1_HypervisorEndpoint__Output } from './vfiod/v1/HypervisorEndpoint.js';
import type { ListAttachmentsRequest as _vfiod_v1_ListAttachmentsRequest, ListAttachmentsRequest__Output as _vfiod_v1_ListAttachmentsRequest__Output } from './vfiod/v1/ListAttachmentsRequest.js';
import type { ListAttachmentsResponse as _vfiod_v1_ListAttachmentsResponse, ListAttachmentsResponse__Output as _vfiod_v1_ListAttachmentsResponse__Output } from './vfiod/v1/ListAttachmentsResponse.js';
import type { PrepareDeviceResult as _vfiod_v1_PrepareDeviceResult, PrepareDeviceResult__Output as _vfiod_v1_PrepareDeviceResult__Output } from './vfiod/v1/PrepareDeviceResult.js';
import type { QemuConfig as _vfiod_v1_QemuConfig, QemuConfig__Output as _vfiod_v1_QemuConfig__Output } from './vfiod/v1/QemuConfig.js';
import type { VmDevice as _vfiod_v1_VmDevice, VmDevice__Output as _vfiod_v1_VmDevice__Output } from './vfiod/v1/VmDevice.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  vfiod: {
    v1: {
      AttachDeviceRequest: MessageTypeDefinition<_vfiod_v1_AttachDeviceRequest, _vfiod_v1_AttachDeviceRequest__Output>
      AttachDeviceResponse: MessageTypeDefinition<_vfiod_v1_AttachDeviceResponse, _vfiod_v1_AttachDeviceResponse__Output>
      AttachedFunction: MessageTypeDefinition<_vfiod_v1_AttachedFunction, _vfiod_v1_AttachedFunction__Output>
      AttachmentInfo: MessageTypeDefinition<_vfiod_v1_AttachmentInfo, _vfiod_v1_AttachmentInfo__Output>
      AttachmentService: SubtypeConstructor<typeof grpc.Client, _vfiod_v1_AttachmentServiceClient> & { service: _vfiod_v1_AttachmentServiceDefinition }
      AttachmentState: EnumTypeDefinition
      CloudHypervisorConfig: MessageTypeDefinition<_vfiod_v1_CloudHypervisorConfig, _vfiod_v1_CloudHypervisorConfig__Output>
      DetachDeviceRequest: MessageTypeDefinition<_vfiod_v1_DetachDeviceRequest, _vfiod_v1_DetachDeviceRequest__Output>
      DetachDeviceResponse: MessageTypeDefinition<_vfiod_v1_DetachDeviceResponse, _vfiod_v1_DetachDeviceResponse__Output>
      DeviceSource: MessageTypeDefinition<_vfiod_v1_DeviceSource, _vfiod_v1_DeviceSource__Output>
      GetVmConfigRequest: MessageTypeDefinition<_vfiod_v1_GetVmConfigRequest, _vfiod_v1_GetVmConfigRequest__Output>
      GetVmConfigResponse: MessageTypeDefinition<_vfiod_v1_GetVmConfigResponse, _vfiod_v1_GetVmConfigResponse__Output>
      HypervisorEndpoint: MessageTypeDefinition<_vfiod_v1_HypervisorEndpoint, _vfiod_v1_HypervisorEndpoint__Output>
      HypervisorKind: EnumTypeDefinition
      ListAttachmentsRequest: MessageTypeDefinition<_vfiod_v1_ListAttachmentsRequest, _vfiod_v1_ListAttachmentsRequest__Output>
      ListAttachmentsResponse: MessageTypeDefinition<_vfiod_v1_ListAttachmentsResponse, _vfiod_v1_ListAttachmentsResponse__Output>
      PrepareDeviceResult: MessageTypeDefinition<_vfiod_v1_PrepareDeviceResult, _vfiod_v1_PrepareDeviceResult__Output>
      QemuConfig: MessageTypeDefinition<_vfiod_v1_QemuConfig, _vfiod_v1_QemuConfig__Output>
      VmDevice: MessageTypeDefinition<_vfiod_v1_VmDevice, _vfiod_v1_VmDevice__Output>
    }
  }
}

