/**
 * The daemon's SQLite databases (claims.db, api.db) open the same way: WAL, and synchronous=FULL so that a row
 * written before an action survives a crash or power loss; a busy database is waited for up to 5 s.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { makeDirectory } from './make-directory.js';

export function openDurableDatabase(file: string, dirMode?: number): Database.Database {
  makeDirectory(path.dirname(file), dirMode);
  const db = new Database(file, { timeout: 5000 });
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  return db;
}
