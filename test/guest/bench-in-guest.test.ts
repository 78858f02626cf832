/**
 * `vfiod bench` in-guest targets: fio runs inside a VM, reached through the QEMU guest agent (qemu-ga) or a command
 * prefix, and its JSON is parsed like a local run.
 * 1. Against a real qemu-ga on this host (unix-listen mode, the same protocol QEMU's virtio-serial port carries) and
 *    a loop device: config validation, the agent client, the precise errors (agent unreachable, fio missing, device
 *    missing, fio failing), and a verified smoke run through both channels with the agent's process as "VMM".
 * 2. Against a real VM (the QEMU VFIO test guest, testbed/vfio-guest.ts): the guest starts qemu-ga on its
 *    virtio-serial port, the host runs `vfiod bench --smoke` with an in-guest target on the guest's NVMe namespace,
 *    a file reference and an emulation target; QEMU's process is the in-guest target's server CPU.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { BenchConfigError, loadBenchConfig, parseBenchConfig, type InGuestTarget } from '../../src/bench/config.js';
import { parseFioOutput } from '../../src/bench/fio.js';
import { QgaClient, QgaError, QgaExec, GuestUnreachableError } from '../../src/bench/qga.js';
import type { BenchResults } from '../../src/bench/results.js';
import { runBench } from '../../src/bench/run.js';
import { startTarget, TargetError } from '../../src/bench/targets.js';
import { memoryLogger } from '../../src/util/log.js';
import { buildEngine } from '../../src/bench/engine.js';
import { cleanupVfioGuest, REPO, runVfioGuest, vfioGuestUnavailableReason, type VfioGuestRun } from '../../testbed/vfio-guest.js';
import { sleep, temporaryDir } from '../helpers/common.js';

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
  dir = temporaryDir('vfiod-in-guest-test-');
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

  it('the example config (bench/examples/in-guest.yaml) is valid', () => {
    const config = loadBenchConfig(path.join(REPO, 'bench', 'examples', 'in-guest.yaml'));
    expect(config.targets.map((t) => [t.name, t.type])).toEqual([['vf-host', 'passthrough'], ['vf-in-vm', 'in-guest']]);
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
    await sleep(50);
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
    agentDir = temporaryDir('vfiod-qga-');
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
    // An agent that stops answering mid-session: the command fails, and so does every later one on that connection
    // (a late answer must not be taken for the next command's).
    const stalled = path.join(agentDir, 'stalled.sock');
    const fake = net.createServer((connection) => {
      connection.once('data', (line) => connection.write(`{"return": ${JSON.parse(line.toString())['arguments']['id']}}\n`)); // guest-sync only
    }).listen(stalled);
    await new Promise((r) => fake.once('listening', r));
    try {
      const client = await QgaClient.connect(stalled);
      await expect(client.execute('guest-ping', undefined, 300)).rejects.toThrow(`guest agent ${stalled}: no answer to guest-ping within 300 ms (is qemu-ga running in the guest?)`);
      await expect(client.execute('guest-info')).rejects.toThrow(`no answer to guest-ping within 300 ms`);
      client.close();
    } finally {
      fake.close();
    }
    // An agent that answers with JSON that is not an object: a protocol error naming the command, not a TypeError.
    const odd = path.join(agentDir, 'odd.sock');
    const oddAgent = net.createServer((connection) => {
      const answers = ['null', '[1]', '7'];
      connection.on('data', (data) => {
        for (const line of data.toString().split('\n').filter(Boolean)) {
          const request = JSON.parse(line) as { execute: string; arguments?: { id: number } };
          connection.write(`${request.execute === 'guest-sync' ? `{"return": ${request.arguments!.id}}` : answers.shift()}\n`);
        }
      });
    }).listen(odd);
    await new Promise((r) => oddAgent.once('listening', r));
    try {
      const client = await QgaClient.connect(odd);
      for (const answer of ['null', '[1]', '7']) {
        const error = await client.execute('guest-ping').catch((e: unknown) => e);
        expect(error).toBeInstanceOf(QgaError);
        expect((error as Error).message).toContain(`not a JSON object: ${answer}`);
      }
      client.close();
    } finally {
      oddAgent.close();
    }
    // An agent whose answer never ends: the connection is closed at the cap instead of buffering without bound.
    const endless = path.join(agentDir, 'endless.sock');
    const endlessAgent = net.createServer((connection) => {
      connection.on('error', () => undefined); // the client resets the connection at the cap
      connection.on('data', (data) => {
        const request = JSON.parse(data.toString().split('\n')[0]!) as { execute: string; arguments?: { id: number } };
        if (request.execute === 'guest-sync') connection.write(`{"return": ${request.arguments!.id}}\n`);
        else connection.write('"'.padEnd(33 << 20, 'a'));
      });
    }).listen(endless);
    await new Promise((r) => endlessAgent.once('listening', r));
    try {
      const client = await QgaClient.connect(endless);
      // 32 MiB through a socket: quick on an idle machine, many seconds on a busy one; the cap must win, not the timeout.
      const error = await client.execute('guest-ping', undefined, 150_000).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(QgaError);
      expect((error as Error).message).toContain('characters without a line end; connection closed');
      client.close();
    } finally {
      endlessAgent.close();
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
smoke: { rw: [randwrite, randread], bs: [4k], iodepth: [1, 8], size: 4M, verify: true, repetitions: 1 }
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

// ---------------------------------------------------------------------------------------------------------------

function vmSkipReason(): string | undefined {
  if (hostReason) return hostReason;
  if (!existsSync(path.join(REPO, 'dist', 'cli', 'main.js'))) return 'dist/ is not built (npm test runs tsc first; the emulation target starts bin/vfiod.js serve)';
  const guest = vfioGuestUnavailableReason();
  if (guest) return guest;
  const engine = buildEngine();
  return engine.ok ? undefined : `the fio engine cannot be built: ${engine.reason}`;
}
const vmReason = vmSkipReason();
if (vmReason) console.warn(`bench-in-guest: VM test skipped: ${vmReason}`);

/** Polls until qemu-ga in the guest answers (the guest boots and starts it meanwhile). */
async function agentReady(socket: string, guestDone: () => boolean, timeoutMs: number): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (guestDone()) throw new Error('the guest powered off before its agent answered');
    if (existsSync(socket)) {
      try {
        (await QgaClient.connect(socket, { syncTimeoutMs: 2000 })).close();
        return Date.now() - start;
      } catch {
        /* not up yet */
      }
    }
    if (Date.now() - start > timeoutMs) throw new Error(`qemu-ga in the guest did not answer within ${timeoutMs} ms`);
    await sleep(250);
  }
}

type Summary = Record<string, unknown>;

describe.skipIf(vmReason !== undefined)('in-guest target in a real VM: fio in the QEMU guest through its agent, next to a file reference and emulation', () => {
  let run: VfioGuestRun | undefined;
  let s: Summary = {};
  let results: BenchResults | undefined;
  let out = '';
  let vmDir = '';
  let qemuPid = 0;
  let agentMs = 0;
  let benchMs = 0;

  beforeAll(async () => {
    // Outside the guest's work dir (runVfioGuest makes that): the socket must be on the host's own filesystem.
    vmDir = temporaryDir('vfiod-in-guest-vm-');
    const socket = path.join(vmDir, 'qga.sock');
    const pidfile = path.join(vmDir, 'qemu.pid');
    let finished = false;
    const guest = runVfioGuest({
      script: path.join(REPO, 'testbed', 'vfio-guest', 'guest-agent.sh'),
      timeoutMs: 360_000,
      qemuArgs: ['-chardev', `socket,id=qga0,path=${socket},server=on,wait=off`, '-device', 'isa-serial,chardev=qga0,index=1', '-pidfile', pidfile],
    }).finally(() => (finished = true));
    try {
      agentMs = await agentReady(socket, () => finished, 150_000);
      qemuPid = Number(readFileSync(pidfile, 'utf8').trim());
      const config = parseBenchConfig(`
name: in-guest-vm
smoke: { rw: [randwrite, randread], bs: [4k], iodepth: [1, 8], size: 4M, verify: true, repetitions: 1 }
targets:
  - { name: host-file, type: file, path: ${path.join(vmDir, 'reference.img')} }
  - { name: emu, type: emulation, namespace: 'memory:16M' }
  - { name: vm, type: in-guest, exec: { qga: '${socket}' }, device: /dev/nvme0n1, vmm-pid: '${pidfile}' }
`, path.join(vmDir, 'bench.yaml'));
      out = path.join(vmDir, 'bench');
      const started = Date.now();
      results = await runBench(config, { outDir: out, smoke: true, logger: memoryLogger().logger });
      benchMs = Date.now() - started;
    } finally {
      // Tell the guest to power off (through the agent), then wait for QEMU to exit.
      if (!finished) {
        const exec = await QgaExec.connect(socket).catch(() => undefined);
        await exec?.run(['touch', '/run/bench-done'], { timeoutMs: 10_000 }).catch(() => undefined);
        exec?.close();
      }
      run = await guest;
      s = run.results ?? {};
      console.log(`bench-in-guest: VM wall ${(run.wallMs / 1000).toFixed(1)} s; agent answered after ${(agentMs / 1000).toFixed(1)} s; bench ${(benchMs / 1000).toFixed(1)} s`);
      for (const p of results?.points ?? []) {
        console.log(`  ${p.target}/${p.point.id}: ${Math.round(p.iops ?? 0)} IOPS, p99 ${p.lat_us?.p99 ?? '-'} µs, fio ${p.fio_cpu?.us_per_io ?? '-'} µs/IO, server ${p.server_cpu?.us_per_io ?? '-'} µs/IO`);
      }
      if (!s['ok'] || !results?.points.every((p) => p.ok)) {
        console.log(`guest summary: ${JSON.stringify(s)}\nconsole (tail):\n${run.console.split('\n').slice(-30).join('\n')}`);
      }
    }
  }, 420_000);

  afterAll(() => {
    cleanupVfioGuest(run);
    if (vmDir) rmSync(vmDir, { recursive: true, force: true });
  });

  it('the guest ran its agent until the host was done, then powered off', () => {
    expect(s).toEqual({ ok: true, benchDone: true, sectors: 131072 }); // the test bed's 64 MiB namespace
    expect(run!.exitCode).toBe(0);
  });

  it('ran every point on all three targets with verify on and no mismatches', () => {
    expect(results!.targets.map((t) => [t.name, t.type, t.ok, t.error])).toEqual([
      ['host-file', 'file', true, undefined], ['emu', 'emulation', true, undefined], ['vm', 'in-guest', true, undefined],
    ]);
    expect(results!.points.map((p) => `${p.target}/${p.point.id}:${p.ok ? 'ok' : p.error}`)).toEqual(['host-file', 'emu', 'vm'].flatMap((t) =>
      ['randwrite-4k-qd1-j1-verify', 'randwrite-4k-qd8-j1-verify', 'randread-4k-qd1-j1-verify', 'randread-4k-qd8-j1-verify'].map((id) => `${t}/${id}:ok`)));
    for (const p of results!.points) {
      expect(p.verify, `${p.target}/${p.point.id}`).toEqual({ enabled: true, method: 'crc32c', errors: 0, verified_ios: (4 << 20) / 4096 });
      expect(p.iops!, `${p.target}/${p.point.id}`).toBeGreaterThan(0);
    }
  });

  it('fio ran inside the VM on its NVMe namespace, and the CPU of the VM\'s QEMU process was measured', () => {
    const vm = results!.targets[2]!;
    expect(vm.info).toMatchObject({ guest_fio: expect.stringMatching(/^fio-/), device: '/dev/nvme0n1', ioengine: 'libaio', vmm_pid: qemuPid });
    for (const p of results!.points.filter((q) => q.target === 'vm')) {
      expect(readFileSync(path.join(out, p.files.job), 'utf8')).toMatch(/^ioengine=libaio\ndirect=1\nfilename=\/dev\/nvme0n1$/m);
      // QEMU's whole process (vCPUs, device emulation) per I/O; fio's own CPU is the guest's
      expect(p.server_cpu!.us_per_io, p.point.id).toBeGreaterThan(0);
      expect(p.fio_cpu!.seconds, p.point.id).toBeGreaterThan(0);
    }
  });

  it('reports the VM and the emulation against the file reference', () => {
    const report = readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(report).toContain('**host-file** (file: ');
    expect(report).toContain('— reference for the ratios');
    expect(report).toContain(`**vm** (in-guest: fio in the VM (guest agent ${path.join(vmDir, 'qga.sock')}), libaio on the guest's /dev/nvme0n1, O_DIRECT; server CPU = the VM process)`);
    for (const target of ['emu', 'vm']) {
      const rows = report.split('\n').filter((l) => new RegExp(`^\\| (1|8) \\| ${target} \\|`).test(l));
      expect(rows, target).toHaveLength(4);
      for (const row of rows) expect(row).toMatch(/\| \d+\.\d\d× \| \d+\.\d\d× \| \d+\.\d\d× \| \d+\.\d\d× \|$/);
    }
  });
});
