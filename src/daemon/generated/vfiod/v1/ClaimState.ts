// Original file: proto/vfiod/v1/devices.proto

export const ClaimState = {
  CLAIM_STATE_UNSPECIFIED: 'CLAIM_STATE_UNSPECIFIED',
  CLAIM_STATE_PREPARING: 'CLAIM_STATE_PREPARING',
  CLAIM_STATE_PREPARED: 'CLAIM_STATE_PREPARED',
  CLAIM_STATE_RELEASING: 'CLAIM_STATE_RELEASING',
  CLAIM_STATE_FAILED: 'CLAIM_STATE_FAILED',
} as const;

export type ClaimState =
  | 'CLAIM_STATE_UNSPECIFIED'
  | 0
  | 'CLAIM_STATE_PREPARING'
  | 1
  | 'CLAIM_STATE_PREPARED'
  | 2
  | 'CLAIM_STATE_RELEASING'
  | 3
  | 'CLAIM_STATE_FAILED'
  | 4

export type ClaimState__Output = typeof ClaimState[keyof typeof ClaimState]
