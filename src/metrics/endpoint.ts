/**
 * The HTTP endpoint Prometheus scrapes: `GET /metrics` on a TCP address or a unix socket. Each scrape asks the source
 * for one snapshot per controller (a message to each controller's thread) and renders them; nothing is kept between
 * scrapes, and no controller does anything for metrics between them.
 */
import { chmodSync } from 'node:fs';
import http from 'node:http';
import type { Logger } from '../util/log.js';
import { clearStaleSocket, removeOwnSocket, socketIdentity, type SocketIdentity } from '../util/socket-path.js';
import { describeMetricsAddress, type MetricsAddress } from './address.js';
import { ControllerMetrics, type MetricsSource } from './exporter.js';

export interface MetricsEndpoint {
  /** Where it listens: `host:port` (the port bound, when 0 was asked for) or the socket path. */
  readonly address: string;
  close(): Promise<void>;
}

/** Listens at `address`; rejects when it cannot (address in use, no permission), saying where. */
export async function startMetricsEndpoint(address: MetricsAddress, source: MetricsSource, logger: Logger): Promise<MetricsEndpoint> {
  const log = logger.child({ component: 'metrics' });
  const metrics = new ControllerMetrics();
  const server = http.createServer((request, response) => {
    const url = request.url?.split('?')[0];
    if (url !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('only GET\n');
      return;
    }
    source()
      .then((samples) => metrics.render(samples))
      .then(
        (text) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(request.method === 'HEAD' ? undefined : text),
        (error: unknown) => {
          log.error('scrape failed', { error });
          response.writeHead(500, { 'content-type': 'text/plain' }).end(`scrape failed: ${(error as Error).message}\n`);
        },
      );
  });
  let identity: SocketIdentity | undefined;
  const where = describeMetricsAddress(address);
  try {
    if (address.kind === 'unix') await clearStaleSocket(address.path, 'metrics endpoint');
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (address.kind === 'unix') server.listen(address.path, resolve);
      else server.listen(address.port, address.host, resolve);
    });
  } catch (error) {
    server.close();
    // The code stays (EADDRINUSE: a live upgrade's successor waits for its predecessor to let go of the address).
    throw Object.assign(new Error(`metrics endpoint ${where}: ${(error as Error).message}`), { code: (error as NodeJS.ErrnoException).code });
  }
  server.on('error', (error) => log.error('metrics endpoint failed', { address: where, error }));
  let bound = where;
  if (address.kind === 'unix') {
    // Only its owner (root, for a system vfiod) and whoever it lets in by group may read it.
    chmodSync(address.path, 0o660);
    identity = socketIdentity(address.path);
  } else {
    const port = (server.address() as { port: number }).port;
    bound = describeMetricsAddress({ ...address, port });
  }
  log.info('metrics endpoint listening', { address: bound });
  return {
    address: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        if (address.kind === 'unix') {
          const error = removeOwnSocket(address.path, identity);
          if (error) log.warn('cannot remove the metrics socket', { socket: address.path, error });
        }
      }),
  };
}
