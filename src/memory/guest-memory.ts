/**
 * Guest memory as the device sees it: the DMA mappings a hypervisor gave us (vfio-user DMA_MAP). Device models reach
 * guest RAM only through `DmaSpace`, which bounds-checks every access.
 *
 * Any size: one JavaScript buffer holds at most 4 GiB (Node 20), and guests bring single mappings of many GiB (QEMU
 * maps the RAM above 4 GiB as one region) up to several TiB. So a mapping is kept as a row of *windows*: window k
 * covers [iova + k * stride, iova + k * stride + stride + reach), each its own buffer (for a mapped fd, its own
 * mmap of the same file, so nothing is copied). Consecutive windows overlap by `reach` bytes: a range that starts in
 * a window's own stride and is at most `reach` long lies wholly in that window's buffer. Queues (at most 4 MiB),
 * PRP lists (one page) and the SGL descriptors we read (64 KiB) are such ranges, so each is one contiguous view.
 * Data buffers may be longer: the data-pointer walk splits them at window ends into separate segments.
 *
 * Unmap safety: asynchronous I/O (a file read landing in guest RAM on a libuv thread) pins the windows it touches,
 * which pins their mapping. `remove()` retires a mapping at once (new lookups fail) and releases all its windows
 * only when the last pin is dropped.
 */

/** Direction from the device's point of view: 'read' = device reads guest RAM, 'write' = device writes it. */
export type DmaAccess = 'read' | 'write';

/** Each window's own part of a mapping: 1 GiB, so a window buffer (stride + reach) stays far below 2 GiB. */
export const DEFAULT_WINDOW_STRIDE = 2 ** 30;
/** How far a window reaches past its own part: the longest range `find`/`view` return as one piece. */
export const DEFAULT_WINDOW_REACH = 64 * 2 ** 20;

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

/** One DMA mapping as the hypervisor made it. */
export interface DmaRegion {
  readonly iova: number;
  readonly size: number;
  readonly readable: boolean;
  readonly writable: boolean;
}

/**
 * A window of a mapping (the whole mapping when it is small): `bytes[0]` is guest address `iova`, and every byte of
 * `bytes` is guest memory (`size === bytes.length`). Windows of one mapping overlap; see the file comment.
 */
export interface DmaMapping {
  readonly iova: number;
  readonly size: number;
  readonly bytes: Uint8Array;
  readonly readable: boolean;
  readonly writable: boolean;
}

/** What a device model needs of guest memory. */
export interface DmaSpace {
  /**
   * A window holding all of [iova, iova + length); throws DmaError when unmapped, not permitted, or when the range
   * runs past the end of its mapping or, for ranges longer than the window reach, past the window.
   */
  find(iova: number, length: number, access: DmaAccess): DmaMapping;
  /** A view of [iova, iova + length), which must fit one window (see `find`). */
  view(iova: number, length: number, access: DmaAccess): Uint8Array;
  /** Keeps the mapping behind `window` alive across asynchronous work; every pin must be matched by one unpin. */
  pin(window: DmaMapping): void;
  unpin(window: DmaMapping): void;
  /** Whether the mapping behind `window` was removed (DMA_UNMAP) and waits only for its pins to go. */
  isRetired(window: DmaMapping): boolean;
  /**
   * Optional: a number that changes whenever mappings are added or removed. While it stays the same, a window `find`
   * returned for a range is still what `find` would return for it (queue memory checks this per use instead of
   * looking the window up again).
   */
  readonly generation?: number;
}

interface Region extends DmaRegion {
  readonly windows: Window[];
  /** Makes window buffers on first use; undefined once every window is made or the mapping is released. */
  map: WindowMapper | undefined;
  readonly unmap: ((bytes: Uint8Array) => void) | undefined;
  pins: number;
  retired: boolean;
  release: () => void;
  drained: Array<() => void>;
}

interface Window extends DmaMapping {
  /** Empty until the window is first used (see `AddMappingOptions.map`). */
  bytes: Uint8Array;
  readonly region: Region;
  /** End of the window's own part: lookups of addresses in [iova, ownEnd) land here. */
  readonly ownEnd: number;
}

/** Makes the buffer for [offset, offset + length) of a mapping's backing (for an fd: one mmap). */
export type WindowMapper = (offset: number, length: number) => Uint8Array;

interface AddCommon {
  iova: number;
  size: number;
  readable: boolean;
  writable: boolean;
}

export type AddMappingOptions = AddCommon &
  (
    | {
        /** Bytes backing the mapping, length `size`; windows are views of it. */
        bytes: Uint8Array;
        /** Called exactly once when the mapping is gone and no I/O holds it. */
        release?: () => void;
      }
    | {
        /**
         * Memory the device cannot reach (vfio-user: a DMA_MAP without fd, e.g. QEMU's ROM and flash). The mapping
         * exists (it overlaps, counts, and is unmapped like any other), but every access to it fails with this reason.
         */
        unreachable: string;
        /** Called exactly once when the mapping is gone. */
        release?: () => void;
      }
    | {
        /**
         * Makes a window's buffer. The first and last windows are made while `add` runs (so a bad fd, offset or
         * size fails the add), the others on first use: a guest of 1 TiB that touches 10 GiB costs 10 windows.
         */
        map: WindowMapper;
        /** Undoes one `map` result; called exactly once per window made (also when `add` fails). */
        unmap: (bytes: Uint8Array) => void;
        /**
         * Called once when no more windows will be made (e.g. to close the fd they are mapped from): when all are
         * made, when the mapping is released, or when `add` fails.
         */
        close?: () => void;
        /** Called exactly once when the mapping is gone and no I/O holds it (also when `add` fails). */
        release?: () => void;
      }
  );

export interface GuestMemoryOptions {
  /** Multiple of the page size; tests use small values to cross window ends with small buffers. */
  windowStride?: number;
  windowReach?: number;
}

export class GuestMemory implements DmaSpace {
  readonly windowStride: number;
  readonly windowReach: number;
  /** Live mappings sorted by iova, non-overlapping. */
  private liveRegions: Region[] = [];
  /** Windows of the live mappings, sorted by iova (their own parts do not overlap). */
  private liveWindows: Window[] = [];
  private lastHit: Window | undefined;
  /** DmaSpace.generation: bumped by every add and removal. */
  generation = 0;
  /**
   * Called when a removal has to wait for pinned mappings (I/O in flight in them): the device may give that I/O up
   * after a while, so the hypervisor's DMA_UNMAP is answered within a bounded time (src/serve/nvme-pci-device.ts).
   */
  onPinnedRemoval: (() => void) | undefined;

  constructor(options: GuestMemoryOptions = {}) {
    this.windowStride = options.windowStride ?? DEFAULT_WINDOW_STRIDE;
    this.windowReach = options.windowReach ?? DEFAULT_WINDOW_REACH;
    if (!Number.isSafeInteger(this.windowStride) || this.windowStride <= 0) {
      throw new RangeError(`window stride ${this.windowStride} must be a positive integer`);
    }
    if (!Number.isSafeInteger(this.windowReach) || this.windowReach < 0) {
      throw new RangeError(`window reach ${this.windowReach} must be a non-negative integer`);
    }
  }

  /** The mappings, sorted by iova. */
  get regions(): readonly DmaRegion[] {
    return this.liveRegions;
  }

  /** Every window of every mapping, sorted by iova. */
  get windows(): readonly DmaMapping[] {
    return this.liveWindows;
  }

  /** The mapping that overlaps [iova, iova + size), if any (the one at the lowest address). */
  overlapping(iova: number, size: number): DmaRegion | undefined {
    const index = this.regionInsertionIndex(iova);
    const before = this.liveRegions[index - 1];
    if (before && before.iova + before.size > iova) return before;
    const after = this.liveRegions[index];
    return after && after.iova < iova + size ? after : undefined;
  }

  /** Adds a mapping; throws if it overlaps an existing one or is malformed. Returns its first window. */
  add(options: AddMappingOptions): DmaMapping {
    const { iova, size } = options;
    // The backing belongs to the mapping from here on, also when the add fails.
    const refuse = (reason: string): DmaError => {
      if ('map' in options) options.close?.();
      if (!('bytes' in options)) options.release?.();
      return new DmaError(iova, size, `map: ${reason}`);
    };
    if (!Number.isSafeInteger(iova) || iova < 0) throw refuse('invalid iova');
    if (!Number.isSafeInteger(size) || size <= 0) throw refuse('invalid size');
    if (!Number.isSafeInteger(iova + size)) throw refuse('range wraps');
    if ('bytes' in options && options.bytes.byteLength !== size) {
      throw refuse(`backing is ${options.bytes.byteLength} bytes`);
    }
    if (this.overlapping(iova, size)) throw refuse('overlaps an existing mapping');
    const index = this.regionInsertionIndex(iova);

    let map: WindowMapper;
    let unmap: ((bytes: Uint8Array) => void) | undefined;
    let close: (() => void) | undefined;
    let onRelease: (() => void) | undefined;
    if ('bytes' in options) {
      const whole = options.bytes;
      map = (offset, length) => whole.subarray(offset, offset + length);
      onRelease = options.release;
    } else if ('unreachable' in options) {
      const reason = options.unreachable;
      onRelease = options.release;
      map = (offset, length) => {
        throw new DmaError(iova + offset, length, `to memory vfiod cannot reach: ${reason}`);
      };
    } else {
      ({ map, unmap, close } = options);
      onRelease = options.release;
    }
    const closeBacking = (): void => {
      if (region.map === undefined) return;
      region.map = undefined;
      close?.();
    };
    const region: Region = {
      iova,
      size,
      readable: options.readable,
      writable: options.writable,
      windows: [],
      map,
      unmap,
      pins: 0,
      retired: false,
      release: () => {
        for (const window of region.windows) {
          if (window.bytes.length !== 0) unmap?.(window.bytes);
        }
        closeBacking();
        onRelease?.();
      },
      drained: [],
    };
    const window = (offset: number, length: number, ownLength: number): Window => ({
      iova: iova + offset,
      size: length,
      bytes: UNMAPPED,
      readable: region.readable,
      writable: region.writable,
      region,
      ownEnd: iova + offset + ownLength,
    });
    if ('unreachable' in options) {
      // Nothing is ever mapped there: one window for the whole range, however large the client said it is.
      region.windows.push(window(0, size, size));
    } else {
      const count = Math.ceil(size / this.windowStride);
      const windowAt = (k: number): Window => {
        const offset = k * this.windowStride;
        const left = size - offset;
        return window(offset, Math.min(this.windowStride + this.windowReach, left), Math.min(this.windowStride, left));
      };
      // The first and last windows are made before the others exist: a size the backing cannot hold fails here,
      // before a window record is made for every GiB the client claimed.
      const first = windowAt(0);
      const last = count === 1 ? first : windowAt(count - 1);
      try {
        materialize(first);
        materialize(last);
      } catch (error) {
        region.windows.push(first);
        if (last !== first) region.windows.push(last);
        region.release();
        throw error;
      }
      region.windows.push(first);
      for (let k = 1; k < count - 1; k++) region.windows.push(windowAt(k));
      if (last !== first) region.windows.push(last);
      // Everything is mapped: the backing is not needed any more.
      if (count === 1) closeBacking();
    }
    this.liveRegions.splice(index, 0, region);
    this.generation++;
    // concat, not splice(...windows): a region of many TiB has more windows than a call takes arguments.
    const at = this.windowInsertionIndex(iova);
    this.liveWindows = this.liveWindows.slice(0, at).concat(region.windows, this.liveWindows.slice(at));
    return region.windows[0]!;
  }

  /**
   * Removes every mapping that lies entirely inside [iova, iova + size). A mapping only partly covered is an error
   * (vfio semantics: unmaps cannot split mappings). Resolves once all removed mappings are unpinned and released.
   */
  remove(iova: number, size: number): Promise<number> {
    const end = iova + size;
    const removed: Region[] = [];
    for (const region of this.liveRegions) {
      const regionEnd = region.iova + region.size;
      if (regionEnd <= iova || region.iova >= end) continue;
      if (region.iova < iova || regionEnd > end) {
        return Promise.reject(new DmaError(iova, size, 'unmap: range splits a mapping'));
      }
      removed.push(region);
    }
    return this.retire(removed).then(() => removed.length);
  }

  /** Removes all mappings (client disconnect, UNMAP_ALL). */
  removeAll(): Promise<number> {
    const removed = this.liveRegions.slice();
    return this.retire(removed).then(() => removed.length);
  }

  find(iova: number, length: number, access: DmaAccess): DmaMapping {
    let window = this.lastHit;
    if (!window || iova < window.iova || iova >= window.ownEnd) {
      window = this.lookup(iova);
      if (!window) throw new DmaError(iova, length, 'to unmapped address');
      if (window.bytes.length === 0) materialize(window);
      this.lastHit = window;
    }
    if (!(length >= 0) || iova + length > window.iova + window.size) {
      const region = window.region;
      throw new DmaError(
        iova,
        length,
        iova + length > region.iova + region.size
          ? 'crosses the end of a mapping'
          : `is longer than ${this.windowReach} bytes across a window end`,
      );
    }
    if (access === 'write' ? !window.writable : !window.readable) {
      throw new DmaError(iova, length, `${access} to a mapping without ${access} permission`);
    }
    return window;
  }

  view(iova: number, length: number, access: DmaAccess): Uint8Array {
    const window = this.find(iova, length, access);
    const start = iova - window.iova;
    return window.bytes.subarray(start, start + length);
  }

  pin(window: DmaMapping): void {
    (window as Window).region.pins++;
  }

  isRetired(window: DmaMapping): boolean {
    return (window as Window).region.retired;
  }

  unpin(window: DmaMapping): void {
    const region = (window as Window).region;
    region.pins--;
    if (region.pins === 0 && region.retired) this.finish(region);
  }

  private retire(removed: Region[]): Promise<void> {
    if (removed.length === 0) return Promise.resolve();
    const gone = new Set(removed);
    this.liveRegions = this.liveRegions.filter((region) => !gone.has(region));
    this.liveWindows = this.liveWindows.filter((window) => !gone.has(window.region));
    this.lastHit = undefined;
    this.generation++;
    const waits: Promise<void>[] = [];
    for (const region of removed) {
      region.retired = true;
      if (region.pins === 0) this.finish(region);
      else waits.push(new Promise((resolve) => region.drained.push(resolve)));
    }
    if (waits.length > 0) this.onPinnedRemoval?.();
    return Promise.all(waits).then(() => undefined);
  }

  private finish(region: Region): void {
    const release = region.release;
    region.release = () => {};
    release();
    for (const resolve of region.drained.splice(0)) resolve();
  }

  /** The window whose own part holds `iova`. */
  private lookup(iova: number): Window | undefined {
    const window = this.liveWindows[this.windowInsertionIndex(iova) - 1];
    return window && iova < window.ownEnd ? window : undefined;
  }

  /** Index of the first window whose iova is greater than `iova`. */
  private windowInsertionIndex(iova: number): number {
    return upperBound(this.liveWindows, iova);
  }

  /** Index of the first mapping whose iova is greater than `iova`. */
  private regionInsertionIndex(iova: number): number {
    return upperBound(this.liveRegions, iova);
  }
}

const UNMAPPED = new Uint8Array(0);

/** Makes the buffer of a window that has none yet; throws DmaError when that fails. */
function materialize(window: Window): void {
  if (window.bytes.length !== 0) return;
  const region = window.region;
  const map = region.map;
  if (!map) throw new DmaError(window.iova, window.size, 'map: the mapping is being released');
  let bytes: Uint8Array;
  try {
    bytes = map(window.iova - region.iova, window.size);
  } catch (error) {
    if (error instanceof DmaError) throw error;
    throw Object.assign(new DmaError(window.iova, window.size, `map of a window failed: ${(error as Error).message}`), {
      cause: error,
    });
  }
  if (bytes.byteLength !== window.size) {
    if (bytes.byteLength !== 0) region.unmap?.(bytes);
    throw new DmaError(window.iova, window.size, `map: window backing is ${bytes.byteLength} bytes`);
  }
  window.bytes = bytes;
}

function upperBound(sorted: ReadonlyArray<{ readonly iova: number }>, iova: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (sorted[mid]!.iova <= iova) low = mid + 1;
    else high = mid;
  }
  return low;
}
