/** What is at a unix socket path: nothing, a stale socket file, a socket someone listens on, or something else. */
import { lstatSync } from 'node:fs';
import net from 'node:net';

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
