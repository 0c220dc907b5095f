// Which host uid range each qube runs as: given by the host-wide uid registry, recorded in the
// qube's store row and checked against the registry at every start (the registry is shared with
// other instances, which must never receive the same range).

import { QubesError } from '../core/errors';
import type { QubeRecord } from '../core/qube';
import type { IdRange } from '../core/volumes';
import { ID_RANGE, type ClaimRequest, type UidRegistry } from '../store/uid-registry';
import type { Collection } from './collection';
import { legacyUidBase, type DaemonConfig } from './config';
import type { Logger } from './logger';

export class QubeIds {
  constructor(
    private readonly cfg: DaemonConfig,
    private readonly col: Collection,
    private readonly registry: UidRegistry,
    private readonly log: Logger,
  ) {}

  /** The recorded range (every qube that ever started, or existed at isolad's start, has one). */
  ids(q: QubeRecord): IdRange {
    const base = this.col.store.uidBase(q.qid);
    if (base === undefined) throw new Error(`${q.name}: no host uid range recorded yet (it is allocated at its start)`);
    return { base, count: ID_RANGE };
  }

  /** At start: the qube's range, allocated now if it has none, refused if another qube holds it. */
  async ensure(q: QubeRecord): Promise<IdRange> {
    const [res] = await this.claim([q]);
    if ('error' in res) throw new QubesError('QubesVMError', `${q.name}: ${res.error}`);
    return { base: res.base, count: ID_RANGE };
  }

  /**
   * At isolad's start: every qube gets its range registered, a qube of an older database the range
   * the old formula gave it when still free (its dirty upper layers are owned by those ids).
   */
  async migrate(): Promise<void> {
    const qubes = this.col.all().filter((q) => q.klass !== 'AdminVM');
    const freed = await this.registry.prune(this.cfg.home, new Set(qubes.map((q) => q.uuid)));
    if (freed) this.log.info(`uid registry: freed ${freed} range(s) of qubes removed from this instance`);
    if (qubes.length === 0) return;
    const results = await this.claim(qubes);
    results.forEach((res, i) => {
      if ('error' in res) this.log.error(`${qubes[i].name}: ${res.error}; it will not start until that is resolved`);
    });
  }

  /** At qvm-remove: the range goes back to the host's pool. */
  async release(q: QubeRecord): Promise<void> {
    await this.registry.release(this.cfg.home, q.uuid);
  }

  private async claim(qubes: QubeRecord[]): Promise<Array<{ base: number } | { error: string }>> {
    const requests: ClaimRequest[] = qubes.map((q) => {
      const recorded = this.col.store.uidBase(q.qid);
      return recorded !== undefined ? { uuid: q.uuid, recorded } : { uuid: q.uuid, prefer: legacyUidBase(this.cfg.instance, q.qid) };
    });
    const results = await this.registry.claim(this.cfg.home, requests);
    const out = qubes.map((q) => results.get(q.uuid) ?? { error: 'not answered by the uid registry' });
    const changed = out.flatMap((res, i) => ('base' in res && requests[i].recorded !== res.base ? [[qubes[i].qid, res.base] as const] : []));
    // Only when something is new: a write reloads the collection, and this runs at every start.
    if (changed.length) this.col.write(() => changed.forEach(([qid, base]) => this.col.store.setUidBase(qid, base)));
    return out;
  }
}
