/** What is at a unix socket path: nothing, a stale socket file, a socket someone listens on, or something else. */
import { lstatSync, realpathSync, statSync } from 'node:fs';
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
