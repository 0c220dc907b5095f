// The contract every isolation backend implements (`sandbox`: OCI runtime; `hvm`: QEMU), and the
// backend-neutral description of one qube's launch. Declared in core so that the daemon depends on
// these interfaces, never on a driver; a backend turns the description into what it needs.

import type { Duplex } from 'node:stream';
import type { IdRange, VolumeName } from './volumes';

/** Qubes' `virt_mode` values that Isola has: the registry of backends is keyed by them. */
export type VirtMode = 'sandbox' | 'hvm';
export const VIRT_MODES: readonly VirtMode[] = ['sandbox', 'hvm'];

/** How a backend presents a volume to its qube: a mounted tree on the host, or a filesystem image / block device. */
export type VolumeForm = 'tree' | 'image';

/** A file attached to a VM as one virtio block device (form `image`); the guest finds it by its index. */
export interface VolumeDisk {
  file: string;
  readonly: boolean;
}

/** A directory of the filesystem on one of a volume's disks (index into VolumeImage.disks). */
export interface DiskDir {
  disk: number;
  dir: string;
}

/**
 * A volume in form `image`: the guest mounts each disk's filesystem and assembles the volume itself, as
 * the host does for a tree: an overlay of `lower` (top first) with the run's changes in `upper` (its
 * overlay work directory is `upper`'s sibling `work`). No upper: the volume is read-only.
 */
export interface VolumeImage {
  disks: VolumeDisk[];
  lower: DiskDir[];
  upper?: DiskDir;
}

/** One started volume as the pool prepared it, in the form the backend asked for. */
export interface VolumeHandle {
  name: VolumeName;
  readonly: boolean;
  /** Mounted directory on the host (form `tree`). */
  tree?: string;
  /** Disks and how the guest assembles them (form `image`). */
  image?: VolumeImage;
}

export interface QubeLimits {
  /** `memory` property in MiB: guaranteed memory (soft limit, or guest RAM). */
  memoryMiB: number;
  /** `maxmem` property in MiB: hard limit (0 means: memoryMiB). */
  maxmemMiB: number;
  vcpus: number;
  pidsLimit: number;
}

/** Everything a backend needs to run one qube; computed by the daemon from the qube's properties. */
export interface QubeLaunch {
  /** Runtime id, unique per isolad instance (`work.3`): names runtime state, cgroups, sockets. */
  runtimeId: string;
  /** The qube's name (its hostname). */
  name: string;
  /** The qube's uuid: names its host-side files (channel directories, volumes). */
  uuid: string;
  /** The qube's host uid/gid range (its root is `ids.base` on the host, for a sandbox). */
  ids: IdRange;
  limits: QubeLimits;
  volumes: { root: VolumeHandle; private: VolumeHandle };
  /** For backends with their own kernel: Qubes' `kernel` and `kernelopts`. */
  kernel?: { name: string; opts: string };
  /** Host directory the qube sees read-only at /usr/lib/isola: the agent, the in-qube tools, built-in services. */
  guestLib: string;
  /** What the agent is told about its qube (ISOLA_QUBE_NAME, ISOLA_DEFAULT_USER, …). */
  agentEnv: Record<string, string>;
  /** File on the host receiving the qube's console (written by the backend's relay, never by the qube). */
  logFile: string;
  /** Has a netvm or is one (Qubes' is_networked): it gets a network link after it starts. */
  networked?: boolean;
  /**
   * The qube's network card, when it has a netvm: its address, gateway and MAC (Qubes' visible_ip,
   * visible_gateway, mac). A backend whose qubes run their own kernel gives them a card and these
   * settings at start; the link behind the card is made afterwards by the network step.
   */
  nic?: { ip: string; gateway: string; mac: string };
}

/** Where a connection from the qube arrived: its agent's channel, or the qubes' qrexec client endpoint. */
export type ChannelEndpoint = 'agent' | 'client';

/**
 * The host end of a qube's agent channel, owned by its backend (unix sockets bound into a sandbox,
 * a virtio-serial port of a VM). The endpoint a connection arrived on is the qube's identity: no
 * message names its sender. The protocol above it (docs/agent-protocol.md) is the same for every backend.
 */
export interface AgentChannel {
  /** Starts taking the qube's connections; accept gets each one with the endpoint it came through. */
  listen(accept: (conn: Duplex, from: ChannelEndpoint) => void): Promise<void>;
  /** Stops taking connections (open ones are the caller's to close). */
  close(): Promise<void>;
}

export type RuntimeStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

export interface RuntimeInfo {
  id: string;
  status: RuntimeStatus;
  /** Host pid of the qube's first process (init, or the VMM), 0 if none. */
  pid: number;
  /** How a VM's CPUs run ('kvm' or 'tcg'), told by start(); a sandbox has none. */
  accel?: string;
}

export interface Backend {
  readonly virtMode: VirtMode;
  /** The form in which this backend wants volumes from the pool. */
  readonly volumeForm: VolumeForm;
  /**
   * The host end of the qube's agent channel, ready before the qube starts (its agent connects
   * once it runs). Called again for a running qube after an isolad restart: same endpoints.
   */
  channel(q: { runtimeId: string; uuid: string; ids: IdRange }): Promise<AgentChannel>;
  /** Prepares everything but running (bundle, checks): undone by destroy. */
  create(launch: QubeLaunch): Promise<void>;
  /** Runs a created qube detached (it keeps running if isolad exits); resolves once its first process runs. */
  start(id: string): Promise<RuntimeInfo>;
  /** Sends a signal to the qube's first process (SIGTERM asks for shutdown, SIGKILL kills). */
  signal(id: string, signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Removes a qube's runtime state (force-kills it first if still running); idempotent. */
  destroy(id: string): Promise<void>;
  /** Current state, or undefined if the runtime does not know the id. */
  state(id: string): Promise<RuntimeInfo | undefined>;
  /** All qubes this backend knows for this instance (for reconcile after an isolad restart). */
  list(): Promise<RuntimeInfo[]>;
  /** Host pids of every process of the qube (for accounting and tests). */
  pids(id: string): Promise<number[]>;
  /** Why a qube stopped that nobody stopped, in a sentence for qvm-ls and qvm-check (before destroy). */
  deathReason?(id: string): Promise<string | undefined>;
  /** Freezes every process (qvm-pause): nothing of the qube runs until unpause. */
  pause(id: string): Promise<void>;
  unpause(id: string): Promise<void>;
}
