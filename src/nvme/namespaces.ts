/**
 * The controller's namespace set: the active NSIDs and their namespaces, the Changed Namespace List, and the checks
 * each entry passes when the controller is built or a namespace is attached at runtime. NSIDs are 1..MAX_NSID and
 * may have gaps (a namespace detached at runtime leaves its NSID free; the others keep theirs).
 */
import type { Namespace, NamespaceIds } from '../namespace/namespace.js';
import { PAGE_SIZE } from '../spec/nvme.js';
import { MAX_NSID } from './identify.js';
import { ChangedNamespaceList } from './log-pages.js';

export { MAX_NSID } from './identify.js';

export interface NamespaceEntry {
  namespace: Namespace;
  ids: NamespaceIds;
  /** Default: its position in the list + 1. */
  nsid?: number;
}

/** An entry of the set: its NSID is known. */
export interface ActiveNamespace extends NamespaceEntry {
  nsid: number;
}

export class NamespaceSet {
  /** Indexed by NSID; undefined = inactive. */
  private readonly byNsid: Array<ActiveNamespace | undefined> = [];
  /** The active entries in NSID order (rebuilt on each change; read on every broadcast flush and Identify). */
  private active: readonly ActiveNamespace[] = [];
  /** The namespaces of `active`, in the same order. */
  private activeNamespaces: readonly Namespace[] = [];
  private nsids: readonly number[] = [];
  /** NSIDs whose attributes changed since the host last read the Changed Namespace List. */
  readonly changed = new ChangedNamespaceList();
  /** Some namespace has a volatile write cache (Identify Controller VWC, the Volatile Write Cache feature). */
  readonly volatileWriteCache: boolean;

  /** Throws when an entry is unusable (NSID, block size, block count, malformed ids). */
  constructor(entries: readonly NamespaceEntry[]) {
    entries.forEach((entry, index) => this.add({ ...entry, nsid: entry.nsid ?? index + 1 }));
    this.volatileWriteCache = this.active.some((entry) => entry.namespace.volatileWriteCache);
  }

  /** The active entries, in NSID order. */
  get entries(): readonly ActiveNamespace[] {
    return this.active;
  }

  /** The active namespaces, in NSID order. */
  get namespaces(): readonly Namespace[] {
    return this.activeNamespaces;
  }

  /** The active NSIDs, ascending. */
  get activeNsids(): readonly number[] {
    return this.nsids;
  }

  get count(): number {
    return this.active.length;
  }

  /** The active namespace `nsid`; undefined for 0, broadcast, inactive NSIDs and anything beyond MAX_NSID. */
  entry(nsid: number): ActiveNamespace | undefined {
    return this.byNsid[nsid];
  }

  /**
   * Makes `entry` active at runtime. Throws (the set unchanged) when the NSID is taken or out of range, the entry is
   * unusable, or the namespace needs what the controller reported it does not have: a smaller transfer limit than
   * `maxTransferBytes` (MDTS, 0 = none) or a volatile write cache on a controller that reported none (the guest
   * would never flush it).
   */
  attach(entry: ActiveNamespace, maxTransferBytes: number): void {
    const problem = this.unreportedNeed(entry.namespace, maxTransferBytes);
    if (problem !== undefined) throw new Error(`NVMe controller: namespace ${entry.nsid} (${entry.namespace.description}) ${problem}`);
    this.add(entry);
  }

  /**
   * Why `namespace` cannot take over what the guest knows as namespace `nsid` (a backing swap's new backing), or
   * undefined: it must have at least its blocks, of the same size, be writable if it was, and need nothing the
   * controller did not report (see `attach`). Its extra blocks, if any, stay unseen.
   */
  replacementProblem(nsid: number, namespace: Namespace, maxTransferBytes: number): string | undefined {
    const entry = this.byNsid[nsid];
    if (!entry) return `namespace ${nsid} is not active`;
    const old = entry.namespace;
    if (namespace.blockSize !== old.blockSize) return `has ${namespace.blockSize}-byte blocks, the guest knows ${old.blockSize}-byte blocks`;
    if (namespace.readOnly === true && old.readOnly !== true) return 'is read-only, the guest writes the namespace';
    return this.unreportedNeed(namespace, maxTransferBytes);
  }

  /** What `namespace` needs that the controller did not report: a smaller MDTS (`maxTransferBytes`), a write cache. */
  private unreportedNeed(namespace: Namespace, maxTransferBytes: number): string | undefined {
    const limit = namespace.maxTransferBytes;
    if (limit !== 0 && (maxTransferBytes === 0 || limit < maxTransferBytes)) {
      return `accepts at most ${limit} bytes per transfer; the controller reported MDTS ${maxTransferBytes || 'unlimited'}`;
    }
    if (namespace.volatileWriteCache && !this.volatileWriteCache) {
      return 'has a volatile write cache, and the controller reported none: the guest would never flush it';
    }
    return undefined;
  }

  /** Makes `nsid` inactive; returns what was there (undefined when it was not active). */
  detach(nsid: number): ActiveNamespace | undefined {
    const entry = this.byNsid[nsid];
    if (!entry) return undefined;
    this.byNsid[nsid] = undefined;
    this.rebuild();
    return entry;
  }

  /**
   * Serves active namespace `nsid` from `namespace` from the next command on (a backing swap's stand-in, or what it
   * switched to); returns the namespace it replaces. The guest must see no change: the size and block size must agree.
   */
  replace(nsid: number, namespace: Namespace): Namespace {
    const entry = this.byNsid[nsid];
    if (!entry) throw new Error(`NVMe controller: namespace ${nsid} is not active`);
    const old = entry.namespace;
    if (namespace.blockSize !== old.blockSize || namespace.blockCount !== old.blockCount) {
      throw new Error(
        `NVMe controller: namespace ${nsid} (${old.description}, ${old.blockCount} x ${old.blockSize} B) cannot be served by ` +
          `${namespace.description} (${namespace.blockCount} x ${namespace.blockSize} B): the guest would see another size`,
      );
    }
    this.byNsid[nsid] = { ...entry, namespace };
    this.rebuild();
    return old;
  }

  /** MDTS (log2 of 4 KiB pages, 0 = no limit) lowered to what every namespace accepts in one transfer. */
  maxTransferLog2(requested: number): number {
    let mdts = requested;
    for (const entry of this.active) {
      const limit = entry.namespace.maxTransferBytes;
      if (!limit) continue;
      const pagesLog2 = Math.floor(Math.log2(limit / PAGE_SIZE));
      if (pagesLog2 < 1) {
        // MDTS 0 means "no limit", so one page is not expressible.
        throw new Error(
          `NVMe controller: namespace ${entry.nsid} (${entry.namespace.description}) accepts at most ${limit} bytes ` +
            `per transfer; the smallest MDTS is ${2 * PAGE_SIZE} bytes`,
        );
      }
      mdts = mdts === 0 ? pagesLog2 : Math.min(mdts, pagesLog2);
    }
    return mdts;
  }

  /** Flushes every namespace; rejects with the first failure. */
  async flush(): Promise<void> {
    await Promise.all(this.activeNamespaces.map((namespace) => Promise.resolve().then(() => namespace.flush())));
  }

  /** Flushes every namespace, all of them even after a failure; one outcome per active namespace, in NSID order. */
  flushEach(): Promise<Array<PromiseSettledResult<void>>> {
    return Promise.allSettled(this.activeNamespaces.map((namespace) => Promise.resolve().then(() => namespace.flush())));
  }

  private add(entry: ActiveNamespace): void {
    const { nsid } = entry;
    if (!Number.isInteger(nsid) || nsid < 1 || nsid > MAX_NSID) {
      throw new Error(`NVMe controller: NSID ${nsid} must be an integer in 1..${MAX_NSID}`);
    }
    if (this.byNsid[nsid]) throw new Error(`NVMe controller: NSID ${nsid} is already active`);
    this.byNsid[nsid] = validateNamespaceEntry(entry, nsid);
    this.rebuild();
  }

  private rebuild(): void {
    this.active = this.byNsid.filter((entry): entry is ActiveNamespace => entry !== undefined);
    this.activeNamespaces = this.active.map((entry) => entry.namespace);
    this.nsids = this.active.map((entry) => entry.nsid);
  }
}

function validateNamespaceEntry(entry: ActiveNamespace, nsid: number): ActiveNamespace {
  const { namespace, ids } = entry;
  const where = `NVMe controller: namespace ${nsid}`;
  if (namespace.blockSize !== 512 && namespace.blockSize !== 4096) {
    throw new Error(`${where}: block size ${namespace.blockSize} must be 512 or 4096`);
  }
  if (!Number.isSafeInteger(namespace.blockCount) || namespace.blockCount <= 0) {
    throw new Error(`${where}: block count ${namespace.blockCount} must be a positive integer`);
  }
  if (!/^[0-9a-fA-F]{32}$/.test(ids.nguid)) throw new Error(`${where}: NGUID '${ids.nguid}' must be 32 hex digits`);
  if (!/^[0-9a-fA-F]{16}$/.test(ids.eui64)) throw new Error(`${where}: EUI-64 '${ids.eui64}' must be 16 hex digits`);
  if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(ids.uuid)) {
    throw new Error(`${where}: UUID '${ids.uuid}' must be in RFC 4122 form`);
  }
  return entry;
}
