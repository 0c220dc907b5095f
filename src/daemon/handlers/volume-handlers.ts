// admin.vm.volume.*: list, info (Qubes' key=value lines), revisions, revert, resize and
// revisions_to_keep, clear (empty a volume), with Qubes' refusals (running qube, shrinking, snapshots).

import type { AdminMethod } from '../../core/admin-methods';
import { QubesError, valueError } from '../../core/errors';
import { isOutdated } from '../../core/outdated';
import { parseInteger } from '../../core/property-types';
import type { QubeRecord } from '../../core/qube';
import { volumeLayout, type VolumeKind } from '../../core/volumes';
import type { Handler } from '../admin-server';
import { destQube, payloadText, type HandlerDeps } from './context';

export function volumeHandlers(d: HandlerDeps): Partial<Record<AdminMethod, Handler>> {
  const col = d.collection;
  const kindOf = (q: QubeRecord, untrusted: string): VolumeKind => {
    const k = volumeLayout(q.klass).find((v) => v.name === untrusted);
    if (!k) throw valueError(`${q.name} has no volume '${untrusted}'`);
    return k;
  };
  const row = (q: QubeRecord, vol: string) => {
    const r = col.store.volumes(q.qid).find((v) => v.name === vol);
    if (!r) throw valueError(`${q.name} has no volume '${vol}'`);
    return r;
  };
  const halted = (q: QubeRecord, what: string) => {
    if (col.powerState(q) !== 'Halted') throw new QubesError('QubesVMNotHaltedError', `Cannot ${what} while ${q.name} is running`);
  };
  return {
    'admin.vm.volume.List': (ctx) => volumeLayout(destQube(d, ctx).klass).map((v) => v.name + '\n').join(''),
    'admin.vm.volume.Info': async (ctx) => {
      const q = destQube(d, ctx);
      const k = kindOf(q, ctx.req.arg);
      const r = row(q, k.name);
      const vols = d.lifecycle.volumesOf(q);
      const u = await d.pool.usage(vols, k.name);
      const rt = col.store.runtimes().find((x) => x.qid === q.qid);
      const outdated = isOutdated({ snapOnStart: k.snapOnStart && k.name === 'root', startedFrom: rt?.rootRevision, templateCurrent: u.current });
      const source = k.snapOnStart && vols.sourceUuid ? `${vols.sourceUuid}/${k.name}` : '';
      return [
        `pool=${r.pool}`, `vid=${q.uuid}/${k.name}`, `size=${r.size}`, `usage=${u.usage}`, `rw=${k.rw ? 'True' : 'False'}`,
        `source=${source}`, `path=${u.path}`, `save_on_stop=${k.saveOnStop ? 'True' : 'False'}`,
        `snap_on_start=${k.snapOnStart ? 'True' : 'False'}`, `revisions_to_keep=${r.revisionsToKeep}`, 'ephemeral=False',
        `is_outdated=${outdated ? 'True' : 'False'}`, `revision=${u.current}`,
      ].join('\n') + '\n';
    },
    'admin.vm.volume.ListSnapshots': async (ctx) => {
      const q = destQube(d, ctx);
      const k = kindOf(q, ctx.req.arg);
      const u = await d.pool.usage(d.lifecycle.volumesOf(q), k.name);
      // The kept revisions, oldest first as Qubes lists them (its client reverts to the last one).
      return u.revisions.slice(0, row(q, k.name).revisionsToKeep).reverse().map((r) => `${r.name}\n`).join('');
    },
    'admin.vm.volume.Revert': async (ctx) => {
      const q = destQube(d, ctx);
      const k = kindOf(q, ctx.req.arg);
      if (!k.saveOnStop) throw valueError(`volume ${k.name} of ${q.name} keeps no revisions`);
      const rev = payloadText(ctx).trim() || undefined;
      return d.lifecycle.locked(q, async () => {
        halted(q, 'revert a volume');
        try {
          await d.pool.revert(d.lifecycle.volumesOf(q), k.name, rev, row(q, k.name).revisionsToKeep);
        } catch (e) {
          throw valueError((e as Error).message);
        }
        d.events.emit(q.name, 'domain-volume-revert', { volume: k.name });
        return '';
      });
    },
    'admin.vm.volume.Resize': async (ctx) => {
      const q = destQube(d, ctx);
      const k = kindOf(q, ctx.req.arg);
      const size = parseInteger(payloadText(ctx).trim());
      if (size === undefined || size <= 0) throw valueError(`Invalid size '${payloadText(ctx)}'`);
      if (k.snapOnStart) throw valueError(`The ${k.name} volume of ${q.name} comes from its template; resize the template's`);
      const r = row(q, k.name);
      if (size < r.size) throw valueError(`For your own safety, shrinking of ${k.name} is disabled (${r.size} > ${size})`);
      // The bound grows first (now if the volume is not in use, else at the next start), then the record.
      // Under the qube's lock: a start or stop does not mount or unmount it at the same moment.
      const grow = (x: QubeRecord) => d.lifecycle.locked(x, () => d.pool.resize(d.lifecycle.volumesOf(x), k.name, size));
      try {
        if (!(await grow(q))) d.log.info(`${q.name}: volume ${k.name} is in use; it grows to ${size} bytes at the next start`);
      } catch (e) {
        throw new QubesError('StoragePoolException', `Resizing volume ${k.name} of ${q.name} failed: ${(e as Error).message.split('\n')[0]}`);
      }
      // Qubes based on this template see its root: the bound of their root changes follows it.
      if (k.name === 'root') {
        for (const child of col.all().filter((c) => c.props.template === q.name)) {
          await grow(child).catch((e: Error) => d.log.warn(`${child.name}: growing its root changes' bound: ${e.message}`));
        }
      }
      col.write(() => col.store.putVolume(q.qid, { ...r, size }));
      return '';
    },
    'admin.vm.volume.Clear': async (ctx) => {
      const q = destQube(d, ctx);
      const k = kindOf(q, ctx.req.arg);
      if (k.snapOnStart) throw valueError(`The ${k.name} volume of ${q.name} comes from its template and is reset at every start; there is nothing to clear`);
      return d.lifecycle.locked(q, async () => {
        halted(q, 'clear a volume');
        try {
          await d.pool.clear(d.lifecycle.volumesOf(q), k.name);
        } catch (e) {
          throw new QubesError('StoragePoolException', `Clearing volume ${k.name} of ${q.name} failed: ${(e as Error).message.split('\n')[0]}`);
        }
        d.events.emit(q.name, 'domain-volume-clear', { volume: k.name });
        return '';
      });
    },
    // Qubes' rw and ephemeral flags: Isola's volumes are always writable and never encrypted
    // with a throwaway key, so only the value they already have is accepted.
    'admin.vm.volume.Set.rw': (ctx) => {
      const q = destQube(d, ctx);
      const k = kindOf(q, ctx.req.arg);
      if (parseBool(payloadText(ctx)) !== k.rw) throw valueError(`The ${k.name} volume of ${q.name} is always writable here; rw cannot be changed`);
      return '';
    },
    'admin.vm.volume.Set.ephemeral': (ctx) => {
      const q = destQube(d, ctx);
      const k = kindOf(q, ctx.req.arg);
      if (parseBool(payloadText(ctx))) throw valueError(`Ephemeral volumes (encrypted with a throwaway key) are not supported; ${k.name} of ${q.name} stays ephemeral=False`);
      return '';
    },
    'admin.vm.volume.Set.revisions_to_keep': (ctx) => {
      const q = destQube(d, ctx);
      const k = kindOf(q, ctx.req.arg);
      const n = parseInteger(payloadText(ctx).trim());
      if (n === undefined || n < 0 || n > 64) throw valueError(`Invalid revisions_to_keep '${payloadText(ctx)}' (0-64)`);
      if (!k.saveOnStop) throw valueError(`volume ${k.name} of ${q.name} keeps no revisions`);
      col.write(() => col.store.putVolume(q.qid, { ...row(q, k.name), revisionsToKeep: n }));
      return '';
    },
  };
}

/** Qubes' bool property parsing: True/False, yes/no, on/off, 1/0 (any case). */
function parseBool(untrusted: string): boolean {
  const v = untrusted.trim().toLowerCase();
  if (['true', 'yes', 'on', '1'].includes(v)) return true;
  if (['false', 'no', 'off', '0', ''].includes(v)) return false;
  throw valueError(`Invalid boolean value '${untrusted.trim()}' (True or False)`);
}
