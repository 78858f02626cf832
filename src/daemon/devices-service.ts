/**
 * vfiod.v1.DeviceService over the passthrough manager (src/devices): the same discovery, prepare, release and claims
 * as `vfiod devices`, with every outcome published as a device event.
 */
import * as grpc from '@grpc/grpc-js';
import type { Claim, ClaimState } from '../devices/claims.js';
import { type DeviceKind, listDevices, type PciDevice, readDevice, type VfioState } from '../devices/discovery.js';
import type { HostRoots } from '../devices/host.js';
import type { DeviceManager, PrepareResult, ReleaseResult } from '../devices/manager.js';
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
import { implementService, invalid, optionalText, requestBdf, requireText, toStatus, waitMs } from './requests.js';
import type { DeviceEventBus, DeviceEventRecord } from './events.js';
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

export function deviceEventMessage(event: DeviceEventRecord): DeviceEvent {
  return {
    id: event.id,
    componentId: event.bdf,
    data: packAny('DeviceStateChanged', { bdf: event.bdf, kind: `DEVICE_EVENT_KIND_${event.kind}`, owner: event.owner, detail: event.detail, at: event.at }),
  };
}

interface ListDevicesRequest {
  bdfs: string[];
  ids: string[];
  kinds: string[];
  pfs: string[];
  freeOnly: boolean;
}

export function deviceService(deps: { roots: HostRoots; manager: DeviceManager; events: DeviceEventBus; logger: Logger }): grpc.UntypedServiceImplementation {
  const { roots, manager, events } = deps;
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
      const devices = selectDevices(listDevices(roots), { bdfs, ids: request.ids ?? [], classes: kinds, pfs, free: request.freeOnly ?? false }, new Set(claims.keys()));
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
      try {
        const result = await manager.prepare(bdf, owner, { force: request.force ?? false, wholeGroup: request.wholeGroup ?? false });
        if (result.changed) {
          for (const d of result.devices) events.publish(d.bdf, 'PREPARED', owner, d.companion ? `prepared with ${bdf}` : `on ${result.vfioCdev ?? result.vfioGroupDev ?? 'vfio'}`);
        }
        logger.info('device prepared', { bdf, owner, changed: result.changed, devices: result.devices.map((d) => d.bdf) });
        return prepareResponse(result);
      } catch (error) {
        events.publish(bdf, 'PREPARE_FAILED', owner, errorMessage(error));
        throw withVm(error, owner);
      }
    },

    ReleaseDevice: async (request) => {
      const bdf = requestBdf(request.bdf, 'bdf');
      const owner = requireText(request.owner, 'owner', `the VM releasing ${bdf}`);
      const wait = waitMs(request.waitMs, 'wait_ms');
      try {
        const result = await manager.release(bdf, owner, { waitMs: wait });
        for (const d of result.devices) events.publish(d.bdf, 'RELEASED', owner, d.gone ? 'device gone' : `back on ${d.restoredDriver ?? 'no driver'}`);
        logger.info('device released', { bdf, owner, devices: result.devices.map((d) => d.bdf) });
        return releaseResponse(result);
      } catch (error) {
        events.publish(bdf, 'RELEASE_FAILED', owner, errorMessage(error));
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
      const unsubscribe = events.subscribe((event) => {
        if (filter && !filter.has(event.bdf)) return;
        call.write(deviceEventMessage(event));
      });
      const stopClosing = events.onClose(() => call.end());
      const end = (): void => {
        unsubscribe();
        stopClosing();
      };
      call.on('cancelled', end);
      call.on('close', end);
      call.on('error', end);
      // Headers now, not with the first event: a client that sees them knows it will get every later event.
      call.sendMetadata(new grpc.Metadata());
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
