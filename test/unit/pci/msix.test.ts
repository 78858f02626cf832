import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { native } from '../../../src/native/index.js';
import {
  CapabilityOffset,
  Command,
  ConfigRegister,
  MsixControl,
  MsixEntry,
  MsixRegister,
  PciAccessError,
  PciFunction,
  msixLayout,
  type PciFunctionOptions,
} from '../../../src/pci/index.js';
import { Errno, IrqIndex, IrqSetFlag, RegionIndex } from '../../../src/spec/vfio.js';
import { memoryLogger, setLogLevel } from '../../../src/util/log.js';
import { sleep, temporaryDir, waitFor } from '../../helpers/common.js';

const MSIX_BAR = 4;
const VECTORS = 64;
const PBA_OFFSET = 0x1000;
const { DATA_NONE, DATA_BOOL, DATA_EVENTFD, ACTION_MASK, ACTION_UNMASK, ACTION_TRIGGER } = IrqSetFlag;
const { INTX, MSI, MSIX } = IrqIndex;

const functions: PciFunction[] = [];

function makeFunction(overrides: Partial<PciFunctionOptions> = {}): PciFunction {
  const ram = new Uint8Array(0x4000);
  const fn = new PciFunction({
    vendorId: 0x1b36,
    deviceId: 0x0010,
    subsystemVendorId: 0x1af4,
    subsystemId: 0x1100,
    revisionId: 0,
    classCode: 0x010802,
    bars: [
      {
        index: 0,
        size: ram.length,
        is64Bit: true,
        read: (offset, dst) => dst.set(ram.subarray(offset, offset + dst.length)),
        write: (offset, src) => ram.set(src, offset),
      },
    ],
    msix: { vectors: VECTORS, bar: MSIX_BAR },
    logger: memoryLogger().logger,
    ...overrides,
  });
  functions.push(fn);
  return fn;
}

afterEach(() => {
  for (const fn of functions.splice(0)) fn.releaseInterrupts();
});

function eventfds(count: number): number[] {
  return Array.from({ length: count }, () => native.eventfdCreate(0, true));
}

/** The eventfd's counter, consumed: 0 when nothing was signalled since the last call. */
function takeCount(fd: number): number {
  return native.eventfdRead(fd) ?? 0;
}

function isClosed(fd: number): boolean {
  try {
    native.eventfdRead(fd);
    return false;
  } catch (error) {
    return (error as { code?: string }).code === 'EBADF';
  }
}

function writeControl(fn: PciFunction, control: number): void {
  fn.regionWrite(RegionIndex.CONFIG, CapabilityOffset.MSIX + MsixRegister.MESSAGE_CONTROL, Uint8Array.of(control & 0xff, control >>> 8));
}

function enableMsix(fn: PciFunction): void {
  writeControl(fn, MsixControl.ENABLE);
}

function barWrite32(fn: PciFunction, offset: number, value: number): void {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
  fn.regionWrite(MSIX_BAR, offset, bytes);
}

function barRead32(fn: PciFunction, offset: number): number {
  const bytes = new Uint8Array(4);
  fn.regionRead(MSIX_BAR, offset, bytes);
  return new DataView(bytes.buffer).getUint32(0, true);
}

function pendingBits(fn: PciFunction): bigint {
  const bytes = new Uint8Array(8);
  fn.regionRead(MSIX_BAR, PBA_OFFSET, bytes);
  return new DataView(bytes.buffer).getBigUint64(0, true);
}

function setCommand(fn: PciFunction, command: number): void {
  fn.regionWrite(RegionIndex.CONFIG, ConfigRegister.COMMAND, Uint8Array.of(command & 0xff, command >>> 8));
}

function expectEinval(action: () => void): PciAccessError {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(PciAccessError);
  expect((caught as PciAccessError).errno).toBe(Errno.EINVAL);
  return caught as PciAccessError;
}

describe('MSI-X layout', () => {
  it('puts the PBA on its own page after the table and sizes the BAR to a power of two', () => {
    expect(msixLayout(64)).toEqual({ vectors: 64, tableOffset: 0, tableSize: 1024, pbaOffset: 4096, pbaSize: 8, barSize: 8192 });
    expect(msixLayout(1)).toMatchObject({ tableSize: 16, pbaOffset: 4096, pbaSize: 8, barSize: 8192 });
    expect(msixLayout(65)).toMatchObject({ pbaSize: 16 });
    expect(msixLayout(2048)).toMatchObject({ tableSize: 32768, pbaOffset: 32768, pbaSize: 256, barSize: 65536 });
    const fn = makeFunction({ msix: { vectors: 300, bar: 2 } });
    expect(fn.regions[2]!.size).toBe(msixLayout(300).barSize);
    expect(fn.irqCounts).toEqual([1, 0, 300, 0, 0]);
    expect(fn.vectorCount).toBe(300);
  });
});

describe('MSI-X table and PBA through the BAR', () => {
  it('starts with every vector masked and no pending bits', () => {
    const fn = makeFunction();
    for (let vector = 0; vector < VECTORS; vector++) {
      expect(barRead32(fn, vector * 16 + MsixEntry.VECTOR_CONTROL)).toBe(1);
      expect(barRead32(fn, vector * 16 + MsixEntry.DATA)).toBe(0);
    }
    expect(pendingBits(fn)).toBe(0n);
  });

  it('stores address and data with dword and qword writes, keeping read-only bits', () => {
    const fn = makeFunction();
    const entry = 5 * 16;
    const qword = new Uint8Array(8);
    new DataView(qword.buffer).setBigUint64(0, 0x0000_0001_fee0_1003n, true);
    fn.regionWrite(MSIX_BAR, entry + MsixEntry.ADDRESS_LOW, qword);
    barWrite32(fn, entry + MsixEntry.DATA, 0x4041);
    barWrite32(fn, entry + MsixEntry.VECTOR_CONTROL, 0xfffffffe);
    // Address bits 1:0 are read-only 0; vector control bits 31:1 are reserved.
    expect(barRead32(fn, entry + MsixEntry.ADDRESS_LOW)).toBe(0xfee01000);
    expect(barRead32(fn, entry + MsixEntry.ADDRESS_HIGH)).toBe(1);
    expect(barRead32(fn, entry + MsixEntry.DATA)).toBe(0x4041);
    expect(barRead32(fn, entry + MsixEntry.VECTOR_CONTROL)).toBe(0);
    // Reads of any size and alignment see the same bytes.
    const odd = new Uint8Array(3);
    fn.regionRead(MSIX_BAR, entry + 1, odd);
    expect(odd).toEqual(Uint8Array.of(0x10, 0xe0, 0xfe));
  });

  it('rejects writes that are not aligned dwords or qwords', () => {
    const fn = makeFunction();
    expectEinval(() => fn.regionWrite(MSIX_BAR, 0, new Uint8Array(2)));
    expectEinval(() => fn.regionWrite(MSIX_BAR, 2, new Uint8Array(4)));
    expectEinval(() => fn.regionWrite(MSIX_BAR, 4, new Uint8Array(8)));
    expectEinval(() => fn.regionWrite(MSIX_BAR, 0, new Uint8Array(16)));
    expect(barRead32(fn, MsixEntry.VECTOR_CONTROL)).toBe(1);
  });

  it('ignores writes to the PBA and reserved space', () => {
    const fn = makeFunction();
    barWrite32(fn, PBA_OFFSET, 0xffffffff);
    barWrite32(fn, 0x800, 0xffffffff);
    expect(pendingBits(fn)).toBe(0n);
    expect(barRead32(fn, 0x800)).toBe(0);
  });
});

describe('MSI-X delivery', () => {
  it('signals the eventfd bound to the vector and no other', () => {
    const fn = makeFunction();
    const fds = eventfds(4);
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 4, fds);
    enableMsix(fn);
    expect(fn.msixEnabled()).toBe(true);
    fn.signal(2);
    fn.signal(2);
    expect(fds.map(takeCount)).toEqual([0, 0, 2, 0]);
    fn.signal(0);
    expect(fds.map(takeCount)).toEqual([1, 0, 0, 0]);
  });

  it('binds from a start index and keeps other vectors', () => {
    const fn = makeFunction();
    const [low, high] = eventfds(2) as [number, number];
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [low]);
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 63, 1, [high]);
    enableMsix(fn);
    fn.signal(63);
    fn.signal(0);
    expect(takeCount(low)).toBe(1);
    expect(takeCount(high)).toBe(1);
  });

  it('delivers while our table entries are untouched (the VMM emulates the table)', () => {
    const fn = makeFunction();
    const [fd] = eventfds(1) as [number];
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [fd]);
    enableMsix(fn);
    expect(barRead32(fn, MsixEntry.VECTOR_CONTROL)).toBe(1);
    fn.signal(0);
    expect(takeCount(fd)).toBe(1);
  });

  it('honours table masks once the client writes the table: pending while masked, delivered once on unmask', () => {
    const fn = makeFunction();
    const fds = eventfds(2);
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 2, fds);
    enableMsix(fn);
    barWrite32(fn, 1 * 16 + MsixEntry.VECTOR_CONTROL, 0);
    fn.signal(0);
    fn.signal(0);
    fn.signal(1);
    expect(fds.map(takeCount)).toEqual([0, 1]);
    expect(pendingBits(fn)).toBe(0b01n);
    barWrite32(fn, 0 * 16 + MsixEntry.VECTOR_CONTROL, 0);
    expect(fds.map(takeCount)).toEqual([1, 0]);
    expect(pendingBits(fn)).toBe(0n);
    barWrite32(fn, 0 * 16 + MsixEntry.VECTOR_CONTROL, 0);
    expect(takeCount(fds[0]!)).toBe(0);
  });

  it('holds every vector pending under the function mask and delivers each once when it clears', () => {
    const fn = makeFunction();
    const fds = eventfds(3);
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 3, fds);
    writeControl(fn, MsixControl.ENABLE | MsixControl.FUNCTION_MASK);
    fn.signal(0);
    fn.signal(2);
    fn.signal(2);
    expect(fds.map(takeCount)).toEqual([0, 0, 0]);
    expect(pendingBits(fn)).toBe(0b101n);
    writeControl(fn, MsixControl.ENABLE);
    expect(fds.map(takeCount)).toEqual([1, 0, 1]);
    expect(pendingBits(fn)).toBe(0n);
  });

  it('masks and unmasks vectors with SET_IRQS, combined with the other masks', () => {
    const fn = makeFunction();
    const fds = eventfds(4);
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 4, fds);
    enableMsix(fn);
    fn.setIrqs(MSIX, ACTION_MASK | DATA_NONE, 2, 2, []);
    fn.signal(2);
    fn.signal(3);
    fn.signal(1);
    expect(fds.map(takeCount)).toEqual([0, 1, 0, 0]);
    expect(pendingBits(fn)).toBe(0b1100n);
    // DATA_BOOL selects which vectors of the range to unmask.
    fn.setIrqs(MSIX, ACTION_UNMASK | DATA_BOOL, 2, 2, [], Uint8Array.of(0, 1));
    expect(fds.map(takeCount)).toEqual([0, 0, 0, 1]);
    // Still masked by SET_IRQS: the function mask clearing does not deliver vector 2.
    writeControl(fn, MsixControl.ENABLE | MsixControl.FUNCTION_MASK);
    writeControl(fn, MsixControl.ENABLE);
    expect(takeCount(fds[2]!)).toBe(0);
    fn.setIrqs(MSIX, ACTION_UNMASK | DATA_NONE, 2, 1, []);
    expect(fds.map(takeCount)).toEqual([0, 0, 1, 0]);
    expect(pendingBits(fn)).toBe(0n);
  });

  it('keeps a signal for a vector without an eventfd pending and delivers it when one is bound', () => {
    const fn = makeFunction();
    enableMsix(fn);
    fn.signal(7);
    expect(pendingBits(fn)).toBe(1n << 7n);
    const [fd] = eventfds(1) as [number];
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 7, 1, [fd]);
    expect(takeCount(fd)).toBe(1);
    expect(pendingBits(fn)).toBe(0n);
  });

  it('fires bound eventfds on TRIGGER with DATA_NONE / DATA_BOOL (loopback)', () => {
    const fn = makeFunction();
    const fds = eventfds(3);
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 3, fds);
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_NONE, 1, 2, []);
    expect(fds.map(takeCount)).toEqual([0, 1, 1]);
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_BOOL, 0, 3, [], Uint8Array.of(1, 0, 1));
    expect(fds.map(takeCount)).toEqual([1, 0, 1]);
  });

  it('replaces and de-assigns eventfds, closing the ones it no longer uses', () => {
    const fn = makeFunction();
    const [first, second, third] = eventfds(3) as [number, number, number];
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 2, [first, second]);
    // Swap the two: neither may be closed.
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 2, [second, first]);
    expect(isClosed(first)).toBe(false);
    expect(isClosed(second)).toBe(false);
    enableMsix(fn);
    fn.signal(0);
    expect(takeCount(second)).toBe(1);
    // Replace vector 1's fd: the old one is closed.
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 1, 1, [third]);
    expect(isClosed(first)).toBe(true);
    // -1 de-assigns and closes.
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 1, 1, [-1]);
    expect(isClosed(third)).toBe(true);
    fn.signal(1);
    expect(pendingBits(fn)).toBe(0b10n);
    // DATA_EVENTFD without fds de-assigns the range.
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 2, []);
    expect(isClosed(second)).toBe(true);
  });

  it('disables with count 0: every eventfd closed, later signals only pend', () => {
    const fn = makeFunction();
    const fds = eventfds(4);
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 4, fds);
    fn.setIrqs(MSIX, ACTION_MASK | DATA_NONE, 0, 1, []);
    enableMsix(fn);
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_NONE, 0, 0, []);
    expect(fds.every(isClosed)).toBe(true);
    fn.signal(1);
    expect(pendingBits(fn)).toBe(0b10n);
    // Disabling also dropped the SET_IRQS mask of vector 0: a new binding delivers its pending signal.
    fn.signal(0);
    const [fd] = eventfds(1) as [number];
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [fd]);
    expect(takeCount(fd)).toBe(1);
  });

  it('routes to INTx while MSI-X is disabled', () => {
    const fn = makeFunction();
    const [vectorFd, intxFd] = eventfds(2) as [number, number];
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [vectorFd]);
    fn.setIrqs(INTX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [intxFd]);
    fn.signal(0);
    expect(takeCount(intxFd)).toBe(1);
    expect(takeCount(vectorFd)).toBe(0);
    enableMsix(fn);
    fn.signal(0);
    expect(takeCount(vectorFd)).toBe(1);
    expect(takeCount(intxFd)).toBe(0);
  });

  it('reset returns table, PBA and enable to power-on state but keeps eventfd bindings', () => {
    const fn = makeFunction();
    const [fd] = eventfds(1) as [number];
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [fd]);
    writeControl(fn, MsixControl.ENABLE | MsixControl.FUNCTION_MASK);
    barWrite32(fn, MsixEntry.DATA, 0x55);
    fn.signal(0);
    fn.reset();
    expect(fn.msixEnabled()).toBe(false);
    expect(pendingBits(fn)).toBe(0n);
    expect(barRead32(fn, MsixEntry.DATA)).toBe(0);
    expect(barRead32(fn, MsixEntry.VECTOR_CONTROL)).toBe(1);
    expect(isClosed(fd)).toBe(false);
    enableMsix(fn);
    barWrite32(fn, MsixEntry.VECTOR_CONTROL, 0);
    fn.signal(0);
    expect(takeCount(fd)).toBe(1);
  });

  it('releaseInterrupts closes every eventfd it owns', () => {
    const fn = makeFunction();
    const fds = eventfds(3);
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 10, 2, fds.slice(0, 2));
    fn.setIrqs(INTX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, fds.slice(2));
    fn.releaseInterrupts();
    expect(fds.every(isClosed)).toBe(true);
  });

  it('drops signals for vectors it does not have, with a warning', () => {
    const { logger, lines } = memoryLogger();
    const fn = makeFunction({ logger });
    enableMsix(fn);
    for (const vector of [64, -1, 1.5, Number.NaN]) expect(() => fn.signal(vector)).not.toThrow();
    expect(pendingBits(fn)).toBe(0n);
    expect(lines.filter((line) => line['msg'] === 'signal for a vector the function does not have')).toHaveLength(4);
  });
});

describe('INTx', () => {
  it('signals the INTx eventfd unless the Command register disables INTx', () => {
    const fn = makeFunction();
    const [fd] = eventfds(1) as [number];
    fn.setIrqs(INTX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [fd]);
    fn.signal(0);
    fn.signal(0);
    expect(takeCount(fd)).toBe(2);
    setCommand(fn, Command.INTX_DISABLE);
    fn.signal(0);
    expect(takeCount(fd)).toBe(0);
    setCommand(fn, 0);
    fn.signal(0);
    expect(takeCount(fd)).toBe(1);
  });

  it('automasks after each assertion once the client unmasks, re-firing a signal that came while masked', () => {
    const fn = makeFunction();
    const [fd] = eventfds(1) as [number];
    fn.setIrqs(INTX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [fd]);
    fn.setIrqs(INTX, ACTION_UNMASK | DATA_NONE, 0, 1, []);
    fn.signal(0);
    fn.signal(0);
    fn.signal(0);
    expect(takeCount(fd)).toBe(1);
    fn.setIrqs(INTX, ACTION_UNMASK | DATA_NONE, 0, 1, []);
    expect(takeCount(fd)).toBe(1);
    fn.setIrqs(INTX, ACTION_UNMASK | DATA_NONE, 0, 1, []);
    expect(takeCount(fd)).toBe(0);
    fn.setIrqs(INTX, ACTION_MASK | DATA_BOOL, 0, 1, [], Uint8Array.of(1));
    fn.setIrqs(INTX, ACTION_UNMASK | DATA_NONE, 0, 1, []);
    fn.signal(0);
    expect(takeCount(fd)).toBe(1);
  });

  it('unmasks when the resample eventfd is signalled (the KVM EOI path)', async () => {
    const fn = makeFunction();
    const [fd, resample] = eventfds(2) as [number, number];
    fn.setIrqs(INTX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [fd]);
    fn.setIrqs(INTX, ACTION_UNMASK | DATA_EVENTFD, 0, 1, [resample]);
    fn.signal(0);
    fn.signal(0);
    expect(takeCount(fd)).toBe(1);
    native.eventfdWrite(resample, 1);
    let delivered = 0;
    await waitFor(() => (delivered += takeCount(fd)) > 0, 'the re-fired INTx');
    expect(delivered).toBe(1);
    // The resample eventfd was drained by the function.
    expect(native.eventfdRead(resample)).toBeNull();
    fn.setIrqs(INTX, ACTION_UNMASK | DATA_EVENTFD, 0, 1, [-1]);
    expect(isClosed(resample)).toBe(true);
  });

  it('disables with count 0 and drops signals without an eventfd, with a debug log', () => {
    const { logger, lines } = memoryLogger();
    const fn = makeFunction({ logger });
    const [fd] = eventfds(1) as [number];
    fn.setIrqs(INTX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [fd]);
    fn.setIrqs(INTX, ACTION_TRIGGER | DATA_NONE, 0, 0, []);
    expect(isClosed(fd)).toBe(true);
    setLogLevel('debug');
    try {
      expect(() => fn.signal(0)).not.toThrow();
    } finally {
      setLogLevel('info');
    }
    expect(lines.find((line) => line['msg'] === 'interrupt dropped')).toMatchObject({ reason: 'no INTx eventfd bound' });
  });

  it('does not exist on a function without an interrupt pin', () => {
    const fn = makeFunction({ interruptPin: 0 });
    const [fd] = eventfds(1) as [number];
    expectEinval(() => fn.setIrqs(INTX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [fd]));
    expect(isClosed(fd), 'a refused fd stays with the caller').toBe(false);
    native.close(fd);
    expect(() => fn.signal(0)).not.toThrow();
  });
});

describe('SET_IRQS validation', () => {
  it('rejects bad indexes, flags, ranges and data, leaving the fds it was given to the caller', () => {
    const fn = makeFunction();
    const cases: Array<{ name: string; call: (fds: number[]) => void; fdCount: number }> = [
      { name: 'index 5', fdCount: 1, call: (fds) => fn.setIrqs(5, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, fds) },
      { name: 'index -1', fdCount: 1, call: (fds) => fn.setIrqs(-1, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, fds) },
      { name: 'MSI has no vectors', fdCount: 1, call: (fds) => fn.setIrqs(MSI, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, fds) },
      { name: 'ERR has no vectors', fdCount: 0, call: () => fn.setIrqs(3, ACTION_TRIGGER | DATA_NONE, 0, 0, []) },
      { name: 'two data types', fdCount: 1, call: (fds) => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD | DATA_BOOL, 0, 1, fds) },
      { name: 'no action', fdCount: 1, call: (fds) => fn.setIrqs(MSIX, DATA_EVENTFD, 0, 1, fds) },
      { name: 'two actions', fdCount: 0, call: () => fn.setIrqs(MSIX, ACTION_MASK | ACTION_UNMASK | DATA_NONE, 0, 1, []) },
      { name: 'unknown flag bits', fdCount: 1, call: (fds) => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD | 0x40, 0, 1, fds) },
      { name: 'start past the end', fdCount: 1, call: (fds) => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 64, 1, fds) },
      { name: 'range past the end', fdCount: 2, call: (fds) => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 63, 2, fds) },
      { name: 'negative start', fdCount: 1, call: (fds) => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, -1, 1, fds) },
      { name: 'fractional count', fdCount: 0, call: () => fn.setIrqs(MSIX, ACTION_MASK | DATA_NONE, 0, 1.5, []) },
      { name: 'count 0 with eventfds', fdCount: 0, call: () => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 0, []) },
      { name: 'count 0 mask', fdCount: 0, call: () => fn.setIrqs(MSIX, ACTION_MASK | DATA_NONE, 0, 0, []) },
      { name: 'fewer fds than count', fdCount: 2, call: (fds) => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 3, fds) },
      { name: 'more fds than count', fdCount: 2, call: (fds) => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, fds) },
      { name: 'fds with DATA_NONE', fdCount: 1, call: (fds) => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_NONE, 0, 1, fds) },
      { name: 'fds with DATA_BOOL', fdCount: 1, call: (fds) => fn.setIrqs(MSIX, ACTION_MASK | DATA_BOOL, 0, 1, fds, Uint8Array.of(1)) },
      { name: 'bool payload too short', fdCount: 0, call: () => fn.setIrqs(MSIX, ACTION_MASK | DATA_BOOL, 0, 2, [], Uint8Array.of(1)) },
      { name: 'bool payload missing', fdCount: 0, call: () => fn.setIrqs(MSIX, ACTION_UNMASK | DATA_BOOL, 0, 1, []) },
      { name: 'mask through an eventfd', fdCount: 1, call: (fds) => fn.setIrqs(INTX, ACTION_MASK | DATA_EVENTFD, 0, 1, fds) },
      { name: 'MSI-X unmask eventfd', fdCount: 1, call: (fds) => fn.setIrqs(MSIX, ACTION_UNMASK | DATA_EVENTFD, 0, 1, fds) },
      { name: 'INTx has one interrupt', fdCount: 2, call: (fds) => fn.setIrqs(INTX, ACTION_TRIGGER | DATA_EVENTFD, 0, 2, fds) },
      { name: 'fd below -1', fdCount: 0, call: () => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [-2]) },
    ];
    for (const testCase of cases) {
      const fds = eventfds(testCase.fdCount);
      const error = expectEinval(() => testCase.call(fds));
      expect(error.message, testCase.name).toMatch(/^SET_IRQS/);
      // The caller (the vfio-user server) closes refused fds; closing them here too would close them twice.
      expect(fds.some(isClosed), `${testCase.name}: fds left open for the caller`).toBe(false);
      fds.forEach((fd) => native.close(fd));
    }
  });

  it('rejects an fd given twice, or one already bound elsewhere, without breaking the existing binding', () => {
    const fn = makeFunction();
    const [bound, fresh] = eventfds(2) as [number, number];
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [bound]);
    expectEinval(() => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 1, 2, [fresh, fresh]));
    expect(isClosed(fresh)).toBe(false);
    native.close(fresh);
    expectEinval(() => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 5, 1, [bound]));
    expectEinval(() => fn.setIrqs(INTX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [bound]));
    expect(isClosed(bound)).toBe(false);
    enableMsix(fn);
    fn.signal(0);
    expect(takeCount(bound)).toBe(1);
  });
});

describe('interrupt fds from the client', () => {
  const O_NONBLOCK = 0o4000;
  /** The fd's file status flags, from /proc (reading a blocking eventfd at 0 to find out would hang). */
  function statusFlags(fd: number): number {
    const flags = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    return parseInt(flags![1]!, 8);
  }
  /** A blocking eventfd whose counter is at the maximum (2^64 - 2): one more write(2) of 1 would block forever. */
  function saturatedBlockingEventfd(): number {
    const fd = native.eventfdCreate(0, false);
    for (let index = 0; index < 2048; index++) native.eventfdWrite(fd, 2 ** 53 - 1);
    native.eventfdWrite(fd, 2046);
    return fd;
  }

  it('tells eventfds from other fds, and reports a saturated non-blocking counter instead of blocking', () => {
    const [efd] = eventfds(1) as [number];
    const memfd = native.memfdCreate('not-an-eventfd', 4096);
    try {
      expect(native.isEventfd(efd)).toBe(true);
      expect(native.isEventfd(memfd)).toBe(false);
      expect(native.isEventfd(0)).toBe(false);
      expect(() => native.isEventfd(0x7fff_fff0)).toThrow(expect.objectContaining({ code: 'EBADF' }));
      expect(native.eventfdWrite(efd, 1)).toBe(true);
      const saturated = saturatedBlockingEventfd();
      native.setNonBlocking(saturated, true);
      expect(native.eventfdWrite(saturated, 1)).toBe(false);
      native.close(saturated);
    } finally {
      native.close(efd);
      native.close(memfd);
    }
  });

  it('refuses fds that are not eventfds (socket, memfd) for MSI-X, INTx and the resample fd, keeping the old binding', () => {
    const fn = makeFunction();
    const [bound, resample, intx, spare] = eventfds(4) as [number, number, number, number];
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [bound]);
    fn.setIrqs(INTX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [intx]);
    fn.setIrqs(INTX, ACTION_UNMASK | DATA_EVENTFD, 0, 1, [resample]);
    const dir = temporaryDir('pci-fds-');
    const listener = native.listenUnix(path.join(dir, 'sink.sock'), 0o600, 1);
    const socket = native.connectUnix(path.join(dir, 'sink.sock'));
    const memfd = native.memfdCreate('not-an-eventfd', 4096);
    const close = vi.spyOn(native, 'close');
    try {
      for (const fd of [socket, memfd]) {
        for (const [what, call] of [
          ['MSI-X', () => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [fd])],
          ['MSI-X range', () => fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 1, 2, [spare, fd])],
          ['INTx', () => fn.setIrqs(INTX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [fd])],
          ['INTx resample', () => fn.setIrqs(INTX, ACTION_UNMASK | DATA_EVENTFD, 0, 1, [fd])],
        ] as const) {
          const error = expectEinval(call);
          expect(error.message, what).toMatch(new RegExp(`fd ${fd} is not an eventfd \\((socket:|/memfd:)`));
        }
      }
      expect(close, 'a refused request closes nothing').not.toHaveBeenCalled();
    } finally {
      close.mockRestore();
    }
    // (isClosed() would read the socket, which blocks.)
    expect([socket, memfd].map((fd) => fs.fstatSync(fd).nlink >= 0)).toEqual([true, true]);
    // The earlier bindings are intact.
    enableMsix(fn);
    fn.signal(0);
    expect(takeCount(bound)).toBe(1);
    writeControl(fn, 0);
    fn.signal(0);
    expect(takeCount(intx)).toBe(1);
    native.eventfdWrite(resample, 1); // EOI: unmasks the line
    expect(isClosed(resample)).toBe(false);
    for (const fd of [listener, socket, memfd, spare]) native.close(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('makes bound eventfds non-blocking: an interrupt into a saturated counter returns at once', () => {
    const { logger, lines } = memoryLogger();
    const fn = makeFunction({ logger });
    const msixFd = saturatedBlockingEventfd();
    const intxFd = saturatedBlockingEventfd();
    expect(statusFlags(msixFd) & O_NONBLOCK).toBe(0);
    fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [msixFd]);
    fn.setIrqs(INTX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [intxFd]);
    // Checked before signalling: were the fds still blocking, the signals below would hang this test for good.
    expect(statusFlags(msixFd) & O_NONBLOCK).toBe(O_NONBLOCK);
    expect(statusFlags(intxFd) & O_NONBLOCK).toBe(O_NONBLOCK);
    setLogLevel('debug');
    try {
      fn.signal(0); // INTx (MSI-X disabled)
      enableMsix(fn);
      fn.signal(0);
      fn.setIrqs(MSIX, ACTION_TRIGGER | DATA_NONE, 0, 1, []); // loopback trigger
    } finally {
      setLogLevel('info');
    }
    expect(lines.filter((line) => String(line['msg']).includes('counter saturated')).map((line) => line['msg'])).toEqual([
      'INTx eventfd counter saturated; interrupt already pending',
      'MSI-X eventfd counter saturated; interrupt already pending',
      'MSI-X eventfd counter saturated; interrupt already pending',
    ]);
    expect(lines.filter((line) => line['level'] === 'warn')).toEqual([]);
    // Once the consumer reads the counter, interrupts flow again.
    expect(native.eventfdRead(msixFd)).toBeGreaterThan(0);
    fn.signal(0);
    expect(takeCount(msixFd)).toBe(1);
  });

  it('a failed resample binding changes nothing and closes nothing', () => {
    const fn = makeFunction();
    const [fd, resample] = eventfds(2) as [number, number];
    fn.setIrqs(INTX, ACTION_TRIGGER | DATA_EVENTFD, 0, 1, [fd]);
    fn.setIrqs(INTX, ACTION_UNMASK | DATA_EVENTFD, 0, 1, [resample]);
    // A second watcher on the same fd in this thread is refused by libuv (EEXIST): the bind fails after validation.
    const watched = native.eventfdCreate(0, true);
    const watcher = native.createWatcher(watched, () => {});
    const close = vi.spyOn(native, 'close');
    try {
      expectEinval(() => fn.setIrqs(INTX, ACTION_UNMASK | DATA_EVENTFD, 0, 1, [watched]));
      expect(close).not.toHaveBeenCalled();
    } finally {
      close.mockRestore();
      watcher.close();
      native.close(watched);
    }
    // The old resample fd still unmasks.
    fn.setIrqs(INTX, ACTION_UNMASK | DATA_NONE, 0, 1, []);
    fn.signal(0);
    fn.signal(0);
    expect(takeCount(fd)).toBe(1);
    native.eventfdWrite(resample, 1);
    return waitFor(() => takeCount(fd) === 1, 'the INTx re-fired through the old resample fd');
  });
});
