// After an isolad restart (clean or kill -9): make the store agree with what the backends and the
// pool really hold. Running qubes stay Running and usable, unfinished starts become Halted, and
// orphaned runtimes, mounts and half-created volumes are removed. Each qube is asked of the backend
// its runtime row names.

import type { StoragePool } from '../core/volumes';
import type { BackendRegistry } from './backend-registry';
import type { Collection } from './collection';
import type { Lifecycle } from './lifecycle';
import type { Logger } from './logger';

export async function reconcile(col: Collection, lifecycle: Lifecycle, backends: BackendRegistry, pool: StoragePool, log: Logger): Promise<void> {
  const known = new Set<string>();
  /** Qubes of a backend this isolad lacks: their volumes stay as they were (a VM may still use them). */
  const untouchable = new Set<string>();
  for (const rt of col.store.runtimes()) {
    const q = col.byQid(rt.qid);
    if (!q) continue;
    known.add(`${rt.backend}/${rt.runtimeId}`);
    const backend = lifecycle.backendOf(rt);
    if (!backend) {
      // It may still run (a VM this isolad cannot see): left as it is, shown as running, never started
      // twice; qvm-kill forgets it once the user knows it is gone.
      untouchable.add(q.uuid);
      log.error(`${q.name}: runs under virt_mode ${rt.backend}, which this isolad has no backend for; left as it is (qvm-kill ${q.name} forgets it)`);
      continue;
    }
    const st = await backend.state(rt.runtimeId).catch(() => undefined);
    if (rt.state === 'running' && st?.status === 'running') {
      try {
        await lifecycle.reattach(q, backend);
        log.info(`${q.name}: still running, reattached`);
        continue;
      } catch (e) {
        log.error(`${q.name}: cannot reattach (${(e as Error).message}); stopping it`);
      }
    }
    // A start that did not finish, or a qube that stopped while isolad was away: every step undone
    // (a failed commit keeps the changes, committed at the next start, and is part of the reason).
    const why = rt.state === 'starting' ? 'start interrupted (isolad restarted)' : 'stopped while isolad was not running';
    await lifecycle.finishRun(q, rt, why);
    log.warn(`${q.name}: ${rt.state === 'starting' ? 'unfinished start rolled back' : 'found stopped'}; now Halted`);
  }
  for (const backend of backends.all()) {
    for (const info of await backend.list()) {
      if (known.has(`${backend.virtMode}/${info.id}`)) continue;
      log.warn(`removing orphaned runtime ${info.id} (${backend.virtMode})`);
      await backend.destroy(info.id).catch((e: Error) => log.error(e.message));
    }
  }
  const uuids = new Set(col.all().map((q) => q.uuid));
  const running = new Set(col.store.runtimes().map((r) => col.byQid(r.qid)?.uuid));
  await pool.collectTrash().catch((e: Error) => log.error(`collecting trash: ${e.message}`));
  for (const uuid of await pool.list()) {
    // One bad leftover must not keep isolad from serving: log it and go on.
    try {
      if (!uuids.has(uuid)) {
        log.warn(`removing volumes of a qube that was never saved: ${uuid}`);
        await pool.remove(uuid);
      } else if (!running.has(uuid) && !untouchable.has(uuid)) {
        await pool.cleanupMounts(uuid);
      }
    } catch (e) {
      log.error(`cleaning up volumes ${uuid}: ${(e as Error).message}`);
    }
  }
}
