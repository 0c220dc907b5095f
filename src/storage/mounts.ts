// Privileged mount operations for volumes: overlay, idmapped bind, unmount, and a view of
// /proc/self/mountinfo. Every error names the path and what the kernel or tool said.

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Path of the compiled idmap helper (built from src/native by `npm run build`). */
export function idmapHelperPath(): string {
  return process.env.ISOLA_IDMAP_HELPER || path.resolve(__dirname, '../../libexec/isola-idmap-mount');
}

async function tool(file: string, args: string[], what: string, cwd?: string): Promise<void> {
  try {
    await run(file, args, { cwd });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    // mount(8) ends with a hint about dmesg; the line before it says what went wrong.
    const detail = (err.stderr || err.message).split('\n').map((l) => l.replace(/\s+/g, ' ').trim())
      .filter((l) => l && !l.startsWith('dmesg(1)')).join('; ');
    throw new Error(`${what}: ${detail}`);
  }
}

/** Bind-mounts src on dst so that on-disk id N appears as base+N. */
export function mountIdmapped(src: string, dst: string, base: number, count: number): Promise<void> {
  return tool(idmapHelperPath(), [String(base), String(count), src, dst], `idmap mount ${src} on ${dst}`);
}

/**
 * Mounts an overlay. Lower layer names are relative to lowerRoot (top layer first): mounting
 * from that directory keeps the option string short however deep the layer stack grows.
 */
export function mountOverlay(target: string, lowerRoot: string, lowers: string[], upper?: string, work?: string): Promise<void> {
  if (lowers.length === 0) throw new Error(`mount overlay on ${target}: no lower layer`);
  let opts = `lowerdir=${lowers.join(':')}`;
  if (upper && work) opts += `,upperdir=${upper},workdir=${work}`;
  // xino/index off: layers are moved between mounts, and inode index files would pin them.
  opts += ',index=off,xino=off,redirect_dir=off,metacopy=off';
  return tool('mount', ['-t', 'overlay', 'isola', '-o', opts, target], `mount overlay on ${target}`, lowerRoot);
}

/** Unmounts; falls back to a lazy unmount so a busy mount never blocks a shutdown. */
export async function unmount(target: string): Promise<void> {
  try {
    await run('umount', [target]);
  } catch {
    if (isMounted(target)) await tool('umount', ['-l', target], `unmount ${target}`);
  }
}

/** Mount points (decoded) currently mounted at or below prefix, deepest first. */
export function mountsUnder(prefix: string): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const points = text.split('\n').filter(Boolean).map((l) => l.split(' ')[4].replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))));
  const base = prefix.endsWith('/') ? prefix : prefix + '/';
  return points.filter((p) => p === prefix || p.startsWith(base)).sort((a, b) => b.length - a.length);
}

export function isMounted(target: string): boolean {
  return mountsUnder(target).includes(target);
}

export async function unmountAllUnder(prefix: string): Promise<void> {
  for (const p of mountsUnder(prefix)) await unmount(p);
}
