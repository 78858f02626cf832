// Original file: proto/vfiod/v1/attachments.proto

import type { VfioBackend as _vfiod_v1_VfioBackend, VfioBackend__Output as _vfiod_v1_VfioBackend__Output } from '../../vfiod/v1/VfioBackend.js';

export interface AttachedFunction {
  /**
   * empty for vfio-user
   */
  'hostBdf'?: (string);
  'vmmDeviceId'?: (string);
  /**
   * when the VMM reported one
   */
  'guestBdf'?: (string);
  /**
   * QEMU: the pcie-root-port it went into
   */
  'bus'?: (string);
  /**
   * how the VMM opened it (UNSPECIFIED for vfio-user)
   */
  'vfioBackend'?: (_vfiod_v1_VfioBackend);
}

export interface AttachedFunction__Output {
  /**
   * empty for vfio-user
   */
  'hostBdf': (string);
  'vmmDeviceId': (string);
  /**
   * when the VMM reported one
   */
  'guestBdf': (string);
  /**
   * QEMU: the pcie-root-port it went into
   */
  'bus': (string);
  /**
   * how the VMM opened it (UNSPECIFIED for vfio-user)
   */
  'vfioBackend': (_vfiod_v1_VfioBackend__Output);
}
