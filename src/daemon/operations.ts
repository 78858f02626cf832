/**
 * Long-running operations (vfiod.v1.Operation): an attach, a detach or a namespace's move to another backing runs in
 * the background of the call that started it; its record is kept in api.db and every change of it is an event
 * (resource type operation). An operation that was running when the daemon stopped cannot go on (its handler is
 * gone): the next start marks it FAILED with OPERATION_INTERRUPTED; the attachment reconcile has by then completed or
 * rolled back what it had begun, and a move is on whichever backing its controller's saved definition names.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { type ErrorCode, type ErrorDetails, VfiodError, errorMessage } from '../util/errors.js';
import { type ApiStore, KEPT_OPERATIONS } from './api-store.js';
import type { EventLog } from './events.js';
import type { AttachDeviceResponse } from './generated/vfiod/v1/AttachDeviceResponse.js';
import type { DetachDeviceResponse } from './generated/vfiod/v1/DetachDeviceResponse.js';
import type { Operation } from './generated/vfiod/v1/Operation.js';
import type { OperationKind as OperationKindName } from './generated/vfiod/v1/OperationKind.js';
import type { OperationState as OperationStateName } from './generated/vfiod/v1/OperationState.js';
import type { SwapNamespaceBackingResponse } from './generated/vfiod/v1/SwapNamespaceBackingResponse.js';
import { packAny } from './proto.js';
import { errorFields } from './status-details.js';

export type OperationKind = 'attach-device' | 'detach-device' | 'swap-namespace-backing';
export type OperationState = 'running' | 'succeeded' | 'failed' | 'detach-pending';

export interface OperationRecord {
  name: string;
  kind: OperationKind;
  state: OperationState;
  progressPercent: number;
  step: string;
  vmId: string;
  deviceId: string;
  requestId: string;
  /** A namespace's move: its controller and NSID. */
  controllerId?: string;
  nsid?: number;
  /** SUCCEEDED: the vfiod.v1 message type and the plain object packed into `response`. */
  response?: OperationResponse;
  /** FAILED, DETACH_PENDING: the error as the call's status would have carried it. */
  error?: { code: ErrorCode; message: string; details: ErrorDetails };
  createTime: string;
  updateTime: string;
  eventSequence: number;
}

/** What a succeeded operation answers with: the response of its RPC (without the operation). */
export type OperationResponse =
  | { typeName: 'AttachDeviceResponse'; value: AttachDeviceResponse }
  | { typeName: 'DetachDeviceResponse'; value: DetachDeviceResponse }
  | { typeName: 'SwapNamespaceBackingResponse'; value: SwapNamespaceBackingResponse };

/** Most operations ListOperations returns. */
export const MAX_LISTED_OPERATIONS = 1000;

const OPERATION_KIND_NAMES: Record<OperationKind, OperationKindName> = {
  'attach-device': 'OPERATION_KIND_ATTACH_DEVICE',
  'detach-device': 'OPERATION_KIND_DETACH_DEVICE',
  'swap-namespace-backing': 'OPERATION_KIND_SWAP_NAMESPACE_BACKING',
};
const OPERATION_STATE_NAMES: Record<OperationState, OperationStateName> = {
  running: 'OPERATION_STATE_RUNNING',
  succeeded: 'OPERATION_STATE_SUCCEEDED',
  failed: 'OPERATION_STATE_FAILED',
  'detach-pending': 'OPERATION_STATE_DETACH_PENDING',
};

/** The vfiod.v1.Operation message of a record. */
export function operationMessage(op: OperationRecord): Operation {
  return {
    name: op.name,
    kind: OPERATION_KIND_NAMES[op.kind],
    state: OPERATION_STATE_NAMES[op.state],
    done: op.state !== 'running',
    progressPercent: op.progressPercent,
    step: op.step,
    vmId: op.vmId,
    deviceId: op.deviceId,
    requestId: op.requestId,
    ...(op.response ? { response: packAny(op.response.typeName, op.response.value) } : {}),
    ...(op.error ? { error: errorFields(op.error.code, op.error.message, op.error.details) } : {}),
    createTime: op.createTime,
    updateTime: op.updateTime,
    eventSequence: op.eventSequence,
    controllerId: op.controllerId ?? '',
    nsid: op.nsid ?? 0,
  };
}

export class OperationTracker {
  private readonly changed = new EventEmitter();

  constructor(
    private readonly store: ApiStore,
    private readonly events: EventLog,
  ) {
    this.changed.setMaxListeners(0);
  }

  /** Start-up: operations left running by the previous daemon failed (their handlers died with it). */
  interruptLeftovers(): OperationRecord[] {
    const left = this.store.listOperations({ runningOnly: true, limit: Number.MAX_SAFE_INTEGER }) as OperationRecord[];
    for (const op of left) {
      this.finish(op, 'failed', {
        error: new VfiodError('INTERNAL', `${describe(op)}: the daemon stopped while it ran (at "${op.step}"); ${op.kind === 'swap-namespace-backing' ? 'the namespace is on the backing its controller\'s saved definition names: see GetController' : 'the attachment reconcile at start-up completed or rolled it back: see ListAttachments'}`, {
          reason: 'OPERATION_INTERRUPTED',
          operation: op.name,
          vmId: op.vmId,
          ...(op.deviceId ? { deviceId: op.deviceId } : {}),
        }),
      });
    }
    return left;
  }

  start(kind: OperationKind, vmId: string, deviceId: string, requestId: string, subject: { controllerId: string; nsid: number } | Record<string, never> = {}): OperationRecord {
    const now = new Date().toISOString();
    const op: OperationRecord = { name: `operations/${randomUUID()}`, kind, state: 'running', progressPercent: 0, step: 'accepted', vmId, deviceId, requestId, ...subject, createTime: now, updateTime: now, eventSequence: 0 };
    this.save(op, `${describe(op)} started`);
    return op;
  }

  progress(op: OperationRecord, progressPercent: number, step: string, deviceId?: string): void {
    if (op.state !== 'running') return;
    op.progressPercent = Math.max(op.progressPercent, Math.min(99, progressPercent));
    op.step = step;
    if (deviceId) op.deviceId = deviceId;
    this.save(op, `${describe(op)}: ${step}`);
  }

  finish(op: OperationRecord, state: Exclude<OperationState, 'running'>, outcome: { response?: OperationRecord['response']; error?: unknown; deviceId?: string }): void {
    op.state = state;
    if (outcome.deviceId) op.deviceId = outcome.deviceId;
    if (state === 'succeeded') op.progressPercent = 100;
    if (outcome.response) op.response = outcome.response;
    if (outcome.error !== undefined) {
      const e = outcome.error;
      op.error = e instanceof VfiodError
        ? { code: e.code, message: e.message, details: e.details }
        : { code: 'INTERNAL', message: `${describe(op)}: internal error: ${errorMessage(e)}`, details: { reason: 'INTERNAL_ERROR' } };
      op.step = op.error.message;
    } else {
      op.step = state;
    }
    this.save(op, state === 'succeeded' ? `${describe(op)} succeeded` : op.step);
  }

  get(name: string): OperationRecord {
    const op = this.store.getOperation(name) as OperationRecord | undefined;
    if (!op) throw new VfiodError('NOT_FOUND', `operation ${name} not found (the daemon keeps the last ${KEPT_OPERATIONS} finished operations)`, { reason: 'OPERATION_NOT_FOUND', operation: name });
    return op;
  }

  list(filter: { vmId?: string; runningOnly?: boolean; limit?: number }): OperationRecord[] {
    return this.store.listOperations({ ...filter, limit: Math.min(filter.limit || MAX_LISTED_OPERATIONS, MAX_LISTED_OPERATIONS) }) as OperationRecord[];
  }

  /** The operation once it is done, or as it is after `timeoutMs`. */
  async wait(name: string, timeoutMs: number): Promise<OperationRecord> {
    const op = this.get(name);
    if (op.state !== 'running') return op;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        changedOff();
        resolve();
      }
      const listener = (finished: string): void => {
        if (finished === name) done();
      };
      const changedOff = (): void => void this.changed.off('done', listener);
      this.changed.on('done', listener);
    });
    return this.get(name);
  }

  private save(op: OperationRecord, detail: string): void {
    op.updateTime = new Date().toISOString();
    // The event first: the stored record then names the event that announced it.
    const event = this.events.publish({
      resourceType: 'operation',
      resourceName: op.name,
      action: op.state.toUpperCase().replace(/-/g, '_'),
      vmId: op.vmId,
      detail,
      snapshot: { operation: { ...op } },
    });
    op.eventSequence = event.sequence;
    this.store.putOperation(op.name, op.vmId, op.state !== 'running', Date.parse(op.createTime), op);
    if (op.state !== 'running') this.changed.emit('done', op.name);
  }
}

function describe(op: OperationRecord): string {
  if (op.kind === 'swap-namespace-backing') return `move namespace ${op.nsid} of controller ${op.controllerId} (${op.name})`;
  const what = op.kind === 'attach-device' ? 'attach' : 'detach';
  return `${what} ${op.deviceId || 'device'} ${op.kind === 'attach-device' ? 'to' : 'from'} VM ${op.vmId} (${op.name})`;
}
