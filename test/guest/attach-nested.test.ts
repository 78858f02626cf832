/**
 * Attach end to end in a nested guest: the project's VFIO test guest (L1, testbed/vfio-guest.ts) runs
 * testbed/vfio-guest/nested-main.ts, which uses AttachmentManager + DeviceManager + the QMP adapter to
 * (a) hot-plug an NVMe VF into a running L2 QEMU guest that then sees the controller and its namespace, and hot-unplug
 *     it (DEVICE_DELETED) back to the nvme driver;
 * (b) start an L2 guest from staticConfig's QEMU arguments with the VF as boot device (bootindex=0, no kernel): SeaBIOS
 *     boots the 512-byte boot sector this test wrote to the VF's namespace, which prints a marker on COM1.
 * One L1 boot runs both. The L2 Linux boot under TCG-in-TCG dominates: ~2 minutes with build-kernel.sh's small kernel,
 * 4-8 minutes with Debian's on a busy host (docs/hypervisors.md has the measurements). Skips with the reason when the
 * VFIO guest cannot run (QEMU, static busybox, guest kernel ...) or SeaBIOS is missing.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  builtinKernelReason, cleanupVfioGuest, IOMMUFD_GUEST_KERNEL_DIR, REPO, runVfioGuest, vfioGuestUnavailableReason, type VfioGuestRun,
} from '../../testbed/vfio-guest.js';

const MARKER = 'VFIOD-NVME-BOOT-OK';
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

type R = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe.skipIf(reason !== undefined)('attach in a nested guest: QMP hot-plug/unplug of an NVMe VF, boot from it with a boot order', () => {
  let run: VfioGuestRun | undefined;
  let r: R = {};

  beforeAll(async () => {
    const small = builtinKernelReason(IOMMUFD_GUEST_KERNEL_DIR, L2_KERNEL_NEEDS);
    console.log(`attach-nested: L2 kernel: ${small ? `the L1 kernel with nvme modules (slow to boot; small kernel not used: ${small})` : `${IOMMUFD_GUEST_KERNEL_DIR}/vmlinux`}`);
    run = await runVfioGuest({
      script: path.join(REPO, 'testbed', 'vfio-guest', 'nested-guest.sh'),
      timeoutMs: 900_000,
      memoryMb: 2560,
      files: { 'bootsector.bin': markerBootSector(MARKER) },
      nested: {
        init: path.join(REPO, 'testbed', 'vfio-guest', 'nested-l2-init.sh'),
        modules: ['nvme'],
        kernelDir: IOMMUFD_GUEST_KERNEL_DIR,
        kernelNeeds: L2_KERNEL_NEEDS,
      },
    });
    r = (run.results ?? {}) as R;
    console.log(`attach-nested: L1 wall ${(run.wallMs / 1000).toFixed(1)} s, guest program ${((r.guestMs ?? 0) / 1000).toFixed(1)} s; ` +
      `L2 boot ${r.l2BootMs} ms, attach ${r.attachMs} ms, L2 saw it after ${r.l2SawNvmeMs} ms, detach ${r.detachMs} ms, boot marker after ${r.bootMarkerMs} ms`);
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

  it('attach prepared the VF (vfio-pci, claim for the VM) and hot-plugged it into an empty root port over QMP', () => {
    const a = r.attach as R;
    expect(a.changed).toBe(true);
    expect(a.attachment).toMatchObject({ vmId: 'l2', deviceId: 'vf0', hypervisor: 'qemu', state: 'attached', preparedByAttach: true, source: { kind: 'pci', bdf: r.vf } });
    expect(a.attachment.functions[0]).toMatchObject({ hostBdf: r.vf, vmmDeviceId: 'vf0', bus: 'rp1' });
    expect(r.driverWhileAttached).toBe('vfio-pci');
    expect(r.claimWhileAttached).toMatchObject({ owner: 'l2', state: 'prepared', originalDriver: 'nvme' });
    expect(r.attachmentsWhileAttached).toHaveLength(1);
  });

  it('L2 saw the NVMe controller and its namespace', () => {
    const lines = (r.l2HotplugConsole as string[]).join('\n');
    expect(lines).toMatch(/L2: nvme pci count 0 -> 1/);
    expect(lines).toMatch(/L2: controller nvme\d+ state=live/);
    expect(lines).toMatch(/L2: namespace nvme\d+n1 sectors=131072/); // the 64 MiB namespace
  });

  it('detach waited for DEVICE_DELETED and released the VF back to nvme; no claim or attachment is left', () => {
    expect(r.detach).toEqual({ vmId: 'l2', deviceId: 'vf0', released: [r.vf] });
    expect(r.driverAfterDetach).toBe('nvme');
    expect(r.controllerAfterDetach).toMatch(/^nvme\d+$/);
    expect(r.claimsAfterDetach).toBe(0);
    expect(r.attachmentsAfterDetach).toBe(0);
    expect(r.l2SawRemoval).toBe(true);
  });

  it('an L2 started from staticConfig (vfio-pci with bootindex=0, no kernel) booted from the VF: marker on its serial console', () => {
    expect(r.bootConfig.qemu.args).toEqual([
      '-device', 'pcie-root-port,id=vfiod-rp0,chassis=32,slot=0',
      '-device', `vfio-pci,host=${r.vf},id=boot0,bus=vfiod-rp0,bootindex=0`,
    ]);
    expect(r.l2BootConsole).toContain(MARKER);
    expect(r.bootRelease.devices).toEqual([{ bdf: r.vf, restoredDriver: 'nvme', restoredOverride: null, gone: false }]);
    expect(r.driverAfterBoot).toBe('nvme');
  });
});
