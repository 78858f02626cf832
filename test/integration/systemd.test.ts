/**
 * vfiod as a systemd service (docs/restart.md, "Under systemd"): the unit files pass `systemd-analyze verify`, and
 * the notifications a `Type=notify` unit relies on arrive, from the unit's main process, at the right moments. systemd
 * cannot run as PID 1 here, so a stand-in notification socket (test/helpers/notify-listener.py: an AF_UNIX datagram
 * socket that reports each message with its sender's pid) takes its place; the processes are the real bin/vfiod.js.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../helpers/common.js';
import { bin, children, serve, type Served } from '../helpers/vfiod-process.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const built = existsSync(path.join(root, 'dist', 'util', 'sd-notify.js'));
const analyze = spawnSync('systemd-analyze', ['--version']).status === 0;
const python = spawnSync('python3', ['--version']).status === 0;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-systemd-'));
});
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

interface Notification {
  pid: number | null;
  fields: Record<string, string>;
}

/** The stand-in for $NOTIFY_SOCKET; `messages` fills as datagrams arrive. */
async function notifySocket(): Promise<{ socket: string; messages: Notification[]; process: ChildProcess }> {
  const socket = path.join(dir, 'notify.sock');
  const proc = spawn('python3', [path.join(root, 'test/helpers/notify-listener.py'), socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  const messages: Notification[] = [];
  let buffered = '';
  let listening = false;
  proc.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = JSON.parse(buffered.slice(0, newline)) as Notification & { listening?: string };
      buffered = buffered.slice(newline + 1);
      if (line.listening) listening = true;
      else messages.push(line);
    }
  });
  await waitFor(() => listening || null, 'the notification socket', 10_000);
  return { socket, messages, process: proc };
}

function servedWith(env: Record<string, string>, args: string[]): Served {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    return serve(args);
  } finally {
    process.env = saved;
  }
}

describe.skipIf(!analyze)('the systemd units', () => {
  it('pass systemd-analyze verify (ExecStart pointed at this checkout)', () => {
    for (const [unit, as] of [['vfiod.service', 'vfiod.service'], ['vfiod-serve@.service', 'vfiod-serve@vm1.service']] as const) {
      const text = readFileSync(path.join(root, 'contrib/systemd', unit), 'utf8')
        .replaceAll('/usr/bin/vfiod', bin)
        .replace('EnvironmentFile=/etc', 'EnvironmentFile=-/etc');
      writeFileSync(path.join(dir, as), text);
      const result = spawnSync('systemd-analyze', ['verify', path.join(dir, as)], { encoding: 'utf8' });
      expect(`${result.stdout}${result.stderr}`.trim(), unit).toBe('');
      expect(result.status, unit).toBe(0);
    }
  });
});

describe.skipIf(!built || !python)('sd_notify from vfiod (a stand-in notification socket)', () => {
  it('serve --crash-recovery: READY and watchdog from the holder, STATUS on a crash, RELOADING then READY on reload, STOPPING', async () => {
    const notify = await notifySocket();
    const socket = path.join(dir, 'nvme0.sock');
    const holder = servedWith({ NOTIFY_SOCKET: notify.socket, WATCHDOG_USEC: '400000' }, [
      '--crash-recovery', '--socket', socket, '--namespace', `file:${path.join(dir, 'disk.img')}?size=4M`,
    ]);
    const holderPid = holder.process.pid!;
    const ready = (from: number): Notification | null => notify.messages.slice(from).find((m) => m.fields['READY'] === '1') ?? null;
    const first = await waitFor(() => ready(0), 'READY=1', 60_000);
    expect(first.pid).toBe(holderPid);
    expect(first.fields['STATUS']).toMatch(/^data plane pid \d+: serving .*nvme0\.sock/);
    await waitFor(() => notify.messages.filter((m) => m.fields['WATCHDOG'] === '1').length >= 2 || null, 'watchdog pings', 10_000);

    const dataPlane = holder.lines.filter((line) => line['msg'] === 'data plane started').at(-1)!['pid'] as number;
    let from = notify.messages.length;
    process.kill(dataPlane, 'SIGKILL');
    await waitFor(() => notify.messages.slice(from).find((m) => /died \(SIGKILL\); recovering/.test(m.fields['STATUS'] ?? '')) ?? null, 'STATUS after the crash', 30_000);
    await waitFor(() => ready(from), 'READY=1 after the crash', 60_000);

    from = notify.messages.length;
    holder.process.kill('SIGHUP');
    const reloading = await waitFor(() => notify.messages.slice(from).find((m) => m.fields['RELOADING'] === '1') ?? null, 'RELOADING=1', 30_000);
    expect(Number(reloading.fields['MONOTONIC_USEC'])).toBeGreaterThan(0);
    await waitFor(() => ready(notify.messages.indexOf(reloading)), 'READY=1 after the reload', 60_000);

    from = notify.messages.length;
    holder.process.kill('SIGTERM');
    expect(await holder.exited).toBe(0);
    expect(notify.messages.slice(from).some((m) => m.fields['STOPPING'] === '1')).toBe(true);
    // Only the unit's main process (the holder) ever notified: with NotifyAccess=main systemd drops anyone else's.
    expect(new Set(notify.messages.map((m) => m.pid))).toEqual(new Set([holderPid]));
  }, 180_000);

  it('plain serve: READY once listening, STOPPING on SIGTERM; nothing without NOTIFY_SOCKET', async () => {
    const notify = await notifySocket();
    const served = servedWith({ NOTIFY_SOCKET: notify.socket }, ['--socket', path.join(dir, 'a.sock'), '--namespace', `file:${path.join(dir, 'a.img')}?size=4M`]);
    await waitFor(() => notify.messages.find((m) => m.fields['READY'] === '1') ?? null, 'READY=1', 60_000);
    served.process.kill('SIGTERM');
    expect(await served.exited).toBe(0);
    expect(notify.messages.map((m) => Object.keys(m.fields).filter((k) => k === 'READY' || k === 'STOPPING'))).toEqual([['READY'], ['STOPPING']]);
    expect(notify.messages.every((m) => m.pid === served.process.pid)).toBe(true);
    // Without $NOTIFY_SOCKET nothing is sent and nothing fails.
    const quiet = serve(['--socket', path.join(dir, 'b.sock'), '--namespace', `file:${path.join(dir, 'b.img')}?size=4M`]);
    await quiet.waitFor((line) => line['msg'] === 'listening' && line['component'] === 'controller', 'listening');
    quiet.process.kill('SIGTERM');
    expect(await quiet.exited).toBe(0);
    expect(quiet.lines.filter((line) => line['component'] === 'systemd')).toEqual([]);
  }, 120_000);
});
