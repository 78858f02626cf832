// Original file: /work/wt/api-types/proto/vfiod/v1/controllers.proto


export interface ControllerIdentity {
  /**
   * max 20 characters
   */
  'serialNumber'?: (string);
  /**
   * max 40
   */
  'modelNumber'?: (string);
  /**
   * max 8
   */
  'firmwareRevision'?: (string);
  'subsystemNqn'?: (string);
}

export interface ControllerIdentity__Output {
  /**
   * max 20 characters
   */
  'serialNumber': (string);
  /**
   * max 40
   */
  'modelNumber': (string);
  /**
   * max 8
   */
  'firmwareRevision': (string);
  'subsystemNqn': (string);
}
