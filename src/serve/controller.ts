/**
 * Runs one emulated NVMe controller: opens its namespaces, loads its persisted identity, builds the NVMe PCI device
 * and serves it on its vfio-user socket. Runs on whatever thread calls it; `vfiod serve` calls it inside a worker
 * thread per controller (src/serve/worker.ts) so controllers scale across cores and cannot stall one another.
 *
 * Live upgrade (docs/restart.md): a running controller can be quiesced and snapshotted for a successor process
 * (`quiesce`, `snapshot`, then `release` or `resume`), and a successor builds its controller from such a snapshot
 * (`prepareTakeOver`, `adopt`, `start`) instead of listening afresh.
 */
import path from 'node:path';
import { GuestMemory } from '../memory/guest-memory.js';
import type { Namespace, NamespaceIds } from '../namespace/namespace.js';
import { MemoryNamespace } from '../namespace/memory.js';
import { explicitBlockSize, openNamespace, parseNamespaceUri, resizedNamespaceUri, specWithBlockSize } from '../namespace/uri.js';
import { defaultIdentityPath, IdentityConflict, loadOrCreateIdentity, plannedBlockSizes, type NamespaceIdentityOverride } from './identity-store.js';
import { VfioUserServer, type VfioUserServerState } from '../vfio-user/server.js';
import { Logger, rootLogger } from '../util/log.js';
import { checkSnapshotVersion, type FdCollector, type FdSource } from '../util/handover-fds.js';
import { identityOptionsOf, namespaceNsids, type ControllerConfig } from './config.js';
import { NvmePciDevice } from './nvme-pci-device.js';
import type { ControllerIoLimits } from '../nvme/io-limits.js';
import type { ControllerIdentity } from '../nvme/identity.js';
import { CommandJournal } from '../nvme/command-journal.js';
import { CheckpointArea } from './checkpoint-area.js';
import { CHECKPOINT_FD_NAME, CrashGuard, readCheckpoint, recoveredStreams } from './crash-guard.js';
import { HolderClient, type HeldFd } from './holder-client.js';
import { closeFds } from '../vfio-user/connection.js';
import { makeDirectory } from '../util/make-directory.js';
import { BackingSwap, moveData, type MoveOutcome, type MoveProgress } from '../namespace/backing-swap.js';
import type { Reason } from '../util/error-reasons.js';
import { errorMessage } from '../util/errors.js';
import { sleep } from '../util/sleep.js';

/** A namespace of a running controller: its NSID, its URI, the open backend and the identifiers the guest sees. */
export interface NamespaceSlot {
  nsid: number;
  uri: string;
  namespace: Namespace;
  ids: NamespaceIds;
}

/**
 * A change to a running controller's namespaces (the control API's AttachNamespace, DetachNamespace and
 * ResizeNamespace); the guest is told with a Namespace Attribute Changed event.
 */
export type NamespaceChange =
  | { kind: 'attach'; nsid: number; uri: string; identity?: NamespaceIdentityOverride }
  | { kind: 'detach'; nsid: number }
  | { kind: 'resize'; nsid: number; sizeBytes: number };

/** A namespace moving to another backing (the control API's SwapNamespaceBacking; docs/serve.md). */
export interface BackingSwapRequest {
  nsid: number;
  /** The new backing, opened with the block size the guest knows. */
  uri: string;
  /** False: the new backing already holds the data (only the switch is made). */
  copy: boolean;
}

export interface BackingSwapHooks {
  onProgress(progress: MoveProgress): void;
  /** Persists `uri` as the namespace's backing while its commands wait; rejects to refuse the switch. */
  commit(uri: string): Promise<void>;
}

/** Why a backing swap was refused or failed; the old backing serves on. `reason` is the control API's. */
export class BackingSwapFailed extends Error {
  constructor(
    readonly reason: Reason,
    message: string,
  ) {
    super(message);
    this.name = 'BackingSwapFailed';
  }
}

/** How long commands started before a swap may take to finish before it gives up (a guest times out at 30 s). */
const SWAP_DRAIN_TIMEOUT_MS = 30_000;
const SWAP_DRAIN_POLL_MS = 5;

export interface RunningController {
  readonly config: ControllerConfig;
  readonly device: NvmePciDevice;
  readonly server: VfioUserServer;
  /** The identity the guest sees (persisted) and the namespaces as they are now, in NSID order (for the control API). */
  readonly identity: ControllerIdentity;
  readonly namespaces: readonly NamespaceSlot[];
  /**
   * Attaches, detaches or grows a namespace while serving (refused while quiesced for a hand-over); with crash
   * recovery the checkpoint is rewritten before it resolves. Rejects with the reason; nothing changed then.
   */
  changeNamespace(change: NamespaceChange): Promise<void>;
  /**
   * Moves a namespace to another backing while the guest does I/O (one at a time per controller); rejects with
   * BackingSwapFailed, the old backing then serving on. A hand-over, a planned restart, closing, or detaching that
   * namespace cancels it.
   */
  swapBacking(request: BackingSwapRequest, hooks: BackingSwapHooks): Promise<MoveOutcome>;
  /** Replaces the I/O rate limits (NvmeController.setIoLimits); throws, with nothing changed, on an invalid one. */
  setIoLimits(limits: ControllerIoLimits): void;
  /** Stops serving: disconnects the client, flushes and closes the namespaces, removes the socket. */
  close(): Promise<void>;
  /** Live upgrade: stops reading the client and fetching commands, waits for in-flight I/O (see VfioUserServer). */
  quiesce(): Promise<void>;
  /** Undoes `quiesce`: the upgrade failed, serve on. */
  resume(): void;
  /** The controller's state for a successor, its fds added to `fds`; only while quiesced. */
  snapshot(fds: FdCollector): ControllerHandoverState;
  /**
   * The successor has taken over: flushes and closes the namespaces and nothing else (the socket file, the client
   * connection, the eventfds and guest memory now belong to the successor).
   */
  release(): Promise<void>;
  /** A controller built by `adopt`: the upgrade is committed, start serving. */
  start(): void;
  /**
   * Crash recovery's planned restart: quiesces (nothing in flight, every reply sent), writes the checkpoint and lets
   * go of the holder without detaching; the process exits next, and the next data plane recovers from it.
   */
  checkpointForRestart(): Promise<void>;
}

const HANDOVER_STATE_VERSION = 1;

/** One controller in a live-upgrade snapshot: what the guest has seen of it, and its server's state. */
export interface ControllerHandoverState {
  version: number;
  socketPath: string;
  /** Settings the guest has seen the effects of; the successor must be configured the same. */
  settings: Pick<ControllerConfig, 'doorbellMode' | 'msixVectors' | 'maxIoQueuePairs' | 'maxQueueEntries' | 'mdtsPages' | 'pci'>;
  identity: ControllerIdentity;
  identityPath?: string;
  /** `nsid` is absent in snapshots of versions before runtime namespace changes: index + 1. */
  namespaces: Array<{ nsid?: number; uri: string; ids: NamespaceIds; blockSize: number; blockCount: number }>;
  server: VfioUserServerState;
}

/**
 * Starts serving `config`. With `holderSocket` (vfiod serve --crash-recovery, docs/restart.md) the controller is
 * crash-safe: it attaches to the holder, and if the holder kept a checkpoint of this controller (the previous data
 * plane died), it recovers from it instead of starting afresh.
 */
export async function startController(config: ControllerConfig, parentLogger?: Logger, holderSocket?: string): Promise<RunningController> {
  const logger = (parentLogger ?? rootLogger).child({ component: 'controller', socket: config.socketPath });
  // The namespaces first: a configuration error ends the start before the holder has anything to keep.
  const namespaces = await openNamespaces(config, logger);
  if (holderSocket === undefined) return startFresh(config, namespaces, logger);
  let attached: Awaited<ReturnType<typeof HolderClient.attach>>;
  try {
    attached = await HolderClient.attach(holderSocket, config.socketPath);
  } catch (error) {
    await closeAll(namespaces, logger);
    throw error;
  }
  const { client, held } = attached;
  const checkpointFd = held.find((entry) => entry.name === CHECKPOINT_FD_NAME);
  if (checkpointFd !== undefined) {
    try {
      return await recoverController(config, namespaces, logger, client, held, checkpointFd.fd);
    } catch (error) {
      // The holder keeps the guest's connection: a later data plane may still recover it.
      client.close();
      throw error;
    }
  }
  closeFds(held.map((entry) => entry.fd));
  try {
    const area = CheckpointArea.create(commandJournalWords(config));
    const guard = new CrashGuard(client, area, logger);
    client.keep([{ fd: area.fd, name: CHECKPOINT_FD_NAME }]);
    return await startFresh(config, namespaces, logger, guard);
  } catch (error) {
    await client.detach().catch(() => client.close());
    throw error;
  }
}

function commandJournalWords(config: ControllerConfig): number {
  return CommandJournal.wordsFor(config.maxIoQueuePairs + 1, config.maxIoQueuePairs * config.maxQueueEntries);
}

async function startFresh(config: ControllerConfig, namespaces: Namespace[], logger: Logger, guard?: CrashGuard): Promise<RunningController> {
  try {
    const identityPath = identityPathOf(config);
    const stored = await loadOrCreateIdentity(identityPath, {
      ...identityOptionsOf(config),
      blockSizes: namespaces.map((namespace) => namespace.blockSize),
    });
    const ids = stored.namespaces.map(namespaceIdsOf);
    const slots = slotsOf(config, namespaces, ids);
    const { device, server } = build(config, slots, stored.controller, logger, undefined, guard);
    const controller = running(config, slots, stored.controller, identityPath, device, server, logger, guard);
    if (guard) {
      device.controller.attachJournal(new CommandJournal(guard.area.commandJournalWords(), config.maxIoQueuePairs + 1, true), () => guard.checkpointNow());
      if (device.bar0Fd !== undefined) guard.keep(device.bar0Fd);
    }
    try {
      await server.listen();
    } catch (error) {
      device.close();
      throw error;
    }
    if (guard) {
      guard.checkpointNow();
      guard.start();
    }
    logListening(logger, config, slots, stored.controller, identityPath);
    return controller;
  } catch (error) {
    await closeAll(namespaces, logger);
    throw error;
  }
}

/** A successor's controller before the hand-over: namespaces open, waiting for the predecessor's snapshot. */
export interface PendingTakeOver {
  readonly config: ControllerConfig;
  /**
   * Builds the controller from the predecessor's snapshot, without acting yet (`start` does, once the upgrade is
   * committed). Throws when this controller cannot take the snapshot on (different settings or namespaces).
   */
  adopt(state: ControllerHandoverState, fds: FdSource): RunningController;
  /** The hand-over did not happen: closes the namespaces. */
  abandon(): Promise<void>;
}

/**
 * Successor side, step 1, done before the predecessor quiesces (so the guest's pause stays short): opens the
 * namespaces as configured.
 */
export async function prepareTakeOver(config: ControllerConfig, parentLogger?: Logger): Promise<PendingTakeOver> {
  const logger = (parentLogger ?? rootLogger).child({ component: 'controller', socket: config.socketPath });
  const namespaces = await openNamespaces(config, logger);
  return {
    config,
    adopt: (state, fds) => adopt(config, namespaces, state, fds, logger),
    abandon: () => closeAll(namespaces, logger),
  };
}

/**
 * Crash recovery: the previous data plane died. Rebuilds the controller from the checkpoint the holder kept, with the
 * fds it kept, finishes what the command journal says was under way, and serves on. The guest's connection never
 * closed; it saw a pause.
 */
async function recoverController(
  config: ControllerConfig,
  namespaces: Namespace[],
  logger: Logger,
  client: HolderClient,
  held: HeldFd[],
  checkpointFd: number,
): Promise<RunningController> {
  const started = performance.now();
  const area = CheckpointArea.open(checkpointFd);
  const guard = new CrashGuard(client, area, logger, held);
  const { checkpoint, fds, local } = readCheckpoint(area, held);
  area.nextGeneration();
  try {
    // The guest knows the namespaces of the checkpoint. A runtime change whose new definition the previous data
    // plane did not get to save leaves the configuration behind it: the checkpoint's set is served (and reported).
    const served = configOfCheckpoint(config, checkpoint.state);
    if (served !== config) {
      logger.warn('the checkpoint has other namespaces than the configuration (a runtime change not saved before the crash): serving the checkpoint\'s', {
        configured: config.namespaces,
        checkpoint: served.namespaces,
        nsids: served.nsids,
      });
      await closeAll(namespaces.splice(0), logger);
      namespaces.push(...(await openNamespaces(served, logger)));
    }
    const controller = adopt(served, namespaces, checkpoint.state, fds, logger, guard);
    const session = checkpoint.state.server.session;
    if (session !== undefined) {
      controller.server.recoverStreams(recoveredStreams(session.streams, area.readStream(), fds, local));
    }
    const journal = new CommandJournal(area.commandJournalWords(), config.maxIoQueuePairs + 1, false);
    const outcome = controller.device.controller.recoverFromJournal(journal, () => guard.checkpointNow());
    guard.checkpointNow();
    controller.start();
    guard.start();
    const unused = local.size - fds.fds.length;
    logger.info('recovered from a crash of the previous data plane', {
      generation: area.generation,
      client: session !== undefined,
      commandsRunAgain: outcome.rerun,
      completionsPosted: outcome.posted,
      adminCommand: outcome.admin,
      heldFdsUnused: unused > 0 ? unused : undefined,
      millis: Math.round(performance.now() - started),
    });
    return controller;
  } catch (error) {
    await closeAll(namespaces, logger);
    throw error;
  }
}

/** `config` with the namespaces of `state` when they differ from its own (by NSID and URI); else `config` itself. */
function configOfCheckpoint(config: ControllerConfig, state: ControllerHandoverState): ControllerConfig {
  const nsids = state.namespaces.map((entry, index) => entry.nsid ?? index + 1);
  const uris = state.namespaces.map((entry) => entry.uri);
  if (nsids.join() === namespaceNsids(config).join() && uris.join('\n') === config.namespaces.join('\n')) return config;
  return { ...config, namespaces: uris, nsids };
}

function adopt(
  config: ControllerConfig,
  namespaces: Namespace[],
  state: ControllerHandoverState,
  fds: FdSource,
  logger: Logger,
  guard?: CrashGuard,
): RunningController {
  checkSnapshotVersion(state, 'controller hand-over state', HANDOVER_STATE_VERSION);
  if (path.resolve(state.socketPath) !== path.resolve(config.socketPath)) {
    throw new Error(`the snapshot is of the controller on ${state.socketPath}, not ${config.socketPath}`);
  }
  for (const key of ['doorbellMode', 'msixVectors', 'maxIoQueuePairs', 'maxQueueEntries', 'mdtsPages'] as const) {
    if (state.settings[key] !== config[key]) {
      throw new Error(`${key} is ${String(config[key])} here but ${String(state.settings[key])} in the running controller; it must stay the same`);
    }
  }
  if (JSON.stringify(state.settings.pci) !== JSON.stringify(config.pci)) throw new Error('the PCI ids differ from the running controller');
  const configured = namespaceNsids(config);
  const saved = state.namespaces.map((entry, index) => entry.nsid ?? index + 1);
  if (saved.join() !== configured.join()) {
    throw new Error(
      `namespaces ${configured.join(', ')} are configured, the running controller has ${saved.join(', ') || 'none'} ` +
        `(NSIDs; a namespace attached or detached at runtime must be in the configuration too)`,
    );
  }
  state.namespaces.forEach((entry, index) => {
    const namespace = namespaces[index]!;
    if (namespace.blockSize !== entry.blockSize || namespace.blockCount !== entry.blockCount) {
      throw new Error(
        `namespace ${saved[index]} (${namespace.description}) has ${namespace.blockCount} blocks of ${namespace.blockSize} bytes; ` +
          `the guest knows it as ${entry.blockCount} blocks of ${entry.blockSize} bytes`,
      );
    }
  });
  // The guest keeps seeing the identity it has (a memory-only controller's is not persisted anywhere else).
  const slots = slotsOf(config, namespaces, state.namespaces.map((entry) => entry.ids));
  const bar0Fd = NvmePciDevice.bar0FdOf((state.server as { device?: unknown } | undefined)?.device, fds);
  const { device, server } = build(config, slots, state.identity, logger, bar0Fd, guard);
  server.adopt(state.server, fds);
  logger.info('controller state taken over', {
    doorbellMode: config.doorbellMode,
    client: state.server.session !== undefined,
    dmaMappings: state.server.session?.dma.length ?? 0,
  });
  return running(config, slots, state.identity, state.identityPath, device, server, logger, guard);
}

async function openNamespaces(config: ControllerConfig, logger: Logger): Promise<Namespace[]> {
  const namespaces: Namespace[] = [];
  try {
    // The default namespace lives next to the socket, so the socket's directory must exist before it is opened.
    makeDirectory(path.dirname(path.resolve(config.socketPath)), 0o755);
    // The LBA format the guest knows is part of the slot's identity, whatever the backing (identity-store.ts).
    const blockSizes = plannedBlockSizes(identityPathOf(config), identityOptionsOf(config));
    const nsids = namespaceNsids(config);
    for (const [index, uri] of config.namespaces.entries()) {
      namespaces.push(await openSlotNamespace(uri, nsids[index]!, blockSizes[index], logger));
    }
    return namespaces;
  } catch (error) {
    await closeAll(namespaces, logger);
    throw error;
  }
}

/**
 * Opens namespace `uri` for slot `nsid` with the block size its identity says (`wanted`; undefined: the backend's);
 * IdentityConflict (the namespace closed again) when the backend cannot give it.
 */
async function openSlotNamespace(uri: string, nsid: number, wanted: number | undefined, logger: Logger): Promise<Namespace> {
  const spec = (wanted !== undefined ? specWithBlockSize(uri, wanted) : undefined) ?? parseNamespaceUri(uri);
  const namespace = await openNamespace(spec, logger);
  if (wanted !== undefined && namespace.blockSize !== wanted) {
    await closeAll([namespace], logger);
    throw new IdentityConflict(
      `namespace ${nsid} (${namespace.description}) has ${namespace.blockSize}-byte blocks, its identity says ${wanted}: ` +
        'its backend cannot change them (give another identity path for a new disk)',
    );
  }
  return namespace;
}

/** What the identity store needs of a controller's configuration: its namespaces by NSID and the identities asked for. */
/** Where the controller's identity persists: configured, or next to its first file namespace (or nowhere). */
function identityPathOf(config: ControllerConfig): string | undefined {
  return config.identityPath ?? defaultIdentityPath(config.namespaces.map((uri) => parseNamespaceUri(uri)));
}

function namespaceIdsOf(entry: NamespaceIds): NamespaceIds {
  return { nguid: entry.nguid, eui64: entry.eui64, uuid: entry.uuid };
}

/** The configured namespaces (open, in the order of `config.namespaces`) with their NSIDs and ids. */
function slotsOf(config: ControllerConfig, namespaces: Namespace[], ids: NamespaceIds[]): NamespaceSlot[] {
  const nsids = namespaceNsids(config);
  return namespaces.map((namespace, index) => ({ nsid: nsids[index]!, uri: config.namespaces[index]!, namespace, ids: ids[index]! }));
}

function build(
  config: ControllerConfig,
  slots: NamespaceSlot[],
  identity: ControllerIdentity,
  logger: Logger,
  bar0Fd?: number,
  guard?: CrashGuard,
): { device: NvmePciDevice; server: VfioUserServer } {
  const memory = new GuestMemory();
  const device = new NvmePciDevice({
    config,
    memory,
    namespaces: slots.map(({ nsid, namespace, ids }) => ({ nsid, namespace, ids })),
    identity,
    logger,
    ...(bar0Fd !== undefined ? { bar0Fd } : {}),
    ...(guard ? { doorbellPage: guard.area.doorbellPage, doorbellPageKept: guard.area.generation > 0 } : {}),
  });
  const server = new VfioUserServer({
    socketPath: config.socketPath,
    socketMode: config.socketMode,
    device,
    memory,
    logger,
    ...(guard ? { crashRecovery: guard } : {}),
  });
  if (guard) guard.isDoorbellWrite = (region, offset) => NvmePciDevice.isDoorbellWrite(region, offset);
  // The device names its client in fault reports (e.g. guest memory it lost).
  server.on('connect', (client: number) => (device.client = client));
  server.on('disconnect', () => (device.client = undefined));
  return { device, server };
}

function logListening(
  logger: Logger,
  config: ControllerConfig,
  slots: readonly NamespaceSlot[],
  identity: ControllerIdentity,
  identityPath: string | undefined,
): void {
  logger.info('listening', {
    doorbellMode: config.doorbellMode,
    namespaces: slots.map(({ nsid, namespace }) => ({
      nsid,
      backend: namespace.description,
      blockSize: namespace.blockSize,
      blocks: namespace.blockCount,
    })),
    serialNumber: identity.serialNumber,
    subsystemNqn: identity.subsystemNqn,
    identityPath,
  });
}

function running(
  config: ControllerConfig,
  initialSlots: NamespaceSlot[],
  identity: ControllerIdentity,
  identityPath: string | undefined,
  device: NvmePciDevice,
  server: VfioUserServer,
  logger: Logger,
  guard?: CrashGuard,
): RunningController {
  /** The namespaces now, in NSID order; runtime changes replace the array. */
  let slots: readonly NamespaceSlot[] = initialSlots;
  /** Quiesced for a hand-over or a planned restart: the namespace set must stay what the snapshot says. */
  let quiesced = false;
  const backends = (): Namespace[] => slots.map((slot) => slot.namespace);
  let closing: Promise<void> | undefined;
  /** The backing swap under way: its namespace, and how to stop it (it then ends, the old backing serving). */
  let swapping: { nsid: number; cancel(why: string): void; ended: Promise<unknown> } | undefined;
  const cancelSwap = async (why: string): Promise<void> => {
    const running = swapping;
    if (!running) return;
    running.cancel(why);
    await running.ended.catch(() => undefined);
  };
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      await cancelSwap('the controller is stopping');
      await server.close();
      await device.controller.flush().catch((error: unknown) => logger.error('flush failed', { error }));
      device.close();
      await closeAll(backends(), logger);
      // A clean stop: the client was disconnected, nothing is left to recover.
      await guard?.detach();
      logger.info('stopped');
    })());
  const release = (): Promise<void> =>
    (closing ??= (async () => {
      await cancelSwap('the controller was handed over');
      await device.controller.flush().catch((error: unknown) => logger.error('flush failed', { error }));
      await closeAll(backends(), logger);
      logger.info('handed over to the successor');
    })());
  const state = (serverState: VfioUserServerState): ControllerHandoverState => ({
    version: HANDOVER_STATE_VERSION,
    socketPath: path.resolve(config.socketPath),
    settings: {
      doorbellMode: config.doorbellMode,
      msixVectors: config.msixVectors,
      maxIoQueuePairs: config.maxIoQueuePairs,
      maxQueueEntries: config.maxQueueEntries,
      mdtsPages: config.mdtsPages,
      pci: config.pci,
    },
    identity,
    ...(identityPath !== undefined ? { identityPath } : {}),
    namespaces: slots.map(({ nsid, uri, namespace, ids }) => ({
      nsid,
      uri,
      ids,
      blockSize: namespace.blockSize,
      blockCount: namespace.blockCount,
    })),
    server: serverState,
  });
  if (guard) guard.snapshot = (fds) => state(server.checkpoint(fds));

  const attach = async (nsid: number, uri: string, asked: NamespaceIdentityOverride | undefined): Promise<void> => {
    // Identifiers and block size as at creation: the ones asked for, else those of the NSID's slot in the identity
    // file (identity-store.ts), else new ones.
    const after = [...slots.map((slot) => ({ nsid: slot.nsid, uri: slot.uri })), { nsid, uri }].sort((a, b) => a.nsid - b.nsid);
    const index = after.findIndex((slot) => slot.nsid === nsid);
    const configured = config.namespaceIdentities ?? [];
    const overrides = asked ? [...configured.filter((entry) => entry.nsid !== nsid), { ...asked, nsid }] : configured;
    const options = identityOptionsOf({ ...config, namespaces: after.map((slot) => slot.uri), nsids: after.map((slot) => slot.nsid), namespaceIdentities: overrides });
    const namespace = await openSlotNamespace(uri, nsid, plannedBlockSizes(identityPath, options)[index], logger);
    try {
      const blockSizes = after.map((slot) => (slot.nsid === nsid ? namespace : slots.find((s) => s.nsid === slot.nsid)!.namespace).blockSize);
      const stored = await loadOrCreateIdentity(identityPath, { ...options, blockSizes });
      const slot: NamespaceSlot = { nsid, uri, namespace, ids: namespaceIdsOf(stored.namespaces[index]!) };
      device.controller.attachNamespace({ nsid, namespace, ids: slot.ids });
      slots = [...slots, slot].sort((a, b) => a.nsid - b.nsid);
    } catch (error) {
      await closeAll([namespace], logger);
      throw error;
    }
  };
  const detach = async (nsid: number): Promise<void> => {
    const detached = await device.controller.detachNamespace(nsid);
    if (!detached) throw new Error(`namespace ${nsid} is not attached`);
    slots = slots.filter((slot) => slot.nsid !== nsid);
    // close flushes; a failure is logged (the guest has let go of the namespace already).
    await closeAll([detached], logger);
  };
  const resize = async (nsid: number, sizeBytes: number): Promise<void> => {
    const slot = slots.find((candidate) => candidate.nsid === nsid);
    if (!slot) throw new Error(`namespace ${nsid} is not attached`);
    const { namespace } = slot;
    if (!namespace.grow) throw new Error(`namespace ${nsid} (${namespace.description}) cannot be resized: its size is its backend's`);
    await namespace.grow(sizeBytes);
    slots = slots.map((candidate) => (candidate === slot ? { ...slot, uri: resizedNamespaceUri(slot.uri, sizeBytes) } : candidate));
    logger.info('namespace resized', { nsid, namespace: namespace.description, blocks: namespace.blockCount });
    device.controller.notifyNamespaceChanged(nsid);
  };

  /**
   * After a committed swap: the new backing takes the stand-in's place, so commands from now on take its own path
   * (a `memory:` backing's synchronous one) rather than the stand-in's forwarding. Nothing needs to drain first: the
   * switched stand-in only passes commands on to the same backing, and the commands that went through it (the held
   * ones included) keep it as theirs until they complete, their `abandon` included. Only when the new backing presents
   * to the guest what the stand-in does (write protection, thin provisioning: Identify Namespace reads them live);
   * else the stand-in stays, so no Identify field changes without a notice (docs/serve.md).
   */
  const serveWithoutStandIn = (nsid: number, stand: BackingSwap, target: Namespace): void => {
    const differs: string[] = [];
    if (stand.readOnly !== (target.readOnly === true)) differs.push('write protection');
    if (stand.supportsDeallocate !== target.supportsDeallocate) differs.push('thin provisioning');
    if (differs.length > 0) {
      logger.info('the stand-in stays in place: the new backing differs in what the guest was told', { nsid, backing: target.description, differs });
      return;
    }
    try {
      device.controller.replaceNamespace(nsid, target);
    } catch (error) {
      // Cannot happen (same NSID, same size as checked before the move); the stand-in serves on correctly if it does.
      logger.warn('the stand-in stays in place: the new backing could not take its place', { nsid, backing: target.description, error });
      return;
    }
    slots = slots.map((candidate) => (candidate.nsid === nsid ? { ...candidate, namespace: target } : candidate));
  };

  const swapBacking = async ({ nsid, uri, copy }: BackingSwapRequest, hooks: BackingSwapHooks): Promise<MoveOutcome> => {
    const refuse = (reason: Reason, message: string): BackingSwapFailed => new BackingSwapFailed(reason, `namespace ${nsid}: ${message}`);
    if (quiesced || closing) throw refuse('SWAP_INTERRUPTED', 'the controller is being handed over or stopped');
    if (swapping) throw refuse('SWAP_ALREADY_RUNNING', `namespace ${swapping.nsid} is moving to another backing already`);
    const slot = slots.find((candidate) => candidate.nsid === nsid);
    if (!slot) throw refuse('NAMESPACE_NOT_FOUND', 'is not attached');
    let cancelledBecause: string | undefined;
    let ended!: () => void;
    swapping = { nsid, cancel: (why) => (cancelledBecause ??= why), ended: new Promise<void>((resolve) => (ended = resolve)) };
    const source = slot.namespace;
    let target: Namespace | undefined;
    let stand: BackingSwap | undefined;
    try {
      const asked = explicitBlockSize(uri);
      if (asked !== undefined && asked !== source.blockSize) {
        throw refuse('SWAP_BACKING_INCOMPATIBLE', `${uri} asks for ${asked}-byte blocks, the guest knows ${source.blockSize}-byte blocks`);
      }
      try {
        target = await openSlotNamespace(uri, nsid, source.blockSize, logger);
      } catch (error) {
        if (error instanceof IdentityConflict) throw refuse('SWAP_BACKING_INCOMPATIBLE', error.message);
        const remote = parseNamespaceUri(uri).scheme === 'nvme-tcp';
        throw refuse(remote ? 'SWAP_BACKING_UNREACHABLE' : 'SWAP_BACKING_OPEN_FAILED', `${uri} did not open: ${errorMessage(error)}`);
      }
      const sizes = `${target.description} has ${target.blockCount} blocks, the namespace ${source.blockCount} (of ${source.blockSize} bytes)`;
      if (target.blockCount < source.blockCount) throw refuse('SWAP_BACKING_TOO_SMALL', `${sizes}: the new backing must be at least as large`);
      // A larger backing would show its size to the guest at the next start; a file: URI is given size= for that.
      if (target.blockCount > source.blockCount) throw refuse('SWAP_BACKING_INCOMPATIBLE', `${sizes}, and its URI cannot limit it to the namespace's size`);
      const problem = device.controller.replacementProblem(nsid, target);
      if (problem !== undefined) throw refuse('SWAP_BACKING_INCOMPATIBLE', `${target.description} ${problem}`);
      if (cancelledBecause) throw refuse('SWAP_INTERRUPTED', cancelledBecause);

      stand = new BackingSwap(source, target);
      device.controller.replaceNamespace(nsid, stand);
      slots = slots.map((candidate) => (candidate === slot ? { ...slot, namespace: stand! } : candidate));
      // Writes started before the stand-in are not tracked: the copy starts once they are done.
      const drainDeadline = performance.now() + SWAP_DRAIN_TIMEOUT_MS;
      while (device.controller.inFlightOn(nsid) > stand.inFlight) {
        if (performance.now() > drainDeadline) throw refuse('SWAP_FAILED', `commands started before the swap did not finish within ${SWAP_DRAIN_TIMEOUT_MS} ms`);
        await sleep(SWAP_DRAIN_POLL_MS);
      }
      logger.info('namespace moving to another backing', { nsid, from: source.description, to: target.description, copy });
      const outcome = await moveData(stand, {
        copy,
        onProgress: (progress) => hooks.onProgress(progress),
        cancelled: () => cancelledBecause !== undefined,
        cancelledBecause: () => refuse('SWAP_INTERRUPTED', cancelledBecause!),
        commit: async () => {
          await hooks.commit(uri);
          slots = slots.map((candidate) => (candidate.nsid === nsid ? { ...candidate, uri } : candidate));
          // A recovery after this point serves the new backing.
          guard?.checkpointNow();
        },
      });
      logger.info('namespace moved to another backing', { nsid, from: source.description, to: target.description, ...outcome, heldMs: Math.round(outcome.heldMs) });
      serveWithoutStandIn(nsid, stand, target);
      await closeAll([source], logger);
      return outcome;
    } catch (error) {
      if (stand) {
        // The old backing was authoritative throughout: it serves again; the stand-in's last commands go to it too.
        device.controller.replaceNamespace(nsid, source);
        slots = slots.map((candidate) => (candidate.nsid === nsid ? { ...candidate, namespace: source } : candidate));
      }
      if (target) await closeAll([target], logger);
      const failed = error instanceof BackingSwapFailed ? error : refuse('SWAP_FAILED', `${errorMessage(error)}; it stays on ${source.description}`);
      logger.warn('namespace backing swap failed; the old backing serves on', { nsid, uri, reason: failed.reason, error: failed.message });
      throw failed;
    } finally {
      swapping = undefined;
      ended();
    }
  };

  return {
    config,
    device,
    server,
    identity,
    get namespaces() {
      return slots;
    },
    swapBacking,
    changeNamespace: async (change) => {
      if (quiesced || closing) throw new Error('the controller is being handed over or stopped: its namespaces cannot change now');
      if (swapping?.nsid === change.nsid && change.kind !== 'attach') throw new Error(`namespace ${change.nsid} is moving to another backing: wait for that to end`);
      if (change.kind === 'attach') await attach(change.nsid, change.uri, change.identity);
      else if (change.kind === 'detach') await detach(change.nsid);
      else await resize(change.nsid, change.sizeBytes);
      // What the guest was told is part of the state a recovery must find.
      guard?.checkpointNow();
    },
    setIoLimits: (limits) => device.controller.setIoLimits(limits),
    close,
    release,
    quiesce: async () => {
      // Their contents live in this process only; a successor would present an empty disk.
      // What serves each namespace: behind a backing swap's stand-in (a move under way, or a committed one whose new
      // backing presents otherwise), its current backing (a move cancelled below leaves the old one).
      const refuseMemoryOnly = (): void => {
        const memoryOnly = backends().map(servingBacking).filter((namespace) => namespace instanceof MemoryNamespace);
        if (memoryOnly.length > 0) {
          throw new Error(`memory namespaces (${memoryOnly.map((namespace) => namespace.description).join(', ')}) cannot be handed over`);
        }
      };
      refuseMemoryOnly();
      await cancelSwap('a live upgrade');
      // A move past its last cancellation point was not stopped, only waited for: it may have landed on memory.
      refuseMemoryOnly();
      quiesced = true;
      await server.quiesce();
    },
    resume: () => {
      quiesced = false;
      server.resume();
    },
    checkpointForRestart: async () => {
      if (!guard) throw new Error('not under crash recovery');
      await cancelSwap('a planned restart');
      quiesced = true;
      await server.quiesce();
      guard.checkpointNow();
      guard.close();
    },
    start: () => {
      server.start();
      logListening(logger, config, slots, identity, identityPath);
    },
    snapshot: (fds) => state(server.snapshot(fds)),
  };
}

/** The backing that serves `namespace`'s commands: itself, or a backing swap's current one. */
function servingBacking(namespace: Namespace): Namespace {
  // A namespace moved again while a kept stand-in served it has one stand-in inside another.
  return namespace instanceof BackingSwap ? servingBacking(namespace.current) : namespace;
}

async function closeAll(namespaces: Namespace[], logger: Logger): Promise<void> {
  for (const namespace of namespaces) {
    await namespace.close().catch((error: unknown) =>
      logger.error('closing namespace failed', { namespace: namespace.description, error }),
    );
  }
}
