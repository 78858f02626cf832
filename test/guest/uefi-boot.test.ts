/**
 * UEFI boot from a vfiod namespace (issue 10, section 3): a real QEMU (>= 10.1, vfio-user-pci, bootindex=0, no other
 * disk) with OVMF boots from an EFI System Partition that this test writes into the file namespace's backing file.
 * OVMF's own NVMe driver reads the ESP and starts systemd-boot, systemd-boot loads the host's kernel and an
 * initramfs from it, and the booted Linux then drives the same controller with its nvme driver: it reads the marker
 * this test wrote outside the ESP, writes its own and flushes. The test checks the serial console and the host file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  buildBootDisk, buildInitramfs, readAt, REPO, startServe, startUefiVm, uefiGuestSetup, writeAt,
  type DiskLayout, type Served, type UefiSetup, type UefiVm,
} from '../../testbed/uefi.js';

const probed = uefiGuestSetup();
const unavailable = 'reason' in probed ? probed.reason : undefined;
if (unavailable) console.log(`skipping the UEFI boot test: ${unavailable}`);
const built = existsSync(path.join(REPO, 'dist', 'cli', 'main.js'));
if (!built) console.log('skipping the UEFI boot test: dist/ not built (npx tsc -p tsconfig.json)');

/** Generous: OVMF + a kernel under TCG on a busy 2-core machine takes minutes. */
const BOOT_DEADLINE_MS = 12 * 60_000;

describe.skipIf(unavailable !== undefined || !built)('UEFI boot from a vfiod namespace (OVMF, QEMU vfio-user-pci)', () => {
  const setup = (probed as { setup: UefiSetup }).setup;
  let workDir: string;
  let image: string;
  let layout: DiskLayout;
  let served: Served | undefined;
  let vm: UefiVm | undefined;
  let vfiodExit: number | null | undefined;
  let qemuExit: number | null | undefined;
  const hostMarker = `vfiod-uefi-test ${randomBytes(12).toString('hex')}`;
  const started = Date.now();
  const seen: Record<string, string> = {};

  beforeAll(async () => {
    workDir = mkdtempSync(path.join(os.tmpdir(), 'vfiod-uefi-'));
    image = path.join(workDir, 'disk.img');
    const initrd = buildInitramfs(setup, { init: path.join(REPO, 'testbed', 'uefi-init.sh') });
    // quiet: the kernel's own lines would slow the serial console; the guest prints what it checks.
    const cmdline = `console=ttyS0 panic=-1 quiet no_timer_check nvme_core.multipath=N vfiod.test=${randomBytes(4).toString('hex')}`;
    layout = buildBootDisk(setup, { image, sizeBytes: 256 << 20, initrd, cmdline, workDir });
    writeAt(image, layout.data.offset, Buffer.from(`${hostMarker}\n`));

    served = await startServe(['--socket', path.join(workDir, 'nvme0.sock'), '--namespace', `file:${image}`, '--log-level', 'debug'], {
      logFile: path.join(workDir, 'vfiod.log'),
    });
    vm = startUefiVm(setup, { socket: path.join(workDir, 'nvme0.sock'), workDir });
    await vm.output.waitFor(/uefi-guest: (done|FAILED.*)/, BOOT_DEADLINE_MS);
    qemuExit = await vm.output.exited; // the guest powers off
    for (const match of vm.output.text.matchAll(/^uefi-guest: (\S+) ?(.*?)\r?$/gm)) seen[match[1]!] ??= match[2]!;
    vfiodExit = await served.stop();
  }, BOOT_DEADLINE_MS + 120_000);

  afterAll(() => {
    vm?.kill();
    served?.child.kill('SIGKILL');
    const ok = vfiodExit === 0 && qemuExit === 0 && seen['done'] !== undefined;
    console.log(`UEFI boot test: ${((Date.now() - started) / 1000).toFixed(0)} s, ${setup.qemuVersion}, ${path.basename(setup.ovmfCode)}, kernel ${setup.kernelVersion}`);
    if (ok && process.env['VFIOD_TESTBED_KEEP'] !== '1') rmSync(workDir, { recursive: true, force: true });
    else console.log(`UEFI boot test: work dir kept: ${workDir}`);
  });

  it('OVMF boots the NVMe boot option from the vfio-user device (the only disk)', () => {
    // No direct kernel boot, no other disk: the flash drives are OVMF's code and variables, the one device is vfiod.
    const args = vm!.args;
    expect(args).not.toContain('-kernel');
    const values = (option: string): string[] => args.flatMap((arg, i) => (args[i - 1] === option ? [arg] : []));
    expect(values('-drive').every((drive) => drive.startsWith('if=pflash,'))).toBe(true);
    expect(values('-device').map((device) => JSON.parse(device) as Record<string, unknown>)).toEqual([
      expect.objectContaining({ driver: 'vfio-user-pci', bootindex: 0 }),
    ]);
    const text = vm!.output.text;
    // OVMF's boot manager names the option it loads and its device path: an NVMe namespace on a PCI function.
    const loading = /BdsDxe: loading (Boot[0-9A-F]{4}) "([^"]*)" from (\S+)/.exec(text);
    expect(loading, 'OVMF BdsDxe "loading" line').not.toBeNull();
    expect(loading![3]).toMatch(/^PciRoot\(0x0\)\/Pci\(0x[0-9A-F]+,0x0\)\/NVMe\(0x1,/i);
    expect(text).toContain(`BdsDxe: starting ${loading![1]}`);
    expect(seen['efi']).toBe('yes');
  });

  it('systemd-boot ran from the ESP on the namespace and started the entry with its command line', () => {
    expect(seen['loader-partuuid']).toBe(layout.esp.uuid);
    expect(seen['cmdline']?.trim()).toContain(layout.cmdline);
  });

  it('the booted Linux drives the same vfiod controller', () => {
    expect(seen['FAILED']).toBeUndefined();
    const controller = /^(.*) serial (\S+) pci (\S+) vendor (\S+)$/.exec(seen['controller'] ?? '');
    expect(controller, `controller line: ${seen['controller']}`).not.toBeNull();
    expect(controller![2]).toBe(served!.listening['serialNumber']);
    expect(controller![4]).toBe('0x4e58'); // vfiod's PCI vendor id (DEFAULT_PCI_IDS)
    expect(seen['namespace']).toBe(`${layout.sizeBytes / 512} sectors`);
  });

  it('the guest read the host marker and its flushed write is in the host file', () => {
    expect(seen['host-marker']).toBe(hostMarker);
    const guestMarker = seen['guest-marker'];
    expect(guestMarker).toMatch(new RegExp(`^guest [0-9a-f-]{36} read \\[${hostMarker}\\]$`));
    const onDisk = readAt(image, layout.data.offset + 8 * 512, 512);
    expect(onDisk.toString('utf8').replace(/\0+$/, '')).toBe(`${guestMarker}\n`);
    // The ESP is untouched by the guest and the host marker still there.
    expect(readAt(image, layout.data.offset, hostMarker.length).toString()).toBe(hostMarker);
  });

  it('vfiod saw one client: OVMF (polled) enabled the controller, Linux reset and re-enabled it, then shut it down', () => {
    const records = served!.records();
    const messages = records.map((record) => String(record['msg']));
    expect(messages.filter((msg) => msg === 'client connected')).toHaveLength(1);
    const enables = messages.flatMap((msg, i) => (msg === 'controller enabled' ? [i] : []));
    expect(enables.length).toBeGreaterThanOrEqual(2);
    // OVMF's NVMe driver polls its completion queues: MSI-X is first enabled by Linux, after OVMF's enable.
    expect(messages.indexOf('MSI-X enabled')).toBeGreaterThan(enables[0]!);
    // Linux takes over the controller OVMF left enabled: CC.EN cleared (a controller reset), then enabled again.
    const handover = records.findIndex((record, i) => i > enables[0]! && record['msg'] === 'controller reset' && record['reason'] === 'CC.EN cleared');
    expect(handover).toBeGreaterThan(enables[0]!);
    expect(enables.some((i) => i > handover)).toBe(true);
    // poweroff: the guest's nvme driver shuts the controller down and vfiod reports the data durable.
    expect(records.find((record) => record['msg'] === 'shutdown complete')).toMatchObject({ durable: true });
    expect(records.filter((record) => record['level'] === 'error')).toEqual([]);
  });

  it('the guest powered off, and vfiod stopped cleanly (exit 0 on SIGTERM)', () => {
    expect(qemuExit).toBe(0);
    expect(vfiodExit).toBe(0);
    expect(readFileSync(path.join(workDir, 'vfiod.log'), 'utf8')).toContain('"msg":"stopped"');
  });
});
