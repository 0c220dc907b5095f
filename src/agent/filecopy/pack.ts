// The qubes.Filecopy sender: streams files, directories and symlinks in Qubes' record format with
// backpressure, then checks the receiver's reply (error code, last name, CRC of what it read).

import { promises as fsp, constants as C, type BigIntStats } from 'fs';
import type { FileHandle } from 'fs/promises';
import { basename, join, resolve } from 'path';
import type { Readable, Writable } from 'stream';
import {
  END_MARKER, MAX_PATH_LENGTH, MAX_SYMLINK_TARGET, RESULT_HEADER_SIZE, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
  crc32Update, decodeResult, decodeUtf8, displayName, encodeHeader, errnoName, errnoText,
} from './format';

export interface PackOptions {
  /** Skip symlinks instead of sending them (Qubes' --ignore-symlinks). */
  ignoreSymlinks?: boolean;
  /** The receiver's side of the connection; without it the reply is not awaited or checked. */
  reply?: Readable;
  /** Called before each record is sent, with its relative name (progress display). */
  onFile?: (name: string, size: number) => void;
  /** How long to wait for the optional last name after an error reply (ms). */
  extTimeoutMs?: number;
}

export interface PackResult { crc32: number; bytes: number; files: number }

/** A failure of the copy: `code` is the receiver's errno when it refused, 0 for local or CRC problems. */
export class FilecopyError extends Error {
  constructor(message: string, readonly code = 0, readonly lastName?: string) {
    super(message);
    this.name = 'FilecopyError';
  }
}

const CHUNK = 1 << 20;

interface Reply { code: number; crc32: bigint; lastName?: string }

/** Collects result_header (+ ext) from the reply stream; settles as soon as the header is complete. */
function readReply(reply: Readable, extTimeoutMs: number): { done: Promise<Reply>; stop: () => void } {
  let buf = Buffer.alloc(0);
  let timer: NodeJS.Timeout | undefined;
  let settle!: (r: Reply) => void;
  let fail!: (e: Error) => void;
  const done = new Promise<Reply>((res, rej) => { settle = res; fail = rej; });
  const cleanup = (): void => {
    if (timer) clearTimeout(timer);
    reply.off('data', onData).off('end', onEnd).off('close', onEnd).off('error', onError);
  };
  const finish = (withExt: boolean): void => {
    cleanup();
    const h = decodeResult(buf);
    let lastName: string | undefined;
    if (withExt) {
      const len = buf.readUInt32LE(RESULT_HEADER_SIZE);
      lastName = buf.subarray(RESULT_HEADER_SIZE + 4, RESULT_HEADER_SIZE + 4 + len).toString('utf8');
    }
    settle({ ...h, lastName });
  };
  const check = (): void => {
    if (buf.length < RESULT_HEADER_SIZE) return;
    // Success needs no name; an error waits briefly for it, since an old receiver may not send one.
    if (buf.readUInt32LE(0) === 0) return finish(false);
    if (buf.length >= RESULT_HEADER_SIZE + 4) {
      const len = buf.readUInt32LE(RESULT_HEADER_SIZE);
      if (len > MAX_PATH_LENGTH) return finish(false);
      if (buf.length >= RESULT_HEADER_SIZE + 4 + len) return finish(true);
    }
    timer ??= setTimeout(() => finish(false), extTimeoutMs);
  };
  const onData = (d: Buffer): void => {
    if (buf.length <= RESULT_HEADER_SIZE + 4 + MAX_PATH_LENGTH) buf = Buffer.concat([buf, d]);
    check();
  };
  const onEnd = (): void => {
    if (buf.length >= RESULT_HEADER_SIZE) return finish(false);
    cleanup();
    fail(new FilecopyError('the receiver closed the connection without a reply (it may have crashed or been refused)'));
  };
  const onError = (e: Error): void => { cleanup(); fail(new FilecopyError(`reading the receiver's reply: ${e.message}`)); };
  reply.on('data', onData).on('end', onEnd).on('close', onEnd).on('error', onError);
  return { done, stop: cleanup };
}

/** Writes with backpressure and a running CRC; fails fast if the receiver replies (refuses) meanwhile. */
class Sender {
  crc = 0;
  bytes = 0;
  files = 0;
  private failed?: unknown;
  constructor(private readonly out: Writable, private readonly early: Promise<never>) {
    early.catch((e) => { this.failed = e; });
  }

  async write(b: Buffer): Promise<void> {
    if (this.failed) throw this.failed;  // the walk raced against a refusal must not keep writing
    this.crc = crc32Update(this.crc, b);
    this.bytes += b.length;
    if (this.out.write(b)) return;
    let onErr!: (e: Error) => void;
    let onClose!: () => void;
    try {
      await Promise.race([
        new Promise<void>((res, rej) => {
          onErr = rej;
          onClose = () => rej(new FilecopyError('the connection to the receiver closed during the copy'));
          this.out.once('drain', res).once('error', onErr).once('close', onClose);
        }),
        this.early,
      ]);
    } finally {
      this.out.off('error', onErr).off('close', onClose);
    }
  }
}

function times(st: BigIntStats): { atime: number; atimeNsec: number; mtime: number; mtimeNsec: number } {
  const split = (ns: bigint): [number, number] => {
    if (ns < 0n) return [0, 0];  // the format's u32 cannot hold times before 1970
    const s = ns / 1_000_000_000n;
    return s > 0xffffffffn ? [0xffffffff, 0] : [Number(s), Number(ns % 1_000_000_000n)];
  };
  const [atime, atimeNsec] = split(st.atimeNs);
  const [mtime, mtimeNsec] = split(st.mtimeNs);
  return { atime, atimeNsec, mtime, mtimeNsec };
}

function kindOf(st: BigIntStats): string {
  if (st.isBlockDevice() || st.isCharacterDevice()) return 'a device node';
  if (st.isFIFO()) return 'a fifo';
  if (st.isSocket()) return 'a socket';
  return 'of an unknown type';
}

async function sendRecord(s: Sender, st: BigIntStats, type: number, rel: string, len: number): Promise<void> {
  const name = Buffer.from(rel + '\0', 'utf8');
  // Only the permission bits travel: setuid/setgid/sticky are dropped here and again by the receiver.
  const mode = type | (Number(st.mode) & 0o777);
  await s.write(Buffer.concat([encodeHeader({ namelen: name.length, mode, filelen: BigInt(len), ...times(st) }), name]));
}

async function sendFile(s: Sender, abs: string, rel: string, lst: BigIntStats, onFile?: PackOptions['onFile']): Promise<void> {
  let fh: FileHandle;
  try {
    // O_NONBLOCK: if the path turned into a fifo since lstat, open must not hang on it.
    fh = await fsp.open(abs, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK | C.O_NOCTTY);
  } catch (e) {
    throw new FilecopyError(`${abs}: cannot open: ${(e as Error).message}`);
  }
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile() || st.ino !== lst.ino || st.dev !== lst.dev) throw new FilecopyError(`${abs}: changed while being copied`);
    const size = Number(st.size);
    onFile?.(rel, size);
    await sendRecord(s, st, S_IFREG, rel, size);
    for (let left = size; left > 0;) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, left));  // fresh each time: out may still hold the last one
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      // The header already promised `size` bytes; a shorter stream must end the connection, not pad it.
      if (bytesRead === 0) throw new FilecopyError(`${abs}: file shrank while being copied`);
      await s.write(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead));
      left -= bytesRead;
    }
  } finally {
    await fh.close();
  }
}

async function sendPath(s: Sender, abs: string, rel: string, top: boolean, opts: PackOptions): Promise<void> {
  let st: BigIntStats;
  try {
    st = await fsp.lstat(abs, { bigint: true });
  } catch (e) {
    throw new FilecopyError(`${abs}: ${(e as Error).message}`);
  }
  if (st.isSymbolicLink()) {
    if (opts.ignoreSymlinks) return;
    if (top) throw new FilecopyError(`${abs}: is a symlink; Qubes' receiver refuses top-level symlinks — copy its target instead`);
    const target = await fsp.readlink(abs, { encoding: 'buffer' });
    if (decodeUtf8(target) === null) throw new FilecopyError(`${abs}: symlink target is not valid UTF-8`);
    if (target.length > MAX_SYMLINK_TARGET) throw new FilecopyError(`${abs}: symlink target too long`);
    opts.onFile?.(rel, target.length);
    await sendRecord(s, st, S_IFLNK, rel, target.length);
    await s.write(target);
  } else if (st.isFile()) {
    await sendFile(s, abs, rel, st, opts.onFile);
  } else if (st.isDirectory()) {
    opts.onFile?.(rel, 0);
    await sendRecord(s, st, S_IFDIR, rel, 0);
    const entries = (await fsp.readdir(abs, { encoding: 'buffer' })).sort(Buffer.compare);
    for (const e of entries) {
      const name = decodeUtf8(e);
      if (name === null) throw new FilecopyError(`${abs}: contains a name that is not valid UTF-8 (${e.toString('hex')})`);
      await sendPath(s, join(abs, name), `${rel}/${name}`, false, opts);
    }
    // Sent again after the contents: the receiver fixes the mode and mtime only now (Qubes' order).
    await sendRecord(s, st, S_IFDIR, rel, 0);
  } else {
    throw new FilecopyError(`${abs}: is ${kindOf(st)}; only regular files, directories and symlinks can be copied`);
  }
  s.files++;
}

/** The text a user sees for a receiver's refusal. */
export function describeRefusal(code: number, lastName?: string): string {
  const what = lastName ? ` at '${displayName(lastName)}'` : '';
  return `the receiver refused the copy${what}: ${errnoText(code)} (${errnoName(code)})`;
}

/**
 * Sends `paths` (each under its basename) as one qubes.Filecopy stream on `out`, then the end marker,
 * then (with opts.reply) waits for the receiver's result. Rejects with FilecopyError on any failure;
 * after a local failure the stream is cut short and the caller should close the connection.
 */
export async function packPaths(paths: string[], out: Writable, opts: PackOptions = {}): Promise<PackResult> {
  const reply = opts.reply ? readReply(opts.reply, opts.extTimeoutMs ?? 2000) : undefined;
  const replied = reply?.done.then((r) => r);
  replied?.catch(() => undefined);
  // A reply before the end marker can only be a refusal: stop sending at once instead of filling a pipe
  // nobody reads any more.
  const early = (replied ?? new Promise<never>(() => undefined)).then((r): never => {
    throw new FilecopyError(r.code ? describeRefusal(r.code, r.lastName) : 'the receiver replied before the end of the stream', r.code, r.lastName);
  });
  early.catch(() => undefined);
  const s = new Sender(out, early);
  try {
    for (const p of paths) {
      const abs = resolve(p);
      const rel = basename(abs);
      if (!rel || rel === '.' || rel === '..') throw new FilecopyError(`${p}: cannot be copied (no name)`);
      await Promise.race([sendPath(s, abs, rel, true, opts), early]);
    }
    await s.write(END_MARKER);
  } catch (e) {
    reply?.stop();
    throw e instanceof FilecopyError ? e : new FilecopyError((e as Error).message);
  }
  const result: PackResult = { crc32: s.crc, bytes: s.bytes, files: s.files };
  if (!replied) return result;
  const r = await replied;
  if (r.code !== 0) throw new FilecopyError(describeRefusal(r.code, r.lastName), r.code, r.lastName);
  if (r.crc32 !== BigInt(s.crc)) {
    throw new FilecopyError(`the data was corrupted in transit: CRC32 sent ${s.crc.toString(16)}, received ${r.crc32.toString(16)}`);
  }
  return result;
}
