/**
 * Hostile input from the guest side: NVMe commands, queues and data pointers a guest should not use, through the
 * socket, against a real controller.
 */
import { describe, expect, it, vi } from 'vitest';
import { AsyncEvent, IoOpcode, LogPageId, Status } from '../../src/spec/nvme.js';
import { type ControllerConfig } from '../../src/serve/config.js';
import { Guest, GUEST_RAM_IOVA } from '../helpers/hypervisor.js';
import { pattern } from '../helpers/nvme-harness.js';
import { sleep } from '../helpers/common.js';
import {
  PAGE,
  BLOCK,
  RAM_END,
  NOWHERE,
  startNvme,
  attach,
  message,
  sgl,
  SGL_DATA_BLOCK,
  SGL_SEGMENT,
  SGL_LAST_SEGMENT,
  expectBystanderServes,
} from '../helpers/hostile-harness.js';

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
