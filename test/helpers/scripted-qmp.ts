/**
 * A QMP server on a unix socket that answers as a test scripts it: the greeting, `qmp_capabilities`, then every
 * command with what `reply` returns (raw text, written as given, so a test can split lines, interleave events or send
 * garbage). Every command received is recorded, with its arguments, in the order it came.
 *
 * `fakeQemuVm()` is a `reply` that plays a q35 VM under -S just far enough for the QEMU adapter's hot-plug: empty
 * pcie-root-ports found through QOM, device_add into one, object-add of objects, query-pci and qom-get of a vfio-pci's
 * host/sysfsdev and of its iommufd link. It can start with vfio-pci devices of its own (its command line).
 */
import net from 'node:net';

export type QmpReply = (command: string, args: Record<string, unknown> | undefined, id: unknown, socket: net.Socket) => string | undefined;

export interface QmpCall {
  execute: string;
  arguments?: Record<string, unknown>;
}

export interface ScriptedQmp {
  server: net.Server;
  /** The command names, in order (qmp_capabilities included). */
  commands: string[];
  /** The commands with their arguments, in order (qmp_capabilities included). */
  calls: QmpCall[];
}

/** The greeting of a QEMU 9.2.3, sent in two pieces. */
function splitGreeting(socket: net.Socket): void {
  socket.write('{"QMP": {"version": {"qemu": {"micro": 3, "minor": 2, "major": 9}}, ');
  setTimeout(() => socket.write('"capabilities": []}}\r\n'), 20);
}

export async function scriptedQmp(socketPath: string, reply: QmpReply, greeting: ((socket: net.Socket) => void) | undefined = splitGreeting): Promise<ScriptedQmp> {
  const commands: string[] = [];
  const calls: QmpCall[] = [];
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    greeting?.(socket);
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const message = JSON.parse(buffer.slice(0, nl)) as { execute: string; arguments?: Record<string, unknown>; id?: unknown };
        buffer = buffer.slice(nl + 1);
        commands.push(message.execute);
        calls.push(message.arguments === undefined ? { execute: message.execute } : { execute: message.execute, arguments: message.arguments });
        const answer =
          message.execute === 'qmp_capabilities' ? `${JSON.stringify({ return: {}, id: message.id })}\r\n` : reply(message.execute, message.arguments, message.id, socket);
        if (answer !== undefined) socket.write(answer);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return { server, commands, calls };
}

/** A vfio-pci device the fake VM was started with (on pcie.0, as a command line puts it). */
export interface StartupVfioDevice {
  /** Its id= ; without one it is listed under /machine/peripheral-anon as device[N]. */
  id?: string;
  host: string;
  /** The iommufd object it was given (iommufd=<object id>); none: through its group. */
  iommufd?: string;
}

export interface FakeQemuVm {
  reply: QmpReply;
  /** Ids of the objects the VM has (`objects` given, plus what object-add added). */
  objects: Set<string>;
  /** device_add arguments by device id. */
  devices: Map<string, Record<string, unknown>>;
}

/**
 * A q35 VM with the pcie-root-ports `rootPorts` (each one's secondary bus is named after it, as QEMU does), the
 * user-creatable objects `objects` and the vfio-pci devices `vfioDevices` of its command line. device_add takes the
 * first free port it is told (bus=) and fails on a busy or unknown one as QEMU does; an unknown command is
 * CommandNotFound. A vfio-pci's `iommufd` reads as QOM gives a link: "/objects/<id>", or "" when it has none.
 */
export function fakeQemuVm(options: { rootPorts?: string[]; objects?: string[]; vfioDevices?: StartupVfioDevice[] } = {}): FakeQemuVm {
  const rootPorts = options.rootPorts ?? ['rp1'];
  const objects = new Set(options.objects ?? []);
  const devices = new Map<string, Record<string, unknown>>();
  // The startup devices by QOM path; those with an id are in `devices` too (their ids are taken).
  const startup = new Map<string, Record<string, unknown>>();
  for (const [i, d] of (options.vfioDevices ?? []).entries()) {
    const args: Record<string, unknown> = { driver: 'vfio-pci', host: d.host, ...(d.id ? { id: d.id } : {}), ...(d.iommufd ? { iommufd: d.iommufd } : {}) };
    if (d.iommufd) objects.add(d.iommufd);
    startup.set(d.id ? `/machine/peripheral/${d.id}` : `/machine/peripheral-anon/device[${i}]`, args);
    if (d.id) devices.set(d.id, args);
  }
  const anonymous = [...startup.keys()].filter((p) => p.startsWith('/machine/peripheral-anon/'));
  const ok = (value: unknown, id: unknown): string => `${JSON.stringify({ return: value, id })}\n`;
  const fail = (cls: string, desc: string, id: unknown): string => `${JSON.stringify({ error: { class: cls, desc }, id })}\n`;
  const busOf = (deviceId: string): string | undefined => devices.get(deviceId)?.bus as string | undefined;
  const reply: QmpReply = (command, args, id) => {
    const at = typeof args?.path === 'string' ? args.path : '';
    switch (command) {
      case 'qom-list': {
        if (at === '/machine/peripheral') {
          return ok([...rootPorts.map((p) => ({ name: p, type: 'child<pcie-root-port>' })), ...[...devices].map(([d, a]) => ({ name: d, type: `child<${String(a.driver)}>` }))], id);
        }
        if (at === '/machine/peripheral-anon') return ok(anonymous.map((p) => ({ name: p.slice('/machine/peripheral-anon/'.length), type: 'child<vfio-pci>' })), id);
        if (at === '/objects') return ok([...objects].map((o) => ({ name: o, type: 'child<iommufd>' })), id);
        const port = rootPorts.find((p) => at === `/machine/peripheral/${p}`);
        if (port) return ok([{ name: port, type: 'child<PCIE>' }], id);
        const bus = rootPorts.find((p) => at === `/machine/peripheral/${p}/${p}`);
        if (bus) return ok([...devices.keys()].filter((d) => busOf(d) === bus).map((_, i) => ({ name: `child[${i}]`, type: 'link<pci-device>' })), id);
        return fail('DeviceNotFound', `Device '${at}' not found`, id);
      }
      case 'object-add':
        objects.add(String(args?.id));
        return ok({}, id);
      case 'device_add': {
        const deviceId = String(args?.id);
        const bus = String(args?.bus);
        if (!rootPorts.includes(bus)) return fail('GenericError', `Bus '${bus}' not found`, id);
        if ([...devices.keys()].some((d) => busOf(d) === bus)) return fail('GenericError', `Bus '${bus}' does not support hotplugging`, id);
        if (devices.has(deviceId)) return fail('GenericError', `Duplicate device ID '${deviceId}'`, id);
        devices.set(deviceId, { ...args });
        return ok({}, id);
      }
      case 'query-pci':
        // under -S the ports have no bus numbers yet: every device reads as bus 0
        // (a device without an id has qdev_id "", as QEMU says)
        return ok([{ bus: 0, devices: [...devices.keys(), ...anonymous.map(() => '')].map((d, i) => ({ bus: 0, slot: 1 + i, function: 0, qdev_id: d })) }], id);
      case 'qom-get': {
        const device = startup.get(at) ?? devices.get(at.replace('/machine/peripheral/', ''));
        if (!device) return fail('DeviceNotFound', `Device '${at}' not found`, id);
        const property = String(args?.property);
        if (device.driver === 'vfio-pci' && property === 'iommufd') return ok(typeof device.iommufd === 'string' ? `/objects/${device.iommufd}` : '', id);
        const value = device[property];
        return typeof value === 'string' ? ok(value, id) : fail('GenericError', `Property '${String(device.driver)}.${property}' not found`, id);
      }
      default:
        return fail('CommandNotFound', `The command ${command} has not been found`, id);
    }
  };
  return { reply, objects, devices };
}
