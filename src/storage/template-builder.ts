// Builds a template's root filesystem tarball from Debian's archive with mmdebstrap, cached by recipe,
// and extracts a tarball into a directory. A killed or failed build never leaves a usable-looking file.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QubesError } from '../core/errors';
import {
  MmdebstrapProgress,
  TemplateRecipe,
  customizeScript,
  defaultTemplateCacheDir,
  mmdebstrapErrorLine,
  parsePartialFileName,
  partialFileName,
  tarballFileName,
  templateKey,
  templateRecipe,
} from './template-cache';

/** The build tree, the debs and the tarball all exist at once for a moment: ~700 MB for debian-12. */
export const MIN_FREE_BYTES = 1024 ** 3;

export interface BuildOptions {
  name: string;
  /** Directory holding the tarballs; default `${ISOLA_CACHE:-/var/cache/isola}/templates`. */
  cacheDir?: string;
  onProgress?: (fraction: number, stage: string) => void;
  signal?: AbortSignal;
  /** Where mmdebstrap builds its temporary tree (needs ~700 MB, not nodev); default $TMPDIR or /tmp. */
  workDir?: string;
  /** Overrides the known recipe for `name` (custom templates, tests). */
  recipe?: TemplateRecipe;
}

export interface BuildResult {
  tarball: string;
  fromCache: boolean;
  key: string;
}

const fail = (message: string) => new QubesError('QubesException', message);

// Two callers asking for the same tarball in one process share one mmdebstrap run.
const inFlight = new Map<string, Promise<BuildResult>>();

export async function buildTemplate(opts: BuildOptions): Promise<BuildResult> {
  const recipe = opts.recipe ?? templateRecipe(opts.name);
  const cacheDir = opts.cacheDir ?? defaultTemplateCacheDir();
  const key = templateKey(recipe);
  const tarball = join(cacheDir, tarballFileName(recipe.name, key));
  const progress = opts.onProgress ?? (() => {});

  if (await isNonEmptyFile(tarball)) {
    progress(1, 'cached');
    return { tarball, fromCache: true, key };
  }
  const running = inFlight.get(tarball);
  if (running) return running;
  const build = (async () => {
    await fsp.mkdir(cacheDir, { recursive: true });
    await removeStalePartials(cacheDir);
    await requireFreeSpace(cacheDir, recipe.name);
    const workDir = opts.workDir ?? tmpdir();
    await fsp.mkdir(workDir, { recursive: true });
    if (workDir !== cacheDir) await requireFreeSpace(workDir, recipe.name);
    const partial = join(cacheDir, partialFileName(recipe.name, key, process.pid));
    try {
      await runMmdebstrap(recipe, partial, workDir, progress, opts.signal);
      await fsp.rename(partial, tarball);
    } catch (e) {
      await fsp.rm(partial, { force: true });
      throw e;
    }
    await pruneOtherKeys(cacheDir, recipe.name, tarball);
    progress(1, 'done');
    return { tarball, fromCache: false, key };
  })();
  inFlight.set(tarball, build);
  try {
    return await build;
  } finally {
    inFlight.delete(tarball);
  }
}

function mmdebstrapArgs(recipe: TemplateRecipe, output: string): string[] {
  return [
    '--verbose',
    `--variant=${recipe.variant}`,
    '--format=tar',
    '--skip=cleanup/run',
    `--include=${[...new Set(recipe.packages)].join(',')}`,
    `--customize-hook=${customizeScript(recipe)}`,
    recipe.suite,
    output,
    ...recipe.mirrors,
  ];
}

function runMmdebstrap(
  recipe: TemplateRecipe,
  output: string,
  workDir: string,
  onProgress: (fraction: number, stage: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(fail(`Template '${recipe.name}' build aborted`));
    // Own process group: on abort the whole tree (apt, dpkg) must go, or mmdebstrap waits for it to finish.
    const child = spawn('mmdebstrap', mmdebstrapArgs(recipe, output), {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: { ...process.env, TMPDIR: workDir, LC_ALL: 'C.UTF-8', DEBIAN_FRONTEND: 'noninteractive' },
    });
    const parser = new MmdebstrapProgress();
    const tail: string[] = [];
    let aborted = false;
    let tempdir: string | undefined;
    const onLine = (line: string) => {
      tempdir ??= /^I: using (\S+) as tempdir$/.exec(line)?.[1];
      tail.push(line);
      if (tail.length > 300) tail.shift();
      const p = parser.feed(line);
      if (p && p.fraction < 1) onProgress(p.fraction, p.stage);
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', onLine);
    const killGroup = (sig: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, sig);
      } catch {
        /* already gone */
      }
    };
    let forceKill: NodeJS.Timeout | undefined;
    const onAbort = () => {
      aborted = true;
      killGroup('SIGTERM');
      // mmdebstrap removes its temp tree on TERM; give it time to unmount before insisting.
      forceKill = setTimeout(() => killGroup('SIGKILL'), 30_000);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (e: NodeJS.ErrnoException) => {
      signal?.removeEventListener('abort', onAbort);
      reject(
        fail(
          e.code === 'ENOENT'
            ? `Template '${recipe.name}': mmdebstrap is not installed; run: apt-get install -y mmdebstrap`
            : `Template '${recipe.name}': cannot run mmdebstrap: ${e.message}`,
        ),
      );
    });
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', onAbort);
      if (forceKill) clearTimeout(forceKill);
      if (code === 0 && !aborted) return resolve();
      const why = code === null ? `mmdebstrap killed by ${sig}` : `mmdebstrap exited with ${code}`;
      const nospc = tail.some((l) => /No space left on device/.test(l)) ? ' (no space left on device)' : '';
      const error = fail(
        aborted
          ? `Template '${recipe.name}' build aborted`
          : `Template '${recipe.name}' build failed: ${why}${nospc}: ${mmdebstrapErrorLine(tail)}`,
      );
      // A TERM that lands while mmdebstrap sets up its chroot can leave mounts and the tree behind.
      killGroup('SIGKILL');
      (tempdir ? removeMmdebstrapTempdir(tempdir) : Promise.resolve()).then(() => reject(error), () => reject(error));
    });
  });
}

/** Unmounts whatever mmdebstrap left mounted under its temp tree, then removes the tree. */
export async function removeMmdebstrapTempdir(dir: string): Promise<void> {
  if (!/^\/(?:[^/\s]+\/)*mmdebstrap\.[A-Za-z0-9_]+$/.test(dir)) return; // only ever mmdebstrap's own tree
  if (!(await fsp.stat(dir).then(() => true, () => false))) return;
  const mounted = async () =>
    (await fsp.readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .map((l) => l.split(' ')[4])
      .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
      .sort((a, b) => b.length - a.length);
  for (const m of await mounted()) {
    if ((await run('umount', [m])).code !== 0) await run('umount', ['-l', m]);
  }
  // Never recurse into something still mounted: it could be the host's /dev or /sys.
  if ((await mounted()).length === 0) await run('rm', ['-rf', '--one-file-system', dir]);
}

async function isNonEmptyFile(path: string): Promise<boolean> {
  try {
    const st = await fsp.stat(path);
    return st.isFile() && st.size > 0;
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes .partial files whose builder is gone (killed isolad, power loss). */
export async function removeStalePartials(cacheDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const f of await fsp.readdir(cacheDir).catch(() => [] as string[])) {
    const p = parsePartialFileName(f);
    if (!p) continue;
    if (p.pid !== process.pid && pidAlive(p.pid)) continue;
    if (p.pid === process.pid && inFlight.has(join(cacheDir, p.tarball))) continue;
    await fsp.rm(join(cacheDir, f), { force: true });
    removed.push(f);
  }
  return removed;
}

// Older builds of the same template are only sources for new template qubes; the newest wins.
async function pruneOtherKeys(cacheDir: string, name: string, keep: string): Promise<void> {
  const re = new RegExp(`^${name.replace(/[.]/g, '\\.')}-[0-9a-f]{12}\\.tar$`);
  for (const f of await fsp.readdir(cacheDir)) {
    if (re.test(f) && join(cacheDir, f) !== keep) await fsp.rm(join(cacheDir, f), { force: true });
  }
}

async function requireFreeSpace(dir: string, name: string): Promise<void> {
  const st = await fsp.statfs(dir);
  const free = st.bavail * st.bsize;
  if (free < MIN_FREE_BYTES) {
    const mib = (n: number) => `${Math.floor(n / 1024 ** 2)} MiB`;
    throw fail(`Template '${name}': only ${mib(free)} free in ${dir}, building needs ${mib(MIN_FREE_BYTES)}; free some space or point ISOLA_CACHE/TMPDIR elsewhere`);
  }
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-8192)));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Extracts a template tarball into `destDir` (absent or empty), keeping owners, modes and xattrs. */
export async function extractTemplate(tarball: string, destDir: string): Promise<number> {
  const existing = await fsp.readdir(destDir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw fail(`Cannot extract template into ${destDir}: ${e.message}`);
  });
  if (existing.length > 0) throw fail(`Cannot extract template into ${destDir}: directory is not empty`);
  if (!(await isNonEmptyFile(tarball))) throw fail(`Cannot extract template: ${tarball} is missing or empty`);
  await fsp.mkdir(destDir, { recursive: true });
  try {
    const tar = await run('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', destDir, '-xpf', tarball]);
    if (tar.code !== 0) {
      // tar's last line is only "Exiting with failure status"; the one before says why (e.g. no space).
      // Only the tail of stderr is kept, so the first line may be cut: use the last complete one.
      const errs = tar.stderr.trim().split('\n').filter((l) => l && !/Exiting with failure status/.test(l));
      const last = errs.pop()?.replace(/^tar: /, '') ?? `exit ${tar.code}`;
      throw fail(`Cannot extract ${tarball} into ${destDir}: ${last}`);
    }
    const du = await run('du', ['-sb', destDir]);
    const bytes = Number(du.stdout.split('\t')[0]);
    if (du.code !== 0 || !Number.isFinite(bytes)) throw fail(`Cannot measure ${destDir}: ${du.stderr.trim()}`);
    return bytes;
  } catch (e) {
    await fsp.rm(destDir, { recursive: true, force: true });
    throw e instanceof QubesError ? e : fail(`Cannot extract ${tarball} into ${destDir}: ${(e as Error).message}`);
  }
}
