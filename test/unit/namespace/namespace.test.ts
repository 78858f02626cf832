import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FALLOCATE_CHUNK_BYTES, FileNamespace, type FallocateFunction } from '../../../src/namespace/file.js';
import { CopyList } from '../../../src/memory/copy-list.js';
import { MemoryNamespace } from '../../../src/namespace/memory.js';
import { NamespaceError, type Namespace } from '../../../src/namespace/namespace.js';
import { checkParams, sizeParam, type NamespaceSpec } from '../../../src/namespace/scheme.js';
import {
  explicitBlockSize,
  knownNamespaceSchemes,
  openNamespace,
  parseNamespaceUri,
  registerNamespaceScheme,
  resizedNamespaceUri,
  specWithBlockSize,
} from '../../../src/namespace/uri.js';
import { memoryLogger } from '../../../src/util/log.js';
import { temporaryDir } from '../../helpers/common.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** fallocate modes FileNamespace uses: PUNCH_HOLE | KEEP_SIZE and ZERO_RANGE | KEEP_SIZE. */
const PUNCH = 0x02 | 0x01;
const ZERO_RANGE = 0x10 | 0x01;

/** A fallocate that records its calls and fails every mode in `unsupported` with that code, else calls `inner`. */
function fakeFallocate(
  inner: FallocateFunction = () => {},
  unsupported: Record<number, string> = {},
): FallocateFunction & { calls: Array<{ mode: number; offset: number; length: number }> } {
  const calls: Array<{ mode: number; offset: number; length: number }> = [];
  const fallocate = (fd: number, mode: number, offset: number, length: number): void => {
    calls.push({ mode, offset, length });
    const code = unsupported[mode];
    if (code !== undefined) throw Object.assign(new Error(`fallocate: ${code}`), { code });
    inner(fd, mode, offset, length);
  };
  return Object.assign(fallocate, { calls });
}

let tempDir: string;
let log: ReturnType<typeof memoryLogger>;
beforeEach(() => {
  log = memoryLogger();
  tempDir = temporaryDir('vfiod-ns-');
});
afterEach(() => {
  fs.rmSync(tempDir, { recursive: true, force: true });
});

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed >>> 0 || 1;
  for (let index = 0; index < length; index++) {
    state = (state * 1103515245 + 12345) >>> 0;
    bytes[index] = state >>> 24;
  }
  return bytes;
}

/** Splits `bytes` into consecutive views of the given sizes (cycled). */
function split(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const parts: Uint8Array[] = [];
  for (let offset = 0, index = 0; offset < bytes.length; index++) {
    const size = Math.min(sizes[index % sizes.length]!, bytes.length - offset);
    parts.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return parts;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

describe('namespace URIs', () => {
  it('parses memory and file URIs', () => {
    expect(parseNamespaceUri('memory:64M')).toEqual({
      scheme: 'memory',
      uri: 'memory:64M',
      sizeBytes: 64 * MiB,
      blockSize: 512,
    });
    expect(parseNamespaceUri('memory:1GiB?block-size=4096')).toMatchObject({ sizeBytes: GiB, blockSize: 4096 });
    expect(parseNamespaceUri('file:/var/lib/vfiod/disk0.img')).toEqual({
      scheme: 'file',
      uri: 'file:/var/lib/vfiod/disk0.img',
      path: '/var/lib/vfiod/disk0.img',
      blockSize: 512,
      direct: false,
      readOnly: false,
    });
    expect(parseNamespaceUri('file:disk.img?size=1G&direct=1&block-size=4096&readonly=true')).toMatchObject({
      path: path.resolve('disk.img'),
      sizeBytes: GiB,
      blockSize: 4096,
      direct: true,
      readOnly: true,
    });
    expect(parseNamespaceUri('file:///srv/a b.img?size=512K')).toMatchObject({
      path: '/srv/a b.img',
      sizeBytes: 512 * 1024,
    });
    expect(parseNamespaceUri('file://localhost/srv/x.img')).toMatchObject({ path: '/srv/x.img' });
    expect(parseNamespaceUri('FILE:/x.img?direct=0&readonly=false')).toMatchObject({
      scheme: 'file',
      direct: false,
      readOnly: false,
    });
  });

  it('rejects bad URIs with precise messages', () => {
    const cases: Array<[string, string]> = [
      ['file:', "invalid namespace URI 'file:': missing path"],
      ['file:?size=1G', "invalid namespace URI 'file:?size=1G': missing path"],
      ['file://server/x.img', "invalid namespace URI 'file://server/x.img': only local files are supported, got host 'server'"],
      ['memory:', "invalid namespace URI 'memory:': missing size"],
      [
        'memory:lots',
        "invalid namespace URI 'memory:lots': invalid size 'lots': expected a number with an optional K/M/G/T/P suffix",
      ],
      ['memory:0', "invalid namespace URI 'memory:0': size must be greater than 0"],
      ['memory:1000', "invalid namespace URI 'memory:1000': size 1000 is not a multiple of the block size 512"],
      [
        'memory:1M?block-size=1024',
        "invalid namespace URI 'memory:1M?block-size=1024': block-size must be 512 or 4096, got '1024'",
      ],
      [
        'memory:6K?block-size=4096',
        "invalid namespace URI 'memory:6K?block-size=4096': size 6144 is not a multiple of the block size 4096",
      ],
      ['memory:1M?size=2M', "invalid namespace URI 'memory:1M?size=2M': unknown parameter 'size' (known: block-size)"],
      [
        'file:/x?sise=1G',
        "invalid namespace URI 'file:/x?sise=1G': unknown parameter 'sise' (known: size, block-size, direct, readonly)",
      ],
      ['file:/x?direct=yes', "invalid namespace URI 'file:/x?direct=yes': direct must be 0, 1, true or false, got 'yes'"],
      ['file:/x?direct', "invalid namespace URI 'file:/x?direct': malformed parameter 'direct' (expected key=value)"],
      [
        'file:/x?size=1G&size=2G',
        "invalid namespace URI 'file:/x?size=1G&size=2G': parameter 'size' given twice",
      ],
      [
        'iscsi://10.0.0.1/iqn.x/1',
        "invalid namespace URI 'iscsi://10.0.0.1/iqn.x/1': unknown scheme 'iscsi' (known schemes: file, memory, nvme-tcp)",
      ],
      ['/var/disk.img', "invalid namespace URI '/var/disk.img': missing scheme (known schemes: file, memory, nvme-tcp)"],
      ['', "invalid namespace URI '': missing scheme (known schemes: file, memory, nvme-tcp)"],
    ];
    for (const [uri, message] of cases) expect(() => parseNamespaceUri(uri), uri).toThrow(new Error(message));
  });

  it('says whether a URI chose its block size, and applies the block size a namespace slot has', () => {
    expect(explicitBlockSize('memory:1M')).toBeUndefined();
    expect(explicitBlockSize('file:/srv/a.img?size=1G&block-size=4096')).toBe(4096);
    expect(specWithBlockSize('file:/srv/a.img?size=1G&direct=1', 4096)).toEqual({ ...parseNamespaceUri('file:/srv/a.img?size=1G&direct=1'), blockSize: 4096 });
    expect(specWithBlockSize('memory:1M', 4096)).toMatchObject({ scheme: 'memory', sizeBytes: 1 << 20, blockSize: 4096 });
    expect(specWithBlockSize('memory:4096?block-size=4096', 4096)).toMatchObject({ blockSize: 4096 });
    expect(() => specWithBlockSize('memory:1M?block-size=512', 4096)).toThrow("invalid namespace URI 'memory:1M?block-size=512': block-size=512, but 4096 is asked for");
    expect(() => specWithBlockSize('memory:6K', 4096)).toThrow('multiple of the block size');
    // A remote namespace has the target's format: nothing to apply.
    expect(specWithBlockSize('nvme-tcp://127.0.0.1:4420/nqn.2014-08.org.example:t?nsid=1', 4096)).toBeUndefined();
  });

  it('opens memory and file namespaces from their specs', async () => {
    const memory = await openNamespace(parseNamespaceUri('memory:1M?block-size=4096'), log.logger);
    expect(memory).toBeInstanceOf(MemoryNamespace);
    expect([memory.blockSize, memory.blockCount, memory.description]).toEqual([4096, 256, 'memory:1MiB']);
    const file = path.join(tempDir, 'u.img');
    const opened = await openNamespace(parseNamespaceUri(`file:${file}?size=2M`), log.logger);
    try {
      expect(opened).toBeInstanceOf(FileNamespace);
      expect([opened.blockSize, opened.blockCount, opened.description]).toEqual([512, 4096, `file:${file}`]);
    } finally {
      await opened.close();
    }
  });
});

describe('MemoryNamespace', () => {
  it('reads and writes across chunk boundaries with any buffer split', () => {
    const namespace = new MemoryNamespace({ sizeBytes: 256 * 1024, chunkBytes: 64 * 1024 });
    const data = pattern(100 * 1024, 1);
    expect(namespace.write(60 * 1024, split(data, [1000, 7000, 300, 24]))).toBeUndefined();
    const back = new Uint8Array(data.length);
    expect(namespace.read(60 * 1024, split(back, [65536, 3, 4093]))).toBeUndefined();
    expect(same(back, data)).toBe(true);

    // Zeroes across a boundary, leaving the neighbours alone.
    namespace.writeZeroes(64 * 1024 - 512, 1024);
    const around = new Uint8Array(2048);
    namespace.read(64 * 1024 - 1024, [around]);
    expect(same(around.subarray(0, 512), data.subarray(3 * 1024, 3 * 1024 + 512))).toBe(true);
    expect(around.subarray(512, 1536).every((byte) => byte === 0)).toBe(true);
    expect(same(around.subarray(1536), data.subarray(4 * 1024 + 512, 5 * 1024))).toBe(true);

    namespace.deallocate([{ offset: 128 * 1024, length: 4096 }]);
    const freed = new Uint8Array(4096);
    namespace.read(128 * 1024, [freed]);
    expect(freed.every((byte) => byte === 0)).toBe(true);
    expect(namespace.usage().allocatedBytes).toBe(256 * 1024);
  });

  it('with its default (large) chunks: a partly covered chunk is zeroed in place, and growth keeps the data', async () => {
    const MIB = 1024 * 1024;
    const namespace = new MemoryNamespace({ sizeBytes: 3 * MIB });
    const data = pattern(3 * MIB, 5);
    namespace.write(0, [data]);
    // Across a page boundary at both ends, so whole pages and partial ones are both cleared.
    const cleared = { offset: MIB + 512, length: MIB + 4096 };
    await namespace.deallocate([cleared]);
    const back = new Uint8Array(3 * MIB);
    namespace.read(0, [back]);
    expect(same(back.subarray(0, cleared.offset), data.subarray(0, cleared.offset))).toBe(true);
    expect(back.subarray(cleared.offset, cleared.offset + cleared.length).every((byte) => byte === 0)).toBe(true);
    const after = cleared.offset + cleared.length;
    expect(same(back.subarray(after), data.subarray(after))).toBe(true);

    // Growth keeps the data and reads zeroes past the old end: to 3.5 MiB within the first chunk, then to 70 MiB
    // over two chunks. (Whether the first chunk grew in place is not visible here; the data is what matters.)
    for (const size of [3.5 * MIB, 70 * MIB]) {
      await namespace.grow(size);
      const whole = new Uint8Array(size);
      namespace.read(0, [whole]);
      expect(same(whole.subarray(after, 3 * MIB), data.subarray(after))).toBe(true);
      expect(whole.subarray(3 * MIB).every((byte) => byte === 0)).toBe(true);
    }
    const tail = pattern(8192, 6);
    namespace.write(70 * MIB - 8192, [tail]);
    const tailBack = new Uint8Array(8192);
    namespace.read(70 * MIB - 8192, [tailBack]);
    expect(same(tailBack, tail)).toBe(true);

    // A whole chunk dropped reads as zeroes; its memory is taken again by the next chunk written, which starts zeroed.
    await namespace.deallocate([{ offset: 0, length: 64 * MIB }]);
    expect(namespace.allocatedChunks).toBe(1);
    const dropped = new Uint8Array(MIB);
    namespace.read(MIB, [dropped]);
    expect(dropped.every((byte) => byte === 0)).toBe(true);
    const again = pattern(4096, 7);
    namespace.writeSync(32 * MIB, again, 0, again.length);
    const around = new Uint8Array(3 * 4096);
    namespace.read(32 * MIB - 4096, [around]);
    expect(same(around.subarray(4096, 8192), again)).toBe(true);
    expect(around.subarray(0, 4096).every((byte) => byte === 0) && around.subarray(8192).every((byte) => byte === 0)).toBe(true);
    await namespace.close();
  });

  it('readSync / writeSync move (array, index, length) ranges like read / write, across chunks and unwritten ones', () => {
    const namespace = new MemoryNamespace({ sizeBytes: 256 * 1024, chunkBytes: 64 * 1024 });
    const data = pattern(100 * 1024, 3);
    // The source is part of a larger array with its own byteOffset, as a guest mapping window is.
    const host = new Uint8Array(new ArrayBuffer(300 * 1024), 4096, 200 * 1024);
    host.set(data, 5000);
    namespace.writeSync(60 * 1024, host, 5000, data.length);
    const back = new Uint8Array(data.length);
    namespace.read(60 * 1024, [back]);
    expect(same(back, data)).toBe(true);

    const target = new Uint8Array(new ArrayBuffer(300 * 1024), 512, 200 * 1024).fill(0xee);
    namespace.readSync(60 * 1024, target, 1024, data.length);
    expect(same(target.subarray(1024, 1024 + data.length), data)).toBe(true);
    expect(target[1023]).toBe(0xee);
    expect(target[1024 + data.length]).toBe(0xee);
    // A chunk never written reads as zeroes.
    namespace.readSync(192 * 1024, target, 0, 8192);
    expect(target.subarray(0, 8192).every((byte) => byte === 0)).toBe(true);

    expect(() => namespace.readSync(256 * 1024 - 512, target, 0, 1024)).toThrow(NamespaceError);
    expect(() => namespace.writeSync(0, host, host.length - 100, 512)).toThrow(RangeError);
    expect(() => namespace.readSync(0, target, -1, 512)).toThrow(RangeError);
  });

  it('readSync / writeSync with a copy list queue the copies across chunks; they move when the list runs', () => {
    const namespace = new MemoryNamespace({ sizeBytes: 256 * 1024, chunkBytes: 64 * 1024 });
    const data = pattern(100 * 1024, 4);
    const host = new Uint8Array(new ArrayBuffer(200 * 1024), 4096, 150 * 1024);
    host.set(data, 3000);
    const copies = new CopyList();
    namespace.writeSync(60 * 1024, host, 3000, data.length, copies);
    expect(copies.count).toBe(3); // the range spans three chunks
    const target = new Uint8Array(data.length).fill(0xee);
    // Queued after the write: reads what the write will have stored, from the chunks it allocated.
    namespace.readSync(60 * 1024, target, 0, data.length, copies);
    // A chunk never written is zero-filled at once, with nothing queued.
    const unwritten = new Uint8Array(4096).fill(0xee);
    namespace.readSync(192 * 1024, unwritten, 0, 4096, copies);
    expect(unwritten.every((byte) => byte === 0)).toBe(true);
    expect(copies.count).toBe(6);
    const stored = new Uint8Array(data.length);
    namespace.read(60 * 1024, [stored]);
    expect(stored.every((byte) => byte === 0)).toBe(true); // nothing moved yet
    copies.run();
    namespace.read(60 * 1024, [stored]);
    expect(same(stored, data)).toBe(true);
    expect(same(target, data)).toBe(true);
  });

  it('validates its options and guards its store', async () => {
    expect(() => new MemoryNamespace({ sizeBytes: 1000 })).toThrow(
      'memory namespace: size 1000 must be a positive multiple of the block size 512',
    );
    expect(() => new MemoryNamespace({ sizeBytes: 4096, blockSize: 520 })).toThrow(
      'memory namespace: block size must be 512 or 4096, got 520',
    );
    const namespace = new MemoryNamespace({ sizeBytes: 4096 });
    expect(() => namespace.read(4096 - 512, [new Uint8Array(1024)])).toThrow(NamespaceError);
    await namespace.close();
    expect(() => namespace.read(0, [new Uint8Array(512)])).toThrow('memory:4KiB: read after close');
  });
});

describe('FileNamespace', () => {
  it('creates a missing file sparse, and reports allocation from st_blocks', async () => {
    const file = path.join(tempDir, 'sparse.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: GiB });
    try {
      const stats = fs.statSync(file);
      expect(stats.size).toBe(GiB);
      expect(stats.blocks * 512).toBeLessThan(MiB);
      expect((stats.mode & 0o777).toString(8)).toBe('600');
      expect(namespace.blockCount).toBe(GiB / 512);
      expect(log.lines).toEqual([
        expect.objectContaining({ level: 'info', msg: 'created sparse file', component: 'namespace', path: file, sizeBytes: GiB }),
      ]);
      const before = namespace.usage!().allocatedBytes;
      expect(before).toBeLessThan(MiB);
      await namespace.write(512 * MiB, [pattern(256 * 1024, 2)]);
      expect(namespace.usage!().allocatedBytes).toBeGreaterThanOrEqual(before + 256 * 1024);
    } finally {
      await namespace.close();
    }
  });

  it('refuses to create without a size, to create read-only, and to shrink; grows sparse', async () => {
    const file = path.join(tempDir, 'x.img');
    await expect(FileNamespace.open({ logger: log.logger, path: file })).rejects.toThrow(
      `file namespace '${file}': file does not exist; give size=<size> to create it`,
    );
    await expect(FileNamespace.open({ logger: log.logger, path: file, sizeBytes: MiB, readOnly: true })).rejects.toThrow(
      `file namespace '${file}': file does not exist and a read-only namespace cannot create it`,
    );
    await expect(FileNamespace.open({ logger: log.logger, path: file, sizeBytes: 1000 })).rejects.toThrow(
      `file namespace '${file}': size 1000 must be a positive multiple of the block size 512`,
    );
    expect(fs.existsSync(file)).toBe(false);

    await (await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: 2 * MiB })).close();
    await expect(FileNamespace.open({ logger: log.logger, path: file, sizeBytes: MiB })).rejects.toThrow(
      `file namespace '${file}': file is ${2 * MiB} bytes, larger than size=${MiB}; refusing to shrink it ` +
        `(omit size= to use the file's size)`,
    );
    const grown = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: 8 * MiB });
    await grown.close();
    expect(fs.statSync(file).size).toBe(8 * MiB);
    expect(log.lines.at(-1)).toMatchObject({ msg: 'grew file (sparse)', fromBytes: 2 * MiB, toBytes: 8 * MiB });

    fs.writeFileSync(path.join(tempDir, 'odd.img'), new Uint8Array(1000));
    await expect(FileNamespace.open({ logger: log.logger, path: path.join(tempDir, 'odd.img') })).rejects.toThrow(
      'file size 1000 is not a multiple of the block size 512',
    );
    await expect(FileNamespace.open({ logger: log.logger, path: tempDir })).rejects.toThrow('neither a regular file nor a block device');
  });

  it('keeps its data across close and re-open, with 4096-byte blocks', async () => {
    const file = path.join(tempDir, 'keep.img');
    const data = pattern(3 * 4096, 3);
    const first = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: 4 * MiB, blockSize: 4096 });
    expect(first.blockCount).toBe(1024);
    await first.write(4096 * 1000, split(data, [4096, 8192]));
    await first.close();

    const second = await FileNamespace.open({ logger: log.logger, path: file, blockSize: 4096 });
    try {
      expect(second.blockCount).toBe(1024);
      const back = new Uint8Array(data.length);
      await second.read(4096 * 1000, [back]);
      expect(same(back, data)).toBe(true);
    } finally {
      await second.close();
    }
  });

  it('transfers many small buffers (more than one preadv can take) and continues short transfers', async () => {
    const file = path.join(tempDir, 'many.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: 4 * MiB });
    try {
      const data = pattern(3000 * 512, 4);
      await namespace.write(512, split(data, [512, 1024, 512]));
      const back = new Uint8Array(data.length);
      await namespace.read(512, split(back, [512]));
      expect(same(back, data)).toBe(true);
      expect(same(fs.readFileSync(file).subarray(512, 512 + data.length), data)).toBe(true);
    } finally {
      await namespace.close();
    }
  });

  it('reads zeroes past the end of a file truncated behind its back', async () => {
    const file = path.join(tempDir, 'trunc.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: MiB });
    try {
      await namespace.write(0, [pattern(8192, 5)]);
      fs.truncateSync(file, 4096);
      const back = new Uint8Array(8192).fill(0xee);
      await namespace.read(0, split(back, [1024]));
      expect(same(back.subarray(0, 4096), pattern(8192, 5).subarray(0, 4096))).toBe(true);
      expect(back.subarray(4096).every((byte) => byte === 0)).toBe(true);
    } finally {
      await namespace.close();
    }
  });

  it('writes zeroes and deallocates over large ranges, leaving neighbours intact', async () => {
    const file = path.join(tempDir, 'zero.img');
    const size = 72 * MiB;
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: size });
    try {
      const head = pattern(8192, 6);
      await namespace.write(0, [head]);
      await namespace.write(size - 8192, [head]);
      // More than ZERO_IOVECS x 1 MiB: several pwritev calls.
      await namespace.writeZeroes(4096, size - 8192);
      await namespace.deallocate([
        { offset: 0, length: 512 },
        { offset: size - 1024, length: 512 },
      ]);
      const first = new Uint8Array(8192);
      const last = new Uint8Array(8192);
      await namespace.read(0, [first]);
      await namespace.read(size - 8192, [last]);
      const expectedFirst = head.slice();
      expectedFirst.fill(0, 0, 512);
      expectedFirst.fill(0, 4096);
      const expectedLast = head.slice();
      expectedLast.fill(0, 0, 4096);
      expectedLast.fill(0, 8192 - 1024, 8192 - 512);
      expect(same(first, expectedFirst)).toBe(true);
      expect(same(last, expectedLast)).toBe(true);
      const middle = new Uint8Array(MiB).fill(1);
      await namespace.read(36 * MiB, [middle]);
      expect(middle.every((byte) => byte === 0)).toBe(true);
    } finally {
      await namespace.close();
    }
  });

  it('splits huge deallocations into 1 GiB fallocate calls with event-loop turns in between', async () => {
    let turns = 0;
    const turnOfCall: number[] = [];
    const fallocate = fakeFallocate(() => turnOfCall.push(turns)); // records only: the file stays sparse
    const file = path.join(tempDir, 'huge.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: 4 * GiB, fallocate });
    try {
      expect(namespace.supportsDeallocate).toBe(true);
      expect(fallocate.calls).toEqual([{ mode: PUNCH, offset: 4 * GiB, length: 512 }]); // the probe, past EOF
      fallocate.calls.length = 0;
      turnOfCall.length = 0;
      // Counts event-loop turns (check phases) while the deallocation runs.
      let ticking = true;
      const tick = (): void => {
        turns++;
        if (ticking) setImmediate(tick);
      };
      setImmediate(tick);
      const pending = namespace.deallocate([
        { offset: 0, length: 1.5 * GiB },
        { offset: 2 * GiB, length: GiB },
        { offset: 4 * GiB - 512, length: 512 },
      ]);
      expect(pending).toBeInstanceOf(Promise);
      expect(fallocate.calls).toHaveLength(1); // the first turn ran synchronously
      await pending;
      ticking = false;
      expect(FALLOCATE_CHUNK_BYTES).toBe(GiB);
      expect(fallocate.calls).toEqual([
        { mode: PUNCH, offset: 0, length: GiB },
        { mode: PUNCH, offset: GiB, length: 0.5 * GiB },
        { mode: PUNCH, offset: 2 * GiB, length: 0.5 * GiB },
        { mode: PUNCH, offset: 2.5 * GiB, length: 0.5 * GiB },
        { mode: PUNCH, offset: 4 * GiB - 512, length: 512 },
      ]);
      expect(turnOfCall).toEqual([0, 1, 1, 2, 2]); // at most 1 GiB per turn, other work in between
      // Small requests complete synchronously.
      expect(namespace.deallocate([{ offset: 0, length: 4096 }])).toBeUndefined();
      expect(namespace.writeZeroes(0, 4096)).toBeUndefined();
      expect(fallocate.calls.at(-1)).toEqual({ mode: ZERO_RANGE, offset: 0, length: 4096 });
    } finally {
      await namespace.close();
    }
  });

  it('writes zeroes when fallocate is unsupported or unavailable, and remembers an unsupported mode', async () => {
    const fallocate = fakeFallocate(undefined, { [PUNCH]: 'EOPNOTSUPP', [ZERO_RANGE]: 'EOPNOTSUPP' });
    const file = path.join(tempDir, 'nofalloc.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: 4 * MiB, fallocate });
    try {
      expect(namespace.supportsDeallocate).toBe(false); // the probe failed
      expect(log.lines.at(-1)).toMatchObject({
        msg: 'the file system cannot punch holes; deallocated blocks are written with zeroes',
        code: 'EOPNOTSUPP',
      });
      const data = pattern(64 * 1024, 14);
      await namespace.write(0, [data]);

      const deallocating = namespace.deallocate([{ offset: 4096, length: 4096 }]);
      expect(deallocating).toBeInstanceOf(Promise); // pwritev of zeroes
      await deallocating;
      expect(fallocate.calls).toHaveLength(1); // known not to punch: not even tried

      await namespace.writeZeroes(16384, 8192); // tries ZERO_RANGE once, then writes
      await namespace.writeZeroes(32768, 4096);
      expect(fallocate.calls.map((call) => call.mode)).toEqual([PUNCH, ZERO_RANGE]);
      expect(log.lines.at(-1)).toMatchObject({
        msg: 'fallocate FALLOC_FL_ZERO_RANGE is not supported here; writing zeroes instead from now on',
        code: 'EOPNOTSUPP',
      });

      const back = new Uint8Array(data.length);
      await namespace.read(0, [back]);
      const expected = data.slice();
      expected.fill(0, 4096, 8192);
      expected.fill(0, 16384, 24576);
      expected.fill(0, 32768, 36864);
      expect(same(back, expected)).toBe(true);
    } finally {
      await namespace.close();
    }

    // No fallocate at all (as without the addon), and read-only namespaces, never deallocate for real.
    const plain = await FileNamespace.open({ logger: log.logger, path: file, fallocate: null });
    expect(plain.supportsDeallocate).toBe(false);
    await plain.writeZeroes(0, 4096);
    await plain.close();
    const readOnly = await FileNamespace.open({ logger: log.logger, path: file, readOnly: true, fallocate });
    expect(readOnly.supportsDeallocate).toBe(false);
    await readOnly.close();
    expect(fallocate.calls).toHaveLength(2);
    const back = new Uint8Array(4096).fill(1);
    const check = await FileNamespace.open({ logger: log.logger, path: file, readOnly: true });
    await check.read(0, [back]);
    await check.close();
    expect(back.every((byte) => byte === 0)).toBe(true);
  });

  it('refuses writes to a read-only namespace (the controller reports Namespace Write Protected)', async () => {
    const file = path.join(tempDir, 'ro.img');
    fs.writeFileSync(file, pattern(8192, 7));
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, readOnly: true });
    try {
      expect(() => namespace.write(0, [new Uint8Array(512)])).toThrow(
        expect.objectContaining({ kind: 'read-only', nvmeStatus: undefined }),
      );
      expect(() => namespace.writeZeroes(0, 512)).toThrow(NamespaceError);
      const back = new Uint8Array(8192);
      await namespace.read(0, [back]);
      expect(same(back, pattern(8192, 7))).toBe(true);
      expect(namespace.flush()).toBeUndefined();
    } finally {
      await namespace.close();
    }
  });

  it('reports errors in its own terms: a read-only file system, a full disk, other write and read errors', async () => {
    const file = path.join(tempDir, 'errors.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: MiB });
    const errno = (code: string): Error => Object.assign(new Error(code), { code });
    try {
      expect(namespace.failure('write', 0, 512, errno('EROFS'))).toMatchObject({ kind: 'read-only', nvmeStatus: undefined });
      expect(namespace.failure('write', 0, 512, errno('ENOSPC'))).toMatchObject({ kind: 'capacity', nvmeStatus: undefined });
      expect(namespace.failure('write', 0, 512, errno('EIO'))).toMatchObject({ kind: 'write', nvmeStatus: undefined });
      expect(namespace.failure('read', 0, 512, errno('EIO'))).toMatchObject({ kind: 'read', nvmeStatus: undefined });
    } finally {
      await namespace.close();
    }
  });

  it('waits for in-flight I/O before closing, and fails operations after close', async () => {
    const file = path.join(tempDir, 'close.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: 4 * MiB });
    const data = pattern(2 * MiB, 8);
    let written = false;
    const writing = (namespace.write(0, [data]) as Promise<void>).then(() => (written = true));
    await namespace.close();
    expect(written).toBe(true);
    await writing;
    expect(same(fs.readFileSync(file).subarray(0, data.length), data)).toBe(true);
    expect(() => namespace.read(0, [new Uint8Array(512)])).toThrow(`file:${file}: read after close`);
  });

  it('maps I/O errors to NamespaceError with the path, offset and errno', async () => {
    const file = path.join(tempDir, 'err.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: MiB });
    try {
      // Simulate a failing store: swap the fd for one opened read-only on the same file (writes get EBADF).
      const readOnlyFd = fs.openSync(file, 'r');
      const internals = namespace as unknown as { fd: number };
      const realFd = internals.fd;
      internals.fd = readOnlyFd;
      try {
        await expect(namespace.write(4096, [new Uint8Array(512)])).rejects.toThrow(
          expect.objectContaining({
            kind: 'write',
            message: expect.stringContaining(`file:${file}: write of 512 bytes at offset 4096 failed: EBADF`),
          }),
        );
      } finally {
        internals.fd = realFd;
        fs.closeSync(readOnlyFd);
      }
    } finally {
      await namespace.close();
    }
  });
});

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The addon may be missing or built with sanitizers (which abort a plain node); probe it in a child process. */
const nativeUsable =
  spawnSync(
    process.execPath,
    [
      '-e',
      "const a = require('./build/Release/vfiod_native.node');" +
        "process.exit(typeof a.memfdCreate === 'function' && typeof a.mmap === 'function' ? 0 : 1)",
    ],
    { cwd: repoRoot, stdio: 'ignore' },
  ).status === 0;

describe.skipIf(!nativeUsable)('FileNamespace with O_DIRECT', () => {
  it('moves aligned and unaligned buffers correctly (zero-copy or bounced)', async () => {
    const file = path.join(tempDir, 'direct.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: 8 * MiB, direct: true });
    try {
      const data = pattern(3 * MiB, 9);
      // Unaligned views (offset 4 into their buffer) force the bounce path; 3 MiB spans several bounce pieces.
      const unaligned = new Uint8Array(data.length + 4);
      unaligned.set(data, 4);
      await namespace.write(4096, split(unaligned.subarray(4), [1536, 4096, 512]));
      const back = new Uint8Array(data.length + 4);
      await namespace.read(4096, [back.subarray(4)]);
      expect(same(back.subarray(4), data)).toBe(true);
      await namespace.writeZeroes(4096 + 512, 512);
      const aligned = new Uint8Array(8192);
      await namespace.read(4096, [aligned]);
      const expected = data.slice(0, 8192);
      expected.fill(0, 512, 1024);
      expect(same(aligned, expected)).toBe(true);
      await namespace.flush();
    } finally {
      await namespace.close();
    }
    const onDisk = fs.readFileSync(file);
    expect(same(onDisk.subarray(4096 + 1024, 4096 + 3 * MiB), pattern(3 * MiB, 9).subarray(1024))).toBe(true);
  });

  it('moves page-aligned (mmapped, like guest RAM) buffers zero-copy', async () => {
    const { native, PROT_READ, PROT_WRITE } = await import('../../../src/native/index.js');
    const fd = native.memfdCreate('test-guest-ram', MiB);
    const ram = native.mmap(fd, 0, MiB, PROT_READ | PROT_WRITE);
    native.close(fd);
    const file = path.join(tempDir, 'direct-aligned.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: 8 * MiB, direct: true });
    try {
      const bytes = new Uint8Array(ram);
      bytes.set(pattern(256 * 1024, 12));
      await namespace.write(8192, [bytes.subarray(0, 4096), bytes.subarray(4096, 256 * 1024)]);
      const back = bytes.subarray(512 * 1024, 768 * 1024);
      await namespace.read(8192, [back.subarray(0, 512), back.subarray(512)]);
      expect(same(back, pattern(256 * 1024, 12))).toBe(true);
      expect(log.lines.map((line) => line['msg'])).not.toContain(
        'O_DIRECT rejected guest buffers as unaligned; using bounce buffers from now on',
      );
    } finally {
      await namespace.close();
      native.munmap(ram);
    }
  });
});

describe.skipIf(!nativeUsable)('FileNamespace deallocation with fallocate', () => {
  async function spyOnNative(unsupported: Record<number, string> = {}) {
    const { native } = await import('../../../src/native/index.js');
    return fakeFallocate((fd, mode, offset, length) => native.fallocate(fd, mode, offset, length), unsupported);
  }

  it('punches real holes: the ranges read zeroes and st_blocks drops', async () => {
    const fallocate = await spyOnNative();
    const file = path.join(tempDir, 'holes.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: 16 * MiB, fallocate });
    try {
      expect(namespace.supportsDeallocate).toBe(true);
      const data = pattern(8 * MiB, 13);
      await namespace.write(MiB, [data]);
      await namespace.flush();
      const before = fs.statSync(file).blocks;
      expect(before * 512).toBeGreaterThanOrEqual(8 * MiB);
      const ranges = [
        { offset: 2 * MiB, length: 4 * MiB },
        { offset: 8 * MiB, length: 512 }, // part of a file system block: zeroed, nothing freed
        { offset: 12 * MiB, length: 0 },
      ];
      expect(namespace.deallocate(ranges)).toBeUndefined(); // one turn: done synchronously
      expect(fallocate.calls.slice(1)).toEqual([
        { mode: PUNCH, offset: 2 * MiB, length: 4 * MiB },
        { mode: PUNCH, offset: 8 * MiB, length: 512 },
      ]);
      const after = fs.statSync(file);
      expect((before - after.blocks) * 512).toBeGreaterThanOrEqual(4 * MiB);
      expect(after.size).toBe(16 * MiB); // KEEP_SIZE
      expect(namespace.usage().allocatedBytes).toBe(after.blocks * 512);

      const back = new Uint8Array(8 * MiB).fill(0xee);
      await namespace.read(MiB, [back]);
      const expected = data.slice();
      expected.fill(0, MiB, 5 * MiB);
      expected.fill(0, 7 * MiB, 7 * MiB + 512);
      expect(same(back, expected)).toBe(true);
    } finally {
      await namespace.close();
    }
  });

  it('writes zeroes with FALLOC_FL_ZERO_RANGE, or punches where the file system has no ZERO_RANGE', async () => {
    const fallocate = await spyOnNative();
    const file = path.join(tempDir, 'zeroes.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: 8 * MiB, fallocate });
    const data = pattern(4 * MiB, 15);
    try {
      await namespace.write(0, [data]);
      expect(namespace.writeZeroes(MiB, 2 * MiB)).toBeUndefined();
      const back = new Uint8Array(4 * MiB).fill(0xee);
      await namespace.read(0, [back]);
      const expected = data.slice();
      expected.fill(0, MiB, 3 * MiB);
      expect(same(back, expected)).toBe(true);
      const usedZeroRange = fallocate.calls.some((call) => call.mode === ZERO_RANGE);
      expect(usedZeroRange).toBe(true);
    } finally {
      await namespace.close();
    }

    // tmpfs-like: ZERO_RANGE is refused, so Write Zeroes punches (also reads zero) from then on.
    const noZeroRange = await spyOnNative({ [ZERO_RANGE]: 'EOPNOTSUPP' });
    const again = await FileNamespace.open({ logger: log.logger, path: file, fallocate: noZeroRange });
    try {
      expect(again.writeZeroes(0, 4096)).toBeUndefined();
      expect(again.writeZeroes(8192, 4096)).toBeUndefined();
      expect(noZeroRange.calls.map((call) => call.mode)).toEqual([PUNCH, ZERO_RANGE, PUNCH, PUNCH]);
      expect(log.lines.at(-1)).toMatchObject({
        msg: 'fallocate FALLOC_FL_ZERO_RANGE is not supported here; punching holes instead from now on',
      });
      const back = new Uint8Array(16384).fill(0xee);
      await again.read(0, [back]);
      const expected = data.slice(0, 16384);
      expected.fill(0, 0, 4096);
      expected.fill(0, 8192, 12288);
      expect(same(back, expected)).toBe(true);
    } finally {
      await again.close();
    }
  });

  it('reports fallocate failures with errno, code and syscall', async () => {
    const { native } = await import('../../../src/native/index.js');
    const badFd = 1_000_000;
    const error = (() => {
      try {
        native.fallocate(badFd, PUNCH, 0, 4096);
      } catch (caught) {
        return caught as NodeJS.ErrnoException;
      }
      throw new Error('expected an exception');
    })();
    expect(error).toMatchObject({ code: 'EBADF', errno: -os.constants.errno.EBADF, syscall: 'fallocate' });
    expect(error.message).toBe(`fallocate(fd ${badFd}, mode 3, offset 0, length 4096): Bad file descriptor`);

    // In a namespace, a failure that is not "unsupported" fails the command and does not disable fallocate.
    const file = path.join(tempDir, 'falloc-err.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: MiB });
    try {
      const readOnlyFd = fs.openSync(file, 'r');
      const internals = namespace as unknown as { fd: number };
      const realFd = internals.fd;
      internals.fd = readOnlyFd; // fallocate needs a writable fd: EBADF
      try {
        expect(() => namespace.deallocate([{ offset: 4096, length: 8192 }])).toThrow(
          expect.objectContaining({
            kind: 'write',
            message: `file:${file}: deallocate of 8192 bytes at offset 4096 failed: ` +
              `fallocate(fd ${readOnlyFd}, mode 3, offset 4096, length 8192): Bad file descriptor`,
            cause: expect.objectContaining({ code: 'EBADF', errno: -os.constants.errno.EBADF, syscall: 'fallocate' }),
          }),
        );
      } finally {
        internals.fd = realFd;
        fs.closeSync(readOnlyFd);
      }
      expect(namespace.deallocate([{ offset: 4096, length: 8192 }])).toBeUndefined();
    } finally {
      await namespace.close();
    }
  });
});

/** Loop devices need root and the loop driver; skip elsewhere. */
function makeLoopDevice(image: string): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    return execFileSync('losetup', ['-f', '--show', image], { encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}

describe('FileNamespace on a block device', () => {
  it('takes its size from the device and claims it exclusively', async (context) => {
    const image = path.join(tempDir, 'loop.img');
    fs.writeFileSync(image, pattern(4 * MiB, 10));
    const device = makeLoopDevice(image);
    if (device === undefined) return context.skip();
    try {
      const namespace = await FileNamespace.open({ logger: log.logger, path: device });
      try {
        expect(namespace.isBlockDevice).toBe(true);
        expect(namespace.blockCount).toBe((4 * MiB) / 512);
        expect(namespace.usage!().allocatedBytes).toBe(4 * MiB);
        const back = new Uint8Array(4096);
        await namespace.read(MiB, [back]);
        expect(same(back, pattern(4 * MiB, 10).subarray(MiB, MiB + 4096))).toBe(true);
        await namespace.write(2 * MiB, [pattern(4096, 11)]);
        await namespace.flush();
        await expect(FileNamespace.open({ logger: log.logger, path: device })).rejects.toThrow(
          'the block device is in use',
        );
      } finally {
        await namespace.close();
      }
      expect(same(fs.readFileSync(image).subarray(2 * MiB, 2 * MiB + 4096), pattern(4096, 11))).toBe(true);
      await expect(FileNamespace.open({ logger: log.logger, path: device, sizeBytes: 8 * MiB })).rejects.toThrow(
        `file namespace '${device}': size ${8 * MiB} is larger than the device (${4 * MiB} bytes)`,
      );
      const partial = await FileNamespace.open({ logger: log.logger, path: device, sizeBytes: MiB });
      expect(partial.blockCount).toBe(MiB / 512);
      // Its size is the device's (or what size= took of it): growing is not vfiod's to do.
      await expect(partial.grow(2 * MiB)).rejects.toThrow('a block device has the size of the device');
      expect(partial.blockCount).toBe(MiB / 512);
      await partial.close();

      // Deallocate and Write Zeroes punch (the loop driver passes that on to the image); nothing is probed.
      if (nativeUsable) {
        const { native } = await import('../../../src/native/index.js');
        const fallocate = fakeFallocate((fd, mode, offset, length) => native.fallocate(fd, mode, offset, length));
        const cleared = await FileNamespace.open({ logger: log.logger, path: device, fallocate });
        try {
          expect(cleared.supportsDeallocate).toBe(false);
          await cleared.deallocate([{ offset: MiB, length: 8192 }]);
          await cleared.writeZeroes(3 * MiB, 4096);
          await cleared.flush();
          expect(fallocate.calls).toEqual([
            { mode: PUNCH, offset: MiB, length: 8192 },
            { mode: PUNCH, offset: 3 * MiB, length: 4096 },
          ]);
        } finally {
          await cleared.close();
        }
        const stored = fs.readFileSync(image);
        expect(stored.subarray(MiB, MiB + 8192).every((byte) => byte === 0)).toBe(true);
        expect(stored.subarray(3 * MiB, 3 * MiB + 4096).every((byte) => byte === 0)).toBe(true);
        const untouched = pattern(4 * MiB, 10).subarray(MiB + 8192, 2 * MiB);
        expect(same(stored.subarray(MiB + 8192, 2 * MiB), untouched)).toBe(true);
        // And it is a real unmap: the loop driver turned the device's write-zeroes into holes in its image (the
        // guest's discard gives space back through a block device too).
        expect(fs.statSync(image).blocks * 512).toBeLessThanOrEqual(4 * MiB - 12 * 1024);
      }
    } finally {
      spawnSync('losetup', ['-d', device]);
    }
  });
});

describe('growing a namespace while it serves', () => {
  it('a file grows sparse: old data stays, the new blocks read as zeroes and take writes; smaller or unaligned sizes are refused', async () => {
    const file = path.join(tempDir, 'grow.img');
    const namespace = await FileNamespace.open({ logger: log.logger, path: file, sizeBytes: MiB });
    try {
      await namespace.write(MiB - 4096, [pattern(4096, 20)]);
      await namespace.grow(4 * MiB);
      expect(namespace.blockCount).toBe((4 * MiB) / 512);
      expect(namespace.sizeBytes).toBe(4 * MiB);
      expect(fs.statSync(file).size).toBe(4 * MiB);
      expect(fs.statSync(file).blocks * 512).toBeLessThan(MiB); // sparse
      const old = new Uint8Array(4096);
      await namespace.read(MiB - 4096, [old]);
      expect(same(old, pattern(4096, 20))).toBe(true);
      const fresh = new Uint8Array(8192).fill(0xff);
      await namespace.read(2 * MiB, [fresh]);
      expect(fresh.every((byte) => byte === 0)).toBe(true);
      await namespace.write(4 * MiB - 512, [pattern(512, 21)]);
      await expect(namespace.grow(4 * MiB)).rejects.toThrow('must be a multiple of the block size 512 larger than 4194304');
      await expect(namespace.grow(2 * MiB)).rejects.toThrow('larger than 4194304');
      await expect(namespace.grow(8 * MiB + 100)).rejects.toThrow('must be a multiple of the block size 512');
      expect(namespace.blockCount).toBe((4 * MiB) / 512);
    } finally {
      await namespace.close();
    }
    const readOnly = await FileNamespace.open({ logger: log.logger, path: file, readOnly: true });
    try {
      await expect(readOnly.grow(8 * MiB)).rejects.toMatchObject({ kind: 'read-only' });
    } finally {
      await readOnly.close();
    }
  });

  it('a memory namespace grows, its partly used last chunk included', async () => {
    const chunkBytes = 64 * 1024;
    const namespace = new MemoryNamespace({ sizeBytes: chunkBytes + 4096, blockSize: 512, chunkBytes });
    namespace.write(chunkBytes, [pattern(4096, 22)]);
    await namespace.grow(3 * chunkBytes);
    expect(namespace.blockCount).toBe((3 * chunkBytes) / 512);
    expect(namespace.description).toBe('memory:192KiB');
    const back = new Uint8Array(chunkBytes);
    namespace.read(chunkBytes, [back]);
    expect(same(back.subarray(0, 4096), pattern(4096, 22))).toBe(true);
    expect(back.subarray(4096).every((byte) => byte === 0)).toBe(true);
    namespace.write(chunkBytes + 8192, [pattern(4096, 23)]); // in the grown part of the old last chunk
    namespace.write(3 * chunkBytes - 512, [pattern(512, 24)]);
    const end = new Uint8Array(512);
    namespace.read(3 * chunkBytes - 512, [end]);
    expect(same(end, pattern(512, 24))).toBe(true);
    await expect(namespace.grow(chunkBytes)).rejects.toThrow('larger than 196608');
    await namespace.close();
  });

  it('the URI of a grown namespace opens it at its new size again', () => {
    expect(resizedNamespaceUri('memory:16M?block-size=4096', 32 * MiB)).toBe(`memory:${32 * MiB}?block-size=4096`);
    expect(resizedNamespaceUri('file:/srv/a.img?block-size=4096&size=1G', 2 * GiB)).toBe(`file:/srv/a.img?block-size=4096&size=${2 * GiB}`);
    // Without size= the file's own size counts, and the grow changed it.
    expect(resizedNamespaceUri('file:///srv/a.img', 2 * GiB)).toBe('file:///srv/a.img');
    expect(() => resizedNamespaceUri('nvme-tcp://127.0.0.1:4420/nqn.2026-01.io.example:disk', GiB)).toThrow('its size is not in its URI');
  });
});

describe('namespace scheme registry', () => {
  it('lets another backend plug in a scheme that callers open like the built-in ones', async () => {
    interface RemoteSpec extends NamespaceSpec {
      readonly target: string;
      readonly sizeBytes: number;
    }
    let opened: RemoteSpec | undefined;
    registerNamespaceScheme<RemoteSpec>('test-remote', {
      parse(parts) {
        checkParams(parts, ['size']);
        return { scheme: parts.scheme, uri: parts.uri, target: parts.body, sizeBytes: sizeParam(parts, parts.params.get('size') ?? '1M') };
      },
      async open(spec): Promise<Namespace> {
        opened = spec;
        return new MemoryNamespace({ sizeBytes: spec.sizeBytes });
      },
    });
    expect(knownNamespaceSchemes()).toEqual(['file', 'memory', 'nvme-tcp', 'test-remote']);
    const spec = parseNamespaceUri('test-remote://10.0.0.1:4420/nqn.x?size=2M');
    const namespace = await openNamespace(spec);
    expect(opened).toEqual({ scheme: 'test-remote', uri: 'test-remote://10.0.0.1:4420/nqn.x?size=2M', target: '//10.0.0.1:4420/nqn.x', sizeBytes: 2 * MiB });
    expect(namespace.blockCount).toBe(4096);
    expect(() => parseNamespaceUri('test-remote:x?port=1')).toThrow(
      "invalid namespace URI 'test-remote:x?port=1': unknown parameter 'port' (known: size)",
    );
    expect(() => parseNamespaceUri('bogus:x')).toThrow('(known schemes: file, memory, nvme-tcp, test-remote)');
  });
});
