/**
 * NVMe-oF discovery over TCP: connect to a discovery controller (port 8009 by default, subsystem NQN
 * `nqn.2014-08.org.nvmexpress.discovery`), read the Discovery Log Page (0x70) and disconnect.
 */
import { rootLogger, type Logger } from '../../util/log.js';
import { NvmeTcpController, ascii, newHostId } from './controller.js';
import { u16, u64 } from './pdu.js';
import { DEFAULT_DISCOVERY_PORT, DISCOVERY_LOG_PAGE, DISCOVERY_NQN } from './spec.js';

export interface DiscoveryEntry {
  /** Transport type: 3 = TCP, 1 = RDMA, 2 = FC. */
  trtype: number;
  /** Address family: 1 = IPv4, 2 = IPv6. */
  adrfam: number;
  /** Subsystem type: 1 = referral to another discovery service, 2 = NVM subsystem, 3 = current discovery subsystem. */
  subtype: number;
  portid: number;
  cntlid: number;
  traddr: string;
  trsvcid: string;
  subnqn: string;
}

export interface DiscoverOptions {
  host: string;
  port?: number;
  hostnqn?: string;
  timeoutMs?: number;
  hdgst?: boolean;
  ddgst?: boolean;
  logger?: Logger;
}

const ENTRY_BYTES = 1024;
/** Sanity bound on entries read (hostile target). */
const MAX_ENTRIES = 1024;

/** Lists the discovery log entries of the discovery controller at host:port. */
export async function discoverNvmeTcp(options: DiscoverOptions): Promise<DiscoveryEntry[]> {
  const hostid = newHostId();
  const timeoutMs = options.timeoutMs ?? 10_000;
  const ctrl = await NvmeTcpController.connect(
    {
      host: options.host,
      port: options.port ?? DEFAULT_DISCOVERY_PORT,
      subnqn: DISCOVERY_NQN,
      hostnqn: options.hostnqn ?? defaultHostNqn(hostid),
      hostid,
      ioQueues: 0,
      queueDepth: 1,
      hdgst: options.hdgst ?? false,
      ddgst: options.ddgst ?? false,
      katoMs: 0,
      connectTimeoutMs: timeoutMs,
      commandTimeoutMs: timeoutMs,
      logger: (options.logger ?? rootLogger).child({ component: 'nvme-tcp-discovery' }),
    },
    () => {},
  );
  try {
    const header = new Uint8Array(ENTRY_BYTES);
    await ctrl.getLogPage(DISCOVERY_LOG_PAGE, header);
    const count = Math.min(u64(header, 8), MAX_ENTRIES);
    if (count === 0) return [];
    const page = new Uint8Array(ENTRY_BYTES * count);
    await ctrl.getLogPage(DISCOVERY_LOG_PAGE, page, ENTRY_BYTES);
    const entries: DiscoveryEntry[] = [];
    for (let i = 0; i < count; i++) entries.push(parseEntry(page.subarray(i * ENTRY_BYTES, (i + 1) * ENTRY_BYTES)));
    return entries;
  } finally {
    await ctrl.close(500);
  }
}

export function parseEntry(e: Uint8Array): DiscoveryEntry {
  return {
    trtype: e[0]!,
    adrfam: e[1]!,
    subtype: e[2]!,
    portid: u16(e, 4),
    cntlid: u16(e, 6),
    trsvcid: ascii(e, 32, 32),
    subnqn: ascii(e, 256, 256),
    traddr: ascii(e, 512, 256),
  };
}

export function defaultHostNqn(hostid: Uint8Array): string {
  const h = Buffer.from(hostid).toString('hex');
  return `nqn.2014-08.org.nvmexpress:uuid:${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
