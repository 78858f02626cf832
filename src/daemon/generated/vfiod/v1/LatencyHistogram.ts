// Original file: proto/vfiod/v1/controllers.proto

import type { Long } from '@grpc/proto-loader';

export interface LatencyHistogram {
  /**
   * buckets[i] counts I/O commands whose fetch-to-completion latency was in [2^i, 2^(i+1)) microseconds.
   */
  'buckets'?: (number | string | Long)[];
  'count'?: (number | string | Long);
  'meanUs'?: (number | string);
  'maxUs'?: (number | string);
  /**
   * upper bound of the bucket holding the percentile
   */
  'p50Us'?: (number | string);
  'p99Us'?: (number | string);
}

export interface LatencyHistogram__Output {
  /**
   * buckets[i] counts I/O commands whose fetch-to-completion latency was in [2^i, 2^(i+1)) microseconds.
   */
  'buckets': (number)[];
  'count': (number);
  'meanUs': (number);
  'maxUs': (number);
  /**
   * upper bound of the bucket holding the percentile
   */
  'p50Us': (number);
  'p99Us': (number);
}
