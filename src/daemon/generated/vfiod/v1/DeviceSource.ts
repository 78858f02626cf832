// Original file: proto/vfiod/v1/attachments.proto


/**
 * What is given to the VM.
 */
export interface DeviceSource {
  /**
   * a host PCI function through VFIO (GPU companions follow automatically)
   */
  'pciBdf'?: (string);
  /**
   * an emulated controller's vfio-user socket (ControllerSpec.socket_path)
   */
  'vfioUserSocket'?: (string);
  /**
   * an emulated controller by its ControllerService id
   */
  'controllerId'?: (string);
  'source'?: "pciBdf"|"vfioUserSocket"|"controllerId";
}

/**
 * What is given to the VM.
 */
export interface DeviceSource__Output {
  /**
   * a host PCI function through VFIO (GPU companions follow automatically)
   */
  'pciBdf'?: (string);
  /**
   * an emulated controller's vfio-user socket (ControllerSpec.socket_path)
   */
  'vfioUserSocket'?: (string);
  /**
   * an emulated controller by its ControllerService id
   */
  'controllerId'?: (string);
  'source'?: "pciBdf"|"vfioUserSocket"|"controllerId";
}
