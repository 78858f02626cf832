/**
 * Crash recovery under a guest doing I/O (docs/restart.md): the real `vfiod serve --crash-recovery` (a holder and
 * its data plane), a hypervisor + guest driver in this process doing verified writes and reads without pause, and
 * SIGKILL of the data plane, three times. The client's connection must never close, no command may fail or be
 * lost, interrupts must keep coming, and the data must be in the backing file. Unlike a live upgrade, a crash may
 * run a command twice (a write of the same data to the same blocks: docs/restart.md says why that is safe).
 *
 * Uses the compiled dist/ that `npm test` builds first.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Guest } from '../helpers/hypervisor.js';
import { standardHost } from '../helpers/fake-sysfs.js';
import { native } from '../../src/native/index.js';
import { pattern } from '../helpers/nvme-harness.js';
import { AdminOpcode, Status } from '../../src/spec/nvme.js';
import { bin, children, equal, IO_DEADLINE_MS, readFileRange, serve, Workload, type LogLine } from '../helpers/vfiod-process.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const built = existsSync(path.join(root, 'dist', 'serve', 'crash-guard.js'));
const BLOCK = 512;

let dir: string;
const guests: Guest[] = [];

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-crash-io-'));
});
afterEach(() => {
  for (const guest of guests.splice(0)) guest.close();
  for (const child of children.splice(0)) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const isDataPlane = (line: LogLine): boolean => line['msg'] === 'data plane started';
const isRecovered = (line: LogLine): boolean => line['msg'] === 'recovered from a crash of the previous data plane';

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

describe.skipIf(!built)('crash recovery of vfiod serve --crash-recovery', () => {
  it.each(['interrupt', 'polled'] as const)(
    '%s doorbells: three SIGKILLs of the data plane under continuous verified I/O; the client never notices',
    async (mode) => {
      const socket = path.join(dir, 'nvme0.sock');
      const image = path.join(dir, 'disk.img');
      const holder = serve(['--crash-recovery', '--socket', socket, '--namespace', `file:${image}?size=16M`, ...(mode === 'polled' ? ['--poll'] : [])]);
      await holder.waitFor((line) => line['msg'] === 'listening' && line['component'] === 'controller', 'listening');
      const dataPlanes = (): number[] => holder.lines.filter(isDataPlane).map((line) => line['pid'] as number);

      const guest = await Guest.attach(socket, { flavour: 'qemu', vectors: 2 });
      guests.push(guest);
      const driver = guest.driver;
      await driver.enable();
      await driver.createIoQueuePair(1, 64, 1);
      if (mode === 'interrupt') expect((await driver.configureShadowDoorbells()).status).toBe(Status.SUCCESS);
      const aerCid = driver.place(0, { opcode: AdminOpcode.ASYNC_EVENT_REQUEST });
      await driver.ringSubmission(0);

      const workload = new Workload(guest, 4, 8, 32);
      await workload.progress(40);
      const pauses: number[] = [];
      const recoveries: LogLine[] = [];
      for (let crash = 1; crash <= 3; crash++) {
        const victim = dataPlanes().at(-1)!;
        const interruptsBefore = guest.interrupts[1]!;
        workload.longestMillis = 0;
        kill(victim);
        const recovered = await holder.waitFor((line) => isRecovered(line) && line['generation'] === crash, `recovery ${crash}`);
        recoveries.push(recovered);
        await workload.progress(60);
        expect(workload.failures).toEqual([]);
        expect(guest.interrupts[1]!, `interrupts after crash ${crash}`).toBeGreaterThan(interruptsBefore);
        pauses.push(workload.longestMillis);
      }
      await workload.stop();
      expect(workload.failures).toEqual([]);
      expect(new Set(dataPlanes()).size).toBe(4);
      console.log(
        `crash recovery (${mode} doorbells): longest command across each crash ${pauses.map((p) => p.toFixed(0)).join(', ')} ms; ` +
          `recovery ${recoveries.map((line) => String(line['millis'])).join(', ')} ms; re-run ${recoveries.map((line) => String(line['commandsRunAgain'])).join(', ')}; ` +
          `${workload.writes} writes, ${workload.reads} reads`,
      );

      // The AER from before the first crash is still outstanding, and completes now.
      await expect(driver.wait(0, aerCid, 300), 'the AER is still outstanding').rejects.toThrow(/did not complete/);
      await driver.writeDoorbell(14, 1);
      expect((await driver.wait(0, aerCid, IO_DEADLINE_MS)).status).toBe(Status.SUCCESS);

      // Admin commands still work, flush, and the file holds the last pattern written to every LBA.
      expect((await driver.identify(1)).completion.status).toBe(Status.SUCCESS);
      expect((await driver.submit(1, { opcode: 0x00, nsid: 1 }, IO_DEADLINE_MS)).status).toBe(Status.SUCCESS);
      for (const [lba, seed] of workload.written) {
        expect(equal(readFileRange(image, lba * BLOCK, 8 * BLOCK), pattern(8 * BLOCK, seed)), `LBA ${lba} in the file`).toBe(true);
      }
      expect(await guest.client.waitForClose(200)).toBe(false);

      holder.process.kill('SIGTERM');
      expect(await holder.exited).toBe(0);
    },
    240_000,
  );

  it('planned restarts (vfiod upgrade, SIGHUP to the holder) under verified I/O: quiesced, nothing runs again', async () => {
    const socket = path.join(dir, 'nvme0.sock');
    const image = path.join(dir, 'disk.img');
    const holder = serve(['--crash-recovery', '--socket', socket, '--namespace', `file:${image}?size=16M`]);
    await holder.waitFor((line) => line['msg'] === 'listening' && line['component'] === 'controller', 'listening');
    const guest = await Guest.attach(socket, { flavour: 'qemu', vectors: 2 });
    guests.push(guest);
    await guest.driver.enable();
    await guest.driver.createIoQueuePair(1, 64, 1);
    expect((await guest.driver.configureShadowDoorbells()).status).toBe(Status.SUCCESS);
    const workload = new Workload(guest, 4, 8, 32);
    await workload.progress(40);

    // 1. vfiod upgrade finds the data plane by its socket and has the holder restart it from this installation.
    const { stdout } = await promisify(execFile)(process.execPath, [bin, 'upgrade', '--socket', socket], { timeout: 120_000 });
    expect(stdout).toMatch(/replaced by pid \d+ .* through the crash-recovery holder/);
    await holder.waitFor((line) => isRecovered(line) && line['generation'] === 1, 'the first planned restart');
    await workload.progress(60);
    // 2. SIGHUP to the holder (systemctl reload) does the same.
    holder.process.kill('SIGHUP');
    await holder.waitFor((line) => isRecovered(line) && line['generation'] === 2, 'the second planned restart');
    await workload.progress(60);
    await workload.stop();
    expect(workload.failures).toEqual([]);

    const recoveries = holder.lines.filter(isRecovered);
    for (const line of recoveries) expect(line).toMatchObject({ commandsRunAgain: 0, completionsPosted: 0, client: true });
    expect(holder.lines.filter((line) => line['msg'] === 'planned restart complete: the new data plane serves every controller')).toHaveLength(2);
    expect(holder.lines.filter((line) => line['msg'] === 'data plane exited')).toEqual([]); // no crash path taken
    for (const [lba, seed] of workload.written) {
      expect(equal(readFileRange(image, lba * BLOCK, 8 * BLOCK), pattern(8 * BLOCK, seed)), `LBA ${lba} in the file`).toBe(true);
    }
    expect(await guest.client.waitForClose(200)).toBe(false);
    holder.process.kill('SIGTERM');
    expect(await holder.exited).toBe(0);
  }, 240_000);

  it('vfiod daemon --crash-recovery: a SIGKILLed daemon comes back with its controller recovered and its API answering', async () => {
    const host = standardHost();
    try {
      const apiSocket = path.join(dir, 'vfiod.sock');
      const image = path.join(dir, 'disk.img');
      const socket = path.join(dir, 'nvme0.sock');
      const holder = serve(['--crash-recovery', '--socket', apiSocket, '--state-dir', path.join(dir, 'state'), '--namespace-dir', dir,
        '--sysfs-root', host.roots.sysfs, '--dev-root', host.roots.dev, '--proc-root', host.roots.proc], 'daemon');
      await holder.waitFor((line) => line['msg'] === 'listening' && line['component'] === 'daemon', 'the API listening');
      const cli = (...args: string[]): Promise<{ stdout: string }> =>
        promisify(execFile)(process.execPath, [bin, ...args, '--daemon', apiSocket], { timeout: 60_000 });
      await cli('controllers', 'create', 'vm1', '--socket', socket, '--namespace', `file:${image}?size=16M`);
      await holder.waitFor((line) => line['msg'] === 'listening' && line['component'] === 'controller', 'the controller listening');
      await expect(cli('controllers', 'create', 'mem', '--socket', path.join(dir, 'mem.sock'), '--namespace', 'memory:1M')).rejects.toThrow(/crash-recovery/);

      const guest = await Guest.attach(socket, { flavour: 'qemu', vectors: 2 });
      guests.push(guest);
      await guest.driver.enable();
      await guest.driver.createIoQueuePair(1, 64, 1);
      const workload = new Workload(guest, 4, 8, 32);
      await workload.progress(40);
      kill(holder.lines.filter(isDataPlane).at(-1)!['pid'] as number);
      const recovered = await holder.waitFor((line) => isRecovered(line) && line['generation'] === 1, 'the controller recovered');
      expect(recovered['client']).toBe(true);
      await workload.progress(60);
      // A planned restart (SIGHUP to the holder) works for the daemon too, and through its API (vfiod upgrade --daemon).
      holder.process.kill('SIGHUP');
      await holder.waitFor((line) => isRecovered(line) && line['generation'] === 2, 'the planned restart');
      await workload.progress(60);
      const upgraded = await promisify(execFile)(process.execPath, [bin, 'upgrade', '--daemon', apiSocket], { timeout: 120_000 });
      expect(upgraded.stdout).toMatch(/upgraded the vfiod daemon .* replaced by pid \d+/);
      await holder.waitFor((line) => isRecovered(line) && line['generation'] === 3, 'the restart through the API');
      await workload.progress(60);
      await workload.stop();
      expect(workload.failures).toEqual([]);
      const listed = JSON.parse((await cli('controllers', 'list', '--json')).stdout) as { controllers: Array<{ id: string; state: string }> };
      expect(listed.controllers.map((c) => [c.id, c.state])).toEqual([['vm1', 'CONTROLLER_STATE_SERVING']]);
      for (const [lba, seed] of workload.written) {
        expect(equal(readFileRange(image, lba * BLOCK, 8 * BLOCK), pattern(8 * BLOCK, seed)), `LBA ${lba} in the file`).toBe(true);
      }
      expect(await guest.client.waitForClose(200)).toBe(false);
      holder.process.kill('SIGTERM');
      expect(await holder.exited).toBe(0);
    } finally {
      host.cleanup();
    }
  }, 240_000);

  it('the holder lets go of guest memory the client unmapped (it holds what the checkpoint names)', async () => {
    const socket = path.join(dir, 'nvme0.sock');
    const holder = serve(['--crash-recovery', '--socket', socket, '--namespace', `file:${path.join(dir, 'disk.img')}?size=4M`]);
    await holder.waitFor((line) => line['msg'] === 'listening' && line['component'] === 'controller', 'listening');
    const guest = await Guest.attach(socket, { flavour: 'qemu', vectors: 2 });
    guests.push(guest);
    await guest.driver.enable();
    await guest.driver.createIoQueuePair(1, 16, 1);
    const heldAtCrash = async (generation: number): Promise<number> => {
      kill(holder.lines.filter(isDataPlane).at(-1)!['pid'] as number);
      await holder.waitFor((line) => isRecovered(line) && line['generation'] === generation, `recovery ${generation}`);
      return holder.lines.filter((line) => line['msg'] === 'data plane exited').at(-1)!['heldFds'] as number;
    };
    const before = await heldAtCrash(1);
    // 20 more regions of guest memory, each with its own memfd, mapped and unmapped again.
    for (let i = 0; i < 20; i++) {
      const fd = native.memfdCreate(`extra-${i}`, 1 << 20);
      const iova = 0x1_0000_0000 + i * (1 << 20);
      await guest.client.dmaMap({ iova, size: 1 << 20, fd });
      native.close(fd);
      await guest.client.dmaUnmap({ iova, size: 1 << 20 });
    }
    expect((await guest.driver.write(1, 0, pattern(4096, 1), { timeoutMillis: IO_DEADLINE_MS })).status).toBe(Status.SUCCESS);
    expect(await heldAtCrash(2)).toBe(before);
    expect((await guest.driver.read(1, 0, 8, { timeoutMillis: IO_DEADLINE_MS })).data).toEqual(pattern(4096, 1));
    holder.process.kill('SIGTERM');
    expect(await holder.exited).toBe(0);
  }, 120_000);

  it('a data plane killed before any client connected comes back listening on the same socket', async () => {
    const socket = path.join(dir, 'nvme0.sock');
    const image = path.join(dir, 'disk.img');
    const holder = serve(['--crash-recovery', '--socket', socket, '--namespace', `file:${image}?size=4M`]);
    await holder.waitFor((line) => line['msg'] === 'listening' && line['component'] === 'controller', 'listening');
    kill(holder.lines.find(isDataPlane)!['pid'] as number);
    await holder.waitFor((line) => isRecovered(line) && line['generation'] === 1, 'recovery');

    const guest = await Guest.attach(socket, { flavour: 'cloud-hypervisor', vectors: 2 });
    guests.push(guest);
    await guest.driver.enable();
    await guest.driver.createIoQueuePair(1, 16, 1);
    expect(await guest.driver.write(1, 8, pattern(4096, 3), { timeoutMillis: IO_DEADLINE_MS })).toMatchObject({ status: Status.SUCCESS });
    expect((await guest.driver.read(1, 8, 8, { timeoutMillis: IO_DEADLINE_MS })).data).toEqual(pattern(4096, 3));
    holder.process.kill('SIGTERM');
    expect(await holder.exited).toBe(0);
  }, 120_000);
});
