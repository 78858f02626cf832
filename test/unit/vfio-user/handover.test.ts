/**
 * The vfio-user layer's part of a live upgrade (docs/restart.md), in one process: a server is quiesced and
 * snapshotted, its state and fds travel over a real hand-over connection (so the successor holds its own fd
 * numbers, as a new process would), and a second server adopts them. The client in between sends half a message
 * with an fd before the hand-over and the rest after it, and never reconnects.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native, PROT_READ, PROT_WRITE } from '../../../src/native/index.js';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { VfioUserServer, type VfioUserServerState } from '../../../src/vfio-user/server.js';
import { DeviceFlag, IrqFlag, RegionFlag } from '../../../src/spec/vfio.js';
import {
  type IrqInfo,
  type RegionInfo,
  type SetIrqsRequest,
  type VfioUserDevice,
} from '../../../src/vfio-user/device.js';
import { Command, DmaMapFlag, HeaderFlag, encodeDmaMap } from '../../../src/vfio-user/protocol.js';
import { FdCollector, FdSource, fromBase64, toBase64 } from '../../../src/util/handover-fds.js';
import { memoryLogger } from '../../../src/util/log.js';
import { HandoverChannel } from '../../../src/serve/handover-channel.js';
import { VfioUserClient } from '../../helpers/vfio-user-client.js';

const PAGE = 4096;
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** BAR0: one page of RAM. MSI-X: 4 vectors whose eventfds are kept. State: the page and the eventfds. */
class HandoverDevice implements VfioUserDevice {
  readonly flags = DeviceFlag.PCI | DeviceFlag.RESET;
  readonly regions: RegionInfo[] = Array.from({ length: 9 }, (_, index) =>
    index === 0 ? { size: PAGE, flags: RegionFlag.READ | RegionFlag.WRITE } : { size: 0, flags: 0 },
  );
  readonly irqs: IrqInfo[] = [{ count: 0, flags: 0 }, { count: 0, flags: 0 }, { count: 4, flags: IrqFlag.EVENTFD }, { count: 0, flags: 0 }, { count: 0, flags: 0 }];
  readonly bar0 = new Uint8Array(PAGE);
  eventfds: number[] = [-1, -1, -1, -1];
  quiesced = false;
  started = false;

  regionRead(_index: number, offset: number, dst: Uint8Array): void {
    dst.set(this.bar0.subarray(offset, offset + dst.length));
  }
  regionWrite(_index: number, offset: number, src: Uint8Array): void {
    this.bar0.set(src, offset);
  }
  setIrqs(request: SetIrqsRequest): void {
    request.fds.forEach((fd, index) => (this.eventfds[request.start + index] = fd));
  }
  reset(): void {}
  afterBatch(): void {}
  async disconnected(): Promise<void> {}
  signal(vector: number): void {
    native.eventfdWrite(this.eventfds[vector]!, 1);
  }
  async quiesce(): Promise<void> {
    this.quiesced = true;
  }
  resume(): void {
    this.quiesced = false;
  }
  snapshot(fds: FdCollector): unknown {
    return { version: 1, bar0: toBase64(this.bar0), eventfds: this.eventfds.map((fd) => (fd >= 0 ? fds.add(fd) : -1)) };
  }
  restore(state: unknown, fds: FdSource): void {
    const saved = state as { bar0: string; eventfds: number[] };
    this.bar0.set(fromBase64(saved.bar0, 'bar0', PAGE));
    this.eventfds = saved.eventfds.map((index) => (index >= 0 ? fds.take(index) : -1));
    this.quiesced = true;
  }
  start(): void {
    this.started = true;
    this.quiesced = false;
  }
}

/** Carries a snapshot and its fds over a unix socket, so the receiver holds fresh fd numbers (like a new process). */
async function carry(state: VfioUserServerState, fds: number[], dir: string): Promise<{ state: VfioUserServerState; fds: number[] }> {
  const socket = path.join(dir, 'carry.sock');
  const listener = native.listenUnix(socket, 0o600, 1);
  const sender = HandoverChannel.connect(socket);
  let accepted: number | null = null;
  for (let tries = 0; accepted === null && tries < 100; tries++) {
    accepted = native.accept(listener);
    if (accepted === null) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  native.close(listener);
  const receiver = new HandoverChannel(accepted!);
  sender.send({ type: 'state', state }, fds);
  const received = await receiver.receive(10_000, 'state');
  sender.close();
  receiver.close();
  return { state: received.message['state'] as VfioUserServerState, fds: received.fds };
}

describe('vfio-user server hand-over', () => {
  it('a successor adopts the listening socket, the client, its DMA mappings, eventfds and half a message with its fd', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfiod-handover-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, 'dev.sock');
    const { logger } = memoryLogger();
    const deviceA = new HandoverDevice();
    const memoryA = new GuestMemory();
    const serverA = new VfioUserServer({ socketPath, device: deviceA, memory: memoryA, logger });
    await serverA.listen();

    const client = VfioUserClient.connect(socketPath, { flavour: 'cloud-hypervisor' });
    cleanups.push(() => client.close());
    await client.version();
    const ram = native.memfdCreate('handover-ram', 4 * PAGE);
    cleanups.push(() => native.close(ram));
    const ramView = new Uint8Array(native.mmap(ram, 0, 4 * PAGE, PROT_READ | PROT_WRITE));
    await client.dmaMap({ iova: 0x10_0000, size: 4 * PAGE, fd: ram });
    const irq = native.eventfdCreate(0, true);
    cleanups.push(() => native.close(irq));
    await client.enableIrqs(2, [irq]);
    await client.regionWrite(0, 16, new Uint8Array([1, 2, 3, 4]));

    // Half a DMA_MAP, with its fd: the rest comes after the hand-over.
    const second = native.memfdCreate('handover-second', PAGE);
    cleanups.push(() => native.close(second));
    const message = encodeDmaMap(77, { flags: DmaMapFlag.READ | DmaMapFlag.WRITE, offset: 0, address: 0x20_0000, size: PAGE });
    await client.sendRaw(message.subarray(0, 20), [second]);
    for (let tries = 0; tries < 50; tries++) await new Promise((resolve) => setImmediate(resolve));

    await serverA.quiesce();
    expect(deviceA.quiesced).toBe(true);
    const collector = new FdCollector();
    const snapshot = serverA.snapshot(collector);
    expect(snapshot.session?.dma).toHaveLength(1);
    expect(Buffer.from(snapshot.session!.input!.pending, 'base64')).toHaveLength(20);
    expect(snapshot.session!.input!.fdBatches).toHaveLength(1);

    const carried = await carry(snapshot, collector.fds, dir);
    expect(carried.fds).toHaveLength(collector.fds.length);
    expect(carried.fds.some((fd) => collector.fds.includes(fd))).toBe(false);
    const deviceB = new HandoverDevice();
    const memoryB = new GuestMemory();
    const serverB = new VfioUserServer({ socketPath, device: deviceB, memory: memoryB, logger });
    serverB.adopt(carried.state, new FdSource(carried.fds));
    cleanups.push(() => serverB.close());
    expect(deviceB.started).toBe(false);
    expect(memoryB.regions.map(({ iova, size, readable, writable }) => ({ iova, size, readable, writable }))).toEqual([
      { iova: 0x10_0000, size: 4 * PAGE, readable: true, writable: true },
    ]);
    serverB.start();
    expect(deviceB.started).toBe(true);
    // The predecessor holds its own copies; it would now exit (here: it is left quiesced).
    cleanups.push(() => serverA.close());

    // The rest of the message: the successor completes it with the fd that came with its first half.
    await client.sendRaw(message.subarray(20));
    const reply = await client.readReply();
    expect(reply.header).toMatchObject({ msgId: 77, command: Command.DMA_MAP, flags: HeaderFlag.TYPE_REPLY, error: 0 });
    expect(memoryB.regions.map((region) => region.iova)).toEqual([0x10_0000, 0x20_0000]);

    // Device state, guest memory and interrupts carried over; the same connection serves on.
    expect(await client.regionRead(0, 16, 4)).toEqual(new Uint8Array([1, 2, 3, 4]));
    ramView[5] = 0x5a;
    expect(memoryB.view(0x10_0000 + 5, 1, 'read')[0]).toBe(0x5a);
    deviceB.signal(0);
    expect(native.eventfdRead(irq)).toBe(1);
    native.munmap(ramView.buffer as ArrayBuffer);
  });

  it('resume() after a quiesce serves on where it stopped', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfiod-handover-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, 'dev.sock');
    const device = new HandoverDevice();
    const server = new VfioUserServer({ socketPath, device, memory: new GuestMemory(), logger: memoryLogger().logger });
    await server.listen();
    cleanups.push(() => server.close());
    const client = VfioUserClient.connect(socketPath, { flavour: 'qemu' });
    cleanups.push(() => client.close());
    await client.version();
    await server.quiesce();
    // A request sent while quiesced waits in the socket, then is answered after resume.
    const read = client.regionRead(0, 0, 4);
    let answered = false;
    void read.then(() => (answered = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(answered).toBe(false);
    server.resume();
    expect(device.quiesced).toBe(false);
    expect(await read).toEqual(new Uint8Array(4));
  });
});
