/** The PCI device model: config space, capabilities, BARs, MSI-X and INTx of one emulated PCIe function. */
export {
  PciFunction,
  type BarDefinition,
  type PciFunctionOptions,
  type RegionDescription,
} from './function.js';
export {
  PciAccessError,
  ConfigSpace,
  ConfigRegister,
  Command,
  Status,
  BarBits,
  CONFIG_SPACE_SIZE,
} from './config-space.js';
export {
  CapabilityId,
  CapabilityOffset,
  PmRegister,
  PmControl,
  MsixRegister,
  MsixControl,
  PcieRegister,
  DeviceCapability,
  DeviceControl,
  DeviceStatus,
  findCapability,
} from './capabilities.js';
export { DEFAULT_MSIX_VECTORS, MSIX_MAX_VECTORS, MSIX_ENTRY_SIZE, MsixEntry, msixLayout, type MsixLayout } from './msix.js';
