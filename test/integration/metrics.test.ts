/**
 * The Prometheus endpoint of a real `vfiod serve` and a real `vfiod daemon` (bin/vfiod.js in child processes), scraped
 * over HTTP while the project's vfio-user client does I/O: the counters move by exactly what the client did (commands,
 * bytes, one error provoked on purpose, latency samples), and the endpoint is off without --metrics and refuses a
 * non-loopback address. Uses the compiled dist/.
 */
import { readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { VfiodClient } from '../../src/daemon/client.js';
import { Status } from '../../src/spec/nvme.js';
import { temporaryDir, waitFor } from '../helpers/common.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { Guest } from '../helpers/hypervisor.js';
import { pattern } from '../helpers/nvme-harness.js';
import { bin, children, isListening, type LogLine, serve, type Served } from '../helpers/vfiod-process.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const skipReason = existsSync(path.join(root, 'dist', 'metrics', 'endpoint.js')) ? undefined : 'dist/ is not built (npm test runs tsc first)';
if (skipReason) console.warn(`metrics tests skipped: ${skipReason}`);

/** 16 MiB of 512-byte blocks. */
const BLOCKS = 32768;

type Where = { port: number } | { socketPath: string };

function scrape(where: Where): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const target = 'port' in where ? { host: '127.0.0.1', port: where.port } : { socketPath: where.socketPath };
    const request = http.get({ ...target, path: '/metrics' }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on('error', reject);
  });
}

/** Every sample of a scrape, keyed `name{label="value",...}` exactly as written. */
function samples(body: string): Map<string, number> {
  const map = new Map<string, number>();
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    map.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return map;
}

async function metricsOf(where: Where): Promise<Map<string, number>> {
  const { status, body } = await scrape(where);
  expect(status).toBe(200);
  return samples(body);
}

/** The value of `name` with `labels` (in the order the exporter writes them); fails when it is not there. */
function value(map: Map<string, number>, name: string, labels: Record<string, string | number>): number {
  const key = `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`;
  const found = map.get(key);
  if (found === undefined) throw new Error(`no sample ${key} in: ${[...map.keys()].filter((k) => k.startsWith(name)).join(' ')}`);
  return found;
}

/** TCP ports the process listens on: its socket fds matched against the host's listening sockets (/proc). */
function listeningTcpPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10 || fields[3] !== '0A') continue; // 0A: LISTEN
      if (inodes.has(fields[9]!)) ports.push(parseInt(fields[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

/** The client's I/O between two scrapes: 3 writes of 4 KiB, 2 reads of 8 KiB, 1 read past the end (LBA_OUT_OF_RANGE). */
async function knownIo(guest: Guest): Promise<void> {
  for (let index = 0; index < 3; index++) expect((await guest.driver.write(1, index * 8, pattern(4096, index))).status).toBe(Status.SUCCESS);
  for (let index = 0; index < 2; index++) expect((await guest.driver.read(1, index * 16, 16)).completion.status).toBe(Status.SUCCESS);
  expect((await guest.driver.read(1, BLOCKS, 1)).completion.status & 0x3ff).toBe(Status.LBA_OUT_OF_RANGE & 0x3ff);
}

/** What knownIo must have moved, for the controller labelled `controller`. */
function expectKnownIoMoved(before: Map<string, number>, after: Map<string, number>, controller: string): void {
  const delta = (name: string, labels: Record<string, string | number> = {}): number =>
    value(after, name, { controller, ...labels }) - (before.has(`${name}{${Object.entries({ controller, ...labels }).map(([k, v]) => `${k}="${v}"`).join(',')}}`) ? value(before, name, { controller, ...labels }) : 0);
  expect(delta('vfiod_commands_total', { kind: 'write' })).toBe(3);
  expect(delta('vfiod_commands_total', { kind: 'read' })).toBe(3);
  expect(delta('vfiod_commands_total', { kind: 'admin' })).toBe(0);
  expect(delta('vfiod_commands_total', { kind: 'other_io' })).toBe(0);
  expect(delta('vfiod_bytes_total', { direction: 'write' })).toBe(3 * 4096);
  expect(delta('vfiod_bytes_total', { direction: 'read' })).toBe(2 * 8192); // the failed read moved nothing
  expect(delta('vfiod_command_errors_total', { status: 'LBA_OUT_OF_RANGE' })).toBe(1);
  expect(delta('vfiod_namespace_commands_total', { nsid: 1, direction: 'write' })).toBe(3);
  expect(delta('vfiod_namespace_commands_total', { nsid: 1, direction: 'read' })).toBe(2); // successful ones
  expect(delta('vfiod_namespace_bytes_total', { nsid: 1, direction: 'write' })).toBe(3 * 4096);
  expect(delta('vfiod_namespace_bytes_total', { nsid: 1, direction: 'read' })).toBe(2 * 8192);
  expect(delta('vfiod_namespace_command_errors_total', { nsid: 1, status: 'LBA_OUT_OF_RANGE' })).toBe(1);
  expect(delta('vfiod_io_latency_seconds_count')).toBe(6);
  expect(delta('vfiod_io_latency_seconds_bucket', { le: '+Inf' })).toBe(6);
  expect(delta('vfiod_io_latency_seconds_sum')).toBeGreaterThan(0);
  // One completion at a time, each signalled: one MSI-X message per command.
  expect(delta('vfiod_interrupts_total')).toBe(6);
  expect(value(after, 'vfiod_client_connected', { controller })).toBe(1);
  expect(value(after, 'vfiod_controller_serving', { controller })).toBe(1);
  expect(value(after, 'vfiod_io_queues', { controller })).toBe(1);
  expect(value(after, 'vfiod_queue_depth', { controller, sqid: 1 })).toBe(0);
  expect(value(after, 'vfiod_io_in_flight', { controller })).toBe(0);
  expect(value(after, 'vfiod_dma_mappings', { controller })).toBe(1);
  expect(value(after, 'vfiod_dma_requests_total', { controller, op: 'map' })).toBe(1);
}

async function attach(socketPath: string): Promise<Guest> {
  const guest = await Guest.attach(socketPath, { flavour: 'qemu' });
  await guest.driver.enable();
  await guest.driver.createIoQueuePair(1, 32, 1);
  // The driver's Identify Namespace (it learns the block size once), before the measured I/O.
  expect(await guest.driver.blockSize(1)).toBe(512);
  return guest;
}

const metricsListening = (line: LogLine): boolean => line['msg'] === 'metrics endpoint listening';

afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

describe.skipIf(skipReason)('metrics endpoint', () => {
  let dir: string;
  let host: FakeHost;
  beforeAll(() => {
    dir = temporaryDir('vfiod-metrics-');
    host = standardHost();
  });
  afterAll(() => {
    host.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('vfiod serve: counters move by exactly the I/O done; latency histogram, interrupts, DMA maps, client state', async () => {
    const socketPath = path.join(dir, 'serve.sock');
    const served = serve(['--socket', socketPath, '--namespace', 'memory:16M', '--metrics', '127.0.0.1:0']);
    const listening = await served.waitFor(metricsListening, 'the metrics endpoint');
    await served.waitFor(isListening, 'the controller listening');
    const port = Number(/:(\d+)$/.exec(String(listening['address']))![1]);
    expect(listening['address']).toBe(`127.0.0.1:${port}`);

    const idle = await metricsOf({ port });
    expect(value(idle, 'vfiod_client_connected', { controller: socketPath })).toBe(0);
    expect(value(idle, 'vfiod_namespace_size_bytes', { controller: socketPath, nsid: 1, backend: 'memory:16MiB' })).toBe(16 * 2 ** 20);

    const guest = await attach(socketPath);
    try {
      const before = await metricsOf({ port });
      await knownIo(guest);
      const after = await metricsOf({ port });
      expectKnownIoMoved(before, after, socketPath);
      // Only /metrics answers.
      expect((await new Promise<number>((resolve, reject) => http.get({ host: '127.0.0.1', port, path: '/' }, (r) => resolve(r.statusCode ?? 0)).on('error', reject)))).toBe(404);
    } finally {
      guest.close();
    }
    served.process.kill('SIGTERM');
    expect(await served.exited).toBe(0);
  });

  it('vfiod daemon on a unix socket: per controller id, the same exact deltas; no TCP port; the socket is removed at exit', async () => {
    const metricsSocket = path.join(dir, 'metrics.sock');
    const apiSocket = path.join(dir, 'vfiod.sock');
    const daemon: Served = serve(
      ['--socket', apiSocket, '--state-dir', path.join(dir, 'state'), '--namespace-dir', dir, '--sysfs-root', host.roots.sysfs, '--dev-root', host.roots.dev, '--proc-root', host.roots.proc, '--metrics', metricsSocket],
      'daemon',
    );
    await daemon.waitFor((line) => line['msg'] === 'listening' && line['component'] === 'daemon', 'the daemon listening');
    expect(listeningTcpPorts(daemon.process.pid!)).toEqual([]);
    const client = new VfiodClient({ address: apiSocket });
    try {
      const controllerSocket = path.join(dir, 'c1.sock');
      await client.call('ControllerService', 'CreateController', { id: 'c1', spec: { socketPath: controllerSocket, namespaces: ['memory:16M'] } });
      // The controller's own thread names it by id, as the daemon's lines do.
      const threadLine = await daemon.waitFor((line) => line['msg'] === 'listening' && line['component'] === 'controller', "the controller thread's listening line");
      expect(threadLine).toMatchObject({ controller: 'c1', socket: controllerSocket });
      expect(threadLine).not.toHaveProperty('worker');
      const guest = await attach(controllerSocket);
      try {
        const before = await metricsOf({ socketPath: metricsSocket });
        await knownIo(guest);
        const after = await metricsOf({ socketPath: metricsSocket });
        expectKnownIoMoved(before, after, 'c1');
      } finally {
        guest.close();
      }
    } finally {
      client.close();
    }
    daemon.process.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    expect(existsSync(metricsSocket)).toBe(false);
  });

  it('vfiod upgrade: the successor takes the metrics socket over; command counts and bytes continue, the client stays connected', async () => {
    const socketPath = path.join(dir, 'upgraded.sock');
    const metricsSocket = path.join(dir, 'upgraded-metrics.sock');
    const served = serve(['--socket', socketPath, '--namespace', `file:${path.join(dir, 'upgraded.img')}?size=16M`, '--metrics', metricsSocket]);
    await served.waitFor(metricsListening, 'the metrics endpoint');
    const guest = await attach(socketPath);
    let successor: number | undefined;
    try {
      await knownIo(guest);
      const before = await metricsOf({ socketPath: metricsSocket });
      const upgrade = spawn(process.execPath, [bin, 'upgrade', '--socket', socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      upgrade.stdout.on('data', (chunk: Buffer) => (stdout += chunk));
      expect(await new Promise((resolve) => upgrade.once('exit', resolve)), stdout).toBe(0);
      successor = Number(/handed over to pid (\d+)/.exec(stdout)![1]);
      expect(await served.exited).toBe(0);
      // The successor logs where its predecessor did; its endpoint listens once the predecessor has let go.
      const taken = await waitFor(() => served.lines.filter(metricsListening)[1], "the successor's metrics endpoint");
      expect(taken['address']).toBe(metricsSocket);
      await knownIo(guest);
      const after = await metricsOf({ socketPath: metricsSocket });
      const count = (map: Map<string, number>, kind: string): number => value(map, 'vfiod_commands_total', { controller: socketPath, kind });
      expect(count(after, 'write') - count(before, 'write')).toBe(3);
      expect(count(after, 'read') - count(before, 'read')).toBe(3);
      expect(value(after, 'vfiod_bytes_total', { controller: socketPath, direction: 'write' }) - value(before, 'vfiod_bytes_total', { controller: socketPath, direction: 'write' })).toBe(3 * 4096);
      expect(value(after, 'vfiod_client_connected', { controller: socketPath })).toBe(1);
    } finally {
      guest.close();
      if (successor !== undefined) process.kill(successor, 'SIGTERM');
    }
  });

  it('is off by default (no listening TCP port, no endpoint) and refuses a non-loopback address without --metrics-allow-remote', async () => {
    const socketPath = path.join(dir, 'plain.sock');
    const plain = serve(['--socket', socketPath, '--namespace', 'memory:1M']);
    await plain.waitFor(isListening, 'the controller listening');
    expect(listeningTcpPorts(plain.process.pid!)).toEqual([]);
    expect(plain.lines.some(metricsListening)).toBe(false);
    plain.process.kill('SIGTERM');
    expect(await plain.exited).toBe(0);

    for (const command of ['serve', 'daemon'] as const) {
      const args = command === 'serve' ? ['--socket', path.join(dir, 'refused.sock'), '--namespace', 'memory:1M'] : ['--socket', path.join(dir, 'refused-api.sock'), '--state-dir', path.join(dir, 'refused-state')];
      const refused = serve([...args, '--metrics', '192.0.2.1:9464'], command);
      expect(await refused.exited).toBe(2);
      expect(refused.lines.map((line) => line['raw']).join('\n')).toContain('--metrics: refusing 192.0.2.1:9464: not a loopback address');
    }
  });
});
