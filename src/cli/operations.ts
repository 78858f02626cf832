/**
 * `vfiod operations list|get|wait`: the daemon's long-running operations (OperationService), and what attach, detach
 * and swap-backing share: following an operation to its end while printing its progress.
 */
import * as grpc from '@grpc/grpc-js';
import { ApiError, present, type VfiodClient } from '../daemon/client.js';
import type { AttachDeviceResponse__Output } from '../daemon/generated/vfiod/v1/AttachDeviceResponse.js';
import type { DetachDeviceResponse__Output } from '../daemon/generated/vfiod/v1/DetachDeviceResponse.js';
import type { Operation__Output } from '../daemon/generated/vfiod/v1/Operation.js';
import type { SwapNamespaceBackingResponse__Output } from '../daemon/generated/vfiod/v1/SwapNamespaceBackingResponse.js';
import { unpackAny } from '../daemon/proto.js';
import { decodeStatus } from '../daemon/status-details.js';
import { CLIENT_EXIT, type ClientDeps, UsageError, milliseconds, shortEnum, subcommandHelp, table } from './common.js';
import { CONNECTION_HELP, type Context, printJson, withClient } from './remote.js';

export const OPERATIONS_USAGE = `Usage: vfiod operations list [--vm <id>] [--running]
       vfiod operations get <name>
       vfiod operations wait <name> [--timeout <s>]

The daemon's long-running operations (attach, detach, a namespace's move to another backing), kept across
daemon restarts. wait prints the progress
and ends with the operation's exit code: 0 succeeded, 4 detach pending, else as the error's status.

${CONNECTION_HELP}`;

/** vfiod.v1.Operation as the client receives it. */
export type Operation = Operation__Output;

/** The responses an operation can hold, by message name. */
interface OperationResponses {
  AttachDeviceResponse: AttachDeviceResponse__Output;
  DetachDeviceResponse: DetachDeviceResponse__Output;
  SwapNamespaceBackingResponse: SwapNamespaceBackingResponse__Output;
}

/** How often a followed operation is asked for its progress. */
const POLL_MS = 200;

/**
 * The operation's response unpacked (SUCCEEDED), else undefined; an error when it holds another message than
 * `typeName` (unpackAny decodes it with the loader's options, so it has the generated output type).
 */
export function operationResponse<N extends keyof OperationResponses>(op: Operation, typeName: N): OperationResponses[N] | undefined {
  if (!op.response) return undefined;
  const unpacked = unpackAny(op.response);
  if (unpacked.typeName !== `vfiod.v1.${typeName}`) throw new Error(`${op.name}: the response is a ${unpacked.typeName}, not a vfiod.v1.${typeName}`);
  return unpacked.value as unknown as OperationResponses[N];
}

/** The response of an operation that succeeded, or an error naming the RPC when it has none. */
export function succeededResponse<N extends keyof OperationResponses>(op: Operation, typeName: N, rpc: string): OperationResponses[N] {
  return present(operationResponse(op, typeName), rpc, `response in ${op.name}`);
}

/** The operation with its response and error decoded, for --json. */
export function operationJson(op: Operation): Record<string, unknown> {
  const error = op.error;
  return {
    ...op,
    response: op.response ? unpackAny(op.response).value : null,
    error: error ? { code: grpc.status[error.code] ?? error.code, message: error.message, reason: error.reason, metadata: error.metadata } : null,
  };
}

/** The error an operation ended with, as a failed call would have carried it. */
export function operationError(op: Operation, rpc: string): ApiError | undefined {
  return op.error ? new ApiError(op.error.code, op.error.message, rpc, decodeStatus(op.error.statusDetails)) : undefined;
}

/**
 * Polls the operation until it is done, printing each new step to `progress` (stderr); the operation as it ended.
 * Gives up waiting (with the operation still running) after `timeoutMs`.
 */
export async function followOperation(client: VfiodClient, op: Operation, progress: ((text: string) => void) | undefined, timeoutMs = Number.POSITIVE_INFINITY): Promise<Operation> {
  const deadline = Date.now() + timeoutMs;
  let current = op;
  let shown = '';
  for (;;) {
    const line = `  [${String(current.progressPercent).padStart(3)}%] ${current.step}\n`;
    if (progress && !current.done && line !== shown) progress(line);
    shown = line;
    if (current.done || Date.now() >= deadline) return current;
    const wait = Math.max(1, Math.min(POLL_MS, deadline - Date.now()));
    const answer = await client.call('OperationService', 'WaitOperation', { name: op.name, timeoutMs: wait }, wait + 30_000);
    current = present(answer.operation, 'WaitOperation', 'operation');
  }
}

function operationsTable(ops: Operation[]): string {
  const rows = [['NAME', 'KIND', 'STATE', 'PROGRESS', 'VM', 'DEVICE', 'CREATED', 'STEP']];
  for (const op of ops) {
    rows.push([op.name, shortEnum(op.kind, 'OPERATION_KIND_'), shortEnum(op.state, 'OPERATION_STATE_'), `${op.progressPercent}%`, op.vmId, op.deviceId || '-', op.createTime, op.step]);
  }
  return table(rows);
}

/** Exit code of a finished operation: 0 succeeded, 4 detach pending, otherwise as its error's status. */
function exitOf(op: Operation): number {
  if (op.state === 'OPERATION_STATE_SUCCEEDED') return CLIENT_EXIT.ok;
  if (op.state === 'OPERATION_STATE_DETACH_PENDING') return CLIENT_EXIT.busy;
  if (op.state === 'OPERATION_STATE_RUNNING') return CLIENT_EXIT.busy;
  return CLIENT_EXIT.failed;
}

function printOperation(ctx: Context, op: Operation): void {
  if (ctx.json) return printJson(ctx, operationJson(op));
  ctx.out(`${op.name}\n  kind:     ${shortEnum(op.kind, 'OPERATION_KIND_')}\n  state:    ${shortEnum(op.state, 'OPERATION_STATE_')} (${op.progressPercent}%)\n`);
  if (op.controllerId) ctx.out(`  controller: ${op.controllerId}, namespace ${op.nsid}\n`);
  ctx.out(`  vm:       ${op.vmId}\n  device:   ${op.deviceId || '-'}\n  step:     ${op.step}\n  created:  ${op.createTime}\n  updated:  ${op.updateTime}\n`);
  if (op.requestId) ctx.out(`  request:  ${op.requestId}\n`);
  const error = operationError(op, 'operation');
  if (error) ctx.out(`  error:    ${error.statusName}${error.reason ? ` ${error.reason}` : ''}: ${error.details}\n`);
}

export async function runOperations(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const help = subcommandHelp(argv[0], OPERATIONS_USAGE, deps);
  if (help !== undefined) return help;
  const [sub, ...rest] = argv;
  const options = { vm: { type: 'string' }, running: { type: 'boolean' }, timeout: { type: 'string' } } as const;
  return withClient(`operations ${sub}`, OPERATIONS_USAGE, rest, options, deps, async (ctx, v, positionals) => {
    const name = (): string => {
      if (positionals.length !== 1) throw new UsageError('give one operation name (operations/<uuid>)');
      return positionals[0]!;
    };
    switch (sub) {
      case 'list': {
        const response = await ctx.client.call('OperationService', 'ListOperations', { vmId: v.vm ?? '', runningOnly: Boolean(v.running) });
        if (ctx.json) printJson(ctx, { operations: response.operations.map(operationJson) });
        else ctx.out(operationsTable(response.operations));
        return CLIENT_EXIT.ok;
      }
      case 'get': {
        printOperation(ctx, present((await ctx.client.call('OperationService', 'GetOperation', { name: name() })).operation, 'GetOperation', 'operation'));
        return CLIENT_EXIT.ok;
      }
      case 'wait': {
        const start = present((await ctx.client.call('OperationService', 'GetOperation', { name: name() })).operation, 'GetOperation', 'operation');
        const op = await followOperation(ctx.client, start, ctx.json ? undefined : ctx.err, milliseconds('--timeout', v.timeout));
        printOperation(ctx, op);
        return exitOf(op);
      }
      default:
        throw new UsageError(`unknown subcommand '${String(sub)}'`);
    }
  });
}
