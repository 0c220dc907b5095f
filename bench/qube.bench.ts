// npm run bench: qube start, qvm-run latency and memory per qube, each against its floor measured
// in the same run (runc run / runc exec of the same root and config). Prints a table and writes
// bench/results/qube-<time>.json. `--qubes N` sets the size of the many-qubes run (default 100).

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Instance } from '../test/integration/harness';
import { AdminClient } from '../src/cli/admin-client';
import { report } from './report';

const RUNS = 20;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function timeIt(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

async function timeAsync(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

function pssKiB(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * Every process an idle qube costs the host: the runtime's processes of the qube, and its console relay
 * on the host (isola-log-relay, which names the qube's log file in its argv).
 */
function qubePids(inst: Instance, id: string, vm: string): number[] {
  const pids = JSON.parse(inst.runc('ps', '--format', 'json', id)) as number[];
  const log = `guest-${vm}.log`;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'latin1').split('\0');
      if (argv[0]?.endsWith('isola-log-relay') && argv.some((a) => a.endsWith(log))) pids.push(Number(p));
    } catch {
      /* exited */
    }
  }
  return pids;
}

function memUsedMiB(): number {
  const info = readFileSync('/proc/meminfo', 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(info)![1]);
  return (kb('MemTotal') - kb('MemAvailable')) / 1024;
}

async function main(): Promise<void> {
  const qubesArg = process.argv.indexOf('--qubes');
  const many = qubesArg > 0 ? Number(process.argv[qubesArg + 1]) : 100;
  const inst = new Instance();
  const rows: { what: string; value: number; unit: string; baseline?: number; goal?: string }[] = [];
  try {
    await inst.start();
    await inst.installTemplate();
    await inst.ok('qvm-create', '--label', 'blue', 'work');

    // --- start until the agent answered: through the Admin API (what the manager and a script pay),
    // and through qvm-start (adds the CLI's own Node start-up); vs runc run of the same root with /bin/true
    const admin = new AdminClient(String(inst.env.ISOLA_SOCKET));
    const starts: number[] = [];
    const apiStarts: number[] = [];
    const daemonStarts: number[] = [];
    const phases: Record<string, number[]> = {};
    for (let i = 0; i < 2 * RUNS; i++) {
      const logBefore = inst.daemonLog.length;
      if (i % 2) starts.push(await timeAsync(() => inst.ok('qvm-start', 'work')));
      else apiStarts.push(await timeAsync(() => admin.call('admin.vm.Start', 'work')));
      const m = /work: started in (\d+) ms \(([^)]*)\)/.exec(inst.daemonLog.slice(logBefore));
      if (m) {
        daemonStarts.push(Number(m[1]));
        for (const [, step, ms] of m[2].matchAll(/(\w+) (\d+) ms/g)) (phases[step] ??= []).push(Number(ms));
      }
      if (i < 2 * RUNS - 1) await admin.call('admin.vm.Kill', 'work');
    }
    const id = inst.runtimeId('work');
    const cfg = JSON.parse(readFileSync(path.join(inst.config.bundleRoot, id, 'config.json'), 'utf8'));
    const floorBundle = path.join(inst.home, 'floor-bundle');
    mkdirSync(floorBundle, { recursive: true });
    cfg.process.args = ['/bin/true'];
    cfg.linux.cgroupsPath = `/${inst.config.cgroupParent}/floor`;
    writeFileSync(path.join(floorBundle, 'config.json'), JSON.stringify(cfg));
    const floors: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      floors.push(timeIt(() => spawnSync('runc', ['--root', inst.config.runcRoot, 'run', '--bundle', floorBundle, `floor-${i}`], { stdio: 'ignore' })));
      spawnSync('runc', ['--root', inst.config.runcRoot, 'delete', '--force', `floor-${i}`], { stdio: 'ignore' });
    }
    rows.push({ what: 'qube start (admin.vm.Start until the agent answers)', value: median(apiStarts), unit: 'ms', baseline: median(floors), goal: '≤ 2.5× floor' });
    rows.push({ what: '  of which inside isolad', value: median(daemonStarts), unit: 'ms', baseline: median(floors), goal: '≤ 2× floor' });
    for (const [step, ms] of Object.entries(phases)) rows.push({ what: `    step ${step}`, value: median(ms), unit: 'ms' });
    rows.push({ what: 'qube start (qvm-start, with the CLI\'s start-up)', value: median(starts), unit: 'ms', baseline: median(floors) });

    // --- exec: qvm-run -p work true vs runc exec of true
    const execs: number[] = [];
    const execFloors: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      execs.push(await timeAsync(() => inst.ok('qvm-run', '-p', 'work', 'true')));
      execFloors.push(timeIt(() => spawnSync('runc', ['--root', inst.config.runcRoot, 'exec', id, 'true'], { stdio: 'ignore' })));
    }
    rows.push({ what: 'qvm-run -p work true', value: median(execs), unit: 'ms', baseline: median(execFloors), goal: '≤ 150 ms' });

    // --- memory of an idle qube: PSS of all its processes (no per-qube host process exists)
    await new Promise((r) => setTimeout(r, 2000));
    const pss = qubePids(inst, id, 'work').reduce((s, p) => s + pssKiB(p), 0) / 1024;
    rows.push({ what: 'host memory of one idle qube alone (PSS, its processes and its relay)', value: pss, unit: 'MiB', goal: '≤ 10 MiB' });
    await inst.ok('qvm-kill', 'work');

    // --- many qubes started one after another
    const memBefore = memUsedMiB();
    for (let i = 0; i < many; i++) await inst.ok('qvm-create', '--label', 'gray', `q${i}`);
    let last = 0;
    const t0 = Date.now();
    for (let i = 0; i < many; i++) last = await timeAsync(() => inst.ok('qvm-start', `q${i}`));
    const total = (Date.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 3000));
    const memAfter = memUsedMiB();
    let pssAll = 0;
    for (const c of inst.containers()) {
      if (c.status !== 'running') continue;
      for (const p of qubePids(inst, c.id, c.id.split('.')[0])) pssAll += pssKiB(p);
    }
    rows.push({ what: `start of qube #${many} (after ${many - 1} running)`, value: last, unit: 'ms', baseline: median(starts) });
    rows.push({ what: `${many} qubes: total start time`, value: total, unit: 's' });
    rows.push({ what: `${many} qubes: host memory used (MemTotal-MemAvailable delta)`, value: memAfter - memBefore, unit: 'MiB' });
    rows.push({ what: `${many} qubes: PSS sum / qube`, value: pssAll / 1024 / many, unit: 'MiB' });
  } finally {
    await inst.destroy();
  }

  const fmt = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
  const lines = [['measure', 'value', 'floor (same run)', 'ratio', 'goal']];
  for (const r of rows) lines.push([r.what, `${fmt(r.value)} ${r.unit}`, r.baseline ? `${fmt(r.baseline)} ms` : '-', r.baseline ? `${(r.value / r.baseline).toFixed(2)}×` : '-', r.goal ?? '']);
  report('qube', lines, { runs: RUNS, rows });
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exit(1);
});
