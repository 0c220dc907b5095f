// Where one isolad instance keeps its things. ISOLA_HOME and ISOLA_SOCKET select the instance;
// every host-global name (runc root, cgroups) is derived from it so instances never meet; host uid
// ranges come from a host-wide registry instead (store/uid-registry.ts), since a hash can collide.

import { createHash } from 'node:crypto';
import path from 'node:path';
import { registryPath } from '../store/uid-registry';
import { parseVolumeSizes, type VolumeSizes } from './volume-sizes';

export interface DaemonConfig {
  home: string;
  socket: string;
  cache: string;
  /** 8 hex chars naming this instance in host-global places. */
  instance: string;
  dbPath: string;
  poolDir: string;
  runDir: string;
  agentDir: string;
  libDir: string;
  logDir: string;
  runcRoot: string;
  /** Run dirs of this instance's QEMUs (QMP and serial sockets, pid files). */
  vmRoot: string;
  bundleRoot: string;
  cgroupParent: string;
  /** The host-wide uid range registry shared by every instance (ISOLA_UID_REGISTRY for tests). */
  uidRegistry: string;
  /** How long an `ask` waits for an answer before the call is denied (ISOLA_ASK_TIMEOUT, seconds). */
  askTimeoutMs: number;
  /** Default sizes of new qubes' volumes (ISOLA_VOLUME_SIZES; Qubes' defaults where unset). */
  volumeSizes: VolumeSizes;
  /** Upstream DNS servers of the uplink qube (ISOLA_UPLINK_DNS, e.g. a test's own; unset: the host's). */
  uplinkDns?: string[];
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  const home = path.resolve(env.ISOLA_HOME || '/var/lib/isola');
  const socket = path.resolve(env.ISOLA_SOCKET || '/run/isola/isolad.sock');
  const cache = path.resolve(env.ISOLA_CACHE || '/var/cache/isola');
  const instance = createHash('sha256').update(home).digest('hex').slice(0, 8);
  return {
    home,
    socket,
    cache,
    instance,
    dbPath: path.join(home, 'isola.db'),
    poolDir: path.join(home, 'pools', 'default'),
    runDir: path.join(home, 'run'),
    agentDir: path.join(home, 'agent'),
    libDir: path.join(home, 'lib'),
    logDir: path.join(home, 'log'),
    runcRoot: path.join('/run/isola-runc', instance),
    vmRoot: path.join('/run/isola-vm', instance),
    bundleRoot: path.join(home, 'bundles'),
    cgroupParent: `isola-${instance}`,
    uidRegistry: registryPath(env),
    askTimeoutMs: askTimeout(env.ISOLA_ASK_TIMEOUT),
    volumeSizes: parseVolumeSizes(env.ISOLA_VOLUME_SIZES),
    uplinkDns: uplinkDns(env.ISOLA_UPLINK_DNS),
  };
}

/** A list of IPv4 addresses (space or comma separated); anything else is ignored, loudly at start. */
function uplinkDns(untrusted: string | undefined): string[] | undefined {
  if (!untrusted) return undefined;
  const ips = untrusted.split(/[\s,]+/).filter(Boolean);
  const bad = ips.filter((ip) => !/^(\d{1,3})(\.\d{1,3}){3}$/.test(ip) || ip.split('.').some((o) => Number(o) > 255));
  if (bad.length) throw new Error(`ISOLA_UPLINK_DNS: not an IPv4 address: ${bad[0]}`);
  return ips;
}

/** Qubes waits a minute for a prompt; a bad value falls back to that rather than to no timeout. */
function askTimeout(untrusted: string | undefined): number {
  const secs = Number(untrusted);
  return untrusted && Number.isInteger(secs) && secs > 0 && secs <= 86400 ? secs * 1000 : 60_000;
}

/**
 * The range the formula of before the uid registry gave a qube. Two instances could get the same one
 * (1 home in 48 shares a slot), so it is only what the registry prefers for a qube that has none yet:
 * a qube of an older database then keeps the owner of its files.
 */
export function legacyUidBase(instance: string, qid: number): number {
  const inst = parseInt(instance.slice(0, 6), 16) % 48;
  const slot = 1024 + inst * 1024 + (qid % 1024);
  return slot * 65536;
}
