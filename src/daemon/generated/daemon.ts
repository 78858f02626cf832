import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { DaemonInfo as _vfiod_v1_DaemonInfo, DaemonInfo__Output as _vfiod_v1_DaemonInfo__Output } from './vfiod/v1/DaemonInfo.js';
import type { DaemonServiceClient as _vfiod_v1_DaemonServiceClient, DaemonServiceDefinition as _vfiod_v1_DaemonServiceDefinition } from './vfiod/v1/DaemonService.js';
import type { GetDaemonRequest as _vfiod_v1_GetDaemonRequest, GetDaemonRequest__Output as _vfiod_v1_GetDaemonRequest__Output } from './vfiod/v1/GetDaemonRequest.js';
import type { GetDaemonResponse as _vfiod_v1_GetDaemonResponse, GetDaemonResponse__Output as _vfiod_v1_GetDaemonResponse__Output } from './vfiod/v1/GetDaemonResponse.js';
import type { RestartDaemonRequest as _vfiod_v1_RestartDaemonRequest, RestartDaemonRequest__Output as _vfiod_v1_RestartDaemonRequest__Output } from './vfiod/v1/RestartDaemonRequest.js';
import type { RestartDaemonResponse as _vfiod_v1_RestartDaemonResponse, RestartDaemonResponse__Output as _vfiod_v1_RestartDaemonResponse__Output } from './vfiod/v1/RestartDaemonResponse.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  vfiod: {
    v1: {
      DaemonInfo: MessageTypeDefinition<_vfiod_v1_DaemonInfo, _vfiod_v1_DaemonInfo__Output>
      DaemonService: SubtypeConstructor<typeof grpc.Client, _vfiod_v1_DaemonServiceClient> & { service: _vfiod_v1_DaemonServiceDefinition }
      GetDaemonRequest: MessageTypeDefinition<_vfiod_v1_GetDaemonRequest, _vfiod_v1_GetDaemonRequest__Output>
      GetDaemonResponse: MessageTypeDefinition<_vfiod_v1_GetDaemonResponse, _vfiod_v1_GetDaemonResponse__Output>
      RestartDaemonRequest: MessageTypeDefinition<_vfiod_v1_RestartDaemonRequest, _vfiod_v1_RestartDaemonRequest__Output>
      RestartDaemonResponse: MessageTypeDefinition<_vfiod_v1_RestartDaemonResponse, _vfiod_v1_RestartDaemonResponse__Output>
    }
  }
}

