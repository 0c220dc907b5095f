// The host-wide record of which host uid range belongs to which qube of which instance, as
// /etc/subuid is for users: every isolad on the host allocates from one file under one lock, so two
// instances never share a range whatever their homes are. Ranges avoid /etc/subuid, /etc/subgid and
// ids below 2^26; an entry lives until its qube is removed (or its instance's home is gone).

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const ID_RANGE = 65536;
/** First slot: 1024 * 65536 = 2^26, far above any host user (and the 2^20 of login.defs' maxima). */
export const MIN_SLOT = 1024;
/** Last slot whose range ends below 2^32 - 1 (the kernel's invalid id). */
export const MAX_SLOT = 65534;
export const DEFAULT_REGISTRY = '/var/lib/isola-uids/registry';

const HEADER = '# isola host uid registry v1: base count qube-uuid instance-home(JSON); edit only with every isolad stopped';
const LINE_RE = /^([0-9]{1,10}) ([0-9]{1,10}) ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) ("(?:[^"\\]|\\.)*")$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface RangeEntry {
  base: number;
  count: number;
  uuid: string;
  home: string;
}

export interface ClaimRequest {
  uuid: string;
  /** The range the qube's store row records: it must get exactly this one (files are owned by it). */
  recorded?: number;
  /** A range to take when free (the old formula's, so a migrated qube keeps its files' owner). */
  prefer?: number;
}

export type ClaimResult = { base: number } | { error: string };

export interface RegistryOptions {
  /** Host ranges no qube may use: /etc/subuid and /etc/subgid when absent. */
  reserved?: () => Array<[start: number, count: number]>;
  /** Whether an instance still exists; entries of gone instances are freed. */
  homeAlive?: (home: string) => boolean;
  /** How long to wait for another process holding the lock (ms). */
  lockTimeoutMs?: number;
}

export function registryPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.ISOLA_UID_REGISTRY || DEFAULT_REGISTRY);
}

/** Parses the registry; anything unexpected is an error naming the line, never a silent overlap. */
export function parseRegistry(text: string, file: string): RangeEntry[] {
  const entries: RangeEntry[] = [];
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (line === '' || line.startsWith('#')) return;
    const bad = (why: string) => new Error(`uid registry ${file}: line ${i + 1}: ${why}; fix or remove it with every isolad stopped`);
    const m = LINE_RE.exec(line);
    if (!m) throw bad('not "base count uuid \\"home\\""');
    const [base, count] = [Number(m[1]), Number(m[2])];
    if (base < MIN_SLOT * ID_RANGE || count < 1 || base + count > (MAX_SLOT + 1) * ID_RANGE) throw bad(`range ${base}+${count} is outside the qube uid space`);
    let home: unknown;
    try {
      home = JSON.parse(m[4]);
    } catch {
      throw bad('unreadable home');
    }
    if (typeof home !== 'string' || !path.isAbsolute(home)) throw bad('home is not an absolute path');
    const other = entries.find((e) => overlaps(e, base, count) || (e.uuid === m[3] && e.home === home));
    if (other) throw bad(`overlaps or repeats the range ${other.base}+${other.count} of qube ${other.uuid} (${other.home})`);
    entries.push({ base, count, uuid: m[3], home });
  });
  return entries;
}

export function formatRegistry(entries: readonly RangeEntry[]): string {
  const sorted = [...entries].sort((a, b) => a.base - b.base);
  return [HEADER, ...sorted.map((e) => `${e.base} ${e.count} ${e.uuid} ${JSON.stringify(e.home)}`)].join('\n') + '\n';
}

function overlaps(e: { base: number; count: number }, base: number, count: number): boolean {
  return e.base < base + count && base < e.base + e.count;
}

/** Ranges of /etc/subuid and /etc/subgid (name:start:count), which belong to the host's users. */
export function hostSubordinateRanges(files = ['/etc/subuid', '/etc/subgid']): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const f of files) {
    let text = '';
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const [, start, count] = line.trim().split(':');
      if (/^[0-9]+$/.test(start ?? '') && /^[0-9]+$/.test(count ?? '')) out.push([Number(start), Number(count)]);
    }
  }
  return out;
}

export class UidRegistry {
  private readonly reserved: () => Array<[number, number]>;
  private readonly homeAlive: (home: string) => boolean;
  private readonly lockTimeoutMs: number;

  constructor(readonly file: string, opts: RegistryOptions = {}) {
    if (!path.isAbsolute(file)) throw new Error(`uid registry ${file}: must be an absolute path`);
    this.reserved = opts.reserved ?? (() => hostSubordinateRanges());
    this.homeAlive = opts.homeAlive ?? ((home) => fs.existsSync(path.join(home, 'isola.db')));
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 10_000;
  }

  /** Reads the registry without the lock (for display and checks). */
  entries(): RangeEntry[] {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new Error(`uid registry ${this.file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    return parseRegistry(text, this.file);
  }

  /**
   * Gives each qube of instance `home` its range: the one registered to it, else its recorded one
   * (which must be free), else `prefer` when free, else the next free slot. All or nothing per qube.
   */
  async claim(home: string, requests: readonly ClaimRequest[]): Promise<Map<string, ClaimResult>> {
    return this.locked((entries) => {
      const results = new Map<string, ClaimResult>();
      const reserved = this.reserved();
      const free = (base: number) =>
        base >= MIN_SLOT * ID_RANGE && base + ID_RANGE <= (MAX_SLOT + 1) * ID_RANGE &&
        !entries.some((e) => overlaps(e, base, ID_RANGE)) && !reserved.some(([s, c]) => overlaps({ base: s, count: c }, base, ID_RANGE));
      for (const r of requests) {
        if (!UUID_RE.test(r.uuid)) throw new Error(`uid registry: ${JSON.stringify(r.uuid)} is not a qube uuid`);
        const mine = entries.find((e) => e.home === home && e.uuid === r.uuid);
        if (mine && (r.recorded === undefined || r.recorded === mine.base)) {
          results.set(r.uuid, { base: mine.base });
          continue;
        }
        if (mine) {
          results.set(r.uuid, { error: `host uid range ${r.recorded} recorded for it, but ${this.file} gives it ${mine.base}` });
          continue;
        }
        if (r.recorded !== undefined) {
          if (free(r.recorded)) {
            entries.push({ base: r.recorded, count: ID_RANGE, uuid: r.uuid, home });
            results.set(r.uuid, { base: r.recorded });
          } else {
            const other = entries.find((e) => overlaps(e, r.recorded!, ID_RANGE));
            const by = other ? `qube ${other.uuid} of the instance at ${other.home}` : 'the host (/etc/subuid or /etc/subgid) or outside the qube uid space';
            results.set(r.uuid, { error: `its host uid range ${r.recorded} is taken by ${by} in ${this.file}` });
          }
          continue;
        }
        const base = this.pick(free, r.prefer);
        if (base === undefined) {
          results.set(r.uuid, { error: `no free host uid range left in ${this.file}` });
          continue;
        }
        entries.push({ base, count: ID_RANGE, uuid: r.uuid, home });
        results.set(r.uuid, { base });
      }
      return results;
    });
  }

  /** Frees the range of a removed qube. */
  async release(home: string, uuid: string): Promise<void> {
    await this.locked((entries) => {
      const i = entries.findIndex((e) => e.home === home && e.uuid === uuid);
      if (i >= 0) entries.splice(i, 1);
    });
  }

  /** Frees the ranges of `home` whose qube is no longer in its database (a remove cut short). */
  async prune(home: string, keep: ReadonlySet<string>): Promise<number> {
    return this.locked((entries) => {
      const before = entries.length;
      for (let i = entries.length - 1; i >= 0; i--) if (entries[i].home === home && !keep.has(entries[i].uuid)) entries.splice(i, 1);
      return before - entries.length;
    });
  }

  private pick(free: (base: number) => boolean, prefer?: number): number | undefined {
    const slots = MAX_SLOT - MIN_SLOT + 1;
    const first = prefer !== undefined && prefer % ID_RANGE === 0 ? prefer / ID_RANGE : MIN_SLOT;
    const start = first >= MIN_SLOT && first <= MAX_SLOT ? first : MIN_SLOT;
    for (let i = 0; i < slots; i++) {
      const slot = MIN_SLOT + ((start - MIN_SLOT + i) % slots);
      if (free(slot * ID_RANGE)) return slot * ID_RANGE;
    }
    return undefined;
  }

  /** Runs fn on the entries under the host-wide lock and writes them back (atomically) if it returns. */
  private async locked<T>(fn: (entries: RangeEntry[]) => T): Promise<T> {
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const unlock = await this.lock();
    try {
      const entries = this.entries();
      const kept = entries.filter((e) => this.homeAlive(e.home));
      const before = formatRegistry(kept);
      const result = fn(kept);
      const text = formatRegistry(kept);
      if (text !== before || kept.length !== entries.length) {
        const tmp = `${this.file}.${process.pid}.tmp`;
        const fd = fs.openSync(tmp, 'w', 0o600);
        try {
          fs.writeSync(fd, text);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        fs.renameSync(tmp, this.file);
      }
      return result;
    } finally {
      await unlock();
    }
  }

  /**
   * An abstract unix socket named after the registry's directory (device and inode, so every path to
   * it is the same lock): the kernel frees it when its holder dies, even by kill -9, so no lock is
   * ever stale. Abstract names belong to the network namespace; isolad always runs in the host's.
   */
  private async lock(): Promise<() => Promise<void>> {
    const st = fs.statSync(path.dirname(this.file));
    const name = `\0isola-uid-registry-${st.dev}-${st.ino}-${path.basename(this.file)}`;
    const deadline = Date.now() + this.lockTimeoutMs;
    for (let wait = 2; ; wait = Math.min(wait * 2, 50)) {
      const server = await new Promise<net.Server | undefined>((resolve, reject) => {
        const s = net.createServer((sock) => sock.destroy());
        s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(undefined) : reject(e)));
        s.listen(name, () => resolve(s));
      });
      if (server) {
        server.unref();
        return () => new Promise<void>((r) => server.close(() => r()));
      }
      if (Date.now() > deadline) throw new Error(`uid registry ${this.file}: still locked by another process after ${this.lockTimeoutMs} ms`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
