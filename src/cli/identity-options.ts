/**
 * The identity options `vfiod serve` and `vfiod controllers create` share: --nsid, --serial, --model, --firmware,
 * --nqn, --ieee-oui, --controller-id and --namespace-identity (docs/serve.md "Identity"). Parsed here into the control
 * API's shape; what the values may be is checked by src/serve/identity-store.ts.
 */
import type { ControllerIdentityRecord, NamespaceIdentityOverride } from '../serve/identity-store.js';
import { MAX_NSID } from '../nvme/identify.js';
import { MAX_CONTROLLER_ID, MAX_IEEE_OUI } from '../nvme/identity.js';
import { integer, UsageError } from './common.js';

export const IDENTITY_USAGE = `  --nsid <n>               the NSID of the --namespace in the same place, once per --namespace
                           (1-${MAX_NSID}, gaps allowed; default 1, 2, ...)
  --serial <text>          serial number (1-20 printable ASCII characters)
  --model <text>           model number (1-40)
  --firmware <text>        firmware revision (1-8)
  --nqn <nqn>              subsystem NQN (nqn.yyyy-mm.<reverse domain>[:<name>], or
                           nqn.2014-08.org.nvmexpress:uuid:<uuid>)
  --ieee-oui <hex>         IEEE OUI, 6 hex digits (default 000000: none)
  --controller-id <n>      controller ID, 0-65519 (default 0)
  --namespace-identity <nsid>:<key>=<value>[,<key>=<value>]...
                           what namespace <nsid> shows, repeat per namespace; keys nguid (32 hex
                           digits), eui64 (16), uuid, block-size (512 or 4096)
`;

/** The values as parseArgs gives them (the options are in CONTROLLER_OPTIONS). */
export interface IdentityOptionValues {
  serial?: string | undefined;
  model?: string | undefined;
  firmware?: string | undefined;
  nqn?: string | undefined;
  'ieee-oui'?: string | undefined;
  'controller-id'?: string | undefined;
  'namespace-identity'?: string[] | undefined;
  nsid?: string[] | undefined;
}

/** The controller identity options; absent ones are absent (they keep the persisted value). */
export function controllerIdentityOptions(values: IdentityOptionValues): Partial<ControllerIdentityRecord> {
  const identity: Partial<ControllerIdentityRecord> = {};
  if (values.serial !== undefined) identity.serialNumber = values.serial;
  if (values.model !== undefined) identity.modelNumber = values.model;
  if (values.firmware !== undefined) identity.firmwareRevision = values.firmware;
  if (values.nqn !== undefined) identity.subsystemNqn = values.nqn;
  const oui = values['ieee-oui'];
  if (oui !== undefined) {
    const digits = oui.replace(/^0x/i, '').replace(/[-:]/g, '');
    if (!/^[0-9a-fA-F]{6}$/.test(digits)) throw new UsageError(`--ieee-oui must be 6 hex digits (e.g. 5cd2e4 or 5c-d2-e4), not '${oui}'`);
    identity.ieeeOui = Number.parseInt(digits, 16);
    if (identity.ieeeOui > MAX_IEEE_OUI) throw new UsageError(`--ieee-oui '${oui}' is more than 24 bits`);
  }
  const controllerId = integer('--controller-id', values['controller-id'], 0, MAX_CONTROLLER_ID);
  if (controllerId !== undefined) identity.controllerId = controllerId;
  return identity;
}

/** --namespace-identity <nsid>:nguid=…,eui64=…,uuid=…,block-size=…, each into one slot's override. */
export function namespaceIdentityOptions(values: IdentityOptionValues): NamespaceIdentityOverride[] {
  return (values['namespace-identity'] ?? []).map((text) => {
    const bad = (why: string): UsageError =>
      new UsageError(`--namespace-identity '${text}': ${why} (expected <nsid>:nguid=<32 hex>,eui64=<16 hex>,uuid=<uuid>,block-size=512|4096; any of the keys)`);
    const colon = text.indexOf(':');
    if (colon < 0) throw bad('no nsid');
    const nsidText = text.slice(0, colon);
    if (!/^[1-9][0-9]*$/.test(nsidText)) throw bad(`nsid '${nsidText}' is not a positive integer`);
    const override: NamespaceIdentityOverride = { nsid: Number(nsidText) };
    for (const pair of text.slice(colon + 1).split(',')) {
      const equals = pair.indexOf('=');
      if (equals <= 0) throw bad(`'${pair}' is not key=value`);
      const key = pair.slice(0, equals);
      const value = pair.slice(equals + 1);
      const keys: Record<string, 'nguid' | 'eui64' | 'uuid' | 'blockSize'> = { nguid: 'nguid', eui64: 'eui64', uuid: 'uuid', 'block-size': 'blockSize' };
      const field = Object.hasOwn(keys, key) ? keys[key]! : undefined;
      if (field === undefined) throw bad(`unknown key '${key}'`);
      if (override[field] !== undefined) throw bad(`'${key}' given twice`);
      if (field === 'blockSize') {
        if (!/^[0-9]+$/.test(value)) throw bad(`block-size '${value}' is not a number`);
        override.blockSize = Number(value);
      } else override[field] = value;
    }
    return override;
  });
}

/** --nsid, once per --namespace in the same order; empty when not given (NSIDs 1..n). */
export function namespaceNsidOptions(values: IdentityOptionValues): number[] {
  return (values.nsid ?? []).map((text) => integer('--nsid', text, 1, MAX_NSID));
}
