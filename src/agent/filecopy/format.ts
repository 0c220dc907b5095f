// The qubes.Filecopy wire format (Qubes' qrexec-lib/libqubes-rpc-filecopy.h), byte for byte: record
// headers, the receiver's reply, the CRC32 both ends keep, errno codes and the name rules both ends share.

export const FILE_HEADER_SIZE = 32;
export const RESULT_HEADER_SIZE = 16;
/** Qubes' MAX_PATH_LENGTH: the largest namelen (NUL included) a receiver accepts. */
export const MAX_PATH_LENGTH = 16384;
/** Linux's PATH_MAX minus the NUL: no real symlink target is longer. */
export const MAX_SYMLINK_TARGET = 4095;
export const MAX_NSEC = 999_999_999;

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;

/** Linux errno values: the wire carries them as numbers, so they must not depend on the host's libc. */
export const Errno = {
  EPERM: 1, ENOENT: 2, EIO: 5, EBADF: 9, ENOMEM: 12, EACCES: 13, EEXIST: 17, ENOTDIR: 20, EISDIR: 21,
  EINVAL: 22, EFBIG: 27, ENOSPC: 28, EROFS: 30, EPIPE: 32, ENAMETOOLONG: 36, ELOOP: 40, ENOLINK: 67,
  EPROTO: 71, EILSEQ: 84, EREMOTEIO: 121, EDQUOT: 122,
  /** Qubes' marker for "the stream ended inside a record" (the sender died or lied about a length). */
  LEGAL_EOF: 31415926,
} as const;

const ERRNO_TEXT: Record<number, string> = {
  [Errno.EPERM]: 'operation not permitted',
  [Errno.ENOENT]: 'no such file or directory (a parent directory was not sent first)',
  [Errno.EIO]: 'input/output error',
  [Errno.ENOMEM]: 'out of memory',
  [Errno.EACCES]: 'permission denied',
  [Errno.EEXIST]: 'a file with this name already exists at the destination; it was not overwritten',
  [Errno.ENOTDIR]: 'a path component is not a directory (or is a symlink, which is never followed)',
  [Errno.EISDIR]: 'is a directory',
  [Errno.EINVAL]: 'invalid or corrupted stream (bad header, or a file type that cannot be copied)',
  [Errno.EFBIG]: 'file too large',
  [Errno.ENOSPC]: 'no space left on the destination',
  [Errno.EROFS]: 'destination is read-only',
  [Errno.EPIPE]: 'connection closed',
  [Errno.ENAMETOOLONG]: 'name or symlink target too long',
  [Errno.ELOOP]: 'a path component is a symlink, which is never followed',
  [Errno.ENOLINK]: 'unsafe symlink: its target leaves the copied directory (or it is absolute, or top-level)',
  [Errno.EPROTO]: 'protocol error',
  [Errno.EILSEQ]: 'forbidden file name (traversal, empty component, control or non-UTF-8 characters; '
    + 'names with unusual characters need allow-all-names)',
  [Errno.EREMOTEIO]: 'the stream ended without its end marker',
  [Errno.EDQUOT]: 'size or file-count limit exceeded',
  [Errno.LEGAL_EOF]: 'the stream ended in the middle of a file (truncated, or a lying length)',
};

export function errnoText(code: number): string {
  return ERRNO_TEXT[code] ?? `error ${code}`;
}

export function errnoName(code: number): string {
  for (const [k, v] of Object.entries(Errno)) if (v === code) return k;
  return String(code);
}

export interface FileHeader {
  namelen: number;
  mode: number;
  filelen: bigint;
  atime: number;
  atimeNsec: number;
  mtime: number;
  mtimeNsec: number;
}

export function encodeHeader(h: FileHeader): Buffer {
  const b = Buffer.alloc(FILE_HEADER_SIZE);
  b.writeUInt32LE(h.namelen, 0);
  b.writeUInt32LE(h.mode, 4);
  b.writeBigUInt64LE(h.filelen, 8);
  b.writeUInt32LE(h.atime, 16);
  b.writeUInt32LE(h.atimeNsec, 20);
  b.writeUInt32LE(h.mtime, 24);
  b.writeUInt32LE(h.mtimeNsec, 28);
  return b;
}

export function decodeHeader(b: Buffer): FileHeader {
  return {
    namelen: b.readUInt32LE(0),
    mode: b.readUInt32LE(4),
    filelen: b.readBigUInt64LE(8),
    atime: b.readUInt32LE(16),
    atimeNsec: b.readUInt32LE(20),
    mtime: b.readUInt32LE(24),
    mtimeNsec: b.readUInt32LE(28),
  };
}

export const END_MARKER: Buffer = Buffer.alloc(FILE_HEADER_SIZE);

/** result_header, plus result_header_ext when a name is given (Qubes sends the last name it saw). */
export function encodeResult(code: number, crc32: number, lastName?: string): Buffer {
  const h = Buffer.alloc(RESULT_HEADER_SIZE);
  h.writeUInt32LE(code >>> 0, 0);
  h.writeBigUInt64LE(BigInt(crc32 >>> 0), 8);
  if (lastName === undefined) return h;
  const name = Buffer.from(lastName, 'utf8');
  const ext = Buffer.alloc(4);
  ext.writeUInt32LE(name.length, 0);
  return Buffer.concat([h, ext, name]);
}

export function decodeResult(b: Buffer): { code: number; crc32: bigint } {
  return { code: b.readUInt32LE(0), crc32: b.readBigUInt64LE(8) };
}

// Slicing-by-16 over 32-bit word loads: ~1.9 GB/s in V8, where a byte-at-a-time table stops near
// 400 MB/s and would cap the copy; zlib.crc32 does not exist on Node 18.
const T = new Int32Array(16 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  for (let t = 1; t < 16; t++) {
    const prev = T[(t - 1) * 256 + n];
    T[t * 256 + n] = (prev >>> 8) ^ T[prev & 0xff];
  }
}
// Word loads read bytes in host order; the tables assume little-endian.
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** zlib/IEEE CRC32, chainable like zlib's crc32(crc, buf): crc32Update(crc32Update(0, a), b) = crc32(a+b). */
export function crc32Update(crc: number, buf: Uint8Array): number {
  let c = ~crc | 0;
  let i = 0;
  const n = buf.length;
  if (LITTLE_ENDIAN && n >= 64) {
    for (const lead = (4 - (buf.byteOffset & 3)) & 3; i < lead; i++) c = T[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
    const words = (((n - i) >>> 4) << 2);
    const w = new Int32Array(buf.buffer, buf.byteOffset + i, words);
    for (let j = 0; j < words; j += 4) {
      const a = c ^ w[j], b = w[j + 1], d = w[j + 2], e = w[j + 3];
      c = T[3840 + (a & 0xff)] ^ T[3584 + ((a >>> 8) & 0xff)] ^ T[3328 + ((a >>> 16) & 0xff)] ^ T[3072 + (a >>> 24)]
        ^ T[2816 + (b & 0xff)] ^ T[2560 + ((b >>> 8) & 0xff)] ^ T[2304 + ((b >>> 16) & 0xff)] ^ T[2048 + (b >>> 24)]
        ^ T[1792 + (d & 0xff)] ^ T[1536 + ((d >>> 8) & 0xff)] ^ T[1280 + ((d >>> 16) & 0xff)] ^ T[1024 + (d >>> 24)]
        ^ T[768 + (e & 0xff)] ^ T[512 + ((e >>> 8) & 0xff)] ^ T[256 + ((e >>> 16) & 0xff)] ^ T[e >>> 24];
    }
    i += words * 4;
  }
  for (; i < n; i++) c = T[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Strict UTF-8 (no overlongs, no surrogates); null when the bytes are not UTF-8. */
export function decodeUtf8(b: Uint8Array): string | null {
  try {
    return utf8.decode(b);
  } catch {
    return null;
  }
}

// Stands in for Qubes' unicode allowlist: controls, format characters (bidi overrides, zero-width),
// private use, unassigned code points and line/paragraph separators are what can fool a reader.
const UNSAFE_CHARS = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Cs}\p{Zl}\p{Zp}]/u;

/** True when the name needs Qubes' allow-all-names (qubes.Filecopy+allow-all-names) to be received. */
export function needsAllowAllNames(name: string): boolean {
  return UNSAFE_CHARS.test(name);
}

/** Components of a received path, or an errno: the rules of Qubes' qubes_pure_validate_file_name. */
export function checkName(raw: Uint8Array, allowAllNames: boolean): string[] | number {
  if (raw.length === 0 || raw.includes(0)) return Errno.EILSEQ;
  const name = decodeUtf8(raw);
  if (name === null) return Errno.EILSEQ;
  const parts = name.split('/');
  // Covers absolute names (leading ''), `a//b`, a trailing slash, `.` and `..` anywhere.
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return Errno.EILSEQ;
  if (!allowAllNames && UNSAFE_CHARS.test(name)) return Errno.EILSEQ;
  return parts;
}

/**
 * Qubes' qubes_pure_validate_symbolic_link: a link at depth d (d >= 2 components) may start its
 * target with at most d-2 `..`, and nowhere else, so it resolves inside the top-level directory of
 * its own transfer; top-level links, absolute and non-canonical targets are refused.
 */
export function checkSymlinkTarget(linkParts: string[], raw: Uint8Array, allowAllNames: boolean): number {
  if (raw.includes(0)) return Errno.EILSEQ;
  const target = decodeUtf8(raw);
  if (target === null) return Errno.EILSEQ;
  if (!allowAllNames && UNSAFE_CHARS.test(target)) return Errno.EILSEQ;
  if (linkParts.length < 2 || target === '' || target.startsWith('/')) return Errno.ENOLINK;
  const parts = target.split('/');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  let dotdots = linkParts.length - 2;
  let leading = true;
  for (const p of parts) {
    if (p === '' || p === '.') return Errno.EILSEQ;
    if (p !== '..') leading = false;
    else if (!leading || dotdots-- === 0) return Errno.ENOLINK;
  }
  return 0;
}

/** Text for a name that came from the other side: it may hold anything, so controls are escaped. */
export function displayName(name: string): string {
  return JSON.stringify(name).slice(1, -1).replace(/[\p{Cf}\p{Zl}\p{Zp}]/gu, (c) =>
    `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`);
}
