/**
 * Claims: what vfiod changed on which device for which VM, kept in SQLite (better-sqlite3) with WAL and
 * synchronous=FULL so a claim written before a sysfs change survives a crash or power loss. A claim exists for
 * every device vfiod moved to vfio-pci (it is written before the first change and removed after the last undo).
 */
import type Database from 'better-sqlite3';
import { openDurableDatabase } from '../util/sqlite.js';

export type ClaimState = 'preparing' | 'prepared' | 'releasing' | 'failed';
/** How the device was prepared: bound to vfio-pci by us, or already on a (vendor) VFIO driver and left alone. */
export type ClaimMode = 'vfio-pci' | 'as-is';

export interface Claim {
  bdf: string;
  owner: string;
  /** The device the operator asked for; companions (GPU audio, whole group) point at it. */
  primary: string;
  mode: ClaimMode;
  state: ClaimState;
  originalDriver: string | null;
  originalOverride: string | null;
  iommuGroup: number | null;
  /** PF whose sriov_drivers_autoprobe this prepare turned off (restored when its last claimed VF is released). */
  autoprobePf: string | null;
  /** What a forced prepare overrode, and other notes. */
  note: string | null;
  /** NVIDIA vGPU VF: nvidia/current_vgpu_type before vfiod first changed it (restored on release); null: unchanged. */
  originalVgpuType: number | null;
  createdAt: string;
  updatedAt: string;
}

/** Where `vfiod devices` keeps its claims unless told otherwise (the daemon keeps them in <state dir>/claims.db). */
export const DEFAULT_CLAIMS_DB = '/var/lib/vfiod/claims.db';

export class ClaimConflictError extends Error {}

interface Row {
  bdf: string;
  owner: string;
  primary_bdf: string;
  mode: string;
  state: string;
  original_driver: string | null;
  original_override: string | null;
  iommu_group: number | null;
  autoprobe_pf: string | null;
  note: string | null;
  original_vgpu_type: number | null;
  created_at: string;
  updated_at: string;
}

const fromRow = (r: Row): Claim => ({
  bdf: r.bdf,
  owner: r.owner,
  primary: r.primary_bdf,
  mode: r.mode as ClaimMode,
  state: r.state as ClaimState,
  originalDriver: r.original_driver,
  originalOverride: r.original_override,
  iommuGroup: r.iommu_group,
  autoprobePf: r.autoprobe_pf,
  note: r.note,
  originalVgpuType: r.original_vgpu_type,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export type NewClaim = Omit<Claim, 'createdAt' | 'updatedAt' | 'originalVgpuType'> & { originalVgpuType?: number | null };

export class ClaimStore {
  private readonly db: Database.Database;

  constructor(readonly file: string) {
    this.db = openDurableDatabase(file);
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS claims (
        bdf TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        primary_bdf TEXT NOT NULL,
        mode TEXT NOT NULL,
        state TEXT NOT NULL,
        original_driver TEXT,
        original_override TEXT,
        iommu_group INTEGER,
        autoprobe_pf TEXT,
        note TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        bdf TEXT NOT NULL,
        owner TEXT,
        event TEXT NOT NULL,
        detail TEXT
      );
    `);
    this.migrate();
  }

  /** Schema changes after the first version, applied in order and counted in PRAGMA user_version. */
  private migrate(): void {
    const migrations: string[] = [
      // 1: attachments (src/attach): which device is attached to which VM through which VMM, as a JSON record.
      `CREATE TABLE IF NOT EXISTS attachments (
        vm_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        record TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (vm_id, device_id)
      )`,
      // 2: the vGPU profile an NVIDIA VF had before vfiod changed it.
      'ALTER TABLE claims ADD COLUMN original_vgpu_type INTEGER',
    ];
    const version = this.db.pragma('user_version', { simple: true }) as number;
    for (let v = version; v < migrations.length; v++) {
      this.db.transaction(() => {
        this.db.exec(migrations[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      }).immediate();
    }
  }

  /** Stores (inserts or replaces) the attachment record of `deviceId` on `vmId`. */
  putAttachment(vmId: string, deviceId: string, record: object): void {
    this.db
      .prepare('INSERT OR REPLACE INTO attachments (vm_id, device_id, record, updated_at) VALUES (?, ?, ?, ?)')
      .run(vmId, deviceId, JSON.stringify(record), new Date().toISOString());
  }

  removeAttachment(vmId: string, deviceId: string): void {
    this.db.prepare('DELETE FROM attachments WHERE vm_id = ? AND device_id = ?').run(vmId, deviceId);
  }

  /**
   * The VMs with an attachment record naming `bdf` as one of its functions (the record format is src/attach's:
   * `functions[].hostBdf`); read here so src/devices need not know src/attach.
   */
  vmsAttaching(bdf: string): string[] {
    return this.listAttachments()
      .filter(({ record }) => {
        const functions = (record as { functions?: unknown }).functions;
        return Array.isArray(functions) && functions.some((f) => (f as { hostBdf?: unknown } | null)?.hostBdf === bdf);
      })
      .map((a) => a.vmId);
  }

  listAttachments(): Array<{ vmId: string; deviceId: string; record: unknown }> {
    const rows = this.db.prepare('SELECT vm_id, device_id, record FROM attachments ORDER BY vm_id, device_id').all() as Array<{ vm_id: string; device_id: string; record: string }>;
    return rows.map((r) => ({ vmId: r.vm_id, deviceId: r.device_id, record: JSON.parse(r.record) as unknown }));
  }

  close(): void {
    this.db.close();
  }

  get(bdf: string): Claim | undefined {
    const row = this.db.prepare('SELECT * FROM claims WHERE bdf = ?').get(bdf) as Row | undefined;
    return row && fromRow(row);
  }

  list(): Claim[] {
    return (this.db.prepare('SELECT * FROM claims ORDER BY bdf').all() as Row[]).map(fromRow);
  }

  /** Inserts all claims atomically; throws ClaimConflictError when any device is already claimed. */
  insert(claims: NewClaim[]): void {
    const now = new Date().toISOString();
    const insert = this.db.prepare(`INSERT INTO claims
      (bdf, owner, primary_bdf, mode, state, original_driver, original_override, iommu_group, autoprobe_pf, note, original_vgpu_type, created_at, updated_at)
      VALUES (@bdf, @owner, @primary, @mode, @state, @originalDriver, @originalOverride, @iommuGroup, @autoprobePf, @note, @originalVgpuType, @now, @now)`);
    const tx = this.db.transaction((items: NewClaim[]) => {
      for (const c of items) {
        const existing = this.get(c.bdf);
        if (existing) throw new ClaimConflictError(`${c.bdf} is already claimed by ${existing.owner} (${existing.state})`);
        insert.run({ ...c, originalVgpuType: c.originalVgpuType ?? null, now });
        this.logEvent(c.bdf, c.owner, 'claim', c.state);
      }
    });
    tx.immediate(claims);
  }

  update(bdf: string, changes: Partial<Pick<Claim, 'state' | 'autoprobePf' | 'note' | 'originalVgpuType'>>): void {
    const current = this.get(bdf);
    if (!current) return;
    const next = { ...current, ...changes };
    this.db
      .prepare('UPDATE claims SET state = ?, autoprobe_pf = ?, note = ?, original_vgpu_type = ?, updated_at = ? WHERE bdf = ?')
      .run(next.state, next.autoprobePf, next.note, next.originalVgpuType, new Date().toISOString(), bdf);
    if (changes.state && changes.state !== current.state) this.logEvent(bdf, current.owner, 'state', changes.state);
  }

  remove(bdf: string, why: string): void {
    const current = this.get(bdf);
    this.db.prepare('DELETE FROM claims WHERE bdf = ?').run(bdf);
    if (current) this.logEvent(bdf, current.owner, 'unclaim', why);
  }

  events(bdf?: string): Array<{ at: string; bdf: string; owner: string | null; event: string; detail: string | null }> {
    return (bdf
      ? this.db.prepare('SELECT at, bdf, owner, event, detail FROM events WHERE bdf = ? ORDER BY id').all(bdf)
      : this.db.prepare('SELECT at, bdf, owner, event, detail FROM events ORDER BY id').all()) as never;
  }

  private logEvent(bdf: string, owner: string | null, event: string, detail: string | null): void {
    this.db.prepare('INSERT INTO events (at, bdf, owner, event, detail) VALUES (?, ?, ?, ?, ?)').run(new Date().toISOString(), bdf, owner, event, detail);
  }
}
