// Original file: proto/vfiod/v1/devices.proto


export interface ReleasedDevice {
  'bdf'?: (string);
  'restoredDriver'?: (string);
  'restoredOverride'?: (string);
  /**
   * the device vanished; its claim was dropped
   */
  'gone'?: (boolean);
  '_restoredDriver'?: "restoredDriver";
  '_restoredOverride'?: "restoredOverride";
}

export interface ReleasedDevice__Output {
  'bdf': (string);
  'restoredDriver'?: (string);
  'restoredOverride'?: (string);
  /**
   * the device vanished; its claim was dropped
   */
  'gone': (boolean);
  '_restoredDriver'?: "restoredDriver";
  '_restoredOverride'?: "restoredOverride";
}
