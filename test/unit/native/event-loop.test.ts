/**
 * native.eventLoopHasWork and native.createLoopTurn: what a worker polling doorbells asks before it gives the event
 * loop a turn, and how it takes one. Each case runs in a Worker of its own, so the answers are about a loop this test
 * controls (vitest's own messages would make the test thread's loop busy at unpredictable times). The checks run from
 * a LoopTurn's callback, as the worker's do: inside a timer or setImmediate callback Node's own handles skew them.
 */
import { describe, it, expect } from 'vitest';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { spawnSync } from 'node:child_process';

const ADDON = fileURLToPath(new URL('../../../build/Release/vfiod_native.node', import.meta.url));

/**
 * Runs `body` in a fresh Worker after its loop has settled (a 20 ms timer, with a long timer keeping the loop alive).
 * `body` calls `report(name, value)` for each answer and `done()` at the end, and `later(ms, fn)` to run `fn` from a
 * LoopTurn `ms` from now; `shared` is an Int32Array over a SharedArrayBuffer the test can use to hand-shake with it.
 */
async function inWorker(
  body: string,
  onMessage?: (worker: Worker, message: unknown, shared: Int32Array) => void,
): Promise<Record<string, unknown>> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const n = require(workerData.addon);
    const net = require('node:net');
    const shared = new Int32Array(workerData.shared);
    const answers = {};
    const report = (name, value) => { answers[name] = value; };
    const done = () => { parentPort.postMessage({ answers }); process.exit(0); };
    const spinFor = (ms) => { const end = Date.now() + ms; while (Date.now() < end); };
    // One LoopTurn for all (closing a handle makes the loop busy until the close callback has run).
    let next;
    const turn = n.createLoopTurn(() => next());
    const later = (ms, fn) => setTimeout(() => { next = fn; turn.request(); }, ms);
    setTimeout(() => {}, 60_000);
    later(20, () => { ${body} });
  `;
  const shared = new SharedArrayBuffer(8);
  const worker = new Worker(code, { eval: true, workerData: { addon: ADDON, shared } });
  return await new Promise((resolve, reject) => {
    worker.on('error', reject);
    worker.on('message', (message: { answers?: Record<string, unknown> }) => {
      if (message.answers) resolve(message.answers);
      else onMessage?.(worker, message, new Int32Array(shared));
    });
  });
}

describe('native.eventLoopHasWork', () => {
  it('is false for a settled loop and true for a due timer or a queued setImmediate', async () => {
    const answers = await inWorker(`
      report('settled', n.eventLoopHasWork());
      setTimeout(() => {}, 5);
      spinFor(15);
      report('timerDue', n.eventLoopHasWork());
      later(20, () => {
        report('settledAgain', n.eventLoopHasWork());
        setImmediate(() => {});
        report('immediate', n.eventLoopHasWork());
        done();
      });
    `);
    expect(answers).toEqual({ settled: false, timerDue: true, settledAgain: false, immediate: true });
  });

  it('is true for a watcher just started and once a watched socket has data, and false again after the loop read it', async () => {
    const answers = await inWorker(`
      // A unix socket: the data is in the server's socket when write() returns (loopback TCP may deliver it later,
      // from a softirq).
      const socketPath = require('node:path').join(require('node:os').tmpdir(), 'vfiod-loop-' + process.pid + '-' + Date.now() + '.sock');
      const server = net.createServer((conn) => conn.on('data', () => {})).listen(socketPath, () => {
        const client = net.connect(socketPath, () => {
          later(20, () => {
            report('connected', n.eventLoopHasWork());
            client.write('x');
            spinFor(20);
            report('dataWaiting', n.eventLoopHasWork());
            later(20, () => {
              report('dataRead', n.eventLoopHasWork());
              require('node:fs').rmSync(socketPath, { force: true });
              done();
            });
          });
        });
      });
      // The listening socket is a watcher libuv adds to epoll only at its next turn: that counts as work too.
      report('listenStarted', n.eventLoopHasWork());
    `);
    expect(answers).toEqual({ listenStarted: true, connected: false, dataWaiting: true, dataRead: false });
  });

  it('is true while a message from another thread waits, and the thread is still running JavaScript', async () => {
    // The worker asks the test to post and blocks until it has: the message is in its port, not yet delivered.
    const answers = await inWorker(
      `
      parentPort.on('message', () => {});
      later(20, () => {
        report('beforeMessage', n.eventLoopHasWork());
        parentPort.postMessage('post now');
        Atomics.wait(shared, 0, 0, 10_000);
        report('messageWaiting', n.eventLoopHasWork());
        done();
      });
    `,
      (worker, message, shared) => {
        if (message !== 'post now') return;
        worker.postMessage('hello');
        Atomics.store(shared, 0, 1);
        Atomics.notify(shared, 0);
      },
    );
    expect(answers).toEqual({ beforeMessage: false, messageWaiting: true });
  });
});

describe('native.createLoopTurn', () => {
  it('calls back once per request, in a later turn, and asked from there sees a loop that setImmediate would not', async () => {
    const answers = await inWorker(`
      let calls = 0;
      const counted = n.createLoopTurn(() => {
        calls++;
        if (calls === 1) {
          report('fromTurn', n.eventLoopHasWork());
          counted.request(); // from inside its own callback: one more call, in the next turn
        }
      });
      counted.request();
      counted.request();
      report('callsBeforeTurn', calls);
      setImmediate(() => report('fromImmediate', n.eventLoopHasWork()));
      later(30, () => {
        report('calls', calls);
        // A closed turn does not come, and does not keep the loop alive: the worker ends once the long timer goes.
        const closed = n.createLoopTurn(() => report('closedCalled', true));
        closed.request();
        closed.close();
        closed.close();
        report('requestAfterClose', (() => { try { closed.request(); return 'no error'; } catch (error) { return error.code; } })());
        later(20, done);
      });
    `);
    expect(answers).toEqual({ callsBeforeTurn: 0, fromTurn: false, fromImmediate: true, calls: 2, requestAfterClose: 'ERR_INVALID_STATE' });
  });

  it('lets a Worker with a requested turn be terminated', async () => {
    const worker = new Worker(
      `const n = require(${JSON.stringify(ADDON)}); const turn = n.createLoopTurn(() => turn.request()); turn.request(); require('node:worker_threads').parentPort.postMessage('spinning');`,
      { eval: true },
    );
    await new Promise((resolve) => worker.once('message', resolve));
    expect(await worker.terminate()).toBe(1);
  });

  it('lets a Worker be terminated while its callback polls and requests the next turn, as the polled worker does', () => {
    // terminate() wakes the worker's loop (eventLoopHasWork says yes) before V8 stops its JavaScript, so the callback
    // goes on to request(): that call, on an environment that can no longer run JavaScript, must not abort the
    // process. Run in a child process, which an abort ends without taking the test runner with it.
    const script = `
      const { Worker } = require('node:worker_threads');
      const code = \`
        const n = require(\${JSON.stringify(process.argv[1])});
        const { parentPort } = require('node:worker_threads');
        let first = true;
        const turn = n.createLoopTurn(() => {
          if (first) { first = false; parentPort.postMessage('polling'); }
          const end = performance.now() + 5;
          while (performance.now() < end && !n.eventLoopHasWork());
          turn.request();
        });
        turn.request();
      \`;
      (async () => {
        for (let i = 0; i < 40; i++) {
          const worker = new Worker(code, { eval: true });
          await new Promise((resolve) => worker.once('message', resolve));
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 6));
          if ((await worker.terminate()) !== 1) process.exit(3);
        }
      })();
    `;
    const child = spawnSync(process.execPath, ['-e', script, ADDON], { encoding: 'utf8', timeout: 120_000 });
    expect({ status: child.status, signal: child.signal, fatal: /FATAL ERROR.*/.exec(child.stderr)?.[0] }).toEqual({
      status: 0,
      signal: null,
      fatal: undefined,
    });
  });
});
