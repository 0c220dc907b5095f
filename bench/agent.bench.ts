// The agent's cost in an idle qube and on the two paths every call takes: its resident memory (RSS and
// PSS from /proc/PID/smaps_rollup of the agent process, found through runc's state of the qube), the
// latency of `qvm-run -p work true` (median of 30), and `head -c 1G /dev/zero` out of the qube.
// Run it from a baseline tree and from this one to compare (same machine, one after the other).

import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { BIN, Instance } from '../test/integration/harness';
import { report } from './report';

const RUNS = 30;

/** The agent's pid on the host: the qube's init, or its child when the init is tini (older builds). */
function agentPid(inst: Instance, id: string): number {
  const state = JSON.parse(execFileSync('runc', ['--root', inst.config.runcRoot, 'state', id], { encoding: 'utf8' })) as { pid: number };
  const comm = readFileSync(`/proc/${state.pid}/comm`, 'utf8').trim();
  if (comm !== 'tini') return state.pid;
  const children = readFileSync(`/proc/${state.pid}/task/${state.pid}/children`, 'utf8').trim().split(' ').map(Number);
  return children.find((c) => readFileSync(`/proc/${c}/comm`, 'utf8').trim() === 'node') ?? children[0];
}

function smaps(pid: number): { rssKiB: number; pssKiB: number; comm: string } {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1]);
  return { rssKiB: field('Rss'), pssKiB: field('Pss'), comm: readFileSync(`/proc/${pid}/comm`, 'utf8').trim() };
}

async function main(): Promise<void> {
  const inst = new Instance();
  try {
    await inst.start();
    await inst.installTemplate();
    await inst.ok('qvm-create', '--label', 'blue', 'work');
    await inst.ok('qvm-start', 'work');
    await inst.ok('qvm-run', '-p', 'work', 'true');
    const ids = readdirSync(inst.config.runcRoot).filter((d) => d.startsWith('work.'));
    await new Promise((r) => setTimeout(r, 2000)); // idle
    const pid = agentPid(inst, ids[0]);
    const idle = smaps(pid);
    const lat: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = process.hrtime.bigint();
      await inst.ok('qvm-run', '-p', 'work', 'true');
      lat.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    lat.sort((a, b) => a - b);
    const t = process.hrtime.bigint();
    const r = await inst.cli('qvm-run', ['-p', 'work', 'head -c 1073741824 /dev/zero | wc -c']);
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    if (r.stdout.trim() !== '1073741824') throw new Error(`head -c: ${r.stdout} ${r.stderr}`);
    // The real transfer: 1 GiB through the agent to the CLI, discarded there.
    const t2 = process.hrtime.bigint();
    execFileSync('sh', ['-c', `"$0" -p work 'head -c 1073741824 /dev/zero' > /dev/null`, path.join(BIN, 'qvm-run')], { env: inst.env });
    const ms2 = Number(process.hrtime.bigint() - t2) / 1e6;
    const after = smaps(pid);
    const rows = [
      ['measure', 'value'],
      [`agent process (${idle.comm}) RSS idle`, `${(idle.rssKiB / 1024).toFixed(1)} MiB`],
      [`agent process (${idle.comm}) PSS idle`, `${(idle.pssKiB / 1024).toFixed(1)} MiB`],
      ['agent RSS after 1 GiB out', `${(after.rssKiB / 1024).toFixed(1)} MiB`],
      [`qvm-run -p work true, median of ${RUNS}`, `${lat[Math.floor(RUNS / 2)].toFixed(1)} ms`],
      [`qvm-run -p work true, p90 of ${RUNS}`, `${lat[Math.floor(RUNS * 0.9)].toFixed(1)} ms`],
      ['qvm-run -p work head -c 1G /dev/zero > /dev/null', `${(1073.741824 / (ms2 / 1000)).toFixed(0)} MB/s`],
      ['(context: head -c 1G /dev/zero | wc -c inside the qube, whole call)', `${ms.toFixed(0)} ms`],
    ];
    report('agent', rows, { idle, after, latencyMs: lat, gibOutMs: ms2 });
  } finally {
    await inst.destroy();
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exit(1);
});
