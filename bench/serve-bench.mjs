#!/usr/bin/env node
/**
 * serve-bench: IOPS and latency of `vfiod serve` for 4k random reads, measured with the native vfio-user client
 * (bench/nvme-host/build/nvme-bench).
 *
 *   node bench/serve-bench.mjs [--seconds 10] [--ramp 1] [--qds 1,32] [--modes interrupt,polled]
 *                              [--completion irq|poll|both|auto] [--namespace memory:1G] [--bs 4096]
 *                              [--verify] [--no-reference] [--server-arg <arg>]... [--out <file.json>]
 *
 * Matrix: {interrupt, polled} doorbell mode x {QD1, QD32}; every cell gets a fresh server process
 * (`node bin/vfiod.js serve --socket <tmp>/nvme.sock --namespace memory:1G [--poll]`).
 * Completion: `irq` (default) waits on the MSI-X eventfd in both doorbell modes, so the two modes are compared with
 * the same completion path and the client leaves the CPUs to the server while it waits (this machine has 2 CPUs;
 * a spinning client takes one of them from the server's JS thread and doorbell poller). `poll` spins on CQ memory,
 * `both` runs each cell twice, `auto` pairs interrupt mode with irq and polled mode with poll.
 *
 * Server CPU: the client reads /proc/<server pid>/stat (utime+stime; pid from SO_PEERCRED) at the start and end of
 * its measured window, so setup and ramp are excluded; this script also samples /proc/<pid>/stat around the whole
 * client run as a cross-check (`server_cpu_whole_run_s`). The server's CPU includes its poller thread in polled mode.
 *
 * Reference ("client ceiling"): the same client binary, same closed loop and same NVMe queue code, run against an
 * in-process loopback NVMe device (`nvme-bench --loopback`: commands execute synchronously inside the doorbell
 * write, data is a memcpy from a 1 GiB RAM namespace). It has no server and no transport, so its IOPS are the most
 * the client can drive on this machine right now; server cells report IOPS as a fraction of it at the same QD. It is
 * re-measured in every run because this machine is noisy. A trivial C vfio-user reference server was considered
 * and rejected: it would measure that server as much as the client.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const nvmeHostDir = join(here, 'nvme-host');
const clientBin = join(nvmeHostDir, 'build', 'nvme-bench');

function parseArgs(argv) {
  const o = {
    seconds: 10, ramp: 1, qds: [1, 32], modes: ['interrupt', 'polled'], completion: 'irq', namespace: 'memory:1G',
    bs: 4096, verify: false, reference: true, serverArgs: [], out: null, vfiod: join(root, 'bin', 'vfiod.js'),
    readyTimeout: 30,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--seconds': o.seconds = Number(next()); break;
      case '--ramp': o.ramp = Number(next()); break;
      case '--qds': o.qds = next().split(',').map(Number); break;
      case '--modes': o.modes = next().split(','); break;
      case '--completion': o.completion = next(); break;
      case '--namespace': o.namespace = next(); break;
      case '--bs': o.bs = Number(next()); break;
      case '--verify': o.verify = true; break;
      case '--no-reference': o.reference = false; break;
      case '--server-arg': o.serverArgs.push(next()); break;
      case '--out': o.out = next(); break;
      case '--vfiod': o.vfiod = resolve(next()); break;
      case '--ready-timeout': o.readyTimeout = Number(next()); break;
      case '-h': case '--help':
        process.stdout.write(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0] + '*/\n');
        process.exit(0);
      default: throw new Error(`unknown option ${a}`);
    }
  }
  if (!(o.seconds > 0)) throw new Error('--seconds must be > 0');
  for (const m of o.modes) if (m !== 'interrupt' && m !== 'polled') throw new Error(`bad mode ${m}`);
  if (!['auto', 'irq', 'poll', 'both'].includes(o.completion)) throw new Error(`bad --completion ${o.completion}`);
  for (const q of o.qds) if (!(Number.isInteger(q) && q >= 1 && q <= 1023)) throw new Error(`bad QD ${q}`);
  return o;
}

const log = (msg) => process.stderr.write(`[serve-bench] ${msg}\n`);

function buildClient() {
  const sources = ['nvme_bench.c', 'nvme_queue.c', 'nvme_queue.h', 'vfio_user_client.c', 'vfio_user_client.h',
    'loopback_dev.c', 'loopback_dev.h', 'build.sh'].map((f) => join(nvmeHostDir, f));
  const binTime = existsSync(clientBin) ? statSync(clientBin).mtimeMs : 0;
  if (binTime && sources.every((s) => statSync(s).mtimeMs <= binTime)) return;
  log('building the native client');
  const r = spawnSync('sh', [join(nvmeHostDir, 'build.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error('building bench/nvme-host failed');
}

/** utime+stime of a process in seconds, or null. */
function procCpu(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // fields 14, 15; USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

function runClient(args) {
  return new Promise((resolveRun) => {
    const child = spawn(clientBin, [...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('close', (code, signal) => {
      let result = null;
      try {
        result = JSON.parse(out.trim().split('\n').pop());
      } catch { /* reported below */ }
      resolveRun({ code, signal, result, stderr: err.trim(), stdout: out.trim() });
    });
  });
}

async function startServer(o, mode) {
  const dir = mkdtempSync(join(tmpdir(), 'vfiod-bench-'));
  const sock = join(dir, 'nvme.sock');
  const args = [o.vfiod, 'serve', '--socket', sock, '--namespace', o.namespace, ...(mode === 'polled' ? ['--poll'] : []), ...o.serverArgs];
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let ready = false;
  let exited = null;
  child.stderr.on('data', (d) => {
    stderr += d;
    if (/"msg":"listening"/.test(stderr) || stderr.includes(sock)) ready = true;
  });
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  const deadline = Date.now() + o.readyTimeout * 1000;
  let sockSeenAt = 0;
  // Ready = the "listening" log line, or the socket file has existed for 1 s (a probe connection is avoided on
  // purpose: a vfio-user server serves one client, and a probe could be taken for it).
  while (!ready) {
    if (exited) throw new Error(`server exited early (${JSON.stringify(exited)}): ${stderr.trim().slice(-2000)}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server not ready after ${o.readyTimeout} s: ${stderr.trim().slice(-2000)}`);
    }
    if (existsSync(sock)) {
      sockSeenAt ||= Date.now();
      if (Date.now() - sockSeenAt > 1000) ready = true;
    }
    await sleep(50);
  }
  return {
    child, sock, dir, args,
    stderr: () => stderr,
    exited: () => exited,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        for (let i = 0; i < 100 && !exited; i++) await sleep(50);
        if (!exited) {
          log(`server pid ${child.pid} ignored SIGTERM for 5 s; killing it`);
          child.kill('SIGKILL');
          for (let i = 0; i < 40 && !exited; i++) await sleep(50);
        }
      }
      rmSync(dir, { recursive: true, force: true });
      return exited;
    },
  };
}

function clientArgs(o, qd, completion) {
  return ['--workload', 'randread', '--bs', String(o.bs), '--qd', String(qd), '--seconds', String(o.seconds),
    '--ramp', String(o.ramp), '--queues', '1', '--completion', completion, ...(o.verify ? ['--verify'] : [])];
}

const fmt = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? '-' : Number(v).toFixed(d));
const fmtInt = (v) => (v === null || v === undefined ? '-' : Math.round(v).toLocaleString('en-US'));

async function main() {
  const o = parseArgs(process.argv.slice(2));
  buildClient();
  const started = new Date();
  const cells = [];
  const completionsFor = (mode) =>
    o.completion === 'both' ? ['irq', 'poll'] : o.completion === 'auto' ? [mode === 'interrupt' ? 'irq' : 'poll'] : [o.completion];
  const plan = [];
  if (o.reference) for (const qd of o.qds) plan.push({ kind: 'reference', mode: 'loopback', qd, completion: 'poll' });
  for (const mode of o.modes) for (const qd of o.qds) for (const c of completionsFor(mode)) plan.push({ kind: 'server', mode, qd, completion: c });
  log(`${plan.length} cells, ~${fmt(plan.length * (o.seconds + o.ramp + 2), 0)} s`);

  for (const [i, cell] of plan.entries()) {
    const t0 = Date.now();
    const rec = { ...cell, ok: false };
    if (cell.kind === 'reference') {
      const r = await runClient(['--loopback', ...clientArgs(o, cell.qd, 'poll')]);
      Object.assign(rec, { ok: r.code === 0 && !!r.result, result: r.result, exit: r.code, stderr: r.stderr || undefined });
    } else {
      let server;
      try {
        server = await startServer(o, cell.mode);
        const pid = server.child.pid;
        const before = procCpu(pid);
        let r = await runClient(['--socket', server.sock, ...clientArgs(o, cell.qd, cell.completion)]);
        if (!r.result && /connect .*(refused|No such file)/.test(r.stderr)) {
          await sleep(1000); // server announced itself but is not accepting yet: one retry
          r = await runClient(['--socket', server.sock, ...clientArgs(o, cell.qd, cell.completion)]);
        }
        const after = procCpu(pid);
        Object.assign(rec, {
          ok: r.code === 0 && !!r.result, result: r.result, exit: r.code, signal: r.signal || undefined,
          stderr: r.stderr || undefined, server_pid: pid,
          server_cpu_whole_run_s: before !== null && after !== null ? after - before : null,
          server_command: ['node', ...server.args.map((a) => a.replace(root + '/', ''))].join(' '),
        });
        if (server.exited()) rec.server_exit = server.exited();
      } catch (e) {
        rec.error = String(e.message || e);
      } finally {
        if (server) {
          const ex = await server.stop();
          const tail = server.stderr().trim().split('\n').slice(-20).join('\n');
          if (!rec.ok) rec.server_stderr_tail = tail;
          if (ex && ex.signal === 'SIGKILL') rec.server_needed_sigkill = true;
        }
      }
    }
    cells.push(rec);
    const r = rec.result;
    const label = `${cell.kind === 'reference' ? 'client-ceiling' : cell.mode}/${cell.completion} QD${cell.qd}`;
    if (rec.ok) {
      log(`[${i + 1}/${plan.length}] ${label}: ${fmtInt(r.iops)} IOPS, p50 ${fmt(r.lat_us.p50, 2)} us, p99 ${fmt(r.lat_us.p99, 2)} us` +
        `${r.server_cpu ? `, server ${fmt(r.server_cpu.us_per_io, 2)} us CPU/IO` : ''} (${fmt((Date.now() - t0) / 1000, 0)} s)`);
    } else {
      log(`[${i + 1}/${plan.length}] ${label}: FAILED ${rec.error || `exit ${rec.exit}`} ${(rec.stderr || '').split('\n').slice(-3).join(' | ')}`);
    }
  }

  // Ratio to the client ceiling at the same QD.
  const ceiling = new Map(cells.filter((c) => c.kind === 'reference' && c.ok).map((c) => [c.qd, c.result.iops]));
  for (const c of cells) if (c.kind === 'server' && c.ok && ceiling.has(c.qd)) c.fraction_of_client_ceiling = c.result.iops / ceiling.get(c.qd);

  const lines = [];
  lines.push(`### vfiod serve: ${o.bs / 1024}k random read, namespace ${o.namespace}, ${o.seconds} s per cell (${started.toISOString()})`);
  lines.push('');
  lines.push('| doorbells | completion | QD | IOPS | MB/s | mean us | p50 us | p90 us | p99 us | p99.9 us | max us | server CPU us/IO | client CPU us/IO | vs client ceiling |');
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of cells) {
    const r = c.result;
    const name = c.kind === 'reference' ? 'client ceiling (loopback)' : c.mode;
    if (!c.ok || !r) {
      lines.push(`| ${name} | ${c.completion} | ${c.qd} | FAILED | | | | | | | | | | |`);
      continue;
    }
    lines.push(`| ${name}${r.doorbell && c.kind !== 'reference' ? ` (${r.doorbell})` : ''} | ${c.completion} | ${c.qd} | ${fmtInt(r.iops)} | ${fmt(r.mbps)} | ${fmt(r.lat_us.mean, 2)} | ` +
      `${fmt(r.lat_us.p50, 2)} | ${fmt(r.lat_us.p90, 2)} | ${fmt(r.lat_us.p99, 2)} | ${fmt(r.lat_us.p999, 2)} | ${fmt(r.lat_us.max, 1)} | ` +
      `${r.server_cpu ? fmt(r.server_cpu.us_per_io, 2) : '-'} | ${fmt(r.client_cpu.us_per_io, 2)} | ` +
      `${c.fraction_of_client_ceiling !== undefined ? `${fmt(100 * c.fraction_of_client_ceiling, 1)} %` : c.kind === 'reference' ? '100 %' : '-'} |`);
  }
  lines.push('');
  lines.push('Client ceiling = same client and NVMe queue code against an in-process loopback device (no server, no transport).');
  process.stdout.write(lines.join('\n') + '\n');

  const outFile = o.out || join(here, 'results', `serve-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  mkdirSync(dirname(outFile), { recursive: true });
  const cpuList = cpus();
  writeFileSync(outFile, JSON.stringify({
    tool: 'serve-bench', started: started.toISOString(), finished: new Date().toISOString(),
    options: o,
    machine: { cpus: cpuList.length, cpu_model: cpuList[0]?.model, loadavg_at_end: loadavg(), node: process.version },
    table_markdown: lines.join('\n'),
    cells,
  }, null, 2) + '\n');
  log(`wrote ${outFile}`);
  if (cells.some((c) => !c.ok)) process.exitCode = 1;
}

main().catch((e) => {
  log(`error: ${e.stack || e}`);
  process.exit(2);
});
