/**
 * Guest-visible identity end to end: a daemon (compiled, from dist/) creates controllers with every identity set
 * through the control API, and the project's vfio-user client reads them back with Identify Controller, Identify
 * Namespace, the Namespace Identification Descriptor list and the Firmware Slot log page. A controller deleted and
 * created again on another backing file shows the guest the same identities; so does a daemon restart. Refusals
 * carry their reason and change nothing. `vfiod serve`'s identity options are parsed into the same configuration
 * and refused as usage errors (exit 2).
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runControllers } from '../../src/cli/controllers.js';
import { parseServeArgs } from '../../src/cli/serve.js';
import { UsageError } from '../../src/cli/common.js';
import { VfiodClient } from '../../src/daemon/client.js';
import type { ControllerSpec } from '../../src/daemon/generated/vfiod/v1/ControllerSpec.js';
import type { RequestOf, RpcName } from '../../src/daemon/proto.js';
import type * as ServerModule from '../../src/daemon/server.js';
import { Status } from '../../src/spec/nvme.js';
import { temporaryDir } from '../helpers/common.js';
import { expectStatus } from '../helpers/daemon-client.js';
import { distDaemonUnavailable, importDistDaemon, startFakeHostDaemon } from '../helpers/dist-daemon.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';
import { Guest } from '../helpers/hypervisor.js';
import { pattern } from '../helpers/nvme-harness.js';
import { children, isListening, serve } from '../helpers/vfiod-process.js';

if (distDaemonUnavailable) console.warn(`identity tests skipped: ${distDaemonUnavailable}`);

/** Every identity a controller and its two namespaces can be given. */
const IDENTITY = {
  serialNumber: 'SN-IDENTITY-0001',
  modelNumber: 'vfiod identity test model',
  firmwareRevision: 'FW-9.8',
  subsystemNqn: 'nqn.2026-12.dev.vfiod:identity-test',
  ieeeOui: 0x5cd2e4,
  controllerId: 0x1234,
};
const NAMESPACE_IDENTITIES = [
  { nsid: 1, nguid: '0123456789abcdef0123456789abcdef', eui64: '0011223344556677', uuid: '2f1d3a4b-5c6d-4e7f-8091-a2b3c4d5e6f7', blockSize: 4096 },
  { nsid: 2, nguid: 'fedcba9876543210fedcba9876543210', eui64: '8899aabbccddeeff', uuid: '9e8d7c6b-5a49-4838-a271-605f4e3d2c1b', blockSize: 512 },
];

const ascii = (data: Uint8Array, offset: number, length: number): string => Buffer.from(data.subarray(offset, offset + length)).toString('latin1');
const hex = (data: Uint8Array, offset: number, length: number): string => Buffer.from(data.subarray(offset, offset + length)).toString('hex');

interface SeenIdentity {
  controller: { serialNumber: string; modelNumber: string; firmwareRevision: string; subsystemNqn: string; ieeeOui: number; controllerId: number; firmwareSlot1: string };
  namespaces: Array<{ nsid: number; nguid: string; eui64: string; uuid: string; blockSize: number; descriptors: Record<number, string> }>;
}

/** What a guest driver sees of the controller's identity, through Identify and Get Log Page only. */
async function seenByGuest(guest: Guest, namespaceCount: number): Promise<SeenIdentity> {
  const ctrl = await guest.driver.identify(0x01);
  expect(ctrl.completion.status).toBe(Status.SUCCESS);
  const d = ctrl.data;
  const nqnEnd = d.indexOf(0, 768);
  const firmware = await guest.driver.getLogPage(0x03, 512);
  expect(firmware.completion.status).toBe(Status.SUCCESS);
  const namespaces = [];
  for (let nsid = 1; nsid <= namespaceCount; nsid++) {
    const ns = await guest.driver.identify(0x00, nsid);
    expect(ns.completion.status).toBe(Status.SUCCESS);
    const list = await guest.driver.identify(0x03, nsid);
    expect(list.completion.status).toBe(Status.SUCCESS);
    const descriptors: Record<number, string> = {};
    for (let at = 0; list.data[at] !== 0; at += 4 + list.data[at + 1]!) descriptors[list.data[at]!] = hex(list.data, at + 4, list.data[at + 1]!);
    const flbas = ns.data[26]! & 0xf;
    const lbads = new DataView(ns.data.buffer, ns.data.byteOffset).getUint32(128 + 4 * flbas, true) >>> 16 & 0xff;
    const uuid = descriptors[3]!;
    namespaces.push({
      nsid,
      nguid: hex(ns.data, 104, 16),
      eui64: hex(ns.data, 120, 8),
      uuid: `${uuid.slice(0, 8)}-${uuid.slice(8, 12)}-${uuid.slice(12, 16)}-${uuid.slice(16, 20)}-${uuid.slice(20)}`,
      blockSize: 2 ** lbads,
      descriptors,
    });
  }
  return {
    controller: {
      serialNumber: ascii(d, 4, 20).trimEnd(),
      modelNumber: ascii(d, 24, 40).trimEnd(),
      firmwareRevision: ascii(d, 64, 8).trimEnd(),
      subsystemNqn: ascii(d, 768, nqnEnd - 768),
      ieeeOui: d[73]! | (d[74]! << 8) | (d[75]! << 16),
      controllerId: d[78]! | (d[79]! << 8),
      firmwareSlot1: ascii(firmware.data, 8, 8).trimEnd(),
    },
    namespaces,
  };
}

describe.skipIf(distDaemonUnavailable)('guest-visible identity', () => {
  let server: typeof ServerModule;
  let host: FakeHost;
  let dir: string;
  let daemon: ServerModule.Daemon;
  let client: VfiodClient;
  const guests: Guest[] = [];

  const start = (): Promise<ServerModule.Daemon> => startFakeHostDaemon(server, dir, host);
  const controllers = <M extends RpcName<'ControllerService'>>(rpc: M, request: RequestOf<'ControllerService', M>) => client.call('ControllerService', rpc, request);
  const socket = (name: string): string => path.join(dir, `${name}.sock`);
  const file = (name: string): string => `file:${path.join(dir, name)}?size=8M`;
  const create = (id: string, spec: ControllerSpec) =>
    controllers('CreateController', { id, spec: { socketPath: socket(id), ...spec } });

  /** `vfiod controllers …` against the daemon, in process. */
  const run = async (...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    let stdout = '';
    let stderr = '';
    const code = await runControllers([...argv, '--daemon', daemon.socketPath!], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
    return { code, stdout, stderr };
  };

  async function attach(id: string): Promise<Guest> {
    const guest = await Guest.attach(socket(id), { flavour: 'qemu' });
    guests.push(guest);
    await guest.driver.enable();
    return guest;
  }
  async function detachAll(): Promise<void> {
    for (const guest of guests.splice(0)) guest.close();
  }

  beforeAll(async () => {
    server = await importDistDaemon();
    host = standardHost();
    dir = temporaryDir('vfiod-identity-');
    daemon = await start();
    client = new VfiodClient({ address: daemon.socketPath! });
  });
  afterAll(async () => {
    await detachAll();
    for (const child of children.splice(0)) child.kill('SIGKILL');
    client?.close();
    await daemon?.close();
    host?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const expectedSeen = {
    controller: { ...IDENTITY, firmwareSlot1: IDENTITY.firmwareRevision },
    namespaces: NAMESPACE_IDENTITIES.map((ns) => ({
      ...ns,
      descriptors: { 1: ns.eui64, 2: ns.nguid, 3: ns.uuid.replace(/-/g, ''), 4: '00' },
    })),
  };

  it('sets every identity through CreateController; GetController and the guest see exactly them', async () => {
    const created = (await create('id1', { namespaces: [file('a1.img'), file('a2.img')], identity: IDENTITY, namespaceIdentities: NAMESPACE_IDENTITIES }))['controller']!;
    expect(created.identity).toMatchObject(IDENTITY);
    expect(created.namespaces.map((n: any) => n.identity)).toEqual(NAMESPACE_IDENTITIES);
    expect(created.namespaces.map((n: any) => [n.blockSize, n.blocks])).toEqual([[4096, 2048], [512, 16384]]);

    const guest = await attach('id1');
    expect(await seenByGuest(guest, 2)).toEqual(expectedSeen);
    // The guest uses the LBA format it was told: a 4 KiB block on namespace 1.
    await guest.driver.createIoQueuePair(1, 16, 1);
    expect((await guest.driver.write(1, 3, pattern(4096, 7))).status).toBe(Status.SUCCESS);
    expect(readFileSync(path.join(dir, 'a1.img')).subarray(3 * 4096, 4 * 4096).equals(Buffer.from(pattern(4096, 7)))).toBe(true);

    const persisted = JSON.parse(readFileSync(created.spec!.identityPath, 'utf8'));
    expect(persisted.controller).toEqual(IDENTITY);
    expect(persisted.namespaces.map(({ uri: _uri, ...rest }: any) => rest)).toEqual(NAMESPACE_IDENTITIES);
  });

  it('re-created on other backing files without identity options, the controller shows the guest the same identities', async () => {
    await detachAll();
    await controllers('DeleteController', { id: 'id1' });
    // New, empty files: nothing of the old backing comes along, and no identity is asked for.
    const again = (await create('id1', { namespaces: [file('b1.img'), file('b2.img')] }))['controller']!;
    expect(again.identity).toMatchObject(IDENTITY);
    expect(again.namespaces.map((n: any) => n.identity)).toEqual(NAMESPACE_IDENTITIES);
    const guest = await attach('id1');
    expect(await seenByGuest(guest, 2)).toEqual(expectedSeen);
  });

  it('a daemon restart keeps every identity', async () => {
    const before = (await controllers('GetController', { id: 'id1' }))['controller']!;
    await detachAll();
    client.close();
    await daemon.close();
    daemon = await start();
    client = new VfiodClient({ address: daemon.socketPath! });
    const after = (await controllers('GetController', { id: 'id1' }))['controller']!;
    expect(after.identity).toEqual(before.identity);
    expect(after.namespaces.map((n: any) => n.identity)).toEqual(NAMESPACE_IDENTITIES);
    expect(await seenByGuest(await attach('id1'), 2)).toEqual(expectedSeen);
  });

  it('a generated identity is persisted once: a new controller gets fresh ids, and keeps them when re-created elsewhere', async () => {
    const first = (await create('gen', { namespaces: [file('g1.img'), 'memory:1M'] }))['controller']!;
    expect(first.identity!.serialNumber).toMatch(/^VFIOD[0-9A-F]{12}$/);
    expect(first.identity).toMatchObject({ ieeeOui: 0, controllerId: 0 });
    const ids = first.namespaces.map((n: any) => n.identity);
    expect(ids[0].nguid).not.toBe(ids[1].nguid);
    for (const id of ids) expect(NAMESPACE_IDENTITIES.map((n) => n.nguid)).not.toContain(id.nguid);
    await controllers('DeleteController', { id: 'gen' });
    const moved = (await create('gen', { namespaces: [file('g2.img'), file('g3.img')] }))['controller']!;
    expect(moved.identity).toEqual(first.identity);
    expect(moved.namespaces.map((n: any) => n.identity)).toEqual(ids);
    await controllers('DeleteController', { id: 'gen' });
  });

  it('vfiod controllers create takes the identity options of vfiod serve, and get prints what the guest sees', async () => {
    const created = await run(
      'create', 'cli', '--socket', socket('cli'), '--namespace', file('cli1.img'), '--namespace', file('cli2.img'),
      '--serial', IDENTITY.serialNumber, '--model', IDENTITY.modelNumber, '--firmware', IDENTITY.firmwareRevision, '--nqn', IDENTITY.subsystemNqn,
      '--ieee-oui', '5c:d2:e4', '--controller-id', String(IDENTITY.controllerId),
      ...NAMESPACE_IDENTITIES.flatMap((n) => ['--namespace-identity', `${n.nsid}:nguid=${n.nguid},eui64=${n.eui64},uuid=${n.uuid},block-size=${n.blockSize}`]),
      '--identity', path.join(dir, 'cli.identity.json'),
    );
    expect(created.code, created.stderr).toBe(0);
    const shown = await run('get', 'cli');
    expect(shown.stdout).toContain(
      `identity:    serial ${IDENTITY.serialNumber}, model ${IDENTITY.modelNumber}, firmware ${IDENTITY.firmwareRevision}, ${IDENTITY.subsystemNqn}, IEEE OUI 5cd2e4, controller ID ${IDENTITY.controllerId}`,
    );
    for (const n of NAMESPACE_IDENTITIES) expect(shown.stdout).toContain(`nguid ${n.nguid}, eui64 ${n.eui64}, uuid ${n.uuid}`);
    expect(await seenByGuest(await attach('cli'), 2)).toEqual(expectedSeen);
    await detachAll();
    // A malformed option is the CLI's usage error (exit 2); a value the daemon refuses comes back with its reason.
    expect(await run('create', 'cli-bad', '--socket', socket('cli-bad'), '--namespace', 'memory:1M', '--ieee-oui', '12345')).toMatchObject({ code: 2 });
    const refused = await run('create', 'cli-bad', '--socket', socket('cli-bad'), '--namespace', 'memory:1M', '--namespace-identity', '1:eui64=00');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('eui64 must be 16 hex digits, not all zero, got "00"');
    expect(refused.stderr).toContain('NAMESPACE_IDENTITY_INVALID');
    await controllers('DeleteController', { id: 'cli' });
  });

  it('refuses bad identities with their reason, and nothing changes', async () => {
    const namespaces = [file('c1.img'), file('c2.img')];
    const cases: Array<[ControllerSpec, string, string, ...string[]]> = [
      [{ identity: { serialNumber: 'caf\u00e9' } }, 'INVALID_ARGUMENT', 'IDENTITY_INVALID', 'serial_number must be 1-20 printable ASCII characters'],
      [{ identity: { firmwareRevision: '123456789' } }, 'INVALID_ARGUMENT', 'IDENTITY_INVALID', 'firmware_revision'],
      [{ identity: { subsystemNqn: 'nqn.example' } }, 'INVALID_ARGUMENT', 'IDENTITY_INVALID', 'subsystem_nqn', 'is not an NQN'],
      [{ identity: { ieeeOui: 0x1000000 } }, 'INVALID_ARGUMENT', 'IDENTITY_INVALID', 'ieee_oui must be an integer in 0x0..0xffffff'],
      [{ identity: { controllerId: 0xfff0 } }, 'INVALID_ARGUMENT', 'IDENTITY_INVALID', 'controller_id must be an integer in 0x0..0xffef'],
      [{ namespaceIdentities: [{ nsid: 3, nguid: 'ab'.repeat(16) }] }, 'INVALID_ARGUMENT', 'NAMESPACE_IDENTITY_INVALID', 'nsid must be the NSID of a configured namespace (1..2), got 3'],
      [{ namespaceIdentities: [{ nsid: 1, eui64: '0'.repeat(16) }] }, 'INVALID_ARGUMENT', 'NAMESPACE_IDENTITY_INVALID', 'eui64 must be 16 hex digits, not all zero'],
      [{ namespaceIdentities: [{ nsid: 1, uuid: 'not-a-uuid' }] }, 'INVALID_ARGUMENT', 'NAMESPACE_IDENTITY_INVALID', 'uuid must be a non-nil RFC 4122 UUID'],
      [{ namespaceIdentities: [{ nsid: 1, blockSize: 1024 }] }, 'INVALID_ARGUMENT', 'NAMESPACE_IDENTITY_INVALID', 'block_size must be 512 or 4096, got 1024'],
      [{ namespaceIdentities: [{ nsid: 1, nguid: 'ab'.repeat(16) }, { nsid: 2, nguid: 'AB'.repeat(16) }] }, 'INVALID_ARGUMENT', 'NAMESPACE_IDENTITY_INVALID', 'nsid 1 and nsid 2 ask for the same nguid'],
      [{ namespaceIdentities: [{ nsid: 1 }, { nsid: 1 }] }, 'INVALID_ARGUMENT', 'NAMESPACE_IDENTITY_INVALID', 'nsid 1 is given twice'],
      // id1's slot 2 has this NGUID: slot 1 may not take it too.
      [{ identityPath: path.join(dir, 'state', 'controllers', 'id1.identity.json'), namespaceIdentities: [{ nsid: 1, nguid: NAMESPACE_IDENTITIES[1]!.nguid }] }, 'FAILED_PRECONDITION', 'IDENTITY_CONFLICT', 'have the same nguid'],
      [{ namespaces: [`${file('c1.img')}&block-size=512`], namespaceIdentities: [{ nsid: 1, blockSize: 4096 }] }, 'FAILED_PRECONDITION', 'IDENTITY_CONFLICT', 'block size 4096 is configured', 'block-size=512'],
    ];
    const identityFile = path.join(dir, 'state', 'controllers', 'id1.identity.json');
    const before = readFileSync(identityFile, 'utf8');
    for (const [spec, code, reason, ...mentions] of cases) {
      const error = await expectStatus(create('bad', { namespaces, ...spec }), code as 'INVALID_ARGUMENT', 'controller bad', ...mentions);
      expect(error.reason, error.details).toBe(reason);
    }
    // A backing the slot's LBA format does not fit: the start fails naming the file and the size.
    writeFileSync(path.join(dir, 'odd.img'), Buffer.alloc(4096 + 512));
    const odd = await expectStatus(
      create('bad', { namespaces: [`file:${path.join(dir, 'odd.img')}`], namespaceIdentities: [{ nsid: 1, blockSize: 4096 }] }),
      'FAILED_PRECONDITION',
      'controller bad failed to start',
      'odd.img',
      'file size 4608 is not a multiple of the block size 4096',
    );
    expect(odd.reason).toBe('CONTROLLER_START_FAILED');
    await expectStatus(controllers('GetController', { id: 'bad' }), 'NOT_FOUND');
    expect(existsSync(path.join(dir, 'state', 'controllers', 'bad.identity.json'))).toBe(false);
    expect(existsSync(path.join(dir, 'c1.img'))).toBe(false);
    expect(readFileSync(identityFile, 'utf8')).toBe(before);
    expect((await controllers('GetController', { id: 'id1' }))['controller']!.state).toBe('CONTROLLER_STATE_SERVING');
  });

  it('NSIDs with gaps at creation, an identity asked for at attach: the guest sees them, a restart keeps them, bad ones are refused', async () => {
    await detachAll();
    const asked = { nguid: '00112233445566778899aabbccddeeff', eui64: '0102030405060708', uuid: '0f1e2d3c-4b5a-4697-8877-665544332211', blockSize: 4096 };
    const created = (await create('gaps', {
      namespaces: [file('gap7.img'), file('gap3.img')],
      namespaceNsids: [7, 3],
      namespaceIdentities: [{ nsid: 7, blockSize: 4096 }],
    }))['controller']!;
    // In NSID order, each URI with its NSID.
    expect(created.spec!.namespaceNsids).toEqual([3, 7]);
    expect(created.namespaces.map((n: any) => [n.nsid, path.basename(n.uri), n.blockSize])).toEqual([[3, 'gap3.img?size=8M', 512], [7, 'gap7.img?size=8M', 4096]]);
    // An identity that names another NSID is refused, not rewritten (the CLI refuses the same mismatch).
    const mismatch = await expectStatus(
      controllers('AttachNamespace', { id: 'gaps', uri: file('gap12.img'), nsid: 12, identity: { nsid: 99, ...asked } }),
      'INVALID_ARGUMENT',
      'the identity is for namespace 99, but the namespace is attached as 12',
    );
    expect(mismatch.reason, mismatch.details).toBe('NAMESPACE_IDENTITY_INVALID');
    const attached = await controllers('AttachNamespace', { id: 'gaps', uri: file('gap12.img'), nsid: 12, identity: { nsid: 12, ...asked } });
    expect(attached['nsid']).toBe(12);
    expect(attached['controller']!.namespaces.find((n: any) => n.nsid === 12)!.identity).toEqual({ nsid: 12, ...asked });

    const seen = async (): Promise<{ active: number[]; ns12: Record<string, unknown> }> => {
      const guest = await attach('gaps');
      const list = await guest.driver.identify(0x02, 0);
      expect(list.completion.status).toBe(Status.SUCCESS);
      const active: number[] = [];
      for (let at = 0; at < list.data.length; at += 4) {
        const nsid = new DataView(list.data.buffer, list.data.byteOffset + at, 4).getUint32(0, true);
        if (nsid === 0) break;
        active.push(nsid);
      }
      const ns = await guest.driver.identify(0x00, 12);
      expect(ns.completion.status).toBe(Status.SUCCESS);
      const flbas = ns.data[26]! & 0xf;
      const lbads = (new DataView(ns.data.buffer, ns.data.byteOffset).getUint32(128 + 4 * flbas, true) >>> 16) & 0xff;
      await detachAll();
      return { active, ns12: { nguid: hex(ns.data, 104, 16), eui64: hex(ns.data, 120, 8), blockSize: 2 ** lbads } };
    };
    const expected = { active: [3, 7, 12], ns12: { nguid: asked.nguid, eui64: asked.eui64, blockSize: asked.blockSize } };
    expect(await seen()).toEqual(expected);

    // Refused with the reason, and nothing changes.
    const refusals: Array<[Promise<unknown>, string, string, ...string[]]> = [
      [create('bad', { namespaces: [file('c1.img'), file('c2.img')], namespaceNsids: [5] }), 'INVALID_ARGUMENT', 'FIELD_INVALID', '1 NSIDs for 2 namespaces'],
      [create('bad', { namespaces: [file('c1.img'), file('c2.img')], namespaceNsids: [5, 5] }), 'INVALID_ARGUMENT', 'FIELD_INVALID', 'NSID 5 is given twice'],
      [create('bad', { namespaces: [file('c1.img')], namespaceNsids: [1025] }), 'INVALID_ARGUMENT', 'FIELD_INVALID', 'NSID 1025 must be from 1 to 1024'],
      [create('bad', { namespaces: [file('c1.img')], namespaceNsids: [4], namespaceIdentities: [{ nsid: 1, blockSize: 512 }] }), 'INVALID_ARGUMENT', 'NAMESPACE_IDENTITY_INVALID', 'configured namespace (4), got 1'],
      [controllers('AttachNamespace', { id: 'gaps', uri: file('c3.img'), nsid: 13, identity: { eui64: '0'.repeat(16) } }), 'INVALID_ARGUMENT', 'NAMESPACE_IDENTITY_INVALID', 'namespace 13', 'eui64 must be 16 hex digits, not all zero'],
      // Slot 12 has this NGUID: slot 13 may not take it too.
      [controllers('AttachNamespace', { id: 'gaps', uri: file('c3.img'), nsid: 13, identity: { nguid: asked.nguid } }), 'FAILED_PRECONDITION', 'IDENTITY_CONFLICT', 'namespace 13', 'have the same nguid'],
      [controllers('AttachNamespace', { id: 'gaps', uri: `${file('c3.img')}&block-size=512`, nsid: 13, identity: { blockSize: 4096 } }), 'FAILED_PRECONDITION', 'IDENTITY_CONFLICT', 'block size 4096 is configured'],
    ];
    for (const [call, code, reason, ...mentions] of refusals) {
      const error = await expectStatus(call, code as 'INVALID_ARGUMENT', ...mentions);
      expect(error.reason, error.details).toBe(reason);
    }
    await expectStatus(controllers('GetController', { id: 'bad' }), 'NOT_FOUND');
    expect(existsSync(path.join(dir, 'c3.img'))).toBe(false);

    client.close();
    await daemon.close();
    daemon = await start();
    client = new VfiodClient({ address: daemon.socketPath! });
    const after = (await controllers('GetController', { id: 'gaps' }))['controller']!;
    expect(after.namespaces.map((n: any) => n.nsid)).toEqual([3, 7, 12]);
    expect(await seen()).toEqual(expected);
    await controllers('DeleteController', { id: 'gaps' });
  });

  it('the CLI: create --nsid, attach-namespace --namespace-identity; serve --nsid', async () => {
    const created = await run('create', 'cli-gaps', '--socket', socket('cli-gaps'), '--namespace', file('cg1.img'), '--nsid', '9', '--namespace', file('cg2.img'), '--nsid', '2');
    expect(created.code, created.stderr).toBe(0);
    expect((await controllers('GetController', { id: 'cli-gaps' }))['controller']!.namespaces.map((n: any) => [n.nsid, path.basename(n.uri)])).toEqual([[2, 'cg2.img?size=8M'], [9, 'cg1.img?size=8M']]);
    // The identity's NSID is the NSID when --nsid is not given.
    const attached = await run('attach-namespace', 'cli-gaps', file('cg3.img'), '--namespace-identity', '5:uuid=11111111-2222-4333-8444-555555555555');
    expect(attached.code, attached.stderr).toBe(0);
    expect(attached.stdout).toContain('as namespace 5');
    expect((await controllers('GetController', { id: 'cli-gaps' }))['controller']!.namespaces.find((n: any) => n.nsid === 5)!.identity!.uuid).toBe('11111111-2222-4333-8444-555555555555');
    const mismatch = await run('attach-namespace', 'cli-gaps', file('cg4.img'), '--nsid', '6', '--namespace-identity', '7:uuid=11111111-2222-4333-8444-666666666666');
    expect(mismatch).toMatchObject({ code: 2 });
    expect(mismatch.stderr).toContain('--namespace-identity is for NSID 7, but --nsid is 6');
    expect(await run('create', 'cli-bad', '--socket', socket('cli-bad'), '--namespace', 'memory:1M', '--nsid', '0')).toMatchObject({ code: 2 });
    await controllers('DeleteController', { id: 'cli-gaps' });

    const parsed = parseServeArgs(['--socket', socket('serve-gaps'), '--namespace', 'memory:1M', '--nsid', '4', '--namespace', 'memory:2M', '--nsid', '1', '--namespace-identity', '4:block-size=4096'])!;
    expect(parsed.config.namespaces).toEqual(['memory:2M', 'memory:1M']);
    expect(parsed.config.nsids).toEqual([1, 4]);
    // In order 1..n, nothing is recorded: the configuration is the one without --nsid.
    expect(parseServeArgs(['--socket', socket('serve-gaps'), '--namespace', 'memory:1M', '--nsid', '1'])!.config.nsids).toBeUndefined();
    expect(() => parseServeArgs(['--socket', socket('serve-gaps'), '--namespace', 'memory:1M', '--nsid', '2', '--nsid', '3'])).toThrow(
      new UsageError('serve: --nsid: 2 NSIDs for 1 namespaces: give one NSID per namespace, in the same order'),
    );
    expect(() => parseServeArgs(['--socket', socket('serve-gaps'), '--namespace', 'memory:1M', '--nsid', '3', '--namespace-identity', '1:block-size=512'])).toThrow(
      new UsageError('serve: --namespace-identity[0]: nsid must be the NSID of a configured namespace (3), got 1'),
    );
  });

  it('vfiod serve: a live upgrade and a crash of the data plane keep what the connected guest sees', async () => {
    await detachAll();
    const identityFile = path.join(dir, 'serve-identity.json');
    const identityArgs = [
      '--serial', IDENTITY.serialNumber, '--model', IDENTITY.modelNumber, '--firmware', IDENTITY.firmwareRevision, '--nqn', IDENTITY.subsystemNqn,
      '--ieee-oui', IDENTITY.ieeeOui.toString(16), '--controller-id', String(IDENTITY.controllerId),
      ...NAMESPACE_IDENTITIES.flatMap((n) => ['--namespace-identity', `${n.nsid}:nguid=${n.nguid},eui64=${n.eui64},uuid=${n.uuid},block-size=${n.blockSize}`]),
    ];
    /** Changes the persisted serial and NGUIDs behind the running controller's back: a successor must not show them. */
    const tamper = (): void => {
      const stored = JSON.parse(readFileSync(identityFile, 'utf8'));
      stored.controller.serialNumber = 'SN-CHANGED';
      for (const entry of stored.namespaces) entry.nguid = entry.nguid.replace(/^../, 'ee');
      writeFileSync(identityFile, JSON.stringify(stored));
    };
    for (const mode of ['upgrade', 'crash'] as const) {
      rmSync(identityFile, { force: true });
      const socketPath = socket(`serve-${mode}`);
      const base = ['--socket', socketPath, '--namespace', file(`${mode}1.img`), '--namespace', file(`${mode}2.img`), '--identity', identityFile];
      const first = serve([...(mode === 'crash' ? ['--crash-recovery'] : []), ...base, ...identityArgs]);
      await first.waitFor(isListening, 'listening');
      const guest = await Guest.attach(socketPath, { flavour: 'qemu' });
      guests.push(guest);
      await guest.driver.enable();
      expect(await seenByGuest(guest, 2), `${mode}: before`).toEqual(expectedSeen);
      tamper();
      if (mode === 'upgrade') {
        // The successor has no identity options: what the guest sees comes with the predecessor's state.
        const successor = serve([...base, '--take-over']);
        await successor.waitFor((line) => line['msg'] === 'upgrade complete: serving', 'upgrade complete');
        expect(await first.exited).toBe(0);
        expect(await seenByGuest(guest, 2), 'after the upgrade').toEqual(expectedSeen);
        successor.process.kill('SIGTERM');
        expect(await successor.exited).toBe(0);
      } else {
        const dataPlane = first.lines.find((line) => line['msg'] === 'data plane started')!['pid'] as number;
        process.kill(dataPlane, 'SIGKILL');
        await first.waitFor((line) => line['msg'] === 'recovered from a crash of the previous data plane', 'recovery');
        expect(await seenByGuest(guest, 2), 'after the crash').toEqual(expectedSeen);
        first.process.kill('SIGTERM');
        expect(await first.exited).toBe(0);
      }
      await detachAll();
    }
  }, 120_000);

  it('vfiod serve: the identity options make the same configuration; bad ones are usage errors naming the fix', () => {
    const socketPath = socket('serve');
    const parsed = parseServeArgs([
      '--socket', socketPath, '--namespace', 'memory:1M', '--namespace', 'memory:1M',
      '--serial', IDENTITY.serialNumber, '--model', IDENTITY.modelNumber, '--firmware', IDENTITY.firmwareRevision, '--nqn', IDENTITY.subsystemNqn,
      '--ieee-oui', '5c-d2-e4', '--controller-id', String(IDENTITY.controllerId),
      ...NAMESPACE_IDENTITIES.flatMap((n) => ['--namespace-identity', `${n.nsid}:nguid=${n.nguid},eui64=${n.eui64},uuid=${n.uuid},block-size=${n.blockSize}`]),
    ])!;
    expect(parsed.config.identity).toEqual(IDENTITY);
    expect(parsed.config.namespaceIdentities).toEqual(NAMESPACE_IDENTITIES);

    const usage = (extra: string[]): string => {
      try {
        parseServeArgs(['--socket', socketPath, '--namespace', 'memory:1M', ...extra]);
      } catch (error) {
        expect(error).toBeInstanceOf(UsageError);
        return (error as Error).message;
      }
      throw new Error(`serve ${extra.join(' ')} was accepted`);
    };
    expect(usage(['--ieee-oui', 'xyz'])).toBe("serve: --ieee-oui must be 6 hex digits (e.g. 5cd2e4 or 5c-d2-e4), not 'xyz'");
    expect(usage(['--controller-id', '65520'])).toBe("serve: --controller-id must be an integer from 0 to 65519, not '65520'");
    expect(usage(['--nqn', 'iqn.2026-12.x'])).toContain('serve: identity: --nqn "iqn.2026-12.x" is not an NQN');
    expect(usage(['--serial', 'x'.repeat(21)])).toContain('--serial must be 1-20 printable ASCII characters');
    expect(usage(['--namespace-identity', '2:nguid=' + 'ab'.repeat(16)])).toBe('serve: --namespace-identity[0]: nsid must be the NSID of a configured namespace (1..1), got 2');
    expect(usage(['--namespace-identity', '1:wwid=1'])).toContain("unknown key 'wwid' (expected <nsid>:nguid=<32 hex>,eui64=<16 hex>,uuid=<uuid>,block-size=512|4096");
    expect(usage(['--namespace-identity', 'nguid=1'])).toContain('no nsid');
    expect(usage(['--namespace-identity', '1:block-size=1024'])).toContain('block-size must be 512 or 4096, got 1024');
    // Ids that another slot of the persisted identity has: named, with the way out.
    const taken = path.join(dir, 'taken.json');
    writeFileSync(taken, readFileSync(path.join(dir, 'state', 'controllers', 'id1.identity.json')));
    expect(usage(['--identity', taken, '--namespace-identity', `1:uuid=${NAMESPACE_IDENTITIES[1]!.uuid}`])).toContain(
      `have the same uuid ${NAMESPACE_IDENTITIES[1]!.uuid}: ask for another one, or use a new identity file for a new disk`,
    );
    // Even with no identity file (memory only): the URI and the option must agree on the block size.
    expect(() => parseServeArgs(['--socket', socketPath, '--namespace', 'memory:1M?block-size=512', '--namespace-identity', '1:block-size=4096'])).toThrow(
      new UsageError("serve: --namespace-identity: namespace 1: block size 4096 is configured, but its URI 'memory:1M?block-size=512' says block-size=512: give one of them"),
    );
  });
});
