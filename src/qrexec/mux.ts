// v1 connections as channels over one byte stream (an hvm qube's virtio-serial port): the reset handshake, the
// channel table and per-channel credit windows (docs/agent-protocol.md, "Channels over one byte stream").

import { EventEmitter } from 'events';
import { randomBytes } from 'crypto';
import type { Duplex } from 'stream';
import { MuxChannel, type ChannelLink } from './mux-channel';
import {
  MUX_CLOSE, MUX_DATA, MUX_EOF, MUX_MAX_CHANNELS, MUX_MAX_DATA, MUX_OPEN, MUX_RESET, MUX_SESSION_SIZE, MUX_WINDOW,
  MUX_WINDOW_ADJUST, MuxDecoder, RESET_FLAG_UP, MuxProtocolError, encodeBare, encodeDataHeader, encodeReset, encodeWindow, muxTypeName,
  type MuxMessage,
} from './mux-codec';

export { MuxChannel };

export interface MuxOptions {
  /** 'accept': isolad's side, the peer opens channels (each OPEN is an accept()); 'open': the agent's side. */
  role: 'accept' | 'open';
  /** Names the stream in log lines, e.g. `qube work: serial`. */
  label?: string;
  /** One line per dropped channel or stream reset; the caller rate-limits per qube as for connections. */
  log?: (line: string) => void;
  maxChannels?: number;
  /** How often an unconfirmed RESET is sent again (default 1000 ms): one sent while the far end was away is lost. */
  resendMs?: number;
  /** Channels end their writable side when the peer's EOF arrives unless true, as net.Socket does (default false). */
  allowHalfOpen?: boolean;
}

/** While our unsent output is over this, we stop reading: a peer that makes us answer but never reads cannot grow us. */
const MAX_OUTPUT_BACKLOG = 1024 * 1024;
const ZERO_SESSION = Buffer.alloc(MUX_SESSION_SIZE);

/** Events: 'channel' (MuxChannel, accept role), 'up', 'reset' (reason: string), 'close'. */
export declare interface Mux {
  on(event: 'channel', cb: (c: MuxChannel) => void): this;
  on(event: 'up', cb: () => void): this;
  on(event: 'reset', cb: (reason: string) => void): this;
  on(event: 'close', cb: () => void): this;
}

export class Mux extends EventEmitter implements ChannelLink {
  private readonly decoder = new MuxDecoder();
  private readonly channels = new Map<number, MuxChannel>();
  /** Ids are never reused within a session pair: an id at or below this that is not open is a closed one. */
  private highestId = 0;
  private mine = randomBytes(MUX_SESSION_SIZE);
  private peer: Buffer | null = null;
  private isUp = false;
  private closed = false;
  private readonly sendable = new Set<MuxChannel>();
  private pumping = false;
  private readonly grants = new Set<MuxChannel>();
  private grantTimer: NodeJS.Immediate | null = null;
  private resendTimer: NodeJS.Timeout | null = null;
  private readonly maxChannels: number;
  private readonly label: string;
  private readonly log: (line: string) => void;

  constructor(private readonly stream: Duplex, private readonly opts: MuxOptions) {
    super();
    this.maxChannels = opts.maxChannels ?? MUX_MAX_CHANNELS;
    this.label = opts.label ?? 'mux';
    this.log = opts.log ?? (() => undefined);
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('error', () => undefined); // 'close' follows; the reason is the stream owner's to log
    stream.on('close', () => this.onStreamClose());
    stream.on('drain', () => {
      if (stream.isPaused()) stream.resume();
      this.pump();
    });
    this.sendReset();
    this.armResend();
  }

  get up(): boolean {
    return this.isUp;
  }

  get channelCount(): number {
    return this.channels.size;
  }

  /** Bytes held for the peer: the decoder's partial frame and every channel's unread bytes (at most its window). */
  bufferedBytes(): number {
    let n = this.decoder.buffered;
    for (const c of this.channels.values()) n += c.readableLength;
    return n;
  }

  /** Opener's side: a new channel, usable at once (the peer's initial window is implicit). */
  open(): MuxChannel {
    if (this.opts.role !== 'open') throw new Error('Mux: only the opening side opens channels');
    if (!this.isUp) throw new Error(`${this.label}: the stream is not up`);
    if (this.channels.size >= this.maxChannels) throw new Error(`${this.label}: ${this.maxChannels} channels open`);
    if (this.highestId >= 0xffffffff) {
      this.reset('channel ids used up');
      throw new Error(`${this.label}: channel ids used up; the stream was reset`);
    }
    const c = this.addChannel(++this.highestId);
    this.write(encodeBare(MUX_OPEN, c.id));
    return c;
  }

  /** Drops every channel and starts over with a new session: both sides' channels are gone once it is confirmed. */
  reset(reason: string, clearInput = true): void {
    if (this.closed) return;
    this.log(`${this.label}: ${reason}; stream reset, every channel dropped`);
    this.dropAll();
    this.mine = randomBytes(MUX_SESSION_SIZE);
    this.peer = null;
    this.isUp = false;
    if (clearInput) this.decoder.resync();
    this.sendReset();
    this.armResend();
    this.emit('reset', reason);
  }

  /** Drops every channel and stops using the stream (its owner closes it). */
  close(): void {
    this.onStreamClose();
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.decoder.push(chunk);
    // Every turn consumes a frame (or a bad header), so the loop ends with the chunk.
    for (;;) {
      try {
        const m = this.decoder.next();
        if (!m) break;
        this.dispatch(m);
      } catch (e) {
        // Handler bugs land here too: a reset stream is better than a dead isolad. The decoder keeps hunting
        // in the bytes after the bad frame, where the peer's RESET may already be.
        this.reset(e instanceof MuxProtocolError ? `protocol error: ${e.message}` : `internal error: ${(e as Error).stack ?? e}`, false);
      }
      if (this.closed) return;
    }
    if (this.stream.writableLength > MAX_OUTPUT_BACKLOG && !this.stream.isPaused()) this.stream.pause();
  }

  private dispatch(m: MuxMessage): void {
    if (m.type === MUX_RESET) return this.onReset(m.session, m.echo, (m.flags & RESET_FLAG_UP) !== 0);
    // Before the peer confirmed our RESET, everything is from an epoch we already dropped.
    if (!this.isUp) return;
    if (m.type === MUX_OPEN) return this.onOpen(m.channel);
    const c = this.channels.get(m.channel);
    if (!c) {
      // At or below highestId: a channel closed on our side while the peer was still sending. Above: never opened.
      if (m.channel > this.highestId) this.log(`${this.label}: ${muxTypeName(m.type)} for channel ${m.channel}, which was never opened; ignored`);
      return;
    }
    if (m.type === MUX_DATA) {
      if (c.peerEof) return this.dropChannel(c, `DATA after EOF on channel ${c.id}`);
      if (m.length > c.recvOutstanding) return this.dropChannel(c, `channel ${c.id} sent ${m.length} bytes with ${c.recvOutstanding} of window left`);
      c.recvOutstanding -= m.length;
      c.deliver(m.parts);
    } else if (m.type === MUX_WINDOW_ADJUST) {
      if (m.increment > MUX_WINDOW - c.sendCredit) return this.dropChannel(c, `channel ${c.id} granted ${m.increment} bytes, beyond a window of ${MUX_WINDOW}`);
      c.sendCredit += m.increment;
      if (c.pending) this.sendable.add(c);
      this.pump();
    } else if (m.type === MUX_EOF) {
      if (c.peerEof) return this.dropChannel(c, `second EOF on channel ${c.id}`);
      c.peerEnded();
    } else if (m.type === MUX_CLOSE) {
      this.forget(c);
      c.peerGone();
    }
  }

  private onOpen(id: number): void {
    if (this.opts.role === 'open') throw new MuxProtocolError(`OPEN of channel ${id} from the side that does not open channels`);
    if (id <= this.highestId) {
      const c = this.channels.get(id);
      if (c) this.dropChannel(c, `OPEN of channel ${id}, which is open`);
      else this.log(`${this.label}: OPEN of channel ${id}, an id already used (ids only grow); ignored`);
      return;
    }
    this.highestId = id;
    if (this.channels.size >= this.maxChannels) {
      this.log(`${this.label}: ${this.maxChannels} channels open; channel ${id} refused`);
      this.write(encodeBare(MUX_CLOSE, id));
      return;
    }
    this.emit('channel', this.addChannel(id));
  }

  private onReset(session: Buffer, echo: Buffer, peerIsUp: boolean): void {
    if (!this.peer || !session.equals(this.peer)) {
      // The peer started over (restart, or it reset after an error): its channels are gone, so are ours.
      this.dropAll();
      this.peer = session;
      this.isUp = false;
    }
    const confirmed = echo.equals(this.mine);
    if (!this.isUp && confirmed) {
      this.isUp = true;
      if (this.resendTimer) clearInterval(this.resendTimer);
      this.resendTimer = null;
      this.emit('up');
    }
    // The flag tells whether the peer still waits for a RESET that echoes its session.
    if (!confirmed || !peerIsUp) this.sendReset();
  }

  private sendReset(): void {
    this.write(encodeReset(this.mine, this.peer ?? ZERO_SESSION, this.isUp ? RESET_FLAG_UP : 0));
  }

  private armResend(): void {
    if (this.resendTimer) return;
    this.resendTimer = setInterval(() => this.sendReset(), this.opts.resendMs ?? 1000);
    this.resendTimer.unref();
  }

  private addChannel(id: number): MuxChannel {
    const c = new MuxChannel(id, this, this.opts.allowHalfOpen ?? false);
    this.channels.set(id, c);
    return c;
  }

  /** A per-channel violation: that channel only is dropped, on both sides. */
  private dropChannel(c: MuxChannel, reason: string): void {
    this.log(`${this.label}: ${reason}; channel dropped`);
    this.write(encodeBare(MUX_CLOSE, c.id));
    this.forget(c);
    c.detached = true;
    c.destroy();
  }

  private forget(c: MuxChannel): void {
    if (this.channels.get(c.id) === c) this.channels.delete(c.id);
    this.sendable.delete(c);
    this.grants.delete(c);
  }

  private dropAll(): void {
    const all = [...this.channels.values()];
    this.channels.clear();
    this.sendable.clear();
    this.grants.clear();
    this.highestId = 0;
    for (const c of all) {
      c.detached = true;
      c.destroy();
    }
  }

  private onStreamClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.resendTimer) clearInterval(this.resendTimer);
    if (this.grantTimer) clearImmediate(this.grantTimer);
    this.isUp = false;
    this.dropAll();
    this.emit('close');
  }

  private write(b: Buffer): void {
    if (this.closed || this.stream.destroyed || !this.stream.writable) return;
    this.stream.write(b);
  }

  // ChannelLink: what channels ask of us.

  wantGrant(c: MuxChannel): void {
    this.grants.add(c);
    // Grants are batched per turn of the event loop: one WINDOW per channel covers everything read in it.
    this.grantTimer ??= setImmediate(() => this.flushGrants());
  }

  private flushGrants(): void {
    this.grantTimer = null;
    for (const c of this.grants) {
      if (this.channels.get(c.id) !== c || c.peerEof) continue;
      const room = MUX_WINDOW - c.readableLength - c.recvOutstanding;
      // Small grants wait while the peer still has credit: its next DATA makes the channel ask again.
      if (room <= 0 || (room < MUX_WINDOW / 4 && c.recvOutstanding > 0)) continue;
      c.recvOutstanding += room;
      this.write(encodeWindow(c.id, room));
    }
    this.grants.clear();
  }

  wantSend(c: MuxChannel): void {
    if (this.channels.get(c.id) !== c) return c.pending?.done();
    this.sendable.add(c);
    this.pump();
  }

  sendEof(c: MuxChannel): void {
    if (this.channels.get(c.id) === c) this.write(encodeBare(MUX_EOF, c.id));
  }

  released(c: MuxChannel): void {
    if (this.channels.get(c.id) !== c) return;
    this.forget(c);
    if (!c.peerClosed && !c.detached) this.write(encodeBare(MUX_CLOSE, c.id));
  }

  /** Round-robin, one DATA frame per channel per round, while the stream takes more: no channel starves another. */
  private pump(): void {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    try {
      let progressed = true;
      while (progressed && this.sendable.size > 0) {
        progressed = false;
        for (const c of [...this.sendable]) {
          // The stream's own buffer stays small: a channel's bytes wait in the channel, where its credit counts them.
          if (this.stream.writableNeedDrain || this.stream.destroyed) return;
          const p = c.pending;
          if (!p) {
            this.sendable.delete(c);
            continue;
          }
          const n = Math.min(c.sendCredit, MUX_MAX_DATA, p.chunk.length - p.offset);
          if (n === 0) continue; // waits for WINDOW
          const piece = p.chunk.subarray(p.offset, p.offset + n);
          p.offset += n;
          c.sendCredit -= n;
          this.writeData(c.id, piece);
          progressed = true;
          if (p.offset === p.chunk.length) {
            c.pending = null;
            this.sendable.delete(c);
            p.done(); // may queue the channel's next chunk at once
          }
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private writeData(id: number, piece: Buffer): void {
    const header = encodeDataHeader(id, piece.length);
    if (piece.length < 4096) return this.write(Buffer.concat([header, piece]));
    this.stream.cork();
    this.write(header);
    this.write(piece);
    this.stream.uncork();
  }
}
