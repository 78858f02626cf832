// Original file: proto/vfiod/v1/attachments.proto

import type { AttachmentInfo as _vfiod_v1_AttachmentInfo, AttachmentInfo__Output as _vfiod_v1_AttachmentInfo__Output } from '../../vfiod/v1/AttachmentInfo.js';
import type { Operation as _vfiod_v1_Operation, Operation__Output as _vfiod_v1_Operation__Output } from '../../vfiod/v1/Operation.js';

export interface AttachDeviceResponse {
  /**
   * with wait
   */
  'attachment'?: (_vfiod_v1_AttachmentInfo | null);
  /**
   * with wait
   */
  'changed'?: (boolean);
  /**
   * with wait
   */
  'warnings'?: (string)[];
  'operation'?: (_vfiod_v1_Operation | null);
}

export interface AttachDeviceResponse__Output {
  /**
   * with wait
   */
  'attachment': (_vfiod_v1_AttachmentInfo__Output | null);
  /**
   * with wait
   */
  'changed': (boolean);
  /**
   * with wait
   */
  'warnings': (string)[];
  'operation': (_vfiod_v1_Operation__Output | null);
}
