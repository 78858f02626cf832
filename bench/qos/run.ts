/**
 * qos: does a noisy guest starve another controller of the same daemon, and what does a rate limit change
 * (issue 13 §4, docs/benchmarks.md "Rate limits: a noisy neighbour")?
 *
 *   npx tsx bench/qos/run.ts [--seconds 10] [--limit-iops 5000] [--noisy-qd 32] [--poll] [--rounds 1] [--out <dir>]
 *   npx tsx bench/qos/run.ts --replot <dir>     (redraws <dir>/qos.svg from <dir>/results.json)
 *
 * One `vfiod daemon` (this checkout; temporary state and namespace directories, empty fake sysfs/dev/proc) runs two
 * controllers, each with a 256 MiB memory namespace: `noisy` and `quiet`. `nvme-bench` (bench/nvme-host, one process
 * per controller, 4k randread, MSI-X completions) drives them. Phases, each --seconds long:
 * - `quiet alone`: quiet at QD1, noisy idle (the baseline);
 * - `noisy unlimited`: noisy at --noisy-qd and quiet at QD1 at the same time;
 * - `noisy limited`: the same after SetControllerLimits gave noisy --limit-iops (burst: the default).
 * Per phase: quiet's IOPS, p50 and p99 latency as its client measured them; noisy's IOPS against its limit; the
 * daemon's CPU (utime + stime of /proc/<pid>/stat over the phase) as a share of one core.
 * --rounds repeats the three phases (the machine is shared: compare phases of the same round); the plot shows the
 * median over the rounds with min-max bars.
 *
 * Output: a table on stdout, <out>/results.json and <out>/qos.svg (default out: bench/results/qos-<time>).
 * Reports, never asserts.
 */
import { processCpuSeconds } from '../../src/bench/cpu.js';
import { spread } from '../../src/bench/repetitions.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { VfiodClient } from '../../src/daemon/client.js';
import { svgDocument, type LineChart } from '../../src/bench/svg.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const nvmeBench = join(root, 'bench', 'nvme-host', 'build', 'nvme-bench');

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    'limit-iops': { type: 'string', default: '5000' },
    'noisy-qd': { type: 'string', default: '32' },
    poll: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '1' },
    out: { type: 'string' },
    replot: { type: 'string' },
  },
});
const SECONDS = Number(values.seconds);
const LIMIT_IOPS = Number(values['limit-iops']);
const NOISY_QD = Number(values['noisy-qd']);
const ROUNDS = Number(values.rounds);
const POLL = values.poll === true;
const OUT = values.out ?? join(root, 'bench', 'results', `qos-${new Date().toISOString().replace(/[:.]/g, '-')}`);

interface ClientRun {
  ok: boolean;
  iops: number;
  p50us: number;
  p99us: number;
  error?: string;
}

interface PhaseResult {
  round: number;
  phase: 'quiet alone' | 'noisy unlimited' | 'noisy limited';
  quiet: ClientRun;
  noisy?: ClientRun;
  noisyLimitIops?: number;
  /** The daemon's CPU over the phase, as a share of one core. */
  daemonCpu: number;
  loadAverage: number[];
}

/** CPU seconds of process `pid` so far (src/bench/cpu.ts; 0 once the process is gone). */
const cpuSeconds = (pid: number): number => processCpuSeconds(pid) ?? 0;

/** Runs `phase` and returns its result with the daemon's CPU share over it. */
async function measured<T>(pid: number, phase: () => Promise<T>): Promise<{ result: T; daemonCpu: number }> {
  const cpu = cpuSeconds(pid);
  const start = performance.now();
  const result = await phase();
  return { result, daemonCpu: (cpuSeconds(pid) - cpu) / ((performance.now() - start) / 1000) };
}

/** One nvme-bench run against `socket` (4k randread), its JSON summary. */
function drive(socket: string, qd: number): Promise<ClientRun> {
  const args = ['--socket', socket, '--workload', 'randread', '--bs', '4096', '--qd', String(qd), '--seconds', String(SECONDS),
    '--ramp', '1', '--completion', 'irq', '--doorbell', POLL ? 'mmap' : 'posted', '--json'];
  return new Promise((done) => {
    const child = spawn(nvmeBench, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('exit', (code) => {
      try {
        const summary = JSON.parse(stdout.trim().split('\n').pop()!) as { ok: boolean; iops: number; lat_us: { p50: number; p99: number } };
        done({ ok: summary.ok && code === 0, iops: summary.iops, p50us: summary.lat_us.p50, p99us: summary.lat_us.p99 });
      } catch {
        done({ ok: false, iops: 0, p50us: 0, p99us: 0, error: `nvme-bench exit ${code}: ${stderr.trim().slice(-300)}` });
      }
    });
  });
}

/** `vfiod daemon` in a temporary directory, and a client of its API. */
async function daemonWithTwoControllers(): Promise<{ daemon: ChildProcess; client: VfiodClient; dir: string; socket: (id: string) => string }> {
  const dir = mkdtempSync(join(tmpdir(), 'vfiod-qos-'));
  for (const sub of ['state', 'ns', 'sys', 'dev', 'proc']) mkdirSync(join(dir, sub));
  const api = join(dir, 'api.sock');
  const daemon = spawn(process.execPath, [join(root, 'bin', 'vfiod.js'), 'daemon', '--socket', api, '--state-dir', join(dir, 'state'),
    '--namespace-dir', join(dir, 'ns'), '--sysfs-root', join(dir, 'sys'), '--dev-root', join(dir, 'dev'), '--proc-root', join(dir, 'proc'),
    '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let waited = 0; !existsSync(api); waited += 50) {
    if (daemon.exitCode !== null || waited > 30_000) throw new Error('vfiod daemon did not start');
    await sleep(50);
  }
  const client = new VfiodClient({ address: api });
  const socket = (id: string): string => join(dir, `${id}.sock`);
  for (const id of ['noisy', 'quiet']) {
    await client.call('ControllerService', 'CreateController', {
      id,
      spec: { socketPath: socket(id), namespaces: ['memory:256M'], doorbellMode: POLL ? 'DOORBELL_MODE_POLLED' : 'DOORBELL_MODE_INTERRUPT' },
    });
  }
  return { daemon, client, dir, socket };
}

/** Median over the rounds, with the min-max range, of `pick` per phase (x = 1, 2, 3). */
function perPhase(results: PhaseResult[], pick: (r: PhaseResult) => number | undefined): LineChart['series'][number]['points'] {
  const phases: PhaseResult['phase'][] = ['quiet alone', 'noisy unlimited', 'noisy limited'];
  return phases.flatMap((phase, index) => {
    const range = spread(results.filter((r) => r.phase === phase).map(pick).filter((v): v is number => v !== undefined));
    return range === undefined ? [] : [{ x: index + 1, y: range.median, low: range.min, high: range.max }];
  });
}

function chart(results: PhaseResult[], limitIops: number, noisyQd: number): LineChart[] {
  const rounds = new Set(results.map((r) => r.round)).size;
  return [
    {
      title: 'quiet controller, QD1 4k randread',
      subtitle: `1 alone, 2 noisy unlimited, 3 noisy limited; median of ${rounds}, min-max`,
      xLabel: 'phase', yLabel: 'latency (us)', xScale: 'linear', yScale: 'log10', unit: 'us',
      series: [{ name: 'p50', points: perPhase(results, (r) => r.quiet.p50us) }, { name: 'p99', points: perPhase(results, (r) => r.quiet.p99us) }],
    },
    {
      title: `noisy controller, QD${noisyQd} 4k randread`,
      subtitle: `limited to ${limitIops} IOPS in phase 3`,
      xLabel: 'phase', yLabel: 'IOPS', xScale: 'linear', yScale: 'log10', unit: 'IOPS',
      series: [
        { name: 'noisy achieved', points: perPhase(results, (r) => r.noisy?.iops) },
        { name: 'noisy limit', points: perPhase(results, (r) => r.noisyLimitIops) },
        { name: 'quiet achieved', points: perPhase(results, (r) => r.quiet.iops) },
      ],
    },
  ];
}

async function main(): Promise<void> {
  if (!existsSync(nvmeBench)) throw new Error(`${nvmeBench} missing: run npm run bench:nvme-host first`);
  const { daemon, client, dir, socket } = await daemonWithTwoControllers();
  const results: PhaseResult[] = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const pid = daemon.pid!;
      const both = (): Promise<ClientRun[]> => Promise.all([drive(socket('quiet'), 1), drive(socket('noisy'), NOISY_QD)]);
      await client.call('ControllerService', 'SetControllerLimits', { id: 'noisy', limits: {} });
      const alone = await measured(pid, () => drive(socket('quiet'), 1));
      results.push({ round, phase: 'quiet alone', quiet: alone.result, daemonCpu: alone.daemonCpu, loadAverage: loadavg() });
      const unlimited = await measured(pid, both);
      results.push({ round, phase: 'noisy unlimited', quiet: unlimited.result[0]!, noisy: unlimited.result[1]!, daemonCpu: unlimited.daemonCpu, loadAverage: loadavg() });
      await client.call('ControllerService', 'SetControllerLimits', { id: 'noisy', limits: { controller: { iops: LIMIT_IOPS } } });
      const limited = await measured(pid, both);
      results.push({ round, phase: 'noisy limited', quiet: limited.result[0]!, noisy: limited.result[1]!, noisyLimitIops: LIMIT_IOPS, daemonCpu: limited.daemonCpu, loadAverage: loadavg() });
    }
  } finally {
    client.close();
    daemon.kill('SIGTERM');
    await new Promise((done) => daemon.once('exit', done));
    rmSync(dir, { recursive: true, force: true });
  }
  const run = { date: new Date().toISOString(), cpus: cpus().length, seconds: SECONDS, limitIops: LIMIT_IOPS, noisyQd: NOISY_QD, doorbells: POLL ? 'polled' : 'interrupt', results };
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, 'results.json'), JSON.stringify(run, null, 2) + '\n');
  writeFileSync(join(OUT, 'qos.svg'), svgDocument(chart(results, LIMIT_IOPS, NOISY_QD), 440, 340));
  const f = (n: number | undefined): string => (n === undefined ? '–' : n >= 100 ? n.toFixed(0) : n.toFixed(1));
  const rows = ['| round | phase | quiet IOPS | quiet p50 us | quiet p99 us | noisy IOPS | noisy limit | daemon CPU | load average (1 min) |', '|---|---|---|---|---|---|---|---|---|'];
  for (const r of results) {
    const failed = [r.quiet, r.noisy].find((c) => c && !c.ok);
    rows.push(`| ${r.round} | ${r.phase} | ${f(r.quiet.iops)} | ${f(r.quiet.p50us)} | ${f(r.quiet.p99us)} | ${f(r.noisy?.iops)} | ${f(r.noisyLimitIops)} | ${(r.daemonCpu * 100).toFixed(0)} % | ${r.loadAverage[0]!.toFixed(1)} |${failed ? ` FAILED: ${failed.error ?? ''}` : ''}`);
  }
  process.stdout.write(`${rows.join('\n')}\n\n${OUT}/results.json, ${OUT}/qos.svg\n`);
}

if (values.replot) {
  const saved = JSON.parse(readFileSync(join(values.replot, 'results.json'), 'utf8')) as { limitIops: number; noisyQd: number; results: PhaseResult[] };
  writeFileSync(join(values.replot, 'qos.svg'), svgDocument(chart(saved.results, saved.limitIops, saved.noisyQd), 440, 340));
} else {
  await main();
}
