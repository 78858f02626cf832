// Original file: proto/vfiod/v1/devices.proto

import type { Any as _google_protobuf_Any, Any__Output as _google_protobuf_Any__Output } from '../../google/protobuf/Any.js';

/**
 * One device event: id is its sequence number in EventService.WatchEvents (increasing, also across daemon restarts);
 * component_id is the device's BDF; data holds a DeviceStateChanged (type.googleapis.com/vfiod.v1.DeviceStateChanged).
 */
export interface DeviceEvent {
  'id'?: (string);
  'componentId'?: (string);
  'data'?: (_google_protobuf_Any | null);
}

/**
 * One device event: id is its sequence number in EventService.WatchEvents (increasing, also across daemon restarts);
 * component_id is the device's BDF; data holds a DeviceStateChanged (type.googleapis.com/vfiod.v1.DeviceStateChanged).
 */
export interface DeviceEvent__Output {
  'id': (string);
  'componentId': (string);
  'data': (_google_protobuf_Any__Output | null);
}
