/**
 * The exact static device configuration for creating a VM: cloud-hypervisor's `devices` / `user_devices` (the
 * DeviceConfig / VmAddUserDevice shapes of its OpenAPI, as in vm.create's VmConfig) and the equivalent command-line
 * options, or QEMU arguments (one pcie-root-port per device so each can later be hot-unplugged, vfio-pci with
 * bootindex, vfio-user-pci in its JSON form). Pure: no I/O, so the control API can return it for FeOS to use.
 */
import { normalizeBdf } from '../util/pci-address.js';
import { VfiodError } from '../util/errors.js';
import type { AttachSource, HypervisorKind } from './types.js';
import {
  checkVfioBackendChoice, hostSysfsPath, QEMU_IOMMUFD_OBJECT_ID, resolveQemuVmBackends, resolveVfioBackend, type VfioBackend, type VfioBackendChoice, type VfioFacts,
} from './vfio-backend.js';
import { apertureFor, bridgeWindow, type BridgeWindow, GIB, type HostFunctionFacts, numaNodesOf, ovmfMmio64Mb, qemuSizeText } from './pci-window.js';

/** cloud-hypervisor DeviceConfig (OpenAPI components.schemas.DeviceConfig). */
export interface ChDeviceConfig {
  path: string;
  id?: string;
  iommu?: boolean;
  pci_segment?: number;
  x_nv_gpudirect_clique?: number;
}

/** cloud-hypervisor PciSegmentConfig (OpenAPI): a segment's share of the 32- and 64-bit MMIO apertures. */
export interface ChPciSegmentConfig {
  pci_segment: number;
  mmio64_aperture_weight?: number;
}

/** The part of cloud-hypervisor's NumaConfig vfiod knows: which PCI segments are on a guest NUMA node. */
export interface ChNumaConfig {
  guest_numa_id: number;
  pci_segments: number[];
}

/** cloud-hypervisor UserDeviceConfig (OpenAPI VmAddUserDevice; id and pci_segment as the VMM accepts them). */
export interface ChUserDeviceConfig {
  socket: string;
  id?: string;
  pci_segment?: number;
}

export interface StaticDevice {
  source: AttachSource;
  /** VMM device id; default derived from the source (see defaultDeviceId). */
  id?: string;
  /** Boot order (QEMU bootindex; lower first). cloud-hypervisor has none: see the warnings. */
  bootIndex?: number;
  iommu?: boolean;
  pciSegment?: number;
  gpudirectClique?: number;
  /** PCI: open it through its IOMMU group or through iommufd (default auto: src/hypervisor/vfio-backend.ts). */
  vfioBackend?: VfioBackendChoice;
}

export interface StaticConfigRequest {
  hypervisor: HypervisorKind;
  devices: StaticDevice[];
  /** QEMU: chassis number of the first pcie-root-port vfiod adds (default 32; one per device, must be unique). */
  firstChassis?: number;
  /** QEMU: guest RAM size ("4G"); with vfio-user devices the shared memory backend arguments are emitted for it. */
  memorySize?: string;
  /** The VM the configuration is for (AttachmentManager.staticConfig prepares PCI devices for it). */
  vmId?: string;
  /**
   * Host facts of the PCI functions by BDF (NUMA node, BARs from sysfs; AttachmentManager.staticConfig reads them):
   * they size the 64-bit PCI window and tell the NUMA placement. A function without facts counts as neither.
   */
  hostFunctions?: Record<string, HostFunctionFacts>;
  /** The PCI functions' VFIO interfaces by BDF (AttachmentManager.staticConfig reads them): they decide the backend. */
  hostVfio?: Record<string, VfioFacts>;
  /**
   * Place each PCI device on the guest NUMA node numbered like its host node: QEMU puts its root port under a
   * pxb-pcie with numa_node, cloud-hypervisor puts it on a PCI segment of its own that NumaConfig.pci_segments names.
   */
  numaPlacement?: boolean;
}

/** What the devices need of the guest's 64-bit PCI window. */
export interface PciWindowResult {
  /** Bytes of 64-bit aperture the devices' 64-bit prefetchable BARs need (0: nothing large). */
  aperture64Bytes: number;
  /** Device id -> bytes of prefetchable window its root port needs (devices with such BARs only). */
  windows: Record<string, number>;
  /** QEMU: fw_cfg opt/ovmf/X-PciMmio64Mb emitted (0: not needed). */
  ovmfMmio64Mb: number;
}

export interface StaticConfigResult {
  hypervisor: HypervisorKind;
  cloudHypervisor?: {
    /** VmConfig.devices */
    devices: ChDeviceConfig[];
    /** VmConfig.user_devices */
    user_devices: ChUserDeviceConfig[];
    /** The same as command-line options: ["--device", "path=...,id=...", "--user-device", "socket=...,id=..."]. */
    args: string[];
    /** vfio-user needs the guest RAM shared with the server: `--memory ...,shared=on` / MemoryConfig.shared=true. */
    sharedMemoryRequired: boolean;
    /** VmConfig.pci_segments: the segments NUMA placement uses, weighted by the 64-bit aperture they need. */
    pci_segments: ChPciSegmentConfig[];
    /** VmConfig.platform.num_pci_segments when NUMA placement uses segments beyond 0. */
    num_pci_segments?: number;
    /** VmConfig.numa entries' pci_segments (their cpus and memory_zones are the caller's). */
    numa: ChNumaConfig[];
  };
  qemu?: {
    /** Arguments to append to the QEMU command line (q35 machine assumed). */
    args: string[];
    /** The root port each device id went into. */
    buses: Record<string, string>;
    sharedMemoryRequired: boolean;
  };
  pciWindow: PciWindowResult;
  /** PCI device id -> how the VMM opens it (its IOMMU group, or iommufd with the VFIO cdev). */
  vfioBackends: Record<string, VfioBackend>;
  warnings: string[];
}

/** QEMU device ids: a letter, then letters, digits, '-', '.', '_' (QEMU's id_wellformed). */
const QEMU_ID = /^[A-Za-z][A-Za-z0-9._-]*$/;

/** "vfiod-0000_01_00_1" for a PCI function, "vfiod-user-<socket file name>" for a vfio-user socket. */
export function defaultDeviceId(source: AttachSource): string {
  if (source.kind === 'pci') return `vfiod-${(normalizeBdf(source.bdf) ?? source.bdf).replace(/[:.]/g, '_')}`;
  const base = source.socketPath.split('/').pop() ?? 'socket';
  return `vfiod-user-${base.replace(/\.sock$/, '').replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

export function checkDeviceId(id: string, context: string): void {
  if (typeof id !== 'string' || !QEMU_ID.test(id) || id.length > 64) {
    throw new VfiodError('INVALID_ARGUMENT', `${context}: device id '${id}' must start with a letter and contain only letters, digits, '-', '.', '_' (at most 64)`, {
      reason: 'FIELD_INVALID',
      field: 'device_id',
    });
  }
}

export function checkBootIndex(bootIndex: number | undefined, context: string): void {
  if (bootIndex !== undefined && (!Number.isInteger(bootIndex) || bootIndex < 0 || bootIndex > 0xffff)) {
    throw new VfiodError('INVALID_ARGUMENT', `${context}: boot index ${bootIndex} must be an integer 0..65535`, {
      reason: 'FIELD_OUT_OF_RANGE',
      field: 'boot_index',
      value: String(bootIndex),
      min: 0,
      max: 65535,
    });
  }
}

/**
 * cloud-hypervisor's per-device options, as its OpenAPI types them (pci_segment int16, x_nv_gpudirect_clique int8;
 * the VMM reads both unsigned): out of range they would reach the VMM's JSON or command line as given.
 */
export function checkDeviceOptions(options: { iommu?: unknown; pciSegment?: unknown; gpudirectClique?: unknown }, context: string): void {
  const { iommu, pciSegment, gpudirectClique } = options;
  if (iommu !== undefined && typeof iommu !== 'boolean') throw new VfiodError('INVALID_ARGUMENT', `${context}: iommu must be true or false (got ${JSON.stringify(iommu)})`, {
      reason: 'FIELD_INVALID',
      field: 'iommu',
    });
  if (pciSegment !== undefined && !(Number.isInteger(pciSegment) && (pciSegment as number) >= 0 && (pciSegment as number) <= 0x7fff)) {
    throw new VfiodError('INVALID_ARGUMENT', `${context}: PCI segment ${JSON.stringify(pciSegment)} must be an integer 0..32767`, {
      reason: 'FIELD_OUT_OF_RANGE',
      field: 'pci_segment',
      value: String(pciSegment),
      min: 0,
      max: 32767,
    });
  }
  if (gpudirectClique !== undefined && !(Number.isInteger(gpudirectClique) && (gpudirectClique as number) >= 0 && (gpudirectClique as number) <= 0x7f)) {
    throw new VfiodError('INVALID_ARGUMENT', `${context}: GPUDirect clique ${JSON.stringify(gpudirectClique)} must be an integer 0..127`, {
      reason: 'FIELD_OUT_OF_RANGE',
      field: 'gpudirect_clique',
      value: String(gpudirectClique),
      min: 0,
      max: 127,
    });
  }
}

/** The bus number of the first pxb-pcie NUMA expander: far above those the firmware gives pcie.0's root ports. */
const QEMU_FIRST_EXPANDER_BUS = 0x80;

/** QEMU's size syntax for memory-backend size= ("4G", "4096M", "1073741824"); nothing that could add options. */
const QEMU_SIZE = /^[0-9]+(\.[0-9]+)?[KMGTPE]?$/i;

/** The normalised host BDF of a PCI source; INVALID_ARGUMENT when it is not one. */
export function sourceBdf(source: { bdf: string }, context: string): string {
  const bdf = typeof source.bdf === 'string' ? normalizeBdf(source.bdf) : undefined;
  if (!bdf) throw new VfiodError('INVALID_ARGUMENT', `${context}: '${source.bdf}' is not a PCI address (0000:01:00.1)`, { reason: 'PCI_ADDRESS_INVALID', field: 'bdf' });
  return bdf;
}

export function checkSocketPath(socketPath: string, context: string): void {
  if (typeof socketPath !== 'string' || !socketPath.startsWith('/')) throw new VfiodError('INVALID_ARGUMENT', `${context}: vfio-user socket '${socketPath}' must be an absolute path`, {
      reason: 'SOCKET_PATH_INVALID',
      field: 'vfio_user_socket',
    });
  if (/[\s,]/.test(socketPath)) throw new VfiodError('INVALID_ARGUMENT', `${context}: vfio-user socket '${socketPath}' contains a space or comma`, {
      reason: 'SOCKET_PATH_INVALID',
      field: 'vfio_user_socket',
      socketPath,
    });
}

export const CH_BOOT_WARNING =
  'cloud-hypervisor has no boot order: to boot from an NVMe device the VM needs firmware with an NVMe driver ' +
  '(payload.firmware = CLOUDHV.fd, the EDK2 build for cloud-hypervisor); the default rust-hypervisor-firmware boots virtio-blk only';

export function buildStaticConfig(request: StaticConfigRequest): StaticConfigResult {
  const context = request.vmId ? `static config for VM ${request.vmId}` : 'static config';
  if (request.hypervisor !== 'cloud-hypervisor' && request.hypervisor !== 'qemu') {
    throw new VfiodError('INVALID_ARGUMENT', `${context}: unknown hypervisor '${String(request.hypervisor)}' (cloud-hypervisor or qemu)`, {
      reason: 'FIELD_INVALID',
      field: 'hypervisor',
    });
  }
  const ids = new Set<string>();
  const bootIndexes = new Map<number, string>();
  if (!Array.isArray(request.devices)) throw new VfiodError('INVALID_ARGUMENT', `${context}: devices must be a list`, { reason: 'FIELD_INVALID', field: 'devices' });
  const devices = request.devices.map((d, i) => {
    const kind = (d?.source as { kind?: unknown } | undefined)?.kind;
    if (kind !== 'pci' && kind !== 'vfio-user') {
      throw new VfiodError('INVALID_ARGUMENT', `${context}, device #${i + 1}: unknown source kind '${String(kind)}' (pci or vfio-user)`, {
        reason: 'FIELD_INVALID',
        field: `devices[${i}].source`,
      });
    }
    const id = d.id ?? defaultDeviceId(d.source);
    checkDeviceId(id, context);
    if (ids.has(id)) throw new VfiodError('INVALID_ARGUMENT', `${context}: device id '${id}' is used twice`, {
      reason: 'DEVICE_ID_DUPLICATE',
      ...(request.vmId ? { vmId: request.vmId } : {}),
      deviceId: id,
    });
    ids.add(id);
    checkBootIndex(d.bootIndex, `${context}, device ${id}`);
    checkDeviceOptions(d, `${context}, device ${id}`);
    if (d.bootIndex !== undefined) {
      const other = bootIndexes.get(d.bootIndex);
      if (other) throw new VfiodError('INVALID_ARGUMENT', `${context}: boot index ${d.bootIndex} is given to both ${other} and ${id}`, {
        reason: 'BOOT_INDEX_DUPLICATE',
        ...(request.vmId ? { vmId: request.vmId } : {}),
        bootIndex: d.bootIndex,
      });
      bootIndexes.set(d.bootIndex, id);
    }
    if (d.source.kind === 'pci') {
      const bdf = sourceBdf(d.source, `${context}, device ${id}`);
      return { ...d, id, source: { kind: 'pci' as const, bdf }, vfioBackend: checkVfioBackendChoice(d.vfioBackend, `${context}, device ${id}`) };
    }
    checkSocketPath(d.source.socketPath, `${context}, device ${id}`);
    return { ...d, id };
  });
  if (request.memorySize !== undefined && (typeof request.memorySize !== 'string' || !QEMU_SIZE.test(request.memorySize) || !/[1-9]/.test(request.memorySize))) {
    throw new VfiodError('INVALID_ARGUMENT', `${context}: memory size ${JSON.stringify(request.memorySize)} must be a size such as 4G, 4096M or 4294967296`, {
      reason: 'FIELD_INVALID',
      field: 'memory_size',
    });
  }
  const warnings: string[] = [];
  const hasUser = devices.some((d) => d.source.kind === 'vfio-user');
  const factsOf = (d: (typeof devices)[number]): HostFunctionFacts | undefined => (d.source.kind === 'pci' ? request.hostFunctions?.[d.source.bdf] : undefined);
  const windows = new Map<string, BridgeWindow>(devices.map((d) => [d.id, bridgeWindow(factsOf(d))]));
  const aperture64Bytes = apertureFor([...windows.values()]);
  const pciWindow: PciWindowResult = {
    aperture64Bytes,
    windows: Object.fromEntries([...windows].filter(([, w]) => w.size > 0).map(([id, w]) => [id, w.size])),
    ovmfMmio64Mb: 0,
  };
  const pciDevices = devices.flatMap((d) => (d.source.kind === 'pci' ? [{ id: d.id, bdf: d.source.bdf, facts: factsOf(d) }] : []));
  const backendRequests = devices.flatMap((d) => (d.source.kind === 'pci' ? [{ id: d.id, bdf: d.source.bdf, choice: d.vfioBackend ?? 'auto', facts: request.hostVfio?.[d.source.bdf] }] : []));
  const vfioBackends: Record<string, VfioBackend> =
    request.hypervisor === 'qemu'
      ? resolveQemuVmBackends(backendRequests, undefined, context)
      : Object.fromEntries(backendRequests.map((f) => [f.id, resolveVfioBackend(f.choice, f.bdf, f.facts, 'cloud-hypervisor', `${context}, device ${f.id}`)]));
  const numa = numaNodesOf(pciDevices);
  if (numa.nodes.length > 1) {
    warnings.push(
      `the VM's devices span host NUMA nodes ${numa.nodes.join(', ')} (${numa.placement.join('; ')}): DMA and interrupts cross nodes; ` +
        (request.numaPlacement ? 'each is placed on the guest node numbered like its host node' : 'place them per node (numa placement) or pin the VM near one node'),
    );
  }
  /** Host NUMA node of a device when NUMA placement applies to it. */
  const nodeOf = (d: (typeof devices)[number]): number | undefined => (request.numaPlacement ? factsOf(d)?.numaNode ?? undefined : undefined);

  if (request.hypervisor === 'cloud-hypervisor') {
    const chDevices: ChDeviceConfig[] = [];
    const userDevices: ChUserDeviceConfig[] = [];
    const args: string[] = [];
    // NUMA placement: cloud-hypervisor ties PCI segments (not devices) to guest NUMA nodes, so each host node's
    // devices get a segment of their own after the highest one the request names.
    const placedNodes = [...new Set(devices.map(nodeOf).filter((n): n is number => n !== undefined))].sort((a, b) => a - b);
    const firstFreeSegment = Math.max(0, ...devices.map((d) => d.pciSegment ?? 0)) + 1;
    const segmentOfNode = new Map(placedNodes.map((n, i) => [n, firstFreeSegment + i]));
    for (const d of devices) {
      if (d.source.kind === 'pci') {
        const c: ChDeviceConfig = { path: hostSysfsPath(d.source.bdf), id: d.id };
        if (d.iommu !== undefined) c.iommu = d.iommu;
        const node = nodeOf(d);
        if (node !== undefined) c.pci_segment = segmentOfNode.get(node)!;
        else if (d.pciSegment !== undefined) c.pci_segment = d.pciSegment;
        if (d.gpudirectClique !== undefined) c.x_nv_gpudirect_clique = d.gpudirectClique;
        chDevices.push(c);
        args.push('--device', Object.entries(c).map(([k, v]) => `${k}=${String(v)}`).join(','));
      } else {
        const c: ChUserDeviceConfig = { socket: d.source.socketPath, id: d.id };
        if (d.pciSegment !== undefined) c.pci_segment = d.pciSegment;
        userDevices.push(c);
        args.push('--user-device', Object.entries(c).map(([k, v]) => `${k}=${String(v)}`).join(','));
      }
    }
    if (bootIndexes.size > 0) warnings.push(CH_BOOT_WARNING);
    if (hasUser) warnings.push('vfio-user devices need the guest RAM shared with the server: MemoryConfig.shared=true (--memory size=...,shared=on)');
    // Each segment's share of the 64-bit aperture follows its weight: a segment with large BARs weighs what it
    // needs in GiB (at least 1, the weight of a segment with nothing large).
    const segmentOf = new Map([...chDevices, ...userDevices].map((c) => [c.id!, c.pci_segment ?? 0]));
    const segments = [...new Set(segmentOf.values())].sort((a, b) => a - b);
    const pciSegments: ChPciSegmentConfig[] =
      placedNodes.length > 0 || aperture64Bytes > 0
        ? segments.map((segment) => {
            const needed = apertureFor(devices.filter((d) => segmentOf.get(d.id) === segment).map((d) => windows.get(d.id)!));
            return { pci_segment: segment, mmio64_aperture_weight: Math.max(1, Math.ceil(needed / GIB)) };
          })
        : [];
    for (const p of pciSegments) args.push('--pci-segment', `pci_segment=${p.pci_segment},mmio64_aperture_weight=${p.mmio64_aperture_weight}`);
    // Only segments vfiod adds are its to declare; those the request names are the caller's platform already.
    const numSegments = placedNodes.length > 0 ? Math.max(...segments) + 1 : 1;
    if (numSegments > 1) args.push('--platform', `num_pci_segments=${numSegments}`);
    const numaConfig: ChNumaConfig[] = placedNodes.map((n) => ({ guest_numa_id: n, pci_segments: [segmentOfNode.get(n)!] }));
    if (numaConfig.length) {
      warnings.push(`NUMA placement: merge numa ${JSON.stringify(numaConfig)} into VmConfig.numa; the guest nodes' cpus and memory_zones (bound to the same host nodes) are the caller's`);
    }
    if (aperture64Bytes > 0) {
      warnings.push(
        `large BARs: the devices need ${qemuSizeText(aperture64Bytes)} of 64-bit PCI aperture. cloud-hypervisor v48 has no window-size or per-port ` +
          'reserve setting: it assigns BARs itself from each PCI segment\'s 64-bit aperture, which is the guest physical address space above RAM up to ' +
          '2^cpus.max_phys_bits, shared between segments by pci_segments[].mmio64_aperture_weight (emitted). Leave cpus.max_phys_bits unset (the host\'s) ' +
          `or at least ${Math.ceil(Math.log2(2 * (4 * GIB + aperture64Bytes)))} plus what the guest RAM needs`,
      );
    }
    return {
      hypervisor: 'cloud-hypervisor',
      cloudHypervisor: {
        devices: chDevices,
        user_devices: userDevices,
        args,
        sharedMemoryRequired: hasUser,
        pci_segments: pciSegments,
        ...(numSegments > 1 ? { num_pci_segments: numSegments } : {}),
        numa: numaConfig,
      },
      pciWindow,
      vfioBackends,
      warnings,
    };
  }

  const firstChassis = request.firstChassis ?? 32;
  if (!Number.isInteger(firstChassis) || firstChassis < 1 || firstChassis + devices.length - 1 > 255) {
    throw new VfiodError('INVALID_ARGUMENT', `${context}: chassis numbers ${firstChassis}..${firstChassis + devices.length - 1} do not fit 1..255`, {
      reason: 'FIELD_OUT_OF_RANGE',
      field: 'first_chassis',
      value: String(firstChassis),
      min: 1,
      max: 255,
    });
  }
  const args: string[] = [];
  const buses: Record<string, string> = {};
  // NUMA placement: one pxb-pcie (an extra root bus with numa_node) per host node, its bus numbers after the ones
  // before it: its own and one per root port behind it.
  const expanders = new Map<number, string>();
  let busNr = QEMU_FIRST_EXPANDER_BUS;
  for (const node of [...new Set(devices.map(nodeOf).filter((n): n is number => n !== undefined))].sort((a, b) => a - b)) {
    const id = `vfiod-pxb${node}`;
    expanders.set(node, id);
    args.push('-device', `pxb-pcie,id=${id},bus_nr=${busNr},numa_node=${node},bus=pcie.0`);
    busNr += 1 + devices.filter((d) => nodeOf(d) === node).length;
  }
  if (busNr > 255) throw new VfiodError('INVALID_ARGUMENT', `${context}: too many devices for NUMA placement (bus numbers up to ${busNr - 1})`, { reason: 'FIELD_OUT_OF_RANGE', field: 'devices', value: String(devices.length), min: 0, max: 255 - QEMU_FIRST_EXPANDER_BUS });
  // Every device given through iommufd shares one iommufd object (one /dev/iommu context, one I/O address space).
  if (Object.values(vfioBackends).includes('iommufd')) args.push('-object', `iommufd,id=${QEMU_IOMMUFD_OBJECT_ID}`);
  if (expanders.size) warnings.push(`NUMA placement: the VM needs guest NUMA nodes ${[...expanders.keys()].join(', ')} (-numa node,nodeid=N with memory bound to host node N)`);
  devices.forEach((d, i) => {
    // One root port per device: q35's pcie.0 is not hot-pluggable, and a root port takes one device, so each device
    // can later be unplugged on its own. Large BARs: the port reserves their prefetchable window (pref64-reserve).
    const bus = `vfiod-rp${i}`;
    buses[d.id] = bus;
    const node = nodeOf(d);
    const window = windows.get(d.id)!;
    args.push(
      '-device',
      `pcie-root-port,id=${bus},chassis=${firstChassis + i},slot=${i}${node !== undefined ? `,bus=${expanders.get(node)}` : ''}${window.size > 0 ? `,pref64-reserve=${qemuSizeText(window.size)}` : ''}`,
    );
    if (d.source.kind === 'pci') {
      const opened = vfioBackends[d.id] === 'iommufd' ? `iommufd=${QEMU_IOMMUFD_OBJECT_ID},sysfsdev=${hostSysfsPath(d.source.bdf)}` : `host=${d.source.bdf}`;
      args.push('-device', `vfio-pci,${opened},id=${d.id},bus=${bus}${d.bootIndex !== undefined ? `,bootindex=${d.bootIndex}` : ''}`);
    } else {
      const json: Record<string, unknown> = { driver: 'vfio-user-pci', socket: { path: d.source.socketPath, type: 'unix' }, id: d.id, bus };
      if (d.bootIndex !== undefined) json.bootindex = d.bootIndex;
      args.push('-device', JSON.stringify(json));
    }
  });
  if (hasUser) {
    if (request.memorySize) {
      args.push('-object', `memory-backend-memfd,id=vfiod-mem,size=${request.memorySize},share=on`, '-machine', 'memory-backend=vfiod-mem');
    } else {
      warnings.push('vfio-user devices need the guest RAM shared with the server: -object memory-backend-memfd,id=mem0,size=<RAM>,share=on -machine memory-backend=mem0 (pass memorySize to get these arguments)');
    }
    warnings.push('vfio-user-pci needs QEMU >= 10.1');
  }
  pciWindow.ovmfMmio64Mb = ovmfMmio64Mb([...windows.values()]);
  if (pciWindow.ovmfMmio64Mb > 0) {
    // OVMF sizes its 64-bit aperture from this; SeaBIOS has no such setting (it sizes from the devices it finds).
    args.push('-fw_cfg', `name=opt/ovmf/X-PciMmio64Mb,string=${pciWindow.ovmfMmio64Mb}`);
    warnings.push(
      `large BARs: ${qemuSizeText(pciWindow.ovmfMmio64Mb * 2 ** 20)} of 64-bit PCI aperture (OVMF X-PciMmio64Mb); the guest's physical address bits must reach above RAM + that: -cpu ...,host-phys-bits=on (or phys-bits=N)`,
    );
  }
  if (Object.values(vfioBackends).includes('iommufd')) warnings.push('devices given through iommufd (-object iommufd) need QEMU >= 9.0');
  return { hypervisor: 'qemu', qemu: { args, buses, sharedMemoryRequired: hasUser }, pciWindow, vfioBackends, warnings };
}
