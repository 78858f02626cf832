/**
 * The reasons of src/util/error-reasons.ts are the single source of truth: docs/daemon.md's table is generated from
 * them, every reason in it is used somewhere in src/, and every error site uses a reason from it with one of its gRPC
 * codes and metadata keys it declares (read from the source with the TypeScript parser).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { CONTEXT_METADATA, ERROR_REASONS, type Reason, reasonsTable, snakeCase } from '../../../src/util/error-reasons.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..');
const BEGIN = '<!-- error-reasons:begin (generated from src/util/error-reasons.ts: npx tsx scripts/error-reasons-table.ts) -->';
const END = '<!-- error-reasons:end -->';

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) return sourceFiles(file);
    return file.endsWith('.ts') ? [file] : [];
  });
}

interface Site {
  file: string;
  line: number;
  code: string | undefined;
  reason: string | undefined;
  keys: string[];
}

/** `new VfiodError(code, message, { reason, ...facts })`, `new DeviceError(...)` and `invalid(message, field, reason, facts)`. */
function errorSites(): Site[] {
  const sites: Site[] = [];
  for (const file of sourceFiles(path.join(root, 'src'))) {
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
    const literal = (node: ts.Node | undefined): string | undefined => (node && ts.isStringLiteralLike(node) ? node.text : undefined);
    const keysOf = (node: ts.Node | undefined): { reason: string | undefined; keys: string[] } => {
      if (!node || !ts.isObjectLiteralExpression(node)) return { reason: undefined, keys: [] };
      let reason: string | undefined;
      const keys: string[] = [];
      for (const p of node.properties) {
        if (!p.name || !(ts.isIdentifier(p.name) || ts.isStringLiteral(p.name))) continue;
        const name = p.name.text;
        if (name === 'reason') reason = ts.isPropertyAssignment(p) ? literal(p.initializer) : undefined;
        else if (name !== 'violations') keys.push(name);
      }
      return { reason, keys };
    };
    const visit = (node: ts.Node): void => {
      const line = source.getLineAndCharacterOfPosition(node.getStart()).line + 1;
      if (ts.isNewExpression(node) && ts.isIdentifier(node.expression) && ['VfiodError', 'DeviceError'].includes(node.expression.text)) {
        const args = node.arguments ?? [];
        sites.push({ file, line, code: literal(args[0]), ...keysOf(args[2]) });
      }
      if (ts.isCallExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'invalid' && node.arguments.length >= 3) {
        sites.push({ file, line, code: 'INVALID_ARGUMENT', reason: literal(node.arguments[2]), keys: ['field', ...keysOf(node.arguments[3]).keys] });
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return sites;
}

describe('error reasons', () => {
  it('docs/daemon.md has the table generated from src/util/error-reasons.ts', () => {
    const doc = readFileSync(path.join(root, 'docs/daemon.md'), 'utf8');
    const begin = doc.indexOf(BEGIN);
    const end = doc.indexOf(END);
    expect(begin, `docs/daemon.md lacks ${BEGIN}`).toBeGreaterThan(0);
    expect(doc.slice(begin + BEGIN.length, end).trim(), 'regenerate it: npx tsx scripts/error-reasons-table.ts').toBe(reasonsTable().trim());
  });

  it('every reason in the table is used in src/, and every reason used is in the table', () => {
    const text = sourceFiles(path.join(root, 'src'))
      .filter((file) => !file.endsWith(path.join('util', 'error-reasons.ts')))
      .map((file) => readFileSync(file, 'utf8'))
      .join('\n');
    const unused = Object.keys(ERROR_REASONS).filter((reason) => !text.includes(`'${reason}'`));
    expect(unused, 'reasons no error site uses').toEqual([]);
    const unknown = errorSites().filter((s) => s.reason !== undefined && !(s.reason in ERROR_REASONS));
    expect(unknown.map((s) => `${s.file}:${s.line} ${s.reason}`)).toEqual([]);
  });

  it('every error site gives its reason a code and metadata keys the table declares', () => {
    const sites = errorSites();
    expect(sites.length).toBeGreaterThan(100);
    const wrong: string[] = [];
    for (const site of sites) {
      const where = `${path.relative(root, site.file)}:${site.line}`;
      if (site.reason === undefined) continue; // passes on another error's details (the type checker sees to those)
      const spec = ERROR_REASONS[site.reason as Reason];
      if (site.code !== undefined && !(spec.codes as readonly string[]).includes(site.code)) wrong.push(`${where}: ${site.reason} with ${site.code}, not ${spec.codes.join('/')}`);
      const allowed = new Set<string>([...spec.metadata, ...CONTEXT_METADATA, 'field']);
      for (const key of site.keys) if (!allowed.has(snakeCase(key))) wrong.push(`${where}: ${site.reason} carries ${snakeCase(key)}, not in its metadata`);
    }
    expect(wrong).toEqual([]);
  });

  it('reasons are UPPER_SNAKE_CASE and metadata keys snake_case', () => {
    for (const [reason, spec] of Object.entries(ERROR_REASONS)) {
      expect(reason).toMatch(/^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/);
      for (const key of spec.metadata) expect(key).toMatch(/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/);
    }
  });
});
