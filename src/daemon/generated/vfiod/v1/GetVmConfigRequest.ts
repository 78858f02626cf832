// Original file: proto/vfiod/v1/attachments.proto

import type { HypervisorKind as _vfiod_v1_HypervisorKind, HypervisorKind__Output as _vfiod_v1_HypervisorKind__Output } from '../../vfiod/v1/HypervisorKind.js';
import type { VmDevice as _vfiod_v1_VmDevice, VmDevice__Output as _vfiod_v1_VmDevice__Output } from '../../vfiod/v1/VmDevice.js';

export interface GetVmConfigRequest {
  'hypervisor'?: (_vfiod_v1_HypervisorKind);
  'devices'?: (_vfiod_v1_VmDevice)[];
  'vmId'?: (string);
  /**
   * QEMU: guest RAM ("4G"); emits the shared memory backend vfio-user needs
   */
  'memorySize'?: (string);
  /**
   * QEMU: chassis of the first pcie-root-port (default 32)
   */
  'firstChassis'?: (number);
  /**
   * also prepare the PCI devices for vm_id (rolled back if any fails)
   */
  'prepareDevices'?: (boolean);
  /**
   * Place each PCI device on the guest NUMA node numbered like its host node (sysfs numa_node): QEMU pxb-pcie with
   * numa_node, cloud-hypervisor a PCI segment per node named by NumaConfig.pci_segments.
   */
  'numaPlacement'?: (boolean);
}

export interface GetVmConfigRequest__Output {
  'hypervisor': (_vfiod_v1_HypervisorKind__Output);
  'devices': (_vfiod_v1_VmDevice__Output)[];
  'vmId': (string);
  /**
   * QEMU: guest RAM ("4G"); emits the shared memory backend vfio-user needs
   */
  'memorySize': (string);
  /**
   * QEMU: chassis of the first pcie-root-port (default 32)
   */
  'firstChassis': (number);
  /**
   * also prepare the PCI devices for vm_id (rolled back if any fails)
   */
  'prepareDevices': (boolean);
  /**
   * Place each PCI device on the guest NUMA node numbered like its host node (sysfs numa_node): QEMU pxb-pcie with
   * numa_node, cloud-hypervisor a PCI segment per node named by NumaConfig.pci_segments.
   */
  'numaPlacement': (boolean);
}
