/**
 * Checks every request handler makes on a received message (fds, payload length, argsz), each failing with the
 * VfioUserError that becomes the client's error reply.
 */
import type { IncomingMessage } from './connection.js';
import { Errno, VfioUserError } from './errors.js';
import { HeaderFlag, commandName } from './protocol.js';

/** A message's fds once they are handed on or closed. */
export const NO_FDS: number[] = Object.freeze([]) as unknown as number[];

export function wantsReply(m: IncomingMessage): boolean {
  return (m.flags & HeaderFlag.NO_REPLY) === 0;
}

export function expectNoFds(m: IncomingMessage): void {
  if (m.fds.length > 0) {
    throw new VfioUserError(Errno.EINVAL, `${commandName(m.command)} takes no file descriptors, got ${m.fds.length}`);
  }
}

export function expectBody(m: IncomingMessage, minimum: number, exact = false): void {
  if (m.bodyLength < minimum || (exact && m.bodyLength !== minimum)) {
    throw new VfioUserError(
      Errno.EINVAL,
      `${commandName(m.command)} payload is ${m.bodyLength} bytes, expected ${exact ? '' : 'at least '}${minimum}`,
    );
  }
}

/** Checks the argsz field (the body's first u32) against the structure's size; returns it. */
export function expectArgsz(m: IncomingMessage, minimum: number): number {
  const argsz = m.view.getUint32(m.bodyOffset, true);
  if (argsz < minimum) {
    throw new VfioUserError(
      Errno.EINVAL,
      `${commandName(m.command)} argsz ${argsz} is smaller than the ${minimum}-byte structure`,
    );
  }
  return argsz;
}
