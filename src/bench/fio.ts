/** Running fio and reading its JSON output (`--output-format=json`). */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** One direction (read or write) of a job, in the units the report uses. */
export interface DirectionStats {
  ios: number;
  iops: number;
  bytesPerSecond: number;
  /** Completion latency (fio clat_ns), microseconds. */
  clatUs: { mean: number; p50: number; p99: number; p999: number; max: number };
  /** Submission-to-completion latency mean (fio lat_ns), microseconds. */
  latMeanUs: number;
}

export interface FioJobResult {
  jobname: string;
  /** fio's errno for the job: 0 = no error (84 = EILSEQ is a verify failure). */
  error: number;
  /** Measured milliseconds (after ramp), summed over the group's jobs (fio's CPU percentages are of this). */
  runtimeMs: number;
  /** Wall-clock length of the measured window: the longest direction's runtime. */
  windowMs: number;
  read: DirectionStats;
  write: DirectionStats;
  /** fio's own CPU: percent of one core over the job's runtime. */
  usrCpuPercent: number;
  sysCpuPercent: number;
}

export interface FioOutput {
  version: string;
  /** When fio wrote its results (ms since the epoch): the end of the measured window. */
  timestampMs: number;
  jobs: FioJobResult[];
  /** Lines fio printed before the JSON document (warnings such as "verification read phase will never start"). */
  notices: string[];
}

export class FioOutputError extends Error {}

type Json = Record<string, unknown>;

function num(object: Json, key: string, where: string): number {
  const value = object[key];
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new FioOutputError(`fio JSON: ${where}.${key} is missing or not a number`);
  return value;
}

function obj(object: Json, key: string, where: string): Json {
  const value = object[key];
  if (typeof value !== 'object' || value === null) throw new FioOutputError(`fio JSON: ${where}.${key} is missing`);
  return value as Json;
}

/** fio's percentile keys are formatted like "99.900000"; look up by value. */
function percentile(percentiles: Json | undefined, wanted: number): number {
  if (!percentiles) return 0;
  for (const [key, value] of Object.entries(percentiles)) {
    if (Math.abs(Number(key) - wanted) < 1e-6 && typeof value === 'number') return value;
  }
  return 0;
}

function direction(job: Json, key: 'read' | 'write', where: string): DirectionStats {
  const d = obj(job, key, where);
  const at = `${where}.${key}`;
  const clat = obj(d, 'clat_ns', at);
  const lat = obj(d, 'lat_ns', at);
  const ios = num(d, 'total_ios', at);
  const pct = clat['percentile'] as Json | undefined;
  const us = (ns: number): number => ns / 1000;
  return {
    ios,
    iops: num(d, 'iops', at),
    bytesPerSecond: num(d, 'bw_bytes', at),
    clatUs: {
      mean: us(num(clat, 'mean', `${at}.clat_ns`)),
      p50: us(percentile(pct, 50)),
      p99: us(percentile(pct, 99)),
      p999: us(percentile(pct, 99.9)),
      max: us(num(clat, 'max', `${at}.clat_ns`)),
    },
    latMeanUs: us(num(lat, 'mean', `${at}.lat_ns`)),
  };
}

/** Parses what fio wrote with --output-format=json (tolerating notices printed before the document). */
export function parseFioOutput(text: string): FioOutput {
  const start = text.search(/^\{/m);
  if (start < 0) throw new FioOutputError(`fio output has no JSON document: ${text.trim().slice(0, 500) || '(empty)'}`);
  let document: Json;
  try {
    document = JSON.parse(text.slice(start)) as Json;
  } catch (error) {
    throw new FioOutputError(`fio output is not valid JSON: ${(error as Error).message}`);
  }
  const jobs = document['jobs'];
  if (!Array.isArray(jobs)) throw new FioOutputError('fio JSON: jobs is missing');
  return {
    version: String(document['fio version'] ?? 'unknown'),
    timestampMs: num(document, 'timestamp_ms', 'fio'),
    notices: text.slice(0, start).split('\n').map((l) => l.trim()).filter(Boolean),
    jobs: jobs.map((job: Json, i: number) => {
      const where = `jobs[${i}]`;
      // In-guest runs: this JSON comes from the guest.
      if (typeof job !== 'object' || job === null || Array.isArray(job)) throw new FioOutputError(`fio JSON: ${where} is not an object`);
      return {
        jobname: String(job['jobname']),
        error: num(job, 'error', where),
        runtimeMs: num(job, 'job_runtime', where),
        windowMs: Math.max(num(obj(job, 'read', where), 'runtime', `${where}.read`), num(obj(job, 'write', where), 'runtime', `${where}.write`)),
        read: direction(job, 'read', where),
        write: direction(job, 'write', where),
        usrCpuPercent: num(job, 'usr_cpu', where),
        sysCpuPercent: num(job, 'sys_cpu', where),
      };
    }),
  };
}

export interface FioRun {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Wall-clock start and end of the fio process (ms since the epoch). */
  startedMs: number;
  endedMs: number;
  output?: FioOutput;
  /** Why the output could not be read, when it could not. */
  outputError?: string;
}

/**
 * Runs `fio --output-format=json --output=<jsonPath> <jobPath>`. `onStart` gets the pid (CPU sampling starts then);
 * `prefix` runs fio through a command (e.g. taskset). Never throws for fio failures: the caller reports them.
 */
export interface FioRunOptions {
  fio: string;
  jobPath: string;
  jsonPath: string;
  prefix?: string[];
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  onStart?: (pid: number) => void;
  /** Aborting stops fio (SIGTERM): the run is then a failed one (vfiod bench on SIGINT). */
  signal?: AbortSignal;
}

export function runFio(options: FioRunOptions): Promise<FioRun> {
  const argv = [...(options.prefix ?? []), options.fio, '--output-format=json', `--output=${options.jsonPath}`, options.jobPath];
  return new Promise((resolve) => {
    const startedMs = Date.now();
    // cwd = the job file's directory: whatever fio writes next to itself (state files, logs) stays with the run.
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env, cwd: dirname(options.jobPath) });
    let stderr = '';
    let spawnError: string | undefined;
    const keep = (chunk: Buffer): void => {
      stderr = (stderr + chunk.toString()).slice(-16_384);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('spawn', () => options.onStart?.(child.pid!));
    child.once('error', (error) => {
      spawnError = `cannot run ${argv[0]}: ${error.message}`;
    });
    const timer = options.timeoutMs
      ? setTimeout(() => {
          stderr += `\n(vfiod bench: fio did not finish within ${Math.round(options.timeoutMs! / 1000)} s; killed)`;
          child.kill('SIGKILL');
        }, options.timeoutMs)
      : undefined;
    const stop = (): void => void child.kill('SIGTERM');
    options.signal?.addEventListener('abort', stop, { once: true });
    child.once('close', (exitCode, signal) => {
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', stop);
      const run: FioRun = { exitCode, signal, stderr: (spawnError ? spawnError + '\n' : '') + stderr, startedMs, endedMs: Date.now() };
      try {
        run.output = parseFioOutput(readFileSync(options.jsonPath, 'utf8'));
      } catch (error) {
        run.outputError = (error as Error).message;
      }
      resolve(run);
    });
  });
}

/** `fio --version` (e.g. "fio-3.33"), or undefined when fio cannot run. */
export function fioVersion(fio: string): string | undefined {
  const result = spawnSync(fio, ['--version'], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : undefined;
}
