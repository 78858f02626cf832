#!/usr/bin/env node
// `npm test`: type-check (src, test, bench) and build, run vitest, then print one plain summary line ("N passed, N failed, N skipped")
// that CI systems read. Exits with vitest's status.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const results = path.join(root, 'build', 'test-results.json');
const run = (command, args) => spawnSync(command, args, { cwd: root, stdio: 'inherit' }).status ?? 1;

if (run('npx', ['tsc', '-p', 'tsconfig.json']) !== 0) process.exit(1);
// Tests and benchmarks are type-checked too (vitest strips types without checking them).
if (run('npx', ['tsc', '-p', 'tsconfig.test.json']) !== 0) process.exit(1);
rmSync(results, { force: true });
const status = run('npx', [
  'vitest', 'run',
  '--reporter=default', '--reporter=json', `--outputFile.json=${results}`,
  ...process.argv.slice(2),
]);
try {
  const report = JSON.parse(readFileSync(results, 'utf8'));
  const skipped = report.numPendingTests + report.numTodoTests;
  console.log(`\nTests: ${report.numPassedTests} passed, ${report.numFailedTests} failed, ${skipped} skipped`);
} catch (error) {
  console.log(`\nTests: no summary (${error.message})`);
}
process.exit(status);
