/**
 * PCI addresses (domain:bus:device.function, "BDF") as sysfs, VFIO and the hypervisors write them. The one
 * definition of what a PCI address looks like; everything that takes or finds one goes through here.
 */

/** The canonical form, as sysfs names devices: four hex digits of domain, lower case ("0000:01:00.1"). */
const CANONICAL = '[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]';

/** A canonical PCI address and nothing else. */
export const BDF = new RegExp(`^${CANONICAL}$`);
/** Without the domain ("01:00.1"), as lspci prints it. */
const SHORT_BDF = /^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;
const TRAILING_BDF = new RegExp(`(${CANONICAL})$`);

/** Normalises "01:00.0" / "0000:01:00.0" (any case) to "0000:01:00.0"; undefined when it is not a BDF. */
export function normalizeBdf(text: string): string | undefined {
  const t = text.trim().toLowerCase();
  if (BDF.test(t)) return t;
  if (SHORT_BDF.test(t)) return `0000:${t}`;
  return undefined;
}

/** The canonical address a text ends with ("/sys/bus/pci/devices/0000:01:00.1" -> "0000:01:00.1"), if any. */
export function trailingBdf(text: string): string | undefined {
  return TRAILING_BDF.exec(text)?.[1];
}

/** "0000:01:00.1" -> "0000:01:00" (the slot: functions of one physical device). */
export const slotOf = (bdf: string): string => bdf.slice(0, bdf.lastIndexOf('.'));

/** The routing ID (bus << 8 | device << 3 | function) of a canonical address, and its domain. */
export function routingIdOf(bdf: string): { domain: string; rid: number } {
  const [domain, bus, devFn] = bdf.split(':') as [string, string, string];
  const [dev, fn] = devFn.split('.') as [string, string];
  return { domain, rid: (parseInt(bus, 16) << 8) | (parseInt(dev, 16) << 3) | Number(fn) };
}

/** The canonical address of routing ID `rid` in `domain`. */
export function bdfOfRoutingId(domain: string, rid: number): string {
  const hex2 = (n: number): string => n.toString(16).padStart(2, '0');
  return `${domain}:${hex2((rid >> 8) & 0xff)}:${hex2((rid >> 3) & 0x1f)}.${rid & 7}`;
}
