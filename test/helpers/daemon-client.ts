/** Test helpers for the control API: status assertions, health and reflection clients, a raw-bytes caller. */
import { createRequire } from 'node:module';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { expect } from 'vitest';
import { ApiError, grpcTarget } from '../../src/daemon/client.js';

const require = createRequire(import.meta.url);

/** Awaits a call that must fail; checks the status code and that the message mentions every `mentions`. */
export async function expectStatus(call: Promise<unknown>, code: keyof typeof grpc.status, ...mentions: string[]): Promise<ApiError> {
  const error = await call.then(
    (value) => {
      throw new Error(`expected ${code}, got a response: ${JSON.stringify(value)}`);
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ApiError);
  const api = error as ApiError;
  expect(api.statusName, api.details).toBe(code);
  for (const text of mentions) expect(api.details).toContain(text);
  return api;
}

/**
 * Resolves once the daemon has subscribed `stream` (it sends the response headers right after subscribing), so every
 * event published from then on reaches it; rejects if the stream fails first.
 */
export function streamSubscribed(stream: grpc.ClientReadableStream<unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.once('metadata', () => resolve());
    stream.once('error', reject);
  });
}

function loadService(file: string, includeDir: string, pkg: string[], service: string): grpc.ServiceClientConstructor {
  const definition = protoLoader.loadSync(file, { includeDirs: [includeDir], keepCase: true, enums: String, longs: Number, defaults: true, oneofs: true });
  let node: grpc.GrpcObject = grpc.loadPackageDefinition(definition);
  for (const part of pkg) node = node[part] as grpc.GrpcObject;
  return node[service] as unknown as grpc.ServiceClientConstructor;
}

export function healthClient(address: string, credentials = grpc.credentials.createInsecure()): grpc.Client {
  const protoPath = (require('grpc-health-check') as { protoPath: string }).protoPath;
  const Health = loadService(protoPath, path.dirname(protoPath), ['grpc', 'health', 'v1'], 'Health');
  return new Health(grpcTarget(address), credentials);
}

export function healthCheck(client: grpc.Client, service: string): Promise<string> {
  return new Promise((resolve, reject) => {
    (client as unknown as { Check: (r: unknown, cb: (e: grpc.ServiceError | null, r: { status: string }) => void) => void }).Check({ service }, (error, response) => {
      if (error) reject(new ApiError(error.code, error.details, 'Check'));
      else resolve(response.status);
    });
  });
}

/** Asks server reflection (grpc.reflection.v1) for the service list. */
export function reflectionListServices(address: string): Promise<string[]> {
  const dir = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto');
  const Reflection = loadService(path.join(dir, 'grpc/reflection/v1/reflection.proto'), dir, ['grpc', 'reflection', 'v1'], 'ServerReflection');
  const client = new Reflection(grpcTarget(address), grpc.credentials.createInsecure());
  return reflectionRequest(client, { list_services: '' }).then((response) => {
    const services = (response['list_services_response'] as { service: Array<{ name: string }> }).service.map((s) => s.name);
    return services;
  });
}

/** Asks server reflection for the file that defines `symbol`; returns the serialized FileDescriptorProtos. */
export function reflectionFileContaining(address: string, symbol: string): Promise<Buffer[]> {
  const dir = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto');
  const Reflection = loadService(path.join(dir, 'grpc/reflection/v1/reflection.proto'), dir, ['grpc', 'reflection', 'v1'], 'ServerReflection');
  const client = new Reflection(grpcTarget(address), grpc.credentials.createInsecure());
  return reflectionRequest(client, { file_containing_symbol: symbol }).then((response) => {
    if (response['error_response']) throw new Error(JSON.stringify(response['error_response']));
    return (response['file_descriptor_response'] as { file_descriptor_proto: Buffer[] }).file_descriptor_proto;
  });
}

function reflectionRequest(client: grpc.Client, request: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const stream = (client as unknown as { ServerReflectionInfo: () => grpc.ClientDuplexStream<unknown, Record<string, unknown>> }).ServerReflectionInfo();
    stream.once('data', (response) => {
      resolve(response);
      stream.end();
      client.close();
    });
    stream.once('error', reject);
    stream.write(request);
  });
}

/** Sends `bytes` as the request body of `method` (e.g. "/vfiod.v1.DeviceService/PrepareDevice"), bypassing encoding. */
export function rawCall(address: string, method: string, bytes: Buffer): Promise<{ code: grpc.status; details: string } | Buffer> {
  const client = new grpc.Client(grpcTarget(address), grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      method,
      (b: Buffer) => b,
      (b: Buffer) => b,
      bytes,
      (error, response) => {
        client.close();
        resolve(error ? { code: error.code, details: error.details } : response!);
      },
    );
  });
}
