/**
 * The `vfiod` command line. Subcommands:
 *   serve     serve emulated NVMe controllers on vfio-user sockets (docs/serve.md)
 *   devices   the passthrough manager: list/show/prepare/release/reconcile (docs/passthrough.md)
 *   daemon    the gRPC control API; controllers/attach/detach/attachments/vm-config are its clients (docs/daemon.md)
 *   bench     fio benchmark harness: emulation vs passthrough vs file (docs/benchmarks.md)
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { CONTROLLER_LIMITS, controllerConfig, type ControllerConfig } from '../serve/config.js';
import { setLogLevel, rootLogger, type LogLevel } from '../util/log.js';

const USAGE = `Usage: vfiod <command> [options]

Commands:
  serve     Serve an emulated NVMe controller on a vfio-user socket
  devices   Find, check, prepare and release PCI devices for VFIO passthrough
  bench     Run the fio benchmark matrix against emulated, passthrough and file targets
  daemon    Run the gRPC control API (devices, emulated controllers, attachments)
  controllers  Create, list, inspect and delete the daemon's emulated NVMe controllers
  attach    Hot-plug a device or emulated controller into a running VM (through the daemon)
  detach    Hot-unplug it and give it back to the host
  attachments  List what the daemon attached to VMs
  vm-config Print the static device configuration for creating a VM (cloud-hypervisor / QEMU)
  version   Print the version

Run 'vfiod <command> --help' for a command's options.
`;

const SERVE_USAGE = `Usage: vfiod serve --socket <path> [--namespace <uri>]... [options]

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
  --identity <path>        where serial, NQN and namespace ids persist
                           (default: <first file namespace>.vfiod.json)
  --serial <text>          serial number (max 20 chars)
  --model <text>           model number (max 40 chars)
  --firmware <text>        firmware revision (max 8 chars)
  --nqn <nqn>              subsystem NQN
  --log-level <level>      debug, info, warn or error (default info)
  --handover-socket <path> where a successor connects for a live upgrade
                           (default: <socket dir>/<socket name>.handover.sock)
  --take-over              replace the vfiod serving these options (same --socket, namespaces
                           and settings) without disconnecting its client (docs/restart.md)
  -h, --help               show this help
`;

export class UsageError extends Error {}

export async function main(argv: string[]): Promise<void> {
  try {
    process.exitCode = await run(argv);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`vfiod: ${error.message}\n`);
      process.exitCode = 2;
      return;
    }
    rootLogger.error('fatal', { error: error instanceof Error ? error.message : String(error) });
    process.exitCode = 1;
  }
}

async function run(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      const parsed = parseServeArgs(rest);
      if (!parsed) {
        process.stdout.write(SERVE_USAGE);
        return 0;
      }
      const { serve } = await import('../serve/supervisor.js');
      return serve([parsed.config], undefined, parsed.options);
    }
    case 'devices': {
      // Through the daemon when one is there (or --daemon is given); standalone otherwise.
      const client = await import('./client.js');
      if (client.devicesUseDaemon(rest)) return client.runDevicesViaDaemon(rest.filter((a) => a !== '--standalone'));
      const { runDevices } = await import('./devices.js');
      return runDevices(rest.filter((a) => a !== '--standalone'));
    }
    case 'daemon': {
      const { runDaemon } = await import('./daemon.js');
      return runDaemon(rest);
    }
    case 'controllers':
      return (await import('./client.js')).runControllers(rest);
    case 'attach':
      return (await import('./client.js')).runAttach(rest);
    case 'detach':
      return (await import('./client.js')).runDetach(rest);
    case 'attachments':
      return (await import('./client.js')).runAttachments(rest);
    case 'vm-config':
      return (await import('./client.js')).runVmConfig(rest);
    case 'bench': {
      const { runBenchCommand } = await import('../bench/cli.js');
      return runBenchCommand(rest);
    }
    case 'version':
    case '--version':
      process.stdout.write(`${packageVersion()}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command '${command}'\n${USAGE}`);
  }
}

/** Parses `vfiod serve` options; returns undefined when help was asked for. */
export function parseServeArgs(
  argv: string[],
): { config: ControllerConfig; options: { takeOver?: boolean; handoverSocket?: string } } | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: false,
      options: {
        socket: { type: 'string' },
        namespace: { type: 'string', multiple: true },
        poll: { type: 'boolean' },
        'socket-mode': { type: 'string' },
        'msix-vectors': { type: 'string' },
        'io-queues': { type: 'string' },
        'queue-entries': { type: 'string' },
        mdts: { type: 'string' },
        identity: { type: 'string' },
        serial: { type: 'string' },
        model: { type: 'string' },
        firmware: { type: 'string' },
        nqn: { type: 'string' },
        'log-level': { type: 'string' },
        'handover-socket': { type: 'string' },
        'take-over': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError(`serve: ${(error as Error).message}`);
  }
  const values = parsed.values;
  if (values.help) return undefined;
  if (!values.socket) throw new UsageError('serve: --socket <path> is required');
  if (values['log-level']) {
    if (!['debug', 'info', 'warn', 'error'].includes(values['log-level'])) {
      throw new UsageError(`serve: --log-level must be debug, info, warn or error, not '${values['log-level']}'`);
    }
    setLogLevel(values['log-level'] as LogLevel);
  }
  const identity: ControllerConfig['identity'] = {};
  if (values.serial !== undefined) identity.serialNumber = values.serial;
  if (values.model !== undefined) identity.modelNumber = values.model;
  if (values.firmware !== undefined) identity.firmwareRevision = values.firmware;
  if (values.nqn !== undefined) identity.subsystemNqn = values.nqn;

  const options = {
    ...(values['take-over'] ? { takeOver: true } : {}),
    ...(values['handover-socket'] !== undefined ? { handoverSocket: values['handover-socket'] } : {}),
  };
  const config = controllerConfig({
    socketPath: values.socket,
    ...(values.namespace?.length ? { namespaces: values.namespace } : {}),
    doorbellMode: values.poll ? 'polled' : 'interrupt',
    ...(values['socket-mode'] !== undefined ? { socketMode: parseMode(values['socket-mode']) } : {}),
    ...(values['msix-vectors'] !== undefined ? { msixVectors: parseInteger('--msix-vectors', values['msix-vectors'], ...CONTROLLER_LIMITS.msixVectors) } : {}),
    ...(values['io-queues'] !== undefined ? { maxIoQueuePairs: parseInteger('--io-queues', values['io-queues'], ...CONTROLLER_LIMITS.maxIoQueuePairs) } : {}),
    ...(values['queue-entries'] !== undefined ? { maxQueueEntries: parseInteger('--queue-entries', values['queue-entries'], ...CONTROLLER_LIMITS.maxQueueEntries) } : {}),
    ...(values.mdts !== undefined ? { mdtsPages: parseInteger('--mdts', values.mdts, ...CONTROLLER_LIMITS.mdtsPages) } : {}),
    ...(values.identity !== undefined ? { identityPath: values.identity } : {}),
    identity,
  });
  return { config, options };
}

function parseInteger(option: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new UsageError(`serve: ${option} must be an integer from ${min} to ${max}, not '${text}'`);
  }
  return value;
}

function parseMode(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text)) throw new UsageError(`serve: --socket-mode must be octal like 0600, not '${text}'`);
  return parseInt(text, 8);
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
