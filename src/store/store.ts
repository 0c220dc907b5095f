// SQLite persistence of isolad's state (better-sqlite3, WAL). The daemon runs every Admin API
// call in one transaction, so a refused or interrupted call leaves nothing behind.

import Database from 'better-sqlite3';
import type { PropValue, QubeClass, QubeRecord } from '../core/qube';
import { MIGRATIONS } from './migrations';

export interface VolumeRow {
  name: string;
  pool: string;
  size: number;
  revisionsToKeep: number;
}

export interface RuntimeRow {
  qid: number;
  state: 'starting' | 'running' | 'stopping';
  runtimeId: string;
  backend: string;
  startedAt: number;
  rootRevision: string;
  /** Frozen by qvm-pause (cgroup freezer, or the VM's CPUs stopped). */
  paused?: boolean;
  /** How an hvm qube's CPUs run: 'kvm' or 'tcg' ('' for a sandbox). */
  accel?: string;
}

const RUNTIME_COLUMNS = 'qid, state, runtime_id AS runtimeId, backend, started_at AS startedAt, root_revision AS rootRevision, paused, accel';
type StoredRuntime = Omit<RuntimeRow, 'paused'> & { paused: number };
const runtimeRow = ({ paused, ...r }: StoredRuntime): RuntimeRow => ({ ...r, paused: paused !== 0 });

export interface DecisionRow {
  at: number;
  source: string;
  target: string;
  service: string;
  argument: string;
  result: string;
  /** `FILE:LINE` of the deciding rule, or '' when none decided. */
  rule: string;
  reason: string;
}

/** The decision log keeps this many rows; older ones are dropped. */
const MAX_DECISIONS = 100_000;

export class Store {
  private decisionsSincePrune = 0;
  private readonly statements = new Map<string, Database.Statement>();

  readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    for (let i = version; i < MIGRATIONS.length; i++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[i]);
        this.db.pragma(`user_version = ${i + 1}`);
      })();
    }
  }

  close(): void {
    this.db.close();
  }

  /** Runs fn in one transaction: all of it is saved, or none. */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  // --- qubes --------------------------------------------------------------

  loadAll(): QubeRecord[] {
    const qubes = this.sql('SELECT qid, uuid, name, klass FROM qubes ORDER BY qid').all() as {
      qid: number; uuid: string; name: string; klass: QubeClass;
    }[];
    const props = this.sql('SELECT qid, name, value FROM qube_props').all() as { qid: number; name: string; value: string }[];
    const feats = this.sql('SELECT qid, name, value FROM features').all() as { qid: number; name: string; value: string }[];
    const tags = this.sql('SELECT qid, tag FROM tags ORDER BY tag').all() as { qid: number; tag: string }[];
    const byQid = new Map<number, QubeRecord>();
    for (const q of qubes) byQid.set(q.qid, { ...q, props: {}, features: {}, tags: [] });
    for (const p of props) byQid.get(p.qid)!.props[p.name] = JSON.parse(p.value) as PropValue;
    for (const f of feats) byQid.get(f.qid)!.features[f.name] = f.value;
    for (const t of tags) byQid.get(t.qid)!.tags.push(t.tag);
    return [...byQid.values()];
  }

  insertQube(q: QubeRecord): void {
    this.sql('INSERT INTO qubes (qid, uuid, name, klass) VALUES (?, ?, ?, ?)').run(q.qid, q.uuid, q.name, q.klass);
    for (const [k, v] of Object.entries(q.props)) this.setProp(q.qid, k, v);
    for (const [k, v] of Object.entries(q.features)) this.setFeature(q.qid, k, v);
    for (const t of q.tags) this.addTag(q.qid, t);
  }

  deleteQube(qid: number): void {
    this.sql('DELETE FROM qubes WHERE qid = ?').run(qid);
  }

  nextQid(): number {
    const row = this.sql('SELECT MAX(qid) AS m FROM qubes').get() as { m: number | null };
    return (row.m ?? 0) + 1;
  }

  setProp(qid: number, name: string, value: PropValue): void {
    this.sql('INSERT INTO qube_props (qid, name, value) VALUES (?, ?, ?) ON CONFLICT(qid, name) DO UPDATE SET value = excluded.value')
      .run(qid, name, JSON.stringify(value));
  }

  resetProp(qid: number, name: string): void {
    this.sql('DELETE FROM qube_props WHERE qid = ? AND name = ?').run(qid, name);
  }

  setFeature(qid: number, name: string, value: string): void {
    this.sql('INSERT INTO features (qid, name, value) VALUES (?, ?, ?) ON CONFLICT(qid, name) DO UPDATE SET value = excluded.value')
      .run(qid, name, value);
  }

  removeFeature(qid: number, name: string): boolean {
    return this.sql('DELETE FROM features WHERE qid = ? AND name = ?').run(qid, name).changes > 0;
  }

  addTag(qid: number, tag: string): void {
    this.sql('INSERT OR IGNORE INTO tags (qid, tag) VALUES (?, ?)').run(qid, tag);
  }

  removeTag(qid: number, tag: string): boolean {
    return this.sql('DELETE FROM tags WHERE qid = ? AND tag = ?').run(qid, tag).changes > 0;
  }

  // --- firewall ------------------------------------------------------------

  /** The qube's stored firewall lines (Admin API form), or undefined when it has Qubes' default. */
  firewall(qid: number): string[] | undefined {
    const row = this.sql('SELECT rules FROM firewall WHERE qid = ?').get(qid) as { rules: string } | undefined;
    return row && row.rules.split('\n').filter((l) => l !== '');
  }

  setFirewall(qid: number, lines: readonly string[]): void {
    this.sql('INSERT INTO firewall (qid, rules) VALUES (?, ?) ON CONFLICT(qid) DO UPDATE SET rules = excluded.rules')
      .run(qid, lines.map((l) => l + '\n').join(''));
  }

  /** A clone gets its source's rules (qvm-clone copies the firewall); nothing to copy for a default one. */
  copyFirewall(fromQid: number, toQid: number): void {
    this.sql('INSERT INTO firewall (qid, rules) SELECT ?, rules FROM firewall WHERE qid = ?').run(toQid, fromQid);
  }

  // --- global prefs --------------------------------------------------------

  globalProps(): Record<string, PropValue> {
    const rows = this.sql('SELECT name, value FROM global_props').all() as { name: string; value: string }[];
    return Object.fromEntries(rows.map((r) => [r.name, JSON.parse(r.value) as PropValue]));
  }

  setGlobal(name: string, value: PropValue): void {
    this.sql('INSERT INTO global_props (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value')
      .run(name, JSON.stringify(value));
  }

  resetGlobal(name: string): void {
    this.sql('DELETE FROM global_props WHERE name = ?').run(name);
  }

  // --- volumes -------------------------------------------------------------

  volumes(qid: number): VolumeRow[] {
    return this.sql('SELECT name, pool, size, revisions_to_keep AS revisionsToKeep FROM volumes WHERE qid = ? ORDER BY name')
      .all(qid) as VolumeRow[];
  }

  putVolume(qid: number, v: VolumeRow): void {
    this.sql(`INSERT INTO volumes (qid, name, pool, size, revisions_to_keep) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT(qid, name) DO UPDATE SET pool = excluded.pool, size = excluded.size, revisions_to_keep = excluded.revisions_to_keep`)
      .run(qid, v.name, v.pool, v.size, v.revisionsToKeep);
  }

  // --- host uid ranges ----------------------------------------------------

  /** The first host uid of the qube's range, once the uid registry gave it one. */
  uidBase(qid: number): number | undefined {
    const row = this.sql('SELECT uid_base AS b FROM qubes WHERE qid = ?').get(qid) as { b: number | null } | undefined;
    return row?.b ?? undefined;
  }

  setUidBase(qid: number, base: number): void {
    this.sql('UPDATE qubes SET uid_base = ? WHERE qid = ?').run(base, qid);
  }

  // --- runtime -------------------------------------------------------------

  runtimes(): RuntimeRow[] {
    return (this.sql(`SELECT ${RUNTIME_COLUMNS} FROM runtime`).all() as StoredRuntime[]).map(runtimeRow);
  }

  runtime(qid: number): RuntimeRow | undefined {
    const r = this.sql(`SELECT ${RUNTIME_COLUMNS} FROM runtime WHERE qid = ?`).get(qid) as StoredRuntime | undefined;
    return r && runtimeRow(r);
  }

  /** Statements are prepared once: a qrexec call reads runtimes and logs a decision, ~40 µs a prepare. */
  private sql(text: string): Database.Statement {
    let st = this.statements.get(text);
    if (!st) this.statements.set(text, (st = this.db.prepare(text)));
    return st;
  }

  putRuntime(r: RuntimeRow): void {
    this.sql(`INSERT INTO runtime (qid, state, runtime_id, backend, started_at, root_revision, paused, accel) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT(qid) DO UPDATE SET state = excluded.state, runtime_id = excluded.runtime_id, backend = excluded.backend,
      started_at = excluded.started_at, root_revision = excluded.root_revision, paused = excluded.paused, accel = excluded.accel`)
      .run(r.qid, r.state, r.runtimeId, r.backend, r.startedAt, r.rootRevision, r.paused ? 1 : 0, r.accel ?? '');
  }

  deleteRuntime(qid: number): void {
    this.sql('DELETE FROM runtime WHERE qid = ?').run(qid);
  }

  setLastError(qid: number, message: string | null): void {
    if (message === null) this.sql('DELETE FROM qube_status WHERE qid = ?').run(qid);
    else this.sql('INSERT INTO qube_status (qid, last_error, at) VALUES (?, ?, ?) ON CONFLICT(qid) DO UPDATE SET last_error = excluded.last_error, at = excluded.at')
      .run(qid, message, Date.now());
  }

  logDecision(d: DecisionRow): void {
    this.sql('INSERT INTO qrexec_log (at, source, target, service, argument, result, rule, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(d.at, d.source, d.target, d.service, d.argument, d.result, d.rule, d.reason);
    if (++this.decisionsSincePrune >= 1000) {
      this.decisionsSincePrune = 0;
      this.sql('DELETE FROM qrexec_log WHERE id <= (SELECT MAX(id) FROM qrexec_log) - ?').run(MAX_DECISIONS);
    }
  }

  decisions(sinceMs: number): DecisionRow[] {
    return this.sql('SELECT at, source, target, service, argument, result, rule, reason FROM qrexec_log WHERE at >= ? ORDER BY id')
      .all(sinceMs) as DecisionRow[];
  }

  lastErrors(): Map<number, string> {
    const rows = this.sql('SELECT qid, last_error FROM qube_status').all() as { qid: number; last_error: string }[];
    return new Map(rows.map((r) => [r.qid, r.last_error]));
  }
}
