// The contract every isolation backend implements (sandbox now, vm later).
// Declared in core so that daemon depends on the interface, never on a driver.

/** One bind mount from the host into a qube. */
export interface QubeMount {
  source: string;
  destination: string;
  readonly: boolean;
}

/** Everything a backend needs to start one qube; computed by the daemon. */
export interface QubeRuntimeSpec {
  /** Runtime id, unique per isolad instance (e.g. `work-3f2a…`); names runc state and cgroups. */
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
  /** `memory` property in MiB: guaranteed memory (soft limit). */
  memoryMiB: number;
  /** `maxmem` property in MiB: hard limit (0 means: use memoryMiB). */
  maxmemMiB: number;
  vcpus: number;
  pidsLimit: number;
  /** argv of the qube's first process (isola-agent). */
  init: string[];
  env: string[];
  /** File on the host receiving the first process' stdout/stderr. */
  logFile: string;
  /** Cgroup parent shared by this isolad instance's qubes (e.g. `isola-<instance>`). */
  cgroupParent: string;
}

export type RuntimeStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

export interface RuntimeInfo {
  id: string;
  status: RuntimeStatus;
  /** Host pid of the qube's first process, 0 if none. */
  pid: number;
}

export interface Backend {
  readonly name: 'sandbox' | 'vm';
  /** Starts the qube detached: it keeps running if isolad exits. Resolves once the first process runs. */
  start(spec: QubeRuntimeSpec): Promise<RuntimeInfo>;
  /** Sends a signal to the qube's first process (SIGTERM asks for shutdown, SIGKILL kills). */
  signal(id: string, signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Removes a stopped qube's runtime state (force-kills it first if still running). */
  destroy(id: string): Promise<void>;
  /** Current state, or undefined if the runtime does not know the id. */
  state(id: string): Promise<RuntimeInfo | undefined>;
  /** All qubes this backend knows for this instance (for reconcile after an isolad restart). */
  list(): Promise<RuntimeInfo[]>;
  /** Host pids of every process in the qube (for accounting and tests). */
  pids(id: string): Promise<number[]>;
}
