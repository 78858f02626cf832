/**
 * Structured logging on stderr: one JSON object per line by default (machines parse it), or one readable line per
 * record (`--log-format text`, the default of the commands on a terminal). Either way each record has the same
 * fields, named once: time, level, msg, then component and whatever context the caller binds (controller, socket,
 * queue, command). Hot paths log nothing (they ask `enabled('debug')` first).
 */
/** The log levels, least severe first. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['json', 'text'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

const LEVEL_ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, unknown>;

export interface LogSink {
  write(line: string): void;
}

const stderrSink: LogSink = { write: (line) => process.stderr.write(line) };

let globalLevel: LogLevel = (process.env['VFIOD_LOG_LEVEL'] as LogLevel | undefined) ?? 'info';
if (!(globalLevel in LEVEL_ORDER)) globalLevel = 'info';
/** LEVEL_ORDER[globalLevel], kept as a number: `enabled` guards hot paths (a lookup by a variable key is not free). */
let globalOrder = LEVEL_ORDER[globalLevel];

/** Sets the level for this thread and for worker threads started after the call (they read VFIOD_LOG_LEVEL). */
export function setLogLevel(level: LogLevel): void {
  globalLevel = level;
  globalOrder = LEVEL_ORDER[level];
  // Each worker thread has its own copy of this module; its environment is a copy of ours when it starts.
  process.env['VFIOD_LOG_LEVEL'] = level;
}

let globalFormat: LogFormat = process.env['VFIOD_LOG_FORMAT'] === 'text' ? 'text' : 'json';

/** Sets the line format for this thread and for worker threads started after the call (they read VFIOD_LOG_FORMAT). */
export function setLogFormat(format: LogFormat): void {
  globalFormat = format;
  process.env['VFIOD_LOG_FORMAT'] = format;
}

/** What a command uses without --log-format: text on a terminal, JSON lines otherwise (a journal, a file, a pipe). */
export function defaultLogFormat(): LogFormat {
  return process.stderr.isTTY ? 'text' : 'json';
}

/** A --log-level or --log-format value that is not one; the message says what is allowed. */
export class LogOptionRefused extends Error {}

/**
 * A long-running command's --log-level and --log-format (either may be absent): applied to this process and to the
 * threads and processes it starts. Without --log-format, defaultLogFormat().
 */
export function applyLogOptions(level: string | undefined, format: string | undefined): void {
  if (level !== undefined && !Object.hasOwn(LEVEL_ORDER, level)) throw new LogOptionRefused(`--log-level must be debug, info, warn or error, not '${level}'`);
  if (format !== undefined && !LOG_FORMATS.includes(format as LogFormat)) throw new LogOptionRefused(`--log-format must be text or json, not '${format}'`);
  if (level !== undefined) setLogLevel(level as LogLevel);
  setLogFormat((format as LogFormat | undefined) ?? defaultLogFormat());
}

export class Logger {
  /** `format`: this logger's own (tests); without it, the thread's (setLogFormat). */
  constructor(
    private readonly fields: LogFields = {},
    private readonly sink: LogSink = stderrSink,
    private readonly format?: LogFormat,
  ) {}

  /** The fields this logger adds to every line (to hand to a worker thread, which builds its own logger). */
  get boundFields(): Readonly<LogFields> {
    return this.fields;
  }

  /** A logger that adds `fields` to every line it writes (a field it already has takes the new value). */
  child(fields: LogFields): Logger {
    return new Logger({ ...this.fields, ...fields }, this.sink, this.format);
  }

  enabled(level: LogLevel): boolean {
    // 'debug' first: it is the level hot paths ask about, and a constant comparison avoids a keyed lookup.
    return (level === 'debug' ? LEVEL_ORDER.debug : LEVEL_ORDER[level]) >= globalOrder;
  }

  debug(msg: string, fields?: LogFields): void {
    this.log('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.log('error', msg, fields);
  }

  log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (!this.enabled(level)) return;
    const record: LogFields = { time: new Date().toISOString(), level, msg, ...this.fields, ...fields };
    this.sink.write(((this.format ?? globalFormat) === 'text' ? textLine(record) : JSON.stringify(record, jsonReplacer)) + '\n');
  }
}

/**
 * `2026-12-07T12:00:00.000Z INFO  controller created component=controllers controller=vm1 socket=/run/vfiod/vm1.sock`:
 * the time, the level, the message, then every other field as key=value (values JSON-encoded when they are not a
 * plain word, so the line still splits unambiguously).
 */
function textLine(record: LogFields): string {
  const { time, level, msg, ...fields } = record;
  const parts = [String(time), String(level).toUpperCase().padEnd(5), String(msg)];
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const plain = typeof value === 'string' && /^[^\s"=]+$/.test(value);
    parts.push(`${key}=${plain ? value : JSON.stringify(value, jsonReplacer)}`);
  }
  return parts.join(' ');
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return '0x' + value.toString(16);
  if (value instanceof Error) return { name: value.name, message: value.message, ...(value as unknown as LogFields) };
  return value;
}

/** The root logger; components derive children with `rootLogger.child({ component: '...' })`. */
export const rootLogger = new Logger();

/** A logger that collects lines in memory (tests assert on what operators would see). */
export function memoryLogger(): { logger: Logger; lines: LogFields[] } {
  const lines: LogFields[] = [];
  const logger = new Logger({}, { write: (line) => lines.push(JSON.parse(line) as LogFields) }, 'json');
  return { logger, lines };
}
