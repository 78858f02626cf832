/**
 * The control API's protocol: proto/vfiod/v1/*.proto loaded with @grpc/proto-loader (messages as plain objects with
 * camelCase fields, enums as their names, 64-bit integers as numbers), plus a protobufjs root of the same files to
 * pack event payloads into google.protobuf.Any.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

/** proto/ at the repository root; the same relative path from src/daemon and dist/daemon. */
export const PROTO_ROOT = fileURLToPath(new URL('../../proto', import.meta.url));
export const PROTO_FILES = ['vfiod/v1/devices.proto', 'vfiod/v1/controllers.proto', 'vfiod/v1/attachments.proto', 'vfiod/v1/daemon.proto', 'vfiod/v1/operations.proto', 'vfiod/v1/events.proto'];

export type ServiceName = 'DeviceService' | 'ControllerService' | 'AttachmentService' | 'DaemonService' | 'OperationService' | 'EventService';
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

/** The service definition of `vfiod.v1.<name>` (for server.addService and for clients). */
export function serviceDefinition(name: ServiceName): grpc.ServiceDefinition {
  const ctor = (loadProtocol().grpcObject['vfiod'] as grpc.GrpcObject)['v1'] as grpc.GrpcObject;
  return (ctor[name] as grpc.ServiceClientConstructor).service;
}

export function clientConstructor(name: ServiceName): grpc.ServiceClientConstructor {
  const v1 = (loadProtocol().grpcObject['vfiod'] as grpc.GrpcObject)['v1'] as grpc.GrpcObject;
  return v1[name] as grpc.ServiceClientConstructor;
}

/**
 * Packs `value` (a plain object of message `vfiod.v1.<typeName>`) into a google.protobuf.Any. proto-loader keeps the
 * well-known types' field names as written (type_url), unlike ours.
 */
export function packAny(typeName: string, value: Record<string, unknown>): { type_url: string; value: Buffer } {
  const type = loadProtocol().root.lookupType(`${PACKAGE}.${typeName}`);
  const message = type.fromObject(value);
  return { type_url: `type.googleapis.com/${PACKAGE}.${typeName}`, value: Buffer.from(type.encode(message).finish()) };
}

/** Unpacks a google.protobuf.Any holding a vfiod.v1 message into a plain object (enums as names). */
export function unpackAny(any: { type_url: string; value: Uint8Array }): { typeName: string; value: Record<string, unknown> } {
  const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
  if (!typeName.startsWith(`${PACKAGE}.`)) throw new Error(`cannot unpack ${any.type_url}: not a ${PACKAGE} message`);
  const type = loadProtocol().root.lookupType(typeName);
  return { typeName, value: type.toObject(type.decode(any.value), { enums: String, longs: Number, defaults: true }) };
}
