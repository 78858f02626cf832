/**
 * `vfiod serve`: its options, parsed into one controller's configuration (src/serve runs it).
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { BackingRefused, inspectBacking } from '../namespace/backing.js';
import { isFileNamespaceSpec, parseNamespaceUri, type MemoryNamespaceSpec } from '../namespace/uri.js';
import { CONTROLLER_LIMITS, controllerConfig, type ControllerConfig, defaultNamespaceUri, namespaceNsids, namespaceSlots } from '../serve/config.js';
import {
  checkIdentityConflicts,
  checkIdentityFileWritable,
  checkIdentityOverrides,
  checkNamespaceOverrides,
  defaultIdentityPath,
  IdentityConflict,
  IdentityFileRefused,
} from '../serve/identity-store.js';
import type { ServeOptions } from '../serve/supervisor.js';
import { errorMessage } from '../util/errors.js';
import { applyLogOptions, integer, metricsOption, serviceUsage, socketMode, UsageError } from './common.js';
import { DEFAULT_CONFIG_PATH } from '../config/file.js';
import { IO_ABANDON_MAX_MS, SERVE_FLAGS, withoutOptions } from '../config/flags.js';
import { controllerIdentityOptions, IDENTITY_USAGE, namespaceIdentityOptions, namespaceNsidOptions } from './identity-options.js';
import { LIMIT_USAGE, limitOptions } from './limit-options.js';

/** How `vfiod serve` names the identity fields in messages: by their options. */
const SERVE_IDENTITY_NAMES = {
  serialNumber: '--serial',
  modelNumber: '--model',
  firmwareRevision: '--firmware',
  subsystemNqn: '--nqn',
  ieeeOui: '--ieee-oui',
  controllerId: '--controller-id',
};
const SERVE_NAMESPACE_IDENTITY_NAMES = { nsid: 'nsid', nguid: 'nguid', eui64: 'eui64', uuid: 'uuid', blockSize: 'block-size' };

export const SERVE_USAGE = `Usage: vfiod serve --socket <path> [--namespace <uri>]... [options]

Serves one emulated NVMe controller on a vfio-user unix socket for QEMU (vfio-user-pci) or
cloud-hypervisor (--user-device). Without --namespace, a sparse 1 GiB file next to the socket
(<socket dir>/<socket name>.img) backs namespace 1.

Options:
  --socket <path>          vfio-user socket to listen on (its directory is created)      [required]
  --namespace <uri>        namespace backend, repeat for NSID 1, 2, ...:
                             memory:<size>[?block-size=512|4096]
                             file:<path>[?size=<size>&direct=1&block-size=4096&readonly=1]
                             nvme-tcp://<host>:<port>[,<host>:<port>]/<subsystem NQN>?nsid=<n>
                               (remote NVMe/TCP namespace; options in docs/nvme-tcp.md)
  --poll                   polled doorbells: BAR0's doorbell page is shared memory watched by a
                           poller thread (lowest latency, one core busy while I/O flows)
  --socket-mode <octal>    socket file mode (default 0600)
  --msix-vectors <n>       MSI-X vectors (default 64; Windows fails with 512)
  --io-queues <n>          maximum I/O queue pairs (default 31)
  --queue-entries <n>      maximum entries per queue (default 1024)
  --mdts <n>               maximum transfer as log2 of 4 KiB pages (default 8 = 1 MiB)
  --io-abandon-ms <n>      a reset, disconnect or DMA_UNMAP gives up stuck I/O after this long (default 5000)
  --identity <path>        where the controller's and each namespace slot's identity persist
                           (default: <first file namespace>.vfiod.json)
${IDENTITY_USAGE}${LIMIT_USAGE}${serviceUsage(27)}  --handover-socket <path> where a successor connects for a live upgrade
                           (default: <socket dir>/<socket name>.handover.sock)
  --take-over              replace the vfiod serving these options (same --socket, namespaces
                           and settings) without disconnecting its client (docs/restart.md);
                           'vfiod upgrade' does this for you
  --report-to-parent       with --take-over: send the outcome to the parent process over Node's
                           IPC channel (what 'vfiod upgrade' uses)
  --crash-recovery         a holder process keeps the guests' connections and restarts the data
                           plane if it crashes (docs/restart.md)
  --holder-socket <path>   with --crash-recovery: where the data plane reaches the holder
                           (default: <socket dir>/<socket name>.holder.sock)
  --data-plane             internal: how the holder starts the data plane
  --standby                internal: a data plane that loads and waits until the holder needs it
  --json                   once listening, print the socket and the controller's identity (serial,
                           NQN, namespaces with their ids) as one JSON line on stdout; logs stay on stderr
  --config <file>          the configuration file (default ${DEFAULT_CONFIG_PATH} when it exists; its
                           serve: section; options given here override it; docs/config.md)
  --no-config              ignore the configuration file
  -h, --help               show this help
`;

export interface ParsedServeArgs {
  config: ControllerConfig;
  options: ServeOptions;
  /** --crash-recovery: run the holder (src/serve/holder.ts), which starts the data plane with `dataPlaneArgv`. */
  crashRecovery?: {
    /** --holder-socket; default: defaultHolderSocket(config.socketPath). */
    holderSocket?: string;
    /** These options without --crash-recovery and --holder-socket (the holder adds its own and --data-plane). */
    dataPlaneArgv: string[];
  };
}

/** Parses `vfiod serve` options; returns undefined when help was asked for. */
export function parseServeArgs(argv: string[]): ParsedServeArgs | undefined {
  try {
    return parse(argv);
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(`serve: ${error.message}`);
    throw error;
  }
}

function parse(argv: string[]): ParsedServeArgs | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: false,
      options: SERVE_FLAGS,
      tokens: true,
    });
  } catch (error) {
    throw new UsageError(errorMessage(error));
  }
  const values = parsed.values;
  if (values.help) return undefined;
  if (!values.socket) throw new UsageError('--socket <path> is required');
  applyLogOptions(values);
  const metrics = metricsOption(values);
  const identity = controllerIdentityOptions(values);
  const namespaceIdentities = namespaceIdentityOptions(values);
  let slots: Pick<ControllerConfig, 'namespaces' | 'nsids'>;
  try {
    slots = namespaceSlots(values.namespace?.length ? values.namespace : [defaultNamespaceUri(values.socket)], namespaceNsidOptions(values));
  } catch (error) {
    throw new UsageError(`--nsid: ${errorMessage(error)}`);
  }
  try {
    checkIdentityOverrides('identity', identity, SERVE_IDENTITY_NAMES);
    checkNamespaceOverrides('--namespace-identity', namespaceIdentities, namespaceNsids(slots), SERVE_NAMESPACE_IDENTITY_NAMES);
  } catch (error) {
    throw new UsageError(errorMessage(error));
  }

  const ioLimits = limitOptions(values.limit, namespaceNsids(slots));
  if (values['report-to-parent'] && !values['take-over']) throw new UsageError('--report-to-parent goes with --take-over');
  if (values['crash-recovery'] && values['take-over']) throw new UsageError('--crash-recovery cannot be combined with --take-over');
  if ((values['crash-recovery'] || values['data-plane']) && values.namespace?.some((uri) => uri.startsWith('memory:'))) {
    throw new UsageError('--crash-recovery cannot keep a memory: namespace (its data lives in the process that crashes); use a file');
  }
  if (values['crash-recovery'] && values['data-plane']) throw new UsageError('--data-plane is internal: the holder of --crash-recovery adds it');
  if (values['data-plane'] && values['take-over']) throw new UsageError('a live upgrade under --crash-recovery is not supported yet');
  if (values['data-plane'] && values['holder-socket'] === undefined) throw new UsageError('--data-plane needs --holder-socket');
  if (values.standby && !values['data-plane']) throw new UsageError('--standby is internal: the holder of --crash-recovery adds it');
  if (values['holder-socket'] !== undefined && !values['crash-recovery'] && !values['data-plane']) {
    throw new UsageError('--holder-socket goes with --crash-recovery');
  }
  const options: ServeOptions = {
    ...(values['take-over'] ? { takeOver: true } : {}),
    ...(values['handover-socket'] !== undefined ? { handoverSocket: values['handover-socket'] } : {}),
    ...(values['report-to-parent'] ? { reportToParent: true } : {}),
    ...(values['data-plane'] ? { dataPlane: true, holderSocket: values['holder-socket']! } : {}),
    ...(values.standby ? { standby: true } : {}),
    ...(metrics ? { metrics } : {}),
    ...(values.json ? { json: true } : {}),
    argv: describedArgv(argv),
  };
  const config = controllerConfig({
    socketPath: values.socket,
    ...slots,
    doorbellMode: values.poll ? 'polled' : 'interrupt',
    ...(values['socket-mode'] !== undefined ? { socketMode: socketMode(values['socket-mode']) } : {}),
    ...(values['msix-vectors'] !== undefined ? { msixVectors: integer('--msix-vectors', values['msix-vectors'], ...CONTROLLER_LIMITS.msixVectors) } : {}),
    ...(values['io-queues'] !== undefined ? { maxIoQueuePairs: integer('--io-queues', values['io-queues'], ...CONTROLLER_LIMITS.maxIoQueuePairs) } : {}),
    ...(values['queue-entries'] !== undefined ? { maxQueueEntries: integer('--queue-entries', values['queue-entries'], ...CONTROLLER_LIMITS.maxQueueEntries) } : {}),
    ...(values.mdts !== undefined ? { mdtsPages: integer('--mdts', values.mdts, ...CONTROLLER_LIMITS.mdtsPages) } : {}),
    ...(values['io-abandon-ms'] !== undefined ? { ioAbandonMs: integer('--io-abandon-ms', values['io-abandon-ms'], 0, IO_ABANDON_MAX_MS) } : {}),
    ...(values.identity !== undefined ? { identityPath: values.identity } : {}),
    identity,
    ...(namespaceIdentities.length ? { namespaceIdentities } : {}),
    ...(ioLimits ? { ioLimits } : {}),
  });
  checkFiles(config);
  if (!values['crash-recovery']) return { config, options };
  const crashRecovery = {
    ...(values['holder-socket'] !== undefined ? { holderSocket: values['holder-socket'] } : {}),
    // The data plane's options: these, without the holder's own.
    dataPlaneArgv: withoutOptions(argv, parsed.tokens, ['crash-recovery', 'holder-socket']),
  };
  return { config, options, crashRecovery };
}

/**
 * What the controller would refuse once started, said at once as a usage error: a file namespace that is not a
 * regular file or a block device (/proc/self/mem, /dev/mem, a FIFO, ...), an identity path holding another program's
 * file. The controller checks again on the descriptors it opens.
 */
function checkFiles(config: ControllerConfig): void {
  const specs = [];
  let memoryBytes = 0;
  for (const uri of config.namespaces) {
    let spec;
    try {
      spec = parseNamespaceUri(uri);
    } catch (error) {
      throw new UsageError(`--namespace: ${errorMessage(error)}`);
    }
    specs.push(spec);
    if (spec.scheme === 'memory') memoryBytes += (spec as MemoryNamespaceSpec).sizeBytes;
    if (!isFileNamespaceSpec(spec)) continue;
    try {
      inspectBacking(spec.path);
    } catch (error) {
      if (error instanceof BackingRefused) throw new UsageError(`--namespace '${uri}': ${error.message}`);
      // anything else (no permission, ...) is the controller's to report
    }
  }
  // Memory namespaces are sparse, but a guest that writes them whole must not push the host into the OOM killer.
  if (memoryBytes > os.totalmem()) {
    const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
    throw new UsageError(`memory namespaces of ${gib(memoryBytes)} in all are more than this host's ${gib(os.totalmem())} of RAM; use a file: namespace`);
  }
  const identityPath = config.identityPath ?? defaultIdentityPath(specs);
  try {
    if (identityPath !== undefined) checkIdentityFileWritable(identityPath);
  } catch (error) {
    if (error instanceof IdentityFileRefused) throw new UsageError(`${config.identityPath !== undefined ? '--identity: ' : ''}${error.message}`);
  }
  // Asked-for identities that clash with the persisted slots or the URIs: said now, nothing written.
  try {
    checkIdentityConflicts(identityPath, {
      controller: config.identity,
      namespaceUris: config.namespaces,
      ...(config.namespaceIdentities ? { namespaces: config.namespaceIdentities } : {}),
    });
  } catch (error) {
    if (error instanceof IdentityConflict) {
      throw new UsageError(`--namespace-identity: ${error.message}`);
    }
  }
}

/**
 * The options a successor started by `vfiod upgrade` gets (with --take-over added): these, without the ones that
 * only concern one start (--take-over, --report-to-parent).
 */
export function describedArgv(argv: string[]): string[] {
  const out: string[] = [];
  for (const arg of argv) {
    if (arg === '--take-over' || arg === '--report-to-parent') continue;
    out.push(arg);
  }
  return out;
}
