/**
 * Request ids (AIP-155) of the create calls (CreateController, PrepareDevice, AttachDevice): the first call with an
 * id runs and its answer is kept in api.db with a fingerprint of its request; a retry with the same id and the same
 * request gets that answer without running again (also after a daemon restart, and while the first still runs); the
 * same id with another request is INVALID_ARGUMENT REQUEST_ID_REUSED. A first call that failed is not kept: it
 * changed nothing (every create rolls back), so its retry simply runs.
 */
import { createHash } from 'node:crypto';
import type { ApiStore } from './api-store.js';
import { invalid, optionalText } from './requests.js';

/** Request fields that do not change what is created, only how the answer comes: not in the fingerprint. */
const DELIVERY_FIELDS = new Set(['requestId', 'wait']);

/** sha256 of the request's fields (sorted, so field order does not matter), without the delivery fields. */
export function requestFingerprint(request: object): string {
  const canonical = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(canonical);
    if (value === null || typeof value !== 'object' || Buffer.isBuffer(value)) return value;
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, canonical((value as Record<string, unknown>)[key])]),
    );
  };
  const fields = Object.fromEntries(Object.entries(request).filter(([key]) => !DELIVERY_FIELDS.has(key)));
  return createHash('sha256').update(JSON.stringify(canonical(fields))).digest('hex');
}

export class RequestIds {
  private readonly running = new Map<string, { fingerprint: string; result: Promise<unknown> }>();

  constructor(private readonly store: ApiStore) {}

  /**
   * `create()` once per (rpc, request_id); without a request id it simply runs. `result` must be a JSON value (it is
   * kept as JSON).
   */
  async once<R extends { readonly requestId?: unknown }, T>(rpc: string, request: R, create: () => Promise<T>): Promise<T> {
    const requestId = optionalText(request.requestId, 'request_id');
    if (!requestId) return create();
    const fingerprint = requestFingerprint(request);
    const key = `${rpc}\n${requestId}`;
    const first = this.running.get(key) ?? this.stored(rpc, requestId);
    if (first) {
      if (first.fingerprint !== fingerprint) {
        throw invalid(`request_id ${requestId} was already used for another ${rpc} request: a retry must repeat the request unchanged; a new request needs a new id`, 'request_id', 'REQUEST_ID_REUSED', { requestId, rpc });
      }
      return (await first.result) as T;
    }
    const result = create().then((value) => {
      this.store.putRequest(rpc, requestId, fingerprint, value);
      return value;
    });
    this.running.set(key, { fingerprint, result });
    try {
      return await result;
    } finally {
      this.running.delete(key);
    }
  }

  private stored(rpc: string, requestId: string): { fingerprint: string; result: Promise<unknown> } | undefined {
    const stored = this.store.getRequest(rpc, requestId);
    return stored && { fingerprint: stored.fingerprint, result: Promise.resolve(stored.result) };
  }
}
