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
 * of the host's block devices. `sysRoot` is for tests; errors on one device skip it, not the rest.
 */
export function blockIdentityFiles(sysRoot = '/sys'): string[] {
  let root: string;
  let disks: string[];
  try {
    root = fs.realpathSync(sysRoot);
    disks = fs.readdirSync(path.join(root, 'block'));
  } catch {
    return []; // no sysfs here: nothing of it to hide
  }
  const blockDir = path.join(root, 'block');
  const found = new Set<string>();
  for (const disk of disks) {
    for (const attr of BLOCK_ID_ATTRS) {
      try {
        const file = fs.realpathSync(path.join(blockDir, disk, attr));
        if (!file.startsWith(`${root}/`) || !fs.statSync(file).isFile()) continue;
        const inQube = `/sys/${file.slice(root.length + 1)}`;
        if (!inQube.startsWith(`${VIRTUAL_BLOCK_DIR}/`)) found.add(inQube);
      } catch {
        // this device has no such attribute
      }
    }
  }
  return [...found].sort();
}
