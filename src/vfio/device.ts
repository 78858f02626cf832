/**
 * A VFIO device fd, whichever backend opened it: info, regions (with their capability chains), irqs, region
 * read/write, config space, BAR mmap and reset.
 */
import {
  native,
  PROT_READ,
  PROT_WRITE,
  type VfioDeviceInfo,
  type VfioIrqInfo,
  type VfioRegionInfo,
} from '../native/index.js';
import { RegionIndex } from '../spec/vfio.js';
import { stateError, withContext, type VfioError } from './errors.js';

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

function toNumber(value: number | bigint, what: string): number {
  if (typeof value === 'number') return value;
  throw Object.assign(new RangeError(`${what} ${value} does not fit in a JS number`), { code: 'ERR_OUT_OF_RANGE' });
}
