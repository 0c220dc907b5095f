// Volume sizes as the pool needs them (the bounds of each volume's filesystem): from the store's
// volume rows, a snapshot root taking its template's root size; new qubes take the defaults,
// which ISOLA_VOLUME_SIZES may lower or raise (e.g. `root=1G,private=64M`, for tests and small hosts).

import type { QubeClass, QubeRecord } from '../core/qube';
import { volumeLayout, type VolumeName } from '../core/volumes';
import type { Store } from '../store/store';
import { parsePoolSize } from '../storage/pool-fs';

export type VolumeSizes = Partial<Record<VolumeName, number>>;

/** ISOLA_VOLUME_SIZES, `name=size` pairs separated by commas; bad entries are ignored. */
export function parseVolumeSizes(untrusted: string | undefined): VolumeSizes {
  const out: VolumeSizes = {};
  for (const part of (untrusted ?? '').split(',')) {
    const [name, size] = part.split('=');
    const bytes = parsePoolSize(size);
    if ((name === 'root' || name === 'private' || name === 'volatile') && bytes) out[name] = bytes;
  }
  return out;
}

/** Sizes of a new qube's volumes; an AppVM/DispVM root is its template's root size. */
export function newQubeSizes(klass: QubeClass, defaults: VolumeSizes, templateSizes?: VolumeSizes): VolumeSizes {
  const out: VolumeSizes = {};
  for (const v of volumeLayout(klass)) out[v.name] = defaults[v.name] ?? v.defaultSize;
  if (templateSizes?.root && (klass === 'AppVM' || klass === 'DispVM' || klass === 'StandaloneVM')) out.root = Math.max(out.root ?? 0, templateSizes.root);
  return out;
}

/** The recorded sizes of a qube's volumes; a snapshot root's is its source's root size. */
export function recordedSizes(store: Store, q: QubeRecord, source?: QubeRecord): VolumeSizes {
  const out: VolumeSizes = {};
  for (const r of store.volumes(q.qid)) out[r.name as VolumeName] = r.size;
  const snapRoot = volumeLayout(q.klass).find((k) => k.name === 'root')?.snapOnStart;
  const srcRoot = source ? store.volumes(source.qid).find((r) => r.name === 'root')?.size : undefined;
  if (snapRoot && srcRoot) out.root = srcRoot;
  return out;
}
