// Original file: proto/vfiod/v1/devices.proto

export const VfioState = {
  VFIO_STATE_UNSPECIFIED: 'VFIO_STATE_UNSPECIFIED',
  /**
   * bound to vfio-pci
   */
  VFIO_STATE_VFIO_PCI: 'VFIO_STATE_VFIO_PCI',
  /**
   * on a vendor VFIO driver (vfio-dev/ present): attachable as it is, never rebound
   */
  VFIO_STATE_VENDOR_VFIO: 'VFIO_STATE_VENDOR_VFIO',
  VFIO_STATE_HOST_DRIVER: 'VFIO_STATE_HOST_DRIVER',
  VFIO_STATE_UNBOUND: 'VFIO_STATE_UNBOUND',
  VFIO_STATE_BRIDGE: 'VFIO_STATE_BRIDGE',
  VFIO_STATE_NO_IOMMU: 'VFIO_STATE_NO_IOMMU',
} as const;

export type VfioState =
  | 'VFIO_STATE_UNSPECIFIED'
  | 0
  /**
   * bound to vfio-pci
   */
  | 'VFIO_STATE_VFIO_PCI'
  | 1
  /**
   * on a vendor VFIO driver (vfio-dev/ present): attachable as it is, never rebound
   */
  | 'VFIO_STATE_VENDOR_VFIO'
  | 2
  | 'VFIO_STATE_HOST_DRIVER'
  | 3
  | 'VFIO_STATE_UNBOUND'
  | 4
  | 'VFIO_STATE_BRIDGE'
  | 5
  | 'VFIO_STATE_NO_IOMMU'
  | 6

export type VfioState__Output = typeof VfioState[keyof typeof VfioState]
