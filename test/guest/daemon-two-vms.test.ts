/**
 * Two VMs on one `vfiod daemon`: two emulated controllers created through the CLI (the daemon's gRPC API), each
 * attached to its own QEMU 11.1 guest (vfio-user-pci, Linux 6.1), both under fio with verify. One VM is SIGKILLed in
 * the middle of its I/O; the other's fio finishes without an error, its kernel logs no I/O trouble, and the daemon
 * counts no failed command for it. The killed VM's controller drops its client and serves the next one (the project's
 * own vfio-user client reads back what that guest wrote). Data checked from the host in both backing files. Then a
 * hostile client on a third controller of the same daemon shrinks the guest memory it mapped under a command's
 * data while VM b runs fio: that controller fails, VM b notices nothing (issue 12 §5). Then runtime namespaces on VM b,
 * and VM b's namespace moved to another file while its fio verifies: no error, no Identify change (issue 13 §2).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { Guest } from '../helpers/hypervisor.js';
import { pattern } from '../helpers/nvme-harness.js';
import { ftruncateSync } from 'node:fs';
import { IoOpcode, Status } from '../../src/spec/nvme.js';
import { VfioUserVm, vfioUserVmUnavailableReason } from '../../testbed/vfio-user-vm.js';
import { VfiodProcess, vfiodCli } from '../../testbed/vfiod-process.js';
import { sleep } from '../../src/util/sleep.js';
import { nvmetTargetUnavailableReason, startNvmetTarget, type NvmetTarget } from '../../testbed/nvmet-target.js';

const unavailable = vfioUserVmUnavailableReason();
if (unavailable) console.warn(`guest/daemon-two-vms: skipped: ${unavailable}`);

const MiB = 1 << 20;
const PATTERN_AT = 128 * MiB; // fio uses [0, 64 MiB)
const BOOT_MS = 600_000;
const STEP_MS = 900_000;

function readAt(file: string, offset: number, length: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const out = Buffer.alloc(length);
    readSync(fd, out, 0, length, offset);
    return out;
  } finally {
    closeSync(fd);
  }
}

/** The controller (nvmeN) whose serial number is $1, and reads + writes completed on block device $1. */
const SH = [
  'set -e',
  'ctrl() { for c in /sys/class/nvme/nvme*; do [ "$(tr -d " " < $c/serial)" = "$1" ] && { basename $c; return 0; }; done; return 1; }',
  'ios() { awk \'{ print $1 + $5 }\' /sys/block/$1/stat; }',
].join('\n');

const fio = (serial: string, ioMb: number): string =>
  `${SH}\nc=$(ctrl ${serial})\nfio --output-format=json --name=${serial} --filename=/dev/\${c}n1 --ioengine=libaio --direct=1 --rw=randrw ` +
  `--bssplit=4k/60:64k/30:256k/10 --iodepth=16 --size=64M --io_size=${ioMb}M --verify=crc32c --verify_fatal=1 --verify_backlog=64 ` +
  `--verify_state_save=0 --randrepeat=0`;

describe.skipIf(unavailable)('two VMs on one vfiod daemon: one is SIGKILLed under I/O, the other sees no error', () => {
  let host: FakeHost;
  let dir: string;
  let daemon: VfiodProcess;
  let daemonSocket: string;
  const vms: Record<'a' | 'b', VfioUserVm | undefined> = { a: undefined, b: undefined };
  const images = { a: '', b: '' };
  const patterns = { a: Buffer.from(pattern(MiB, 51)), b: Buffer.from(pattern(MiB, 52)) };
  const timings: Array<[string, number]> = [];
  /** The NVMe/TCP target VM b's namespace moves to (the last step), if it could boot. */
  let target: NvmetTarget | undefined;

  const cli = async (...args: string[]): Promise<string> => {
    const run = await vfiodCli([...args, '--daemon', daemonSocket]);
    expect(run.code, `vfiod ${args.join(' ')}: ${run.stderr}`).toBe(0);
    return run.stdout;
  };
  const controller = async (id: string): Promise<Record<string, unknown>> =>
    JSON.parse(await cli('controllers', 'get', id, '--json'))['controller'] as Record<string, unknown>;

  beforeAll(async () => {
    host = standardHost();
    dir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-guest-daemon-'));
    daemonSocket = path.join(dir, 'vfiod.sock');
    daemon = await VfiodProcess.start('vfiod daemon', 'daemon', [
      '--socket', daemonSocket, '--state-dir', path.join(dir, 'state'), '--namespace-dir', dir,
      '--sysfs-root', host.roots.sysfs, '--dev-root', host.roots.dev, '--proc-root', host.roots.proc,
    ]);
    for (const name of ['a', 'b'] as const) {
      images[name] = path.join(dir, `vm-${name}.img`);
      await cli('controllers', 'create', `vm-${name}`, '--socket', path.join(dir, `vm-${name}.sock`),
        '--namespace', `file:${images[name]}?size=256M`, '--serial', `VFIOD-VM-${name.toUpperCase()}`);
    }
    const started = Date.now();
    // Both boot at once, as on a host.
    const boots = await Promise.allSettled((['a', 'b'] as const).map(async (name) => {
      vms[name] = await VfioUserVm.start({
        name: `vm-${name}`, memory: '1G', cpus: 2, bootTimeoutMs: BOOT_MS,
        devices: [{ socket: path.join(dir, `vm-${name}.sock`), id: 'disk' }],
        files: { 'pattern.bin': patterns[name] },
      });
    }));
    for (const boot of boots) if (boot.status === 'rejected') throw boot.reason;
    timings.push(['two VMs booted (1 GiB, 2 vCPUs each)', Date.now() - started]);
  }, BOOT_MS + 120_000);

  afterAll(async () => {
    console.log(`guest/daemon-two-vms timings:\n${timings.map(([n, ms]) => `  ${n}: ${(ms / 1000).toFixed(1)} s`).join('\n')}`);
    await vms.a?.stop();
    await vms.b?.stop();
    expect(await daemon?.stop()).toBe(0);
    await target?.stop();
    host?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('each guest sees its own controller; what it writes is in its own backing file', async () => {
    const started = Date.now();
    for (const name of ['a', 'b'] as const) {
      const vm = vms[name]!;
      await vm.run(`${SH}\nc=$(ctrl VFIOD-VM-${name.toUpperCase()})\n` +
        `dd if=${vm.workDir}/pattern.bin of=/dev/\${c}n1 bs=1M seek=${PATTERN_AT / MiB} oflag=direct conv=fsync,notrunc 2>/dev/null`);
      expect(readAt(images[name], PATTERN_AT, MiB).equals(patterns[name]), name).toBe(true);
      expect((await vm.sh(`${SH}\nctrl VFIOD-VM-${name === 'a' ? 'B' : 'A'}`)).code, `${name} sees only its own controller`).toBe(1);
    }
    const listed = JSON.parse(await cli('controllers', 'list', '--json')) as { controllers: Array<{ id: string; state: string }> };
    expect(listed.controllers.map((c) => [c.id, c.state]).sort()).toEqual([['vm-a', 'CONTROLLER_STATE_SERVING'], ['vm-b', 'CONTROLLER_STATE_SERVING']]);
    timings.push(['patterns written and checked from the host', Date.now() - started]);
  }, STEP_MS);

  it('VM a is SIGKILLed while both run fio: VM b\'s fio finishes verified, with no error anywhere', async () => {
    const started = Date.now();
    const a = vms.a!;
    const b = vms.b!;
    const uptimeB = (await b.run('cut -d" " -f1 /proc/uptime')).trim();
    const failedBefore = ((await controller('vm-b'))['stats'] as Record<string, unknown>) ?? {};
    let bDone = false;
    const bResult = b.sh(fio('VFIOD-VM-B', 256), { timeoutMs: STEP_MS }).finally(() => (bDone = true));
    const aResult = a.sh(fio('VFIOD-VM-A', 4096), { timeoutMs: STEP_MS }).catch((error: Error) => error);
    // Both under I/O before the kill.
    for (const [vm, serial] of [[a, 'VFIOD-VM-A'], [b, 'VFIOD-VM-B']] as const) {
      await vm.waitFor(`fio I/O in ${vm.name}`, async () => {
        const n = Number(await vm.run(`${SH}\nios $(ctrl ${serial})n1`));
        return n >= 100 ? true : undefined;
      }, STEP_MS, 250);
    }
    const killedAt = Date.now();
    await a.kill();
    expect(bDone, 'VM b\'s fio finished before VM a was killed').toBe(false);
    await aResult;
    const result = await bResult;
    expect(result.code, `${result.stdout}\n${result.stderr}\n${b.diagnostics(20)}`).toBe(0);
    const job = (JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as { jobs: Array<{ error: number; read: { io_bytes: number }; write: { io_bytes: number } }> }).jobs[0]!;
    expect(job.error).toBe(0);
    expect(job.write.io_bytes).toBeGreaterThan(0);
    const bAfterKill = Number(await b.run(`${SH}\nios $(ctrl VFIOD-VM-B)n1`));
    expect(bAfterKill).toBeGreaterThan(0);
    // VM b's kernel logged nothing about its disk; the daemon failed none of its commands.
    const dmesg = await b.run(`dmesg | awk -v s=${uptimeB} '{ t = substr($0, 2, index($0, "]") - 2) + 0 } t >= s'`);
    expect(dmesg.split('\n').filter((l) => /nvme|I\/O error|blk_update_request|Buffer I\/O/i.test(l))).toEqual([]);
    const statsB = (await controller('vm-b'))['stats'] as Record<string, unknown>;
    expect(statsB).toMatchObject({ nvmeState: 'ready', clientConnected: true, ioQueues: 2 });
    expect(Number(statsB['failedCommands'] ?? 0), JSON.stringify(statsB)).toBe(Number(failedBefore['failedCommands'] ?? 0));
    expect(Number(statsB['writeCommands'])).toBeGreaterThan(Number(failedBefore['writeCommands'] ?? 0));
    // VM a's controller dropped its client and is serving, waiting for the next.
    await daemon.waitForLog((l) => l['msg'] === 'client cleanup done; ready for the next client' && String(l['socket']).endsWith('vm-a.sock'), { since: killedAt, what: 'vm-a client dropped' });
    const statsA = (await controller('vm-a'))['stats'] as Record<string, unknown>;
    expect(statsA['clientConnected'], JSON.stringify(statsA)).toBe(false);
    expect(daemon.problems(killedAt).filter((l) => String(l['socket'] ?? l['worker'] ?? '').endsWith('vm-b.sock'))).toEqual([]);
    console.log(`guest/daemon-two-vms: VM b's fio ran ${((Date.now() - killedAt) / 1000).toFixed(1)} s after VM a was killed`);
    timings.push(['kill under I/O, the other VM\'s fio to the end', Date.now() - started]);
  }, STEP_MS);

  it('the killed VM\'s controller serves the next client, which reads back what that guest wrote', async () => {
    const next = await Guest.attach(path.join(dir, 'vm-a.sock'), { flavour: 'qemu' });
    try {
      await next.driver.enable();
      await next.driver.createIoQueuePair(1, 32, 1);
      const read = await next.driver.read(1, PATTERN_AT / 512, 256);
      expect(read.completion.status).toBe(0);
      expect(Buffer.from(read.data).equals(patterns.a.subarray(0, 128 * 1024))).toBe(true);
    } finally {
      next.close();
    }
    expect(readAt(images.b, PATTERN_AT, MiB).equals(patterns.b)).toBe(true);
  }, STEP_MS);

  it('a hostile client shrinks its guest memory under a command on a third controller: that one fails, VM b notices nothing', async () => {
    const started = Date.now();
    const b = vms.b!;
    await cli('controllers', 'create', 'hostile', '--socket', path.join(dir, 'hostile.sock'),
      '--namespace', `file:${path.join(dir, 'hostile.img')}?size=16M`);
    const ramBytes = 16 * MiB;
    const hostile = await Guest.attach(path.join(dir, 'hostile.sock'), { flavour: 'cloud-hypervisor', ramBytes });
    try {
      await hostile.driver.enable();
      await hostile.driver.createIoQueuePair(1, 16, 1);
      const uptimeB = (await b.run('cut -d" " -f1 /proc/uptime')).trim();
      const failedBefore = Number(((await controller('vm-b'))['stats'] as Record<string, unknown>)['failedCommands'] ?? 0);
      const bResult = b.sh(fio('VFIOD-VM-B', 128), { timeoutMs: STEP_MS });
      await b.waitFor('fio I/O in VM b', async () => (Number(await b.run(`${SH}\nios $(ctrl VFIOD-VM-B)n1`)) >= 100 ? true : undefined), STEP_MS, 250);
      // The last page of its RAM holds a write's data; the client cuts the upper half of its memfd off first.
      const data = hostile.ramIova + ramBytes - 4096;
      ftruncateSync(hostile.memfd, ramBytes / 2);
      const cid = hostile.driver.place(1, { opcode: IoOpcode.WRITE, nsid: 1, prp1: data, cdw12: 7 });
      await hostile.driver.ringSubmission(1);
      // A file namespace writes from guest memory in the kernel (pwrite): the lost page is EFAULT there, and the
      // command fails with an NVMe status (a memory namespace's copy in vfiod would fail the controller instead:
      // test/hostile/process.test.ts).
      const failed = await hostile.driver.wait(1, cid, 60_000);
      expect(failed.status, 'the hostile write fails').not.toBe(Status.SUCCESS);
      console.log(`guest/daemon-two-vms: the hostile client's write over lost memory completed with status 0x${failed.status.toString(16)}`);
      const result = await bResult;
      expect(result.code, `${result.stdout}\n${result.stderr}\n${b.diagnostics(20)}`).toBe(0);
      const dmesg = await b.run(`dmesg | awk -v s=${uptimeB} '{ t = substr($0, 2, index($0, "]") - 2) + 0 } t >= s'`);
      expect(dmesg.split('\n').filter((l) => /nvme|I\/O error|blk_update_request|Buffer I\/O/i.test(l))).toEqual([]);
      const statsB = (await controller('vm-b'))['stats'] as Record<string, unknown>;
      expect(statsB).toMatchObject({ nvmeState: 'ready', clientConnected: true });
      expect(Number(statsB['failedCommands'] ?? 0)).toBe(failedBefore);
      expect(daemon.exitCode, 'the daemon still runs').toBeUndefined();
      expect(daemon.problems(started).filter((l) => String(l['socket'] ?? l['worker'] ?? '').endsWith('vm-b.sock'))).toEqual([]);
      timings.push(['hostile memfd shrink next to VM b\'s fio', Date.now() - started]);
    } finally {
      hostile.close();
    }
  }, STEP_MS);

  it('namespaces attached, grown and detached at runtime reach VM b without a reboot; a guest fstrim shrinks the sparse image', async () => {
    const b = vms.b!;
    const extra = path.join(dir, 'vm-b-extra.img');
    const uptimeB = (await b.run('cut -d" " -f1 /proc/uptime')).trim();
    /** The block device of NSID 2 of VM b's controller, or nothing (exit 1) when the guest has none. */
    const ns2 = `${SH}\nc=$(ctrl VFIOD-VM-B)\nfor d in /sys/block/\${c}n*; do [ "$(cat $d/nsid)" = 2 ] && { basename $d; exit 0; }; done; exit 1`;
    const device = async (): Promise<string | undefined> => {
      const found = await b.sh(ns2);
      return found.code === 0 ? found.stdout.trim() : undefined;
    };
    const lsblkBytes = async (name: string): Promise<number> => Number((await b.run(`lsblk -bdno SIZE /dev/${name}`)).trim());
    const allocated = (): number => statSync(extra).blocks * 512;
    expect(await device()).toBeUndefined();
    const failedBefore = Number(((await controller('vm-b'))['stats'] as Record<string, unknown>)['failedCommands'] ?? 0);

    // Attach: the guest driver gets the notice, reads the Changed Namespace List and rescans.
    let started = Date.now();
    await cli('controllers', 'attach-namespace', 'vm-b', `file:${extra}?size=64M`);
    const name = await b.waitFor('NSID 2 in VM b', device, STEP_MS);
    timings.push(['namespace attached: in the guest after', Date.now() - started]);
    expect(name).toMatch(/^nvme\d+n2$/);
    expect(await lsblkBytes(name)).toBe(64 * MiB);

    // Resize: lsblk follows (the driver revalidates the namespace on the notice).
    started = Date.now();
    await cli('controllers', 'resize-namespace', 'vm-b', '2', '256M');
    await b.waitFor('the new size in VM b', async () => ((await lsblkBytes(name)) === 256 * MiB ? true : undefined), STEP_MS);
    timings.push(['namespace grown: lsblk shows it after', Date.now() - started]);

    // fstrim: ext4 on the new namespace, a file written and deleted, then FITRIM: the discards reach vfiod as
    // Dataset Management deallocate, which punches the image's blocks out again.
    started = Date.now();
    await b.run(`modprobe ext4 && mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/${name} && mkdir -p /tmp/ns2 && mount /dev/${name} /tmp/ns2`);
    await b.run('dd if=/dev/urandom of=/tmp/ns2/data bs=1M count=96 conv=fsync 2>/dev/null && sync');
    const written = allocated();
    expect(written, 'the file is in the image').toBeGreaterThan(96 * MiB);
    const trimmed = await b.run('rm /tmp/ns2/data && sync && fstrim -v /tmp/ns2');
    await b.run('umount /tmp/ns2');
    const after = allocated();
    console.log(`guest/daemon-two-vms: ${trimmed.trim()}; image allocation ${(written / MiB).toFixed(1)} MiB -> ${(after / MiB).toFixed(1)} MiB`);
    expect(after, 'fstrim gave the deleted file\'s blocks back').toBeLessThan(written - 90 * MiB);
    timings.push(['ext4, 96 MiB written and deleted, fstrim', Date.now() - started]);

    // Detach: the block device goes away; nothing but the removal in the kernel log; NSID 1 serves on.
    started = Date.now();
    await cli('controllers', 'detach-namespace', 'vm-b', '2');
    await b.waitFor('NSID 2 gone from VM b', async () => ((await device()) === undefined ? true : undefined), STEP_MS);
    timings.push(['namespace detached: gone from the guest after', Date.now() - started]);
    await b.run(`${SH}\nc=$(ctrl VFIOD-VM-B)\ndd if=/dev/\${c}n1 bs=1M skip=${PATTERN_AT / MiB} count=1 iflag=direct 2>/dev/null | cmp - ${b.workDir}/pattern.bin`);
    const dmesg = await b.run(`dmesg | awk -v s=${uptimeB} '{ t = substr($0, 2, index($0, "]") - 2) + 0 } t >= s'`);
    expect(dmesg.split('\n').filter((l) => /I\/O error|blk_update_request|Buffer I\/O|EXT4-fs error|nvme.*(timeout|abort|reset)/i.test(l))).toEqual([]);
    const info = await controller('vm-b');
    expect((info['namespaces'] as Array<{ nsid: number }>).map((n) => n.nsid)).toEqual([1]);
    expect(Number((info['stats'] as Record<string, unknown>)['failedCommands'] ?? 0)).toBe(failedBefore);
  }, STEP_MS);
  it('a rate limit set at runtime holds VM b\'s reads to it: the guest sees latency, no error; removing it frees them', async () => {
    const b = vms.b!;
    const started = Date.now();
    const uptimeB = (await b.run('cut -d" " -f1 /proc/uptime')).trim();
    const before = Number(((await controller('vm-b'))['stats'] as Record<string, unknown>)['failedCommands'] ?? 0);
    // 200 direct 4 KiB reads, 4 at a time (fio, libaio) and timed in the guest, at 100 IOPS after a burst of 10:
    // at least (200 - 10 - 1) / 100 = 1.89 s, however the machine is loaded.
    const reads = (name: string): string =>
      `${SH}\nc=$(ctrl VFIOD-VM-B)\nfio --output-format=json --name=${name} --filename=/dev/\${c}n1 --ioengine=libaio --direct=1 ` +
      '--rw=randread --bs=4k --iodepth=4 --size=64M --io_size=800k --randrepeat=0';
    const seconds = (json: string): number => Number((JSON.parse(json.slice(json.indexOf('{'))) as { jobs: Array<{ read: { runtime: number } }> }).jobs[0]!.read.runtime) / 1000;
    await cli('controllers', 'set-limits', 'vm-b', '--limit', 'iops=100,burst-ios=10');
    const limited = seconds(await b.run(reads('limited')));
    expect(limited).toBeGreaterThanOrEqual(1.89);
    const stats = (await controller('vm-b'))['stats'] as Record<string, unknown>;
    expect(Number(stats['throttledCommandsTotal'])).toBeGreaterThan(100);
    await cli('controllers', 'set-limits', 'vm-b');
    const free = seconds(await b.run(reads('free')));
    console.log(`guest/daemon-two-vms: 200 4k reads at QD4 took ${limited.toFixed(2)} s limited to 100 IOPS, ${free.toFixed(2)} s unlimited`);
    const dmesg = await b.run(`dmesg | awk -v s=${uptimeB} '{ t = substr($0, 2, index($0, "]") - 2) + 0 } t >= s'`);
    expect(dmesg.split('\n').filter((l) => /I\/O error|blk_update_request|Buffer I\/O|nvme.*(timeout|abort|reset)/i.test(l))).toEqual([]);
    expect(Number(((await controller('vm-b'))['stats'] as Record<string, unknown>)['failedCommands'] ?? 0)).toBe(before);
    timings.push(['rate limit: 200 reads limited and unlimited', Date.now() - started]);
  });

  it('VM b\'s namespace moves to another file, then to an NVMe/TCP target (and to its other port), while its fio verifies: no error, no Identify change', async () => {
    const b = vms.b!;
    const uptimeB = (await b.run('cut -d" " -f1 /proc/uptime')).trim();
    const failedBefore = Number(((await controller('vm-b'))['stats'] as Record<string, unknown>)['failedCommands'] ?? 0);
    // A pattern outside fio's range: the copy must carry what nobody writes during the move too.
    const MOVED_PATTERN_AT = 192 * MiB;
    await b.run(`${SH}\nc=$(ctrl VFIOD-VM-B)\ndd if=${b.workDir}/pattern.bin of=/dev/\${c}n1 bs=1M seek=${MOVED_PATTERN_AT / MiB} oflag=direct conv=fsync,notrunc 2>/dev/null`);
    // Everything the guest's driver read with Identify: the controller, namespace 1 and its descriptors.
    const identify = async (): Promise<string> => {
      const out = await b.run(`${SH}\nc=$(ctrl VFIOD-VM-B)\nnvme id-ctrl /dev/$c -b | od -An -tx1 | tr -d ' \\n'; echo\n` +
        `nvme id-ns /dev/\${c}n1 -b | od -An -tx1 | tr -d ' \\n'; echo\nnvme ns-descs /dev/\${c}n1 -b | od -An -tx1 | tr -d ' \\n'`);
      // NUSE (Identify Namespace bytes 16-23) follows the allocation, which fio's writes change anyway.
      const [ctrl, ns, descs] = out.trim().split('\n');
      return [ctrl, ns!.slice(0, 32) + '0'.repeat(16) + ns!.slice(48), descs].join('\n');
    };
    const before = await identify();

    /**
     * One move of VM b's namespace while fio runs without a pause (5 s runs, each verifying what it wrote, until the
     * move has ended): every run clean; the longest I/O any run saw, next to the move's own report.
     */
    /** fio runs (5 s each, each verifying what it wrote) until `during` has resolved; the longest I/O of any run. */
    const fioAround = async <T,>(label: string, during: () => Promise<T>): Promise<{ value: T; runs: number; longestMs: number; verified: number }> => {
      const stop = path.join(b.workDir, 'stop-fio');
      const runs = `${b.workDir}/fio-${label.replace(/\W+/g, '-')}`;
      const ios = async (): Promise<number> => Number(await b.run(`${SH}\nios $(ctrl VFIOD-VM-B)n1`));
      const iosBefore = await ios();
      const loop = b.sh(`i=0\nwhile [ ! -e ${stop} ]; do i=$((i+1)); ${fio('VFIOD-VM-B', 4096)} --time_based --runtime=5 --output=${runs}-$i.json || exit 1; done\necho $i`, { timeoutMs: STEP_MS });
      await b.waitFor('fio I/O in VM b', async () => ((await ios()) >= iosBefore + 200 ? true : undefined), STEP_MS, 250);
      const value = await during();
      writeFileSync(stop, '');
      const result = await loop;
      rmSync(stop);
      expect(result.code, result.stderr).toBe(0);
      let longestMs = 0;
      let verified = 0;
      const count = Number(result.stdout.trim());
      for (let i = 1; i <= count; i++) {
        const job = (JSON.parse(readFileSync(`${runs}-${i}.json`, 'utf8')) as { jobs: Array<Record<string, { lat_ns: { max: number }; io_bytes: number } | number>> }).jobs[0]!;
        expect(job['error'], `fio run ${i}`).toBe(0);
        for (const direction of ['read', 'write']) {
          const stats = job[direction] as { lat_ns: { max: number }; io_bytes: number };
          longestMs = Math.max(longestMs, stats.lat_ns.max / 1e6);
          verified += stats.io_bytes;
        }
      }
      return { value, runs: count, longestMs, verified };
    };
    // The same load without a move, for comparison: one run.
    const baseline = await fioAround('baseline', () => sleep(1000));
    console.log(`guest/daemon-two-vms: fio without a move: longest I/O ${baseline.longestMs.toFixed(1)} ms`);
    timings.push([`fio without a move, for comparison (longest guest I/O ${baseline.longestMs.toFixed(0)} ms)`, baseline.runs * 5000]);

    const moveUnderFio = async (uri: string, label: string, options: string[] = []): Promise<void> => {
      const started = Date.now();
      const { value: moved, runs, longestMs, verified } = await fioAround(label, () => vfiodCli(['controllers', 'swap-backing', 'vm-b', '1', uri, ...options, '--daemon', daemonSocket]));
      expect(moved.code, moved.stderr).toBe(0);
      const held = /waited ([\d.]+) ms/.exec(moved.stdout)?.[1];
      console.log(`guest/daemon-two-vms: ${label}: ${moved.stdout.trim()}; ${runs} fio runs, ${(verified / MiB).toFixed(0)} MiB, longest I/O ${longestMs.toFixed(1)} ms`);
      timings.push([`${label} under fio (commands held ${held} ms, longest guest I/O ${longestMs.toFixed(0)} ms)`, Date.now() - started]);
      expect(await identify()).toBe(before);
      await b.run(`${SH}\nc=$(ctrl VFIOD-VM-B)\ndd if=/dev/\${c}n1 bs=1M skip=${MOVED_PATTERN_AT / MiB} count=1 iflag=direct 2>/dev/null | cmp - ${b.workDir}/pattern.bin`);
    };

    const movedFile = path.join(dir, 'vm-b-moved.img');
    await moveUnderFio(`file:${movedFile}`, 'file -> file');
    expect(readAt(movedFile, MOVED_PATTERN_AT, MiB).equals(patterns.b)).toBe(true);
    const info = await controller('vm-b');
    expect((info['spec'] as { namespaces: string[] }).namespaces).toEqual([`file:${movedFile}?size=${256 * MiB}`]);

    const noTarget = nvmetTargetUnavailableReason();
    if (noTarget) console.warn(`guest/daemon-two-vms: the move to NVMe/TCP skipped: ${noTarget}`);
    else {
      // Stopped after the daemon (afterAll), which flushes the namespace at its stop.
      const booted = Date.now();
      target = await startNvmetTarget({ sizeBytes: 256 * MiB, blockSize: 512, ports: 2 });
      timings.push(['the Linux nvmet target booted', Date.now() - booted]);
      await moveUnderFio(`nvme-tcp://${target.host}:${target.ports[0]}/${target.subsystemNqn}`, 'file -> NVMe/TCP');
      expect(Buffer.from(await target.readBacking(MOVED_PATTERN_AT, MiB)).equals(patterns.b)).toBe(true);
      // NVMe/TCP to NVMe/TCP without a copy: the target's other port reaches the same namespace, which holds the data.
      // First the same load on the NVMe/TCP backing without a move: its own latency under TCG, for comparison.
      const remote = await fioAround('baseline on NVMe/TCP', () => sleep(1000));
      console.log(`guest/daemon-two-vms: fio on NVMe/TCP without a move: longest I/O ${remote.longestMs.toFixed(1)} ms`);
      timings.push([`fio on NVMe/TCP without a move (longest guest I/O ${remote.longestMs.toFixed(0)} ms)`, remote.runs * 5000]);
      await moveUnderFio(`nvme-tcp://${target.host}:${target.ports[1]}/${target.subsystemNqn}`, 'NVMe/TCP -> NVMe/TCP, already copied', ['--already-copied']);
      expect(((await controller('vm-b'))['namespaces'] as Array<{ uri: string }>)[0]!.uri).toBe(`nvme-tcp://${target.host}:${target.ports[1]}/${target.subsystemNqn}`);
    }
    const dmesg = await b.run(`dmesg | awk -v s=${uptimeB} '{ t = substr($0, 2, index($0, "]") - 2) + 0 } t >= s'`);
    expect(dmesg.split('\n').filter((l) => /nvme|I\/O error|blk_update_request|Buffer I\/O/i.test(l))).toEqual([]);
    expect(Number(((await controller('vm-b'))['stats'] as Record<string, unknown>)['failedCommands'] ?? 0)).toBe(failedBefore);
  }, STEP_MS);
});
