/**
 * Where the Prometheus endpoint listens (`--metrics`): a TCP `host:port` or a unix socket path. Metrics name the
 * host's disks and VMs, so a TCP address must be loopback unless the operator says otherwise (`--metrics-allow-remote`).
 */
import net from 'node:net';
import path from 'node:path';

export type MetricsAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

/** A `--metrics` value that is not an address, or not a loopback one without the flag; the message says which. */
export class MetricsAddressRefused extends Error {}

/** `127.0.0.1:9464`, `[::1]:9464`, `localhost:9464` (= 127.0.0.1), or a path (containing a '/'). */
export function parseMetricsAddress(text: string, allowRemote: boolean): MetricsAddress {
  if (text.includes('/')) return { kind: 'unix', path: path.resolve(text) };
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  if (!match) throw new MetricsAddressRefused(`'${text}' is neither host:port nor a unix socket path (one with a '/')`);
  const named = match[1] ?? match[2]!;
  const port = Number(match[3]);
  // Port 0: any free port (the log line 'metrics endpoint listening' says which).
  if (port > 65535) throw new MetricsAddressRefused(`'${text}': port ${match[3]} is not from 0 to 65535`);
  const host = named === 'localhost' ? '127.0.0.1' : named;
  if (net.isIP(host) === 0) throw new MetricsAddressRefused(`'${text}': '${named}' is not an IP address (give an address, not a name)`);
  if (!allowRemote && !isLoopback(host)) {
    throw new MetricsAddressRefused(`refusing ${text}: not a loopback address, and the metrics name the host's disks and VMs; give --metrics-allow-remote to expose them`);
  }
  return { kind: 'tcp', host, port };
}

function isLoopback(host: string): boolean {
  if (net.isIPv4(host)) return host.startsWith('127.');
  return host === '::1' || /^::ffff:127\./i.test(host);
}

export function describeMetricsAddress(address: MetricsAddress): string {
  if (address.kind === 'unix') return address.path;
  return net.isIPv6(address.host) ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
