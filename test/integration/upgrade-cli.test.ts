/**
 * `vfiod upgrade` (docs/restart.md), as an operator runs it: a real `bin/vfiod.js serve` child process with a client
 * (the project's hypervisor + guest driver, in this process) writing and reading without pause; `bin/vfiod.js
 * upgrade` asks it for its options, starts the successor detached, and reports once the successor serves. The
 * client's connection stays open, its I/O goes on with the successor, and the successor logs where the running
 * process logged (the same stderr pipe here). Failures are precise and leave the running process serving.
 *
 * Uses the compiled dist/ that `npm test` builds first.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Guest } from '../helpers/hypervisor.js';
import { pattern } from '../helpers/nvme-harness.js';
import { Status } from '../../src/spec/nvme.js';
import { describedArgv } from '../../src/cli/serve.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'vfiod.js');
const built = existsSync(path.join(root, 'dist', 'cli', 'upgrade.js'));

const DEADLINE_MS = 60_000;
const IO_DEADLINE_MS = 30_000;

let dir: string;
const children: ChildProcess[] = [];
/** Successors started by vfiod upgrade: detached, not our children; ended by pid. */
const successorPids: number[] = [];
const guests: Guest[] = [];

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-upgrade-cli-'));
});
afterEach(() => {
  for (const guest of guests.splice(0)) guest.close();
  for (const child of children.splice(0)) child.kill('SIGKILL');
  for (const pid of successorPids.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

type LogLine = Record<string, unknown>;

/** `vfiod serve` with its stderr collected; lines keep coming from a successor that inherited that stderr. */
function serve(args: string[], cwd?: string) {
  const proc = spawn(process.execPath, [bin, 'serve', ...args], { stdio: ['ignore', 'ignore', 'pipe'], ...(cwd ? { cwd } : {}) });
  children.push(proc);
  const lines: LogLine[] = [];
  let buffered = '';
  let ended = false;
  proc.stderr!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const text = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      try {
        lines.push(JSON.parse(text) as LogLine);
      } catch {
        lines.push({ raw: text });
      }
    }
  });
  proc.stderr!.on('end', () => (ended = true));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const waitFor = async (match: (line: LogLine) => boolean, what: string): Promise<LogLine> => {
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      const found = lines.find(match);
      if (found) return found;
      if (ended) throw new Error(`the log ended before ${what}: ${JSON.stringify(lines)}`);
      if (Date.now() > deadline) throw new Error(`no ${what} within ${DEADLINE_MS} ms: ${JSON.stringify(lines)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { proc, lines, exited, waitFor };
}

/** `vfiod upgrade <args>` to completion. */
function upgrade(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [bin, 'upgrade', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d));
    proc.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`vfiod upgrade did not exit within ${DEADLINE_MS * 2} ms: ${stdout} ${stderr}`));
    }, DEADLINE_MS * 2);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      const pid = /handed over to pid (\d+)/.exec(stdout)?.[1];
      if (pid) successorPids.push(Number(pid));
      resolve({ code, stdout, stderr });
    });
  });
}

/** Verified write-then-read loops on one lane until stopped; any failure is kept. */
function workload(guest: Guest) {
  let running = true;
  let completed = 0;
  const failures: string[] = [];
  const written = new Map<number, number>();
  const done = (async () => {
    for (let round = 0; running; round++) {
      const lba = (round % 16) * 8;
      const data = pattern(4096, round + 1);
      try {
        const write = await guest.driver.write(1, lba, data, { timeoutMillis: IO_DEADLINE_MS });
        if (write.status !== Status.SUCCESS) throw new Error(`write status 0x${write.status.toString(16)}`);
        written.set(lba, round + 1);
        const read = await guest.driver.read(1, lba, 8, { timeoutMillis: IO_DEADLINE_MS });
        if (read.completion.status !== Status.SUCCESS) throw new Error(`read status 0x${read.completion.status.toString(16)}`);
        if (!Buffer.from(read.data).equals(Buffer.from(data))) throw new Error(`LBA ${lba}: other data than written`);
        completed += 2;
      } catch (error) {
        failures.push((error as Error).message);
        return;
      }
    }
  })();
  return {
    failures,
    written,
    get completed() {
      return completed;
    },
    async progress(count: number): Promise<void> {
      const target = completed + count;
      const deadline = Date.now() + IO_DEADLINE_MS;
      while (completed < target) {
        if (failures.length) throw new Error(`I/O failed: ${failures.join('; ')}`);
        if (Date.now() > deadline) throw new Error(`I/O made no progress: ${completed}/${target}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    async stop(): Promise<void> {
      running = false;
      await done;
    },
  };
}

async function attach(socket: string): Promise<Guest> {
  const guest = await Guest.attach(socket, { flavour: 'qemu', vectors: 2 });
  guests.push(guest);
  await guest.driver.enable();
  await guest.driver.createIoQueuePair(1, 64, 1);
  return guest;
}

describe('describedArgv: what a successor started by vfiod upgrade is given', () => {
  it('drops --take-over and --report-to-parent, keeps everything else in order', () => {
    expect(describedArgv(['--socket', 's', '--take-over', '--namespace', 'file:x', '--report-to-parent', '--poll']))
      .toEqual(['--socket', 's', '--namespace', 'file:x', '--poll']);
  });
});

describe.skipIf(!built)('vfiod upgrade', () => {
  it('replaces a running vfiod serve twice under verified I/O; the client never notices; the successor logs where its predecessor did', async () => {
    const socket = path.join(dir, 'nvme0.sock');
    const image = path.join(dir, 'disk.img');
    // A relative namespace path: the successor must run in the running process's working directory.
    const running = serve(['--socket', socket, '--namespace', 'file:disk.img?size=16M', '--serial', 'UPGRADE-CLI'], dir);
    await running.waitFor((l) => l['msg'] === 'listening' && l['component'] === 'controller', 'listening');
    const guest = await attach(socket);
    const io = workload(guest);
    await io.progress(20);

    const first = await upgrade(['--socket', socket]);
    expect(first, first.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toMatch(new RegExp(`^upgraded ${escape(socket)}: pid ${running.proc.pid} \\(vfiod [^)]+\\) handed over to pid (\\d+) \\(vfiod [^)]+\\) in \\d+ ms; the old process has exited\\n$`));
    expect(await running.exited).toBe(0);
    // The successor logs on the stderr the running process had (this test's pipe).
    await running.waitFor((l) => l['msg'] === 'upgrade complete: serving', 'the successor serving');
    await io.progress(20);

    // The successor describes itself in turn: its options are the original ones (no --take-over, no status fd).
    const handover = path.join(dir, 'nvme0.handover.sock');
    const second = await upgrade(['--handover-socket', handover]);
    expect(second, second.stderr).toMatchObject({ code: 0, stderr: '' });
    const describedLines = running.lines.filter((l) => l['msg'] === 'described this process for an upgrade');
    expect(describedLines.map((l) => l['argv'])).toEqual([
      ['--socket', socket, '--namespace', 'file:disk.img?size=16M', '--serial', 'UPGRADE-CLI'],
      ['--socket', socket, '--namespace', 'file:disk.img?size=16M', '--serial', 'UPGRADE-CLI'],
    ]);
    await io.progress(20);
    await io.stop();
    expect(io.failures).toEqual([]);
    // One connection all along: nobody connected again, each successor took the client over.
    expect(running.lines.filter((l) => l['msg'] === 'client connected')).toHaveLength(1);
    expect(running.lines.filter((l) => l['msg'] === 'client taken over from the previous process')).toHaveLength(2);
    expect(running.lines.filter((l) => l['msg'] === 'client disconnected')).toEqual([]);
    expect(await guest.client.waitForClose(200)).toBe(false);
    // Flushed, the data is in the file the relative path named.
    expect((await guest.driver.submit(1, { opcode: 0x00, nsid: 1 }, IO_DEADLINE_MS)).status).toBe(Status.SUCCESS);
    const [lba, seed] = [...io.written][0]!;
    expect(readFileSync(image).subarray(lba * 512, lba * 512 + 4096).equals(Buffer.from(pattern(4096, seed)))).toBe(true);
  }, 180_000);

  it('a successor that cannot take over (other namespace size, given after --): exit 1, the reason, and the running vfiod serves on', async () => {
    const socket = path.join(dir, 'nvme0.sock');
    const running = serve(['--socket', socket, '--namespace', `file:${path.join(dir, 'disk.img')}?size=16M`]);
    await running.waitFor((l) => l['msg'] === 'listening' && l['component'] === 'controller', 'listening');
    const guest = await attach(socket);
    const io = workload(guest);
    await io.progress(10);
    const result = await upgrade(['--socket', socket, '--', '--socket', socket, '--namespace', `file:${path.join(dir, 'other.img')}?size=8M`]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^vfiod upgrade: the successor \(pid \d+\) could not take over: .*namespace 1 .*16384 blocks of 512 bytes.*; the running vfiod \(pid \d+, vfiod [^)]+\) keeps serving\n$/);
    await running.waitFor((l) => l['msg'] === 'upgrade failed: the successor did not take over; serving on', 'resumed');
    await io.progress(10);
    await io.stop();
    expect(io.failures).toEqual([]);
    expect(running.proc.exitCode).toBeNull();
  }, 120_000);

  it('a running vfiod that refuses (a memory namespace cannot be handed over): exit 1 with its reason, still serving', async () => {
    const socket = path.join(dir, 'nvme0.sock');
    const running = serve(['--socket', socket, '--namespace', 'memory:16M']);
    await running.waitFor((l) => l['msg'] === 'listening' && l['component'] === 'controller', 'listening');
    const guest = await attach(socket);
    const result = await upgrade(['--socket', socket]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/could not take over: .*the running vfiod refused the upgrade: .*memory namespaces \(memory:16MiB\) cannot be handed over; the running vfiod \(pid \d+, vfiod [^)]+\) keeps serving\n$/);
    expect((await guest.driver.write(1, 0, pattern(4096, 5), { timeoutMillis: IO_DEADLINE_MS })).status).toBe(Status.SUCCESS);
    expect(running.proc.exitCode).toBeNull();
  }, 120_000);

  it('usage: nothing listening is exit 3, options that vfiod serve would reject are exit 2 before anything starts', async () => {
    const nothing = await upgrade(['--socket', path.join(dir, 'none.sock')]);
    expect(nothing.code).toBe(3);
    expect(nothing.stderr).toContain(`no vfiod serve listens on ${path.join(dir, 'none.handover.sock')}`);

    const socket = path.join(dir, 'nvme0.sock');
    const running = serve(['--socket', socket, '--namespace', `file:${path.join(dir, 'disk.img')}?size=16M`]);
    await running.waitFor((l) => l['msg'] === 'listening' && l['component'] === 'controller', 'listening');
    const bad = await upgrade(['--socket', socket, '--', '--socket', socket, '--io-queues', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/the successor's options are not valid: .*--io-queues/);
    expect(running.lines.filter((l) => l['msg'] === 'upgrade requested: quiescing the controllers')).toEqual([]);
    const both = await upgrade(['--socket', socket, '--handover-socket', socket]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('exactly one of --socket');
  }, 120_000);
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
