/**
 * report.md and the SVG plots of a bench run. One table per workload (rw, bs, jobs, verify): a row per queue depth
 * and target, with ratios against the reference target — the first passthrough target (no virtualisation), or the
 * first file target when there is none.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { formatBs, workloadKey } from './matrix.js';
import type { TargetType } from './config.js';
import { hostCpuPerIo, type Spread, type SpreadMetric } from './repetitions.js';
import type { BenchResults, PointResult } from './results.js';
import { svgDocument, type LineChart, type Series } from './svg.js';

export { hostCpuPerIo };

/**
 * One colour per target kind, the same in every plot of every run, so plots compare at a glance; targets of one
 * kind are told apart by their line's dashes (TARGET_DASHES, in config order).
 */
export const TARGET_KIND_COLOURS: Record<TargetType, string> = {
  emulation: '#1f77b4',
  passthrough: '#2ca02c',
  file: '#7f7f7f',
  'in-guest': '#d62728',
};
export const TARGET_DASHES = ['', '7 4', '2 3', '10 3 2 3'];

export interface WorkloadTable {
  workload: string;
  title: string;
  rows: PointResult[];
}

export function referenceTarget(results: BenchResults): string | undefined {
  const ok = (type: string): string | undefined =>
    results.targets.find((t) => t.type === type && results.points.some((p) => p.target === t.name && p.ok))?.name;
  return ok('passthrough') ?? ok('file');
}

export function workloadTables(results: BenchResults): WorkloadTable[] {
  const tables = new Map<string, WorkloadTable>();
  for (const point of results.points) {
    const key = workloadKey(point.point);
    let table = tables.get(key);
    if (!table) {
      const p = point.point;
      const title = `${p.rw}${p.rwmixread !== undefined ? ` (${p.rwmixread}% reads)` : ''}, ${formatBs(p.bs)}, ${p.numjobs} job${p.numjobs > 1 ? 's' : ''}${p.verify ? ', verify' : ''}`;
      table = { workload: key, title, rows: [] };
      tables.set(key, table);
    }
    table.rows.push(point);
  }
  const targetOrder = results.targets.map((t) => t.name);
  for (const table of tables.values()) {
    table.rows.sort((a, b) => a.point.iodepth - b.point.iodepth || targetOrder.indexOf(a.target) - targetOrder.indexOf(b.target));
  }
  return [...tables.values()];
}

const num = (v: number | undefined, digits = 1): string => (v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits));
const int = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '–' : Math.round(v).toLocaleString('en-US'));
/** "12,345 (12,001–12,500)": the median with the min–max of the repetitions when there were several. */
const withSpread = (value: string, s: Spread | undefined, format: (v: number) => string): string =>
  s && s.n > 1 ? `${value} (${format(s.min)}–${format(s.max)})` : value;
const ratio = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined || !(b > 0) ? '–' : `${(a / b).toFixed(2)}×`);

export function renderReport(results: BenchResults): string {
  const m = results.machine;
  const ref = referenceTarget(results);
  const lines: string[] = [];
  lines.push(`# vfiod bench: ${results.config.name}${results.smoke ? ' (smoke)' : ''}`, '');
  if (results.interrupted) {
    lines.push(
      `**Interrupted** (SIGINT) at ${results.interrupted.at}: ${results.interrupted.runs_done} of ${results.interrupted.runs_planned} points finished; ` +
        'this report holds those, the point that was running is left out.',
      '',
    );
  }
  lines.push(`- started ${results.started}, finished ${results.finished ?? '(running)'}; config \`${results.config.source}\``);
  lines.push(`- machine: ${m.cores} × ${m.cpu_model}, ${m.kernel}, ${m.fio ?? 'fio ?'}, Node ${m.node}; load average ${m.loadavg_start.join(' ')} → ${m.loadavg_end?.join(' ') ?? '?'}`);
  lines.push(`- vfiod ${m.vfiod_commit?.slice(0, 12) ?? 'unknown commit'}${m.vfiod_dirty ? ' (with uncommitted changes)' : ''}`);
  const mx = results.config.matrix;
  lines.push(`- ${mx.runtimeSeconds !== undefined ? `${mx.runtimeSeconds} s per run after ${mx.rampSeconds} s ramp` : 'size-based'}, ${formatBytes(mx.sizeBytes)} per job, ${mx.repetitions} run${mx.repetitions > 1 ? 's' : ''} per point`);
  lines.push('- targets:');
  for (const t of results.targets) {
    const config = results.config.targets.find((c) => c.name === t.name);
    lines.push(`  - **${t.name}** (${t.type}${describeTarget(config)})${t.ok ? '' : `: FAILED — ${t.error}`}${t.name === ref ? ' — reference for the ratios' : ''}`);
  }
  for (const config of results.config.targets.filter((c) => !results.targets.some((t) => t.name === c.name))) {
    lines.push(`  - **${config.name}** (${config.type}${describeTarget(config)}): not run (interrupted)`);
  }
  lines.push('');
  lines.push('IOPS and MB/s count the workload\'s own I/O. Latency is fio\'s completion latency (clat) of reads, or of writes for write workloads. ' +
    'Server CPU is `vfiod serve`\'s on-CPU time from /proc (schedstat of its threads, or utime+stime) over fio\'s measured window; fio CPU is fio\'s usr+sys. ' +
    'Both are divided by every I/O completed in the window (verify read-backs included). IOPS/core = I/Os per CPU-second of fio and server together.' +
    (mx.repetitions > 1
      ? ` Each point ran ${mx.repetitions} times: every number is the median of its runs, with (min–max) after IOPS, p99 and p99.9; the plots draw the median with min–max error bars.`
      : ''));
  if (!ref) lines.push('', 'No passthrough or file target produced results, so there are no ratios.');
  lines.push('');

  for (const table of workloadTables(results)) {
    lines.push(`## ${table.title}`, '');
    const refHead = ref ? ` | IOPS ÷ ${ref} | p50 ÷ ${ref} | p99 ÷ ${ref} | CPU/IO ÷ ${ref}` : '';
    lines.push(`| QD | target | IOPS | MB/s | mean µs | p50 µs | p99 µs | p99.9 µs | server CPU µs/IO | fio CPU µs/IO | IOPS/core${refHead} |`);
    lines.push(`|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:${ref ? '|---:|---:|---:|---:' : ''}|`);
    for (const row of table.rows) {
      if (!row.ok) {
        lines.push(`| ${row.point.iodepth} | ${row.target} | FAILED: ${escapeCell(row.error ?? '')} |${' |'.repeat(8 + (ref ? 4 : 0))}`);
        continue;
      }
      const base = ref ? table.rows.find((r) => r.target === ref && r.point.id === row.point.id && r.ok) : undefined;
      const refCells = ref
        ? ` | ${ratio(row.iops, base?.iops)} | ${ratio(row.lat_us?.p50, base?.lat_us?.p50)} | ${ratio(row.lat_us?.p99, base?.lat_us?.p99)} | ${ratio(hostCpuPerIo(row), base ? hostCpuPerIo(base) : undefined)}`
        : '';
      lines.push(
        `| ${row.point.iodepth} | ${row.target} | ${withSpread(int(row.iops), row.spread?.iops, int)} | ${num((row.bytes_per_second ?? 0) / 1e6)} | ${num(row.lat_us?.mean)} | ${num(row.lat_us?.p50)} | ` +
          `${withSpread(num(row.lat_us?.p99), row.spread?.p99_us, num)} | ${withSpread(num(row.lat_us?.p999), row.spread?.p999_us, num)} | ${num(row.server_cpu?.us_per_io, 2)} | ${num(row.fio_cpu?.us_per_io, 2)} | ${int(row.iops_per_core)}${refCells} |`,
      );
    }
    const verified = table.rows.filter((r) => r.ok && r.verify?.enabled);
    if (verified.length > 0) {
      lines.push('', `Verify (crc32c): ${verified.reduce((s, r) => s + (r.verify?.verified_ios ?? 0), 0).toLocaleString('en-US')} reads checked, no mismatches.`);
    }
    lines.push('', `![${table.title}](plots/${table.workload}.svg)`, '');
  }
  lines.push('Reproduce a point: `fio --output-format=json jobs/<target>--<point>.fio` (with a target running as recorded in results.json).', '');
  return lines.join('\n');
}

function describeTarget(config: BenchResults['config']['targets'][number] | undefined): string {
  if (!config) return '';
  switch (config.type) {
    case 'emulation':
      return `: vfiod serve, ${config.namespace}, ${config.doorbells} doorbells, ${config.completion === 'irq' ? 'MSI-X' : 'polled'} completions${config.serverCpus !== undefined ? `, server on CPUs ${config.serverCpus}` : ''}${pinned(config)}`;
    case 'passthrough':
      return `: ${config.bdf} on vfio-pci, NSID ${config.nsid}${pinned(config)}`;
    case 'file':
      return `: ${config.ioengine} on ${config.path}${config.direct ? ', O_DIRECT' : ''}${pinned(config)}`;
    case 'in-guest':
      return `: fio in the VM (${'qga' in config.exec ? `guest agent ${config.exec.qga}` : config.exec.command.join(' ')}), ${config.ioengine} on the guest's ${config.device}${config.direct ? ', O_DIRECT' : ''}${config.vmmPid !== undefined ? '; server CPU = the VM process' : ''}`;
  }
}

function pinned(config: { fioCpus?: string }): string {
  return config.fioCpus !== undefined ? `, fio on CPUs ${config.fioCpus}` : '';
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ').slice(0, 300);
}

function formatBytes(bytes: number): string {
  return bytes >= 2 ** 30 && bytes % 2 ** 30 === 0 ? `${bytes / 2 ** 30} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`;
}

/** The metrics plotted per workload, against queue depth: the median of the runs, min–max as error bars. */
const PLOTS: Array<{ title: string; yLabel: string; yScale: LineChart['yScale']; unit: string; metric: SpreadMetric; value: (p: PointResult) => number | undefined }> = [
  { title: 'IOPS', yLabel: 'IOPS', yScale: 'linear', unit: 'IOPS', metric: 'iops', value: (p) => p.iops },
  { title: 'p99 latency', yLabel: 'p99 completion latency (µs)', yScale: 'log10', unit: 'µs', metric: 'p99_us', value: (p) => p.lat_us?.p99 },
  { title: 'p99.9 latency', yLabel: 'p99.9 completion latency (µs)', yScale: 'log10', unit: 'µs', metric: 'p999_us', value: (p) => p.lat_us?.p999 },
  { title: 'host CPU per I/O', yLabel: 'host CPU per I/O, fio + server (µs)', yScale: 'linear', unit: 'µs', metric: 'host_cpu_us_per_io', value: (p) => hostCpuPerIo(p) },
];

/** Colour by target kind, dashes by rank within the kind. */
function targetStyle(results: BenchResults, name: string): Pick<Series, 'colour' | 'dash'> {
  const target = results.targets.find((t) => t.name === name) ?? results.config.targets.find((t) => t.name === name);
  if (!target) return {};
  const rank = results.targets.filter((t) => t.type === target.type).findIndex((t) => t.name === name);
  const dash = TARGET_DASHES[Math.max(0, rank) % TARGET_DASHES.length]!;
  return { colour: TARGET_KIND_COLOURS[target.type], ...(dash ? { dash } : {}) };
}

/** IOPS, p99, p99.9 and host CPU per I/O vs queue depth, one line per target, for one workload. */
export function workloadCharts(results: BenchResults, table: WorkloadTable): LineChart[] {
  const targets = [...new Set(table.rows.map((r) => r.target))];
  const subtitle = `${results.machine.cores} × ${results.machine.cpu_model}, ${results.started.slice(0, 16).replace('T', ' ')}`;
  return PLOTS.map((plot) => ({
    title: `${plot.title} — ${table.title}`, subtitle, xLabel: 'queue depth', yLabel: plot.yLabel, xScale: 'log2', yScale: plot.yScale, unit: plot.unit,
    series: targets.map((name) => ({
      name,
      ...targetStyle(results, name),
      points: table.rows
        .filter((r) => r.target === name && r.ok && plot.value(r) !== undefined)
        .map((r) => {
          const s = r.spread?.[plot.metric];
          return { x: r.point.iodepth, y: plot.value(r)!, ...(s && s.n > 1 ? { low: s.min, high: s.max } : {}) };
        }),
    })),
  }));
}

export function writeReport(results: BenchResults, outDir: string): void {
  mkdirSync(path.join(outDir, 'plots'), { recursive: true });
  for (const table of workloadTables(results)) {
    writeFileSync(path.join(outDir, 'plots', `${table.workload}.svg`), svgDocument(workloadCharts(results, table), 520, 380, 2));
  }
  writeFileSync(path.join(outDir, 'report.md'), renderReport(results));
}
