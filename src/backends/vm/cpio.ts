// Writes the "newc" cpio format, the one the Linux kernel unpacks as an initramfs (Debian's cpio is
// not installed here, and building in memory keeps archives reproducible: mtime 0, fixed inodes).

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

export interface CpioEntry {
  /** Path inside the archive, '/'-separated; a leading '/' is dropped. */
  name: string;
  /** File type and permission bits (S_IFDIR, S_IFREG or S_IFLNK | 0o755 ...). */
  mode: number;
  /** Contents of a regular file. */
  data?: Buffer;
  /** Target of a symlink. */
  target?: string;
  uid?: number;
  gid?: number;
}

const MAX_U32 = 0xffffffff;

/** The archive's form of a path, or an error naming what is wrong with it. */
export function cpioName(name: string): string {
  const clean = name.replace(/^\/+/, '');
  if (!clean) throw new Error(`cpio: empty entry name ${JSON.stringify(name)}`);
  if (clean.includes('\0')) throw new Error(`cpio: NUL in entry name ${JSON.stringify(name)}`);
  // The kernel would follow '..' out of the rootfs it is filling only within it, but a caller's typo should fail here.
  if (clean.split('/').some((c) => c === '' || c === '.' || c === '..')) throw new Error(`cpio: entry name ${JSON.stringify(name)} has an empty, '.' or '..' component`);
  return clean;
}

const hex8 = (n: number) => n.toString(16).padStart(8, '0');
const pad4 = (n: number) => (4 - (n % 4)) % 4;

function header(ino: number, e: { mode: number; uid: number; gid: number; nlink: number; size: number }, nameSize: number): string {
  return '070701' + [ino, e.mode, e.uid, e.gid, e.nlink, 0 /* mtime */, e.size, 0, 0, 0, 0, nameSize, 0 /* check */].map(hex8).join('');
}

function record(ino: number, name: string, meta: { mode: number; uid: number; gid: number; nlink: number }, body: Buffer): Buffer[] {
  const nameBytes = Buffer.from(name + '\0', 'utf8');
  const head = Buffer.from(header(ino, { ...meta, size: body.length }, nameBytes.length), 'latin1');
  return [head, nameBytes, Buffer.alloc(pad4(head.length + nameBytes.length)), body, Buffer.alloc(pad4(body.length))];
}

/** One archive, ending with the TRAILER!!! record. Parent directories are the caller's to list, first. */
export function cpioArchive(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  entries.forEach((e, i) => {
    const name = cpioName(e.name);
    const type = e.mode & S_IFMT;
    const uid = e.uid ?? 0;
    const gid = e.gid ?? 0;
    for (const [what, v] of [['uid', uid], ['gid', gid]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > MAX_U32) throw new Error(`cpio: ${name}: bad ${what} ${v}`);
    }
    if (!Number.isInteger(e.mode) || e.mode < 0 || e.mode > 0o177777) throw new Error(`cpio: ${name}: bad mode ${e.mode}`);
    let body: Buffer;
    if (type === S_IFREG) body = e.data ?? Buffer.alloc(0);
    else if (type === S_IFLNK) {
      if (!e.target || e.target.includes('\0')) throw new Error(`cpio: ${name}: symlink needs a target without NUL`);
      body = Buffer.from(e.target, 'utf8');
    } else if (type === S_IFDIR) body = Buffer.alloc(0);
    else throw new Error(`cpio: ${name}: unsupported file type ${(type >> 12).toString(8)}`);
    if (body.length > MAX_U32) throw new Error(`cpio: ${name}: ${body.length} bytes does not fit newc's 32-bit size`);
    // Inode numbers only need to be distinct: the kernel pairs hard links by them when nlink > 1.
    parts.push(...record(i + 1, name, { mode: e.mode, uid, gid, nlink: type === S_IFDIR ? 2 : 1 }, body));
  });
  parts.push(...record(0, 'TRAILER!!!', { mode: 0, uid: 0, gid: 0, nlink: 1 }, Buffer.alloc(0)));
  return Buffer.concat(parts);
}

/** Directory entries for every parent of the given names, parents first, each once (not those in `have`). */
export function parentDirs(names: string[], have: Set<string> = new Set(), mode = 0o755): CpioEntry[] {
  const out: CpioEntry[] = [];
  const seen = new Set(have);
  for (const n of names) {
    const parts = cpioName(n).split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (seen.has(dir)) continue;
      seen.add(dir);
      out.push({ name: dir, mode: S_IFDIR | mode });
    }
  }
  return out;
}
