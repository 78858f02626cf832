/**
 * QEMU's QMP on a unix socket: a connection (greeting, capabilities negotiation, commands matched to answers by id,
 * events to listeners) and the hypervisor adapter built on it: device_add of vfio-pci (host=<BDF>, or iommufd= with
 * sysfsdev= after object-add of the VM's iommufd object) and vfio-user-pci
 * (JSON socket form) into an empty pcie-root-port, device_del + wait for DEVICE_DELETED (DEVICE_UNPLUG_GUEST_ERROR
 * when the guest refuses), query-pci, and QOM reads to find empty root ports, to confirm a device exists and to tell
 * the VFIO backend (group or iommufd) of the VM's vfio-pci devices.
 *
 * QEMU serves one client per QMP socket at a time, so the adapter opens a connection per operation and closes it.
 */
import { existsSync } from 'node:fs';
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { normalizeBdf, trailingBdf } from '../util/pci-address.js';
import { rootLogger } from '../util/log.js';
import { type ErrorCode, VfiodError } from '../util/errors.js';
import { hostSysfsPath, QEMU_IOMMUFD_OBJECT_ID } from './vfio-backend.js';
import { type AddedDevice, type HypervisorAdapter, type PciDeviceSpec, type UserDeviceSpec, type VmmDevice, type VmmVfioDevice, vmmAnswerReason, withCommandSent } from './types.js';

const DEFAULT_TIMEOUT_MS = 10_000;
/** Longest line QEMU may send (query-pci of a large machine is a few hundred KiB); more means something is wrong. */
const MAX_LINE = 16 << 20;

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** A QMP error answer as QEMU sent it. */
export interface QmpErrorAnswer {
  class: string;
  desc: string;
}

/** The VfiodError code for a QMP error (class, then the description's text). */
export function classifyQmpError(error: QmpErrorAnswer): ErrorCode {
  const d = error.desc;
  if (error.class === 'DeviceNotFound') return 'NOT_FOUND';
  if (error.class === 'CommandNotFound') return 'FAILED_PRECONDITION';
  if (/Duplicate (device )?ID/i.test(d)) return 'ALREADY_EXISTS';
  if (/is not a valid device model name/i.test(d)) return 'FAILED_PRECONDITION';
  if (/not viable|already in the process of unplug|does not support hot-?plug|hot-?plug.*(not|un)supported|in use|busy|not attached/i.test(d)) {
    return 'FAILED_PRECONDITION';
  }
  if (/no such host device|No such file|Bus '.*' not found|not found/i.test(d)) return 'NOT_FOUND';
  if (/Parameter|can't take value|expects|Invalid|is required|missing/i.test(d)) return 'INVALID_ARGUMENT';
  return 'INTERNAL';
}

/** Extra words for errors an operator can act on. */
function hint(desc: string, driver?: string): string {
  if (/is not a valid device model name/i.test(desc) && driver === 'vfio-user-pci') return ' (vfio-user-pci needs QEMU >= 10.1)';
  if (/not viable/i.test(desc)) return ' (every endpoint of the IOMMU group must be on vfio-pci or unbound)';
  return '';
}

export interface QmpConnectOptions {
  /** Used in error messages. */
  vmId: string;
  timeoutMs?: number;
}

/** One QMP session. */
export class QmpConnection extends EventEmitter {
  private socket: net.Socket | undefined;
  /** The unfinished line, in pieces (joined when its newline arrives: appending to one string is quadratic). */
  private partial: string[] = [];
  private partialLength = 0;
  private nextId = 1;
  private readonly pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void; what: string }>();
  private closedError: VfiodError | undefined;
  /** QEMU's version from the greeting ("7.2.22"). */
  version = '';

  private constructor(
    readonly socketPath: string,
    readonly vmId: string,
  ) {
    super();
  }

  private where(): string {
    return `VM ${this.vmId} (QMP ${this.socketPath})`;
  }

  /**
   * Connects, reads the greeting and negotiates capabilities. UNAVAILABLE when nothing listens, DEADLINE_EXCEEDED
   * when QEMU does not greet (another client holds the socket). Its errors say `commandSent: false`: the caller's
   * command cannot have reached QEMU before the session exists.
   */
  static async connect(socketPath: string, options: QmpConnectOptions): Promise<QmpConnection> {
    const conn = new QmpConnection(socketPath, options.vmId);
    try {
      await conn.open(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    } catch (error) {
      throw withCommandSent(error, false);
    }
    return conn;
  }

  private open(timeoutMs: number): Promise<void> {
    if (!existsSync(this.socketPath)) {
      return Promise.reject(new VfiodError('UNAVAILABLE', `${this.where()}: the QMP socket does not exist (is the VM running?)`, {
          reason: 'VMM_SOCKET_MISSING',
          vmId: this.vmId,
          socketPath: this.socketPath,
        }),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const socket = net.createConnection({ path: this.socketPath });
      this.socket = socket;
      let greeted = false;
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new VfiodError('DEADLINE_EXCEEDED', `${this.where()}: no QMP greeting within ${timeoutMs} ms (another client may hold the socket)`, {
            reason: 'VMM_TIMEOUT',
            vmId: this.vmId,
            socketPath: this.socketPath,
          }),
        );
      }, timeoutMs);
      socket.setEncoding('utf8');
      // Before the greeting, QEMU closing the socket or sending garbage fails the connect at once (not at the timeout).
      const failOpen = (failure: VfiodError): void => {
        if (!greeted) {
          clearTimeout(timer);
          reject(failure);
        }
        this.fail(failure);
      };
      socket.on('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'EAGAIN') {
          // A unix socket's listen queue is full: QEMU accepts one QMP client at a time, and while one holds the
          // socket the next connections queue up (two with QEMU 7.2) until the kernel refuses more.
          failOpen(new VfiodError('UNAVAILABLE', `${this.where()}: QMP is busy: another client holds the socket and its listen queue is full (EAGAIN)`, {
              reason: 'VMM_UNAVAILABLE',
              vmId: this.vmId,
              socketPath: this.socketPath,
            }),
          );
          return;
        }
        const code: ErrorCode = ['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'EPIPE'].includes(error.code ?? '') ? 'UNAVAILABLE' : 'INTERNAL';
        const failure = new VfiodError(code, `${this.where()}: ${error.code ?? ''} ${error.message}`.replace(/\s+/g, ' '), { reason: vmmAnswerReason(code), vmId: this.vmId });
        failOpen(failure);
      });
      socket.on('close', () => failOpen(new VfiodError('UNAVAILABLE', `${this.where()}: QMP connection closed by QEMU${greeted ? '' : ' before its greeting'}`, {
            reason: 'VMM_UNAVAILABLE',
            vmId: this.vmId,
          }),
        ),
      );
      socket.on('data', (chunk: string) => {
        let rest = chunk;
        let nl: number;
        while ((nl = rest.indexOf('\n')) >= 0) {
          const line = (this.partial.join('') + rest.slice(0, nl)).trim();
          this.partial = [];
          this.partialLength = 0;
          rest = rest.slice(nl + 1);
          if (!line) continue;
          let message: Record<string, unknown>;
          try {
            message = JSON.parse(line) as Record<string, unknown>;
          } catch {
            failOpen(new VfiodError('INTERNAL', `${this.where()}: QMP sent a line that is not JSON: ${line.slice(0, 200)}`, { reason: 'VMM_BAD_ANSWER', vmId: this.vmId }));
            socket.destroy();
            return;
          }
          if (!message || typeof message !== 'object' || Array.isArray(message)) {
            failOpen(new VfiodError('INTERNAL', `${this.where()}: QMP sent JSON that is not an object: ${line.slice(0, 200)}`, { reason: 'VMM_BAD_ANSWER', vmId: this.vmId }));
            socket.destroy();
            return;
          }
          if (!greeted && 'QMP' in message) {
            greeted = true;
            const v = (message.QMP as { version?: { qemu?: { major: number; minor: number; micro: number } } } | null)?.version?.qemu;
            if (v) this.version = `${v.major}.${v.minor}.${v.micro}`;
            this.execute('qmp_capabilities', undefined, timeoutMs).then(
              () => {
                clearTimeout(timer);
                resolve();
              },
              (error: Error) => {
                clearTimeout(timer);
                reject(error);
              },
            );
            continue;
          }
          this.dispatch(message);
        }
        // What is left is one unfinished line: a runaway one means something is wrong (and must not eat memory).
        this.partial.push(rest);
        this.partialLength += rest.length;
        if (this.partialLength > MAX_LINE) {
          failOpen(new VfiodError('INTERNAL', `${this.where()}: QMP line longer than ${MAX_LINE} characters`, { reason: 'VMM_BAD_ANSWER', vmId: this.vmId }));
          socket.destroy();
        }
      });
    });
  }

  private dispatch(message: Record<string, unknown>): void {
    if (typeof message.event === 'string') {
      const event: QmpEvent = { event: message.event, data: (message.data as Record<string, unknown>) ?? {} };
      if (message.timestamp) event.timestamp = message.timestamp as QmpEvent['timestamp'] & object;
      this.emit('event', event);
      return;
    }
    const id = message.id === undefined ? undefined : String(message.id);
    const waiter = id === undefined ? undefined : this.pending.get(id);
    if (!waiter || id === undefined) return; // an answer to nobody (should not happen): ignore
    this.pending.delete(id);
    if ('error' in message) {
      // QEMU always sends {class, desc}; anything else still becomes a precise error, never a TypeError.
      const raw = (message.error ?? {}) as Partial<Record<keyof QmpErrorAnswer, unknown>>;
      const err: QmpErrorAnswer = {
        class: typeof raw.class === 'string' ? raw.class : 'GenericError',
        desc: typeof raw.desc === 'string' ? raw.desc : `malformed QMP error answer: ${JSON.stringify(message.error).slice(0, 200)}`,
      };
      waiter.reject(new QmpCommandError(err, waiter.what, this.where(), this.vmId));
    } else {
      waiter.resolve(message.return);
    }
  }

  private fail(error: VfiodError): void {
    if (this.closedError) return;
    this.closedError = error;
    for (const [id, waiter] of this.pending) {
      this.pending.delete(id);
      // written and unanswered when the connection broke: QEMU may have carried it out
      waiter.reject(new VfiodError(error.code, `${waiter.what}: ${error.message}`, { ...error.details, commandSent: true }));
    }
    this.emit('closed', error);
  }

  /**
   * Runs one command; rejects with QmpCommandError (a VfiodError) on an error answer. Its other errors say whether
   * the command was written (`commandSent`): not on a closed connection; written, then no answer in time or the
   * connection broke.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
    const what = `${command}${args && 'id' in args ? ` ${String(args.id)}` : ''}`;
    if (this.closedError) {
      return Promise.reject(new VfiodError(this.closedError.code, `${what}: ${this.closedError.message}`, { ...this.closedError.details, commandSent: false }));
    }
    const id = `vfiod-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new VfiodError('DEADLINE_EXCEEDED', `${what}: ${this.where()}: no answer within ${timeoutMs} ms`, {
            reason: 'VMM_TIMEOUT',
            vmId: this.vmId,
            socketPath: this.socketPath,
            commandSent: true,
          }),
        );
      }, timeoutMs);
      this.pending.set(id, {
        what,
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.socket!.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  close(): void {
    this.fail(new VfiodError('UNAVAILABLE', `${this.where()}: connection closed`, { reason: 'VMM_UNAVAILABLE', vmId: this.vmId }));
    this.socket?.destroy();
  }
}

/** A QMP error answer, mapped onto a VfiodError code. `qmp` keeps QEMU's class and description. */
export class QmpCommandError extends VfiodError {
  constructor(
    readonly qmp: QmpErrorAnswer,
    what: string,
    where: string,
    vmId: string,
    driver?: string,
  ) {
    const code = classifyQmpError(qmp);
    super(code, `${what}: ${where}: ${qmp.desc}${hint(qmp.desc, driver)}`, { reason: vmmAnswerReason(code), vmId, qmpClass: qmp.class, qmpDesc: qmp.desc });
  }
}

interface QomProperty {
  name: string;
  type: string;
}

interface QueryPciDevice {
  bus: number;
  slot: number;
  function: number;
  qdev_id?: string;
  pci_bridge?: { bus: { number: number }; devices?: QueryPciDevice[] };
}

/** The QOM types of host VFIO PCI devices (vfio-pci-nohotplug is vfio-pci that cannot be unplugged; same backends). */
const VFIO_PCI_TYPES = new Set(['vfio-pci', 'vfio-pci-nohotplug']);

/** Root port types whose secondary bus takes one hot-pluggable device. */
const ROOT_PORT_TYPES = new Set(['pcie-root-port', 'ioh3420']);

export interface QemuAdapterOptions {
  vmId: string;
  qmpSocket: string;
}

export class QemuAdapter implements HypervisorAdapter {
  readonly kind = 'qemu' as const;
  readonly vmId: string;
  readonly qmpSocket: string;
  private readonly log;

  constructor(options: QemuAdapterOptions) {
    this.vmId = options.vmId;
    this.qmpSocket = options.qmpSocket;
    this.log = rootLogger.child({ component: 'qmp', vm: this.vmId, qmpSocket: this.qmpSocket });
  }

  private async session<T>(timeoutMs: number, body: (conn: QmpConnection) => Promise<T>): Promise<T> {
    const conn = await QmpConnection.connect(this.qmpSocket, { vmId: this.vmId, timeoutMs });
    try {
      return await body(conn);
    } finally {
      conn.close();
    }
  }

  async ping(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string> {
    return this.session(timeoutMs, async (conn) => {
      await conn.execute('query-status', undefined, timeoutMs);
      return conn.version;
    });
  }

  /** query-pci, flattened through bridges. */
  async queryPci(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Array<QueryPciDevice & { address: string }>> {
    return this.session(timeoutMs, (conn) => queryPci(conn, timeoutMs));
  }

  /**
   * Root ports with nothing plugged in, in creation order of their names (natural sort). A root port's secondary bus
   * lists its devices as child[N] links in QOM; query-pci cannot tell under -S (no bus numbers yet).
   */
  async freeRootPorts(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string[]> {
    return this.session(timeoutMs, (conn) => freeRootPorts(conn, timeoutMs));
  }

  async listDevices(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<VmmDevice[]> {
    return this.session(timeoutMs, async (conn) => {
      const props = await conn.execute<QomProperty[]>('qom-list', { path: '/machine/peripheral' }, timeoutMs);
      const pci = await queryPci(conn, timeoutMs);
      const out: VmmDevice[] = [];
      for (const p of props.filter((x) => x.type.startsWith('child<'))) {
        let hostBdf: string | null = null;
        if (p.type === 'child<vfio-pci>') hostBdf = await vfioHostBdf(conn, p.name, timeoutMs);
        out.push({ id: p.name, guestBdf: pci.find((d) => d.qdev_id === p.name)?.address ?? null, hostBdf });
      }
      return out;
    });
  }

  /**
   * Every vfio-pci device of the VM, with or without an id (command line, static configuration, vfiod's hot-plugs,
   * anyone's device_add), and its VFIO backend: a QEMU VM takes one backend for all of them.
   */
  async listVfioDevices(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<VmmVfioDevice[]> {
    return this.session(timeoutMs, (conn) => vfioDevices(conn, timeoutMs));
  }

  async hasDevice(id: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<boolean> {
    return this.session(timeoutMs, (conn) => hasPeripheral(conn, id, timeoutMs));
  }

  /**
   * device_add after the steps it needs (the connection, a free root port, the iommufd object). An error of those
   * steps says `commandSent: false` whatever its own cause (device_add was not sent: the VM did not get the device);
   * device_add's own errors are QEMU's answer or say themselves whether it was written.
   */
  private async add(args: Record<string, unknown>, requestedBus: string | undefined, timeoutMs: number, source: string): Promise<AddedDevice> {
    const id = String(args.id);
    const driver = String(args.driver);
    let deviceAddTried = false;
    return this.session(timeoutMs, async (conn) => {
      let bus = requestedBus;
      if (!bus) {
        const free = await freeRootPorts(conn, timeoutMs);
        if (free.length === 0) {
          throw new VfiodError(
            'FAILED_PRECONDITION',
            `device_add ${id} (${source}): VM ${this.vmId} has no empty pcie-root-port: q35's pcie.0 is not hot-pluggable; start QEMU with spare '-device pcie-root-port,id=rpN,chassis=N,slot=N'`,
            { reason: 'VMM_NO_FREE_SLOT', vmId: this.vmId, deviceId: id },
          );
        }
        bus = free[0]!;
      }
      if (args.iommufd !== undefined) await ensureIommufdObject(conn, timeoutMs, `device_add ${id} (${source})`);
      deviceAddTried = true;
      try {
        await conn.execute('device_add', { ...args, bus }, timeoutMs);
      } catch (error) {
        if (error instanceof QmpCommandError) {
          throw new QmpCommandError(error.qmp, `device_add ${id} (${source}, bus ${bus})`, `VM ${this.vmId} (QMP ${this.qmpSocket})`, this.vmId, driver);
        }
        throw error;
      }
      const pci = await queryPci(conn, timeoutMs).catch(() => []);
      const guestBdf = pci.find((d) => d.qdev_id === id)?.address ?? null;
      this.log.info('device_add done', { device: id, driver, source, bus, guestBdf });
      return { id, guestBdf, coldAdded: false, bus };
    }).catch((error: unknown) => {
      throw deviceAddTried ? error : withCommandSent(error, false);
    });
  }

  async addPciDevice(spec: PciDeviceSpec, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<AddedDevice> {
    // iommufd: QEMU opens /dev/iommu (the object) and the device's cdev, found from sysfsdev, itself, as it opens
    // /dev/vfio/<group> for host=: no fds are passed.
    const opened = spec.vfioBackend === 'iommufd' ? { iommufd: QEMU_IOMMUFD_OBJECT_ID, sysfsdev: hostSysfsPath(spec.hostBdf) } : { host: spec.hostBdf };
    const args: Record<string, unknown> = { driver: 'vfio-pci', ...opened, id: spec.id };
    if (spec.bootIndex !== undefined) args.bootindex = spec.bootIndex;
    return this.add(args, spec.bus, timeoutMs, `host ${spec.hostBdf}`);
  }

  async addUserDevice(spec: UserDeviceSpec, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<AddedDevice> {
    const args: Record<string, unknown> = { driver: 'vfio-user-pci', socket: { path: spec.socketPath, type: 'unix' }, id: spec.id };
    if (spec.bootIndex !== undefined) args.bootindex = spec.bootIndex;
    return this.add(args, spec.bus, timeoutMs, `vfio-user ${spec.socketPath}`);
  }

  async removeDevice(id: string, timeoutMs: number): Promise<void> {
    const started = Date.now();
    const deadline = started + timeoutMs;
    await this.session(Math.min(timeoutMs, DEFAULT_TIMEOUT_MS), async (conn) => {
      // Listen before asking: the event may come right after the answer.
      let outcome: { deleted: true } | { refused: string } | { closed: VfiodError } | undefined;
      let wake: (() => void) | undefined;
      conn.on('event', (ev: QmpEvent) => {
        if (ev.data.device !== id) return;
        if (ev.event === 'DEVICE_DELETED') outcome = { deleted: true };
        else if (ev.event === 'DEVICE_UNPLUG_GUEST_ERROR') outcome = { refused: String(ev.data.path ?? id) };
        wake?.();
      });
      // QEMU going away (the VM shut down) ends the wait: the caller decides from who still holds the device.
      conn.on('closed', (error: VfiodError) => {
        outcome ??= { closed: error };
        wake?.();
      });
      try {
        await conn.execute('device_del', { id }, Math.max(1, deadline - Date.now()));
      } catch (error) {
        // A repeated detach (after a timeout) finds the unplug still in progress: keep waiting for it.
        if (!(error instanceof QmpCommandError && /already in the process of unplug/i.test(error.qmp.desc))) throw error;
        this.log.info('unplug already in progress, waiting again', { device: id });
      }
      // Wait for DEVICE_DELETED; also check QOM now and then in case the event went to an earlier connection.
      while (!outcome) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(1000, left));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
        if (!outcome && !(await hasPeripheral(conn, id, Math.max(1, Math.min(DEFAULT_TIMEOUT_MS, deadline - Date.now()))).catch(() => true))) outcome = { deleted: true };
      }
      if (!outcome) {
        throw new VfiodError(
          'DEADLINE_EXCEEDED',
          `device_del ${id}: VM ${this.vmId} (QMP ${this.qmpSocket}): no DEVICE_DELETED within ${timeoutMs} ms: the guest has not released the device (removal stays pending)`,
          { reason: 'GUEST_DID_NOT_RELEASE', vmId: this.vmId, deviceId: id, timeoutMs },
        );
      }
      if ('closed' in outcome) {
        throw new VfiodError('UNAVAILABLE', `device_del ${id}: ${outcome.closed.message} while waiting for DEVICE_DELETED`, {
          ...outcome.closed.details,
          vmId: this.vmId,
          deviceId: id,
        });
      }
      if ('refused' in outcome) {
        throw new VfiodError('FAILED_PRECONDITION', `device_del ${id}: VM ${this.vmId}: the guest refused the unplug (DEVICE_UNPLUG_GUEST_ERROR for ${outcome.refused})`, {
          reason: 'GUEST_REFUSED_UNPLUG',
          vmId: this.vmId,
          deviceId: id,
        });
      }
      this.log.info('device deleted', { device: id, millis: Date.now() - started });
    });
  }

  async close(): Promise<void> {
    /* a connection per operation: nothing to close */
  }
}

async function hasPeripheral(conn: QmpConnection, id: string, timeoutMs: number): Promise<boolean> {
  const props = await conn.execute<QomProperty[]>('qom-list', { path: '/machine/peripheral' }, timeoutMs);
  return props.some((p) => p.name === id && p.type.startsWith('child<'));
}

/**
 * Adds the VM's iommufd object (QEMU_IOMMUFD_OBJECT_ID) unless it is there: every device vfiod gives the VM through
 * iommufd shares it. It stays for the VM's life (an open /dev/iommu, nothing else): removing it would race a later
 * attach, and QEMU refuses to delete it while a device uses it.
 */
async function ensureIommufdObject(conn: QmpConnection, timeoutMs: number, what: string): Promise<void> {
  const objects = await conn.execute<QomProperty[]>('qom-list', { path: '/objects' }, timeoutMs);
  if (objects.some((o) => o.name === QEMU_IOMMUFD_OBJECT_ID)) return;
  try {
    await conn.execute('object-add', { 'qom-type': 'iommufd', id: QEMU_IOMMUFD_OBJECT_ID }, timeoutMs);
  } catch (error) {
    if (!(error instanceof QmpCommandError)) throw error;
    // QEMU < 9.0 has no iommufd object type ("'qom-type' does not accept value 'iommufd'"); a host without
    // CONFIG_IOMMUFD has no /dev/iommu. Either way the VM cannot take the device through iommufd as it is.
    const { desc } = error.qmp;
    const why = /does not accept value 'iommufd'|invalid object type/i.test(desc) ? ' (iommufd needs QEMU >= 9.0)' : /\/dev\/iommu/.test(desc) ? ' (the host has no iommufd)' : '';
    throw new VfiodError('FAILED_PRECONDITION', `${what}: object-add iommufd ${QEMU_IOMMUFD_OBJECT_ID}: VM ${conn.vmId} (QMP ${conn.socketPath}): ${desc}${why}`, {
      reason: 'VMM_REFUSED',
      vmId: conn.vmId,
      qmpClass: error.qmp.class,
      qmpDesc: desc,
    });
  }
}

/** The host function behind a vfio-pci: its sysfsdev (iommufd, or given by path) or its host= address. */
async function vfioHostBdf(conn: QmpConnection, id: string, timeoutMs: number): Promise<string | null> {
  const get = (property: string): Promise<string | null> =>
    conn.execute<string>('qom-get', { path: `/machine/peripheral/${id}`, property }, timeoutMs).then((v) => (typeof v === 'string' && v !== '' ? v : null), () => null);
  // QEMU's answer is checked like any other PCI address it gives: a path whose last part is not one yields null.
  const sysfsdev = await get('sysfsdev');
  if (sysfsdev) return trailingBdf(sysfsdev) ?? null;
  const host = await get('host');
  return host === null ? null : normalizeBdf(host) ?? null;
}

/**
 * The vfio-pci devices under /machine/peripheral (those with an id) and /machine/peripheral-anon (without one) and
 * their backend, read from the device's `iommufd` link: QOM gives the linked object's path ("/objects/<id>") when the
 * device was opened through iommufd and "" when through its group. A QEMU without iommufd (< 9.0, or built without
 * it) has no such property: its VFIO devices all use the group.
 */
async function vfioDevices(conn: QmpConnection, timeoutMs: number): Promise<VmmVfioDevice[]> {
  const out: VmmVfioDevice[] = [];
  for (const container of PERIPHERAL_CONTAINERS) {
    for (const { name, path: devicePath } of await peripheralsIn(conn, container, VFIO_PCI_TYPES, timeoutMs)) {
      let link: unknown;
      try {
        link = await conn.execute<unknown>('qom-get', { path: devicePath, property: 'iommufd' }, timeoutMs);
      } catch (error) {
        if (!(error instanceof QmpCommandError)) throw error;
        if (error.qmp.class === 'DeviceNotFound') continue; // unplugged since the listing
        if (error.code !== 'NOT_FOUND') throw error;
        link = ''; // no iommufd property: this QEMU has the group only
      }
      if (typeof link !== 'string') {
        throw new VfiodError('INTERNAL', `qom-get ${devicePath} iommufd: VM ${conn.vmId} (QMP ${conn.socketPath}): expected the linked object's path, got ${JSON.stringify(link)}`, {
          reason: 'VMM_BAD_ANSWER',
          vmId: conn.vmId,
        });
      }
      out.push({ id: container === '/machine/peripheral' ? name : devicePath, backend: link === '' ? 'group' : 'iommufd' });
    }
  }
  return out;
}

/** Where QOM keeps the devices given on the command line or by device_add: with an id, and without one. */
const PERIPHERAL_CONTAINERS = ['/machine/peripheral', '/machine/peripheral-anon'] as const;

/** The devices of one of `types` in `container` (a VM may have no such container: none). */
async function peripheralsIn(conn: QmpConnection, container: string, types: ReadonlySet<string>, timeoutMs: number): Promise<Array<{ name: string; path: string }>> {
  let props: QomProperty[];
  try {
    props = await conn.execute<QomProperty[]>('qom-list', { path: container }, timeoutMs);
  } catch (error) {
    if (error instanceof QmpCommandError && error.code === 'NOT_FOUND') return [];
    throw error;
  }
  const found: Array<{ name: string; path: string }> = [];
  for (const p of props) {
    const type = /^child<(.+)>$/.exec(p.type)?.[1];
    if (type && types.has(type)) found.push({ name: p.name, path: `${container}/${p.name}` });
  }
  return found;
}

async function queryPci(conn: QmpConnection, timeoutMs: number): Promise<Array<QueryPciDevice & { address: string }>> {
  const buses = await conn.execute<Array<{ bus: number; devices: QueryPciDevice[] }>>('query-pci', undefined, timeoutMs);
  const out: Array<QueryPciDevice & { address: string }> = [];
  const hex = (n: number, w: number): string => n.toString(16).padStart(w, '0');
  const walk = (devices: QueryPciDevice[]): void => {
    for (const d of devices) {
      out.push({ ...d, address: `0000:${hex(d.bus, 2)}:${hex(d.slot, 2)}.${d.function}` });
      if (d.pci_bridge?.devices) walk(d.pci_bridge.devices);
    }
  };
  for (const b of buses) walk(b.devices);
  return out;
}

async function freeRootPorts(conn: QmpConnection, timeoutMs: number): Promise<string[]> {
  const free: string[] = [];
  for (const container of PERIPHERAL_CONTAINERS) {
    for (const { path: portPath } of await peripheralsIn(conn, container, ROOT_PORT_TYPES, timeoutMs)) {
      // The port's secondary bus is its child of type PCIE; its name is what device_add's bus= takes.
      const portProps = await conn.execute<QomProperty[]>('qom-list', { path: portPath }, timeoutMs);
      const busProp = portProps.find((x) => x.type === 'child<PCIE>' || x.type === 'child<PCI>');
      if (!busProp) continue;
      const busProps = await conn.execute<QomProperty[]>('qom-list', { path: `${portPath}/${busProp.name}` }, timeoutMs);
      if (!busProps.some((x) => /^child\[\d+\]$/.test(x.name))) free.push(busProp.name);
    }
  }
  return free.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

