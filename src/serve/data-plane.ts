/**
 * The data plane's tie to its crash-recovery holder (holder.ts): the holder starts it with a Node IPC channel, and
 * when that channel goes (the holder was killed), the data plane stops as on SIGTERM. Without the holder nothing
 * would restart it after a crash, and an orphan serving on would outlive what supervises it.
 */
import { rootLogger } from '../util/log.js';
import type { DataPlaneToHolder } from './holder-protocol.js';

export function stopWithHolder(): void {
  const channel = process.channel;
  if (!channel) return;
  // The channel must not keep the process alive once it has stopped serving.
  channel.unref();
  const holderPid = process.ppid;
  process.once('disconnect', () => {
    rootLogger.child({ component: 'serve' }).error('the crash-recovery holder is gone; stopping', { holderPid });
    process.kill(process.pid, 'SIGTERM');
  });
}

/** Sends `message` to the holder; nothing when this process has no holder, or it is gone. */
export function tellHolder(message: DataPlaneToHolder): void {
  try {
    process.send?.(message);
  } catch {
    // the holder is gone; stopWithHolder stops this process
  }
}

/**
 * Tells the holder that this data plane catches SIGTERM and SIGINT now (catchEarlySignals or its handlers): before
 * that the holder's SIGTERM would kill it by the default action, so the holder holds a stop back until this comes.
 */
export function tellHolderSignalsAreCaught(): void {
  tellHolder({ type: 'signals-caught' });
}

/**
 * Tells the holder that this data plane handles SIGUSR2 now, the holder's planned restart (checkpoint, then exit with
 * RESTART_EXIT_CODE): before that SIGUSR2 would kill it by the default action, a crash to the holder, so the holder
 * holds a planned restart back until this comes.
 */
export function tellHolderRestartIsHandled(): void {
  tellHolder({ type: 'restart-ready' });
}
