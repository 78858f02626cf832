/**
 * How a VMM opens a passed-through PCI function: through its IOMMU group (`/dev/vfio/<group>`, the legacy VFIO
 * container) or through iommufd (`/dev/iommu` plus the device's VFIO cdev `/dev/vfio/devices/vfioN`). Pure: the host
 * facts come in as arguments (src/devices reads them from sysfs).
 *
 * The rule (docs/hypervisors.md, "VFIO backend: group or iommufd"):
 * - `auto` (the default): iommufd where the group cannot serve (a cdev and no group node), and on QEMU for a device
 *   on a vendor VFIO driver (NVIDIA vGPU VFs on `nvidia`: vfiod never rebinds them and the cdev is their VFIO
 *   interface) when the host has /dev/iommu. Everything else keeps the group, which every VMM vfiod drives can open
 *   (iommufd needs QEMU >= 9.0, and a static configuration cannot know the QEMU it will be given to). Vendor VFIO
 *   devices keep their group node too (libvirt's group-based hostdev works on them), so cloud-hypervisor, which has
 *   the group only, still takes them.
 * - `iommufd` asks for it: the device needs a cdev and the host /dev/iommu.
 * - `group` asks for the group: refused for a device with a cdev and no group node.
 * cloud-hypervisor v48 opens devices through their group only (DeviceConfig has no iommufd, cdev or fd field):
 * iommufd there is refused with the reason.
 */
import { VfiodError } from '../util/errors.js';
import { isVfioBackendChoice, VFIO_BACKEND_CHOICES, type VfioBackend, type VfioBackendChoice } from '../util/vfio-backend.js';
import type { HypervisorKind } from './types.js';

export { VFIO_BACKEND_CHOICES, type VfioBackend, type VfioBackendChoice };

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
/** How a device goes through `backend`, for messages: "iommufd" or "its VFIO group". */
export function describeVfioBackend(backend: VfioBackend): string {
  return backend === 'iommufd' ? 'iommufd' : 'its VFIO group';
}

export function hostSysfsPath(bdf: string): string {
  return `/sys/bus/pci/devices/${bdf}`;
}

export function checkVfioBackendChoice(choice: unknown, context: string): VfioBackendChoice {
  if (choice === undefined) return 'auto';
  if (isVfioBackendChoice(choice)) return choice;
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
  const cdevOnly = facts !== undefined && facts.cdev !== null && !facts.groupNode;
  if (choice === 'group' && cdevOnly) {
    throw new VfiodError('FAILED_PRECONDITION', `${context}: ${bdf} cannot be given through its VFIO group: it has a VFIO cdev and no group node (/dev/vfio/<group>); use iommufd`, {
      reason: 'VFIO_GROUP_UNAVAILABLE',
      bdf,
    });
  }
  const vendorOnQemu = hypervisor === 'qemu' && facts !== undefined && facts.vendorDriver !== null && facts.cdev !== null && facts.iommufdHost;
  const backend: VfioBackend = choice === 'iommufd' || (choice === 'auto' && (cdevOnly || vendorOnQemu)) ? 'iommufd' : 'group';
  if (backend === 'group') return backend;
  if (hypervisor === 'cloud-hypervisor') {
    throw new VfiodError(
      'FAILED_PRECONDITION',
      `${context}: ${bdf} needs iommufd (${choice === 'iommufd' ? 'asked for' : 'it has a VFIO cdev and no group node'}), and cloud-hypervisor v48 opens VFIO devices through their IOMMU group only ` +
        '(DeviceConfig has a sysfs path and no iommufd, cdev or fd setting): give it to a QEMU VM (>= 9.0), or bind it to vfio-pci with the group node present',
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

/** One PCI function of a QEMU VM whose backend is to be decided. */
export interface BackendRequest {
  id: string;
  bdf: string;
  choice: VfioBackendChoice;
  facts: VfioFacts | undefined;
}

/**
 * The backend of every PCI function given to one QEMU VM, all the same: QEMU 11.1.3 aborts when a VM has vfio-pci
 * devices on both (a VM started with one through iommufd and one through its group dies at start, "Object ... is not
 * an instance of type vfio-iommu-legacy"). Each function is decided alone first; then the VM's backend is the one of
 * the devices it already has (`existing`, hot-plug), else iommufd when any function needs it, else the group, and the
 * `auto` functions follow it where they can. A function that cannot (or was asked for the other one) is refused.
 */
export function resolveQemuVmBackends(functions: BackendRequest[], existing: { backend: VfioBackend; ids: string[] } | undefined, context: string): Record<string, VfioBackend> {
  const alone = new Map(functions.map((f) => [f.id, resolveVfioBackend(f.choice, f.bdf, f.facts, 'qemu', `${context}, device ${f.id}`)]));
  const target: VfioBackend = existing?.backend ?? ([...alone.values()].includes('iommufd') ? 'iommufd' : 'group');
  const result: Record<string, VfioBackend> = {};
  for (const f of functions) {
    let backend = alone.get(f.id)!;
    if (backend !== target && f.choice === 'auto') {
      try {
        backend = resolveVfioBackend(target, f.bdf, f.facts, 'qemu', context);
      } catch {
        // stays as it is: refused below
      }
    }
    if (backend !== target) {
      const others = existing ? existing.ids : functions.filter((o) => alone.get(o.id) === target).map((o) => o.id);
      throw new VfiodError(
        'FAILED_PRECONDITION',
        `${context}: ${f.id} (${f.bdf}) would go through ${describeVfioBackend(backend)} while ${others.join(', ')} ${others.length > 1 ? 'go' : 'goes'} through ` +
          `${target === 'iommufd' ? 'iommufd' : 'the group'}: QEMU cannot have VFIO devices on both in one VM (QEMU 11.1.3 aborts); give them the same vfio backend`,
        { reason: 'VFIO_BACKENDS_MIXED', bdf: f.bdf },
      );
    }
    result[f.id] = backend;
  }
  return result;
}
