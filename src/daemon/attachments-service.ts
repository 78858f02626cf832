/**
 * vfiod.v1.AttachmentService over the attachment orchestrator (src/attach AttachmentManager): hot-plug / hot-unplug
 * through the VM's hypervisor as long-running operations (operations.ts), and the static configuration for VM
 * creation. This file only translates between the proto messages and the orchestrator's types; adapters and rollback
 * live in src/attach and src/hypervisor.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Attachment, AttachmentManager, AttachmentState, AttachRequest, AttachSource, HypervisorEndpoint } from '../attach/attachments.js';
import type { StaticDevice } from '../hypervisor/static-config.js';
import type { HypervisorKind } from '../hypervisor/types.js';
import type { DeviceManager } from '../devices/manager.js';
import { errorMessage, VfiodError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { ControllerRegistry } from '../serve/registry.js';
import type { AttachDeviceResponse } from './generated/vfiod/v1/AttachDeviceResponse.js';
import type { AttachmentInfo } from './generated/vfiod/v1/AttachmentInfo.js';
import type { AttachmentState as AttachmentStateName } from './generated/vfiod/v1/AttachmentState.js';
import type { DetachDeviceResponse } from './generated/vfiod/v1/DetachDeviceResponse.js';
import type { DeviceSource__Output } from './generated/vfiod/v1/DeviceSource.js';
import type { HypervisorEndpoint as EndpointMessage, HypervisorEndpoint__Output as EndpointMessage__Output } from './generated/vfiod/v1/HypervisorEndpoint.js';
import type { HypervisorKind as HypervisorKindName, HypervisorKind__Output as HypervisorKindName__Output } from './generated/vfiod/v1/HypervisorKind.js';
import type { PrepareDeviceResult } from './generated/vfiod/v1/PrepareDeviceResult.js';
import type { VfioBackend as VfioBackendName, VfioBackend__Output as VfioBackendName__Output } from './generated/vfiod/v1/VfioBackend.js';
import type { VfioBackend, VfioBackendChoice } from '../hypervisor/vfio-backend.js';
import { requireAdmin } from './access.js';
import { implementService, invalid, MAX_WAIT_MS, optionalText, requestBdf, requireText, waitMs } from './requests.js';
import { operationMessage, type OperationRecord, type OperationTracker } from './operations.js';
import type { RequestIds } from './request-ids.js';
import type { EventLog } from './events.js';

const HYPERVISOR_NAMES: Record<HypervisorKind, HypervisorKindName> = {
  'cloud-hypervisor': 'HYPERVISOR_KIND_CLOUD_HYPERVISOR',
  qemu: 'HYPERVISOR_KIND_QEMU',
};
const ATTACHMENT_STATE_NAMES: Record<AttachmentState, AttachmentStateName> = {
  attaching: 'ATTACHMENT_STATE_ATTACHING',
  attached: 'ATTACHMENT_STATE_ATTACHED',
  detaching: 'ATTACHMENT_STATE_DETACHING',
  'detach-pending': 'ATTACHMENT_STATE_DETACH_PENDING',
};

const VFIO_BACKEND_NAMES: Record<VfioBackend, VfioBackendName> = { group: 'VFIO_BACKEND_GROUP', iommufd: 'VFIO_BACKEND_IOMMUFD' };

/** A request's VFIO backend: UNSPECIFIED is auto (left to the rule of src/hypervisor/vfio-backend.ts). */
function vfioBackendFrom(name: VfioBackendName__Output | undefined, context: string): { vfioBackend?: VfioBackendChoice } {
  if (name === undefined || name === 'VFIO_BACKEND_UNSPECIFIED') return {};
  const backend = (Object.keys(VFIO_BACKEND_NAMES) as VfioBackend[]).find((b) => VFIO_BACKEND_NAMES[b] === name);
  if (!backend) throw invalid(`${context}: unknown VFIO backend ${String(name)}`, 'vfio_backend');
  return { vfioBackend: backend };
}

const hypervisorOf = (name: HypervisorKindName__Output): HypervisorKind | undefined =>
  (Object.keys(HYPERVISOR_NAMES) as HypervisorKind[]).find((kind) => HYPERVISOR_NAMES[kind] === name);

function endpointFrom(message: EndpointMessage__Output | null, vmId: string): HypervisorEndpoint {
  const eventMonitor = optionalText(message?.cloudHypervisorEventMonitor, `VM ${vmId}: endpoint.cloud_hypervisor_event_monitor`);
  if (message?.endpoint === 'cloudHypervisorApiSocket' && message.cloudHypervisorApiSocket) {
    const apiSocket = requireText(message.cloudHypervisorApiSocket, `VM ${vmId}: endpoint.cloud_hypervisor_api_socket`, 'a path');
    return { hypervisor: 'cloud-hypervisor', apiSocket, ...(eventMonitor ? { eventMonitor } : {}) };
  }
  if (eventMonitor) throw invalid(`VM ${vmId}: endpoint.cloud_hypervisor_event_monitor goes with cloud_hypervisor_api_socket`, 'endpoint.cloud_hypervisor_event_monitor');
  if (message?.endpoint === 'qemuQmpSocket' && message.qemuQmpSocket) {
    return { hypervisor: 'qemu', qmpSocket: requireText(message.qemuQmpSocket, `VM ${vmId}: endpoint.qemu_qmp_socket`, 'a path') };
  }
  throw invalid(`VM ${vmId}: endpoint is required (cloud_hypervisor_api_socket or qemu_qmp_socket)`, 'endpoint', 'FIELD_REQUIRED');
}

function endpointMessage(endpoint: HypervisorEndpoint): EndpointMessage {
  if (endpoint.hypervisor === 'qemu') return { qemuQmpSocket: endpoint.qmpSocket };
  return { cloudHypervisorApiSocket: endpoint.apiSocket, ...(endpoint.eventMonitor ? { cloudHypervisorEventMonitor: endpoint.eventMonitor } : {}) };
}

export function attachmentInfo(a: Attachment): AttachmentInfo {
  return {
    vmId: a.vmId,
    deviceId: a.deviceId,
    hypervisor: HYPERVISOR_NAMES[a.hypervisor],
    endpoint: endpointMessage(a.endpoint),
    source: a.source.kind === 'pci' ? { pciBdf: a.source.bdf } : { vfioUserSocket: a.source.socketPath },
    functions: a.functions.map((f) => ({
      hostBdf: f.hostBdf ?? '',
      vmmDeviceId: f.vmmDeviceId,
      guestBdf: f.guestBdf ?? '',
      bus: f.bus ?? '',
      // records from before the field was added are all group attachments
      vfioBackend: f.hostBdf ? VFIO_BACKEND_NAMES[f.vfioBackend ?? 'group'] : 'VFIO_BACKEND_UNSPECIFIED',
    })),
    state: ATTACHMENT_STATE_NAMES[a.state],
    preparedByAttach: a.preparedByAttach,
    ...(a.bootIndex !== null ? { bootIndex: a.bootIndex } : {}),
    note: a.note ?? '',
    createdAt: a.createdAt,
    updatedAt: a.updatedAt,
  };
}

/** cloud-hypervisor's PCI segment ids are 16 bits wide (the proto field is a uint32). */
function checkPciSegment(value: unknown, field: string): void {
  if (typeof value === 'number' && value > 0xffff) throw invalid(`${field} ${value} is not a PCI segment (0-65535)`, field, 'FIELD_OUT_OF_RANGE', { value, min: 0, max: 0xffff });
}

/** A RAM size as QEMU's size= takes it; anything else would add options to the -object it goes into. */
function qemuSize(value: unknown, field: string): string {
  if (typeof value !== 'string' || !/^[1-9][0-9]{0,15}[KMGT]?$/i.test(value)) {
    throw invalid(`${field} ${JSON.stringify(String(value).slice(0, 64))} is not a size such as 4096M or 8G`, field);
  }
  return value;
}

export function attachmentService(deps: {
  attachments: AttachmentManager;
  devices: DeviceManager;
  registry: ControllerRegistry;
  events: EventLog;
  operations: OperationTracker;
  requestIds: RequestIds;
  /** Runs an operation's work after the call answered; shutdown waits for it (it needs the claims database). */
  inBackground: (work: () => Promise<void>) => void;
  logger: Logger;
}): grpc.UntypedServiceImplementation {
  const { attachments, devices, registry, events, operations, requestIds, inBackground } = deps;
  const logger = deps.logger.child({ service: 'AttachmentService' });

  /**
   * The operation `name` as AttachDevice / DetachDevice answer with it: at once; with `wait`, once it is done (a
   * failure then is the call's status).
   */
  const answeredOperation = async (name: string, wait: boolean): Promise<OperationRecord> => {
    const op = wait ? await operations.wait(name, MAX_WAIT_MS) : operations.get(name);
    if (op.state === 'failed' && wait && op.error) throw new VfiodError(op.error.code, op.error.message, op.error.details);
    return op;
  };
  /** AttachDevice's answer: the operation; with `wait` and success also the response fields, as before operations existed. */
  const attachAnswer = async (name: string, wait: boolean): Promise<AttachDeviceResponse> => {
    const op = await answeredOperation(name, wait);
    const fields = op.state === 'succeeded' && wait && op.response?.typeName === 'AttachDeviceResponse' ? op.response.value : {};
    return { ...fields, operation: operationMessage(op) };
  };
  /** DetachDevice's answer: the operation with the VM and device; with `wait` and success also what was released. */
  const detachAnswer = async (name: string, wait: boolean): Promise<DetachDeviceResponse> => {
    const op = await answeredOperation(name, wait);
    const fields = op.state === 'succeeded' && wait && op.response?.typeName === 'DetachDeviceResponse' ? op.response.value : { vmId: op.vmId, deviceId: op.deviceId };
    return { ...fields, operation: operationMessage(op) };
  };

  const sourceFrom = async (message: DeviceSource__Output | null, context: string): Promise<AttachSource> => {
    switch (message?.source) {
      case 'pciBdf':
        return { kind: 'pci', bdf: requestBdf(message.pciBdf, `${context}: source.pci_bdf`) };
      case 'vfioUserSocket':
        return { kind: 'vfio-user', socketPath: requireText(message.vfioUserSocket, `${context}: source.vfio_user_socket`, 'a vfio-user socket path') };
      case 'controllerId': {
        const id = requireText(message.controllerId, `${context}: source.controller_id`, 'an emulated controller id');
        const controller = await registry.get(id);
        if (controller.state !== 'serving') {
          throw new VfiodError('FAILED_PRECONDITION', `${context}: controller ${id} is ${controller.state}${controller.error ? ` (${controller.error})` : ''}, not serving`, {
            reason: 'CONTROLLER_NOT_SERVING',
            controllerId: id,
            controllerState: controller.state,
          });
        }
        return { kind: 'vfio-user', socketPath: controller.config.socketPath };
      }
      default:
        throw invalid(`${context}: source is required (pci_bdf, vfio_user_socket or controller_id)`, 'source', 'FIELD_REQUIRED');
    }
  };

  return implementService('AttachmentService', logger, {
    AttachDevice: async (request) => {
      const vmId = requireText(request.vmId, 'vm_id', 'the VM to attach to');
      const endpoint = endpointFrom(request.endpoint, vmId);
      const source = await sourceFrom(request.source, `VM ${vmId}`);
      const deviceId = optionalText(request.deviceId, `VM ${vmId}: device_id`);
      const timeoutMs = waitMs(request.timeoutMs, `VM ${vmId}: timeout_ms`);
      checkPciSegment(request.pciSegment, `VM ${vmId}: pci_segment`);
      const attachRequest: AttachRequest = {
        vmId,
        endpoint,
        source,
        ...(deviceId ? { deviceId } : {}),
        ...(request.bootIndex !== undefined && request.bootIndex !== null ? { bootIndex: request.bootIndex } : {}),
        ...(request.iommu ? { iommu: true } : {}),
        ...(request.pciSegment ? { pciSegment: request.pciSegment } : {}),
        ...(request.gpudirectClique !== undefined && request.gpudirectClique !== null ? { gpudirectClique: request.gpudirectClique } : {}),
        ...(request.force ? { force: true } : {}),
        ...(timeoutMs ? { timeoutMs } : {}),
        ...vfioBackendFrom(request.vfioBackend, `VM ${vmId}: vfio_backend`),
      };
      const name = await requestIds.once('AttachDevice', request, async () => {
        const op = operations.start('attach-device', vmId, deviceId ?? '', request.requestId ?? '');
        inBackground(async () => {
          try {
            const result = await attachments.attach({ ...attachRequest, onStep: (p) => operations.progress(op, p.percent, p.step, p.deviceId) });
            if (result.changed) {
              for (const f of result.attachment.functions) if (f.hostBdf) events.device(f.hostBdf, 'ATTACHED', vmId, `attached as ${f.vmmDeviceId}${f.guestBdf ? ` at guest ${f.guestBdf}` : ''}`);
            }
            logger.info('device attached', { vm: vmId, device: result.attachment.deviceId, changed: result.changed, operation: op.name });
            const response = { attachment: attachmentInfo(result.attachment), changed: result.changed, warnings: result.warnings };
            operations.finish(op, 'succeeded', { response: { typeName: 'AttachDeviceResponse', value: response }, deviceId: result.attachment.deviceId });
          } catch (error) {
            operations.finish(op, 'failed', { error });
          }
        });
        return op.name;
      });
      return attachAnswer(name, request.wait);
    },

    DetachDevice: async (request) => {
      const vmId = requireText(request.vmId, 'vm_id', 'the VM to detach from');
      const deviceId = optionalText(request.deviceId, `VM ${vmId}: device_id`);
      if (!deviceId && !request.bdf) throw invalid(`VM ${vmId}: device_id or bdf is required`, 'device_id', 'FIELD_REQUIRED');
      const bdf = request.bdf ? requestBdf(request.bdf, 'bdf') : undefined;
      const timeoutMs = waitMs(request.timeoutMs, `VM ${vmId}: timeout_ms`);
      // Checked before the operation starts: an unknown attachment is the call's NOT_FOUND, not a failed operation.
      const target = attachments.find(vmId, deviceId, bdf);
      const op = operations.start('detach-device', vmId, target.deviceId, '');
      inBackground(async () => {
        try {
          const result = await attachments.detach({
            vmId,
            deviceId: target.deviceId,
            ...(timeoutMs ? { timeoutMs } : {}),
            ...(request.keepClaimed ? { release: false } : {}),
            onStep: (p) => operations.progress(op, p.percent, p.step),
          });
          for (const released of result.released) events.device(released, 'DETACHED', vmId, `detached from ${result.deviceId} and released`);
          logger.info('device detached', { vm: vmId, device: result.deviceId, released: result.released, operation: op.name });
          operations.finish(op, 'succeeded', { response: { typeName: 'DetachDeviceResponse', value: { vmId: result.vmId, deviceId: result.deviceId, released: result.released } } });
        } catch (error) {
          // A guest (or VMM) that did not let go is a state of the attachment, not a failure of the call.
          const pending = error instanceof VfiodError && error.details['state'] === 'detach-pending';
          operations.finish(op, pending ? 'detach-pending' : 'failed', { error });
        }
      });
      return detachAnswer(op.name, request.wait);
    },

    ListAttachments: (request) => ({
      attachments: attachments.list(optionalText(request.vmId, 'vm_id')).map(attachmentInfo),
    }),

    GetVmConfig: async (request, call) => {
      // A Get that changes the host when asked to: preparing devices is an admin's call.
      if (request.prepareDevices) requireAdmin(call, 'GetVmConfig', 'prepare devices (GetVmConfig with prepare_devices)');
      const hypervisor = hypervisorOf(request.hypervisor);
      if (!hypervisor) throw invalid(`hypervisor is required (HYPERVISOR_KIND_CLOUD_HYPERVISOR or HYPERVISOR_KIND_QEMU), not ${request.hypervisor}`, 'hypervisor', 'FIELD_REQUIRED');
      const requestVmId = optionalText(request.vmId, 'vm_id');
      const vmLabel = requestVmId ? `VM ${requestVmId}` : 'VM config';
      const staticDevices: StaticDevice[] = [];
      for (const [index, d] of (request.devices ?? []).entries()) {
        const deviceId = optionalText(d.deviceId, `${vmLabel}: devices[${index}].device_id`);
        checkPciSegment(d.pciSegment, `${vmLabel}: devices[${index}].pci_segment`);
        staticDevices.push({
          source: await sourceFrom(d.source, `${vmLabel}: devices[${index}]`),
          ...(deviceId ? { id: deviceId } : {}),
          ...(d.bootIndex !== undefined && d.bootIndex !== null ? { bootIndex: d.bootIndex } : {}),
          ...(d.iommu ? { iommu: true } : {}),
          ...(d.pciSegment ? { pciSegment: d.pciSegment } : {}),
          ...(d.gpudirectClique !== undefined && d.gpudirectClique !== null ? { gpudirectClique: d.gpudirectClique } : {}),
          ...vfioBackendFrom(d.vfioBackend, `${vmLabel}: devices[${index}].vfio_backend`),
        });
      }
      const staticRequest = {
        hypervisor,
        devices: staticDevices,
        ...(request.firstChassis ? { firstChassis: request.firstChassis } : {}),
        ...(request.memorySize ? { memorySize: qemuSize(request.memorySize, `${vmLabel}: memory_size`) } : {}),
        ...(request.vmId ? { vmId: request.vmId } : {}),
        ...(request.numaPlacement ? { numaPlacement: true } : {}),
      };
      // Validates the request before anything on the host changes (INVALID_ARGUMENT only).
      attachments.staticConfig(staticRequest);

      // FeOS creates the VM right after this call: the PCI devices must then already be on VFIO drivers.
      const prepared: PrepareDeviceResult[] = [];
      if (request.prepareDevices) {
        const vmId = requireText(request.vmId, 'vm_id', 'the VM the devices are prepared for (prepare_devices is set)');
        const done: string[] = [];
        for (const d of staticDevices) {
          if (d.source.kind !== 'pci') continue;
          try {
            const result = await devices.prepare(d.source.bdf, vmId);
            if (result.changed) done.push(d.source.bdf);
            prepared.push({ bdf: result.bdf, changed: result.changed, vfioGroupDev: result.vfioGroupDev ?? '', vfioCdev: result.vfioCdev ?? '' });
            if (result.changed) events.device(result.bdf, 'PREPARED', vmId, 'prepared for VM creation');
          } catch (error) {
            // All or nothing: give back what this call prepared.
            const undone: string[] = [];
            for (const bdf of done.reverse()) {
              try {
                await devices.release(bdf, vmId);
                undone.push(bdf);
                events.device(bdf, 'RELEASED', vmId, 'rolled back: VM config preparation failed');
              } catch (releaseError) {
                logger.error('rollback release failed', { vm: vmId, bdf, error: errorMessage(releaseError) });
              }
            }
            const code = error instanceof VfiodError ? error.code : 'INTERNAL';
            const details = error instanceof VfiodError ? error.details : { reason: 'INTERNAL_ERROR' as const };
            throw new VfiodError(code, `VM ${vmId}: preparing ${d.source.bdf} failed: ${errorMessage(error)}${undone.length ? `; released ${undone.join(', ')} again` : ''}`, {
              ...details,
              vmId,
              ...(undone.length ? { releasedAgain: undone } : {}),
            });
          }
        }
      }

      // Built after preparing: the claims tell which companion functions (a GPU's audio) go with each device.
      const config = attachments.staticConfig(staticRequest);
      return {
        hypervisor: HYPERVISOR_NAMES[config.hypervisor],
        ...(config.cloudHypervisor
          ? {
              cloudHypervisor: {
                devicesJson: JSON.stringify(config.cloudHypervisor.devices),
                userDevicesJson: JSON.stringify(config.cloudHypervisor.user_devices),
                args: config.cloudHypervisor.args,
                sharedMemoryRequired: config.cloudHypervisor.sharedMemoryRequired,
                pciSegmentsJson: JSON.stringify(config.cloudHypervisor.pci_segments),
                numPciSegments: config.cloudHypervisor.num_pci_segments ?? 0,
                numaJson: JSON.stringify(config.cloudHypervisor.numa),
              },
            }
          : {}),
        ...(config.qemu ? { qemu: { args: config.qemu.args, buses: config.qemu.buses, sharedMemoryRequired: config.qemu.sharedMemoryRequired } } : {}),
        warnings: config.warnings,
        prepared,
        pciWindow: { aperture64Bytes: config.pciWindow.aperture64Bytes, windows: config.pciWindow.windows, ovmfMmio64Mb: config.pciWindow.ovmfMmio64Mb },
        vfioBackends: Object.fromEntries(Object.entries(config.vfioBackends).map(([id, backend]) => [id, VFIO_BACKEND_NAMES[backend]])),
      };
    },
  });
}
