/**
 * npm run bench:micro [-- --max-time <seconds per case>] [--only <substring of a group name>] [--out <file.json>]
 *
 * Micro-benchmarks of the hot paths (vfio-user codec, SQE fetch/decode, PRP/SGL walks, NVMe/TCP PDU headers), each
 * group next to a same-run reference copy of the same bytes. Prints a Markdown table and writes
 * bench/results/micro-<time>.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { groups } from './groups.js';
import { runGroup, type CaseResult } from './harness.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: { 'max-time': { type: 'string' }, only: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
});
if (values.help) {
  process.stdout.write('usage: npm run bench:micro -- [--max-time <s per case, default 1>] [--only <group substring>] [--out <file.json>]\n');
  process.exit(0);
}
const maxTime = Number(values['max-time'] ?? 1);
if (!(maxTime > 0)) {
  process.stderr.write(`bench:micro: --max-time must be a positive number of seconds, not '${values['max-time']}'\n`);
  process.exit(2);
}

const started = new Date();
const selected = groups().filter((g) => !values.only || g.name.includes(values.only));
if (selected.length === 0) {
  process.stderr.write(`bench:micro: no group matches '${values.only}'\n`);
  process.exit(2);
}
const results: CaseResult[] = [];
for (const [index, group] of selected.entries()) {
  process.stderr.write(`[${index + 1}/${selected.length}] ${group.name}\n`);
  results.push(...runGroup(group, maxTime, (line) => process.stderr.write(line + '\n')));
}

const lines = [
  `| group | case | ops/s (best sample) | ns/op | mean ops/s | ± % | vs reference |`,
  `|---|---|---:|---:|---:|---:|---:|`,
];
for (const r of results) {
  lines.push(
    `| ${r.reference ? r.group : ''} | ${r.name} | ${r.opsPerSecond.toLocaleString('en-US')} | ${r.nsPerOp} | ` +
      `${r.meanOpsPerSecond.toLocaleString('en-US')} | ${r.rme.toFixed(1)} | ` +
      `${r.reference ? '1.00' : r.ratioToReference.toFixed(2)} |`,
  );
}
process.stdout.write(lines.join('\n') + '\n');

const out = values.out ?? path.join(here, '..', 'results', `micro-${started.toISOString().replace(/[:.]/g, '-')}.json`);
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({
  tool: 'bench:micro', started: started.toISOString(), max_time_s: maxTime,
  machine: { cpu_model: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version, loadavg: os.loadavg() },
  results,
}, null, 2) + '\n');
process.stderr.write(`wrote ${out}\n`);
