// Turns a QubeRuntimeSpec into an OCI runtime-spec 1.0.2 config.json for runc/crun.
// Pure: no I/O, so every security-relevant choice is unit-testable and reviewable in one place.

import * as path from 'path';
import type { QubeMount, QubeRuntimeSpec } from './sandbox-spec';
import { VIRTUAL_BLOCK_DIR } from './host-identity';
import { procBindHook, type OciHook, type ProcFiles } from './qube-proc-files';
import { seccompProfile, type SeccompProfile } from './seccomp-profile';

/** Facts about the host that change the spec; the backend probes them (this module stays pure). */
export interface OciHostOptions {
  /**
   * Hard RLIMIT_NOFILE. Raising a hard limit needs CAP_SYS_RESOURCE in the initial user namespace,
   * so it must not exceed the runtime's own hard limit (see /proc/self/limits), or runc init fails.
   */
  nofileHard?: number;
  /** Whether memory+swap can be limited (cgroup v1 needs memory.memsw.*; v2 has memory.swap.max). */
  swapLimit?: boolean;
  /** Host files naming this machine's hardware (block device serials...), masked like MASKED_PATHS. */
  hostIdentityFiles?: readonly string[];
  /** The qube's own /proc/cmdline and boot_id, put in place by a createContainer hook. */
  procFiles?: ProcFiles;
}

export const DEFAULT_NOFILE_HARD = 1048576;
const NOFILE_SOFT = 1024;
const CPU_PERIOD_US = 100000;
const MIB = 1024 * 1024;
const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Docker's default capabilities minus NET_RAW (no packet forging on the qube's link) and MKNOD
 * (device nodes are the runtime's business). They are capabilities of the qube's own user namespace.
 */
export const QUBE_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/**
 * Host-information leaks and kernel knobs hidden from the qube: Docker's list, plus the host's
 * pressure stall figures (how busy the host and its other qubes are), vmcoreinfo (physical
 * addresses of kernel structures, a KASLR break) and the host's virtual disks (loop backing files,
 * device-mapper names and uuids). /proc/stat and /proc/loadavg stay: ps, top and uptime fail
 * without them (docs/architecture.md).
 */
export const MASKED_PATHS: readonly string[] = [
  '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware',
  '/sys/devices/virtual/powercap', '/proc/pressure', '/sys/kernel/vmcoreinfo', VIRTUAL_BLOCK_DIR,
];

export const READONLY_PATHS: readonly string[] = [
  '/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger',
];

/** The only device nodes a qube gets: the OCI default set (runc creates them, ptmx comes from devpts). */
const DEVICE_ALLOW: ReadonlyArray<{ type: 'c'; major: number; minor?: number }> = [
  { type: 'c', major: 1, minor: 3 }, // null
  { type: 'c', major: 1, minor: 5 }, // zero
  { type: 'c', major: 1, minor: 7 }, // full
  { type: 'c', major: 1, minor: 8 }, // random
  { type: 'c', major: 1, minor: 9 }, // urandom
  { type: 'c', major: 5, minor: 0 }, // tty
  { type: 'c', major: 5, minor: 2 }, // ptmx
  { type: 'c', major: 136 }, // pts/*
];

/** Places a bind mount must not cover: the runtime's own pseudo filesystems, or the root. */
const RESERVED_DESTINATIONS = ['/', '/proc', '/sys', '/dev'];

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const HOSTNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const CGROUP_PARENT_RE = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;
const MAX_ID = 0xffffffff;

function fail(spec: { id?: unknown }, what: string): never {
  const id = typeof spec.id === 'string' && spec.id !== '' ? spec.id : '(no id)';
  throw new Error(`qube runtime spec ${id}: ${what}`);
}

function isPosInt(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
}

function validateMount(spec: QubeRuntimeSpec, m: QubeMount, i: number): void {
  if (typeof m.source !== 'string' || !path.isAbsolute(m.source)) {
    fail(spec, `mounts[${i}].source must be an absolute host path (got ${JSON.stringify(m.source)})`);
  }
  if (typeof m.destination !== 'string' || !path.isAbsolute(m.destination)) {
    fail(spec, `mounts[${i}].destination must be an absolute path (got ${JSON.stringify(m.destination)})`);
  }
  const dest = path.posix.normalize(m.destination).replace(/(.)\/+$/, '$1');
  if (dest !== m.destination) {
    fail(spec, `mounts[${i}].destination ${m.destination} is not normalised (write ${dest})`);
  }
  for (const r of RESERVED_DESTINATIONS) {
    if (dest === r || (r !== '/' && dest.startsWith(`${r}/`))) {
      fail(spec, `mounts[${i}].destination ${m.destination} would cover ${r}, which the runtime owns`);
    }
  }
  if (typeof m.readonly !== 'boolean') fail(spec, `mounts[${i}].readonly must be a boolean`);
}

/** Throws one clear line for the first thing wrong; nothing is half-built. */
export function validateRuntimeSpec(spec: QubeRuntimeSpec): void {
  if (spec === null || typeof spec !== 'object') throw new Error('qube runtime spec: not an object');
  if (typeof spec.id !== 'string' || !ID_RE.test(spec.id)) {
    fail(spec, `id ${JSON.stringify(spec.id)} must be 1-128 of [A-Za-z0-9_.-], starting alphanumeric`);
  }
  if (typeof spec.hostname !== 'string' || !HOSTNAME_RE.test(spec.hostname)) {
    fail(spec, `hostname ${JSON.stringify(spec.hostname)} must be 1-63 of [A-Za-z0-9_.-]`);
  }
  if (typeof spec.rootfs !== 'string' || !path.isAbsolute(spec.rootfs) || path.resolve(spec.rootfs) === '/') {
    fail(spec, `rootfs ${JSON.stringify(spec.rootfs)} must be an absolute path other than /`);
  }
  // uid 0 inside must never be uid 0 outside: that is the whole point of the user namespace.
  if (!isPosInt(spec.uidBase)) fail(spec, `uidBase ${spec.uidBase} must be a positive integer (never 0: root inside would be host root)`);
  if (!isPosInt(spec.uidCount)) fail(spec, `uidCount ${spec.uidCount} must be a positive integer`);
  if (spec.uidBase + spec.uidCount - 1 > MAX_ID - 1) {
    fail(spec, `uid range ${spec.uidBase}+${spec.uidCount} goes past the last usable uid ${MAX_ID - 1}`);
  }
  if (!isPosInt(spec.memoryMiB)) fail(spec, `memoryMiB ${spec.memoryMiB} must be a positive integer`);
  if (!Number.isSafeInteger(spec.maxmemMiB) || spec.maxmemMiB < 0) {
    fail(spec, `maxmemMiB ${spec.maxmemMiB} must be 0 (same as memory) or a positive integer`);
  }
  if (spec.maxmemMiB !== 0 && spec.maxmemMiB < spec.memoryMiB) {
    fail(spec, `maxmemMiB ${spec.maxmemMiB} is below memoryMiB ${spec.memoryMiB}`);
  }
  if (!isPosInt(spec.vcpus)) fail(spec, `vcpus ${spec.vcpus} must be a positive integer`);
  if (!isPosInt(spec.pidsLimit)) fail(spec, `pidsLimit ${spec.pidsLimit} must be a positive integer`);
  if (!Array.isArray(spec.init) || spec.init.length === 0 || spec.init.some((a) => typeof a !== 'string')) {
    fail(spec, 'init must be a non-empty argv (the qube\'s first process)');
  }
  if (spec.init[0] === '') fail(spec, 'init[0] (the program to run) is empty');
  if (!Array.isArray(spec.env) || spec.env.some((e) => typeof e !== 'string' || !/^[^=]+=/.test(e))) {
    fail(spec, 'env must be a list of NAME=value strings');
  }
  if (typeof spec.logFile !== 'string' || !path.isAbsolute(spec.logFile)) {
    fail(spec, `logFile ${JSON.stringify(spec.logFile)} must be an absolute path`);
  }
  const parent = typeof spec.cgroupParent === 'string' ? spec.cgroupParent.replace(/^\/+|\/+$/g, '') : '';
  if (!CGROUP_PARENT_RE.test(parent) || parent.split('/').some((s) => s === '.' || s === '..')) {
    fail(spec, `cgroupParent ${JSON.stringify(spec.cgroupParent)} must be a relative path of [A-Za-z0-9_.-] segments`);
  }
  if (!Array.isArray(spec.mounts)) fail(spec, 'mounts must be a list');
  spec.mounts.forEach((m, i) => validateMount(spec, m, i));
}

/**
 * cgroupfs path of the qube. Absolute (from the hierarchy root) on purpose: a relative path is
 * taken under the caller's own cgroup, so qubes would land inside isolad's service cgroup and be
 * killed with it, and two hierarchies of a hybrid host could disagree on where that is.
 */
export function cgroupsPathFor(spec: Pick<QubeRuntimeSpec, 'cgroupParent' | 'id'>): string {
  return `/${spec.cgroupParent.replace(/^\/+|\/+$/g, '')}/${spec.id}`;
}

export interface OciSpec {
  ociVersion: string;
  process: Record<string, unknown>;
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: Array<{ destination: string; type: string; source: string; options: string[] }>;
  linux: Record<string, unknown> & { seccomp: SeccompProfile; maskedPaths: string[]; readonlyPaths: string[] };
  hooks?: { createContainer: OciHook[] };
  annotations: Record<string, string>;
}

/** Builds config.json for one qube. Throws (without side effects) on a malformed spec. */
export function buildOciSpec(spec: QubeRuntimeSpec, host: OciHostOptions = {}): OciSpec {
  validateRuntimeSpec(spec);
  const nofileHard = Math.max(NOFILE_SOFT, host.nofileHard ?? DEFAULT_NOFILE_HARD);
  const limitBytes = (spec.maxmemMiB === 0 ? spec.memoryMiB : spec.maxmemMiB) * MIB;
  const env = spec.env.some((e) => e.startsWith('PATH=')) ? [...spec.env] : [DEFAULT_PATH, ...spec.env];
  // Raw sockets only where there is a network (ping's file capability needs it in the bounding set);
  // they reach no further than the qube's own namespace, whose netvm drops spoofed sources.
  const caps = spec.networked ? [...QUBE_CAPABILITIES, 'CAP_NET_RAW'] : [...QUBE_CAPABILITIES];
  // devpts' gid=5 (tty) must exist in the qube's mapping, or the mount is refused.
  const ptsOptions = ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'];
  if (spec.uidCount > 5) ptsOptions.push('gid=5');

  const mounts: OciSpec['mounts'] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ptsOptions },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    // Mountable because the qube's network namespace is owned by its user namespace.
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
  ];
  for (const m of spec.mounts) {
    mounts.push({
      destination: m.destination,
      type: 'bind',
      source: m.source,
      options: ['rbind', 'rprivate', 'nosuid', 'nodev', m.readonly ? 'ro' : 'rw'],
    });
  }

  const memory: Record<string, number> = { limit: limitBytes, reservation: spec.memoryMiB * MIB };
  // memory+swap equal to memory: a qube's hard limit cannot be dodged by swapping.
  if (host.swapLimit !== false) memory.swap = limitBytes;

  const hostMasks = (host.hostIdentityFiles ?? []).filter((p) => path.isAbsolute(p) && p.startsWith('/sys/'));
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: [...spec.init],
      env,
      cwd: '/',
      capabilities: { bounding: caps, effective: [...caps], permitted: [...caps] },
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: NOFILE_SOFT, hard: nofileHard }],
      // As in Qubes, the qube's user may become the qube's root (`sudo`): root inside is not the
      // boundary, the qube is. What root may do stays bounded by the user namespace, the capability
      // bounding set and seccomp, which setuid programs cannot widen (docs/threat-model.md).
      noNewPrivileges: false,
    },
    root: { path: spec.rootfs, readonly: false },
    hostname: spec.hostname,
    mounts,
    linux: {
      uidMappings: [{ containerID: 0, hostID: spec.uidBase, size: spec.uidCount }],
      gidMappings: [{ containerID: 0, hostID: spec.uidBase, size: spec.uidCount }],
      namespaces: ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup', 'user'].map((type) => ({ type })),
      resources: {
        devices: [
          { allow: false, access: 'rwm' },
          ...DEVICE_ALLOW.map((d) => ({ allow: true, type: d.type, major: d.major, ...(d.minor === undefined ? {} : { minor: d.minor }), access: 'rwm' })),
        ],
        memory,
        cpu: { quota: spec.vcpus * CPU_PERIOD_US, period: CPU_PERIOD_US },
        pids: { limit: spec.pidsLimit },
      },
      cgroupsPath: cgroupsPathFor(spec),
      seccomp: seccompProfile(),
      maskedPaths: [...MASKED_PATHS, ...hostMasks],
      readonlyPaths: [...READONLY_PATHS],
    },
    ...(host.procFiles ? { hooks: { createContainer: [procBindHook(host.procFiles)] } } : {}),
    annotations: { 'org.isola.hostname': spec.hostname },
  };
}
