// qrexec-client-vm as a qube's programs run it, against a fake isolad on its client socket: both the Node
// tool (the module qvm-copy and qvm-open-in-vm use) and the static C one qubes get on their PATH (no Node
// start per call), with the same cases, so the two keep the same lines, exit codes and bytes. isolad's
// side is hostile in some: oversized, truncated and garbage frames end the call with an error, never a hang.

import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  HEADER_SIZE, MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDIN, MSG_DATA_STDOUT, MSG_HELLO, MSG_SERVICE_CONNECT,
  MSG_SERVICE_NOTICE, MSG_SERVICE_REFUSED, MSG_TRIGGER_SERVICE3, encodeFrame, encodeHello, encodeU32,
} from '../../src/qrexec/protocol';

/** dist/test/unit/ -> dist/qube/isola-qrexec-client-vm and the compiled entry of the Node tool. */
const C_BINARY = process.env.ISOLA_QCVM_BINARY ?? path.resolve(__dirname, '../../qube/isola-qrexec-client-vm');
const NODE_ENTRY = path.resolve(__dirname, '../../src/agent/bin/qrexec-client-vm.js');

const IMPLEMENTATIONS: { name: string; argv: string[]; skip: string | false }[] = [
  { name: 'Node', argv: [process.execPath, NODE_ENTRY], skip: false },
  { name: 'C', argv: [C_BINARY], skip: !existsSync(C_BINARY) && 'build it first (scripts/build.sh)' },
];

/** Cases the Node tool gets wrong (reported, not fixed here): node:test's todo keeps them visible. */
const NODE_KNOWN: Record<string, string | undefined> = {
  'a HELLO of another protocol': 'parseHello throws in a data handler: exit 1 and a stack trace',
  'LOCAL_PROGRAM gets EOF when the service\'s stdout ends': 'ends the program\'s stdin only after the exit code: a program reading to EOF deadlocks the call',
};

interface Frame { type: number; payload: Buffer }

/** isolad's end of one client connection: the frames the client sent, and a raw write for anything at all. */
class FakeConn {
  private buf = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  ended = false;
  constructor(readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiting?.();
    });
    sock.on('end', () => {
      this.ended = true;
      this.waiting?.();
    });
    sock.on('error', () => undefined);
  }

  /** The next frame from the client; null once it closed. */
  async next(): Promise<Frame | null> {
    for (;;) {
      if (this.buf.length >= HEADER_SIZE) {
        const len = this.buf.readUInt32LE(4);
        if (this.buf.length >= HEADER_SIZE + len) {
          const f = { type: this.buf.readUInt32LE(0), payload: Buffer.from(this.buf.subarray(HEADER_SIZE, HEADER_SIZE + len)) };
          this.buf = this.buf.subarray(HEADER_SIZE + len);
          return f;
        }
      }
      if (this.ended) return null;
      await new Promise<void>((r) => (this.waiting = r));
      this.waiting = null;
    }
  }

  send(type: number, payload: Buffer = Buffer.alloc(0)): void {
    this.sock.write(encodeFrame(type, payload));
  }

  /** isolad's greeting and the client's call: HELLO and TRIGGER_SERVICE3, checked. */
  async handshake(): Promise<{ target: string; requestId: string; service: string }> {
    this.send(MSG_HELLO, encodeHello(0, 'isolad/test'));
    const hello = await this.next();
    assert.equal(hello?.type, MSG_HELLO);
    assert.equal(hello!.payload.readUInt32LE(12), 0x4, 'the client role');
    const call = await this.next();
    assert.equal(call?.type, MSG_TRIGGER_SERVICE3);
    const str = (b: Buffer) => b.subarray(0, b.indexOf(0)).toString('utf8');
    return { target: str(call!.payload.subarray(0, 64)), requestId: str(call!.payload.subarray(64, 96)), service: str(call!.payload.subarray(96)) };
  }

  connect(): void {
    this.send(MSG_SERVICE_CONNECT, Buffer.from('\0\0\0\0\0\0\0\0\0'));
  }

  /** The client's stdin until its EOF frame. */
  async readStdin(): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (;;) {
      const f = await this.next();
      assert.ok(f, 'stdin EOF before the connection closed');
      assert.equal(f.type, MSG_DATA_STDIN);
      if (f.payload.length === 0) return Buffer.concat(parts);
      parts.push(f.payload);
    }
  }

  exit(code: number): void {
    this.send(MSG_DATA_EXIT_CODE, encodeU32(code));
    this.sock.end();
  }
}

let dir: string;
let socketPath: string;
let server: Server;
let script: (c: FakeConn) => Promise<void> = async () => undefined;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'isola-qcvm-'));
  socketPath = path.join(dir, 'client.sock');
  server = createServer((sock) => {
    const c = new FakeConn(sock);
    // A script that fails (the client sent something else, or died) drops the connection: what the client
    // then prints and returns is what the test asserts.
    script(c).catch(() => sock.destroy());
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
});
after(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Run { code: number | null; out: Buffer; err: string; ms: number }

/** Runs the tool with stdin and a deadline: a tool that hangs fails the test rather than blocking it. */
function run(argv0: string[], args: string[], input: Buffer | string = '', env: NodeJS.ProcessEnv = {}, deadlineMs = 15_000): Promise<Run> {
  const t0 = process.hrtime.bigint();
  const child = spawn(argv0[0], [...argv0.slice(1), ...args], { env: { ...process.env, ISOLA_CLIENT_SOCKET: socketPath, ...env }, stdio: 'pipe' });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => err.push(d));
  child.stdin.on('error', () => undefined);
  child.stdin.end(input);
  const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
  return new Promise((resolve) => child.on('close', (code, signal) => {
    clearTimeout(timer);
    assert.equal(signal, null, `the tool hung (killed): ${Buffer.concat(err).toString()}`);
    resolve({ code, out: Buffer.concat(out), err: Buffer.concat(err).toString('utf8'), ms: Number(process.hrtime.bigint() - t0) / 1e6 });
  }));
}

for (const impl of IMPLEMENTATIONS) {
  describe(`qrexec-client-vm (${impl.name})`, { skip: impl.skip }, () => {
    const call = (args: string[], input?: Buffer | string, env?: NodeJS.ProcessEnv, deadlineMs?: number) => run(impl.argv, args, input, env, deadlineMs);

    test('the command line: usage, help, names too long', async () => {
      const none = await call([]);
      assert.equal(none.code, 2);
      assert.match(none.err, /^usage: qrexec-client-vm \[options\] TARGET SERVICE/);
      const one = await call(['work']);
      assert.equal(one.code, 2);
      const dash = await call(['-x', 'qubes.Foo']);
      assert.equal(dash.code, 2, 'an unknown option is not a TARGET');
      const help = await call(['--help']);
      assert.equal(help.code, 0);
      assert.match(help.out.toString(), /^usage: qrexec-client-vm .*\n\nCall the qrexec service SERVICE/s);
      const long = await call(['x'.repeat(64), 'qubes.Foo']);
      assert.equal(long.code, 2);
      assert.equal(long.err, 'qrexec-client-vm: target or service name too long\n');
    });

    test("an empty TARGET is Qubes' @default (qrexec-client-vm '' qubes.UpdatesProxy): sent as ''", async () => {
      let seen: { target: string } | undefined;
      script = async (c) => {
        seen = await c.handshake();
        c.send(MSG_SERVICE_REFUSED, Buffer.alloc(32));
        c.sock.end();
      };
      const r = await call(['', 'qubes.UpdatesProxy']);
      assert.equal(r.code, 126, r.err);
      assert.equal(seen?.target, '');
    });

    test('no isolad on the socket: 125 and one line', async () => {
      const r = await call(['work', 'qubes.Foo'], '', { ISOLA_CLIENT_SOCKET: path.join(dir, 'missing.sock') });
      assert.equal(r.code, 125);
      assert.equal(r.err, 'qrexec-client-vm: no such file or directory\n');
    });

    test('a refused call: 126, "Request refused"; the call names target and service', async () => {
      let seen: { target: string; requestId: string; service: string } | undefined;
      script = async (c) => {
        seen = await c.handshake();
        c.send(MSG_SERVICE_REFUSED, Buffer.alloc(32));
        c.sock.end();
      };
      const r = await call(['@default', 'qubes.Filecopy+arg']);
      assert.equal(r.code, 126);
      assert.equal(r.err, 'Request refused\n');
      assert.deepEqual({ ...seen, requestId: undefined }, { target: '@default', service: 'qubes.Filecopy+arg', requestId: undefined });
      assert.match(seen!.requestId, /^[0-9a-f]{16}$/);
    });

    test('stdin to the service and its output back as bytes, stderr apart, the service\'s exit code', async () => {
      const input = Buffer.concat([Buffer.from([0xff, 0x00, 0x1b, 0x5b, 0x41, 0xc3]), Buffer.alloc(300_000, 0x61), Buffer.from('\xe9', 'latin1')]);
      script = async (c) => {
        await c.handshake();
        c.send(MSG_SERVICE_NOTICE, Buffer.from('waiting for the \x1b[31muser\n'));
        c.connect();
        const got = await c.readStdin();
        for (let off = 0; off < got.length; off += 65536) c.send(MSG_DATA_STDOUT, got.subarray(off, off + 65536));
        c.send(MSG_DATA_STDOUT);
        c.send(MSG_DATA_STDERR, Buffer.from('warning\n'));
        c.exit(3);
      };
      const r = await call(['--no-filter-escape-chars-stdout', 'work', 'qubes.Echo'], input);
      assert.equal(r.code, 3);
      assert.ok(r.out.equals(input), `stdout is stdin, byte for byte (${r.out.length} of ${input.length} bytes)`);
      assert.equal(r.err, 'qrexec-client-vm: waiting for the _[31muser_\nwarning\n');
    });

    test('-t and -T: control characters in the service\'s output become _', async () => {
      script = async (c) => {
        await c.handshake();
        c.connect();
        await c.readStdin();
        c.send(MSG_DATA_STDOUT, Buffer.from('a\x1b]52;c;eA==\x07b\xc2', 'latin1'));
        c.send(MSG_DATA_STDOUT, Buffer.from('\x9bc\tok\n', 'latin1'));
        c.send(MSG_DATA_STDERR, Buffer.from('e\x1b[2J\xff\n', 'latin1'));
        c.exit(0);
      };
      const r = await call(['-tT', 'work', 'qubes.Foo']);
      assert.equal(r.code, 0);
      assert.equal(r.out.toString('latin1'), 'a_]52;c;eA==\x07b__c\tok\n', 'C1 CSI cut between two frames is still caught');
      assert.equal(r.err, 'e_[2J_\n');
    });

    test('an empty stdin is an EOF at once; the service\'s stdout EOF is passed on', async () => {
      script = async (c) => {
        await c.handshake();
        c.connect();
        assert.equal((await c.readStdin()).length, 0);
        c.send(MSG_DATA_STDOUT, Buffer.from('done\n'));
        c.send(MSG_DATA_STDOUT);
        c.exit(0);
      };
      const r = await call(['work', 'qubes.Foo']);
      assert.deepEqual([r.code, r.out.toString(), r.err], [0, 'done\n', '']);
    });

    test('LOCAL_PROGRAM: it reads the service\'s output and writes its input; its failure wins', async () => {
      script = async (c) => {
        await c.handshake();
        c.connect();
        c.send(MSG_DATA_STDOUT, Buffer.from('ping\n'));
        c.send(MSG_DATA_STDOUT);
        const got = await c.readStdin();
        c.send(MSG_DATA_STDERR, Buffer.from(`service got ${got.toString()}`));
        c.exit(5);
      };
      const ok = await call(['work', 'qubes.Foo', 'sh', '-c', 'read x; echo "got $x"']);
      assert.deepEqual([ok.code, ok.err], [5, 'service got got ping\n']);
      const failing = await call(['work', 'qubes.Foo', 'sh', '-c', 'read x; echo x; exit 4']);
      assert.equal(failing.code, 4);
      const missing = await call(['work', 'qubes.Foo', path.join(dir, 'no-such-program')]);
      assert.equal(missing.code, 127);
      assert.match(missing.err, /^qrexec-client-vm: cannot run .*no-such-program: .*no such file or directory\n$/);
    });

    test('LOCAL_PROGRAM gets EOF when the service\'s stdout ends', { todo: impl.name === 'Node' && NODE_KNOWN['LOCAL_PROGRAM gets EOF when the service\'s stdout ends'] }, async () => {
      script = async (c) => {
        await c.handshake();
        c.connect();
        c.send(MSG_DATA_STDOUT, Buffer.from('all of it\n'));
        c.send(MSG_DATA_STDOUT);
        const got = await c.readStdin();
        c.send(MSG_DATA_STDERR, got);
        c.exit(0);
      };
      const r = await call(['work', 'qubes.Foo', 'sh', '-c', 'wc -l'], '', {}, 5_000);
      assert.deepEqual([r.code, r.err.trim()], [0, '1']);
    });

    describe('a hostile isolad: an error line and 125, never a hang', () => {
      const connected = (rest: (c: FakeConn) => void) => async (c: FakeConn) => {
        await c.handshake();
        c.connect();
        rest(c);
      };
      const closedEarly = 'qrexec-client-vm: data stream closed before the exit code';
      const cases: [string, (c: FakeConn) => Promise<void>, RegExp][] = [
        ['an oversized frame before the decision', async (c) => void c.sock.write(Buffer.from([0, 3, 0, 0, 0xff, 0xff, 0xff, 0x7f])),
          /^qrexec-client-vm: oversized frame from isolad\n$/],
        ['garbage for a greeting', async (c) => void c.sock.end(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')),
          /^qrexec-client-vm: (isolad did not say hello|oversized frame from isolad)\n$/],
        ['a HELLO of another protocol', async (c) => {
          c.send(MSG_HELLO, Buffer.alloc(16, 0x41));
          c.sock.end();
        }, /^qrexec-client-vm: bad magic in HELLO \(not an Isola qrexec peer\)\n$/],
        ['a truncated greeting', async (c) => void c.sock.end(encodeFrame(MSG_HELLO, encodeHello(0, 'isolad')).subarray(0, 12)),
          /^qrexec-client-vm: isolad closed the connection before deciding\n$/],
        ['data before the decision', async (c) => {
          await c.handshake();
          c.send(MSG_DATA_STDOUT, Buffer.from('x'));
        }, /^qrexec-client-vm: unexpected frame 0x191\n$/],
        ['an oversized data frame', connected((c) => c.sock.write(Buffer.from([0x91, 1, 0, 0, 1, 0, 1, 0]))),
          /\(protocol error: MSG_DATA_STDOUT \(0x191\) claims 65537 bytes, more than 65536\)\n$/],
        ['a truncated payload', connected((c) => c.sock.end(encodeFrame(MSG_DATA_STDOUT, Buffer.alloc(100)).subarray(0, 50))),
          /\(protocol error: connection closed inside a MSG_DATA_STDOUT \(0x191\) payload\)\n$/],
        ['a truncated header', connected((c) => c.sock.end(Buffer.from([0x91, 1, 0]))),
          /\(protocol error: connection closed inside a frame header \(3 of 8 bytes\)\)\n$/],
        ['a frame isolad never sends a client', connected((c) => c.send(MSG_DATA_STDIN, Buffer.from('x'))),
          /\(protocol error: MSG_DATA_STDIN \(0x190\) is not allowed here\)\n$/],
        ['stdout after its EOF', connected((c) => {
          c.send(MSG_DATA_STDOUT);
          c.send(MSG_DATA_STDOUT, Buffer.from('late'));
        }), /\(protocol error: MSG_DATA_STDOUT \(0x191\) is not allowed here\)\n$/],
        ['a bad exit code', connected((c) => c.send(MSG_DATA_EXIT_CODE, Buffer.alloc(5))),
          /\(protocol error: MSG_DATA_EXIT_CODE \(0x193\) with 5 bytes \(expected 4\.\.4\)\)\n$/],
        ['an exit code out of range', connected((c) => c.send(MSG_DATA_EXIT_CODE, encodeU32(256))),
          /\(protocol error: exit code 256 is out of range 0\.\.255\)\n$/],
        ['no exit code', connected((c) => void c.sock.end()), /closed before the exit code\n$/],
      ];
      for (const [name, act, line] of cases) {
        test(name, { todo: impl.name === 'Node' && NODE_KNOWN[name] }, async () => {
          script = act;
          const r = await call(['work', 'qubes.Foo'], 'input');
          assert.equal(r.code, 125, r.err);
          assert.match(r.err, line);
          if (line.source.includes('protocol error') || name === 'no exit code') assert.ok(r.err.startsWith(closedEarly), r.err);
        });
      }
    });
  });
}

describe('qrexec-client-vm --use-stdin-socket (C): the socket on stdin carries the service\'s output too', { skip: !existsSync(C_BINARY) && 'build it first (scripts/build.sh)' }, () => {
  test("the caller's bytes go to the service, its output comes back on the same socket, then a half-close", async () => {
    script = async (c) => {
      await c.handshake();
      c.connect();
      const got = await c.readStdin();
      c.send(MSG_DATA_STDOUT, Buffer.from(got.toString().toUpperCase()));
      c.send(MSG_DATA_STDOUT);
      c.exit(0);
    };
    const listener = net.createServer();
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    const accepted = new Promise<net.Socket>((r) => listener.once('connection', r));
    const ours = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
    const theirs = await accepted;
    const child = spawn(C_BINARY, ['--use-stdin-socket', '', 'qubes.UpdatesProxy'], { env: { ...process.env, ISOLA_CLIENT_SOCKET: socketPath }, stdio: [theirs, 'ignore', 'pipe'] });
    theirs.destroy(); // the child holds its own copy
    let back = '';
    ours.on('data', (d: Buffer) => (back += d.toString()));
    const ended = new Promise((r) => ours.once('end', r));
    ours.end('get /\r\n');
    const code = await new Promise((r) => child.once('close', r));
    await ended;
    listener.close();
    assert.equal(code, 0);
    assert.equal(back, 'GET /\r\n');
  });
});

