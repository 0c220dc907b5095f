// The qube's own name in its /etc/hosts (`127.0.1.1 NAME`), as Qubes' early VM configuration
// writes it: without it `sudo` and other resolvers of the local hostname wait and complain.

import { readFileSync, renameSync, writeFileSync } from 'fs';

/** /etc/hosts with exactly one `127.0.1.1` line, naming the qube; other lines are kept as they are. */
export function withHostsEntry(hosts: string, name: string): string {
  const kept = hosts.split('\n').filter((l, i, all) => !/^\s*127\.0\.1\.1\s/.test(l) && !(i === all.length - 1 && l === ''));
  return [...kept, `127.0.1.1\t${name}`].join('\n') + '\n';
}

export function ensureHostsEntry(name: string, file = '/etc/hosts'): void {
  let current = '';
  try {
    current = readFileSync(file, 'utf8');
  } catch {
    // no file yet: it gets the one line
  }
  const wanted = withHostsEntry(current, name);
  if (wanted === current) return;
  try {
    writeFileSync(`${file}.isola-tmp`, wanted, { mode: 0o644 });
    renameSync(`${file}.isola-tmp`, file);
  } catch {
    /* a read-only root: the qube works, only name lookups of itself are slow */
  }
}
