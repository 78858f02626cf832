/**
 * HandoverChannel on input that is JSON but not a message: the connection closes, the process does not crash (the
 * parse runs in a poll callback, where a TypeError would be an uncaught exception).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { native } from '../../../src/native/index.js';
import { HandoverChannel } from '../../../src/serve/handover-channel.js';
import { temporaryDir, waitFor } from '../../helpers/common.js';

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function frame(json: string): Uint8Array {
  const body = Buffer.from(json);
  const bytes = new Uint8Array(4 + body.length);
  new DataView(bytes.buffer).setUint32(0, body.length, true);
  bytes.set(body, 4);
  return bytes;
}

describe('HandoverChannel', () => {
  it.each(['null', '5', '"text"', '[]', '{"fdCount":0}', '{"type":3}'])('closes the connection on the frame %s', async (json) => {
    dir = temporaryDir('vfiod-channel-');
    const socket = path.join(dir, 'c.sock');
    const listenFd = native.listenUnix(socket, 0o600, 1);
    const peer = native.connectUnix(socket);
    const accepted = await waitFor(() => native.accept(listenFd), 'the connection');
    const channel = new HandoverChannel(accepted);
    native.sendmsg(peer, frame(json), []);
    await expect(channel.receive(10_000, 'a message')).rejects.toThrow(/not a message/);
    expect(channel.isClosed).toBe(true);
    native.close(peer);
    native.close(listenFd);
  });
});

describe('HandoverChannel.onMessage', () => {
  it('delivers every message the peer sent before it closed; receive() would have dropped the queued ones', async () => {
    dir = temporaryDir('vfiod-channel-');
    const socket = path.join(dir, 'c.sock');
    const listenFd = native.listenUnix(socket, 0o600, 1);
    const peer = native.connectUnix(socket);
    const accepted = await waitFor(() => native.accept(listenFd), 'the connection');
    const bytes = [frame('{"type":"one"}'), frame('{"type":"two"}'), frame('{"type":"three"}')];
    for (const b of bytes) native.sendmsg(peer, b, []);
    native.close(peer);
    const channel = new HandoverChannel(accepted);
    const types: string[] = [];
    let closedWith: string | undefined;
    channel.onMessage(({ message }) => types.push(message.type));
    channel.onClose((reason) => (closedWith = reason));
    await waitFor(() => closedWith, 'the close');
    expect(types).toEqual(['one', 'two', 'three']);
    expect(closedWith).toMatch(/peer closed/);
    expect(channel.queuedFrames).toBe(0);
    native.close(listenFd);
  });
});
