// An in-memory StoragePool that keeps Qubes' volume rules (core/volumes.ts volumeLayout): an AppVM's
// root is a fresh snapshot of its template's last committed root at each start, private is kept,
// volatile is always discarded, and nothing is committed without commit=true. Volumes hold small
// `file → text` records, so a test can write into a running qube and assert what its stop kept.

import type { VolumeForm, VolumeHandle } from '../../../src/core/backend';
import type { QubeClass } from '../../../src/core/qube';
import {
  volumeLayout, type IdRange, type QubeVolumes, type StartedVolumes, type StoragePool, type VolumeName, type VolumeUsage,
} from '../../../src/core/volumes';

export type Files = Record<string, string>;

interface Volume {
  /** Committed revisions, oldest first; the last one is what the next start sees. */
  revisions: Files[];
}

interface PoolQube {
  klass: QubeClass;
  volumes: Partial<Record<VolumeName, Volume>>;
  /** Working copies while started. */
  running?: { ids: IdRange; sourceRevision: string; work: Partial<Record<VolumeName, Files>> };
}

export interface PoolFaults {
  start?: string;
  stop?: string;
}

export class MemoryPool implements StoragePool {
  readonly driver = 'memory';
  private readonly qubes = new Map<string, PoolQube>();
  readonly faults = new Map<string, PoolFaults>();
  /** Each stop as asked: which qube, whether it committed. */
  readonly stops: { uuid: string; commit: boolean }[] = [];
  commits = 0;
  discards = 0;
  removed: string[] = [];
  cleanedUp: string[] = [];

  constructor(readonly name = 'default', private readonly journal: string[] = []) {}

  private q(uuid: string): PoolQube {
    const q = this.qubes.get(uuid);
    if (!q) throw new Error(`pool ${this.name}: no volumes for ${uuid}`);
    return q;
  }

  async create(q: QubeVolumes, opts: { copyRootFrom?: QubeVolumes }): Promise<void> {
    if (this.qubes.has(q.uuid)) throw new Error(`pool ${this.name}: ${q.uuid} exists already`);
    const fresh = (): Volume => ({ revisions: [{}] });
    const volumes: PoolQube['volumes'] = {};
    for (const v of volumeLayout(q.klass)) {
      if (v.name === 'root' && v.snapOnStart) continue; // a template's root, seen through a snapshot
      volumes[v.name] = fresh();
    }
    if (opts.copyRootFrom && volumes.root) volumes.root = { revisions: [{ ...this.committed(opts.copyRootFrom.uuid, 'root') }] };
    this.qubes.set(q.uuid, { klass: q.klass, volumes });
  }

  async importRoot(): Promise<void> {
    throw new Error('MemoryPool has no directories to fill: use seed()');
  }

  /** Sets a qube's committed contents (a template's root, say) as one new revision. */
  seed(uuid: string, volume: VolumeName, files: Files): void {
    const v = this.q(uuid).volumes[volume];
    if (!v) throw new Error(`${uuid} has no ${volume} volume of its own`);
    v.revisions.push({ ...files });
  }

  /** The last committed contents of a volume. */
  committed(uuid: string, volume: VolumeName): Files {
    const v = this.q(uuid).volumes[volume];
    if (!v) throw new Error(`${uuid} has no ${volume} volume of its own`);
    return v.revisions[v.revisions.length - 1];
  }

  /** Writes into a started qube's working copy (what the qube does while it runs). */
  write(uuid: string, volume: VolumeName, file: string, text: string): void {
    const run = this.q(uuid).running;
    if (!run) throw new Error(`${uuid} is not started`);
    const w = run.work[volume];
    if (!w) throw new Error(`${uuid} has no ${volume} volume`);
    w[file] = text;
  }

  /** A started qube's view of a volume, or undefined when it is not started. */
  working(uuid: string, volume: VolumeName): Files | undefined {
    return this.qubes.get(uuid)?.running?.work[volume];
  }

  isStarted(uuid: string): boolean {
    return this.qubes.get(uuid)?.running !== undefined;
  }

  async start(q: QubeVolumes, ids: IdRange, form: VolumeForm = 'tree'): Promise<StartedVolumes> {
    this.journal.push(`pool:start ${q.uuid}`);
    const f = this.faults.get(q.uuid)?.start;
    if (f) throw new Error(f);
    const pq = this.q(q.uuid);
    if (pq.running) throw new Error(`pool ${this.name}: ${q.uuid} is started already`);
    const work: Partial<Record<VolumeName, Files>> = {};
    let sourceRevision = '';
    for (const v of volumeLayout(q.klass)) {
      if (v.name === 'volatile') work.volatile = {};
      else if (v.snapOnStart) {
        if (!q.sourceUuid) throw new Error(`pool ${this.name}: ${q.uuid}'s ${v.name} snapshots a template, and none is given`);
        const src = this.q(q.sourceUuid).volumes[v.name]!;
        work[v.name] = { ...src.revisions[src.revisions.length - 1] };
        if (v.name === 'root') sourceRevision = `${q.sourceUuid}@${src.revisions.length}`;
      } else {
        const own = pq.volumes[v.name]!;
        work[v.name] = { ...own.revisions[own.revisions.length - 1] };
        if (v.name === 'root') sourceRevision = `${q.uuid}@${own.revisions.length}`;
      }
    }
    pq.running = { ids, sourceRevision, work };
    const handle = (name: VolumeName): VolumeHandle => {
      const where = `mem://${this.name}/${q.uuid}/${name}`;
      return form === 'tree' ? { name, readonly: false, tree: where } : { name, readonly: false, image: { disks: [{ file: where, readonly: false }], lower: [{ disk: 0, dir: 'layers' }], upper: { disk: 0, dir: 'upper' } } };
    };
    return { root: handle('root'), private: handle('private'), rootRevision: sourceRevision };
  }

  async stop(q: QubeVolumes, _ids: IdRange, commit: boolean): Promise<void> {
    this.journal.push(`pool:stop ${q.uuid} commit=${commit}`);
    this.stops.push({ uuid: q.uuid, commit });
    const pq = this.qubes.get(q.uuid);
    const f = this.faults.get(q.uuid)?.stop;
    if (f) throw new Error(f);
    if (!pq?.running) return; // nothing started here (a start that failed before its volumes, or reconcile)
    for (const v of volumeLayout(pq.klass)) {
      const own = pq.volumes[v.name];
      const w = pq.running.work[v.name];
      if (commit && v.saveOnStop && own && w) {
        own.revisions.push(w);
        this.commits++;
      } else this.discards++;
    }
    pq.running = undefined;
  }

  async remove(uuid: string): Promise<void> {
    this.removed.push(uuid);
    this.qubes.delete(uuid);
  }

  async clone(src: QubeVolumes, dst: QubeVolumes): Promise<void> {
    const s = this.q(src.uuid);
    const volumes: PoolQube['volumes'] = {};
    for (const [name, v] of Object.entries(s.volumes)) volumes[name as VolumeName] = { revisions: [{ ...v!.revisions[v!.revisions.length - 1] }] };
    this.qubes.set(dst.uuid, { klass: dst.klass, volumes });
  }

  async resize(): Promise<boolean> {
    return true;
  }

  async usage(q: QubeVolumes, volume: VolumeName): Promise<VolumeUsage> {
    // current as start() names a revision: the template's for a snapshot volume, so that is_outdated can be computed.
    const kind = volumeLayout(q.klass).find((k) => k.name === volume);
    const owner = kind?.snapOnStart && q.sourceUuid ? q.sourceUuid : q.uuid;
    const n = this.qubes.get(owner)?.volumes[volume]?.revisions.length ?? 0;
    return { usage: 0, revisions: [], current: `${owner}@${n}`, path: `mem://${this.name}/${q.uuid}/${volume}` };
  }

  async revert(q: QubeVolumes, volume: VolumeName): Promise<void> {
    const v = this.q(q.uuid).volumes[volume];
    if (v && v.revisions.length > 1) v.revisions.pop();
  }

  async clear(q: QubeVolumes, volume: VolumeName): Promise<void> {
    this.q(q.uuid).volumes[volume]?.revisions.push({});
  }

  async list(): Promise<string[]> {
    return [...this.qubes.keys()];
  }

  async cleanupMounts(uuid: string): Promise<void> {
    this.cleanedUp.push(uuid);
    const pq = this.qubes.get(uuid);
    if (pq) pq.running = undefined;
  }

  async collectTrash(): Promise<void> {
    return undefined;
  }
}
