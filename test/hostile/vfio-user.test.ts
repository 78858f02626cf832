/**
 * Hostile input at the vfio-user layer: malformed, oversized and out-of-order messages, and DMA maps, against an
 * NVMe controller on a real socket. Every case gets a precise error reply and the controller, and a bystander, keep
 * serving.
 */
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { native, PROT_READ, PROT_WRITE } from '../../src/native/index.js';
import { IoOpcode, Status } from '../../src/spec/nvme.js';
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
import { GUEST_RAM_IOVA } from '../helpers/hypervisor.js';
import { pattern } from '../helpers/nvme-harness.js';
import { sleep } from '../helpers/common.js';
import {
  PAGE,
  RAM_END,
  CONFIG,
  MSIX_IRQ,
  MAX_MESSAGE,
  openFdCount,
  cleanups,
  startNvme,
  rawClient,
  attach,
  eventfds,
  expectErrorReply,
  expectErrno,
  expectStillServing,
  message,
  sgl,
  SGL_DATA_BLOCK,
  expectBystanderServes,
} from '../helpers/hostile-harness.js';

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
