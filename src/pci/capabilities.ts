/**
 * The capability structures we present in config space: Power Management, MSI-X and PCI Express (v2, endpoint).
 * Each installer defines the registers with their power-on values and writable bits; the list is linked through
 * the "next" pointers given by the caller. No extended capabilities: the zero dword at 0x100 ends that list.
 */
import { ConfigSpace, LEGACY_CONFIG_SPACE_SIZE, ConfigRegister } from './config-space.js';

export const CapabilityId = {
  POWER_MANAGEMENT: 0x01,
  PCI_EXPRESS: 0x10,
  MSIX: 0x11,
} as const;

/** Where each capability sits; 0x40 is the first offset after the type 0 header. */
export const CapabilityOffset = {
  POWER_MANAGEMENT: 0x40,
  MSIX: 0x50,
  PCI_EXPRESS: 0x60,
} as const;

/** Offsets inside the Power Management capability. */
export const PmRegister = { CAPABILITIES: 0x02, CONTROL_STATUS: 0x04 } as const;
export const PmControl = {
  POWER_STATE_MASK: 0b11,
  D0: 0,
  D3_HOT: 3,
  /** D3hot -> D0 keeps the function's state; software need not re-initialise it. */
  NO_SOFT_RESET: 1 << 3,
} as const;
const PM_VERSION_1_2 = 0b011;
export const PM_CAPABILITY_SIZE = 8;

/** Offsets inside the MSI-X capability. */
export const MsixRegister = { MESSAGE_CONTROL: 0x02, TABLE: 0x04, PBA: 0x08 } as const;
export const MsixControl = {
  TABLE_SIZE_MASK: 0x07ff,
  FUNCTION_MASK: 1 << 14,
  ENABLE: 1 << 15,
} as const;
export const MSIX_CAPABILITY_SIZE = 12;

/** Offsets inside the PCI Express capability. */
export const PcieRegister = {
  CAPABILITIES: 0x02,
  DEVICE_CAPABILITIES: 0x04,
  DEVICE_CONTROL: 0x08,
  DEVICE_STATUS: 0x0a,
  LINK_CAPABILITIES: 0x0c,
  LINK_CONTROL: 0x10,
  LINK_STATUS: 0x12,
  DEVICE_CAPABILITIES_2: 0x24,
  DEVICE_CONTROL_2: 0x28,
  LINK_CAPABILITIES_2: 0x2c,
  LINK_CONTROL_2: 0x30,
  LINK_STATUS_2: 0x32,
} as const;
/** Version 2 structure, through Slot Status 2. */
export const PCIE_CAPABILITY_SIZE = 0x3c;

export const DeviceCapability = {
  /** Max_Payload_Size Supported = 256 bytes. */
  MAX_PAYLOAD_256: 0b001,
  EXTENDED_TAG: 1 << 5,
  ROLE_BASED_ERROR_REPORTING: 1 << 15,
  FUNCTION_LEVEL_RESET: 1 << 28,
} as const;

export const DeviceControl = {
  CORRECTABLE_ERROR_REPORTING: 1 << 0,
  NON_FATAL_ERROR_REPORTING: 1 << 1,
  FATAL_ERROR_REPORTING: 1 << 2,
  UNSUPPORTED_REQUEST_REPORTING: 1 << 3,
  RELAXED_ORDERING: 1 << 4,
  MAX_PAYLOAD_SHIFT: 5,
  MAX_PAYLOAD_MASK: 0b111 << 5,
  EXTENDED_TAG: 1 << 8,
  NO_SNOOP: 1 << 11,
  MAX_READ_REQUEST_SHIFT: 12,
  MAX_READ_REQUEST_MASK: 0b111 << 12,
  INITIATE_FLR: 1 << 15,
} as const;
/** Largest Max_Payload_Size encoding we accept (1 = 256 bytes, as advertised in Device Capabilities). */
export const MAX_PAYLOAD_ENCODING_SUPPORTED = 1;

export const DeviceStatus = {
  CORRECTABLE_ERROR: 1 << 0,
  NON_FATAL_ERROR: 1 << 1,
  FATAL_ERROR: 1 << 2,
  UNSUPPORTED_REQUEST: 1 << 3,
} as const;

const PCIE_CAPABILITY_VERSION = 2;
const PCIE_DEVICE_TYPE_ENDPOINT = 0;
const LINK_SPEED_8GT = 3;
const LINK_WIDTH_X4 = 4;

export function installPowerManagementCapability(config: ConfigSpace, offset: number, next: number): void {
  config.define(offset, 1, CapabilityId.POWER_MANAGEMENT);
  config.define(offset + 1, 1, next);
  // Version 1.2 (PMCSR v3 layout); D1/D2 and PME not supported, no aux current.
  config.define(offset + PmRegister.CAPABILITIES, 2, PM_VERSION_1_2);
  // Only the power state field is writable; PME_En/PME_Status are hard-wired 0 since PME is unsupported.
  config.define(offset + PmRegister.CONTROL_STATUS, 2, PmControl.D0 | PmControl.NO_SOFT_RESET, {
    writable: PmControl.POWER_STATE_MASK,
  });
}

export interface MsixCapabilityLayout {
  vectors: number;
  bar: number;
  tableOffset: number;
  pbaOffset: number;
}

export function installMsixCapability(config: ConfigSpace, offset: number, next: number, msix: MsixCapabilityLayout): void {
  config.define(offset, 1, CapabilityId.MSIX);
  config.define(offset + 1, 1, next);
  config.define(offset + MsixRegister.MESSAGE_CONTROL, 2, (msix.vectors - 1) & MsixControl.TABLE_SIZE_MASK, {
    writable: MsixControl.ENABLE | MsixControl.FUNCTION_MASK,
  });
  // Offsets are 8-byte aligned, so the low 3 bits carry the BAR indicator.
  config.define(offset + MsixRegister.TABLE, 4, (msix.tableOffset | msix.bar) >>> 0);
  config.define(offset + MsixRegister.PBA, 4, (msix.pbaOffset | msix.bar) >>> 0);
}

export function installPciExpressCapability(config: ConfigSpace, offset: number, next: number): void {
  config.define(offset, 1, CapabilityId.PCI_EXPRESS);
  config.define(offset + 1, 1, next);
  config.define(offset + PcieRegister.CAPABILITIES, 2, PCIE_CAPABILITY_VERSION | (PCIE_DEVICE_TYPE_ENDPOINT << 4));

  // Acceptable L0s/L1 latencies "no limit" (0b111 each): we are a virtual link with no power management.
  const acceptableLatencies = (0b111 << 6) | (0b111 << 9);
  config.define(
    offset + PcieRegister.DEVICE_CAPABILITIES,
    4,
    DeviceCapability.MAX_PAYLOAD_256 |
      DeviceCapability.EXTENDED_TAG |
      acceptableLatencies |
      DeviceCapability.ROLE_BASED_ERROR_REPORTING |
      DeviceCapability.FUNCTION_LEVEL_RESET,
  );
  // Initiate FLR is not writable storage: it always reads 0; the PciFunction acts on the written value.
  const deviceControlWritable =
    DeviceControl.CORRECTABLE_ERROR_REPORTING |
    DeviceControl.NON_FATAL_ERROR_REPORTING |
    DeviceControl.FATAL_ERROR_REPORTING |
    DeviceControl.UNSUPPORTED_REQUEST_REPORTING |
    DeviceControl.RELAXED_ORDERING |
    DeviceControl.MAX_PAYLOAD_MASK |
    DeviceControl.EXTENDED_TAG |
    DeviceControl.NO_SNOOP |
    DeviceControl.MAX_READ_REQUEST_MASK;
  // Power-on defaults per spec: relaxed ordering and no-snoop enabled, MPS 128 B, MRRS 512 B.
  const deviceControlDefault =
    DeviceControl.RELAXED_ORDERING | DeviceControl.NO_SNOOP | (0b010 << DeviceControl.MAX_READ_REQUEST_SHIFT);
  config.define(offset + PcieRegister.DEVICE_CONTROL, 2, deviceControlDefault, { writable: deviceControlWritable });
  config.define(offset + PcieRegister.DEVICE_STATUS, 2, 0, {
    writeOneToClear:
      DeviceStatus.CORRECTABLE_ERROR |
      DeviceStatus.NON_FATAL_ERROR |
      DeviceStatus.FATAL_ERROR |
      DeviceStatus.UNSUPPORTED_REQUEST,
  });

  // A plausible x4 Gen3 link; no ASPM, port number 0.
  config.define(offset + PcieRegister.LINK_CAPABILITIES, 4, LINK_SPEED_8GT | (LINK_WIDTH_X4 << 4));
  // Read Completion Boundary (3), Common Clock Configuration (6), Extended Synch (7) are plain software bits.
  config.define(offset + PcieRegister.LINK_CONTROL, 2, 0, { writable: (1 << 3) | (1 << 6) | (1 << 7) });
  // Current speed/width as negotiated, slot clock configuration set.
  config.define(offset + PcieRegister.LINK_STATUS, 2, LINK_SPEED_8GT | (LINK_WIDTH_X4 << 4) | (1 << 12));

  // Completion timeout ranges A-D supported, completion timeout disable supported.
  config.define(offset + PcieRegister.DEVICE_CAPABILITIES_2, 4, 0b1111 | (1 << 4));
  // Completion Timeout Value (3:0) and Completion Timeout Disable (4).
  config.define(offset + PcieRegister.DEVICE_CONTROL_2, 2, 0, { writable: 0x1f });
  // Supported link speeds vector: 2.5, 5 and 8 GT/s.
  config.define(offset + PcieRegister.LINK_CAPABILITIES_2, 4, 0b1110);
  // Target Link Speed defaults to the maximum.
  config.define(offset + PcieRegister.LINK_CONTROL_2, 2, LINK_SPEED_8GT, { writable: 0xf });
  // Gen3 equalization complete and all phases successful.
  config.define(offset + PcieRegister.LINK_STATUS_2, 2, 0b11110);
}

/** Installs the full list PM -> MSI-X -> PCIe and points the header at it. */
export function installStandardCapabilities(config: ConfigSpace, msix: MsixCapabilityLayout): void {
  installPowerManagementCapability(config, CapabilityOffset.POWER_MANAGEMENT, CapabilityOffset.MSIX);
  installMsixCapability(config, CapabilityOffset.MSIX, CapabilityOffset.PCI_EXPRESS, msix);
  installPciExpressCapability(config, CapabilityOffset.PCI_EXPRESS, 0);
}

/**
 * Walks the capability list from the header pointer and returns the offset of capability `id`, or null.
 * Bounded so that a corrupt list (a loop) cannot hang the caller.
 */
export function findCapability(config: ConfigSpace, id: number): number | null {
  let offset = config.read8(ConfigRegister.CAPABILITIES_POINTER) & ~0b11;
  for (let hops = 0; offset !== 0 && hops < LEGACY_CONFIG_SPACE_SIZE / 4; hops++) {
    if (offset < 0x40 || offset + 2 > LEGACY_CONFIG_SPACE_SIZE) return null;
    if (config.read8(offset) === id) return offset;
    offset = config.read8(offset + 1) & ~0b11;
  }
  return null;
}
