/**
 * `vfiod bench` in-guest targets: fio runs inside a VM, reached through the QEMU guest agent (qemu-ga) or a command
 * prefix, and its JSON is parsed like a local run.
 * 1. Against a real qemu-ga on this host (unix-listen mode, the same protocol QEMU's virtio-serial port carries) and
 *    a loop device: config validation, the agent client, the precise errors (agent unreachable, fio missing, device
 *    missing, fio failing), and a verified smoke run through both channels with the agent's process as "VMM".
 * 2. Against a real VM (the QEMU VFIO test guest, test/helpers/vfio-guest.ts): the guest starts qemu-ga on its
 *    virtio-serial port, the host runs `vfiod bench --smoke` with an in-guest target on the guest's NVMe namespace,
 *    a file reference and an emulation target; QEMU's process is the in-guest target's server CPU.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BenchConfigError, parseBenchConfig, type InGuestTarget } from '../src/bench/config.js';
import { parseFioOutput } from '../src/bench/fio.js';
import { QgaClient, QgaError, QgaExec, GuestUnreachableError } from '../src/bench/qga.js';
import { runBench, type BenchResults } from '../src/bench/run.js';
import { startTarget, TargetError } from '../src/bench/targets.js';
import { memoryLogger } from '../src/util/log.js';

const QEMU_GA = '/usr/sbin/qemu-ga';
const fioAvailable = spawnSync('fio', ['--version']).status === 0;

function hostSkipReason(): string | undefined {
  if (!existsSync(QEMU_GA)) return `${QEMU_GA} is missing (apt-get install qemu-guest-agent)`;
  if (!fioAvailable) return 'fio is not installed (apt-get install fio)';
  return undefined;
}
const hostReason = hostSkipReason();
if (hostReason) console.warn(`bench-in-guest: host agent tests skipped: ${hostReason}`);

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-in-guest-test-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function problems(yaml: string): string[] {
  try {
    parseBenchConfig(yaml, '/etc/bench.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(BenchConfigError);
    return (error as BenchConfigError).problems;
  }
  throw new Error('config was accepted');
}

describe('in-guest target config', () => {
  it('accepts both channels and fills defaults', () => {
    const config = parseBenchConfig(`
targets:
  - { name: ssh, type: in-guest, exec: { command: [ssh, -o, BatchMode=yes, vm1] }, device: /dev/nvme0n1 }
  - { name: qga, type: in-guest, exec: { qga: run/vm1-qga.sock }, device: /dev/vdb, ioengine: io_uring, direct: false, fio: /opt/fio/bin/fio, vmm-pid: run/vm1.pid }
  - { name: pid, type: in-guest, exec: { qga: /run/qga.sock }, device: /dev/nvme1n1, vmm-pid: 4242 }
`, '/etc/vfiod/bench.yaml');
    expect(config.targets).toEqual([
      { name: 'ssh', type: 'in-guest', exec: { command: ['ssh', '-o', 'BatchMode=yes', 'vm1'] }, device: '/dev/nvme0n1', ioengine: 'libaio', direct: true, fio: 'fio' },
      { name: 'qga', type: 'in-guest', exec: { qga: '/etc/vfiod/run/vm1-qga.sock' }, device: '/dev/vdb', ioengine: 'io_uring', direct: false, fio: '/opt/fio/bin/fio', vmmPid: '/etc/vfiod/run/vm1.pid' },
      { name: 'pid', type: 'in-guest', exec: { qga: '/run/qga.sock' }, device: '/dev/nvme1n1', ioengine: 'libaio', direct: true, fio: 'fio', vmmPid: 4242 },
    ] satisfies InGuestTarget[]);
  });

  it('lists every problem with its key path', () => {
    expect(problems(`
targets:
  - { name: a, type: in-guest, device: /dev/nvme0n1 }
  - { name: b, type: in-guest, exec: { ssh: vm1 }, device: nvme0n1 }
  - { name: c, type: in-guest, exec: { command: [] }, device: '/dev/x; rm -rf /' }
  - { name: d, type: in-guest, exec: { qga: '' }, device: /dev/vdb, ioengine: spdk, direct: 1, fio: 'fio --x', vmm-pid: -3 }
  - { name: e, type: in-guest, exec: { qga: /s, command: [ssh] }, device: /dev/vdb, fio-cpus: 0 }
`)).toEqual([
      'targets[0].exec: expected {command: [argv prefix, e.g. ssh, vm1]} or {qga: <QEMU guest agent unix socket>}, got undefined',
      'targets[1].exec: expected {command: [argv prefix, e.g. ssh, vm1]} or {qga: <QEMU guest agent unix socket>}, got keys ssh',
      "targets[1].device: expected the guest's block device as an absolute path such as /dev/nvme0n1 (letters, digits, ./_-), got 'nvme0n1'",
      'targets[2].exec.command: expected a non-empty list of non-empty strings (the argv prefix, e.g. [ssh, -o, BatchMode=yes, vm1]), got a list',
      "targets[2].device: expected the guest's block device as an absolute path such as /dev/nvme0n1 (letters, digits, ./_-), got '/dev/x; rm -rf /'",
      "targets[3].exec.qga: expected the path of the guest agent's unix socket (QEMU -chardev socket,path=...), got ''",
      "targets[3].ioengine: 'spdk' is not supported in the guest; allowed: libaio, io_uring, psync",
      'targets[3].direct: expected true or false, got 1',
      "targets[3].fio: expected fio's path or name in the guest (letters, digits, ./_-), got 'fio --x'",
      "targets[3].vmm-pid: expected the VM process's pid (integer) or a pid file (e.g. QEMU's -pidfile), got -3",
      'targets[4].fio-cpus: unknown key; allowed: name, type, exec, device, ioengine, direct, fio, vmm-pid',
      'targets[4].exec: expected {command: [argv prefix, e.g. ssh, vm1]} or {qga: <QEMU guest agent unix socket>}, got keys qga, command',
    ]);
  });
});

/** qemu-ga on this host, listening on a unix socket (what QEMU's chardev would carry from the guest). */
function startAgent(socket: string): ChildProcess {
  return spawn(QEMU_GA, ['-m', 'unix-listen', '-p', socket, '-t', path.dirname(socket)], { stdio: ['ignore', 'ignore', 'pipe'] });
}

async function waitForSocket(socket: string, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!existsSync(socket)) {
    if (Date.now() - start > timeoutMs) throw new Error(`${socket} did not appear within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(hostReason !== undefined)('in-guest target against a real qemu-ga on this host', () => {
  let agent: ChildProcess;
  let agentDir: string;
  let socket: string;
  let loop: string | undefined;
  let loopReason: string | undefined;
  const { logger, lines: logLines } = memoryLogger();

  beforeAll(async () => {
    agentDir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-qga-'));
    socket = path.join(agentDir, 'qga.sock');
    agent = startAgent(socket);
    await waitForSocket(socket);
    // A block device for fio: a loop device over a sparse file (the guest's /dev/nvme0n1 in part 2).
    const image = path.join(agentDir, 'disk.img');
    writeFileSync(image, '');
    truncateSync(image, 32 << 20);
    const losetup = spawnSync('losetup', ['--find', '--show', image], { encoding: 'utf8' });
    if (losetup.status === 0) loop = losetup.stdout.trim();
    else loopReason = `no loop device for the fio runs: losetup: ${losetup.stderr.trim() || losetup.error?.message}`;
    if (loopReason) console.warn(`bench-in-guest: ${loopReason}`);
  });

  afterAll(() => {
    if (loop) spawnSync('losetup', ['-d', loop]);
    agent?.kill('SIGTERM');
    rmSync(agentDir, { recursive: true, force: true });
  });

  it('runs commands through the agent: argv, stdin, stdout, stderr, exit code', async () => {
    const exec = await QgaExec.connect(socket);
    try {
      const result = await exec.run(['sh', '-c', 'read line; echo "got $line"; echo oops >&2; exit 3'], { input: 'job text\n', timeoutMs: 10_000 });
      expect(result).toMatchObject({ exitCode: 3, stdout: 'got job text\n', stderr: 'oops\n', timedOut: false });
      const killed = await exec.run(['sleep', '30'], { timeoutMs: 300 });
      expect(killed).toMatchObject({ exitCode: null, timedOut: true });
      await expect(exec.run(['/nonexistent/tool'], { timeoutMs: 5000 })).rejects.toThrow(/guest agent: guest-exec failed: GenericError: .*\/nonexistent\/tool/);
    } finally {
      exec.close();
    }
  });

  it('skips stale answers on connect (guest-sync) and answers commands in order', async () => {
    const client = await QgaClient.connect(socket);
    try {
      const answers = await Promise.all([client.execute('guest-ping'), client.execute('guest-info'), client.execute('guest-ping')]);
      expect(answers[0]).toEqual({});
      expect((answers[1] as { version: string }).version).toMatch(/^\d+\.\d+/);
      await expect(client.execute('guest-no-such-command')).rejects.toBeInstanceOf(QgaError);
    } finally {
      client.close();
    }
  });

  it('says precisely when the agent cannot be reached', async () => {
    await expect(QgaClient.connect(path.join(agentDir, 'missing.sock'))).rejects.toThrow(
      new GuestUnreachableError(`guest agent ${path.join(agentDir, 'missing.sock')}: cannot connect: connect ENOENT ${path.join(agentDir, 'missing.sock')}`),
    );
    // A socket that accepts but never answers (QEMU's chardev when qemu-ga is not running in the guest).
    const silent = path.join(agentDir, 'silent.sock');
    const server = net.createServer(() => undefined).listen(silent);
    await new Promise((r) => server.once('listening', r));
    try {
      await expect(QgaClient.connect(silent, { syncTimeoutMs: 500 })).rejects.toThrow(
        `guest agent ${silent}: no answer to guest-sync within 500 ms (is qemu-ga running in the guest?)`,
      );
    } finally {
      server.close();
    }
  });

  it('refuses to start without fio or the device in the guest', async () => {
    const start = (extra: Partial<InGuestTarget>): Promise<unknown> =>
      startTarget({ name: 'g', type: 'in-guest', exec: { qga: socket }, device: loop ?? '/dev/null', ioengine: 'libaio', direct: true, fio: 'fio', ...extra }, {
        dir: path.join(dir, 'targets'), bytesNeeded: 1 << 20, logger,
      });
    await expect(start({ device: '/dev/vfiod-no-such-disk' })).rejects.toThrow(new TargetError('g',
      '/dev/vfiod-no-such-disk is not a block device in the guest (missing, or not attached yet?) (test -b exit 1)'));
    await expect(start({ fio: '/nonexistent/fio' })).rejects.toThrow(/^target 'g': running '\/nonexistent\/fio --version' in the guest through guest agent .*qga\.sock failed: guest agent: guest-exec failed: GenericError: .*No such file or directory/);
    const brokenFio = path.join(agentDir, 'fio-no-libs');
    writeFileSync(brokenFio, '#!/bin/sh\necho "fio: error while loading shared libraries: libaio.so.1: cannot open shared object file" >&2\nexit 127\n', { mode: 0o755 });
    await expect(start({ fio: brokenFio })).rejects.toThrow(new TargetError('g',
      `fio ('${brokenFio}') does not run in the guest through guest agent ${socket}: exit 127: fio: error while loading shared libraries: libaio.so.1: cannot open shared object file`));
    await expect(start({ exec: { qga: path.join(agentDir, 'gone.sock') } })).rejects.toThrow(/^target 'g': guest agent .*gone\.sock: cannot connect: connect ENOENT/);
    await expect(start({ exec: { command: ['sh', '-c', 'echo "ssh: connect to host vm1 port 22: No route to host" >&2; exit 255', '--'] } })).rejects.toThrow(
      "target 'g': fio ('fio') does not run in the guest through command 'sh -c echo \"ssh: connect to host vm1 port 22: No route to host\" >&2; exit 255 --': exit 255: ssh: connect to host vm1 port 22: No route to host",
    );
    await expect(start({ vmmPid: 2 ** 22 + 1 })).rejects.toThrow(`target 'g': vmm-pid: no process ${2 ** 22 + 1} on this host (is the VM running?)`);
  });

  it('runs a verified smoke matrix in the "guest" through the agent and through a command prefix', async (context) => {
    if (!loop) {
      console.warn(`bench-in-guest: smoke run skipped: ${loopReason}`);
      context.skip();
      return;
    }
    const config = parseBenchConfig(`
name: in-guest-host
smoke: { rw: [randwrite, randread], bs: [4k], iodepth: [1, 8], size: 4M, verify: true }
targets:
  - { name: qga, type: in-guest, exec: { qga: '${socket}' }, device: '${loop}', vmm-pid: ${agent.pid} }
  - { name: cmd, type: in-guest, exec: { command: [env, LC_ALL=C] }, device: '${loop}', ioengine: psync }
`, path.join(dir, 'in-guest-host.yaml'));
    const out = path.join(dir, 'host-run');
    const results = await runBench(config, { outDir: out, smoke: true, logger });
    expect(results.targets.map((t) => [t.name, t.ok, t.error])).toEqual([['qga', true, undefined], ['cmd', true, undefined]]);
    expect(logLines.find((l) => l['msg'] === 'guest reachable' && l['target'] === 'qga')).toMatchObject({ device: loop, vmm_pid: agent.pid });
    expect(results.targets[0]!.info).toMatchObject({ exec: { qga: socket }, guest_fio: expect.stringMatching(/^fio-/), device: loop, vmm_pid: agent.pid });
    expect(results.points.map((p) => `${p.target}/${p.point.id}:${p.ok ? 'ok' : p.error}`)).toEqual([
      'qga/randwrite-4k-qd1-j1-verify:ok', 'qga/randwrite-4k-qd8-j1-verify:ok', 'qga/randread-4k-qd1-j1-verify:ok', 'qga/randread-4k-qd8-j1-verify:ok',
      'cmd/randwrite-4k-qd1-j1-verify:ok', 'cmd/randwrite-4k-qd8-j1-verify:ok', 'cmd/randread-4k-qd1-j1-verify:ok', 'cmd/randread-4k-qd8-j1-verify:ok',
    ]);
    for (const p of results.points) {
      expect(p.verify, p.point.id).toEqual({ enabled: true, method: 'crc32c', errors: 0, verified_ios: (4 << 20) / 4096 });
      const job = readFileSync(path.join(out, p.files.job), 'utf8');
      expect(job).toContain(`filename=${loop}`);
      expect(job).toContain(`ioengine=${p.target === 'qga' ? 'libaio' : 'psync'}`);
      // the JSON fio printed in the "guest" is kept like a local run's
      expect(parseFioOutput(readFileSync(path.join(out, p.files.fio_json), 'utf8')).jobs[0]!.jobname).toBe(p.point.id);
      expect(p.fio_cpu!.usr_percent + p.fio_cpu!.sys_percent, p.point.id).toBeGreaterThan(0);
      if (p.target === 'qga') expect(p.server_cpu, p.point.id).toMatchObject({ source: expect.stringMatching(/^(schedstat|stat)$/) });
      else expect(p.server_cpu).toBeUndefined();
    }
    const report = readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(report).toContain(`**qga** (in-guest: fio in the VM (guest agent ${socket}), libaio on the guest's ${loop}, O_DIRECT; server CPU = the VM process)`);
    expect(report).toContain(`**cmd** (in-guest: fio in the VM (env LC_ALL=C), psync on the guest's ${loop}, O_DIRECT)`);
  }, 120_000);

  it('records a failing guest fio run with its exit code and stderr, and goes on', async (context) => {
    if (!loop) {
      context.skip();
      return;
    }
    // A "guest" whose fio is a script that fails like fio does on a device it may not open.
    const fakeFio = path.join(agentDir, 'fio-fails');
    writeFileSync(fakeFio, '#!/bin/sh\n[ "$1" = --version ] && { echo fio-3.33; exit 0; }\necho "fio: pid=0, err=13/file:filesetup.c:805, func=open(/dev/nvme0n1), error=Permission denied" >&2\nexit 1\n', { mode: 0o755 });
    const config = parseBenchConfig(`
smoke: { rw: [randwrite], bs: [4k], iodepth: [1], size: 1M, verify: false }
targets: [{ name: broken, type: in-guest, exec: { qga: '${socket}' }, device: '${loop}', fio: '${fakeFio}' }]
`, path.join(dir, 'broken.yaml'));
    const results = await runBench(config, { outDir: path.join(dir, 'broken-run'), smoke: true, logger });
    expect(results.targets[0]).toMatchObject({ ok: true });
    expect(results.points).toHaveLength(1);
    expect(results.points[0]!.ok).toBe(false);
    expect(results.points[0]!.error).toBe(
      `fio exited with 1: fio: pid=0, err=13/file:filesetup.c:805, func=open(/dev/nvme0n1), error=Permission denied | (in the guest through guest agent ${socket}, exit 1)`,
    );
  }, 60_000);
});

export type { BenchResults };
