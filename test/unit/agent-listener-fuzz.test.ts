// isolad's side of the agent channel under a hostile qube: seeded random and mutated frame streams on
// many connections of both endpoints, and a flood, while another qube's real (compiled) agent is used.
// Nothing may throw out of the listener, the other qube must be served on time, and what the hostile
// qube makes isolad hold stays under its budget. Runs without root: the agent is a plain process here.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { AgentListener } from '../../src/qrexec/agent-link';
import {
  HELLO_FLAG_CLIENT, HELLO_FLAG_CONTROL, HELLO_FLAG_DATA, MSG_DATA_CONNECT, MSG_DATA_EXIT_CODE, MSG_DATA_STDOUT,
  MSG_HELLO, MSG_PING, MSG_TRIGGER_SERVICE3, encodeFrame, encodeHello, encodeU32,
} from '../../src/qrexec/protocol';

const agentBinary = path.resolve(__dirname, '../../qube/isola-agent');
const skip = existsSync(agentBinary) ? false : `${agentBinary} is not built`;
const tmp = mkdtempSync(path.join(tmpdir(), 'isola-listener-fuzz-'));
const BUDGET = 4 * 1024 * 1024;

/** xorshift32: the same stream of inputs at every run, so a failure can be replayed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

const TYPES = [MSG_HELLO, MSG_DATA_CONNECT, MSG_DATA_STDOUT, MSG_DATA_EXIT_CODE, MSG_TRIGGER_SERVICE3, MSG_PING, 0x190, 0x200, 0x211, 0x403, 0x404, 0xdead];

/** One hostile byte stream: a HELLO (often valid, sometimes mutated), then frames with random types, lengths and bytes. */
function hostileStream(r: () => number): Buffer {
  const parts: Buffer[] = [];
  const flags = [HELLO_FLAG_CONTROL, HELLO_FLAG_DATA, HELLO_FLAG_CLIENT, 0, 7][Math.floor(r() * 5)];
  const hello = encodeFrame(MSG_HELLO, encodeHello(flags, 'fuzz'));
  if (r() < 0.2) hello[Math.floor(r() * hello.length)] ^= 1 + Math.floor(r() * 255);
  parts.push(hello);
  for (let i = Math.floor(r() * 12); i > 0; i--) {
    const type = TYPES[Math.floor(r() * TYPES.length)];
    const len = r() < 0.1 ? Math.floor(r() * 0xffffffff) : Math.floor(r() * 300);
    const body = Buffer.alloc(Math.min(len, 300));
    for (let j = 0; j < body.length; j++) body[j] = Math.floor(r() * 256);
    const h = Buffer.alloc(8);
    h.writeUInt32LE(type, 0);
    h.writeUInt32LE(len >>> 0, 4);
    parts.push(h, body);
  }
  const all = Buffer.concat(parts);
  return r() < 0.3 ? all.subarray(0, Math.floor(r() * all.length)) : all; // truncated inside a frame
}

function sendAndClose(sockPath: string, bytes: Buffer, keepOpenMs: number): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(sockPath);
    s.on('error', () => resolve());
    s.on('data', () => undefined); // a peer that reads (some never do: see the flood)
    s.on('connect', () => {
      s.write(bytes);
      setTimeout(() => (s.destroy(), resolve()), keepOpenMs);
    });
    s.on('close', () => resolve());
  });
}

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

let victim: AgentListener;
let hostile: AgentListener;
let agent: ChildProcess;
const logs: string[] = [];

before(async () => {
  if (skip) return;
  victim = new AgentListener({ socketPath: path.join(tmp, 'victim.sock'), name: 'victim', log: (l) => logs.push(l) });
  hostile = new AgentListener({
    socketPath: path.join(tmp, 'hostile.sock'), clientSocketPath: path.join(tmp, 'hostile-client.sock'),
    name: 'hostile', log: (l) => logs.push(l), maxBufferedBytes: BUDGET, helloTimeoutMs: 500,
  });
  await victim.listen();
  await hostile.listen();
  agent = spawn(agentBinary, [], {
    env: { PATH: process.env.PATH, ISOLA_AGENT_SOCKET: path.join(tmp, 'victim.sock'), ISOLA_DEFAULT_USER: userInfo().username },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  await victim.waitForHello(10_000);
});

after(async () => {
  agent?.kill('SIGKILL');
  await victim?.close();
  await hostile?.close();
  rmSync(tmp, { recursive: true, force: true });
});

test('random, mutated and truncated frames on both endpoints drop only the offending connections, and another qube is served meanwhile (agent-channel-fuzz)', { skip, timeout: 120_000 }, async () => {
  const r = rng(0x15014);
  const ends = [path.join(tmp, 'hostile.sock'), path.join(tmp, 'hostile-client.sock')];
  let fuzzing = true;
  const fuzz = (async () => {
    for (let round = 0; round < 40; round++) {
      const batch: Promise<void>[] = [];
      for (let i = 0; i < 25; i++) batch.push(sendAndClose(ends[Math.floor(r() * 2)], hostileStream(r), Math.floor(r() * 50)));
      await Promise.all(batch);
    }
    fuzzing = false;
  })();
  const slowest: number[] = [];
  while (fuzzing) {
    const t = Date.now();
    const s = await victim.exec('DEFAULT', 'echo ok');
    s.stdin.end();
    const [out, code] = await Promise.all([collect(s.stdout), s.exit]);
    assert.equal(out.toString(), 'ok\n');
    assert.equal(code, 0);
    slowest.push(Date.now() - t);
  }
  await fuzz;
  assert.ok(slowest.length > 0);
  assert.ok(Math.max(...slowest) < 2000, `the other qube waited ${Math.max(...slowest)} ms for one command during the fuzz`);
  assert.ok(logs.some((l) => /protocol error/.test(l)), 'the fuzz reached the parser');
  // Every hostile connection ends: closed by its peer, dropped, or timed out waiting for HELLO/binding.
  const deadline = Date.now() + 5000;
  while (hostile.connectionCount > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
  assert.equal(hostile.connectionCount, 0);
  assert.equal(victim.connected, true);
});

test('a flood of output frames from connections that never read holds isolad to the qube\'s budget (agent-channel-flood)', { skip, timeout: 60_000 }, async () => {
  const socks: Socket[] = [];
  const frame = encodeFrame(MSG_DATA_STDOUT, Buffer.alloc(65536, 0x41));
  let peak = 0;
  const sample = setInterval(() => (peak = Math.max(peak, hostile.bufferedBytes())), 5);
  try {
    for (let i = 0; i < 16; i++) {
      const s = connect(path.join(tmp, 'hostile.sock'));
      s.on('error', () => undefined);
      socks.push(s);
      await new Promise<void>((res) => s.once('connect', () => res()));
      // Claims to be a data connection, binds to nothing it was asked for, and writes as fast as it can.
      s.write(encodeFrame(MSG_HELLO, encodeHello(HELLO_FLAG_DATA, 'flood')));
      s.write(encodeFrame(MSG_DATA_CONNECT, encodeU32(12345)));
      for (let j = 0; j < 64; j++) s.write(frame);
    }
    await new Promise((res) => setTimeout(res, 1500));
  } finally {
    clearInterval(sample);
    for (const s of socks) s.destroy();
  }
  // The budget is checked per read: one read's worth over it, never the flood's 64 MiB.
  assert.ok(peak <= BUDGET + 2 * 1024 * 1024, `isolad held ${peak} bytes for the hostile qube (budget ${BUDGET})`);
  const s = await victim.exec('DEFAULT', 'echo still');
  s.stdin.end();
  assert.equal((await collect(s.stdout)).toString(), 'still\n');
});
