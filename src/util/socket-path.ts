/** What is at a unix socket path: nothing, a stale socket file, a socket someone listens on, or something else. */
import { lstatSync, realpathSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export type SocketPathState = 'free' | 'stale' | 'live' | 'not-a-socket';

export async function socketPathState(socketPath: string, timeoutMs = 1000): Promise<SocketPathState> {
  try {
    if (!lstatSync(socketPath).isSocket()) return 'not-a-socket';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'free';
    throw error;
  }
  return new Promise((resolve) => {
    const probe = net.connect(socketPath);
    const done = (state: SocketPathState): void => {
      clearTimeout(timer);
      probe.destroy();
      resolve(state);
    };
    // A listener that never accepts (backlog full) is still someone's socket.
    const timer = setTimeout(() => done('live'), timeoutMs);
    probe.once('connect', () => done('live'));
    probe.once('error', (error: NodeJS.ErrnoException) => done(error.code === 'ECONNREFUSED' || error.code === 'ENOENT' ? 'stale' : 'live'));
  });
}

/**
 * Whether two socket paths are one socket: the same name, the same inode (a symlinked directory, a hard link), or,
 * for paths with nothing there yet, the same place once symlinks in their directories are resolved.
 */
export function sameSocketFile(a: string, b: string): boolean {
  if (path.resolve(a) === path.resolve(b)) return true;
  try {
    const x = statSync(a);
    const y = statSync(b);
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return realLocation(a) === realLocation(b);
  }
}

function realLocation(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    try {
      return path.join(realpathSync(path.dirname(file)), path.basename(file));
    } catch {
      return path.resolve(file);
    }
  }
}

/** The inode of the socket file a listener created, so that it removes only its own file later. */
export interface SocketIdentity {
  dev: number;
  ino: number;
}

export function socketIdentity(socketPath: string): SocketIdentity {
  const stat = lstatSync(socketPath);
  return { dev: stat.dev, ino: stat.ino };
}

/**
 * Makes room for a new listener at `socketPath`: nothing there, or a stale socket file (a killed process's), which is
 * removed. `what` names the kind of listener in the errors: a live socket is refused (code EADDRINUSE), and so is
 * anything that is not a socket. Returns whether a stale file was removed.
 */
export async function clearStaleSocket(socketPath: string, what: string): Promise<boolean> {
  const state = await socketPathState(socketPath);
  if (state === 'free') return false;
  if (state === 'not-a-socket') throw new Error(`refusing to replace ${socketPath}: it exists and is not a socket`);
  if (state === 'live') {
    throw Object.assign(new Error(`${socketPath} is in use: another ${what} listens there`), { code: 'EADDRINUSE' });
  }
  unlinkSync(socketPath);
  return true;
}

/**
 * Removes the socket file at `socketPath` if it is still the one `identity` names: another process may have put its
 * own there since. Errors other than "already gone" are returned for the caller to log.
 */
export function removeOwnSocket(socketPath: string, identity: SocketIdentity | undefined): Error | undefined {
  if (!identity) return undefined;
  try {
    const stat = lstatSync(socketPath);
    if (stat.isSocket() && stat.dev === identity.dev && stat.ino === identity.ino) unlinkSync(socketPath);
    return undefined;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : (error as Error);
  }
}
