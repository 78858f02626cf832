/**
 * Typed wrapper over the addon's VFIO ioctls (see docs/vfio.md). Two backends give the same `VfioDevice`
 * (device.ts), each with its DMA space (dma.ts):
 *
 * - iommufd + VFIO cdev (Linux >= 6.2 with CONFIG_IOMMUFD / CONFIG_VFIO_DEVICE_CDEV): the device's
 *   /dev/vfio/devices/vfioN is bound to an `Iommufd` (/dev/iommu) and attached to an `IommufdIoas`, which maps DMA
 *   (iommufd.ts).
 * - legacy container/group: `VfioContainer` (/dev/vfio/vfio, type1 IOMMU, maps DMA) + `VfioGroup` (/dev/vfio/<n>)
 *   (legacy.ts).
 *
 * This file opens a device by its PCI address, and is the folder's face (it re-exports the pieces):
 * `openVfioDevice(bdf, { backend: 'auto' | 'iommufd' | 'group' })` finds the cdev or group in sysfs and does all
 * of the above (auto: iommufd when /dev/iommu and the device's cdev exist); the handle's close() closes it again.
 * Every error from the addon is re-thrown with the BDF (and region/irq index) in its message and as `bdf` /
 * `region` / `irq` properties; errno, code and syscall are kept (errors.ts).
 */
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';

import { native } from '../native/index.js';
import { isVfioBackendChoice, VFIO_BACKEND_CHOICES, type VfioBackend, type VfioBackendChoice } from '../util/vfio-backend.js';
import { VfioDevice } from './device.js';
import type { VfioDmaSpace } from './dma.js';
import { assertBdf, withContext, type VfioError } from './errors.js';
import { Iommufd, type IommufdIoas } from './iommufd.js';
import { VfioContainer, VfioGroup } from './legacy.js';

export type {
  IommufdHwInfo,
  IommufdIovaRanges,
  VfioDeviceInfo,
  VfioGroupStatus,
  VfioIommuInfo,
  VfioIrqInfo,
  VfioRegionInfo,
} from '../native/index.js';
export { VfioDevice, type RegionMapOptions } from './device.js';
export type { DmaMapOptions, VfioDmaSpace } from './dma.js';
export { assertBdf, type VfioError } from './errors.js';
export { Iommufd, IommufdIoas } from './iommufd.js';
export { VfioContainer, VfioGroup, type GroupOpenOptions } from './legacy.js';

// How a device is opened: iommufd + cdev, or its group in the legacy container ('group'); 'auto' here is
// chooseVfioBackend's rule (iommufd when the host has it), not the hypervisor one.
export type { VfioBackend, VfioBackendChoice };

export interface OpenDeviceOptions {
  /** Default 'auto': iommufd when `<devRoot>/iommu` and the device's VFIO cdev exist, else the group. */
  backend?: VfioBackendChoice;
  /** Root of sysfs (tests); default '/sys'. */
  sysfsRoot?: string;
  /** Root of /dev (tests); default '/dev'. */
  devRoot?: string;
  /** The container device; default '<devRoot>/vfio/vfio'. */
  containerPath?: string;
  /** The iommufd device; default '<devRoot>/iommu'. */
  iommufdPath?: string;
}

interface OpenedCommon {
  device: VfioDevice;
  /** Where to map DMA for the device: the IOAS or the container. */
  dma: VfioDmaSpace;
  /** Closes everything this open made (idempotent). */
  close(): void;
}

export interface LegacyOpenedVfioDevice extends OpenedCommon {
  backend: 'group';
  container: VfioContainer;
  group: VfioGroup;
  groupNumber: number;
  iommuType: number;
}

export interface IommufdOpenedVfioDevice extends OpenedCommon {
  backend: 'iommufd';
  iommufd: Iommufd;
  ioas: IommufdIoas;
  /** /dev/vfio/devices/vfioN */
  cdev: string;
  /** The device's id in the iommufd (VFIO_DEVICE_BIND_IOMMUFD). */
  devId: number;
  /** The hw pagetable the kernel made for the IOAS when the device was attached. */
  hwptId: number;
  /** IOMMU group from sysfs, for reports (null when sysfs has none). */
  groupNumber: number | null;
}

export type OpenedVfioDevice = LegacyOpenedVfioDevice | IommufdOpenedVfioDevice;

/** The IOMMU group number of `bdf` from sysfs (`iommu_group` link). */
export function iommuGroupOf(bdf: string, sysfsRoot = '/sys'): number {
  assertBdf(bdf);
  const link = path.join(sysfsRoot, 'bus', 'pci', 'devices', bdf, 'iommu_group');
  let target: string;
  try {
    target = readlinkSync(link);
  } catch (error) {
    const e = error as VfioError;
    e.message = `${bdf}: no IOMMU group (${e.message})`;
    e.bdf = bdf;
    throw e;
  }
  // Decimal digits only: Number() would also take '', '0x1f' or '1e3' and name a different group.
  const name = path.basename(target);
  const group = /^\d+$/.test(name) ? Number(name) : NaN;
  if (!Number.isSafeInteger(group)) throw Object.assign(new Error(`${bdf}: unexpected iommu_group link ${target}`), { bdf });
  return group;
}

/**
 * The VFIO device cdev of `bdf` (`<devRoot>/vfio/devices/vfioN`, named by sysfs `vfio-dev/vfioN`), or undefined when
 * the kernel made none (no CONFIG_VFIO_DEVICE_CDEV, or not on a VFIO driver).
 */
export function vfioCdevOf(bdf: string, options: { sysfsRoot?: string; devRoot?: string } = {}): string | undefined {
  assertBdf(bdf);
  let names: string[];
  try {
    names = readdirSync(path.join(options.sysfsRoot ?? '/sys', 'bus', 'pci', 'devices', bdf, 'vfio-dev'));
  } catch {
    return undefined;
  }
  const name = names.find((n) => /^vfio\d+$/.test(n));
  return name === undefined ? undefined : path.join(options.devRoot ?? '/dev', 'vfio', 'devices', name);
}

/**
 * The backend 'auto' picks for `bdf`: iommufd when the iommufd device node and the device's cdev node both exist,
 * else the group. Presence only: a failure while opening is reported, never papered over by the other backend.
 */
export function chooseVfioBackend(bdf: string, options: OpenDeviceOptions = {}): VfioBackend {
  const choice = options.backend ?? 'auto';
  if (choice !== 'auto') return choice;
  const devRoot = options.devRoot ?? '/dev';
  const cdev = vfioCdevOf(bdf, options);
  return existsSync(options.iommufdPath ?? path.join(devRoot, 'iommu')) && cdev !== undefined && existsSync(cdev)
    ? 'iommufd'
    : 'group';
}

export function openVfioDevice(bdf: string, options: OpenDeviceOptions & { backend: 'group' }): LegacyOpenedVfioDevice;
export function openVfioDevice(bdf: string, options: OpenDeviceOptions & { backend: 'iommufd' }): IommufdOpenedVfioDevice;
export function openVfioDevice(bdf: string, options?: OpenDeviceOptions): OpenedVfioDevice;
/** Opens `bdf` through the chosen backend; on any failure everything opened so far is closed again. */
export function openVfioDevice(bdf: string, options: OpenDeviceOptions = {}): OpenedVfioDevice {
  assertBdf(bdf);
  const backend = options.backend ?? 'auto';
  if (!isVfioBackendChoice(backend)) {
    throw Object.assign(new TypeError(`${bdf}: unknown VFIO backend ${JSON.stringify(backend)} (${VFIO_BACKEND_CHOICES.join(', ')})`), {
      code: 'ERR_INVALID_ARG_VALUE',
      bdf,
    });
  }
  return chooseVfioBackend(bdf, options) === 'iommufd' ? openThroughIommufd(bdf, options) : openThroughGroup(bdf, options);
}

/** Container + group (viability checked) + IOMMU model + device fd. */
function openThroughGroup(bdf: string, options: OpenDeviceOptions): LegacyOpenedVfioDevice {
  const groupNumber = iommuGroupOf(bdf, options.sysfsRoot);
  const devRoot = options.devRoot ?? '/dev';
  const container = withContext({ bdf }, () =>
    VfioContainer.open(options.containerPath ?? path.join(devRoot, 'vfio', 'vfio')),
  );
  let group: VfioGroup | undefined;
  try {
    group = withContext({ bdf }, () => VfioGroup.open(groupNumber, { devRoot }));
    withContext({ bdf }, () => group!.setContainer(container));
    const iommuType = withContext({ bdf }, () => container.setIommu());
    const device = group.openDevice(bdf);
    const g = group;
    return {
      backend: 'group',
      container,
      dma: container,
      group: g,
      device,
      groupNumber,
      iommuType,
      close() {
        device.close();
        g.close();
        container.close();
      },
    };
  } catch (error) {
    group?.close();
    container.close();
    throw error;
  }
}

/**
 * cdev + iommufd: open /dev/vfio/devices/vfioN, bind it to a new iommufd (the kernel checks the group is viable and
 * not open through the legacy API: EBUSY otherwise), allocate an IOAS and attach the device to it.
 */
function openThroughIommufd(bdf: string, options: OpenDeviceOptions): IommufdOpenedVfioDevice {
  const devRoot = options.devRoot ?? '/dev';
  const cdev = vfioCdevOf(bdf, options);
  if (cdev === undefined) {
    throw Object.assign(
      new Error(`${bdf}: no VFIO cdev (no vfio-dev/ in sysfs: not on a VFIO driver, or the kernel lacks CONFIG_VFIO_DEVICE_CDEV)`),
      { code: 'ENOENT', bdf },
    );
  }
  let groupNumber: number | null = null;
  try {
    groupNumber = iommuGroupOf(bdf, options.sysfsRoot);
  } catch {
    /* reported as null; the kernel checks the group itself when binding */
  }
  const fd = withContext({ bdf }, () => native.vfioOpenDeviceCdev(cdev));
  let iommufd: Iommufd | undefined;
  let device: VfioDevice | undefined;
  try {
    iommufd = withContext({ bdf }, () => Iommufd.open(options.iommufdPath ?? path.join(devRoot, 'iommu')));
    const devId = withContext({ bdf }, () => {
      try {
        return native.vfioDeviceBindIommufd(fd, iommufd!.fd);
      } catch (error) {
        // the kernel's errno alone does not say that someone else has the device
        const e = error as VfioError;
        if (e.code === 'EINVAL') e.message += ' (the device is already bound through another open of its cdev: a VMM may hold it)';
        if (e.code === 'EBUSY') e.message += ' (its IOMMU group is open through the legacy API, or not viable)';
        throw e;
      }
    });
    const ioas = withContext({ bdf }, () => iommufd!.allocIoas());
    const hwptId = withContext({ bdf }, () => native.vfioDeviceAttachIommufdPt(fd, ioas.id));
    device = new VfioDevice(fd, bdf, () => {});
    const d = device;
    const fdHolder = iommufd;
    return {
      backend: 'iommufd',
      iommufd: fdHolder,
      ioas,
      dma: ioas,
      cdev,
      devId,
      hwptId,
      groupNumber,
      device: d,
      close() {
        d.close(); // unbinds the device from the iommufd
        fdHolder.close();
      },
    };
  } catch (error) {
    if (device) device.close();
    else native.close(fd);
    iommufd?.close();
    throw error;
  }
}
