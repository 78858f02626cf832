/**
 * The compiled daemon for tests that create controllers: controllers run in worker threads loaded from
 * dist/serve/worker.js, so the daemon must be the one in dist/ too. Says why it cannot run when dist/ is not built.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as ServerModule from '../../src/daemon/server.js';
import { memoryLogger } from '../../src/util/log.js';
import type { FakeHost } from './fake-sysfs.js';

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
