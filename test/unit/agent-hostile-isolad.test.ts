// The compiled agent against a hostile "isolad": truncated, oversized and out-of-order frames, bad
// exec_params and floods on its control and data connections. Each attack costs the agent that one
// connection: it logs, reconnects, stays small, and then still runs commands for the real isolad.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import {
  AgentListener, HELLO_FLAG_CONTROL, HELLO_FLAG_DATA, MSG_DATA_CONNECT, MSG_DATA_STDIN, MSG_EXEC_CMDLINE, MSG_HELLO, MSG_PING,
  encodeExecParams, encodeFrame, encodeHello, encodeU32,
} from '../../src/qrexec';
import { AgentUnderTest, haveAgent } from './c-agent';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const HELLO = encodeFrame(MSG_HELLO, encodeHello(0, 'hostile isolad'));

function execFrame(cmdline: string, id = 7, domain = 0): Buffer {
  return encodeFrame(MSG_EXEC_CMDLINE, encodeExecParams({ connectDomain: domain, connectPort: id, cmdline }));
}

function rawExec(payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(MSG_EXEC_CMDLINE, 0);
  h.writeUInt32LE(payload.length, 4);
  return Buffer.concat([h, payload]);
}

interface Peer { sock: Socket; flags: number; data: Buffer[]; closed: Promise<void> }

/** A fake isolad that hands each new connection to the test (flags from the agent's HELLO). */
class HostileIsolad {
  private server!: Server;
  private waiting: ((p: Peer) => void)[] = [];
  private queue: Peer[] = [];

  constructor(private readonly socketPath: string) {}

  listen(): Promise<void> {
    this.server = createServer((sock) => {
      const data: Buffer[] = [];
      const closed = new Promise<void>((r) => sock.once('close', () => r()));
      sock.on('error', () => {});
      let announced = false;
      sock.on('data', (d: Buffer) => {
        data.push(d);
        const all = Buffer.concat(data);
        if (announced || all.length < 24) return;
        announced = true;
        const peer = { sock, flags: all.readUInt32LE(8 + 12), data, closed };
        const w = this.waiting.shift();
        if (w) w(peer);
        else this.queue.push(peer);
      });
    });
    return new Promise((r) => this.server.listen(this.socketPath, () => r()));
  }

  next(timeoutMs = 3000): Promise<Peer> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the agent did not (re)connect')), timeoutMs);
      this.waiting.push((p) => (clearTimeout(t), resolve(p)));
    });
  }

  async control(): Promise<Peer> {
    for (;;) {
      const p = await this.next();
      if (p.flags === HELLO_FLAG_CONTROL) return p;
    }
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

describe('the agent against a hostile isolad', { skip: !haveAgent && 'build the agent first (scripts/build.sh)', timeout: 120_000 }, () => {
  // A fresh agent per attack: its log is rate-limited (a burst of 20 lines), and each test reads it.
  let agent: AgentUnderTest;
  let isolad: HostileIsolad;
  let marker: string;

  beforeEach(async () => {
    agent = new AgentUnderTest();
    marker = path.join(agent.dir, 'ran');
    isolad = new HostileIsolad(agent.socketPath);
    await isolad.listen();
    await agent.start({}, {}, false);
  });
  afterEach(async () => {
    await isolad.close().catch(() => {});
    await agent.stop();
  });

  /** One attack on a fresh control connection: it must be dropped, logged, and the agent must come back. */
  async function dropsControl(attack: (p: Peer) => void, log: RegExp): Promise<void> {
    const p = await isolad.control();
    attack(p);
    await p.closed;
    await isolad.control().then((again) => again.sock.destroy());
    assert.ok(agent.logs.some((l) => log.test(l)), `no log line like ${log}:\n${agent.logs.join('\n')}`);
  }

  test('drops a control frame that claims 4 GiB, from the header alone (agent-oversized-frame)', async () => {
    const h = Buffer.alloc(8);
    h.writeUInt32LE(MSG_EXEC_CMDLINE, 0);
    h.writeUInt32LE(0xffffffff, 4);
    await dropsControl((p) => p.sock.write(Buffer.concat([HELLO, h])), /control: protocol error: MSG_EXEC_CMDLINE \(0x200\) claims 4294967295 bytes, more than 65536; connection dropped/);
  });

  test('drops a connection that ends inside a frame (agent-truncated-frame)', async () => {
    const exec = execFrame(`root:touch ${marker}`);
    await dropsControl((p) => p.sock.end(Buffer.concat([HELLO, exec.subarray(0, exec.length - 3)])), /connection closed inside the payload of MSG_EXEC_CMDLINE/);
    await dropsControl((p) => p.sock.end(Buffer.concat([HELLO, exec.subarray(0, 5)])), /inside a frame header \(5 of 8 bytes\)/);
    assert.equal(existsSync(marker), false, 'a cut-off request ran');
  });

  test('drops frames before HELLO and a second HELLO (agent-frame-before-hello)', async () => {
    await dropsControl((p) => p.sock.write(execFrame(`root:touch ${marker}`)), /MSG_EXEC_CMDLINE \(0x200\) is not allowed here/);
    await dropsControl((p) => p.sock.write(Buffer.concat([HELLO, HELLO])), /MSG_HELLO \(0x300\) is not allowed here/);
    const badMagic = encodeFrame(MSG_HELLO, Buffer.concat([Buffer.from('NOTQUBES'), encodeHello(0).subarray(8)]));
    await dropsControl((p) => p.sock.write(badMagic), /bad magic in HELLO/);
    assert.equal(existsSync(marker), false);
  });

  test('drops types that are not the control state\'s, and lengths outside a type\'s bounds (agent-wrong-type)', async () => {
    await dropsControl((p) => p.sock.write(Buffer.concat([HELLO, encodeFrame(MSG_DATA_STDIN, Buffer.from('x'))])), /MSG_DATA_STDIN \(0x190\) is not allowed here/);
    await dropsControl((p) => p.sock.write(Buffer.concat([HELLO, encodeFrame(0x7777, Buffer.alloc(0))])), /unknown type 0x7777 is not allowed here/);
    await dropsControl((p) => p.sock.write(Buffer.concat([HELLO, encodeFrame(MSG_PING, Buffer.alloc(65))])), /MSG_PING \(0x402\) with 65 bytes \(expected 0\.\.64\)/);
  });

  test('drops malformed exec_params and runs none of them (agent-bad-exec-params)', async () => {
    const cases: [Buffer, RegExp][] = [
      [execFrame(`root:touch ${marker}`, 7, 1), /connect_domain 1 \(only 0, isolad, is valid\)/],
      [rawExec(Buffer.concat([Buffer.alloc(8), Buffer.from(`root:touch ${marker}`)])), /not NUL-terminated/],
      [rawExec(Buffer.concat([Buffer.alloc(8), Buffer.from(`root:touch ${marker}\0x\0`)])), /contains a NUL byte/],
      [rawExec(Buffer.concat([Buffer.alloc(8), Buffer.from(`root:touch ${marker}\xff`, 'latin1'), Buffer.alloc(1)])), /not valid UTF-8/],
      [execFrame(`ro ot:touch ${marker}`), /is not a valid user name/],
      [execFrame(`touch ${marker}`), /is not a valid user name|no USER: prefix/],
      [execFrame('root:nogui:'), /empty command/],
    ];
    for (const [frame, log] of cases) await dropsControl((p) => p.sock.write(Buffer.concat([HELLO, frame])), log);
    await sleep(200);
    assert.equal(existsSync(marker), false, 'a malformed request ran');
  });

  test('stays small under a PING flood whose answers nobody reads (agent-ping-flood)', async () => {
    const p = await isolad.control();
    p.sock.pause(); // never read the PONGs
    const ping = encodeFrame(MSG_PING, Buffer.alloc(64, 1));
    const burst = Buffer.concat([HELLO, ...Array.from({ length: 20_000 }, () => ping)]);
    for (let i = 0; i < 25; i++) p.sock.write(burst); // 36 MB of PINGs
    await sleep(1500);
    assert.ok(agent.rssKiB() < 8 * 1024, `agent RSS ${agent.rssKiB()} KiB under a PING flood`);
    p.sock.destroy();
    await isolad.control().then((again) => again.sock.destroy());
  });

  test('hangs up on a command whose data connection breaks the protocol (agent-data-wrong-type)', async () => {
    const pidFile = path.join(agent.dir, 'sleeper.pid');
    const ctl = await isolad.control();
    ctl.sock.write(Buffer.concat([HELLO, execFrame(`root:echo $$ > ${pidFile}; exec sleep 30`, 4242)]));
    const data = await isolad.next();
    assert.equal(data.flags, HELLO_FLAG_DATA);
    assert.ok(Buffer.concat(data.data).includes(encodeFrame(MSG_DATA_CONNECT, encodeU32(4242))));
    for (let i = 0; i < 100 && !existsSync(pidFile); i++) await sleep(20);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    data.sock.write(Buffer.concat([HELLO, execFrame('root:id')]));
    await data.closed;
    for (let i = 0; i < 100 && alive(pid); i++) await sleep(20);
    assert.equal(alive(pid), false, 'the command survived its broken connection');
    assert.ok(agent.logs.some((l) => /request 4242: data connection lost \(protocol error: MSG_EXEC_CMDLINE \(0x200\) is not allowed here\); sending SIGHUP/.test(l)));
    ctl.sock.destroy();
  });

  test('keeps a stdin flood to a command that does not read in the kernel, not in the agent (agent-stdin-flood)', async () => {
    const ctl = await isolad.control();
    ctl.sock.write(Buffer.concat([HELLO, execFrame('root:sleep 30', 99)]));
    const data = await isolad.next();
    const chunk = encodeFrame(MSG_DATA_STDIN, Buffer.alloc(65536, 7));
    data.sock.write(HELLO);
    for (let i = 0; i < 400; i++) data.sock.write(chunk); // 26 MB
    await sleep(1500);
    assert.ok(agent.rssKiB() < 8 * 1024, `agent RSS ${agent.rssKiB()} KiB under a stdin flood`);
    data.sock.destroy();
    ctl.sock.destroy();
  });

  test('rate-limits its log lines when every connection is an attack, and says how many it held back (agent-log-flood)', async () => {
    const t0 = Date.now();
    for (let i = 0; i < 30; i++) {
      const p = await isolad.control();
      p.sock.write(Buffer.concat([HELLO, HELLO]));
      await p.closed;
    }
    // 3 lines per attack (connected, protocol error, lost) unlimited; a burst of 20 and 2 a second allowed.
    // (The count of what was held back comes on top, once per line that gets through.)
    const allowed = 20 + Math.ceil(((Date.now() - t0) / 1000) * 2) + 1;
    const written = agent.logs.filter((l) => !/similar lines suppressed$/.test(l)).length;
    assert.ok(written <= allowed && allowed < 90, `${written} log lines for 30 attacks (allowed ${allowed})`);
    await sleep(700);
    const p = await isolad.control();
    p.sock.write(Buffer.concat([HELLO, HELLO]));
    await p.closed;
    await sleep(100);
    assert.ok(agent.logs.some((l) => /^isola-agent: \.\.\. \d+ similar lines suppressed$/.test(l)), agent.logs.slice(-5).join('\n'));
  });

  test('after attacks on every connection kind, still runs commands for the real isolad', async () => {
    for (const attack of [Buffer.concat([HELLO, HELLO]), execFrame('root:true', 1, 9)]) {
      const p = await isolad.control();
      p.sock.write(attack);
      await p.closed;
    }
    const ctl = await isolad.control();
    ctl.sock.write(Buffer.concat([HELLO, execFrame('root:sleep 30', 5)]));
    const data = await isolad.next();
    data.sock.end(Buffer.concat([HELLO, encodeFrame(MSG_DATA_STDIN, Buffer.from('x')).subarray(0, 9)]));
    await data.closed;
    ctl.sock.destroy();
    await isolad.close();
    const listener = new AgentListener({ socketPath: agent.socketPath, name: 'after', log: () => {} });
    agent.listener = listener;
    await listener.listen();
    await listener.waitForHello(5000);
    assert.deepEqual(await agent.run('root', 'echo still here; echo err >&2; exit 4'), { code: 4, out: 'still here\n', err: 'err\n' });
  });
});

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
