/**
 * Large BARs in a real guest: vfiod's QEMU configuration for a device with a 64 GiB 64-bit prefetchable BAR (root
 * port pref64-reserve, OVMF's X-PciMmio64Mb) is given to QEMU with OVMF, an ivshmem-plain on a sparse 64 GiB file
 * standing in for the GPU (its BAR2 is such a BAR), and OVMF assigns the BAR (QMP query-pci). A control VM with the
 * same arguments but an X-PciMmio64Mb too small for the BAR gets nothing assigned, so the check can fail. No guest OS
 * runs: the firmware's PCI enumeration is what is proved. Needs QEMU with OVMF (testbed/uefi.ts finds both).
 */
import { spawn } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { QmpConnection } from '../../src/hypervisor/qmp.js';
import { GIB } from '../../src/hypervisor/pci-window.js';
import { buildStaticConfig } from '../../src/hypervisor/static-config.js';
import { Output, REPO, uefiGuestSetup } from '../../testbed/uefi.js';
import { temporaryDir } from '../helpers/common.js';

const found = uefiGuestSetup({ vm: true });
const unavailable = 'reason' in found ? found.reason : undefined;
if (unavailable) console.warn(`large-bar: skipped: ${unavailable}`);

/** ivshmem-plain's BARs as sysfs would show them: BAR0 256 bytes of 32-bit registers, BAR2 the shared memory. */
const STAND_IN = '0000:00:00.0';
const BAR_SIZE = 64 * GIB;
const facts = { [STAND_IN]: { numaNode: null, bars: [{ index: 0, size: 256, flags: 0x40200 }, { index: 2, size: BAR_SIZE, flags: 0x14220c }] } };
/** OVMF's X-PciMmio64Mb of the control VM: 32 GiB, half the BAR. */
const TOO_SMALL_MB = 32 * 1024;

interface PciNode { qdev_id?: string; regions: Array<{ bar: number; address: number; size: number }>; pci_bridge?: { devices?: PciNode[] } }
const flatten = (devices: PciNode[]): PciNode[] => devices.flatMap((d) => [d, ...flatten(d.pci_bridge?.devices ?? [])]);

describe.skipIf(unavailable)('a 64 GiB BAR behind vfiod\'s root port, OVMF', () => {
  const dir = temporaryDir('vfiod-large-bar-');
  const stops: Array<() => void> = [];
  afterAll(() => {
    for (const stop of stops) stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function startVm(name: string, args: string[]): { output: Output; qmp: string } {
    const { setup } = found as Exclude<typeof found, { reason: string }>;
    const vars = path.join(dir, `${name}-vars.fd`);
    copyFileSync(setup.ovmfVars, vars);
    const qmp = path.join(dir, `${name}.qmp`);
    const child = spawn('sh', [path.join(REPO, 'testbed', 'qemu-launch.sh'), '900', setup.qemu,
      '-accel', 'tcg', '-cpu', 'max', '-m', '512M', '-machine', 'q35', '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio',
      '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${setup.ovmfCode}`, '-drive', `if=pflash,format=raw,unit=1,file=${vars}`,
      '-qmp', `unix:${qmp},server=on,wait=off`,
      '-object', `memory-backend-file,id=bar0mem,mem-path=${path.join(dir, `${name}-bar.img`)},size=${BAR_SIZE},share=on`,
      ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    stops.push(() => child.stdin?.destroy());
    return { output: new Output(name, child, path.join(dir, `${name}-console.log`)), qmp };
  }

  async function bar2(name: string, qmpPath: string): Promise<{ address: number; size: number }> {
    const qmp = await QmpConnection.connect(qmpPath, { vmId: name, timeoutMs: 30_000 });
    try {
      const buses = await qmp.execute<Array<{ devices: PciNode[] }>>('query-pci', undefined, 30_000);
      const device = flatten(buses.flatMap((b) => b.devices)).find((d) => d.qdev_id === 'bar0dev');
      const region = device?.regions.find((r) => r.bar === 2);
      if (!region) throw new Error(`${name}: query-pci has no BAR2 of bar0dev`);
      return { address: region.address, size: region.size };
    } finally {
      await qmp.close();
    }
  }

  it('OVMF assigns the BAR with vfiod\'s pref64-reserve and X-PciMmio64Mb, and not with a window too small', async () => {
    const config = buildStaticConfig({ hypervisor: 'qemu', devices: [{ source: { kind: 'pci', bdf: STAND_IN }, id: 'bar0dev' }], hostFunctions: facts });
    const bus = config.qemu!.buses['bar0dev'];
    const args = config.qemu!.args.map((a) => (a.startsWith('vfio-pci,') ? `ivshmem-plain,memdev=bar0mem,id=bar0dev,bus=${bus}` : a));
    expect(args).toEqual([
      '-device', 'pcie-root-port,id=vfiod-rp0,chassis=32,slot=0,pref64-reserve=64G',
      '-device', 'ivshmem-plain,memdev=bar0mem,id=bar0dev,bus=vfiod-rp0',
      '-fw_cfg', 'name=opt/ovmf/X-PciMmio64Mb,string=131072',
    ]);
    const started = Date.now();
    const good = startVm('vfiod', args);
    const control = startVm('too-small', args.map((a) => a.replace(/X-PciMmio64Mb,string=\d+/, `X-PciMmio64Mb,string=${TOO_SMALL_MB}`)));

    // BDS starts after PCI enumeration: by then every BAR OVMF could place is assigned.
    await good.output.waitFor(/BdsDxe: (loading|failed|No bootable)/, 600_000);
    const elapsed = Date.now() - started;
    const assigned = await bar2('vfiod', good.qmp);
    expect(assigned.size).toBe(BAR_SIZE);
    expect(assigned.address).toBeGreaterThan(0);
    expect(assigned.address % BAR_SIZE).toBe(0);

    // The control ran as long again (twice the time the good VM needed): OVMF never got past enumeration.
    await new Promise((resolve) => setTimeout(resolve, elapsed));
    expect(control.output.text).not.toMatch(/BdsDxe/);
    expect((await bar2('too-small', control.qmp)).address).toBe(-1);
  });
});
