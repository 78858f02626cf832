// Original file: proto/vfiod/v1/controllers.proto

export const ControllerState = {
  CONTROLLER_STATE_UNSPECIFIED: 'CONTROLLER_STATE_UNSPECIFIED',
  CONTROLLER_STATE_STARTING: 'CONTROLLER_STATE_STARTING',
  /**
   * listening on its socket (a hypervisor may or may not be connected)
   */
  CONTROLLER_STATE_SERVING: 'CONTROLLER_STATE_SERVING',
  CONTROLLER_STATE_STOPPING: 'CONTROLLER_STATE_STOPPING',
  /**
   * could not start or its worker died; see ControllerInfo.error
   */
  CONTROLLER_STATE_FAILED: 'CONTROLLER_STATE_FAILED',
} as const;

export type ControllerState =
  | 'CONTROLLER_STATE_UNSPECIFIED'
  | 0
  | 'CONTROLLER_STATE_STARTING'
  | 1
  /**
   * listening on its socket (a hypervisor may or may not be connected)
   */
  | 'CONTROLLER_STATE_SERVING'
  | 2
  | 'CONTROLLER_STATE_STOPPING'
  | 3
  /**
   * could not start or its worker died; see ControllerInfo.error
   */
  | 'CONTROLLER_STATE_FAILED'
  | 4

export type ControllerState__Output = typeof ControllerState[keyof typeof ControllerState]
