/**
 * Persistent identity: the controller's serial number, model, firmware revision, subsystem NQN, IEEE OUI and
 * controller ID, and each namespace slot's NGUID / EUI-64 / UUID and LBA data size. Guests key disks by these (Linux
 * /dev/disk/by-id and wwid, Windows disk signatures, multipath, UEFI boot entries), so they must not change across
 * restarts of vfiod, nor when a namespace is moved to another backing file.
 *
 * Stored as JSON `{ format: "vfiod-identity/1", controller: {...}, namespaces: [{ nsid, uri, nguid, eui64, uuid,
 * blockSize }, ...] }` (files of earlier versions have no `format`, no `nsid`, no `blockSize`, no `ieeeOui` or
 * `controllerId`), by default next to the first file namespace (`<file>.vfiod.json`). Missing values are generated
 * once and persisted; configured values win and are persisted too.
 *
 * A namespace's identity belongs to its slot (NSID), not to its backing: entry `nsid` n is namespace n whatever URI
 * it has now, so a disk copied to another file, or re-created on another backend, keeps its ids. Entries of files
 * written before slots (no `nsid`) are matched to the configured URIs as they were: exactly, then by backing file.
 * Entries of slots no longer configured are kept, so a slot that comes back later gets its old ids.
 *
 * The file is replaced atomically (write temporary, fsync, rename, fsync dir). A malformed file is an error, never
 * silently replaced: that would give every guest disk a new identity. A file that is not a vfiod identity file
 * (another program's JSON, a symlink, a device, a FIFO) is refused, never read as an empty identity and overwritten:
 * the daemon writes this file as root wherever a request says.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../util/log.js';
import type { NamespaceIds } from '../namespace/namespace.js';
import { BLOCK_SIZES } from '../namespace/scheme.js';
import { explicitBlockSize, isFileNamespaceSpec, parseNamespaceUri, type NamespaceSpec } from '../namespace/uri.js';
import { MAX_CONTROLLER_ID, MAX_IEEE_OUI, subsystemNqnProblem } from '../nvme/identity.js';
import { MAX_NSID } from '../nvme/namespaces.js';

export interface ControllerIdentityRecord {
  /** 1-20 printable ASCII characters (Identify Controller SN). */
  serialNumber: string;
  /** 1-40 printable ASCII characters (MN). */
  modelNumber: string;
  /** 1-8 printable ASCII characters (FR). */
  firmwareRevision: string;
  /** NVMe Qualified Name (SUBNQN); configured ones pass subsystemNqnProblem. */
  subsystemNqn: string;
  /** IEEE OUI (24 bits) of Identify Controller; 0 = none. */
  ieeeOui: number;
  /** Controller ID (CNTLID), 0..0xFFEF. */
  controllerId: number;
}

export interface NamespaceIdentityRecord extends NamespaceIds {
  /** The namespace slot this entry belongs to; absent only in files written before slots. */
  nsid?: number;
  /** The namespace URI this entry was last used with (for people reading the file, and old files' matching). */
  uri: string;
  /** The LBA data size the guest knows (512 or 4096); absent in files written before it was kept. */
  blockSize?: number;
}

export interface StoredIdentity {
  controller: ControllerIdentityRecord;
  /** One entry per configured namespace, NSID order (entry n - 1 has nsid n). */
  namespaces: Array<NamespaceIdentityRecord & { nsid: number }>;
}

/** Identity asked for one namespace slot: CreateController's namespace_identities, serve's --namespace-identity. */
export interface NamespaceIdentityOverride extends Partial<NamespaceIds> {
  nsid: number;
  /** LBA data size: 512 or 4096. */
  blockSize?: number;
}

export interface IdentityOptions {
  /** Configured controller values; they override stored ones and are persisted. */
  controller?: Partial<ControllerIdentityRecord>;
  /** The configured namespaces, NSID order. */
  namespaceUris: readonly string[];
  /** The NSID of each of `namespaceUris`, ascending; default 1..n. */
  nsids?: readonly number[];
  /** Configured ids per slot; they override stored ones and are persisted. */
  namespaces?: readonly NamespaceIdentityOverride[];
  /** The LBA data size each namespace was opened with, NSID order (recorded; see plannedBlockSizes). */
  blockSizes?: readonly number[];
  logger?: Logger;
}

export const DEFAULT_MODEL_NUMBER = 'vfiod NVMe controller';
export const DEFAULT_FIRMWARE_REVISION = '0.1.0';
/** First three bytes of generated EUI-64s: an OUI-like prefix with the locally-administered bit set. */
export const EUI64_PREFIX = '025646';
/** What the `format` field of an identity file says. */
export const IDENTITY_FORMAT = 'vfiod-identity/1';
/** An identity file is a few hundred bytes per namespace; anything far larger is not one. */
const MAX_IDENTITY_FILE_BYTES = 4 * 1024 * 1024;
/** The range of a slot's nsid: the highest NSID a controller may use (Identify NN). */
export const MAX_NAMESPACES = MAX_NSID;

/** An identity path vfiod will not read or replace: something else is there. `reason` is stable for programs. */
export class IdentityFileRefused extends Error {
  readonly reason = 'IDENTITY_FILE_FOREIGN';
  constructor(message: string) {
    super(message);
    this.name = 'IdentityFileRefused';
  }
}

/**
 * Configured identities that clash with what is persisted (the same NGUID, EUI-64 or UUID as another slot of this
 * controller), or a configured LBA data size the namespace URI contradicts.
 */
export class IdentityConflict extends Error {
  readonly reason = 'IDENTITY_CONFLICT';
  constructor(message: string) {
    super(message);
    this.name = 'IdentityConflict';
  }
}

/**
 * Where the identity of a controller with these namespaces lives by default: next to its first file namespace that
 * is not a device node. Undefined when there is none (memory-only or block-device-only controllers): the identity is
 * then generated afresh on every start unless the caller gives a path.
 */
export function defaultIdentityPath(specs: readonly NamespaceSpec[]): string | undefined {
  for (const spec of specs) {
    if (isFileNamespaceSpec(spec) && !spec.path.startsWith('/dev/')) return `${spec.path}.vfiod.json`;
  }
  return undefined;
}

interface ParsedIdentity {
  controller: Partial<ControllerIdentityRecord>;
  namespaces: NamespaceIdentityRecord[];
}

/**
 * Loads the identity at `statePath` (creating or completing it) and returns the one to present. With `statePath`
 * undefined nothing is read or written.
 */
export async function loadOrCreateIdentity(
  statePath: string | undefined,
  options: IdentityOptions,
): Promise<StoredIdentity> {
  const { text: storedText, stored } = readStored(statePath);
  const { identity, kept } = resolveIdentity(statePath, stored, options);
  if (statePath !== undefined) {
    const text = JSON.stringify({ format: IDENTITY_FORMAT, controller: identity.controller, namespaces: [...identity.namespaces, ...kept] }, null, 2) + '\n';
    if (text !== storedText) {
      await writeAtomically(statePath, text);
      options.logger?.info(storedText === undefined ? 'created identity file' : 'updated identity file', {
        path: statePath,
      });
    }
  } else {
    options.logger?.info('identity not persisted (no file namespace and no identity path)', {
      serialNumber: identity.controller.serialNumber,
    });
  }
  return identity;
}

/**
 * The identity a controller with these options would present, without writing anything: throws what
 * loadOrCreateIdentity would (IdentityConflict for ids that clash with persisted slots).
 */
export function previewIdentity(statePath: string | undefined, options: IdentityOptions): StoredIdentity {
  return resolveIdentity(statePath, readStored(statePath).stored, options).identity;
}

/**
 * Refuses, before anything starts or is written, the asked-for identities a start would refuse: ids that clash with
 * the persisted slots, a block size the URI contradicts (IdentityConflict); an unreadable file (Error).
 */
export function checkIdentityConflicts(statePath: string | undefined, options: IdentityOptions): void {
  plannedBlockSizes(statePath, options);
  previewIdentity(statePath, options);
}

/**
 * The LBA data size each configured namespace must be opened with, NSID order, before anything is written: the
 * configured one, else the URI's `block-size`, else the one its slot has (so a re-created namespace keeps the format
 * the guest knows); undefined where none of those says (the backend's default). Throws IdentityConflict when a
 * configured size contradicts the URI's, or an Error when the file cannot be read.
 */
export function plannedBlockSizes(statePath: string | undefined, options: Pick<IdentityOptions, 'namespaceUris' | 'nsids' | 'namespaces'>): Array<number | undefined> {
  const nsids = options.nsids ?? defaultNsids(options.namespaceUris.length);
  const { matched } = matchSlots(readStored(statePath).stored.namespaces, options.namespaceUris, nsids);
  return options.namespaceUris.map((uri, index) => {
    const nsid = nsids[index]!;
    const configured = options.namespaces?.find((entry) => entry.nsid === nsid)?.blockSize;
    const inUri = explicitBlockSize(uri);
    if (configured !== undefined && inUri !== undefined && configured !== inUri) {
      throw new IdentityConflict(`namespace ${nsid}: block size ${configured} is configured, but its URI '${uri}' says block-size=${inUri}: give one of them`);
    }
    return configured ?? inUri ?? matched[index]?.blockSize;
  });
}

/** The identity file's text and contents; empty ones when there is no file (or no path). */
function readStored(statePath: string | undefined): { text: string | undefined; stored: ParsedIdentity } {
  const text = statePath === undefined ? undefined : readIdentityText(statePath);
  return { text, stored: text === undefined ? { controller: {}, namespaces: [] } : parseIdentityFile(statePath!, text) };
}

/** The identity to present and the entries of other slots to keep; pure (generates what is missing). */
function resolveIdentity(
  statePath: string | undefined,
  stored: ParsedIdentity,
  options: IdentityOptions,
): { identity: StoredIdentity; kept: NamespaceIdentityRecord[] } {
  const configured = 'configured identity';
  const overrides = options.controller ?? {};
  const controller: ControllerIdentityRecord = {
    serialNumber: overrides.serialNumber ?? stored.controller.serialNumber ?? generateSerialNumber(),
    modelNumber: overrides.modelNumber ?? stored.controller.modelNumber ?? DEFAULT_MODEL_NUMBER,
    firmwareRevision: overrides.firmwareRevision ?? stored.controller.firmwareRevision ?? DEFAULT_FIRMWARE_REVISION,
    subsystemNqn: overrides.subsystemNqn ?? stored.controller.subsystemNqn ?? generateSubsystemNqn(),
    ieeeOui: overrides.ieeeOui ?? stored.controller.ieeeOui ?? 0,
    controllerId: overrides.controllerId ?? stored.controller.controllerId ?? 0,
  };
  validateController(configured, controller);

  const uris = options.namespaceUris;
  const nsids = options.nsids ?? defaultNsids(uris.length);
  const { matched, unused } = matchSlots(stored.namespaces, uris, nsids);
  const namespaces = uris.map((uri, index) => {
    const nsid = nsids[index]!;
    const base = matched[index] ?? { uri, ...generateNamespaceIds() };
    const override = options.namespaces?.find((entry) => entry.nsid === nsid) ?? { nsid };
    const blockSize = options.blockSizes?.[index] ?? base.blockSize;
    const record = {
      nsid,
      uri,
      nguid: (override.nguid ?? base.nguid).toLowerCase(),
      eui64: (override.eui64 ?? base.eui64).toLowerCase(),
      uuid: (override.uuid ?? base.uuid).toLowerCase(),
      ...(blockSize !== undefined ? { blockSize } : {}),
    };
    validateNamespace(`${configured}: namespace ${nsid} ('${uri}')`, record);
    return record;
  });
  checkUnique(configured, [...namespaces, ...unused]);
  return { identity: { controller, namespaces }, kept: unused };
}

/** NSIDs 1..count: the namespaces in the order they are configured. */
export function defaultNsids(count: number): number[] {
  return Array.from({ length: count }, (_, index) => index + 1);
}

/**
 * Which stored entry each configured namespace (NSID order) takes: the entry of its slot; for files written before
 * slots, the entry of the same URI, then of the same backing file. The rest are `unused` (kept in the file).
 */
function matchSlots(
  stored: readonly NamespaceIdentityRecord[],
  uris: readonly string[],
  nsids: readonly number[],
): { matched: Array<NamespaceIdentityRecord | undefined>; unused: NamespaceIdentityRecord[] } {
  const unused = new Set(stored);
  const take = (entry: NamespaceIdentityRecord | undefined): NamespaceIdentityRecord | undefined => {
    if (entry) unused.delete(entry);
    return entry;
  };
  const matched = uris.map((_, index) => take(stored.find((entry) => entry.nsid === nsids[index])));
  const unslotted = (): NamespaceIdentityRecord[] => [...unused].filter((entry) => entry.nsid === undefined);
  uris.forEach((uri, index) => {
    matched[index] ??= take(unslotted().find((entry) => entry.uri === uri));
  });
  uris.forEach((uri, index) => {
    matched[index] ??= take(unslotted().find((entry) => namespaceKey(entry.uri) === namespaceKey(uri)));
  });
  return { matched, unused: [...unused] };
}

export function generateSerialNumber(): string {
  return 'VFIOD' + randomBytes(6).toString('hex').toUpperCase();
}

export function generateSubsystemNqn(): string {
  // The NVMe-defined UUID-based NQN form needs no domain of ours.
  return `nqn.2014-08.org.nvmexpress:uuid:${randomUUID()}`;
}

export function generateNamespaceIds(): NamespaceIds {
  let nguid: string;
  do nguid = randomBytes(16).toString('hex');
  while (/^0+$/.test(nguid));
  return { nguid, eui64: EUI64_PREFIX + randomBytes(5).toString('hex'), uuid: randomUUID() };
}

// --- validation ------------------------------------------------------------------------------------------------

const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;

function checkText(where: string, field: string, value: unknown, maxLength: number): void {
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength || !PRINTABLE_ASCII.test(value)) {
    throw new Error(
      `${where}: ${field} must be 1-${maxLength} printable ASCII characters, got ${JSON.stringify(value)}`,
    );
  }
}

function checkInteger(where: string, field: string, value: unknown, min: number, max: number, hex = false): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = hex ? `0x${min.toString(16)}..0x${max.toString(16)}` : `${min}..${max}`;
    throw new Error(`${where}: ${field} must be an integer in ${range}, got ${JSON.stringify(value)}`);
  }
}

/** Character limits of the identity strings (Identify Controller SN, MN, FR, SUBNQN). */
export const IDENTITY_LIMITS = { serialNumber: 20, modelNumber: 40, firmwareRevision: 8, subsystemNqn: 223 } as const;
/** Ranges of the identity numbers. */
export const IDENTITY_NUMBER_LIMITS = { ieeeOui: MAX_IEEE_OUI, controllerId: MAX_CONTROLLER_ID } as const;

/** How a caller's interface names each field in messages (e.g. the proto's serial_number). */
export type IdentityFieldNames = Record<keyof ControllerIdentityRecord, string>;
const RECORD_NAMES: IdentityFieldNames = {
  serialNumber: 'serialNumber',
  modelNumber: 'modelNumber',
  firmwareRevision: 'firmwareRevision',
  subsystemNqn: 'subsystemNqn',
  ieeeOui: 'ieeeOui',
  controllerId: 'controllerId',
};

/**
 * Checks the identity values a caller asks for (the ones given; absent fields keep the persisted or generated value)
 * before anything starts: the control API refuses a bad CreateController with this message, `vfiod serve` exits 2.
 */
export function checkIdentityOverrides(where: string, overrides: Partial<ControllerIdentityRecord>, names: IdentityFieldNames = RECORD_NAMES): void {
  for (const field of Object.keys(IDENTITY_LIMITS) as Array<keyof typeof IDENTITY_LIMITS>) {
    if (overrides[field] !== undefined) checkText(where, names[field], overrides[field], IDENTITY_LIMITS[field]);
  }
  for (const field of Object.keys(IDENTITY_NUMBER_LIMITS) as Array<keyof typeof IDENTITY_NUMBER_LIMITS>) {
    if (overrides[field] !== undefined) checkInteger(where, names[field], overrides[field], 0, IDENTITY_NUMBER_LIMITS[field], true);
  }
  if (overrides.subsystemNqn !== undefined) {
    const problem = subsystemNqnProblem(overrides.subsystemNqn);
    if (problem !== undefined) throw new Error(`${where}: ${names.subsystemNqn} ${JSON.stringify(overrides.subsystemNqn)} ${problem}`);
  }
}

/** How a caller's interface names the namespace identity fields in messages. */
export type NamespaceFieldNames = Record<keyof NamespaceIdentityOverride, string>;
const OVERRIDE_NAMES: NamespaceFieldNames = { nsid: 'nsid', nguid: 'nguid', eui64: 'eui64', uuid: 'uuid', blockSize: 'blockSize' };

/**
 * Checks the namespace identities a caller asks for: each names the NSID of a configured namespace once, its
 * ids are well-formed and nonzero, no two slots ask for the same id, the block size is one of BLOCK_SIZES.
 */
export function checkNamespaceOverrides(
  where: string,
  overrides: readonly NamespaceIdentityOverride[],
  /** The configured namespaces' NSIDs. */
  nsids: readonly number[],
  names: NamespaceFieldNames = OVERRIDE_NAMES,
): void {
  const seen = new Set<number>();
  overrides.forEach((override, index) => {
    const at = `${where}[${index}]`;
    if (!nsids.includes(override.nsid)) {
      const configured = nsids.every((nsid, index) => nsid === index + 1) ? `1..${nsids.length}` : nsids.join(', ');
      throw new Error(`${at}: ${names.nsid} must be the NSID of a configured namespace (${configured}), got ${JSON.stringify(override.nsid)}`);
    }
    if (seen.has(override.nsid)) throw new Error(`${at}: ${names.nsid} ${override.nsid} is given twice`);
    seen.add(override.nsid);
    const slot = `${at} (nsid ${override.nsid})`;
    if (override.nguid !== undefined) checkHex(slot, names.nguid, override.nguid, 32);
    if (override.eui64 !== undefined) checkHex(slot, names.eui64, override.eui64, 16);
    if (override.uuid !== undefined) checkUuid(slot, names.uuid, override.uuid);
    if (override.blockSize !== undefined && !BLOCK_SIZES.includes(override.blockSize)) {
      throw new Error(`${slot}: ${names.blockSize} must be ${BLOCK_SIZES.join(' or ')}, got ${JSON.stringify(override.blockSize)}`);
    }
  });
  for (const field of ['nguid', 'eui64', 'uuid'] as const) {
    const owner = new Map<string, number>();
    for (const override of overrides) {
      const value = override[field]?.toLowerCase();
      if (value === undefined) continue;
      const other = owner.get(value);
      if (other !== undefined) throw new Error(`${where}: nsid ${other} and nsid ${override.nsid} ask for the same ${names[field]} ${value}`);
      owner.set(value, override.nsid);
    }
  }
}

function validateController(where: string, controller: ControllerIdentityRecord): void {
  for (const field of Object.keys(IDENTITY_LIMITS) as Array<keyof typeof IDENTITY_LIMITS>) {
    checkText(where, field, controller[field], IDENTITY_LIMITS[field]);
  }
  for (const field of Object.keys(IDENTITY_NUMBER_LIMITS) as Array<keyof typeof IDENTITY_NUMBER_LIMITS>) {
    checkInteger(where, field, controller[field], 0, IDENTITY_NUMBER_LIMITS[field], true);
  }
  if (!controller.subsystemNqn.startsWith('nqn.')) {
    throw new Error(`${where}: subsystemNqn must start with 'nqn.', got ${JSON.stringify(controller.subsystemNqn)}`);
  }
}

function checkHex(where: string, field: string, value: unknown, digits: number): void {
  if (typeof value !== 'string' || !new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(value) || /^0+$/.test(value)) {
    throw new Error(`${where}: ${field} must be ${digits} hex digits, not all zero, got ${JSON.stringify(value)}`);
  }
}

function checkUuid(where: string, field: string, uuid: unknown): void {
  if (
    typeof uuid !== 'string' ||
    !/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(uuid) ||
    /^[0-]+$/.test(uuid)
  ) {
    throw new Error(`${where}: ${field} must be a non-nil RFC 4122 UUID, got ${JSON.stringify(uuid)}`);
  }
}

function validateNamespace(where: string, entry: Partial<NamespaceIdentityRecord>): void {
  if (typeof entry.uri !== 'string' || entry.uri === '') {
    throw new Error(`${where}: uri must be a non-empty string, got ${JSON.stringify(entry.uri)}`);
  }
  if (entry.nsid !== undefined) checkInteger(where, 'nsid', entry.nsid, 1, MAX_NAMESPACES);
  checkHex(where, 'nguid', entry.nguid, 32);
  checkHex(where, 'eui64', entry.eui64, 16);
  checkUuid(where, 'uuid', entry.uuid);
  if (entry.blockSize !== undefined && !BLOCK_SIZES.includes(entry.blockSize)) {
    throw new Error(`${where}: blockSize must be ${BLOCK_SIZES.join(' or ')}, got ${JSON.stringify(entry.blockSize)}`);
  }
}

/** No two slots (configured or kept) share an id: a guest would take them for one disk reached twice (multipath). */
function checkUnique(where: string, entries: readonly NamespaceIdentityRecord[]): void {
  const name = (entry: NamespaceIdentityRecord): string => (entry.nsid !== undefined ? `nsid ${entry.nsid} ('${entry.uri}')` : `'${entry.uri}'`);
  for (const field of ['nguid', 'eui64', 'uuid'] as const) {
    const seen = new Map<string, NamespaceIdentityRecord>();
    for (const entry of entries) {
      const previous = seen.get(entry[field]);
      if (previous !== undefined) {
        throw new IdentityConflict(
          `${where}: namespaces ${name(previous)} and ${name(entry)} have the same ${field} ${entry[field]}: ask for another one, or use a new identity file for a new disk`,
        );
      }
      seen.set(entry[field], entry);
    }
  }
}

/**
 * Refuses (IdentityFileRefused) an identity path where vfiod would replace something that is not its identity file;
 * a missing file is fine. What `vfiod serve` and the daemon check before starting a controller; loading checks again.
 */
export function checkIdentityFileWritable(statePath: string): void {
  const text = readIdentityText(statePath);
  if (text !== undefined) parseIdentityFile(statePath, text);
}

/**
 * The text of the identity file, undefined when there is none. Opened without following a symlink and without
 * blocking (a FIFO), and only read when it is a regular file of a plausible size.
 */
function readIdentityText(statePath: string): string | undefined {
  const where = `identity file '${statePath}'`;
  let fd: number;
  try {
    fd = fs.openSync(statePath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new IdentityFileRefused(`${where} is a symbolic link: refusing to read or replace it (give the path of the file itself)`);
    throw new Error(`cannot read ${where}: ${(error as Error).message}`, { cause: error });
  }
  try {
    const stats = fs.fstatSync(fd);
    if (!stats.isFile()) throw new IdentityFileRefused(`${where} exists and is not a regular file: refusing to read or replace it`);
    if (stats.size > MAX_IDENTITY_FILE_BYTES) {
      throw new IdentityFileRefused(`${where} exists and is ${stats.size} bytes, too large for a vfiod identity file: refusing to replace it (give another path)`);
    }
    return fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Whether parsed JSON is a vfiod identity file: it says so (`format`), or it is one written before `format` existed
 * (`controller` and/or `namespaces`, nothing else).
 */
function recogniseIdentity(where: string, data: unknown): asserts data is Record<string, unknown> {
  const refuse = (why: string): never => {
    throw new IdentityFileRefused(`${where} exists and is not a vfiod identity file (${why}): refusing to replace it; give another identity path, or move that file away`);
  };
  if (!isObject(data)) return refuse('not a JSON object');
  if ('format' in data) {
    if (data['format'] !== IDENTITY_FORMAT) refuse(`its format is ${JSON.stringify(data['format'])}, not "${IDENTITY_FORMAT}"`);
    return;
  }
  const keys = Object.keys(data).sort();
  if (keys.length === 0 || keys.some((key) => key !== 'controller' && key !== 'namespaces')) {
    refuse(`no "format": "${IDENTITY_FORMAT}", and its keys are ${keys.length ? keys.slice(0, 8).map((k) => JSON.stringify(k)).join(', ') : 'none'}`);
  }
}

function parseIdentityFile(statePath: string, text: string): ParsedIdentity {
  const where = `identity file '${statePath}'`;
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new IdentityFileRefused(`${where} is not valid JSON (${(error as Error).message}): refusing to replace it; give another identity path, or move that file away`);
  }
  recogniseIdentity(where, data);
  const controllerData = data['controller'] ?? {};
  if (!isObject(controllerData)) throw new Error(`${where}: controller must be an object`);
  const controller: Partial<ControllerIdentityRecord> = {};
  for (const field of Object.keys(IDENTITY_LIMITS) as Array<keyof typeof IDENTITY_LIMITS>) {
    const value = controllerData[field];
    if (value === undefined) continue;
    checkText(where, `controller.${field}`, value, IDENTITY_LIMITS[field]);
    controller[field] = value as string;
  }
  for (const field of Object.keys(IDENTITY_NUMBER_LIMITS) as Array<keyof typeof IDENTITY_NUMBER_LIMITS>) {
    const value = controllerData[field];
    if (value === undefined) continue;
    checkInteger(where, `controller.${field}`, value, 0, IDENTITY_NUMBER_LIMITS[field], true);
    controller[field] = value as number;
  }
  const namespacesData = data['namespaces'] ?? [];
  if (!Array.isArray(namespacesData)) throw new Error(`${where}: namespaces must be an array`);
  const slots = new Set<number>();
  const namespaces = namespacesData.map((entry: unknown, index): NamespaceIdentityRecord => {
    if (!isObject(entry)) throw new Error(`${where}: namespaces[${index}] must be an object`);
    validateNamespace(`${where}: namespaces[${index}]`, entry as Partial<NamespaceIdentityRecord>);
    const nsid = entry['nsid'] as number | undefined;
    if (nsid !== undefined) {
      if (slots.has(nsid)) throw new Error(`${where}: namespaces[${index}]: nsid ${nsid} appears twice`);
      slots.add(nsid);
    }
    const blockSize = entry['blockSize'] as number | undefined;
    return {
      ...(nsid !== undefined ? { nsid } : {}),
      uri: entry['uri'] as string,
      nguid: (entry['nguid'] as string).toLowerCase(),
      eui64: (entry['eui64'] as string).toLowerCase(),
      uuid: (entry['uuid'] as string).toLowerCase(),
      ...(blockSize !== undefined ? { blockSize } : {}),
    };
  });
  return { controller, namespaces };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** What identifies a namespace's storage: the file path for file namespaces, else the URI itself. */
function namespaceKey(uri: string): string {
  try {
    const spec = parseNamespaceUri(uri);
    if (isFileNamespaceSpec(spec)) return `file:${spec.path}`;
  } catch {
    // an entry for a URI we cannot parse (any more) only matches itself
  }
  return uri;
}

async function writeAtomically(statePath: string, text: string): Promise<void> {
  const temporary = `${statePath}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const handle = await fs.promises.open(temporary, 'wx', 0o644);
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(temporary, statePath);
  } catch (error) {
    await fs.promises.unlink(temporary).catch(() => {});
    throw new Error(
      `cannot write identity file '${statePath}': ${(error as Error).message} (give a writable identity path)`,
      { cause: error },
    );
  }
  // Make the rename itself durable.
  try {
    const directory = await fs.promises.open(path.dirname(statePath), 'r');
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  } catch {
    // some filesystems cannot fsync a directory; the data itself is already synced
  }
}
