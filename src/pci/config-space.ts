/**
 * PCI configuration space storage with per-bit write semantics, and the type 0 header we present.
 *
 * Every bit of the 4 KiB space is one of: read-only (the default), read/write, or write-1-to-clear. The masks are
 * fixed when the layout is built, so a guest write is a pure function of (old value, written value, masks) and
 * needs no per-register code; registers with side effects (Command, PMCSR, MSI-X control, Device Control) are
 * handled by the PciFunction after the masked write.
 */
export const CONFIG_SPACE_SIZE = 4096;
/** The legacy (PCI 3.0) part of config space, where the capability list lives. */
export const LEGACY_CONFIG_SPACE_SIZE = 256;

/** A rejected region access or SET_IRQS request; `errno` is the Linux errno the vfio-user reply carries (`Errno` in src/spec/vfio.ts). */
export class PciAccessError extends Error {
  override readonly name = 'PciAccessError';
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/** Type 0 header register offsets. */
export const ConfigRegister = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  REVISION_ID: 0x08,
  CLASS_CODE: 0x09,
  CACHE_LINE_SIZE: 0x0c,
  LATENCY_TIMER: 0x0d,
  HEADER_TYPE: 0x0e,
  BIST: 0x0f,
  BAR0: 0x10,
  CARDBUS_CIS: 0x28,
  SUBSYSTEM_VENDOR_ID: 0x2c,
  SUBSYSTEM_ID: 0x2e,
  EXPANSION_ROM: 0x30,
  CAPABILITIES_POINTER: 0x34,
  INTERRUPT_LINE: 0x3c,
  INTERRUPT_PIN: 0x3d,
  MIN_GNT: 0x3e,
  MAX_LAT: 0x3f,
} as const;

export const Command = {
  IO_SPACE: 1 << 0,
  MEMORY_SPACE: 1 << 1,
  BUS_MASTER: 1 << 2,
  SERR_ENABLE: 1 << 8,
  INTX_DISABLE: 1 << 10,
} as const;
/** The Command bits a guest may change; everything else is hard-wired to 0. */
export const COMMAND_WRITABLE =
  Command.IO_SPACE | Command.MEMORY_SPACE | Command.BUS_MASTER | Command.SERR_ENABLE | Command.INTX_DISABLE;

export const Status = {
  INTERRUPT_STATUS: 1 << 3,
  CAPABILITIES_LIST: 1 << 4,
  MASTER_DATA_PARITY_ERROR: 1 << 8,
  SIGNALED_TARGET_ABORT: 1 << 11,
  RECEIVED_TARGET_ABORT: 1 << 12,
  RECEIVED_MASTER_ABORT: 1 << 13,
  SIGNALED_SYSTEM_ERROR: 1 << 14,
  DETECTED_PARITY_ERROR: 1 << 15,
} as const;
/** Error-reporting Status bits: set by the device, cleared by writing 1. */
export const STATUS_WRITE_ONE_TO_CLEAR =
  Status.MASTER_DATA_PARITY_ERROR |
  Status.SIGNALED_TARGET_ABORT |
  Status.RECEIVED_TARGET_ABORT |
  Status.RECEIVED_MASTER_ABORT |
  Status.SIGNALED_SYSTEM_ERROR |
  Status.DETECTED_PARITY_ERROR;

/** Low bits of a memory BAR. */
export const BarBits = {
  /** 0 = memory space (I/O BARs are not used). */
  IO_SPACE: 1 << 0,
  TYPE_64BIT: 0b10 << 1,
  PREFETCHABLE: 1 << 3,
} as const;

export interface RegisterAccess {
  /** Bits the guest may set and clear. */
  writable?: number;
  /** Bits the guest clears by writing 1 (the device sets them). */
  writeOneToClear?: number;
}

export class ConfigSpace {
  /** Current contents, little-endian as on the wire. */
  readonly bytes = new Uint8Array(CONFIG_SPACE_SIZE);
  private readonly view = new DataView(this.bytes.buffer);
  private readonly writableBits = new DataView(new ArrayBuffer(CONFIG_SPACE_SIZE));
  private readonly clearBits = new DataView(new ArrayBuffer(CONFIG_SPACE_SIZE));
  private readonly powerOnValues = new Uint8Array(CONFIG_SPACE_SIZE);

  /** Lays out one register: its power-on value and which bits the guest may write. Build time only. */
  define(offset: number, size: 1 | 2 | 4, value: number, access: RegisterAccess = {}): void {
    checkRegister(offset, size);
    this.setRaw(this.view, offset, size, value);
    this.setRaw(this.writableBits, offset, size, access.writable ?? 0);
    this.setRaw(this.clearBits, offset, size, access.writeOneToClear ?? 0);
  }

  /** Records the current contents as the power-on state that `restorePowerOnValues` returns to. */
  capturePowerOnValues(): void {
    this.powerOnValues.set(this.bytes);
  }

  restorePowerOnValues(): void {
    this.bytes.set(this.powerOnValues);
  }

  read8(offset: number): number {
    return this.view.getUint8(offset);
  }
  read16(offset: number): number {
    return this.view.getUint16(offset, true);
  }
  read32(offset: number): number {
    return this.view.getUint32(offset, true);
  }

  /** Device-side update (status bits, hardware state): ignores the guest write masks. */
  set8(offset: number, value: number): void {
    this.view.setUint8(offset, value);
  }
  set16(offset: number, value: number): void {
    this.view.setUint16(offset, value, true);
  }
  set32(offset: number, value: number): void {
    this.view.setUint32(offset, value >>> 0, true);
  }

  writableMask32(offset: number): number {
    return this.writableBits.getUint32(offset, true);
  }

  /** Bits of the dword at `offset` that the device sets and the guest clears by writing 1. */
  writeOneToClearMask32(offset: number): number {
    return this.clearBits.getUint32(offset, true);
  }

  /**
   * A guest write of the bytes selected by `byteEnables` (0xff per byte) within the dword at `dwordOffset`:
   * read/write bits take the written value, write-1-to-clear bits clear where 1 was written, read-only bits stay.
   */
  guestWriteDword(dwordOffset: number, data: number, byteEnables: number): void {
    const writable = this.writableBits.getUint32(dwordOffset, true) & byteEnables;
    const clearable = this.clearBits.getUint32(dwordOffset, true) & byteEnables;
    const old = this.view.getUint32(dwordOffset, true);
    const next = ((old & ~writable & ~(data & clearable)) | (data & writable)) >>> 0;
    this.view.setUint32(dwordOffset, next, true);
  }

  private setRaw(view: DataView, offset: number, size: 1 | 2 | 4, value: number): void {
    if (size === 1) view.setUint8(offset, value & 0xff);
    else if (size === 2) view.setUint16(offset, value & 0xffff, true);
    else view.setUint32(offset, value >>> 0, true);
  }
}

function checkRegister(offset: number, size: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + size > CONFIG_SPACE_SIZE || offset % size !== 0) {
    throw new Error(`config register at 0x${offset.toString(16)} (size ${size}) is outside or misaligned`);
  }
}

export interface HeaderIdentity {
  vendorId: number;
  deviceId: number;
  subsystemVendorId: number;
  subsystemId: number;
  revisionId: number;
  /** 24-bit: base class, subclass, programming interface. */
  classCode: number;
  /** 0 = no INTx, 1..4 = INTA..INTD. */
  interruptPin: number;
  /** Offset of the first capability (0 = none). */
  capabilitiesPointer: number;
}

/** Writes the type 0 header (everything but the BARs). */
export function installType0Header(config: ConfigSpace, id: HeaderIdentity): void {
  config.define(ConfigRegister.VENDOR_ID, 2, id.vendorId);
  config.define(ConfigRegister.DEVICE_ID, 2, id.deviceId);
  config.define(ConfigRegister.COMMAND, 2, 0, { writable: COMMAND_WRITABLE });
  config.define(ConfigRegister.STATUS, 2, id.capabilitiesPointer !== 0 ? Status.CAPABILITIES_LIST : 0, {
    writeOneToClear: STATUS_WRITE_ONE_TO_CLEAR,
  });
  config.define(ConfigRegister.REVISION_ID, 1, id.revisionId);
  config.define(ConfigRegister.CLASS_CODE, 1, id.classCode & 0xff);
  config.define(ConfigRegister.CLASS_CODE + 1, 1, (id.classCode >>> 8) & 0xff);
  config.define(ConfigRegister.CLASS_CODE + 2, 1, (id.classCode >>> 16) & 0xff);
  // Cache line size is a plain scratch register for software; PCIe devices ignore its value.
  config.define(ConfigRegister.CACHE_LINE_SIZE, 1, 0, { writable: 0xff });
  // Latency timer and BIST are hard-wired to 0 on PCIe; header type 0, single function.
  config.define(ConfigRegister.SUBSYSTEM_VENDOR_ID, 2, id.subsystemVendorId);
  config.define(ConfigRegister.SUBSYSTEM_ID, 2, id.subsystemId);
  // Expansion ROM BAR stays 0 (no ROM): all bits read-only, so sizing it returns 0 = not implemented.
  config.define(ConfigRegister.CAPABILITIES_POINTER, 1, id.capabilitiesPointer);
  config.define(ConfigRegister.INTERRUPT_LINE, 1, 0, { writable: 0xff });
  config.define(ConfigRegister.INTERRUPT_PIN, 1, id.interruptPin);
}

export interface BarLayout {
  index: number;
  size: number;
  is64Bit: boolean;
  prefetchable: boolean;
}

const TWO_POW_32 = 0x1_0000_0000;

/**
 * Defines a memory BAR. Only the address bits above the size are writable, so writing all-ones and reading back
 * yields the size mask with the read-only type bits, which is how software sizes a BAR. For a 64-bit BAR the next
 * register holds the upper address bits (all writable unless the BAR is larger than 4 GiB).
 */
export function installMemoryBar(config: ConfigSpace, bar: BarLayout): void {
  const offset = ConfigRegister.BAR0 + bar.index * 4;
  const typeBits = (bar.is64Bit ? BarBits.TYPE_64BIT : 0) | (bar.prefetchable ? BarBits.PREFETCHABLE : 0);
  const lowAddressMask = bar.size >= TWO_POW_32 ? 0 : (~(bar.size - 1) & ~0xf) >>> 0;
  config.define(offset, 4, typeBits, { writable: lowAddressMask });
  if (bar.is64Bit) {
    const upperSizeBits = Math.floor((bar.size - 1) / TWO_POW_32);
    config.define(offset + 4, 4, 0, { writable: ~upperSizeBits >>> 0 });
  }
}
