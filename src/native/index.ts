/**
 * Typed loader for the C++ addon (native/). The addon is the only code that touches raw fds, sockets with
 * SCM_RIGHTS, mmap, eventfds and the doorbell poller thread; it holds no policy. See docs/native.md.
 *
 * Errors: bad arguments throw a TypeError (code 'ERR_INVALID_ARG_TYPE' / 'ERR_INVALID_ARG_VALUE') or RangeError
 * ('ERR_OUT_OF_RANGE'); an OS refusal throws a {@link NativeSystemError}. Using a closed watcher/poller throws
 * code 'ERR_INVALID_STATE'.
 *
 * Threads: the module is context-aware and may be loaded in worker_threads Workers; watchers and pollers belong
 * to the thread that created them and are closed automatically when that thread's environment exits.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;

export const PROT_READ = 1;
export const PROT_WRITE = 2;

/**
 * A failed syscall. As in Node's own system errors `errno` is negative (-9 for EBADF), so
 * `util.getSystemErrorName(err.errno)` works; `code` is the symbolic name and `syscall` the call that failed.
 * The message says what was being done: "recvmsg(fd 7): Bad file descriptor".
 */
export interface NativeSystemError extends Error {
  errno: number;
  code: string;
  syscall: string;
}

export interface RecvResult {
  /** Bytes received into the buffer; 0 means the peer closed the connection. */
  bytes: number;
  /** File descriptors that arrived with these bytes (close-on-exec set). */
  fds: number[];
  /** True when the peer sent more fds than `maxFds`; the extra ones were closed by the kernel. */
  fdsTruncated: boolean;
}

/**
 * A libuv poll handle on the creating thread's loop. A started watcher keeps the loop (process / Worker) alive
 * and cannot be garbage-collected; a stopped one that becomes unreachable is closed by GC.
 */
export interface FdWatcher {
  /**
   * Watch for POLL_READABLE and/or POLL_WRITABLE (1..3; calling it again changes the set). The callback gets the
   * ready events, or a negative errno when polling failed. Level-triggered: it fires again while still ready.
   */
  start(events: number): void;
  stop(): void;
  /** Stops and releases the watcher (idempotent; fine inside the callback); the fd itself is not closed. */
  close(): void;
}

/**
 * A native thread comparing the first words of a mapped page with a snapshot; any difference wakes the creating
 * thread's loop, which calls the callback (changes coalesce: one callback may stand for many writes). The
 * poller is running from creation on. Until close() it pins the page: munmap() of it throws EBUSY.
 */
export interface DoorbellPoller {
  /**
   * Number of 32-bit words (from offset 0 of the page, at most byteLength / 4; initially 0) the poller compares;
   * doorbells beyond are ignored. Newly covered words are snapshotted before this returns: writes after it are
   * guaranteed to be reported, earlier ones are not, so rescan the doorbells yourself after growing the count.
   */
  setWordCount(words: number): void;
  /** Restarts a stopped poller (no-op when running); like setWordCount, it snapshots before returning. */
  start(): void;
  /** Joins the thread; no callback is made after stop() returns. */
  stop(): void;
  /** Stops the thread and releases the page (idempotent; fine inside the callback). */
  close(): void;
}

export interface DoorbellPollerOptions {
  /** Keep spinning (one core busy) this long after the last change before backing off to sleeps; 0..10_000_000. */
  spinMicros: number;
  /** Longest sleep between scans when idle (sleeps start at 1 µs and double up to this); 1..1_000_000. */
  maxSleepMicros: number;
}

export interface NativeAddon {
  /**
   * Creates, binds and listens on a non-blocking, close-on-exec AF_UNIX stream socket. Returns its fd. The socket
   * file gets exactly `mode` (0..0o777) and is never more permissive than that, even briefly. The path must not
   * exist (remove a stale socket first) and is limited to 107 bytes (else code 'ENAMETOOLONG').
   */
  listenUnix(socketPath: string, mode: number, backlog: number): number;
  /** Connects a blocking, close-on-exec AF_UNIX stream socket (clients, tests). Returns its fd. */
  connectUnix(socketPath: string): number;
  /** Accepts one connection (non-blocking, close-on-exec); null when none is pending. */
  accept(listenFd: number): number | null;
  /**
   * recvmsg into `buffer` (non-empty), collecting up to `maxFds` (0..253) SCM_RIGHTS fds (close-on-exec); null
   * when it would block. `bytes` 0 means EOF. The caller owns every returned fd, also when `fdsTruncated`.
   */
  recvmsg(fd: number, buffer: Uint8Array, maxFds: number): RecvResult | null;
  /**
   * sendmsg of `buffer` with up to 253 `fds` attached (MSG_NOSIGNAL: a gone peer gives EPIPE); returns bytes sent
   * or null when it would block. On a partial send the fds went with the part that was sent: send the rest
   * without them. Sending fds needs at least one byte.
   */
  sendmsg(fd: number, buffer: Uint8Array, fds: readonly number[]): number | null;
  setNonBlocking(fd: number, nonBlocking: boolean): void;
  /** Closes `fd`. Throws EBUSY (and keeps it open) while a watcher of this thread is open on it. */
  close(fd: number): void;

  /**
   * Watches `fd` on the calling thread's libuv loop. libuv switches the fd to non-blocking mode. One watcher per
   * fd and thread (a second one throws EEXIST); close the watcher before closing the fd.
   */
  createWatcher(fd: number, callback: (events: number) => void): FdWatcher;

  /**
   * Maps `length` (> 0) bytes of `fd` at `offset` (page-aligned) MAP_SHARED as an external ArrayBuffer; `prot` is
   * PROT_READ and/or PROT_WRITE. For regular files (memfds) the range must lie within the file. Never write
   * through a mapping without PROT_WRITE: that faults and kills the process. On Node 20 one mapping is at most
   * buffer.constants.MAX_LENGTH (4 GiB). Do not transfer the buffer to another thread.
   */
  mmap(fd: number, offset: number, length: number, prot: number): ArrayBuffer;
  /**
   * Detaches `buffer` (every view of it becomes empty) and unmaps it. Throws EBUSY while a poller uses it and
   * EINVAL if it is not a live mapping (e.g. already unmapped). An unreachable mapping is unmapped by GC.
   */
  munmap(buffer: ArrayBuffer): void;
  /** Whether `buffer` came from `mmap` and is still mapped. */
  isMapped(buffer: ArrayBuffer): boolean;

  /** memfd_create (close-on-exec; name at most 249 bytes) sized to `size` bytes. */
  memfdCreate(name: string, size: number): number;
  /** A close-on-exec eventfd with counter `initial` (0..2^32-1). */
  eventfdCreate(initial: number, nonBlocking: boolean): number;
  /** Adds `value` (1..2^53-1) to the counter. */
  eventfdWrite(fd: number, value: number): void;
  /** The counter value (and resets it), or null when it is zero and the fd is non-blocking. */
  eventfdRead(fd: number): number | null;

  /**
   * Starts a thread that watches the first words of `page` (a live, readable ArrayBuffer from `mmap`) for changes
   * and calls `callback` on the creating thread's loop when any changed. The thread never runs JavaScript. The
   * poller runs from creation on with a word count of 0; see {@link DoorbellPoller}.
   */
  createDoorbellPoller(page: ArrayBuffer, options: DoorbellPollerOptions, callback: () => void): DoorbellPoller;
}

function loadAddon(): NativeAddon {
  const require = createRequire(import.meta.url);
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const candidates = [
    path.join(root, 'build', 'Release', 'vfiod_native.node'),
    path.join(root, 'build', 'Debug', 'vfiod_native.node'),
  ];
  let lastError: unknown;
  for (const candidate of candidates) {
    try {
      return require(candidate) as NativeAddon;
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`vfiod native addon not found (run 'npm install' to build it): ${String(lastError)}`);
}

export const native: NativeAddon = loadAddon();
