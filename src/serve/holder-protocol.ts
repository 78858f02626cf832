/** The version of the holder protocol (holder.ts, holder-client.ts): an attach of another version is refused. */
export const HOLDER_PROTOCOL = 1;
