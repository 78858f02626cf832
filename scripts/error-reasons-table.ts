/**
 * Writes the error reasons table of docs/daemon.md from src/util/error-reasons.ts (between the error-reasons markers).
 * `npx tsx scripts/error-reasons-table.ts`; `--check` only says whether it is up to date (exit 1 if not).
 * test/unit/daemon/error-reasons.test.ts fails when the two differ.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { reasonsTable } from '../src/util/error-reasons.js';

const file = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'docs', 'daemon.md');
const doc = readFileSync(file, 'utf8');
const begin = doc.indexOf('<!-- error-reasons:begin');
const end = doc.indexOf('<!-- error-reasons:end -->');
if (begin < 0 || end < begin) {
  process.stderr.write(`${file}: no <!-- error-reasons:begin ... --> / <!-- error-reasons:end --> markers\n`);
  process.exit(2);
}
const afterBegin = doc.indexOf('\n', begin) + 1;
const next = `${doc.slice(0, afterBegin)}\n${reasonsTable()}\n${doc.slice(end)}`;
if (process.argv.includes('--check')) {
  process.stdout.write(next === doc ? 'up to date\n' : 'out of date: run npx tsx scripts/error-reasons-table.ts\n');
  process.exit(next === doc ? 0 : 1);
}
writeFileSync(file, next);
process.stdout.write(next === doc ? 'unchanged\n' : `wrote ${file}\n`);
