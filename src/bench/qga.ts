/**
 * Running commands inside a VM for in-guest bench targets: through the QEMU guest agent (qemu-ga, JSON over a unix
 * socket: guest-exec + guest-exec-status, output base64) — the standard channel into a QEMU VM without networking —
 * or through a command prefix such as `ssh vm`. Both take an argv of plain words (no shell quoting needed: a command
 * prefix like ssh joins them with spaces) and bytes for stdin, and give back exit code, stdout and stderr.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { sleep } from '../util/sleep.js';

export interface GuestCommandResult {
  /** Exit status; null when killed by a signal (or by the timeout). */
  exitCode: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
  /** Host clock (ms since the epoch) when the command was seen to finish. */
  endedMs: number;
  timedOut: boolean;
}

export interface GuestRunOptions {
  input?: string;
  timeoutMs: number;
  /** Called once the command runs in the guest. */
  onStart?: () => void;
}

/** How commands reach the guest; `describe` names the channel in errors. */
export interface GuestExec {
  readonly describe: string;
  run(argv: string[], options: GuestRunOptions): Promise<GuestCommandResult>;
  close(): void;
}

/** The guest cannot be reached at all (as opposed to a command that ran and failed). */
export class GuestUnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuestUnreachableError';
  }
}

export class QgaError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly description: string,
  ) {
    super(`guest agent: ${command} failed: ${errorClass}: ${description}`);
    this.name = 'QgaError';
  }
}

type Json = Record<string, unknown>;

const CONNECT_TIMEOUT_MS = 5_000;
/** guest-sync answers at once from a live agent; a silent one is not running in the guest (or not on this port). */
const SYNC_TIMEOUT_MS = 10_000;
const COMMAND_TIMEOUT_MS = 30_000;

const MAX_PENDING_CHARS = 32 << 20;

/** A connection to qemu-ga's socket (the host end of the VM's org.qemu.guest_agent.0 port). One command at a time. */
export class QgaClient {
  private buffer = '';
  private waiting: ((line: string | Error) => void) | undefined;
  private closedError: Error | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly socketPath: string,
    private readonly socket: net.Socket,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      this.deliver();
      // A guest that never ends its answer must not grow host memory without bound; qemu-ga's own output limit
      // (16 MiB, base64 in JSON) stays far below this.
      if (this.buffer.length > MAX_PENDING_CHARS) {
        this.closedError ??= new QgaError('(answer)', 'ProtocolError', `guest agent ${socketPath}: more than ${MAX_PENDING_CHARS} characters without a line end; connection closed`);
        this.buffer = '';
        socket.destroy();
      }
    });
    const closed = (error?: Error): void => {
      this.closedError ??= new GuestUnreachableError(`guest agent ${socketPath}: connection closed${error ? `: ${error.message}` : ''}`);
      this.waiting?.(this.closedError);
      this.waiting = undefined;
    };
    socket.on('error', closed);
    socket.on('close', () => closed());
  }

  /** Connects and synchronises (guest-sync with a fresh id drops answers left over from an earlier client). */
  static async connect(socketPath: string, options: { syncTimeoutMs?: number } = {}): Promise<QgaClient> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(socketPath);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new GuestUnreachableError(`guest agent ${socketPath}: no connection within ${CONNECT_TIMEOUT_MS} ms`));
      }, CONNECT_TIMEOUT_MS);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (error) => {
        clearTimeout(timer);
        reject(new GuestUnreachableError(`guest agent ${socketPath}: cannot connect: ${error.message}`));
      });
    });
    const client = new QgaClient(socketPath, socket);
    try {
      await client.sync(options.syncTimeoutMs ?? SYNC_TIMEOUT_MS);
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  private deliver(): void {
    let newline;
    while (this.waiting && (newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line === '') continue;
      const waiting = this.waiting;
      this.waiting = undefined;
      waiting(line);
    }
  }

  private nextLine(timeoutMs: number, what: string): Promise<string> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        const error = new GuestUnreachableError(`guest agent ${this.socketPath}: no answer to ${what} within ${timeoutMs} ms (is qemu-ga running in the guest?)`);
        // A late answer would be taken for the next command's: this connection is done.
        this.closedError ??= error;
        this.socket.destroy();
        reject(error);
      }, timeoutMs);
      this.waiting = (line) => {
        clearTimeout(timer);
        if (line instanceof Error) reject(line);
        else resolve(line);
      };
      this.deliver();
    });
  }

  private async sync(timeoutMs: number): Promise<void> {
    const id = Math.floor(Math.random() * 2 ** 31);
    this.socket.write(JSON.stringify({ execute: 'guest-sync', arguments: { id } }) + '\n');
    for (;;) {
      const line = await this.nextLine(timeoutMs, 'guest-sync');
      try {
        if ((JSON.parse(line) as Json)['return'] === id) return;
      } catch {
        /* a partial answer from before: keep reading */
      }
    }
  }

  /** Runs one agent command and returns its `return` value; agent errors become QgaError. */
  execute(command: string, args?: Json, timeoutMs = COMMAND_TIMEOUT_MS): Promise<unknown> {
    const run = async (): Promise<unknown> => {
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
      const line = await this.nextLine(timeoutMs, command);
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw new QgaError(command, 'ProtocolError', `not JSON: ${line.slice(0, 200)}`);
      }
      // The guest writes this: `null` or an array would otherwise fail below with a TypeError and no context.
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new QgaError(command, 'ProtocolError', `not a JSON object: ${line.slice(0, 200)}`);
      }
      const answer = parsed as Json;
      const error = answer['error'] as Json | undefined;
      if (error) throw new QgaError(command, String(error['class'] ?? 'Error'), String(error['desc'] ?? JSON.stringify(error)));
      if (!('return' in answer)) throw new QgaError(command, 'ProtocolError', `no 'return' in ${line.slice(0, 200)}`);
      return answer['return'];
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  close(): void {
    this.socket.destroy();
  }
}

const decode = (data: unknown): string => (typeof data === 'string' ? Buffer.from(data, 'base64').toString('utf8') : '');

/** Commands through qemu-ga: guest-exec with captured output, polled with guest-exec-status. */
export class QgaExec implements GuestExec {
  readonly describe: string;
  private constructor(private readonly client: QgaClient) {
    this.describe = `guest agent ${client.socketPath}`;
  }

  static async connect(socketPath: string): Promise<QgaExec> {
    return new QgaExec(await QgaClient.connect(socketPath));
  }

  async run(argv: string[], options: GuestRunOptions): Promise<GuestCommandResult> {
    const started = (await this.client.execute('guest-exec', {
      path: argv[0],
      arg: argv.slice(1),
      'capture-output': true,
      ...(options.input !== undefined ? { 'input-data': Buffer.from(options.input).toString('base64') } : {}),
    })) as { pid: number };
    options.onStart?.();
    const deadline = Date.now() + options.timeoutMs;
    let delay = 20;
    for (;;) {
      const status = (await this.client.execute('guest-exec-status', { pid: started.pid })) as Json;
      if (status['exited'] === true) {
        const signal = status['signal'];
        return {
          exitCode: typeof status['exitcode'] === 'number' ? status['exitcode'] : null,
          ...(typeof signal === 'number' ? { signal: `signal ${signal}` } : {}),
          stdout: decode(status['out-data']) + (status['out-truncated'] ? '\n(guest agent: output truncated)' : ''),
          stderr: decode(status['err-data']) + (status['err-truncated'] ? '\n(guest agent: output truncated)' : ''),
          endedMs: Date.now(),
          timedOut: false,
        };
      }
      if (Date.now() > deadline) {
        // The agent has no kill command: kill the guest process with a second guest-exec.
        await this.client.execute('guest-exec', { path: 'kill', arg: ['-KILL', String(started.pid)] }).catch(() => undefined);
        return { exitCode: null, signal: 'SIGKILL', stdout: '', stderr: `(killed in the guest after ${Math.round(options.timeoutMs / 1000)} s)`, endedMs: Date.now(), timedOut: true };
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 200); // short commands answer fast; fio runs are polled five times a second
    }
  }

  close(): void {
    this.client.close();
  }
}

/** Commands through a local command prefix (e.g. ["ssh", "-o", "BatchMode=yes", "vm1"]): prefix + argv, stdin piped. */
export class CommandExec implements GuestExec {
  readonly describe: string;
  constructor(private readonly prefix: string[]) {
    this.describe = `command '${prefix.join(' ')}'`;
  }

  run(argv: string[], options: GuestRunOptions): Promise<GuestCommandResult> {
    const full = [...this.prefix, ...argv];
    return new Promise((resolve) => {
      const child = spawn(full[0]!, full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-16_384)));
      child.stdin.on('error', () => undefined); // the command may exit without reading its input
      child.stdin.end(options.input ?? '');
      child.once('spawn', () => options.onStart?.());
      child.once('error', (error) => (stderr += `cannot run ${full[0]}: ${error.message}\n`));
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, options.timeoutMs);
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({
          exitCode: code, ...(signal ? { signal } : {}), stdout,
          stderr: stderr + (timedOut ? `\n(killed after ${Math.round(options.timeoutMs / 1000)} s)` : ''),
          endedMs: Date.now(), timedOut,
        });
      });
    });
  }

  close(): void {}
}
