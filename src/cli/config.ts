/**
 * `vfiod config check [--config <file>]`: validates the configuration file (docs/config.md) as `vfiod daemon` and
 * `vfiod serve` would read it, and prints the effective configuration, or what is wrong. Exit codes: 0 fine, 2 wrong.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { type ConfigFile, ConfigFileError, DEFAULT_CONFIG_PATH, locateOptionError, readConfigFile, sectionArgv } from '../config/file.js';
import type { ConfigSection } from '../config/flags.js';
import { errorMessage } from '../util/errors.js';
import { parseServeArgs } from './serve.js';
import { type ClientDeps, EXIT, noPositionals, subcommandHelp, UsageError } from './common.js';

export const CONFIG_USAGE = `Usage: vfiod config check [--config <file>]

Checks the configuration file (default ${DEFAULT_CONFIG_PATH}): its YAML, every key and value of its daemon: and
serve: sections (errors say file:line:column), and the rules between options that 'vfiod daemon' and 'vfiod serve'
apply at start. Prints the effective configuration (the file's options with vfiod's defaults filled in) on stdout, or
what is wrong on stderr. Exit codes: 0 fine, 2 wrong. See docs/config.md.
`;

export async function runConfig(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const out = deps.stdout ?? ((text: string) => void process.stdout.write(text));
  const err = deps.stderr ?? ((text: string) => void process.stderr.write(text));
  const [command, ...rest] = argv;
  const help = subcommandHelp(command, CONFIG_USAGE, { stdout: out });
  if (help !== undefined) return help;
  try {
    if (command !== 'check') throw new UsageError(`unknown config command '${command}'\n${CONFIG_USAGE}`);
    const { values, positionals } = parseArgs({ args: rest, options: { config: { type: 'string' } }, allowPositionals: true });
    noPositionals(positionals);
    const path = values.config ?? DEFAULT_CONFIG_PATH;
    if (values.config === undefined && !fs.existsSync(path)) {
      out(`# no configuration file at ${path}: vfiod daemon and vfiod serve take their options from the command line alone\n`);
      return EXIT.ok;
    }
    const file = readConfigFile(path);
    const effective = {
      ...(file.sections.daemon ? { daemon: await effectiveDaemon(file) } : {}),
      ...(file.sections.serve ? { serve: effectiveServe(file) } : {}),
    };
    out(`# ${path}: valid; the effective configuration:\n${Object.keys(effective).length ? stringify(effective) : '# (no daemon: or serve: section)\n'}`);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof ConfigFileError) {
      err(`${error.message}\n`);
      return EXIT.usage;
    }
    if (error instanceof UsageError) {
      err(`vfiod config: ${error.message}\n`);
      return EXIT.usage;
    }
    throw error;
  }
}

/** The section's options through the command's own parser: its cross-option rules, its defaults. */
function checked<T>(file: ConfigFile, section: ConfigSection, parse: (argv: string[]) => T): T {
  const values = file.sections[section] ?? {};
  try {
    return parse(['--no-config', ...sectionArgv(values)]);
  } catch (error) {
    const configured = { argv: [], file, fromFile: Object.keys(values) };
    throw new ConfigFileError([locateOptionError(section, configured, errorMessage(error).replace(/^serve: /, ''))]);
  }
}

async function effectiveDaemon(file: ConfigFile): Promise<Record<string, unknown>> {
  const { parseDaemonArgs } = await import('./daemon.js');
  const options = checked(file, 'daemon', parseDaemonArgs)!;
  const { crashRecovery, socketMode, ...rest } = options;
  return {
    ...rest,
    ...(socketMode !== undefined ? { socketMode: `0${socketMode.toString(8)}` } : {}),
    ...(crashRecovery ? { crashRecovery: { holderSocket: crashRecovery.holderSocket } } : {}),
  };
}

function effectiveServe(file: ConfigFile): Record<string, unknown> {
  const values = file.sections.serve ?? {};
  // Each `vfiod serve` usually gives its own --socket: without one in the file, the file's values are what there is.
  if (values['socket'] === undefined) return { ...values, socket: '(given on the command line)' };
  const { config, options } = checked(file, 'serve', (argv) => parseServeArgs(argv)!);
  return { ...config, socketMode: `0${config.socketMode.toString(8)}`, ...(options.json ? { json: true } : {}) };
}
