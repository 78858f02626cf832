/**
 * A Linux guest under fio verify while its `vfiod serve` is live-upgraded or its data plane killed (docs/restart.md),
 * for test/guest/live-upgrade.test.ts and test/guest/crash-recovery.test.ts (three each) and bench/upgrade-soak (ten
 * or more).
 *
 * One `vfiod serve` with a file namespace (interrupt or polled doorbells), one q35 VM (QEMU vfio-user-pci, the host's
 * Linux guest kernel, RAM in a memfd) with it as its only NVMe controller. The load runs in the guest in the
 * background, detached from the guest agent:
 *   - fio randrw with verify=crc32c, verify_fatal=1 and verify_backlog, one job per vCPU over its own region, time
 *     based with no end of its own: the host stops it by creating its trigger file (fio then finishes normally and
 *     writes its JSON). Every I/O's latency goes to a per-I/O log (unix-epoch milliseconds of the guest's clock);
 *   - a writer that puts numbered 4 KiB blocks past fio's regions, each with O_DIRECT|O_DSYNC (written, then
 *     flushed), and records a block's number in the shared work dir only once dd returned: the host then finds every
 *     recorded block in the backing file.
 * `upgrade()` starts `vfiod serve <same options> --take-over` and resolves once the successor serves and its
 * predecessor has exited 0. Everything waits for events (log lines, guest counters, files), with generous deadlines.
 */
import { closeSync, existsSync, ftruncateSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { env } from './knobs.js';
import { VfioUserVm } from './vfio-user-vm.js';
import { VfiodProcess, type LogLine } from './vfiod-process.js';

const MiB = 1 << 20;
const BLOCK = 4096;

export type DoorbellMode = 'interrupt' | 'polled';

export interface UpgradeGuestOptions {
  /** Work dir and VM name. */
  name: string;
  mode: DoorbellMode;
  /** Guest RAM (QEMU size); default '4G'. */
  memory?: string;
  /** vCPUs = fio jobs = the guest's I/O queues; default 2. */
  cpus?: number;
  /** fio's region per job, MiB; default 64. */
  fioMbPerJob?: number;
  bootTimeoutMs?: number;
  /**
   * `vfiod serve --crash-recovery` (a holder and its data plane) instead of a plain `vfiod serve`: `crash()` then
   * SIGKILLs the data plane; `upgrade()` is not available.
   */
  crashRecovery?: boolean;
}

/** One live upgrade as the host saw it (Date.now() values are when the log line arrived here). */
export interface UpgradeRecord {
  index: number;
  /** The successor was spawned. */
  spawnedAt: number;
  /** The running process logged `upgrade requested: quiescing the controllers`: the guest's I/O stops here. */
  quiescingAt: number;
  /** The successor logged `upgrade complete: serving`. */
  servingAt: number;
  /** The predecessor's own measure, hello to handed over, and of the quiesce alone. */
  handedOverMillis: number;
  quiesceMillis: number;
  /** The successor's own measure, connect to serving. */
  successorMillis: number;
  /** The successor's pid. */
  pid: number;
}

export interface FioJob {
  jobname: string;
  error: number;
  read: { io_bytes: number; total_ios: number; lat_ns: { max: number } };
  write: { io_bytes: number; total_ios: number; lat_ns: { max: number } };
}

export interface LoadResult {
  /** fio's exit status. */
  code: number;
  jobs: FioJob[];
  stderr: string;
  /** Every I/O: guest-clock completion time (ms since the epoch) and latency (ms). */
  latencies: Array<{ at: number; ms: number; write: boolean }>;
  /** Blocks the writer saw flushed, in order. */
  flushedBlocks: number;
  /** The writer's failure, if it had one (a dd that failed). */
  writerError: string;
}

export interface PauseReport {
  /**
   * Per upgrade: the longest I/O whose lifetime overlapped the hand-over (ms) and how many did; and the same measure
   * for a control window of the same length half way between this upgrade and the one before (no upgrade in it):
   * what the machine's own noise alone gives for a window that long (undefined when there was no room for one).
   */
  perUpgrade: Array<{ index: number; longestIoMs: number; ios: number; serverPauseMs: number; controlLongestIoMs: number | undefined }>;
  /** I/Os away from every upgrade (half a second before or after, at least): the machine's own noise. */
  baseline: { ios: number; p50: number; p99: number; max: number };
  /** Host-to-guest clock offset (guest - host, ms) and how well it is known (± ms). */
  clockOffsetMs: number;
  clockUncertaintyMs: number;
}

export class UpgradeGuest {
  readonly serves: VfiodProcess[] = [];
  readonly upgrades: UpgradeRecord[] = [];
  readonly marksAt: number;
  readonly marks: Buffer;
  private loadStartedAt = 0;
  private clockSamples: Array<{ offset: number; uncertainty: number }> = [];

  private constructor(
    readonly options: Required<UpgradeGuestOptions>,
    readonly dir: string,
    readonly image: string,
    readonly args: string[],
    readonly vm: VfioUserVm,
    /** The namespace's block device in the guest, e.g. nvme0n1. */
    readonly device: string,
    first: VfiodProcess,
  ) {
    this.serves.push(first);
    this.marksAt = options.cpus * options.fioMbPerJob * MiB + 64 * MiB;
    this.marks = markBlocks(MARK_BLOCKS);
  }

  /** Starts vfiod serve and boots the VM; resolves when the guest sees the namespace. */
  static async start(options: UpgradeGuestOptions): Promise<UpgradeGuest> {
    const full: Required<UpgradeGuestOptions> = { memory: '4G', cpus: 2, fioMbPerJob: 64, bootTimeoutMs: 600_000, crashRecovery: false, ...options };
    const dir = mkdtempSync(path.join(os.tmpdir(), `vfiod-${full.name}-`));
    const image = path.join(dir, 'disk.img');
    const fd = openSync(image, 'w');
    ftruncateSync(fd, NAMESPACE_MB * MiB);
    closeSync(fd);
    const args = ['--socket', path.join(dir, 'nvme.sock'), '--namespace', `file:${image}?size=${NAMESPACE_MB}M`, '--serial', SERIAL,
      ...(full.mode === 'polled' ? ['--poll'] : []), ...(full.crashRecovery ? ['--crash-recovery'] : [])];
    let first: VfiodProcess | undefined;
    let vm: VfioUserVm | undefined;
    try {
      first = await VfiodProcess.start('vfiod serve #0', 'serve', args);
      vm = await VfioUserVm.start({
        name: full.name, memory: full.memory, cpus: full.cpus, bootTimeoutMs: full.bootTimeoutMs,
        devices: [{ socket: path.join(dir, 'nvme.sock'), id: 'nvme-upgrade' }],
        files: { 'marks.bin': markBlocks(MARK_BLOCKS) },
      });
      const booted = vm;
      const device = await vm.waitFor('the namespace in the guest', async () => {
        const r = await booted.sh(`${SH}\nc=$(ctrl ${SERIAL}) && [ -b /dev/\${c}n1 ] && echo \${c}n1`);
        return r.code === 0 ? r.stdout.trim() : undefined;
      }, 300_000, 500);
      return new UpgradeGuest(full, dir, image, args, vm, device, first);
    } catch (error) {
      await vm?.stop({ keep: true });
      await first?.stop();
      throw error;
    }
  }

  get current(): VfiodProcess {
    return this.serves[this.serves.length - 1]!;
  }

  get workDir(): string {
    return this.vm.workDir;
  }

  /** Reads and writes completed on the namespace so far (the guest's block-layer counters). */
  async ioCount(): Promise<number> {
    const out = await this.vm.run(`awk '{ print $1 + $5 }' /sys/block/${this.device}/stat`);
    return Number(out.trim());
  }

  /** Resolves once the guest completed `count` more I/Os on the namespace (and the writer flushed `marks` more). */
  async progress(count: number, marks = 0, timeoutMs = 600_000): Promise<void> {
    const ios = await this.ioCount();
    const flushed = this.flushedSoFar();
    await this.vm.waitFor(`${count} more I/Os in the guest`, async () => {
      this.checkLoad();
      return (await this.ioCount()) - ios >= count && this.flushedSoFar() - flushed >= marks ? true : undefined;
    }, timeoutMs, 250);
  }

  /** Starts fio and the flushed-block writer in the background; resolves when both are under way. */
  async startLoad(): Promise<void> {
    const W = this.workDir;
    const { cpus, fioMbPerJob } = this.options;
    const jobs = Array.from({ length: cpus }, (_, cpu) =>
      `--name=cpu${cpu} --filename=/dev/${this.device} --cpus_allowed=${cpu} --offset=${cpu * fioMbPerJob}M --size=${fioMbPerJob}M`).join(' ');
    // Run in the work dir: fio saves its verify state into the current directory when its trigger file stops it.
    const fio = `fio --output-format=json --trigger-file=${W}/fio.stop --ioengine=libaio --direct=1 --rw=randrw ` +
      `--bssplit=4k/60:64k/30:256k/10 --iodepth=16 --verify=crc32c --verify_fatal=1 --verify_backlog=64 ` +
      `--verify_state_save=0 --randrepeat=0 --time_based --runtime=86400 ` +
      `--write_lat_log=${W}/io --log_avg_msec=0 --log_unix_epoch=1 ${jobs}`;
    const writer = `i=0; while [ ! -e ${W}/writer.stop ] && [ $i -lt ${MARK_BLOCKS} ]; do ` +
      `dd if=${W}/marks.bin of=/dev/${this.device} bs=${BLOCK} skip=$i seek=$((${this.marksAt / BLOCK} + i)) count=1 ` +
      `oflag=direct,dsync conv=notrunc status=none 2> ${W}/writer.err || break; echo $i >> ${W}/flushed.txt; i=$((i + 1)); done; echo done > ${W}/writer.done`;
    this.loadStartedAt = Date.now();
    await this.measureClock();
    await this.vm.run(`
      cd ${W}
      setsid sh -c '${fio} > ${W}/fio.json 2> ${W}/fio.err; echo $? > ${W}/fio.rc' > /dev/null 2>&1 < /dev/null &
      setsid sh -c '${writer}' > /dev/null 2>&1 < /dev/null &
      echo started`);
    await this.progress(200, 5);
  }

  /** Live upgrade: `vfiod serve <same options> --take-over`; resolves when the successor serves and the old one exited 0. */
  async upgrade(timeoutMs = 300_000): Promise<UpgradeRecord> {
    const previous = this.current;
    const index = this.upgrades.length + 1;
    const spawnedAt = Date.now();
    const successor = await VfiodProcess.start(`vfiod serve #${index}`, 'serve', [...this.args, '--take-over'], timeoutMs, {
      match: (l) => l['msg'] === 'upgrade complete: serving',
      what: 'upgrade complete: serving',
    });
    this.serves.push(successor);
    const code = await withDeadline(previous.exited, timeoutMs, `${previous.name} to exit after the hand-over`);
    if (code !== 0) throw new Error(`${previous.name} exited ${code} after the hand-over; log tail:\n${previous.tail()}`);
    const quiescing = last(previous.logged('upgrade requested: quiescing the controllers', spawnedAt));
    const handedOver = last(previous.logged('handed over to the successor', spawnedAt).filter((l) => l['component'] === 'serve'));
    const serving = last(successor.logged('upgrade complete: serving'));
    if (!quiescing || !handedOver || !serving) throw new Error(`upgrade ${index}: log lines missing; old:\n${previous.tail()}\nnew:\n${successor.tail()}`);
    const record: UpgradeRecord = {
      index, spawnedAt, quiescingAt: quiescing.at, servingAt: serving.at,
      handedOverMillis: Number(handedOver['millis']), quiesceMillis: Number(handedOver['quiesceMillis']),
      successorMillis: Number(serving['millis']), pid: successor.pid,
    };
    this.upgrades.push(record);
    return record;
  }

  /**
   * Crash: SIGKILL of the data plane (`--crash-recovery`); resolves once the holder's next data plane logged that it
   * recovered the controller. Recorded like an upgrade (from the kill to the recovery), so `pauses()` covers both.
   * Waits first until the holder's standby data plane is ready (as it is on a host, where crashes are rare), unless
   * `cold`.
   */
  async crash(timeoutMs = 300_000, cold = false): Promise<UpgradeRecord> {
    if (!this.options.crashRecovery) throw new Error('crash() needs crashRecovery: true');
    const holder = this.current;
    const index = this.upgrades.length + 1;
    const lastStart = last(holder.logged('data plane started'))!;
    if (!cold) await holder.waitForLog((l) => l['msg'] === 'standby data plane ready', { timeoutMs, since: lastStart.at, what: 'the standby data plane' });
    const victim = Number(lastStart['pid']);
    if (!Number.isInteger(victim)) throw new Error(`no data plane pid in the holder's log:\n${holder.tail()}`);
    const killedAt = Date.now();
    process.kill(victim, 'SIGKILL');
    const recovered = await holder.waitForLog((l) => l['msg'] === 'recovered from a crash of the previous data plane' && l['generation'] === index, {
      timeoutMs, since: killedAt, what: `recovery ${index}`,
    });
    const started = last(holder.logged('data plane started', killedAt));
    const record: UpgradeRecord = {
      index, spawnedAt: killedAt, quiescingAt: killedAt, servingAt: recovered.at,
      handedOverMillis: NaN, quiesceMillis: NaN, successorMillis: Number(recovered['millis']), pid: Number(started?.['pid']),
    };
    this.upgrades.push(record);
    return record;
  }

  /** Stops the writer and fio (fio's trigger file) and collects what they report. */
  async stopLoad(timeoutMs = 600_000): Promise<LoadResult> {
    const W = this.workDir;
    closeSync(openSync(path.join(W, 'writer.stop'), 'w'));
    await this.vm.waitFor('the writer to stop', () => (existsSync(path.join(W, 'writer.done')) ? true : undefined), timeoutMs, 250);
    closeSync(openSync(path.join(W, 'fio.stop'), 'w'));
    const rc = await this.vm.waitFor('fio to finish', () => {
      const file = path.join(W, 'fio.rc');
      return existsSync(file) && readFileSync(file, 'utf8').trim() !== '' ? Number(readFileSync(file, 'utf8').trim()) : undefined;
    }, timeoutMs, 250);
    await this.measureClock();
    const stdout = readFileSync(path.join(W, 'fio.json'), 'utf8');
    const start = stdout.indexOf('{');
    const jobs = start < 0 ? [] : (JSON.parse(stdout.slice(start)) as { jobs: FioJob[] }).jobs;
    const latencies: LoadResult['latencies'] = [];
    for (let job = 1; job <= this.options.cpus; job++) {
      const file = path.join(W, `io_lat.${job}.log`);
      if (!existsSync(file)) continue;
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const fields = line.split(',');
        if (fields.length < 3) continue;
        latencies.push({ at: Number(fields[0]), ms: Number(fields[1]) / 1e6, write: fields[2]!.trim() === '1' });
      }
    }
    return {
      code: rc, jobs, stderr: readFileSync(path.join(W, 'fio.err'), 'utf8') + (start > 0 ? stdout.slice(0, start) : ''),
      latencies, flushedBlocks: this.flushedSoFar(), writerError: readIf(path.join(W, 'writer.err')).trim(),
    };
  }

  /** The guest's kernel messages since the load started that mean an NVMe error, a timeout, an abort or a reset. */
  async kernelProblems(): Promise<string[]> {
    const out = await this.vm.run('dmesg');
    return out.split('\n').filter((l) => /nvme|I\/O error|blk_update_request|Buffer I\/O/i.test(l))
      .filter((l) => /error|timeout|abort|reset|invalid|failed|disabl|removing|not ready|fatal/i.test(l));
  }

  /** The backing file's bytes at `offset` (the host's view). */
  readBacking(offset: number, length: number): Buffer {
    const fd = openSync(this.image, 'r');
    try {
      const out = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const n = readSync(fd, out, done, length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
      return out.subarray(0, done);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * The pause each upgrade cost the guest: the longest fio I/O whose lifetime overlapped the hand-over (from the
   * quiesce to the successor serving, in guest time), next to the longest I/O far from any upgrade.
   */
  pauses(load: LoadResult): PauseReport {
    const best = [...this.clockSamples].sort((a, b) => a.uncertainty - b.uncertainty)[0] ?? { offset: 0, uncertainty: Infinity };
    const slack = best.uncertainty + 20;
    const windows = this.upgrades.map((u) => ({ index: u.index, from: u.quiescingAt + best.offset - slack, to: u.servingAt + best.offset + slack, u }));
    // No spread of the latency log into Math.min/max: a long run logs more I/Os than a call takes arguments.
    const firstIo = load.latencies.reduce((min, io) => Math.min(min, io.at - io.ms), Infinity);
    const longest = (from: number, to: number): { ms: number; ios: number } => {
      const hits = load.latencies.filter((io) => io.at >= from && io.at - io.ms <= to);
      return { ms: hits.reduce((max, io) => Math.max(max, io.ms), 0), ios: hits.length };
    };
    const perUpgrade = windows.map((w, i) => {
      const hit = longest(w.from, w.to);
      // The control window: as long as this one, centred between the previous upgrade (or the load's start) and this.
      const previousEnd = i === 0 ? firstIo + CONTROL_MARGIN_MS : windows[i - 1]!.to + CONTROL_MARGIN_MS;
      const length = w.to - w.from;
      const centre = (previousEnd + w.from - CONTROL_MARGIN_MS) / 2;
      const fits = centre - length / 2 > previousEnd && centre + length / 2 < w.from - CONTROL_MARGIN_MS;
      const quiet = fits ? longest(centre - length / 2, centre + length / 2) : undefined;
      const control = quiet && quiet.ios > 0 ? quiet.ms : undefined;
      return { index: w.index, longestIoMs: hit.ms, ios: hit.ios, serverPauseMs: w.u.servingAt - w.u.quiescingAt, controlLongestIoMs: control };
    });
    const far = load.latencies.filter((io) => windows.every((w) => io.at < w.from - CONTROL_MARGIN_MS || io.at - io.ms > w.to + CONTROL_MARGIN_MS))
      .map((io) => io.ms).sort((a, b) => a - b);
    const q = (p: number): number => (far.length ? far[Math.min(far.length - 1, Math.floor(p * far.length))]! : 0);
    return {
      perUpgrade,
      baseline: { ios: far.length, p50: q(0.5), p99: q(0.99), max: far.length ? far[far.length - 1]! : 0 },
      clockOffsetMs: best.offset,
      clockUncertaintyMs: best.uncertainty,
    };
  }

  /** Every log line of every vfiod process, oldest process first. */
  allLines(): Array<LogLine & { process: string }> {
    return this.serves.flatMap((s) => s.lines.map((l) => ({ ...l, process: s.name })));
  }

  async stop(): Promise<void> {
    await this.vm?.stop();
    for (const serve of this.serves) await serve.stop();
    if (env('VFIOD_TESTBED_KEEP') !== '1') rmSync(this.dir, { recursive: true, force: true });
  }

  private flushedSoFar(): number {
    return readIf(path.join(this.workDir, 'flushed.txt')).split('\n').filter((l) => l.trim() !== '').length;
  }

  /** Fails at once when fio or the writer ended on its own while the load should run. */
  private checkLoad(): void {
    const W = this.workDir;
    if (existsSync(path.join(W, 'fio.rc')) && !existsSync(path.join(W, 'fio.stop'))) {
      throw new Error(`fio ended on its own (exit ${readIf(path.join(W, 'fio.rc')).trim()}): ${readIf(path.join(W, 'fio.err')).slice(-2000)}\n${readIf(path.join(W, 'fio.json')).slice(0, 2000)}`);
    }
    if (existsSync(path.join(W, 'writer.done')) && !existsSync(path.join(W, 'writer.stop')) && this.flushedSoFar() < MARK_BLOCKS) {
      throw new Error(`the flushed-block writer failed after ${this.flushedSoFar()} blocks: ${readIf(path.join(W, 'writer.err'))}`);
    }
  }

  /** Guest clock minus host clock, from the quickest of three round trips through the guest agent. */
  private async measureClock(): Promise<void> {
    for (let i = 0; i < 3; i++) {
      const before = Date.now();
      const guestNs = (await this.vm.run('date +%s%N')).trim();
      const after = Date.now();
      this.clockSamples.push({ offset: Number(BigInt(guestNs) / 1_000_000n) - (before + after) / 2, uncertainty: (after - before) / 2 });
    }
  }

  /** When the load started (host time); for reports. */
  get loadStarted(): number {
    return this.loadStartedAt;
  }
}

/** How far a control window keeps from an upgrade's window (ms). */
const CONTROL_MARGIN_MS = 500;

/** The serial number of the controller (how the guest finds it). */
export const SERIAL = 'VFIOD-UPGRADE';
/** The namespace: a sparse file of this many MiB. */
const NAMESPACE_MB = 1024;
/** How many numbered blocks the writer may put down (16 MiB). */
const MARK_BLOCKS = 4096;

const SH = [
  'set -e',
  'ctrl() { for c in /sys/class/nvme/nvme*; do [ "$(tr -d " " < $c/serial)" = "$1" ] && { basename $c; return 0; }; done; return 1; }',
].join('\n');

/** Block i: its number in the first 8 bytes, then bytes that depend on it. */
function markBlocks(count: number): Buffer {
  const out = Buffer.alloc(count * BLOCK);
  for (let i = 0; i < count; i++) {
    const block = out.subarray(i * BLOCK, (i + 1) * BLOCK);
    block.writeBigUInt64LE(BigInt(i) + 0x5646494f44000000n, 0);
    for (let j = 8; j < BLOCK; j++) block[j] = (i * 31 + j * 7 + (j >> 8)) & 0xff;
  }
  return out;
}

function readIf(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

function last<T>(items: T[]): T | undefined {
  return items[items.length - 1];
}

function withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`waited ${timeoutMs / 1000} s for ${what}`)), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
}
