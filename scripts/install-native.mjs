#!/usr/bin/env node
// The `install` script (runs on `npm install` / `npm ci` here and on every install of the package): makes sure the
// native addon can be loaded.
//
// - In an installed package (no .git next to package.json), the prebuilt addon shipped in the tarball
//   (prebuilds/<platform>-<arch>/vfiod_native.node) is used when it loads here: nothing is compiled.
// - Otherwise (a checkout, another platform, a prebuilt the C library or Node refuses, or
//   --build-from-source / VFIOD_BUILD_FROM_SOURCE=1) it is built from native/ with node-gyp into build/Release,
//   which src/native/index.ts tries first. That needs g++, make and python3; node-gyp is the one npm runs install
//   scripts with (npm ships it), the headers come from node-addon-api (a dependency for that reason only).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const prebuilt = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'vfiod_native.node');
const fromSource =
  process.env.npm_config_build_from_source === 'true' ||
  process.env.VFIOD_BUILD_FROM_SOURCE === '1' ||
  existsSync(path.join(root, '.git'));

function prebuiltLoads() {
  if (!existsSync(prebuilt)) return `no ${path.relative(root, prebuilt)}`;
  try {
    createRequire(import.meta.url)(prebuilt);
    return undefined;
  } catch (error) {
    return `${path.relative(root, prebuilt)} does not load here: ${error.message.split('\n')[0]}`;
  }
}

if (!fromSource) {
  const why = prebuiltLoads();
  if (why === undefined) {
    console.log(`vfiod: using the prebuilt native addon (${path.relative(root, prebuilt)})`);
    process.exit(0);
  }
  console.log(`vfiod: ${why}; building the native addon from source (node-gyp: needs g++, make, python3)`);
}

// npm puts its own node-gyp on PATH for install scripts; a checkout also has the devDependency.
const result = spawnSync('node-gyp', ['rebuild', '--jobs', 'max'], { cwd: root, stdio: 'inherit' });
if (result.error) {
  console.error(`vfiod: cannot run node-gyp (${result.error.message}); run this through npm, or install node-gyp`);
  process.exit(1);
}
process.exit(result.status ?? 1);
