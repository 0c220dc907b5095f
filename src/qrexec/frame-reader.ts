// Incremental frame parser (FrameReader, pure) and its binding to a socket (FramedSocket): HELLO
// handshake, per-state type checks, flow control, and "a bad peer loses its connection, never the process".

import type { Duplex } from 'stream';
import {
  EMPTY, HEADER_SIZE, HELLO_ONLY, MAX_PAYLOAD, MSG_HELLO, ProtocolError, encodeFrame, encodeHello, parseHello,
  frameHeader, payloadLimits, typeName, type Hello,
} from './protocol';
import { withArticle } from '../core/grammar';
import { takeChunks } from './chunks';

export interface Frame {
  type: number;
  payload: Buffer;
}

/**
 * A frame as it came off the socket: its payload may span the chunks it arrived in (a 64 KiB payload always
 * straddles two 64 KiB socket reads). Forwarding writes `parts` as they are; `payload` joins them only if asked.
 */
export class ChunkedFrame implements Frame {
  private joined: Buffer | null;

  constructor(readonly type: number, readonly length: number, readonly parts: readonly Buffer[]) {
    this.joined = length === 0 ? EMPTY : parts.length === 1 ? parts[0] : null;
  }

  get payload(): Buffer {
    return (this.joined ??= Buffer.concat(this.parts, this.length));
  }
}

/** Pull parser: push() bytes as they come, next() a frame at a time; the caller changes allow() between frames. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private header: { type: number; len: number } | null = null;

  constructor(private allowed: ReadonlySet<number>) {}

  allow(types: ReadonlySet<number>): void {
    this.allowed = types;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  get buffered(): number {
    return this.size + (this.header ? HEADER_SIZE : 0);
  }

  /** Type and length are judged from the header alone, so a hostile len is refused before we wait for or keep it. */
  next(): ChunkedFrame | null {
    if (!this.header) {
      if (this.size < HEADER_SIZE) return null;
      const parts = this.take(HEADER_SIZE);
      const h = parts.length === 1 ? parts[0] : Buffer.concat(parts, HEADER_SIZE);
      const type = h.readUInt32LE(0);
      const len = h.readUInt32LE(4);
      if (len > MAX_PAYLOAD) throw new ProtocolError(`${typeName(type)} claims ${len} bytes, more than ${MAX_PAYLOAD}`);
      if (!this.allowed.has(type)) throw new ProtocolError(`${typeName(type)} is not allowed here`);
      const [min, max] = payloadLimits(type);
      if (len < min || len > max) throw new ProtocolError(`${typeName(type)} with ${len} bytes (expected ${min}..${max})`);
      this.header = { type, len };
    }
    if (this.size < this.header.len) return null;
    const frame = new ChunkedFrame(this.header.type, this.header.len, this.take(this.header.len));
    this.header = null;
    return frame;
  }

  /** At end of stream: leftover bytes mean the peer cut a frame short. */
  end(): void {
    if (this.header) throw new ProtocolError(`connection closed inside ${withArticle(typeName(this.header.type))} payload`);
    if (this.size > 0) throw new ProtocolError(`connection closed inside a frame header (${this.size} of ${HEADER_SIZE} bytes)`);
  }

  private take(n: number): Buffer[] {
    this.size -= n;
    return takeChunks(this.chunks, n);
  }
}

export interface FramedSocketOptions {
  /** Names the connection in log lines, e.g. `qube work: data #1234`. */
  label: string;
  log: (line: string) => void;
  /** Types accepted once the handshake is done (at once, without `hello`). */
  accept: ReadonlySet<number>;
  /** Run the HELLO handshake with these flags (peers of isolad's agent socket); omit for CLI data streams. */
  hello?: { flags: number; ident?: string; timeoutMs?: number };
  /** Bytes already read from the socket by someone else (e.g. the Admin API server). */
  head?: Buffer;
}

const noop = () => {};

export class FramedSocket {
  readonly reader: FrameReader;
  onHello: (hello: Hello) => void = noop;
  onFrame: (frame: ChunkedFrame) => void = noop;
  private closeHandler: (reason: string | null) => void = noop;
  private awaitingHello: boolean;
  private paused = false;
  private delivering = false;
  private failed: string | null = null;
  private socketClosed = false;
  private closeReported = false;
  private selfClosed = false;
  private helloTimer: NodeJS.Timeout | null = null;

  /** Any Duplex that behaves like a socket: a net.Socket, or a channel of a Mux (src/qrexec/mux.ts). */
  constructor(readonly socket: Duplex, private readonly opts: FramedSocketOptions) {
    this.awaitingHello = !!opts.hello;
    this.reader = new FrameReader(opts.hello ? HELLO_ONLY : opts.accept);
    if (opts.head) this.reader.push(opts.head);
    if (opts.hello) {
      this.send(MSG_HELLO, encodeHello(opts.hello.flags, opts.hello.ident));
      const ms = opts.hello.timeoutMs;
      if (ms) this.helloTimer = setTimeout(() => this.close(`no HELLO within ${ms} ms`), ms);
    }
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      this.deliver();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (!this.failed) this.failed = e.code ?? e.message;
    });
    socket.on('close', () => {
      this.socketClosed = true;
      if (this.helloTimer) clearTimeout(this.helloTimer);
      this.deliver();
    });
    if (opts.head?.length) setImmediate(() => this.deliver());
    // A socket handed over paused (e.g. by the Admin API server after its request header) starts flowing here.
    socket.resume();
  }

  /** Fires once, after every frame received before the close; reason is null for an orderly close. A handler
   *  set after the close was reported is called at once, so a connection handed over late is never left hanging. */
  set onClose(handler: (reason: string | null) => void) {
    this.closeHandler = handler;
    if (this.closeReported) queueMicrotask(() => handler(this.failed));
  }

  get onClose(): (reason: string | null) => void {
    return this.closeHandler;
  }

  get label(): string {
    return this.opts.label;
  }

  get closed(): boolean {
    return this.socketClosed || this.socket.destroyed;
  }

  allow(types: ReadonlySet<number>): void {
    this.reader.allow(types);
  }

  /** Returns the socket's write() verdict: false means wait for onceDrain() before sending more. */
  send(type: number, payload: Buffer = EMPTY): boolean {
    return this.sendParts(type, payload.length, payload.length ? [payload] : []);
  }

  /** Sends a frame received elsewhere (already checked there) without joining its parts. */
  forward(frame: ChunkedFrame): boolean {
    return this.sendParts(frame.type, frame.length, frame.parts);
  }

  /** Splits data into MAX_PAYLOAD chunks; never sends an empty frame (that would mean EOF). */
  sendData(type: number, data: Buffer): boolean {
    if (data.length === 0) return true;
    if (data.length <= MAX_PAYLOAD) return this.send(type, data);
    let ok = true;
    this.socket.cork(); // one writev for the whole buffer rather than one per 64 KiB frame
    for (let off = 0; off < data.length; off += MAX_PAYLOAD) ok = this.send(type, data.subarray(off, off + MAX_PAYLOAD));
    this.socket.uncork();
    return ok;
  }

  private sendParts(type: number, len: number, parts: readonly Buffer[]): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    if (len < 4096) return this.socket.write(encodeFrame(type, parts.length === 1 ? parts[0] : Buffer.concat(parts, len)));
    // Big payloads go out as header + parts in one writev: no 64 KiB copy per frame to allocate and collect.
    this.socket.cork();
    this.socket.write(frameHeader(type, len));
    let ok = true;
    for (const p of parts) ok = this.socket.write(p);
    this.socket.uncork();
    return ok;
  }

  onceDrain(cb: () => void): void {
    this.socket.once('drain', cb);
  }

  /** Stops delivering frames (and reading the socket) until resume(): the other end of a pipe is full. */
  pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.deliver();
  }

  /** Orderly close after our last frame. */
  end(): void {
    this.socket.end();
  }

  /** Drops the connection; a reason is logged as one line. */
  close(reason?: string): void {
    this.selfClosed = true;
    if (reason && !this.failed) {
      this.failed = reason;
      this.opts.log(`${this.opts.label}: ${reason}; connection dropped`);
    }
    this.socket.destroy();
  }

  private deliver(): void {
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (!this.paused && !this.socket.destroyed) {
        const frame = this.reader.next();
        if (!frame) break;
        if (this.awaitingHello) this.handshake(frame);
        else this.onFrame(frame);
      }
      if (this.socketClosed && !this.paused && !this.failed && !this.selfClosed) this.reader.end();
    } catch (e) {
      // Handler bugs land here too: a broken connection is better than a dead isolad or a dead qube.
      const msg = e instanceof ProtocolError ? `protocol error: ${e.message}` : `internal error: ${(e as Error).stack ?? e}`;
      this.close(msg);
    } finally {
      this.delivering = false;
    }
    if (!this.paused && !this.socket.destroyed) this.socket.resume();
    if (this.socketClosed && (!this.paused || this.failed) && !this.closeReported) {
      this.closeReported = true;
      this.closeHandler(this.failed);
    }
  }

  private handshake(frame: ChunkedFrame): void {
    if (frame.type !== MSG_HELLO) throw new ProtocolError(`${typeName(frame.type)} before HELLO`);
    const hello = parseHello(frame.payload);
    this.awaitingHello = false;
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.reader.allow(this.opts.accept);
    this.onHello(hello);
  }
}
