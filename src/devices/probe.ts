/**
 * The contract between the passthrough manager (src/devices) and the native VFIO code (src/vfio).
 * Prepare calls `probe(bdf)` after binding to prove the device is usable through VFIO: the group (or cdev) opens,
 * the group is viable, the device fd is obtained, its regions are enumerated and its reset capability is known.
 * Production uses the implementation in src/vfio/prober.ts (over the native addon); unit tests supply a fake that
 * reads the fake sysfs tree.
 */
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
  /** How the device was opened: iommufd + VFIO cdev, or the legacy container/group (absent: the prober did not say). */
  backend?: 'iommufd' | 'legacy';
}

export interface VfioProber {
  /** Opens the device through VFIO, collects the facts above and closes everything again. Rejects when it cannot. */
  probe(bdf: string): Promise<VfioProbeResult>;
}

/** Options the production prober is created with (src/vfio/prober.ts exports `createVfioProber(options)`). */
export interface VfioProberOptions {
  sysfsRoot: string;
  devRoot: string;
  /** 'auto' (default): iommufd + cdev when the host has /dev/iommu and the device a cdev, else container/group. */
  backend?: 'auto' | 'iommufd' | 'legacy';
}

/**
 * Loads the production prober from src/vfio/prober.js. The module is written by the native side; a variable
 * specifier keeps this file compiling before it exists. Rejects with a clear message when it is missing.
 */
export async function loadNativeProber(options: VfioProberOptions): Promise<VfioProber> {
  const specifier = '../vfio/prober.js';
  let mod: Record<string, unknown>;
  try {
    mod = (await import(specifier)) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`the native VFIO prober (src/vfio/prober.ts) is not available: ${(error as Error).message}`);
  }
  const factory = mod['createVfioProber'];
  if (typeof factory === 'function') return (factory as (o: VfioProberOptions) => VfioProber)(options);
  const Ctor = mod['NativeVfioProber'];
  if (typeof Ctor === 'function') return new (Ctor as new (o: VfioProberOptions) => VfioProber)(options);
  throw new Error('src/vfio/prober.js exports neither createVfioProber() nor NativeVfioProber');
}
