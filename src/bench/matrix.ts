/** Expands a bench matrix into points and writes the fio job files that run them. */
import type { MatrixConfig, RwMode } from './config.js';

/** One combination of the matrix dimensions; every target runs every point. */
export interface MatrixPoint {
  /** Stable, file-name-safe id, e.g. randread-4k-qd32-j1 (or ...-verify). */
  id: string;
  rw: RwMode;
  rwmixread: number | undefined;
  bs: number;
  iodepth: number;
  numjobs: number;
  verify: boolean;
  runtimeSeconds: number | undefined;
  rampSeconds: number;
  sizeBytes: number;
}

export function formatBs(bytes: number): string {
  return bytes % 1024 === 0 ? `${bytes / 1024}k` : `${bytes}`;
}

/** Points in a fixed order: rw, bs, numjobs, verify, iodepth (iodepth innermost so plots read along it). */
export function expandMatrix(m: MatrixConfig): MatrixPoint[] {
  const points: MatrixPoint[] = [];
  for (const rw of m.rw) {
    for (const bs of m.bs) {
      for (const numjobs of m.numjobs) {
        for (const verify of m.verify) {
          for (const iodepth of m.iodepth) {
            const id = `${rw}${rw === 'randrw' ? m.rwmixread : ''}-${formatBs(bs)}-qd${iodepth}-j${numjobs}${verify ? '-verify' : ''}`;
            points.push({
              id, rw, rwmixread: rw === 'randrw' ? m.rwmixread : undefined, bs, iodepth, numjobs, verify,
              runtimeSeconds: m.runtimeSeconds, rampSeconds: m.rampSeconds, sizeBytes: m.sizeBytes,
            });
          }
        }
      }
    }
  }
  return points;
}

/** Workloads that read, so the region must hold written data first (and verify headers when verifying). */
export function readsData(rw: RwMode): boolean {
  return rw === 'read' || rw === 'randread' || rw === 'randrw';
}

/** The workload label a point belongs to in reports (everything but iodepth). */
export function workloadKey(p: MatrixPoint): string {
  return p.id.replace(/-qd\d+/, '');
}

export const VERIFY_METHOD = 'crc32c';

/** Target-specific fio options: engine, its options and the file/device (one `key=value` per entry). */
export type TargetFioOptions = Array<[string, string | number]>;

function lines(options: TargetFioOptions): string[] {
  return options.map(([key, value]) => `${key}=${value}`);
}

function regionOptions(p: { sizeBytes: number; numjobs: number }): TargetFioOptions {
  // Each job gets its own region: with verify, overlapping writers would overwrite each other's headers.
  return [['size', p.sizeBytes], ['numjobs', p.numjobs], ...(p.numjobs > 1 ? [['offset_increment', p.sizeBytes] as [string, number]] : [])];
}

/** fio reads a bare number as whole seconds; fractions need a unit. */
function fioTime(seconds: number): string {
  return Number.isInteger(seconds) ? String(seconds) : `${Math.round(seconds * 1000)}ms`;
}

/** The measured run of one point. */
export function jobFile(p: MatrixPoint, target: { name: string; options: TargetFioOptions }): string {
  const out = [
    `; vfiod bench: point ${p.id} on target ${target.name} (generated)`,
    `; reproduce: fio --output-format=json <this file>`,
    '[global]',
    ...lines(target.options),
    `rw=${p.rw}`,
    ...(p.rwmixread !== undefined ? [`rwmixread=${p.rwmixread}`] : []),
    `bs=${p.bs}`,
    `iodepth=${p.iodepth}`,
    ...lines(regionOptions(p)),
    'group_reporting=1',
    'percentile_list=50:90:99:99.9',
  ];
  // Verifying points are size-based: one pass over the region, then fio reads back and checks every block it wrote
  // (a time-based writer never reaches that phase, and a verifying reader stops after one pass anyway).
  if (p.runtimeSeconds !== undefined && !p.verify) {
    out.push('time_based=1', `runtime=${fioTime(p.runtimeSeconds!)}`);
    if (p.rampSeconds > 0) out.push(`ramp_time=${fioTime(p.rampSeconds)}`);
  }
  if (p.verify) {
    // verify_state_save=0: fio would otherwise drop a *-verify.state file into its working directory.
    out.push(`verify=${VERIFY_METHOD}`, 'verify_fatal=1', 'verify_dump=0', 'verify_state_save=0');
  }
  out.push('', `[${p.id}]`, '');
  return out.join('\n');
}

/**
 * Writes the region sequentially before a reading point: with verify, in the point's block size and with verify
 * headers (a verifying read checks them); without, in 128k blocks so reads do not hit never-written (sparse) data.
 */
export function fillJobFile(
  p: Pick<MatrixPoint, 'id' | 'bs' | 'verify' | 'sizeBytes' | 'numjobs'>,
  target: { name: string; options: TargetFioOptions },
): string {
  return [
    `; vfiod bench: fill before point ${p.id} on target ${target.name} (generated)`,
    '[global]',
    ...lines(target.options),
    'rw=write',
    `bs=${p.verify ? p.bs : 128 * 1024}`,
    'iodepth=16',
    ...lines(regionOptions(p)),
    'group_reporting=1',
    ...(p.verify ? [`verify=${VERIFY_METHOD}`, 'do_verify=0', 'verify_state_save=0'] : []),
    '',
    `[fill-${p.id}]`,
    '',
  ].join('\n');
}
