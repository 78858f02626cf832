/**
 * The test bed's environment knobs: one family, VFIOD_TESTBED_<NAME>, read here (docs/testing.md has the table).
 *
 * | knob | effect |
 * |---|---|
 * | VFIOD_TESTBED_DISABLE=1 | skip every test that boots QEMU (each says so) |
 * | VFIOD_TESTBED_KEEP=1 | keep each guest's work directory (console log, disks, vfiod log) |
 * | VFIOD_TESTBED_QEMU | qemu-system-x86_64 for the nvmet target and the VFIO guest (default: the host's) |
 * | VFIOD_TESTBED_QEMU_VFIO_USER | a QEMU >= 10.1 with vfio-user-pci (default: scripts/qemu-vfio-user.sh's) |
 * | VFIOD_TESTBED_KERNEL | the guest kernel: a /boot/vmlinuz-* version or path (default: a fitting one of /boot) |
 * | VFIOD_TESTBED_OVMF_DIR | OVMF_CODE/OVMF_VARS for UEFI guests (default: next to the vfio-user QEMU) |
 * | VFIOD_TESTBED_ACCEL | QEMU accelerator, tcg (default) or kvm |
 * | VFIOD_TESTBED_TIMEOUT | hard limit for one guest, seconds (each harness has its own default) |
 * | VFIOD_TESTBED_BOOT_TIMEOUT | how long the nvmet target may take to boot, seconds |
 * | VFIOD_TESTBED_NVMET_SMP, _NVMET_MEM, _NVMET_PVH | the nvmet target's vCPUs, MiB of RAM, PVH boot (0 = off) |
 * | VFIOD_TESTBED_IOMMUFD_KERNEL_DIR | where testbed/vfio-guest/build-kernel.sh puts the iommufd guest kernel |
 */

/** A knob's value; unset and empty are the same. */
export function env(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? undefined : value;
}

/** A knob that must be a positive integer when set. */
export function envInt(name: string, fallback: number): number {
  const value = env(name);
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name}=${value} is not a positive integer`);
  return n;
}
