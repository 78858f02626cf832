/**
 * A point runs `repetitions` times on a target; the point's numbers are the medians of its runs, and the spread
 * (min, median, max) of the values the report shows and plots is kept with them (the error bars).
 */
import type { PointResult } from './results.js';

export interface Spread {
  min: number;
  median: number;
  max: number;
  /** How many runs gave a value. */
  n: number;
}

/** What the report shows of each point, over its repetitions. */
export const SPREAD_METRICS = ['iops', 'p50_us', 'p99_us', 'p999_us', 'host_cpu_us_per_io', 'server_cpu_us_per_io'] as const;
export type SpreadMetric = (typeof SPREAD_METRICS)[number];

/** One fio run of a point, as kept in results.json. */
export interface RepetitionResult {
  ok: boolean;
  error?: string;
  fio_json: string;
  duration_s: number;
  iops?: number;
  lat_us?: PointResult['lat_us'];
  fio_cpu_us_per_io?: number;
  server_cpu_us_per_io?: number;
  iops_per_core?: number;
}

/** The median of an even count is the mean of the two middle values. */
export function spread(values: readonly number[]): Spread | undefined {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { min: sorted[0]!, median, max: sorted.at(-1)!, n: sorted.length };
}

/** Host CPU per I/O of one run: the server's plus fio's (fio alone for targets without a server). */
export function hostCpuPerIo(p: Pick<PointResult, 'ok' | 'fio_cpu' | 'server_cpu'>): number | undefined {
  if (!p.ok || p.fio_cpu === undefined) return undefined;
  return p.fio_cpu.us_per_io + (p.server_cpu?.us_per_io ?? 0);
}

const METRIC_OF_RUN: Record<SpreadMetric, (run: PointResult) => number | undefined> = {
  iops: (run) => run.iops,
  p50_us: (run) => run.lat_us?.p50,
  p99_us: (run) => run.lat_us?.p99,
  p999_us: (run) => run.lat_us?.p999,
  host_cpu_us_per_io: hostCpuPerIo,
  server_cpu_us_per_io: (run) => run.server_cpu?.us_per_io,
};

function summary(run: PointResult): RepetitionResult {
  return {
    ok: run.ok,
    ...(run.error !== undefined ? { error: run.error } : {}),
    fio_json: run.files.fio_json,
    duration_s: run.duration_s,
    ...(run.ok
      ? {
          iops: run.iops,
          lat_us: run.lat_us,
          fio_cpu_us_per_io: run.fio_cpu?.us_per_io,
          ...(run.server_cpu ? { server_cpu_us_per_io: run.server_cpu.us_per_io } : {}),
          iops_per_core: run.iops_per_core,
        }
      : {}),
  };
}

/**
 * One point from its runs (in order; `planned` of them were to run). A failed run fails the point (naming the run
 * when others came before it). Otherwise the point is
 * its median-IOPS run (whose per-direction details and files it keeps) with every shown number replaced by the
 * median over the runs, and `spread` giving min, median and max of each.
 */
export function combineRepetitions(runs: readonly PointResult[], planned = runs.length): PointResult {
  if (runs.length === 0) throw new Error('combineRepetitions: no runs');
  const duration = Math.round(runs.reduce((sum, run) => sum + run.duration_s, 0) * 100) / 100;
  const repetitions = runs.map(summary);
  const failedAt = runs.findIndex((run) => !run.ok);
  if (failedAt >= 0) {
    const failed = runs[failedAt]!;
    const error = failedAt === 0 ? (failed.error ?? 'failed') : `run ${failedAt + 1} of ${planned}: ${failed.error ?? 'failed'}`;
    return { ...failed, error, duration_s: duration, repetitions };
  }
  const byIops = [...runs].sort((a, b) => (a.iops ?? 0) - (b.iops ?? 0));
  const representative = byIops[(byIops.length - 1) >> 1]!;
  const spreads: Partial<Record<SpreadMetric, Spread>> = {};
  for (const metric of SPREAD_METRICS) {
    const s = spread(runs.map(METRIC_OF_RUN[metric]).filter((v): v is number => v !== undefined));
    if (s) spreads[metric] = s;
  }
  const median = (values: Array<number | undefined>): number | undefined => spread(values.filter((v): v is number => v !== undefined))?.median;
  const point: PointResult = { ...representative, duration_s: duration, repetitions, spread: spreads };
  point.iops = spreads.iops?.median;
  if (representative.lat_us) {
    point.lat_us = {
      mean: median(runs.map((run) => run.lat_us?.mean))!,
      p50: spreads.p50_us!.median,
      p99: spreads.p99_us!.median,
      p999: spreads.p999_us!.median,
      max: Math.max(...runs.map((run) => run.lat_us?.max ?? 0)),
    };
  }
  if (representative.fio_cpu) point.fio_cpu = { ...representative.fio_cpu, us_per_io: median(runs.map((run) => run.fio_cpu?.us_per_io))! };
  if (representative.server_cpu) point.server_cpu = { ...representative.server_cpu, us_per_io: spreads.server_cpu_us_per_io!.median };
  const perCore = median(runs.map((run) => run.iops_per_core));
  if (perCore !== undefined) point.iops_per_core = perCore;
  const bandwidth = median(runs.map((run) => run.bytes_per_second));
  if (bandwidth !== undefined) point.bytes_per_second = bandwidth;
  return point;
}
