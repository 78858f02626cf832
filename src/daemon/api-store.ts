/**
 * What the control API itself must remember across daemon restarts, in <state dir>/api.db (SQLite through
 * better-sqlite3, WAL, synchronous=FULL like the claims database): request ids (AIP-155) with the fingerprint of
 * their request and the first answer, long-running operations, and the event log (bounded: the newest `retention`
 * events). Kept apart from claims.db: claims are the host's devices (`vfiod devices` opens them without a daemon),
 * these are the API's bookkeeping.
 */
import type Database from 'better-sqlite3';
import { openDurableDatabase } from '../util/sqlite.js';

/** Most request ids and most finished operations kept; the oldest go first. */
export const KEPT_REQUEST_IDS = 10_000;
export const KEPT_OPERATIONS = 10_000;

export interface StoredRequest {
  fingerprint: string;
  /** The first answer (a JSON value), or the operation name for RPCs that answer with an operation. */
  result: unknown;
}

export interface StoredEvent {
  sequence: number;
  timeMs: number;
  record: unknown;
}

export class ApiStore {
  private readonly db: Database.Database;

  constructor(readonly file: string) {
    this.db = openDurableDatabase(file, 0o700);
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS request_ids (
        rpc TEXT NOT NULL,
        request_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        result TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (rpc, request_id)
      );
      CREATE TABLE IF NOT EXISTS operations (
        name TEXT PRIMARY KEY,
        vm_id TEXT NOT NULL,
        done INTEGER NOT NULL,
        record TEXT NOT NULL,
        created_ms INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS events (
        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ms INTEGER NOT NULL,
        record TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS request_ids_by_age ON request_ids (created_ms);
      CREATE INDEX IF NOT EXISTS operations_by_age ON operations (done, created_ms);
      CREATE TABLE IF NOT EXISTS event_pruning (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        through_sequence INTEGER NOT NULL,
        through_time_ms INTEGER NOT NULL
      );
    `);
  }

  close(): void {
    this.db.close();
  }

  // --- request ids ---

  getRequest(rpc: string, requestId: string): StoredRequest | undefined {
    const row = this.db.prepare('SELECT fingerprint, result FROM request_ids WHERE rpc = ? AND request_id = ?').get(rpc, requestId) as { fingerprint: string; result: string } | undefined;
    return row && { fingerprint: row.fingerprint, result: JSON.parse(row.result) as unknown };
  }

  putRequest(rpc: string, requestId: string, fingerprint: string, result: unknown): void {
    this.db.transaction(() => {
      this.db.prepare('INSERT INTO request_ids (rpc, request_id, fingerprint, result, created_ms) VALUES (?, ?, ?, ?, ?)').run(rpc, requestId, fingerprint, JSON.stringify(result), Date.now());
      this.db.prepare('DELETE FROM request_ids WHERE rowid IN (SELECT rowid FROM request_ids ORDER BY created_ms DESC, rowid DESC LIMIT -1 OFFSET ?)').run(KEPT_REQUEST_IDS);
    }).immediate();
  }

  // --- operations ---

  putOperation(name: string, vmId: string, done: boolean, createdMs: number, record: unknown): void {
    this.db.prepare('INSERT OR REPLACE INTO operations (name, vm_id, done, record, created_ms) VALUES (?, ?, ?, ?, ?)').run(name, vmId, done ? 1 : 0, JSON.stringify(record), createdMs);
    if (done) {
      this.db.prepare('DELETE FROM operations WHERE name IN (SELECT name FROM operations WHERE done = 1 ORDER BY created_ms DESC, rowid DESC LIMIT -1 OFFSET ?)').run(KEPT_OPERATIONS);
    }
  }

  getOperation(name: string): unknown {
    const row = this.db.prepare('SELECT record FROM operations WHERE name = ?').get(name) as { record: string } | undefined;
    return row && (JSON.parse(row.record) as unknown);
  }

  /** Newest first. */
  listOperations(filter: { vmId?: string; runningOnly?: boolean; limit: number }): unknown[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.vmId !== undefined) {
      where.push('vm_id = ?');
      args.push(filter.vmId);
    }
    if (filter.runningOnly) where.push('done = 0');
    const sql = `SELECT record FROM operations ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_ms DESC, rowid DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...args, filter.limit) as Array<{ record: string }>).map((r) => JSON.parse(r.record) as unknown);
  }

  // --- events ---

  /** Appends an event and drops the oldest beyond `retention`; returns its sequence number. */
  appendEvent(timeMs: number, record: unknown, retention: number): number {
    return this.db.transaction(() => {
      const sequence = Number(this.db.prepare('INSERT INTO events (time_ms, record) VALUES (?, ?)').run(timeMs, JSON.stringify(record)).lastInsertRowid);
      const oldestKept = sequence - retention + 1;
      const dropped = this.db.prepare('SELECT sequence, time_ms FROM events WHERE sequence < ? ORDER BY sequence DESC LIMIT 1').get(oldestKept) as { sequence: number; time_ms: number } | undefined;
      if (dropped) {
        this.db.prepare('DELETE FROM events WHERE sequence < ?').run(oldestKept);
        this.db
          .prepare('INSERT INTO event_pruning (id, through_sequence, through_time_ms) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET through_sequence = excluded.through_sequence, through_time_ms = excluded.through_time_ms')
          .run(dropped.sequence, dropped.time_ms);
      }
      return sequence;
    }).immediate();
  }

  /** The last event dropped by retention (sequence 0 when none ever was). */
  eventsPrunedThrough(): { sequence: number; timeMs: number } {
    const row = this.db.prepare('SELECT through_sequence, through_time_ms FROM event_pruning WHERE id = 1').get() as { through_sequence: number; through_time_ms: number } | undefined;
    return row ? { sequence: row.through_sequence, timeMs: row.through_time_ms } : { sequence: 0, timeMs: 0 };
  }

  /** The sequence number of the newest event ever appended (0 before the first). */
  lastEventSequence(): number {
    const row = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'events'").get() as { seq: number } | undefined;
    return row?.seq ?? 0;
  }

  eventsAfter(sequence: number, limit: number): StoredEvent[] {
    const rows = this.db.prepare('SELECT sequence, time_ms, record FROM events WHERE sequence > ? ORDER BY sequence LIMIT ?').all(sequence, limit) as Array<{ sequence: number; time_ms: number; record: string }>;
    return rows.map((r) => ({ sequence: r.sequence, timeMs: r.time_ms, record: JSON.parse(r.record) as unknown }));
  }

  /** The sequence just before the first kept event at or after `timeMs`, or before the last `count` events. */
  sequenceBeforeTime(timeMs: number): number {
    const row = this.db.prepare('SELECT MIN(sequence) AS first FROM events WHERE time_ms >= ?').get(timeMs) as { first: number | null };
    return row.first === null ? this.lastEventSequence() : row.first - 1;
  }

  sequenceBeforeLast(count: number): number {
    return Math.max(0, this.lastEventSequence() - count);
  }
}
