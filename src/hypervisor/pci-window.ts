/**
 * Sizing the guest's 64-bit PCI window for passed-through devices with large BARs (GPUs with 64-128 GiB), from the
 * host's sysfs `resource` facts, and grouping devices by host NUMA node. Pure: the facts come in as arguments.
 *
 * Each root port gets a prefetchable window holding its device's 64-bit prefetchable BARs. BARs are powers of two and
 * naturally aligned, so placed largest first they pack without gaps: the window is their sum (rounded up to the 1 MiB
 * granularity of a bridge window), aligned to the largest BAR. The guest's whole 64-bit aperture holds every window,
 * each at its alignment, plus the room the firmware keeps for the guest's other 64-bit BARs.
 */

/** A PCI function's facts as sysfs gives them (src/devices discovery): its NUMA node and its BARs. */
export interface HostFunctionFacts {
  /** null: sysfs numa_node is -1 (no node). */
  numaNode: number | null;
  /** Index 0-5 BARs, 6 the ROM; flags are the kernel's IORESOURCE_* bits of the `resource` file. */
  bars: Array<{ index: number; size: number; flags: number }>;
}

/** include/linux/ioport.h */
const IORESOURCE_PREFETCH = 0x2000;
const IORESOURCE_MEM_64 = 0x100000;
const LAST_BAR = 5;

export const MIB = 2 ** 20;
export const GIB = 2 ** 30;
/** A bridge's prefetchable window has 1 MiB granularity (PCI-to-PCI bridge spec). */
const BRIDGE_WINDOW_GRANULARITY = MIB;
/**
 * Room kept in the 64-bit aperture for the guest's other 64-bit BARs (virtio, emulated devices, hot-plug): OVMF's
 * own default aperture size, which X-PciMmio64Mb replaces.
 */
export const OVMF_DEFAULT_MMIO64 = 32 * GIB;

export interface BridgeWindow {
  /** Bytes the root port's prefetchable window needs (0: no 64-bit prefetchable BAR). */
  size: number;
  /** Its base alignment: the largest BAR. */
  alignment: number;
}

const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to;
const nextPowerOfTwo = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(n, 1)));

/** The prefetchable window a root port needs for one function's 64-bit prefetchable BARs. */
export function bridgeWindow(facts: HostFunctionFacts | undefined): BridgeWindow {
  const sizes = (facts?.bars ?? [])
    .filter((b) => b.index <= LAST_BAR && (b.flags & IORESOURCE_PREFETCH) !== 0 && (b.flags & IORESOURCE_MEM_64) !== 0)
    .map((b) => nextPowerOfTwo(b.size));
  if (sizes.length === 0) return { size: 0, alignment: 0 };
  const sum = sizes.reduce((a, b) => a + b, 0);
  return { size: roundUp(sum, BRIDGE_WINDOW_GRANULARITY), alignment: Math.max(...sizes) };
}

/** Bytes of 64-bit aperture the windows need, each at its alignment, largest alignment first. */
export function apertureFor(windows: BridgeWindow[]): number {
  let end = 0;
  for (const w of [...windows].filter((x) => x.size > 0).sort((a, b) => b.alignment - a.alignment)) end = roundUp(end, w.alignment) + w.size;
  return end;
}

/**
 * OVMF's fw_cfg opt/ovmf/X-PciMmio64Mb for these windows: the aperture they need plus OVMF's default, rounded up to
 * a power of two (OVMF aligns the aperture's base to its size), in MiB. 0 when no window is needed.
 */
export function ovmfMmio64Mb(windows: BridgeWindow[]): number {
  const needed = apertureFor(windows);
  return needed === 0 ? 0 : nextPowerOfTwo(needed + OVMF_DEFAULT_MMIO64) / MIB;
}

/** A size in QEMU's syntax, in the largest unit that divides it ("64G", "65568M"). */
export function qemuSizeText(bytes: number): string {
  for (const [unit, size] of [['T', 2 ** 40], ['G', GIB], ['M', MIB], ['K', 1024]] as const) if (bytes % size === 0) return `${bytes / size}${unit}`;
  return String(bytes);
}

/** The host NUMA nodes of these functions (sorted), and which function is on which. */
export function numaNodesOf(functions: Array<{ bdf: string; facts: HostFunctionFacts | undefined }>): { nodes: number[]; placement: string[] } {
  const on = functions.filter((f) => f.facts?.numaNode !== null && f.facts?.numaNode !== undefined);
  const nodes = [...new Set(on.map((f) => f.facts!.numaNode!))].sort((a, b) => a - b);
  return { nodes, placement: on.map((f) => `${f.bdf}: node ${f.facts!.numaNode}`) };
}
