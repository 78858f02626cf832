/**
 * Live upgrade of `vfiod serve` (docs/restart.md), as an operator runs it: the real bin/vfiod.js in child
 * processes, a hypervisor + guest driver (test/helpers/hypervisor.ts) in this process doing verified writes and
 * reads without pause while the server is replaced three times by `vfiod serve --take-over`. The client's
 * connection must never close, no command may fail, be lost or run twice (the SMART command counters, carried over,
 * must equal what the guest issued), MSI-X interrupts must keep arriving, an AER submitted before the first upgrade
 * must complete after the last, and the data must be in the backing file. A successor that cannot take the
 * controller on must leave the running process serving.
 *
 * Uses the compiled dist/ that `npm test` builds first.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Guest } from '../helpers/hypervisor.js';
import { pattern } from '../helpers/nvme-harness.js';
import { children, equal, IO_DEADLINE_MS, isListening, readFileRange, serve, Workload } from '../helpers/vfiod-process.js';
import { AdminOpcode, AsyncEvent, LogPageId, Status } from '../../src/spec/nvme.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const built = existsSync(path.join(root, 'dist', 'serve', 'upgrade.js'));

const BLOCK = 512;

let dir: string;
const guests: Guest[] = [];

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-upgrade-'));
});
afterEach(() => {
  for (const guest of guests.splice(0)) guest.close();
  for (const child of children.splice(0)) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function readUint64(bytes: Uint8Array, offset: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 0x1_0000_0000;
}

describe.skipIf(!built)('live upgrade of vfiod serve', () => {
  it.each(['interrupt', 'polled'] as const)(
    '%s doorbells: three upgrades under continuous verified I/O; the client never notices',
    async (mode) => {
      const socket = path.join(dir, 'nvme0.sock');
      const image = path.join(dir, 'disk.img');
      const args = ['--socket', socket, '--namespace', `file:${image}?size=16M`, ...(mode === 'polled' ? ['--poll'] : [])];
      let current = serve(args);
      await current.waitFor(isListening, 'listening');

      const guest = await Guest.attach(socket, { flavour: 'qemu', vectors: 2 });
      guests.push(guest);
      expect(guest.polledDoorbells).toBe(mode === 'polled');
      const driver = guest.driver;
      await driver.enable();
      await driver.createIoQueuePair(1, 64, 1);
      if (mode === 'interrupt') expect((await driver.configureShadowDoorbells()).status).toBe(Status.SUCCESS);
      // An Asynchronous Event Request, outstanding across all three upgrades.
      const aerCid = driver.place(0, { opcode: AdminOpcode.ASYNC_EVENT_REQUEST });
      await driver.ringSubmission(0);

      const workload = new Workload(guest, 4, 8, 32);
      await workload.progress(40);
      const pauses: number[] = [];
      for (let upgrade = 1; upgrade <= 3; upgrade++) {
        const interruptsBefore = guest.interrupts[1]!;
        const longestBefore = workload.longestMillis;
        workload.longestMillis = 0;
        const successor = serve([...args, '--take-over']);
        const complete = await successor.waitFor((line) => line['msg'] === 'upgrade complete: serving', 'upgrade complete');
        expect(await current.exited, `old process exit code (upgrade ${upgrade})`).toBe(0);
        expect(current.lines.some((line) => line['msg'] === 'handed over to the successor')).toBe(true);
        current = successor;
        await workload.progress(60);
        expect(workload.failures).toEqual([]);
        // Completions after the upgrade still raise MSI-X interrupts (the successor writes the same eventfds).
        expect(guest.interrupts[1]!, `interrupts after upgrade ${upgrade}`).toBeGreaterThan(interruptsBefore);
        pauses.push(workload.longestMillis);
        workload.longestMillis = Math.max(workload.longestMillis, longestBefore);
        expect(complete['millis']).toBeTypeOf('number');
      }
      await workload.stop();
      expect(workload.failures).toEqual([]);
      console.log(`live upgrade (${mode} doorbells): longest command across each upgrade ${pauses.map((p) => p.toFixed(1)).join(', ')} ms; ${workload.writes} writes, ${workload.reads} reads`);

      // No successor saw a new client: each took over the one connection.
      expect(current.lines.some((line) => line['msg'] === 'client connected')).toBe(false);
      expect(current.lines.some((line) => line['msg'] === 'client taken over from the previous process')).toBe(true);

      // The AER submitted before the first upgrade is still outstanding: an invalid doorbell (SQ 7 does not exist)
      // completes it now, with an error event pointing at the Error Information log.
      await expect(driver.wait(0, aerCid, 300), 'the AER is still outstanding').rejects.toThrow(/did not complete/);
      await driver.writeDoorbell(14, 1);
      const aer = await driver.wait(0, aerCid, IO_DEADLINE_MS);
      expect(aer.status).toBe(Status.SUCCESS);
      expect(aer.dw0 & 0x7).toBe(AsyncEvent.TYPE_ERROR);
      expect((aer.dw0 >>> 16) & 0xff).toBe(LogPageId.ERROR_INFORMATION);

      // Every command ran exactly once: the SMART counters, carried across the upgrades, match what the guest issued.
      const smart = await driver.getLogPage(LogPageId.SMART_HEALTH, 512);
      expect(smart.completion.status).toBe(Status.SUCCESS);
      expect(readUint64(smart.data, 64), 'Host Read Commands').toBe(workload.reads);
      expect(readUint64(smart.data, 80), 'Host Write Commands').toBe(workload.writes);
      expect(readUint64(smart.data, 176), 'error log entries (the invalid doorbell)').toBe(1);

      // Flush, then the backing file holds the last pattern written to every LBA.
      expect((await driver.submit(1, { opcode: 0x00, nsid: 1 }, IO_DEADLINE_MS)).status).toBe(Status.SUCCESS);
      for (const [lba, seed] of workload.written) {
        expect(equal(readFileRange(image, lba * BLOCK, 8 * BLOCK), pattern(8 * BLOCK, seed)), `LBA ${lba} in the file`).toBe(true);
      }
      // Still the same connection, and the controller is ready.
      expect((await driver.status()) & 1).toBe(1);
      expect(await guest.client.waitForClose(200)).toBe(false);

      current.process.kill('SIGTERM');
      expect(await current.exited).toBe(0);
    },
    240_000,
  );

  it('upgrades with no client connected; the next client is served by the successor, which upgrades in turn', async () => {
    const socket = path.join(dir, 'nvme0.sock');
    const image = path.join(dir, 'disk.img');
    const handover = path.join(dir, 'upgrade-here.sock');
    const args = ['--socket', socket, '--namespace', `file:${image}?size=16M`, '--handover-socket', handover, '--poll'];
    const first = serve(args);
    await first.waitFor(isListening, 'listening');
    const second = serve([...args, '--take-over']);
    await second.waitFor((line) => line['msg'] === 'upgrade complete: serving', 'upgrade complete');
    expect(await first.exited).toBe(0);

    const guest = await Guest.attach(socket, { flavour: 'cloud-hypervisor', vectors: 2 });
    guests.push(guest);
    await guest.driver.enable();
    await guest.driver.createIoQueuePair(1, 16, 1);
    expect(await guest.driver.write(1, 64, pattern(4096, 9), { timeoutMillis: IO_DEADLINE_MS })).toMatchObject({ status: Status.SUCCESS });
    expect(second.lines.some((line) => line['msg'] === 'client connected')).toBe(true);

    // The successor listens for its own successor on the socket it took over.
    const third = serve([...args, '--take-over']);
    await third.waitFor((line) => line['msg'] === 'upgrade complete: serving', 'upgrade complete');
    expect(await second.exited).toBe(0);
    const read = await guest.driver.read(1, 64, 8, { timeoutMillis: IO_DEADLINE_MS });
    expect(read.data).toEqual(pattern(4096, 9));
    third.process.kill('SIGTERM');
    expect(await third.exited).toBe(0);
    // A normal shutdown removes both sockets.
    expect(existsSync(socket)).toBe(false);
    expect(existsSync(handover)).toBe(false);
  }, 120_000);

  it('a successor that cannot take the controller on (different namespace size) leaves the running one serving', async () => {
    const socket = path.join(dir, 'nvme0.sock');
    const image = path.join(dir, 'disk.img');
    const args = ['--socket', socket, '--namespace', `file:${image}?size=16M`];
    const running = serve(args);
    await running.waitFor(isListening, 'listening');
    const guest = await Guest.attach(socket, { flavour: 'cloud-hypervisor', vectors: 2 });
    guests.push(guest);
    const driver = guest.driver;
    await driver.enable();
    await driver.createIoQueuePair(1, 64, 1);
    const workload = new Workload(guest, 2, 8, 16);
    await workload.progress(20);

    const other = path.join(dir, 'other.img');
    const successor = serve(['--socket', socket, '--namespace', `file:${other}?size=8M`, '--take-over']);
    expect(await successor.exited).toBe(1);
    const failure = successor.lines.find((line) => line['msg'] === 'take-over failed; the running vfiod keeps serving');
    expect(String(failure?.['error'])).toMatch(/namespace 1 .* 16384 blocks of 512 bytes/);
    // The running process had quiesced for it, and resumed.
    await running.waitFor((line) => line['msg'] === 'upgrade failed: the successor did not take over; serving on', 'resume');
    await workload.progress(40);
    await workload.stop();
    expect(workload.failures).toEqual([]);
    expect(await guest.client.waitForClose(200)).toBe(false);

    // A successor configured the same then takes over.
    const good = serve([...args, '--take-over']);
    await good.waitFor((line) => line['msg'] === 'upgrade complete: serving', 'upgrade complete');
    expect(await running.exited).toBe(0);
    const read = await driver.read(1, 0, 8, { timeoutMillis: IO_DEADLINE_MS });
    expect(read.completion.status).toBe(Status.SUCCESS);
    expect(read.data).toEqual(pattern(8 * BLOCK, workload.written.get(0)!));
    good.process.kill('SIGTERM');
    expect(await good.exited).toBe(0);
  }, 180_000);
});
