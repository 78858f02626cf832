/**
 * `vfiod daemon`: the gRPC control API (vfiod.v1 DeviceService, ControllerService, AttachmentService, OperationService,
 * EventService, DaemonService, plus grpc.health.v1 and server reflection) on a unix socket (mode 0600) and optionally
 * TCP with TLS. Every call is checked against its caller's role first (src/daemon/access.ts): unix peers by uid/gid,
 * TLS clients by certificate.
 *
 * Start: open the claims database in the state directory, reconcile claims with sysfs (logging the result), start the
 * persisted emulated controllers, reconcile the attachment records with their VMMs, then listen. Close: health goes
 * NOT_SERVING, in-flight calls drain (then are cancelled, and the daemon waits for their handlers to finish),
 * controllers flush and stop, the socket file is removed. Definitions and claims stay in the state dir.
 */
import { existsSync, lstatSync, readFileSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { AttachmentManager, type AttachmentManagerOptions } from '../attach/attachments.js';
import { ClaimStore } from '../devices/claims.js';
import { DEFAULT_ROOTS, type HostRoots, realSysfsWriter, type SysfsWriter } from '../devices/host.js';
import { DeviceManager, type ReconcileEntry } from '../devices/manager.js';
import type { VfioProber } from '../devices/probe.js';
import { errorMessage, VfiodError } from '../util/errors.js';
import { HandlerTracker } from './requests.js';
import { type Logger, rootLogger } from '../util/log.js';
import { attachmentService } from './attachments-service.js';
import { ControllerRegistry } from '../serve/registry.js';
import { controllerService } from './controllers-service.js';
import { deviceService } from './devices-service.js';
import { ApiStore } from './api-store.js';
import { attachmentInfo } from './attachments-service.js';
import { DEFAULT_EVENT_RETENTION, EventLog } from './events.js';
import { eventService, streamMaxLag } from './events-service.js';
import { OperationTracker } from './operations.js';
import { operationService } from './operations-service.js';
import { RequestIds } from './request-ids.js';
import { loadProtocol, serviceDefinition } from './proto.js';
import { daemonService } from './daemon-service.js';
import { socketPathState } from '../util/socket-path.js';
import { type AccessPolicy, authorizationInterceptor, type Caller, certificateCaller, roleOfPeer } from './access.js';
import type { PeerCredentials } from '../native/index.js';
import { makeDirectory } from '../util/make-directory.js';
import type { MetricsAddress } from '../metrics/address.js';
import type { MetricsEndpoint } from '../metrics/endpoint.js';

export const DEFAULT_DAEMON_SOCKET = '/run/vfiod/vfiod.sock';
export const DEFAULT_STATE_DIR = '/var/lib/vfiod';
const SERVICES = ['vfiod.v1.DeviceService', 'vfiod.v1.ControllerService', 'vfiod.v1.AttachmentService', 'vfiod.v1.OperationService', 'vfiod.v1.EventService'] as const;
const DRAIN_TIMEOUT_MS = 5_000;
/** After the drain: how long shutdown waits for handlers of cancelled calls to finish their rollbacks. */
const HANDLER_SETTLE_MS = 60_000;

export interface TlsFiles {
  cert: string;
  key: string;
  /** CA bundle for client certificates: with it, clients must present a certificate it signed (mutual TLS). */
  ca?: string;
}

export interface DaemonOptions {
  /** Unix socket for the API (default /run/vfiod/vfiod.sock); null: no unix socket. */
  socketPath?: string | null;
  /**
   * Mode of the unix socket file (default 0600: only root / the daemon's user may connect). Widen it (0660 with a
   * group, 0666) for the read-only callers of `access.unix`: who connects is checked on every connection.
   */
  socketMode?: number;
  /** Who may do what (src/daemon/access.ts): unix peers by uid/gid, mutual-TLS clients by certificate name. */
  access?: AccessPolicy;
  /** Also listen on TCP, "host:port". Requires tls unless insecureTcp. */
  tcp?: string;
  tls?: TlsFiles;
  /** Allow plain (unauthenticated, unencrypted) TCP. Refused without it. */
  insecureTcp?: boolean;
  /**
   * Allow TLS without client certificates (`tls` without `ca`): any client that reaches the port controls the API.
   * Refused without it; logged as a warning on every start.
   */
  insecureTlsWithoutClientCert?: boolean;
  /**
   * Directories the file namespaces (and identity files) of controllers created through the API must be in, symlinks
   * resolved (default: <state dir>/namespaces, created). `vfiod serve` has no such limit: its operator chooses.
   */
  namespaceDirs?: string[];
  stateDir?: string;
  roots?: HostRoots;
  /** Crash recovery: run as the data plane of `vfiod daemon --crash-recovery`, with the holder at this socket. */
  holderSocket?: string;
  /** Tests inject the fake kernel and prober; production uses sysfs writes and the native VFIO prober. */
  writer?: SysfsWriter;
  prober?: VfioProber;
  adapterFor?: AttachmentManagerOptions['adapterFor'];
  /** How long detach waits for a VMM to close the VFIO group before releasing. */
  releaseWaitMs?: number;
  /** How often controller stats are sampled for rates (default 1000 ms). */
  statsIntervalMs?: number;
  /** The Prometheus endpoint (`--metrics`), off when not given. */
  metrics?: MetricsAddress;
  /** Shutdown: how long running calls get before they are cancelled (default 5 s). */
  drainTimeoutMs?: number;
  /** How long a controller may take to start listening (default 60 s). */
  controllerStartTimeoutMs?: number;
  /** RAM the memory namespaces of all controllers may use together (default: the host's RAM). */
  controllerMemoryLimitBytes?: number;
  /** Most emulated controllers at once (default 128); CreateController beyond it is RESOURCE_EXHAUSTED. */
  maxControllers?: number;
  /** Events kept in the state dir for WatchEvents replays (default 10000). */
  eventRetention?: number;
  /** How many events a WatchEvents stream may fall behind before it is dropped (default 1000, at most the retention). */
  eventStreamMaxLag?: number;
  /** Device manager waits (tests shorten them). */
  pollMs?: number;
  vfioTimeoutMs?: number;
  logger?: Logger;
}

export interface Daemon {
  readonly socketPath: string | null;
  /** "host:port" actually bound (port 0 picks one), when TCP is on. */
  readonly tcpAddress: string | null;
  /** Where the Prometheus endpoint listens (host:port bound, or its socket path), when --metrics is on. */
  readonly metricsAddress: string | null;
  readonly reconcileReport: ReconcileEntry[];
  readonly controllers: ControllerRegistry;
  readonly health: HealthImplementation;
  /** Drains calls, stops the controllers, closes the database and removes the socket. Idempotent. */
  close(): Promise<void>;
}

function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new VfiodError('INVALID_ARGUMENT', `--tcp must be host:port (e.g. 127.0.0.1:50051), not '${text}'`, { reason: 'DAEMON_OPTION_INVALID', option: '--tcp' });
  return { host: m[1] ?? m[2]!, port };
}

function bind(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(address, credentials, (error, port) => (error ? reject(error) : resolve(port))));
}

export async function startDaemon(options: DaemonOptions = {}): Promise<Daemon> {
  const logger = (options.logger ?? rootLogger).child({ component: 'daemon' });
  const socketPath = options.socketPath === undefined ? DEFAULT_DAEMON_SOCKET : options.socketPath;
  if (options.tcp !== undefined && !options.tls && !options.insecureTcp) {
    throw new VfiodError('INVALID_ARGUMENT', `refusing plain TCP on ${options.tcp}: give --tls-cert and --tls-key (and --tls-ca for client certificates), or --insecure-tcp to accept an unauthenticated, unencrypted API`, {
      reason: 'PLAIN_TCP_REFUSED',
      address: options.tcp,
    });
  }
  if (options.tls && (!options.tls.cert || !options.tls.key)) throw new VfiodError('INVALID_ARGUMENT', 'TLS needs both a certificate and a key', { reason: 'DAEMON_OPTION_INVALID', option: '--tls-cert' });
  if (options.tls && !options.tls.ca && !options.insecureTlsWithoutClientCert) {
    // TLS alone only encrypts: every client that reaches the port could list, create and attach controllers whose
    // disks are host files.
    throw new VfiodError(
      'INVALID_ARGUMENT',
      `refusing TLS on ${String(options.tcp)} without client certificates: anyone who can reach it would control the host's devices and disks. ` +
        'Give --tls-ca <PEM bundle of the CA that signs your clients\' certificates> (mutual TLS), or --insecure-tls-no-client-cert to accept any client',
      { reason: 'TLS_CLIENT_CA_REQUIRED' },
    );
  }
  if (options.insecureTlsWithoutClientCert && options.tls?.ca) {
    throw new VfiodError('INVALID_ARGUMENT', '--insecure-tls-no-client-cert and --tls-ca contradict each other', { reason: 'DAEMON_OPTION_INVALID', option: '--insecure-tls-no-client-cert' });
  }
  if (options.access?.tls && !options.tls?.ca) {
    throw new VfiodError('INVALID_ARGUMENT', 'roles by client certificate (--admin-client, --read-only-client) need mutual TLS: give --tls-ca', { reason: 'DAEMON_OPTION_INVALID', option: '--read-only-client' });
  }
  const tcp = options.tcp !== undefined ? parseHostPort(options.tcp) : undefined;
  if (socketPath === null && !tcp) throw new VfiodError('INVALID_ARGUMENT', 'nothing to listen on: give a unix socket or --tcp', { reason: 'DAEMON_OPTION_INVALID', option: '--no-socket' });
  let tlsCredentials: grpc.ServerCredentials | undefined;
  if (options.tls) {
    const option = (what: string): string => (what === 'certificate' ? '--tls-cert' : what === 'key' ? '--tls-key' : '--tls-ca');
    const read = (what: string, file: string): Buffer => {
      try {
        return readFileSync(file);
      } catch (error) {
        throw new VfiodError('INVALID_ARGUMENT', `cannot read the TLS ${what} ${file}: ${errorMessage(error)}`, { reason: 'DAEMON_OPTION_INVALID', option: option(what) });
      }
    };
    const keyPair = { cert_chain: read('certificate', options.tls.cert), private_key: read('key', options.tls.key) };
    const ca = options.tls.ca ? read('CA bundle', options.tls.ca) : null;
    tlsCredentials = grpc.ServerCredentials.createSsl(ca, [keyPair], ca !== null);
  }

  // Refuse a socket another daemon listens on before touching any state.
  if (socketPath !== null) {
    const state = await socketPathState(socketPath);
    if (state === 'live') throw new VfiodError('FAILED_PRECONDITION', `${socketPath} is in use: another vfiod daemon (or something else) listens on it`, { reason: 'DAEMON_SOCKET_IN_USE', socketPath });
    if (state === 'not-a-socket') throw new VfiodError('FAILED_PRECONDITION', `refusing to replace ${socketPath}: it exists and is not a socket`, { reason: 'DAEMON_SOCKET_NOT_A_SOCKET', socketPath });
    if (state === 'stale') {
      unlinkSync(socketPath);
      logger.info('removed stale socket file', { socket: socketPath });
    }
  }

  const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
  const roots = options.roots ?? DEFAULT_ROOTS;
  makeDirectory(stateDir, 0o700);
  const claims = new ClaimStore(path.join(stateDir, 'claims.db'));
  const apiStore = new ApiStore(path.join(stateDir, 'api.db'));
  const cleanup: Array<() => Promise<void> | void> = [() => claims.close(), () => apiStore.close()];
  const undo = async (): Promise<void> => {
    for (const step of cleanup.reverse()) await step();
  };
  try {
    // Loaded on first use: a host without the native VFIO code still lists devices and runs controllers.
    const prober = options.prober ?? lazyNativeProber(roots);
    const manager = new DeviceManager({
      roots,
      writer: options.writer ?? realSysfsWriter,
      prober,
      claims,
      ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
      ...(options.vfioTimeoutMs !== undefined ? { vfioTimeoutMs: options.vfioTimeoutMs } : {}),
    });
    const reconcileReport = manager.reconcile();
    for (const entry of reconcileReport) {
      const level = entry.action === 'attention' ? 'warn' : 'info';
      logger.log(level, 'reconcile', { bdf: entry.bdf, action: entry.action, detail: entry.detail });
    }
    logger.info('claims reconciled', {
      claims: claims.list().length,
      repaired: reconcileReport.filter((e) => e.action === 'repaired').length,
      removed: reconcileReport.filter((e) => e.action === 'removed').length,
      attention: reconcileReport.filter((e) => e.action === 'attention').length,
    });

    const events = new EventLog(apiStore, options.eventRetention ?? DEFAULT_EVENT_RETENTION);
    const operations = new OperationTracker(apiStore, events);
    const requestIds = new RequestIds(apiStore);
    // Asked only after start-up, once the registry below exists.
    let controllers: ControllerRegistry | undefined;
    const attachments = new AttachmentManager({
      devices: manager,
      ...(options.adapterFor ? { adapterFor: options.adapterFor } : {}),
      ...(options.releaseWaitMs !== undefined ? { releaseWaitMs: options.releaseWaitMs } : {}),
      vfioUserInUse: (socket) => controllers?.clientConnected(socket),
      onChange: (a, removed) =>
        events.publish({
          resourceType: 'attachment',
          resourceName: `vms/${a.vmId}/attachments/${a.deviceId}`,
          action: removed ? 'DETACHED' : a.state.toUpperCase().replace(/-/g, '_'),
          vmId: a.vmId,
          detail: a.note ?? '',
          snapshot: { attachment: attachmentInfo(a) },
        }),
    });
    const registry = new ControllerRegistry({
      stateDir,
      logger,
      ...(options.statsIntervalMs !== undefined ? { sampleIntervalMs: options.statsIntervalMs } : {}),
      ...(options.controllerStartTimeoutMs !== undefined ? { startTimeoutMs: options.controllerStartTimeoutMs } : {}),
      ...(options.controllerMemoryLimitBytes !== undefined ? { memoryLimitBytes: options.controllerMemoryLimitBytes } : {}),
      ...(options.maxControllers !== undefined ? { maxControllers: options.maxControllers } : {}),
      ...(options.namespaceDirs !== undefined ? { namespaceDirs: options.namespaceDirs } : {}),
      ...(options.holderSocket !== undefined ? { holderSocket: options.holderSocket } : {}),
    });
    cleanup.push(() => registry.close());
    controllers = registry;
    const restored = await registry.restore();
    if (restored.started.length || restored.failed.length) logger.info('controllers restored', restored);
    // After the claims and the controllers: compares each attachment record with its VMM (each entry is logged).
    const attachmentReport = await attachments.reconcile();
    // After the reconcile, which finished or rolled back what their handlers had begun.
    const interrupted = operations.interruptLeftovers();
    if (interrupted.length) logger.warn('operations interrupted by the previous daemon marked failed', { operations: interrupted.map((o) => o.name) });
    if (attachmentReport.length) {
      logger.info('attachments reconciled', Object.fromEntries(['ok', 'repaired', 'removed', 'attention'].map((action) => [action, attachmentReport.filter((e) => e.action === action).length])));
    }

    const handlers = new HandlerTracker();
    const inBackground = (work: () => Promise<void>): void =>
      handlers.track(work().catch((error: unknown) => logger.error('operation failed unexpectedly', { error: errorMessage(error) })));
    const maxLag = streamMaxLag(events, options.eventStreamMaxLag);
    const services: Array<[grpc.ServiceDefinition, grpc.UntypedServiceImplementation]> = [
      [serviceDefinition('DeviceService'), handlers.wrap(deviceService({ roots, manager, events, maxLag, requestIds, logger }), ['StreamDeviceEvents'])],
      [serviceDefinition('ControllerService'), handlers.wrap(controllerService({ registry, attachments, events, requestIds, operations, logger }))],
      [serviceDefinition('AttachmentService'), handlers.wrap(attachmentService({ attachments, devices: manager, registry, events, operations, requestIds, inBackground, logger }))],
      [serviceDefinition('OperationService'), handlers.wrap(operationService({ operations, logger }))],
      [serviceDefinition('EventService'), handlers.wrap(eventService({ events, logger, maxLag }), ['WatchEvents'])],
      [serviceDefinition('DaemonService'), handlers.wrap(daemonService({ holderSocket: options.holderSocket, logger }))],
    ];
    const health = new HealthImplementation({ '': 'NOT_SERVING', ...Object.fromEntries(SERVICES.map((s) => [s, 'NOT_SERVING' as const])) });
    const reflection = new ReflectionService(loadProtocol().definition);
    // One grpc.Server per kind of caller, all with the same services: grpc-js tells an interceptor nothing about the
    // connection a call came on, so the server a connection is handed to is what knows who called.
    const servers: grpc.Server[] = [];
    const newServer = (callerOf: (call: grpc.ServerInterceptingCallInterface) => Caller): grpc.Server => {
      const server = new grpc.Server({ interceptors: [authorizationInterceptor(callerOf, logger)] });
      for (const [definition, implementation] of services) server.addService(definition, implementation);
      health.addToServer(server);
      reflection.addToServer(server);
      servers.push(server);
      return server;
    };
    cleanup.push(() => servers.forEach((server) => server.forceShutdown()));

    let stopAccepting = (): void => {};
    if (socketPath !== null) {
      const dir = path.dirname(path.resolve(socketPath));
      if (!existsSync(dir)) makeDirectory(dir, 0o700);
      const mode = options.socketMode ?? 0o600;
      const daemonUid = process.getuid?.() ?? 0;
      // One server per peer uid:gid (a host has few): its caller, and so every refusal, names them.
      const injectors = new Map<string, grpc.ConnectionInjector>();
      const injectorFor = (peer: PeerCredentials): grpc.ConnectionInjector => {
        const key = `${peer.uid}:${peer.gid}`;
        let injector = injectors.get(key);
        if (!injector) {
          const caller: Caller = { role: roleOfPeer(peer, options.access?.unix, daemonUid), name: `unix peer uid ${peer.uid} gid ${peer.gid}` };
          logger.info('unix peer', { uid: peer.uid, gid: peer.gid, pid: peer.pid, role: caller.role ?? 'none' });
          injector = newServer(() => caller).createConnectionInjector(grpc.ServerCredentials.createInsecure());
          injectors.set(key, injector);
        }
        return injector;
      };
      // The addon is loaded only with a unix socket: a TCP-only daemon runs without it (as it lists devices without it).
      const { listenUnix } = await import('./unix-listener.js');
      const listener = listenUnix(socketPath, mode, (socket, peer) => injectorFor(peer).injectConnection(socket), logger);
      stopAccepting = () => listener.close();
      cleanup.push(() => listener.close());
      cleanup.push(() => removeSocket(socketPath));
      const created = lstatSync(socketPath);
      if (!created.isSocket() || (created.mode & 0o777) !== mode) {
        throw new VfiodError('FAILED_PRECONDITION', `${socketPath} is not the socket just bound with mode 0${mode.toString(8)} (${created.isSocket() ? `mode 0${(created.mode & 0o777).toString(8)}` : 'not a socket'}): was it replaced?`, {
          reason: 'DAEMON_SOCKET_NOT_A_SOCKET',
          socketPath,
        });
      }
    }
    let tcpAddress: string | null = null;
    if (tcp) {
      const host = tcp.host.includes(':') ? `[${tcp.host}]` : tcp.host;
      const server = newServer((call) => certificateCaller(call.getAuthContext().sslPeerCertificate, options.access?.tls));
      const port = await bind(server, `${host}:${tcp.port}`, tlsCredentials ?? grpc.ServerCredentials.createInsecure());
      tcpAddress = `${host}:${port}`;
      if (!tlsCredentials) logger.warn('plain TCP enabled (--insecure-tcp): anyone who can reach it controls the host devices', { address: tcpAddress });
      else if (!options.tls?.ca) {
        logger.warn('TLS without client certificates (--insecure-tls-no-client-cert): anyone who can reach it controls the host devices', { address: tcpAddress });
      }
    }
    let metricsEndpoint: MetricsEndpoint | undefined;
    if (options.metrics) {
      // Loaded only when asked for: prom-client costs 50-100 ms of start-up.
      const { startMetricsEndpoint } = await import('../metrics/endpoint.js');
      const endpoint = (metricsEndpoint = await startMetricsEndpoint(options.metrics, () => registry.metricsSamples(), logger));
      cleanup.push(() => void endpoint.close());
    }
    for (const service of ['', ...SERVICES]) health.setStatus(service, 'SERVING');
    logger.info('listening', { socket: socketPath, tcp: tcpAddress, tls: Boolean(tlsCredentials), mutualTls: Boolean(options.tls?.ca), stateDir, namespaceDirs: registry.namespaceDirs });

    let closing: Promise<void> | undefined;
    const close = (): Promise<void> =>
      (closing ??= (async () => {
        for (const service of ['', ...SERVICES]) health.setStatus(service, 'NOT_SERVING');
        events.close();
        const drainTimeoutMs = options.drainTimeoutMs ?? DRAIN_TIMEOUT_MS;
        stopAccepting();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            logger.warn('calls still running after the drain timeout: cancelling them', { timeoutMillis: drainTimeoutMs, running: handlers.size });
            servers.forEach((server) => server.forceShutdown());
            resolve();
          }, drainTimeoutMs);
          let draining = servers.length;
          const drained = (): void => {
            if (--draining > 0) return;
            clearTimeout(timer);
            resolve();
          };
          if (draining === 0) drained();
          servers.forEach((server) => server.tryShutdown(drained));
        });
        // Cancelled calls' handlers are still attaching, detaching or rolling back: they need the claims database.
        if (handlers.size > 0) {
          logger.info('waiting for cancelled calls to finish', { running: handlers.size });
          if (!(await handlers.settled(HANDLER_SETTLE_MS))) {
            logger.error('calls still running at exit: their devices may need `vfiod devices reconcile`', { running: handlers.size });
          }
        }
        await metricsEndpoint?.close();
        await registry.close();
        claims.close();
        apiStore.close();
        if (socketPath !== null) removeSocket(socketPath);
        logger.info('stopped');
      })());
    return { socketPath, tcpAddress, metricsAddress: metricsEndpoint?.address ?? null, reconcileReport, controllers: registry, health, close };
  } catch (error) {
    await undo();
    throw error;
  }
}

/** The native VFIO prober, its module (and so the addon) loaded on the first probe. */
function lazyNativeProber(roots: HostRoots): VfioProber {
  let loading: Promise<VfioProber> | undefined;
  const load = async (): Promise<VfioProber> => {
    const { NativeVfioProber } = await import('../vfio/prober.js');
    return new NativeVfioProber({ sysfsRoot: roots.sysfs, devRoot: roots.dev });
  };
  return {
    probe: async (bdf) => (await (loading ??= load())).probe(bdf),
  };
}

function removeSocket(socketPath: string): void {
  try {
    unlinkSync(socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
