// Original file: proto/vfiod/v1/controllers.proto


/**
 * What the guest's Identify Controller shows. In a spec: empty strings / absent numbers keep the persisted (or
 * generated) value. In ControllerInfo.identity: the values in effect. docs/daemon.md "Identity".
 */
export interface ControllerIdentity {
  /**
   * 1-20 printable ASCII characters
   */
  'serialNumber'?: (string);
  /**
   * 1-40
   */
  'modelNumber'?: (string);
  /**
   * 1-8
   */
  'firmwareRevision'?: (string);
  /**
   * nqn.yyyy-mm.<reverse domain>[:<name>] or nqn.2014-08.org.nvmexpress:uuid:<uuid>
   */
  'subsystemNqn'?: (string);
  /**
   * 24 bits; 0 = none (the default)
   */
  'ieeeOui'?: (number);
  /**
   * CNTLID, 0..0xFFEF; default 0
   */
  'controllerId'?: (number);
  '_ieeeOui'?: "ieeeOui";
  '_controllerId'?: "controllerId";
}

/**
 * What the guest's Identify Controller shows. In a spec: empty strings / absent numbers keep the persisted (or
 * generated) value. In ControllerInfo.identity: the values in effect. docs/daemon.md "Identity".
 */
export interface ControllerIdentity__Output {
  /**
   * 1-20 printable ASCII characters
   */
  'serialNumber': (string);
  /**
   * 1-40
   */
  'modelNumber': (string);
  /**
   * 1-8
   */
  'firmwareRevision': (string);
  /**
   * nqn.yyyy-mm.<reverse domain>[:<name>] or nqn.2014-08.org.nvmexpress:uuid:<uuid>
   */
  'subsystemNqn': (string);
  /**
   * 24 bits; 0 = none (the default)
   */
  'ieeeOui'?: (number);
  /**
   * CNTLID, 0..0xFFEF; default 0
   */
  'controllerId'?: (number);
  '_ieeeOui'?: "ieeeOui";
  '_controllerId'?: "controllerId";
}
