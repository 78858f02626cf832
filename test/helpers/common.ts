/**
 * What many tests need: `sleep` (src/util's), `expectError` for the VfiodError a call must fail with, and temporary
 * directories.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { VfiodError } from '../../src/util/errors.js';

export { sleep } from '../../src/util/sleep.js';

/** Awaits `promise`, expects it to fail with a VfiodError of `code` whose message matches every fragment; returns the error. */
export async function expectError(promise: Promise<unknown>, code: string, ...fragments: Array<string | RegExp>): Promise<VfiodError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VfiodError);
  const e = error as VfiodError;
  expect(e.code, e.message).toBe(code);
  for (const f of fragments) expect(e.message).toMatch(f);
  return e;
}

/** A new, empty directory under the system's temporary directory, named `<prefix><random>`. */
export function temporaryDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}
