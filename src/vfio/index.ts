/**
 * Typed wrapper over the addon's VFIO ioctls (see docs/vfio.md). Two backends give the same `VfioDevice`:
 *
 * - iommufd + VFIO cdev (Linux >= 6.2 with CONFIG_IOMMUFD / CONFIG_VFIO_DEVICE_CDEV): the device's
 *   /dev/vfio/devices/vfioN is bound to an `Iommufd` (/dev/iommu) and attached to an `IommufdIoas`, which maps DMA.
 * - legacy container/group: `VfioContainer` (/dev/vfio/vfio, type1 IOMMU, maps DMA) + `VfioGroup` (/dev/vfio/<n>):
 *
 *   const container = VfioContainer.open();
 *   const group = VfioGroup.open(12);            // /dev/vfio/12
 *   group.setContainer(container);               // the group must be viable
 *   container.setIommu();                        // TYPE1v2 when available, else TYPE1
 *   const device = group.openDevice('0000:01:00.1');
 *
 * Or `openVfioDevice(bdf, { backend: 'auto' | 'iommufd' | 'legacy' })`, which finds the cdev or group in sysfs and
 * does all of the above (auto: iommufd when /dev/iommu and the device's cdev exist). Close in reverse order
 * (device, group, container) or use the handle's close(). Every error from the addon is re-thrown with the BDF (and
 * region/irq index) in its message and as `bdf` / `region` / `irq` properties; errno, code and syscall are kept.
 */
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import path from 'node:path';

import {
  native,
  PROT_READ,
  PROT_WRITE,
  type IommufdHwInfo,
  type IommufdIovaRanges,
  type VfioDeviceInfo,
  type VfioGroupStatus,
  type VfioIommuInfo,
  type VfioIrqInfo,
  type VfioRegionInfo,
} from '../native/index.js';
import { DmaMapFlag, IommuType, RegionIndex } from '../spec/vfio.js';
import { BDF } from '../util/pci-address.js';

export type { IommufdHwInfo, IommufdIovaRanges, VfioDeviceInfo, VfioGroupStatus, VfioIommuInfo, VfioIrqInfo, VfioRegionInfo };

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

/** Throws ERR_INVALID_ARG_VALUE unless `bdf` is a PCI address in sysfs form (0000:01:00.1). */
export function assertBdf(bdf: string): void {
  if (typeof bdf !== 'string' || !BDF.test(bdf)) {
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

/** Where DMA for a device is mapped: the legacy type1 container or an iommufd IOAS. Same calls for both. */
export interface VfioDmaSpace {
  /** Maps part of an `mmap` ArrayBuffer (e.g. of a memfd) for device DMA at `iova`. Pins the buffer until unmapped. */
  mapDma(buffer: ArrayBuffer, options: DmaMapOptions): void;
  /** Unmaps exactly one earlier mapping (its iova; size defaults to the mapped size). */
  unmapDma(iova: number, size?: number): void;
  /** IOVAs currently mapped through this space -> their size. */
  readonly dmaMappings: ReadonlyMap<number, number>;
}

/** The bookkeeping and option handling both DMA spaces share; subclasses supply the two ioctls. */
abstract class DmaMappings implements VfioDmaSpace {
  private readonly dma = new Map<number, number>(); // iova -> size

  protected abstract checkOpen(): void;
  protected abstract nativeMap(buffer: ArrayBuffer, bufferOffset: number, iova: number, size: number, flags: number): void;
  protected abstract nativeUnmap(iova: number, size: number): void;

  mapDma(buffer: ArrayBuffer, options: DmaMapOptions): void {
    this.checkOpen();
    const bufferOffset = options.bufferOffset ?? 0;
    const size = options.size ?? buffer.byteLength - bufferOffset;
    const flags =
      (options.read === false ? 0 : DmaMapFlag.READ) | (options.write === false ? 0 : DmaMapFlag.WRITE);
    if (flags === 0) {
      throw Object.assign(new TypeError('mapDma: at least one of read/write must be allowed'), {
        code: 'ERR_INVALID_ARG_VALUE',
      });
    }
    this.nativeMap(buffer, bufferOffset, options.iova, size, flags);
    this.dma.set(options.iova, size);
  }

  unmapDma(iova: number, size?: number): void {
    this.checkOpen();
    this.nativeUnmap(iova, size ?? this.dma.get(iova) ?? 0);
    this.dma.delete(iova);
  }

  get dmaMappings(): ReadonlyMap<number, number> {
    return this.dma;
  }

  /** The kernel dropped every mapping (container/iommufd closed, IOAS destroyed). */
  protected forgetMappings(): void {
    this.dma.clear();
  }
}

/** A VFIO container (/dev/vfio/vfio): the IOMMU context that groups are attached to and DMA is mapped in. */
export class VfioContainer extends DmaMappings {
  private closed = false;
  private iommuSet = false;

  private constructor(readonly fd: number) {
    super();
  }

  static open(devicePath = '/dev/vfio/vfio'): VfioContainer {
    return new VfioContainer(native.vfioOpenContainer(devicePath));
  }

  protected checkOpen(): void {
    if (this.closed) throw stateError('VFIO container is closed');
  }

  protected nativeMap(buffer: ArrayBuffer, bufferOffset: number, iova: number, size: number, flags: number): void {
    native.vfioIommuMapDma(this.fd, buffer, bufferOffset, iova, size, flags);
  }

  protected nativeUnmap(iova: number, size: number): void {
    native.vfioIommuUnmapDma(this.fd, iova, size);
  }

  checkExtension(extension: number): boolean {
    this.checkOpen();
    return native.vfioCheckExtension(this.fd, extension) > 0;
  }

  /** Sets the IOMMU model: `type`, or TYPE1v2 when supported, else TYPE1. Needs at least one group attached. */
  setIommu(type?: number): number {
    this.checkOpen();
    const chosen =
      type ?? (this.checkExtension(IommuType.TYPE1v2) ? IommuType.TYPE1v2 : IommuType.TYPE1);
    native.vfioSetIommu(this.fd, chosen);
    this.iommuSet = true;
    return chosen;
  }

  get hasIommu(): boolean {
    return this.iommuSet;
  }

  iommuInfo(): VfioIommuInfo {
    this.checkOpen();
    return native.vfioIommuGetInfo(this.fd);
  }

  /** Closes the container (idempotent); the kernel drops its DMA mappings, and the buffers are unpinned. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.forgetMappings();
    native.vfioCloseContainer(this.fd);
  }
}

// ---------------------------------------------------------------------------------------------------------------

/** An iommufd (/dev/iommu): owns I/O address spaces and the devices bound to it. Closing it frees both. */
export class Iommufd {
  private closed = false;
  private readonly spaces = new Set<IommufdIoas>();

  private constructor(
    readonly fd: number,
    readonly path: string,
  ) {}

  static open(devicePath = '/dev/iommu'): Iommufd {
    return new Iommufd(native.iommufdOpen(devicePath), devicePath);
  }

  /** @internal */
  checkOpen(): void {
    if (this.closed) throw stateError(`iommufd ${this.path} is closed`);
  }

  /** A new, empty I/O address space. */
  allocIoas(): IommufdIoas {
    this.checkOpen();
    const ioas = new IommufdIoas(this, native.iommufdIoasAlloc(this.fd), () => this.spaces.delete(ioas));
    this.spaces.add(ioas);
    return ioas;
  }

  /** Which IOMMU a device bound to this iommufd sits behind (IOMMU_GET_HW_INFO). */
  hwInfo(devId: number): IommufdHwInfo {
    this.checkOpen();
    return native.iommufdGetHwInfo(this.fd, devId);
  }

  /** Closes the iommufd (idempotent): the kernel destroys its IOASes and mappings; the buffers are unpinned. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ioas of [...this.spaces]) ioas.forget();
    native.iommufdClose(this.fd);
  }
}

/** An iommufd I/O address space: devices attached to it DMA through its mappings. */
export class IommufdIoas extends DmaMappings {
  private destroyed = false;

  /** @internal use Iommufd.allocIoas */
  constructor(
    readonly iommufd: Iommufd,
    readonly id: number,
    private readonly onGone: () => void,
  ) {
    super();
  }

  protected checkOpen(): void {
    if (this.destroyed) throw stateError(`IOAS ${this.id} is destroyed`);
    this.iommufd.checkOpen();
  }

  protected nativeMap(buffer: ArrayBuffer, bufferOffset: number, iova: number, size: number, flags: number): void {
    native.iommufdIoasMap(this.iommufd.fd, this.id, buffer, bufferOffset, iova, size, flags);
  }

  protected nativeUnmap(iova: number, size: number): void {
    native.iommufdIoasUnmap(this.iommufd.fd, this.id, iova, size);
  }

  /** The IOVA ranges this IOAS can map now (the attached devices' reserved regions are cut out). */
  iovaRanges(): IommufdIovaRanges {
    this.checkOpen();
    return native.iommufdIoasIovaRanges(this.iommufd.fd, this.id);
  }

  /** IOMMU_DESTROY (idempotent): unmaps and unpins everything; EBUSY while a device is still attached. */
  destroy(): void {
    if (this.destroyed) return;
    this.iommufd.checkOpen();
    native.iommufdDestroy(this.iommufd.fd, this.id);
    this.forget();
  }

  /** @internal the iommufd was closed, which destroyed this IOAS. */
  forget(): void {
    this.destroyed = true;
    this.forgetMappings();
    this.onGone();
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

  /** @internal use VfioGroup.openDevice or openVfioDevice */
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
    return this.readRegion(RegionIndex.CONFIG, offset, 1)[0]!;
  }
  readConfig16(offset: number): number {
    const b = this.readRegion(RegionIndex.CONFIG, offset, 2);
    return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(0, true);
  }
  readConfig32(offset: number): number {
    const b = this.readRegion(RegionIndex.CONFIG, offset, 4);
    return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true);
  }
  writeConfig16(offset: number, value: number): void {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, value, true);
    this.writeRegion(RegionIndex.CONFIG, offset, b);
  }
  writeConfig32(offset: number, value: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value >>> 0, true);
    this.writeRegion(RegionIndex.CONFIG, offset, b);
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

/** How a device is opened: iommufd + cdev, the legacy container/group, or whichever the host has ('auto'). */
export type VfioBackendChoice = 'auto' | 'iommufd' | 'legacy';
export type VfioBackend = Exclude<VfioBackendChoice, 'auto'>;

export interface OpenDeviceOptions {
  /** Default 'auto': iommufd when `<devRoot>/iommu` and the device's VFIO cdev exist, else legacy. */
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
  backend: 'legacy';
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
 * else legacy. Presence only: a failure while opening is reported, never papered over by the other backend.
 */
export function chooseVfioBackend(bdf: string, options: OpenDeviceOptions = {}): VfioBackend {
  const choice = options.backend ?? 'auto';
  if (choice !== 'auto') return choice;
  const devRoot = options.devRoot ?? '/dev';
  const cdev = vfioCdevOf(bdf, options);
  return existsSync(options.iommufdPath ?? path.join(devRoot, 'iommu')) && cdev !== undefined && existsSync(cdev)
    ? 'iommufd'
    : 'legacy';
}

export function openVfioDevice(bdf: string, options: OpenDeviceOptions & { backend: 'legacy' }): LegacyOpenedVfioDevice;
export function openVfioDevice(bdf: string, options: OpenDeviceOptions & { backend: 'iommufd' }): IommufdOpenedVfioDevice;
export function openVfioDevice(bdf: string, options?: OpenDeviceOptions): OpenedVfioDevice;
/** Opens `bdf` through the chosen backend; on any failure everything opened so far is closed again. */
export function openVfioDevice(bdf: string, options: OpenDeviceOptions = {}): OpenedVfioDevice {
  assertBdf(bdf);
  const backend = options.backend ?? 'auto';
  if (backend !== 'auto' && backend !== 'iommufd' && backend !== 'legacy') {
    throw Object.assign(new TypeError(`${bdf}: unknown VFIO backend ${JSON.stringify(backend)} (auto, iommufd, legacy)`), {
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
      backend: 'legacy',
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
