// Original file: proto/vfiod/v1/attachments.proto

/**
 * How the VMM opens a passed-through PCI function (docs/hypervisors.md, "VFIO backend: group or iommufd").
 */
export const VfioBackend = {
  /**
   * requests: auto (iommufd only for vendor VFIO drivers and cdev-only devices); answers: vfio-user
   */
  VFIO_BACKEND_UNSPECIFIED: 'VFIO_BACKEND_UNSPECIFIED',
  /**
   * its IOMMU group node, /dev/vfio/<group> (QEMU vfio-pci host=, cloud-hypervisor)
   */
  VFIO_BACKEND_GROUP: 'VFIO_BACKEND_GROUP',
  /**
   * iommufd (/dev/iommu) and its VFIO cdev (QEMU >= 9.0: -object iommufd, vfio-pci iommufd=,sysfsdev=)
   */
  VFIO_BACKEND_IOMMUFD: 'VFIO_BACKEND_IOMMUFD',
} as const;

/**
 * How the VMM opens a passed-through PCI function (docs/hypervisors.md, "VFIO backend: group or iommufd").
 */
export type VfioBackend =
  /**
   * requests: auto (iommufd only for vendor VFIO drivers and cdev-only devices); answers: vfio-user
   */
  | 'VFIO_BACKEND_UNSPECIFIED'
  | 0
  /**
   * its IOMMU group node, /dev/vfio/<group> (QEMU vfio-pci host=, cloud-hypervisor)
   */
  | 'VFIO_BACKEND_GROUP'
  | 1
  /**
   * iommufd (/dev/iommu) and its VFIO cdev (QEMU >= 9.0: -object iommufd, vfio-pci iommufd=,sysfsdev=)
   */
  | 'VFIO_BACKEND_IOMMUFD'
  | 2

/**
 * How the VMM opens a passed-through PCI function (docs/hypervisors.md, "VFIO backend: group or iommufd").
 */
export type VfioBackend__Output = typeof VfioBackend[keyof typeof VfioBackend]
