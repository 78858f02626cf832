/**
 * The configuration file as an operator uses it, with the real bin/vfiod.js in child processes: `vfiod config check`
 * (exit 0 with the effective configuration, exit 2 with file:line:column problems), `vfiod daemon` and
 * `vfiod serve` started from a file with the command line overriding it, `vfiod serve --json` (one status line on
 * stdout that matches the persisted identity file, logs on stderr), and the ExecStart of
 * contrib/systemd/vfiod-serve@.service run as systemd would run it (paths moved to a temp dir).
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { ServingStatus } from '../../src/serve/supervisor.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { temporaryDir, waitFor } from '../helpers/common.js';
import { type CliChild, startCli } from '../helpers/cli-process.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const skipReason = existsSync(path.join(root, 'dist', 'config', 'file.js')) ? undefined : 'dist/ is not built (npm test runs tsc first)';
if (skipReason) console.warn(`configuration file tests skipped: ${skipReason}`);
/** Generous: two cores shared with other jobs. */
const DEADLINE_MS = 60_000;

const children: ChildProcess[] = [];
function start(args: string[]): CliChild {
  const child = startCli(args);
  children.push(child.proc);
  return child;
}

async function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = start(args);
  const code = await child.exited;
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

/** Every stderr line is a JSON log record. */
const logRecords = (text: string): Array<Record<string, unknown>> => text.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);

let dir: string;
let host: FakeHost;
beforeAll(() => {
  dir = temporaryDir('vfiod-config-int-');
  host = standardHost();
});
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
afterAll(() => {
  host.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, lines: string[]): string {
  const file = path.join(dir, name);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

describe.skipIf(skipReason)('vfiod config check', () => {
  it('a valid file: exit 0, the effective configuration with the defaults filled in', async () => {
    const file = writeConfig('ok.yaml', [
      'daemon:',
      `  state-dir: ${dir}/state`,
      "  socket-mode: '0660'",
      '  namespace-dir: /srv/disks',
      'serve:',
      '  poll: true',
      '  io-queues: 4',
    ]);
    const result = await run(['config', 'check', '--config', file]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    const effective = parseYaml(result.stdout) as { daemon: Record<string, unknown>; serve: Record<string, unknown> };
    expect(effective.daemon).toMatchObject({
      socketPath: '/run/vfiod/vfiod.sock', stateDir: `${dir}/state`, socketMode: '0660', namespaceDirs: ['/srv/disks'],
      roots: { sysfs: '/sys', dev: '/dev', proc: '/proc' },
    });
    expect(effective.serve).toEqual({ poll: true, 'io-queues': 4, socket: '(given on the command line)' });
  });

  it('a broken file: exit 2, every problem at its line and column; a rule between options at the option', async () => {
    const file = writeConfig('bad.yaml', ['daemon:', '  state-dir: var/lib/vfiod', '  max-controllers: -1', 'serve:', '  mdts: 99', '  poll: 1']);
    const result = await run(['config', 'check', '--config', file]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toEqual([
      `${file}:2:14: state-dir: must be an absolute path`,
      `${file}:3:20: max-controllers: must be an integer from 1 to 100000`,
      expect.stringMatching(new RegExp(`^${file}:5:9: mdts: must be an integer from 0 to \\d+$`)),
      `${file}:6:9: poll: must be true or false`,
    ]);
    const rules = writeConfig('rules.yaml', ['daemon:', `  state-dir: ${dir}/state`, '  no-socket: true']);
    const ruled = await run(['config', 'check', '--config', rules]);
    expect(ruled.code).toBe(2);
    expect(ruled.stderr).toBe(`${rules}:3:3: no-socket: --no-socket needs --tcp: the daemon must listen somewhere\n`);
    const missing = await run(['config', 'check', '--config', path.join(dir, 'none.yaml')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/none\.yaml: cannot read the configuration file: ENOENT/);
  });
});

describe.skipIf(skipReason)('the commands read the file; the command line overrides it', () => {
  it('vfiod daemon: socket, state dir and roots from the file, the mode from the command line; a broken file: exit 2', async () => {
    const socket = path.join(dir, 'daemon', 'vfiod.sock');
    const file = writeConfig('daemon.yaml', [
      'daemon:',
      `  socket: ${socket}`,
      `  state-dir: ${dir}/daemon-state`,
      "  socket-mode: '0600'",
      `  sysfs-root: ${host.roots.sysfs}`,
      `  dev-root: ${host.roots.dev}`,
      `  proc-root: ${host.roots.proc}`,
    ]);
    const daemon = start(['daemon', '--config', file, '--socket-mode', '0660']);
    await waitFor(() => /"msg":"listening","component":"daemon"/.test(daemon.stderr()) || null, 'the daemon listening', DEADLINE_MS);
    expect(statSync(socket).mode & 0o777).toBe(0o660);
    expect(existsSync(path.join(dir, 'daemon-state'))).toBe(true);
    daemon.proc.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);

    // SIGTERM while it starts (after reconciling, before listening): it stops once started, cleanly.
    const early = start(['daemon', '--config', file]);
    await waitFor(() => /"msg":"claims reconciled"/.test(early.stderr()) || null, 'the daemon reconciling', DEADLINE_MS);
    early.proc.kill('SIGTERM');
    expect(await early.exited).toBe(0);
    expect(early.stderr()).toMatch(/"msg":"(stop requested while starting: stopping once started|shutting down)"/);
    expect(early.stderr()).toContain('"msg":"stopped","component":"daemon"');
    expect(existsSync(socket)).toBe(false);

    const broken = writeConfig('daemon-bad.yaml', ['daemon:', `  socket: ${socket}`, '  tcp: 0.0.0.0:50051']);
    const refused = await run(['daemon', '--config', broken]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(new RegExp(`^vfiod daemon: ${broken}:3:3: tcp: refusing plain TCP on 0\\.0\\.0\\.0:50051`));
    expect(existsSync(socket)).toBe(false);
  }, 120_000);

  it('vfiod serve --json: one status line on stdout, the identity the guest sees, as persisted; logs on stderr', async () => {
    const disk = path.join(dir, 'disk1.img');
    const file = writeConfig('serve.yaml', ['serve:', `  namespace: ["file:${disk}?size=4M", "memory:8M"]`, '  serial: FROMFILE', '  model: config test', "  ieee-oui: 'abcdef'", '  controller-id: 7', '  json: true']);
    const socket = path.join(dir, 'serve', 'nvme0.sock');
    const served = start(['serve', '--config', file, '--socket', socket, '--serial', 'FROMCLI']);
    const line = await waitFor(() => served.stdout().split('\n')[0] || null, 'the status line', DEADLINE_MS);
    const status = JSON.parse(line) as ServingStatus;
    const persisted = JSON.parse(readFileSync(`${disk}.vfiod.json`, 'utf8')) as {
      controller: { subsystemNqn: string };
      namespaces: Array<{ nguid: string; eui64: string; uuid: string }>;
    };
    expect(status).toEqual({
      status: 'serving',
      pid: served.proc.pid,
      version: expect.stringMatching(/^\d+\.\d+\.\d+/),
      controllers: [{
        socket,
        serial: 'FROMCLI',
        model: 'config test',
        firmware: expect.any(String),
        nqn: persisted.controller.subsystemNqn,
        ieeeOui: 'abcdef',
        controllerId: 7,
        namespaces: [
          { nsid: 1, uri: `file:${disk}?size=4M`, backing: `file:${disk}`, blockSize: 512, blocks: 8192, sizeBytes: 4 << 20, ...persisted.namespaces[0] },
          { nsid: 2, uri: 'memory:8M', backing: expect.stringMatching(/^memory:/), blockSize: 512, blocks: 16384, sizeBytes: 8 << 20, ...persisted.namespaces[1] },
        ],
      }],
    });
    expect(status.controllers[0]!.namespaces[0]!.eui64).toMatch(/^[0-9a-f]{16}$/);
    served.proc.kill('SIGTERM');
    expect(await served.exited).toBe(0);
    // One line on stdout, nothing else there; the logs, JSON records, on stderr.
    expect(served.stdout()).toBe(`${line}\n`);
    expect(logRecords(served.stderr()).some((record) => record['msg'] === 'listening')).toBe(true);
  }, 120_000);

  it("vfiod-serve@.service's ExecStart, paths moved to a temp dir: the instance's file, crash recovery, the status", async () => {
    const unit = readFileSync(path.join(root, 'contrib/systemd/vfiod-serve@.service'), 'utf8');
    const execStart = /^ExecStart=(.*)$/m.exec(unit)![1]!;
    const instanceDir = path.join(dir, 'etc-serve');
    const runDir = path.join(dir, 'run-vfiod');
    mkdirSync(instanceDir, { recursive: true });
    mkdirSync(runDir, { recursive: true });
    const disk = path.join(dir, 'vm1.img');
    writeFileSync(path.join(instanceDir, 'vm1.yaml'), `serve:\n  namespace: file:${disk}?size=4M\n  json: true\n`);
    const argv = execStart
      .replaceAll('%i', 'vm1')
      .replaceAll('/etc/vfiod/serve', instanceDir)
      .replaceAll('/run/vfiod', runDir)
      .split(/\s+/);
    expect(argv.slice(0, 2)).toEqual(['/usr/bin/vfiod', 'serve']);
    const holder = start(argv.slice(1));
    const line = await waitFor(() => holder.stdout().split('\n')[0] || null, 'the status line of the data plane', DEADLINE_MS);
    const status = JSON.parse(line) as ServingStatus;
    expect(status.controllers.map((controller) => controller.socket)).toEqual([path.join(runDir, 'vm1.sock')]);
    expect(status.controllers[0]!.namespaces[0]!.uri).toBe(`file:${disk}?size=4M`);
    // The data plane is the holder's child, started with the file's options as flags and --no-config.
    expect(status.pid).not.toBe(holder.proc.pid);
    const cmdline = readFileSync(`/proc/${status.pid}/cmdline`, 'utf8').split('\0');
    expect(cmdline).toEqual(expect.arrayContaining(['--no-config', `--namespace=file:${disk}?size=4M`, '--json', '--data-plane']));
    holder.proc.kill('SIGTERM');
    expect(await holder.exited).toBe(0);
  }, 120_000);
});
