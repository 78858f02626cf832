/**
 * The generated control-API types (src/daemon/generated/) are those of the protos as they are, and they hold: a
 * handler that returns a field its response does not have, or a client that sends one, does not compile. The
 * `@ts-expect-error` lines below are checked by `tsc -p tsconfig.test.json` (the first step of `npm test`): if the
 * types ever stop refusing them, the type check fails with "unused @ts-expect-error".
 */
import { describe, expect, it } from 'vitest';
import { staleProtoTypes } from '../../../scripts/proto-types.js';
import type { VfiodClient } from '../../../src/daemon/client.js';
import type { Operation } from '../../../src/daemon/generated/vfiod/v1/Operation.js';
import { implementService } from '../../../src/daemon/requests.js';
import { rootLogger } from '../../../src/util/log.js';

describe('generated proto types', () => {
  it('are up to date with proto/vfiod/v1 (regenerate: npx tsx scripts/proto-types.ts)', () => {
    expect(staleProtoTypes()).toEqual([]);
  }, 30_000);

  it('implementService wraps unary handlers and keeps server-streaming ones as they are', () => {
    const stream = (): void => {};
    const implementation = implementService('DeviceService', rootLogger, {
      ListDevices: () => ({ devices: [] }),
      GetDevice: () => ({ device: null }),
      PrepareDevice: () => ({}),
      ReleaseDevice: () => ({}),
      StreamDeviceEvents: stream,
      ListVgpuTypes: () => ({}),
      SetVgpuType: () => ({}),
      ClearVgpuType: () => ({}),
      CreateVfs: () => ({}),
    });
    expect(implementation['StreamDeviceEvents']).toBe(stream);
    expect(implementation['ListDevices']).not.toBe(undefined);
    expect(implementation['ListDevices']!.length).toBe(2); // (call, callback): grpc-js's unary signature
  });
});

// Type-level checks: never run, only compiled.
export function typeChecks(client: VfiodClient): void {
  const ok = {
    CreateController: () => ({ controller: { id: 'c1', state: 'CONTROLLER_STATE_SERVING' as const } }),
    DeleteController: () => ({}),
    ListControllers: () => ({ controllers: [] }),
    GetController: () => ({ controller: null }),
    AttachNamespace: () => ({ controller: null, nsid: 1 }),
    DetachNamespace: () => ({ controller: null }),
    ResizeNamespace: () => ({ controller: null }),
    SwapNamespaceBacking: () => ({ operation: null }),
    SetControllerLimits: () => ({ controller: null }),
  };
  implementService('ControllerService', rootLogger, ok);
  implementService('ControllerService', rootLogger, {
    ...ok,
    // @ts-expect-error a field GetControllerResponse does not have
    GetController: () => ({ controller: null, bogus: 1 }),
  });
  implementService('ControllerService', rootLogger, {
    ...ok,
    // @ts-expect-error a misspelled field
    GetController: async () => ({ controler: null }),
  });
  implementService('ControllerService', rootLogger, {
    ...ok,
    // @ts-expect-error a field ControllerInfo does not have, one message down
    CreateController: async () => ({ controller: { id: 'c1', sockt: '/run/x.sock' } }),
  });
  implementService('ControllerService', rootLogger, {
    ...ok,
    // @ts-expect-error an enum value ControllerState does not have
    CreateController: () => ({ controller: { id: 'c1', state: 'CONTROLLER_STATE_RUNNING' as const } }),
  });
  // @ts-expect-error a handler missing
  implementService('ControllerService', rootLogger, { CreateController: ok.CreateController, DeleteController: ok.DeleteController, ListControllers: ok.ListControllers });
  // A message holding a google.protobuf.Any (a declared Operation) is taken as it is; one down, a field it lacks is not.
  const operation: Operation = { name: 'operations/x', response: { type_url: 'type.googleapis.com/vfiod.v1.DetachDeviceResponse', value: Buffer.alloc(0) } };
  const operations = { GetOperation: () => ({ operation }), ListOperations: () => ({ operations: [operation] }), WaitOperation: async () => ({ operation }) };
  implementService('OperationService', rootLogger, operations);
  implementService('OperationService', rootLogger, {
    ...operations,
    // @ts-expect-error a field Operation does not have
    GetOperation: () => ({ operation: { name: 'operations/x', bogus: 1 } }),
  });
  // @ts-expect-error a request field CreateControllerRequest does not have
  void client.call('ControllerService', 'CreateController', { id: 'c1', socket: '/run/x.sock' });
  // @ts-expect-error an RPC ControllerService does not have
  void client.call('ControllerService', 'StartController', {});
  void client.call('ControllerService', 'GetController', { id: 'c1' }).then((response) => {
    // @ts-expect-error a response field GetControllerResponse does not have
    void response.controllers;
    return response.controller?.spec?.socketPath satisfies string | undefined;
  });
}
