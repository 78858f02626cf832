/**
 * `vfiod bench`: runs every matrix point on every target with fio and writes results.json, report.md, the job
 * files and the plots into the output directory. A failing point or target is recorded and the run goes on.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BenchConfigError, capacityProblems, type BenchConfig, type MatrixConfig, type TargetConfig } from './config.js';
import { CpuSampler } from './cpu.js';
import { fioVersion, runFio, type FioRun } from './fio.js';
import { engineFetchNeeded, targetsNeedEngine } from './engine.js';
import { combineRepetitions } from './repetitions.js';
import { expandMatrix, fillJobFile, jobFile, readsData, type MatrixPoint } from './matrix.js';
import { Progress } from './progress.js';
import { writeReport } from './report.js';
import type { BenchResults, MachineInfo, PointResult } from './results.js';
import { startTarget, type ActiveTarget } from './targets.js';
import { Logger, rootLogger } from '../util/log.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

export interface RunOptions {
  outDir: string;
  smoke: boolean;
  logger?: Logger;
  progressStream?: NodeJS.WriteStream;
}

export function machineInfo(fio: string): MachineInfo {
  const git = (args: string[]): string | undefined => {
    try {
      return execFileSync('git', ['-C', REPO, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return undefined;
    }
  };
  const status = git(['status', '--porcelain', '--untracked-files=no']);
  return {
    cpu_model: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    fio: fioVersion(fio),
    vfiod_commit: git(['rev-parse', 'HEAD']),
    vfiod_dirty: status === undefined ? undefined : status !== '',
    hostname: os.hostname(),
    loadavg_start: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

/** How long a fio run may take before it counts as hung. */
function fioTimeoutMs(p: MatrixPoint): number {
  const timed = p.runtimeSeconds !== undefined ? p.runtimeSeconds + p.rampSeconds : 0;
  return Math.max(120_000, (timed * 3 + 60) * 1000);
}

export async function runBench(config: BenchConfig, options: RunOptions): Promise<BenchResults> {
  let logger = (options.logger ?? rootLogger).child({ component: 'bench' });
  const matrix = options.smoke ? config.smoke : config.matrix;
  const label = options.smoke ? 'smoke' : 'matrix';
  const tooSmall = capacityProblems(config.targets, matrix, label); // a default or derived matrix was not checked yet
  if (tooSmall.length > 0) throw new BenchConfigError(config.source, tooSmall);
  const points = expandMatrix(matrix);
  const outDir = path.resolve(options.outDir);
  mkdirSync(path.join(outDir, 'jobs'), { recursive: true });
  const results: BenchResults = {
    tool: 'vfiod bench',
    started: new Date().toISOString(),
    smoke: options.smoke,
    config: { source: config.source, name: config.name, matrix, targets: config.targets },
    machine: machineInfo(config.fio),
    targets: [],
    points: [],
  };
  if (!results.machine.fio) throw new Error(`fio ('${config.fio}') cannot be run: install fio or set 'fio:' in ${config.source}`);

  // SIGINT (Ctrl-C): stop fio, stop the targets, write the report of what finished. A second one ends the process.
  const interrupt = new AbortController();
  const onSigint = (): void => {
    if (interrupt.signal.aborted) process.exit(130);
    logger.warn('interrupted (SIGINT): stopping; the report will hold the points that finished (SIGINT again to quit at once)');
    interrupt.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    return await runAll(config, matrix, points, outDir, results, logger, interrupt.signal, options);
  } finally {
    process.off('SIGINT', onSigint);
  }
}

async function runAll(
  config: BenchConfig, matrix: MatrixConfig, points: MatrixPoint[], outDir: string, results: BenchResults, parentLogger: Logger, signal: AbortSignal, options: RunOptions,
): Promise<BenchResults> {
  let logger = parentLogger;
  announceEngineFetch(config, logger);
  const total = points.length * config.targets.length;
  const perPoint = (matrix.runtimeSeconds ?? 5) + matrix.rampSeconds + 1.5;
  logger.info('bench starting', { config: config.source, points: points.length, targets: config.targets.length, runs: total, out: outDir, smoke: options.smoke });
  const progress = new Progress({ total, estimateSeconds: perPoint, logger, ...(options.progressStream ? { stream: options.progressStream } : {}) });
  // On a terminal, log lines go above the redrawn bar instead of through it.
  if (progress.isTty && !options.logger) logger = new Logger({ component: 'bench' }, progress.sink());
  const save = (): void => writeFileSync(path.join(outDir, 'results.json'), JSON.stringify(results, null, 2) + '\n');

  const bytesNeeded = matrix.sizeBytes * Math.max(...matrix.numjobs);
  for (const targetConfig of config.targets) {
    if (signal.aborted) break;
    const entry: BenchResults['targets'][number] = { name: targetConfig.name, type: targetConfig.type, ok: false };
    results.targets.push(entry);
    let target: ActiveTarget | undefined;
    try {
      target = await startTarget(targetConfig, {
        dir: path.join(outDir, 'targets', targetConfig.name), bytesNeeded, logger, ...(config.engine ? { engine: config.engine } : {}),
      });
      entry.ok = true;
      entry.info = target.info;
    } catch (error) {
      entry.error = (error as Error).message;
      logger.error('target failed to start; its points are skipped', { target: targetConfig.name, error: entry.error });
    }
    const filled = { plain: false };
    try {
      const context = target ? { fio: config.fio, matrix, target, outDir, filled, logger, signal } : undefined;
      for (const point of points) {
        if (signal.aborted) break;
        const label = `${targetConfig.name}/${point.id}`;
        progress.start(label);
        const result = context ? await runPoint(context, point) : failedPoint(targetConfig, point, `target did not start: ${entry.error}`);
        if (!result) break; // interrupted: what did not finish is not recorded
        results.points.push(result);
        save();
        progress.finish(label, result.ok
          ? { iops: Math.round(result.iops ?? 0), p99_us: round(result.lat_us?.p99 ?? 0, 1), server_us_per_io: result.server_cpu ? round(result.server_cpu.us_per_io, 2) : null }
          : { error: result.error });
      }
    } finally {
      await target?.stop().catch((error: Error) => logger.error('stopping target failed', { target: targetConfig.name, error: error.message }));
    }
  }
  progress.end();
  if (signal.aborted) results.interrupted = { at: new Date().toISOString(), runs_done: results.points.length, runs_planned: total };
  results.finished = new Date().toISOString();
  results.machine.loadavg_end = os.loadavg().map((l) => Math.round(l * 100) / 100);
  save();
  writeReport(results, outDir);
  return results;
}

/**
 * Says up front when building the fio engine will first fetch fio's source from the network, and how to avoid it:
 * the run would otherwise sit silent for minutes, or fail late where there is no network.
 */
function announceEngineFetch(config: BenchConfig, logger: Logger): void {
  if (config.engine !== undefined || !targetsNeedEngine(config.targets)) return;
  const fetch = engineFetchNeeded();
  if (!fetch) return;
  logger.warn(
    `first run: the fio engine for the emulation/passthrough targets is built against fio's own source, which is fetched once now (${fetch}) and cached in bench/fio-engine/build/. ` +
      "To avoid it: run 'npm run bench:fio-engine' once where deb.debian.org is reachable, or give 'engine: <path of a built vfiod-fio.so>' in the bench config.",
  );
}

function failedPoint(target: TargetConfig, point: MatrixPoint, error: string): PointResult {
  return {
    target: target.name, target_type: target.type, point, ok: false, error,
    files: { job: '', fio_json: '' }, duration_s: 0,
  };
}

/** What a point's runs share: the fio binary, the matrix, the target, where files go, SIGINT. */
interface PointContext {
  fio: string;
  matrix: MatrixConfig;
  target: ActiveTarget;
  outDir: string;
  filled: { plain: boolean };
  logger: Logger;
  signal: AbortSignal;
}

/** Every repetition of a point, combined; undefined when SIGINT came before the last one finished. */
async function runPoint(context: PointContext, point: MatrixPoint): Promise<PointResult | undefined> {
  const runs: PointResult[] = [];
  for (let repetition = 1; repetition <= context.matrix.repetitions; repetition++) {
    const run = await runOnce(context, point, repetition);
    if (context.signal.aborted) return undefined;
    runs.push(run);
    if (!run.ok) break; // a failed run fails the point; more runs would only repeat it
  }
  return combineRepetitions(runs, context.matrix.repetitions);
}

async function runOnce({ fio, matrix, target, outDir, filled, logger, signal }: PointContext, point: MatrixPoint, repetition: number): Promise<PointResult> {
  const t0 = Date.now();
  const name = target.config.name;
  const base = `jobs/${name}--${point.id}`;
  const result: PointResult = {
    target: name, target_type: target.config.type, point, ok: false,
    files: { job: `${base}.fio`, fio_json: `${base}.run${repetition}.json` }, duration_s: 0,
  };
  const finish = (error?: string): PointResult => {
    result.duration_s = round((Date.now() - t0) / 1000, 2);
    if (error) {
      result.error = error;
      // A run stopped by SIGINT is not a failure of the target: it is left out of the results.
      if (!signal.aborted) logger.warn('point failed', { target: name, point: point.id, repetition, error });
    } else result.ok = true;
    return result;
  };
  const fioTarget = { name, options: target.fioOptions };
  const broken = target.failure();
  if (broken) return finish(broken);

  // Reads need written data: verify reads need headers in the point's block size; plain reads one fill per target.
  if (readsData(point.rw) && (point.verify || !filled.plain)) {
    const fillPoint = point.verify ? point : { ...point, numjobs: Math.max(...matrix.numjobs) };
    result.files.fill_job = `${base}.fill.fio`;
    writeFileSync(path.join(outDir, result.files.fill_job), fillJobFile(fillPoint, fioTarget));
    const fill = await (target.runFio ?? runFio)({
      fio, jobPath: path.join(outDir, result.files.fill_job), jsonPath: path.join(outDir, `${base}.fill.json`),
      timeoutMs: 600_000, signal,
    });
    const fillError = fioFailure(fill);
    if (fillError) return finish(`fill before the point failed: ${fillError}${target.failure() ? `; ${target.failure()}` : ''}`);
    if (!point.verify) filled.plain = true;
  }

  writeFileSync(path.join(outDir, result.files.job), jobFile(point, fioTarget));
  let sampler: CpuSampler | undefined;
  const run = await (target.runFio ?? runFio)({
    fio, jobPath: path.join(outDir, result.files.job), jsonPath: path.join(outDir, result.files.fio_json),
    timeoutMs: fioTimeoutMs(point),
    signal,
    onStart: () => {
      if (target.serverPid !== undefined) sampler = new CpuSampler(target.serverPid);
    },
  });
  const threads = sampler?.stop();
  const failure = fioFailure(run);
  if (run.output?.notices.length) result.fio_notices = run.output.notices;
  if (failure) return finish(`${failure}${target.failure() ? `; ${target.failure()}` : ''}`);

  const job = run.output!.jobs[0]!;
  const doesRead = readsData(point.rw);
  const doesWrite = point.rw !== 'read' && point.rw !== 'randread';
  result.read = job.read;
  result.write = job.write;
  result.iops = (doesRead ? job.read.iops : 0) + (doesWrite ? job.write.iops : 0);
  result.bytes_per_second = (doesRead ? job.read.bytesPerSecond : 0) + (doesWrite ? job.write.bytesPerSecond : 0);
  result.lat_us = doesRead ? job.read.clatUs : job.write.clatUs;
  result.ios = job.read.ios + job.write.ios;
  result.verify = {
    enabled: point.verify,
    ...(point.verify ? { method: 'crc32c' } : {}),
    errors: job.error === 84 ? 1 : 0,
    // A read workload's reads are checked as they come; a writer's blocks are each read back and checked after the
    // write pass (randrw's reads mix both, so its written blocks are the count).
    verified_ios: !point.verify ? 0 : doesWrite ? job.write.ios : job.read.ios,
  };
  const fioSeconds = ((job.usrCpuPercent + job.sysCpuPercent) / 100) * (job.runtimeMs / 1000);
  result.fio_cpu = {
    usr_percent: round(job.usrCpuPercent, 2), sys_percent: round(job.sysCpuPercent, 2),
    seconds: round(fioSeconds, 4), us_per_io: result.ios > 0 ? round((fioSeconds * 1e6) / result.ios, 3) : 0,
  };
  let cpuSeconds = fioSeconds;
  if (sampler) {
    // fio stamps its JSON when the measured window ends; the window is the longest direction's runtime.
    const end = run.output!.timestampMs;
    const seconds = sampler.secondsBetween(end - job.windowMs, end);
    if (seconds !== undefined && job.windowMs > 0) {
      result.server_cpu = {
        seconds: round(seconds, 6),
        us_per_io: result.ios > 0 ? round((seconds * 1e6) / result.ios, 3) : 0,
        cores: round(seconds / (job.windowMs / 1000), 3),
        source: sampler.source,
        threads_whole_run_s: threads ?? {},
      };
      cpuSeconds += seconds;
    }
  }
  if (cpuSeconds > 0 && job.windowMs > 0) result.iops_per_core = round(result.ios / cpuSeconds, 0);
  return finish();
}

/** Why a fio run counts as failed, or undefined. */
function fioFailure(run: FioRun): string | undefined {
  const tail = run.stderr.trim().split('\n').filter(Boolean).slice(-6).join(' | ');
  if (run.outputError && (run.exitCode !== 0 || !run.output)) {
    return `fio ${run.signal ? `killed by ${run.signal}` : `exited with ${run.exitCode}`}: ${tail || run.outputError}`;
  }
  const job = run.output?.jobs[0];
  if (!job) return 'fio reported no jobs';
  if (job.error !== 0) {
    const what = job.error === 84 ? 'verify failed (EILSEQ: data read back differs from what was written)' : `job error ${job.error}`;
    return `fio: ${what}${tail ? `: ${tail}` : ''}`;
  }
  if (run.exitCode !== 0) return `fio exited with ${run.exitCode}: ${tail}`;
  if (job.read.ios + job.write.ios === 0) return 'fio completed no I/O';
  return undefined;
}

function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
