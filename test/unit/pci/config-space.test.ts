import { describe, expect, it } from 'vitest';
import {
  BarBits,
  CapabilityId,
  CapabilityOffset,
  Command,
  ConfigRegister,
  ConfigSpace,
  DeviceCapability,
  DeviceControl,
  MsixControl,
  MsixRegister,
  PciAccessError,
  PciFunction,
  PcieRegister,
  PmControl,
  PmRegister,
  Status,
  type BarDefinition,
  type PciFunctionOptions,
} from '../../../src/pci/index.js';
import { Errno, RegionIndex } from '../../../src/spec/vfio.js';
import { memoryLogger } from '../../../src/util/log.js';

const CONFIG = RegionIndex.CONFIG;
const PCIE = CapabilityOffset.PCI_EXPRESS;
const DEVICE_CONTROL = PCIE + PcieRegister.DEVICE_CONTROL;

/** A RAM-like BAR: a real device region backed by bytes, enough to see that accesses reach the right BAR. */
function ramBar(index: number, size: number, is64Bit: boolean, prefetchable = false): BarDefinition & { ram: Uint8Array } {
  const ram = new Uint8Array(size);
  return {
    index,
    size,
    is64Bit,
    prefetchable,
    ram,
    read: (offset, dst) => dst.set(ram.subarray(offset, offset + dst.length)),
    write: (offset, src) => ram.set(src, offset),
  };
}

function makeFunction(overrides: Partial<PciFunctionOptions> = {}): PciFunction {
  return new PciFunction({
    vendorId: 0x1b36,
    deviceId: 0x0010,
    subsystemVendorId: 0x1af4,
    subsystemId: 0x1100,
    revisionId: 0x02,
    classCode: 0x010802,
    bars: [ramBar(0, 0x4000, true), ramBar(2, 0x10000, false, true)],
    msix: { vectors: 64, bar: 4 },
    logger: memoryLogger().logger,
    ...overrides,
  });
}

function read(fn: PciFunction, offset: number, length: number): Uint8Array {
  const dst = new Uint8Array(length);
  fn.regionRead(CONFIG, offset, dst);
  return dst;
}
function read8(fn: PciFunction, offset: number): number {
  return read(fn, offset, 1)[0]!;
}
function read16(fn: PciFunction, offset: number): number {
  const bytes = read(fn, offset, 2);
  return bytes[0]! | (bytes[1]! << 8);
}
function read32(fn: PciFunction, offset: number): number {
  const bytes = read(fn, offset, 4);
  return new DataView(bytes.buffer).getUint32(0, true);
}
function write8(fn: PciFunction, offset: number, value: number): void {
  fn.regionWrite(CONFIG, offset, Uint8Array.of(value));
}
function write16(fn: PciFunction, offset: number, value: number): void {
  fn.regionWrite(CONFIG, offset, Uint8Array.of(value & 0xff, value >>> 8));
}
function write32(fn: PciFunction, offset: number, value: number): void {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
  fn.regionWrite(CONFIG, offset, bytes);
}

function expectAccessError(action: () => void, errno: number = Errno.EINVAL): PciAccessError {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(PciAccessError);
  expect((caught as PciAccessError).errno).toBe(errno);
  return caught as PciAccessError;
}

describe('PCI config space: type 0 header', () => {
  it('presents the identity the function was built with', () => {
    const fn = makeFunction();
    expect(read16(fn, ConfigRegister.VENDOR_ID)).toBe(0x1b36);
    expect(read16(fn, ConfigRegister.DEVICE_ID)).toBe(0x0010);
    expect(read8(fn, ConfigRegister.REVISION_ID)).toBe(0x02);
    expect(read32(fn, ConfigRegister.REVISION_ID) >>> 8).toBe(0x010802);
    expect(read16(fn, ConfigRegister.SUBSYSTEM_VENDOR_ID)).toBe(0x1af4);
    expect(read16(fn, ConfigRegister.SUBSYSTEM_ID)).toBe(0x1100);
    expect(read8(fn, ConfigRegister.HEADER_TYPE)).toBe(0);
    expect(read8(fn, ConfigRegister.CAPABILITIES_POINTER)).toBe(0x40);
    expect(read8(fn, ConfigRegister.INTERRUPT_PIN)).toBe(1);
    expect(read16(fn, ConfigRegister.STATUS)).toBe(Status.CAPABILITIES_LIST);
    expect(read16(fn, ConfigRegister.COMMAND)).toBe(0);
  });

  it('takes the interrupt pin from the options, and no pin means no INTx', () => {
    const withoutPin = makeFunction({ interruptPin: 0 });
    expect(read8(withoutPin, ConfigRegister.INTERRUPT_PIN)).toBe(0);
    expect(withoutPin.irqCounts[0]).toBe(0);
    const pinB = makeFunction({ interruptPin: 2 });
    expect(read8(pinB, ConfigRegister.INTERRUPT_PIN)).toBe(2);
    expect(pinB.irqCounts).toEqual([1, 0, 64, 0, 0]);
  });

  it('lets the guest change only the defined Command bits', () => {
    const fn = makeFunction();
    write16(fn, ConfigRegister.COMMAND, 0xffff);
    expect(read16(fn, ConfigRegister.COMMAND)).toBe(
      Command.IO_SPACE | Command.MEMORY_SPACE | Command.BUS_MASTER | Command.SERR_ENABLE | Command.INTX_DISABLE,
    );
    expect(fn.busMasterEnabled()).toBe(true);
    write16(fn, ConfigRegister.COMMAND, Command.MEMORY_SPACE);
    expect(read16(fn, ConfigRegister.COMMAND)).toBe(Command.MEMORY_SPACE);
    expect(fn.busMasterEnabled()).toBe(false);
  });

  it('keeps read-only identity registers and read-only-zero registers unchanged', () => {
    const fn = makeFunction();
    const before = read(fn, 0, 0x40);
    for (const offset of [0x00, 0x08, 0x0c, 0x28, 0x2c, 0x30, 0x34, 0x3c]) write32(fn, offset, 0xffffffff);
    const after = read(fn, 0, 0x40);
    // Only cache line size (0x0c) and interrupt line (0x3c) may change in these dwords.
    expect(after[ConfigRegister.CACHE_LINE_SIZE]).toBe(0xff);
    expect(after[ConfigRegister.INTERRUPT_LINE]).toBe(0xff);
    for (const offset of [0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0a, 0x0b, 0x0d, 0x0e, 0x0f, 0x2c, 0x2d, 0x2e, 0x2f, 0x34, 0x3d, 0x3e, 0x3f]) {
      expect(after[offset], `offset 0x${offset.toString(16)}`).toBe(before[offset]);
    }
    expect(read32(fn, ConfigRegister.EXPANSION_ROM)).toBe(0);
    expect(read32(fn, ConfigRegister.CARDBUS_CIS)).toBe(0);
  });

  it('treats the Status error bits as write-1-to-clear and the capability bit as read-only', () => {
    const fn = makeFunction();
    write16(fn, ConfigRegister.STATUS, 0xffff);
    expect(read16(fn, ConfigRegister.STATUS)).toBe(Status.CAPABILITIES_LIST);

    // The mechanism itself, on a bare config space where the device has raised two error bits.
    const config = new ConfigSpace();
    config.define(ConfigRegister.STATUS, 2, Status.CAPABILITIES_LIST, {
      writeOneToClear: Status.RECEIVED_MASTER_ABORT | Status.SIGNALED_TARGET_ABORT,
    });
    config.set16(ConfigRegister.STATUS, Status.CAPABILITIES_LIST | Status.RECEIVED_MASTER_ABORT | Status.SIGNALED_TARGET_ABORT);
    // Writing 0 changes nothing; writing 1 to one bit clears just that bit.
    config.guestWriteDword(ConfigRegister.COMMAND, 0, 0xffff0000);
    expect(config.read16(ConfigRegister.STATUS)).toBe(
      Status.CAPABILITIES_LIST | Status.RECEIVED_MASTER_ABORT | Status.SIGNALED_TARGET_ABORT,
    );
    config.guestWriteDword(ConfigRegister.COMMAND, Status.RECEIVED_MASTER_ABORT << 16, 0xffff0000);
    expect(config.read16(ConfigRegister.STATUS)).toBe(Status.CAPABILITIES_LIST | Status.SIGNALED_TARGET_ABORT);
    // Byte enables limit the write: a 1 in a disabled byte lane does nothing.
    config.guestWriteDword(ConfigRegister.COMMAND, Status.SIGNALED_TARGET_ABORT << 16, 0x00ff0000);
    expect(config.read16(ConfigRegister.STATUS)).toBe(Status.CAPABILITIES_LIST | Status.SIGNALED_TARGET_ABORT);
    config.guestWriteDword(ConfigRegister.COMMAND, Status.SIGNALED_TARGET_ABORT << 16, 0xff000000);
    expect(config.read16(ConfigRegister.STATUS)).toBe(Status.CAPABILITIES_LIST);
  });
});

describe('PCI config space: BARs', () => {
  it('sizes a 64-bit BAR through both dwords and keeps programmed addresses aligned', () => {
    const fn = makeFunction();
    expect(read32(fn, 0x10)).toBe(BarBits.TYPE_64BIT);
    write32(fn, 0x10, 0xffffffff);
    write32(fn, 0x14, 0xffffffff);
    expect(read32(fn, 0x10)).toBe(0xffffc000 + BarBits.TYPE_64BIT);
    expect(read32(fn, 0x14)).toBe(0xffffffff);
    write32(fn, 0x10, 0xfeb01234);
    write32(fn, 0x14, 0x00000001);
    expect(read32(fn, 0x10)).toBe(0xfeb00000 + BarBits.TYPE_64BIT);
    expect(read32(fn, 0x14)).toBe(1);
  });

  it('sizes a 32-bit prefetchable BAR and the MSI-X BAR', () => {
    const fn = makeFunction();
    expect(read32(fn, 0x18)).toBe(BarBits.PREFETCHABLE);
    write32(fn, 0x18, 0xffffffff);
    expect(read32(fn, 0x18)).toBe(0xffff0000 + BarBits.PREFETCHABLE);
    const msixBar = 0x10 + 4 * 4;
    write32(fn, msixBar, 0xffffffff);
    expect(read32(fn, msixBar)).toBe(0xffffe000);
    expect(fn.regions[4]!.size).toBe(8192);
  });

  it('sizes a 64-bit BAR larger than 4 GiB in the upper dword', () => {
    const fn = makeFunction({
      bars: [ramBar(0, 0x4000, true), { ...ramBar(2, 4096, true, true), size: 2 ** 33 }],
    });
    write32(fn, 0x18, 0xffffffff);
    write32(fn, 0x1c, 0xffffffff);
    expect(read32(fn, 0x18)).toBe(BarBits.TYPE_64BIT | BarBits.PREFETCHABLE);
    expect(read32(fn, 0x1c)).toBe(0xfffffffe);
  });

  it('reads absent BARs and the expansion ROM as 0 even after sizing writes', () => {
    const fn = makeFunction();
    for (const offset of [0x1c, 0x24, ConfigRegister.EXPANSION_ROM]) {
      write32(fn, offset, 0xffffffff);
      expect(read32(fn, offset), `offset 0x${offset.toString(16)}`).toBe(0);
    }
  });

  it('describes regions: BARs with sizes, the upper half and absent BARs empty, config 4 KiB', () => {
    const fn = makeFunction();
    expect(fn.regions.map((region) => region.size)).toEqual([0x4000, 0, 0x10000, 0, 8192, 0, 0, 4096, 0]);
    expect(fn.regions[0]).toMatchObject({ readable: true, writable: true });
    expect(fn.regions[1]).toMatchObject({ readable: false, writable: false });
    expect(fn.regions[CONFIG]).toMatchObject({ readable: true, writable: true });
  });

  it('passes BAR accesses to the right handler and reports mmap backing', () => {
    const bar0 = ramBar(0, 0x4000, true);
    const bar2 = ramBar(2, 0x10000, false);
    const fn = makeFunction({
      bars: [{ ...bar0, mmap: { fd: 99, fdOffset: 0, areas: [{ offset: 0x1000, size: 0x1000 }] } }, bar2],
    });
    fn.regionWrite(0, 0x3ffc, Uint8Array.of(1, 2, 3, 4));
    fn.regionWrite(2, 0, Uint8Array.of(9));
    expect(bar0.ram.subarray(0x3ffc)).toEqual(Uint8Array.of(1, 2, 3, 4));
    expect(bar2.ram[0]).toBe(9);
    const back = new Uint8Array(4);
    fn.regionRead(0, 0x3ffc, back);
    expect(back).toEqual(Uint8Array.of(1, 2, 3, 4));
    expect(fn.regions[0]!.mmap).toEqual({ fd: 99, fdOffset: 0, areas: [{ offset: 0x1000, size: 0x1000 }] });
  });

  it('rejects inconsistent BAR definitions at construction', () => {
    expect(() => makeFunction({ bars: [ramBar(0, 0x3000, false)] })).toThrow(/power of two/);
    expect(() => makeFunction({ bars: [ramBar(0, 2048, false)] })).toThrow(/power of two/);
    expect(() => makeFunction({ bars: [ramBar(3, 4096, true)] })).toThrow(/MSI-X/);
    expect(() => makeFunction({ bars: [ramBar(5, 4096, true)] })).toThrow(/last BAR/);
    expect(() => makeFunction({ bars: [ramBar(0, 4096, true), ramBar(1, 4096, false)] })).toThrow(/upper half/);
    expect(() => makeFunction({ bars: [ramBar(6, 4096, false)] })).toThrow(/0\.\.5/);
    expect(() => makeFunction({ msix: { vectors: 0, bar: 4 } })).toThrow(/vector count/);
    expect(() => makeFunction({ msix: { vectors: 4096, bar: 4 } })).toThrow(/vector count/);
    expect(() => makeFunction({ vendorId: 0x10000 })).toThrow(/vendorId/);
    expect(() => makeFunction({ interruptPin: 5 })).toThrow(/interruptPin/);
    expect(() =>
      makeFunction({ bars: [{ ...ramBar(0, 0x4000, true), mmap: { fd: 3, fdOffset: 0, areas: [{ offset: 0x3000, size: 0x2000 }] } }] }),
    ).toThrow(/outside the BAR/);
  });
});

describe('PCI config space: capabilities', () => {
  it('walks from 0x34 through PM, MSI-X and PCI Express to the end of the list', () => {
    const fn = makeFunction();
    const found: Array<{ id: number; offset: number }> = [];
    let offset = read8(fn, ConfigRegister.CAPABILITIES_POINTER);
    while (offset !== 0 && found.length < 48) {
      expect(offset % 4).toBe(0);
      expect(offset).toBeGreaterThanOrEqual(0x40);
      expect(offset).toBeLessThan(0x100);
      found.push({ id: read8(fn, offset), offset });
      offset = read8(fn, offset + 1);
    }
    expect(found.map((cap) => cap.id)).toEqual([CapabilityId.POWER_MANAGEMENT, CapabilityId.MSIX, CapabilityId.PCI_EXPRESS]);
    // No extended capabilities: a zero header at 0x100 ends that list.
    expect(read32(fn, 0x100)).toBe(0);
  });

  it('presents Power Management v1.2 with D0/D3hot transitions and NoSoftReset', () => {
    const fn = makeFunction();
    const pm = CapabilityOffset.POWER_MANAGEMENT;
    expect(read16(fn, pm + PmRegister.CAPABILITIES) & 0b111).toBe(0b011);
    const control = pm + PmRegister.CONTROL_STATUS;
    expect(read16(fn, control)).toBe(PmControl.NO_SOFT_RESET);

    write32(fn, 0x10, 0xfeb00000);
    write16(fn, ConfigRegister.COMMAND, Command.MEMORY_SPACE | Command.BUS_MASTER);
    write16(fn, control, PmControl.D3_HOT);
    expect(read16(fn, control)).toBe(PmControl.D3_HOT | PmControl.NO_SOFT_RESET);
    // D1 is not supported: the write is discarded and the state stays D3hot.
    write16(fn, control, 1);
    expect(read16(fn, control) & PmControl.POWER_STATE_MASK).toBe(PmControl.D3_HOT);
    write16(fn, control, 0xffff & ~PmControl.POWER_STATE_MASK);
    expect(read16(fn, control)).toBe(PmControl.D0 | PmControl.NO_SOFT_RESET);
    // NoSoftReset: coming back to D0 keeps the programmed state.
    expect(read32(fn, 0x10)).toBe(0xfeb00000 + BarBits.TYPE_64BIT);
    expect(fn.busMasterEnabled()).toBe(true);
  });

  it('presents MSI-X with the table and PBA in the MSI-X BAR and writable enable / function mask', () => {
    const fn = makeFunction({ msix: { vectors: 64, bar: 4 } });
    const msix = CapabilityOffset.MSIX;
    expect(read16(fn, msix + MsixRegister.MESSAGE_CONTROL)).toBe(63);
    expect(read32(fn, msix + MsixRegister.TABLE)).toBe(0x0000 | 4);
    expect(read32(fn, msix + MsixRegister.PBA)).toBe(0x1000 | 4);

    write16(fn, msix + MsixRegister.MESSAGE_CONTROL, 0xffff);
    expect(read16(fn, msix + MsixRegister.MESSAGE_CONTROL)).toBe(MsixControl.ENABLE | MsixControl.FUNCTION_MASK | 63);
    expect(fn.msixEnabled()).toBe(true);
    write16(fn, msix + MsixRegister.MESSAGE_CONTROL, MsixControl.FUNCTION_MASK);
    expect(fn.msixEnabled()).toBe(false);
    expect(read16(fn, msix + MsixRegister.MESSAGE_CONTROL)).toBe(MsixControl.FUNCTION_MASK | 63);
    // The table and PBA registers are read-only.
    write32(fn, msix + MsixRegister.TABLE, 0xffffffff);
    expect(read32(fn, msix + MsixRegister.TABLE)).toBe(4);
  });

  it('presents a PCI Express v2 endpoint with FLR, x4 Gen3 link and completion timeout ranges', () => {
    const fn = makeFunction();
    const capabilities = read16(fn, PCIE + PcieRegister.CAPABILITIES);
    expect(capabilities & 0xf).toBe(2);
    expect((capabilities >> 4) & 0xf).toBe(0);
    const deviceCapabilities = read32(fn, PCIE + PcieRegister.DEVICE_CAPABILITIES);
    expect(deviceCapabilities & DeviceCapability.FUNCTION_LEVEL_RESET).not.toBe(0);
    expect(deviceCapabilities & 0b111).toBe(1);
    const link = read32(fn, PCIE + PcieRegister.LINK_CAPABILITIES);
    expect(link & 0xf).toBe(3);
    expect((link >> 4) & 0x3f).toBe(4);
    const linkStatus = read16(fn, PCIE + PcieRegister.LINK_STATUS);
    expect(linkStatus & 0xf).toBe(3);
    expect((linkStatus >> 4) & 0x3f).toBe(4);
    expect(read32(fn, PCIE + PcieRegister.DEVICE_CAPABILITIES_2) & 0x1f).toBe(0x1f);
    write16(fn, PCIE + PcieRegister.DEVICE_CONTROL_2, 0xffff);
    expect(read16(fn, PCIE + PcieRegister.DEVICE_CONTROL_2)).toBe(0x1f);
  });

  it('lets the guest set Device Control fields but never an unsupported Max_Payload_Size', () => {
    const fn = makeFunction();
    const initial = read16(fn, DEVICE_CONTROL);
    expect(initial & DeviceControl.MAX_READ_REQUEST_MASK).toBe(0b010 << 12);
    write16(fn, DEVICE_CONTROL, DeviceControl.EXTENDED_TAG | (1 << DeviceControl.MAX_PAYLOAD_SHIFT) | DeviceControl.FATAL_ERROR_REPORTING);
    expect(read16(fn, DEVICE_CONTROL)).toBe(
      DeviceControl.EXTENDED_TAG | (1 << DeviceControl.MAX_PAYLOAD_SHIFT) | DeviceControl.FATAL_ERROR_REPORTING,
    );
    // 512-byte payload (encoding 2) exceeds what Device Capabilities advertises: the old MPS stays.
    write16(fn, DEVICE_CONTROL, 2 << DeviceControl.MAX_PAYLOAD_SHIFT);
    expect(read16(fn, DEVICE_CONTROL)).toBe(1 << DeviceControl.MAX_PAYLOAD_SHIFT);
  });
});

describe('PCI function level reset', () => {
  it('calls the hook, returns config to power-on values and reads Initiate FLR as 0', () => {
    let hookCalls = 0;
    let bar0SeenByHook = -1;
    const fn = makeFunction({
      onFunctionLevelReset: () => {
        hookCalls++;
        bar0SeenByHook = read32(fn, 0x10);
      },
    });
    const powerOn = read(fn, 0, 4096);
    write32(fn, 0x10, 0xfeb00000);
    write16(fn, ConfigRegister.COMMAND, Command.MEMORY_SPACE | Command.BUS_MASTER);
    write8(fn, ConfigRegister.INTERRUPT_LINE, 11);
    write16(fn, CapabilityOffset.MSIX + MsixRegister.MESSAGE_CONTROL, MsixControl.ENABLE);
    write16(fn, DEVICE_CONTROL, DeviceControl.EXTENDED_TAG);
    expect(fn.msixEnabled()).toBe(true);

    write16(fn, DEVICE_CONTROL, DeviceControl.INITIATE_FLR | DeviceControl.EXTENDED_TAG);
    expect(hookCalls).toBe(1);
    // The hook runs before the reset, while the function still has its programmed state.
    expect(bar0SeenByHook).toBe(0xfeb00000 + BarBits.TYPE_64BIT);
    expect(read(fn, 0, 4096)).toEqual(powerOn);
    expect(read16(fn, DEVICE_CONTROL) & DeviceControl.INITIATE_FLR).toBe(0);
    expect(fn.msixEnabled()).toBe(false);
    expect(fn.busMasterEnabled()).toBe(false);
  });

  it('still resets when the hook throws, and logs the failure', () => {
    const { logger, lines } = memoryLogger();
    const fn = makeFunction({
      logger,
      onFunctionLevelReset: () => {
        throw new Error('controller refused');
      },
    });
    write16(fn, ConfigRegister.COMMAND, Command.BUS_MASTER);
    // A dword write covering Device Control and Device Status.
    write32(fn, DEVICE_CONTROL, DeviceControl.INITIATE_FLR);
    expect(fn.busMasterEnabled()).toBe(false);
    expect(lines.some((line) => line['msg'] === 'function level reset hook failed')).toBe(true);
  });

  it('reset() returns to power-on values without a hook call', () => {
    let hookCalls = 0;
    const fn = makeFunction({ onFunctionLevelReset: () => hookCalls++ });
    const powerOn = read(fn, 0, 4096);
    write32(fn, 0x18, 0xc0000000);
    write16(fn, CapabilityOffset.POWER_MANAGEMENT + PmRegister.CONTROL_STATUS, PmControl.D3_HOT);
    fn.reset();
    expect(read(fn, 0, 4096)).toEqual(powerOn);
    expect(hookCalls).toBe(0);
  });
});

describe('PCI config space: access sizes and bounds', () => {
  it('serves unaligned and odd-sized reads from the same bytes as dword reads', () => {
    const fn = makeFunction();
    const whole = read(fn, 0, 0x40);
    expect(read(fn, 1, 2)).toEqual(whole.subarray(1, 3));
    expect(read(fn, 3, 3)).toEqual(whole.subarray(3, 6));
    expect(read(fn, 0x2e, 7)).toEqual(whole.subarray(0x2e, 0x35));
  });

  it('splits writes that cross dword boundaries and applies each byte with its own mask', () => {
    const fn = makeFunction();
    const classHigh = read8(fn, 0x0b);
    // 0x0b (class code, read-only) and 0x0c (cache line size, writable) in one 2-byte write.
    fn.regionWrite(CONFIG, 0x0b, Uint8Array.of(0x55, 0x10));
    expect(read8(fn, 0x0b)).toBe(classHigh);
    expect(read8(fn, ConfigRegister.CACHE_LINE_SIZE)).toBe(0x10);
    // A 4-byte write at offset 2: device id (read-only) and command (writable).
    fn.regionWrite(CONFIG, 0x02, Uint8Array.of(0xaa, 0xbb, Command.BUS_MASTER, 0));
    expect(read16(fn, ConfigRegister.DEVICE_ID)).toBe(0x0010);
    expect(fn.busMasterEnabled()).toBe(true);
  });

  it('reads 256 bytes and the whole 4 KiB at once, identical to dword reads', () => {
    const fn = makeFunction();
    write32(fn, 0x10, 0xfeb00000);
    const dwords = new Uint8Array(4096);
    for (let offset = 0; offset < 4096; offset += 4) dwords.set(read(fn, offset, 4), offset);
    expect(read(fn, 0, 256)).toEqual(dwords.subarray(0, 256));
    expect(read(fn, 0, 4096)).toEqual(dwords);
  });

  it('rejects out-of-range and absent-region accesses with EINVAL', () => {
    const fn = makeFunction();
    expectAccessError(() => fn.regionRead(CONFIG, 4095, new Uint8Array(2)));
    expectAccessError(() => fn.regionRead(CONFIG, 4096, new Uint8Array(1)));
    expectAccessError(() => fn.regionWrite(CONFIG, -1, new Uint8Array(1)));
    expectAccessError(() => fn.regionRead(CONFIG, Number.NaN, new Uint8Array(1)));
    expectAccessError(() => fn.regionRead(CONFIG, 1.5, new Uint8Array(1)));
    expectAccessError(() => fn.regionRead(9, 0, new Uint8Array(4)));
    expectAccessError(() => fn.regionRead(-1, 0, new Uint8Array(4)));
    expectAccessError(() => fn.regionRead(0.5, 0, new Uint8Array(4)));
    for (const absent of [1, 3, 5, RegionIndex.ROM, RegionIndex.VGA]) {
      expectAccessError(() => fn.regionRead(absent, 0, new Uint8Array(4)));
      expectAccessError(() => fn.regionWrite(absent, 0, new Uint8Array(4)));
    }
    expectAccessError(() => fn.regionRead(0, 0x4000 - 2, new Uint8Array(4)));
    expectAccessError(() => fn.regionWrite(4, 8192, new Uint8Array(4)));
    const error = expectAccessError(() => fn.regionRead(2, 0x10000, new Uint8Array(1)));
    expect(error.message).toMatch(/BAR2/);
  });

  it('survives arbitrary writes of every size at every offset', () => {
    const fn = makeFunction({ onFunctionLevelReset: () => undefined });
    let seed = 0x2545f491;
    const random = (): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return seed >>> 0;
    };
    for (let offset = 0; offset < 4096; offset++) {
      const length = Math.min(1 + (random() % 8), 4096 - offset);
      const bytes = new Uint8Array(length);
      for (let i = 0; i < length; i++) bytes[i] = random() & 0xff;
      fn.regionWrite(CONFIG, offset, bytes);
    }
    expect(read16(fn, ConfigRegister.VENDOR_ID)).toBe(0x1b36);
    expect(read8(fn, ConfigRegister.CAPABILITIES_POINTER)).toBe(0x40);
    expect(read16(fn, CapabilityOffset.MSIX + MsixRegister.MESSAGE_CONTROL) & MsixControl.TABLE_SIZE_MASK).toBe(63);
    expect(read32(fn, 0x100)).toBe(0);
  });
});
