/**
 * Hostile input at the PCI function: region accesses and interrupt fds (SET_IRQS) a client should not send.
 */
import { once } from 'node:events';
import { describe, expect, it, vi } from 'vitest';
import { native } from '../../src/native/index.js';
import { IoOpcode, Reg, Status } from '../../src/spec/nvme.js';
import { Errno, IrqSetFlag } from '../../src/spec/vfio.js';
import { Command, HEADER_SIZE, HeaderFlag, encodeIrqSet, encodeRegionAccess } from '../../src/vfio-user/protocol.js';
import { sleep } from '../helpers/common.js';
import {
  PAGE,
  CONFIG,
  MSIX_BAR,
  MSIX_IRQ,
  cleanups,
  uniqueSocket,
  startNvme,
  rawClient,
  attach,
  eventfds,
  request,
  expectErrorReply,
  expectStillServing,
  expectBystanderServes,
} from '../helpers/hostile-harness.js';

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
    const sink = uniqueSocket('sink');
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
