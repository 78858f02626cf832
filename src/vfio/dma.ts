/**
 * Where DMA for a device is mapped, the same calls for both backends: the legacy type1 container (legacy.ts) and
 * an iommufd IOAS (iommufd.ts).
 */
import { DmaMapFlag } from '../spec/vfio.js';

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
export abstract class DmaMappings implements VfioDmaSpace {
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
