// Original file: proto/vfiod/v1/attachments.proto

import type { DeviceSource as _vfiod_v1_DeviceSource, DeviceSource__Output as _vfiod_v1_DeviceSource__Output } from '../../vfiod/v1/DeviceSource.js';
import type { VfioBackend as _vfiod_v1_VfioBackend, VfioBackend__Output as _vfiod_v1_VfioBackend__Output } from '../../vfiod/v1/VfioBackend.js';

export interface VmDevice {
  'source'?: (_vfiod_v1_DeviceSource | null);
  'deviceId'?: (string);
  /**
   * lower boots first (QEMU bootindex)
   */
  'bootIndex'?: (number);
  'iommu'?: (boolean);
  'pciSegment'?: (number);
  'gpudirectClique'?: (number);
  /**
   * PCI: group or iommufd (UNSPECIFIED: auto)
   */
  'vfioBackend'?: (_vfiod_v1_VfioBackend);
  '_bootIndex'?: "bootIndex";
  '_gpudirectClique'?: "gpudirectClique";
}

export interface VmDevice__Output {
  'source': (_vfiod_v1_DeviceSource__Output | null);
  'deviceId': (string);
  /**
   * lower boots first (QEMU bootindex)
   */
  'bootIndex'?: (number);
  'iommu': (boolean);
  'pciSegment': (number);
  'gpudirectClique'?: (number);
  /**
   * PCI: group or iommufd (UNSPECIFIED: auto)
   */
  'vfioBackend': (_vfiod_v1_VfioBackend__Output);
  '_bootIndex'?: "bootIndex";
  '_gpudirectClique'?: "gpudirectClique";
}
