/**
 * `vfiod detach`: hot-unplugs a device through the daemon, waits for the guest to let go, then gives it back to its
 * host driver (AttachmentService.DetachDevice).
 */
import { bdfOption, CLIENT_EXIT, type ClientDeps, UsageError, milliseconds, noPositionals } from './common.js';
import { CONNECTION_HELP, printJson, withClient } from './remote.js';

export const DETACH_USAGE = `Usage: vfiod detach --vm <id> (--device-id <id> | --bdf <bdf>) [--timeout <s>] [--keep-claimed]

Hot-unplugs a device, waits for the guest to let go (default 30 s), then gives it back to its host driver.
On timeout the device stays claimed (exit 4); run the command again to wait again.

${CONNECTION_HELP}`;

export async function runDetach(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const options = { vm: { type: 'string' }, 'device-id': { type: 'string' }, bdf: { type: 'string' }, timeout: { type: 'string' }, 'keep-claimed': { type: 'boolean' } } as const;
  return withClient('detach', DETACH_USAGE, argv, options, deps, async (ctx, v, positionals) => {
    noPositionals(positionals);
    if (!v.vm) throw new UsageError('--vm <id> is required');
    if (!v['device-id'] && !v.bdf) throw new UsageError('give --device-id <id> or --bdf <bdf>');
    const waitSeconds = (milliseconds('--timeout', v.timeout) ?? 30_000) / 1000;
    if (!ctx.json) ctx.err(`detaching ${v['device-id'] ?? v.bdf} from VM ${v.vm}: waiting up to ${waitSeconds} s for the guest to release it...\n`);
    const response = await ctx.client.call(
      'AttachmentService',
      'DetachDevice',
      {
        vmId: v.vm,
        deviceId: v['device-id'] ?? '',
        bdf: v.bdf ? bdfOption('--bdf', v.bdf) : '',
        timeoutMs: milliseconds('--timeout', v.timeout) ?? 0,
        keepClaimed: Boolean(v['keep-claimed']),
      },
      (milliseconds('--timeout', v.timeout) ?? 30_000) + 60_000,
    );
    if (ctx.json) printJson(ctx, response);
    else ctx.out(`detached ${response.deviceId} from VM ${response.vmId}${response.released.length ? `; released ${response.released.join(', ')} to the host` : ''}\n`);
    return CLIENT_EXIT.ok;
  });
}
