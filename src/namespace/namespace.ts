/**
 * The contract between the NVMe controller and whatever stores a namespace's blocks: memory, a local file or block
 * device, or a remote NVMe/TCP namespace. The controller knows namespaces only through this interface.
 *
 * Offsets and lengths are in bytes and always multiples of `blockSize`; the controller has already checked them
 * against `blockCount`. Buffers are views straight into guest memory: an implementation moves data between them and
 * its store (no staging copy where the platform allows). Each operation returns `undefined` when it completed
 * synchronously (the memory backend's fast path) or a promise otherwise; failures throw/reject `NamespaceError`.
 */
import type { CopyList } from '../memory/copy-list.js';

export interface Namespace {
  /** Bytes per logical block: 512 or 4096. */
  readonly blockSize: number;
  /** Number of logical blocks. */
  readonly blockCount: number;
  /** Short human description for logs, e.g. `file:/var/lib/vfiod/disk0.img`. */
  readonly description: string;
  /** Whether writes may sit in a volatile cache until `flush` (reported as VWC to the guest). */
  readonly volatileWriteCache: boolean;
  /** Largest single transfer the backend accepts in bytes (0 = no limit); the controller splits or limits MDTS. */
  readonly maxTransferBytes: number;
  /** Writes are refused (Identify reports the namespace write protected). */
  readonly readOnly?: boolean;
  /** Whether `deallocate` really releases space (thin provisioning / discard). */
  readonly supportsDeallocate: boolean;
  /** Counts the backend keeps about its store, for SMART / capacity reporting. */
  usage?(): NamespaceUsage;
  /** A remote backend's paths to its store (NVMe/TCP: one per target address), for logs, tests and metrics. */
  pathStates?(): NamespacePath[];

  read(offset: number, buffers: readonly Uint8Array[]): Promise<void> | void;
  write(offset: number, buffers: readonly Uint8Array[]): Promise<void> | void;
  /**
   * Optional, for stores whose reads and writes always complete synchronously (memory): `read` / `write` of the
   * `length` bytes of `bytes` from index `at`, passed as (array, index, length) rather than as a view, so the
   * controller's data path builds no view per command. Same checks and errors as `read` / `write`; never async.
   * With `copies`, the data is not moved yet: the copies are queued there (in order with the other copies queued
   * since its last run, so a Read queued after a Write of the same blocks reads the new data) and made when the
   * caller runs the list.
   */
  readSync?(offset: number, bytes: Uint8Array, at: number, length: number, copies?: CopyList): void;
  writeSync?(offset: number, bytes: Uint8Array, at: number, length: number, copies?: CopyList): void;
  flush(): Promise<void> | void;
  /** Releases the ranges; reads of them return zeroes afterwards (DLFEAT: deallocated blocks read as 0). */
  deallocate(ranges: readonly ByteRange[]): Promise<void> | void;
  writeZeroes(offset: number, length: number): Promise<void> | void;
  /**
   * Optional: gives up the operations in flight that were called with `buffers` (the same array object) before they
   * settle. True only when none of them will touch those buffers again: their promises still settle (a rejection is
   * fine), their late data is dropped. False when one of them is beyond recall (e.g. a file read already running on a
   * thread, which the kernel finishes into the buffers whatever happens); the caller then waits for it. Used when
   * the guest memory behind the buffers is being unmapped, or a reset has waited too long for a stuck backend.
   */
  abandon?(buffers: readonly Uint8Array[]): boolean;
  /**
   * Optional: grows the namespace to `sizeBytes` (a multiple of `blockSize`, larger than now) while it serves; the new
   * blocks read as zeroes and `blockCount` reports the new size once it resolves. Backends whose size is not theirs
   * to change (a block device, a remote namespace) do not have it. Rejects with NamespaceError.
   */
  grow?(sizeBytes: number): Promise<void>;
  /** Flushes and releases the backend; no operation is called after `close`. */
  close(): Promise<void>;
}

export interface ByteRange {
  offset: number;
  length: number;
}

/** What a path of a remote namespace can be doing. */
export const NAMESPACE_PATH_STATES = ['connecting', 'live', 'down', 'closed'] as const;

export interface NamespacePath {
  /** `host:port`. */
  address: string;
  state: (typeof NAMESPACE_PATH_STATES)[number];
  /** Why it last failed ('' when live). */
  error: string;
  /** Times it became live again after its first connection. */
  reconnects: number;
}

export interface NamespaceUsage {
  /** Bytes actually allocated in the store (NUSE). */
  allocatedBytes: number;
}

/**
 * Why a backend operation failed, in the backend's own terms. The NVMe controller turns each kind into a status in
 * one place (src/nvme/io.ts).
 */
export type NamespaceErrorKind =
  /** The store could not read the data (a bad sector, an I/O error). */
  | 'read'
  /** The store could not write the data. */
  | 'write'
  /** The store refuses writes: a read-only namespace, or a file system that turned read-only. */
  | 'read-only'
  /** The backend cannot reach its store right now, e.g. every path to a remote target is down. */
  | 'unavailable'
  /** This backend does not do the operation. */
  | 'unsupported'
  /** The store is full. */
  | 'capacity'
  /** Any other failure. */
  | 'internal';

export class NamespaceError extends Error {
  constructor(
    readonly kind: NamespaceErrorKind,
    message: string,
    /** A status the store reported in NVMe terms itself (a remote NVMe target), given to the guest as it is. */
    readonly nvmeStatus?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'NamespaceError';
  }
}

/** Stable identifiers a namespace presents to the guest; persisted so a guest sees the same disk across restarts. */
export interface NamespaceIds {
  /** 16 bytes, hex. */
  nguid: string;
  /** 8 bytes, hex. */
  eui64: string;
  /** RFC 4122 form. */
  uuid: string;
}
