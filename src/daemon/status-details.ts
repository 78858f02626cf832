/**
 * The control API's structured errors: a `google.rpc.Status` (proto/google/rpc/status.proto) in the standard
 * `grpc-status-details-bin` trailer of every error, as gRPC clients in any language read it (tonic's
 * `tonic_types::StatusExt`, Go's `status.FromError(...).Details()`, ...). It carries:
 * - `google.rpc.ErrorInfo`: the stable reason (src/util/error-reasons.ts), the domain `vfiod.dev`, and the facts of the
 *   error as metadata (bdf, iommu_group, holder_pid, controller_id, ...);
 * - `google.rpc.PreconditionFailure` for FAILED_PRECONDITION: every violation;
 * - `google.rpc.BadRequest` for INVALID_ARGUMENT naming a field;
 * - `google.rpc.QuotaFailure` for RESOURCE_EXHAUSTED;
 * - `google.rpc.ResourceInfo`: the resource the error is about, when there is one.
 * Encoding and decoding use protobufjs with the .proto files, so what goes out is what the standard defines.
 */
import protobuf from 'protobufjs';
import { ERROR_DOMAIN, ERROR_REASONS, isReason, RESOURCE_TYPES, type Reason, type ReasonSpec, snakeCase } from '../util/error-reasons.js';
import type { ErrorCode, ErrorDetails } from '../util/errors.js';
import { PROTO_ROOT } from './proto.js';

/** The trailer gRPC defines for a serialised google.rpc.Status. */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

const TYPE_PREFIX = 'type.googleapis.com/';

export interface ErrorInfo {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

export interface PreconditionViolation {
  type: string;
  subject: string;
  description: string;
}

export interface FieldViolation {
  field: string;
  description: string;
}

export interface ResourceInfo {
  resourceType: string;
  resourceName: string;
  owner: string;
  description: string;
}

export interface QuotaViolation {
  subject: string;
  description: string;
}

/** A google.rpc.Status with the details vfiod knows decoded; `other` lists the type URLs of any others. */
export interface StatusDetails {
  code: number;
  message: string;
  errorInfo?: ErrorInfo;
  preconditionFailure?: { violations: PreconditionViolation[] };
  badRequest?: { fieldViolations: FieldViolation[] };
  resourceInfo?: ResourceInfo;
  quotaFailure?: { violations: QuotaViolation[] };
  other?: string[];
}

/** gRPC status numbers of the VfiodError codes (google.rpc.Code). */
const CODE_NUMBERS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
  UNAVAILABLE: 14,
};

let types: Record<'Status' | 'ErrorInfo' | 'PreconditionFailure' | 'BadRequest' | 'ResourceInfo' | 'QuotaFailure', protobuf.Type> | undefined;

function loadTypes(): NonNullable<typeof types> {
  if (types) return types;
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : `${PROTO_ROOT}/${target}`);
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: false });
  root.resolveAll();
  const type = (name: string): protobuf.Type => root.lookupType(`google.rpc.${name}`);
  types = {
    Status: type('Status'),
    ErrorInfo: type('ErrorInfo'),
    PreconditionFailure: type('PreconditionFailure'),
    BadRequest: type('BadRequest'),
    ResourceInfo: type('ResourceInfo'),
    QuotaFailure: type('QuotaFailure'),
  };
  return types;
}

/** Longest metadata value sent, and most keys: the trailer shares grpc-js's 8 KiB metadata limit with the message. */
const MAX_METADATA_VALUE = 256;
const MAX_METADATA_KEYS = 32;
const MAX_VIOLATIONS = 32;
/** Longest serialised Status sent (base64 makes it 4/3 of this in the trailer). */
export const MAX_STATUS_BYTES = 2048;

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 3)}...`;
}

/** A details value as metadata text: scalars as they are, lists of scalars joined with ', '; anything else is left out. */
function metadataValue(value: unknown): string | undefined {
  if (typeof value === 'string') return value === '' ? undefined : value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) {
    const items = value.map(metadataValue);
    if (items.length === 0 || items.some((item) => item === undefined)) return undefined;
    return items.join(', ');
  }
  return undefined;
}

/** ErrorInfo metadata of VfiodError details: every fact but `reason` and `violations`, keys in snake_case. */
export function errorMetadata(details: Partial<ErrorDetails>, maxValue = MAX_METADATA_VALUE): Record<string, string> {
  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(details)) {
    if (key === 'reason' || key === 'violations') continue;
    const text = metadataValue(value);
    if (text === undefined) continue;
    if (Object.keys(metadata).length >= MAX_METADATA_KEYS) break;
    metadata[snakeCase(key)] = cut(text, maxValue);
  }
  return metadata;
}

/** The resource a reason names, from its metadata; undefined when the reason has none or the metadata lacks it. */
export function resourceOf(reason: Reason, metadata: Record<string, string>): { type: string; name: string; owner: string } | undefined {
  const spec: ReasonSpec = ERROR_REASONS[reason];
  if (!spec.resource) return undefined;
  const { name, owner } = RESOURCE_TYPES[spec.resource];
  const parts = name.map((key) => metadata[key]);
  if (parts.some((part) => part === undefined)) return undefined;
  return { type: spec.resource, name: parts.length ? parts.join('/') : 'vfiod', owner: (owner && metadata[owner]) || '' };
}

/**
 * The google.rpc.Status of an error: `code` is the VfiodError code, `message` the (bounded) status message. Details
 * that are not VfiodError details (an unexpected error) get the reason INTERNAL_ERROR.
 */
export function statusDetailsOf(code: ErrorCode, message: string, details: Partial<ErrorDetails>, level = 0): StatusDetails {
  const reason: Reason = isReason(details.reason) ? details.reason : 'INTERNAL_ERROR';
  // Shrunk step by step when the encoding is too large (see encodeStatusDetails).
  const maxValue = [MAX_METADATA_VALUE, 64, 32][Math.min(level, 2)]!;
  const maxText = [message.length, 300, 100][Math.min(level, 2)]!;
  const maxList = [MAX_VIOLATIONS, 8, 1][Math.min(level, 2)]!;
  const metadata = errorMetadata(details, maxValue);
  const resource = resourceOf(reason, metadata);
  const subject = resource ? `${resource.type}:${resource.name}` : reason;
  const status: StatusDetails = {
    code: CODE_NUMBERS[code],
    message: cut(message, maxText),
    errorInfo: { reason, domain: ERROR_DOMAIN, metadata },
  };
  if (resource) status.resourceInfo = { resourceType: resource.type, resourceName: resource.name, owner: resource.owner, description: '' };
  if (code === 'FAILED_PRECONDITION') {
    const violations = details.violations?.length ? details.violations : [{ type: reason, subject, description: message }];
    status.preconditionFailure = {
      violations: violations.slice(0, maxList).map((v) => ({ type: v.type, subject: cut(v.subject, maxValue), description: cut(v.description, maxText) })),
    };
  }
  if (code === 'INVALID_ARGUMENT' && metadata['field']) {
    status.badRequest = { fieldViolations: [{ field: metadata['field'], description: cut(message, maxText) }] };
  }
  if (code === 'RESOURCE_EXHAUSTED') status.quotaFailure = { violations: [{ subject, description: cut(message, maxText) }] };
  return status;
}

/** A google.protobuf.Any (protobufjs's built-in type keeps the field names of any.proto: type_url). */
interface Any {
  type_url: string;
  value: Uint8Array;
}

function packed(name: keyof NonNullable<typeof types>, value: object): Any {
  const type = loadTypes()[name];
  return { type_url: `${TYPE_PREFIX}google.rpc.${name}`, value: type.encode(type.fromObject(value)).finish() };
}

/** Serialises a google.rpc.Status (the value of the grpc-status-details-bin trailer). */
export function encodeStatus(status: StatusDetails): Buffer {
  const details: Any[] = [];
  if (status.errorInfo) details.push(packed('ErrorInfo', status.errorInfo));
  if (status.preconditionFailure) details.push(packed('PreconditionFailure', status.preconditionFailure));
  if (status.badRequest) details.push(packed('BadRequest', status.badRequest));
  if (status.quotaFailure) details.push(packed('QuotaFailure', status.quotaFailure));
  if (status.resourceInfo) details.push(packed('ResourceInfo', status.resourceInfo));
  const type = loadTypes().Status;
  return Buffer.from(type.encode(type.fromObject({ code: status.code, message: status.message, details })).finish());
}

/** The Status of an error, serialised and at most MAX_STATUS_BYTES long (values, texts and lists cut if need be). */
export function encodeStatusDetails(code: ErrorCode, message: string, details: Partial<ErrorDetails>): Buffer {
  for (let level = 0; level < 3; level++) {
    const encoded = encodeStatus(statusDetailsOf(code, message, details, level));
    if (encoded.length <= MAX_STATUS_BYTES) return encoded;
  }
  // Only the reason is sure to fit.
  const reason = isReason(details.reason) ? details.reason : 'INTERNAL_ERROR';
  return encodeStatus({ code: CODE_NUMBERS[code], message: cut(message, 100), errorInfo: { reason, domain: ERROR_DOMAIN, metadata: {} } });
}

/**
 * An error as a message field (vfiod.v1.OperationError): the code, message, reason and metadata of its
 * google.rpc.Status, and the Status itself serialized, the same bytes as the error's grpc-status-details-bin trailer.
 */
export function errorFields(code: ErrorCode, message: string, details: Partial<ErrorDetails>): { code: number; message: string; reason: string; metadata: Record<string, string>; statusDetails: Buffer } {
  const statusDetails = encodeStatusDetails(code, message, details);
  const status = decodeStatus(statusDetails);
  return { code: status.code, message: status.message, reason: status.errorInfo?.reason ?? '', metadata: status.errorInfo?.metadata ?? {}, statusDetails };
}

/** Decodes a serialised google.rpc.Status; throws on bytes that are not one. */
export function decodeStatus(bytes: Uint8Array): StatusDetails {
  const t = loadTypes();
  const options = { longs: Number, enums: String, defaults: true, arrays: true, objects: true };
  const raw = t.Status.toObject(t.Status.decode(bytes), options) as { code: number; message: string; details: Any[] };
  const status: StatusDetails = { code: raw.code, message: raw.message };
  const other: string[] = [];
  for (const any of raw.details) {
    const name = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const decode = <T>(type: protobuf.Type): T => type.toObject(type.decode(any.value), options) as T;
    switch (name) {
      case 'google.rpc.ErrorInfo':
        status.errorInfo = decode<ErrorInfo>(t.ErrorInfo);
        break;
      case 'google.rpc.PreconditionFailure':
        status.preconditionFailure = decode<{ violations: PreconditionViolation[] }>(t.PreconditionFailure);
        break;
      case 'google.rpc.BadRequest':
        status.badRequest = decode<{ fieldViolations: FieldViolation[] }>(t.BadRequest);
        break;
      case 'google.rpc.ResourceInfo':
        status.resourceInfo = decode<ResourceInfo>(t.ResourceInfo);
        break;
      case 'google.rpc.QuotaFailure':
        status.quotaFailure = decode<{ violations: QuotaViolation[] }>(t.QuotaFailure);
        break;
      default:
        other.push(any.type_url);
    }
  }
  if (other.length) status.other = other;
  return status;
}
