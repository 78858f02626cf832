// Original file: /work/wt/api-types/proto/vfiod/v1/attachments.proto

import type { AttachmentInfo as _vfiod_v1_AttachmentInfo, AttachmentInfo__Output as _vfiod_v1_AttachmentInfo__Output } from '../../vfiod/v1/AttachmentInfo.js';

export interface AttachDeviceResponse {
  'attachment'?: (_vfiod_v1_AttachmentInfo | null);
  'changed'?: (boolean);
  'warnings'?: (string)[];
}

export interface AttachDeviceResponse__Output {
  'attachment': (_vfiod_v1_AttachmentInfo__Output | null);
  'changed': (boolean);
  'warnings': (string)[];
}
