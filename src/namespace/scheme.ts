/**
 * What a namespace URI scheme implements, and the pieces every scheme's parser shares: the URI split into parts,
 * the error message format, and parameter checks. The registry (uri.ts) dispatches to the schemes; a scheme's own
 * file (nvme-tcp/uri.ts, and memory: and file: in uri.ts) imports only this.
 */
import type { Logger } from '../util/log.js';
import { parseSize } from '../util/size.js';
import type { Namespace } from './namespace.js';

/** A parsed namespace URI; each scheme extends it with its own fields. */
export interface NamespaceSpec {
  /** Lower-case scheme without the colon, e.g. 'file'. */
  readonly scheme: string;
  /** The URI as written. */
  readonly uri: string;
}

/** The parts of a URI every scheme handler gets: `<scheme>:<body>[?<params>]`. */
export interface NamespaceUriParts {
  readonly uri: string;
  readonly scheme: string;
  readonly body: string;
  /** `key=value` pairs after '?', in order; keys unique. */
  readonly params: ReadonlyMap<string, string>;
}

export interface NamespaceScheme<S extends NamespaceSpec = NamespaceSpec> {
  /** Validates and converts; throws `Error(invalidUri(parts.uri, reason))` on bad input. */
  parse(parts: NamespaceUriParts): S;
  open(spec: S, logger: Logger): Promise<Namespace>;
}

/** The message format of every URI error. */
export function invalidUri(uri: string, reason: string): string {
  return `invalid namespace URI '${uri}': ${reason}`;
}

/** Throws for parameters other than `allowed`. */
export function checkParams(parts: NamespaceUriParts, allowed: readonly string[]): void {
  for (const key of parts.params.keys()) {
    if (!allowed.includes(key)) {
      const known = allowed.length > 0 ? allowed.join(', ') : 'none';
      throw new Error(invalidUri(parts.uri, `unknown parameter '${key}' (known: ${known})`));
    }
  }
}

export function sizeParam(parts: NamespaceUriParts, text: string): number {
  let bytes: number;
  try {
    bytes = parseSize(text);
  } catch (error) {
    throw new Error(invalidUri(parts.uri, (error as Error).message));
  }
  if (bytes === 0) throw new Error(invalidUri(parts.uri, 'size must be greater than 0'));
  return bytes;
}

/** The LBA data sizes a namespace may have (Identify Namespace LBA Format 0); the first is the default. */
export const BLOCK_SIZES: readonly number[] = [512, 4096];

export function blockSizeParam(parts: NamespaceUriParts): number {
  const text = parts.params.get('block-size');
  if (text === undefined) return BLOCK_SIZES[0]!;
  if (!BLOCK_SIZES.map(String).includes(text)) {
    throw new Error(invalidUri(parts.uri, `block-size must be ${BLOCK_SIZES.join(' or ')}, got '${text}'`));
  }
  return Number(text);
}

export function booleanParam(parts: NamespaceUriParts, key: string): boolean {
  const text = parts.params.get(key);
  if (text === undefined) return false;
  if (text === '1' || text === 'true') return true;
  if (text === '0' || text === 'false') return false;
  throw new Error(invalidUri(parts.uri, `${key} must be 0, 1, true or false, got '${text}'`));
}

export function checkMultiple(parts: NamespaceUriParts, sizeBytes: number, blockSize: number): void {
  if (sizeBytes % blockSize !== 0) {
    throw new Error(invalidUri(parts.uri, `size ${sizeBytes} is not a multiple of the block size ${blockSize}`));
  }
}
