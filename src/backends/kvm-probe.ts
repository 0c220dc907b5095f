// Finds out whether QEMU can really run a guest under KVM here (an openable /dev/kvm is not enough:
// nested hosts often fail at the first vCPU run) and whether TCG works as the fallback.

import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { baseInitramfs } from './vm/initramfs';
import type { KernelInfo } from './vm/kernel-store';
import { guestCmdline, hostTscKhz, Machine } from './vm/guest-cmdline';

export interface CommandResult {
  /** Exit code; null if killed by a signal or by the timeout. */
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Set when the command could not be started (ENOENT: not installed). */
  spawnError?: NodeJS.ErrnoException;
  ms: number;
}

/** Runs a command without a shell, killing it (SIGKILL) after timeoutMs. Never rejects. */
export function runCommand(cmd: string, args: string[], timeoutMs = 10_000): Promise<CommandResult> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout = (stdout + d).slice(-65536)));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-65536)));
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr, timedOut, spawnError: e, ms: Date.now() - t0 });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut, ms: Date.now() - t0 });
    });
  });
}

/** `mov al, 0x31; out 0xf4, al; hlt; jmp $-1`, padded to a 512-byte MBR boot sector. */
export function bootSector(): Buffer {
  const code = [0xb0, 0x31, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd];
  const sector = Buffer.alloc(512);
  Buffer.from(code).copy(sector);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/** isa-debug-exit turns the guest's write of v into QEMU exit status (v << 1) | 1. */
export const GUEST_RAN_EXIT = (0x31 << 1) | 1;

export interface AccelAttempt {
  ok: boolean;
  ms: number;
  /** One line: why it failed, empty when ok. */
  error: string;
  /** The CPU model that booted (KVM: 'host' unless QEMU aborted with it). */
  cpu?: 'host' | 'default';
  /** Not tried (ISOLA_ACCEL forced the choice and nothing was cached). */
  skipped?: boolean;
}

export interface KvmProbe {
  /** A guest ran to completion under KVM. */
  kvm: boolean;
  /** A guest ran under TCG (QEMU itself works). */
  tcg: boolean;
  /** KVM also works with `-cpu host` (nested hosts often reject some host MSRs); undefined if not tried. */
  cpuHost?: boolean;
  detail: string;
  attempts: { kvm: AccelAttempt; tcg: AccelAttempt; cpuHost?: AccelAttempt };
}

export interface KvmProbeOptions {
  qemu?: string;
  timeoutMs?: number;
}

function explain(r: CommandResult, qemu: string, timeoutMs: number): string {
  if (r.spawnError) return r.spawnError.code === 'ENOENT' ? `${qemu} not found` : r.spawnError.message;
  if (r.timedOut) return `guest did not finish within ${timeoutMs / 1000} s`;
  // Feature warnings are noise; the last real error says why (e.g. "failed to initialize kvm").
  const lines = r.stderr.split('\n').map((l) => l.replace(/^qemu-system-\S+: /, '').trim());
  const real = lines.filter((l) => l && !/^warning:/.test(l));
  const error = real.find((l) => /^error:/.test(l))?.replace(/^error:\s*/, '');
  return error ?? real.pop() ?? `exit status ${r.code}`;
}

export async function tryAccel(
  image: string,
  accel: 'kvm' | 'tcg',
  extra: string[] = [],
  opts: KvmProbeOptions = {},
): Promise<AccelAttempt> {
  const qemu = opts.qemu ?? 'qemu-system-x86_64';
  const timeoutMs = opts.timeoutMs ?? 10_000;
  // IDE, not floppy: under nested KVM SeaBIOS hangs probing a 512-byte floppy.
  const r = await runCommand(
    qemu,
    [
      '-accel', accel, ...extra,
      '-nodefaults', '-nographic', '-no-reboot', '-display', 'none',
      '-serial', 'none', '-monitor', 'none', '-m', '16',
      '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04',
      '-drive', `file=${image},format=raw,if=ide`,
    ],
    timeoutMs,
  );
  const ok = r.code === GUEST_RAN_EXIT;
  return { ok, ms: r.ms, error: ok ? '' : explain(r, qemu, timeoutMs) };
}

export async function probeKvm(opts: KvmProbeOptions = {}): Promise<KvmProbe> {
  const dir = await fsp.mkdtemp(join(tmpdir(), 'isola-kvm-probe-'));
  try {
    const image = join(dir, 'boot.img');
    await fsp.writeFile(image, bootSector());
    const kvm = await tryAccel(image, 'kvm', [], opts);
    const tcg = await tryAccel(image, 'tcg', [], opts);
    const cpuHost = kvm.ok ? await tryAccel(image, 'kvm', ['-cpu', 'host'], opts) : undefined;
    const secs = (a: AccelAttempt) => `${(a.ms / 1000).toFixed(1)} s`;
    let detail: string;
    if (kvm.ok) {
      detail = `guest ran under KVM in ${secs(kvm)}`;
      if (cpuHost && !cpuHost.ok) detail += `; -cpu host fails (${cpuHost.error}), use the default CPU model`;
    } else if (tcg.ok) {
      detail = `KVM unusable (${kvm.error}); fall back to TCG (guest ran in ${secs(tcg)})`;
    } else {
      detail = `KVM unusable (${kvm.error}); TCG failed too (${tcg.error})`;
    }
    return {
      kvm: kvm.ok,
      tcg: tcg.ok,
      cpuHost: cpuHost?.ok,
      detail,
      attempts: { kvm, tcg, ...(cpuHost ? { cpuHost } : {}) },
    };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

// ---- The real probe: boot the guest kernel (a boot sector runs where Linux hangs, docs/vm-boot-notes.md).

export type Accel = 'kvm' | 'tcg';
export type { Machine };

export interface AccelDecision {
  accel: Accel | null;
  reason: string;
}

/** ISOLA_ACCEL: 'kvm' or 'tcg' force that accelerator, 'auto' or unset probe. */
export function parseAccelEnv(value: string | undefined): Accel | undefined {
  if (value === undefined || value === '' || value === 'auto') return undefined;
  if (value === 'kvm' || value === 'tcg') return value;
  throw new Error(`ISOLA_ACCEL=${JSON.stringify(value)}: expected kvm, tcg or auto`);
}

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Which accelerator hvm qubes get, in a sentence a user can act on. Pure: the tests drive it. */
export function decideAccelerator(kvm: AccelAttempt, tcg: AccelAttempt, forced?: Accel): AccelDecision {
  if (forced === 'kvm') {
    if (kvm.ok) return { accel: 'kvm', reason: `KVM: yes (forced by ISOLA_ACCEL=kvm; a Linux guest booted in ${secs(kvm.ms)})` };
    const why = kvm.skipped ? 'not probed' : `it cannot run a Linux guest here: ${kvm.error}`;
    return { accel: 'kvm', reason: `KVM: forced by ISOLA_ACCEL=kvm although ${why}; hvm qubes may hang at boot` };
  }
  if (forced === 'tcg') {
    const note = tcg.ok || tcg.skipped ? '' : ` although TCG failed here: ${tcg.error}`;
    return { accel: 'tcg', reason: `KVM: not used (ISOLA_ACCEL=tcg)${note}; hvm qubes run under TCG` };
  }
  if (kvm.ok) return { accel: 'kvm', reason: `KVM: yes — a Linux guest booted under KVM in ${secs(kvm.ms)}${kvm.cpu === 'default' ? ' (default CPU model: -cpu host aborts)' : ''}` };
  if (tcg.ok) return { accel: 'tcg', reason: `KVM: no — ${kvm.error}; hvm qubes run under TCG` };
  const fix = /not found/.test(tcg.error)
    ? 'install QEMU: apt-get install -y qemu-system-x86'
    : 'check that `qemu-system-x86_64 -accel tcg -M q35` runs, and reinstall qemu-system-x86 if not';
  return { accel: null, reason: `KVM: no — ${kvm.error}; TCG failed too (${tcg.error}): hvm qubes cannot start; ${fix}` };
}

export const PROBE_MARKER = 'ISOLA-ACCEL-PROBE-OK';

/** The probe's /init: the marker on the console, then off. */
export const PROBE_INIT = Buffer.from(`#!/bin/sh\necho ${PROBE_MARKER}\npoweroff -f\n`);

interface LinuxBoot {
  sawMarker: boolean;
  code: number | null;
  timedOut: boolean;
  ms: number;
  consoleBytes: number;
  lastLine: string;
  stderr: string;
  spawnError?: NodeJS.ErrnoException;
}

/** A guest's console line as text fit for a report: printable ASCII only, short. */
export function printableLine(untrusted: Buffer): string {
  const lines = untrusted.toString('latin1').split(/[\r\n]+/).map((l) => l.replace(/[^\x20-\x7e]/g, '').trim()).filter(Boolean);
  return (lines.pop() ?? '').slice(0, 100);
}

/** Boots QEMU until the marker shows on the console (then kills it) or the timeout. Never rejects. */
function bootUntilMarker(qemu: string, args: string[], timeoutMs: number): Promise<LinuxBoot> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let tail = Buffer.alloc(0);
    let bytes = 0;
    let stderr = '';
    let sawMarker = false;
    let timedOut = false;
    let markerMs = 0;
    const marker = Buffer.from(PROBE_MARKER);
    const child = spawn(qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      bytes += d.length;
      tail = Buffer.concat([tail, d]).subarray(-4096);
      if (!sawMarker && tail.includes(marker)) {
        sawMarker = true;
        markerMs = Date.now() - t0;
        child.kill('SIGKILL');
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-8192)));
    const done = (code: number | null, spawnError?: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const ms = sawMarker ? markerMs : Date.now() - t0;
      resolve({ sawMarker, code, timedOut: timedOut && !sawMarker, ms, consoleBytes: bytes, lastLine: printableLine(tail), stderr, spawnError });
    };
    child.on('error', (e: NodeJS.ErrnoException) => done(null, e));
    child.on('close', (code) => done(code));
  });
}

export function linuxBootArgs(kernel: KernelInfo, initrd: string, machine: Machine, accel: Accel, cpuHost: boolean): string[] {
  return [
    '-M', machine, '-accel', accel, ...(cpuHost ? ['-cpu', 'host'] : []), '-m', '256',
    '-nodefaults', '-no-reboot', '-display', 'none', '-monitor', 'none', '-serial', 'stdio',
    '-kernel', kernel.vmlinuz, '-initrd', initrd, '-append', guestCmdline(machine, { tscKhz: hostTscKhz() }),
  ];
}

function explainBoot(b: LinuxBoot, qemu: string, accel: Accel, timeoutMs: number): string {
  const name = accel === 'kvm' ? 'KVM' : 'TCG';
  if (b.spawnError) return b.spawnError.code === 'ENOENT' ? `${qemu} not found` : b.spawnError.message;
  if (b.timedOut) {
    const where = b.consoleBytes === 0 ? 'no console output' : `console stopped at "${b.lastLine}"`;
    return `a Linux guest hung under ${name} (${where} ${secs(timeoutMs).replace('.0 s', ' s')} after start)`;
  }
  const qemuError = b.stderr.split('\n').map((l) => l.replace(/^qemu-system-\S+: /, '').trim()).filter((l) => l && !/^warning:/.test(l)).pop();
  return `QEMU exited (status ${b.code}) before the guest's init ran: ${qemuError ?? (b.lastLine || 'no output')}`;
}

export interface AccelProbeOptions {
  qemu?: string;
  kernel: KernelInfo;
  cacheDir: string;
  machine: Machine;
  /** How long a boot may take before it counts as hung; default 15 s. */
  timeoutMs?: number;
  /** JSON file keeping results per (kernel, QEMU, host kernel, CPU). */
  cacheFile: string;
  /** Default process.env (ISOLA_ACCEL). */
  env?: NodeJS.ProcessEnv;
}

export interface AccelProbeResult extends AccelDecision {
  kvm: AccelAttempt;
  tcg: AccelAttempt;
  /** The attempts came from cacheFile. */
  cached: boolean;
  /** QEMU arguments for the chosen accelerator (with -cpu host when KVM booted with it). */
  qemuArgs: string[];
}

const CACHE_FORMAT = 'isola-accel-probe-1';

const isAttempt = (a: unknown): a is AccelAttempt =>
  typeof a === 'object' && a !== null && typeof (a as AccelAttempt).ok === 'boolean' && typeof (a as AccelAttempt).ms === 'number' && typeof (a as AccelAttempt).error === 'string';

async function readCache(file: string): Promise<Record<string, { kvm: AccelAttempt; tcg: AccelAttempt }>> {
  try {
    const j = JSON.parse(await fsp.readFile(file, 'utf8'));
    return j?.format === CACHE_FORMAT && typeof j.entries === 'object' && j.entries ? j.entries : {};
  } catch {
    return {};
  }
}

async function writeCache(file: string, key: string, value: { kvm: AccelAttempt; tcg: AccelAttempt }): Promise<void> {
  const entries = { ...(await readCache(file)), [key]: { ...value, at: new Date().toISOString() } };
  // Hosts change rarely; keep the newest few keys only.
  const kept = Object.fromEntries(Object.entries(entries).slice(-8));
  await fsp.mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await fsp.writeFile(tmp, JSON.stringify({ format: CACHE_FORMAT, entries: kept }, null, 1) + '\n');
  await fsp.rename(tmp, file);
}

async function cacheKey(qemu: string, kernel: KernelInfo, machine: Machine): Promise<string> {
  const version = (await runCommand(qemu, ['--version'])).stdout.split('\n')[0].trim();
  const cpu = /^model name\s*:\s*(.*)$/m.exec(await fsp.readFile('/proc/cpuinfo', 'utf8').catch(() => ''))?.[1] ?? '';
  return JSON.stringify([machine, kernel.version, version, release(), cpu.trim()]);
}

async function bootSectorRuns(qemu: string): Promise<AccelAttempt> {
  const dir = await fsp.mkdtemp(join(tmpdir(), 'isola-kvm-probe-'));
  try {
    await fsp.writeFile(join(dir, 'boot.img'), bootSector());
    return await tryAccel(join(dir, 'boot.img'), 'kvm', [], { qemu });
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

async function bootKvm(qemu: string, kernel: KernelInfo, initrd: string, machine: Machine, timeoutMs: number): Promise<AccelAttempt> {
  const quick = await bootSectorRuns(qemu);
  if (!quick.ok) return { ok: false, ms: quick.ms, error: `/dev/kvm cannot even run a boot sector (${quick.error})` };
  const host = await bootUntilMarker(qemu, linuxBootArgs(kernel, initrd, machine, 'kvm', true), timeoutMs);
  if (host.sawMarker) return { ok: true, ms: host.ms, error: '', cpu: 'host' };
  // A hang would hang again; only an abort (nested hosts rejecting host MSRs) is worth the default model.
  if (host.timedOut || host.spawnError) return { ok: false, ms: host.ms, error: explainBoot(host, qemu, 'kvm', timeoutMs) };
  const plain = await bootUntilMarker(qemu, linuxBootArgs(kernel, initrd, machine, 'kvm', false), timeoutMs);
  if (plain.sawMarker) return { ok: true, ms: plain.ms, error: '', cpu: 'default' };
  return { ok: false, ms: plain.ms, error: explainBoot(plain, qemu, 'kvm', timeoutMs) };
}

/** Boots the guest kernel under KVM and TCG (once per host, cached) and says which one hvm qubes get. */
export async function probeAccelerator(opts: AccelProbeOptions): Promise<AccelProbeResult> {
  const qemu = opts.qemu ?? 'qemu-system-x86_64';
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const forced = parseAccelEnv((opts.env ?? process.env).ISOLA_ACCEL);
  const key = await cacheKey(qemu, opts.kernel, opts.machine);
  const hit = (await readCache(opts.cacheFile))[key];
  let attempts: { kvm: AccelAttempt; tcg: AccelAttempt };
  let cached = false;
  if (hit && isAttempt(hit.kvm) && isAttempt(hit.tcg)) {
    attempts = { kvm: hit.kvm, tcg: hit.tcg };
    cached = true;
  } else if (forced) {
    // Forcing skips the slow boots; a forced KVM still gets the 1 s check so its reason can warn.
    const skipped: AccelAttempt = { ok: false, ms: 0, error: 'not probed', skipped: true };
    const kvm = forced === 'kvm' ? await bootSectorRuns(qemu) : skipped;
    attempts = { kvm: kvm.ok ? { ...skipped, error: 'not probed (a boot sector runs)' } : kvm, tcg: skipped };
  } else {
    const initrd = await baseInitramfs({ kernel: opts.kernel, cacheDir: opts.cacheDir, init: PROBE_INIT });
    const kvm = await bootKvm(qemu, opts.kernel, initrd, opts.machine, timeoutMs);
    const t = await bootUntilMarker(qemu, linuxBootArgs(opts.kernel, initrd, opts.machine, 'tcg', false), timeoutMs * 4);
    const tcg: AccelAttempt = t.sawMarker ? { ok: true, ms: t.ms, error: '' } : { ok: false, ms: t.ms, error: explainBoot(t, qemu, 'tcg', timeoutMs * 4) };
    attempts = { kvm, tcg };
    await writeCache(opts.cacheFile, key, attempts);
  }
  const decision = decideAccelerator(attempts.kvm, attempts.tcg, forced);
  const qemuArgs = decision.accel === 'kvm' ? ['-accel', 'kvm', ...(attempts.kvm.cpu === 'default' ? [] : ['-cpu', 'host'])] : decision.accel === 'tcg' ? ['-accel', 'tcg'] : [];
  return { ...decision, ...attempts, cached, qemuArgs };
}
