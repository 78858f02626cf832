/**
 * The contract between the passthrough manager (src/devices) and the native VFIO code (src/vfio).
 * Prepare calls `probe(bdf)` after binding to prove the device is usable through VFIO: the group (or cdev) opens,
 * the group is viable, the device fd is obtained, its regions are enumerated and its reset capability is known.
 * The manager is given its prober: production callers (the daemon, the devices CLI, the bench) create
 * `NativeVfioProber` of src/vfio/prober.ts (over the native addon); unit tests supply a fake that reads the fake sysfs
 * tree. src/vfio implements this file, so it imports nothing from there (src/devices must not reach up into src/vfio);
 * the backend words come from src/util, which both share.
 */
import type { VfioBackend } from '../util/vfio-backend.js';

export interface VfioProbeRegion {
  /** VFIO region index (0-5 BARs, 6 ROM, 7 config, 8 VGA, ...). */
  index: number;
  size: number;
  /** VFIO_REGION_INFO_FLAG_* bits. */
  flags: number;
}

export interface VfioProbeIrq {
  /** VFIO irq index (0 INTx, 1 MSI, 2 MSI-X, 3 ERR, 4 REQ). */
  index: number;
  count: number;
  flags: number;
}

export interface VfioProbeResult {
  /** VFIO_GROUP_GET_STATUS reported VFIO_GROUP_FLAGS_VIABLE (or the cdev bound to an iommufd, which implies it). */
  groupViable: boolean;
  regions: VfioProbeRegion[];
  irqs: VfioProbeIrq[];
  /** VFIO_DEVICE_FLAGS_RESET: the device has a usable reset (FLR, PM or bus reset). */
  resetSupported: boolean;
  /** How the device was opened: iommufd + VFIO cdev, or its group in the legacy container (absent: the prober did not say). */
  backend?: VfioBackend;
}

export interface VfioProber {
  /** Opens the device through VFIO, collects the facts above and closes everything again. Rejects when it cannot. */
  probe(bdf: string): Promise<VfioProbeResult>;
}
