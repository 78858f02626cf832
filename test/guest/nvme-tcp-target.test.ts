// The NVMe/TCP initiator against the real Linux kernel target (nvmet-tcp in a QEMU guest, testbed/nvmet-target.ts):
// data written through vfiod's initiator must be on the target's backing store, and survive resets and path loss.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { nvmetTargetUnavailableReason, startNvmetTarget, type NvmetTarget } from '../../testbed/nvmet-target.js';
import { NvmeTcpNamespace, type NvmeTcpNamespaceOptions } from '../../src/namespace/nvme-tcp/namespace.js';
import { discoverNvmeTcp } from '../../src/namespace/nvme-tcp/discovery.js';
import { openNamespace, parseNamespaceUri } from '../../src/namespace/uri.js';
import { NamespaceError } from '../../src/namespace/namespace.js';
import { memoryLogger } from '../../src/util/log.js';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { controllerConfig } from '../../src/serve/config.js';
import { startController } from '../../src/serve/controller.js';
import { Guest } from '../helpers/hypervisor.js';
import { startFaultProxy, PduType as ProxyPdu, type FaultProxy } from '../helpers/tcp-fault-proxy.js';
import { sleep, temporaryDir } from '../helpers/common.js';

const reason = nvmetTargetUnavailableReason();
if (reason) console.log(`nvme-tcp target tests skipped: ${reason}`);

const SIZE = 64 * 1024 * 1024;

describe.skipIf(reason)('NVMe/TCP initiator against the Linux nvmet target', () => {
  let target: NvmetTarget;
  const opened: NvmeTcpNamespace[] = [];
  const { logger, lines } = memoryLogger();
  const proxies: FaultProxy[] = [];

  async function proxy(port: number): Promise<FaultProxy> {
    const p = await startFaultProxy({ host: target.host, port });
    proxies.push(p);
    return p;
  }

  beforeAll(async () => {
    target = await startNvmetTarget({ sizeBytes: SIZE, blockSize: 512, ports: 2 });
  }, 240_000);

  afterAll(async () => {
    for (const ns of opened) await ns.close().catch(() => {});
    for (const p of proxies) await p.close().catch(() => {});
    await target?.stop();
  });

  async function open(extra: Partial<NvmeTcpNamespaceOptions> = {}): Promise<NvmeTcpNamespace> {
    const ns = await NvmeTcpNamespace.open({
      addresses: [{ host: target.host, port: target.ports[0]! }],
      subnqn: target.subsystemNqn,
      nsid: 1,
      queues: 2,
      queueDepth: 32,
      hdgst: false,
      ddgst: false,
      katoMs: 5000,
      reconnectDelayMs: 200,
      ctrlLossTmoMs: 30_000,
      timeoutMs: 10_000,
      logger,
      ...extra,
    });
    opened.push(ns);
    return ns;
  }

  async function expectBacking(offset: number, data: Uint8Array): Promise<void> {
    const backing = await target.readBacking(offset, data.length);
    expect(Buffer.from(backing).equals(Buffer.from(data))).toBe(true);
  }

  it('connects, identifies and moves data of several sizes both ways (digests off and on)', async () => {
    for (const digests of [false, true]) {
      const ns = await open({ hdgst: digests, ddgst: digests });
      expect(ns.blockSize).toBe(512);
      expect(ns.blockCount).toBe(SIZE / 512);
      expect(ns.controllerInfo.subnqn).toBe(target.subsystemNqn);
      // 512 B (in-capsule), 16 KiB, 200 KiB (> in-capsule, > typical MAXH2CDATA), 1 MiB.
      let offset = digests ? 8 * 1024 * 1024 : 0;
      for (const size of [512, 16 * 1024, 200 * 1024, 1024 * 1024]) {
        const data = new Uint8Array(randomBytes(size));
        // Split across two "guest" views to exercise scatter lists.
        const half = (size / 2) & ~511;
        await ns.write(offset, [data.subarray(0, half), data.subarray(half)]);
        const back = new Uint8Array(size);
        await ns.read(offset, [back.subarray(0, 512), back.subarray(512)]);
        expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
        await ns.flush();
        await expectBacking(offset, data);
        offset += size + 4096;
      }
      await ns.close();
    }
  });

  it('runs many commands in flight over several queues', async () => {
    const ns = await open({ queues: 4, queueDepth: 16 });
    const base = 16 * 1024 * 1024;
    const blocks = Array.from({ length: 200 }, () => new Uint8Array(randomBytes(4096)));
    await Promise.all(blocks.map((b, i) => ns.write(base + i * 4096, [b])));
    const back = blocks.map(() => new Uint8Array(4096));
    await Promise.all(back.map((b, i) => ns.read(base + i * 4096, [b])));
    back.forEach((b, i) => expect(Buffer.from(b).equals(Buffer.from(blocks[i]!))).toBe(true));
    await ns.close();
  });

  it('write zeroes and deallocate read back as zeroes', async () => {
    const ns = await open();
    const offset = 20 * 1024 * 1024;
    await ns.write(offset, [new Uint8Array(65536).fill(0xab)]);
    await ns.writeZeroes(offset, 8192);
    await ns.deallocate([{ offset: offset + 16384, length: 8192 }]);
    const back = new Uint8Array(65536);
    await ns.read(offset, [back]);
    expect(back.subarray(0, 8192).every((b) => b === 0)).toBe(true);
    expect(back.subarray(8192, 16384).every((b) => b === 0xab)).toBe(true);
    if (ns.supportsDeallocate) expect(back.subarray(16384, 24576).every((b) => b === 0)).toBe(true);
    await ns.close();
  });

  it('discovery lists the subsystem', async () => {
    const entries = await discoverNvmeTcp({ host: target.host, port: target.ports[0]!, logger });
    const nqns = entries.map((e) => e.subnqn);
    expect(nqns).toContain(target.subsystemNqn);
    const entry = entries.find((e) => e.subnqn === target.subsystemNqn)!;
    expect(entry.trtype).toBe(3);
    expect(entry.trsvcid).toMatch(/^44\d\d$/);
  });

  it('opens through the nvme-tcp:// URI scheme', async () => {
    const uri = `nvme-tcp://${target.host}:${target.ports[0]}/${target.subsystemNqn}?nsid=1&queues=2&queue-depth=8&reconnect-delay=0.2&ctrl-loss-tmo=20&timeout=5000`;
    const ns = await openNamespace(parseNamespaceUri(uri), logger);
    opened.push(ns as NvmeTcpNamespace);
    const data = new Uint8Array(randomBytes(4096));
    await ns.write(30 * 1024 * 1024, [data]);
    const back = new Uint8Array(4096);
    await ns.read(30 * 1024 * 1024, [back]);
    expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
    await ns.close();
  });

  it('keeps every acknowledged write across a target restart under write load', async () => {
    const ns = await open({ hdgst: true, ddgst: true });
    const base = 32 * 1024 * 1024;
    const acked = new Map<number, Uint8Array>();
    const errors: unknown[] = [];
    let stop = false;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const offset = base + ((w * 1000 + i) % 4000) * 4096;
        const data = new Uint8Array(randomBytes(4096));
        try {
          await ns.write(offset, [data]);
          acked.set(offset, data);
        } catch (error) {
          errors.push(error);
          return;
        }
      }
    });
    await sleep(500);
    await target.restart({ downMs: 1000 });
    await sleep(1500);
    stop = true;
    await Promise.all(writers);
    expect(errors).toEqual([]);
    expect(acked.size).toBeGreaterThan(10);
    expect(lines.some((l) => l['msg'] === 'NVMe/TCP path down; retrying its commands')).toBe(true);
    await ns.flush();
    for (const [offset, data] of acked) await expectBacking(offset, data);
    await ns.close();
  }, 120_000);

  it('fails over to the second path without guest-visible errors when a port goes away', async () => {
    // Both listeners lead to the same subsystem; a restart drops both, so this checks the multipath plumbing
    // (first path preferred, I/O continues) rather than a one-sided loss, which needs the fault proxy.
    const ns = await open({ addresses: target.ports.map((port) => ({ host: target.host, port })) });
    await sleep(300);
    expect(ns.pathStates().every((p) => p.state === 'live')).toBe(true);
    const data = new Uint8Array(randomBytes(8192));
    await ns.write(40 * 1024 * 1024, [data]);
    await expectBacking(40 * 1024 * 1024, data);
    await ns.close();
  });

  it('reports a path error after ctrl-loss-tmo when the target stays away', async () => {
    const ns = await open({ ctrlLossTmoMs: 300, reconnectDelayMs: 100, timeoutMs: 2000 });
    const restart = target.restart({ downMs: 3000 });
    await sleep(1200);
    const error = await ns.write(0, [new Uint8Array(512)]).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(NamespaceError);
    expect((error as NamespaceError).kind).toBe('unavailable');
    await restart;
    // Heals once the target is back.
    await sleep(1000);
    await ns.write(0, [new Uint8Array(512)]);
    await ns.close();
  }, 60_000);
  it('fails over between two proxied paths under write load without guest-visible errors', async () => {
    const [p1, p2] = [await proxy(target.ports[0]!), await proxy(target.ports[1]!)];
    const ns = await open({
      addresses: [{ host: p1.host, port: p1.port }, { host: p2.host, port: p2.port }],
      reconnectDelayMs: 300,
      ctrlLossTmoMs: 60_000,
    });
    await sleep(300);
    const base = 48 * 1024 * 1024;
    const acked = new Map<number, Uint8Array>();
    const errors: unknown[] = [];
    let stop = false;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const offset = base + ((w * 500 + i) % 2000) * 8192;
        const data = new Uint8Array(randomBytes(8192));
        try {
          await ns.write(offset, [data]);
          acked.set(offset, data);
        } catch (error) {
          errors.push(error);
          return;
        }
      }
    });
    await sleep(400);
    const beforeP2 = p2.stats().bytesToTarget;
    p1.dropAll({ refuseNew: true });
    await sleep(1000);
    stop = true;
    await Promise.all(writers);
    expect(errors).toEqual([]);
    expect(p2.stats().bytesToTarget).toBeGreaterThan(beforeP2 + 100_000);
    expect(ns.pathStates()[0]!.state).not.toBe('live');
    for (const [offset, data] of acked) await expectBacking(offset, data);
    p1.allow();
    await ns.close();
  }, 60_000);

  it('a delayed path times commands out, resets and completes them once the delay is gone', async () => {
    const p = await proxy(target.ports[0]!);
    const ns = await open({ addresses: [{ host: p.host, port: p.port }], timeoutMs: 500, reconnectDelayMs: 100 });
    const data = new Uint8Array(randomBytes(4096));
    p.setDelay(1500);
    const write = ns.write(50 * 1024 * 1024, [data]);
    await sleep(800);
    p.setDelay(0);
    await write;
    expect(lines.some((l) => /timed out/.test(String(l['error'])))).toBe(true);
    await expectBacking(50 * 1024 * 1024, data);
    await ns.close();
  }, 60_000);

  it('a truncated C2HData PDU resets the connection and the read is retried', async () => {
    const p = await proxy(target.ports[0]!);
    const ns = await open({ addresses: [{ host: p.host, port: p.port }], reconnectDelayMs: 100 });
    const offset = 52 * 1024 * 1024;
    const data = new Uint8Array(randomBytes(65536));
    await ns.write(offset, [data]);
    const before = p.stats().connections;
    p.truncateNextPdu(ProxyPdu.C2HData, 1000);
    const back = new Uint8Array(65536);
    await ns.read(offset, [back]);
    expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
    expect(p.stats().connections).toBeGreaterThan(before);
    await ns.close();
  }, 60_000);

  it('a corrupted C2HData payload fails the data digest, resets and retries with correct data', async () => {
    const p = await proxy(target.ports[0]!);
    const ns = await open({ addresses: [{ host: p.host, port: p.port }], hdgst: true, ddgst: true, reconnectDelayMs: 100 });
    const offset = 54 * 1024 * 1024;
    const data = new Uint8Array(randomBytes(16384));
    await ns.write(offset, [data]);
    const before = p.stats().connections;
    p.corruptNextPdu(ProxyPdu.C2HData, 28 + 10);
    const back = new Uint8Array(16384);
    await ns.read(offset, [back]);
    expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
    expect(p.stats().faultsApplied).toBeGreaterThanOrEqual(1);
    expect(p.stats().connections).toBeGreaterThan(before);
    expect(lines.some((l) => /data digest mismatch/.test(String(l['error'])))).toBe(true);
    await ns.close();
  }, 60_000);

  it('a corrupted H2CData payload is rejected by the target and the write is retried', async () => {
    const p = await proxy(target.ports[0]!);
    const ns = await open({ addresses: [{ host: p.host, port: p.port }], hdgst: true, ddgst: true, reconnectDelayMs: 100, timeoutMs: 3000 });
    const offset = 56 * 1024 * 1024;
    const data = new Uint8Array(randomBytes(256 * 1024));
    const before = p.stats().connections;
    p.corruptNextPdu(ProxyPdu.H2CData, 28 + 10, 'to-target');
    await ns.write(offset, [data]);
    await expectBacking(offset, data);
    expect(p.stats().faultsApplied).toBeGreaterThanOrEqual(1);
    // nvmet answers a bad data digest by dropping the connection; the write went through again on a new one.
    expect(p.stats().connections).toBeGreaterThan(before);
    await ns.close();
  }, 60_000);

  it('end to end: a guest writes through vfiod serve (vfio-user) into a remote namespace, and the data is on the target', async () => {
    const dir = temporaryDir('vfiod-remote-e2e-');
    const uri = `nvme-tcp://${target.host}:${target.ports[0]}/${target.subsystemNqn}?nsid=1&queues=2&queue-depth=32&ctrl-loss-tmo=30`;
    const controller = await startController(
      controllerConfig({ socketPath: path.join(dir, 'remote.sock'), namespaces: [uri], identityPath: path.join(dir, 'id.json') }),
      logger,
    );
    const guest = await Guest.attach(controller.config.socketPath, { flavour: 'cloud-hypervisor' });
    try {
      await guest.driver.enable();
      await guest.driver.createIoQueuePair(1, 64, 1);
      expect(await guest.driver.blockSize(1)).toBe(512);
      const lba = 40 * 1024 * 2; // 40 MiB into the namespace
      const data = new Uint8Array(randomBytes(128 * 1024));
      const write = await guest.driver.write(1, lba, data);
      expect(write.status).toBe(0);
      expect((await guest.driver.submit(1, { opcode: 0x00, nsid: 1 })).status).toBe(0); // Flush → remote Flush
      await expectBacking(lba * 512, data);
      const read = await guest.driver.read(1, lba, data.length / 512);
      expect(Buffer.from(read.data).equals(Buffer.from(data))).toBe(true);
      await guest.driver.shutdown();
    } finally {
      guest.close();
      await controller.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
