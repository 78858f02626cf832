/**
 * Namespace URIs: how operators name a namespace's backend on the command line and in config files.
 *
 *   memory:<size>[?block-size=512|4096]
 *   file:<path>[?size=<size>&block-size=512|4096&direct=0|1&readonly=0|1]     (path absolute or relative)
 *   file:///<absolute path>[?...]
 *
 * Sizes take the suffixes of src/util/size.ts (`64M`, `1GiB`, ...) and must be multiples of the block size. Paths are
 * taken literally (no percent-decoding); a path containing '?' cannot be expressed.
 *
 *   nvme-tcp://<host>:<port>[,...]/<subsystem NQN>[?...]   a remote NVMe/TCP namespace (nvme-tcp/uri.ts)
 *
 * This file is the one registry of schemes: it registers every backend's, and callers parse and open through it.
 * A scheme is a handler (scheme.ts), so another backend plugs in with `registerNamespaceScheme` without changing
 * callers.
 */
import path from 'node:path';
import { rootLogger, type Logger } from '../util/log.js';
import { FileNamespace } from './file.js';
import { MemoryNamespace } from './memory.js';
import type { Namespace } from './namespace.js';
import { nvmeTcpScheme } from './nvme-tcp/uri.js';
import {
  blockSizeParam,
  booleanParam,
  checkMultiple,
  checkParams,
  invalidUri,
  type NamespaceScheme,
  type NamespaceUriParts,
  type NamespaceSpec,
  sizeParam,
} from './scheme.js';

export type { NamespaceSpec } from './scheme.js';

export interface MemoryNamespaceSpec extends NamespaceSpec {
  readonly scheme: 'memory';
  readonly sizeBytes: number;
  readonly blockSize: number;
}

export interface FileNamespaceSpec extends NamespaceSpec {
  readonly scheme: 'file';
  /** Absolute (resolved against the working directory at parse time). */
  readonly path: string;
  readonly sizeBytes?: number;
  readonly blockSize: number;
  readonly direct: boolean;
  readonly readOnly: boolean;
}

const schemes = new Map<string, NamespaceScheme>();

/** Adds (or replaces) the handler of `scheme` (lower case, without the colon). */
export function registerNamespaceScheme<S extends NamespaceSpec>(scheme: string, handler: NamespaceScheme<S>): void {
  if (!/^[a-z][a-z0-9+.-]*$/.test(scheme)) throw new Error(`invalid namespace scheme name '${scheme}'`);
  schemes.set(scheme, handler as unknown as NamespaceScheme);
}

export function knownNamespaceSchemes(): string[] {
  return [...schemes.keys()].sort();
}

export function parseNamespaceUri(uri: string): NamespaceSpec {
  const { handler, parts } = splitUri(uri);
  return handler.parse(parts);
}

/** The URI's `block-size` parameter, undefined when it has none (the backend's default, or its own). */
export function explicitBlockSize(uri: string): number | undefined {
  const text = splitUri(uri).parts.params.get('block-size');
  return text === undefined ? undefined : Number(text);
}

/**
 * The spec of `uri` opened with LBA data size `blockSize`, for schemes whose block size is chosen (memory, file);
 * undefined for a scheme whose backend has its own (nvme-tcp).
 */
export function specWithBlockSize(uri: string, blockSize: number): NamespaceSpec | undefined {
  const { handler, parts } = splitUri(uri);
  const spec = handler.parse(parts);
  if (!isFileNamespaceSpec(spec) && !isMemoryNamespaceSpec(spec)) return undefined;
  const given = parts.params.get('block-size');
  if (given !== undefined && Number(given) !== blockSize) throw new Error(invalidUri(uri, `block-size=${given}, but ${blockSize} is asked for`));
  return handler.parse({ ...parts, params: new Map([...parts.params, ['block-size', String(blockSize)]]) });
}

function splitUri(uri: string): { handler: NamespaceScheme; parts: NamespaceUriParts } {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(uri);
  const known = `known schemes: ${knownNamespaceSchemes().join(', ')}`;
  if (!match) throw new Error(invalidUri(uri, `missing scheme (${known})`));
  const scheme = match[1]!.toLowerCase();
  const handler = schemes.get(scheme);
  if (!handler) throw new Error(invalidUri(uri, `unknown scheme '${scheme}' (${known})`));
  const rest = uri.slice(match[0].length);
  const question = rest.indexOf('?');
  const body = question < 0 ? rest : rest.slice(0, question);
  const params = new Map<string, string>();
  if (question >= 0) {
    for (const pair of rest.slice(question + 1).split('&')) {
      if (pair === '') continue;
      const equals = pair.indexOf('=');
      if (equals <= 0) throw new Error(invalidUri(uri, `malformed parameter '${pair}' (expected key=value)`));
      const key = pair.slice(0, equals);
      if (params.has(key)) throw new Error(invalidUri(uri, `parameter '${key}' given twice`));
      params.set(key, pair.slice(equals + 1));
    }
  }
  return { handler, parts: { uri, scheme, body, params } };
}

export async function openNamespace(spec: NamespaceSpec, logger: Logger = rootLogger): Promise<Namespace> {
  const handler = schemes.get(spec.scheme);
  if (!handler) {
    throw new Error(`cannot open namespace '${spec.uri}': unknown scheme '${spec.scheme}'`);
  }
  return handler.open(spec, logger);
}

export function isFileNamespaceSpec(spec: NamespaceSpec): spec is FileNamespaceSpec {
  return spec.scheme === 'file';
}

export function isMemoryNamespaceSpec(spec: NamespaceSpec): spec is MemoryNamespaceSpec {
  return spec.scheme === 'memory';
}

/**
 * `uri` of a namespace grown at runtime to `sizeBytes`, so that it opens at that size again: a memory namespace's
 * size, a file's `size=` (a file named without it opens at the file's size, which the grow changed: `uri` as it is).
 * Throws for a scheme whose size is not in its URI.
 */
export function resizedNamespaceUri(uri: string, sizeBytes: number): string {
  const spec = parseNamespaceUri(uri);
  const question = uri.indexOf('?');
  const query = question < 0 ? '' : uri.slice(question);
  if (isMemoryNamespaceSpec(spec)) return `${uri.slice(0, uri.indexOf(':') + 1)}${sizeBytes}${query}`;
  if (isFileNamespaceSpec(spec)) {
    if (spec.sizeBytes === undefined) return uri;
    const params = query.slice(1).split('&').map((pair) => (pair.startsWith('size=') ? `size=${sizeBytes}` : pair));
    return `${uri.slice(0, question)}?${params.join('&')}`;
  }
  throw new Error(`namespace '${uri}': its size is not in its URI but its backend's`);
}

// --- the schemes -----------------------------------------------------------------------------------------------

registerNamespaceScheme<MemoryNamespaceSpec>('memory', {
  parse(parts) {
    checkParams(parts, ['block-size']);
    if (parts.body === '') throw new Error(invalidUri(parts.uri, 'missing size'));
    const sizeBytes = sizeParam(parts, parts.body);
    const blockSize = blockSizeParam(parts);
    checkMultiple(parts, sizeBytes, blockSize);
    return { scheme: 'memory', uri: parts.uri, sizeBytes, blockSize };
  },
  open(spec) {
    return Promise.resolve(new MemoryNamespace({ sizeBytes: spec.sizeBytes, blockSize: spec.blockSize }));
  },
});

registerNamespaceScheme<FileNamespaceSpec>('file', {
  parse(parts) {
    checkParams(parts, ['size', 'block-size', 'direct', 'readonly']);
    let filePath = parts.body;
    if (filePath.startsWith('//')) {
      // RFC 8089 form: file://<host>/<path>; only the local host (empty or 'localhost') makes sense.
      const slash = filePath.indexOf('/', 2);
      const host = slash < 0 ? filePath.slice(2) : filePath.slice(2, slash);
      if (host !== '' && host !== 'localhost') {
        throw new Error(invalidUri(parts.uri, `only local files are supported, got host '${host}'`));
      }
      filePath = slash < 0 ? '' : filePath.slice(slash);
    }
    if (filePath === '') throw new Error(invalidUri(parts.uri, 'missing path'));
    const blockSize = blockSizeParam(parts);
    const sizeText = parts.params.get('size');
    const sizeBytes = sizeText === undefined ? undefined : sizeParam(parts, sizeText);
    if (sizeBytes !== undefined) checkMultiple(parts, sizeBytes, blockSize);
    return {
      scheme: 'file',
      uri: parts.uri,
      path: path.resolve(filePath),
      ...(sizeBytes !== undefined ? { sizeBytes } : {}),
      blockSize,
      direct: booleanParam(parts, 'direct'),
      readOnly: booleanParam(parts, 'readonly'),
    };
  },
  open(spec, logger) {
    return FileNamespace.open({
      path: spec.path,
      ...(spec.sizeBytes !== undefined ? { sizeBytes: spec.sizeBytes } : {}),
      blockSize: spec.blockSize,
      direct: spec.direct,
      readOnly: spec.readOnly,
      logger,
    });
  },
});

registerNamespaceScheme('nvme-tcp', nvmeTcpScheme);
