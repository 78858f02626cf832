/**
 * CPU time of a process from /proc. The sampler reads it periodically during a fio run so the CPU of fio's measured
 * window (after ramp, before teardown) can be cut out. Preferred source: the scheduler's on-CPU time per thread
 * (/proc/<pid>/task/<tid>/schedstat, nanoseconds, user + system), summed; fallback: utime + stime from
 * /proc/<pid>/stat, which counts in 10 ms ticks (too coarse for sub-second windows).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat (100 on every Linux architecture vfiod runs on). */
export const CLOCK_TICKS_PER_SECOND = 100;

/** utime + stime in seconds from a /proc/<pid>/stat (or task stat) line; undefined if the process is gone. */
export function readCpuSeconds(statPath: string): { name: string; seconds: number } | undefined {
  let stat: string;
  try {
    stat = readFileSync(statPath, 'utf8');
  } catch {
    return undefined;
  }
  // comm may contain spaces and parentheses: fields after it start at the last ')'.
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  const fields = stat.slice(close + 2).split(' ');
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  const ticks = Number(fields[11]) + Number(fields[12]);
  if (!Number.isFinite(ticks)) return undefined;
  return { name: stat.slice(open + 1, close), seconds: ticks / CLOCK_TICKS_PER_SECOND };
}

export type CpuSource = 'schedstat' | 'stat';

/** On-CPU seconds of every live thread of `pid` from schedstat; undefined when schedstat is not available. */
export function schedstatSeconds(pid: number): number | undefined {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  let ns = 0;
  for (const tid of tids) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // A thread that just exited; a missing schedstat file (no CONFIG_SCHED_INFO) shows up for every thread.
      if (!existsSync(`/proc/${pid}/task/${tid}`)) continue;
      return undefined;
    }
  }
  return Number.isFinite(ns) ? ns / 1e9 : undefined;
}

export function processCpuSeconds(pid: number, source: CpuSource = 'stat'): number | undefined {
  return source === 'schedstat' ? schedstatSeconds(pid) : readCpuSeconds(`/proc/${pid}/stat`)?.seconds;
}

/**
 * CPU seconds per thread, keyed "<name> main" for the main thread and "<name> <tid>" for the others (Node's worker
 * threads all carry the process name, so the tid tells them apart).
 */
export function threadCpuSeconds(pid: number, source: CpuSource = 'stat'): Record<string, number> {
  const result: Record<string, number> = {};
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return result;
  }
  for (const tid of tids) {
    const cpu = readCpuSeconds(`/proc/${pid}/task/${tid}/stat`);
    if (!cpu) continue;
    let seconds = cpu.seconds;
    if (source === 'schedstat') {
      try {
        seconds = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
      } catch {
        continue; // exited in between
      }
    }
    result[`${cpu.name} ${tid === String(pid) ? 'main' : tid}`] = seconds;
  }
  return result;
}

export interface CpuSample {
  timeMs: number;
  seconds: number;
}

/** Samples a process's CPU seconds every `intervalMs` until stopped. */
export class CpuSampler {
  readonly samples: CpuSample[] = [];
  private timer: NodeJS.Timeout | undefined;
  readonly threadsAtStart: Record<string, number>;
  readonly source: CpuSource;
  /** schedstat: each live thread's last reading, and the CPU they added since the start. */
  private lastByThread = new Map<string, number>();
  private accumulated = 0;

  constructor(
    readonly pid: number,
    intervalMs = 50,
  ) {
    this.source = schedstatSeconds(pid) !== undefined ? 'schedstat' : 'stat';
    this.threadsAtStart = threadCpuSeconds(pid, this.source);
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  private sample(): void {
    const seconds = this.source === 'schedstat' ? this.accumulateThreads() : processCpuSeconds(this.pid, 'stat');
    if (seconds !== undefined) this.samples.push({ timeMs: Date.now(), seconds });
  }

  /**
   * schedstat covers live threads only, so a plain sum drops when a thread exits. Instead every sample adds what
   * each thread gained since the previous one (a thread born in between counts whole), which never goes backwards.
   */
  private accumulateThreads(): number | undefined {
    const now = threadCpuSeconds(this.pid, 'schedstat');
    const names = Object.keys(now);
    if (names.length === 0) return undefined; // the process is gone
    const first = this.samples.length === 0;
    for (const name of names) {
      const previous = this.lastByThread.get(name);
      if (!first) this.accumulated += previous === undefined ? now[name]! : Math.max(0, now[name]! - previous);
    }
    this.lastByThread = new Map(Object.entries(now));
    return this.accumulated;
  }

  /** Takes a last sample and stops; returns per-thread CPU seconds over the sampler's life. */
  stop(): Record<string, number> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
    const end = threadCpuSeconds(this.pid, this.source);
    const delta: Record<string, number> = {};
    for (const [name, seconds] of Object.entries(end)) {
      const used = round6(seconds - (this.threadsAtStart[name] ?? 0));
      if (used > 0) delta[name] = used;
    }
    return delta;
  }

  /** CPU seconds between two instants, linearly interpolated between the samples around each. */
  secondsBetween(fromMs: number, toMs: number): number | undefined {
    const from = interpolate(this.samples, fromMs);
    const to = interpolate(this.samples, toMs);
    return from === undefined || to === undefined ? undefined : Math.max(0, to - from);
  }
}

function interpolate(samples: CpuSample[], timeMs: number): number | undefined {
  if (samples.length === 0) return undefined;
  const first = samples[0]!;
  const last = samples.at(-1)!;
  if (timeMs <= first.timeMs) return first.seconds;
  if (timeMs >= last.timeMs) return last.seconds;
  for (let i = 1; i < samples.length; i++) {
    const b = samples[i]!;
    if (b.timeMs >= timeMs) {
      const a = samples[i - 1]!;
      const span = b.timeMs - a.timeMs;
      return span === 0 ? b.seconds : a.seconds + ((b.seconds - a.seconds) * (timeMs - a.timeMs)) / span;
    }
  }
  return last.seconds;
}

function round6(value: number): number {
  return Math.round(value * 1e6) / 1e6;
}
