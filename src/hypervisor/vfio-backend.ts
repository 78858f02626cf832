/**
 * How a VMM opens a passed-through PCI function: through its IOMMU group (`/dev/vfio/<group>`, the legacy VFIO
 * container) or through iommufd (`/dev/iommu` plus the device's VFIO cdev `/dev/vfio/devices/vfioN`). Pure: the host
 * facts come in as arguments (src/devices reads them from sysfs).
 *
 * The rule (docs/hypervisors.md, "VFIO backend: group or iommufd"):
 * - `auto` (the default) takes iommufd only where the group cannot serve: a device on a vendor VFIO driver (NVIDIA
 *   vGPU VFs on `nvidia`: vfiod never rebinds them, their VFIO interface is the cdev) or one with a cdev and no group
 *   node. Everything else keeps the group, which every VMM vfiod drives can open (QEMU >= 9.0 is needed for iommufd,
 *   and a static configuration cannot know the QEMU version it will be given to).
 * - `iommufd` asks for it: the device needs a cdev and the host `/dev/iommu`.
 * - `group` asks for the group: refused for a vendor VFIO driver and for a device without a group node.
 * cloud-hypervisor v48 opens devices through their group only (DeviceConfig has no iommufd or cdev field): iommufd
 * there is refused with the reason.
 */
import { VfiodError } from '../util/errors.js';
import type { HypervisorKind } from './types.js';

export type VfioBackend = 'iommufd' | 'group';
export type VfioBackendChoice = VfioBackend | 'auto';
export const VFIO_BACKEND_CHOICES: readonly VfioBackendChoice[] = ['auto', 'iommufd', 'group'];

/** What the host says about one PCI function's VFIO interfaces (src/devices: DeviceManager.vfioFacts). */
export interface VfioFacts {
  /** /dev/vfio/devices/vfioN when the function has a VFIO cdev (sysfs vfio-dev/). */
  cdev: string | null;
  /** /dev/vfio/<group> exists. */
  groupNode: boolean;
  /** The driver when it is a VFIO driver other than vfio-pci (vendor VFIO, never rebound); null otherwise. */
  vendorDriver: string | null;
  /** The host has /dev/iommu (a kernel with CONFIG_IOMMUFD). */
  iommufdHost: boolean;
}

/** The id of the one iommufd object vfiod adds to a QEMU VM; every device vfiod gives it through iommufd shares it. */
export const QEMU_IOMMUFD_OBJECT_ID = 'vfiod-iommufd0';

/** The sysfs path QEMU (sysfsdev=) and cloud-hypervisor (DeviceConfig.path) find a host function by. */
export function hostSysfsPath(bdf: string): string {
  return `/sys/bus/pci/devices/${bdf}`;
}

export function checkVfioBackendChoice(choice: unknown, context: string): VfioBackendChoice {
  if (choice === undefined) return 'auto';
  if (typeof choice === 'string' && (VFIO_BACKEND_CHOICES as readonly string[]).includes(choice)) return choice as VfioBackendChoice;
  throw new VfiodError('INVALID_ARGUMENT', `${context}: VFIO backend ${JSON.stringify(choice)} must be one of ${VFIO_BACKEND_CHOICES.join(', ')}`, {
    reason: 'FIELD_INVALID',
    field: 'vfio_backend',
  });
}

/**
 * The backend `choice` resolves to for the function `bdf` under `hypervisor`, or the precise refusal. Without facts
 * (a configuration built for another host) `auto` means the group and an explicit choice is taken as given.
 */
export function resolveVfioBackend(choice: VfioBackendChoice, bdf: string, facts: VfioFacts | undefined, hypervisor: HypervisorKind, context: string): VfioBackend {
  const needsIommufd = facts !== undefined && (facts.vendorDriver !== null || (facts.cdev !== null && !facts.groupNode));
  const why = facts?.vendorDriver ? `it is on the vendor VFIO driver ${facts.vendorDriver}, which vfiod never rebinds` : 'it has a VFIO cdev and no group node';
  if (choice === 'group' && needsIommufd) {
    throw new VfiodError('FAILED_PRECONDITION', `${context}: ${bdf} cannot be given through its VFIO group: ${why}; it is attached through iommufd`, {
      reason: 'VFIO_GROUP_UNAVAILABLE',
      bdf,
    });
  }
  const backend: VfioBackend = choice === 'iommufd' || needsIommufd ? 'iommufd' : 'group';
  if (backend === 'group') return backend;
  if (hypervisor === 'cloud-hypervisor') {
    throw new VfiodError(
      'FAILED_PRECONDITION',
      `${context}: ${bdf} needs iommufd (${choice === 'iommufd' ? 'asked for' : why}), and cloud-hypervisor v48 opens VFIO devices through their IOMMU group only ` +
        '(DeviceConfig has a sysfs path and no iommufd, cdev or fd setting): give it to a QEMU VM (>= 9.0), or bind it to vfio-pci and use the group',
      { reason: 'VMM_CANNOT_USE_IOMMUFD', bdf },
    );
  }
  // Neither node: not on a VFIO driver yet (prepare binds it), nothing to tell. A group node without a cdev: the
  // kernel has no VFIO cdevs.
  if (facts && facts.cdev === null && facts.groupNode) {
    throw new VfiodError('FAILED_PRECONDITION', `${context}: ${bdf} has a VFIO group but no cdev (no vfio-dev/ in sysfs: kernel without CONFIG_VFIO_DEVICE_CDEV)`, {
      reason: 'IOMMUFD_UNAVAILABLE',
      bdf,
    });
  }
  if (facts && !facts.iommufdHost) {
    throw new VfiodError('FAILED_PRECONDITION', `${context}: ${bdf} needs iommufd and the host has no /dev/iommu (kernel without CONFIG_IOMMUFD)`, {
      reason: 'IOMMUFD_UNAVAILABLE',
      bdf,
    });
  }
  return backend;
}
