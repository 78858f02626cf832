/**
 * The legacy VFIO API: a container (/dev/vfio/vfio, the type1 IOMMU context that maps DMA) and groups
 * (/dev/vfio/<n>) attached to it, from which device fds are obtained:
 *
 *   const container = VfioContainer.open();
 *   const group = VfioGroup.open(12);            // /dev/vfio/12
 *   group.setContainer(container);               // the group must be viable
 *   container.setIommu();                        // TYPE1v2 when available, else TYPE1
 *   const device = group.openDevice('0000:01:00.1');
 *
 * Close in reverse order (device, group, container).
 */
import path from 'node:path';

import { native, type VfioGroupStatus, type VfioIommuInfo } from '../native/index.js';
import { IommuType } from '../spec/vfio.js';
import { VfioDevice } from './device.js';
import { DmaMappings } from './dma.js';
import { assertBdf, stateError, withContext } from './errors.js';

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
