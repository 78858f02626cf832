/**
 * A small client for the control API (the CLI and the tests use it): one channel, the vfiod.v1 services, and
 * promise-returning unary calls whose errors keep the gRPC status.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { clientConstructor, type RequestOf, type ResponseOf, type RpcName, type ServiceName } from './proto.js';
import { decodeStatus, type PreconditionViolation, type ResourceInfo, STATUS_DETAILS_KEY, type StatusDetails } from './status-details.js';

export interface ClientTarget {
  /** A unix socket path, or "host:port" for TCP. */
  address: string;
  /** TCP with TLS: the CA that signed the daemon's certificate (and a client certificate for mutual TLS). */
  tls?: { ca: string; cert?: string; key?: string; serverName?: string };
}

/**
 * A call that failed: the gRPC status, and the google.rpc.Status details the daemon sends with every error
 * (`statusDetails`, undefined when the trailer is missing or unreadable): the reason to switch on and its facts.
 */
export class ApiError extends Error {
  constructor(
    readonly code: grpc.status,
    /** The status message. */
    readonly details: string,
    readonly rpc: string,
    readonly statusDetails?: StatusDetails,
  ) {
    // The message as it always was (programs matched it); the reason is `reason`.
    super(`${grpc.status[code] ?? code}: ${details}`);
  }

  /** An ApiError of a failed call, with the details of its grpc-status-details-bin trailer decoded. */
  static from(error: grpc.ServiceError, rpc: string): ApiError {
    return new ApiError(error.code, error.details, rpc, statusDetailsOfMetadata(error.metadata));
  }

  get statusName(): string {
    return grpc.status[this.code] ?? String(this.code);
  }

  /** ErrorInfo.reason (src/util/error-reasons.ts), e.g. DEVICE_IN_USE. */
  get reason(): string | undefined {
    return this.statusDetails?.errorInfo?.reason;
  }

  /** ErrorInfo.metadata: the facts of the error (bdf, holder_pid, controller_id, ...). */
  get metadata(): Record<string, string> {
    return this.statusDetails?.errorInfo?.metadata ?? {};
  }

  /** PreconditionFailure violations (FAILED_PRECONDITION). */
  get violations(): PreconditionViolation[] {
    return this.statusDetails?.preconditionFailure?.violations ?? [];
  }

  get resource(): ResourceInfo | undefined {
    return this.statusDetails?.resourceInfo;
  }

  /** The error as the CLI's --json prints it. */
  toJSON(): Record<string, unknown> {
    const s = this.statusDetails;
    return {
      code: this.statusName,
      ...(this.reason ? { reason: this.reason, domain: s?.errorInfo?.domain } : {}),
      message: this.details,
      ...(s?.errorInfo ? { metadata: s.errorInfo.metadata } : {}),
      ...(s?.preconditionFailure ? { violations: s.preconditionFailure.violations } : {}),
      ...(s?.badRequest ? { fieldViolations: s.badRequest.fieldViolations } : {}),
      ...(s?.quotaFailure ? { quotaViolations: s.quotaFailure.violations } : {}),
      ...(s?.resourceInfo ? { resource: s.resourceInfo } : {}),
    };
  }
}

/** The google.rpc.Status in a call's trailers; undefined when there is none or it does not decode. */
export function statusDetailsOfMetadata(metadata: grpc.Metadata | undefined): StatusDetails | undefined {
  const value = metadata?.get(STATUS_DETAILS_KEY)[0];
  if (!Buffer.isBuffer(value)) return undefined;
  try {
    return decodeStatus(value);
  } catch {
    return undefined;
  }
}

/**
 * A message field the daemon always sets (proto3 cannot say "required"; an absent message arrives as null): its
 * value, or an error naming the RPC and the field.
 */
export function present<T>(value: T | null | undefined, rpc: string, field: string): T {
  if (value === null || value === undefined) throw new Error(`${rpc}: the daemon's response has no ${field}`);
  return value;
}

const isUnixPath = (address: string): boolean => address.startsWith('/') || address.startsWith('.') || address.startsWith('unix:');

export function grpcTarget(address: string): string {
  if (address.startsWith('unix:')) return address;
  return isUnixPath(address) ? `unix:${address}` : address;
}

export function channelCredentials(target: ClientTarget): grpc.ChannelCredentials {
  if (!target.tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    readFileSync(target.tls.ca),
    target.tls.key ? readFileSync(target.tls.key) : null,
    target.tls.cert ? readFileSync(target.tls.cert) : null,
  );
}

/**
 * proto3 `optional` fields arrive with a synthetic oneof marker ("_driver": "driver") next to them; drop those so
 * responses hold only real fields (an absent optional field is simply missing).
 */
export function withoutSyntheticOneofs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutSyntheticOneofs);
  if (value === null || typeof value !== 'object' || Buffer.isBuffer(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) {
    if (key.startsWith('_') && typeof field === 'string' && key.slice(1) === field) continue;
    out[key] = withoutSyntheticOneofs(field);
  }
  return out;
}

type Service = ServiceName;

export class VfiodClient {
  private readonly clients: Record<Service, grpc.Client>;

  constructor(readonly target: ClientTarget) {
    const address = grpcTarget(target.address);
    const credentials = channelCredentials(target);
    const options: grpc.ClientOptions = target.tls?.serverName ? { 'grpc.ssl_target_name_override': target.tls.serverName } : {};
    const make = (name: Service): grpc.Client => new (clientConstructor(name))(address, credentials, options);
    const devices = make('DeviceService');
    // One channel for all the services.
    const shared = { ...options, channelOverride: devices.getChannel() };
    this.clients = {
      DeviceService: devices,
      ControllerService: new (clientConstructor('ControllerService'))(address, credentials, shared),
      AttachmentService: new (clientConstructor('AttachmentService'))(address, credentials, shared),
      DaemonService: new (clientConstructor('DaemonService'))(address, credentials, shared),
      OperationService: new (clientConstructor('OperationService'))(address, credentials, shared),
      EventService: new (clientConstructor('EventService'))(address, credentials, shared),
    };
  }

  /**
   * Calls `service.rpc(request)`; rejects with ApiError carrying the status. Waits for the connection up to the
   * deadline. Request and response have the RPC's generated types (src/daemon/generated/).
   */
  call<S extends Service, M extends RpcName<S>>(service: S, rpc: M, request: RequestOf<S, M>, timeoutMs = 60_000): Promise<ResponseOf<S, M>> {
    return this.callUntyped(service, rpc, request, timeoutMs) as Promise<unknown> as Promise<ResponseOf<S, M>>;
  }

  /**
   * `call` without types, for requests no type describes: the hostile tests send what a well-typed client cannot (and
   * read the answers as plain objects).
   */
  callUntyped(service: Service, rpc: string, request: unknown, timeoutMs = 60_000): Promise<Record<string, any>> {
    const client = this.clients[service] as unknown as Record<string, (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void>;
    const method = client[rpc];
    if (typeof method !== 'function') return Promise.reject(new Error(`${service} has no RPC ${rpc}`));
    return new Promise((resolve, reject) => {
      method.call(client, request, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (error, response) => {
        if (error) reject(ApiError.from(error, rpc));
        else resolve(withoutSyntheticOneofs(response) as Record<string, any>);
      });
    });
  }

  /** A server stream (StreamDeviceEvents, WatchEvents). */
  stream<S extends Service, M extends RpcName<S>>(service: S, rpc: M, request: RequestOf<S, M>): grpc.ClientReadableStream<ResponseOf<S, M>> {
    const client = this.clients[service] as unknown as Record<string, (req: unknown) => grpc.ClientReadableStream<ResponseOf<S, M>>>;
    return client[rpc]!.call(client, request);
  }

  close(): void {
    for (const client of Object.values(this.clients)) client.close();
  }
}
