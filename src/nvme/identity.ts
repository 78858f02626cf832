/**
 * Who the emulated controller says it is: the strings and numbers Identify Controller reports. They are persisted by
 * the caller (a guest keys its disk naming, multipath and boot entries on them), so they are validated here once and
 * a bad value fails controller construction with a message that names the field.
 */

export interface ControllerIdentity {
  /** Serial Number (SN): 1..20 printable ASCII characters. */
  serialNumber: string;
  /** Model Number (MN): 1..40 printable ASCII characters. */
  modelNumber: string;
  /** Firmware Revision (FR): 1..8 printable ASCII characters; also Firmware Slot 1 in the firmware log page. */
  firmwareRevision: string;
  /** NVM Subsystem NVMe Qualified Name (SUBNQN): 1..223 bytes of UTF-8, no NUL; configured ones pass subsystemNqnProblem. */
  subsystemNqn: string;
  /** IEEE OUI (24 bits) reported in Identify Controller; default 0 (none). */
  ieeeOui?: number;
  /** Controller ID (CNTLID), 0..0xFFEF; default 0. */
  controllerId?: number;
  /** PCI Vendor ID (VID) repeated in Identify Controller; should match the PCI function's config space. */
  pciVendorId?: number;
  /** PCI Subsystem Vendor ID (SSVID) repeated in Identify Controller. */
  pciSubsystemVendorId?: number;
}

/** The identity with defaults applied, as the Identify builders consume it. */
export interface ResolvedControllerIdentity {
  readonly serialNumber: string;
  readonly modelNumber: string;
  readonly firmwareRevision: string;
  readonly subsystemNqn: string;
  readonly ieeeOui: number;
  readonly controllerId: number;
  readonly pciVendorId: number;
  readonly pciSubsystemVendorId: number;
}

/** Default PCI ids; the same values `vfiod serve` puts in config space unless configured otherwise. */
export const DEFAULT_IDENTIFY_VENDOR_ID = 0x4e58;

/** CNTLID: FFF0h..FFFFh are reserved. */
export const MAX_CONTROLLER_ID = 0xffef;
/** IEEE OUI: 24 bits. */
export const MAX_IEEE_OUI = 0xffffff;
const MAX_NQN_BYTES = 223;
/** The NQN form for a name without a domain of one's own (NVMe Base 2.0, 4.5 "NVMe Qualified Names"). */
export const UUID_NQN_PREFIX = 'nqn.2014-08.org.nvmexpress:uuid:';
const UUID_PATTERN = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
/** nqn.yyyy-mm.<reverse domain>[:<anything>]: the date the domain was owned, then the domain, label by label. */
const DOMAIN_NQN_PATTERN = /^nqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[\x21-\x7e]+)?$/;

/**
 * What is wrong with `nqn` as a subsystem NQN, undefined when nothing: at most 223 bytes, printable ASCII without
 * spaces (hosts compare and print it byte by byte), either form of NVMe Base 2.0 section 4.5.
 */
export function subsystemNqnProblem(nqn: string): string | undefined {
  if (nqn.length === 0) return 'must not be empty';
  const bytes = Buffer.byteLength(nqn, 'utf8');
  if (bytes > MAX_NQN_BYTES) return `is ${bytes} bytes, at most ${MAX_NQN_BYTES}`;
  if (!/^[\x21-\x7e]+$/.test(nqn)) return 'must be printable ASCII without spaces';
  if (nqn.startsWith(UUID_NQN_PREFIX)) {
    return UUID_PATTERN.test(nqn.slice(UUID_NQN_PREFIX.length)) ? undefined : `must end in a UUID after '${UUID_NQN_PREFIX}'`;
  }
  if (!DOMAIN_NQN_PATTERN.test(nqn)) {
    return `is not an NQN: 'nqn.<yyyy-mm>.<reverse domain>[:<name>]' (e.g. nqn.2014-08.com.example:disk1) or '${UUID_NQN_PREFIX}<uuid>'`;
  }
  return undefined;
}

/** Checks every field and fills in defaults; throws an Error naming the offending field and value. */
export function resolveControllerIdentity(identity: ControllerIdentity): ResolvedControllerIdentity {
  checkAscii('serialNumber', identity.serialNumber, 20);
  checkAscii('modelNumber', identity.modelNumber, 40);
  checkAscii('firmwareRevision', identity.firmwareRevision, 8);
  const nqn = identity.subsystemNqn;
  // Only what Identify cannot carry is refused here: the NQN syntax is checked where a value is configured
  // (subsystemNqnProblem), so an NQN persisted before that check keeps working.
  if (typeof nqn !== 'string' || nqn.length === 0) throw identityError('subsystemNqn', nqn, 'must be a non-empty string');
  const nqnBytes = Buffer.byteLength(nqn, 'utf8');
  if (nqnBytes > MAX_NQN_BYTES) throw identityError('subsystemNqn', nqn, `is ${nqnBytes} bytes, at most ${MAX_NQN_BYTES}`);
  if (nqn.includes('\0')) throw identityError('subsystemNqn', nqn, 'must not contain NUL');
  const ieeeOui = checkInteger('ieeeOui', identity.ieeeOui ?? 0, MAX_IEEE_OUI);
  const controllerId = checkInteger('controllerId', identity.controllerId ?? 0, MAX_CONTROLLER_ID);
  const pciVendorId = checkInteger('pciVendorId', identity.pciVendorId ?? DEFAULT_IDENTIFY_VENDOR_ID, 0xffff);
  const pciSubsystemVendorId = checkInteger(
    'pciSubsystemVendorId',
    identity.pciSubsystemVendorId ?? pciVendorId,
    0xffff,
  );
  return {
    serialNumber: identity.serialNumber,
    modelNumber: identity.modelNumber,
    firmwareRevision: identity.firmwareRevision,
    subsystemNqn: nqn,
    ieeeOui,
    controllerId,
    pciVendorId,
    pciSubsystemVendorId,
  };
}

function checkAscii(field: string, value: unknown, maxLength: number): void {
  if (typeof value !== 'string' || value.length === 0) throw identityError(field, value, 'must be a non-empty string');
  if (value.length > maxLength) throw identityError(field, value, `is ${value.length} characters, at most ${maxLength}`);
  // Identify fields are space-padded ASCII (0x20-0x7E); anything else shows up garbled in guest tools.
  if (!/^[\x20-\x7e]+$/.test(value)) throw identityError(field, value, 'must be printable ASCII (0x20-0x7E)');
}

function checkInteger(field: string, value: unknown, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    throw identityError(field, value, `must be an integer in 0..0x${max.toString(16)}`);
  }
  return value;
}

function identityError(field: string, value: unknown, problem: string): Error {
  return new Error(`invalid NVMe controller identity: ${field} ${JSON.stringify(value)} ${problem}`);
}
