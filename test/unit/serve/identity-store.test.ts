import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseNamespaceUri, type NamespaceSpec } from '../../../src/namespace/uri.js';
import { execFileSync } from 'node:child_process';
import {
  checkIdentityFileWritable,
  checkIdentityOverrides,
  checkNamespaceOverrides,
  defaultIdentityPath,
  EUI64_PREFIX,
  IdentityConflict,
  IdentityFileRefused,
  loadOrCreateIdentity,
  plannedBlockSizes,
  previewIdentity,
  type NamespaceIdentityOverride,
} from '../../../src/serve/identity-store.js';

let tempDir: string;
beforeEach(() => {
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfiod-identity-'));
});
afterEach(() => {
  fs.rmSync(tempDir, { recursive: true, force: true });
});

describe('identity store', () => {
  const uuidV4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

  it('generates valid ids once and returns the same ones on the next load', async () => {
    const statePath = path.join(tempDir, 'disk.img.vfiod.json');
    const uris = ['file:/srv/a.img?size=1G', 'memory:64M'];
    const first = await loadOrCreateIdentity(statePath, { namespaceUris: uris });
    expect(first.controller.serialNumber).toMatch(/^VFIOD[0-9A-F]{12}$/);
    expect(first.controller.subsystemNqn).toMatch(/^nqn\.2014-08\.org\.nvmexpress:uuid:/);
    expect(first.controller.modelNumber.length).toBeLessThanOrEqual(40);
    expect(first.controller.firmwareRevision.length).toBeLessThanOrEqual(8);
    expect(first.namespaces).toHaveLength(2);
    for (const [index, entry] of first.namespaces.entries()) {
      expect(entry.uri).toBe(uris[index]);
      expect(entry.nguid).toMatch(/^[0-9a-f]{32}$/);
      expect(entry.eui64).toMatch(new RegExp(`^${EUI64_PREFIX}[0-9a-f]{10}$`));
      expect(entry.uuid).toMatch(uuidV4);
    }
    expect(first.namespaces[0]!.nguid).not.toBe(first.namespaces[1]!.nguid);
    const text = fs.readFileSync(statePath, 'utf8');
    expect(JSON.parse(text)).toEqual({ format: 'vfiod-identity/1', controller: first.controller, namespaces: first.namespaces });
    const mtime = fs.statSync(statePath).mtimeMs;

    const second = await loadOrCreateIdentity(statePath, { namespaceUris: uris });
    expect(second).toEqual(first);
    expect(fs.readFileSync(statePath, 'utf8')).toBe(text);
    expect(fs.statSync(statePath).mtimeMs).toBe(mtime);
    expect(fs.readdirSync(tempDir)).toEqual(['disk.img.vfiod.json']);
  });

  it('persists configured overrides, which win over stored values', async () => {
    const statePath = path.join(tempDir, 'id.json');
    const uris = ['memory:1M'];
    const generated = await loadOrCreateIdentity(statePath, { namespaceUris: uris });
    const configured = await loadOrCreateIdentity(statePath, {
      namespaceUris: uris,
      controller: { serialNumber: 'SN-CONFIGURED', subsystemNqn: 'nqn.2024-01.io.example:disk1' },
      namespaces: [{ nsid: 1, uuid: '2F1D3A4B-5C6D-4E7F-8091-A2B3C4D5E6F7' }],
    });
    expect(configured.controller).toEqual({
      ...generated.controller,
      serialNumber: 'SN-CONFIGURED',
      subsystemNqn: 'nqn.2024-01.io.example:disk1',
    });
    expect(configured.namespaces[0]).toEqual({ ...generated.namespaces[0], uuid: '2f1d3a4b-5c6d-4e7f-8091-a2b3c4d5e6f7' });
    const reloaded = await loadOrCreateIdentity(statePath, { namespaceUris: uris });
    expect(reloaded).toEqual(configured);
  });

  it('gives each namespace slot its ids whatever backs it, and keeps slots no longer configured', async () => {
    const statePath = path.join(tempDir, 'id.json');
    const first = await loadOrCreateIdentity(statePath, { namespaceUris: ['file:/srv/a.img?size=1G', 'memory:1M'], blockSizes: [4096, 512] });
    expect(first.namespaces.map((entry) => [entry.nsid, entry.blockSize])).toEqual([[1, 4096], [2, 512]]);
    // Slot 1 on another file (a copy, a new disk): the guest sees the same namespace. Slot 2 is gone for now.
    const moved = await loadOrCreateIdentity(statePath, { namespaceUris: ['file:/srv/copy-of-a.img'] });
    expect(moved.namespaces[0]).toEqual({ ...first.namespaces[0], uri: 'file:/srv/copy-of-a.img' });
    const stored = JSON.parse(fs.readFileSync(statePath, 'utf8')) as { namespaces: Array<{ nsid: number; uri: string }> };
    expect(stored.namespaces.map((entry) => [entry.nsid, entry.uri])).toEqual([[1, 'file:/srv/copy-of-a.img'], [2, 'memory:1M']]);
    // Slot 2 comes back on another backend with its old ids; slot 3 is new.
    const back = await loadOrCreateIdentity(statePath, { namespaceUris: ['file:/srv/a.img', 'file:/srv/b.img', 'memory:2M'] });
    expect(back.namespaces[1]).toEqual({ ...first.namespaces[1], uri: 'file:/srv/b.img' });
    expect(back.namespaces[0]!.nguid).toBe(first.namespaces[0]!.nguid);
    expect([first.namespaces[0]!.nguid, first.namespaces[1]!.nguid]).not.toContain(back.namespaces[2]!.nguid);
    expect(back.namespaces[2]!.nsid).toBe(3);
    // The LBA format a slot was opened with is what a re-created namespace is opened with, unless asked otherwise.
    expect(plannedBlockSizes(statePath, { namespaceUris: ['file:/srv/new.img', 'memory:1M', 'memory:2M?block-size=4096'] })).toEqual([4096, 512, 4096]);
    expect(plannedBlockSizes(statePath, { namespaceUris: ['file:/srv/new.img?block-size=512'] })).toEqual([512]);
    expect(plannedBlockSizes(statePath, { namespaceUris: ['file:/srv/new.img'], namespaces: [{ nsid: 1, blockSize: 512 }] })).toEqual([512]);
    expect(plannedBlockSizes(statePath, { namespaceUris: ['memory:1M', 'memory:1M', 'memory:1M', 'memory:1M'] })).toEqual([4096, 512, undefined, undefined]);
    expect(() => plannedBlockSizes(statePath, { namespaceUris: ['file:/srv/new.img?block-size=512'], namespaces: [{ nsid: 1, blockSize: 4096 }] })).toThrow(
      new IdentityConflict("namespace 1: block size 4096 is configured, but its URI 'file:/srv/new.img?block-size=512' says block-size=512: give one of them"),
    );
  });

  it('keys slots by the NSIDs it is given, so a namespace set with gaps keeps the ids of each NSID', async () => {
    const statePath = path.join(tempDir, 'gaps.json');
    const sparse = await loadOrCreateIdentity(statePath, { namespaceUris: ['memory:1M', 'memory:2M'], nsids: [1, 3] });
    expect(sparse.namespaces.map((entry) => entry.nsid)).toEqual([1, 3]);
    const full = await loadOrCreateIdentity(statePath, { namespaceUris: ['memory:1M', 'memory:4M', 'memory:2M'] });
    expect(full.namespaces[0]!.uuid).toBe(sparse.namespaces[0]!.uuid);
    expect(full.namespaces[2]!.uuid).toBe(sparse.namespaces[1]!.uuid);
    expect([sparse.namespaces[0]!.uuid, sparse.namespaces[1]!.uuid]).not.toContain(full.namespaces[1]!.uuid);
  });

  it('matches the entries of a file written before slots by URI, then by backing file', async () => {
    const statePath = path.join(tempDir, 'old-slots.json');
    const ids = (n: number): { nguid: string; eui64: string; uuid: string } => ({
      nguid: `${n}`.repeat(32),
      eui64: `${n}`.repeat(16),
      uuid: `${n}${n}${n}${n}${n}${n}${n}${n}-${n}${n}${n}${n}-4${n}${n}${n}-8${n}${n}${n}-${`${n}`.repeat(12)}`,
    });
    const controller = { serialNumber: 'OLD', modelNumber: 'M', firmwareRevision: 'F', subsystemNqn: 'nqn.2014-08.org.example:old' };
    fs.writeFileSync(statePath, JSON.stringify({ controller, namespaces: [{ uri: 'memory:1M', ...ids(1) }, { uri: 'file:/srv/a.img?size=1G', ...ids(2) }] }));
    const loaded = await loadOrCreateIdentity(statePath, { namespaceUris: ['file:///srv/a.img?size=2G', 'memory:1M'] });
    expect(loaded.namespaces).toEqual([
      { nsid: 1, uri: 'file:///srv/a.img?size=2G', ...ids(2) },
      { nsid: 2, uri: 'memory:1M', ...ids(1) },
    ]);
    // Numbers added since default to none / 0, and are persisted with the slots.
    expect(loaded.controller).toEqual({ ...controller, ieeeOui: 0, controllerId: 0 });
    expect(JSON.parse(fs.readFileSync(statePath, 'utf8'))).toEqual({ format: 'vfiod-identity/1', controller: loaded.controller, namespaces: loaded.namespaces });
  });

  it('persists IEEE OUI and controller ID like the strings, and refuses ids that clash with a kept slot', async () => {
    const statePath = path.join(tempDir, 'numbers.json');
    const set = await loadOrCreateIdentity(statePath, { namespaceUris: ['memory:1M', 'memory:1M'], controller: { ieeeOui: 0x5cd2e4, controllerId: 7 } });
    expect(set.controller).toMatchObject({ ieeeOui: 0x5cd2e4, controllerId: 7 });
    const again = await loadOrCreateIdentity(statePath, { namespaceUris: ['memory:1M'] });
    expect(again.controller).toEqual(set.controller);
    // Slot 2 is kept while unconfigured: slot 1 may not take its NGUID (a guest would see one disk twice).
    const taken = set.namespaces[1]!.nguid;
    const text = fs.readFileSync(statePath, 'utf8');
    await expect(loadOrCreateIdentity(statePath, { namespaceUris: ['memory:1M'], namespaces: [{ nsid: 1, nguid: taken.toUpperCase() }] })).rejects.toThrow(
      new IdentityConflict(
        `configured identity: namespaces nsid 1 ('memory:1M') and nsid 2 ('memory:1M') have the same nguid ${taken}: ask for another one, or use a new identity file for a new disk`,
      ),
    );
    expect(() => previewIdentity(statePath, { namespaceUris: ['memory:1M'], namespaces: [{ nsid: 1, nguid: taken }] })).toThrow(IdentityConflict);
    expect(fs.readFileSync(statePath, 'utf8')).toBe(text);
  });

  it('checks asked-for identities with messages naming the field as the caller spells it', () => {
    const names = { nsid: 'nsid', nguid: 'nguid', eui64: 'eui64', uuid: 'uuid', blockSize: 'block_size' };
    const check = (overrides: NamespaceIdentityOverride[], nsids = [1, 2]): void => checkNamespaceOverrides('spec.namespace_identities', overrides, nsids, names);
    expect(() => check([{ nsid: 1, nguid: 'ab'.repeat(16), eui64: '0123456789abcdef', uuid: '2f1d3a4b-5c6d-4e7f-8091-a2b3c4d5e6f7', blockSize: 4096 }])).not.toThrow();
    expect(() => check([{ nsid: 3 }])).toThrow('spec.namespace_identities[0]: nsid must be the NSID of a configured namespace (1..2), got 3');
    expect(() => check([{ nsid: 0 }])).toThrow('spec.namespace_identities[0]: nsid must be the NSID of a configured namespace (1..2), got 0');
    expect(() => check([{ nsid: 2 }], [1, 3])).toThrow('spec.namespace_identities[0]: nsid must be the NSID of a configured namespace (1, 3), got 2');
    expect(() => check([{ nsid: 1 }, { nsid: 1 }])).toThrow('spec.namespace_identities[1]: nsid 1 is given twice');
    expect(() => check([{ nsid: 1, nguid: '0'.repeat(32) }])).toThrow('spec.namespace_identities[0] (nsid 1): nguid must be 32 hex digits, not all zero, got "000');
    expect(() => check([{ nsid: 2, eui64: '0123' }])).toThrow('spec.namespace_identities[0] (nsid 2): eui64 must be 16 hex digits, not all zero, got "0123"');
    expect(() => check([{ nsid: 1, uuid: '00000000-0000-0000-0000-000000000000' }])).toThrow('uuid must be a non-nil RFC 4122 UUID');
    expect(() => check([{ nsid: 1, blockSize: 1024 }])).toThrow('spec.namespace_identities[0] (nsid 1): block_size must be 512 or 4096, got 1024');
    expect(() => check([{ nsid: 1, eui64: '0123456789ABCDEF' }, { nsid: 2, eui64: '0123456789abcdef' }])).toThrow(
      'spec.namespace_identities: nsid 1 and nsid 2 ask for the same eui64 0123456789abcdef',
    );

    const controller = (overrides: Record<string, unknown>): void => checkIdentityOverrides('identity', overrides);
    expect(() => controller({ serialNumber: 'SN 1', modelNumber: 'M', firmwareRevision: '1.0', subsystemNqn: 'nqn.2014-08.com.example:disk-1', ieeeOui: 0xffffff, controllerId: 0xffef })).not.toThrow();
    expect(() => controller({ serialNumber: 'caf\u00e9' })).toThrow('identity: serialNumber must be 1-20 printable ASCII characters');
    expect(() => controller({ firmwareRevision: '123456789' })).toThrow('identity: firmwareRevision must be 1-8 printable ASCII characters');
    expect(() => controller({ modelNumber: '' })).toThrow('identity: modelNumber must be 1-40 printable ASCII characters');
    expect(() => controller({ ieeeOui: 0x1000000 })).toThrow('identity: ieeeOui must be an integer in 0x0..0xffffff, got 16777216');
    expect(() => controller({ controllerId: 0xfff0 })).toThrow('identity: controllerId must be an integer in 0x0..0xffef, got 65520');
    expect(() => controller({ subsystemNqn: 'nqn.2014-08.com.example disk' })).toThrow('must be printable ASCII without spaces');
    expect(() => controller({ subsystemNqn: 'nqn.example' })).toThrow("is not an NQN: 'nqn.<yyyy-mm>.<reverse domain>[:<name>]'");
    expect(() => controller({ subsystemNqn: 'nqn.2014-13.com.example' })).toThrow('is not an NQN');
    expect(() => controller({ subsystemNqn: 'nqn.2014-08.org.nvmexpress:uuid:not-a-uuid' })).toThrow("must end in a UUID after 'nqn.2014-08.org.nvmexpress:uuid:'");
    expect(() => controller({ subsystemNqn: `nqn.2014-08.com.example:${'x'.repeat(200)}` })).toThrow('subsystemNqn must be 1-223 printable ASCII characters');
    expect(() => controller({ subsystemNqn: 'nqn.2014-08.org.nvmexpress:uuid:2f1d3a4b-5c6d-4e7f-8091-a2b3c4d5e6f7' })).not.toThrow();
  });

  it('rejects malformed files and invalid or duplicate configured values, and never overwrites them', async () => {
    const statePath = path.join(tempDir, 'id.json');
    fs.writeFileSync(statePath, '{ not json');
    await expect(loadOrCreateIdentity(statePath, { namespaceUris: [] })).rejects.toThrow(
      `identity file '${statePath}' is not valid JSON`,
    );
    fs.writeFileSync(statePath, JSON.stringify({ namespaces: [{ uri: 'memory:1M', nguid: 'xyz', eui64: '0', uuid: '' }] }));
    await expect(loadOrCreateIdentity(statePath, { namespaceUris: [] })).rejects.toThrow(
      `identity file '${statePath}': namespaces[0]: nguid must be 32 hex digits, not all zero, got "xyz"`,
    );
    expect(fs.readFileSync(statePath, 'utf8')).toContain('xyz');
    fs.rmSync(statePath);

    await expect(
      loadOrCreateIdentity(statePath, { namespaceUris: [], controller: { serialNumber: 'X'.repeat(21) } }),
    ).rejects.toThrow(`configured identity: serialNumber must be 1-20 printable ASCII characters, got "${'X'.repeat(21)}"`);
    await expect(
      loadOrCreateIdentity(statePath, { namespaceUris: [], controller: { subsystemNqn: 'iqn.2024-01.x' } }),
    ).rejects.toThrow("configured identity: subsystemNqn must start with 'nqn.', got \"iqn.2024-01.x\"");
    const nguid = '00112233445566778899aabbccddeeff';
    await expect(
      loadOrCreateIdentity(statePath, { namespaceUris: ['memory:1M', 'memory:2M'], namespaces: [{ nsid: 1, nguid }, { nsid: 2, nguid }] }),
    ).rejects.toThrow(`namespaces nsid 1 ('memory:1M') and nsid 2 ('memory:2M') have the same nguid ${nguid}`);
    expect(fs.existsSync(statePath)).toBe(false);
  });

  it('derives the default path next to the first file namespace, and persists nothing without a path', async () => {
    const specs = (uris: string[]): NamespaceSpec[] => uris.map((uri) => parseNamespaceUri(uri));
    expect(defaultIdentityPath(specs(['memory:1M', 'file:/srv/b.img', 'file:/srv/c.img']))).toBe(
      '/srv/b.img.vfiod.json',
    );
    expect(defaultIdentityPath(specs(['file:/dev/sdb', 'file:/srv/c.img']))).toBe('/srv/c.img.vfiod.json');
    expect(defaultIdentityPath(specs(['memory:1M']))).toBeUndefined();

    const one = await loadOrCreateIdentity(undefined, { namespaceUris: ['memory:1M'], controller: { modelNumber: 'M' } });
    const two = await loadOrCreateIdentity(undefined, { namespaceUris: ['memory:1M'] });
    expect(one.controller.modelNumber).toBe('M');
    expect(one.controller.serialNumber).not.toBe(two.controller.serialNumber);
    expect(fs.readdirSync(tempDir)).toEqual([]);
  });

  it('never replaces a file that is not a vfiod identity file: foreign JSON, a symlink, a FIFO', async () => {
    const foreign = path.join(tempDir, 'package.json');
    const text = JSON.stringify({ name: 'app', version: '1.0.0', dependencies: {} }, null, 2);
    fs.writeFileSync(foreign, text);
    const refused = await loadOrCreateIdentity(foreign, { namespaceUris: ['memory:1M'] }).then(() => undefined, (e: unknown) => e);
    expect(refused).toBeInstanceOf(IdentityFileRefused);
    expect((refused as IdentityFileRefused).reason).toBe('IDENTITY_FILE_FOREIGN');
    expect((refused as Error).message).toContain(`identity file '${foreign}' exists and is not a vfiod identity file`);
    expect((refused as Error).message).toContain('its keys are "dependencies", "name", "version"');
    expect(() => checkIdentityFileWritable(foreign)).toThrow('refusing to replace it');
    expect(fs.readFileSync(foreign, 'utf8')).toBe(text);
    fs.writeFileSync(foreign, JSON.stringify({ format: 'something-else/2', controller: {} }));
    expect(() => checkIdentityFileWritable(foreign)).toThrow('its format is "something-else/2"');

    const link = path.join(tempDir, 'link.json');
    fs.symlinkSync(foreign, link);
    await expect(loadOrCreateIdentity(link, { namespaceUris: [] })).rejects.toThrow('is a symbolic link');
    const fifo = path.join(tempDir, 'fifo.json');
    execFileSync('mkfifo', [fifo]);
    await expect(loadOrCreateIdentity(fifo, { namespaceUris: [] })).rejects.toThrow('is not a regular file');
    expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
  });

  it('takes over an identity file written before the format field, keeping its ids', async () => {
    const statePath = path.join(tempDir, 'old.json');
    const current = await loadOrCreateIdentity(statePath, { namespaceUris: ['memory:1M'] });
    fs.writeFileSync(statePath, JSON.stringify({ controller: current.controller, namespaces: current.namespaces }));
    expect(() => checkIdentityFileWritable(statePath)).not.toThrow();
    expect(await loadOrCreateIdentity(statePath, { namespaceUris: ['memory:1M'] })).toEqual(current);
    expect(JSON.parse(fs.readFileSync(statePath, 'utf8'))).toMatchObject({ format: 'vfiod-identity/1' });
  });
});
