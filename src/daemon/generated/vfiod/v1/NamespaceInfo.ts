// Original file: /work/wt/api-types/proto/vfiod/v1/controllers.proto

import type { Long } from '@grpc/proto-loader';

export interface NamespaceInfo {
  'nsid'?: (number);
  'uri'?: (string);
  'backend'?: (string);
  'blockSize'?: (number);
  'blocks'?: (number | string | Long);
}

export interface NamespaceInfo__Output {
  'nsid': (number);
  'uri': (string);
  'backend': (string);
  'blockSize': (number);
  'blocks': (number);
}
