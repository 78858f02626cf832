/**
 * hot-path: the NVMe controller's per-command cost in process, without transport or client, so a change to the
 * command path (queue engine, command runner, I/O commands, data pointer, memory namespace) can be measured in
 * isolation and in A/B runs on a noisy machine (each sample is a fixed number of I/Os; the fastest sample counts,
 * since noise only ever slows one down).
 *
 *   npx tsx bench/micro/hot-path.ts [--qd 32] [--bs 4096] [--rw randread|randwrite] [--doorbells polled|trapped]
 *                                   [--ios 2000000] [--samples 7] [--journal] [--prefill] [--json]
 *                                   [--limits controller|namespace|other]
 *
 * --prefill: write the whole namespace first, so reads copy real data (as spdk-compare does, and as a guest's
 * reads of a used disk do); without it a read of a never-written chunk is a zero fill of a cached buffer, which
 * leaves the copy from memory out of the cost.
 * --journal: with crash recovery's command journal attached (src/nvme/command-journal.ts), as under
 * `vfiod serve --crash-recovery`: what journaling each fetch and completion costs.
 * --limits: with I/O rate limits (src/nvme/io-limits.ts) so high that nothing waits (IOPS and bandwidth at their
 * maximum), so what is measured is what checking them costs each command: on the controller, on namespace 1 (the
 * one the I/O goes to), or on another namespace only (`other`: the I/O's own scope is not limited).
 *
 * A host loop in the same thread plays the driver: it writes `qd` SQEs (random LBAs over a 256 MiB memory
 * namespace, PRP1 = a 4 KiB-aligned buffer per slot, PRP2 / a PRP list for larger blocks), rings the SQ tail, lets
 * the controller run one processing pass (polled: the page word + pollDoorbells(false) + processQueues, as the
 * worker's busy loop does; trapped: BAR0 writes, as a REGION_WRITE does), reaps the CQEs and rings the CQ head. The reported
 * ns/IO includes that host work (a few tens of ns); a reference loop of the host side alone is printed with it.
 */
import { performance } from 'node:perf_hooks';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { MemoryNamespace } from '../../src/namespace/memory.js';
import { NvmeController, type InterruptSink } from '../../src/nvme/controller.js';
import { memoryLogger } from '../../src/util/log.js';
import { CommandJournal } from '../../src/nvme/command-journal.js';
import { IO_LIMIT_MAX, type ControllerIoLimits, type IoLimits } from '../../src/nvme/io-limits.js';
import { spread } from '../../src/bench/repetitions.js';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1]! : fallback;
};
const QD = Number(opt('--qd', '32'));
const BS = Number(opt('--bs', '4096'));
const WRITE = opt('--rw', 'randread') === 'randwrite';
const TRAPPED = opt('--doorbells', 'polled') === 'trapped';
const IOS = Number(opt('--ios', '2000000'));
const SAMPLES = Number(opt('--samples', '7'));
const JSON_OUT = args.includes('--json');
const JOURNAL = args.includes('--journal');
const PREFILL = args.includes('--prefill');
const LIMITS = opt('--limits', 'none');

const PAGE = 4096;
const RAM_IOVA = 0x100000;
const RAM_SIZE = 64 * 1024 * 1024;
const NS_BYTES = 256 * 1024 * 1024;
const BLOCK = 512;
const ENTRIES = 1024;

const ram = new Uint8Array(RAM_SIZE);
const ramWords = new Int32Array(ram.buffer);
const memory = new GuestMemory();
memory.add({ iova: RAM_IOVA, size: RAM_SIZE, bytes: ram, readable: true, writable: true });
const namespace = new MemoryNamespace({ sizeBytes: NS_BYTES, blockSize: BLOCK });
if (PREFILL) {
  const pattern = new Uint8Array(1024 * 1024).fill(0xa5);
  for (let offset = 0; offset < NS_BYTES; offset += pattern.length) namespace.writeSync(offset, pattern, 0, pattern.length);
}
let signals = 0;
const interrupts: InterruptSink = { vectorCount: 4, signal: () => void signals++, msixEnabled: () => true };
const doorbells = new Uint32Array(1024);
const controller = new NvmeController({
  dma: memory,
  namespaces: [{ namespace, ids: { nguid: '00112233445566778899aabbccddeeff', eui64: '0011223344556677', uuid: '12345678-9abc-4def-8123-456789abcdef' } }],
  identity: { serialNumber: 'HOTPATH', modelNumber: 'hot path', firmwareRevision: '1', subsystemNqn: 'nqn.2026-01.io.vfiod:hot', ieeeOui: 0x525400, controllerId: 1 },
  interrupts,
  doorbells,
  doorbellsShared: !TRAPPED,
  logger: memoryLogger().logger,
});
/** The highest limits there are: never reached here (default bursts: a tenth of a second's worth). */
const unreachable: IoLimits = { iops: IO_LIMIT_MAX.iops, bytesPerSecond: IO_LIMIT_MAX.bytesPerSecond };
const limitSets: Record<string, ControllerIoLimits | undefined> = {
  none: undefined,
  controller: { controller: unreachable },
  namespace: { namespaces: [{ nsid: 1, ...unreachable }] },
  other: { namespaces: [{ nsid: 2, ...unreachable }] },
};
if (!(LIMITS in limitSets)) throw new Error(`--limits: controller, namespace or other, not ${LIMITS}`);
const limits = limitSets[LIMITS];
if (limits) controller.setIoLimits(limits);
if (JOURNAL) {
  // A plain buffer: the checkpoint memfd is an external ArrayBuffer, which V8 accesses the same way.
  const words = CommandJournal.wordsFor(32, 31 * 1024);
  controller.attachJournal(new CommandJournal(new Int32Array(new ArrayBuffer(words * 4)), 32, true), () => undefined);
}

// ---- guest memory layout -------------------------------------------------------------------------------------------
let next = RAM_IOVA;
const alloc = (bytes: number): number => {
  const iova = next;
  next += Math.ceil(bytes / PAGE) * PAGE;
  return iova;
};
const off = (iova: number): number => iova - RAM_IOVA;
const asq = alloc(64 * 64), acq = alloc(16 * 64);
const sq = alloc(ENTRIES * 64), cq = alloc(ENTRIES * 16);
const buffers = Array.from({ length: QD }, () => alloc(BS));
const prpLists = Array.from({ length: QD }, () => alloc(PAGE));
for (let slot = 0; slot < QD; slot++) {
  // PRP list entries for data pages 2..n (the buffers are contiguous, so the walk merges them into one segment).
  for (let page = 1; page < BS / PAGE; page++) {
    const at = off(prpLists[slot]!) / 4 + (page - 1) * 2;
    ramWords[at] = buffers[slot]! + page * PAGE;
    ramWords[at + 1] = 0;
  }
}

const reg32 = new Uint8Array(4);
const regView = new DataView(reg32.buffer);
const write32 = (offset: number, value: number): void => {
  regView.setUint32(0, value >>> 0, true);
  controller.bar0Write(offset, reg32);
  controller.processQueues();
};

// ---- bring-up (admin queue, one I/O queue pair on vector 1) -----------------------------------------------------
write32(0x24, (15 << 16) | 63); // AQA
write32(0x28, asq); write32(0x2c, 0);
write32(0x30, acq); write32(0x34, 0);
write32(0x14, (6 << 16) | (4 << 20) | 1); // CC: IOSQES 6, IOCQES 4, EN
let adminTail = 0;
const admin = (opcode: number, prp1: number, cdw10: number, cdw11: number): void => {
  const at = off(asq) / 4 + adminTail * 16;
  ramWords.fill(0, at, at + 16);
  ramWords[at] = opcode | ((adminTail + 1) << 16);
  ramWords[at + 6] = prp1;
  ramWords[at + 10] = cdw10;
  ramWords[at + 11] = cdw11;
  adminTail++;
  write32(0x1000, adminTail);
};
admin(0x05, cq, 1 | ((ENTRIES - 1) << 16), 1 | 2 | (1 << 16)); // Create I/O CQ 1, contiguous, IEN, vector 1
admin(0x01, sq, 1 | ((ENTRIES - 1) << 16), 1 | (1 << 16)); // Create I/O SQ 1 on CQ 1
for (let i = 0; i < 2; i++) {
  const status = (ramWords[off(acq) / 4 + i * 4 + 3]! >>> 17) & 0x7fff;
  if (status !== 0) throw new Error(`admin command ${i} failed: status 0x${status.toString(16)}`);
}

// ---- the I/O loop --------------------------------------------------------------------------------------------------
let sqTail = 0, cqHead = 0, phase = 1;
let rng = 0x12345678;
const blocksPerIo = BS / BLOCK;
const lbaSlots = NS_BYTES / BS;
const sqBase = off(sq) / 4, cqBase = off(cq) / 4;
let errors = 0;
/** The busy loop's clock reading, handed to the pass and taken back from it (as the worker does). */
let clock = performance.now();

function ring(index: number, value: number): void {
  if (TRAPPED) {
    regView.setUint32(0, value, true);
    controller.bar0Write(0x1000 + index * 4, reg32); // interrupt mode: one REGION_WRITE each
  } else {
    doorbells[index] = value;
  }
}

/** One round: qd submissions, one processing pass, reap qd completions. Returns completions reaped. */
function round(host: boolean): number {
  for (let slot = 0; slot < QD; slot++) {
    rng ^= rng << 13; rng ^= rng >>> 17; rng ^= rng << 5;
    const lba = ((rng >>> 0) % lbaSlots) * blocksPerIo;
    const at = sqBase + sqTail * 16;
    ramWords[at] = (WRITE ? 0x01 : 0x02) | (slot << 16);
    ramWords[at + 1] = 1; // NSID
    ramWords[at + 6] = buffers[slot]!;
    ramWords[at + 7] = 0;
    ramWords[at + 8] = BS <= PAGE ? 0 : BS === 2 * PAGE ? buffers[slot]! + PAGE : prpLists[slot]!;
    ramWords[at + 9] = 0;
    ramWords[at + 10] = lba;
    ramWords[at + 11] = 0;
    ramWords[at + 12] = blocksPerIo - 1;
    sqTail = sqTail + 1 === ENTRIES ? 0 : sqTail + 1;
  }
  if (!host) {
    ring(2, sqTail);
    if (TRAPPED) controller.processQueues();
    else if (controller.pollDoorbells(false)) clock = controller.processQueues(clock); // the worker's busy loop
    if (clock !== clock) clock = performance.now(); // NaN: no reading from the pass (the loop reads its own)
  }
  let reaped = 0;
  for (;;) {
    const dw3 = host ? (phase << 16) : ramWords[cqBase + cqHead * 4 + 3]!;
    if (((dw3 >>> 16) & 1) !== phase) break;
    if ((dw3 >>> 17) !== 0) errors++;
    reaped++;
    cqHead++;
    if (cqHead === ENTRIES) { cqHead = 0; phase ^= 1; }
    if (host && reaped === QD) break;
  }
  if (!host) {
    ring(3, cqHead);
    if (TRAPPED) controller.processQueues();
  }
  return reaped;
}

/** Process CPU time (user + system) per I/O of each sample: unlike wall time, not inflated by preemption on a loaded machine. */
const cpuSamples: number[] = [];

function sample(host: boolean): number {
  const rounds = Math.max(1, Math.floor(IOS / QD / SAMPLES));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let ios = 0;
  for (let r = 0; r < rounds; r++) ios += round(host);
  const ns = ((performance.now() - t0) * 1e6) / ios;
  const cpu = process.cpuUsage(cpu0);
  if (!host) cpuSamples.push(((cpu.user + cpu.system) * 1e3) / ios);
  if (!host && ios !== rounds * QD) throw new Error(`reaped ${ios} of ${rounds * QD}`);
  return ns;
}

for (let i = 0; i < 3; i++) sample(false); // warm-up: JIT, first touch of the namespace
cpuSamples.length = 0;
const samples = Array.from({ length: SAMPLES }, () => sample(false));
const hostSamples = Array.from({ length: 3 }, () => sample(true));
if (errors > 0) throw new Error(`${errors} commands failed`);
// The limits are there to be checked, not to hold anything back: a command that waited would measure the wait.
if (controller.stats().throttled.total > 0) throw new Error(`${controller.stats().throttled.total} commands waited for the limits`);
const best = Math.min(...samples);
const result = {
  qd: QD, bs: BS, rw: WRITE ? 'randwrite' : 'randread', doorbells: TRAPPED ? 'trapped' : 'polled', limits: LIMITS,
  ns_per_io_best: best, ns_per_io_median: spread(samples)!.median,
  cpu_ns_per_io_best: Math.min(...cpuSamples),
  host_only_ns_per_io: Math.min(...hostSamples), interrupts_signalled: signals,
};
if (JSON_OUT) process.stdout.write(JSON.stringify(result) + '\n');
else {
  process.stdout.write(`${result.rw} ${BS} B, QD${QD}, ${result.doorbells} doorbells, limits ${LIMITS}: best ${best.toFixed(0)} ns/IO, ` +
    `median ${result.ns_per_io_median!.toFixed(0)} ns/IO, CPU best ${result.cpu_ns_per_io_best.toFixed(0)} ns/IO ` +
    `(host side alone ${result.host_only_ns_per_io.toFixed(0)} ns/IO)\n`);
}
