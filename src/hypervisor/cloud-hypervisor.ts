/**
 * cloud-hypervisor's REST API on a VM's API unix socket (prefix /api/v1): vm.add-device (VFIO by sysfs path),
 * vm.add-user-device (vfio-user), vm.remove-device, vm.info (device_tree) and vmm.ping.
 *
 * Errors: v48 (what FeOS pins) answers every API error with 500 and a JSON array of the error chain
 * (["Error from API", "The device could not be added to the VM", ...]); newer versions use 400/404/409 with text or
 * JSON bodies. Both are mapped onto VfiodError codes from the status and the chain's text, with the VM and device in
 * the message. A missing socket or a refused connection is UNAVAILABLE, no answer in time DEADLINE_EXCEEDED; such
 * errors say whether the request reached the VMM (`commandSent`, as QMP's do): not when the connection was never made.
 */
import { hostSysfsPath, resolveVfioBackend } from './vfio-backend.js';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import http from 'node:http';
import { StringDecoder } from 'node:string_decoder';
import { rootLogger } from '../util/log.js';
import { type ErrorCode, errorMessage, VfiodError } from '../util/errors.js';
import { trailingBdf } from '../util/pci-address.js';
import { sleep } from '../util/sleep.js';
import type { ChDeviceConfig, ChUserDeviceConfig } from './static-config.js';
import { type AddedDevice, type HypervisorAdapter, type PciDeviceSpec, type UserDeviceSpec, type VmmDevice, vmmAnswerReason, withCommandSent } from './types.js';

const API_PREFIX = '/api/v1';
const DEFAULT_TIMEOUT_MS = 10_000;
/** Largest answer body read (vm.info of a big VM is tens of KiB); more means something is wrong. */
const MAX_BODY = 8 << 20;

export interface CloudHypervisorOptions {
  vmId: string;
  apiSocket: string;
  /** How often removeDevice polls vm.info for the id to disappear (default 200 ms). */
  pollMs?: number;
  /**
   * The VMM's event-monitor file (cloud-hypervisor --event-monitor path=...), when it is a regular file: removeDevice
   * then also returns on a `device-removed` event for the id, without waiting for the next vm.info poll.
   */
  eventMonitor?: string;
}

/**
 * Reads the JSON objects appended to an event-monitor file since the last call. cloud-hypervisor writes one
 * (pretty-printed) JSON object per event; objects are found by brace depth, outside strings.
 */
export class EventMonitorReader {
  private offset: number;
  private pending = '';
  // Keeps a multi-byte character split across two reads whole (a plain toString would turn both halves into U+FFFD).
  private decoder = new StringDecoder('utf8');

  constructor(readonly file: string) {
    this.offset = existsSync(file) ? statSync(file).size : 0; // only events from now on
  }

  read(): Array<Record<string, unknown>> {
    if (!existsSync(this.file)) return [];
    const size = statSync(this.file).size;
    if (size < this.offset) {
      // Truncated or replaced: what was pending belongs to the old file.
      this.offset = 0;
      this.pending = '';
      this.decoder = new StringDecoder('utf8');
    }
    if (size > this.offset) {
      const buffer = Buffer.alloc(size - this.offset);
      const fd = openSync(this.file, 'r');
      let got: number;
      try {
        got = readSync(fd, buffer, 0, buffer.length, this.offset);
      } finally {
        closeSync(fd);
      }
      this.offset += got;
      this.pending += this.decoder.write(buffer.subarray(0, got)); // a short read leaves zeros after `got`
    }
    const events: Array<Record<string, unknown>> = [];
    let depth = 0;
    let inString = false;
    let start = -1;
    let consumed = 0;
    for (let i = 0; i < this.pending.length; i++) {
      const c = this.pending[i];
      if (inString) {
        if (c === '\\') i++;
        else if (c === '"') inString = false;
      } else if (c === '"') inString = true;
      else if (c === '{') {
        if (depth++ === 0) start = i;
      } else if (c === '}' && depth > 0 && --depth === 0) {
        try {
          const value: unknown = JSON.parse(this.pending.slice(start, i + 1));
          if (value && typeof value === 'object') events.push(value as Record<string, unknown>);
        } catch {
          /* not an event: skip it */
        }
        consumed = i + 1;
      }
    }
    this.pending = this.pending.slice(consumed);
    return events;
  }
}

interface HttpAnswer {
  status: number;
  contentType: string;
  body: string;
}

/** One entry of vm.info's device_tree (OpenAPI DeviceNode). */
interface DeviceNode {
  id?: string;
  pci_bdf?: string;
  children?: string[];
}

/** The error chain of an API error: v48's JSON array, a JSON object with a message, or plain text. */
export function parseErrorChain(body: string): string[] {
  const text = body.trim();
  if (!text) return [];
  try {
    const parsed: unknown = JSON.parse(text);
    if (Array.isArray(parsed)) return parsed.map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
    if (typeof parsed === 'string') return [parsed];
    if (parsed && typeof parsed === 'object') {
      const o = parsed as Record<string, unknown>;
      for (const key of ['error', 'message', 'msg']) {
        const v = o[key];
        if (typeof v === 'string') return [v];
        if (Array.isArray(v)) return v.map(String);
      }
      return [JSON.stringify(parsed)];
    }
  } catch {
    /* plain text */
  }
  return text.split('\n').map((l) => l.trim()).filter(Boolean);
}

/** The status code for an API error, from the HTTP status (newer versions) refined by the chain's text (v48: all 500). */
export function classifyApiError(status: number, chain: string[]): ErrorCode {
  const text = chain.join(' | ');
  if (/not unique|already exists|duplicate/i.test(text)) return 'ALREADY_EXISTS';
  if (status === 404) return 'NOT_FOUND';
  if (status === 409) return 'FAILED_PRECONDITION';
  if (status === 429 || status === 503) return 'UNAVAILABLE';
  if (/not viable|in use|busy|EBUSY|not running|not created|not booted|VmNotRunning|VmNotCreated|not supported|iommu/i.test(text)) {
    return 'FAILED_PRECONDITION';
  }
  if (/unknown device|UnknownDevice|no such|not found|does not exist|ENOENT|No such file/i.test(text)) return 'NOT_FOUND';
  if (status === 400 || /invalid|could not parse|deserializ|missing field|unknown field/i.test(text)) return 'INVALID_ARGUMENT';
  return 'INTERNAL';
}

export class CloudHypervisorClient implements HypervisorAdapter {
  readonly kind = 'cloud-hypervisor' as const;
  readonly vmId: string;
  readonly apiSocket: string;
  private readonly pollMs: number;
  private readonly eventMonitor: string | undefined;
  private readonly log;

  constructor(options: CloudHypervisorOptions) {
    this.vmId = options.vmId;
    this.apiSocket = options.apiSocket;
    this.pollMs = options.pollMs ?? 200;
    this.eventMonitor = options.eventMonitor;
    this.log = rootLogger.child({ component: 'cloud-hypervisor', vm: this.vmId, apiSocket: this.apiSocket });
  }

  private where(): string {
    return `VM ${this.vmId} (cloud-hypervisor API ${this.apiSocket})`;
  }

  /**
   * One HTTP request on the API socket. Rejects with UNAVAILABLE / DEADLINE_EXCEEDED (saying whether the request
   * reached the VMM: `commandSent`); any HTTP status resolves.
   */
  private request(method: 'GET' | 'PUT', endpoint: string, body: unknown, timeoutMs: number, what: string): Promise<HttpAnswer> {
    if (!existsSync(this.apiSocket)) {
      return Promise.reject(new VfiodError('UNAVAILABLE', `${what}: ${this.where()}: the API socket does not exist (is the VM running?)`, {
          reason: 'VMM_SOCKET_MISSING',
          vmId: this.vmId,
          socketPath: this.apiSocket,
          commandSent: false,
        }),
      );
    }
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<HttpAnswer>((resolve, reject) => {
      let settled = false;
      // The request is written as soon as the connection is made: before that a failure is certain to have changed
      // nothing (refused, EAGAIN); after it the VMM may be carrying the request out.
      let connected = false;
      const fail = (error: VfiodError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        reject(withCommandSent(error, connected));
      };
      const req = http.request(
        {
          socketPath: this.apiSocket,
          path: `${API_PREFIX}/${endpoint}`,
          method,
          headers: {
            Host: 'localhost',
            Accept: 'application/json',
            ...(payload ? { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let length = 0;
          res.on('data', (c: Buffer) => {
            length += c.length;
            if (length > MAX_BODY) {
              fail(new VfiodError('INTERNAL', `${what}: ${this.where()}: the answer is larger than ${MAX_BODY} bytes`, {
                  reason: 'VMM_BAD_ANSWER',
                  vmId: this.vmId,
                  httpStatus: res.statusCode,
                }),
              );
              return;
            }
            chunks.push(c);
          });
          res.on('error', (error) => fail(new VfiodError('UNAVAILABLE', `${what}: ${this.where()}: reading the answer failed: ${error.message}`, { reason: 'VMM_UNAVAILABLE', vmId: this.vmId })));
          // The VMM going away in the middle of an answer (no 'end'): fail now rather than at the timeout.
          res.on('close', () => {
            if (!res.complete) fail(new VfiodError('UNAVAILABLE', `${what}: ${this.where()}: the connection closed in the middle of the answer`, { reason: 'VMM_UNAVAILABLE', vmId: this.vmId }));
          });
          res.on('end', () => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks).toString('utf8') });
          });
        },
      );
      req.on('socket', (socket) => {
        if (socket.connecting) socket.once('connect', () => (connected = true));
        else connected = true; // a kept-alive connection
      });
      const timer = setTimeout(() => {
        const waitedFor = connected ? 'no answer' : 'no connection';
        fail(new VfiodError('DEADLINE_EXCEEDED', `${what}: ${this.where()}: ${waitedFor} within ${timeoutMs} ms`, { reason: 'VMM_TIMEOUT', vmId: this.vmId, socketPath: this.apiSocket }));
      }, timeoutMs);
      req.on('error', (error: NodeJS.ErrnoException) => {
        const code = error.code === 'ECONNREFUSED' || error.code === 'ENOENT' || error.code === 'ECONNRESET' || error.code === 'EPIPE' ? 'UNAVAILABLE' : 'INTERNAL';
        fail(new VfiodError(code, `${what}: ${this.where()}: ${error.code ?? ''} ${error.message}`.replace(/\s+/g, ' '), { reason: vmmAnswerReason(code), vmId: this.vmId }));
      });
      if (payload) req.end(payload);
      else req.end();
    });
  }

  /** Throws the mapped VfiodError for a non-2xx answer. */
  private check(answer: HttpAnswer, what: string, details: Record<string, unknown> = {}): void {
    if (answer.status >= 200 && answer.status < 300) return;
    const chain = parseErrorChain(answer.body);
    const code = classifyApiError(answer.status, chain);
    throw new VfiodError(code, `${what}: ${this.where()} answered ${answer.status}: ${chain.join(': ') || '(no body)'}`, {
      reason: vmmAnswerReason(code),
      vmId: this.vmId,
      httpStatus: answer.status,
      errorChain: chain,
      ...details,
    });
  }

  /** The answer's JSON object; INTERNAL (quoting the body) for anything else, including JSON that is not an object. */
  private parseJson<T extends object>(answer: HttpAnswer, what: string): Partial<T> {
    let value: unknown;
    try {
      value = JSON.parse(answer.body);
    } catch (error) {
      throw new VfiodError('INTERNAL', `${what}: ${this.where()} sent a body that is not JSON (${errorMessage(error)}): ${answer.body.slice(0, 200)}`, {
        reason: 'VMM_BAD_ANSWER',
        vmId: this.vmId,
      });
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) {
      throw new VfiodError('INTERNAL', `${what}: ${this.where()} sent JSON that is not an object: ${answer.body.slice(0, 200)}`, { reason: 'VMM_BAD_ANSWER', vmId: this.vmId });
    }
    return value as Partial<T>;
  }

  async ping(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string> {
    const what = 'vmm.ping';
    const answer = await this.request('GET', 'vmm.ping', undefined, timeoutMs, what);
    this.check(answer, what);
    const info = this.parseJson<{ version?: unknown }>(answer, what);
    return typeof info.version === 'string' ? info.version : 'unknown';
  }

  /** vm.info's device_tree (id -> node). */
  async deviceTree(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Record<string, DeviceNode>> {
    const what = 'vm.info';
    const answer = await this.request('GET', 'vm.info', undefined, timeoutMs, what);
    this.check(answer, what);
    return this.treeOf(this.parseJson<{ device_tree: Record<string, DeviceNode> | null }>(answer, what), what);
  }

  private treeOf(info: { device_tree?: Record<string, DeviceNode> | null }, what: string): Record<string, DeviceNode> {
    const tree = info.device_tree ?? {};
    if (typeof tree !== 'object' || Array.isArray(tree)) {
      throw new VfiodError('INTERNAL', `${what}: ${this.where()}: device_tree is not an object: ${JSON.stringify(tree).slice(0, 200)}`, {
        reason: 'VMM_BAD_ANSWER',
        vmId: this.vmId,
      });
    }
    // Keep only well-formed nodes: a stray null or number must not break every later lookup.
    return Object.fromEntries(Object.entries(tree).filter((e): e is [string, DeviceNode] => !!e[1] && typeof e[1] === 'object'));
  }

  /**
   * The devices of device_tree, plus those only in the VM's config: a VM created but not booted has its cold-added
   * devices there and nowhere else (they reach device_tree at boot), and they are just as much the VM's.
   */
  async listDevices(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<VmmDevice[]> {
    const what = 'vm.info';
    const answer = await this.request('GET', 'vm.info', undefined, timeoutMs, what);
    this.check(answer, what);
    const info = this.parseJson<{ config: { devices?: unknown; user_devices?: unknown } | null; device_tree: Record<string, DeviceNode> | null }>(answer, what);
    const tree = this.treeOf(info, what);
    const out: VmmDevice[] = Object.entries(tree).map(([key, node]) => ({ id: node.id ?? key, guestBdf: node.pci_bdf ?? null, hostBdf: null }));
    for (const list of [info.config?.devices, info.config?.user_devices]) {
      if (!Array.isArray(list)) continue;
      for (const d of list as Array<{ id?: unknown; path?: unknown } | null>) {
        const id = d?.id;
        if (typeof id !== 'string' || out.some((o) => o.id === id)) continue;
        const bdf = typeof d?.path === 'string' ? trailingBdf(d.path) : undefined;
        out.push({ id, guestBdf: null, hostBdf: bdf ?? null });
      }
    }
    return out;
  }

  async hasDevice(id: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<boolean> {
    const tree = await this.deviceTree(timeoutMs);
    return id in tree || Object.values(tree).some((n) => n.id === id);
  }

  private async add(endpoint: 'vm.add-device' | 'vm.add-user-device', body: ChDeviceConfig | ChUserDeviceConfig, id: string, timeoutMs: number, source: string): Promise<AddedDevice> {
    const what = `${endpoint} ${id} (${source})`;
    const answer = await this.request('PUT', endpoint, body, timeoutMs, what);
    this.check(answer, what, { deviceId: id });
    if (answer.status === 204) {
      this.log.info('device cold-added (VM not booted)', { device: id, source });
      return { id, guestBdf: null, coldAdded: true, bus: null };
    }
    // The device is in the VM now whatever the body says: an unreadable PciDeviceInfo only loses the guest address
    // (the orchestrator confirms through vm.info anyway); failing here would leave the device plugged in unrecorded.
    let info: Partial<{ id: unknown; bdf: unknown }> = {};
    try {
      info = this.parseJson<{ id: unknown; bdf: unknown }>(answer, what);
    } catch (error) {
      this.log.warn('hot-plug answer unreadable', { device: id, source, error: errorMessage(error) });
    }
    const guestBdf = typeof info.bdf === 'string' ? info.bdf : null;
    this.log.info('device hot-plugged', { device: id, source, guestBdf });
    return { id: typeof info.id === 'string' ? info.id : id, guestBdf, coldAdded: false, bus: null };
  }

  async addPciDevice(spec: PciDeviceSpec, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<AddedDevice> {
    if (spec.bootIndex !== undefined) {
      throw new VfiodError('INVALID_ARGUMENT', `vm.add-device ${spec.id}: ${this.where()}: cloud-hypervisor has no boot order (bootIndex); boot from NVMe needs CLOUDHV.fd firmware`, {
        reason: 'BOOT_INDEX_UNSUPPORTED',
        vmId: this.vmId,
      });
    }
    // v48 opens VFIO devices through their group only: the same refusal as the static configuration's.
    if (spec.vfioBackend === 'iommufd') resolveVfioBackend('iommufd', spec.hostBdf, undefined, 'cloud-hypervisor', `vm.add-device ${spec.id}: ${this.where()}`);
    const body: ChDeviceConfig = { path: hostSysfsPath(spec.hostBdf), id: spec.id };
    if (spec.iommu !== undefined) body.iommu = spec.iommu;
    if (spec.pciSegment !== undefined) body.pci_segment = spec.pciSegment;
    if (spec.gpudirectClique !== undefined) body.x_nv_gpudirect_clique = spec.gpudirectClique;
    return this.add('vm.add-device', body, spec.id, timeoutMs, `host ${spec.hostBdf}`);
  }

  async addUserDevice(spec: UserDeviceSpec, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<AddedDevice> {
    if (spec.bootIndex !== undefined) {
      throw new VfiodError('INVALID_ARGUMENT', `vm.add-user-device ${spec.id}: ${this.where()}: cloud-hypervisor has no boot order (bootIndex)`, {
        reason: 'BOOT_INDEX_UNSUPPORTED',
        vmId: this.vmId,
      });
    }
    const body: ChUserDeviceConfig = { socket: spec.socketPath, id: spec.id };
    if (spec.pciSegment !== undefined) body.pci_segment = spec.pciSegment;
    return this.add('vm.add-user-device', body, spec.id, timeoutMs, `vfio-user ${spec.socketPath}`);
  }

  /** Asks for removal only (204 at once; the guest ejects the device later). */
  async requestRemove(id: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    const what = `vm.remove-device ${id}`;
    const answer = await this.request('PUT', 'vm.remove-device', { id }, timeoutMs, what);
    this.check(answer, what, { deviceId: id });
  }

  async removeDevice(id: string, timeoutMs: number): Promise<void> {
    const started = Date.now();
    const deadline = started + timeoutMs;
    const events = this.eventMonitor && (!existsSync(this.eventMonitor) || statSync(this.eventMonitor).isFile()) ? new EventMonitorReader(this.eventMonitor) : undefined;
    await this.requestRemove(id, Math.max(1, Math.min(DEFAULT_TIMEOUT_MS, timeoutMs)));
    // cloud-hypervisor tears the device down only after the guest ejected it (ACPI); then it reports device-removed
    // on the event monitor and the id leaves device_tree.
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const removed = events?.read().find((e) => e.event === 'device-removed' && (e.properties as { id?: unknown } | undefined)?.id === id);
      if (removed) {
        this.log.info('device removed (event monitor)', { device: id, millis: Date.now() - started });
        return;
      }
      let present: boolean;
      try {
        present = await this.hasDevice(id, Math.max(1, Math.min(DEFAULT_TIMEOUT_MS, left)));
      } catch (error) {
        // A vm.info that takes the rest of the time (a busy host) ends the wait as if the device were still there:
        // the caller's deadline is about this device, and the error below names it.
        if (error instanceof VfiodError && error.code === 'DEADLINE_EXCEEDED' && Date.now() >= deadline) break;
        throw error;
      }
      if (!present) {
        this.log.info('device removed', { device: id, millis: Date.now() - started });
        return;
      }
      await sleep(Math.min(this.pollMs, Math.max(1, deadline - Date.now())));
    }
    throw new VfiodError(
      'DEADLINE_EXCEEDED',
      `vm.remove-device ${id}: ${this.where()}: the device is still in vm.info's device_tree after ${timeoutMs} ms: the guest has not ejected it`,
      { reason: 'GUEST_DID_NOT_RELEASE', vmId: this.vmId, deviceId: id, timeoutMs },
    );
  }

  async close(): Promise<void> {
    /* one connection per request: nothing to close */
  }
}
