// Original file: proto/vfiod/v1/attachments.proto

export const HypervisorKind = {
  HYPERVISOR_KIND_UNSPECIFIED: 'HYPERVISOR_KIND_UNSPECIFIED',
  HYPERVISOR_KIND_CLOUD_HYPERVISOR: 'HYPERVISOR_KIND_CLOUD_HYPERVISOR',
  HYPERVISOR_KIND_QEMU: 'HYPERVISOR_KIND_QEMU',
} as const;

export type HypervisorKind =
  | 'HYPERVISOR_KIND_UNSPECIFIED'
  | 0
  | 'HYPERVISOR_KIND_CLOUD_HYPERVISOR'
  | 1
  | 'HYPERVISOR_KIND_QEMU'
  | 2

export type HypervisorKind__Output = typeof HypervisorKind[keyof typeof HypervisorKind]
