/**
 * upgrade-soak: the pause a real guest sees when `vfiod serve` is live-upgraded, or when its data plane is killed
 * under `--crash-recovery` (docs/restart.md, issue 12 §5). A benchmark, not a test: it asserts nothing, prints a
 * report and writes bench/results/upgrade-soak-<time>.json (crash-soak-<time>.json with --crash).
 *
 *   npm run bench:upgrade-soak -- [--upgrades 10] [--crash] [--modes interrupt,polled] [--memory 4G] [--cpus 2] [--out <file.json>]
 *
 * --crash: `vfiod serve --crash-recovery`, and each "upgrade" is a SIGKILL of the data plane; the vfiod pause is then
 * from the kill to the next data plane's "recovered" line, and the successor's time is its own recovery measure.
 *
 * Per doorbell mode: the set-up of test/guest/live-upgrade.test.ts (testbed/upgrade-guest.ts): one `vfiod serve`
 * with a 1 GiB file namespace, one Linux VM (QEMU vfio-user-pci, TCG) running fio randrw with verify=crc32c and
 * verify_fatal=1 (one job per vCPU, iodepth 16, 4 KiB/64 KiB/256 KiB) and a writer of flushed numbered blocks,
 * while vfiod is replaced --upgrades times by `vfiod serve --take-over`, each time after the guest completed 300
 * more I/Os and flushed 5 more blocks with the successor.
 *
 * What it reports, per upgrade and as p50/p99/max over all upgrades of a mode:
 *   guest pause    the longest fio I/O whose lifetime overlapped the hand-over (from the running process's
 *                  quiesce to the successor serving, mapped to the guest's clock: the offset is measured through the
 *                  guest agent, its uncertainty is widened into the window). This is what the guest saw.
 *   control        the same measure for a window of the same length half way between two upgrades: what the
 *                  machine's own noise gives (under TCG on a shared host the slowest of a few hundred I/Os is
 *                  slow without any upgrade). The guest pause minus this is what the upgrade added.
 *   vfiod pause    quiesce to serving as the host saw the two log lines arrive.
 *   successor      the successor's own measure, hello to serving.
 * next to the I/O latency away from every upgrade (p50/p99/max: the machine's own noise, TCG on a shared host), and
 * errors: fio's exit status and job errors, verify failures, NVMe messages in the guest's kernel log, a dropped
 * vfio-user connection (any "client connected"/"client disconnected" after the first connect), warnings in any
 * vfiod log, flushed blocks missing from the backing file. The machine's load average and core count go with it.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UpgradeGuest, type DoorbellMode } from '../../testbed/upgrade-guest.js';
import { vfioUserVmUnavailableReason } from '../../testbed/vfio-user-vm.js';

const here = path.dirname(fileURLToPath(import.meta.url));

const { values } = parseArgs({
  options: {
    upgrades: { type: 'string', default: '10' },
    crash: { type: 'boolean', default: false },
    modes: { type: 'string', default: 'interrupt,polled' },
    memory: { type: 'string', default: '4G' },
    cpus: { type: 'string', default: '2' },
    out: { type: 'string' },
  },
});
const upgrades = Number(values.upgrades);
const modes = values.modes.split(',').map((m) => m.trim()) as DoorbellMode[];
for (const mode of modes) if (mode !== 'interrupt' && mode !== 'polled') throw new Error(`--modes: '${mode}' is not interrupt or polled`);
if (!Number.isInteger(upgrades) || upgrades < 1) throw new Error(`--upgrades must be a positive integer, not '${values.upgrades}'`);

interface ModeResult {
  mode: DoorbellMode;
  upgrades: Array<{ index: number; guestPauseMs: number; overlappingIos: number; controlMs: number | undefined; vfiodPauseMs: number; successorMs: number; quiesceMs: number }>;
  guestPause: Stats;
  /** The same measure over control windows without an upgrade: what noise alone gives. */
  control: Stats;
  vfiodPause: Stats;
  baseline: { ios: number; p50: number; p99: number; max: number };
  fio: { exitCode: number; jobErrors: number[]; ios: number; maxLatencyMs: number; stderr: string };
  errors: string[];
  flushedBlocks: number;
  clock: { offsetMs: number; uncertaintyMs: number };
  bootMs: number;
  wallMs: number;
}

interface Stats {
  p50: number;
  p99: number;
  max: number;
}

function stats(values: number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  // Nearest rank: with 10 samples p99 is the largest.
  const rank = (p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? 0;
  return { p50: rank(0.5), p99: rank(0.99), max: sorted[sorted.length - 1] ?? 0 };
}

const loadAverage = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

async function soak(mode: DoorbellMode): Promise<ModeResult> {
  const started = Date.now();
  const crash = values.crash === true;
  const bed = await UpgradeGuest.start({ name: `soak-${mode}`, mode, memory: values.memory, cpus: Number(values.cpus), crashRecovery: crash });
  const errors: string[] = [];
  try {
    await bed.startLoad();
    for (let i = 0; i < upgrades; i++) {
      try {
        const record = crash ? await bed.crash() : await bed.upgrade();
        process.stderr.write(`  ${mode} ${crash ? 'crash' : 'upgrade'} ${record.index}/${upgrades}: vfiod paused ${record.servingAt - record.quiescingAt} ms\n`);
      } catch (error) {
        errors.push(`${crash ? 'crash' : 'upgrade'} ${i + 1}: ${(error as Error).message.split('\n')[0]}`);
        process.stderr.write(`  ${mode} ${crash ? 'crash' : 'upgrade'} ${i + 1} failed: ${(error as Error).message}\n`);
        break;
      }
      await bed.progress(300, 5);
      // Crashes at least 3 s apart: faster is a crash loop, which the holder meets with a back-off (docs/restart.md).
      if (crash) await new Promise((resolve) => setTimeout(resolve, Math.max(0, 3000 - (Date.now() - bed.upgrades.at(-1)!.spawnedAt))));
    }
    const load = await bed.stopLoad();
    const pauses = bed.pauses(load);
    if (load.code !== 0) errors.push(`fio exited ${load.code}`);
    for (const job of load.jobs) if (job.error !== 0) errors.push(`fio job ${job.jobname}: error ${job.error}`);
    if (/verify|bad magic|crc32c/i.test(load.stderr)) errors.push(`fio: ${load.stderr.trim().split('\n')[0]}`);
    if (load.writerError) errors.push(`flushed-block writer: ${load.writerError}`);
    for (const line of await bed.kernelProblems()) errors.push(`guest kernel: ${line}`);
    const connects = bed.serves.flatMap((s) => s.logged('client connected')).length;
    if (connects !== 1) errors.push(`vfio-user: ${connects} client connects (1 expected: the connection dropped)`);
    for (const s of bed.serves) {
      for (const l of s.logged('client disconnected')) errors.push(`${s.name}: client disconnected ${JSON.stringify(l)}`);
      for (const l of s.problems()) {
        if (l['msg'] === 'DMA_MAP without a file descriptor: this memory is not shared with vfiod and cannot be used for DMA') continue;
        if (l['msg'] === 'request failed' && l['command'] === 'DMA_MAP' && l['errno'] === 'ENOTSUP') continue;
        // What --crash does, as the holder reports it.
        if (crash && l['msg'] === 'data plane exited' && l['signal'] === 'SIGKILL') continue;
        if (crash && l['msg'] === 'controller connection lost without detach; holding its fds for the next data plane') continue;
        errors.push(`${s.name}: ${l['level'] ?? ''} ${String(l['msg'] ?? l['raw'])}`);
      }
    }
    const length = load.flushedBlocks * 4096;
    if (!bed.readBacking(bed.marksAt, length).equals(bed.marks.subarray(0, length))) errors.push(`flushed blocks missing from the backing file`);
    const rows = pauses.perUpgrade.map((p) => {
      const u = bed.upgrades.find((r) => r.index === p.index)!;
      return {
        index: p.index, guestPauseMs: round(p.longestIoMs), overlappingIos: p.ios, controlMs: p.controlLongestIoMs === undefined ? undefined : round(p.controlLongestIoMs),
        vfiodPauseMs: p.serverPauseMs, successorMs: u.successorMillis, quiesceMs: u.quiesceMillis,
      };
    });
    return {
      mode,
      upgrades: rows,
      guestPause: stats(rows.map((r) => r.guestPauseMs)),
      control: stats(rows.flatMap((r) => (r.controlMs === undefined ? [] : [r.controlMs]))),
      vfiodPause: stats(rows.map((r) => r.vfiodPauseMs)),
      baseline: { ios: pauses.baseline.ios, p50: round(pauses.baseline.p50), p99: round(pauses.baseline.p99), max: round(pauses.baseline.max) },
      fio: {
        exitCode: load.code,
        jobErrors: load.jobs.map((j) => j.error),
        ios: load.jobs.reduce((sum, j) => sum + j.read.total_ios + j.write.total_ios, 0),
        maxLatencyMs: round(Math.max(0, ...load.jobs.flatMap((j) => [j.read.lat_ns.max, j.write.lat_ns.max])) / 1e6),
        stderr: load.stderr,
      },
      errors,
      flushedBlocks: load.flushedBlocks,
      clock: { offsetMs: round(pauses.clockOffsetMs), uncertaintyMs: round(pauses.clockUncertaintyMs) },
      bootMs: bed.vm.bootMs,
      wallMs: Date.now() - started,
    };
  } finally {
    await bed.stop();
  }
}

const round = (n: number): number => Math.round(n * 10) / 10;

async function main(): Promise<void> {
  const unavailable = vfioUserVmUnavailableReason();
  if (unavailable) {
    process.stderr.write(`upgrade-soak: cannot run: ${unavailable}\n`);
    process.exitCode = 1;
    return;
  }
  const machine = { cpus: os.cpus().length, loadBefore: loadAverage(), loadAfter: '', node: process.version };
  const results: ModeResult[] = [];
  for (const mode of modes) {
    process.stderr.write(`upgrade-soak: ${mode} doorbells, ${upgrades} upgrades (load average ${loadAverage()})\n`);
    results.push(await soak(mode));
  }
  machine.loadAfter = loadAverage();
  const report = { when: new Date().toISOString(), disruption: values.crash ? 'SIGKILL of the data plane' : 'live upgrade', upgradesPerMode: upgrades, guest: { memory: values.memory, cpus: Number(values.cpus) }, machine, results };
  const out = values.out ?? path.join(here, '..', 'results', `${values.crash ? 'crash' : 'upgrade'}-soak-${report.when.replace(/[:.]/g, '-')}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(report, null, 2));

  const lines = [
    `upgrade-soak: ${upgrades} ${values.crash ? 'SIGKILLs of the data plane' : 'live upgrades'} per mode, guest ${values.memory} / ${values.cpus} vCPUs (TCG); host ${machine.cpus} cores, load average ${machine.loadBefore} before, ${machine.loadAfter} after`,
    '',
    '| mode | guest pause p50 / p99 / max (ms) | control windows p50 / p99 / max (ms) | vfiod pause p50 / p99 / max (ms) | I/O away from upgrades p50 / p99 / max (ms) | fio I/Os | errors |',
    '|---|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.mode} | ${r.guestPause.p50} / ${r.guestPause.p99} / ${r.guestPause.max} | ${r.control.p50} / ${r.control.p99} / ${r.control.max} | ` +
      `${r.vfiodPause.p50} / ${r.vfiodPause.p99} / ${r.vfiodPause.max} | ${r.baseline.p50} / ${r.baseline.p99} / ${r.baseline.max} | ${r.fio.ios} | ${r.errors.length} |`),
    '',
    ...results.flatMap((r) => [
      `${r.mode}: per upgrade, guest pause / control window / vfiod pause (ms): ${r.upgrades.map((u) => `${u.guestPauseMs}/${u.controlMs ?? '-'}/${u.vfiodPauseMs}`).join(', ')}`,
      ...r.errors.map((e) => `  error: ${e}`),
    ]),
    '',
    `written to ${out}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`upgrade-soak: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
