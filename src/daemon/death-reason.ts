// Why a qube's runtime died without being asked to: read what the cgroup recorded before the
// runtime state (and with it the cgroup) is deleted.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { DaemonConfig } from './config';

const CGROUP_ROOTS = ['/sys/fs/cgroup/memory', '/sys/fs/cgroup'];

export async function deathReason(cfg: DaemonConfig, runtimeId: string): Promise<string> {
  for (const root of CGROUP_ROOTS) {
    const dir = path.join(root, cfg.cgroupParent, runtimeId);
    const v1 = await fs.readFile(path.join(dir, 'memory.oom_control'), 'utf8').catch(() => '');
    const v2 = await fs.readFile(path.join(dir, 'memory.events'), 'utf8').catch(() => '');
    const kills = /oom_kill (\d+)/.exec(v1 || v2);
    if (kills && Number(kills[1]) > 0) return 'runtime died: killed by the out-of-memory killer (raise maxmem)';
  }
  return 'runtime died: the qube\'s init process exited unexpectedly';
}
