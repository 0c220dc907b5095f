// Starts QEMU through isola-vmm-jail (src/native/isola-vmm-jail.c), its console through isola-log-relay
// as the sandbox backend does: the relay holds the only host file, QEMU only a pipe.

import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface JailSpec {
  /** The qube's own unprivileged host uid/gid (launch.ids.base). */
  uid: number;
  gid: number;
  /** Root's directory where the jail writes pid, exit and error. */
  stateDir: string;
  /** Bound read-only, read-write, and as device nodes, each at its own path. */
  ro: string[];
  rw: string[];
  devices: string[];
  /** Opened by the jail and given to QEMU as descriptors 3, 4, … in this order (qemu-args' -add-fd). */
  disks: { file: string; readonly: boolean; direct?: boolean }[];
  /** Unix sockets the jail binds (as root, in the root's run dir) and QEMU inherits after the disks. */
  listen?: string[];
  /** A tap device the jail creates in QEMU's network namespace; QEMU inherits it after the listeners. */
  tap?: string;
  qemu: string;
  args: string[];
}

export interface JailRun {
  jail: string;
  logRelay: string;
  logFile: string;
  logMaxBytes: number;
  logKeep: number;
  timeoutMs: number;
}

/** Absolute, normalised, no `..`: a path the jail will bind (it checks again, in C). */
export function checkJailPath(p: string, what: string): string {
  if (!path.isAbsolute(p) || p.split('/').some((c) => c === '..' || c === '.') || p.includes('\0') || p === '/') {
    throw new Error(`${what} ${JSON.stringify(p)}: not an absolute path without . or ..`);
  }
  return p;
}

const systemBindCache = new Map<string, string[]>();

/**
 * What QEMU reads from the host besides the qube's files: its binary, the directories its libraries come
 * from (ldd's paths as printed, so the loader's own paths work), the loader cache, its modules
 * (TCG is one on Debian) and its firmware (qboot for microvm, SeaBIOS for q35).
 */
export function systemBinds(qemu: string): string[] {
  const cached = systemBindCache.get(qemu);
  if (cached) return cached;
  const out = execFileSync('ldd', [qemu], { encoding: 'utf8', timeout: 10_000 });
  const dirs = new Set<string>();
  for (const line of out.split('\n')) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m) dirs.add(path.dirname(m[1]));
  }
  const extra = ['/etc/ld.so.cache', '/usr/lib/x86_64-linux-gnu/qemu', '/usr/lib/qemu', '/usr/share/qemu', '/usr/share/seabios'];
  const binds = [qemu, ...dirs, ...extra.filter((p) => fs.existsSync(p))].map((p) => checkJailPath(p, 'system bind'));
  systemBindCache.set(qemu, binds);
  return binds;
}

export function jailArgv(spec: JailSpec): string[] {
  const out = ['--uid', String(spec.uid), '--gid', String(spec.gid), '--state-dir', checkJailPath(spec.stateDir, 'state dir')];
  for (const p of spec.ro) out.push('--ro', checkJailPath(p, 'read-only bind'));
  for (const p of spec.rw) out.push('--rw', checkJailPath(p, 'read-write bind'));
  for (const p of spec.devices) out.push('--dev', checkJailPath(p, 'device'));
  for (const d of spec.disks) out.push(`--disk-${d.readonly ? 'ro' : 'rw'}${d.direct ? '-direct' : ''}`, checkJailPath(d.file, 'disk'));
  for (const f of spec.listen ?? []) out.push('--listen', checkJailPath(f, 'socket'));
  if (spec.tap !== undefined) {
    if (!/^[a-z0-9]{1,15}$/.test(spec.tap)) throw new Error(`tap name ${JSON.stringify(spec.tap)}: not [a-z0-9]{1,15}`);
    out.push('--tap', spec.tap);
  }
  out.push('--', checkJailPath(spec.qemu, 'QEMU binary'), ...spec.args);
  return out;
}

function readSmall(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').slice(0, 512).trim();
  } catch {
    return undefined;
  }
}

/** The jail's account of how QEMU ended ("exited 1", "killed SIGKILL"), once it has. */
export function jailExit(stateDir: string): string | undefined {
  return readSmall(path.join(stateDir, 'exit'));
}

/** Runs the jail (which detaches QEMU and exits) and returns QEMU's host pid. */
export async function startJailed(spec: JailSpec, run: JailRun): Promise<number> {
  const argv = [run.logFile, String(run.logMaxBytes), String(run.logKeep), '--', run.jail, ...jailArgv(spec)];
  let relayErr = '';
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(run.logRelay, argv, { stdio: ['ignore', 'ignore', 'pipe'], cwd: spec.stateDir });
    const timer = setTimeout(() => child.kill('SIGKILL'), run.timeoutMs);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (relayErr = (relayErr + d).slice(-4096)));
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${run.logRelay}: ${err.message}`));
    });
    child.once('close', (c, sig) => {
      clearTimeout(timer);
      resolve(sig ? null : c);
    });
  });
  if (code !== 0) {
    const why = code === null ? `killed after ${run.timeoutMs} ms` : readSmall(path.join(spec.stateDir, 'error')) || relayErr.trim().split('\n')[0] || `exit status ${code}`;
    throw new Error(`isola-vmm-jail failed: ${why}`);
  }
  const pid = Number(readSmall(path.join(spec.stateDir, 'pid')));
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`isola-vmm-jail wrote no usable pid in ${spec.stateDir}`);
  return pid;
}
