/**
 * `vfiod bench`: config validation, matrix expansion, job files, fio JSON parsing (from real fio runs), reports and
 * plots, and the CI smoke run — the real CLI starting a real `vfiod serve`, fio through the project's engine and a
 * libaio file baseline, all with crc32c verify on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BenchConfigError, parseBenchConfig } from '../../../src/bench/config.js';
import { expandMatrix, fillJobFile, jobFile, type MatrixPoint, type TargetFioOptions } from '../../../src/bench/matrix.js';
import { parseFioOutput, runFio, FioOutputError } from '../../../src/bench/fio.js';
import { buildEngine } from '../../../src/bench/engine.js';
import { renderReport, referenceTarget, workloadTables } from '../../../src/bench/report.js';
import type { BenchResults } from '../../../src/bench/results.js';
import { svgDocument } from '../../../src/bench/svg.js';
import { CpuSampler, processCpuSeconds } from '../../../src/bench/cpu.js';
import { startTarget } from '../../../src/bench/targets.js';
import { Progress, formatDuration } from '../../../src/bench/progress.js';
import { memoryLogger } from '../../../src/util/log.js';
import { temporaryDir } from '../../helpers/common.js';
import { assertWellFormedSvg } from '../../helpers/svg.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const bin = path.join(root, 'bin', 'vfiod.js');
const fioAvailable = spawnSync('fio', ['--version']).status === 0;
const noFio = fioAvailable ? undefined : 'fio is not installed (apt-get install fio)';
if (noFio) console.warn(`bench-harness: fio tests skipped: ${noFio}`);

let dir: string;
beforeAll(() => {
  dir = temporaryDir('vfiod-bench-test-');
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The problems a bad config is rejected with. */
function problems(yaml: string): string[] {
  try {
    parseBenchConfig(yaml, '/etc/bench.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(BenchConfigError);
    return (error as BenchConfigError).problems;
  }
  throw new Error('config was accepted');
}

const FILE_TARGET = 'targets: [{ name: f, type: file, path: /tmp/x.img }]';

describe('bench config', () => {
  it('accepts a full config and fills defaults', () => {
    const config = parseBenchConfig(
      `
name: nightly
matrix: { rw: [randread, randrw], rwmixread: 60, bs: [4k, 128K], iodepth: [1, 32], numjobs: 2, runtime: 5s, ramp: 500ms, size: 64M, verify: [false, true] }
targets:
  - { name: emu, type: emulation, namespace: 'memory:256M', doorbells: polled, serve-args: [--io-queues, '4'] }
  - { name: vf, type: passthrough, bdf: '3b:00.1' }
  - { name: base, type: file, path: data/base.img, ioengine: io_uring }
`,
      '/srv/bench/nightly.yaml',
    );
    expect(config.matrix).toEqual({
      rw: ['randread', 'randrw'], rwmixread: 60, bs: [4096, 131072], iodepth: [1, 32], numjobs: [2],
      verify: [false, true], runtimeSeconds: 5, rampSeconds: 0.5, sizeBytes: 64 * 2 ** 20, repetitions: 3,
    });
    expect(config.targets).toEqual([
      { name: 'emu', type: 'emulation', namespace: 'memory:256M', doorbells: 'polled', serveArgs: ['--io-queues', '4'], completion: 'poll', startTimeoutSeconds: 30 },
      { name: 'vf', type: 'passthrough', bdf: '0000:3b:00.1', nsid: 1, prepare: false, claimsDb: '/var/lib/vfiod/claims.db' },
      { name: 'base', type: 'file', path: '/srv/bench/data/base.img', ioengine: 'io_uring', direct: true },
    ]);
    // --smoke: first two workloads, first bs, first and a capped last QD, 1 s, no ramp, at most 16 MiB.
    expect(config.smoke).toMatchObject({ rw: ['randread', 'randrw'], bs: [4096], iodepth: [1, 8], numjobs: [1], runtimeSeconds: 1, rampSeconds: 0, sizeBytes: 16 * 2 ** 20 });
    expect(config.fio).toBe('fio');
    expect(config.engine).toBeUndefined(); // built on demand
    expect(config.name).toBe('nightly');
    expect(parseBenchConfig(`engine: build/vfiod-fio.so\n${FILE_TARGET}`, '/srv/b.yaml').engine).toBe('/srv/build/vfiod-fio.so');
  });

  it('reports every problem with its key and what is allowed', () => {
    expect(
      problems(`
matrix: { rw: [randomread], bs: [3k, 256k], iodepth: [0, 129], numjobs: [1.5], rwmixread: 101, verify: [yes], runtime: soon, size: 1000, repetitions: 0, colour: red }
${FILE_TARGET}
`),
    ).toEqual([
      'matrix.colour: unknown key; allowed: rw, rwmixread, bs, iodepth, numjobs, verify, runtime, ramp, size, repetitions',
      "matrix.rw[0]: 'randomread' is not a workload; allowed: read, write, randread, randwrite, randrw",
      'matrix.rwmixread: expected an integer percentage of reads from 0 to 100, got 101',
      "matrix.bs[0]: '3k' is not allowed; block sizes are multiples of 4k from 4k to 128k (e.g. 4k, 16k, 128k)",
      "matrix.bs[1]: '256k' is not allowed; block sizes are multiples of 4k from 4k to 128k (e.g. 4k, 16k, 128k)",
      'matrix.iodepth[0]: 0 is not allowed; expected an integer from 1 to 128',
      'matrix.iodepth[1]: 129 is not allowed; expected an integer from 1 to 128',
      'matrix.numjobs[0]: 1.5 is not allowed; expected an integer from 1 to 64',
      "matrix.verify[0]: expected true or false (or a list of them), got 'yes'",
      "matrix.runtime: expected a duration such as 10, 10s or 2m (or null for size-based runs), got 'soon'",
      'matrix.size: expected a size that is a multiple of 128k such as 64M or 1G, got 1000',
      'matrix.repetitions: expected an integer from 1 to 100 (fio runs per point; 3 or more give min, median and max), got 0',
    ]);
  });

  it('checks targets: type, names, URIs, addresses, reserved options, capacity', () => {
    expect(problems('targets: []')).toEqual(["targets: expected a non-empty list of targets (type: emulation | passthrough | file | in-guest), got a list"]);
    expect(
      problems(`
matrix: { size: 64M, numjobs: [1, 2] }
targets:
  - { name: a, type: vm }
  - { name: 'bad name', type: file, path: /x }
  - { name: e1, type: emulation, namespace: 'memory:64M' }
  - { name: e1, type: emulation, namespace: 'tape:1G' }
  - { name: e3, type: emulation, serve-args: [--poll] }
  - { name: e4, type: emulation, completion: interrupt }
  - { name: p, type: passthrough, bdf: 'pci-1' }
  - { name: f, type: file, path: /x, ioengine: spdk, sync: true }
  - { name: g, type: in-guest, command: [ssh, vm1], device: /dev/nvme0n1 }
  - { name: e5, type: emulation, start-timeout: 0 }
`),
    ).toEqual([
      "targets[0].type: 'vm' is not a target type; allowed: emulation, passthrough, file, in-guest",
      "targets[1].name: expected a name of letters, digits, '.', '_' or '-' (it names files), got 'bad name'",
      "targets[3].name: 'e1' is used by an earlier target; names must be unique",
      expect.stringMatching(/^targets\[3\]\.namespace: .*tape/),
      'targets[4].serve-args: --poll is set by the harness (use \'namespace\' and \'doorbells\')',
      "targets[5].completion: 'interrupt' is not a completion mode; allowed: poll (fio spins on the CQ), irq (fio sleeps on the MSI-X eventfd)",
      "targets[6].bdf: expected a PCI address such as 0000:3b:00.1, got 'pci-1'",
      'targets[7].sync: unknown key; allowed: name, type, path, ioengine, direct, fio-cpus',
      "targets[7].ioengine: 'spdk' is not supported; allowed: libaio, io_uring, psync",
      'targets[8].command: unknown key; allowed: name, type, exec, device, ioengine, direct, fio, vmm-pid',
      'targets[8].exec: expected {command: [argv prefix, e.g. ssh, vm1]} or {qga: <QEMU guest agent unix socket>}, got undefined',
      "targets[9].start-timeout: expected whole seconds from 1 to 3600 (how long 'vfiod serve' may take to listen), got 0",
    ]);
    // 64 MiB per job x 2 jobs does not fit a 64 MiB namespace (checked only once everything else is valid).
    expect(problems("matrix: { size: 64M, numjobs: [1, 2] }\ntargets: [{ name: e, type: emulation, namespace: 'memory:64M' }]")).toEqual([
      "matrix.size: 67108864 bytes x 2 jobs do not fit target 'e' (namespace memory:64M holds 67108864 bytes); lower size or numjobs, or grow the namespace",
    ]);
  });

  it('pins the server and fio to CPUs that exist here', () => {
    const last = os.cpus().length - 1;
    const config = parseBenchConfig(`targets:
  - { name: e, type: emulation, server-cpus: '${last}', fio-cpus: 0 }
  - { name: f, type: file, path: /x, fio-cpus: '0-${last}' }`);
    expect(config.targets[0]).toMatchObject({ serverCpus: String(last), fioCpus: '0' });
    expect(config.targets[1]).toMatchObject({ fioCpus: `0-${last}` });
    expect(
      problems(`targets:
  - { name: e, type: emulation, server-cpus: all }
  - { name: f, type: file, path: /x, fio-cpus: '${last + 1}' }
  - { name: g, type: file, path: /x, fio-cpus: '1-0' }
  - { name: p, type: passthrough, bdf: '01:00.0', server-cpus: '0' }`),
    ).toEqual([
      "targets[0].server-cpus: expected a CPU list such as 2, 2-3 or 0,4-7, got 'all'",
      `targets[1].fio-cpus: CPU ${last + 1} does not exist on this machine (CPUs 0-${last})`,
      'targets[2].fio-cpus: range 1-0 runs backwards',
      'targets[3].server-cpus: unknown key; allowed: name, type, bdf, nsid, prepare, claims-db, fio-cpus',
    ]);
  });

  it('rejects broken YAML and non-mappings with a message, not a crash', () => {
    expect(problems('matrix: [unclosed')[0]).toMatch(/^not valid YAML: /);
    expect(problems('matrix: {a: 1}\nmatrix: {b: 2}')[0]).toMatch(/^not valid YAML: .*[Mm]ap keys must be unique/);
    expect(problems('- just\n- a list')).toEqual(['top level: expected a mapping with keys name, fio, engine, matrix, smoke, targets, got a list']);
    expect(problems(`matrix: 5\n${FILE_TARGET}`)).toEqual([
      'matrix: expected a mapping with keys rw, rwmixread, bs, iodepth, numjobs, verify, runtime, ramp, size, repetitions, got 5',
    ]);
  });
});

describe('matrix and job files', () => {
  const config = parseBenchConfig(`
matrix: { rw: [randread, randwrite, randrw], rwmixread: 70, bs: [4k, 128k], iodepth: [1, 8], numjobs: [1, 2], verify: [false, true], runtime: 3, ramp: 1, size: 32M }
${FILE_TARGET}
`);
  const target = { name: 'f', options: [['ioengine', 'psync'], ['filename', '/tmp/x.img']] as TargetFioOptions };

  it('expands every combination once, iodepth innermost', () => {
    const points = expandMatrix(config.matrix);
    expect(points).toHaveLength(3 * 2 * 2 * 2 * 2);
    expect(new Set(points.map((p) => p.id)).size).toBe(points.length);
    expect(points.slice(0, 3).map((p) => p.id)).toEqual(['randread-4k-qd1-j1', 'randread-4k-qd8-j1', 'randread-4k-qd1-j1-verify']);
    expect(points.find((p) => p.rw === 'randrw')).toMatchObject({ id: 'randrw70-4k-qd1-j1', rwmixread: 70 });
    expect(points.find((p) => p.rw === 'randread')!.rwmixread).toBeUndefined();
  });

  const point = (id: string): MatrixPoint => expandMatrix(config.matrix).find((p) => p.id === id)!;

  it('writes time-based jobs with ramp, percentiles and disjoint regions per job', () => {
    const text = jobFile(point('randwrite-128k-qd8-j2'), target);
    const lines = text.split('\n');
    for (const line of ['ioengine=psync', 'filename=/tmp/x.img', 'rw=randwrite', 'bs=131072', 'iodepth=8', 'numjobs=2', 'size=33554432',
      'offset_increment=33554432', 'group_reporting=1', 'time_based=1', 'runtime=3', 'ramp_time=1', 'percentile_list=50:90:99:99.9', '[randwrite-128k-qd8-j2]']) {
      expect(lines).toContain(line);
    }
    expect(text).not.toMatch(/verify/);
    expect(jobFile(point('randread-4k-qd1-j1'), target)).not.toMatch(/offset_increment/);
    // fio takes a bare number as whole seconds: fractions get a unit.
    expect(jobFile({ ...point('randread-4k-qd1-j1'), runtimeSeconds: 2.5, rampSeconds: 0.5 }, target)).toMatch(/^runtime=2500ms\nramp_time=500ms$/m);
  });

  it('verifies over one pass of the region (size-based), whatever the workload', () => {
    const write = jobFile(point('randwrite-4k-qd8-j1-verify'), target).split('\n');
    expect(write).toEqual(expect.arrayContaining(['verify=crc32c', 'verify_fatal=1', 'verify_state_save=0', 'size=33554432']));
    expect(write).not.toContain('time_based=1');
    const read = jobFile(point('randread-4k-qd8-j1-verify'), target).split('\n');
    expect(read).toEqual(expect.arrayContaining(['verify=crc32c', 'verify_fatal=1']));
    expect(read).not.toContain('time_based=1');
    const mixed = jobFile(point('randrw70-4k-qd1-j1-verify'), target).split('\n');
    expect(mixed).toEqual(expect.arrayContaining(['rwmixread=70', 'verify=crc32c']));
    expect(mixed).not.toContain('time_based=1');
  });

  it('fills with verify headers in the point block size, or in 128k blocks without verify', () => {
    const verified = fillJobFile(point('randread-4k-qd1-j2-verify'), target).split('\n');
    expect(verified).toEqual(expect.arrayContaining(['rw=write', 'bs=4096', 'verify=crc32c', 'do_verify=0', 'verify_state_save=0', 'numjobs=2', 'offset_increment=33554432']));
    const plain = fillJobFile(point('randread-4k-qd1-j1'), target).split('\n');
    expect(plain).toContain('bs=131072');
    expect(plain.join('\n')).not.toMatch(/verify/);
  });
});

describe.skipIf(noFio !== undefined)('fio runs and their JSON', () => {
  const fileOptions = (file: string, engine = 'psync'): TargetFioOptions => [['ioengine', engine], ['filename', file]];
  const base = {
    rw: 'randwrite', rwmixread: undefined, bs: 4096, iodepth: 1, numjobs: 2, verify: false,
    runtimeSeconds: undefined, rampSeconds: 0, sizeBytes: 2 ** 20,
  } as const;

  it('parses a real size-based run: every block of both jobs, latency percentiles, fio CPU', async () => {
    const file = path.join(dir, 'parse.img');
    const p: MatrixPoint = { ...base, id: 'randwrite-4k-qd1-j2' };
    writeFileSync(path.join(dir, 'parse.fio'), jobFile(p, { name: 'f', options: fileOptions(file) }));
    const run = await runFio({ fio: 'fio', jobPath: path.join(dir, 'parse.fio'), jsonPath: path.join(dir, 'parse.json') });
    expect(run.exitCode).toBe(0);
    const job = run.output!.jobs[0]!;
    expect(run.output!.jobs).toHaveLength(1); // group_reporting folds the two jobs into one entry
    expect(job.jobname).toBe('randwrite-4k-qd1-j2');
    expect(job.error).toBe(0);
    expect(job.write.ios).toBe((2 * 2 ** 20) / 4096);
    expect(job.read.ios).toBe(0);
    expect(job.write.iops).toBeGreaterThan(0);
    expect(job.write.bytesPerSecond).toBeGreaterThan(0);
    const lat = job.write.clatUs;
    expect(lat.p50).toBeGreaterThan(0);
    expect(lat.p50).toBeLessThanOrEqual(lat.p99);
    expect(lat.p99).toBeLessThanOrEqual(lat.p999);
    // fio's percentiles are histogram bucket values (64 per power of two): at most ~1.6 % above the true value.
    expect(lat.p999).toBeLessThanOrEqual(lat.max * 1.02);
    // fio's CPU is percent of a core per job; 1 MiB of psync I/O may be too short for a clock tick.
    expect(job.usrCpuPercent + job.sysCpuPercent).toBeGreaterThanOrEqual(0);
    expect(job.usrCpuPercent + job.sysCpuPercent).toBeLessThanOrEqual(100);
    expect(run.output!.version).toMatch(/^fio-\d/);
    expect(Math.abs(run.output!.timestampMs - run.endedMs)).toBeLessThan(5000);
  });

  it('keeps the notices fio prints ahead of the JSON document', async () => {
    // A time-based verifying write without a backlog: fio warns that its verify phase will never start.
    const jobPath = path.join(dir, 'notice.fio');
    writeFileSync(jobPath, `[n]\nioengine=psync\nfilename=${path.join(dir, 'notice.img')}\nsize=1m\nrw=write\nbs=4k\nverify=crc32c\ntime_based=1\nruntime=300ms\n`);
    const run = await runFio({ fio: 'fio', jobPath, jsonPath: path.join(dir, 'notice.json') });
    expect(run.output!.notices.join('\n')).toMatch(/verification read phase will never start/);
    expect(run.output!.jobs[0]!.write.ios).toBeGreaterThan(0);
  });

  it('rejects output that is not fio JSON with a precise error', () => {
    expect(() => parseFioOutput('fio: engine libfoo not loadable\n')).toThrow(new FioOutputError('fio output has no JSON document: fio: engine libfoo not loadable'));
    expect(() => parseFioOutput('{"jobs": 3}')).toThrow(/jobs is missing/);
    expect(() => parseFioOutput('{"timestamp_ms": 1, "jobs": [{"jobname": "x"}]}')).toThrow(/jobs\[0\]\.error is missing/);
    expect(() => parseFioOutput('{ "jobs": [')).toThrow(/not valid JSON/);
    expect(() => parseFioOutput('{"timestamp_ms": 1, "jobs": [null]}')).toThrow(new FioOutputError('fio JSON: jobs[0] is not an object'));
  });

  it('verify catches data that changed after it was written', async () => {
    const file = path.join(dir, 'corrupt.img');
    const target = { name: 'f', options: fileOptions(file) };
    const p: MatrixPoint = { ...base, id: 'randread-4k-qd1-j1-verify', rw: 'randread', numjobs: 1, verify: true };
    writeFileSync(path.join(dir, 'fill.fio'), fillJobFile(p, target));
    expect((await runFio({ fio: 'fio', jobPath: path.join(dir, 'fill.fio'), jsonPath: path.join(dir, 'fill.json') })).exitCode).toBe(0);
    writeFileSync(path.join(dir, 'read.fio'), jobFile(p, target));
    const clean = await runFio({ fio: 'fio', jobPath: path.join(dir, 'read.fio'), jsonPath: path.join(dir, 'read.json') });
    expect(clean.output!.jobs[0]).toMatchObject({ error: 0 });
    expect(clean.output!.jobs[0]!.read.ios).toBe(256);

    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.from('not what fio wrote'), 0, 18, 123 * 4096 + 100); // inside block 123's data
    closeSync(fd);
    const corrupted = await runFio({ fio: 'fio', jobPath: path.join(dir, 'read.fio'), jsonPath: path.join(dir, 'read2.json') });
    expect(corrupted.exitCode).not.toBe(0);
    expect(corrupted.output?.jobs[0]?.error).toBe(84); // EILSEQ: verify failure
    expect(corrupted.stderr).toMatch(/verify|crc32c/i);
  });

  it('samples a process CPU over a window', async () => {
    // The child burns a fixed 0.4 s of its own CPU time, however busy the machine is (a wall-clock loop would get
    // only its share of a loaded machine).
    const child = spawn(process.execPath, ['-e', 'while (process.cpuUsage().user + process.cpuUsage().system < 400_000) {}']);
    await new Promise((resolve) => child.once('spawn', resolve));
    const sampler = new CpuSampler(child.pid!, 50);
    const start = Date.now();
    await new Promise((resolve) => child.once('exit', resolve));
    sampler.stop();
    // The 0.4 s of CPU, less what the child spent before the first sample (node's own start-up is also CPU).
    const seconds = sampler.secondsBetween(start, Date.now())!;
    expect(seconds).toBeGreaterThan(0.2);
    expect(seconds).toBeLessThan(1.5);
    expect(sampler.source).toBe('schedstat'); // nanosecond on-CPU time where the kernel has it (Debian's does)
    expect(processCpuSeconds(child.pid!)).toBeUndefined(); // gone: no crash, no number
    expect(processCpuSeconds(child.pid!, 'schedstat')).toBeUndefined();
  });
});

/** Minimal XML well-formedness check: balanced tags, quoted attributes, no raw '<' or stray '&' in text. */
describe('progress', () => {
  const capture = (isTTY: boolean) => {
    const written: string[] = [];
    const stream = { isTTY, columns: 80, write: (chunk: string) => written.push(chunk) } as unknown as NodeJS.WriteStream;
    const { logger, lines } = memoryLogger();
    return { written, lines, progress: new Progress({ total: 4, estimateSeconds: 30, stream, logger }) };
  };

  it('redraws one line with a bar and ETA on a terminal', () => {
    const { written, lines, progress } = capture(true);
    progress.start('emu/randread-4k-qd1-j1');
    expect(written.at(-1)).toBe('\r\x1b[2K[........................] 0/4 ETA 2m00s  emu/randread-4k-qd1-j1');
    progress.finish('emu/randread-4k-qd1-j1', { iops: 1 });
    expect(written.at(-1)).toMatch(/^\r\x1b\[2K\[#{6}\.{18}\] 1\/4 ETA \d+s {2}emu\/randread-4k-qd1-j1$/);
    // Log lines land above the bar, which is drawn again under them.
    progress.sink().write('{"msg":"vfiod serve is listening"}\n');
    expect(written.at(-2)).toBe('\r\x1b[2K{"msg":"vfiod serve is listening"}\n');
    expect(written.at(-1)).toMatch(/^\r\x1b\[2K\[#{6}/);
    progress.end();
    expect(written.at(-1)).toBe('\r\x1b[2K');
    expect(lines).toEqual([]);
  });

  it('logs one structured line per point elsewhere', () => {
    const { written, lines, progress } = capture(false);
    progress.start('file/randwrite-4k-qd8-j1');
    progress.finish('file/randwrite-4k-qd8-j1', { iops: 1234 });
    expect(written).toEqual([]);
    expect(lines).toEqual([expect.objectContaining({ level: 'info', msg: 'point done', point: 'file/randwrite-4k-qd8-j1', n: 1, of: 4, iops: 1234, eta: expect.stringMatching(/^\d+s$/) })]);
    expect(formatDuration(59)).toBe('59s');
    expect(formatDuration(3725)).toBe('1h02m');
  });
});

describe('report and plots', () => {
  it('escapes names and stays well-formed with odd data', () => {
    const svg = svgDocument([
      { title: 'a <b> & "c"', xLabel: 'QD', yLabel: 'IOPS', xScale: 'log2', yScale: 'linear', series: [{ name: 'x&y', points: [{ x: 1, y: 10 }, { x: 32, y: 5e5 }] }] },
      { title: 'empty', xLabel: 'QD', yLabel: 'µs', xScale: 'log2', yScale: 'log10', series: [] },
      { title: 'one point', xLabel: 'QD', yLabel: 'µs', xScale: 'log2', yScale: 'log10', series: [{ name: 's', points: [{ x: 4, y: 0.5 }] }] },
    ]);
    assertWellFormedSvg(svg);
    expect(svg).toContain('a &lt;b&gt; &amp; &quot;c&quot;');
    expect(svg).toContain('no data');
  });
});

// ---- the CI smoke run ----
const built = existsSync(path.join(root, 'dist', 'cli', 'main.js'));
const engine = fioAvailable ? buildEngine() : undefined;
const smokeSkip = !fioAvailable
  ? noFio
  : !built
    ? 'dist/ is not built (npm test runs tsc first)'
    : !engine!.ok
      ? `the fio engine cannot be built: ${engine!.reason}`
      : undefined;
if (smokeSkip) console.warn(`bench-harness: smoke run skipped: ${smokeSkip}`);

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, 'bench', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe.skipIf(!built)('vfiod bench (CLI)', () => {
  it('refuses a bad config with exit 2 and every problem listed', async () => {
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, 'matrix: { iodepth: [256] }\ntargets: [{ name: g, type: in-guest }]\n');
    const result = await runCli(['--config', file]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${file}: invalid bench config:`);
    expect(result.stderr).toContain('matrix.iodepth[0]: 256 is not allowed; expected an integer from 1 to 128');
    expect(result.stderr).toContain('targets[0].exec: expected {command: [argv prefix, e.g. ssh, vm1]} or {qga: <QEMU guest agent unix socket>}, got undefined');
    expect(result.stderr).toContain("targets[0].device: expected the guest's block device as an absolute path such as /dev/nvme0n1");
    expect((await runCli([])).code).toBe(2);
    // Without a matrix section the defaults (256 MiB per job) are checked when they are about to run.
    const small = path.join(dir, 'small.yaml');
    writeFileSync(small, "targets: [{ name: e, type: emulation, namespace: 'memory:16M' }]\n");
    const full = await runCli(['--config', small, '--out', path.join(dir, 'small-out')]);
    expect(full.code).toBe(2);
    expect(full.stderr).toContain("matrix.size: 268435456 bytes x 1 jobs do not fit target 'e' (namespace memory:16M holds 16777216 bytes)");
    expect(existsSync(path.join(dir, 'small-out'))).toBe(false);
    expect((await runCli(['--config', path.join(dir, 'missing.yaml')])).stderr).toMatch(/missing\.yaml: invalid bench config:\n {2}- cannot read the file/);
  });
});

describe.skipIf(smokeSkip !== undefined)('an emulation target that does not listen in time', () => {
  it('is stopped and named as too slow, with the setting to raise', async () => {
    // An NVMe/TCP "target" that accepts and never answers: vfiod serve waits for it and does not listen.
    const silent = net.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const config = parseBenchConfig(`targets: [{ name: slow, type: emulation, namespace: 'nvme-tcp://127.0.0.1:${port}/nqn.2026-12.dev.vfiod:silent?nsid=1', start-timeout: 1 }]`, path.join(dir, 'slow.yaml'));
      const started = Date.now();
      await expect(startTarget(config.targets[0]!, { dir: path.join(dir, 'slow'), bytesNeeded: 4096, logger: memoryLogger().logger })).rejects.toThrow(
        /^target 'slow': vfiod serve did not listen within 1 s \(a slow host or namespace backend; raise the target's start-timeout\); stopped it/,
      );
      // It gave up at the deadline, not at some later timeout of its own.
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      silent.close();
    }
  });
});

describe.skipIf(smokeSkip !== undefined)('vfiod bench --smoke: vfiod serve + file baseline, verify on', () => {
  let out: string;
  let cli: { code: number | null; stdout: string; stderr: string };
  let results: BenchResults;
  const config = (file: string): string => `
name: ci-smoke
matrix: { rw: [randread], bs: [128k], iodepth: [32], runtime: 30s, size: 16M }
smoke: { rw: [randwrite, randread], bs: [4k], iodepth: [1, 8], runtime: 1s, ramp: 0, size: 8M, verify: true }
targets:
  - { name: emu, type: emulation, namespace: 'memory:32M', completion: irq, server-cpus: '0' }
  - { name: file, type: file, path: '${file}', ioengine: libaio, fio-cpus: '0' }
`;

  beforeAll(async () => {
    out = path.join(dir, 'smoke-out');
    const configPath = path.join(dir, 'smoke.yaml');
    writeFileSync(configPath, config(path.join(dir, 'baseline.img')));
    cli = await runCli(['--config', configPath, '--smoke', '--out', out, '--json']);
    if (!existsSync(path.join(out, 'results.json'))) throw new Error(`vfiod bench wrote no results (exit ${cli.code}): ${cli.stderr}`);
    results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as BenchResults;
  }, 400_000); // 8 points x 3 runs, verify on, on a busy 2-core machine

  it('runs every smoke point on both targets and exits 0', () => {
    expect(cli.stderr).not.toMatch(/"level":"(error|warn)"/);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout)).toEqual(results); // --json prints results.json
    expect(results.smoke).toBe(true);
    expect(results.targets.map((t) => [t.name, t.ok])).toEqual([['emu', true], ['file', true]]);
    expect(results.points.map((p) => `${p.target}/${p.point.id}`)).toEqual(
      ['emu', 'file'].flatMap((t) => ['randwrite-4k-qd1-j1-verify', 'randwrite-4k-qd8-j1-verify', 'randread-4k-qd1-j1-verify', 'randread-4k-qd8-j1-verify'].map((p) => `${t}/${p}`)),
    );
    expect(results.points.every((p) => p.ok)).toBe(true);
    // Progress: one structured line per point on stderr (not a terminal here).
    expect(cli.stderr.match(/"msg":"point done"/g)).toHaveLength(8);
  });

  it('records the machine and the vfiod version', () => {
    expect(results.machine.cores).toBe(os.cpus().length);
    expect(results.machine.fio).toMatch(/^fio-/);
    expect(results.machine.kernel).toContain(os.release());
    expect(results.machine.vfiod_commit).toMatch(/^[0-9a-f]{40}$/);
    expect(results.config.matrix).toMatchObject({ runtimeSeconds: 1, sizeBytes: 8 * 2 ** 20 });
  });

  it('fio did I/O with verify on and found no mismatch', () => {
    for (const p of results.points) {
      const label = `${p.target}/${p.point.id}`;
      expect(p.verify, label).toMatchObject({ enabled: true, method: 'crc32c', errors: 0 });
      expect(p.iops!, label).toBeGreaterThan(0);
      expect(p.lat_us!.p50, label).toBeGreaterThan(0);
      if (p.point.rw === 'randwrite') {
        // One pass over the 8 MiB region, then every written block read back and checked.
        expect(p.write!.ios, label).toBe((8 * 2 ** 20) / 4096);
        expect(p.read!.ios, label).toBe(p.write!.ios);
        expect(p.verify!.verified_ios, label).toBe(p.write!.ios);
      } else {
        // One verifying pass over the 8 MiB region, filled first with verify headers.
        expect(p.read!.ios, label).toBe((8 * 2 ** 20) / 4096);
        expect(p.verify!.verified_ios, label).toBe(p.read!.ios);
        expect(p.files.fill_job, label).toBeDefined();
      }
    }
  });

  it('measures vfiod serve CPU per I/O (and none for the file baseline)', () => {
    for (const p of results.points) {
      if (p.target === 'emu') {
        expect(p.server_cpu!.us_per_io, p.point.id).toBeGreaterThan(0);
        expect(p.server_cpu!.seconds).toBeGreaterThan(0);
        expect(p.server_cpu!.source).toBe('schedstat');
        // Per-thread split over the whole fio run (the window is part of it): adds up to at least the window's CPU.
        const threads = Object.values(p.server_cpu!.threads_whole_run_s);
        expect(threads.length).toBeGreaterThan(0);
        expect(threads.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(p.server_cpu!.seconds - 0.02);
      } else {
        expect(p.server_cpu).toBeUndefined();
      }
      expect(p.fio_cpu!.us_per_io).toBeGreaterThan(0);
      expect(p.iops_per_core!).toBeGreaterThan(0);
    }
    expect(results.targets[0]!.info!['server_command']).toMatch(/^taskset -c 0 node bin\/vfiod\.js serve --socket .* --namespace memory:32M --no-config$/);
    expect(results.targets[0]!.info!['server_cpus_allowed']).toBe('0'); // the kernel's view of the pinned server
  });

  it('keeps the job files that reproduce each point', () => {
    for (const p of results.points) {
      const job = readFileSync(path.join(out, p.files.job), 'utf8');
      expect(job).toContain(`[${p.point.id}]`);
      expect(job).toContain('verify=crc32c');
      expect(existsSync(path.join(out, p.files.fio_json))).toBe(true);
      if (p.target === 'emu') {
        expect(job).toMatch(/^ioengine=external:.*vfiod-fio\.so$/m);
        expect(job).toMatch(/^vfiod_completion=irq$/m);
      }
      else expect(job).toMatch(/^ioengine=libaio\n(.*\n)*cpus_allowed=0\ncpus_allowed_policy=split$/m);
    }
    // fio runs in the jobs directory and is told not to save verify state: nothing else lands there (or in the cwd).
    expect(readdirSync(path.join(out, 'jobs')).filter((f) => !/\.(fio|json)$/.test(f))).toEqual([]);
  });

  it('writes report.md: a table per workload with ratios against the file baseline', () => {
    const report = readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(report).toBe(renderReport(results));
    expect(referenceTarget(results)).toBe('file');
    expect(workloadTables(results).map((t) => t.title)).toEqual(['randwrite, 4k, 1 job, verify', 'randread, 4k, 1 job, verify']);
    expect(report).toContain('## randwrite, 4k, 1 job, verify');
    expect(report).toContain('| QD | target | IOPS | MB/s | mean µs | p50 µs | p99 µs | p99.9 µs | server CPU µs/IO | fio CPU µs/IO | IOPS/core | IOPS ÷ file | p50 ÷ file | p99 ÷ file | CPU/IO ÷ file |');
    const rows = report.split('\n').filter((l) => /^\| (1|8) \| (emu|file) \|/.test(l));
    expect(rows).toHaveLength(8);
    for (const row of rows.filter((r) => r.includes('| file |'))) expect(row).toMatch(/\| 1\.00× \| 1\.00× \| 1\.00× \| 1\.00× \|$/);
    for (const row of rows.filter((r) => r.includes('| emu |'))) expect(row).toMatch(/\| \d+\.\d\d× \| \d+\.\d\d× \| \d+\.\d\d× \| \d+\.\d\d× \|$/);
    expect(report).toMatch(/Verify \(crc32c\): [\d,]+ reads checked, no mismatches\./);
  });

  it('draws IOPS, p99, p99.9 and CPU per I/O vs queue depth per workload, one line per target', () => {
    expect(readdirSync(path.join(out, 'plots')).sort()).toEqual(['randread-4k-j1-verify.svg', 'randwrite-4k-j1-verify.svg']);
    for (const file of readdirSync(path.join(out, 'plots'))) {
      const svg = readFileSync(path.join(out, 'plots', file), 'utf8');
      assertWellFormedSvg(svg);
      expect(svg.match(/<polyline /g)).toHaveLength(8); // 4 charts x 2 targets
      expect(svg).toContain('IOPS — ');
      expect(svg).toContain('p99 latency — ');
      expect(svg).toContain('p99.9 latency — ');
      expect(svg).toContain('host CPU per I/O — ');
      // 3 runs per point: an error bar (min–max) at each of the 2 queue depths, per target and chart.
      expect(svg.match(/<g class="error-bar"/g)).toHaveLength(16);
    }
  });
});
