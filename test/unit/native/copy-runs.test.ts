// native.copyRuns: a batch of byte copies between Uint8Arrays, checked as a whole before any byte moves.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { native, PROT_READ, PROT_WRITE } from '../../../src/native/index.js';

const WORDS = native.copyRunWords;

/** Runs of five words (source, at, target, at, length) and an optional sixth, the flags (0 when left out). */
function runsOf(...runs: Array<[number, number, number, number, number] | [number, number, number, number, number, number]>): Uint32Array {
  const table = new Uint32Array(runs.length * WORDS);
  runs.forEach((run, index) => table.set(run, index * WORDS));
  return table;
}

function filled(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, index) => (index * 7 + seed) & 0xff);
}

describe('native.copyRuns', () => {
  it('copies every run in order, between views at any offset, longer than the prefetch window too', () => {
    const big = filled(3 * 4096 + 100, 1);
    const small = filled(4096, 2);
    const target = new Uint8Array(5 * 4096);
    // A view at an offset: indexes are relative to the view, not its buffer.
    const window = new Uint8Array(target.buffer, 4096, 4 * 4096);
    native.copyRuns(
      [big, window, small],
      runsOf([0, 100, 1, 0, 3 * 4096], [2, 0, 1, 8192, 4096], [2, 10, 1, 3 * 4096 + 5, 20]),
      3,
    );
    expect(Buffer.compare(target.subarray(4096, 4096 + 8192), big.subarray(100, 100 + 8192))).toBe(0);
    // The second run overwrote the first's last page, and the third came after both.
    expect(Buffer.compare(target.subarray(3 * 4096, 4 * 4096), small)).toBe(0);
    expect(Buffer.compare(target.subarray(4 * 4096 + 5, 4 * 4096 + 25), small.subarray(10, 30))).toBe(0);
    expect(target[0]).toBe(0);
    expect(target[4 * 4096 + 25]).toBe(0);
  });

  it('copies overlapping ranges of one array as memmove does, and only `count` runs', () => {
    const bytes = filled(64, 3);
    const expected = Uint8Array.from(bytes);
    expected.copyWithin(8, 0, 32);
    native.copyRuns([bytes], runsOf([0, 0, 0, 8, 32], [0, 0, 0, 40, 8]), 1);
    expect([...bytes]).toEqual([...expected]);
  });

  it('checks every run before copying any: a bad one throws a RangeError that names it, and nothing moves', () => {
    const source = filled(4096, 4);
    const target = new Uint8Array(4096);
    const cases: Array<[string, Uint32Array]> = [
      ['past the source end', runsOf([0, 0, 1, 0, 16], [0, 4090, 1, 0, 7])],
      ['past the target end', runsOf([0, 0, 1, 0, 16], [0, 0, 1, 4095, 2])],
      ['an array index beyond the list', runsOf([0, 0, 1, 0, 16], [0, 0, 2, 0, 1])],
      // 32-bit wrap-around must not pass: index + length is computed in 64 bits.
      ['an index near 2^32', runsOf([0, 0, 1, 0, 16], [0, 0xffff_ffff, 1, 0, 2])],
    ];
    for (const [what, runs] of cases) {
      expect(() => native.copyRuns([source, target], runs, 2), what).toThrow(
        expect.objectContaining({ name: 'RangeError', message: expect.stringContaining('run 1 ') }),
      );
      expect(target.every((byte) => byte === 0), what).toBe(true);
    }
  });

  it('refuses arguments of the wrong kind with a TypeError, and a count beyond the table with a RangeError', () => {
    const bytes = new Uint8Array(16);
    const runs = runsOf([0, 0, 0, 8, 4]);
    expect(() => native.copyRuns(bytes as unknown as Uint8Array[], runs, 1)).toThrow(TypeError);
    expect(() => native.copyRuns([bytes], new Uint8Array(5) as unknown as Uint32Array, 1)).toThrow(TypeError);
    expect(() => native.copyRuns([new Uint16Array(8) as unknown as Uint8Array], runs, 1)).toThrow(/arrays\[0\]/);
    expect(() => native.copyRuns([bytes], runs, 2)).toThrow(RangeError);
    expect(() => native.copyRuns([bytes], runs, -1)).toThrow(RangeError);
    // A detached array has length 0: any run over it is out of range.
    const gone = new Uint8Array(16);
    structuredClone(gone.buffer, { transfer: [gone.buffer] });
    expect(() => native.copyRuns([gone, bytes], runsOf([0, 0, 1, 0, 4]), 1)).toThrow(RangeError);
    // Arrays no run names are not looked at.
    expect(() => native.copyRuns([bytes, 'not an array' as unknown as Uint8Array], runs, 1)).not.toThrow();
  });

  it('copies from a guarded mapping whose file was truncated: zeroes, a counted fault, and the process lives', () => {
    const fd = native.memfdCreate('copy-runs-test', 8192);
    try {
      const mapping = native.mmap(fd, 0, 8192, PROT_READ | PROT_WRITE);
      const mapped = new Uint8Array(mapping);
      mapped.fill(0x5a);
      fs.ftruncateSync(fd, 4096); // the second page is gone under the mapping
      const faults = native.memoryFaultCount();
      const target = new Uint8Array(8192).fill(1);
      native.copyRuns([mapped, target], runsOf([0, 0, 1, 0, 8192]), 1);
      expect(target.subarray(0, 4096).every((byte) => byte === 0x5a)).toBe(true);
      expect(target.subarray(4096).every((byte) => byte === 0)).toBe(true);
      expect(native.memoryFaultCount()).toBeGreaterThan(faults);
      native.munmap(mapping);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('with the stream-target flag copies the same bytes, at any alignment and length; overlapping runs as memmove', () => {
    const STREAM = native.copyStreamTarget;
    const source = filled(3 * 4096 + 77, 5);
    for (const [sourceAt, targetAt, length] of [
      [0, 0, 4096],
      [3, 1, 4096],
      [100, 15, 2 * 4096 + 63],
      [1, 17, 15],
      [0, 64, 64],
      [7, 9, 0],
    ] as const) {
      const target = new Uint8Array(3 * 4096 + 200).fill(0xcc);
      native.copyRuns([source, target], runsOf([0, sourceAt, 1, targetAt, length, STREAM]), 1);
      expect(Buffer.compare(target.subarray(targetAt, targetAt + length), source.subarray(sourceAt, sourceAt + length))).toBe(0);
      expect(target.subarray(0, targetAt).every((value) => value === 0xcc)).toBe(true);
      expect(target.subarray(targetAt + length).every((value) => value === 0xcc)).toBe(true);
    }
    // A later run of the same call reads what a streamed run wrote (a Write, then a Read of it, in one batch).
    const store = new Uint8Array(8192);
    const guestIn = filled(4096, 9);
    const guestOut = new Uint8Array(4096);
    native.copyRuns([guestIn, store, guestOut], runsOf([0, 0, 1, 4096, 4096, STREAM], [1, 4096, 2, 0, 4096]), 2);
    expect(Buffer.compare(guestOut, guestIn)).toBe(0);
    // Within one array, overlapping: the flag is ignored and the copy behaves as memmove.
    const bytes = filled(256, 6);
    const expected = Uint8Array.from(bytes);
    expected.copyWithin(10, 0, 200);
    native.copyRuns([bytes], runsOf([0, 0, 0, 10, 200, STREAM]), 1);
    expect(Buffer.compare(bytes, expected)).toBe(0);
  });
});
