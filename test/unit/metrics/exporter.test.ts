/**
 * The Prometheus rendering of controller snapshots (src/metrics/exporter.ts) and the --metrics address rules
 * (src/metrics/address.ts). The numbers a real controller produces are checked end to end in
 * test/integration/metrics.test.ts; here: the histogram's bucket arithmetic, NVMe/TCP paths, a controller that does
 * not answer, and which addresses are refused.
 */
import { describe, expect, it } from 'vitest';
import { MetricsAddressRefused, parseMetricsAddress } from '../../../src/metrics/address.js';
import { type ControllerSample, ControllerMetrics } from '../../../src/metrics/exporter.js';
import { LatencyHistogram } from '../../../src/nvme/stats.js';
import type { NvmeControllerStats } from '../../../src/nvme/stats.js';

function stats(latency: LatencyHistogram): NvmeControllerStats {
  return {
    state: 'ready',
    ioSubmissionQueues: 2,
    ioCompletionQueues: 2,
    inFlight: 5,
    commands: { admin: 7, read: 11, write: 13, otherIo: 1, failed: 3, failedByStatus: { LBA_OUT_OF_RANGE: 2, INVALID_FIELD: 1 } },
    namespaces: [
      { nsid: 1, readCommands: 11, writeCommands: 12, bytesRead: 4096 * 11, bytesWritten: 512 * 12, failedByStatus: { LBA_OUT_OF_RANGE: 2 } },
      { nsid: 2, readCommands: 0, writeCommands: 1, bytesRead: 0, bytesWritten: 512, failedByStatus: {} },
    ],
    queueDepths: [{ sqid: 1, inFlight: 2 }, { sqid: 2, inFlight: 3 }],
    interrupts: 17,
    bytesRead: 4096 * 11,
    bytesWritten: 512 * 13,
    mediaErrors: 0,
    errorLogEntries: 3,
    asyncEventRequestsOutstanding: 1,
    resets: 1,
    unsafeShutdowns: 0,
    latency: latency.snapshot(),
    scratch: { budgetBytes: 0, usedBytes: 0, peakBytes: 0, waits: 0 } as unknown as NvmeControllerStats['scratch'],
    throttled: { now: 2, total: 9 },
  };
}

function lines(text: string): string[] {
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

describe('ControllerMetrics', () => {
  it('renders counters, gauges and the log2 latency buckets as a cumulative Prometheus histogram', async () => {
    const latency = new LatencyHistogram();
    latency.record(0.4); // bucket 0: < 2 us
    latency.record(3); // bucket 1: [2, 4) us
    latency.recordMany(100, 2); // bucket 6: [64, 128) us
    const sample: ControllerSample = {
      controller: 'vm1',
      snapshot: {
        stats: stats(latency),
        clientConnected: true,
        namespaces: [{ nsid: 1, backend: 'memory:16MiB', blockSize: 512, blocks: 32768 }],
        dma: { mappings: 2, mapRequests: 3, unmapRequests: 1 },
      },
    };
    const text = lines(await new ControllerMetrics().render([sample]));
    expect(text).toEqual(
      expect.arrayContaining([
        'vfiod_controller_serving{controller="vm1"} 1',
        'vfiod_client_connected{controller="vm1"} 1',
        'vfiod_commands_total{controller="vm1",kind="admin"} 7',
        'vfiod_commands_total{controller="vm1",kind="read"} 11',
        'vfiod_commands_total{controller="vm1",kind="write"} 13',
        'vfiod_commands_total{controller="vm1",kind="other_io"} 1',
        'vfiod_command_errors_total{controller="vm1",status="LBA_OUT_OF_RANGE"} 2',
        'vfiod_command_errors_total{controller="vm1",status="INVALID_FIELD"} 1',
        'vfiod_bytes_total{controller="vm1",direction="read"} 45056',
        'vfiod_bytes_total{controller="vm1",direction="write"} 6656',
        'vfiod_io_in_flight{controller="vm1"} 5',
        'vfiod_io_throttled{controller="vm1"} 2',
        'vfiod_io_throttled_total{controller="vm1"} 9',
        'vfiod_queue_depth{controller="vm1",sqid="1"} 2',
        'vfiod_queue_depth{controller="vm1",sqid="2"} 3',
        'vfiod_io_queues{controller="vm1"} 2',
        'vfiod_interrupts_total{controller="vm1"} 17',
        'vfiod_dma_mappings{controller="vm1"} 2',
        'vfiod_dma_requests_total{controller="vm1",op="map"} 3',
        'vfiod_dma_requests_total{controller="vm1",op="unmap"} 1',
        'vfiod_controller_resets_total{controller="vm1"} 1',
        'vfiod_namespace_size_bytes{controller="vm1",nsid="1",backend="memory:16MiB"} 16777216',
        'vfiod_namespace_commands_total{controller="vm1",nsid="1",direction="read"} 11',
        'vfiod_namespace_commands_total{controller="vm1",nsid="1",direction="write"} 12',
        'vfiod_namespace_commands_total{controller="vm1",nsid="2",direction="write"} 1',
        'vfiod_namespace_bytes_total{controller="vm1",nsid="1",direction="read"} 45056',
        'vfiod_namespace_bytes_total{controller="vm1",nsid="2",direction="write"} 512',
        'vfiod_namespace_command_errors_total{controller="vm1",nsid="1",status="LBA_OUT_OF_RANGE"} 2',
        'vfiod_io_latency_seconds_bucket{controller="vm1",le="0.000002"} 1',
        'vfiod_io_latency_seconds_bucket{controller="vm1",le="0.000004"} 2',
        'vfiod_io_latency_seconds_bucket{controller="vm1",le="0.000064"} 2',
        'vfiod_io_latency_seconds_bucket{controller="vm1",le="0.000128"} 4',
        'vfiod_io_latency_seconds_bucket{controller="vm1",le="+Inf"} 4',
        'vfiod_io_latency_seconds_count{controller="vm1"} 4',
      ]),
    );
    const sum = text.find((line) => line.startsWith('vfiod_io_latency_seconds_sum'));
    expect(Number(sum!.split(' ')[1])).toBeCloseTo((0.4 + 3 + 200) / 1e6, 12);
    // 32 buckets: every upper bound from 2 us to 2^31 us, then +Inf.
    expect(text.filter((line) => line.startsWith('vfiod_io_latency_seconds_bucket'))).toHaveLength(32);
  });

  it('NVMe/TCP paths: one state series per path set to 1, reconnects; a controller without a snapshot is only "not serving"', async () => {
    const metrics = new ControllerMetrics();
    const snapshot: NonNullable<ControllerSample['snapshot']> = {
      stats: stats(new LatencyHistogram()),
      clientConnected: false,
      namespaces: [
        {
          nsid: 1,
          backend: 'nvme-tcp://10.0.0.1:4420,10.0.0.2:4420/nqn.x?nsid=1',
          blockSize: 512,
          blocks: 8,
          paths: [
            { address: '10.0.0.1:4420', state: 'live', error: '', reconnects: 2 },
            { address: '10.0.0.2:4420', state: 'down', error: 'connection refused', reconnects: 0 },
          ],
        },
      ],
      dma: { mappings: 0, mapRequests: 0, unmapRequests: 0 },
    };
    const text = lines(await metrics.render([{ controller: 'a', snapshot }, { controller: 'b', snapshot: null }]));
    expect(text).toEqual(
      expect.arrayContaining([
        'vfiod_nvme_tcp_path_state{controller="a",nsid="1",address="10.0.0.1:4420",state="live"} 1',
        'vfiod_nvme_tcp_path_state{controller="a",nsid="1",address="10.0.0.1:4420",state="down"} 0',
        'vfiod_nvme_tcp_path_state{controller="a",nsid="1",address="10.0.0.2:4420",state="down"} 1',
        'vfiod_nvme_tcp_path_state{controller="a",nsid="1",address="10.0.0.2:4420",state="live"} 0',
        'vfiod_nvme_tcp_path_reconnects_total{controller="a",nsid="1",address="10.0.0.1:4420"} 2',
        'vfiod_nvme_tcp_path_reconnects_total{controller="a",nsid="1",address="10.0.0.2:4420"} 0',
        'vfiod_controller_serving{controller="a"} 1',
        'vfiod_controller_serving{controller="b"} 0',
      ]),
    );
    expect(text.filter((line) => line.includes('controller="b"'))).toEqual(['vfiod_controller_serving{controller="b"} 0']);
    // A later scrape shows only what that scrape read: controller a gone, nothing of it is left.
    const later = lines(await metrics.render([{ controller: 'b', snapshot: null }]));
    expect(later).toEqual(['vfiod_controller_serving{controller="b"} 0']);
  });
});

describe('parseMetricsAddress', () => {
  it('takes loopback host:port, [::1]:port, localhost and unix paths', () => {
    expect(parseMetricsAddress('127.0.0.1:9464', false)).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9464 });
    expect(parseMetricsAddress('127.1.2.3:0', false)).toEqual({ kind: 'tcp', host: '127.1.2.3', port: 0 });
    expect(parseMetricsAddress('[::1]:9464', false)).toEqual({ kind: 'tcp', host: '::1', port: 9464 });
    expect(parseMetricsAddress('localhost:9464', false)).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9464 });
    expect(parseMetricsAddress('/run/vfiod/metrics.sock', false)).toEqual({ kind: 'unix', path: '/run/vfiod/metrics.sock' });
  });

  it('refuses other addresses without allowRemote, and anything that is not an address', () => {
    for (const remote of ['0.0.0.0:9464', '10.1.2.3:9464', '[::]:9464', '[2001:db8::1]:9464']) {
      expect(() => parseMetricsAddress(remote, false)).toThrow(MetricsAddressRefused);
      expect(() => parseMetricsAddress(remote, false)).toThrow(/not a loopback address/);
      expect(parseMetricsAddress(remote, true)).toMatchObject({ kind: 'tcp', port: 9464 });
    }
    expect(() => parseMetricsAddress('9464', false)).toThrow(/neither host:port nor a unix socket path/);
    expect(() => parseMetricsAddress('127.0.0.1:70000', false)).toThrow(/port 70000 is not from 0 to 65535/);
    expect(() => parseMetricsAddress('metrics.example:9464', true)).toThrow(/not an IP address/);
  });
});
