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
import { openNamespace, parseNamespaceUri, specWithBlockSize } from '../namespace/uri.js';
import { defaultIdentityPath, IdentityConflict, loadOrCreateIdentity, plannedBlockSizes } from './identity-store.js';
import { VfioUserServer, type VfioUserServerState } from '../vfio-user/server.js';
import { Logger, rootLogger } from '../util/log.js';
import { checkSnapshotVersion, type FdCollector, type FdSource } from '../util/handover-fds.js';
import type { ControllerConfig } from './config.js';
import { NvmePciDevice } from './nvme-pci-device.js';
import type { ControllerIdentity } from '../nvme/identity.js';
import { CommandJournal } from '../nvme/command-journal.js';
import { CheckpointArea } from './checkpoint-area.js';
import { CHECKPOINT_FD_NAME, CrashGuard, readCheckpoint, recoveredStreams } from './crash-guard.js';
import { HolderClient, type HeldFd } from './holder-client.js';
import { closeFds } from '../vfio-user/connection.js';
import { makeDirectory } from '../util/make-directory.js';

export interface RunningController {
  readonly config: ControllerConfig;
  readonly device: NvmePciDevice;
  readonly server: VfioUserServer;
  /** The identity the guest sees (persisted) and the open namespaces, NSID 1..n (for the control API). */
  readonly identity: ControllerIdentity;
  readonly namespaces: readonly Namespace[];
  /** Each namespace's ids as the guest sees them, NSID order. */
  readonly namespaceIds: readonly NamespaceIds[];
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
  namespaces: Array<{ uri: string; ids: NamespaceIds; blockSize: number; blockCount: number }>;
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
      controller: config.identity,
      namespaceUris: config.namespaces,
      ...(config.namespaceIdentities ? { namespaces: config.namespaceIdentities } : {}),
      blockSizes: namespaces.map((namespace) => namespace.blockSize),
    });
    const ids = stored.namespaces.map((entry): NamespaceIds => ({ nguid: entry.nguid, eui64: entry.eui64, uuid: entry.uuid }));
    const { device, server } = build(config, namespaces, ids, stored.controller, logger, undefined, guard);
    const controller = running(config, namespaces, ids, stored.controller, identityPath, device, server, logger, guard);
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
    logListening(logger, config, namespaces, stored.controller, identityPath);
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
    const controller = adopt(config, namespaces, checkpoint.state, fds, logger, guard);
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
  if (state.namespaces.length !== namespaces.length) {
    throw new Error(`${namespaces.length} namespaces configured, the running controller has ${state.namespaces.length}`);
  }
  state.namespaces.forEach((saved, index) => {
    const namespace = namespaces[index]!;
    if (namespace.blockSize !== saved.blockSize || namespace.blockCount !== saved.blockCount) {
      throw new Error(
        `namespace ${index + 1} (${namespace.description}) has ${namespace.blockCount} blocks of ${namespace.blockSize} bytes; ` +
          `the guest knows it as ${saved.blockCount} blocks of ${saved.blockSize} bytes`,
      );
    }
  });
  // The guest keeps seeing the identity it has (a memory-only controller's is not persisted anywhere else).
  const ids = state.namespaces.map((saved) => saved.ids);
  const bar0Fd = NvmePciDevice.bar0FdOf((state.server as { device?: unknown } | undefined)?.device, fds);
  const { device, server } = build(config, namespaces, ids, state.identity, logger, bar0Fd, guard);
  server.adopt(state.server, fds);
  logger.info('controller state taken over', {
    doorbellMode: config.doorbellMode,
    client: state.server.session !== undefined,
    dmaMappings: state.server.session?.dma.length ?? 0,
  });
  return running(config, namespaces, ids, state.identity, state.identityPath, device, server, logger, guard);
}

async function openNamespaces(config: ControllerConfig, logger: Logger): Promise<Namespace[]> {
  const namespaces: Namespace[] = [];
  try {
    // The default namespace lives next to the socket, so the socket's directory must exist before it is opened.
    makeDirectory(path.dirname(path.resolve(config.socketPath)), 0o755);
    // The LBA format the guest knows is part of the slot's identity, whatever the backing (identity-store.ts).
    const blockSizes = plannedBlockSizes(identityPathOf(config), {
      namespaceUris: config.namespaces,
      ...(config.namespaceIdentities ? { namespaces: config.namespaceIdentities } : {}),
    });
    for (const [index, uri] of config.namespaces.entries()) {
      const wanted = blockSizes[index];
      const spec = (wanted !== undefined ? specWithBlockSize(uri, wanted) : undefined) ?? parseNamespaceUri(uri);
      const namespace = await openNamespace(spec, logger);
      namespaces.push(namespace);
      if (wanted !== undefined && namespace.blockSize !== wanted) {
        throw new IdentityConflict(
          `namespace ${index + 1} (${namespace.description}) has ${namespace.blockSize}-byte blocks, its identity says ${wanted}: ` +
            'its backend cannot change them (give another identity path for a new disk)',
        );
      }
    }
    return namespaces;
  } catch (error) {
    await closeAll(namespaces, logger);
    throw error;
  }
}

/** Where the controller's identity persists: configured, or next to its first file namespace (or nowhere). */
function identityPathOf(config: ControllerConfig): string | undefined {
  return config.identityPath ?? defaultIdentityPath(config.namespaces.map((uri) => parseNamespaceUri(uri)));
}

function build(
  config: ControllerConfig,
  namespaces: Namespace[],
  ids: NamespaceIds[],
  identity: ControllerIdentity,
  logger: Logger,
  bar0Fd?: number,
  guard?: CrashGuard,
): { device: NvmePciDevice; server: VfioUserServer } {
  const withIds = namespaces.map((namespace, index) => ({ namespace, ids: ids[index]! }));
  const memory = new GuestMemory();
  const device = new NvmePciDevice({
    config,
    memory,
    namespaces: withIds,
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
  namespaces: readonly Namespace[],
  identity: ControllerIdentity,
  identityPath: string | undefined,
): void {
  logger.info('listening', {
    doorbellMode: config.doorbellMode,
    namespaces: namespaces.map((namespace, index) => ({
      nsid: index + 1,
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
  namespaces: Namespace[],
  ids: NamespaceIds[],
  identity: ControllerIdentity,
  identityPath: string | undefined,
  device: NvmePciDevice,
  server: VfioUserServer,
  logger: Logger,
  guard?: CrashGuard,
): RunningController {
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      await server.close();
      await device.controller.flush().catch((error: unknown) => logger.error('flush failed', { error }));
      device.close();
      await closeAll(namespaces, logger);
      // A clean stop: the client was disconnected, nothing is left to recover.
      await guard?.detach();
      logger.info('stopped');
    })());
  const release = (): Promise<void> =>
    (closing ??= (async () => {
      await device.controller.flush().catch((error: unknown) => logger.error('flush failed', { error }));
      await closeAll(namespaces, logger);
      logger.info('handed over to the successor');
    })());
  const memoryOnly = namespaces.filter((namespace) => namespace instanceof MemoryNamespace);
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
    namespaces: namespaces.map((namespace, index) => ({
      uri: config.namespaces[index]!,
      ids: ids[index]!,
      blockSize: namespace.blockSize,
      blockCount: namespace.blockCount,
    })),
    server: serverState,
  });
  if (guard) guard.snapshot = (fds) => state(server.checkpoint(fds));
  return {
    config,
    device,
    server,
    identity,
    namespaces,
    namespaceIds: ids,
    close,
    release,
    quiesce: async () => {
      // Their contents live in this process only; a successor would present an empty disk.
      if (memoryOnly.length > 0) {
        throw new Error(`memory namespaces (${memoryOnly.map((namespace) => namespace.description).join(', ')}) cannot be handed over`);
      }
      await server.quiesce();
    },
    resume: () => server.resume(),
    checkpointForRestart: async () => {
      if (!guard) throw new Error('not under crash recovery');
      await server.quiesce();
      guard.checkpointNow();
      guard.close();
    },
    start: () => {
      server.start();
      logListening(logger, config, namespaces, identity, identityPath);
    },
    snapshot: (fds) => state(server.snapshot(fds)),
  };
}

async function closeAll(namespaces: Namespace[], logger: Logger): Promise<void> {
  for (const namespace of namespaces) {
    await namespace.close().catch((error: unknown) =>
      logger.error('closing namespace failed', { namespace: namespace.description, error }),
    );
  }
}
