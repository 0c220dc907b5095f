// The per-start settings of an hvm qube's init (guest-init.ts): which disks to mount, how to stack its
// volumes, and the agent's environment, as a file the init sources. Every value is single-quoted: the
// host writes it, but names and values come from properties and must not become shell syntax.

import type { QubeLaunch, VolumeImage } from '../../core/backend';

/** A shell word that stands for exactly s. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The disks of the launch in attach order (root's, then private's): index i is serial `isola-d<i>`. */
export function launchDisks(launch: QubeLaunch): { file: string; readonly: boolean }[] {
  return [...imageOf(launch, 'root').disks, ...imageOf(launch, 'private').disks];
}

function imageOf(launch: QubeLaunch, vol: 'root' | 'private'): VolumeImage {
  const img = launch.volumes[vol].image;
  if (!img) throw new Error(`qube ${launch.name}: the hvm backend needs its ${vol} volume as disk images`);
  return img;
}

const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;
/** Layer and scratch paths inside a disk: plain relative names, nothing a shell or overlay would split. */
const DISK_DIR = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

export function bootConfig(launch: QubeLaunch, extraEnv: Record<string, string>): string {
  const root = imageOf(launch, 'root');
  const priv = imageOf(launch, 'private');
  const offset = root.disks.length;
  const dirs = (img: VolumeImage, base: number, list: { disk: number; dir: string }[]) =>
    list.map((d) => {
      if (d.disk < 0 || d.disk >= img.disks.length || !DISK_DIR.test(d.dir) || d.dir.split('/').includes('..')) {
        throw new Error(`qube ${launch.name}: bad disk directory ${d.disk}:${d.dir}`);
      }
      return `${base + d.disk}:${d.dir}`;
    }).join(' ');
  const upper = (img: VolumeImage, base: number) => {
    if (!img.upper) throw new Error(`qube ${launch.name}: a read-only volume is not supported yet by the hvm backend`);
    return dirs(img, base, [img.upper]);
  };
  const lines = [
    `ISOLA_HOSTNAME=${shellQuote(launch.name)}`,
    `ISOLA_DISKS=${shellQuote(launchDisks(launch).map((d, i) => `${i}:${d.readonly ? 'ro' : 'rw'}`).join(' '))}`,
    `ISOLA_ROOT_LOWER=${shellQuote(dirs(root, 0, root.lower))}`,
    `ISOLA_ROOT_UPPER=${shellQuote(upper(root, 0))}`,
    `ISOLA_PRIVATE_LOWER=${shellQuote(dirs(priv, offset, priv.lower))}`,
    `ISOLA_PRIVATE_UPPER=${shellQuote(upper(priv, offset))}`,
    ...nicLines(launch),
  ];
  for (const [k, v] of Object.entries({ ...launch.agentEnv, ...extraEnv })) {
    if (!ENV_NAME.test(k)) throw new Error(`qube ${launch.name}: bad environment name '${k}'`);
    lines.push(`export ${k}=${shellQuote(v)}`);
  }
  return lines.join('\n') + '\n';
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** The card's settings for the init (guest-init.ts configures eth0 with them); none: offline, lo only. */
function nicLines(launch: QubeLaunch): string[] {
  const n = launch.nic;
  if (!n) return [];
  for (const a of [n.ip, n.gateway]) if (!IPV4.test(a)) throw new Error(`qube ${launch.name}: bad IPv4 address '${a}'`);
  return [`ISOLA_NET_IP=${shellQuote(n.ip)}`, `ISOLA_NET_GATEWAY=${shellQuote(n.gateway)}`];
}

/** What the agent needs in a VM besides what every backend tells it (sandbox-spec.ts has the sandbox's). */
export const VM_AGENT_ENV: Record<string, string> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  ISOLA_AGENT_SOCKET: '/run/isola/agent.sock',
  ISOLA_SHUTDOWN_KILL_ALL: '1',
  // PID 1 of a kernel: its exit would panic it; the agent syncs, remounts read-only and powers off.
  ISOLA_AGENT_POWEROFF: '1',
};
