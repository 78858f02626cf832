// Original file: proto/vfiod/v1/events.proto

import type { EventResourceType as _vfiod_v1_EventResourceType, EventResourceType__Output as _vfiod_v1_EventResourceType__Output } from '../../vfiod/v1/EventResourceType.js';
import type { Long } from '@grpc/proto-loader';

export interface WatchEventsRequest {
  /**
   * events with a larger sequence (0: every kept event)
   */
  'afterSequence'?: (number | string | Long);
  /**
   * events at or after this time
   */
  'sinceUnixMs'?: (number | string | Long);
  /**
   * events of the last n seconds
   */
  'tailSeconds'?: (number);
  /**
   * the last n events
   */
  'tailEvents'?: (number);
  /**
   * empty = all
   */
  'resourceTypes'?: (_vfiod_v1_EventResourceType)[];
  /**
   * end the stream once the replay is sent
   */
  'stopAfterReplay'?: (boolean);
  /**
   * Where the replay starts; none: only new events.
   */
  'start'?: "afterSequence"|"sinceUnixMs"|"tailSeconds"|"tailEvents";
}

export interface WatchEventsRequest__Output {
  /**
   * events with a larger sequence (0: every kept event)
   */
  'afterSequence'?: (number);
  /**
   * events at or after this time
   */
  'sinceUnixMs'?: (number);
  /**
   * events of the last n seconds
   */
  'tailSeconds'?: (number);
  /**
   * the last n events
   */
  'tailEvents'?: (number);
  /**
   * empty = all
   */
  'resourceTypes': (_vfiod_v1_EventResourceType__Output)[];
  /**
   * end the stream once the replay is sent
   */
  'stopAfterReplay': (boolean);
  /**
   * Where the replay starts; none: only new events.
   */
  'start'?: "afterSequence"|"sinceUnixMs"|"tailSeconds"|"tailEvents";
}
