/**
 * Crash recovery with a real guest (issue 12 §2, §5; docs/restart.md): a Linux VM (QEMU 11.1 vfio-user-pci, q35,
 * 4 GiB of memfd RAM, 2 vCPUs) runs fio randrw with verify=crc32c and verify_fatal=1 on a file namespace served by
 * `vfiod serve --crash-recovery`, while the test SIGKILLs the data plane three times. Once in interrupt mode and once
 * with --poll; one boot per mode serves every check:
 *
 *   - fio finishes with exit 0, no error in any job, no verify failure;
 *   - the guest's kernel logs no NVMe error, timeout, abort or reset;
 *   - the vfio-user connection never dropped: one `client connected`, every later data plane recovered that client;
 *   - every block the guest wrote and saw flushed, before and after each crash, is in the backing file;
 *   - the longest I/O across each crash is reported (fio's per-I/O latency log) and must stay far from the guest's
 *     30 s timeout; the goal (p99 <= 1 s) is measured by bench/upgrade-soak --crash (docs/benchmarks.md).
 * Skips, with the reason, when QEMU >= 10.1 or a guest kernel cannot be had (testbed/vfio-user-vm.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vfioUserVmUnavailableReason } from '../../testbed/vfio-user-vm.js';
import { UpgradeGuest, type DoorbellMode, type LoadResult, type PauseReport } from '../../testbed/upgrade-guest.js';

const unavailable = vfioUserVmUnavailableReason();
if (unavailable) console.warn(`guest/crash-recovery: skipped: ${unavailable}`);

const CRASHES = 3;
const BOOT_MS = 600_000;
const STEP_MS = 900_000;
const PAUSE_LIMIT_MS = 10_000;

function crashesUnderFio(mode: DoorbellMode): void {
  describe.skipIf(unavailable)(`${mode} doorbells: a Linux guest under fio verify through ${CRASHES} SIGKILLs of the data plane`, () => {
    let bed: UpgradeGuest;
    let load: LoadResult;
    let pauses: PauseReport;
    const started = Date.now();

    beforeAll(async () => {
      bed = await UpgradeGuest.start({ name: `crash-${mode}`, mode, memory: '4G', cpus: 2, bootTimeoutMs: BOOT_MS, crashRecovery: true });
    }, BOOT_MS + 120_000);

    afterAll(async () => {
      if (bed) {
        const lines = bed.upgrades.map((u) => `  #${u.index}: the new data plane recovered in ${u.successorMillis} ms; ${u.servingAt - u.quiescingAt} ms from the kill`);
        console.log(`guest/crash-recovery (${mode}): boot ${(bed.vm.bootMs / 1000).toFixed(1)} s, whole run ${((Date.now() - started) / 1000).toFixed(1)} s\n${lines.join('\n')}`);
      }
      await bed?.stop();
    }, 120_000);

    it(`fio randrw verify runs through ${CRASHES} crashes: exit 0, no I/O error, no verify failure`, async () => {
      await bed.startLoad();
      for (let i = 0; i < CRASHES; i++) {
        await bed.crash();
        await bed.progress(300, 5);
      }
      load = await bed.stopLoad();
      pauses = bed.pauses(load);
      expect(load.code, `fio exit status\n${load.stderr}\n${bed.vm.diagnostics(20)}`).toBe(0);
      expect(load.stderr).not.toMatch(/verify|bad magic|crc32c|error/i);
      for (const job of load.jobs) {
        expect(job.error, job.jobname).toBe(0);
        expect(job.read.total_ios, job.jobname).toBeGreaterThan(0);
        expect(job.write.total_ios, job.jobname).toBeGreaterThan(0);
      }
      expect(load.writerError).toBe('');
    }, STEP_MS);

    it('the guest kernel logs no NVMe error, timeout, abort or reset', async () => {
      expect(load, 'the load ran').toBeDefined();
      expect(await bed.kernelProblems()).toEqual([]);
    }, STEP_MS);

    it('the vfio-user connection never dropped: one client, recovered by every new data plane', () => {
      expect(load, 'the load ran').toBeDefined();
      const holder = bed.current;
      expect(holder.logged('client connected')).toHaveLength(1);
      expect(holder.logged('client disconnected')).toEqual([]);
      const recoveries = holder.logged('recovered from a crash of the previous data plane');
      expect(recoveries.map((line) => line['generation'])).toEqual([1, 2, 3]);
      for (const line of recoveries) expect(line['client']).toBe(true);
      const starts = holder.logged('data plane started');
      expect(starts).toHaveLength(CRASHES + 1);
      // Each crash was taken over by the standby data plane, already loaded.
      expect(starts.slice(1).map((line) => line['standby'])).toEqual([true, true, true]);
      expect(holder.exitCode, 'the holder still runs').toBeUndefined();
      expect(bed.vm.exitCode, 'QEMU still runs').toBeUndefined();
    });

    it('every block the guest saw flushed across the crashes is in the backing file', () => {
      expect(load, 'the load ran').toBeDefined();
      expect(load.flushedBlocks).toBeGreaterThanOrEqual(5 * (CRASHES + 1));
      const length = load.flushedBlocks * 4096;
      const onDisk = bed.readBacking(bed.marksAt, length);
      expect(onDisk.equals(bed.marks.subarray(0, length)), `the ${load.flushedBlocks} flushed blocks in ${bed.image}`).toBe(true);
    });

    it('reports the longest guest-visible pause across each crash', () => {
      expect(pauses, 'the load ran').toBeDefined();
      const rows = pauses.perUpgrade.map((p) => `  #${p.index}: longest I/O ${p.longestIoMs.toFixed(1)} ms (${p.ios} I/Os overlapping it), kill to recovered ${p.serverPauseMs} ms; ` +
        `a window as long without a crash: ${p.controlLongestIoMs === undefined ? 'no room' : `${p.controlLongestIoMs.toFixed(1)} ms`}`);
      console.log(`guest/crash-recovery (${mode}): longest I/O across each crash:\n${rows.join('\n')}\n` +
        `  away from the crashes: ${pauses.baseline.ios} I/Os, p50 ${pauses.baseline.p50.toFixed(1)} ms, p99 ${pauses.baseline.p99.toFixed(1)} ms`);
      expect(pauses.perUpgrade).toHaveLength(CRASHES);
      for (const crash of pauses.perUpgrade) {
        expect(crash.ios, `crash ${crash.index}: I/Os overlapping it`).toBeGreaterThan(0);
        expect(crash.longestIoMs, `crash ${crash.index}`).toBeLessThan(PAUSE_LIMIT_MS);
      }
    });
  });
}

crashesUnderFio('interrupt');
crashesUnderFio('polled');
