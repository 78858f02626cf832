/**
 * Progress of a bench run on stderr: on a terminal one line redrawn in place (bar, point, ETA); otherwise one
 * structured log line per finished point, so CI logs stay readable.
 */
import type { Logger, LogSink } from '../util/log.js';

export interface ProgressOptions {
  total: number;
  /** Estimated seconds per point before any has finished. */
  estimateSeconds: number;
  stream?: NodeJS.WriteStream;
  logger: Logger;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export class Progress {
  private done = 0;
  private readonly startedMs = Date.now();
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private current = '';

  constructor(private readonly options: ProgressOptions) {
    this.stream = options.stream ?? process.stderr;
    this.tty = Boolean(this.stream.isTTY);
  }

  /** Seconds left: measured average per point once one has finished, the estimate before. */
  etaSeconds(): number {
    const left = this.options.total - this.done;
    const perPoint = this.done > 0 ? (Date.now() - this.startedMs) / 1000 / this.done : this.options.estimateSeconds;
    return left * perPoint;
  }

  start(label: string): void {
    this.current = label;
    if (this.tty) this.draw();
  }

  finish(label: string, fields: Record<string, unknown>): void {
    this.done++;
    if (this.tty) {
      this.draw();
    } else {
      this.options.logger.info('point done', {
        point: label, n: this.done, of: this.options.total, eta: formatDuration(this.etaSeconds()), ...fields,
      });
    }
  }

  get isTty(): boolean {
    return this.tty;
  }

  /** A log sink that writes each line above the bar and redraws the bar under it. */
  sink(): LogSink {
    return {
      write: (line) => {
        this.stream.write(`\r\x1b[2K${line}`);
        this.draw();
      },
    };
  }

  end(): void {
    if (this.tty) this.stream.write('\r\x1b[2K');
  }

  private draw(): void {
    if (!this.tty) return;
    const width = 24;
    const filled = Math.round((this.done / Math.max(1, this.options.total)) * width);
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    const columns = this.stream.columns || 100;
    const line = `[${bar}] ${this.done}/${this.options.total} ETA ${formatDuration(this.etaSeconds())}  ${this.current}`;
    this.stream.write(`\r\x1b[2K${line.slice(0, columns - 1)}`);
  }
}
