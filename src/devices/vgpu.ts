/**
 * NVIDIA vGPU on SR-IOV (Ada Lovelace and newer, the "vendor-specific VFIO framework"): each VF stays on the
 * `nvidia` driver and has `nvidia/creatable_vgpu_types` (the profiles it can take now: a header line "ID : vGPU
 * Name", then one "<id> : <name>" per profile) and `nvidia/current_vgpu_type` (the selected profile's id, 0 for
 * none; writing an id selects it, writing 0 clears it). There is no mdev. Pure reads; writes go through the manager.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type HostRoots, pciDeviceDir } from './host.js';

/** current_vgpu_type when no profile is selected (and the value that clears one). */
export const NO_VGPU_TYPE = 0;

export interface VgpuType {
  id: number;
  name: string;
}

export interface VgpuState {
  /** NO_VGPU_TYPE when none is selected. */
  current: number;
  creatable: VgpuType[];
}

export const vgpuDir = (roots: HostRoots, bdf: string): string => path.join(pciDeviceDir(roots, bdf), 'nvidia');
export const currentVgpuTypeFile = (roots: HostRoots, bdf: string): string => path.join(vgpuDir(roots, bdf), 'current_vgpu_type');
const creatableVgpuTypesFile = (roots: HostRoots, bdf: string): string => path.join(vgpuDir(roots, bdf), 'creatable_vgpu_types');

/** The lines "<id> : <name>" of creatable_vgpu_types; the header and anything malformed are skipped. */
export function parseCreatableVgpuTypes(text: string): VgpuType[] {
  const types: VgpuType[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)\s*:\s*(.*\S)\s*$/.exec(line);
    if (m) types.push({ id: Number(m[1]), name: m[2]! });
  }
  return types;
}

/** The VF's vGPU state, or undefined when it has no nvidia/current_vgpu_type (not an NVIDIA vGPU VF). */
export function readVgpuState(roots: HostRoots, bdf: string): VgpuState | undefined {
  let current: string;
  try {
    current = readFileSync(currentVgpuTypeFile(roots, bdf), 'utf8').trim();
  } catch {
    return undefined;
  }
  let creatable = '';
  try {
    creatable = readFileSync(creatableVgpuTypesFile(roots, bdf), 'utf8');
  } catch {
    // a VF that can take no profile now lists none
  }
  const id = Number(current);
  return { current: /^\d+$/.test(current) ? id : NO_VGPU_TYPE, creatable: parseCreatableVgpuTypes(creatable) };
}
