/**
 * The iommufd API (Linux >= 6.2 with CONFIG_IOMMUFD): an `Iommufd` (/dev/iommu) owns I/O address spaces
 * (`IommufdIoas`, which map DMA) and the device cdevs bound to it. Binding and attaching a device is done by
 * `openVfioDevice` (index.ts).
 */
import { native, type IommufdHwInfo, type IommufdIovaRanges } from '../native/index.js';
import { DmaMappings } from './dma.js';
import { stateError } from './errors.js';

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
