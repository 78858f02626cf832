/**
 * Persistent identity: the controller's serial number, model, firmware revision and subsystem NQN, and each
 * namespace's NGUID / EUI-64 / UUID. Guests key disks by these (Linux /dev/disk/by-id, Windows disk signatures,
 * multipath), so they must not change across restarts of vfiod.
 *
 * Stored as JSON `{ format: "vfiod-identity/1", controller: {...}, namespaces: [{ uri, nguid, eui64, uuid }, ...] }`
 * (files of earlier versions have no `format`), by default next to the
 * first file namespace (`<file>.vfiod.json`). Missing values are generated once and persisted; configured values win
 * and are persisted too. Namespace entries are matched to the configured URIs first exactly, then by backing file
 * (so changing `?size=` or `direct=` keeps a disk's ids); entries no longer configured are kept, so a namespace that
 * comes back later gets its old ids. The file is replaced atomically (write temporary, fsync, rename, fsync dir).
 * A malformed file is an error, never silently replaced: that would give every guest disk a new identity. A file
 * that is not a vfiod identity file (another program's JSON, a symlink, a device, a FIFO) is refused, never read as
 * an empty identity and overwritten: the daemon writes this file as root wherever a request says.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../util/log.js';
import type { NamespaceIds } from '../namespace/namespace.js';
import { isFileNamespaceSpec, parseNamespaceUri, type NamespaceSpec } from '../namespace/uri.js';

export interface ControllerIdentityRecord {
  /** 1-20 printable ASCII characters (Identify Controller SN). */
  serialNumber: string;
  /** 1-40 printable ASCII characters (MN). */
  modelNumber: string;
  /** 1-8 printable ASCII characters (FR). */
  firmwareRevision: string;
  /** NVMe Qualified Name, 'nqn.' + up to 219 more printable ASCII characters (SUBNQN). */
  subsystemNqn: string;
}

export interface NamespaceIdentityRecord extends NamespaceIds {
  /** The namespace URI this entry was last used with. */
  uri: string;
}

export interface StoredIdentity {
  controller: ControllerIdentityRecord;
  /** One entry per configured namespace URI, in the same order (NSID = index + 1). */
  namespaces: NamespaceIdentityRecord[];
}

export interface IdentityOptions {
  /** Configured controller values; they override stored ones and are persisted. */
  controller?: Partial<ControllerIdentityRecord>;
  /** The configured namespaces, NSID order. */
  namespaceUris: readonly string[];
  /** Configured ids per namespace (same index as `namespaceUris`); they override stored ones and are persisted. */
  namespaces?: ReadonlyArray<Partial<NamespaceIds> | undefined>;
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

/** An identity path vfiod will not read or replace: something else is there. `reason` is stable for programs. */
export class IdentityFileRefused extends Error {
  readonly reason = 'IDENTITY_FILE_FOREIGN';
  constructor(message: string) {
    super(message);
    this.name = 'IdentityFileRefused';
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

/**
 * Loads the identity at `statePath` (creating or completing it) and returns the one to present. With `statePath`
 * undefined nothing is read or written.
 */
export async function loadOrCreateIdentity(
  statePath: string | undefined,
  options: IdentityOptions,
): Promise<StoredIdentity> {
  let storedText: string | undefined;
  let stored: { controller: Partial<ControllerIdentityRecord>; namespaces: NamespaceIdentityRecord[] } = {
    controller: {},
    namespaces: [],
  };
  if (statePath !== undefined) {
    storedText = readIdentityText(statePath);
    if (storedText !== undefined) stored = parseIdentityFile(statePath, storedText);
  }

  const configured = `configured identity`;
  const overrides = options.controller ?? {};
  const controller: ControllerIdentityRecord = {
    serialNumber: overrides.serialNumber ?? stored.controller.serialNumber ?? generateSerialNumber(),
    modelNumber: overrides.modelNumber ?? stored.controller.modelNumber ?? DEFAULT_MODEL_NUMBER,
    firmwareRevision: overrides.firmwareRevision ?? stored.controller.firmwareRevision ?? DEFAULT_FIRMWARE_REVISION,
    subsystemNqn: overrides.subsystemNqn ?? stored.controller.subsystemNqn ?? generateSubsystemNqn(),
  };
  validateController(configured, controller);

  // Match stored entries to the configured URIs: exact URI first, then the same backing file.
  const uris = options.namespaceUris;
  const matched: Array<NamespaceIdentityRecord | undefined> = uris.map(() => undefined);
  const unused = new Set(stored.namespaces);
  for (const [index, uri] of uris.entries()) {
    const entry = [...unused].find((candidate) => candidate.uri === uri);
    if (entry) {
      matched[index] = entry;
      unused.delete(entry);
    }
  }
  for (const [index, uri] of uris.entries()) {
    if (matched[index]) continue;
    const key = namespaceKey(uri);
    const entry = [...unused].find((candidate) => namespaceKey(candidate.uri) === key);
    if (entry) {
      matched[index] = entry;
      unused.delete(entry);
    }
  }
  const namespaces = uris.map((uri, index): NamespaceIdentityRecord => {
    const base = matched[index] ?? { uri, ...generateNamespaceIds() };
    const override = options.namespaces?.[index] ?? {};
    const record: NamespaceIdentityRecord = {
      uri,
      nguid: override.nguid ?? base.nguid,
      eui64: override.eui64 ?? base.eui64,
      uuid: override.uuid ?? base.uuid,
    };
    validateNamespace(`${configured}: namespace ${index + 1} ('${uri}')`, record);
    return { uri, nguid: record.nguid.toLowerCase(), eui64: record.eui64.toLowerCase(), uuid: record.uuid.toLowerCase() };
  });
  const all = [...namespaces, ...unused];
  checkUnique(statePath, all);

  const result: StoredIdentity = { controller, namespaces };
  if (statePath !== undefined) {
    const text = JSON.stringify({ format: IDENTITY_FORMAT, controller, namespaces: all }, null, 2) + '\n';
    if (text !== storedText) {
      await writeAtomically(statePath, text);
      options.logger?.info(storedText === undefined ? 'created identity file' : 'updated identity file', {
        path: statePath,
      });
    }
  } else {
    options.logger?.info('identity not persisted (no file namespace and no identity path)', {
      serialNumber: controller.serialNumber,
    });
  }
  return result;
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

/** Character limits of the identity strings (Identify Controller SN, MN, FR, SUBNQN). */
export const IDENTITY_LIMITS = { serialNumber: 20, modelNumber: 40, firmwareRevision: 8, subsystemNqn: 223 } as const;

/**
 * Checks the identity values a caller asks for (the ones given; absent fields keep the persisted or generated value)
 * before anything starts: the control API refuses a bad CreateController with this message.
 */
export function checkIdentityOverrides(
  where: string,
  overrides: Partial<ControllerIdentityRecord>,
  /** How the caller's interface names each field in messages (e.g. the proto's serial_number). */
  names: Record<keyof typeof IDENTITY_LIMITS, string> = { serialNumber: 'serialNumber', modelNumber: 'modelNumber', firmwareRevision: 'firmwareRevision', subsystemNqn: 'subsystemNqn' },
): void {
  for (const field of Object.keys(IDENTITY_LIMITS) as Array<keyof typeof IDENTITY_LIMITS>) {
    if (overrides[field] !== undefined) checkText(where, names[field], overrides[field], IDENTITY_LIMITS[field]);
  }
  if (overrides.subsystemNqn !== undefined && !overrides.subsystemNqn.startsWith('nqn.')) {
    throw new Error(`${where}: ${names.subsystemNqn} must start with 'nqn.', got ${JSON.stringify(overrides.subsystemNqn)}`);
  }
}

function validateController(where: string, controller: Partial<ControllerIdentityRecord>): void {
  for (const field of Object.keys(IDENTITY_LIMITS) as Array<keyof typeof IDENTITY_LIMITS>) {
    checkText(where, field, controller[field], IDENTITY_LIMITS[field]);
  }
  if (!controller.subsystemNqn!.startsWith('nqn.')) {
    throw new Error(`${where}: subsystemNqn must start with 'nqn.', got ${JSON.stringify(controller.subsystemNqn)}`);
  }
}

function checkHex(where: string, field: string, value: unknown, digits: number): void {
  if (typeof value !== 'string' || !new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(value) || /^0+$/.test(value)) {
    throw new Error(`${where}: ${field} must be ${digits} hex digits, not all zero, got ${JSON.stringify(value)}`);
  }
}

function validateNamespace(where: string, entry: Partial<NamespaceIdentityRecord>): void {
  if (typeof entry.uri !== 'string' || entry.uri === '') {
    throw new Error(`${where}: uri must be a non-empty string, got ${JSON.stringify(entry.uri)}`);
  }
  checkHex(where, 'nguid', entry.nguid, 32);
  checkHex(where, 'eui64', entry.eui64, 16);
  const uuid = entry.uuid;
  if (
    typeof uuid !== 'string' ||
    !/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(uuid) ||
    /^[0-]+$/.test(uuid)
  ) {
    throw new Error(`${where}: uuid must be a non-nil RFC 4122 UUID, got ${JSON.stringify(uuid)}`);
  }
}

function checkUnique(statePath: string | undefined, entries: readonly NamespaceIdentityRecord[]): void {
  for (const field of ['nguid', 'eui64', 'uuid'] as const) {
    const seen = new Map<string, string>();
    for (const entry of entries) {
      const previous = seen.get(entry[field]);
      if (previous !== undefined) {
        const where = statePath === undefined ? 'identity' : `identity file '${statePath}'`;
        throw new Error(`${where}: namespaces '${previous}' and '${entry.uri}' have the same ${field} ${entry[field]}`);
      }
      seen.set(entry[field], entry.uri);
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

function parseIdentityFile(
  statePath: string,
  text: string,
): { controller: Partial<ControllerIdentityRecord>; namespaces: NamespaceIdentityRecord[] } {
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
  const namespacesData = data['namespaces'] ?? [];
  if (!Array.isArray(namespacesData)) throw new Error(`${where}: namespaces must be an array`);
  const namespaces = namespacesData.map((entry: unknown, index): NamespaceIdentityRecord => {
    if (!isObject(entry)) throw new Error(`${where}: namespaces[${index}] must be an object`);
    validateNamespace(`${where}: namespaces[${index}]`, entry as Partial<NamespaceIdentityRecord>);
    return {
      uri: entry['uri'] as string,
      nguid: (entry['nguid'] as string).toLowerCase(),
      eui64: (entry['eui64'] as string).toLowerCase(),
      uuid: (entry['uuid'] as string).toLowerCase(),
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
