/**
 * Guest memory as the device sees it: the DMA mappings a hypervisor gave us (vfio-user DMA_MAP), each an ArrayBuffer
 * over an mmapped fd. Device models reach guest RAM only through `DmaSpace`, which bounds-checks every access.
 *
 * Unmap safety: asynchronous I/O (a file read landing in guest RAM on a libuv thread) pins the mappings it touches.
 * `remove()` retires a mapping at once (new lookups fail) and releases it only when the last pin is dropped.
 */

/** Direction from the device's point of view: 'read' = device reads guest RAM, 'write' = device writes it. */
export type DmaAccess = 'read' | 'write';

export class DmaError extends Error {
  constructor(
    readonly iova: number,
    readonly length: number,
    readonly reason: string,
  ) {
    super(`DMA ${reason} at iova 0x${iova.toString(16)} length ${length}`);
    this.name = 'DmaError';
  }
}

export interface DmaMapping {
  readonly iova: number;
  readonly size: number;
  /** The whole mapping; index 0 is `iova`. */
  readonly bytes: Uint8Array;
  readonly readable: boolean;
  readonly writable: boolean;
}

/** What a device model needs of guest memory. */
export interface DmaSpace {
  /** The mapping that holds all of [iova, iova + length); throws DmaError when unmapped, crossing or not permitted. */
  find(iova: number, length: number, access: DmaAccess): DmaMapping;
  /** A view of [iova, iova + length), which must lie inside one mapping. */
  view(iova: number, length: number, access: DmaAccess): Uint8Array;
  /** Keeps `mapping` alive across asynchronous work; every pin must be matched by one unpin. */
  pin(mapping: DmaMapping): void;
  unpin(mapping: DmaMapping): void;
}

interface Entry extends DmaMapping {
  pins: number;
  retired: boolean;
  release: () => void;
  drained: Array<() => void>;
}

export interface AddMappingOptions {
  iova: number;
  size: number;
  /** Bytes backing the mapping, length `size`. */
  bytes: Uint8Array;
  readable: boolean;
  writable: boolean;
  /** Called exactly once when the mapping is gone and no I/O holds it (e.g. munmap). */
  release?: () => void;
}

export class GuestMemory implements DmaSpace {
  /** Live mappings sorted by iova, non-overlapping. */
  private entries: Entry[] = [];
  private lastHit: Entry | undefined;

  get mappings(): readonly DmaMapping[] {
    return this.entries;
  }

  /** Adds a mapping; throws if it overlaps an existing one or is malformed. */
  add(options: AddMappingOptions): DmaMapping {
    const { iova, size, bytes } = options;
    if (!Number.isSafeInteger(iova) || iova < 0) throw new DmaError(iova, size, 'map: invalid iova');
    if (!Number.isSafeInteger(size) || size <= 0) throw new DmaError(iova, size, 'map: invalid size');
    if (!Number.isSafeInteger(iova + size)) throw new DmaError(iova, size, 'map: range wraps');
    if (bytes.byteLength !== size) throw new DmaError(iova, size, `map: backing is ${bytes.byteLength} bytes`);
    const index = this.insertionIndex(iova);
    const before = this.entries[index - 1];
    const after = this.entries[index];
    if ((before && before.iova + before.size > iova) || (after && iova + size > after.iova)) {
      throw new DmaError(iova, size, 'map: overlaps an existing mapping');
    }
    const entry: Entry = {
      iova,
      size,
      bytes,
      readable: options.readable,
      writable: options.writable,
      pins: 0,
      retired: false,
      release: options.release ?? (() => {}),
      drained: [],
    };
    this.entries.splice(index, 0, entry);
    return entry;
  }

  /**
   * Removes every mapping that lies entirely inside [iova, iova + size). A mapping only partly covered is an error
   * (vfio semantics: unmaps cannot split mappings). Resolves once all removed mappings are unpinned and released.
   */
  remove(iova: number, size: number): Promise<number> {
    const end = iova + size;
    const removed: Entry[] = [];
    for (const entry of this.entries) {
      const entryEnd = entry.iova + entry.size;
      if (entryEnd <= iova || entry.iova >= end) continue;
      if (entry.iova < iova || entryEnd > end) {
        return Promise.reject(new DmaError(iova, size, 'unmap: range splits a mapping'));
      }
      removed.push(entry);
    }
    return this.retire(removed).then(() => removed.length);
  }

  /** Removes all mappings (client disconnect, UNMAP_ALL). */
  removeAll(): Promise<number> {
    const removed = this.entries.slice();
    return this.retire(removed).then(() => removed.length);
  }

  find(iova: number, length: number, access: DmaAccess): DmaMapping {
    let entry = this.lastHit;
    if (!entry || iova < entry.iova || iova >= entry.iova + entry.size) {
      entry = this.lookup(iova);
      if (!entry) throw new DmaError(iova, length, 'to unmapped address');
      this.lastHit = entry;
    }
    if (!(length >= 0) || iova + length > entry.iova + entry.size) {
      throw new DmaError(iova, length, 'crosses the end of a mapping');
    }
    if (access === 'write' ? !entry.writable : !entry.readable) {
      throw new DmaError(iova, length, `${access} to a mapping without ${access} permission`);
    }
    return entry;
  }

  view(iova: number, length: number, access: DmaAccess): Uint8Array {
    const mapping = this.find(iova, length, access);
    const start = iova - mapping.iova;
    return mapping.bytes.subarray(start, start + length);
  }

  pin(mapping: DmaMapping): void {
    (mapping as Entry).pins++;
  }

  unpin(mapping: DmaMapping): void {
    const entry = mapping as Entry;
    entry.pins--;
    if (entry.pins === 0 && entry.retired) this.finish(entry);
  }

  private retire(removed: Entry[]): Promise<void> {
    if (removed.length === 0) return Promise.resolve();
    this.entries = this.entries.filter((entry) => !removed.includes(entry));
    this.lastHit = undefined;
    const waits: Promise<void>[] = [];
    for (const entry of removed) {
      entry.retired = true;
      if (entry.pins === 0) this.finish(entry);
      else waits.push(new Promise((resolve) => entry.drained.push(resolve)));
    }
    return Promise.all(waits).then(() => undefined);
  }

  private finish(entry: Entry): void {
    entry.release();
    entry.release = () => {};
    for (const resolve of entry.drained.splice(0)) resolve();
  }

  private lookup(iova: number): Entry | undefined {
    const index = this.insertionIndex(iova) - 1;
    const entry = this.entries[index];
    return entry && iova < entry.iova + entry.size ? entry : undefined;
  }

  /** Index of the first entry whose iova is greater than `iova`. */
  private insertionIndex(iova: number): number {
    let low = 0;
    let high = this.entries.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.entries[mid]!.iova <= iova) low = mid + 1;
      else high = mid;
    }
    return low;
  }
}
