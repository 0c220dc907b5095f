// The pool directory as its own filesystem: `ISOLA_HOME/pools/default.img`, a sparse ext4 image
// loop-mounted on `pools/default`, sized at creation to the host filesystem's free space minus a
// reserve (or ISOLA_POOL_SIZE). Volumes, however many and however overcommitted their sizes,
// then never fill the host filesystem that holds isolad's database and logs.

import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { promisify } from 'node:util';
import { isMounted } from './mounts';
import { loopDirectIo } from './volume-fs';

const run = promisify(execFile);
const GiB = 1024 ** 3;
/** Room for a few small volumes' metadata: below it the host is too full to make a pool. */
const MIN_POOL = 64 * 1024 ** 2;

export type PoolMode = 'image' | 'legacy';

export interface PoolFsStatus {
  mode: PoolMode;
  /** Why (for the log and `isola doctor`). */
  detail: string;
}

/** Bytes from `512M`, `8G`, `1T` or a plain number (powers of 1024); undefined if unset or bad. */
export function parsePoolSize(untrusted: string | undefined): number | undefined {
  const m = /^([0-9]+)([KMGT]?)(?:i?B)?$/i.exec((untrusted ?? '').trim());
  if (!m) return undefined;
  const bytes = Number(m[1]) * 1024 ** (' KMGT'.indexOf((m[2] || ' ').toUpperCase()));
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
}

/** What stays free on the host filesystem: 5 % of it, at least 2 GiB (at most 10 % on a small one). */
export function hostReserve(fsSize: number): number {
  return Math.min(Math.max(2 * GiB, Math.floor(fsSize * 0.05)), Math.floor(fsSize * 0.1));
}

/**
 * Mounts the pool image on poolDir, creating it first if there is none (idempotent: already
 * mounted after an isolad restart is fine). A non-empty plain directory is a legacy pool: it
 * keeps working: new volumes are still bounded (volume-fs), the pool as a whole is not.
 */
export async function preparePoolFs(poolDir: string, env: NodeJS.ProcessEnv = process.env): Promise<PoolFsStatus> {
  const img = `${poolDir}.img`;
  if (isMounted(poolDir)) return { mode: 'image', detail: `pool ${poolDir} mounted from ${img}` };
  const hasImage = await fs.access(img).then(() => true, () => false);
  await fs.mkdir(poolDir, { recursive: true, mode: 0o700 });
  if (!hasImage) {
    const entries = await fs.readdir(poolDir);
    if (entries.length > 0) {
      return { mode: 'legacy', detail: `pool ${poolDir} is a plain directory (made by an older isolad): volumes can fill the host filesystem, and those made before have no size or inode bounds (new ones do); move the qubes to a new ISOLA_HOME to get both` };
    }
    const st = await fs.statfs(poolDir);
    const free = st.bavail * st.bsize;
    const size = parsePoolSize(env.ISOLA_POOL_SIZE) ?? free - hostReserve(st.blocks * st.bsize);
    if (size < MIN_POOL) throw new Error(`pool ${poolDir}: only ${Math.floor(free / 2 ** 20)} MiB free on the host filesystem; free some space or set ISOLA_POOL_SIZE`);
    const h = await fs.open(img, 'wx', 0o600);
    try {
      await h.truncate(Math.floor(size / 4096) * 4096);
    } finally {
      await h.close();
    }
    // Few, large files (volume images): a small inode table.
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-T', 'huge', '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard', img])
      .catch(async (e: { stderr?: string; message: string }) => {
        await fs.rm(img, { force: true });
        throw new Error(`mkfs ${img}: ${(e.stderr || e.message).trim()}`);
      });
  }
  await run('mount', ['-t', 'ext4', '-o', 'loop,noinit_itable', img, poolDir]).catch((e: { stderr?: string; message: string }) => {
    throw new Error(`mount ${img} on ${poolDir}: ${(e.stderr || e.message).split('\n')[0].trim()}`);
  });
  await loopDirectIo(poolDir);
  await fs.rmdir(`${poolDir}/lost+found`).catch(() => undefined);
  await fs.chmod(poolDir, 0o700);
  return { mode: 'image', detail: `pool ${poolDir} mounted from ${img}` };
}
