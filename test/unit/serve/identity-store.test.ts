import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseNamespaceUri, type NamespaceSpec } from '../../../src/namespace/uri.js';
import { execFileSync } from 'node:child_process';
import { checkIdentityFileWritable, defaultIdentityPath, EUI64_PREFIX, IdentityFileRefused, loadOrCreateIdentity } from '../../../src/serve/identity-store.js';

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
      namespaces: [{ uuid: '2F1D3A4B-5C6D-4E7F-8091-A2B3C4D5E6F7' }],
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

  it('matches namespaces by backing file and keeps entries no longer configured', async () => {
    const statePath = path.join(tempDir, 'id.json');
    const first = await loadOrCreateIdentity(statePath, { namespaceUris: ['file:/srv/a.img?size=1G', 'memory:1M'] });
    // Same file with another size: same disk to the guest. The memory namespace is gone for now.
    const resized = await loadOrCreateIdentity(statePath, { namespaceUris: ['file:///srv/a.img?size=2G'] });
    expect(resized.namespaces[0]).toEqual({ ...first.namespaces[0], uri: 'file:///srv/a.img?size=2G' });
    const stored = JSON.parse(fs.readFileSync(statePath, 'utf8')) as { namespaces: Array<{ uri: string }> };
    expect(stored.namespaces.map((entry) => entry.uri)).toEqual(['file:///srv/a.img?size=2G', 'memory:1M']);
    // It comes back with its old ids; a new one gets new ids.
    const back = await loadOrCreateIdentity(statePath, {
      namespaceUris: ['memory:1M', 'file:/srv/a.img', 'memory:2M'],
    });
    expect(back.namespaces[0]).toEqual(first.namespaces[1]);
    expect(back.namespaces[1]!.nguid).toBe(first.namespaces[0]!.nguid);
    expect([first.namespaces[0]!.nguid, first.namespaces[1]!.nguid]).not.toContain(back.namespaces[2]!.nguid);
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
      loadOrCreateIdentity(statePath, { namespaceUris: ['memory:1M', 'memory:2M'], namespaces: [{ nguid }, { nguid }] }),
    ).rejects.toThrow(`namespaces 'memory:1M' and 'memory:2M' have the same nguid ${nguid}`);
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
