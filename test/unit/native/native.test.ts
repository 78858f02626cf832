// Real-behaviour tests of the native addon: real sockets, fds, mappings, threads. No mocks.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import v8 from 'node:v8';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { spawnSync } from 'node:child_process';
import {
  F_SEAL_GROW,
  F_SEAL_SHRINK,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  native,
  POLL_READABLE,
  POLL_WRITABLE,
  PROT_READ,
  PROT_WRITE,
  type RecvResult,
} from '../../../src/native/index.js';
import { sleep, temporaryDir, waitFor } from '../../helpers/common.js';

const RW = PROT_READ | PROT_WRITE;
const BAD_FD = 1_000_000; // above any RLIMIT_NOFILE: always EBADF
const { errno: E } = os.constants;

/** Runs `fn` and returns what it threw (failing if it did not throw). */
function thrown(fn: () => unknown): Error & { errno?: number; code?: string; syscall?: string } {
  try {
    fn();
  } catch (error) {
    return error as Error & { errno?: number; code?: string; syscall?: string };
  }
  throw new Error('expected an exception');
}

function expectSystemError(fn: () => unknown, code: string, syscall: string): void {
  const error = thrown(fn);
  expect(error.code).toBe(code);
  expect(error.syscall).toBe(syscall);
  expect(error.errno).toBe(-(E as Record<string, number>)[code]!);
  expect(error.message).toContain(syscall);
}

function fdFlags(fd: number): number {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  return parseInt(/flags:\s*(\d+)/.exec(info)![1]!, 8);
}
const O_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;

const text = (s: string) => new TextEncoder().encode(s);

let dir: string;
let socketCounter = 0;
const openFds = new Set<number>();
function track(fd: number): number {
  openFds.add(fd);
  return fd;
}
function closeFd(fd: number): void {
  openFds.delete(fd);
  native.close(fd);
}

beforeAll(() => {
  dir = temporaryDir('vfiod-native-');
});
afterAll(() => {
  for (const fd of openFds) {
    try {
      native.close(fd);
    } catch {
      // already closed by the test
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A listening socket plus one connected pair: client (blocking) and server side (non-blocking). */
async function connectedPair(): Promise<{ listenFd: number; client: number; server: number; socketPath: string }> {
  const socketPath = path.join(dir, `s${socketCounter++}.sock`);
  const listenFd = track(native.listenUnix(socketPath, 0o600, 8));
  const client = track(native.connectUnix(socketPath));
  const server = track(await waitFor(() => native.accept(listenFd), 'accept'));
  return { listenFd, client, server, socketPath };
}

/** One recvmsg that must not block; `data` is the part of the buffer that was filled. */
function recvOnce(fd: number, length: number): RecvResult & { data: Uint8Array } {
  const buffer = new Uint8Array(length);
  const result = native.recvmsg(fd, buffer, 8);
  if (result === null) throw new Error('would block');
  return { ...result, data: buffer.subarray(0, result.bytes) };
}

describe('AF_UNIX sockets', () => {
  it('creates the socket file with exactly the requested mode', () => {
    for (const mode of [0o600, 0o660, 0o666]) {
      const socketPath = path.join(dir, `mode-${mode.toString(8)}.sock`);
      const fd = native.listenUnix(socketPath, mode, 1);
      const st = fs.statSync(socketPath);
      expect(st.isSocket()).toBe(true);
      expect(st.mode & 0o777).toBe(mode);
      expect(fdFlags(fd) & (O_CLOEXEC | O_NONBLOCK)).toBe(O_CLOEXEC | O_NONBLOCK);
      native.close(fd);
    }
  });

  it('refuses to bind over an existing path', () => {
    const socketPath = path.join(dir, 'exists.sock');
    fs.writeFileSync(socketPath, '');
    expectSystemError(() => native.listenUnix(socketPath, 0o600, 1), 'EADDRINUSE', 'bind');
  });

  it('accept returns null when nothing is pending; connect gives a blocking CLOEXEC fd', async () => {
    const { listenFd, client, server } = await connectedPair();
    expect(native.accept(listenFd)).toBeNull();
    expect(fdFlags(client) & (O_CLOEXEC | O_NONBLOCK)).toBe(O_CLOEXEC);
    expect(fdFlags(server) & (O_CLOEXEC | O_NONBLOCK)).toBe(O_CLOEXEC | O_NONBLOCK);
    for (const fd of [client, server, listenFd]) closeFd(fd);
  });

  it('peerCredentials names the process at the other end (SO_PEERCRED); a non-socket fd is refused', async () => {
    const { listenFd, client, server } = await connectedPair();
    expect(native.peerCredentials(server)).toEqual({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
    const efd = track(native.eventfdCreate(0, true));
    expectSystemError(() => native.peerCredentials(efd), 'ENOTSOCK', 'getsockopt');
    for (const fd of [client, server, listenFd]) closeFd(fd);
  });

  it('passes bytes and working fds in both directions', async () => {
    const { listenFd, client, server } = await connectedPair();
    const efd = track(native.eventfdCreate(0, true));
    const mfd = track(native.memfdCreate('roundtrip', 4096));

    expect(native.sendmsg(client, text('hello'), [efd, mfd])).toBe(5);
    const got = recvOnce(server, 64);
    expect(new TextDecoder().decode(got.data)).toBe('hello');
    expect(got.fds).toHaveLength(2);
    expect(got.fdsTruncated).toBe(false);
    const [efd2, mfd2] = got.fds as [number, number];
    got.fds.forEach(track);
    for (const fd of got.fds) expect(fdFlags(fd) & O_CLOEXEC).toBe(O_CLOEXEC);

    // The received eventfd is the same object: write on one, read on the other.
    native.eventfdWrite(efd2, 3);
    expect(native.eventfdRead(efd)).toBe(3);
    // The received memfd is the same memory.
    const a = native.mmap(mfd, 0, 4096, RW);
    const b = native.mmap(mfd2, 0, 4096, RW);
    new Uint8Array(a).set([1, 2, 3], 100);
    expect([...new Uint8Array(b, 100, 3)]).toEqual([1, 2, 3]);
    native.munmap(a);
    native.munmap(b);

    // Server to client (blocking side), with an fd the server created.
    const efd3 = track(native.eventfdCreate(0, true));
    expect(native.sendmsg(server, text('back'), [efd3])).toBe(4);
    const back = recvOnce(client, 64);
    expect(new TextDecoder().decode(back.data)).toBe('back');
    expect(back.fds).toHaveLength(1);
    native.eventfdWrite(efd3, 7);
    expect(native.eventfdRead(back.fds[0]!)).toBe(7);

    for (const fd of [efd, mfd, efd2, mfd2, efd3, back.fds[0]!, client, server, listenFd]) closeFd(fd);
  });

  it('delivers fds with the later message they were sent with', async () => {
    const { listenFd, client, server } = await connectedPair();
    const efd = track(native.eventfdCreate(0, true));
    native.sendmsg(client, text('a'), []);
    native.sendmsg(client, text('b'), [efd]);
    const buffer = new Uint8Array(1);
    const first = native.recvmsg(server, buffer, 4)!;
    expect(first.bytes).toBe(1);
    expect(buffer[0]).toBe('a'.charCodeAt(0));
    expect(first.fds).toEqual([]);
    const second = native.recvmsg(server, buffer, 4)!;
    expect(second.bytes).toBe(1);
    expect(buffer[0]).toBe('b'.charCodeAt(0));
    expect(second.fds).toHaveLength(1);
    for (const fd of [second.fds[0]!, efd, client, server, listenFd]) closeFd(fd);
  });

  it('supports partial reads, EAGAIN as null and EOF as 0 bytes', async () => {
    const { listenFd, client, server } = await connectedPair();
    const payload = Uint8Array.from({ length: 100 }, (_, i) => i);
    expect(native.sendmsg(client, payload, [])).toBe(100);
    const received: number[] = [];
    const buffer = new Uint8Array(10);
    for (let i = 0; i < 10; i++) {
      const r = native.recvmsg(server, buffer, 0)!;
      expect(r.bytes).toBe(10);
      received.push(...buffer);
    }
    expect(received).toEqual([...payload]);
    expect(native.recvmsg(server, buffer, 0)).toBeNull();

    // A view into a larger buffer receives at its own offset.
    const big = new Uint8Array(16);
    native.sendmsg(client, text('xy'), []);
    expect(native.recvmsg(server, big.subarray(4, 8), 0)!.bytes).toBe(2);
    expect([...big.subarray(3, 7)]).toEqual([0, 120, 121, 0]);

    closeFd(client);
    expect(native.recvmsg(server, buffer, 4)).toEqual({ bytes: 0, fds: [], fdsTruncated: false });
    closeFd(server);
    closeFd(listenFd);
  });

  it('reports fdsTruncated and still returns the fds that fit', async () => {
    const { listenFd, client, server } = await connectedPair();
    const efd = track(native.eventfdCreate(0, true));
    native.sendmsg(client, text('1'), [efd, efd, efd]);
    const r = native.recvmsg(server, new Uint8Array(1), 1)!;
    expect(r.fds).toHaveLength(1);
    expect(r.fdsTruncated).toBe(true);
    native.eventfdWrite(r.fds[0]!, 1);
    expect(native.eventfdRead(efd)).toBe(1);
    closeFd(r.fds[0]!);

    native.sendmsg(client, text('2'), [efd]);
    const none = native.recvmsg(server, new Uint8Array(1), 0)!;
    expect(none).toEqual({ bytes: 1, fds: [], fdsTruncated: true });
    for (const fd of [efd, client, server, listenFd]) closeFd(fd);
  });

  it('sends up to 253 fds at once', async () => {
    const { listenFd, client, server } = await connectedPair();
    const efd = track(native.eventfdCreate(0, true));
    expect(native.sendmsg(client, text('m'), new Array(253).fill(efd))).toBe(1);
    const r = native.recvmsg(server, new Uint8Array(4), 253)!;
    expect(r.fds).toHaveLength(253);
    expect(r.fdsTruncated).toBe(false);
    for (const fd of r.fds) native.close(fd);
    expect(thrown(() => native.sendmsg(client, text('m'), new Array(254).fill(efd))).code).toBe('ERR_OUT_OF_RANGE');
    for (const fd of [efd, client, server, listenFd]) closeFd(fd);
  });

  it('sendmsg returns null when a non-blocking socket is full; setNonBlocking switches modes', async () => {
    const { listenFd, client, server } = await connectedPair();
    const chunk = new Uint8Array(65536);
    let sent = 0;
    let result: number | null;
    while ((result = native.sendmsg(server, chunk, [])) !== null) sent += result;
    expect(sent).toBeGreaterThan(0);

    // The client is blocking; made non-blocking, an empty queue gives null instead of hanging.
    const buffer = new Uint8Array(sent + 1);
    let drained = 0;
    native.setNonBlocking(client, true);
    let r;
    while ((r = native.recvmsg(client, buffer, 0)) !== null) drained += r.bytes;
    expect(drained).toBe(sent);
    expect(fdFlags(client) & O_NONBLOCK).toBe(O_NONBLOCK);
    native.setNonBlocking(client, false);
    expect(fdFlags(client) & O_NONBLOCK).toBe(0);
    for (const fd of [client, server, listenFd]) closeFd(fd);
  });

  it('sendmsg to a closed peer fails with EPIPE instead of raising SIGPIPE', async () => {
    const { listenFd, client, server } = await connectedPair();
    closeFd(server);
    expectSystemError(() => native.sendmsg(client, text('x'), []), 'EPIPE', 'sendmsg');
    closeFd(client);
    closeFd(listenFd);
  });
});

describe('watcher', () => {
  it('fires on readable in the event loop; stop and close semantics', async () => {
    const efd = track(native.eventfdCreate(0, true));
    const events: number[] = [];
    const watcher = native.createWatcher(efd, (ev) => {
      events.push(ev);
      native.eventfdRead(efd); // drain, or the level-triggered watcher fires again
    });
    watcher.start(POLL_READABLE);
    native.eventfdWrite(efd, 1);
    await waitFor(() => events.length === 1, 'readable');
    expect(events).toEqual([POLL_READABLE]);

    watcher.stop();
    native.eventfdWrite(efd, 1);
    await sleep(30);
    expect(events).toHaveLength(1);

    watcher.start(POLL_READABLE); // restart: the pending count is reported
    await waitFor(() => events.length === 2, 'readable after restart');

    // The fd cannot be closed (nor watched twice) while the watcher is open.
    expectSystemError(() => native.close(efd), 'EBUSY', 'close');
    expect(thrown(() => native.createWatcher(efd, () => {})).code).toBe('EEXIST');

    watcher.close();
    watcher.close();
    watcher.stop();
    expect(thrown(() => watcher.start(POLL_READABLE)).code).toBe('ERR_INVALID_STATE');
    native.eventfdWrite(efd, 1);
    await sleep(30);
    expect(events).toHaveLength(2);
    closeFd(efd);
  });

  it('reports writable, and can be closed from inside its callback', async () => {
    const { listenFd, client, server } = await connectedPair();
    let calls = 0;
    let seen = 0;
    const watcher = native.createWatcher(server, (ev) => {
      calls++;
      seen = ev;
      watcher.close();
    });
    watcher.start(POLL_READABLE | POLL_WRITABLE);
    await waitFor(() => calls > 0, 'writable');
    expect(seen).toBe(POLL_WRITABLE);
    await sleep(20);
    expect(calls).toBe(1);
    for (const fd of [client, server, listenFd]) closeFd(fd);
  });

  it('accepts and reads through watchers inside a worker_threads Worker', async () => {
    const addonPath = [
      fileURLToPath(new URL('../../../build/Release/vfiod_native.node', import.meta.url)),
      fileURLToPath(new URL('../../../build/Debug/vfiod_native.node', import.meta.url)),
    ].find((p) => fs.existsSync(p))!;
    const socketPath = path.join(dir, 'worker.sock');
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const n = require(workerData.addonPath);
      const listenFd = n.listenUnix(workerData.socketPath, 0o600, 4);
      const listenWatcher = n.createWatcher(listenFd, () => {
        const conn = n.accept(listenFd);
        if (conn === null) return;
        listenWatcher.close();
        n.close(listenFd);
        const connWatcher = n.createWatcher(conn, () => {
          const buf = new Uint8Array(64);
          const r = n.recvmsg(conn, buf, 4);
          if (r === null) return;
          connWatcher.close();
          n.eventfdWrite(r.fds[0], 41);
          n.sendmsg(conn, buf.subarray(0, r.bytes).reverse(), []);
          for (const fd of [...r.fds, conn]) n.close(fd);
          parentPort.postMessage({ bytes: r.bytes, fds: r.fds.length });
        });
        connWatcher.start(1);
      });
      listenWatcher.start(1);
      parentPort.postMessage('listening');
    `;
    const worker = new Worker(code, { eval: true, workerData: { addonPath, socketPath } });
    const messages: unknown[] = [];
    worker.on('message', (m) => messages.push(m));
    const exited = new Promise<number>((resolve) => worker.on('exit', resolve));
    await waitFor(() => messages.includes('listening'), 'worker listening');

    const efd = track(native.eventfdCreate(0, true));
    const client = track(native.connectUnix(socketPath));
    native.sendmsg(client, text('abc'), [efd]);
    const reply = recvOnce(client, 64); // blocking read: the worker answers from its own loop
    expect(new TextDecoder().decode(reply.data)).toBe('cba');
    expect(native.eventfdRead(efd)).toBe(41);
    await waitFor(() => messages.length === 2, 'worker result');
    expect(messages[1]).toEqual({ bytes: 3, fds: 1 });
    // Nothing left open in the worker: its loop ends and it exits by itself.
    expect(await exited).toBe(0);
    closeFd(client);
    closeFd(efd);
  });

  it('cleans up open watchers, pollers and mappings when a Worker is terminated', async () => {
    const addonPath = fileURLToPath(new URL('../../../build/Release/vfiod_native.node', import.meta.url));
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const n = require(workerData.addonPath);
      const fd = n.memfdCreate('vfiod-test-teardown', 4096);
      globalThis.page = n.mmap(fd, 0, 4096, 3);
      const consumed = new Uint32Array(4);
      globalThis.poller = n.createDoorbellPoller(page, consumed, { spinMicros: 10, maxSleepMicros: 100 }, () => {});
      poller.setWordCount(4);
      const efd = n.eventfdCreate(0, true);
      globalThis.watcher = n.createWatcher(efd, () => {});
      watcher.start(1);
      parentPort.postMessage('ready');
    `;
    const countMaps = () =>
      fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('vfiod-test-teardown')).length;
    const worker = new Worker(code, { eval: true, workerData: { addonPath } });
    await new Promise((resolve) => worker.once('message', resolve));
    expect(countMaps()).toBe(1);
    await worker.terminate();
    await waitFor(() => countMaps() === 0, 'worker mapping released');
  });

  it('survives Workers that are the only users of the addon exiting with everything open', () => {
    // In a fresh process where only Workers load the addon, Node unloads it when they exit; the handles'
    // close callbacks run after that, which crashed before the addon pinned itself in memory.
    const addonPath = fileURLToPath(new URL('../../../build/Release/vfiod_native.node', import.meta.url));
    const worker = `
      const n = require(${JSON.stringify(addonPath)});
      const page = n.mmap(n.memfdCreate('w', 4096), 0, 4096, 3);
      const consumed = new Uint32Array(1);
      const poller = n.createDoorbellPoller(page, consumed, { spinMicros: 10, maxSleepMicros: 100 }, () => {});
      poller.setWordCount(1);
      const efd = n.eventfdCreate(1, true);
      n.createWatcher(efd, () => process.exit(0)).start(1);
    `;
    const main = `
      const { Worker } = require('node:worker_threads');
      let left = 6;
      for (let i = 0; i < 6; i++) {
        new Worker(${JSON.stringify(worker)}, { eval: true }).on('exit', () => { if (--left === 0) console.log('ok'); });
      }
    `;
    const result = spawnSync(process.execPath, ['-e', main], { encoding: 'utf8', timeout: 10_000 });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout.trim()).toBe('ok');
  });
});

describe('mmap', () => {
  it('shares memory between two mappings of one memfd', () => {
    const fd = track(native.memfdCreate('share', 8192));
    const a = native.mmap(fd, 0, 8192, RW);
    const b = native.mmap(fd, 4096, 4096, PROT_READ);
    expect(a.byteLength).toBe(8192);
    expect(native.isMapped(a)).toBe(true);
    new Uint32Array(a)[1024 + 5] = 0xdeadbeef;
    expect(new Uint32Array(b)[5]).toBe(0xdeadbeef);
    native.munmap(a);
    native.munmap(b);
    closeFd(fd);
  });

  it('munmap detaches the buffer first and refuses anything that is not a live mapping', () => {
    const fd = track(native.memfdCreate('detach', 4096));
    const buffer = native.mmap(fd, 0, 4096, RW);
    const view = new Uint8Array(buffer);
    view[0] = 1;
    native.munmap(buffer);
    expect(view.byteLength).toBe(0);
    expect(view[0]).toBeUndefined();
    expect(buffer.byteLength).toBe(0);
    expect(native.isMapped(buffer)).toBe(false);
    expectSystemError(() => native.munmap(buffer), 'EINVAL', 'munmap');
    expectSystemError(() => native.munmap(new ArrayBuffer(4096)), 'EINVAL', 'munmap');
    expect(native.isMapped(new ArrayBuffer(8))).toBe(false);
    expect(thrown(() => native.munmap(new Uint8Array(8) as unknown as ArrayBuffer)).code).toBe('ERR_INVALID_ARG_TYPE');
    closeFd(fd);
  });

  it('rejects bad offsets, lengths, prot and fds with errno/code/syscall', () => {
    const fd = track(native.memfdCreate('bad', 8192));
    expectSystemError(() => native.mmap(fd, 100, 4096, RW), 'EINVAL', 'mmap');
    expectSystemError(() => native.mmap(fd, 0, 0, RW), 'EINVAL', 'mmap');
    expectSystemError(() => native.mmap(fd, 4096, 8192, RW), 'EINVAL', 'mmap'); // past EOF: would SIGBUS
    expectSystemError(() => native.mmap(BAD_FD, 0, 4096, RW), 'EBADF', 'mmap');
    expect(thrown(() => native.mmap(fd, 0, 4096, 0)).code).toBe('ERR_OUT_OF_RANGE');
    expect(thrown(() => native.mmap(fd, 0, 4096, 4)).code).toBe('ERR_OUT_OF_RANGE');
    expect(thrown(() => native.mmap(fd, -4096, 4096, RW)).code).toBe('ERR_OUT_OF_RANGE');
    expect(thrown(() => native.mmap(fd, 0, 4096.5, RW)).code).toBe('ERR_OUT_OF_RANGE');
    expect(thrown(() => native.mmap(fd, 0, '4096' as unknown as number, RW)).code).toBe('ERR_INVALID_ARG_TYPE');
    const efd = track(native.eventfdCreate(0, false));
    expectSystemError(() => native.mmap(efd, 0, 4096, RW), 'ENODEV', 'mmap');
    closeFd(efd);
    closeFd(fd);
  });

  it('unmaps a buffer that is garbage-collected without munmap', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const fd = track(native.memfdCreate('vfiod-test-gc', 4096));
    const countMaps = () =>
      fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('vfiod-test-gc')).length;
    (() => {
      for (let i = 0; i < 8; i++) new Uint8Array(native.mmap(fd, 0, 4096, RW))[0] = i;
    })();
    expect(countMaps()).toBe(8);
    await waitFor(() => {
      gc();
      return countMaps() === 0;
    }, 'finalizers to unmap');
    closeFd(fd);
  });
});

describe('memfd and eventfd', () => {
  it('memfdCreate sizes the file', () => {
    const fd = track(native.memfdCreate('size', 12345));
    expect(fs.fstatSync(fd).size).toBe(12345);
    expect(fdFlags(fd) & O_CLOEXEC).toBe(O_CLOEXEC);
    closeFd(fd);
    expect(thrown(() => native.memfdCreate('x'.repeat(250), 1)).code).toBe('ERR_OUT_OF_RANGE');
    expect(thrown(() => native.memfdCreate('x', -1)).code).toBe('ERR_OUT_OF_RANGE');
  });

  it('eventfd counter semantics', () => {
    const fd = track(native.eventfdCreate(5, true));
    expect(fdFlags(fd) & (O_CLOEXEC | O_NONBLOCK)).toBe(O_CLOEXEC | O_NONBLOCK);
    expect(native.eventfdRead(fd)).toBe(5);
    expect(native.eventfdRead(fd)).toBeNull();
    native.eventfdWrite(fd, 2);
    native.eventfdWrite(fd, 3);
    expect(native.eventfdRead(fd)).toBe(5);
    native.eventfdWrite(fd, Number.MAX_SAFE_INTEGER);
    expect(native.eventfdRead(fd)).toBe(Number.MAX_SAFE_INTEGER);
    for (const bad of [0, -1, 1.5, 2 ** 53, NaN]) {
      expect(thrown(() => native.eventfdWrite(fd, bad)).code).toBe('ERR_OUT_OF_RANGE');
    }
    closeFd(fd);

    const blocking = track(native.eventfdCreate(1, false));
    expect(fdFlags(blocking) & O_NONBLOCK).toBe(0);
    expect(native.eventfdRead(blocking)).toBe(1);
    closeFd(blocking);
    expect(thrown(() => native.eventfdCreate(2 ** 32, true)).code).toBe('ERR_OUT_OF_RANGE');
    expectSystemError(() => native.eventfdRead(BAD_FD), 'EBADF', 'read');
  });
});

describe('doorbell poller', () => {
  const readTask = (tid: string, file: string): string => {
    try {
      return fs.readFileSync(`/proc/self/task/${tid}/${file}`, 'utf8');
    } catch {
      return ''; // the thread exited meanwhile
    }
  };
  function page() {
    const fd = track(native.memfdCreate('doorbells', 4096));
    const mine = native.mmap(fd, 0, 4096, RW);
    const guest = native.mmap(fd, 0, 4096, RW); // models the other process writing the shared page
    return { fd, mine, guest, doorbells: new Uint32Array(guest) };
  }

  it('calls back while a covered word differs from consumed, and not once the consumer took it', async () => {
    const { fd, mine, guest, doorbells } = page();
    const consumed = new Uint32Array(8); // 32 bytes: V8 keeps it on its heap until the addon asks for its memory
    let covered = 4;
    let calls = 0;
    /** Callbacks that found something to take; others are the benign extra wake-ups (see docs/native.md). */
    let took = 0;
    const poller = native.createDoorbellPoller(mine, consumed, { spinMicros: 100, maxSleepMicros: 1000 }, () => {
      calls++;
      let changed = false;
      for (let i = 0; i < covered; i++) {
        if (consumed[i] !== doorbells[i]) (consumed[i] = doorbells[i]!), (changed = true); // take the doorbell
      }
      if (changed) took++;
    });
    /** Lets a wake-up sent just before the consumer's store arrive, then returns the settled count. */
    const settledCalls = async (): Promise<number> => {
      await sleep(10);
      return calls;
    };
    poller.setWordCount(4);
    poller.start(); // already running: no-op
    // A GC must not move the consumer's array away from the thread.
    v8.setFlagsFromString('--expose-gc');
    (vm.runInNewContext('gc') as () => void)();
    await sleep(30);
    expect(calls).toBe(0);

    doorbells[2] = 1;
    await waitFor(() => took === 1, 'doorbell callback');
    expect(consumed[2]).toBe(1);
    const after = await settledCalls();
    await sleep(30);
    expect(calls).toBe(after); // consumed again equals the page: quiet

    doorbells[4] = 1; // beyond the word count
    await sleep(30);
    expect(calls).toBe(after);

    covered = 8;
    poller.setWordCount(8); // no snapshot: the earlier write differs from consumed[4], so it is reported now
    await waitFor(() => took === 2, 'callback for a newly covered word');
    expect(consumed[4]).toBe(1);
    const quiet = await settledCalls();
    await sleep(30);
    expect(calls).toBe(quiet);
    expect(thrown(() => poller.setWordCount(9)).code).toBe('ERR_OUT_OF_RANGE'); // more than consumed holds
    expect(thrown(() => poller.setWordCount(9)).message).toMatch(/9 words are more than "consumed" holds \(8\)/);

    expectSystemError(() => native.munmap(mine), 'EBUSY', 'munmap');
    poller.close();
    poller.close();
    native.munmap(mine);
    native.munmap(guest);
    closeFd(fd);
    expect(thrown(() => poller.setWordCount(1)).code).toBe('ERR_INVALID_STATE');
  });

  it('keeps calling back while a word stays different from consumed', async () => {
    const { fd, mine, guest, doorbells } = page();
    const consumed = new Uint32Array(2);
    let calls = 0;
    const poller = native.createDoorbellPoller(mine, consumed, { spinMicros: 50, maxSleepMicros: 200 }, () => calls++);
    poller.setWordCount(2);
    doorbells[1] = 7; // the consumer does not record it
    await waitFor(() => calls >= 1, 'first callback');
    await sleep(50);
    const ignored = calls;
    expect(ignored).toBeGreaterThan(3); // re-sent until taken (the count depends on the machine)

    consumed[1] = 7; // taken: the callbacks stop
    await sleep(20);
    const settled = calls;
    await sleep(30);
    expect(calls).toBe(settled);
    poller.close();
    native.munmap(mine);
    native.munmap(guest);
    closeFd(fd);
  });

  it('reports a value that returns to an earlier one while it differs from consumed (lost-doorbell ABA)', async () => {
    // A 2-entry queue's tail goes 1, 0, 1. The consumer takes the 0 outside any callback of this poller, as the
    // controller does when another wake-up makes it read every doorbell. The thread is in long sleeps and most
    // likely never sees the 0; with a private snapshot (the old design) it still held 1, saw no change when
    // the 1 came back, and the doorbell was lost. Compared with consumed (0), the 1 is a difference.
    const { fd, mine, guest, doorbells } = page();
    const consumed = new Uint32Array(1);
    const taken: number[] = [];
    const take = (): void => {
      const value = doorbells[0]!;
      if (value !== consumed[0]) taken.push(value);
      consumed[0] = value;
    };
    const poller = native.createDoorbellPoller(mine, consumed, { spinMicros: 0, maxSleepMicros: 100_000 }, take);
    poller.setWordCount(1);
    doorbells[0] = 1;
    await waitFor(() => taken.length === 1, 'first doorbell');
    await sleep(30); // the thread backs off to long sleeps

    // One synchronous turn: the guest rings 0, the consumer takes it, the guest rings 1 again.
    doorbells[0] = 0;
    take();
    doorbells[0] = 1;
    await waitFor(() => taken.length === 3, 'the value that came back');
    expect(taken).toEqual([1, 0, 1]);

    // The same while stopped, which makes it deterministic: the old start() snapshotted the 1 and never
    // reported it; now start() only resumes comparing, and 1 differs from consumed.
    poller.stop();
    doorbells[0] = 0;
    take();
    doorbells[0] = 1;
    await sleep(20);
    expect(taken).toEqual([1, 0, 1, 0]);
    poller.start();
    await waitFor(() => taken.length === 5, 'the value that came back while stopped');
    expect(taken).toEqual([1, 0, 1, 0, 1]);

    poller.close();
    native.munmap(mine);
    native.munmap(guest);
    closeFd(fd);
  });

  it('stop/start: no callbacks while stopped, differences reported on start; sleeping scans see changes', async () => {
    const { fd, mine, guest, doorbells } = page();
    const consumed = new Uint32Array(1024);
    let calls = 0;
    let took = 0;
    // spinMicros 0: the thread goes straight to its sleep/backoff path.
    const poller = native.createDoorbellPoller(mine, consumed, { spinMicros: 0, maxSleepMicros: 500 }, () => {
      calls++;
      if (doorbells.some((value, i) => value !== consumed[i])) took++;
      consumed.set(doorbells);
    });
    poller.setWordCount(1024);
    expect(thrown(() => poller.setWordCount(1025)).code).toBe('ERR_OUT_OF_RANGE'); // beyond the page
    await sleep(20);
    doorbells[1023] = 1;
    await waitFor(() => took === 1, 'callback while sleeping');

    poller.stop();
    poller.stop();
    const stoppedAt = calls;
    doorbells[0] = 1;
    await sleep(20);
    expect(calls).toBe(stoppedAt); // nothing after stop() returned
    expectSystemError(() => native.munmap(mine), 'EBUSY', 'munmap'); // stopped still pins the page
    poller.start();
    await waitFor(() => took === 2, 'the write made while stopped');
    expect(consumed[0]).toBe(1);
    doorbells[0] = 2;
    await waitFor(() => took === 3, 'callback after restart');
    poller.close();
    native.munmap(mine);
    native.munmap(guest);
    closeFd(fd);
  });

  it('pause hands the page to the consumer: the thread blocks until resume, which reports what changed', async () => {
    const { fd, mine, guest, doorbells } = page();
    const consumed = new Uint32Array(2);
    let took = 0;
    const doorbellThreads = (): Set<string> =>
      new Set(fs.readdirSync('/proc/self/task').filter((tid) => readTask(tid, 'comm').trim() === 'vfiod-doorbell'));
    const before = doorbellThreads();
    // maxSleepMicros 1: a scanning thread wakes up all the time, so a paused one is easy to tell apart.
    const poller = native.createDoorbellPoller(mine, consumed, { spinMicros: 0, maxSleepMicros: 1 }, () => {
      if (doorbells[0] !== consumed[0]) took++;
      consumed[0] = doorbells[0]!;
    });
    poller.setWordCount(2);
    let tid = '';
    // The thread names itself once it runs.
    await waitFor(() => (tid = [...doorbellThreads()].find((t) => !before.has(t)) ?? '') !== '', 'the poller thread');
    /** The thread's CPU time in ns (schedstat: on-CPU time, wait time, timeslices). */
    const cpuNs = (): number => Number(readTask(tid, 'schedstat').split(' ')[0]);
    doorbells[0] = 1;
    await waitFor(() => took === 1, 'callback before pausing');

    poller.pause();
    poller.pause(); // idempotent
    await sleep(20); // a sleep or scan under way when pause() came ends
    const pausedAt = cpuNs();
    doorbells[0] = 2;
    await sleep(50);
    expect(took).toBe(1); // nobody scans: no callback for the new value
    expect(cpuNs() - pausedAt).toBeLessThan(100_000); // and the thread does not run

    poller.resume();
    await waitFor(() => took === 2, 'the write made while paused');
    expect(consumed[0]).toBe(2);
    const scanning = cpuNs();
    await sleep(50);
    expect(cpuNs() - scanning).toBeGreaterThan(500_000); // back to scanning every microsecond or so
    poller.resume(); // not paused: no-op

    poller.pause(); // stop() and close() do not wait for a resume
    poller.stop();
    poller.close();
    native.munmap(mine);
    native.munmap(guest);
    closeFd(fd);
  });

  it('deep idle: after idleAfterMicros without a change the sleeps grow to idleSleepMicros, and a write still wakes it', async () => {
    const { fd, mine, guest, doorbells } = page();
    const consumed = new Uint32Array(2);
    let took = 0;
    const before = new Set(fs.readdirSync('/proc/self/task'));
    const poller = native.createDoorbellPoller(
      mine,
      consumed,
      { spinMicros: 0, maxSleepMicros: 1, idleAfterMicros: 20_000, idleSleepMicros: 50_000 },
      () => {
        if (doorbells[0] !== consumed[0]) took++;
        consumed[0] = doorbells[0]!;
      },
    );
    poller.setWordCount(2);
    let tid = '';
    await waitFor(
      () => (tid = fs.readdirSync('/proc/self/task').find((t) => !before.has(t) && readTask(t, 'comm').trim() === 'vfiod-doorbell') ?? '') !== '',
      'the poller thread',
    );
    const cpuNs = (): number => Number(readTask(tid, 'schedstat').split(' ')[0]);
    await sleep(100); // past idleAfterMicros: sleeps of 50 ms now
    const idleAt = cpuNs();
    await sleep(200);
    // About 4 scans; with 1 µs sleeps the thread would be on the CPU most of these 200 ms.
    expect(cpuNs() - idleAt).toBeLessThan(2_000_000);
    doorbells[0] = 1;
    await waitFor(() => took === 1, 'a write during deep idle');
    poller.close();
    native.munmap(mine);
    native.munmap(guest);
    closeFd(fd);
  });

  it('deep idle is shared: parked pollers block, one idle scanner watches their pages, each write wakes its own poller', async () => {
    const options = { spinMicros: 0, maxSleepMicros: 50, idleAfterMicros: 2_000, idleSleepMicros: 1000 };
    const before = new Set(fs.readdirSync('/proc/self/task'));
    const pollers = Array.from({ length: 3 }, () => {
      const p = page();
      const consumed = new Uint32Array(2);
      const state = { ...p, consumed, took: 0, poller: undefined as unknown as ReturnType<typeof native.createDoorbellPoller> };
      state.poller = native.createDoorbellPoller(p.mine, consumed, options, () => {
        if (p.doorbells[0] !== consumed[0]) state.took++;
        consumed[0] = p.doorbells[0]!;
      });
      state.poller.setWordCount(2);
      return state;
    });
    // The scanner is the process's (an earlier test's may still be on its way out): count it whenever it started.
    const threadsNamed = (name: string): string[] =>
      fs.readdirSync('/proc/self/task').filter((t) => (name === 'vfiod-db-idle' || !before.has(t)) && readTask(t, 'comm').trim() === name);
    await waitFor(() => threadsNamed('vfiod-doorbell').length === 3 && threadsNamed('vfiod-db-idle').length === 1, 'three pollers and one idle scanner');
    await sleep(50); // past idleAfterMicros: all parked
    const switches = (tid: string): number => Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readTask(tid, 'status'))![1]);
    const own = threadsNamed('vfiod-doorbell');
    const at = own.map(switches);
    await sleep(100);
    // Parked: blocked without a timeout (on their own, 1 ms sleeps would be ~100 wake-ups each).
    own.forEach((tid, i) => expect(switches(tid) - at[i]!).toBeLessThan(10));
    for (const [i, p] of pollers.entries()) {
      p.doorbells[0] = i + 1;
      await waitFor(() => p.took === 1, `a write to page ${i} while parked`);
    }
    expect(pollers.map((p) => p.took)).toEqual([1, 1, 1]);
    // Stopping and closing parked pollers does not wait for the scanner, and it goes once nothing is parked.
    await sleep(50);
    for (const p of pollers) {
      p.poller.close();
      native.munmap(p.mine);
      native.munmap(p.guest);
      closeFd(p.fd);
    }
    await waitFor(() => threadsNamed('vfiod-db-idle').length === 0, 'the idle scanner to exit');
  });

  it('can be closed from inside its callback', async () => {
    const { fd, mine, guest, doorbells } = page();
    let calls = 0;
    const consumed = new Uint32Array(2);
    const poller = native.createDoorbellPoller(mine, consumed, { spinMicros: 50, maxSleepMicros: 200 }, () => {
      calls++;
      poller.close();
      native.munmap(mine); // allowed right away: the thread has been joined
    });
    poller.setWordCount(2);
    doorbells[0] = 1;
    await waitFor(() => calls === 1, 'callback');
    expect(native.isMapped(mine)).toBe(false);
    doorbells[1] = 1;
    await sleep(20);
    expect(calls).toBe(1);
    native.munmap(guest);
    closeFd(fd);
  });

  it('validates the page, consumed and options', () => {
    const { fd, mine, guest } = page();
    const ok = { spinMicros: 0, maxSleepMicros: 100 };
    const words = new Uint32Array(4);
    const create = (...args: unknown[]) => () =>
      (native.createDoorbellPoller as (...a: unknown[]) => unknown)(...args);
    expectSystemError(create(new ArrayBuffer(4096), words, ok, () => {}), 'EINVAL', 'mmap');
    expect(thrown(create(mine, words, { spinMicros: -1, maxSleepMicros: 1 }, () => {})).code).toBe('ERR_OUT_OF_RANGE');
    expect(thrown(create(mine, words, { spinMicros: 0, maxSleepMicros: 0 }, () => {})).code).toBe('ERR_OUT_OF_RANGE');
    const deep = (idle: Record<string, unknown>) => create(mine, words, { spinMicros: 0, maxSleepMicros: 100, ...idle }, () => {});
    expect(thrown(deep({ idleAfterMicros: 1000 })).code).toBe('ERR_INVALID_ARG_TYPE'); // both or neither
    expect(thrown(deep({ idleAfterMicros: 1000, idleSleepMicros: 99 })).code).toBe('ERR_OUT_OF_RANGE'); // < maxSleep
    expect(thrown(deep({ idleAfterMicros: 0, idleSleepMicros: 1000 })).code).toBe('ERR_OUT_OF_RANGE');
    expect(thrown(create(mine, words, null, () => {})).code).toBe('ERR_INVALID_ARG_TYPE');
    expect(thrown(create(mine, words, ok, 'cb')).code).toBe('ERR_INVALID_ARG_TYPE');
    // consumed: a Uint32Array of ordinary, non-resizable memory.
    const consumedError = (consumed: unknown) => thrown(create(mine, consumed, ok, () => {}));
    expect(consumedError(ok)).toMatchObject({
      code: 'ERR_INVALID_ARG_TYPE',
      message: expect.stringMatching(/"consumed" must be a Uint32Array, got an object/), // the old 3-argument form
    });
    expect(consumedError([0, 0]).code).toBe('ERR_INVALID_ARG_TYPE');
    expect(consumedError(new Int32Array(4)).code).toBe('ERR_INVALID_ARG_TYPE');
    expect(consumedError(new ArrayBuffer(16)).code).toBe('ERR_INVALID_ARG_TYPE');
    expect(consumedError(new Uint32Array(guest, 64, 4))).toMatchObject({
      code: 'ERR_INVALID_ARG_VALUE',
      message: expect.stringMatching(/not a view of an mmap\(\) buffer/),
    });
    const Resizable = ArrayBuffer as unknown as new (length: number, options: { maxByteLength: number }) => ArrayBuffer;
    expect(consumedError(new Uint32Array(new Resizable(16, { maxByteLength: 64 }))).code).toBe('ERR_INVALID_ARG_VALUE');
    native.munmap(mine); // failed creations left no pin behind
    expectSystemError(create(mine, words, ok, () => {}), 'EINVAL', 'mmap');
    native.munmap(guest);
    closeFd(fd);
  });

  it('accepts a SharedArrayBuffer-backed consumed; a detached one is refused by setWordCount and start', async () => {
    const { fd, mine, guest, doorbells } = page();
    const shared = new Uint32Array(new SharedArrayBuffer(16));
    let calls = 0;
    const sharedPoller = native.createDoorbellPoller(mine, shared, { spinMicros: 10, maxSleepMicros: 100 }, () => {
      calls++;
      shared[0] = doorbells[0]!;
    });
    sharedPoller.setWordCount(4);
    doorbells[0] = 3;
    await waitFor(() => calls >= 1 && shared[0] === 3, 'callback with a shared consumed');
    sharedPoller.close();

    // Detaching is forbidden while the poller lives; with a word count of 0 the thread reads none of that
    // memory, so this test can break the rule safely and check that the poller notices.
    const consumed = new Uint32Array(256);
    const poller = native.createDoorbellPoller(mine, consumed, { spinMicros: 0, maxSleepMicros: 100 }, () => {});
    const moved = structuredClone(consumed.buffer, { transfer: [consumed.buffer] });
    expect(consumed.length).toBe(0);
    expect(thrown(() => poller.setWordCount(1))).toMatchObject({
      code: 'ERR_INVALID_STATE',
      message: expect.stringMatching(/detached/),
    });
    poller.setWordCount(0);
    poller.stop();
    poller.start(); // fine with a word count of 0
    poller.close();
    expect(moved.byteLength).toBe(1024);
    native.munmap(mine);
    native.munmap(guest);
    closeFd(fd);
  });
});

describe('fallocate', () => {
  it('punches holes (a memfd here), passes modes through and reports failures with errno/code/syscall', () => {
    expect([FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE]).toEqual([1, 2, 0x10]);
    const punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    const fd = track(native.memfdCreate('falloc', 64 * 1024));
    const memory = native.mmap(fd, 0, 64 * 1024, RW);
    const bytes = new Uint8Array(memory).fill(7);
    native.fallocate(fd, punch, 4096, 8192);
    expect(bytes.subarray(4096, 12288).every((byte) => byte === 0)).toBe(true);
    expect([bytes[4095], bytes[12288]]).toEqual([7, 7]);
    expect(fs.fstatSync(fd).size).toBe(64 * 1024);
    native.fallocate(fd, 0, 0, 128 * 1024); // mode 0 allocates and extends
    expect(fs.fstatSync(fd).size).toBe(128 * 1024);

    expectSystemError(() => native.fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 4096), 'EOPNOTSUPP', 'fallocate'); // shmem
    // PUNCH_HOLE needs KEEP_SIZE.
    expectSystemError(() => native.fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096), 'EOPNOTSUPP', 'fallocate');
    expectSystemError(() => native.fallocate(fd, punch, 0, 0), 'EINVAL', 'fallocate');
    expectSystemError(() => native.fallocate(BAD_FD, punch, 0, 4096), 'EBADF', 'fallocate');
    expect(thrown(() => native.fallocate(BAD_FD, punch, 4096, 8192)).message).toBe(
      `fallocate(fd ${BAD_FD}, mode 3, offset 4096, length 8192): Bad file descriptor`,
    );
    native.munmap(memory);
    closeFd(fd);
  });
});

describe('argument validation', () => {
  it('rejects wrong types and ranges with clear errors', () => {
    const cases: Array<[() => unknown, string, RegExp]> = [
      [() => native.close(-1), 'ERR_OUT_OF_RANGE', /close: "fd" must be an integer in \[0, 2147483647\], got -1/],
      [() => native.close(1.5), 'ERR_OUT_OF_RANGE', /got 1.5/],
      [() => native.close('3' as never), 'ERR_INVALID_ARG_TYPE', /got string '3'/],
      [() => (native.close as () => void)(), 'ERR_INVALID_ARG_TYPE', /got undefined/],
      [() => native.accept(2 ** 31), 'ERR_OUT_OF_RANGE', /accept/],
      [() => native.recvmsg(0, [1, 2] as never, 0), 'ERR_INVALID_ARG_TYPE', /Uint8Array/],
      [() => native.recvmsg(0, new Uint16Array(4) as never, 0), 'ERR_INVALID_ARG_TYPE', /Uint8Array/],
      [() => native.recvmsg(0, new Uint8Array(0), 0), 'ERR_OUT_OF_RANGE', /must not be empty/],
      [() => native.recvmsg(0, new Uint8Array(1), 254), 'ERR_OUT_OF_RANGE', /maxFds/],
      [() => native.sendmsg(0, new Uint8Array(1), 3 as never), 'ERR_INVALID_ARG_TYPE', /fds/],
      [() => native.sendmsg(0, new Uint8Array(1), [-1]), 'ERR_OUT_OF_RANGE', /fds\[0\]/],
      [() => native.sendmsg(0, new Uint8Array(0), [0]), 'ERR_OUT_OF_RANGE', /at least one byte/],
      [() => native.setNonBlocking(0, 1 as never), 'ERR_INVALID_ARG_TYPE', /boolean/],
      [() => native.listenUnix(path.join(dir, 'm.sock'), 0o1000, 1), 'ERR_OUT_OF_RANGE', /mode/],
      [() => native.listenUnix(path.join(dir, 'b.sock'), 0o600, -1), 'ERR_OUT_OF_RANGE', /backlog/],
      [() => native.listenUnix('', 0o600, 1), 'ERR_INVALID_ARG_VALUE', /empty/],
      [() => native.listenUnix('/tmp/a\0b', 0o600, 1), 'ERR_INVALID_ARG_VALUE', /NUL/],
      [() => native.connectUnix(5 as never), 'ERR_INVALID_ARG_TYPE', /socketPath/],
      [() => native.createWatcher(0, 'nope' as never), 'ERR_INVALID_ARG_TYPE', /callback/],
      [() => native.createWatcher(-3, () => {}), 'ERR_OUT_OF_RANGE', /fd/],
      [() => native.eventfdCreate(0, 'yes' as never), 'ERR_INVALID_ARG_TYPE', /nonBlocking/],
      [() => native.isMapped({} as never), 'ERR_INVALID_ARG_TYPE', /ArrayBuffer/],
      [() => native.memfdCreate(Symbol('x') as never, 1), 'ERR_INVALID_ARG_TYPE', /a symbol/],
      [() => native.fallocate(-1, 3, 0, 1), 'ERR_OUT_OF_RANGE', /fallocate: "fd"/],
      [() => native.fallocate(0, -1, 0, 1), 'ERR_OUT_OF_RANGE', /fallocate: "mode"/],
      [() => native.fallocate(0, 3, 1.5, 1), 'ERR_OUT_OF_RANGE', /fallocate: "offset"/],
      [() => native.fallocate(0, 3, 0, 2 ** 53), 'ERR_OUT_OF_RANGE', /fallocate: "length"/],
      [() => native.fallocate(0, 3, 0, '1' as never), 'ERR_INVALID_ARG_TYPE', /fallocate: "length"/],
    ];
    for (const [fn, code, message] of cases) {
      const error = thrown(fn);
      expect(error.code, String(fn)).toBe(code);
      expect(error.message, String(fn)).toMatch(message);
      expect(error.errno).toBeUndefined();
    }
  });

  it('reports socket path length and OS failures with errno, code, syscall and context', () => {
    const long = path.join(dir, 'x'.repeat(120));
    const error = thrown(() => native.listenUnix(long, 0o600, 1));
    expect(error.code).toBe('ENAMETOOLONG');
    expect(error.syscall).toBe('bind');
    expect(error.message).toMatch(/limited to 107 bytes/);
    expect(thrown(() => native.connectUnix(long)).code).toBe('ENAMETOOLONG');

    expectSystemError(() => native.connectUnix(path.join(dir, 'missing.sock')), 'ENOENT', 'connect');
    expectSystemError(() => native.recvmsg(BAD_FD, new Uint8Array(4), 1), 'EBADF', 'recvmsg');
    expect(thrown(() => native.recvmsg(BAD_FD, new Uint8Array(4), 1)).message).toBe(
      `recvmsg(fd ${BAD_FD}): Bad file descriptor`,
    );
    expectSystemError(() => native.sendmsg(BAD_FD, new Uint8Array(4), []), 'EBADF', 'sendmsg');
    expectSystemError(() => native.accept(BAD_FD), 'EBADF', 'accept4');
    expectSystemError(() => native.close(BAD_FD), 'EBADF', 'close');
    expectSystemError(() => native.setNonBlocking(BAD_FD, true), 'EBADF', 'fcntl');
    expectSystemError(() => native.eventfdWrite(BAD_FD, 1), 'EBADF', 'write');
    expectSystemError(() => native.createWatcher(BAD_FD, () => {}), 'EBADF', 'uv_poll_init');
    const efd = track(native.eventfdCreate(0, true));
    expectSystemError(() => native.accept(efd), 'ENOTSOCK', 'accept4');
    closeFd(efd);
  });
});

describe('memfd size seals', () => {
  it('a memfd created with sealSize cannot be shrunk or grown by anyone holding the fd', () => {
    const sealed = native.memfdCreate('sealed', 8192, true);
    const open = native.memfdCreate('unsealed', 8192);
    try {
      expect(fs.fstatSync(sealed).size).toBe(8192);
      expect(() => fs.ftruncateSync(sealed, 0)).toThrow(expect.objectContaining({ code: 'EPERM' }));
      expect(() => fs.ftruncateSync(sealed, 16384)).toThrow(expect.objectContaining({ code: 'EPERM' }));
      fs.ftruncateSync(open, 4096); // the default stays resizable (guest RAM in tests)
      expect(fs.fstatSync(open).size).toBe(4096);
      expect(() => native.memfdCreate('x', 4096, 'yes' as never)).toThrow(TypeError);
    } finally {
      native.close(sealed);
      native.close(open);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Faults a peer can cause in the process: a file shrunk under a mapping (SIGBUS), an eventfd made blocking again.
// Each case runs in a child process, so that without the protection the child dies or hangs (and the test fails)
// instead of this test process.

const ADDON = fileURLToPath(new URL('../../../build/Release/vfiod_native.node', import.meta.url));

/** Runs CommonJS `code` in a fresh node (`n` is the addon); returns its exit status, signal and last stdout line as JSON. */
function runChild(code: string, timeoutMs = 20_000): { status: number | null; signal: string | null; result: unknown; stderr: string } {
  const script = `const n = require(${JSON.stringify(ADDON)});\n${code}`;
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: timeoutMs });
  const lines = child.stdout.trim().split('\n').filter(Boolean);
  let result: unknown;
  try {
    result = lines.length > 0 ? JSON.parse(lines[lines.length - 1]!) : undefined;
  } catch {
    result = lines[lines.length - 1];
  }
  return { status: child.status, signal: child.signal, result, stderr: child.stderr };
}

/** The child-side body of the shrink test: two guarded mappings, one file shrinks, the lost pages are touched. */
const SHRINK_PROBE = `
  const fs = require('node:fs');
  const PAGE = 4096;
  const fdA = n.memfdCreate('shrinks', 3 * PAGE);
  const fdB = n.memfdCreate('bystander', 3 * PAGE);
  const a = n.mmap(fdA, 0, 3 * PAGE, 3);
  const b = n.mmap(fdB, 0, 3 * PAGE, 3);
  const va = new Uint8Array(a), vb = new Uint8Array(b);
  va.fill(7); vb.fill(8);
  const totalBefore = n.memoryFaultCount();
  const faultBefore = n.mappingFault(a);
  fs.ftruncateSync(fdA, PAGE); // the peer cuts pages 1 and 2 off
  const lostRead = va[PAGE + 5];
  va[2 * PAGE + 1] = 9; // goes to a private page, not to the file
  const lostWrittenReadsBack = va[2 * PAGE + 1];
  fs.ftruncateSync(fdA, 3 * PAGE);
  const fileAfter = Buffer.alloc(1);
  fs.readSync(fdA, fileAfter, 0, 1, 2 * PAGE + 1);
  fs.writeSync(fdA, Buffer.from([42]), 0, 1, 3); // the kept page is still shared with the file
  const result = {
    totalBefore, faultBefore, lostRead, lostWrittenReadsBack, fileAfter: fileAfter[0],
    kept: va[0], keptShared: va[3], fault: n.mappingFault(a), bystander: n.mappingFault(b), bystanderByte: vb[2 * PAGE],
    totalAfter: n.memoryFaultCount(),
  };
  n.munmap(a); n.munmap(b);
  result.afterUnmap = n.mappingFault(a);
  console.log(JSON.stringify(result));
`;

function expectShrinkProbe(result: unknown): void {
  expect(result).toMatchObject({
    faultBefore: null,
    lostRead: 0,
    fileAfter: 0,
    kept: 7,
    keptShared: 42,
    fault: { offset: 4096 },
    bystander: null,
    bystanderByte: 8,
    afterUnmap: null,
  });
  const probe = result as { totalBefore: number; totalAfter: number; fault: { count: number }; lostWrittenReadsBack: number };
  expect(probe.fault.count).toBeGreaterThanOrEqual(2); // page 1 read, page 2 written
  expect(probe.totalAfter - probe.totalBefore).toBe(probe.fault.count);
  expect([0, 9]).toContain(probe.lostWrittenReadsBack);
}

describe('SIGBUS guard: a file shrunk under a mapping', () => {
  it('lost pages read as zeros and writes to them go nowhere; the fault is reported for that mapping only', () => {
    const child = runChild(SHRINK_PROBE);
    expect({ status: child.status, signal: child.signal, stderr: child.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    expectShrinkProbe(child.result);
  });

  it('the same in a worker thread (where vfiod runs its controllers)', () => {
    const child = runChild(`
      const { Worker } = require('node:worker_threads');
      const worker = new Worker(${JSON.stringify(`const n = require(${JSON.stringify(ADDON)});`)} + ${JSON.stringify(SHRINK_PROBE)}, { eval: true, stdout: true });
      let out = '';
      worker.stdout.on('data', (chunk) => (out += chunk));
      worker.on('exit', (code) => { console.log(out.trim()); process.exitCode = code; });
    `);
    expect({ status: child.status, signal: child.signal, stderr: child.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    expectShrinkProbe(child.result);
  });

  it('huge pages (hugetlbfs) are replaced whole', () => {
    const meminfo = fs.readFileSync('/proc/meminfo', 'utf8');
    const free = Number(/HugePages_Free:\s+(\d+)/.exec(meminfo)?.[1] ?? 0);
    const size = Number(/Hugepagesize:\s+(\d+) kB/.exec(meminfo)?.[1] ?? 0) * 1024;
    let writable = false;
    try {
      fs.accessSync('/dev/hugepages', fs.constants.W_OK);
      writable = true;
    } catch {
      // no hugetlbfs mount we may use
    }
    if (free < 2 || size === 0 || !writable) {
      console.warn('hugetlbfs case skipped: no writable /dev/hugepages with 2 free huge pages');
      return;
    }
    const child = runChild(`
      const fs = require('node:fs');
      const HUGE = ${size};
      const file = '/dev/hugepages/vfiod-native-test-' + process.pid;
      const fd = fs.openSync(file, 'w+');
      fs.unlinkSync(file);
      fs.ftruncateSync(fd, 2 * HUGE);
      const buffer = n.mmap(fd, 0, 2 * HUGE, 3);
      const view = new Uint8Array(buffer);
      view[0] = 1; view[HUGE] = 2;
      fs.ftruncateSync(fd, HUGE);
      const lost = view[HUGE + 12345];
      const result = { kept: view[0], lost, fault: n.mappingFault(buffer) };
      n.munmap(buffer);
      console.log(JSON.stringify(result));
    `);
    expect({ status: child.status, signal: child.signal }).toEqual({ status: 0, signal: null });
    expect(child.result).toEqual({ kept: 1, lost: 0, fault: { count: 1, offset: size } });
  });

  it('a SIGBUS that is not a guarded fault goes to the handler installed before, or takes the default action', () => {
    const mapping = "n.mmap(n.memfdCreate('guarded', 4096), 0, 4096, 3);";
    const byDefault = runChild(`${mapping} process.kill(process.pid, 'SIGBUS'); setTimeout(() => console.log('survived'), 2000);`);
    expect(byDefault.signal).toBe('SIGBUS');
    const chained = runChild(`
      process.on('SIGBUS', () => { console.log(JSON.stringify('js handler')); process.exit(0); });
      ${mapping}
      process.kill(process.pid, 'SIGBUS');
      setTimeout(() => console.log(JSON.stringify('not delivered')), 5000);
    `);
    expect({ status: chained.status, result: chained.result }).toEqual({ status: 0, result: 'js handler' });
  });

  it('only files that can shrink are guarded; fileSeals reports the seals', () => {
    const sealed = track(native.memfdCreate('sealed', 8192, true));
    const plain = track(native.memfdCreate('plain', 8192));
    const file = path.join(dir, 'seals.bin');
    fs.writeFileSync(file, Buffer.alloc(8192));
    const regular = track(fs.openSync(file, 'r+'));
    expect(native.fileSeals(sealed)! & F_SEAL_SHRINK).toBe(F_SEAL_SHRINK);
    expect(native.fileSeals(sealed)! & F_SEAL_GROW).toBe(F_SEAL_GROW);
    expect(native.fileSeals(plain)! & F_SEAL_SHRINK).toBe(0);
    expect(native.fileSeals(regular)).toBeNull();
    expectSystemError(() => native.fileSeals(BAD_FD), 'EBADF', 'fcntl');
    for (const fd of [sealed, plain, regular]) {
      const buffer = native.mmap(fd, 0, 8192, RW);
      expect(native.mappingFault(buffer)).toBeNull();
      native.munmap(buffer);
      closeFd(fd);
    }
    expect(thrown(() => native.mappingFault(new Uint8Array(4) as never)).code).toBe('ERR_INVALID_ARG_TYPE');
    expect(native.mappingFault(new ArrayBuffer(8))).toBeNull();
  });

  it('the table of guarded mappings is bounded: ENOSPC when full, usable again once mappings go', () => {
    const fd = track(native.memfdCreate('many', 4096));
    const buffers: ArrayBuffer[] = [];
    let error: ReturnType<typeof thrown> | undefined;
    try {
      for (let index = 0; index < 20_000 && !error; index++) {
        try {
          buffers.push(native.mmap(fd, 0, 4096, RW));
        } catch (caught) {
          error = caught as ReturnType<typeof thrown>;
        }
      }
      expect(error?.code).toBe('ENOSPC');
      expect(error?.message).toContain('too many guarded mappings');
      expect(buffers.length).toBeLessThanOrEqual(16384);
      expect(buffers.length).toBeGreaterThan(16000);
      native.munmap(buffers.pop()!);
      buffers.push(native.mmap(fd, 0, 4096, RW));
    } finally {
      for (const buffer of buffers) native.munmap(buffer);
    }
    native.munmap(native.mmap(fd, 0, 4096, RW));
    closeFd(fd);
  });
});

describe('eventfd: a peer that makes it blocking again cannot block the caller', () => {
  it('a write into a full counter and a read of an empty one return within ~0.2 s (main thread and Worker)', () => {
    const probe = `
      const fs = require('node:fs');
      const O_NONBLOCK = 0o4000;
      const fd = n.eventfdCreate(0, false); // blocking, as if the peer had cleared O_NONBLOCK
      const full = Buffer.alloc(8);
      full.writeBigUInt64LE(0xfffffffffffffffen);
      fs.writeSync(fd, full);
      let started = Date.now();
      const written = n.eventfdWrite(fd, 1);
      const writeMs = Date.now() - started;
      const nonBlockingAgain = (parseInt(fs.readFileSync('/proc/self/fdinfo/' + fd, 'utf8').match(/flags:\\s+(\\d+)/)[1], 8) & O_NONBLOCK) !== 0; // octal
      const counter = n.eventfdRead(fd);
      n.setNonBlocking(fd, false);
      started = Date.now();
      const empty = n.eventfdRead(fd);
      const readMs = Date.now() - started;
      n.close(fd);
      console.log(JSON.stringify({ written, writeMs, nonBlockingAgain, counter, empty, readMs }));
    `;
    const expectBounded = (child: ReturnType<typeof runChild>) => {
      expect({ status: child.status, signal: child.signal }).toEqual({ status: 0, signal: null });
      const result = child.result as { writeMs: number; readMs: number };
      expect(result).toMatchObject({ written: false, nonBlockingAgain: true, counter: 2 ** 64 - 2, empty: null });
      // The watchdog interrupts after one to two 100 ms ticks; generous for a busy machine.
      expect(result.writeMs).toBeLessThan(3000);
      expect(result.readMs).toBeLessThan(3000);
    };
    expectBounded(runChild(probe, 15_000));
    expectBounded(
      runChild(
        `
        const { Worker } = require('node:worker_threads');
        const worker = new Worker(${JSON.stringify(`const n = require(${JSON.stringify(ADDON)});`)} + ${JSON.stringify(probe)}, { eval: true, stdout: true });
        let out = '';
        worker.stdout.on('data', (chunk) => (out += chunk));
        worker.on('exit', (code) => { console.log(out.trim()); process.exitCode = code; });
      `,
        15_000,
      ),
    );
  });

  it('writes that fit still succeed at once on a blocking eventfd', () => {
    const fd = track(native.eventfdCreate(0, false));
    for (let index = 0; index < 1000; index++) expect(native.eventfdWrite(fd, 1)).toBe(true);
    expect(native.eventfdRead(fd)).toBe(1000);
    closeFd(fd);
  });
});
