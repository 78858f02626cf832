/**
 * The configuration file, /etc/vfiod/vfiod.yaml (docs/config.md): a `daemon:` and a `serve:` section whose keys are
 * the long options of the command (flags.ts). It is validated by a JSON Schema derived from the option tables, with
 * errors at the line and column of the value, then turned into command-line options put before those given: the
 * command line overrides the file, and the command's own parser checks both alike.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { Ajv, type ErrorObject } from 'ajv';
import { isMap, isPair, isScalar, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { CONFIG_SECTIONS, type ConfigSection, type FlagSpec, type FlagTable, withoutOptions } from './flags.js';

export const DEFAULT_CONFIG_PATH = '/etc/vfiod/vfiod.yaml';

/** Files larger than this are not configuration files. */
const MAX_CONFIG_BYTES = 1 << 20;

/** What is wrong with a configuration file: one line per problem, each `path:line:col: key: message`. */
export class ConfigFileError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
  }
}

export type SectionValues = Record<string, boolean | number | string | string[]>;

/** A configuration file that passed its schema. */
export interface ConfigFile {
  path: string;
  sections: Partial<Record<ConfigSection, SectionValues>>;
  /** `path:line:col` of a key of a section. */
  location(section: ConfigSection, key: string): string;
}

/** The JSON Schema of a section: a mapping of the options settable in the file (a repeatable one: a value or a list). */
function sectionSchema(table: FlagTable): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(table)) {
    if (!spec.file) continue;
    properties[name] = spec.multiple ? { anyOf: [spec.file.schema, { type: 'array', minItems: 1, items: spec.file.schema }] } : spec.file.schema;
  }
  return { type: ['object', 'null'], additionalProperties: false, properties };
}

/** The JSON Schema of the whole file (docs/config.md lists its keys). */
export const CONFIG_SCHEMA = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: Object.fromEntries(Object.entries(CONFIG_SECTIONS).map(([section, table]) => [section, sectionSchema(table)])),
};

let validator: ReturnType<Ajv['compile']> | undefined;

/** Reads and validates a configuration file; throws ConfigFileError with every problem found. */
export function readConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    const stats = fs.statSync(path);
    if (!stats.isFile()) throw new Error('not a regular file');
    if (stats.size > MAX_CONFIG_BYTES) throw new Error(`${stats.size} bytes, more than a configuration file's ${MAX_CONFIG_BYTES}`);
    text = fs.readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigFileError([`${path}: cannot read the configuration file: ${(error as Error).message}`]);
  }
  return parseConfigText(path, text);
}

/** Validates the text of a configuration file (`path` names it in the errors). */
export function parseConfigText(path: string, text: string): ConfigFile {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number): string => {
    const { line, col } = lines.linePos(offset);
    return `${path}:${line}:${col}`;
  };
  if (doc.errors.length) throw new ConfigFileError(doc.errors.map((error) => `${at(error.pos[0])}: YAML: ${error.message}`));
  const data = (doc.toJS() ?? {}) as Record<string, unknown>;
  validator ??= new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(CONFIG_SCHEMA);
  if (!validator(data)) throw new ConfigFileError(describeErrors(validator.errors ?? [], doc, at));
  const sections: ConfigFile['sections'] = {};
  for (const section of Object.keys(CONFIG_SECTIONS) as ConfigSection[]) {
    if (data[section] !== undefined) sections[section] = (data[section] ?? {}) as SectionValues;
  }
  return {
    path,
    sections,
    location: (section, key) => {
      const node = keyNode(doc, [section], key);
      return node?.range ? at(node.range[0]) : path;
    },
  };
}

/** One message per place: what the option's value must be (flags.ts), or which key is unknown. */
function describeErrors(errors: ErrorObject[], doc: Document, at: (offset: number) => string): string[] {
  const problems = new Map<string, { offset: number; text: string }>();
  // Deepest first: a bad item of a list is reported at the item, not as "not a list" (anyOf tries both).
  const deepestFirst = [...errors].sort((a, b) => b.instancePath.split('/').length - a.instancePath.split('/').length);
  for (const error of deepestFirst) {
    const where = error.instancePath.split('/').slice(1).map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'));
    const [section, key] = where;
    if (error.keyword === 'additionalProperties') {
      const unknown = String((error.params as { additionalProperty: string }).additionalProperty);
      const node = keyNode(doc, where, unknown);
      const spec = section === undefined ? undefined : (CONFIG_SECTIONS[section as ConfigSection] as FlagTable | undefined)?.[unknown];
      const why = section === undefined
        ? `unknown section '${unknown}' (the sections are ${Object.keys(CONFIG_SECTIONS).join(' and ')})`
        : spec?.commandLineOnly
          ? `'${unknown}' belongs on the command line only (${spec.commandLineOnly})`
          : `unknown key '${unknown}'${suggestion(unknown, section as ConfigSection)}`;
      const offset = node?.range?.[0] ?? 0;
      problems.set(`${error.instancePath}#${unknown}`, { offset, text: `${at(offset)}: ${section ?? 'file'}: ${why}` });
      continue;
    }
    // The first error of a place is the one to report (anyOf adds one for each of its alternatives), and a list with
    // bad items is reported at the items.
    const place = where.join('/');
    if (problems.has(place) || [...problems.keys()].some((seen) => seen.startsWith(`${place}/`))) continue;
    const node = doc.getIn(where, true) as Node | undefined;
    const offset = node?.range?.[0] ?? 0;
    let message: string;
    if (key === undefined) message = `${section ?? 'file'}: must be a mapping of ${section ? 'options to values' : 'sections (daemon:, serve:)'}`;
    else {
      const spec = (CONFIG_SECTIONS[section as ConfigSection] as FlagTable)[key] as FlagSpec;
      const item = where.length > 2;
      message = `${key}: ${spec.file!.expects}${spec.multiple && !item ? ', or a list of such values' : ''}`;
    }
    problems.set(place, { offset, text: `${at(offset)}: ${message}` });
  }
  return [...problems.values()].sort((a, b) => a.offset - b.offset).map((problem) => problem.text);
}

/** The key node of `key` in the mapping at `where`. */
function keyNode(doc: Document, where: string[], key: string): Node | undefined {
  const map = where.length ? doc.getIn(where, true) : doc.contents;
  if (!isMap(map)) return undefined;
  for (const pair of map.items) if (isPair(pair) && isScalar(pair.key) && String(pair.key.value) === key) return pair.key;
  return undefined;
}

/** " (did you mean 'socket'?)" for a key one or two edits from an option of the section. */
function suggestion(key: string, section: ConfigSection): string {
  const near = Object.entries(CONFIG_SECTIONS[section] as FlagTable).find(([name, spec]) => spec.file && editDistance(name, key) <= 2)?.[0];
  return near ? ` (did you mean '${near}'?)` : '';
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = row;
  }
  return previous[b.length]!;
}

/** A section's values as command-line options (`--name=value`, so a value starting with '-' stays a value). */
export function sectionArgv(values: SectionValues, skip: ReadonlySet<string> = new Set()): string[] {
  const argv: string[] = [];
  for (const [name, value] of Object.entries(values)) {
    if (skip.has(name)) continue;
    if (value === true) argv.push(`--${name}`);
    else if (value !== false) for (const item of Array.isArray(value) ? value : [value]) argv.push(`--${name}=${item}`);
  }
  return argv;
}

/** The command line of a command once its section of the configuration file is applied. */
export interface Configured {
  argv: string[];
  /** The file read, and the options that came from it. */
  file?: ConfigFile;
  fromFile: string[];
}

/**
 * Puts the options of the configuration file (`--config <file>`, else /etc/vfiod/vfiod.yaml when it exists) before
 * the command line, leaving out those the command line gives: the command line wins, a repeatable option included.
 * The result starts with --no-config, so a process started with it (the crash-recovery data plane, the successor of
 * a live upgrade) runs with the same options without reading the file again. Help and --no-config skip the file; a
 * command line the parser rejects is returned as it is for the command to report.
 */
export function applyConfigFile(section: ConfigSection, argv: string[], defaultPath = DEFAULT_CONFIG_PATH): Configured {
  let given;
  try {
    given = parseArgs({ args: argv, options: CONFIG_SECTIONS[section], allowPositionals: false, strict: true, tokens: true });
  } catch {
    return { argv, fromFile: [] };
  }
  const values = given.values as Record<string, unknown>;
  if (values['help'] || values['no-config']) return { argv, fromFile: [] };
  const path = values['config'] as string | undefined;
  if (path === undefined && !fs.existsSync(defaultPath)) return { argv: withoutOptions(argv, given.tokens, ['config']), fromFile: [] };
  const file = readConfigFile(path ?? defaultPath);
  const fromSection = file.sections[section] ?? {};
  const onCommandLine = new Set(given.tokens.filter((token) => token.kind === 'option').map((token) => (token as { name: string }).name));
  const fileArgv = sectionArgv(fromSection, onCommandLine);
  return {
    argv: ['--no-config', ...fileArgv, ...withoutOptions(argv, given.tokens, ['config'])],
    file,
    fromFile: Object.keys(fromSection).filter((name) => !onCommandLine.has(name)),
  };
}

/**
 * A command's complaint about its options, at the place in the file of the first option it names that came from
 * the file, or whose value it quotes: `/etc/vfiod/vfiod.yaml:3:3: tcp: refusing plain TCP on ...`. Unchanged when it names none.
 */
export function locateOptionError(section: ConfigSection, configured: Configured, message: string): string {
  if (!configured.file) return message;
  const at = (name: string): string => `${configured.file!.location(section, name)}: ${name}: ${message}`;
  for (const match of message.matchAll(/--([a-z][a-z0-9-]*)/g)) if (configured.fromFile.includes(match[1]!)) return at(match[1]!);
  // Or the first whose value it quotes ("refusing plain TCP on 0.0.0.0:50051").
  const values = configured.file.sections[section] ?? {};
  for (const name of configured.fromFile) {
    const value = values[name];
    if ((Array.isArray(value) ? value : [value]).some((item) => typeof item === 'string' && item.length >= 3 && message.includes(item))) return at(name);
  }
  return configured.fromFile.length ? `${message} (with the options of ${configured.file.path})` : message;
}
