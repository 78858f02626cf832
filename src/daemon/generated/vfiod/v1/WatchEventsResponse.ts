// Original file: proto/vfiod/v1/events.proto

import type { Event as _vfiod_v1_Event, Event__Output as _vfiod_v1_Event__Output } from '../../vfiod/v1/Event.js';

export interface WatchEventsResponse {
  'event'?: (_vfiod_v1_Event | null);
}

export interface WatchEventsResponse__Output {
  'event': (_vfiod_v1_Event__Output | null);
}
