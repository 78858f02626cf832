/**
 * Generates the TypeScript types of the control API (src/daemon/generated/) from proto/vfiod/v1/*.proto with
 * proto-loader-gen-types, the generator of the @grpc/proto-loader that loads the same files at run time, given the
 * loader's own options: the types describe exactly the objects handlers receive and return.
 * `npx tsx scripts/proto-types.ts` writes them; `--check` only says whether the committed ones are up to date
 * (exit 1 if not). test/unit/daemon/proto-types.test.ts fails when they differ.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { LOADER_OPTIONS, PROTO_FILES, PROTO_ROOT } from '../src/daemon/proto.js';

export const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
export const GENERATED_DIR = path.join(REPO_ROOT, 'src', 'daemon', 'generated');

/** The generator's flags for LOADER_OPTIONS (the run-time options are the one source of both). */
function generatorFlags(): string[] {
  const o = LOADER_OPTIONS;
  if (o.longs !== Number || o.enums !== String) throw new Error('scripts/proto-types.ts knows only longs: Number and enums: String');
  return [...(o.keepCase ? ['--keepCase'] : []), '--longs=Number', '--enums=String', ...(o.defaults ? ['--defaults'] : []), ...(o.oneofs ? ['--oneofs'] : [])];
}

/** Runs the generator into `outDir`. */
export function generateProtoTypes(outDir: string): void {
  const generator = createRequire(import.meta.url).resolve('@grpc/proto-loader/build/bin/proto-loader-gen-types.js');
  execFileSync(
    process.execPath,
    [generator, ...generatorFlags(), '--grpcLib=@grpc/grpc-js', '--includeComments', '--importFileExtension=.js', '-I', PROTO_ROOT, '-O', outDir, ...PROTO_FILES],
    { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  // The generator names each file's proto by its absolute path; repository-relative, the output is the same in
  // every checkout (CI's clean clone included), so the up-to-date check compares only what the protos say.
  const absolute = `// Original file: ${REPO_ROOT}/`;
  for (const [name, text] of readTree(outDir)) {
    if (text.includes(absolute)) writeFileSync(path.join(outDir, name), text.split(absolute).join('// Original file: '));
  }
}

/** Every file under `dir`, relative path -> contents. */
export function readTree(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = path.join(entry.parentPath, entry.name);
    files.set(path.relative(dir, full), readFileSync(full, 'utf8'));
  }
  return files;
}

/** The files that differ between the committed types and a fresh generation (empty: up to date). */
export function staleProtoTypes(): string[] {
  const fresh = mkdtempSync(path.join(os.tmpdir(), 'vfiod-proto-types-'));
  try {
    generateProtoTypes(fresh);
    const want = readTree(fresh);
    const have = readTree(GENERATED_DIR);
    const names = new Set([...want.keys(), ...have.keys()]);
    return [...names].filter((name) => want.get(name) !== have.get(name)).sort();
  } finally {
    rmSync(fresh, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  if (process.argv.includes('--check')) {
    const stale = staleProtoTypes();
    process.stdout.write(stale.length ? `out of date (${stale.join(', ')}): run npx tsx scripts/proto-types.ts\n` : 'up to date\n');
    process.exit(stale.length ? 1 : 0);
  }
  rmSync(GENERATED_DIR, { recursive: true, force: true });
  generateProtoTypes(GENERATED_DIR);
  process.stdout.write(`wrote ${GENERATED_DIR}\n`);
}
