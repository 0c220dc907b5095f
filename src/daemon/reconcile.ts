// After an isolad restart (clean or kill -9): make the store agree with what the runtime and
// the pool really hold. Running qubes stay Running and usable, unfinished starts become Halted,
// and orphaned containers, mounts and half-created volumes are removed.

import type { Backend } from '../core/backend';
import type { StoragePool } from '../core/volumes';
import type { Collection } from './collection';
import type { Lifecycle } from './lifecycle';
import type { Logger } from './logger';
import { errorText } from '../core/error-text';
import { inertReason } from './reason-text';

export async function reconcile(col: Collection, lifecycle: Lifecycle, backend: Backend, pool: StoragePool, log: Logger): Promise<void> {
  const runtimes = col.store.runtimes();
  const known = new Set<string>();
  for (const rt of runtimes) {
    const q = col.byQid(rt.qid);
    if (!q) continue;
    known.add(rt.runtimeId);
    const st = await backend.state(rt.runtimeId);
    const alive = st !== undefined && st.status === 'running';
    if (rt.state === 'running' && alive) {
      try {
        await lifecycle.reattach(q);
        log.info(`${q.name}: still running, reattached`);
        continue;
      } catch (e) {
        log.error(`${q.name}: cannot reattach (${(e as Error).message}); stopping it`);
      }
    }
    // A start that did not finish, or a qube that stopped while isolad was away.
    await backend.destroy(rt.runtimeId).catch(() => undefined);
    const commit = rt.state !== 'starting';
    // A failed commit keeps the changes (committed at the next start) and is part of the reason.
    const failed = await pool.stop(lifecycle.volumesOf(q), lifecycle.ids(q), commit)
      .then(() => '', (e: unknown) => `; ${inertReason(errorText(e))}`);
    if (failed) log.error(`${q.name}: ${failed.slice(2)}`);
    col.write(() => {
      col.store.deleteRuntime(q.qid);
      col.store.setLastError(q.qid, (rt.state === 'starting' ? 'start interrupted (isolad restarted)' : 'stopped while isolad was not running') + failed);
    });
    log.warn(`${q.name}: ${rt.state === 'starting' ? 'unfinished start rolled back' : 'found stopped'}; now Halted`);
  }
  for (const info of await backend.list()) {
    if (!known.has(info.id)) {
      log.warn(`removing orphaned runtime ${info.id}`);
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
      } else if (!running.has(uuid)) {
        await pool.cleanupMounts(uuid);
      }
    } catch (e) {
      log.error(`cleaning up volumes ${uuid}: ${(e as Error).message}`);
    }
  }
}
