// npm run bench (or `node dist/bench/vm.bench.js`, as root): the hvm backend's floor and QEMU's memory.
// 1. floor: QEMU booting the installed guest kernel with an initramfs whose /init powers off at once
//    (a 1 KiB static init, no busybox), wall time from exec to QEMU's exit, microvm and q35, TCG.
// 2. memory: QEMU's PSS for an idle guest (init sleeps), and the same minus the guest RAM it touched
//    (the private anonymous mapping whose size is the guest's memory), 256 and 400 MiB.
// 3. knobs: TCG's translation buffer (-accel tcg,tb-size=N), each for boot time and overhead (the jail
//    gives QEMU MALLOC_ARENA_MAX=1: measured ~5 MiB less without the jail, now always on).
// QEMU runs through isola-vmm-jail and isola-log-relay with the command line qemuArgs() writes, as
// QemuBackend.start() runs it (same binds, devices, disks as descriptors), but without QMP: the backend's
// start() would also wait for QMP, which says nothing about QEMU. Writes bench/results/vm-<time>.json.

import { execFileSync, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import path from 'node:path';
import { testKernel } from '../test/integration/vm-test-kernel';
import { probeAccelerator } from '../src/backends/kvm-probe';
import { cpioArchive, S_IFDIR, S_IFREG } from '../src/backends/vm/cpio';
import { guestCmdline, hostTscKhz } from '../src/backends/vm/guest-cmdline';
import { listenSockets, qemuArgs, TCG_TB_SIZE_MIB, type VmDescription, type VmMachine } from '../src/backends/vm/qemu-args';
import { isAlive, killVerified, procStat, waitGone } from '../src/backends/vm/vm-proc';
import { jailExit, startJailed, systemBinds } from '../src/backends/vm/vmm-jail';
import { report } from './report';
import { readSmaps, stats, type Smaps } from './smaps';
import { idleQubesMemory, qubeStarts, type IdleQubes, type QubeStarts } from './hvm-qubes';

const QEMU = '/usr/bin/qemu-system-x86_64';
const RUNS = 5;
const MACHINES: VmMachine[] = ['microvm', 'q35'];
const MEMORIES = [256, 400];
const TB_SIZES = [8, 16, 32, 64];
const IDLE_QUBES = Number(process.env.ISOLA_BENCH_IDLE_QUBES || 20);
const READY = 'vmbench-init: up';
const LIBEXEC = path.resolve(__dirname, '../libexec');

/**
 * The guest's /init, freestanding (no libc, ~1 KiB): IDLE mounts devtmpfs for /dev/console, says READY
 * and pauses forever; otherwise it powers the machine off at once (reboot(2), as `poweroff -f` does).
 */
const INIT_C = `
static long sys(long n, long a, long b, long c, long d, long e) {
  long r;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
  return r;
}
void _start(void) {
#ifdef IDLE
  static const char msg[] = "\\n${READY}\\n";
  sys(165, (long)"dev", (long)"/dev", (long)"devtmpfs", 0, 0);
  long fd = sys(2, (long)"/dev/console", 1, 0, 0, 0);
  sys(1, fd, (long)msg, sizeof msg - 1, 0, 0);
  for (;;) sys(34, 0, 0, 0, 0, 0);
#else
  sys(169, 0xfee1dead, 672274793, 0x4321fedc, 0, 0);
#endif
  for (;;) {}
}
`;

function makeInitrd(dir: string, idle: boolean): string {
  const src = path.join(dir, 'init.c');
  const bin = path.join(dir, idle ? 'init-idle' : 'init-off');
  fs.writeFileSync(src, INIT_C);
  execFileSync('gcc', ['-Os', '-static', '-nostdlib', '-ffreestanding', '-fno-stack-protector', '-fno-pie', '-no-pie',
    '-Wl,--build-id=none', '-s', ...(idle ? ['-DIDLE'] : []), '-o', bin, src]);
  const archive = cpioArchive([
    { name: 'dev', mode: S_IFDIR | 0o755 },
    { name: 'init', mode: S_IFREG | 0o755, data: fs.readFileSync(bin) },
  ]);
  const out = `${bin}.cpio`;
  fs.writeFileSync(out, archive);
  return out;
}

interface Knob {
  name: string;
  /** The -accel value replacing "tcg". */
  accel?: string;
  /** Plain QEMU (no jail) with this environment. */
}

/** The command line qemuArgs() writes, unchanged (TCG_TB_SIZE_MIB). */
const DEFAULT: Knob = { name: `qemu-args (tcg,tb-size=${TCG_TB_SIZE_MIB})` };
/** QEMU's own default translation buffer (1 GiB in QEMU 7.2), what qemu-args gave before. */
const QEMU_DEFAULT: Knob = { name: 'tcg (QEMU default tb-size)', accel: 'tcg' };
const tbKnob = (n: number): Knob => ({ name: `tcg,tb-size=${n}`, accel: `tcg,tb-size=${n}` });

interface Ctx {
  tmp: string;
  kernel: string;
  offInitrd: string;
  idleInitrd: string;
  uidBase: number;
  seq: number;
  tscKhz?: number;
}

interface Running {
  pid: number;
  startTime: string;
  logFile: string;
  runDir: string;
  t0: bigint;
}

function description(ctx: Ctx, machine: VmMachine, memoryMiB: number, initrd: string, runDir: string): VmDescription {
  const disk = (name: string, size: number) => {
    const f = path.join(runDir, '..', `${path.basename(runDir)}-${name}`);
    fs.writeFileSync(f, Buffer.alloc(size));
    return f;
  };
  return {
    runtimeId: path.basename(runDir), name: path.basename(runDir), machine, accel: 'tcg', memoryMiB, vcpus: 2,
    kernel: ctx.kernel, initrd, cmdline: guestCmdline(machine, { tscKhz: ctx.tscKhz }), tscKhz: ctx.tscKhz,
    // A qube's two disks (root read-only, private), so QEMU has the devices a qube has.
    disks: [{ file: disk('root.img', 1 << 20), readonly: true, direct: false }, { file: disk('private.img', 1 << 20), readonly: false, direct: false }],
    runDir,
  };
}

function withKnob(args: string[], knob: Knob): string[] {
  if (!knob.accel) return args;
  const i = args.findIndex((a, j) => /^tcg(,|$)/.test(a) && args[j - 1] === '-accel');
  if (i < 0) throw new Error('no -accel tcg in the command line');
  return [...args.slice(0, i), knob.accel, ...args.slice(i + 1)];
}

async function launch(ctx: Ctx, machine: VmMachine, memoryMiB: number, initrd: string, knob: Knob): Promise<Running> {
  const n = ctx.seq++;
  const runDir = path.join(ctx.tmp, 'run', `vmb${n}`);
  fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const d = description(ctx, machine, memoryMiB, initrd, runDir);
  const uid = ctx.uidBase + n * 65536;
  const logFile = path.join(ctx.tmp, 'log', `vmb${n}.log`);
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const args = withKnob(qemuArgs(d), knob);
  const t0 = process.hrtime.bigint();
  const pid = await startJailed(
    { uid, gid: uid, stateDir: runDir, ro: [...systemBinds(QEMU), d.kernel, d.initrd], rw: [], listen: listenSockets(runDir), devices: ['/dev/null', '/dev/zero', '/dev/urandom'], disks: d.disks, qemu: QEMU, args },
    { jail: process.env.ISOLA_VMM_JAIL || path.join(LIBEXEC, 'isola-vmm-jail'), logRelay: process.env.ISOLA_LOG_RELAY || path.join(LIBEXEC, 'isola-log-relay'), logFile, logMaxBytes: 1 << 20, logKeep: 1, timeoutMs: 30_000 },
  );
  return { pid, startTime: procStat(pid)?.startTime ?? '', logFile, runDir, t0 };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const msSince = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/** One boot to power-off: ms from exec to QEMU's exit. */
async function floorOnce(ctx: Ctx, machine: VmMachine, knob: Knob): Promise<number> {
  const r = await launch(ctx, machine, 256, ctx.offInitrd, knob);
  const until = Date.now() + 60_000;
  while (isAlive(r.pid, r.startTime)) {
    if (Date.now() > until) {
      killVerified(r.pid, r.startTime);
      throw new Error(`${machine} ${knob.name}: the guest did not power off within 60 s (log ${r.logFile})`);
    }
    await sleep(5);
  }
  const ms = msSince(r.t0);
  let exit: string | undefined;
  for (let i = 0; i < 100 && !(exit = jailExit(r.runDir)); i++) await sleep(10);
  if (exit !== 'exited 0') throw new Error(`${machine} ${knob.name}: QEMU ${exit ?? 'ended (no status)'} (log ${r.logFile})`);
  return ms;
}

/** An idle guest: boot until init's line, settle, read QEMU's smaps; the boot's ms to the line. */
async function memoryOnce(ctx: Ctx, machine: VmMachine, memoryMiB: number, knob: Knob): Promise<Smaps & { readyMs: number }> {
  const r = await launch(ctx, machine, memoryMiB, ctx.idleInitrd, knob);
  try {
    const until = Date.now() + 60_000;
    for (;;) {
      let log = '';
      try {
        log = fs.readFileSync(r.logFile, 'latin1');
      } catch {
        /* not yet */
      }
      if (log.includes(READY)) break;
      if (!isAlive(r.pid, r.startTime)) throw new Error(`${machine} ${knob.name}: QEMU ended before the guest was up (log ${r.logFile})`);
      if (Date.now() > until) throw new Error(`${machine} ${knob.name}: no "${READY}" within 60 s (log ${r.logFile})`);
      await sleep(20);
    }
    const readyMs = msSince(r.t0);
    // The kernel's work after init started (deferred initcalls, the first timers) is done by then.
    await sleep(3000);
    return { ...readSmaps(r.pid, memoryMiB), readyMs };
  } finally {
    killVerified(r.pid, r.startTime);
    await waitGone(r.pid, r.startTime, 5_000);
  }
}

async function kvmLine(kernel: Awaited<ReturnType<typeof testKernel>>, cacheDir: string): Promise<string> {
  try {
    const p = await probeAccelerator({ kernel, cacheDir, machine: 'microvm', cacheFile: path.join(cacheDir, 'vmbench-accel-probe.json'), env: {} });
    return p.kvm.ok ? 'kvm: available (not measured by this bench: hvm qubes use it as probed)' : `kvm: not available (${p.kvm.error})`;
  } catch (e) {
    return `kvm: not available (probe failed: ${(e as Error).message})`;
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (the jail makes namespaces and runs QEMU as a qube uid)');
  if (!fs.existsSync(QEMU)) throw new Error(`${QEMU} is not installed`);
  const cacheDir = process.env.ISOLA_CACHE || '/var/cache/isola';
  const kernel = await testKernel();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'isola-vmbench-'));
  const ctx: Ctx = {
    tmp, kernel: kernel.vmlinuz, offInitrd: makeInitrd(tmp, false), idleInitrd: makeInitrd(tmp, true),
    uidBase: 0xd0000000 + crypto.randomInt(0, 0x1f00) * 65536, seq: 0, tscKhz: hostTscKhz(),
  };
  const t0 = Date.now();
  const kvm = await kvmLine(kernel, cacheDir);
  const floors: { machine: VmMachine; knob: string; ms: ReturnType<typeof stats> }[] = [];
  const mems: { machine: VmMachine; memoryMiB: number; knob: string; pssMiB: number; guestRamPssMiB?: number; guestRamRssMiB?: number; overheadMiB?: number; tcgCodeMiB: number; readyMs: number }[] = [];
  let starts: QubeStarts[] = [];
  let idle: IdleQubes | undefined;
  const knobs = [DEFAULT, QEMU_DEFAULT, ...TB_SIZES.filter((n) => n !== TCG_TB_SIZE_MIB).map(tbKnob)];
  try {
    for (const machine of MACHINES) {
      // Interleaved, so a slow moment of the shared host spreads over all knobs instead of one.
      const runs = new Map<string, number[]>(knobs.map((k) => [k.name, []]));
      for (let i = 0; i < RUNS; i++) for (const k of knobs) runs.get(k.name)!.push(await floorOnce(ctx, machine, k));
      for (const k of knobs) {
        floors.push({ machine, knob: k.name, ms: stats(runs.get(k.name)!) });
        process.stderr.write(`floor ${machine} ${k.name}: ${runs.get(k.name)!.map((x) => x.toFixed(0)).join(' ')} ms\n`);
      }
    }
    const memKnobs: Knob[] = knobs;
    for (const machine of MACHINES) {
      for (const memoryMiB of MEMORIES) {
        for (const k of memKnobs) {
          // Kept under ~5 minutes: the larger guest only where it can tell something new.
          if (memoryMiB !== MEMORIES[0] && k !== DEFAULT && k !== QEMU_DEFAULT) continue;
          const m = await memoryOnce(ctx, machine, memoryMiB, k);
          const mib = (kib: number) => kib / 1024;
          mems.push({
            machine, memoryMiB, knob: k.name, pssMiB: mib(m.pssKiB), guestRamPssMiB: m.guestRam && mib(m.guestRam.pssKiB),
            guestRamRssMiB: m.guestRam && mib(m.guestRam.rssKiB), overheadMiB: m.guestRam && mib(m.pssKiB - m.guestRam.pssKiB),
            tcgCodeMiB: mib(m.codeKiB), readyMs: m.readyMs,
          });
          process.stderr.write(`memory ${machine} ${memoryMiB} MiB ${k.name}: ${JSON.stringify(mems.at(-1))}\n`);
        }
      }
    }
    starts = await qubeStarts(MACHINES, RUNS);
    idle = await idleQubesMemory(IDLE_QUBES);
  } finally {
    if (!process.env.ISOLA_BENCH_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
  }

  const f0 = (n: number) => n.toFixed(0);
  const f1 = (n: number | undefined) => (n === undefined ? '?' : n.toFixed(1));
  const lines = [['measure', 'machine', 'knob', 'median', 'min', 'max', 'vs QEMU default', 'note']];
  for (const f of floors) {
    const base = floors.find((x) => x.machine === f.machine && x.knob === QEMU_DEFAULT.name)!.ms.median;
    lines.push([`floor: exec to QEMU exit (${RUNS} runs)`, f.machine, f.knob, `${f0(f.ms.median)} ms`, `${f0(f.ms.min)} ms`, `${f0(f.ms.max)} ms`, `${((f.ms.median / base - 1) * 100).toFixed(0)}%`, '']);
  }
  lines.push(['measure', 'machine', 'knob', 'PSS', 'guest RAM PSS', 'overhead', 'TCG code PSS', 'note']);
  for (const m of mems) {
    lines.push([`idle QEMU, ${m.memoryMiB} MiB guest`, m.machine, m.knob, `${f1(m.pssMiB)} MiB`, `${f1(m.guestRamPssMiB)} MiB`, `${f1(m.overheadMiB)} MiB`, `${f1(m.tcgCodeMiB)} MiB`,
      `${m.overheadMiB === undefined ? 'no mapping of the guest size found; ' : ''}up in ${f0(m.readyMs)} ms; goal overhead ≤ 30 MiB`]);
  }
  lines.push(['measure', 'machine', 'knob', 'median', 'min', 'max', 'vs floor (same run)', 'note']);
  for (const st of starts) {
    const floor = floors.find((x) => x.machine === st.machine && x.knob === DEFAULT.name)!.ms.median;
    lines.push([`hvm qube start to agent ready (qvm-start, ${st.ms.runs.length} runs)`, st.machine, DEFAULT.name, `${f0(st.ms.median)} ms`, `${f0(st.ms.min)} ms`, `${f0(st.ms.max)} ms`,
      `${(st.ms.median / floor).toFixed(2)}×`, 'goal ≤ 2× the floor']);
  }
  if (idle) {
    lines.push([`${idle.qubes} idle hvm qubes (${idle.memoryMiB} MiB each): QEMU PSS total`, idle.machine, DEFAULT.name, `${f0(idle.totalPssMiB)} MiB`, '', '', '',
      `host MemAvailable fell ${f0(idle.memAvailableDropMiB)} MiB; per QEMU beyond guest RAM: median ${f1(idle.overheadMiB.median)} MiB (${f1(idle.overheadMiB.min)}–${f1(idle.overheadMiB.max)})`]);
  }
  process.stdout.write(`${kvm}\n`);
  report('vm', lines, { kernel: kernel.version, qemu: spawnSync(QEMU, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0], kvm, runs: RUNS, floors, memory: mems, starts, idle, seconds: (Date.now() - t0) / 1000 });
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exit(1);
});
