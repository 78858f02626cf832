/**
 * One vfiod process serving several controllers (worker threads): a hostile client of one reaches no other, and the
 * process survives faults (shrunk guest memory, saturated eventfds).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { IoOpcode, Status } from '../../src/spec/nvme.js';
import { controllerConfig } from '../../src/serve/config.js';
import { type LogFields } from '../../src/util/log.js';
import { IrqSetFlag } from '../../src/spec/vfio.js';
import { encodeIrqSet } from '../../src/vfio-user/protocol.js';
import { Guest, GUEST_RAM_IOVA } from '../helpers/hypervisor.js';
import { pattern } from '../helpers/nvme-harness.js';
import { VfioUserClient } from '../helpers/vfio-user-client.js';
import { sleep } from '../helpers/common.js';
import {
  PAGE,
  BLOCK,
  RAM_BYTES,
  MSIX_IRQ,
  dir,
  cleanups,
  attach,
  request,
  expectStillServing,
  bystander,
} from '../helpers/hostile-harness.js';

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
