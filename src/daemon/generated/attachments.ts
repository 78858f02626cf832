import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Any as _google_protobuf_Any, Any__Output as _google_protobuf_Any__Output } from './google/protobuf/Any.js';
import type { AttachDeviceRequest as _vfiod_v1_AttachDeviceRequest, AttachDeviceRequest__Output as _vfiod_v1_AttachDeviceRequest__Output } from './vfiod/v1/AttachDeviceRequest.js';
import type { AttachDeviceResponse as _vfiod_v1_AttachDeviceResponse, AttachDeviceResponse__Output as _vfiod_v1_AttachDeviceResponse__Output } from './vfiod/v1/AttachDeviceResponse.js';
import type { AttachedFunction as _vfiod_v1_AttachedFunction, AttachedFunction__Output as _vfiod_v1_AttachedFunction__Output } from './vfiod/v1/AttachedFunction.js';
import type { AttachmentInfo as _vfiod_v1_AttachmentInfo, AttachmentInfo__Output as _vfiod_v1_AttachmentInfo__Output } from './vfiod/v1/AttachmentInfo.js';
import type { AttachmentServiceClient as _vfiod_v1_AttachmentServiceClient, AttachmentServiceDefinition as _vfiod_v1_AttachmentServiceDefinition } from './vfiod/v1/AttachmentService.js';
import type { CloudHypervisorConfig as _vfiod_v1_CloudHypervisorConfig, CloudHypervisorConfig__Output as _vfiod_v1_CloudHypervisorConfig__Output } from './vfiod/v1/CloudHypervisorConfig.js';
import type { DetachDeviceRequest as _vfiod_v1_DetachDeviceRequest, DetachDeviceRequest__Output as _vfiod_v1_DetachDeviceRequest__Output } from './vfiod/v1/DetachDeviceRequest.js';
import type { DetachDeviceResponse as _vfiod_v1_DetachDeviceResponse, DetachDeviceResponse__Output as _vfiod_v1_DetachDeviceResponse__Output } from './vfiod/v1/DetachDeviceResponse.js';
import type { DeviceSource as _vfiod_v1_DeviceSource, DeviceSource__Output as _vfiod_v1_DeviceSource__Output } from './vfiod/v1/DeviceSource.js';
import type { GetOperationRequest as _vfiod_v1_GetOperationRequest, GetOperationRequest__Output as _vfiod_v1_GetOperationRequest__Output } from './vfiod/v1/GetOperationRequest.js';
import type { GetOperationResponse as _vfiod_v1_GetOperationResponse, GetOperationResponse__Output as _vfiod_v1_GetOperationResponse__Output } from './vfiod/v1/GetOperationResponse.js';
import type { GetVmConfigRequest as _vfiod_v1_GetVmConfigRequest, GetVmConfigRequest__Output as _vfiod_v1_GetVmConfigRequest__Output } from './vfiod/v1/GetVmConfigRequest.js';
import type { GetVmConfigResponse as _vfiod_v1_GetVmConfigResponse, GetVmConfigResponse__Output as _vfiod_v1_GetVmConfigResponse__Output } from './vfiod/v1/GetVmConfigResponse.js';
import type { HypervisorEndpoint as _vfiod_v1_HypervisorEndpoint, HypervisorEndpoint__Output as _vfiod_v1_HypervisorEndpoint__Output } from './vfiod/v1/HypervisorEndpoint.js';
import type { ListAttachmentsRequest as _vfiod_v1_ListAttachmentsRequest, ListAttachmentsRequest__Output as _vfiod_v1_ListAttachmentsRequest__Output } from './vfiod/v1/ListAttachmentsRequest.js';
import type { ListAttachmentsResponse as _vfiod_v1_ListAttachmentsResponse, ListAttachmentsResponse__Output as _vfiod_v1_ListAttachmentsResponse__Output } from './vfiod/v1/ListAttachmentsResponse.js';
import type { ListOperationsRequest as _vfiod_v1_ListOperationsRequest, ListOperationsRequest__Output as _vfiod_v1_ListOperationsRequest__Output } from './vfiod/v1/ListOperationsRequest.js';
import type { ListOperationsResponse as _vfiod_v1_ListOperationsResponse, ListOperationsResponse__Output as _vfiod_v1_ListOperationsResponse__Output } from './vfiod/v1/ListOperationsResponse.js';
import type { Operation as _vfiod_v1_Operation, Operation__Output as _vfiod_v1_Operation__Output } from './vfiod/v1/Operation.js';
import type { OperationError as _vfiod_v1_OperationError, OperationError__Output as _vfiod_v1_OperationError__Output } from './vfiod/v1/OperationError.js';
import type { OperationServiceClient as _vfiod_v1_OperationServiceClient, OperationServiceDefinition as _vfiod_v1_OperationServiceDefinition } from './vfiod/v1/OperationService.js';
import type { PciWindowInfo as _vfiod_v1_PciWindowInfo, PciWindowInfo__Output as _vfiod_v1_PciWindowInfo__Output } from './vfiod/v1/PciWindowInfo.js';
import type { PrepareDeviceResult as _vfiod_v1_PrepareDeviceResult, PrepareDeviceResult__Output as _vfiod_v1_PrepareDeviceResult__Output } from './vfiod/v1/PrepareDeviceResult.js';
import type { QemuConfig as _vfiod_v1_QemuConfig, QemuConfig__Output as _vfiod_v1_QemuConfig__Output } from './vfiod/v1/QemuConfig.js';
import type { VmDevice as _vfiod_v1_VmDevice, VmDevice__Output as _vfiod_v1_VmDevice__Output } from './vfiod/v1/VmDevice.js';
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
      GetOperationRequest: MessageTypeDefinition<_vfiod_v1_GetOperationRequest, _vfiod_v1_GetOperationRequest__Output>
      GetOperationResponse: MessageTypeDefinition<_vfiod_v1_GetOperationResponse, _vfiod_v1_GetOperationResponse__Output>
      GetVmConfigRequest: MessageTypeDefinition<_vfiod_v1_GetVmConfigRequest, _vfiod_v1_GetVmConfigRequest__Output>
      GetVmConfigResponse: MessageTypeDefinition<_vfiod_v1_GetVmConfigResponse, _vfiod_v1_GetVmConfigResponse__Output>
      HypervisorEndpoint: MessageTypeDefinition<_vfiod_v1_HypervisorEndpoint, _vfiod_v1_HypervisorEndpoint__Output>
      HypervisorKind: EnumTypeDefinition
      ListAttachmentsRequest: MessageTypeDefinition<_vfiod_v1_ListAttachmentsRequest, _vfiod_v1_ListAttachmentsRequest__Output>
      ListAttachmentsResponse: MessageTypeDefinition<_vfiod_v1_ListAttachmentsResponse, _vfiod_v1_ListAttachmentsResponse__Output>
      ListOperationsRequest: MessageTypeDefinition<_vfiod_v1_ListOperationsRequest, _vfiod_v1_ListOperationsRequest__Output>
      ListOperationsResponse: MessageTypeDefinition<_vfiod_v1_ListOperationsResponse, _vfiod_v1_ListOperationsResponse__Output>
      Operation: MessageTypeDefinition<_vfiod_v1_Operation, _vfiod_v1_Operation__Output>
      OperationError: MessageTypeDefinition<_vfiod_v1_OperationError, _vfiod_v1_OperationError__Output>
      OperationKind: EnumTypeDefinition
      OperationService: SubtypeConstructor<typeof grpc.Client, _vfiod_v1_OperationServiceClient> & { service: _vfiod_v1_OperationServiceDefinition }
      OperationState: EnumTypeDefinition
      PciWindowInfo: MessageTypeDefinition<_vfiod_v1_PciWindowInfo, _vfiod_v1_PciWindowInfo__Output>
      PrepareDeviceResult: MessageTypeDefinition<_vfiod_v1_PrepareDeviceResult, _vfiod_v1_PrepareDeviceResult__Output>
      QemuConfig: MessageTypeDefinition<_vfiod_v1_QemuConfig, _vfiod_v1_QemuConfig__Output>
      VfioBackend: EnumTypeDefinition
      VmDevice: MessageTypeDefinition<_vfiod_v1_VmDevice, _vfiod_v1_VmDevice__Output>
      WaitOperationRequest: MessageTypeDefinition<_vfiod_v1_WaitOperationRequest, _vfiod_v1_WaitOperationRequest__Output>
      WaitOperationResponse: MessageTypeDefinition<_vfiod_v1_WaitOperationResponse, _vfiod_v1_WaitOperationResponse__Output>
    }
  }
}

