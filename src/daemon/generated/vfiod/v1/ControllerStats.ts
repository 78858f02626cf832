// Original file: proto/vfiod/v1/controllers.proto

import type { LatencyHistogram as _vfiod_v1_LatencyHistogram, LatencyHistogram__Output as _vfiod_v1_LatencyHistogram__Output } from '../../vfiod/v1/LatencyHistogram.js';
import type { Long } from '@grpc/proto-loader';

export interface ControllerStats {
  /**
   * disabled, ready, shutting-down, shut-down, failed
   */
  'nvmeState'?: (string);
  'clientConnected'?: (boolean);
  'readCommands'?: (number | string | Long);
  'writeCommands'?: (number | string | Long);
  'otherIoCommands'?: (number | string | Long);
  'adminCommands'?: (number | string | Long);
  'failedCommands'?: (number | string | Long);
  'bytesRead'?: (number | string | Long);
  'bytesWritten'?: (number | string | Long);
  /**
   * Rates over the daemon's last sampling interval (sample_interval_ms).
   */
  'readIops'?: (number | string);
  'writeIops'?: (number | string);
  'readBytesPerSecond'?: (number | string);
  'writeBytesPerSecond'?: (number | string);
  'sampleIntervalMs'?: (number);
  'inFlight'?: (number);
  'ioQueues'?: (number);
  'resets'?: (number | string | Long);
  'latency'?: (_vfiod_v1_LatencyHistogram | null);
  /**
   * Scratch memory of the controller's commands (Compare's stored data): its budget, what is taken now and at
   * most, and the commands waiting for it (they wait, they do not fail).
   */
  'scratchLimitBytes'?: (number | string | Long);
  'scratchUsedBytes'?: (number | string | Long);
  'scratchPeakBytes'?: (number | string | Long);
  'scratchWaitingCommands'?: (number);
  /**
   * I/O rate limits: commands held back now (counted in in_flight too), and commands that had to wait so far.
   */
  'throttledCommands'?: (number);
  'throttledCommandsTotal'?: (number | string | Long);
}

export interface ControllerStats__Output {
  /**
   * disabled, ready, shutting-down, shut-down, failed
   */
  'nvmeState': (string);
  'clientConnected': (boolean);
  'readCommands': (number);
  'writeCommands': (number);
  'otherIoCommands': (number);
  'adminCommands': (number);
  'failedCommands': (number);
  'bytesRead': (number);
  'bytesWritten': (number);
  /**
   * Rates over the daemon's last sampling interval (sample_interval_ms).
   */
  'readIops': (number);
  'writeIops': (number);
  'readBytesPerSecond': (number);
  'writeBytesPerSecond': (number);
  'sampleIntervalMs': (number);
  'inFlight': (number);
  'ioQueues': (number);
  'resets': (number);
  'latency': (_vfiod_v1_LatencyHistogram__Output | null);
  /**
   * Scratch memory of the controller's commands (Compare's stored data): its budget, what is taken now and at
   * most, and the commands waiting for it (they wait, they do not fail).
   */
  'scratchLimitBytes': (number);
  'scratchUsedBytes': (number);
  'scratchPeakBytes': (number);
  'scratchWaitingCommands': (number);
  /**
   * I/O rate limits: commands held back now (counted in in_flight too), and commands that had to wait so far.
   */
  'throttledCommands': (number);
  'throttledCommandsTotal': (number);
}
