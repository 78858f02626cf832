// Original file: proto/vfiod/v1/controllers.proto

import type { Long } from '@grpc/proto-loader';

/**
 * Grows a file or memory namespace (a block device or NVMe/TCP namespace has its backend's size). Shrinking is
 * refused; the namespace's current size changes nothing.
 */
export interface ResizeNamespaceRequest {
  'id'?: (string);
  'nsid'?: (number);
  /**
   * a multiple of the namespace's block size
   */
  'sizeBytes'?: (number | string | Long);
}

/**
 * Grows a file or memory namespace (a block device or NVMe/TCP namespace has its backend's size). Shrinking is
 * refused; the namespace's current size changes nothing.
 */
export interface ResizeNamespaceRequest__Output {
  'id': (string);
  'nsid': (number);
  /**
   * a multiple of the namespace's block size
   */
  'sizeBytes': (number);
}
