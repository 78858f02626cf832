/**
 * `vfiod detach`: hot-unplugs a device through the daemon, waits for the guest to let go, then gives it back to its
 * host driver (AttachmentService.DetachDevice), following the operation it starts to its end.
 */
import { bdfOption, CLIENT_EXIT, type ClientDeps, UsageError, milliseconds, noPositionals } from './common.js';
import { present } from '../daemon/client.js';
import { followOperation, operationError, operationJson, succeededResponse } from './operations.js';
import { CONNECTION_HELP, printJson, withClient } from './remote.js';

export const DETACH_USAGE = `Usage: vfiod detach --vm <id> (--device-id <id> | --bdf <bdf>) [--timeout <s>] [--keep-claimed] [--no-wait]

Hot-unplugs a device, waits for the guest to let go (default 30 s), then gives it back to its host driver.
If the guest does not let go in time the operation ends detach-pending: the device stays claimed (exit 4); run
the command again to wait again. --no-wait prints the operation's name and returns at once.

${CONNECTION_HELP}`;

export async function runDetach(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const options = { vm: { type: 'string' }, 'device-id': { type: 'string' }, bdf: { type: 'string' }, timeout: { type: 'string' }, 'keep-claimed': { type: 'boolean' }, 'no-wait': { type: 'boolean' } } as const;
  return withClient('detach', DETACH_USAGE, argv, options, deps, async (ctx, v, positionals) => {
    noPositionals(positionals);
    if (!v.vm) throw new UsageError('--vm <id> is required');
    if (!v['device-id'] && !v.bdf) throw new UsageError('give --device-id <id> or --bdf <bdf>');
    const started = await ctx.client.call('AttachmentService', 'DetachDevice', {
      vmId: v.vm,
      deviceId: v['device-id'] ?? '',
      bdf: v.bdf ? bdfOption('--bdf', v.bdf) : '',
      timeoutMs: milliseconds('--timeout', v.timeout) ?? 0,
      keepClaimed: Boolean(v['keep-claimed']),
    });
    const operation = present(started.operation, 'DetachDevice', 'operation');
    if (v['no-wait']) {
      if (ctx.json) printJson(ctx, operationJson(operation));
      else ctx.out(`${operation.name}\n`);
      return CLIENT_EXIT.ok;
    }
    if (!ctx.json) ctx.err(`detaching ${started.deviceId} from VM ${v.vm} (${operation.name}):\n`);
    const op = await followOperation(ctx.client, operation, ctx.json ? undefined : ctx.err);
    // A detach-pending operation ends like a failed call: the message says the device stays claimed (exit 4).
    const error = operationError(op, 'DetachDevice');
    if (error) throw error;
    const response = succeededResponse(op, 'DetachDeviceResponse', 'DetachDevice');
    if (ctx.json) printJson(ctx, { ...response, operation: operationJson(op) });
    else ctx.out(`detached ${response.deviceId} from VM ${response.vmId}${response.released.length ? `; released ${response.released.join(', ')} to the host` : ''}\n`);
    return CLIENT_EXIT.ok;
  });
}
