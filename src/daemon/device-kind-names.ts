/** The proto name of each device kind (vfiod.v1.DeviceKind), for the DeviceService and its CLI client alike. */
import type { DeviceKind } from '../devices/discovery.js';
import type { DeviceKind as DeviceKindName } from './generated/vfiod/v1/DeviceKind.js';

export const DEVICE_KIND_NAMES: Record<DeviceKind, DeviceKindName> = {
  nvme: 'DEVICE_KIND_NVME',
  display: 'DEVICE_KIND_DISPLAY',
  network: 'DEVICE_KIND_NETWORK',
  audio: 'DEVICE_KIND_AUDIO',
  bridge: 'DEVICE_KIND_BRIDGE',
  other: 'DEVICE_KIND_OTHER',
};
