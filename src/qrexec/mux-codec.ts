// The version 2 transport's channel layer (docs/agent-protocol.md, "Channels over one byte stream"): pure
// encoders and an incremental, validating decoder. src/native/mux/mux.c implements the same format in C.

import { QubesError } from '../core/errors';
import { takeChunks } from './chunks';

export const MUX_MAGIC = Buffer.from('ISOLAMUX', 'latin1');
export const MUX_VERSION = 2;
/** type, channel, len: little-endian u32s. */
export const MUX_HEADER_SIZE = 12;
export const MUX_SESSION_SIZE = 16;
/** magic, version, flags, the sender's session id, the peer's session id it has seen (zeros if none). */
export const MUX_RESET_LEN = 8 + 4 + 4 + MUX_SESSION_SIZE * 2;
/** The v1 chunk size: no frame payload is larger, so no peer makes us hold more than one frame to decode it. */
export const MUX_MAX_DATA = 65536;
/** What each side may send on a new channel before any WINDOW, and the most credit it may ever hold. */
export const MUX_WINDOW = 256 * 1024;
/** Open channels per stream, as the agent socket's connection cap. */
export const MUX_MAX_CHANNELS = 512;

export const MUX_RESET = 1;
export const MUX_OPEN = 2;
export const MUX_DATA = 3;
export const MUX_WINDOW_ADJUST = 4;
export const MUX_EOF = 5;
export const MUX_CLOSE = 6;

const NAMES: Record<number, string> = {
  [MUX_RESET]: 'RESET', [MUX_OPEN]: 'OPEN', [MUX_DATA]: 'DATA', [MUX_WINDOW_ADJUST]: 'WINDOW', [MUX_EOF]: 'EOF', [MUX_CLOSE]: 'CLOSE',
};

export function muxTypeName(type: number): string {
  return NAMES[type] ?? `type 0x${type.toString(16)}`;
}

/** A stream-level error: the stream cannot be resynchronised from here, so both sides reset it. */
export class MuxProtocolError extends QubesError {
  constructor(message: string) {
    super('ProtocolError', message);
  }
}

export type MuxMessage =
  | { type: typeof MUX_RESET; channel: 0; flags: number; session: Buffer; echo: Buffer }
  | { type: typeof MUX_OPEN | typeof MUX_EOF | typeof MUX_CLOSE; channel: number }
  | { type: typeof MUX_DATA; channel: number; parts: Buffer[]; length: number }
  | { type: typeof MUX_WINDOW_ADJUST; channel: number; increment: number };

export function encodeMuxHeader(type: number, channel: number, len: number): Buffer {
  const b = Buffer.allocUnsafe(MUX_HEADER_SIZE);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(channel, 4);
  b.writeUInt32LE(len, 8);
  return b;
}

/** RESET flag: the sender has received a RESET echoing its session, so it needs no answer. */
export const RESET_FLAG_UP = 0x1;

export function encodeReset(session: Buffer, echo: Buffer | null, flags = 0): Buffer {
  if (session.length !== MUX_SESSION_SIZE || (echo && echo.length !== MUX_SESSION_SIZE)) throw new RangeError('session ids are 16 bytes');
  const b = Buffer.alloc(MUX_HEADER_SIZE + MUX_RESET_LEN);
  encodeMuxHeader(MUX_RESET, 0, MUX_RESET_LEN).copy(b, 0);
  MUX_MAGIC.copy(b, 12);
  b.writeUInt32LE(MUX_VERSION, 20);
  b.writeUInt32LE(flags, 24);
  session.copy(b, 28);
  echo?.copy(b, 44);
  return b;
}

/** OPEN, EOF and CLOSE carry nothing but the channel. */
export function encodeBare(type: typeof MUX_OPEN | typeof MUX_EOF | typeof MUX_CLOSE, channel: number): Buffer {
  return encodeMuxHeader(type, channel, 0);
}

export function encodeWindow(channel: number, increment: number): Buffer {
  const b = Buffer.allocUnsafe(MUX_HEADER_SIZE + 4);
  encodeMuxHeader(MUX_WINDOW_ADJUST, channel, 4).copy(b, 0);
  b.writeUInt32LE(increment, 12);
  return b;
}

/** Only the header: the payload follows as its own write (no copy of 64 KiB per frame). */
export function encodeDataHeader(channel: number, len: number): Buffer {
  if (len < 1 || len > MUX_MAX_DATA) throw new RangeError(`DATA of ${len} bytes`);
  return encodeMuxHeader(MUX_DATA, channel, len);
}

/** The bytes a RESET starts with: what a side that lost its place in the stream hunts for. */
export const RESET_SIGNATURE = Buffer.concat([encodeMuxHeader(MUX_RESET, 0, MUX_RESET_LEN), MUX_MAGIC]);

/** Judged from the header alone, so a hostile len is refused before anything is awaited or kept for it. */
export function checkMuxHeader(type: number, channel: number, len: number): void {
  const name = muxTypeName(type);
  switch (type) {
    case MUX_RESET:
      if (channel !== 0) throw new MuxProtocolError(`RESET on channel ${channel} (must be 0)`);
      if (len !== MUX_RESET_LEN) throw new MuxProtocolError(`RESET with ${len} bytes (expected ${MUX_RESET_LEN})`);
      return;
    case MUX_OPEN: case MUX_EOF: case MUX_CLOSE: case MUX_WINDOW_ADJUST: case MUX_DATA: {
      if (channel === 0) throw new MuxProtocolError(`${name} on channel 0 (reserved for RESET)`);
      const [min, max] = type === MUX_DATA ? [1, MUX_MAX_DATA] : type === MUX_WINDOW_ADJUST ? [4, 4] : [0, 0];
      if (len < min || len > max) throw new MuxProtocolError(`${name} with ${len} bytes (expected ${min}..${max})`);
      return;
    }
    default:
      throw new MuxProtocolError(`unknown ${name} (${len} bytes)`);
  }
}

/**
 * Pull decoder: push() bytes, next() a message at a time. Starts hunting: until it finds a RESET's signature it
 * discards everything (a stream picked up after a restart may begin inside a frame). Holds at most one frame.
 */
export class MuxDecoder {
  private chunks: Buffer[] = [];
  private size = 0;
  private header: { type: number; channel: number; len: number } | null = null;
  private hunting = true;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.hunting) this.hunt();
  }

  /** After a stream error: drop what is held and look for the peer's next RESET. */
  resync(): void {
    this.chunks = [];
    this.size = 0;
    this.header = null;
    this.hunting = true;
  }

  get isHunting(): boolean {
    return this.hunting;
  }

  /** Bytes held: at most one frame plus what the last push() brought. */
  get buffered(): number {
    return this.size;
  }

  /** Throws MuxProtocolError for what cannot be resynchronised; the decoder then hunts in the bytes after it. */
  next(): MuxMessage | null {
    if (this.hunting) return null;
    if (!this.header) {
      if (this.size < MUX_HEADER_SIZE) return null;
      const h = this.join(this.take(MUX_HEADER_SIZE), MUX_HEADER_SIZE);
      const type = h.readUInt32LE(0), channel = h.readUInt32LE(4), len = h.readUInt32LE(8);
      try {
        checkMuxHeader(type, channel, len);
      } catch (e) {
        this.lose();
        throw e;
      }
      this.header = { type, channel, len };
    }
    const { type, channel, len } = this.header;
    if (this.size < len) return null;
    this.header = null;
    const parts = this.take(len);
    switch (type) {
      case MUX_DATA:
        return { type, channel, parts, length: len };
      case MUX_WINDOW_ADJUST:
        return { type, channel, increment: this.join(parts, 4).readUInt32LE(0) };
      case MUX_RESET:
        return this.reset(this.join(parts, len));
      default:
        return { type: type as typeof MUX_OPEN, channel };
    }
  }

  private reset(p: Buffer): MuxMessage {
    if (!p.subarray(0, 8).equals(MUX_MAGIC)) throw this.fail('RESET with a wrong magic');
    const version = p.readUInt32LE(8);
    if (version !== MUX_VERSION) throw this.fail(`RESET of version ${version} (this side speaks ${MUX_VERSION})`);
    // Copies: the session ids outlive the chunks they came in.
    return { type: MUX_RESET, channel: 0, flags: p.readUInt32LE(12), session: Buffer.from(p.subarray(16, 32)), echo: Buffer.from(p.subarray(32, 48)) };
  }

  private fail(reason: string): MuxProtocolError {
    this.lose();
    return new MuxProtocolError(reason);
  }

  /** Lost our place after a bad frame: hunt for a RESET in what follows it (the peer's may be right behind). */
  private lose(): void {
    this.header = null;
    this.hunting = true;
    if (this.size > 0) this.hunt();
  }

  /** Discards bytes up to the first RESET signature; keeps a tail that may be the start of one. */
  private hunt(): void {
    const all = this.join(this.chunks, this.size);
    const at = all.indexOf(RESET_SIGNATURE);
    if (at >= 0) {
      this.hunting = false;
      this.chunks = [all.subarray(at)];
      this.size = all.length - at;
      return;
    }
    const keep = Math.min(all.length, RESET_SIGNATURE.length - 1);
    this.chunks = keep ? [Buffer.from(all.subarray(all.length - keep))] : [];
    this.size = keep;
  }

  private join(parts: Buffer[], n: number): Buffer {
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, n);
  }

  private take(n: number): Buffer[] {
    this.size -= n;
    return takeChunks(this.chunks, n);
  }
}
