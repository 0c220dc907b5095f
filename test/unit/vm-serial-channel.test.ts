// The hvm agent channel end to end without QEMU: isolad's SerialAgentChannel <-> stand-in virtio-serial ports <->
// the real isola-vport-bridge <-> guest programs on the bridge's unix sockets.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { Rig, haveBridge, readAll, sleep } from './vm-serial-harness';
import { MUX_OPEN, MUX_WINDOW, encodeBare, encodeDataHeader } from '../../src/qrexec/mux-codec';
import { RawPeer } from './mux-pair';

const skip = haveBridge ? false : 'dist/qube/isola-vport-bridge not built (bash scripts/build.sh)';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function withRig(fn: (r: Rig) => Promise<void>, opts: { bridge?: boolean } = {}): Promise<void> {
  const r = new Rig();
  try {
    await r.start(opts);
    await fn(r);
  } finally {
    await r.close();
  }
}

test('a connection to the guest agent socket reaches accept() as agent, one to the client socket as client', { skip }, () =>
  withRig(async (r) => {
    const a = await r.guestConnect('agent');
    const got = await r.host.next(0);
    assert.equal(got.from, 'agent');
    const c = await r.guestConnect('client');
    const got2 = await r.host.next(1);
    assert.equal(got2.from, 'client');
    a.write('from agent');
    got2.conn.write('to client');
    const [d1] = (await once(got.conn, 'data')) as [Buffer];
    const [d2] = (await once(c, 'data')) as [Buffer];
    assert.equal(d1.toString(), 'from agent');
    assert.equal(d2.toString(), 'to client');
    a.destroy();
    c.destroy();
  }));

test('1 MiB of random bytes goes each way at once, exactly, and EOF ends both sides', { skip }, () =>
  withRig(async (r) => {
    const up = randomBytes(1 << 20), down = randomBytes(1 << 20);
    const g = await r.guestConnect('agent');
    const { conn } = await r.host.next(0);
    const [hostGot, guestGot] = await Promise.all([readAll(conn), readAll(g), (g.end(up), conn.end(down))]);
    assert.equal(sha(hostGot), sha(up));
    assert.equal(sha(guestGot), sha(down));
  }));

test('200 concurrent channels over both ports each echo their own bytes', { skip }, () =>
  withRig(async (r) => {
    const n = 200;
    let accepted = 0;
    const echoAll = setInterval(() => {
      for (; accepted < r.host.accepted.length; accepted++) {
        const c = r.host.accepted[accepted].conn;
        c.pipe(c);
      }
    }, 5);
    try {
      const runs = Array.from({ length: n }, async (_, i) => {
        const s = await r.guestConnect(i % 4 === 0 ? 'client' : 'agent');
        const data = randomBytes(20000 + i * 97);
        const back = readAll(s);
        s.end(data);
        assert.equal(sha(await back), sha(data), `channel ${i}`);
      });
      await Promise.all(runs);
    } finally {
      clearInterval(echoAll);
    }
    assert.equal(r.host.accepted.length, n);
    assert.equal(r.host.accepted.filter((a) => a.from === 'client').length, n / 4);
    await sleep(100);
    assert.equal(r.host.channel.channelCount, 0, 'every channel closed on the host');
  }));

test('a host that reconnects (isolad restarted) drops the bridge\'s channels, and new ones reach the new host', { skip }, () =>
  withRig(async (r) => {
    const g = await r.guestConnect('agent');
    await r.host.next(0);
    const closed = once(g, 'close');
    await r.restartHost();
    await Promise.race([closed, sleep(3000).then(() => assert.fail('the guest connection stayed open'))]);
    await r.host.waitUp();
    const g2 = await r.guestConnect('agent');
    const { conn, from } = await r.host.next(0);
    assert.equal(from, 'agent');
    g2.write('again');
    const [d] = (await once(conn, 'data')) as [Buffer];
    assert.equal(d.toString(), 'again');
    g2.destroy();
    assert.ok(r.bridgeLog.some((l) => /hung up/.test(l)), r.bridgeLog.join('\n'));
  }));

test('a host that does not read makes the bridge hold no more than the windows (its RSS stays flat)', { skip }, () =>
  withRig(async (r) => {
    const before = r.bridgeRssKiB();
    const guests = await Promise.all([0, 1, 2, 3].map(() => r.guestConnect('agent')));
    const accepted = await Promise.all([0, 1, 2, 3].map((i) => r.host.next(i)));
    for (const a of accepted) a.conn.pause();
    const chunk = Buffer.alloc(1 << 20, 7);
    let written = 0;
    for (const g of guests) {
      for (let i = 0; i < 16; i++) if (g.write(chunk)) written += chunk.length;
    }
    await sleep(1500);
    const after = r.bridgeRssKiB();
    // Each channel: at most a window in the host's channel; the rest waits in the guest's own socket buffers.
    for (const a of accepted) assert.ok(a.conn.readableLength <= MUX_WINDOW, `host holds ${a.conn.readableLength}`);
    assert.ok(after - before < 2048, `bridge RSS grew from ${before} to ${after} KiB`);
    // Reading resumes the flow: everything arrives.
    const totals = await Promise.all(accepted.map(async (a, i) => {
      guests[i].end();
      return (await readAll(a.conn)).length;
    }));
    assert.deepEqual(totals, [16 << 20, 16 << 20, 16 << 20, 16 << 20]);
    assert.ok(written >= 0);
  }));

test('a guest that never reads stalls only its own channel', { skip }, () =>
  withRig(async (r) => {
    const stuck = await r.guestConnect('agent');
    stuck.pause();
    const a = await r.host.next(0);
    const big = Buffer.alloc(8 << 20, 1);
    a.conn.write(big); // far beyond what the bridge and the socket take
    await sleep(300);
    const rssStuck = r.bridgeRssKiB();
    const other = await r.guestConnect('agent');
    const b = await r.host.next(1);
    const data = randomBytes(4 << 20);
    const got = readAll(other);
    b.conn.end(data);
    assert.equal(sha(await got), sha(data));
    assert.ok(r.bridgeRssKiB() - rssStuck < 2048, 'bridge RSS bounded while one channel is stuck');
    assert.ok(a.conn.writableLength > 0, 'the stuck channel still waits for credit');
    a.conn.resume(); // as FramedSocket reads: the channel's end is seen once its readable side is read
    stuck.destroy();
    await Promise.race([once(a.conn, 'close'), sleep(3000).then(() => assert.fail('stuck channel not closed on host'))]);
  }));

test('a guest that writes garbage to its serial port cannot take isolad down', { skip }, () =>
  withRig(async (r) => {
    // The guest's side of the agent port, driven by hand: random bytes, a huge DATA header, an OPEN flood.
    const raw = net.createConnection(r.agentPort.guestPath);
    await once(raw, 'connect');
    await sleep(50);
    raw.write(randomBytes(1 << 20));
    const peer = new RawPeer(raw);
    await peer.handshake();
    const flood: Buffer[] = [];
    for (let id = 1; id <= 5000; id++) flood.push(encodeBare(MUX_OPEN, id));
    raw.write(Buffer.concat(flood));
    const huge = encodeDataHeader(7, 1);
    huge.writeUInt32LE(0xffffffff, 8);
    raw.write(huge);
    raw.write(randomBytes(256 * 1024));
    await sleep(300);
    assert.ok(r.host.accepted.every((a) => a.from === 'agent'), 'nothing from the agent port arrived as client');
    for (const a of r.host.accepted) a.conn.destroy();
    raw.destroy();
    const logCount = r.host.logs.length;
    // The real bridge takes the port over: after its RESET the stream works again.
    r.host.accepted.length = 0;
    await r.startBridge();
    const g = await r.guestConnect('agent');
    const { conn, from } = await r.host.next(0);
    assert.equal(from, 'agent');
    g.write('still here');
    const [d] = (await once(conn, 'data')) as [Buffer];
    assert.equal(d.toString(), 'still here');
    assert.ok(logCount < 40, `log lines rate-limited: ${logCount}\n${r.host.logs.slice(0, 30).join('\n')}`);
    g.destroy();
  }, { bridge: false }));

test('a guest cannot pass as the client endpoint through the agent port', { skip }, () =>
  withRig(async (r) => {
    // A guest program that speaks a client's HELLO on the agent socket still arrives as agent: the port decides.
    const g = await r.guestConnect('agent');
    const hello = Buffer.alloc(8 + 16);
    hello.writeUInt32LE(0x300, 0);
    hello.writeUInt32LE(16, 4);
    hello.write('ISOLAQRX', 8, 'latin1');
    hello.writeUInt32LE(1, 16);
    hello.writeUInt32LE(0x4, 20);
    g.write(hello);
    const { from, conn } = await r.host.next(0);
    assert.equal(from, 'agent');
    const [d] = (await once(conn, 'data')) as [Buffer];
    assert.ok(d.equals(hello));
    g.destroy();
  }));
