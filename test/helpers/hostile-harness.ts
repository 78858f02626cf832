/**
 * What the hostile-input tests of every layer share (test/hostile/*.test.ts): a temporary directory, NVMe controllers
 * on real sockets, raw vfio-user clients, error-reply checks, and a bystander controller that keeps moving data
 * while a hostile client does its worst (every file that imports this gets one, started in its beforeAll).
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
import { Guest, GUEST_RAM_IOVA } from './hypervisor.js';
import { pattern } from './nvme-harness.js';
import { VfioUserClient, VfioUserReplyError, type Flavour } from './vfio-user-client.js';
import { sleep, temporaryDir } from './common.js';

export const PAGE = 4096;
export const BLOCK = 512;
export const RAM_BYTES = 8 * 1024 * 1024;
export const RAM_END = GUEST_RAM_IOVA + RAM_BYTES;
/** Far outside anything mapped, but a safe integer. */
export const NOWHERE = 0x7000_0000_0000;
export const CONFIG = 7;
export const MSIX_BAR = 4;
export const MSIX_IRQ = 2;
/** Config space bytes 0..3: vendor 0x4e58, device 0x0001 (DEFAULT_PCI_IDS). */
export const CONFIG_ID = [0x58, 0x4e, 0x01, 0x00];
/** max_data_xfer_size 1 MiB: the server's largest accepted message is 16 + 16 + 1 MiB. */
export const MAX_MESSAGE = HEADER_SIZE + BodySize.REGION_ACCESS + 1024 * 1024;

export function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

// ---------------------------------------------------------------------------------------------------------------
// Controllers and clients, cleaned up after each test (the bystander lives for the whole file).

export let dir: string;
export const cleanups: Array<() => unknown> = [];

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

/** A socket path in the test directory that no other test uses. */
export function uniqueSocket(prefix: string): string {
  return path.join(dir, `${prefix}-${socketCounter++}.sock`);
}

export async function startNvme(
  overrides: Partial<ControllerConfig> = {},
): Promise<{ controller: RunningController; lines: LogFields[] }> {
  const { logger, lines } = memoryLogger();
  const config = controllerConfig({
    socketPath: uniqueSocket('hostile'),
    namespaces: ['memory:4M'],
    ...overrides,
  });
  const controller = await startController(config, logger);
  cleanups.push(() => controller.close());
  return { controller, lines };
}

/** A raw vfio-user client that has negotiated the version (QEMU-like reader: errors throw VfioUserReplyError). */
export async function rawClient(socketPath: string, options: { negotiate?: boolean; flavour?: Flavour } = {}): Promise<VfioUserClient> {
  const client = VfioUserClient.connect(socketPath, { flavour: options.flavour ?? 'qemu' });
  cleanups.push(() => client.close());
  if (options.negotiate ?? true) await client.version();
  return client;
}

export async function attach(socketPath: string, flavour: Flavour = 'qemu'): Promise<Guest> {
  const guest = await Guest.attach(socketPath, { flavour, ramBytes: RAM_BYTES });
  cleanups.push(() => guest.close());
  return guest;
}

export function eventfds(count: number): number[] {
  const fds = Array.from({ length: count }, () => native.eventfdCreate(0, true));
  cleanups.push(() => fds.forEach((fd) => native.close(fd)));
  return fds;
}

/** Sends `bytes` (with `fds`) and reads the one reply. */
export async function request(client: VfioUserClient, bytes: Uint8Array, fds: number[] = []) {
  await client.sendRaw(bytes, fds);
  return client.readReply();
}

/** Sends a request and checks it is answered with exactly this errno (and, when given, a reply of this size). */
export async function expectErrorReply(
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

export async function expectErrno(promise: Promise<unknown>, errno: number): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the request should have failed').toBeInstanceOf(VfioUserReplyError);
  expect((error as VfioUserReplyError).errno).toBe(errno);
}

/** The attacked controller still answers this client, in sync. */
export async function expectStillServing(client: VfioUserClient): Promise<void> {
  expect([...(await client.regionRead(CONFIG, 0, 4))]).toEqual(CONFIG_ID);
  expect(client.unreadBytes).toBe(0);
}

/** A message with zero-filled body of `bodyLength` bytes; argsz (first body word) set when it fits. */
export function message(msgId: number, command: number, bodyLength: number, argsz?: number, flags = 0): Uint8Array {
  const { bytes, view } = newMessage(msgId, command, bodyLength, flags);
  if (argsz !== undefined && bodyLength >= 4) view.setUint32(HEADER_SIZE, argsz, true);
  return bytes;
}

export function sgl(address: number | bigint, length: number, type: number): { flags: number; prp1: bigint; prp2: bigint } {
  // SGL1: address (SQE 24..31), length (32..35), identifier (39) = type << 4; PSDT = 01b.
  return { flags: 0x40, prp1: BigInt(address), prp2: BigInt(length) | (BigInt(type << 4) << 56n) };
}
export const SGL_DATA_BLOCK = 0;
export const SGL_SEGMENT = 2;
export const SGL_LAST_SEGMENT = 3;

// ---------------------------------------------------------------------------------------------------------------
// The bystander: another controller in the same process, moving data the whole time.

export let bystander: RunningController | undefined;
export let bystanderGuest: Guest | undefined;
export let bystanderLba = 0;

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
export async function expectBystanderServes(): Promise<void> {
  const lba = (bystanderLba = (bystanderLba + 8) % 8000);
  const data = pattern(PAGE, 1000 + lba);
  expect((await bystanderGuest!.driver.write(1, lba, data)).status).toBe(Status.SUCCESS);
  const read = await bystanderGuest!.driver.read(1, lba, PAGE / BLOCK);
  expect(read.completion.status).toBe(Status.SUCCESS);
  expect(Buffer.compare(read.data, data)).toBe(0);
  expect(bystander!.device.controller.stats().state).toBe('ready');
}

// =================================================================================================================
