// Original file: /work/wt/api-types/proto/vfiod/v1/devices.proto

import type { Any as _google_protobuf_Any, Any__Output as _google_protobuf_Any__Output } from '../../google/protobuf/Any.js';

/**
 * One event: id is unique per daemon run and increases; component_id is the device's BDF; data holds a
 * DeviceStateChanged (type.googleapis.com/vfiod.v1.DeviceStateChanged).
 */
export interface DeviceEvent {
  'id'?: (string);
  'componentId'?: (string);
  'data'?: (_google_protobuf_Any | null);
}

/**
 * One event: id is unique per daemon run and increases; component_id is the device's BDF; data holds a
 * DeviceStateChanged (type.googleapis.com/vfiod.v1.DeviceStateChanged).
 */
export interface DeviceEvent__Output {
  'id': (string);
  'componentId': (string);
  'data': (_google_protobuf_Any__Output | null);
}
