// Which volume directories of a qube get their own bounded filesystem, and of what size:
// the root (templates and standalones: its layers and the run's changes), the private volume,
// and, for a snapshot root (AppVM/DispVM), volatile, which holds the root's changes and is
// bounded by the root's size as a thin snapshot of that size would be in Qubes.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { QubeVolumes, VolumeKind, VolumeName } from '../core/volumes';
import { volumeLayout } from '../core/volumes';
import { discard } from './layer-stack';
import { growVolumeFs, hasImage, imageOf, makeVolumeFs, mountVolumeFs, shrinkVolumeFs, volumeFsUsage } from './volume-fs';
import { removeTree } from './tree-tool';

/** Volumes of a qube whose data lives in their own directory (a snapshot root has none). */
export function volumeDirs(q: QubeVolumes): VolumeName[] {
  const kinds = volumeLayout(q.klass);
  const snapRoot = kinds.find((k) => k.name === 'root')?.snapOnStart ?? false;
  return kinds.filter((k) => (k.name === 'root' ? !snapRoot : k.name === 'volatile' ? snapRoot : true)).map((k) => k.name);
}

/** The bound of a volume directory: volatile of a snapshot root is bounded by the root's size. */
export function boundOf(q: QubeVolumes, vol: VolumeName): number {
  const kinds = volumeLayout(q.klass);
  const name = vol === 'volatile' ? 'root' : vol;
  const kind = kinds.find((k) => k.name === name) as VolumeKind;
  return q.sizes?.[name] ?? kind.defaultSize;
}

/** Makes the directories of a new qube's volumes, each bounded one with its filesystem. */
export async function makeVolumes(q: QubeVolumes, kinds: VolumeKind[], dirOf: (v: VolumeName) => string): Promise<void> {
  const bounded = volumeDirs(q);
  for (const k of kinds) {
    if (bounded.includes(k.name)) await makeVolumeFs(dirOf(k.name), boundOf(q, k.name));
    else await fs.mkdir(dirOf(k.name), { recursive: true, mode: 0o700 });
  }
}

/** Deletes what a directory holds, keeping the directory (it may be a mount point). */
export async function emptyDir(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    return;
  }
  for (const n of names) await discard(path.join(dir, n));
}

/** The current size of a volume's filesystem image (undefined: a legacy plain directory). */
export async function sizeOfDir(dir: string): Promise<number | undefined> {
  return fs.stat(imageOf(dir)).then((st) => st.size, () => undefined);
}

/**
 * Runs a squash (a merged copy of the stack into the same volume) with room for the copy: the
 * filesystem grows by what is used for the moment, and shrinks back to its bound afterwards
 * (offline: the qube is halted, no running qube uses the layers).
 */
export async function withSquashRoom(dir: string, squash: () => Promise<void>): Promise<void> {
  if (!(await hasImage(dir))) return squash();
  const bound = (await fs.stat(imageOf(dir))).size;
  const used = (await volumeFsUsage(dir))?.bytes ?? bound;
  await growVolumeFs(dir, bound + used + 64 * 1024 * 1024);
  try {
    await squash();
  } finally {
    await removeTree(path.join(dir, 'merge-new'));
    await shrinkVolumeFs(dir, bound);
  }
}

/** At start: a volume resized while in use grows now; then it is mounted (if it has an image). */
export async function applyBound(dir: string, bound: number): Promise<void> {
  const size = await sizeOfDir(dir);
  if (size === undefined) return;
  // A growth that fails (e.g. past what the filesystem can address) leaves the qube startable at its old size.
  if (size < Math.ceil(bound / 4096) * 4096) await growVolumeFs(dir, bound).catch(() => false);
  await mountVolumeFs(dir);
}
