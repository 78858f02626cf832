/**
 * vfiod as an operator runs it, for the real-guest tests: `bin/vfiod.js serve` or `daemon` in a child process (the
 * compiled dist/), its JSON log lines collected, and waits on them; the CLI clients as child processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { REPO } from './vfio-guest.js';

export const VFIOD_BIN = path.join(REPO, 'bin', 'vfiod.js');

export type LogLine = Record<string, unknown> & { at: number };

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `bin/vfiod.js <args>` to completion (killed after `timeoutMs`). */
export function vfiodCli(args: string[], timeoutMs = 120_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [VFIOD_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d));
    proc.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`vfiod ${args.join(' ')} did not exit within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A running `vfiod serve` or `vfiod daemon`. */
export class VfiodProcess {
  readonly lines: LogLine[] = [];
  readonly exited: Promise<number | null>;
  exitCode: number | null | undefined;
  private buffered = '';

  private constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        resolve(code);
      }),
    );
    proc.stderr!.on('data', (chunk: Buffer) => {
      this.buffered += chunk.toString();
      let newline;
      while ((newline = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, newline);
        this.buffered = this.buffered.slice(newline + 1);
        try {
          this.lines.push({ ...(JSON.parse(line) as Record<string, unknown>), at: Date.now() });
        } catch {
          this.lines.push({ raw: line, at: Date.now() });
        }
      }
    });
  }

  /**
   * `vfiod <command> <args>`; resolves once it logs `listening` from `component` (daemon) or at all (serve), or, with
   * `ready`, the first line `ready` accepts (a `serve --take-over` logs `upgrade complete: serving`).
   */
  static async start(
    name: string,
    command: 'serve' | 'daemon',
    args: string[],
    timeoutMs = 120_000,
    ready?: { match: (line: LogLine) => boolean; what: string },
  ): Promise<VfiodProcess> {
    const proc = spawn(process.execPath, [VFIOD_BIN, command, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    const vfiod = new VfiodProcess(name, proc);
    const listening = (l: LogLine): boolean => l['msg'] === 'listening' && (command === 'serve' || l['component'] === 'daemon');
    await vfiod.waitForLog(ready?.match ?? listening, { timeoutMs, what: ready?.what ?? 'listening' });
    return vfiod;
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** Log lines with msg `msg` (from `since`, a Date.now() value). */
  logged(msg: string | RegExp, since = 0): LogLine[] {
    return this.lines.filter((l) => l.at >= since && (typeof msg === 'string' ? l['msg'] === msg : msg.test(String(l['msg'] ?? l['raw'] ?? ''))));
  }

  /** Log lines at level warn or above (and lines that are not JSON), from `since`. */
  problems(since = 0): LogLine[] {
    return this.lines.filter((l) => l.at >= since && (l['raw'] !== undefined || ['warn', 'error', 'fatal'].includes(String(l['level']))));
  }

  /** Resolves with the first line (from `since`) that `match` accepts; rejects when the process exits or at the deadline. */
  async waitForLog(match: (line: LogLine) => boolean, options: { timeoutMs?: number; since?: number; what?: string } = {}): Promise<LogLine> {
    const { timeoutMs = 120_000, since = 0, what = 'a log line' } = options;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find((l) => l.at >= since && match(l));
      if (found) return found;
      if (this.exitCode !== undefined) throw new Error(`${this.name}: exited (${this.exitCode}) before ${what}; log tail:\n${this.tail()}`);
      if (Date.now() > deadline) throw new Error(`${this.name}: no ${what} within ${timeoutMs} ms; log tail:\n${this.tail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  tail(count = 20): string {
    return this.lines.slice(-count).map(({ at: _at, ...rest }) => JSON.stringify(rest)).join('\n');
  }

  /** SIGTERM (vfiod flushes and exits 0), SIGKILL after `graceMs`; resolves with the exit code. */
  async stop(graceMs = 30_000): Promise<number | null> {
    if (this.exitCode !== undefined) return this.exitCode;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}
