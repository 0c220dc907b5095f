// admin.vm.CurrentState as Qubes answers it: `mem=KiB mem_static_max=KiB cputime=N power_state=S`,
// with mem read from the qube's own cgroup (what qvm-ls' MEMORY shows) and, for dom0, the host's.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { QubeRecord } from '../core/qube';
import type { Collection } from './collection';
import type { DaemonConfig } from './config';

/** cgroup v1 keeps memory in its own hierarchy, v2 in the unified one; the first readable wins. */
const MEMORY_FILES: readonly [string, string][] = [
  ['/sys/fs/cgroup/memory', 'memory.usage_in_bytes'],
  ['/sys/fs/cgroup', 'memory.current'],
];

/** Bytes charged to the qube's cgroup (its processes and page cache), or 0 when none is readable. */
export async function cgroupMemoryBytes(cfg: Pick<DaemonConfig, 'cgroupParent'>, runtimeId: string, roots = MEMORY_FILES): Promise<number> {
  for (const [root, file] of roots) {
    const text = await fs.readFile(path.join(root, cfg.cgroupParent, runtimeId, file), 'utf8').catch(() => '');
    const n = Number(text.trim());
    if (text.trim() !== '' && Number.isFinite(n)) return n;
  }
  return 0;
}

/** dom0 is the host: its memory in use is MemTotal - MemAvailable, its maximum MemTotal (KiB). */
async function hostMemoryKiB(): Promise<{ used: number; total: number }> {
  const info = await fs.readFile('/proc/meminfo', 'utf8').catch(() => '');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  return { used: Math.max(0, kb('MemTotal') - kb('MemAvailable')), total: kb('MemTotal') };
}

export async function currentState(col: Collection, cfg: DaemonConfig, q: QubeRecord, suffix = ''): Promise<string> {
  const state = col.powerState(q);
  let mem = 0;
  let max = 0;
  if (q.klass === 'AdminVM') {
    const host = await hostMemoryKiB();
    mem = host.used;
    max = host.total;
  } else {
    max = Number(col.prop(q, 'maxmem')) * 1024;
    const rt = state === 'Halted' ? undefined : col.store.runtime(q.qid);
    // A VM holds the memory it was given (no balloon yet), as Xen reports a domain's current allocation.
    if (rt?.backend === 'hvm') mem = Number(col.prop(q, 'memory')) * 1024;
    else if (rt) mem = Math.floor((await cgroupMemoryBytes(cfg, rt.runtimeId)) / 1024);
    // Isola's own key: the accelerator a running VM got (kvm or tcg), for qvm-ls' VIRT-MODE.
    if (rt?.accel) suffix = ` accel=${rt.accel}${suffix}`;
  }
  return `mem=${mem} mem_static_max=${max} cputime=0 power_state=${state}${suffix}`;
}
