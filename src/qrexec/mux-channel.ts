// One channel of a Mux as a Duplex that behaves like the unix socket it stands in for: FramedSocket runs over
// it unchanged. Its readable side holds at most the window it granted; its writable side waits for credit.

import { Duplex } from 'stream';
import { MUX_WINDOW } from './mux-codec';

/** What a channel asks of the Mux that owns it. */
export interface ChannelLink {
  /** The consumer read: grant the peer what was freed. */
  wantGrant(c: MuxChannel): void;
  /** c.pending holds bytes to send when credit and the stream allow. */
  wantSend(c: MuxChannel): void;
  sendEof(c: MuxChannel): void;
  /** The channel is gone on this side; tell the peer unless it already knows. */
  released(c: MuxChannel): void;
}

export interface PendingWrite {
  chunk: Buffer;
  offset: number;
  done: () => void;
}

export class MuxChannel extends Duplex {
  /** DATA bytes we may still send: the peer's grants not yet used. */
  sendCredit = MUX_WINDOW;
  /** DATA bytes the peer may still send us: our grants not yet used. */
  recvOutstanding = MUX_WINDOW;
  peerEof = false;
  /** The peer sent CLOSE: it reads nothing more, so what we would still write is dropped. */
  peerClosed = false;
  /** Dropped by a stream reset (or the stream's end): no CLOSE is owed, the peer dropped it too. */
  detached = false;
  pending: PendingWrite | null = null;

  constructor(readonly id: number, private readonly link: ChannelLink, allowHalfOpen: boolean) {
    // The readable buffer may reach the whole window (what the peer was allowed to send), never more.
    super({ allowHalfOpen, readableHighWaterMark: MUX_WINDOW, writableHighWaterMark: 64 * 1024 });
  }

  override _read(): void {
    this.link.wantGrant(this);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.peerClosed || this.detached || chunk.length === 0) return cb();
    this.pending = { chunk, offset: 0, done: () => cb() };
    this.link.wantSend(this);
  }

  override _final(cb: (e?: Error | null) => void): void {
    // Writable calls _final only after every write's callback, so nothing is pending: EOF follows the last DATA.
    if (!this.peerClosed && !this.detached) this.link.sendEof(this);
    cb();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.pending = null;
    this.link.released(this);
    cb(err);
  }

  /** The peer's bytes, already checked against its window. */
  deliver(parts: readonly Buffer[]): void {
    for (const p of parts) {
      // A small slice would keep its whole 64 KiB read buffer alive while it waits to be read: a peer sending
      // 1-byte frames could make us hold 64 KiB for each byte of window. Copy those.
      this.push(p.length * 2 < p.buffer.byteLength ? Buffer.from(p) : p);
    }
  }

  peerEnded(): void {
    this.peerEof = true;
    this.push(null);
  }

  /** The peer is done with the channel: deliver what it sent, drop what we would send. */
  peerGone(): void {
    this.peerClosed = true;
    const p = this.pending;
    this.pending = null;
    if (!this.peerEof) this.peerEnded();
    p?.done();
    // 'close' follows once the consumer has read what is buffered (autoDestroy waits for both sides).
    if (!this.writableEnded) this.end();
  }
}
