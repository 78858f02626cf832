/**
 * Hostile input against the real NVMe controller (startController: NvmePciDevice + PciFunction + NvmeController behind
 * a VfioUserServer), from both sides: a hypervisor that sends malformed vfio-user messages and fds, and a guest that
 * programs the controller with garbage. Every case checks the precise error (errno / NVMe status), that the attacked
 * controller keeps serving, and that a second controller ("the bystander") keeps moving data correctly.
 *
 * test/unit/vfio-user/server.test.ts covers the protocol against a small test device; this file goes through the NVMe
 * device and adds what that file does not reach. The last block runs `vfiod serve`'s real topology (one worker thread
 * per controller in one process, from the compiled dist/) for attacks that cannot be survived in-process.
 *
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { native, PROT_READ, PROT_WRITE } from '../../src/native/index.js';
import { AsyncEvent, IoOpcode, LogPageId, Reg, Status } from '../../src/spec/nvme.js';
import { controllerConfig, type ControllerConfig } from '../../src/serve/config.js';
import { startController, type RunningController } from '../../src/serve/controller.js';
import { memoryLogger, type LogFields } from '../../src/util/log.js';
import { Errno, IrqSetFlag } from '../../src/spec/vfio.js';
import {
  BodySize,
  Command,
  HEADER_SIZE,
  HeaderFlag,
  encodeDmaMap,
  encodeIrqSet,
  encodeRegionAccess,
  encodeVersion,
  newMessage,
} from '../../src/vfio-user/protocol.js';
import { Guest, GUEST_RAM_IOVA } from '../helpers/hypervisor.js';
import { pattern } from '../helpers/nvme-harness.js';
import { VfioUserClient, VfioUserReplyError, type Flavour } from '../helpers/vfio-user-client.js';
import { sleep, temporaryDir } from '../helpers/common.js';

const PAGE = 4096;
const BLOCK = 512;
const RAM_BYTES = 8 * 1024 * 1024;
const RAM_END = GUEST_RAM_IOVA + RAM_BYTES;
/** Far outside anything mapped, but a safe integer. */
const NOWHERE = 0x7000_0000_0000;
const CONFIG = 7;
const MSIX_BAR = 4;
const MSIX_IRQ = 2;
/** Config space bytes 0..3: vendor 0x4e58, device 0x0001 (DEFAULT_PCI_IDS). */
const CONFIG_ID = [0x58, 0x4e, 0x01, 0x00];
/** max_data_xfer_size 1 MiB: the server's largest accepted message is 16 + 16 + 1 MiB. */
const MAX_MESSAGE = HEADER_SIZE + BodySize.REGION_ACCESS + 1024 * 1024;

function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

// ---------------------------------------------------------------------------------------------------------------
// Controllers and clients, cleaned up after each test (the bystander lives for the whole file).

let dir: string;
const cleanups: Array<() => unknown> = [];

beforeAll(() => {
  dir = temporaryDir('vfiod-hostile-');
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  await bystander?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

let socketCounter = 0;

async function startNvme(
  overrides: Partial<ControllerConfig> = {},
): Promise<{ controller: RunningController; lines: LogFields[] }> {
  const { logger, lines } = memoryLogger();
  const config = controllerConfig({
    socketPath: path.join(dir, `hostile-${socketCounter++}.sock`),
    namespaces: ['memory:4M'],
    ...overrides,
  });
  const controller = await startController(config, logger);
  cleanups.push(() => controller.close());
  return { controller, lines };
}

/** A raw vfio-user client that has negotiated the version (QEMU-like reader: errors throw VfioUserReplyError). */
async function rawClient(socketPath: string, options: { negotiate?: boolean; flavour?: Flavour } = {}): Promise<VfioUserClient> {
  const client = VfioUserClient.connect(socketPath, { flavour: options.flavour ?? 'qemu' });
  cleanups.push(() => client.close());
  if (options.negotiate ?? true) await client.version();
  return client;
}

async function attach(socketPath: string, flavour: Flavour = 'qemu'): Promise<Guest> {
  const guest = await Guest.attach(socketPath, { flavour, ramBytes: RAM_BYTES });
  cleanups.push(() => guest.close());
  return guest;
}

function eventfds(count: number): number[] {
  const fds = Array.from({ length: count }, () => native.eventfdCreate(0, true));
  cleanups.push(() => fds.forEach((fd) => native.close(fd)));
  return fds;
}

/** Sends `bytes` (with `fds`) and reads the one reply. */
async function request(client: VfioUserClient, bytes: Uint8Array, fds: number[] = []) {
  await client.sendRaw(bytes, fds);
  return client.readReply();
}

/** Sends a request and checks it is answered with exactly this errno (and, when given, a reply of this size). */
async function expectErrorReply(
  client: VfioUserClient,
  bytes: Uint8Array,
  errno: number,
  options: { fds?: number[]; size?: number; what?: string } = {},
): Promise<void> {
  const msgId = new DataView(bytes.buffer, bytes.byteOffset).getUint16(0, true);
  const reply = await request(client, bytes, options.fds);
  const what = options.what ?? `command ${new DataView(bytes.buffer, bytes.byteOffset).getUint16(2, true)}`;
  expect(reply.header.msgId, what).toBe(msgId);
  expect(reply.header.flags, what).toBe(HeaderFlag.TYPE_REPLY | HeaderFlag.ERROR);
  expect(reply.header.error, what).toBe(errno);
  if (options.size !== undefined) expect(reply.header.size, what).toBe(options.size);
}

async function expectErrno(promise: Promise<unknown>, errno: number): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the request should have failed').toBeInstanceOf(VfioUserReplyError);
  expect((error as VfioUserReplyError).errno).toBe(errno);
}

/** The attacked controller still answers this client, in sync. */
async function expectStillServing(client: VfioUserClient): Promise<void> {
  expect([...(await client.regionRead(CONFIG, 0, 4))]).toEqual(CONFIG_ID);
  expect(client.unreadBytes).toBe(0);
}

/** A message with zero-filled body of `bodyLength` bytes; argsz (first body word) set when it fits. */
function message(msgId: number, command: number, bodyLength: number, argsz?: number, flags = 0): Uint8Array {
  const { bytes, view } = newMessage(msgId, command, bodyLength, flags);
  if (argsz !== undefined && bodyLength >= 4) view.setUint32(HEADER_SIZE, argsz, true);
  return bytes;
}

function sgl(address: number | bigint, length: number, type: number): { flags: number; prp1: bigint; prp2: bigint } {
  // SGL1: address (SQE 24..31), length (32..35), identifier (39) = type << 4; PSDT = 01b.
  return { flags: 0x40, prp1: BigInt(address), prp2: BigInt(length) | (BigInt(type << 4) << 56n) };
}
const SGL_DATA_BLOCK = 0;
const SGL_SEGMENT = 2;
const SGL_LAST_SEGMENT = 3;

// ---------------------------------------------------------------------------------------------------------------
// The bystander: another controller in the same process, moving data the whole time.

let bystander: RunningController | undefined;
let bystanderGuest: Guest | undefined;
let bystanderLba = 0;

beforeAll(async () => {
  const { logger } = memoryLogger();
  bystander = await startController(
    controllerConfig({ socketPath: path.join(dir, 'bystander.sock'), namespaces: ['memory:4M'] }),
    logger,
  );
  bystanderGuest = await Guest.attach(bystander.config.socketPath, { flavour: 'cloud-hypervisor', ramBytes: RAM_BYTES });
  await bystanderGuest.driver.enable();
  await bystanderGuest.driver.createIoQueuePair(1, 32, 1);
});

afterAll(() => {
  bystanderGuest?.close();
});

/** The bystander writes and reads back a fresh 4 KiB pattern. */
async function expectBystanderServes(): Promise<void> {
  const lba = (bystanderLba = (bystanderLba + 8) % 8000);
  const data = pattern(PAGE, 1000 + lba);
  expect((await bystanderGuest!.driver.write(1, lba, data)).status).toBe(Status.SUCCESS);
  const read = await bystanderGuest!.driver.read(1, lba, PAGE / BLOCK);
  expect(read.completion.status).toBe(Status.SUCCESS);
  expect(Buffer.compare(read.data, data)).toBe(0);
  expect(bystander!.device.controller.stats().state).toBe('ready');
}

// =================================================================================================================

describe('vfio-user messages against the NVMe controller', () => {
  it('truncated bodies of every command: EINVAL with the reply size of that command, stream in sync', async () => {
    const { controller } = await startNvme();
    const client = await rawClient(controller.config.socketPath);
    // [command, structure size, error reply size when truncated (with a plausible argsz where it fits)]
    const cases: Array<[number, number, (length: number) => number]> = [
      [Command.DMA_MAP, BodySize.DMA_MAP, () => 16],
      [Command.DMA_UNMAP, BodySize.DMA_UNMAP, () => 16 + 24],
      [Command.DEVICE_GET_INFO, BodySize.DEVICE_INFO, () => 16 + 16],
      [Command.DEVICE_GET_REGION_INFO, BodySize.REGION_INFO, (length) => (length >= 4 ? 16 + 32 : 16)],
      [Command.DEVICE_GET_IRQ_INFO, BodySize.IRQ_INFO, () => 16 + 16],
      [Command.DEVICE_SET_IRQS, BodySize.IRQ_SET, () => 16],
      [Command.REGION_READ, BodySize.REGION_ACCESS, () => 16 + 16],
      [Command.REGION_WRITE, BodySize.REGION_ACCESS, () => 16 + 16],
    ];
    let msgId = 100;
    for (const [command, size, replySize] of cases) {
      for (let length = 0; length < size; length++) {
        await expectErrorReply(client, message(msgId++, command, length, size), Errno.EINVAL, {
          size: replySize(length),
          what: `command ${command} with a ${length}-byte body`,
        });
      }
    }
    // REGION_WRITE whose count disagrees with its data, REGION_READ carrying data.
    const short = encodeRegionAccess(200, Command.REGION_WRITE, { offset: 0, region: CONFIG, count: 8 }, new Uint8Array(4));
    await expectErrorReply(client, short, Errno.EINVAL, { size: 32 });
    const long = encodeRegionAccess(201, Command.REGION_WRITE, { offset: 0, region: CONFIG, count: 2 }, new Uint8Array(4));
    await expectErrorReply(client, long, Errno.EINVAL, { size: 32 });
    const readWithData = encodeRegionAccess(202, Command.REGION_READ, { offset: 0, region: CONFIG, count: 4 }, new Uint8Array(4));
    await expectErrorReply(client, readWithData, Errno.EINVAL, { size: 32 + 4 });
    await expectStillServing(client);
    expect(controller.server.stats.protocolDisconnects).toBe(0);
    // A VERSION shorter than major + minor on a fresh connection; the connection then negotiates normally.
    const disconnected = once(controller.server, 'disconnect');
    client.close(); // one client at a time
    await disconnected;
    const fresh = await rawClient(controller.config.socketPath, { negotiate: false });
    for (let length = 0; length < BodySize.VERSION; length++) {
      await expectErrorReply(fresh, message(300 + length, Command.VERSION, length), Errno.EINVAL, { size: 16 + 7 });
    }
    await fresh.version();
    await expectStillServing(fresh);
    expect(controller.server.stats.protocolDisconnects).toBe(0);
    await expectBystanderServes();
  });

  it('wrong argsz in every structure that has one: EINVAL, nothing applied, fds closed', async () => {
    const { controller } = await startNvme();
    const client = await rawClient(controller.config.socketPath);
    const ram = native.memfdCreate('hostile-ram', PAGE);
    cleanups.push(() => native.close(ram));
    const before = openFdCount();
    const map = encodeDmaMap(1, { argsz: BodySize.DMA_MAP - 1, flags: 3, offset: 0, address: 0x10_0000, size: PAGE });
    await expectErrorReply(client, map, Errno.EINVAL, { fds: [ram], size: 16 });
    expect(openFdCount(), 'the fd of the refused DMA_MAP is closed').toBe(before);
    expect(controller.server.stats.errors).toBe(1);
    const unmap = message(2, Command.DMA_UNMAP, BodySize.DMA_UNMAP, BodySize.DMA_UNMAP - 1);
    await expectErrorReply(client, unmap, Errno.EINVAL, { size: 40 });
    await expectErrorReply(client, message(3, Command.DEVICE_GET_INFO, 16, 15), Errno.EINVAL, { size: 32 });
    await expectErrorReply(client, message(4, Command.DEVICE_GET_REGION_INFO, 32, 31), Errno.EINVAL, { size: 16 });
    await expectErrorReply(client, message(5, Command.DEVICE_GET_IRQ_INFO, 16, 15), Errno.EINVAL, { size: 32 });
    const setIrqs = encodeIrqSet(6, { argsz: 19, index: MSIX_IRQ, flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 0 });
    await expectErrorReply(client, setIrqs, Errno.EINVAL, { size: 16 });
    // DATA_BOOL whose argsz covers the structure but not its bool bytes.
    const bools = encodeIrqSet(
      7,
      { argsz: BodySize.IRQ_SET, index: MSIX_IRQ, flags: IrqSetFlag.DATA_BOOL | IrqSetFlag.ACTION_MASK, start: 0, count: 4 },
      new Uint8Array([1, 1, 1, 1]),
    );
    await expectErrorReply(client, bools, Errno.EINVAL, { size: 16 });
    expect(controller.server.stats.errorsByErrno).toEqual({ EINVAL: 7 });
    await expectStillServing(client);
    await expectBystanderServes();
  });

  it('oversized messages are skipped (fds closed); an absurd msg_size drops only this client', async () => {
    const { controller, lines } = await startNvme();
    const client = await rawClient(controller.config.socketPath);
    const fds = eventfds(2);
    const before = openFdCount();
    const { bytes } = newMessage(40, Command.REGION_WRITE, MAX_MESSAGE + 1 - HEADER_SIZE);
    await expectErrorReply(client, bytes, Errno.EINVAL, { fds, size: 32 });
    expect(openFdCount(), 'fds that came with the skipped message are closed').toBe(before);
    await expectStillServing(client);

    // While this client is served, a second connection is turned away (EOF at once), the first undisturbed.
    const second = await rawClient(controller.config.socketPath, { negotiate: false });
    expect(await second.waitForClose()).toBe(true);
    await expectStillServing(client);

    let disconnected = once(controller.server, 'disconnect');
    client.close();
    await disconnected;
    const next = await rawClient(controller.config.socketPath);
    const absurd = newMessage(41, Command.REGION_READ, 16);
    absurd.view.setUint32(4, 0x7fff_ffff, true);
    disconnected = once(controller.server, 'disconnect');
    await next.sendRaw(absurd.bytes);
    expect(await next.waitForClose()).toBe(true);
    await disconnected;
    expect(controller.server.stats.protocolDisconnects).toBe(1);
    expect(lines.some((line) => line['msg'] === 'protocol error: dropping the client')).toBe(true);
    const again = await rawClient(controller.config.socketPath);
    await expectStillServing(again);
    await expectBystanderServes();
  });

  it('unknown, unsupported and server-to-client commands, replies and messages before VERSION', async () => {
    const { controller } = await startNvme();
    const early = await rawClient(controller.config.socketPath, { negotiate: false });
    await expectErrorReply(early, encodeRegionAccess(1, Command.REGION_READ, { offset: 0, region: CONFIG, count: 4 }), Errno.EINVAL, {
      size: 32 + 4,
    });
    await expectErrorReply(early, message(2, 99, 0), Errno.EINVAL, { size: 16 });
    await early.version();
    let msgId = 10;
    for (const command of [0, 19, 99, 0x7fff, 0xffff]) {
      await expectErrorReply(early, message(msgId++, command, 8), Errno.ENOSYS, { size: 16 });
    }
    for (const command of [
      Command.DEVICE_GET_REGION_IO_FDS,
      Command.DIRTY_PAGES,
      Command.REGION_WRITE_MULTI,
      Command.DEVICE_FEATURE,
      Command.MIG_DATA_READ,
      Command.MIG_DATA_WRITE,
      Command.DMA_READ,
      Command.DMA_WRITE,
    ]) {
      await expectErrorReply(early, message(msgId++, command, 24), Errno.ENOTSUP, { size: 16 });
    }
    await expectErrorReply(early, message(msgId++, Command.DEVICE_GET_INFO, 16, 16, HeaderFlag.TYPE_REPLY), Errno.EINVAL);
    await expectErrorReply(early, message(msgId++, Command.DEVICE_GET_INFO, 16, 16, 0xe), Errno.EINVAL);
    await expectErrorReply(early, encodeVersion(msgId++, 0, 0, 0, '{}'), Errno.EINVAL, { size: 16 + 7 });
    await expectStillServing(early);
    expect(controller.device.controller.stats().state).toBe('disabled');
    await expectBystanderServes();
  });

  it('fds where none belong are closed and refused, for every command that takes none', async () => {
    const { controller } = await startNvme();
    const fresh = await rawClient(controller.config.socketPath, { negotiate: false });
    const [fd, second] = eventfds(2) as [number, number];
    // One round trip first, so the server has accepted the connection before fds are counted.
    await expectErrorReply(fresh, message(0, Command.DEVICE_GET_INFO, 16, 16), Errno.EINVAL);
    let before = openFdCount();
    await expectErrorReply(fresh, encodeVersion(1, 0, 0, 0, '{}'), Errno.EINVAL, { fds: [fd], size: 16 + 7 });
    expect(openFdCount()).toBe(before);
    await fresh.version();
    const cases: Array<[string, Uint8Array, number]> = [
      ['GET_INFO', message(2, Command.DEVICE_GET_INFO, 16, 16), Errno.EINVAL],
      ['GET_REGION_INFO', message(3, Command.DEVICE_GET_REGION_INFO, 32, 32), Errno.EINVAL],
      ['GET_IRQ_INFO', message(4, Command.DEVICE_GET_IRQ_INFO, 16, 16), Errno.EINVAL],
      ['DMA_UNMAP', message(5, Command.DMA_UNMAP, 24, 24), Errno.EINVAL],
      ['REGION_READ', encodeRegionAccess(6, Command.REGION_READ, { offset: 0, region: CONFIG, count: 4 }), Errno.EINVAL],
      ['REGION_WRITE', encodeRegionAccess(7, Command.REGION_WRITE, { offset: 0x3c, region: CONFIG, count: 1 }, new Uint8Array([5])), Errno.EINVAL],
      ['DEVICE_RESET', message(8, Command.DEVICE_RESET, 0), Errno.EINVAL],
      ['SET_IRQS DATA_NONE', encodeIrqSet(9, { index: MSIX_IRQ, flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1 }), Errno.EINVAL],
      ['a reply', message(10, Command.DEVICE_GET_INFO, 16, 16, HeaderFlag.TYPE_REPLY), Errno.EINVAL],
      ['an unknown command', message(11, 99, 0), Errno.ENOSYS],
    ];
    for (const [what, bytes, errno] of cases) {
      before = openFdCount();
      await expectErrorReply(fresh, bytes, errno, { fds: [fd], what });
      expect(openFdCount(), `${what}: the fd is closed`).toBe(before);
    }
    // The interrupt line was not changed by the refused config write.
    expect([...(await fresh.regionRead(CONFIG, 0x3c, 1))]).toEqual([0]);
    // DMA_MAP takes one fd, not two.
    before = openFdCount();
    const map = encodeDmaMap(12, { flags: 3, offset: 0, address: 0x10_0000, size: PAGE });
    await expectErrorReply(fresh, map, Errno.EINVAL, { fds: [fd, second] });
    expect(openFdCount()).toBe(before);
    // A posted write with an fd: no reply, the fd closed, the failure counted.
    before = openFdCount();
    const posted = encodeRegionAccess(13, Command.REGION_WRITE, { offset: 0x3c, region: CONFIG, count: 1 }, new Uint8Array([5]), HeaderFlag.NO_REPLY);
    await fresh.sendRaw(posted, [fd]);
    await expectStillServing(fresh);
    expect(openFdCount()).toBe(before);
    expect(controller.server.stats.postedErrors).toBe(1);
    expect([...(await fresh.regionRead(CONFIG, 0x3c, 1))]).toEqual([0]);
    expect(controller.device.controller.stats().resets).toBe(0);
    await expectBystanderServes();
  });

  it('more than 16 fds in one sendmsg: EINVAL, every fd closed', async () => {
    const { controller } = await startNvme();
    const client = await rawClient(controller.config.socketPath);
    const fds = eventfds(17);
    const before = openFdCount();
    const setIrqs = encodeIrqSet(1, { index: MSIX_IRQ, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 17 });
    await expectErrorReply(client, setIrqs, Errno.EINVAL, { fds });
    expect(openFdCount()).toBe(before);
    await expectStillServing(client);
  });

  it('more than 16 fds for one message are refused even when they come in several sendmsgs', async () => {
    const { controller } = await startNvme();
    const client = await rawClient(controller.config.socketPath);
    const fds = eventfds(32);
    const before = openFdCount();
    const setIrqs = encodeIrqSet(1, { index: MSIX_IRQ, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 32 });
    expect(native.sendmsg(client.fd, setIrqs.subarray(0, 10), fds.slice(0, 16))).toBe(10);
    expect(native.sendmsg(client.fd, setIrqs.subarray(10), fds.slice(16))).toBe(setIrqs.length - 10);
    const reply = await client.readReply();
    expect(reply.header.error, 'docs/vfio-user.md: "Up to 16 fds per message"').toBe(Errno.EINVAL);
    expect(openFdCount()).toBe(before);
  });

  it('fds arriving with an incomplete message are bounded (a client cannot exhaust the process fd table)', async () => {
    const { controller } = await startNvme();
    const client = await rawClient(controller.config.socketPath);
    const [fd] = eventfds(1) as [number];
    const before = openFdCount();
    // A 96-byte REGION_WRITE, its body trickling in one byte per sendmsg, each byte carrying 16 fds.
    const write = encodeRegionAccess(1, Command.REGION_WRITE, { offset: 0, region: CONFIG, count: 64 }, new Uint8Array(64));
    await client.sendRaw(write.subarray(0, HEADER_SIZE));
    for (let index = 0; index < 20; index++) {
      expect(native.sendmsg(client.fd, write.subarray(HEADER_SIZE + index, HEADER_SIZE + index + 1), new Array(16).fill(fd))).toBe(1);
    }
    await sleep(30);
    const held = openFdCount() - before;
    // Completing the message must still get a clean EINVAL and release everything.
    await client.sendRaw(write.subarray(HEADER_SIZE + 20));
    const reply = await client.readReply();
    expect(reply.header.error).toBe(Errno.EINVAL);
    expect(openFdCount()).toBe(before);
    expect(held, 'fds the server held for one incomplete message').toBeLessThanOrEqual(16);
  });
});

// =================================================================================================================

describe('region accesses on the NVMe function', () => {
  it('out of range, absent, oversized and misaligned accesses get EINVAL; the controller state is untouched', async () => {
    const { controller } = await startNvme();
    const client = await rawClient(controller.config.socketPath);
    const reads: Array<[string, number, number, number]> = [
      ['BAR0 crossing its end', 0, 0x4000 - 2, 4],
      ['BAR0 past its end', 0, 0x4000, 4],
      ['MSI-X BAR past its end', MSIX_BAR, 0x2000, 4],
      ['config past 4 KiB', CONFIG, 4094, 4],
      ['count 0', 0, 0, 0],
      ['count above max_data_xfer_size', 0, 0, 1024 * 1024 + 1],
      ['region 9', 9, 0, 4],
      ['region 0xffffffff', 0xffff_ffff, 0, 4],
      ...[1, 2, 3, 5, 6, 8].map((region): [string, number, number, number] => [`absent region ${region}`, region, 0, 4]),
    ];
    for (const [what, region, offset, count] of reads) {
      await expectErrorReply(client, encodeRegionAccess(1, Command.REGION_READ, { offset, region, count }), Errno.EINVAL, { what });
    }
    // An offset beyond 2^53 (upper dword 0xffffffff).
    const huge = encodeRegionAccess(2, Command.REGION_READ, { offset: 0, region: 0, count: 4 });
    new DataView(huge.buffer).setUint32(HEADER_SIZE + 4, 0xffff_ffff, true);
    await expectErrorReply(client, huge, Errno.EINVAL, { size: 32 + 4 });
    const writes: Array<[string, number, number, number]> = [
      ['MSI-X table: unaligned dword', MSIX_BAR, 2, 4],
      ['MSI-X table: 2-byte write', MSIX_BAR, 0, 2],
      ['MSI-X table: 3-byte write', MSIX_BAR, 4, 3],
      ['BAR0 crossing its end', 0, 0x4000 - 2, 4],
      ['config past 4 KiB', CONFIG, 4095, 2],
      ['absent BAR2', 2, 0, 4],
    ];
    for (const [what, region, offset, count] of writes) {
      const bytes = encodeRegionAccess(3, Command.REGION_WRITE, { offset, region, count }, new Uint8Array(count).fill(0xff));
      await expectErrorReply(client, bytes, Errno.EINVAL, { what, size: 32 });
    }
    // A read asked without a reply: nothing comes back, the failure is counted.
    await client.sendRaw(encodeRegionAccess(4, Command.REGION_READ, { offset: 0, region: 0, count: 4 }, undefined, HeaderFlag.NO_REPLY));
    await expectStillServing(client);
    expect(controller.server.stats.postedErrors).toBe(1);
    // The MSI-X table is as at power-on: every vector masked (Vector Control = 1).
    expect([...(await client.regionRead(MSIX_BAR, 12, 4))]).toEqual([1, 0, 0, 0]);
    expect(controller.device.controller.stats().state).toBe('disabled');
    await expectBystanderServes();
  });

  it('misaligned or odd-sized BAR0 register and doorbell writes have no effect (they are ignored, not errors)', async () => {
    const { controller } = await startNvme();
    const guest = await attach(controller.config.socketPath);
    const client = guest.client;
    // CC.EN in a 2-byte write and in an unaligned dword: ignored.
    await client.regionWrite(0, Reg.CC, new Uint8Array([1, 0]));
    await client.regionWrite(0, Reg.CC + 1, new Uint8Array([1, 0, 0, 0]));
    expect(await guest.driver.readRegister32(Reg.CC)).toBe(0);
    expect(await guest.driver.status()).toBe(0);
    await guest.driver.enable();
    await guest.driver.createIoQueuePair(1, 16, 1);
    // A doorbell written unaligned or as 2 / 8 bytes rings nothing.
    const cid = guest.driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 });
    await client.regionWrite(0, 0x1000 + 2 * 4 + 1, new Uint8Array([1, 0, 0, 0]));
    await client.regionWrite(0, 0x1000 + 2 * 4, new Uint8Array([1, 0]));
    await client.regionWrite(0, 0x1000 + 2 * 4, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
    await sleep(10);
    expect((await guest.driver.reap(1)).length).toBe(0);
    await guest.driver.ringSubmission(1);
    expect((await guest.driver.wait(1, cid)).status).toBe(Status.SUCCESS);
    expect(controller.device.controller.stats().state).toBe('ready');
    await expectBystanderServes();
  });
});

// =================================================================================================================

describe('DMA maps on the NVMe controller', () => {
  it('refuses overlapping, unaligned and out-of-range maps; the guest RAM mapping keeps working', async () => {
    const { controller } = await startNvme();
    const guest = await attach(controller.config.socketPath);
    const memfd = native.memfdCreate('hostile-extra', 4 * PAGE);
    cleanups.push(() => native.close(memfd));
    const client = guest.client;
    const before = openFdCount();
    await expectErrno(client.dmaMap({ iova: GUEST_RAM_IOVA - PAGE, size: 2 * PAGE, fd: memfd }), Errno.EEXIST);
    await expectErrno(client.dmaMap({ iova: RAM_END - PAGE, size: 2 * PAGE, fd: memfd }), Errno.EEXIST);
    await expectErrno(client.dmaMap({ iova: GUEST_RAM_IOVA + PAGE, size: PAGE, fd: memfd }), Errno.EEXIST);
    await expectErrno(client.dmaMap({ iova: RAM_END + 0x800, size: PAGE, fd: memfd }), Errno.EINVAL);
    await expectErrno(client.dmaMap({ iova: RAM_END, size: PAGE - 1, fd: memfd }), Errno.EINVAL);
    await expectErrno(client.dmaMap({ iova: RAM_END, size: PAGE, fd: memfd, offset: 100 }), Errno.EINVAL);
    await expectErrno(client.dmaMap({ iova: 2 ** 53 - PAGE, size: 2 * PAGE, fd: memfd }), Errno.EINVAL);
    await expectErrno(client.dmaMap({ iova: RAM_END, size: 8 * PAGE, fd: memfd }), Errno.EINVAL); // past the memfd's end
    expect(openFdCount(), 'fds of refused maps are closed').toBe(before);
    // An unmap that would split the RAM mapping is refused; the mapping survives.
    await expectErrno(client.dmaUnmap({ iova: GUEST_RAM_IOVA, size: PAGE }), Errno.EINVAL);
    expect(controller.server.stats.errors).toBe(9);
    await guest.driver.enable();
    await guest.driver.createIoQueuePair(1, 16, 1);
    const data = pattern(PAGE, 77);
    expect((await guest.driver.write(1, 16, data)).status).toBe(Status.SUCCESS);
    expect(Buffer.compare((await guest.driver.read(1, 16, 8)).data, data)).toBe(0);
    await expectBystanderServes();
  });

  it('never writes through a read-only mapping, never reads a write-only one (the guest gets Data Transfer Error)', async () => {
    const { controller } = await startNvme();
    const guest = await attach(controller.config.socketPath);
    const memfd = native.memfdCreate('hostile-ro', 4 * PAGE);
    const local = new Uint8Array(native.mmap(memfd, 0, 4 * PAGE, PROT_READ | PROT_WRITE));
    cleanups.push(() => {
      native.munmap(local.buffer as ArrayBuffer);
      native.close(memfd);
    });
    local.fill(0xaa);
    const READ_ONLY = 0x8000_0000;
    const WRITE_ONLY = 0x9000_0000;
    await guest.client.dmaMap({ iova: READ_ONLY, size: 2 * PAGE, fd: memfd, flags: 1 });
    await guest.client.dmaMap({ iova: WRITE_ONLY, size: 2 * PAGE, fd: memfd, offset: 2 * PAGE, flags: 2 });
    const driver = guest.driver;
    await driver.enable();
    await driver.createIoQueuePair(1, 16, 1);
    expect((await driver.write(1, 0, pattern(PAGE, 5))).status).toBe(Status.SUCCESS);
    // Read (device writes guest memory) into the read-only mapping: PRP and SGL.
    const prp = await driver.submit(1, { opcode: IoOpcode.READ, nsid: 1, prp1: READ_ONLY, cdw12: 7 });
    expect(prp.status).toBe(Status.DATA_TRANSFER_ERROR);
    const viaSgl = await driver.submit(1, { opcode: IoOpcode.READ, nsid: 1, ...sgl(READ_ONLY, PAGE, SGL_DATA_BLOCK), cdw12: 7 });
    expect(viaSgl.status).toBe(Status.DATA_TRANSFER_ERROR);
    // Identify into it, and an I/O completion queue placed in it.
    const identify = await driver.submit(0, { opcode: 0x06, cdw10: 1, prp1: READ_ONLY });
    expect(identify.status).toBe(Status.DATA_TRANSFER_ERROR);
    const cq = await driver.createIoCompletionQueue(2, 16, 1, { iova: READ_ONLY });
    expect(cq.status).toBe(Status.INVALID_FIELD);
    // Write (device reads guest memory) from the write-only mapping.
    const write = await driver.submit(1, { opcode: IoOpcode.WRITE, nsid: 1, prp1: WRITE_ONLY, cdw12: 7 });
    expect(write.status).toBe(Status.DATA_TRANSFER_ERROR);
    expect(local.every((byte) => byte === 0xaa)).toBe(true);
    expect(Buffer.compare((await driver.read(1, 0, 8)).data, pattern(PAGE, 5))).toBe(0);
    expect(controller.device.controller.stats().state).toBe('ready');
    await expectBystanderServes();
  });
});

// =================================================================================================================

describe('guest-side hostile input (through the socket)', () => {
  async function readyGuest(overrides: Partial<ControllerConfig> = {}) {
    const started = await startNvme(overrides);
    const guest = await attach(started.controller.config.socketPath);
    await guest.driver.enable();
    await guest.driver.createIoQueuePair(1, 16, 1);
    return { ...started, guest, driver: guest.driver };
  }

  async function postAer(driver: Guest['driver']): Promise<number> {
    const cid = driver.place(0, { opcode: 0x0c });
    await driver.ringSubmission(0);
    return cid;
  }

  it('PRPs and SGLs pointing outside guest memory: Data Transfer Error, nothing else touched', async () => {
    const { controller, driver, guest } = await readyGuest();
    expect((await driver.write(1, 0, pattern(3 * PAGE, 9))).status).toBe(Status.SUCCESS);
    const list = driver.alloc(PAGE);
    const listView = new DataView(driver.bytes(list, PAGE).buffer, driver.bytes(list, PAGE).byteOffset, PAGE);
    listView.setBigUint64(0, BigInt(NOWHERE), true); // a PRP list entry outside
    const inside = driver.alloc(3 * PAGE);
    const segment = driver.alloc(PAGE);
    const segmentView = new DataView(driver.bytes(segment, PAGE).buffer, driver.bytes(segment, PAGE).byteOffset, PAGE);
    segmentView.setBigUint64(0, BigInt(NOWHERE), true); // descriptor 0: a data block outside
    segmentView.setUint32(8, PAGE, true);
    segmentView.setUint8(15, SGL_DATA_BLOCK << 4);
    const snapshot = guest.memory.slice();
    const cases: Array<[string, Partial<Parameters<typeof driver.submit>[1]>, number]> = [
      ['PRP1 outside', { prp1: NOWHERE, cdw12: 7 }, Status.DATA_TRANSFER_ERROR],
      ['PRP1 at 2^64 - 4096', { prp1: 0xffff_ffff_ffff_f000n, cdw12: 7 }, Status.DATA_TRANSFER_ERROR],
      ['PRP1 on the last page, the rest past the end of RAM', { prp1: RAM_END - PAGE, prp2: RAM_END, cdw12: 15 }, Status.DATA_TRANSFER_ERROR],
      ['PRP2 (second page) outside', { prp1: inside, prp2: NOWHERE, cdw12: 15 }, Status.DATA_TRANSFER_ERROR],
      ['PRP list pointer outside', { prp1: inside, prp2: NOWHERE, cdw12: 23 }, Status.DATA_TRANSFER_ERROR],
      ['PRP list entry outside', { prp1: inside, prp2: list, cdw12: 23 }, Status.DATA_TRANSFER_ERROR],
      ['PRP1 not dword aligned', { prp1: inside + 2, cdw12: 0 }, Status.PRP_OFFSET_INVALID],
      ['SGL data block outside', { ...sgl(NOWHERE, PAGE, SGL_DATA_BLOCK), cdw12: 7 }, Status.DATA_TRANSFER_ERROR],
      ['SGL data block crossing the end of RAM', { ...sgl(RAM_END - 512, PAGE, SGL_DATA_BLOCK), cdw12: 7 }, Status.DATA_TRANSFER_ERROR],
      ['SGL last segment outside', { ...sgl(NOWHERE, 16, SGL_LAST_SEGMENT), cdw12: 7 }, Status.DATA_TRANSFER_ERROR],
      ['SGL segment list with a data block outside', { ...sgl(segment, 16, SGL_LAST_SEGMENT), cdw12: 7 }, Status.DATA_TRANSFER_ERROR],
      ['SGL segment of absurd length', { ...sgl(segment, 0xffff_fff0, SGL_SEGMENT), cdw12: 7 }, Status.DATA_TRANSFER_ERROR],
    ];
    for (const [what, fields, status] of cases) {
      const completion = await driver.submit(1, { opcode: IoOpcode.READ, nsid: 1, ...fields } as Parameters<typeof driver.submit>[1]);
      expect(completion.status, what).toBe(status);
    }
    // Writes from outside memory, admin data in and out.
    expect((await driver.submit(1, { opcode: IoOpcode.WRITE, nsid: 1, prp1: NOWHERE, cdw12: 0 })).status).toBe(Status.DATA_TRANSFER_ERROR);
    expect((await driver.submit(0, { opcode: 0x06, cdw10: 1, prp1: NOWHERE })).status).toBe(Status.DATA_TRANSFER_ERROR);
    expect((await driver.submit(0, { opcode: 0x02, nsid: 0xffffffff, cdw10: 1 | (15 << 16), prp1: NOWHERE })).status).toBe(
      Status.DATA_TRANSFER_ERROR,
    );
    // The data buffer the failed reads named is exactly as before (nothing was read into it).
    const insideAt = inside - GUEST_RAM_IOVA;
    expect(Buffer.compare(guest.memory.subarray(insideAt, insideAt + 3 * PAGE), snapshot.subarray(insideAt, insideAt + 3 * PAGE))).toBe(0);
    // The namespace was not written by the failed writes.
    expect(Buffer.compare((await driver.read(1, 0, 24)).data, pattern(3 * PAGE, 9))).toBe(0);
    expect(controller.device.controller.stats().state).toBe('ready');
    await expectBystanderServes();
  });

  it('invalid queue identifiers: the statuses the spec names, error events for doorbells of missing queues', async () => {
    const { controller, driver } = await readyGuest();
    const cqBase = driver.alloc(16 * 16);
    const sqBase = driver.alloc(16 * 64);
    const createCq = (qid: number) =>
      driver.submit(0, { opcode: 0x05, prp1: cqBase, cdw10: (qid | (15 << 16)) >>> 0, cdw11: 3 | (1 << 16) });
    const createSq = (qid: number, cqid: number) =>
      driver.submit(0, { opcode: 0x01, prp1: sqBase, cdw10: (qid | (15 << 16)) >>> 0, cdw11: (1 | (cqid << 16)) >>> 0 });
    for (const qid of [0, 1, 32, 511, 0xffff]) {
      expect((await createCq(qid)).status, `Create I/O CQ ${qid}`).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    }
    expect((await createSq(2, 0)).status).toBe(Status.COMPLETION_QUEUE_INVALID);
    expect((await createSq(2, 0x7fff)).status).toBe(Status.COMPLETION_QUEUE_INVALID);
    for (const qid of [0, 1, 32, 0xffff]) {
      expect((await createSq(qid, 1)).status, `Create I/O SQ ${qid}`).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    }
    for (const qid of [0, 7, 0xffff]) {
      expect((await driver.submit(0, { opcode: 0x00, cdw10: qid })).status, `Delete I/O SQ ${qid}`).toBe(Status.INVALID_QUEUE_IDENTIFIER);
      expect((await driver.submit(0, { opcode: 0x04, cdw10: qid })).status, `Delete I/O CQ ${qid}`).toBe(Status.INVALID_QUEUE_IDENTIFIER);
    }
    expect((await driver.submit(0, { opcode: 0x04, cdw10: 1 })).status).toBe(Status.INVALID_QUEUE_DELETION);
    // Doorbells of queues that do not exist (qid 7, 200 and 511, the last doorbell): one error event, no effect.
    const aer = await postAer(driver);
    await driver.writeDoorbell(2 * 7, 1);
    await driver.writeDoorbell(2 * 200 + 1, 3);
    await driver.writeDoorbell(1023, 0xffff_ffff);
    const event = await driver.wait(0, aer);
    expect(event.dw0 & 0xffff).toBe(AsyncEvent.TYPE_ERROR | (AsyncEvent.INFO_ERROR_INVALID_DOORBELL_REGISTER << 8));
    expect((event.dw0 >>> 16) & 0xff).toBe(LogPageId.ERROR_INFORMATION);
    expect((await driver.submit(1, { opcode: IoOpcode.FLUSH, nsid: 1 })).status).toBe(Status.SUCCESS);
    expect(controller.device.controller.stats().ioSubmissionQueues).toBe(1);
    await expectBystanderServes();
  });

  it('doorbell values beyond the queue size: ignored, reported as error events, the queue keeps its old value', async () => {
    const { controller, driver } = await readyGuest();
    const check = async (doorbell: number, value: number): Promise<void> => {
      const aer = await postAer(driver);
      await driver.writeDoorbell(doorbell, value);
      const event = await driver.wait(0, aer);
      expect(event.dw0 & 0xffff, `doorbell ${doorbell} = ${value}`).toBe(
        AsyncEvent.TYPE_ERROR | (AsyncEvent.INFO_ERROR_INVALID_DOORBELL_VALUE << 8),
      );
      // Reading the error log re-arms error events; the queue still works from where it was.
      expect((await driver.getLogPage(LogPageId.ERROR_INFORMATION, 64)).completion.status).toBe(Status.SUCCESS);
      expect((await driver.submit(1, { opcode: IoOpcode.FLUSH, nsid: 1 })).status).toBe(Status.SUCCESS);
    };
    await check(2, 16); // SQ tail = size
    await check(2, 0xffff_ffff);
    await check(3, 16); // CQ head = size
    await check(3, 0xffff_ffff);
    await check(3, 9); // CQ head that would consume entries never posted
    await check(0, 1000); // admin SQ tail beyond its 32 entries
    expect(controller.device.controller.stats().state).toBe('ready');
    await expectBystanderServes();
  });

  it('transfers over MDTS fail with Invalid Field before any guest memory is touched; Write Zeroes is not a transfer', async () => {
    const { controller, driver } = await readyGuest(); // MDTS 8: 1 MiB = 2048 blocks of 512 bytes
    expect((await driver.read(1, 0, 2048)).completion.status).toBe(Status.SUCCESS);
    expect((await driver.read(1, 0, 2049)).completion.status).toBe(Status.INVALID_FIELD);
    expect((await driver.write(1, 0, new Uint8Array(2049 * BLOCK))).status).toBe(Status.INVALID_FIELD);
    // 4096 blocks (2 MiB, inside the 4 MiB namespace) with a data pointer that points nowhere: the size check comes
    // first. (NLB 65536 would be LBA Out of Range here, which is checked before MDTS.)
    for (const opcode of [IoOpcode.READ, IoOpcode.WRITE, IoOpcode.COMPARE]) {
      const completion = await driver.submit(1, { opcode, nsid: 1, prp1: NOWHERE, cdw12: 4095 });
      expect(completion.status, `opcode ${opcode}`).toBe(Status.INVALID_FIELD);
    }
    const sglOver = await driver.submit(1, { opcode: IoOpcode.READ, nsid: 1, ...sgl(NOWHERE, 0xffff_ffff, SGL_DATA_BLOCK), cdw12: 4095 });
    expect(sglOver.status).toBe(Status.INVALID_FIELD);
    // Get Log Page asking for more than MDTS.
    const log = await driver.submit(0, { opcode: 0x02, nsid: 0xffffffff, cdw10: (1 | (0xffff << 16)) >>> 0, cdw11: 0x7, prp1: NOWHERE });
    expect(log.status).toBe(Status.INVALID_FIELD);
    expect((await driver.submit(1, { opcode: IoOpcode.READ, nsid: 1, prp1: NOWHERE, cdw12: 0xffff })).status).toBe(
      Status.LBA_OUT_OF_RANGE,
    );
    expect((await driver.submit(1, { opcode: IoOpcode.WRITE_ZEROES, nsid: 1, cdw12: 4095 })).status).toBe(Status.SUCCESS);
    expect(controller.device.controller.stats().state).toBe('ready');
    await expectBystanderServes();
  });

  it('commands on a disabled, failed or shut-down controller are not fetched and post nothing', async () => {
    const { controller } = await startNvme();
    const guest = await attach(controller.config.socketPath);
    const driver = guest.driver;
    // Never enabled: doorbells of every kind do nothing.
    await driver.writeDoorbell(0, 1);
    await driver.writeDoorbell(1, 1);
    await driver.writeDoorbell(2, 5);
    expect(await driver.status()).toBe(0);

    await driver.enable();
    await driver.createIoQueuePair(1, 16, 1);
    const adminSq = driver.submissionQueueMemory(0);
    const adminCq = driver.completionQueueMemory(0);
    const ioSq = driver.submissionQueueMemory(1);
    const ioCq = driver.completionQueueMemory(1);
    const stale = (sq: Uint8Array, slot: number, opcode: number) => {
      sq.fill(0, slot * 64, slot * 64 + 64);
      sq[slot * 64] = opcode;
      sq[slot * 64 + 2] = 0x55; // cid
      sq[slot * 64 + 4] = 1; // nsid
    };
    const quiet = async (what: string, run: () => Promise<void>) => {
      const cqs = [adminCq.slice(), ioCq.slice()];
      const interrupts = [...guest.interrupts];
      const commands = { ...controller.device.controller.stats().commands };
      await run();
      await sleep(10);
      expect(Buffer.compare(adminCq, cqs[0]!), `${what}: admin CQ untouched`).toBe(0);
      expect(Buffer.compare(ioCq, cqs[1]!), `${what}: I/O CQ untouched`).toBe(0);
      expect(guest.interrupts, `${what}: no interrupts`).toEqual(interrupts);
      expect(controller.device.controller.stats().commands, `${what}: nothing executed`).toEqual(commands);
    };

    // CC.EN = 0: the queues are gone; ringing their old doorbells fetches nothing.
    await driver.disable();
    stale(adminSq, 2, 0x06);
    stale(ioSq, 1, IoOpcode.FLUSH);
    await quiet('disabled', async () => {
      await driver.writeDoorbell(0, 3);
      await driver.writeDoorbell(2, 2);
      await driver.writeDoorbell(3, 1);
    });
    expect(controller.device.controller.stats().state).toBe('disabled');

    // Controller Fatal Status (admin SQ outside guest memory): doorbells are ignored until a reset.
    const csts = await driver.configureAdminQueues({ asq: NOWHERE });
    expect(csts & 2).toBe(2);
    await quiet('failed', async () => {
      await driver.writeDoorbell(0, 1);
      await driver.writeDoorbell(2, 1);
    });
    expect(controller.device.controller.stats().state).toBe('failed');

    // Shut down: the queues still exist but nothing more is fetched.
    await driver.enable();
    await driver.createIoQueuePair(1, 16, 1);
    await driver.shutdown();
    const sq = driver.submissionQueueMemory(1);
    stale(sq, 0, IoOpcode.FLUSH);
    const cqAfter = driver.completionQueueMemory(1);
    const before = cqAfter.slice();
    await driver.writeDoorbell(2, 1);
    await sleep(10);
    expect(Buffer.compare(cqAfter, before), 'shut down: nothing fetched').toBe(0);
    expect(controller.device.controller.stats().state).toBe('shut-down');

    // And the controller comes back after a reset.
    await driver.enable();
    await driver.createIoQueuePair(1, 16, 1);
    expect((await driver.submit(1, { opcode: IoOpcode.FLUSH, nsid: 1 })).status).toBe(Status.SUCCESS);
    await expectBystanderServes();
  });

  it('polled mode: a doorbell written while the controller is disabled does not keep the poller spinning', async () => {
    const { controller } = await startNvme({ doorbellMode: 'polled' });
    const guest = await attach(controller.config.socketPath);
    expect(guest.polledDoorbells).toBe(true);
    const poll = vi.spyOn(controller.device.controller, 'pollDoorbells');
    await guest.driver.writeDoorbell(0, 3); // straight into the shared page, controller disabled
    // The worker polls the page itself for its spin window (0.5 ms) after the wake-up; after that nothing may
    // wake it again for the same write. On a loaded machine the wake-up itself can come late: wait for the
    // scans to start and to stop (bounded: a poller that keeps waking us never stops them), then count.
    const deadline = Date.now() + 3000;
    while (poll.mock.calls.length === 0 && Date.now() < deadline) await sleep(5);
    for (let seen = -1; poll.mock.calls.length !== seen && Date.now() < deadline; ) {
      seen = poll.mock.calls.length;
      await sleep(20);
    }
    const afterSpin = poll.mock.calls.length;
    await sleep(100);
    const calls = poll.mock.calls.length - afterSpin;
    poll.mockRestore();
    await guest.driver.enable(); // the enable must not be disturbed either
    expect((await guest.driver.identify(1)).completion.status).toBe(Status.SUCCESS);
    expect(calls, 'doorbell scans in the 100 ms after the spin window, for one write to a disabled controller').toBeLessThan(10);
  });

  it('a Keep Alive Timer beyond what setTimeout holds neither floods warnings nor busy-loops', async () => {
    const { controller, driver } = await readyGuest();
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(`${warning.name}: ${warning.message}`);
    };
    process.on('warning', onWarning);
    try {
      const set = await driver.setFeatures(0x0f, 0xffff_ffff);
      expect(set.status).toBe(Status.SUCCESS);
      await sleep(30);
      expect(controller.device.controller.stats().state).toBe('ready');
      await driver.disable(); // stops the timer (and the flood, if any)
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.slice(0, 1), `${warnings.length} process warnings in 30 ms`).toEqual([]);
  });
});

// =================================================================================================================

describe('interrupt fds (SET_IRQS) on the PCI function', () => {
  it('fds refused by the PCI function are closed exactly once (no double close across worker threads)', async () => {
    const { controller } = await startNvme();
    const client = await rawClient(controller.config.socketPath);
    const [fd] = eventfds(1) as [number];
    const memfd = native.memfdCreate('not-an-eventfd', PAGE);
    cleanups.push(() => native.close(memfd));
    /** The fd numbers native.close() was called with while the server handled one request. */
    const closesDuring = async (bytes: Uint8Array, fds: number[]): Promise<number[]> => {
      const close = vi.spyOn(native, 'close');
      try {
        await expectErrorReply(client, bytes, Errno.EINVAL, { fds });
        return close.mock.calls.map((call) => call[0]);
      } finally {
        close.mockRestore();
      }
    };
    // MASK through an eventfd (the server lets it through, the PCI function refuses it) ...
    const mask = encodeIrqSet(1, { index: MSIX_IRQ, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_MASK, start: 0, count: 1 });
    const maskCloses = await closesDuring(mask, [fd]);
    // ... and an INTx resample "eventfd" that cannot be watched (a regular file).
    const unmask = encodeIrqSet(2, { index: 0, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_UNMASK, start: 0, count: 1 });
    const unmaskCloses = await closesDuring(unmask, [memfd]);
    // One fd arrived with each request: exactly one close for it. A second close of the same number can hit whatever
    // another worker thread of the process opened under that number in between.
    expect.soft(maskCloses, 'closes while refusing MASK|EVENTFD').toHaveLength(1);
    expect.soft(unmaskCloses, 'closes while refusing an unwatchable INTx resample fd').toHaveLength(1);
    await expectStillServing(client);
  });

  it('an interrupt fd that is not an eventfd (a blocking socket, a memfd) is refused', async () => {
    const { controller } = await startNvme();
    const client = await rawClient(controller.config.socketPath);
    const sink = path.join(dir, `sink-${socketCounter++}.sock`);
    const listener = native.listenUnix(sink, 0o600, 1);
    const blocking = native.connectUnix(sink); // nobody ever reads it: a write blocks once its buffer is full
    const memfd = native.memfdCreate('not-an-eventfd', PAGE);
    cleanups.push(() => [listener, blocking, memfd].forEach((fd) => native.close(fd)));
    const results: number[] = [];
    for (const fd of [blocking, memfd]) {
      const bind = encodeIrqSet(1, { index: MSIX_IRQ, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1 });
      results.push((await request(client, bind, [fd])).header.error);
    }
    // Nothing is ever signalled here (MSI-X stays disabled), so a wrongly accepted fd cannot hang this process.
    client.close();
    expect(results).toEqual([Errno.EINVAL, Errno.EINVAL]);
  });
});

// =================================================================================================================

describe('wire and register fuzz with a bystander moving data', () => {
  it('random messages and random BAR/config writes: only precise errors, nothing unexpected, the bystander unharmed', async () => {
    const { controller, lines } = await startNvme();
    const guest = await attach(controller.config.socketPath, 'cloud-hypervisor');
    await guest.driver.enable();
    let state = 12345;
    const random = (): number => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const bystanderWork = (async () => {
      for (let index = 0; index < 10; index++) await expectBystanderServes();
    })();
    const client = guest.client;
    for (let index = 0; index < 400; index++) {
      const region = [0, 0, MSIX_BAR, CONFIG][Math.floor(random() * 4)]!;
      const size = region === 0 ? 0x4000 : region === MSIX_BAR ? 0x2000 : 4096;
      const count = [1, 2, 4, 8, 3][Math.floor(random() * 5)]!;
      let offset = Math.floor(random() * size);
      if (random() < 0.6) offset &= ~3;
      if (region === CONFIG && offset < 8) continue; // keep memory space / bus mastering on
      const data = new Uint8Array(count).map(() => Math.floor(random() * 256));
      try {
        await client.regionWrite(region, offset, data);
      } catch {
        // cloud-hypervisor flavour: errors are not thrown, replies stay in sync
      }
      if (index % 20 === 0) {
        const garbage = newMessage(0x8000 + index, Math.floor(random() * 24), Math.floor(random() * 48));
        garbage.bytes.subarray(HEADER_SIZE).forEach((_, at, body) => (body[at] = Math.floor(random() * 256)));
        await client.sendRaw(garbage.bytes);
        await client.readReply();
      }
    }
    await bystanderWork;
    expect(lines.filter((line) => line['level'] === 'error' && !String(line['msg']).startsWith('controller fatal: cannot enable'))).toEqual([]);
    expect(lines.filter((line) => String(line['msg']).includes('unexpected'))).toEqual([]);
    expect(controller.server.clientConnected).toBe(true);
    expect([...(await client.regionRead(CONFIG, 0, 4))]).toEqual(CONFIG_ID);
    expect(client.unreadBytes).toBe(0);
  });
});

// =================================================================================================================
// `vfiod serve`'s topology: every controller in a worker thread of one process (src/serve/supervisor.ts), from the
// compiled dist/ that `npm test` builds first. Attacks that a single thread cannot survive are made here.

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const built = fs.existsSync(path.join(root, 'dist', 'serve', 'supervisor.js'));

describe.skipIf(!built)('one vfiod process, several controllers (worker threads)', () => {
  let child: ChildProcess | undefined;
  let exited: Promise<string> | undefined;
  const sockets = { hang: '', crash: '', bystander: '', shrink: '', shrinkPolled: '', unblock: '' };
  let good: Guest | undefined;
  /** vfiod's log lines (stderr), parsed. */
  const logLines: LogFields[] = [];

  beforeAll(async () => {
    for (const name of Object.keys(sockets) as Array<keyof typeof sockets>) {
      sockets[name] = path.join(dir, `serve-${name}.sock`);
    }
    const supervisor = pathToFileURL(path.join(root, 'dist', 'serve', 'supervisor.js')).href;
    const config = pathToFileURL(path.join(root, 'dist', 'serve', 'config.js')).href;
    // A file, not `node -e`: the workers inherit execArgv.
    const script = path.join(dir, 'serve-three.mjs');
    fs.writeFileSync(
      script,
      `const { serve } = await import(${JSON.stringify(supervisor)});
      const { controllerConfig } = await import(${JSON.stringify(config)});
      const [hang, crash, bystander, shrink, shrinkPolled, unblock] = process.argv.slice(2);
      process.exit(await serve([
        controllerConfig({ socketPath: hang, namespaces: ['memory:1M'] }),
        controllerConfig({ socketPath: crash, namespaces: ['memory:1M'], doorbellMode: 'polled' }),
        controllerConfig({ socketPath: bystander, namespaces: ['memory:4M'] }),
        controllerConfig({ socketPath: shrink, namespaces: ['memory:1M'] }),
        controllerConfig({ socketPath: shrinkPolled, namespaces: ['memory:1M'], doorbellMode: 'polled' }),
        controllerConfig({ socketPath: unblock, namespaces: ['memory:1M'] }),
      ]));\n`,
    );
    const proc = spawn(process.execPath, [script, ...Object.values(sockets)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child = proc;
    exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve(`exit code ${code}, signal ${signal}`)));
    await new Promise<void>((resolve, reject) => {
      let listening = 0;
      let buffered = '';
      proc.stderr!.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        let newline;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          try {
            logLines.push(JSON.parse(line) as LogFields);
          } catch {
            logLines.push({ msg: line });
          }
          if (line.includes('"msg":"listening"') && line.includes('"doorbellMode"') && ++listening === 6) resolve();
        }
      });
      void exited!.then((how) => reject(new Error(`vfiod serve ended before listening: ${how}`)));
    });
    good = await Guest.attach(sockets.bystander, { flavour: 'cloud-hypervisor', ramBytes: RAM_BYTES });
    await good.driver.enable();
    await good.driver.createIoQueuePair(1, 16, 1);
  });

  afterAll(() => {
    good?.close();
    child?.kill('SIGKILL');
  });

  async function goodServes(lba: number): Promise<void> {
    const data = pattern(PAGE, lba);
    expect((await good!.driver.write(1, lba, data)).status).toBe(Status.SUCCESS);
    expect(Buffer.compare((await good!.driver.read(1, lba, 8)).data, data)).toBe(0);
  }

  it('an interrupt into a saturated blocking eventfd wedges neither this controller nor the others', async () => {
    const client = VfioUserClient.connect(sockets.hang, { flavour: 'qemu', replyTimeoutMs: 1000 });
    cleanups.push(() => client.close());
    await client.version();
    // A genuine eventfd, but blocking and with its counter at the maximum: one more write(2) would block forever.
    const fd = native.eventfdCreate(0, false);
    cleanups.push(() => native.close(fd));
    for (let index = 0; index < 2048; index++) native.eventfdWrite(fd, 2 ** 53 - 1);
    native.eventfdWrite(fd, 2046);
    await client.setIrqs({ index: MSIX_IRQ, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1, fds: [fd] });
    // Fire vector 0 (the loopback SET_IRQS TRIGGER|DATA_NONE; a guest completion does the same), then talk again.
    await client.sendRaw(encodeIrqSet(77, { index: MSIX_IRQ, flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1 }));
    await sleep(50);
    await goodServes(64);
    const answered = await client.readReply().then(
      (reply) => reply.header.msgId === 77,
      () => false,
    );
    expect(answered, 'the controller answered the trigger instead of blocking in write(2)').toBe(true);
    await expectStillServing(client);
  });

  it('a client that shrinks the doorbell memfd it was given (polled mode) does not kill the process', async () => {
    const client = VfioUserClient.connect(sockets.crash, { flavour: 'qemu' });
    cleanups.push(() => client.close());
    await client.version();
    const bar0 = await client.getRegionInfo(0);
    expect(bar0.fd).toBeDefined();
    cleanups.push(() => native.close(bar0.fd!));
    // Our BAR0 memfd: the native poller and the controller read its doorbell page. Its size is sealed.
    expect(() => fs.ftruncateSync(bar0.fd!, 0)).toThrow(expect.objectContaining({ code: 'EPERM' }));
    expect(() => fs.ftruncateSync(bar0.fd!, 1 << 20)).toThrow(expect.objectContaining({ code: 'EPERM' }));
    expect(fs.fstatSync(bar0.fd!).size).toBe(0x4000);
    const outcome = await Promise.race([exited!, sleep(300).then(() => 'running')]);
    expect(outcome, 'vfiod (all its controllers) after the client truncated the BAR0 memfd').toBe('running');
    await goodServes(128);
  });

  /** The error lines vfiod logged for `socket` since `from` (an index into logLines). */
  const errorsFor = (socket: string, from: number): LogFields[] =>
    logLines.slice(from).filter((line) => line['level'] === 'error' && line['socket'] === socket);

  it('a client that shrinks its guest memory under a command\'s data fails that controller only (CSTS.CFS, a log line) until it maps whole memory again', async () => {
    const guest = await Guest.attach(sockets.shrink, { flavour: 'cloud-hypervisor', ramBytes: RAM_BYTES });
    cleanups.push(() => guest.close());
    const { driver } = guest;
    await driver.enable();
    await driver.createIoQueuePair(1, 16, 1);
    expect((await driver.write(1, 0, pattern(PAGE, 5))).status).toBe(Status.SUCCESS);
    const logsFrom = logLines.length;
    // The driver allocates queues from the bottom of guest RAM; the data is its last page.
    const data = GUEST_RAM_IOVA + RAM_BYTES - PAGE;
    driver.bytes(data, PAGE).set(pattern(PAGE, 6));
    // The client (cloud-hypervisor does not seal guest memory) cuts the upper half off, then the guest writes it.
    // This process does not touch the lost half again; vfiod reads it for the Write.
    fs.ftruncateSync(guest.memfd, RAM_BYTES / 2);
    driver.place(1, { opcode: IoOpcode.WRITE, nsid: 1, prp1: data, cdw12: PAGE / BLOCK - 1 });
    await driver.ringSubmission(1);
    await driver.waitForStatus((csts) => (csts & 2) !== 0, 'CSTS.CFS after the lost page was read', 20_000);
    expect(await Promise.race([exited!, sleep(200).then(() => 'running')]), 'vfiod after SIGBUS on guest memory').toBe('running');
    await expect.poll(() => errorsFor(sockets.shrink, logsFrom).length, { timeout: 5000 }).toBeGreaterThan(0);
    const [fatal] = errorsFor(sockets.shrink, logsFrom);
    expect(fatal!['msg']).toContain(`controller fatal: guest memory lost at iova 0x${data.toString(16)}`);
    expect(fatal!['iova']).toBe('0x' + data.toString(16));
    expect(fatal!['client']).toEqual(expect.any(Number));
    // The other controllers of the process serve on; nobody else logged an error.
    await goodServes(192);
    expect(logLines.slice(logsFrom).filter((line) => line['level'] === 'error' && line['socket'] !== sockets.shrink)).toEqual([]);
    // Failed it stays while the lost mapping is there: a reset and re-enable fails at once.
    await expect(driver.enable()).rejects.toThrow(/controller fatal status while enabling/);
    // The client maps whole memory again (unmap, grow the file back, map): the controller works again.
    await guest.client.dmaUnmap({ iova: GUEST_RAM_IOVA, size: RAM_BYTES });
    fs.ftruncateSync(guest.memfd, RAM_BYTES);
    await guest.client.dmaMap({ iova: GUEST_RAM_IOVA, size: RAM_BYTES, fd: guest.memfd });
    await driver.enable();
    await driver.createIoQueuePair(1, 16, 1);
    expect((await driver.write(1, 8, pattern(PAGE, 8))).status).toBe(Status.SUCCESS);
    expect(Buffer.compare((await driver.read(1, 8, PAGE / BLOCK)).data, pattern(PAGE, 8))).toBe(0);
  });

  it('polled doorbells: a queue in shrunk guest memory fails that controller only', async () => {
    const guest = await Guest.attach(sockets.shrinkPolled, { flavour: 'cloud-hypervisor', ramBytes: RAM_BYTES });
    cleanups.push(() => guest.close());
    const { driver } = guest;
    expect(guest.polledDoorbells).toBe(true);
    await driver.enable();
    await driver.createIoQueuePair(1, 16, 1);
    expect((await driver.write(1, 0, pattern(PAGE, 7))).status).toBe(Status.SUCCESS);
    const logsFrom = logLines.length;
    // The next command is in the I/O submission queue; then all of guest RAM goes, and the doorbell (in the sealed
    // BAR0 page, written as plain memory) makes the poller thread wake the controller, which reads the lost queue.
    driver.place(1, { opcode: IoOpcode.FLUSH, nsid: 1 });
    fs.ftruncateSync(guest.memfd, 0);
    await driver.ringSubmission(1);
    await driver.waitForStatus((csts) => (csts & 2) !== 0, 'CSTS.CFS after the lost queue was read', 20_000);
    expect(await Promise.race([exited!, sleep(200).then(() => 'running')]), 'vfiod after SIGBUS on a queue').toBe('running');
    await expect.poll(() => errorsFor(sockets.shrinkPolled, logsFrom).length, { timeout: 5000 }).toBeGreaterThan(0);
    expect(errorsFor(sockets.shrinkPolled, logsFrom)[0]!['msg']).toMatch(/^controller fatal: guest memory lost at iova 0x/);
    await goodServes(256);
  });

  it('a client that makes its interrupt eventfd blocking again and saturates it cannot wedge the controller', async () => {
    const client = VfioUserClient.connect(sockets.unblock, { flavour: 'qemu', replyTimeoutMs: 5000 });
    cleanups.push(() => client.close());
    await client.version();
    const fd = native.eventfdCreate(0, true);
    cleanups.push(() => native.close(fd));
    await client.setIrqs({ index: MSIX_IRQ, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1, fds: [fd] });
    // vfiod made the fd non-blocking when it took it. The flag belongs to the open file description, which the client
    // shares: clear it again, then fill the counter to the maximum (2^64 - 2), so the next write(2) of 1 blocks.
    native.setNonBlocking(fd, false);
    const maximum = Buffer.alloc(8);
    maximum.writeBigUInt64LE(0xffff_ffff_ffff_fffen);
    expect(fs.writeSync(fd, maximum)).toBe(8);
    const trigger = (msgId: number) =>
      encodeIrqSet(msgId, { index: MSIX_IRQ, flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1 });
    const started = performance.now();
    for (let msgId = 80; msgId < 83; msgId++) {
      native.setNonBlocking(fd, false); // and again before every interrupt
      const reply = await request(client, trigger(msgId));
      expect(reply.header.msgId).toBe(msgId);
      expect(reply.header.error).toBe(0);
    }
    // Each interrupt waits at most the watchdog's ~0.2 s (generous bound for a busy machine).
    expect(performance.now() - started).toBeLessThan(4000);
    await goodServes(320);
    await expectStillServing(client);
  });

  it('SIGTERM ends the process within seconds while that client still holds its blocking, saturated eventfd', async () => {
    const client = VfioUserClient.connect(sockets.unblock, { flavour: 'qemu', replyTimeoutMs: 5000 });
    cleanups.push(() => client.close());
    await client.version();
    const fd = native.eventfdCreate(0, true);
    cleanups.push(() => native.close(fd));
    await client.setIrqs({ index: MSIX_IRQ, flags: IrqSetFlag.DATA_EVENTFD | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1, fds: [fd] });
    native.setNonBlocking(fd, false);
    const maximum = Buffer.alloc(8);
    maximum.writeBigUInt64LE(0xffff_ffff_ffff_fffen);
    fs.writeSync(fd, maximum);
    // Posted (no reply awaited): vfiod's thread may be inside the write when SIGTERM comes.
    await client.sendRaw(encodeIrqSet(90, { index: MSIX_IRQ, flags: IrqSetFlag.DATA_NONE | IrqSetFlag.ACTION_TRIGGER, start: 0, count: 1 }));
    await sleep(20);
    const started = performance.now();
    child!.kill('SIGTERM');
    const outcome = await Promise.race([exited!, sleep(10_000).then(() => 'still running after 10 s')]);
    expect(outcome).toBe('exit code 0, signal null');
    expect(performance.now() - started).toBeLessThan(10_000);
  });
});
