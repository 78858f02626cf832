/**
 * `--log-format` of the long-running commands, through the real bin/vfiod.js: JSON lines when stderr is not a
 * terminal (what a journal or a pipe gets), text lines with --log-format text (the worker thread's lines too), and a
 * usage error for anything else. Uses the compiled dist/.
 */
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { temporaryDir } from '../helpers/common.js';
import { bin, children, isListening, serve } from '../helpers/vfiod-process.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const skipReason = existsSync(path.join(root, 'dist', 'cli', 'main.js')) ? undefined : 'dist/ is not built (npm test runs tsc first)';
if (skipReason) console.warn(`log format tests skipped: ${skipReason}`);

const TEXT_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO |WARN |ERROR) \S.*$/;

afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

describe.skipIf(skipReason)('--log-format', () => {
  let dir: string;
  beforeAll(() => {
    dir = temporaryDir('vfiod-log-format-');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('serve: JSON lines by default on a pipe, with one socket field and no worker field', async () => {
    const socketPath = path.join(dir, 'json.sock');
    // The metrics endpoint's line comes last, once the signal handlers are about to be set: SIGTERM after it is handled.
    const served = serve(['--socket', socketPath, '--namespace', 'memory:1M', '--metrics', path.join(dir, 'json-metrics.sock')]);
    const listening = await served.waitFor(isListening, 'the controller listening');
    await served.waitFor((line) => line['msg'] === 'metrics endpoint listening', 'the metrics endpoint');
    served.process.kill('SIGTERM');
    expect(await served.exited, JSON.stringify(served.lines)).toBe(0);
    expect(served.lines.filter((line) => 'raw' in line)).toEqual([]);
    for (const line of served.lines) expect(Object.keys(line).slice(0, 3)).toEqual(['time', 'level', 'msg']);
    expect(served.lines.some((line) => 'worker' in line)).toBe(false);
    expect(listening).toMatchObject({ component: 'controller', socket: socketPath });
  });

  it('serve --log-format text: every line, the controller thread\'s included, is a text line', async () => {
    const socketPath = path.join(dir, 'text.sock');
    const served = serve(['--socket', socketPath, '--namespace', 'memory:1M', '--log-format', 'text', '--metrics', path.join(dir, 'text-metrics.sock')]);
    const rawMatches = (pattern: RegExp) => (line: Record<string, unknown>): boolean => typeof line['raw'] === 'string' && pattern.test(line['raw']);
    await served.waitFor(rawMatches(/ listening component=controller /), 'the controller listening (text)');
    await served.waitFor(rawMatches(/ metrics endpoint listening component=metrics address=/), 'the metrics endpoint (text)');
    served.process.kill('SIGTERM');
    expect(await served.exited).toBe(0);
    const raw = served.lines.map((line) => String(line['raw']));
    expect(raw.length).toBeGreaterThan(2);
    for (const line of raw) expect(line).toMatch(TEXT_LINE);
    expect(raw.find((line) => line.includes('listening component=controller '))).toContain(` socket=${socketPath} `);
    expect(raw.some((line) => / INFO  stopped component=/.test(line) || / INFO  shutting down component=serve signal=SIGTERM/.test(line))).toBe(true);
  });

  it('refuses another format with a usage error (exit 2), serve, daemon and bench alike', async () => {
    for (const args of [
      ['serve', '--socket', path.join(dir, 'x.sock'), '--log-format', 'yaml'],
      ['daemon', '--socket', path.join(dir, 'd.sock'), '--log-format', 'yaml'],
      ['bench', '--config', path.join(dir, 'none.yaml'), '--log-format', 'yaml'],
    ]) {
      const proc = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
      const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
      expect(code).toBe(2);
      expect(stderr).toContain("--log-format must be text or json, not 'yaml'");
    }
  });
});
