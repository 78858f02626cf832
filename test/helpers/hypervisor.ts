/**
 * Plays the hypervisor in end-to-end tests: connects to a vfio-user socket like QEMU or cloud-hypervisor would,
 * shares guest RAM (a memfd) through DMA_MAP, enables bus mastering and MSI-X in config space, wires MSI-X eventfds,
 * and hands the guest driver a BAR0 transport. In polled mode doorbells go straight into the mmapped doorbell page,
 * as a guest with that page mapped into its address space would write them.
 */
import { native, PROT_READ, PROT_WRITE, type FdWatcher } from '../../src/native/index.js';
import { GuestDriver, type GuestDriverTransport } from './guest-driver.js';
import { VfioUserClient, type Flavour, type RegionInfoResult } from './vfio-user-client.js';

export const GUEST_RAM_IOVA = 0x4000_0000;
const CONFIG_REGION = 7;
const MSIX_IRQ_INDEX = 2;
const DOORBELL_BASE = 0x1000;

export interface GuestOptions {
  flavour: Flavour;
  /** Bytes of guest RAM shared with the server (default 32 MiB). */
  ramBytes?: number;
  /** MSI-X vectors to wire with eventfds (default 4). */
  vectors?: number;
  /**
   * The part of guest RAM the guest driver uses (and this process maps), as an offset into it and a length; default
   * all of it. Lets a test share a huge sparse RAM (1 TiB) and still place queues and buffers anywhere inside it.
   */
  driverWindow?: { offset: number; length: number };
  /** How long the client waits for each reply (default 3000 ms). */
  replyTimeoutMs?: number;
}

export class Guest {
  readonly driver: GuestDriver;
  /** Interrupts received per MSI-X vector (eventfd counter sums). */
  readonly interrupts: number[];
  /** BAR0 REGION_WRITEs sent for doorbells (0 in polled mode). */
  trappedDoorbellWrites = 0;

  private constructor(
    readonly client: VfioUserClient,
    readonly regions: RegionInfoResult[],
    /** The guest RAM memfd shared with the server (DMA_MAP at GUEST_RAM_IOVA); unsealed, as cloud-hypervisor's. */
    readonly memfd: number,
    private readonly ram: ArrayBuffer,
    private readonly irqFds: number[],
    private readonly watchers: FdWatcher[],
    private readonly waiters: Array<Array<() => void>>,
    private readonly doorbellPage: ArrayBuffer | undefined,
    /** Guest address of `ram[0]`. */
    readonly ramIova: number,
  ) {
    this.interrupts = irqFds.map(() => 0);
    const bar0Region = 0;
    const transport: GuestDriverTransport = {
      memory: { bytes: new Uint8Array(ram), iova: ramIova },
      bar0Read: (offset, length) => this.serialized(() => client.regionRead(bar0Region, offset, length)),
      bar0Write: async (offset, bytes) => {
        if (this.doorbellPage && offset >= DOORBELL_BASE && offset < DOORBELL_BASE + 0x1000 && bytes.length === 4) {
          new Uint8Array(this.doorbellPage).set(bytes, offset - DOORBELL_BASE);
          return;
        }
        if (offset >= DOORBELL_BASE) this.trappedDoorbellWrites++;
        // QEMU posts BAR writes while nothing is mmap-able; the client decides (cloud-hypervisor always waits).
        await this.serialized(() => client.regionWrite(bar0Region, offset, bytes, { posted: offset >= DOORBELL_BASE }));
      },
      waitForInterrupt: (vector) =>
        new Promise<void>((resolve) => {
          const list = this.waiters[vector];
          if (!list) return resolve();
          list.push(resolve);
        }),
    };
    this.driver = new GuestDriver(transport);
  }

  /** Connects, runs the hypervisor's start-up sequence and prepares the PCI function for the guest driver. */
  static async attach(socketPath: string, options: GuestOptions): Promise<Guest> {
    const client = VfioUserClient.connect(socketPath, {
      flavour: options.flavour,
      ...(options.replyTimeoutMs !== undefined ? { replyTimeoutMs: options.replyTimeoutMs } : {}),
    });
    const { regions } = await client.initialize();
    const ramBytes = options.ramBytes ?? 32 * 1024 * 1024;
    const memfd = native.memfdCreate('guest-ram', ramBytes);
    const window = options.driverWindow ?? { offset: 0, length: ramBytes };
    const ram = native.mmap(memfd, window.offset, window.length, PROT_READ | PROT_WRITE);
    await client.dmaMap({ iova: GUEST_RAM_IOVA, size: ramBytes, fd: memfd });

    // Memory space + bus master, then MSI-X enable (its capability is found by walking the list).
    await configWrite16(client, 0x04, 0x0006);
    const msixCap = await findCapability(client, 0x11);
    if (msixCap === undefined) throw new Error('no MSI-X capability');
    const control = await configRead16(client, msixCap + 2);
    await configWrite16(client, msixCap + 2, control | 0x8000);

    const vectors = options.vectors ?? 4;
    const irqFds = Array.from({ length: vectors }, () => native.eventfdCreate(0, true));
    await client.enableIrqs(MSIX_IRQ_INDEX, irqFds);

    // Polled mode: BAR0 carries a sparse-mmap area for the doorbell page; map it like the hypervisor would.
    let doorbellPage: ArrayBuffer | undefined;
    const bar0 = regions[0];
    const area = bar0?.areas?.find((candidate) => candidate.offset === DOORBELL_BASE);
    if (bar0?.fd !== undefined && area) {
      doorbellPage = native.mmap(bar0.fd, Number(bar0.info.offset) + area.offset, area.size, PROT_READ | PROT_WRITE);
    }

    const waiters: Array<Array<() => void>> = irqFds.map(() => []);
    const guest: Guest = new Guest(
      client,
      regions,
      memfd,
      ram,
      irqFds,
      [],
      waiters,
      doorbellPage,
      GUEST_RAM_IOVA + window.offset,
    );
    irqFds.forEach((fd, vector) => {
      const watcher = native.createWatcher(fd, () => {
        const count = native.eventfdRead(fd);
        if (count !== null) guest.interrupts[vector]! += count;
        for (const resolve of waiters[vector]!.splice(0)) resolve();
      });
      watcher.start(1);
      guest.watchers.push(watcher);
    });
    return guest;
  }

  /**
   * One request on the socket at a time, as in the hypervisors (QEMU's proxy lock, cloud-hypervisor's synchronous
   * client): concurrent guest-driver calls queue here instead of interleaving their replies.
   */
  private queue: Promise<unknown> = Promise.resolve();
  private serialized<T>(request: () => Promise<T>): Promise<T> {
    const result = this.queue.then(request, request);
    this.queue = result.catch(() => undefined);
    return result;
  }

  get polledDoorbells(): boolean {
    return this.doorbellPage !== undefined;
  }

  /** Guest RAM as the guest sees it (the driver window of it, at `ramIova`). */
  get memory(): Uint8Array {
    return new Uint8Array(this.ram);
  }

  /** Disconnects like a hypervisor process that exits, and releases local resources. */
  close(): void {
    for (const watcher of this.watchers) watcher.close();
    this.client.close();
    for (const fd of this.irqFds) native.close(fd);
    if (this.doorbellPage) native.munmap(this.doorbellPage);
    for (const region of this.regions) if (region.fd !== undefined) native.close(region.fd);
    native.munmap(this.ram);
    native.close(this.memfd);
  }
}

export async function configRead16(client: VfioUserClient, offset: number): Promise<number> {
  const bytes = await client.regionRead(CONFIG_REGION, offset, 2);
  return bytes[0]! | (bytes[1]! << 8);
}

export async function configWrite16(client: VfioUserClient, offset: number, value: number): Promise<void> {
  await client.regionWrite(CONFIG_REGION, offset, new Uint8Array([value & 0xff, value >> 8]));
}

/** Walks the capability list from 0x34 and returns the offset of capability `id`. */
export async function findCapability(client: VfioUserClient, id: number): Promise<number | undefined> {
  let pointer = (await client.regionRead(CONFIG_REGION, 0x34, 1))[0]!;
  for (let hops = 0; pointer !== 0 && hops < 48; hops++) {
    const header = await client.regionRead(CONFIG_REGION, pointer, 2);
    if (header[0] === id) return pointer;
    pointer = header[1]!;
  }
  return undefined;
}

/**
 * A guest ready for I/O, as most daemon tests want it: attached as QEMU does (2 MSI-X vectors), the controller
 * enabled, I/O queue pair 1 created (64 entries, vector 1). Pushed onto `guests` for the caller to close.
 */
export async function attachReadyGuest(socketPath: string, guests: Guest[]): Promise<Guest> {
  const guest = await Guest.attach(socketPath, { flavour: 'qemu', vectors: 2 });
  guests.push(guest);
  await guest.driver.enable();
  await guest.driver.createIoQueuePair(1, 64, 1);
  return guest;
}
