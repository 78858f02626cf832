/**
 * The `vfiod` command line. Subcommands:
 *   serve     serve emulated NVMe controllers on vfio-user sockets (docs/serve.md)
 *   upgrade   live upgrade of a running `vfiod serve` (docs/restart.md)
 *   devices   the passthrough manager: list/show/prepare/release/reconcile (docs/passthrough.md)
 *   daemon    the gRPC control API; controllers/attach/detach/attachments/operations/events/vm-config are its clients
 *             (docs/daemon.md)
 *   config    the configuration file: `vfiod config check` (docs/config.md)
 *   bench     fio benchmark harness: emulation vs passthrough vs file (docs/benchmarks.md)
 */
import { readFileSync } from 'node:fs';
import { rootLogger } from '../util/log.js';
import { UsageError } from './common.js';
import { parseServeArgs, SERVE_USAGE } from './serve.js';
import { applyConfigFile, ConfigFileError, locateOptionError } from '../config/file.js';

const USAGE = `Usage: vfiod <command> [options]

Commands:
  serve     Serve an emulated NVMe controller on a vfio-user socket
  upgrade   Replace a running 'vfiod serve' by this vfiod without disconnecting its clients
  devices   Find, check, prepare and release PCI devices for VFIO passthrough
  bench     Run the fio benchmark matrix against emulated, passthrough and file targets
  daemon    Run the gRPC control API (devices, emulated controllers, attachments)
  controllers  Create, list, inspect and delete the daemon's emulated NVMe controllers
  attach    Hot-plug a device or emulated controller into a running VM (through the daemon)
  detach    Hot-unplug it and give it back to the host
  attachments  List what the daemon attached to VMs
  operations   List, show and wait for the daemon's attach and detach operations
  events    Replay and follow the daemon's events (devices, controllers, attachments, operations)
  config    Check the configuration file (/etc/vfiod/vfiod.yaml) and print the effective configuration
  vm-config Print the static device configuration for creating a VM (cloud-hypervisor / QEMU)
  version   Print the version

Run 'vfiod <command> --help' for a command's options.
`;

export async function main(argv: string[]): Promise<void> {
  try {
    process.exitCode = await run(argv);
  } catch (error) {
    if (error instanceof ConfigFileError) {
      process.stderr.write(`${error.message}\n`);
      process.exitCode = 2;
      return;
    }
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
      const configured = applyConfigFile('serve', rest);
      let parsed;
      try {
        parsed = parseServeArgs(configured.argv);
      } catch (error) {
        if (error instanceof UsageError) throw new UsageError(locateOptionError('serve', configured, error.message));
        throw error;
      }
      if (!parsed) {
        process.stdout.write(SERVE_USAGE);
        return 0;
      }
      if (parsed.crashRecovery) {
        const { runHolder, defaultHolderSocket } = await import('../serve/holder.js');
        return runHolder({
          holderSocket: parsed.crashRecovery.holderSocket ?? defaultHolderSocket(parsed.config.socketPath),
          dataPlaneArgv: parsed.crashRecovery.dataPlaneArgv,
        });
      }
      if (parsed.options.dataPlane) (await import('../serve/data-plane.js')).stopWithHolder();
      const { serve } = await import('../serve/supervisor.js');
      return serve([parsed.config], undefined, parsed.options);
    }
    case 'upgrade':
      return (await import('./upgrade.js')).runUpgrade(rest);
    case 'devices': {
      // Through the daemon only with --daemon; standalone otherwise (--standalone, once needed, is still accepted).
      const devices = await import('./devices.js');
      const argv = rest.filter((a) => a !== '--standalone');
      return devices.devicesUseDaemon(rest) ? devices.runDevicesViaDaemon(argv) : devices.runDevices(argv);
    }
    case 'daemon': {
      const { runDaemon } = await import('./daemon.js');
      return runDaemon(rest);
    }
    case 'controllers':
      return (await import('./controllers.js')).runControllers(rest);
    case 'attach':
      return (await import('./attach.js')).runAttach(rest);
    case 'detach':
      return (await import('./detach.js')).runDetach(rest);
    case 'attachments':
      return (await import('./attachments.js')).runAttachments(rest);
    case 'operations':
      return (await import('./operations.js')).runOperations(rest);
    case 'events':
      return (await import('./events.js')).runEvents(rest);
    case 'config':
      return (await import('./config.js')).runConfig(rest);
    case 'vm-config':
      return (await import('./vm-config.js')).runVmConfig(rest);
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

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
