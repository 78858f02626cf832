/**
 * `mkdir -p` that always ends: Node's own recursive mkdir (fs.mkdirSync(dir, { recursive: true }), Node 20) loops
 * for ever on a path under a filesystem that refuses new entries with ENOENT, such as /proc/x/y, which would hang
 * `vfiod serve --socket /proc/x/a.sock`. This walks down from the first missing ancestor instead, and says which
 * directory could not be made and why.
 */
import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';

export function makeDirectory(dir: string, mode = 0o755): void {
  const target = path.resolve(dir);
  const missing: string[] = [];
  for (let current = target; ; current = path.dirname(current)) {
    let exists = false;
    try {
      if (!statSync(current).isDirectory()) throw new Error(`cannot create ${target}: ${current} exists and is not a directory`);
      exists = true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') throw Object.assign(new Error(`cannot create ${target}: a part of ${current} exists and is not a directory`), { code });
      if (code !== 'ENOENT') throw error;
    }
    if (exists) break;
    missing.unshift(current);
    if (current === path.dirname(current)) break;
  }
  for (const current of missing) {
    try {
      mkdirSync(current, { mode });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && statSync(current).isDirectory()) continue;
      throw Object.assign(new Error(`cannot create directory ${current}${current === target ? '' : ` (for ${target})`}: ${code ?? (error as Error).message}`), { code });
    }
  }
}
