/**
 * The fio external engine (bench/fio-engine, docs/fio-engine.md) against a real `vfiod serve`: the real fio binary
 * loads the engine built against its own headers, drives the emulated controller over the vfio-user socket, and we
 * read fio's JSON. Data round-trips are checked by fio's verify (crc32c headers written, read back, checked) and by
 * reading deallocated ranges back as zeros.
 *
 * The VFIO transport runs for real in the QEMU VFIO guest (testbed/vfio-guest.ts): an SR-IOV NVMe VF bound to
 * vfio-pci, fio with the engine inside the guest (testbed/vfio-guest/guest-fio.sh).
 *
 * Skips (saying why) when fio or its Debian source is unavailable (bench/fio-engine/build.sh exit 3), and the guest
 * part when the VFIO guest cannot run here.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { cleanupVfioGuest, runVfioGuest, vfioGuestUnavailableReason, type VfioGuestRun } from '../../testbed/vfio-guest.js';
import { sleep, temporaryDir } from '../helpers/common.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'vfiod.js');
const buildScript = path.join(root, 'bench', 'fio-engine', 'build.sh');

/** Builds the engine (idempotent, fast when fresh). status 3 = fio/its source unavailable: skip; 1 = a real failure. */
const build = spawnSync('sh', [buildScript], { encoding: 'utf8' });
const engine = build.status === 0 ? build.stdout.trim().split('\n').pop() : undefined;
const skipReason = !existsSync(path.join(root, 'dist', 'cli', 'main.js'))
  ? 'dist/ not built (npm run build)'
  : build.status === 3
    ? `fio engine unavailable: ${build.stderr.trim().split('\n').pop()}`
    : undefined;
if (skipReason) console.warn(`fio-engine tests skipped: ${skipReason}`);

interface Server {
  socket: string;
  process: ChildProcess;
  stop(): Promise<void>;
  /** Resolves once the server's log (JSON lines on stderr) has a line with this "msg". */
  logged(msg: string): Promise<void>;
}

/** Starts `vfiod serve` and resolves once it logs "listening". */
function serve(dir: string, name: string, args: string[]): Promise<Server> {
  const socket = path.join(dir, `${name}.sock`);
  const proc = spawn(process.execPath, [bin, 'serve', '--socket', socket, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null) proc.kill('SIGTERM');
    await exited;
  };
  let text = '';
  const waiters: Array<{ needle: string; resolve: () => void }> = [];
  proc.stderr!.on('data', (chunk: Buffer) => {
    if (text.length < 1 << 20) text += chunk.toString();
    for (const waiter of waiters.filter((w) => text.includes(w.needle))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  });
  const logged = (msg: string): Promise<void> =>
    new Promise((resolve) => {
      const needle = `"msg":"${msg}"`;
      if (text.includes(needle)) resolve();
      else waiters.push({ needle, resolve });
    });
  return new Promise((resolve, reject) => {
    void logged('listening').then(() => resolve({ socket, process: proc, stop, logged }));
    void exited.then((code) => reject(new Error(`vfiod serve exited with ${code}: ${text}`)));
  });
}

interface FioJob {
  jobname: string;
  error: number;
  read: { io_bytes: number; iops: number; total_ios: number; clat_ns: { mean: number } };
  write: { io_bytes: number; iops: number; total_ios: number; clat_ns: { mean: number } };
  trim: { io_bytes: number; total_ios: number };
  sync?: { total_ios: number };
}
interface FioRun {
  status: number | null;
  stderr: string;
  jobs: FioJob[];
}

/** Runs fio on an ini text; JSON goes to a file (the engine's messages go to stderr). */
async function fio(dir: string, name: string, ini: string, env: NodeJS.ProcessEnv = process.env): Promise<FioRun> {
  const jobFile = path.join(dir, `${name}.fio`);
  const out = path.join(dir, `${name}.json`);
  writeFileSync(jobFile, ini);
  // cwd: fio drops verify state files there when a verify fails
  const proc = spawn('fio', ['--output-format=json', `--output=${out}`, jobFile], {
    cwd: dir,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const status = await new Promise<number | null>((resolve) =>
    proc.once('exit', (code, signal) => {
      if (signal) stderr += `\n(fio killed by ${signal})`;
      resolve(code);
    }),
  );
  let jobs: FioJob[] = [];
  try {
    jobs = (JSON.parse(readFileSync(out, 'utf8')) as { jobs: FioJob[] }).jobs;
  } catch {
    /* no JSON: fio failed before running jobs; callers look at status and stderr */
  }
  return { status, stderr, jobs };
}

const globalSection = (socket: string, extra = ''): string =>
  `[global]\nioengine=external:${engine}\nthread=1\nverify_state_save=0\n` +
  `vfiod_transport=vfio-user\nvfiod_socket=${socket}\n${extra}\n`;

const byName = (run: FioRun, name: string): FioJob[] => run.jobs.filter((job) => job.jobname === name);

describe('fio engine build', () => {
  it('builds against the installed fio (or says why it cannot)', () => {
    expect(build.status === 0 || build.status === 3, `build.sh failed (${build.status}): ${build.stderr}`).toBe(true);
    if (build.status === 0) expect(existsSync(engine!)).toBe(true);
  });
});

describe.skipIf(skipReason)('fio engine over vfio-user (vfiod serve)', () => {
  let dir: string;
  let trapped: Server; // interrupt mode: doorbells are posted REGION_WRITEs over the socket
  let polled: Server; // --poll: the engine writes doorbells into the mmapped page

  beforeAll(async () => {
    dir = temporaryDir('vfiod-fio-');
    trapped = await serve(dir, 'trapped', ['--namespace', 'memory:64M']);
    polled = await serve(dir, 'polled', ['--namespace', `file:${path.join(dir, 'ns.img')}?size=64M`, '--poll']);
  });
  afterAll(async () => {
    await trapped?.stop();
    await polled?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('randwrite with crc32c verify, then randread (memory namespace, trapped doorbells)', async () => {
    const run = await fio(dir, 'trapped-verify', `${globalSection(trapped.socket, 'vfiod_doorbell=trapped')}
[verify]
rw=randwrite
bs=4k
iodepth=16
size=8M
verify=crc32c
do_verify=1
[randread]
stonewall
rw=randread
bs=4k
iodepth=8
size=8M
number_ios=2000
[whole]
stonewall
rw=read
bs=1M
iodepth=4
[irq]
stonewall
vfiod_completion=irq
rw=randwrite
bs=4k
iodepth=8
size=4M
numjobs=2
offset=16M
offset_increment=4M
verify=crc32c
do_verify=1
`);
    expect(run.status, run.stderr).toBe(0);
    const [verify] = byName(run, 'verify');
    expect(verify!.error).toBe(0);
    expect(verify!.write.io_bytes).toBe(8 << 20);
    // verify read every written block back and checked its crc32c: a mismatch would make error != 0
    expect(verify!.read.io_bytes).toBe(8 << 20);
    const [randread] = byName(run, 'randread');
    expect(randread!.error).toBe(0);
    expect(randread!.read.total_ios).toBe(2000);
    // no size=: the job covers the namespace, whose size the engine reports from Identify Namespace
    const [whole] = byName(run, 'whole');
    expect(whole!.error).toBe(0);
    expect(whole!.read.io_bytes).toBe(64 << 20);
    // interrupt completions (MSI-X vector per queue, eventfd): same data round trip, fio sleeps while waiting
    const irq = byName(run, 'irq');
    expect(irq).toHaveLength(2);
    for (const job of irq) {
      expect(job.error).toBe(0);
      expect(job.read.io_bytes).toBe(4 << 20);
      // woken by the interrupt, not by the engine's 100 ms poll() bound
      expect(job.read.clat_ns.mean).toBeLessThan(20e6);
    }
  });

  it('numjobs=2 share a connection, one queue pair each; verify, trim, fsync (file namespace, --poll)', async () => {
    const run = await fio(dir, 'polled-jobs', `${globalSection(polled.socket, 'vfiod_doorbell=mmap')}
[jobs]
rw=randwrite
bs=8k
iodepth=32
size=8M
numjobs=2
offset_increment=8M
verify=crc32c
do_verify=1
[bigblocks]
stonewall
rw=write
bs=256k
iodepth=4
offset=16M
size=4M
verify=crc32c
do_verify=1
[trim]
stonewall
rw=trim
bs=1M
offset=16M
size=2M
[fsync]
stonewall
rw=write
bs=4k
offset=32M
size=256k
fsync=8
`);
    expect(run.status, run.stderr).toBe(0);
    const jobs = byName(run, 'jobs');
    expect(jobs).toHaveLength(2);
    for (const job of jobs) {
      expect(job.error).toBe(0);
      expect(job.write.io_bytes).toBe(8 << 20);
      expect(job.read.io_bytes).toBe(8 << 20);
    }
    const [big] = byName(run, 'bigblocks'); // 256 KiB: PRP lists
    expect(big!.error).toBe(0);
    expect(big!.read.io_bytes).toBe(4 << 20);
    const [trim] = byName(run, 'trim');
    expect(trim!.error).toBe(0);
    expect(trim!.trim.io_bytes).toBe(2 << 20);
    const [fsync] = byName(run, 'fsync');
    expect(fsync!.error).toBe(0);
    expect(fsync!.sync?.total_ios).toBeGreaterThan(0);

    // The trimmed 2 MiB read back as zeros; the rest of what bigblocks wrote does not.
    const zeros = (offset: string): string => `${globalSection(polled.socket)}
[zeros]
rw=write
verify_only=1
verify=pattern
verify_pattern=0
bs=64k
offset=${offset}
size=2M
`;
    const trimmed = await fio(dir, 'zeros-trimmed', zeros('16M'));
    expect(trimmed.status, trimmed.stderr).toBe(0);
    expect(byName(trimmed, 'zeros')[0]!.read.io_bytes).toBe(2 << 20);
    const written = await fio(dir, 'zeros-written', zeros('18M'));
    expect(written.status).not.toBe(0);
    expect(written.stderr).toMatch(/verify failed/);
  });

  it('two targets in one fio process at the same time, one connection each', async () => {
    // the polled job asks for mmapped doorbells, which only the polled server offers: it must reach that server
    const job = (name: string, socket: string, extra = ''): string =>
      `[${name}]\nvfiod_socket=${socket}\n${extra}rw=randwrite\nbs=4k\niodepth=8\noffset=40M\nsize=4M\n` +
      `verify=crc32c\ndo_verify=1\n`;
    const run = await fio(dir, 'two-targets', `${globalSection(trapped.socket)}
${job('on-trapped', trapped.socket)}
${job('on-polled', polled.socket, 'vfiod_doorbell=mmap\n')}`);
    expect(run.status, run.stderr).toBe(0);
    for (const name of ['on-trapped', 'on-polled']) {
      const [result] = byName(run, name);
      expect(result!.error).toBe(0);
      expect(result!.read.io_bytes).toBe(4 << 20);
    }
  });

  it('fails fast, naming the socket, when the server dies in the middle of a run', async () => {
    for (const mode of [[], ['--poll']]) {
      const doomed = await serve(dir, `doomed${mode.length}`, ['--namespace', 'memory:16M', ...mode]);
      const ini = `${globalSection(doomed.socket)}\n[x]\nrw=randread\niodepth=4\ntime_based=1\nruntime=30\n`;
      const running = fio(dir, 'doomed', ini);
      await doomed.logged('controller enabled'); // fio connected; give it a moment of I/O
      await sleep(500);
      doomed.process.kill('SIGKILL');
      const killed = Date.now();
      const run = await running;
      expect(run.status, mode.join()).not.toBe(0);
      const where = `vfiod: vfio-user ${doomed.socket} nsid 1 queue 1: `.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      expect(run.stderr).toMatch(new RegExp(`${where}(controller unreachable|SQ doorbell|CQ doorbell)`));
      expect(Date.now() - killed, 'noticed without waiting for a timeout').toBeLessThan(8_000);
      await doomed.stop();
    }
  });

  it('fails within bounded time, naming the socket, when the server stops answering (SIGSTOP)', async () => {
    const frozen = await serve(dir, 'frozen', ['--namespace', 'memory:16M']);
    try {
      const ini = `${globalSection(frozen.socket)}\n[x]\nrw=randread\niodepth=4\ntime_based=1\nruntime=60\n`;
      const running = fio(dir, 'frozen', ini);
      await frozen.logged('controller enabled');
      await sleep(500);
      frozen.process.kill('SIGSTOP');
      const stopped = Date.now();
      const run = await running;
      expect(run.status).not.toBe(0);
      // the health check's CSTS read gets no reply within the client's 5 s reply timeout
      expect(run.stderr).toMatch(
        /vfiod: vfio-user \S+frozen\.sock nsid 1 queue 1: controller unreachable with 4 commands outstanding: (no reply from server within 5000 ms|server has not read)/,
      );
      expect(Date.now() - stopped, 'not the 60 s runtime, nor a hang').toBeLessThan(20_000);
    } finally {
      frozen.process.kill('SIGCONT');
      await frozen.stop();
    }
  });

  it('fails with a message naming the socket when it cannot connect', async () => {
    const missing = path.join(dir, 'missing.sock');
    const run = await fio(dir, 'bad-socket', `${globalSection(missing)}\n[x]\nrw=read\nsize=1M\n`);
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain(`vfiod: vfio-user ${missing}: connect: connect ${missing}: No such file or directory`);
  });

  it('rejects bad options with precise messages', async () => {
    const cases: Array<[string, string | RegExp]> = [
      ['vfiod_transport=pcie', 'vfiod: vfiod_transport=pcie: must be vfio-user or vfio'],
      ['vfiod_completion=maybe', 'vfiod: vfiod_completion=maybe: must be poll or irq'],
      ['io_submit_mode=offload', "vfiod: can't be used with offloaded submit"], // a queue pair has one owner thread
      ['thread=0', "vfiod: job 'x' needs thread=1"],
      // An NSID the controller could have (1..NN) but does not: Identify returns zeroes (NVMe 2.0), the engine says so.
      ['vfiod_nsid=7', /vfiod: vfio-user \S+ nsid 7: Identify Namespace: namespace 7 is inactive \(NSZE 0\)/],
      // Past NN (1024): Invalid Namespace or Format.
      ['vfiod_nsid=2000', /vfiod: vfio-user \S+ nsid 2000: Identify Namespace: .*SC 0x0b/],
      ['vfiod_doorbell=mmap', 'vfiod_doorbell=mmap but BAR0 offers no mmap-able doorbell page'],
      ['vfiod_qsize=4\niodepth=8', 'vfiod_qsize=4 cannot hold iodepth=8'],
      ['bs=1000', 'is not a multiple of the 512-byte LBA size'],
      ['mem_align=2', 'is not 4-byte aligned (mem_align?)'], // PRP entries address dwords
    ];
    for (const [option, message] of cases) {
      const run = await fio(dir, 'bad-option', `${globalSection(trapped.socket)}\n[x]\nrw=read\nsize=1M\n${option}\n`);
      expect(run.status, option).not.toBe(0);
      if (typeof message === 'string') expect(run.stderr, option).toContain(message);
      else expect(run.stderr, option).toMatch(message);
    }
    // the server survived all of that and still serves
    const run = await fio(dir, 'after-errors', `${globalSection(trapped.socket)}\n[x]\nrw=read\nsize=1M\n`);
    expect(run.status, run.stderr).toBe(0);
    expect(run.jobs[0]!.read.io_bytes).toBe(1 << 20);
  });
});

/**
 * The engine built with AddressSanitizer + UndefinedBehaviorSanitizer (build.sh --sanitize; any UB aborts), run
 * with the runtime preloaded. fio itself leaks a little at exit, so leak checking is off; exitcode 99 keeps a
 * sanitizer report apart from fio's own failures.
 */
const sanitized = skipReason ? undefined : spawnSync('sh', [buildScript, '--sanitize'], { encoding: 'utf8' });
const sanitizedEngine = sanitized?.status === 0 ? sanitized.stdout.trim().split('\n').pop() : undefined;
const libasan = spawnSync('cc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout?.trim();
const sanitizedReason =
  skipReason ??
  (sanitizedEngine ? undefined : `sanitized engine unavailable: ${sanitized?.stderr.trim().split('\n').pop()}`);
if (sanitizedReason && !skipReason) console.warn(`fio-engine sanitizer runs skipped: ${sanitizedReason}`);
const sanitizerEnv = { ...process.env, LD_PRELOAD: libasan, ASAN_OPTIONS: 'detect_leaks=0:exitcode=99' };
const sanitizerReport = /AddressSanitizer|runtime error|LeakSanitizer/;

describe.skipIf(sanitizedReason)('fio engine under AddressSanitizer + UBSan against vfiod serve', () => {
  let dir: string;
  let trapped: Server;
  let polled: Server;
  beforeAll(async () => {
    dir = temporaryDir('vfiod-fio-asan-');
    trapped = await serve(dir, 'trapped', ['--namespace', 'memory:32M']);
    polled = await serve(dir, 'polled', ['--namespace', 'memory:32M', '--poll']);
  });
  afterAll(async () => {
    await trapped?.stop();
    await polled?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('verify, interrupts, two queue pairs, PRP lists from unaligned buffers, trim, flush, jobs ending at different times: no memory error', async () => {
    const run = await fio(
      dir,
      'asan',
      `[global]\nioengine=external:${sanitizedEngine}\nthread=1\nverify_state_save=0\nvfiod_socket=${trapped.socket}
[irq]
vfiod_completion=irq
rw=randwrite
bs=1536
iodepth=8
size=1536k
numjobs=2
offset_increment=2M
verify=crc32c
do_verify=1
[polled]
stonewall
vfiod_socket=${polled.socket}
rw=randwrite
bs=768k
iodepth=4
size=6M
offset=8M
verify=crc32c
do_verify=1
[trim]
stonewall
rw=trim
bs=1M
offset=8M
size=2M
[flush]
stonewall
rw=write
bs=4k
offset=16M
size=128k
fsync=4
[short]
stonewall
rw=randwrite
bs=4k
iodepth=4
offset=20M
size=256k
verify=crc32c
do_verify=1
[long]
rw=randwrite
bs=4k
iodepth=16
offset=24M
size=4M
verify=crc32c
do_verify=1
`,
      sanitizerEnv,
    );
    expect(run.stderr).not.toMatch(sanitizerReport);
    expect(run.status, run.stderr).toBe(0);
    const irq = byName(run, 'irq');
    expect(irq).toHaveLength(2);
    for (const job of irq) expect(job.read.io_bytes).toBe(1536 << 10); // bs 1536: buffers not page-aligned
    expect(byName(run, 'polled')[0]!.read.io_bytes).toBe(6 << 20); // 768 KiB: 192-entry PRP lists
    expect(byName(run, 'trim')[0]!.trim.io_bytes).toBe(2 << 20);
    expect(byName(run, 'flush')[0]!.sync?.total_ios).toBeGreaterThan(0);
    // same group, same connection, ending at different times: the short job deletes its queue pair and drops its
    // reference while the long one still does I/O, which must go on undisturbed
    expect(byName(run, 'short')[0]!.read.io_bytes).toBe(256 << 10);
    expect(byName(run, 'long')[0]!.read.io_bytes).toBe(4 << 20);
  });
});

/**
 * A hostile vfio-user server: speaks just enough of the protocol to get the engine to the step under test, then
 * answers with something bogus. The engine must fail that one job with a message naming the step, never crash.
 */
type Hostile = 'long-version' | 'region-cap-wrap' | 'region-short' | 'huge-message' | 'error-reply' | 'hangup';
function hostileServer(socket: string, scenario: Hostile): Promise<net.Server> {
  const HDR = 16;
  const send = (conn: net.Socket, id: number, cmd: number, payload: Buffer, error = 0, size?: number): void => {
    const header = Buffer.alloc(HDR);
    header.writeUInt16LE(id, 0);
    header.writeUInt16LE(cmd, 2);
    header.writeUInt32LE(size ?? HDR + payload.length, 4);
    header.writeUInt32LE(error ? 0x21 : 0x1, 8); // reply (+ error flag)
    header.writeUInt32LE(error, 12);
    conn.write(Buffer.concat([header, payload]));
  };
  const server = net.createServer((conn) => {
    let pending = Buffer.alloc(0);
    conn.on('error', () => {});
    conn.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= HDR && pending.length >= pending.readUInt32LE(4)) {
        const id = pending.readUInt16LE(0);
        const cmd = pending.readUInt16LE(2);
        pending = pending.subarray(pending.readUInt32LE(4));
        if (cmd === 1) {
          // VERSION 0.0; the capabilities text is far longer than the client keeps when scenario says so
          const pad = scenario === 'long-version' ? 'x'.repeat(4000) : '';
          const caps = Buffer.from(JSON.stringify({ capabilities: { pad, max_msg_fds: 8 } }));
          if (scenario === 'error-reply') send(conn, id, cmd, Buffer.alloc(0), 71);
          else if (scenario === 'huge-message') send(conn, id, cmd, Buffer.alloc(0), 0, 0xffffffff);
          else if (scenario === 'hangup') conn.end(Buffer.alloc(10)); // half a header, then gone
          else send(conn, id, cmd, Buffer.concat([Buffer.alloc(4), caps]));
        } else if (cmd === 4) {
          // DEVICE_GET_INFO: 9 regions, 5 IRQ types (a PCI device)
          const info = Buffer.alloc(16);
          info.writeUInt32LE(16, 0);
          info.writeUInt32LE(scenario === 'long-version' ? 2 : 9, 8);
          info.writeUInt32LE(5, 12);
          send(conn, id, cmd, info);
        } else if (cmd === 5) {
          // GET_REGION_INFO: readable/writable 16 KiB BAR0; the cap-wrap one claims capabilities at 0xfffffff8
          const info = Buffer.alloc(scenario === 'region-short' ? 8 : 64);
          info.writeUInt32LE(info.length, 0);
          if (scenario !== 'region-short') {
            info.writeUInt32LE(scenario === 'region-cap-wrap' ? 0xf : 0x3, 4);
            info.writeUInt32LE(scenario === 'region-cap-wrap' ? 0xfffffff8 : 0, 12);
            info.writeBigUInt64LE(0x4000n, 16);
          }
          send(conn, id, cmd, info);
        } else if (cmd === 9) {
          send(conn, id, cmd, Buffer.alloc(8)); // REGION_READ reply without the data it promises
        } else {
          send(conn, id, cmd, Buffer.alloc(0), 95);
        }
      }
    });
  });
  return new Promise((resolve) => server.listen(socket, () => resolve(server)));
}

describe.skipIf(skipReason)('fio engine against a hostile vfio-user server', () => {
  let dir: string;
  beforeAll(() => {
    dir = temporaryDir('vfiod-fio-hostile-');
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const cases: Array<[Hostile, string]> = [
    ['long-version', 'DEVICE_GET_INFO: device has only 2 regions (not a PCI device?)'],
    ['region-cap-wrap', 'PCI command register: REGION_READ reply: 8 bytes, count 0 (wanted 4 at region 7 offset 0x4)'],
    ['region-short', 'GET_REGION_INFO(BAR0): REGION_INFO reply too short (8)'],
    ['huge-message', 'VERSION: bad msg_size 4294967295 in message (cmd 1 id 1)'],
    ['error-reply', 'VERSION: server replied to command 1 with error 71 (Protocol error)'],
    ['hangup', 'VERSION: server closed the connection'],
  ];
  it.each(cases)('%s: the job fails with a precise message, no crash or memory error', async (scenario, message) => {
    const socket = path.join(dir, `${scenario}.sock`);
    const server = await hostileServer(socket, scenario);
    try {
      const run = await fio(
        dir,
        scenario,
        `[x]\nioengine=external:${sanitizedEngine ?? engine}\nthread=1\nvfiod_socket=${socket}\nrw=read\nsize=1M\n`,
        sanitizedEngine ? sanitizerEnv : process.env,
      );
      expect(run.stderr).not.toMatch(sanitizerReport);
      expect(run.status, run.stderr).toBe(1); // fio's own failure: not a signal, not a sanitizer exit (99)
      expect(run.stderr).toContain(`vfiod: vfio-user ${socket}: ${message}`);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

const guestReason = skipReason ?? vfioGuestUnavailableReason();
if (guestReason && !skipReason) console.warn(`fio-engine VFIO guest test skipped: ${guestReason}`);

describe.skipIf(guestReason)('fio engine over VFIO (NVMe VF on vfio-pci in the QEMU guest)', () => {
  let run: VfioGuestRun | undefined;
  let results: Record<string, unknown> = {};
  let fioJson: { jobs: FioJob[]; 'global options': Record<string, string> } | undefined;
  let fioErr = '';

  beforeAll(async () => {
    run = await runVfioGuest({ script: path.join(root, 'testbed', 'vfio-guest', 'guest-fio.sh') });
    results = run.results ?? {};
    const file = (name: string): string => path.join(run!.workDir, name);
    fioErr = existsSync(file('fio.err')) ? readFileSync(file('fio.err'), 'utf8') : '';
    try {
      fioJson = JSON.parse(readFileSync(file('fio.json'), 'utf8')) as typeof fioJson;
    } catch {
      fioJson = undefined;
    }
    console.log(`fio-engine VFIO guest: QEMU wall ${(run.wallMs / 1000).toFixed(1)} s`);
    if (results['fioStatus'] !== 0) {
      console.log(`guest results: ${JSON.stringify(results)}\nfio stderr:\n${fioErr}`);
      console.log(`console (tail):\n${run.console.split('\n').slice(-40).join('\n')}`);
    }
  }, 300_000);

  afterAll(() => cleanupVfioGuest(run));

  it('the guest created the VF, bound it to vfio-pci and fio ran to the end', () => {
    expect(results['ok'], JSON.stringify(results)).toBe(true);
    expect(results['vf']).toMatch(/^0000:/);
    expect(results['vfDriver']).toBe('vfio-pci');
    expect(results['fioStatus'], fioErr).toBe(0);
    expect(fioJson?.['global options']['vfiod_transport']).toBe('vfio');
    expect(fioJson?.['global options']['vfiod_bdf']).toBe(results['vf']);
  });

  it('randwrite with crc32c verify on two jobs (two I/O queue pairs on the VF), PRP lists, trim, randread', () => {
    const jobs = fioJson?.jobs ?? [];
    const verify = jobs.filter((job) => job.jobname === 'verify');
    expect(verify).toHaveLength(2);
    for (const job of verify) {
      expect(job.error).toBe(0);
      expect(job.write.io_bytes).toBe(4 << 20);
      expect(job.read.io_bytes).toBe(4 << 20); // every block read back through VFIO DMA and its crc32c checked
    }
    const big = jobs.find((job) => job.jobname === 'bigblocks')!;
    expect(big.error).toBe(0);
    expect(big.read.io_bytes).toBe(4 << 20);
    const trim = jobs.find((job) => job.jobname === 'trim')!;
    expect(trim.error).toBe(0);
    expect(trim.trim.io_bytes).toBe(2 << 20);
    const randread = jobs.find((job) => job.jobname === 'randread')!;
    expect(randread.error).toBe(0);
    expect(randread.read.total_ios).toBe(4000);
  });

  it('refuses a function that is not bound to vfio-pci, naming the driver', () => {
    expect(results['pfFioStatus']).not.toBe(0);
    const pfErr = readFileSync(path.join(run!.workDir, 'fio-pf.err'), 'utf8');
    expect(pfErr).toContain(`vfiod: vfio ${String(results['pf'])}: bound to nvme, not vfio-pci`);
  });

  it('interrupt completions through a VFIO MSI-X eventfd (queue 1 on vector 1) with verify', () => {
    const irq = (fioJson?.jobs ?? []).filter((job) => job.jobname === 'irq');
    expect(irq).toHaveLength(1);
    expect(irq[0]!.error).toBe(0);
    expect(irq[0]!.write.io_bytes).toBe(4 << 20);
    expect(irq[0]!.read.io_bytes).toBe(4 << 20);
    // the eventfd woke the job: a missing interrupt would leave each wait to the engine's 100 ms poll() bound
    expect(irq[0]!.read.clat_ns.mean).toBeLessThan(20e6);
  });
});
