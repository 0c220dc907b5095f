// sysfs files that identify the host's disks: serial numbers, WWNs, NVMe ids, device-mapper names.
// A qube sees the host's sysfs (its own network namespace aside), and these are world-readable
// there; they single the machine out and outlive reinstalls. Found at each start (disks come and
// go), then masked by the runtime like the fixed MASKED_PATHS. Virtual block devices (loop, dm, md,
// zram: backing file paths, LVM names and uuids) are masked as a whole directory, which also
// covers the ones made after the qube started.

import * as fs from 'fs';
import * as path from 'path';

/** Masked whole (oci-spec.ts MASKED_PATHS); nothing in a qube needs the host's virtual disks. */
export const VIRTUAL_BLOCK_DIR = '/sys/devices/virtual/block';

/** Attributes of /sys/block/<disk> (and of its device) that carry an identifier. */
export const BLOCK_ID_ATTRS: readonly string[] = [
  'serial', 'wwid', 'eui', 'nguid', 'uuid', 'device/serial', 'device/wwid', 'device/vpd_pg80',
  'device/vpd_pg83', 'device/eui', 'device/nguid', 'device/uuid',
];

/**
 * Absolute paths (as the qube's /sys shows them: symlinks resolved) of identifying attribute files
 * of the host's block devices. `sysRoot` is for tests. Runs at every qube start: the answer is
 * kept while the list of disks stays the same (one readdir), and otherwise each disk is resolved
 * once, virtual ones are skipped whole and attributes are probed without throwing (about 1 ms).
 */
export function blockIdentityFiles(sysRoot = '/sys'): string[] {
  let root: string;
  let disks: string[];
  try {
    root = fs.realpathSync.native(sysRoot);
    disks = fs.readdirSync(path.join(root, 'block'));
  } catch {
    return []; // no sysfs here: nothing of it to hide
  }
  const key = `${root}\0${disks.join('\0')}`;
  if (cache?.key === key) return [...cache.files];
  const virtual = path.join(root, VIRTUAL_BLOCK_DIR.slice('/sys/'.length));
  const resolve = (p: string): string | undefined => {
    try {
      return fs.realpathSync.native(p);
    } catch {
      return undefined;
    }
  };
  const found = new Set<string>();
  for (const disk of disks) {
    const dir = resolve(path.join(root, 'block', disk));
    if (!dir || !dir.startsWith(`${root}/`) || dir.startsWith(`${virtual}/`)) continue;
    const device = resolve(path.join(dir, 'device'));
    for (const attr of BLOCK_ID_ATTRS) {
      const base = attr.startsWith('device/') ? device : dir;
      if (!base || !base.startsWith(`${root}/`)) continue;
      const file = path.join(base, attr.replace(/^device\//, ''));
      if (fs.statSync(file, { throwIfNoEntry: false })?.isFile()) found.add(`/sys/${file.slice(root.length + 1)}`);
    }
  }
  cache = { key, files: [...found].sort() };
  return [...cache.files];
}

let cache: { key: string; files: string[] } | undefined;
