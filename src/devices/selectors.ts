/** Selecting devices: BDF list, vendor:device, class, PF (its VFs), NUMA node, only free ones. All given criteria must match. */
import type { DeviceKind, PciDevice } from './discovery.js';
import { normalizeBdf } from '../util/pci-address.js';

export interface DeviceSelector {
  bdfs?: string[];
  /** "15b3:6001"; "15b3:" or "15b3" matches a vendor. */
  ids?: string[];
  classes?: DeviceKind[];
  /** PF BDFs: matches their VFs. */
  pfs?: string[];
  /** Not claimed, not a bridge, has an IOMMU group and is not in use on the host. */
  free?: boolean;
  /** On this NUMA node; -1: devices sysfs places on none (numa_node -1). */
  numaNode?: number;
}

export const DEVICE_KINDS: DeviceKind[] = ['nvme', 'display', 'network', 'audio', 'bridge', 'other'];

export function parseId(text: string): { vendor: string; device: string | null } | undefined {
  const m = /^([0-9a-f]{4})(?::([0-9a-f]{4})?)?$/i.exec(text.trim());
  return m ? { vendor: m[1]!.toLowerCase(), device: m[2]?.toLowerCase() ?? null } : undefined;
}

export function selectDevices(devices: PciDevice[], selector: DeviceSelector, claimed: ReadonlySet<string> = new Set()): PciDevice[] {
  const bdfs = selector.bdfs?.length ? new Set(selector.bdfs.map((b) => normalizeBdf(b) ?? b)) : undefined;
  const ids = selector.ids?.map((i) => parseId(i)).filter((i) => i !== undefined);
  const pfs = selector.pfs?.length ? new Set(selector.pfs.map((b) => normalizeBdf(b) ?? b)) : undefined;
  return devices.filter((d) => {
    if (bdfs && !bdfs.has(d.bdf)) return false;
    if (ids?.length && !ids.some((i) => i.vendor === d.vendor && (i.device === null || i.device === d.device))) return false;
    if (selector.classes?.length && !selector.classes.includes(d.kind)) return false;
    if (pfs && (d.physfn === null || !pfs.has(d.physfn))) return false;
    if (selector.numaNode !== undefined && (d.numaNode ?? -1) !== selector.numaNode) return false;
    if (selector.free) {
      if (claimed.has(d.bdf) || d.kind === 'bridge' || d.iommuGroup === null || d.hostUse.some((u) => u.blocking)) return false;
    }
    return true;
  });
}
