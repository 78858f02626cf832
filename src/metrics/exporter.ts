/**
 * The Prometheus view of vfiod's controllers. Nothing here runs per command: the controllers keep their own counters
 * (src/nvme/stats.ts), and a scrape reads one snapshot of each (`MetricsSource`) and turns it into metrics through
 * prom-client's collect callbacks.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { NAMESPACE_PATH_STATES, type NamespacePath } from '../namespace/namespace.js';
import type { NvmeControllerStats } from '../nvme/stats.js';

/** What a scrape reads about one controller. `snapshot` is null when it is not serving (starting, failed, stuck). */
export interface ControllerSample {
  /** The `controller` label: the daemon's controller id, or `vfiod serve`'s socket path. */
  controller: string;
  snapshot: {
    stats: NvmeControllerStats;
    clientConnected: boolean;
    namespaces: ReadonlyArray<{ nsid: number; backend: string; blockSize: number; blocks: number; paths?: NamespacePath[] }>;
    dma: { mappings: number; mapRequests: number; unmapRequests: number };
  } | null;
}

export type MetricsSource = () => Promise<ControllerSample[]>;

type Snapshot = NonNullable<ControllerSample['snapshot']>;
type Serving = { controller: string; snapshot: Snapshot };

/**
 * An I/O latency histogram exported from the controller's own log2 buckets (src/nvme/stats.ts LatencyHistogram):
 * bucket i holds [2^i, 2^(i+1)) us, so its upper bound `le` is 2^(i+1) us; the last one is open (+Inf).
 */
class Log2LatencyHistogram extends Histogram<'controller' | 'le'> {
  private static readonly metric = 'vfiod_io_latency_seconds';
  private static readonly help = 'I/O command latency, fetch to completion';

  constructor(
    registry: Registry,
    private readonly serving: () => readonly Serving[],
  ) {
    super({ name: Log2LatencyHistogram.metric, help: Log2LatencyHistogram.help, labelNames: ['controller'], registers: [registry] });
  }

  override async get(): Promise<Awaited<ReturnType<Histogram<'controller' | 'le'>['get']>>> {
    const name = Log2LatencyHistogram.metric;
    const values: Array<{ metricName: string; labels: { controller: string; le?: string }; value: number }> = [];
    for (const { controller, snapshot } of this.serving()) {
      const latency = snapshot.stats.latency;
      const buckets = latency.bucketsMicros;
      let cumulative = 0;
      buckets.forEach((count, index) => {
        cumulative += count;
        const le = index === buckets.length - 1 ? '+Inf' : (2 ** (index + 1) / 1e6).toString();
        values.push({ metricName: `${name}_bucket`, labels: { controller, le }, value: cumulative });
      });
      values.push({ metricName: `${name}_sum`, labels: { controller }, value: latency.totalMicros / 1e6 });
      values.push({ metricName: `${name}_count`, labels: { controller }, value: latency.count });
    }
    // The shape prom-client's registry renders; its typings declare `type` as an enum its JavaScript does not use.
    return { name, help: Log2LatencyHistogram.help, type: 'histogram', aggregator: 'sum', values } as unknown as Awaited<ReturnType<Histogram<'controller' | 'le'>['get']>>;
  }

  /** What prom-client's registry calls for a histogram's text (not in its typings): the same buckets. */
  getForPromString(): ReturnType<Log2LatencyHistogram['get']> {
    return this.get();
  }
}

/** The registry a scrape renders; `render` takes the samples of this scrape. */
export class ControllerMetrics {
  readonly registry = new Registry();
  private samples: ControllerSample[] = [];

  constructor() {
    const serving = (): Serving[] => this.samples.filter((sample): sample is Serving => sample.snapshot !== null);
    const registers = [this.registry];

    /** A counter or gauge whose values are read from each serving controller's snapshot at scrape time. */
    const fromSnapshots = <L extends string>(
      kind: 'counter' | 'gauge',
      name: string,
      help: string,
      labelNames: readonly L[],
      read: (snapshot: Snapshot, emit: (labels: Partial<Record<L, string | number>>, value: number) => void) => void,
    ): void => {
      type Labels = Record<'controller' | L, string | number>;
      const each = (record: (labels: Labels, value: number) => void): void => {
        for (const { controller, snapshot } of serving()) read(snapshot, (labels, value) => record({ controller, ...labels } as Labels, value));
      };
      const configuration = { name, help, labelNames: ['controller', ...labelNames] as Array<'controller' | L>, registers };
      if (kind === 'counter') {
        new Counter<'controller' | L>({
          ...configuration,
          collect() {
            this.reset();
            each((labels, value) => this.inc(labels, value));
          },
        });
      } else {
        new Gauge<'controller' | L>({
          ...configuration,
          collect() {
            this.reset();
            each((labels, value) => this.set(labels, value));
          },
        });
      }
    };

    const samples = (): readonly ControllerSample[] => this.samples;
    new Gauge<'controller'>({
      name: 'vfiod_controller_serving',
      help: '1 while the controller serves its socket, 0 while it starts, failed or does not answer',
      labelNames: ['controller'],
      registers,
      collect() {
        this.reset();
        for (const { controller, snapshot } of samples()) this.set({ controller }, snapshot === null ? 0 : 1);
      },
    });
    fromSnapshots('gauge', 'vfiod_client_connected', '1 while a hypervisor (vfio-user client) is connected', [], (s, emit) => emit({}, s.clientConnected ? 1 : 0));
    fromSnapshots('counter', 'vfiod_commands_total', 'Commands completed, by kind (admin, read, write, other_io)', ['kind'], (s, emit) => {
      const commands = s.stats.commands;
      emit({ kind: 'admin' }, commands.admin);
      emit({ kind: 'read' }, commands.read);
      emit({ kind: 'write' }, commands.write);
      emit({ kind: 'other_io' }, commands.otherIo);
    });
    fromSnapshots('counter', 'vfiod_command_errors_total', 'Commands (admin and I/O) completed with a non-zero NVMe status, by status', ['status'], (s, emit) => {
      for (const [status, count] of Object.entries(s.stats.commands.failedByStatus)) emit({ status }, count);
    });
    fromSnapshots('counter', 'vfiod_bytes_total', 'Bytes moved by Read (and Compare) and Write commands, by direction', ['direction'], (s, emit) => {
      emit({ direction: 'read' }, s.stats.bytesRead);
      emit({ direction: 'write' }, s.stats.bytesWritten);
    });
    fromSnapshots('gauge', 'vfiod_io_in_flight', 'I/O commands fetched and not yet completed', [], (s, emit) => emit({}, s.stats.inFlight));
    fromSnapshots('gauge', 'vfiod_io_throttled', 'I/O commands the rate limits hold back now (counted in vfiod_io_in_flight too)', [], (s, emit) => emit({}, s.stats.throttled.now));
    fromSnapshots('counter', 'vfiod_io_throttled_total', 'I/O commands that had to wait for a rate limit', [], (s, emit) => emit({}, s.stats.throttled.total));
    fromSnapshots('gauge', 'vfiod_queue_depth', 'I/O commands fetched and not yet completed, per submission queue', ['sqid'], (s, emit) => {
      for (const queue of s.stats.queueDepths) emit({ sqid: queue.sqid }, queue.inFlight);
    });
    fromSnapshots('gauge', 'vfiod_io_queues', 'I/O submission queues the guest created', [], (s, emit) => emit({}, s.stats.ioSubmissionQueues));
    fromSnapshots('counter', 'vfiod_interrupts_total', 'Interrupts signalled to the guest (MSI-X messages, INTx assertions)', [], (s, emit) => emit({}, s.stats.interrupts));
    fromSnapshots('gauge', 'vfiod_dma_mappings', 'Guest memory regions the client has mapped (DMA_MAP)', [], (s, emit) => emit({}, s.dma.mappings));
    fromSnapshots('counter', 'vfiod_dma_requests_total', 'DMA_MAP and DMA_UNMAP requests received', ['op'], (s, emit) => {
      emit({ op: 'map' }, s.dma.mapRequests);
      emit({ op: 'unmap' }, s.dma.unmapRequests);
    });
    fromSnapshots('counter', 'vfiod_controller_resets_total', 'Controller resets (CC.EN 1 to 0, function reset, disconnect)', [], (s, emit) => emit({}, s.stats.resets));
    fromSnapshots('gauge', 'vfiod_namespace_size_bytes', 'Namespace capacity, with its backend', ['nsid', 'backend'], (s, emit) => {
      for (const ns of s.namespaces) emit({ nsid: ns.nsid, backend: ns.backend }, ns.blocks * ns.blockSize);
    });
    fromSnapshots('counter', 'vfiod_namespace_commands_total', 'Successful Read (and Compare) and Write commands per namespace, by direction', ['nsid', 'direction'], (s, emit) => {
      for (const ns of s.stats.namespaces) {
        emit({ nsid: ns.nsid, direction: 'read' }, ns.readCommands);
        emit({ nsid: ns.nsid, direction: 'write' }, ns.writeCommands);
      }
    });
    fromSnapshots('counter', 'vfiod_namespace_bytes_total', 'Bytes moved per namespace by those commands, by direction', ['nsid', 'direction'], (s, emit) => {
      for (const ns of s.stats.namespaces) {
        emit({ nsid: ns.nsid, direction: 'read' }, ns.bytesRead);
        emit({ nsid: ns.nsid, direction: 'write' }, ns.bytesWritten);
      }
    });
    fromSnapshots('counter', 'vfiod_namespace_command_errors_total', 'I/O commands per namespace completed with a non-zero NVMe status, by status', ['nsid', 'status'], (s, emit) => {
      for (const ns of s.stats.namespaces) for (const [status, count] of Object.entries(ns.failedByStatus)) emit({ nsid: ns.nsid, status }, count);
    });
    fromSnapshots('gauge', 'vfiod_nvme_tcp_path_state', 'An NVMe/TCP namespace path: 1 for its current state, 0 for the others', ['nsid', 'address', 'state'], (s, emit) => {
      for (const ns of s.namespaces) {
        for (const path of ns.paths ?? []) for (const state of NAMESPACE_PATH_STATES) emit({ nsid: ns.nsid, address: path.address, state }, path.state === state ? 1 : 0);
      }
    });
    fromSnapshots('counter', 'vfiod_nvme_tcp_path_reconnects_total', 'Times an NVMe/TCP namespace path connected again after its first attempt', ['nsid', 'address'], (s, emit) => {
      for (const ns of s.namespaces) for (const path of ns.paths ?? []) emit({ nsid: ns.nsid, address: path.address }, path.reconnects);
    });
    new Log2LatencyHistogram(this.registry, serving);
  }

  /** The exposition text for these samples (one scrape). */
  async render(samples: ControllerSample[]): Promise<string> {
    this.samples = samples;
    return this.registry.metrics();
  }
}
