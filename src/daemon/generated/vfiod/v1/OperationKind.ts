// Original file: proto/vfiod/v1/operations.proto

export const OperationKind = {
  OPERATION_KIND_UNSPECIFIED: 'OPERATION_KIND_UNSPECIFIED',
  OPERATION_KIND_ATTACH_DEVICE: 'OPERATION_KIND_ATTACH_DEVICE',
  OPERATION_KIND_DETACH_DEVICE: 'OPERATION_KIND_DETACH_DEVICE',
  /**
   * ControllerService.SwapNamespaceBacking
   */
  OPERATION_KIND_SWAP_NAMESPACE_BACKING: 'OPERATION_KIND_SWAP_NAMESPACE_BACKING',
} as const;

export type OperationKind =
  | 'OPERATION_KIND_UNSPECIFIED'
  | 0
  | 'OPERATION_KIND_ATTACH_DEVICE'
  | 1
  | 'OPERATION_KIND_DETACH_DEVICE'
  | 2
  /**
   * ControllerService.SwapNamespaceBacking
   */
  | 'OPERATION_KIND_SWAP_NAMESPACE_BACKING'
  | 3

export type OperationKind__Output = typeof OperationKind[keyof typeof OperationKind]
