// Finds out whether QEMU can really run a guest under KVM here (an openable /dev/kvm is not enough:
// nested hosts often fail at the first vCPU run) and whether TCG works as the fallback.

import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
