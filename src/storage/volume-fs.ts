// One filesystem per volume: `POOL/UUID/VOL.img`, a sparse ext4 image of the volume's size with
// one inode per 16 KiB, loop-mounted on the volume's directory `POOL/UUID/VOL`. Its layers, the
// run's upper and work directories all live inside it, so a qube that writes past its volume's
// size gets ENOSPC (blocks or inodes) in its own filesystem, never in the host's or another
// qube's. The same image is what a VM backend attaches as a block device.
//
// Why not XFS/ext4 project quotas on one pool filesystem: this host's kernel has neither
// CONFIG_XFS_QUOTA nor CONFIG_QFMT_V2 (mounting with prjquota fails), and many hosts lack them.

import { execFile } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { isMounted, mountsUnder, unmount } from './mounts';

const run = promisify(execFile);

/** ext4's default bytes-per-inode ratio: a 2 GiB volume holds at most 131072 files. */
export const BYTES_PER_INODE = 16 * 1024;
/** Below this ext4 has too little room for its own metadata to be useful. */
export const MIN_VOLUME_SIZE = 16 * 1024 * 1024;

export function imageOf(volDir: string): string {
  return `${volDir}.img`;
}

export function inodesFor(size: number): number {
  return Math.max(256, Math.floor(size / BYTES_PER_INODE));
}

async function tool(file: string, args: string[], what: string): Promise<string> {
  try {
    return (await run(file, args)).stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    const detail = (err.stderr || err.message).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('dmesg(1)')).join('; ');
    throw new Error(`${what}: ${detail}`);
  }
}

export async function hasImage(volDir: string): Promise<boolean> {
  return fs.access(imageOf(volDir)).then(() => true, () => false);
}

/** Makes the image (sparse: it takes host space only as the qube writes) and mounts it. */
export async function makeVolumeFs(volDir: string, size: number): Promise<void> {
  const bytes = Math.max(MIN_VOLUME_SIZE, Math.ceil(size / 4096) * 4096);
  const img = imageOf(volDir);
  await fs.mkdir(volDir, { recursive: true, mode: 0o700 });
  const h = await fs.open(img, 'wx', 0o600);
  try {
    await h.truncate(bytes);
  } finally {
    await h.close();
  }
  // Lazy inode tables/journal and no discard: mkfs writes a few MiB, not the whole table area.
  await tool('mkfs.ext4', ['-q', '-F', '-m', '0', '-N', String(inodesFor(bytes)), '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard', img], `mkfs ${img}`);
  await mountVolumeFs(volDir);
  await fs.rmdir(path.join(volDir, 'lost+found')).catch(() => undefined);
  await fs.chmod(volDir, 0o700);
}

/** Mounts a volume's image unless it is mounted already (after an isolad restart it usually is). */
export async function mountVolumeFs(volDir: string): Promise<void> {
  if (isMounted(volDir)) return;
  await fs.mkdir(volDir, { recursive: true, mode: 0o700 });
  // noinit_itable: no background zeroing of the inode tables (it would fill the sparse image).
  await tool('mount', ['-t', 'ext4', '-o', 'loop,noinit_itable,errors=remount-ro', imageOf(volDir), volDir], `mount ${imageOf(volDir)}`);
  await loopDirectIo(volDir);
}

/** The block device mounted at a mount point (the loop device of an image), from mountinfo. */
function sourceOf(mountPoint: string): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    const point = (f[4] ?? '').replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (sep > 0 && point === mountPoint) return f[sep + 2];
  }
  return undefined;
}

/**
 * Direct I/O from a loop device to its image: without it every block is cached twice (three times
 * for a volume inside the pool image) and writeback through stacked loops ran at a sixth of the
 * host disk's speed (measured: 1 GiB written in a qube at 177-213 MB/s instead of 1363-1487).
 * Best effort: a backing filesystem without O_DIRECT keeps buffered I/O.
 */
export async function loopDirectIo(mountPoint: string): Promise<void> {
  const dev = sourceOf(mountPoint);
  if (dev?.startsWith('/dev/loop')) await run('losetup', ['--direct-io=on', dev]).catch(() => undefined);
}

/**
 * Grows the image and its filesystem, offline: online growth needs CAP_SYS_RESOURCE, which
 * isolad may not have (this host's root lacks it). A volume in use (its qube running, or a
 * template's root under running AppVMs) cannot be unmounted: then false, and the next start
 * grows it (the pool compares the image with the recorded size).
 */
export async function growVolumeFs(volDir: string, size: number): Promise<boolean> {
  const img = imageOf(volDir);
  const bytes = Math.ceil(size / 4096) * 4096;
  if ((await fs.stat(img)).size >= bytes) return true;
  if (isMounted(volDir)) {
    // umount would succeed under a running qube (its overlay keeps the filesystem alive): ask first.
    if (inUse(volDir)) return false;
    try {
      await run('umount', [volDir]);
    } catch {
      return false;
    }
    if (await stillAttached(img)) {
      await mountVolumeFs(volDir);
      return false;
    }
  }
  try {
    await fs.truncate(img, bytes);
    await checkFs(img);
    await tool('resize2fs', [img], `resize2fs ${img}`);
  } finally {
    await mountVolumeFs(volDir);
  }
  return true;
}

/** e2fsck -f, which resize2fs insists on; exit 1 means it fixed something and all is well. */
async function checkFs(img: string): Promise<void> {
  await run('e2fsck', ['-f', '-p', img]).catch((e: { code?: number; stderr?: string }) => {
    if (e.code !== 1) throw new Error(`e2fsck ${img}: ${(e.stderr ?? '').trim()}`);
  });
}

/** Space and inodes used in a mounted volume (statfs: instant, whatever the file count). */
export async function volumeFsUsage(volDir: string): Promise<{ bytes: number; size: number; inodes: number; maxInodes: number } | undefined> {
  if (!isMounted(volDir)) return undefined;
  const s = await fs.statfs(volDir);
  return { bytes: (s.blocks - s.bfree) * s.bsize, size: s.blocks * s.bsize, inodes: s.files - s.ffree, maxInodes: s.files };
}

/** Unmounts every volume image of a qube (before its directory is deleted or renamed). */
export async function unmountVolumes(uuidDir: string): Promise<void> {
  for (const p of mountsUnder(uuidDir)) await unmount(p);
}

/** Mounts every volume image found in the pool that is not mounted yet. */
export async function mountAllVolumes(poolDir: string, warn: (msg: string) => void): Promise<void> {
  for (const uuid of await fs.readdir(poolDir).catch(() => [] as string[])) {
    if (!/^[0-9a-f-]{36}$/.test(uuid)) continue;
    const dir = path.join(poolDir, uuid);
    for (const f of await fs.readdir(dir).catch(() => [] as string[])) {
      // One volume that cannot be mounted fails its qube's start, not isolad.
      if (f.endsWith('.img')) await mountVolumeFs(path.join(dir, f.slice(0, -4))).catch((e: Error) => warn(e.message));
    }
  }
}

/**
 * Shrinks an unmounted-able volume's filesystem back to size (after a squash grew it), then
 * mounts it again. If its directory is busy the unmount fails and the volume stays larger until
 * the next squash: never a lazy unmount here, which would leave the shrink racing a user.
 */
export async function shrinkVolumeFs(volDir: string, size: number): Promise<void> {
  const img = imageOf(volDir);
  const bytes = Math.ceil(size / 4096) * 4096;
  if ((await fs.stat(img)).size <= bytes) return;
  if (isMounted(volDir)) await tool('umount', [volDir], `umount ${volDir}`);
  try {
    await checkFs(img);
    await tool('resize2fs', [img, `${bytes / 1024}K`], `resize2fs ${img}`);
    await fs.truncate(img, bytes);
  } finally {
    await mountVolumeFs(volDir);
  }
}

/** Mounted elsewhere too (the idmapped bind of its layers under a running qube's run dir)? */
function inUse(volDir: string): boolean {
  const rows = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((l) => l.split(' '));
  const dev = rows.find((r) => r[4] === volDir)?.[2];
  return dev !== undefined && rows.filter((r) => r[2] === dev).length > 1;
}

/** A loop device still backed by the image after its unmount: someone else holds the filesystem. */
async function stillAttached(img: string): Promise<boolean> {
  for (let i = 0; i < 5; i++) {
    const out = await run('losetup', ['-j', img]).then((r) => r.stdout.trim(), () => '');
    if (!out) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/**
 * Flushes a volume's filesystem to its image (syncfs: reports a failed writeback). Volume images
 * are sparse and may overcommit the pool, as Qubes' thin volumes do: when the pool is full, the
 * writeback fails with an I/O error instead of the write with ENOSPC.
 */
export async function syncVolume(volDir: string, poolDir: string): Promise<void> {
  if (!isMounted(volDir)) return;
  try {
    await run('sync', ['-f', volDir]);
  } catch (e) {
    throw await explainFull(new Error(`writing ${volDir} failed: ${((e as { stderr?: string }).stderr || (e as Error).message).trim()}`), poolDir);
  }
}

/** An error while the pool is (nearly) full is said to be what it is: no space left. */
export async function explainFull(e: Error, poolDir: string): Promise<Error> {
  const st = await fs.statfs(poolDir).catch(() => undefined);
  if (!st || st.bavail * st.bsize > 4 * 1024 * 1024 || /No space left/.test(e.message)) return e;
  return new Error(`No space left on device: pool ${poolDir} is full (${e.message.split('\n')[0]})`);
}
