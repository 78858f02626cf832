/**
 * What the `vfiod` commands share: exit codes, the usage error, option checks, the table printer and number
 * formats. Light on purpose (main.ts loads it for every command); talking to a daemon is in remote.ts.
 *
 * Exit codes: 0 ok, 1 failed, 2 usage / INVALID_ARGUMENT, 3 NOT_FOUND, 4 busy (ALREADY_EXISTS, UNAVAILABLE,
 * DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED), 5 needs attention, 6 no daemon reachable.
 */
import { normalizeBdf } from '../util/pci-address.js';
import { applyLogOptions as applyLogging, LogOptionRefused } from '../util/log.js';
import { MetricsAddressRefused, type MetricsAddress, parseMetricsAddress } from '../metrics/address.js';
import { CONTROLLER_FLAGS } from '../config/flags.js';

/** The exit codes of every command. */
export const EXIT = { ok: 0, failed: 1, usage: 2, notFound: 3, busy: 4, attention: 5 } as const;

/** The exit codes of the commands that talk to the daemon: one more, no daemon to talk to. */
export const CLIENT_EXIT = { ...EXIT, noDaemon: 6 } as const;

export interface ClientDeps {
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
}

/** A usage mistake on the command line: exit code 2, with the command's usage where it has one. */
export class UsageError extends Error {}

/** Prints a command's usage for `vfiod <command>` without a subcommand, or with help; undefined when there is one. */
export function subcommandHelp(command: string | undefined, usage: string, deps: ClientDeps): number | undefined {
  if (command !== undefined && command !== 'help' && command !== '--help' && command !== '-h') return undefined;
  (deps.stdout ?? ((t: string) => void process.stdout.write(t)))(usage);
  return command === undefined ? CLIENT_EXIT.usage : CLIENT_EXIT.ok;
}

/** An API enum name as the CLI prints it: CONTROLLER_STATE_SERVING -> serving. */
export const shortEnum = (value: string | null | undefined, prefix: string): string => String(value ?? '').replace(prefix, '').toLowerCase().replace(/_/g, '-');

export function integer(option: string, text: string, min: number, max: number): number;
export function integer(option: string, text: string | undefined, min: number, max: number): number | undefined;
export function integer(option: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) throw new UsageError(`${option} must be an integer from ${min} to ${max}, not '${text}'`);
  return value;
}

export function milliseconds(option: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+(\.\d+)?$/.test(text)) throw new UsageError(`${option} must be a number of seconds, not '${text}'`);
  return Math.round(Number(text) * 1000);
}

export function bdfOption(option: string, text: string): string {
  const bdf = normalizeBdf(text);
  if (!bdf) throw new UsageError(`${option}: '${text}' is not a PCI address (expected 0000:01:00.1 or 01:00.1)`);
  return bdf;
}

/** --vfio-backend auto|group|iommufd as the control API's enum (auto: UNSPECIFIED, the daemon's rule). */
export function vfioBackendOption(text: string | undefined): 'VFIO_BACKEND_UNSPECIFIED' | 'VFIO_BACKEND_GROUP' | 'VFIO_BACKEND_IOMMUFD' {
  if (text === undefined || text === 'auto') return 'VFIO_BACKEND_UNSPECIFIED';
  if (text === 'group') return 'VFIO_BACKEND_GROUP';
  if (text === 'iommufd') return 'VFIO_BACKEND_IOMMUFD';
  throw new UsageError(`--vfio-backend must be auto, group or iommufd, not '${text}'`);
}

/** --socket-mode: a file mode in octal, like 0600. */
export function socketMode(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text)) throw new UsageError(`--socket-mode must be octal like 0600, not '${text}'`);
  return parseInt(text, 8);
}

/** Their lines of a command's usage, descriptions starting at `column` (where the command's own start). */
export function serviceUsage(column: number): string {
  const options: Array<[string, string[]]> = [
    ['--log-level <level>', ['debug, info, warn or error (default info)']],
    ['--log-format <format>', ['text (one readable line per record) or json (one JSON object per line);', 'default: text on a terminal, json otherwise']],
    ['--metrics <address>', ['serve Prometheus metrics at http://<address>/metrics: host:port', "(loopback only, e.g. 127.0.0.1:9464) or a unix socket path (with a '/');", 'off by default']],
    ['--metrics-allow-remote', ['let --metrics listen on a non-loopback address']],
  ];
  return options
    .map(([option, lines]) => lines.map((line, index) => (index === 0 ? `  ${option}`.padEnd(column) : ' '.repeat(column)) + line + '\n').join(''))
    .join('');
}

/** Applies --log-level and --log-format (for this process and the threads and processes it starts). */
export function applyLogOptions(values: { 'log-level'?: string | undefined; 'log-format'?: string | undefined }): void {
  try {
    applyLogging(values['log-level'], values['log-format']);
  } catch (error) {
    if (error instanceof LogOptionRefused) throw new UsageError(error.message);
    throw error;
  }
}

/** --metrics and --metrics-allow-remote: where the endpoint listens, or undefined (off). */
export function metricsOption(values: { metrics?: string | undefined; 'metrics-allow-remote'?: boolean | undefined }): MetricsAddress | undefined {
  if (values.metrics === undefined) {
    if (values['metrics-allow-remote']) throw new UsageError('--metrics-allow-remote goes with --metrics');
    return undefined;
  }
  try {
    return parseMetricsAddress(values.metrics, values['metrics-allow-remote'] === true);
  } catch (error) {
    if (error instanceof MetricsAddressRefused) throw new UsageError(`--metrics: ${error.message}`);
    throw error;
  }
}

/** The options that define an emulated controller: `vfiod serve` and `vfiod controllers create` (src/config/flags.ts). */
export const CONTROLLER_OPTIONS = CONTROLLER_FLAGS;

/** Rejects positional arguments for commands that take none. */
export function noPositionals(positionals: string[]): void {
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
}

export const rate = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0));
export const bytes = (n: number): string => {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) if (n >= size) return `${(n / size).toFixed(1)}${unit}`;
  return `${n}B`;
};

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

/** What an error line prints: the status, the reason, the message, and the facts (ErrorInfo metadata). */
export interface ErrorLine {
  code: string;
  reason?: string | undefined;
  message: string;
  metadata?: Record<string, string>;
  violations?: ReadonlyArray<{ type: string; subject: string; description: string }>;
}

/**
 * `FAILED_PRECONDITION DEVICE_IN_USE: <message> (bdf 0000:01:00.0, in_use ...)`, and each failed precondition on a
 * line of its own when there are several. A program should read `--json` instead.
 */
export function formatError(error: ErrorLine): string {
  const facts = Object.entries(error.metadata ?? {}).map(([key, value]) => `${key} ${value}`).join(', ');
  const lines = [`${error.code}${error.reason ? ` ${error.reason}` : ''}: ${error.message}${facts ? ` (${facts})` : ''}`];
  if ((error.violations?.length ?? 0) > 1) for (const v of error.violations!) lines.push(`  ${v.type} ${v.subject}: ${v.description}`);
  return lines.join('\n');
}
