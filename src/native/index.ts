/**
 * Typed loader for the C++ addon (native/). The addon is the only code that touches raw fds, sockets with
 * SCM_RIGHTS, mmap, eventfds and the doorbell poller thread; it holds no policy. Every function validates its
 * arguments and throws an Error with `errno`, `code` (e.g. 'EBADF') and `syscall` set when the OS refuses.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;

export const PROT_READ = 1;
export const PROT_WRITE = 2;

export interface RecvResult {
  /** Bytes received into the buffer; 0 means the peer closed the connection. */
  bytes: number;
  /** File descriptors that arrived with these bytes (close-on-exec set). */
  fds: number[];
  /** True when the peer sent more fds than `maxFds`; the extra ones were closed by the kernel. */
  fdsTruncated: boolean;
}

export interface FdWatcher {
  /** Watch for POLL_READABLE and/or POLL_WRITABLE; the callback gets the ready events (or a negative errno). */
  start(events: number): void;
  stop(): void;
  /** Stops and releases the watcher; the fd itself is not closed. */
  close(): void;
}

export interface DoorbellPoller {
  /** Number of 32-bit words (from offset 0 of the page) the poller compares; doorbells beyond are ignored. */
  setWordCount(words: number): void;
  start(): void;
  stop(): void;
  close(): void;
}

export interface DoorbellPollerOptions {
  /** Keep spinning this long after the last change before backing off to sleeps. */
  spinMicros: number;
  /** Longest sleep between scans when idle. */
  maxSleepMicros: number;
}

export interface NativeAddon {
  /** Creates, binds (with file mode `mode`) and listens on a non-blocking AF_UNIX stream socket. Returns its fd. */
  listenUnix(socketPath: string, mode: number, backlog: number): number;
  /** Connects a blocking AF_UNIX stream socket (clients, tests). Returns its fd. */
  connectUnix(socketPath: string): number;
  /** Accepts one connection (non-blocking, close-on-exec); null when none is pending. */
  accept(listenFd: number): number | null;
  /** recvmsg into `buffer`, collecting up to `maxFds` SCM_RIGHTS fds; null when it would block. */
  recvmsg(fd: number, buffer: Uint8Array, maxFds: number): RecvResult | null;
  /** sendmsg of `buffer` with `fds` attached; returns bytes sent (may be partial) or null when it would block. */
  sendmsg(fd: number, buffer: Uint8Array, fds: readonly number[]): number | null;
  setNonBlocking(fd: number, nonBlocking: boolean): void;
  close(fd: number): void;

  /** Watches `fd` on the calling thread's libuv loop. */
  createWatcher(fd: number, callback: (events: number) => void): FdWatcher;

  /** Maps `length` bytes of `fd` at `offset` (MAP_SHARED) as an ArrayBuffer. */
  mmap(fd: number, offset: number, length: number, prot: number): ArrayBuffer;
  /** Detaches `buffer` (every view of it becomes empty) and unmaps it. Throws EBUSY while a poller uses it. */
  munmap(buffer: ArrayBuffer): void;
  /** Whether `buffer` came from `mmap` and is still mapped. */
  isMapped(buffer: ArrayBuffer): boolean;

  memfdCreate(name: string, size: number): number;
  eventfdCreate(initial: number, nonBlocking: boolean): number;
  eventfdWrite(fd: number, value: number): void;
  /** The counter value, or null when it is zero and the fd is non-blocking. */
  eventfdRead(fd: number): number | null;

  /**
   * Starts a thread that watches the first words of `page` (an ArrayBuffer from `mmap`) for changes and calls
   * `callback` on the creating thread's loop when any changed. The thread never runs JavaScript.
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
