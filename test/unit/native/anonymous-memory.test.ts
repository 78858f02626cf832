// native.allocateZeroed and native.discard: the memory namespace's chunks, outside the engine's heap.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { native, PROT_READ, PROT_WRITE } from '../../../src/native/index.js';

const MIB = 1024 * 1024;
const PAGE = 4096;

/** This process's resident and huge-page memory in kB, whole-process (robust to the kernel merging mappings). */
function processMemory(): { rss: number; anonHuge: number } {
  const rollup = fs.readFileSync('/proc/self/smaps_rollup', 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? NaN);
  return { rss: field('Rss'), anonHuge: field('AnonHugePages') };
}

/** The selected value of a THP setting ('never' where the kernel has no THP). */
const thpSetting = (name: 'enabled' | 'defrag'): string => {
  try {
    return /\[([\w+]+)\]/.exec(fs.readFileSync(`/sys/kernel/mm/transparent_hugepage/${name}`, 'utf8'))?.[1] ?? 'never';
  } catch {
    return 'never';
  }
};
/** THP for madvised memory, with the kernel compacting memory on a fault if it must (so it does not give up). */
const hugePagesOnFault =
  thpSetting('enabled') !== 'never' && ['always', 'madvise', 'defer+madvise'].includes(thpSetting('defrag'));

describe('native.allocateZeroed', () => {
  it('returns zeroed, writable memory of the length asked for', () => {
    const bytes = new Uint8Array(native.allocateZeroed(3 * PAGE + 100, false));
    expect(bytes.length).toBe(3 * PAGE + 100);
    expect(bytes.every((value) => value === 0)).toBe(true);
    bytes.fill(0x5a);
    expect(bytes[bytes.length - 1]).toBe(0x5a);
  });

  it('refuses a length that is not a positive integer, or more than an ArrayBuffer holds, without touching memory', () => {
    expect(() => native.allocateZeroed(0, false)).toThrow(/length/);
    expect(() => native.allocateZeroed(-1, true)).toThrow(/length/);
    expect(() => native.allocateZeroed(1.5, true)).toThrow(/length/);
    // Past 4 GiB the engine would refuse the buffer after the memory was mapped: refused first, and the process lives.
    expect(() => native.allocateZeroed(2 ** 32 + 4096, false)).toThrow(RangeError);
    expect(() => native.allocateZeroed(2 ** 40, true)).toThrow(RangeError);
    expect(new Uint8Array(native.allocateZeroed(4096, false))[4095]).toBe(0);
  });

  it.runIf(hugePagesOnFault)('backs huge-page memory with transparent huge pages once written (skipped: THP off, or no compaction on fault)', () => {
    const before = processMemory().anonHuge;
    const bytes = new Uint8Array(native.allocateZeroed(8 * MIB, true));
    for (let offset = 0; offset < bytes.length; offset += PAGE) bytes[offset] = 1;
    // The kernel compacts on a fault for madvised memory, but may still fall back for some of it.
    expect(processMemory().anonHuge - before).toBeGreaterThanOrEqual(2 * 1024);
    expect(bytes[8 * MIB - PAGE]).toBe(1);
  });
});

describe('native.discard', () => {
  it('zeroes the range, whole pages and partial ones at either end, and nothing outside it', () => {
    const bytes = new Uint8Array(native.allocateZeroed(4 * PAGE, false));
    bytes.fill(0xee);
    native.discard(bytes.buffer, 100, 2 * PAGE + 50);
    expect(bytes.subarray(0, 100).every((value) => value === 0xee)).toBe(true);
    expect(bytes.subarray(100, 2 * PAGE + 150).every((value) => value === 0)).toBe(true);
    expect(bytes.subarray(2 * PAGE + 150).every((value) => value === 0xee)).toBe(true);
    // Within one page: a fill only.
    native.discard(bytes.buffer, 3 * PAGE + 10, 20);
    expect(bytes.subarray(3 * PAGE + 10, 3 * PAGE + 30).every((value) => value === 0)).toBe(true);
    expect(bytes[3 * PAGE + 30]).toBe(0xee);
    // The memory is still usable afterwards.
    bytes.fill(0x11, PAGE, 2 * PAGE);
    expect(bytes[PAGE + 5]).toBe(0x11);
  });

  it('gives whole pages back to the OS', () => {
    const bytes = new Uint8Array(native.allocateZeroed(64 * MIB, false));
    bytes.fill(0x42);
    const before = processMemory().rss;
    native.discard(bytes.buffer, PAGE, bytes.length - PAGE);
    const after = processMemory().rss;
    // 64 MiB less, give or take what the rest of the process did meanwhile.
    expect(before - after).toBeGreaterThan(56 * 1024);
    expect(bytes[0]).toBe(0x42);
    expect(bytes[PAGE]).toBe(0);
  });

  it('refuses any buffer allocateZeroed did not return, and ranges outside the buffer', () => {
    expect(() => native.discard(new ArrayBuffer(PAGE), 0, PAGE)).toThrow(/not one allocateZeroed\(\) returned/);
    const fd = native.memfdCreate('discard-test', PAGE);
    try {
      const mapped = native.mmap(fd, 0, PAGE, PROT_READ | PROT_WRITE);
      expect(() => native.discard(mapped, 0, PAGE)).toThrow(/not one allocateZeroed\(\) returned/);
      native.munmap(mapped);
    } finally {
      fs.closeSync(fd);
    }
    const bytes = new Uint8Array(native.allocateZeroed(2 * PAGE, false));
    bytes.fill(1);
    expect(() => native.discard(bytes.buffer, PAGE, PAGE + 1)).toThrow(RangeError);
    expect(() => native.discard(bytes.buffer, -1, 1)).toThrow(/offset/);
    expect(bytes.every((value) => value === 1)).toBe(true);
    // allocateZeroed memory is not a mapping munmap() may take.
    expect(() => native.munmap(bytes.buffer)).toThrow(/not a live mapping/);
  });
});
