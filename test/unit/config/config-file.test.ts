/**
 * The configuration file (src/config): the option tables cover every option of `vfiod daemon` and `vfiod serve`
 * (usage, file schema, docs/config.md), errors point at the line and column of the value, and the command line
 * overrides the file, as the real parsers of the two commands see it.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { applyConfigFile, CONFIG_SCHEMA, ConfigFileError, locateOptionError, parseConfigText, readConfigFile } from '../../../src/config/file.js';
import { CONFIG_SECTIONS, type FlagTable } from '../../../src/config/flags.js';
import { DAEMON_USAGE, parseDaemonArgs } from '../../../src/cli/daemon.js';
import { parseServeArgs, SERVE_USAGE } from '../../../src/cli/serve.js';
import { temporaryDir } from '../../helpers/common.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const dir = temporaryDir('vfiod-config-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The problems a text gives, one string each. */
function problems(text: string): string[] {
  try {
    parseConfigText('/etc/vfiod/vfiod.yaml', text);
  } catch (error) {
    if (error instanceof ConfigFileError) return error.problems;
    throw error;
  }
  throw new Error('the text was accepted');
}

function writeConfig(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

describe('the option tables', () => {
  const usages = { daemon: DAEMON_USAGE, serve: SERVE_USAGE };
  const docs = readFileSync(path.join(root, 'docs/config.md'), 'utf8');
  for (const [section, table] of Object.entries(CONFIG_SECTIONS) as Array<[keyof typeof CONFIG_SECTIONS, FlagTable]>) {
    it(`${section}: every option is in the usage; every file key is in the schema and in docs/config.md, the others say why not`, () => {
      const schemaKeys = Object.keys((CONFIG_SCHEMA.properties[section] as { properties: object }).properties);
      for (const [name, spec] of Object.entries(table)) {
        expect(usages[section], name).toContain(`--${name}`);
        if (spec.file) {
          expect(schemaKeys, name).toContain(name);
          expect(docs, `docs/config.md documents ${section}.${name}`).toMatch(new RegExp(`\\| \`${section}\\.${name}\` \\|`));
        } else {
          expect(schemaKeys, name).not.toContain(name);
          expect(spec.commandLineOnly, name).toMatch(/\w/);
        }
      }
      expect(schemaKeys.length).toBe(Object.values(table).filter((spec) => spec.file).length);
    });
  }
});

describe('validation, with the line and column of each problem', () => {
  it('accepts a file with both sections, an empty file and an empty section', () => {
    const file = parseConfigText('f.yaml', 'daemon:\n  state-dir: /srv/vfiod\n  max-controllers: 64\n  namespace-dir: /srv/disks\nserve:\n  poll: true\n  namespace: [memory:1M]\n');
    expect(file.sections).toEqual({ daemon: { 'state-dir': '/srv/vfiod', 'max-controllers': 64, 'namespace-dir': '/srv/disks' }, serve: { poll: true, namespace: ['memory:1M'] } });
    expect(file.location('daemon', 'max-controllers')).toBe('f.yaml:3:3');
    expect(parseConfigText('f.yaml', '').sections).toEqual({});
    expect(parseConfigText('f.yaml', '# nothing\ndaemon:\n').sections).toEqual({ daemon: {} });
  });

  it('reports every problem, in file order, at the value or the key', () => {
    const text = [
      'daemon:', //                      1
      '  namespace-dir:', //             2
      '    - /srv/disks', //             3
      '    - disks', //                  4
      '  max-controllers: 0', //         5
      '  socet: /run/x.sock', //         6
      '  data-plane: true', //           7
      '  socket-mode: 0600', //          8
      'serve:', //                       9
      '  poll: maybe', //               10
      '  namespace: disk.img', //       11
      '  log-level: loud', //           12
      'extra: 1', //                    13
    ].join('\n');
    expect(problems(text)).toEqual([
      '/etc/vfiod/vfiod.yaml:4:7: namespace-dir: must be an absolute path',
      '/etc/vfiod/vfiod.yaml:5:20: max-controllers: must be an integer from 1 to 100000',
      "/etc/vfiod/vfiod.yaml:6:3: daemon: unknown key 'socet' (did you mean 'socket'?)",
      "/etc/vfiod/vfiod.yaml:7:3: daemon: 'data-plane' belongs on the command line only (internal: the crash-recovery holder adds it)",
      "/etc/vfiod/vfiod.yaml:8:16: socket-mode: must be a file mode in octal, quoted, like '0600'",
      '/etc/vfiod/vfiod.yaml:10:9: poll: must be true or false',
      '/etc/vfiod/vfiod.yaml:11:14: namespace: must be a namespace URI: memory:<size>, file:<path>[?...] or nvme-tcp://<host>:<port>/<NQN>?nsid=<n>, or a list of such values',
      '/etc/vfiod/vfiod.yaml:12:14: log-level: must be one of debug, info, warn, error',
      "/etc/vfiod/vfiod.yaml:13:1: file: unknown section 'extra' (the sections are daemon and serve)",
    ]);
  });

  it('each bad item of a list at its place', () => {
    expect(problems('daemon:\n  namespace-dir: [/ok, a, b]\n')).toEqual([
      '/etc/vfiod/vfiod.yaml:2:24: namespace-dir: must be an absolute path',
      '/etc/vfiod/vfiod.yaml:2:27: namespace-dir: must be an absolute path',
    ]);
    expect(problems('daemon:\n  namespace-dir: {a: 1}\n')).toEqual(['/etc/vfiod/vfiod.yaml:2:18: namespace-dir: must be an absolute path, or a list of such values']);
  });

  it('identity keys: a quoted OUI, a controller ID in range, namespace identities as on the command line', () => {
    expect(parseConfigText('f.yaml', "serve:\n  ieee-oui: '5c-d2-e4'\n  controller-id: 65519\n  namespace-identity: '1:nguid=00112233445566778899aabbccddeeff'\n").sections.serve)
      .toEqual({ 'ieee-oui': '5c-d2-e4', 'controller-id': 65519, 'namespace-identity': '1:nguid=00112233445566778899aabbccddeeff' });
    expect(problems('serve:\n  ieee-oui: 000001\n  controller-id: 65520\n  namespace-identity: [nguid=00]\n')).toEqual([
      "/etc/vfiod/vfiod.yaml:2:13: ieee-oui: must be 6 hex digits, quoted, like '5cd2e4'",
      '/etc/vfiod/vfiod.yaml:3:18: controller-id: must be an integer from 0 to 65519',
      '/etc/vfiod/vfiod.yaml:4:24: namespace-identity: must be <nsid>:<key>=<value>[,<key>=<value>]... with keys nguid, eui64, uuid, block-size',
    ]);
  });

  it('says what is wrong with the YAML itself, and with a section that is not a mapping', () => {
    expect(problems('daemon:\n  socket: /a\n  socket: /b\n')).toEqual([expect.stringMatching(/^\/etc\/vfiod\/vfiod\.yaml:3:3: YAML: Map keys must be unique/)]);
    expect(problems('daemon:\n  namespace-dir: [/a,\n')).toEqual([expect.stringMatching(/^\/etc\/vfiod\/vfiod\.yaml:3:1: YAML: /)]);
    expect(problems('daemon: [socket]\n')).toEqual(['/etc/vfiod/vfiod.yaml:1:9: daemon: must be a mapping of options to values']);
    expect(problems('- daemon\n')).toEqual(['/etc/vfiod/vfiod.yaml:1:1: file: must be a mapping of sections (daemon:, serve:)']);
  });

  it('a file that cannot be read is a problem of its own', () => {
    expect(() => readConfigFile(path.join(dir, 'missing.yaml'))).toThrow(/missing\.yaml: cannot read the configuration file: ENOENT/);
    expect(() => readConfigFile(dir)).toThrow(/cannot read the configuration file: not a regular file/);
  });
});

describe('the command line overrides the file', () => {
  const stateDir = path.join(dir, 'state');
  mkdirSync(stateDir, { recursive: true });
  const config = writeConfig('vfiod.yaml', [
    'daemon:',
    '  socket: /run/test/vfiod.sock',
    `  state-dir: ${stateDir}`,
    '  namespace-dir: [/srv/a, /srv/b]',
    '  max-controllers: 12',
    '  crash-recovery: true',
    'serve:',
    '  namespace: ["memory:1M", "memory:2M"]',
    '  io-queues: 4',
    '  serial: FROMFILE',
    '  json: true',
    '',
  ].join('\n'));

  it('daemon: file values, a flag replaces its key (a repeatable one whole), the data plane gets them as flags', () => {
    const configured = applyConfigFile('daemon', ['--config', config, '--namespace-dir=/srv/c', '--max-controllers', '7']);
    expect(configured.fromFile.sort()).toEqual(['crash-recovery', 'socket', 'state-dir']);
    const options = parseDaemonArgs(configured.argv)!;
    expect(options.socketPath).toBe('/run/test/vfiod.sock');
    expect(options.stateDir).toBe(stateDir);
    expect(options.namespaceDirs).toEqual(['/srv/c']);
    expect(options.maxControllers).toBe(7);
    // The holder starts the data plane with the same options and without reading the file again.
    expect(options.crashRecovery!.dataPlaneArgv).toEqual([
      '--no-config', '--socket=/run/test/vfiod.sock', `--state-dir=${stateDir}`, '--namespace-dir=/srv/c', '--max-controllers', '7',
    ]);
    expect(applyConfigFile('daemon', options.crashRecovery!.dataPlaneArgv).argv).toEqual(options.crashRecovery!.dataPlaneArgv);
  });

  it('serve: the file section, a flag winning over its key', () => {
    const configured = applyConfigFile('serve', ['--socket', path.join(dir, 's.sock'), '--config', config, '--serial', 'CLI']);
    const parsed = parseServeArgs(configured.argv)!;
    expect(parsed.config.namespaces).toEqual(['memory:1M', 'memory:2M']);
    expect(parsed.config.maxIoQueuePairs).toBe(4);
    expect(parsed.config.identity.serialNumber).toBe('CLI');
    expect(parsed.options.json).toBe(true);
    // What `vfiod upgrade` gives the successor: these options, the file's included, and --no-config.
    expect(parsed.options.argv).toEqual(['--no-config', '--namespace=memory:1M', '--namespace=memory:2M', '--io-queues=4', '--json', '--socket', path.join(dir, 's.sock'), '--serial', 'CLI']);
  });

  it('no file at the default path: the command line as it is; --config names a file that must exist; help and --no-config skip it', () => {
    const absent = path.join(dir, 'absent.yaml');
    expect(applyConfigFile('daemon', ['--max-controllers', '3'], absent)).toEqual({ argv: ['--max-controllers', '3'], fromFile: [] });
    expect(() => applyConfigFile('daemon', ['--config', absent])).toThrow(ConfigFileError);
    const broken = writeConfig('broken.yaml', 'daemon:\n  max-controllers: many\n');
    expect(() => applyConfigFile('daemon', [], broken)).toThrow(/broken\.yaml:2:20: max-controllers: must be an integer/);
    expect(applyConfigFile('daemon', ['--help'], broken).argv).toEqual(['--help']);
    expect(applyConfigFile('daemon', ['--no-config'], broken).argv).toEqual(['--no-config']);
  });

  it("the command's complaints about options from the file point at them", () => {
    const file = writeConfig('tcp.yaml', 'daemon:\n  state-dir: /srv/vfiod\n  tcp: 0.0.0.0:50051\n');
    const configured = applyConfigFile('daemon', ['--config', file]);
    let message = '';
    try {
      parseDaemonArgs(configured.argv);
    } catch (error) {
      message = locateOptionError('daemon', configured, (error as Error).message);
    }
    expect(message).toBe(`${file}:3:3: tcp: refusing plain TCP on 0.0.0.0:50051: give --tls-cert and --tls-key, or --insecure-tcp to accept an unauthenticated, unencrypted API`);
    // Naming no option of the file: the file is named, as the options came from it too.
    expect(locateOptionError('daemon', configured, '--max-controllers must be an integer')).toBe(`--max-controllers must be an integer (with the options of ${file})`);
    expect(locateOptionError('daemon', applyConfigFile('daemon', ['--max-controllers=x'], path.join(dir, 'absent.yaml')), 'bad')).toBe('bad');
  });
});
