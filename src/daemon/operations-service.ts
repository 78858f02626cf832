/** vfiod.v1.OperationService: reading the long-running operations of AttachDevice and DetachDevice (operations.ts). */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../util/log.js';
import { operationMessage, type OperationTracker } from './operations.js';
import { implementService, optionalText, requireText, waitMs } from './requests.js';

const DEFAULT_WAIT_MS = 30_000;

export function operationService(deps: { operations: OperationTracker; logger: Logger }): grpc.UntypedServiceImplementation {
  const { operations } = deps;
  const logger = deps.logger.child({ service: 'OperationService' });
  const operationName = (value: unknown): string => requireText(value, 'name', 'an operation name, operations/<uuid>');
  return implementService('OperationService', logger, {
    GetOperation: (request) => ({ operation: operationMessage(operations.get(operationName(request.name))) }),
    ListOperations: (request) => {
      const vmId = optionalText(request.vmId, 'vm_id');
      return {
        operations: operations.list({ ...(vmId ? { vmId } : {}), runningOnly: request.runningOnly, limit: request.pageSize }).map(operationMessage),
      };
    },
    WaitOperation: async (request) => {
      const name = operationName(request.name);
      const timeoutMs = waitMs(request.timeoutMs, 'timeout_ms') || DEFAULT_WAIT_MS;
      return { operation: operationMessage(await operations.wait(name, timeoutMs)) };
    },
  });
}
