/**
 * The `nvme-tcp://` namespace URI:
 *
 *   nvme-tcp://<host>[:<port>][,<host2>[:<port2>]...]/<subsystem NQN>[?<options>]
 *
 * Hosts are names, IPv4 addresses or bracketed IPv6 addresses ([::1]:4420); the port defaults to 4420. Several
 * addresses name paths to the same subsystem (multipath failover). Options (all optional):
 *
 *   nsid=<n>              namespace id (1)
 *   hostnqn=<nqn>         host NQN (nqn.2014-08.org.nvmexpress:uuid:<random uuid>)
 *   queues=<n>            I/O queues = TCP connections per path (2; the target may grant fewer)
 *   queue-depth=<n>       commands in flight per I/O queue (128; capped by CAP.MQES+1, MAXCMD, 1024)
 *   hdgst=0|1, ddgst=0|1  header / data digests (CRC32C) (0)
 *   kato=<ms>             keep-alive timeout sent in Connect; Keep Alive every kato/2; 0 = off (5000)
 *   reconnect-delay=<s>   seconds between reconnect attempts, fractions allowed (10)
 *   ctrl-loss-tmo=<s>     seconds a path may be down before I/O fails with a path error; -1 = never (600)
 *   timeout=<ms>          command timeout: no completion in this time resets the connection (30000)
 *
 * Parsing lives here, free of the transport, so the registry (`src/namespace/uri.ts`) can register the scheme
 * without loading the native addon; `open` loads the transport on first use.
 */
import type { Logger } from '../../util/log.js';
import type { Namespace } from '../namespace.js';
import { booleanParam, checkParams, invalidUri, type NamespaceScheme, type NamespaceSpec, type NamespaceUriParts } from '../scheme.js';
import type { NvmeTcpAddress } from './namespace.js';

export interface NvmeTcpNamespaceSpec extends NamespaceSpec {
  readonly scheme: 'nvme-tcp';
  readonly addresses: NvmeTcpAddress[];
  readonly subnqn: string;
  readonly nsid: number;
  readonly hostnqn?: string;
  readonly queues: number;
  readonly queueDepth: number;
  readonly hdgst: boolean;
  readonly ddgst: boolean;
  readonly katoMs: number;
  readonly reconnectDelayMs: number;
  readonly ctrlLossTmoMs: number;
  readonly timeoutMs: number;
}

export const NVME_TCP_PARAMS = [
  'nsid',
  'hostnqn',
  'queues',
  'queue-depth',
  'hdgst',
  'ddgst',
  'kato',
  'reconnect-delay',
  'ctrl-loss-tmo',
  'timeout',
] as const;

export function parseNvmeTcpUri(parts: NamespaceUriParts): NvmeTcpNamespaceSpec {
  const fail = (reason: string): never => {
    throw new Error(invalidUri(parts.uri, reason));
  };
  checkParams(parts, NVME_TCP_PARAMS);
  if (!parts.body.startsWith('//')) fail("expected 'nvme-tcp://<host>[:<port>][,...]/<subsystem NQN>'");
  const rest = parts.body.slice(2);
  const slash = rest.indexOf('/');
  if (slash < 0 || slash === rest.length - 1) fail('missing subsystem NQN after the address');
  const subnqn = decodeURIComponent(rest.slice(slash + 1));
  if (Buffer.byteLength(subnqn) > 223) fail(`subsystem NQN longer than 223 bytes`);
  const addresses: NvmeTcpAddress[] = [];
  for (const text of rest.slice(0, slash).split(',')) {
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+))(?::(\d+))?$/.exec(text);
    if (!m) fail(`invalid address '${text}' (expected host[:port] or [ipv6][:port])`);
    const port = m![3] === undefined ? 4420 : Number(m![3]);
    if (!(port >= 1 && port <= 65535)) fail(`invalid port in '${text}'`);
    addresses.push({ host: m![1] ?? m![2]!, port });
  }
  const int = (key: string, def: number, min: number, max: number): number => {
    const text = parts.params.get(key);
    if (text === undefined) return def;
    const v = Number(text);
    if (!/^-?\d+$/.test(text) || v < min || v > max) fail(`${key} must be an integer in [${min}, ${max}], got '${text}'`);
    return v;
  };
  const seconds = (key: string, def: number, allowNever: boolean): number => {
    const text = parts.params.get(key);
    if (text === undefined) return def * 1000;
    if (allowNever && text === '-1') return -1;
    const v = Number(text);
    if (!/^\d+(\.\d+)?$/.test(text) || !(v <= 86400 * 365)) fail(`${key} must be a number of seconds${allowNever ? ' or -1' : ''}, got '${text}'`);
    return Math.round(v * 1000);
  };
  const hostnqn = parts.params.get('hostnqn');
  if (hostnqn !== undefined && (hostnqn === '' || Buffer.byteLength(hostnqn) > 223)) fail('hostnqn must be 1..223 bytes');
  const reconnectDelayMs = seconds('reconnect-delay', 10, false);
  return {
    scheme: 'nvme-tcp',
    uri: parts.uri,
    addresses,
    subnqn,
    nsid: int('nsid', 1, 1, 0xfffffffe),
    ...(hostnqn !== undefined ? { hostnqn: decodeURIComponent(hostnqn) } : {}),
    queues: int('queues', 2, 1, 64),
    queueDepth: int('queue-depth', 128, 2, 1024),
    hdgst: booleanParam(parts, 'hdgst'),
    ddgst: booleanParam(parts, 'ddgst'),
    katoMs: int('kato', 5000, 0, 3_600_000),
    reconnectDelayMs: Math.max(reconnectDelayMs, 10),
    ctrlLossTmoMs: seconds('ctrl-loss-tmo', 600, true),
    timeoutMs: int('timeout', 30_000, 10, 3_600_000),
  };
}

/** The scheme handler the registry (`src/namespace/uri.ts`) registers. */
export const nvmeTcpScheme: NamespaceScheme<NvmeTcpNamespaceSpec> = {
  parse: (parts) => parseNvmeTcpUri(parts),
  async open(spec: NvmeTcpNamespaceSpec, logger: Logger): Promise<Namespace> {
    const { NvmeTcpNamespace } = await import('./namespace.js');
    return NvmeTcpNamespace.open({ ...spec, logger });
  },
};
