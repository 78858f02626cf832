/**
 * Structured logging: one JSON object per line on stderr, so operators can grep and machines can parse.
 * Every line carries a `component` and whatever context the caller binds (device, queue, command).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

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

export class Logger {
  constructor(
    private readonly fields: LogFields = {},
    private readonly sink: LogSink = stderrSink,
  ) {}

  /** A logger that adds `fields` to every line it writes. */
  child(fields: LogFields): Logger {
    return new Logger({ ...this.fields, ...fields }, this.sink);
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
    this.sink.write(JSON.stringify(record, jsonReplacer) + '\n');
  }
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
  const logger = new Logger({}, { write: (line) => lines.push(JSON.parse(line) as LogFields) });
  return { logger, lines };
}
