// Original file: proto/vfiod/v1/devices.proto


export interface SriovInfo {
  'totalVfs'?: (number);
  'numVfs'?: (number);
  /**
   * Absent when sysfs does not say.
   */
  'driversAutoprobe'?: (boolean);
  '_driversAutoprobe'?: "driversAutoprobe";
}

export interface SriovInfo__Output {
  'totalVfs': (number);
  'numVfs': (number);
  /**
   * Absent when sysfs does not say.
   */
  'driversAutoprobe'?: (boolean);
  '_driversAutoprobe'?: "driversAutoprobe";
}
