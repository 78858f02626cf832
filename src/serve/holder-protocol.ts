/** The version of the holder protocol (holder.ts, holder-client.ts): an attach of another version is refused. */
export const HOLDER_PROTOCOL = 1;

/**
 * What a data plane tells its holder over the Node IPC channel the holder started it with (data-plane.ts tellHolder):
 * - `signals-caught`: it catches SIGTERM and SIGINT now; before, the holder's SIGTERM would kill it unhandled.
 * - `restart-ready`: it handles SIGUSR2, the planned restart, now; before, that signal would kill it (a crash).
 * - `standby-ready`: a standby has loaded and waits for `activate`.
 * - `serving`: every controller serves (for systemd's READY=1 and STATUS=, through the holder).
 */
export type DataPlaneToHolder =
  | { type: 'signals-caught' }
  | { type: 'restart-ready' }
  | { type: 'standby-ready' }
  | { type: 'serving'; status: string };
/** What the holder tells a standby data plane: go (the data plane it stood in for died). */
export type HolderToDataPlane = { type: 'activate' };

/**
 * A data plane that quiesced and checkpointed its controllers for a planned restart exits with this (EX_TEMPFAIL);
 * the holder then starts the next one at once, outside its crash back-off.
 */
export const RESTART_EXIT_CODE = 75;
