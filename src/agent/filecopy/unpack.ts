// The qubes.Filecopy receiver: turns a hostile stream into files under one directory and nothing
// outside it, stopping at the first lie; what was already written stays, nothing more is written.

import { promises as fsp, constants as C } from 'fs';
import type { FileHandle } from 'fs/promises';
import { constants as osConstants } from 'os';
import type { Readable, Writable } from 'stream';
import {
  FILE_HEADER_SIZE, MAX_PATH_LENGTH, MAX_SYMLINK_TARGET, MAX_NSEC, S_IFMT, S_IFREG, S_IFDIR, S_IFLNK,
  Errno, checkName, checkSymlinkTarget, crc32Update, decodeHeader, encodeResult, errnoText,
  type FileHeader,
} from './format';

export interface UnpackOptions {
  /** Most records (directories count twice, as in Qubes); unlimited when absent. */
  maxFiles?: number;
  /** Most bytes of file data and symlink targets; unlimited when absent. */
  maxBytes?: number;
  /** Largest namelen, NUL included; default Qubes' MAX_PATH_LENGTH (16384). */
  maxNameLength?: number;
  /** Qubes' allow-all-names: control and other unsafe characters accepted (never `/` tricks or NUL). */
  allowAllNames?: boolean;
}

export interface UnpackResult {
  files: number;
  bytes: number;
  crc32: number;
  /** The last name received, sent back in result_header_ext as Qubes does. */
  lastName?: string;
  error?: { code: number; name: string; message: string };
}

class Refused extends Error {
  constructor(readonly code: number, readonly path: string) {
    super(errnoText(code));
  }
}

const EMPTY = Buffer.alloc(0);
const CHUNK = 1 << 20;

/** Pulls exact byte counts from the stream and keeps the CRC of everything consumed. */
class Reader {
  crc = 0;
  private buf: Buffer = EMPTY;
  private off = 0;
  private eof = false;
  private readonly it: AsyncIterator<Buffer | string>;
  constructor(input: Readable) {
    this.it = input[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    while (!this.eof && this.off >= this.buf.length) {
      let r: IteratorResult<Buffer | string>;
      try {
        r = await this.it.next();
      } catch {
        r = { done: true, value: undefined };  // a reset connection is an early end, nothing else
      }
      if (r.done) this.eof = true;
      else [this.buf, this.off] = [typeof r.value === 'string' ? Buffer.from(r.value) : r.value, 0];
    }
    return this.off < this.buf.length;
  }

  /** At most `max` bytes, as soon as some are there; null at the end of the stream. */
  async chunk(max: number): Promise<Buffer | null> {
    if (!(await this.fill())) return null;
    const n = Math.min(max, this.buf.length - this.off);
    const c = this.buf.subarray(this.off, (this.off += n));
    this.crc = crc32Update(this.crc, c);
    return c;
  }

  /** Exactly n bytes (n already checked against a limit by the caller); `got` tells how far it came. */
  async exact(n: number): Promise<{ buf: Buffer | null; got: number }> {
    if (n === 0) return { buf: EMPTY, got: 0 };
    const first = await this.chunk(n);
    if (!first) return { buf: null, got: 0 };
    if (first.length === n) return { buf: first, got: n };
    const out = Buffer.alloc(n);
    first.copy(out);
    let got = first.length;
    while (got < n) {
      const c = await this.chunk(n - got);
      if (!c) return { buf: null, got };
      got += c.copy(out, got);
    }
    return { buf: out, got };
  }
}

async function writeAll(fh: FileHandle, bufs: Buffer[], size: number): Promise<void> {
  let done = (await fh.writev(bufs)).bytesWritten;
  if (done === size) return;
  const rest = Buffer.concat(bufs);  // a short write is rare (disk nearly full): finish it plainly
  while (done < size) done += (await fh.write(rest, done, size - done)).bytesWritten;
}

function errnoOf(e: unknown): number {
  const code = (e as NodeJS.ErrnoException)?.code;
  const n = code ? (osConstants.errno as Record<string, number>)[code] : undefined;
  return typeof n === 'number' ? n : Errno.EIO;
}

/** A directory fd plus how to name an entry in it without re-resolving the path from the top. */
interface Dir { fh: FileHandle; path: string }

class Unpacker {
  files = 0;
  bytes = 0;
  lastName?: string;
  private readonly created = new Set<string>();
  private readonly maxNameLength: number;
  constructor(private readonly r: Reader, private readonly root: Dir, private readonly viaProc: boolean,
              private readonly opts: UnpackOptions) {
    this.maxNameLength = opts.maxNameLength ?? MAX_PATH_LENGTH;
  }

  // /proc/self/fd/N/NAME is openat(N, NAME): the kernel resolves NAME in the directory already held,
  // so nothing renamed or swapped above it can redirect the write.
  private at(d: Dir, name: string): string {
    return this.viaProc ? `/proc/self/fd/${d.fh.fd}/${name}` : `${d.path}/${name}`;
  }

  /** Opens each parent component with O_NOFOLLOW|O_DIRECTORY: a symlink anywhere on the way stops it. */
  private async parent(parts: string[], name: string): Promise<Dir> {
    let cur = this.root;
    try {
      for (const p of parts.slice(0, -1)) {
        const fh = await fsp.open(this.at(cur, p), C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_NOCTTY);
        if (cur !== this.root) await cur.fh.close();
        cur = { fh, path: `${cur.path}/${p}` };
      }
    } catch (e) {
      if (cur !== this.root) await cur.fh.close();
      throw new Refused(errnoOf(e), name);
    }
    return cur;
  }

  private release(d: Dir): Promise<void> {
    return d === this.root ? Promise.resolve() : d.fh.close();
  }

  async run(): Promise<void> {
    for (;;) {
      const { buf, got } = await this.r.exact(FILE_HEADER_SIZE);
      if (!buf) throw new Refused(got === 0 ? Errno.EREMOTEIO : Errno.LEGAL_EOF, this.lastName ?? '');
      const h = decodeHeader(buf);
      if (h.namelen === 0) {
        if (buf.some((b) => b !== 0)) throw new Refused(Errno.EINVAL, this.lastName ?? '');
        return;
      }
      if (this.opts.maxFiles !== undefined && this.files >= this.opts.maxFiles) {
        throw new Refused(Errno.EDQUOT, this.lastName ?? '');
      }
      // Checked before reading: a 4 GiB namelen is refused without a byte allocated for it.
      if (h.namelen > this.maxNameLength) throw new Refused(Errno.ENAMETOOLONG, '');
      const raw = await this.r.exact(h.namelen);
      if (!raw.buf) throw new Refused(Errno.LEGAL_EOF, this.lastName ?? '');
      const nameBytes = raw.buf.subarray(0, h.namelen - 1);
      const name = nameBytes.toString('utf8');
      this.lastName = name;
      if (raw.buf[h.namelen - 1] !== 0) throw new Refused(Errno.EINVAL, name);
      const parts = checkName(nameBytes, !!this.opts.allowAllNames);
      if (typeof parts === 'number') throw new Refused(parts, name);
      if (h.atimeNsec > MAX_NSEC || h.mtimeNsec > MAX_NSEC) throw new Refused(Errno.EINVAL, name);
      switch (h.mode & S_IFMT) {
        case S_IFREG: await this.regular(h, parts, name); break;
        case S_IFDIR: await this.directory(h, parts, name); break;
        case S_IFLNK: await this.symlink(h, parts, name); break;
        default: throw new Refused(Errno.EINVAL, name);  // devices, fifos, sockets, garbage
      }
      this.files++;
    }
  }

  private budget(len: bigint, name: string): number {
    const left = this.opts.maxBytes === undefined ? Number.MAX_SAFE_INTEGER : this.opts.maxBytes - this.bytes;
    if (len > BigInt(left)) throw new Refused(Errno.EDQUOT, name);
    return Number(len);
  }

  private async regular(h: FileHeader, parts: string[], name: string): Promise<void> {
    const len = this.budget(h.filelen, name);  // before the file exists: an over-limit file leaves nothing
    const dir = await this.parent(parts, name);
    let fh: FileHandle;
    try {
      // Mode 000 until complete, as Qubes: a truncated file is visibly unfinished, never executable.
      fh = await fsp.open(this.at(dir, parts[parts.length - 1]),
        C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW | C.O_NOCTTY, 0o000);
    } catch (e) {
      throw new Refused(errnoOf(e), name);
    } finally {
      await this.release(dir);
    }
    // One batch of up to 1 MiB is written while the next is read and checksummed: memory stays at two
    // batches whatever filelen claims, and disk and CRC work overlap.
    let pending: Promise<void> = Promise.resolve();
    try {
      for (let left = len; left > 0;) {
        const batch: Buffer[] = [];
        let size = 0;
        while (size < CHUNK && left > 0) {
          const c = await this.r.chunk(Math.min(left, CHUNK - size));
          if (!c) {
            await pending;
            if (size) await writeAll(fh, batch, size);  // keep what did arrive, nothing more
            throw new Refused(Errno.LEGAL_EOF, name);
          }
          batch.push(c);
          size += c.length;
          left -= c.length;
        }
        await pending;
        pending = writeAll(fh, batch, size);
        pending.catch(() => undefined);  // awaited on the next turn; this only defers the report
        this.bytes += size;
      }
      await pending;
      await fh.chmod(h.mode & 0o777);  // fchmod: setuid/setgid/sticky never survive
      await fh.utimes(h.atime + h.atimeNsec / 1e9, h.mtime + h.mtimeNsec / 1e9);
    } catch (e) {
      throw e instanceof Refused ? e : new Refused(errnoOf(e), name);
    } finally {
      await fh.close();
    }
  }

  private async directory(h: FileHeader, parts: string[], name: string): Promise<void> {
    if (h.filelen !== 0n) throw new Refused(Errno.EINVAL, name);
    const key = parts.join('/');
    const dir = await this.parent(parts, name);
    const path = this.at(dir, parts[parts.length - 1]);
    try {
      if (!this.created.has(key)) {
        // 0700 until the closing record so its contents can be written whatever mode it ends with;
        // a directory that already existed is refused (EEXIST) rather than merged into and re-moded.
        await fsp.mkdir(path, 0o700);
        this.created.add(key);
        return;
      }
      const fh = await fsp.open(path, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW | C.O_NOCTTY);
      try {
        await fh.chmod(h.mode & 0o777);
        await fh.utimes(h.atime + h.atimeNsec / 1e9, h.mtime + h.mtimeNsec / 1e9);
      } finally {
        await fh.close();
      }
    } catch (e) {
      throw new Refused(errnoOf(e), name);
    } finally {
      await this.release(dir);
    }
  }

  private async symlink(h: FileHeader, parts: string[], name: string): Promise<void> {
    if (h.filelen > BigInt(MAX_SYMLINK_TARGET)) throw new Refused(Errno.ENAMETOOLONG, name);
    const len = this.budget(h.filelen, name);
    const raw = await this.r.exact(len);
    if (!raw.buf) throw new Refused(Errno.LEGAL_EOF, name);
    const bad = checkSymlinkTarget(parts, raw.buf, !!this.opts.allowAllNames);
    if (bad) throw new Refused(bad, name);
    this.bytes += len;
    const dir = await this.parent(parts, name);
    const path = this.at(dir, parts[parts.length - 1]);
    try {
      await fsp.symlink(raw.buf.toString('utf8'), path);
      await fsp.lutimes(path, h.atime + h.atimeNsec / 1e9, h.mtime + h.mtimeNsec / 1e9);
    } catch (e) {
      throw new Refused(errnoOf(e), name);
    } finally {
      await this.release(dir);
    }
  }
}

/**
 * Receives one qubes.Filecopy stream into destDir (which must exist). Never rejects for anything the
 * stream does: the first problem ends the transfer and is returned in `error`, for writeResult.
 */
export async function unpackStream(input: Readable, destDir: string, opts: UnpackOptions = {}): Promise<UnpackResult> {
  const reader = new Reader(input);
  let root: Dir | undefined;
  let u: Unpacker | undefined;
  const result = (): UnpackResult => ({ files: u?.files ?? 0, bytes: u?.bytes ?? 0, crc32: reader.crc, lastName: u?.lastName });
  try {
    const fh = await fsp.open(destDir, C.O_RDONLY | C.O_DIRECTORY);
    root = { fh, path: destDir };
    const viaProc = await fsp.stat(`/proc/self/fd/${fh.fd}`, { bigint: true })
      .then(async (p) => { const s = await fh.stat({ bigint: true }); return p.ino === s.ino && p.dev === s.dev; })
      .catch(() => false);
    u = new Unpacker(reader, root, viaProc, opts);
    await u.run();
    return result();
  } catch (e) {
    const r = e instanceof Refused ? e : new Refused(errnoOf(e), u?.lastName ?? '');
    return { ...result(), error: { code: r.code, name: r.path, message: r.message } };
  } finally {
    await root?.fh.close();
  }
}

/** Sends Qubes' reply: result_header with the first error (0 if none) and the CRC, then the last name. */
export function writeResult(out: Writable, r: UnpackResult): Promise<void> {
  const buf = encodeResult(r.error?.code ?? 0, r.crc32, r.error ? r.error.name : r.lastName);
  return new Promise((resolve, reject) => {
    out.write(buf, (err) => (err ? reject(err) : resolve()));
  });
}
