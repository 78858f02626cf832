/**
 * End to end: a hypervisor + guest driver (test/helpers/hypervisor.ts) talks to a real `startController` over its
 * vfio-user socket, in QEMU-like and cloud-hypervisor-like modes and in both doorbell modes, and the data written by
 * the guest is checked in the backing file itself.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSync, readSync, closeSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { controllerConfig, type ControllerConfig, type DoorbellMode } from '../../src/serve/config.js';
import { startController, type RunningController } from '../../src/serve/controller.js';
import { memoryLogger } from '../../src/util/log.js';
import { IdentifyCns, Status } from '../../src/spec/nvme.js';
import { Guest, GUEST_RAM_IOVA } from '../helpers/hypervisor.js';
import type { Flavour } from '../helpers/vfio-user-client.js';
import { pattern } from '../helpers/nvme-harness.js';
import { temporaryDir } from '../helpers/common.js';

const BLOCK = 512;
let dir: string;
const running: RunningController[] = [];
const guests: Guest[] = [];

beforeEach(() => {
  dir = temporaryDir('vfiod-e2e-');
});

afterEach(async () => {
  for (const guest of guests.splice(0)) guest.close();
  for (const controller of running.splice(0)) await controller.close();
  rmSync(dir, { recursive: true, force: true });
});

async function start(overrides: Partial<ControllerConfig> = {}): Promise<{ controller: RunningController; log: ReturnType<typeof memoryLogger>['lines'] }> {
  const { logger, lines } = memoryLogger();
  const config = controllerConfig({
    socketPath: path.join(dir, 'nvme0.sock'),
    namespaces: [`file:${path.join(dir, 'disk.img')}?size=8M`],
    ...overrides,
  });
  const controller = await startController(config, logger);
  running.push(controller);
  return { controller, log: lines };
}

async function attach(socketPath: string, flavour: Flavour): Promise<Guest> {
  const guest = await Guest.attach(socketPath, { flavour });
  guests.push(guest);
  return guest;
}

function readFileRange(file: string, offset: number, length: number): Uint8Array {
  const fd = openSync(file, 'r');
  try {
    const bytes = new Uint8Array(length);
    readSync(fd, bytes, 0, length, offset);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

const cases: Array<[Flavour, DoorbellMode]> = [
  ['qemu', 'interrupt'],
  ['cloud-hypervisor', 'interrupt'],
  ['qemu', 'polled'],
  ['cloud-hypervisor', 'polled'],
];

describe.each(cases)('%s client, %s doorbells', (flavour, doorbellMode) => {
  it('writes through PRPs and SGLs land in the backing file and read back intact, with interrupts', async () => {
    const { controller } = await start({ doorbellMode, identity: { serialNumber: 'E2E-SERIAL-1' } });
    const guest = await attach(controller.config.socketPath, flavour);
    expect(guest.polledDoorbells).toBe(doorbellMode === 'polled');

    const driver = guest.driver;
    await driver.enable();
    const identify = await driver.identify(IdentifyCns.CONTROLLER);
    expect(identify.completion.status).toBe(Status.SUCCESS);
    expect(new TextDecoder().decode(identify.data.subarray(4, 24)).trim()).toBe('E2E-SERIAL-1');
    await driver.createIoQueuePair(1, 64, 1);

    const image = path.join(dir, 'disk.img');
    const writes: Array<{ lba: number; data: Uint8Array; dataPointer: 'prp' | 'sgl' | 'sgl-segments'; offset?: number }> = [
      { lba: 0, data: pattern(BLOCK, 1), dataPointer: 'prp' },
      { lba: 100, data: pattern(3 * 4096, 2), dataPointer: 'prp' }, // PRP1 + PRP2
      { lba: 2048, data: pattern(64 * 1024, 3), dataPointer: 'prp' }, // PRP list
      { lba: 4000, data: pattern(8 * 1024, 4), dataPointer: 'prp', offset: 512 }, // PRP1 with an offset
      { lba: 9000, data: pattern(16 * 1024, 5), dataPointer: 'sgl' },
      { lba: 12000, data: pattern(20 * 1024, 6), dataPointer: 'sgl-segments' },
    ];
    for (const write of writes) {
      const completion = await driver.write(1, write.lba, write.data, {
        dataPointer: write.dataPointer,
        ...(write.offset !== undefined ? { bufferOffset: write.offset } : {}),
      });
      expect(completion.status, `write at LBA ${write.lba}`).toBe(Status.SUCCESS);
    }
    const flush = await driver.submit(1, { opcode: 0x00, nsid: 1 });
    expect(flush.status).toBe(Status.SUCCESS);

    for (const write of writes) {
      expect(readFileRange(image, write.lba * BLOCK, write.data.length)).toEqual(write.data);
      const read = await driver.read(1, write.lba, write.data.length / BLOCK, { dataPointer: write.dataPointer });
      expect(read.completion.status).toBe(Status.SUCCESS);
      expect(read.data).toEqual(write.data);
    }
    expect(guest.interrupts[1]).toBeGreaterThan(0);
    if (doorbellMode === 'polled') expect(guest.trappedDoorbellWrites).toBe(0);

    // Many commands in flight at once.
    const commands = Array.from({ length: 48 }, (_, index) => ({ lba: 14000 + index * 8, data: pattern(4096, 100 + index) }));
    const written = await Promise.all(commands.map((command) => driver.write(1, command.lba, command.data)));
    expect(written.map((completion) => completion.status)).toEqual(commands.map(() => Status.SUCCESS));
    const reads = await Promise.all(commands.map((command) => driver.read(1, command.lba, 8)));
    reads.forEach((read, index) => expect(read.data).toEqual(commands[index]!.data));
    // Past the end of the 8 MiB namespace: a precise error, nothing written.
    const beyond = await driver.write(1, 16384 - 4, pattern(4096, 7));
    expect(beyond.status).toBe(Status.LBA_OUT_OF_RANGE);

    await driver.shutdown();
  });
});

describe('controller lifecycle over the socket', () => {
  it('a disconnect returns the controller to power-on state and the next client works', async () => {
    const { controller } = await start();
    const first = await attach(controller.config.socketPath, 'qemu');
    await first.driver.enable();
    await first.driver.createIoQueuePair(1, 16, 1);
    expect((await first.driver.write(1, 7, pattern(BLOCK, 9))).status).toBe(Status.SUCCESS);
    first.close();
    guests.splice(guests.indexOf(first), 1);

    const second = await attach(controller.config.socketPath, 'cloud-hypervisor');
    expect(await second.driver.status()).toBe(0); // CSTS: not ready, no fatal status
    await second.driver.enable();
    await second.driver.createIoQueuePair(1, 16, 1);
    const read = await second.driver.read(1, 7, 1);
    expect(read.data).toEqual(pattern(BLOCK, 9));
  });

  it('a hypervisor that reconnects the instant it disconnected is served, not refused (10 times in a row)', async () => {
    const { controller } = await start({ namespaces: ['memory:1M'] });
    for (let round = 0; round < 10; round++) {
      const guest = await attach(controller.config.socketPath, round % 2 ? 'qemu' : 'cloud-hypervisor');
      expect(await guest.driver.status()).toBe(0);
      guest.close();
      guests.splice(guests.indexOf(guest), 1);
    }
    expect(controller.server.stats.connectionsRejected).toBe(0);
    expect(controller.server.stats.connectionsAccepted).toBe(10);
  });

  it('keeps serial number and namespace ids across restarts (persisted next to the namespace)', async () => {
    const ids = async (): Promise<{ serial: string; nguid: string }> => {
      const { controller } = await start();
      const guest = await attach(controller.config.socketPath, 'qemu');
      await guest.driver.enable();
      const ctrl = await guest.driver.identify(IdentifyCns.CONTROLLER);
      const ns = await guest.driver.identify(IdentifyCns.NAMESPACE, 1);
      const result = {
        serial: new TextDecoder().decode(ctrl.data.subarray(4, 24)),
        nguid: Buffer.from(ns.data.subarray(104, 120)).toString('hex'),
      };
      guest.close();
      guests.splice(guests.indexOf(guest), 1);
      await running.pop()!.close();
      return result;
    };
    const first = await ids();
    const second = await ids();
    expect(first.nguid).not.toBe('0'.repeat(32));
    expect(second).toEqual(first);
    expect(statSync(path.join(dir, 'disk.img.vfiod.json')).isFile()).toBe(true);
  });

  it('a DMA unmap while file I/O is in flight waits for it; the controller stays usable', async () => {
    const { controller } = await start();
    const guest = await attach(controller.config.socketPath, 'qemu');
    await guest.driver.enable();
    await guest.driver.createIoQueuePair(1, 64, 1);
    await guest.driver.blockSize(1);
    // Eight 4 KiB file reads into guest RAM, and right behind their doorbell on the socket the unmap of all RAM.
    for (let index = 0; index < 8; index++) {
      guest.driver.place(1, { opcode: 0x02, nsid: 1, prp1: guest.driver.alloc(4096), cdw10: index * 8, cdw12: 7 });
    }
    await guest.driver.ringSubmission(1);
    const reply = await guest.client.dmaUnmap({ iova: GUEST_RAM_IOVA, size: 32 * 1024 * 1024 });
    expect(reply.size).toBe(32 * 1024 * 1024);
    // The reply came only after every read that was reading into that memory had finished. Their completion queue
    // went away with the RAM, so the controller reports a fatal status (CSTS.CFS) instead of touching it.
    const stats = controller.device.controller.stats();
    expect(stats.inFlight).toBe(0);
    expect(stats.state).toBe('failed');
    expect(controller.server.clientConnected).toBe(true);

    // The guest's recovery path: RAM back, controller reset, I/O works again.
    const memfd = (guest as unknown as { memfd: number }).memfd;
    await guest.client.dmaMap({ iova: GUEST_RAM_IOVA, size: 32 * 1024 * 1024, fd: memfd });
    await guest.driver.disable();
    await guest.driver.enable();
    await guest.driver.createIoQueuePair(2, 16, 1);
    const read = await guest.driver.read(1, 0, 8, { qid: 2 });
    expect(read.completion.status).toBe(Status.SUCCESS);
  });
});

describe('isolation: hostile guest input against one controller does not disturb another', () => {
  it('controller B keeps serving correct data while controller A gets garbage', async () => {
    const a = await start({ socketPath: path.join(dir, 'a.sock'), namespaces: ['memory:4M'] });
    const b = await start({ socketPath: path.join(dir, 'b.sock'), namespaces: [`file:${path.join(dir, 'b.img')}?size=4M`] });
    const hostile = await attach(a.controller.config.socketPath, 'qemu');
    const good = await attach(b.controller.config.socketPath, 'cloud-hypervisor');
    await hostile.driver.enable();
    await hostile.driver.createIoQueuePair(1, 16, 1);
    await good.driver.enable();
    await good.driver.createIoQueuePair(1, 16, 1);

    const goodWork = (async () => {
      for (let index = 0; index < 20; index++) {
        const data = pattern(4096, 500 + index);
        expect((await good.driver.write(1, index * 8, data)).status).toBe(Status.SUCCESS);
        expect((await good.driver.read(1, index * 8, 8)).data).toEqual(data);
      }
    })();

    // A: PRP outside guest RAM, an invalid queue id doorbell, a tail beyond the queue, a transfer over MDTS.
    const outside = await hostile.driver.submit(1, { opcode: 0x02, nsid: 1, prp1: 0x7000_0000_0000, cdw12: 0 });
    expect(outside.status).toBe(Status.DATA_TRANSFER_ERROR);
    await hostile.driver.writeDoorbell(2 * 200, 1);
    await hostile.driver.writeDoorbell(2, 999);
    const overMdts = await hostile.driver.submit(1, { opcode: 0x02, nsid: 1, prp1: GUEST_RAM_IOVA, cdw12: 0xffff });
    expect(overMdts.status).not.toBe(Status.SUCCESS);
    // Region accesses out of range get vfio-user errors, not a crash.
    await expect(hostile.client.regionRead(0, 0x4000 - 2, 8)).rejects.toThrow();
    await goodWork;
    expect(b.controller.device.controller.stats().state).toBe('ready');
  });
});
