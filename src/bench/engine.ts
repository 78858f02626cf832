/**
 * The project's fio external engine (bench/fio-engine, docs/fio-engine.md): built on demand with its own build
 * script, which checks it against the installed fio. Emulation and passthrough targets run fio through it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { TargetConfig } from './config.js';
import type { TargetFioOptions } from './matrix.js';

const BUILD_SCRIPT = fileURLToPath(new URL('../../bench/fio-engine/build.sh', import.meta.url));

export type EngineBuild = { ok: true; path: string } | { ok: false; unavailable: boolean; reason: string };

let cached: EngineBuild | undefined;

/** A prebuilt engine named in the config: used as is (e.g. where the repository is read-only). */
export function prebuiltEngine(file: string): EngineBuild {
  return existsSync(file) ? { ok: true, path: file } : { ok: false, unavailable: true, reason: `the fio engine ${file} (config 'engine') does not exist` };
}

/** Builds (or finds up to date) the engine; `unavailable` = fio or its sources are missing, not a build bug. */
export function buildEngine(): EngineBuild {
  if (cached) return cached;
  if (!existsSync(BUILD_SCRIPT)) {
    cached = { ok: false, unavailable: true, reason: `the fio engine build script ${BUILD_SCRIPT} does not exist` };
    return cached;
  }
  const result = spawnSync('sh', [BUILD_SCRIPT], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const soPath = result.stdout.trim().split('\n').at(-1) ?? '';
  if (result.status === 0 && soPath && existsSync(soPath)) cached = { ok: true, path: soPath };
  else {
    const detail = (result.stderr || result.stdout || String(result.error ?? '')).trim().split('\n').slice(-5).join(' | ');
    cached = { ok: false, unavailable: result.status === 3, reason: `building the fio engine failed (exit ${result.status}): ${detail}` };
  }
  return cached;
}

/** Whether some target runs fio through the engine (emulation and passthrough do). */
export function targetsNeedEngine(targets: readonly TargetConfig[]): boolean {
  return targets.some((target) => target.type === 'emulation' || target.type === 'passthrough');
}

/**
 * What building the engine would download first (the build script's --plan: "fetch <what>"), or undefined when
 * nothing: it is built, its source is cached, or it cannot be built at all (the target then says why).
 */
export function engineFetchNeeded(): string | undefined {
  if (cached || !existsSync(BUILD_SCRIPT)) return undefined;
  const result = spawnSync('sh', [BUILD_SCRIPT, '--plan'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const plan = result.status === 0 ? (result.stdout.trim().split('\n').at(-1) ?? '') : '';
  return plan.startsWith('fetch ') ? plan.slice('fetch '.length) : undefined;
}

/** fio options that run a job through the engine over vfio-user to a `vfiod serve` socket. */
export function vfioUserEngineOptions(enginePath: string, socketPath: string, nsid = 1): TargetFioOptions {
  return [
    ['ioengine', `external:${enginePath}`],
    // The engine shares one connection per target between jobs, so jobs must be threads.
    ['thread', 1],
    ['vfiod_transport', 'vfio-user'],
    ['vfiod_socket', socketPath],
    ['vfiod_nsid', nsid],
  ];
}

/** fio options that run a job through the engine over VFIO to a PCI function bound to vfio-pci. */
export function vfioEngineOptions(enginePath: string, bdf: string, nsid: number): TargetFioOptions {
  return [
    ['ioengine', `external:${enginePath}`],
    ['thread', 1],
    ['vfiod_transport', 'vfio'],
    ['vfiod_bdf', bdf],
    ['vfiod_nsid', nsid],
  ];
}
