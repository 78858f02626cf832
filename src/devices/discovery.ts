/**
 * Discovery: every PCI device from sysfs, what it is, how it is bound, whether it is usable through VFIO right now
 * and why it is in use on the host. Pure reads; the roots (sysfs, /dev, /proc) are configurable.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import path from 'node:path';
import { type HostRoots, pciDeviceDir, pciDevicesDir, vfioGroupPath } from './host.js';
import { BDF } from '../util/pci-address.js';
import { readVgpuState, type VgpuState } from './vgpu.js';

export type DeviceKind = 'nvme' | 'display' | 'network' | 'audio' | 'bridge' | 'other';

export interface Bar {
  index: number;
  start: number;
  size: number;
  flags: number;
}

export interface SriovInfo {
  totalVfs: number;
  numVfs: number;
  driversAutoprobe: boolean | null;
}

export interface HostUse {
  kind: 'mounted' | 'holder' | 'swap' | 'interface-up' | 'drm' | 'open';
  /** Block device, interface or card the use was found on. */
  on: string;
  detail: string;
  /** Blocking uses refuse prepare unless forced. */
  blocking: boolean;
  /** kind 'open': the processes holding the node open. */
  processes?: Array<{ pid: number; comm: string | null }>;
}

export type VfioState = 'vfio-pci' | 'vendor-vfio' | 'host-driver' | 'unbound' | 'bridge' | 'no-iommu';

export interface VfioVerdict {
  state: VfioState;
  /** Attachable to a VM through VFIO right now, as it is. */
  usable: boolean;
  /** Every endpoint in the IOMMU group is on a VFIO driver or on none. */
  groupViable: boolean;
  reasons: string[];
}

export interface PciDevice {
  bdf: string;
  vendor: string;
  device: string;
  subsystemVendor: string | null;
  subsystemDevice: string | null;
  /** Class code as 6 hex digits, e.g. "010802". */
  classCode: string;
  kind: DeviceKind;
  driver: string | null;
  driverOverride: string | null;
  iommuGroup: number | null;
  groupMembers: string[];
  numaNode: number | null;
  physfn: string | null;
  virtfns: string[];
  sriov: SriovInfo | null;
  resetMethods: string[] | null;
  bars: Bar[];
  /** /dev/vfio/<group> when it exists. */
  vfioGroupDev: string | null;
  /** /dev/vfio/devices/vfioN when the device has a VFIO cdev (vfio-dev/ in sysfs). */
  vfioCdev: string | null;
  hostUse: HostUse[];
  /** NVIDIA vGPU VF: its profile and those it can take now (src/devices/vgpu.ts); null for any other device. */
  vgpu: VgpuState | null;
  vfio: VfioVerdict;
}

export const VFIO_PCI = 'vfio-pci';

function readTrim(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

function linkBase(file: string): string | null {
  try {
    return path.basename(readlinkSync(file));
  } catch {
    return null;
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

const hex4 = (text: string | null): string | null => (text ? text.replace(/^0x/i, '').toLowerCase().padStart(4, '0') : null);

export function kindOf(classCode: string): DeviceKind {
  const base = classCode.slice(0, 2);
  const sub = classCode.slice(0, 4);
  if (sub === '0108') return 'nvme';
  if (base === '03') return 'display';
  if (base === '02') return 'network';
  if (sub === '0403') return 'audio';
  if (base === '06') return 'bridge';
  return 'other';
}

function parseBars(text: string | null): Bar[] {
  if (!text) return [];
  const bars: Bar[] = [];
  text.split('\n').forEach((line, index) => {
    if (index > 6) return;
    const [s, e, f] = line.trim().split(/\s+/);
    // sysfs text is not trusted: BigInt() would throw on anything but a number, so skip a malformed line.
    const hexNumber = /^0x[0-9a-f]+$/i;
    if (!s || !e || !f || ![s, e, f].every((v) => hexNumber.test(v))) return;
    const start = BigInt(s);
    const end = BigInt(e);
    if ((end === 0n && start === 0n) || end < start) return;
    bars.push({ index, start: Number(start), size: Number(end - start + 1n), flags: Number(BigInt(f)) });
  });
  return bars;
}

/** Mounts by "major:minor" from <proc>/self/mountinfo. */
function readMounts(roots: HostRoots): Map<string, string[]> {
  const mounts = new Map<string, string[]>();
  const text = readTrim(path.join(roots.proc, 'self/mountinfo')) ?? '';
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const devno = fields[2];
    const mountPoint = fields[4];
    if (!devno || !mountPoint) continue;
    mounts.set(devno, [...(mounts.get(devno) ?? []), mountPoint.replace(/\\040/g, ' ')]);
  }
  return mounts;
}

function readSwaps(roots: HostRoots): Set<string> {
  const text = readTrim(path.join(roots.proc, 'swaps')) ?? '';
  return new Set(text.split('\n').slice(1).map((l) => l.split(/\s+/)[0] ?? '').filter(Boolean));
}

/** Host facts shared by every device in one scan. */
export interface HostContext {
  mounts: Map<string, string[]>;
  swaps: Set<string>;
  /** Device nodes open in some process (`/dev/...`, as the kernel names them), with who holds them; read once. */
  openNodes: () => Map<string, Array<{ pid: number; comm: string | null }>>;
}

export function readHostContext(roots: HostRoots): HostContext {
  let open: Map<string, Array<{ pid: number; comm: string | null }>> | undefined;
  return { mounts: readMounts(roots), swaps: readSwaps(roots), openNodes: () => (open ??= readOpenNodes(roots)) };
}

/** A context that reads no host use: for reading a device's binding only. */
export function bindingOnly(): HostContext {
  return { mounts: new Map(), swaps: new Set(), openNodes: () => new Map() };
}

/**
 * Every device node some process holds open, from <proc>/<pid>/fd links (a database on a raw namespace, another
 * VM's -drive, a Ceph OSD, a display server on a DRM node). One pass over /proc for a whole scan. Processes this
 * one may not look into (another user's, without privilege) are skipped: vfiod runs as root where it matters.
 */
function readOpenNodes(roots: HostRoots): Map<string, Array<{ pid: number; comm: string | null }>> {
  const nodes = new Map<string, Array<{ pid: number; comm: string | null }>>();
  const devPrefix = roots.dev.endsWith('/') ? roots.dev : `${roots.dev}/`;
  for (const pid of listDir(roots.proc).filter((n) => /^\d+$/.test(n))) {
    const fdDir = path.join(roots.proc, pid, 'fd');
    let comm: string | null | undefined;
    for (const fd of listDir(fdDir)) {
      let target: string;
      try {
        target = readlinkSync(path.join(fdDir, fd));
      } catch {
        continue;
      }
      // A configured dev root (tests, a chroot) names nodes under it; report them as /dev/... as the kernel does.
      if (target.startsWith(devPrefix)) target = `/dev/${target.slice(devPrefix.length)}`;
      if (!target.startsWith('/dev/')) continue;
      const holders = nodes.get(target) ?? [];
      if (holders.some((h) => h.pid === Number(pid))) continue;
      comm ??= readTrim(path.join(roots.proc, pid, 'comm'));
      holders.push({ pid: Number(pid), comm });
      nodes.set(target, holders);
    }
  }
  return nodes;
}

function openUse(node: string, on: string, host: HostContext, what: string): HostUse | undefined {
  const processes = host.openNodes().get(node);
  if (!processes?.length) return undefined;
  const who = processes.map((p) => `pid ${p.pid} (${p.comm ?? '?'})`).join(', ');
  return { kind: 'open', on, detail: `${node}${what} is open by ${who}`, blocking: true, processes };
}

/** Block devices (namespaces and their partitions) under an NVMe controller, as [name, sysfs dir]. */
export function nvmeBlockDevices(devDir: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const ctrl of listDir(path.join(devDir, 'nvme'))) {
    const ctrlDir = path.join(devDir, 'nvme', ctrl);
    for (const ns of listDir(ctrlDir)) {
      if (!/^nvme\d+(c\d+)?n\d+$/.test(ns)) continue;
      const nsDir = path.join(ctrlDir, ns);
      // With native multipath the path device nvmeXcYnZ backs the head nvmeXnZ, which is what gets mounted.
      out.push([ns.replace(/c\d+(?=n\d+$)/, ''), nsDir]);
      for (const part of listDir(nsDir)) {
        if (part.startsWith(ns) && existsSync(path.join(nsDir, part, 'dev'))) out.push([part, path.join(nsDir, part)]);
      }
    }
  }
  return out;
}

function hostUses(roots: HostRoots, devDir: string, kind: DeviceKind, host: HostContext): HostUse[] {
  const uses: HostUse[] = [];
  if (kind === 'nvme') {
    for (const [name, dir] of nvmeBlockDevices(devDir)) {
      const devno = readTrim(path.join(dir, 'dev'));
      for (const mp of (devno && host.mounts.get(devno)) || []) {
        uses.push({ kind: 'mounted', on: name, detail: `/dev/${name} is mounted on ${mp}`, blocking: true });
      }
      for (const holder of listDir(path.join(dir, 'holders'))) {
        uses.push({ kind: 'holder', on: name, detail: `/dev/${name} is held by ${holder} (device-mapper, md or LVM)`, blocking: true });
      }
      if (host.swaps.has(`/dev/${name}`)) {
        uses.push({ kind: 'swap', on: name, detail: `/dev/${name} is used as swap`, blocking: true });
      }
      const open = openUse(`/dev/${name}`, name, host, '');
      if (open) uses.push(open);
    }
    // The controller's character device (nvme-cli, a monitoring agent, a userspace driver's admin path).
    for (const ctrl of listDir(path.join(devDir, 'nvme')).filter((c) => /^nvme\d+$/.test(c))) {
      const open = openUse(`/dev/${ctrl}`, ctrl, host, ' (the controller)');
      if (open) uses.push(open);
    }
  } else if (kind === 'network') {
    // virtio-net keeps its interfaces one level deeper, under the virtio device (virtioN/net/).
    const netDirs = [path.join(devDir, 'net'), ...listDir(devDir).filter((n) => /^virtio\d+$/.test(n)).map((n) => path.join(devDir, n, 'net'))];
    for (const netDir of netDirs) {
      for (const ifname of listDir(netDir)) {
        if (readTrim(path.join(netDir, ifname, 'operstate')) === 'up') {
          uses.push({ kind: 'interface-up', on: ifname, detail: `network interface ${ifname} is up`, blocking: true });
        }
      }
    }
  } else if (kind === 'display') {
    for (const node of listDir(path.join(devDir, 'drm')).filter((c) => /^(card|renderD)\d+$/.test(c))) {
      const open = openUse(`/dev/dri/${node}`, node, host, '');
      if (open) uses.push(open);
      else if (node.startsWith('card')) {
        uses.push({ kind: 'drm', on: node, detail: `DRM device ${node} exists (a console may use it; no process holds it open)`, blocking: false });
      }
    }
    // NVIDIA's driver exposes /dev/nvidiaN, N from /proc/driver/nvidia/gpus/<bdf>/information.
    const minor = /Device Minor:\s*(\d+)/.exec(readTrim(path.join(roots.proc, 'driver/nvidia/gpus', path.basename(devDir), 'information')) ?? '')?.[1];
    if (minor !== undefined) {
      const open = openUse(`/dev/nvidia${minor}`, `nvidia${minor}`, host, ' (a CUDA or display process)');
      if (open) uses.push(open);
    }
  }
  return uses;
}

function readInt(file: string): number | null {
  const t = readTrim(file);
  if (t === null || t === '') return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : null;
}

interface RawDevice extends Omit<PciDevice, 'vfio'> {}

function readRaw(roots: HostRoots, bdf: string, host: HostContext): RawDevice | undefined {
  const dir = pciDeviceDir(roots, bdf);
  const classText = readTrim(path.join(dir, 'class'));
  const vendor = hex4(readTrim(path.join(dir, 'vendor')));
  const device = hex4(readTrim(path.join(dir, 'device')));
  if (!classText || !vendor || !device) return undefined;
  const classCode = classText.replace(/^0x/i, '').toLowerCase().padStart(6, '0');
  const kind = kindOf(classCode);
  const groupText = linkBase(path.join(dir, 'iommu_group'));
  const iommuGroup = groupText !== null && /^\d+$/.test(groupText) ? Number(groupText) : null;
  const override = readTrim(path.join(dir, 'driver_override'));
  const numa = readInt(path.join(dir, 'numa_node'));
  const total = readInt(path.join(dir, 'sriov_totalvfs'));
  const autoprobe = readInt(path.join(dir, 'sriov_drivers_autoprobe'));
  const resetText = readTrim(path.join(dir, 'reset_method'));
  const vfioDev = listDir(path.join(dir, 'vfio-dev')).find((n) => /^vfio\d+$/.test(n));
  const groupDev = iommuGroup === null ? null : vfioGroupPath(roots, iommuGroup);
  return {
    bdf,
    vendor,
    device,
    subsystemVendor: hex4(readTrim(path.join(dir, 'subsystem_vendor'))),
    subsystemDevice: hex4(readTrim(path.join(dir, 'subsystem_device'))),
    classCode,
    kind,
    driver: linkBase(path.join(dir, 'driver')),
    driverOverride: override === null || override === '(null)' || override === '' ? null : override,
    iommuGroup,
    groupMembers: iommuGroup === null ? [] : listDir(path.join(roots.sysfs, 'kernel/iommu_groups', String(iommuGroup), 'devices')),
    numaNode: numa === null || numa < 0 ? null : numa,
    physfn: linkBase(path.join(dir, 'physfn')),
    virtfns: listDir(dir)
      .filter((n) => /^virtfn\d+$/.test(n))
      .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)))
      .map((n) => linkBase(path.join(dir, n)))
      .filter((v): v is string => v !== null),
    sriov: total === null ? null : { totalVfs: total, numVfs: readInt(path.join(dir, 'sriov_numvfs')) ?? 0, driversAutoprobe: autoprobe === null ? null : autoprobe !== 0 },
    resetMethods: resetText === null ? null : resetText.split(/\s+/).filter(Boolean),
    bars: parseBars(readTrim(path.join(dir, 'resource'))),
    vfioGroupDev: groupDev !== null && existsSync(groupDev) ? groupDev : null,
    vfioCdev: vfioDev ? path.join(roots.dev, 'vfio/devices', vfioDev) : null,
    hostUse: hostUses(roots, dir, kind, host),
    vgpu: readVgpuState(roots, bdf) ?? null,
  };
}

/** Is this device on a VFIO driver (vfio-pci, or a vendor VFIO driver with a vfio-dev/ directory)? */
export function onVfioDriver(roots: HostRoots, bdf: string): boolean {
  const dir = pciDeviceDir(roots, bdf);
  const driver = linkBase(path.join(dir, 'driver'));
  return driver === VFIO_PCI || (driver !== null && listDir(path.join(dir, 'vfio-dev')).length > 0);
}

function memberViable(roots: HostRoots, member: string): { ok: boolean; why?: string } {
  const dir = pciDeviceDir(roots, member);
  const classText = readTrim(path.join(dir, 'class'));
  if (classText && kindOf(classText.replace(/^0x/i, '').padStart(6, '0')) === 'bridge') return { ok: true };
  const driver = linkBase(path.join(dir, 'driver'));
  if (driver === null || onVfioDriver(roots, member)) return { ok: true };
  return { ok: false, why: `${member} is bound to ${driver}` };
}

function verdict(roots: HostRoots, raw: RawDevice): VfioVerdict {
  const reasons: string[] = [];
  const blockers = raw.groupMembers.map((m) => memberViable(roots, m)).filter((v) => !v.ok);
  const groupViable = raw.iommuGroup !== null && blockers.length === 0;
  let state: VfioState;
  if (raw.kind === 'bridge') {
    state = 'bridge';
    reasons.push('bridges are never bound to VFIO');
  } else if (raw.iommuGroup === null) {
    state = 'no-iommu';
    reasons.push('no IOMMU group (IOMMU off or device not translated)');
  } else if (raw.driver === VFIO_PCI) {
    state = 'vfio-pci';
  } else if (raw.driver !== null && raw.vfioCdev !== null) {
    state = 'vendor-vfio';
    reasons.push(`on vendor VFIO driver ${raw.driver}: attachable as it is, never rebound`);
  } else if (raw.driver !== null) {
    state = 'host-driver';
    reasons.push(`bound to host driver ${raw.driver}`);
  } else {
    state = 'unbound';
    reasons.push('not bound to any driver');
  }
  const onVfio = state === 'vfio-pci' || state === 'vendor-vfio';
  if (onVfio && raw.vfioGroupDev === null && raw.vfioCdev === null) reasons.push(`/dev/vfio/${raw.iommuGroup} is missing`);
  if (raw.iommuGroup !== null && !groupViable) {
    reasons.push(`IOMMU group ${raw.iommuGroup} is not viable: ${blockers.map((b) => b.why).join(', ')}`);
  }
  for (const use of raw.hostUse.filter((u) => u.blocking)) reasons.push(`in use on the host: ${use.detail}`);
  const usable = onVfio && groupViable && (raw.vfioGroupDev !== null || raw.vfioCdev !== null);
  return { state, usable, groupViable, reasons };
}

/** Reads one device; undefined when it does not exist (or vanished while being read). */
export function readDevice(roots: HostRoots, bdf: string, host: HostContext = readHostContext(roots)): PciDevice | undefined {
  const raw = readRaw(roots, bdf, host);
  return raw && { ...raw, vfio: verdict(roots, raw) };
}

export function listBdfs(roots: HostRoots): string[] {
  return listDir(pciDevicesDir(roots)).filter((n) => BDF.test(n));
}

export function listDevices(roots: HostRoots): PciDevice[] {
  const host = readHostContext(roots);
  return listBdfs(roots)
    .map((bdf) => readDevice(roots, bdf, host))
    .filter((d): d is PciDevice => d !== undefined);
}

export interface VfioHolder {
  pid: number;
  comm: string | null;
  path: string;
}

/**
 * Processes holding any of `paths` open (links under <proc>/<pid>/fd). Unreadable processes are skipped: run as
 * root to see every VMM.
 */
export function findHolders(roots: HostRoots, paths: string[]): VfioHolder[] {
  if (paths.length === 0) return [];
  // readOpenNodes names every node as /dev/...; with a configured dev root, `paths` are under it.
  const open = readOpenNodes(roots);
  const holders: VfioHolder[] = [];
  for (const p of paths) {
    const rel = path.relative(roots.dev, p);
    const node = rel.startsWith('..') ? p : path.join('/dev', rel);
    for (const holder of open.get(node) ?? []) holders.push({ pid: holder.pid, comm: holder.comm, path: p });
  }
  return holders;
}

export function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
