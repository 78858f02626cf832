/**
 * Micro-benchmark runner on the `benchmark` package: every group runs a reference (a plain copy of the same bytes)
 * in the same process and run, and each case is reported as ops/s and as a ratio to that reference, so numbers
 * from this noisy shared machine compare within a run.
 */
import Benchmark from 'benchmark';

export interface Case {
  name: string;
  fn: () => void;
}

export interface Group {
  /** e.g. "vfio-user codec". */
  name: string;
  /** What the reference does, e.g. "Buffer.copy of 40 bytes". */
  referenceName: string;
  reference: () => void;
  cases: Case[];
}

export interface CaseResult {
  group: string;
  name: string;
  reference: boolean;
  /** ops/s of the fastest sample: on a shared machine noise only ever slows a sample down, so the best one is the
   * closest to the code's own cost. */
  opsPerSecond: number;
  /** benchmark.js's mean over all samples, and its relative margin of error (percent). */
  meanOpsPerSecond: number;
  rme: number;
  samples: number;
  /** Best-sample ops/s of this case divided by the reference's: < 1 = slower than the reference. */
  ratioToReference: number;
  /** Time per operation of the fastest sample, ns. */
  nsPerOp: number;
}

export function runGroup(group: Group, maxTimeSeconds: number, log: (line: string) => void): CaseResult[] {
  const suite = new Benchmark.Suite(group.name);
  const options = { maxTime: maxTimeSeconds, minSamples: 5 };
  suite.add(`reference: ${group.referenceName}`, group.reference, options);
  for (const c of group.cases) suite.add(c.name, c.fn, options);
  const raw: Array<{ name: string; hz: number; best: number; rme: number; samples: number }> = [];
  suite.on('cycle', (event: Benchmark.Event) => {
    const bench = event.target as unknown as Benchmark;
    if (bench.error) throw bench.error;
    const sample = bench.stats?.sample ?? [];
    const best = sample.length > 0 ? 1 / Math.min(...sample) : (bench.hz ?? 0); // samples are seconds per op
    raw.push({ name: String(bench.name), hz: bench.hz ?? 0, best, rme: bench.stats?.rme ?? 0, samples: sample.length });
    log(`  ${String(bench)}`);
  });
  suite.run({ async: false });
  const referenceBest = raw[0]!.best;
  return raw.map((r, index) => ({
    group: group.name,
    name: r.name,
    reference: index === 0,
    opsPerSecond: Math.round(r.best),
    meanOpsPerSecond: Math.round(r.hz),
    rme: Math.round(r.rme * 100) / 100,
    samples: r.samples,
    ratioToReference: Math.round((r.best / referenceBest) * 1000) / 1000,
    nsPerOp: Math.round((1e9 / r.best) * 10) / 10,
  }));
}

/** Keeps results alive so the JIT cannot drop the work under measurement. */
export let sink = 0;
export function consume(value: number): void {
  sink = (sink + value) | 0;
}
