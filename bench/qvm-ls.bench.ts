// qvm-ls over many qubes (default 100 halted AppVMs in a fresh isolad): `qvm-ls` and `qvm-ls -o
// prefs`, wall time of the whole command as a user runs it. With `--baseline DIR` (a built checkout
// of an older Isola) its bin/qvm-ls runs against the same isolad, interleaved, and the ratio is shown.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { Instance } from '../test/integration/harness';
import { report } from './report';

const RUNS = 25;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

/** Runs one qvm-ls binary to completion and returns its wall time in ms (fails on a non-zero exit). */
function timeLs(bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const t = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Number(process.hrtime.bigint() - t) / 1e6) : reject(new Error(`${bin} ${args.join(' ')}: exit ${code}: ${err}`))));
  });
}

async function main(): Promise<void> {
  const many = Number(argValue('--qubes') ?? 100);
  const baselineDir = argValue('--baseline') ?? process.env.ISOLA_BENCH_BASELINE;
  const inst = new Instance();
  const rows: { what: string; value: number; baseline?: number }[] = [];
  try {
    await inst.start();
    await inst.installTemplate();
    for (let i = 0; i < many; i++) await inst.ok('qvm-create', '--label', 'gray', `q${String(i).padStart(3, '0')}`);
    const candidate = path.join(__dirname, '..', '..', 'bin', 'qvm-ls');
    const baseline = baselineDir ? path.join(baselineDir, 'bin', 'qvm-ls') : undefined;
    for (const args of [[], ['-o', 'prefs']]) {
      const mine: number[] = [];
      const old: number[] = [];
      await timeLs(candidate, args, inst.env); // warm the page cache and isolad's statements
      if (baseline) await timeLs(baseline, args, inst.env);
      for (let i = 0; i < RUNS; i++) {
        mine.push(await timeLs(candidate, args, inst.env));
        if (baseline) old.push(await timeLs(baseline, args, inst.env));
      }
      rows.push({ what: `qvm-ls ${args.join(' ')}`.trim() + ` (${many + 2} qubes)`, value: median(mine), baseline: baseline ? median(old) : undefined });
    }
  } finally {
    await inst.destroy();
  }
  const fmt = (n: number) => n.toFixed(0);
  const table = [['measure', 'this tree', 'baseline (same run)', 'ratio']];
  for (const r of rows) table.push([r.what, `${fmt(r.value)} ms`, r.baseline ? `${fmt(r.baseline)} ms` : '-', r.baseline ? `${(r.value / r.baseline).toFixed(2)}×` : '-']);
  report('qvm-ls', table, { runs: RUNS, qubes: many, baseline: baselineDir ?? null, rows });
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exit(1);
});
