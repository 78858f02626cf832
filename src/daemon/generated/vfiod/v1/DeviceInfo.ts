// Original file: proto/vfiod/v1/devices.proto

import type { DeviceKind as _vfiod_v1_DeviceKind, DeviceKind__Output as _vfiod_v1_DeviceKind__Output } from '../../vfiod/v1/DeviceKind.js';
import type { SriovInfo as _vfiod_v1_SriovInfo, SriovInfo__Output as _vfiod_v1_SriovInfo__Output } from '../../vfiod/v1/SriovInfo.js';
import type { BarInfo as _vfiod_v1_BarInfo, BarInfo__Output as _vfiod_v1_BarInfo__Output } from '../../vfiod/v1/BarInfo.js';
import type { HostUse as _vfiod_v1_HostUse, HostUse__Output as _vfiod_v1_HostUse__Output } from '../../vfiod/v1/HostUse.js';
import type { VfioState as _vfiod_v1_VfioState, VfioState__Output as _vfiod_v1_VfioState__Output } from '../../vfiod/v1/VfioState.js';
import type { ClaimInfo as _vfiod_v1_ClaimInfo, ClaimInfo__Output as _vfiod_v1_ClaimInfo__Output } from '../../vfiod/v1/ClaimInfo.js';
import type { VgpuInfo as _vfiod_v1_VgpuInfo, VgpuInfo__Output as _vfiod_v1_VgpuInfo__Output } from '../../vfiod/v1/VgpuInfo.js';

export interface DeviceInfo {
  'bdf'?: (string);
  /**
   * 4 hex digits
   */
  'vendorId'?: (string);
  'deviceId'?: (string);
  'subsystemVendorId'?: (string);
  'subsystemDeviceId'?: (string);
  /**
   * 6 hex digits, e.g. 010802
   */
  'classCode'?: (string);
  'kind'?: (_vfiod_v1_DeviceKind);
  'driver'?: (string);
  'driverOverride'?: (string);
  'iommuGroup'?: (number);
  'iommuGroupMembers'?: (string)[];
  'numaNode'?: (number);
  'physfn'?: (string);
  'virtfns'?: (string)[];
  'sriov'?: (_vfiod_v1_SriovInfo | null);
  'resetMethods'?: (string)[];
  'bars'?: (_vfiod_v1_BarInfo)[];
  /**
   * dev/vfio/<group> when it exists
   */
  'vfioGroupDev'?: (string);
  /**
   * dev/vfio/devices/vfioN when present
   */
  'vfioCdev'?: (string);
  'hostUses'?: (_vfiod_v1_HostUse)[];
  'vfioState'?: (_vfiod_v1_VfioState);
  /**
   * attachable through VFIO right now, as it is
   */
  'vfioUsable'?: (boolean);
  'iommuGroupViable'?: (boolean);
  'vfioReasons'?: (string)[];
  /**
   * absent when vfiod has not claimed the device
   */
  'claim'?: (_vfiod_v1_ClaimInfo | null);
  /**
   * NVIDIA vGPU VFs only (nvidia/current_vgpu_type exists)
   */
  'vgpu'?: (_vfiod_v1_VgpuInfo | null);
  '_driver'?: "driver";
  '_driverOverride'?: "driverOverride";
  '_iommuGroup'?: "iommuGroup";
  '_numaNode'?: "numaNode";
  '_physfn'?: "physfn";
}

export interface DeviceInfo__Output {
  'bdf': (string);
  /**
   * 4 hex digits
   */
  'vendorId': (string);
  'deviceId': (string);
  'subsystemVendorId': (string);
  'subsystemDeviceId': (string);
  /**
   * 6 hex digits, e.g. 010802
   */
  'classCode': (string);
  'kind': (_vfiod_v1_DeviceKind__Output);
  'driver'?: (string);
  'driverOverride'?: (string);
  'iommuGroup'?: (number);
  'iommuGroupMembers': (string)[];
  'numaNode'?: (number);
  'physfn'?: (string);
  'virtfns': (string)[];
  'sriov': (_vfiod_v1_SriovInfo__Output | null);
  'resetMethods': (string)[];
  'bars': (_vfiod_v1_BarInfo__Output)[];
  /**
   * dev/vfio/<group> when it exists
   */
  'vfioGroupDev': (string);
  /**
   * dev/vfio/devices/vfioN when present
   */
  'vfioCdev': (string);
  'hostUses': (_vfiod_v1_HostUse__Output)[];
  'vfioState': (_vfiod_v1_VfioState__Output);
  /**
   * attachable through VFIO right now, as it is
   */
  'vfioUsable': (boolean);
  'iommuGroupViable': (boolean);
  'vfioReasons': (string)[];
  /**
   * absent when vfiod has not claimed the device
   */
  'claim': (_vfiod_v1_ClaimInfo__Output | null);
  /**
   * NVIDIA vGPU VFs only (nvidia/current_vgpu_type exists)
   */
  'vgpu': (_vfiod_v1_VgpuInfo__Output | null);
  '_driver'?: "driver";
  '_driverOverride'?: "driverOverride";
  '_iommuGroup'?: "iommuGroup";
  '_numaNode'?: "numaNode";
  '_physfn'?: "physfn";
}
