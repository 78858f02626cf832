// Original file: /work/wt/api-types/proto/vfiod/v1/devices.proto

export const DeviceKind = {
  DEVICE_KIND_UNSPECIFIED: 'DEVICE_KIND_UNSPECIFIED',
  DEVICE_KIND_NVME: 'DEVICE_KIND_NVME',
  DEVICE_KIND_DISPLAY: 'DEVICE_KIND_DISPLAY',
  DEVICE_KIND_NETWORK: 'DEVICE_KIND_NETWORK',
  DEVICE_KIND_AUDIO: 'DEVICE_KIND_AUDIO',
  DEVICE_KIND_BRIDGE: 'DEVICE_KIND_BRIDGE',
  DEVICE_KIND_OTHER: 'DEVICE_KIND_OTHER',
} as const;

export type DeviceKind =
  | 'DEVICE_KIND_UNSPECIFIED'
  | 0
  | 'DEVICE_KIND_NVME'
  | 1
  | 'DEVICE_KIND_DISPLAY'
  | 2
  | 'DEVICE_KIND_NETWORK'
  | 3
  | 'DEVICE_KIND_AUDIO'
  | 4
  | 'DEVICE_KIND_BRIDGE'
  | 5
  | 'DEVICE_KIND_OTHER'
  | 6

export type DeviceKind__Output = typeof DeviceKind[keyof typeof DeviceKind]
