/**
 * What the commands that talk to a running daemon over the control API share: the connection options, and
 * `withClient` (parse, connect, run, turn every failure into a message and an exit code).
 */
import { existsSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { ApiError, type ClientTarget, VfiodClient } from '../daemon/client.js';
import { DEFAULT_DAEMON_SOCKET } from '../daemon/server.js';
import { errorMessage } from '../util/errors.js';
import { CLIENT_EXIT, type ClientDeps, formatError, UsageError } from './common.js';

export const CONNECTION_HELP = `Connection options (every command):
  --daemon <socket|host:port>  the daemon (default $VFIOD_DAEMON or ${DEFAULT_DAEMON_SOCKET})
  --tls-ca <file>              TCP with TLS: CA of the daemon's certificate
  --tls-cert <file> --tls-key <file>   client certificate for mutual TLS
  --json                       print the API's response as JSON
`;

const connectionOptions = {
  daemon: { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/** The options of one command (connection options are added to them). */
export type CommandOptions = NonNullable<ParseArgsConfig['options']>;
type Parsed<O extends CommandOptions> = ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; tokens: true; options: typeof connectionOptions & O }>>;
/** A command's parsed option values, typed from its option table. */
export type Values<O extends CommandOptions> = Parsed<O>['values'];
export type Tokens<O extends CommandOptions> = Parsed<O>['tokens'];

function targetFrom(values: Values<Record<never, never>>): ClientTarget {
  const address = values.daemon ?? process.env['VFIOD_DAEMON'] ?? DEFAULT_DAEMON_SOCKET;
  const ca = values['tls-ca'];
  const cert = values['tls-cert'];
  const key = values['tls-key'];
  if ((cert || key) && !ca) throw new UsageError('--tls-cert/--tls-key need --tls-ca');
  if (Boolean(cert) !== Boolean(key)) throw new UsageError('mutual TLS needs both --tls-cert and --tls-key');
  return { address, ...(ca ? { tls: { ca, ...(cert ? { cert } : {}), ...(key ? { key } : {}) } } : {}) };
}

function exitForStatus(code: grpc.status): number {
  switch (code) {
    case grpc.status.NOT_FOUND:
      return CLIENT_EXIT.notFound;
    case grpc.status.INVALID_ARGUMENT:
      return CLIENT_EXIT.usage;
    case grpc.status.ALREADY_EXISTS:
    case grpc.status.UNAVAILABLE:
    case grpc.status.DEADLINE_EXCEEDED:
    case grpc.status.RESOURCE_EXHAUSTED:
      return CLIENT_EXIT.busy;
    default:
      return CLIENT_EXIT.failed;
  }
}

export interface Context {
  out: (text: string) => void;
  err: (text: string) => void;
  json: boolean;
  client: VfiodClient;
}

/** Parses, connects, runs `body`, and turns every failure into a message and an exit code. */
export async function withClient<O extends CommandOptions>(
  command: string,
  usage: string,
  argv: string[],
  options: O,
  deps: ClientDeps,
  body: (ctx: Context, values: Values<O>, positionals: string[], tokens: Tokens<O>) => Promise<number>,
): Promise<number> {
  const out = deps.stdout ?? ((t: string) => void process.stdout.write(t));
  const err = deps.stderr ?? ((t: string) => void process.stderr.write(t));
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, tokens: true, options: { ...connectionOptions, ...options } });
  } catch (error) {
    err(`vfiod ${command}: ${errorMessage(error)}\n${usage}`);
    return CLIENT_EXIT.usage;
  }
  // The connection options, which every command has.
  const values: Values<Record<never, never>> = parsed.values;
  if (values.help) {
    out(usage);
    return CLIENT_EXIT.ok;
  }
  let client: VfiodClient | undefined;
  try {
    const target = targetFrom(values);
    if (target.address.startsWith('/') && !existsSync(target.address)) {
      err(`vfiod ${command}: no daemon at ${target.address} (start it with 'vfiod daemon', or give --daemon <socket>)\n`);
      return CLIENT_EXIT.noDaemon;
    }
    client = new VfiodClient(target);
    return await body({ out, err, json: Boolean(values.json), client }, parsed.values, parsed.positionals, parsed.tokens);
  } catch (error) {
    if (error instanceof UsageError) {
      err(`vfiod ${command}: ${error.message}\n${usage}`);
      return CLIENT_EXIT.usage;
    }
    if (error instanceof ApiError) {
      if (values.json) out(`${JSON.stringify({ error: error.toJSON() }, null, 2)}\n`);
      err(`vfiod ${command}: ${formatError({ code: error.statusName, reason: error.reason, message: error.details, metadata: error.metadata, violations: error.violations })}\n`);
      return exitForStatus(error.code);
    }
    err(`vfiod ${command}: ${errorMessage(error)}\n`);
    return CLIENT_EXIT.failed;
  } finally {
    client?.close();
  }
}

export const printJson = (ctx: Context, value: unknown): void => ctx.out(`${JSON.stringify(value, null, 2)}\n`);
