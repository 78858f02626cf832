import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeDirectory } from '../../../src/util/make-directory.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-mkdir-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('makeDirectory', () => {
  it('makes every missing level with the mode asked for, and accepts what exists', () => {
    const target = path.join(dir, 'a', 'b', 'c');
    makeDirectory(target, 0o700);
    expect(statSync(target).isDirectory()).toBe(true);
    expect(statSync(path.join(dir, 'a')).mode & 0o777).toBe(0o700 & ~process.umask());
    makeDirectory(target, 0o700);
  });

  it('ends with an error where Node\'s recursive mkdir loops for ever (a path under /proc)', () => {
    expect(() => makeDirectory('/proc/vfiod-test/x')).toThrow('cannot create directory /proc/vfiod-test (for /proc/vfiod-test/x): ENOENT');
  });

  it('refuses a path through a file', () => {
    writeFileSync(path.join(dir, 'file'), '');
    expect(() => makeDirectory(path.join(dir, 'file', 'sub'))).toThrow(/exists and is not a directory/);
  });
});
