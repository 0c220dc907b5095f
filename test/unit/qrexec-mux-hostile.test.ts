// A hostile agent on the serial port: whatever it sends, isolad's Mux drops only the offending channel (or, for
// what cannot be resynchronised, resets the stream), holds bounded memory, and nothing throws out of the loop.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { Mux, type MuxChannel } from '../../src/qrexec/mux';
import {
  MUX_CLOSE, MUX_DATA, MUX_MAX_CHANNELS, MUX_OPEN, MUX_RESET, MUX_WINDOW, RESET_FLAG_UP, encodeBare, encodeDataHeader, encodeMuxHeader,
  encodeReset, encodeWindow,
} from '../../src/qrexec/mux-codec';
import { RawPeer, socketPair, tick } from './mux-pair';

interface Victim { mux: Mux; peer: RawPeer; channels: MuxChannel[]; logs: string[]; close: () => void }

/** isolad's Mux on one end of a unix socket; the test drives the other end byte by byte. */
async function victim(): Promise<Victim> {
  const s = await socketPair();
  const logs: string[] = [];
  const mux = new Mux(s.b, { role: 'accept', label: 'qube evil: serial', log: (l) => logs.push(l) });
  const channels: MuxChannel[] = [];
  mux.on('channel', (c) => (channels.push(c), c.on('error', () => undefined)));
  const peer = new RawPeer(s.a);
  await peer.handshake();
  await tick();
  assert.ok(mux.up);
  return { mux, peer, channels, logs, close: () => (mux.close(), s.close()) };
}

const T = { timeout: 10_000 };
const data = (ch: number, n: number) => Buffer.concat([encodeDataHeader(ch, n), Buffer.alloc(n, 0x41)]);

/** The stream still works: a new channel is accepted and carries bytes. */
async function stillServes(v: Victim, id: number): Promise<void> {
  const before = v.channels.length;
  v.peer.socket.write(Buffer.concat([encodeBare(MUX_OPEN, id), data(id, 5)]));
  for (let i = 0; i < 100 && v.channels.length === before; i++) await tick(10);
  const c = v.channels[v.channels.length - 1];
  assert.equal(c.id, id);
  const [chunk] = await once(c, 'data');
  assert.equal(chunk.toString(), 'AAAAA');
}

describe('Mux against a hostile peer', () => {
  it('drops a channel that sends beyond its window, and only that channel (mux-window-overrun)', T, async () => {
    const v = await victim();
    try {
      v.peer.socket.write(Buffer.concat([encodeBare(MUX_OPEN, 1), encodeBare(MUX_OPEN, 2)]));
      await tick();
      const [one, two] = v.channels;
      one.pause();
      const frames: Buffer[] = [];
      for (let sent = 0; sent < MUX_WINDOW; sent += 65536) frames.push(data(1, 65536));
      frames.push(data(1, 1)); // one byte past the window
      const mark = v.peer.messages.length;
      v.peer.socket.write(Buffer.concat(frames));
      const close = await v.peer.waitFor((m) => m.type === MUX_CLOSE, 3000, mark);
      assert.equal(close.channel, 1);
      assert.ok(one.destroyed);
      assert.match(v.logs.join('\n'), /channel 1 sent 1 bytes with 0 of window left; channel dropped/);
      assert.ok(!two.destroyed, 'the other channel lives');
      v.peer.socket.write(data(2, 5));
      assert.equal((await once(two, 'data'))[0].toString(), 'AAAAA');
      assert.ok(v.mux.up);
    } finally {
      v.close();
    }
  });

  it('drops a channel whose peer grants more than a window (mux-window-inflation)', T, async () => {
    const v = await victim();
    try {
      v.peer.socket.write(Buffer.concat([encodeBare(MUX_OPEN, 1), encodeWindow(1, 0xffffffff)]));
      const close = await v.peer.waitFor((m) => m.type === MUX_CLOSE);
      assert.equal(close.channel, 1);
      await stillServes(v, 2);
    } finally {
      v.close();
    }
  });

  it('resets the whole stream on a frame larger than 64 KiB, judged from its header (mux-oversized-frame)', T, async () => {
    const v = await victim();
    try {
      v.peer.socket.write(encodeBare(MUX_OPEN, 1));
      await tick();
      const mark = v.peer.messages.length;
      v.peer.socket.write(encodeMuxHeader(MUX_DATA, 1, 0xffffffff)); // and no payload: nothing is awaited for it
      const r = await v.peer.waitFor((m) => m.type === MUX_RESET, 3000, mark);
      assert.ok(r.type === MUX_RESET && !r.echo.equals(v.peer.session), 'a fresh RESET that no longer knows our session');
      assert.ok(v.channels[0].destroyed);
      assert.equal(v.mux.up, false);
      assert.ok(v.mux.bufferedBytes() < 100);
      assert.match(v.logs.join('\n'), /DATA with 4294967295 bytes \(expected 1\.\.65536\); stream reset/);
      await v.peer.handshake(); // the peer may start over
      await tick();
      assert.ok(v.mux.up);
      await stillServes(v, 1);
    } finally {
      v.close();
    }
  });

  it('resets the stream on an unknown type, and ignores garbage until the next RESET (mux-malformed-header)', T, async () => {
    const v = await victim();
    try {
      const mark = v.peer.messages.length;
      v.peer.socket.write(encodeMuxHeader(0x77, 1, 0));
      await v.peer.waitFor((m) => m.type === MUX_RESET, 3000, mark);
      // While it hunts for a RESET, random bytes (even ones that parse as frames) are dropped.
      v.peer.socket.write(Buffer.concat([randomBytes(100_000), encodeBare(MUX_OPEN, 1)]));
      await tick(50);
      assert.equal(v.channels.length, 0);
      await v.peer.handshake();
      await tick();
      await stillServes(v, 1);
    } finally {
      v.close();
    }
  });

  it('finds the peer\'s RESET right behind a malformed frame, without waiting for a resend (mux-malformed-header)', T, async () => {
    const v = await victim();
    try {
      const fresh = randomBytes(16);
      const mark = v.peer.messages.length;
      v.peer.socket.write(Buffer.concat([encodeMuxHeader(0x77, 1, 0), randomBytes(33), encodeReset(fresh, null)]));
      const answer = await v.peer.waitFor((m) => m.type === MUX_RESET && m.echo.equals(fresh), 500, mark);
      assert.ok(answer.type === MUX_RESET);
      v.peer.socket.write(encodeReset(fresh, answer.session, RESET_FLAG_UP));
      await tick();
      assert.ok(v.mux.up);
    } finally {
      v.close();
    }
  });

  it('ignores frames for a channel that was never opened, with a log line, and stays up (mux-unknown-channel)', T, async () => {
    const v = await victim();
    try {
      v.peer.socket.write(Buffer.concat([data(99, 10), encodeWindow(98, 5), encodeBare(MUX_CLOSE, 97)]));
      await tick(50);
      assert.equal(v.channels.length, 0);
      assert.ok(v.mux.up);
      assert.match(v.logs.join('\n'), /DATA for channel 99, which was never opened; ignored/);
      await stillServes(v, 100);
    } finally {
      v.close();
    }
  });

  it('drops a channel opened twice, and refuses a reused id (mux-double-open)', T, async () => {
    const v = await victim();
    try {
      v.peer.socket.write(Buffer.concat([encodeBare(MUX_OPEN, 5), encodeBare(MUX_OPEN, 5), encodeBare(MUX_OPEN, 3)]));
      const close = await v.peer.waitFor((m) => m.type === MUX_CLOSE);
      assert.equal(close.channel, 5);
      await tick(50);
      assert.equal(v.channels.length, 1, 'id 3 is below the highest id used: no channel');
      assert.ok(v.channels[0].destroyed);
      await stillServes(v, 6);
    } finally {
      v.close();
    }
  });

  it('refuses opens beyond the channel cap and keeps its output bounded when the peer never reads (mux-open-flood)', T, async () => {
    const v = await victim();
    try {
      v.peer.socket.pause(); // the flooder reads none of the refusals
      const N = 200_000;
      const opens = Buffer.alloc(N * 12);
      for (let i = 0; i < N; i++) encodeBare(MUX_OPEN, i + 1).copy(opens, i * 12);
      v.peer.socket.write(opens);
      let maxBacklog = 0;
      for (let i = 0; i < 100; i++) {
        await tick(10);
        maxBacklog = Math.max(maxBacklog, (v.mux as unknown as { stream: { writableLength: number } }).stream.writableLength);
      }
      assert.equal(v.channels.length, MUX_MAX_CHANNELS, 'exactly the cap was accepted');
      assert.equal(v.mux.channelCount, MUX_MAX_CHANNELS);
      assert.ok(maxBacklog < 1024 * 1024 + 128 * 1024, `unsent refusals stay bounded (${maxBacklog} bytes)`);
      assert.ok(v.mux.bufferedBytes() < 128 * 1024);
      v.peer.socket.resume(); // once it reads, the rest of its flood is refused too, and the stream still works
      const last = await v.peer.waitFor((m) => m.type === MUX_CLOSE && m.channel === N, 8000);
      assert.equal(last.channel, N);
      for (const c of v.channels.slice(0, 10)) c.destroy();
      await tick(50);
      await stillServes(v, N + 1);
    } finally {
      v.close();
    }
  });

  it('answers a flood of RESETs one for one and keeps nothing (mux-reset-flood)', T, async () => {
    const v = await victim();
    try {
      const resets = Buffer.concat(Array.from({ length: 2000 }, () => encodeReset(randomBytes(16), null)));
      v.peer.socket.write(resets);
      await tick(200);
      assert.equal(v.mux.channelCount, 0);
      assert.ok(v.mux.bufferedBytes() < 100);
      await v.peer.handshake();
      await tick();
      await stillServes(v, 1);
    } finally {
      v.close();
    }
  });
});
