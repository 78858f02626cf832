/**
 * The npm package as a user gets it: `npm pack` of this checkout, installed into a temporary global prefix
 * (`npm install -g --prefix <tmp> ./vfiod-*.tgz`), and the installed `vfiod` command serving the README's main job
 * (the embedded default namespace) to the project's vfio-user client, which writes and reads back.
 *
 * Kept cheap (docs/testing.md, What CI costs): the pack reuses the dist/ that `npm test` has just built and the addon
 * `npm install` has built (`--ignore-scripts`: `prepare` would recompile dist/ under the other test files running
 * from it; scripts/prebuild.mjs, the `prepack` script, is run by hand with --no-build: it only copies build/Release).
 * The install skips the dependencies' install scripts (better-sqlite3 compiles SQLite when it cannot download its binary: minutes;
 * only `vfiod devices` and the daemon use it) and then runs vfiod's own through `npm rebuild vfiod`, as an install
 * would. Dependencies come from the npm cache that `npm install` filled, the registry for what is not in it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Guest } from '../helpers/hypervisor.js';
import { pattern } from '../helpers/nvme-harness.js';
import { temporaryDir } from '../helpers/common.js';
import { Status } from '../../src/spec/nvme.js';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const built = existsSync(path.join(root, 'dist', 'cli', 'main.js')) && existsSync(path.join(root, 'build', 'Release', 'vfiod_native.node'));
const prebuilt = `prebuilds/${process.platform}-${process.arch}/vfiod_native.node`;
const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;

if (!built) console.log('skipping: dist/ or build/Release/vfiod_native.node missing (npm install; npm test builds dist/)');

/** Runs `command` to completion; its output is kept for the failure message. */
async function sh(command: string, args: string[], cwd: string): Promise<string> {
  try {
    const { stdout, stderr } = await run(command, args, { cwd, maxBuffer: 64 << 20, timeout: 240_000 });
    return stdout + stderr;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

describe.skipIf(!built)('the npm package', () => {
  let dir: string;
  let tarball: string;
  let prefix: string;
  let installed: string;
  const timings: Record<string, number> = {};
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    dir = temporaryDir('vfiod-package-');
    let at = Date.now();
    await sh(process.execPath, ['scripts/prebuild.mjs', '--no-build'], root);
    const packed = JSON.parse(
      await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: root, maxBuffer: 64 << 20 }).then((r) => r.stdout),
    ) as Array<{ filename: string }>;
    tarball = path.join(dir, packed[0]!.filename);
    timings['pack'] = Date.now() - at;

    at = Date.now();
    prefix = path.join(dir, 'prefix');
    const common = ['--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'];
    await sh('npm', ['install', ...common, '--ignore-scripts', tarball], dir);
    timings['install'] = Date.now() - at;
    at = Date.now();
    const rebuilt = await sh('npm', ['rebuild', ...common, '--foreground-scripts', 'vfiod'], dir);
    timings['install script'] = Date.now() - at;
    installed = path.join(prefix, 'lib', 'node_modules', 'vfiod');
    expect(rebuilt).toContain(`using the prebuilt native addon (${prebuilt})`);
  }, 300_000);

  afterAll(() => {
    for (const child of children) child.kill('SIGKILL');
    console.log(`package test: ${Object.entries(timings).map(([step, ms]) => `${step} ${ms} ms`).join(', ')}`);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ships dist/ and the prebuilt addon, nothing to compile, no build tools at run time', async () => {
    const files = (await sh('tar', ['-tzf', tarball], dir)).split('\n').filter(Boolean);
    for (const file of ['package/bin/vfiod.js', 'package/dist/cli/main.js', 'package/dist/serve/worker.js', `package/${prebuilt}`, 'package/proto/vfiod/v1/controllers.proto', 'package/contrib/systemd/vfiod.service', 'package/binding.gyp', 'package/native/addon.cc', 'package/scripts/install-native.mjs']) {
      expect(files, file).toContain(file);
    }
    expect(files.filter((file) => /^package\/(src|test|testbed|bench|build|node_modules)\//.test(file) || file.endsWith('.map'))).toEqual([]);
    // The install used the prebuilt addon: no source build, and neither node-gyp nor TypeScript came with it.
    expect(existsSync(path.join(installed, 'build'))).toBe(false);
    const dependencies = readdirSync(path.join(installed, 'node_modules'));
    for (const tool of ['node-gyp', 'typescript', 'tsx', 'vitest']) expect(dependencies, tool).not.toContain(tool);
    expect(statSync(path.join(prefix, 'bin', 'vfiod')).isFile() || statSync(path.join(prefix, 'bin', 'vfiod')).isSymbolicLink()).toBe(true);
    expect((await sh(path.join(prefix, 'bin', 'vfiod'), ['version'], dir)).trim()).toBe(version);
  });

  it('the installed vfiod serves the README main job: listening, a write read back, SIGTERM exits 0', async () => {
    const socket = path.join(dir, 'run', 'nvme0.sock'); // the directory does not exist yet
    const at = Date.now();
    const proc = spawn(path.join(prefix, 'bin', 'vfiod'), ['serve', '--socket', socket], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(proc);
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    let log = '';
    await new Promise<void>((resolve, reject) => {
      proc.stderr!.on('data', (chunk: Buffer) => {
        log += chunk.toString();
        if (log.includes('"msg":"listening"') && log.includes('"component":"controller"')) resolve();
      });
      void exited.then((code) => reject(new Error(`the installed vfiod exited with ${code}: ${log}`)));
    });
    timings['serve to listening'] = Date.now() - at;
    // The addon this process loaded is the one the package shipped.
    const maps = readFileSync(`/proc/${proc.pid}/maps`, 'utf8');
    expect(maps).toContain(path.join(installed, prebuilt));

    const guest = await Guest.attach(socket, { flavour: 'qemu' });
    try {
      await guest.driver.enable();
      await guest.driver.createIoQueuePair(1, 32, 1);
      const data = pattern(8192, 7);
      expect((await guest.driver.write(1, 100, data)).status).toBe(Status.SUCCESS);
      const read = await guest.driver.read(1, 100, data.length / 512);
      expect(read.completion.status).toBe(Status.SUCCESS);
      expect(read.data).toEqual(data);
    } finally {
      guest.close();
    }
    proc.kill('SIGTERM');
    expect(await exited, log).toBe(0);
    expect(existsSync(socket)).toBe(false);
    expect(statSync(path.join(dir, 'run', 'nvme0.img')).size).toBe(1024 ** 3);
  });
});
