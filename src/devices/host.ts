/**
 * Where the host's kernel interfaces live, and how the manager writes to sysfs. Both are injectable so tests run
 * against a fake tree whose "kernel" reacts to writes.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';

export interface HostRoots {
  /** Usually /sys. */
  sysfs: string;
  /** Usually /dev. */
  dev: string;
  /** Usually /proc. */
  proc: string;
}

export const DEFAULT_ROOTS: HostRoots = { sysfs: '/sys', dev: '/dev', proc: '/proc' };

/** Performs one sysfs write. The fake implementation applies what the kernel would do. */
export interface SysfsWriter {
  write(file: string, value: string): void;
}

export const realSysfsWriter: SysfsWriter = {
  write(file, value) {
    writeFileSync(file, value);
  },
};

export const pciDevicesDir = (roots: HostRoots): string => path.join(roots.sysfs, 'bus/pci/devices');
export const pciDeviceDir = (roots: HostRoots, bdf: string): string => path.join(pciDevicesDir(roots), bdf);
export const pciDriversDir = (roots: HostRoots): string => path.join(roots.sysfs, 'bus/pci/drivers');
export const driversProbeFile = (roots: HostRoots): string => path.join(roots.sysfs, 'bus/pci/drivers_probe');
export const vfioGroupPath = (roots: HostRoots, group: number): string => path.join(roots.dev, 'vfio', String(group));
