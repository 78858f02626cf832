// Original file: proto/vfiod/v1/attachments.proto

import type { Long } from '@grpc/proto-loader';

/**
 * What the devices' 64-bit prefetchable BARs need of the guest's 64-bit PCI window (sysfs resource files).
 */
export interface PciWindowInfo {
  /**
   * 0: nothing large
   */
  'aperture64Bytes'?: (number | string | Long);
  /**
   * device id -> bytes its root port's prefetchable window needs (QEMU pref64-reserve)
   */
  'windows'?: ({[key: string]: number | string | Long});
  /**
   * QEMU: the fw_cfg opt/ovmf/X-PciMmio64Mb emitted (0: none)
   */
  'ovmfMmio64Mb'?: (number);
}

/**
 * What the devices' 64-bit prefetchable BARs need of the guest's 64-bit PCI window (sysfs resource files).
 */
export interface PciWindowInfo__Output {
  /**
   * 0: nothing large
   */
  'aperture64Bytes': (number);
  /**
   * device id -> bytes its root port's prefetchable window needs (QEMU pref64-reserve)
   */
  'windows': ({[key: string]: number});
  /**
   * QEMU: the fw_cfg opt/ovmf/X-PciMmio64Mb emitted (0: none)
   */
  'ovmfMmio64Mb': (number);
}
