/**
 * Wire and register fuzz while a bystander controller moves data.
 */
import { describe, expect, it } from 'vitest';
import { HEADER_SIZE, newMessage } from '../../src/vfio-user/protocol.js';
import {
  CONFIG,
  MSIX_BAR,
  CONFIG_ID,
  startNvme,
  attach,
  bystander,
  expectBystanderServes,
} from '../helpers/hostile-harness.js';

describe('wire and register fuzz with a bystander moving data', () => {
  it('random messages and random BAR/config writes: only precise errors, nothing unexpected, the bystander unharmed', async () => {
    const { controller, lines } = await startNvme();
    const guest = await attach(controller.config.socketPath, 'cloud-hypervisor');
    await guest.driver.enable();
    let state = 12345;
    const random = (): number => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const bystanderWork = (async () => {
      for (let index = 0; index < 10; index++) await expectBystanderServes();
    })();
    const client = guest.client;
    for (let index = 0; index < 400; index++) {
      const region = [0, 0, MSIX_BAR, CONFIG][Math.floor(random() * 4)]!;
      const size = region === 0 ? 0x4000 : region === MSIX_BAR ? 0x2000 : 4096;
      const count = [1, 2, 4, 8, 3][Math.floor(random() * 5)]!;
      let offset = Math.floor(random() * size);
      if (random() < 0.6) offset &= ~3;
      if (region === CONFIG && offset < 8) continue; // keep memory space / bus mastering on
      const data = new Uint8Array(count).map(() => Math.floor(random() * 256));
      try {
        await client.regionWrite(region, offset, data);
      } catch {
        // cloud-hypervisor flavour: errors are not thrown, replies stay in sync
      }
      if (index % 20 === 0) {
        const garbage = newMessage(0x8000 + index, Math.floor(random() * 24), Math.floor(random() * 48));
        garbage.bytes.subarray(HEADER_SIZE).forEach((_, at, body) => (body[at] = Math.floor(random() * 256)));
        await client.sendRaw(garbage.bytes);
        await client.readReply();
      }
    }
    await bystanderWork;
    expect(lines.filter((line) => line['level'] === 'error' && !String(line['msg']).startsWith('controller fatal: cannot enable'))).toEqual([]);
    expect(lines.filter((line) => String(line['msg']).includes('unexpected'))).toEqual([]);
    expect(controller.server.clientConnected).toBe(true);
    expect([...(await client.regionRead(CONFIG, 0, 4))]).toEqual(CONFIG_ID);
    expect(client.unreadBytes).toBe(0);
  });
});

// =================================================================================================================
// `vfiod serve`'s topology: every controller in a worker thread of one process (src/serve/supervisor.ts), from the
// compiled dist/ that `npm test` builds first. Attacks that a single thread cannot survive are made here.
