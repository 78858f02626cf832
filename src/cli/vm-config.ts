/**
 * `vfiod vm-config`: prints the static device configuration for creating a VM, cloud-hypervisor VmConfig devices
 * and command-line options or QEMU arguments, from the daemon (AttachmentService.GetVmConfig).
 */
import type { VmDevice } from '../daemon/generated/vfiod/v1/VmDevice.js';
import { bdfOption, CLIENT_EXIT, type ClientDeps, UsageError, integer, noPositionals, vfioBackendOption } from './common.js';
import { CONNECTION_HELP, printJson, withClient } from './remote.js';

export const VM_CONFIG_USAGE = `Usage: vfiod vm-config --hypervisor cloud-hypervisor|qemu [--vm <id>] <device>... [options]

Prints the static device configuration for creating a VM: cloud-hypervisor VmConfig devices / user_devices (JSON)
and command-line options, or QEMU arguments (one pcie-root-port per device, bootindex).

Devices (in order; append @<n> for a boot index, e.g. --bdf 01:00.1@1):
  --bdf <bdf>            host PCI function through VFIO
  --vfio-user <socket>   an emulated controller's socket
  --controller <id>      an emulated controller of the daemon
Options:
  --memory <size>        QEMU guest RAM (emits the shared memory backend vfio-user needs)
  --prepare              also prepare the PCI devices for --vm (all or nothing)
  --numa-placement       put each PCI device on the guest NUMA node numbered like its host node (QEMU pxb-pcie,
                         cloud-hypervisor a PCI segment per node)
  --vfio-backend <b>     for every --bdf: auto (default: iommufd only for vendor VFIO drivers and cdev-only
                         devices), group or iommufd (QEMU >= 9.0: -object iommufd + vfio-pci iommufd=,sysfsdev=)
Large 64-bit BARs (from sysfs) size the 64-bit PCI window: QEMU pref64-reserve and OVMF X-PciMmio64Mb,
cloud-hypervisor pci_segments aperture weights.

${CONNECTION_HELP}`;

export async function runVmConfig(argv: string[], deps: ClientDeps = {}): Promise<number> {
  const options = {
    hypervisor: { type: 'string' },
    vm: { type: 'string' },
    bdf: { type: 'string', multiple: true },
    'vfio-user': { type: 'string', multiple: true },
    controller: { type: 'string', multiple: true },
    memory: { type: 'string' },
    prepare: { type: 'boolean' },
    'numa-placement': { type: 'boolean' },
    'vfio-backend': { type: 'string' },
  } as const;
  return withClient('vm-config', VM_CONFIG_USAGE, argv, options, deps, async (ctx, v, positionals, tokens) => {
    noPositionals(positionals);
    const hypervisor = v.hypervisor === 'cloud-hypervisor' || v.hypervisor === 'ch' ? 'HYPERVISOR_KIND_CLOUD_HYPERVISOR' : v.hypervisor === 'qemu' ? 'HYPERVISOR_KIND_QEMU' : undefined;
    if (!hypervisor) throw new UsageError(`--hypervisor must be cloud-hypervisor or qemu${v.hypervisor ? `, not '${v.hypervisor}'` : ''}`);
    // Devices in command-line order (boot order and PCI slots follow it).
    const devices: VmDevice[] = [];
    const vfioBackend = vfioBackendOption(v['vfio-backend']);
    for (const token of tokens) {
      if (token.kind !== 'option' || !['bdf', 'vfio-user', 'controller'].includes(token.name) || token.value === undefined) continue;
      const at = token.value.lastIndexOf('@');
      const value = at > 0 ? token.value.slice(0, at) : token.value;
      const bootIndex = at > 0 ? integer(`--${token.name} ...@<boot index>`, token.value.slice(at + 1), 0, 65535) : undefined;
      const source = token.name === 'bdf' ? { pciBdf: bdfOption('--bdf', value) } : token.name === 'vfio-user' ? { vfioUserSocket: value } : { controllerId: value };
      devices.push({ source, ...(bootIndex !== undefined ? { bootIndex } : {}), ...(token.name === 'bdf' ? { vfioBackend } : {}) });
    }
    if (v.prepare && !v.vm) throw new UsageError('--prepare needs --vm <id> (the owner of the prepared devices)');
    const response = await ctx.client.call('AttachmentService', 'GetVmConfig', {
      hypervisor,
      devices,
      vmId: v.vm ?? '',
      memorySize: v.memory ?? '',
      prepareDevices: Boolean(v.prepare),
      numaPlacement: Boolean(v['numa-placement']),
    });
    if (ctx.json) printJson(ctx, response);
    else {
      const ch = response.cloudHypervisor;
      const qemu = response.qemu;
      if (ch) {
        ctx.out(`# cloud-hypervisor VmConfig\n"devices": ${ch.devicesJson}\n"user_devices": ${ch.userDevicesJson}\n`);
        if (ch.pciSegmentsJson && ch.pciSegmentsJson !== '[]') ctx.out(`"pci_segments": ${ch.pciSegmentsJson}\n`);
        if (ch.numPciSegments) ctx.out(`"platform": {"num_pci_segments": ${ch.numPciSegments}}\n`);
        if (ch.numaJson && ch.numaJson !== '[]') ctx.out(`# merge into "numa": ${ch.numaJson}\n`);
        ctx.out(`# command line\n${ch.args.join(' ')}\n`);
        if (ch.sharedMemoryRequired) ctx.out('# vfio-user devices need guest memory shared with vfiod: --memory ...,shared=on\n');
      }
      if (qemu) ctx.out(`${qemu.args.join(' \\\n  ')}\n`);
      for (const p of response.prepared ?? []) ctx.out(`# prepared ${p.bdf}${p.changed ? '' : ' (already)'}: ${p.vfioCdev || p.vfioGroupDev}\n`);
      for (const w of response.warnings) ctx.out(`# warning: ${w}\n`);
    }
    return CLIENT_EXIT.ok;
  });
}
