// A volume's committed revisions as a stack of overlay layers on disk, stored with real
// (unshifted) ownership. Committing a qube's changes is a rename, not a copy.
//
// Layer names sort in commit order: `S<n>` is a full layer (nothing below it counts; made at
// creation or by squashing), `L<n>` holds the changes of one run on top of the layers below.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { removeTree } from './tree-tool';

export interface Layer {
  name: string;
  seq: number;
  full: boolean;
  /** When it was committed (ms since epoch). */
  mtimeMs: number;
}

const LAYER_RE = /^([SL])([0-9]{6})$/;

export function layerName(seq: number, full: boolean): string {
  return `${full ? 'S' : 'L'}${String(seq).padStart(6, '0')}`;
}

/** The layers that make up the current state, bottom first: the newest full layer and what is above. */
export async function readStack(layersDir: string): Promise<Layer[]> {
  let names: string[];
  try {
    names = await fs.readdir(layersDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const layers: Layer[] = [];
  for (const name of names) {
    const m = LAYER_RE.exec(name);
    if (!m) continue;
    const st = await fs.stat(path.join(layersDir, name));
    layers.push({ name, seq: Number(m[2]), full: m[1] === 'S', mtimeMs: st.mtimeMs });
  }
  layers.sort((a, b) => a.seq - b.seq);
  let base = -1;
  layers.forEach((l, i) => { if (l.full) base = i; });
  return base === -1 ? [] : layers.slice(base);
}

/** Removes layers hidden below the newest full layer and leftovers of interrupted work. */
export async function collectGarbage(layersDir: string): Promise<void> {
  const stack = new Set((await readStack(layersDir)).map((l) => l.name));
  for (const name of await fs.readdir(layersDir).catch(() => [] as string[])) {
    if (!stack.has(name)) await removeTree(path.join(layersDir, name));
  }
}

/** Lower-dir list for overlay (top first) for the stack truncated at `upTo` (inclusive). */
export function lowerList(stack: Layer[], upTo?: string): string[] {
  const end = upTo ? stack.findIndex((l) => l.name === upTo) + 1 : stack.length;
  return stack.slice(0, end > 0 ? end : stack.length).map((l) => l.name).reverse();
}

/** Moves a finished directory in as the next layer (atomic rename). */
export async function pushLayer(layersDir: string, dir: string, full: boolean): Promise<Layer> {
  const all = await fs.readdir(layersDir).catch(() => [] as string[]);
  const maxSeq = all.reduce((m, n) => Math.max(m, Number(LAYER_RE.exec(n)?.[2] ?? 0)), 0);
  const name = layerName(maxSeq + 1, full);
  await fs.mkdir(layersDir, { recursive: true });
  await fs.rename(dir, path.join(layersDir, name));
  const now = new Date();
  await fs.utimes(path.join(layersDir, name), now, now);
  return { name, seq: maxSeq + 1, full, mtimeMs: now.getTime() };
}

/** Drops every layer above `keep` (a revert). */
export async function dropAbove(layersDir: string, keep: string): Promise<void> {
  const stack = await readStack(layersDir);
  const idx = stack.findIndex((l) => l.name === keep);
  if (idx === -1) throw new Error(`no revision '${keep}' in ${layersDir}`);
  // Newest first, renamed out of the stack before deletion, so an interruption leaves a valid stack.
  for (const l of stack.slice(idx + 1).reverse()) await discard(path.join(layersDir, l.name));
}

/** Renames a directory out of the way (atomic), then deletes it. */
export async function discard(dir: string): Promise<void> {
  const trash = `${dir}.trash-${process.pid}-${Date.now()}`;
  try {
    await fs.rename(dir, trash);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  // Byte-safe and depth-safe: a layer holds whatever names the qube made.
  await removeTree(trash);
}
