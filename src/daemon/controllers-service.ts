/** vfiod.v1.ControllerService over the ControllerRegistry. */
import type * as grpc from '@grpc/grpc-js';
import type { AttachmentManager } from '../attach/attachments.js';
import { VfiodError } from '../util/errors.js';
import type { EventLog } from './events.js';
import type { RequestIds } from './request-ids.js';
import type { Logger } from '../util/log.js';
import { sameSocketFile } from '../util/socket-path.js';
import { type ControllerRegistry, type ControllerSpecInput, type ControllerView, percentileMicros } from '../serve/registry.js';
import { namespaceNsids } from '../serve/config.js';
import type { ControllerInfo } from './generated/vfiod/v1/ControllerInfo.js';
import type { ControllerState } from './generated/vfiod/v1/ControllerState.js';
import { implementService, requireText } from './requests.js';
import { operationMessage, type OperationTracker } from './operations.js';
import type { MoveProgress } from '../namespace/backing-swap.js';
import { formatSize } from '../util/size.js';
import type { ControllerIoLimits, IoLimits } from '../nvme/io-limits.js';
import type { ControllerLimits } from './generated/vfiod/v1/ControllerLimits.js';
import type { IoLimits as IoLimitsMessage } from './generated/vfiod/v1/IoLimits.js';

const CONTROLLER_STATES: Record<ControllerView['state'], ControllerState> = {
  starting: 'CONTROLLER_STATE_STARTING',
  serving: 'CONTROLLER_STATE_SERVING',
  stopping: 'CONTROLLER_STATE_STOPPING',
  failed: 'CONTROLLER_STATE_FAILED',
};

export function controllerInfo(view: ControllerView, sampleIntervalMs: number): ControllerInfo {
  const c = view.config;
  const s = view.snapshot;
  const latency = s?.stats.latency;
  const nsids = namespaceNsids(c);
  return {
    id: view.id,
    spec: {
      socketPath: c.socketPath,
      namespaces: c.namespaces,
      doorbellMode: c.doorbellMode === 'polled' ? 'DOORBELL_MODE_POLLED' : 'DOORBELL_MODE_INTERRUPT',
      socketMode: c.socketMode,
      msixVectors: c.msixVectors,
      maxIoQueuePairs: c.maxIoQueuePairs,
      maxQueueEntries: c.maxQueueEntries,
      mdtsPages: c.mdtsPages,
      identityPath: c.identityPath ?? '',
      identity: { ...c.identity },
      namespaceIdentities: c.namespaceIdentities ?? [],
      namespaceNsids: nsids,
      ...(c.ioLimits ? { limits: limitsInfo(c.ioLimits) } : {}),
    },
    state: CONTROLLER_STATES[view.state],
    error: view.error,
    ...(s ? { identity: s.identity } : {}),
    namespaces: s
      ? s.namespaces.map((n) => ({
          nsid: n.nsid,
          uri: c.namespaces[nsids.indexOf(n.nsid)] ?? '',
          backend: n.backend,
          blockSize: n.blockSize,
          blocks: n.blocks,
          identity: { nsid: n.nsid, ...n.ids, blockSize: n.blockSize },
        }))
      : [],
    ...(s && latency
      ? {
          stats: {
            nvmeState: s.stats.state,
            clientConnected: s.clientConnected,
            readCommands: s.stats.commands.read,
            writeCommands: s.stats.commands.write,
            otherIoCommands: s.stats.commands.otherIo,
            adminCommands: s.stats.commands.admin,
            failedCommands: s.stats.commands.failed,
            bytesRead: s.stats.bytesRead,
            bytesWritten: s.stats.bytesWritten,
            readIops: view.rates.readIops,
            writeIops: view.rates.writeIops,
            readBytesPerSecond: view.rates.readBytesPerSecond,
            writeBytesPerSecond: view.rates.writeBytesPerSecond,
            sampleIntervalMs,
            inFlight: s.stats.inFlight,
            ioQueues: s.stats.ioSubmissionQueues,
            resets: s.stats.resets,
            scratchLimitBytes: s.stats.scratch.limitBytes,
            scratchUsedBytes: s.stats.scratch.usedBytes,
            scratchPeakBytes: s.stats.scratch.peakBytes,
            scratchWaitingCommands: s.stats.scratch.waitingCommands,
            throttledCommands: s.stats.throttled.now,
            throttledCommandsTotal: s.stats.throttled.total,
            latency: {
              buckets: latency.bucketsMicros,
              count: latency.count,
              meanUs: latency.count ? latency.totalMicros / latency.count : 0,
              maxUs: latency.maxMicros,
              p50Us: percentileMicros(latency.bucketsMicros, 0.5),
              p99Us: percentileMicros(latency.bucketsMicros, 0.99),
            },
          },
        }
      : {}),
    createdAt: view.createdAt,
  };
}

/** A controller's rate limits as the control API's ControllerLimits (zeros for what is not limited). */
function limitsInfo(limits: ControllerIoLimits): ControllerLimits {
  const scope = (l: IoLimits): IoLimitsMessage => ({ iops: l.iops ?? 0, bytesPerSecond: l.bytesPerSecond ?? 0, burstIos: l.burstIos ?? 0, burstBytes: l.burstBytes ?? 0 });
  return {
    ...(limits.controller ? { controller: scope(limits.controller) } : {}),
    namespaces: (limits.namespaces ?? []).map(({ nsid, ...l }) => ({ nsid, limits: scope(l) })),
  };
}

/** For the event log: "controller iops=1000; namespace 2 bytesPerSecond=10485760", or "none". */
function describeLimits(limits: ControllerIoLimits | undefined): string {
  const scope = (l: IoLimits): string => Object.entries(l).filter(([key]) => key !== 'nsid').map(([key, value]) => `${key}=${String(value)}`).join(' ');
  const parts = [...(limits?.controller ? [`controller ${scope(limits.controller)}`] : []), ...(limits?.namespaces ?? []).map((n) => `namespace ${n.nsid} ${scope(n)}`)];
  return parts.length ? parts.join('; ') : 'none';
}

export function controllerService(deps: {
  registry: ControllerRegistry;
  attachments: AttachmentManager;
  events: EventLog;
  requestIds: RequestIds;
  operations: OperationTracker;
  logger: Logger;
}): grpc.UntypedServiceImplementation {
  const { registry, attachments, events, requestIds, operations } = deps;
  const logger = deps.logger.child({ service: 'ControllerService' });
  const info = (view: ControllerView): ControllerInfo => controllerInfo(view, registry.sampleIntervalMs);
  const publishNamespaceChange = (id: string, action: string, detail: string): void => {
    events.publish({ resourceType: 'controller', resourceName: `controllers/${id}`, action, vmId: '', detail });
  };
  return implementService('ControllerService', logger, {
    CreateController: async (request) => {
      const id = requireText(request.id, 'id', 'the controller id');
      return requestIds.once('CreateController', request, async () => {
        const view = await registry.create(id, request.spec ?? {});
        events.publish({ resourceType: 'controller', resourceName: `controllers/${id}`, action: 'CREATED', vmId: '', detail: `${view.state} on ${view.config.socketPath}` });
        return { controller: info(view) };
      });
    },
    DeleteController: async (request) => {
      const id = requireText(request.id, 'id', 'the controller id');
      // A VM still using it would lose its disk under the guest. Only a detach-pending attachment with no hypervisor
      // connected lets it go: that VM is gone (its VMM did not answer the detach) and nothing can use the socket.
      const view = await registry.get(id);
      // By any name of its socket: an attachment may have named it through a symlinked directory.
      const users = attachments.list().filter((a) => a.source.kind === 'vfio-user' && sameSocketFile(a.source.socketPath, view.config.socketPath));
      const connected = view.snapshot?.clientConnected ?? false;
      const blocking = users.filter((a) => a.state !== 'detach-pending' || connected);
      if (blocking.length) {
        const where = blocking.map((a) => `VM ${a.vmId} as ${a.deviceId} (${a.state})`).join(', ');
        throw new VfiodError('FAILED_PRECONDITION', `controller ${id} is attached to ${where}${connected ? ', a hypervisor is connected' : ''}: detach it first (DetachDevice)`, {
          reason: 'CONTROLLER_ATTACHED',
          controllerId: id,
          vmId: blocking[0]!.vmId,
          deviceId: blocking[0]!.deviceId,
          attachments: blocking.map((a) => `${a.vmId}/${a.deviceId}`),
          clientConnected: connected,
          violations: blocking.map((a) => ({
            type: 'CONTROLLER_ATTACHED' as const,
            subject: `attachment:${a.vmId}/${a.deviceId}`,
            description: `attached to VM ${a.vmId} as ${a.deviceId} (${a.state})`,
          })),
        });
      }
      if (users.length) logger.warn('deleting a controller whose VM is gone without a completed detach', { controller: id, attachments: users.map((a) => `${a.vmId}/${a.deviceId}`) });
      await registry.delete(id);
      events.publish({ resourceType: 'controller', resourceName: `controllers/${id}`, action: 'DELETED', vmId: '', detail: 'deleted' });
      return {};
    },
    ListControllers: async () => ({ controllers: (await registry.list()).map(info) }),
    GetController: async (request) => ({
      controller: info(await registry.get(requireText(request.id, 'id', 'the controller id'))),
    }),
    AttachNamespace: async (request) => {
      const id = requireText(request.id, 'id', 'the controller id');
      const uri = requireText(request.uri, 'uri', 'the namespace URI');
      // Without an NSID a retry would attach the disk a second time: the request id makes it answer the first call's.
      return requestIds.once('AttachNamespace', request, async () => {
        const { view, nsid } = await registry.attachNamespace(id, request.nsid, uri, request.identity);
        publishNamespaceChange(id, 'NAMESPACE_ATTACHED', `namespace ${nsid}: ${uri}`);
        return { controller: info(view), nsid };
      });
    },
    DetachNamespace: async (request) => {
      const id = requireText(request.id, 'id', 'the controller id');
      const view = await registry.detachNamespace(id, request.nsid);
      publishNamespaceChange(id, 'NAMESPACE_DETACHED', `namespace ${request.nsid}`);
      return { controller: info(view) };
    },
    ResizeNamespace: async (request) => {
      const id = requireText(request.id, 'id', 'the controller id');
      const view = await registry.resizeNamespace(id, request.nsid, request.sizeBytes);
      publishNamespaceChange(id, 'NAMESPACE_RESIZED', `namespace ${request.nsid}: ${request.sizeBytes} bytes`);
      return { controller: info(view) };
    },
    SwapNamespaceBacking: async (request) => {
      const id = requireText(request.id, 'id', 'the controller id');
      const uri = requireText(request.uri, 'uri', 'the new backing\'s URI');
      const plan = await registry.planSwap(id, request.nsid, uri, !request.alreadyCopied);
      const op = operations.start('swap-namespace-backing', '', '', '', { controllerId: id, nsid: plan.nsid });
      // Not a call's work: a daemon shutdown stops the copy (the old backing serving on) instead of waiting for it.
      void (async () => {
        try {
          const { view, outcome } = await plan.run((progress) => operations.progress(op, progressPercent(progress), progressStep(progress)));
          publishNamespaceChange(id, 'NAMESPACE_BACKING_SWAPPED', `namespace ${plan.nsid}: ${plan.uri} (commands held ${outcome.heldMs.toFixed(1)} ms)`);
          logger.info('namespace moved to another backing', { controller: id, nsid: plan.nsid, uri: plan.uri, ...outcome, operation: op.name });
          const value = {
            controller: info(view),
            copyPasses: outcome.passes,
            copiedBytes: outcome.copiedBytes,
            heldMs: outcome.heldMs,
            finalPassBytes: outcome.finalBytes,
          };
          operations.finish(op, 'succeeded', { response: { typeName: 'SwapNamespaceBackingResponse', value } });
        } catch (error) {
          operations.finish(op, 'failed', { error });
        }
      })();
      return { operation: operationMessage(op) };
    },
    SetControllerLimits: async (request) => {
      const id = requireText(request.id, 'id', 'the controller id');
      const view = await registry.setLimits(id, request.limits ?? undefined);
      events.publish({ resourceType: 'controller', resourceName: `controllers/${id}`, action: 'LIMITS_SET', vmId: '', detail: describeLimits(view.config.ioLimits) });
      return { controller: info(view) };
    },
  });
}

/** A move's progress in percent: the full copy to 90, the passes after it to 98, the switch 99 (finish says 100). */
function progressPercent(progress: MoveProgress): number {
  if (progress.phase === 'final') return 99;
  const done = progress.passBytes > 0 ? progress.copiedBytes / progress.passBytes : 1;
  return progress.pass <= 1 ? Math.floor(90 * done) : Math.min(98, 90 + progress.pass);
}

function progressStep(progress: MoveProgress): string {
  if (progress.phase === 'final') return `switching: copying the last ${formatSize(progress.passBytes)} while the namespace's commands wait`;
  const what = progress.pass <= 1 ? 'copying' : `pass ${progress.pass}, copying what was written meanwhile`;
  return `${what}: ${formatSize(progress.copiedBytes)} of ${formatSize(progress.passBytes)}, ${formatSize(progress.dirtyBytes)} written since`;
}
