/**
 * Issue 11's goals for the data path, checked against one spdk-compare run, so that every report says where vfiod
 * stands without anyone reading the tables by hand. Each goal is judged on the median over the run's rounds (one
 * disturbed round does not decide it) and also says in how many rounds it held.
 */
import { spread } from '../../src/bench/repetitions.js';

/** What a goal needs from one polled cell pair (vfiod and the reference, same round, rw, bs and QD). */
export interface GoalPair {
  round: number;
  rw: string;
  bs: number;
  qd: number;
  /** vfiod / reference. */
  iops?: number;
  p50?: number;
  p99?: number;
  /** vfiod's own server CPU per I/O, µs. */
  vfiodCpuUsPerIo?: number;
}

/** An interrupt-mode vfiod cell (nvme-bench, posted doorbells, MSI-X completions). */
export interface GoalInterruptCell {
  round: number;
  qd: number;
  cpuUsPerIo?: number;
  /**
   * The part of that CPU any interrupt-mode server pays on this machine before doing any work: one wake-up round
   * (wake the sleeping client, be woken by it; measured by wake-cost in the same round) per client wake-up, spread
   * over the I/Os each wake-up carried.
   */
  wakeFloorUsPerIo?: number;
}

export interface GoalResult {
  goal: string;
  /** The workload it was judged on, e.g. "randread 4k QD32". */
  workload: string;
  /** Per-round values, in round order. */
  values: number[];
  median: number;
  roundsMet: number;
  met: boolean;
  /** What the reader needs besides the verdict, e.g. how much of the value the machine itself imposes. */
  note?: string;
}

interface PolledGoal {
  goal: string;
  qd: number;
  value: (pair: GoalPair) => number | undefined;
  holds: (value: number) => boolean;
}

const BS_4K = 4096;

/** The polled goals, on 4k I/O of every rw the run measured. */
export const POLLED_GOALS: readonly PolledGoal[] = [
  { goal: 'QD32 IOPS ≥ 1.0× the reference', qd: 32, value: (p) => p.iops, holds: (v) => v >= 1.0 },
  { goal: 'QD32 server CPU ≤ 0.5 µs per I/O', qd: 32, value: (p) => p.vfiodCpuUsPerIo, holds: (v) => v <= 0.5 },
  { goal: 'QD1 p50 ≤ 1.2× the reference', qd: 1, value: (p) => p.p50, holds: (v) => v <= 1.2 },
  { goal: 'QD1 p99 ≤ 2× the reference', qd: 1, value: (p) => p.p99, holds: (v) => v <= 2.0 },
];

export const INTERRUPT_GOAL = { goal: 'interrupt mode: server CPU ≤ 1 µs per I/O at QD32', qd: 32, limit: 1.0 };

/** The median of the finite values (NaN for none), as every bench report takes it (src/bench/repetitions.ts). */
export function median(values: readonly number[]): number {
  return spread(values)?.median ?? NaN;
}

function judge(goal: string, workload: string, values: number[], holds: (value: number) => boolean): GoalResult {
  const middle = median(values);
  return { goal, workload, values, median: middle, roundsMet: values.filter(holds).length, met: Number.isFinite(middle) && holds(middle) };
}

/** Every goal the run has cells for; goals without cells (a QD or mode not measured) are left out. */
export function checkGoals(pairs: readonly GoalPair[], interrupt: readonly GoalInterruptCell[]): GoalResult[] {
  const results: GoalResult[] = [];
  const rws = [...new Set(pairs.filter((p) => p.bs === BS_4K).map((p) => p.rw))].sort();
  for (const goal of POLLED_GOALS) {
    for (const rw of rws) {
      const values = pairs
        .filter((p) => p.rw === rw && p.bs === BS_4K && p.qd === goal.qd)
        .sort((a, b) => a.round - b.round)
        .map((p) => goal.value(p))
        .filter((v): v is number => v !== undefined && Number.isFinite(v));
      if (values.length > 0) results.push(judge(goal.goal, `${rw} 4k QD${goal.qd}`, values, goal.holds));
    }
  }
  const cells = interrupt.filter((c) => c.qd === INTERRUPT_GOAL.qd).sort((a, b) => a.round - b.round);
  const finite = (values: (number | undefined)[]): number[] => values.filter((v): v is number => v !== undefined && Number.isFinite(v));
  const cpu = finite(cells.map((c) => c.cpuUsPerIo));
  if (cpu.length > 0) {
    const result = judge(INTERRUPT_GOAL.goal, `randread 4k QD${INTERRUPT_GOAL.qd}`, cpu, (v) => v <= INTERRUPT_GOAL.limit);
    const floors = finite(cells.map((c) => c.wakeFloorUsPerIo));
    const above = finite(cells.map((c) => (c.cpuUsPerIo !== undefined && c.wakeFloorUsPerIo !== undefined ? c.cpuUsPerIo - c.wakeFloorUsPerIo : undefined)));
    if (floors.length > 0) {
      result.note = `The wake-ups alone (wake-cost, same rounds: one eventfd wake-up round per wake-up of the client) take ` +
        `${median(floors).toFixed(2)} µs per I/O of that on this machine (per round: ${floors.map((v) => v.toFixed(2)).join(', ')})` +
        (above.length > 0 ? `; vfiod's CPU above that floor: ${median(above).toFixed(2)} µs per I/O.` : '.');
    }
    results.push(result);
  }
  return results;
}

/** The goals as a Markdown table. */
export function goalsMarkdown(results: readonly GoalResult[], referenceName: string): string[] {
  if (results.length === 0) return [];
  const number = (v: number): string => (Number.isFinite(v) ? v.toFixed(2) : '–');
  const lines = [
    `## Against issue 11's goals (reference: ${referenceName})`,
    '',
    'Judged on the median over the rounds; ratios are vfiod / reference from the same round.',
    '',
    '| goal | workload | per round | median | rounds met | met? |',
    '|---|---|---|---:|---:|---|',
  ];
  for (const r of results) {
    lines.push(`| ${r.goal} | ${r.workload} | ${r.values.map(number).join(', ')} | ${number(r.median)} | ${r.roundsMet} of ${r.values.length} | ${r.met ? 'yes' : '**no**'} |`);
  }
  lines.push('');
  for (const r of results) if (r.note) lines.push(`- ${r.goal}: ${r.note}`);
  if (results.some((r) => r.note)) lines.push('');
  return lines;
}
