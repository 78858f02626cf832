/** The version of the holder protocol (holder.ts, holder-client.ts): an attach of another version is refused. */
export const HOLDER_PROTOCOL = 1;

/**
 * A data plane that quiesced and checkpointed its controllers for a planned restart exits with this (EX_TEMPFAIL);
 * the holder then starts the next one at once, outside its crash back-off.
 */
export const RESTART_EXIT_CODE = 75;
