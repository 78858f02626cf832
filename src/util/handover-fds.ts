/**
 * File descriptors in a live-upgrade snapshot (docs/restart.md). A snapshot is JSON; the fds it needs travel beside
 * it (SCM_RIGHTS), so the JSON names each fd by its index in that list rather than by its number, which differs in
 * the successor. Every layer that owns fds adds them to an `FdCollector` while it snapshots and takes them back from
 * an `FdSource` while it restores.
 */

/** Collects the fds of a snapshot in order; `add` returns the index the JSON records. */
export class FdCollector {
  readonly fds: number[] = [];

  add(fd: number): number {
    if (!Number.isInteger(fd) || fd < 0) throw new Error(`snapshot: ${fd} is not a file descriptor`);
    const index = this.fds.indexOf(fd);
    if (index >= 0) return index;
    this.fds.push(fd);
    return this.fds.length - 1;
  }
}

/** The received fds of a snapshot, by the index its JSON names them with. */
export class FdSource {
  private readonly taken = new Set<number>();

  constructor(readonly fds: readonly number[]) {}

  /** The local fd number of snapshot index `index`; throws for an index the hand-over did not bring. */
  take(index: unknown): number {
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= this.fds.length) {
      throw new Error(`snapshot names fd index ${String(index)}, but ${this.fds.length} fds came with it`);
    }
    this.taken.add(index);
    return this.fds[index]!;
  }

  /** The fds nobody took (to be closed by whoever received them). */
  untaken(): number[] {
    return this.fds.filter((_, index) => !this.taken.has(index));
  }
}

/** Bytes in a JSON snapshot. */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** Bytes from a JSON snapshot; throws when the length is not `expected` (when given). */
export function fromBase64(text: unknown, what: string, expected?: number): Uint8Array {
  if (typeof text !== 'string') throw new Error(`snapshot: ${what} is missing`);
  const bytes = new Uint8Array(Buffer.from(text, 'base64'));
  if (expected !== undefined && bytes.length !== expected) {
    throw new Error(`snapshot: ${what} is ${bytes.length} bytes, expected ${expected}`);
  }
  return bytes;
}

/** Refuses a snapshot part written by a newer format than this build reads. */
export function checkSnapshotVersion(state: { version?: unknown } | undefined, what: string, newest: number): number {
  const version = state?.version;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw new Error(`snapshot: ${what} has no valid version`);
  }
  if (version > newest) {
    throw new Error(`snapshot: ${what} is version ${version}; this build reads up to version ${newest}`);
  }
  return version;
}
