/**
 * Pieces shared by the QEMU guests (testbed/nvmet-target.ts, testbed/vfio-guest.ts): finding host
 * tools and a static busybox, resolving kernel modules with kmod, a cpio "newc" writer for the initramfs, and the
 * vmlinux extracted from a bzImage (PVH boot skips the decompressor: several seconds under TCG).
 */
import { spawnSync } from 'node:child_process';
import {
  accessSync, closeSync, constants as fsConstants, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync,
  statSync, writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';

export function isExecutable(file: string): boolean {
  try {
    accessSync(file, fsConstants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** `command` itself when it has a slash, else its first executable in $PATH, /usr/sbin or /sbin. */
export function which(command: string): string | undefined {
  if (command.includes('/')) return isExecutable(command) ? command : undefined;
  for (const dir of (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    const candidate = path.join(dir || '.', command);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/** True for an x86-64 ELF executable without a PT_INTERP program header (statically linked). */
export function isStaticElf(file: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const header = Buffer.alloc(64);
    if (readSync(fd, header, 0, 64, 0) !== 64 || header.readUInt32BE(0) !== 0x7f454c46 || header[4] !== 2) return false;
    const phoff = Number(header.readBigUInt64LE(32));
    const phentsize = header.readUInt16LE(54);
    const phnum = header.readUInt16LE(56);
    const table = Buffer.alloc(phentsize * phnum);
    readSync(fd, table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) if (table.readUInt32LE(i * phentsize) === 3) return false;
    return true;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The first statically linked busybox among `candidates`. */
export function staticBusybox(candidates = ['/bin/busybox', '/usr/bin/busybox']): string | undefined {
  return candidates.find((file) => isExecutable(file) && isStaticElf(file));
}

/** Module files for `names` and their dependencies in load order, resolved by kmod's modprobe for `version`. */
export function resolveModules(modprobe: string, version: string, names: string[]): string[] | string {
  const files: string[] = [];
  for (const name of names) {
    const result = spawnSync(modprobe, ['-S', version, '--show-depends', name], { encoding: 'utf8' });
    if (result.status !== 0) return `module ${name}: ${(result.stderr || result.stdout || 'not found').trim()}`;
    for (const line of result.stdout.split('\n')) {
      const match = /^insmod (\S+)/.exec(line);
      if (match?.[1] && !files.includes(match[1])) files.push(match[1]);
    }
  }
  return files;
}

/** /boot kernel versions (from vmlinuz-<ver>), newest first. */
export function bootKernelVersions(): string[] {
  try {
    return readdirSync('/boot')
      .filter((name) => name.startsWith('vmlinuz-'))
      .map((name) => name.slice('vmlinuz-'.length))
      .sort((a, b) => b.localeCompare(a, 'en', { numeric: true }));
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// initramfs (cpio "newc")

export class Cpio {
  private readonly chunks: Buffer[] = [];
  private ino = 1;

  dir(name: string): void {
    this.entry(name, 0o040755, Buffer.alloc(0));
  }
  file(name: string, data: Uint8Array, mode = 0o644): void {
    this.entry(name, 0o100000 | mode, Buffer.from(data));
  }
  symlink(name: string, target: string): void {
    this.entry(name, 0o120777, Buffer.from(target));
  }
  charDevice(name: string, major: number, minor: number): void {
    this.entry(name, 0o020600, Buffer.alloc(0), major, minor);
  }
  /** The module files (decompressed) as /mods/<name>.ko and their load order in /mods/order, for the init scripts. */
  modules(files: string[]): void {
    const order: string[] = [];
    for (const file of files) {
      const name = path.basename(file).replace(/\.ko(\.\w+)?$/, '');
      this.file(`mods/${name}.ko`, moduleBytes(file));
      order.push(name);
    }
    this.file('mods/order', Buffer.from(`${order.join('\n')}\n`));
  }
  finish(): Buffer {
    this.entry('TRAILER!!!', 0, Buffer.alloc(0));
    return Buffer.concat(this.chunks);
  }
  private entry(name: string, mode: number, data: Buffer, rdevMajor = 0, rdevMinor = 0): void {
    const nameBytes = Buffer.from(`${name}\0`);
    const hex = (n: number): string => n.toString(16).padStart(8, '0');
    const fields = [this.ino++, mode, 0, 0, mode & 0o040000 ? 2 : 1, 0, data.length, 0, 0, rdevMajor, rdevMinor, nameBytes.length, 0];
    this.chunks.push(Buffer.from(`070701${fields.map(hex).join('')}`, 'ascii'), nameBytes);
    this.pad(110 + nameBytes.length);
    this.chunks.push(data);
    this.pad(data.length);
  }
  private pad(length: number): void {
    if (length % 4) this.chunks.push(Buffer.alloc(4 - (length % 4)));
  }
}

function moduleBytes(file: string): Buffer {
  if (file.endsWith('.ko')) return readFileSync(file);
  if (file.endsWith('.ko.gz')) return gunzipSync(readFileSync(file));
  const tool = file.endsWith('.ko.xz') ? 'xz' : file.endsWith('.ko.zst') ? 'zstd' : undefined;
  if (!tool) throw new Error(`unsupported module file ${file}`);
  const result = spawnSync(tool, ['-dc', file], { maxBuffer: 64 << 20 });
  if (result.status !== 0) throw new Error(`cannot decompress ${file} with ${tool}: ${String(result.stderr).trim()}`);
  return result.stdout;
}

// ---------------------------------------------------------------------------------------------------------------
// Kernel

/**
 * The vmlinux inside the bzImage `kernel` (of /boot `version`), extracted once into ${TMPDIR}/`cacheName`, or the
 * bzImage itself when extraction is impossible (no CONFIG_PVH, no decompressor).
 */
export function extractedVmlinux(kernel: string, version: string, cacheName: string): string {
  try {
    if (!/^CONFIG_PVH=y$/m.test(readFileSync(`/boot/config-${version}`, 'utf8'))) return kernel;
    const stat = statSync(kernel);
    const cacheDir = path.join(os.tmpdir(), cacheName);
    const cached = path.join(cacheDir, `vmlinux-${version}-${stat.size}-${Math.round(stat.mtimeMs)}`);
    if (existsSync(cached)) return cached;
    const image = readFileSync(kernel);
    const formats: Array<{ magic: number[]; command: string[] }> = [
      { magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], command: ['xz', '-dc', '--single-stream'] },
      { magic: [0x28, 0xb5, 0x2f, 0xfd], command: ['zstd', '-dcq'] },
      { magic: [0x1f, 0x8b, 0x08], command: ['gzip', '-dcq'] },
    ];
    for (const { magic, command } of formats) {
      const at = image.indexOf(Buffer.from(magic));
      if (at < 0 || !which(command[0]!)) continue;
      const result = spawnSync(command[0]!, command.slice(1), { input: image.subarray(at), maxBuffer: 512 << 20 });
      const vmlinux = result.stdout;
      // gzip and zstd complain about the bytes after the stream (status 1 or 2) but still write all of it
      if (!vmlinux || vmlinux.length < 1 << 20 || vmlinux.readUInt32BE(0) !== 0x7f454c46) continue;
      mkdirSync(cacheDir, { recursive: true });
      const temporary = `${cached}.${process.pid}.tmp`;
      writeFileSync(temporary, vmlinux);
      renameSync(temporary, cached); // atomic: parallel test processes may extract at the same time
      return cached;
    }
  } catch {
    /* fall back to the bzImage */
  }
  return kernel;
}
