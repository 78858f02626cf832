/**
 * The linux/vfio.h vocabulary, defined once: what vfio-user carries on the wire (it reuses the VFIO structures and
 * numbering), what the emulated PCI function exposes, and what the addon's VFIO ioctls take. Also the errno values
 * replies carry, and the one rule check of VFIO_DEVICE_SET_IRQS.
 *
 * Pure data and functions: this file imports nothing, and every layer may import it.
 */

/** vfio_device_info.flags (VFIO_DEVICE_FLAGS_*). */
export const DeviceFlag = { RESET: 1, PCI: 2 } as const;

/** vfio_region_info.flags (VFIO_REGION_INFO_FLAG_*). */
export const RegionFlag = { READ: 1, WRITE: 2, MMAP: 4, CAPS: 8 } as const;

/** Region capability ids (VFIO_REGION_INFO_CAP_*). */
export const RegionCapId = { SPARSE_MMAP: 1, TYPE: 2, MSIX_MAPPABLE: 3 } as const;

/** vfio-pci region indexes (VFIO_PCI_*_REGION_INDEX); device-specific regions follow VGA. */
export const RegionIndex = { BAR0: 0, BAR1: 1, BAR2: 2, BAR3: 3, BAR4: 4, BAR5: 5, ROM: 6, CONFIG: 7, VGA: 8 } as const;
/** VFIO_PCI_NUM_REGIONS: BAR0-5, ROM, CONFIG, VGA. */
export const PCI_REGION_COUNT = 9;

/** vfio-pci interrupt indexes (VFIO_PCI_*_IRQ_INDEX). */
export const IrqIndex = { INTX: 0, MSI: 1, MSIX: 2, ERR: 3, REQ: 4 } as const;
/** VFIO_PCI_NUM_IRQS. */
export const PCI_IRQ_INDEX_COUNT = 5;

/** vfio_irq_info.flags (VFIO_IRQ_INFO_*). */
export const IrqFlag = { EVENTFD: 1, MASKABLE: 2, AUTOMASKED: 4, NORESIZE: 8 } as const;

/** vfio_irq_set.flags (VFIO_IRQ_SET_*): exactly one DATA_* and one ACTION_* bit. */
export const IrqSetFlag = {
  DATA_NONE: 1 << 0,
  DATA_BOOL: 1 << 1,
  DATA_EVENTFD: 1 << 2,
  ACTION_MASK: 1 << 3,
  ACTION_UNMASK: 1 << 4,
  ACTION_TRIGGER: 1 << 5,
} as const;
export const IRQ_SET_DATA_MASK = IrqSetFlag.DATA_NONE | IrqSetFlag.DATA_BOOL | IrqSetFlag.DATA_EVENTFD;
export const IRQ_SET_ACTION_MASK = IrqSetFlag.ACTION_MASK | IrqSetFlag.ACTION_UNMASK | IrqSetFlag.ACTION_TRIGGER;

/** IOMMU models of a legacy container (VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU). */
export const IommuType = { TYPE1: 1, TYPE1v2: 3 } as const;

/** vfio_iommu_type1_dma_map.flags (VFIO_DMA_MAP_FLAG_*); the addon's iommufd map takes them too. */
export const DmaMapFlag = { READ: 1, WRITE: 2 } as const;

/** Linux errno numbers (asm-generic/errno-base.h and errno.h); vfio-user replies carry these exact values. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  ENOSYS: 38,
  ENOTSUP: 95,
} as const;

export type ErrnoValue = (typeof Errno)[keyof typeof Errno];

const ERRNO_NAMES = new Map<number, string>(Object.entries(Errno).map(([name, value]) => [value, name]));

/** 'EINVAL' for 22, 'errno 123' for numbers outside the table. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

/** A VFIO_DEVICE_SET_IRQS request as far as the rules below look at it. */
export interface IrqSet {
  /** IrqIndex */
  index: number;
  /** IrqSetFlag bits */
  flags: number;
  /** First vector */
  start: number;
  count: number;
  /** How many fds came with the request (an fd of -1, where a caller allows it, counts too). */
  fdCount: number;
  /** How many payload bytes followed the structure (DATA_BOOL needs `count` of them). */
  dataBytes: number;
}

/** 'SET_IRQS index 2 start 0 count 1 flags 0x24': the prefix of every message about a SET_IRQS request. */
export function describeIrqSet(set: Pick<IrqSet, 'index' | 'flags' | 'start' | 'count'>): string {
  return `SET_IRQS index ${set.index} start ${set.start} count ${set.count} flags 0x${Number(set.flags).toString(16)}`;
}

/**
 * Why a SET_IRQS request breaks the rules for a device whose interrupts are `irqs` (index = IrqIndex; count and
 * IrqFlag bits of each), or null when it keeps them. Every refusal is EINVAL. The rules, as vfio-pci applies
 * them (the contract PCI clients expect):
 * - the index exists; flags hold exactly one DATA_* and one ACTION_* bit and nothing else;
 * - start and count are non-negative integers, start is a vector of the index and start + count stays within;
 * - count 0 only with TRIGGER|DATA_NONE (disable the whole index);
 * - DATA_BOOL carries at least `count` payload bytes; only DATA_EVENTFD carries fds;
 * - DATA_EVENTFD: `count` fds, or none (de-assign); with TRIGGER, or with UNMASK on an AUTOMASKED interrupt (the
 *   resample eventfd of a level-triggered line: INTx). MASK|EVENTFD is refused: vfio-pci does not implement it.
 * What the fds are (eventfds, not bound elsewhere) is the device's to check.
 */
export function irqSetViolation(
  set: IrqSet,
  irqs: ReadonlyArray<{ readonly count: number; readonly flags: number }>,
): string | null {
  const { index, flags, start, count } = set;
  if (!Number.isInteger(index) || index < 0 || index >= irqs.length) {
    return `irq index does not exist (${irqs.length} irq types)`;
  }
  if (!Number.isInteger(flags) || (flags & ~(IRQ_SET_DATA_MASK | IRQ_SET_ACTION_MASK)) !== 0) {
    return 'unknown flag bits';
  }
  const data = flags & IRQ_SET_DATA_MASK;
  const action = flags & IRQ_SET_ACTION_MASK;
  if (!isSingleBit(data)) return 'exactly one of DATA_NONE, DATA_BOOL, DATA_EVENTFD is required';
  if (!isSingleBit(action)) return 'exactly one of ACTION_MASK, ACTION_UNMASK, ACTION_TRIGGER is required';
  if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(count) || count < 0) {
    return 'start and count must be non-negative integers';
  }
  const irq = irqs[index]!;
  if (start >= irq.count || start + count > irq.count) return `vectors outside the ${irq.count} of this irq type`;
  if (count === 0 && !(action === IrqSetFlag.ACTION_TRIGGER && data === IrqSetFlag.DATA_NONE)) {
    return 'count 0 is only valid with ACTION_TRIGGER|DATA_NONE (disable)';
  }
  if (data !== IrqSetFlag.DATA_EVENTFD) {
    if (set.fdCount !== 0) return `${set.fdCount} fds sent without DATA_EVENTFD`;
    if (data === IrqSetFlag.DATA_BOOL && set.dataBytes < count) {
      return `DATA_BOOL needs ${count} payload bytes, got ${set.dataBytes}`;
    }
    return null;
  }
  if (action === IrqSetFlag.ACTION_MASK) {
    return 'masking through an eventfd is not supported (mask with DATA_NONE or DATA_BOOL)';
  }
  if (action === IrqSetFlag.ACTION_UNMASK && (irq.flags & IrqFlag.AUTOMASKED) === 0) {
    return 'an unmask (resample) eventfd is only defined for an automasked, level-triggered interrupt (INTx)';
  }
  if (set.fdCount !== count && set.fdCount !== 0) {
    return `${set.fdCount} eventfds for ${count} vectors (send ${count}, or none to de-assign)`;
  }
  return null;
}

function isSingleBit(value: number): boolean {
  return value !== 0 && (value & (value - 1)) === 0;
}
