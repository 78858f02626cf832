// Original file: proto/vfiod/v1/operations.proto

export const OperationState = {
  OPERATION_STATE_UNSPECIFIED: 'OPERATION_STATE_UNSPECIFIED',
  OPERATION_STATE_RUNNING: 'OPERATION_STATE_RUNNING',
  /**
   * response holds the result
   */
  OPERATION_STATE_SUCCEEDED: 'OPERATION_STATE_SUCCEEDED',
  /**
   * error holds the status (reason in its google.rpc.ErrorInfo); rolled back
   */
  OPERATION_STATE_FAILED: 'OPERATION_STATE_FAILED',
  /**
   * Detach only: the VMM was asked to remove the device but the guest (or the VMM) did not let go within timeout_ms.
   * The attachment is detach-pending, the device stays claimed and was not rebound; error says why
   * (GUEST_DID_NOT_RELEASE, VMM_TIMEOUT, ...). A new DetachDevice keeps waiting.
   */
  OPERATION_STATE_DETACH_PENDING: 'OPERATION_STATE_DETACH_PENDING',
} as const;

export type OperationState =
  | 'OPERATION_STATE_UNSPECIFIED'
  | 0
  | 'OPERATION_STATE_RUNNING'
  | 1
  /**
   * response holds the result
   */
  | 'OPERATION_STATE_SUCCEEDED'
  | 2
  /**
   * error holds the status (reason in its google.rpc.ErrorInfo); rolled back
   */
  | 'OPERATION_STATE_FAILED'
  | 3
  /**
   * Detach only: the VMM was asked to remove the device but the guest (or the VMM) did not let go within timeout_ms.
   * The attachment is detach-pending, the device stays claimed and was not rebound; error says why
   * (GUEST_DID_NOT_RELEASE, VMM_TIMEOUT, ...). A new DetachDevice keeps waiting.
   */
  | 'OPERATION_STATE_DETACH_PENDING'
  | 4

export type OperationState__Output = typeof OperationState[keyof typeof OperationState]
