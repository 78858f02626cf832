// Original file: proto/vfiod/v1/devices.proto

import type { Long } from '@grpc/proto-loader';

export interface BarInfo {
  /**
   * 0-5, 6 = expansion ROM
   */
  'index'?: (number);
  'size'?: (number | string | Long);
}

export interface BarInfo__Output {
  /**
   * 0-5, 6 = expansion ROM
   */
  'index': (number);
  'size': (number);
}
