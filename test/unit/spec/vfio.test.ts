import { describe, expect, it } from 'vitest';
import { Errno, IrqFlag, IrqSetFlag, describeIrqSet, errnoName, irqSetViolation, type IrqSet } from '../../../src/spec/vfio.js';

const { DATA_NONE, DATA_BOOL, DATA_EVENTFD, ACTION_MASK, ACTION_UNMASK, ACTION_TRIGGER } = IrqSetFlag;
/** INTx (level-triggered), MSI (absent), MSI-X with 8 vectors. */
const IRQS = [
  { count: 1, flags: IrqFlag.EVENTFD | IrqFlag.MASKABLE | IrqFlag.AUTOMASKED },
  { count: 0, flags: 0 },
  { count: 8, flags: IrqFlag.EVENTFD | IrqFlag.NORESIZE },
];

function set(fields: Partial<IrqSet>): IrqSet {
  return { index: 2, flags: ACTION_TRIGGER | DATA_EVENTFD, start: 0, count: 1, fdCount: 1, dataBytes: 0, ...fields };
}

describe('irqSetViolation', () => {
  it('accepts what vfio-pci accepts', () => {
    for (const ok of [
      set({}),
      set({ start: 7, count: 1 }),
      set({ count: 8, fdCount: 8 }),
      set({ count: 2, fdCount: 0 }), // de-assign
      set({ flags: ACTION_TRIGGER | DATA_NONE, count: 0, fdCount: 0 }), // disable all
      set({ flags: ACTION_MASK | DATA_BOOL, count: 3, fdCount: 0, dataBytes: 3 }),
      set({ flags: ACTION_UNMASK | DATA_BOOL, count: 1, fdCount: 0, dataBytes: 4 }), // extra payload is ignored
      set({ index: 0, flags: ACTION_UNMASK | DATA_EVENTFD }), // the INTx resample eventfd
    ]) {
      expect(irqSetViolation(ok, IRQS), JSON.stringify(ok)).toBeNull();
    }
  });

  it('says why it refuses the rest', () => {
    const cases: Array<[IrqSet, string]> = [
      [set({ index: 3 }), 'irq index does not exist (3 irq types)'],
      [set({ index: -1 }), 'irq index does not exist'],
      [set({ flags: ACTION_TRIGGER | DATA_EVENTFD | 0x40 }), 'unknown flag bits'],
      [set({ flags: ACTION_TRIGGER | DATA_EVENTFD | DATA_NONE }), 'exactly one of DATA_NONE'],
      [set({ flags: DATA_EVENTFD }), 'exactly one of ACTION_MASK'],
      [set({ start: 1.5 }), 'non-negative integers'],
      [set({ start: 8 }), 'vectors outside the 8 of this irq type'],
      [set({ start: 7, count: 2, fdCount: 2 }), 'vectors outside'],
      [set({ index: 1, flags: ACTION_TRIGGER | DATA_NONE, count: 0, fdCount: 0 }), 'vectors outside the 0'],
      [set({ flags: ACTION_MASK | DATA_NONE, count: 0, fdCount: 0 }), 'count 0 is only valid with ACTION_TRIGGER|DATA_NONE'],
      [set({ count: 0, fdCount: 0 }), 'count 0 is only valid'],
      [set({ flags: ACTION_TRIGGER | DATA_NONE }), '1 fds sent without DATA_EVENTFD'],
      [set({ flags: ACTION_MASK | DATA_BOOL, count: 2, fdCount: 0, dataBytes: 1 }), 'DATA_BOOL needs 2 payload bytes, got 1'],
      [set({ index: 0, flags: ACTION_MASK | DATA_EVENTFD }), 'masking through an eventfd is not supported'],
      [set({ flags: ACTION_UNMASK | DATA_EVENTFD }), 'only defined for an automasked, level-triggered interrupt'],
      [set({ count: 3, fdCount: 2 }), '2 eventfds for 3 vectors'],
    ];
    for (const [request, reason] of cases) {
      expect(irqSetViolation(request, IRQS), JSON.stringify(request)).toContain(reason);
    }
  });

  it('names a request the same way for every caller', () => {
    expect(describeIrqSet({ index: 2, flags: ACTION_TRIGGER | DATA_EVENTFD, start: 4, count: 2 })).toBe(
      'SET_IRQS index 2 start 4 count 2 flags 0x24',
    );
  });
});

describe('Errno', () => {
  it('has the Linux numbers and names them', () => {
    expect([Errno.EINVAL, Errno.EBADF, Errno.ENOTSUP]).toEqual([22, 9, 95]);
    expect(errnoName(Errno.EEXIST)).toBe('EEXIST');
    expect(errnoName(123)).toBe('errno 123');
  });
});
