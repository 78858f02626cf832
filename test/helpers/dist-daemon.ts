/**
 * The compiled daemon for tests that create controllers: controllers run in worker threads loaded from
 * dist/serve/worker.js, so the daemon must be the one in dist/ too. Says why it cannot run when dist/ is not built.
 */
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { VfiodClient } from '../../src/daemon/client.js';
import type { RequestOf, RpcName } from '../../src/daemon/proto.js';
import type * as ServerModule from '../../src/daemon/server.js';
import { memoryLogger } from '../../src/util/log.js';
import { temporaryDir } from './common.js';
import { standardHost, type FakeHost } from './fake-sysfs.js';
import type { Guest } from './hypervisor.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const distServer = path.join(root, 'dist', 'daemon', 'server.js');

/** Undefined when dist/ has the daemon and the controller worker; else what to do. */
export const distDaemonUnavailable: string | undefined =
  existsSync(distServer) && existsSync(path.join(root, 'dist', 'serve', 'worker.js'))
    ? undefined
    : 'dist/ is not built (npm test runs tsc first; or run npx tsc -p tsconfig.json)';

export async function importDistDaemon(): Promise<typeof ServerModule> {
  return (await import(pathToFileURL(distServer).href)) as typeof ServerModule;
}

/**
 * Starts a daemon in `dir` (socket vfiod.sock, state dir state/, `dir` the namespace directory) on the fake host's
 * sysfs, logging to memory.
 */
export function startFakeHostDaemon(
  server: typeof ServerModule,
  dir: string,
  host: FakeHost,
  options: Partial<ServerModule.DaemonOptions> = {},
): Promise<ServerModule.Daemon> {
  return server.startDaemon({
    socketPath: path.join(dir, 'vfiod.sock'),
    stateDir: path.join(dir, 'state'),
    roots: host.roots,
    writer: host.writer,
    prober: host.prober,
    namespaceDirs: [dir],
    logger: memoryLogger().logger,
    ...options,
  });
}

/**
 * One daemon on a fake host for a describe block: started in `beforeAll` (in a temporary directory named after
 * `prefix`), closed with its guests, host and directory in `afterAll`. Its fields are valid inside the tests.
 */
export class FakeHostDaemon {
  server!: typeof ServerModule;
  host!: FakeHost;
  dir!: string;
  daemon!: ServerModule.Daemon;
  client!: VfiodClient;
  /** Guests the tests attached; closed before the daemon. */
  readonly guests: Guest[] = [];

  constructor(private readonly options: (dir: string) => Partial<ServerModule.DaemonOptions>) {}

  /** A ControllerService call (an arrow, so it can be taken off the fixture). */
  readonly controllers = <M extends RpcName<'ControllerService'>>(rpc: M, request: RequestOf<'ControllerService', M>) =>
    this.client.call('ControllerService', rpc, request);

  async start(): Promise<void> {
    this.daemon = await startFakeHostDaemon(this.server, this.dir, this.host, this.options(this.dir));
    this.client = new VfiodClient({ address: this.daemon.socketPath! });
  }

  /** Stops the daemon and starts it again on the same state directory (guests stay for the caller to close). */
  async restart(): Promise<void> {
    this.client.close();
    await this.daemon.close();
    await this.start();
  }
}

export function useFakeHostDaemon(prefix: string, options: (dir: string) => Partial<ServerModule.DaemonOptions> = () => ({})): FakeHostDaemon {
  const fixture = new FakeHostDaemon(options);
  beforeAll(async () => {
    fixture.server = await importDistDaemon();
    fixture.host = standardHost();
    fixture.dir = temporaryDir(prefix);
    await fixture.start();
  });
  afterAll(async () => {
    for (const guest of fixture.guests.splice(0)) guest.close();
    fixture.client?.close();
    await fixture.daemon?.close();
    fixture.host?.cleanup();
    if (fixture.dir) rmSync(fixture.dir, { recursive: true, force: true });
  });
  return fixture;
}
