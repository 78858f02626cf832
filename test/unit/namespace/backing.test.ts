/**
 * What may back a file namespace (src/namespace/backing.ts), as `vfiod serve` and the daemon's controllers open it:
 * storage only, decided on the opened descriptor, and identified by inode.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackingRefused, inspectBacking, isWithin } from '../../../src/namespace/backing.js';
import { FileNamespace } from '../../../src/namespace/file.js';
import { parseServeArgs } from '../../../src/cli/serve.js';
import { memoryLogger } from '../../../src/util/log.js';
import { temporaryDir } from '../../helpers/common.js';

let dir: string;
beforeEach(() => {
  dir = temporaryDir('vfiod-backing-');
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const open = (file: string, sizeBytes?: number) =>
  FileNamespace.open({ logger: memoryLogger().logger, path: file, ...(sizeBytes !== undefined ? { sizeBytes } : {}) });

async function refusal(opening: Promise<unknown>): Promise<BackingRefused> {
  const error = await opening.then(
    () => {
      throw new Error('expected the namespace to be refused');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BackingRefused);
  return error as BackingRefused;
}

describe('namespace backings', () => {
  it('refuses /proc/self/mem (the daemon memory a guest would read), also through a symlink', async () => {
    const direct = await refusal(open('/proc/self/mem', 2047 * 2 ** 20));
    expect(direct.reason).toBe('NAMESPACE_BACKING_PSEUDO_FILESYSTEM');
    expect(direct.message).toContain("file namespace '/proc/self/mem'");
    expect(direct.message).toContain('is on proc, a kernel pseudo filesystem');
    const link = path.join(dir, 'innocent.img');
    fs.symlinkSync('/proc/self/mem', link);
    const linked = await refusal(open(link, 2 ** 20));
    expect(linked.message).toContain(`/proc/${process.pid}/mem`);
    expect(linked.message).toContain('pseudo filesystem');
  });

  it('refuses regular files of sysfs', async () => {
    const sysfsFile = ['/sys/kernel/uevent_seqnum', '/sys/power/state', '/sys/class/net/lo/address'].find((f) => fs.existsSync(f));
    if (!sysfsFile) return;
    expect((await refusal(open(sysfsFile, 2 ** 20))).message).toContain('is on sysfs');
  });

  it('refuses character devices, FIFOs and directories without opening them for I/O (a FIFO would block)', async () => {
    const nullDevice = await refusal(open('/dev/null', 2 ** 20));
    expect(nullDevice.reason).toBe('NAMESPACE_BACKING_NOT_STORAGE');
    expect(nullDevice.message).toContain("'/dev/null' is a character device, neither a regular file nor a block device");
    const fifo = path.join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    expect((await refusal(open(fifo, 2 ** 20))).message).toContain('is a FIFO');
    expect((await refusal(open(dir))).message).toContain('is a directory');
  });

  it('`vfiod serve` says so as a usage error before starting anything', () => {
    expect(() => parseServeArgs(['--socket', path.join(dir, 'c.sock'), '--namespace', 'file:/proc/self/mem?size=2047M'])).toThrow(
      /serve: --namespace 'file:\/proc\/self\/mem\?size=2047M': '\/proc\/self\/mem' \(\/proc\/\d+\/mem\) is on proc/,
    );
    expect(() => parseServeArgs(['--socket', path.join(dir, 'c.sock'), '--namespace', 'file:/dev/zero'])).toThrow('is a character device');
  });

  it('a hard link and a symlink of a file have its identity; another file does not', async () => {
    const file = path.join(dir, 'disk.img');
    await (await open(file, 2 ** 20)).close();
    fs.linkSync(file, path.join(dir, 'hard.img'));
    fs.symlinkSync(file, path.join(dir, 'soft.img'));
    fs.writeFileSync(path.join(dir, 'other.img'), new Uint8Array(512));
    const key = inspectBacking(file)!.key;
    expect(key).toMatch(/^file:\d+:\d+$/);
    expect(inspectBacking(path.join(dir, 'hard.img'))!.key).toBe(key);
    expect(inspectBacking(path.join(dir, 'soft.img'))).toMatchObject({ key, realPath: fs.realpathSync(file) });
    expect(inspectBacking(path.join(dir, 'other.img'))!.key).not.toBe(key);
    expect(inspectBacking(path.join(dir, 'missing.img'))).toBeUndefined();
  });

  it('isWithin: below or equal, never a sibling with the same prefix or a way up', () => {
    expect(isWithin('/srv/disks/a.img', '/srv/disks')).toBe(true);
    expect(isWithin('/srv/disks/..a.img', '/srv/disks')).toBe(true);
    expect(isWithin('/srv/disks-other/a.img', '/srv/disks')).toBe(false);
    expect(isWithin('/srv/a.img', '/srv/disks')).toBe(false);
  });
});
