/**
 * Who may do what on the control API (docs/daemon.md, "Who may do what"). Two roles: read-only callers may List, Get,
 * Stream, Watch and Wait (WaitOperation only reads an operation until it is done); admin callers may do everything. A caller is told apart by who it is, never by what it says:
 * - on the unix socket, by the uid and gid the kernel recorded when it connected (SO_PEERCRED,
 *   src/daemon/unix-listener.ts);
 * - on TCP with mutual TLS, by its certificate's subject CN and subject alternative names.
 * A refusal is PERMISSION_DENIED with reason ADMIN_ROLE_REQUIRED (a read-only caller) or CALLER_NOT_AUTHORIZED (no
 * role at all), sent by a server interceptor before any handler runs. The role and the caller's name are also stamped
 * on the call's metadata (CALLER_ROLE_KEY, CALLER_NAME_KEY; what a client sent there is replaced) for the one handler
 * whose request decides: GetVmConfig with prepare_devices changes the host.
 */
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { VfiodError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { PeerCredentials } from '../native/index.js';
import { toStatus } from './requests.js';

export type Role = 'admin' | 'read-only';

export interface Caller {
  /** undefined: in no role (only the health service answers it). */
  role: Role | undefined;
  /** Who, for logs and errors: "unix peer uid 1000 gid 1000", "client certificate CN=reader". */
  name: string;
}

export interface PeerSet {
  uids?: number[];
  gids?: number[];
}

export interface AccessPolicy {
  /**
   * Unix socket peers by uid or (primary) gid. uid 0 and the daemon's own uid are always admin. Others are in no role
   * unless listed here; the socket file's mode (--socket-mode) must also let them connect.
   */
  unix?: { admin?: PeerSet; readOnly?: PeerSet };
  /**
   * Mutual-TLS clients by certificate name patterns ('*' matches any run of characters) over the subject CN and the
   * subject alternative names (DNS, URI, email, IP). Without this every client whose certificate the CA signed is
   * admin (as before roles existed); with it, a client matching neither list is in no role.
   */
  tls?: { admin?: string[]; readOnly?: string[] };
}

/** Metadata keys the interceptor sets for handlers: the caller's role ('' when none) and name. */
export const CALLER_ROLE_KEY = 'vfiod-caller-role';
export const CALLER_NAME_KEY = 'vfiod-caller';

/**
 * RPCs a read-only caller may call: those that read, watch or wait for something to be done (WaitOperation). Everything
 * else needs admin, new RPCs included.
 */
const READ_ONLY_RPC = /^(List|Get|Stream|Watch|Wait)[A-Z]/;
/** Answered for every caller, with or without a role: liveness probes run as anyone. */
const OPEN_SERVICES = new Set(['grpc.health.v1.Health']);
/** Read-only for every role: what the API looks like. */
const DESCRIPTIVE_SERVICES = new Set(['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection']);

/** The role an RPC needs, by its path ("/vfiod.v1.DeviceService/ListDevices"); 'none' for the health service. */
export function requiredRole(path: string): Role | 'none' {
  const [service = '', rpc = ''] = path.replace(/^\//, '').split('/');
  if (OPEN_SERVICES.has(service)) return 'none';
  if (DESCRIPTIVE_SERVICES.has(service)) return 'read-only';
  return READ_ONLY_RPC.test(rpc) ? 'read-only' : 'admin';
}

/** The refusal of `rpc` for `caller`, or undefined when it may call it. */
export function refusal(path: string, caller: Caller): VfiodError | undefined {
  const needed = requiredRole(path);
  const rpc = path.slice(path.lastIndexOf('/') + 1);
  if (needed === 'none' || caller.role === 'admin' || (needed === 'read-only' && caller.role === 'read-only')) return undefined;
  if (caller.role === undefined) {
    return new VfiodError('PERMISSION_DENIED', `${caller.name} is in no role of this daemon: ${rpc} refused (docs/daemon.md, "Who may do what")`, {
      reason: 'CALLER_NOT_AUTHORIZED',
      rpc,
      caller: caller.name,
    });
  }
  return new VfiodError('PERMISSION_DENIED', `${caller.name} is read-only: ${rpc} needs the admin role`, { reason: 'ADMIN_ROLE_REQUIRED', rpc, role: caller.role, caller: caller.name });
}

/** A handler's check for what only the request tells (GetVmConfig with prepare_devices): throws the refusal. */
export function requireAdmin(call: { metadata: grpc.Metadata }, rpc: string, what: string): void {
  const role = String(call.metadata.get(CALLER_ROLE_KEY)[0] ?? '');
  if (role === 'admin') return;
  const caller = String(call.metadata.get(CALLER_NAME_KEY)[0] ?? 'the caller');
  throw new VfiodError('PERMISSION_DENIED', `${caller} is ${role || 'in no role'}: to ${what} needs the admin role`, { reason: 'ADMIN_ROLE_REQUIRED', rpc, role, caller });
}

/** The role of a unix socket peer. */
export function roleOfPeer(peer: PeerCredentials, policy: AccessPolicy['unix'], daemonUid: number): Role | undefined {
  const within = (set: PeerSet | undefined): boolean => Boolean(set?.uids?.includes(peer.uid) || set?.gids?.includes(peer.gid));
  if (peer.uid === 0 || peer.uid === daemonUid || within(policy?.admin)) return 'admin';
  return within(policy?.readOnly) ? 'read-only' : undefined;
}

export const peerName = (peer: PeerCredentials): string => `unix peer uid ${peer.uid} gid ${peer.gid} (pid ${peer.pid})`;

/** The names a client certificate goes by: its subject CN, then its subject alternative names without their type. */
export function certificateNames(certificate: PeerCertificate): string[] {
  const cn = certificate.subject?.CN;
  const names = Array.isArray(cn) ? cn : cn ? [cn] : [];
  // "DNS:a.example, URI:spiffe://x/y, IP Address:10.0.0.1, email:ops@example"
  for (const entry of certificate.subjectaltname?.split(', ') ?? []) {
    const colon = entry.indexOf(':');
    if (colon > 0) names.push(entry.slice(colon + 1));
  }
  return names;
}

/** Whether `name` matches `pattern`, where '*' stands for any run of characters and everything else for itself. */
export function nameMatches(pattern: string, name: string): boolean {
  const regex = new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return regex.test(name);
}

/** The caller behind a TLS call: by certificate name when the policy has TLS roles, else every verified client is admin. */
export function certificateCaller(certificate: PeerCertificate | undefined, policy: AccessPolicy['tls']): Caller {
  const names = certificate ? certificateNames(certificate) : [];
  const name = names.length ? `client certificate ${names[0]!}` : 'a client without a certificate';
  if (!policy) return { role: 'admin', name };
  const matches = (patterns: string[] | undefined): boolean => Boolean(patterns?.some((p) => names.some((n) => nameMatches(p, n))));
  if (matches(policy.admin)) return { role: 'admin', name };
  return { role: matches(policy.readOnly) ? 'read-only' : undefined, name };
}

/** The server interceptor that refuses calls the caller's role does not allow, before any handler runs. */
export function authorizationInterceptor(callerOf: (call: grpc.ServerInterceptingCallInterface) => Caller, logger: Logger): grpc.ServerInterceptor {
  return (method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const caller = callerOf(call);
            const refused = refusal(method.path, caller);
            if (refused) {
              call.sendStatus(toStatus(refused, method.path.slice(method.path.lastIndexOf('/') + 1), logger));
              return;
            }
            metadata.set(CALLER_ROLE_KEY, caller.role ?? '');
            metadata.set(CALLER_NAME_KEY, caller.name);
            nextMetadata(metadata);
          },
        }),
    });
}
