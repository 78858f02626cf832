/**
 * bench/nvme-host: the NVMe queue layer shared by nvme-bench and the fio engine (nvme_queue.c), and the nvme-bench
 * client itself.
 *
 * - nvme_queue_test.c, built with AddressSanitizer + UBSan (any undefined behaviour aborts): PRP lists, MDTS
 *   arithmetic, phase tags / SQ head on a hand-written CQ, and a loopback controller (bring-up, a queue pair whose
 *   creation fails half-way, I/O that wraps the rings).
 * - nvme-bench with --verify against the in-process loopback device and against a real `vfiod serve` (trapped and
 *   mmapped doorbells): every block it reads back is checked against the pattern it wrote.
 * - nvme-bench --rtt: timed register reads against the server, no I/O (bench/spdk-compare's round-trip row).
 *
 * Skips (saying why) without a C compiler with the sanitizer runtimes, or without dist/ for the server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { temporaryDir } from '../helpers/common.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const nvmeHost = path.join(root, 'bench', 'nvme-host');
const bin = path.join(root, 'bin', 'vfiod.js');
const work = temporaryDir('vfiod-bench-nvme-host-');
const unitTest = path.join(work, 'nvme-queue-test');

const compile = spawnSync(
  'cc',
  ['-O1', '-g', '-fsanitize=address,undefined', '-fno-sanitize-recover=undefined', '-Wall', '-Wextra', '-Werror',
    '-std=gnu11', '-o', unitTest, ...['nvme_queue_test.c', 'nvme_queue.c', 'loopback_dev.c'].map((f) => path.join(nvmeHost, f))],
  { encoding: 'utf8' },
);
const compileReason =
  compile.error || (compile.status !== 0 && /asan|ubsan|sanitizer/i.test(compile.stderr))
    ? `no C compiler with ASan/UBSan runtimes: ${compile.error?.message ?? compile.stderr.trim().split('\n').pop()}`
    : undefined;
if (compileReason) console.warn(`bench-nvme-host tests skipped: ${compileReason}`);

const build = compileReason ? undefined : spawnSync('sh', [path.join(nvmeHost, 'build.sh')], { encoding: 'utf8' });
const nvmeBench = path.join(nvmeHost, 'build', 'nvme-bench');

afterAll(() => rmSync(work, { recursive: true, force: true }));

interface BenchResult {
  ok: boolean;
  ios: number;
  io_errors: number;
  doorbell: string;
  verify: { enabled: boolean; written: number; checked: number; errors: number };
  transport?: { irq_waits: number };
}

function runBench(args: string[]): { status: number | null; stderr: string; result?: BenchResult } {
  const run = spawnSync(nvmeBench, ['--json', '--ramp', '0', '--seconds', '0.3', '--verify', ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  let result: BenchResult | undefined;
  try {
    result = JSON.parse(run.stdout) as BenchResult;
  } catch {
    /* the caller shows stderr */
  }
  return { status: run.status, stderr: run.stderr, result };
}

describe.skipIf(compileReason)('bench/nvme-host NVMe queue layer', () => {
  it('compiles without warnings', () => {
    expect(compile.status, compile.stderr).toBe(0);
  });

  it('unit tests pass under AddressSanitizer + UBSan', () => {
    const run = spawnSync(unitTest, [], { encoding: 'utf8', env: { ...process.env, ASAN_OPTIONS: 'exitcode=99' } });
    expect(run.stderr).not.toMatch(/AddressSanitizer|runtime error/);
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toMatch(/^\d+ checks, 0 failed$/m);
  });

  it('nvme-bench builds and verifies against the loopback device (PRP lists from 12 KiB blocks)', () => {
    expect(build?.status, build?.stderr).toBe(0);
    const { status, stderr, result } = runBench(['--loopback', '--loopback-size', '64M', '--bs', '12k', '--qd', '4']);
    expect(status, stderr).toBe(0);
    expect(result?.ok).toBe(true);
    expect(result?.io_errors).toBe(0);
    expect(result?.verify.checked).toBeGreaterThan(0);
    expect(result?.verify.errors).toBe(0);
  });
});

const serveReason = compileReason ?? (existsSync(path.join(root, 'dist', 'cli', 'main.js')) ? undefined : 'dist/ not built');

describe.skipIf(serveReason)('nvme-bench against vfiod serve', () => {
  const servers: ChildProcess[] = [];
  const start = (name: string, extra: string[]): Promise<string> => {
    const socket = path.join(work, `${name}.sock`);
    const proc = spawn(process.execPath, [bin, 'serve', '--socket', socket, '--namespace', 'memory:16M', ...extra], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    servers.push(proc);
    let text = '';
    return new Promise((resolve, reject) => {
      proc.stderr!.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (text.includes('"msg":"listening"')) resolve(socket);
      });
      proc.once('exit', (code) => reject(new Error(`vfiod serve exited with ${code}: ${text}`)));
    });
  };
  let trapped: string;
  let polled: string;
  beforeAll(async () => {
    trapped = await start('trapped', []);
    polled = await start('polled', ['--poll']);
  });
  afterAll(async () => {
    await Promise.all(
      servers.map(
        (proc) =>
          new Promise((resolve) => {
            if (proc.exitCode !== null) return resolve(undefined);
            proc.once('exit', resolve);
            proc.kill('SIGTERM');
          }),
      ),
    );
  });

  it.each([
    ['posted doorbells, interrupts', () => trapped, ['--doorbell', 'posted', '--completion', 'irq'], 'posted'],
    ['mmapped doorbells, polled', () => polled, ['--doorbell', 'mmap', '--completion', 'poll'], 'mmap'],
  ])('%s: every block read back matches', (_name, socket, args, doorbell) => {
    const { status, stderr, result } = runBench(['--socket', socket(), '--bs', '8k', '--qd', '8', ...args]);
    expect(status, stderr).toBe(0);
    expect(result?.doorbell).toBe(doorbell);
    expect(result?.io_errors).toBe(0);
    expect(result?.verify.written).toBeGreaterThan(0);
    expect(result?.verify.checked).toBeGreaterThan(0);
    expect(result?.verify.errors).toBe(0);
    // The waits that slept, in the measured window: spdk-compare divides that window's I/Os by them (I/Os per
    // wake-up of the client), so each one carried at least one completion.
    const waits = result?.transport?.irq_waits ?? 0;
    if (doorbell === 'posted') {
      expect(waits).toBeGreaterThan(0);
      expect(waits).toBeLessThanOrEqual(result!.ios);
    } else {
      expect(waits).toBe(0);
    }
  });

  it('--rtt times N synchronous register reads (one vfio-user round trip each) and does no I/O', () => {
    const run = spawnSync(nvmeBench, ['--socket', trapped, '--rtt', '200', '--json'], { encoding: 'utf8', timeout: 60_000 });
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { mode: string; requests: number; lat_us: Record<string, number> };
    expect(result.mode).toBe('rtt');
    expect(result.requests).toBe(200);
    const { min, p50, p99, max } = result.lat_us as { min: number; p50: number; p99: number; max: number };
    expect(min).toBeGreaterThan(0);
    expect(min <= p50 && p50 <= p99 && p99 <= max).toBe(true);
    expect(spawnSync(nvmeBench, ['--loopback', '--rtt', '5'], { encoding: 'utf8' }).status).toBe(1); // needs a server
  });
});

describe.skipIf(compileReason ?? (os.availableParallelism() < 2 ? 'fewer than 2 CPUs' : undefined))('wake-cost', () => {
  const wakeCost = path.join(nvmeHost, 'build', 'wake-cost');

  it('times eventfd wake-up rounds between two pinned threads and refuses one CPU for both', () => {
    expect(build?.status, build?.stderr).toBe(0);
    const run = spawnSync(wakeCost, ['--waker-cpu', '0', '--sleeper-cpu', '1', '--seconds', '0.3', '--json'], { encoding: 'utf8', timeout: 60_000 });
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { ok: boolean; rounds: number; round_us: number; waker_cpu_us_per_round: number; sleeper_cpu_us_per_round: number };
    expect(result.ok).toBe(true);
    expect(result.rounds).toBeGreaterThan(0);
    // A round is two wake-ups: the waker's CPU in it is more than nothing and less than the round's wall time.
    expect(result.waker_cpu_us_per_round).toBeGreaterThan(0);
    expect(result.waker_cpu_us_per_round).toBeLessThanOrEqual(result.round_us * 1.05);
    expect(result.sleeper_cpu_us_per_round).toBeGreaterThan(0);
    const same = spawnSync(wakeCost, ['--waker-cpu', '1', '--sleeper-cpu', '1'], { encoding: 'utf8' });
    expect(same.status).toBe(2);
    expect(same.stderr).toMatch(/two different CPUs/);
  });
});
