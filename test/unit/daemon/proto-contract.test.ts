/**
 * The protos as a contract: `buf lint` clean, no breaking change against the v1 baseline (buf/v1-baseline.json, the
 * image of proto/vfiod/v1 as FeOS builds against it), and protoc (Debian's protobuf-compiler, which .ci/run
 * installs) compiles them. Each buf check is also shown to fail on a copy of the protos with a fault in it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PROTO_FILES } from '../../../src/daemon/proto.js';
import { temporaryDir } from '../../helpers/common.js';

const root = path.resolve(import.meta.dirname, '../../..');
const baseline = path.join(root, 'buf', 'v1-baseline.json');
const buf = (cwd: string, ...args: string[]) => spawnSync(process.execPath, [path.join(root, 'node_modules', '@bufbuild', 'buf', 'bin', 'buf'), ...args], { cwd, encoding: 'utf8' });

/** A copy of buf.yaml and proto/ with `edit` applied to proto/vfiod/v1/<file>. */
function faultyCopy(dir: string, file: string, edit: (text: string) => string): string {
  cpSync(path.join(root, 'buf.yaml'), path.join(dir, 'buf.yaml'));
  cpSync(path.join(root, 'proto'), path.join(dir, 'proto'), { recursive: true });
  const target = path.join(dir, 'proto', 'vfiod', 'v1', file);
  const before = readFileSync(target, 'utf8');
  const after = edit(before);
  expect(after).not.toBe(before);
  writeFileSync(target, after);
  return dir;
}

const protocMissing = ((): string | undefined => {
  if (spawnSync('protoc', ['--version']).status !== 0) return 'protoc is not installed (Debian: protobuf-compiler)';
  if (!existsSync('/usr/include/google/protobuf/any.proto')) return 'google/protobuf/any.proto is not in /usr/include (Debian: libprotobuf-dev)';
  return undefined;
})();
if (protocMissing) console.log(`skipping the protoc check: ${protocMissing}`);

describe('the vfiod.v1 protos', () => {
  const dirs: string[] = [];
  const scratch = (): string => {
    const dir = temporaryDir('vfiod-proto-');
    dirs.push(dir);
    return dir;
  };
  afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  it('pass buf lint; an enum value without its prefix does not', () => {
    const clean = buf(root, 'lint');
    expect(clean.stdout + clean.stderr).toBe('');
    expect(clean.status).toBe(0);
    const faulty = buf(faultyCopy(scratch(), 'controllers.proto', (t) => t.replace('CONTROLLER_STATE_SERVING = 2;', 'SERVING = 2;')), 'lint');
    expect(faulty.status).not.toBe(0);
    expect(faulty.stdout).toContain('SERVING');
  }, 60_000);

  it('break nothing against the v1 baseline; a renumbered field does', () => {
    const clean = buf(root, 'breaking', '--against', baseline);
    expect(clean.stdout + clean.stderr).toBe('');
    expect(clean.status).toBe(0);
    const faulty = buf(faultyCopy(scratch(), 'daemon.proto', (t) => t.replace('uint32 pid = 1;', 'uint32 pid = 9;')), 'breaking', '--against', baseline);
    expect(faulty.status).not.toBe(0);
    expect(faulty.stdout).toMatch(/DaemonInfo/);
  }, 60_000);

  it.skipIf(protocMissing)('compile with protoc', () => {
    execFileSync('protoc', ['-I', path.join(root, 'proto'), '-I', '/usr/include', '--descriptor_set_out=/dev/null', ...PROTO_FILES], { cwd: root, stdio: 'pipe' });
  });
});
