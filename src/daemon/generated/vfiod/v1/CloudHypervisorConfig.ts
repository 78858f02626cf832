// Original file: proto/vfiod/v1/attachments.proto


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
  /**
   * VmConfig.pci_segments (JSON array of PciSegmentConfig; 64-bit aperture weights)
   */
  'pciSegmentsJson'?: (string);
  /**
   * VmConfig.platform.num_pci_segments when NUMA placement adds segments (0: unchanged)
   */
  'numPciSegments'?: (number);
  /**
   * NumaConfig guest_numa_id + pci_segments to merge into VmConfig.numa
   */
  'numaJson'?: (string);
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
  /**
   * VmConfig.pci_segments (JSON array of PciSegmentConfig; 64-bit aperture weights)
   */
  'pciSegmentsJson': (string);
  /**
   * VmConfig.platform.num_pci_segments when NUMA placement adds segments (0: unchanged)
   */
  'numPciSegments': (number);
  /**
   * NumaConfig guest_numa_id + pci_segments to merge into VmConfig.numa
   */
  'numaJson': (string);
}
