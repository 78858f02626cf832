// Original file: proto/vfiod/v1/devices.proto


export interface HostUse {
  /**
   * mounted, holder, swap, interface-up, drm
   */
  'kind'?: (string);
  /**
   * block device, interface or card
   */
  'on'?: (string);
  'detail'?: (string);
  /**
   * blocking uses refuse PrepareDevice unless force is set
   */
  'blocking'?: (boolean);
}

export interface HostUse__Output {
  /**
   * mounted, holder, swap, interface-up, drm
   */
  'kind': (string);
  /**
   * block device, interface or card
   */
  'on': (string);
  'detail': (string);
  /**
   * blocking uses refuse PrepareDevice unless force is set
   */
  'blocking': (boolean);
}
