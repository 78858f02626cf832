// Original file: proto/vfiod/v1/attachments.proto

import type { HypervisorKind as _vfiod_v1_HypervisorKind, HypervisorKind__Output as _vfiod_v1_HypervisorKind__Output } from '../../vfiod/v1/HypervisorKind.js';
import type { CloudHypervisorConfig as _vfiod_v1_CloudHypervisorConfig, CloudHypervisorConfig__Output as _vfiod_v1_CloudHypervisorConfig__Output } from '../../vfiod/v1/CloudHypervisorConfig.js';
import type { QemuConfig as _vfiod_v1_QemuConfig, QemuConfig__Output as _vfiod_v1_QemuConfig__Output } from '../../vfiod/v1/QemuConfig.js';
import type { PrepareDeviceResult as _vfiod_v1_PrepareDeviceResult, PrepareDeviceResult__Output as _vfiod_v1_PrepareDeviceResult__Output } from '../../vfiod/v1/PrepareDeviceResult.js';
import type { PciWindowInfo as _vfiod_v1_PciWindowInfo, PciWindowInfo__Output as _vfiod_v1_PciWindowInfo__Output } from '../../vfiod/v1/PciWindowInfo.js';
import type { VfioBackend as _vfiod_v1_VfioBackend, VfioBackend__Output as _vfiod_v1_VfioBackend__Output } from '../../vfiod/v1/VfioBackend.js';

export interface GetVmConfigResponse {
  'hypervisor'?: (_vfiod_v1_HypervisorKind);
  'cloudHypervisor'?: (_vfiod_v1_CloudHypervisorConfig | null);
  'qemu'?: (_vfiod_v1_QemuConfig | null);
  'warnings'?: (string)[];
  /**
   * when prepare_devices was set
   */
  'prepared'?: (_vfiod_v1_PrepareDeviceResult)[];
  'pciWindow'?: (_vfiod_v1_PciWindowInfo | null);
  /**
   * PCI device id -> how the VMM opens it
   */
  'vfioBackends'?: ({[key: string]: _vfiod_v1_VfioBackend});
}

export interface GetVmConfigResponse__Output {
  'hypervisor': (_vfiod_v1_HypervisorKind__Output);
  'cloudHypervisor': (_vfiod_v1_CloudHypervisorConfig__Output | null);
  'qemu': (_vfiod_v1_QemuConfig__Output | null);
  'warnings': (string)[];
  /**
   * when prepare_devices was set
   */
  'prepared': (_vfiod_v1_PrepareDeviceResult__Output)[];
  'pciWindow': (_vfiod_v1_PciWindowInfo__Output | null);
  /**
   * PCI device id -> how the VMM opens it
   */
  'vfioBackends': ({[key: string]: _vfiod_v1_VfioBackend__Output});
}
