/**
 * The google.rpc.Status the daemon sends in grpc-status-details-bin: round trips through the encoder and decoder,
 * the wire bytes checked by hand against the standard field numbers (so a wrong number in proto/google/rpc would
 * show), what each code adds, the size bound, and toStatus putting it in the trailer.
 */
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { boundedDetails, MAX_STATUS_DETAILS_ENCODED, toStatus } from '../../../src/daemon/requests.js';
import {
  decodeStatus,
  encodeStatus,
  encodeStatusDetails,
  errorMetadata,
  MAX_STATUS_BYTES,
  STATUS_DETAILS_KEY,
  statusDetailsOf,
} from '../../../src/daemon/status-details.js';
import { VfiodError } from '../../../src/util/errors.js';
import { memoryLogger } from '../../../src/util/log.js';

/** A length-delimited protobuf field (wire type 2) with a one-byte length. */
const field = (number: number, bytes: Buffer): Buffer => Buffer.concat([Buffer.from([(number << 3) | 2, bytes.length]), bytes]);
const text = (number: number, value: string): Buffer => field(number, Buffer.from(value));

describe('google.rpc.Status details', () => {
  it('round-trips every detail it sends', () => {
    const status = {
      code: 9,
      message: '0000:06:00.0 is in use on the host',
      errorInfo: { reason: 'DEVICE_IN_USE', domain: 'vfiod.dev', metadata: { bdf: '0000:06:00.0', holder_pid: '1234, 5678' } },
      preconditionFailure: { violations: [{ type: 'DEVICE_IN_USE', subject: 'pci-device:0000:06:00.0', description: 'mounted on /' }] },
      badRequest: { fieldViolations: [{ field: 'spec.socket_path', description: 'must be absolute' }] },
      quotaFailure: { violations: [{ subject: 'daemon:vfiod', description: '128 controllers' }] },
      resourceInfo: { resourceType: 'pci-device', resourceName: '0000:06:00.0', owner: 'vm1', description: '' },
    };
    expect(decodeStatus(encodeStatus(status))).toEqual(status);
  });

  it('writes the standard field numbers (Status 1-3, Any 1-2, ErrorInfo 1-3 with a map entry 1-2)', () => {
    const bytes = encodeStatus({ code: 5, message: 'm', errorInfo: { reason: 'R', domain: 'd', metadata: { k: 'v' } } });
    const errorInfo = Buffer.concat([text(1, 'R'), text(2, 'd'), field(3, Buffer.concat([text(1, 'k'), text(2, 'v')]))]);
    const any = Buffer.concat([text(1, 'type.googleapis.com/google.rpc.ErrorInfo'), field(2, errorInfo)]);
    expect(bytes).toEqual(Buffer.concat([Buffer.from([0x08, 5]), text(2, 'm'), field(3, any)]));

    const resource = encodeStatus({ code: 5, message: 'm', resourceInfo: { resourceType: 't', resourceName: 'n', owner: 'o', description: 'x' } });
    const info = Buffer.concat([text(1, 't'), text(2, 'n'), text(3, 'o'), text(4, 'x')]);
    expect(resource).toEqual(Buffer.concat([Buffer.from([0x08, 5]), text(2, 'm'), field(3, Buffer.concat([text(1, 'type.googleapis.com/google.rpc.ResourceInfo'), field(2, info)]))]));

    const precondition = encodeStatus({ code: 9, message: 'm', preconditionFailure: { violations: [{ type: 'a', subject: 'b', description: 'c' }] } });
    const violations = field(1, Buffer.concat([text(1, 'a'), text(2, 'b'), text(3, 'c')]));
    expect(precondition).toEqual(Buffer.concat([Buffer.from([0x08, 9]), text(2, 'm'), field(3, Buffer.concat([text(1, 'type.googleapis.com/google.rpc.PreconditionFailure'), field(2, violations)]))]));
  });

  it('keeps the type URL of details it does not know', () => {
    const unknown = Buffer.concat([Buffer.from([0x08, 13]), field(3, Buffer.concat([text(1, 'type.googleapis.com/google.rpc.DebugInfo'), field(2, text(2, 'x'))]))]);
    expect(decodeStatus(unknown)).toEqual({ code: 13, message: '', other: ['type.googleapis.com/google.rpc.DebugInfo'] });
  });

  it('turns VfiodError details into ErrorInfo metadata: snake_case keys, lists joined, objects and empty values left out', () => {
    expect(
      errorMetadata({ reason: 'DEVICE_STILL_HELD', bdf: '0000:01:00.1', holderPid: [4242, 4343], iommuGroup: 3, driver: '', holders: [{ pid: 1 }], violations: [] }),
    ).toEqual({ bdf: '0000:01:00.1', holder_pid: '4242, 4343', iommu_group: '3' });
  });

  it('adds PreconditionFailure, BadRequest, QuotaFailure and ResourceInfo where they apply', () => {
    const precondition = statusDetailsOf('FAILED_PRECONDITION', 'no reset', { reason: 'DEVICE_NO_RESET', bdf: '0000:01:00.1' });
    expect(precondition).toMatchObject({
      code: grpc.status.FAILED_PRECONDITION,
      errorInfo: { reason: 'DEVICE_NO_RESET', domain: 'vfiod.dev', metadata: { bdf: '0000:01:00.1' } },
      preconditionFailure: { violations: [{ type: 'DEVICE_NO_RESET', subject: 'pci-device:0000:01:00.1', description: 'no reset' }] },
      resourceInfo: { resourceType: 'pci-device', resourceName: '0000:01:00.1', owner: '' },
    });
    const invalid = statusDetailsOf('INVALID_ARGUMENT', 'bad path', { reason: 'SOCKET_PATH_INVALID', field: 'spec.socket_path', controllerId: 'c1' });
    expect(invalid.badRequest).toEqual({ fieldViolations: [{ field: 'spec.socket_path', description: 'bad path' }] });
    expect(invalid.preconditionFailure).toBeUndefined();
    // socket_path is not in the metadata: no ResourceInfo rather than one without a name.
    expect(invalid.resourceInfo).toBeUndefined();
    const quota = statusDetailsOf('RESOURCE_EXHAUSTED', 'limit', { reason: 'CONTROLLER_LIMIT_REACHED', controllerId: 'c', count: 2, limit: 2 });
    expect(quota.quotaFailure).toEqual({ violations: [{ subject: 'daemon:vfiod', description: 'limit' }] });
    const attachment = statusDetailsOf('NOT_FOUND', 'none', { reason: 'ATTACHMENT_NOT_FOUND', vmId: 'vm1', deviceId: 'disk1' });
    expect(attachment.resourceInfo).toEqual({ resourceType: 'attachment', resourceName: 'vm1/disk1', owner: 'vm1', description: '' });
    // Details that are not a VfiodError's.
    expect(statusDetailsOf('INTERNAL', 'oops', {}).errorInfo?.reason).toBe('INTERNAL_ERROR');
  });

  it('stays within MAX_STATUS_BYTES whatever the details hold, keeping the reason', () => {
    const huge = 'x'.repeat(5000);
    const details = {
      reason: 'DEVICE_IN_USE' as const,
      bdf: '0000:06:00.0',
      inUse: Array.from({ length: 50 }, (_, i) => `use ${i} ${huge}`),
      ...Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`key${i}`, huge])),
      violations: Array.from({ length: 100 }, () => ({ type: 'DEVICE_IN_USE' as const, subject: huge, description: huge })),
    };
    const bytes = encodeStatusDetails('FAILED_PRECONDITION', boundedDetails(huge), details);
    expect(bytes.length).toBeLessThanOrEqual(MAX_STATUS_BYTES);
    const decoded = decodeStatus(bytes);
    expect(decoded.errorInfo?.reason).toBe('DEVICE_IN_USE');
    expect(decoded.code).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it('bounds the status message as grpc-js encodes it, and never leaves half a surrogate pair', () => {
    const wide = '磁'.repeat(3000);
    const bounded = boundedDetails(wide);
    expect(encodeURI(bounded).length).toBeLessThanOrEqual(MAX_STATUS_DETAILS_ENCODED);
    const emoji = '😀'.repeat(3000);
    expect(() => encodeURI(boundedDetails(emoji))).not.toThrow();
    expect(() => encodeURI(boundedDetails(`a\ud800b`))).not.toThrow();
  });

  it('toStatus puts the Status in the trailer, for a VfiodError and for anything unexpected', () => {
    const { logger } = memoryLogger();
    const refused = toStatus(new VfiodError('ALREADY_EXISTS', 'controller c1 already exists', { reason: 'CONTROLLER_EXISTS', controllerId: 'c1' }), 'CreateController', logger);
    expect(refused.metadata?.get('vfiod-error-code')).toEqual(['ALREADY_EXISTS']);
    expect(decodeStatus(refused.metadata!.get(STATUS_DETAILS_KEY)[0] as Buffer)).toMatchObject({
      code: grpc.status.ALREADY_EXISTS,
      message: 'controller c1 already exists',
      errorInfo: { reason: 'CONTROLLER_EXISTS', metadata: { controller_id: 'c1' } },
      resourceInfo: { resourceType: 'controller', resourceName: 'c1' },
    });
    const bug = toStatus(new TypeError('x is undefined'), 'GetDevice', logger);
    expect(bug.code).toBe(grpc.status.INTERNAL);
    expect(decodeStatus(bug.metadata!.get(STATUS_DETAILS_KEY)[0] as Buffer).errorInfo).toEqual({ reason: 'INTERNAL_ERROR', domain: 'vfiod.dev', metadata: { rpc: 'GetDevice' } });
  });
});
