// Original file: proto/vfiod/v1/daemon.proto


export interface RestartDaemonRequest {
  /**
   * absolute path of the bin/vfiod.js to start the next daemon from; empty: the holder's own
   */
  'bin'?: (string);
}

export interface RestartDaemonRequest__Output {
  /**
   * absolute path of the bin/vfiod.js to start the next daemon from; empty: the holder's own
   */
  'bin': (string);
}
