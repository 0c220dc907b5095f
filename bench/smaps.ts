// QEMU's memory as the benches read it: total PSS, the guest RAM mapping's share, TCG's code buffer.

import * as fs from 'node:fs';

export interface Smaps {
  pssKiB: number;
  guestRam?: { sizeKiB: number; rssKiB: number; pssKiB: number };
  /** The TCG translation buffer: QEMU's rwx mappings. */
  codeKiB: number;
}

export function readSmaps(pid: number, memoryMiB: number): Smaps {
  const pssKiB = Number(/^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))![1]);
  const blocks = fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/);
  let guestRam: Smaps['guestRam'];
  let codeKiB = 0;
  for (const b of blocks) {
    const head = b.split('\n')[0].split(/\s+/);
    const field = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(b)?.[1] ?? 0);
    const anonymous = head.length < 6 || head[5] === '';
    if (anonymous && head[1] === 'rw-p' && field('Size') === memoryMiB * 1024) guestRam = { sizeKiB: field('Size'), rssKiB: field('Rss'), pssKiB: field('Pss') };
    if (head[1] === 'rwxp') codeKiB += field('Pss');
  }
  return { pssKiB, guestRam, codeKiB };
}


export function stats(xs: number[]): { median: number; min: number; max: number; runs: number[] } {
  const s = [...xs].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return { median, min: s[0], max: s[s.length - 1], runs: xs };
}
