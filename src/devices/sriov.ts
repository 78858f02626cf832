/**
 * SR-IOV addressing: the kernel places VF i of a PF at routing ID PF + sriov_offset + i * sriov_stride (PCIe
 * SR-IOV "First VF Offset" and "VF Stride", which the PF's sysfs shows), so the VFs a sriov_numvfs write creates
 * are known before they exist. Pure reads.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type HostRoots, pciDeviceDir } from './host.js';
import { bdfOfRoutingId, routingIdOf } from '../util/pci-address.js';

function readNumber(file: string): number | undefined {
  try {
    const text = readFileSync(file, 'utf8').trim();
    return /^\d+$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

/** The addresses of VFs 0..count-1 of `pf`; undefined when sysfs has no sriov_offset/sriov_stride. */
export function virtfnBdfs(roots: HostRoots, pf: string, count: number): string[] | undefined {
  const dir = pciDeviceDir(roots, pf);
  const offset = readNumber(path.join(dir, 'sriov_offset'));
  const stride = readNumber(path.join(dir, 'sriov_stride'));
  if (offset === undefined || stride === undefined) return undefined;
  const { domain, rid } = routingIdOf(pf);
  return Array.from({ length: count }, (_, i) => bdfOfRoutingId(domain, rid + offset + i * stride));
}
