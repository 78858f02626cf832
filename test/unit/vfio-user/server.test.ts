// The vfio-user server over real unix sockets, with real memfds, eventfds and mmaps, driven by a client that
// behaves like QEMU or cloud-hypervisor (test/helpers/vfio-user-client.ts). The device is a small but real one:
// a RAM-like BAR0 whose second page is mmap-able from a memfd, a 2 MiB RAM-like BAR2, and a config region that
// insists on naturally aligned accesses.
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { native, PROT_READ, PROT_WRITE } from '../../../src/native/index.js';
import { memoryLogger, setLogLevel, type LogFields } from '../../../src/util/log.js';
import { DeviceFlag, Errno, IrqFlag, IrqSetFlag, RegionFlag, RegionIndex } from '../../../src/spec/vfio.js';
import {
  VfioUserError,
  type IrqInfo,
  type RegionInfo,
  type SetIrqsRequest,
  type VfioUserDevice,
} from '../../../src/vfio-user/device.js';
import {
  BodySize,
  Command,
  DmaUnmapFlag,
  HEADER_SIZE,
  HeaderFlag,
  encodeDmaMap,
  encodeIrqSet,
  encodeRegionAccess,
  encodeVersion,
  newMessage,
} from '../../../src/vfio-user/protocol.js';
import { VfioUserServer, type VfioUserServerOptions } from '../../../src/vfio-user/server.js';
import { PciAccessError, PciFunction } from '../../../src/pci/index.js';
import { VfioUserClient, VfioUserReplyError, type Flavour } from '../../helpers/vfio-user-client.js';
import { sleep, temporaryDir } from '../../helpers/common.js';

const RW = PROT_READ | PROT_WRITE;
const PAGE = 4096;
const MSIX_VECTORS = 40;
const FLAVOURS: Flavour[] = ['qemu', 'cloud-hypervisor'];

function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** A legitimate small PCI-like device for exercising the server (not a stand-in for the NVMe function). */
class TestDevice implements VfioUserDevice {
  readonly flags: number;
  readonly regions: RegionInfo[];
  readonly irqs: IrqInfo[];
  /** BAR0 page 0: trapped RAM. Page 1: the memfd page the client may map (the server writes it directly). */
  readonly bar0Trapped = new Uint8Array(PAGE);
  readonly bar0Fd: number;
  readonly bar0Shared: Uint8Array;
  readonly bar2 = new Uint8Array(2 * 1024 * 1024);
  readonly config = new Uint8Array(256);
  /** vector -> eventfd, per irq index */
  readonly eventfds = new Map<number, Map<number, number>>();
  readonly setIrqsCalls: SetIrqsRequest[] = [];
  readonly log: string[] = [];
  resets = 0;
  afterBatches = 0;
  disconnects = 0;
  resetDelay: Promise<void> | undefined;

  constructor(options: { resettable?: boolean } = {}) {
    this.flags = DeviceFlag.PCI | (options.resettable === false ? 0 : DeviceFlag.RESET);
    this.bar0Fd = native.memfdCreate('test-bar0', 2 * PAGE);
    this.bar0Shared = new Uint8Array(native.mmap(this.bar0Fd, PAGE, PAGE, RW));
    const absent: RegionInfo = { size: 0, flags: 0 };
    this.regions = [
      {
        size: 2 * PAGE,
        flags: RegionFlag.READ | RegionFlag.WRITE,
        mmap: { fd: this.bar0Fd, fdOffset: 0, areas: [{ offset: PAGE, size: PAGE }] },
      },
      absent,
      { size: this.bar2.length, flags: RegionFlag.READ | RegionFlag.WRITE },
      absent,
      absent,
      absent,
      { size: 4096, flags: RegionFlag.READ }, // ROM: read-only
      { size: this.config.length, flags: RegionFlag.READ | RegionFlag.WRITE },
      absent,
    ];
    this.irqs = [
      { count: 1, flags: IrqFlag.EVENTFD | IrqFlag.MASKABLE | IrqFlag.AUTOMASKED },
      { count: 0, flags: 0 },
      { count: MSIX_VECTORS, flags: IrqFlag.EVENTFD | IrqFlag.NORESIZE },
      { count: 0, flags: 0 },
      { count: 0, flags: 0 },
    ];
  }

  private bytesOf(index: number, offset: number, length: number): Uint8Array {
    if (index === RegionIndex.BAR0) {
      if (offset < PAGE && offset + length <= PAGE) return this.bar0Trapped.subarray(offset, offset + length);
      if (offset >= PAGE) return this.bar0Shared.subarray(offset - PAGE, offset - PAGE + length);
      throw new VfioUserError(Errno.EINVAL, 'access crosses the BAR0 page boundary');
    }
    if (index === RegionIndex.BAR2) return this.bar2.subarray(offset, offset + length);
    if (index === RegionIndex.ROM) return new Uint8Array(length).fill(0xaa);
    if (index === RegionIndex.CONFIG) {
      if (![1, 2, 4].includes(length) || offset % length !== 0) {
        throw new VfioUserError(Errno.EINVAL, `misaligned config access of ${length} bytes at ${offset}`);
      }
      return this.config.subarray(offset, offset + length);
    }
    throw new VfioUserError(Errno.EINVAL, `region ${index} not implemented`);
  }

  regionRead(index: number, offset: number, dst: Uint8Array): void {
    this.log.push(`read ${index}@${offset}`);
    dst.set(this.bytesOf(index, offset, dst.length));
  }

  regionWrite(index: number, offset: number, src: Uint8Array): void {
    this.log.push(`write ${index}@${offset}`);
    this.bytesOf(index, offset, src.length).set(src);
  }

  setIrqs(request: SetIrqsRequest): void {
    this.setIrqsCalls.push({ ...request, fds: [...request.fds] });
    let vectors = this.eventfds.get(request.index);
    if (!vectors) this.eventfds.set(request.index, (vectors = new Map()));
    const data = request.flags & 7;
    if (data === IrqSetFlag.DATA_NONE && request.count === 0) {
      for (const fd of vectors.values()) native.close(fd);
      vectors.clear();
      return;
    }
    for (let i = 0; i < request.count; i++) {
      const vector = request.start + i;
      if (data === IrqSetFlag.DATA_EVENTFD) {
        const old = vectors.get(vector);
        if (old !== undefined) native.close(old);
        const fd = request.fds[i];
        if (fd === undefined) vectors.delete(vector);
        else vectors.set(vector, fd);
      } else if (data === IrqSetFlag.DATA_BOOL && request.bools?.[i]) {
        const fd = vectors.get(vector);
        if (fd !== undefined) native.eventfdWrite(fd, 1);
      }
    }
  }

  reset(): Promise<void> | void {
    this.resets++;
    this.log.push('reset');
    if (this.resetDelay) {
      const delay = this.resetDelay;
      return delay.then(() => {
        this.log.push('reset done');
      });
    }
  }

  afterBatch(): void {
    this.afterBatches++;
  }

  async disconnected(): Promise<void> {
    this.disconnects++;
    for (const vectors of this.eventfds.values()) for (const fd of vectors.values()) native.close(fd);
    this.eventfds.clear();
  }

  dispose(): void {
    native.munmap(this.bar0Shared.buffer as ArrayBuffer);
    native.close(this.bar0Fd);
  }
}

interface Harness {
  server: VfioUserServer;
  device: TestDevice;
  memory: GuestMemory;
  lines: LogFields[];
  socketPath: string;
  dir: string;
  connect(flavour: Flavour): VfioUserClient;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startServer(
  options: { device?: TestDevice; server?: Partial<VfioUserServerOptions>; socketName?: string } = {},
): Promise<Harness> {
  const dir = temporaryDir('vfu-');
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, options.socketName ?? 'nvme.sock');
  const device = options.device ?? new TestDevice();
  cleanups.push(() => device.dispose());
  const memory = new GuestMemory();
  const { logger, lines } = memoryLogger();
  const server = new VfioUserServer({ socketPath, device, memory, logger, ...options.server });
  await server.listen();
  cleanups.push(() => server.close());
  return {
    server,
    device,
    memory,
    lines,
    socketPath,
    dir,
    connect(flavour) {
      const client = VfioUserClient.connect(socketPath, { flavour });
      cleanups.push(() => client.close());
      return client;
    },
  };
}

async function connected(
  flavour: Flavour,
  options?: Parameters<typeof startServer>[0],
): Promise<Harness & { client: VfioUserClient }> {
  const harness = await startServer(options);
  const client = harness.connect(flavour);
  await client.version();
  return { ...harness, client };
}

/** A guest RAM stand-in: a memfd the client maps and passes with DMA_MAP. */
function guestRam(size: number): { fd: number; bytes: Uint8Array; dispose(): void } {
  const fd = native.memfdCreate('guest-ram', size);
  const bytes = new Uint8Array(native.mmap(fd, 0, size, RW));
  const ram = {
    fd,
    bytes,
    dispose: () => {
      if (native.isMapped(bytes.buffer as ArrayBuffer)) native.munmap(bytes.buffer as ArrayBuffer);
      try {
        native.close(fd);
      } catch {
        // closed by the test
      }
    },
  };
  cleanups.push(ram.dispose);
  return ram;
}

async function expectErrno(promise: Promise<unknown>, errno: number): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the request should have failed').toBeInstanceOf(VfioUserReplyError);
  expect((error as VfioUserReplyError).errno).toBe(errno);
}

/** cloud-hypervisor does not look at ERROR; the test does, through the header it read. */
function expectChError(client: VfioUserClient, errno: number): void {
  expect(client.lastReply?.flags).toBe(HeaderFlag.TYPE_REPLY | HeaderFlag.ERROR);
  expect(client.lastReply?.error).toBe(errno);
}

/** The server is still serving this client and the stream is in sync. */
async function expectStillServing(harness: Harness, client: VfioUserClient): Promise<void> {
  harness.device.config.set([0x86, 0x80, 0x0a, 0x58], 0);
  expect([...(await client.regionRead(RegionIndex.CONFIG, 0, 4))]).toEqual([0x86, 0x80, 0x0a, 0x58]);
  expect(client.unreadBytes).toBe(0);
}

function warnings(lines: LogFields[], msg: string): LogFields[] {
  return lines.filter((line) => line['msg'] === msg);
}

// -----------------------------------------------------------------------------------------------------------------

describe('socket lifecycle', () => {
  it('creates the parent directory and a 0600 socket, and removes the socket on close', async () => {
    const dir = temporaryDir('vfu-');
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, 'deep', 'er', 'nvme.sock');
    const device = new TestDevice();
    cleanups.push(() => device.dispose());
    const server = new VfioUserServer({ socketPath, device, memory: new GuestMemory(), logger: memoryLogger().logger });
    await server.listen();
    const stat = fs.lstatSync(socketPath);
    expect(stat.isSocket()).toBe(true);
    expect(stat.mode & 0o777).toBe(0o600);
    await server.close();
    expect(fs.existsSync(socketPath)).toBe(false);
  });

  it('honours socketMode', async () => {
    const harness = await startServer({ server: { socketMode: 0o660 } });
    expect(fs.lstatSync(harness.socketPath).mode & 0o777).toBe(0o660);
  });

  it('replaces a stale socket but refuses a regular file and a live socket', async () => {
    const dir = temporaryDir('vfu-');
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const device = new TestDevice();
    cleanups.push(() => device.dispose());
    const make = (socketPath: string) =>
      new VfioUserServer({ socketPath, device, memory: new GuestMemory(), logger: memoryLogger().logger });

    const regular = path.join(dir, 'file.sock');
    fs.writeFileSync(regular, 'precious');
    await expect(make(regular).listen()).rejects.toThrow(/not a socket/);
    expect(fs.readFileSync(regular, 'utf8')).toBe('precious');

    // A stale socket: bound, then its listener closed.
    const stale = path.join(dir, 'stale.sock');
    native.close(native.listenUnix(stale, 0o600, 1));
    expect(fs.lstatSync(stale).isSocket()).toBe(true);
    const server = make(stale);
    await server.listen();
    cleanups.push(() => server.close());
    const client = VfioUserClient.connect(stale, { flavour: 'qemu' });
    cleanups.push(() => client.close());
    await client.version();

    // A live socket belongs to someone else.
    const live = path.join(dir, 'live.sock');
    const liveFd = native.listenUnix(live, 0o600, 1);
    cleanups.push(() => native.close(liveFd));
    await expect(make(live).listen()).rejects.toThrow(/in use/);
    expect(fs.lstatSync(live).isSocket()).toBe(true);
  });
});

describe.each(FLAVOURS)('start-up as %s', (flavour) => {
  it('negotiates the version each client accepts', async () => {
    const harness = await startServer();
    const client = harness.connect(flavour);
    const version = await client.version();
    expect(version.major).toBe(0);
    expect(version.minor).toBe(flavour === 'qemu' ? 0 : 1);
    expect(version.capabilities).toEqual({
      maxMsgFds: 16,
      maxDataXferSize: 1024 * 1024,
      maxDmaMaps: 1024,
      pgsizes: 4096,
      writeMultiple: false,
    });
    const negotiated = warnings(harness.lines, 'protocol negotiated')[0];
    expect(negotiated?.['version']).toBe(flavour === 'qemu' ? '0.0' : '0.1');
  });

  it('describes the device, its regions (with sparse mmap and fd) and interrupts', async () => {
    const harness = await startServer();
    const client = harness.connect(flavour);
    const { device, regions } = await client.initialize();
    expect(device).toMatchObject({ flags: DeviceFlag.PCI | DeviceFlag.RESET, numRegions: 9, numIrqs: 5 });
    const bar0 = regions[0]!;
    expect(bar0.info.size).toBe(2 * PAGE);
    expect(bar0.info.flags & (RegionFlag.READ | RegionFlag.WRITE | RegionFlag.MMAP | RegionFlag.CAPS)).toBe(0xf);
    expect(bar0.areas).toEqual([{ offset: PAGE, size: PAGE }]);
    expect(bar0.fd).toBeTypeOf('number');
    expect(regions[7]!.info).toMatchObject({ size: 256, flags: RegionFlag.READ | RegionFlag.WRITE, capOffset: 0 });
    expect(regions[7]!.fd).toBeUndefined();
    expect(regions[1]!.info.size).toBe(0);
    expect(regions[6]!.info.flags).toBe(RegionFlag.READ);

    // The client maps the sparse area and sees what the device writes there, and the other way round.
    const mapped = new Uint8Array(native.mmap(bar0.fd!, bar0.info.offset + bar0.areas![0]!.offset, PAGE, RW));
    harness.device.bar0Shared.set([1, 2, 3, 4], 8);
    expect([...mapped.subarray(8, 12)]).toEqual([1, 2, 3, 4]);
    mapped[100] = 0x5a;
    expect(harness.device.bar0Shared[100]).toBe(0x5a);
    // ... and trapped reads of the same page go through the same memory.
    expect([...(await client.regionRead(0, PAGE + 8, 4))]).toEqual([1, 2, 3, 4]);
    native.munmap(mapped.buffer as ArrayBuffer);
    for (const region of regions) if (region.fd !== undefined) native.close(region.fd);

    const msix = await client.getIrqInfo(2);
    expect(msix).toMatchObject({ index: 2, count: MSIX_VECTORS, flags: IrqFlag.EVENTFD | IrqFlag.NORESIZE });
    await expectStillServing(harness, client);
  });

  it(`sends DEVICE_RESET the way ${flavour} does`, async () => {
    for (const resettable of [true, false]) {
      const harness = await startServer({ device: new TestDevice({ resettable }) });
      const client = harness.connect(flavour);
      const { regions, resetSent } = await client.initialize();
      for (const region of regions) if (region.fd !== undefined) native.close(region.fd);
      // QEMU resets resettable devices; cloud-hypervisor's check is inverted.
      expect(resetSent).toBe(flavour === 'qemu' ? resettable : !resettable);
      expect(harness.device.resets).toBe(resetSent ? 1 : 0);
      client.close();
      await harness.server.close();
    }
  });
});

describe('region info argsz', () => {
  it('without room for capabilities: the needed argsz, no CAPS flag, no cap_offset; with room: the capability', async () => {
    const { client } = await connected('qemu');
    const small = await client.getRegionInfo(0, { argsz: BodySize.REGION_INFO });
    expect(small.info.argsz).toBe(BodySize.REGION_INFO + 32);
    expect(small.info.flags & RegionFlag.CAPS).toBe(0);
    expect(small.info.flags & RegionFlag.MMAP).toBe(RegionFlag.MMAP);
    expect(small.info.capOffset).toBe(0);
    expect(small.areas).toBeUndefined();
    native.close(small.fd!);
    const large = await client.getRegionInfo(0, { argsz: 1024 });
    expect(large.info.argsz).toBe(BodySize.REGION_INFO + 32);
    expect(large.info.capOffset).toBe(BodySize.REGION_INFO);
    expect(large.areas).toEqual([{ offset: PAGE, size: PAGE }]);
    native.close(large.fd!);
  });

  it('rejects an argsz smaller than the structure and an unknown index', async () => {
    const { client } = await connected('qemu');
    await expectErrno(client.getRegionInfo(0, { argsz: 16 }), Errno.EINVAL);
    await expectErrno(client.getRegionInfo(9), Errno.EINVAL);
    await expectErrno(client.getIrqInfo(5), Errno.EINVAL);
  });
});

describe.each(FLAVOURS)('DMA as %s', (flavour) => {
  it('maps a memfd: the server sees what the client wrote and the client sees what the server wrote', async () => {
    const harness = await connected(flavour);
    const ram = guestRam(4 * PAGE);
    ram.bytes.set([0xde, 0xad, 0xbe, 0xef], PAGE + 16);
    await harness.client.dmaMap({ iova: 0x10_0000, size: 2 * PAGE, fd: ram.fd, offset: PAGE });
    expect([...harness.memory.view(0x10_0000 + 16, 4, 'read')]).toEqual([0xde, 0xad, 0xbe, 0xef]);
    harness.memory.view(0x10_0000 + PAGE, 2, 'write').set([7, 9]);
    expect([...ram.bytes.subarray(2 * PAGE, 2 * PAGE + 2)]).toEqual([7, 9]);
    // Read-only mappings refuse device writes.
    await harness.client.dmaMap({ iova: 0x20_0000, size: PAGE, fd: ram.fd, offset: 0, flags: 1 });
    expect(() => harness.memory.view(0x20_0000, 4, 'write')).toThrow(/permission/);
    const unmapped = await harness.client.dmaUnmap({ iova: 0x10_0000, size: 2 * PAGE });
    expect(unmapped).toEqual({ argsz: 24, flags: 0, address: 0x10_0000, size: 2 * PAGE });
    expect(harness.memory.regions.map((m) => m.iova)).toEqual([0x20_0000]);
    await harness.client.dmaUnmap({ iova: 0, size: 0, flags: DmaUnmapFlag.ALL });
    expect(harness.memory.regions).toEqual([]);
    await expectStillServing(harness, harness.client);
  });

  it('records a DMA_MAP without fd (QEMU\'s ROM) as memory it cannot reach, logging the operator hint once', async () => {
    const harness = await connected(flavour);
    for (const iova of [0xfffc_0000, 0xc_0000]) {
      await harness.client.dmaMap({ iova, size: PAGE });
      if (flavour === 'cloud-hypervisor') expect(harness.client.lastReply?.flags).toBe(HeaderFlag.TYPE_REPLY); // no ERROR
    }
    const hints = warnings(
      harness.lines,
      'DMA_MAP without a file descriptor: this memory is not shared with vfiod and cannot be used for DMA',
    );
    expect(hints).toHaveLength(1);
    expect(hints[0]!['level']).toBe('warn');
    expect(String(hints[0]!['hint'])).toContain(
      '-object memory-backend-memfd,id=mem0,size=<RAM size>,share=on -machine memory-backend=mem0',
    );
    expect(String(hints[0]!['hint'])).toContain('--memory size=<RAM size>,shared=on');
    expect(harness.memory.regions.map((region) => region.iova)).toEqual([0xc_0000, 0xfffc_0000]);
    // A device access there fails with a reason that names the map; an overlapping map with an fd is refused.
    expect(() => harness.memory.view(0xc_0000 + 16, 4, 'read')).toThrow(
      /cannot reach: DMA_MAP iova 0xc0000 size 0x1000 came without a file descriptor/,
    );
    const ram = guestRam(PAGE);
    if (flavour === 'qemu') {
      await expectErrno(harness.client.dmaMap({ iova: 0xc_0000, size: PAGE, fd: ram.fd }), Errno.EEXIST);
    }
    ram.dispose();
    // QEMU later unmaps what it mapped.
    await harness.client.dmaUnmap({ iova: 0xfffc_0000, size: PAGE });
    expect(harness.memory.regions.map((region) => region.iova)).toEqual([0xc_0000]);
    await expectStillServing(harness, harness.client);
  });

  it('rejects overlapping, unaligned, empty, permission-less, past-EOF and too many maps', async () => {
    const harness = await connected(flavour, { server: { maxDmaMaps: 2 } });
    const { client } = harness;
    const ram = guestRam(8 * PAGE);
    const attempt = async (map: Parameters<VfioUserClient['dmaMap']>[0], errno: number) => {
      const before = openFdCount();
      if (flavour === 'qemu') await expectErrno(client.dmaMap(map), errno);
      else {
        await client.dmaMap(map);
        expectChError(client, errno);
      }
      expect(openFdCount(), 'the fd sent with a rejected map is closed').toBe(before);
      await expectStillServing(harness, client);
    };
    await client.dmaMap({ iova: 0x4000, size: 2 * PAGE, fd: ram.fd });
    await attempt({ iova: 0x5000, size: PAGE, fd: ram.fd }, Errno.EEXIST);
    await attempt({ iova: 0x2000, size: 4 * PAGE, fd: ram.fd }, Errno.EEXIST);
    await attempt({ iova: 0x10_0800, size: PAGE, fd: ram.fd }, Errno.EINVAL);
    await attempt({ iova: 0x10_0000, size: PAGE + 1, fd: ram.fd }, Errno.EINVAL);
    await attempt({ iova: 0x10_0000, size: PAGE, fd: ram.fd, offset: 512 }, Errno.EINVAL);
    await attempt({ iova: 0x10_0000, size: 0, fd: ram.fd }, Errno.EINVAL);
    await attempt({ iova: 0x10_0000, size: PAGE, fd: ram.fd, flags: 0 }, Errno.EINVAL);
    await attempt({ iova: 0x10_0000, size: PAGE, fd: ram.fd, flags: 4 | 1 }, Errno.EINVAL);
    await attempt({ iova: 0x10_0000, size: 16 * PAGE, fd: ram.fd }, Errno.EINVAL); // past the end of the memfd
    await attempt({ iova: 2 ** 60, size: PAGE, fd: ram.fd }, Errno.EINVAL);
    await client.dmaMap({ iova: 0x10_0000, size: PAGE, fd: ram.fd });
    await attempt({ iova: 0x20_0000, size: PAGE, fd: ram.fd }, Errno.ENOSPC);
    expect(harness.memory.regions.map((m) => [m.iova, m.size])).toEqual([
      [0x4000, 2 * PAGE],
      [0x10_0000, PAGE],
    ]);
  });

  it('rejects unmaps that are unaligned, split a mapping or ask for dirty bitmaps', async () => {
    const harness = await connected(flavour);
    const { client } = harness;
    const ram = guestRam(4 * PAGE);
    await client.dmaMap({ iova: 0x8000, size: 4 * PAGE, fd: ram.fd });
    const attempt = async (unmap: Parameters<VfioUserClient['dmaUnmap']>[0], errno: number) => {
      if (flavour === 'qemu') await expectErrno(client.dmaUnmap(unmap), errno);
      else {
        await client.dmaUnmap(unmap);
        expectChError(client, errno);
      }
      await expectStillServing(harness, client);
    };
    await attempt({ iova: 0x8000, size: PAGE }, Errno.EINVAL); // would split the mapping
    await attempt({ iova: 0x8100, size: 4 * PAGE }, Errno.EINVAL);
    await attempt({ iova: 0x8000, size: 0 }, Errno.EINVAL);
    await attempt({ iova: 0x8000, size: 4 * PAGE, flags: DmaUnmapFlag.GET_DIRTY_BITMAP }, Errno.ENOTSUP);
    await attempt({ iova: 0x8000, size: 4 * PAGE, flags: 8 }, Errno.EINVAL);
    expect(harness.memory.regions).toHaveLength(1);
  });

  it('accepts a DMA_UNMAP that carries the mapping\'s fd (as SPDK sends it), closes that fd and logs it at debug', async () => {
    const harness = await connected(flavour);
    const { client } = harness;
    const fd = native.memfdCreate('unmap-with-fd', 4 * PAGE);
    cleanups.push(() => native.close(fd));
    /** Open fds of this process (server and client share it) that refer to that memfd. */
    const memfdRefs = (): number =>
      fs.readdirSync('/proc/self/fd').filter((entry) => {
        try {
          return fs.readlinkSync(`/proc/self/fd/${entry}`).startsWith('/memfd:unmap-with-fd');
        } catch {
          return false; // the fd of readdir itself, closed by now
        }
      }).length;
    await client.dmaMap({ iova: 0x40_0000, size: 4 * PAGE, fd });
    const backing = harness.memory.windows[0]!.bytes.buffer as ArrayBuffer;
    // The mapping keeps its fd while it lives (a live upgrade hands it to the successor, docs/restart.md).
    expect(memfdRefs(), "the client's fd and the mapping's").toBe(2);
    setLogLevel('debug');
    let reply;
    try {
      reply = await client.dmaUnmap({ iova: 0x40_0000, size: 4 * PAGE, fds: [fd] });
    } finally {
      setLogLevel('info');
    }
    if (flavour === 'cloud-hypervisor') expect(client.lastReply?.flags).toBe(HeaderFlag.TYPE_REPLY); // no ERROR
    expect(reply).toEqual({ argsz: 24, flags: 0, address: 0x40_0000, size: 4 * PAGE });
    expect(harness.memory.regions).toEqual([]);
    expect(native.isMapped(backing)).toBe(false);
    expect(memfdRefs(), "the fd that came with the unmap and the mapping's are closed").toBe(1);
    const notes = warnings(harness.lines, 'DMA_UNMAP came with file descriptors; closed them');
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatchObject({ level: 'debug', fds: 1 });
    expect(harness.lines.filter((line) => line['level'] === 'warn' || line['level'] === 'error')).toEqual([]);
    await expectStillServing(harness, client);
  });
});

describe('DMA_UNMAP and in-flight I/O', () => {
  it('replies only after a pinned mapping is released, and holds back later requests meanwhile', async () => {
    const harness = await connected('qemu');
    const { client, memory } = harness;
    const ram = guestRam(2 * PAGE);
    await client.dmaMap({ iova: 0x10000, size: 2 * PAGE, fd: ram.fd });
    const mapping = memory.find(0x10000, 512, 'write');
    const backing = mapping.bytes.buffer as ArrayBuffer;
    memory.pin(mapping); // e.g. a file read landing in guest memory on a libuv thread

    let unmapped = false;
    const unmap = client.dmaUnmap({ iova: 0x10000, size: 2 * PAGE }).then((body) => {
      unmapped = true;
      return body;
    });
    await sleep(50);
    expect(unmapped).toBe(false);
    expect(memory.regions).toEqual([]); // retired at once: no new DMA can start
    expect(native.isMapped(backing)).toBe(true); // but still mapped for the pinned I/O
    mapping.bytes[0] = 0x42; // the in-flight I/O completes into guest memory
    // A request sent after the unmap is processed only after it.
    const reads = harness.device.log.length;
    const raw = encodeRegionAccess(0x7777, Command.REGION_READ, { offset: 0, region: RegionIndex.CONFIG, count: 4 });
    await client.sendRaw(raw);
    await sleep(30);
    expect(harness.device.log.length).toBe(reads);

    memory.unpin(mapping);
    expect((await unmap).size).toBe(2 * PAGE);
    expect(unmapped).toBe(true);
    expect(native.isMapped(backing)).toBe(false);
    expect(ram.bytes[0]).toBe(0x42);
    const reply = await client.readReply();
    expect(reply.header).toMatchObject({ msgId: 0x7777, command: Command.REGION_READ, flags: HeaderFlag.TYPE_REPLY });
    await expectStillServing(harness, client);
  });
});

describe.each(FLAVOURS)('region access as %s', (flavour) => {
  it('reads and writes BARs and config space, up to max_data_xfer_size', async () => {
    const harness = await connected(flavour);
    const { client, device } = harness;
    await client.regionWrite(0, 0x14, new Uint8Array([0x46, 0x00, 0x46, 0x00]));
    expect([...device.bar0Trapped.subarray(0x14, 0x18)]).toEqual([0x46, 0, 0x46, 0]);
    expect([...(await client.regionRead(0, 0x14, 4))]).toEqual([0x46, 0, 0x46, 0]);
    await client.regionWrite(RegionIndex.CONFIG, 4, new Uint8Array([6, 0]));
    expect([...device.config.subarray(4, 6)]).toEqual([6, 0]);

    const big = new Uint8Array(1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    await client.regionWrite(RegionIndex.BAR2, 4096, big);
    // Buffer.compare: vitest's deep equality takes seconds on a MiB of bytes.
    expect(Buffer.compare(device.bar2.subarray(4096, 4096 + big.length), big)).toBe(0);
    expect(Buffer.compare(await client.regionRead(RegionIndex.BAR2, 4096, big.length), big)).toBe(0);
    await expectStillServing(harness, client);
  });

  it('rejects out-of-range, misaligned, oversized and forbidden accesses and keeps serving', async () => {
    const harness = await connected(flavour);
    const { client } = harness;
    const reads: Array<[number, number, number, number]> = [
      [RegionIndex.CONFIG, 254, 4, Errno.EINVAL], // crosses the end
      [RegionIndex.CONFIG, 1, 2, Errno.EINVAL], // misaligned: refused by the device
      [RegionIndex.CONFIG, 0, 3, Errno.EINVAL], // odd width: refused by the device
      [RegionIndex.BAR1, 0, 4, Errno.EINVAL], // absent region
      [42, 0, 4, Errno.EINVAL], // no such region
      [RegionIndex.BAR2, 0, 1024 * 1024 + 1, Errno.EINVAL], // above max_data_xfer_size
      [RegionIndex.BAR0, PAGE - 2, 4, Errno.EINVAL], // crosses the device's page boundary
    ];
    for (const [region, offset, count, errno] of reads) {
      if (flavour === 'qemu') await expectErrno(client.regionRead(region, offset, count), errno);
      else if (count <= 1024 * 1024) {
        // cloud-hypervisor reads the structure and then `count` bytes, whatever the header says.
        await client.regionRead(region, offset, count);
        expectChError(client, errno);
      }
      await expectStillServing(harness, client);
    }
    const writes: Array<[number, number, number, number]> = [
      [RegionIndex.ROM, 0, 4, Errno.EINVAL], // read-only region
      [RegionIndex.CONFIG, 3, 2, Errno.EINVAL],
      [RegionIndex.BAR0, 2 * PAGE, 4, Errno.EINVAL],
    ];
    for (const [region, offset, count, errno] of writes) {
      if (flavour === 'qemu') await expectErrno(client.regionWrite(region, offset, new Uint8Array(count)), errno);
      else {
        await client.regionWrite(region, offset, new Uint8Array(count));
        expectChError(client, errno);
      }
      await expectStillServing(harness, client);
    }
  });
});

describe('posted writes (QEMU, nothing mmap-able seen)', () => {
  it('sends no reply, applies writes in order before later reads, and logs failures', async () => {
    const harness = await connected('qemu');
    const { client, device } = harness;
    for (let i = 0; i < 20; i++)
      await client.regionWrite(0, 0x1000 - 4, new Uint8Array([i, 0, 0, 0]), { posted: true });
    expect([...(await client.regionRead(0, 0x1000 - 4, 4))]).toEqual([19, 0, 0, 0]);
    expect(client.unreadBytes).toBe(0);
    // A failing posted write: no reply (QEMU's reader would choke on an unexpected id), but a log line.
    await client.regionWrite(RegionIndex.CONFIG, 1, new Uint8Array(2), { posted: true });
    expect([...(await client.regionRead(0, 0x1000 - 4, 1))]).toEqual([19]);
    const failed = warnings(harness.lines, 'request failed').filter((line) => line['posted'] === true);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ command: 'REGION_WRITE', errno: 'EINVAL' });
    expect(harness.server.stats.postedErrors).toBe(1);
    expect(device.bar0Trapped[0xffc]).toBe(19);
  });

  it('handles a burst of messages from one read as one batch (one afterBatch call)', async () => {
    const harness = await connected('qemu');
    const { client, device } = harness;
    const messages: Uint8Array[] = [];
    for (let i = 0; i < 50; i++) {
      messages.push(
        encodeRegionAccess(
          100 + i,
          Command.REGION_WRITE,
          { offset: i * 4, region: 0, count: 4 },
          new Uint8Array([i, i, i, i]),
          HeaderFlag.NO_REPLY,
        ),
      );
    }
    const burst = new Uint8Array(messages.reduce((n, m) => n + m.length, 0));
    let at = 0;
    for (const message of messages) {
      burst.set(message, at);
      at += message.length;
    }
    const before = device.afterBatches;
    await client.sendRaw(burst);
    expect([...(await client.regionRead(0, 49 * 4, 4))]).toEqual([49, 49, 49, 49]);
    for (let i = 0; i < 50; i++) expect(device.bar0Trapped[i * 4]).toBe(i);
    const batches = device.afterBatches - before;
    expect(batches).toBeGreaterThanOrEqual(1);
    expect(batches).toBeLessThanOrEqual(2); // the burst, and the read
  });
});

describe.each(FLAVOURS)('interrupts as %s', (flavour) => {
  it('binds every MSI-X vector to the eventfd the client sent, batched like the hypervisor does', async () => {
    const harness = await connected(flavour);
    const { client, device } = harness;
    const clientFds = Array.from({ length: MSIX_VECTORS }, () => native.eventfdCreate(0, true));
    cleanups.push(() => clientFds.forEach((fd) => native.close(fd)));
    const messages = await client.enableIrqs(2, clientFds);
    expect(messages).toBe(Math.ceil(MSIX_VECTORS / 16));
    const vectors = device.eventfds.get(2)!;
    expect(vectors.size).toBe(MSIX_VECTORS);
    // The device's fd for vector 17 is a duplicate of the client's: signalling one is seen on the other.
    native.eventfdWrite(vectors.get(17)!, 3);
    expect(native.eventfdRead(clientFds[17]!)).toBe(3);
    expect(native.eventfdRead(clientFds[16]!)).toBeNull();

    // DATA_BOOL trigger, then disable all.
    await client.setIrqs({
      index: 2,
      flags: IrqSetFlag.DATA_BOOL | IrqSetFlag.ACTION_TRIGGER,
      start: 4,
      count: 3,
      bools: new Uint8Array([1, 0, 1]),
    });
    expect([
      native.eventfdRead(clientFds[4]!),
      native.eventfdRead(clientFds[5]!),
      native.eventfdRead(clientFds[6]!),
    ]).toEqual([1, null, 1]);
    const before = openFdCount();
    await client.setIrqs({ index: 2, flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 0 });
    expect(device.eventfds.get(2)!.size).toBe(0);
    expect(openFdCount()).toBe(before - MSIX_VECTORS);
    await expectStillServing(harness, client);
  });

  it('de-assigns vectors with DATA_EVENTFD and no fds', async () => {
    const harness = await connected(flavour);
    const fds = [native.eventfdCreate(0, true), native.eventfdCreate(0, true)];
    cleanups.push(() => fds.forEach((fd) => native.close(fd)));
    await harness.client.enableIrqs(2, fds);
    await harness.client.setIrqs({
      index: 2,
      flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER,
      start: 1,
      count: 1,
    });
    expect([...harness.device.eventfds.get(2)!.keys()]).toEqual([0]);
  });

  it('rejects malformed SET_IRQS and closes the fds that came with them', async () => {
    const harness = await connected(flavour);
    const { client } = harness;
    const fds = Array.from({ length: 17 }, () => native.eventfdCreate(0, true));
    cleanups.push(() => fds.forEach((fd) => native.close(fd)));
    const trigger = IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER;
    const cases: Array<[Parameters<VfioUserClient['setIrqs']>[0], number]> = [
      [{ index: 2, flags: trigger, start: 0, count: 2, fds: fds.slice(0, 3) }, Errno.EINVAL], // fd count mismatch
      [{ index: 2, flags: trigger, start: 0, count: 17, fds: fds.slice(0, 17) }, Errno.EINVAL], // too many fds
      [{ index: 2, flags: trigger, start: MSIX_VECTORS - 1, count: 2, fds: fds.slice(0, 2) }, Errno.EINVAL], // beyond the vectors
      [{ index: 5, flags: trigger, start: 0, count: 1, fds: fds.slice(0, 1) }, Errno.EINVAL], // no such irq type
      [
        {
          index: 2,
          flags: IrqSetFlag.DATA_NONE | IrqSetFlag.DATA_BOOL | IrqSetFlag.ACTION_TRIGGER,
          start: 0,
          count: 1,
        },
        Errno.EINVAL,
      ],
      [
        {
          index: 2,
          flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_MASK | IrqSetFlag.ACTION_UNMASK,
          start: 0,
          count: 1,
        },
        Errno.EINVAL,
      ],
      [{ index: 2, flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER | 0x100, start: 0, count: 1 }, Errno.EINVAL],
      [
        { index: 2, flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1, fds: fds.slice(0, 1) },
        Errno.EINVAL,
      ], // fds with DATA_NONE
      [
        {
          index: 2,
          flags: IrqSetFlag.DATA_BOOL | IrqSetFlag.ACTION_TRIGGER,
          start: 0,
          count: 4,
          bools: new Uint8Array(2),
        },
        Errno.EINVAL,
      ], // short payload
      [{ index: 2, flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_MASK, start: 0, count: 0 }, Errno.EINVAL], // count 0 mask
      [{ index: 1, flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 0 }, Errno.EINVAL], // MSI has no vectors
    ];
    for (const [request, errno] of cases) {
      const before = openFdCount();
      if (flavour === 'qemu') await expectErrno(client.setIrqs(request), errno);
      else {
        await client.setIrqs(request);
        expectChError(client, errno);
      }
      expect(openFdCount(), JSON.stringify({ ...request, bools: undefined })).toBe(before);
      await expectStillServing(harness, client);
    }
    expect(harness.device.setIrqsCalls).toHaveLength(0);
  });
});

/** The test device with its interrupts handled by a real PciFunction (the way the NVMe device wires them). */
class PciIrqDevice extends TestDevice {
  readonly pci = new PciFunction({
    vendorId: 0x1b36,
    deviceId: 0x0010,
    subsystemVendorId: 0x1af4,
    subsystemId: 0x1100,
    revisionId: 0,
    classCode: 0x010802,
    bars: [],
    msix: { vectors: MSIX_VECTORS, bar: 4 },
    logger: memoryLogger().logger,
  });
  /**
   * Opened right after each refusal by the function, before the server cleans up: an fd the function closed has
   * the lowest free number, so the sentinel gets it, and a second close by the server would close the sentinel.
   */
  readonly sentinels: number[] = [];

  override setIrqs(request: SetIrqsRequest): void {
    this.setIrqsCalls.push({ ...request, fds: [...request.fds] });
    try {
      this.pci.setIrqs(request.index, request.flags, request.start, request.count, request.fds, request.bools);
    } catch (error) {
      this.sentinels.push(native.memfdCreate('sentinel', PAGE));
      if (error instanceof PciAccessError) throw new VfioUserError(error.errno, error.message);
      throw error;
    }
  }

  override async disconnected(): Promise<void> {
    this.disconnects++;
    this.pci.releaseInterrupts();
  }

  override dispose(): void {
    this.sentinels.forEach((fd) => native.close(fd));
    this.pci.releaseInterrupts();
    super.dispose();
  }
}

describe('interrupt fds refused below the server', () => {
  it('refuses MASK|EVENTFD everywhere and UNMASK|EVENTFD on an interrupt that is not automasked, before the device', async () => {
    const harness = await connected('qemu');
    const { client, device } = harness;
    const fd = native.eventfdCreate(0, true);
    cleanups.push(() => native.close(fd));
    const before = openFdCount();
    for (const [index, action] of [
      [0, IrqSetFlag.ACTION_MASK],
      [2, IrqSetFlag.ACTION_MASK],
      [2, IrqSetFlag.ACTION_UNMASK],
    ] as const) {
      await expectErrno(client.setIrqs({ index, flags: IrqSetFlag.DATA_EVENTFD | action, start: 0, count: 1, fds: [fd] }), Errno.EINVAL);
    }
    expect(device.setIrqsCalls).toHaveLength(0);
    expect(openFdCount()).toBe(before);
    expect(warnings(harness.lines, 'request failed').map((line) => line['reason'])).toEqual([
      expect.stringContaining('masking through an eventfd is not supported'),
      expect.stringContaining('masking through an eventfd is not supported'),
      expect.stringContaining('only defined for an automasked, level-triggered interrupt (INTx)'),
    ]);
    // The INTx resample eventfd (UNMASK|EVENTFD on the AUTOMASKED index) is legal and reaches the device.
    await client.setIrqs({ index: 0, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_UNMASK, start: 0, count: 1, fds: [fd] });
    expect(device.setIrqsCalls).toHaveLength(1);
  });

  it('closes the fds of a request the PCI function refused exactly once (a sentinel opened in between survives)', async () => {
    const device = new PciIrqDevice();
    const harness = await connected('qemu', { device });
    const { client } = harness;
    const memfd = native.memfdCreate('not-an-eventfd', PAGE);
    const [eventfd, resample] = [native.eventfdCreate(0, true), native.eventfdCreate(0, true)];
    cleanups.push(() => [memfd, eventfd, resample].forEach((fd) => native.close(fd)));
    const before = openFdCount();
    const refused: Array<Parameters<VfioUserClient['setIrqs']>[0]> = [
      { index: 2, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1, fds: [memfd] },
      { index: 2, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER, start: 4, count: 2, fds: [eventfd, memfd] },
      { index: 0, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1, fds: [memfd] },
      { index: 0, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_UNMASK, start: 0, count: 1, fds: [memfd] },
    ];
    for (const request of refused) {
      await expectErrno(client.setIrqs(request), Errno.EINVAL);
    }
    expect(device.setIrqsCalls).toHaveLength(refused.length);
    expect(device.sentinels).toHaveLength(refused.length);
    for (const sentinel of device.sentinels) {
      expect(fs.readlinkSync(`/proc/self/fd/${sentinel}`), `sentinel fd ${sentinel}`).toMatch(/^\/memfd:sentinel/);
    }
    // Every received fd closed (once), only the sentinels added.
    expect(openFdCount()).toBe(before + refused.length);
    expect(warnings(harness.lines, 'request failed').map((line) => line['reason'])).toEqual(
      refused.map(() => expect.stringMatching(/fd \d+ is not an eventfd \(\/memfd:not-an-eventfd/)),
    );
    // The function still binds what it should.
    await client.setIrqs({ index: 0, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1, fds: [eventfd] });
    await client.setIrqs({ index: 0, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_UNMASK, start: 0, count: 1, fds: [resample] });
    expect(openFdCount()).toBe(before + refused.length + 2);
    await expectStillServing(harness, client);
  });
});

describe('hostile and broken input', () => {
  async function rawRequest(client: VfioUserClient, bytes: Uint8Array, fds: number[] = []) {
    await client.sendRaw(bytes, fds);
    return client.readReply();
  }

  /** A message whose msg_size field is `declared` while `body` bytes follow. */
  function withDeclaredSize(msgId: number, command: number, declared: number, body: number): Uint8Array {
    const { bytes, view } = newMessage(msgId, command, body);
    view.setUint32(4, declared, true);
    return bytes;
  }

  it('answers a message before VERSION with EINVAL, then negotiates normally', async () => {
    const harness = await startServer();
    const client = harness.connect('qemu');
    const reply = await rawRequest(
      client,
      encodeRegionAccess(1, Command.REGION_READ, { offset: 0, region: 7, count: 4 }),
    );
    expect(reply.header).toMatchObject({
      msgId: 1,
      flags: HeaderFlag.TYPE_REPLY | HeaderFlag.ERROR,
      error: Errno.EINVAL,
    });
    expect(reply.body.length).toBe(16 + 4); // the size of a REGION_READ reply
    await client.version();
    await expectStillServing(harness, client);
  });

  it('rejects a second VERSION, an unsupported major and malformed capabilities, and keeps the connection', async () => {
    const harness = await startServer();
    const client = harness.connect('qemu');
    const bad = await rawRequest(client, encodeVersion(1, 0, 0, 0, '{"capabilities":[1]}'));
    expect(bad.header.error).toBe(Errno.EINVAL);
    expect(bad.body.length).toBe(7); // major, minor, "{}\0"
    const major = await rawRequest(client, encodeVersion(2, 0, 1, 0, '{}'));
    expect(major.header.error).toBe(Errno.ENOTSUP);
    await client.version();
    const again = await rawRequest(client, encodeVersion(3, 0, 0, 0, '{}'));
    expect(again.header).toMatchObject({
      msgId: 3,
      flags: HeaderFlag.TYPE_REPLY | HeaderFlag.ERROR,
      error: Errno.EINVAL,
    });
    await expectStillServing(harness, client);
    expect(warnings(harness.lines, 'protocol negotiated')).toHaveLength(1);
  });

  it('answers unknown and unsupported commands, replies and wrong argsz with errors', async () => {
    const harness = await connected('qemu');
    const { client } = harness;
    const unknown = await rawRequest(client, newMessage(10, 99, 0).bytes);
    expect(unknown.header).toMatchObject({ msgId: 10, command: 99, error: Errno.ENOSYS });
    for (const command of [
      Command.DEVICE_FEATURE,
      Command.DEVICE_GET_REGION_IO_FDS,
      Command.REGION_WRITE_MULTI,
      Command.DMA_READ,
    ]) {
      expect((await rawRequest(client, newMessage(11, command, 16).bytes)).header.error).toBe(Errno.ENOTSUP);
    }
    const reply = await rawRequest(client, newMessage(12, Command.DEVICE_GET_INFO, 16, HeaderFlag.TYPE_REPLY).bytes);
    expect(reply.header.error).toBe(Errno.EINVAL);
    const smallArgsz = newMessage(13, Command.DEVICE_GET_INFO, 16);
    smallArgsz.view.setUint32(HEADER_SIZE, 8, true);
    const argszReply = await rawRequest(client, smallArgsz.bytes);
    expect(argszReply.header.error).toBe(Errno.EINVAL);
    expect(argszReply.body.length).toBe(16);
    const short = await rawRequest(client, newMessage(14, Command.DEVICE_GET_IRQ_INFO, 8).bytes);
    expect(short.header.error).toBe(Errno.EINVAL);
    await expectStillServing(harness, client);
  });

  it('closes fds sent where none belong, and too many fds', async () => {
    const harness = await connected('qemu');
    const { client } = harness;
    const fds = Array.from({ length: 17 }, () => native.eventfdCreate(0, true));
    cleanups.push(() => fds.forEach((fd) => native.close(fd)));
    let before = openFdCount();
    const read = await rawRequest(
      client,
      encodeRegionAccess(20, Command.REGION_READ, { offset: 0, region: 7, count: 4 }),
      fds.slice(0, 2),
    );
    expect(read.header.error).toBe(Errno.EINVAL);
    expect(openFdCount()).toBe(before);
    before = openFdCount();
    const reset = await rawRequest(client, newMessage(21, Command.DEVICE_RESET, 0).bytes, fds);
    expect(reset.header.error).toBe(Errno.EINVAL);
    expect(openFdCount()).toBe(before);
    expect(harness.device.resets).toBe(0);
    await expectStillServing(harness, client);
  });

  it('reassembles messages split across reads and handles many messages per read', async () => {
    const harness = await connected('qemu');
    const { client } = harness;
    harness.device.config.set([1, 2, 3, 4, 5, 6, 7, 8], 0);
    const first = encodeRegionAccess(30, Command.REGION_READ, { offset: 0, region: 7, count: 4 });
    const second = encodeRegionAccess(31, Command.REGION_READ, { offset: 4, region: 7, count: 4 });
    await client.sendRaw(first.subarray(0, 5));
    await sleep(20);
    await client.sendRaw(first.subarray(5, 20));
    await sleep(20);
    const both = new Uint8Array(first.length - 20 + second.length);
    both.set(first.subarray(20));
    both.set(second, first.length - 20);
    await client.sendRaw(both);
    const a = await client.readReply();
    const b = await client.readReply();
    expect([a.header.msgId, ...a.body.subarray(16)]).toEqual([30, 1, 2, 3, 4]);
    expect([b.header.msgId, ...b.body.subarray(16)]).toEqual([31, 5, 6, 7, 8]);
  });

  it('attributes fds to the message they were sent with when several messages arrive in one read', async () => {
    const harness = await connected('qemu');
    const { client, device } = harness;
    const ram = guestRam(PAGE);
    const eventfds = [native.eventfdCreate(0, true), native.eventfdCreate(0, true)];
    cleanups.push(() => eventfds.forEach((fd) => native.close(fd)));
    // Queue everything before the server (same event loop) gets to read: one recvmsg sees the fd-less posted
    // write together with the start of the SET_IRQS that carries fds.
    const write = encodeRegionAccess(
      70,
      Command.REGION_WRITE,
      { offset: 8, region: 0, count: 4 },
      new Uint8Array([1, 2, 3, 4]),
      HeaderFlag.NO_REPLY,
    );
    const setIrqs = encodeIrqSet(71, {
      flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER,
      index: 2,
      start: 0,
      count: 2,
    });
    const map = encodeDmaMap(72, { flags: 3, offset: 0, address: 0x40000, size: PAGE });
    const read = encodeRegionAccess(73, Command.REGION_READ, { offset: 8, region: 0, count: 4 });
    expect(native.sendmsg(client.fd, write, [])).toBe(write.length);
    expect(native.sendmsg(client.fd, setIrqs, eventfds)).toBe(setIrqs.length);
    expect(native.sendmsg(client.fd, map, [ram.fd])).toBe(map.length);
    expect(native.sendmsg(client.fd, read, [])).toBe(read.length);
    expect((await client.readReply()).header).toMatchObject({ msgId: 71, flags: HeaderFlag.TYPE_REPLY });
    expect((await client.readReply()).header).toMatchObject({ msgId: 72, flags: HeaderFlag.TYPE_REPLY });
    const reply = await client.readReply();
    expect([reply.header.msgId, ...reply.body.subarray(16)]).toEqual([73, 1, 2, 3, 4]);
    expect(device.eventfds.get(2)!.size).toBe(2);
    expect(harness.memory.regions).toHaveLength(1);
    expect(harness.server.stats.errors).toBe(0);
  });

  it('skips an oversized message with EINVAL and keeps serving', async () => {
    const harness = await connected('qemu');
    const { client } = harness;
    const declared = HEADER_SIZE + 16 + 2 * 1024 * 1024;
    const message = withDeclaredSize(40, Command.REGION_WRITE, declared, declared - HEADER_SIZE);
    const reply = await rawRequest(client, message);
    expect(reply.header).toMatchObject({ msgId: 40, error: Errno.EINVAL });
    expect(reply.body.length).toBe(16); // REGION_WRITE reply size
    await expectStillServing(harness, client);
    expect(harness.server.stats.errorsByErrno['EINVAL']).toBe(1);
  });

  it('drops a client whose msg_size is absurd or smaller than a header; the next client works', async () => {
    for (const declared of [0xffff_fff0, 8, 0]) {
      const harness = await startServer();
      const client = harness.connect('qemu');
      await client.version();
      const disconnected = once(harness.server, 'disconnect');
      await client.sendRaw(withDeclaredSize(50, Command.REGION_READ, declared, 16));
      expect(await client.waitForClose()).toBe(true);
      await disconnected;
      const error = harness.lines.find((line) => line['msg'] === 'protocol error: dropping the client');
      expect(String(error?.['reason'])).toContain(`declares msg_size ${declared}`);
      expect(harness.server.stats.protocolDisconnects).toBe(1);
      const next = harness.connect('cloud-hypervisor');
      await next.version();
      await expectStillServing(harness, next);
      next.close();
      client.close();
      await harness.server.close();
    }
  });

  it('survives a client that disconnects in the middle of a message', async () => {
    const harness = await startServer();
    const client = harness.connect('qemu');
    await client.version();
    const disconnected = once(harness.server, 'disconnect');
    const message = encodeRegionAccess(
      60,
      Command.REGION_WRITE,
      { offset: 0, region: 0, count: 64 },
      new Uint8Array(64),
    );
    await client.sendRaw(message.subarray(0, 40));
    client.close();
    const [, reason] = (await disconnected) as [number, string];
    expect(reason).toContain('in the middle of a message');
    const next = harness.connect('qemu');
    await next.version();
    await expectStillServing(harness, next);
  });

  it('counts the 16-fd limit per message: 32 fds over two sendmsgs get EINVAL, every fd closed', async () => {
    const harness = await connected('qemu');
    const { client } = harness;
    const fds = Array.from({ length: 32 }, () => native.eventfdCreate(0, true));
    cleanups.push(() => fds.forEach((fd) => native.close(fd)));
    const before = openFdCount();
    const setIrqs = encodeIrqSet(80, {
      index: 2,
      flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER,
      start: 0,
      count: 32,
    });
    expect(native.sendmsg(client.fd, setIrqs.subarray(0, 10), fds.slice(0, 16))).toBe(10);
    expect(native.sendmsg(client.fd, setIrqs.subarray(10), fds.slice(16))).toBe(setIrqs.length - 10);
    const reply = await client.readReply();
    expect(reply.header).toMatchObject({ msgId: 80, flags: HeaderFlag.TYPE_REPLY | HeaderFlag.ERROR, error: Errno.EINVAL });
    expect(openFdCount()).toBe(before);
    expect(harness.device.setIrqsCalls).toHaveLength(0);
    expect(warnings(harness.lines, 'request failed').at(-1)?.['reason']).toBe('more than 16 file descriptors in one message');
    await expectStillServing(harness, client);
  });

  it('closes fds beyond the limit as they arrive: a message trickling in with fds never holds more than 16', async () => {
    const harness = await connected('qemu');
    const { client } = harness;
    const fd = native.eventfdCreate(0, true);
    cleanups.push(() => native.close(fd));
    const before = openFdCount();
    const write = encodeRegionAccess(81, Command.REGION_WRITE, { offset: 0, region: 2, count: 64 }, new Uint8Array(64));
    await client.sendRaw(write.subarray(0, HEADER_SIZE));
    let held = 0;
    for (let index = 0; index < 40; index++) {
      const at = HEADER_SIZE + index;
      expect(native.sendmsg(client.fd, write.subarray(at, at + 1), new Array(16).fill(fd))).toBe(1);
      if (index % 8 === 7) {
        await sleep(5);
        held = Math.max(held, openFdCount() - before);
      }
    }
    await sleep(20);
    held = Math.max(held, openFdCount() - before);
    expect(held).toBeLessThanOrEqual(16);
    await client.sendRaw(write.subarray(HEADER_SIZE + 40));
    const reply = await client.readReply();
    expect(reply.header).toMatchObject({ msgId: 81, error: Errno.EINVAL });
    expect(openFdCount()).toBe(before);
    expect(harness.device.log).not.toContain('write 2@0');
    await expectStillServing(harness, client);
  });

  it('gives each of two messages its own 16 fds, also when the second starts in the recvmsg that ends the first', async () => {
    const harness = await connected('qemu');
    const { client, device } = harness;
    const fds = Array.from({ length: 32 }, () => native.eventfdCreate(0, true));
    cleanups.push(() => fds.forEach((fd) => native.close(fd)));
    const trigger = IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER;
    const first = encodeIrqSet(82, { index: 2, flags: trigger, start: 0, count: 16 });
    const second = encodeIrqSet(83, { index: 2, flags: trigger, start: 16, count: 16 });
    // Queued before the server reads: its first recvmsg stops after the 16 fds of the first part, the next one
    // may take the rest of the first message and the second message with its fds.
    expect(native.sendmsg(client.fd, first.subarray(0, 10), fds.slice(0, 16))).toBe(10);
    expect(native.sendmsg(client.fd, first.subarray(10), [])).toBe(first.length - 10);
    expect(native.sendmsg(client.fd, second, fds.slice(16))).toBe(second.length);
    expect((await client.readReply()).header).toMatchObject({ msgId: 82, flags: HeaderFlag.TYPE_REPLY, error: 0 });
    expect((await client.readReply()).header).toMatchObject({ msgId: 83, flags: HeaderFlag.TYPE_REPLY, error: 0 });
    expect(device.eventfds.get(2)!.size).toBe(32);
    expect(harness.server.stats.errors).toBe(0);
  });

  it('keeps a cloud-hypervisor client in sync through error replies of every fixed-size command', async () => {
    const harness = await connected('cloud-hypervisor');
    const { client } = harness;
    const ram = guestRam(PAGE);
    await client.getIrqInfo(9);
    expectChError(client, Errno.EINVAL);
    await client.getRegionInfo(77);
    expectChError(client, Errno.EINVAL);
    await client.dmaMap({ iova: 0x1001, size: PAGE, fd: ram.fd });
    expectChError(client, Errno.EINVAL);
    await client.dmaUnmap({ iova: 0x1001, size: PAGE });
    expectChError(client, Errno.EINVAL);
    await client.setIrqs({ index: 7, flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 0 });
    expectChError(client, Errno.EINVAL);
    await client.regionWrite(RegionIndex.ROM, 0, new Uint8Array(4));
    expectChError(client, Errno.EINVAL);
    await client.regionRead(RegionIndex.CONFIG, 300, 4);
    expectChError(client, Errno.EINVAL);
    await expectStillServing(harness, client);
  });
});

describe('ordering and asynchronous handlers', () => {
  it('holds later requests until an asynchronous reset has finished', async () => {
    const device = new TestDevice();
    let finishReset!: () => void;
    device.resetDelay = new Promise<void>((resolve) => (finishReset = resolve));
    const harness = await connected('qemu', { device });
    const { client } = harness;
    let resetReplied = false;
    const reset = client.reset().then(() => (resetReplied = true));
    await sleep(20);
    await client.sendRaw(encodeRegionAccess(0x99, Command.REGION_READ, { offset: 0, region: 7, count: 4 }));
    await sleep(30);
    expect(resetReplied).toBe(false);
    expect(device.log).toEqual(['reset']);
    finishReset();
    await reset;
    expect((await client.readReply()).header.msgId).toBe(0x99);
    expect(device.log).toEqual(['reset', 'reset done', 'read 7@0']);
  });

  it('keeps replies in order and complete when the client reads them late (output backpressure)', async () => {
    const harness = await connected('qemu');
    const { client } = harness;
    harness.device.bar2.fill(0x33);
    const count = 2500;
    const requests = new Uint8Array(count * 32);
    for (let i = 0; i < count; i++)
      requests.set(
        encodeRegionAccess(i, Command.REGION_READ, { offset: 0, region: RegionIndex.BAR2, count: 4096 }),
        i * 32,
      );
    await client.sendRaw(requests);
    for (let i = 0; i < count; i++) {
      const reply = await client.readReply();
      expect(reply.header.msgId).toBe(i);
      expect(reply.body.length).toBe(16 + 4096);
    }
    expect(reply4(harness.device.bar2)).toBe(0x33333333);
    // 2500 replies of 4 KiB exceed the 8 MiB high-water mark: reading paused and resumed.
    expect(harness.server.stats.outputStalls).toBeGreaterThan(0);
  });
});

function reply4(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
}

describe('clients', () => {
  it('turns a second concurrent client away without disturbing the first', async () => {
    const harness = await connected('qemu');
    const second = harness.connect('cloud-hypervisor');
    expect(await second.waitForClose()).toBe(true);
    await expectStillServing(harness, harness.client);
    expect(
      warnings(harness.lines, 'rejected a connection: a client is already being served (one client at a time)'),
    ).toHaveLength(1);
    expect(harness.server.stats.connectionsRejected).toBe(1);
    expect(harness.server.clientConnected).toBe(true);
  });

  it('cleans up after a disconnect (mappings, device, eventfds, fds) and serves the next client', async () => {
    const harness = await connected('cloud-hypervisor');
    const { client, memory, device, server } = harness;
    const baseline = openFdCount(); // server, device, and both ends of this client's socket
    const ram = guestRam(2 * PAGE);
    await client.dmaMap({ iova: 0x10000, size: 2 * PAGE, fd: ram.fd });
    const backing = memory.windows[0]!.bytes.buffer as ArrayBuffer;
    const eventfds = [native.eventfdCreate(0, true), native.eventfdCreate(0, true)];
    await client.enableIrqs(2, eventfds);
    eventfds.forEach((fd) => native.close(fd));
    expect(device.eventfds.get(2)!.size).toBe(2);

    const disconnected = once(server, 'disconnect');
    client.close();
    await disconnected;
    expect(device.disconnects).toBe(1);
    expect(memory.regions).toEqual([]);
    expect(native.isMapped(backing)).toBe(false);
    expect(device.eventfds.size).toBe(0);
    expect(server.clientConnected).toBe(false);
    expect(warnings(harness.lines, 'client disconnected')[0]?.['reason']).toBe('client closed the connection');

    const next = harness.connect('qemu');
    const { regions } = await next.initialize();
    regions.forEach((region) => region.fd !== undefined && native.close(region.fd));
    await expectStillServing(harness, next);
    const secondDisconnect = once(server, 'disconnect');
    next.close();
    await secondDisconnect;
    ram.dispose();
    // Everything opened since the baseline is closed again, and so is the first client's socket (both ends).
    expect(openFdCount()).toBe(baseline - 2);
  });

  it('close() disconnects the client, waits for its cleanup and removes the socket', async () => {
    const harness = await connected('qemu');
    const ram = guestRam(PAGE);
    await harness.client.dmaMap({ iova: 0, size: PAGE, fd: ram.fd });
    await harness.server.close();
    expect(harness.device.disconnects).toBe(1);
    expect(harness.memory.regions).toEqual([]);
    expect(fs.existsSync(harness.socketPath)).toBe(false);
    expect(await harness.client.waitForClose()).toBe(true);
  });

  it('counts messages per command and errors', async () => {
    const harness = await connected('qemu');
    await harness.client.regionRead(7, 0, 4);
    await expectErrno(harness.client.regionRead(7, 1, 2), Errno.EINVAL);
    const stats = harness.server.stats;
    expect(stats.messages).toEqual({ VERSION: 1, REGION_READ: 2 });
    expect(stats.errors).toBe(1);
    expect(stats.errorsByErrno).toEqual({ EINVAL: 1 });
    expect(stats.connectionsAccepted).toBe(1);
    expect(stats.bytesReceived).toBeGreaterThan(0);
  });
});

describe('configuration', () => {
  it('rejects invalid limits and device descriptions at construction', () => {
    const device = new TestDevice();
    cleanups.push(() => device.dispose());
    const base = { socketPath: '/tmp/unused.sock', device, memory: new GuestMemory(), logger: memoryLogger().logger };
    expect(() => new VfioUserServer({ ...base, maxDataTransfer: 128 * 1024 * 1024 })).toThrow(/maxDataTransfer/);
    expect(() => new VfioUserServer({ ...base, maxDmaMaps: 70000 })).toThrow(/maxDmaMaps/);
    const tooFew = Object.assign(Object.create(device) as TestDevice, { regions: device.regions.slice(0, 7) });
    expect(() => new VfioUserServer({ ...base, device: tooFew })).toThrow(/regions/);
    const badArea = Object.assign(Object.create(device) as TestDevice, {
      regions: [
        { ...device.regions[0]!, mmap: { fd: device.bar0Fd, fdOffset: 0, areas: [{ offset: 100, size: PAGE }] } },
        ...device.regions.slice(1),
      ],
    });
    expect(() => new VfioUserServer({ ...base, device: badArea })).toThrow(/sparse area/);
  });
});
