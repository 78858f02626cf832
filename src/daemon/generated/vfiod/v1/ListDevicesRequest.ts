// Original file: proto/vfiod/v1/devices.proto

import type { DeviceKind as _vfiod_v1_DeviceKind, DeviceKind__Output as _vfiod_v1_DeviceKind__Output } from '../../vfiod/v1/DeviceKind.js';

export interface ListDevicesRequest {
  /**
   * only these addresses
   */
  'bdfs'?: (string)[];
  /**
   * vendor:device, e.g. 15b3:6001 (vendor alone: 15b3)
   */
  'ids'?: (string)[];
  'kinds'?: (_vfiod_v1_DeviceKind)[];
  /**
   * the VFs of these PFs
   */
  'pfs'?: (string)[];
  /**
   * unclaimed, not a bridge, has an IOMMU group, not in use on the host
   */
  'freeOnly'?: (boolean);
  /**
   * only devices on this NUMA node (sysfs numa_node; -1: devices with none)
   */
  'numaNode'?: (number);
  '_numaNode'?: "numaNode";
}

export interface ListDevicesRequest__Output {
  /**
   * only these addresses
   */
  'bdfs': (string)[];
  /**
   * vendor:device, e.g. 15b3:6001 (vendor alone: 15b3)
   */
  'ids': (string)[];
  'kinds': (_vfiod_v1_DeviceKind__Output)[];
  /**
   * the VFs of these PFs
   */
  'pfs': (string)[];
  /**
   * unclaimed, not a bridge, has an IOMMU group, not in use on the host
   */
  'freeOnly': (boolean);
  /**
   * only devices on this NUMA node (sysfs numa_node; -1: devices with none)
   */
  'numaNode'?: (number);
  '_numaNode'?: "numaNode";
}
