// Original file: proto/vfiod/v1/attachments.proto


export interface DetachDeviceRequest {
  'vmId'?: (string);
  /**
   * the attachment's device_id, or
   */
  'deviceId'?: (string);
  /**
   * the host BDF of a PCI attachment
   */
  'bdf'?: (string);
  /**
   * how long to wait for the guest (default 30000)
   */
  'timeoutMs'?: (number);
  /**
   * do not give the device back to its host driver
   */
  'keepClaimed'?: (boolean);
  /**
   * answer once the operation is done
   */
  'wait'?: (boolean);
}

export interface DetachDeviceRequest__Output {
  'vmId': (string);
  /**
   * the attachment's device_id, or
   */
  'deviceId': (string);
  /**
   * the host BDF of a PCI attachment
   */
  'bdf': (string);
  /**
   * how long to wait for the guest (default 30000)
   */
  'timeoutMs': (number);
  /**
   * do not give the device back to its host driver
   */
  'keepClaimed': (boolean);
  /**
   * answer once the operation is done
   */
  'wait': (boolean);
}
