/** Configuration of one emulated NVMe controller served on one vfio-user socket. */
import path from 'node:path';
import { MAX_NSID } from '../nvme/namespaces.js';
import type { ControllerIdentityRecord, IdentityOptions, NamespaceIdentityOverride } from './identity-store.js';
import type { ControllerIoLimits } from '../nvme/io-limits.js';

export type DoorbellMode = 'interrupt' | 'polled';

export interface ControllerConfig {
  /** The vfio-user unix socket the hypervisor connects to. */
  socketPath: string;
  /** File mode of the socket (default 0600: only the hypervisor's user may connect). */
  socketMode: number;
  /** Namespace URIs, NSID 1..n in order unless `nsids` says otherwise (see docs/serve.md). */
  namespaces: string[];
  /**
   * The NSID of each of `namespaces`, ascending: chosen at creation (`--nsid`, ControllerSpec.namespace_nsids) or
   * after namespaces were attached or detached at runtime; absent = 1..n.
   */
  nsids?: number[];
  /** interrupt: trapped doorbell writes + shadow doorbells; polled: doorbell page mmapped by the client, polled here. */
  doorbellMode: DoorbellMode;
  /** MSI-X vectors offered (64 by default: Windows' stornvme fails with 512). */
  msixVectors: number;
  maxIoQueuePairs: number;
  maxQueueEntries: number;
  /** Maximum data transfer size as log2 of 4 KiB pages. */
  mdtsPages: number;
  /**
   * How long a reset, disconnect or DMA_UNMAP waits for I/O in flight before giving up what the backend can let go
   * of (default 5000 ms; docs/serve.md "Limits").
   */
  ioAbandonMs?: number;
  /**
   * I/O rate limits for the controller and per NSID (docs/nvme.md "Rate limits"); absent = none. The control API's
   * SetControllerLimits changes them while the controller serves, and the daemon saves them here.
   */
  ioLimits?: ControllerIoLimits;
  /** Where identity (serial, NQN, namespace ids) is persisted; default: next to the first file namespace. */
  identityPath?: string;
  /** Controller identity values that override the persisted/generated ones. */
  identity: Partial<ControllerIdentityRecord>;
  /** Namespace identity values (per NSID slot) that override the persisted/generated ones. */
  namespaceIdentities?: NamespaceIdentityOverride[];
  /** PCI ids the guest sees. The guest's NVMe driver binds by class code (01:08:02), not by these. */
  pci: { vendorId: number; deviceId: number; subsystemVendorId: number; subsystemId: number };
}

/**
 * Allowed ranges of the numeric settings, [min, max]: one table for `vfiod serve`'s options and the control API's
 * ControllerSpec. mdtsPages 0 means "no limit".
 */
export const CONTROLLER_LIMITS = {
  msixVectors: [1, 2048],
  maxIoQueuePairs: [1, 511],
  maxQueueEntries: [2, 65536],
  mdtsPages: [0, 15],
} as const satisfies Record<string, readonly [number, number]>;

export const DEFAULT_PCI_IDS = { vendorId: 0x4e58, deviceId: 0x0001, subsystemVendorId: 0x4e58, subsystemId: 0x0001 };

/** The namespace `vfiod serve` creates when none is given: a sparse 1 GiB file next to the socket. */
export function defaultNamespaceUri(socketPath: string): string {
  const parsed = path.parse(path.resolve(socketPath));
  return `file:${path.join(parsed.dir, parsed.name + '.img')}?size=1G`;
}

export function controllerConfig(partial: Partial<ControllerConfig> & { socketPath: string }): ControllerConfig {
  return {
    socketMode: 0o600,
    namespaces: [defaultNamespaceUri(partial.socketPath)],
    doorbellMode: 'interrupt',
    msixVectors: 64,
    maxIoQueuePairs: 31,
    maxQueueEntries: 1024,
    mdtsPages: 8,
    identity: {},
    pci: DEFAULT_PCI_IDS,
    ...partial,
  };
}

/** The NSID of each of `config.namespaces`, in the same order. */
export function namespaceNsids(config: Pick<ControllerConfig, 'namespaces' | 'nsids'>): number[] {
  return config.nsids ?? config.namespaces.map((_, index) => index + 1);
}

/**
 * The namespaces `uris` as NSIDs `nsids` (one each, in the same order) put in NSID order, as ControllerConfig keeps
 * them; `nsids` absent or empty = 1..n. Throws an Error saying what is wrong: a count that differs, an NSID outside
 * 1..MAX_NSID, one given twice.
 */
export function namespaceSlots(uris: readonly string[], nsids: readonly number[] | undefined): Pick<ControllerConfig, 'namespaces' | 'nsids'> {
  if (!nsids || nsids.length === 0) return { namespaces: [...uris] };
  if (nsids.length !== uris.length) throw new Error(`${nsids.length} NSIDs for ${uris.length} namespaces: give one NSID per namespace, in the same order`);
  const seen = new Set<number>();
  for (const nsid of nsids) {
    if (!Number.isInteger(nsid) || nsid < 1 || nsid > MAX_NSID) throw new Error(`NSID ${nsid} must be from 1 to ${MAX_NSID}`);
    if (seen.has(nsid)) throw new Error(`NSID ${nsid} is given twice`);
    seen.add(nsid);
  }
  const slots = uris.map((uri, index) => ({ uri, nsid: nsids[index]! })).sort((a, b) => a.nsid - b.nsid);
  const inOrder = slots.every((slot, index) => slot.nsid === index + 1);
  return { namespaces: slots.map((slot) => slot.uri), ...(inOrder ? {} : { nsids: slots.map((slot) => slot.nsid) }) };
}

/** The identities `config` asks for, as the identity store takes them. */
export function identityOptionsOf(config: ControllerConfig): IdentityOptions {
  return {
    controller: config.identity,
    namespaceUris: config.namespaces,
    nsids: namespaceNsids(config),
    ...(config.namespaceIdentities ? { namespaces: config.namespaceIdentities } : {}),
  };
}
