/**
 * nvme-tcp-bench: IOPS, MB/s, latency and initiator CPU per I/O of the NVMe/TCP initiator (NvmeTcpNamespace)
 * against the Linux kernel target (nvmet-tcp) of the test bed (testbed/nvmet-target.ts). A benchmark, not
 * a test: it asserts nothing and writes bench/results/nvme-tcp-<timestamp>.json plus a Markdown table.
 *
 *   npx tsx bench/nvme-tcp-bench.ts [--seconds 5] [--ramp 1] [--qds 1,32] [--sizes 4096,131072]
 *                                   [--rw randread,randwrite] [--digests off[,on]] [--digest-cell randread:131072:32|none]
 *                                   [--ns-mib 128] [--block-size 512] [--no-prefill] [--no-reference] [--out <file.json>]
 *                                   [--target <host>[:<port>]/<nqn>[?nsid=<n>] [--destroy-data]]
 *
 * One target is booted (QEMU TCG guest, namespace of --ns-mib MiB), prefilled by sequential 128 KiB writes so that
 * reads return written blocks (not holes of the sparse backing file), then for every digest setting one
 * NvmeTcpNamespace is opened directly (1 path, queues=2, queue-depth = max QD) and every cell of the matrix
 * rw x size x qd runs a closed loop: `qd` workers, each with one reused buffer and one reused view array, each
 * issuing its next I/O as soon as the previous one completed, at a random size-aligned offset (xorshift PRNG).
 * After --ramp seconds the window of --seconds starts: completions inside it are counted, their latency (submit ->
 * resolve, performance.now) goes into a log-linear histogram (32 sub-buckets per power of two: <= 3 % bucket width),
 * process.cpuUsage() (user+system of this process = the initiator, all of Node) and the QEMU process's utime+stime
 * (/proc/<pid>/stat = the whole target: vCPUs, slirp, virtio-blk I/O) are sampled at both ends of the window.
 *
 * --digest-cell adds one cell with header+data digests on (a separate namespace, digests are negotiated per
 * connection) when the --digests list does not already contain "on".
 *
 * Wire-ceiling references (same run, same target, digests off, skipped with --no-reference), QD1 and max QD:
 *   nop      Dataset Management with attributes 0 (no Deallocate) and one 16-byte range (in-capsule). nvmet's block
 *            backend completes DSM without AD at once ("not supported yet" -> success) without touching the disk,
 *            so this is one NVMe/TCP command capsule + one response capsule through slirp and nvmet-tcp: the
 *            fastest round trip this target can do. The namespace's private `io()` is used for it (a benchmark-
 *            only shortcut: the Namespace interface has no null command).
 *   read0    4 KiB reads of LBA 0 (the least data path work: one hot block in the host page cache).
 * Their IOPS are what this target setup can deliver at all; matrix cells are compared with them.
 *
 * Harness overhead: the same closed loop against an operation that resolves at once (no I/O) is timed for 0.5 s
 * and reported as CPU per iteration; it is included in every cell's CPU per I/O.
 *
 * --target: an external NVMe/TCP target instead of the QEMU guest (a real host against a real target). Its first
 * --ns-mib MiB are used; prefill and randwrite overwrite them, so they need --destroy-data. No target CPU is measured.
 *
 * The kernel initiator as a reference: probed (module nvme-tcp for the running kernel, /dev/nvme-fabrics, nvme and
 * fio) and reported; the benchmark does not load modules or connect anything itself. See docs/benchmarks.md.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NvmeTcpNamespace } from '../src/namespace/nvme-tcp/namespace.js';
import { setLogLevel } from '../src/util/log.js';
import { sleep } from '../src/util/sleep.js';
import {
  nvmetTargetHostInfo, nvmetTargetUnavailableReason, startNvmetTarget, type NvmetTarget,
} from '../testbed/nvmet-target.js';

const here = path.dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------------------------------------------
// Options

type Rw = 'randread' | 'randwrite' | 'nop' | 'read0';
interface Options {
  seconds: number;
  ramp: number;
  qds: number[];
  sizes: number[];
  rw: Rw[];
  digests: boolean[];
  digestCell: { rw: Rw; size: number; qd: number } | null;
  nsMiB: number;
  blockSize: number;
  prefill: boolean;
  reference: boolean;
  out: string | null;
  /** External target instead of the QEMU guest: host, port, NQN, nsid. */
  target: { host: string; port: number; nqn: string; nsid: number } | null;
  destroyData: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    seconds: 5, ramp: 1, qds: [1, 32], sizes: [4096, 131072], rw: ['randread', 'randwrite'], digests: [false],
    digestCell: { rw: 'randread', size: 131072, qd: 32 }, nsMiB: 128, blockSize: 512, prefill: true, reference: true,
    out: null, target: null, destroyData: false,
  };
  const list = (s: string): string[] => s.split(',').map((x) => x.trim()).filter(Boolean);
  const posInts = (s: string, what: string): number[] => list(s).map((x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${what}: ${x} is not a positive integer`);
    return n;
  });
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i]!;
    };
    switch (a) {
      case '--seconds': o.seconds = Number(next()); break;
      case '--ramp': o.ramp = Number(next()); break;
      case '--qds': o.qds = posInts(next(), a); break;
      case '--sizes': o.sizes = posInts(next(), a); break;
      case '--rw': o.rw = list(next()).map((x) => {
        if (x !== 'randread' && x !== 'randwrite') throw new Error(`--rw: ${x} (randread, randwrite)`);
        return x;
      }); break;
      case '--digests': o.digests = list(next()).map((x) => {
        if (x !== 'on' && x !== 'off') throw new Error(`--digests: ${x} (off, on)`);
        return x === 'on';
      }); break;
      case '--digest-cell': {
        const v = next();
        if (v === 'none') { o.digestCell = null; break; }
        const [rw, size, qd] = v.split(':');
        if ((rw !== 'randread' && rw !== 'randwrite') || !(Number(size) > 0) || !(Number(qd) > 0)) throw new Error(`--digest-cell ${v}: rw:size:qd or none`);
        o.digestCell = { rw, size: Number(size), qd: Number(qd) };
        break;
      }
      case '--ns-mib': o.nsMiB = Number(next()); break;
      case '--block-size': o.blockSize = Number(next()); break;
      case '--no-prefill': o.prefill = false; break;
      case '--no-reference': o.reference = false; break;
      case '--out': o.out = next(); break;
      case '--target': {
        const v = next();
        const m = /^(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/(nqn\.[^?]+?)(?:\?nsid=(\d+))?$/.exec(v);
        if (!m) throw new Error(`--target ${v}: <host>[:<port>]/<subsystem nqn>[?nsid=<n>]`);
        o.target = { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2] ?? 4420), nqn: m[3]!, nsid: Number(m[4] ?? 1) };
        break;
      }
      case '--destroy-data': o.destroyData = true; break;
      case '-h': case '--help':
        console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]);
        process.exit(0);
      // eslint-disable-next-line no-fallthrough
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!(o.seconds > 0) || !(o.ramp >= 0)) throw new Error('--seconds must be > 0, --ramp >= 0');
  if (o.blockSize !== 512 && o.blockSize !== 4096) throw new Error('--block-size: 512 or 4096');
  if (!(o.nsMiB >= 16)) throw new Error('--ns-mib: at least 16');
  if (o.target && !o.destroyData && (o.prefill || o.rw.includes('randwrite') || o.digestCell?.rw === 'randwrite')) {
    throw new Error('--target: prefill and randwrite overwrite the first --ns-mib MiB of the namespace; add --destroy-data (or use --no-prefill --rw randread --digest-cell randread:131072:32)');
  }
  for (const s of o.sizes.concat(o.digestCell ? [o.digestCell.size] : [])) {
    if (s % o.blockSize !== 0) throw new Error(`size ${s} is not a multiple of the block size ${o.blockSize}`);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------------------------
// Latency histogram: log-linear over nanoseconds, 32 sub-buckets per power of two (exact below 32 ns)

const SUB = 32;
const SUB_BITS = 5;
const MAX_EXP = 40; // ~18 minutes
class Histogram {
  readonly counts = new Float64Array(SUB + (MAX_EXP - SUB_BITS + 1) * SUB);
  total = 0;
  record(ns: number): void {
    let index: number;
    if (ns < SUB) index = ns < 0 ? 0 : Math.floor(ns);
    else {
      let e = Math.floor(Math.log2(ns));
      if (e > MAX_EXP) { e = MAX_EXP; ns = 2 ** (MAX_EXP + 1) - 1; }
      const sub = Math.min(SUB - 1, Math.floor(ns / 2 ** (e - SUB_BITS)) - SUB);
      index = SUB + (e - SUB_BITS) * SUB + sub;
    }
    this.counts[index]! += 1;
    this.total++;
  }
  reset(): void {
    this.counts.fill(0);
    this.total = 0;
  }
  /** Midpoint of the bucket holding the p-quantile, in ns. */
  percentile(p: number): number {
    if (this.total === 0) return NaN;
    const want = Math.max(1, Math.ceil(p * this.total));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= want) {
        if (i < SUB) return i;
        const e = Math.floor((i - SUB) / SUB) + SUB_BITS;
        const sub = (i - SUB) % SUB;
        const width = 2 ** (e - SUB_BITS);
        return (SUB + sub) * width + width / 2;
      }
    }
    return NaN;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Measurements

interface CellSpec {
  kind: 'matrix' | 'digest' | 'reference';
  rw: Rw;
  size: number;
  qd: number;
  digests: boolean;
}
interface CellResult extends CellSpec {
  seconds: number;
  ios: number;
  iops: number;
  mbPerS: number;
  latP50Us: number;
  latP99Us: number;
  latMeanUs: number;
  initiatorCpuUsPerIo: number;
  initiatorCpuPct: number;
  targetCpuPct: number | null;
  targetCpuUsPerIo: number | null;
  /** Socket 'data' events (reads delivered by Node) per I/O, all of the initiator's connections. */
  rxChunksPerIo: number;
  rxBytesPerChunk: number;
  txBytesPerIo: number;
  error?: string;
}

/**
 * Socket counters of the initiator's connections: net.connect (the function queue.ts calls through the shared
 * `node:net` module object) is wrapped to keep the sockets and count their 'data' events (one per socket read
 * that Node delivers, i.e. roughly one per read(2) / epoll wake-up). Bytes come from bytesRead/bytesWritten.
 */
const sockets: net.Socket[] = [];
let rxChunks = 0;
function instrumentSockets(): void {
  const original = net.connect;
  (net as { connect: typeof net.connect }).connect = ((...args: Parameters<typeof net.connect>) => {
    const socket = original(...args);
    sockets.push(socket);
    socket.on('data', () => { rxChunks++; });
    return socket;
  }) as typeof net.connect;
}
function socketCounters(): { rxChunks: number; rxBytes: number; txBytes: number } {
  let rxBytes = 0;
  let txBytes = 0;
  for (const socket of sockets) {
    rxBytes += socket.bytesRead;
    txBytes += socket.bytesWritten;
  }
  return { rxChunks, rxBytes, txBytes };
}

/** utime + stime of a process in seconds, or null. */
function procCpuSeconds(pid: number | null): number | null {
  if (pid === null) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return null;
  }
}
const clockTicks = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return n > 0 ? n : 100;
})();

/** The QEMU process of the target: argv[0] is qemu-system-* and its command line names the target's work dir. */
function findQemuPid(workDir: string): number | null {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (path.basename(argv[0] ?? '').startsWith('qemu-system') && argv.some((a) => a.includes(workDir))) return Number(name);
    } catch {
      /* gone */
    }
  }
  return null;
}

/** xorshift32: no allocation, deterministic per worker. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

type Op = (offset: number, views: readonly Uint8Array[]) => Promise<void>;

/**
 * Closed loop: `qd` workers, each with its own buffer, issue op after op until stopped. Counts completions inside the
 * window [ramp, ramp + seconds) and their latency.
 */
async function closedLoop(op: Op, size: number, qd: number, span: number, rampS: number, seconds: number, qemuPid: number | null, sameOffset: boolean) {
  const hist = new Histogram();
  const slots = Math.max(1, Math.floor(span / size));
  let measuring = false;
  let stopped = false;
  let ios = 0;
  let latSumMs = 0;
  let failure: Error | undefined;
  const workers: Promise<void>[] = [];
  for (let w = 0; w < qd; w++) {
    const buffer = new Uint8Array(size);
    buffer.fill(0xa5 ^ w);
    const views: readonly Uint8Array[] = [buffer];
    const next = rng(0x1234567 + w * 7919);
    workers.push((async () => {
      while (!stopped) {
        const offset = sameOffset ? 0 : (next() % slots) * size;
        const t0 = performance.now();
        try {
          await op(offset, views);
        } catch (error) {
          failure ??= error as Error;
          stopped = true;
          return;
        }
        if (measuring) {
          const dt = performance.now() - t0;
          hist.record(dt * 1e6);
          latSumMs += dt;
          ios++;
        }
      }
    })());
  }
  await sleep(rampS * 1000);
  if (failure) { stopped = true; await Promise.all(workers); throw failure; }
  hist.reset();
  ios = 0;
  latSumMs = 0;
  const cpu0 = process.cpuUsage();
  const q0 = procCpuSeconds(qemuPid);
  const s0 = socketCounters();
  const t0 = performance.now();
  measuring = true;
  await sleep(seconds * 1000);
  measuring = false;
  const t1 = performance.now();
  const cpu1 = process.cpuUsage(cpu0);
  const q1 = procCpuSeconds(qemuPid);
  const s1 = socketCounters();
  const done = ios;
  stopped = true;
  await Promise.all(workers);
  if (failure) throw failure;
  const wall = (t1 - t0) / 1000;
  const cpuS = (cpu1.user + cpu1.system) / 1e6;
  const qemuS = q0 !== null && q1 !== null ? q1 - q0 : null;
  return {
    seconds: wall,
    ios: done,
    iops: done / wall,
    mbPerS: (done * size) / wall / 1e6,
    latP50Us: hist.percentile(0.5) / 1000,
    latP99Us: hist.percentile(0.99) / 1000,
    latMeanUs: done ? (latSumMs / done) * 1000 : NaN,
    initiatorCpuUsPerIo: done ? (cpuS / done) * 1e6 : NaN,
    initiatorCpuPct: (cpuS / wall) * 100,
    targetCpuPct: qemuS === null ? null : (qemuS / wall) * 100,
    targetCpuUsPerIo: qemuS === null || !done ? null : (qemuS / done) * 1e6,
    rxChunksPerIo: done ? (s1.rxChunks - s0.rxChunks) / done : NaN,
    rxBytesPerChunk: s1.rxChunks > s0.rxChunks ? (s1.rxBytes - s0.rxBytes) / (s1.rxChunks - s0.rxChunks) : NaN,
    txBytesPerIo: done ? (s1.txBytes - s0.txBytes) / done : NaN,
  };
}

/**
 * CPU per iteration of the worker loop itself (offset, timing, histogram, await) against an op that resolves at once.
 * Runs a fixed number of iterations: such a loop only ever yields to microtasks, so timers would never fire.
 */
async function harnessOverhead(qd: number, perWorker: number): Promise<{ initiatorCpuUsPerIo: number }> {
  const hist = new Histogram();
  const nullOp: Op = () => Promise.resolve();
  const cpu0 = process.cpuUsage();
  await Promise.all(Array.from({ length: qd }, async (_, w) => {
    const views = [new Uint8Array(4096)];
    const next = rng(w + 1);
    for (let i = 0; i < perWorker; i++) {
      const offset = (next() % 256) * 4096;
      const t0 = performance.now();
      await nullOp(offset, views);
      hist.record((performance.now() - t0) * 1e6);
    }
  }));
  const cpu = process.cpuUsage(cpu0);
  return { initiatorCpuUsPerIo: (cpu.user + cpu.system) / (qd * perWorker) };
}

// ---------------------------------------------------------------------------------------------------------------
// Environment probes

function commandOutput(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? (r.stdout || r.stderr).trim() : null;
}

/** Can the kernel initiator (nvme-tcp) run on this host? Reported only; nothing is loaded or connected. */
function probeKernelInitiator(): { available: boolean; reason: string } {
  const release = os.release();
  const loaded = existsSync('/sys/module/nvme_tcp');
  const moduleFile = commandOutput('modprobe', ['-n', '-v', 'nvme-tcp']);
  const missing: string[] = [];
  if (!loaded && moduleFile === null) missing.push(`no nvme-tcp module for the running kernel ${release} (modprobe -n nvme-tcp fails)`);
  if (!commandOutput('sh', ['-c', 'command -v nvme'])) missing.push('no nvme-cli');
  if (!commandOutput('sh', ['-c', 'command -v fio'])) missing.push('no fio');
  if (process.getuid?.() !== 0) missing.push('not root');
  return missing.length
    ? { available: false, reason: missing.join('; ') }
    : { available: true, reason: `nvme-tcp ${loaded ? 'loaded' : 'loadable'}, nvme-cli and fio present: run the fio jobs of docs/benchmarks.md by hand` };
}

// ---------------------------------------------------------------------------------------------------------------
// Output

const fmtSize = (n: number): string => (n % (1 << 20) === 0 ? `${n >> 20}M` : n % 1024 === 0 ? `${n >> 10}k` : `${n}`);
const fmt = (n: number | null, digits = 0): string => (n === null || !Number.isFinite(n) ? '–' : n.toFixed(digits));
const fmtUs = (us: number): string => (!Number.isFinite(us) ? '–' : us >= 10_000 ? `${(us / 1000).toFixed(1)} ms` : `${us.toFixed(0)} µs`);

function label(c: CellSpec): string {
  const name = c.rw === 'nop' ? 'nop (DSM, no data)' : c.rw === 'read0' ? 'read LBA 0' : c.rw;
  return `${name} ${c.rw === 'nop' ? '-' : fmtSize(c.size)} QD${c.qd} digests ${c.digests ? 'on' : 'off'}`;
}

function progressLine(i: number, n: number, r: CellResult): string {
  const head = `[${String(i).padStart(2)}/${n}] ${label(r).padEnd(44)}`;
  if (r.error) return `${head} FAILED: ${r.error}`;
  return `${head} ${fmt(r.iops).padStart(6)} IOPS ${fmt(r.mbPerS, 1).padStart(6)} MB/s  p50 ${fmtUs(r.latP50Us)}  p99 ${fmtUs(r.latP99Us)}  ` +
    `initiator ${fmt(r.initiatorCpuUsPerIo, 1)} µs CPU/IO (${fmt(r.initiatorCpuPct)}% of a core, ${fmt(r.rxChunksPerIo, 1)} socket reads/IO ` +
    `of ${fmt(r.rxBytesPerChunk)} B)  target QEMU ${fmt(r.targetCpuPct)}%`;
}

function markdownTable(results: CellResult[], ceilings: Map<number, number>): string {
  const rows = [
    '| cell | rw | size | QD | digests | IOPS | MB/s | p50 | p99 | initiator CPU µs/IO | initiator CPU % of a core | socket reads/IO (avg B) | target (QEMU) CPU % | IOPS / nop ceiling |',
    '|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    const kind = r.kind === 'reference' ? 'reference' : r.kind === 'digest' ? 'digests' : 'matrix';
    const rw = r.rw === 'nop' ? 'nop (DSM attr 0)' : r.rw === 'read0' ? 'read, LBA 0' : r.rw;
    const ceiling = ceilings.get(r.qd);
    if (r.error) {
      rows.push(`| ${kind} | ${rw} | ${r.rw === 'nop' ? '–' : fmtSize(r.size)} | ${r.qd} | ${r.digests ? 'on' : 'off'} | failed: ${r.error.replace(/\|/g, '/')} | | | | | | | | |`);
      continue;
    }
    rows.push(
      `| ${kind} | ${rw} | ${r.rw === 'nop' ? '–' : fmtSize(r.size)} | ${r.qd} | ${r.digests ? 'on' : 'off'} | ${fmt(r.iops)} | ${fmt(r.mbPerS, 1)} | ` +
      `${fmtUs(r.latP50Us)} | ${fmtUs(r.latP99Us)} | ${fmt(r.initiatorCpuUsPerIo, 1)} | ${fmt(r.initiatorCpuPct)} | ` +
      `${fmt(r.rxChunksPerIo, 1)} (${fmt(r.rxBytesPerChunk)}) | ${fmt(r.targetCpuPct)} | ` +
      `${ceiling ? `${((r.iops / ceiling) * 100).toFixed(0)} %` : '–'} |`,
    );
  }
  return rows.join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  setLogLevel((process.env['VFIOD_LOG_LEVEL'] as 'warn' | undefined) ?? 'warn');
  const unavailable = o.target ? undefined : nvmetTargetUnavailableReason();
  if (unavailable) {
    console.error(`nvme-tcp-bench: the target cannot run here: ${unavailable}`);
    process.exit(2);
  }
  const kernelInitiator = probeKernelInitiator();
  console.log(`kernel initiator reference: ${kernelInitiator.available ? 'available' : 'unavailable'} (${kernelInitiator.reason})`);

  // Harness overhead: the loop itself against an op that resolves at once.
  const overhead = await harnessOverhead(32, 20_000);
  console.log(`harness overhead (closed loop + timing + histogram, no I/O, QD32): ${fmt(overhead.initiatorCpuUsPerIo, 2)} µs CPU per iteration`);

  instrumentSockets();
  const bootStart = performance.now();
  // The QEMU guest target, or an external one (--target): then no boot, no target CPU, the first --ns-mib MiB are used.
  const guest: NvmetTarget | null = o.target ? null : await startNvmetTarget({ sizeBytes: o.nsMiB << 20, blockSize: o.blockSize });
  const target = o.target
    ? { host: o.target.host, ports: [o.target.port], subsystemNqn: o.target.nqn, nsid: o.target.nsid, bootMs: null, stop: async () => {} }
    : { host: guest!.host, ports: guest!.ports, subsystemNqn: guest!.subsystemNqn, nsid: 1, bootMs: guest!.bootMs, stop: () => guest!.stop() };
  process.once('SIGINT', () => { void target.stop(); process.exit(130); });
  const qemuPid = guest ? findQemuPid(guest.workDir) : null;
  if (guest) console.log(`target up in ${fmt(performance.now() - bootStart)} ms (QEMU pid ${qemuPid ?? '?'}, ${target.host}:${target.ports[0]}, ${o.nsMiB} MiB, ${o.blockSize} B blocks)`);
  else console.log(`external target ${target.host}:${target.ports[0]} ${target.subsystemNqn} nsid ${target.nsid}: using its first ${o.nsMiB} MiB`);

  const maxQd = Math.max(...o.qds, o.digestCell?.qd ?? 1);
  const open = (digests: boolean): Promise<NvmeTcpNamespace> => NvmeTcpNamespace.open({
    addresses: [{ host: target.host, port: target.ports[0]! }], subnqn: target.subsystemNqn, nsid: target.nsid,
    queues: 2, queueDepth: Math.max(2, maxQd), hdgst: digests, ddgst: digests, katoMs: 5000,
    reconnectDelayMs: 1000, ctrlLossTmoMs: 10_000, timeoutMs: 30_000,
  });

  // Cells, in run order: references first (digests off), then the matrix per digest setting, then the digest cell.
  const specs: CellSpec[] = [];
  if (o.reference) {
    for (const qd of [1, maxQd]) specs.push({ kind: 'reference', rw: 'nop', size: 16, qd, digests: false });
    for (const qd of [1, maxQd]) specs.push({ kind: 'reference', rw: 'read0', size: 4096, qd, digests: false });
  }
  for (const digests of o.digests) {
    for (const rw of o.rw) for (const size of o.sizes) for (const qd of o.qds) specs.push({ kind: 'matrix', rw, size, qd, digests });
  }
  if (o.digestCell && !o.digests.includes(true)) specs.push({ kind: 'digest', ...o.digestCell, digests: true });

  const results: CellResult[] = [];
  let prefill: { seconds: number; mbPerS: number } | null = null;
  let info: Record<string, unknown> = {};
  try {
    const namespaces = new Map<boolean, NvmeTcpNamespace>();
    const nsFor = async (digests: boolean): Promise<NvmeTcpNamespace> => {
      let ns = namespaces.get(digests);
      if (!ns) {
        ns = await open(digests);
        namespaces.set(digests, ns);
      }
      return ns;
    };
    const ns0 = await nsFor(false);
    if (ns0.blockSize * ns0.blockCount < o.nsMiB << 20) throw new Error(`the namespace has only ${ns0.blockSize * ns0.blockCount} bytes (< --ns-mib ${o.nsMiB})`);
    for (const size of o.sizes) if (size % ns0.blockSize !== 0) throw new Error(`size ${size} is not a multiple of the namespace's block size ${ns0.blockSize}`);
    info = {
      maxTransferBytes: ns0.maxTransferBytes, blockSize: ns0.blockSize, blockCount: ns0.blockCount,
      firmware: ns0.controllerInfo.firmware, model: ns0.controllerInfo.model,
    };

    if (o.prefill) {
      const chunk = 131072;
      const buffer = new Uint8Array(chunk).fill(0x5a);
      const t0 = performance.now();
      let next = 0;
      const total = o.nsMiB << 20;
      await Promise.all(Array.from({ length: 32 }, async () => {
        for (let off = next; off < total; off = next) {
          next += chunk;
          await ns0.write(off, [buffer]);
        }
      }));
      const s = (performance.now() - t0) / 1000;
      prefill = { seconds: s, mbPerS: total / s / 1e6 };
      console.log(`prefilled ${o.nsMiB} MiB (sequential 128k writes, QD32) in ${s.toFixed(1)} s = ${prefill.mbPerS.toFixed(1)} MB/s`);
    }

    for (const [i, spec] of specs.entries()) {
      const ns = await nsFor(spec.digests);
      const dsm = new Uint8Array(16); // one range: context attributes 0, NLB 1 (0-based 0 -> 1 block), SLBA 0
      const nsIo = ns as unknown as {
        io(opcode: number, cdw10: number, cdw11: number, cdw12: number, dir: number, buffers: readonly Uint8Array[], length: number): Promise<void>;
      };
      const dsmViews = [dsm];
      const op: Op =
        spec.rw === 'randwrite' ? (off, views) => ns.write(off, views)
        : spec.rw === 'nop' ? () => nsIo.io(0x09 /* DSM */, 0 /* 1 range */, 0 /* no AD/IDR/IDW */, 0, 1 /* DataDir.OUT */, dsmViews, 16)
        : (off, views) => ns.read(off, views);
      let result: CellResult;
      try {
        const m = await closedLoop(op, spec.size, spec.qd, o.nsMiB << 20, o.ramp, o.seconds, qemuPid, spec.rw === 'read0');
        result = { ...spec, ...m };
      } catch (error) {
        result = {
          ...spec, seconds: 0, ios: 0, iops: NaN, mbPerS: NaN, latP50Us: NaN, latP99Us: NaN, latMeanUs: NaN,
          initiatorCpuUsPerIo: NaN, initiatorCpuPct: NaN, targetCpuPct: null, targetCpuUsPerIo: null,
          rxChunksPerIo: NaN, rxBytesPerChunk: NaN, txBytesPerIo: NaN, error: (error as Error).message,
        };
      }
      const notLive = ns.pathStates().filter((p) => p.state !== 'live');
      if (notLive.length && !result.error) result.error = `path not live after the cell: ${notLive.map((p) => `${p.state} ${p.error}`).join('; ')}`;
      results.push(result);
      console.log(progressLine(i + 1, specs.length, result));
    }
    for (const ns of namespaces.values()) await ns.close();
  } finally {
    await target.stop();
  }

  const ceilings = new Map<number, number>();
  for (const r of results) if (r.kind === 'reference' && r.rw === 'nop' && !r.error) ceilings.set(r.qd, r.iops);

  const qemuVersion = commandOutput(nvmetTargetHostInfo()?.qemu ?? 'qemu-system-x86_64', ['--version'])?.split('\n')[0] ?? null;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const out = o.out ?? path.join(here, 'results', `nvme-tcp-${stamp}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  const report = {
    benchmark: 'nvme-tcp',
    date: new Date().toISOString(),
    options: o,
    host: {
      kernel: os.release(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? null, memGiB: os.totalmem() / 2 ** 30,
      node: process.version, loadavgAtEnd: os.loadavg(),
    },
    target: {
      ...(guest
        ? {
          kind: 'Linux nvmet + nvmet-tcp in a QEMU guest (testbed/nvmet-target.ts), namespace = virtio-blk on a host file',
          accel: process.env['VFIOD_TESTBED_ACCEL'] ?? 'tcg', smp: Number(process.env['VFIOD_TESTBED_NVMET_SMP'] ?? 2),
          guestKernel: nvmetTargetHostInfo()?.kernelVersion ?? null, qemu: qemuVersion, bootMs: target.bootMs,
          network: 'QEMU user-mode network (slirp) hostfwd 127.0.0.1 -> guest:4420',
        }
        : { kind: 'external', address: `${target.host}:${target.ports[0]}`, subnqn: target.subsystemNqn, nsid: target.nsid }),
      ...info,
    },
    initiator: { queues: 2, queueDepth: Math.max(2, maxQd), paths: 1 },
    harnessOverheadCpuUsPerIteration: overhead.initiatorCpuUsPerIo,
    kernelInitiatorReference: kernelInitiator,
    prefill,
    cells: results,
  };
  writeFileSync(out, `${JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
  console.log(`\nwrote ${path.relative(process.cwd(), out)}\n`);
  console.log(markdownTable(results, ceilings));
  if (results.some((r) => r.error)) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(`nvme-tcp-bench: ${(error as Error).stack ?? String(error)}`);
  process.exit(1);
});
