/** Request ids (AIP-155) over a real api.db: one run per id, the first answer for retries, REQUEST_ID_REUSED otherwise. */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiStore } from '../../../src/daemon/api-store.js';
import { requestFingerprint, RequestIds } from '../../../src/daemon/request-ids.js';
import { VfiodError } from '../../../src/util/errors.js';
import { temporaryDir } from '../../helpers/common.js';

describe('request ids', () => {
  let dir: string;
  let store: ApiStore;
  beforeEach(() => {
    dir = temporaryDir('vfiod-request-ids-');
    store = new ApiStore(path.join(dir, 'api.db'));
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('fingerprints the request without its delivery fields, whatever the field order', () => {
    const a = requestFingerprint({ vmId: 'vm1', source: { pciBdf: '0000:01:00.1', x: [1, 2] }, requestId: 'r1', wait: true });
    expect(requestFingerprint({ source: { x: [1, 2], pciBdf: '0000:01:00.1' }, vmId: 'vm1', requestId: 'r2', wait: false })).toBe(a);
    expect(requestFingerprint({ vmId: 'vm1', source: { pciBdf: '0000:01:00.1', x: [2, 1] } })).not.toBe(a);
  });

  it('runs a create once for concurrent retries, keeps only successes, and refuses the id for another request', async () => {
    const ids = new RequestIds(store);
    let runs = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const create = async (): Promise<{ n: number }> => {
      runs++;
      await gate;
      return { n: runs };
    };
    const first = ids.once('CreateController', { id: 'c1', requestId: 'r1' }, create);
    const retry = ids.once('CreateController', { id: 'c1', requestId: 'r1' }, create);
    release();
    expect(await first).toEqual({ n: 1 });
    expect(await retry).toEqual({ n: 1 });
    expect(runs).toBe(1);
    // Another RPC has its own ids.
    expect(await ids.once('PrepareDevice', { id: 'c1', requestId: 'r1' }, async () => ({ n: 99 }))).toEqual({ n: 99 });

    const reused = await ids.once('CreateController', { id: 'c2', requestId: 'r1' }, create).catch((e: unknown) => e);
    expect(reused).toBeInstanceOf(VfiodError);
    expect(reused).toMatchObject({ code: 'INVALID_ARGUMENT', details: { reason: 'REQUEST_ID_REUSED', requestId: 'r1', rpc: 'CreateController', field: 'request_id' } });

    // A failed first call is not kept: the retry runs.
    await expect(ids.once('CreateController', { id: 'c3', requestId: 'r3' }, async () => Promise.reject(new Error('refused')))).rejects.toThrow('refused');
    expect(await ids.once('CreateController', { id: 'c3', requestId: 'r3' }, async () => ({ n: 3 }))).toEqual({ n: 3 });

    // A new RequestIds over the same database (a restarted daemon) answers from it.
    store.close();
    store = new ApiStore(path.join(dir, 'api.db'));
    expect(await new RequestIds(store).once('CreateController', { id: 'c1', requestId: 'r1' }, create)).toEqual({ n: 1 });
    expect(runs).toBe(1);
  });
});
