/**
 * DEVICE_SET_IRQS: decoding and validating the request against the device's interrupt types, with vfio-pci's
 * rules for which DATA_* / ACTION_* combinations exist. The device then only applies a well-formed request.
 */
import type { IncomingMessage } from './connection.js';
import { IrqFlag, IrqSetFlag, type IrqInfo, type SetIrqsRequest } from './device.js';
import { Errno, VfioUserError } from './errors.js';
import { BodySize, readIrqSet } from './protocol.js';
import { expectArgsz, expectBody, expectNoFds } from './request.js';

/** The request as the device receives it; its fds are still the message's (the caller hands them over). */
export function decodeSetIrqs(m: IncomingMessage, irqs: readonly IrqInfo[]): SetIrqsRequest {
  expectBody(m, BodySize.IRQ_SET);
  const argsz = expectArgsz(m, BodySize.IRQ_SET);
  const { flags, index, start, count } = readIrqSet(m.view, m.bodyOffset);
  const where = `SET_IRQS index ${index} start ${start} count ${count} flags 0x${flags.toString(16)}`;
  if (index >= irqs.length)
    throw new VfioUserError(Errno.EINVAL, `${where}: irq index does not exist (${irqs.length} irq types)`);
  const dataType = flags & (IrqSetFlag.DATA_NONE | IrqSetFlag.DATA_BOOL | IrqSetFlag.DATA_EVENTFD);
  const action = flags & (IrqSetFlag.ACTION_MASK | IrqSetFlag.ACTION_UNMASK | IrqSetFlag.ACTION_TRIGGER);
  if ((flags & ~0x3f) !== 0 || !isSingleBit(dataType) || !isSingleBit(action)) {
    throw new VfioUserError(Errno.EINVAL, `${where}: flags must have exactly one DATA_* and one ACTION_* bit`);
  }
  const vectors = irqs[index]!.count;
  if (start + count > vectors || (count > 0 && start >= vectors)) {
    throw new VfioUserError(Errno.EINVAL, `${where}: vectors outside the ${vectors} of this irq type`);
  }
  const request: SetIrqsRequest = { index, flags, start, count, fds: m.fds };
  if (dataType === IrqSetFlag.DATA_EVENTFD) {
    if (count === 0) throw new VfioUserError(Errno.EINVAL, `${where}: DATA_EVENTFD needs count > 0`);
    // vfio-pci semantics: ACTION_MASK|DATA_EVENTFD is not implemented (ENOTTY), and ACTION_UNMASK|DATA_EVENTFD
    // is the resample irqfd of a level-triggered (AUTOMASKED) interrupt: INTx.
    if (action === IrqSetFlag.ACTION_MASK) {
      throw new VfioUserError(
        Errno.EINVAL,
        `${where}: masking through an eventfd is not supported (mask with DATA_NONE or DATA_BOOL)`,
      );
    }
    if (action === IrqSetFlag.ACTION_UNMASK && (irqs[index]!.flags & IrqFlag.AUTOMASKED) === 0) {
      throw new VfioUserError(
        Errno.EINVAL,
        `${where}: an unmask (resample) eventfd is only defined for an automasked, level-triggered interrupt (INTx)`,
      );
    }
    if (m.fds.length !== count && m.fds.length !== 0) {
      throw new VfioUserError(
        Errno.EINVAL,
        `${where}: ${m.fds.length} eventfds for ${count} vectors (send ${count}, or none to de-assign)`,
      );
    }
  } else {
    expectNoFds(m);
    if (dataType === IrqSetFlag.DATA_BOOL) {
      if (count === 0) throw new VfioUserError(Errno.EINVAL, `${where}: DATA_BOOL needs count > 0`);
      if (m.bodyLength < BodySize.IRQ_SET + count || argsz < BodySize.IRQ_SET + count) {
        throw new VfioUserError(
          Errno.EINVAL,
          `${where}: DATA_BOOL needs ${count} payload bytes, got ${m.bodyLength - BodySize.IRQ_SET} (argsz ${argsz})`,
        );
      }
      const data = m.bodyOffset + BodySize.IRQ_SET;
      request.bools = m.bytes.subarray(data, data + count);
    }
  }
  return request;
}

function isSingleBit(value: number): boolean {
  return value !== 0 && (value & (value - 1)) === 0;
}
