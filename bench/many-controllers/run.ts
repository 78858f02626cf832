/**
 * many-controllers: what controllers cost in one `vfiod daemon` when they do nothing, and how busy ones share the
 * CPU (issue 11, "Many controllers in one daemon").
 *
 *   npm run bench:many-controllers -- [--controllers 64] [--seconds 20] [--settle 5] [--modes interrupt,polled]
 *                                     [--phases idle,connected,busy] [--busy 8] [--busy-seconds 20] [--qd 8]
 *                                     [--baseline <checkout>] [--out <file.json>]
 *
 * For every checkout (this one, and --baseline's built vfiod in the same run, for before/after) and every doorbell
 * mode, one `vfiod daemon` starts (temporary --state-dir, --namespace-dir and empty fake --sysfs-root / --dev-root /
 * --proc-root: no host devices) and its cost is measured over a window of --seconds, after --settle seconds:
 * - `empty`: the daemon without controllers (what the per-controller figures are taken relative to);
 * - `idle`: --controllers controllers created through the control API, each with a sparse 64 MiB file namespace,
 *   no client;
 * - `connected`: the same with one vfio-user client per controller (test/helpers/hypervisor.ts, in this process):
 *   8 MiB of guest RAM DMA-mapped, MSI-X wired, the controller enabled with one I/O queue pair, then nothing;
 * - `busy`: the clients gone, --busy of the controllers driven at once by `nvme-bench` (bench/nvme-host, one
 *   process each: 4k randread, QD --qd, MSI-X completions; posted REGION_WRITE doorbells in interrupt mode, the
 *   mapped doorbell page in polled mode) for --busy-seconds while the others stay idle; the daemon and the clients
 *   share the machine's cores. Per controller: IOPS as the client counted them; the spread: min / max and the
 *   coefficient of variation.
 *
 * Measured per window: process CPU (utime + stime of /proc/<pid>/stat, which counts threads that exited too) as a
 * share of one core, RSS (VmRSS) and PSS (/proc/<pid>/smaps_rollup) at the end, thread count, and where the CPU
 * goes: on-CPU time and voluntary context switches (≈ wake-ups) per thread (schedstat, status), grouped into the
 * main thread, controller threads (Node workers: they carry the process name), doorbell pollers (`vfiod-doorbell`),
 * libuv's pool and V8's helper threads.
 *
 * Output: a table on stdout, JSON in bench/results/many-controllers-<time>.json (or --out). Reports, never asserts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { VfiodClient } from '../../src/daemon/client.js';
import { Guest } from '../../test/helpers/hypervisor.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const nvmeBench = join(root, 'bench', 'nvme-host', 'build', 'nvme-bench');
const TICKS = 100; // USER_HZ

type Mode = 'interrupt' | 'polled';
type Phase = 'idle' | 'connected' | 'busy';

interface Options {
  controllers: number;
  seconds: number;
  settle: number;
  modes: Mode[];
  phases: Phase[];
  busy: number;
  busySeconds: number;
  qd: number;
  baseline?: string;
  out: string;
}

function usage(): string {
  return readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]! + '*/\n';
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    controllers: 64,
    seconds: 20,
    settle: 5,
    modes: ['interrupt', 'polled'],
    phases: ['idle', 'connected', 'busy'],
    busy: 8,
    busySeconds: 20,
    qd: 8,
    out: '',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i]!;
    };
    switch (a) {
      case '--controllers': o.controllers = Number(next()); break;
      case '--seconds': o.seconds = Number(next()); break;
      case '--settle': o.settle = Number(next()); break;
      case '--modes': o.modes = next().split(',') as Mode[]; break;
      case '--phases': o.phases = next().split(',') as Phase[]; break;
      case '--busy': o.busy = Number(next()); break;
      case '--busy-seconds': o.busySeconds = Number(next()); break;
      case '--qd': o.qd = Number(next()); break;
      case '--baseline': o.baseline = resolve(next()); break;
      case '--out': o.out = resolve(next()); break;
      case '-h': case '--help': process.stdout.write(usage()); process.exit(0);
      default: throw new Error(`unknown option ${a} (--help lists them)`);
    }
  }
  if (!(Number.isInteger(o.controllers) && o.controllers >= 1)) throw new Error('--controllers must be a positive integer');
  if (!(o.seconds > 0) || !(o.busySeconds > 0) || !(o.settle >= 0)) throw new Error('--seconds, --busy-seconds must be > 0, --settle >= 0');
  for (const m of o.modes) if (m !== 'interrupt' && m !== 'polled') throw new Error(`bad mode ${m}`);
  for (const p of o.phases) if (!['idle', 'connected', 'busy'].includes(p)) throw new Error(`bad phase ${p}`);
  if (!(Number.isInteger(o.busy) && o.busy >= 1 && o.busy <= o.controllers)) throw new Error('--busy must be from 1 to --controllers');
  if (!(Number.isInteger(o.qd) && o.qd >= 1 && o.qd <= 1023)) throw new Error('bad --qd');
  if (o.baseline && !existsSync(join(o.baseline, 'dist', 'serve', 'worker.js'))) throw new Error(`--baseline ${o.baseline}: not built (dist/serve/worker.js missing)`);
  if (o.phases.includes('busy') && !existsSync(nvmeBench)) throw new Error(`${nvmeBench} missing: run npm run bench:nvme-host first`);
  return o;
}

// ---- /proc readings -------------------------------------------------------------------------------------------

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** utime + stime of the process, in seconds (threads that exited included). */
function processCpu(pid: number): number {
  const stat = read(`/proc/${pid}/stat`) ?? '';
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

function statusField(text: string, name: string): number {
  return Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
}

interface ThreadSample {
  tid: string;
  comm: string;
  cpuNs: number;
  wakeups: number;
}

function threads(pid: number): Map<string, ThreadSample> {
  const out = new Map<string, ThreadSample>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    const comm = read(`/proc/${pid}/task/${tid}/comm`)?.trim();
    const sched = read(`/proc/${pid}/task/${tid}/schedstat`);
    const status = read(`/proc/${pid}/task/${tid}/status`);
    if (comm === undefined || sched === undefined || status === undefined) continue;
    out.set(tid, { tid, comm, cpuNs: Number(sched.split(' ')[0]), wakeups: statusField(status, 'voluntary_ctxt_switches') });
  }
  return out;
}

/** What a thread is, from its name (Node workers carry the process name; the main thread's tid is the pid). */
function threadGroup(pid: number, t: ThreadSample): string {
  if (t.tid === String(pid)) return 'main thread';
  if (t.comm === 'node' || t.comm === 'MainThread') return 'Node threads (controller workers, V8, libuv)';
  if (t.comm === 'vfiod-doorbell') return 'doorbell pollers';
  if (t.comm === 'vfiod-db-idle') return 'doorbell idle scanner';
  if (t.comm.startsWith('libuv-worker') || t.comm.startsWith('libuv')) return 'libuv pool';
  if (t.comm.startsWith('V8') || t.comm.includes('DefaultWorke') || t.comm.includes('DelayedTask')) return 'V8 helpers (GC, compiler)';
  return `other (${t.comm})`;
}

interface Window {
  seconds: number;
  cpuSeconds: number;
  /** CPU as a share of one core, in percent. */
  cpuPercent: number;
  rssMiB: number;
  pssMiB: number;
  threads: number;
  groups: Array<{ group: string; threads: number; cpuPercent: number; wakeupsPerSecond: number }>;
}

async function measure(pid: number, seconds: number): Promise<Window> {
  const cpu0 = processCpu(pid);
  const t0 = threads(pid);
  const start = performance.now();
  await sleep(seconds * 1000);
  const elapsed = (performance.now() - start) / 1000;
  const cpu1 = processCpu(pid);
  const t1 = threads(pid);
  const status = read(`/proc/${pid}/status`) ?? '';
  const rollup = read(`/proc/${pid}/smaps_rollup`) ?? '';
  const groups = new Map<string, { threads: number; cpuNs: number; wakeups: number }>();
  for (const [tid, after] of t1) {
    const before = t0.get(tid) ?? { cpuNs: 0, wakeups: 0 };
    const name = threadGroup(pid, after);
    const g = groups.get(name) ?? { threads: 0, cpuNs: 0, wakeups: 0 };
    g.threads++;
    g.cpuNs += after.cpuNs - before.cpuNs;
    g.wakeups += after.wakeups - before.wakeups;
    groups.set(name, g);
  }
  return {
    seconds: elapsed,
    cpuSeconds: cpu1 - cpu0,
    cpuPercent: ((cpu1 - cpu0) / elapsed) * 100,
    rssMiB: statusField(status, 'VmRSS') / 1024,
    pssMiB: statusField(rollup, 'Pss') / 1024,
    threads: statusField(status, 'Threads'),
    groups: [...groups.entries()]
      .map(([group, g]) => ({ group, threads: g.threads, cpuPercent: (g.cpuNs / 1e9 / elapsed) * 100, wakeupsPerSecond: g.wakeups / elapsed }))
      .sort((a, b) => b.cpuPercent - a.cpuPercent),
  };
}

// ---- the daemon -----------------------------------------------------------------------------------------------

interface Daemon {
  proc: ChildProcess;
  pid: number;
  dir: string;
  client: VfiodClient;
  stderr: string[];
}

async function startDaemon(checkout: string): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), 'vfiod-many-'));
  for (const sub of ['state', 'ns', 'sys', 'dev', 'proc']) mkdirSync(join(dir, sub));
  const api = join(dir, 'api.sock');
  const proc = spawn(process.execPath, [
    join(checkout, 'bin', 'vfiod.js'), 'daemon', '--socket', api, '--state-dir', join(dir, 'state'), '--namespace-dir', join(dir, 'ns'),
    '--sysfs-root', join(dir, 'sys'), '--dev-root', join(dir, 'dev'), '--proc-root', join(dir, 'proc'), '--max-controllers', '100000',
    '--log-level', 'warn',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr: string[] = [];
  proc.stderr!.on('data', (chunk: Buffer) => {
    stderr.push(chunk.toString());
    if (stderr.length > 200) stderr.shift();
  });
  const deadline = Date.now() + 30_000;
  while (!existsSync(api)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`vfiod daemon did not start: ${stderr.join('')}`);
    await sleep(50);
  }
  const client = new VfiodClient({ address: api });
  await client.call('ControllerService', 'ListControllers', {});
  return { proc, pid: proc.pid!, dir, client, stderr };
}

async function stopDaemon(d: Daemon): Promise<void> {
  d.client.close();
  const exited = new Promise((r) => d.proc.once('exit', r));
  d.proc.kill('SIGTERM');
  const timer = setTimeout(() => d.proc.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(timer);
  rmSync(d.dir, { recursive: true, force: true });
}

const socketOf = (d: Daemon, i: number): string => join(d.dir, `c${i}.sock`);

async function createControllers(d: Daemon, n: number, mode: Mode): Promise<void> {
  for (let i = 0; i < n; i++) {
    await d.client.call('ControllerService', 'CreateController', {
      id: `c${i}`,
      spec: {
        socketPath: socketOf(d, i),
        namespaces: [`file:${join(d.dir, 'ns', `c${i}.img`)}?size=64M`],
        doorbellMode: mode === 'polled' ? 'DOORBELL_MODE_POLLED' : 'DOORBELL_MODE_INTERRUPT',
      },
    });
  }
}

// ---- busy clients ---------------------------------------------------------------------------------------------

interface BusyResult {
  controller: string;
  iops: number;
  p50us: number;
  p99us: number;
  ok: boolean;
  error?: string;
}

function runNvmeBench(socket: string, mode: Mode, o: Options, id: string): Promise<BusyResult> {
  const args = ['--socket', socket, '--workload', 'randread', '--bs', '4096', '--qd', String(o.qd), '--seconds', String(o.busySeconds),
    '--ramp', '1', '--completion', 'irq', '--doorbell', mode === 'polled' ? 'mmap' : 'posted', '--json'];
  return new Promise((resolveRun) => {
    const child = spawn(nvmeBench, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.once('exit', (code) => {
      try {
        const r = JSON.parse(out.trim().split('\n').pop()!) as { ok: boolean; iops: number; lat_us: { p50: number; p99: number } };
        resolveRun({ controller: id, iops: r.iops, p50us: r.lat_us.p50, p99us: r.lat_us.p99, ok: r.ok && code === 0 });
      } catch {
        resolveRun({ controller: id, iops: 0, p50us: 0, p99us: 0, ok: false, error: `exit ${code}: ${err.trim().slice(-300)}` });
      }
    });
  });
}

function spread(values: number[]): { min: number; max: number; mean: number; cv: number; minOverMax: number } {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const sd = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
  const min = Math.min(...values);
  const max = Math.max(...values);
  return { min, max, mean, cv: mean > 0 ? sd / mean : 0, minOverMax: max > 0 ? min / max : 0 };
}

// ---- one checkout, one mode -----------------------------------------------------------------------------------

interface Row {
  checkout: string;
  mode: Mode;
  phase: 'empty' | Phase;
  controllers: number;
  window: Window;
  /** Relative to the same daemon without controllers, per controller. */
  perController?: { cpuPercent: number; rssMiB: number; pssMiB: number; threads: number };
  busy?: { results: BusyResult[]; totalIops: number; spread: ReturnType<typeof spread> };
  loadavg: number[];
}

async function runMode(o: Options, label: string, checkout: string, mode: Mode, rows: Row[]): Promise<void> {
  const log = (text: string): void => void process.stderr.write(`[${label} ${mode}] ${text}\n`);
  const d = await startDaemon(checkout);
  const guests: Guest[] = [];
  try {
    await sleep(o.settle * 1000);
    log(`empty daemon, ${o.seconds} s`);
    const empty = await measure(d.pid, o.seconds);
    const push = (phase: Row['phase'], n: number, w: Window, extra: Partial<Row> = {}): void => {
      const row: Row = { checkout: label, mode, phase, controllers: n, window: w, loadavg: loadavg(), ...extra };
      if (n > 0 && phase !== 'busy') {
        row.perController = {
          cpuPercent: (w.cpuPercent - empty.cpuPercent) / n,
          rssMiB: (w.rssMiB - empty.rssMiB) / n,
          pssMiB: (w.pssMiB - empty.pssMiB) / n,
          threads: (w.threads - empty.threads) / n,
        };
      }
      rows.push(row);
      log(`${phase}: CPU ${w.cpuPercent.toFixed(2)} % of a core, RSS ${w.rssMiB.toFixed(0)} MiB, ${w.threads} threads`);
    };
    push('empty', 0, empty);
    const created = Date.now();
    await createControllers(d, o.controllers, mode);
    log(`${o.controllers} controllers created in ${((Date.now() - created) / 1000).toFixed(1)} s`);
    if (o.phases.includes('idle')) {
      await sleep(o.settle * 1000);
      log(`idle, no clients, ${o.seconds} s`);
      push('idle', o.controllers, await measure(d.pid, o.seconds));
    }
    if (o.phases.includes('connected')) {
      for (let i = 0; i < o.controllers; i++) {
        const guest = await Guest.attach(socketOf(d, i), { flavour: 'qemu', ramBytes: 8 * 1024 * 1024, vectors: 2 });
        guests.push(guest);
        await guest.driver.enable();
        await guest.driver.createIoQueuePair(1, 64, 1);
      }
      await sleep(o.settle * 1000);
      log(`clients connected, controllers enabled, idle, ${o.seconds} s`);
      push('connected', o.controllers, await measure(d.pid, o.seconds));
      for (const guest of guests.splice(0)) guest.close();
      await sleep(1000);
    }
    if (o.phases.includes('busy')) {
      log(`${o.busy} busy controllers (nvme-bench 4k randread QD${o.qd}), ${o.busySeconds} s`);
      const runs = Array.from({ length: o.busy }, (_, i) => runNvmeBench(socketOf(d, i), mode, o, `c${i}`));
      // The window: after the clients' ramp, inside their measured time.
      await sleep(2000);
      const w = await measure(d.pid, Math.max(1, o.busySeconds - 2));
      const results = await Promise.all(runs);
      const ok = results.filter((r) => r.ok);
      for (const r of results) if (!r.ok) log(`client ${r.controller} failed: ${r.error ?? 'not ok'}`);
      push('busy', o.controllers, w, {
        busy: { results, totalIops: ok.reduce((a, r) => a + r.iops, 0), spread: spread(results.map((r) => r.iops)) },
      });
    }
  } finally {
    for (const guest of guests) guest.close();
    await stopDaemon(d);
  }
}

// ---- report ---------------------------------------------------------------------------------------------------

function f(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '–';
}

function report(rows: Row[], o: Options): string {
  const lines: string[] = [];
  lines.push(`| checkout | mode | phase | controllers | CPU % of a core | per controller CPU % | RSS MiB | PSS MiB | per controller RSS / PSS MiB | threads |`);
  lines.push('|---|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const w = r.window;
    const pc = r.perController;
    lines.push(`| ${r.checkout} | ${r.mode} | ${r.phase} | ${r.controllers} | ${f(w.cpuPercent, 2)} | ${pc ? f(pc.cpuPercent, 3) : '–'} | ${f(w.rssMiB, 0)} | ${f(w.pssMiB, 0)} | ${pc ? `${f(pc.rssMiB)} / ${f(pc.pssMiB)}` : '–'} | ${w.threads} |`);
  }
  const busy = rows.filter((r) => r.busy);
  if (busy.length > 0) {
    lines.push('', `Busy controllers (${o.busy} × nvme-bench 4k randread QD${o.qd}, ${o.busySeconds} s; the other ${o.controllers - o.busy} idle; ${cpus().length} CPUs shared by daemon and clients):`, '');
    lines.push('| checkout | mode | total IOPS | per controller IOPS | min / max | CV | daemon CPU % |');
    lines.push('|---|---|---:|---|---:|---:|---:|');
    for (const r of busy) {
      const b = r.busy!;
      lines.push(`| ${r.checkout} | ${r.mode} | ${f(b.totalIops, 0)} | ${b.results.map((x) => (x.ok ? f(x.iops / 1000, 1) + 'k' : 'failed')).join(' ')} | ${f(b.spread.minOverMax, 2)} | ${f(b.spread.cv, 3)} | ${f(r.window.cpuPercent, 0)} |`);
    }
  }
  lines.push('', 'Where the CPU goes (per window: share of one core, threads, voluntary context switches per second):', '');
  lines.push('| checkout | mode | phase | group | threads | CPU % | wake-ups/s |');
  lines.push('|---|---|---|---|---:|---:|---:|');
  for (const r of rows) {
    for (const g of r.window.groups) {
      if (g.cpuPercent < 0.005 && g.wakeupsPerSecond < 1) continue;
      lines.push(`| ${r.checkout} | ${r.mode} | ${r.phase} | ${g.group} | ${g.threads} | ${f(g.cpuPercent, 2)} | ${f(g.wakeupsPerSecond, 0)} |`);
    }
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const started = new Date();
  const checkouts: Array<[string, string]> = [['this', root]];
  if (o.baseline) checkouts.push(['baseline', o.baseline]);
  const rows: Row[] = [];
  const load0 = loadavg();
  for (const mode of o.modes) {
    for (const [label, checkout] of checkouts) await runMode(o, label, checkout, mode, rows);
  }
  const text = report(rows, o);
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}; load average ${load0.map((x) => x.toFixed(1)).join(' ')} → ${loadavg().map((x) => x.toFixed(1)).join(' ')}`;
  process.stdout.write(`many-controllers, ${started.toISOString()}: ${machine}\n\n${text}\n`);
  const out = o.out || join(root, 'bench', 'results', `many-controllers-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ started: started.toISOString(), machine, options: o, rows }, null, 2) + '\n');
  process.stdout.write(`\nJSON: ${out}\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench:many-controllers: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
