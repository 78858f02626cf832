/**
 * The daemon's unix socket, accepted by the daemon itself rather than by grpc-js: grpc-js gives neither handlers nor
 * interceptors the connection a call came on (a unix peer is just "unknown" to them), so the kernel's record of who
 * connected (SO_PEERCRED: pid, uid, gid) is read here, on accept, and the connection is then handed to grpc-js
 * (Server.createConnectionInjector) of the server for that caller's role.
 *
 * The socket file gets exactly its mode from listenUnix, never more permissive even briefly (docs/native.md).
 */
import net from 'node:net';
import { type FdWatcher, native, type PeerCredentials, POLL_READABLE } from '../native/index.js';
import type { Logger } from '../util/log.js';

export interface UnixListener {
  /** Stops accepting and closes the listening socket (the file stays: the daemon removes it). Idempotent. */
  close(): void;
}

/** Listens on `socketPath` with `mode`; every accepted connection goes to `onConnection` with its peer's credentials. */
export function listenUnix(socketPath: string, mode: number, onConnection: (socket: net.Socket, peer: PeerCredentials) => void, logger: Logger): UnixListener {
  const listenFd = native.listenUnix(socketPath, mode, 128);
  let watcher: FdWatcher | undefined;
  const accept = (events: number): void => {
    if (events < 0) {
      logger.error('polling the daemon socket failed', { socket: socketPath, errno: -events });
      return;
    }
    for (;;) {
      let fd: number | null;
      try {
        fd = native.accept(listenFd);
      } catch (error) {
        // EMFILE and the like: keep listening, the next connection may succeed.
        logger.error('accepting a connection on the daemon socket failed', { socket: socketPath, error: (error as Error).message });
        return;
      }
      if (fd === null) return;
      let peer: PeerCredentials;
      try {
        peer = native.peerCredentials(fd);
      } catch (error) {
        logger.warn('connection without peer credentials closed', { socket: socketPath, error: (error as Error).message });
        native.close(fd);
        continue;
      }
      onConnection(new net.Socket({ fd, readable: true, writable: true }), peer);
    }
  };
  try {
    watcher = native.createWatcher(listenFd, accept);
    watcher.start(POLL_READABLE);
  } catch (error) {
    native.close(listenFd);
    throw error;
  }
  let closed = false;
  return {
    close: () => {
      if (closed) return;
      closed = true;
      watcher?.close();
      native.close(listenFd);
    },
  };
}
