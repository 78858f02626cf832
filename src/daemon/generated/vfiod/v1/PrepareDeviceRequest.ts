// Original file: proto/vfiod/v1/devices.proto


export interface PrepareDeviceRequest {
  'bdf'?: (string);
  /**
   * the VM the device is for
   */
  'owner'?: (string);
  /**
   * prepare although in use on the host / no reset; the response lists what was overridden
   */
  'force'?: (boolean);
  /**
   * bind every endpoint of the IOMMU group (bridges never)
   */
  'wholeGroup'?: (boolean);
  /**
   * AIP-155, as CreateControllerRequest.request_id
   */
  'requestId'?: (string);
}

export interface PrepareDeviceRequest__Output {
  'bdf': (string);
  /**
   * the VM the device is for
   */
  'owner': (string);
  /**
   * prepare although in use on the host / no reset; the response lists what was overridden
   */
  'force': (boolean);
  /**
   * bind every endpoint of the IOMMU group (bridges never)
   */
  'wholeGroup': (boolean);
  /**
   * AIP-155, as CreateControllerRequest.request_id
   */
  'requestId': (string);
}
