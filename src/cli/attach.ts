/**
 * `vfiod attach`: hot-plugs a host PCI function (prepared for VFIO on the way) or an emulated controller into a
 * running VM through the daemon (AttachmentService.AttachDevice), following the operation it starts to its end.
 */
import { randomUUID } from 'node:crypto';
import { present } from '../daemon/client.js';
import type { HypervisorEndpoint } from '../daemon/generated/vfiod/v1/HypervisorEndpoint.js';
import { bdfOption, CLIENT_EXIT, type ClientDeps, UsageError, integer, milliseconds, noPositionals, vfioBackendOption } from './common.js';
import { followOperation, operationError, operationJson, succeededResponse } from './operations.js';
import { CONNECTION_HELP, printJson, type Values, withClient } from './remote.js';

export const ATTACH_USAGE = `Usage: vfiod attach --vm <id> (--ch-socket <path> | --qmp-socket <path>)
                    (--bdf <bdf> | --vfio-user <socket> | --controller <id>) [options]

Hot-plugs a host PCI function (prepared for VFIO on the way) or an emulated controller into a running VM.

Options:
  --device-id <id>     the VMM's id for the device (default derived from the source)
  --boot-index <n>     QEMU bootindex
  --iommu              cloud-hypervisor: behind the virtual IOMMU
  --pci-segment <n>    cloud-hypervisor PCI segment
  --vfio-backend <b>   auto (default: iommufd only for vendor VFIO drivers and cdev-only devices), group or
                       iommufd (QEMU >= 9.0; cloud-hypervisor v48 has the group only)
  --ch-event-monitor <file>  cloud-hypervisor: the VM's --event-monitor file (unplug completes on its event)
  --force              prepare although the device is in use on the host
  --timeout <s>        per VMM call (default 10)
  --request-id <id>    AIP-155 request id (default: a new UUID); repeating the command with the same id and
                       options answers with the first attempt's operation instead of attaching again
  --no-wait            print the operation (its name for 'vfiod operations wait') and return at once

${CONNECTION_HELP}`;

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
  'vfio-backend': { type: 'string' },
  force: { type: 'boolean' },
  timeout: { type: 'string' },
  'request-id': { type: 'string' },
  'no-wait': { type: 'boolean' },
} as const;

function endpointOf(v: Values<typeof options>): HypervisorEndpoint {
  if (v['ch-socket'] && v['qmp-socket']) throw new UsageError('give --ch-socket or --qmp-socket, not both');
  if (v['ch-event-monitor'] && !v['ch-socket']) throw new UsageError('--ch-event-monitor goes with --ch-socket');
  if (v['ch-socket']) return { cloudHypervisorApiSocket: v['ch-socket'], ...(v['ch-event-monitor'] ? { cloudHypervisorEventMonitor: v['ch-event-monitor'] } : {}) };
  if (v['qmp-socket']) return { qemuQmpSocket: v['qmp-socket'] };
  throw new UsageError('the VM\'s hypervisor endpoint is required: --ch-socket <api socket> or --qmp-socket <qmp socket>');
}

export async function runAttach(argv: string[], deps: ClientDeps = {}): Promise<number> {
  return withClient('attach', ATTACH_USAGE, argv, options, deps, async (ctx, v, positionals) => {
    noPositionals(positionals);
    if (!v.vm) throw new UsageError('--vm <id> is required');
    const sources = [v.bdf ? { pciBdf: bdfOption('--bdf', v.bdf) } : undefined, v['vfio-user'] ? { vfioUserSocket: v['vfio-user'] } : undefined, v.controller ? { controllerId: v.controller } : undefined].filter(Boolean);
    if (sources.length !== 1) throw new UsageError('give exactly one of --bdf, --vfio-user, --controller');
    const started = await ctx.client.call('AttachmentService', 'AttachDevice', {
      vmId: v.vm,
      endpoint: endpointOf(v),
      source: sources[0],
      deviceId: v['device-id'] ?? '',
      bootIndex: integer('--boot-index', v['boot-index'], 0, 65535),
      iommu: Boolean(v.iommu),
      pciSegment: integer('--pci-segment', v['pci-segment'], 0, 65535) ?? 0,
      vfioBackend: vfioBackendOption(v['vfio-backend']),
      force: Boolean(v.force),
      timeoutMs: milliseconds('--timeout', v.timeout) ?? 0,
      requestId: v['request-id'] ?? randomUUID(),
    });
    const operation = present(started.operation, 'AttachDevice', 'operation');
    if (v['no-wait']) {
      if (ctx.json) printJson(ctx, operationJson(operation));
      else ctx.out(`${operation.name}\n`);
      return CLIENT_EXIT.ok;
    }
    if (!ctx.json) ctx.err(`attaching to VM ${v.vm} (${operation.name}):\n`);
    const op = await followOperation(ctx.client, operation, ctx.json ? undefined : ctx.err);
    const error = operationError(op, 'AttachDevice');
    if (error) throw error;
    const response = succeededResponse(op, 'AttachDeviceResponse', 'AttachDevice');
    if (ctx.json) printJson(ctx, { ...response, operation: operationJson(op) });
    else {
      const a = present(response.attachment, 'AttachDevice', 'attachment');
      ctx.out(`${response.changed ? 'attached' : 'already attached'} ${a.deviceId} to VM ${a.vmId}\n`);
      for (const f of a.functions) ctx.out(`  ${f.hostBdf || 'vfio-user'} -> ${f.vmmDeviceId}${f.guestBdf ? ` at guest ${f.guestBdf}` : ''}${f.bus ? ` on ${f.bus}` : ''}${f.hostBdf ? ` (${f.vfioBackend === 'VFIO_BACKEND_IOMMUFD' ? 'iommufd' : 'group'})` : ''}\n`);
      for (const w of response.warnings) ctx.out(`  warning: ${w}\n`);
    }
    return CLIENT_EXIT.ok;
  });
}
