/**
 * `vfiod attachments [--vm <id>]`: what the daemon attached to VMs (AttachmentService.ListAttachments).
 */
import type { AttachmentInfo__Output as AttachmentInfo } from '../daemon/generated/vfiod/v1/AttachmentInfo.js';
import { CLIENT_EXIT, type ClientDeps, noPositionals, shortEnum, table } from './common.js';
import { CONNECTION_HELP, printJson, withClient } from './remote.js';

export const ATTACHMENTS_USAGE = `Usage: vfiod attachments [--vm <id>]

Devices attached to VMs through the daemon.

${CONNECTION_HELP}`;

function renderAttachments(attachments: AttachmentInfo[]): string {
  if (attachments.length === 0) return 'no attachments\n';
  const rows = [['VM', 'DEVICE ID', 'SOURCE', 'HYPERVISOR', 'STATE', 'GUEST', 'BOOT', 'NOTE']];
  for (const a of attachments) {
    const source = a.source?.pciBdf || a.source?.vfioUserSocket || a.source?.controllerId || '?';
    rows.push([
      a.vmId,
      a.deviceId,
      source,
      shortEnum(a.hypervisor, 'HYPERVISOR_KIND_'),
      shortEnum(a.state, 'ATTACHMENT_STATE_'),
      a.functions.map((f) => f.guestBdf || '-').join(','),
      a.bootIndex === undefined ? '-' : String(a.bootIndex),
      a.note ?? '',
    ]);
  }
  return table(rows);
}

export async function runAttachments(argv: string[], deps: ClientDeps = {}): Promise<number> {
  return withClient('attachments', ATTACHMENTS_USAGE, argv, { vm: { type: 'string' } } as const, deps, async (ctx, v, positionals) => {
    noPositionals(positionals);
    const response = await ctx.client.call('AttachmentService', 'ListAttachments', { vmId: v.vm ?? '' });
    if (ctx.json) printJson(ctx, response);
    else ctx.out(renderAttachments(response.attachments));
    return CLIENT_EXIT.ok;
  });
}
