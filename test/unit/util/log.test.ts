/**
 * The logger's two line formats (src/util/log.ts): JSON objects with the same fields in the same order as the text
 * lines, and text lines an operator reads on a terminal that still split unambiguously into key=value.
 */
import { describe, expect, it } from 'vitest';
import { Logger, type LogFormat } from '../../../src/util/log.js';

function capture(format: LogFormat): { logger: Logger; written: string[] } {
  const written: string[] = [];
  return { logger: new Logger({ component: 'controllers' }, { write: (line) => written.push(line) }, format), written };
}

describe('Logger', () => {
  it('json: one object per line, time, level and msg first, then the bound fields and the call\'s own', () => {
    const { logger, written } = capture('json');
    logger.child({ controller: 'vm1' }).warn('controller failed to start', { socket: '/run/vfiod/vm1.sock', error: new Error('no such file'), lba: 2n ** 40n });
    expect(written).toHaveLength(1);
    expect(written[0]!.endsWith('\n')).toBe(true);
    const record = JSON.parse(written[0]!) as Record<string, unknown>;
    expect(Object.keys(record)).toEqual(['time', 'level', 'msg', 'component', 'controller', 'socket', 'error', 'lba']);
    expect(record).toMatchObject({ level: 'warn', msg: 'controller failed to start', component: 'controllers', controller: 'vm1', socket: '/run/vfiod/vm1.sock', error: { name: 'Error', message: 'no such file' }, lba: '0x10000000000' });
    expect(new Date(String(record['time'])).toISOString()).toBe(record['time']);
  });

  it('text: time, level, msg, then key=value; values that are not a plain word are JSON', () => {
    const { logger, written } = capture('text');
    logger.child({ controller: 'vm1' }).info('controller created', { socket: '/run/vfiod/vm1.sock', namespaces: ['memory:1G', 'file:/a b.img'], detail: 'two words', empty: '', missing: undefined, count: 3 });
    const line = written[0]!;
    expect(line).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  controller created component=controllers controller=vm1 socket=\/run\/vfiod\/vm1\.sock namespaces=\["memory:1G","file:\/a b\.img"\] detail="two words" empty="" count=3\n$/,
    );
    const { logger: errors, written: errorLines } = capture('text');
    errors.error('request failed', { error: new Error('boom') });
    expect(errorLines[0]).toMatch(/ ERROR request failed component=controllers error=\{"name":"Error","message":"boom"\}\n$/);
  });

  it('a child names each fact once: a field it binds again takes the new value, not a second key', () => {
    const { logger, written } = capture('json');
    logger.child({ socket: '/a.sock' }).child({ component: 'controller', socket: '/a.sock' }).info('listening');
    expect(written[0]!.match(/"socket"/g)).toHaveLength(1);
    expect(written[0]!.match(/"component"/g)).toHaveLength(1);
    expect(JSON.parse(written[0]!)).toMatchObject({ component: 'controller' });
  });
});
