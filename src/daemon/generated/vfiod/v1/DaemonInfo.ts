// Original file: proto/vfiod/v1/daemon.proto

import type { Long } from '@grpc/proto-loader';

export interface DaemonInfo {
  'pid'?: (number);
  'version'?: (string);
  /**
   * runs under a crash-recovery holder
   */
  'crashRecovery'?: (boolean);
  /**
   * that holder's socket, when it does
   */
  'holderSocket'?: (string);
  'startedUnixMs'?: (number | string | Long);
}

export interface DaemonInfo__Output {
  'pid': (number);
  'version': (string);
  /**
   * runs under a crash-recovery holder
   */
  'crashRecovery': (boolean);
  /**
   * that holder's socket, when it does
   */
  'holderSocket': (string);
  'startedUnixMs': (number);
}
