/**
 * SPDK's userspace NVMe driver as a second real vfio-user client: the prebuilt spdk_nvme_identify and spdk_nvme_perf
 * from ../shared/peers/spdk-v24.01 (beside the repository) drive `vfiod serve --poll` (the driver needs the doorbell
 * page mmap-able) with a memory and a file namespace.
 *
 * - Identify: every field spdk_nvme_identify prints is compared with what vfiod presents. Expected values come from
 *   vfiod's configuration (the CLI options below, the identity file) and from vfiod's own builders and constants
 *   (identify.ts, log-pages.ts, features.ts, registers.ts), decoded here with the NVMe layouts. A field SPDK prints
 *   that this test does not map fails the test, so a new capability cannot slip through unchecked.
 * - Before the first identify a guest driver (test/helpers) writes, reads and provokes one LBA Out of Range error,
 *   so the SMART counters and the error log have known, non-trivial contents.
 * - spdk_nvme_perf: a sequential write over the whole file namespace, then 50/50 random read/write on each
 *   namespace, each with an exact I/O count (-d). Afterwards the SMART log must have counted exactly those commands,
 *   and the file, read on the host, must hold only the 4 KiB blocks perf writes (each filled with one byte, 1..8).
 * - SPDK sends DMA_UNMAP with the region's fd attached; vfiod must accept it (no error on SPDK's stderr).
 *
 * Needs root for 2 MiB hugepages (reserved in beforeAll when too few are free) or enough free ones; skips, naming
 * what is missing, without the binaries, their libraries (Debian: libnuma1 libjson-c5 libuuid1 libssl3 libaio1) or
 * hugepages.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseNamespaceUri, openNamespace } from '../../src/namespace/uri.js';
import type { Namespace, NamespaceIds } from '../../src/namespace/namespace.js';
import { FeatureState } from '../../src/nvme/features.js';
import {
  COMPOSITE_TEMPERATURE_K,
  IDENTIFY_DATA_SIZE,
  buildIdentifyController,
  buildIdentifyNamespace,
  buildNamespaceDescriptors,
} from '../../src/nvme/identify.js';
import { resolveControllerIdentity } from '../../src/nvme/identity.js';
import {
  COMMAND_EFFECTS_LOG_SIZE,
  ERROR_LOG_SIZE,
  ERROR_LOG_ENTRY_SIZE,
  ErrorLog,
  FIRMWARE_SLOT_LOG_SIZE,
  NO_PARAMETER_LOCATION,
  SMART_LOG_SIZE,
  buildCommandEffectsLog,
  buildFirmwareSlotLog,
  buildSmartLog,
} from '../../src/nvme/log-pages.js';
import { NVME_VERSION, capabilities } from '../../src/nvme/registers.js';
import { FeatureId, Status } from '../../src/spec/nvme.js';
import { DEFAULT_PCI_IDS } from '../../src/serve/config.js';
import { memoryLogger } from '../../src/util/log.js';
import { Guest } from '../helpers/hypervisor.js';
import { pattern } from '../helpers/nvme-harness.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The shared folder is a sibling of the repository (a copy of it in CI). */
const SPDK_DIR = path.resolve(ROOT, '..', 'shared', 'peers', 'spdk-v24.01');
const IDENTIFY_BIN = path.join(SPDK_DIR, 'bin', 'spdk_nvme_identify');
const PERF_BIN = path.join(SPDK_DIR, 'bin', 'spdk_nvme_perf');
const VFIOD_BIN = path.join(ROOT, 'bin', 'vfiod.js');

/** DPDK memory per SPDK process (identify -d, perf -s), in MiB; one SPDK process runs at a time. */
const SPDK_MEMORY_MIB = 256;
const HUGEPAGE_KIB = 2048;
const HUGEPAGES_NEEDED = (SPDK_MEMORY_MIB * 1024) / HUGEPAGE_KIB;
const HUGEPAGES_MOUNT = '/dev/hugepages';

// The controller's configuration: deliberately not the defaults, so that each value is seen to travel.
const SERIAL = 'VFIOD-SPDK-0042';
const MODEL = 'vfiod under SPDK identify';
const FIRMWARE = 'spdk-t1';
const NQN = 'nqn.2026-12.io.vfiod:spdk-client';
const IO_QUEUES = 6;
const QUEUE_ENTRIES = 512;
const MDTS = 5;
const NS1 = { sizeBytes: 64 * 1024 * 1024, blockSize: 512 };
const NS2 = { sizeBytes: 32 * 1024 * 1024, blockSize: 4096 };
const IO_BYTES = 4096;
/** I/O count of each random read/write perf run. */
const RANDRW_IOS = 4000;
/** Deadline for each SPDK process and for vfiod to come up or stop (busy 2-core CI machine). */
const PROCESS_DEADLINE_MS = 180_000;

/** Debian 12 packages of the shared libraries the prebuilt binaries link. */
const LIBRARY_PACKAGES: Record<string, string> = {
  'libnuma.so.1': 'libnuma1',
  'libjson-c.so.5': 'libjson-c5',
  'libuuid.so.1': 'libuuid1',
  'libssl.so.3': 'libssl3',
  'libcrypto.so.3': 'libssl3',
  'libaio.so.1': 'libaio1',
};

interface HugepageState {
  total: number;
  free: number;
  pageKib: number;
  /** Where hugetlbfs is mounted (DPDK takes the first). */
  mounts: string[];
}

function hugepageState(): HugepageState {
  const meminfo = fs.readFileSync('/proc/meminfo', 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1] ?? 0);
  const mounts = fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields[2] === 'hugetlbfs')
    .map((fields) => fields[1]!);
  return { total: field('HugePages_Total'), free: field('HugePages_Free'), pageKib: field('Hugepagesize'), mounts };
}

const isRoot = process.getuid?.() === 0;

/** What is missing to run SPDK here, or undefined. Hugepages only count when we cannot reserve them (not root). */
function spdkUnavailableReason(): string | undefined {
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'the prebuilt SPDK binaries are x86-64 Linux';
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) {
    return 'dist/cli/main.js (build with npx tsc -p tsconfig.json)';
  }
  const missingBinaries = [IDENTIFY_BIN, PERF_BIN].filter((bin) => {
    try {
      fs.accessSync(bin, fs.constants.X_OK);
      return false;
    } catch {
      return true;
    }
  });
  if (missingBinaries.length > 0) {
    return `SPDK binaries ${missingBinaries.join(', ')} (the shared folder ../shared/peers/spdk-v24.01 beside the repository)`;
  }
  const missingLibraries = new Set<string>();
  for (const bin of [IDENTIFY_BIN, PERF_BIN]) {
    const ldd = spawnSync('ldd', [bin], { encoding: 'utf8' });
    if (ldd.error) return `ldd (to check the SPDK binaries' libraries): ${ldd.error.message}`;
    for (const match of ldd.stdout.matchAll(/^\s*(\S+) => not found/gm)) missingLibraries.add(match[1]!);
  }
  if (missingLibraries.size > 0) {
    const libraries = [...missingLibraries];
    const packages = [...new Set(libraries.map((library) => LIBRARY_PACKAGES[library] ?? '?'))];
    return `shared libraries ${libraries.join(', ')} (Debian packages: ${packages.join(' ')})`;
  }
  const hugepages = hugepageState();
  if (hugepages.pageKib !== HUGEPAGE_KIB) return `2 MiB hugepages (the default hugepage size is ${hugepages.pageKib} KiB)`;
  if (!isRoot) {
    const missing: string[] = [];
    if (hugepages.free < HUGEPAGES_NEEDED) {
      const target = hugepages.total + HUGEPAGES_NEEDED - hugepages.free;
      missing.push(
        `${HUGEPAGES_NEEDED} free 2 MiB hugepages (${hugepages.free} free; as root: echo ${target} > /proc/sys/vm/nr_hugepages)`,
      );
    }
    if (hugepages.mounts.length === 0) missing.push(`a hugetlbfs mount (as root: mount -t hugetlbfs nodev ${HUGEPAGES_MOUNT})`);
    if (missing.length > 0) return missing.join(' and ');
  }
  return undefined;
}

/** What reserveHugepages changed, for restoreHugepages. */
interface HugepageChanges {
  previousTotal?: number;
  mounted?: string;
}

/** As root: raises nr_hugepages until HUGEPAGES_NEEDED are free and mounts hugetlbfs if none is. Says what it did. */
function reserveHugepages(): HugepageChanges {
  const changes: HugepageChanges = {};
  const before = hugepageState();
  if (before.free < HUGEPAGES_NEEDED) {
    changes.previousTotal = before.total;
    const target = before.total + HUGEPAGES_NEEDED - before.free;
    console.log(
      `spdk-client: reserving 2 MiB hugepages: ${before.free} free of ${before.total}, need ${HUGEPAGES_NEEDED}; ` +
        `setting /proc/sys/vm/nr_hugepages to ${target}`,
    );
    fs.writeFileSync('/proc/sys/vm/nr_hugepages', `${target}\n`);
    const after = hugepageState();
    if (after.free < HUGEPAGES_NEEDED) {
      throw new Error(
        `the kernel gave only ${after.free} free 2 MiB hugepages of the ${HUGEPAGES_NEEDED} needed ` +
          `(nr_hugepages ${after.total}; memory too fragmented?)`,
      );
    }
  }
  if (before.mounts.length === 0) {
    console.log(`spdk-client: mounting hugetlbfs on ${HUGEPAGES_MOUNT}`);
    fs.mkdirSync(HUGEPAGES_MOUNT, { recursive: true });
    const mount = spawnSync('mount', ['-t', 'hugetlbfs', 'nodev', HUGEPAGES_MOUNT], { encoding: 'utf8' });
    if (mount.status !== 0) throw new Error(`mount -t hugetlbfs nodev ${HUGEPAGES_MOUNT} failed: ${mount.stderr}`);
    changes.mounted = HUGEPAGES_MOUNT;
  }
  return changes;
}

/** Undoes reserveHugepages (pages still in use elsewhere stay until released: the kernel keeps them as surplus). */
function restoreHugepages(changes: HugepageChanges): void {
  if (changes.mounted !== undefined) spawnSync('umount', [changes.mounted]);
  if (changes.previousTotal !== undefined) fs.writeFileSync('/proc/sys/vm/nr_hugepages', `${changes.previousTotal}\n`);
}

/**
 * DPDK (SPDK's environment) leaves its hugepage file <hugetlbfs>/spdk_pid<pid>map_0 behind at exit with -g (one file
 * for all segments); only the next DPDK process removes it. Remove it at once so its pages are free again.
 */
function removeHugepageFiles(pid: number): void {
  for (const mount of hugepageState().mounts) {
    for (const name of fs.readdirSync(mount)) {
      if (name.startsWith(`spdk_pid${pid}map_`)) fs.rmSync(path.join(mount, name), { force: true });
    }
  }
}

// -----------------------------------------------------------------------------------------------------------------
// Running things

interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(bin: string, args: string[], deadlineMs = PROCESS_DEADLINE_MS): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (child.pid !== undefined) removeHugepageFiles(child.pid);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

async function waitFor<T>(what: string, probe: () => T | undefined, deadlineMs = PROCESS_DEADLINE_MS): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// -----------------------------------------------------------------------------------------------------------------
// Parsing spdk_nvme_identify's report

type Fields = Map<string, string>;

interface IdentifyReport {
  /** The line between the first two ===== rules: SPDK's name for the controller. */
  title: string;
  /** Section title -> its lines. */
  sections: Map<string, string[]>;
}

function splitSections(text: string): IdentifyReport {
  const lines = text.split('\n');
  const sections = new Map<string, string[]>();
  let current: string[] = [];
  let title = '';
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    if (/^=+$/.test(line)) continue;
    if (line.trim() !== '' && /^=+$/.test(lines[index + 1] ?? '')) {
      current = [];
      if (title === '') title = line;
      else if (sections.has(line)) throw new Error(`section '${line}' twice in the report`);
      else sections.set(line, current);
      continue;
    }
    current.push(line);
  }
  return { title, sections };
}

/**
 * `Label:   value` lines into a map. A line without a value (or without a colon) opens a group; indented lines
 * below it are keyed `group / label`. Values have their runs of blanks collapsed.
 */
function parseFields(lines: readonly string[]): Fields {
  const fields: Fields = new Map();
  let group = '';
  for (const line of lines) {
    if (line.trim() === '' || /^-+$/.test(line.trim())) continue;
    const indented = /^\s/.test(line);
    const match = /^\s*([^:]+?):\s*(.*?)\s*$/.exec(line);
    if (!match || match[2] === '') {
      group = (match ? match[1]! : line).trim();
      continue;
    }
    if (!indented) group = '';
    const key = indented && group !== '' ? `${group} / ${match[1]!.trim()}` : match[1]!.trim();
    if (fields.has(key)) throw new Error(`field '${key}' twice in one section`);
    fields.set(key, match[2]!.replace(/\s+/g, ' '));
  }
  return fields;
}

/** Splits lines at those matching `marker` (its first group names the part); lines before the first are dropped. */
function splitAt(lines: readonly string[], marker: RegExp): Map<string, string[]> {
  const parts = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of lines) {
    const match = marker.exec(line);
    if (match) {
      current = [];
      parts.set(match[1]!, current);
    } else current?.push(line);
  }
  return parts;
}

/** Commands Supported and Effects: `Admin|I/O <opcode>h` -> "Supported [effects]" (SPDK's command names are its own). */
function parseCommandEffects(lines: readonly string[]): Fields {
  const fields: Fields = new Map();
  let set = '';
  for (const line of lines) {
    if (line.trim() === 'Admin Commands') set = 'Admin';
    else if (line.trim() === 'I/O Commands') set = 'I/O';
    const match = /\(([0-9A-F]{2})h\): (.*?)\s*$/.exec(line);
    if (match) fields.set(`${set} ${match[1]}h`, match[2]!);
  }
  return fields;
}

interface Section {
  name: string;
  actual: Fields;
  expected: Fields;
  /** Printed fields deliberately not compared here, with the reason (some are checked separately). */
  unchecked?: Record<string, string>;
}

function compareSections(sections: readonly Section[]): string[] {
  const problems: string[] = [];
  for (const { name, actual, expected, unchecked = {} } of sections) {
    for (const [key, value] of expected) {
      const printed = actual.get(key);
      if (printed === undefined) problems.push(`${name}: '${key}' not printed (expected '${value}')`);
      else if (printed !== value) problems.push(`${name}: '${key}' is '${printed}', expected '${value}'`);
    }
    for (const key of actual.keys()) {
      if (!expected.has(key) && !(key in unchecked)) problems.push(`${name}: '${key}' is printed but not mapped by this test`);
    }
  }
  return problems;
}

// -----------------------------------------------------------------------------------------------------------------
// Expected values, decoded from vfiod's own data structures with the NVMe layouts (Base Specification 2.0)

const supported = (bit: boolean): string => (bit ? 'Supported' : 'Not Supported');
const yesNo = (bit: boolean): string => (bit ? 'Yes' : 'No');
const hex = (value: number | bigint): string => `0x${value.toString(16)}`;
const bitOf = (value: number, bit: number): boolean => ((value >>> bit) & 1) === 1;

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A little-endian integer of up to 8 bytes (vfiod's counters stay below 2^53). */
function le(bytes: Uint8Array, offset: number, length: number): number {
  let value = 0;
  for (let index = length - 1; index >= 0; index--) value = value * 256 + bytes[offset + index]!;
  return value;
}

/** SN/MN/FR/firmware slot as SPDK prints them: trailing blanks dropped. */
function ascii(bytes: Uint8Array, offset: number, length: number): string {
  return Buffer.from(bytes.subarray(offset, offset + length)).toString('latin1').replace(/ +$/, '');
}

function hexByte(value: number): string {
  return value.toString(16).toUpperCase().padStart(2, '0');
}

function hexBytes(bytes: Uint8Array, offset: number, length: number): string {
  return Buffer.from(bytes.subarray(offset, offset + length)).toString('hex').toUpperCase();
}

function version(value: number): string {
  const ter = value & 0xff;
  return `${value >>> 16}.${(value >>> 8) & 0xff}${ter !== 0 ? `.${ter}` : ''}`;
}

interface ControllerExpectation {
  cdata: Uint8Array;
  cap: { low: number; high: number };
  features: FeatureState;
}

function feature(features: FeatureState, fid: number, cdw11 = 0): number {
  const result = { status: 0, dw0: 0 };
  features.get(fid, 0, cdw11, result);
  if (result.status !== Status.SUCCESS) throw new Error(`Get Features ${fid} failed in the test's FeatureState`);
  return result.dw0;
}

/** "Controller Capabilities/Features" */
function expectedCapabilities({ cdata, cap }: ControllerExpectation): Fields {
  const v = view(cdata);
  const mpsmin = (cap.high >>> 16) & 0xf;
  const mdts = cdata[77]!;
  const cmic = cdata[76]!;
  const oaes = v.getUint32(92, true);
  const ctratt = v.getUint32(96, true);
  const ver = v.getUint32(80, true);
  const fields: Fields = new Map([
    ['Vendor ID', v.getUint16(0, true).toString(16).padStart(4, '0')],
    ['Subsystem Vendor ID', v.getUint16(2, true).toString(16).padStart(4, '0')],
    ['Serial Number', ascii(cdata, 4, 20)],
    ['Model Number', ascii(cdata, 24, 40)],
    ['Firmware Version', ascii(cdata, 64, 8)],
    ['Recommended Arb Burst', String(cdata[72])],
    ['IEEE OUI Identifier', [73, 74, 75].map((at) => cdata[at]!.toString(16).padStart(2, '0')).join(' ')],
    ['Multi-path I/O / May have multiple subsystem ports', yesNo(bitOf(cmic, 0))],
    ['Multi-path I/O / May have multiple controllers', yesNo(bitOf(cmic, 1))],
    ['Multi-path I/O / Associated with SR-IOV VF', yesNo(bitOf(cmic, 2))],
    ['Max Data Transfer Size', mdts === 0 ? 'Unlimited' : String(2 ** (12 + mpsmin + mdts))],
    ['Max Number of Namespaces', String(v.getUint32(516, true))],
    ['NVMe Specification Version (VS)', version(NVME_VERSION)],
    ['Maximum Queue Entries', String((cap.low & 0xffff) + 1)],
    ['Contiguous Queues Required', yesNo(bitOf(cap.low, 16))],
    ['Arbitration Mechanisms Supported / Weighted Round Robin', supported(bitOf(cap.low, 17))],
    ['Arbitration Mechanisms Supported / Vendor Specific', supported(bitOf(cap.low, 18))],
    ['Reset Timeout', `${500 * (cap.low >>> 24)} ms`],
    ['Doorbell Stride', `${2 ** (2 + (cap.high & 0xf))} bytes`],
    ['NVM Subsystem Reset', supported(bitOf(cap.high, 4))],
    ['Command Sets Supported / NVM Command Set', supported(bitOf(cap.high, 5))],
    ['Boot Partition', supported(bitOf(cap.high, 13))],
    ['Memory Page Size Minimum', `${2 ** (12 + mpsmin)} bytes`],
    ['Memory Page Size Maximum', `${2 ** (12 + ((cap.high >>> 20) & 0xf))} bytes`],
    ['Persistent Memory Region', supported(bitOf(cap.high, 24))],
  ]);
  // SPDK prints its own num_io_queues option, which it lowers to what Set Features Number of Queues granted.
  fields.set('Max Number of I/O Queues', String(IO_QUEUES));
  if (ver !== 0) fields.set('NVMe Specification Version (Identify)', version(ver));
  const notices: Array<[string, number]> = [
    ['Namespace Attribute Notices', 8],
    ['Firmware Activation Notices', 9],
    ['ANA Change Notices', 11],
    ['PLE Aggregate Log Change Notices', 12],
    ['LBA Status Info Alert Notices', 13],
    ['EGE Aggregate Log Change Notices', 14],
    ['Normal NVM Subsystem Shutdown event', 15],
    ['Zone Descriptor Change Notices', 27],
    ['Discovery Log Change Notices', 31],
  ];
  for (const [name, bit] of notices) fields.set(`Optional Asynchronous Events Supported / ${name}`, supported(bitOf(oaes, bit)));
  const attributes: Array<[string, number]> = [
    ['128-bit Host Identifier', 0],
    ['Non-Operational Permissive Mode', 1],
    ['NVM Sets', 2],
    ['Read Recovery Levels', 3],
    ['Endurance Groups', 4],
    ['Predictable Latency Mode', 5],
    ['Traffic Based Keep ALive', 6],
    ['Namespace Granularity', 7],
    ['SQ Associations', 8],
    ['UUID List', 9],
    ['Multi-Domain Subsystem', 10],
    ['Fixed Capacity Management', 11],
    ['Variable Capacity Management', 12],
    ['Delete Endurance Group', 13],
    ['Delete NVM Set', 14],
    ['Extended LBA Formats Supported', 15],
    ['Flexible Data Placement Supported', 19],
  ];
  for (const [name, bit] of attributes) fields.set(`Controller Attributes / ${name}`, supported(bitOf(ctratt, bit)));
  return fields;
}

/** "Admin Command Set Attributes" */
function expectedAdminAttributes({ cdata }: ControllerExpectation): Fields {
  const v = view(cdata);
  const oacs = v.getUint16(256, true);
  const frmw = cdata[260]!;
  const lpa = cdata[261]!;
  const fwug = cdata[319]!;
  const kas = v.getUint16(320, true);
  const firmware = bitOf(oacs, 2);
  const fields: Fields = new Map([
    ['Security Send/Receive', supported(bitOf(oacs, 0))],
    ['Format NVM', supported(bitOf(oacs, 1))],
    ['Firmware Activate/Download', supported(firmware)],
    ['Namespace Management', supported(bitOf(oacs, 3))],
    ['Device Self-Test', supported(bitOf(oacs, 4))],
    ['Directives', supported(bitOf(oacs, 5))],
    ['NVMe-MI', supported(bitOf(oacs, 6))],
    ['Virtualization Management', supported(bitOf(oacs, 7))],
    ['Doorbell Buffer Config', supported(bitOf(oacs, 8))],
    ['Get LBA Status Capability', supported(bitOf(oacs, 9))],
    ['Command & Feature Lockdown Capability', supported(bitOf(oacs, 10))],
    ['Abort Command Limit', String(cdata[258]! + 1)],
    ['Async Event Request Limit', String(cdata[259]! + 1)],
    // SPDK shows FRMW only when OACS advertises Firmware Download/Commit.
    ['Number of Firmware Slots', firmware ? String((frmw >>> 1) & 0x7) : 'N/A'],
    ['Firmware Slot 1 Read-Only', firmware ? yesNo(bitOf(frmw, 0)) : 'N/A'],
    ['Firmware Activation Without Reset', firmware ? yesNo(bitOf(frmw, 4)) : 'N/A'],
    ['Multiple Update Detection Support', firmware ? yesNo(bitOf(frmw, 5)) : 'N/A'],
    [
      'Firmware Update Granularity',
      fwug === 0 ? 'No Information Provided' : fwug === 0xff ? 'No Restriction' : `${fwug * 4} KiB`,
    ],
    ['Per-Namespace SMART Log', yesNo(bitOf(lpa, 0))],
    ['Asymmetric Namespace Access Log Page', supported(bitOf(cdata[76]!, 3))],
    ['Subsystem NQN', Buffer.from(cdata.subarray(768, 1024)).toString('utf8').replace(/\0.*$/s, '')],
    ['Command Effects Log Page', supported(bitOf(lpa, 1))],
    ['Get Log Page Extended Data', supported(bitOf(lpa, 2))],
    ['Telemetry Log Pages', supported(bitOf(lpa, 3))],
    ['Persistent Event Log Pages', supported(bitOf(lpa, 4))],
    ['Supported Log Pages Log Page', bitOf(lpa, 5) ? 'Supported' : 'May Support'],
    ['Commands Supported & Effects Log Page', supported(bitOf(lpa, 5))],
    ['Feature Identifiers & Effects Log Page', bitOf(lpa, 5) ? 'Supported' : 'May Support'],
    ['NVMe-MI Commands & Effects Log Page', bitOf(lpa, 5) ? 'Supported' : 'May Support'],
    ['Data Area 4 for Telemetry Log', supported(bitOf(lpa, 6))],
    ['Error Log Page Entries Supported', String(cdata[262]! + 1)],
    ['Keep Alive', supported(kas !== 0)],
  ]);
  if (kas !== 0) fields.set('Keep Alive Granularity', `${kas * 100} ms`);
  return fields;
}

/** "NVM Command Set Attributes" */
function expectedNvmAttributes({ cdata }: ControllerExpectation): Fields {
  const v = view(cdata);
  const oncs = v.getUint16(520, true);
  const sgls = v.getUint32(536, true);
  const sglSupport = sgls & 0x3;
  const fields: Fields = new Map([
    ['Submission Queue Entry Size / Max', String(2 ** (cdata[512]! >>> 4))],
    ['Submission Queue Entry Size / Min', String(2 ** (cdata[512]! & 0xf))],
    ['Completion Queue Entry Size / Max', String(2 ** (cdata[513]! >>> 4))],
    ['Completion Queue Entry Size / Min', String(2 ** (cdata[513]! & 0xf))],
    ['Number of Namespaces', String(v.getUint32(516, true))],
    ['Compare Command', supported(bitOf(oncs, 0))],
    ['Write Uncorrectable Command', supported(bitOf(oncs, 1))],
    ['Dataset Management Command', supported(bitOf(oncs, 2))],
    ['Write Zeroes Command', supported(bitOf(oncs, 3))],
    ['Set Features Save Field', supported(bitOf(oncs, 4))],
    ['Reservations', supported(bitOf(oncs, 5))],
    ['Timestamp', supported(bitOf(oncs, 6))],
    ['Copy', supported(bitOf(oncs, 8))],
    ['Volatile Write Cache', bitOf(cdata[525]!, 0) ? 'Present' : 'Not Present'],
    ['Atomic Write Unit (Normal)', String(v.getUint16(526, true) + 1)],
    ['Atomic Write Unit (PFail)', String(v.getUint16(528, true) + 1)],
    ['Atomic Compare & Write Unit', String(v.getUint16(532, true) + 1)],
    ['Fused Compare & Write', supported(bitOf(v.getUint16(522, true), 0))],
    [
      'Scatter-Gather List / SGL Command Set',
      sglSupport === 1 ? 'Supported' : sglSupport === 2 ? 'Supported (Dword aligned)' : 'Not Supported',
    ],
    ['Scatter-Gather List / SGL Keyed', supported(bitOf(sgls, 2))],
    ['Scatter-Gather List / SGL Bit Bucket Descriptor', supported(bitOf(sgls, 16))],
    ['Scatter-Gather List / SGL Metadata Pointer', supported(bitOf(sgls, 17))],
    ['Scatter-Gather List / Oversized SGL', supported(bitOf(sgls, 18))],
    ['Scatter-Gather List / SGL Metadata Address', supported(bitOf(sgls, 19))],
    ['Scatter-Gather List / SGL Offset', supported(bitOf(sgls, 20))],
    ['Scatter-Gather List / Transport SGL Data Block', supported(bitOf(sgls, 21))],
    ['Replay Protected Memory Block', (v.getUint32(272, true) & 0x7) > 0 ? 'Supported' : 'Not Supported'],
  ]);
  for (const [index, offset] of [134, 136, 138].entries()) {
    const crdt = v.getUint16(offset, true);
    if (crdt !== 0) fields.set(`Command Retry Delay Time ${index + 1}`, `${crdt * 100} milliseconds`);
  }
  return fields;
}

/** "Power Management", from power state descriptor 0.. NPSS and Get Features Power Management. */
function expectedPowerManagement({ cdata, features }: ControllerExpectation): Fields {
  const v = view(cdata);
  const states = cdata[263]! + 1;
  const fields: Fields = new Map([
    ['Number of Power States', String(states)],
    ['Current Power State', `Power State #${feature(features, FeatureId.POWER_MANAGEMENT) & 0x1f}`],
    ['Non-Operational Permissive Mode', supported(bitOf(v.getUint32(96, true), 1))],
  ]);
  /** Scale 1: 0.0001 W units, 2: 0.01 W units. */
  const power = (value: number, scale: number): string => {
    const unit = scale === 1 ? 10000 : 100;
    return `${Math.floor(value / unit)}.${String(value % unit).padStart(scale === 1 ? 4 : 2, '0')} W`;
  };
  for (let state = 0; state < states; state++) {
    const at = 2048 + state * 32;
    const group = `Power State #${state}`;
    const maxPowerScale = bitOf(cdata[at + 3]!, 0) ? 1 : 2;
    const enlat = v.getUint32(at + 4, true);
    const exlat = v.getUint32(at + 8, true);
    const ips = cdata[at + 18]! >>> 6;
    const aps = cdata[at + 22]! >>> 6;
    fields.set(`${group} / Max Power`, power(v.getUint16(at, true), maxPowerScale));
    fields.set(`${group} / Non-Operational State`, bitOf(cdata[at + 3]!, 1) ? 'Non-Operation' : 'Operational');
    fields.set(`${group} / Entry Latency`, enlat === 0 ? 'Not Reported' : `${enlat} microseconds`);
    fields.set(`${group} / Exit Latency`, exlat === 0 ? 'Not Reported' : `${exlat} microseconds`);
    fields.set(`${group} / Relative Read Throughput`, String(cdata[at + 12]! & 0x1f));
    fields.set(`${group} / Relative Read Latency`, String(cdata[at + 13]! & 0x1f));
    fields.set(`${group} / Relative Write Throughput`, String(cdata[at + 14]! & 0x1f));
    fields.set(`${group} / Relative Write Latency`, String(cdata[at + 15]! & 0x1f));
    const idle = v.getUint16(at + 16, true);
    const active = v.getUint16(at + 20, true);
    fields.set(`${group} / Idle Power`, ips === 1 || ips === 2 ? power(idle, ips) : 'Not Reported');
    fields.set(`${group} / Active Power`, aps === 1 || aps === 2 ? power(active, aps) : 'Not Reported');
  }
  return fields;
}

/** What the SMART / Health log should hold at the time of an identify. */
interface HealthState {
  bytesRead: number;
  bytesWritten: number;
  hostReadCommands: number;
  hostWriteCommands: number;
  errorLogEntries: number;
}

/** "Health Information": buildSmartLog's page for the state the test expects, as SPDK prints it. */
function expectedHealth(state: HealthState, features: FeatureState): Fields {
  const page = new Uint8Array(SMART_LOG_SIZE);
  buildSmartLog(page, {
    criticalWarning: 0,
    compositeTemperatureK: COMPOSITE_TEMPERATURE_K,
    counters: { ...state, busyMillis: 0, mediaErrors: 0 },
    powerCycles: 1, // controller.ts: one power cycle per vfiod process
    powerOnHours: 0, // the test runs well below an hour
    unsafeShutdowns: 0, // every client here shuts the controller down before it disconnects
    errorLogEntries: state.errorLogEntries,
  });
  const v = view(page);
  const warning = page[0]!;
  const temperature = v.getUint16(1, true);
  const threshold = feature(features, FeatureId.TEMPERATURE_THRESHOLD); // composite sensor, over-temperature
  const fields: Fields = new Map([
    ['Critical Warnings / Available Spare Space', bitOf(warning, 0) ? 'WARNING' : 'OK'],
    ['Critical Warnings / Temperature', bitOf(warning, 1) ? 'WARNING' : 'OK'],
    ['Critical Warnings / Device Reliability', bitOf(warning, 2) ? 'WARNING' : 'OK'],
    ['Critical Warnings / Read Only', yesNo(bitOf(warning, 3))],
    ['Critical Warnings / Volatile Memory Backup', bitOf(warning, 4) ? 'WARNING' : 'OK'],
    ['Current Temperature', `${temperature} Kelvin (${temperature - 273} Celsius)`],
    ['Temperature Threshold', `${threshold} Kelvin (${threshold - 273} Celsius)`],
    ['Available Spare', `${page[3]}%`],
    ['Available Spare Threshold', `${page[4]}%`],
    ['Life Percentage Used', `${page[5]}%`],
    ['Data Units Read', String(le(page, 32, 8))],
    ['Data Units Written', String(le(page, 48, 8))],
    ['Host Read Commands', String(le(page, 64, 8))],
    ['Host Write Commands', String(le(page, 80, 8))],
    ['Power Cycles', String(le(page, 112, 8))],
    ['Power On Hours', `${le(page, 128, 8)} hours`],
    ['Unsafe Shutdowns', String(le(page, 144, 8))],
    ['Unrecoverable Media Errors', String(le(page, 160, 8))],
    ['Lifetime Error Log Entries', String(le(page, 176, 8))],
    ['Warning Temperature Time', `${v.getUint32(192, true)} minutes`],
    ['Critical Temperature Time', `${v.getUint32(196, true)} minutes`],
  ]);
  for (let sensor = 0; sensor < 8; sensor++) {
    const kelvin = v.getUint16(200 + sensor * 2, true);
    if (kelvin !== 0) fields.set(`Temperature Sensor ${sensor + 1}`, `${kelvin} Kelvin (${kelvin - 273} Celsius)`);
  }
  return fields;
}

/** "Firmware Slot Information" */
function expectedFirmwareSlots(): Fields {
  const page = new Uint8Array(FIRMWARE_SLOT_LOG_SIZE);
  buildFirmwareSlotLog(page, FIRMWARE);
  const afi = page[0]!;
  const fields: Fields = new Map([['Active slot', String(afi & 0x7)]]);
  if (((afi >>> 4) & 0x7) !== 0) fields.set('Next controller reset slot', String((afi >>> 4) & 0x7));
  for (let slot = 0; slot < 7; slot++) {
    const at = 8 + slot * 8;
    if (page.subarray(at, at + 8).some((byte) => byte !== 0)) {
      fields.set(`Slot ${slot + 1} Firmware Revision`, ascii(page, at, 8));
    }
  }
  return fields;
}

/** "Commands Supported and Effects" */
function expectedCommandEffects(): Fields {
  const page = new Uint8Array(COMMAND_EFFECTS_LOG_SIZE);
  buildCommandEffectsLog(page);
  const v = view(page);
  const fields: Fields = new Map();
  for (const [set, base] of [['Admin', 0], ['I/O', 1024]] as const) {
    for (let opcode = 0; opcode < 256; opcode++) {
      const effects = v.getUint32(base + opcode * 4, true);
      if (!bitOf(effects, 0)) continue;
      const cse = (effects >>> 16) & 0x7;
      const notes = [
        bitOf(effects, 1) ? 'LBA-Change' : '',
        bitOf(effects, 2) ? 'NS-Cap-Change' : '',
        bitOf(effects, 3) ? 'NS-Inventory-Change' : '',
        bitOf(effects, 4) ? 'Ctrlr-Cap-Change' : '',
        cse === 1 ? 'Per-NS-Exclusive' : cse === 2 ? 'All-NS-Exclusive' : '',
      ].filter((note) => note !== '');
      fields.set(`${set} ${hexByte(opcode)}h`, ['Supported', ...notes].join(' '));
    }
  }
  return fields;
}

/** "Error Log": entry index -> fields, for the entries the error log should hold. */
function expectedErrorLog(errors: ErrorLog): Map<string, Fields> {
  const page = new Uint8Array(ERROR_LOG_SIZE);
  errors.build(page);
  const entries = new Map<string, Fields>();
  for (let index = 0; index * ERROR_LOG_ENTRY_SIZE < page.length; index++) {
    const at = index * ERROR_LOG_ENTRY_SIZE;
    const count = le(page, at, 8);
    if (count === 0) continue;
    const status = view(page).getUint16(at + 12, true);
    entries.set(
      String(index),
      new Map([
        ['Error Count', hex(count)],
        ['Submission Queue Id', hex(le(page, at + 8, 2))],
        ['Command Id', hex(le(page, at + 10, 2))],
        ['Phase Bit', (status & 1).toString(16)],
        ['Status Code', hex((status >>> 1) & 0xff)],
        ['Status Code Type', hex((status >>> 9) & 0x7)],
        ['Do Not Retry', ((status >>> 15) & 1).toString(16)],
        ['Error Location', hex(le(page, at + 14, 2))],
        ['LBA', hex(le(page, at + 16, 8))],
        ['Namespace', hex(le(page, at + 24, 4))],
        ['Vendor Log Page', hex(page[at + 28]!)],
      ]),
    );
  }
  return entries;
}

/** One namespace, from vfiod's Identify Namespace and descriptor list builders on the same backend. */
function expectedNamespace(namespace: Namespace, ids: NamespaceIds, { cdata, features }: ControllerExpectation): Fields {
  const data = new Uint8Array(IDENTIFY_DATA_SIZE);
  buildIdentifyNamespace(data, namespace, ids);
  const descriptors = new Uint8Array(IDENTIFY_DATA_SIZE);
  buildNamespaceDescriptors(descriptors, ids);
  const descriptor = (type: number): Uint8Array | undefined => {
    for (let at = 0; at < descriptors.length && descriptors[at] !== 0; at += 4 + descriptors[at + 1]!) {
      if (descriptors[at] === type) return descriptors.subarray(at + 4, at + 4 + descriptors[at + 1]!);
    }
    return undefined;
  };
  const v = view(data);
  const oncs = view(cdata).getUint16(520, true);
  const nsfeat = data[24]!;
  const dlfeat = data[33]!;
  const format = (data[26]! & 0xf) | ((data[26]! >>> 5) << 4);
  const lbaf = (index: number): { ms: number; lbads: number } => ({
    ms: v.getUint16(128 + index * 4, true),
    lbads: data[128 + index * 4 + 2]!,
  });
  const blockBytes = 2 ** lbaf(format).lbads;
  const blocks = (offset: number): string => {
    const count = le(data, offset, 8);
    return `${count} (${Math.floor((count * blockBytes) / 2 ** 30)}GiB)`;
  };
  const tler = feature(features, FeatureId.ERROR_RECOVERY) & 0xffff;
  const csi = descriptor(0x4)?.[0] ?? 0;
  const readValue = dlfeat & 0x7;
  const fields: Fields = new Map([
    ['Error Recovery Timeout', tler === 0 ? 'Unlimited' : `${tler * 100} milliseconds`],
    ['Command Set Identifier', `${csi === 0 ? 'NVM' : csi === 2 ? 'ZNS' : 'Unknown'} (${hexByte(csi)}h)`],
    ['Deallocate', supported(bitOf(oncs, 2))],
    ['Deallocated/Unwritten Error', supported(bitOf(nsfeat, 2))],
    ['Deallocated Read Value', readValue === 1 ? 'All 0x00' : readValue === 2 ? 'All 0xFF' : 'Unknown'],
    ['Deallocate in Write Zeroes', supported(bitOf(dlfeat, 3))],
    ['Deallocated Guard Field', bitOf(dlfeat, 4) ? 'CRC for Read Value' : '0xFFFF'],
    ['Flush', supported(bitOf(cdata[525]!, 0))],
    ['Reservation', supported(bitOf(oncs, 5))],
    ['Namespace Sharing Capabilities', bitOf(data[30]!, 0) ? 'Multiple Controllers' : 'Private'],
    ['Size (in LBAs)', blocks(0)],
    ['Capacity (in LBAs)', blocks(8)],
    ['Utilization (in LBAs)', blocks(16)],
    ['Thin Provisioning', supported(bitOf(nsfeat, 0))],
    ['Per-NS Atomic Units', yesNo(bitOf(nsfeat, 1))],
    ['NGUID/EUI64 Never Reused', yesNo(bitOf(nsfeat, 3))],
    ['Namespace Write Protected', yesNo(bitOf(data[99]!, 0))],
    ['Number of LBA Formats', String(data[25]! + 1)],
    ['Current LBA Format', `LBA Format #${String(format).padStart(2, '0')}`],
  ]);
  const noiob = v.getUint16(46, true);
  if (noiob !== 0) fields.set('Optimal I/O Boundary', `${noiob} blocks`);
  if (data.subarray(104, 120).some((byte) => byte !== 0)) fields.set('NGUID', hexBytes(data, 104, 16));
  if (data.subarray(120, 128).some((byte) => byte !== 0)) fields.set('EUI64', hexBytes(data, 120, 8));
  const uuid = descriptor(0x3);
  if (uuid) {
    const text = Buffer.from(uuid).toString('hex');
    const groups = [text.slice(0, 8), text.slice(8, 12), text.slice(12, 16), text.slice(16, 20), text.slice(20)];
    fields.set('UUID', groups.join('-'));
  }
  for (let index = 0; index <= data[25]!; index++) {
    const { ms, lbads } = lbaf(index);
    fields.set(`LBA Format #${String(index).padStart(2, '0')}`, `Data Size: ${2 ** lbads} Metadata Size: ${ms}`);
  }
  return fields;
}

// -----------------------------------------------------------------------------------------------------------------

const unavailable = spdkUnavailableReason();
if (unavailable) console.log(`skipping the SPDK client tests: missing ${unavailable}`);

describe.skipIf(unavailable !== undefined)('SPDK v24.01 driver against vfiod serve --poll', () => {
  let dir: string;
  let socketDir: string;
  let logPath: string;
  let serve: ChildProcess | undefined;
  let serveExit: Promise<number | null>;
  let servedSince = 0;
  let ns1Uri: string;
  let ns2Uri: string;
  let ns2Path: string;
  /** The same backends vfiod opened, opened again here so vfiod's builders see identical namespaces. */
  const namespaces: Namespace[] = [];
  let namespaceIds: NamespaceIds[] = [];
  let controller: ControllerExpectation;
  /** What the SMART log and the error log should hold; updated as the tests do I/O. */
  const health: HealthState = {
    bytesRead: 0,
    bytesWritten: 0,
    hostReadCommands: 0,
    hostWriteCommands: 0,
    errorLogEntries: 0,
  };
  const errors = new ErrorLog();
  /** stderr of every SPDK process run, for the DMA_UNMAP check. */
  const spdkStderr: string[] = [];

  const transportId = (nsid?: number): string =>
    `trtype:VFIOUSER traddr:${socketDir} subnqn:${NQN}${nsid === undefined ? '' : ` ns:${nsid}`}`;

  const serveLog = (): Array<Record<string, unknown>> =>
    fs
      .readFileSync(logPath, 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);

  async function identify(): Promise<{ report: IdentifyReport; result: ProcessResult }> {
    const result = await run(IDENTIFY_BIN, ['-r', transportId(), '-d', String(SPDK_MEMORY_MIB), '-g']);
    spdkStderr.push(result.stderr);
    expect(result, `spdk_nvme_identify failed:\n${result.stderr}\n${result.stdout}`).toMatchObject({ code: 0 });
    expect(result.stderr.split('\n').filter((line) => /error|fail/i.test(line))).toEqual([]);
    return { report: splitSections(result.stdout), result };
  }

  /** Compares a whole identify report with what vfiod should present now. */
  function checkReport(report: IdentifyReport): void {
    const section = (title: string): string[] => {
      const lines = report.sections.get(title);
      if (!lines) throw new Error(`no '${title}' section in spdk_nvme_identify's report`);
      return lines;
    };
    const namespaceLines = splitAt(section('Active Namespaces'), /^Namespace ID:(\d+)$/);
    expect([...namespaceLines.keys()]).toEqual(['1', '2']);
    const errorEntries = splitAt(section('Error Log'), /^Entry: (\d+)$/);
    const expectedErrors = expectedErrorLog(errors);
    expect([...errorEntries.keys()]).toEqual([...expectedErrors.keys()]);
    const features = controller.features;
    const queues = feature(features, FeatureId.NUMBER_OF_QUEUES);
    const arbitrationBurst = feature(features, FeatureId.ARBITRATION) & 0x7;
    const plain = (name: string, expected: Fields): Section => ({ name, actual: parseFields(section(name)), expected });
    const sections: Section[] = [
      plain('Controller Capabilities/Features', expectedCapabilities(controller)),
      plain('Controller Memory Buffer Support', new Map([['Supported', yesNo(bitOf(controller.cap.high, 25))]])),
      plain('Persistent Memory Region Support', new Map([['Supported', yesNo(bitOf(controller.cap.high, 24))]])),
      plain('Admin Command Set Attributes', expectedAdminAttributes(controller)),
      plain('NVM Command Set Attributes', expectedNvmAttributes(controller)),
      plain('Firmware Slot Information', expectedFirmwareSlots()),
      {
        name: 'Commands Supported and Effects',
        actual: parseCommandEffects(section('Commands Supported and Effects')),
        expected: expectedCommandEffects(),
      },
      ...[...expectedErrors].map(([index, expected]) => ({
        name: `Error Log entry ${index}`,
        actual: parseFields(errorEntries.get(index) ?? []),
        expected,
      })),
      // Priority weights are printed only with Weighted Round Robin (CAP.AMS), compared above.
      plain('Arbitration', new Map([['Arbitration Burst', arbitrationBurst === 7 ? 'no limit' : String(2 ** arbitrationBurst)]])),
      plain('Power Management', expectedPowerManagement(controller)),
      {
        name: 'Health Information',
        actual: parseFields(section('Health Information')),
        expected: expectedHealth(health, features),
        unchecked: { 'Controller Busy Time': 'depends on timing; its upper bound is checked after the comparison' },
      },
      // SPDK prints NSQA + 1 on both lines (its CQ shift is lost to operator precedence); vfiod grants equal counts.
      plain(
        'Number of Queues',
        new Map([
          ['Number of I/O Submission Queues', String((queues & 0xffff) + 1)],
          ['Number of I/O Completion Queues', String((queues & 0xffff) + 1)],
        ]),
      ),
      ...namespaces.map((namespace, index) => ({
        name: `Namespace ${index + 1}`,
        actual: parseFields(namespaceLines.get(String(index + 1)) ?? []),
        expected: expectedNamespace(namespace, namespaceIds[index]!, controller),
      })),
    ];
    expect(compareSections(sections)).toEqual([]);
    const known = new Set([
      'Controller Capabilities/Features',
      'Controller Memory Buffer Support',
      'Persistent Memory Region Support',
      'Admin Command Set Attributes',
      'NVM Command Set Attributes',
      'Firmware Slot Information',
      'Commands Supported and Effects',
      'Error Log',
      'Arbitration',
      'Power Management',
      'Health Information',
      'Number of Queues',
      'Active Namespaces',
    ]);
    expect([...report.sections.keys()].filter((title) => !known.has(title)), 'sections this test does not map').toEqual([]);
    // Deliberately not compared with vfiod's values:
    // - the title "NVMe over Fabrics controller at <traddr>:: <subnqn>": it echoes the transport ID we pass (the
    //   identify test checks that it names our NQN);
    // - the command names in Commands Supported and Effects: SPDK's own table (the opcodes and effects are compared);
    // - Controller Busy Time exactly: it depends on timing, so only its upper bound (time since vfiod started);
    // - Power On Hours and Power Cycles are compared, as 0 and 1: the test runs in one vfiod process well below an hour.
    const busy = parseFields(section('Health Information')).get('Controller Busy Time') ?? '';
    const busyMinutes = Number(/^(\d+) minutes$/.exec(busy)?.[1]);
    expect(busyMinutes).toBeLessThanOrEqual(Math.floor((Date.now() - servedSince) / 60_000));
  }

  /** Host Read/Write Commands from a report. */
  function commandCounts(report: IdentifyReport): { reads: number; writes: number } {
    const fields = parseFields(report.sections.get('Health Information') ?? []);
    return { reads: Number(fields.get('Host Read Commands')), writes: Number(fields.get('Host Write Commands')) };
  }

  async function perf(nsid: number, args: string[]): Promise<ProcessResult> {
    const result = await run(PERF_BIN, [
      '-r',
      transportId(nsid),
      '-s',
      String(SPDK_MEMORY_MIB),
      '-g',
      '-q',
      '8',
      '-o',
      String(IO_BYTES),
      // -d stops after exactly that many I/Os; -t only caps the run on a very slow machine.
      '-t',
      '120',
      ...args,
    ]);
    spdkStderr.push(result.stderr);
    expect(result, `spdk_nvme_perf failed:\n${result.stderr}\n${result.stdout}`).toMatchObject({ code: 0 });
    expect(result.stderr.split('\n').filter((line) => /error|fail/i.test(line))).toEqual([]);
    // "VFIOUSER (<traddr>) NSID <n> from core  <c>:  <IOPS>  <MiB/s>  <latencies>"
    const line = result.stdout.split('\n').find((text) => text.startsWith(`VFIOUSER (${socketDir}) NSID ${nsid} from core`));
    expect(line, `no result line for NSID ${nsid}:\n${result.stdout}`).toBeDefined();
    expect(Number(/:\s+([\d.]+)\s/.exec(line!)?.[1])).toBeGreaterThan(0); // IOPS
    return result;
  }

  let hugepageChanges: HugepageChanges = {};

  beforeAll(async () => {
    if (isRoot) hugepageChanges = reserveHugepages();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfiod-spdk-'));
    // SPDK's vfio-user transport takes a directory as traddr and connects to <traddr>/cntrl.
    socketDir = path.join(dir, 'ctrl0');
    ns2Path = path.join(dir, 'ns2.img');
    ns1Uri = `memory:${NS1.sizeBytes}?block-size=${NS1.blockSize}`;
    ns2Uri = `file:${ns2Path}?size=${NS2.sizeBytes}&block-size=${NS2.blockSize}`;
    logPath = path.join(dir, 'vfiod.log');
    const identityPath = path.join(dir, 'identity.json');
    const log = fs.openSync(logPath, 'w');
    // Debug level for the DMA_UNMAP note; the environment reaches the controller's worker thread.
    serve = spawn(
      process.execPath,
      [
        VFIOD_BIN,
        'serve',
        '--socket',
        path.join(socketDir, 'cntrl'),
        '--namespace',
        ns1Uri,
        '--namespace',
        ns2Uri,
        '--poll',
        '--io-queues',
        String(IO_QUEUES),
        '--queue-entries',
        String(QUEUE_ENTRIES),
        '--mdts',
        String(MDTS),
        '--serial',
        SERIAL,
        '--model',
        MODEL,
        '--firmware',
        FIRMWARE,
        '--nqn',
        NQN,
        '--identity',
        identityPath,
      ],
      { stdio: ['ignore', log, log], env: { ...process.env, VFIOD_LOG_LEVEL: 'debug' } },
    );
    fs.closeSync(log);
    serveExit = new Promise((resolve) => serve!.once('exit', (code) => resolve(code)));
    let exited: number | null | undefined;
    void serveExit.then((code) => (exited = code));
    await waitFor('vfiod serve to listen', () => {
      if (exited !== undefined) {
        throw new Error(`vfiod serve exited with ${exited}:\n${fs.readFileSync(logPath, 'utf8')}`);
      }
      const listening = serveLog().some((line) => line['msg'] === 'listening' && line['component'] === 'controller');
      return listening ? true : undefined;
    });
    servedSince = Date.now();

    const stored = JSON.parse(fs.readFileSync(identityPath, 'utf8')) as {
      namespaces: Array<NamespaceIds & { uri: string }>;
    };
    namespaceIds = [ns1Uri, ns2Uri].map((uri) => {
      const entry = stored.namespaces.find((candidate) => candidate.uri === uri);
      if (!entry) throw new Error(`no identity for ${uri} in ${identityPath}`);
      return { nguid: entry.nguid, eui64: entry.eui64, uuid: entry.uuid };
    });
    const { logger } = memoryLogger();
    for (const uri of [ns1Uri, ns2Uri]) namespaces.push(await openNamespace(parseNamespaceUri(uri), logger));

    const cdata = new Uint8Array(IDENTIFY_DATA_SIZE);
    buildIdentifyController(cdata, {
      identity: resolveControllerIdentity({
        serialNumber: SERIAL,
        modelNumber: MODEL,
        firmwareRevision: FIRMWARE,
        subsystemNqn: NQN,
        pciVendorId: DEFAULT_PCI_IDS.vendorId,
        pciSubsystemVendorId: DEFAULT_PCI_IDS.subsystemVendorId,
      }),
      mdts: MDTS, // neither backend limits transfers (maxTransferBytes 0)
      maxQueueEntries: QUEUE_ENTRIES,
      volatileWriteCache: namespaces.some((namespace) => namespace.volatileWriteCache),
    });
    controller = {
      cdata,
      cap: capabilities({ maxQueueEntries: QUEUE_ENTRIES }),
      features: new FeatureState({
        maxIoQueuePairs: IO_QUEUES,
        vectorCount: 64,
        volatileWriteCachePresent: namespaces.some((namespace) => namespace.volatileWriteCache),
      }),
    };
  }, PROCESS_DEADLINE_MS);

  afterAll(async () => {
    if (serve && serve.exitCode === null && serve.signalCode === null) {
      serve.kill('SIGKILL');
      await serveExit;
    }
    for (const namespace of namespaces) await namespace.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    restoreHugepages(hugepageChanges);
  }, PROCESS_DEADLINE_MS);

  it('spdk_nvme_identify prints the identity, limits, capabilities, namespaces and log pages vfiod presents', async () => {
    // A guest driver does known I/O first and provokes one error, so the SMART and error logs are not empty.
    const guest = await Guest.attach(path.join(socketDir, 'cntrl'), { flavour: 'qemu' });
    try {
      const driver = guest.driver;
      await driver.enable();
      await driver.createIoQueuePair(1, 16, 1);
      for (const [index, lba] of [0, 800, 4096].entries()) {
        expect((await driver.write(1, lba, pattern(IO_BYTES, index + 1))).status).toBe(Status.SUCCESS);
        health.hostWriteCommands++;
        health.bytesWritten += IO_BYTES;
      }
      for (const lba of [0, 800]) {
        expect((await driver.read(1, lba, IO_BYTES / NS1.blockSize)).completion.status).toBe(Status.SUCCESS);
        health.hostReadCommands++;
        health.bytesRead += IO_BYTES;
      }
      const beyond = NS1.sizeBytes / NS1.blockSize; // the first LBA past the end
      const failed = (await driver.read(1, beyond, 1)).completion;
      expect(failed.status).toBe(Status.LBA_OUT_OF_RANGE);
      errors.record({
        sqid: 1,
        cid: failed.cid,
        status: failed.status,
        phase: failed.phase,
        nsid: 1,
        lba: beyond,
        parameterLocation: NO_PARAMETER_LOCATION,
      });
      health.errorLogEntries++;
      await driver.shutdown();
    } finally {
      guest.close();
    }

    const { report } = await identify();
    expect(report.title).toContain(NQN);
    checkReport(report);
    // The configuration itself, spelled out (checkReport compares with vfiod's builders fed from it).
    const capabilitiesFields = parseFields(report.sections.get('Controller Capabilities/Features')!);
    expect(capabilitiesFields.get('Serial Number')).toBe(SERIAL);
    expect(capabilitiesFields.get('Model Number')).toBe(MODEL);
    expect(capabilitiesFields.get('Firmware Version')).toBe(FIRMWARE);
    expect(capabilitiesFields.get('Max Data Transfer Size')).toBe(String(4096 * 2 ** MDTS));
    expect(capabilitiesFields.get('Maximum Queue Entries')).toBe(String(QUEUE_ENTRIES));
    expect(capabilitiesFields.get('Max Number of I/O Queues')).toBe(String(IO_QUEUES));
    expect(parseFields(report.sections.get('Admin Command Set Attributes')!).get('Subsystem NQN')).toBe(NQN);
    const namespaceLines = splitAt(report.sections.get('Active Namespaces')!, /^Namespace ID:(\d+)$/);
    for (const [index, { sizeBytes, blockSize }] of [NS1, NS2].entries()) {
      const fields = parseFields(namespaceLines.get(String(index + 1))!);
      expect(fields.get('Size (in LBAs)')).toBe(`${sizeBytes / blockSize} (0GiB)`);
      expect(fields.get('LBA Format #00')).toBe(`Data Size: ${blockSize} Metadata Size: 0`);
      expect(fields.get('NGUID')).toBe(namespaceIds[index]!.nguid.toUpperCase());
      expect(fields.get('EUI64')).toBe(namespaceIds[index]!.eui64.toUpperCase());
      expect(fields.get('UUID')).toBe(namespaceIds[index]!.uuid);
    }
  }, 600_000);

  it('spdk_nvme_perf writes, reads and mixes on both namespaces with no errors, and vfiod counts every command', async () => {
    const ns2Blocks = NS2.sizeBytes / NS2.blockSize;
    const runs: Array<{ nsid: number; args: string[]; ios: number; writesOnly: boolean }> = [
      // Sequential write over the whole file namespace: every block gets a perf buffer (one byte value, 1..8).
      { nsid: 2, args: ['-w', 'write', '-d', String(ns2Blocks)], ios: ns2Blocks, writesOnly: true },
      { nsid: 1, args: ['-w', 'randrw', '-M', '50', '-d', String(RANDRW_IOS)], ios: RANDRW_IOS, writesOnly: false },
      { nsid: 2, args: ['-w', 'randrw', '-M', '50', '-d', String(RANDRW_IOS)], ios: RANDRW_IOS, writesOnly: false },
    ];
    let before = commandCounts((await identify()).report);
    for (const { nsid, args, ios, writesOnly } of runs) {
      await perf(nsid, args);
      const { report } = await identify();
      const after = commandCounts(report);
      const reads = after.reads - before.reads;
      const writes = after.writes - before.writes;
      expect({ nsid, args: args.join(' '), commands: reads + writes }).toEqual({ nsid, args: args.join(' '), commands: ios });
      if (writesOnly) expect(reads).toBe(0);
      else {
        expect(reads, `reads of ${args.join(' ')} on NSID ${nsid}`).toBeGreaterThan(0);
        expect(writes, `writes of ${args.join(' ')} on NSID ${nsid}`).toBeGreaterThan(0);
      }
      health.hostReadCommands += reads;
      health.hostWriteCommands += writes;
      health.bytesRead += reads * IO_BYTES;
      health.bytesWritten += writes * IO_BYTES;
      checkReport(report); // data units, NUSE of the now fully written file, unchanged error log, ...
      before = after;
    }

    // On the host: every 4 KiB block of the file is one of perf's buffers, whole.
    const image = fs.readFileSync(ns2Path);
    expect(image.length).toBe(NS2.sizeBytes);
    const badBlocks: string[] = [];
    for (let offset = 0; offset < image.length; offset += IO_BYTES) {
      const block = image.subarray(offset, offset + IO_BYTES);
      const value = block[0]!;
      if (value < 1 || value > 8 || block.some((byte) => byte !== value)) badBlocks.push(`LBA ${offset / NS2.blockSize}`);
    }
    expect(badBlocks.slice(0, 10), `${badBlocks.length} blocks not written whole by perf`).toEqual([]);
  }, 900_000);

  it('SPDK\'s DMA_UNMAP with an fd attached is accepted (no unmap error on either side)', () => {
    expect(spdkStderr.length).toBeGreaterThan(0);
    for (const stderr of spdkStderr) {
      expect(stderr).not.toContain('return failure');
      expect(stderr).not.toContain('DMA_UNMAP');
    }
    const log = serveLog();
    expect(log.filter((line) => line['msg'] === 'DMA_UNMAP came with file descriptors; closed them').length).toBeGreaterThanOrEqual(
      spdkStderr.length,
    );
    expect(log.filter((line) => line['level'] === 'warn' || line['level'] === 'error')).toEqual([]);
  });

  it('vfiod exits 0 on SIGTERM and removes its socket', async () => {
    serve!.kill('SIGTERM');
    expect(await serveExit).toBe(0);
    expect(fs.existsSync(path.join(socketDir, 'cntrl'))).toBe(false);
  }, PROCESS_DEADLINE_MS);
});
