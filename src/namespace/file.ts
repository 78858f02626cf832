/**
 * A namespace stored in a regular file (created sparse when missing) or a block device.
 *
 * Data moves with preadv/pwritev straight between the file and the guest-memory views the controller passes in (no
 * staging copy), on libuv's thread pool. Short transfers are continued; a read past the end of a regular file (the
 * file was truncated behind our back) returns zeroes for the missing part.
 *
 * direct (O_DIRECT): the kernel then needs the file offset, every length and every buffer address aligned (to the
 * device's logical block size and DMA alignment). Offsets are multiples of the namespace block size; guest memory is
 * page-aligned mmapped RAM, so PRP pages qualify, but a PRP1 offset or an SGL data block may not. Transfers whose
 * buffers are not 512-byte aligned (or that the kernel rejects with EINVAL) go through page-aligned bounce buffers
 * (one copy, in chunks of BOUNCE_BYTES). Bounce buffers come from the native addon (memfd + mmap), the only way to
 * get memory with a known alignment.
 *
 * Deallocate and Write Zeroes use fallocate(2) from the native addon (Node has none):
 *  - deallocate punches holes (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): the blocks are freed and read as zeroes.
 *  - writeZeroes on a regular file uses FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, which keeps the range allocated
 *    (unwritten extents: no data written, and later writes cannot fail for lack of space); where the filesystem has
 *    no ZERO_RANGE (tmpfs) it punches a hole instead, which also reads as zeroes.
 *  - On a block device both punch (the kernel turns that into REQ_OP_WRITE_ZEROES with unmap allowed and no
 *    fallback: a discard that guarantees zeroes, or EOPNOTSUPP at once). ZERO_RANGE is not used there: the
 *    kernel's fallback for it writes zero pages synchronously, which would stall the event loop.
 *  When the kernel answers EOPNOTSUPP, ENOSYS, ENODEV or EINVAL for a mode, that mode is remembered as
 *  unsupported for this namespace and the range (and all later ones) is written with zeroes through pwritev, as
 *  without the addon. fallocate is synchronous (a metadata operation on files, a discard the kernel waits for on
 *  devices), so at most FALLOCATE_CHUNK_BYTES (1 GiB; 128 MiB on a device) are done per event-loop turn for the
 *  whole namespace, whatever the number of commands (sliced-work.ts), and each call counts at least 1 MiB of that;
 *  a request that fits in what is left of the turn completes synchronously.
 *  `supportsDeallocate` (thin provisioning, DLFEAT, NUSE from st_blocks) is decided once at open, so the guest
 *  never sees it change: true for a writable regular file when punching a block-sized hole just past the end
 *  of the file (with KEEP_SIZE: nothing there to lose, the size does not change) succeeds. It stays false for
 *  block devices, where no range can be probed without destroying data, and when the addon is not available.
 *
 * Write cache: writes land in the page cache (or, with O_DIRECT, possibly in the device's own volatile cache), so
 * `volatileWriteCache` is true in both modes (false only when read-only) and the guest's Flush becomes fdatasync(2).
 *
 * Block devices are opened with O_EXCL, which Linux turns into an exclusive claim: opening fails with EBUSY while the
 * device is mounted or claimed by another exclusive opener, so a guest cannot scribble over a host filesystem.
 *
 * Size: one backend's whole I/O path (preadv/pwritev on the thread pool, O_DIRECT with bounce buffers, block-device
 * probing, flush, deallocate); the parts share the open file's state and splitting would only pass it around.
 */
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { rootLogger, type Logger } from '../util/log.js';
import { formatSize } from '../util/size.js';
import { makeDirectory } from '../util/make-directory.js';
import { BackingRefused, type BackingIdentity, checkBackingDescriptor, descriptorPath, openPathDescriptor } from './backing.js';
import { NamespaceError, type ByteRange, type Namespace, type NamespaceUsage } from './namespace.js';
import { SlicedWork, type SlicedJob } from './sliced-work.js';

export interface FileNamespaceOptions {
  path: string;
  /** Namespace size. Required to create a missing file; a smaller file is grown (sparse); shrinking is refused. */
  sizeBytes?: number;
  /** 512 (default) or 4096. */
  blockSize?: number;
  /** Open with O_DIRECT (bypass the host page cache). */
  direct?: boolean;
  readOnly?: boolean;
  logger?: Logger;
  /**
   * fallocate(2) to use; by default the native addon's (when it loads). `null` behaves as if the addon were
   * missing (zeroes are written). For tests.
   */
  fallocate?: FallocateFunction | null;
}

/** fallocate(2) as the native addon exposes it: throws an error with `code` ('EOPNOTSUPP', ...) on failure. */
export type FallocateFunction = (fd: number, mode: number, offset: number, length: number) => void;

/**
 * Reads and writes of one namespace on libuv's thread pool at once; more wait in the namespace, in order. The pool
 * is the process's (4 threads), so this keeps one guest from queueing thousands of transfers ahead of every other
 * controller's; it bounds the direct-I/O bounce buffers to as many MiB; and it bounds what a DMA_UNMAP or a reset
 * must wait for: a transfer still held back can be given up (abandon), one on a thread cannot.
 */
export const MAX_SUBMITTED_TRANSFERS = 16;
/** Size of each direct-I/O bounce buffer; unaligned transfers are bounced in pieces of this size. */
export const BOUNCE_BYTES = 1024 * 1024;
/** Write Zeroes / Deallocate write this many bytes of zeroes per iovec ... */
const ZERO_CHUNK_BYTES = 1024 * 1024;
/** ... and up to this many iovecs per pwritev. */
const ZERO_IOVECS = 64;
/** Buffer address/length alignment we consider safe for O_DIRECT without bouncing. */
const DIRECT_MEMORY_ALIGNMENT = 512;
/** Most bytes fallocated per event-loop turn: on a file that takes microseconds (extent updates) ... */
export const FALLOCATE_CHUNK_BYTES = 1024 * 1024 * 1024;
/** ... on a block device the call waits for the device to zero or unmap the range. */
const FALLOCATE_DEVICE_CHUNK_BYTES = 128 * 1024 * 1024;
/** What one fallocate call costs at least, in the per-turn budget's units (so 1024 per turn at most on a file). */
const FALLOCATE_CALL_UNITS = 1024 * 1024;

/** linux/falloc.h (also exported by src/native, which this module loads lazily). */
const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;
const FALLOC_FL_ZERO_RANGE = 0x10;
const PUNCH_HOLE = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
const ZERO_RANGE = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
/** Answers meaning "this mode is not supported on this file / device", not "this call failed". */
const FALLOCATE_UNSUPPORTED = new Set(['EOPNOTSUPP', 'ENOTSUP', 'ENOSYS', 'ENODEV', 'EINVAL']);

const openFile = promisify(fs.open);
const closeFile = promisify(fs.close);
const fstatFile = promisify(fs.fstat);
const truncateFile = promisify(fs.ftruncate);
const datasyncFile = promisify(fs.fdatasync);
const readFile = promisify(fs.read);
const writevFile = promisify(fs.writev);
const writeFile = promisify(fs.write);

/** Zeroes for buffered Write Zeroes; only ever read from. */
let sharedZeroes: Uint8Array | undefined;

interface AlignedBuffer {
  readonly bytes: Uint8Array;
  release(): void;
}

export class FileNamespace implements Namespace {
  readonly blockSize: number;
  readonly description: string;
  readonly path: string;
  readonly readOnly: boolean;
  readonly direct: boolean;
  readonly isBlockDevice: boolean;
  /** True unless read-only (nothing to flush then). */
  readonly volatileWriteCache: boolean;
  readonly maxTransferBytes = 0;
  /** Decided at open: deallocate punches real holes in a regular file (see the file comment). */
  readonly supportsDeallocate: boolean;

  private fd: number;
  /** The namespace's size; `grow` raises it. */
  private size: number;
  private readonly logger: Logger;
  private readonly operations: FileOperation[] = [];
  /** Direct mode: page-aligned buffers (bounces, and one of zeroes) and the allocator for more. */
  private readonly allocateAligned: ((size: number) => AlignedBuffer) | undefined;
  private readonly alignedBuffers: AlignedBuffer[] = [];
  private readonly freeBounces: Uint8Array[] = [];
  private readonly zeroes: Uint8Array;
  /** Cleared when the kernel rejects a zero-copy direct transfer; later ones then always bounce. */
  private zeroCopyDirect = true;
  /** fallocate, and the modes not (yet) found unsupported; without fallocate both are false. */
  private readonly fallocate: FallocateFunction | undefined;
  private punchHoles: boolean;
  private zeroRanges: boolean;
  private inFlight = 0;
  private drained: Array<() => void> = [];
  /** Reads and writes handed to the thread pool and not finished; more wait in `held` (MAX_SUBMITTED_TRANSFERS). */
  private submitted = 0;
  private readonly held: HeldTransfer[] = [];
  /** fallocate work of all deallocate / write zeroes commands, a bounded amount per event-loop turn. */
  private readonly slicedFallocate: SlicedWork;
  private closing = false;

  private constructor(init: {
    fd: number;
    path: string;
    sizeBytes: number;
    blockSize: number;
    readOnly: boolean;
    direct: boolean;
    isBlockDevice: boolean;
    logger: Logger;
    allocateAligned: ((size: number) => AlignedBuffer) | undefined;
    fallocate: FallocateFunction | undefined;
    supportsDeallocate: boolean;
  }) {
    this.fd = init.fd;
    this.path = init.path;
    this.size = init.sizeBytes;
    this.blockSize = init.blockSize;
    this.readOnly = init.readOnly;
    this.volatileWriteCache = !init.readOnly;
    this.direct = init.direct;
    this.isBlockDevice = init.isBlockDevice;
    this.logger = init.logger;
    this.description = `file:${init.path}`;
    this.allocateAligned = init.allocateAligned;
    this.fallocate = init.readOnly ? undefined : init.fallocate;
    this.supportsDeallocate = init.supportsDeallocate;
    // A file's probe already said whether punching works; a block device's answer comes with the first use.
    this.punchHoles = init.isBlockDevice ? this.fallocate !== undefined : init.supportsDeallocate;
    this.zeroRanges = this.fallocate !== undefined && !init.isBlockDevice;
    this.slicedFallocate = new SlicedWork(init.isBlockDevice ? FALLOCATE_DEVICE_CHUNK_BYTES : FALLOCATE_CHUNK_BYTES);
    if (init.allocateAligned) {
      const zeroes = init.allocateAligned(ZERO_CHUNK_BYTES);
      this.alignedBuffers.push(zeroes);
      this.zeroes = zeroes.bytes;
    } else {
      this.zeroes = sharedZeroes ??= new Uint8Array(ZERO_CHUNK_BYTES);
    }
  }

  get sizeBytes(): number {
    return this.size;
  }

  get blockCount(): number {
    return this.size / this.blockSize;
  }

  /** Grows a regular file (ftruncate: the new range is a hole that reads as zeroes); a block device keeps its size. */
  async grow(sizeBytes: number): Promise<void> {
    this.checkOpen('grow');
    if (this.isBlockDevice) throw new NamespaceError('unsupported', `${this.description}: a block device has the size of the device`);
    if (this.readOnly) throw new NamespaceError('read-only', `${this.description}: read-only`);
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= this.size || sizeBytes % this.blockSize !== 0) {
      throw new NamespaceError(
        'internal',
        `${this.description}: new size ${sizeBytes} must be a multiple of the block size ${this.blockSize} larger than ${this.size}`,
      );
    }
    try {
      await truncateFile(this.fd, sizeBytes);
    } catch (error) {
      const kind = (error as NodeJS.ErrnoException).code === 'EFBIG' || (error as NodeJS.ErrnoException).code === 'ENOSPC' ? 'capacity' : 'write';
      throw new NamespaceError(kind, `${this.description}: growing to ${sizeBytes} bytes failed: ${(error as Error).message}`, undefined, { cause: error });
    }
    this.logger.info('grew file (sparse)', { fromBytes: this.size, toBytes: sizeBytes });
    this.size = sizeBytes;
  }

  static async open(options: FileNamespaceOptions): Promise<FileNamespace> {
    const { sizeBytes, blockSize = 512, direct = false, readOnly = false } = options;
    const filePath = path.resolve(options.path);
    const what = `file namespace '${filePath}'`;
    if (blockSize !== 512 && blockSize !== 4096) throw new Error(`${what}: block size must be 512 or 4096, got ${blockSize}`);
    if (sizeBytes !== undefined && (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % blockSize !== 0)) {
      throw new Error(`${what}: size ${sizeBytes} must be a positive multiple of the block size ${blockSize}`);
    }
    const logger = (options.logger ?? rootLogger).child({ component: 'namespace', path: filePath });

    // What is there is decided on a descriptor (backing.ts): O_PATH first, so no device driver's open runs before
    // the check, then the real open through that descriptor, so a path swapped in between changes nothing.
    let pathFd: number | undefined;
    try {
      pathFd = openPathDescriptor(filePath);
    } catch (error) {
      throw new Error(`${what}: ${errorMessage(error)}`, { cause: error });
    }
    let flags = (readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR) | (direct ? fs.constants.O_DIRECT : 0) | fs.constants.O_NOCTTY;
    let created = false;
    let checked: BackingIdentity | undefined;
    let fd: number;
    try {
      let openPath = filePath;
      if (pathFd === undefined) {
        if (sizeBytes === undefined) throw new Error(`${what}: file does not exist; give size=<size> to create it`);
        if (readOnly) throw new Error(`${what}: file does not exist and a read-only namespace cannot create it`);
        // A new image in a directory that does not exist yet (a fresh host's /var/lib/vfiod): make it, as `size=`
        // asks for the file to be made.
        try {
          makeDirectory(path.dirname(filePath), 0o755);
        } catch (error) {
          throw new Error(`${what}: ${errorMessage(error)}`, { cause: error });
        }
        // O_EXCL: a symlink put there since is not followed, the open fails instead.
        flags |= fs.constants.O_CREAT | fs.constants.O_EXCL;
        created = true;
      } else {
        checked = refusedAs(what, () => checkBackingDescriptor(pathFd!, filePath));
        if (checked.kind === 'block') flags |= fs.constants.O_EXCL;
        openPath = descriptorPath(pathFd);
      }
      try {
        fd = await openFile(openPath, flags, 0o600);
      } catch (error) {
        const hint =
          errorCode(error) === 'EBUSY'
            ? ' (the block device is in use: mounted or claimed by another program)'
            : direct && errorCode(error) === 'EINVAL'
              ? ' (the filesystem does not support O_DIRECT; drop direct=1)'
              : '';
        throw new Error(`${what}: cannot open: ${errorMessage(error)}${hint}`, { cause: error });
      }
    } finally {
      if (pathFd !== undefined) fs.closeSync(pathFd);
    }
    try {
      // The descriptor the guest will use, checked again (a file just created: where it landed).
      const opened = refusedAs(what, () => checkBackingDescriptor(fd, filePath));
      if (checked && opened.key !== checked.key) throw new Error(`${what}: the file changed while it was opened`);
    } catch (error) {
      await closeFile(fd).catch(() => {});
      if (created) await fs.promises.unlink(filePath).catch(() => {});
      throw error;
    }

    try {
      const stats = await fstatFile(fd);
      let namespaceBytes: number;
      if (stats.isBlockDevice()) {
        const device = await blockDeviceInfo(stats.rdev);
        if (direct && device.logicalBlockSize > blockSize) {
          throw new Error(
            `${what}: block size ${blockSize} is smaller than the device's logical block size ` +
              `${device.logicalBlockSize}; O_DIRECT needs block-size=${device.logicalBlockSize}`,
          );
        }
        const usable = device.sizeBytes - (device.sizeBytes % blockSize);
        if (sizeBytes !== undefined && sizeBytes > usable) {
          throw new Error(`${what}: size ${sizeBytes} is larger than the device (${usable} bytes)`);
        }
        namespaceBytes = sizeBytes ?? usable;
        if (namespaceBytes <= 0) throw new Error(`${what}: the device is smaller than one block`);
        if (namespaceBytes < device.sizeBytes) {
          logger.info('namespace covers only part of the block device', {
            namespaceBytes,
            deviceBytes: device.sizeBytes,
          });
        }
      } else if (stats.isFile()) {
        if (sizeBytes === undefined) {
          if (stats.size === 0) throw new Error(`${what}: file is empty; give size=<size> to size it`);
          if (stats.size % blockSize !== 0) {
            throw new Error(`${what}: file size ${stats.size} is not a multiple of the block size ${blockSize}`);
          }
          namespaceBytes = stats.size;
        } else if (stats.size > sizeBytes) {
          throw new Error(
            `${what}: file is ${stats.size} bytes, larger than size=${sizeBytes}; refusing to shrink it ` +
              `(omit size= to use the file's size)`,
          );
        } else {
          if (stats.size < sizeBytes) {
            if (readOnly) {
              throw new Error(`${what}: file is ${stats.size} bytes, smaller than size=${sizeBytes}, and read-only`);
            }
            // Extending with ftruncate allocates nothing: the new range is a hole that reads as zeroes.
            await truncateFile(fd, sizeBytes);
            if (created) logger.info('created sparse file', { sizeBytes });
            else logger.info('grew file (sparse)', { fromBytes: stats.size, toBytes: sizeBytes });
          }
          namespaceBytes = sizeBytes;
        }
      } else {
        throw new Error(`${what}: neither a regular file nor a block device`);
      }

      const allocateAligned = direct ? await alignedAllocator(what) : undefined;
      let fallocate: FallocateFunction | undefined;
      if (!readOnly) {
        fallocate = options.fallocate === undefined ? await nativeFallocate() : (options.fallocate ?? undefined);
      }
      const supportsDeallocate =
        fallocate !== undefined && stats.isFile() && probePunchHole(fallocate, fd, namespaceBytes, blockSize, logger);
      return new FileNamespace({
        fd,
        path: filePath,
        sizeBytes: namespaceBytes,
        blockSize,
        readOnly,
        direct,
        isBlockDevice: stats.isBlockDevice(),
        logger,
        allocateAligned,
        fallocate,
        supportsDeallocate,
      });
    } catch (error) {
      await closeFile(fd).catch(() => {});
      if (created) await fs.promises.unlink(filePath).catch(() => {});
      throw error;
    }
  }

  read(offset: number, buffers: readonly Uint8Array[]): Promise<void> | void {
    return this.transfer(false, offset, buffers);
  }

  write(offset: number, buffers: readonly Uint8Array[]): Promise<void> | void {
    if (this.readOnly) throw this.writeProtected();
    return this.transfer(true, offset, buffers);
  }

  flush(): Promise<void> | void {
    this.checkOpen('flush');
    if (this.readOnly) return undefined;
    return this.track(
      datasyncFile(this.fd).catch((error: unknown) => {
        throw this.failure('flush', 0, 0, error);
      }),
    );
  }

  deallocate(ranges: readonly ByteRange[]): Promise<void> | void {
    if (this.readOnly) throw this.writeProtected();
    this.checkOpen('deallocate');
    for (const range of ranges) this.checkRange('deallocate', range.offset, range.length);
    return this.clear('deallocate', ranges);
  }

  writeZeroes(offset: number, length: number): Promise<void> | void {
    if (this.readOnly) throw this.writeProtected();
    this.checkOpen('write zeroes');
    this.checkRange('write zeroes', offset, length);
    return this.clear('write zeroes', [{ offset, length }]);
  }

  usage(): NamespaceUsage {
    if (this.isBlockDevice || this.fd < 0) return { allocatedBytes: this.isBlockDevice ? this.sizeBytes : 0 };
    // st_blocks counts 512-byte units whatever the filesystem block size; sparse holes are not counted.
    const allocated = fs.fstatSync(this.fd).blocks * 512;
    return { allocatedBytes: Math.min(allocated, this.sizeBytes) };
  }

  /** Waits for in-flight operations (closing the fd under them could redirect them to a reused fd), syncs, closes. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.drained.push(resolve));
    const fd = this.fd;
    this.fd = -1;
    try {
      if (!this.readOnly) await datasyncFile(fd);
    } finally {
      await closeFile(fd);
      for (const buffer of this.alignedBuffers.splice(0)) buffer.release();
      this.freeBounces.length = 0;
    }
  }

  // --- internals -----------------------------------------------------------------------------------------------

  private transfer(writing: boolean, offset: number, buffers: readonly Uint8Array[]): Promise<void> | void {
    const kind = writing ? 'write' : 'read';
    this.checkOpen(kind);
    let total = 0;
    let aligned = true;
    for (const buffer of buffers) {
      total += buffer.length;
      if (buffer.byteOffset % DIRECT_MEMORY_ALIGNMENT !== 0 || buffer.length % DIRECT_MEMORY_ALIGNMENT !== 0) {
        aligned = false;
      }
    }
    this.checkRange(kind, offset, total);
    if (total === 0) return undefined;
    if (this.submitted >= MAX_SUBMITTED_TRANSFERS) {
      return this.track(new Promise<void>((resolve, reject) => this.held.push({ writing, offset, buffers, aligned, resolve, reject })));
    }
    return this.track(this.submit(writing, offset, buffers, aligned));
  }

  /** Hands a transfer to the thread pool (zero-copy or bounced). */
  private submit(writing: boolean, offset: number, buffers: readonly Uint8Array[], aligned: boolean): Promise<void> {
    if (this.direct && !(aligned && this.zeroCopyDirect)) return this.bounced(writing, offset, buffers);
    this.submitted++;
    const operation = this.operations.pop() ?? new FileOperation(this);
    return operation.run(writing, offset, buffers);
  }

  /** A submitted transfer finished: the next held one goes. */
  private transferFinished(): void {
    this.submitted--;
    while (this.submitted < MAX_SUBMITTED_TRANSFERS && this.held.length > 0) {
      const next = this.held.shift()!;
      let started: Promise<void>;
      try {
        this.checkOpen(next.writing ? 'write' : 'read');
        started = this.submit(next.writing, next.offset, next.buffers, next.aligned);
      } catch (error) {
        next.reject(error);
        continue;
      }
      started.then(next.resolve, next.reject);
    }
  }

  /**
   * Gives up the transfer called with `buffers` if it is still held back (not handed to the thread pool): it rejects
   * and its buffers are never touched. One running on a thread cannot be recalled (the kernel moves its data into or
   * out of the buffers whatever happens): false then.
   */
  abandon(buffers: readonly Uint8Array[]): boolean {
    const index = this.held.findIndex((held) => held.buffers === buffers);
    if (index < 0) return false;
    const [held] = this.held.splice(index, 1);
    held!.reject(new NamespaceError('internal', `${this.description}: ${held!.writing ? 'write' : 'read'} given up before it started`));
    return true;
  }

  /** Called by a zero-copy direct transfer the kernel refused with EINVAL: finish it (and all later ones) bounced. */
  fallBackToBounce(writing: boolean, offset: number, buffers: readonly Uint8Array[]): Promise<void> {
    if (this.zeroCopyDirect) {
      this.zeroCopyDirect = false;
      this.logger.info('O_DIRECT rejected guest buffers as unaligned; using bounce buffers from now on');
    }
    return this.bounced(writing, offset, buffers);
  }

  /** Direct I/O through page-aligned bounce buffers, BOUNCE_BYTES at a time. */
  private async bounced(writing: boolean, offset: number, buffers: readonly Uint8Array[]): Promise<void> {
    this.submitted++;
    let bounce: Uint8Array;
    try {
      bounce = this.takeBounce();
    } catch (error) {
      this.transferFinished();
      throw error;
    }
    try {
      let index = 0;
      let consumed = 0;
      let position = offset;
      let total = 0;
      for (const buffer of buffers) total += buffer.length;
      for (let done = 0; done < total; ) {
        const piece = bounce.subarray(0, Math.min(bounce.length, total - done));
        if (writing) {
          for (let filled = 0; filled < piece.length; ) {
            const source = buffers[index]!;
            const count = Math.min(source.length - consumed, piece.length - filled);
            piece.set(source.subarray(consumed, consumed + count), filled);
            filled += count;
            consumed += count;
            if (consumed === source.length) (index++, (consumed = 0));
          }
          await this.writeFully(piece, position);
        } else {
          await this.readFully(piece, position);
          for (let drained = 0; drained < piece.length; ) {
            const target = buffers[index]!;
            const count = Math.min(target.length - consumed, piece.length - drained);
            target.set(piece.subarray(drained, drained + count), consumed);
            drained += count;
            consumed += count;
            if (consumed === target.length) (index++, (consumed = 0));
          }
        }
        done += piece.length;
        position += piece.length;
      }
    } catch (error) {
      throw error instanceof NamespaceError ? error : this.failure(writing ? 'write' : 'read', offset, 0, error);
    } finally {
      this.freeBounces.push(bounce);
      this.transferFinished();
    }
  }

  private async readFully(buffer: Uint8Array, position: number): Promise<void> {
    for (let done = 0; done < buffer.length; ) {
      let bytes: number;
      try {
        ({ bytesRead: bytes } = await readFile(this.fd, buffer, done, buffer.length - done, position + done));
      } catch (error) {
        throw this.failure('read', position + done, buffer.length - done, error);
      }
      if (bytes === 0) {
        buffer.fill(0, done);
        return;
      }
      done += bytes;
    }
  }

  private async writeFully(buffer: Uint8Array, position: number): Promise<void> {
    for (let done = 0; done < buffer.length; ) {
      let bytes: number;
      try {
        ({ bytesWritten: bytes } = await writeFile(this.fd, buffer, done, buffer.length - done, position + done));
      } catch (error) {
        throw this.failure('write', position + done, buffer.length - done, error);
      }
      if (bytes === 0) throw this.failure('write', position + done, buffer.length - done, noProgress());
      done += bytes;
    }
  }

  /**
   * Deallocates or zeroes `ranges` (already checked): fallocate in slices of at most the namespace's per-turn budget
   * (FALLOCATE_CHUNK_BYTES, shared by all its commands: sliced-work.ts), continuing with written zeroes from wherever
   * fallocate turns out to be unsupported. Completes synchronously (undefined) when the whole request fits in what is
   * left of this turn's budget.
   */
  private clear(operation: ClearOperation, ranges: readonly ByteRange[]): Promise<void> | void {
    const job = new FallocateJob(this, operation, ranges);
    const sliced = this.slicedFallocate.run(job);
    if (sliced === undefined && job.state === 'done') return undefined;
    return this.track(Promise.resolve(sliced).then(() => this.writeZeroesFrom(operation, ranges, job)));
  }

  /** The part fallocate could not do (the mode turned out to be unsupported), with written zeroes. */
  private async writeZeroesFrom(operation: ClearOperation, ranges: readonly ByteRange[], job: FallocateJob): Promise<void> {
    if (job.state !== 'write') return;
    const cursor = job.cursor;
    for (; cursor.index < ranges.length; cursor.index++) {
      const range = ranges[cursor.index]!;
      const start = Math.max(cursor.offset, range.offset);
      await this.zeroRange(start, range.offset + range.length - start);
      cursor.offset = 0;
    }
  }

  /**
   * Runs fallocate from `cursor` on until done, `budget` is spent ('yield') or no mode is left ('write'). Each call
   * costs its length, but at least FALLOCATE_CALL_UNITS (a system call is not free). Returns the units spent.
   */
  clearSome(operation: ClearOperation, ranges: readonly ByteRange[], cursor: ClearCursor, budget: number): number {
    let spent = 0;
    cursor.state = 'done';
    while (cursor.index < ranges.length) {
      const range = ranges[cursor.index]!;
      const end = range.offset + range.length;
      if (cursor.offset >= end) {
        cursor.index++;
        cursor.offset = ranges[cursor.index]?.offset ?? 0;
        continue;
      }
      const mode = this.fallocateMode(operation);
      if (mode === undefined) {
        cursor.state = 'write';
        return spent;
      }
      if (spent >= budget) {
        cursor.state = 'yield';
        return spent;
      }
      const length = Math.min(end - cursor.offset, budget - spent);
      if (this.tryFallocate(operation, mode, cursor.offset, length)) {
        cursor.offset += length;
        spent += Math.max(length, FALLOCATE_CALL_UNITS);
      }
    }
    return spent;
  }

  /** The fallocate mode to use next, or undefined to write zeroes. */
  private fallocateMode(operation: ClearOperation): number | undefined {
    if (operation === 'write zeroes' && this.zeroRanges) return ZERO_RANGE;
    return this.punchHoles ? PUNCH_HOLE : undefined;
  }

  /** One fallocate; false (and the mode is remembered as unsupported) when the kernel does not support it here. */
  private tryFallocate(operation: ClearOperation, mode: number, offset: number, length: number): boolean {
    try {
      this.fallocate!(this.fd, mode, offset, length);
      return true;
    } catch (error) {
      const code = errorCode(error);
      if (code === undefined || !FALLOCATE_UNSUPPORTED.has(code)) throw this.failure(operation, offset, length, error);
      if (mode === ZERO_RANGE) this.zeroRanges = false;
      else this.punchHoles = false;
      const what = mode === ZERO_RANGE ? 'FALLOC_FL_ZERO_RANGE' : 'FALLOC_FL_PUNCH_HOLE';
      const instead = mode === ZERO_RANGE && this.punchHoles ? 'punching holes' : 'writing zeroes';
      this.logger.info(`fallocate ${what} is not supported here; ${instead} instead from now on`, { code });
      return false;
    }
  }

  /** Writes zeroes with pwritev of one shared zero chunk repeated, up to ZERO_IOVECS × ZERO_CHUNK_BYTES per call. */
  private async zeroRange(offset: number, length: number): Promise<void> {
    const iovecs: Uint8Array[] = [];
    for (let done = 0; done < length; ) {
      iovecs.length = 0;
      for (let planned = done; planned < length && iovecs.length < ZERO_IOVECS; ) {
        const count = Math.min(this.zeroes.length, length - planned);
        iovecs.push(count === this.zeroes.length ? this.zeroes : this.zeroes.subarray(0, count));
        planned += count;
      }
      let bytes: number;
      try {
        bytes = (await writevFile(this.fd, iovecs, offset + done)).bytesWritten;
      } catch (error) {
        throw this.failure('write zeroes', offset + done, length - done, error);
      }
      if (bytes === 0) throw this.failure('write zeroes', offset + done, length - done, noProgress());
      done += bytes;
    }
  }

  private takeBounce(): Uint8Array {
    const free = this.freeBounces.pop();
    if (free !== undefined) return free;
    const buffer = this.allocateAligned!(BOUNCE_BYTES);
    this.alignedBuffers.push(buffer);
    return buffer.bytes;
  }

  /** Counts the operation in flight until it settles, so `close` can wait for it. */
  private track(promise: Promise<void>): Promise<void> {
    this.inFlight++;
    return promise.finally(this.settled);
  }

  private readonly settled = (): void => {
    if (--this.inFlight === 0 && this.drained.length > 0) for (const resolve of this.drained.splice(0)) resolve();
  };

  /** Returns a finished operation object to the pool. */
  recycle(operation: FileOperation): void {
    this.operations.push(operation);
    this.transferFinished();
  }

  get fileDescriptor(): number {
    return this.fd;
  }

  failure(operation: string, offset: number, length: number, error: unknown): NamespaceError {
    const code = errorCode(error);
    const kind =
      code === 'ENOSPC' || code === 'EDQUOT' ? 'capacity' : code === 'EROFS' ? 'read-only' : operation === 'read' ? 'read' : 'write';
    const where = length > 0 ? ` of ${length} bytes at offset ${offset}` : '';
    return new NamespaceError(kind, `${this.description}: ${operation}${where} failed: ${errorMessage(error)}`, undefined, {
      cause: error,
    });
  }

  private writeProtected(): NamespaceError {
    return new NamespaceError('read-only', `${this.description} is read-only`);
  }

  private checkOpen(operation: string): void {
    if (this.closing) throw new NamespaceError('internal', `${this.description}: ${operation} after close`);
  }

  private checkRange(operation: string, offset: number, length: number): void {
    if (!(offset >= 0 && length >= 0 && offset + length <= this.sizeBytes)) {
      throw new NamespaceError(
        'internal',
        `${this.description}: ${operation} of ${length} bytes at offset ${offset} is outside the namespace ` +
          `(${formatSize(this.sizeBytes)})`,
      );
    }
  }
}

/**
 * One zero-copy preadv/pwritev transfer, continued across short transfers. Pooled per namespace so the steady state
 * allocates only the promise (and libuv's request): its callbacks are bound once.
 */
class FileOperation {
  private writing = false;
  private buffers: readonly Uint8Array[] = [];
  /** File offset of the next byte, the first unfinished buffer and the bytes of it already done. */
  private position = 0;
  private index = 0;
  private consumed = 0;
  private resolve: () => void = noop;
  private reject: (error: unknown) => void = noop;

  constructor(private readonly owner: FileNamespace) {}

  run(writing: boolean, offset: number, buffers: readonly Uint8Array[]): Promise<void> {
    this.writing = writing;
    this.buffers = buffers;
    this.position = offset;
    this.index = 0;
    this.consumed = 0;
    return new Promise<void>(this.start);
  }

  private readonly start = (resolve: () => void, reject: (error: unknown) => void): void => {
    this.resolve = resolve;
    this.reject = reject;
    this.issue(this.buffers);
  };

  private issue(buffers: readonly Uint8Array[]): void {
    try {
      const fd = this.owner.fileDescriptor;
      if (this.writing) fs.writev(fd, buffers as Uint8Array[], this.position, this.completed);
      else fs.readv(fd, buffers as Uint8Array[], this.position, this.completed);
    } catch (error) {
      this.fail(error);
    }
  }

  private readonly completed = (error: NodeJS.ErrnoException | null, bytes: number): void => {
    if (error) {
      if (this.owner.direct && error.code === 'EINVAL') {
        // The kernel wants stricter alignment than we assumed: finish this transfer through bounce buffers.
        const rest = this.remaining();
        const { writing, position, resolve, reject } = this;
        this.recycle();
        this.owner.fallBackToBounce(writing, position, rest).then(resolve, reject);
        return;
      }
      this.fail(error);
      return;
    }
    if (bytes === 0) {
      if (this.writing) {
        this.fail(noProgress());
        return;
      }
      // End of file: the file is shorter than the namespace; the rest reads as zeroes.
      for (const buffer of this.remaining()) buffer.fill(0);
      this.succeed();
      return;
    }
    this.position += bytes;
    while (bytes > 0) {
      const left = this.buffers[this.index]!.length - this.consumed;
      if (bytes < left) {
        this.consumed += bytes;
        bytes = 0;
      } else {
        bytes -= left;
        this.index++;
        this.consumed = 0;
      }
    }
    while (this.index < this.buffers.length && this.buffers[this.index]!.length === 0) this.index++;
    if (this.index === this.buffers.length) this.succeed();
    else this.issue(this.remaining());
  };

  /** The buffers still to transfer (allocates; only used after a short transfer). */
  private remaining(): Uint8Array[] {
    const rest = this.buffers.slice(this.index);
    if (rest.length > 0 && this.consumed > 0) rest[0] = rest[0]!.subarray(this.consumed);
    return rest;
  }

  private succeed(): void {
    const resolve = this.resolve;
    this.recycle();
    resolve();
  }

  private fail(error: unknown): void {
    const reject = this.reject;
    const failure = this.owner.failure(this.writing ? 'write' : 'read', this.position, this.remainingBytes(), error);
    this.recycle();
    reject(failure);
  }

  private remainingBytes(): number {
    let bytes = -this.consumed;
    for (let index = this.index; index < this.buffers.length; index++) bytes += this.buffers[index]!.length;
    return Math.max(bytes, 0);
  }

  private recycle(): void {
    this.buffers = [];
    this.resolve = noop;
    this.reject = noop;
    this.owner.recycle(this);
  }
}

function noop(): void {}

/** A read or write waiting for one of the namespace's MAX_SUBMITTED_TRANSFERS places. */
interface HeldTransfer {
  readonly writing: boolean;
  readonly offset: number;
  readonly buffers: readonly Uint8Array[];
  readonly aligned: boolean;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

type ClearOperation = 'deallocate' | 'write zeroes';
type ClearState = 'done' | 'yield' | 'write';
/** How far a deallocate / write zeroes got: ranges[index] is done up to `offset`; what the last slice ended with. */
interface ClearCursor {
  index: number;
  offset: number;
  state: ClearState;
}

/** A deallocate / write zeroes as a job of the namespace's SlicedWork; it ends early when zeroes must be written. */
class FallocateJob implements SlicedJob {
  readonly cursor: ClearCursor;

  constructor(
    private readonly owner: FileNamespace,
    private readonly operation: ClearOperation,
    private readonly ranges: readonly ByteRange[],
  ) {
    this.cursor = { index: 0, offset: ranges[0]?.offset ?? 0, state: 'yield' };
  }

  get state(): ClearState {
    return this.cursor.state;
  }

  get done(): boolean {
    return this.cursor.state !== 'yield';
  }

  step(budget: number): number {
    return this.owner.clearSome(this.operation, this.ranges, this.cursor, budget);
  }
}

let nativeFallocateLoad: Promise<FallocateFunction | undefined> | undefined;

/** The addon's fallocate, or undefined when the addon cannot be loaded (zeroes are written then). */
function nativeFallocate(): Promise<FallocateFunction | undefined> {
  nativeFallocateLoad ??= import('../native/index.js').then(
    ({ native }) => (typeof native.fallocate === 'function' ? native.fallocate.bind(native) : undefined),
    () => undefined,
  );
  return nativeFallocateLoad;
}

/**
 * Whether punching holes works on this regular file: punches one block just past its end, with KEEP_SIZE, where
 * there is no data to lose and the size does not change. (A zero length cannot be used: it is always EINVAL.)
 */
function probePunchHole(
  fallocate: FallocateFunction,
  fd: number,
  sizeBytes: number,
  blockSize: number,
  logger: Logger,
): boolean {
  try {
    fallocate(fd, PUNCH_HOLE, sizeBytes, blockSize);
    return true;
  } catch (error) {
    logger.info('the file system cannot punch holes; deallocated blocks are written with zeroes', {
      code: errorCode(error),
    });
    return false;
  }
}

function noProgress(): Error {
  return Object.assign(new Error('no progress (0 bytes transferred)'), { code: 'EIO' });
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Size and logical block size of a block device from sysfs (Node cannot issue BLKGETSIZE64). */
async function blockDeviceInfo(rdev: number): Promise<{ sizeBytes: number; logicalBlockSize: number }> {
  const dev = BigInt(rdev);
  // glibc's dev_t encoding (gnu_dev_major / gnu_dev_minor).
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  const base = `/sys/dev/block/${major}:${minor}`;
  const sectors = Number((await fs.promises.readFile(`${base}/size`, 'utf8')).trim());
  if (!Number.isSafeInteger(sectors) || sectors < 0) throw new Error(`${base}/size: unexpected content`);
  // Partitions have no queue/ of their own: it lives on the parent disk.
  let logicalBlockSize = 512;
  for (const candidate of [`${base}/queue/logical_block_size`, `${base}/../queue/logical_block_size`]) {
    try {
      logicalBlockSize = Number((await fs.promises.readFile(candidate, 'utf8')).trim()) || 512;
      break;
    } catch {
      // try the next location
    }
  }
  return { sizeBytes: sectors * 512, logicalBlockSize };
}

/** Page-aligned, zero-filled buffers from the native addon: an anonymous memfd mapped shared. */
async function alignedAllocator(what: string): Promise<(size: number) => AlignedBuffer> {
  let addon: typeof import('../native/index.js');
  try {
    addon = await import('../native/index.js');
  } catch (error) {
    throw new Error(`${what}: direct=1 needs the native addon for aligned bounce buffers: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  const { native, PROT_READ, PROT_WRITE } = addon;
  return (size: number): AlignedBuffer => {
    const fd = native.memfdCreate('vfiod-bounce', size);
    let buffer: ArrayBuffer;
    try {
      buffer = native.mmap(fd, 0, size, PROT_READ | PROT_WRITE);
    } finally {
      native.close(fd);
    }
    return { bytes: new Uint8Array(buffer), release: () => native.munmap(buffer) };
  };
}

/** Runs a backing check; a refusal keeps its reason and gets the namespace named in front of its message. */
function refusedAs<T>(what: string, check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof BackingRefused) throw new BackingRefused(error.reason, `${what}: ${error.message}`);
    throw new Error(`${what}: ${errorMessage(error)}`, { cause: error });
  }
}
