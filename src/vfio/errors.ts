/**
 * Errors of the VFIO wrapper: every error from the addon is re-thrown with where it happened (BDF, group,
 * region/irq index) as a message prefix and as properties; errno, code and syscall are kept. Also the argument and
 * state errors the wrapper throws itself.
 */
import { BDF } from '../util/pci-address.js';

/** An error from a VFIO operation, with where it happened. errno/code/syscall come from the addon when it was a syscall. */
export interface VfioError extends Error {
  errno?: number;
  code?: string;
  syscall?: string;
  bdf?: string;
  group?: number | string;
  region?: number;
  irq?: number;
}

interface Where {
  bdf?: string;
  group?: number | string;
  region?: number;
  irq?: number;
}

function describe(where: Where): string {
  const parts: string[] = [];
  if (where.bdf) parts.push(where.bdf);
  if (where.group !== undefined) parts.push(`group ${where.group}`);
  if (where.region !== undefined) parts.push(`region ${where.region}`);
  if (where.irq !== undefined) parts.push(`irq ${where.irq}`);
  return parts.join(', ');
}

/** Runs `fn`, adding `where` to any error it throws (message prefix and properties). */
export function withContext<T>(where: Where, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof Error) {
      const e = error as VfioError;
      const prefix = describe(where);
      if (prefix && !e.message.startsWith(prefix)) e.message = `${prefix}: ${e.message}`;
      for (const [key, value] of Object.entries(where)) {
        if (value !== undefined && (e as unknown as Record<string, unknown>)[key] === undefined) {
          (e as unknown as Record<string, unknown>)[key] = value;
        }
      }
    }
    throw error;
  }
}

/** Using a closed container, group, device, iommufd or IOAS. */
export function stateError(message: string): Error {
  return Object.assign(new Error(message), { code: 'ERR_INVALID_STATE' });
}

/** Throws ERR_INVALID_ARG_VALUE unless `bdf` is a PCI address in sysfs form (0000:01:00.1). */
export function assertBdf(bdf: string): void {
  if (typeof bdf !== 'string' || !BDF.test(bdf)) {
    throw Object.assign(new TypeError(`not a PCI address (0000:01:00.1): ${JSON.stringify(bdf)}`), {
      code: 'ERR_INVALID_ARG_VALUE',
    });
  }
}
