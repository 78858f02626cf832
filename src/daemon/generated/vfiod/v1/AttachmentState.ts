// Original file: proto/vfiod/v1/attachments.proto

export const AttachmentState = {
  ATTACHMENT_STATE_UNSPECIFIED: 'ATTACHMENT_STATE_UNSPECIFIED',
  ATTACHMENT_STATE_ATTACHING: 'ATTACHMENT_STATE_ATTACHING',
  ATTACHMENT_STATE_ATTACHED: 'ATTACHMENT_STATE_ATTACHED',
  ATTACHMENT_STATE_DETACHING: 'ATTACHMENT_STATE_DETACHING',
  /**
   * the guest did not let go in time; the device stays claimed
   */
  ATTACHMENT_STATE_DETACH_PENDING: 'ATTACHMENT_STATE_DETACH_PENDING',
} as const;

export type AttachmentState =
  | 'ATTACHMENT_STATE_UNSPECIFIED'
  | 0
  | 'ATTACHMENT_STATE_ATTACHING'
  | 1
  | 'ATTACHMENT_STATE_ATTACHED'
  | 2
  | 'ATTACHMENT_STATE_DETACHING'
  | 3
  /**
   * the guest did not let go in time; the device stays claimed
   */
  | 'ATTACHMENT_STATE_DETACH_PENDING'
  | 4

export type AttachmentState__Output = typeof AttachmentState[keyof typeof AttachmentState]
