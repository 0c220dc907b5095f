// Moves files written by a qube (owned by its shifted host ids) back to real ids before they
// become a committed layer, so layers can be shared by qubes with different id ranges.

import { promises as fs } from 'node:fs';
import path from 'node:path';

/**
 * Walks dir and maps owner ids in [base, base+count) to id-base. Ids outside the range (overlay's
 * whiteouts, made by the mounter as real root) are left alone. chown clears set-id bits, so
 * they are put back.
 */
export async function unshiftTree(dir: string, base: number, count: number): Promise<number> {
  let changed = 0;
  const inRange = (id: number) => id >= base && id < base + count;
  async function visit(p: string): Promise<void> {
    const st = await fs.lstat(p);
    if (inRange(st.uid) || inRange(st.gid)) {
      const uid = inRange(st.uid) ? st.uid - base : st.uid;
      const gid = inRange(st.gid) ? st.gid - base : st.gid;
      await fs.lchown(p, uid, gid);
      if (!st.isSymbolicLink() && (st.mode & 0o6000) !== 0) await fs.chmod(p, st.mode & 0o7777);
      changed++;
    }
    if (st.isDirectory()) {
      for (const name of await fs.readdir(p)) await visit(path.join(p, name));
    }
  }
  await visit(dir);
  return changed;
}
