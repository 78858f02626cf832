/**
 * A namespace held in process memory: nothing survives a restart. Useful for tests, benchmarks and scratch disks.
 * Every operation completes synchronously (returns undefined), which is the controller's allocation-free fast path.
 */
import { formatSize } from '../util/size.js';
import { NamespaceError, type ByteRange, type Namespace, type NamespaceUsage } from './namespace.js';

export interface MemoryNamespaceOptions {
  sizeBytes: number;
  /** 512 (default) or 4096. */
  blockSize?: number;
  /**
   * Bytes per backing ArrayBuffer (default 1 GiB): large namespaces are split so no single allocation hits the
   * engine's ArrayBuffer limit. A multiple of 4096.
   */
  chunkBytes?: number;
}

export const DEFAULT_MEMORY_CHUNK_BYTES = 2 ** 30;

export class MemoryNamespace implements Namespace {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly description: string;
  readonly sizeBytes: number;
  readonly volatileWriteCache = false;
  readonly maxTransferBytes = 0;
  /** Deallocated blocks are zeroed but the memory stays allocated. */
  readonly supportsDeallocate = false;
  private readonly chunkBytes: number;
  private chunks: Uint8Array[];
  /** chunks[i].buffer (each chunk is a whole ArrayBuffer of its own). */
  private chunkBuffers: ArrayBuffer[] = [];

  constructor(options: MemoryNamespaceOptions) {
    const { sizeBytes, blockSize = 512, chunkBytes = DEFAULT_MEMORY_CHUNK_BYTES } = options;
    if (blockSize !== 512 && blockSize !== 4096) {
      throw new Error(`memory namespace: block size must be 512 or 4096, got ${blockSize}`);
    }
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % blockSize !== 0) {
      throw new Error(`memory namespace: size ${sizeBytes} must be a positive multiple of the block size ${blockSize}`);
    }
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0 || chunkBytes % 4096 !== 0) {
      throw new Error(`memory namespace: chunk size ${chunkBytes} must be a positive multiple of 4096`);
    }
    this.blockSize = blockSize;
    this.blockCount = sizeBytes / blockSize;
    this.sizeBytes = sizeBytes;
    this.chunkBytes = chunkBytes;
    this.description = `memory:${formatSize(sizeBytes)}`;
    this.chunks = [];
    try {
      for (let start = 0; start < sizeBytes; start += chunkBytes) {
        // Zero-filled by the engine; the OS commits pages only when they are first written.
        this.chunks.push(new Uint8Array(Math.min(chunkBytes, sizeBytes - start)));
      }
      this.chunkBuffers = this.chunks.map((chunk) => chunk.buffer as ArrayBuffer);
    } catch (error) {
      this.chunks = [];
      throw new Error(`memory namespace: cannot allocate ${formatSize(sizeBytes)}: ${String(error)}`, { cause: error });
    }
  }

  read(offset: number, buffers: readonly Uint8Array[]): void {
    let position = offset;
    for (let index = 0; index < buffers.length; index++) {
      const buffer = buffers[index]!;
      const length = buffer.length;
      this.check('read', position, length);
      let done = 0;
      while (done < length) {
        const chunkIndex = Math.floor((position + done) / this.chunkBytes);
        const chunk = this.chunks[chunkIndex]!;
        const start = (position + done) - chunkIndex * this.chunkBytes;
        const piece = Math.min(length - done, chunk.length - start);
        // A view of the source (cheaper to build than `subarray`, and over the chunk's cached ArrayBuffer: the
        // `buffer` getter is a runtime call); the copy itself is the one unavoidable one.
        buffer.set(new Uint8Array(this.chunkBuffers[chunkIndex]!, start, piece), done);
        done += piece;
      }
      position += length;
    }
  }

  write(offset: number, buffers: readonly Uint8Array[]): void {
    let position = offset;
    for (const buffer of buffers) {
      this.check('write', position, buffer.length);
      let done = 0;
      while (done < buffer.length) {
        // Division and subtraction, not `%`: offsets are doubles past 2^31, and `%` on a double is a runtime call.
        const chunkIndex = Math.floor((position + done) / this.chunkBytes);
        const chunk = this.chunks[chunkIndex]!;
        const start = position + done - chunkIndex * this.chunkBytes;
        const piece = Math.min(buffer.length - done, chunk.length - start);
        chunk.set(piece === buffer.length ? buffer : buffer.subarray(done, done + piece), start);
        done += piece;
      }
      position += buffer.length;
    }
  }

  flush(): void {}

  deallocate(ranges: readonly ByteRange[]): void {
    for (const range of ranges) this.writeZeroes(range.offset, range.length);
  }

  writeZeroes(offset: number, length: number): void {
    this.check('write', offset, length);
    let done = 0;
    while (done < length) {
      const chunk = this.chunks[Math.floor((offset + done) / this.chunkBytes)]!;
      const start = (offset + done) % this.chunkBytes;
      const piece = Math.min(length - done, chunk.length - start);
      chunk.fill(0, start, start + piece);
      done += piece;
    }
  }

  usage(): NamespaceUsage {
    return { allocatedBytes: this.sizeBytes };
  }

  close(): Promise<void> {
    this.chunks = [];
    this.chunkBuffers = [];
    return Promise.resolve();
  }

  /** The controller checks ranges against blockCount; this guards the store against a caller bug or a closed store. */
  private check(kind: 'read' | 'write', offset: number, length: number): void {
    if (this.chunks.length === 0) throw new NamespaceError('internal', `${this.description}: ${kind} after close`);
    if (!(offset >= 0 && length >= 0 && offset + length <= this.sizeBytes)) {
      throw new NamespaceError(
        'internal',
        `${this.description}: ${kind} of ${length} bytes at offset ${offset} is outside the namespace`,
      );
    }
  }
}
