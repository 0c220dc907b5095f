// Chooses the OCI runtime binary for the sandbox backend: ISOLA_RUNTIME if set, else crun on a
// pure cgroup v2 host (it refuses hybrid hierarchies), else runc, which handles v1, hybrid and v2.

import * as fs from 'fs';
import * as path from 'path';

export type OciRuntimeName = 'runc' | 'crun';

export interface OciRuntimeChoice {
  path: string;
  name: OciRuntimeName;
  /** One line saying why this runtime was chosen (shown by the daemon at start). */
  reason: string;
}

const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** True when /sys/fs/cgroup itself is a cgroup2 mount (no v1 hierarchies beside it). */
export function isPureCgroupV2(mountinfo: string): boolean {
  for (const line of mountinfo.split('\n')) {
    // mountinfo: id parent major:minor root mountpoint options [optional...] - fstype source superopts
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const mountPoint = line.slice(0, sep).split(' ')[4];
    const fsType = line.slice(sep + 3).split(' ')[0];
    if (mountPoint === '/sys/fs/cgroup') return fsType === 'cgroup2';
  }
  return false;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function findInPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  const dirs = [...(env.PATH ?? '').split(':').filter((d) => path.isAbsolute(d)), ...SYSTEM_DIRS];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function nameOf(file: string): OciRuntimeName {
  return path.basename(file).includes('crun') ? 'crun' : 'runc';
}

/**
 * Picks the runtime. `mountinfo` is injectable for tests; by default /proc/self/mountinfo.
 * Throws one line naming what to install when nothing usable is found.
 */
export function probeOciRuntime(env: NodeJS.ProcessEnv = process.env, mountinfo?: string): OciRuntimeChoice {
  const override = env.ISOLA_RUNTIME?.trim();
  if (override) {
    const resolved = path.isAbsolute(override) ? override : findInPath(override, env);
    if (!resolved || !isExecutable(resolved)) {
      throw new Error(`ISOLA_RUNTIME=${override}: not an executable OCI runtime (give a path, or runc/crun on PATH)`);
    }
    return { path: resolved, name: nameOf(resolved), reason: `ISOLA_RUNTIME=${override}` };
  }
  let info = mountinfo;
  if (info === undefined) {
    try {
      info = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    } catch (err) {
      throw new Error(`/proc/self/mountinfo: ${(err as Error).message} (is /proc mounted?)`);
    }
  }
  const pureV2 = isPureCgroupV2(info);
  const runc = findInPath('runc', env);
  const crun = findInPath('crun', env);
  if (pureV2 && crun) return { path: crun, name: 'crun', reason: 'cgroup v2 host and crun is installed' };
  if (runc) {
    return {
      path: runc,
      name: 'runc',
      reason: pureV2 ? 'cgroup v2 host, crun not installed' : 'cgroup v1 or hybrid host (crun needs pure cgroup v2)',
    };
  }
  if (crun) {
    throw new Error(`only crun (${crun}) is installed and this host's cgroups are v1/hybrid, which crun refuses: apt-get install runc`);
  }
  throw new Error('no OCI runtime found (looked for runc and crun on PATH and in /usr/sbin, /usr/bin, /sbin): apt-get install runc');
}
