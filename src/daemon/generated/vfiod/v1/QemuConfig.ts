// Original file: proto/vfiod/v1/attachments.proto


export interface QemuConfig {
  'args'?: (string)[];
  /**
   * device id -> pcie-root-port id
   */
  'buses'?: ({[key: string]: string});
  'sharedMemoryRequired'?: (boolean);
}

export interface QemuConfig__Output {
  'args': (string)[];
  /**
   * device id -> pcie-root-port id
   */
  'buses': ({[key: string]: string});
  'sharedMemoryRequired': (boolean);
}
