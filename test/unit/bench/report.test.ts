/**
 * The bench report over repetitions (src/bench/repetitions.ts, report.ts, svg.ts): min/median/max of each point's
 * runs, the cells and error bars they become, the four plots per workload, colours fixed per target kind, and what
 * an interrupted run's report says. Results are built here from known numbers; the real runs are in harness.test.ts
 * and test/integration/bench-interrupt.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { combineRepetitions, spread } from '../../../src/bench/repetitions.js';
import { renderReport, TARGET_DASHES, TARGET_KIND_COLOURS, workloadCharts, workloadTables } from '../../../src/bench/report.js';
import type { BenchResults, PointResult } from '../../../src/bench/results.js';
import type { MatrixConfig, TargetConfig } from '../../../src/bench/config.js';
import { expandMatrix } from '../../../src/bench/matrix.js';
import { svgDocument } from '../../../src/bench/svg.js';
import { assertWellFormedSvg } from '../../helpers/svg.js';

const matrix: MatrixConfig = {
  rw: ['randread'], rwmixread: 70, bs: [4096], iodepth: [1, 8], numjobs: [1], verify: [false],
  runtimeSeconds: 1, rampSeconds: 0, sizeBytes: 8 << 20, repetitions: 3,
};
const [qd1, qd8] = expandMatrix(matrix) as [ReturnType<typeof expandMatrix>[number], ReturnType<typeof expandMatrix>[number]];

/** One fio run with these numbers. */
function run(target: string, type: TargetConfig['type'], point = qd1, numbers: { iops: number; p99: number; p999?: number; fioUs?: number; serverUs?: number }, n = 1): PointResult {
  return {
    target, target_type: type, point, ok: true,
    files: { job: `jobs/${target}--${point.id}.fio`, fio_json: `jobs/${target}--${point.id}.run${n}.json` },
    duration_s: 1.5,
    iops: numbers.iops,
    bytes_per_second: numbers.iops * 4096,
    lat_us: { mean: numbers.p99 / 2, p50: numbers.p99 / 3, p99: numbers.p99, p999: numbers.p999 ?? numbers.p99 * 2, max: numbers.p99 * 10 },
    ios: numbers.iops,
    fio_cpu: { usr_percent: 10, sys_percent: 20, seconds: 0.3, us_per_io: numbers.fioUs ?? 2 },
    ...(numbers.serverUs !== undefined
      ? { server_cpu: { seconds: 0.5, us_per_io: numbers.serverUs, cores: 0.5, source: 'schedstat', threads_whole_run_s: { main: 0.5 } } }
      : {}),
    iops_per_core: numbers.iops * 2,
  };
}

describe('repetition statistics', () => {
  it('min, median and max; the median of an even count is the mean of the middle two; non-numbers are left out', () => {
    expect(spread([30, 10, 20])).toEqual({ min: 10, median: 20, max: 30, n: 3 });
    expect(spread([4, 1, 3, 2])).toEqual({ min: 1, median: 2.5, max: 4, n: 4 });
    expect(spread([5, NaN, Infinity])).toEqual({ min: 5, median: 5, max: 5, n: 1 });
    expect(spread([])).toBeUndefined();
  });

  it('a point is the median of its runs, with the spread of each shown value and every run kept', () => {
    const runs = [
      run('emu', 'emulation', qd1, { iops: 1000, p99: 90, p999: 400, fioUs: 3, serverUs: 5 }, 1),
      run('emu', 'emulation', qd1, { iops: 1200, p99: 70, p999: 300, fioUs: 2, serverUs: 4 }, 2),
      run('emu', 'emulation', qd1, { iops: 900, p99: 120, p999: 900, fioUs: 4, serverUs: 6 }, 3),
    ];
    const point = combineRepetitions(runs);
    expect(point.ok).toBe(true);
    expect(point.iops).toBe(1000);
    expect(point.lat_us).toEqual({ mean: 45, p50: 30, p99: 90, p999: 400, max: 1200 });
    expect(point.fio_cpu!.us_per_io).toBe(3);
    expect(point.server_cpu!.us_per_io).toBe(5);
    expect(point.iops_per_core).toBe(2000);
    expect(point.bytes_per_second).toBe(1000 * 4096);
    expect(point.spread).toEqual({
      iops: { min: 900, median: 1000, max: 1200, n: 3 },
      p50_us: { min: 70 / 3, median: 30, max: 40, n: 3 },
      p99_us: { min: 70, median: 90, max: 120, n: 3 },
      p999_us: { min: 300, median: 400, max: 900, n: 3 },
      host_cpu_us_per_io: { min: 6, median: 8, max: 10, n: 3 },
      server_cpu_us_per_io: { min: 4, median: 5, max: 6, n: 3 },
    });
    // The median-IOPS run gives the files and details; every run is listed.
    expect(point.files.fio_json).toBe(runs[0]!.files.fio_json);
    expect(point.repetitions!.map((r) => [r.fio_json, r.iops, r.server_cpu_us_per_io])).toEqual([
      [runs[0]!.files.fio_json, 1000, 5], [runs[1]!.files.fio_json, 1200, 4], [runs[2]!.files.fio_json, 900, 6],
    ]);
    expect(point.duration_s).toBe(4.5);
  });

  it('a failed run fails the point, naming the run; the runs before it are kept', () => {
    const failed: PointResult = { ...run('f', 'file', qd1, { iops: 0, p99: 0 }, 2), ok: false, error: 'fio exited with 1: boom' };
    const point = combineRepetitions([run('f', 'file', qd1, { iops: 500, p99: 50 }, 1), failed], 3);
    expect(point.ok).toBe(false);
    expect(point.error).toBe('run 2 of 3: fio exited with 1: boom');
    expect(point.repetitions!.map((r) => r.ok)).toEqual([true, false]);
    expect(point.repetitions![1]!.iops).toBeUndefined();
    // The first run failing: the point failed, as with a single run.
    expect(combineRepetitions([failed], 3).error).toBe('fio exited with 1: boom');
    expect(() => combineRepetitions([])).toThrow(/no runs/);
  });
});

/** A two-workload-free results document: the given targets, each point from three runs. */
function results(targets: Array<{ name: string; type: TargetConfig['type'] }>, extra: Partial<BenchResults> = {}): BenchResults {
  const points: PointResult[] = [];
  targets.forEach((target, t) => {
    for (const point of [qd1, qd8]) {
      const base = (point === qd1 ? 1000 : 5000) * (t + 1);
      points.push(combineRepetitions([0.9, 1, 1.2].map((f, i) => run(target.name, target.type, point, { iops: base * f, p99: 100 / f, serverUs: target.type === 'emulation' ? 5 * f : undefined }, i + 1))));
    }
  });
  return {
    tool: 'vfiod bench', started: '2026-12-07T12:00:00.000Z', finished: '2026-12-07T12:05:00.000Z', smoke: false,
    config: {
      source: '/srv/bench.yaml', name: 'unit', matrix,
      targets: targets.map((t) => ({ name: t.name, type: 'file', path: `/srv/${t.name}.img`, ioengine: 'libaio', direct: true }) as TargetConfig),
    },
    machine: {
      cpu_model: 'Test CPU', cores: 2, kernel: 'Linux 6.1', node: 'v20', fio: 'fio-3.33', vfiod_commit: undefined, vfiod_dirty: undefined,
      hostname: 'h', loadavg_start: [1, 1, 1], loadavg_end: [1, 1, 1],
    },
    targets: targets.map((t) => ({ name: t.name, type: t.type, ok: true })),
    points,
    ...extra,
  };
}

describe('report', () => {
  it('cells give the median with (min–max) of IOPS, p99 and p99.9; the header says how many runs', () => {
    const report = renderReport(results([{ name: 'base', type: 'file' }, { name: 'emu', type: 'emulation' }]));
    expect(report).toContain('1 s per run after 0 s ramp, 8 MiB per job, 3 runs per point');
    expect(report).toContain('Each point ran 3 times: every number is the median of its runs');
    const emuQd1 = report.split('\n').find((line) => line.startsWith('| 1 | emu |'))!;
    // emu at QD 1: 2000 × (0.9, 1, 1.2) IOPS; p99 100 / f; p99.9 twice that.
    expect(emuQd1).toMatch(/^\| 1 \| emu \| 2,000 \(1,800–2,400\) \| 8\.2 \| 50\.0 \| 33\.3 \| 100\.0 \(83\.3–111\.1\) \| 200\.0 \(166\.7–222\.2\) \| 5\.00 \| 2\.00 \| 4,000 \| 2\.00× \|/);
    expect(report).not.toContain('Interrupted');
  });

  it('an interrupted run says so, and names the targets it never reached', () => {
    const partial = results([{ name: 'base', type: 'file' }], {
      interrupted: { at: '2026-12-07T12:03:00.000Z', runs_done: 2, runs_planned: 4 },
    });
    partial.config.targets.push({ name: 'later', type: 'file', path: '/srv/later.img', ioengine: 'libaio', direct: true });
    const report = renderReport(partial);
    expect(report).toContain('**Interrupted** (SIGINT) at 2026-12-07T12:03:00.000Z: 2 of 4 points finished');
    expect(report).toContain('- **later** (file: libaio on /srv/later.img, O_DIRECT): not run (interrupted)');
  });
});

describe('plots', () => {
  const both = results([{ name: 'base', type: 'file' }, { name: 'emu', type: 'emulation' }, { name: 'emu-polled', type: 'emulation' }]);
  const charts = workloadCharts(both, workloadTables(both)[0]!);

  it('IOPS, p99, p99.9 and host CPU per I/O against queue depth, the median with min–max error bars', () => {
    expect(charts.map((chart) => chart.title.split(' — ')[0])).toEqual(['IOPS', 'p99 latency', 'p99.9 latency', 'host CPU per I/O']);
    const emuIops = charts[0]!.series.find((s) => s.name === 'emu')!;
    expect(emuIops.points).toEqual([{ x: 1, y: 2000, low: 1800, high: 2400 }, { x: 8, y: 10000, low: 9000, high: 12000 }]);
    const emuCpu = charts[3]!.series.find((s) => s.name === 'emu')!;
    expect(emuCpu.points[0]).toEqual({ x: 1, y: 7, low: 6.5, high: 8 }); // fio 2 + server 5 × (0.9, 1, 1.2)
    const svg = svgDocument(charts, 520, 380, 2);
    assertWellFormedSvg(svg);
    // 4 charts × 3 targets × 2 queue depths.
    expect(svg.match(/<g class="error-bar"/g)).toHaveLength(24);
    expect(svg).toContain('<title>emu: queue depth 1: min 1.8k, max 2.4k IOPS</title>');
    // A 2 × 2 grid.
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="1040" height="\d+"/);
  });

  it('colours are fixed per target kind, whatever the order; targets of one kind differ by dashes', () => {
    expect(new Set(Object.values(TARGET_KIND_COLOURS)).size).toBe(Object.keys(TARGET_KIND_COLOURS).length);
    const style = (name: string) => charts[0]!.series.find((s) => s.name === name)!;
    expect(style('base')).toMatchObject({ colour: TARGET_KIND_COLOURS.file });
    expect(style('emu')).toMatchObject({ colour: TARGET_KIND_COLOURS.emulation });
    expect(style('emu').dash).toBeUndefined();
    expect(style('emu-polled')).toMatchObject({ colour: TARGET_KIND_COLOURS.emulation, dash: TARGET_DASHES[1] });
    // The other order: the same colour for each kind.
    const reversed = results([{ name: 'emu', type: 'emulation' }, { name: 'base', type: 'file' }]);
    const again = workloadCharts(reversed, workloadTables(reversed)[0]!);
    expect(again[0]!.series.map((s) => [s.name, s.colour])).toEqual([['emu', TARGET_KIND_COLOURS.emulation], ['base', TARGET_KIND_COLOURS.file]]);
    const svg = svgDocument(again);
    expect(svg).toContain(`<polyline fill="none" stroke="${TARGET_KIND_COLOURS.emulation}"`);
    expect(svg).toContain(`<polyline fill="none" stroke="${TARGET_KIND_COLOURS.file}"`);
    expect(svgDocument(charts)).toContain(`stroke="${TARGET_KIND_COLOURS.emulation}" stroke-width="2" stroke-dasharray="${TARGET_DASHES[1]}"`);
  });

  it('a single run per point draws no error bars', () => {
    const single = results([{ name: 'base', type: 'file' }]);
    single.points = single.points.map((p) => combineRepetitions([run('base', 'file', p.point, { iops: 100, p99: 10 })]));
    const svg = svgDocument(workloadCharts(single, workloadTables(single)[0]!));
    expect(svg).not.toContain('error-bar');
    expect(renderReport(single)).toMatch(/\| 1 \| base \| 100 \| /);
  });
});
