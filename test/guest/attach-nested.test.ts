/**
 * Attach end to end in a nested guest: the project's VFIO test guest (L1, testbed/vfio-guest.ts) runs
 * testbed/vfio-guest/nested-main.ts, which uses AttachmentManager + DeviceManager + the QMP adapter to
 * (a) hot-plug an NVMe VF into a running L2 QEMU guest that then sees the controller and its namespace, and hot-unplug
 *     it (DEVICE_DELETED) back to the nvme driver;
 * (b) start an L2 guest from staticConfig's QEMU arguments with the VF as boot device (bootindex=0, no kernel): SeaBIOS
 *     boots the 512-byte boot sector this test wrote to the VF's namespace, which prints a marker on COM1.
 * In (a) L2 writes a random pattern to the VF's namespace and reads it back; after the detach L1 reads the same range
 * through its own nvme driver and the SHA-256s must agree (guest I/O on a passed-through VF, end to end).
 * iommufd: when build-kernel.sh's 6.12 kernel (IOMMUFD, VFIO cdev) and a QEMU >= 9.0 (scripts/qemu-vfio-user.sh's
 * 11.1) are there, L1 boots that kernel and runs L2 with that QEMU: (b) gives the VF through iommufd
 * (-object iommufd + vfio-pci iommufd=,sysfsdev=) and (a) runs twice on the same L2, through the group and then
 * through iommufd (QMP object-add + device_add iommufd=); the L2 QEMU's open files show which it used. Without them
 * the iommufd checks skip with the reason and the rest runs on the L1 kernel with Debian's QEMU.
 * Large BAR: L1 also gets an ivshmem-plain with a 1 GiB memory backend (a 64-bit prefetchable BAR2, the GPU stand-in of
 * large-bar.test.ts) behind its own root port; (b) passes it through to the boot L2 as well, with the root port's
 * pref64-reserve sized by vfiod from L1's sysfs, and L2's SeaBIOS must assign the BAR (query-pci).
 * One L1 boot runs everything. The L2 Linux boot under TCG-in-TCG dominates: ~2 minutes with build-kernel.sh's small
 * kernel, 4-8 minutes with Debian's on a busy host (docs/hypervisors.md has the measurements). Skips with the reason
 * when the VFIO guest cannot run (QEMU, static busybox, guest kernel ...) or SeaBIOS is missing.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  builtinKernelReason, cleanupVfioGuest, IOMMUFD_GUEST_KERNEL_DIR, REPO, runVfioGuest, vfioGuestUnavailableReason, type VfioGuestRun,
} from '../../testbed/vfio-guest.js';
import { vfioUserQemu } from '../../testbed/vfio-user-vm.js';

const MARKER = 'VFIOD-NVME-BOOT-OK';
/** The large-BAR stand-in's BAR2: ivshmem-plain maps its whole memory backend there. */
const BIG_BAR = 2 ** 30;
/**
 * L2 boots the small built-in kernel of testbed/vfio-guest/build-kernel.sh when it has what L2 needs (seconds instead
 * of minutes under TCG-in-TCG), else the L1 kernel with the nvme modules.
 */
const L2_KERNEL_NEEDS = [
  'PVH', 'BLK_DEV_INITRD', 'DEVTMPFS', 'SERIAL_8250_CONSOLE', 'PCIEPORTBUS', 'PCI_MSI', 'BLK_DEV_NVME',
  // q35 (QEMU >= 6.1) hot-plugs into root ports through ACPI (acpi-pcihp); native PCIe hot-plug when that is off
  'ACPI', 'HOTPLUG_PCI_ACPI', 'HOTPLUG_PCI_PCIE',
];

/**
 * 16-bit real-mode boot sector: writes MARKER + CRLF to COM1 (port 0x3f8) and halts.
 *   cli; xor ax,ax; mov ds,ax; mov si,msg; mov dx,0x3f8
 *   next: lodsb; test al,al; jz done; out dx,al; jmp next
 *   done: hlt; jmp done
 */
export function markerBootSector(marker: string): Buffer {
  const sector = Buffer.alloc(512);
  const code = [0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0xbe, 0x16, 0x7c, 0xba, 0xf8, 0x03, 0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8, 0xf4, 0xeb, 0xfd];
  Buffer.from(code).copy(sector, 0);
  Buffer.from(`${marker}\r\n\0`, 'latin1').copy(sector, code.length); // msg at 0x7c00 + 22 = 0x7c16
  sector.writeUInt16LE(0xaa55, 510);
  return sector;
}

function unavailable(): string | undefined {
  const reason = vfioGuestUnavailableReason();
  if (reason) return reason;
  if (!existsSync('/usr/share/seabios/bios-256k.bin') && !existsSync('/usr/share/qemu/bios-256k.bin')) return 'SeaBIOS not found (apt-get install seabios)';
  return undefined;
}

const reason = unavailable();
if (reason) console.warn(`attach-nested: skipped: ${reason}`);

/** The QEMU for L2 when the iommufd proof can run (the 6.12 guest kernel for L1, a QEMU with iommufd), or why not. */
function iommufdSetup(): { qemu: string } | { reason: string } {
  const kernel = vfioGuestUnavailableReason(IOMMUFD_GUEST_KERNEL_DIR);
  if (kernel) return { reason: `L1 needs the iommufd guest kernel: ${kernel}` };
  const found = vfioUserQemu();
  if ('reason' in found) return { reason: `L2 needs a QEMU >= 9.0 for iommufd: ${found.reason}` };
  // L1 sees the host's / over 9p except its tmpfs dirs
  if (/^\/(tmp|run|var\/tmp|root)\//.test(found.qemu)) return { reason: `${found.qemu} lives where the L1 guest has a tmpfs` };
  const help = spawnSync(found.qemu, ['-object', 'iommufd,help'], { encoding: 'utf8', timeout: 60_000 });
  if (help.status !== 0) return { reason: `${found.qemu} (${found.version}) has no iommufd object: ${(help.stderr ?? '').trim()}` };
  return { qemu: found.qemu };
}
const iommufd = reason ? { reason } : iommufdSetup();
const iommufdReason = 'reason' in iommufd ? iommufd.reason : undefined;
if (!reason && iommufdReason) console.warn(`attach-nested: iommufd checks skipped: ${iommufdReason}`);

type R = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe.skipIf(reason !== undefined)('attach in a nested guest: QMP hot-plug/unplug of an NVMe VF, boot from it with a boot order', () => {
  let run: VfioGuestRun | undefined;
  let r: R = {};

  beforeAll(async () => {
    const small = builtinKernelReason(IOMMUFD_GUEST_KERNEL_DIR, L2_KERNEL_NEEDS);
    console.log(`attach-nested: L2 kernel: ${small ? `the L1 kernel with nvme modules (slow to boot; small kernel not used: ${small})` : `${IOMMUFD_GUEST_KERNEL_DIR}/vmlinux`}`);
    const setup = 'qemu' in iommufd ? { qemu: iommufd.qemu, iommufd: true } : { qemu: 'qemu-system-x86_64', iommufd: false };
    run = await runVfioGuest({
      script: path.join(REPO, 'testbed', 'vfio-guest', 'nested-guest.sh'),
      timeoutMs: 900_000,
      memoryMb: 2560,
      ...(setup.iommufd ? { kernel: IOMMUFD_GUEST_KERNEL_DIR } : {}),
      // the large-BAR stand-in, alone behind its root port (its own IOMMU group); its RAM is never touched
      qemuArgs: [
        '-object', `memory-backend-ram,id=bigbar,size=${BIG_BAR}`,
        '-device', 'pcie-root-port,id=rp9,chassis=9,slot=9', '-device', 'ivshmem-plain,memdev=bigbar,bus=rp9',
      ],
      files: { 'bootsector.bin': markerBootSector(MARKER), 'l1-setup.json': Buffer.from(JSON.stringify(setup)) },
      nested: {
        init: path.join(REPO, 'testbed', 'vfio-guest', 'nested-l2-init.sh'),
        modules: ['nvme'],
        kernelDir: IOMMUFD_GUEST_KERNEL_DIR,
        kernelNeeds: L2_KERNEL_NEEDS,
      },
    });
    r = (run.results ?? {}) as R;
    const rounds = ((r.hotplug ?? []) as R[]).map((h) => `${h.name}: attach ${h.attachMs} ms, L2 saw it after ${h.l2SawNvmeMs} ms, I/O after ${h.l2IoMs} ms more, detach ${h.detachMs} ms`);
    console.log(`attach-nested: L1 wall ${(run.wallMs / 1000).toFixed(1)} s, guest program ${((r.guestMs ?? 0) / 1000).toFixed(1)} s; ` +
      `L2 boot ${r.l2BootMs} ms, boot marker after ${r.bootMarkerMs} ms; ${rounds.join('; ')}`);
    if (!r.ok) {
      console.log(`guest steps:\n${(r.steps ?? []).join('\n')}\nerrors:\n${(r.errors ?? []).join('\n')}`);
      console.log(`L2 hot-plug console:\n${(r.l2HotplugConsole ?? []).join('\n')}\nL2 boot console:\n${r.l2BootConsole ?? ''}`);
      console.log(`L1 console (tail):\n${run.console.split('\n').slice(-40).join('\n')}`);
    }
  }, 960_000);

  afterAll(() => cleanupVfioGuest(run));

  it('the guest program ran to the end without errors', () => {
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(run!.exitCode).toBe(0);
  });

  it('the boot sector was written to the VF namespace through the host nvme driver', () => {
    expect(r.bootSector).toMatchObject({ readBack: 'identical' });
  });

  const round = (name: string): R => ((r.hotplug ?? []) as R[]).find((h) => h.name === name) ?? {};
  /** SHA-256 of a range of the L1 guest's NVMe backing file on this host: what the emulated device really stored. */
  const backingSha256 = (offset: number, bytes: number): string => {
    const buffer = Buffer.alloc(bytes);
    const fd = openSync(path.join(run!.workDir, 'nvm0.img'), 'r');
    try {
      readSync(fd, buffer, 0, bytes, offset);
    } finally {
      closeSync(fd);
    }
    return createHash('sha256').update(buffer).digest('hex');
  };

  it('attach prepared the VF (vfio-pci, claim for the VM) and hot-plugged it into an empty root port over QMP, through its group', () => {
    const h = round('group');
    const a = h.attach as R;
    expect(a.changed).toBe(true);
    expect(a.attachment).toMatchObject({ vmId: 'l2', deviceId: 'vf0', hypervisor: 'qemu', state: 'attached', preparedByAttach: true, source: { kind: 'pci', bdf: r.vf } });
    expect(a.attachment.functions[0]).toMatchObject({ hostBdf: r.vf, vmmDeviceId: 'vf0', bus: 'rp1', vfioBackend: 'group' });
    expect(h.driverWhileAttached).toBe('vfio-pci');
    expect(h.claimWhileAttached).toMatchObject({ owner: 'l2', state: 'prepared', originalDriver: 'nvme' });
    expect(h.attachmentsWhileAttached).toHaveLength(1);
    // QEMU opened the group (and the legacy container), not iommufd
    expect(h.vfioFiles).toContain(`/dev/vfio/${h.claimWhileAttached.iommuGroup}`);
    expect(h.vfioFiles).not.toContain('/dev/iommu');
  });

  it('L2 saw the NVMe controller and its namespace', () => {
    const lines = (r.l2HotplugConsole as string[]).join('\n');
    expect(lines).toMatch(/L2: nvme pci count 0 -> 1/);
    expect(lines).toMatch(/L2: controller nvme\d+ state=live/);
    expect(lines).toMatch(/L2: namespace nvme\d+n1 sectors=131072/); // the 64 MiB namespace
  });

  it('L2 wrote a 4 MiB random pattern to the VF namespace and read it back; L1 reads the same bytes through nvme afterwards', () => {
    const h = round('group');
    expect(h.l2Io).toMatchObject({ offset: 1 << 20, bytes: 4 << 20 });
    expect(h.l2Io.read).toBe(h.l2Io.wrote);
    expect(h.hostSha256).toBe(h.l2Io.wrote);
    expect(backingSha256(h.l2Io.offset, h.l2Io.bytes)).toBe(h.l2Io.wrote);
  });

  it('detach waited for DEVICE_DELETED and released the VF back to nvme; no claim or attachment is left', () => {
    const h = round('group');
    expect(h.detach).toEqual({ vmId: 'l2', deviceId: 'vf0', released: [r.vf] });
    expect(h.driverAfterDetach).toBe('nvme');
    expect(h.controllerAfterDetach).toMatch(/^nvme\d+$/);
    expect(h.claimsAfterDetach).toBe(0);
    expect(h.attachmentsAfterDetach).toBe(0);
    expect(h.l2SawRemoval).toBe(true);
  });

  it('an L2 started from staticConfig (vfio-pci with bootindex=0, no kernel) booted from the VF: marker on its serial console', () => {
    // one backend for the whole VM: the stand-in follows the VF (QEMU 11.1.3 aborts on a mix)
    const opened = (bdf: string): string => (r.setup.iommufd ? `iommufd=vfiod-iommufd0,sysfsdev=/sys/bus/pci/devices/${bdf}` : `host=${bdf}`);
    expect(r.bootConfig.qemu.args).toEqual([
      ...(r.setup.iommufd ? ['-object', 'iommufd,id=vfiod-iommufd0'] : []),
      '-device', 'pcie-root-port,id=vfiod-rp0,chassis=32,slot=0',
      '-device', `vfio-pci,${opened(r.vf)},id=boot0,bus=vfiod-rp0,bootindex=0`,
      '-device', 'pcie-root-port,id=vfiod-rp1,chassis=33,slot=1,pref64-reserve=1G',
      '-device', `vfio-pci,${opened(r.bigBar.bdf)},id=bar0,bus=vfiod-rp1`,
      // for OVMF: the 1 GiB window plus OVMF's default 32 GiB, rounded up to a power of two (SeaBIOS ignores it)
      '-fw_cfg', 'name=opt/ovmf/X-PciMmio64Mb,string=65536',
    ]);
    const backend = r.setup.iommufd ? 'iommufd' : 'group';
    expect(r.bootConfig.vfioBackends).toEqual({ boot0: backend, bar0: backend });
    expect(r.l2BootConsole).toContain(MARKER);
    expect(r.bootRelease.devices).toEqual([{ bdf: r.vf, restoredDriver: 'nvme', restoredOverride: null, gone: false }]);
    expect(r.driverAfterBoot).toBe('nvme');
  });

  it('large BAR in L2: vfiod sized the root port from L1\'s sysfs (pref64-reserve=1G) and L2\'s SeaBIOS assigned the passed-through 1 GiB BAR inside its window', () => {
    expect(r.bootConfig.pciWindow).toEqual({ aperture64Bytes: BIG_BAR, windows: { bar0: BIG_BAR }, ovmfMmio64Mb: 65536 });
    const bar2 = (r.l2BigBar.device.regions as R[]).find((g) => g.bar === 2)!;
    expect(bar2).toMatchObject({ type: 'memory', size: BIG_BAR, prefetch: true, mem_type_64: true });
    expect(bar2.address).toBeGreaterThan(0);
    expect(bar2.address).toBeLessThan(2 ** 52); // not the all-ones of an unassigned BAR
    expect(bar2.address % BIG_BAR).toBe(0);
    const window = r.l2BigBar.port.pci_bridge.bus.prefetchable_range;
    expect(bar2.address).toBeGreaterThanOrEqual(window.base);
    expect(bar2.address + BIG_BAR - 1).toBeLessThanOrEqual(window.limit);
    expect(r.bigBarRelease.devices).toEqual([{ bdf: r.bigBar.bdf, restoredDriver: null, restoredOverride: null, gone: false }]);
  });

  it.skipIf(iommufdReason !== undefined)('iommufd, static: the boot L2 QEMU opened /dev/iommu and the VF cdev, not the group', () => {
    expect(r.setup).toMatchObject({ iommufd: true });
    expect(r.bootVfioFiles).toContain('/dev/iommu');
    expect(r.bootVfioFiles.some((f: string) => /^\/dev\/vfio\/devices\/vfio\d+$/.test(f))).toBe(true);
    expect(r.bootVfioFiles.filter((f: string) => /^\/dev\/vfio\/(\d+|vfio)$/.test(f))).toEqual([]);
  });

  it.skipIf(iommufdReason !== undefined)('iommufd, hot-plug: object-add + device_add iommufd=; L2 did its I/O; detach gave the VF back', () => {
    const h = round('iommufd');
    expect(h.attach.attachment.functions[0]).toMatchObject({ hostBdf: r.vf, vmmDeviceId: 'vf0', bus: 'rp1', vfioBackend: 'iommufd' });
    expect(h.driverWhileAttached).toBe('vfio-pci');
    expect(h.vfioFiles).toContain('/dev/iommu');
    expect(h.vfioFiles.some((f: string) => /^\/dev\/vfio\/devices\/vfio\d+$/.test(f))).toBe(true);
    expect(h.vfioFiles.filter((f: string) => /^\/dev\/vfio\/(\d+|vfio)$/.test(f))).toEqual([]);
    expect(h.l2Io).toMatchObject({ offset: 9 << 20, bytes: 4 << 20 });
    expect(h.l2Io.read).toBe(h.l2Io.wrote);
    expect(h.hostSha256).toBe(h.l2Io.wrote);
    expect(backingSha256(h.l2Io.offset, h.l2Io.bytes)).toBe(h.l2Io.wrote);
    expect(h.detach).toEqual({ vmId: 'l2', deviceId: 'vf0', released: [r.vf] });
    expect(h.driverAfterDetach).toBe('nvme');
    expect(h.claimsAfterDetach).toBe(0);
    expect(h.l2SawRemoval).toBe(true);
  });
});
