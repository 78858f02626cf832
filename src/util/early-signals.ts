/**
 * SIGTERM and SIGINT that come while a process is still starting, before its shutdown handlers are in place. Without
 * a listener Node leaves them to the default action: the process dies by the signal without cleaning up (its sockets
 * stay, nothing is flushed). A process that may be signalled once it shows signs of life (a log line, a socket file)
 * catches them from its first line with catchEarlySignals(), and acts on the one kept once its real handlers are set.
 */

export interface EarlySignals {
  /** Resolves with the first SIGTERM or SIGINT caught (never while none comes): for waits that a signal should end. */
  readonly signalled: Promise<NodeJS.Signals>;
  /**
   * Stops catching (the real handlers are in place, or the start failed and the process ends anyway) and returns the
   * signal that came meanwhile, if one did: the caller acts on it. Idempotent.
   */
  release(): NodeJS.Signals | undefined;
}

export function catchEarlySignals(): EarlySignals {
  let kept: NodeJS.Signals | undefined;
  let resolveSignalled: (signal: NodeJS.Signals) => void = () => undefined;
  const signalled = new Promise<NodeJS.Signals>((resolve) => (resolveSignalled = resolve));
  const keep = (signal: NodeJS.Signals): void => {
    if (kept !== undefined) return;
    kept = signal;
    resolveSignalled(kept);
  };
  process.on('SIGTERM', keep);
  process.on('SIGINT', keep);
  return {
    signalled,
    release: () => {
      process.off('SIGTERM', keep);
      process.off('SIGINT', keep);
      return kept;
    },
  };
}
