/**
 * `vfiod serve --crash-recovery` as an operator runs it: the real bin/vfiod.js, a holder process and its data-plane
 * child. Process behaviour only: what the holder holds is filled by the data plane's controllers (src/serve/holder.ts,
 * holder-client.ts); here this test plays a data plane's controller connection itself where it needs one.
 * Uses the compiled dist/ that `npm test` builds first.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../../src/native/index.js';
import { HandoverChannel } from '../../src/serve/handover-channel.js';
import { HolderClient } from '../../src/serve/holder-client.js';
import { parseServeArgs } from '../../src/cli/serve.js';
import { temporaryDir, waitFor } from '../helpers/common.js';
import { standardHost } from '../helpers/fake-sysfs.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'vfiod.js');
const built = fs.existsSync(path.join(root, 'dist', 'serve', 'holder.js'));

let dir: string;
const started: ChildProcess[] = [];
const dataPlanes = new Set<number>();

beforeEach(() => {
  dir = temporaryDir('vfiod-crash-');
});
afterEach(() => {
  for (const proc of started.splice(0)) proc.kill('SIGKILL');
  for (const pid of dataPlanes) killQuietly(pid);
  dataPlanes.clear();
  fs.rmSync(dir, { recursive: true, force: true });
});

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Holder {
  process: ChildProcess;
  lines: Array<Record<string, unknown>>;
  exited: Promise<number | null>;
  /** The log lines with this message. */
  with(msg: string): Array<Record<string, unknown>>;
}

/** `onLine`: called with each log line as it comes (to act at an exact point of the start, not a poll later). */
function start(args: string[], onLine?: (line: Record<string, unknown>) => void, command: 'serve' | 'daemon' = 'serve'): Holder {
  const proc = spawn(process.execPath, [bin, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(proc);
  const lines: Array<Record<string, unknown>> = [];
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let buffered = '';
  proc.stderr!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        lines.push(record);
        if (record['msg'] === 'data plane started') dataPlanes.add(record['pid'] as number);
        onLine?.(record);
      } catch {
        lines.push({ raw: line });
      }
    }
  });
  return { process: proc, lines, exited, with: (msg) => lines.filter((line) => line['msg'] === msg) };
}

/** The pid of the data plane that started as the n-th (0-based), once it serves its controller. */
async function servingDataPlane(holder: Holder, n: number): Promise<number> {
  const startedLine = await waitFor(() => holder.with('data plane started')[n], `data plane #${n}`);
  await waitFor(() => holder.with('listening').filter((line) => line['component'] === 'controller').length > n || null, `data plane #${n} to listen`);
  return startedLine['pid'] as number;
}

/**
 * Asks the holder for a planned restart as `vfiod upgrade` does (a `restart` on its socket); resolves with the type of
 * its answer, or with what went wrong instead (no answer in time, the holder closed the connection).
 */
async function askRestart(holderSocket: string, timeoutMs: number): Promise<string> {
  const channel = HandoverChannel.connect(holderSocket);
  try {
    channel.send({ type: 'restart' });
    const { message, fds } = await channel.receive(timeoutMs, 'the holder\'s answer');
    for (const fd of fds) native.close(fd);
    return message.type === 'restart-failed' ? `restart-failed: ${String(message['reason'])}` : message.type;
  } catch (error) {
    return `no answer: ${(error as Error).message}`;
  } finally {
    channel.close();
  }
}

/** What a planned restart did, from the holder's log: for a test to compare with what it should have done. */
function plannedOutcome(holder: Holder, answer: string): Record<string, unknown> {
  return {
    answer,
    diedBySigusr2: holder.with('data plane exited').filter((line) => line['signal'] === 'SIGUSR2').length,
    crashes: holder.with('data plane exited').length,
    checkpointed: holder.with('data plane checkpointed for a planned restart; starting the next one').length,
  };
}

function rssKiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]);
}

describe('vfiod serve --crash-recovery: options', () => {
  it('passes the data plane its options without the holder`s own; refuses --take-over', () => {
    const parsed = parseServeArgs(['--socket', 's.sock', '--crash-recovery', '--holder-socket', 'h.sock', '--poll', '--serial=--crash-recovery']);
    expect(parsed!.crashRecovery).toEqual({ holderSocket: 'h.sock', dataPlaneArgv: ['--socket', 's.sock', '--poll', '--serial=--crash-recovery'] });
    expect(parseServeArgs(['--socket', 's.sock', '--crash-recovery', '--holder-socket=h.sock'])!.crashRecovery!.dataPlaneArgv).toEqual(['--socket', 's.sock']);
    const dataPlane = parseServeArgs(['--socket', 's.sock', '--holder-socket', '/x/h.sock', '--data-plane'])!;
    expect(dataPlane.options).toMatchObject({ dataPlane: true, holderSocket: '/x/h.sock' });
    expect(dataPlane.crashRecovery).toBeUndefined();
    expect(() => parseServeArgs(['--socket', 's.sock', '--crash-recovery', '--take-over'])).toThrow(/--crash-recovery cannot be combined with --take-over/);
    expect(() => parseServeArgs(['--socket', 's.sock', '--data-plane'])).toThrow(/--data-plane needs --holder-socket/);
    expect(() => parseServeArgs(['--socket', 's.sock', '--holder-socket', 'h.sock'])).toThrow(/goes with --crash-recovery/);
    expect(() => parseServeArgs(['--socket', 's.sock', '--holder-socket', 'h', '--data-plane', '--take-over'])).toThrow(/not supported yet/);
  });
});

describe.skipIf(!built)('vfiod serve --crash-recovery (processes)', () => {
  it('restarts a SIGKILLed data plane while holding the fds; SIGTERM stops both with exit 0 and removes the holder socket', async () => {
    const socket = path.join(dir, 'a.sock');
    const holderSocket = path.join(dir, 'a.holder.sock');
    const holder = start(['--crash-recovery', '--socket', socket, '--namespace', `file:${path.join(dir, 'a.img')}?size=16M`]);
    const first = await servingDataPlane(holder, 0);
    expect(holder.with('holder listening')[0]).toMatchObject({ holderSocket, pid: holder.process.pid });
    expect(fs.statSync(holderSocket).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(`/proc/${first}/cmdline`, 'utf8').split('\0')).toEqual(
      expect.arrayContaining(['serve', '--socket', socket, '--holder-socket', holderSocket, '--data-plane']),
    );

    // Stand in for a data plane's controller (under a name of its own: the real controller may attach too): keep a
    // memfd with something in it, then lose the connection.
    const standIn = path.join(dir, 'stand-in.sock');
    const { client } = await HolderClient.attach(holderSocket, standIn);
    const memfd = native.memfdCreate('vfiod-test-crash', 4096);
    fs.writeSync(memfd, Buffer.from('kept'), 0, 4, 0);
    expect(client.keep([{ fd: memfd, name: 'checkpoint' }])).toBe(true);
    client.close();
    native.close(memfd);

    process.kill(first, 'SIGKILL');
    const exitLine = await waitFor(() => holder.with('data plane exited')[0], 'the holder to notice');
    expect(exitLine).toMatchObject({ pid: first, signal: 'SIGKILL', code: null, restarts: 1, restartInMillis: 0 });
    expect(exitLine['heldFds']).toBeGreaterThanOrEqual(1);
    const second = await servingDataPlane(holder, 1);
    expect(second).not.toBe(first);
    expect(alive(second)).toBe(true);

    // What the holder kept comes back to the next attach, the same file.
    const again = await HolderClient.attach(holderSocket, standIn);
    expect(again.held.map((h) => ({ number: h.number, name: h.name }))).toEqual([{ number: memfd, name: 'checkpoint' }]);
    const text = Buffer.alloc(4);
    fs.readSync(again.held[0]!.fd, text, 0, 4, 0);
    expect(text.toString()).toBe('kept');
    native.close(again.held[0]!.fd);
    const reattached = await waitFor(() => holder.with('data plane re-attached a controller').find((line) => line['controller'] === standIn), 'the re-attach log');
    expect(reattached).toMatchObject({ reattached: true, fds: 1, restarts: 1 });
    expect(reattached['downMillis']).toBeGreaterThanOrEqual(0);
    await again.client.detach();

    const rss = rssKiB(holder.process.pid!);
    console.log(`holder RSS ${Math.round(rss / 1024)} MiB (data plane ${Math.round(rssKiB(second) / 1024)} MiB)`);
    expect(rss).toBeLessThan(200 * 1024);

    holder.process.kill('SIGTERM');
    expect(await holder.exited).toBe(0);
    expect(alive(second)).toBe(false);
    expect(fs.existsSync(holderSocket)).toBe(false);
    expect(fs.existsSync(socket)).toBe(false); // the data plane's clean stop removed it
    expect(holder.with('data plane stopped')[0]).toMatchObject({ pid: second, code: 0 });
  });

  it('SIGTERM with a standby ready: the standby ends too and the holder exits 0', async () => {
    // A standby keeps a SIGTERM that comes early (it is serve() or the daemon, still starting); it must still end on
    // the one its holder sends to drop it, or the holder waits for it for ever (3 runs in 3 after 069a213).
    const holder = start(['--crash-recovery', '--socket', path.join(dir, 's.sock'), '--namespace', `file:${path.join(dir, 's.img')}?size=1M`]);
    const ready = await waitFor(() => holder.with('standby data plane ready')[0], 'a standby');
    const standby = ready['pid'] as number;
    dataPlanes.add(standby);
    holder.process.kill('SIGTERM');
    const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('still running after 15 s'), 15_000).unref());
    expect(await Promise.race([holder.exited, timeout])).toBe(0);
    await waitFor(() => !alive(standby), 'the standby to end', 5_000, 20);
    expect(holder.lines.some((line) => line['msg'] === 'standby: stopping' && line['signal'] === 'SIGTERM')).toBe(true);
  });

  it('a SIGTERM sent the moment the holder says it listens stops it by its handler: its socket is removed', async () => {
    // 'holder listening' comes before the holder sets its handlers; without catching the signal meanwhile, 5 runs in
    // 10 died by it, leaving the holder socket behind.
    for (let run = 0; run < 5; run++) {
      const holderSocket = path.join(dir, `early${run}.holder.sock`);
      const args = ['--crash-recovery', '--holder-socket', holderSocket, '--socket', path.join(dir, `early${run}.sock`), '--namespace', `file:${path.join(dir, 'early.img')}?size=1M`];
      const holder = start(args, (line) => {
        if (line['msg'] === 'holder listening') holder.process.kill('SIGTERM');
      });
      expect(await holder.exited).toBe(0); // null: it died by the signal; 143: its data plane did
      expect(holder.with('holder shutting down')[0]).toMatchObject({ signal: 'SIGTERM' });
      expect(fs.existsSync(holderSocket)).toBe(false);
    }
  });

  it('a SIGTERM sent the moment the holder starts its data plane stops both cleanly (the data plane may not catch signals yet)', async () => {
    // The holder used to forward the SIGTERM at once, to a data plane still loading: 10 runs in 10 died by it, and
    // the holder exited 143.
    for (let run = 0; run < 5; run++) {
      const args = ['--crash-recovery', '--socket', path.join(dir, `starting${run}.sock`), '--namespace', `file:${path.join(dir, 'starting.img')}?size=1M`];
      const holder = start(args, (line) => {
        if (line['msg'] === 'data plane started') holder.process.kill('SIGTERM');
      });
      expect(await holder.exited).toBe(0);
      expect(holder.with('data plane stopped')[0]).toMatchObject({ code: 0, signal: null });
      expect(fs.existsSync(path.join(dir, `starting${run}.sock`))).toBe(false);
    }
  });

  it('a planned restart asked for the moment the holder starts its data plane waits until that data plane handles it', async () => {
    // The holder sent SIGUSR2 at once, to a data plane still loading and without its handler: it died by the signal
    // (a crash to the holder), 10 runs in 10; with no controller attached before, the restart was never answered, and
    // the restart's 120 s timer kept the holder running after its SIGTERM.
    const outcomes: Array<Record<string, unknown>> = [];
    for (let run = 0; run < 5; run++) {
      const holderSocket = path.join(dir, `planned${run}.holder.sock`);
      let asked: Promise<string> | undefined;
      const args = ['--crash-recovery', '--holder-socket', holderSocket, '--socket', path.join(dir, `planned${run}.sock`), '--namespace', `file:${path.join(dir, 'planned.img')}?size=1M`];
      const holder = start(args, (line) => {
        if (line['msg'] === 'data plane started' && asked === undefined) asked = askRestart(holderSocket, 20_000);
      });
      const answer = await waitFor(() => asked, 'the restart request');
      outcomes.push(plannedOutcome(holder, await answer));
      holder.process.kill('SIGTERM');
      expect(await holder.exited).toBe(0);
    }
    console.log('planned restart at the first data plane\'s start:', JSON.stringify(outcomes));
    expect(outcomes).toEqual(Array.from({ length: 5 }, () => ({ answer: 'restarted', diedBySigusr2: 0, crashes: 0, checkpointed: 1 })));
  }, 180_000);

  it('a planned restart asked for the moment a standby takes over after a crash waits until it handles it', async () => {
    // An activated standby has no SIGUSR2 handler until it serves: the holder's SIGUSR2 killed it (10 runs in 10),
    // the holder counted a second crash, and still answered 'restarted'.
    const outcomes: Array<Record<string, unknown>> = [];
    for (let run = 0; run < 3; run++) {
      const holderSocket = path.join(dir, `standby${run}.holder.sock`);
      let armed = false;
      let asked: Promise<string> | undefined;
      const args = ['--crash-recovery', '--holder-socket', holderSocket, '--socket', path.join(dir, `standby${run}.sock`), '--namespace', `file:${path.join(dir, 'standby.img')}?size=1M`];
      const holder = start(args, (line) => {
        if (armed && line['msg'] === 'data plane started' && asked === undefined) asked = askRestart(holderSocket, 20_000);
      });
      const first = await servingDataPlane(holder, 0);
      await waitFor(() => holder.with('standby data plane ready')[0], 'a standby', 30_000);
      armed = true;
      process.kill(first, 'SIGKILL');
      const answer = await waitFor(() => asked, 'the restart request');
      outcomes.push({ ...plannedOutcome(holder, await answer), fromStandby: holder.with('data plane started')[1]?.['standby'] });
      holder.process.kill('SIGTERM');
      expect(await holder.exited).toBe(0);
    }
    console.log('planned restart at a standby\'s activation:', JSON.stringify(outcomes));
    // The one crash is the SIGKILL.
    expect(outcomes).toEqual(Array.from({ length: 3 }, () => ({ answer: 'restarted', diedBySigusr2: 0, crashes: 1, checkpointed: 1, fromStandby: true })));
  }, 180_000);

  it('vfiod daemon --crash-recovery: a SIGHUP the moment the holder starts its data plane restarts it planned, not by a crash', async () => {
    // The daemon sets its SIGUSR2 handler once its API serves: before, the holder's SIGUSR2 killed it (10 runs in 10).
    // With no controller, nothing re-attaches to complete the restart: the holder's SIGTERM must not wait for it.
    const host = standardHost();
    const outcomes: Array<Record<string, unknown>> = [];
    try {
      for (let run = 0; run < 5; run++) {
        const args = ['--crash-recovery', '--socket', path.join(dir, `daemon${run}.sock`), '--state-dir', path.join(dir, `state${run}`),
          '--sysfs-root', host.roots.sysfs, '--dev-root', host.roots.dev, '--proc-root', host.roots.proc];
        let asked = false;
        const holder = start(args, (line) => {
          if (line['msg'] === 'data plane started' && !asked) {
            asked = true;
            holder.process.kill('SIGHUP');
          }
        }, 'daemon');
        await waitFor(() => holder.with('data plane checkpointed for a planned restart; starting the next one')[0] ?? holder.with('data plane exited')[0], 'the restart', 30_000);
        await waitFor(() => holder.with('data plane started')[1], 'the next data plane', 30_000);
        outcomes.push(plannedOutcome(holder, 'none (SIGHUP)'));
        holder.process.kill('SIGTERM');
        expect(await holder.exited).toBe(0);
      }
    } finally {
      host.cleanup();
    }
    console.log('SIGHUP at the daemon data plane\'s start:', JSON.stringify(outcomes));
    expect(outcomes).toEqual(Array.from({ length: 5 }, () => ({ answer: 'none (SIGHUP)', diedBySigusr2: 0, crashes: 0, checkpointed: 1 })));
  }, 180_000);

  it('backs off after 5 restarts within 10 s', async () => {
    const socket = path.join(dir, 'b.sock');
    const holder = start(['--crash-recovery', '--socket', socket, '--namespace', `file:${path.join(dir, 'disk.img')}?size=1M`]);
    for (let n = 0; n < 6; n++) process.kill(await servingDataPlane(holder, n), 'SIGKILL');
    const exits = await waitFor(() => (holder.with('data plane exited').length === 6 ? holder.with('data plane exited') : null), 'six exits');
    expect(exits.map((line) => line['restartInMillis'])).toEqual([0, 0, 0, 0, 0, 1000]);
    await servingDataPlane(holder, 6);
    holder.process.kill('SIGTERM');
    expect(await holder.exited).toBe(0);
  });

  it('a killed holder takes its data plane with it', async () => {
    const socket = path.join(dir, 'c.sock');
    const holder = start(['--crash-recovery', '--socket', socket, '--namespace', `file:${path.join(dir, 'disk.img')}?size=1M`]);
    const dataPlane = await servingDataPlane(holder, 0);
    holder.process.kill('SIGKILL');
    await holder.exited;
    await waitFor(() => !alive(dataPlane), 'the data plane to stop', 30_000, 20);
    expect(fs.existsSync(socket)).toBe(false);
  });

  it('does not restart a data plane that fails before anything attached, and refuses a live holder socket', async () => {
    fs.writeFileSync(path.join(dir, 'not-a-dir'), '');
    const failing = start(['--crash-recovery', '--socket', path.join(dir, 'd.sock'), '--namespace', `file:${path.join(dir, 'not-a-dir', 'd.img')}`]);
    expect(await failing.exited).toBe(1);
    expect(failing.with('data plane started')).toHaveLength(1);
    expect(failing.with('the data plane failed to start; nothing to hold')).toHaveLength(1);
    expect(fs.existsSync(path.join(dir, 'd.holder.sock'))).toBe(false);

    const socket = path.join(dir, 'e.sock');
    const holder = start(['--crash-recovery', '--socket', socket, '--namespace', `file:${path.join(dir, 'disk.img')}?size=1M`]);
    await servingDataPlane(holder, 0);
    const second = start(['--crash-recovery', '--socket', socket, '--namespace', `file:${path.join(dir, 'disk.img')}?size=1M`]);
    expect(await second.exited).toBe(1);
    expect(second.with('crash recovery unavailable: cannot listen on the holder socket')[0]?.['error']).toMatch(/in use/);
    holder.process.kill('SIGTERM');
    expect(await holder.exited).toBe(0);
  });

  it('refuses --crash-recovery with --take-over, and with a memory: namespace (usage, exit 2)', async () => {
    const proc = start(['--crash-recovery', '--take-over', '--socket', path.join(dir, 'f.sock')]);
    expect(await proc.exited).toBe(2);
    const memory = start(['--crash-recovery', '--socket', path.join(dir, 'g.sock'), '--namespace', 'memory:1M']);
    expect(await memory.exited).toBe(2);
  });
});
