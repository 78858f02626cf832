/**
 * `vfiod devices`: list, show, prepare, release and reconcile host PCI devices for VFIO passthrough; NVIDIA vGPU
 * profiles of VFs (vgpu) and SR-IOV VF creation (sriov). Standalone
 * (`runDevices`), claims live in the state database (--state, default /var/lib/vfiod/claims.db); through a running
 * daemon (`runDevicesViaDaemon`, DeviceService) when one is there. Both print the same tables. docs/passthrough.md.
 *
 * Exit codes: 0 ok, 1 operation failed (refused or rolled back), 2 usage error, 3 device not found,
 * 4 busy (held by a VMM, or claimed by another VM), 5 reconcile found something needing attention, 6 no daemon
 * reachable (through the daemon).
 *
 * Size: the command's two modes, standalone and through the daemon, share their option table and output; one
 * file per command keeps them together.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { ApiError, present } from '../daemon/client.js';
import { DEVICE_KIND_NAMES } from '../daemon/device-kind-names.js';
import type { ClaimInfo__Output as ClaimInfo } from '../daemon/generated/vfiod/v1/ClaimInfo.js';
import type { DeviceEvent__Output as DeviceEvent } from '../daemon/generated/vfiod/v1/DeviceEvent.js';
import type { DeviceInfo__Output as DeviceInfo } from '../daemon/generated/vfiod/v1/DeviceInfo.js';
import type { DeviceStateChanged__Output as DeviceStateChanged } from '../daemon/generated/vfiod/v1/DeviceStateChanged.js';
import { unpackAny } from '../daemon/proto.js';
import { errorMetadata } from '../daemon/status-details.js';
import { DEFAULT_DAEMON_SOCKET } from '../daemon/server.js';
import { ClaimStore, DEFAULT_CLAIMS_DB } from '../devices/claims.js';
import { type Bar, type DeviceKind, type HostUse, listDevices, type PciDevice, readDevice, type VfioState } from '../devices/discovery.js';
import { DEFAULT_ROOTS, type HostRoots, realSysfsWriter, type SysfsWriter } from '../devices/host.js';
import { normalizeBdf } from '../util/pci-address.js';
import { DeviceError, DeviceManager } from '../devices/manager.js';
import type { VfioProber } from '../devices/probe.js';
import { DEVICE_KINDS, type DeviceSelector, parseId, selectDevices } from '../devices/selectors.js';
import {
  bdfOption,
  CLIENT_EXIT,
  type ClientDeps,
  EXIT,
  formatError,
  milliseconds,
  shortEnum,
  subcommandHelp,
  table,
  UsageError,
} from './common.js';
import { CONNECTION_HELP, printJson, withClient } from './remote.js';

export const DEVICES_USAGE = `Usage: vfiod devices <command> [options]

Commands:
  list [<bdf>...] [--id <vendor:device>] [--class <kind>] [--pf <bdf>] [--numa <node>] [--free] [--json]
                        PCI devices, how they are bound and whether VFIO can use them
  show <bdf> [--json]   everything known about one device, and its claim
  prepare <bdf> --owner <vm> [--force] [--whole-group] [--timeout <s>] [--json]
                        bind to vfio-pci and prove it usable (rolls back on any failure)
  release <bdf> --owner <vm> [--wait <s>] [--json]
                        restore the original driver and driver_override
  reconcile [--json]    repair what interrupted operations left, report the rest
  vgpu <vf> [--set <type id> | --clear] [--owner <vm>] [--json]
                        an NVIDIA vGPU VF's profile and those it can take; --set/--clear change it (claims the
                        VF for --owner, rolls back on failure, refused while the VF is attached)
  sriov <pf> --vfs <n> --owner <vm> [--timeout <s>] [--json]
                        create n VFs with sriov_drivers_autoprobe off and prepare each for <vm> (all or nothing);
                        --vfs 0 removes the VFs (refused while one is claimed, attached or in use)

Runs standalone: reads sysfs and changes the claims database itself. With --daemon <socket | host:port> it goes
through the daemon instead (\`vfiod devices help --daemon <socket>\`); only --daemon switches.

Common options:
  --state <path>        claims database (default ${DEFAULT_CLAIMS_DB})
  --sysfs-root <dir>    default /sys      --dev-root <dir>  default /dev      --proc-root <dir>  default /proc
  -h, --help

Classes: ${DEVICE_KINDS.join(', ')}. Exit codes: 0 ok, 1 failed/refused, 2 usage, 3 not found, 4 busy, 5 needs attention.
`;

/** The options of `vfiod devices` standalone and through the daemon alike. */
const DEVICE_OPTIONS = {
  id: { type: 'string', multiple: true },
  class: { type: 'string', multiple: true },
  pf: { type: 'string', multiple: true },
  free: { type: 'boolean' },
  owner: { type: 'string' },
  force: { type: 'boolean' },
  'whole-group': { type: 'boolean' },
  wait: { type: 'string' },
  numa: { type: 'string' },
  set: { type: 'string' },
  clear: { type: 'boolean' },
  vfs: { type: 'string' },
} as const;

/** --numa <node>: a NUMA node number, or -1 for devices with none. */
function numaOption(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^(-1|\d+)$/.test(text)) throw new UsageError(`--numa must be a NUMA node number (or --numa=-1 for none), not '${text}'`);
  return Number(text);
}

/** vgpu <vf>: what to do, from --set / --clear. */
function vgpuAction(v: { set?: string; clear?: boolean; owner?: string }): { kind: 'list' } | { kind: 'set'; typeId: number; owner: string } | { kind: 'clear'; owner: string } {
  if (v.set !== undefined && v.clear) throw new UsageError('vgpu takes --set <type id> or --clear, not both');
  if (v.set === undefined && !v.clear) return { kind: 'list' };
  if (!v.owner) throw new UsageError(`vgpu ${v.clear ? '--clear' : '--set'} needs --owner <vm>`);
  if (v.clear) return { kind: 'clear', owner: v.owner };
  if (!/^[1-9]\d*$/.test(v.set!)) throw new UsageError(`--set must be a vGPU type id (a number from 'vfiod devices vgpu <vf>'), not '${v.set}'`);
  return { kind: 'set', typeId: Number(v.set), owner: v.owner };
}

/** sriov <pf>: the number of VFs (and the owner, needed unless removing). */
function sriovAction(v: { vfs?: string; owner?: string }): { count: number; owner: string } {
  if (v.vfs === undefined || !/^\d+$/.test(v.vfs)) throw new UsageError(`sriov needs --vfs <n> (a number; 0 removes the VFs)${v.vfs !== undefined ? `, not '${v.vfs}'` : ''}`);
  const count = Number(v.vfs);
  if (count > 0 && !v.owner) throw new UsageError('sriov --vfs <n> needs --owner <vm> (the VM the VFs are prepared for)');
  return { count, owner: v.owner ?? '' };
}

/** The report of `vfiod devices vgpu <vf>` (standalone, and through the daemon). */
export function renderVgpuTypes(r: { bdf: string; current: number; creatable: Array<{ id: number; name: string }>; owner: string | null }): string {
  const lines = [`${r.bdf}: vGPU profile ${r.current === 0 ? 'none' : r.current}${r.owner ? ` (claimed by ${r.owner})` : ''}`];
  lines.push(r.creatable.length ? table([['ID', 'NAME'], ...r.creatable.map((t) => [String(t.id), t.name])]).trimEnd() : 'creatable now: none');
  return `${lines.join('\n')}\n`;
}

export function renderVgpuChange(r: { bdf: string; owner: string; previous: number; current: number; changed: boolean; claimed: boolean }): string {
  const name = (id: number): string => (id === 0 ? 'none' : String(id));
  if (!r.changed) return `${r.bdf} already has vGPU profile ${name(r.current)}\n`;
  return `${r.bdf}: vGPU profile ${name(r.previous)} -> ${name(r.current)} for ${r.owner}${r.claimed ? ' (claimed; release gives back the previous profile)' : ''}\n`;
}

export function renderVfs(r: { pf: string; owner: string; vfs: Array<{ bdf: string; vfioCdev: string | null; vfioGroupDev: string | null }>; replaced: string[]; autoprobeTurnedOff: boolean }): string {
  const lines = [`created ${r.vfs.length} VF(s) on ${r.pf}, prepared for ${r.owner}:`];
  for (const vf of r.vfs) lines.push(`  ${vf.bdf}: ${vf.vfioCdev || vf.vfioGroupDev || '?'}`);
  if (r.replaced.length) lines.push(`  replaced unused VFs ${r.replaced.join(', ')}`);
  if (r.autoprobeTurnedOff) lines.push(`  sriov_drivers_autoprobe off on ${r.pf} until the last of these VFs is released`);
  return `${lines.join('\n')}\n`;
}

export function renderVfsRemoved(pf: string, removed: string[]): string {
  return removed.length ? `removed the VFs of ${pf}: ${removed.join(', ')}\n` : `${pf} had no VFs\n`;
}

export interface DevicesDeps extends ClientDeps {
  writer?: SysfsWriter;
  prober?: VfioProber;
  /** Poll interval for waits (tests shorten it). */
  pollMs?: number;
}

function exitFor(error: DeviceError): number {
  switch (error.code) {
    case 'NOT_FOUND':
      return EXIT.notFound;
    case 'ALREADY_EXISTS':
    case 'UNAVAILABLE':
      return EXIT.busy;
    case 'INVALID_ARGUMENT':
      return EXIT.usage;
    default:
      return EXIT.failed;
  }
}

const hexSize = (n: number): string => {
  for (const [unit, size] of [['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) if (n >= size && n % size === 0) return `${n / size}${unit}`;
  return `${n}B`;
};

function statusOf(d: ShownDevice, claimOwner: string | undefined): string {
  if (claimOwner) return `claimed:${claimOwner}`;
  if (d.vfio.usable) return d.vfio.state === 'vendor-vfio' ? 'vfio(vendor)' : 'vfio';
  if (d.hostUse.some((u) => u.blocking)) return 'in-use';
  switch (d.vfio.state) {
    case 'bridge':
      return 'bridge';
    case 'no-iommu':
      return 'no-iommu';
    default:
      return d.vfio.groupViable || d.groupMembers.length <= 1 ? 'free' : 'free(group)';
  }
}

/** What the tables print of a device: a PciDevice, or the API's DeviceInfo (which gives a BAR's index and size). */
type ShownDevice = Omit<PciDevice, 'bars'> & { bars: Array<Pick<Bar, 'index' | 'size'>> };

/** The device table of `vfiod devices list` (standalone, and through the daemon). */
export function renderList(devices: ShownDevice[], owners: Map<string, string>): string {
  const rows = [['BDF', 'ID', 'CLASS', 'DRIVER', 'GROUP', 'NUMA', 'SR-IOV', 'STATUS', 'NOTES']];
  for (const d of devices) {
    const sriov = d.sriov ? `PF ${d.sriov.numVfs}/${d.sriov.totalVfs}` : d.physfn ? `VF of ${d.physfn.slice(5)}` : '-';
    const notes = [
      ...d.hostUse.filter((u) => u.blocking).map((u) => u.detail),
      d.vfio.state === 'vendor-vfio' ? `vendor VFIO (${d.driver})` : '',
      d.driverOverride ? `override=${d.driverOverride}` : '',
    ].filter(Boolean);
    rows.push([
      d.bdf,
      `${d.vendor}:${d.device}`,
      `${d.kind}(${d.classCode})`,
      d.driver ?? '-',
      d.iommuGroup === null ? '-' : String(d.iommuGroup),
      d.numaNode === null ? '-' : String(d.numaNode),
      sriov,
      statusOf(d, owners.get(d.bdf)),
      notes.join('; '),
    ]);
  }
  return table(rows);
}

/** What `vfiod devices show` prints of a claim (a claims-database row, or the API's ClaimInfo). */
interface ShownClaim {
  owner: string;
  state: string;
  originalDriver: string | null;
  originalOverride: string | null;
  createdAt: string;
  updatedAt: string;
  note: string | null;
}

/** The device report of `vfiod devices show` (standalone, and through the daemon). */
export function renderShow(d: ShownDevice, c: ShownClaim | undefined): string {
  const lines = [
    `${d.bdf}  ${d.vendor}:${d.device} (subsystem ${d.subsystemVendor ?? '?'}:${d.subsystemDevice ?? '?'})  class ${d.classCode} (${d.kind})`,
    `driver:          ${d.driver ?? 'none'}${d.driverOverride ? ` (driver_override ${d.driverOverride})` : ''}`,
    `iommu group:     ${d.iommuGroup ?? 'none'}${d.groupMembers.length ? ` [${d.groupMembers.join(', ')}]` : ''}`,
    `numa node:       ${d.numaNode ?? '-'}`,
  ];
  if (d.sriov) lines.push(`sr-iov:          ${d.sriov.numVfs}/${d.sriov.totalVfs} VFs, drivers_autoprobe ${d.sriov.driversAutoprobe === null ? '?' : d.sriov.driversAutoprobe ? 'on' : 'off'}${d.virtfns.length ? ` [${d.virtfns.join(', ')}]` : ''}`);
  if (d.physfn) lines.push(`physical fn:     ${d.physfn}`);
  if (d.vgpu) {
    const creatable = d.vgpu.creatable.map((t) => `${t.id} (${t.name})`).join(', ') || 'none';
    lines.push(`vGPU profile:    ${d.vgpu.current === 0 ? 'none' : d.vgpu.current}; creatable now: ${creatable}`);
  }
  lines.push(`reset methods:   ${d.resetMethods === null ? 'unknown' : d.resetMethods.length ? d.resetMethods.join(', ') : 'none'}`);
  lines.push(`BARs:            ${d.bars.length ? d.bars.map((b) => `${b.index === 6 ? 'ROM' : `BAR${b.index}`} ${hexSize(b.size)}`).join(', ') : 'none'}`);
  lines.push(`vfio:            ${d.vfio.state}, ${d.vfio.usable ? 'usable now' : 'not usable now'}; group ${d.vfio.groupViable ? 'viable' : 'not viable'}${d.vfioGroupDev ? `; ${d.vfioGroupDev}` : ''}${d.vfioCdev ? `; ${d.vfioCdev}` : ''}`);
  for (const r of d.vfio.reasons) lines.push(`                 - ${r}`);
  if (d.hostUse.length) lines.push('host use:', ...d.hostUse.map((u) => `  ${u.blocking ? '!' : '-'} ${u.detail}`));
  lines.push(
    c
      ? `claim:           ${c.owner} (${c.state}) since ${c.createdAt}; original driver ${c.originalDriver ?? 'none'}, override ${c.originalOverride ?? 'none'}${c.note ? `; ${c.note}` : ''}`
      : 'claim:           none',
  );
  return lines.join('\n') + '\n';
}

function seconds(option: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const v = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !Number.isFinite(v)) throw new UsageError(`${option} must be a number of seconds, not '${text}'`);
  return Math.round(v * 1000);
}

export async function runDevices(argv: string[], deps: DevicesDeps = {}): Promise<number> {
  const out = deps.stdout ?? ((t: string) => void process.stdout.write(t));
  const err = deps.stderr ?? ((t: string) => void process.stderr.write(t));
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    out(DEVICES_USAGE);
    return command === undefined ? EXIT.usage : EXIT.ok;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        ...DEVICE_OPTIONS,
        json: { type: 'boolean' },
        state: { type: 'string' },
        'sysfs-root': { type: 'string' },
        'dev-root': { type: 'string' },
        'proc-root': { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    err(`vfiod devices: ${(error as Error).message}\n`);
    return EXIT.usage;
  }
  const v = parsed.values;
  if (v.help) {
    out(DEVICES_USAGE);
    return EXIT.ok;
  }
  const roots: HostRoots = {
    sysfs: v['sysfs-root'] ?? DEFAULT_ROOTS.sysfs,
    dev: v['dev-root'] ?? DEFAULT_ROOTS.dev,
    proc: v['proc-root'] ?? DEFAULT_ROOTS.proc,
  };
  const statePath = v.state ?? DEFAULT_CLAIMS_DB;
  // On the host's own sysfs next to a running daemon, standalone changes claims behind the daemon's back: say so.
  const daemonSocket = roots.sysfs === DEFAULT_ROOTS.sysfs ? existingDaemonSocket() : undefined;
  if (daemonSocket) {
    err(`vfiod devices: standalone (sysfs and ${statePath}), not through the daemon at ${daemonSocket}; give --daemon ${daemonSocket} to go through it\n`);
  }
  const json = (value: unknown) => out(`${JSON.stringify(value, null, 2)}\n`);
  let store: ClaimStore | undefined;
  const openStore = (): ClaimStore => (store ??= new ClaimStore(statePath));
  const bdfArg = (): string => {
    const [first, ...more] = parsed.positionals;
    if (!first) throw new UsageError(`${command} needs a device address (BDF), e.g. 0000:01:00.1`);
    if (more.length) throw new UsageError(`${command} takes one device, got ${parsed.positionals.length}`);
    const bdf = normalizeBdf(first);
    if (!bdf) throw new UsageError(`'${first}' is not a PCI address (expected 0000:01:00.1 or 01:00.1)`);
    return bdf;
  };
  const manager = async (): Promise<DeviceManager> =>
    new DeviceManager({
      roots,
      writer: deps.writer ?? realSysfsWriter,
      prober: deps.prober ?? (await nativeProber(roots)),
      claims: openStore(),
      ...(deps.pollMs !== undefined ? { pollMs: deps.pollMs } : {}),
      ...(v.timeout !== undefined ? { vfioTimeoutMs: seconds('--timeout', v.timeout, 5000) } : {}),
    });

  try {
    switch (command) {
      case 'list': {
        const classes = v.class ?? [];
        for (const c of classes) if (!DEVICE_KINDS.includes(c as DeviceKind)) throw new UsageError(`--class must be one of ${DEVICE_KINDS.join(', ')}, not '${c}'`);
        for (const i of v.id ?? []) if (!parseId(i)) throw new UsageError(`--id must look like 15b3:6001, not '${i}'`);
        const bdfs = parsed.positionals.map((p) => {
          const b = normalizeBdf(p);
          if (!b) throw new UsageError(`'${p}' is not a PCI address`);
          return b;
        });
        const pfs = (v.pf ?? []).map((p) => normalizeBdf(p) ?? p);
        const numaNode = numaOption(v.numa);
        const selector: DeviceSelector = { bdfs, ids: v.id ?? [], classes: classes as DeviceKind[], pfs, free: v.free ?? false, ...(numaNode !== undefined ? { numaNode } : {}) };
        // The database is optional for listing: without it, nothing is shown as claimed.
        const claims = safeClaims(statePath, openStore);
        const owners = new Map(claims.map((c) => [c.bdf, c.owner]));
        const devices = selectDevices(listDevices(roots), selector, new Set(owners.keys()));
        if (v.json) json(devices.map((d) => ({ ...d, claim: claims.find((c) => c.bdf === d.bdf) ?? null })));
        else out(devices.length ? renderList(devices, owners) : 'no matching devices\n');
        return EXIT.ok;
      }
      case 'show': {
        const bdf = bdfArg();
        const d = readDevice(roots, bdf);
        if (!d) {
          err(`vfiod devices: no PCI device ${bdf}\n`);
          return EXIT.notFound;
        }
        const claim = safeClaims(statePath, openStore).find((c) => c.bdf === bdf);
        if (v.json) json({ ...d, claim: claim ?? null });
        else out(renderShow(d, claim));
        return EXIT.ok;
      }
      case 'prepare': {
        const bdf = bdfArg();
        if (!v.owner) throw new UsageError('prepare needs --owner <vm>');
        const result = await (await manager()).prepare(bdf, v.owner, { force: v.force ?? false, wholeGroup: v['whole-group'] ?? false });
        if (v.json) json(result);
        else {
          out(`${result.changed ? 'prepared' : 'already prepared'} ${bdf} for ${result.owner}: ${result.vfioCdev ?? result.vfioGroupDev ?? '?'}\n`);
          for (const d of result.devices) out(`  ${d.bdf}${d.companion ? ' (companion)' : ''}: ${d.mode === 'as-is' ? 'left on its VFIO driver' : `was ${d.originalDriver ?? 'unbound'}`}\n`);
          for (const o of result.overridden) out(`  forced over: ${o}\n`);
          for (const w of result.warnings) out(`  warning: ${w}\n`);
        }
        return EXIT.ok;
      }
      case 'release': {
        const bdf = bdfArg();
        if (!v.owner) throw new UsageError('release needs --owner <vm>');
        const result = await (await manager()).release(bdf, v.owner, { waitMs: seconds('--wait', v.wait, 0) });
        if (v.json) json(result);
        else {
          out(`released ${bdf} from ${result.owner}\n`);
          for (const d of result.devices) out(`  ${d.bdf}: ${d.gone ? 'device is gone' : `restored to ${d.restoredDriver ?? 'no driver'}`}\n`);
          for (const pf of result.autoprobeRestored) out(`  sriov_drivers_autoprobe restored on ${pf}\n`);
        }
        return EXIT.ok;
      }
      case 'vgpu': {
        const bdf = bdfArg();
        const action = vgpuAction(v);
        const m = await manager();
        if (action.kind === 'list') {
          const r = m.vgpuTypes(bdf);
          if (v.json) json(r);
          else out(renderVgpuTypes(r));
          return EXIT.ok;
        }
        const r = action.kind === 'set' ? m.setVgpuType(bdf, action.owner, action.typeId) : m.clearVgpuType(bdf, action.owner);
        if (v.json) json(r);
        else out(renderVgpuChange(r));
        return EXIT.ok;
      }
      case 'sriov': {
        const pf = bdfArg();
        const { count, owner } = sriovAction(v);
        const m = await manager();
        if (count === 0) {
          const r = m.removeVfs(pf);
          if (v.json) json(r);
          else out(renderVfsRemoved(pf, r.removed));
          return EXIT.ok;
        }
        const r = await m.createVfs(pf, owner, count, v.timeout !== undefined ? { timeoutMs: seconds('--timeout', v.timeout, 5000) } : {});
        if (v.json) json(r);
        else out(renderVfs(r));
        return EXIT.ok;
      }
      case 'reconcile': {
        const report = (await manager()).reconcile();
        if (v.json) json(report);
        else out(report.length ? table([['BDF', 'ACTION', 'DETAIL'], ...report.map((r) => [r.bdf, r.action, r.detail])]) : 'nothing to reconcile\n');
        return report.some((r) => r.action === 'attention') ? EXIT.attention : EXIT.ok;
      }
      default:
        throw new UsageError(`unknown devices command '${command}'`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      err(`vfiod devices: ${error.message}\n${DEVICES_USAGE}`);
      return EXIT.usage;
    }
    if (error instanceof DeviceError) {
      const metadata = errorMetadata(error.details);
      // The details as before (camelCase), then the reason and metadata as the daemon's --json has them.
      if (v.json) json({ error: { code: error.code, message: error.message, ...error.details, reason: error.reason, metadata } });
      err(`vfiod devices ${command}: ${formatError({ code: error.code, reason: error.reason, message: error.message, metadata, violations: error.details.violations ?? [] })}\n`);
      return exitFor(error);
    }
    err(`vfiod devices ${command}: ${(error as Error).message}\n`);
    return EXIT.failed;
  } finally {
    store?.close();
  }
}

function safeClaims(statePath: string, open: () => ClaimStore): ReturnType<ClaimStore['list']> {
  try {
    return open().list();
  } catch (error) {
    if (statePath === DEFAULT_CLAIMS_DB) return [];
    throw error;
  }
}

// ---- through the daemon ----

export const DEVICES_DAEMON_USAGE = `Usage: vfiod devices <command> [options]   (through the daemon)

Commands:
  list [<bdf>...] [--id <vendor:device>] [--class <kind>] [--pf <bdf>] [--numa <node>] [--free]
  show <bdf>
  prepare <bdf> --owner <vm> [--force] [--whole-group]
  release <bdf> --owner <vm> [--wait <s>]
  vgpu <vf> [--set <type id> | --clear] [--owner <vm>]
  sriov <pf> --vfs <n> --owner <vm>     (--vfs 0 removes the VFs)
  events [<bdf>...]            follow device events until interrupted

Only with --daemon; without it, vfiod devices runs standalone (\`vfiod devices help\`).

${CONNECTION_HELP}`;

/**
 * Whether `vfiod devices` goes through a daemon: only when --daemon is given. A daemon socket that merely exists does
 * not switch modes (standalone says it saw one: `runDevices`).
 */
export function devicesUseDaemon(argv: string[]): boolean {
  return argv.some((a) => a === '--daemon' || a.startsWith('--daemon='));
}

/** The daemon socket ($VFIOD_DAEMON, or the default) when it exists. */
function existingDaemonSocket(): string | undefined {
  const socket = process.env['VFIOD_DAEMON'] ?? DEFAULT_DAEMON_SOCKET;
  return existsSync(socket) ? socket : undefined;
}

/** The API's DeviceInfo in the passthrough manager's terms, so `renderList` and `renderShow` print it alike. */
function shownDeviceFrom(d: DeviceInfo): ShownDevice {
  const sriov = d.sriov;
  return {
    bdf: d.bdf,
    vendor: d.vendorId,
    device: d.deviceId,
    subsystemVendor: d.subsystemVendorId || null,
    subsystemDevice: d.subsystemDeviceId || null,
    classCode: d.classCode,
    kind: shortEnum(d.kind, 'DEVICE_KIND_') as DeviceKind,
    driver: d.driver ?? null,
    driverOverride: d.driverOverride ?? null,
    iommuGroup: d.iommuGroup ?? null,
    groupMembers: d.iommuGroupMembers ?? [],
    numaNode: d.numaNode ?? null,
    physfn: d.physfn ?? null,
    virtfns: d.virtfns ?? [],
    sriov: sriov ? { totalVfs: sriov.totalVfs, numVfs: sriov.numVfs, driversAutoprobe: sriov.driversAutoprobe ?? null } : null,
    resetMethods: d.resetMethods ?? null,
    bars: d.bars ?? [],
    vfioGroupDev: d.vfioGroupDev || null,
    vfioCdev: d.vfioCdev || null,
    // The proto's kind is a string; the daemon fills it from the same HostUse kinds.
    hostUse: d.hostUses.map((u) => ({ ...u, kind: u.kind as HostUse['kind'] })),
    vgpu: d.vgpu ? { current: d.vgpu.currentType, creatable: d.vgpu.creatable } : null,
    vfio: { state: shortEnum(d.vfioState, 'VFIO_STATE_') as VfioState, usable: d.vfioUsable, groupViable: d.iommuGroupViable, reasons: d.vfioReasons ?? [] },
  };
}

/** The API's ClaimInfo in the shape `renderShow` prints. */
function claimFrom(c: ClaimInfo | null | undefined): ShownClaim | undefined {
  if (!c) return undefined;
  return {
    owner: c.owner,
    state: shortEnum(c.state, 'CLAIM_STATE_'),
    originalDriver: c.originalDriver ?? null,
    originalOverride: c.originalOverride ?? null,
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
    note: c.note || null,
  };
}

export async function runDevicesViaDaemon(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const [command, ...rest] = argv;
  const help = subcommandHelp(command, DEVICES_DAEMON_USAGE, deps);
  if (help !== undefined) return help;
  return withClient(`devices ${command}`, DEVICES_DAEMON_USAGE, rest, DEVICE_OPTIONS, deps, async (ctx, v, positionals) => {
    const bdfArg = (): string => {
      if (positionals.length !== 1) throw new UsageError(`${command} takes one device address (BDF)`);
      return bdfOption(command!, positionals[0]!);
    };
    switch (command) {
      case 'list': {
        const kinds = (v.class ?? []).map((c) => {
          if (!DEVICE_KINDS.includes(c as DeviceKind)) throw new UsageError(`--class must be one of ${DEVICE_KINDS.join(', ')}, not '${c}'`);
          return DEVICE_KIND_NAMES[c as DeviceKind];
        });
        const response = await ctx.client.call('DeviceService', 'ListDevices', {
          bdfs: positionals.map((p) => bdfOption('list', p)),
          ids: v.id ?? [],
          kinds,
          pfs: (v.pf ?? []).map((p) => bdfOption('--pf', p)),
          freeOnly: Boolean(v.free),
          ...(numaOption(v.numa) !== undefined ? { numaNode: numaOption(v.numa) } : {}),
        });
        const devices = response.devices;
        const owners = new Map<string, string>(devices.flatMap((d) => (d.claim ? [[d.bdf, d.claim.owner] as const] : [])));
        if (ctx.json) printJson(ctx, response);
        else ctx.out(devices.length ? renderList(devices.map(shownDeviceFrom), owners) : 'no matching devices\n');
        return CLIENT_EXIT.ok;
      }
      case 'show': {
        const response = await ctx.client.call('DeviceService', 'GetDevice', { bdf: bdfArg() });
        if (ctx.json) printJson(ctx, response);
        else {
          const device = present(response.device, 'GetDevice', 'device');
          ctx.out(renderShow(shownDeviceFrom(device), claimFrom(device.claim)));
        }
        return CLIENT_EXIT.ok;
      }
      case 'prepare': {
        const bdf = bdfArg();
        if (!v.owner) throw new UsageError('prepare needs --owner <vm>');
        const r = await ctx.client.call('DeviceService', 'PrepareDevice', { bdf, owner: v.owner, force: Boolean(v.force), wholeGroup: Boolean(v['whole-group']) });
        if (ctx.json) printJson(ctx, r);
        else {
          ctx.out(`${r.changed ? 'prepared' : 'already prepared'} ${bdf} for ${r.owner}: ${r.vfioCdev || r.vfioGroupDev}\n`);
          for (const d of r.devices) ctx.out(`  ${d.bdf}${d.companion ? ' (companion)' : ''}: ${d.mode === 'CLAIM_MODE_AS_IS' ? 'left on its VFIO driver' : `was ${d.originalDriver ?? 'unbound'}`}\n`);
          for (const o of r.overridden) ctx.out(`  forced over: ${o}\n`);
          for (const w of r.warnings) ctx.out(`  warning: ${w}\n`);
        }
        return CLIENT_EXIT.ok;
      }
      case 'release': {
        const bdf = bdfArg();
        if (!v.owner) throw new UsageError('release needs --owner <vm>');
        const waitMs = milliseconds('--wait', v.wait) ?? 0;
        const r = await ctx.client.call('DeviceService', 'ReleaseDevice', { bdf, owner: v.owner, waitMs }, waitMs + 60_000);
        if (ctx.json) printJson(ctx, r);
        else {
          ctx.out(`released ${bdf} from ${r.owner}\n`);
          for (const d of r.devices) ctx.out(`  ${d.bdf}: ${d.gone ? 'device is gone' : `restored to ${d.restoredDriver ?? 'no driver'}`}\n`);
          for (const pf of r.autoprobeRestored) ctx.out(`  sriov_drivers_autoprobe restored on ${pf}\n`);
        }
        return CLIENT_EXIT.ok;
      }
      case 'vgpu': {
        const bdf = bdfArg();
        const action = vgpuAction(v);
        if (action.kind === 'list') {
          const r = await ctx.client.call('DeviceService', 'ListVgpuTypes', { bdf });
          if (ctx.json) printJson(ctx, r);
          else ctx.out(renderVgpuTypes({ bdf: r.bdf, current: r.currentType, creatable: r.creatable, owner: r.owner ?? null }));
          return CLIENT_EXIT.ok;
        }
        const r = action.kind === 'set'
          ? await ctx.client.call('DeviceService', 'SetVgpuType', { bdf, owner: action.owner, typeId: action.typeId })
          : await ctx.client.call('DeviceService', 'ClearVgpuType', { bdf, owner: action.owner });
        if (ctx.json) printJson(ctx, r);
        else ctx.out(renderVgpuChange({ bdf: r.bdf, owner: r.owner, previous: r.previousType, current: r.currentType, changed: r.changed, claimed: r.claimed }));
        return CLIENT_EXIT.ok;
      }
      case 'sriov': {
        const pf = bdfArg();
        const { count, owner } = sriovAction(v);
        const r = await ctx.client.call('DeviceService', 'CreateVfs', { pf, owner, numVfs: count }, 120_000);
        if (ctx.json) printJson(ctx, r);
        else if (count === 0) ctx.out(renderVfsRemoved(pf, r.removed));
        else ctx.out(renderVfs({ ...r, vfs: r.vfs.map((vf) => ({ bdf: vf.bdf, vfioCdev: vf.vfioCdev, vfioGroupDev: vf.vfioGroupDev })) }));
        return CLIENT_EXIT.ok;
      }
      case 'events': {
        const stream = ctx.client.stream('DeviceService', 'StreamDeviceEvents', { bdfs: positionals.map((p) => bdfOption('events', p)) });
        const stop = (): void => stream.cancel();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        try {
          return await new Promise<number>((resolve, reject) => {
            stream.on('data', (event: DeviceEvent) => {
              const data = unpackAny(present(event.data, 'StreamDeviceEvents', 'data')).value as unknown as DeviceStateChanged;
              if (ctx.json) ctx.out(`${JSON.stringify({ id: event.id, componentId: event.componentId, ...data })}\n`);
              else ctx.out(`${data.at}  ${event.componentId}  ${shortEnum(data.kind, 'DEVICE_EVENT_KIND_')}${data.owner ? `  VM ${data.owner}` : ''}  ${data.detail}\n`);
            });
            stream.on('end', () => resolve(CLIENT_EXIT.ok));
            stream.on('error', (error: grpc.ServiceError) => {
              if (error.code === grpc.status.CANCELLED) resolve(CLIENT_EXIT.ok);
              else reject(ApiError.from(error, 'StreamDeviceEvents'));
            });
          });
        } finally {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        }
      }
      default:
        throw new UsageError(`unknown devices command '${command}'`);
    }
  });
}

/**
 * The native VFIO prober for `roots`. Its module (and so the addon) is loaded only by commands that need the manager.
 */
async function nativeProber(roots: HostRoots): Promise<VfioProber> {
  const { NativeVfioProber } = await import('../vfio/prober.js');
  return new NativeVfioProber({ sysfsRoot: roots.sysfs, devRoot: roots.dev });
}
