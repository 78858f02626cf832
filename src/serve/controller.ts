/**
 * Runs one emulated NVMe controller: opens its namespaces, loads its persisted identity, builds the NVMe PCI device
 * and serves it on its vfio-user socket. Runs on whatever thread calls it; `vfiod serve` calls it inside a worker
 * thread per controller (src/serve/worker.ts) so controllers scale across cores and cannot stall one another.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { GuestMemory } from '../memory/guest-memory.js';
import type { Namespace, NamespaceIds } from '../namespace/namespace.js';
import { openNamespace, parseNamespaceUri } from '../namespace/uri.js';
import { defaultIdentityPath, loadOrCreateIdentity } from './identity-store.js';
import { VfioUserServer } from '../vfio-user/server.js';
import { Logger, rootLogger } from '../util/log.js';
import type { ControllerConfig } from './config.js';
import { NvmePciDevice } from './nvme-pci-device.js';
import type { ControllerIdentity } from '../nvme/identity.js';

export interface RunningController {
  readonly config: ControllerConfig;
  readonly device: NvmePciDevice;
  readonly server: VfioUserServer;
  /** The identity the guest sees (persisted) and the open namespaces, NSID 1..n (for the control API). */
  readonly identity: ControllerIdentity;
  readonly namespaces: readonly Namespace[];
  /** Stops serving: disconnects the client, flushes and closes the namespaces, removes the socket. */
  close(): Promise<void>;
}

export async function startController(config: ControllerConfig, parentLogger?: Logger): Promise<RunningController> {
  const logger = (parentLogger ?? rootLogger).child({ component: 'controller', socket: config.socketPath });
  const namespaces: Namespace[] = [];
  try {
    // The default namespace lives next to the socket, so the socket's directory must exist before it is opened.
    await mkdir(path.dirname(path.resolve(config.socketPath)), { recursive: true, mode: 0o755 });
    const specs = config.namespaces.map((uri) => parseNamespaceUri(uri));
    for (const spec of specs) namespaces.push(await openNamespace(spec, logger));

    const identityPath = config.identityPath ?? defaultIdentityPath(specs);
    const stored = await loadOrCreateIdentity(identityPath, {
      controller: config.identity,
      namespaceUris: config.namespaces,
    });
    const withIds: Array<{ namespace: Namespace; ids: NamespaceIds }> = namespaces.map((namespace, index) => ({
      namespace,
      ids: stored.namespaces[index]!,
    }));

    const memory = new GuestMemory();
    const device = new NvmePciDevice({ config, memory, namespaces: withIds, identity: stored.controller, logger });
    const server = new VfioUserServer({
      socketPath: config.socketPath,
      socketMode: config.socketMode,
      device,
      memory,
      logger,
    });
    server.on('connect', (client: number) => (device.client = client));
    server.on('disconnect', () => (device.client = undefined));
    try {
      await server.listen();
    } catch (error) {
      device.close();
      throw error;
    }
    logger.info('listening', {
      doorbellMode: config.doorbellMode,
      namespaces: namespaces.map((namespace, index) => ({
        nsid: index + 1,
        backend: namespace.description,
        blockSize: namespace.blockSize,
        blocks: namespace.blockCount,
      })),
      serialNumber: stored.controller.serialNumber,
      subsystemNqn: stored.controller.subsystemNqn,
      identityPath,
    });

    let closing: Promise<void> | undefined;
    const close = (): Promise<void> =>
      (closing ??= (async () => {
        await server.close();
        await device.controller.flush().catch((error: unknown) => logger.error('flush failed', { error }));
        device.close();
        await closeAll(namespaces, logger);
        logger.info('stopped');
      })());
    return { config, device, server, identity: stored.controller, namespaces, close };
  } catch (error) {
    await closeAll(namespaces, logger);
    throw error;
  }
}

async function closeAll(namespaces: Namespace[], logger: Logger): Promise<void> {
  for (const namespace of namespaces) {
    await namespace.close().catch((error: unknown) =>
      logger.error('closing namespace failed', { namespace: namespace.description, error }),
    );
  }
}
