// Turns a qube's properties and prepared volumes into the backend's runtime spec: limits,
// mounts (private at /rw, /home from it, the agent channel, the agent itself) and the init argv.

import path from 'node:path';
import type { QubeRuntimeSpec } from '../core/backend';
import { QubesError } from '../core/errors';
import { memoryProblem } from '../core/properties';
import type { QubeRecord } from '../core/qube';
import type { IdRange, StartedVolumes } from '../core/volumes';
import type { Collection } from './collection';
import type { DaemonConfig } from './config';

/** The agent (static C, src/native/agent/), also the qube's init. */
export const AGENT_IN_QUBE = '/usr/lib/isola/isola-agent';

export function runtimeId(q: QubeRecord): string {
  return `${q.name}.${q.qid}`;
}

/** The qube's console, written by the backend's relay (never a host file inside the qube). */
export function guestLogFile(cfg: DaemonConfig, q: QubeRecord): string {
  return path.join(cfg.logDir, `guest-${q.name}.log`);
}

export function agentSocketDir(cfg: DaemonConfig, q: QubeRecord): string {
  return path.join(cfg.agentDir, q.uuid);
}

/**
 * Holds the qube's qrexec client socket (/run/qubes in the qube). Owned by the host's root and mounted
 * read-only, not inside the qube-owned agent directory: the qube cannot swap the socket isolad chmods.
 */
export function qrexecClientDir(cfg: DaemonConfig, q: QubeRecord): string {
  return path.join(cfg.agentDir, `${q.uuid}.qrexec`);
}

export function buildRuntimeSpec(cfg: DaemonConfig, col: Collection, q: QubeRecord, vols: StartedVolumes, ids: IdRange): QubeRuntimeSpec {
  const memory = Number(col.prop(q, 'memory'));
  const maxmem = Number(col.prop(q, 'maxmem'));
  // Refused, not raised to memory behind the user's back (a template's memory may have grown past it).
  const problem = memoryProblem(q, col.world());
  if (problem) throw new QubesError('QubesValueError', `${q.name}: ${problem}`);
  return {
    id: runtimeId(q),
    hostname: q.name,
    rootfs: vols.rootfs,
    mounts: [
      { source: vols.privateDir, destination: '/rw', readonly: false },
      { source: path.join(vols.privateDir, 'home'), destination: '/home', readonly: false },
      // Read-only: a qube that could replace agent.sock would have isolad chmod its symlink target after a restart.
      { source: agentSocketDir(cfg, q), destination: '/run/isola', readonly: true },
      { source: qrexecClientDir(cfg, q), destination: '/run/qubes', readonly: true },
      { source: cfg.libDir, destination: path.dirname(AGENT_IN_QUBE), readonly: true },
    ],
    uidBase: ids.base,
    uidCount: ids.count,
    memoryMiB: memory,
    maxmemMiB: maxmem,
    vcpus: Number(col.prop(q, 'vcpus')),
    pidsLimit: 4096,
    // The agent is PID 1 itself: it reaps every orphan and handles SIGTERM.
    init: [AGENT_IN_QUBE],
    env: [
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      `ISOLA_QUBE_NAME=${q.name}`,
      `ISOLA_DEFAULT_USER=${String(col.prop(q, 'default_user'))}`,
      'ISOLA_AGENT_SOCKET=/run/isola/agent.sock',
      // The qube's pid namespace is the agent's alone: shutdown may kill(-1) (it would as PID 1 anyway).
      'ISOLA_SHUTDOWN_KILL_ALL=1',
    ],
    logFile: guestLogFile(cfg, q),
    cgroupParent: cfg.cgroupParent,
  };
}
