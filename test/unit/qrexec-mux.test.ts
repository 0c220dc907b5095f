// The channel layer for one byte stream: v1 connections run over its channels unchanged, one stalled channel
// never holds up another, EOF and close pass each way, and a reset (or a restarted isolad) drops every channel.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { Duplex, PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { FramedSocket } from '../../src/qrexec/frame-reader';
import { ExecSession } from '../../src/qrexec/client';
import { Mux, type MuxChannel } from '../../src/qrexec/mux';
import { MUX_WINDOW } from '../../src/qrexec/mux-codec';
import {
  AGENT_TO_DAEMON_DATA, DAEMON_TO_AGENT_DATA, HELLO_FLAG_DATA, MSG_DATA_EXIT_CODE, MSG_DATA_STDIN, MSG_DATA_STDOUT,
  encodeU32,
} from '../../src/qrexec/protocol';
import { muxPair, tick, upOf } from './mux-pair';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function nextChannel(m: Mux): Promise<MuxChannel> {
  return new Promise((r) => m.once('channel', r));
}

/** The next n channels the peer opens (several OPENs may arrive in one read, so one listener takes them all). */
function nextChannels(m: Mux, n: number): Promise<MuxChannel[]> {
  const got: MuxChannel[] = [];
  return new Promise((resolve) => {
    const on = (c: MuxChannel) => {
      got.push(c);
      if (got.length === n) (m.off('channel', on), resolve(got));
    };
    m.on('channel', on);
  });
}

/** Reads a stream to its end without destroying it (as for-await would). */
function readAll(s: Duplex): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (c: Buffer) => parts.push(c));
  return new Promise((resolve, reject) => {
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('close', () => (s.readableEnded ? undefined : reject(new Error('closed before its end'))));
  });
}

const closed = (s: Duplex) => (s.closed ? Promise.resolve() : once(s, 'close').then(() => undefined));

describe('Mux channels', () => {
  it('carries v1 data connections (HELLO, DATA frames, exit code) on many channels at once', { timeout: 10_000 }, async () => {
    const p = await muxPair();
    try {
      const N = 40;
      const results: Promise<void>[] = [];
      const accepted: MuxChannel[] = [];
      p.isolad.on('channel', (c) => accepted.push(c));
      for (let i = 0; i < N; i++) {
        const out = randomBytes(50_000 + i * 3_000);
        const input = randomBytes(20_000 + i * 1_000);
        const ch = p.agent.open();
        const agentSide = new FramedSocket(ch, { label: `agent ${i}`, log: () => undefined, accept: DAEMON_TO_AGENT_DATA, hello: { flags: HELLO_FLAG_DATA } });
        const got: Buffer[] = [];
        agentSide.onFrame = (f) => {
          if (f.type === MSG_DATA_STDIN && f.payload.length) got.push(Buffer.from(f.payload));
          else if (f.type === MSG_DATA_STDIN) {
            agentSide.sendData(MSG_DATA_STDOUT, out);
            agentSide.send(MSG_DATA_STDOUT);
            agentSide.send(MSG_DATA_EXIT_CODE, encodeU32(i % 256));
            agentSide.end();
          }
        };
        results.push(new Promise<void>((resolve, reject) => {
          const wait = () => {
            const c = accepted.shift();
            if (!c) return setImmediate(wait);
            const d = new FramedSocket(c, { label: `isolad ${i}`, log: () => undefined, accept: AGENT_TO_DAEMON_DATA, hello: { flags: 0 } });
            const stdout: Buffer[] = [];
            let code = -1;
            d.onHello = () => (d.sendData(MSG_DATA_STDIN, input), d.send(MSG_DATA_STDIN));
            d.onFrame = (f) => (f.type === MSG_DATA_STDOUT ? stdout.push(Buffer.from(f.payload)) : f.type === MSG_DATA_EXIT_CODE && (code = f.payload.readUInt32LE(0)));
            d.onClose = (reason) => {
              try {
                assert.equal(reason, null);
                assert.equal(sha(Buffer.concat(stdout)), sha(out));
                assert.equal(sha(Buffer.concat(got)), sha(input));
                assert.equal(code, i % 256);
                resolve();
              } catch (e) {
                reject(e);
              }
            };
          };
          wait();
        }));
      }
      await Promise.all(results);
      await tick(50);
      assert.equal(p.isolad.channelCount, 0, 'every finished channel is forgotten on the accepting side');
      assert.equal(p.agent.channelCount, 0, 'and on the opening side');
      assert.deepEqual(p.logs, []);
    } finally {
      p.close();
    }
  });

  it('runs isolad\'s ExecSession over a channel: a slow stdout reader stalls the agent\'s sender, not the stream', { timeout: 10_000 }, async () => {
    const p = await muxPair();
    try {
      const out = randomBytes(4 * 1024 * 1024);
      const input = randomBytes(300_000);
      const agentSide = new FramedSocket(p.agent.open(), { label: 'agent', log: () => undefined, accept: DAEMON_TO_AGENT_DATA, hello: { flags: HELLO_FLAG_DATA } });
      const stdinGot: Buffer[] = [];
      let sentOut = false;
      const sendOutput = (off: number): void => {
        for (; off < out.length; off += 65536) {
          if (!agentSide.sendData(MSG_DATA_STDOUT, out.subarray(off, off + 65536))) return agentSide.onceDrain(() => sendOutput(off + 65536));
        }
        agentSide.send(MSG_DATA_STDOUT);
        agentSide.send(MSG_DATA_EXIT_CODE, encodeU32(3));
        agentSide.end();
      };
      agentSide.onFrame = (f) => {
        if (f.payload.length) return void stdinGot.push(Buffer.from(f.payload));
        if (!sentOut) (sentOut = true), sendOutput(0);
      };
      const ch = await nextChannel(p.isolad);
      const session = await new Promise<ExecSession>((resolve) => {
        const fs = new FramedSocket(ch, { label: 'isolad', log: () => undefined, accept: AGENT_TO_DAEMON_DATA, hello: { flags: 0 } });
        fs.onHello = () => (fs.pause(), resolve(new ExecSession(1, fs, () => undefined, 'test')));
      });
      session.stdin.end(input);
      await tick(300); // nobody reads stdout yet
      const held = p.isolad.bufferedBytes() + session.stdout.readableLength;
      assert.ok(held <= MUX_WINDOW + 2 * 65548, `isolad holds ${held} bytes for a reader that does not read`);
      assert.equal((agentSide.socket as MuxChannel).sendCredit, 0, 'the agent\'s sender waits for window');
      const stdout = readAll(session.stdout as unknown as Duplex);
      assert.equal(await session.exit, 3);
      assert.equal(sha(await stdout), sha(out));
      assert.equal(sha(Buffer.concat(stdinGot)), sha(input));
    } finally {
      p.close();
    }
  });

  it('a channel whose reader stalls at its window does not delay another channel', { timeout: 10_000 }, async () => {
    const p = await muxPair();
    try {
      const aSend = p.agent.open();
      const aRecv = await nextChannel(p.isolad);
      aRecv.pause(); // isolad's consumer of A reads nothing
      // Twice the window, whatever write() says: the rest waits in A's own writable buffer.
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let said = true;
      for (let n = 0; n < (2 * MUX_WINDOW) / chunk.length; n++) said = aSend.write(chunk);
      assert.equal(said, false, 'write() asks the writer to wait');
      await tick(100);
      assert.equal(aSend.sendCredit, 0, 'A has used its whole window');
      assert.ok(aRecv.readableLength <= MUX_WINDOW, `A holds ${aRecv.readableLength} bytes on the receiving side, at most its window`);

      const bSend = p.agent.open();
      const bRecv = await nextChannel(p.isolad);
      const payload = randomBytes(8 * 1024 * 1024);
      const got = readAll(bRecv);
      bSend.end(payload);
      const t0 = Date.now();
      assert.equal(sha(await got), sha(payload), 'B carried all its bytes while A stalled');
      assert.ok(Date.now() - t0 < 5000);
      assert.ok(aRecv.readableLength <= MUX_WINDOW, 'A still holds no more than its window');

      // A flows again once its reader reads.
      const aDrained = once(aSend, 'drain');
      aRecv.resume();
      await aDrained;
    } finally {
      p.close();
    }
  });

  it('passes EOF each way; a channel closes once both sides ended, and is forgotten on both', { timeout: 10_000 }, async () => {
    const p = await muxPair();
    try {
      const a = p.agent.open();
      const i = await nextChannel(p.isolad);
      a.write('to isolad');
      a.end();
      assert.equal((await readAll(i)).toString(), 'to isolad');
      // isolad's side may still write after the agent's EOF only with allowHalfOpen; by default it ends too, like net.Socket.
      const agentGot = readAll(a);
      await Promise.all([closed(a), closed(i)]);
      assert.equal((await agentGot).length, 0);
      await tick();
      assert.equal(p.agent.channelCount + p.isolad.channelCount, 0);
    } finally {
      p.close();
    }
  });

  it('with allowHalfOpen, the side that got EOF keeps writing until it ends', { timeout: 10_000 }, async () => {
    const p = await muxPair({ allowHalfOpen: true });
    try {
      const a = p.agent.open();
      const i = await nextChannel(p.isolad);
      a.end('request');
      assert.equal((await readAll(i)).toString(), 'request');
      const reply = randomBytes(600_000);
      i.end(reply);
      assert.equal(sha(await readAll(a)), sha(reply));
      await Promise.all([closed(a), closed(i)]);
    } finally {
      p.close();
    }
  });

  it('destroying a channel closes it on the other side after what was already sent', { timeout: 10_000 }, async () => {
    const p = await muxPair();
    try {
      const a = p.agent.open();
      const i = await nextChannel(p.isolad);
      i.pause();
      a.write('last words');
      await tick(50);
      a.destroy();
      await tick(50);
      i.resume();
      assert.equal((await readAll(i)).toString(), 'last words');
      await closed(i);
      assert.ok(i.destroyed);
      // And the other way: isolad drops a channel; the agent's side ends and writes go nowhere.
      const a2 = p.agent.open();
      const i2 = await nextChannel(p.isolad);
      i2.destroy();
      a2.resume();
      await once(a2, 'end');
      a2.write('into the void');
      await tick(50);
      assert.deepEqual(p.logs, []);
    } finally {
      p.close();
    }
  });

  it('a reset drops every channel on both sides, then the stream comes up again and carries new channels', { timeout: 10_000 }, async () => {
    const p = await muxPair();
    try {
      const accepting = nextChannels(p.isolad, 3);
      const opened = [p.agent.open(), p.agent.open(), p.agent.open()];
      const acceptedSide = await accepting;
      const closes = [...opened, ...acceptedSide].map((c) => once(c, 'close'));
      p.isolad.reset('a test asked for it');
      await Promise.all(closes);
      await Promise.all([upOf(p.agent), upOf(p.isolad)]);
      assert.equal(p.agent.channelCount + p.isolad.channelCount, 0);
      const c = p.agent.open();
      assert.equal(c.id, 1, 'ids start over with the new session');
      const i = await nextChannel(p.isolad);
      c.end('after the reset');
      assert.equal((await readAll(i)).toString(), 'after the reset');
      assert.equal(p.logs.length, 1);
      assert.match(p.logs[0], /isolad: a test asked for it; stream reset, every channel dropped/);
    } finally {
      p.close();
    }
  });

  it('a restarted isolad on the same port (cut mid-frame) gets the agent\'s control channel again', { timeout: 10_000 }, async () => {
    // The serial port stays open while isolad restarts: the agent's end is one long-lived stream, isolad's
    // end is replaced, and the old isolad's last frame is cut short.
    const toAgent = new PassThrough();
    let hostSink: (b: Buffer) => void = () => undefined;
    const port = new Duplex({ read() {}, write(c, _e, cb) { hostSink(c); cb(); } });
    toAgent.on('data', (c) => port.push(c));
    const agent = new Mux(port, { role: 'open', label: 'agent', resendMs: 50 });
    let controls = 0;
    agent.on('up', () => (controls++, agent.open().write('control\n')));
    // The agent learns from the port's hangup that the host went away, as virtio-serial reports it.
    const connectHost = (): Mux => {
      const host = new Duplex({ read() {}, write(c, _e, cb) { toAgent.write(c); cb(); } });
      hostSink = (b) => host.push(b);
      return new Mux(host, { role: 'accept', label: 'isolad', resendMs: 50 });
    };
    const first = connectHost();
    const firstChannel = nextChannel(first);
    const old = await firstChannel;
    assert.equal((await once(old, 'data'))[0].toString(), 'control\n');
    const oldClosed = once(old, 'close');
    // The old isolad dies after half a DATA frame's header.
    toAgent.write(Buffer.from([3, 0, 0, 0, 1, 0]));
    first.close();
    hostSink = () => undefined;
    agent.reset('the host closed the port');
    await oldClosed;
    const second = connectHost();
    const ch = await nextChannel(second);
    assert.equal((await once(ch, 'data'))[0].toString(), 'control\n');
    assert.equal(controls, 2);
    agent.close();
    second.close();
  });
});
