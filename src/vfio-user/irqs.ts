/**
 * DEVICE_SET_IRQS: decoding the request and checking it against the device's interrupt types with the vfio.h rules
 * (`irqSetViolation` in src/spec/vfio.ts, which the PCI function applies too). The device then only applies a
 * well-formed request.
 */
import { Errno, IrqSetFlag, describeIrqSet, irqSetViolation } from '../spec/vfio.js';
import type { IncomingMessage } from './connection.js';
import type { IrqInfo, SetIrqsRequest } from './device.js';
import { VfioUserError } from './errors.js';
import { BodySize, readIrqSet } from './protocol.js';
import { expectArgsz, expectBody } from './request.js';

/** The request as the device receives it; its fds are still the message's (the caller hands them over). */
export function decodeSetIrqs(m: IncomingMessage, irqs: readonly IrqInfo[]): SetIrqsRequest {
  expectBody(m, BodySize.IRQ_SET);
  const argsz = expectArgsz(m, BodySize.IRQ_SET);
  const { flags, index, start, count } = readIrqSet(m.view, m.bodyOffset);
  // The payload (DATA_BOOL bytes) is what follows the structure within both the message and argsz.
  const dataBytes = Math.min(m.bodyLength, argsz) - BodySize.IRQ_SET;
  const violation = irqSetViolation({ index, flags, start, count, fdCount: m.fds.length, dataBytes }, irqs);
  if (violation !== null) {
    throw new VfioUserError(Errno.EINVAL, `${describeIrqSet({ index, flags, start, count })}: ${violation}`);
  }
  const request: SetIrqsRequest = { index, flags, start, count, fds: m.fds };
  if ((flags & IrqSetFlag.DATA_BOOL) !== 0) {
    const data = m.bodyOffset + BodySize.IRQ_SET;
    request.bools = m.bytes.subarray(data, data + count);
  }
  return request;
}
