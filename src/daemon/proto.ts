/**
 * The control API's protocol: proto/vfiod/v1/*.proto loaded with @grpc/proto-loader (messages as plain objects with
 * camelCase fields, enums as their names, 64-bit integers as numbers), plus a protobufjs root of the same files to
 * pack event payloads into google.protobuf.Any.
 *
 * The types of those objects are generated from the same files with the same options (src/daemon/generated/,
 * `npx tsx scripts/proto-types.ts`); the maps below give each service's handlers and each RPC's request and response
 * their types, so that a handler returning a field its response does not have, or a client sending one, does not
 * compile.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import type { AttachmentServiceDefinition, AttachmentServiceHandlers } from './generated/vfiod/v1/AttachmentService.js';
import type { ControllerServiceDefinition, ControllerServiceHandlers } from './generated/vfiod/v1/ControllerService.js';
import type { DaemonServiceDefinition, DaemonServiceHandlers } from './generated/vfiod/v1/DaemonService.js';
import type { DeviceServiceDefinition, DeviceServiceHandlers } from './generated/vfiod/v1/DeviceService.js';
import type { EventServiceDefinition, EventServiceHandlers } from './generated/vfiod/v1/EventService.js';
import type { OperationServiceDefinition, OperationServiceHandlers } from './generated/vfiod/v1/OperationService.js';

/** proto/ at the repository root; the same relative path from src/daemon and dist/daemon. */
export const PROTO_ROOT = fileURLToPath(new URL('../../proto', import.meta.url));
export const PROTO_FILES = ['vfiod/v1/devices.proto', 'vfiod/v1/controllers.proto', 'vfiod/v1/attachments.proto', 'vfiod/v1/daemon.proto', 'vfiod/v1/operations.proto', 'vfiod/v1/events.proto'];

/** Each vfiod.v1 service's generated method definitions and handler types. */
interface Services {
  DeviceService: { definition: DeviceServiceDefinition; handlers: DeviceServiceHandlers };
  ControllerService: { definition: ControllerServiceDefinition; handlers: ControllerServiceHandlers };
  AttachmentService: { definition: AttachmentServiceDefinition; handlers: AttachmentServiceHandlers };
  DaemonService: { definition: DaemonServiceDefinition; handlers: DaemonServiceHandlers };
  OperationService: { definition: OperationServiceDefinition; handlers: OperationServiceHandlers };
  EventService: { definition: EventServiceDefinition; handlers: EventServiceHandlers };
}
export type ServiceName = keyof Services;

/** The keys a generated interface declares (grpc-js's base interfaces add a string index signature). */
type DeclaredKeys<T> = keyof { [K in keyof T as string extends K ? never : number extends K ? never : K]: T[K] } & string;

/** The RPC names of a service, e.g. 'CreateController'. */
export type RpcName<S extends ServiceName> = DeclaredKeys<Services[S]['handlers']>;

type Definition<S extends ServiceName, M extends RpcName<S>> = Services[S]['definition'][M];
/** What a client sends (fields optional, enums by name or number). */
export type RequestOf<S extends ServiceName, M extends RpcName<S>> =
  Definition<S, M> extends protoLoader.MethodDefinition<infer Request, any, any, any> ? Request : never;
/** What a client receives (every field present: defaults for scalars, null for an absent message, enums by name). */
export type ResponseOf<S extends ServiceName, M extends RpcName<S>> =
  Definition<S, M> extends protoLoader.MethodDefinition<any, any, any, infer Response> ? Response : never;

/**
 * What a service implements: a unary RPC is a function from its request (as the server decodes it) to its response
 * (or a promise of it); a server-streaming RPC is grpc-js's handler as generated.
 */
export type ServiceHandlers<S extends ServiceName> = {
  [M in RpcName<S>]: Services[S]['handlers'][M] extends grpc.handleServerStreamingCall<any, any>
    ? Services[S]['handlers'][M]
    : Services[S]['handlers'][M] extends grpc.handleUnaryCall<infer Request, infer Response>
      ? (request: Request, call: grpc.ServerUnaryCall<Request, Response>) => Promise<Response> | Response
      : never;
};
export const PACKAGE = 'vfiod.v1';

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

let cached: { definition: protoLoader.PackageDefinition; grpcObject: grpc.GrpcObject; root: protobuf.Root } | undefined;

export function loadProtocol(): { definition: protoLoader.PackageDefinition; grpcObject: grpc.GrpcObject; root: protobuf.Root } {
  if (cached) return cached;
  const definition = protoLoader.loadSync(PROTO_FILES, LOADER_OPTIONS);
  const grpcObject = grpc.loadPackageDefinition(definition);
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : `${PROTO_ROOT}/${target}`);
  root.loadSync(PROTO_FILES, { keepCase: false });
  root.resolveAll();
  cached = { definition, grpcObject, root };
  return cached;
}

/**
 * `Actual` with every property that the message type `Expected` does not declare turned into `never`, at every
 * depth. TypeScript checks a returned object literal against the declared return type of a function but not against
 * a contextual one, so without this a handler could return `{ controller, bogus: 1 }` and compile.
 */
type Exact<Actual, Expected> = Actual extends Uint8Array | string | number | boolean | bigint | null | undefined | protoLoader.Long
  ? Actual
  : [NonNullable<Expected>] extends [Actual] // a value already of its message type (a helper declared it)
    ? Actual
    : Actual extends readonly (infer Element)[]
      ? NonNullable<Expected> extends readonly (infer ExpectedElement)[] ? readonly Exact<Element, ExpectedElement>[] : Actual
      : { [K in keyof Actual]: K extends keyof NonNullable<Expected> ? Exact<Actual[K], NonNullable<Expected>[K]> : never };

/** Handlers `H` as written, each one's result held to exactly the fields of its response type. */
export type ExactHandlers<H, Expected> = {
  [M in keyof H]: M extends keyof Expected
    ? H[M] extends (...args: infer Parameters) => infer Result
      ? Expected[M] extends (...args: any) => infer ExpectedResult
        ? (...args: Parameters) => Exact<Awaited<Result>, Awaited<ExpectedResult>> | Promise<Exact<Awaited<Result>, Awaited<ExpectedResult>>>
        : H[M]
      : never
    : never;
};

/** The service definition of `vfiod.v1.<name>` (for server.addService and for clients). */
export function serviceDefinition<S extends ServiceName>(name: S): Services[S]['definition'] {
  return clientConstructor(name).service as Services[S]['definition'];
}

export function clientConstructor(name: ServiceName): grpc.ServiceClientConstructor {
  const v1 = (loadProtocol().grpcObject['vfiod'] as grpc.GrpcObject)['v1'] as grpc.GrpcObject;
  return v1[name] as grpc.ServiceClientConstructor;
}

/**
 * Packs `value` (a plain object of message `vfiod.v1.<typeName>`) into a google.protobuf.Any. proto-loader keeps the
 * well-known types' field names as written (type_url), unlike ours.
 */
export function packAny(typeName: string, value: object): { type_url: string; value: Buffer } {
  const type = loadProtocol().root.lookupType(`${PACKAGE}.${typeName}`);
  const message = type.fromObject(value as Record<string, unknown>);
  return { type_url: `type.googleapis.com/${PACKAGE}.${typeName}`, value: Buffer.from(type.encode(message).finish()) };
}

/** Unpacks a google.protobuf.Any holding a vfiod.v1 message into a plain object (enums as names). */
export function unpackAny(any: { type_url: string; value: Uint8Array }): { typeName: string; value: Record<string, unknown> } {
  const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
  if (!typeName.startsWith(`${PACKAGE}.`)) throw new Error(`cannot unpack ${any.type_url}: not a ${PACKAGE} message`);
  const type = loadProtocol().root.lookupType(typeName);
  return { typeName, value: type.toObject(type.decode(any.value), { enums: String, longs: Number, defaults: true }) };
}
