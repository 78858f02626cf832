#!/usr/bin/env node
// The `prepack` script (before `npm pack` / `npm publish`): puts this machine's native addon into
// prebuilds/<platform>-<arch>/vfiod_native.node, which the tarball ships and an install uses instead of compiling
// (scripts/install-native.mjs). build/Release is rebuilt with node-gyp first when it is missing or older than
// native/ or binding.gyp (with --no-build, build/Release is copied as it is: the package test does that, since a
// rebuild would replace the addon under the tests running from it). (`prepare` compiles dist/ right after this.)
//
// The addon is N-API 8 (any Node >= 20) and links only glibc and libstdc++: it loads on any linux-x64 whose glibc and
// libstdc++ are at least what it was built against (docs/native.md); elsewhere the install builds it from source.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const built = path.join(root, 'build', 'Release', 'vfiod_native.node');
const target = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'vfiod_native.node');

const sources = [path.join(root, 'binding.gyp'), ...readdirSync(path.join(root, 'native')).map((name) => path.join(root, 'native', name))];
const newestSource = Math.max(...sources.map((file) => statSync(file).mtimeMs));
if (!existsSync(built) || (statSync(built).mtimeMs < newestSource && !process.argv.includes('--no-build'))) {
  console.log('vfiod prebuild: build/Release is missing or older than native/; node-gyp rebuild');
  const result = spawnSync('node-gyp', ['rebuild', '--jobs', 'max'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`vfiod prebuild: node-gyp rebuild failed${result.error ? ` (${result.error.message})` : ''}`);
    process.exit(1);
  }
}
mkdirSync(path.dirname(target), { recursive: true });
// Copied next to its place and renamed: a concurrent pack or a test loading it never sees half a file.
const partial = `${target}.${process.pid}.tmp`;
copyFileSync(built, partial);
renameSync(partial, target);
console.log(`vfiod prebuild: ${path.relative(root, target)} (${statSync(target).size} bytes)`);
