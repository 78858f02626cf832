// Original file: proto/vfiod/v1/daemon.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { GetDaemonRequest as _vfiod_v1_GetDaemonRequest, GetDaemonRequest__Output as _vfiod_v1_GetDaemonRequest__Output } from '../../vfiod/v1/GetDaemonRequest.js';
import type { GetDaemonResponse as _vfiod_v1_GetDaemonResponse, GetDaemonResponse__Output as _vfiod_v1_GetDaemonResponse__Output } from '../../vfiod/v1/GetDaemonResponse.js';
import type { RestartDaemonRequest as _vfiod_v1_RestartDaemonRequest, RestartDaemonRequest__Output as _vfiod_v1_RestartDaemonRequest__Output } from '../../vfiod/v1/RestartDaemonRequest.js';
import type { RestartDaemonResponse as _vfiod_v1_RestartDaemonResponse, RestartDaemonResponse__Output as _vfiod_v1_RestartDaemonResponse__Output } from '../../vfiod/v1/RestartDaemonResponse.js';

export interface DaemonServiceClient extends grpc.Client {
  GetDaemon(argument: _vfiod_v1_GetDaemonRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetDaemonResponse__Output>): grpc.ClientUnaryCall;
  GetDaemon(argument: _vfiod_v1_GetDaemonRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_GetDaemonResponse__Output>): grpc.ClientUnaryCall;
  GetDaemon(argument: _vfiod_v1_GetDaemonRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetDaemonResponse__Output>): grpc.ClientUnaryCall;
  GetDaemon(argument: _vfiod_v1_GetDaemonRequest, callback: grpc.requestCallback<_vfiod_v1_GetDaemonResponse__Output>): grpc.ClientUnaryCall;
  getDaemon(argument: _vfiod_v1_GetDaemonRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetDaemonResponse__Output>): grpc.ClientUnaryCall;
  getDaemon(argument: _vfiod_v1_GetDaemonRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_GetDaemonResponse__Output>): grpc.ClientUnaryCall;
  getDaemon(argument: _vfiod_v1_GetDaemonRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_GetDaemonResponse__Output>): grpc.ClientUnaryCall;
  getDaemon(argument: _vfiod_v1_GetDaemonRequest, callback: grpc.requestCallback<_vfiod_v1_GetDaemonResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * A planned restart through the crash-recovery holder: this process quiesces and checkpoints every controller and
   * exits; the holder starts the next daemon (from `bin` when given: an upgrade), which recovers them. Guests keep
   * their connections and see a pause; API clients reconnect. Answers before the restart starts (this process is
   * about to go away): watch GetDaemon for the new pid. FAILED_PRECONDITION when the daemon runs without
   * --crash-recovery.
   */
  RestartDaemon(argument: _vfiod_v1_RestartDaemonRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_RestartDaemonResponse__Output>): grpc.ClientUnaryCall;
  RestartDaemon(argument: _vfiod_v1_RestartDaemonRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_RestartDaemonResponse__Output>): grpc.ClientUnaryCall;
  RestartDaemon(argument: _vfiod_v1_RestartDaemonRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_RestartDaemonResponse__Output>): grpc.ClientUnaryCall;
  RestartDaemon(argument: _vfiod_v1_RestartDaemonRequest, callback: grpc.requestCallback<_vfiod_v1_RestartDaemonResponse__Output>): grpc.ClientUnaryCall;
  /**
   * A planned restart through the crash-recovery holder: this process quiesces and checkpoints every controller and
   * exits; the holder starts the next daemon (from `bin` when given: an upgrade), which recovers them. Guests keep
   * their connections and see a pause; API clients reconnect. Answers before the restart starts (this process is
   * about to go away): watch GetDaemon for the new pid. FAILED_PRECONDITION when the daemon runs without
   * --crash-recovery.
   */
  restartDaemon(argument: _vfiod_v1_RestartDaemonRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_RestartDaemonResponse__Output>): grpc.ClientUnaryCall;
  restartDaemon(argument: _vfiod_v1_RestartDaemonRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vfiod_v1_RestartDaemonResponse__Output>): grpc.ClientUnaryCall;
  restartDaemon(argument: _vfiod_v1_RestartDaemonRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vfiod_v1_RestartDaemonResponse__Output>): grpc.ClientUnaryCall;
  restartDaemon(argument: _vfiod_v1_RestartDaemonRequest, callback: grpc.requestCallback<_vfiod_v1_RestartDaemonResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface DaemonServiceHandlers extends grpc.UntypedServiceImplementation {
  GetDaemon: grpc.handleUnaryCall<_vfiod_v1_GetDaemonRequest__Output, _vfiod_v1_GetDaemonResponse>;
  
  /**
   * A planned restart through the crash-recovery holder: this process quiesces and checkpoints every controller and
   * exits; the holder starts the next daemon (from `bin` when given: an upgrade), which recovers them. Guests keep
   * their connections and see a pause; API clients reconnect. Answers before the restart starts (this process is
   * about to go away): watch GetDaemon for the new pid. FAILED_PRECONDITION when the daemon runs without
   * --crash-recovery.
   */
  RestartDaemon: grpc.handleUnaryCall<_vfiod_v1_RestartDaemonRequest__Output, _vfiod_v1_RestartDaemonResponse>;
  
}

export interface DaemonServiceDefinition extends grpc.ServiceDefinition {
  GetDaemon: MethodDefinition<_vfiod_v1_GetDaemonRequest, _vfiod_v1_GetDaemonResponse, _vfiod_v1_GetDaemonRequest__Output, _vfiod_v1_GetDaemonResponse__Output>
  RestartDaemon: MethodDefinition<_vfiod_v1_RestartDaemonRequest, _vfiod_v1_RestartDaemonResponse, _vfiod_v1_RestartDaemonRequest__Output, _vfiod_v1_RestartDaemonResponse__Output>
}
