/**
 * vfiod.v1.DeviceService over the passthrough manager (src/devices): the same discovery, prepare, release and claims
 * as `vfiod devices`, with every outcome published as a device event.
 */
import * as grpc from '@grpc/grpc-js';
import type { Claim, ClaimState } from '../devices/claims.js';
import { type DeviceKind, listDevices, type PciDevice, readDevice, type VfioState } from '../devices/discovery.js';
import type { HostRoots } from '../devices/host.js';
import type { DeviceManager, PrepareResult, ReleaseResult, VgpuChangeResult } from '../devices/manager.js';
import { DEVICE_KINDS, parseId, selectDevices } from '../devices/selectors.js';
import { errorMessage, VfiodError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { ClaimInfo } from './generated/vfiod/v1/ClaimInfo.js';
import type { ClaimState as ClaimStateName } from './generated/vfiod/v1/ClaimState.js';
import { DEVICE_KIND_NAMES } from './device-kind-names.js';
import type { VfioState as VfioStateName } from './generated/vfiod/v1/VfioState.js';
import type { DeviceInfo } from './generated/vfiod/v1/DeviceInfo.js';
import type { DeviceEvent } from './generated/vfiod/v1/DeviceEvent.js';
import type { PrepareDeviceResponse } from './generated/vfiod/v1/PrepareDeviceResponse.js';
import type { ReleaseDeviceResponse } from './generated/vfiod/v1/ReleaseDeviceResponse.js';
import type { SetVgpuTypeResponse } from './generated/vfiod/v1/SetVgpuTypeResponse.js';
import { implementService, invalid, optionalText, requestBdf, requireText, toStatus, waitMs } from './requests.js';
import { deviceEventKindName, type EventLog, type EventRecord } from './events.js';
import type { RequestIds } from './request-ids.js';
import { streamEvents } from './events-service.js';
import { packAny } from './proto.js';

const CLAIM_STATE_NAMES: Record<ClaimState, ClaimStateName> = {
  preparing: 'CLAIM_STATE_PREPARING',
  prepared: 'CLAIM_STATE_PREPARED',
  releasing: 'CLAIM_STATE_RELEASING',
  failed: 'CLAIM_STATE_FAILED',
};
const VFIO_STATE_NAMES: Record<VfioState, VfioStateName> = {
  'vfio-pci': 'VFIO_STATE_VFIO_PCI',
  'vendor-vfio': 'VFIO_STATE_VENDOR_VFIO',
  'host-driver': 'VFIO_STATE_HOST_DRIVER',
  unbound: 'VFIO_STATE_UNBOUND',
  bridge: 'VFIO_STATE_BRIDGE',
  'no-iommu': 'VFIO_STATE_NO_IOMMU',
};

export function claimInfo(claim: Claim): ClaimInfo {
  return {
    owner: claim.owner,
    state: CLAIM_STATE_NAMES[claim.state],
    mode: claim.mode === 'vfio-pci' ? 'CLAIM_MODE_VFIO_PCI' : 'CLAIM_MODE_AS_IS',
    primaryBdf: claim.primary,
    ...(claim.originalDriver !== null ? { originalDriver: claim.originalDriver } : {}),
    ...(claim.originalOverride !== null ? { originalOverride: claim.originalOverride } : {}),
    note: claim.note ?? '',
    createdAt: claim.createdAt,
    updatedAt: claim.updatedAt,
  };
}

export function deviceInfo(d: PciDevice, claim: Claim | undefined): DeviceInfo {
  return {
    bdf: d.bdf,
    vendorId: d.vendor,
    deviceId: d.device,
    subsystemVendorId: d.subsystemVendor ?? '',
    subsystemDeviceId: d.subsystemDevice ?? '',
    classCode: d.classCode,
    kind: DEVICE_KIND_NAMES[d.kind],
    ...(d.driver !== null ? { driver: d.driver } : {}),
    ...(d.driverOverride !== null ? { driverOverride: d.driverOverride } : {}),
    ...(d.iommuGroup !== null ? { iommuGroup: d.iommuGroup } : {}),
    iommuGroupMembers: d.groupMembers,
    ...(d.numaNode !== null ? { numaNode: d.numaNode } : {}),
    ...(d.physfn !== null ? { physfn: d.physfn } : {}),
    virtfns: d.virtfns,
    ...(d.sriov
      ? { sriov: { totalVfs: d.sriov.totalVfs, numVfs: d.sriov.numVfs, ...(d.sriov.driversAutoprobe !== null ? { driversAutoprobe: d.sriov.driversAutoprobe } : {}) } }
      : {}),
    resetMethods: d.resetMethods ?? [],
    bars: d.bars.map((b) => ({ index: b.index, size: b.size })),
    vfioGroupDev: d.vfioGroupDev ?? '',
    vfioCdev: d.vfioCdev ?? '',
    hostUses: d.hostUse.map((u) => ({ kind: u.kind, on: u.on, detail: u.detail, blocking: u.blocking })),
    vfioState: VFIO_STATE_NAMES[d.vfio.state],
    vfioUsable: d.vfio.usable,
    iommuGroupViable: d.vfio.groupViable,
    vfioReasons: d.vfio.reasons,
    ...(claim ? { claim: claimInfo(claim) } : {}),
    ...(d.vgpu ? { vgpu: { currentType: d.vgpu.current, creatable: d.vgpu.creatable } } : {}),
  };
}

function prepareResponse(r: PrepareResult): PrepareDeviceResponse {
  return {
    bdf: r.bdf,
    owner: r.owner,
    changed: r.changed,
    devices: r.devices.map((d) => ({
      bdf: d.bdf,
      mode: d.mode === 'vfio-pci' ? 'CLAIM_MODE_VFIO_PCI' : 'CLAIM_MODE_AS_IS',
      ...(d.originalDriver !== null ? { originalDriver: d.originalDriver } : {}),
      ...(d.originalOverride !== null ? { originalOverride: d.originalOverride } : {}),
      companion: d.companion,
    })),
    ...(r.iommuGroup !== null ? { iommuGroup: r.iommuGroup } : {}),
    vfioGroupDev: r.vfioGroupDev ?? '',
    vfioCdev: r.vfioCdev ?? '',
    overridden: r.overridden,
    warnings: r.warnings,
  };
}

function releaseResponse(r: ReleaseResult): ReleaseDeviceResponse {
  return {
    bdf: r.bdf,
    owner: r.owner,
    devices: r.devices.map((d) => ({
      bdf: d.bdf,
      ...(d.restoredDriver !== null ? { restoredDriver: d.restoredDriver } : {}),
      ...(d.restoredOverride !== null ? { restoredOverride: d.restoredOverride } : {}),
      gone: d.gone,
    })),
    autoprobeRestored: r.autoprobeRestored,
  };
}

/** A device event of the log as StreamDeviceEvents sends it; undefined for the log's other events. */
export function deviceEventMessage(event: EventRecord): DeviceEvent | undefined {
  if (!event.snapshot || !('device' in event.snapshot)) return undefined;
  const device = event.snapshot.device;
  return {
    id: String(event.sequence),
    componentId: device.bdf,
    data: packAny('DeviceStateChanged', { ...device, kind: deviceEventKindName(device.kind) }),
  };
}

function vgpuChangeResponse(r: VgpuChangeResult): SetVgpuTypeResponse {
  return { bdf: r.bdf, owner: r.owner, previousType: r.previous, currentType: r.current, changed: r.changed, claimed: r.claimed };
}

export function deviceService(deps: {
  roots: HostRoots;
  manager: DeviceManager;
  events: EventLog;
  /** How far an event stream may fall behind before it is dropped (events-service.ts). */
  maxLag: number;
  requestIds: RequestIds;
  logger: Logger;
}): grpc.UntypedServiceImplementation {
  const { roots, manager, events, maxLag, requestIds } = deps;
  const logger = deps.logger.child({ service: 'DeviceService' });
  const claimsByBdf = (): Map<string, Claim> => new Map(manager.claims.list().map((c) => [c.bdf, c]));

  return implementService('DeviceService', logger, {
    ListDevices: (request) => {
      const bdfs = (request.bdfs ?? []).map((b, i) => requestBdf(b, `bdfs[${i}]`));
      const pfs = (request.pfs ?? []).map((b, i) => requestBdf(b, `pfs[${i}]`));
      for (const id of request.ids ?? []) if (!parseId(id)) throw invalid(`ids: '${id}' is not vendor:device (e.g. 15b3:6001)`, 'ids');
      const kinds = (request.kinds ?? []).map((k) => {
        const kind = DEVICE_KINDS.find((candidate) => DEVICE_KIND_NAMES[candidate] === k);
        if (!kind) throw invalid(`kinds: ${String(k)} is not a device kind`, 'kinds');
        return kind;
      });
      const claims = claimsByBdf();
      const numaNode = request.numaNode ?? undefined;
      if (numaNode !== undefined && numaNode < -1) throw invalid(`numa_node: ${numaNode} is not a NUMA node (-1 for devices with none)`, 'numa_node');
      const selector = { bdfs, ids: request.ids ?? [], classes: kinds, pfs, free: request.freeOnly ?? false, ...(numaNode !== undefined ? { numaNode } : {}) };
      const devices = selectDevices(listDevices(roots), selector, new Set(claims.keys()));
      return { devices: devices.map((d) => deviceInfo(d, claims.get(d.bdf))) };
    },

    GetDevice: (request) => {
      const bdf = requestBdf(request.bdf, 'bdf');
      const device = readDevice(roots, bdf);
      if (!device) throw new VfiodError('NOT_FOUND', `no PCI device ${bdf}`, { reason: 'DEVICE_NOT_FOUND', bdf });
      return { device: deviceInfo(device, manager.claims.get(bdf)) };
    },

    PrepareDevice: async (request) => {
      const bdf = requestBdf(request.bdf, 'bdf');
      const owner = requireText(request.owner, 'owner', `the VM ${bdf} is prepared for`);
      return requestIds.once('PrepareDevice', request, async () => {
        try {
          const result = await manager.prepare(bdf, owner, { force: request.force ?? false, wholeGroup: request.wholeGroup ?? false });
          if (result.changed) {
            for (const d of result.devices) events.device(d.bdf, 'PREPARED', owner, d.companion ? `prepared with ${bdf}` : `on ${result.vfioCdev ?? result.vfioGroupDev ?? 'vfio'}`);
          }
          logger.info('device prepared', { bdf, owner, changed: result.changed, devices: result.devices.map((d) => d.bdf) });
          return prepareResponse(result);
        } catch (error) {
          events.device(bdf, 'PREPARE_FAILED', owner, errorMessage(error));
          throw withVm(error, owner);
        }
      });
    },

    ReleaseDevice: async (request) => {
      const bdf = requestBdf(request.bdf, 'bdf');
      const owner = requireText(request.owner, 'owner', `the VM releasing ${bdf}`);
      const wait = waitMs(request.waitMs, 'wait_ms');
      try {
        const result = await manager.release(bdf, owner, { waitMs: wait });
        for (const d of result.devices) events.device(d.bdf, 'RELEASED', owner, d.gone ? 'device gone' : `back on ${d.restoredDriver ?? 'no driver'}`);
        logger.info('device released', { bdf, owner, devices: result.devices.map((d) => d.bdf) });
        return releaseResponse(result);
      } catch (error) {
        events.device(bdf, 'RELEASE_FAILED', owner, errorMessage(error));
        throw withVm(error, owner);
      }
    },

    ListVgpuTypes: (request) => {
      const r = manager.vgpuTypes(requestBdf(request.bdf, 'bdf'));
      return { bdf: r.bdf, currentType: r.current, creatable: r.creatable, ...(r.owner !== null ? { owner: r.owner } : {}) };
    },

    SetVgpuType: (request) => {
      const bdf = requestBdf(request.bdf, 'bdf');
      const owner = requireText(request.owner, 'owner', `the VM ${bdf} is for`);
      if (!request.typeId) throw invalid('type_id: a vGPU type id is required (ClearVgpuType clears the profile)', 'type_id', 'FIELD_REQUIRED');
      const result = manager.setVgpuType(bdf, owner, request.typeId);
      if (result.changed) events.device(bdf, 'VGPU_TYPE_CHANGED', owner, `vGPU profile ${result.previous} -> ${result.current}`);
      logger.info('vGPU profile set', { bdf, owner, previous: result.previous, current: result.current, changed: result.changed });
      return vgpuChangeResponse(result);
    },

    ClearVgpuType: (request) => {
      const bdf = requestBdf(request.bdf, 'bdf');
      const owner = requireText(request.owner, 'owner', `the VM ${bdf} is for`);
      const result = manager.clearVgpuType(bdf, owner);
      if (result.changed) events.device(bdf, 'VGPU_TYPE_CHANGED', owner, `vGPU profile ${result.previous} cleared`);
      logger.info('vGPU profile cleared', { bdf, owner, previous: result.previous, changed: result.changed });
      return vgpuChangeResponse(result);
    },

    CreateVfs: async (request) => {
      const pf = requestBdf(request.pf, 'pf');
      if (!request.numVfs) {
        const removed = manager.removeVfs(pf);
        logger.info('VFs removed', { pf, removed: removed.removed });
        return { pf, owner: '', numVfs: 0, replaced: [], vfs: [], autoprobeTurnedOff: false, removed: removed.removed };
      }
      const owner = requireText(request.owner, 'owner', `the VM the VFs of ${pf} are for`);
      const timeout = request.timeoutMs ? waitMs(request.timeoutMs, 'timeout_ms') : undefined;
      try {
        const r = await manager.createVfs(pf, owner, request.numVfs, timeout !== undefined ? { timeoutMs: timeout } : {});
        for (const vf of r.vfs) events.device(vf.bdf, 'PREPARED', owner, `VF of ${pf} created and prepared on ${vf.vfioCdev ?? vf.vfioGroupDev ?? 'vfio'}`);
        logger.info('VFs created', { pf, owner, vfs: r.vfs.map((v) => v.bdf), replaced: r.replaced });
        return { pf, owner, numVfs: r.numVfs, replaced: r.replaced, vfs: r.vfs.map(prepareResponse), autoprobeTurnedOff: r.autoprobeTurnedOff, removed: [] };
      } catch (error) {
        events.device(pf, 'PREPARE_FAILED', owner, errorMessage(error));
        throw withVm(error, owner);
      }
    },

    StreamDeviceEvents: (call) => {
      let filter: Set<string> | undefined;
      try {
        const bdfs = (call.request.bdfs ?? []).map((b, i) => requestBdf(b, `bdfs[${i}]`));
        filter = bdfs.length ? new Set(bdfs) : undefined;
      } catch (error) {
        // grpc-js sends an 'error' emitted on a server stream as the call's status.
        call.emit('error', toStatus(error, 'StreamDeviceEvents', logger));
        return;
      }
      // Live only, as before WatchEvents existed (which replays); a client that does not read is dropped the same way.
      streamEvents(call, {
        events,
        logger,
        rpc: 'StreamDeviceEvents',
        maxLag,
        after: events.lastSequence,
        message: (event) => {
          const message = deviceEventMessage(event);
          return message && (!filter || filter.has(message.componentId ?? '')) ? message : undefined;
        },
      });
    },
  });
}

/** The device manager's messages name the device; the API's also name the VM (FeOS logs them as they are). */
function withVm(error: unknown, owner: string): unknown {
  if (error instanceof VfiodError && !error.message.includes(owner)) {
    return new VfiodError(error.code, `${error.message} (VM ${owner})`, error.details);
  }
  return error;
}
