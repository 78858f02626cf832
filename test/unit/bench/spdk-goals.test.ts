// bench/spdk-compare/goals.ts: issue 11's goals judged on one run's cells.
import { describe, expect, it } from 'vitest';
import { checkGoals, goalsMarkdown, median, type GoalPair } from '../../../bench/spdk-compare/goals.js';

const pair = (round: number, rw: string, qd: number, values: Partial<GoalPair>): GoalPair => ({ round, rw, bs: 4096, qd, ...values });

describe('spdk-compare goals', () => {
  it('judges each goal on the median over rounds and counts the rounds that met it', () => {
    const pairs = [
      pair(1, 'randread', 32, { iops: 1.01, vfiodCpuUsPerIo: 0.65 }),
      pair(2, 'randread', 32, { iops: 0.98, vfiodCpuUsPerIo: 0.66 }),
      pair(3, 'randread', 32, { iops: 1.03, vfiodCpuUsPerIo: 0.63 }),
      pair(1, 'randwrite', 1, { p50: 1.02, p99: 1.38 }),
      pair(2, 'randwrite', 1, { p50: 1.01, p99: 3.29 }),
      pair(3, 'randwrite', 1, { p50: 1.07, p99: 1.15 }),
      // Not 4k: never judged.
      { round: 1, rw: 'randread', bs: 131072, qd: 32, iops: 0.2 },
    ];
    const results = checkGoals(pairs, [
      { round: 1, qd: 32, cpuUsPerIo: 2.06 },
      { round: 2, qd: 32, cpuUsPerIo: 0.9 },
      { round: 1, qd: 1, cpuUsPerIo: 30 },
    ]);
    const find = (goal: string, workload: string) => results.find((r) => r.goal.startsWith(goal) && r.workload === workload);
    expect(find('QD32 IOPS', 'randread 4k QD32')).toMatchObject({ values: [1.01, 0.98, 1.03], median: 1.01, roundsMet: 2, met: true });
    expect(find('QD32 server CPU', 'randread 4k QD32')).toMatchObject({ median: 0.65, roundsMet: 0, met: false });
    expect(find('QD1 p50', 'randwrite 4k QD1')).toMatchObject({ median: 1.02, roundsMet: 3, met: true });
    expect(find('QD1 p99', 'randwrite 4k QD1')).toMatchObject({ median: 1.38, roundsMet: 2, met: true });
    // Two rounds: the median is their mean, 1.48 > 1 µs.
    expect(find('interrupt mode', 'randread 4k QD32')).toMatchObject({ values: [2.06, 0.9], roundsMet: 1, met: false });
    // Goals without cells are left out, not reported as met.
    expect(find('QD1 p50', 'randread 4k QD1')).toBeUndefined();
    expect(results.some((r) => r.workload.includes('128k'))).toBe(false);

    const markdown = goalsMarkdown(results, 'SPDK nvmf_tgt').join('\n');
    expect(markdown).toContain('| QD32 server CPU ≤ 0.5 µs per I/O | randread 4k QD32 | 0.65, 0.66, 0.63 | 0.65 | 0 of 3 | **no** |');
    expect(markdown).toContain('reference: SPDK nvmf_tgt');
  });

  it('says how much of interrupt mode\'s CPU the wake-ups alone take, without changing the verdict', () => {
    const results = checkGoals([], [
      { round: 1, qd: 32, cpuUsPerIo: 1.8, wakeFloorUsPerIo: 0.7 },
      { round: 2, qd: 32, cpuUsPerIo: 1.7, wakeFloorUsPerIo: 0.8 },
      { round: 3, qd: 32, cpuUsPerIo: 1.9 },
    ]);
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ values: [1.8, 1.7, 1.9], median: 1.8, met: false });
    // The floor's median over the rounds that measured it (0.75), and the median above it (1.1 and 0.9: 1.0).
    expect(results[0]!.note).toContain('0.75 µs per I/O');
    expect(results[0]!.note).toContain('per round: 0.70, 0.80');
    expect(results[0]!.note).toContain('above that floor: 1.00 µs per I/O');
    expect(goalsMarkdown(results, 'SPDK').join('\n')).toContain(`- interrupt mode: server CPU ≤ 1 µs per I/O at QD32: ${results[0]!.note}`);
    // Without a wake-cost measurement there is no note.
    expect(checkGoals([], [{ round: 1, qd: 32, cpuUsPerIo: 1.8 }])[0]!.note).toBeUndefined();
    // A floor without the server's CPU in the same round says nothing about what is above it (no NaN).
    const partial = checkGoals([], [{ round: 1, qd: 32, cpuUsPerIo: 1.8 }, { round: 2, qd: 32, wakeFloorUsPerIo: 0.7 }])[0]!.note!;
    expect(partial).toContain('0.70 µs per I/O');
    expect(partial).not.toContain('above that floor');
    expect(partial).not.toContain('NaN');
  });

  it('has nothing to say about a run without the cells, and a median of nothing is NaN', () => {
    expect(checkGoals([], [])).toEqual([]);
    expect(goalsMarkdown([], 'x')).toEqual([]);
    expect(median([])).toBeNaN();
    expect(median([3, 1, 2])).toBe(2);
  });
});
