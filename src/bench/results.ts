/**
 * What a bench run records (results.json): the machine, the targets, and one result per matrix point and target.
 * run.ts fills it in, report.ts renders it.
 */
import type { DirectionStats } from './fio.js';
import type { MatrixConfig, TargetConfig } from './config.js';
import type { MatrixPoint } from './matrix.js';
import type { RepetitionResult, Spread, SpreadMetric } from './repetitions.js';

export interface Latency {
  mean: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

export interface PointResult {
  target: string;
  target_type: TargetConfig['type'];
  point: MatrixPoint;
  ok: boolean;
  error?: string;
  /** Output-dir-relative paths of what reproduces and records this point. */
  files: { job: string; fill_job?: string; fio_json: string };
  duration_s: number;
  fio_notices?: string[];
  /** The workload's own I/O (verify read-backs of write workloads excluded). */
  iops?: number;
  bytes_per_second?: number;
  /** Completion latency of the workload's reads (read/randread/randrw) or writes, µs. */
  lat_us?: Latency;
  read?: DirectionStats;
  write?: DirectionStats;
  /** Every command fio completed in the measured window, including verify read-backs (the CPU divisor). */
  ios?: number;
  /** verified_ios: reads fio checked against the written pattern (0 without verify). */
  verify?: { enabled: boolean; method?: string; errors: number; verified_ios: number };
  fio_cpu?: { usr_percent: number; sys_percent: number; seconds: number; us_per_io: number };
  /** source: schedstat (ns on-CPU time of every thread) or stat (utime + stime, 10 ms ticks). */
  server_cpu?: { seconds: number; us_per_io: number; cores: number; source: string; threads_whole_run_s: Record<string, number> };
  /** I/Os per second of CPU spent by fio and the server together. */
  iops_per_core?: number;
  /**
   * Each fio run of the point (matrix.repetitions). The numbers above are medians over them (read, write, verify,
   * files and threads_whole_run_s are the median-IOPS run's).
   */
  repetitions?: RepetitionResult[];
  /** min, median and max over the runs of what the report shows. */
  spread?: Partial<Record<SpreadMetric, Spread>>;
}

export interface MachineInfo {
  cpu_model: string;
  cores: number;
  kernel: string;
  node: string;
  fio: string | undefined;
  vfiod_commit: string | undefined;
  vfiod_dirty: boolean | undefined;
  hostname: string;
  loadavg_start: number[];
  loadavg_end?: number[];
}

export interface BenchResults {
  tool: 'vfiod bench';
  started: string;
  finished?: string;
  /** Set when SIGINT stopped the run: the points recorded are those that finished. */
  interrupted?: { at: string; runs_done: number; runs_planned: number };
  smoke: boolean;
  config: { source: string; name: string; matrix: MatrixConfig; targets: TargetConfig[] };
  machine: MachineInfo;
  targets: Array<{ name: string; type: TargetConfig['type']; ok: boolean; error?: string; info?: Record<string, unknown> }>;
  points: PointResult[];
}
