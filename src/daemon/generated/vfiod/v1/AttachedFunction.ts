// Original file: proto/vfiod/v1/attachments.proto


export interface AttachedFunction {
  /**
   * empty for vfio-user
   */
  'hostBdf'?: (string);
  'vmmDeviceId'?: (string);
  /**
   * when the VMM reported one
   */
  'guestBdf'?: (string);
  /**
   * QEMU: the pcie-root-port it went into
   */
  'bus'?: (string);
}

export interface AttachedFunction__Output {
  /**
   * empty for vfio-user
   */
  'hostBdf': (string);
  'vmmDeviceId': (string);
  /**
   * when the VMM reported one
   */
  'guestBdf': (string);
  /**
   * QEMU: the pcie-root-port it went into
   */
  'bus': (string);
}
