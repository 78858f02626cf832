// Original file: proto/vfiod/v1/attachments.proto


export interface ListAttachmentsRequest {
  /**
   * empty = every VM
   */
  'vmId'?: (string);
}

export interface ListAttachmentsRequest__Output {
  /**
   * empty = every VM
   */
  'vmId': (string);
}
