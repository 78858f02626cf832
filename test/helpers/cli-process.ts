/** `bin/vfiod.js <args>` in a child process, its stdout and stderr collected: for tests of whole commands. */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const vfiodBin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'vfiod.js');

export interface CliChild {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

/** `detached`: in a process group of its own, so a test can end it with everything it started. */
export function startCli(args: string[], options: { detached?: boolean } = {}): CliChild {
  const proc = spawn(process.execPath, [vfiodBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: options.detached ?? false });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', resolve));
  return { proc, stdout: () => stdout, stderr: () => stderr, exited };
}
