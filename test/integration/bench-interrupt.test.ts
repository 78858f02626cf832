/**
 * `vfiod bench` stopped by Ctrl-C: the real CLI runs a short real fio matrix against two file targets (3 runs per
 * point), gets SIGINT once the first point is done, stops fio, and writes results.json, report.md and the plots of
 * what finished, with exit code 130. And the notice a first run gives when the fio engine's source must be fetched.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { BenchResults } from '../../src/bench/results.js';
import { temporaryDir, waitFor } from '../helpers/common.js';
import { assertWellFormedSvg } from '../helpers/svg.js';
import { type CliChild, startCli } from '../helpers/cli-process.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const skipReason = spawnSync('fio', ['--version']).status !== 0
  ? 'fio is not installed (apt-get install fio)'
  : !existsSync(path.join(root, 'dist', 'bench', 'repetitions.js'))
    ? 'dist/ is not built (npm test runs tsc first)'
    : undefined;
if (skipReason) console.warn(`bench interrupt tests skipped: ${skipReason}`);
/** Generous: fio and vfiod share two cores with other jobs. */
const DEADLINE_MS = 90_000;

let dir: string;
const children: ChildProcess[] = [];
beforeAll(() => {
  dir = temporaryDir('vfiod-bench-int-');
});
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `vfiod bench` in a process group of its own (so a test can end everything it started). */
function bench(args: string[]): CliChild {
  const child = startCli(['bench', ...args], { detached: true });
  children.push(child.proc);
  return child;
}

/** Processes whose command line mentions `text` (fio runs name their job files). */
function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

describe.skipIf(skipReason)('vfiod bench and SIGINT', () => {
  it('stops fio, reports the points that finished (3 runs each), exit 130', async () => {
    const out = path.join(dir, 'out');
    const config = path.join(dir, 'bench.yaml');
    writeFileSync(config, [
      'name: interrupted',
      'matrix: { rw: [randread], bs: [4k], iodepth: [1, 4, 16], runtime: 1s, ramp: 0, size: 8M, repetitions: 3 }',
      'targets:',
      `  - { name: sync, type: file, path: '${dir}/sync.img', ioengine: psync }`,
      `  - { name: aio, type: file, path: '${dir}/aio.img', ioengine: libaio }`,
      '',
    ].join('\n'));
    const run = bench(['--config', config, '--out', out]);
    await waitFor(() => /"msg":"point done"/.test(run.stderr()) || null, 'the first point done', DEADLINE_MS);
    run.proc.kill('SIGINT');
    expect(await run.exited).toBe(130);

    const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as BenchResults;
    const done = results.points.length;
    // The first point finished; the one running at the SIGINT is left out; nothing after it ran.
    expect(done).toBeGreaterThanOrEqual(1);
    expect(done).toBeLessThan(6);
    expect(results.interrupted).toMatchObject({ runs_done: done, runs_planned: 6 });
    expect(results.finished).toBeDefined();
    for (const point of results.points) {
      expect(point.ok, point.point.id).toBe(true);
      expect(point.repetitions!.map((r) => r.ok)).toEqual([true, true, true]);
      expect(point.spread!.iops!.n).toBe(3);
      for (const repetition of point.repetitions!) expect(existsSync(path.join(out, repetition.fio_json))).toBe(true);
    }
    expect(results.points[0]!.target).toBe('sync');
    expect(results.points[0]!.point.id).toBe('randread-4k-qd1-j1');

    const report = readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(report).toContain(`**Interrupted** (SIGINT) at ${results.interrupted!.at}: ${done} of 6 points finished`);
    expect(report).toMatch(/^\| 1 \| sync \| [\d,]+ \([\d,]+–[\d,]+\) \|/m);
    expect(report).toContain('3 runs per point');
    expect(run.stdout()).toBe(report); // report.md is printed as usual
    const svg = readFileSync(path.join(out, 'plots', 'randread-4k-j1.svg'), 'utf8');
    assertWellFormedSvg(svg);
    expect(svg).toContain('<g class="error-bar"');
    // The SIGINT is no failure of a point, and no fio is left running.
    expect(run.stderr()).not.toContain('"msg":"point failed"');
    expect(run.stderr()).toContain(`vfiod bench: interrupted after ${done} of 6 points; the report of those is in ${out}`);
    expect(processesMentioning(path.join(out, 'jobs'))).toEqual([]);
  }, 180_000);

  it("a first run that must fetch fio's source for the engine says so before anything else, and how to avoid it", async () => {
    const plan = spawnSync('sh', [path.join(root, 'bench/fio-engine/build.sh'), '--plan'], { encoding: 'utf8' });
    const fetching = plan.status === 0 && plan.stdout.trim().startsWith('fetch ');
    if (!fetching) {
      console.warn(`skipping the fetch notice check: the fio engine needs no fetch here (build.sh --plan: ${plan.stdout.trim() || plan.stderr.trim()})`);
      return;
    }
    const config = path.join(dir, 'emu.yaml');
    writeFileSync(config, "matrix: { size: 8M }\ntargets: [{ name: emu, type: emulation, namespace: 'memory:16M' }]\n");
    const run = bench(['--config', config, '--smoke', '--out', path.join(dir, 'emu-out')]);
    const notice = await waitFor(() => run.stderr().split('\n').find((line) => line.includes('first run:')) ?? null, 'the fetch notice', DEADLINE_MS);
    const record = JSON.parse(notice) as { level: string; msg: string };
    expect(record.level).toBe('warn');
    expect(record.msg).toContain(`fetched once now (${plan.stdout.trim().slice('fetch '.length)})`);
    expect(record.msg).toContain("run 'npm run bench:fio-engine' once where deb.debian.org is reachable, or give 'engine: <path of a built vfiod-fio.so>'");
    // Before anything else: the targets start (and the build begins) after 'bench starting'.
    await waitFor(() => run.stderr().includes('"msg":"bench starting"') || null, 'bench starting', DEADLINE_MS);
    expect(run.stderr().indexOf(notice)).toBeLessThan(run.stderr().indexOf('"msg":"bench starting"'));
    process.kill(-run.proc.pid!, 'SIGKILL');
  }, 120_000);
});
