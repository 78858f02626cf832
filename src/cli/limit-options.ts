/**
 * The rate-limit option `vfiod serve`, `vfiod controllers create` and `vfiod controllers set-limits` share:
 * `--limit [<nsid>:]<key>=<value>[,<key>=<value>]...`, once for the controller and once per limited namespace
 * (docs/nvme.md "Rate limits"). Parsed here into the controller's limits; the ranges are io-limits.ts's.
 */
import { checkIoLimits } from '../nvme/controller.js';
import type { ControllerIoLimits, IoLimits } from '../nvme/io-limits.js';
import { parseSize } from '../util/size.js';
import { UsageError } from './common.js';

export const LIMIT_USAGE = `  --limit [<nsid>:]<key>=<value>[,<key>=<value>]...
                           I/O rate limits, reads and writes together (docs/nvme.md); without
                           <nsid> for the whole controller, with it for one namespace; keys
                           iops, bandwidth (bytes/s: 200M), burst-ios, burst-bytes (64M)
`;

/** Option keys to fields; sizes take K/M/G suffixes. */
const LIMIT_KEYS: Record<string, { field: keyof IoLimits; size: boolean }> = {
  iops: { field: 'iops', size: false },
  bandwidth: { field: 'bytesPerSecond', size: true },
  'burst-ios': { field: 'burstIos', size: false },
  'burst-bytes': { field: 'burstBytes', size: true },
};

/**
 * The --limit values as a controller's limits (undefined: none given). `nsids`: the namespaces the controller has,
 * when known here (serve, create); a limit for another NSID is refused.
 */
export function limitOptions(texts: readonly string[] | undefined, nsids?: readonly number[]): ControllerIoLimits | undefined {
  if (!texts?.length) return undefined;
  const limits: ControllerIoLimits = {};
  for (const text of texts) {
    const bad = (why: string): UsageError => new UsageError(`--limit '${text}': ${why} (expected [<nsid>:]<key>=<value>,... with keys ${Object.keys(LIMIT_KEYS).join(', ')})`);
    const match = /^(?:([0-9]+):)?(.*)$/.exec(text)!;
    const nsid = match[1] === undefined ? undefined : Number(match[1]);
    const scope: IoLimits = {};
    for (const pair of match[2]!.split(',')) {
      const equals = pair.indexOf('=');
      if (equals <= 0) throw bad(`'${pair}' is not key=value`);
      const key = pair.slice(0, equals);
      const value = pair.slice(equals + 1);
      const spec = Object.hasOwn(LIMIT_KEYS, key) ? LIMIT_KEYS[key]! : undefined;
      if (spec === undefined) throw bad(`unknown key '${key}'`);
      if (scope[spec.field] !== undefined) throw bad(`'${key}' given twice`);
      let number: number;
      try {
        number = spec.size ? parseSize(value) : /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
      } catch (error) {
        throw bad(`${key}: ${(error as Error).message}`);
      }
      if (!Number.isSafeInteger(number)) throw bad(`${key} '${value}' is not a whole number`);
      scope[spec.field] = number;
    }
    if (nsid === undefined) {
      if (limits.controller) throw bad('the controller is given limits twice');
      limits.controller = scope;
    } else {
      if (nsids && !nsids.includes(nsid)) throw bad(`there is no namespace ${nsid} (the namespaces are ${nsids.join(', ')})`);
      (limits.namespaces ??= []).push({ nsid, ...scope });
    }
  }
  const problem = checkIoLimits(limits);
  if (problem) throw new UsageError(`--limit: ${problem}`);
  return limits;
}

/** The limits as the control API's ControllerLimits (CreateController's spec.limits, SetControllerLimits). */
export function limitsMessage(limits: ControllerIoLimits | undefined): { controller?: IoLimits; namespaces: Array<{ nsid: number; limits: IoLimits }> } {
  return {
    ...(limits?.controller ? { controller: limits.controller } : {}),
    namespaces: (limits?.namespaces ?? []).map(({ nsid, ...scope }) => ({ nsid, limits: scope })),
  };
}
