/** vfiod.v1.DaemonService: the daemon's own pid and version, and a planned restart through the crash-recovery holder. */
import type * as grpc from '@grpc/grpc-js';
import path from 'node:path';
import { HandoverChannel } from '../serve/handover-channel.js';
import { packageVersion } from '../serve/upgrade.js';
import { VfiodError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { DaemonInfo } from './generated/vfiod/v1/DaemonInfo.js';
import { implementService } from './requests.js';

const startedAt = Date.now();

export function daemonService(deps: { holderSocket: string | undefined; logger: Logger }): grpc.UntypedServiceImplementation {
  const logger = deps.logger.child({ service: 'DaemonService' });
  const info = (): DaemonInfo => ({
    pid: process.pid,
    version: packageVersion(),
    crashRecovery: deps.holderSocket !== undefined,
    holderSocket: deps.holderSocket ?? '',
    startedUnixMs: startedAt,
  });
  return implementService('DaemonService', logger, {
    GetDaemon: () => ({ daemon: info() }),
    RestartDaemon: (request) => {
      const holderSocket = deps.holderSocket;
      if (holderSocket === undefined) {
        throw new VfiodError('FAILED_PRECONDITION', 'the daemon runs without --crash-recovery: nothing would keep the guests\' connections across a restart', {
          reason: 'NO_CRASH_RECOVERY',
        });
      }
      const bin = request.bin === '' ? undefined : request.bin;
      if (bin !== undefined && !path.isAbsolute(bin)) throw new VfiodError('INVALID_ARGUMENT', `bin must be an absolute path, not '${bin}'`, { reason: 'FIELD_INVALID', field: 'bin' });
      // The answer goes out first: the holder's SIGUSR2 makes this process checkpoint and exit.
      setTimeout(() => {
        try {
          const channel = HandoverChannel.connect(holderSocket);
          channel.send({ type: 'restart', ...(bin !== undefined ? { bin } : {}) });
          logger.info('planned restart asked of the holder', { holderSocket, bin });
        } catch (error) {
          logger.error('cannot reach the holder for a planned restart', { holderSocket, error: (error as Error).message });
        }
      }, 50);
      return { daemon: info() };
    },
  });
}
