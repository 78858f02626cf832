/**
 * The exact static device configuration for creating a VM: cloud-hypervisor's `devices` / `user_devices` (the
 * DeviceConfig / VmAddUserDevice shapes of its OpenAPI, as in vm.create's VmConfig) and the equivalent command-line
 * options, or QEMU arguments (one pcie-root-port per device so each can later be hot-unplugged, vfio-pci with
 * bootindex, vfio-user-pci in its JSON form). Pure: no I/O, so the control API can return it for FeOS to use.
 */
import { normalizeBdf } from '../util/pci-address.js';
import { VfiodError } from '../util/errors.js';
import type { AttachSource, HypervisorKind } from './types.js';

/** cloud-hypervisor DeviceConfig (OpenAPI components.schemas.DeviceConfig). */
export interface ChDeviceConfig {
  path: string;
  id?: string;
  iommu?: boolean;
  pci_segment?: number;
  x_nv_gpudirect_clique?: number;
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
  };
  qemu?: {
    /** Arguments to append to the QEMU command line (q35 machine assumed). */
    args: string[];
    /** The root port each device id went into. */
    buses: Record<string, string>;
    sharedMemoryRequired: boolean;
  };
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
    if (d.source.kind === 'pci') return { ...d, id, source: { kind: 'pci' as const, bdf: sourceBdf(d.source, `${context}, device ${id}`) } };
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

  if (request.hypervisor === 'cloud-hypervisor') {
    const chDevices: ChDeviceConfig[] = [];
    const userDevices: ChUserDeviceConfig[] = [];
    const args: string[] = [];
    for (const d of devices) {
      if (d.source.kind === 'pci') {
        const c: ChDeviceConfig = { path: `/sys/bus/pci/devices/${d.source.bdf}`, id: d.id };
        if (d.iommu !== undefined) c.iommu = d.iommu;
        if (d.pciSegment !== undefined) c.pci_segment = d.pciSegment;
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
    return { hypervisor: 'cloud-hypervisor', cloudHypervisor: { devices: chDevices, user_devices: userDevices, args, sharedMemoryRequired: hasUser }, warnings };
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
  devices.forEach((d, i) => {
    // One root port per device: q35's pcie.0 is not hot-pluggable, and a root port takes one device, so each device
    // can later be unplugged on its own.
    const bus = `vfiod-rp${i}`;
    buses[d.id] = bus;
    args.push('-device', `pcie-root-port,id=${bus},chassis=${firstChassis + i},slot=${i}`);
    if (d.source.kind === 'pci') {
      args.push('-device', `vfio-pci,host=${d.source.bdf},id=${d.id},bus=${bus}${d.bootIndex !== undefined ? `,bootindex=${d.bootIndex}` : ''}`);
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
  return { hypervisor: 'qemu', qemu: { args, buses, sharedMemoryRequired: hasUser }, warnings };
}
