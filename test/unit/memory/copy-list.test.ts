import { describe, expect, it } from 'vitest';
import { CopyList } from '../../../src/memory/copy-list.js';

describe('CopyList', () => {
  it('makes the queued copies in order in one run, and is empty afterwards', () => {
    const source = Uint8Array.from({ length: 256 }, (_, index) => index);
    const target = new Uint8Array(256);
    const copies = new CopyList();
    copies.add(source, 0, target, 0, 64);
    copies.add(source, 100, target, 32, 16); // overwrites part of the first
    for (let index = 0; index < 100; index++) copies.add(source, index, target, 128 + index, 1); // grows the table
    expect(target.every((byte) => byte === 0)).toBe(true); // nothing moved yet
    copies.run();
    expect([...target.subarray(0, 32)]).toEqual([...source.subarray(0, 32)]);
    expect([...target.subarray(32, 48)]).toEqual([...source.subarray(100, 116)]);
    expect([...target.subarray(48, 64)]).toEqual([...source.subarray(48, 64)]);
    expect([...target.subarray(128, 228)]).toEqual([...source.subarray(0, 100)]);
    expect(copies.count).toBe(0);
    target.fill(0);
    copies.run(); // nothing left to copy
    expect(target.every((byte) => byte === 0)).toBe(true);
  });

  it('takes back copies queued after a mark (truncate) and drops all of them (clear)', () => {
    const source = new Uint8Array(16).fill(7);
    const target = new Uint8Array(16);
    const copies = new CopyList();
    copies.add(source, 0, target, 0, 4);
    const mark = copies.count;
    copies.add(source, 0, target, 8, 4);
    copies.truncate(mark);
    copies.run();
    expect([...target]).toEqual([7, 7, 7, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    copies.add(source, 0, target, 8, 4);
    copies.clear();
    copies.run();
    expect(target[8]).toBe(0);
  });

  it('a copy outside its arrays throws, alone or with others, and leaves the list empty', () => {
    const source = new Uint8Array(16);
    const target = new Uint8Array(16);
    const copies = new CopyList();
    copies.add(source, 8, target, 0, 16); // one copy: made without the native call, checked the same way
    expect(() => copies.run()).toThrow(RangeError);
    expect(copies.count).toBe(0);
    copies.add(source, 0, target, 0, 4);
    copies.add(source, 0, target, 14, 4);
    expect(() => copies.run()).toThrow(RangeError);
    expect(copies.count).toBe(0);
  });
});
