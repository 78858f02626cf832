/**
 * `vfiod controllers list|get|create|delete|attach-namespace|detach-namespace|resize-namespace|swap-backing|set-limits`:
 * the daemon's emulated NVMe controllers (ControllerService).
 * Human tables by default, the API's messages with --json.
 */
import { present } from '../daemon/client.js';
import type { ControllerInfo__Output as ControllerInfo } from '../daemon/generated/vfiod/v1/ControllerInfo.js';
import { CONTROLLER_LIMITS } from '../serve/config.js';
import type { NamespaceIdentityOverride } from '../serve/identity-store.js';
import { MAX_NSID } from '../nvme/namespaces.js';
import { parseSize } from '../util/size.js';
import {
  bytes,
  CLIENT_EXIT,
  CONTROLLER_OPTIONS,
  type ClientDeps,
  UsageError,
  integer,
  rate,
  shortEnum,
  socketMode,
  subcommandHelp,
  table,
} from './common.js';
import { controllerIdentityOptions, type IdentityOptionValues, namespaceIdentityOptions, namespaceNsidOptions } from './identity-options.js';
import { CONNECTION_HELP, printJson, withClient } from './remote.js';
import { followOperation, operationError, operationJson, succeededResponse } from './operations.js';
import { limitsMessage, limitOptions } from './limit-options.js';

/** A controller's options, and swap-backing's. */
const CONTROLLERS_COMMAND_OPTIONS = {
  ...CONTROLLER_OPTIONS,
  'already-copied': { type: 'boolean' },
  'no-wait': { type: 'boolean' },
} as const;

export const CONTROLLERS_USAGE = `Usage: vfiod controllers <command> [options]

Emulated NVMe controllers run by the daemon (each on its own vfio-user socket, in its own thread).

Commands:
  list                                  controllers, state, client, I/O rates
  get <id>                              one controller: spec, identity, namespaces, stats, latency histogram
  create <id> --socket <path> --namespace <uri>... [--nsid <n>]... [--poll] [--serial <s>] [--model <m>]
         [--firmware <f>] [--nqn <nqn>] [--ieee-oui <hex>] [--controller-id <n>]
         [--namespace-identity <nsid>:<key>=<value>,...]...
         [--msix-vectors <n>] [--io-queues <n>] [--queue-entries <n>] [--mdts <n>] [--identity <path>]
         [--limit [<nsid>:]iops=<n>,bandwidth=<size>,burst-ios=<n>,burst-bytes=<size>]...
  delete <id>                           stop it (flushes its namespaces) and forget it
  attach-namespace <id> <uri> [--nsid <n>] [--namespace-identity <nsid>:<key>=<value>,...]
                                        add a namespace while it serves (default: the lowest free NSID,
                                        or the identity's), with the ids it shows (default: the slot's
                                        persisted ones, or new); the guest sees it without a reboot
  detach-namespace <id> <nsid>          remove a namespace while it serves (commands in flight complete)
  resize-namespace <id> <nsid> <size>   grow a file or memory namespace (e.g. 2G); shrinking is refused
  swap-backing <id> <nsid> <uri> [--already-copied] [--no-wait]
                                        move a namespace to another backing while the guest does I/O: copy,
                                        then switch (the guest sees no change); prints the progress.
                                        --already-copied: the new backing holds the data, only switch;
                                        --no-wait: print the operation and return ('vfiod operations wait')
  set-limits <id> [--limit [<nsid>:]<key>=<value>,...]...
                                        replace its I/O rate limits while it serves (none: unlimited);
                                        keys iops, bandwidth (bytes/s, e.g. 200M), burst-ios, burst-bytes;
                                        reads and writes count together; a limited guest sees latency

${CONNECTION_HELP}`;

function renderControllerList(controllers: ControllerInfo[]): string {
  if (controllers.length === 0) return 'no controllers\n';
  const rows = [['ID', 'STATE', 'SOCKET', 'NAMESPACES', 'DOORBELLS', 'CLIENT', 'READ IOPS', 'WRITE IOPS', 'READ', 'WRITTEN']];
  for (const c of controllers) {
    const s = c.stats;
    const spec = present(c.spec, 'ListControllers', `controller ${c.id}: spec`);
    rows.push([
      c.id,
      shortEnum(c.state, 'CONTROLLER_STATE_') + (c.error ? ` (${c.error})` : ''),
      spec.socketPath,
      spec.namespaces.join(','),
      shortEnum(spec.doorbellMode, 'DOORBELL_MODE_'),
      s ? (s.clientConnected ? 'yes' : 'no') : '-',
      s ? rate(s.readIops) : '-',
      s ? rate(s.writeIops) : '-',
      s ? bytes(s.bytesRead) : '-',
      s ? bytes(s.bytesWritten) : '-',
    ]);
  }
  return table(rows);
}

function renderController(c: ControllerInfo): string {
  const spec = present(c.spec, 'GetController', `controller ${c.id}: spec`);
  const lines = [
    `controller ${c.id}: ${shortEnum(c.state, 'CONTROLLER_STATE_')}${c.error ? ` (${c.error})` : ''}, created ${c.createdAt}`,
    `socket:      ${spec.socketPath} (mode 0${Number(spec.socketMode).toString(8)})`,
    `doorbells:   ${shortEnum(spec.doorbellMode, 'DOORBELL_MODE_')}; ${spec.msixVectors} MSI-X vectors, ${spec.maxIoQueuePairs} I/O queue pairs x ${spec.maxQueueEntries} entries, MDTS ${spec.mdtsPages}`,
  ];
  const id = c.identity;
  if (id) {
    const oui = (id.ieeeOui ?? 0).toString(16).padStart(6, '0');
    lines.push(`identity:    serial ${id.serialNumber}, model ${id.modelNumber}, firmware ${id.firmwareRevision}, ${id.subsystemNqn}, IEEE OUI ${oui}, controller ID ${id.controllerId ?? 0}`);
  }
  if (spec.identityPath) lines.push(`persisted:   ${spec.identityPath}`);
  const limits = spec.limits;
  if (limits && (limits.controller || limits.namespaces.length)) {
    const scope = (l: { iops: number; bytesPerSecond: number; burstIos: number; burstBytes: number }): string =>
      [l.iops && `${l.iops} IOPS`, l.bytesPerSecond && `${bytes(l.bytesPerSecond)}/s`, l.burstIos && `burst ${l.burstIos} I/Os`, l.burstBytes && `burst ${bytes(l.burstBytes)}`].filter(Boolean).join(', ');
    const parts = [...(limits.controller ? [`controller ${scope(limits.controller)}`] : []), ...limits.namespaces.map((n) => `namespace ${n.nsid} ${n.limits ? scope(n.limits) : ''}`)];
    lines.push(`limits:      ${parts.join('; ')} (reads and writes together)`);
  }
  const namespaces = c.namespaces ?? [];
  if (namespaces.length) {
    lines.push('namespaces:');
    for (const n of namespaces) {
      lines.push(`  ${n.nsid}: ${n.uri} (${n.backend}), ${n.blocks} x ${n.blockSize} B = ${bytes(n.blocks * n.blockSize)}`);
      if (n.identity) lines.push(`     nguid ${n.identity.nguid}, eui64 ${n.identity.eui64}, uuid ${n.identity.uuid}`);
    }
  } else lines.push(`namespaces:  ${spec.namespaces.join(', ')}`);
  const s = c.stats;
  if (s) {
    lines.push(
      `nvme:        ${s.nvmeState}, client ${s.clientConnected ? 'connected' : 'not connected'}, ${s.ioQueues} I/O queues, ${s.inFlight} in flight, ${s.resets} resets`,
      `commands:    ${s.readCommands} reads, ${s.writeCommands} writes, ${s.otherIoCommands} other I/O, ${s.adminCommands} admin, ${s.failedCommands} failed`,
      `data:        ${bytes(s.bytesRead)} read, ${bytes(s.bytesWritten)} written`,
      ...(s.throttledCommandsTotal ? [`throttled:   ${s.throttledCommands} commands waiting for a rate limit now, ${s.throttledCommandsTotal} so far`] : []),
      `scratch:     ${bytes(s.scratchUsedBytes ?? 0)} of ${bytes(s.scratchLimitBytes ?? 0)} in use, peak ${bytes(s.scratchPeakBytes ?? 0)}, ${s.scratchWaitingCommands ?? 0} commands waiting`,
      `rates:       ${rate(s.readIops)} read IOPS, ${rate(s.writeIops)} write IOPS, ${bytes(s.readBytesPerSecond)}/s read, ${bytes(s.writeBytesPerSecond)}/s written (over ${s.sampleIntervalMs} ms)`,
    );
    const l = s.latency;
    if (l && l.count > 0) {
      lines.push(`latency:     ${l.count} I/Os, mean ${l.meanUs.toFixed(1)} us, p50 <= ${l.p50Us} us, p99 <= ${l.p99Us} us, max ${l.maxUs.toFixed(1)} us`);
      const peak = Math.max(...l.buckets);
      l.buckets.forEach((n, i) => {
        if (n > 0) lines.push(`  ${`${2 ** i}-${2 ** (i + 1)} us`.padEnd(18)} ${String(n).padStart(10)} ${'#'.repeat(Math.max(1, Math.round((n / peak) * 40)))}`);
      });
    }
  }
  return lines.join('\n') + '\n';
}

export async function runControllers(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const [command, ...rest] = argv;
  const help = subcommandHelp(command, CONTROLLERS_USAGE, deps);
  if (help !== undefined) return help;
  return withClient(`controllers ${command}`, CONTROLLERS_USAGE, rest, CONTROLLERS_COMMAND_OPTIONS, deps, async (ctx, v, positionals) => {
    const idArg = (): string => {
      if (positionals.length !== 1) throw new UsageError(`${command} takes one controller id`);
      return positionals[0]!;
    };
    switch (command) {
      case 'list': {
        const response = await ctx.client.call('ControllerService', 'ListControllers', {});
        if (ctx.json) printJson(ctx, response);
        else ctx.out(renderControllerList(response.controllers));
        return CLIENT_EXIT.ok;
      }
      case 'get': {
        const response = await ctx.client.call('ControllerService', 'GetController', { id: idArg() });
        if (ctx.json) printJson(ctx, response);
        else ctx.out(renderController(present(response.controller, 'GetController', 'controller')));
        return CLIENT_EXIT.ok;
      }
      case 'create': {
        const id = idArg();
        if (!v.socket) throw new UsageError('create needs --socket <path>');
        if (!v.namespace?.length) throw new UsageError('create needs at least one --namespace <uri> (e.g. memory:1G)');
        const nsids = namespaceNsidOptions(v);
        const spec = {
          socketPath: v.socket,
          namespaces: v.namespace,
          doorbellMode: v.poll ? ('DOORBELL_MODE_POLLED' as const) : ('DOORBELL_MODE_INTERRUPT' as const),
          socketMode: v['socket-mode'] === undefined ? undefined : socketMode(v['socket-mode']),
          msixVectors: integer('--msix-vectors', v['msix-vectors'], ...CONTROLLER_LIMITS.msixVectors),
          maxIoQueuePairs: integer('--io-queues', v['io-queues'], ...CONTROLLER_LIMITS.maxIoQueuePairs),
          maxQueueEntries: integer('--queue-entries', v['queue-entries'], ...CONTROLLER_LIMITS.maxQueueEntries),
          // The API cannot ask for MDTS 0 (no limit): proto3 reads 0 as "default".
          mdtsPages: integer('--mdts', v.mdts, 1, CONTROLLER_LIMITS.mdtsPages[1]),
          identityPath: v.identity,
          identity: controllerIdentityOptions(v),
          namespaceIdentities: namespaceIdentityOptions(v),
          namespaceNsids: nsids,
          ...(v.limit?.length ? { limits: limitsMessage(limitOptions(v.limit, nsids.length ? nsids : v.namespace.map((_, index) => index + 1))) } : {}),
        };
        const response = await ctx.client.call('ControllerService', 'CreateController', { id, spec });
        if (ctx.json) printJson(ctx, response);
        else {
          const created = present(response.controller, 'CreateController', 'controller');
          ctx.out(`created controller ${id} on ${present(created.spec, 'CreateController', 'controller.spec').socketPath}\n${renderController(created)}`);
        }
        return CLIENT_EXIT.ok;
      }
      case 'delete': {
        const id = idArg();
        await ctx.client.call('ControllerService', 'DeleteController', { id });
        if (ctx.json) printJson(ctx, { deleted: id });
        else ctx.out(`deleted controller ${id}\n`);
        return CLIENT_EXIT.ok;
      }
      case 'attach-namespace': {
        if (positionals.length !== 2) throw new UsageError('attach-namespace takes a controller id and a namespace URI');
        const [id, uri] = positionals as [string, string];
        const { nsid, identity } = attachedSlot(v);
        const response = await ctx.client.call('ControllerService', 'AttachNamespace', { id, uri, nsid, ...(identity ? { identity } : {}) });
        if (ctx.json) printJson(ctx, response);
        else ctx.out(`attached ${uri} to controller ${id} as namespace ${response.nsid}\n${renderController(present(response.controller, 'AttachNamespace', 'controller'))}`);
        return CLIENT_EXIT.ok;
      }
      case 'detach-namespace': {
        if (positionals.length !== 2) throw new UsageError('detach-namespace takes a controller id and an NSID');
        const id = positionals[0]!;
        const nsid = integer('<nsid>', positionals[1]!, 1, MAX_NSID);
        const response = await ctx.client.call('ControllerService', 'DetachNamespace', { id, nsid });
        if (ctx.json) printJson(ctx, response);
        else ctx.out(`detached namespace ${nsid} from controller ${id}\n${renderController(present(response.controller, 'DetachNamespace', 'controller'))}`);
        return CLIENT_EXIT.ok;
      }
      case 'resize-namespace': {
        if (positionals.length !== 3) throw new UsageError('resize-namespace takes a controller id, an NSID and a size');
        const id = positionals[0]!;
        const nsid = integer('<nsid>', positionals[1]!, 1, MAX_NSID);
        let sizeBytes: number;
        try {
          sizeBytes = parseSize(positionals[2]!);
        } catch (error) {
          throw new UsageError(`<size>: ${(error as Error).message}`);
        }
        const response = await ctx.client.call('ControllerService', 'ResizeNamespace', { id, nsid, sizeBytes });
        if (ctx.json) printJson(ctx, response);
        else ctx.out(`namespace ${nsid} of controller ${id} is ${bytes(sizeBytes)}\n${renderController(present(response.controller, 'ResizeNamespace', 'controller'))}`);
        return CLIENT_EXIT.ok;
      }
      case 'swap-backing': {
        if (positionals.length !== 3) throw new UsageError('swap-backing takes a controller id, an NSID and the new backing\'s URI');
        const id = positionals[0]!;
        const nsid = integer('<nsid>', positionals[1]!, 1, MAX_NSID)!;
        const uri = positionals[2]!;
        const started = await ctx.client.call('ControllerService', 'SwapNamespaceBacking', { id, nsid, uri, alreadyCopied: Boolean(v['already-copied']) });
        const operation = present(started.operation, 'SwapNamespaceBacking', 'operation');
        if (v['no-wait']) {
          if (ctx.json) printJson(ctx, operationJson(operation));
          else ctx.out(`${operation.name}\n`);
          return CLIENT_EXIT.ok;
        }
        if (!ctx.json) ctx.err(`moving namespace ${nsid} of controller ${id} to ${uri} (${operation.name}):\n`);
        const op = await followOperation(ctx.client, operation, ctx.json ? undefined : ctx.err);
        const error = operationError(op, 'SwapNamespaceBacking');
        if (error) throw error;
        const response = succeededResponse(op, 'SwapNamespaceBackingResponse', 'SwapNamespaceBacking');
        if (ctx.json) printJson(ctx, { ...response, operation: operationJson(op) });
        else {
          const controller = present(response.controller, 'SwapNamespaceBacking', 'controller');
          const now = controller.namespaces.find((n) => n.nsid === nsid);
          ctx.out(
            `namespace ${nsid} of controller ${id} is on ${now?.uri ?? uri}: ${response.copyPasses} copy passes, ${bytes(response.copiedBytes)} copied, ` +
              `its commands waited ${response.heldMs.toFixed(1)} ms (the last ${bytes(response.finalPassBytes)} copied then)\n`,
          );
        }
        return CLIENT_EXIT.ok;
      }
      case 'set-limits': {
        const id = idArg();
        const limits = limitOptions(v.limit);
        const response = await ctx.client.call('ControllerService', 'SetControllerLimits', { id, limits: limitsMessage(limits) });
        if (ctx.json) printJson(ctx, response);
        else ctx.out(`${limits ? 'set the rate limits of' : 'removed the rate limits of'} controller ${id}\n${renderController(present(response.controller, 'SetControllerLimits', 'controller'))}`);
        return CLIENT_EXIT.ok;
      }
      default:
        throw new UsageError(`unknown controllers command '${command}'`);
    }
  });
}

/**
 * attach-namespace's NSID (0: the daemon picks the lowest free one) and identity: --nsid <n> and/or one
 * --namespace-identity <nsid>:..., whose NSIDs must agree.
 */
function attachedSlot(values: IdentityOptionValues): { nsid: number; identity?: NamespaceIdentityOverride } {
  const nsids = namespaceNsidOptions(values);
  if (nsids.length > 1) throw new UsageError('attach-namespace takes one --nsid');
  const identities = namespaceIdentityOptions(values);
  if (identities.length > 1) throw new UsageError('attach-namespace takes one --namespace-identity');
  const identity = identities[0];
  const nsid = nsids[0] ?? identity?.nsid ?? 0;
  if (identity && identity.nsid !== nsid) throw new UsageError(`--namespace-identity is for NSID ${identity.nsid}, but --nsid is ${nsid}`);
  return { nsid, ...(identity ? { identity } : {}) };
}
