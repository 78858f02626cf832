/**
 * An in-process NVMe setup for controller tests: real GuestMemory over a plain ArrayBuffer as guest RAM, real
 * memory namespaces, an interrupt sink that records what it is asked to signal, and the guest driver on top.
 */
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { MemoryNamespace } from '../../src/namespace/memory.js';
import type { Namespace, NamespaceIds } from '../../src/namespace/namespace.js';
import { NvmeController, type InterruptSink } from '../../src/nvme/controller.js';
import type { ControllerIdentity } from '../../src/nvme/identity.js';
import { memoryLogger, type LogFields } from '../../src/util/log.js';
import { directTransport, GuestDriver } from './guest-driver.js';

export const RAM_IOVA = 0x100000;
export const RAM_SIZE = 16 * 1024 * 1024;

export class RecordingInterrupts implements InterruptSink {
  readonly signals: number[] = [];
  msix = true;
  constructor(readonly vectorCount: number) {}
  signal(vector: number): void {
    this.signals.push(vector);
  }
  msixEnabled(): boolean {
    return this.msix;
  }
  /** Signals recorded since the last call. */
  take(): number[] {
    return this.signals.splice(0);
  }
}

export const TEST_IDENTITY: ControllerIdentity = {
  serialNumber: 'VFIOD-TEST-0001',
  modelNumber: 'vfiod test controller',
  firmwareRevision: '1.2.3',
  subsystemNqn: 'nqn.2024-01.io.vfiod:test-subsystem',
  ieeeOui: 0x525400,
  controllerId: 7,
};

export function namespaceIds(nsid: number): NamespaceIds {
  const hex = nsid.toString(16).padStart(2, '0');
  return {
    nguid: `0011223344556677889900aabbccdd${hex}`,
    eui64: `a1b2c3d4e5f601${hex}`,
    uuid: `12345678-9abc-4def-8123-4567890abc${hex}`,
  };
}

export interface HarnessOptions {
  namespaces?: Namespace[];
  vectorCount?: number;
  maxIoQueuePairs?: number;
  maxQueueEntries?: number;
  mdtsPages?: number;
  scratchBudgetBytes?: number;
  identity?: ControllerIdentity;
  /** Map guest RAM as two mappings of half the size each (to unmap one half under a live queue). */
  splitRam?: boolean;
}

export interface Harness {
  memory: GuestMemory;
  ram: Uint8Array;
  controller: NvmeController;
  driver: GuestDriver;
  interrupts: RecordingInterrupts;
  doorbells: Uint32Array;
  namespaces: Namespace[];
  log: LogFields[];
}

export function createHarness(options: HarnessOptions = {}): Harness {
  const ram = new Uint8Array(RAM_SIZE);
  const memory = new GuestMemory();
  if (options.splitRam) {
    const half = RAM_SIZE / 2;
    memory.add({ iova: RAM_IOVA, size: half, bytes: ram.subarray(0, half), readable: true, writable: true });
    memory.add({ iova: RAM_IOVA + half, size: half, bytes: ram.subarray(half), readable: true, writable: true });
  } else {
    memory.add({ iova: RAM_IOVA, size: RAM_SIZE, bytes: ram, readable: true, writable: true });
  }
  const namespaces = options.namespaces ?? [
    new MemoryNamespace({ sizeBytes: 4 * 1024 * 1024, blockSize: 512 }),
    new MemoryNamespace({ sizeBytes: 8 * 1024 * 1024, blockSize: 4096 }),
  ];
  const interrupts = new RecordingInterrupts(options.vectorCount ?? 8);
  const doorbells = new Uint32Array(1024);
  const { logger, lines } = memoryLogger();
  const controller = new NvmeController({
    dma: memory,
    namespaces: namespaces.map((namespace, index) => ({ namespace, ids: namespaceIds(index + 1) })),
    identity: options.identity ?? TEST_IDENTITY,
    interrupts,
    doorbells,
    ...(options.maxIoQueuePairs !== undefined ? { maxIoQueuePairs: options.maxIoQueuePairs } : {}),
    ...(options.maxQueueEntries !== undefined ? { maxQueueEntries: options.maxQueueEntries } : {}),
    ...(options.mdtsPages !== undefined ? { mdtsPages: options.mdtsPages } : {}),
    ...(options.scratchBudgetBytes !== undefined ? { scratchBudgetBytes: options.scratchBudgetBytes } : {}),
    logger,
  });
  const driver = new GuestDriver(directTransport(controller, { bytes: ram, iova: RAM_IOVA }));
  return { memory, ram, controller, driver, interrupts, doorbells, namespaces, log: lines };
}

/** Deterministic bytes for data checks. */
export function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed >>> 0 || 1;
  for (let index = 0; index < length; index++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    bytes[index] = state >>> 24;
  }
  return bytes;
}

/**
 * A namespace wrapper whose reads and writes wait until the test releases them: in-flight I/O on demand.
 * Flushes are counted, and fail with `flushError` when it is set.
 */
export class GatedNamespace implements Namespace {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly description = 'gated test namespace';
  readonly maxTransferBytes = 0;
  readonly supportsDeallocate: boolean;
  volatileWriteCache = false;
  readonly readOnly: boolean;
  gate = false;
  flushes = 0;
  /** When set, every flush rejects with it. */
  flushError: unknown = undefined;
  private waiting: Array<() => void> = [];

  constructor(
    private readonly inner: Namespace,
    options: { supportsDeallocate?: boolean; volatileWriteCache?: boolean; readOnly?: boolean } = {},
  ) {
    this.blockSize = inner.blockSize;
    this.blockCount = inner.blockCount;
    this.supportsDeallocate = options.supportsDeallocate ?? false;
    this.volatileWriteCache = options.volatileWriteCache ?? false;
    this.readOnly = options.readOnly ?? false;
  }

  get pending(): number {
    return this.waiting.length;
  }

  /** Lets every held operation finish. */
  release(): void {
    for (const resume of this.waiting.splice(0)) resume();
  }

  read(offset: number, buffers: readonly Uint8Array[]): Promise<void> | void {
    if (!this.gate) return this.inner.read(offset, buffers);
    return this.hold().then(() => this.inner.read(offset, buffers));
  }

  write(offset: number, buffers: readonly Uint8Array[]): Promise<void> | void {
    if (!this.gate) return this.inner.write(offset, buffers);
    return this.hold().then(() => this.inner.write(offset, buffers));
  }

  flush(): Promise<void> | void {
    this.flushes++;
    if (this.flushError !== undefined) return Promise.reject(this.flushError);
    return this.inner.flush();
  }

  deallocate(ranges: readonly { offset: number; length: number }[]): Promise<void> | void {
    return this.inner.deallocate(ranges);
  }

  writeZeroes(offset: number, length: number): Promise<void> | void {
    return this.inner.writeZeroes(offset, length);
  }

  usage(): { allocatedBytes: number } {
    return { allocatedBytes: 3 * this.blockSize };
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private hold(): Promise<void> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}

/** Lets pending promise callbacks and immediates run. */
export async function settle(rounds = 3): Promise<void> {
  for (let round = 0; round < rounds; round++) await new Promise((resolve) => setImmediate(resolve));
}
