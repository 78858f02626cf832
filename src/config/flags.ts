/**
 * The options of `vfiod daemon` and `vfiod serve`, one table per command: the command line is parsed with it
 * (node:util parseArgs takes the entries as they are) and the configuration file's JSON Schema is derived from it
 * (file.ts). An option is either settable in the file (`file`: what its value must be) or says why it is not
 * (`commandLineOnly`), so a new option cannot be forgotten in either: add one line here (docs/config.md).
 */
import { MAX_NSID } from '../nvme/identify.js';
import { MAX_CONTROLLER_ID } from '../nvme/identity.js';
import { CONTROLLER_LIMITS } from '../serve/config.js';
import { LOG_FORMATS, LOG_LEVELS } from '../util/log.js';

/** What a value in the configuration file must be: its JSON Schema and the error message when it is not. */
export interface FileValue {
  schema: Record<string, unknown>;
  /** "must be ...", the message of a file error at this key. */
  expects: string;
}

interface OptionShape {
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
}

/** One option: settable in the file, or only on the command line (and why). */
export type FlagSpec = OptionShape & ({ file: FileValue; commandLineOnly?: never } | { commandLineOnly: string; file?: never });

export type FlagTable = Record<string, FlagSpec>;

const integer = (min: number, max: number): FileValue => ({
  schema: { type: 'integer', minimum: min, maximum: max },
  expects: `must be an integer from ${min} to ${max}`,
});

/** The kinds of values the options take. */
export const VALUE = {
  switch: { schema: { type: 'boolean' }, expects: 'must be true or false' },
  absolutePath: { schema: { type: 'string', pattern: '^/' }, expects: 'must be an absolute path' },
  text: { schema: { type: 'string', minLength: 1 }, expects: 'must be a non-empty string' },
  // Quoted: YAML reads an unquoted 0600 as the decimal number 600.
  octalMode: { schema: { type: 'string', pattern: '^0?[0-7]{3}$' }, expects: "must be a file mode in octal, quoted, like '0600'" },
  hostPort: { schema: { type: 'string', pattern: '^(\\[[^\\]]+\\]|[^:\\s]+):[0-9]{1,5}$' }, expects: 'must be host:port, like 127.0.0.1:50051 or [::1]:50051' },
  logLevel: { schema: { type: 'string', enum: [...LOG_LEVELS] }, expects: `must be one of ${LOG_LEVELS.join(', ')}` },
  logFormat: { schema: { type: 'string', enum: [...LOG_FORMATS] }, expects: `must be one of ${LOG_FORMATS.join(', ')}` },
  metricsAddress: {
    schema: { type: 'string', pattern: '^(/|[^\\s/]+:[0-9]{1,5}$)' },
    expects: 'must be host:port (loopback unless metrics-allow-remote, e.g. 127.0.0.1:9464) or an absolute unix socket path',
  },
  // Quoted: YAML reads an unquoted 000001 as a number.
  ieeeOui: { schema: { type: 'string', pattern: '^(0[xX])?[0-9a-fA-F]{2}([-:]?[0-9a-fA-F]{2}){2}$' }, expects: "must be 6 hex digits, quoted, like '5cd2e4'" },
  namespaceIdentity: {
    schema: { type: 'string', pattern: '^[1-9][0-9]*:[a-z-]+=' },
    expects: 'must be <nsid>:<key>=<value>[,<key>=<value>]... with keys nguid, eui64, uuid, block-size',
  },
  ioLimit: {
    schema: { type: 'string', pattern: '^([1-9][0-9]*:)?[a-z-]+=' },
    expects: 'must be [<nsid>:]<key>=<value>[,<key>=<value>]... with keys iops, bandwidth, burst-ios, burst-bytes',
  },
  namespaceUri: {
    schema: { type: 'string', pattern: '^(memory:|file:|nvme-tcp://)' },
    expects: 'must be a namespace URI: memory:<size>, file:<path>[?...] or nvme-tcp://<host>:<port>/<NQN>?nsid=<n>',
  },
} as const satisfies Record<string, FileValue>;

const INTERNAL = 'internal: the crash-recovery holder adds it';

/** Options of both long-running commands (logging, metrics): one line here is an option and a key of both. */
const PROCESS_FLAGS = {
  'log-level': { type: 'string', file: VALUE.logLevel },
  'log-format': { type: 'string', file: VALUE.logFormat },
  metrics: { type: 'string', file: VALUE.metricsAddress },
  'metrics-allow-remote': { type: 'boolean', file: VALUE.switch },
} as const satisfies FlagTable;

const CONFIG_FILE_OPTIONS = {
  config: { type: 'string', commandLineOnly: 'it names the configuration file' },
  'no-config': { type: 'boolean', commandLineOnly: 'it makes vfiod ignore the file' },
  help: { type: 'boolean', short: 'h', commandLineOnly: 'it prints the usage' },
} as const satisfies FlagTable;

/** The options that define an emulated controller: `vfiod serve` and `vfiod controllers create`. */
export const CONTROLLER_FLAGS = {
  socket: { type: 'string', file: VALUE.absolutePath },
  namespace: { type: 'string', multiple: true, file: VALUE.namespaceUri },
  nsid: { type: 'string', multiple: true, file: integer(1, MAX_NSID) },
  poll: { type: 'boolean', file: VALUE.switch },
  'socket-mode': { type: 'string', file: VALUE.octalMode },
  'msix-vectors': { type: 'string', file: integer(...CONTROLLER_LIMITS.msixVectors) },
  'io-queues': { type: 'string', file: integer(...CONTROLLER_LIMITS.maxIoQueuePairs) },
  'queue-entries': { type: 'string', file: integer(...CONTROLLER_LIMITS.maxQueueEntries) },
  mdts: { type: 'string', file: integer(...CONTROLLER_LIMITS.mdtsPages) },
  identity: { type: 'string', file: VALUE.absolutePath },
  serial: { type: 'string', file: VALUE.text },
  model: { type: 'string', file: VALUE.text },
  firmware: { type: 'string', file: VALUE.text },
  nqn: { type: 'string', file: VALUE.text },
  'ieee-oui': { type: 'string', file: VALUE.ieeeOui },
  'controller-id': { type: 'string', file: integer(0, MAX_CONTROLLER_ID) },
  'namespace-identity': { type: 'string', multiple: true, file: VALUE.namespaceIdentity },
  limit: { type: 'string', multiple: true, file: VALUE.ioLimit },
} as const satisfies FlagTable;

/** Most I/O abandon delay, in ms. */
export const IO_ABANDON_MAX_MS = 3_600_000;
/** Most emulated controllers a daemon may be asked to run at once. */
export const MAX_CONTROLLERS_LIMIT = 100_000;
/** Most events --event-retention and --event-stream-max-lag may name. */
export const EVENT_COUNT_MAX = 10_000_000;
/** Largest uid or gid --read-only-uid/-gid and --admin-uid/-gid take (Linux ids are 32 bits). */
export const UNIX_ID_MAX = 0xffffffff;

/** `vfiod serve`: the `serve:` section of the file. */
export const SERVE_FLAGS = {
  ...CONTROLLER_FLAGS,
  'io-abandon-ms': { type: 'string', file: integer(0, IO_ABANDON_MAX_MS) },
  ...PROCESS_FLAGS,
  'handover-socket': { type: 'string', file: VALUE.absolutePath },
  'take-over': { type: 'boolean', commandLineOnly: 'it is one start of a live upgrade; vfiod upgrade adds it' },
  'report-to-parent': { type: 'boolean', commandLineOnly: 'internal: vfiod upgrade adds it' },
  'crash-recovery': { type: 'boolean', file: VALUE.switch },
  'holder-socket': { type: 'string', file: VALUE.absolutePath },
  json: { type: 'boolean', file: VALUE.switch },
  'data-plane': { type: 'boolean', commandLineOnly: INTERNAL },
  standby: { type: 'boolean', commandLineOnly: INTERNAL },
  ...CONFIG_FILE_OPTIONS,
} as const satisfies FlagTable;

/** `vfiod daemon`: the `daemon:` section of the file. */
export const DAEMON_FLAGS = {
  socket: { type: 'string', file: VALUE.absolutePath },
  'socket-mode': { type: 'string', file: VALUE.octalMode },
  'no-socket': { type: 'boolean', file: VALUE.switch },
  tcp: { type: 'string', file: VALUE.hostPort },
  'tls-cert': { type: 'string', file: VALUE.absolutePath },
  'tls-key': { type: 'string', file: VALUE.absolutePath },
  'tls-ca': { type: 'string', file: VALUE.absolutePath },
  'insecure-tcp': { type: 'boolean', file: VALUE.switch },
  'insecure-tls-no-client-cert': { type: 'boolean', file: VALUE.switch },
  'read-only-uid': { type: 'string', multiple: true, file: integer(0, UNIX_ID_MAX) },
  'read-only-gid': { type: 'string', multiple: true, file: integer(0, UNIX_ID_MAX) },
  'admin-uid': { type: 'string', multiple: true, file: integer(0, UNIX_ID_MAX) },
  'admin-gid': { type: 'string', multiple: true, file: integer(0, UNIX_ID_MAX) },
  'read-only-client': { type: 'string', multiple: true, file: VALUE.text },
  'admin-client': { type: 'string', multiple: true, file: VALUE.text },
  'namespace-dir': { type: 'string', multiple: true, file: VALUE.absolutePath },
  'state-dir': { type: 'string', file: VALUE.absolutePath },
  'max-controllers': { type: 'string', file: integer(1, MAX_CONTROLLERS_LIMIT) },
  'event-retention': { type: 'string', file: integer(1, EVENT_COUNT_MAX) },
  'event-stream-max-lag': { type: 'string', file: integer(1, EVENT_COUNT_MAX) },
  'sysfs-root': { type: 'string', file: VALUE.absolutePath },
  'dev-root': { type: 'string', file: VALUE.absolutePath },
  'proc-root': { type: 'string', file: VALUE.absolutePath },
  ...PROCESS_FLAGS,
  'crash-recovery': { type: 'boolean', file: VALUE.switch },
  'holder-socket': { type: 'string', file: VALUE.absolutePath },
  'data-plane': { type: 'boolean', commandLineOnly: INTERNAL },
  standby: { type: 'boolean', commandLineOnly: INTERNAL },
  ...CONFIG_FILE_OPTIONS,
} as const satisfies FlagTable;

/** The sections of the configuration file: one per command. */
export const CONFIG_SECTIONS = { daemon: DAEMON_FLAGS, serve: SERVE_FLAGS } as const satisfies Record<string, FlagTable>;
export type ConfigSection = keyof typeof CONFIG_SECTIONS;

type ArgToken = { kind: string; name?: string; index: number; value?: string | undefined; inlineValue?: boolean | undefined };

/** `argv` without the options named, with their values (found by token, so a value is never mistaken for an option). */
export function withoutOptions(argv: string[], tokens: ReadonlyArray<ArgToken>, names: readonly string[]): string[] {
  const drop = new Set<number>();
  for (const token of tokens) {
    if (token.kind !== 'option' || !names.includes(token.name!)) continue;
    drop.add(token.index);
    if (token.value !== undefined && !token.inlineValue) drop.add(token.index + 1);
  }
  return argv.filter((_, index) => !drop.has(index));
}
