/**
 * The crash-recovery holder's protocol (src/serve/holder.ts) against a fake data plane in the same process: the
 * HolderClient a worker thread uses, and raw sockets for what a broken data plane might send.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../../../src/native/index.js';
import { HandoverChannel } from '../../../src/serve/handover-channel.js';
import { Holder, defaultHolderSocket } from '../../../src/serve/holder.js';
import { HolderClient } from '../../../src/serve/holder-client.js';
import { memoryLogger } from '../../../src/util/log.js';
import { temporaryDir, waitFor } from '../../helpers/common.js';

let dir: string;
let holder: Holder | undefined;
let lines: Array<Record<string, unknown>>;
const opened: number[] = [];

beforeEach(async () => {
  dir = temporaryDir('vfiod-holder-');
  const memory = memoryLogger();
  lines = memory.lines;
  holder = await Holder.listen(path.join(dir, 'a.holder.sock'), memory.logger);
});
afterEach(() => {
  holder?.close();
  holder = undefined;
  for (const fd of opened.splice(0)) closeQuietly(fd);
  fs.rmSync(dir, { recursive: true, force: true });
});

const controller = (name = 'a'): string => path.join(dir, `${name}.sock`);

/** A memfd named `name` holding `text`. */
function memfd(name: string, text: string): number {
  const fd = native.memfdCreate(name, 4096);
  fs.writeSync(fd, Buffer.from(text), 0, text.length, 0);
  opened.push(fd);
  return fd;
}

function readText(fd: number, length: number): string {
  const buffer = Buffer.alloc(length);
  fs.readSync(fd, buffer, 0, length, 0);
  return buffer.toString();
}

/** How many fds of this process are memfds named `name` (the holder runs in this process). */
function memfdCount(name: string): number {
  let count = 0;
  for (const entry of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${entry}`) === `/memfd:${name} (deleted)`) count++;
    } catch {
      // closed meanwhile
    }
  }
  return count;
}

function closeQuietly(fd: number): void {
  try {
    native.close(fd);
  } catch {
    // gone
  }
}

/** Closes the client without detach (what a crash of the data plane does) and waits until the holder noticed. */
async function crash(client: HolderClient): Promise<void> {
  const before = lines.filter((line) => line['msg'] === 'controller connection lost without detach; holding its fds for the next data plane').length;
  client.close();
  await waitFor(
    () => lines.filter((line) => line['msg'] === 'controller connection lost without detach; holding its fds for the next data plane').length > before,
    'the holder to notice',
  );
}

/** A length-prefixed frame as HandoverChannel writes it, with any JSON text. */
function frame(json: string): Uint8Array {
  const body = Buffer.from(json);
  const bytes = new Uint8Array(4 + body.length);
  new DataView(bytes.buffer).setUint32(0, body.length, true);
  bytes.set(body, 4);
  return bytes;
}

/** Waits until the holder closed a raw connection (recv returns 0 bytes). */
async function closedByHolder(fd: number): Promise<void> {
  native.setNonBlocking(fd, true);
  const buffer = new Uint8Array(4096);
  await waitFor(() => {
    const result = native.recvmsg(fd, buffer, 253);
    for (const received of result?.fds ?? []) closeQuietly(received);
    return result !== null && result.bytes === 0;
  }, 'the holder to close the connection');
}

describe('crash-recovery holder', () => {
  it('puts its socket next to the controller socket, mode 0600, and refuses a live one', async () => {
    expect(defaultHolderSocket('/run/vfiod/vm1.sock')).toBe('/run/vfiod/vm1.holder.sock');
    expect(fs.statSync(holder!.socketPath).mode & 0o777).toBe(0o600);
    await expect(Holder.listen(holder!.socketPath, memoryLogger().logger)).rejects.toThrow(/in use/);
    holder!.close();
    expect(fs.existsSync(holder!.socketPath)).toBe(false);
    // A stale socket file (a holder that was killed) is replaced.
    const stale = native.listenUnix(holder!.socketPath, 0o600, 1);
    native.close(stale);
    holder = await Holder.listen(holder!.socketPath, memoryLogger().logger);
  });

  it('keeps fds across a connection that closes without detach: the same files come back under their old numbers', async () => {
    const first = await HolderClient.attach(holder!.socketPath, controller());
    expect(first.held).toEqual([]);
    const checkpoint = memfd('vfiod-test-checkpoint', 'state 1');
    const event = native.eventfdCreate(0, true);
    opened.push(event);
    expect(first.client.keep([{ fd: checkpoint, name: 'checkpoint' }, { fd: event }])).toBe(true);
    await crash(first.client);
    expect(holder!.heldCounts()).toEqual({ [controller()]: 2 });

    // The data plane is gone: its fds are closed; only the holder's copies live on.
    native.close(checkpoint);
    opened.splice(opened.indexOf(checkpoint), 1);
    expect(memfdCount('vfiod-test-checkpoint')).toBe(1);

    const second = await HolderClient.attach(holder!.socketPath, controller());
    opened.push(...second.held.map((h) => h.fd));
    expect(second.held.map((h) => ({ number: h.number, name: h.name }))).toEqual([
      { number: checkpoint, name: 'checkpoint' },
      { number: event, name: undefined },
    ]);
    const back = second.held[0]!.fd;
    expect(readText(back, 7)).toBe('state 1');
    // The same file, not a copy: a write through the received fd is what the holder's copy holds.
    fs.writeSync(back, Buffer.from('state 2'), 0, 7, 0);
    await crash(second.client);
    native.close(back);
    opened.splice(opened.indexOf(back), 1);
    const third = await HolderClient.attach(holder!.socketPath, controller());
    opened.push(...third.held.map((h) => h.fd));
    // Keyed by the numbers of the data plane that attached last (renumbered at attach).
    expect(third.held.map((h) => h.number)).toEqual(second.held.map((h) => h.fd));
    expect(readText(third.held[0]!.fd, 7)).toBe('state 2');
    third.client.close();
    expect(lines.some((line) => line['msg'] === 'controller re-attached' && line['fds'] === 2)).toBe(true);
  });

  it('drop closes the copies it names (by this process`s numbers after a re-attach); unknown numbers are ignored', async () => {
    const first = await HolderClient.attach(holder!.socketPath, controller());
    const fds = [memfd('vfiod-test-drop-a', 'a'), memfd('vfiod-test-drop-b', 'b'), memfd('vfiod-test-drop-c', 'c')];
    first.client.keep(fds.map((fd) => ({ fd })));
    expect(first.client.drop([fds[1]!, 99_999])).toBe(true);
    await crash(first.client);
    expect(holder!.heldCounts()).toEqual({ [controller()]: 2 });
    expect(memfdCount('vfiod-test-drop-b')).toBe(1); // only this process's own

    const second = await HolderClient.attach(holder!.socketPath, controller());
    opened.push(...second.held.map((h) => h.fd));
    expect(second.held.map((h) => h.number)).toEqual([fds[0], fds[2]]);
    const localC = second.held[1]!.fd;
    second.client.drop([localC]);
    await crash(second.client);
    expect(holder!.heldCounts()).toEqual({ [controller()]: 1 });
  });

  it('a keep of a number already held replaces the copy and closes the old one', async () => {
    const raw = HandoverChannel.connect(holder!.socketPath);
    raw.send({ type: 'attach', controller: controller() });
    expect((await raw.receive(5000, 'held')).message.type).toBe('held');
    const a = memfd('vfiod-test-replace-a', 'old');
    const b = memfd('vfiod-test-replace-b', 'new');
    raw.send({ type: 'keep', fds: [{ number: 7, name: 'x' }] }, [a]);
    await waitFor(() => memfdCount('vfiod-test-replace-a') === 2, 'the holder to hold a');
    raw.send({ type: 'keep', fds: [{ number: 7 }] }, [b]);
    await waitFor(() => memfdCount('vfiod-test-replace-a') === 1, 'the holder to close its copy of a');
    expect(memfdCount('vfiod-test-replace-b')).toBe(2);
    raw.close();
    await waitFor(() => !lines.every((line) => line['msg'] !== 'controller connection lost without detach; holding its fds for the next data plane'), 'lost');
    const again = await HolderClient.attach(holder!.socketPath, controller());
    opened.push(...again.held.map((h) => h.fd));
    expect(again.held.map((h) => ({ number: h.number, name: h.name }))).toEqual([{ number: 7, name: undefined }]);
    expect(readText(again.held[0]!.fd, 3)).toBe('new');
    again.client.close();
  });

  it('detach closes everything the controller held and forgets it', async () => {
    const first = await HolderClient.attach(holder!.socketPath, controller());
    first.client.keep([{ fd: memfd('vfiod-test-detach', 'x') }]);
    await waitFor(() => memfdCount('vfiod-test-detach') === 2, 'the holder to hold it');
    await first.client.detach();
    expect(first.client.isClosed).toBe(true);
    expect(memfdCount('vfiod-test-detach')).toBe(1);
    expect(holder!.heldCounts()).toEqual({});
    const second = await HolderClient.attach(holder!.socketPath, controller());
    expect(second.held).toEqual([]);
    await second.client.detach();
    expect(await Promise.race([first.client.lost.then(() => 'lost'), new Promise((r) => setTimeout(() => r('not lost'), 50))])).toBe('not lost');
  });

  it('refuses a second attach of a controller while one is attached; other controllers are independent', async () => {
    const first = await HolderClient.attach(holder!.socketPath, controller());
    await expect(HolderClient.attach(holder!.socketPath, controller())).rejects.toThrow(/refused .*attached already/);
    const other = await HolderClient.attach(holder!.socketPath, controller('b'));
    other.client.keep([{ fd: memfd('vfiod-test-other', 'b') }]);
    await crash(first.client);
    const again = await HolderClient.attach(holder!.socketPath, controller());
    expect(again.held).toEqual([]);
    again.client.close();
    other.client.close();
    await waitFor(() => holder!.heldCounts()[controller('b')] === 1, 'b held');
  });

  it('keeps more fds than one sendmsg carries (300) and gives them all back', async () => {
    const first = await HolderClient.attach(holder!.socketPath, controller());
    const fds = Array.from({ length: 300 }, () => {
      const fd = native.eventfdCreate(0, true);
      opened.push(fd);
      return fd;
    });
    first.client.keep(fds.map((fd, index) => ({ fd, name: `e${index}` })));
    await crash(first.client);
    expect(holder!.heldCounts()).toEqual({ [controller()]: 300 });
    const second = await HolderClient.attach(holder!.socketPath, controller());
    opened.push(...second.held.map((h) => h.fd));
    expect(second.held.map((h) => h.number)).toEqual(fds);
    expect(second.held.map((h) => h.name)).toEqual(fds.map((_, index) => `e${index}`));
    expect(second.held.every((h) => native.isEventfd(h.fd))).toBe(true);
    second.client.close();
  });

  it('closes a connection that sends garbage, and holds every controller`s fds on', async () => {
    const good = await HolderClient.attach(holder!.socketPath, controller());
    good.client.keep([{ fd: memfd('vfiod-test-survivor', 'alive') }]);
    const attachedRaw = async (): Promise<HandoverChannel> => {
      const raw = HandoverChannel.connect(holder!.socketPath);
      raw.send({ type: 'attach', controller: controller('bad') });
      expect((await raw.receive(5000, 'held')).message.type).toBe('held');
      return raw;
    };
    const rawFrames: Array<{ bytes: Uint8Array; fds?: number[] }> = [
      { bytes: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]) }, // a huge length
      { bytes: frame('not json') },
      { bytes: frame('null') },
      { bytes: frame('[1,2]') },
      { bytes: frame('{"type":"keep","fds":[{"number":1}],"fdCount":0}') }, // announces an fd that never came
      { bytes: frame('{"type":"keep","fds":[{"number":-1}],"fdCount":1}'), fds: [memfd('vfiod-test-bad', 'x')] },
      { bytes: frame('{"type":"keep","fds":[],"fdCount":1}'), fds: [memfd('vfiod-test-bad', 'x')] },
      { bytes: frame('{"type":"drop","numbers":["1"]}') },
      { bytes: frame('{"type":"renumber","numbers":[1]}') },
      { bytes: frame('{"type":"explode"}') },
    ];
    for (const { bytes, fds } of rawFrames) {
      const channel = await attachedRaw();
      native.sendmsg(channel.fd, bytes, fds ?? []);
      await waitFor(() => channel.isClosed || null, `the holder to close the connection after ${Buffer.from(bytes).toString()}`);
    }
    // Before any attach: anything else, a relative path, an attach with fds.
    for (const json of ['{"type":"keep","fds":[]}', '{"type":"attach","controller":"relative.sock"}', '{"type":"attach"}', '{"type":"detach"}']) {
      const fd = native.connectUnix(holder!.socketPath);
      native.sendmsg(fd, frame(json), []);
      await closedByHolder(fd);
      native.close(fd);
    }
    const withFd = native.connectUnix(holder!.socketPath);
    native.sendmsg(withFd, frame(`{"type":"attach","controller":${JSON.stringify(controller('c'))},"fdCount":1}`), [memfd('vfiod-test-bad', 'y')]);
    await closedByHolder(withFd);
    native.close(withFd);
    expect(lines.filter((line) => line['msg'] === 'closing a data-plane connection: bad message').length).toBeGreaterThanOrEqual(8);
    // No fd that came with a rejected message is left in the holder (only this test's own three copies).
    await waitFor(() => memfdCount('vfiod-test-bad') === 3 || null, 'rejected fds closed');
    // The good controller is untouched, and the bad one's (nothing) is held for a re-attach.
    expect(good.client.isClosed).toBe(false);
    await crash(good.client);
    const again = await HolderClient.attach(holder!.socketPath, controller());
    opened.push(...again.held.map((h) => h.fd));
    expect(readText(again.held[0]!.fd, 5)).toBe('alive');
    again.client.close();
  });

  it('keep is in the holder`s socket buffer when it returns', async () => {
    // A holder played by hand, to look at its socket the moment keep() returns.
    const socket = path.join(dir, 'manual.sock');
    const listenFd = native.listenUnix(socket, 0o600, 1);
    opened.push(listenFd);
    const attaching = HolderClient.attach(socket, controller());
    const peer = await waitFor(() => native.accept(listenFd), 'the attach');
    opened.push(peer);
    const buffer = new Uint8Array(65536);
    await waitFor(() => native.recvmsg(peer, buffer, 253), 'the attach frame');
    native.sendmsg(peer, frame('{"type":"held","fds":[],"fdCount":0}'), []);
    const { client } = await attaching;
    const fd = memfd('vfiod-test-sync', 'now');
    expect(client.keep([{ fd }])).toBe(true);
    const received = native.recvmsg(peer, buffer, 253); // no event-loop turn in between
    expect(received).not.toBeNull();
    opened.push(...received!.fds);
    expect(received!.fds.length).toBe(1);
    expect(JSON.parse(Buffer.from(buffer.subarray(4, received!.bytes)).toString())).toMatchObject({ type: 'keep', fds: [{ number: fd }] });
    expect(client.drop([fd])).toBe(true);
    expect(native.recvmsg(peer, buffer, 253)!.bytes).toBeGreaterThan(4);
    // The holder going away is reported.
    native.close(peer);
    opened.splice(opened.indexOf(peer), 1);
    expect(await client.lost).toMatch(/closed/);
  });
});
