/**
 * What many tests need: `sleep` (src/util's), `waitFor` something that will happen, `expectError` for the VfiodError a
 * call must fail with, and temporary directories.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { VfiodError } from '../../src/util/errors.js';

import { sleep } from '../../src/util/sleep.js';

export { sleep };

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

/**
 * Polls `probe` until it returns a value other than null, undefined or false, and returns that value. The deadline
 * only ends a wait for something that never happens: it is long, because a busy 2-core CI machine is slow and a
 * passing test never waits for it.
 */
export async function waitFor<T>(
  probe: () => T | null | undefined | false,
  what: string,
  timeoutMs = 60_000,
  pollMs = 2,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== null && value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}
