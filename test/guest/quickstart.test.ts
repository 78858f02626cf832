/**
 * docs/quickstart.md, run as written: every ```sh block, in order, in one `bash -e` shell started in the repository
 * with VFIOD_DIR pointing at a temporary directory; after each block, the lines of the ```text block that follows it
 * must appear in its output in order (whitespace runs collapsed, `…` = any text). The doc boots a real VM: QEMU
 * from scripts/qemu-vfio-user.sh, OVMF booting from the vfiod namespace, a Linux guest that writes into it.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Output, REPO, uefiGuestSetup } from '../../testbed/uefi.js';

interface Block {
  /** 1-based number among the sh blocks. */
  index: number;
  script: string;
  /** Lines of the text block after it (none: nothing checked but the exit status). */
  expected: string[];
  line: number;
}

/** The sh blocks of a markdown document, each with the text block that follows it (before the next sh block). */
function shellBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  const fence = /^```(\w*)\n([\s\S]*?)^```\s*$/gm;
  for (let match = fence.exec(markdown); match; match = fence.exec(markdown)) {
    const [, info, body] = match;
    const line = markdown.slice(0, match.index).split('\n').length;
    if (info === 'sh') blocks.push({ index: blocks.length + 1, script: body!, expected: [], line });
    else if (info === 'text' && blocks.length && !blocks[blocks.length - 1]!.expected.length) {
      blocks[blocks.length - 1]!.expected = body!.split('\n').map((l) => l.trim()).filter(Boolean);
    }
  }
  return blocks;
}

/** Console text as lines to compare: no escape sequences or carriage returns, whitespace runs as one space. */
function normalizedLines(text: string): string[] {
  return text
    // eslint-disable-next-line no-control-regex
    .replace(/\x1b\[[0-9;=?]*[A-Za-z]/g, '')
    .split(/\r?\n|\r/)
    .map((line) => line.replace(/\s+/g, ' ').trim())
    .filter(Boolean);
}

/** The expected lines not found in `output` in order (an expected line must match a whole output line). */
function missingLines(expected: string[], output: string): string[] {
  const lines = normalizedLines(output);
  const missing: string[] = [];
  let at = 0;
  for (const want of expected) {
    const pattern = new RegExp(`^${want.replace(/\s+/g, ' ').split('…').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    const found = lines.findIndex((line, i) => i >= at && pattern.test(line));
    if (found < 0) missing.push(want);
    else at = found + 1;
  }
  return missing;
}

const DOC = path.join(REPO, 'docs', 'quickstart.md');
const blocks = shellBlocks(readFileSync(DOC, 'utf8'));
const unavailable =
  process.getuid?.() !== 0 ? 'the quickstart installs packages and builds the QEMU tree as root (run as root; CI does)'
  // The tools and kernel for the guest disk, and a QEMU with vfio-user-pci (scripts/qemu-vfio-user.sh, as the doc)
  : 'reason' in uefiGuestSetup() ? (uefiGuestSetup() as { reason: string }).reason
  : !existsSync(path.join(REPO, 'dist', 'cli', 'main.js')) ? 'dist/ not built (npx tsc -p tsconfig.json)'
  : undefined;
if (unavailable) console.log(`skipping the quickstart test: ${unavailable}`);

const DEADLINE_MS = 20 * 60_000;

describe('docs/quickstart.md parsing', () => {
  it('has the blocks the test runs, each with the output it checks', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(5);
    const boot = blocks.find((block) => block.script.includes('vfio-user-pci') && block.script.includes('"$QEMU" -accel'));
    expect(boot?.expected.some((line) => line.includes('nvme0n1'))).toBe(true);
  });

  it('compares lines in order, with … for any text and whitespace runs as one', () => {
    const output = '\x1b[2JBdsDxe: starting Boot0001\r\nNAME   SIZE\nnvme0n1    1G  disk \n';
    expect(missingLines(['BdsDxe: starting …', 'nvme0n1 1G disk'], output)).toEqual([]);
    expect(missingLines(['nvme0n1 1G disk', 'BdsDxe: starting …'], output)).toEqual(['BdsDxe: starting …']);
    expect(missingLines(['nvme0n1 2G disk'], output)).toEqual(['nvme0n1 2G disk']);
    expect(missingLines(['nvme0n1'], output)).toEqual(['nvme0n1']); // whole lines only
  });
});

describe.skipIf(unavailable !== undefined)('docs/quickstart.md, run as written', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-quickstart-'));
  let child: ChildProcess | undefined;
  let output: Output | undefined;
  let ok = false;
  const started = Date.now();

  afterAll(() => {
    // The shell leads its own process group: whatever it left behind (vfiod in the background after a failed block,
    // QEMU) goes with it.
    if (child?.pid) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    console.log(`quickstart: ${((Date.now() - started) / 1000).toFixed(0)} s`);
    if (ok && process.env['VFIOD_TESTBED_KEEP'] !== '1') rmSync(dir, { recursive: true, force: true });
    else console.log(`quickstart: directory kept: ${dir}`);
  });

  it('every sh block runs and prints what the doc says', async () => {
    const marker = (index: number): string => `@@quickstart block ${index}@@`;
    const script = ['set -e', ...blocks.flatMap((block) => [`echo '${marker(block.index)}'`, block.script]), `echo '${marker(0)}'`].join('\n');
    child = spawn('bash', ['-c', script], {
      cwd: REPO,
      env: { ...process.env, VFIOD_DIR: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    output = new Output('quickstart', child, path.join(dir, 'quickstart.log'));
    const deadline = setTimeout(() => {
      output!.text += `\n[quickstart: no end after ${DEADLINE_MS / 1000} s: killed]\n`;
      process.kill(-child!.pid!, 'SIGKILL');
    }, DEADLINE_MS);
    const code = await output.exited;
    clearTimeout(deadline);
    const text = output.text;
    for (const block of blocks) {
      const start = text.indexOf(`${marker(block.index)}\n`);
      const where = `docs/quickstart.md:${block.line} (block ${block.index})`;
      expect(start, `${where} did not run; output:\n${output.tail(60)}`).toBeGreaterThanOrEqual(0);
      const next = blocks.map((b) => b.index).concat(0).find((i) => i > block.index || i === 0)!;
      const end = text.indexOf(marker(next), start);
      const blockOutput = text.slice(start, end < 0 ? undefined : end);
      expect(missingLines(block.expected, blockOutput), `${where}: missing output lines; it printed:\n${blockOutput}`).toEqual([]);
    }
    expect(code, `the shell failed; output:\n${output.tail(60)}`).toBe(0);
    ok = true;
  }, DEADLINE_MS + 60_000);
});
