/**
 * `vfiod bench` configuration: a YAML file naming the workload matrix and the targets to run it against.
 * Validation walks the whole document and reports every problem with its key path and what is allowed, so one
 * edit fixes a config instead of one error per run.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { DEFAULT_CLAIMS_DB } from '../devices/claims.js';
import { normalizeBdf } from '../util/pci-address.js';
import { parseNamespaceUri } from '../namespace/uri.js';
import { parseSize } from '../util/size.js';

export const RW_MODES = ['read', 'write', 'randread', 'randwrite', 'randrw'] as const;
export type RwMode = (typeof RW_MODES)[number];
export const FILE_ENGINES = ['libaio', 'io_uring', 'psync'] as const;
export type FileEngine = (typeof FILE_ENGINES)[number];
export const TARGET_TYPES = ['emulation', 'passthrough', 'file', 'in-guest'] as const;
export type TargetType = (typeof TARGET_TYPES)[number];

export const MIN_BS = 4096;
export const MAX_BS = 128 * 1024;
export const MAX_IODEPTH = 128;
export const MAX_NUMJOBS = 64;
/** fio runs per point and target: the report gives min, median and max of them. */
export const DEFAULT_REPETITIONS = 3;
export const MAX_REPETITIONS = 100;

/** The dimensions every matrix point combines (one fio run per point and target). */
export interface MatrixConfig {
  rw: RwMode[];
  /** Percentage of reads for randrw. */
  rwmixread: number;
  /** Block sizes in bytes. */
  bs: number[];
  iodepth: number[];
  numjobs: number[];
  verify: boolean[];
  /** Time-based run length in seconds; undefined = size-based (each job moves `size` bytes once). */
  runtimeSeconds: number | undefined;
  /** Seconds fio runs before it starts counting (time-based runs only). */
  rampSeconds: number;
  /** Bytes of the target each job works on (jobs get disjoint regions). */
  sizeBytes: number;
  /** fio runs of each point on each target (default 3): the report's median, and min–max as error bars. */
  repetitions: number;
}

interface TargetBase {
  name: string;
  type: TargetType;
  /** CPUs fio's jobs may run on (fio cpus_allowed, split between jobs), e.g. "4-7"; undefined = no pinning. */
  fioCpus?: string;
}

export interface EmulationTarget extends TargetBase {
  type: 'emulation';
  /** Namespace URI for NSID 1 (memory:, file:, nvme-tcp://). */
  namespace: string;
  doorbells: 'interrupt' | 'polled';
  /** Extra `vfiod serve` arguments, passed as given. */
  serveArgs: string[];
  /** CPUs `vfiod serve` runs on (taskset -c), e.g. "2-3"; undefined = no pinning. */
  serverCpus?: string;
  /** How fio's engine waits for completions: spin on the CQ (poll) or sleep on the queue's MSI-X eventfd (irq). */
  completion: 'poll' | 'irq';
  /** How long `vfiod serve` may take to listen before the target counts as failed (default 30 s). */
  startTimeoutSeconds: number;
}

export const DEFAULT_SERVE_START_TIMEOUT_SECONDS = 30;
export const MAX_SERVE_START_TIMEOUT_SECONDS = 3600;

export interface PassthroughTarget extends TargetBase {
  type: 'passthrough';
  /** PCI address, normalised to 0000:bb:dd.f. */
  bdf: string;
  nsid: number;
  /** Bind to vfio-pci with the DeviceManager before the run and give the device back afterwards. */
  prepare: boolean;
  /** The passthrough manager's claims database (prepare: true). */
  claimsDb: string;
}

export interface FileTarget extends TargetBase {
  type: 'file';
  /** A regular file (created sparse at the needed size if missing) or a block device. */
  path: string;
  ioengine: FileEngine;
  /** O_DIRECT (default on: the page cache would measure memory, not the device). */
  direct: boolean;
}

/** How the harness reaches the VM: a command prefix (e.g. ssh) or the QEMU guest agent's unix socket. */
export type GuestExecConfig = { command: string[] } | { qga: string };

export interface InGuestTarget extends TargetBase {
  type: 'in-guest';
  exec: GuestExecConfig;
  /** The block device fio works on, as the guest names it (e.g. /dev/nvme0n1). */
  device: string;
  ioengine: FileEngine;
  direct: boolean;
  /** fio in the guest (a path or a name on the guest's PATH). */
  fio: string;
  /** The VM process on this host (its CPU is reported as the server CPU): a pid, or a pid file read at start. */
  vmmPid?: number | string;
}

export type TargetConfig = EmulationTarget | PassthroughTarget | FileTarget | InGuestTarget;

export interface BenchConfig {
  /** Where the file came from (relative paths in it resolve against its directory). */
  source: string;
  name: string;
  /** fio binary. */
  fio: string;
  /** A prebuilt fio engine (vfiod-fio.so) to use as is; undefined = build it with bench/fio-engine/build.sh. */
  engine: string | undefined;
  matrix: MatrixConfig;
  /** Matrix used with --smoke. */
  smoke: MatrixConfig;
  targets: TargetConfig[];
}

/** Every problem found in a config, one line each ("<key path>: <what is wrong>; <what is allowed>"). */
export class BenchConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`${source}: invalid bench config:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'BenchConfigError';
  }
}

export function loadBenchConfig(file: string): BenchConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new BenchConfigError(file, [`cannot read the file: ${(error as Error).message}`]);
  }
  return parseBenchConfig(text, file);
}

export function parseBenchConfig(text: string, source = '<config>'): BenchConfig {
  let document: unknown;
  try {
    document = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (error) {
    const message = error instanceof YAMLParseError ? error.message.split('\n')[0]! : (error as Error).message;
    throw new BenchConfigError(source, [`not valid YAML: ${message}`]);
  }
  const problems: string[] = [];
  const config = validate(document, source, problems);
  if (problems.length > 0 || !config) throw new BenchConfigError(source, problems);
  return config;
}

const TOP_KEYS = ['name', 'fio', 'engine', 'matrix', 'smoke', 'targets'];
const MATRIX_KEYS = ['rw', 'rwmixread', 'bs', 'iodepth', 'numjobs', 'verify', 'runtime', 'ramp', 'size', 'repetitions'];
const TARGET_KEYS: Record<TargetType, string[]> = {
  emulation: ['name', 'type', 'namespace', 'doorbells', 'completion', 'serve-args', 'server-cpus', 'fio-cpus', 'start-timeout'],
  passthrough: ['name', 'type', 'bdf', 'nsid', 'prepare', 'claims-db', 'fio-cpus'],
  file: ['name', 'type', 'path', 'ioengine', 'direct', 'fio-cpus'],
  'in-guest': ['name', 'type', 'exec', 'device', 'ioengine', 'direct', 'fio', 'vmm-pid'],
};

const DEFAULT_MATRIX: MatrixConfig = {
  rw: ['randread'],
  rwmixread: 70,
  bs: [4096],
  iodepth: [1, 32],
  numjobs: [1],
  verify: [false],
  runtimeSeconds: 10,
  rampSeconds: 2,
  sizeBytes: 256 * 2 ** 20,
  repetitions: DEFAULT_REPETITIONS,
};

/** What --smoke shrinks a matrix to unless the config's `smoke:` section says otherwise. */
export function defaultSmoke(matrix: MatrixConfig): MatrixConfig {
  return {
    ...matrix,
    rw: matrix.rw.slice(0, 2),
    bs: matrix.bs.slice(0, 1),
    iodepth: [...new Set([matrix.iodepth[0]!, Math.min(matrix.iodepth.at(-1)!, 8)])],
    numjobs: [1],
    verify: matrix.verify,
    runtimeSeconds: 1,
    rampSeconds: 0,
    sizeBytes: Math.min(matrix.sizeBytes, 16 * 2 ** 20),
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'a list' : typeof value === 'string' ? `'${value}'` : String(value);
}

function unknownKeys(object: Record<string, unknown>, allowed: string[], where: string, problems: string[]): void {
  for (const key of Object.keys(object)) {
    if (!allowed.includes(key)) problems.push(`${where}${key}: unknown key; allowed: ${allowed.join(', ')}`);
  }
}

function validate(document: unknown, source: string, problems: string[]): BenchConfig | undefined {
  if (!isRecord(document)) {
    problems.push(`top level: expected a mapping with keys ${TOP_KEYS.join(', ')}, got ${describe(document)}`);
    return undefined;
  }
  unknownKeys(document, TOP_KEYS, '', problems);
  const name = document['name'] === undefined ? path.basename(source).replace(/\.ya?ml$/, '') : document['name'];
  if (typeof name !== 'string' || name === '') problems.push(`name: expected a non-empty string, got ${describe(name)}`);
  const fio = document['fio'] ?? 'fio';
  if (typeof fio !== 'string' || fio === '') problems.push(`fio: expected the fio binary (a path or a name on PATH), got ${describe(fio)}`);

  const engine = document['engine'];
  if (engine !== undefined && (typeof engine !== 'string' || engine === '')) {
    problems.push(`engine: expected the path of a built vfiod-fio.so (leave it out to build one), got ${describe(engine)}`);
  }
  const matrix = validateMatrix(document['matrix'], 'matrix', DEFAULT_MATRIX, problems);
  const smokeBase = matrix ? defaultSmoke(matrix) : DEFAULT_MATRIX;
  const smoke = validateMatrix(document['smoke'], 'smoke', smokeBase, problems);
  const targets = validateTargets(document['targets'], path.dirname(source), problems);
  if (!matrix || !smoke || !targets) return undefined;
  // Sections the file spells out are checked now; a default matrix is checked when it is about to run.
  for (const [label, m] of [['matrix', matrix], ['smoke', smoke]] as const) {
    if (document[label] !== undefined) problems.push(...capacityProblems(targets, m, label));
  }
  return {
    source, name: String(name), fio: String(fio),
    engine: typeof engine === 'string' ? path.resolve(path.dirname(source), engine) : undefined,
    matrix, smoke, targets,
  };
}

/** Values of a list-or-scalar key. */
function listOf(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [value];
}

function validateMatrix(value: unknown, where: string, base: MatrixConfig, problems: string[]): MatrixConfig | undefined {
  if (value === undefined) return { ...base };
  if (!isRecord(value)) {
    problems.push(`${where}: expected a mapping with keys ${MATRIX_KEYS.join(', ')}, got ${describe(value)}`);
    return undefined;
  }
  const before = problems.length;
  unknownKeys(value, MATRIX_KEYS, `${where}.`, problems);
  const m: MatrixConfig = { ...base };

  if (value['rw'] !== undefined) {
    m.rw = listOf(value['rw']).filter((rw, i): rw is RwMode => {
      if (RW_MODES.includes(rw as RwMode)) return true;
      problems.push(`${where}.rw[${i}]: ${describe(rw)} is not a workload; allowed: ${RW_MODES.join(', ')}`);
      return false;
    });
  }
  if (value['rwmixread'] !== undefined) {
    const mix = value['rwmixread'];
    if (typeof mix !== 'number' || !Number.isInteger(mix) || mix < 0 || mix > 100) {
      problems.push(`${where}.rwmixread: expected an integer percentage of reads from 0 to 100, got ${describe(mix)}`);
    } else m.rwmixread = mix;
  }
  if (value['bs'] !== undefined) {
    m.bs = [];
    listOf(value['bs']).forEach((bs, i) => {
      const bytes = sizeValue(bs);
      if (bytes === undefined || bytes < MIN_BS || bytes > MAX_BS || bytes % 4096 !== 0) {
        problems.push(`${where}.bs[${i}]: ${describe(bs)} is not allowed; block sizes are multiples of 4k from 4k to 128k (e.g. 4k, 16k, 128k)`);
      } else m.bs.push(bytes);
    });
  }
  for (const [key, max] of [['iodepth', MAX_IODEPTH], ['numjobs', MAX_NUMJOBS]] as const) {
    if (value[key] === undefined) continue;
    m[key] = [];
    listOf(value[key]).forEach((n, i) => {
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > max) {
        problems.push(`${where}.${key}[${i}]: ${describe(n)} is not allowed; expected an integer from 1 to ${max}`);
      } else m[key].push(n);
    });
  }
  if (value['verify'] !== undefined) {
    m.verify = [];
    listOf(value['verify']).forEach((v, i) => {
      if (typeof v !== 'boolean') problems.push(`${where}.verify[${i}]: expected true or false (or a list of them), got ${describe(v)}`);
      else m.verify.push(v);
    });
  }
  if (value['runtime'] !== undefined) {
    const runtime = value['runtime'];
    if (runtime === null || runtime === false) m.runtimeSeconds = undefined;
    else {
      const seconds = secondsValue(runtime);
      if (seconds === undefined || seconds <= 0) {
        problems.push(`${where}.runtime: expected a duration such as 10, 10s or 2m (or null for size-based runs), got ${describe(runtime)}`);
      } else m.runtimeSeconds = seconds;
    }
  }
  if (value['ramp'] !== undefined) {
    const seconds = secondsValue(value['ramp']);
    if (seconds === undefined) problems.push(`${where}.ramp: expected a duration such as 0, 2 or 2s, got ${describe(value['ramp'])}`);
    else m.rampSeconds = seconds;
  }
  if (value['size'] !== undefined) {
    const bytes = sizeValue(value['size']);
    if (bytes === undefined || bytes < MAX_BS || bytes % MAX_BS !== 0) {
      problems.push(`${where}.size: expected a size that is a multiple of 128k such as 64M or 1G, got ${describe(value['size'])}`);
    } else m.sizeBytes = bytes;
  }
  if (value['repetitions'] !== undefined) {
    const n = value['repetitions'];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_REPETITIONS) {
      problems.push(`${where}.repetitions: expected an integer from 1 to ${MAX_REPETITIONS} (fio runs per point; ${DEFAULT_REPETITIONS} or more give min, median and max), got ${describe(n)}`);
    } else m.repetitions = n;
  }
  for (const key of ['rw', 'bs', 'iodepth', 'numjobs', 'verify'] as const) {
    if (m[key].length === 0 && value[key] !== undefined && problems.length === before) problems.push(`${where}.${key}: must not be empty`);
  }
  return problems.length === before ? dedupe(m) : undefined;
}

function dedupe(m: MatrixConfig): MatrixConfig {
  return { ...m, rw: [...new Set(m.rw)], bs: [...new Set(m.bs)], iodepth: [...new Set(m.iodepth)], numjobs: [...new Set(m.numjobs)], verify: [...new Set(m.verify)] };
}

function sizeValue(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  try {
    return parseSize(value);
  } catch {
    return undefined;
  }
}

function secondsValue(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(value);
  if (!match) return undefined;
  const n = Number(match[1]);
  return match[2] === 'ms' ? n / 1000 : match[2] === 'm' ? n * 60 : n;
}

function validateTargets(value: unknown, baseDir: string, problems: string[]): TargetConfig[] | undefined {
  if (!Array.isArray(value) || value.length === 0) {
    problems.push(`targets: expected a non-empty list of targets (type: ${TARGET_TYPES.join(' | ')}), got ${describe(value)}`);
    return undefined;
  }
  const before = problems.length;
  const targets: TargetConfig[] = [];
  const names = new Set<string>();
  value.forEach((entry, i) => {
    const where = `targets[${i}]`;
    if (!isRecord(entry)) {
      problems.push(`${where}: expected a mapping with at least 'name' and 'type', got ${describe(entry)}`);
      return;
    }
    const type = entry['type'];
    if (!TARGET_TYPES.includes(type as TargetType)) {
      problems.push(`${where}.type: ${describe(type)} is not a target type; allowed: ${TARGET_TYPES.join(', ')}`);
      return;
    }
    const name = entry['name'];
    if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
      problems.push(`${where}.name: expected a name of letters, digits, '.', '_' or '-' (it names files), got ${describe(name)}`);
      return;
    }
    if (names.has(name)) problems.push(`${where}.name: '${name}' is used by an earlier target; names must be unique`);
    names.add(name);
    unknownKeys(entry, TARGET_KEYS[type as TargetType], `${where}.`, problems);
    const target = validateTarget(type as TargetType, name, entry, where, baseDir, problems);
    const fioCpus = entry['fio-cpus'] === undefined ? undefined : cpuList(entry['fio-cpus'], `${where}.fio-cpus`, problems);
    if (target && fioCpus) target.fioCpus = fioCpus;
    if (target) targets.push(target);
  });
  return problems.length === before ? targets : undefined;
}

function validateTarget(
  type: TargetType,
  name: string,
  entry: Record<string, unknown>,
  where: string,
  baseDir: string,
  problems: string[],
): TargetConfig | undefined {
  switch (type) {
    case 'emulation': {
      const namespace = entry['namespace'] ?? 'memory:1G';
      if (typeof namespace !== 'string') {
        problems.push(`${where}.namespace: expected a namespace URI (memory:<size>, file:<path>?size=<size>, nvme-tcp://...), got ${describe(namespace)}`);
        return undefined;
      }
      try {
        parseNamespaceUri(namespace);
      } catch (error) {
        problems.push(`${where}.namespace: ${(error as Error).message}`);
        return undefined;
      }
      const doorbells = entry['doorbells'] ?? 'interrupt';
      if (doorbells !== 'interrupt' && doorbells !== 'polled') {
        problems.push(`${where}.doorbells: ${describe(doorbells)} is not a doorbell mode; allowed: interrupt, polled`);
        return undefined;
      }
      const serveArgs = entry['serve-args'] ?? [];
      if (!Array.isArray(serveArgs) || !serveArgs.every((a) => typeof a === 'string')) {
        problems.push(`${where}.serve-args: expected a list of strings (extra 'vfiod serve' options), got ${describe(serveArgs)}`);
        return undefined;
      }
      const reserved = serveArgs.find((a) => ['--socket', '--namespace', '--poll'].includes(a.split('=')[0]!));
      if (reserved) {
        problems.push(`${where}.serve-args: ${reserved} is set by the harness (use 'namespace' and 'doorbells')`);
        return undefined;
      }
      const completion = entry['completion'] ?? 'poll';
      if (completion !== 'poll' && completion !== 'irq') {
        problems.push(`${where}.completion: ${describe(completion)} is not a completion mode; allowed: poll (fio spins on the CQ), irq (fio sleeps on the MSI-X eventfd)`);
        return undefined;
      }
      const startTimeoutSeconds = entry['start-timeout'] ?? DEFAULT_SERVE_START_TIMEOUT_SECONDS;
      if (typeof startTimeoutSeconds !== 'number' || !Number.isInteger(startTimeoutSeconds) || startTimeoutSeconds < 1 || startTimeoutSeconds > MAX_SERVE_START_TIMEOUT_SECONDS) {
        problems.push(`${where}.start-timeout: expected whole seconds from 1 to ${MAX_SERVE_START_TIMEOUT_SECONDS} (how long 'vfiod serve' may take to listen), got ${describe(startTimeoutSeconds)}`);
        return undefined;
      }
      const target: EmulationTarget = { name, type, namespace, doorbells, serveArgs, completion, startTimeoutSeconds };
      if (entry['server-cpus'] !== undefined) {
        const cpus = cpuList(entry['server-cpus'], `${where}.server-cpus`, problems);
        if (!cpus) return undefined;
        target.serverCpus = cpus;
      }
      return target;
    }
    case 'passthrough': {
      const bdf = entry['bdf'];
      const normal = typeof bdf === 'string' ? normalizeBdf(bdf) : undefined;
      if (!normal) {
        problems.push(`${where}.bdf: expected a PCI address such as 0000:3b:00.1, got ${describe(bdf)}`);
        return undefined;
      }
      const nsid = entry['nsid'] ?? 1;
      if (typeof nsid !== 'number' || !Number.isInteger(nsid) || nsid < 1) {
        problems.push(`${where}.nsid: expected a namespace id (integer >= 1), got ${describe(nsid)}`);
        return undefined;
      }
      const prepare = entry['prepare'] ?? false;
      if (typeof prepare !== 'boolean') {
        problems.push(`${where}.prepare: expected true or false, got ${describe(prepare)}`);
        return undefined;
      }
      const claimsDb = entry['claims-db'] ?? DEFAULT_CLAIMS_DB; // vfiod devices' database: the CLI sees the harness's claims
      if (typeof claimsDb !== 'string' || claimsDb === '') {
        problems.push(`${where}.claims-db: expected the path of the passthrough manager's claims database, got ${describe(claimsDb)}`);
        return undefined;
      }
      return { name, type, bdf: normal, nsid, prepare, claimsDb: path.resolve(baseDir, claimsDb) };
    }
    case 'file': {
      const file = entry['path'];
      if (typeof file !== 'string' || file === '') {
        problems.push(`${where}.path: expected the path of a file or block device, got ${describe(file)}`);
        return undefined;
      }
      const ioengine = entry['ioengine'] ?? 'libaio';
      if (!FILE_ENGINES.includes(ioengine as FileEngine)) {
        problems.push(`${where}.ioengine: ${describe(ioengine)} is not supported; allowed: ${FILE_ENGINES.join(', ')}`);
        return undefined;
      }
      const direct = entry['direct'] ?? true;
      if (typeof direct !== 'boolean') {
        problems.push(`${where}.direct: expected true or false, got ${describe(direct)}`);
        return undefined;
      }
      return { name, type, path: path.resolve(baseDir, file), ioengine: ioengine as FileEngine, direct };
    }
    case 'in-guest':
      return validateInGuest(name, entry, where, baseDir, problems);
  }
}

/** Words sent to the guest as argv: a command prefix like ssh joins them with spaces for a remote shell. */
const GUEST_WORD = /^[A-Za-z0-9_./:+=@%,-]+$/;

function validateInGuest(name: string, entry: Record<string, unknown>, where: string, baseDir: string, problems: string[]): InGuestTarget | undefined {
  const before = problems.length;
  const execValue = entry['exec'];
  let exec: GuestExecConfig | undefined;
  const execHelp = `expected {command: [argv prefix, e.g. ssh, vm1]} or {qga: <QEMU guest agent unix socket>}`;
  if (!isRecord(execValue)) {
    problems.push(`${where}.exec: ${execHelp}, got ${describe(execValue)}`);
  } else if (Object.keys(execValue).length !== 1) {
    problems.push(`${where}.exec: ${execHelp}, got ${Object.keys(execValue).length ? `keys ${Object.keys(execValue).join(', ')}` : 'an empty mapping'}`);
  } else if ('command' in execValue) {
    const command = execValue['command'];
    if (!Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === 'string' && a !== '')) {
      problems.push(`${where}.exec.command: expected a non-empty list of non-empty strings (the argv prefix, e.g. [ssh, -o, BatchMode=yes, vm1]), got ${describe(command)}`);
    } else exec = { command: command as string[] };
  } else if ('qga' in execValue) {
    const socket = execValue['qga'];
    if (typeof socket !== 'string' || socket === '') problems.push(`${where}.exec.qga: expected the path of the guest agent's unix socket (QEMU -chardev socket,path=...), got ${describe(socket)}`);
    else exec = { qga: path.resolve(baseDir, socket) };
  } else {
    problems.push(`${where}.exec: ${execHelp}, got keys ${Object.keys(execValue).join(', ')}`);
  }
  const device = entry['device'];
  if (typeof device !== 'string' || !device.startsWith('/') || !GUEST_WORD.test(device)) {
    problems.push(`${where}.device: expected the guest's block device as an absolute path such as /dev/nvme0n1 (letters, digits, ./_-), got ${describe(device)}`);
  }
  const ioengine = entry['ioengine'] ?? 'libaio';
  if (!FILE_ENGINES.includes(ioengine as FileEngine)) problems.push(`${where}.ioengine: ${describe(ioengine)} is not supported in the guest; allowed: ${FILE_ENGINES.join(', ')}`);
  const direct = entry['direct'] ?? true;
  if (typeof direct !== 'boolean') problems.push(`${where}.direct: expected true or false, got ${describe(direct)}`);
  const fio = entry['fio'] ?? 'fio';
  if (typeof fio !== 'string' || !GUEST_WORD.test(fio)) problems.push(`${where}.fio: expected fio's path or name in the guest (letters, digits, ./_-), got ${describe(fio)}`);
  const vmmPid = entry['vmm-pid'];
  let vmm: number | string | undefined;
  if (vmmPid !== undefined) {
    if (typeof vmmPid === 'number' && Number.isInteger(vmmPid) && vmmPid > 0) vmm = vmmPid;
    else if (typeof vmmPid === 'string' && vmmPid !== '') vmm = path.resolve(baseDir, vmmPid);
    else problems.push(`${where}.vmm-pid: expected the VM process's pid (integer) or a pid file (e.g. QEMU's -pidfile), got ${describe(vmmPid)}`);
  }
  if (problems.length > before) return undefined;
  return {
    name, type: 'in-guest', exec: exec!, device: device as string, ioengine: ioengine as FileEngine, direct: direct as boolean, fio: fio as string,
    ...(vmm !== undefined ? { vmmPid: vmm } : {}),
  };
}

/** A CPU list such as "2", "2-3" or "0,4-7" whose CPUs all exist here; undefined (and a problem) otherwise. */
function cpuList(value: unknown, where: string, problems: string[]): string | undefined {
  const text = typeof value === 'number' ? String(value) : value;
  const count = os.cpus().length;
  if (typeof text !== 'string' || !/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(text)) {
    problems.push(`${where}: expected a CPU list such as 2, 2-3 or 0,4-7, got ${describe(value)}`);
    return undefined;
  }
  for (const range of text.split(',')) {
    const [first, last = first] = range.split('-').map(Number) as [number, number?];
    if (last! < first) {
      problems.push(`${where}: range ${range} runs backwards`);
      return undefined;
    }
    if (last! >= count) {
      problems.push(`${where}: CPU ${last} does not exist on this machine (CPUs 0-${count - 1})`);
      return undefined;
    }
  }
  return text;
}

/** Emulation namespaces with a known size must hold every job's region. */
export function capacityProblems(targets: TargetConfig[], m: MatrixConfig, label: string): string[] {
  const problems: string[] = [];
  for (const target of targets) {
    if (target.type !== 'emulation') continue;
    const spec = parseNamespaceUri(target.namespace) as { sizeBytes?: number };
    if (spec.sizeBytes === undefined) continue;
    const needed = m.sizeBytes * Math.max(...m.numjobs);
    if (needed <= spec.sizeBytes) continue;
    problems.push(
      `${label}.size: ${m.sizeBytes} bytes x ${Math.max(...m.numjobs)} jobs do not fit target '${target.name}' ` +
        `(namespace ${target.namespace} holds ${spec.sizeBytes} bytes); lower size or numjobs, or grow the namespace`,
    );
  }
  return problems;
}
