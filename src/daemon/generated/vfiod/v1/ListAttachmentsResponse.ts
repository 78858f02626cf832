// Original file: proto/vfiod/v1/attachments.proto

import type { AttachmentInfo as _vfiod_v1_AttachmentInfo, AttachmentInfo__Output as _vfiod_v1_AttachmentInfo__Output } from '../../vfiod/v1/AttachmentInfo.js';

export interface ListAttachmentsResponse {
  'attachments'?: (_vfiod_v1_AttachmentInfo)[];
}

export interface ListAttachmentsResponse__Output {
  'attachments': (_vfiod_v1_AttachmentInfo__Output)[];
}
