// Original file: proto/vfiod/v1/events.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { WatchEventsRequest as _vfiod_v1_WatchEventsRequest, WatchEventsRequest__Output as _vfiod_v1_WatchEventsRequest__Output } from '../../vfiod/v1/WatchEventsRequest.js';
import type { WatchEventsResponse as _vfiod_v1_WatchEventsResponse, WatchEventsResponse__Output as _vfiod_v1_WatchEventsResponse__Output } from '../../vfiod/v1/WatchEventsResponse.js';

export interface EventServiceClient extends grpc.Client {
  /**
   * Replays the kept events the request asks for, then (unless stop_after_replay) every new one as it happens.
   * FAILED_PRECONDITION EVENTS_EXPIRED when the replay point is older than the oldest kept event (events between were
   * dropped). A client that does not read fast enough is dropped once max buffered events wait for it:
   * RESOURCE_EXHAUSTED EVENT_STREAM_OVERFLOW with the last sequence it was sent (resume after it).
   */
  WatchEvents(argument: _vfiod_v1_WatchEventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_vfiod_v1_WatchEventsResponse__Output>;
  WatchEvents(argument: _vfiod_v1_WatchEventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_vfiod_v1_WatchEventsResponse__Output>;
  /**
   * Replays the kept events the request asks for, then (unless stop_after_replay) every new one as it happens.
   * FAILED_PRECONDITION EVENTS_EXPIRED when the replay point is older than the oldest kept event (events between were
   * dropped). A client that does not read fast enough is dropped once max buffered events wait for it:
   * RESOURCE_EXHAUSTED EVENT_STREAM_OVERFLOW with the last sequence it was sent (resume after it).
   */
  watchEvents(argument: _vfiod_v1_WatchEventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_vfiod_v1_WatchEventsResponse__Output>;
  watchEvents(argument: _vfiod_v1_WatchEventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_vfiod_v1_WatchEventsResponse__Output>;
  
}

export interface EventServiceHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Replays the kept events the request asks for, then (unless stop_after_replay) every new one as it happens.
   * FAILED_PRECONDITION EVENTS_EXPIRED when the replay point is older than the oldest kept event (events between were
   * dropped). A client that does not read fast enough is dropped once max buffered events wait for it:
   * RESOURCE_EXHAUSTED EVENT_STREAM_OVERFLOW with the last sequence it was sent (resume after it).
   */
  WatchEvents: grpc.handleServerStreamingCall<_vfiod_v1_WatchEventsRequest__Output, _vfiod_v1_WatchEventsResponse>;
  
}

export interface EventServiceDefinition extends grpc.ServiceDefinition {
  WatchEvents: MethodDefinition<_vfiod_v1_WatchEventsRequest, _vfiod_v1_WatchEventsResponse, _vfiod_v1_WatchEventsRequest__Output, _vfiod_v1_WatchEventsResponse__Output>
}
