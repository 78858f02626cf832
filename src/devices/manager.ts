/**
 * Prepare and release devices for VFIO passthrough, with claims that survive restarts.
 *
 * prepare(bdf, owner): checks (exists, not a bridge, has an IOMMU group, not claimed by another VM, group viable or
 * whole-group asked for, not in use on the host unless forced), records claims, then binds with driver_override +
 * unbind + drivers_probe (never new_id), turns sriov_drivers_autoprobe off on the PF of a VF, waits for
 * /dev/vfio/<group>, and proves the device usable through the VfioProber. Any failure undoes every change in
 * reverse order. release(bdf, owner) refuses while a process holds the group or cdev, then restores the original
 * driver and driver_override exactly. reconcile() repairs what interrupted operations left behind.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { type Claim, ClaimConflictError, type ClaimStore, type NewClaim } from './claims.js';
import {
  bindingOnly,
  findHolders,
  listDevices,
  onVfioDriver,
  type PciDevice,
  readDevice,
  readHostContext,
  VFIO_PCI,
  type VfioHolder,
} from './discovery.js';
import { driversProbeFile, type HostRoots, pciDeviceDir, type SysfsWriter, vfioGroupPath } from './host.js';
import { slotOf } from '../util/pci-address.js';
import type { VfioProbeResult, VfioProber } from './probe.js';
import { currentVgpuTypeFile, NO_VGPU_TYPE, readVgpuState, type VgpuState } from './vgpu.js';
import { virtfnBdfs } from './sriov.js';
import { type ErrorCode, type ErrorDetails, VfiodError, type Violation } from '../util/errors.js';
import { sleep } from '../util/sleep.js';

export type DeviceErrorCode = ErrorCode;

/** A passthrough-manager failure; `code` maps onto a gRPC status in the control API. */
export class DeviceError extends VfiodError {}

export interface ManagerOptions {
  roots: HostRoots;
  writer: SysfsWriter;
  prober: VfioProber;
  claims: ClaimStore;
  /** How long prepare waits for /dev/vfio/<group> after binding (default 5000 ms). */
  vfioTimeoutMs?: number;
  /** Poll interval for waits (default 50 ms). */
  pollMs?: number;
}

export interface PrepareOptions {
  /** Prepare even though the device is in use on the host (or has no reset); the result lists what was overridden. */
  force?: boolean;
  /** Bind every endpoint of the IOMMU group that is on a host driver (bridges are never bound). */
  wholeGroup?: boolean;
}

export interface PreparedDevice {
  bdf: string;
  mode: Claim['mode'];
  originalDriver: string | null;
  originalOverride: string | null;
  companion: boolean;
}

export interface PrepareResult {
  bdf: string;
  owner: string;
  /** False when the device was already prepared for this owner (idempotent repeat). */
  changed: boolean;
  devices: PreparedDevice[];
  iommuGroup: number | null;
  vfioGroupDev: string | null;
  vfioCdev: string | null;
  /** What a forced prepare overrode. */
  overridden: string[];
  warnings: string[];
  probe: VfioProbeResult | null;
}

export interface ReleaseOptions {
  /** Wait up to this long for VMMs to close the group/cdev (default 0: refuse at once). */
  waitMs?: number;
}

export interface ReleaseResult {
  bdf: string;
  owner: string;
  devices: Array<{ bdf: string; restoredDriver: string | null; restoredOverride: string | null; gone: boolean }>;
  autoprobeRestored: string[];
}

export interface VgpuTypesResult extends VgpuState {
  bdf: string;
  /** The VF's claim owner, if any. */
  owner: string | null;
}

export interface VgpuChangeResult {
  bdf: string;
  owner: string;
  /** The profile selected before (NO_VGPU_TYPE: none) and now. */
  previous: number;
  current: number;
  /** False when the VF already had the asked-for profile. */
  changed: boolean;
  /** True when this change claimed the VF for the owner (release gives back the original profile). */
  claimed: boolean;
}

export interface CreateVfsOptions {
  /** How long to wait for the VFs to appear after writing sriov_numvfs (default: the VFIO node timeout). */
  timeoutMs?: number;
}

export interface CreateVfsResult {
  pf: string;
  owner: string;
  numVfs: number;
  /** VFs that existed, were unused, and were destroyed to create the new ones. */
  replaced: string[];
  /** Each new VF, prepared (bound to vfio-pci and claimed) for the owner. */
  vfs: PrepareResult[];
  /** sriov_drivers_autoprobe was turned off here; the release of the last of these VFs turns it back on. */
  autoprobeTurnedOff: boolean;
}

export interface RemoveVfsResult {
  pf: string;
  removed: string[];
  autoprobeRestored: boolean;
}

export interface ReconcileEntry {
  bdf: string;
  action: 'ok' | 'repaired' | 'removed' | 'attention';
  detail: string;
}

/** One undo step of a prepare. */
interface Undo {
  what: string;
  run(): void;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class DeviceManager {
  private readonly roots: HostRoots;
  private readonly writer: SysfsWriter;
  private readonly prober: VfioProber;
  readonly claims: ClaimStore;
  private readonly vfioTimeoutMs: number;
  private readonly pollMs: number;

  constructor(options: ManagerOptions) {
    this.roots = options.roots;
    this.writer = options.writer;
    this.prober = options.prober;
    this.claims = options.claims;
    this.vfioTimeoutMs = options.vfioTimeoutMs ?? 5000;
    this.pollMs = options.pollMs ?? 50;
  }

  private dir(bdf: string): string {
    return pciDeviceDir(this.roots, bdf);
  }

  private read(bdf: string): PciDevice | undefined {
    return readDevice(this.roots, bdf, readHostContext(this.roots));
  }

  /** A function's NUMA node and BARs as sysfs gives them (what the VM configuration sizes and places by). */
  functionFacts(bdf: string): { numaNode: number | null; bars: PciDevice['bars'] } | undefined {
    const dev = readDevice(this.roots, bdf, bindingOnly());
    return dev && { numaNode: dev.numaNode, bars: dev.bars };
  }

  /**
   * A function's VFIO interfaces as the hypervisor configuration needs them (src/hypervisor/vfio-backend.ts): its
   * cdev, whether its group node exists, a vendor VFIO driver it stays on, and whether the host has /dev/iommu.
   */
  vfioFacts(bdf: string): { cdev: string | null; groupNode: boolean; vendorDriver: string | null; iommufdHost: boolean } | undefined {
    const dev = readDevice(this.roots, bdf, bindingOnly());
    return (
      dev && {
        cdev: dev.vfioCdev,
        groupNode: dev.vfioGroupDev !== null,
        vendorDriver: dev.vfio.state === 'vendor-vfio' ? dev.driver : null,
        iommufdHost: existsSync(path.join(this.roots.dev, 'iommu')),
      }
    );
  }

  private write(file: string, value: string): void {
    this.writer.write(file, value);
  }

  private vfioPaths(devices: Array<{ iommuGroup: number | null; vfioCdev?: string | null }>): string[] {
    const paths = new Set<string>();
    for (const d of devices) {
      if (d.iommuGroup !== null) paths.add(vfioGroupPath(this.roots, d.iommuGroup));
      if (d.vfioCdev) paths.add(d.vfioCdev);
    }
    return [...paths];
  }

  holders(devices: Array<{ iommuGroup: number | null; vfioCdev?: string | null }>): VfioHolder[] {
    return findHolders(this.roots, this.vfioPaths(devices));
  }

  /** Restores a device's binding to `driver` and its driver_override to `override`, exactly. */
  restoreBinding(bdf: string, driver: string | null, override: string | null): void {
    const dir = this.dir(bdf);
    const current = readDevice(this.roots, bdf, bindingOnly());
    if (!current) throw new DeviceError('NOT_FOUND', `${bdf} is gone`, { reason: 'DEVICE_NOT_FOUND', bdf });
    if (current.driver !== null && current.driver !== driver) this.write(path.join(dir, 'driver/unbind'), bdf);
    if (driver !== null && current.driver !== driver) {
      // driver_override naming the original driver makes drivers_probe bind exactly it, also for VFs whose PF has
      // sriov_drivers_autoprobe=0.
      this.write(path.join(dir, 'driver_override'), driver);
      this.write(driversProbeFile(this.roots), bdf);
    }
    this.write(path.join(dir, 'driver_override'), override ?? '\n');
    const after = readDevice(this.roots, bdf, bindingOnly());
    if (!after) throw new DeviceError('NOT_FOUND', `${bdf} vanished while being restored`, { reason: 'DEVICE_NOT_FOUND', bdf });
    if (after.driver !== driver) {
      throw new DeviceError('INTERNAL', `${bdf} did not rebind to ${driver ?? 'no driver'} (driver is ${after.driver ?? 'none'})`, {
        reason: 'REBIND_FAILED',
        bdf,
        driver: after.driver ?? '',
      });
    }
  }

  async prepare(bdfIn: string, owner: string, options: PrepareOptions = {}): Promise<PrepareResult> {
    const bdf = bdfIn;
    if (!owner) throw new DeviceError('INVALID_ARGUMENT', 'an owner (VM name) is required', { reason: 'FIELD_REQUIRED', field: 'owner' });
    const dev = this.read(bdf);
    if (!dev) throw new DeviceError('NOT_FOUND', `no PCI device ${bdf}`, { reason: 'DEVICE_NOT_FOUND', bdf });
    if (dev.kind === 'bridge') throw new DeviceError('FAILED_PRECONDITION', `${bdf} is a bridge: bridges are never bound to VFIO`, { reason: 'DEVICE_IS_BRIDGE', bdf });
    if (dev.iommuGroup === null) {
      throw new DeviceError('FAILED_PRECONDITION', `${bdf} has no IOMMU group: enable the IOMMU (intel_iommu=on / amd_iommu) to pass it through`, {
        reason: 'DEVICE_NO_IOMMU_GROUP',
        bdf,
      });
    }

    const existing = this.claims.get(bdf);
    if (existing) {
      if (existing.owner !== owner) {
        throw new DeviceError('ALREADY_EXISTS', `${bdf} is claimed by ${existing.owner} (${existing.state})`, { reason: 'DEVICE_CLAIMED_BY_OTHER_VM', bdf, owner: existing.owner });
      }
      if (existing.state === 'prepared' && onVfioDriver(this.roots, bdf) && (dev.vfioGroupDev || dev.vfioCdev)) {
        const set = this.claims.list().filter((c) => c.primary === existing.primary);
        return {
          bdf,
          owner,
          changed: false,
          devices: set.map((c) => ({ bdf: c.bdf, mode: c.mode, originalDriver: c.originalDriver, originalOverride: c.originalOverride, companion: c.bdf !== c.primary })),
          iommuGroup: dev.iommuGroup,
          vfioGroupDev: dev.vfioGroupDev,
          vfioCdev: dev.vfioCdev,
          overridden: [],
          warnings: [],
          probe: null,
        };
      }
      throw new DeviceError('FAILED_PRECONDITION', `${bdf} has a claim for ${owner} in state ${existing.state} and is on ${dev.driver ?? 'no driver'}: run 'vfiod devices reconcile' (docs/passthrough.md)`, {
        reason: 'CLAIM_INCONSISTENT',
        bdf,
        owner,
        claimState: existing.state,
        driver: dev.driver ?? '',
      });
    }

    // Every failed precondition of the group and the host is collected, so one answer lists all there is to fix; the
    // first decides the reason (in this order: group held, member claimed, group not viable, in use on the host).
    const group = dev.iommuGroup;
    const violations: Array<{ message: string; details: ErrorDetails & { violations: Violation[] } }> = [];
    const violation = (reason: Violation['type'], subject: string, message: string, facts: Record<string, unknown>): void => {
      violations.push({ message, details: { reason, bdf, iommuGroup: group, ...facts, violations: [{ type: reason, subject, description: message }] } });
    };

    // Another VMM holding the group means another VM uses a member: binding would break it or fail.
    const groupHolders = this.holders([dev]);
    if (groupHolders.length > 0) {
      violation('IOMMU_GROUP_HELD', `iommu-group:${group}`, `IOMMU group ${group} is open in ${groupHolders.map((h) => `pid ${h.pid} (${h.comm ?? '?'})`).join(', ')}: another VM uses it`, {
        holderPid: groupHolders.map((h) => h.pid),
        holderComm: groupHolders.map((h) => h.comm ?? '?'),
      });
    }

    // Which devices this prepare binds: the device, GPU companions in its slot, or the whole group when asked.
    const set: Array<{ dev: PciDevice; companion: boolean }> = [{ dev, companion: false }];
    const notViable: string[] = [];
    for (const member of dev.groupMembers) {
      if (member === bdf) continue;
      const m = this.read(member);
      if (!m || m.kind === 'bridge') continue;
      const claim = this.claims.get(member);
      if (claim && claim.owner !== owner) {
        violation('IOMMU_GROUP_MEMBER_CLAIMED', `pci-device:${member}`, `IOMMU group ${group} member ${member} is claimed by VM ${claim.owner}: a group can only go to one VM`, {
          member,
          owner: claim.owner,
        });
        continue;
      }
      if (claim || m.driver === null || onVfioDriver(this.roots, member)) continue;
      const companion = dev.kind === 'display' && slotOf(member) === slotOf(bdf);
      if (companion || options.wholeGroup) set.push({ dev: m, companion: true });
      else notViable.push(`${member} (${m.kind}, on ${m.driver})`);
    }
    if (notViable.length > 0) {
      violation(
        'IOMMU_GROUP_NOT_VIABLE',
        `iommu-group:${group}`,
        `IOMMU group ${group} is not viable: ${notViable.join(', ')} would stay on host drivers; pass --whole-group to prepare them too`,
        { members: notViable },
      );
    }

    const overridden: string[] = [];
    const warnings: string[] = [];
    const inUse = set.flatMap(({ dev: d }) => d.hostUse.filter((u) => u.blocking).map((u) => `${d.bdf}: ${u.detail}`));
    if (inUse.length > 0) {
      if (!options.force) violation('DEVICE_IN_USE', `pci-device:${bdf}`, `${bdf} is in use on the host: ${inUse.join('; ')} (--force overrides)`, { inUse });
      else overridden.push(...inUse);
    }
    const [first, ...more] = violations;
    if (first) {
      // Each violation of a reason the first has too (a second claimed member) adds to the list, not the metadata.
      throw new DeviceError('FAILED_PRECONDITION', [first.message, ...more.map((v) => v.message)].join('; and '), {
        ...Object.assign({}, ...more.reverse().map((v) => v.details)),
        ...first.details,
        violations: violations.flatMap((v) => v.details.violations),
      });
    }
    for (const { dev: d } of set) {
      for (const u of d.hostUse.filter((x) => !x.blocking)) warnings.push(`${d.bdf}: ${u.detail}`);
      if (d.resetMethods !== null && d.resetMethods.length === 0) warnings.push(`${d.bdf}: sysfs lists no reset method`);
    }

    // VFs about to be rebound: their PF's sriov_drivers_autoprobe goes off (keeps host drivers off new VFs). When an
    // earlier prepare already turned it off, this claim shares that record so the last release turns it back on.
    const vfPfs = [...new Set(set.filter(({ dev: d }) => d.vfio.state !== 'vfio-pci' && d.vfio.state !== 'vendor-vfio').map(({ dev: d }) => d.physfn).filter((p): p is string => p !== null))];
    const pfs = vfPfs.filter((pf) => this.read(pf)?.sriov?.driversAutoprobe === true);
    const inheritedPf = vfPfs.find((pf) => !pfs.includes(pf) && this.claims.list().some((c) => c.autoprobePf === pf)) ?? null;

    const claims: NewClaim[] = set.map(({ dev: d }) => ({
      bdf: d.bdf,
      owner,
      primary: bdf,
      mode: d.vfio.state === 'vfio-pci' || d.vfio.state === 'vendor-vfio' ? 'as-is' : 'vfio-pci',
      state: 'preparing',
      originalDriver: d.driver,
      originalOverride: d.driverOverride,
      iommuGroup: d.iommuGroup,
      autoprobePf: d.bdf === bdf ? inheritedPf : null,
      note: d.vfio.state === 'vendor-vfio' ? `on vendor VFIO driver ${d.driver}; not rebound` : d.vfio.state === 'vfio-pci' ? 'was already on vfio-pci' : null,
    }));
    try {
      // Written (and synced) before the first sysfs change: a crash never leaves a device on vfio-pci unrecorded.
      this.claims.insert(claims);
    } catch (error) {
      if (error instanceof ClaimConflictError) throw new DeviceError('ALREADY_EXISTS', error.message, { reason: 'DEVICE_CLAIMED_BY_OTHER_VM', bdf });
      throw error;
    }

    const undo: Undo[] = [];
    try {
      for (const pf of pfs) {
        const file = path.join(this.dir(pf), 'sriov_drivers_autoprobe');
        undo.push({ what: `restore sriov_drivers_autoprobe=1 on ${pf}`, run: () => this.write(file, '1') });
        this.write(file, '0');
        this.claims.update(bdf, { autoprobePf: pf });
      }
      for (const claim of claims.filter((c) => c.mode === 'vfio-pci')) {
        const dir = this.dir(claim.bdf);
        undo.push({
          what: `restore ${claim.bdf} to ${claim.originalDriver ?? 'no driver'} (override ${claim.originalOverride ?? 'none'})`,
          run: () => this.restoreBinding(claim.bdf, claim.originalDriver, claim.originalOverride),
        });
        this.write(path.join(dir, 'driver_override'), VFIO_PCI);
        if (claim.originalDriver !== null) this.write(path.join(dir, 'driver/unbind'), claim.bdf);
        this.write(driversProbeFile(this.roots), claim.bdf);
        const now = readDevice(this.roots, claim.bdf, bindingOnly());
        if (!now) throw new DeviceError('NOT_FOUND', `${claim.bdf} disappeared while being bound`, { reason: 'DEVICE_NOT_FOUND', bdf: claim.bdf });
        if (now.driver !== VFIO_PCI) {
          throw new DeviceError('INTERNAL', `${claim.bdf} did not bind to vfio-pci (driver: ${now.driver ?? 'none'}); is vfio-pci available?`, {
            reason: 'VFIO_BIND_FAILED',
            bdf: claim.bdf,
            driver: now.driver ?? '',
          });
        }
      }

      const groupDev = vfioGroupPath(this.roots, dev.iommuGroup);
      const deadline = Date.now() + this.vfioTimeoutMs;
      for (;;) {
        const current = this.read(bdf);
        if (!current) throw new DeviceError('NOT_FOUND', `${bdf} disappeared while waiting for ${groupDev}`, { reason: 'DEVICE_NOT_FOUND', bdf });
        if (existsSync(groupDev) || (current.vfioCdev && existsSync(current.vfioCdev))) break;
        if (Date.now() >= deadline) {
          throw new DeviceError('UNAVAILABLE', `${groupDev} did not appear within ${this.vfioTimeoutMs} ms`, {
            reason: 'VFIO_NODE_TIMEOUT',
            bdf,
            path: groupDev,
            timeoutMs: this.vfioTimeoutMs,
          });
        }
        await sleep(this.pollMs);
      }

      let probe: VfioProbeResult | null = null;
      for (const { dev: d } of set) {
        let result: VfioProbeResult;
        try {
          result = await this.prober.probe(d.bdf);
        } catch (error) {
          throw new DeviceError('INTERNAL', `VFIO probe of ${d.bdf} failed: ${describe(error)}`, { reason: 'VFIO_PROBE_FAILED', bdf: d.bdf });
        }
        if (!result.groupViable) {
          throw new DeviceError('FAILED_PRECONDITION', `VFIO reports IOMMU group ${d.iommuGroup} not viable for ${d.bdf}`, {
            reason: 'IOMMU_GROUP_NOT_VIABLE',
            bdf: d.bdf,
            iommuGroup: d.iommuGroup,
          });
        }
        if (result.regions.length === 0) throw new DeviceError('INTERNAL', `VFIO enumerated no regions for ${d.bdf}`, { reason: 'VFIO_PROBE_FAILED', bdf: d.bdf });
        if (!result.resetSupported) {
          if (!options.force) {
            throw new DeviceError('FAILED_PRECONDITION', `${d.bdf} has no usable reset through VFIO: state would leak between VMs (--force overrides)`, {
              reason: 'DEVICE_NO_RESET',
              bdf: d.bdf,
            });
          }
          overridden.push(`${d.bdf}: no usable reset`);
        }
        if (d.bdf === bdf) probe = result;
      }

      const note = overridden.length ? `forced over: ${overridden.join('; ')}` : undefined;
      for (const c of claims) this.claims.update(c.bdf, { state: 'prepared', ...(note ? { note: [c.note, note].filter(Boolean).join('; ') } : {}) });
      const after = this.read(bdf);
      return {
        bdf,
        owner,
        changed: true,
        devices: claims.map((c) => ({ bdf: c.bdf, mode: c.mode, originalDriver: c.originalDriver, originalOverride: c.originalOverride, companion: c.bdf !== bdf })),
        iommuGroup: dev.iommuGroup,
        vfioGroupDev: after?.vfioGroupDev ?? null,
        vfioCdev: after?.vfioCdev ?? null,
        overridden,
        warnings,
        probe,
      };
    } catch (error) {
      const rollback = this.rollback(undo);
      for (const c of claims) {
        const gone = !existsSync(this.dir(c.bdf));
        if (rollback.failed.length === 0 || gone) this.claims.remove(c.bdf, gone ? 'device gone during prepare' : 'prepare rolled back');
        else this.claims.update(c.bdf, { state: 'failed', note: `rollback incomplete: ${rollback.failed.join('; ')}` });
      }
      const cause = describe(error);
      const summary = rollback.failed.length
        ? `rollback incomplete (${rollback.failed.join('; ')}); the claim is kept as 'failed': see docs/passthrough.md`
        : `rolled back ${rollback.done.length} change(s)`;
      // The cause's reason and facts go on: a caller switches on why it failed, not on the rollback.
      throw new DeviceError(error instanceof VfiodError ? error.code : 'INTERNAL', `prepare ${bdf} failed: ${cause}; ${summary}`, {
        ...(error instanceof VfiodError ? error.details : { reason: 'INTERNAL_ERROR', bdf }),
        rolledBack: rollback.done,
        rollbackFailed: rollback.failed,
        overridden,
      });
    }
  }

  private rollback(undo: Undo[]): { done: string[]; failed: string[] } {
    const done: string[] = [];
    const failed: string[] = [];
    for (const step of [...undo].reverse()) {
      try {
        step.run();
        done.push(step.what);
      } catch (error) {
        if (error instanceof DeviceError && error.code === 'NOT_FOUND') done.push(`${step.what}: device gone, nothing to restore`);
        else failed.push(`${step.what}: ${describe(error)}`);
      }
    }
    return { done, failed };
  }

  async release(bdf: string, owner: string, options: ReleaseOptions = {}): Promise<ReleaseResult> {
    const claim = this.claims.get(bdf);
    if (!claim) throw new DeviceError('NOT_FOUND', `${bdf} is not claimed by vfiod`, { reason: 'CLAIM_NOT_FOUND', bdf });
    if (claim.owner !== owner) {
      throw new DeviceError('FAILED_PRECONDITION', `${bdf} is claimed by ${claim.owner}, not ${owner}`, { reason: 'DEVICE_CLAIMED_BY_OTHER_VM', bdf, owner: claim.owner });
    }
    const set = this.claims.list().filter((c) => c.primary === claim.primary);
    const devs = set.map((c) => ({ iommuGroup: c.iommuGroup, vfioCdev: this.read(c.bdf)?.vfioCdev ?? null }));
    const deadline = Date.now() + (options.waitMs ?? 0);
    for (;;) {
      const holders = this.holders(devs);
      if (holders.length === 0) break;
      if (Date.now() >= deadline) {
        throw new DeviceError(
          'UNAVAILABLE',
          `${bdf} is still held by ${holders.map((h) => `pid ${h.pid} (${h.comm ?? '?'}) via ${h.path}`).join(', ')}: detach it from the VM first${options.waitMs ? ` (waited ${options.waitMs} ms)` : ''}`,
          {
            reason: 'DEVICE_STILL_HELD',
            bdf,
            holderPid: holders.map((h) => h.pid),
            holderComm: holders.map((h) => h.comm ?? '?'),
            holderPath: holders.map((h) => h.path),
          },
        );
      }
      await sleep(this.pollMs);
    }
    const result: ReleaseResult = { bdf, owner, devices: [], autoprobeRestored: [] };
    // Companions first, the primary last (reverse of prepare).
    for (const c of [...set].sort((a, b) => Number(a.bdf === a.primary) - Number(b.bdf === b.primary))) {
      this.claims.update(c.bdf, { state: 'releasing' });
      const gone = !existsSync(this.dir(c.bdf));
      if (!gone && (c.mode === 'vfio-pci' || c.originalVgpuType !== null)) {
        try {
          if (c.originalVgpuType !== null) this.restoreVgpuType(c.bdf, c.originalVgpuType);
          if (c.mode === 'vfio-pci') this.restoreBinding(c.bdf, c.originalDriver, c.originalOverride);
        } catch (error) {
          this.claims.update(c.bdf, { state: 'failed', note: `release failed: ${describe(error)}` });
          throw new DeviceError('INTERNAL', `release ${c.bdf} failed: ${describe(error)}; the claim is kept as 'failed' (docs/passthrough.md)`, {
            ...(error instanceof VfiodError ? error.details : {}),
            reason: 'REBIND_FAILED',
            bdf: c.bdf,
          });
        }
      }
      result.devices.push({ bdf: c.bdf, restoredDriver: c.mode === 'vfio-pci' ? c.originalDriver : null, restoredOverride: c.mode === 'vfio-pci' ? c.originalOverride : null, gone });
      this.claims.remove(c.bdf, gone ? 'released (device gone)' : 'released');
    }
    for (const c of set) if (c.autoprobePf) result.autoprobeRestored.push(...this.restoreAutoprobe(c.autoprobePf));
    return result;
  }

  /** Turns sriov_drivers_autoprobe back on for `pf` once no claim remains on any of its VFs. */
  private restoreAutoprobe(pf: string): string[] {
    const pfDev = this.read(pf);
    if (!pfDev || pfDev.sriov?.driversAutoprobe !== false) return [];
    const stillClaimed = this.claims.list().some((c) => pfDev.virtfns.includes(c.bdf) || c.autoprobePf === pf);
    if (stillClaimed) return [];
    this.write(path.join(this.dir(pf), 'sriov_drivers_autoprobe'), '1');
    return [pf];
  }

  // ---- NVIDIA vGPU profiles (src/devices/vgpu.ts) ----

  private vgpuOf(bdf: string): { dev: PciDevice; state: VgpuState } {
    const dev = this.read(bdf);
    if (!dev) throw new DeviceError('NOT_FOUND', `no PCI device ${bdf}`, { reason: 'DEVICE_NOT_FOUND', bdf });
    const state = readVgpuState(this.roots, bdf);
    if (!state) {
      throw new DeviceError('FAILED_PRECONDITION', `${bdf} is not an NVIDIA vGPU VF: it has no nvidia/current_vgpu_type (create the VFs on an SR-IOV vGPU GPU first)`, {
        reason: 'VGPU_NOT_SUPPORTED',
        bdf,
      });
    }
    return { dev, state };
  }

  /** The vGPU profile a VF has and those it can take now. */
  vgpuTypes(bdf: string): VgpuTypesResult {
    const { state } = this.vgpuOf(bdf);
    return { bdf, ...state, owner: this.claims.get(bdf)?.owner ?? null };
  }

  /**
   * Refuses a change that would pull `dev` from under a guest: an attachment record names it, or a process (a VMM)
   * holds its VFIO group or cdev.
   */
  private refuseWhileAttached(dev: PciDevice, what: string): void {
    const vms = this.claims.vmsAttaching(dev.bdf);
    const holders = this.holders([dev]);
    if (vms.length === 0 && holders.length === 0) return;
    const by = [...vms.map((vm) => `VM ${vm}`), ...holders.map((h) => `pid ${h.pid} (${h.comm ?? '?'}) via ${h.path}`)];
    throw new DeviceError('FAILED_PRECONDITION', `${what} refused: ${dev.bdf} is attached (${by.join(', ')}): detach it first`, {
      reason: 'DEVICE_ATTACHED',
      bdf: dev.bdf,
      attachedTo: vms,
      holderPid: holders.map((h) => h.pid),
      holderComm: holders.map((h) => h.comm ?? '?'),
    });
  }

  /** Selects vGPU profile `typeId` on a VF for `owner`, claiming the VF (as it is) when nobody has. */
  setVgpuType(bdf: string, owner: string, typeId: number): VgpuChangeResult {
    return this.changeVgpuType(bdf, owner, typeId);
  }

  /** Clears the VF's vGPU profile (current_vgpu_type = 0). */
  clearVgpuType(bdf: string, owner: string): VgpuChangeResult {
    return this.changeVgpuType(bdf, owner, NO_VGPU_TYPE);
  }

  private changeVgpuType(bdf: string, owner: string, target: number): VgpuChangeResult {
    if (!owner) throw new DeviceError('INVALID_ARGUMENT', 'an owner (VM name) is required', { reason: 'FIELD_REQUIRED', field: 'owner' });
    const action = target === NO_VGPU_TYPE ? `clearing the vGPU profile of ${bdf}` : `setting vGPU profile ${target} on ${bdf}`;
    const { dev, state } = this.vgpuOf(bdf);
    if (target !== NO_VGPU_TYPE && target !== state.current && !state.creatable.some((t) => t.id === target)) {
      const creatable = state.creatable.map((t) => `${t.id} (${t.name})`);
      throw new DeviceError('FAILED_PRECONDITION', `${bdf} cannot take vGPU profile ${target} now; creatable: ${creatable.join(', ') || 'none'}`, {
        reason: 'VGPU_TYPE_NOT_CREATABLE',
        bdf,
        vgpuType: target,
        creatable,
      });
    }
    const claim = this.claims.get(bdf);
    if (claim && claim.owner !== owner) {
      throw new DeviceError('FAILED_PRECONDITION', `${action} refused: ${bdf} is claimed by ${claim.owner}, not ${owner}`, { reason: 'DEVICE_CLAIMED_BY_OTHER_VM', bdf, owner: claim.owner });
    }
    if (claim && claim.state !== 'prepared') {
      throw new DeviceError('FAILED_PRECONDITION', `${bdf} has a claim for ${owner} in state ${claim.state}: run 'vfiod devices reconcile' (docs/passthrough.md)`, {
        reason: 'CLAIM_INCONSISTENT',
        bdf,
        owner,
        claimState: claim.state,
        driver: dev.driver ?? '',
      });
    }
    this.refuseWhileAttached(dev, action);
    const unchanged = { bdf, owner, previous: state.current, current: state.current, changed: false, claimed: false };
    if (state.current === target) return unchanged;

    // The claim (with the profile to give back) is committed before the first write, as prepare does.
    const claimed = !claim && target !== NO_VGPU_TYPE;
    if (claimed) {
      this.claims.insert([{
        bdf, owner, primary: bdf, mode: 'as-is', state: 'preparing', originalDriver: dev.driver, originalOverride: dev.driverOverride,
        iommuGroup: dev.iommuGroup, autoprobePf: null, note: `vGPU profile set by vfiod (was ${state.current})`, originalVgpuType: state.current,
      }]);
    } else if (claim && claim.originalVgpuType === null) {
      this.claims.update(bdf, { originalVgpuType: state.current });
    }
    const undo: Undo[] = [];
    try {
      this.writeVgpuType(bdf, state.current, target, undo);
      if (claimed) this.claims.update(bdf, { state: 'prepared' });
      return { ...unchanged, current: target, changed: true, claimed };
    } catch (error) {
      const rollback = this.rollback(undo);
      if (claimed && rollback.failed.length === 0) this.claims.remove(bdf, 'vGPU profile change rolled back');
      else if (claimed) this.claims.update(bdf, { state: 'failed', note: `rollback incomplete: ${rollback.failed.join('; ')}` });
      else if (claim && claim.originalVgpuType === null && rollback.failed.length === 0) this.claims.update(bdf, { originalVgpuType: null });
      const summary = rollback.failed.length ? `rollback incomplete (${rollback.failed.join('; ')})` : `rolled back ${rollback.done.length} change(s)`;
      throw new DeviceError(error instanceof VfiodError ? error.code : 'INTERNAL', `${action} failed: ${describe(error)}; ${summary}`, {
        ...(error instanceof VfiodError ? error.details : { reason: 'VGPU_TYPE_NOT_APPLIED', bdf, vgpuType: target }),
        rolledBack: rollback.done,
        rollbackFailed: rollback.failed,
      });
    }
  }

  /**
   * Moves current_vgpu_type from `from` to `to`, pushing an undo per write: a selected profile is cleared before
   * another is selected (the driver takes a profile only on a VF without one). Checks the driver reads back `to`.
   */
  private writeVgpuType(bdf: string, from: number, to: number, undo: Undo[]): void {
    const file = currentVgpuTypeFile(this.roots, bdf);
    const write = (value: number, back: number): void => {
      try {
        this.write(file, `${value}\n`);
      } catch (error) {
        throw new DeviceError('INTERNAL', `the driver refused current_vgpu_type=${value} on ${bdf}: ${describe(error)}`, {
          reason: 'VGPU_TYPE_NOT_APPLIED',
          bdf,
          vgpuType: value,
          current: readVgpuState(this.roots, bdf)?.current ?? NO_VGPU_TYPE,
        });
      }
      undo.push({ what: `current_vgpu_type back to ${back} on ${bdf}`, run: () => this.write(file, `${back}\n`) });
    };
    if (from !== NO_VGPU_TYPE && to !== NO_VGPU_TYPE) write(NO_VGPU_TYPE, from);
    write(to, from !== NO_VGPU_TYPE && to !== NO_VGPU_TYPE ? NO_VGPU_TYPE : from);
    const now = readVgpuState(this.roots, bdf)?.current ?? NO_VGPU_TYPE;
    if (now !== to) {
      throw new DeviceError('INTERNAL', `${bdf} reads back vGPU profile ${now} after current_vgpu_type=${to}`, { reason: 'VGPU_TYPE_NOT_APPLIED', bdf, vgpuType: to, current: now });
    }
  }

  /** Gives a VF back the vGPU profile it had before vfiod changed it. */
  private restoreVgpuType(bdf: string, original: number): void {
    const state = readVgpuState(this.roots, bdf);
    if (!state || state.current === original) return;
    this.writeVgpuType(bdf, state.current, original, []);
  }

  // ---- SR-IOV: creating VFs (src/devices/sriov.ts) ----

  private sriovPf(pf: string): PciDevice & { sriov: NonNullable<PciDevice['sriov']> } {
    const dev = this.read(pf);
    if (!dev) throw new DeviceError('NOT_FOUND', `no PCI device ${pf}`, { reason: 'DEVICE_NOT_FOUND', bdf: pf });
    if (!dev.sriov) throw new DeviceError('FAILED_PRECONDITION', `${pf} has no SR-IOV capability (no sriov_totalvfs)`, { reason: 'SRIOV_NOT_SUPPORTED', bdf: pf });
    return dev as PciDevice & { sriov: NonNullable<PciDevice['sriov']> };
  }

  /** Refuses when the PF is claimed, or any existing VF of it is claimed, attached, held by a VMM or in use on the host. */
  private refuseBusyVfs(pf: PciDevice, what: string): void {
    const busy: string[] = [];
    // A PF given to a VM is the VM's: its SR-IOV configuration is not the host's to change.
    const pfClaim = this.claims.get(pf.bdf);
    if (pfClaim) busy.push(`the PF ${pf.bdf} itself is claimed by ${pfClaim.owner}`);
    for (const vf of pf.virtfns) {
      const dev = this.read(vf);
      if (!dev) continue;
      const claim = this.claims.get(vf);
      const vms = this.claims.vmsAttaching(vf);
      const holders = this.holders([dev]);
      if (claim) busy.push(`${vf} is claimed by ${claim.owner}`);
      if (vms.length) busy.push(`${vf} is attached to ${vms.map((v) => `VM ${v}`).join(', ')}`);
      if (holders.length) busy.push(`${vf} is held by ${holders.map((h) => `pid ${h.pid} (${h.comm ?? '?'})`).join(', ')}`);
      for (const u of dev.hostUse.filter((x) => x.blocking)) busy.push(`${vf}: ${u.detail}`);
    }
    if (busy.length) {
      throw new DeviceError('FAILED_PRECONDITION', `${what} refused: ${pf.bdf} has VFs in use: ${busy.join('; ')}`, { reason: 'SRIOV_VFS_IN_USE', bdf: pf.bdf, inUse: busy });
    }
  }

  private async waitForVfs(pf: string, count: number, timeoutMs: number): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const vfs = this.read(pf)?.virtfns ?? [];
      if (vfs.length === count && vfs.every((vf) => this.read(vf)?.physfn === pf)) return vfs;
      if (Date.now() >= deadline) {
        throw new DeviceError('UNAVAILABLE', `${count} VF(s) of ${pf} did not appear within ${timeoutMs} ms (${vfs.length} did)`, {
          reason: 'SRIOV_VFS_TIMEOUT',
          bdf: pf,
          numVfs: count,
          timeoutMs,
        });
      }
      await sleep(this.pollMs);
    }
  }

  /**
   * Creates `count` VFs on `pf` with sriov_drivers_autoprobe off (no host driver grabs them) and prepares each for
   * `owner` (vfio-pci, claimed). Existing VFs nobody uses are destroyed first (the kernel changes sriov_numvfs only
   * through 0). Any failure releases the VFs prepared so far and restores sriov_numvfs and autoprobe.
   */
  async createVfs(pf: string, owner: string, count: number, options: CreateVfsOptions = {}): Promise<CreateVfsResult> {
    if (!owner) throw new DeviceError('INVALID_ARGUMENT', 'an owner (VM name) is required', { reason: 'FIELD_REQUIRED', field: 'owner' });
    const dev = this.sriovPf(pf);
    const total = dev.sriov.totalVfs;
    if (!Number.isInteger(count) || count < 1 || count > total) {
      throw new DeviceError('INVALID_ARGUMENT', `${pf} supports 1..${total} VFs, not ${count}`, { reason: 'FIELD_OUT_OF_RANGE', field: 'num_vfs', value: String(count), min: 1, max: total });
    }
    const action = `creating ${count} VF(s) on ${pf}`;
    this.refuseBusyVfs(dev, action);
    const dir = this.dir(pf);
    const undo: Undo[] = [];
    const prepared: PrepareResult[] = [];
    const autoprobeTurnedOff = dev.sriov.driversAutoprobe !== false;
    try {
      // Old VFs go first, autoprobe off second: undone in reverse, autoprobe is back on before they are recreated.
      const replaced = dev.virtfns;
      if (dev.sriov.numVfs > 0) {
        this.write(path.join(dir, 'sriov_numvfs'), '0');
        undo.push({ what: `sriov_numvfs back to ${dev.sriov.numVfs} on ${pf}`, run: () => this.write(path.join(dir, 'sriov_numvfs'), String(dev.sriov.numVfs)) });
      }
      if (autoprobeTurnedOff) {
        this.write(path.join(dir, 'sriov_drivers_autoprobe'), '0');
        undo.push({ what: `sriov_drivers_autoprobe back to 1 on ${pf}`, run: () => this.write(path.join(dir, 'sriov_drivers_autoprobe'), '1') });
      }
      this.write(path.join(dir, 'sriov_numvfs'), String(count));
      undo.push({ what: `sriov_numvfs back to 0 on ${pf}`, run: () => this.write(path.join(dir, 'sriov_numvfs'), '0') });
      const expected = virtfnBdfs(this.roots, pf, count);
      const vfs = await this.waitForVfs(pf, count, options.timeoutMs ?? this.vfioTimeoutMs);
      if (expected && expected.join() !== vfs.join()) {
        throw new DeviceError('INTERNAL', `${pf} created VFs ${vfs.join(', ')}, not ${expected.join(', ')} as sriov_offset/sriov_stride say`, { reason: 'INTERNAL_ERROR' });
      }
      for (const vf of vfs) {
        const result = await this.prepare(vf, owner);
        prepared.push(result);
        undo.push({ what: `release ${vf}`, run: () => this.releaseNow(vf, owner) });
      }
      // The last release of these VFs turns autoprobe back on (as for a VF whose prepare turned it off).
      if (autoprobeTurnedOff) for (const vf of vfs) this.claims.update(vf, { autoprobePf: pf });
      return { pf, owner, numVfs: count, replaced, vfs: prepared, autoprobeTurnedOff };
    } catch (error) {
      const rollback = this.rollback(undo);
      const summary = rollback.failed.length ? `rollback incomplete (${rollback.failed.join('; ')}); see docs/passthrough.md` : `rolled back ${rollback.done.length} change(s)`;
      throw new DeviceError(error instanceof VfiodError ? error.code : 'INTERNAL', `${action} for ${owner} failed: ${describe(error)}; ${summary}`, {
        ...(error instanceof VfiodError ? error.details : { reason: 'INTERNAL_ERROR', bdf: pf }),
        rolledBack: rollback.done,
        rollbackFailed: rollback.failed,
      });
    }
  }

  /** Rollback's release: the VF was prepared by this call and nothing has opened it, so nothing to wait for. */
  private releaseNow(vf: string, owner: string): void {
    const claim = this.claims.get(vf);
    if (!claim) return;
    if (existsSync(this.dir(vf)) && claim.mode === 'vfio-pci') this.restoreBinding(vf, claim.originalDriver, claim.originalOverride);
    this.claims.remove(vf, `VF creation for ${owner} rolled back`);
  }

  /** Destroys every VF of `pf` (sriov_numvfs = 0) unless one is in use, and turns sriov_drivers_autoprobe back on. */
  removeVfs(pf: string): RemoveVfsResult {
    const dev = this.sriovPf(pf);
    this.refuseBusyVfs(dev, `removing the VFs of ${pf}`);
    const dir = this.dir(pf);
    if (dev.sriov.numVfs > 0) this.write(path.join(dir, 'sriov_numvfs'), '0');
    const autoprobeRestored = dev.sriov.driversAutoprobe === false;
    if (autoprobeRestored) this.write(path.join(dir, 'sriov_drivers_autoprobe'), '1');
    return { pf, removed: dev.virtfns, autoprobeRestored };
  }

  /**
   * Reconciles claims with sysfs (run at start): removes claims of vanished devices, finishes interrupted prepares
   * and releases by restoring the original binding when no process holds the device, and reports everything it
   * cannot safely fix — including devices on vfio-pci that have no claim.
   */
  reconcile(): ReconcileEntry[] {
    const report: ReconcileEntry[] = [];
    for (const c of this.claims.list()) {
      const dev = this.read(c.bdf);
      if (!dev) {
        this.claims.remove(c.bdf, 'reconcile: device gone');
        report.push({ bdf: c.bdf, action: 'removed', detail: `claim for ${c.owner} removed: the device no longer exists` });
        continue;
      }
      if (c.state === 'prepared') {
        if (c.mode === 'vfio-pci' && dev.driver !== VFIO_PCI) {
          report.push({ bdf: c.bdf, action: 'attention', detail: `claimed by ${c.owner} as prepared but bound to ${dev.driver ?? 'no driver'}: release it with 'vfiod devices release'` });
        } else {
          report.push({ bdf: c.bdf, action: 'ok', detail: `prepared for ${c.owner}` });
        }
        continue;
      }
      // preparing / releasing / failed: an operation was interrupted. Undo it if nothing holds the device.
      const holders = this.holders([dev]);
      if (holders.length > 0) {
        report.push({ bdf: c.bdf, action: 'attention', detail: `claim in state ${c.state} but held by pid ${holders.map((h) => h.pid).join(', ')}: stop the VMM, then reconcile again` });
        continue;
      }
      try {
        if (c.originalVgpuType !== null) this.restoreVgpuType(c.bdf, c.originalVgpuType);
        if (c.mode === 'vfio-pci') this.restoreBinding(c.bdf, c.originalDriver, c.originalOverride);
        this.claims.remove(c.bdf, `reconcile: interrupted ${c.state} undone`);
        const restored = c.autoprobePf ? this.restoreAutoprobe(c.autoprobePf) : [];
        report.push({
          bdf: c.bdf,
          action: 'repaired',
          detail: `interrupted ${c.state} for ${c.owner} undone: back on ${c.originalDriver ?? 'no driver'}${restored.length ? `, autoprobe restored on ${restored.join(', ')}` : ''}`,
        });
      } catch (error) {
        this.claims.update(c.bdf, { state: 'failed', note: `reconcile: ${describe(error)}` });
        report.push({ bdf: c.bdf, action: 'attention', detail: `could not restore ${c.originalDriver ?? 'no driver'}: ${describe(error)}` });
      }
    }
    const claimed = new Set(this.claims.list().map((c) => c.bdf));
    for (const d of listDevices(this.roots)) {
      if (d.driver === VFIO_PCI && !claimed.has(d.bdf)) {
        report.push({ bdf: d.bdf, action: 'attention', detail: 'on vfio-pci without a vfiod claim (bound outside vfiod); prepare it to adopt it, or rebind it to its host driver' });
      }
    }
    return report;
  }
}
