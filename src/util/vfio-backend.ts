/**
 * The words for how a PCI function is opened through VFIO: through its IOMMU group (`/dev/vfio/<group>` with the
 * legacy type1 container) or through iommufd (`/dev/iommu` plus the function's VFIO cdev `/dev/vfio/devices/vfioN`).
 * The one definition: vfiod's own opens (src/vfio), its prober's report (src/devices) and what it tells a VMM
 * (src/hypervisor) all say the same thing with the words the control API (VFIO_BACKEND_GROUP / _IOMMUFD), the CLI
 * (--vfio-backend) and static configurations use. What 'auto' resolves to is each caller's rule, not defined here.
 */

/** A backend a function is actually opened through. */
export type VfioBackend = 'group' | 'iommufd';
/** A backend as asked for: one of the two, or 'auto' (the caller's rule picks). */
export type VfioBackendChoice = VfioBackend | 'auto';
export const VFIO_BACKEND_CHOICES: readonly VfioBackendChoice[] = ['auto', 'iommufd', 'group'];

export function isVfioBackendChoice(value: unknown): value is VfioBackendChoice {
  return typeof value === 'string' && (VFIO_BACKEND_CHOICES as readonly string[]).includes(value);
}
