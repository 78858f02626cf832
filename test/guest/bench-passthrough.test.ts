/**
 * `vfiod bench` with a passthrough target, for real: in the QEMU VFIO guest (testbed/vfio-guest.ts) an NVMe VF
 * on no driver is prepared by the harness through the passthrough manager, fio drives it with the project's engine
 * over VFIO next to an emulated controller (`vfiod serve` in the guest, engine over vfio-user), verify on, and the
 * report compares emulation against passthrough. Guest side: testbed/vfio-guest/guest-bench.sh.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanupVfioGuest, runVfioGuest, vfioGuestUnavailableReason, type VfioGuestRun } from '../../testbed/vfio-guest.js';
import { buildEngine } from '../../src/bench/engine.js';
import type { BenchResults } from '../../src/bench/results.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const built = existsSync(path.join(root, 'dist', 'cli', 'main.js'));

function skipReason(): string | undefined {
  if (!built) return 'dist/ is not built (npm test runs tsc first)';
  const guest = vfioGuestUnavailableReason();
  if (guest) return guest;
  const engine = buildEngine();
  return engine.ok ? undefined : `the fio engine cannot be built: ${engine.reason}`;
}
const reason = skipReason();
if (reason) console.warn(`bench-passthrough: skipped: ${reason}`);

describe.skipIf(reason !== undefined)('vfiod bench: passthrough VF vs emulation in the QEMU guest', () => {
  let run: VfioGuestRun | undefined;
  let summary: Record<string, unknown> = {};
  let results: BenchResults | undefined;
  let out = '';
  const file = (name: string): string => path.join(run!.workDir, name);
  const text = (name: string): string => (existsSync(file(name)) ? readFileSync(file(name), 'utf8') : '');

  beforeAll(async () => {
    run = await runVfioGuest({ script: path.join(root, 'testbed', 'vfio-guest', 'guest-bench.sh'), timeoutMs: 420_000 });
    summary = run.results ?? {};
    out = file('bench');
    if (existsSync(path.join(out, 'results.json'))) results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as BenchResults;
    console.log(`bench-passthrough: QEMU wall ${(run.wallMs / 1000).toFixed(1)} s`);
    if (summary['benchStatus'] !== 0) {
      console.log(`guest summary: ${JSON.stringify(summary)}\nbench stderr:\n${text('bench.stderr').slice(-4000)}`);
      console.log(`console (tail):\n${run.console.split('\n').slice(-40).join('\n')}`);
    }
  }, 480_000);

  afterAll(() => cleanupVfioGuest(run));

  it('ran every point on the VF and on vfiod serve', () => {
    expect(summary['ok'], JSON.stringify(summary)).toBe(true);
    expect(summary['benchStatus'], text('bench.stderr').slice(-2000)).toBe(0);
    expect(results!.targets.map((t) => [t.name, t.type, t.ok])).toEqual([['vf', 'passthrough', true], ['emu', 'emulation', true]]);
    expect(results!.points).toHaveLength(8);
    expect(results!.points.every((p) => p.ok)).toBe(true);
  });

  it('prepared the VF with the passthrough manager and gave it back', () => {
    expect(summary['driverBefore']).toBe('');
    const prepare = results!.targets[0]!.info!['prepare'] as { vfio_group: string | null };
    expect(prepare.vfio_group).toMatch(/^\/dev\/vfio\/\d+$/);
    expect(summary['driverAfter']).toBe(''); // released: back to no driver, as it was
  });

  it('drove the VF over VFIO with verify on and no mismatches', () => {
    for (const p of results!.points) {
      const label = `${p.target}/${p.point.id}`;
      expect(p.verify, label).toMatchObject({ enabled: true, errors: 0 });
      expect(p.verify!.verified_ios, label).toBe((4 << 20) / 4096); // one pass over 4 MiB, every block checked
      expect(p.iops!, label).toBeGreaterThan(0);
      const job = readFileSync(path.join(out, p.files.job), 'utf8');
      if (p.target === 'vf') expect(job).toMatch(new RegExp(`^vfiod_transport=vfio\\nvfiod_bdf=${String(summary['vf'])}$`, 'm'));
      else expect(job).toMatch(/^vfiod_transport=vfio-user$/m);
    }
    for (const p of results!.points.filter((q) => q.target === 'emu')) expect(p.server_cpu!.us_per_io).toBeGreaterThan(0);
  });

  it('reports emulation against passthrough', () => {
    const report = readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(report).toContain('**vf** (passthrough: ');
    expect(report).toContain('— reference for the ratios');
    expect(report).toContain('| IOPS ÷ vf | p50 ÷ vf | p99 ÷ vf | CPU/IO ÷ vf |');
    const emuRows = report.split('\n').filter((l) => /^\| (1|8) \| emu \|/.test(l));
    expect(emuRows).toHaveLength(4);
    for (const row of emuRows) expect(row).toMatch(/\| \d+\.\d\d× \| \d+\.\d\d× \| \d+\.\d\d× \| \d+\.\d\d× \|$/);
  });
});
