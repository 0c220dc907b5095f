// What the sandbox backend makes of a backend-neutral launch: one runtime spec with the qube's root as
// the container's root, its private volume at /rw (and /rw/home at /home), the agent channel's socket
// directories and the guest library bound read-only, and the agent as the first process.

import path from 'node:path';
import type { QubeLaunch } from '../../core/backend';

/** One bind mount from the host into a qube. */
export interface QubeMount {
  source: string;
  destination: string;
  readonly: boolean;
}

/** Everything the OCI spec is built from (pure input of buildOciSpec). */
export interface QubeRuntimeSpec {
  /** Runtime id, unique per isolad instance (e.g. `work.3`); names runc state and cgroups. */
  id: string;
  /** Hostname inside the qube: the qube's name. */
  hostname: string;
  /** Prepared (already mounted) root filesystem on the host. */
  rootfs: string;
  /** Extra bind mounts (private volume at /rw, agent channel directory at /run/isola, …). */
  mounts: QubeMount[];
  /** First host uid/gid of the qube's range; uid 0 inside maps to it. */
  uidBase: number;
  /** Size of the uid/gid range. */
  uidCount: number;
  memoryMiB: number;
  /** Hard limit (0 means: use memoryMiB). */
  maxmemMiB: number;
  vcpus: number;
  pidsLimit: number;
  /** argv of the qube's first process (the agent). */
  init: string[];
  env: string[];
  /** File on the host receiving the first process' stdout/stderr. */
  logFile: string;
  /** Cgroup parent shared by this isolad instance's qubes (e.g. `isola-<instance>`). */
  cgroupParent: string;
  /** Linked to a netvm (or one itself): raw sockets in its own network namespace, for ping. */
  networked?: boolean;
}

/** Where the guest library (agent, tools, built-in services) appears inside every qube. */
export const GUEST_LIB = '/usr/lib/isola';
/** The agent (static C, src/native/agent/), also the qube's init. */
export const AGENT_IN_QUBE = `${GUEST_LIB}/isola-agent`;

/** The host directories of a qube's agent channel (made by the backend, see agent-sockets.ts). */
export interface ChannelDirs {
  /** Holds agent.sock; owned by the qube's root, bound read-only at /run/isola. */
  agent: string;
  /** Holds qrexec-client.sock; owned by the host's root, bound read-only at /run/qubes. */
  client: string;
}

export function sandboxRuntimeSpec(launch: QubeLaunch, dirs: ChannelDirs, cgroupParent: string): QubeRuntimeSpec {
  const root = launch.volumes.root.tree;
  const priv = launch.volumes.private.tree;
  if (!root || !priv) throw new Error(`qube ${launch.name}: the sandbox backend needs its root and private volumes as mounted trees`);
  return {
    id: launch.runtimeId,
    hostname: launch.name,
    rootfs: root,
    mounts: [
      { source: priv, destination: '/rw', readonly: false },
      { source: path.join(priv, 'home'), destination: '/home', readonly: false },
      // Read-only: a qube that could replace agent.sock would have isolad chmod its symlink target after a restart.
      { source: dirs.agent, destination: '/run/isola', readonly: true },
      { source: dirs.client, destination: '/run/qubes', readonly: true },
      { source: launch.guestLib, destination: GUEST_LIB, readonly: true },
    ],
    uidBase: launch.ids.base,
    uidCount: launch.ids.count,
    memoryMiB: launch.limits.memoryMiB,
    maxmemMiB: launch.limits.maxmemMiB,
    vcpus: launch.limits.vcpus,
    pidsLimit: launch.limits.pidsLimit,
    // The agent is PID 1 itself: it reaps every orphan and handles SIGTERM.
    init: [AGENT_IN_QUBE],
    env: [
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      ...Object.entries(launch.agentEnv).map(([k, v]) => `${k}=${v}`),
      'ISOLA_AGENT_SOCKET=/run/isola/agent.sock',
      // The qube's pid namespace is the agent's alone: shutdown may kill(-1) (it would as PID 1 anyway).
      'ISOLA_SHUTDOWN_KILL_ALL=1',
    ],
    logFile: launch.logFile,
    cgroupParent,
    networked: launch.networked === true,
  };
}
