// Original file: proto/vfiod/v1/operations.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { GetOperationRequest as _vfiod_v1_GetOperationRequest, GetOperationRequest__Output as _vfiod_v1_GetOperationRequest__Output } from '../../vfiod/v1/GetOperationRequest.js';
import type { GetOperationResponse as _vfiod_v1_GetOperationResponse, GetOperationResponse__Output as _vfiod_v1_GetOperationResponse__Output } from '../../vfiod/v1/GetOperationResponse.js';
import type { ListOperationsRequest as _vfiod_v1_ListOperationsRequest, ListOperationsRequest__Output as _vfiod_v1_ListOperationsRequest__Output } from '../../vfiod/v1/ListOperationsRequest.js';
import type { ListOperationsResponse as _vfiod_v1_ListOperationsResponse, ListOperationsResponse__Output as _vfiod_v1_ListOperationsResponse__Output } from '../../vfiod/v1/ListOperationsResponse.js';
import type { WaitOperationRequest as _vfiod_v1_WaitOperationRequest, WaitOperationRequest__Output as _vfiod_v1_WaitOperationRequest__Output } from '../../vfiod/v1/WaitOperationRequest.js';
import type { WaitOperationResponse as _vfiod_v1_WaitOperationResponse, WaitOperationResponse__Output as _vfiod_v1_WaitOperationResponse__Output } from '../../vfiod/v1/WaitOperationResponse.js';

export interface OperationServiceClient extends grpc.Client {
  /**
   * NOT_FOUND (OPERATION_NOT_FOUND) for an unknown name.
   */
  GetOperation(argument: _vfiod_v1_GetOperationRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetOperationResponse__Output>): grpc.ClientUnaryCall;
  GetOperation(argument: _vfiod_v1_GetOperationRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_GetOperationResponse__Output>): grpc.ClientUnaryCall;
  GetOperation(argument: _vfiod_v1_GetOperationRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetOperationResponse__Output>): grpc.ClientUnaryCall;
  GetOperation(argument: _vfiod_v1_GetOperationRequest, callback: grpc.requestCallback<_vfiod_v1_GetOperationResponse__Output>): grpc.ClientUnaryCall;
  /**
   * NOT_FOUND (OPERATION_NOT_FOUND) for an unknown name.
   */
  getOperation(argument: _vfiod_v1_GetOperationRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetOperationResponse__Output>): grpc.ClientUnaryCall;
  getOperation(argument: _vfiod_v1_GetOperationRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_GetOperationResponse__Output>): grpc.ClientUnaryCall;
  getOperation(argument: _vfiod_v1_GetOperationRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetOperationResponse__Output>): grpc.ClientUnaryCall;
  getOperation(argument: _vfiod_v1_GetOperationRequest, callback: grpc.requestCallback<_vfiod_v1_GetOperationResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Newest first.
   */
  ListOperations(argument: _vfiod_v1_ListOperationsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListOperationsResponse__Output>): grpc.ClientUnaryCall;
  ListOperations(argument: _vfiod_v1_ListOperationsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ListOperationsResponse__Output>): grpc.ClientUnaryCall;
  ListOperations(argument: _vfiod_v1_ListOperationsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListOperationsResponse__Output>): grpc.ClientUnaryCall;
  ListOperations(argument: _vfiod_v1_ListOperationsRequest, callback: grpc.requestCallback<_vfiod_v1_ListOperationsResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Newest first.
   */
  listOperations(argument: _vfiod_v1_ListOperationsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListOperationsResponse__Output>): grpc.ClientUnaryCall;
  listOperations(argument: _vfiod_v1_ListOperationsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_ListOperationsResponse__Output>): grpc.ClientUnaryCall;
  listOperations(argument: _vfiod_v1_ListOperationsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_ListOperationsResponse__Output>): grpc.ClientUnaryCall;
  listOperations(argument: _vfiod_v1_ListOperationsRequest, callback: grpc.requestCallback<_vfiod_v1_ListOperationsResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Answers once the operation is done or timeout_ms passed (then with its current state; done = false).
   */
  WaitOperation(argument: _vfiod_v1_WaitOperationRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_WaitOperationResponse__Output>): grpc.ClientUnaryCall;
  WaitOperation(argument: _vfiod_v1_WaitOperationRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_WaitOperationResponse__Output>): grpc.ClientUnaryCall;
  WaitOperation(argument: _vfiod_v1_WaitOperationRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_WaitOperationResponse__Output>): grpc.ClientUnaryCall;
  WaitOperation(argument: _vfiod_v1_WaitOperationRequest, callback: grpc.requestCallback<_vfiod_v1_WaitOperationResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Answers once the operation is done or timeout_ms passed (then with its current state; done = false).
   */
  waitOperation(argument: _vfiod_v1_WaitOperationRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_WaitOperationResponse__Output>): grpc.ClientUnaryCall;
  waitOperation(argument: _vfiod_v1_WaitOperationRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_WaitOperationResponse__Output>): grpc.ClientUnaryCall;
  waitOperation(argument: _vfiod_v1_WaitOperationRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_WaitOperationResponse__Output>): grpc.ClientUnaryCall;
  waitOperation(argument: _vfiod_v1_WaitOperationRequest, callback: grpc.requestCallback<_vfiod_v1_WaitOperationResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface OperationServiceHandlers extends grpc.UntypedServiceImplementation {
  /**
   * NOT_FOUND (OPERATION_NOT_FOUND) for an unknown name.
   */
  GetOperation: grpc.handleUnaryCall<_vfiod_v1_GetOperationRequest__Output, _vfiod_v1_GetOperationResponse>;
  
  /**
   * Newest first.
   */
  ListOperations: grpc.handleUnaryCall<_vfiod_v1_ListOperationsRequest__Output, _vfiod_v1_ListOperationsResponse>;
  
  /**
   * Answers once the operation is done or timeout_ms passed (then with its current state; done = false).
   */
  WaitOperation: grpc.handleUnaryCall<_vfiod_v1_WaitOperationRequest__Output, _vfiod_v1_WaitOperationResponse>;
  
}

export interface OperationServiceDefinition extends grpc.ServiceDefinition {
  GetOperation: MethodDefinition<_vfiod_v1_GetOperationRequest, _vfiod_v1_GetOperationResponse, _vfiod_v1_GetOperationRequest__Output, _vfiod_v1_GetOperationResponse__Output>
  ListOperations: MethodDefinition<_vfiod_v1_ListOperationsRequest, _vfiod_v1_ListOperationsResponse, _vfiod_v1_ListOperationsRequest__Output, _vfiod_v1_ListOperationsResponse__Output>
  WaitOperation: MethodDefinition<_vfiod_v1_WaitOperationRequest, _vfiod_v1_WaitOperationResponse, _vfiod_v1_WaitOperationRequest__Output, _vfiod_v1_WaitOperationResponse__Output>
}
