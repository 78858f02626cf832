/**
 * A real `bin/vfiod.js serve` in a child process with its JSON log parsed as it comes, and guest I/O that never
 * pauses: for the tests that replace or kill the serving process under a running guest (live upgrade, crash
 * recovery). Uses the compiled dist/.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Status } from '../../src/spec/nvme.js';
import type { FakeHost } from './fake-sysfs.js';
import type { Guest } from './hypervisor.js';
import { pattern } from './nvme-harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const bin = path.join(root, 'bin', 'vfiod.js');

const BLOCK = 512;
/** Deadlines are generous: this runs on busy 2-core CI machines. Everything waits for events, not for time. */
export const PROCESS_DEADLINE_MS = 60_000;
export const IO_DEADLINE_MS = 30_000;

/** Every child started here, for the test's afterEach to kill. */
export const children: ChildProcess[] = [];

export type LogLine = Record<string, unknown>;

export interface Served {
  process: ChildProcess;
  lines: LogLine[];
  exited: Promise<number | null>;
  /** Resolves with the first log line (past or future) that matches. */
  waitFor(predicate: (line: LogLine) => boolean, what: string): Promise<LogLine>;
}

/** `bin/vfiod.js <command> <args>` (`serve` unless said otherwise). */
export function serve(args: string[], command: 'serve' | 'daemon' = 'serve'): Served {
  const proc = spawn(process.execPath, [bin, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  const lines: LogLine[] = [];
  const watchers: Array<{ predicate: (line: LogLine) => boolean; resolve: (line: LogLine) => void }> = [];
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let buffered = '';
  proc.stderr!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const text = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { raw: text };
      }
      lines.push(line);
      for (const watcher of watchers.slice()) {
        if (watcher.predicate(line)) {
          watchers.splice(watchers.indexOf(watcher), 1);
          watcher.resolve(line);
        }
      }
    }
  });
  const waitFor = (predicate: (line: LogLine) => boolean, what: string): Promise<LogLine> => {
    const seen = lines.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${PROCESS_DEADLINE_MS} ms: ${JSON.stringify(lines)}`)), PROCESS_DEADLINE_MS);
      watchers.push({
        predicate,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
      void exited.then((code) => {
        if (watchers.some((watcher) => watcher.predicate === predicate)) {
          clearTimeout(timer);
          reject(new Error(`vfiod exited (${code}) before ${what}: ${JSON.stringify(lines)}`));
        }
      });
    });
  };
  return { process: proc, lines, exited, waitFor };
}

/** A `vfiod daemon --crash-recovery` on a fake host: its holder process, API socket and a CLI runner against it. */
export interface CrashRecoveryDaemon {
  holder: Served;
  apiSocket: string;
  /** `vfiod <args> --daemon <apiSocket>` as a child process; rejects with its stderr on a non-zero exit. */
  cli(...args: string[]): Promise<{ stdout: string }>;
}

/** Starts `vfiod daemon --crash-recovery` with its state and namespaces in `dir` and waits for its API. */
export async function startCrashRecoveryDaemon(dir: string, host: FakeHost): Promise<CrashRecoveryDaemon> {
  const apiSocket = path.join(dir, 'vfiod.sock');
  const holder = serve(['--crash-recovery', '--socket', apiSocket, '--state-dir', path.join(dir, 'state'), '--namespace-dir', dir,
    '--sysfs-root', host.roots.sysfs, '--dev-root', host.roots.dev, '--proc-root', host.roots.proc], 'daemon');
  await holder.waitFor((line) => line['msg'] === 'listening' && line['component'] === 'daemon', 'the API listening');
  const cli = (...args: string[]): Promise<{ stdout: string }> =>
    promisify(execFile)(process.execPath, [bin, ...args, '--daemon', apiSocket], { timeout: PROCESS_DEADLINE_MS });
  return { holder, apiSocket, cli };
}

export const isListening = (line: LogLine): boolean => line['msg'] === 'listening' && line['component'] === 'controller';

export function readFileRange(file: string, offset: number, length: number): Uint8Array {
  const fd = openSync(file, 'r');
  try {
    const bytes = new Uint8Array(length);
    readSync(fd, bytes, 0, length, offset);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/** Guest I/O that never pauses: `lanes` loops, each writing a fresh pattern to its own LBAs and reading it back. */
export class Workload {
  writes = 0;
  reads = 0;
  /** Longest single command (ms): the pause the guest saw. */
  longestMillis = 0;
  readonly failures: string[] = [];
  /** LBA -> pattern seed of the last successful write there. */
  readonly written = new Map<number, number>();
  private running = true;
  private readonly done: Promise<void[]>;
  private readonly progressWaiters: Array<{ target: number; resolve: () => void }> = [];

  constructor(
    private readonly guest: Guest,
    lanes: number,
    private readonly blocksPerWrite: number,
    private readonly slotsPerLane: number,
  ) {
    this.done = Promise.all(Array.from({ length: lanes }, (_, lane) => this.lane(lane)));
  }

  get completed(): number {
    return this.writes + this.reads;
  }

  /** Resolves after `count` more commands completed. */
  progress(count: number): Promise<void> {
    const target = this.completed + count;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`I/O made no progress: ${this.completed}/${target}; ${this.failures.join('; ')}`)), IO_DEADLINE_MS);
      this.progressWaiters.push({
        target,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }

  private timed<T>(run: () => Promise<T>): Promise<T> {
    const started = performance.now();
    return run().finally(() => {
      this.longestMillis = Math.max(this.longestMillis, performance.now() - started);
    });
  }

  private async lane(lane: number): Promise<void> {
    const driver = this.guest.driver;
    let round = 0;
    while (this.running) {
      const slot = round % this.slotsPerLane;
      const lba = (lane * this.slotsPerLane + slot) * this.blocksPerWrite;
      const seed = lane * 1_000_000 + round + 1;
      const data = pattern(this.blocksPerWrite * BLOCK, seed);
      round++;
      try {
        const write = await this.timed(() => driver.write(1, lba, data, { timeoutMillis: IO_DEADLINE_MS }));
        if (write.status !== Status.SUCCESS) throw new Error(`write at LBA ${lba}: status 0x${write.status.toString(16)}`);
        this.writes++;
        this.written.set(lba, seed);
        this.notify();
        const read = await this.timed(() => driver.read(1, lba, this.blocksPerWrite, { timeoutMillis: IO_DEADLINE_MS }));
        if (read.completion.status !== Status.SUCCESS) throw new Error(`read at LBA ${lba}: status 0x${read.completion.status.toString(16)}`);
        this.reads++;
        if (!equal(read.data, data)) throw new Error(`read at LBA ${lba} returned other data than written`);
        this.notify();
      } catch (error) {
        this.failures.push(`lane ${lane}: ${(error as Error).message}`);
        return;
      }
    }
  }

  private notify(): void {
    for (const waiter of this.progressWaiters.slice()) {
      if (this.completed >= waiter.target) {
        this.progressWaiters.splice(this.progressWaiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  }
}

export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}

