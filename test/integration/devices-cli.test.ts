import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/common.js';
import { runDevices } from '../../src/cli/devices.js';
import { type FakeHost, standardHost } from '../helpers/fake-sysfs.js';

let host: FakeHost;
let out: string;
let err: string;

beforeEach(() => {
  host = standardHost();
  out = '';
  err = '';
});
afterEach(() => host.cleanup());

function cli(...args: string[]): Promise<number> {
  out = '';
  err = '';
  return runDevices(
    [...args, '--state', path.join(host.root, 'claims.db'), '--sysfs-root', host.roots.sysfs, '--dev-root', host.roots.dev, '--proc-root', host.roots.proc],
    { stdout: (t) => void (out += t), stderr: (t) => void (err += t), writer: host.writer, prober: host.prober, pollMs: 5 },
  );
}

describe('vfiod devices', () => {
  it('lists devices as a table and as JSON, with selectors', async () => {
    expect(await cli('list')).toBe(EXIT.ok);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^BDF\s+ID\s+CLASS\s+DRIVER\s+GROUP\s+NUMA\s+SR-IOV\s+STATUS\s+NOTES$/);
    expect(lines).toHaveLength(16);
    expect(out).toMatch(/0000:06:00\.0\s+144d:a80a\s+nvme\(010802\)\s+nvme\s+9\s+-\s+-\s+in-use\s+\/dev\/nvme0n1p2 is mounted on \//);
    expect(out).toMatch(/0000:05:00\.4 .* vfio\(vendor\)/);
    expect(await cli('list', '--pf', '01:00.0', '--json')).toBe(EXIT.ok);
    expect((JSON.parse(out) as Array<{ bdf: string }>).map((d) => d.bdf)).toEqual(['0000:01:00.1', '0000:01:00.2', '0000:01:00.3']);
    expect(await cli('list', '--class', 'display', '--id', '1002:73bf')).toBe(EXIT.ok);
    expect(out.trimEnd().split('\n')).toHaveLength(2);
    expect(await cli('list', '--class', 'gpu')).toBe(EXIT.usage);
    expect(err).toContain('--class must be one of');
  });

  it('shows one device', async () => {
    expect(await cli('show', '01:00.0')).toBe(EXIT.ok);
    expect(out).toContain('sr-iov:          3/8 VFs, drivers_autoprobe on [0000:01:00.1, 0000:01:00.2, 0000:01:00.3]');
    expect(out).toContain('BARs:            BAR0 16K');
    expect(out).toContain('claim:           none');
    expect(await cli('show', '0000:09:00.0')).toBe(EXIT.notFound);
    expect(await cli('show', 'nonsense')).toBe(EXIT.usage);
  });

  it('prepares, shows the claim, lists it as claimed and releases', async () => {
    expect(await cli('prepare', '0000:01:00.1', '--owner', 'vm1')).toBe(EXIT.ok);
    expect(out).toContain(`prepared 0000:01:00.1 for vm1: ${host.roots.dev}/vfio/3`);
    expect(out).toContain('was nvme');
    expect(await cli('prepare', '0000:01:00.1', '--owner', 'vm1')).toBe(EXIT.ok);
    expect(out).toContain('already prepared');
    expect(await cli('prepare', '0000:01:00.1', '--owner', 'vm2')).toBe(EXIT.busy);
    expect(err).toContain('claimed by vm1');
    expect(await cli('list', '0000:01:00.1')).toBe(EXIT.ok);
    expect(out).toContain('claimed:vm1');
    expect(await cli('show', '0000:01:00.1', '--json')).toBe(EXIT.ok);
    expect(JSON.parse(out)).toMatchObject({ driver: 'vfio-pci', claim: { owner: 'vm1', state: 'prepared', originalDriver: 'nvme' } });
    host.holdOpen(900, 'qemu', host.groupDevPath(3));
    expect(await cli('release', '0000:01:00.1', '--owner', 'vm1', '--wait', '0.05')).toBe(EXIT.busy);
    expect(err).toContain('pid 900 (qemu)');
    host.exitProcess(900);
    expect(await cli('release', '0000:01:00.1', '--owner', 'vm1')).toBe(EXIT.ok);
    expect(out).toContain('restored to nvme');
    expect(out).toContain('sriov_drivers_autoprobe restored on 0000:01:00.0');
    expect(host.driverOf('0000:01:00.1')).toBe('nvme');
  });

  it('reports refusals with exit codes and JSON errors', async () => {
    expect(await cli('prepare', '0000:06:00.0', '--owner', 'vm1', '--json')).toBe(EXIT.failed);
    expect(JSON.parse(out)).toMatchObject({ error: { code: 'FAILED_PRECONDITION', inUse: expect.any(Array) } });
    expect(await cli('prepare', '0000:06:00.0', '--owner', 'vm1', '--force')).toBe(EXIT.ok);
    expect(out).toContain('forced over: 0000:06:00.0: /dev/nvme0n1p2 is mounted on /');
    expect(await cli('prepare', '0000:01:00.1')).toBe(EXIT.usage);
    expect(err).toContain('--owner');
    expect(await cli('release', '0000:01:00.1', '--owner', 'vm1')).toBe(EXIT.notFound);
    expect(await cli('frobnicate')).toBe(EXIT.usage);
  });

  it('reconciles and flags devices needing attention', async () => {
    expect(await cli('reconcile')).toBe(EXIT.ok);
    expect(out).toBe('nothing to reconcile\n');
    host.writer.write(path.join(host.devDir('0000:01:00.2'), 'driver_override'), 'vfio-pci');
    host.writer.write(path.join(host.roots.sysfs, 'bus/pci/drivers_probe'), '0000:01:00.2');
    expect(await cli('reconcile', '--json')).toBe(EXIT.attention);
    expect(JSON.parse(out)).toEqual([expect.objectContaining({ bdf: '0000:01:00.2', action: 'attention' })]);
  });
});
