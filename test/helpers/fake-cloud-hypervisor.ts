/**
 * A stand-in for one cloud-hypervisor VMM's REST API on a unix socket, for adapter and orchestrator tests.
 * cloud-hypervisor itself cannot run here (no binary in Debian 12, and it needs /dev/kvm, which this host lacks), so
 * this fake behaves like it as documented for v48 (what FeOS pins) and the OpenAPI document in
 * ../shared/contracts/cloud-hypervisor-v48.openapi.yaml:
 *   - every request body is validated against the OpenAPI schema of its path's requestBody (YAML parsed with `yaml`,
 *     $refs resolved by `ajv` against components.schemas, int8/int16/int32/int64 formats range-checked); a request
 *     that does not validate, an unknown path or a wrong method is recorded in `violations` (tests assert it stays
 *     empty) and answered 400. Its own answers are validated against the response schemas too.
 *   - a device_tree: vm.add-device / vm.add-user-device answer 200 {id, bdf} on a running VM (hot-plug), 204 on a
 *     created one (cold add, no tree entry until boot); vm.remove-device answers 204 at once and the id leaves the
 *     tree only when the "guest" ejects it (after `ejectDelayMs`, or never with `guestEjects: false`).
 *   - errors: mode 'v48' answers every API error with 500 and a JSON array of the error chain; mode 'newer' with
 *     400 / 404 / 409 and a text body.
 * Without the OpenAPI document (a clone without ../shared; VFIOD_CH_OPENAPI points elsewhere) only the behaviour is
 * modelled and the tests that are about validation skip, saying why.
 * Hooks let a test model the VMM holding the VFIO group while a device is attached (fake sysfs holders).
 */
import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import { parse } from 'yaml';
import type { FakeHost } from './fake-sysfs.js';

const OPENAPI_CANDIDATES = [
  process.env.VFIOD_CH_OPENAPI,
  fileURLToPath(new URL('../../../shared/contracts/cloud-hypervisor-v48.openapi.yaml', import.meta.url)),
  '/work/shared/contracts/cloud-hypervisor-v48.openapi.yaml',
].filter((f): f is string => typeof f === 'string' && f !== '');

/** cloud-hypervisor's v48 OpenAPI document (the shared contracts directory next to the repository), if present. */
export const OPENAPI_FILE: string | undefined = OPENAPI_CANDIDATES.find((f) => existsSync(f));
/** Why requests cannot be validated here, or undefined when they are. */
export const openApiMissingReason: string | undefined = OPENAPI_FILE
  ? undefined
  : `cloud-hypervisor OpenAPI document not found (looked at ${OPENAPI_CANDIDATES.join(', ')}; set VFIOD_CH_OPENAPI)`;
if (openApiMissingReason) console.warn(`fake-cloud-hypervisor: requests are NOT validated: ${openApiMissingReason}`);

export type FakeChMode = 'v48' | 'newer';

export interface FakeChOptions {
  socketPath: string;
  mode?: FakeChMode;
  /** 'Running' (default: hot-plug) or 'Created' (cold add). */
  state?: 'Created' | 'Running';
  /** When the guest ejects a removed device (default 50 ms). */
  ejectDelayMs?: number;
  /** False: the guest never ejects (removal stays pending). */
  guestEjects?: boolean;
  /** Called for a VFIO add before it succeeds (return an error chain to refuse, like an unusable device). */
  onAddDevice?: (body: { path: string; id?: string }) => string[] | undefined;
  /** Called once a device left the tree (the VMM closed its VFIO fds). */
  onRemoved?: (id: string) => void;
  /** Answer nothing for requests to these endpoints (tests of timeouts). */
  hang?: Set<string>;
  /** Carry out requests to these endpoints at once but answer only after this many ms (a VMM slower than the caller). */
  lateAnswerMs?: Map<string, number>;
  /** Event-monitor file (--event-monitor path=): a pretty-printed JSON `device-removed` event per ejected device. */
  eventMonitor?: string;
  /** The id leaves vm.info's device_tree this long after the device-removed event (default 0). */
  treeLagMs?: number;
}

interface Node {
  id: string;
  resources: object[];
  children: string[];
  pci_bdf: string;
}

/** API errors as cloud-hypervisor forms them; `status` is what the newer versions use. */
class ApiError extends Error {
  constructor(
    readonly status: 400 | 404 | 409,
    readonly chain: string[],
  ) {
    super(chain.join(': '));
  }
}

type Format = { type: 'number'; validate: (n: number) => boolean };
const intFormat = (bits: number, signed = true): Format => ({
  type: 'number',
  validate: (n) => Number.isInteger(n) && (signed ? n >= -(2 ** (bits - 1)) && n < 2 ** (bits - 1) : n >= 0 && n < 2 ** bits),
});

interface OpenApiDoc {
  paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: object }>; required?: boolean }; responses: Record<string, { content?: Record<string, { schema: object }> }> }>>;
  components: { schemas: Record<string, object> };
}

/** Validators for every path's request and response bodies, compiled once. */
export class OpenApiValidator {
  readonly doc: OpenApiDoc;
  private readonly ajv: Ajv;
  private readonly cache = new Map<object, ValidateFunction>();

  constructor(file = OPENAPI_FILE) {
    if (!file) throw new Error(openApiMissingReason);
    this.doc = parse(readFileSync(file, 'utf8')) as OpenApiDoc;
    this.ajv = new Ajv({ strict: false, allErrors: true });
    for (const [name, f] of Object.entries({ int8: intFormat(8), uint8: intFormat(8, false), int16: intFormat(16), int32: intFormat(32), int64: intFormat(64) })) {
      this.ajv.addFormat(name, f);
    }
    // "#/components/schemas/X" refs resolve against this document.
    this.ajv.addSchema({ $id: 'ch', components: this.doc.components }, 'ch');
  }

  private compile(schema: object): ValidateFunction {
    let v = this.cache.get(schema);
    if (!v) {
      const text = JSON.stringify(schema).replaceAll('"#/components/', '"ch#/components/');
      v = this.ajv.compile(JSON.parse(text) as object);
      this.cache.set(schema, v);
    }
    return v;
  }

  operation(method: string, url: string): OpenApiDoc['paths'][string][string] | undefined {
    return this.doc.paths[url]?.[method.toLowerCase()];
  }

  /** Problems with a request body for METHOD /path, [] when it conforms. */
  checkRequest(method: string, url: string, contentType: string, body: string): string[] {
    const op = this.operation(method, url);
    if (!op) return [`${method} ${url}: not in the OpenAPI document`];
    const media = op.requestBody?.content['application/json'];
    if (!media) return body.length > 0 ? [`${method} ${url}: takes no body, got ${body.length} bytes`] : [];
    if (body.length === 0) return op.requestBody?.required ? [`${method} ${url}: body required`] : [];
    if (!contentType.startsWith('application/json')) return [`${method} ${url}: Content-Type '${contentType}' is not application/json`];
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      return [`${method} ${url}: body is not JSON`];
    }
    const validate = this.compile(media.schema);
    if (validate(value)) return [];
    return (validate.errors ?? []).map((e) => `${method} ${url}: body${e.instancePath} ${e.message ?? 'invalid'} (${JSON.stringify(e.params)})`);
  }

  checkResponse(method: string, url: string, status: number, body: unknown): string[] {
    const response = this.operation(method, url)?.responses[String(status)];
    const media = response?.content?.['application/json'];
    if (!media) return [];
    const validate = this.compile(media.schema);
    if (validate(body)) return [];
    return (validate.errors ?? []).map((e) => `fake's own ${status} answer to ${method} ${url}: ${e.instancePath} ${e.message ?? ''}`);
  }
}

let sharedValidator: OpenApiValidator | undefined;

export class FakeCloudHypervisor {
  readonly socketPath: string;
  mode: FakeChMode;
  state: 'Created' | 'Running';
  ejectDelayMs: number;
  guestEjects: boolean;
  readonly tree = new Map<string, Node>();
  /** Devices cold-added to the config (VM created, not booted): VmConfig.devices and VmConfig.user_devices. */
  readonly coldDevices: object[] = [];
  readonly coldUserDevices: object[] = [];
  /** Every request: "PUT /vm.add-device {json}". */
  readonly requests: string[] = [];
  /** Requests that do not conform to the OpenAPI document (tests assert this stays empty). */
  readonly violations: string[] = [];
  /** Pending removals: ids asked to be removed, not yet ejected. */
  readonly removing = new Set<string>();
  /** Errors to answer the next request to an endpoint with (one per request). */
  private readonly injected = new Map<string, string[][]>();
  private readonly server: http.Server;
  /** Undefined when the OpenAPI document is missing (then only the VMM behaviour is modelled). */
  private readonly validator: OpenApiValidator | undefined;
  private nextSlot = 4;
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(private readonly options: FakeChOptions) {
    this.socketPath = options.socketPath;
    this.mode = options.mode ?? 'v48';
    this.state = options.state ?? 'Running';
    this.ejectDelayMs = options.ejectDelayMs ?? 50;
    this.guestEjects = options.guestEjects ?? true;
    this.validator = OPENAPI_FILE ? (sharedValidator ??= new OpenApiValidator()) : undefined;
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  static async start(options: FakeChOptions): Promise<FakeCloudHypervisor> {
    const fake = new FakeCloudHypervisor(options);
    rmSync(options.socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      fake.server.once('error', reject);
      fake.server.listen(options.socketPath, () => resolve());
    });
    return fake;
  }

  /** The next request to `endpoint` ("vm.add-device") fails with this error chain. */
  failNext(endpoint: string, chain: string[]): void {
    const list = this.injected.get(endpoint) ?? [];
    list.push(chain);
    this.injected.set(endpoint, list);
  }

  /** The guest ejects every pending removal now. */
  ejectPending(): void {
    for (const id of [...this.removing]) this.eject(id);
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.socketPath, { force: true });
  }

  private eject(id: string): void {
    if (!this.removing.delete(id)) return;
    const bdf = this.tree.get(id)?.pci_bdf;
    if (this.options.eventMonitor) {
      const now = Date.now();
      const event = { timestamp: { secs: Math.floor(now / 1000), nanos: (now % 1000) * 1e6 }, source: 'vm', event: 'device-removed', properties: { id, bdf } };
      appendFileSync(this.options.eventMonitor, `${JSON.stringify(event, null, 2)}\n`);
    }
    const drop = (): void => {
      this.tree.delete(id);
      this.options.onRemoved?.(id);
    };
    if (this.options.treeLagMs) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        drop();
      }, this.options.treeLagMs);
      this.timers.add(t);
    } else drop();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const method = req.method ?? 'GET';
      const url = (req.url ?? '').replace(/^\/api\/v1/, '');
      this.requests.push(`${method} ${url}${body ? ` ${body}` : ''}`);
      const endpoint = url.slice(1);
      if (this.options.hang?.has(endpoint)) return; // never answer
      const problems = !(req.url ?? '').startsWith('/api/v1/')
        ? [`${req.url}: not under /api/v1`]
        : (this.validator?.checkRequest(method, url, String(req.headers['content-type'] ?? ''), body) ?? []);
      if (problems.length > 0) {
        this.violations.push(...problems);
        return this.send(res, 400, problems.join('\n'), 'text/plain');
      }
      try {
        const injected = this.injected.get(endpoint)?.shift();
        if (injected) throw new ApiError(409, injected);
        const answer = this.route(method, endpoint, body ? (JSON.parse(body) as Record<string, unknown>) : {});
        if (answer.body !== undefined && this.validator) this.violations.push(...this.validator.checkResponse(method, url, answer.status, answer.body));
        this.send(res, answer.status, answer.body === undefined ? '' : JSON.stringify(answer.body), 'application/json');
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        if (this.mode === 'v48') this.send(res, 500, JSON.stringify(['Error from API', ...error.chain]), 'application/json');
        else this.send(res, error.status, error.chain.join(': '), 'text/plain');
      }
    });
  }

  private send(res: http.ServerResponse, status: number, body: string, type: string): void {
    const late = this.options.lateAnswerMs?.get((res.req.url ?? '').replace(/^\/api\/v1\//, ''));
    if (late !== undefined) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        if (!res.destroyed) this.answer(res, status, body, type);
      }, late);
      this.timers.add(t);
      return;
    }
    this.answer(res, status, body, type);
  }

  private answer(res: http.ServerResponse, status: number, body: string, type: string): void {
    res.writeHead(status, body ? { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) } : {});
    res.end(body);
  }

  private route(method: string, endpoint: string, body: Record<string, unknown>): { status: number; body?: unknown } {
    switch (`${method} ${endpoint}`) {
      case 'GET vmm.ping':
        return { status: 200, body: { build_version: 'v48.0.0-fake', version: '48.0.0', pid: process.pid, features: ['kvm'] } };
      case 'GET vm.info':
        return {
          status: 200,
          body: {
            config: { payload: { firmware: '/usr/share/cloud-hypervisor/CLOUDHV.fd' }, devices: this.coldDevices, user_devices: this.coldUserDevices },
            state: this.state,
            device_tree: Object.fromEntries(this.tree),
          },
        };
      case 'PUT vm.add-device':
      case 'PUT vm.add-user-device': {
        const id = String(body.id ?? `_vfio${this.nextSlot}`);
        const what = endpoint === 'vm.add-device' ? 'The device could not be added to the VM' : 'The user device could not be added to the VM';
        if (this.tree.has(id) || [...this.coldDevices, ...this.coldUserDevices].some((d) => (d as { id?: string }).id === id)) {
          throw new ApiError(409, [what, `DeviceManager error: Identifier ${id} is not unique`]);
        }
        if (endpoint === 'vm.add-device') {
          const refused = this.options.onAddDevice?.(body as { path: string; id?: string });
          if (refused) throw new ApiError(400, [what, ...refused]);
        }
        if (this.state === 'Created') {
          (endpoint === 'vm.add-device' ? this.coldDevices : this.coldUserDevices).push(body);
          return { status: 204 };
        }
        const bdf = `0000:00:${(this.nextSlot++).toString(16).padStart(2, '0')}.0`;
        this.tree.set(id, { id, resources: [], children: [], pci_bdf: bdf });
        return { status: 200, body: { id, bdf } };
      }
      case 'PUT vm.remove-device': {
        const id = String(body.id ?? '');
        // Not booted: the device is only in the config and goes from it at once (no guest to eject it).
        for (const list of [this.coldDevices, this.coldUserDevices]) {
          const i = list.findIndex((d) => (d as { id?: string }).id === id);
          if (i >= 0) {
            list.splice(i, 1);
            this.options.onRemoved?.(id);
            return { status: 204 };
          }
        }
        if (!this.tree.has(id)) throw new ApiError(404, ['The device could not be removed from the VM', `DeviceManager error: Unknown device identifier: ${id}`]);
        if (!this.removing.has(id)) {
          this.removing.add(id);
          if (this.guestEjects) {
            const t = setTimeout(() => {
              this.timers.delete(t);
              this.eject(id);
            }, this.ejectDelayMs);
            this.timers.add(t);
          }
        }
        return { status: 204 };
      }
      default:
        // In the OpenAPI document but not modelled here.
        throw new ApiError(400, [`${method} /${endpoint} is not modelled by the fake`]);
    }
  }
}

export const fakeChSocket = (dir: string, name = 'ch.sock'): string => path.join(dir, name);

/**
 * A fake cloud-hypervisor whose process (`pid` in the fake host) holds the VFIO group of each PCI device it has, as
 * the real one does, until the guest ejects it; it refuses a device that is not on vfio-pci, as the kernel would.
 */
export function vfioHoldingFake(host: FakeHost, socketPath: string, pid: number, options: Partial<FakeChOptions> = {}): Promise<FakeCloudHypervisor> {
  const held = new Set<string>();
  return FakeCloudHypervisor.start({
    socketPath,
    onAddDevice: (body) => {
      const bdf = path.basename(body.path);
      if (host.driverOf(bdf) !== 'vfio-pci') return ['Failed to create VFIO device', `VFIO group of ${bdf} is not viable`];
      host.holdOpen(pid, 'cloud-hyperviso', host.groupDevPath(host.groupOf(bdf)!));
      held.add(body.id ?? bdf);
      return undefined;
    },
    onRemoved: (id) => {
      held.delete(id);
      if (held.size === 0) host.exitProcess(pid);
    },
    ...options,
  });
}
