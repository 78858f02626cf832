/** `vfiod bench`: options, then runBench; the process exit status says whether every point succeeded. */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { BenchConfigError, loadBenchConfig } from './config.js';
import { runBench } from './run.js';
import { applyLogOptions } from '../util/log.js';

export const BENCH_USAGE = `Usage: vfiod bench --config <bench.yaml> [--out <dir>] [--smoke] [--json]

Runs fio over a matrix of workloads (rw, block size, queue depth, jobs, verify) against each target in the
config — emulation (a vfiod serve it starts), passthrough (a VFIO device), file (a file or block device),
in-guest (fio inside a VM, through the QEMU guest agent or a command such as ssh) — and writes
results.json, report.md, SVG plots and every fio job file into the output directory.
Config reference and examples: docs/benchmarks.md, bench/examples/*.yaml.

Options:
  --config <file>   bench config (YAML)                                            [required]
  --out <dir>       output directory (default bench/results/bench-<config name>-<time>)
  --smoke           shrink the matrix to seconds (the config's 'smoke:' section, or 1 s per point)
  --json            print results.json on stdout instead of report.md
  --log-level <l>   debug, info, warn or error (default info)
  --log-format <f>  text or json (default: text on a terminal, json otherwise)
  -h, --help        show this help

Each point runs 'repetitions' times (matrix key, default 3): the report gives median, min and max.
Ctrl-C (SIGINT) stops the run and writes the report of the points that finished; a second one quits at once.
The first run with an emulation or passthrough target may fetch fio's source to build the fio engine; it says so
up front (avoid it: 'npm run bench:fio-engine' once, or 'engine:' in the config).

Exit status: 0 every point ran; 1 some point or target failed (see report.md); 2 bad options or config;
130 interrupted (the report holds what finished).
`;

/** The shell's code for a process ended by SIGINT: the run was interrupted. */
const INTERRUPTED_EXIT = 130;

export async function runBenchCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      allowPositionals: false,
      options: {
        config: { type: 'string' },
        out: { type: 'string' },
        smoke: { type: 'boolean' },
        json: { type: 'boolean' },
        'log-level': { type: 'string' },
        'log-format': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
    applyLogOptions(values['log-level'], values['log-format']);
  } catch (error) {
    process.stderr.write(`vfiod bench: ${(error as Error).message}\n${BENCH_USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(BENCH_USAGE);
    return 0;
  }
  if (!values.config) {
    process.stderr.write(`vfiod bench: --config <bench.yaml> is required\n${BENCH_USAGE}`);
    return 2;
  }
  let config;
  try {
    config = loadBenchConfig(values.config);
  } catch (error) {
    if (error instanceof BenchConfigError) {
      process.stderr.write(`vfiod bench: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outDir = values.out ?? path.join('bench', 'results', `bench-${config.name}${values.smoke ? '-smoke' : ''}-${stamp}`);
  let results;
  try {
    results = await runBench(config, { outDir, smoke: values.smoke ?? false });
  } catch (error) {
    if (error instanceof BenchConfigError) {
      process.stderr.write(`vfiod bench: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  if (values.json) process.stdout.write(readFileSync(path.join(outDir, 'results.json'), 'utf8'));
  else process.stdout.write(readFileSync(path.join(outDir, 'report.md'), 'utf8'));
  const failed = results.points.filter((p) => !p.ok).length;
  if (results.interrupted) {
    const { runs_done: done, runs_planned: planned } = results.interrupted;
    process.stderr.write(`vfiod bench: interrupted after ${done} of ${planned} points; the report of those is in ${path.resolve(outDir)}\n`);
    return INTERRUPTED_EXIT;
  }
  process.stderr.write(`vfiod bench: ${results.points.length - failed}/${results.points.length} points ok; results in ${path.resolve(outDir)}\n`);
  return failed > 0 || results.targets.some((t) => !t.ok) ? 1 : 0;
}
