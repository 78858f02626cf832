// Original file: proto/vfiod/v1/devices.proto


export interface StreamDeviceEventsRequest {
  /**
   * only events for these devices (component_id); empty = all
   */
  'bdfs'?: (string)[];
}

export interface StreamDeviceEventsRequest__Output {
  /**
   * only events for these devices (component_id); empty = all
   */
  'bdfs': (string)[];
}
