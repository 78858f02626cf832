/**
 * spdk-compare: vfiod's polled data path next to SPDK's vfio-user target, in one run, with the same client, cores
 * and workload, reported as ratios (the development machine is shared and noisy: absolute numbers from different
 * runs do not compare, ratios from one run do).
 *
 *   npm run bench:spdk-compare -- [--quick] [--seconds 5] [--qds 1,4,32,128] [--bs 4k,128k] [--rw randread,randwrite]
 *                                 [--rounds 1] [--spdk <dir>] [--server-core 0] [--client-core 1] [--out <dir>]
 *                                 [--no-interrupt] [--baseline <checkout>]
 *   npm run bench:spdk-compare -- --report <results.json>      (re-render report.md and plots/ from a run)
 *
 * Yardstick: SPDK v24.01's `nvmf_tgt` (VFIOUSER transport, 256 MiB malloc bdev, 512-byte blocks, started by the
 * yardstick's own reference.sh) and its userspace NVMe driver `spdk_nvme_perf` as the client, from
 * `../shared/peers/spdk-v24.01` next to the repository (or --spdk / $VFIOD_SPDK_DIR). vfiod runs as
 * `vfiod serve --poll --namespace memory:256M` (spdk_nvme_perf needs the mmap-able doorbell page). Server on
 * --server-core (taskset), client on --client-core (taskset and perf's own core mask).
 *
 * Order: for every workload group (rw x bs) SPDK's target starts, runs every QD, stops, then vfiod does the same,
 * so the two servers of one group run seconds apart; --rounds repeats the whole matrix and the report keeps every
 * round (ratios are per round).
 *
 * Every server's namespace is written once before it is measured (spdk_nvme_perf, or nvme-bench where perf cannot
 * drive the server): SPDK's malloc bdev is memory it has touched, while a never-written vfiod memory namespace reads
 * the kernel's shared zero page, which would flatter vfiod's reads (every read then hits one cached page).
 *
 * Measured per cell: IOPS and latency percentiles as spdk_nvme_perf reports them (-L summary: p50, p99, p99.9),
 * and server CPU: the on-CPU time of all of the server's threads (/proc/<pid>/task/<tid>/schedstat) from the
 * moment perf launches its workers (its "Launching workers" line) to --seconds later, divided by the I/Os of the
 * run. SPDK's reactor polls all the time, so its CPU is one core whatever the load; vfiod's is what it used.
 *
 * Interrupt mode (what a QEMU guest uses by default: doorbells trap into the hypervisor and arrive as REGION_WRITE
 * messages) cannot be driven by spdk_nvme_perf. The project's own client, bench/nvme-host's `nvme-bench`, drives it
 * (posted REGION_WRITE doorbells, MSI-X eventfd completions), next to the same client in polled mode (mmapped
 * doorbells, polled CQ) against vfiod and against SPDK, the client's loopback ceiling, and one vfio-user round trip
 * (`nvme-bench --rtt`: synchronous REGION_READs of CSTS against vfiod).
 *
 * --baseline <checkout> adds a second vfiod build (another checkout's bin/vfiod.js, built) to every group, right after
 * this one, for before/after comparisons of a change in the same run; it is reported against SPDK like vfiod.
 *
 * Without the yardstick (no binaries, libraries or hugepages) the report says so first, and the same matrix runs
 * with `nvme-bench` as the client against its in-process loopback device, the project's own ceiling.
 *
 * Output: <out>/results.json, <out>/report.md, <out>/plots/*.svg (default out: bench/results/spdk-compare-<time>).
 * Benchmarks only: nothing here is a timed test.
 */
import { checkGoals, goalsMarkdown, median } from './goals.js';
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { processCpuSeconds } from '../../src/bench/cpu.js';
import { svgDocument, type LineChart } from '../../src/bench/svg.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const nvmeHostDir = join(root, 'bench', 'nvme-host');
const nvmeBench = join(nvmeHostDir, 'build', 'nvme-bench');
const wakeCost = join(nvmeHostDir, 'build', 'wake-cost');
const NAMESPACE_MIB = 256;

interface Options {
  seconds: number;
  qds: number[];
  sizes: number[];
  rws: string[];
  rounds: number;
  spdk: string;
  serverCore: number;
  clientCore: number;
  out: string;
  interrupt: boolean;
  quick: boolean;
  /** Another checkout whose vfiod runs next to this one (before/after). */
  baseline?: string;
  /** Set once the yardstick was found usable. */
  spdkUsable?: boolean;
  /** Only re-render report.md and the plots from this results.json (into its directory). */
  report?: string;
}

function usage(): string {
  return readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]! + '*/\n';
}

function parseSize(text: string): number {
  const m = /^(\d+)([kKmM]?)$/.exec(text);
  if (!m) throw new Error(`bad size ${text}`);
  return Number(m[1]) * (m[2] === '' ? 1 : /k/i.test(m[2]!) ? 1024 : 1024 * 1024);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    seconds: 5,
    qds: [1, 4, 32, 128],
    sizes: [4096, 131072],
    rws: ['randread', 'randwrite'],
    rounds: 1,
    spdk: process.env.VFIOD_SPDK_DIR ?? resolve(root, '..', 'shared', 'peers', 'spdk-v24.01'),
    serverCore: 0,
    clientCore: 1,
    out: '',
    interrupt: true,
    quick: false,
  };
  const explicit = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i]!;
    };
    explicit.add(a);
    switch (a) {
      case '--seconds': o.seconds = Number(next()); break;
      case '--qds': o.qds = next().split(',').map(Number); break;
      case '--bs': o.sizes = next().split(',').map(parseSize); break;
      case '--rw': o.rws = next().split(','); break;
      case '--rounds': o.rounds = Number(next()); break;
      case '--spdk': o.spdk = resolve(next()); break;
      case '--server-core': o.serverCore = Number(next()); break;
      case '--client-core': o.clientCore = Number(next()); break;
      case '--out': o.out = resolve(next()); break;
      case '--no-interrupt': o.interrupt = false; break;
      case '--quick': o.quick = true; break;
      case '--baseline': o.baseline = resolve(next()); break;
      case '--report': o.report = resolve(next()); break;
      case '-h': case '--help': process.stdout.write(usage()); process.exit(0);
      default: throw new Error(`unknown option ${a} (--help lists them)`);
    }
  }
  if (o.quick) {
    // A smoke run: every moving part once, in about a minute.
    if (!explicit.has('--seconds')) o.seconds = 2;
    if (!explicit.has('--qds')) o.qds = [1, 32];
    if (!explicit.has('--bs')) o.sizes = [4096];
    if (!explicit.has('--rw')) o.rws = ['randread'];
  }
  if (!(o.seconds > 0)) throw new Error('--seconds must be > 0');
  for (const q of o.qds) if (!(Number.isInteger(q) && q >= 1 && q <= 1023)) throw new Error(`bad QD ${q}`);
  for (const s of o.sizes) if (!(s >= 4096 && s % 4096 === 0 && s <= 1 << 20)) throw new Error(`bad block size ${s}`);
  for (const rw of o.rws) if (rw !== 'randread' && rw !== 'randwrite') throw new Error(`bad --rw ${rw}`);
  if (!(Number.isInteger(o.rounds) && o.rounds >= 1)) throw new Error('--rounds must be a positive integer');
  const ncpu = cpus().length;
  for (const c of [o.serverCore, o.clientCore]) if (!(Number.isInteger(c) && c >= 0 && c < ncpu)) throw new Error(`no CPU ${c}`);
  return o;
}

const log = (msg: string): void => void process.stderr.write(`[spdk-compare] ${msg}\n`);

// ---- the yardstick ---------------------------------------------------------------------------------------------

interface Yardstick {
  available: boolean;
  /** Why not, in words a reader of the report understands. */
  reason?: string;
  dir: string;
  hugepages: { total: number; free: number; mounted: boolean; restoreTo?: number };
}

function readHugepages(): Yardstick['hugepages'] {
  const meminfo = existsSync('/proc/meminfo') ? readFileSync('/proc/meminfo', 'utf8') : '';
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1] ?? 0);
  const mounts = existsSync('/proc/mounts') ? readFileSync('/proc/mounts', 'utf8') : '';
  return { total: field('HugePages_Total'), free: field('HugePages_Free'), mounted: / \/dev\/hugepages hugetlbfs /.test(mounts) };
}

function checkYardstick(dir: string): Yardstick {
  const hugepages = readHugepages();
  const y: Yardstick = { available: false, dir, hugepages };
  const need = ['bin/nvmf_tgt', 'bin/spdk_nvme_perf', 'reference.sh', 'scripts/rpc.py'];
  const missing = need.filter((f) => {
    try {
      accessSync(join(dir, f), f.endsWith('.py') ? constants.R_OK : constants.X_OK);
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) {
    y.reason = `SPDK yardstick not found: ${missing.map((f) => join(dir, f)).join(', ')} missing (pass --spdk <dir> or set VFIOD_SPDK_DIR)`;
    return y;
  }
  for (const bin of ['bin/nvmf_tgt', 'bin/spdk_nvme_perf']) {
    const ldd = spawnSync('ldd', [join(dir, bin)], { encoding: 'utf8' });
    const notFound = (ldd.stdout ?? '').split('\n').filter((l) => l.includes('not found')).map((l) => l.trim().split(' ')[0]);
    if (notFound.length > 0) {
      y.reason = `SPDK's ${bin} cannot run here: libraries not found: ${notFound.join(', ')} (Debian: libnuma1 libjson-c5 libuuid1 libssl3 libaio1)`;
      return y;
    }
  }
  // The target and perf (-s 256) need about 512 pages of 2 MiB between them; reference.sh sets 512 when run as root.
  const isRoot = process.getuid?.() === 0;
  if (hugepages.free < 256 && !isRoot) {
    y.reason = `SPDK needs 2 MiB hugepages: ${hugepages.free} free of ${hugepages.total}, and this is not root (as root: echo 512 > /proc/sys/vm/nr_hugepages; mount -t hugetlbfs nodev /dev/hugepages)`;
    return y;
  }
  if (!hugepages.mounted && !isRoot) {
    y.reason = 'SPDK needs hugetlbfs mounted at /dev/hugepages, and this is not root';
    return y;
  }
  if (hugepages.total < 512 && isRoot) hugepages.restoreTo = hugepages.total; // reference.sh raises it; put it back after
  y.available = true;
  return y;
}

// ---- processes ---------------------------------------------------------------------------------------------------

interface Server {
  kind: 'spdk' | 'vfiod' | 'baseline';
  mode: 'polled' | 'interrupt';
  pid: number;
  socketDir: string;
  stop(): Promise<void>;
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!existsSync(`/proc/${pid}`)) return true;
    // A zombie child is gone for our purposes.
    try {
      if (/^\S+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) return true;
    } catch {
      return true;
    }
    await sleep(50);
  }
  return false;
}

async function startSpdk(o: Options): Promise<Server> {
  const socketDir = mkdtempSync(join(tmpdir(), 'spdk-compare-spdk-'));
  const r = spawnSync(join(o.spdk, 'reference.sh'), ['target', socketDir, '0x' + (1 << o.serverCore).toString(16)], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  const pid = Number((r.stdout ?? '').trim().split('\n').pop());
  if (r.status !== 0 || !Number.isInteger(pid) || pid <= 0) {
    const tgtLog = existsSync(socketDir + '.tgt.log') ? readFileSync(socketDir + '.tgt.log', 'utf8').slice(-1500) : '';
    throw new Error(`SPDK target did not start (exit ${r.status}): ${(r.stderr ?? '').slice(-1500)} ${tgtLog}`);
  }
  for (let i = 0; i < 100 && !existsSync(join(socketDir, 'cntrl')); i++) await sleep(50);
  return {
    kind: 'spdk',
    mode: 'polled',
    pid,
    socketDir,
    async stop() {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      if (!(await waitGone(pid, 10_000))) {
        log(`SPDK target ${pid} ignored SIGTERM; killing it`);
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
        await waitGone(pid, 5000);
      }
      for (const p of [socketDir, socketDir + '.rpc.sock', socketDir + '.tgt.log']) rmSync(p, { recursive: true, force: true });
    },
  };
}

async function startVfiod(o: Options, mode: 'polled' | 'interrupt', checkout = root): Promise<Server> {
  const socketDir = mkdtempSync(join(tmpdir(), 'spdk-compare-vfiod-'));
  const args = ['-c', String(o.serverCore), process.execPath, join(checkout, 'bin', 'vfiod.js'), 'serve', '--socket', join(socketDir, 'cntrl'),
    '--namespace', `memory:${NAMESPACE_MIB}M`, ...(mode === 'polled' ? ['--poll'] : [])];
  const child = spawn('taskset', args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let exited = false;
  child.stderr!.on('data', (d: Buffer) => void (stderr += d.toString()));
  child.on('exit', () => void (exited = true));
  const deadline = Date.now() + 30_000;
  while (!/"msg":"listening"/.test(stderr)) {
    if (exited) throw new Error(`vfiod serve exited early: ${stderr.slice(-1500)}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`vfiod serve not listening after 30 s: ${stderr.slice(-1500)}`);
    }
    await sleep(50);
  }
  return {
    kind: checkout === root ? 'vfiod' : 'baseline',
    mode,
    pid: child.pid!, // taskset execs node: same pid
    socketDir,
    async stop() {
      if (!exited) child.kill('SIGTERM');
      for (let i = 0; i < 100 && !exited; i++) await sleep(50);
      if (!exited) child.kill('SIGKILL');
      rmSync(socketDir, { recursive: true, force: true });
    },
  };
}

function runProcess(cmd: string, args: string[], onLine?: (line: string) => void, timeoutMs = 120_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((done) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let partial = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      const text = d.toString();
      out += text;
      if (!onLine) return;
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const line of lines) onLine(line);
    });
    child.stderr!.on('data', (d: Buffer) => void (err += d.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, out, err });
    });
  });
}

// ---- one cell ------------------------------------------------------------------------------------------------------

interface Latency {
  mean: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

interface Cell {
  round: number;
  server: 'spdk' | 'vfiod' | 'baseline' | 'loopback';
  mode: 'polled' | 'interrupt' | 'loopback';
  client: 'spdk_nvme_perf' | 'nvme-bench' | 'wake-cost';
  rw: string;
  bs: number;
  qd: number;
  ok: boolean;
  error?: string;
  iops?: number;
  mibps?: number;
  lat_us?: Latency;
  server_cpu?: { seconds: number; window_s: number; util: number; us_per_io: number; source: string };
  /** 1-minute load average when the cell ended. */
  load1?: number;
  extra?: Record<string, unknown>;
}

/** Parses spdk_nvme_perf's report: the Total line and the -L percentile summary. */
export function parsePerfOutput(text: string): { iops: number; mibps: number; mean: number; max: number; percentiles: Map<number, number> } | undefined {
  const total = /^Total\s*:\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)/m.exec(text);
  if (!total) return undefined;
  const percentiles = new Map<number, number>();
  for (const m of text.matchAll(/^\s*([\d.]+)%\s*:\s*([\d.]+)us/gm)) {
    const p = Number(m[1]);
    if (!percentiles.has(p)) percentiles.set(p, Number(m[2]));
  }
  return { iops: Number(total[1]), mibps: Number(total[2]), mean: Number(total[3]), max: Number(total[5]), percentiles };
}

async function perfCell(o: Options, server: Server, round: number, rw: string, bs: number, qd: number): Promise<Cell> {
  const cell: Cell = { round, server: server.kind, mode: server.mode, client: 'spdk_nvme_perf', rw, bs, qd, ok: false };
  const args = ['-c', String(o.clientCore), 'stdbuf', '-oL', join(o.spdk, 'bin', 'spdk_nvme_perf'),
    '-r', `trtype:VFIOUSER traddr:${server.socketDir} subnqn:nqn.2019-07.io.spdk:cnode0`,
    '-s', '256', '-g', '-c', '0x' + (1 << o.clientCore).toString(16),
    '-q', String(qd), '-o', String(bs), '-w', rw, '-t', String(o.seconds), '-L'];
  let cpu0: number | undefined;
  let t0 = 0;
  let cpu1: number | undefined;
  let t1 = 0;
  let timer: NodeJS.Timeout | undefined;
  const r = await runProcess('taskset', args, (line) => {
    if (cpu0 === undefined && line.includes('Launching workers')) {
      t0 = performance.now();
      cpu0 = processCpuSeconds(server.pid, 'schedstat');
      timer = setTimeout(() => {
        t1 = performance.now();
        cpu1 = processCpuSeconds(server.pid, 'schedstat');
      }, o.seconds * 1000);
    }
  }, (o.seconds + 90) * 1000);
  if (timer) clearTimeout(timer);
  if (cpu1 === undefined && cpu0 !== undefined) {
    // perf finished a little before our timer: take the end now.
    t1 = performance.now();
    cpu1 = processCpuSeconds(server.pid, 'schedstat');
  }
  const parsed = parsePerfOutput(r.out);
  if (r.code !== 0 || !parsed) {
    cell.error = `spdk_nvme_perf exit ${r.code}: ${(r.err + r.out).trim().split('\n').slice(-6).join(' | ')}`;
    return cell;
  }
  const p = parsed.percentiles;
  cell.ok = true;
  cell.iops = parsed.iops;
  cell.mibps = parsed.mibps;
  cell.lat_us = { mean: parsed.mean, p50: p.get(50) ?? NaN, p99: p.get(99) ?? NaN, p999: p.get(99.9) ?? NaN, max: parsed.max };
  if (cpu0 !== undefined && cpu1 !== undefined) {
    const window = (t1 - t0) / 1000;
    const seconds = cpu1 - cpu0;
    cell.server_cpu = { seconds, window_s: window, util: seconds / window, us_per_io: (seconds / window / parsed.iops) * 1e6, source: 'schedstat' };
  }
  return cell;
}

async function nvmeBenchCell(o: Options, server: Server | undefined, round: number, rw: string, bs: number, qd: number, doorbell: string, completion: string): Promise<Cell> {
  const cell: Cell = {
    round,
    server: server?.kind ?? 'loopback',
    mode: server?.mode ?? 'loopback',
    client: 'nvme-bench',
    rw, bs, qd, ok: false,
    extra: { doorbell, completion },
  };
  const target = server ? ['--socket', join(server.socketDir, 'cntrl'), '--doorbell', doorbell] : ['--loopback'];
  const args = ['-c', String(o.clientCore), nvmeBench, ...target, '--workload', rw, '--bs', String(bs), '--qd', String(qd),
    '--seconds', String(o.seconds), '--ramp', '0.5', '--completion', completion, '--json'];
  const r = await runProcess('taskset', args, undefined, (o.seconds + 60) * 1000);
  let json: Record<string, any> | undefined;
  try {
    json = JSON.parse(r.out.trim().split('\n').pop()!);
  } catch {
    /* below */
  }
  if (r.code !== 0 || !json) {
    cell.error = `nvme-bench exit ${r.code}: ${(r.err + r.out).trim().split('\n').slice(-4).join(' | ')}`;
    return cell;
  }
  cell.ok = true;
  cell.iops = json.iops;
  cell.mibps = json.mbps / 1.048576;
  cell.lat_us = { mean: json.lat_us.mean, p50: json.lat_us.p50, p99: json.lat_us.p99, p999: json.lat_us.p999, max: json.lat_us.max };
  if (json.server_cpu) {
    cell.server_cpu = { seconds: json.server_cpu.seconds, window_s: json.seconds, util: json.server_cpu.util, us_per_io: json.server_cpu.us_per_io, source: 'stat (10 ms ticks)' };
  }
  cell.extra!.client_cpu_us_per_io = json.client_cpu?.us_per_io;
  cell.extra!.transport = json.transport;
  // How many I/Os each wake-up of the sleeping client carried: what a wake-up's cost is spread over.
  const waits = json.transport?.irq_waits;
  if (completion === 'irq' && typeof waits === 'number' && waits > 0) cell.extra!.ios_per_wake = json.ios / waits;
  return cell;
}

/**
 * What one wake-up round costs the server's CPU on this machine, with no server in it (bench/nvme-host/wake_cost.c):
 * a thread on the server's CPU wakes one sleeping on the client's CPU through an eventfd and sleeps until it answers.
 * An interrupt-mode server pays that round once per wake-up of its client, so the figure per round divided by the I/Os
 * each wake-up carried is the floor under its CPU per I/O here.
 */
async function wakeCostCell(o: Options, round: number): Promise<Cell> {
  const cell: Cell = { round, server: 'loopback', mode: 'loopback', client: 'wake-cost', rw: 'wake', bs: 0, qd: 1, ok: false, extra: {} };
  const r = await runProcess(wakeCost, ['--waker-cpu', String(o.serverCore), '--sleeper-cpu', String(o.clientCore), '--seconds', '2', '--json']);
  try {
    const json = JSON.parse(r.out.trim().split('\n').pop()!);
    cell.ok = r.code === 0 && json.ok === true;
    cell.iops = json.rounds / json.seconds;
    cell.extra = { waker_cpu_us_per_round: json.waker_cpu_us_per_round, sleeper_cpu_us_per_round: json.sleeper_cpu_us_per_round, round_us: json.round_us };
  } catch {
    cell.error = `wake-cost exit ${r.code}: ${(r.err + r.out).trim().slice(-500)}`;
  }
  return cell;
}

/** Writes the whole namespace once (see the file comment). */
async function fill(o: Options, server: Server): Promise<void> {
  const polled = server.kind === 'spdk' || server.mode === 'polled';
  const r = polled && existsSync(join(o.spdk, 'bin', 'spdk_nvme_perf')) && o.spdkUsable
    ? await runProcess('taskset', ['-c', String(o.clientCore), join(o.spdk, 'bin', 'spdk_nvme_perf'),
      '-r', `trtype:VFIOUSER traddr:${server.socketDir} subnqn:nqn.2019-07.io.spdk:cnode0`, '-s', '256', '-g',
      '-c', '0x' + (1 << o.clientCore).toString(16), '-q', '32', '-o', '131072', '-w', 'write',
      '-d', String((NAMESPACE_MIB * 1024 * 1024) / 131072), '-t', '60'])
    // nvme-bench has no sequential mode: random 128k writes for a while cover every block with near certainty.
    : await runProcess('taskset', ['-c', String(o.clientCore), nvmeBench, '--socket', join(server.socketDir, 'cntrl'),
      '--workload', 'randwrite', '--bs', '131072', '--qd', '16', '--seconds', '2', '--ramp', '0', '--json']);
  if (r.code !== 0) log(`filling ${server.kind}/${server.mode}'s namespace failed (exit ${r.code}): ${(r.err + r.out).trim().slice(-300)}`);
}

async function rttCell(o: Options, server: Server, round: number): Promise<Cell> {
  const cell: Cell = { round, server: server.kind, mode: server.mode, client: 'nvme-bench', rw: 'rtt', bs: 4, qd: 1, ok: false, extra: { what: 'REGION_READ of CSTS' } };
  const r = await runProcess('taskset', ['-c', String(o.clientCore), nvmeBench, '--socket', join(server.socketDir, 'cntrl'), '--rtt', '20000', '--json']);
  try {
    const json = JSON.parse(r.out.trim().split('\n').pop()!);
    cell.ok = r.code === 0;
    cell.iops = json.requests / json.seconds;
    cell.lat_us = { mean: json.lat_us.mean, p50: json.lat_us.p50, p99: json.lat_us.p99, p999: json.lat_us.p999, max: json.lat_us.max };
  } catch {
    cell.error = `nvme-bench --rtt exit ${r.code}: ${(r.err + r.out).trim().slice(-500)}`;
  }
  return cell;
}

function buildNvmeBench(): void {
  const sources = ['nvme_bench.c', 'nvme_queue.c', 'nvme_queue.h', 'vfio_user_client.c', 'vfio_user_client.h', 'loopback_dev.c', 'loopback_dev.h', 'wake_cost.c', 'build.sh'];
  const built = existsSync(nvmeBench) && existsSync(wakeCost) ? Math.min(statSync(nvmeBench).mtimeMs, statSync(wakeCost).mtimeMs) : 0;
  if (built && sources.every((f) => statSync(join(nvmeHostDir, f)).mtimeMs <= built)) return;
  log('building bench/nvme-host (nvme-bench, wake-cost)');
  const r = spawnSync('sh', [join(nvmeHostDir, 'build.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error('building bench/nvme-host failed');
}

// ---- report ------------------------------------------------------------------------------------------------------

const f = (v: number | undefined, d = 2): string => (v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(d));
const fi = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '–' : Math.round(v).toLocaleString('en-US'));
const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
const sizeName = (bs: number): string => (bs >= 1024 ? `${bs / 1024}k` : `${bs}`);

interface Pair {
  round: number;
  rw: string;
  bs: number;
  qd: number;
  ref?: Cell;
  vfiod?: Cell;
  iops?: number;
  p50?: number;
  p99?: number;
  p999?: number;
  cpu?: number;
}

function pairs(cells: Cell[], refServer: 'spdk' | 'loopback', server: 'vfiod' | 'baseline' = 'vfiod'): Pair[] {
  const out: Pair[] = [];
  for (const v of cells) {
    if (v.server !== server || v.mode !== 'polled' || v.extra?.section === 'interrupt') continue;
    const ref = cells.find((c) => c.server === refServer && c.round === v.round && c.rw === v.rw && c.bs === v.bs && c.qd === v.qd && c.extra?.section !== 'interrupt');
    const ok = v.ok && ref?.ok;
    out.push({
      round: v.round, rw: v.rw, bs: v.bs, qd: v.qd, ref, vfiod: v,
      iops: ok ? ratio(v.iops, ref!.iops) : undefined,
      p50: ok ? ratio(v.lat_us!.p50, ref!.lat_us!.p50) : undefined,
      p99: ok ? ratio(v.lat_us!.p99, ref!.lat_us!.p99) : undefined,
      p999: ok ? ratio(v.lat_us!.p999, ref!.lat_us!.p999) : undefined,
      cpu: ok ? ratio(v.server_cpu?.us_per_io, ref!.server_cpu?.us_per_io) : undefined,
    });
  }
  return out;
}

function report(run: Record<string, any>, cells: Cell[], yard: Yardstick): { markdown: string; charts: Record<string, LineChart[]> } {
  const refServer = yard.available ? 'spdk' : 'loopback';
  const refName = yard.available ? 'SPDK nvmf_tgt' : 'nvme-bench loopback (client ceiling)';
  const md: string[] = [];
  md.push(`# spdk-compare, ${run.started}`);
  md.push('');
  md.push(`Machine: ${run.machine.cpus} CPUs (${run.machine.cpu_model}), load average ${run.machine.loadavg_start.map((l: number) => l.toFixed(2)).join(' / ')} at the start, ` +
    `${run.machine.loadavg_end.map((l: number) => l.toFixed(2)).join(' / ')} at the end; vfiod ${run.vfiod.commit}${run.vfiod.dirty ? ' (dirty tree)' : ''}; ` +
    `server on CPU ${run.options.serverCore}, client on CPU ${run.options.clientCore}; ${run.options.seconds} s per cell; ${run.options.rounds} round(s).`);
  md.push('');
  if (!yard.available) {
    md.push(`**The SPDK yardstick is missing: ${yard.reason}.** The matrix below therefore measures vfiod (polled) with the project's own client ` +
      '`nvme-bench` (mmapped doorbells, polled CQ) against that client\'s in-process loopback device, the most this client can drive here.');
    md.push('');
  }
  const goalPairs = pairs(cells, refServer).map((p) => ({ ...p, vfiodCpuUsPerIo: p.vfiod?.ok ? p.vfiod.server_cpu?.us_per_io : undefined }));
  const wakeRound = (round: number): number | undefined => {
    const w = cells.find((c) => c.client === 'wake-cost' && c.round === round && c.ok);
    return w?.extra?.waker_cpu_us_per_round as number | undefined;
  };
  const interruptCells = cells
    .filter((c) => c.extra?.section === 'interrupt' && c.server === 'vfiod' && c.mode === 'interrupt' && c.rw === 'randread' && c.ok)
    .map((c) => {
      const perRound = wakeRound(c.round);
      const iosPerWake = c.extra?.ios_per_wake as number | undefined;
      const wakeFloorUsPerIo = perRound !== undefined && iosPerWake !== undefined && iosPerWake > 0 ? perRound / iosPerWake : undefined;
      return { round: c.round, qd: c.qd, cpuUsPerIo: c.server_cpu?.us_per_io, wakeFloorUsPerIo };
    });
  md.push(...goalsMarkdown(checkGoals(goalPairs, interruptCells), refName));
  const client = yard.available ? 'spdk_nvme_perf' : 'nvme-bench';
  const table = (server: 'vfiod' | 'baseline', title: string): Pair[] => {
    md.push(title);
    md.push('');
    md.push('Ratios are vfiod / reference from the same round: IOPS above 1 is better, latency and CPU below 1 is better.');
    md.push('');
    md.push(`| round | rw | bs | QD | ref IOPS | vfiod IOPS | IOPS ratio | ref p50 / p99 / p99.9 µs | vfiod p50 / p99 / p99.9 µs | p50 ratio | p99 ratio | p99.9 ratio | ref CPU µs/IO | vfiod CPU µs/IO | CPU ratio |`);
    md.push('|---:|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|');
    const list = pairs(cells, refServer, server);
    for (const p of list) {
      const r = p.ref, v = p.vfiod;
      const lat = (c: Cell | undefined): string => (c?.ok ? `${f(c.lat_us!.p50)} / ${f(c.lat_us!.p99)} / ${f(c.lat_us!.p999)}` : `FAILED`);
      md.push(`| ${p.round} | ${p.rw} | ${sizeName(p.bs)} | ${p.qd} | ${fi(r?.iops)} | ${fi(v?.iops)} | ${f(p.iops)} | ${lat(r)} | ${lat(v)} | ${f(p.p50)} | ${f(p.p99)} | ${f(p.p999)} | ` +
        `${f(r?.server_cpu?.us_per_io)} | ${f(v?.server_cpu?.us_per_io)} | ${f(p.cpu)} |`);
    }
    md.push('');
    return list;
  };
  if (run.options.rounds > 1) {
    // Median of the per-round ratios: each round's ratio is taken seconds apart, the median damps a disturbed round.
    for (const server of ['vfiod', 'baseline'] as const) {
      const list = pairs(cells, refServer, server);
      if (list.length === 0) continue;
      md.push(`## Median of the per-round ratios, ${server === 'vfiod' ? 'vfiod' : `baseline (${run.baseline.commit})`} / ${refName} (${run.options.rounds} rounds)`);
      md.push('');
      md.push('| rw | bs | QD | IOPS ratio | p50 ratio | p99 ratio | p99.9 ratio | CPU/IO ratio | vfiod CPU µs/IO (median) |');
      md.push('|---|---|---:|---:|---:|---:|---:|---:|---:|');
      const keys = [...new Set(list.map((p) => `${p.rw}|${p.bs}|${p.qd}`))];
      for (const key of keys) {
        const mine = list.filter((p) => `${p.rw}|${p.bs}|${p.qd}` === key);
        const m = (k: 'iops' | 'p50' | 'p99' | 'p999' | 'cpu'): string => f(median(mine.map((p) => p[k] ?? NaN)));
        const cpu = median(mine.map((p) => p.vfiod?.server_cpu?.us_per_io ?? NaN));
        md.push(`| ${mine[0]!.rw} | ${sizeName(mine[0]!.bs)} | ${mine[0]!.qd} | ${m('iops')} | ${m('p50')} | ${m('p99')} | ${m('p999')} | ${m('cpu')} | ${f(cpu)} |`);
      }
      md.push('');
    }
  }
  const ps = table('vfiod', `## Polled mode: \`vfiod serve --poll\` vs ${refName} (client: ${client})`);
  if (cells.some((c) => c.server === 'baseline')) {
    table('baseline', `## The same for the baseline build (${run.baseline.checkout} at ${run.baseline.commit})`);
  }
  const failed = cells.filter((c) => !c.ok);
  if (failed.length > 0) {
    md.push('');
    md.push('Failed cells:');
    for (const c of failed) md.push(`- ${c.server}/${c.mode} ${c.rw} ${sizeName(c.bs)} QD${c.qd} (round ${c.round}): ${c.error}`);
  }

  const inter = cells.filter((c) => c.extra?.section === 'interrupt');
  if (inter.length > 0) {
    md.push('');
    md.push('## Interrupt mode and the same client everywhere (client: nvme-bench, 4k randread)');
    md.push('');
    md.push('`interrupt`: `vfiod serve` without --poll; doorbells are posted REGION_WRITE messages (what QEMU sends while nothing is mmap-able), ' +
      'completions wait on the MSI-X eventfd. `polled`: mmapped doorbells, CQ polled. The round trip row is one synchronous REGION_READ of CSTS. ' +
      'The wake-cost row has no server: a thread on the server\'s CPU wakes one sleeping on the client\'s CPU through an eventfd and sleeps until ' +
      'it answers (bench/nvme-host/wake_cost.c); its CPU per round is what an interrupt-mode server pays per wake-up of its client here before any work.');
    md.push('');
    md.push('| round | server | doorbells | completion | QD | IOPS | p50 µs | p99 µs | p99.9 µs | server CPU µs/IO | I/Os per client wake-up |');
    md.push('|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of inter) {
      const name = c.server === 'loopback' ? 'loopback (client ceiling)' : c.server === 'spdk' ? 'SPDK nvmf_tgt' : `${c.server === 'baseline' ? 'baseline ' : ''}vfiod (${c.mode})`;
      if (c.rw === 'rtt') {
        md.push(`| ${c.round} | ${name} | one vfio-user round trip | – | 1 | ${fi(c.iops)} | ${f(c.lat_us?.p50)} | ${f(c.lat_us?.p99)} | ${f(c.lat_us?.p999)} | – | – |`);
        continue;
      }
      if (c.client === 'wake-cost') {
        const e = c.extra ?? {};
        md.push(`| ${c.round} | wake-cost (no server) | eventfd wake-up round | – | – | ${c.ok ? fi(c.iops) + ' rounds/s' : 'FAILED'} | ${f(e.round_us as number | undefined)} (one round) | – | – | ` +
          `${f(e.waker_cpu_us_per_round as number | undefined)} per round | – |`);
        continue;
      }
      md.push(`| ${c.round} | ${name} | ${c.extra?.doorbell ?? '–'} | ${c.extra?.completion ?? '–'} | ${c.qd} | ${c.ok ? fi(c.iops) : 'FAILED'} | ${f(c.lat_us?.p50)} | ${f(c.lat_us?.p99)} | ${f(c.lat_us?.p999)} | ${f(c.server_cpu?.us_per_io)} | ${f(c.extra?.ios_per_wake as number | undefined, 1)} |`);
    }
  }

  // Plots: IOPS per workload vs QD (both servers), and the same-run ratios.
  const groups = [...new Set(ps.map((p) => `${p.rw} ${sizeName(p.bs)}`))];
  const lastRound = Math.max(...ps.map((p) => p.round), 1);
  const iopsCharts: LineChart[] = groups.map((g) => {
    const mine = ps.filter((p) => `${p.rw} ${sizeName(p.bs)}` === g && p.round === lastRound);
    return {
      title: `${g}: IOPS`,
      subtitle: `round ${lastRound}, same client (${client})`,
      xLabel: 'queue depth', yLabel: 'IOPS', xScale: 'log2', yScale: 'log10', unit: 'IOPS',
      series: [
        { name: refName, points: mine.filter((p) => p.ref?.ok).map((p) => ({ x: p.qd, y: p.ref!.iops! })) },
        { name: 'vfiod serve --poll', points: mine.filter((p) => p.vfiod?.ok).map((p) => ({ x: p.qd, y: p.vfiod!.iops! })) },
      ],
    };
  });
  const ratioChart = (key: 'iops' | 'p99' | 'cpu', title: string): LineChart => ({
    title, subtitle: `vfiod / ${yard.available ? 'SPDK' : 'client ceiling'}, same round`,
    xLabel: 'queue depth', yLabel: 'ratio', xScale: 'log2', yScale: key === 'iops' ? 'linear' : 'log10',
    series: groups.map((g) => ({ name: g, points: ps.filter((p) => `${p.rw} ${sizeName(p.bs)}` === g && p.round === lastRound && p[key] !== undefined).map((p) => ({ x: p.qd, y: p[key]! })) })),
  });
  const ratioCharts = [ratioChart('iops', 'IOPS ratio'), ratioChart('p99', 'p99 latency ratio'), ...(yard.available ? [ratioChart('cpu', 'server CPU per I/O ratio')] : [])];
  return { markdown: md.join('\n') + '\n', charts: { iops: iopsCharts, ratios: ratioCharts } };
}

// ---- main --------------------------------------------------------------------------------------------------------

function writeReport(out: string, run: Record<string, any>, cells: Cell[], yard: Yardstick): string {
  const { markdown, charts } = report(run, cells, yard);
  mkdirSync(join(out, 'plots'), { recursive: true });
  writeFileSync(join(out, 'report.md'), markdown);
  writeFileSync(join(out, 'plots', 'iops.svg'), svgDocument(charts.iops!, 440, 360));
  writeFileSync(join(out, 'plots', 'ratios.svg'), svgDocument(charts.ratios!, 440, 360));
  return markdown;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (o.report) {
    const run = JSON.parse(readFileSync(o.report, 'utf8'));
    process.stdout.write(writeReport(dirname(o.report), run, run.cells, { ...run.yardstick, hugepages: run.yardstick.hugepages }));
    return;
  }
  const started = new Date();
  o.out ||= join(root, 'bench', 'results', `spdk-compare-${started.toISOString().replace(/[:.]/g, '-')}`);
  buildNvmeBench();
  if (!existsSync(join(root, 'dist', 'cli', 'main.js'))) throw new Error('dist/cli/main.js missing: run npx tsc -p tsconfig.json');
  const yard = checkYardstick(o.spdk);
  o.spdkUsable = yard.available;
  if (!yard.available) log(`NOTE: ${yard.reason}; measuring against nvme-bench's loopback ceiling instead`);
  const git = (args: string[]): string => spawnSync('git', args, { cwd: root, encoding: 'utf8' }).stdout?.trim() ?? '';
  const run: Record<string, any> = {
    tool: 'spdk-compare',
    started: started.toISOString(),
    options: o,
    yardstick: { available: yard.available, reason: yard.reason, dir: yard.dir, hugepages: yard.hugepages },
    machine: { cpus: cpus().length, cpu_model: cpus()[0]?.model, loadavg_start: loadavg(), node: process.version },
    vfiod: { commit: git(['rev-parse', '--short', 'HEAD']), dirty: git(['status', '--porcelain', '--untracked-files=no']) !== '' },
  };
  if (o.baseline) {
    if (!existsSync(join(o.baseline, 'bin', 'vfiod.js'))) throw new Error(`--baseline ${o.baseline}: no bin/vfiod.js there`);
    const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: o.baseline, encoding: 'utf8' }).stdout?.trim();
    run.baseline = { checkout: o.baseline, commit };
  }
  const cells: Cell[] = [];
  const groups = o.rws.flatMap((rw) => o.sizes.map((bs) => ({ rw, bs })));
  const builds = o.baseline ? 3 : 2;
  const total = o.rounds * groups.length * o.qds.length * builds + (o.interrupt ? o.rounds * ((yard.available ? 10 : 8) + (o.baseline ? 2 : 0)) : 0);
  let n = 0;
  const note = (c: Cell): void => {
    n++;
    c.load1 = loadavg()[0];
    cells.push(c);
    const what = `${c.server}${c.server === 'vfiod' ? '/' + c.mode : ''} ${c.rw} ${sizeName(c.bs)} QD${c.qd}`;
    log(`[${n}/${total}] ${what}: ${c.ok ? `${fi(c.iops)} IOPS, p50 ${f(c.lat_us?.p50)} p99 ${f(c.lat_us?.p99)} us${c.server_cpu ? `, server ${f(c.server_cpu.us_per_io)} us CPU/IO` : ''}` : `FAILED ${c.error}`}`);
  };
  const withServer = async (start: () => Promise<Server>, body: (s: Server) => Promise<void>): Promise<void> => {
    let server: Server | undefined;
    try {
      server = await start();
      await fill(o, server);
      await body(server);
    } finally {
      await server?.stop();
    }
  };

  try {
    for (let round = 1; round <= o.rounds; round++) {
      for (const { rw, bs } of groups) {
        if (yard.available) {
          await withServer(() => startSpdk(o), async (s) => {
            for (const qd of o.qds) note(await perfCell(o, s, round, rw, bs, qd));
          });
          await withServer(() => startVfiod(o, 'polled'), async (s) => {
            for (const qd of o.qds) note(await perfCell(o, s, round, rw, bs, qd));
          });
          if (o.baseline) {
            await withServer(() => startVfiod(o, 'polled', o.baseline), async (s) => {
              for (const qd of o.qds) note(await perfCell(o, s, round, rw, bs, qd));
            });
          }
        } else {
          for (const qd of o.qds) note(await nvmeBenchCell(o, undefined, round, rw, bs, qd, 'mmap', 'poll'));
          await withServer(() => startVfiod(o, 'polled'), async (s) => {
            for (const qd of o.qds) note(await nvmeBenchCell(o, s, round, rw, bs, qd, 'mmap', 'poll'));
          });
          if (o.baseline) {
            await withServer(() => startVfiod(o, 'polled', o.baseline), async (s) => {
              for (const qd of o.qds) note(await nvmeBenchCell(o, s, round, rw, bs, qd, 'mmap', 'poll'));
            });
          }
        }
      }
      if (!o.interrupt) continue;
      const mark = (c: Cell): Cell => ((c.extra = { ...c.extra, section: 'interrupt' }), c);
      for (const qd of [1, 32]) note(mark(await nvmeBenchCell(o, undefined, round, 'randread', 4096, qd, 'mmap', 'poll')));
      if (yard.available) {
        await withServer(() => startSpdk(o), async (s) => {
          for (const qd of [1, 32]) note(mark(await nvmeBenchCell(o, s, round, 'randread', 4096, qd, 'mmap', 'poll')));
        });
      }
      await withServer(() => startVfiod(o, 'polled'), async (s) => {
        for (const qd of [1, 32]) note(mark(await nvmeBenchCell(o, s, round, 'randread', 4096, qd, 'mmap', 'poll')));
      });
      await withServer(() => startVfiod(o, 'interrupt'), async (s) => {
        for (const qd of [1, 32]) note(mark(await nvmeBenchCell(o, s, round, 'randread', 4096, qd, 'posted', 'irq')));
        note(mark(await rttCell(o, s, round)));
      });
      note(mark(await wakeCostCell(o, round)));
      if (o.baseline) {
        await withServer(() => startVfiod(o, 'polled', o.baseline), async (s) => {
          note(mark(await nvmeBenchCell(o, s, round, 'randread', 4096, 1, 'mmap', 'poll')));
        });
        await withServer(() => startVfiod(o, 'interrupt', o.baseline), async (s) => {
          note(mark(await nvmeBenchCell(o, s, round, 'randread', 4096, 32, 'posted', 'irq')));
        });
      }
    }
  } finally {
    if (yard.hugepages.restoreTo !== undefined && readHugepages().total !== yard.hugepages.restoreTo) {
      try {
        writeFileSync('/proc/sys/vm/nr_hugepages', String(yard.hugepages.restoreTo));
        log(`hugepages put back to ${yard.hugepages.restoreTo}`);
      } catch (error) {
        log(`could not put hugepages back to ${yard.hugepages.restoreTo}: ${String(error)}`);
      }
    }
  }

  run.finished = new Date().toISOString();
  run.machine.loadavg_end = loadavg();
  run.cells = cells;
  run.ratios = pairs(cells, yard.available ? 'spdk' : 'loopback').map(({ ref: _r, vfiod: _v, ...p }) => p);
  if (o.baseline) run.ratios_baseline = pairs(cells, yard.available ? 'spdk' : 'loopback', 'baseline').map(({ ref: _r, vfiod: _v, ...p }) => p);
  mkdirSync(o.out, { recursive: true });
  writeFileSync(join(o.out, 'results.json'), JSON.stringify(run, null, 2) + '\n');
  process.stdout.write(writeReport(o.out, run, cells, yard));
  log(`wrote ${o.out}/{results.json,report.md,plots/}`);
  if (cells.some((c) => !c.ok)) process.exitCode = 1;
}

main().catch((error: unknown) => {
  log(`error: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
  process.exit(2);
});
