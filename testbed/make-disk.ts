/**
 * The quickstart's guest disk (docs/quickstart.md): `npx tsx testbed/make-disk.ts <image> [size]` writes a GPT
 * disk image (default 1G, sparse) whose ESP holds systemd-boot, this host's /boot kernel and a small initramfs
 * (busybox, the nvme modules, lsblk and nvme-cli from the host, testbed/quickstart-init.sh as /init). Served by
 * `vfiod serve --namespace file:<image>`, OVMF boots it through the vfio-user-pci device.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { which } from './guest-kernel.js';
import { buildBootDisk, buildInitramfs, REPO, uefiGuestSetup } from './uefi.js';

const [image, sizeText = '1G'] = process.argv.slice(2);
const units: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 };
const size = /^(\d+)([KMG]?)$/.exec(sizeText);
if (!image || !size) {
  console.error('usage: npx tsx testbed/make-disk.ts <image> [size, e.g. 1G (at least 128M)]');
  process.exit(2);
}
const sizeBytes = Number(size[1]) * units[size[2]!]!;
const probed = uefiGuestSetup({ vm: false });
if ('reason' in probed) {
  console.error(`make-disk: ${probed.reason}`);
  process.exit(1);
}
const { setup } = probed;
const lsblk = which('lsblk');
const nvme = which('nvme');
if (!lsblk || !nvme) {
  console.error(`make-disk: ${lsblk ? 'nvme' : 'lsblk'} not found (apt-get install ${lsblk ? 'nvme-cli' : 'util-linux'}): the guest runs the host's copy`);
  process.exit(1);
}
const work = mkdtempSync(path.join(os.tmpdir(), 'vfiod-make-disk-'));
try {
  const initrd = buildInitramfs(setup, {
    init: path.join(REPO, 'testbed', 'quickstart-init.sh'),
    binaries: [lsblk, nvme],
  });
  const layout = buildBootDisk(setup, {
    image, sizeBytes, initrd, workDir: work, cmdline: 'console=ttyS0 quiet panic=-1 no_timer_check',
  });
  const mib = (bytes: number): string => `${Math.round(bytes / 2 ** 20)} MiB`;
  console.log(`${image}: ${mib(sizeBytes)} GPT disk`);
  console.log(`  partition 1: EFI System, ${mib(layout.esp.size)} at ${mib(layout.esp.offset)}: systemd-boot, kernel ${setup.kernelVersion}, initramfs ${mib(initrd.length)}`);
  console.log(`  partition 2: data, ${mib(layout.data.size)} at ${mib(layout.data.offset)}`);
} catch (error) {
  console.error(`make-disk: ${(error as Error).message}`);
  process.exitCode = 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
