// Original file: /work/wt/api-types/proto/vfiod/v1/attachments.proto


export interface CloudHypervisorConfig {
  /**
   * VmConfig.devices (JSON array of DeviceConfig)
   */
  'devicesJson'?: (string);
  /**
   * VmConfig.user_devices (JSON array)
   */
  'userDevicesJson'?: (string);
  /**
   * the same as command-line options
   */
  'args'?: (string)[];
  'sharedMemoryRequired'?: (boolean);
}

export interface CloudHypervisorConfig__Output {
  /**
   * VmConfig.devices (JSON array of DeviceConfig)
   */
  'devicesJson': (string);
  /**
   * VmConfig.user_devices (JSON array)
   */
  'userDevicesJson': (string);
  /**
   * the same as command-line options
   */
  'args': (string)[];
  'sharedMemoryRequired': (boolean);
}
