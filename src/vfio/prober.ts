/**
 * The passthrough manager's proof that a prepared device is usable through VFIO: open it through the backend the
 * host has (iommufd + cdev: bind, IOAS, attach; group: legacy container + group, viability, IOMMU model, device fd),
 * enumerate regions and irqs, report the reset capability and the backend used, and close everything again (the
 * device stays bound to vfio-pci). No VMM may hold the device while this runs: a held group fails with EBUSY on
 * open (legacy) and a held cdev/group fails with EBUSY on bind (iommufd).
 *
 * Implements `VfioProber` of src/devices/probe.ts. Errors are thrown with errno/code/syscall from the addon and the
 * BDF / group / region in the message (see src/vfio/errors.ts).
 */
import type {
  VfioProbeIrq as ManagerProbeIrq,
  VfioProbeRegion as ManagerProbeRegion,
  VfioProbeResult as ManagerProbeResult,
  VfioProber,
} from '../devices/probe.js';
import {
  openVfioDevice,
  type IommufdHwInfo,
  type OpenDeviceOptions,
  type VfioBackend,
  type VfioIrqInfo,
  type VfioRegionInfo,
} from './index.js';

export type { VfioProber };

/** The manager's region (index, size, flags) plus what VFIO says about mapping it. */
export interface VfioProbeRegion extends ManagerProbeRegion {
  offset: number;
  readable: boolean;
  writable: boolean;
  mmap: boolean;
  /** Mappable parts (sparse mmap capability), offsets relative to the region. */
  sparseMmap?: Array<{ offset: number; size: number }>;
  type?: { type: number; subtype: number };
  msixMappable: boolean;
}

export interface VfioProbeIrq extends ManagerProbeIrq {
  eventfd: boolean;
  maskable: boolean;
}

/** The manager's result (groupViable, regions, irqs, resetSupported) plus details for logs and the CLI. */
export interface VfioProbeResult extends ManagerProbeResult {
  regions: VfioProbeRegion[];
  irqs: VfioProbeIrq[];
  bdf: string;
  /** Which VFIO API opened the device. */
  backend: VfioBackend;
  /** IOMMU group number (null: sysfs has none, iommufd only). */
  group: number | null;
  /** group: IOMMU model set on the container (3 = TYPE1v2, 1 = TYPE1). */
  iommuType?: number;
  /** iommufd: the cdev, the device id in the iommufd, the IOAS and hw pagetable ids, and the IOMMU behind it. */
  iommufd?: { cdev: string; devId: number; ioasId: number; hwptId: number; hwInfo: IommufdHwInfo | null };
  /** VFIO_DEVICE_GET_INFO flags. */
  deviceFlags: number;
  numRegions: number;
  numIrqs: number;
  /** Vendor/device id from config space (through the device fd). */
  vendorId: number;
  deviceId: number;
  /** Milliseconds the probe took. */
  durationMs: number;
}

const num = (v: number | bigint): number => (typeof v === 'number' ? v : Number(v));

function region(info: VfioRegionInfo): VfioProbeRegion {
  const out: VfioProbeRegion = {
    index: info.index,
    size: num(info.size),
    offset: num(info.offset),
    flags: info.flags,
    readable: info.readable,
    writable: info.writable,
    mmap: info.mmap,
    msixMappable: info.msixMappable,
  };
  if (info.sparseMmap) out.sparseMmap = info.sparseMmap.map((a) => ({ offset: num(a.offset), size: num(a.size) }));
  if (info.type) out.type = { ...info.type };
  return out;
}

function irq(info: VfioIrqInfo): VfioProbeIrq {
  return { index: info.index, count: info.count, flags: info.flags, eventfd: info.eventfd, maskable: info.maskable };
}

/** IOMMU_GET_HW_INFO is informative: a kernel or IOMMU driver without it must not fail the probe. */
function hwInfoOf(iommufd: { hwInfo(devId: number): IommufdHwInfo }, devId: number): IommufdHwInfo | null {
  try {
    return iommufd.hwInfo(devId);
  } catch {
    return null;
  }
}

/** Opens the device through the native addon and reports what VFIO says about it. */
export class NativeVfioProber implements VfioProber {
  /**
   * `sysfsRoot` / `devRoot` default to '/sys' and '/dev', `backend` to 'auto'. Regions and irqs of size/count 0 are
   * left out.
   */
  constructor(private readonly options: OpenDeviceOptions = {}) {}

  async probe(bdf: string): Promise<VfioProbeResult> {
    return this.probeSync(bdf);
  }

  probeSync(bdf: string): VfioProbeResult {
    const started = performance.now();
    const opened = openVfioDevice(bdf, this.options);
    try {
      const { device } = opened;
      const info = device.info();
      const regions = device.regions().filter((r) => num(r.size) > 0).map(region);
      const irqs = device.irqs().filter((i) => i.count > 0).map(irq);
      let vendorId = 0xffff;
      let deviceId = 0xffff;
      if (info.pci) {
        vendorId = device.readConfig16(0x00);
        deviceId = device.readConfig16(0x02);
      }
      const backendFacts =
        opened.backend === 'group'
          ? { groupViable: opened.group.status().viable, iommuType: opened.iommuType }
          : {
              // the kernel binds a cdev only when every device in the group is on a VFIO driver or none
              groupViable: true,
              iommufd: {
                cdev: opened.cdev,
                devId: opened.devId,
                ioasId: opened.ioas.id,
                hwptId: opened.hwptId,
                hwInfo: hwInfoOf(opened.iommufd, opened.devId),
              },
            };
      return {
        bdf,
        backend: opened.backend,
        group: opened.groupNumber,
        ...backendFacts,
        deviceFlags: info.flags,
        resetSupported: info.reset,
        numRegions: info.numRegions,
        numIrqs: info.numIrqs,
        regions,
        irqs,
        vendorId,
        deviceId,
        durationMs: performance.now() - started,
      };
    } finally {
      opened.close();
    }
  }
}
