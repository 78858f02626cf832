/**
 * `vfiod daemon`: runs the gRPC control API until SIGTERM/SIGINT (docs/daemon.md).
 * Exit codes: 0 clean shutdown, 1 could not start, 2 usage error.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_DAEMON_SOCKET, DEFAULT_STATE_DIR, type DaemonOptions, startDaemon } from '../daemon/server.js';
import { DEFAULT_ROOTS } from '../devices/host.js';
import { DEFAULT_MAX_CONTROLLERS } from '../serve/registry.js';
import { RESTART_EXIT_CODE } from '../serve/holder-protocol.js';
import { announceServing } from '../serve/supervisor.js';
import { notifyStopping } from '../util/sd-notify.js';
import { catchEarlySignals } from '../util/early-signals.js';
import { errorMessage, VfiodError } from '../util/errors.js';
import { rootLogger } from '../util/log.js';
import { applyLogOptions, integer, metricsOption, serviceUsage, socketMode, UsageError } from './common.js';
import { DEFAULT_EVENT_RETENTION } from '../daemon/events.js';
import { DEFAULT_EVENT_STREAM_MAX_LAG } from '../daemon/events-service.js';
import { DAEMON_FLAGS, EVENT_COUNT_MAX, MAX_CONTROLLERS_LIMIT, UNIX_ID_MAX, withoutOptions } from '../config/flags.js';
import { applyConfigFile, ConfigFileError, DEFAULT_CONFIG_PATH, locateOptionError, type Configured } from '../config/file.js';

export const DAEMON_USAGE = `Usage: vfiod daemon [options]

Serves the control API (gRPC vfiod.v1: DeviceService, ControllerService, AttachmentService, OperationService,
EventService, health, reflection).
On start it reconciles device claims with sysfs and restarts the emulated controllers defined in the state dir.

Options:
  --socket <path>        unix socket (default ${DEFAULT_DAEMON_SOCKET}, mode 0600)
  --socket-mode <octal>  socket file mode (default 0600)
  --no-socket            do not listen on a unix socket (TCP only)
  --tcp <host:port>      also listen on TCP; needs --tls-cert and --tls-key, or --insecure-tcp
  --tls-cert <file>      PEM certificate chain for TCP
  --tls-key <file>       PEM private key for TCP
  --tls-ca <file>        PEM CA bundle: require client certificates signed by it (mutual TLS);
                         required with --tls-cert unless --insecure-tls-no-client-cert
  --insecure-tcp         allow plain TCP (no authentication, no encryption)
Who may do what (read-only: List, Get, Stream, Watch, Wait; admin: everything; docs/daemon.md):
  --read-only-uid <n>, --read-only-gid <n>
                         unix socket peers (by their uid or primary gid) that may read; repeatable.
                         Widen --socket-mode so they can connect (e.g. 0666, or 0660 and a group)
  --admin-uid <n>, --admin-gid <n>
                         further admin peers; uid 0 and the daemon's own uid always are
  --read-only-client <pattern>, --admin-client <pattern>
                         mutual TLS: client certificates by subject CN or SAN ('*' matches anything);
                         repeatable. Without them every client the CA signed is admin
  --insecure-tls-no-client-cert
                         allow TLS without client certificates (any client that reaches the port)
  --state-dir <dir>      claims database, controller definitions, operations, request ids and events
                         (api.db) (default ${DEFAULT_STATE_DIR})
  --namespace-dir <dir>  file namespaces and identity files of controllers created through the API
                         must be in it (symlinks resolved); repeatable (default <state dir>/namespaces)
  --max-controllers <n>  most emulated controllers at once (default ${DEFAULT_MAX_CONTROLLERS}); more: RESOURCE_EXHAUSTED
  --event-retention <n>  events kept in the state dir for WatchEvents replays (default ${DEFAULT_EVENT_RETENTION})
  --event-stream-max-lag <n>  events a WatchEvents client may fall behind before it is dropped
                         (default ${DEFAULT_EVENT_STREAM_MAX_LAG}, at most the retention)
  --sysfs-root <dir>     default /sys      --dev-root <dir>  default /dev      --proc-root <dir>  default /proc
${serviceUsage(25)}  --crash-recovery       a holder process keeps the guests' connections and restarts the daemon if it
                         dies; each controller recovers from its checkpoint (docs/restart.md)
  --holder-socket <path> with --crash-recovery: where the daemon reaches the holder
                         (default <state dir>/holder.sock)
  --config <file>        the configuration file (default ${DEFAULT_CONFIG_PATH} when it exists; its
                         daemon: section; options given here override it; docs/config.md)
  --no-config            ignore the configuration file
  --data-plane, --standby
                         internal: how the crash-recovery holder starts the daemon
  -h, --help
`;

/** Parses `vfiod daemon` options; undefined when help was asked for. */
export function parseDaemonArgs(argv: string[]): (DaemonOptions & { crashRecovery?: { holderSocket: string; dataPlaneArgv: string[] }; standby?: boolean }) | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: false,
      options: DAEMON_FLAGS,
      tokens: true,
    });
  } catch (error) {
    throw new UsageError(errorMessage(error));
  }
  const v = parsed.values;
  if (v.help) return undefined;
  if (v['crash-recovery'] && v['data-plane']) throw new UsageError('--data-plane is internal: the holder of --crash-recovery adds it');
  if (v['data-plane'] && v['holder-socket'] === undefined) throw new UsageError('--data-plane needs --holder-socket');
  if (v.standby && !v['data-plane']) throw new UsageError('--standby is internal: the holder of --crash-recovery adds it');
  if (v['holder-socket'] !== undefined && !v['crash-recovery'] && !v['data-plane']) throw new UsageError('--holder-socket goes with --crash-recovery');
  applyLogOptions(v);
  const metrics = metricsOption(v);
  if (v['no-socket'] && v.socket !== undefined) throw new UsageError('--socket and --no-socket contradict each other');
  if (v['no-socket'] && v.tcp === undefined) throw new UsageError('--no-socket needs --tcp: the daemon must listen somewhere');
  const tlsGiven = v['tls-cert'] !== undefined || v['tls-key'] !== undefined || v['tls-ca'] !== undefined;
  if (tlsGiven && v.tcp === undefined) throw new UsageError('--tls-cert/--tls-key/--tls-ca only apply to --tcp');
  if (tlsGiven && (v['tls-cert'] === undefined || v['tls-key'] === undefined)) throw new UsageError('TLS needs both --tls-cert and --tls-key');
  if (v.tcp !== undefined && !tlsGiven && !v['insecure-tcp']) {
    throw new UsageError(`refusing plain TCP on ${v.tcp}: give --tls-cert and --tls-key, or --insecure-tcp to accept an unauthenticated, unencrypted API`);
  }
  if (v['insecure-tcp'] && tlsGiven) throw new UsageError('--insecure-tcp and TLS options contradict each other');
  if (v['insecure-tls-no-client-cert'] && (v['tls-cert'] === undefined || v['tls-ca'] !== undefined)) {
    throw new UsageError('--insecure-tls-no-client-cert goes with --tls-cert and --tls-key, without --tls-ca');
  }
  if (v['tls-cert'] !== undefined && v['tls-ca'] === undefined && !v['insecure-tls-no-client-cert']) {
    throw new UsageError(
      `refusing TLS on ${v.tcp} without client certificates: anyone who can reach it would control the host's devices and disks; ` +
        "give --tls-ca <PEM bundle of the CA that signs your clients' certificates> (mutual TLS), or --insecure-tls-no-client-cert to accept any client",
    );
  }
  for (const dir of v['namespace-dir'] ?? []) {
    if (!dir.startsWith('/')) throw new UsageError(`--namespace-dir must be an absolute path, not '${dir}'`);
  }
  const mode = v['socket-mode'] === undefined ? undefined : socketMode(v['socket-mode']);
  const ids = (option: 'read-only-uid' | 'read-only-gid' | 'admin-uid' | 'admin-gid'): number[] | undefined =>
    v[option]?.map((text) => {
      if (!/^[0-9]{1,10}$/.test(text) || Number(text) > UNIX_ID_MAX) throw new UsageError(`--${option} takes a numeric id (id -u <user>, getent group <group>), not '${text}'`);
      return Number(text);
    });
  const peers = (uids: number[] | undefined, gids: number[] | undefined) => (uids || gids ? { ...(uids ? { uids } : {}), ...(gids ? { gids } : {}) } : undefined);
  const unixAdmin = peers(ids('admin-uid'), ids('admin-gid'));
  const unixReadOnly = peers(ids('read-only-uid'), ids('read-only-gid'));
  const clientRoles = v['admin-client'] || v['read-only-client'];
  if (clientRoles && v['tls-ca'] === undefined) throw new UsageError('--admin-client and --read-only-client name client certificates: they need mutual TLS (--tls-ca)');
  const access = {
    ...(unixAdmin || unixReadOnly ? { unix: { ...(unixAdmin ? { admin: unixAdmin } : {}), ...(unixReadOnly ? { readOnly: unixReadOnly } : {}) } } : {}),
    ...(clientRoles ? { tls: { admin: v['admin-client'] ?? [], readOnly: v['read-only-client'] ?? [] } } : {}),
  };
  let maxControllers: number | undefined;
  if (v['max-controllers'] !== undefined) {
    maxControllers = Number(v['max-controllers']);
    if (!/^[0-9]+$/.test(v['max-controllers']) || !Number.isSafeInteger(maxControllers) || maxControllers < 1 || maxControllers > MAX_CONTROLLERS_LIMIT) {
      throw new UsageError(`--max-controllers must be an integer in 1..${MAX_CONTROLLERS_LIMIT}, got '${v['max-controllers']}'`);
    }
  }
  return {
    socketPath: v['no-socket'] ? null : (v.socket ?? DEFAULT_DAEMON_SOCKET),
    ...(mode !== undefined ? { socketMode: mode } : {}),
    ...(access.unix || access.tls ? { access } : {}),
    ...(v.tcp !== undefined ? { tcp: v.tcp } : {}),
    ...(v['tls-cert'] !== undefined && v['tls-key'] !== undefined
      ? { tls: { cert: v['tls-cert'], key: v['tls-key'], ...(v['tls-ca'] !== undefined ? { ca: v['tls-ca'] } : {}) } }
      : {}),
    ...(v['insecure-tcp'] ? { insecureTcp: true } : {}),
    ...(v['insecure-tls-no-client-cert'] ? { insecureTlsWithoutClientCert: true } : {}),
    ...(v['namespace-dir']?.length ? { namespaceDirs: v['namespace-dir'] } : {}),
    stateDir: v['state-dir'] ?? DEFAULT_STATE_DIR,
    ...(v['data-plane'] ? { holderSocket: v['holder-socket']! } : {}),
    ...(v.standby ? { standby: true } : {}),
    ...(v['crash-recovery']
      ? {
          crashRecovery: {
            holderSocket: path.resolve(v['holder-socket'] ?? path.join(v['state-dir'] ?? DEFAULT_STATE_DIR, 'holder.sock')),
            dataPlaneArgv: withoutOptions(argv, parsed.tokens, ['crash-recovery', 'holder-socket']),
          },
        }
      : {}),
    ...(maxControllers !== undefined ? { maxControllers } : {}),
    ...(v['event-retention'] !== undefined ? { eventRetention: integer('--event-retention', v['event-retention'], 1, EVENT_COUNT_MAX) } : {}),
    ...(v['event-stream-max-lag'] !== undefined ? { eventStreamMaxLag: integer('--event-stream-max-lag', v['event-stream-max-lag'], 1, EVENT_COUNT_MAX) } : {}),
    ...(metrics ? { metrics } : {}),
    roots: { sysfs: v['sysfs-root'] ?? DEFAULT_ROOTS.sysfs, dev: v['dev-root'] ?? DEFAULT_ROOTS.dev, proc: v['proc-root'] ?? DEFAULT_ROOTS.proc },
  };
}

export async function runDaemon(commandLine: string[]): Promise<number> {
  let options: ReturnType<typeof parseDaemonArgs>;
  let configured: Configured | undefined;
  try {
    configured = applyConfigFile('daemon', commandLine);
    options = parseDaemonArgs(configured.argv);
  } catch (error) {
    if (error instanceof ConfigFileError) process.stderr.write(`${error.message}\n`);
    else process.stderr.write(`vfiod daemon: ${configured ? locateOptionError('daemon', configured, errorMessage(error)) : errorMessage(error)}\n`);
    return 2;
  }
  if (!options) {
    process.stdout.write(DAEMON_USAGE);
    return 0;
  }
  if (options.crashRecovery) {
    const { runHolder } = await import('../serve/holder.js');
    return runHolder({ command: 'daemon', ...options.crashRecovery });
  }
  const log = rootLogger.child({ component: 'daemon' });
  // A signal during the start (after the 'listening' line, before the handlers below) is kept and acted on once they
  // are set, instead of ending the process unhandled; one while a standby waits ends it (it has opened nothing).
  const early = catchEarlySignals();
  const dataPlane = options.holderSocket !== undefined ? await import('../serve/data-plane.js') : undefined;
  if (dataPlane) {
    dataPlane.stopWithHolder();
    dataPlane.tellHolderSignalsAreCaught();
  }
  if (options.standby) {
    // Everything is loaded: wait until the holder needs this daemon.
    const { waitForActivation } = await import('../serve/supervisor.js');
    if ((await waitForActivation(log, early.signalled)) !== undefined) {
      early.release();
      return 0;
    }
  }
  let daemon;
  try {
    daemon = await startDaemon(options);
  } catch (error) {
    early.release();
    log.error('cannot start', { error: errorMessage(error), ...(error instanceof VfiodError ? { reason: error.reason } : {}) });
    process.stderr.write(`vfiod daemon: ${errorMessage(error)}\n`);
    return error instanceof VfiodError && error.code === 'INVALID_ARGUMENT' ? 2 : 1;
  }
  const started = daemon;
  return new Promise<number>((resolve) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (signalled) return;
      signalled = true;
      log.info('shutting down', { signal });
      if (options.holderSocket === undefined) notifyStopping('stopping: draining calls, stopping controllers');
      started.close().then(
        () => resolve(0),
        (error: unknown) => {
          log.error('shutdown failed', { error: errorMessage(error) });
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    const earlySignal = early.release();
    if (earlySignal !== undefined) onSignal(earlySignal);
    if (dataPlane) {
      // The holder's planned restart (docs/restart.md): checkpoint every controller quiesced, then exit for the next
      // data plane, leaving every connection open.
      process.once('SIGUSR2', () => {
        if (signalled) return;
        signalled = true;
        log.info('planned restart: quiescing and checkpointing the controllers');
        void started.controllers.checkpointForRestart().then((failed) => {
          log.info('exiting for a planned restart', { failed });
          process.exit(RESTART_EXIT_CODE);
        });
      });
      dataPlane.tellHolderRestartIsHandled();
    }
    // Last: a holder from before 'restart-ready' takes 'serving' to mean that SIGUSR2 is handled.
    announceServing({ dataPlane: dataPlane !== undefined }, `serving the control API on ${started.socketPath ?? started.tcpAddress}`);
  });
}
