// Walks and deletions over trees a qube wrote. Node's fs takes string paths: a name that is not
// UTF-8 or a path over 4096 bytes (both a qube's choice) breaks it. These run tools that work on
// descriptors and bytes instead: isola-tree (src/native) and GNU rm (fts, any depth).

import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Path of the compiled tree helper (built from src/native by scripts/build.sh). */
export function treeHelperPath(): string {
  return process.env.ISOLA_TREE_HELPER || path.resolve(__dirname, '../../libexec/isola-tree');
}

/** Runs isola-tree; its messages already name paths with unprintable bytes escaped. */
export async function treeTool(args: string[]): Promise<string> {
  try {
    return (await run(treeHelperPath(), args, { maxBuffer: 16 << 20 })).stderr;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    const lines = (err.stderr || err.message).trim().split('\n');
    throw new Error(lines.slice(-3).join('; '));
  }
}

/** Copies SRC's contents into the empty directory DST: owners, modes, xattrs, links, holes. */
export async function copyTree(src: string, dst: string): Promise<void> {
  await treeTool(['copy', src, dst]);
}

/**
 * Deletes a tree, never crossing into another filesystem (a mount left inside stays, and the
 * call fails). Only absolute paths below a top-level directory: never '/' or a relative path.
 */
export async function removeTree(dir: string, retries = 10): Promise<void> {
  const abs = path.resolve(dir);
  if (abs !== dir.replace(/\/+$/, '') || abs.split('/').filter(Boolean).length < 2) throw new Error(`refusing to delete '${dir}'`);
  if (!(await fs.lstat(abs).catch(() => undefined))) return; // nothing there: spare the spawn
  for (let i = 0; ; i++) {
    try {
      await run('rm', ['-rf', '--one-file-system', '--', abs]);
      return;
    } catch (e) {
      // A helper of a killed isolad (isola-tree copy) may still be writing there for a moment.
      if (i >= retries) {
        const err = e as { stderr?: string; message: string };
        throw new Error(`cannot delete ${abs}: ${(err.stderr || err.message).trim().split('\n').slice(-2).join('; ')}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
