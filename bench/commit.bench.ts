// npm run bench: the commit of a private volume (the id shift over the qube's upper dir) with
// 100 000 small files, for the old JS walk (string paths, kept here as the baseline) and for
// isola-tree unshift (descriptor-relative, byte-safe), alternated in the same run.
// `--files N` sets the number of files. Writes bench/results/commit-<time>.json.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, promises as fs, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { unshiftTree } from '../src/storage/id-shift';
import { report } from './report';

const ROUNDS = 3;
const BASE = 60100 * 65536;
const COUNT = 65536;

/** The commit's walk before issue 8 (UTF-8 names, string paths): the baseline. */
async function oldUnshiftTree(dir: string, base: number, count: number): Promise<number> {
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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (chown)');
  const filesArg = process.argv.indexOf('--files');
  const files = filesArg > 0 ? Number(process.argv[filesArg + 1]) : 100_000;
  const home = mkdtempSync(path.join(os.tmpdir(), 'isola-bench-commit-'));
  const upper = path.join(home, 'upper');
  try {
    // A home directory's shape: 1000 directories of 100 small files.
    for (let d = 0; d < Math.ceil(files / 100); d++) {
      const dir = path.join(upper, 'home', 'user', `d${d}`);
      mkdirSync(dir, { recursive: true });
      for (let f = 0; f < 100 && d * 100 + f < files; f++) writeFileSync(path.join(dir, `f${f}`), 'x');
    }
    const shift = () => execFileSync('chown', ['-R', '-h', `${BASE + 1000}:${BASE + 1000}`, upper]);
    const old: number[] = [];
    const now: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      shift();
      old.push(await timed(() => oldUnshiftTree(upper, BASE, COUNT)));
      shift();
      now.push(await timed(() => unshiftTree(upper, BASE, COUNT)));
    }
    const rows = [
      { what: `commit id shift, ${files} files: old JS walk (baseline)`, value: median(old), unit: 'ms', runs: old },
      { what: `commit id shift, ${files} files: isola-tree unshift`, value: median(now), unit: 'ms', runs: now },
    ];
    const lines = [['measure', 'median', 'runs'], ...rows.map((r) => [r.what, `${r.value.toFixed(0)} ${r.unit}`, r.runs.map((x) => x.toFixed(0)).join(', ')])];
    lines.push(['ratio new / old', `${(median(now) / median(old)).toFixed(2)}×`, '']);
    report('commit', lines, { files, rounds: ROUNDS, rows });
  } finally {
    execFileSync('rm', ['-rf', '--one-file-system', '--', home]);
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exit(1);
});
