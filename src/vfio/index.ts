/**
 * Typed wrapper over the addon's VFIO ioctls (legacy container/group API; see docs/vfio.md).
 *
 *   const container = VfioContainer.open();
 *   const group = VfioGroup.open(12);            // /dev/vfio/12
 *   group.setContainer(container);               // the group must be viable
 *   container.setIommu();                        // TYPE1v2 when available, else TYPE1
 *   const device = group.openDevice('0000:01:00.1');
 *
 * Or `openVfioDevice(bdf)`, which finds the group in sysfs and does all of the above. Close in reverse order
 * (device, group, container) or use the handle's close(). Every error from the addon is re-thrown with the BDF (and
 * region/irq index) in its message and as `bdf` / `region` / `irq` properties; errno, code and syscall are kept.
 */
import { readlinkSync } from 'node:fs';
import path from 'node:path';

import {
  native,
  PROT_READ,
  PROT_WRITE,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  type VfioDeviceInfo,
  type VfioGroupStatus,
  type VfioIommuInfo,
  type VfioIrqInfo,
  type VfioRegionInfo,
} from '../native/index.js';

export type { VfioDeviceInfo, VfioGroupStatus, VfioIommuInfo, VfioIrqInfo, VfioRegionInfo };
export { VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_PCI_CONFIG_REGION_INDEX };

/** An error from a VFIO operation, with where it happened. errno/code/syscall come from the addon when it was a syscall. */
export interface VfioError extends Error {
  errno?: number;
  code?: string;
  syscall?: string;
  bdf?: string;
  group?: number | string;
  region?: number;
  irq?: number;
}

interface Where {
  bdf?: string;
  group?: number | string;
  region?: number;
  irq?: number;
}

function describe(where: Where): string {
  const parts: string[] = [];
  if (where.bdf) parts.push(where.bdf);
  if (where.group !== undefined) parts.push(`group ${where.group}`);
  if (where.region !== undefined) parts.push(`region ${where.region}`);
  if (where.irq !== undefined) parts.push(`irq ${where.irq}`);
  return parts.join(', ');
}

/** Runs `fn`, adding `where` to any error it throws (message prefix and properties). */
function withContext<T>(where: Where, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof Error) {
      const e = error as VfioError;
      const prefix = describe(where);
      if (prefix && !e.message.startsWith(prefix)) e.message = `${prefix}: ${e.message}`;
      for (const [key, value] of Object.entries(where)) {
        if (value !== undefined && (e as unknown as Record<string, unknown>)[key] === undefined) {
          (e as unknown as Record<string, unknown>)[key] = value;
        }
      }
    }
    throw error;
  }
}

function stateError(message: string): Error {
  return Object.assign(new Error(message), { code: 'ERR_INVALID_STATE' });
}

function toNumber(value: number | bigint, what: string): number {
  if (typeof value === 'number') return value;
  throw Object.assign(new RangeError(`${what} ${value} does not fit in a JS number`), { code: 'ERR_OUT_OF_RANGE' });
}

/** PCI BDF in sysfs form: 0000:01:00.1. */
export const BDF_PATTERN = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

export function assertBdf(bdf: string): void {
  if (typeof bdf !== 'string' || !BDF_PATTERN.test(bdf)) {
    throw Object.assign(new TypeError(`not a PCI address (0000:01:00.1): ${JSON.stringify(bdf)}`), {
      code: 'ERR_INVALID_ARG_VALUE',
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------

export interface DmaMapOptions {
  /** Offset into the buffer (page-aligned); default 0. */
  bufferOffset?: number;
  /** Bus address the device uses (page-aligned). */
  iova: number;
  /** Bytes (page-aligned); default the rest of the buffer. */
  size?: number;
  /** The device may read / write the memory; default both. */
  read?: boolean;
  write?: boolean;
}

/** A VFIO container (/dev/vfio/vfio): the IOMMU context that groups are attached to and DMA is mapped in. */
export class VfioContainer {
  private closed = false;
  private iommuSet = false;
  private readonly dma = new Map<number, number>(); // iova -> size

  private constructor(readonly fd: number) {}

  static open(devicePath = '/dev/vfio/vfio'): VfioContainer {
    return new VfioContainer(native.vfioOpenContainer(devicePath));
  }

  private check(): void {
    if (this.closed) throw stateError('VFIO container is closed');
  }

  checkExtension(extension: number): boolean {
    this.check();
    return native.vfioCheckExtension(this.fd, extension) > 0;
  }

  /** Sets the IOMMU model: `type`, or TYPE1v2 when supported, else TYPE1. Needs at least one group attached. */
  setIommu(type?: number): number {
    this.check();
    const chosen =
      type ?? (this.checkExtension(VFIO_TYPE1v2_IOMMU) ? VFIO_TYPE1v2_IOMMU : VFIO_TYPE1_IOMMU);
    native.vfioSetIommu(this.fd, chosen);
    this.iommuSet = true;
    return chosen;
  }

  get hasIommu(): boolean {
    return this.iommuSet;
  }

  iommuInfo(): VfioIommuInfo {
    this.check();
    return native.vfioIommuGetInfo(this.fd);
  }

  /** Maps part of an `mmap` ArrayBuffer (e.g. of a memfd) for device DMA at `iova`. Pins the buffer until unmapped. */
  mapDma(buffer: ArrayBuffer, options: DmaMapOptions): void {
    this.check();
    const bufferOffset = options.bufferOffset ?? 0;
    const size = options.size ?? buffer.byteLength - bufferOffset;
    const flags =
      (options.read === false ? 0 : VFIO_DMA_MAP_FLAG_READ) | (options.write === false ? 0 : VFIO_DMA_MAP_FLAG_WRITE);
    if (flags === 0) {
      throw Object.assign(new TypeError('mapDma: at least one of read/write must be allowed'), {
        code: 'ERR_INVALID_ARG_VALUE',
      });
    }
    native.vfioIommuMapDma(this.fd, buffer, bufferOffset, options.iova, size, flags);
    this.dma.set(options.iova, size);
  }

  unmapDma(iova: number, size?: number): void {
    this.check();
    const known = this.dma.get(iova);
    native.vfioIommuUnmapDma(this.fd, iova, size ?? known ?? 0);
    this.dma.delete(iova);
  }

  /** IOVAs currently mapped through this container. */
  get dmaMappings(): ReadonlyMap<number, number> {
    return this.dma;
  }

  /** Closes the container (idempotent); the kernel drops its DMA mappings, and the buffers are unpinned. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dma.clear();
    native.vfioCloseContainer(this.fd);
  }
}

// ---------------------------------------------------------------------------------------------------------------

export interface GroupOpenOptions {
  /** Root of /dev (tests); default '/dev'. */
  devRoot?: string;
}

/** A VFIO group (/dev/vfio/<n>). Only one open per group system-wide: a second open fails with EBUSY. */
export class VfioGroup {
  private closed = false;
  private container: VfioContainer | undefined;
  private readonly devices = new Set<VfioDevice>();

  private constructor(
    readonly fd: number,
    readonly group: number | string,
    readonly path: string,
  ) {}

  /** Opens /dev/vfio/<group>. */
  static open(group: number | string, options: GroupOpenOptions = {}): VfioGroup {
    const name = String(group);
    if (!/^(noiommu-)?\d+$/.test(name)) {
      throw Object.assign(new TypeError(`not a VFIO group: ${JSON.stringify(group)}`), { code: 'ERR_INVALID_ARG_VALUE' });
    }
    const file = path.join(options.devRoot ?? '/dev', 'vfio', name);
    const fd = withContext({ group }, () => native.vfioOpenGroup(file));
    return new VfioGroup(fd, group, file);
  }

  private check(): void {
    if (this.closed) throw stateError(`VFIO group ${this.group} is closed`);
  }

  status(): VfioGroupStatus {
    this.check();
    return withContext({ group: this.group }, () => native.vfioGroupGetStatus(this.fd));
  }

  /** Attaches the group to `container`; refuses (EPERM from the kernel) a non-viable group, checked first here. */
  setContainer(container: VfioContainer): void {
    this.check();
    const status = this.status();
    if (!status.viable) {
      throw Object.assign(
        new Error(
          `group ${this.group}: not viable (a device in the IOMMU group is bound to a host driver; bind every endpoint to vfio-pci or to no driver)`,
        ),
        { code: 'ENOTVIABLE', group: this.group },
      );
    }
    withContext({ group: this.group }, () => native.vfioGroupSetContainer(this.fd, container.fd));
    this.container = container;
  }

  unsetContainer(): void {
    this.check();
    if (!this.container) return;
    withContext({ group: this.group }, () => native.vfioGroupUnsetContainer(this.fd));
    this.container = undefined;
  }

  /** Device fd for `bdf` (needs the container set and its IOMMU model chosen). */
  openDevice(bdf: string): VfioDevice {
    this.check();
    assertBdf(bdf);
    const fd = withContext({ bdf, group: this.group }, () => native.vfioGroupGetDeviceFd(this.fd, bdf));
    const device = new VfioDevice(fd, bdf, () => this.devices.delete(device));
    this.devices.add(device);
    return device;
  }

  /** Closes open devices of this group, then the group (which detaches it from its container). Idempotent. */
  close(): void {
    if (this.closed) return;
    for (const device of [...this.devices]) device.close();
    this.closed = true;
    this.container = undefined;
    native.close(this.fd);
  }
}

// ---------------------------------------------------------------------------------------------------------------

export interface RegionMapOptions {
  /** Offset in the region (page-aligned); default 0. */
  offset?: number;
  /** Bytes; default the rest of the region. */
  length?: number;
  /** PROT_READ | PROT_WRITE by default. */
  prot?: number;
}

/** A VFIO device fd: info, regions, irqs, BAR mmap, config space and reset. */
export class VfioDevice {
  private closed = false;
  private readonly regionCache = new Map<number, VfioRegionInfo>();
  private readonly maps = new Set<ArrayBuffer>();

  /** @internal use VfioGroup.openDevice */
  constructor(
    readonly fd: number,
    readonly bdf: string,
    private readonly onClose: () => void,
  ) {}

  private check(): void {
    if (this.closed) throw stateError(`VFIO device ${this.bdf} is closed`);
  }

  info(): VfioDeviceInfo {
    this.check();
    return withContext({ bdf: this.bdf }, () => native.vfioDeviceGetInfo(this.fd));
  }

  regionInfo(index: number): VfioRegionInfo {
    this.check();
    const cached = this.regionCache.get(index);
    if (cached) return cached;
    const info = withContext({ bdf: this.bdf, region: index }, () => native.vfioDeviceGetRegionInfo(this.fd, index));
    this.regionCache.set(index, info);
    return info;
  }

  /** Every region index the device reports; indexes the kernel refuses with EINVAL are skipped (e.g. VGA on most). */
  regions(): VfioRegionInfo[] {
    const out: VfioRegionInfo[] = [];
    const { numRegions } = this.info();
    for (let index = 0; index < numRegions; index++) {
      try {
        out.push(this.regionInfo(index));
      } catch (error) {
        if ((error as VfioError).code !== 'EINVAL') throw error;
      }
    }
    return out;
  }

  irqInfo(index: number): VfioIrqInfo {
    this.check();
    return withContext({ bdf: this.bdf, irq: index }, () => native.vfioDeviceGetIrqInfo(this.fd, index));
  }

  /** Every irq index the device reports; EINVAL indexes (e.g. ERR on conventional PCI) are skipped. */
  irqs(): VfioIrqInfo[] {
    const out: VfioIrqInfo[] = [];
    const { numIrqs } = this.info();
    for (let index = 0; index < numIrqs; index++) {
      try {
        out.push(this.irqInfo(index));
      } catch (error) {
        if ((error as VfioError).code !== 'EINVAL') throw error;
      }
    }
    return out;
  }

  private regionOffset(index: number, offset: number, length: number, op: 'read' | 'write' | 'mmap'): number {
    const region = this.regionInfo(index);
    const size = toNumber(region.size, `${this.bdf}: region ${index} size`);
    const flag = op === 'read' ? region.readable : op === 'write' ? region.writable : region.mmap;
    if (!flag) {
      throw Object.assign(new Error(`${this.bdf}: region ${index} does not support ${op} (flags 0x${region.flags.toString(16)})`), {
        code: 'ENOTSUP', bdf: this.bdf, region: index,
      });
    }
    if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(length) || length < 0 || offset + length > size) {
      throw Object.assign(
        new RangeError(`${this.bdf}: region ${index}: [${offset}, ${offset + length}) is outside the ${size}-byte region`),
        { code: 'ERR_OUT_OF_RANGE', bdf: this.bdf, region: index },
      );
    }
    return toNumber(region.offset, `${this.bdf}: region ${index} offset`) + offset;
  }

  /** pread of `length` bytes at `offset` in region `index`. */
  readRegion(index: number, offset: number, length: number): Uint8Array {
    this.check();
    const at = this.regionOffset(index, offset, length, 'read');
    const buffer = new Uint8Array(length);
    const n = withContext({ bdf: this.bdf, region: index }, () => native.vfioRegionRead(this.fd, at, buffer));
    return buffer.subarray(0, n);
  }

  /** pwrite of `data` at `offset` in region `index`. */
  writeRegion(index: number, offset: number, data: Uint8Array): void {
    this.check();
    const at = this.regionOffset(index, offset, data.length, 'write');
    const n = withContext({ bdf: this.bdf, region: index }, () => native.vfioRegionWrite(this.fd, at, data));
    if (n !== data.length) {
      throw Object.assign(new Error(`${this.bdf}: region ${index}: short write (${n} of ${data.length} bytes)`), {
        code: 'EIO', bdf: this.bdf, region: index,
      });
    }
  }

  readConfig8(offset: number): number {
    return this.readRegion(VFIO_PCI_CONFIG_REGION_INDEX, offset, 1)[0]!;
  }
  readConfig16(offset: number): number {
    const b = this.readRegion(VFIO_PCI_CONFIG_REGION_INDEX, offset, 2);
    return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(0, true);
  }
  readConfig32(offset: number): number {
    const b = this.readRegion(VFIO_PCI_CONFIG_REGION_INDEX, offset, 4);
    return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true);
  }
  writeConfig16(offset: number, value: number): void {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, value, true);
    this.writeRegion(VFIO_PCI_CONFIG_REGION_INDEX, offset, b);
  }
  writeConfig32(offset: number, value: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value >>> 0, true);
    this.writeRegion(VFIO_PCI_CONFIG_REGION_INDEX, offset, b);
  }

  /**
   * Sets Memory Space (bit 1) and Bus Master (bit 2) in the PCI COMMAND register. VFIO does not set Bus Master:
   * without it the device's first DMA fails. Returns the register's new value.
   */
  enableBusMaster(): number {
    const command = this.readConfig16(0x04);
    this.writeConfig16(0x04, command | 0x6);
    return this.readConfig16(0x04);
  }

  /** mmaps (part of) region `index` (a BAR) MAP_SHARED; an addon ArrayBuffer, released by unmap() or close(). */
  mapRegion(index: number, options: RegionMapOptions = {}): ArrayBuffer {
    this.check();
    const offset = options.offset ?? 0;
    const size = toNumber(this.regionInfo(index).size, `${this.bdf}: region ${index} size`);
    const length = options.length ?? size - offset;
    const at = this.regionOffset(index, offset, length, 'mmap');
    const buffer = withContext({ bdf: this.bdf, region: index }, () =>
      native.mmap(this.fd, at, length, options.prot ?? PROT_READ | PROT_WRITE),
    );
    this.maps.add(buffer);
    return buffer;
  }

  unmap(buffer: ArrayBuffer): void {
    this.maps.delete(buffer);
    native.munmap(buffer);
  }

  /** VFIO_DEVICE_RESET (FLR, PM reset or bus reset, whichever the kernel picks). */
  reset(): void {
    this.check();
    withContext({ bdf: this.bdf }, () => native.vfioDeviceReset(this.fd));
  }

  /** Unmaps this device's BAR mappings and closes the fd (idempotent). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Unmap what is left; a mapping that cannot go now (EBUSY: pinned) is unmapped by GC later, and the fd is
    // closed regardless: a live BAR mapping keeps the device's memory valid on its own.
    for (const buffer of this.maps) {
      try {
        if (native.isMapped(buffer)) native.munmap(buffer);
      } catch {
        /* left to GC */
      }
    }
    this.maps.clear();
    native.close(this.fd);
    this.onClose();
  }
}

// ---------------------------------------------------------------------------------------------------------------

export interface OpenDeviceOptions {
  /** Root of sysfs (tests); default '/sys'. */
  sysfsRoot?: string;
  /** Root of /dev (tests); default '/dev'. */
  devRoot?: string;
  /** The container device; default '<devRoot>/vfio/vfio'. */
  containerPath?: string;
}

export interface OpenedVfioDevice {
  container: VfioContainer;
  group: VfioGroup;
  device: VfioDevice;
  groupNumber: number;
  iommuType: number;
  /** Closes device, group and container (idempotent). */
  close(): void;
}

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
  const group = Number(path.basename(target));
  if (!Number.isInteger(group)) throw Object.assign(new Error(`${bdf}: unexpected iommu_group link ${target}`), { bdf });
  return group;
}

/**
 * Container + group (viability checked) + IOMMU model + device fd for `bdf`. On any failure everything opened so far
 * is closed again.
 */
export function openVfioDevice(bdf: string, options: OpenDeviceOptions = {}): OpenedVfioDevice {
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
      container,
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
