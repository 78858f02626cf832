// Original file: proto/vfiod/v1/devices.proto

export const ClaimMode = {
  CLAIM_MODE_UNSPECIFIED: 'CLAIM_MODE_UNSPECIFIED',
  /**
   * vfiod bound it to vfio-pci and restores the original driver on release
   */
  CLAIM_MODE_VFIO_PCI: 'CLAIM_MODE_VFIO_PCI',
  /**
   * already on a (vendor) VFIO driver; left alone
   */
  CLAIM_MODE_AS_IS: 'CLAIM_MODE_AS_IS',
} as const;

export type ClaimMode =
  | 'CLAIM_MODE_UNSPECIFIED'
  | 0
  /**
   * vfiod bound it to vfio-pci and restores the original driver on release
   */
  | 'CLAIM_MODE_VFIO_PCI'
  | 1
  /**
   * already on a (vendor) VFIO driver; left alone
   */
  | 'CLAIM_MODE_AS_IS'
  | 2

export type ClaimMode__Output = typeof ClaimMode[keyof typeof ClaimMode]
