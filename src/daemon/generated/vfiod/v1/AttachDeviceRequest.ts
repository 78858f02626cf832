// Original file: proto/vfiod/v1/attachments.proto

import type { HypervisorEndpoint as _vfiod_v1_HypervisorEndpoint, HypervisorEndpoint__Output as _vfiod_v1_HypervisorEndpoint__Output } from '../../vfiod/v1/HypervisorEndpoint.js';
import type { DeviceSource as _vfiod_v1_DeviceSource, DeviceSource__Output as _vfiod_v1_DeviceSource__Output } from '../../vfiod/v1/DeviceSource.js';
import type { VfioBackend as _vfiod_v1_VfioBackend, VfioBackend__Output as _vfiod_v1_VfioBackend__Output } from '../../vfiod/v1/VfioBackend.js';

export interface AttachDeviceRequest {
  'vmId'?: (string);
  'endpoint'?: (_vfiod_v1_HypervisorEndpoint | null);
  'source'?: (_vfiod_v1_DeviceSource | null);
  /**
   * VMM device id; default derived from the source
   */
  'deviceId'?: (string);
  /**
   * QEMU only (cloud-hypervisor hot-plug has no boot order)
   */
  'bootIndex'?: (number);
  /**
   * cloud-hypervisor: behind the virtual IOMMU
   */
  'iommu'?: (boolean);
  /**
   * cloud-hypervisor
   */
  'pciSegment'?: (number);
  /**
   * cloud-hypervisor x_nv_gpudirect_clique
   */
  'gpudirectClique'?: (number);
  /**
   * prepare although in use on the host
   */
  'force'?: (boolean);
  /**
   * per VMM call and confirmation (default 10000)
   */
  'timeoutMs'?: (number);
  /**
   * AIP-155: a UUID chosen by the client; retries send the same
   */
  'requestId'?: (string);
  /**
   * answer once the operation is done
   */
  'wait'?: (boolean);
  /**
   * PCI: group or iommufd (UNSPECIFIED: auto)
   */
  'vfioBackend'?: (_vfiod_v1_VfioBackend);
  '_bootIndex'?: "bootIndex";
  '_gpudirectClique'?: "gpudirectClique";
}

export interface AttachDeviceRequest__Output {
  'vmId': (string);
  'endpoint': (_vfiod_v1_HypervisorEndpoint__Output | null);
  'source': (_vfiod_v1_DeviceSource__Output | null);
  /**
   * VMM device id; default derived from the source
   */
  'deviceId': (string);
  /**
   * QEMU only (cloud-hypervisor hot-plug has no boot order)
   */
  'bootIndex'?: (number);
  /**
   * cloud-hypervisor: behind the virtual IOMMU
   */
  'iommu': (boolean);
  /**
   * cloud-hypervisor
   */
  'pciSegment': (number);
  /**
   * cloud-hypervisor x_nv_gpudirect_clique
   */
  'gpudirectClique'?: (number);
  /**
   * prepare although in use on the host
   */
  'force': (boolean);
  /**
   * per VMM call and confirmation (default 10000)
   */
  'timeoutMs': (number);
  /**
   * AIP-155: a UUID chosen by the client; retries send the same
   */
  'requestId': (string);
  /**
   * answer once the operation is done
   */
  'wait': (boolean);
  /**
   * PCI: group or iommufd (UNSPECIFIED: auto)
   */
  'vfioBackend': (_vfiod_v1_VfioBackend__Output);
  '_bootIndex'?: "bootIndex";
  '_gpudirectClique'?: "gpudirectClique";
}
