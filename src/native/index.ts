/**
 * Typed loader for the C++ addon (native/). The addon is the only code that touches raw fds, sockets with
 * SCM_RIGHTS, mmap, eventfds, fallocate and the doorbell poller thread; it holds no policy. See docs/native.md.
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

/** Seal bits of `fileSeals` (linux/fcntl.h): the file can no longer shrink / grow. */
export const F_SEAL_SHRINK = 0x0002;
export const F_SEAL_GROW = 0x0004;

/** fallocate(2) mode bits (linux/falloc.h). */
export const FALLOC_FL_KEEP_SIZE = 0x01;
/** Deallocates the range (reads return zeroes); must be combined with FALLOC_FL_KEEP_SIZE. */
export const FALLOC_FL_PUNCH_HOLE = 0x02;
/** Zeroes the range, keeping (or making) it allocated: unwritten extents on filesystems that have them. */
export const FALLOC_FL_ZERO_RANGE = 0x10;

// The VFIO constants (IOMMU types, DMA map flags, region and irq indexes, capability ids) are in src/spec/vfio.ts.

export interface VfioGroupStatus {
  flags: number;
  /** Every device in the group is bound to a VFIO driver or to none (VFIO_GROUP_FLAGS_VIABLE). */
  viable: boolean;
  containerSet: boolean;
}

export interface VfioIommuInfo {
  flags: number;
  /** Bitmap of supported IOMMU page sizes. */
  iovaPgsizes: number | bigint;
  /** Usable IOVA ranges (inclusive ends), when the kernel reports them. */
  iovaRanges?: Array<{ start: number | bigint; end: number | bigint }>;
  /** How many more DMA mappings the container accepts (vfio_iommu_type1 dma_entry_limit). */
  dmaAvail?: number;
}

export interface VfioDeviceInfo {
  flags: number;
  numRegions: number;
  numIrqs: number;
  /** VFIO_DEVICE_FLAGS_RESET: VFIO_DEVICE_RESET is supported (FLR, PM or bus reset). */
  reset: boolean;
  pci: boolean;
}

export interface VfioRegionInfo {
  index: number;
  flags: number;
  /** 0 for an absent region (unimplemented BAR). */
  size: number | bigint;
  /** File offset of the region on the device fd (pread/pwrite/mmap). */
  offset: number | bigint;
  readable: boolean;
  writable: boolean;
  mmap: boolean;
  /** The parts that may be mmapped (VFIO_REGION_INFO_CAP_SPARSE_MMAP), offsets relative to the region. */
  sparseMmap?: Array<{ offset: number | bigint; size: number | bigint }>;
  /** Device-specific region type (VFIO_REGION_INFO_CAP_TYPE). */
  type?: { type: number; subtype: number };
  /** VFIO_REGION_INFO_CAP_MSIX_MAPPABLE: the MSI-X table in this BAR may be mmapped too. */
  msixMappable: boolean;
  /** Ids of every capability in the chain, in order. */
  capIds: number[];
}

export interface VfioIrqInfo {
  index: number;
  flags: number;
  count: number;
  eventfd: boolean;
  maskable: boolean;
  automasked: boolean;
  noresize: boolean;
}

/** iommufd (/dev/iommu, Linux >= 6.2 with CONFIG_IOMMUFD): IOMMU_HW_INFO_TYPE_* of iommufdGetHwInfo. */
export const IOMMU_HW_INFO_TYPE_NONE = 0;
export const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;
export const IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2;

export interface IommufdIovaRanges {
  /** IOVA ranges the IOAS can map (inclusive ends), narrowed by the attached devices' reserved regions. */
  ranges: Array<{ start: number | bigint; last: number | bigint }>;
  /** Required IOVA alignment (the smallest IOMMU page size of the attached devices). */
  alignment: number | bigint;
}

export interface IommufdHwInfo {
  /** IOMMU_HW_INFO_TYPE_*: which IOMMU the device sits behind. */
  type: number;
  /** IOMMU_HW_CAP_* bits (bit 0: dirty tracking). */
  capabilities: number | bigint;
  /** Bytes of driver-specific data the kernel has for it. */
  dataLength: number;
}

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
 * A native thread comparing the first words of a mapped page with the consumer's `consumed` array: while any
 * page[i] differs from consumed[i] (i < word count) it wakes the creating thread's loop, which calls the callback.
 * Wake-ups coalesce (one callback may stand for many writes), and a word that stays different keeps producing
 * callbacks until the consumer stores the value it took in consumed[i]. There is no snapshot: a value is reported
 * whenever it differs from consumed[i], whenever it was written (also before setWordCount/start, and also when it
 * equals an earlier value). The poller is running from creation on. Until close() it pins the page (munmap() of
 * it throws EBUSY) and holds a reference to `consumed`.
 */
export interface DoorbellPoller {
  /**
   * Number of 32-bit words (from offset 0 of the page; initially 0) the poller compares; doorbells beyond are
   * ignored. At most byteLength / 4 of the page and at most consumed.length (else a RangeError, code
   * 'ERR_OUT_OF_RANGE'). Takes effect at the thread's next scan; nothing is snapshotted.
   */
  setWordCount(words: number): void;
  /** Restarts a stopped poller (no-op when running). Differences that arose while stopped are reported. */
  start(): void;
  /** Joins the thread; no callback is made after stop() returns. */
  stop(): void;
  /**
   * Hands the page to the consumer: the thread stops scanning and blocks (no CPU) until resume(). For a consumer
   * that polls the page itself while busy. One atomic store (no syscall); a scan already under way may still make
   * one callback. Survives stop()/start().
   */
  pause(): void;
  /** Takes the page back after pause(): scanning restarts with the spin/sleep policy from its start (no-op unless paused). */
  resume(): void;
  /** Stops the thread and releases the page and `consumed` (idempotent; fine inside the callback). */
  close(): void;
}

/**
 * One event-loop turn on request, for a thread that keeps the loop waiting while it works (native/loop.cc). Unlike
 * setImmediate, the loop looks the same to the callback as to anyone else: eventLoopHasWork asked from inside a
 * setImmediate callback always says yes.
 */
export interface LoopTurn {
  /** Calls the callback once, in the loop's next idle phase (after timers, before polling for I/O without blocking). */
  request(): void;
  /** A requested turn does not come; idempotent. */
  close(): void;
}

export interface DoorbellPollerOptions {
  /** Keep spinning (one core busy) this long after the last change before backing off to sleeps; 0..10_000_000. */
  spinMicros: number;
  /** Longest sleep between scans when idle (sleeps start at 1 µs and double up to this); 1..1_000_000. */
  maxSleepMicros: number;
  /**
   * Deep idle (optional, both or neither): after this long without a change (1..10_000_000 µs) the sleeps keep
   * doubling up to `idleSleepMicros` (maxSleepMicros..1_000_000). Bounds what a page nobody writes costs.
   */
  idleAfterMicros?: number;
  idleSleepMicros?: number;
}

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
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
  /** The process at the other end of a connected AF_UNIX socket, as the kernel recorded it at connect (SO_PEERCRED). */
  peerCredentials(fd: number): PeerCredentials;
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
  /** One datagram to an AF_UNIX SOCK_DGRAM socket (`@name`: abstract), as sd_notify sends to $NOTIFY_SOCKET. */
  sendDatagram(socketPath: string, bytes: Uint8Array): void;
  /** Closes `fd`. Throws EBUSY (and keeps it open) while a watcher of this thread is open on it. */
  close(fd: number): void;

  /**
   * Watches `fd` on the calling thread's libuv loop. libuv switches the fd to non-blocking mode. One watcher per
   * fd and thread (a second one throws EEXIST); close the watcher before closing the fd.
   */
  createWatcher(fd: number, callback: (events: number) => void): FdWatcher;

  /**
   * Maps `length` (> 0) bytes of `fd` at `offset` (page-aligned) MAP_SHARED as an external ArrayBuffer; `prot` is
   * PROT_READ and/or PROT_WRITE. For regular files (memfds) the range must lie within the file. A regular file that
   * can still shrink (not sealed with F_SEAL_SHRINK) is guarded: if it shrinks under the mapping, touching a lost
   * page does not raise SIGBUS, the page reads as zeros instead and `mappingFault` reports it (docs/native.md).
   * Throws ENOSPC when the guard's table (16384 mappings) is full. Never write through a mapping without
   * PROT_WRITE: that faults and kills the process. On Node 20 one mapping is at most buffer.constants.MAX_LENGTH
   * (4 GiB). Do not transfer the buffer to another thread.
   */
  mmap(fd: number, offset: number, length: number, prot: number): ArrayBuffer;
  /**
   * Zeroed private memory of `length` bytes outside the engine's heap, freed when the ArrayBuffer is collected.
   * `hugePages`: 2 MiB-aligned and advised for transparent huge pages (the kernel decides). Not for `munmap`.
   */
  allocateZeroed(length: number, hugePages: boolean): ArrayBuffer;
  /**
   * Zeroes `length` bytes at `offset` of a buffer from `allocateZeroed` and gives its whole pages back to the OS
   * (they read as zeroes and cost nothing until written again). Throws for any other buffer or a range outside it.
   */
  discard(buffer: ArrayBuffer, offset: number, length: number): void;
  /**
   * Whether the file under a guarded mapping shrank and a lost page was touched (and replaced with zeros): how
   * many times, and the byte offset (from the start of the mapping) of the first lost page. Null when not, and for
   * unguarded mappings and anything that is not a live mapping.
   */
  mappingFault(buffer: ArrayBuffer): { count: number; offset: number } | null;
  /** Lost pages replaced in any guarded mapping of the process so far; poll it cheaply, then ask `mappingFault`. */
  memoryFaultCount(): number;
  /** The F_GET_SEALS bits of `fd` (F_SEAL_SHRINK = 2, ...), or null for a file without seal support. */
  fileSeals(fd: number): number | null;
  /**
   * Detaches `buffer` (every view of it becomes empty) and unmaps it. Throws EBUSY while a poller uses it and
   * EINVAL if it is not a live mapping (e.g. already unmapped). An unreachable mapping is unmapped by GC.
   */
  munmap(buffer: ArrayBuffer): void;
  /** Whether `buffer` came from `mmap` and is still mapped. */
  isMapped(buffer: ArrayBuffer): boolean;

  /**
   * memfd_create (close-on-exec; name at most 249 bytes) sized to `size` bytes. With `sealSize` the size is sealed
   * (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): use it for every memfd handed to a client, which could otherwise
   * truncate it under our own mappings and kill the process with SIGBUS.
   */
  memfdCreate(name: string, size: number, sealSize?: boolean): number;
  /** A close-on-exec eventfd with counter `initial` (0..2^32-1). */
  eventfdCreate(initial: number, nonBlocking: boolean): number;
  /**
   * Adds `value` (1..2^53-1) to the counter; true when it was added. When the counter cannot take `value` (it would
   * reach 2^64-1) nothing is written and the result is false: for an interrupt that means the consumer has not read
   * the counter since, so an interrupt is already pending. That is immediate (EAGAIN) on a non-blocking eventfd; on
   * a blocking one the addon's watchdog interrupts the write after at most ~0.2 s, sets O_NONBLOCK on the fd again
   * and retries once (docs/native.md). Still set O_NONBLOCK (`setNonBlocking`) on every eventfd a peer supplies:
   * the peer shares the flag and may clear it, which then costs at most that delay per call. Other errors throw.
   */
  eventfdWrite(fd: number, value: number): boolean;
  /**
   * The counter value (and resets it), or null when it is zero: at once on a non-blocking fd, after at most ~0.2 s
   * (the same watchdog) on a blocking one.
   */
  eventfdRead(fd: number): number | null;
  /**
   * Whether `fd` is an eventfd (readlink of /proc/self/fd/N is "anon_inode:[eventfd]"). A socket, pipe, memfd or
   * other anonymous-inode file (timerfd, signalfd, epoll) gives false. Throws EBADF for a closed fd and the
   * readlink error when /proc is not mounted.
   */
  isEventfd(fd: number): boolean;

  /**
   * fallocate(2) on `fd` with `mode` (FALLOC_FL_* bits, passed through as is) over `length` bytes at `offset`.
   * Synchronous: on a regular file this is a metadata operation, on a block device a discard / write-zeroes
   * request the call waits for, so split huge ranges. EINTR is retried. Unsupported modes fail with code
   * 'EOPNOTSUPP' (some filesystems and devices: 'ENODEV', 'ENOSYS' or 'EINVAL'); a zero length gives 'EINVAL'.
   */
  fallocate(fd: number, mode: number, offset: number, length: number): void;

  /**
   * CRC32C (Castagnoli) of `data` (a view, or views digested in order as one stream), continuing from `seed` (the
   * result of a previous call; default 0 = a fresh CRC). Reads the views in place. Uses the SSE4.2 crc32
   * instruction when the CPU has it (see `crc32cHardware`), else a slicing-by-8 table. The NVMe/TCP digest.
   */
  crc32c(data: Uint8Array | readonly Uint8Array[], seed?: number): number;
  /** The same CRC, always with the portable table implementation (for cross-checking). */
  crc32cPortable(data: Uint8Array | readonly Uint8Array[], seed?: number): number;
  /** Whether `crc32c` uses the CPU's crc32 instruction. */
  readonly crc32cHardware: boolean;

  /**
   * Copies `count` runs between the Uint8Arrays of `arrays`, in order, prefetching the sources of the next runs
   * while one is copied. `runs` holds `copyRunWords` words per run: source array index, source index, target
   * array index, target index, length, flags. Every run is checked against its arrays before anything is copied
   * (a RangeError names the first bad one); overlapping runs copy as memmove does.
   */
  copyRuns(arrays: readonly Uint8Array[], runs: Uint32Array, count: number): void;
  /** Words per run in `copyRuns`'s `runs` (6). */
  readonly copyRunWords: number;
  /**
   * A run's flag: its target will not be read soon, so it is written around the cache (non-temporal stores: no
   * read of each target line from memory before it is overwritten). For data going into a memory namespace.
   */
  readonly copyStreamTarget: number;

  /**
   * Starts a thread that compares the first words of `page` (a live, readable ArrayBuffer from `mmap`) with
   * `consumed` and calls `callback` on the creating thread's loop while any differ. The thread never runs
   * JavaScript. The poller runs from creation on with a word count of 0; see {@link DoorbellPoller}.
   *
   * `consumed` is an ordinary Uint32Array owned by the consumer (not a view of an `mmap` buffer, not over a
   * resizable ArrayBuffer: those throw code 'ERR_INVALID_ARG_VALUE'); it must cover the word count. Whenever the
   * consumer takes a doorbell value from page[i] it stores that same value (not a re-read) in consumed[i]; it must
   * also do so for values it ignores, or it keeps being called. Its buffer must not be detached (transferred)
   * while the poller lives: the thread reads that memory without the JS thread's involvement (a detach is noticed
   * only by setWordCount/start, which then throw 'ERR_INVALID_STATE').
   */
  createDoorbellPoller(
    page: ArrayBuffer,
    consumed: Uint32Array,
    options: DoorbellPollerOptions,
    callback: () => void,
  ): DoorbellPoller;

  /**
   * Whether this thread's event loop has work right now: a watched fd is ready (socket, worker message, wake-up), a
   * timer is due, or libuv has callbacks to run without waiting (setImmediate included). One poll(2) of the loop's
   * epoll fd, not a loop turn. Blind to microtasks, so a caller that holds the loop still lets it turn every few
   * milliseconds. True when it cannot tell.
   */
  eventLoopHasWork(): boolean;
  /** A LoopTurn that calls `callback`; it keeps the loop alive while a turn is requested. */
  createLoopTurn(callback: () => void): LoopTurn;

  /** VFIO_API_VERSION of the headers the addon was built with (0). */
  readonly VFIO_API_VERSION: number;
  /** Opens the VFIO container (default '/dev/vfio/vfio', close-on-exec) and checks VFIO_GET_API_VERSION. */
  vfioOpenContainer(path?: string): number;
  /** VFIO_CHECK_EXTENSION on a container: > 0 when supported (e.g. VFIO_TYPE1v2_IOMMU). */
  vfioCheckExtension(containerFd: number, extension: number): number;
  /** VFIO_SET_IOMMU (a group must have been added to the container first). */
  vfioSetIommu(containerFd: number, type: number): void;
  /** VFIO_IOMMU_GET_INFO of a type1 container, with the IOVA range and DMA-available capabilities. */
  vfioIommuGetInfo(containerFd: number): VfioIommuInfo;
  /** Opens a group node (e.g. '/dev/vfio/12'), close-on-exec. Only one process can hold a group open (EBUSY). */
  vfioOpenGroup(path: string): number;
  /** VFIO_GROUP_GET_STATUS. */
  vfioGroupGetStatus(groupFd: number): VfioGroupStatus;
  /** VFIO_GROUP_SET_CONTAINER. */
  vfioGroupSetContainer(groupFd: number, containerFd: number): void;
  /** VFIO_GROUP_UNSET_CONTAINER (drops the container's IOMMU when it was the last group). */
  vfioGroupUnsetContainer(groupFd: number): void;
  /** VFIO_GROUP_GET_DEVICE_FD with the device name (the BDF for PCI); the fd is close-on-exec. */
  vfioGroupGetDeviceFd(groupFd: number, name: string): number;
  /** VFIO_DEVICE_GET_INFO. */
  vfioDeviceGetInfo(deviceFd: number): VfioDeviceInfo;
  /** VFIO_DEVICE_GET_REGION_INFO with its capability chain (sparse mmap, type, MSI-X mappable). */
  vfioDeviceGetRegionInfo(deviceFd: number, index: number): VfioRegionInfo;
  /** VFIO_DEVICE_GET_IRQ_INFO (EINVAL for an index the device does not have). */
  vfioDeviceGetIrqInfo(deviceFd: number, index: number): VfioIrqInfo;
  /** VFIO_DEVICE_RESET. */
  vfioDeviceReset(deviceFd: number): void;
  /**
   * pread on the device fd at the absolute `offset` (region offset + offset in the region) into `buffer`; returns
   * the bytes read (fewer only at the end of the region). For config space use 1-, 2- or 4-byte naturally aligned
   * accesses.
   */
  vfioRegionRead(deviceFd: number, offset: number, buffer: Uint8Array): number;
  /** pwrite counterpart of vfioRegionRead; returns the bytes written. */
  vfioRegionWrite(deviceFd: number, offset: number, buffer: Uint8Array): number;
  /**
   * VFIO_IOMMU_MAP_DMA of `size` bytes at `bufferOffset` of `buffer` (a live `mmap` ArrayBuffer, e.g. of a memfd)
   * to `iova`; offsets and size page-aligned; flags VFIO_DMA_MAP_FLAG_READ|WRITE (default both). The buffer is
   * pinned (munmap throws EBUSY) until vfioIommuUnmapDma or vfioCloseContainer.
   */
  vfioIommuMapDma(containerFd: number, buffer: ArrayBuffer, bufferOffset: number, iova: number, size: number, flags?: number): void;
  /** VFIO_IOMMU_UNMAP_DMA of exactly one earlier vfioIommuMapDma (same iova and size); unpins its buffer. */
  vfioIommuUnmapDma(containerFd: number, iova: number, size: number): number;
  /** Closes a container fd and unpins every buffer DMA-mapped through it. Use it instead of close() for containers. */
  vfioCloseContainer(containerFd: number): void;

  // iommufd + VFIO device cdev (Linux >= 6.2, CONFIG_IOMMUFD + CONFIG_VFIO_DEVICE_CDEV). See docs/vfio.md.
  /** Opens /dev/iommu (or `path`), close-on-exec. */
  iommufdOpen(path?: string): number;
  /** Closes an iommufd and unpins every buffer mapped into its IOASes. Use it instead of close() for iommufds. */
  iommufdClose(iommufd: number): void;
  /** IOMMU_IOAS_ALLOC: a new I/O address space; returns its id. */
  iommufdIoasAlloc(iommufd: number): number;
  /** IOMMU_DESTROY of an object (IOAS or hw pagetable). An IOAS's mappings go with it (and are unpinned); EBUSY while a device is attached. */
  iommufdDestroy(iommufd: number, id: number): void;
  /** IOMMU_IOAS_IOVA_RANGES. */
  iommufdIoasIovaRanges(iommufd: number, ioasId: number): IommufdIovaRanges;
  /**
   * IOMMU_IOAS_MAP at a fixed `iova`; same buffer rules, flags (VFIO_DMA_MAP_FLAG_READ|WRITE) and pinning as
   * vfioIommuMapDma, released by iommufdIoasUnmap, iommufdDestroy of the IOAS or iommufdClose.
   */
  iommufdIoasMap(iommufd: number, ioasId: number, buffer: ArrayBuffer, bufferOffset: number, iova: number, size: number, flags?: number): void;
  /** IOMMU_IOAS_UNMAP of exactly one earlier iommufdIoasMap (same iova and size); unpins its buffer. */
  iommufdIoasUnmap(iommufd: number, ioasId: number, iova: number, size: number): number;
  /** IOMMU_GET_HW_INFO for a device bound to this iommufd (its devId from vfioDeviceBindIommufd). */
  iommufdGetHwInfo(iommufd: number, devId: number): IommufdHwInfo;
  /** Opens a VFIO device cdev ('/dev/vfio/devices/vfioN'), close-on-exec. Only binding works until it is bound. */
  vfioOpenDeviceCdev(path: string): number;
  /** VFIO_DEVICE_BIND_IOMMUFD: returns the device id in that iommufd. EBUSY while the group is open the legacy way. */
  vfioDeviceBindIommufd(deviceFd: number, iommufd: number): number;
  /** VFIO_DEVICE_ATTACH_IOMMUFD_PT to an IOAS (or hw pagetable) id; returns the id attached (the hw pagetable made for the IOAS). */
  vfioDeviceAttachIommufdPt(deviceFd: number, ptId: number): number;
  /** VFIO_DEVICE_DETACH_IOMMUFD_PT: DMA is blocked until attached again. */
  vfioDeviceDetachIommufdPt(deviceFd: number): void;
}

function loadAddon(): NativeAddon {
  const require = createRequire(import.meta.url);
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  // A source build first: it exists only where one was made (a checkout, or an install whose prebuilt addon did not
  // load: scripts/install-native.mjs); then the prebuilt addon a packed vfiod ships (scripts/prebuild.mjs).
  const candidates = [
    path.join(root, 'build', 'Release', 'vfiod_native.node'),
    path.join(root, 'build', 'Debug', 'vfiod_native.node'),
    path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'vfiod_native.node'),
  ];
  const failures: string[] = [];
  for (const candidate of candidates) {
    try {
      return require(candidate) as NativeAddon;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') failures.push(`${candidate}: ${String(error)}`);
    }
  }
  throw new Error(
    `vfiod native addon not found or not loadable (run 'npm install' to build it)` +
      (failures.length ? `: ${failures.join('; ')}` : `; looked for ${candidates.join(', ')}`),
  );
}

export const native: NativeAddon = loadAddon();
