// Original file: proto/vfiod/v1/controllers.proto

export const DoorbellMode = {
  /**
   * = interrupt
   */
  DOORBELL_MODE_UNSPECIFIED: 'DOORBELL_MODE_UNSPECIFIED',
  /**
   * trapped doorbell writes + shadow doorbells
   */
  DOORBELL_MODE_INTERRUPT: 'DOORBELL_MODE_INTERRUPT',
  /**
   * doorbell page mmapped by the client and polled by vfiod
   */
  DOORBELL_MODE_POLLED: 'DOORBELL_MODE_POLLED',
} as const;

export type DoorbellMode =
  /**
   * = interrupt
   */
  | 'DOORBELL_MODE_UNSPECIFIED'
  | 0
  /**
   * trapped doorbell writes + shadow doorbells
   */
  | 'DOORBELL_MODE_INTERRUPT'
  | 1
  /**
   * doorbell page mmapped by the client and polled by vfiod
   */
  | 'DOORBELL_MODE_POLLED'
  | 2

export type DoorbellMode__Output = typeof DoorbellMode[keyof typeof DoorbellMode]
