/**
 * A vfio-user client for tests that behaves like the two hypervisors we serve, down to the quirks that matter:
 *
 * - 'qemu' (hw/vfio-user, QEMU >= 10.1): proposes 0.0 and rejects a newer minor; reads a header, checks the
 *   message id and that the reply fits the buffer QEMU would have allocated, then honours the ERROR flag (errors
 *   throw `VfioUserReplyError`). Posts region writes (NO_REPLY) while no region is mmap-able. Sends eventfds in
 *   chunks of the server's max_msg_fds. Sends DEVICE_RESET when the device has the RESET flag.
 * - 'cloud-hypervisor' (rust-vmm vfio-user): proposes 0.1 and requires a "capabilities" object; reads FIXED-size
 *   replies and never looks at the ERROR flag, exactly as its client does, so a wrongly sized error reply leaves
 *   it desynchronised (later replies come out garbled). `lastReply` holds the header it read, for assertions.
 *   Sends eventfds in batches of 16 whatever the server says. Sends DEVICE_RESET only when RESET is ABSENT.
 *
 * Runs on the event loop (non-blocking socket + fd watcher), so a server in the same process keeps working.
 */
import { native, POLL_READABLE, POLL_WRITABLE, type FdWatcher } from '../../src/native/index.js';
import { DeviceFlag, IrqSetFlag, RegionFlag, type SparseArea } from '../../src/vfio-user/device.js';
import {
  BodySize,
  Command,
  DmaMapFlag,
  HEADER_SIZE,
  HeaderFlag,
  decodeVersion,
  encodeDeviceInfo,
  encodeDmaMap,
  encodeDmaUnmap,
  encodeIrqInfo,
  encodeIrqSet,
  encodeRegionAccess,
  encodeRegionInfo,
  encodeVersion,
  parseCapabilities,
  readDeviceInfo,
  readDmaUnmap,
  readHeader,
  readIrqInfo,
  readRegionAccess,
  readRegionInfo,
  readSparseMmapAreas,
  type Capabilities,
  type DeviceInfoBody,
  type DmaUnmapBody,
  type IrqInfoBody,
  type MessageHeader,
  type RegionInfoBody,
} from '../../src/vfio-user/protocol.js';

export type Flavour = 'qemu' | 'cloud-hypervisor';

/** The server answered with the ERROR flag (qemu flavour only; cloud-hypervisor does not look). */
export class VfioUserReplyError extends Error {
  constructor(
    readonly errno: number,
    readonly command: number,
  ) {
    super(`vfio-user command ${command} failed with errno ${errno}`);
    this.name = 'VfioUserReplyError';
  }
}

export interface ClientOptions {
  flavour: Flavour;
  /** How long to wait for reply bytes before failing the test (QEMU waits 5 s). Default 3000 ms. */
  replyTimeoutMs?: number;
}

export interface Reply {
  header: MessageHeader;
  /** Payload after the header. */
  body: Uint8Array;
  view: DataView;
  fds: number[];
}

export interface RegionInfoResult {
  info: RegionInfoBody;
  areas?: SparseArea[];
  /** The fd sent with the reply (mmap-able regions); the caller closes it. */
  fd?: number;
}

export interface VersionResult {
  major: number;
  minor: number;
  json: string | undefined;
  capabilities: Capabilities;
}

/** QEMU's caps JSON (hw/vfio-user/proxy.c caps_json). */
const QEMU_CAPS_JSON = JSON.stringify({
  capabilities: {
    migration: { pgsize: 4096, max_bitmap_size: 256 * 1024 * 1024 },
    max_msg_fds: 16,
    max_data_xfer_size: 1024 * 1024,
    pgsizes: 4096,
    max_dma_maps: 65535,
    write_multiple: true,
  },
});
/** cloud-hypervisor's caps JSON (serde of CapabilitiesData::default()). */
const CH_CAPS_JSON = JSON.stringify({
  capabilities: { max_msg_fds: 1, max_data_xfer_size: 1048576, migration: { pgsize: 4096 } },
});

export class VfioUserClient {
  readonly flavour: Flavour;
  /** The socket, for tests that need to control exactly how bytes are sent. */
  readonly fd: number;
  private readonly watcher: FdWatcher;
  private readonly timeoutMs: number;
  private buffer = new Uint8Array(64 * 1024);
  private start = 0;
  private end = 0;
  private receivedFds: number[] = [];
  private eof = false;
  private closed = false;
  private wake: (() => void) | undefined;
  private nextId = 0;
  /** Set once a region-info reply had MMAP: QEMU then stops posting writes. */
  private sawMmap = false;
  serverCapabilities: Capabilities = {};
  /** The header of the last reply read (cloud-hypervisor flavour does not act on it; tests may). */
  lastReply: MessageHeader | undefined;

  private constructor(fd: number, options: ClientOptions) {
    this.fd = fd;
    this.flavour = options.flavour;
    this.timeoutMs = options.replyTimeoutMs ?? 3000;
    native.setNonBlocking(fd, true);
    this.watcher = native.createWatcher(fd, () => {
      const wake = this.wake;
      this.wake = undefined;
      this.watcher.stop();
      wake?.();
    });
  }

  static connect(socketPath: string, options: ClientOptions): VfioUserClient {
    return new VfioUserClient(native.connectUnix(socketPath), options);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Transport

  /** Sends raw bytes (and fds, attached to the first byte). For hostile tests. */
  async sendRaw(bytes: Uint8Array, fds: readonly number[] = []): Promise<void> {
    let offset = 0;
    let pendingFds = fds;
    while (offset < bytes.length) {
      const sent = native.sendmsg(this.fd, bytes.subarray(offset), pendingFds);
      if (sent === null) {
        await this.waitFor(POLL_WRITABLE, 'socket to become writable');
        continue;
      }
      pendingFds = [];
      offset += sent;
    }
  }

  /** Reads exactly `n` bytes; fds that arrive meanwhile are returned too. */
  async readExact(n: number): Promise<{ bytes: Uint8Array; fds: number[] }> {
    while (this.end - this.start < n) {
      if (this.eof)
        throw new Error(`connection closed by the server (wanted ${n} bytes, have ${this.end - this.start})`);
      this.receive();
      if (this.end - this.start >= n || this.eof) continue;
      await this.waitFor(POLL_READABLE, `${n} reply bytes`);
    }
    const bytes = this.buffer.slice(this.start, this.start + n);
    this.start += n;
    const fds = this.receivedFds;
    this.receivedFds = [];
    return { bytes, fds };
  }

  /** Resolves true when the server closes the connection within `timeoutMs`, false otherwise. Discards data. */
  async waitForClose(timeoutMs = 1000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.eof) {
      this.receive();
      this.start = this.end;
      if (this.eof) break;
      if (Date.now() >= deadline) return false;
      try {
        await this.waitFor(POLL_READABLE, 'close', Math.max(1, deadline - Date.now()));
      } catch {
        return false;
      }
    }
    return true;
  }

  /** Bytes received but not consumed (a desynchronised reader would leave some). */
  get unreadBytes(): number {
    this.receive();
    // A pending read may be waiting for exactly these bytes; the watcher will not fire again for them.
    const wake = this.wake;
    if (wake) {
      this.wake = undefined;
      this.watcher.stop();
      wake();
    }
    return this.end - this.start;
  }

  get isEof(): boolean {
    return this.eof;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.close();
    native.close(this.fd);
    for (const fd of this.receivedFds) native.close(fd);
    this.receivedFds = [];
  }

  private receive(): void {
    for (;;) {
      if (this.end === this.buffer.length) {
        if (this.start > 0) {
          this.buffer.copyWithin(0, this.start, this.end);
          this.end -= this.start;
          this.start = 0;
        } else {
          const grown = new Uint8Array(this.buffer.length * 2);
          grown.set(this.buffer);
          this.buffer = grown;
        }
      }
      const result = native.recvmsg(this.fd, this.buffer.subarray(this.end), 16);
      if (result === null) return;
      this.receivedFds.push(...result.fds);
      if (result.bytes === 0) {
        this.eof = true;
        return;
      }
      this.end += result.bytes;
    }
  }

  private waitFor(events: number, what: string, timeoutMs = this.timeoutMs): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        this.watcher.stop();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
      this.watcher.start(events);
    });
  }

  private id(): number {
    const id = this.nextId;
    this.nextId = (this.nextId + 1) & 0xffff;
    return id;
  }

  /**
   * QEMU's reply reader: header, id check, `rsize` check (the buffer QEMU allocated for the reply), rest of the
   * message, then the ERROR flag.
   */
  private async qemuReply(msgId: number, command: number, rsize: number): Promise<Reply> {
    const head = await this.readExact(HEADER_SIZE);
    const header = readHeader(new DataView(head.bytes.buffer), 0);
    this.lastReply = header;
    if ((header.flags & HeaderFlag.TYPE_MASK) !== HeaderFlag.TYPE_REPLY)
      throw new Error(`expected a reply, got type ${header.flags & 0xf}`);
    if (header.msgId !== msgId) throw new Error(`unexpected reply: id ${header.msgId}, waiting for ${msgId}`);
    if (header.command !== command) throw new Error(`reply for command ${header.command}, expected ${command}`);
    if (header.size < HEADER_SIZE) throw new Error(`bad header size ${header.size}`);
    if (header.size > rsize) throw new Error(`reply larger than recv buffer (${header.size} > ${rsize})`);
    const rest = await this.readExact(header.size - HEADER_SIZE);
    const fds = [...head.fds, ...rest.fds];
    if ((header.flags & HeaderFlag.ERROR) !== 0) {
      for (const fd of fds) native.close(fd);
      throw new VfioUserReplyError(header.error, command);
    }
    return { header, body: rest.bytes, view: new DataView(rest.bytes.buffer), fds };
  }

  /** cloud-hypervisor's reader: exactly `size` bytes, no flag check. */
  private async chFixed(size: number): Promise<{ bytes: Uint8Array; view: DataView; fds: number[] }> {
    const { bytes, fds } = await this.readExact(size);
    const view = new DataView(bytes.buffer);
    this.lastReply = readHeader(view, 0);
    return { bytes, view, fds };
  }

  // -------------------------------------------------------------------------------------------------------------
  // Commands

  async version(proposal?: { major?: number; minor?: number; json?: string }): Promise<VersionResult> {
    const qemu = this.flavour === 'qemu';
    const major = proposal?.major ?? 0;
    const minor = proposal?.minor ?? (qemu ? 0 : 1);
    const json = proposal?.json ?? (qemu ? QEMU_CAPS_JSON : CH_CAPS_JSON);
    const id = this.id();
    const request = encodeVersion(id, 0, major, minor, json);
    await this.sendRaw(request);
    if (qemu) {
      const reply = await this.qemuReply(id, Command.VERSION, request.length);
      const full = new Uint8Array(HEADER_SIZE + reply.body.length);
      full.set(reply.body, HEADER_SIZE);
      const version = decodeVersion(full, HEADER_SIZE, reply.body.length);
      if (version.major !== 0 || version.minor > 0)
        throw new Error(`incompatible server version ${version.major}.${version.minor}`);
      if (reply.body[reply.body.length - 1] !== 0) throw new Error('corrupt version reply (no NUL)');
      const capabilities = parseCapabilities(version.json);
      checkQemuCapabilities(version.json, capabilities);
      this.serverCapabilities = capabilities;
      return { major: version.major, minor: version.minor, json: version.json, capabilities };
    }
    const head = await this.chFixed(HEADER_SIZE + BodySize.VERSION);
    const dataSize = head.view.getUint32(4, true) - (HEADER_SIZE + BodySize.VERSION);
    const data = (await this.readExact(dataSize)).bytes;
    const text = new TextDecoder().decode(data.subarray(0, data.length - 1));
    const parsed = JSON.parse(text) as { capabilities?: unknown };
    if (typeof parsed.capabilities !== 'object' || parsed.capabilities === null) {
      throw new Error('missing field `capabilities` (cloud-hypervisor DeserializeCapabilites)');
    }
    this.serverCapabilities = parseCapabilities(text);
    return {
      major: head.view.getUint16(HEADER_SIZE, true),
      minor: head.view.getUint16(HEADER_SIZE + 2, true),
      json: text,
      capabilities: this.serverCapabilities,
    };
  }

  async getDeviceInfo(): Promise<DeviceInfoBody> {
    const id = this.id();
    // cloud-hypervisor puts the whole struct size (header included) in argsz.
    const argsz = this.flavour === 'qemu' ? BodySize.DEVICE_INFO : HEADER_SIZE + BodySize.DEVICE_INFO;
    const request = encodeDeviceInfo(id, { argsz, flags: 0, numRegions: 0, numIrqs: 0 });
    await this.sendRaw(request);
    if (this.flavour === 'qemu') {
      const reply = await this.qemuReply(id, Command.DEVICE_GET_INFO, request.length);
      return readDeviceInfo(reply.view, 0);
    }
    const reply = await this.chFixed(HEADER_SIZE + BodySize.DEVICE_INFO);
    return readDeviceInfo(reply.view, HEADER_SIZE);
  }

  async getRegionInfo(index: number, options?: { argsz?: number }): Promise<RegionInfoResult> {
    if (this.flavour === 'cloud-hypervisor') return this.chRegionInfo(index);
    // QEMU asks with sizeof(vfio_region_info), then again with the argsz the server says it needs.
    let argsz = options?.argsz ?? BodySize.REGION_INFO;
    for (let attempt = 0; ; attempt++) {
      const id = this.id();
      await this.sendRaw(encodeRegionInfo(id, { argsz, flags: 0, index, capOffset: 0, size: 0, offset: 0 }));
      const reply = await this.qemuReply(id, Command.DEVICE_GET_REGION_INFO, argsz + HEADER_SIZE);
      if (reply.fds.length > 1) throw new Error(`${reply.fds.length} fds with one region info`);
      const info = readRegionInfo(reply.view, 0);
      if (info.argsz > argsz && attempt === 0 && options?.argsz === undefined) {
        for (const fd of reply.fds) native.close(fd);
        argsz = info.argsz;
        continue;
      }
      if ((info.flags & RegionFlag.CAPS) !== 0 && (info.capOffset < BodySize.REGION_INFO || info.capOffset > argsz)) {
        throw new Error(`cap_offset ${info.capOffset} outside the reply (QEMU returns -EINVAL)`);
      }
      if ((info.flags & RegionFlag.MMAP) !== 0) this.sawMmap = true;
      const result: RegionInfoResult = { info };
      if ((info.flags & RegionFlag.CAPS) !== 0) {
        const areas = readSparseMmapAreas(
          new DataView(reply.body.buffer, 0, Math.min(reply.body.length, argsz)),
          info.capOffset,
        );
        if (areas) result.areas = areas;
      }
      if (reply.fds[0] !== undefined) result.fd = reply.fds[0];
      return result;
    }
  }

  /** cloud-hypervisor's get_region_info: fixed 48-byte read with recvmsg, retry with argsz, assert on the size. */
  private async chRegionInfo(index: number): Promise<RegionInfoResult> {
    const fixed = HEADER_SIZE + BodySize.REGION_INFO;
    await this.sendRaw(
      encodeRegionInfo(this.id(), { argsz: BodySize.REGION_INFO, flags: 0, index, capOffset: 0, size: 0, offset: 0 }),
    );
    let reply = await this.chFixed(fixed);
    let info = readRegionInfo(reply.view, HEADER_SIZE);
    if (info.argsz <= BodySize.REGION_INFO) {
      const result: RegionInfoResult = { info };
      if (reply.fds[0] !== undefined) result.fd = reply.fds[0];
      for (const fd of reply.fds.slice(1)) native.close(fd);
      return result;
    }
    for (const fd of reply.fds) native.close(fd);
    await this.sendRaw(
      encodeRegionInfo(this.id(), { argsz: info.argsz, flags: 0, index, capOffset: 0, size: 0, offset: 0 }),
    );
    reply = await this.chFixed(fixed);
    info = readRegionInfo(reply.view, HEADER_SIZE);
    const capSize = info.argsz - BodySize.REGION_INFO;
    const messageSize = reply.view.getUint32(4, true);
    if (capSize !== messageSize - fixed)
      throw new Error(`assertion failed: cap_size ${capSize} != message_size - 48 (${messageSize - fixed})`);
    const caps = (await this.readExact(capSize)).bytes;
    const whole = new Uint8Array(BodySize.REGION_INFO + capSize);
    whole.set(reply.bytes.subarray(HEADER_SIZE), 0);
    whole.set(caps, BodySize.REGION_INFO);
    const result: RegionInfoResult = { info };
    const areas = readSparseMmapAreas(new DataView(whole.buffer), info.capOffset);
    if (areas) result.areas = areas;
    if (reply.fds[0] !== undefined) result.fd = reply.fds[0];
    return result;
  }

  async getIrqInfo(index: number): Promise<IrqInfoBody> {
    const id = this.id();
    const request = encodeIrqInfo(id, { argsz: BodySize.IRQ_INFO, flags: 0, index, count: 0 });
    await this.sendRaw(request);
    if (this.flavour === 'qemu')
      return readIrqInfo((await this.qemuReply(id, Command.DEVICE_GET_IRQ_INFO, request.length)).view, 0);
    return readIrqInfo((await this.chFixed(HEADER_SIZE + BodySize.IRQ_INFO)).view, HEADER_SIZE);
  }

  /** One SET_IRQS message. */
  async setIrqs(request: {
    index: number;
    flags: number;
    start: number;
    count: number;
    fds?: number[];
    bools?: Uint8Array;
  }): Promise<void> {
    const id = this.id();
    const message = encodeIrqSet(id, request, request.bools);
    await this.sendRaw(message, request.fds ?? []);
    if (this.flavour === 'qemu') await this.qemuReply(id, Command.DEVICE_SET_IRQS, message.length);
    else await this.chFixed(HEADER_SIZE);
  }

  /** Wires `fds` to vectors 0.. of `index` the way each hypervisor batches them. */
  async enableIrqs(index: number, fds: number[]): Promise<number> {
    const batch = this.flavour === 'qemu' ? (this.serverCapabilities.maxMsgFds ?? 8) : 16;
    let messages = 0;
    for (let start = 0; start < fds.length; start += batch) {
      const chunk = fds.slice(start, start + batch);
      await this.setIrqs({
        index,
        flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER,
        start,
        count: chunk.length,
        fds: chunk,
      });
      messages++;
    }
    return messages;
  }

  async dmaMap(map: { iova: number; size: number; fd?: number; offset?: number; flags?: number }): Promise<void> {
    const id = this.id();
    const message = encodeDmaMap(id, {
      flags: map.flags ?? DmaMapFlag.READ | DmaMapFlag.WRITE,
      offset: map.offset ?? 0,
      address: map.iova,
      size: map.size,
    });
    await this.sendRaw(message, map.fd === undefined ? [] : [map.fd]);
    if (this.flavour === 'qemu') await this.qemuReply(id, Command.DMA_MAP, message.length);
    else await this.chFixed(HEADER_SIZE);
  }

  /** `fds`: sent along like SPDK's client does (the specification sends none with DMA_UNMAP). */
  async dmaUnmap(unmap: { iova: number; size: number; flags?: number; fds?: number[] }): Promise<DmaUnmapBody> {
    const id = this.id();
    const message = encodeDmaUnmap(id, { flags: unmap.flags ?? 0, address: unmap.iova, size: unmap.size });
    await this.sendRaw(message, unmap.fds ?? []);
    if (this.flavour === 'qemu')
      return readDmaUnmap((await this.qemuReply(id, Command.DMA_UNMAP, message.length)).view, 0);
    return readDmaUnmap((await this.chFixed(HEADER_SIZE + BodySize.DMA_UNMAP)).view, HEADER_SIZE);
  }

  async regionRead(region: number, offset: number, count: number): Promise<Uint8Array> {
    const id = this.id();
    await this.sendRaw(encodeRegionAccess(id, Command.REGION_READ, { offset, region, count }));
    if (this.flavour === 'qemu') {
      const reply = await this.qemuReply(id, Command.REGION_READ, HEADER_SIZE + BodySize.REGION_ACCESS + count);
      const access = readRegionAccess(reply.view, 0);
      if (access.count > count) throw new Error('E2BIG: reply count larger than asked');
      return reply.body.slice(BodySize.REGION_ACCESS, BodySize.REGION_ACCESS + access.count);
    }
    await this.chFixed(HEADER_SIZE + BodySize.REGION_ACCESS);
    return (await this.readExact(count)).bytes;
  }

  /**
   * REGION_WRITE. QEMU posts it (NO_REPLY, no wait) while no region info had MMAP, unless `posted: false`;
   * cloud-hypervisor always waits.
   */
  async regionWrite(region: number, offset: number, data: Uint8Array, options?: { posted?: boolean }): Promise<void> {
    const id = this.id();
    const posted = this.flavour === 'qemu' && (options?.posted ?? false) && !this.sawMmap;
    const message = encodeRegionAccess(
      id,
      Command.REGION_WRITE,
      { offset, region, count: data.length },
      data,
      posted ? HeaderFlag.NO_REPLY : 0,
    );
    await this.sendRaw(message);
    if (posted) return;
    if (this.flavour === 'qemu') await this.qemuReply(id, Command.REGION_WRITE, message.length);
    else await this.chFixed(HEADER_SIZE + BodySize.REGION_ACCESS);
  }

  async reset(): Promise<void> {
    const id = this.id();
    const header = new Uint8Array(HEADER_SIZE);
    const view = new DataView(header.buffer);
    view.setUint16(0, id, true);
    view.setUint16(2, Command.DEVICE_RESET, true);
    view.setUint32(4, HEADER_SIZE, true);
    await this.sendRaw(header);
    if (this.flavour === 'qemu') await this.qemuReply(id, Command.DEVICE_RESET, HEADER_SIZE);
    else await this.chFixed(HEADER_SIZE);
  }

  /** Reads one whole reply the generic way (for hostile tests): header, rest, fds; no flag interpretation. */
  async readReply(): Promise<Reply> {
    const head = await this.readExact(HEADER_SIZE);
    const header = readHeader(new DataView(head.bytes.buffer), 0);
    this.lastReply = header;
    const rest = await this.readExact(header.size - HEADER_SIZE);
    return { header, body: rest.bytes, view: new DataView(rest.bytes.buffer), fds: [...head.fds, ...rest.fds] };
  }

  /**
   * The start-up sequence of the hypervisor: version, device info, every region's info, reset as it decides.
   * Region fds are returned open; the caller closes them.
   */
  async initialize(): Promise<{ device: DeviceInfoBody; regions: RegionInfoResult[]; resetSent: boolean }> {
    await this.version();
    const device = await this.getDeviceInfo();
    if (this.flavour === 'cloud-hypervisor' && (device.flags & DeviceFlag.PCI) === 0)
      throw new Error('Not a PCI device');
    if (this.flavour === 'qemu' && (device.numRegions > 100 || device.numIrqs > 50)) throw new Error('invalid reply');
    const regions: RegionInfoResult[] = [];
    for (let index = 0; index < device.numRegions; index++) regions.push(await this.getRegionInfo(index));
    const hasReset = (device.flags & DeviceFlag.RESET) !== 0;
    // cloud-hypervisor's check is inverted: `resettable = flags & RESET != RESET`.
    const resetSent = this.flavour === 'qemu' ? hasReset : !hasReset;
    if (resetSent) await this.reset();
    return { device, regions, resetSent };
  }
}

/** QEMU's caps_check: the limits it enforces on the server's capabilities. */
function checkQemuCapabilities(json: string | undefined, caps: Capabilities): void {
  const parsed = JSON.parse(json ?? '{}') as Record<string, unknown>;
  if (typeof parsed['capabilities'] !== 'object') throw new Error('QEMU expects a "capabilities" object');
  if (caps.maxMsgFds !== undefined && caps.maxMsgFds > 16) throw new Error('malformed max_msg_fds');
  if (caps.maxDataXferSize !== undefined && caps.maxDataXferSize > 64 * 1024 * 1024)
    throw new Error('malformed max_data_xfer_size');
  if (caps.pgsizes !== undefined && caps.pgsizes % 4096 !== 0) throw new Error('pgsize too small');
  if (caps.maxDmaMaps !== undefined && caps.maxDmaMaps > 65535) throw new Error('max_dma_maps too large');
  const known = new Set([
    'max_msg_fds',
    'max_data_xfer_size',
    'pgsizes',
    'max_dma_maps',
    'migration',
    'write_multiple',
  ]);
  for (const key of Object.keys(parsed['capabilities'] as object)) {
    if (!known.has(key)) throw new Error(`QEMU would warn: spurious capability ${key}`);
  }
}
