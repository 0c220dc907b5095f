// isolad's AgentListener against the real isola-agent (the static C binary qubes get), run as an ordinary
// child process on a temp socket (no container): handshake, streaming, stdin, concurrency, reconnects,
// hostile peers, shutdown, and the agent as the init of a pid namespace.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'child_process';
import { createHash } from 'crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'fs';
import { connect, createServer, type Socket } from 'net';
import { tmpdir, userInfo } from 'os';
import { join, resolve } from 'path';
import { PassThrough, Readable } from 'stream';
import {
  AgentListener, HELLO_FLAG_CLIENT, HELLO_FLAG_CONTROL, HELLO_FLAG_DATA, MSG_DATA_CONNECT, MSG_DATA_STDOUT, MSG_EXEC_CMDLINE, MSG_HELLO,
  MSG_TRIGGER_SERVICE3, encodeExecParams, encodeFrame, encodeHello, encodeTriggerService3, encodeU32, parseExecParams, runDataSession,
  type ExecSession,
} from '../../src/qrexec';

const isRoot = process.getuid?.() === 0;
const me = userInfo().username;
const tmp = mkdtempSync(join(tmpdir(), 'isola-agent-link-'));
const logs: string[] = [];
const log = (line: string) => logs.push(line);

/** The binary exactly as qubes get it, from the build (dist/test/integration/ -> dist/qube/); ISOLA_AGENT_BINARY to test another. */
const agentBinary = process.env.ISOLA_AGENT_BINARY ?? resolve(__dirname, '../../qube/isola-agent');

function startAgent(socketPath: string, env: NodeJS.ProcessEnv = {}, wrap: string[] = []): ChildProcess {
  const argv = [...wrap, agentBinary];
  const child = spawn(argv[0], argv.slice(1), {
    env: { PATH: process.env.PATH, ISOLA_AGENT_SOCKET: socketPath, ISOLA_DEFAULT_USER: me, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr!.on('data', (d: Buffer) => logs.push(d.toString().trimEnd()));
  return child;
}

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function run(l: AgentListener, user: string, command: string, input?: Buffer): Promise<{ code: number; out: string; err: string }> {
  const s = await l.exec(user, command);
  s.stdin.end(input);
  const [out, err, code] = await Promise.all([collect(s.stdout), collect(s.stderr), s.exit]);
  return { code, out: out.toString(), err: err.toString() };
}

const exited = (c: ChildProcess) => new Promise<number | null>((r) => (c.exitCode !== null ? r(c.exitCode) : c.once('exit', (code) => r(code))));
/** utime + stime in clock ticks (fields 14 and 15 of /proc/PID/stat). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

/** Gone or a zombie: once the agent exits, its dead children are reaped by the host's init, not at once. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A process in the qube that speaks our framing by hand: how a compromised qube would talk to isolad. */
function fakePeer(socketPath: string): Promise<{ sock: Socket; closed: Promise<void>; received: Buffer[] }> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath, () => resolve({ sock, closed, received }));
    const received: Buffer[] = [];
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.on('data', (d) => received.push(d)).on('error', reject);
  });
}

before(() => {
  if (!existsSync(agentBinary)) throw new Error(`${agentBinary} is missing: run scripts/build.sh`);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('AgentListener with a real agent', { timeout: 60_000 }, () => {
  const sockPath = join(tmp, 'agent.sock');
  let listener: AgentListener;
  let agent: ChildProcess;
  const disconnects: string[] = [];

  before(async () => {
    listener = new AgentListener({ socketPath: sockPath, name: 'test', log });
    listener.on('disconnect', (r) => disconnects.push(r));
    await listener.listen();
    agent = startAgent(sockPath);
  });
  after(async () => {
    agent.kill('SIGKILL');
    await listener.close();
  });

  it('receives the agent HELLO with its protocol version and software ident', async () => {
    const hello = await listener.waitForHello(5000);
    assert.equal(hello.version, 1);
    assert.equal(hello.flags, HELLO_FLAG_CONTROL);
    assert.match(hello.ident, /^isola-agent\/\d+\.\d+\.\d+ c$/);
    assert.ok((await listener.ping()) < 1000);
  });

  it('streams stdout and stderr separately and returns the exit code', async () => {
    assert.deepEqual(await run(listener, 'DEFAULT', 'echo hi; echo err >&2; exit 3'), { code: 3, out: 'hi\n', err: 'err\n' });
  });

  it('pipes 1 MiB of stdin through cat intact', async () => {
    const input = Buffer.alloc(1 << 20);
    for (let i = 0; i < input.length; i++) input[i] = (i * 7919) & 0xff;
    const s = await listener.exec(me, 'cat');
    Readable.from([input.subarray(0, 300_000), input.subarray(300_000)]).pipe(s.stdin);
    const [out, code] = await Promise.all([collect(s.stdout), s.exit]);
    assert.equal(code, 0);
    assert.equal(createHash('sha256').update(out).digest('hex'), createHash('sha256').update(input).digest('hex'));
  });

  it('runs 50 concurrent execs, each on its own data connection', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => run(listener, me, `echo ${i}; exit ${i % 7}`)));
    results.forEach((r, i) => assert.deepEqual(r, { code: i % 7, out: `${i}\n`, err: '' }));
  });

  it('does not stall other execs behind one whose output nobody reads', async () => {
    const slow = await listener.exec(me, 'head -c 20000000 /dev/zero');
    void slow.stdin.end();
    assert.deepEqual(await run(listener, me, 'echo quick'), { code: 0, out: 'quick\n', err: '' });
    slow.hangup();
  });

  it('reports a signal-terminated command as 128+signo', async () => {
    assert.equal((await run(listener, me, 'kill -TERM $$')).code, 128 + 15);
  });

  it('runs MSG_JUST_EXEC without a data connection', async () => {
    const marker = join(tmp, 'just-exec-marker');
    const s = await listener.exec(me, `echo ran > ${marker}`, { justExec: true });
    assert.equal(await s.exit, 0);
    for (let i = 0; i < 100 && !existsSync(marker); i++) await sleep(20);
    assert.equal(readFileSync(marker, 'utf8'), 'ran\n');
  });

  it('answers an unknown user with exit 127 and a one-line reason', async () => {
    assert.deepEqual(await run(listener, 'no-such-user', 'id'), { code: 127, out: '', err: 'user no-such-user does not exist in qube\n' });
  });

  it('switches to another user of the qube (exec as nobody prints uid 65534)', { skip: !isRoot && 'needs root' }, async () => {
    assert.deepEqual(await run(listener, 'nobody', 'id -u; echo $HOME $USER'), { code: 0, out: '65534\n/nonexistent nobody\n', err: '' });
  });

  it('splices a CLI client socket onto the data connection (pipe + runDataSession)', async () => {
    const cliPath = join(tmp, 'cli.sock');
    const server = createServer(async (client) => {
      const s: ExecSession = await listener.exec(me, 'cat; echo e >&2; exit 5');
      await s.pipe(client);
    });
    await new Promise<void>((r) => server.listen(cliPath, () => r()));
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const sock = connect(cliPath);
    const outP = collect(stdout);
    const errP = collect(stderr);
    const code = await runDataSession(sock, { stdin: Readable.from([Buffer.from('one\n'), Buffer.from('two\n')]), stdout, stderr }, { log });
    stdout.end();
    stderr.end();
    assert.equal(code, 5);
    assert.equal((await outP).toString(), 'one\ntwo\n');
    assert.equal((await errP).toString(), 'e\n');
    server.close();
  });

  it('drops a peer that sends data before HELLO, and keeps serving the agent', async () => {
    const p = await fakePeer(sockPath);
    p.sock.write(encodeFrame(MSG_DATA_STDOUT, Buffer.from('x')));
    await p.closed;
    assert.equal((await run(listener, me, 'echo still')).out, 'still\n');
  });

  it('drops a peer whose frame claims more than 64 KiB (qrexec-oversized-frame)', async () => {
    const p = await fakePeer(sockPath);
    const header = Buffer.alloc(8);
    header.writeUInt32LE(MSG_HELLO, 0);
    header.writeUInt32LE(0x7fffffff, 4);
    p.sock.write(header);
    await p.closed;
    assert.ok(logs.some((l) => /claims 2147483647 bytes/.test(l)));
    assert.equal((await run(listener, me, 'echo still')).out, 'still\n');
  });

  it('drops a data connection that claims an unknown request id (qrexec-guessed-request-id)', async () => {
    const p = await fakePeer(sockPath);
    p.sock.write(Buffer.concat([encodeFrame(MSG_HELLO, encodeHello(HELLO_FLAG_DATA)), encodeFrame(MSG_DATA_CONNECT, encodeU32(12345))]));
    await p.closed;
    assert.ok(logs.some((l) => /unknown request 12345/.test(l)));
    assert.deepEqual(disconnects, []);
    assert.equal(listener.connected, true);
  });

  it('is reached again by the agent after the listener is closed and reopened (isolad restart)', async () => {
    await listener.close();
    await sleep(300);
    listener = new AgentListener({ socketPath: sockPath, name: 'test', log });
    await listener.listen();
    await listener.waitForHello(5000);
    assert.equal((await run(listener, me, 'echo back')).out, 'back\n');
  });

  it('keeps serving, without spinning, once nobody reads its stderr (agent-log-epipe)', async () => {
    agent.stderr!.destroy();
    await listener.close(); // the agent logs the lost connection into a pipe without a reader
    await sleep(200);
    const cpu0 = cpuTicks(agent.pid!);
    await sleep(500);
    assert.ok(cpuTicks(agent.pid!) - cpu0 < 10, 'agent burns CPU while idle');
    listener = new AgentListener({ socketPath: sockPath, name: 'test', log });
    await listener.listen();
    await listener.waitForHello(5000);
    assert.equal((await run(listener, me, 'echo alive')).out, 'alive\n');
  });

  it('stops the agent and its processes on shutdown, and reports the disconnect', async () => {
    const pidFile = join(tmp, 'sleeper.pid');
    await listener.exec(me, `echo $$ > ${pidFile}; exec sleep 100`, { justExec: true });
    for (let i = 0; i < 100 && !existsSync(pidFile); i++) await sleep(20);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    const gone = new Promise<string>((r) => listener.once('disconnect', r));
    const t0 = Date.now();
    await listener.shutdown(5);
    assert.equal(await exited(agent), 0);
    assert.ok(Date.now() - t0 < 4000, 'SIGTERM ended the sleeper before the grace period');
    assert.ok(typeof (await gone) === 'string');
    assert.equal(running(pid), false);
  });
});

describe('AgentListener with a hostile or silent agent', { timeout: 30_000 }, () => {
  const sockPath = join(tmp, 'fake.sock');
  const clientPath = join(tmp, 'fake-client.sock');
  let listener: AgentListener;
  before(async () => {
    listener = new AgentListener({ socketPath: sockPath, clientSocketPath: clientPath, name: 'fake', log, dataConnectTimeoutMs: 300 });
    await listener.listen();
  });
  after(() => listener.close());

  async function fakeControl(onExec: (requestId: number) => void): Promise<Socket> {
    const p = await fakePeer(sockPath);
    const adopted = new Promise((r) => listener.once('hello', r));
    p.sock.write(encodeFrame(MSG_HELLO, encodeHello(HELLO_FLAG_CONTROL, 'fake')));
    let buf = Buffer.alloc(0);
    p.sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 8 && buf.length >= 8 + buf.readUInt32LE(4)) {
        const len = buf.readUInt32LE(4);
        if (buf.readUInt32LE(0) === MSG_EXEC_CMDLINE) onExec(parseExecParams(buf.subarray(8, 8 + len)).connectPort);
        buf = buf.subarray(8 + len);
      }
    });
    await adopted;
    return p.sock;
  }

  it('takes qrexec calls on the client socket, and nothing else (qrexec-client-claims-agent-role)', async () => {
    for (const flags of [HELLO_FLAG_CONTROL, HELLO_FLAG_DATA]) {
      const p = await fakePeer(clientPath);
      p.sock.write(encodeFrame(MSG_HELLO, encodeHello(flags, 'user pretending to be the agent')));
      await p.closed;
    }
    assert.ok(logs.some((l) => /HELLO flags 0x1 on the client socket/.test(l)));
    assert.equal(listener.connected, false, 'a caller on the client socket never becomes the control connection');
    const calls: string[] = [];
    listener.once('service-call', (untrusted, conn) => (calls.push(untrusted.serviceName), conn.close()));
    const c = await fakePeer(clientPath);
    c.sock.write(Buffer.concat([
      encodeFrame(MSG_HELLO, encodeHello(HELLO_FLAG_CLIENT)),
      encodeFrame(MSG_TRIGGER_SERVICE3, encodeTriggerService3({ targetDomain: 'vault', requestId: 'r1', serviceName: 'test.Echo' })),
    ]));
    await c.closed;
    assert.deepEqual(calls, ['test.Echo']);
  });

  it('times out an exec whose data connection never comes', async () => {
    const ctl = await fakeControl(() => {});
    await assert.rejects(listener.exec('root', 'true'), /did not start request \d+ within 300 ms/);
    ctl.destroy();
  });

  it('never passes a non-data frame from the agent on to the exec (qrexec-injected-frame-from-agent)', async () => {
    const ctl = await fakeControl(async (id) => {
      const d = await fakePeer(sockPath);
      const exec = encodeFrame(MSG_EXEC_CMDLINE, encodeExecParams({ connectDomain: 0, connectPort: 1, cmdline: 'root:id' }));
      d.sock.write(Buffer.concat([encodeFrame(MSG_HELLO, encodeHello(HELLO_FLAG_DATA)), encodeFrame(MSG_DATA_CONNECT, encodeU32(id)), encodeFrame(MSG_DATA_STDOUT, Buffer.from('ok')), exec]));
    });
    const s = await listener.exec('root', 'true');
    const [out, code] = await Promise.all([collect(s.stdout), s.exit]);
    assert.equal(out.toString(), 'ok');
    assert.equal(code, 125);
    assert.ok(logs.some((l) => /MSG_EXEC_CMDLINE \(0x200\) is not allowed here/.test(l)));
    ctl.destroy();
  });
});

const haveUnshare = isRoot && spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0;

describe('agent as the init of a pid namespace (as in a qube)', { timeout: 60_000 }, () => {
  async function inNamespace(wrap: string[], env: NodeJS.ProcessEnv): Promise<{ zombies: number; shutdownMs: number; code: number | null }> {
    const sockPath = join(tmp, `ns-${wrap.length}.sock`);
    const listener = new AgentListener({ socketPath: sockPath, name: 'ns', log });
    await listener.listen();
    const agent = startAgent(sockPath, env, ['unshare', '--pid', '--fork', '--kill-child', '--mount-proc', ...wrap]);
    try {
      await listener.waitForHello(5000);
      // An orphan that exits (reparented to init: reaped only if init reaps) and one that lingers until shutdown.
      await run(listener, 'root', 'sleep 0.1 >/dev/null 2>&1 & sleep 1000 >/dev/null 2>&1 & exit 0');
      await sleep(400);
      const zombies = Number((await run(listener, 'root', "grep -l '^State:.Z' /proc/[0-9]*/status 2>/dev/null | wc -l")).out);
      const t0 = Date.now();
      await listener.shutdown(5);
      return { zombies, shutdownMs: Date.now() - t0, code: await exited(agent) };
    } finally {
      agent.kill('SIGKILL');
      await listener.close();
    }
  }

  it('reaps orphans and kills every process of the namespace on shutdown when it is PID 1 itself', { skip: !haveUnshare && 'needs root and unshare' }, async () => {
    const r = await inNamespace([], {});
    assert.equal(r.zombies, 0, 'an orphan stayed a zombie: PID 1 must reap every process');
    assert.equal(r.code, 0);
    assert.ok(r.shutdownMs < 4000);
  });
});
