// Original file: proto/vfiod/v1/controllers.proto

import type { Long } from '@grpc/proto-loader';

/**
 * I/O rate limits of one scope (docs/nvme.md "Rate limits"). Reads and writes count together; admin commands are
 * never limited. 0 = unlimited. A limited guest sees added latency, never an error.
 */
export interface IoLimits {
  /**
   * I/O commands per second (0..100000000)
   */
  'iops'?: (number | string | Long);
  /**
   * data bytes per second of Read, Write, Compare (0..2^44)
   */
  'bytesPerSecond'?: (number | string | Long);
  /**
   * commands that may start at once after idle; default a tenth of a second's worth
   */
  'burstIos'?: (number | string | Long);
  /**
   * bytes that may start at once after idle; default a tenth of a second's worth
   */
  'burstBytes'?: (number | string | Long);
}

/**
 * I/O rate limits of one scope (docs/nvme.md "Rate limits"). Reads and writes count together; admin commands are
 * never limited. 0 = unlimited. A limited guest sees added latency, never an error.
 */
export interface IoLimits__Output {
  /**
   * I/O commands per second (0..100000000)
   */
  'iops': (number);
  /**
   * data bytes per second of Read, Write, Compare (0..2^44)
   */
  'bytesPerSecond': (number);
  /**
   * commands that may start at once after idle; default a tenth of a second's worth
   */
  'burstIos': (number);
  /**
   * bytes that may start at once after idle; default a tenth of a second's worth
   */
  'burstBytes': (number);
}
