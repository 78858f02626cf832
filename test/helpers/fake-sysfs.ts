/**
 * A fake host for the passthrough manager: a temp directory with sys/, dev/ and proc/ laid out like Linux, and a
 * SysfsWriter that applies writes the way the kernel would (driver_override, unbind, bind, drivers_probe,
 * sriov_drivers_autoprobe), plus a VfioProber that reads the fake tree.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readDevice } from '../../src/devices/discovery.js';
import type { HostRoots, SysfsWriter } from '../../src/devices/host.js';
import type { VfioProbeResult, VfioProber } from '../../src/devices/probe.js';
import { bdfOfRoutingId, routingIdOf } from '../../src/util/pci-address.js';
import { temporaryDir } from './common.js';

export interface FakeNamespace {
  name: string;
  devno: string;
  partitions?: Array<{ name: string; devno: string }>;
  holders?: string[];
}

export interface FakeDeviceSpec {
  bdf: string;
  vendor: string;
  device: string;
  classCode: string;
  subsystemVendor?: string;
  subsystemDevice?: string;
  driver?: string | null;
  /** What drivers_probe binds without an override (defaults to `driver`). */
  defaultDriver?: string | null;
  override?: string | null;
  group?: number | null;
  numa?: number;
  physfn?: string;
  /**
   * A PF. `num` VFs are not created by this (add them with `physfn`); writing sriov_numvfs creates and destroys VFs
   * as the kernel does, at PF + offset + i * stride (defaults 1 and 1), with device id `vfDevice` (default the PF's).
   */
  sriov?: { total: number; num: number; autoprobe: boolean; offset?: number; stride?: number; vfDevice?: string };
  /**
   * An NVIDIA vGPU VF as driver 595 lays it out: nvidia/creatable_vgpu_types ("ID    : vGPU Name" then "<id> : <name>")
   * and nvidia/current_vgpu_type (0: none). Writing an id the VF cannot take fails with EINVAL, selecting one while
   * another is selected with EBUSY.
   */
  vgpu?: { creatable: Array<[number, string]>; current?: number };
  resetMethods?: string[] | null;
  /** [bar index, size] or [bar index, size, IORESOURCE_* flags] (default 0x140204: 64-bit memory, not prefetchable). */
  bars?: Array<[number, number] | [number, number, number]>;
  /** Has vfio-dev/vfioN (a vendor VFIO driver such as nvidia or mlx5_vfio_pci). */
  vendorVfio?: number;
  namespaces?: FakeNamespace[];
  /** `virtio`: under virtio0/net/, as virtio-net lays it out, not net/. */
  netIfs?: Array<{ name: string; up: boolean; virtio?: boolean }>;
  drmCards?: string[];
}

export type WriteHook = (relFile: string, value: string) => void;

export class FakeHost {
  readonly root: string;
  readonly roots: HostRoots;
  readonly writes: Array<[string, string]> = [];
  /** Called before each write is applied; throw to make the write fail, or change the tree. */
  beforeWrite: WriteHook | undefined;
  /** Called after each write was applied. */
  afterWrite: WriteHook | undefined;
  private readonly defaults = new Map<string, string | null>();
  private readonly specs = new Map<string, FakeDeviceSpec>();
  private readonly vgpuTypes = new Map<string, Array<[number, string]>>();
  private readonly swaps: string[] = [];
  private readonly mounts: string[] = [];
  readonly probeOverrides = new Map<string, Partial<VfioProbeResult> | Error>();
  readonly probed: string[] = [];

  constructor() {
    this.root = temporaryDir('vfiod-fake-sysfs-');
    this.roots = { sysfs: path.join(this.root, 'sys'), dev: path.join(this.root, 'dev'), proc: path.join(this.root, 'proc') };
    // sys/class/mdev_bus exists and stays empty: SR-IOV vGPU GPUs (Ada and newer) have no mdev.
    for (const d of ['sys/bus/pci/devices', 'sys/bus/pci/drivers', 'sys/devices/pci0000:00', 'sys/kernel/iommu_groups', 'sys/class/mdev_bus', 'dev/vfio', 'proc/self']) {
      mkdirSync(path.join(this.root, d), { recursive: true });
    }
    writeFileSync(path.join(this.roots.sysfs, 'bus/pci/drivers_probe'), '');
    for (const d of ['vfio-pci', 'nvme', 'pcieport', 'amdgpu', 'snd_hda_intel', 'nvidia', 'mlx5_core', 'mlx5_vfio_pci', 'ahci']) this.addDriver(d);
    this.syncProc();
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }

  addDriver(name: string): void {
    const dir = path.join(this.roots.sysfs, 'bus/pci/drivers', name);
    mkdirSync(dir, { recursive: true });
    for (const f of ['bind', 'unbind', 'new_id']) if (!existsSync(path.join(dir, f))) writeFileSync(path.join(dir, f), '');
  }

  devDir(bdf: string): string {
    return path.join(this.roots.sysfs, 'devices/pci0000:00', bdf);
  }

  addDevice(spec: FakeDeviceSpec): this {
    const dir = this.devDir(spec.bdf);
    mkdirSync(dir, { recursive: true });
    symlinkSync(`../../../devices/pci0000:00/${spec.bdf}`, path.join(this.roots.sysfs, 'bus/pci/devices', spec.bdf));
    const w = (f: string, v: string) => writeFileSync(path.join(dir, f), `${v}\n`);
    w('vendor', `0x${spec.vendor}`);
    w('device', `0x${spec.device}`);
    w('class', `0x${spec.classCode}`);
    w('subsystem_vendor', `0x${spec.subsystemVendor ?? spec.vendor}`);
    w('subsystem_device', `0x${spec.subsystemDevice ?? '0000'}`);
    w('driver_override', spec.override ?? '(null)');
    w('numa_node', String(spec.numa ?? -1));
    if (spec.resetMethods !== null) w('reset_method', (spec.resetMethods ?? ['flr', 'bus']).join(' '));
    const lines: string[] = [];
    for (let i = 0; i < 13; i++) {
      const bar = spec.bars?.find(([index]) => index === i);
      const start = 0xf000_0000 + i * 0x100_0000;
      const flags = (bar?.[2] ?? 0x140204).toString(16).padStart(16, '0');
      lines.push(bar ? `0x${start.toString(16).padStart(16, '0')} 0x${(start + bar[1] - 1).toString(16).padStart(16, '0')} 0x${flags}` : '0x0000000000000000 0x0000000000000000 0x0000000000000000');
    }
    writeFileSync(path.join(dir, 'resource'), `${lines.join('\n')}\n`);
    if (spec.group !== null && spec.group !== undefined) {
      const gdir = path.join(this.roots.sysfs, 'kernel/iommu_groups', String(spec.group), 'devices');
      mkdirSync(gdir, { recursive: true });
      symlinkSync(`../../../kernel/iommu_groups/${spec.group}`, path.join(dir, 'iommu_group'));
      symlinkSync(`../../../../devices/pci0000:00/${spec.bdf}`, path.join(gdir, spec.bdf));
    }
    if (spec.physfn) {
      symlinkSync(`../${spec.physfn}`, path.join(dir, 'physfn'));
      const pfDir = this.devDir(spec.physfn);
      let n = 0;
      while (existsSync(path.join(pfDir, `virtfn${n}`))) n++;
      symlinkSync(`../${spec.bdf}`, path.join(pfDir, `virtfn${n}`));
    }
    if (spec.sriov) {
      w('sriov_totalvfs', String(spec.sriov.total));
      w('sriov_numvfs', String(spec.sriov.num));
      w('sriov_drivers_autoprobe', spec.sriov.autoprobe ? '1' : '0');
      w('sriov_offset', String(spec.sriov.offset ?? 1));
      w('sriov_stride', String(spec.sriov.stride ?? 1));
      w('sriov_vf_device', spec.sriov.vfDevice ?? spec.device);
    }
    if (spec.vgpu) {
      mkdirSync(path.join(dir, 'nvidia'));
      this.vgpuTypes.set(spec.bdf, spec.vgpu.creatable);
      const rows = spec.vgpu.creatable.map(([id, name]) => `${String(id).padEnd(6)}: ${name}\n`);
      writeFileSync(path.join(dir, 'nvidia/creatable_vgpu_types'), `ID    : vGPU Name\n${rows.join('')}`);
      w('nvidia/current_vgpu_type', String(spec.vgpu.current ?? 0));
    }
    this.specs.set(spec.bdf, spec);
    if (spec.vendorVfio !== undefined) {
      mkdirSync(path.join(dir, 'vfio-dev', `vfio${spec.vendorVfio}`), { recursive: true });
      mkdirSync(path.join(this.roots.dev, 'vfio/devices'), { recursive: true });
      writeFileSync(path.join(this.roots.dev, 'vfio/devices', `vfio${spec.vendorVfio}`), '');
    }
    for (const ns of spec.namespaces ?? []) {
      const nsDir = path.join(dir, 'nvme/nvme0', ns.name);
      mkdirSync(path.join(nsDir, 'holders'), { recursive: true });
      writeFileSync(path.join(nsDir, 'dev'), `${ns.devno}\n`);
      for (const h of ns.holders ?? []) mkdirSync(path.join(nsDir, 'holders', h));
      for (const p of ns.partitions ?? []) {
        mkdirSync(path.join(nsDir, p.name, 'holders'), { recursive: true });
        writeFileSync(path.join(nsDir, p.name, 'dev'), `${p.devno}\n`);
        writeFileSync(path.join(nsDir, p.name, 'partition'), '1\n');
      }
    }
    for (const ifc of spec.netIfs ?? []) {
      const netDir = ifc.virtio ? path.join(dir, 'virtio0', 'net') : path.join(dir, 'net');
      mkdirSync(path.join(netDir, ifc.name), { recursive: true });
      writeFileSync(path.join(netDir, ifc.name, 'operstate'), ifc.up ? 'up\n' : 'down\n');
    }
    for (const card of spec.drmCards ?? []) mkdirSync(path.join(dir, 'drm', card), { recursive: true });
    this.defaults.set(spec.bdf, spec.defaultDriver !== undefined ? spec.defaultDriver : spec.driver ?? null);
    if (spec.driver) this.bind(spec.bdf, spec.driver);
    return this;
  }

  /** The device vanishes (surprise removal, PF's VFs disabled...). */
  removeDevice(bdf: string): void {
    const driver = this.driverOf(bdf);
    if (driver) this.unbind(bdf);
    const group = this.groupOf(bdf);
    if (group !== null) rmSync(path.join(this.roots.sysfs, 'kernel/iommu_groups', String(group), 'devices', bdf), { force: true });
    unlinkSync(path.join(this.roots.sysfs, 'bus/pci/devices', bdf));
    rmSync(this.devDir(bdf), { recursive: true, force: true });
  }

  mount(devno: string, mountPoint: string): void {
    this.mounts.push(`${30 + this.mounts.length} 1 ${devno} / ${mountPoint} rw,relatime shared:1 - ext4 /dev/x rw`);
    this.syncProc();
  }

  addSwap(file: string): void {
    this.swaps.push(`${file}                               partition\t8388604\t0\t-2`);
    this.syncProc();
  }

  /** A process `pid` holding `target` (e.g. /dev/vfio/12 under the fake dev root) open. */
  holdOpen(pid: number, comm: string, target: string): void {
    const fd = path.join(this.roots.proc, String(pid), 'fd');
    mkdirSync(fd, { recursive: true });
    writeFileSync(path.join(this.roots.proc, String(pid), 'comm'), `${comm}\n`);
    let n = 3;
    while (existsSync(path.join(fd, String(n))) || isLink(path.join(fd, String(n)))) n++;
    symlinkSync(target, path.join(fd, String(n)));
  }

  /** NVIDIA's /proc/driver/nvidia/gpus/<bdf>/information, naming the GPU's /dev/nvidia<minor>. */
  nvidiaGpu(bdf: string, minor: number): void {
    const dir = path.join(this.roots.proc, 'driver/nvidia/gpus', bdf);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'information'), `Model: \t\t NVIDIA A16\nIRQ:   \t\t 140\nDevice Minor: \t ${minor}\n`);
  }

  exitProcess(pid: number): void {
    rmSync(path.join(this.roots.proc, String(pid)), { recursive: true, force: true });
  }

  private syncProc(): void {
    writeFileSync(path.join(this.roots.proc, 'self/mountinfo'), this.mounts.map((l) => `${l}\n`).join(''));
    writeFileSync(path.join(this.roots.proc, 'swaps'), `Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n${this.swaps.map((l) => `${l}\n`).join('')}`);
  }

  driverOf(bdf: string): string | null {
    try {
      return path.basename(readlinkSync(path.join(this.devDir(bdf), 'driver')));
    } catch {
      return null;
    }
  }

  overrideOf(bdf: string): string | null {
    const t = readFileSync(path.join(this.devDir(bdf), 'driver_override'), 'utf8').trim();
    return t === '(null)' ? null : t;
  }

  read(bdf: string, file: string): string {
    return readFileSync(path.join(this.devDir(bdf), file), 'utf8').trim();
  }

  groupOf(bdf: string): number | null {
    try {
      return Number(path.basename(readlinkSync(path.join(this.devDir(bdf), 'iommu_group'))));
    } catch {
      return null;
    }
  }

  groupDevPath(group: number): string {
    return path.join(this.roots.dev, 'vfio', String(group));
  }

  private groupMembers(group: number): string[] {
    try {
      return readdirSafe(path.join(this.roots.sysfs, 'kernel/iommu_groups', String(group), 'devices'));
    } catch {
      return [];
    }
  }

  private bind(bdf: string, driver: string): void {
    if (!existsSync(path.join(this.roots.sysfs, 'bus/pci/drivers', driver))) throw errno('ENODEV', `no driver ${driver}`);
    symlinkSync(`../../../bus/pci/drivers/${driver}`, path.join(this.devDir(bdf), 'driver'));
    const group = this.groupOf(bdf);
    if (driver === 'vfio-pci' && group !== null) writeFileSync(this.groupDevPath(group), '');
    if (existsSync(path.join(this.devDir(bdf), 'vfio-dev')) && group !== null) writeFileSync(this.groupDevPath(group), '');
  }

  private unbind(bdf: string): void {
    const driver = this.driverOf(bdf);
    unlinkSync(path.join(this.devDir(bdf), 'driver'));
    const group = this.groupOf(bdf);
    if (driver === 'vfio-pci' && group !== null) {
      const stillVfio = this.groupMembers(group).some((m) => m !== bdf && (this.driverOf(m) === 'vfio-pci' || existsSync(path.join(this.devDir(m), 'vfio-dev'))));
      if (!stillVfio) rmSync(this.groupDevPath(group), { force: true });
    }
  }

  private probeAllowed(bdf: string): boolean {
    const override = this.overrideOf(bdf);
    try {
      const pf = path.basename(readlinkSync(path.join(this.devDir(bdf), 'physfn')));
      if (override === null && this.read(pf, 'sriov_drivers_autoprobe') === '0') return false;
    } catch {
      // not a VF
    }
    return true;
  }

  /** The kernel's reaction to a sysfs write. */
  readonly writer: SysfsWriter = {
    write: (file: string, value: string) => {
      const rel = path.relative(this.root, file);
      this.beforeWrite?.(rel, value);
      this.writes.push([rel, value]);
      this.apply(file, rel, value);
      this.afterWrite?.(rel, value);
    },
  };

  private apply(file: string, rel: string, value: string): void {
    {
      const sys = this.roots.sysfs;
      if (file === path.join(sys, 'bus/pci/drivers_probe')) {
        const bdf = value.trim();
        if (!existsSync(this.devDir(bdf))) throw errno('ENODEV', `no device ${bdf}`);
        if (this.driverOf(bdf) !== null || !this.probeAllowed(bdf)) return;
        const target = this.overrideOf(bdf) ?? this.defaults.get(bdf) ?? null;
        if (target && existsSync(path.join(sys, 'bus/pci/drivers', target))) {
          if (target === 'vfio-pci' && existsSync(path.join(this.devDir(bdf), 'vfio-dev'))) return; // vendor VFIO devices refuse vfio-pci
          this.bind(bdf, target);
        }
        return;
      }
      if (!existsSync(path.dirname(file))) throw errno('ENOENT', `no such file ${rel}`);
      const real = realpathSync(path.dirname(file));
      const driversDir = path.join(realpathSync(sys), 'bus/pci/drivers');
      if (path.dirname(real) === driversDir) {
        const driver = path.basename(real);
        const bdf = value.trim();
        const op = path.basename(file);
        if (!existsSync(this.devDir(bdf))) throw errno('ENODEV', `no device ${bdf}`);
        if (op === 'unbind') {
          if (this.driverOf(bdf) !== driver) throw errno('ENODEV', `${bdf} is not bound to ${driver}`);
          this.unbind(bdf);
        } else if (op === 'bind') {
          if (this.driverOf(bdf) !== null) throw errno('EBUSY', `${bdf} already bound`);
          if (!this.probeAllowed(bdf)) throw errno('EINVAL', 'VF autoprobe disabled');
          // NVIDIA vGPU VFs (and other vendor VFIO devices): vfio-pci's probe fails with -EINVAL.
          if (driver === 'vfio-pci' && existsSync(path.join(this.devDir(bdf), 'vfio-dev'))) throw errno('EINVAL', `vfio-pci probe of ${bdf} failed`);
          this.bind(bdf, driver);
        } else if (op === 'new_id') {
          throw new Error('new_id must never be used');
        }
        return;
      }
      const name = path.basename(file);
      if (!existsSync(file)) throw errno('ENOENT', `no such file ${rel}`);
      if (name === 'driver_override') {
        const v = value.trim();
        writeFileSync(file, `${v === '' ? '(null)' : v}\n`);
      } else if (name === 'sriov_drivers_autoprobe') {
        writeFileSync(file, `${value.trim() === '0' ? 0 : 1}\n`);
      } else if (name === 'sriov_numvfs') {
        this.setNumVfs(path.basename(path.dirname(file)), value);
      } else if (name === 'current_vgpu_type') {
        this.setVgpuType(path.basename(path.dirname(path.dirname(file))), value);
      } else {
        writeFileSync(file, value);
      }
    }
  }

  /**
   * The kernel's sriov_numvfs_store: the same number is a no-op, more than sriov_totalvfs is ERANGE, changing a
   * non-zero number other than to 0 is EBUSY; 0 removes every VF, N creates VFs 0..N-1 at PF + offset + i * stride,
   * each in its own IOMMU group, probed by the PF's driver only when sriov_drivers_autoprobe is 1.
   */
  private setNumVfs(pf: string, value: string): void {
    const want = Number(value.trim());
    const spec = this.specs.get(pf);
    if (!spec?.sriov || !/^\d+$/.test(value.trim())) throw errno('EINVAL', `sriov_numvfs: bad value '${value.trim()}' on ${pf}`);
    const now = Number(this.read(pf, 'sriov_numvfs'));
    if (want === now) return;
    if (want > spec.sriov.total) throw errno('ERANGE', `${pf} supports at most ${spec.sriov.total} VFs`);
    if (want !== 0 && now !== 0) throw errno('EBUSY', `${now} VFs already enabled on ${pf}. Disable before enabling ${want} VFs`);
    const pfDir = this.devDir(pf);
    if (want === 0) {
      for (const link of readdirSafe(pfDir).filter((n) => /^virtfn\d+$/.test(n))) {
        this.removeDevice(path.basename(readlinkSync(path.join(pfDir, link))));
        unlinkSync(path.join(pfDir, link));
      }
    } else {
      const autoprobe = this.read(pf, 'sriov_drivers_autoprobe') !== '0';
      const pfDriver = this.defaults.get(pf) ?? null;
      const { domain, rid } = routingIdOf(pf);
      for (let i = 0; i < want; i++) {
        const bdf = bdfOfRoutingId(domain, rid + (spec.sriov.offset ?? 1) + i * (spec.sriov.stride ?? 1));
        this.addDevice({
          bdf, vendor: spec.vendor, device: spec.sriov.vfDevice ?? spec.device, classCode: spec.classCode, group: this.nextGroup(), numa: spec.numa ?? -1,
          physfn: pf, bars: [[0, 0x4000]], resetMethods: ['flr'], driver: autoprobe ? pfDriver : null, defaultDriver: pfDriver,
        });
      }
    }
    writeFileSync(path.join(pfDir, 'sriov_numvfs'), `${want}\n`);
  }

  private nextGroup(): number {
    const groups = readdirSafe(path.join(this.roots.sysfs, 'kernel/iommu_groups')).map(Number);
    return Math.max(0, ...groups) + 1;
  }

  /** NVIDIA's current_vgpu_type store: 0 clears; an id must be creatable and the VF must have none selected. */
  private setVgpuType(bdf: string, value: string): void {
    const id = Number(value.trim());
    if (!/^\d+$/.test(value.trim())) throw errno('EINVAL', `current_vgpu_type: bad value '${value.trim()}' on ${bdf}`);
    const current = Number(this.read(bdf, 'nvidia/current_vgpu_type'));
    if (id !== 0) {
      if (!(this.vgpuTypes.get(bdf) ?? []).some(([t]) => t === id)) throw errno('EINVAL', `vGPU type ${id} is not creatable on ${bdf}`);
      if (current !== 0) throw errno('EBUSY', `${bdf} already has vGPU type ${current}`);
    }
    writeFileSync(path.join(this.devDir(bdf), 'nvidia/current_vgpu_type'), `${id}\n`);
  }

  /** A VfioProber that checks the fake tree the way opening the group and device would. */
  readonly prober: VfioProber = {
    probe: async (bdf: string) => {
      this.probed.push(bdf);
      const override = this.probeOverrides.get(bdf);
      if (override instanceof Error) throw override;
      const dev = readDevice(this.roots, bdf);
      if (!dev) throw errno('ENODEV', `no device ${bdf}`);
      if (dev.vfio.state !== 'vfio-pci' && dev.vfio.state !== 'vendor-vfio') throw errno('ENODEV', `${bdf} is not on a VFIO driver`);
      if (!dev.vfioGroupDev && !dev.vfioCdev) throw errno('ENOENT', 'no /dev/vfio node');
      return {
        groupViable: dev.vfio.groupViable,
        regions: dev.bars.map((b) => ({ index: b.index, size: b.size, flags: 7 })),
        irqs: [{ index: 2, count: 16, flags: 0 }],
        resetSupported: dev.resetMethods === null || dev.resetMethods.length > 0,
        ...override,
      };
    },
  };
}

function isLink(p: string): boolean {
  try {
    readlinkSync(p);
    return true;
  } catch {
    return false;
  }
}

function readdirSafe(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

function errno(code: string, message: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: ${message}`) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

/**
 * The standard host the tests use:
 *  - 0000:00:01.0  PCIe root port (bridge), group 1, alone
 *  - 0000:01:00.0  SR-IOV NVMe PF (15b3:6001, BlueField SNAP style) on nvme, group 2, 3 VFs (autoprobe on):
 *      0000:01:00.1 VF on nvme (group 3), 0000:01:00.2 VF unbound (group 4), 0000:01:00.3 VF on nvme (group 5)
 *  - 0000:02:00.0  GPU (1002:73bf) on amdgpu + 0000:02:00.1 HDMI audio on snd_hda_intel, both in group 6
 *  - 0000:03:00.0  bridge + 0000:04:00.0 NIC on mlx5_core (up) + 0000:04:00.1 NIC on mlx5_core (down), group 7
 *  - 0000:05:00.0  PF (10de:2236) on nvidia with 0000:05:00.4 VF on nvidia with vfio-dev/vfio0 (vendor VFIO), group 8,
 *                  an NVIDIA vGPU VF (creatable types 1155, 1156, 1161; none selected)
 *  - 0000:06:00.0  NVMe (144d:a80a) on nvme with nvme0n1p2 mounted on /, nvme0n1p3 as swap, group 9
 *  - 0000:07:00.0  NVMe on nvme whose nvme1n1 is held by dm-0, group 10
 *  - 0000:08:00.0  device with no IOMMU group
 */
export function standardHost(): FakeHost {
  const h = new FakeHost();
  h.addDevice({ bdf: '0000:00:01.0', vendor: '8086', device: '1901', classCode: '060400', driver: 'pcieport', group: 1 });
  h.addDevice({
    bdf: '0000:01:00.0', vendor: '15b3', device: '6001', classCode: '010802', driver: 'nvme', group: 2, numa: 0,
    sriov: { total: 8, num: 3, autoprobe: true }, bars: [[0, 0x4000]],
    namespaces: [{ name: 'nvme2n1', devno: '259:20' }],
  });
  h.addDevice({ bdf: '0000:01:00.1', vendor: '15b3', device: '6001', classCode: '010802', driver: 'nvme', group: 3, physfn: '0000:01:00.0', bars: [[0, 0x4000]], resetMethods: ['flr'], namespaces: [{ name: 'nvme3n1', devno: '259:30' }] });
  h.addDevice({ bdf: '0000:01:00.2', vendor: '15b3', device: '6001', classCode: '010802', driver: null, defaultDriver: 'nvme', group: 4, physfn: '0000:01:00.0', bars: [[0, 0x4000]], resetMethods: ['flr'] });
  h.addDevice({ bdf: '0000:01:00.3', vendor: '15b3', device: '6001', classCode: '010802', driver: 'nvme', group: 5, physfn: '0000:01:00.0', bars: [[0, 0x4000]], resetMethods: ['flr'] });
  h.addDevice({ bdf: '0000:02:00.0', vendor: '1002', device: '73bf', classCode: '030000', driver: 'amdgpu', group: 6, bars: [[0, 0x1000_0000], [2, 0x20_0000], [5, 0x10_0000]], drmCards: ['card0'] });
  h.addDevice({ bdf: '0000:02:00.1', vendor: '1002', device: 'ab28', classCode: '040300', driver: 'snd_hda_intel', group: 6, bars: [[0, 0x4000]] });
  h.addDevice({ bdf: '0000:03:00.0', vendor: '10b5', device: '8747', classCode: '060400', driver: 'pcieport', group: 7 });
  h.addDevice({ bdf: '0000:04:00.0', vendor: '15b3', device: '1017', classCode: '020000', driver: 'mlx5_core', group: 7, bars: [[0, 0x200_0000]], netIfs: [{ name: 'enp4s0f0', up: true }] });
  h.addDevice({ bdf: '0000:04:00.1', vendor: '15b3', device: '1017', classCode: '020000', driver: 'mlx5_core', group: 7, bars: [[0, 0x200_0000]], netIfs: [{ name: 'enp4s0f1', up: false }] });
  h.addDevice({ bdf: '0000:05:00.0', vendor: '10de', device: '2236', classCode: '030200', driver: 'nvidia', group: 11, sriov: { total: 16, num: 1, autoprobe: true, offset: 4 }, bars: [[0, 0x100_0000]] });
  h.addDevice({
    bdf: '0000:05:00.4', vendor: '10de', device: '2236', classCode: '030200', driver: 'nvidia', group: 8, physfn: '0000:05:00.0', vendorVfio: 0, bars: [[0, 0x100_0000]],
    vgpu: { creatable: [[1155, 'NVIDIA L40S-1B'], [1156, 'NVIDIA L40S-2B'], [1161, 'NVIDIA L40S-48Q']] },
  });
  h.addDevice({
    bdf: '0000:06:00.0', vendor: '144d', device: 'a80a', classCode: '010802', driver: 'nvme', group: 9, bars: [[0, 0x4000]],
    namespaces: [{ name: 'nvme0n1', devno: '259:0', partitions: [{ name: 'nvme0n1p1', devno: '259:1' }, { name: 'nvme0n1p2', devno: '259:2' }, { name: 'nvme0n1p3', devno: '259:3' }] }],
  });
  h.mount('259:2', '/');
  h.addSwap('/dev/nvme0n1p3');
  h.addDevice({ bdf: '0000:07:00.0', vendor: '144d', device: 'a80a', classCode: '010802', driver: 'nvme', group: 10, bars: [[0, 0x4000]], namespaces: [{ name: 'nvme1n1', devno: '259:10', holders: ['dm-0'] }] });
  h.addDevice({ bdf: '0000:08:00.0', vendor: '8086', device: '2922', classCode: '010601', driver: 'ahci', group: null, bars: [[5, 0x800]] });
  return h;
}
