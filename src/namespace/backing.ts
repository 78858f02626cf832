/**
 * What may back a `file:` namespace, decided on an open file descriptor, never on a name alone.
 *
 * A guest reads and writes its namespace at any offset, so the backing must be storage: a regular file on a disk
 * filesystem, or a block device. Everything else is refused: character devices (/dev/mem, /dev/watchdog, ttys),
 * FIFOs, sockets, directories, and regular files of the kernel's pseudo filesystems (/proc/self/mem would hand the
 * guest the daemon's memory; /sys/bus/pci/devices/.../resource0 a host device's registers).
 *
 * The path is opened with O_PATH: that resolves symlinks once and calls no driver's open (opening /dev/watchdog
 * arms it). fstat and statfs then look at what that descriptor is, and the real open goes through
 * /proc/self/fd/<n>, which reopens exactly that inode: swapping a path component for a symlink between the check and
 * the open changes nothing.
 *
 * A backing's identity is its inode: (st_dev, st_ino) for a file, st_rdev for a block device, so a hard link, a
 * second device node or a symlink all name the same disk.
 */
import fs from 'node:fs';
import path from 'node:path';

/** linux/fcntl.h O_PATH (asm-generic, which x86-64 and arm64 use); Node does not export it. */
export const O_PATH = 0o10000000;

/** statfs f_type of the kernel's pseudo filesystems (linux/magic.h): nothing on them is storage. */
const PSEUDO_FILESYSTEMS = new Map<number, string>([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x62656570, 'configfs'],
  [0xcafe4a11, 'bpf'],
  [0xde5e81e4, 'efivarfs'],
  [0x6165676c, 'pstore'],
  [0x1cd1, 'devpts'],
  [0x65735543, 'fusectl'],
  [0x42494e4d, 'binfmt_misc'],
  [0xf97cff8c, 'selinuxfs'],
  [0x43415d53, 'smackfs'],
  [0x6e736673, 'nsfs'],
  [0x50495045, 'pipefs'],
  [0x534f434b, 'sockfs'],
  [0x09041934, 'anon_inode_fs'],
  [0x67596969, 'rpc_pipefs'],
  [0x19800202, 'mqueue'],
]);

/** Why a path cannot back a namespace; `reason` is stable for programs, the message is for people. */
export class BackingRefused extends Error {
  constructor(
    readonly reason: 'NAMESPACE_BACKING_NOT_STORAGE' | 'NAMESPACE_BACKING_PSEUDO_FILESYSTEM',
    message: string,
  ) {
    super(message);
    this.name = 'BackingRefused';
  }
}

export interface BackingIdentity {
  kind: 'file' | 'block';
  /** Where the descriptor actually points (symlinks resolved). */
  realPath: string;
  /** `file:<dev>:<ino>` or `block:<rdev>`: equal for every name of the same disk. */
  key: string;
}

/** What a file type is called in messages. */
function typeName(stats: fs.Stats): string {
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isSocket()) return 'a socket';
  if (stats.isDirectory()) return 'a directory';
  if (stats.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

/** The path a descriptor of this process refers to, through /proc/self/fd. */
export function descriptorPath(fd: number): string {
  return `/proc/self/fd/${fd}`;
}

/**
 * Checks what the open descriptor `fd` is (any open mode, O_PATH included) and returns its identity; throws
 * BackingRefused when it cannot back a namespace. `shown` is the path named in messages.
 */
export function checkBackingDescriptor(fd: number, shown: string): BackingIdentity {
  const stats = fs.fstatSync(fd);
  const realPath = fs.readlinkSync(descriptorPath(fd));
  const where = realPath === shown ? `'${shown}'` : `'${shown}' (${realPath})`;
  if (!stats.isFile() && !stats.isBlockDevice()) {
    throw new BackingRefused('NAMESPACE_BACKING_NOT_STORAGE', `${where} is ${typeName(stats)}, neither a regular file nor a block device: only those can back a namespace`);
  }
  if (stats.isFile()) {
    const filesystem = PSEUDO_FILESYSTEMS.get(Number(fs.statfsSync(descriptorPath(fd)).type));
    if (filesystem !== undefined) {
      throw new BackingRefused(
        'NAMESPACE_BACKING_PSEUDO_FILESYSTEM',
        `${where} is on ${filesystem}, a kernel pseudo filesystem, not storage: a namespace must be a regular file on a disk filesystem or a block device`,
      );
    }
  }
  return stats.isBlockDevice()
    ? { kind: 'block', realPath, key: `block:${stats.rdev}` }
    : { kind: 'file', realPath, key: `file:${stats.dev}:${stats.ino}` };
}

/**
 * Opens `filePath` with O_PATH (symlinks followed, no driver's open called) and returns the descriptor, or undefined
 * when nothing is there. The caller closes it.
 */
export function openPathDescriptor(filePath: string): number | undefined {
  try {
    return fs.openSync(filePath, O_PATH | fs.constants.O_RDONLY);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * What is at `filePath` as a namespace backing: its identity, or undefined when it does not exist (a file namespace
 * with size= creates it). Throws BackingRefused for anything that is not storage, other errors as they come.
 */
export function inspectBacking(filePath: string): BackingIdentity | undefined {
  const fd = openPathDescriptor(filePath);
  if (fd === undefined) return undefined;
  try {
    return checkBackingDescriptor(fd, filePath);
  } finally {
    fs.closeSync(fd);
  }
}

/** The real path `filePath` would have: itself resolved when it exists, else its real parent directory + its name. */
export function resolvedPath(filePath: string): string {
  try {
    return fs.realpathSync(filePath);
  } catch {
    try {
      return path.join(fs.realpathSync(path.dirname(filePath)), path.basename(filePath));
    } catch {
      return path.resolve(filePath);
    }
  }
}

/** Whether `candidate` (absolute, normalised) is `dir` or below it. */
export function isWithin(candidate: string, dir: string): boolean {
  const relative = path.relative(dir, candidate);
  return relative === '' || (relative !== '..' && !relative.startsWith('../') && !path.isAbsolute(relative));
}
