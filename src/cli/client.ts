/**
 * `vfiod` commands that talk to a running daemon over the control API: controllers, attach, detach, attachments,
 * vm-config, and devices (when a daemon is there). Human tables by default, the API's messages with --json.
 *
 * Exit codes: 0 ok, 1 failed, 2 usage / INVALID_ARGUMENT, 3 NOT_FOUND, 4 busy (ALREADY_EXISTS, UNAVAILABLE,
 * DEADLINE_EXCEEDED), 5 needs attention, 6 no daemon reachable.
 */
import { existsSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { ApiError, type ClientTarget, VfiodClient } from '../daemon/client.js';
import { unpackAny } from '../daemon/proto.js';
import { DEFAULT_DAEMON_SOCKET } from '../daemon/server.js';
import type { DeviceKind, PciDevice, VfioState } from '../devices/discovery.js';
import { normalizeBdf } from '../util/pci-address.js';
import { DEVICE_KINDS } from '../devices/selectors.js';
import { CONTROLLER_LIMITS } from '../serve/config.js';
import { errorMessage } from '../util/errors.js';
import { EXIT, renderList, renderShow, table } from './devices.js';

/** The exit codes of the local `vfiod devices`, and one more: no daemon to talk to. */
export const CLIENT_EXIT = { ...EXIT, noDaemon: 6 } as const;

export interface ClientDeps {
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
}

const CONNECTION_HELP = `Connection options (every command):
  --daemon <socket|host:port>  the daemon (default $VFIOD_DAEMON or ${DEFAULT_DAEMON_SOCKET})
  --tls-ca <file>              TCP with TLS: CA of the daemon's certificate
  --tls-cert <file> --tls-key <file>   client certificate for mutual TLS
  --json                       print the API's response as JSON
`;

export const CONTROLLERS_USAGE = `Usage: vfiod controllers <command> [options]

Emulated NVMe controllers run by the daemon (each on its own vfio-user socket, in its own thread).

Commands:
  list                                  controllers, state, client, I/O rates
  get <id>                              one controller: spec, identity, namespaces, stats, latency histogram
  create <id> --socket <path> --namespace <uri>... [--poll] [--serial <s>] [--model <m>] [--firmware <f>]
         [--nqn <nqn>] [--msix-vectors <n>] [--io-queues <n>] [--queue-entries <n>] [--mdts <n>] [--identity <path>]
  delete <id>                           stop it (flushes its namespaces) and forget it

${CONNECTION_HELP}`;

export const ATTACH_USAGE = `Usage: vfiod attach --vm <id> (--ch-socket <path> | --qmp-socket <path>)
                    (--bdf <bdf> | --vfio-user <socket> | --controller <id>) [options]

Hot-plugs a host PCI function (prepared for VFIO on the way) or an emulated controller into a running VM.

Options:
  --device-id <id>     the VMM's id for the device (default derived from the source)
  --boot-index <n>     QEMU bootindex
  --iommu              cloud-hypervisor: behind the virtual IOMMU
  --pci-segment <n>    cloud-hypervisor PCI segment
  --ch-event-monitor <file>  cloud-hypervisor: the VM's --event-monitor file (unplug completes on its event)
  --force              prepare although the device is in use on the host
  --timeout <s>        per VMM call (default 10)

${CONNECTION_HELP}`;

export const DETACH_USAGE = `Usage: vfiod detach --vm <id> (--device-id <id> | --bdf <bdf>) [--timeout <s>] [--keep-claimed]

Hot-unplugs a device, waits for the guest to let go (default 30 s), then gives it back to its host driver.
On timeout the device stays claimed (exit 4); run the command again to wait again.

${CONNECTION_HELP}`;

export const ATTACHMENTS_USAGE = `Usage: vfiod attachments [--vm <id>]

Devices attached to VMs through the daemon.

${CONNECTION_HELP}`;

export const VM_CONFIG_USAGE = `Usage: vfiod vm-config --hypervisor cloud-hypervisor|qemu [--vm <id>] <device>... [options]

Prints the static device configuration for creating a VM: cloud-hypervisor VmConfig devices / user_devices (JSON)
and command-line options, or QEMU arguments (one pcie-root-port per device, bootindex).

Devices (in order; append @<n> for a boot index, e.g. --bdf 01:00.1@1):
  --bdf <bdf>            host PCI function through VFIO
  --vfio-user <socket>   an emulated controller's socket
  --controller <id>      an emulated controller of the daemon
Options:
  --memory <size>        QEMU guest RAM (emits the shared memory backend vfio-user needs)
  --prepare              also prepare the PCI devices for --vm (all or nothing)

${CONNECTION_HELP}`;

class ClientUsage extends Error {}

const connectionOptions = {
  daemon: { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

function targetFrom(values: Record<string, unknown>): ClientTarget {
  const address = (values['daemon'] as string | undefined) ?? process.env['VFIOD_DAEMON'] ?? DEFAULT_DAEMON_SOCKET;
  const ca = values['tls-ca'] as string | undefined;
  const cert = values['tls-cert'] as string | undefined;
  const key = values['tls-key'] as string | undefined;
  if ((cert || key) && !ca) throw new ClientUsage('--tls-cert/--tls-key need --tls-ca');
  if (Boolean(cert) !== Boolean(key)) throw new ClientUsage('mutual TLS needs both --tls-cert and --tls-key');
  return { address, ...(ca ? { tls: { ca, ...(cert ? { cert } : {}), ...(key ? { key } : {}) } } : {}) };
}

/** Whether `vfiod devices` should go through a daemon: --daemon given, or the default socket exists and no local roots. */
export function devicesUseDaemon(argv: string[]): boolean {
  if (argv.includes('--standalone')) return false;
  if (argv.some((a) => a === '--daemon' || a.startsWith('--daemon='))) return true;
  const local = ['--state', '--sysfs-root', '--dev-root', '--proc-root'];
  if (argv.some((a) => local.includes(a) || local.some((o) => a.startsWith(`${o}=`)))) return false;
  return existsSync(process.env['VFIOD_DAEMON'] ?? DEFAULT_DAEMON_SOCKET);
}

function exitForStatus(code: grpc.status): number {
  switch (code) {
    case grpc.status.NOT_FOUND:
      return CLIENT_EXIT.notFound;
    case grpc.status.INVALID_ARGUMENT:
      return CLIENT_EXIT.usage;
    case grpc.status.ALREADY_EXISTS:
    case grpc.status.UNAVAILABLE:
    case grpc.status.DEADLINE_EXCEEDED:
      return CLIENT_EXIT.busy;
    default:
      return CLIENT_EXIT.failed;
  }
}

interface Context {
  out: (text: string) => void;
  err: (text: string) => void;
  json: boolean;
  client: VfiodClient;
}

/** Parses, connects, runs `body`, and turns every failure into a message and an exit code. */
async function withClient(
  command: string,
  usage: string,
  argv: string[],
  options: NonNullable<ParseArgsConfig['options']>,
  deps: ClientDeps,
  body: (ctx: Context, values: Record<string, any>, positionals: string[], tokens: NonNullable<ReturnType<typeof parseArgs>['tokens']>) => Promise<number>,
): Promise<number> {
  const out = deps.stdout ?? ((t: string) => void process.stdout.write(t));
  const err = deps.stderr ?? ((t: string) => void process.stderr.write(t));
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, tokens: true, options: { ...connectionOptions, ...options } });
  } catch (error) {
    err(`vfiod ${command}: ${errorMessage(error)}\n${usage}`);
    return CLIENT_EXIT.usage;
  }
  const values = parsed.values as Record<string, any>;
  if (values['help']) {
    out(usage);
    return CLIENT_EXIT.ok;
  }
  let client: VfiodClient | undefined;
  try {
    const target = targetFrom(values);
    if (target.address.startsWith('/') && !existsSync(target.address)) {
      err(`vfiod ${command}: no daemon at ${target.address} (start it with 'vfiod daemon', or give --daemon <socket>)\n`);
      return CLIENT_EXIT.noDaemon;
    }
    client = new VfiodClient(target);
    return await body({ out, err, json: Boolean(values['json']), client }, values, parsed.positionals, parsed.tokens ?? []);
  } catch (error) {
    if (error instanceof ClientUsage) {
      err(`vfiod ${command}: ${error.message}\n${usage}`);
      return CLIENT_EXIT.usage;
    }
    if (error instanceof ApiError) {
      if (values['json']) out(`${JSON.stringify({ error: { code: error.statusName, message: error.details } }, null, 2)}\n`);
      err(`vfiod ${command}: ${error.statusName}: ${error.details}\n`);
      return exitForStatus(error.code);
    }
    err(`vfiod ${command}: ${errorMessage(error)}\n`);
    return CLIENT_EXIT.failed;
  } finally {
    client?.close();
  }
}

const printJson = (ctx: Context, value: unknown): void => ctx.out(`${JSON.stringify(value, null, 2)}\n`);
const shortEnum = (value: unknown, prefix: string): string => String(value ?? '').replace(prefix, '').toLowerCase().replace(/_/g, '-');

function integer(option: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) throw new ClientUsage(`${option} must be an integer from ${min} to ${max}, not '${text}'`);
  return value;
}

function milliseconds(option: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+(\.\d+)?$/.test(text)) throw new ClientUsage(`${option} must be a number of seconds, not '${text}'`);
  return Math.round(Number(text) * 1000);
}

function bdfOption(option: string, text: string): string {
  const bdf = normalizeBdf(text);
  if (!bdf) throw new ClientUsage(`${option}: '${text}' is not a PCI address (expected 0000:01:00.1 or 01:00.1)`);
  return bdf;
}

const rate = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0));
const bytes = (n: number): string => {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) if (n >= size) return `${(n / size).toFixed(1)}${unit}`;
  return `${n}B`;
};

// ---- controllers ----

function renderControllerList(controllers: Array<Record<string, any>>): string {
  if (controllers.length === 0) return 'no controllers\n';
  const rows = [['ID', 'STATE', 'SOCKET', 'NAMESPACES', 'DOORBELLS', 'CLIENT', 'READ IOPS', 'WRITE IOPS', 'READ', 'WRITTEN']];
  for (const c of controllers) {
    const s = c['stats'];
    rows.push([
      c['id'],
      shortEnum(c['state'], 'CONTROLLER_STATE_') + (c['error'] ? ` (${c['error']})` : ''),
      c['spec']['socketPath'],
      c['spec']['namespaces'].join(','),
      shortEnum(c['spec']['doorbellMode'], 'DOORBELL_MODE_'),
      s ? (s['clientConnected'] ? 'yes' : 'no') : '-',
      s ? rate(s['readIops']) : '-',
      s ? rate(s['writeIops']) : '-',
      s ? bytes(s['bytesRead']) : '-',
      s ? bytes(s['bytesWritten']) : '-',
    ]);
  }
  return table(rows);
}

function renderController(c: Record<string, any>): string {
  const spec = c['spec'];
  const lines = [
    `controller ${c['id']}: ${shortEnum(c['state'], 'CONTROLLER_STATE_')}${c['error'] ? ` (${c['error']})` : ''}, created ${c['createdAt']}`,
    `socket:      ${spec['socketPath']} (mode 0${Number(spec['socketMode']).toString(8)})`,
    `doorbells:   ${shortEnum(spec['doorbellMode'], 'DOORBELL_MODE_')}; ${spec['msixVectors']} MSI-X vectors, ${spec['maxIoQueuePairs']} I/O queue pairs x ${spec['maxQueueEntries']} entries, MDTS ${spec['mdtsPages']}`,
  ];
  const id = c['identity'];
  if (id) lines.push(`identity:    serial ${id['serialNumber']}, model ${id['modelNumber']}, firmware ${id['firmwareRevision']}, ${id['subsystemNqn']}`);
  if (spec['identityPath']) lines.push(`persisted:   ${spec['identityPath']}`);
  const namespaces: Array<Record<string, any>> = c['namespaces'] ?? [];
  if (namespaces.length) {
    lines.push('namespaces:');
    for (const n of namespaces) lines.push(`  ${n['nsid']}: ${n['uri']} (${n['backend']}), ${n['blocks']} x ${n['blockSize']} B = ${bytes(n['blocks'] * n['blockSize'])}`);
  } else lines.push(`namespaces:  ${spec['namespaces'].join(', ')}`);
  const s = c['stats'];
  if (s) {
    lines.push(
      `nvme:        ${s['nvmeState']}, client ${s['clientConnected'] ? 'connected' : 'not connected'}, ${s['ioQueues']} I/O queues, ${s['inFlight']} in flight, ${s['resets']} resets`,
      `commands:    ${s['readCommands']} reads, ${s['writeCommands']} writes, ${s['otherIoCommands']} other I/O, ${s['adminCommands']} admin, ${s['failedCommands']} failed`,
      `data:        ${bytes(s['bytesRead'])} read, ${bytes(s['bytesWritten'])} written`,
      `rates:       ${rate(s['readIops'])} read IOPS, ${rate(s['writeIops'])} write IOPS, ${bytes(s['readBytesPerSecond'])}/s read, ${bytes(s['writeBytesPerSecond'])}/s written (over ${s['sampleIntervalMs']} ms)`,
    );
    const l = s['latency'];
    if (l && l['count'] > 0) {
      lines.push(`latency:     ${l['count']} I/Os, mean ${l['meanUs'].toFixed(1)} us, p50 <= ${l['p50Us']} us, p99 <= ${l['p99Us']} us, max ${l['maxUs'].toFixed(1)} us`);
      const buckets: number[] = l['buckets'];
      const peak = Math.max(...buckets);
      buckets.forEach((n, i) => {
        if (n > 0) lines.push(`  ${`${2 ** i}-${2 ** (i + 1)} us`.padEnd(18)} ${String(n).padStart(10)} ${'#'.repeat(Math.max(1, Math.round((n / peak) * 40)))}`);
      });
    }
  }
  return lines.join('\n') + '\n';
}

export async function runControllers(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    (deps.stdout ?? ((t: string) => void process.stdout.write(t)))(CONTROLLERS_USAGE);
    return command === undefined ? CLIENT_EXIT.usage : CLIENT_EXIT.ok;
  }
  const options = {
    socket: { type: 'string' },
    namespace: { type: 'string', multiple: true },
    poll: { type: 'boolean' },
    serial: { type: 'string' },
    model: { type: 'string' },
    firmware: { type: 'string' },
    nqn: { type: 'string' },
    'msix-vectors': { type: 'string' },
    'io-queues': { type: 'string' },
    'queue-entries': { type: 'string' },
    mdts: { type: 'string' },
    identity: { type: 'string' },
    'socket-mode': { type: 'string' },
  } as const;
  return withClient(`controllers ${command}`, CONTROLLERS_USAGE, rest, options, deps, async (ctx, v, positionals) => {
    const idArg = (): string => {
      if (positionals.length !== 1) throw new ClientUsage(`${command} takes one controller id`);
      return positionals[0]!;
    };
    switch (command) {
      case 'list': {
        const response = await ctx.client.call('ControllerService', 'ListControllers', {});
        if (ctx.json) printJson(ctx, response);
        else ctx.out(renderControllerList(response['controllers']));
        return CLIENT_EXIT.ok;
      }
      case 'get': {
        const response = await ctx.client.call('ControllerService', 'GetController', { id: idArg() });
        if (ctx.json) printJson(ctx, response);
        else ctx.out(renderController(response['controller']));
        return CLIENT_EXIT.ok;
      }
      case 'create': {
        const id = idArg();
        if (!v['socket']) throw new ClientUsage('create needs --socket <path>');
        if (!v['namespace']?.length) throw new ClientUsage('create needs at least one --namespace <uri> (e.g. memory:1G)');
        let socketMode: number | undefined;
        if (v['socket-mode'] !== undefined) {
          if (!/^0?[0-7]{3}$/.test(v['socket-mode'])) throw new ClientUsage(`--socket-mode must be octal like 0600, not '${v['socket-mode']}'`);
          socketMode = parseInt(v['socket-mode'], 8);
        }
        const spec = {
          socketPath: v['socket'],
          namespaces: v['namespace'],
          doorbellMode: v['poll'] ? 'DOORBELL_MODE_POLLED' : 'DOORBELL_MODE_INTERRUPT',
          socketMode,
          msixVectors: integer('--msix-vectors', v['msix-vectors'], ...CONTROLLER_LIMITS.msixVectors),
          maxIoQueuePairs: integer('--io-queues', v['io-queues'], ...CONTROLLER_LIMITS.maxIoQueuePairs),
          maxQueueEntries: integer('--queue-entries', v['queue-entries'], ...CONTROLLER_LIMITS.maxQueueEntries),
          // The API cannot ask for MDTS 0 (no limit): proto3 reads 0 as "default".
          mdtsPages: integer('--mdts', v['mdts'], 1, CONTROLLER_LIMITS.mdtsPages[1]),
          identityPath: v['identity'],
          identity: { serialNumber: v['serial'], modelNumber: v['model'], firmwareRevision: v['firmware'], subsystemNqn: v['nqn'] },
        };
        const response = await ctx.client.call('ControllerService', 'CreateController', { id, spec });
        if (ctx.json) printJson(ctx, response);
        else ctx.out(`created controller ${id} on ${response['controller']['spec']['socketPath']}\n${renderController(response['controller'])}`);
        return CLIENT_EXIT.ok;
      }
      case 'delete': {
        const id = idArg();
        await ctx.client.call('ControllerService', 'DeleteController', { id });
        if (ctx.json) printJson(ctx, { deleted: id });
        else ctx.out(`deleted controller ${id}\n`);
        return CLIENT_EXIT.ok;
      }
      default:
        throw new ClientUsage(`unknown controllers command '${command}'`);
    }
  });
}

// ---- attachments ----

function endpointOf(v: Record<string, any>): Record<string, string> {
  if (v['ch-socket'] && v['qmp-socket']) throw new ClientUsage('give --ch-socket or --qmp-socket, not both');
  if (v['ch-event-monitor'] && !v['ch-socket']) throw new ClientUsage('--ch-event-monitor goes with --ch-socket');
  if (v['ch-socket']) return { cloudHypervisorApiSocket: v['ch-socket'], ...(v['ch-event-monitor'] ? { cloudHypervisorEventMonitor: v['ch-event-monitor'] } : {}) };
  if (v['qmp-socket']) return { qemuQmpSocket: v['qmp-socket'] };
  throw new ClientUsage('the VM\'s hypervisor endpoint is required: --ch-socket <api socket> or --qmp-socket <qmp socket>');
}

function renderAttachments(attachments: Array<Record<string, any>>): string {
  if (attachments.length === 0) return 'no attachments\n';
  const rows = [['VM', 'DEVICE ID', 'SOURCE', 'HYPERVISOR', 'STATE', 'GUEST', 'BOOT', 'NOTE']];
  for (const a of attachments) {
    const source = a['source']['pciBdf'] || a['source']['vfioUserSocket'] || a['source']['controllerId'] || '?';
    rows.push([
      a['vmId'],
      a['deviceId'],
      source,
      shortEnum(a['hypervisor'], 'HYPERVISOR_KIND_'),
      shortEnum(a['state'], 'ATTACHMENT_STATE_'),
      a['functions'].map((f: Record<string, string>) => f['guestBdf'] || '-').join(','),
      a['bootIndex'] === undefined ? '-' : String(a['bootIndex']),
      a['note'] ?? '',
    ]);
  }
  return table(rows);
}

export async function runAttach(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const options = {
    vm: { type: 'string' },
    'ch-socket': { type: 'string' },
    'ch-event-monitor': { type: 'string' },
    'qmp-socket': { type: 'string' },
    bdf: { type: 'string' },
    'vfio-user': { type: 'string' },
    controller: { type: 'string' },
    'device-id': { type: 'string' },
    'boot-index': { type: 'string' },
    iommu: { type: 'boolean' },
    'pci-segment': { type: 'string' },
    force: { type: 'boolean' },
    timeout: { type: 'string' },
  } as const;
  return withClient('attach', ATTACH_USAGE, argv, options, deps, async (ctx, v, positionals) => {
    if (positionals.length) throw new ClientUsage(`unexpected argument '${positionals[0]}'`);
    if (!v['vm']) throw new ClientUsage('--vm <id> is required');
    const sources = [v['bdf'] ? { pciBdf: bdfOption('--bdf', v['bdf']) } : undefined, v['vfio-user'] ? { vfioUserSocket: v['vfio-user'] } : undefined, v['controller'] ? { controllerId: v['controller'] } : undefined].filter(Boolean);
    if (sources.length !== 1) throw new ClientUsage('give exactly one of --bdf, --vfio-user, --controller');
    if (!ctx.json) ctx.err(`attaching to VM ${v['vm']}: preparing and hot-plugging, then waiting for the VMM to report the device...\n`);
    const response = await ctx.client.call('AttachmentService', 'AttachDevice', {
      vmId: v['vm'],
      endpoint: endpointOf(v),
      source: sources[0],
      deviceId: v['device-id'] ?? '',
      bootIndex: integer('--boot-index', v['boot-index'], 0, 65535),
      iommu: Boolean(v['iommu']),
      pciSegment: integer('--pci-segment', v['pci-segment'], 0, 65535) ?? 0,
      force: Boolean(v['force']),
      timeoutMs: milliseconds('--timeout', v['timeout']) ?? 0,
    });
    if (ctx.json) printJson(ctx, response);
    else {
      const a = response['attachment'];
      ctx.out(`${response['changed'] ? 'attached' : 'already attached'} ${a['deviceId']} to VM ${a['vmId']}\n`);
      for (const f of a['functions']) ctx.out(`  ${f['hostBdf'] || 'vfio-user'} -> ${f['vmmDeviceId']}${f['guestBdf'] ? ` at guest ${f['guestBdf']}` : ''}${f['bus'] ? ` on ${f['bus']}` : ''}\n`);
      for (const w of response['warnings']) ctx.out(`  warning: ${w}\n`);
    }
    return CLIENT_EXIT.ok;
  });
}

export async function runDetach(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const options = { vm: { type: 'string' }, 'device-id': { type: 'string' }, bdf: { type: 'string' }, timeout: { type: 'string' }, 'keep-claimed': { type: 'boolean' } } as const;
  return withClient('detach', DETACH_USAGE, argv, options, deps, async (ctx, v, positionals) => {
    if (positionals.length) throw new ClientUsage(`unexpected argument '${positionals[0]}'`);
    if (!v['vm']) throw new ClientUsage('--vm <id> is required');
    if (!v['device-id'] && !v['bdf']) throw new ClientUsage('give --device-id <id> or --bdf <bdf>');
    const waitSeconds = (milliseconds('--timeout', v['timeout']) ?? 30_000) / 1000;
    if (!ctx.json) ctx.err(`detaching ${v['device-id'] ?? v['bdf']} from VM ${v['vm']}: waiting up to ${waitSeconds} s for the guest to release it...\n`);
    const response = await ctx.client.call(
      'AttachmentService',
      'DetachDevice',
      {
        vmId: v['vm'],
        deviceId: v['device-id'] ?? '',
        bdf: v['bdf'] ? bdfOption('--bdf', v['bdf']) : '',
        timeoutMs: milliseconds('--timeout', v['timeout']) ?? 0,
        keepClaimed: Boolean(v['keep-claimed']),
      },
      (milliseconds('--timeout', v['timeout']) ?? 30_000) + 60_000,
    );
    if (ctx.json) printJson(ctx, response);
    else ctx.out(`detached ${response['deviceId']} from VM ${response['vmId']}${response['released'].length ? `; released ${response['released'].join(', ')} to the host` : ''}\n`);
    return CLIENT_EXIT.ok;
  });
}

export async function runAttachments(argv: string[], deps: ClientDeps = {}): Promise<number> {
  return withClient('attachments', ATTACHMENTS_USAGE, argv, { vm: { type: 'string' } } as const, deps, async (ctx, v, positionals) => {
    if (positionals.length) throw new ClientUsage(`unexpected argument '${positionals[0]}'`);
    const response = await ctx.client.call('AttachmentService', 'ListAttachments', { vmId: v['vm'] ?? '' });
    if (ctx.json) printJson(ctx, response);
    else ctx.out(renderAttachments(response['attachments']));
    return CLIENT_EXIT.ok;
  });
}

export async function runVmConfig(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const options = {
    hypervisor: { type: 'string' },
    vm: { type: 'string' },
    bdf: { type: 'string', multiple: true },
    'vfio-user': { type: 'string', multiple: true },
    controller: { type: 'string', multiple: true },
    memory: { type: 'string' },
    prepare: { type: 'boolean' },
  } as const;
  return withClient('vm-config', VM_CONFIG_USAGE, argv, options, deps, async (ctx, v, positionals, tokens) => {
    if (positionals.length) throw new ClientUsage(`unexpected argument '${positionals[0]}'`);
    const hypervisor = v['hypervisor'] === 'cloud-hypervisor' || v['hypervisor'] === 'ch' ? 'HYPERVISOR_KIND_CLOUD_HYPERVISOR' : v['hypervisor'] === 'qemu' ? 'HYPERVISOR_KIND_QEMU' : undefined;
    if (!hypervisor) throw new ClientUsage(`--hypervisor must be cloud-hypervisor or qemu${v['hypervisor'] ? `, not '${v['hypervisor']}'` : ''}`);
    // Devices in command-line order (boot order and PCI slots follow it).
    const devices: Array<Record<string, unknown>> = [];
    for (const token of tokens) {
      if (token.kind !== 'option' || !['bdf', 'vfio-user', 'controller'].includes(token.name) || token.value === undefined) continue;
      const at = token.value.lastIndexOf('@');
      const value = at > 0 ? token.value.slice(0, at) : token.value;
      const bootIndex = at > 0 ? integer(`--${token.name} ...@<boot index>`, token.value.slice(at + 1), 0, 65535) : undefined;
      const source = token.name === 'bdf' ? { pciBdf: bdfOption('--bdf', value) } : token.name === 'vfio-user' ? { vfioUserSocket: value } : { controllerId: value };
      devices.push({ source, ...(bootIndex !== undefined ? { bootIndex } : {}) });
    }
    if (v['prepare'] && !v['vm']) throw new ClientUsage('--prepare needs --vm <id> (the owner of the prepared devices)');
    const response = await ctx.client.call('AttachmentService', 'GetVmConfig', {
      hypervisor,
      devices,
      vmId: v['vm'] ?? '',
      memorySize: v['memory'] ?? '',
      prepareDevices: Boolean(v['prepare']),
    });
    if (ctx.json) printJson(ctx, response);
    else {
      const ch = response['cloudHypervisor'];
      const qemu = response['qemu'];
      if (ch) {
        ctx.out(`# cloud-hypervisor VmConfig\n"devices": ${ch['devicesJson']}\n"user_devices": ${ch['userDevicesJson']}\n# command line\n${ch['args'].join(' ')}\n`);
        if (ch['sharedMemoryRequired']) ctx.out('# vfio-user devices need guest memory shared with vfiod: --memory ...,shared=on\n');
      }
      if (qemu) ctx.out(`${qemu['args'].join(' \\\n  ')}\n`);
      for (const p of response['prepared'] ?? []) ctx.out(`# prepared ${p['bdf']}${p['changed'] ? '' : ' (already)'}: ${p['vfioCdev'] || p['vfioGroupDev']}\n`);
      for (const w of response['warnings']) ctx.out(`# warning: ${w}\n`);
    }
    return CLIENT_EXIT.ok;
  });
}

// ---- devices through the daemon ----

export const DEVICES_DAEMON_USAGE = `Usage: vfiod devices <command> [options]   (through the daemon)

Commands:
  list [<bdf>...] [--id <vendor:device>] [--class <kind>] [--pf <bdf>] [--free]
  show <bdf>
  prepare <bdf> --owner <vm> [--force] [--whole-group]
  release <bdf> --owner <vm> [--wait <s>]
  events [<bdf>...]            follow device events until interrupted

--standalone (or --state/--sysfs-root/...) runs without the daemon.

${CONNECTION_HELP}`;

/**
 * The API's DeviceInfo as the passthrough manager's PciDevice, so `vfiod devices` prints the same table and report
 * through the daemon as standalone (src/cli/devices.ts renders both).
 */
function pciDeviceFrom(d: Record<string, any>): PciDevice {
  const sriov = d['sriov'];
  return {
    bdf: d['bdf'],
    vendor: d['vendorId'],
    device: d['deviceId'],
    subsystemVendor: d['subsystemVendorId'] || null,
    subsystemDevice: d['subsystemDeviceId'] || null,
    classCode: d['classCode'],
    kind: shortEnum(d['kind'], 'DEVICE_KIND_') as DeviceKind,
    driver: d['driver'] ?? null,
    driverOverride: d['driverOverride'] ?? null,
    iommuGroup: d['iommuGroup'] ?? null,
    groupMembers: d['iommuGroupMembers'] ?? [],
    numaNode: d['numaNode'] ?? null,
    physfn: d['physfn'] ?? null,
    virtfns: d['virtfns'] ?? [],
    sriov: sriov ? { totalVfs: sriov['totalVfs'], numVfs: sriov['numVfs'], driversAutoprobe: sriov['driversAutoprobe'] ?? null } : null,
    resetMethods: d['resetMethods'] ?? null,
    bars: d['bars'] ?? [],
    vfioGroupDev: d['vfioGroupDev'] || null,
    vfioCdev: d['vfioCdev'] || null,
    hostUse: d['hostUses'] ?? [],
    vfio: { state: shortEnum(d['vfioState'], 'VFIO_STATE_') as VfioState, usable: d['vfioUsable'], groupViable: d['iommuGroupViable'], reasons: d['vfioReasons'] ?? [] },
  };
}

/** The API's ClaimInfo in the shape src/cli/devices.ts prints. */
function claimFrom(c: Record<string, any> | null | undefined): Record<string, unknown> | undefined {
  if (!c) return undefined;
  return {
    owner: c['owner'],
    state: shortEnum(c['state'], 'CLAIM_STATE_'),
    originalDriver: c['originalDriver'] ?? null,
    originalOverride: c['originalOverride'] ?? null,
    createdAt: c['createdAt'],
    updatedAt: c['updatedAt'],
    note: c['note'] || null,
  };
}

export async function runDevicesViaDaemon(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    (deps.stdout ?? ((t: string) => void process.stdout.write(t)))(DEVICES_DAEMON_USAGE);
    return command === undefined ? CLIENT_EXIT.usage : CLIENT_EXIT.ok;
  }
  const options = {
    id: { type: 'string', multiple: true },
    class: { type: 'string', multiple: true },
    pf: { type: 'string', multiple: true },
    free: { type: 'boolean' },
    owner: { type: 'string' },
    force: { type: 'boolean' },
    'whole-group': { type: 'boolean' },
    wait: { type: 'string' },
  } as const;
  return withClient(`devices ${command}`, DEVICES_DAEMON_USAGE, rest, options, deps, async (ctx, v, positionals) => {
    const bdfArg = (): string => {
      if (positionals.length !== 1) throw new ClientUsage(`${command} takes one device address (BDF)`);
      return bdfOption(command, positionals[0]!);
    };
    switch (command) {
      case 'list': {
        const kinds = (v['class'] ?? []).map((c: string) => {
          if (!DEVICE_KINDS.includes(c as never)) throw new ClientUsage(`--class must be one of ${DEVICE_KINDS.join(', ')}, not '${c}'`);
          return `DEVICE_KIND_${c.toUpperCase()}`;
        });
        const response = await ctx.client.call('DeviceService', 'ListDevices', {
          bdfs: positionals.map((p) => bdfOption('list', p)),
          ids: v['id'] ?? [],
          kinds,
          pfs: (v['pf'] ?? []).map((p: string) => bdfOption('--pf', p)),
          freeOnly: Boolean(v['free']),
        });
        const devices: Array<Record<string, any>> = response['devices'];
        const owners = new Map<string, string>(devices.filter((d) => d['claim']).map((d) => [d['bdf'], d['claim']['owner']]));
        if (ctx.json) printJson(ctx, response);
        else ctx.out(devices.length ? renderList(devices.map(pciDeviceFrom), owners) : 'no matching devices\n');
        return CLIENT_EXIT.ok;
      }
      case 'show': {
        const response = await ctx.client.call('DeviceService', 'GetDevice', { bdf: bdfArg() });
        if (ctx.json) printJson(ctx, response);
        else ctx.out(renderShow(pciDeviceFrom(response['device']), claimFrom(response['device']['claim'])));
        return CLIENT_EXIT.ok;
      }
      case 'prepare': {
        const bdf = bdfArg();
        if (!v['owner']) throw new ClientUsage('prepare needs --owner <vm>');
        const r = await ctx.client.call('DeviceService', 'PrepareDevice', { bdf, owner: v['owner'], force: Boolean(v['force']), wholeGroup: Boolean(v['whole-group']) });
        if (ctx.json) printJson(ctx, r);
        else {
          ctx.out(`${r['changed'] ? 'prepared' : 'already prepared'} ${bdf} for ${r['owner']}: ${r['vfioCdev'] || r['vfioGroupDev']}\n`);
          for (const d of r['devices']) ctx.out(`  ${d['bdf']}${d['companion'] ? ' (companion)' : ''}: ${d['mode'] === 'CLAIM_MODE_AS_IS' ? 'left on its VFIO driver' : `was ${d['originalDriver'] ?? 'unbound'}`}\n`);
          for (const o of r['overridden']) ctx.out(`  forced over: ${o}\n`);
          for (const w of r['warnings']) ctx.out(`  warning: ${w}\n`);
        }
        return CLIENT_EXIT.ok;
      }
      case 'release': {
        const bdf = bdfArg();
        if (!v['owner']) throw new ClientUsage('release needs --owner <vm>');
        const waitMs = milliseconds('--wait', v['wait']) ?? 0;
        const r = await ctx.client.call('DeviceService', 'ReleaseDevice', { bdf, owner: v['owner'], waitMs }, waitMs + 60_000);
        if (ctx.json) printJson(ctx, r);
        else {
          ctx.out(`released ${bdf} from ${r['owner']}\n`);
          for (const d of r['devices']) ctx.out(`  ${d['bdf']}: ${d['gone'] ? 'device is gone' : `restored to ${d['restoredDriver'] ?? 'no driver'}`}\n`);
          for (const pf of r['autoprobeRestored']) ctx.out(`  sriov_drivers_autoprobe restored on ${pf}\n`);
        }
        return CLIENT_EXIT.ok;
      }
      case 'events': {
        const stream = ctx.client.stream('DeviceService', 'StreamDeviceEvents', { bdfs: positionals.map((p) => bdfOption('events', p)) });
        const stop = (): void => stream.cancel();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        try {
          return await new Promise<number>((resolve, reject) => {
            stream.on('data', (event: Record<string, any>) => {
              const data = unpackAny(event['data']).value;
              if (ctx.json) ctx.out(`${JSON.stringify({ id: event['id'], componentId: event['componentId'], ...data })}\n`);
              else ctx.out(`${data['at']}  ${event['componentId']}  ${shortEnum(data['kind'], 'DEVICE_EVENT_KIND_')}${data['owner'] ? `  VM ${data['owner']}` : ''}  ${data['detail']}\n`);
            });
            stream.on('end', () => resolve(CLIENT_EXIT.ok));
            stream.on('error', (error: grpc.ServiceError) => {
              if (error.code === grpc.status.CANCELLED) resolve(CLIENT_EXIT.ok);
              else reject(new ApiError(error.code, error.details, 'StreamDeviceEvents'));
            });
          });
        } finally {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        }
      }
      default:
        throw new ClientUsage(`unknown devices command '${command}'`);
    }
  });
}
