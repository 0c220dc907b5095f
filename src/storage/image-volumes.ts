// Volumes for a VM (form `image`). A guest never writes a filesystem the host keeps: the volume's own
// image (its committed layers) is attached read-only, and the run's changes go to a scratch disk of
// their own, `VOL.changes` beside the volume's image. At stop the changes of a volume that keeps them are
// imported into the volume as the run's upper (then committed like a sandbox's); the others are deleted.

import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { DiskDir, VolumeDisk } from '../core/backend';
import { isMounted, unmount } from './mounts';
import { removeTree, treeTool } from './tree-tool';
import { BYTES_PER_INODE, MIN_VOLUME_SIZE } from './volume-fs';

const run = promisify(execFile);

/** The scratch disk of one volume's run, beside its image (never named `.img`: the pool mounts those). */
export function changesFile(volDir: string): string {
  return `${volDir}.changes`;
}

/** Owner and mode the run's upper directory takes: those of the top layer's root, as for a sandbox. */
export interface TopOwner {
  uid: number;
  gid: number;
  mode: number;
}

/**
 * A fresh ext4 scratch disk of `bytes` (sparse) holding `upper/` (owned as the top layer's root) and
 * `work/`, made from a template directory with `mkfs.ext4 -d`: the guest mounts it as it is.
 */
export async function makeChangesDisk(file: string, bytes: number, top: TopOwner, tmpRoot: string): Promise<void> {
  const size = Math.max(MIN_VOLUME_SIZE, Math.floor(bytes / 4096) * 4096);
  const seed = path.join(tmpRoot, `seed-${path.basename(file)}`);
  await removeTree(seed);
  await fs.mkdir(path.join(seed, 'upper'), { recursive: true });
  await fs.mkdir(path.join(seed, 'work'), { mode: 0o700 });
  await fs.chown(path.join(seed, 'upper'), top.uid, top.gid);
  await fs.chmod(path.join(seed, 'upper'), top.mode & 0o7777);
  await fs.rm(file, { force: true });
  const h = await fs.open(file, 'wx', 0o600);
  try {
    await h.truncate(size);
  } finally {
    await h.close();
  }
  try {
    const inodes = String(Math.max(1024, Math.floor(size / BYTES_PER_INODE)));
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-N', inodes, '-d', seed, '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0', file]);
  } catch (e) {
    await fs.rm(file, { force: true });
    throw new Error(`cannot make the scratch disk ${file}: ${firstLine(e)}`);
  } finally {
    await removeTree(seed);
  }
}

/**
 * Makes a mounted volume's on-disk state current for a reader outside this kernel (a guest reading its
 * image read-only, without replaying the journal): freezing checkpoints the journal, thawing resumes.
 */
export async function settleForReaders(volDir: string): Promise<void> {
  if (!isMounted(volDir)) return;
  await run('fsfreeze', ['--freeze', volDir]);
  await run('fsfreeze', ['--unfreeze', volDir]);
}

/** The disks of a volume the guest assembles from its own layers plus a scratch disk for the run. */
export function layeredImage(image: string, layers: string[], changes: string): { disks: VolumeDisk[]; lower: DiskDir[]; upper: DiskDir } {
  return {
    disks: [{ file: image, readonly: true }, { file: changes, readonly: false }],
    lower: layers.map((l) => ({ disk: 0, dir: `layers/${l}` })),
    upper: { disk: 1, dir: 'upper' },
  };
}

/**
 * Brings a run's changes from its scratch disk into `dirty/upper` of the volume (where a sandbox run
 * leaves them), to be committed as a layer. The scratch was written by a guest: it is repaired first,
 * mounted without devices, suid or exec, and its tree imported (device nodes and overlay xattrs other
 * than opacity left out). Returns whether it held any change. The scratch disk is deleted afterwards.
 */
export async function importChanges(changes: string, volDir: string, mnt: string, warn: (line: string) => void): Promise<boolean> {
  try {
    await fs.access(changes);
  } catch {
    return false;
  }
  // The scratch disk goes only once its changes are safe in the volume: a failure keeps it for the next try.
  await fs.mkdir(mnt, { recursive: true, mode: 0o700 });
  let changed = false;
  try {
    // e2fsck: 1 = errors corrected, 2 = corrected, reboot advised (a running system's root): both fine here.
    await run('e2fsck', ['-f', '-y', changes]).catch((e: { code?: number }) => {
      if (e.code !== 1 && e.code !== 2) throw new Error(`the scratch disk ${changes} cannot be repaired: ${firstLine(e)}`);
    });
    await run('mount', ['-t', 'ext4', '-o', 'ro,loop,nodev,nosuid,noexec,noload', changes, mnt]);
    try {
      const upper = path.join(mnt, 'upper');
      const names = await fs.readdir(upper, { encoding: 'buffer' }).catch(() => [] as Buffer[]);
      if (names.length > 0) {
        const target = path.join(volDir, 'dirty', 'upper');
        await fs.mkdir(path.dirname(target), { recursive: true });
        await fs.mkdir(target); // EEXIST: another run's changes are pending there, never overwritten
        await fs.chown(target, (await fs.stat(upper)).uid, (await fs.stat(upper)).gid);
        const warnings = (await treeTool(['import', upper, target])).trim();
        if (warnings) warn(`import of ${changes}: ${warnings}`);
        changed = true;
      }
    } finally {
      await unmount(mnt);
    }
  } finally {
    await fs.rmdir(mnt).catch(() => undefined);
  }
  await fs.rm(changes, { force: true });
  return changed;
}

/** Free bytes of a mounted volume filesystem: what a run may add to it so that its import still fits. */
export async function roomIn(volDir: string): Promise<number> {
  const st = await fs.statfs(volDir);
  return st.bavail * st.bsize;
}

function firstLine(e: unknown): string {
  const err = e as { stderr?: string; message?: string };
  return String(err.stderr || err.message || e).trim().split('\n')[0];
}
