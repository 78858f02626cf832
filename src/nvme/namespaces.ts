/**
 * The controller's namespace set: NSID n is entry n - 1 and every entry is active (NN = the entry count), the
 * Changed Namespace List, and the checks each entry passes when the controller is built.
 */
import type { Namespace, NamespaceIds } from '../namespace/namespace.js';
import { PAGE_SIZE } from '../spec/nvme.js';
import { ChangedNamespaceList } from './log-pages.js';

export interface NamespaceEntry {
  namespace: Namespace;
  ids: NamespaceIds;
}

export class NamespaceSet {
  /** NSID = index + 1. */
  readonly entries: readonly NamespaceEntry[];
  /** The same namespaces without their ids. */
  readonly namespaces: readonly Namespace[];
  /** NSIDs whose attributes changed since the host last read the Changed Namespace List. */
  readonly changed = new ChangedNamespaceList();
  /** Some namespace has a volatile write cache (Identify Controller VWC, the Volatile Write Cache feature). */
  readonly volatileWriteCache: boolean;

  /** Throws when an entry is unusable (block size, block count, malformed ids). */
  constructor(entries: readonly NamespaceEntry[]) {
    this.entries = entries.map((entry, index) => validateNamespaceEntry(entry, index + 1));
    this.namespaces = this.entries.map((entry) => entry.namespace);
    this.volatileWriteCache = this.namespaces.some((namespace) => namespace.volatileWriteCache);
  }

  get count(): number {
    return this.entries.length;
  }

  /** The active namespace `nsid` (1..NN); undefined for 0, broadcast and anything beyond NN. */
  entry(nsid: number): NamespaceEntry | undefined {
    if (nsid === 0 || nsid > this.entries.length) return undefined;
    return this.entries[nsid - 1];
  }

  /** MDTS (log2 of 4 KiB pages, 0 = no limit) lowered to what every namespace accepts in one transfer. */
  maxTransferLog2(requested: number): number {
    let mdts = requested;
    this.entries.forEach((entry, index) => {
      const limit = entry.namespace.maxTransferBytes;
      if (!limit) return;
      const pagesLog2 = Math.floor(Math.log2(limit / PAGE_SIZE));
      if (pagesLog2 < 1) {
        // MDTS 0 means "no limit", so one page is not expressible.
        throw new Error(
          `NVMe controller: namespace ${index + 1} (${entry.namespace.description}) accepts at most ${limit} bytes ` +
            `per transfer; the smallest MDTS is ${2 * PAGE_SIZE} bytes`,
        );
      }
      mdts = mdts === 0 ? pagesLog2 : Math.min(mdts, pagesLog2);
    });
    return mdts;
  }

  /** Flushes every namespace; rejects with the first failure. */
  async flush(): Promise<void> {
    await Promise.all(this.namespaces.map((namespace) => Promise.resolve().then(() => namespace.flush())));
  }

  /** Flushes every namespace, all of them even after a failure; one outcome per namespace, in NSID order. */
  flushEach(): Promise<Array<PromiseSettledResult<void>>> {
    return Promise.allSettled(this.namespaces.map((namespace) => Promise.resolve().then(() => namespace.flush())));
  }
}

function validateNamespaceEntry(entry: NamespaceEntry, nsid: number): NamespaceEntry {
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
